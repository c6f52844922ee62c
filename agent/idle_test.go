package agent_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// The "IdleEnv" behavior tells the idle strategy its process launcher
// gave it (registered here, before TestMain serves a child).
func init() {
	mustRegister("IdleEnv", func() (*agent.Behavior, error) {
		b := agent.NewBehavior("IdleEnv")
		err := agent.AddAction(b, "idle", func(context.Context, agent.NoArgs) (string, error) {
			return os.Getenv(agent.EnvIdle), nil
		})
		return b, err
	})
}

// idleX records the idle strategy of every mailbox client opened.
type idleX struct {
	exchange.Exchange
	mu  sync.Mutex
	got map[exchange.EntityID]*exchange.IdleStrategy
}

func (x *idleX) Mailbox(ctx context.Context, id exchange.EntityID, opts ...exchange.MailboxOption) (exchange.Mailbox, error) {
	x.mu.Lock()
	x.got[id] = exchange.ApplyMailboxOptions(opts).Idle
	x.mu.Unlock()
	return x.Exchange.Mailbox(ctx, id, opts...)
}

func (x *idleX) idle(id exchange.EntityID) *exchange.IdleStrategy {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.got[id]
}

// TestWithIdle: WithIdle reaches the mailbox clients of a runtime, a
// client and a manager's client as exchange.WithMailboxIdle; without it
// they take the exchange handle's strategy (no option).
func TestWithIdle(t *testing.T) {
	ctx := testCtx(t)
	x := &idleX{Exchange: exchange.NewLocal(), got: map[exchange.EntityID]*exchange.IdleStrategy{}}
	defer x.Close()
	b, err := newEcho()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b, agent.WithIdle(exchange.IdlePark))
	if err != nil {
		t.Fatal(err)
	}
	go rt.Run(ctx)
	defer rt.Shutdown()
	c, err := agent.NewClient(ctx, x, agent.WithIdle(exchange.IdleSpin))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	plain, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	m, err := agent.NewManager(ctx, x, nil, agent.WithIdle(exchange.IdleSpinThenPark(7)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		what string
		id   exchange.EntityID
		want *exchange.IdleStrategy
	}{
		{"runtime", rt.ID(), &exchange.IdlePark},
		{"client", c.ID(), &exchange.IdleSpin},
		{"manager's client", m.Client().ID(), new(exchange.IdleSpinThenPark(7))},
		{"client without WithIdle", plain.ID(), nil},
	} {
		got := x.idle(tc.id)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("%s: mailbox opened with idle strategy %v, want %v", tc.what, got, tc.want)
		}
	}
	if _, err := agent.Call[[]byte](ctx, c.Handle(rt.ID()), "echo", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestProcessLauncherIdle: the agents a process launcher starts receive
// with the launch's WithIdle, else the launcher's Idle, else the
// exchange's default (no SHMEX_AGENT_IDLE in their environment).
func TestProcessLauncherIdle(t *testing.T) {
	ctx := testCtx(t)
	x := newSHM(t)
	l := agent.NewProcessLauncher(x)
	m, err := agent.NewManager(ctx, x, l)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	park := exchange.IdlePark
	for _, tc := range []struct {
		what     string
		launcher *exchange.IdleStrategy
		opts     []agent.Option
		want     string
	}{
		{"default", nil, nil, ""},
		{"launcher", &park, nil, "park"},
		{"launch option", &park, []agent.Option{agent.WithIdle(exchange.IdleSpin)}, "spin"},
	} {
		l.Idle = tc.launcher
		h, err := m.Launch(ctx, "IdleEnv", tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := agent.Call[string](ctx, h, "idle", agent.NoArgs{})
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if got != tc.want {
			t.Errorf("%s: child's %s=%q, want %q", tc.what, agent.EnvIdle, got, tc.want)
		}
		if got != "" {
			if _, err := exchange.ParseIdleStrategy(got); err != nil {
				t.Errorf("%s: %v", tc.what, err)
			}
		}
		if err := h.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
