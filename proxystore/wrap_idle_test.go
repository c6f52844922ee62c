package proxystore_test

import (
	"context"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// mailboxOptsX records the idle strategy each Mailbox call asked for.
type mailboxOptsX struct {
	exchange.Exchange
	got []*exchange.IdleStrategy
}

func (x *mailboxOptsX) Mailbox(ctx context.Context, id exchange.EntityID, opts ...exchange.MailboxOption) (exchange.Mailbox, error) {
	x.got = append(x.got, exchange.ApplyMailboxOptions(opts).Idle)
	return x.Exchange.Mailbox(ctx, id, opts...)
}

// TestWrapMailboxOptions: the wrapper's Mailbox and ManualMailbox pass
// their options (the idle strategy) to the wrapped exchange.
func TestWrapMailboxOptions(t *testing.T) {
	ctx := t.Context()
	inner := &mailboxOptsX{Exchange: exchange.NewLocal()}
	x := proxystore.Wrap(inner, proxystore.NewMemStore())
	defer x.Close()
	id, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, id, exchange.WithMailboxIdle(exchange.IdleSpin))
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	mb, err = x.ManualMailbox(ctx, id, exchange.WithMailboxIdle(exchange.IdlePark))
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	mb, err = x.Mailbox(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	if len(inner.got) != 3 || inner.got[0] == nil || *inner.got[0] != exchange.IdleSpin ||
		inner.got[1] == nil || *inner.got[1] != exchange.IdlePark || inner.got[2] != nil {
		t.Fatalf("wrapped Mailbox calls got idle strategies %v, want spin, park, none", inner.got)
	}
}
