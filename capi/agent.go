//go:build linux && cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// agentObj is a shmex_agent: an agent served from C by a receive/reply loop
// over its mailbox. Receiving answers pings and shutdown requests itself and
// hands action requests to the caller as requestObj values, which are
// answered from any thread. Receivers take turns (sem): the mailbox has one
// consumer, and its receive buffer m is reused.
type agentObj struct {
	node
	ex  *exchangeObj
	id  exchange.EntityID
	mb  exchange.Mailbox
	sem chan struct{}    // held by the receiving thread
	m   exchange.Message // receive buffer, under sem
	// ctx is cancelled by a shutdown (request or local) and by close: it
	// ends the receivers' waits.
	ctx     context.Context
	cancel  context.CancelFunc
	stopped atomic.Bool
	bufs    []cbuf // under mu: the C buffers of answered requests, for the next ones
}

// Request buffers are reused: a served request cost a malloc and a free.
// At most maxFreeBufs of at most maxFreeBuf bytes are kept per agent.
const (
	maxFreeBufs = 16
	maxFreeBuf  = 64 << 10
)

// takeBuf returns a C buffer for a request: a kept one, or an empty one.
func (a *agentObj) takeBuf() cbuf {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.bufs)
	if n == 0 {
		return cbuf{}
	}
	b := a.bufs[n-1]
	a.bufs[n-1] = cbuf{}
	a.bufs = a.bufs[:n-1]
	return b
}

// giveBuf keeps b for a later request, or frees it (too large, enough
// kept, or the agent closed: C may no longer receive).
func (a *agentObj) giveBuf(b cbuf) {
	a.mu.Lock()
	if !a.node.closed && len(a.bufs) < maxFreeBufs && b.cap <= maxFreeBuf {
		a.bufs = append(a.bufs, b)
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	b.free()
}

// openAgent registers a new agent (id nil) or takes over the mailbox of id,
// and becomes its receiver.
func (e *exchangeObj) openAgent(behavior string, implements []string, name string, id *exchange.EntityID) (*agentObj, uint64, error) {
	var aid exchange.EntityID
	if id == nil {
		var err error
		if aid, err = e.registerAgent(behavior, implements, name); err != nil {
			return nil, 0, err
		}
	} else {
		aid = *id
		if err := validID(aid); err != nil {
			return nil, 0, err
		}
		if !aid.IsAgent() {
			return nil, 0, fmt.Errorf("%w: %v is not an agent id", errInval, aid)
		}
		st, err := e.x.Status(e.ctx, aid)
		if err != nil {
			return nil, 0, err
		}
		switch st {
		case exchange.StatusMissing:
			b, err := behaviorOf(behavior, implements)
			if err != nil {
				return nil, 0, err
			}
			opts := []exchange.RegisterOption{exchange.WithID(aid)}
			if name != "" {
				opts = append(opts, exchange.WithName(name))
			}
			if _, err := e.x.RegisterAgent(e.ctx, b, opts...); err != nil {
				return nil, 0, err
			}
		case exchange.StatusTerminated:
			return nil, 0, fmt.Errorf("%w: agent %v is terminated", exchange.ErrMailboxClosed, aid)
		}
	}
	mb, err := e.x.Mailbox(e.ctx, aid)
	if err != nil {
		if id == nil {
			e.x.Terminate(e.ctx, aid)
		}
		return nil, 0, err
	}
	a := &agentObj{ex: e, id: aid, mb: mb, sem: make(chan struct{}, 1)}
	a.ctx, a.cancel = context.WithCancel(e.ctx)
	h, err := adopt(e, a, kindAgent)
	if err != nil {
		a.cancel()
		mb.Close()
		e.x.Terminate(e.ctx, aid)
		return nil, 0, err
	}
	return a, h, nil
}

// shutdown stops the agent: receivers return errShutdown from now on.
func (a *agentObj) shutdown() {
	a.stopped.Store(true)
	a.cancel()
}

// release runs after the agent's unanswered requests were failed (they are
// its children): it stops receiving, terminates the mailbox (the exchange
// answers requests still queued) and closes the receiving client once no
// receiver uses it.
func (a *agentObj) release() error {
	a.shutdown()
	err := a.ex.x.Terminate(a.ex.ctx, a.id)
	a.sem <- struct{}{} // wait for a receiver to leave; keep it: no one receives again
	if cerr := a.mb.Close(); err == nil {
		err = cerr
	}
	a.mu.Lock() // closed is set: giveBuf keeps no more
	bufs := a.bufs
	a.bufs = nil
	a.mu.Unlock()
	for _, b := range bufs {
		b.free()
	}
	return err
}

// recv waits up to ns for the next action request, answering pings and
// shutdown requests on the way.
func (a *agentObj) recv(ns int64) (*requestObj, uint64, error) {
	ctx, cancel := timeout(a.ctx, ns)
	defer cancel()
	select {
	case a.sem <- struct{}{}:
	default:
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, 0, a.recvErr(ctx, ctx.Err())
		}
	}
	defer func() { <-a.sem }()
	for {
		if a.stopped.Load() {
			return nil, 0, errShutdown
		}
		if err := a.mb.Recv(ctx, &a.m); err != nil {
			if errors.Is(err, exchange.ErrBadMessage) {
				continue // dropped by the exchange; look for the next one
			}
			return nil, 0, a.recvErr(ctx, err)
		}
		switch a.m.Kind {
		case exchange.KindActionRequest:
			return a.newRequest(&a.m)
		case exchange.KindPingRequest:
			a.respond(&a.m)
		case exchange.KindShutdownRequest:
			a.respond(&a.m)
			// Academy terminates an agent's mailbox when it exits: requests
			// still queued are answered with errors by the exchange.
			a.shutdown()
			a.ex.x.Terminate(a.ex.ctx, a.id)
			return nil, 0, errShutdown
		default:
			// A response: an agent served from C makes its calls through
			// a client of its own, never from its agent mailbox.
			slog.Debug("shmex: agent dropped a message it does not serve", "agent", a.id, "kind", a.m.Kind)
		}
	}
}

func (a *agentObj) recvErr(ctx context.Context, err error) error {
	switch {
	case a.stopped.Load():
		if a.closed() {
			return errClosed
		}
		return errShutdown
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return fmt.Errorf("%w: no request", errTimedOut)
	}
	return err
}

func (a *agentObj) closed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.node.closed
}

// respond sends the plain response to a ping or shutdown request.
func (a *agentObj) respond(req *exchange.Message) {
	resp := msgPool.Get().(*exchange.Message)
	resp.SetResponse(req, nil)
	if err := a.ex.x.Send(a.ex.ctx, resp); err != nil {
		slog.Debug("shmex: agent response not delivered", "agent", a.id, "to", req.Src, "err", err)
	}
	msgPool.Put(resp)
}

// requestObj is a shmex_request: an action request received by an agent,
// to answer once. Its action name and arguments are in C memory (buf) that C
// reads until the answer.
type requestObj struct {
	node
	a        *agentObj
	hdr      exchange.Message // the request without its arguments, for the response
	buf      cbuf
	msg      cmsg // over buf
	answered atomic.Bool
}

func (a *agentObj) newRequest(m *exchange.Message) (*requestObj, uint64, error) {
	r := &requestObj{a: a, buf: a.takeBuf()}
	var err error
	if r.msg, err = copyToC(&r.buf, m); err != nil {
		a.giveBuf(r.buf)
		a.fail(m, exchange.ErrorKindGeneric, err.Error())
		return nil, 0, err
	}
	r.hdr.Kind, r.hdr.Tag, r.hdr.Src, r.hdr.Dest, r.hdr.Label = m.Kind, m.Tag, m.Src, m.Dest, m.Label
	r.hdr.Action = append(r.hdr.Action[:0], m.Action...)
	h, err := adopt(a, r, kindRequest)
	if err != nil {
		a.giveBuf(r.buf)
		a.fail(m, agent.ErrorKindShuttingDown, "the agent is closing")
		return nil, 0, err
	}
	return r, h, nil
}

// fail sends an error response to req.
func (a *agentObj) fail(req *exchange.Message, kind, msg string) error {
	if kind == "" {
		kind = exchange.ErrorKindGeneric
	}
	resp := msgPool.Get().(*exchange.Message)
	resp.SetErrorResponse(req, &exchange.RemoteError{Kind: kind, Message: msg})
	err := a.ex.x.Send(a.ex.ctx, resp)
	msgPool.Put(resp)
	return err
}

// reply answers the request with result and frees it.
func (r *requestObj) reply(result []byte) error {
	if !r.answered.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: request already answered", errBadHandle)
	}
	resp := msgPool.Get().(*exchange.Message)
	resp.SetResponse(&r.hdr, result)
	err := r.a.ex.x.Send(r.a.ex.ctx, resp)
	msgPool.Put(resp)
	closeObject(r)
	return err
}

// failRequest answers the request with an error and frees it.
func (r *requestObj) failRequest(kind, msg string) error {
	if !r.answered.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: request already answered", errBadHandle)
	}
	err := r.a.fail(&r.hdr, kind, msg)
	closeObject(r)
	return err
}

// release fails the request if nobody answered it (its agent is closing),
// and gives its C memory back to the agent (C must not read it after the
// answer, as shmex.h says).
func (r *requestObj) release() error {
	if r.answered.CompareAndSwap(false, true) {
		r.a.fail(&r.hdr, agent.ErrorKindShuttingDown, "the agent closed without answering")
	}
	r.a.giveBuf(r.buf)
	r.buf = cbuf{}
	return nil
}
