package exchange

import (
	"runtime/debug"
	"testing"
)

//go:noinline
func plainCall(x *SHM) (err error) { return nil }

//go:noinline
func guardedCall(x *SHM) (err error) {
	defer x.catch(&err, debug.SetPanicOnFault(true))
	return nil
}

// BenchmarkFaultGuard measures what turning faults into errors adds to a
// call (Send and Recv each make one): the goroutine's flag set and
// restored, and a deferred recover, against the same call without them.
// A round trip makes four such calls.
func BenchmarkFaultGuard(b *testing.B) {
	x := &SHM{}
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			plainCall(x)
		}
	})
	b.Run("guarded", func(b *testing.B) {
		for b.Loop() {
			guardedCall(x)
		}
	})
}
