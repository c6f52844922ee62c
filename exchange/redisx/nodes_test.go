package redisx_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/childproc"
)

// Tests of several nodes: the test process is node A; other nodes are
// child processes (the test binary re-run) with their own shared-memory
// roots, connected to A only through Redis.

const testTTL = time.Second

// kinds are the exchanges the node tests run on.
var kinds = []string{"redis", "hybrid"}

// spec returns the spec of a node of kind on the server at addr.
func spec(t testing.TB, addr, prefix, kind, node string) nodeSpec {
	return nodeSpec{addr: addr, prefix: prefix, kind: kind, root: shmRoot(t), node: node, ttl: testTTL}
}

// joinT joins the exchange of n in the test process, closed with the test.
func joinT(t testing.TB, n nodeSpec, extra ...redisx.Option) exchange.Exchange {
	t.Helper()
	x, err := n.join(ctxT(t, 20*time.Second), extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// startAgentNode starts a child running a Worker agent on node n and
// returns it with the agent's id.
func startAgentNode(t *testing.T, n nodeSpec) (*childproc.Child, exchange.EntityID) {
	t.Helper()
	c := childproc.Start(t, "agent-node", n.args()...)
	line, err := c.Line(30 * time.Second)
	if err != nil {
		t.Fatalf("agent node %s: %v", n.node, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "ready" {
		t.Fatalf("agent node %s said %q", n.node, line)
	}
	id, err := exchange.ParseEntityID(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return c, id
}

// expectLine waits for a line of the child that starts with prefix.
func expectLine(t *testing.T, c *childproc.Child, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		line, err := c.Line(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

func newClient(t *testing.T, x exchange.Exchange) *agent.Client {
	t.Helper()
	cl, err := agent.NewClient(ctxT(t, 20*time.Second), x, agent.WithStatusPoll(50*time.Millisecond), agent.WithTerminatedGrace(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestCrossNodeCalls: a client on node A discovers and calls an agent on
// node B, then terminates it; B's agent stops.
func TestCrossNodeCalls(t *testing.T) {
	srv := sharedServer(t)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			prefix := newPrefix()
			a := joinT(t, spec(t, srv.Addr, prefix, kind, "A"))
			child, aid := startAgentNode(t, spec(t, srv.Addr, prefix, kind, "B"))
			ctx := ctxT(t, 30*time.Second)

			cl := newClient(t, a)
			found, err := cl.Discover(ctx, "Agent", true)
			if err != nil || !slices.Contains(found, aid) {
				t.Fatalf("Discover from node A = %v, %v; want %v", found, err, aid)
			}
			info, err := a.Info(ctx, aid)
			if err != nil || info.Behavior.Name != "Worker" || info.Status != exchange.StatusActive {
				t.Fatalf("Info = %+v, %v", info, err)
			}
			if kind == "hybrid" {
				if same, err := a.(*redisx.Hybrid).SameNode(ctx, aid); err != nil || same {
					t.Fatalf("SameNode(B's agent) from A = %v, %v", same, err)
				}
			}
			h := cl.Handle(aid)
			got, err := agent.Call[[]byte](ctx, h, "echo", []byte("across nodes"))
			if err != nil || string(got) != "across nodes" {
				t.Fatalf("echo = %q, %v", got, err)
			}
			var n int64
			for range 10 {
				if n, err = agent.Call[int64](ctx, h, "add", int64(1)); err != nil {
					t.Fatal(err)
				}
			}
			if n != 10 {
				t.Fatalf("counter after 10 adds = %d", n)
			}
			if _, err := h.Ping(ctx); err != nil {
				t.Fatal(err)
			}

			if err := a.Terminate(ctx, aid); err != nil {
				t.Fatal(err)
			}
			expectLine(t, child, "stopped")
			if st, err := a.Status(ctx, aid); err != nil || st != exchange.StatusTerminated {
				t.Fatalf("Status after Terminate = %v, %v", st, err)
			}
			if _, err := agent.Call[[]byte](ctx, h, "echo", []byte("x")); !errors.Is(err, agent.ErrAgentTerminated) {
				t.Fatalf("call after Terminate: %v", err)
			}
			if found, _ := a.Discover(ctx, "Worker", false); slices.Contains(found, aid) {
				t.Fatalf("Discover after Terminate still finds %v", aid)
			}
		})
	}
}

// TestNodeKilled: every process of node B is killed (SIGKILL); node A's
// call in flight to B's agent and its request queued for B's other agent
// fail with ErrAgentTerminated once the heartbeats expire, and A sees both
// agents terminated.
func TestNodeKilled(t *testing.T) {
	srv := sharedServer(t)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			prefix := newPrefix()
			a := joinT(t, spec(t, srv.Addr, prefix, kind, "A"))
			bspec := spec(t, srv.Addr, prefix, kind, "B")
			c1, id1 := startAgentNode(t, bspec)
			c2, id2 := startAgentNode(t, bspec)
			ctx := ctxT(t, 60*time.Second)
			cl := newClient(t, a)

			pending, err := agent.Action[agent.NoArgs](ctx, cl.Handle(id1), "sleep", agent.NoArgs{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := agent.Call[[]byte](ctx, cl.Handle(id2), "echo", []byte("alive")); err != nil {
				t.Fatal(err)
			}
			c1.Kill()
			c2.Kill()
			killed := time.Now()
			// Sent after the kill, before anyone knows: queued, then
			// answered when the mailbox is found dead.
			queued, err := agent.Action[[]byte](ctx, cl.Handle(id2), "echo", []byte("to the dead"))
			if err != nil && !errors.Is(err, agent.ErrAgentTerminated) {
				t.Fatal(err)
			}
			if err == nil {
				if _, err := queued.Wait(ctx); !errors.Is(err, agent.ErrAgentTerminated) {
					t.Fatalf("request queued for a killed node: %v", err)
				}
			}
			if _, err := pending.Wait(ctx); !errors.Is(err, agent.ErrAgentTerminated) {
				t.Fatalf("call in flight to a killed node: %v", err)
			}
			t.Logf("%s: calls to the killed node failed %v after the kill (liveness TTL %v)", kind, time.Since(killed).Round(time.Millisecond), testTTL)
			for _, id := range []exchange.EntityID{id1, id2} {
				if st, err := a.Status(ctx, id); err != nil || st != exchange.StatusTerminated {
					t.Fatalf("Status of %v after its node died = %v, %v", id, st, err)
				}
			}
			if found, err := a.Discover(ctx, "Worker", false); err != nil || len(found) != 0 {
				t.Fatalf("Discover after the node died = %v, %v", found, err)
			}
		})
	}
}

// TestReceiverDiesRedelivery: a receiver on node B takes messages and is
// killed before it asks for more. What it took is not lost: the responses
// come back, in order, to the next client of the (now terminated) mailbox,
// and the request it took is answered with an error response.
func TestReceiverDiesRedelivery(t *testing.T) {
	srv := sharedServer(t)
	prefix := newPrefix()
	a := joinT(t, spec(t, srv.Addr, prefix, "redis", "A"))
	ctx := ctxT(t, 60*time.Second)
	c, d := twoClients(t, a)
	want := sendResponses(t, a, d, c, 3)
	ag, err := a.RegisterAgent(ctx, exchange.Behavior{Name: "Victim"})
	if err != nil {
		t.Fatal(err)
	}
	req := exchange.NewActionRequest(d, ag, "work", []byte("once"))
	req.Label = exchange.NewTag()
	if err := a.Send(ctx, req); err != nil {
		t.Fatal(err)
	}

	bspec := spec(t, srv.Addr, prefix, "redis", "B")
	for _, id := range []exchange.EntityID{c, ag} {
		child := childproc.Start(t, "receiver", append(bspec.args(), id.String())...)
		expectLine(t, child, "got")
		child.Kill()
	}
	// The receivers' session expires; the mailboxes they owned are then
	// terminated (by A's reaper, or the Status below).
	waitTerminated(ctx, t, a, c)
	mb, err := a.Mailbox(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	var m exchange.Message
	for _, w := range want {
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
		if !m.Equal(w) {
			t.Fatalf("after the receiver died: got %v, want %v", &m, w)
		}
	}
	if err := mb.Recv(ctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Recv on the drained mailbox: %v", err)
	}

	dmb, err := a.Mailbox(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer dmb.Close()
	if err := dmb.Recv(ctx, &m); err != nil {
		t.Fatal(err)
	}
	if m.Tag != req.Tag || m.Label != req.Label || m.Kind != exchange.KindActionResponse ||
		string(m.ErrorKind) != exchange.ErrorKindMailboxTerminated {
		t.Fatalf("answer to the request taken by a dead receiver: %v", &m)
	}
}

// TestHybridTerminateOtherNode: terminating another node's entity also
// terminates its ring on that node (control channel): once Terminate
// returns, a sender on that node gets ErrMailboxClosed from its
// shared-memory send.
func TestHybridTerminateOtherNode(t *testing.T) {
	srv := sharedServer(t)
	prefix := newPrefix()
	a := joinT(t, spec(t, srv.Addr, prefix, "hybrid", "A")).(*redisx.Hybrid)
	b := joinT(t, spec(t, srv.Addr, prefix, "hybrid", "B")).(*redisx.Hybrid)
	ctx := ctxT(t, 30*time.Second)
	ag, err := b.RegisterAgent(ctx, exchange.Behavior{Name: "Far"})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := b.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := a.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.Mailbox(ctx, ag)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if _, err := a.Mailbox(ctx, ag); !errors.Is(err, redisx.ErrOtherNode) {
		t.Fatalf("Mailbox of another node's entity: %v", err)
	}
	if err := a.Reopen(ctx, ag); !errors.Is(err, redisx.ErrOtherNode) {
		t.Fatalf("Reopen of another node's entity: %v", err)
	}
	// One message from each node, in order of arrival per sender.
	if err := a.Send(ctx, exchange.NewActionRequest(ac, ag, "far", nil)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(ctx, exchange.NewActionRequest(bc, ag, "near", nil)); err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	got := map[string]exchange.EntityID{}
	for range 2 {
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
		got[string(m.Action)] = m.Src
	}
	if got["far"] != ac || got["near"] != bc {
		t.Fatalf("received %v", got)
	}
	if err := a.Terminate(ctx, ag); err != nil {
		t.Fatal(err)
	}
	if err := b.SHM().Send(ctx, exchange.NewPingRequest(bc, ag)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("same-node send after another node's Terminate: %v", err)
	}
	if err := mb.Recv(ctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Recv after another node's Terminate: %v, %v", err, &m)
	}
	for _, x := range []exchange.Exchange{a, b} {
		if st, err := x.Status(ctx, ag); err != nil || st != exchange.StatusTerminated {
			t.Fatalf("Status = %v, %v", st, err)
		}
	}
}

// waitTerminated waits until x reads the mailbox of id as terminated (its
// receiver's session expired), failing t when ctx ends first.
func waitTerminated(ctx context.Context, t *testing.T, x exchange.Exchange, id exchange.EntityID) {
	t.Helper()
	for {
		st, err := x.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st == exchange.StatusTerminated {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the dead receiver's mailbox never read as terminated")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
