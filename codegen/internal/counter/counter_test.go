package counter_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/codegen/internal/counter"
	"github.com/shmex/shmex/exchange"
)

// impl is a Counter served by an agent.
type impl struct {
	mu sync.Mutex
	n  int
}

func (c *impl) Add(_ context.Context, by int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if by < 0 {
		return 0, errors.New("negative increment")
	}
	c.n += by
	return c.n, nil
}

func (c *impl) Count(context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, nil
}

func (c *impl) Reset(context.Context) error { c.mu.Lock(); c.n = 0; c.mu.Unlock(); return nil }

func (c *impl) Set(_ context.Context, n int) error { c.mu.Lock(); c.n = n; c.mu.Unlock(); return nil }

func (c *impl) Name(context.Context) (string, error) { return "counter", nil }

func (c *impl) Echo(_ context.Context, b []byte) ([]byte, error) { return b, nil }

// TestGeneratedHandle serves impl through the generated action table and
// calls it through the generated handle, on the in-process exchange.
func TestGeneratedHandle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x := exchange.NewLocal()
	defer x.Close()
	b := agent.NewBehavior("Counter")
	if err := counter.AddCounterActions(b, &impl{}); err != nil {
		t.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	cl, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var c counter.Counter = counter.NewCounterHandle(cl.Handle(rt.ID()))
	if n, err := c.Add(ctx, 2); n != 2 || err != nil {
		t.Fatalf("Add(2) = %d, %v", n, err)
	}
	if err := c.Set(ctx, 40); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Add(ctx, 2); n != 42 || err != nil {
		t.Fatalf("Add(2) after Set(40) = %d, %v", n, err)
	}
	var re *exchange.RemoteError
	if _, err := c.Add(ctx, -1); !errors.As(err, &re) || re.Message != "negative increment" {
		t.Fatalf("Add(-1) = %v, want the remote error", err)
	}
	if s, err := c.Name(ctx); s != "counter" || err != nil {
		t.Fatalf("Name = %q, %v", s, err)
	}
	if b, err := c.Echo(ctx, []byte("hi")); string(b) != "hi" || err != nil {
		t.Fatalf("Echo = %q, %v", b, err)
	}
	// Futures: start many, then wait for all.
	h := counter.NewCounterHandle(cl.Handle(rt.ID()))
	if err := h.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	var fs []*agent.Future[int]
	for range 100 {
		f, err := h.AddAsync(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	for _, f := range fs {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := h.Count(ctx); n != 100 || err != nil {
		t.Fatalf("Count after 100 AddAsync = %d, %v", n, err)
	}
	rt.Shutdown()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
