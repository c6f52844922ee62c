package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Handle invokes the actions of one agent, pings it and shuts it down. It
// sends from, and receives responses in, the mailbox of the [Client] or
// [Runtime] that made it; any number of handles share that mailbox, told
// apart by their label. A Handle is safe for concurrent use.
//
// A handle is bound to its client or runtime: to pass it to another agent,
// pass its [Handle.AgentID] (an [exchange.EntityID] is a valid action
// argument) and make a handle there with [Runtime.Handle].
type Handle struct {
	ep     *endpoint
	target *atomic.Pointer[exchange.EntityID]
	label  exchange.UUID

	// Guarded by ep.mu.
	closed   bool
	inflight int           // calls registered and not complete
	idle     chan struct{} // made by Close while calls are in flight; closed when none is left

	spareMu sync.Mutex
	spare   []any // released futures (*Future[T], any T), for reuse by Action
}

// maxSpareFutures bounds the released futures a handle keeps for reuse.
const maxSpareFutures = 256

func newHandle(ep *endpoint, target *atomic.Pointer[exchange.EntityID]) *Handle {
	return &Handle{ep: ep, target: target, label: exchange.NewTag()}
}

func fixedTarget(id exchange.EntityID) *atomic.Pointer[exchange.EntityID] {
	p := new(atomic.Pointer[exchange.EntityID])
	p.Store(&id)
	return p
}

// AgentID returns the id of the agent this handle calls. For a handle from
// [Manager.Launch] it is the agent's current id, which changes when a
// launcher restarts the agent.
func (h *Handle) AgentID() exchange.EntityID { return *h.target.Load() }

// Source returns the id of the mailbox the handle's requests come from and
// its responses go to.
func (h *Handle) Source() exchange.EntityID { return h.ep.id }

// ActionRaw sends a request for action with args (raw MessagePack, copied
// before it returns) and returns a future of the raw result.
func (h *Handle) ActionRaw(ctx context.Context, action string, args []byte) (*Future[[]byte], error) {
	return ActionCodec(ctx, h, action, args, rawCodec{}, rawCodec{})
}

// Ping sends a ping and returns the round-trip time once the agent
// answered. A ctx done first cancels the ping and returns ctx's error.
func (h *Handle) Ping(ctx context.Context) (time.Duration, error) {
	c := h.newCall(exchange.KindPingRequest)
	defer c.free()
	sent := monoNow()
	if err := c.start(ctx, true); err != nil {
		return 0, err
	}
	c.waitOrCancel(ctx)
	rtt := time.Duration(monoNow() - sent)
	if err := c.outcome(); err != nil {
		return 0, err
	}
	return rtt, nil
}

// Shutdown asks the agent to shut down and waits for its acknowledgement
// (the agent acknowledges when it starts shutting down, not when it is
// done; see [Manager.Shutdown] to wait for that). An agent already
// terminated, or missing from the exchange, counts as shut down: nil.
func (h *Handle) Shutdown(ctx context.Context) error {
	c := h.newCall(exchange.KindShutdownRequest)
	defer c.free()
	err := c.start(ctx, true)
	if err == nil {
		c.waitOrCancel(ctx)
		err = c.outcome()
	}
	if errors.Is(err, ErrAgentTerminated) || errors.Is(err, exchange.ErrBadEntityID) {
		return nil
	}
	return err
}

// Close closes the handle: new calls fail with [ErrHandleClosed]; the
// futures in flight may still complete until ctx is done, and those still
// pending then are cancelled with [ErrHandleClosed]. With a ctx that is
// already done, Close cancels them at once. It returns ctx's error when it
// had to cancel some. Close never affects the agent, nor other handles.
func (h *Handle) Close(ctx context.Context) error {
	ep := h.ep
	ep.mu.Lock()
	h.closed = true
	if h.inflight == 0 {
		ep.mu.Unlock()
		return nil
	}
	if h.idle == nil {
		h.idle = make(chan struct{})
	}
	idle := h.idle
	ep.mu.Unlock()
	ep.recv.hurry()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	ep.cancelCalls(func(c *call) bool { return c.h == h }, ErrHandleClosed)
	<-idle
	return ctx.Err()
}

// Future is the result of an action, to come. Wait for it with
// [Future.Wait], poll it with [Future.Result] or [Future.Done], or give up
// on it with [Future.Cancel]. A Future is safe for concurrent use.
type Future[T any] struct {
	c     call
	codec Codec[T]

	once sync.Once // decodes the result for the first reader (result)
	val  T
	err  error
}

// maxKeptBytes bounds the buffers of the Message a future keeps for its
// next action (see result and Release): a handle keeps up to
// maxSpareFutures released futures, outside any pool the GC empties.
const maxKeptBytes = 4 << 10

// keepSmallMsg gives c's Message back to the pool when its buffers are
// over maxKeptBytes: a future keeps only a small one.
func (c *call) keepSmallMsg() {
	if m := c.msg; m != nil && msgBytes(m) > maxKeptBytes {
		putMsg(m)
		c.msg = nil
	}
}

// Done returns a channel closed when the future is complete.
func (f *Future[T]) Done() <-chan struct{} {
	ch := f.c.doneChan()
	if ch != closedCh {
		f.c.ep.recv.hurry()
	}
	return ch
}

// Wait waits until the future is complete or ctx is done, and returns the
// action's result or error. A ctx done first returns ctx's error and
// leaves the future pending (Cancel it to stop waiting for good).
func (f *Future[T]) Wait(ctx context.Context) (T, error) {
	if err := f.c.wait(ctx); err != nil {
		var zero T
		return zero, err
	}
	return f.result()
}

// Result returns the result without waiting: [ErrPending] while the future
// is not complete.
func (f *Future[T]) Result() (T, error) {
	if f.c.isDone() {
		return f.result()
	}
	f.c.ep.recv.hurry()
	var zero T
	return zero, ErrPending
}

// Cancel gives up on the future locally: it completes with [ErrCanceled]
// unless it was already complete, and a later response is dropped. The
// agent is not told (it may still run the action). It reports whether it
// cancelled the future.
func (f *Future[T]) Cancel() bool {
	ep := f.c.ep
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if !ep.calls.remove(&f.c) {
		return false
	}
	f.c.completeLocked(ErrCanceled)
	return true
}

// Tag returns the tag of the request, which its response carries.
func (f *Future[T]) Tag() exchange.UUID { return f.c.tag }

// Release gives the future back to its handle, which reuses it for a
// later action with the same result type: a pipeline that releases each
// future once it has read it allocates nothing per action. A pending
// future is cancelled first (see [Future.Cancel]). Release is optional:
// a future that is not released is garbage collected as usual.
//
// After Release the future is no longer the caller's: it must not be used
// again, by any goroutine, nor while another goroutine uses it (a reused
// future is another action's). A second Release is a no-op until then.
func (f *Future[T]) Release() {
	c := &f.c
	h := c.h
	if h == nil {
		return // released already
	}
	if !c.done.Load() {
		f.Cancel()
	}
	// Complete: out of the table, touched by nobody else (see
	// completeLocked), and its owner is done with it. Its Message stays
	// when it is small: the next action's request reuses it.
	c.keepSmallMsg()
	var zero T
	f.val, f.err, f.once = zero, nil, sync.Once{}
	f.codec = nil
	c.reset()
	c.waiter, c.doneCh = nil, nil
	h.spareMu.Lock()
	if len(h.spare) < maxSpareFutures {
		h.spare = append(h.spare, f)
	}
	h.spareMu.Unlock()
}

// spareFuture returns a future released to h with result type T, or a new
// one.
func spareFuture[T any](h *Handle) *Future[T] {
	h.spareMu.Lock()
	if n := len(h.spare); n > 0 {
		if f, ok := h.spare[n-1].(*Future[T]); ok {
			h.spare[n-1] = nil
			h.spare = h.spare[:n-1]
			h.spareMu.Unlock()
			return f
		}
	}
	h.spareMu.Unlock()
	return new(Future[T])
}

// result returns the result of the complete future, decoding it for the
// first reader.
func (f *Future[T]) result() (T, error) {
	f.once.Do(f.decode)
	return f.val, f.err
}

// errResultPanicked is what a future returns after the codec decoding its
// result panicked in an earlier reader.
var errResultPanicked = errors.New("agent: decoding the result panicked")

// decode decodes the result, once (result).
func (f *Future[T]) decode() {
	decoded := false
	defer func() {
		if !decoded { // a codec panicked: the panic goes on, later readers get an error
			var zero T
			f.val, f.err = zero, errResultPanicked
		}
	}()
	f.val, f.err = decodeResult(&f.c, f.codec)
	decoded = true
	// The future keeps a small Message, as a pooled call does, for the
	// request of the action that reuses it after Release: no trip through
	// the pool per action. A larger one goes back to the pool now (a read
	// future may be kept for long, or released to its handle).
	f.c.keepSmallMsg()
}

// rawCodec passes raw bytes through (a copy on decode).
type rawCodec struct{}

func (rawCodec) Append(b []byte, v []byte) ([]byte, error) { return append(b, v...), nil }
func (rawCodec) Decode(b []byte, v *[]byte) error          { *v = append((*v)[:0], b...); return nil }

// Action sends a request for the action name with the argument in to the
// handle's agent and returns a future of its result, of type Out:
//
//	f, err := agent.Action[int](ctx, h, "add", Pair{1, 2})
//
// In and Out need codecs ([CodecFor]; [ErrNoCodec] otherwise). The request
// is sent (or failed) before Action returns; a full mailbox makes it wait
// until ctx is done. The future is the one allocation of an action in
// steady state, none when futures are given back with [Future.Release].
func Action[Out, In any](ctx context.Context, h *Handle, name string, in In) (*Future[Out], error) {
	inc, err := CodecFor[In]()
	if err != nil {
		return nil, err
	}
	outc, err := CodecFor[Out]()
	if err != nil {
		return nil, err
	}
	return ActionCodec(ctx, h, name, in, inc, outc)
}

// ActionCodec is [Action] with explicit codecs.
func ActionCodec[Out, In any](ctx context.Context, h *Handle, name string, in In, inc Codec[In], outc Codec[Out]) (*Future[Out], error) {
	f := spareFuture[Out](h)
	f.codec = outc
	c := &f.c
	h.initCall(c, exchange.KindActionRequest)
	if err := encodeRequest(c, name, in, inc); err != nil {
		putMsg(c.msg)
		return nil, err
	}
	if err := c.start(ctx, false); err != nil {
		return nil, err
	}
	return f, nil
}

// encodeRequest fills c's request with the action name and the argument.
func encodeRequest[In any](c *call, name string, in In, inc Codec[In]) error {
	m := c.msg
	m.SetAction(name)
	var err error
	m.Args, err = inc.Append(m.Args[:0], in)
	return err
}

// Call is the synchronous form of [Action]: it sends the request and waits
// for the result until ctx is done (then the call is cancelled and ctx's
// error returned). In steady state it allocates nothing but what decoding
// the result needs ([]byte and string results are fresh values): the
// caller receives its own response when no other caller does.
func Call[Out, In any](ctx context.Context, h *Handle, name string, in In) (Out, error) {
	var out Out
	inc, err := CodecFor[In]()
	if err != nil {
		return out, err
	}
	outc, err := CodecFor[Out]()
	if err != nil {
		return out, err
	}
	c := h.newCall(exchange.KindActionRequest)
	defer c.free()
	if err := encodeRequest(c, name, in, inc); err != nil {
		return out, err
	}
	if err := c.start(ctx, true); err != nil {
		return out, err
	}
	c.waitOrCancel(ctx)
	return decodeResult(c, outc)
}
