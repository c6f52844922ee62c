//go:build !race

package ring

// storeRelease stores v at addr with release ordering only: the store
// becomes visible after every earlier store of this goroutine, but a later
// load may be satisfied before it is visible. Use it only where no
// StoreLoad ordering is needed (see the claim protocol in producer.go);
// sync/atomic's Store is a full fence (XCHG) on amd64 and costs several
// times more.
//
//go:noescape
func storeRelease(addr *uint64, v uint64)
