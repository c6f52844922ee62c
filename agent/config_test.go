package agent_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// newScaler is a behavior configured at launch: scale(n) is n*cfg.A +
// cfg.B. Its crash action fails its run (as Crasher's does), so that a
// restart can show the configuration again.
func newScaler(cfg Pair) (*agent.Behavior, error) {
	b := agent.NewBehavior("Scaler")
	crash := make(chan struct{})
	var once sync.Once
	b.Loop("watch", func(ctx context.Context) error {
		select {
		case <-crash:
			return errors.New("asked to crash")
		case <-ctx.Done():
			return nil
		}
	})
	return b, errors.Join(
		agent.AddAction(b, "scale", func(_ context.Context, n int64) (int64, error) { return n*cfg.A + cfg.B, nil }),
		agent.AddAction(b, "pid", func(context.Context, agent.NoArgs) (int, error) { return os.Getpid(), nil }),
		agent.AddAction(b, "crash", func(_ context.Context, inProcess bool) (int, error) {
			if !inProcess {
				os.Exit(3)
			}
			once.Do(func() { close(crash) })
			return 0, nil
		}),
	)
}

// TestLaunchConfig launches configured agents in every environment (in
// its own process for shm-processes): each run gets the configuration,
// a restart too; no configuration is the zero value.
func TestLaunchConfig(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		h, err := m.Launch(ctx, "Scaler", agent.WithConfig(Pair{A: 3, B: 1}), agent.WithRestarts(1))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := agent.Call[int64](ctx, h, "scale", 5); err != nil || got != 16 {
			t.Fatalf("scale(5) = %d, %v; want 16", got, err)
		}
		pid, err := agent.Call[int](ctx, h, "pid", agent.NoArgs{})
		if err != nil {
			t.Fatal(err)
		}
		if e.process == (pid == os.Getpid()) {
			t.Fatalf("agent pid %d, this process %d (process launcher: %v)", pid, os.Getpid(), e.process)
		}
		// A restart makes the behavior again with the same configuration.
		in := m.Instance(h.AgentID())
		if _, err := agent.Call[int](ctx, h, "crash", !e.process); err != nil && !errors.Is(err, agent.ErrAgentTerminated) {
			t.Fatal(err)
		}
		for in.Restarts() < 1 {
			select {
			case <-ctx.Done():
				t.Fatal("not restarted")
			case <-time.After(5 * time.Millisecond):
			}
		}
		var got int64
		for {
			// A call may still reach the mailbox of the run that ended.
			if got, err = agent.Call[int64](ctx, h, "scale", 5); !errors.Is(err, agent.ErrAgentTerminated) || ctx.Err() != nil {
				break
			}
		}
		if err != nil || got != 16 {
			t.Fatalf("scale(5) after a restart = %d, %v; want 16", got, err)
		}

		// No configuration: the zero value.
		h0, err := m.Launch(ctx, "Scaler")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := agent.Call[int64](ctx, h0, "scale", 5); err != nil || got != 0 {
			t.Fatalf("scale(5) of an agent launched without configuration = %d, %v; want 0", got, err)
		}
	})
}

// TestLaunchConfigErrors: a configuration that does not fit is refused at
// launch, in the launching process, with the reason.
func TestLaunchConfigErrors(t *testing.T) {
	for _, e := range envs {
		t.Run(e.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			x, l := e.new(t)
			for _, tc := range []struct {
				behavior string
				opt      agent.Option
				want     string
			}{
				{"Scaler", agent.WithConfig(42), "takes a configuration of type agent_test.Pair, not int"},
				{"Echo", agent.WithConfig(Pair{}), `behavior "Echo" takes no configuration`},
				{"Scaler", agent.WithConfig(struct{ A int }{}), "no codec"},
				{"Scaler", agent.WithConfig(make([]byte, agent.MaxConfigSize)), "MaxConfigSize"},
			} {
				in, err := l.Launch(ctx, x, tc.behavior, tc.opt)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					if in != nil {
						in.Stop()
					}
					t.Errorf("Launch(%s) = %v; want an error saying %q", tc.behavior, err, tc.want)
				}
			}
		})
	}
	if err := agent.RegisterBehaviorConfig("NoCodec", func(struct{ A int }) (*agent.Behavior, error) { return nil, nil }); !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("RegisterBehaviorConfig with a type without codec: %v", err)
	}
	if _, err := (agent.ThreadLauncher{}).LaunchFactory(context.Background(), exchange.NewLocal(), "f", newEcho, agent.WithConfig(1)); err == nil {
		t.Error("LaunchFactory took a configuration")
	}
}
