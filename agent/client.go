package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/shmex/shmex/exchange"
)

// Client is a user of agents (Academy's user client): it registers its own
// mailbox in the exchange and makes handles to agents that all share it.
// Responses are routed to their calls by tag and label, by the caller that
// waits (see [Call]) or, for futures nobody waits on, by a listener
// goroutine started when needed. Close it when done.
type Client struct {
	ep   *endpoint
	once sync.Once
}

// NewClient registers a client mailbox in x.
// Options: [WithName], [WithLogger], [WithStatusPoll],
// [WithTerminatedGrace], [WithIdle].
func NewClient(ctx context.Context, x exchange.Exchange, opts ...Option) (*Client, error) {
	o := applyOptions(opts)
	var ropts []exchange.RegisterOption
	if o.name != "" {
		ropts = append(ropts, exchange.WithName(o.name))
	}
	id, err := x.RegisterClient(ctx, ropts...)
	if err != nil {
		return nil, err
	}
	mb, err := openMailbox(ctx, x, id, &o) // blob.go: proxies stay in place for the decoders
	if err != nil {
		x.Terminate(context.WithoutCancel(ctx), id)
		return nil, err
	}
	c := &Client{ep: newEndpoint(x, id, &o)}
	c.ep.recv.init(c.ep, mb)
	return c, nil
}

// ID returns the client's id.
func (c *Client) ID() exchange.EntityID { return c.ep.id }

// Exchange returns the exchange the client is registered in.
func (c *Client) Exchange() exchange.Exchange { return c.ep.x }

// Handle returns a new handle to the agent id, using the client's mailbox.
func (c *Client) Handle(id exchange.EntityID) *Handle {
	return newHandle(c.ep, fixedTarget(id))
}

// Discover returns the ids of the active agents of behavior (or, with
// allowSubtypes, implementing it); see [exchange.Exchange.Discover].
func (c *Client) Discover(ctx context.Context, behavior string, allowSubtypes bool) ([]exchange.EntityID, error) {
	return c.ep.x.Discover(ctx, behavior, allowSubtypes)
}

// Close fails the calls of all the client's handles still in flight with
// [ErrHandleClosed] (close handles first to wait for them), terminates the
// client's mailbox and waits until no goroutine receives from it. It is
// idempotent.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		c.ep.close(ErrHandleClosed)
		err = c.ep.x.Terminate(context.Background(), c.ep.id)
		c.ep.recv.mb.Close()
		c.ep.recv.waitLeave()
		if errors.Is(err, exchange.ErrExchangeClosed) {
			err = nil
		}
	})
	return err
}
