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
	r, err := x.reopener()
	if err != nil {
		return err
	}
	return r.Reopen(ctx, id)
}

// Incarnation implements [exchange.Reopener] by passing the call to the
// wrapped exchange (an error when it cannot reopen mailboxes).
func (x *Exchange) Incarnation(ctx context.Context, id exchange.EntityID) (uint32, error) {
	r, err := x.reopener()
	if err != nil {
		return 0, err
	}
	return r.Incarnation(ctx, id)
}

// reopener returns the wrapped exchange as an [exchange.Reopener].
func (x *Exchange) reopener() (exchange.Reopener, error) {
	r, ok := x.inner.(exchange.Reopener)
	if !ok {
		return nil, fmt.Errorf("%w: the wrapped %T cannot reopen mailboxes", exchange.ErrInvalidArgument, x.inner)
	}
	return r, nil
}
