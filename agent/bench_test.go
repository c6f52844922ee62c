package agent_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/ring"
)

var idleModes = []struct {
	name string
	idle ring.IdleStrategy
}{
	{"spin", ring.Spin},
	{"spinpark", ring.SpinThenPark(2000)},
	{"park", ring.Park},
	{"backoff", ring.Backoff}, // the default
}

func args64() []byte { return bytes.Repeat([]byte{'a'}, 64) }

// BenchmarkRoundTrip compares, across two processes and in one run, the
// exchange's raw request/response round trip (a child that answers every
// request with an empty result) with an agent action round trip (Call of a
// no-op action with 64 bytes of arguments in an agent process), for each
// receive idle strategy (both sides use it).
func BenchmarkRoundTrip(b *testing.B) {
	for _, mode := range idleModes {
		b.Run(mode.name+"/raw", func(b *testing.B) { benchRaw(b, mode.idle) })
		b.Run(mode.name+"/agent", func(b *testing.B) { benchAgent(b, mode.idle, false, args64()) })
	}
}

// BenchmarkRoundTrip1KB is the agent round trip with 1 KB of arguments,
// the size of Academy's published figure (about 0.39 ms per action).
func BenchmarkRoundTrip1KB(b *testing.B) {
	for _, mode := range idleModes {
		b.Run(mode.name, func(b *testing.B) { benchAgent(b, mode.idle, false, make([]byte, 1024)) })
	}
}

// BenchmarkThroughput measures actions per second from one client to one
// agent process, with up to 64 futures in flight, and beside it the
// exchange's own pipelined request/response (raw: 64 requests in flight
// from a client mailbox to a child that answers each), the ceiling the
// agent layer works under. Both report the client process's CPU time per
// action (cpu-ns/action), steadier on a shared machine than the rate.
func BenchmarkThroughput(b *testing.B) {
	for _, mode := range idleModes {
		b.Run(mode.name+"/raw", func(b *testing.B) { benchRawPipelined(b, mode.idle) })
		b.Run(mode.name, func(b *testing.B) { benchAgent(b, mode.idle, true, args64()) })
	}
}

// rawEcho is a child process that answers every request to its agent
// mailbox with an empty result (the raw side of the benchmarks), and a
// client mailbox to send to it from.
type rawEcho struct {
	x             *exchange.SHM
	agent, client exchange.EntityID
	mb            exchange.Mailbox
	child         *childproc.Child
}

// startRawEcho starts a rawEcho whose processes use idle.
func startRawEcho(b *testing.B, idle ring.IdleStrategy) *rawEcho {
	e := &rawEcho{x: newSHM(b, exchange.WithIdle(idle))}
	ctx := context.Background()
	var err error
	if e.agent, err = e.x.RegisterAgent(ctx, exchange.Behavior{Name: "RawEcho"}); err != nil {
		b.Fatal(err)
	}
	e.child = childproc.Start(b, "echo", e.x.Name(), filepath.Dir(e.x.Dir()), e.agent.String(), idle.String())
	if l, err := e.child.Line(testTimeout); err != nil || l != "ready" {
		b.Fatalf("child: %q, %v", l, err)
	}
	if e.client, err = e.x.RegisterClient(ctx); err != nil {
		b.Fatal(err)
	}
	if e.mb, err = e.x.Mailbox(ctx, e.client); err != nil {
		b.Fatal(err)
	}
	return e
}

// stop shuts the echo child down and waits for it.
func (e *rawEcho) stop() {
	e.x.Send(context.Background(), exchange.NewShutdownRequest(e.client, e.agent, false))
	e.child.Wait(5 * time.Second)
}

// benchRawPipelined is the raw side of BenchmarkThroughput.
func benchRawPipelined(b *testing.B, idle ring.IdleStrategy) {
	e := startRawEcho(b, idle)
	x, agentID, client, mb := e.x, e.agent, e.client, e.mb
	ctx := context.Background()
	req := exchange.NewActionRequest(client, agentID, "noop64", msgp.AppendBytes(nil, args64()))
	var resp exchange.Message
	const window = 64
	inflight, n := 0, 0
	recv := func() {
		if err := mb.Recv(ctx, &resp); err != nil {
			b.Fatal(err)
		}
		if resp.Kind != exchange.KindActionResponse {
			b.Fatalf("got %v", &resp)
		}
		inflight--
	}
	b.ReportAllocs()
	start, cpu := time.Now(), processCPU()
	for b.Loop() {
		req.Tag = exchange.NewTag()
		if err := x.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
		if inflight++; inflight == window {
			recv()
		}
		n++
	}
	for inflight > 0 {
		recv()
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "actions/s")
	b.ReportMetric(float64(processCPU()-cpu)/float64(n), "cpu-ns/action")
	e.stop()
}

func benchRaw(b *testing.B, idle ring.IdleStrategy) {
	e := startRawEcho(b, idle)
	x, agentID, client, mb := e.x, e.agent, e.client, e.mb
	ctx := context.Background()
	req := exchange.NewActionRequest(client, agentID, "noop64", args64())
	var resp exchange.Message
	b.ReportAllocs()
	for b.Loop() {
		req.Tag = exchange.NewTag()
		if err := x.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
		if err := mb.Recv(ctx, &resp); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if resp.Tag != req.Tag || resp.Kind != exchange.KindActionResponse {
		b.Fatalf("last response %v to %v", &resp, req)
	}
	e.stop()
}

func benchAgent(b *testing.B, idle ring.IdleStrategy, pipelined bool, arg []byte) {
	x := newSHM(b, exchange.WithIdle(idle))
	ctx := context.Background()
	l := agent.NewProcessLauncher(x)
	l.Idle = &idle
	m, err := agent.NewManager(ctx, x, l)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := agent.Call[agent.NoArgs](ctx, h, "noop64", arg); err != nil { // wait for the child
		b.Fatal(err)
	}
	b.ReportAllocs()
	if !pipelined {
		for b.Loop() {
			if _, err = agent.Call[agent.NoArgs](ctx, h, "noop64", arg); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	// A ring of futures, each released once read for the next action to
	// reuse: the loop allocates nothing.
	const window = 64
	var fs [window]*agent.Future[agent.NoArgs]
	wait := func(f *agent.Future[agent.NoArgs]) {
		if _, err := f.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		f.Release()
	}
	start, cpu := time.Now(), processCPU()
	n := 0
	for b.Loop() {
		i := n % window
		if fs[i] != nil {
			wait(fs[i])
		}
		f, err := agent.Action[agent.NoArgs](ctx, h, "noop64", arg)
		if err != nil {
			b.Fatal(err)
		}
		fs[i] = f
		n++
	}
	for _, f := range fs {
		if f != nil {
			wait(f)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "actions/s")
	b.ReportMetric(float64(processCPU()-cpu)/float64(n), "cpu-ns/action")
}

// BenchmarkLocalCall is an in-process action call on the Local exchange:
// the cost of the agent layer without shared memory.
func BenchmarkLocalCall(b *testing.B) {
	x := exchange.NewLocal()
	defer x.Close()
	ctx := context.Background()
	m, err := agent.NewManager(ctx, x, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	arg := args64()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := agent.Call[agent.NoArgs](ctx, h, "noop64", arg); err != nil && !errors.Is(err, context.Canceled) {
			b.Fatal(err)
		}
	}
}

// TestCallAllocs: a synchronous call allocates nothing in steady state, on
// either side, for basic and msgp-generated argument and result types, nor
// does an action whose future is released once read (the
// agent runs as goroutines of the test, over the shared-memory exchange,
// so its allocations count too). A []byte argument is decoded into a fresh
// slice on the agent's side: that one allocation is the value's own.
func TestCallAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	ctx := testCtx(t)
	x := newSHM(t)
	m, err := agent.NewManager(ctx, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	arg := args64()
	for _, c := range []struct {
		name  string
		call  func() error
		allow float64
	}{
		{"noop", func() error { _, err := agent.Call[agent.NoArgs](ctx, h, "noop", agent.NoArgs{}); return err }, 0},
		{"add(Pair) int64", func() error { _, err := agent.Call[int64](ctx, h, "add", Pair{1, 2}); return err }, 0},
		{"swap(Pair) Pair", func() error { _, err := agent.Call[Pair](ctx, h, "swap", Pair{1, 2}); return err }, 0},
		{"noop64([]byte)", func() error { _, err := agent.Call[agent.NoArgs](ctx, h, "noop64", arg); return err }, 1},
		{"ping", func() error { _, err := h.Ping(ctx); return err }, 0},
		{"Action+Wait+Release noop", func() error {
			f, err := agent.Action[agent.NoArgs](ctx, h, "noop", agent.NoArgs{})
			if err != nil {
				return err
			}
			_, err = f.Wait(ctx)
			f.Release()
			return err
		}, 0},
	} {
		for range 100 { // warm the pools and the action's quick count
			if err := c.call(); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		n := testing.AllocsPerRun(1000, func() {
			if err := c.call(); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		})
		t.Logf("%s: %v allocations per call", c.name, n)
		if n > c.allow {
			t.Errorf("%s: %v allocations per call, want at most %v", c.name, n, c.allow)
		}
	}
}

// BenchmarkCallInProcess is Call of a no-op action to an agent run as
// goroutines of this process over the shared-memory exchange: both sides
// of the agent layer in one profile.
func BenchmarkCallInProcess(b *testing.B) {
	x := newSHM(b)
	ctx := context.Background()
	m, err := agent.NewManager(ctx, x, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	arg := args64()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := agent.Call[agent.NoArgs](ctx, h, "noop64", arg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkThroughputInProcess is BenchmarkThroughput with the agent run as
// goroutines of this process: both sides in one profile.
func BenchmarkThroughputInProcess(b *testing.B) {
	x := newSHM(b)
	ctx := context.Background()
	m, err := agent.NewManager(ctx, x, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo", agent.WithMaxConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	arg := args64()
	const window = 64
	var fs [window]*agent.Future[agent.NoArgs]
	b.ReportAllocs()
	start := time.Now()
	i := 0
	for b.Loop() {
		if f := fs[i]; f != nil {
			if _, err := f.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		f, err := agent.Action[agent.NoArgs](ctx, h, "noop64", arg)
		if err != nil {
			b.Fatal(err)
		}
		fs[i] = f
		i = (i + 1) % window
	}
	for _, f := range fs {
		if f != nil {
			f.Wait(ctx)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "actions/s")
}
