package agent_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// inProcessEnvs runs f on the exchanges with agents as goroutines of the
// test (the behaviors record into the test's memory).
func inProcessEnvs(t *testing.T, f func(t *testing.T, x exchange.Exchange)) {
	for _, e := range envs {
		if e.process {
			continue
		}
		t.Run(e.name, func(t *testing.T) {
			x, _ := e.new(t)
			f(t, x)
		})
	}
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// orderBehavior records the shutdown sequence: an action that blocks until
// its ctx is cancelled notes whether the mailbox was already terminated; a
// loop notes that the action had ended when it stops; the hook comes last.
func orderBehavior(t *testing.T, x exchange.Exchange, rec *recorder, started chan<- struct{}) *agent.Behavior {
	b := agent.NewBehavior("Order")
	b.OnSetup(func(ctx context.Context) error { rec.add("setup"); return nil })
	b.Loop("loop", func(ctx context.Context) error {
		rec.add("loop-start")
		started <- struct{}{}
		<-ctx.Done()
		rec.add("loop-stop")
		return nil
	})
	b.OnShutdown(func(ctx context.Context) error {
		if ctx.Err() != nil {
			t.Error("shutdown hook got a done ctx")
		}
		rec.add("shutdown-hook")
		return nil
	})
	err := agent.AddAction(b, "block", func(ctx context.Context, _ agent.NoArgs) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		st, _ := x.Status(context.Background(), agent.FromContext(ctx).ID())
		rec.add("action-cancelled-mailbox-" + st.String())
		return 7, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestShutdownOrder(t *testing.T) {
	for _, how := range []string{"request", "context"} {
		t.Run(how, func(t *testing.T) {
			inProcessEnvs(t, func(t *testing.T, x exchange.Exchange) {
				ctx := testCtx(t)
				rec := &recorder{}
				started := make(chan struct{}, 2)
				rt, err := agent.NewRuntime(ctx, x, orderBehavior(t, x, rec, started))
				if err != nil {
					t.Fatal(err)
				}
				runCtx, stop := context.WithCancel(ctx)
				defer stop()
				runErr := make(chan error, 1)
				go func() { runErr <- rt.Run(runCtx) }()

				c, err := agent.NewClient(ctx, x)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				h := c.Handle(rt.ID())
				<-started // the loop
				f, err := agent.Action[int](ctx, h, "block", agent.NoArgs{})
				if err != nil {
					t.Fatal(err)
				}
				<-started // the action
				if how == "request" {
					if err := h.Shutdown(ctx); err != nil {
						t.Fatal(err)
					}
				} else {
					stop()
				}
				if err := <-runErr; err != nil {
					t.Fatalf("Run: %v", err)
				}
				// The running action finished after the mailbox was
				// terminated, and its caller got its result.
				if v, err := f.Wait(ctx); err != nil || v != 7 {
					t.Fatalf("blocked action = %v, %v", v, err)
				}
				want := []string{"setup", "loop-start", "action-cancelled-mailbox-terminated", "loop-stop", "shutdown-hook"}
				if got := rec.get(); !slices.Equal(got, want) {
					t.Fatalf("events %q, want %q", got, want)
				}
				if err := rt.Run(ctx); !errors.Is(err, agent.ErrNotRunning) {
					t.Fatalf("second Run: %v", err)
				}
				if _, err := h.Ping(ctx); !errors.Is(err, agent.ErrAgentTerminated) {
					t.Fatalf("ping after shutdown: %v", err)
				}
			})
		})
	}
}

func TestLoopError(t *testing.T) {
	inProcessEnvs(t, func(t *testing.T, x exchange.Exchange) {
		ctx := testCtx(t)
		boom := errors.New("loop broke")
		mk := func() *agent.Behavior {
			b := agent.NewBehavior("Looper")
			b.Loop("bad", func(ctx context.Context) error { return boom })
			if err := agent.AddAction(b, "noop", func(context.Context, agent.NoArgs) (agent.NoArgs, error) { return agent.NoArgs{}, nil }); err != nil {
				t.Fatal(err)
			}
			return b
		}
		// Default: the loop error stops the agent and Run returns it.
		rt, err := agent.NewRuntime(ctx, x, mk())
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Run(ctx); !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want the loop error", err)
		}
		if st, _ := x.Status(ctx, rt.ID()); st != exchange.StatusTerminated {
			t.Fatalf("mailbox %v after a loop error", st)
		}

		// WithTerminateOnError(false): the agent keeps serving.
		rt, err = agent.NewRuntime(ctx, x, mk(), agent.WithTerminateOnError(false))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		c, err := agent.NewClient(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := agent.Call[agent.NoArgs](ctx, c.Handle(rt.ID()), "noop", agent.NoArgs{}); err != nil {
			t.Fatal(err)
		}
		rt.Shutdown()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		// A failing setup hook: Run returns its error, nothing runs.
		b := mk().OnSetup(func(context.Context) error { return boom })
		rt, err = agent.NewRuntime(ctx, x, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Run(ctx); !errors.Is(err, boom) {
			t.Fatalf("Run with a failing setup = %v", err)
		}
	})
}

// TestTerminateOnExitFalse: requests sent while no runtime serves stay
// queued for the next runtime of the same agent id.
func TestTerminateOnExitFalse(t *testing.T) {
	inProcessEnvs(t, func(t *testing.T, x exchange.Exchange) {
		ctx := testCtx(t)
		b, _ := newEcho()
		rt, err := agent.NewRuntime(ctx, x, b, agent.WithTerminateOnExit(false))
		if err != nil {
			t.Fatal(err)
		}
		id := rt.ID()
		runCtx, stop := context.WithCancel(ctx)
		stop()
		if err := rt.Run(runCtx); err != nil {
			t.Fatal(err)
		}
		if st, _ := x.Status(ctx, id); st != exchange.StatusActive {
			t.Fatalf("mailbox %v after a stop without terminate", st)
		}
		c, err := agent.NewClient(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f, err := agent.Action[[]byte](ctx, c.Handle(id), "echo", []byte("queued"))
		if err != nil {
			t.Fatal(err)
		}
		b2 := serveQueued(t, ctx, x, id, f)
		if _, err := agent.NewRuntime(ctx, x, b2, agent.WithAgentID(id)); !errors.Is(err, agent.ErrAgentTerminated) {
			t.Fatalf("runtime for a terminated id: %v", err)
		}
	})
}

// TestKilledAgentProcess kills an agent process (SIGKILL at a random
// moment) with calls in flight: every caller gets ErrAgentTerminated, and
// nothing waits forever.
func TestKilledAgentProcess(t *testing.T) {
	for round := range 3 {
		x := newSHM(t)
		m, err := agent.NewManager(context.Background(), x, agent.NewProcessLauncher(x),
			agent.WithStatusPoll(20*time.Millisecond), agent.WithTerminatedGrace(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		in := m.Instance(h.AgentID())
		var fs []*agent.Future[int]
		for range 5 {
			f, err := agent.Action[int](ctx, h, "sleep", 10_000)
			if err != nil {
				t.Fatal(err)
			}
			fs = append(fs, f)
		}
		// Some quick calls race with the kill.
		var quick []*agent.Future[[]byte]
		stopQuick := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stopQuick:
					return
				default:
				}
				f, err := agent.Action[[]byte](ctx, h, "echo", []byte("x"))
				if err != nil {
					if !errors.Is(err, agent.ErrAgentTerminated) {
						t.Errorf("echo after the kill: %v", err)
					}
					return
				}
				quick = append(quick, f)
				time.Sleep(time.Millisecond)
			}
		})
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		if err := syscall.Kill(in.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for _, f := range fs {
			if _, err := f.Wait(ctx); !errors.Is(err, agent.ErrAgentTerminated) {
				t.Fatalf("round %d: call in flight to a killed agent: %v", round, err)
			}
		}
		close(stopQuick)
		wg.Wait()
		for _, f := range quick {
			if v, err := f.Wait(ctx); err != nil && !errors.Is(err, agent.ErrAgentTerminated) || err == nil && string(v) != "x" {
				t.Fatalf("quick call: %q, %v", v, err)
			}
		}
		t.Logf("round %d: calls in flight failed %v after the kill, %d quick calls", round, time.Since(start), len(quick))
		if _, err := h.Ping(ctx); !errors.Is(err, agent.ErrAgentTerminated) {
			t.Fatalf("ping after kill: %v", err)
		}
		<-in.Done()
		if in.Err() == nil {
			t.Fatal("instance of a killed agent reports no error")
		}
		m.Close()
	}
}

func TestRestart(t *testing.T) {
	for _, e := range envs {
		if e.name == "local" && testing.Short() {
			continue
		}
		t.Run(e.name, func(t *testing.T) {
			x, l := e.new(t)
			m, err := agent.NewManager(context.Background(), x, l,
				agent.WithStatusPoll(20*time.Millisecond), agent.WithTerminatedGrace(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx := testCtx(t)
			h, err := m.Launch(ctx, "Crasher", agent.WithRestarts(2))
			if err != nil {
				t.Fatal(err)
			}
			in := m.Instance(h.AgentID())
			first := h.AgentID()
			pid0, err := agent.Call[int](ctx, h, "pid", agent.NoArgs{})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				slow, err := agent.Action[int](ctx, h, "sleep", 10_000)
				if err != nil {
					t.Fatal(err)
				}
				if i == 2 && e.process {
					syscall.Kill(in.PID(), syscall.SIGKILL) // death at any instruction
				} else if _, err := agent.Call[int](ctx, h, "crash", !e.process); err != nil && !errors.Is(err, agent.ErrAgentTerminated) {
					t.Fatalf("crash: %v", err)
				}
				if _, err := slow.Wait(ctx); err == nil {
					t.Fatalf("a call in flight in a crashed agent succeeded")
				}
				if i == 3 {
					break
				}
				// The restarted agent answers through the same handle,
				// under the same id (both exchanges reopen mailboxes).
				deadline := time.Now().Add(testTimeout)
				for in.Restarts() < i && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if in.Restarts() < i {
					t.Fatalf("restart %d: agent not restarted", i)
				}
				if h.AgentID() != first {
					t.Fatalf("restart %d: agent id %v, want the first run's %v", i, h.AgentID(), first)
				}
				pid, err := agent.Call[int](ctx, h, "pid", agent.NoArgs{})
				if err != nil {
					t.Fatalf("restart %d: %v", i, err)
				}
				if e.process && pid == pid0 {
					t.Fatalf("restart %d in the same process", i)
				}
				if in.Restarts() != i {
					t.Fatalf("Restarts = %d, want %d", in.Restarts(), i)
				}
			}
			// The third crash exhausted the restarts.
			select {
			case <-in.Done():
			case <-ctx.Done():
				t.Fatal("instance not done after its last crash")
			}
			if ids := in.IDs(); in.Err() == nil || len(ids) != 3 || ids[0] != first || ids[1] != first || ids[2] != first {
				t.Fatalf("after the restarts: err %v, ids %v", in.Err(), in.IDs())
			}
			if m.Instance(first) != in {
				t.Fatal("Instance(first id) lost")
			}
		})
	}
}

// TestKilledClientProcess: a client process killed (SIGKILL, at a random
// moment) with many calls in flight and its mailbox filling up does not
// wedge the agent, which keeps serving others and shuts down.
func TestKilledClientProcess(t *testing.T) {
	for _, process := range []bool{false, true} {
		x := newSHM(t, exchange.WithMailboxBytes(16<<10))
		var l agent.Launcher = agent.ThreadLauncher{}
		if process {
			l = agent.NewProcessLauncher(x)
		}
		m, err := agent.NewManager(context.Background(), x, l)
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(4))
		if err != nil {
			t.Fatal(err)
		}
		child := childproc.Start(t, "client", x.Name(), filepath.Dir(x.Dir()), h.AgentID().String())
		if l, err := child.Line(testTimeout); err != nil || l != "busy" {
			t.Fatalf("client child: %q, %v", l, err)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		child.Kill()
		for range 20 {
			if _, err := h.Ping(ctx); err != nil {
				t.Fatalf("ping after the client died: %v", err)
			}
			if got, err := agent.Call[[]byte](ctx, h, "echo", []byte("alive")); err != nil || string(got) != "alive" {
				t.Fatalf("echo after the client died: %q, %v", got, err)
			}
		}
		if err := m.Shutdown(ctx, h.AgentID(), true); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShutdownWithQueuedRequests: at shutdown, the running action sees its
// ctx cancelled, and the requests queued behind the concurrency bound are
// answered with ErrShuttingDown, not dropped.
func TestShutdownWithQueuedRequests(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		running, err := agent.Action[int](ctx, h, "sleep", 10_000)
		if err != nil {
			t.Fatal(err)
		}
		var queued []*agent.Future[int]
		for range 3 {
			f, err := agent.Action[int](ctx, h, "sleep", 10_000)
			if err != nil {
				t.Fatal(err)
			}
			queued = append(queued, f)
		}
		if _, err := h.Ping(ctx); err != nil { // all four were received
			t.Fatal(err)
		}
		if err := m.Shutdown(ctx, h.AgentID(), true); err != nil {
			t.Fatal(err)
		}
		var re *exchange.RemoteError
		if _, err := running.Wait(ctx); !errors.As(err, &re) || re.Kind != exchange.ErrorKindCanceled {
			t.Fatalf("running action at shutdown: %v", err)
		}
		for _, f := range queued {
			if _, err := f.Wait(ctx); !errors.Is(err, agent.ErrShuttingDown) {
				t.Fatalf("queued action at shutdown: %v", err)
			}
		}
	})
}

// TestShutdownWithStuckRequester: a requester that never reads its mailbox,
// which is full, cannot keep an agent from shutting down: the response to
// its request waits at most the response grace once the shutdown begins,
// and is then dropped. While the agent serves, the response waits.
func TestShutdownWithStuckRequester(t *testing.T) {
	ctx := testCtx(t)
	x := newSHM(t, exchange.WithMailboxBytes(4096))
	b := agent.NewBehavior("Echo")
	if err := b.AddRawAction("echo", func(_ context.Context, args, out []byte) ([]byte, error) {
		return append(out, args...), nil
	}); err != nil {
		t.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b, agent.WithResponseGrace(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(ctx) }()

	// A requester whose mailbox is open, never read, and full.
	stuck, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Mailbox(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	filler, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		fctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := x.Send(fctx, exchange.NewActionRequest(filler, stuck, "fill", make([]byte, 64)))
		cancel()
		if err != nil {
			break
		}
		if i > 10_000 {
			t.Fatal("the mailbox never filled up")
		}
	}
	if err := x.Send(ctx, exchange.NewActionRequest(stuck, rt.ID(), "echo", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the response is now waiting for space
	select {
	case err := <-ran:
		t.Fatalf("agent stopped on its own: %v", err)
	default:
	}
	rt.Shutdown()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the agent did not finish shutting down: a response to a full mailbox held it")
	}
}

// TestTerminateOnExitFalseKeepsQueued: with WithTerminateOnExit(false), a
// request queued behind the shutdown that stops the runtime stays in the
// mailbox for the next runtime with the same id, even on a mailbox that
// receives in batches (the runtime then receives one message at a time: a
// batch would take the request out of the mailbox and answer it
// ShuttingDown).
func TestTerminateOnExitFalseKeepsQueued(t *testing.T) {
	x := newSHM(t)
	ctx := testCtx(t)
	b, _ := newEcho()
	rt, err := agent.NewRuntime(ctx, x, b, agent.WithTerminateOnExit(false))
	if err != nil {
		t.Fatal(err)
	}
	id := rt.ID()
	cid, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Send(ctx, exchange.NewShutdownRequest(cid, id, false)); err != nil {
		t.Fatal(err)
	}
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := agent.Action[[]byte](ctx, c.Handle(id), "echo", []byte("queued"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Run(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	got, err := f.Wait(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the queued call, with no runtime serving: %q, %v; want it pending", got, err)
	}
	serveQueued(t, ctx, x, id, f)
}

// serveQueued runs a new runtime of the Echo behavior under the agent id
// of a stopped one, checks that f, an "echo" of "queued" sent while no
// runtime served, gets its answer from it, and shuts it down; it returns
// the behavior.
func serveQueued(t *testing.T, ctx context.Context, x exchange.Exchange, id exchange.EntityID, f *agent.Future[[]byte]) *agent.Behavior {
	t.Helper()
	b2, _ := newEcho()
	rt2, err := agent.NewRuntime(ctx, x, b2, agent.WithAgentID(id))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt2.Run(ctx) }()
	if got, err := f.Wait(ctx); err != nil || string(got) != "queued" {
		t.Fatalf("queued call = %q, %v", got, err)
	}
	rt2.Shutdown()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return b2
}
