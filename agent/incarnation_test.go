package agent_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// countingX counts how the agent layer learns the incarnation of the
// mailboxes it sends to: SendIncarnation (one crossing per send) or
// Incarnation before a Send (two).
type countingX struct {
	exchange.Exchange
	sendInc, incarnation atomic.Int64
}

func (x *countingX) SendIncarnation(ctx context.Context, m *exchange.Message) (uint32, error) {
	x.sendInc.Add(1)
	return x.Exchange.(exchange.IncarnationSender).SendIncarnation(ctx, m)
}

func (x *countingX) Incarnation(ctx context.Context, id exchange.EntityID) (uint32, error) {
	x.incarnation.Add(1)
	return x.Exchange.(exchange.Reopener).Incarnation(ctx, id)
}

func (x *countingX) Reopen(ctx context.Context, id exchange.EntityID) error {
	return x.Exchange.(exchange.Reopener).Reopen(ctx, id)
}

// TestSendIncarnationUsed: handles send their requests through
// exchange.IncarnationSender when the exchange implements it, directly or
// through proxystore.Wrap, and never ask for the incarnation apart.
func TestSendIncarnationUsed(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		name := map[bool]string{false: "local", true: "wrapped"}[wrap]
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			cx := &countingX{Exchange: exchange.NewLocal()}
			var x exchange.Exchange = cx
			if wrap {
				x = proxystore.Wrap(cx, proxystore.NewMemStore())
			}
			defer x.Close()
			b, err := newEcho()
			if err != nil {
				t.Fatal(err)
			}
			rt, err := agent.NewRuntime(ctx, x, b)
			if err != nil {
				t.Fatal(err)
			}
			go rt.Run(ctx)
			defer rt.Shutdown()
			c, err := agent.NewClient(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			h := c.Handle(rt.ID())
			const calls = 5
			for i := range calls {
				if got, err := agent.Call[[]byte](ctx, h, "echo", []byte{byte(i)}); err != nil || len(got) != 1 || got[0] != byte(i) {
					t.Fatalf("call %d: %v, %v", i, got, err)
				}
			}
			if n := cx.sendInc.Load(); n < calls {
				t.Errorf("%d sends through SendIncarnation for %d calls", n, calls)
			}
			if n := cx.incarnation.Load(); n != 0 {
				t.Errorf("Incarnation asked %d times: the send should report it", n)
			}
		})
	}
}
