package agent

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// call is one request in flight, from its registration to its completion.
// Its life:
//
//  1. start: registered in its endpoint's table under its tag (and, for a
//     caller about to wait, with the receive token taken), then sent; a
//     failed send completes it at once.
//  2. The response is routed to it by whoever holds the receive token
//     (deliver), or it fails locally: its caller's context ends (wait),
//     [Future.Cancel], its handle's Close, the status watcher seeing its
//     agent gone, the endpoint's close.
//  3. complete: removed from the table and finished, exactly once, under
//     ep.mu, by whoever removed it; its waiter (if any) is woken.
//  4. Its owner reads the outcome and recycles what it owns: a pooled call
//     (Call, Ping, Shutdown) goes back to the pool with its message; a
//     Future keeps both, for the action that reuses it after
//     [Future.Release] (a large message is let go).
//
// Ownership of the Message: a call always owns exactly one Message, msg:
// the request it encodes and sends; after the send, a free buffer that the
// receive token's holder swaps for the one it received the call's
// response into (no copy, no allocation); after completion by a response,
// that response.
type call struct {
	ep   *endpoint
	h    *Handle
	tag  exchange.UUID
	dest exchange.EntityID
	kind exchange.Kind // of the request

	msg *exchange.Message // see above; guarded by ep.mu once sent

	// phase tells deliver whether the send has returned (phaseSent): only
	// then may it take the request's buffer. A response that arrives
	// sooner (phaseEarly) leaves the request to its sender, which
	// recycles it.
	phase atomic.Uint32

	// inc is the incarnation of dest's mailbox that the request was
	// delivered to, with incKnown set: a restart that follows means no
	// answer will come. Written once by the sender after the send, read by
	// the watcher.
	inc atomic.Uint64

	done atomic.Bool // the call is complete; set under ep.mu

	// Set under ep.mu before done; read by the owner after done.
	resp bool  // msg holds the response
	err  error // a local failure, or nil

	// Guarded by ep.mu.
	waiter    *waiter       // the goroutine waiting for the call, or nil
	doneCh    chan struct{} // made by Future.Done, closed at completion
	deadSince int64         // monotonic ns when the watcher first saw dest not active, or 0
	leads     bool          // the call's owner holds the receive token
	pooled    bool          // from the call pool: recycled by its owner
}

// monoStart anchors the monotonic clock readings kept as int64 (a
// time.Time is three words).
var monoStart = time.Now()

// monoNow returns the monotonic time in ns since monoStart; never 0.
func monoNow() int64 { return int64(time.Since(monoStart)) + 1 }

const (
	phaseSending = iota // the send has not returned
	phaseSent           // the send returned: msg is a free buffer
	phaseEarly          // answered before the send returned
)

const incKnown = 1 << 32

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// callPool recycles the calls of Call, Ping and Shutdown with their
// Messages: a synchronous call allocates nothing in steady state.
var callPool = sync.Pool{New: func() any { return &call{pooled: true, msg: new(exchange.Message)} }}

// newCall returns a pooled call to h's agent, with its request's envelope
// filled in.
func (h *Handle) newCall(kind exchange.Kind) *call {
	c := callPool.Get().(*call)
	h.initCall(c, kind)
	return c
}

// initCall prepares c (pooled and reset, or zero in a new Future) for a
// new request of kind to h's agent: the call's fields and its request's
// envelope. Field by field: assigning a whole struct that holds pointers
// costs a bulk write barrier while the GC runs. Each field is written from
// its source, never copied from a field just written: a 16-byte load of
// what two 8-byte stores (a tag) or a 17-byte copy (an id) just wrote
// stalls on store forwarding, which made this function 8% of a pipelined
// client's time (perf).
func (h *Handle) initCall(c *call, kind exchange.Kind) {
	ep := h.ep
	m := c.msg
	if m == nil {
		m = getMsg()
		c.msg = m
	}
	dest := h.target.Load()
	n := ep.nextTag()
	// One assignment per statement: a tuple assignment of ids copies them
	// to temporaries on the stack first, and reading a 17-byte temporary
	// back stalls the same way.
	c.ep = ep
	c.h = h
	c.dest = *dest
	c.kind = kind
	ep.putTag(&c.tag, n)
	// Every field of the request, as resetMsg and then the envelope would
	// (TestInitCallMsg), without resetMsg's zero ids and tags, which the
	// compiler copies from just-zeroed memory.
	m.Kind = kind
	m.Src = ep.id
	m.Dest = *dest
	m.Label = h.label
	m.Terminate = false
	ep.putTag(&m.Tag, n)
	m.Action = m.Action[:0]
	m.Args = m.Args[:0]
	m.Result = m.Result[:0]
	m.ErrorKind = m.ErrorKind[:0]
	m.ErrorMessage = m.ErrorMessage[:0]
}

// free recycles the pooled call c once its owner is done with it.
func (c *call) free() {
	if !c.pooled {
		return
	}
	c.reset()
	callPool.Put(c)
}

// reset makes c, complete and out of the table, a call that may start
// again: its message is kept unless it grew large (dropped then, so as not
// to pin large buffers; initCall takes a pooled one).
func (c *call) reset() {
	if m := c.msg; m != nil && msgBytes(m) > maxPooledBytes {
		c.msg = nil
	}
	c.ep, c.h, c.err = nil, nil, nil
	c.deadSince = 0
	c.resp, c.leads = false, false
	c.phase.Store(phaseSending)
	c.inc.Store(0)
	c.done.Store(false)
}

// start registers c and sends its request; lead says that the caller
// waits for c right away, and takes the receive token when it is free, so
// that the caller receives its own response. On a failed send c is
// complete with the error, which start returns.
func (c *call) start(ctx context.Context, lead bool) error {
	ep := c.ep
	inc, useInc := uint32(0), false
	if ep.incSender == nil && ep.reopener != nil {
		// Before the send, when the exchange cannot say where the send
		// went: a restart in between makes the call fail (spuriously)
		// rather than wait for an answer that never comes.
		if n, err := ep.reopener.Incarnation(ctx, c.dest); err == nil {
			inc, useInc = n, true
		}
	}
	m := c.msg
	if err := ep.register(c, lead); err != nil {
		return err
	}
	var err error
	if ep.incSender != nil {
		var n uint32
		if n, err = ep.incSender.SendIncarnation(ctx, m); err == nil && n != exchange.IncarnationUnknown {
			inc, useInc = n, true
		}
	} else {
		err = ep.x.Send(ctx, m)
	}
	if useInc {
		c.inc.Store(incKnown | uint64(inc))
	}
	if !c.phase.CompareAndSwap(phaseSending, phaseSent) {
		// Answered before the send returned: the response took c.msg's
		// place, and the request is the sender's to recycle.
		putMsg(m)
	}
	if err != nil {
		err = sendErr(c.dest, err)
		ep.failSend(c, err)
		return err
	}
	return nil
}

// wait waits until c is complete (nil) or ctx is done (ctx's error; c is
// left pending). On a client's endpoint the waiting caller receives from
// the mailbox itself, routing whatever arrives, when nobody else does
// (see receive.go).
func (c *call) wait(ctx context.Context) error {
	if c.done.Load() {
		return nil
	}
	return c.ep.await(ctx, c)
}

// waitOrCancel is wait for a caller that gives up on c when ctx ends: c is
// then complete with ctx's error (unless it completed meanwhile).
func (c *call) waitOrCancel(ctx context.Context) {
	if err := c.wait(ctx); err != nil {
		c.ep.fail(c, err)
	}
}

// completeLocked completes c, which the caller has just removed from the
// table: with a local failure err, or (err nil) with the response in
// c.msg. It wakes c's waiter, closes its Done channel, and interrupts the
// receive of c's owner if c failed under it. ep.mu is held. Storing done
// is its last touch of c: the owner of a pooled call may recycle it as
// soon as it sees done, without the lock.
func (c *call) completeLocked(err error) {
	ep, h, w, ch, interrupt := c.ep, c.h, c.waiter, c.doneCh, c.leads && err != nil
	c.err = err
	c.done.Store(true)
	// After done: a Handle.Close that sees the handle idle sees its
	// futures complete.
	if h.inflight--; h.inflight == 0 && h.idle != nil {
		close(h.idle)
		h.idle = nil
	}
	if w != nil {
		w.signal() // the waiter deregisters under ep.mu: still ours
	}
	if ch != nil {
		close(ch)
	}
	if interrupt {
		ep.recv.interruptLocked() // the owner is receiving: it must see this
	}
}

// isDone reports whether c is complete.
func (c *call) isDone() bool { return c.done.Load() }

// doneChan returns a channel closed when c is complete.
func (c *call) doneChan() <-chan struct{} {
	if c.done.Load() {
		return closedCh
	}
	ep := c.ep
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if c.done.Load() {
		return closedCh
	}
	if c.doneCh == nil {
		c.doneCh = make(chan struct{})
	}
	return c.doneCh
}

// outcome returns the error of the complete call c, local or remote (a
// ping's or a shutdown's: no result to decode).
func (c *call) outcome() error {
	if c.err != nil {
		return c.err
	}
	if c.resp && c.msg.IsError() {
		return remoteErr(c.msg)
	}
	return nil
}

// decodeResult returns the result of the complete action call c, decoded
// with codec, or its error.
func decodeResult[T any](c *call, codec Codec[T]) (T, error) {
	if err := c.outcome(); err != nil {
		var zero T
		return zero, err
	}
	v, err := decodeArg(codec, c.msg.Result, codecBlobs(codec)) // blob.go: a proxied result is read in place
	if err != nil {
		var zero T
		err = decodeMismatch(fmt.Sprintf("agent: result of action %q from %v", c.msg.Action, c.dest), reflect.TypeFor[T](), c.msg.Result, err) // explain.go
		return zero, &kindError{sentinel: ErrBadArguments, remote: err}
	}
	return v, nil
}

// waiter is a goroutine waiting for its call (and, on a client's endpoint,
// for the receive token): woken by the call's completion or by the token
// being handed to it.
type waiter struct {
	ch      chan struct{} // capacity 1; signalled under ep.mu
	c       *call
	removed bool // guarded by ep.mu: taken out of the followers by another goroutine
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

// signal wakes w; ep.mu is held.
func (w *waiter) signal() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}
