package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shmex/shmex/exchange"
)

// receiver is the receiving side of a client's endpoint: the receive token
// and the listener. The token is held by whoever calls mb.Recv, and its
// holder routes everything that arrives to its calls:
//
//   - A caller that waits for its call takes the token when it is free and
//     receives until its own response is there (no goroutine hand-off on
//     the way back); Call takes it already when it registers.
//   - Callers that find it taken wait as followers; a holder that leaves
//     hands the token to the first follower whose call is still pending
//     (leader/followers).
//   - When calls are pending and nobody holds the token, the listener
//     takes it: after listenerDelay without a token holder (a timer armed
//     by the holder that leaves), or at once when a future is looked at
//     without waiting ([Future.Done], [Future.Result]) or a handle closes.
//     The listener is a goroutine started for the occasion; it receives
//     until no call is pending or a caller wants the token, so responses
//     never pile up in the mailbox.
//
// A holder is interrupted (its own call failed locally, a caller wants the
// token from the listener) by a wake-up message sent to the mailbox itself:
// the holder receives with its caller's context, untouched, so receiving
// allocates nothing whatever context the caller passes.
//
// Invariants (under ep.mu): at most one holder (leading); holder is the
// call whose owner holds the token (holder.leads set), or nil for the
// listener; a follower is in followers until another goroutine takes it
// out (removed set: the hand-off of the token, or a close) or it leaves by
// itself.
type receiver struct {
	ep *endpoint
	mb exchange.Mailbox // nil: the endpoint does not receive (a runtime's)

	// Guarded by ep.mu.
	leading   bool
	holder    *call     // the call whose owner holds the token; nil: the listener
	seq       uint64    // counts the takes of the token
	followers []*waiter // callers waiting for their calls and for the token
	armed     bool      // the listener's timer is armed
	armSeq    uint64    // seq when it was armed
	urgent    bool      // at the next release, the listener takes over
	waking    bool      // a wake-up message is on its way
	closed    bool
	leaveCh   chan struct{} // closed when the token is released after close

	// The token's holder's: the mailbox's batch receive (or nil), and
	// the receive buffers.
	batch exchange.BatchReceiver
	bufs  [recvBatch]*exchange.Message

	timer *time.Timer       // the listener's delay
	wake  *exchange.Message // the wake-up message, read-only once made
}

// recvBatch is how many messages the token's holder takes from the
// mailbox at once, at most: with many calls in flight, the responses
// that arrived meanwhile cost one receive and one lock.
const recvBatch = 16 // at most 32: a bit mask counts them

// listenerDelay is how long the listener leaves the receive token to
// callers that may still wait for their futures before it receives itself.
const listenerDelay = time.Millisecond

// wakeSendTimeout bounds a wake-up's wait for room in the mailbox: a full
// mailbox has a holder with messages to read, which looks at its state
// after each.
const wakeSendTimeout = 10 * time.Millisecond

func (r *receiver) init(ep *endpoint, mb exchange.Mailbox) {
	r.ep, r.mb = ep, mb
	r.timer = time.AfterFunc(time.Hour, r.onTimer)
	r.timer.Stop()
	r.wake = &exchange.Message{Kind: exchange.KindPingResponse, Tag: exchange.NewTag(), Src: ep.id, Dest: ep.id}
	r.batch, _ = mb.(exchange.BatchReceiver)
	for i := range r.bufs {
		if i > 0 && r.batch == nil {
			break // one Recv at a time: lead uses bufs[:1]
		}
		r.bufs[i] = new(exchange.Message)
	}
}

// takeLocked gives the token to c's owner. ep.mu is held; the token is
// free.
func (r *receiver) takeLocked(c *call) {
	if r.leading || r.closed {
		return
	}
	r.leading, r.holder = true, c
	r.seq++
	c.leads = true
}

// releaseLocked gives the token back: to the first follower whose call is
// pending, else, when calls are pending, to the listener (at once when
// urgent, else after listenerDelay). ep.mu is held.
func (r *receiver) releaseLocked() {
	if c := r.holder; c != nil {
		c.leads = false
	}
	r.leading, r.holder = false, nil
	if r.closed {
		if r.leaveCh != nil {
			close(r.leaveCh)
			r.leaveCh = nil
		}
		return
	}
	for len(r.followers) > 0 {
		w := r.followers[0]
		copy(r.followers, r.followers[1:])
		r.followers[len(r.followers)-1] = nil
		r.followers = r.followers[:len(r.followers)-1]
		w.removed = true
		if !w.c.done.Load() {
			r.takeLocked(w.c)
			w.signal()
			return
		}
	}
	if r.ep.calls.len() > 0 {
		if r.urgent {
			r.urgent = false
			r.startListenerLocked()
		} else {
			r.armLocked()
		}
	}
}

// pendingLocked notes that a call nobody may wait for soon is pending: the
// listener receives for it unless someone takes the token first.
func (r *receiver) pendingLocked() {
	if !r.leading {
		r.armLocked()
	}
}

// armLocked arms the listener's timer, unless it is armed.
func (r *receiver) armLocked() {
	if !r.armed && !r.closed {
		r.armed, r.armSeq = true, r.seq
		r.timer.Reset(listenerDelay)
	}
}

// onTimer runs listenerDelay after the timer was armed: the listener takes
// the token if nobody took it meanwhile and calls are pending.
func (r *receiver) onTimer() {
	ep := r.ep
	ep.mu.Lock()
	defer ep.mu.Unlock()
	r.armed = false
	switch {
	case r.closed || r.leading || ep.calls.len() == 0:
		// Nothing to receive for, or a holder whose release re-arms.
	case r.seq != r.armSeq:
		r.armLocked() // a caller took the token meanwhile: it may again
	default:
		r.startListenerLocked()
	}
}

// hurry has the listener receive at once for the calls pending (a future
// looked at without waiting, a handle closing).
func (r *receiver) hurry() {
	if r.mb == nil {
		return
	}
	ep := r.ep
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if r.closed || ep.calls.len() == 0 {
		return
	}
	if r.leading {
		r.urgent = true
		return
	}
	r.startListenerLocked()
}

// startListenerLocked gives the free token to a new listener goroutine.
func (r *receiver) startListenerLocked() {
	if r.leading || r.closed {
		return
	}
	r.leading, r.holder = true, nil
	r.seq++
	go r.lead(context.Background(), nil)
}

// interruptLocked makes the token's holder look at its state again: a
// wake-up message to the mailbox. ep.mu is held.
func (r *receiver) interruptLocked() {
	if r.mb == nil || !r.leading || r.waking || r.closed {
		return
	}
	r.waking = true
	go r.sendWake()
}

func (r *receiver) sendWake() {
	ep := r.ep
	ep.mu.Lock()
	r.waking = false // before the send: a later interrupt sends again
	ep.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), wakeSendTimeout)
	defer cancel()
	if err := ep.x.Send(ctx, r.wake); err != nil {
		ep.log.Debug("agent: could not wake the receiver", "mailbox", ep.id, "err", err)
	}
}

// closeLocked stops the listener for good. ep.mu is held.
func (r *receiver) closeLocked() {
	if r.closed || r.mb == nil {
		return
	}
	r.closed = true
	r.timer.Stop()
	for _, w := range r.followers {
		w.removed = true
	}
	clear(r.followers)
	r.followers = r.followers[:0]
}

// waitLeave waits until nobody holds the token of the closed receiver.
func (r *receiver) waitLeave() {
	ep := r.ep
	ep.mu.Lock()
	if !r.leading {
		ep.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	r.leaveCh = ch
	ep.mu.Unlock()
	<-ch
}

// removeFollowerLocked removes w from the followers, if it is there.
func (r *receiver) removeFollowerLocked(w *waiter) {
	for i, f := range r.followers {
		if f == w {
			copy(r.followers[i:], r.followers[i+1:])
			r.followers[len(r.followers)-1] = nil
			r.followers = r.followers[:len(r.followers)-1]
			return
		}
	}
}

// await waits until c is complete (nil) or ctx is done (ctx's error, c
// still pending). On a client's endpoint, its caller takes the receive
// token when it is free and receives itself; otherwise it waits as a
// follower, woken by c's completion or by the token handed to it.
func (ep *endpoint) await(ctx context.Context, c *call) error {
	r := &ep.recv
	if c.leads {
		// Given the token when it registered (only this goroutine
		// wrote leads since): receive at once.
		if err := r.lead(ctx, c); err != nil && !c.done.Load() {
			return err
		}
		return nil
	}
	ep.mu.Lock()
	for {
		if c.done.Load() {
			ep.mu.Unlock()
			return nil
		}
		if r.mb != nil && (c.leads || !r.leading && !r.closed) {
			r.takeLocked(c)
			ep.mu.Unlock()
			if err := r.lead(ctx, c); err != nil && !c.done.Load() {
				return err
			}
			return nil
		}
		w := waiterPool.Get().(*waiter)
		w.c = c
		c.waiter = w
		follow := r.mb != nil && !r.closed
		if follow {
			r.followers = append(r.followers, w)
			if r.holder == nil {
				r.interruptLocked() // the listener: it hands the token over
			}
		}
		ep.mu.Unlock()
		var err error
		select {
		case <-w.ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		ep.mu.Lock()
		c.waiter = nil
		if follow && !w.removed {
			r.removeFollowerLocked(w)
		}
		*w = waiter{ch: w.ch}
		select {
		case <-w.ch:
		default:
		}
		waiterPool.Put(w)
		if c.leads && (err != nil || c.done.Load()) {
			r.releaseLocked() // handed the token, but no longer wants it
		}
		if err != nil && !c.done.Load() {
			ep.mu.Unlock()
			return err
		}
	}
}

// lead receives, holding the token, and routes what arrives until c is
// complete, or ctx is done (its error), or the mailbox fails (the
// endpoint is then closed and the error returned). For c nil (the
// listener) it receives until no call is pending or a caller wants the
// token. It releases the token before it returns.
//
// It receives in batches (exchange.BatchReceiver, when the mailbox is
// one): what is in the mailbox, up to recvBatch messages, then routes
// the responses among them under one lock. A batch is routed whole
// before lead looks at c again, so nothing received is left behind.
func (r *receiver) lead(ctx context.Context, c *call) error {
	ep := r.ep
	// The receive buffers are the receiver's, and only the token's
	// holder touches them: no lock. A delivery swaps the buffer it routes
	// for the free one of the call it completes (its request's, sent).
	// Between two receives every buffer reads "nothing received" (see
	// receive).
	bufs := r.bufs[:]
	if r.batch == nil {
		bufs = bufs[:1]
	}
	var err error
	for {
		if c != nil && c.done.Load() || c == nil && r.listenerDone() {
			break
		}
		n, rerr := r.receive(ctx, bufs)
		if n == 0 {
			if errors.Is(rerr, exchange.ErrBadMessage) {
				ep.log.Warn("agent: dropped a bad message", "mailbox", ep.id, "err", rerr)
				clean(bufs[0]) // what did decode of it
				continue
			}
			if cerr := ctx.Err(); cerr != nil {
				err = cerr
				break
			}
			if errors.Is(rerr, exchange.ErrMailboxClosed) {
				err = fmt.Errorf("%w: mailbox %v closed", ErrHandleClosed, ep.id)
			} else {
				err = fmt.Errorf("%w: mailbox %v: %w", ErrHandleClosed, ep.id, rerr)
			}
			ep.close(err)
			break
		}
		// Requests and wake-ups first, without the lock. rerr, when set,
		// is ms[n-1]'s: received, but not whole.
		responses := 0
		for i, m := range bufs[:n] {
			var merr error
			if i == n-1 {
				merr = rerr
			}
			switch {
			case m.Kind.IsRequest():
				// Answered whole or not (the answer replaces the
				// payload), as the runtime answers a broken request:
				// its sender must not wait out its timeout.
				ep.answerStray(m)
				bufs[i] = recycled(m)
			case merr != nil && m.Kind == exchange.KindInvalid:
				ep.log.Warn("agent: dropped a bad message", "mailbox", ep.id, "err", merr)
				bufs[i] = recycled(m)
			case m.Tag == r.wake.Tag && m.Src == ep.id:
				bufs[i] = recycled(m) // a wake-up: look at the state again
			default:
				if merr != nil {
					ep.log.Debug("agent: a response could not be received whole", "mailbox", ep.id, "err", merr)
				}
				responses++
			}
		}
		if responses == 0 {
			continue
		}
		ep.mu.Lock()
		var dropped uint32 // bit i: bufs[i] went to no call
		for i, m := range bufs[:n] {
			if m.Kind == exchange.KindInvalid {
				continue // not a response: done with above
			}
			var merr error
			if i == n-1 {
				merr = rerr
			}
			next, ok := ep.deliverLocked(m, merr)
			if !ok {
				dropped |= 1 << i
				continue // m stays ours
			}
			bufs[i] = recycled(next) // do not keep large buffers
		}
		for i, m := range bufs[:n] {
			if dropped&(1<<i) != 0 { // rare: logged under the lock, while the buffers are ours
				ep.log.Debug("agent: dropping a response to no call in flight", "mailbox", ep.id, "msg", m)
				bufs[i] = recycled(m)
			}
		}
		done := c != nil && c.done.Load()
		stop := done || c == nil && (ep.calls.len() == 0 || len(r.followers) > 0)
		if done {
			// Our own response (or failure): leave at once, in the same
			// critical section (the buffers are the next holder's).
			r.releaseLocked()
		}
		ep.mu.Unlock()
		if done {
			return nil
		}
		if stop {
			break
		}
	}
	ep.mu.Lock()
	r.releaseLocked()
	ep.mu.Unlock()
	return err
}

// clean marks m "nothing received".
func clean(m *exchange.Message) { m.Kind, m.Tag = exchange.KindInvalid, exchange.UUID{} }

// recycled is m made clean for the next receive, or a pooled buffer in its
// place when m's buffers grew past maxPooledBytes: a receive buffer kept
// by the receiver would otherwise pin the largest message it ever decoded
// (a dropped late response, a stray request), one per buffer of the batch.
func recycled(m *exchange.Message) *exchange.Message {
	if m == nil || msgBytes(m) > maxPooledBytes {
		return getMsg()
	}
	clean(m)
	return m
}

// receive receives into bufs[0], and into the rest of bufs what is there
// already when the mailbox can batch; it returns how many it filled, and
// the error of the last one (received, but not whole) or, with 0, why
// nothing was received.
//
// Every buffer in bufs must read "nothing received" (clean): a message
// that does not decode whole may leave only part of the envelope.
func (r *receiver) receive(ctx context.Context, bufs []*exchange.Message) (int, error) {
	return recvInto(ctx, r.mb, r.batch, bufs)
}

// recvInto receives from mb into bufs: with batch (mb's, when it is an
// exchange.BatchReceiver) what is there, up to len(bufs); else one
// message with Recv. It returns how many it filled, and the error of the
// last one (received, but not whole) or, with 0, why nothing was
// received. The client's receiver and the runtime's leader share it.
func recvInto(ctx context.Context, mb exchange.Mailbox, batch exchange.BatchReceiver, bufs []*exchange.Message) (int, error) {
	if batch != nil {
		return batch.RecvBatch(ctx, bufs)
	}
	m := bufs[0]
	err := mb.Recv(ctx, m)
	if err != nil && m.Kind == exchange.KindInvalid {
		return 0, err
	}
	return 1, err
}

// listenerDone reports whether the listener has nothing more to do.
func (r *receiver) listenerDone() bool {
	r.ep.mu.Lock()
	defer r.ep.mu.Unlock()
	return r.ep.calls.len() == 0 || len(r.followers) > 0 || r.closed
}
