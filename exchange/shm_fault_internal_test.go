package exchange

import (
	"runtime/debug"
	"sync"
	"testing"
)

var benchMu sync.Mutex

//go:noinline
func plainCall(x *SHM) (err error) {
	benchMu.Lock()
	defer benchMu.Unlock()
	return nil
}

//go:noinline
func guardedCall(x *SHM) (err error) {
	benchMu.Lock()
	defer benchExit(&err, debug.SetPanicOnFault(true))
	return nil
}

func benchExit(errp *error, old bool) {
	r := recover()
	debug.SetPanicOnFault(old)
	benchMu.Unlock()
	if r != nil {
		*errp = errFault
	}
}

//go:noinline
func recoverOnlyCall(x *SHM) (err error) {
	benchMu.Lock()
	defer benchExitNoFlag(&err)
	return nil
}

func benchExitNoFlag(errp *error) {
	r := recover()
	benchMu.Unlock()
	if r != nil {
		*errp = errFault
	}
}

// BenchmarkFaultGuard measures what turning faults into errors adds to a
// call that already defers its unlock (as Recv, and the send path's
// deliver, do): the goroutine's flag set and restored and a recover in
// the deferred call, against the same call without them, and the recover
// alone.
func BenchmarkFaultGuard(b *testing.B) {
	x := &SHM{}
	for _, c := range []struct {
		name string
		f    func(*SHM) error
	}{{"plain", plainCall}, {"guarded", guardedCall}, {"recover", recoverOnlyCall}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.f(x)
			}
		})
	}
}
