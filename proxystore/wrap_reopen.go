package proxystore

import (
	"context"
	"fmt"

	"github.com/shmex/shmex/exchange"
)

var _ exchange.Reopener = (*Exchange)(nil)

// Reopen implements [exchange.Reopener] by passing the call to the wrapped
// exchange; it fails with [exchange.ErrInvalidArgument] when that exchange
// cannot reopen mailboxes.
func (x *Exchange) Reopen(ctx context.Context, id exchange.EntityID) error {
	r, ok := x.inner.(exchange.Reopener)
	if !ok {
		return fmt.Errorf("%w: the wrapped %T cannot reopen mailboxes", exchange.ErrInvalidArgument, x.inner)
	}
	return r.Reopen(ctx, id)
}

// Incarnation implements [exchange.Reopener] by passing the call to the
// wrapped exchange (an error when it cannot reopen mailboxes).
func (x *Exchange) Incarnation(ctx context.Context, id exchange.EntityID) (uint32, error) {
	r, ok := x.inner.(exchange.Reopener)
	if !ok {
		return 0, fmt.Errorf("%w: the wrapped %T cannot reopen mailboxes", exchange.ErrInvalidArgument, x.inner)
	}
	return r.Incarnation(ctx, id)
}
