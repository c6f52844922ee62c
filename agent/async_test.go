package agent_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// slowAsync is an exchange whose SendAsync sends a copy of the message
// 20 ms later, from another goroutine: a runtime that did not flush
// before it reports done would be caught with sends in flight.
type slowAsync struct {
	exchange.Exchange
	wg               sync.WaitGroup
	queued, finished atomic.Int64
	failed           atomic.Int64
}

func (s *slowAsync) SendAsync(ctx context.Context, m *exchange.Message) error {
	if err := m.Validate(); err != nil {
		return err
	}
	c := m.Clone()
	s.queued.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		time.Sleep(20 * time.Millisecond)
		if err := s.Exchange.Send(context.WithoutCancel(ctx), c); err != nil {
			s.failed.Add(1)
		}
		s.finished.Add(1)
	}()
	return nil
}

func (s *slowAsync) Flush(context.Context) error {
	s.wg.Wait()
	return nil
}

// TestRuntimeAsyncResponses: on an exchange.AsyncSender, the runtime sends
// its responses with SendAsync (requests stay synchronous: the client's
// calls go through Send), every call gets its result, and Run does not
// return before the responses it queued are sent: a shutdown right after
// the last one was queued loses none.
func TestRuntimeAsyncResponses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	local := exchange.NewLocal()
	defer local.Close()
	x := &slowAsync{Exchange: local}
	b := agent.NewBehavior("Echo")
	if err := agent.AddAction(b, "echo", func(_ context.Context, n int) (int, error) { return n, nil }); err != nil {
		t.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(ctx) }()
	c, err := agent.NewClient(ctx, local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.Handle(rt.ID())
	const n = 200
	futs := make([]*agent.Future[int], n)
	for i := range futs {
		if futs[i], err = agent.Action[int](ctx, h, "echo", i); err != nil {
			t.Fatal(err)
		}
	}
	// Every response queued, none necessarily sent: shut down now.
	for x.queued.Load() < n {
		if ctx.Err() != nil {
			t.Fatalf("%d responses queued of %d", x.queued.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	rt.Shutdown()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if q, f := x.queued.Load(), x.finished.Load(); f != q {
		t.Fatalf("Run returned with %d of %d queued responses not sent", q-f, q)
	}
	if f := x.failed.Load(); f != 0 {
		t.Fatalf("%d responses failed", f)
	}
	for i, f := range futs {
		if v, err := f.Wait(ctx); err != nil || v != i {
			t.Fatalf("call %d: %v, %v", i, v, err)
		}
	}
}
