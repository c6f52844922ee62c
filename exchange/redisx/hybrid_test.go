package redisx_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/redistest"
)

// commandsProcessed returns the server's count of commands processed.
func commandsProcessed(t *testing.T, addr string) int64 {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer cl.Close()
	info, err := cl.Info(ctxT(t, 10*time.Second), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO stats")
	return 0
}

// TestHybridSameNodeNoRedis: actions between a client and an agent of the
// same node go through the shared-memory exchange only: a thousand round
// trips cost no Redis command (the server sees only heartbeats and the
// forwarder's idle waits).
func TestHybridSameNodeNoRedis(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	n := spec(t, srv.Addr, prefix, "hybrid", "A")
	x := joinT(t, n)
	y := joinT(t, n) // another handle of the node, as another process would be
	ctx := ctxT(t, 60*time.Second)
	var count atomic.Int64
	rt, err := agent.NewRuntime(ctx, x, workerBehavior(&count))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go rt.Run(runCtx)
	cl := newClient(t, y)
	h := cl.Handle(rt.ID())
	if _, err := agent.Call[int64](ctx, h, "add", int64(1)); err != nil { // warm up: caches, mappings
		t.Fatal(err)
	}
	const calls = 1000
	before := commandsProcessed(t, srv.Addr)
	start := time.Now()
	for range calls {
		if _, err := agent.Call[int64](ctx, h, "add", int64(1)); err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(start)
	used := commandsProcessed(t, srv.Addr) - before - 1 // the INFO itself
	// Background traffic: 3 commands per heartbeat (4 per TTL) and the
	// forwarders' waits (2 commands per 2 s each), a reap per TTL.
	background := int64(el/(time.Second)+1) * 20
	if used > background {
		t.Fatalf("%d same-node calls in %v cost %d Redis commands (background allowance %d)", calls, el, used, background)
	}
	t.Logf("%d same-node calls in %v: %d Redis commands in that time (heartbeats, idle waits)", calls, el.Round(time.Millisecond), used)
}

// TestHybridForwardToTerminatedRing: a request from another node that the
// forwarder takes from the Redis mailbox after the entity's ring was
// terminated is answered with an error response (mailbox terminated), from
// the message as received: its requester is not left waiting.
func TestHybridForwardToTerminatedRing(t *testing.T) {
	srv := sharedServer(t)
	prefix := newPrefix()
	ctx := ctxT(t, 30*time.Second)
	shm, err := exchange.Open("x", exchange.WithRoot(shmRoot(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shm.Close() })
	a, err := redisx.NewHybrid(ctx, shm, redisx.WithAddr(srv.Addr), redisx.WithPrefix(prefix), redisx.WithNode("A"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b := joinT(t, spec(t, srv.Addr, prefix, "hybrid", "B"))

	ag, err := a.RegisterAgent(ctx, exchange.Behavior{Name: "Victim"})
	if err != nil {
		t.Fatal(err)
	}
	amb, err := a.Mailbox(ctx, ag) // starts the forwarder
	if err != nil {
		t.Fatal(err)
	}
	defer amb.Close()
	cl, err := b.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bmb, err := b.Mailbox(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	defer bmb.Close()
	// The ring alone: the Redis mailbox stays active, so the request goes
	// to it, and the forwarder meets the terminated ring.
	if err := shm.Terminate(ctx, ag); err != nil {
		t.Fatal(err)
	}
	req := exchange.NewActionRequest(cl, ag, "work", []byte("late"))
	if err := b.Send(ctx, req); err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	if err := bmb.Recv(ctx, &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != exchange.KindActionResponse || m.Tag != req.Tag || string(m.ErrorKind) != exchange.ErrorKindMailboxTerminated {
		t.Fatalf("answer to a request forwarded to a terminated ring: %v", &m)
	}
}
