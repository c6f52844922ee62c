package agent

import (
	"context"

	"github.com/shmex/shmex/exchange"
)

// WaitFor waits until at least one agent of behavior, or implementing it
// (as Discover with allowSubtypes finds them), is active in the client's
// exchange, and returns their ids; at once when there is one already. On
// the shared-memory exchange the wait sleeps until the registry changes,
// in whatever process; on others it polls (see [exchange.WaitDiscover]).
// When ctx ends first, the error wraps ctx's error and names the behavior.
//
//	ids, err := c.WaitFor(ctx, "Worker")
//	h := c.Handle(ids[0])
func (c *Client) WaitFor(ctx context.Context, behavior string) ([]exchange.EntityID, error) {
	return exchange.WaitDiscover(ctx, c.ep.x, behavior, true)
}

// WaitForID waits until the agent id is active in the client's exchange
// (registered, or reopened after a restart); at once when it is. When ctx
// ends first, the error wraps ctx's error and says whether id was never
// registered or is terminated (see [exchange.WaitActive]).
func (c *Client) WaitForID(ctx context.Context, id exchange.EntityID) error {
	return exchange.WaitActive(ctx, c.ep.x, id)
}
