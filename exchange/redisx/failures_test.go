package redisx_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/redistest"
)

// TestRedisKilled: with Redis gone for good, every call returns a clear
// error (ErrUnavailable, or the context's error wrapping it) within the
// outage wait or its context; nothing hangs, nothing panics; Close returns.
func TestRedisKilled(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			n := spec(t, srv.Addr, newPrefix(), kind, "A")
			x, err := n.join(ctxT(t, 20*time.Second), redisx.WithOutageWait(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t, 20*time.Second)
			aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
			if err != nil {
				t.Fatal(err)
			}
			cid, err := x.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mb, err := x.Mailbox(ctx, aid)
			if err != nil {
				t.Fatal(err)
			}
			srv.Kill()
			recvDone := make(chan error, 1)
			go func() {
				var m exchange.Message
				// On the hybrid the ping below arrives through the ring: no
				// deadline to meet; on Redis alone, Recv must end with its
				// deadline, saying Redis is gone.
				wait := 2 * time.Second
				if kind == "hybrid" {
					wait = 20 * time.Second
				}
				c, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				recvDone <- mb.Recv(c, &m)
			}()
			if kind == "hybrid" {
				// The same-node path does not touch Redis.
				if err := x.Send(ctx, exchange.NewPingRequest(cid, aid)); err != nil {
					t.Fatalf("same-node Send with Redis killed: %v", err)
				}
			}

			unavailable := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, redisx.ErrUnavailable) {
					t.Fatalf("%s with Redis killed: %v, want ErrUnavailable", what, err)
				}
			}
			far := exchange.NewAgentID() // on no node: a hybrid must ask Redis
			_, err = x.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
			unavailable("RegisterAgent", err)
			unavailable("Send to an unknown id", x.Send(ctx, exchange.NewPingRequest(cid, far)))
			_, err = x.Status(ctx, far)
			unavailable("Status", err)
			_, err = x.Discover(ctx, "B", true)
			unavailable("Discover", err)
			unavailable("Terminate", x.Terminate(ctx, far))
			if kind == "redis" {
				unavailable("Send", x.Send(ctx, exchange.NewPingRequest(cid, aid)))
				_, err = x.Mailbox(ctx, cid)
				unavailable("Mailbox", err)
			}
			// A context shorter than the outage wait ends the call first.
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			_, err = x.Status(short, far)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Status with a short context: %v", err)
			}
			err = <-recvDone
			if kind == "hybrid" {
				// The ring is on this node: the ping arrives.
				if err != nil {
					t.Fatalf("hybrid Recv with Redis killed: %v", err)
				}
			} else if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, redisx.ErrUnavailable) {
				t.Fatalf("Recv with Redis killed: %v, want its deadline and ErrUnavailable", err)
			}
			closed := make(chan error, 1)
			go func() { closed <- x.Close() }()
			select {
			case <-closed:
			case <-time.After(15 * time.Second):
				t.Fatal("Close hangs with Redis killed")
			}
		})
	}
}

// TestRedisRestartDuringCalls: Redis is killed and restarted (from its
// append-only file) in the middle of a stream of calls from node A to an
// agent on node B. Calls during the outage fail with clear errors within
// their context; afterwards they go through again, to the same agent,
// whose counter kept every action that succeeded.
func TestRedisRestartDuringCalls(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			prefix := newPrefix()
			a := joinT(t, spec(t, srv.Addr, prefix, kind, "A"))
			_, aid := startAgentNode(t, spec(t, srv.Addr, prefix, kind, "B"))
			cl := newClient(t, a)
			h := cl.Handle(aid)
			total := ctxT(t, 90*time.Second)

			var ok, failed, after int64
			restarted := false
			for after < 20 {
				if total.Err() != nil {
					t.Fatalf("%d calls went through, %d failed, %d after the restart: out of time", ok, failed, after)
				}
				if ok == 20 && !restarted {
					srv.Kill()
					time.Sleep(300 * time.Millisecond)
					if err := srv.Restart(); err != nil {
						t.Fatal(err)
					}
					restarted = true
				}
				c, cancel := context.WithTimeout(total, 3*time.Second)
				start := time.Now()
				_, err := agent.Call[int64](c, h, "add", int64(1))
				cancel()
				if took := time.Since(start); took > 10*time.Second {
					t.Fatalf("a call took %v", took)
				}
				switch {
				case err == nil:
					ok++
					if restarted {
						after++
					}
				case errors.Is(err, redisx.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
					failed++
				default:
					t.Fatalf("call %d: unexpected error %v", ok+failed, err)
				}
			}
			n, err := agent.Call[int64](total, h, "add", int64(0))
			if err != nil {
				t.Fatal(err)
			}
			if n < ok || n > ok+failed {
				t.Fatalf("counter %d after %d successful and %d failed adds", n, ok, failed)
			}
			if st, err := a.Status(total, aid); err != nil || st != exchange.StatusActive {
				t.Fatalf("agent after the restart: %v, %v", st, err)
			}
			t.Logf("%s: %d calls went through, %d failed during the restart", kind, ok, failed)
		})
	}
}

// TestRedisRestartNothingLost: a stream of messages between two processes'
// sessions while Redis is killed and restarted: every message whose Send
// returned nil is received; the only duplicates are of messages whose send
// failed and was retried.
func TestRedisRestartNothingLost(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	opts := []redisx.Option{redisx.WithOutageWait(time.Second), redisx.WithLivenessTTL(testTTL)}
	sx := open(t, srv.Addr, prefix, append(opts, redisx.WithNode("S"))...)
	rx := open(t, srv.Addr, prefix, append(opts, redisx.WithNode("R"))...)
	ctx := ctxT(t, 90*time.Second)
	src, err := sx.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := rx.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := rx.Mailbox(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()

	const n = 600
	received := make([]int, n)
	var rmu sync.Mutex
	recvErr := make(chan error, 1)
	stopRecv := make(chan struct{})
	go func() {
		var m exchange.Message
		for {
			c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := mb.Recv(c, &m)
			cancel()
			select {
			case <-stopRecv:
				recvErr <- nil
				return
			default:
			}
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					continue
				}
				recvErr <- err
				return
			}
			i := binary.BigEndian.Uint32(m.Result)
			rmu.Lock()
			received[i]++
			rmu.Unlock()
		}
	}()

	retried := make([]bool, n)
	for i := 0; i < n; i++ {
		if i == n/3 {
			srv.Kill()
			go func() {
				time.Sleep(300 * time.Millisecond)
				srv.Restart()
			}()
		}
		m := exchange.NewActionResponse(src, dst, exchange.NewTag(), binary.BigEndian.AppendUint32(nil, uint32(i)))
		for {
			c, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := sx.Send(c, m)
			cancel()
			if err == nil {
				break
			}
			if !errors.Is(err, redisx.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("send %d: %v", i, err)
			}
			if ctx.Err() != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			retried[i] = true
		}
	}
	for {
		rmu.Lock()
		missing := -1
		for i, c := range received {
			if c == 0 {
				missing = i
				break
			}
		}
		rmu.Unlock()
		if missing < 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("message %d was sent (Send returned nil) and never received", missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopRecv)
	if err := <-recvErr; err != nil {
		t.Fatal(err)
	}
	rmu.Lock()
	defer rmu.Unlock()
	dups := 0
	for i, c := range received {
		if c > 1 {
			if !retried[i] {
				t.Fatalf("message %d received %d times, sent once", i, c)
			}
			dups++
		}
	}
	t.Logf("%d messages, %d received twice after an ambiguous send was retried", n, dups)
}

// callUntil calls add(0) on h until it succeeds, tolerating the errors of
// an outage and of records not yet written back.
func callUntil(t *testing.T, ctx context.Context, h *agent.Handle) {
	t.Helper()
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := agent.Call[int64](c, h, "add", int64(0))
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no call went through: %v", err)
		}
		// While Redis is down or back without its data (until the agent's
		// process writes its record back), a call fails as unavailable, in
		// time, as terminated, or as to no such agent.
		if !errors.Is(err, redisx.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, agent.ErrAgentTerminated) && !errors.Is(err, exchange.ErrBadEntityID) {
			t.Fatalf("call: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisLongOutage: Redis is down for three liveness TTLs (every
// heartbeat expires meanwhile) and comes back from its append-only file:
// nobody is declared dead for Redis's absence, and node A's calls reach
// node B's agent again.
func TestRedisLongOutage(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			prefix := newPrefix()
			a := joinT(t, spec(t, srv.Addr, prefix, kind, "A"))
			_, aid := startAgentNode(t, spec(t, srv.Addr, prefix, kind, "B"))
			cl := newClient(t, a)
			ctx := ctxT(t, 60*time.Second)
			callUntil(t, ctx, cl.Handle(aid))
			srv.Kill()
			time.Sleep(3 * testTTL)
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			callUntil(t, ctx, cl.Handle(aid))
			// Past the grace, the agent is still alive: its heartbeat came back.
			time.Sleep(3 * testTTL)
			if st, err := a.Status(ctx, aid); err != nil || st != exchange.StatusActive {
				t.Fatalf("Status of node B's agent after the outage = %v, %v", st, err)
			}
			callUntil(t, ctx, cl.Handle(aid))
		})
	}
}

// TestRedisDataLost: Redis comes back empty (no persistence): every
// process writes back the records of what it owns, and calls from node A
// to node B's agent go through again (what was queued is lost).
func TestRedisDataLost(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			prefix := newPrefix()
			a := joinT(t, spec(t, srv.Addr, prefix, kind, "A"))
			_, aid := startAgentNode(t, spec(t, srv.Addr, prefix, kind, "B"))
			cl := newClient(t, a)
			ctx := ctxT(t, 60*time.Second)
			callUntil(t, ctx, cl.Handle(aid))
			srv.Kill()
			if err := srv.Wipe(); err != nil {
				t.Fatal(err)
			}
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			callUntil(t, ctx, cl.Handle(aid))
			found, err := a.Discover(ctx, "Worker", false)
			if err != nil || len(found) != 1 || found[0] != aid {
				t.Fatalf("Discover after Redis lost its data = %v, %v", found, err)
			}
		})
	}
}
