//go:build linux && cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// clientObj is a shmex_client: an agent.Client, whose mailbox its handles
// share.
type clientObj struct {
	node
	ex *exchangeObj
	cl *agent.Client
}

func (e *exchangeObj) openClient(name string) (*clientObj, uint64, error) {
	var opts []agent.Option
	if name != "" {
		opts = append(opts, agent.WithName(name))
	}
	cl, err := agent.NewClient(e.ctx, e.x, opts...)
	if err != nil {
		return nil, 0, err
	}
	c := &clientObj{ex: e, cl: cl}
	h, err := adopt(e, c, kindClient)
	if err != nil {
		cl.Close()
		return nil, 0, err
	}
	return c, h, nil
}

// release closes the agent.Client: calls still in flight (of handles closed
// just before, without waiting) fail, and its mailbox is terminated.
func (c *clientObj) release() error { return c.cl.Close() }

// handleObj is a shmex_handle: an agent.Handle on a client.
type handleObj struct {
	node
	h *agent.Handle
}

func (c *clientObj) openHandle(id exchange.EntityID) (*handleObj, uint64, error) {
	if err := validID(id); err != nil {
		return nil, 0, err
	}
	if !id.IsAgent() {
		return nil, 0, fmt.Errorf("%w: %v is not an agent", errInval, id)
	}
	ho := &handleObj{h: c.cl.Handle(id)}
	h, err := adopt(c, ho, kindHandle)
	if err != nil {
		ho.h.Close(expired())
		return nil, 0, err
	}
	return ho, h, nil
}

// expired returns a context that is already done.
func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// release cancels what is still pending: by the time it runs, the handle's
// futures were freed (closeObject closes children first), and
// closeHandle has waited for them if asked to.
func (ho *handleObj) release() error {
	if err := ho.h.Close(expired()); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// closeHandle lets the handle's futures complete for up to ns, then closes
// it (cancelling what is still pending, freeing the futures).
func closeHandle(ho *handleObj, ns int64) error {
	if ns != 0 {
		ctx, cancel := timeout(context.Background(), ns)
		for _, f := range children(ho, kindFuture) {
			f.(*futureObj).f.Wait(ctx)
		}
		cancel()
	}
	return closeObject(ho)
}

// call runs the action and waits up to ns for its result.
func (ho *handleObj) call(action string, args []byte, ns int64) ([]byte, error) {
	if action == "" {
		return nil, fmt.Errorf("%w: empty action name", errInval)
	}
	if ns == 0 {
		return nil, fmt.Errorf("%w: a call with timeout 0 cannot complete (use shmex_action and poll its future)", errInval)
	}
	ctx, cancel := timeout(context.Background(), ns)
	defer cancel()
	f, err := ho.h.ActionRaw(ctx, action, args)
	if err != nil {
		return nil, err
	}
	res, err := f.Wait(ctx)
	if err != nil && ctx.Err() != nil {
		f.Cancel() // abandoned: a late result is dropped
	}
	return res, err
}

// futureObj is a shmex_future: the future of one action.
type futureObj struct {
	node
	f *agent.Future[[]byte]
}

func (ho *handleObj) action(action string, args []byte) (*futureObj, uint64, error) {
	if action == "" {
		return nil, 0, fmt.Errorf("%w: empty action name", errInval)
	}
	f, err := ho.h.ActionRaw(context.Background(), action, args)
	if err != nil {
		return nil, 0, err
	}
	fo := &futureObj{f: f}
	h, err := adopt(ho, fo, kindFuture)
	if err != nil {
		f.Cancel()
		return nil, 0, err
	}
	return fo, h, nil
}

// release cancels the future if it is still pending.
func (fo *futureObj) release() error {
	fo.f.Cancel()
	return nil
}

func (fo *futureObj) done() bool {
	select {
	case <-fo.f.Done():
		return true
	default:
		return false
	}
}

// wait waits up to ns for the future's outcome.
func (fo *futureObj) wait(ns int64) ([]byte, error) {
	if ns == 0 {
		res, err := fo.f.Result()
		if errors.Is(err, agent.ErrPending) {
			return nil, fmt.Errorf("%w: the future is pending", errTimedOut)
		}
		if err != nil && fo.isClosed() {
			return nil, fmt.Errorf("%w: the future was freed, or its handle closed", errClosed)
		}
		return res, err
	}
	// A future that is complete already (in a pipeline, most are) is
	// taken without setting up a timer: Wait with a context that is done
	// returns its outcome, or errNotYet while it is pending. (Not Result:
	// on a pending future it hurries the receive token's holder, a
	// wake-up message per take, which cost Python's round trip 10x.)
	if res, err := fo.f.Wait(notYet{}); !errors.Is(err, errNotYet) {
		if err != nil && fo.isClosed() {
			return nil, fmt.Errorf("%w: the future was freed, or its handle closed", errClosed)
		}
		return res, err
	}
	ctx, cancel := timeout(context.Background(), ns)
	defer cancel()
	res, err := fo.f.Wait(ctx)
	if err != nil && fo.isClosed() {
		return nil, fmt.Errorf("%w: the future was freed, or its handle closed, while waited on", errClosed)
	}
	return res, err
}

// notYet is a context that is done from the start, whose error is
// errNotYet: a Wait with it returns the outcome of a complete future and
// errNotYet for a pending one, which it leaves pending.
type notYet struct{}

// errNotYet is notYet's error.
var errNotYet = errors.New("capi: not complete yet")

func (notYet) Deadline() (time.Time, bool) { return time.Time{}, true }
func (notYet) Done() <-chan struct{}       { return closedChan }
func (notYet) Err() error                  { return errNotYet }
func (notYet) Value(any) any               { return nil }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (fo *futureObj) isClosed() bool {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return fo.closed
}

func (ho *handleObj) ping(ns int64) (time.Duration, error) {
	ctx, cancel := timeout(context.Background(), ns)
	defer cancel()
	return ho.h.Ping(ctx)
}

func (ho *handleObj) shutdown(ns int64) error {
	ctx, cancel := timeout(context.Background(), ns)
	defer cancel()
	return ho.h.Shutdown(ctx)
}
