package agent_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
)

// env is one way of running agents: an exchange and a launcher.
type env struct {
	name    string
	process bool // agents run in child processes
	shm     bool
	new     func(t testing.TB) (exchange.Exchange, agent.Launcher)
}

var envSeq atomic.Int64

func newSHM(t testing.TB, opts ...exchange.Option) *exchange.SHM {
	t.Helper()
	name := fmt.Sprintf("agenttest-%d", envSeq.Add(1))
	root := t.TempDir()
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	x, err := exchange.Open(name, append([]exchange.Option{exchange.WithRoot(root)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// openSHM opens the exchange name under root for a child, with the idle
// strategy idle: a spin count, or a strategy as ring.IdleStrategy.String
// writes it.
func openSHM(name, root, idle string) (*exchange.SHM, error) {
	s, err := ring.ParseIdleStrategy(idle)
	if err != nil {
		n, aerr := strconv.Atoi(idle)
		if aerr != nil {
			return nil, err
		}
		s = ring.IdleStrategy{Spins: n}
	}
	return exchange.Open(name, exchange.WithRoot(root), exchange.WithIdle(s))
}

var envs = []env{
	{name: "local", new: func(t testing.TB) (exchange.Exchange, agent.Launcher) {
		x := exchange.NewLocal()
		t.Cleanup(func() { x.Close() })
		return x, agent.ThreadLauncher{}
	}},
	{name: "shm-goroutines", shm: true, new: func(t testing.TB) (exchange.Exchange, agent.Launcher) {
		return newSHM(t), agent.ThreadLauncher{}
	}},
	{name: "shm-processes", shm: true, process: true, new: func(t testing.TB) (exchange.Exchange, agent.Launcher) {
		x := newSHM(t)
		return x, agent.NewProcessLauncher(x)
	}},
}

// forEnvs runs f once per env.
func forEnvs(t *testing.T, f func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager)) {
	for _, e := range envs {
		t.Run(e.name, func(t *testing.T) {
			x, l := e.new(t)
			// The default grace (1 s): a shorter one fails the calls of a
			// shutting-down agent that a busy machine delays between
			// terminating its mailbox and answering.
			m, err := agent.NewManager(context.Background(), x, l, agent.WithStatusPoll(20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := m.Close(); err != nil {
					t.Logf("manager close: %v", err)
				}
			})
			f(t, e, x, m)
		})
	}
}

// testTimeout bounds a test's waits: generous, so that a busy machine (the
// suite must pass with two CPU hogs running) never fails a test that
// works; only a hang reaches it.
const testTimeout = time.Minute

// serveLocal runs behavior b in a runtime on a new Local exchange and
// returns a handle to it from a new client; the client, the runtime and
// the exchange are closed, in that order, when the test ends.
func serveLocal(t testing.TB, ctx context.Context, b *agent.Behavior) *agent.Handle {
	x := exchange.NewLocal()
	t.Cleanup(func() { x.Close() })
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		t.Fatal(err)
	}
	go rt.Run(ctx)
	t.Cleanup(rt.Shutdown)
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.Handle(rt.ID())
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}
