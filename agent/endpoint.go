package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// endpoint is a mailbox that handles send requests from and receive
// responses in: a Client's, or a Runtime's own. It holds the calls in
// flight, keyed by tag, and is fed responses by the one goroutine that
// receives from the mailbox (the client's listener or the runtime's serve
// loop).
//
// Invariants:
//   - A call is completed exactly once, by whoever removes it from calls
//     under mu (deliver, cancel, the status watcher, close); the others
//     find it gone and do nothing.
//   - While calls is non-empty, exactly one watcher goroutine runs
//     (watching), and it exits only when it finds calls empty under mu.
//   - Once closeErr is set no call is added.
type endpoint struct {
	x     exchange.Exchange
	id    exchange.EntityID
	log   *slog.Logger
	poll  time.Duration
	grace time.Duration

	mu       sync.Mutex
	calls    map[exchange.UUID]*call
	closeErr error
	watching bool

	// Receiving, for a client's endpoint (mb != nil); a runtime's endpoint
	// is fed by the runtime's serve loop instead. The receive token recvMu
	// is held by whoever calls mb.Recv: a caller waiting for its own call
	// (no goroutine hand-off on the way back), or the listener goroutine,
	// which receives for futures nobody waits on.
	mb         exchange.Mailbox
	recvMu     sync.Mutex
	released   chan struct{}      // guarded by mu: closed and replaced at a token release with relWaiters
	relWaiters int                // guarded by mu: goroutines that may wait on released
	recvStop   context.CancelFunc // guarded by mu: interrupts the token holder's Recv
	// A reusable receive context for holders whose own context can never
	// end (no allocation per wait); replaced once cancelled. Guarded by mu.
	quietCtx    context.Context
	quietCancel context.CancelFunc
	kick        chan struct{} // wakes the listener (capacity 1)
	urgent      atomic.Bool   // the listener should receive now, not after listenerDelay
	stop        chan struct{} // closed when the client closes

	msgs sync.Pool // *exchange.Message
}

// listenerDelay is how long the listener leaves the receive token to
// callers that may still wait for their futures before it receives itself.
const listenerDelay = time.Millisecond

func newEndpoint(x exchange.Exchange, id exchange.EntityID, o *options) *endpoint {
	return &endpoint{x: x, id: id, log: o.log, poll: o.statusPoll, grace: o.grace, calls: map[exchange.UUID]*call{},
		released: make(chan struct{}), kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

func (ep *endpoint) getMsg() *exchange.Message {
	if m, ok := ep.msgs.Get().(*exchange.Message); ok {
		return m
	}
	return new(exchange.Message)
}

func (ep *endpoint) putMsg(m *exchange.Message) {
	if m == nil || cap(m.Args)+cap(m.Result) > 64<<10 {
		return // do not pin large buffers
	}
	m.Reset()
	ep.msgs.Put(m)
}

// call is a request in flight.
type call struct {
	ep    *endpoint
	h     *Handle
	tag   exchange.UUID
	label exchange.UUID
	dest  exchange.EntityID
	kind  exchange.Kind // of the request
	sent  time.Time
	done  chan struct{}

	// Set once, before done is closed.
	resp *exchange.Message // the response (owned), or nil
	err  error             // a local failure, or nil
	rtt  time.Duration

	deadSince time.Time // guarded by ep.mu: first time the watcher saw dest not active
	inc       uint32    // incarnation of dest's mailbox when the request was sent
	incKnown  bool      // inc is known (the exchange is an exchange.Reopener)
}

// register adds c to the calls in flight; it fails when the endpoint or
// the handle is closed.
func (ep *endpoint) register(c *call) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closeErr != nil {
		return ep.closeErr
	}
	if c.h.closed {
		return ErrHandleClosed
	}
	ep.calls[c.tag] = c
	c.h.wg.Add(1)
	if !ep.watching {
		ep.watching = true
		go ep.watch()
	}
	return nil
}

// take removes and returns the call of tag, or nil.
func (ep *endpoint) take(tag exchange.UUID) *call {
	ep.mu.Lock()
	c := ep.calls[tag]
	if c != nil {
		delete(ep.calls, tag)
	}
	ep.mu.Unlock()
	return c
}

// interruptLocked interrupts the Recv of the token holder, so that it
// looks again whether it still has to receive. ep.mu must be held.
func (ep *endpoint) interruptLocked() {
	if ep.recvStop != nil {
		ep.recvStop()
		if ep.quietCtx != nil && ep.quietCtx.Err() != nil {
			ep.quietCtx, ep.quietCancel = nil, nil
		}
	}
}

// complete finishes c, which the caller has taken. A call failed locally
// (err != nil: cancelled, timed out, its agent gone) may be the one the
// receiver waits for: the receiver is interrupted, after done is closed,
// so that it sees it.
func (c *call) complete(resp *exchange.Message, err error) {
	c.resp, c.err = resp, err
	if c.kind == exchange.KindPingRequest {
		c.rtt = time.Since(c.sent)
	}
	close(c.done)
	c.h.wg.Done()
	if err != nil {
		c.ep.mu.Lock()
		c.ep.interruptLocked()
		c.ep.mu.Unlock()
	}
}

// deliver hands the response m to its call. It reports whether it kept m
// (the caller must then use another Message).
func (ep *endpoint) deliver(m *exchange.Message) bool {
	ep.mu.Lock()
	c := ep.calls[m.Tag]
	if c == nil || c.label != m.Label {
		ep.mu.Unlock()
		ep.log.Debug("agent: dropping a response to no call in flight", "mailbox", ep.id, "msg", m)
		return false
	}
	delete(ep.calls, m.Tag)
	ep.mu.Unlock()
	if m.Kind != c.kind.ResponseKind() {
		c.complete(nil, fmt.Errorf("%w: a %v answered a %v", exchange.ErrBadMessage, m.Kind, c.kind))
		return false
	}
	c.complete(m, nil)
	return true
}

// send registers c and sends its request m (then recycled). On a failed
// send, c is removed and the error returned.
func (ep *endpoint) send(ctx context.Context, c *call, m *exchange.Message) error {
	if c.kind == exchange.KindPingRequest {
		c.sent = time.Now()
	}
	if r, ok := ep.x.(exchange.Reopener); ok {
		// Before the send: a restart between the two makes the call fail
		// (spuriously) rather than wait for an answer that never comes.
		if inc, err := r.Incarnation(ctx, c.dest); err == nil {
			c.inc, c.incKnown = inc, true
		}
	}
	if err := ep.register(c); err != nil {
		ep.putMsg(m)
		return err
	}
	err := ep.x.Send(ctx, m)
	ep.putMsg(m)
	if err != nil {
		err = sendErr(c.dest, err)
		if ep.take(c.tag) == c {
			c.complete(nil, err)
		}
		return err
	}
	return nil
}

// sendErr maps an exchange send error to what a caller sees.
func sendErr(dest exchange.EntityID, err error) error {
	if errors.Is(err, exchange.ErrMailboxClosed) || errors.Is(err, exchange.ErrBadEntityID) {
		return fmt.Errorf("%w: %v: %w", ErrAgentTerminated, dest, err)
	}
	return err
}

// cancelCalls fails the calls for which match is true with err.
func (ep *endpoint) cancelCalls(match func(*call) bool, err error) {
	var taken []*call
	ep.mu.Lock()
	for tag, c := range ep.calls {
		if match(c) {
			delete(ep.calls, tag)
			taken = append(taken, c)
		}
	}
	ep.mu.Unlock()
	for _, c := range taken {
		c.complete(nil, err)
	}
}

// close fails every call in flight with err and refuses new ones.
func (ep *endpoint) close(err error) {
	ep.mu.Lock()
	if ep.closeErr == nil {
		ep.closeErr = err
	}
	ep.interruptLocked()
	ep.mu.Unlock()
	ep.cancelCalls(func(*call) bool { return true }, err)
}

// watch polls the status of the agents that calls in flight wait on, and
// fails the calls to an agent that stayed terminated (or missing) for the
// grace period: a request taken by a process that then died is never
// answered, and nothing else would tell its caller.
func (ep *endpoint) watch() {
	t := time.NewTicker(ep.poll)
	defer t.Stop()
	dests := map[exchange.EntityID]bool{}  // dest -> active
	incs := map[exchange.EntityID]uint32{} // dest -> incarnation
	reopener, _ := ep.x.(exchange.Reopener)
	for range t.C {
		ep.mu.Lock()
		if len(ep.calls) == 0 {
			ep.watching = false
			ep.mu.Unlock()
			return
		}
		clear(dests)
		clear(incs)
		for _, c := range ep.calls {
			dests[c.dest] = true
		}
		ep.mu.Unlock()

		var fatal error
		for d := range dests {
			ctx, cancel := context.WithTimeout(context.Background(), ep.poll)
			st, err := ep.x.Status(ctx, d)
			cancel()
			switch {
			case errors.Is(err, exchange.ErrExchangeClosed):
				fatal = err
			case err != nil:
				ep.log.Debug("agent: status poll failed", "agent", d, "err", err)
			default:
				dests[d] = st == exchange.StatusActive
			}
			if reopener != nil {
				ctx, cancel := context.WithTimeout(context.Background(), ep.poll)
				if inc, err := reopener.Incarnation(ctx, d); err == nil {
					incs[d] = inc
				}
				cancel()
			}
		}
		if fatal != nil {
			ep.cancelCalls(func(*call) bool { return true }, fmt.Errorf("%w: %w", ErrHandleClosed, fatal))
			continue
		}

		now := time.Now()
		var failed []*call
		ep.mu.Lock()
		for tag, c := range ep.calls {
			active, seen := dests[c.dest]
			if inc, ok := incs[c.dest]; ok && c.incKnown && inc > c.inc {
				// The run that the request went to ended, and the agent
				// was restarted under its id: no answer will come.
				delete(ep.calls, tag)
				failed = append(failed, c)
				continue
			}
			switch {
			case !seen || active:
				c.deadSince = time.Time{}
			case c.deadSince.IsZero() && ep.grace > 0:
				c.deadSince = now
			case c.deadSince.IsZero() || now.Sub(c.deadSince) >= ep.grace:
				delete(ep.calls, tag)
				failed = append(failed, c)
			}
		}
		ep.mu.Unlock()
		for _, c := range failed {
			c.complete(nil, fmt.Errorf("%w: %v is no longer active and did not answer", ErrAgentTerminated, c.dest))
		}
	}
}

// done reports whether c is complete.
func (c *call) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// await waits until c is complete or ctx is done (ctx's error). On a
// client's endpoint the waiting caller receives from the mailbox itself
// when nobody else does.
func (ep *endpoint) await(ctx context.Context, c *call) error {
	for {
		if c.isDone() {
			return nil
		}
		if ep.mb == nil {
			select {
			case <-c.done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if ep.recvMu.TryLock() {
			err := ep.receive(ctx, c)
			ep.release()
			if err != nil && !c.isDone() {
				return err
			}
			continue
		}
		rel := ep.waitRelease()
		if ep.recvMu.TryLock() { // released meanwhile
			ep.recvMu.Unlock()
			continue
		}
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-rel: // the receiver left: take over
		}
	}
}

// receive receives and routes messages, holding the receive token, until
// c is complete (or, for c == nil, until no call is in flight), ctx is
// done (its error) or the mailbox closes (the endpoint is then closed and
// the error returned).
func (ep *endpoint) receive(ctx context.Context, c *call) error {
	m := ep.getMsg()
	defer func() { ep.putMsg(m) }()
	for {
		var rctx context.Context
		var cancel context.CancelFunc
		own := ctx.Done() != nil
		ep.mu.Lock()
		if own {
			rctx, cancel = context.WithCancel(ctx)
		} else {
			if ep.quietCtx == nil {
				ep.quietCtx, ep.quietCancel = context.WithCancel(context.Background())
			}
			rctx, cancel = ep.quietCtx, ep.quietCancel
		}
		ep.recvStop = cancel
		idle := len(ep.calls) == 0
		ep.mu.Unlock()
		for {
			if c != nil && c.isDone() || c == nil && idle {
				if own {
					cancel()
				}
				return nil
			}
			err := ep.mb.Recv(rctx, m)
			if err == nil {
				m = ep.route(m)
				if c == nil {
					ep.mu.Lock()
					idle = len(ep.calls) == 0
					ep.mu.Unlock()
				}
				continue
			}
			if errors.Is(err, exchange.ErrBadMessage) {
				ep.log.Warn("agent: dropped a bad message", "mailbox", ep.id, "err", err)
				continue
			}
			interrupted := rctx.Err() != nil
			if own {
				cancel()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if interrupted {
				break // interrupted: look again, with a fresh context
			}
			if !errors.Is(err, exchange.ErrMailboxClosed) {
				err = fmt.Errorf("%w: mailbox %v: %w", ErrHandleClosed, ep.id, err)
			} else {
				err = fmt.Errorf("%w: mailbox %v closed", ErrHandleClosed, ep.id)
			}
			ep.close(err)
			return err
		}
	}
}

// strayAnswerTimeout bounds how long a client waits for room in the mailbox
// of a peer that sent it a request, to answer it with an error.
const strayAnswerTimeout = 100 * time.Millisecond

// route handles a message received in a client's mailbox and returns the
// Message to receive the next one into.
func (ep *endpoint) route(m *exchange.Message) *exchange.Message {
	switch {
	case m.Kind.IsResponse():
		if ep.deliver(m) {
			return ep.getMsg()
		}
	case m.Kind.IsRequest():
		// Answer a stray request, but never wait long for the sender's
		// mailbox: the receive token is held, and its holder's calls
		// depend on it.
		m.SetErrorResponse(m, &exchange.RemoteError{Kind: ErrorKindNotAnAgent, Message: "mailbox " + ep.id.String() + " is a client"})
		ctx, cancel := context.WithTimeout(context.Background(), strayAnswerTimeout)
		if err := ep.x.Send(ctx, m); err != nil {
			ep.log.Debug("agent: client could not answer a request", "to", m.Dest, "err", err)
		}
		cancel()
	}
	return m
}

// waitRelease returns a channel closed at the next release of the receive
// token. A caller that failed to take the token must try once more after
// this (the holder may have released it in between).
func (ep *endpoint) waitRelease() <-chan struct{} {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.relWaiters++
	return ep.released
}

// release gives the receive token back and wakes whoever waits for it; the
// listener takes over if calls are still in flight.
func (ep *endpoint) release() {
	ep.mu.Lock()
	ep.recvStop = nil
	ep.recvMu.Unlock()
	if ep.relWaiters > 0 {
		close(ep.released)
		ep.released = make(chan struct{})
		ep.relWaiters = 0
	}
	pending := len(ep.calls) > 0
	ep.mu.Unlock()
	if pending {
		ep.wakeListener(false)
	}
}

// wakeListener wakes the listener; urgent asks it to receive at once
// rather than after listenerDelay.
func (ep *endpoint) wakeListener(urgent bool) {
	if ep.mb == nil {
		return
	}
	if urgent {
		ep.urgent.Store(true)
	}
	select {
	case ep.kick <- struct{}{}:
	default:
	}
}

func (ep *endpoint) pending() bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return len(ep.calls) > 0 && ep.closeErr == nil
}

// listen is the client's listener goroutine: it receives for the calls in
// flight that no caller waits on (futures polled or waited on through
// Done, or not looked at yet), so that responses never pile up in the
// mailbox. It leaves callers listenerDelay to take the token first.
func (ep *endpoint) listen(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-ep.kick:
		case <-ep.stop:
			return
		}
		for ep.pending() {
			if !ep.urgent.Load() {
				t.Reset(listenerDelay)
			wait:
				for {
					select {
					case <-t.C:
						break wait
					case <-ep.kick:
						if ep.urgent.Load() {
							t.Stop()
							break wait
						}
					case <-ep.stop:
						return
					}
				}
			}
			ep.urgent.Store(false)
			if ep.recvMu.TryLock() {
				err := ep.receive(ctx, nil)
				ep.release()
				if err != nil {
					return
				}
				continue
			}
			rel := ep.waitRelease()
			if ep.recvMu.TryLock() {
				ep.recvMu.Unlock()
				continue
			}
			select {
			case <-rel:
			case <-ep.stop:
				return
			}
		}
	}
}
