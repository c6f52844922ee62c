package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

func TestMain(m *testing.M) {
	if os.Getenv("AGENT_TEST_LOG") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})))
	}
	mustRegister("Echo", newEcho)
	mustRegister("Crasher", newCrasher)
	mustRegister("Blob", newBlob)
	if err := agent.RegisterBehaviorConfig("Scaler", newScaler); err != nil {
		panic(err)
	}
	agent.SetChildExchange(wrapForChild)
	agent.ServeIfChild()
	childproc.Main(m, map[string]childproc.Role{"echo": rawEchoRole, "client": clientRole, "waitfor": waitForRole})
}

func mustRegister(name string, f agent.Factory) {
	if err := agent.RegisterBehavior(name, f); err != nil {
		panic(err)
	}
}

// Pair is an action argument with a hand-written msgp codec (the methods
// msgp would generate), to exercise msgp.Marshaler types.
type Pair struct{ A, B int64 }

// newEcho is the behavior most tests use: actions of every kind of result.
func newEcho() (*agent.Behavior, error) {
	b := agent.NewBehavior("Echo", "Base")
	var running, maxSeen atomic.Int64
	track := func() func() {
		n := running.Add(1)
		for {
			m := maxSeen.Load()
			if n <= m || maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
		return func() { running.Add(-1) }
	}
	errs := []error{
		agent.AddAction(b, "echo", func(_ context.Context, in []byte) ([]byte, error) { return in, nil }),
		agent.AddAction(b, "noop", func(context.Context, agent.NoArgs) (agent.NoArgs, error) { return agent.NoArgs{}, nil }),
		agent.AddAction(b, "noop64", func(context.Context, []byte) (agent.NoArgs, error) { return agent.NoArgs{}, nil }),
		agent.AddAction(b, "add", func(_ context.Context, p Pair) (int64, error) { return p.A + p.B, nil }),
		agent.AddAction(b, "swap", func(_ context.Context, p Pair) (Pair, error) { return Pair{p.B, p.A}, nil }),
		agent.AddAction(b, "fail", func(_ context.Context, msg string) (int, error) {
			return 0, &exchange.RemoteError{Kind: "ValueError", Message: msg}
		}),
		agent.AddAction(b, "failplain", func(_ context.Context, msg string) (int, error) { return 0, errors.New(msg) }),
		agent.AddAction(b, "panic", func(_ context.Context, msg string) (int, error) { panic(msg) }),
		agent.AddAction(b, "pid", func(context.Context, agent.NoArgs) (int, error) { return os.Getpid(), nil }),
		agent.AddAction(b, "big", func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil }),
		agent.AddAction(b, "sleep", func(ctx context.Context, ms int) (int, error) {
			defer track()()
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return ms, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}),
		agent.AddAction(b, "maxseen", func(context.Context, agent.NoArgs) (int64, error) { return maxSeen.Load(), nil }),
		// relay calls action "echo" of another agent through a handle bound
		// to this agent's own mailbox.
		agent.AddAction(b, "relay", func(ctx context.Context, to exchange.EntityID) (string, error) {
			h := agent.FromContext(ctx).Handle(to)
			defer h.Close(ctx)
			out, err := agent.Call[[]byte](ctx, h, "echo", []byte("via "+to.String()))
			return string(out), err
		}),
		// selfping pings its own agent, when asked, through a handle
		// bound to the agent's own mailbox: only another serving
		// goroutine can receive the answer, so the run must be handed off
		// (by the timer, or by the watchdog once the action is quick).
		agent.AddAction(b, "selfping", func(ctx context.Context, ping bool) (bool, error) {
			if !ping {
				return false, nil
			}
			rt := agent.FromContext(ctx)
			h := rt.Handle(rt.ID())
			defer h.Close(ctx)
			_, err := h.Ping(ctx)
			return err == nil, err
		}),
		agent.AddAction(b, "self", func(ctx context.Context, _ agent.NoArgs) (exchange.EntityID, error) {
			return agent.FromContext(ctx).ID(), nil
		}),
	}
	return b, errors.Join(errs...)
}

// newCrasher has an action that kills its own process (or, run as
// goroutines, fails its run through a loop error).
func newCrasher() (*agent.Behavior, error) {
	b := agent.NewBehavior("Crasher")
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
		agent.AddAction(b, "pid", func(context.Context, agent.NoArgs) (int, error) { return os.Getpid(), nil }),
		agent.AddAction(b, "sleep", func(ctx context.Context, ms int) (int, error) {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return ms, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}),
		agent.AddAction(b, "crash", func(ctx context.Context, inProcess bool) (int, error) {
			if !inProcess {
				os.Exit(3)
			}
			once.Do(func() { close(crash) })
			return 0, nil
		}),
	)
}

// rawEchoRole is a child that answers every request with an empty result
// on the raw exchange:
// the baseline of the benchmarks. Args: exchange name, root, agent id, idle
// spins.
func rawEchoRole(args []string) int {
	x, err := openSHM(args[0], args[1], args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer x.Close()
	id, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return 1
	}
	mb, err := x.Mailbox(context.Background(), id)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	var m exchange.Message
	for {
		if err := mb.Recv(context.Background(), &m); err != nil {
			return 0
		}
		if m.Kind == exchange.KindShutdownRequest {
			return 0
		}
		m.SetResponse(&m, nil)
		if err := x.Send(context.Background(), &m); err != nil {
			return 0
		}
	}
}

// clientRole is a client process that keeps many calls in flight to an
// agent until it is killed. Args: exchange name, root, agent id.
func clientRole(args []string) int {
	x, err := openSHM(args[0], args[1], "2000")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	id, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return 1
	}
	ctx := context.Background()
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := c.Handle(id)
	for i := 0; ; i++ {
		if _, err := agent.Action[int](ctx, h, "sleep", 1); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := agent.Action[[]byte](ctx, h, "echo", make([]byte, 1000)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i == 100 {
			fmt.Println("busy")
		}
	}
}
