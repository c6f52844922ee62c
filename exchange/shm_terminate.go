package exchange

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/ring"
)

// Terminate implements [Exchange.Terminate]. The ring is closed first, so
// no send succeeds afterwards; then the entry is marked. When no live
// receiver is attached, Terminate itself answers the queued requests; a
// live receiver answers those it finds after the close.
func (x *SHM) Terminate(ctx context.Context, id EntityID) error {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	i := x.lookup(id)
	if i < 0 || x.reg.state(i) == regTerminated {
		return nil
	}
	d, err := x.destPinned(id)
	if err != nil {
		return err
	}
	defer x.unpin(d)
	return x.terminate(ctx, d)
}

// terminate terminates the mailbox of d; the caller holds a pin or a box
// of d.
func (x *SHM) terminate(ctx context.Context, d *dest) error {
	if err := x.reg.lock(); err != nil {
		return err
	}
	if x.reg.incarnation(d.index) != d.inc {
		// d maps the ring of an earlier incarnation, terminated before
		// the mailbox was reopened: the current one is not ours to end.
		x.reg.unlock()
		return nil
	}
	d.r.Close()
	atomic.StoreUint32(x.reg.stateWord(d.index), regTerminated)
	atomic.AddUint64(x.reg.gen, 1)
	x.reg.unlock()
	x.sweep(ctx, d)
	return nil
}

// terminateDead terminates the mailbox of a dead owner.
func (x *SHM) terminateDead(d *dest) {
	if x.reg.state(d.index) == regTerminated {
		return
	}
	x.opts.log.Info("shmex: owner of mailbox died; terminating it", "exchange", x.name, "mailbox", d.id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	x.terminate(ctx, d)
}

// sweep answers the requests queued in d's closed ring, if no live receiver
// is attached to it (that one answers them as it reads).
func (x *SHM) sweep(ctx context.Context, d *dest) {
	c, err := d.r.NewConsumer(x.life.id(), ring.Park)
	if err != nil {
		return
	}
	defer c.Close()
	var m Message
	var stuck map[UUID]bool // requesters whose full mailbox refused an answer
	c.Sweep(func(typ int32, p []byte) bool {
		if !Kind(typ).IsRequest() {
			return false
		}
		if m.Decode(p) != nil || stuck[m.Src.UUID] {
			return true
		}
		if err := x.answerTerminated(ctx, d.id, &m); err != nil && !errors.Is(err, ErrBadEntityID) && !errors.Is(err, ErrMailboxClosed) {
			// Waiting again for the same full mailbox would make a
			// terminate of n queued requests take n steps.
			if stuck == nil {
				stuck = make(map[UUID]bool)
			}
			stuck[m.Src.UUID] = true
			x.opts.log.Warn("shmex: could not answer the requests of a sender to a terminated mailbox", "exchange", x.name, "mailbox", d.id, "sender", m.Src, "err", err)
		}
		return true
	})
}

// answerTerminated answers the request m, found queued in the terminated
// mailbox of id, with an error response, waiting a short while for space in
// the sender's mailbox.
func (x *SHM) answerTerminated(ctx context.Context, id EntityID, m *Message) error {
	m.SetErrorResponse(m, &RemoteError{Kind: ErrorKindMailboxTerminated, Message: "mailbox " + id.String() + " was terminated"})
	step, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := x.send(step, m, true)
	return err
}

// ownerDied terminates the mailbox of d, whose owner a send found dead,
// and fails the send.
func (x *SHM) ownerDied(d *dest) error {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	if !x.pin(d) {
		x.last.CompareAndSwap(d, nil)
		return errRetired
	}
	x.terminateDead(d)
	x.unpin(d)
	return fmt.Errorf("%w: %v (its owner died)", ErrMailboxClosed, d.id)
}
