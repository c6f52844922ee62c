package exchange

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Mailbox implements [Exchange.Mailbox]. A mailbox has one receiver at a
// time across all processes ([ErrMailboxBusy]); the process that opens it
// becomes its owner, whose death terminates it. The client's Recv waits
// with the idle strategy of [WithMailboxIdle], else the handle's
// ([WithIdle]).
func (x *SHM) Mailbox(ctx context.Context, id EntityID, opts ...MailboxOption) (_ Mailbox, err error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	d, err := x.destPinned(id)                       // for the life of the client
	if errors.Is(err, ErrMailboxClosed) {
		return closedMailbox{id}, nil // terminated, and nothing left in it
	}
	if err != nil {
		return nil, err
	}
	idle := x.opts.idle
	if o := ApplyMailboxOptions(opts); o.Idle != nil {
		idle = *o.Idle
	}
	c, err := d.r.NewConsumer(x.life.id(), idle)
	if err != nil {
		x.unpin(d)
		if errors.Is(err, ring.ErrBusy) {
			return nil, fmt.Errorf("%w: %v", ErrMailboxBusy, id)
		}
		return nil, err
	}
	if d.stamp.state() == regActive && x.reg.owner(d.index) != x.life.id() {
		if err := x.takeOwnership(d); err != nil {
			c.Close()
			x.unpin(d)
			return nil, err
		}
	}
	mb := &shmMailbox{x: x, d: d, c: c}
	x.mbMu.Lock()
	if x.mboxes == nil { // Close took the clients already
		x.mbMu.Unlock()
		c.Close()
		x.unpin(d)
		return nil, ErrExchangeClosed
	}
	x.mboxes[mb] = struct{}{}
	x.mbMu.Unlock()
	return mb, nil
}

// takeOwnership makes this process the owner of d's mailbox, if d still
// maps it.
func (x *SHM) takeOwnership(d *dest) error {
	if err := x.reg.lock(); err != nil {
		return err
	}
	defer x.reg.unlock()
	if x.reg.stamp(d.index) == d.stamp {
		x.reg.setOwner(d.index, x.life.id())
		x.reg.changed()
	}
	return nil
}

// shmMailbox is a receiving client of one mailbox.
type shmMailbox struct {
	x      *SHM
	d      *dest
	c      *ring.Consumer
	mu     sync.Mutex // one Recv at a time
	closed atomic.Bool
	answer Message // scratch for answering requests after a terminate
}

func (mb *shmMailbox) ID() EntityID { return mb.d.id }

// Recv implements [Mailbox.Recv]: it decodes the next message straight out
// of the ring into m, then releases its space. A ring whose shared state
// was damaged (by a faulty or hostile process) terminates the mailbox:
// Recv returns [ErrMailboxClosed], wrapping [ring.ErrCorrupt].
func (mb *shmMailbox) Recv(ctx context.Context, m *Message) (err error) {
	// mu, not enter, keeps the ring and the registry mapped: Close of the
	// handle waits for it (see Close).
	mb.mu.Lock()
	defer mb.exit(&err, debug.SetPanicOnFault(true)) // unlocks mu; see shm_fault.go
	// Looked at under mu: a Recv that waited for a Close to finish must
	// not touch the ring, which may be unmapped by now.
	if mb.closed.Load() {
		return ErrMailboxClosed
	}
	_, err = mb.recvLocked(ctx, m)
	return err
}

// recvLocked receives the next message for Recv and RecvBatch, which hold
// mu and the fault guard: got says a message came (err is then its decode
// error); otherwise err says why none did.
func (mb *shmMailbox) recvLocked(ctx context.Context, m *Message) (got bool, err error) {
	for {
		var derr error
		_, err := mb.c.Receive(ctx, func(typ int32, p []byte) {
			if mb.answerIfTerminated(ctx, typ, p) {
				return
			}
			got = true
			derr = m.Decode(p)
		}, 1)
		if got {
			return true, derr
		}
		if err == nil {
			continue // a request was answered: look for the next message
		}
		return false, mb.recvErr(ctx, err)
	}
}

// answerIfTerminated answers a request read from the ring of a terminated
// mailbox (see answerTerminated) and reports whether it did: the record
// is then not the receiver's.
func (mb *shmMailbox) answerIfTerminated(ctx context.Context, typ int32, p []byte) bool {
	if !Kind(typ).IsRequest() || !mb.terminated() {
		return false
	}
	if mb.answer.Decode(p) == nil {
		mb.x.answerTerminated(ctx, mb.d.id, &mb.answer)
	}
	return true
}

// recvErr is what Recv (and RecvBatch) return when the ring's Receive
// failed with err, nothing received.
func (mb *shmMailbox) recvErr(ctx context.Context, err error) error {
	x := mb.x
	switch {
	case errors.Is(err, ring.ErrClosed):
		// Terminated and drained: nothing is left in the ring for anyone,
		// and no receiver attaches while this one is.
		x.removeIfDrained(mb.d, mb.c)
		return ErrMailboxClosed
	case errors.Is(err, ring.ErrInterrupted):
		return ErrMailboxClosed
	case errors.Is(err, ring.ErrCorrupt):
		// Nothing can be read from a damaged ring, now or later: not
		// ErrBadMessage, which a receive loop skips (it would spin).
		// Terminate the mailbox so that its senders and callers are not
		// left waiting; a supervisor may Reopen it, on a new ring.
		if x.reg.state(mb.d.index) != regTerminated {
			x.opts.log.Error("shmex: mailbox ring corrupt; terminating the mailbox", "exchange", x.name, "mailbox", mb.d.id, "err", err)
			x.terminateEntered(ctx, mb.d)
		}
		return fmt.Errorf("%w: mailbox %v: %w", ErrMailboxClosed, mb.d.id, err)
	}
	return err
}

// exit ends a Recv, deferred (one deferred call for both jobs: Recv is on
// the fast path): it restores the goroutine's fault flag and unlocks mu,
// and, as SHM.catch does, turns a fault (the ring or the registry
// truncated under the receiver) into an error, after which this client
// reads closed for good.
func (mb *shmMailbox) exit(errp *error, old bool) {
	r := recover()
	debug.SetPanicOnFault(old)
	if r == nil {
		mb.mu.Unlock()
		return
	}
	mb.closed.Store(true)
	mb.mu.Unlock()
	*errp = mb.x.fault(r, mb.d)
}

// terminated reports whether the mailbox was terminated (or reopened on a
// new ring, or its slot reused). It reads the registry slot's stamp, a
// line that changes only when the mailbox does, rather than the ring's
// closed bit, which lives in the tail word that every send writes: loading
// it per request would cost a cache-line transfer per message. terminate
// closes the ring before it marks the entry, so a request read in between
// is delivered, as one read just before the close would be.
func (mb *shmMailbox) terminated() bool {
	s := mb.x.reg.stamp(mb.d.index)
	return s != mb.d.stamp || s.state() != regActive
}

// Close implements [Mailbox.Close]: it detaches this receiver; the mailbox
// stays. The receiver of a terminated mailbox is the last party to let go
// of its ring: Close answers the requests left in it, drops the rest and
// removes the ring's file (see releaseTerminated).
func (mb *shmMailbox) Close() error {
	if mb.closed.Swap(true) {
		return nil
	}
	x := mb.x
	// The interrupt rings the doorbell in the ring: only while entered,
	// so that a concurrent Close of the handle cannot unmap the ring (nor
	// detach the consumer) under it. A handle that is closing interrupts
	// its receivers itself. (The client's pin keeps every other unmap
	// away.)
	if x.hold() == nil {
		if shm.TolerateFault(mb.c.Interrupt) {
			mb.d.faulted.Store(true)
		}
		x.leave()
	}
	if !mb.lockUnlessStuck() { // wait for a Recv in progress
		x.mbMu.Lock()
		if x.mboxes != nil {
			delete(x.mboxes, mb)
		}
		x.mbMu.Unlock()
		return nil
	}
	x.mbMu.Lock()
	live := x.mboxes != nil // else the handle's Close has taken the client
	if live {
		// Under mbMu: the handle's Close, which takes its clients under
		// mbMu, will not know this one, so it must be detached before
		// that Close can unmap the ring.
		delete(x.mboxes, mb)
		mb.detach()
	}
	x.mbMu.Unlock()
	if !live {
		// The handle's Close has taken this client: it detaches it under
		// mu before it unmaps, so the ring is mapped while mu is held
		// here. Detached here too, so that the mailbox has no receiver
		// once this Close returns (a no-op if that Close came first).
		mb.detach()
	}
	mb.mu.Unlock()
	if !live {
		return nil // the handle's Close unmaps the ring
	}
	// The client's pin goes last, holding no lock but the handle (entered,
	// the registry and the ring stay mapped): releasing a stale ring
	// enters the handle. The receiver of a terminated mailbox is the last
	// party to let go of its ring (a Terminate that came while it was
	// attached left the ring to it): whatever is left in it, the ring goes
	// (see releaseTerminated).
	if x.enter() != nil {
		mb.d.pins.Add(-1) // the handle is closing: it unmaps the ring
		return nil
	}
	defer x.leave()
	x.guard(func() {
		if s := x.reg.stamp(mb.d.index); !mb.d.faulted.Load() && s.sameIncarnation(mb.d.stamp) && s.state() == regTerminated {
			x.releaseTerminated(mb.d)
		}
	})
	x.unpin(mb.d)
	x.guard(func() { x.reap(mb.d.id) })
	return nil
}

// lockUnlessStuck takes mu, waiting for a Recv in progress, and reports
// whether it did. A Recv asleep on a ring truncated under it cannot be
// woken (its doorbell is gone with the pages) and holds mu for ever: once
// the ring has faulted, lockUnlessStuck waits a little, then leaves that
// Recv and its mapping alone (the mapping is never unmapped: the sleeper
// would touch it if it ever woke).
func (mb *shmMailbox) lockUnlessStuck() bool {
	for wait := time.Duration(0); !mb.mu.TryLock(); wait += time.Millisecond {
		if !mb.d.faulted.Load() {
			mb.mu.Lock()
			return true
		}
		if wait >= stuckWait {
			mb.d.stuck.Store(true)
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// stuckWait is how long Close waits for a Recv on a ring that faulted.
const stuckWait = 100 * time.Millisecond

// detach detaches the receiver, unless its ring faulted (never touched
// again). The caller holds mu.
func (mb *shmMailbox) detach() {
	if !mb.d.faulted.Load() && shm.TolerateFault(func() { mb.c.Close() }) {
		mb.d.faulted.Store(true)
	}
}

// closedMailbox is the client of a terminated mailbox whose ring is gone:
// there is nothing left to drain.
type closedMailbox struct{ id EntityID }

func (c closedMailbox) ID() EntityID                         { return c.id }
func (c closedMailbox) Recv(context.Context, *Message) error { return ErrMailboxClosed }
func (c closedMailbox) Close() error                         { return nil }
