//go:build !race

package shm

// StoreRelease stores v at addr with release ordering only: the store
// becomes visible after every earlier store of this goroutine, but a later
// load may be satisfied before it is visible. Use it only where no
// StoreLoad ordering is needed (as in the claim protocol of package ring);
// sync/atomic's Store is a full fence (XCHG) on amd64 and costs several
// times more.
//
//go:noescape
func StoreRelease(addr *uint64, v uint64)

// StoreRelease32 is StoreRelease for a 32-bit word.
//
//go:noescape
func StoreRelease32(addr *uint32, v uint32)
