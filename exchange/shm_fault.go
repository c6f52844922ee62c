package exchange

import (
	"errors"
	"fmt"
	"runtime/debug"
	"unsafe"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Faults from outside. A process of the same user can truncate a ring or
// the registry that others have mapped; touching a page past the new end
// of the file raises SIGBUS, which kills a Go program unless the faulting
// goroutine asked for a panic instead (debug.SetPanicOnFault, a flag of
// the goroutine). Every exported method that touches mapped memory turns
// the flag on at its entry and defers catch, which restores the flag and
// turns a fault into an error (Send and Recv, on the steady-state path,
// do it in the one deferred call they make anyway: delivered, and the
// mailbox's exit):
//
//   - a fault in a ring quarantines that mailbox's mapping (never touched
//     again: its producers and consumer are dropped without writing, the
//     mapping is unmapped once no send holds it) and terminates the mailbox
//     in the registry alone, removing its file: the call returns
//     [ErrMailboxClosed] wrapping [ring.ErrCorrupt], and the other
//     processes that use the mailbox fault on it in turn, or find it
//     terminated;
//   - a fault in the registry breaks the handle: every later call returns
//     [ErrCorruptRegistry] (its mailbox clients report [ErrMailboxClosed]),
//     and Close releases it without reading the registry.
//
// The cost is two calls that set the goroutine's flag and a recover, in a
// deferred call that Send (deliver) and Recv made anyway: about 5 ns per
// call on the 2-vCPU machine (BenchmarkFaultGuard), some 20 to 30 ns of a
// round trip of 1.1 to 1.5 µs, within the noise of BenchmarkSHMRoundTrip
// and bench's BenchmarkExchangeRTTSpin. Clean-up steps that touch a
// mapping on behalf of no caller (unmapping a retired ring, detaching a
// receiver) run under shm.TolerateFault.
//
// When a receive's context ends, shm's CancelRinger rings its doorbell
// from a goroutine of the context package; it does so under a guard of
// its own (shm's ringGuarded), so that a doorbell in a ring truncated
// under the sleeper does not kill the process. What stays out of reach: a
// receive asleep on a ring truncated under it cannot be woken (its
// doorbell went with the pages; Close leaves it, and so does that cancel);
// that needs a bounded sleep in the ring's Receive. Nor can a binary built
// with -race survive every truncation: the race detector runs an atomic
// on shared memory in its C runtime after probing the address in Go, and
// a truncation that lands between the probe and the access faults in C,
// which no guard can catch (TestSHMProcessTruncation, see there).

// errFault is what a fault on a mapping this handle cannot place returns
// (a segment being mapped when it was truncated).
var errFault = errors.New("exchange: fault on shared memory (a segment truncated by another process?)")

// isFault reports whether r, a recovered panic, is a memory fault turned
// into a panic by debug.SetPanicOnFault (it has an Addr method).
func isFault(r any) (uintptr, bool) {
	f, ok := r.(interface{ Addr() uintptr })
	if !ok {
		return 0, false
	}
	return f.Addr(), true
}

// catch is deferred by the exported methods that touch mapped memory,
// right after they turn faults into panics (old is what
// debug.SetPanicOnFault(true) returned): it restores the goroutine's flag
// and turns a fault into an error in *errp (see fault). Any other panic
// goes on.
func (x *SHM) catch(errp *error, old bool) {
	r := recover()
	debug.SetPanicOnFault(old)
	if r == nil {
		return
	}
	*errp = x.fault(r, nil)
}

// fault handles a recovered panic r: a fault on a ring quarantines its
// mailbox, a fault on the registry breaks the handle; it returns the error
// for the caller. hint, when not nil, is the dest the caller was using.
// Any panic that is not a fault goes on.
func (x *SHM) fault(r any, hint *dest) error {
	addr, ok := isFault(r)
	if !ok {
		panic(r)
	}
	if within(x.reg.seg.Bytes(), addr) {
		x.registryFaulted()
		return fmt.Errorf("%w: fault at %#x: the registry was truncated by another process?", ErrCorruptRegistry, addr)
	}
	d := hint
	if d == nil || !within(d.seg.Bytes(), addr) {
		d = x.destAt(addr)
	}
	if d == nil {
		x.opts.log.Error("shmex: fault on shared memory", "exchange", x.name, "addr", fmt.Sprintf("%#x", addr))
		return fmt.Errorf("%w: at %#x: %w", errFault, addr, ring.ErrCorrupt)
	}
	x.quarantine(d)
	return fmt.Errorf("%w: mailbox %v: its ring faulted at %#x (truncated by another process?): %w", ErrMailboxClosed, d.id, addr, ring.ErrCorrupt)
}

// within reports whether addr lies inside the mapping m.
func within(m []byte, addr uintptr) bool {
	if len(m) == 0 {
		return false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	return addr >= base && addr-base < uintptr(len(m))
}

// destAt returns the mapping of this handle that holds addr, or nil.
func (x *SHM) destAt(addr uintptr) *dest {
	var found *dest
	x.dests.Range(func(_, v any) bool {
		if d := v.(*dest); within(d.seg.Bytes(), addr) {
			found = d
		}
		return found == nil
	})
	if found != nil {
		return found
	}
	x.destMu.Lock()
	defer x.destMu.Unlock()
	for _, d := range x.retired {
		if within(d.seg.Bytes(), addr) {
			return d
		}
	}
	return nil
}

// quarantine makes d, whose ring faulted, never touched again by this
// handle, and terminates its mailbox in the registry alone (its ring
// cannot be closed), removing the file.
func (x *SHM) quarantine(d *dest) {
	if d.faulted.Swap(true) {
		return
	}
	x.opts.log.Error("shmex: mailbox ring faulted (truncated by another process?); terminating the mailbox", "exchange", x.name, "mailbox", d.id)
	x.destMu.Lock()
	x.retireLocked(d)
	x.destMu.Unlock()
	x.last.CompareAndSwap(d, nil)
	if shm.TolerateFault(func() { x.terminateSlot(d) }) {
		x.registryFaulted()
	}
}

// terminateSlot terminates the mailbox of d in the registry alone, if d
// still maps its current incarnation, and removes the ring's file.
func (x *SHM) terminateSlot(d *dest) {
	if x.reg.lock() != nil {
		return
	}
	defer x.reg.unlock()
	s := x.reg.stamp(d.index)
	if !s.sameIncarnation(d.stamp) || s.state() == regTerminated {
		return
	}
	x.reg.setTerminated(d.index, s)
	removeFile(ringPath(x.dir, d.id.UUID, s.inc()))
}

// registryFaulted breaks the handle after a fault on its registry: enter
// fails from now on, every mapping is retired and unmapped once unused (a
// send goes back to the look-up, which enters) and every mailbox client
// reads closed.
func (x *SHM) registryFaulted() {
	if x.broken.Swap(true) {
		return
	}
	x.opts.log.Error("shmex: the registry faulted (truncated by another process?); the handle is unusable", "exchange", x.name)
	x.destMu.Lock()
	x.dests.Range(func(_, v any) bool {
		x.retireLocked(v.(*dest))
		return true
	})
	x.reclaimLocked() // their boxes closed: a send goes to the look-up at once
	x.destMu.Unlock()
	x.last.Store(nil)
	x.mbMu.Lock()
	for mb := range x.mboxes {
		mb.closed.Store(true)
	}
	x.mbMu.Unlock()
}

// guard runs f as an exported method does (see catch).
func (x *SHM) guard(f func()) (err error) {
	defer x.catch(&err, debug.SetPanicOnFault(true))
	f()
	return nil
}
