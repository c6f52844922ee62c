package redisx_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/logrecord"
	"github.com/shmex/shmex/internal/redistest"
)

// asyncResponse returns response number i from src to dest (i in its
// result).
func asyncResponse(src, dest exchange.EntityID, i int) *exchange.Message {
	res := binary.LittleEndian.AppendUint64(nil, uint64(i))
	return exchange.NewActionResponse(src, dest, exchange.NewUUID(), res)
}

// recvIndexes receives n messages from mb and returns the index in each.
func recvIndexes(t *testing.T, ctx context.Context, mb exchange.Mailbox, n int) []int {
	t.Helper()
	out := make([]int, 0, n)
	var m exchange.Message
	for len(out) < n {
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatalf("Recv after %d of %d: %v", len(out), n, err)
		}
		if len(m.Result) != 8 {
			t.Fatalf("message %d: result of %d bytes", len(out), len(m.Result))
		}
		out = append(out, int(binary.LittleEndian.Uint64(m.Result)))
	}
	return out
}

// asyncNodes returns node A (the sender) and node B (a client registered
// and its mailbox open there) of kind, in this process, on the shared
// server.
func asyncNodes(t *testing.T, kind string, extraA ...redisx.Option) (a exchange.Exchange, agentA, cid exchange.EntityID, mb exchange.Mailbox, b exchange.Exchange) {
	t.Helper()
	srv := sharedServer(t)
	prefix := newPrefix()
	a = joinT(t, spec(t, srv.Addr, prefix, kind, "A"), extraA...)
	b = joinT(t, spec(t, srv.Addr, prefix, kind, "B"))
	ctx := ctxT(t, 20*time.Second)
	var err error
	if agentA, err = a.RegisterAgent(ctx, exchange.Behavior{Name: "W"}); err != nil {
		t.Fatal(err)
	}
	if cid, err = b.RegisterClient(ctx); err != nil {
		t.Fatal(err)
	}
	if mb, err = b.Mailbox(ctx, cid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	return a, agentA, cid, mb, b
}

// TestSendAsyncOrder: responses sent with SendAsync from one goroutine to
// another node arrive, all, in order; Flush returns nil; a message is
// copied at the call (the caller reuses it at once).
func TestSendAsyncOrder(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, src, cid, mb, _ := asyncNodes(t, kind)
			as, ok := a.(exchange.AsyncSender)
			if !ok {
				t.Fatalf("%T is not an exchange.AsyncSender", a)
			}
			ctx := ctxT(t, 60*time.Second)
			const n = 3000
			m := asyncResponse(src, cid, 0)
			for i := range n {
				binary.LittleEndian.PutUint64(m.Result, uint64(i)) // reused: SendAsync copied the last one
				if err := as.SendAsync(ctx, m); err != nil {
					t.Fatalf("SendAsync %d: %v", i, err)
				}
			}
			if err := as.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			got := recvIndexes(t, ctx, mb, n)
			for i, v := range got {
				if v != i {
					t.Fatalf("message %d carries %d: out of order", i, v)
				}
			}
		})
	}
}

// TestSendAsyncCloseFlushes: Close of the sending handle right after a
// stream of SendAsync returns once they are all in Redis: the receiver on
// the other node gets every one.
func TestSendAsyncCloseFlushes(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a, src, cid, mb, _ := asyncNodes(t, kind)
			as := a.(exchange.AsyncSender)
			ctx := ctxT(t, 60*time.Second)
			const n = 1000
			for i := range n {
				if err := as.SendAsync(ctx, asyncResponse(src, cid, i)); err != nil {
					t.Fatalf("SendAsync %d: %v", i, err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := as.SendAsync(ctx, asyncResponse(src, cid, n)); !errors.Is(err, exchange.ErrExchangeClosed) {
				t.Fatalf("SendAsync after Close: %v, want ErrExchangeClosed", err)
			}
			got := recvIndexes(t, ctx, mb, n)
			for i, v := range got {
				if v != i {
					t.Fatalf("message %d carries %d", i, v)
				}
			}
			// Nothing more: the closed handle's last SendAsync was refused.
			c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			var m exchange.Message
			if err := mb.Recv(c, &m); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Recv after the stream: %v (%v), want a timeout", err, &m)
			}
		})
	}
}

// TestSendAsyncFailures: what cannot be delivered after SendAsync returned
// (a destination that does not exist, a mailbox that stays full until the
// context ends) is logged and returned by the next Flush; what is refused
// at the call (a bad message) is returned by SendAsync.
func TestSendAsyncFailures(t *testing.T) {
	rec := &logrecord.Recorder{}
	srv := sharedServer(t)
	prefix := newPrefix()
	a := open(t, srv.Addr, prefix, redisx.WithNode("A"), redisx.WithLogger(slog.New(rec)))
	b := open(t, srv.Addr, prefix, redisx.WithNode("B"), redisx.WithMailboxCapacity(4))
	ctx := ctxT(t, 60*time.Second)
	src, err := a.RegisterAgent(ctx, exchange.Behavior{Name: "W"})
	if err != nil {
		t.Fatal(err)
	}

	// A bad message: refused at the call.
	if err := a.SendAsync(ctx, &exchange.Message{}); !errors.Is(err, exchange.ErrBadMessage) {
		t.Fatalf("SendAsync of an empty message: %v, want ErrBadMessage", err)
	}

	// A destination that does not exist: logged, returned by Flush.
	if err := a.SendAsync(ctx, asyncResponse(src, exchange.NewClientID(), 0)); err != nil {
		t.Fatalf("SendAsync to a missing client: %v", err)
	}
	if err := a.Flush(ctx); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("Flush after a send to a missing client: %v, want ErrBadEntityID", err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("second Flush: %v, want nil (the failure was reported once)", err)
	}

	// A mailbox of capacity 4 that nobody drains: the rest wait for room
	// until their context ends.
	cid, err := b.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	const n = 10
	for i := range n {
		if err := a.SendAsync(short, asyncResponse(src, cid, i)); err != nil {
			t.Fatalf("SendAsync %d: %v", i, err)
		}
	}
	if err := a.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with a full mailbox: %v, want DeadlineExceeded", err)
	}
	_, warns, msgs := rec.Levels()
	if warns < n-4 {
		t.Fatalf("%d warnings for %d messages dropped on a full mailbox: %q", warns, n-4, msgs)
	}
	mb, err := b.Mailbox(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	got := recvIndexes(t, ctx, mb, 4)
	for i, v := range got {
		if v != i {
			t.Fatalf("message %d carries %d", i, v)
		}
	}

	// With a receiver draining, a full mailbox only delays: every message
	// arrives (not necessarily in order).
	const m = 40
	for i := range m {
		if err := a.SendAsync(ctx, asyncResponse(src, cid, i)); err != nil {
			t.Fatalf("SendAsync %d: %v", i, err)
		}
	}
	seen := map[int]bool{}
	for _, v := range recvIndexes(t, ctx, mb, m) {
		seen[v] = true
	}
	if len(seen) != m {
		t.Fatalf("%d distinct messages of %d", len(seen), m)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// TestSendAsyncRedisKilled: Redis killed while responses are queued: the
// ones that cannot go are logged at warn level and Flush returns
// ErrUnavailable within the outage wait; nothing hangs or panics, and
// Close returns.
func TestSendAsyncRedisKilled(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rec := &logrecord.Recorder{}
			srv := redistest.Start(t)
			prefix := newPrefix()
			a := joinT(t, spec(t, srv.Addr, prefix, kind, "A"), redisx.WithOutageWait(300*time.Millisecond), redisx.WithLogger(slog.New(rec)))
			b := joinT(t, spec(t, srv.Addr, prefix, kind, "B"))
			ctx := ctxT(t, 60*time.Second)
			src, err := a.RegisterAgent(ctx, exchange.Behavior{Name: "W"})
			if err != nil {
				t.Fatal(err)
			}
			cid, err := b.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			as := a.(exchange.AsyncSender)
			// A first send teaches a hybrid where cid lives (a look-up in
			// Redis that the queued sends below no longer need).
			if err := as.SendAsync(ctx, asyncResponse(src, cid, 0)); err != nil {
				t.Fatal(err)
			}
			if err := as.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			const n = 500
			killed := make(chan struct{})
			go func() {
				defer close(killed)
				srv.Kill()
			}()
			for i := range n {
				if err := as.SendAsync(ctx, asyncResponse(src, cid, i)); err != nil {
					t.Fatalf("SendAsync %d: %v", i, err)
				}
			}
			<-killed
			// Surely after the kill.
			for i := range 10 {
				if err := as.SendAsync(ctx, asyncResponse(src, cid, n+i)); err != nil {
					t.Fatalf("SendAsync after the kill: %v", err)
				}
			}
			start := time.Now()
			err = as.Flush(ctx)
			if !errors.Is(err, redisx.ErrUnavailable) {
				t.Fatalf("Flush with Redis killed: %v, want ErrUnavailable", err)
			}
			t.Logf("Flush returned after %v: %v", time.Since(start), err)
			if _, warns, msgs := rec.Levels(); warns == 0 {
				t.Fatalf("no warning logged: %q", msgs)
			}
			closed := make(chan error, 1)
			go func() { closed <- a.Close() }()
			select {
			case <-closed:
			case <-ctx.Done():
				t.Fatal("Close hangs with Redis killed")
			}
		})
	}
}

// TestHybridSendAsyncSameNode: on the hybrid exchange, SendAsync to an
// entity of the same node is the ring's send, done when it returns: the
// message is there at once, without a Flush.
func TestHybridSendAsyncSameNode(t *testing.T) {
	srv := sharedServer(t)
	x := joinT(t, spec(t, srv.Addr, newPrefix(), "hybrid", "A"))
	ctx := ctxT(t, 20*time.Second)
	src, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "W"})
	if err != nil {
		t.Fatal(err)
	}
	cid, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := x.(exchange.AsyncSender).SendAsync(ctx, asyncResponse(src, cid, 7)); err != nil {
		t.Fatal(err)
	}
	if got := recvIndexes(t, ctx, mb, 1); got[0] != 7 {
		t.Fatalf("got %d", got[0])
	}
	// A terminated same-node mailbox is refused at the call, as Send is.
	if err := x.Terminate(ctx, cid); err != nil {
		t.Fatal(err)
	}
	if err := x.(exchange.AsyncSender).SendAsync(ctx, asyncResponse(src, cid, 8)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("SendAsync to a terminated same-node mailbox: %v, want ErrMailboxClosed", err)
	}
}
