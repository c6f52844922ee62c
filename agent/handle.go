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
	closed bool // guarded by ep.mu
	wg     sync.WaitGroup
}

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

func (h *Handle) newCall(kind exchange.Kind) (*call, *exchange.Message) {
	return h.initCall(new(call), kind)
}

// initCall fills c (embedded in a Future, to save an allocation) for a new
// request and returns the request.
func (h *Handle) initCall(c *call, kind exchange.Kind) (*call, *exchange.Message) {
	dest := h.AgentID()
	*c = call{ep: h.ep, h: h, tag: exchange.NewTag(), label: h.label, dest: dest, kind: kind, done: make(chan struct{})}
	m := h.ep.getMsg()
	m.Kind, m.Tag, m.Src, m.Dest, m.Label = kind, c.tag, h.ep.id, dest, h.label
	return c, m
}

// ActionRaw sends a request for action with args (raw MessagePack, copied
// before it returns) and returns a future of the raw result.
func (h *Handle) ActionRaw(ctx context.Context, action string, args []byte) (*Future[[]byte], error) {
	return ActionCodec(ctx, h, action, args, rawCodec{}, rawCodec{})
}

// Ping sends a ping and returns the round-trip time once the agent
// answered. A ctx done first cancels the ping and returns ctx's error.
func (h *Handle) Ping(ctx context.Context) (time.Duration, error) {
	c, m := h.newCall(exchange.KindPingRequest)
	if err := h.ep.send(ctx, c, m); err != nil {
		return 0, err
	}
	c.wait(ctx)
	if err := c.outcome(); err != nil {
		return 0, err
	}
	return c.rtt, nil
}

// Shutdown asks the agent to shut down and waits for its acknowledgement
// (the agent acknowledges when it starts shutting down, not when it is
// done; see [Manager.Shutdown] to wait for that). An agent already
// terminated counts as shut down: nil.
func (h *Handle) Shutdown(ctx context.Context) error {
	c, m := h.newCall(exchange.KindShutdownRequest)
	err := h.ep.send(ctx, c, m)
	if err == nil {
		c.wait(ctx)
		err = c.outcome()
	}
	if errors.Is(err, ErrAgentTerminated) {
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
	h.ep.mu.Lock()
	h.closed = true
	h.ep.mu.Unlock()
	h.ep.wakeListener(true)
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	h.ep.cancelCalls(func(c *call) bool { return c.h == h }, ErrHandleClosed)
	<-done
	return ctx.Err()
}

// wait waits until c is complete; when ctx ends first it cancels c, which
// then completes with ctx's error (unless it completed meanwhile).
func (c *call) wait(ctx context.Context) {
	if err := c.ep.await(ctx, c); err != nil {
		if c.ep.take(c.tag) == c {
			c.complete(nil, err)
		} else {
			<-c.done
		}
	}
}

// outcome returns the error of the complete call c, local or remote, and
// recycles its response (of a ping or a shutdown: no result to decode).
func (c *call) outcome() error {
	err := c.err
	if c.resp != nil {
		if c.resp.IsError() {
			err = remoteErr(c.resp)
		}
		c.ep.putMsg(c.resp)
		c.resp = nil
	}
	return err
}

// Future is the result of an action, to come. Wait for it with
// [Future.Wait], poll it with [Future.Result] or [Future.Done], or give up
// on it with [Future.Cancel]. A Future is safe for concurrent use.
type Future[T any] struct {
	c     *call
	codec Codec[T]
	call  call // what c points to, when the future made the call

	once sync.Once
	val  T
	err  error
}

// Done returns a channel closed when the future is complete.
func (f *Future[T]) Done() <-chan struct{} {
	if !f.c.isDone() {
		f.c.ep.wakeListener(true)
	}
	return f.c.done
}

// Wait waits until the future is complete or ctx is done, and returns the
// action's result or error. A ctx done first returns ctx's error and
// leaves the future pending (Cancel it to stop waiting for good).
func (f *Future[T]) Wait(ctx context.Context) (T, error) {
	if err := f.c.ep.await(ctx, f.c); err != nil {
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
	f.c.ep.wakeListener(true)
	var zero T
	return zero, ErrPending
}

// Cancel gives up on the future locally: it completes with [ErrCanceled]
// unless it was already complete, and a later response is dropped. The
// agent is not told (it may still run the action). It reports whether it
// cancelled the future.
func (f *Future[T]) Cancel() bool {
	if f.c.ep.take(f.c.tag) == f.c {
		f.c.complete(nil, ErrCanceled)
		return true
	}
	return false
}

// Tag returns the tag of the request, which its response carries.
func (f *Future[T]) Tag() exchange.UUID { return f.c.tag }

func (f *Future[T]) result() (T, error) {
	f.once.Do(func() {
		c := f.c
		switch {
		case c.err != nil:
			f.err = c.err
		case c.resp.IsError():
			f.err = remoteErr(c.resp)
		default:
			if err := decodePayload(f.codec, c.resp.Result, &f.val); err != nil { // blob.go: reads a proxied result in place
				f.err = &kindError{sentinel: ErrBadArguments, remote: err}
			}
		}
		if c.resp != nil {
			c.ep.putMsg(c.resp)
			c.resp = nil
		}
	})
	return f.val, f.err
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
// until ctx is done.
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
	return startAction(ctx, h, name, in, inc, outc, true)
}

// startAction sends the request; lazy says that the caller may not wait
// for the future soon, so the listener should receive for it.
func startAction[Out, In any](ctx context.Context, h *Handle, name string, in In, inc Codec[In], outc Codec[Out], lazy bool) (*Future[Out], error) {
	f := &Future[Out]{codec: outc}
	c, m := h.initCall(&f.call, exchange.KindActionRequest)
	f.c = c
	m.SetAction(name)
	var err error
	if m.Args, err = inc.Append(m.Args[:0], in); err != nil {
		h.ep.putMsg(m)
		return nil, err
	}
	if err := h.ep.send(ctx, c, m); err != nil {
		return nil, err
	}
	if lazy {
		h.ep.wakeListener(false)
	}
	return f, nil
}

// Call is the synchronous form of [Action]: it sends the request and waits
// for the result until ctx is done (then the call is cancelled and ctx's
// error returned).
func Call[Out, In any](ctx context.Context, h *Handle, name string, in In) (Out, error) {
	var zero Out
	inc, err := CodecFor[In]()
	if err != nil {
		return zero, err
	}
	outc, err := CodecFor[Out]()
	if err != nil {
		return zero, err
	}
	f, err := startAction(ctx, h, name, in, inc, outc, false)
	if err != nil {
		return zero, err
	}
	f.c.wait(ctx)
	return f.result()
}
