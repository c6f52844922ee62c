//go:build linux

package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Request-response scenarios over the shared-memory exchange share one
// shape: a child joins the exchange, registers an agent, tells its id and
// answers requests until a ShutdownRequest; the parent registers a client
// and sends requests to that agent.

// serveAgent is the child side: it registers an agent named behavior in x,
// tells its id, and answers each ActionRequest with the result answer
// returns for it (nil: the request's own arguments) until a
// ShutdownRequest. A receive loop that makes no progress for ChildTimeout
// fails.
func serveAgent(x *exchange.SHM, behavior string, answer func(m *exchange.Message) ([]byte, error)) error {
	ctx := context.Background()
	aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: behavior})
	if err != nil {
		return err
	}
	mb, err := x.Mailbox(ctx, aid)
	if err != nil {
		return err
	}
	if err := Ready(aid.UUID.String()); err != nil {
		return err
	}
	var m exchange.Message
	wd := NewWatchdog()
	defer wd.Stop()
	for {
		err := mb.Recv(wd, &m)
		wd.Progress()
		if err != nil {
			return err
		}
		switch m.Kind {
		case exchange.KindShutdownRequest:
			return nil
		case exchange.KindActionRequest:
			result, err := answer(&m)
			if err != nil {
				return err
			}
			if result == nil {
				result = m.Args
			}
			m.SetResponse(&m, result)
			if err := x.Send(ctx, &m); err != nil {
				return err
			}
		}
	}
}

// msgPeer is the parent side: the child serving an agent, the agent's
// id, a client of this process with its mailbox, and a context that ends
// when the child exits or when no round trip completes for the child
// timeout (so that a dead or silent peer fails the measurement instead of
// hanging it).
type msgPeer struct {
	x     *exchange.SHM
	child *Child
	aid   exchange.EntityID
	cid   exchange.EntityID
	mb    exchange.Mailbox
	ctx   context.Context // ends when the child exits
	stop  context.CancelFunc
	wd    *Watchdog         // ctx, ended also by ChildTimeout without a round trip
	limit time.Duration     // the child timeout
	req   *exchange.Message // an ActionRequest from cid to aid
	resp  exchange.Message
	done  bool // closed
}

// startMsgPeer starts the child role with args, waits for its agent's id
// and registers a client in x.
func startMsgPeer(ctx context.Context, env *Env, x *exchange.SHM, role string, args ...string) (*msgPeer, error) {
	child, err := env.StartChild(ctx, role, args...)
	if err != nil {
		return nil, err
	}
	p := &msgPeer{x: x, child: child}
	fail := func(err error) (*msgPeer, error) {
		child.Close()
		return nil, err
	}
	line, err := child.Expect(ctx, "ready")
	if err != nil {
		return fail(err)
	}
	u, err := exchange.ParseUUID(strings.TrimSpace(line))
	if err != nil {
		return fail(fmt.Errorf("bench: agent said %q: %w", line, err))
	}
	p.aid = exchange.EntityID{UUID: u, Role: exchange.RoleAgent}
	if p.cid, err = x.RegisterClient(ctx); err != nil {
		return fail(err)
	}
	if p.mb, err = x.Mailbox(ctx, p.cid); err != nil {
		return fail(err)
	}
	p.ctx, p.stop = child.Context(ctx)
	p.limit = env.ChildTimeout
	p.wd = newWatchdog(p.ctx, p.limit)
	p.req = exchange.NewActionRequest(p.cid, p.aid, "work", nil)
	return p, nil
}

// call sends the request with args and waits for its response, which must
// carry a result of resultLen bytes (any length when negative).
func (p *msgPeer) call(args []byte, resultLen int) error {
	p.req.Args = args
	if err := p.x.Send(p.wd, p.req); err != nil {
		return p.silent(err)
	}
	if err := p.mb.Recv(p.wd, &p.resp); err != nil {
		return fmt.Errorf("bench: response: %w", p.silent(err))
	}
	p.wd.Progress()
	if err := p.resp.Err(); err != nil {
		return err
	}
	if p.resp.Tag != p.req.Tag || p.resp.Kind != exchange.KindActionResponse || resultLen >= 0 && len(p.resp.Result) != resultLen {
		return fmt.Errorf("bench: unexpected response %v", &p.resp)
	}
	return nil
}

// silent explains err when the watchdog, not the child's exit, ended it.
func (p *msgPeer) silent(err error) error {
	if p.wd.Err() != nil && p.ctx.Err() == nil {
		return fmt.Errorf("bench: agent %s sent nothing for %v: %w", p.child.Role, p.limit, err)
	}
	return err
}

// close shuts the agent down, waits for the child and returns its error.
// Later calls do nothing.
func (p *msgPeer) close(ctx context.Context) error {
	if p.done {
		return nil
	}
	p.done = true
	p.wd.Stop()
	p.x.Send(ctx, exchange.NewShutdownRequest(p.cid, p.aid, false))
	err := p.child.Wait()
	p.child.Close()
	p.stop()
	return err
}
