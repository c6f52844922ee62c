package exchange

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/shmex/shmex/ring"
)

// Send implements [Exchange.Send]. In steady state it is a claim in the
// destination ring, an encoding straight into it and a commit: no copy and
// no allocation. A mailbox's ring has a fixed number of producer slots
// (128, shared by every process that sends to it; a handle takes one per
// goroutine sending at once, up to 8): a Send that finds none free waits
// for one as it waits for space in a full mailbox.
func (x *SHM) Send(ctx context.Context, m *Message) error {
	if err := m.Validate(); err != nil {
		return err
	}
	_, err := x.send(ctx, m)
	return err
}

// SendIncarnation implements [IncarnationSender]: Send, returning the
// incarnation of the mailbox whose ring took the message. (A Terminate
// closes the ring before a Reopen makes the next incarnation: a claim that
// succeeded went into the ring of the incarnation returned.)
func (x *SHM) SendIncarnation(ctx context.Context, m *Message) (uint32, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	return x.send(ctx, m)
}

// errStale tells send that the mailbox's stamp changed under its feet:
// it was terminated or reopened, or its slot reused (see stale).
var errStale = errors.New("exchange: mailbox changed")

// errRetired tells send that the mapping it took was retired meanwhile.
var errRetired = errors.New("exchange: mailbox mapping retired")

// send is Send without the validation; it returns the incarnation of the
// mailbox that took m, waiting for space in a full mailbox until ctx
// ends. It needs no enter: the steady state touches mapped memory only
// while holding a producer box, and the slow paths enter. Each step that
// touches mapped memory turns faults into errors itself (see
// shm_fault.go): on the steady-state path, deliver, in the deferred call
// that gives its box back, so that a send pays no deferred call of its
// own for it.
func (x *SHM) send(ctx context.Context, m *Message) (uint32, error) {
	lookup := false
	for {
		inc, err := x.sendOnce(ctx, m, lookup)
		switch {
		case err == nil:
			return inc, nil
		case err == errStale || err == errRetired:
			// The box this send held on the old ring is free now: the
			// ring may be unmapped, if no one else holds it. The next
			// attempt looks the mailbox up (and retires the stale
			// mapping there).
			lookup = true
			if x.nretired.Load() != 0 && x.enter() == nil {
				x.reclaim()
				x.leave()
			}
			continue
		case errors.Is(err, ErrMailboxClosed):
			if x.closeStarted.Load() {
				// Close of this handle terminates what it owns (before
				// it sets closing) and retires its mappings: a send it
				// interrupted says the exchange closed.
				return 0, ErrExchangeClosed
			}
			x.reapEntered(m.Dest)
		}
		return 0, err
	}
}

// sendOnce is one attempt of send, on the ring of the mailbox's current
// incarnation; errStale when the mailbox changed meanwhile. lookup skips
// the cached mappings. It returns the incarnation of the ring that took m.
func (x *SHM) sendOnce(ctx context.Context, m *Message, lookup bool) (uint32, error) {
	var d *dest
	if !lookup {
		d = x.cachedDest(m.Dest)
	}
	if d == nil {
		var err error
		if d, err = x.destEntered(m.Dest); err != nil {
			return 0, err
		}
	}
	if x.closing.Load() { // a closed handle says so before anything else
		return 0, ErrExchangeClosed
	}
	n := m.EncodedSize()
	if n > d.r.MaxPayload() {
		return 0, fmt.Errorf("%w: %d bytes encoded, the mailbox takes at most %d: %s", ErrMessageTooLarge, n, d.r.MaxPayload(), largePayloadHint)
	}
	b, err := x.acquire(ctx, d)
	if err != nil {
		if err == errRetired {
			x.last.CompareAndSwap(d, nil) // it may have come from there
		}
		return 0, err
	}
	housekeep, err := x.deliver(ctx, d, b, m, n)
	switch {
	case err == errOwnerDead:
		return 0, x.ownerDied(d)
	case err != nil:
		return 0, err
	case housekeep:
		x.reapAllEntered()
	}
	return d.stamp.inc(), nil
}

// errOwnerDead tells sendOnce that the owner of the mailbox is dead.
var errOwnerDead = errors.New("exchange: mailbox owner dead")

// deliver writes m (n bytes encoded) into d's ring through the box b,
// which the caller took and deliver gives back (also when the ring
// faults). It reports whether the registry changed since this handle last
// retired its stale mappings, when it looked (housekeep).
func (x *SHM) deliver(ctx context.Context, d *dest, b *prodBox, m *Message, n int) (housekeep bool, err error) {
	defer x.delivered(d, b, &err, debug.SetPanicOnFault(true))
	// From here on the box keeps d's ring and the registry mapped. The
	// stamp is the one load of the registry a send makes: unchanged, the
	// mailbox is the one d was mapped for, still active, on this ring.
	if x.reg.stamp(d.index) != d.stamp {
		return false, errStale
	}
	// A mailbox whose owner died is terminated rather than filled: look at
	// the owner at most once per ownerCheckInterval per mailbox, and at the
	// clock at one send in ownerCheckEvery through a box (a counter shared
	// by the senders would be a cache line that every one writes). A full
	// mailbox is checked at once, in claimSlow. The same turn looks whether
	// the registry changed, to let go of this handle's stale mappings.
	if b.sends++; b.sends&(ownerCheckEvery-1) == 0 && d.ownerCheckDue() {
		if !x.alive(x.reg.owner(d.index)) {
			return false, errOwnerDead
		}
		housekeep = x.reg.generation() != x.seenGen.Load()
	}
	c, err := b.p.TryClaim(int32(m.Kind), n)
	if err != nil && errors.Is(err, ring.ErrFull) { // errors.Is is a call, even for nil
		c, err = x.claimSlow(ctx, d, b.p, m.Kind, n)
	}
	if err != nil {
		if errors.Is(err, ring.ErrClosed) {
			if s := x.reg.stamp(d.index); !s.sameIncarnation(d.stamp) {
				return false, errStale // send again, to the new ring
			}
			return false, fmt.Errorf("%w: %v", ErrMailboxClosed, m.Dest)
		}
		return false, err
	}
	if err := m.encodeSized(c.Bytes()); err != nil {
		c.Abort()
		return false, err
	}
	c.Commit()
	return housekeep, nil
}

// delivered ends deliver, deferred: it gives the box b back, restores the
// goroutine's fault flag (old) and turns a fault into an error, as catch
// does. One deferred call for the three: this is the steady-state path.
func (x *SHM) delivered(d *dest, b *prodBox, errp *error, old bool) {
	r := recover()
	debug.SetPanicOnFault(old)
	b.release()
	if r != nil {
		*errp = x.fault(r, d)
	}
}

// destEntered is dest, entered, faults turned into errors.
func (x *SHM) destEntered(id EntityID) (_ *dest, err error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true))
	return x.dest(id)
}

// reapEntered is reap, entered (a no-op when the handle is closing),
// faults turned into errors.
func (x *SHM) reapEntered(id EntityID) {
	if x.enter() == nil {
		defer x.leave()
		x.guard(func() { x.reap(id) })
	}
}

// reapAllEntered is reapAll, entered (a no-op when the handle is closing),
// faults turned into errors.
func (x *SHM) reapAllEntered() {
	if x.enter() == nil {
		defer x.leave()
		x.guard(x.reapAll)
	}
}

// acquire returns a free producer box of d, creating its producer on first
// use; release it with b.release(). While the box is held, d's ring and the
// registry stay mapped (see Close). When every box is busy, or the ring has
// no free producer slot (other processes hold them all), it waits until ctx
// is done or this handle is closed: first yielding, then, when no slot
// frees up soon, sleeping between attempts. It fails with errRetired when d
// was retired and its free boxes closed: the caller looks for the
// mailbox's mapping again.
func (x *SHM) acquire(ctx context.Context, d *dest) (*prodBox, error) {
	for spins := 0; ; spins++ {
		noSlot := false
		for i := range d.boxes {
			b := &d.boxes[i]
			if !b.take() {
				continue
			}
			if b.p == nil {
				if err := x.newProducer(d, b); err != nil {
					if errors.Is(err, ring.ErrNoSlot) {
						noSlot = true
						break // wait for a box that has a producer, or a slot
					}
					return nil, err
				}
			}
			return b, nil
		}
		// Not on the steady-state path: only when no box was free. A
		// Close of this handle is looked at first: Close retires the
		// mappings too, and a send it interrupts says the exchange
		// closed, not that the mailbox did.
		if x.closing.Load() {
			return nil, ErrExchangeClosed // Close closes the boxes
		}
		if d.dead.Load() {
			return nil, errRetired
		}
		if spins&63 == 63 {
			if err := ctx.Err(); err != nil {
				if noSlot {
					return nil, fmt.Errorf("exchange: no free producer slot in mailbox %v: %w", d.id, err)
				}
				return nil, err
			}
		}
		if noSlot && spins >= 64 {
			time.Sleep(time.Millisecond) // every slot is held by other processes
		} else {
			runtime.Gosched()
		}
	}
}

// newProducer gives the box b, which the caller took, a producer of d's
// ring. It gives b back when it fails (also when the ring faults).
func (x *SHM) newProducer(d *dest, b *prodBox) (err error) {
	ok := false
	defer func() {
		if !ok {
			b.release()
		}
	}()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // its slot table may fault
	p, err := d.r.NewProducer(x.life.id())
	if err != nil {
		return err
	}
	b.p, ok = p, true
	return nil
}

// claimSlow waits for space in a full mailbox, in steps, so that it notices
// a Close of this handle and the death of the mailbox's owner (whose ring
// would otherwise never drain).
func (x *SHM) claimSlow(ctx context.Context, d *dest, p *ring.Producer, k Kind, n int) (ring.Claim, error) {
	for {
		if x.closing.Load() {
			return ring.Claim{}, ErrExchangeClosed
		}
		if !x.alive(x.reg.owner(d.index)) && x.terminateDead(d) {
			return ring.Claim{}, ring.ErrClosed
		}
		step, cancel := context.WithTimeout(ctx, ownerCheckInterval)
		c, err := p.Claim(step, int32(k), n)
		cancel()
		if err == nil || !errors.Is(err, ring.ErrFull) || ctx.Err() != nil {
			return c, err
		}
	}
}
