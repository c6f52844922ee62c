package redisx

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// hybridMailbox is a receiving client of one of this node's mailboxes: it
// receives from the ring, into which its forwarder moves what other nodes
// send to the entity's Redis mailbox.
type hybridMailbox struct {
	h     *Hybrid
	inner exchange.Mailbox // the ring
	id    exchange.EntityID
	rmb   *mailbox // the Redis mailbox, nil when the entity is not in Redis

	stop    context.CancelFunc
	fwdDone chan struct{}
	closed  atomic.Bool

	mu       sync.Mutex         // guards what follows
	leftover []exchange.Message // what the forwarder could not put in the terminated ring
	left     chan struct{}      // closed when the forwarder has stopped after a terminate
	ended    bool               // the Redis mailbox was terminated to match the ring
}

var _ exchange.Mailbox = (*hybridMailbox)(nil)

func (hm *hybridMailbox) ID() exchange.EntityID { return hm.id }

// forward moves what arrives in the Redis mailbox into the ring, in order.
func (hm *hybridMailbox) forward(ctx context.Context) {
	defer close(hm.fwdDone)
	h := hm.h
	var m exchange.Message
	for {
		err := hm.rmb.Recv(ctx, &m)
		if errors.Is(err, exchange.ErrBadMessage) {
			h.rx.s.log.Warn("redisx: dropped a bad message from Redis", "mailbox", hm.id, "err", err)
			continue
		}
		if err != nil {
			if errors.Is(err, exchange.ErrMailboxClosed) && ctx.Err() == nil {
				close(hm.left) // terminated and drained
			}
			return
		}
		err = h.shm.Send(ctx, &m)
		switch {
		case err == nil:
			continue
		case errors.Is(err, exchange.ErrMailboxClosed):
			// The ring was terminated: keep the rest of the Redis mailbox
			// for the receiver's drain (its requests are answered by the
			// Redis side's terminate).
			if m.Kind.IsRequest() {
				// Answered from the message as decoded: no encoding
				// that could fail and drop it unanswered.
				hm.rmb.s().answer(ctx, hm.id.UUID, &m)
				continue
			}
			hm.mu.Lock()
			hm.leftover = append(hm.leftover, *m.Clone())
			hm.mu.Unlock()
			hm.endRedis()
			continue
		case ctx.Err() != nil:
			hm.rmb.unget() // not delivered: back to Redis at Close
			return
		default:
			h.rx.s.log.Warn("redisx: could not forward a message into the ring", "mailbox", hm.id, "err", err)
			hm.rmb.unget()
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// endRedis terminates the Redis mailbox once the ring is (once).
func (hm *hybridMailbox) endRedis() {
	hm.mu.Lock()
	done := hm.ended
	hm.ended = true
	hm.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hm.h.rx.o.outage+time.Second)
	defer cancel()
	if err := hm.h.rx.s.terminate(ctx, hm.id, false); err != nil {
		hm.h.rx.s.log.Warn("redisx: terminate the Redis mailbox of a terminated ring", "mailbox", hm.id, "err", err)
	}
}

// Recv implements [exchange.Mailbox.Recv]: the ring's next message. Once
// the ring is terminated and drained, what was still on its way from other
// nodes, then [exchange.ErrMailboxClosed].
func (hm *hybridMailbox) Recv(ctx context.Context, m *exchange.Message) error {
	err := hm.inner.Recv(ctx, m)
	if err == nil || !errors.Is(err, exchange.ErrMailboxClosed) || hm.closed.Load() || hm.rmb == nil {
		return err
	}
	hm.endRedis()
	select {
	case <-hm.left:
	case <-hm.fwdDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	hm.mu.Lock()
	defer hm.mu.Unlock()
	if len(hm.leftover) == 0 {
		return err
	}
	m.CopyFrom(&hm.leftover[0])
	hm.leftover = hm.leftover[1:]
	return nil
}

// Close implements [exchange.Mailbox.Close]: what the forwarder took and
// did not put in the ring goes back to the Redis mailbox.
func (hm *hybridMailbox) Close() error {
	hm.close(true)
	return nil
}

func (hm *hybridMailbox) close(forget bool) {
	if hm.closed.Swap(true) {
		return
	}
	hm.inner.Close()
	if hm.rmb != nil {
		hm.stop()
		<-hm.fwdDone
		ctx, cancel := context.WithTimeout(context.Background(), hm.h.rx.o.outage)
		hm.rmb.close(ctx, false)
		cancel()
	}
	if forget {
		hm.h.forget(hm)
	}
}
