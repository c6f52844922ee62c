package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

func TestActions(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := agent.Call[[]byte](ctx, h, "echo", []byte("hello")); err != nil || string(got) != "hello" {
			t.Fatalf("echo = %q, %v", got, err)
		}
		if got, err := agent.Call[int64](ctx, h, "add", Pair{2, 40}); err != nil || got != 42 {
			t.Fatalf("add = %v, %v", got, err)
		}
		if got, err := agent.Call[Pair](ctx, h, "swap", Pair{1, 2}); err != nil || got != (Pair{2, 1}) {
			t.Fatalf("swap = %v, %v", got, err)
		}
		if _, err := agent.Call[agent.NoArgs](ctx, h, "noop", agent.NoArgs{}); err != nil {
			t.Fatalf("noop: %v", err)
		}
		if got, err := agent.Call[exchange.EntityID](ctx, h, "self", agent.NoArgs{}); err != nil || got != h.AgentID() {
			t.Fatalf("self = %v, %v; want %v", got, err, h.AgentID())
		}
		pid, err := agent.Call[int](ctx, h, "pid", agent.NoArgs{})
		if err != nil || (pid == os.Getpid()) == e.process {
			t.Fatalf("pid = %d, %v (test pid %d, process launcher %v)", pid, err, os.Getpid(), e.process)
		}

		// Errors: unknown action, error returned, panic, bad arguments;
		// the agent keeps serving after each.
		var re *exchange.RemoteError
		_, err = agent.Call[int](ctx, h, "nope", 1)
		if !errors.Is(err, agent.ErrUnknownAction) || !errors.As(err, &re) || re.Kind != agent.ErrorKindUnknownAction {
			t.Fatalf("unknown action: %v", err)
		}
		_, err = agent.Call[int](ctx, h, "fail", "bad value")
		if !errors.As(err, &re) || re.Kind != "ValueError" || re.Message != "bad value" {
			t.Fatalf("fail: %v", err)
		}
		_, err = agent.Call[int](ctx, h, "failplain", "plain")
		if !errors.As(err, &re) || re.Kind != exchange.ErrorKindGeneric || re.Message != "plain" {
			t.Fatalf("failplain: %v", err)
		}
		_, err = agent.Call[int](ctx, h, "panic", "boom")
		if !errors.Is(err, agent.ErrActionPanic) || !errors.As(err, &re) || !strings.Contains(re.Message, "boom") {
			t.Fatalf("panic: %v", err)
		}
		_, err = agent.Call[int64](ctx, h, "add", "not a pair")
		if !errors.Is(err, agent.ErrBadArguments) {
			t.Fatalf("bad args: %v", err)
		}
		f, err := h.ActionRaw(ctx, "echo", []byte{0xc1}) // 0xc1 is never valid MessagePack
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Wait(ctx); !errors.Is(err, agent.ErrBadArguments) {
			t.Fatalf("raw bad args: %v", err)
		}
		// A result that does not decode as the caller's type.
		if _, err := agent.Call[string](ctx, h, "add", Pair{1, 1}); !errors.Is(err, agent.ErrBadArguments) {
			t.Fatalf("bad result type: %v", err)
		}
		if got, err := agent.Call[[]byte](ctx, h, "echo", []byte("still here")); err != nil || string(got) != "still here" {
			t.Fatalf("echo after errors = %q, %v", got, err)
		}
		// No codec: an error, not a panic.
		if _, err := agent.Action[int](ctx, h, "echo", map[float64]int{}); !errors.Is(err, agent.ErrNoCodec) {
			t.Fatalf("no codec: %v", err)
		}

		rtt, err := h.Ping(ctx)
		if err != nil || rtt <= 0 {
			t.Fatalf("ping = %v, %v", rtt, err)
		}
		ids, err := m.Client().Discover(ctx, "Base", true)
		if err != nil || len(ids) != 1 || ids[0] != h.AgentID() {
			t.Fatalf("discover Base = %v, %v", ids, err)
		}
		if err := m.Shutdown(ctx, h.AgentID(), true); err != nil {
			t.Fatal(err)
		}
		if st, _ := x.Status(ctx, h.AgentID()); st != exchange.StatusTerminated {
			t.Fatalf("status after shutdown = %v", st)
		}
		if _, err := agent.Call[[]byte](ctx, h, "echo", []byte("x")); !errors.Is(err, agent.ErrAgentTerminated) {
			t.Fatalf("call after shutdown: %v", err)
		}
		if _, err := h.Ping(ctx); !errors.Is(err, agent.ErrAgentTerminated) {
			t.Fatalf("ping after shutdown: %v", err)
		}
		if err := m.Wait(ctx); err != nil {
			t.Fatalf("wait: %v", err)
		}
	})
}

func TestConcurrencyLimit(t *testing.T) {
	for _, limit := range []int{1, 2, 0} {
		t.Run(fmt.Sprint("max=", limit), func(t *testing.T) {
			forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
				ctx := testCtx(t)
				h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(limit))
				if err != nil {
					t.Fatal(err)
				}
				var fs []*agent.Future[int]
				for range 6 {
					f, err := agent.Action[int](ctx, h, "sleep", 30)
					if err != nil {
						t.Fatal(err)
					}
					fs = append(fs, f)
				}
				// Pings are answered while actions wait for a worker.
				if _, err := h.Ping(ctx); err != nil {
					t.Fatal(err)
				}
				for _, f := range fs {
					if v, err := f.Wait(ctx); err != nil || v != 30 {
						t.Fatalf("sleep = %v, %v", v, err)
					}
				}
				seen, err := agent.Call[int64](ctx, h, "maxseen", agent.NoArgs{})
				if err != nil {
					t.Fatal(err)
				}
				if limit > 0 && seen > int64(limit) || seen < 1 {
					t.Fatalf("max concurrent actions = %d with limit %d", seen, limit)
				}
				t.Logf("max concurrent actions seen: %d (limit %d)", seen, limit)
			})
		})
	}
}

func TestFutures(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		f, err := agent.Action[int](ctx, h, "sleep", 5000)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Result(); !errors.Is(err, agent.ErrPending) {
			t.Fatalf("Result while pending: %v", err)
		}
		short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		if _, err := f.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with a short ctx: %v", err)
		}
		cancel()
		if !f.Cancel() {
			t.Fatal("Cancel of a pending future returned false")
		}
		if _, err := f.Wait(ctx); !errors.Is(err, agent.ErrCanceled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait after Cancel: %v", err)
		}
		if f.Cancel() {
			t.Fatal("second Cancel returned true")
		}

		// Call gives up with its ctx.
		short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
		if _, err := agent.Call[int](short, h, "sleep", 5000); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call with a short ctx: %v", err)
		}
		cancel()

		// Close waits for pending futures...
		h2 := m.Client().Handle(h.AgentID())
		f2, err := agent.Action[int](ctx, h2, "sleep", 20)
		if err != nil {
			t.Fatal(err)
		}
		if err := h2.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := f2.Result(); err != nil || v != 20 {
			t.Fatalf("future after Close waited: %v, %v", v, err)
		}
		if _, err := agent.Action[int](ctx, h2, "sleep", 1); !errors.Is(err, agent.ErrHandleClosed) {
			t.Fatalf("call on a closed handle: %v", err)
		}
		// ... or cancels them.
		h3 := m.Client().Handle(h.AgentID())
		f3, err := agent.Action[int](ctx, h3, "sleep", 5000)
		if err != nil {
			t.Fatal(err)
		}
		done, cancel := context.WithCancel(ctx)
		cancel()
		if err := h3.Close(done); !errors.Is(err, context.Canceled) {
			t.Fatalf("Close with a done ctx: %v", err)
		}
		if _, err := f3.Result(); !errors.Is(err, agent.ErrHandleClosed) {
			t.Fatalf("future cancelled by Close: %v", err)
		}
		// The handle's agent is unaffected.
		if _, err := h.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestManyHandlesShareClient(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		var agents []exchange.EntityID
		for range 3 {
			h, err := m.Launch(ctx, "Echo")
			if err != nil {
				t.Fatal(err)
			}
			agents = append(agents, h.AgentID())
		}
		c := m.Client()
		var wg sync.WaitGroup
		errc := make(chan error, 64)
		for i := range 12 {
			h := c.Handle(agents[i%3])
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer h.Close(ctx)
				var fs []*agent.Future[[]byte]
				var want [][]byte
				for j := range 20 {
					arg := fmt.Appendf(nil, "h%d-%d", i, j)
					f, err := agent.Action[[]byte](ctx, h, "echo", arg)
					if err != nil {
						errc <- err
						return
					}
					fs, want = append(fs, f), append(want, arg)
				}
				for j, f := range fs {
					got, err := f.Wait(ctx)
					if err != nil || !bytes.Equal(got, want[j]) {
						errc <- fmt.Errorf("handle %d call %d: %q, %v", i, j, got, err)
						return
					}
				}
				if h.Source() != c.ID() {
					errc <- fmt.Errorf("handle source %v, client %v", h.Source(), c.ID())
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
	})
}

func TestAgentToAgent(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		a, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		// The client passes b's id to a, which binds a handle to its own
		// mailbox and calls b; and the other way round, at the same time.
		fa, err := agent.Action[string](ctx, a, "relay", b.AgentID())
		if err != nil {
			t.Fatal(err)
		}
		fb, err := agent.Action[string](ctx, b, "relay", a.AgentID())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			f  *agent.Future[string]
			to exchange.EntityID
		}{{fa, b.AgentID()}, {fb, a.AgentID()}} {
			got, err := c.f.Wait(ctx)
			if err != nil || got != "via "+c.to.String() {
				t.Fatalf("relay = %q, %v", got, err)
			}
		}
		// Relay to an agent that does not exist: a clear error, not a hang.
		_, err = agent.Call[string](ctx, a, "relay", exchange.NewAgentID())
		if !errors.Is(err, exchange.ErrBadEntityID) && !strings.Contains(err.Error(), exchange.ErrBadEntityID.Error()) {
			t.Fatalf("relay to nobody: %v", err)
		}
	})
}

func TestClientClose(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		c, err := agent.NewClient(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		ch := c.Handle(h.AgentID())
		f, err := agent.Action[int](ctx, ch, "sleep", 5000)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Wait(ctx); !errors.Is(err, agent.ErrHandleClosed) {
			t.Fatalf("future after client Close: %v", err)
		}
		if _, err := ch.Ping(ctx); !errors.Is(err, agent.ErrHandleClosed) {
			t.Fatalf("ping after client Close: %v", err)
		}
		if st, _ := x.Status(ctx, c.ID()); st != exchange.StatusTerminated {
			t.Fatalf("client mailbox %v after Close", st)
		}
		// The agent answers the abandoned call into a terminated mailbox
		// and keeps serving others.
		if _, err := h.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFuturesWithoutWait: futures completed by the listener, observed only
// through Done and Result; many more than a mailbox holds.
func TestFuturesWithoutWait(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		const n = 3000
		fs := make([]*agent.Future[int64], 0, n)
		for i := range n {
			f, err := agent.Action[int64](ctx, h, "add", Pair{int64(i), 1})
			if err != nil {
				t.Fatal(err)
			}
			fs = append(fs, f)
		}
		for i, f := range fs {
			if i%2 == 0 {
				select {
				case <-f.Done():
				case <-ctx.Done():
					t.Fatalf("future %d not done", i)
				}
			} else {
				for {
					v, err := f.Result()
					if errors.Is(err, agent.ErrPending) {
						time.Sleep(100 * time.Microsecond)
						continue
					}
					if err != nil || v != int64(i)+1 {
						t.Fatalf("future %d: %v, %v", i, v, err)
					}
					break
				}
			}
		}
	})
}

// TestClientMailboxTerminated: a client whose mailbox is terminated under
// it fails its calls in flight instead of waiting forever.
func TestClientMailboxTerminated(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		c, err := agent.NewClient(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f, err := agent.Action[int](ctx, c.Handle(h.AgentID()), "sleep", 200)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.Terminate(ctx, c.ID()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Wait(ctx); !errors.Is(err, agent.ErrHandleClosed) {
			t.Fatalf("future of a client whose mailbox was terminated: %v", err)
		}
	})
}

// TestClientStrayRequestFullSender: a request sent to a client's mailbox by
// a peer whose own mailbox is full (so that the client's error answer cannot
// be delivered) does not wedge the client: its calls still complete.
func TestClientStrayRequestFullSender(t *testing.T) {
	ctx := testCtx(t)
	x := exchange.NewLocal(exchange.WithLocalCapacity(1))
	defer x.Close()
	m, err := agent.NewManager(ctx, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo")
	if err != nil {
		t.Fatal(err)
	}
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A rogue agent that never receives: its one-message mailbox is full.
	rogue, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Rogue"})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Send(ctx, exchange.NewPingRequest(c.ID(), rogue)); err != nil {
		t.Fatal(err)
	}
	if err := x.Send(ctx, exchange.NewActionRequest(rogue, c.ID(), "stray", nil)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := agent.Call[[]byte](ctx, c.Handle(h.AgentID()), "echo", []byte("hi"))
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || string(r.out) != "hi" {
			t.Fatalf("call after a stray request = %q, %v", r.out, r.err)
		}
	case <-time.After(testTimeout):
		x.Close() // unblocks the wedged send, so that the cleanup ends
		t.Fatal("a client wedged by answering a stray request into a full mailbox")
	}
}
