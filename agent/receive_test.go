package agent_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// TestCancelInterruptsReceiver: a caller that receives for its own call
// (it holds the receive token, with a context that never ends) returns as
// soon as another goroutine cancels its future: the receiver is woken,
// not left waiting for a message that never comes.
func TestCancelInterruptsReceiver(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			f, err := agent.Action[int](ctx, h, "sleep", 60_000)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := f.Wait(context.Background())
				done <- err
			}()
			time.Sleep(5 * time.Millisecond) // most often, the waiter is receiving by now
			if !f.Cancel() {
				t.Fatal("Cancel of a pending future returned false")
			}
			select {
			case err := <-done:
				if !errors.Is(err, agent.ErrCanceled) {
					t.Fatalf("Wait after Cancel: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("a cancelled future's waiter was never woken")
			}
		}
		// The client receives on: a call after the cancels.
		if _, err := h.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSharedClientStress: many goroutines share one client, each mixing
// synchronous calls, futures waited in and out of order, futures looked at
// only through Done, and cancels, while the receive token passes between
// them and the listener. Every call gets its own answer.
func TestSharedClientStress(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		var hs []*agent.Handle
		for range 2 {
			h, err := m.Launch(ctx, "Echo")
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		c := m.Client()
		const goroutines, rounds = 8, 60
		var wg sync.WaitGroup
		errc := make(chan error, goroutines)
		for g := range goroutines {
			h := c.Handle(hs[g%len(hs)].AgentID())
			wg.Go(func() {
				defer h.Close(ctx)
				for i := range rounds {
					arg := fmt.Appendf(nil, "g%d-%d", g, i)
					if got, err := agent.Call[[]byte](ctx, h, "echo", arg); err != nil || string(got) != string(arg) {
						errc <- fmt.Errorf("call %s: %q, %v", arg, got, err)
						return
					}
					var fs []*agent.Future[int64]
					for j := range 4 {
						f, err := agent.Action[int64](ctx, h, "add", Pair{int64(i), int64(j)})
						if err != nil {
							errc <- err
							return
						}
						fs = append(fs, f)
					}
					slow, err := agent.Action[int](ctx, h, "sleep", 60_000)
					if err != nil {
						errc <- err
						return
					}
					// Out of order; one only through Done.
					for _, j := range []int{3, 1, 0} {
						if v, err := fs[j].Wait(ctx); err != nil || v != int64(i+j) {
							errc <- fmt.Errorf("add %d+%d = %d, %v", i, j, v, err)
							return
						}
					}
					select {
					case <-fs[2].Done():
					case <-ctx.Done():
						errc <- fmt.Errorf("future %d never done", i)
						return
					}
					if v, err := fs[2].Result(); err != nil || v != int64(i+2) {
						errc <- fmt.Errorf("add %d+2 = %d, %v", i, v, err)
						return
					}
					if !slow.Cancel() {
						errc <- errors.New("cancel of a sleeping call returned false")
						return
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
	})
}

// TestQuickActionTurnsSlow: an action that was quick often enough to run
// without the hand-off timer, and then waits for an answer that only
// another serving goroutine can receive (a ping of its own agent), is
// handed off by the watchdog instead of holding the mailbox for good.
func TestQuickActionTurnsSlow(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			for range 50 { // quick: from the 17th run on, no timer
				if got, err := agent.Call[bool](ctx, h, "selfping", false); err != nil || got {
					t.Fatalf("selfping(false) = %v, %v", got, err)
				}
			}
			if got, err := agent.Call[bool](ctx, h, "selfping", true); err != nil || !got {
				t.Fatalf("selfping(true) = %v, %v", got, err)
			}
		}
	})
}

// TestBatchedResponses: a caller that waits for the last of many futures
// receives the responses of all the others first, in batches (the
// shared-memory exchange's mailbox is an exchange.BatchReceiver), and
// routes each to its future, whatever the handle; the responses to
// futures cancelled meanwhile are dropped, and nothing else is lost.
func TestBatchedResponses(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		h2 := m.Client().Handle(h.AgentID()) // another label, the same mailbox
		const n = 300
		fs := make([]*agent.Future[[]byte], n)
		for i := range fs {
			hi := h
			if i%3 == 0 {
				hi = h2
			}
			if fs[i], err = agent.Action[[]byte](ctx, hi, "echo", []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
			if i%50 == 7 && !fs[i].Cancel() {
				t.Fatalf("Cancel of future %d right after it was sent: false", i)
			}
		}
		for i := n - 1; i >= 0; i-- {
			got, err := fs[i].Wait(ctx)
			if i%50 == 7 {
				if !errors.Is(err, agent.ErrCanceled) {
					t.Fatalf("future %d, cancelled: %q, %v", i, got, err)
				}
				continue
			}
			if err != nil || string(got) != strconv.Itoa(i) {
				t.Fatalf("future %d: %q, %v", i, got, err)
			}
		}
		// The client still works, and routes nothing stale.
		if got, err := agent.Call[[]byte](ctx, h, "echo", []byte("after")); err != nil || string(got) != "after" {
			t.Fatalf("Call after the batch: %q, %v", got, err)
		}
	})
}

// TestFutureRelease: a released future is reused by the handle's next
// action of the same result type, and reads that action's result; a
// pending one is cancelled by its release, and its late response goes to
// no one; a second release does nothing.
func TestFutureRelease(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx := testCtx(t)
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		f, err := agent.Action[[]byte](ctx, h, "echo", []byte("one"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.Wait(ctx); err != nil || string(got) != "one" {
			t.Fatalf("first: %q, %v", got, err)
		}
		f.Release()
		f.Release()
		g, err := agent.Action[[]byte](ctx, h, "echo", []byte("two"))
		if err != nil {
			t.Fatal(err)
		}
		if g != f {
			t.Fatal("the released future was not reused")
		}
		if got, err := g.Wait(ctx); err != nil || string(got) != "two" {
			t.Fatalf("reused: %q, %v", got, err)
		}
		if _, err := g.Result(); err != nil {
			t.Fatal(err)
		}
		g.Release()
		// Another result type gets a future of its own.
		if v, err := agent.Action[int](ctx, h, "sleep", 1); err != nil {
			t.Fatal(err)
		} else if n, err := v.Wait(ctx); err != nil || n != 1 {
			t.Fatalf("sleep: %v, %v", n, err)
		}
		// A pending future, released: cancelled; its response, when it
		// comes, is dropped, and the futures after it read their own.
		slow, err := agent.Action[[]byte](ctx, h, "echo", []byte("late"))
		if err != nil {
			t.Fatal(err)
		}
		slow.Release()
		for i := range 20 {
			want := strconv.Itoa(i)
			f, err := agent.Action[[]byte](ctx, h, "echo", []byte(want))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := f.Wait(ctx); err != nil || string(got) != want {
				t.Fatalf("after a released pending future, %d: %q, %v", i, got, err)
			}
			f.Release()
		}
	})
}

// TestReleasedFuturesKeepLittle: released futures wait in their handle for
// reuse, outside any pool the GC empties, so they keep only a small
// Message: releasing 256 futures of 40 KiB results keeps well under a MiB
// (it kept 12.5 MiB when every future kept its Message up to 64 KiB).
func TestReleasedFuturesKeepLittle(t *testing.T) {
	ctx := testCtx(t)
	b := agent.NewBehavior("Big")
	big := make([]byte, 40<<10)
	if err := agent.AddAction(b, "big", func(context.Context, agent.NoArgs) ([]byte, error) { return big, nil }); err != nil {
		t.Fatal(err)
	}
	h := serveLocal(t, ctx, b)
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	fs := make([]*agent.Future[[]byte], 256)
	for i := range fs {
		f, err := agent.Action[[]byte](ctx, h, "big", agent.NoArgs{})
		if err != nil {
			t.Fatal(err)
		}
		fs[i] = f
	}
	for _, f := range fs {
		if v, err := f.Wait(ctx); err != nil || len(v) != len(big) {
			t.Fatalf("Wait: %d bytes, %v", len(v), err)
		}
		f.Release()
	}
	clear(fs)
	if grew := heap() - before; grew > 2<<20 {
		t.Errorf("the heap grew by %d KiB after 256 futures of 40 KiB results were read and released", grew>>10)
	}
	runtime.KeepAlive(h)
}
