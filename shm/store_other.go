//go:build !amd64 || race

package shm

import "sync/atomic"

// StoreRelease stores v at addr with at least release ordering. Elsewhere
// than amd64, and under the race detector (which must see the store as an
// atomic to know what it orders), it is sync/atomic's Store.
func StoreRelease(addr *uint64, v uint64) { atomic.StoreUint64(addr, v) }

// StoreRelease32 is StoreRelease for a 32-bit word.
func StoreRelease32(addr *uint32, v uint32) { atomic.StoreUint32(addr, v) }
