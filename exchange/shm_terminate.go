package exchange

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Terminate implements [Exchange.Terminate]. The ring is closed first, so
// no send succeeds afterwards; then the entry is marked. When no live
// receiver is attached, Terminate itself answers the queued requests; a
// live receiver answers those it finds after the close.
//
// The ring's file is removed by the last party to let go of it, in
// whichever order the Terminate, the receiver's Close and the sends that
// claimed space before the close come: by Terminate at once when no
// receiver is attached and the ring holds nothing but the requests it
// answered (it waits up to drainWait for those sends to commit); else by
// the receiver, once it has drained the ring (its Recv reports
// [ErrMailboxClosed]) or when it detaches (Close answers the requests
// left and drops the rest). Responses queued in a mailbox that no
// receiver was attached to when it was terminated are kept for one that
// attaches later; failing that, the file goes when the last handle of the
// process that created or owns it closes, or when [SHM.Collect] finds its
// owner dead. Every process unmaps the ring once no send or receive of its
// own is inside it (see the mapping lifecycle at dest).
func (x *SHM) Terminate(ctx context.Context, id EntityID) (err error) {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	i, s := x.lookup(id)
	if i < 0 || s.state() == regTerminated {
		return nil
	}
	d, err := x.destPinned(id)
	if errors.Is(err, ErrMailboxClosed) {
		return nil // terminated meanwhile, and nothing left in it
	}
	if err != nil {
		return err
	}
	err = x.terminate(ctx, d)
	x.unpin(d)
	x.reap(id) // this handle's mapping of it
	return err
}

// terminate terminates the mailbox of d; the caller holds a pin or a box
// of d. It is a no-op when the mailbox is terminated already, or d maps
// the ring of an earlier incarnation (terminated before the mailbox was
// reopened: the current one is not ours to end) or of a slot since
// reused.
func (x *SHM) terminate(ctx context.Context, d *dest) error {
	_, err := x.terminateIf(ctx, d, anyOwner)
	return err
}

// anyOwner tells terminateIf and closeAndMark that the mailbox's owner
// does not matter (no liveness id is all ones).
const anyOwner = ^uint64(0)

// terminateIf is terminate, done only while the mailbox's owner is owner
// (anyOwner: whoever it is); done reports whether this call terminated it.
func (x *SHM) terminateIf(ctx context.Context, d *dest, owner uint64) (done bool, err error) {
	if done, err := x.closeAndMark(d, owner); !done {
		return false, err
	}
	x.sweep(ctx, d)
	return true, nil
}

// closeAndMark closes d's ring and marks its mailbox terminated, under the
// registry's lock, when d maps its current incarnation and its owner is
// owner (anyOwner: any); done is false when there was nothing to do (see
// terminate), the owner changed, or the lock failed.
func (x *SHM) closeAndMark(d *dest, owner uint64) (done bool, err error) {
	if err := x.reg.lock(); err != nil {
		return false, err
	}
	defer x.reg.unlock() // deferred: the ring or the registry may fault (see catch)
	s := x.reg.stamp(d.index)
	if !s.sameIncarnation(d.stamp) || s.state() == regTerminated {
		return false, nil
	}
	if owner != anyOwner && x.reg.owner(d.index) != owner {
		return false, nil
	}
	d.r.Close()
	x.reg.setTerminated(d.index, s)
	return true, nil
}

// terminateEntered is terminate, entered (a no-op when the handle is
// closing).
func (x *SHM) terminateEntered(ctx context.Context, d *dest) {
	if x.enter() == nil {
		defer x.leave()
		x.terminate(ctx, d)
	}
}

// terminateDead terminates the mailbox of d, whose owner a send found
// dead; the caller holds a pin or a box of d. As status does, it looks at
// the owner again and terminates the mailbox only while that dead owner
// owns it, under the registry's lock: a receiver that took the mailbox
// over meanwhile keeps it. It reports whether the mailbox is terminated
// (false: it has a live owner again, or d no longer maps it; send again).
func (x *SHM) terminateDead(d *dest) bool {
	if x.reg.state(d.index) == regTerminated {
		return true
	}
	owner := x.reg.owner(d.index)
	if x.alive(owner) {
		return false
	}
	if hook := testHookDeadOwner.Load(); hook != nil {
		(*hook)(d.id)
	}
	x.opts.log.Debug("shmex: owner of mailbox died; terminating it", "exchange", x.name, "mailbox", d.id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if done, err := x.terminateIf(ctx, d, owner); done || err != nil {
		return true // err: the registry's lock failed; the owner is dead all the same
	}
	return x.reg.stamp(d.index) == d.stamp.withState(regTerminated)
}

// terminateEntry terminates the mailbox of id in the registry alone, when
// its ring cannot be mapped (missing, or damaged): its senders find the
// stamp changed, and its ring's file, if any, is removed. As status's
// terminateStamp, it does so only while the stamp is want and the owner
// owner (anyOwner: any), and reports whether the mailbox is terminated in
// want's incarnation (false: it changed); a failed lock reports true.
func (x *SHM) terminateEntry(id EntityID, want stamp, owner uint64) bool {
	if x.reg.lock() != nil {
		return true
	}
	defer x.reg.unlock()
	i, s := x.lookup(id)
	if i < 0 {
		return false
	}
	terminated, marked := x.markTerminatedLocked(i, s, want, owner)
	if marked {
		shm.Remove(ringPath(x.dir, id.UUID, s.inc()))
	}
	return terminated
}

// markTerminatedLocked terminates the entry of registry slot i, whose
// stamp is cur, if cur is want (the incarnation and state the caller
// looked at) and its owner still owner (anyOwner: any); the caller holds
// the registry's lock. It reports whether the entry is terminated in
// want's incarnation (by this call or another), and whether this call
// marked it.
func (x *SHM) markTerminatedLocked(i int, cur, want stamp, owner uint64) (terminated, marked bool) {
	switch {
	case !cur.sameIncarnation(want):
		return false, false
	case cur.state() == regTerminated:
		return true, false
	case cur != want || owner != anyOwner && x.reg.owner(i) != owner:
		return false, false
	}
	x.reg.setTerminated(i, cur)
	return true, true
}

// terminateSlotEntry terminates the entry of registry slot i in the
// registry alone, if its stamp is still s and its owner still owner
// (anyOwner: any): for an entry that its id's look-up does not reach (a
// damaged registry holds the UUID in another slot too), whose ring path
// is the other entry's, not its own to close or remove. It reports whether
// the entry is terminated in s's incarnation.
func (x *SHM) terminateSlotEntry(i int, s stamp, owner uint64) bool {
	if x.reg.lock() != nil {
		return true // as terminateEntry: the owner is dead all the same
	}
	defer x.reg.unlock()
	terminated, _ := x.markTerminatedLocked(i, x.reg.stamp(i), s, owner)
	return terminated
}

// ownerDied terminates the mailbox of d, whose owner a send found dead,
// and fails the send.
func (x *SHM) ownerDied(d *dest) (err error) {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true))
	if !x.pin(d) {
		x.last.CompareAndSwap(d, nil)
		return errRetired
	}
	terminated := x.terminateDead(d)
	x.unpin(d)
	if !terminated {
		return errStale // taken over or changed meanwhile: send again
	}
	return fmt.Errorf("%w: %v (its owner died)", ErrMailboxClosed, d.id)
}

// sweep answers the requests queued in d's closed ring, if no live receiver
// is attached to it (that one answers them as it reads, and removes the
// ring once it has drained it, or drains it when it detaches: see
// releaseTerminated). When nothing but those requests was left, the ring
// is drained and its file removed at once.
func (x *SHM) sweep(ctx context.Context, d *dest) {
	c, err := d.r.NewConsumer(x.life.id(), ring.Park)
	if err != nil {
		return
	}
	defer c.Close()
	a := terminatedAnswerer{x: x, id: d.id}
	kept := 0
	c.Sweep(func(typ int32, p []byte) bool {
		if !Kind(typ).IsRequest() {
			kept++
			return false
		}
		a.answer(ctx, p)
		return true
	})
	if kept > 0 {
		return // responses for a receiver to drain
	}
	// Only what the sweep turned into padding is left, and what a send
	// that claimed its space before the close commits now: a late
	// request is answered like the others; a late response, for a
	// mailbox that nobody receives from and that held nothing else, is
	// dropped with the ring.
	late, drained := x.drainClosed(ctx, c, &a)
	if late > 0 {
		x.opts.log.Warn("shmex: dropped responses sent while their mailbox was terminated", "exchange", x.name, "mailbox", d.id, "count", late)
	}
	if drained {
		x.removeIfDrained(d, c)
	}
}

// drainWait bounds how long the party that drains a terminated ring for
// good waits for the sends that claimed space in it before the close to
// commit (a live sender takes microseconds; a dead one's claim is padded
// after ring's StuckAfter), and how long releaseTerminated waits for a
// sweep that holds the ring's consumer.
const drainWait = time.Second

// drainClosed reads everything left in a closed ring through c, waiting up
// to drainWait for claims not committed yet: requests are answered (a),
// anything else is dropped and counted. drained reports whether it read
// everything ever claimed (ring.ErrClosed): nothing is left for anyone.
func (x *SHM) drainClosed(ctx context.Context, c *ring.Consumer, a *terminatedAnswerer) (dropped int, drained bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainWait)
	defer cancel()
	for {
		_, err := c.Receive(ctx, func(typ int32, p []byte) {
			if Kind(typ).IsRequest() {
				a.answer(ctx, p)
			} else {
				dropped++
			}
		}, 0)
		if err != nil {
			return dropped, errors.Is(err, ring.ErrClosed)
		}
	}
}

// releaseTerminated is the last look at the ring of d's terminated mailbox
// by its receiver, which has just detached: nobody else will read it (a
// Terminate that came while the receiver was attached could not sweep
// it), so it answers the requests left, drops everything else, and
// removes the file. A sweep that holds the consumer meanwhile (the
// Terminate came just as the receiver detached) is waited for, up to
// drainWait: it may keep responses for a receiver, this one. Another
// receiver that attached meanwhile keeps the ring: it is the last party
// now. The caller has entered and holds a pin of d.
func (x *SHM) releaseTerminated(d *dest) {
	if !d.r.Closed() {
		// Terminated in the registry alone (by a process that had no
		// mapping of the ring, or for a dead owner found by a look-up):
		// closed now, so that late sends fail and the drain below ends
		// once the ring is empty instead of waiting drainWait for it.
		x.closeTerminated(d)
	}
	var c *ring.Consumer
	for deadline := time.Now().Add(drainWait); ; {
		var err error
		if c, err = d.r.NewConsumer(x.life.id(), ring.Park); err == nil {
			break
		}
		if !errors.Is(err, ring.ErrBusy) || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	defer c.Close()
	a := terminatedAnswerer{x: x, id: d.id}
	dropped, drained := x.drainClosed(context.Background(), c, &a)
	if dropped > 0 {
		x.opts.log.Debug("shmex: dropped messages left in a terminated mailbox by its receiver", "exchange", x.name, "mailbox", d.id, "count", dropped)
	}
	if drained {
		x.removeIfDrained(d, c)
	}
}

// closeTerminated closes the ring of d if the registry holds d's
// incarnation terminated.
func (x *SHM) closeTerminated(d *dest) {
	if x.reg.lock() != nil {
		return
	}
	defer x.reg.unlock()
	if s := x.reg.stamp(d.index); s.sameIncarnation(d.stamp) && s.state() == regTerminated {
		d.r.Close()
	}
}

// terminatedAnswerer answers the requests found in the ring of the
// terminated mailbox id.
type terminatedAnswerer struct {
	x     *SHM
	id    EntityID
	m     Message
	stuck map[UUID]bool // requesters whose full mailbox refused an answer
}

// answer answers the request encoded in p, unless its sender's mailbox
// refused an answer already.
func (a *terminatedAnswerer) answer(ctx context.Context, p []byte) {
	m := &a.m
	if m.Decode(p) != nil || a.stuck[m.Src.UUID] {
		return
	}
	if err := a.x.answerTerminated(ctx, a.id, m); err != nil && !errors.Is(err, ErrBadEntityID) && !errors.Is(err, ErrMailboxClosed) {
		// Waiting again for the same full mailbox would make a
		// terminate of n queued requests take n steps.
		if a.stuck == nil {
			a.stuck = make(map[UUID]bool)
		}
		a.stuck[m.Src.UUID] = true
		a.x.opts.log.Warn("shmex: could not answer the requests of a sender to a terminated mailbox", "exchange", a.x.name, "mailbox", a.id, "sender", m.Src, "err", err)
	}
}

// removeIfDrained removes the file of d's terminated ring when the consumer
// c, which the caller holds (so that no receiver attaches meanwhile), has
// read everything claimed in it: nothing is left for anyone. It reports
// whether it removed the file.
func (x *SHM) removeIfDrained(d *dest, c *ring.Consumer) bool {
	if c.Position() != d.r.Stats().Tail {
		return false // a claim not committed yet: a receiver may want it
	}
	return x.removeTerminatedRing(d)
}

// removeTerminatedRing removes the file of d's ring if its mailbox is
// still the terminated one d maps (not reopened, its slot not reused: a
// later mailbox of the same UUID may have the same path). It reports
// whether it removed the file.
func (x *SHM) removeTerminatedRing(d *dest) bool {
	if x.reg.lock() != nil {
		return false
	}
	defer x.reg.unlock()
	s := x.reg.stamp(d.index)
	if !s.sameIncarnation(d.stamp) || s.state() != regTerminated {
		return false
	}
	return removeFile(ringPath(x.dir, d.id.UUID, s.inc()))
}

// answerTerminated answers the request m, found queued in the terminated
// mailbox of id, with an error response, waiting a short while for space in
// the sender's mailbox.
func (x *SHM) answerTerminated(ctx context.Context, id EntityID, m *Message) error {
	m.SetErrorResponse(m, &RemoteError{Kind: ErrorKindMailboxTerminated, Message: "mailbox " + id.String() + " was terminated"})
	step, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := x.send(step, m)
	return err
}
