package exchange_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
)

// shmPair opens two handles on one fresh shared-memory exchange: a holds an
// agent and its mailbox, b a client and its mailbox.
func shmPair(tb testing.TB, opts ...exchange.Option) (a, b *exchange.SHM, agent, client exchange.EntityID, amb, cmb exchange.Mailbox) {
	tb.Helper()
	root := testRoot(tb)
	a = openSHM(tb, root, "allocs", opts...)
	b = openSHM(tb, root, "allocs", opts...)
	ctx := context.Background()
	var err error
	if agent, err = a.RegisterAgent(ctx, exchange.Behavior{Name: "Echo"}); err != nil {
		tb.Fatal(err)
	}
	if client, err = b.RegisterClient(ctx); err != nil {
		tb.Fatal(err)
	}
	if amb, err = a.Mailbox(ctx, agent); err != nil {
		tb.Fatal(err)
	}
	if cmb, err = b.Mailbox(ctx, client); err != nil {
		tb.Fatal(err)
	}
	return a, b, agent, client, amb, cmb
}

func args64() []byte {
	args := make([]byte, 64)
	for i := range args {
		args[i] = byte(i)
	}
	return args
}

// TestSHMSendRecvAllocs: in steady state (destination ring mapped, producer
// attached, the receiving Message's slices grown), a Send of an
// ActionRequest with 64 bytes of args from one handle and its Recv by
// another allocate nothing, nor does the response on the way back.
func TestSHMSendRecvAllocs(t *testing.T) {
	a, b, agent, client, amb, cmb := shmPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := exchange.NewActionRequest(client, agent, "compute", args64())
	var got, resp exchange.Message
	request := func() {
		if err := b.Send(ctx, req); err != nil {
			t.Fatal(err)
		}
		if err := amb.Recv(ctx, &got); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip := func() {
		request()
		got.SetResponse(&got, got.Args) // answer in place
		if err := a.Send(ctx, &got); err != nil {
			t.Fatal(err)
		}
		if err := cmb.Recv(ctx, &resp); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 { // warm up: map the rings, attach producers, grow the slices
		roundTrip()
	}
	if !got.Equal(req.Response(req.Args)) || !resp.Equal(&got) {
		t.Fatalf("round trip: got %v and %v for %v", &got, &resp, req)
	}
	if n := testing.AllocsPerRun(1000, request); n != 0 {
		t.Errorf("Send + Recv of a request with 64 bytes of args: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, roundTrip); n != 0 {
		t.Errorf("request and response round trip: %v allocations, want 0", n)
	}
}

// BenchmarkSHMRoundTrip measures a request and its response through two
// mailboxes of one exchange, in one process: the client goroutine sends an
// ActionRequest (64 bytes of args) and waits for the response, which a
// server goroutine on another handle sends back.
func BenchmarkSHMRoundTrip(b *testing.B) {
	a, c, agent, client, amb, cmb := shmPair(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var m exchange.Message
		for {
			if err := amb.Recv(ctx, &m); err != nil {
				if errors.Is(err, exchange.ErrMailboxClosed) || ctx.Err() != nil {
					err = nil
				}
				done <- err
				return
			}
			m.SetResponse(&m, m.Args)
			if err := a.Send(ctx, &m); err != nil {
				done <- err
				return
			}
		}
	}()
	req := exchange.NewActionRequest(client, agent, "compute", args64())
	var resp exchange.Message
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
		if err := cmb.Recv(ctx, &resp); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cancel()
	amb.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if resp.Tag != req.Tag || len(resp.Result) != 64 {
		b.Fatalf("last response %v to %v", &resp, req)
	}
}

// TestSHMParkedRecvAllocs: receivers that sleep on the futex (ring.Park)
// with a cancellable context, the normal case of an agent's receive loop,
// allocate nothing per message either: the context is registered once, not
// at every sleep.
func TestSHMParkedRecvAllocs(t *testing.T) {
	a, b, agent, client, amb, cmb := shmPair(t, exchange.WithIdle(ring.Park))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var m exchange.Message
		for {
			if err := amb.Recv(ctx, &m); err != nil {
				done <- err
				return
			}
			m.SetResponse(&m, m.Args)
			if err := a.Send(ctx, &m); err != nil {
				done <- err
				return
			}
		}
	}()
	req := exchange.NewActionRequest(client, agent, "compute", args64())
	var resp exchange.Message
	roundTrip := func() {
		if err := b.Send(ctx, req); err != nil {
			t.Fatal(err)
		}
		if err := cmb.Recv(ctx, &resp); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		roundTrip()
	}
	if n := testing.AllocsPerRun(500, roundTrip); n != 0 {
		t.Errorf("round trip with parked receivers and a cancellable context: %v allocations, want 0", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("echo: %v", err)
	}
}
