package agent_test

import (
	"context"
	"errors"
	"testing"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// preloaded is a runtime whose mailbox was filled before it ran, so that
// its first receive takes every message at once (one batch, on a mailbox
// that receives in batches), and a raw client mailbox that sent them.
type preloaded struct {
	rt     *agent.Runtime
	x      exchange.Exchange
	client exchange.EntityID
	mb     exchange.Mailbox
	ran    chan error
}

func newPreloaded(t *testing.T, x exchange.Exchange, b *agent.Behavior, opts ...agent.Option) *preloaded {
	t.Helper()
	ctx := testCtx(t)
	rt, err := agent.NewRuntime(ctx, x, b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p := &preloaded{rt: rt, x: x, ran: make(chan error, 1)}
	if p.client, err = x.RegisterClient(ctx); err != nil {
		t.Fatal(err)
	}
	if p.mb, err = x.Mailbox(ctx, p.client); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rt.Shutdown()
		<-rt.Done()
		p.mb.Close()
	})
	return p
}

// send sends the requests ms to the agent, in order.
func (p *preloaded) send(t *testing.T, ms ...*exchange.Message) {
	t.Helper()
	for _, m := range ms {
		if err := p.x.Send(testCtx(t), m); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *preloaded) run(ctx context.Context) { go func() { p.ran <- p.rt.Run(ctx) }() }

// recv receives n responses and returns them by tag, in the order they
// came (order[i] is the tag of the i-th).
func (p *preloaded) recv(t *testing.T, n int) (map[exchange.UUID]*exchange.Message, []exchange.UUID) {
	t.Helper()
	ctx := testCtx(t)
	got := map[exchange.UUID]*exchange.Message{}
	var order []exchange.UUID
	for range n {
		var m exchange.Message
		if err := p.mb.Recv(ctx, &m); err != nil {
			t.Fatalf("after %d of %d responses: %v", len(order), n, err)
		}
		got[m.Tag] = m.Clone()
		order = append(order, m.Tag)
	}
	return got, order
}

// batchEnvs are the exchanges the batch tests run on: SHM receives in
// batches, Local one message at a time.
var batchEnvs = []struct {
	name  string
	batch bool
	new   func(t *testing.T) exchange.Exchange
}{
	{"local", false, func(t *testing.T) exchange.Exchange {
		x := exchange.NewLocal()
		t.Cleanup(func() { x.Close() })
		return x
	}},
	{"shm", true, func(t *testing.T) exchange.Exchange { return newSHM(t) }},
}

// gatedBehavior has "slow", which waits for gate (or the end of its
// context), and "echo".
func gatedBehavior(t *testing.T, gate <-chan struct{}) *agent.Behavior {
	b := agent.NewBehavior("Gated")
	if err := b.AddRawAction("slow", func(ctx context.Context, args, out []byte) ([]byte, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return append(out, "slow"...), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRawAction("echo", func(ctx context.Context, args, out []byte) ([]byte, error) {
		return append(out, args...), nil
	}); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeBatchSlowActionHoldsNothing: a slow action received in one
// batch with pings and other actions behind it holds none of them: they
// are answered while it still runs (the next leader continues from the
// batch). With a concurrency bound of one, the actions behind it wait for
// it, in order, and the pings do not.
func TestServeBatchSlowActionHoldsNothing(t *testing.T) {
	for _, e := range batchEnvs {
		for _, bound := range []int{0, 1} {
			name := e.name + "/unbounded"
			if bound > 0 {
				name = e.name + "/bound1"
			}
			t.Run(name, func(t *testing.T) {
				gate := make(chan struct{})
				var opts []agent.Option
				if bound > 0 {
					opts = append(opts, agent.WithMaxConcurrency(bound))
				}
				p := newPreloaded(t, e.new(t), gatedBehavior(t, gate), opts...)
				id := p.rt.ID()
				slow := exchange.NewActionRequest(p.client, id, "slow", nil)
				pings := []*exchange.Message{exchange.NewPingRequest(p.client, id), exchange.NewPingRequest(p.client, id), exchange.NewPingRequest(p.client, id)}
				echo := exchange.NewActionRequest(p.client, id, "echo", []byte("e1"))
				echo2 := exchange.NewActionRequest(p.client, id, "echo", []byte("e2"))
				p.send(t, slow, pings[0], echo, pings[1], echo2, pings[2])
				p.run(testCtx(t))

				// While slow waits: the pings, and without a bound the echoes.
				want := len(pings)
				if bound == 0 {
					want += 2
				}
				got, order := p.recv(t, want)
				for _, m := range pings {
					if r := got[m.Tag]; r == nil || r.Kind != exchange.KindPingResponse || r.IsError() {
						t.Fatalf("ping %v: got %v (responses %v)", m.Tag, r, order)
					}
				}
				if bound == 0 {
					for _, m := range []*exchange.Message{echo, echo2} {
						if r := got[m.Tag]; r == nil || r.IsError() || string(r.Result) != string(m.Args) {
							t.Fatalf("echo %q: got %v", m.Args, r)
						}
					}
				}
				close(gate)
				rest := 1
				if bound > 0 {
					rest = 3
				}
				got, order = p.recv(t, rest)
				if r := got[slow.Tag]; r == nil || r.IsError() || string(r.Result) != "slow" {
					t.Fatalf("slow: got %v", r)
				}
				if bound > 0 {
					// Started in the order received, one at a time.
					if order[0] != slow.Tag || order[1] != echo.Tag || order[2] != echo2.Tag {
						t.Fatalf("with a bound of one: responses in the order %v, want slow %v, echo %v, echo %v", order, slow.Tag, echo.Tag, echo2.Tag)
					}
				}
			})
		}
	}
}

// TestServeBatchShutdownMidBatch: a shutdown request in the middle of a
// batch ends serving after the requests before it; those after it, which
// the runtime received in the same batch, are answered with an error
// (ErrorKindShuttingDown, as the drain answers; before batches they were
// left in the mailbox, and the exchange answered them with
// ErrorKindMailboxTerminated) rather than dropped.
func TestServeBatchShutdownMidBatch(t *testing.T) {
	for _, term := range []bool{false, true} {
		name := "keep"
		if term {
			name = "terminate"
		}
		t.Run(name, func(t *testing.T) {
			gate := make(chan struct{})
			close(gate)
			p := newPreloaded(t, newSHM(t), gatedBehavior(t, gate))
			id := p.rt.ID()
			before := []*exchange.Message{exchange.NewPingRequest(p.client, id), exchange.NewActionRequest(p.client, id, "echo", []byte("b"))}
			shutdown := exchange.NewShutdownRequest(p.client, id, term)
			after := []*exchange.Message{exchange.NewActionRequest(p.client, id, "echo", []byte("c")), exchange.NewPingRequest(p.client, id), exchange.NewActionRequest(p.client, id, "slow", nil)}
			p.send(t, before...)
			p.send(t, shutdown)
			p.send(t, after...)
			p.run(testCtx(t))
			got, _ := p.recv(t, len(before)+1+len(after))
			for _, m := range append(before, shutdown) {
				if r := got[m.Tag]; r == nil || r.IsError() || r.Kind != m.Kind.ResponseKind() {
					t.Fatalf("%v: got %v", m, r)
				}
			}
			for _, m := range after {
				r := got[m.Tag]
				if r == nil || r.Kind != m.Kind.ResponseKind() {
					t.Fatalf("%v: got %v", m, r)
				}
				var re *exchange.RemoteError
				if !errors.As(r.Err(), &re) || re.Kind != agent.ErrorKindShuttingDown && re.Kind != exchange.ErrorKindMailboxTerminated {
					t.Fatalf("%v after the shutdown: got %v, want an %s", m, r, agent.ErrorKindShuttingDown)
				}
			}
			if err := <-p.ran; err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// TestServeBatchQuickActionTurnsSlow: an action that blocks in the middle
// of a batch and waits for a request later in the same batch gets it (the
// hand-off timer); one that ran quick often enough to go without the
// timer, then blocks, holds none of the pings behind it (the watchdog
// hands leadership off, and the next leader continues from the batch).
func TestServeBatchQuickActionTurnsSlow(t *testing.T) {
	// Read only, after it is made: the channels are closed, not replaced.
	gates := map[string]chan struct{}{"block1": make(chan struct{}), "block2": make(chan struct{})}
	b := agent.NewBehavior("Quick")
	if err := b.AddRawAction("maybe", func(ctx context.Context, args, out []byte) ([]byte, error) {
		if gate := gates[string(args)]; gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return append(out, args...), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRawAction("open", func(ctx context.Context, args, out []byte) ([]byte, error) {
		close(gates["block1"])
		return out, nil
	}); err != nil {
		t.Fatal(err)
	}
	p := newPreloaded(t, newSHM(t), b)
	id := p.rt.ID()
	var all []*exchange.Message
	for range 15 { // a batch of 16 holds them, the blocking one and a ping
		all = append(all, exchange.NewActionRequest(p.client, id, "maybe", []byte("quick")))
	}
	block := exchange.NewActionRequest(p.client, id, "maybe", []byte("block1"))
	ping := exchange.NewPingRequest(p.client, id)
	open := exchange.NewActionRequest(p.client, id, "open", nil)
	all = append(all, block, ping, open)
	p.send(t, all...)
	p.run(testCtx(t))
	got, _ := p.recv(t, len(all))
	for _, m := range all {
		if r := got[m.Tag]; r == nil || r.IsError() {
			t.Fatalf("%v: got %v", m, r)
		}
	}
	// A second round: 17 quick runs in a row (the first round's blocked
	// one, handed off, made the count start again) make "maybe" quick, so
	// that it runs without the timer and the watchdog hands off.
	all = all[:0]
	for range 17 {
		all = append(all, exchange.NewActionRequest(p.client, id, "maybe", []byte("quick")))
	}
	block = exchange.NewActionRequest(p.client, id, "maybe", []byte("block2"))
	pings := []*exchange.Message{exchange.NewPingRequest(p.client, id), exchange.NewPingRequest(p.client, id)}
	all = append(all, block, pings[0], pings[1])
	p.send(t, all...)
	got, order := p.recv(t, len(all)-1) // all but the blocked one
	if got[block.Tag] != nil {
		t.Fatalf("the blocked action answered before its gate opened: %v", order)
	}
	close(gates["block2"])
	if got, _ = p.recv(t, 1); got[block.Tag] == nil {
		t.Fatalf("want the blocked action's response, got %v", got)
	}
}
