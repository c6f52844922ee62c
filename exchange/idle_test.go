package exchange_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
)

// TestIdleStrategyText: the exchange's idle strategies are printed and
// read back (the form flags and environment variables use), compare with
// ==, and a bad text is ErrInvalidArgument.
func TestIdleStrategyText(t *testing.T) {
	if exchange.DefaultIdle != exchange.IdleBackoff {
		t.Errorf("DefaultIdle = %v, want IdleBackoff (%v)", exchange.DefaultIdle, exchange.IdleBackoff)
	}
	for _, s := range []exchange.IdleStrategy{exchange.IdleSpin, exchange.IdlePark, exchange.IdleBackoff, exchange.IdleSpinThenPark(100)} {
		got, err := exchange.ParseIdleStrategy(s.String())
		if err != nil || got != s {
			t.Errorf("ParseIdleStrategy(%q) = %v, %v; want %v", s.String(), got, err, s)
		}
	}
	for text, want := range map[string]exchange.IdleStrategy{"spin": exchange.IdleSpin, "park": exchange.IdlePark, "backoff": exchange.IdleBackoff} {
		if got, err := exchange.ParseIdleStrategy(text); err != nil || got != want {
			t.Errorf("ParseIdleStrategy(%q) = %v, %v; want %v", text, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "spinpark", "spinpark:x", "backoff:1", "spin,bogus"} {
		if _, err := exchange.ParseIdleStrategy(bad); !errors.Is(err, exchange.ErrInvalidArgument) || !errors.Is(err, ring.ErrBadIdleStrategy) {
			t.Errorf("ParseIdleStrategy(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestSHMIdleOptions: a mailbox client's receiver waits with the handle's
// idle strategy (IdleBackoff unless WithIdle says otherwise), or with its
// own (WithMailboxIdle); each receives what another process's handle
// sends.
func TestSHMIdleOptions(t *testing.T) {
	root := testRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sender := openSHM(t, root, "idle")
	src, err := sender.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		handle []exchange.Option
		mbox   []exchange.MailboxOption
		want   exchange.IdleStrategy
	}{
		{"default", nil, nil, exchange.IdleBackoff},
		{"handle", []exchange.Option{exchange.WithIdle(exchange.IdleSpin)}, nil, exchange.IdleSpin},
		{"mailbox", []exchange.Option{exchange.WithIdle(exchange.IdleSpin)}, []exchange.MailboxOption{exchange.WithMailboxIdle(exchange.IdlePark)}, exchange.IdlePark},
		{"nil option", nil, []exchange.MailboxOption{nil}, exchange.IdleBackoff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := openSHM(t, root, "idle", tc.handle...)
			id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
			if err != nil {
				t.Fatal(err)
			}
			mb, err := x.Mailbox(ctx, id, tc.mbox...)
			if err != nil {
				t.Fatal(err)
			}
			defer mb.Close()
			if got, ok := exchange.MailboxIdle(mb); !ok || got != tc.want {
				t.Fatalf("receiver's idle strategy %v (%v), want %v", got, ok, tc.want)
			}
			go func() {
				time.Sleep(10 * time.Millisecond) // let the receiver wait
				sender.Send(ctx, exchange.NewPingRequest(src, id))
			}()
			var m exchange.Message
			if err := mb.Recv(ctx, &m); err != nil || m.Kind != exchange.KindPingRequest {
				t.Fatalf("Recv: %v, %v", m.Kind, err)
			}
		})
	}
}
