package exchange

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Reopen brings back the terminated mailbox of id under the same id, empty,
// with this process as its owner, for a supervisor that restarts an agent
// (Academy's restarts keep the agent's id). Senders that mapped the old
// mailbox move to the new one at their next send. It is a no-op when the
// mailbox is active and owned by this process; it fails with
// [ErrMailboxBusy] when it is active under a live owner, or when a live
// receiver stays attached to the terminated one (it drains it) for a
// second, and with [ErrBadEntityID] when id is not registered. Messages still queued in
// the terminated mailbox are dropped (its requests were answered when it
// was terminated).
func (x *SHM) Reopen(ctx context.Context, id EntityID) (err error) {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	i, s := x.lookup(id)
	if i < 0 {
		return fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	e, err := x.reg.decode(i)
	if !x.reg.current(i, s) {
		return fmt.Errorf("%w: %v", ErrBadEntityID, id) // its slot was reused: forgotten
	}
	if err != nil {
		return err
	}
	if x.status(i, id) == StatusActive { // marks a dead owner's mailbox terminated
		if x.reg.owner(i) == x.life.id() {
			return nil
		}
		return fmt.Errorf("%w: %v is active", ErrMailboxBusy, id)
	}
	// A receiver still attached to the old ring is most often on its way
	// out: a sweep (by any process) answering the requests queued when
	// the mailbox was terminated, or a receiver about to find it closed.
	// Give it a moment, outside the registry's lock.
	for wait := time.Now().Add(reopenBusyWait); x.ringHasReceiver(ringPath(x.dir, id.UUID, x.reg.incarnation(i))); {
		if time.Now().After(wait) || ctx.Err() != nil {
			break // the check under the lock reports it
		}
		time.Sleep(time.Millisecond)
	}
	if err := x.reg.lock(); err != nil {
		return err
	}
	defer x.reg.unlock()
	cur := x.reg.stamp(i)
	switch {
	case cur.gen() != s.gen():
		return fmt.Errorf("%w: %v", ErrBadEntityID, id) // its slot was reused meanwhile
	case cur.state() != regTerminated:
		return fmt.Errorf("%w: %v was reopened meanwhile", ErrMailboxBusy, id)
	}
	old := ringPath(x.dir, id.UUID, cur.inc())
	if x.ringHasReceiver(old) {
		return fmt.Errorf("%w: %v is still drained by a live receiver", ErrMailboxBusy, id)
	}
	if err := createRing(ringPath(x.dir, id.UUID, cur.inc()+1), e.ringCap, e.maxRecord); err != nil {
		return fmt.Errorf("exchange: reopening %v: %w", id, err)
	}
	x.reg.setOwner(i, x.life.id())
	x.reg.setStamp(i, makeStamp(cur.gen(), regActive, cur.inc()+1)) // publishes the new ring
	x.reg.changed()
	shm.Remove(old) // mappings of it stay valid; new ones go to the new ring
	x.reap(id)      // this handle's own mapping of it
	return nil
}

// reopenBusyWait bounds how long Reopen waits for a receiver of the old
// ring to go.
const reopenBusyWait = time.Second

// ringHasReceiver reports whether the ring segment at path has a live
// receiver (consumer) attached.
func (x *SHM) ringHasReceiver(path string) bool {
	seg, c, err := x.probeRing(path)
	if err == nil {
		c.Close()
		seg.Close()
	}
	return errors.Is(err, ring.ErrBusy)
}

// errDamagedRing tells probeRing's caller that the segment at the path does
// not hold a valid ring: nobody can drain it.
var errDamagedRing = errors.New("exchange: damaged ring segment")

// probeRing maps the ring segment at path and attaches a consumer of this
// process to it, which succeeds only when no live receiver is attached
// (else ring.ErrBusy). The caller closes c, then seg. A segment or ring
// that does not validate is errDamagedRing (wrapping the reason); a
// missing one is shm.ErrNotExist.
func (x *SHM) probeRing(path string) (*shm.Segment, *ring.Consumer, error) {
	seg, err := shm.Open(path, shm.KindRing)
	if errors.Is(err, shm.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
		return nil, nil, shm.ErrNotExist
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errDamagedRing, err)
	}
	r, err := ring.Attach(seg.Body(), ring.Options{Alive: x.alive})
	if err != nil {
		seg.Close()
		return nil, nil, fmt.Errorf("%w: %w", errDamagedRing, err)
	}
	c, err := r.NewConsumer(x.life.id(), ring.Park)
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, c, nil
}

// Incarnation implements [Reopener]: how many times the mailbox of id was
// reopened ([ErrBadEntityID] when it is not registered).
func (x *SHM) Incarnation(ctx context.Context, id EntityID) (_ uint32, err error) {
	if err := x.enter(); err != nil {
		return 0, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	if v, ok := x.dests.Load(id.UUID); ok {
		if d := v.(*dest); d.id == id {
			if s := x.reg.stamp(d.index); s.gen() == d.stamp.gen() {
				return s.inc(), nil
			}
		}
	}
	for {
		i, s := x.lookup(id)
		if i < 0 {
			return 0, fmt.Errorf("%w: %v", ErrBadEntityID, id)
		}
		if cur := x.reg.stamp(i); cur.gen() == s.gen() {
			return cur.inc(), nil
		}
	}
}
