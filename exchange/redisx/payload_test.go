package redisx_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/proxystore"
)

func init() {
	roles["payload-node"] = payloadNode
}

// nodeStores opens what a hybrid node needs for payloads: its arena, the
// shared store (kind "redis" or "file", the file store in dir) and the
// store that routes between them.
func nodeStores(ctx context.Context, h *redisx.Hybrid, addr, prefix, kind, dir string) (*proxystore.RouteStore, func(), error) {
	arena, err := proxystore.OpenArena(h.SHM().Dir())
	if err != nil {
		return nil, nil, err
	}
	var shared proxystore.Store
	if kind == "redis" {
		shared, err = proxystore.OpenRedisStore(ctx, proxystore.WithRedisAddr(addr), proxystore.WithRedisPrefix(prefix))
	} else {
		shared, err = proxystore.OpenFileStore(dir)
	}
	if err != nil {
		arena.Close()
		return nil, nil, err
	}
	return proxystore.NewRouteStore(arena, shared, h), func() { shared.Close(); arena.Close() }, nil
}

// payloadNode runs a Worker agent on a hybrid node whose exchange is
// wrapped with a route store (extra arguments: the shared store's kind and
// the file store's directory), prints "ready <id>" and serves.
func payloadNode(args []string) int {
	spec, rest, err := parseSpec(args)
	if err != nil || len(rest) != 2 {
		fmt.Fprintln(os.Stderr, "bad arguments", err)
		return 2
	}
	ctx := context.Background()
	x, err := spec.join(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		return 1
	}
	defer x.Close()
	h := x.(*redisx.Hybrid)
	route, closeStores, err := nodeStores(ctx, h, spec.addr, spec.prefix, rest[0], rest[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "stores:", err)
		return 1
	}
	defer closeStores()
	w := proxystore.Wrap(h, route)
	var count atomic.Int64
	rt, err := agent.NewRuntime(ctx, w, workerBehavior(&count))
	if err != nil {
		fmt.Fprintln(os.Stderr, "runtime:", err)
		return 1
	}
	fmt.Println("ready", rt.ID())
	err = rt.Run(ctx)
	fmt.Println("stopped", err)
	return 0
}

// TestPayloadAcrossNodes: a 64 MiB argument from node A to an agent on node
// B (another process, another shared-memory root) through each shared
// store: Redis, and a file store on a path both nodes see.
func TestPayloadAcrossNodes(t *testing.T) {
	srv := sharedServer(t)
	for _, kind := range []string{"redis", "file"} {
		t.Run(kind, func(t *testing.T) {
			prefix := newPrefix()
			dir := shmRoot(t) // the "shared path" of the file store
			// A long liveness TTL: 64 MiB loops under -race on a busy
			// machine may starve a heartbeat for a second; liveness is
			// not what this test is about.
			aspec, bspec := spec(t, srv.Addr, prefix, "hybrid", "A"), spec(t, srv.Addr, prefix, "hybrid", "B")
			aspec.ttl, bspec.ttl = 10*time.Second, 10*time.Second
			a := joinT(t, aspec).(*redisx.Hybrid)
			ctx := ctxT(t, 120*time.Second)
			route, closeStores, err := nodeStores(ctx, a, srv.Addr, prefix, kind, dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(closeStores)

			c := childproc.Start(t, "payload-node", append(bspec.args(), kind, dir)...)
			line := expectLine(t, c, "ready")
			aid, err := exchange.ParseEntityID(strings.Fields(line)[1])
			if err != nil {
				t.Fatal(err)
			}
			if same, err := a.SameNode(ctx, aid); err != nil || same {
				t.Fatalf("SameNode = %v, %v", same, err)
			}

			const size = 64 << 20
			l, err := proxystore.AllocBytes(ctx, route, size, proxystore.WithSingleUse())
			if err != nil {
				t.Fatal(err)
			}
			var sum byte
			for i, b := 0, l.Bytes(); i < len(b); i++ {
				b[i] = byte(i*7 + i>>12)
				sum += b[i]
			}
			p, err := l.Commit()
			if err != nil {
				t.Fatal(err)
			}
			if proxystore.StoreID(p.Store) != route.Shared().ID() {
				t.Fatalf("a payload for another node went to store %v, not the shared one", proxystore.StoreID(p.Store))
			}
			cl := newClient(t, proxystore.Wrap(a, route))
			f, err := cl.Handle(aid).ActionRaw(ctx, "size", proxystore.AppendPayload(nil, p))
			if err != nil {
				t.Fatal(err)
			}
			res, err := f.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := msgp.ReadInt64Bytes(res)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(size)<<8 | int64(sum); got != want {
				t.Fatalf("node B saw %d bytes (sum %d), want %d bytes (sum %d)", got>>8, byte(got), size, sum)
			}
			// Single use: resolved once by B, gone.
			if _, err := route.Resolve(ctx, p); !errors.Is(err, proxystore.ErrStaleProxy) {
				t.Fatalf("resolve after node B used it: %v", err)
			}
		})
	}
}

// TestPayloadUnreachable: a proxy into node A's arena sent to node B cannot
// be resolved there; B's wrapped mailbox says why, and keeps the message.
func TestPayloadUnreachable(t *testing.T) {
	srv := sharedServer(t)
	prefix := newPrefix()
	a := joinT(t, spec(t, srv.Addr, prefix, "hybrid", "A")).(*redisx.Hybrid)
	b := joinT(t, spec(t, srv.Addr, prefix, "hybrid", "B")).(*redisx.Hybrid)
	ctx := ctxT(t, 30*time.Second)
	ra, closeA, err := nodeStores(ctx, a, srv.Addr, prefix, "redis", "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeA()
	rb, closeB, err := nodeStores(ctx, b, srv.Addr, prefix, "redis", "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeB()
	wa, wb := proxystore.Wrap(a, ra), proxystore.Wrap(b, rb)
	ag, err := wb.RegisterAgent(ctx, exchange.Behavior{Name: "Far"})
	if err != nil {
		t.Fatal(err)
	}
	cid, err := wa.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The route store picks the arena for this node's entities, the
	// shared store for the others'.
	if p, err := ra.PutFor(ctx, cid, []byte("near")); err != nil || proxystore.StoreID(p.Store) != ra.Local().ID() {
		t.Fatalf("PutFor a same-node entity: %v, %v", p, err)
	}
	if p, err := ra.PutFor(ctx, ag, []byte("far")); err != nil || proxystore.StoreID(p.Store) != ra.Shared().ID() {
		t.Fatalf("PutFor another node's entity: %v, %v", p, err)
	}
	p, err := ra.Local().Put(ctx, []byte("only on node A"))
	if err != nil {
		t.Fatal(err)
	}
	if err := wa.Send(ctx, exchange.NewActionRequest(cid, ag, "f", proxystore.AppendPayload(nil, p))); err != nil {
		t.Fatal(err)
	}
	mb, err := wb.Mailbox(ctx, ag)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	var m exchange.Message
	err = mb.Recv(ctx, &m)
	if !errors.Is(err, proxystore.ErrResolve) || !errors.Is(err, proxystore.ErrForeignProxy) ||
		!strings.Contains(err.Error(), "arena of another node") {
		t.Fatalf("Recv of another node's arena proxy: %v", err)
	}
	if m.Src != cid || string(m.Action) != "f" {
		t.Fatalf("the message itself: %v", &m)
	}
}
