package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/shmex/shmex/exchange"
)

// Client is a user of agents (Academy's user client): it registers its own
// mailbox in the exchange, makes handles to agents that all share it, and
// runs one listener goroutine that routes the responses to their calls by
// tag and label. Close it when done.
type Client struct {
	ep   *endpoint
	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// NewClient registers a client mailbox in x and starts its listener.
// Options: [WithName], [WithLogger], [WithStatusPoll],
// [WithTerminatedGrace].
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
	mb, err := openMailbox(ctx, x, id) // blob.go: proxies stay in place for the decoders
	if err != nil {
		x.Terminate(context.WithoutCancel(ctx), id)
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	c := &Client{ep: newEndpoint(x, id, &o), stop: stop, done: make(chan struct{})}
	c.ep.mb = mb
	go func() {
		defer close(c.done)
		c.ep.listen(lctx)
	}()
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
// client's mailbox and stops its listener. It is idempotent.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		c.ep.close(ErrHandleClosed)
		close(c.ep.stop)
		ctx := context.Background()
		err = c.ep.x.Terminate(ctx, c.ep.id)
		c.stop()
		c.ep.mb.Close()
		<-c.done
		c.ep.recvMu.Lock() // wait for a caller still receiving
		c.ep.recvMu.Unlock()
		if errors.Is(err, exchange.ErrExchangeClosed) {
			err = nil
		}
	})
	return err
}
