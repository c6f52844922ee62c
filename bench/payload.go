//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// The payload scenario: large arguments and results through the agent
// layer (agent.Call) over the shared-memory exchange wrapped with the arena
// store, as users pass them: a proxystore.Blob lent in place (zero copies),
// a Blob copied in from the heap (NewBlob: one copy), a Blob result lent by
// the agent and read in place by the caller. Rows carry Series and Bytes:
// the plot draws them with the payload sweep's peers.

// Metrics of the payload scenario that do not depend on the size.
const (
	MetricPayloadHeapBefore = "action.payload_agent_heap_before_bytes"
	MetricPayloadHeapAfter  = "action.payload_agent_heap_after_bytes"
	// MetricPayloadReserve is the time of Arena.Reserve for the largest
	// payload; MetricPayloadReservedFirst the first call with a Blob of
	// that size from the reserved room.
	MetricPayloadReserve       = "action.payload_reserve_ns"
	MetricPayloadReservedFirst = "action.payload_first_reserved_rtt_ns"
)

// payloadMemcpySizes are the sizes for which the scenario measures one
// memcpy, the limit of the rows that copy once.
var payloadMemcpySizes = []int{64 << 20, 1 << 30}

// PayloadMetric returns the metric of a payload row: kind "" for a Blob
// argument lent in place, warm; "first" for the first such call at a size;
// "put" for a Blob argument copied in (NewBlob); "result" for a Blob result
// lent by the agent; "memcpy" for one copy of that many bytes.
func PayloadMetric(kind string, n int) string {
	if kind == "" {
		return fmt.Sprintf("action.payload_rtt_%s_ns", sizeName(n))
	}
	return fmt.Sprintf("action.payload_%s_rtt_%s_ns", kind, sizeName(n))
}

func payloadMemcpyMetric(n int) string {
	return fmt.Sprintf("action.payload_memcpy_%s_ns", sizeName(n))
}

func init() {
	var metrics []string
	for _, kind := range []string{"", "first", "put", "result"} {
		for _, n := range proxySizes {
			metrics = append(metrics, PayloadMetric(kind, n))
		}
	}
	for _, n := range payloadMemcpySizes {
		metrics = append(metrics, payloadMemcpyMetric(n))
	}
	metrics = append(metrics, MetricPayloadReserve, MetricPayloadReservedFirst, MetricPayloadHeapBefore, MetricPayloadHeapAfter)
	Register(Scenario{
		Name: "action/payload", Rank: RankShmex + 31,
		Doc: "agent.Call with a proxystore.Blob argument of 64 B to 1 GiB (lent in place, or copied in with NewBlob) answered with 64 bytes, " +
			"and with a Blob result of that size lent by the agent, over the shared-memory exchange wrapped with the arena store " +
			"(an agent process); warm and first call; the agent's heap before and after the largest call",
		Metrics: metrics,
		Run:     runPayload,
	})
	RegisterChild("payload-agent", childPayloadAgent)
}

// payloadBehavior is the agent of the scenario, lending results from store:
//   - take: a Blob in, checked by its stamp (the producer's first and last
//     bytes) without reading the rest, MsgSize bytes out;
//   - give: a size in, a Blob of that size out, lent in place and stamped;
//   - heap: the heap in use after a GC.
func payloadBehavior(store proxystore.Store) *agent.Behavior {
	b := agent.NewBehavior("PayloadSink")
	ack := make([]byte, MsgSize)
	var seq byte
	err := errors.Join(
		agent.AddAction(b, "take", func(_ context.Context, in proxystore.Blob) ([]byte, error) {
			p := in.Bytes()
			if len(p) == 0 || p[len(p)-1] != ^p[0] || !in.Received() {
				return nil, fmt.Errorf("bench: a Blob of %d bytes without its stamp (a view: %v)", len(p), in.Received())
			}
			return ack, nil
		}),
		agent.AddAction(b, "give", func(ctx context.Context, n uint64) (proxystore.Blob, error) {
			out, err := proxystore.AllocBlob(ctx, store, int(n))
			if err != nil {
				return out, err
			}
			seq++
			proxyStamp(out.Bytes(), seq)
			return out, nil
		}),
		agent.AddAction(b, "heap", func(context.Context, agent.NoArgs) (uint64, error) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapInuse, nil
		}),
	)
	if err != nil {
		panic(err) // Blob, []byte, uint64 and NoArgs have codecs
	}
	return b
}

// childPayloadAgent joins exchange args[1] under root args[0], opens the
// arena store of its directory, wraps the exchange with it, runs a
// PayloadSink agent, tells its id, and serves until a shutdown request.
func childPayloadAgent(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments, got %d", len(args))
	}
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchangeIdle("default"))
	if err != nil {
		return err
	}
	defer x.Close()
	a, err := proxystore.OpenArena(x.Dir(), proxystore.WithMaxBytes(3<<30))
	if err != nil {
		return err
	}
	defer a.Close()
	wx := proxystore.Wrap(x, a)
	ctx := context.Background()
	rt, err := agent.NewRuntime(ctx, wx, payloadBehavior(a), agent.WithTerminateOnExit(true))
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(ctx) }()
	if err := Ready(rt.ID().UUID.String()); err != nil {
		return err
	}
	return <-errc
}

func runPayload(ctx context.Context, env *Env) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	const name = "payload"
	x, err := exchange.Open(name, exchange.WithRoot(root), exchangeIdle("default"))
	if err != nil {
		return nil, err
	}
	defer x.Close()
	a, err := proxystore.OpenArena(x.Dir(), proxystore.WithMaxBytes(3<<30))
	if err != nil {
		return nil, err
	}
	defer a.Close()
	defer debug.FreeOSMemory()
	wx := proxystore.Wrap(x, a)
	defer wx.Close()

	sizes := proxySizes
	if len(env.Sizes) > 0 {
		sizes = env.Sizes
	}
	// The largest size that fits: this process's block, the agent's result
	// block, the reserved one, with room for a block being reclaimed.
	maxSize := slices.Max(sizes)
	if env.Quick {
		maxSize = min(maxSize, proxyQuickMax)
	}
	for maxSize > proxyQuickMax && int64(4*maxSize) > shmFree(x.Dir()) {
		maxSize >>= 4
	}
	payload := make([]byte, maxSize)
	for i := 0; i < len(payload); i += 4096 {
		payload[i] = byte(i >> 12)
	}

	child, err := env.StartChild(ctx, "payload-agent", root, name)
	if err != nil {
		return nil, err
	}
	defer child.Close()
	line, err := child.Expect(ctx, "ready")
	if err != nil {
		return nil, err
	}
	u, err := exchange.ParseUUID(strings.TrimSpace(line))
	if err != nil {
		return nil, fmt.Errorf("bench: payload agent said %q: %w", line, err)
	}
	aid := exchange.EntityID{UUID: u, Role: exchange.RoleAgent}
	cl, err := agent.NewClient(ctx, wx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	h := cl.Handle(aid)
	pctx, stop := child.Context(ctx)
	defer stop()
	wd := newWatchdog(pctx, env.ChildTimeout)
	defer wd.Stop()
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, env.ChildTimeout)
		h.Shutdown(sctx)
		cancel()
	}()

	var seq byte
	take := func(in proxystore.Blob) error {
		_, err := agent.Call[[]byte](wd, h, "take", in)
		wd.Progress()
		return err
	}
	lend := func(n int) error {
		in, err := proxystore.AllocBlob(wd, a, n)
		if err != nil {
			return err
		}
		seq++
		proxyStamp(in.Bytes(), seq) // the producer writes its data in place
		return take(in)
	}
	put := func(n int) error {
		seq++
		proxyStamp(payload[:n], seq)
		in, err := proxystore.NewBlob(wd, a, payload[:n])
		if err != nil {
			return err
		}
		return take(in)
	}
	result := func(n int) error {
		out, err := agent.Call[proxystore.Blob](wd, h, "give", uint64(n))
		wd.Progress()
		if err != nil {
			return err
		}
		p := out.Bytes()
		if len(p) != n || p[len(p)-1] != ^p[0] {
			out.Release()
			return fmt.Errorf("bench: a result of %d bytes without its stamp", len(p))
		}
		return out.Release()
	}

	var rows []Row
	skip := func(n int, metrics ...string) bool {
		if n <= maxSize {
			return false
		}
		reason := fmt.Sprintf("%s does not fit: /dev/shm has %s free", sizeName(n), sizeName(int(shmFree(x.Dir()))>>20<<20))
		if env.Quick {
			reason = "quick run: payloads up to " + sizeName(proxyQuickMax)
		}
		rows = append(rows, SkipRows(reason, metrics...)...)
		return true
	}
	for _, s := range []struct {
		kind, series, note string
		op                 func(int) error
	}{
		{"", "action-blob", "a Blob lent in place (AllocBlob, stamp), read in place by the agent: no copy", lend},
		{"put", "action-blob-put", "a Blob copied in from the heap (NewBlob: one copy), read in place by the agent", put},
		{"result", "action-blob-result", "a Blob result lent by the agent (AllocBlob, stamp), read in place here: no copy", result},
	} {
		for _, n := range sizes {
			metric := PayloadMetric(s.kind, n)
			skipped := []string{metric}
			if s.kind == "" {
				skipped = append(skipped, PayloadMetric("first", n))
			}
			if skip(n, skipped...) {
				continue
			}
			if s.kind == "" {
				// The first call at this size: it may create and populate
				// a segment here (one that fits none of the free blocks)
				// and attach and populate it in the agent.
				t0 := time.Now()
				if err := s.op(n); err != nil {
					return nil, fmt.Errorf("first call of %s: %w", sizeName(n), err)
				}
				el := time.Since(t0)
				hist := NewHistogram()
				hist.Record(el)
				rows = append(rows, Row{Metric: PayloadMetric("first", n), Value: float64(el.Nanoseconds()), Unit: "ns", Hist: hist.Summary(),
					CompareTo: PayloadMetric("put", n), Series: "action-blob-first", Bytes: int64(n),
					Note: "one call: the first with a Blob of this size (a new segment when none fits, created, populated and attached)"})
			}
			cmp := ""
			switch {
			case s.kind == "" && n > 1<<10:
				cmp = PayloadMetric("", 1<<10)
			case s.kind == "put" && slices.Contains(payloadMemcpySizes, n):
				cmp = payloadMemcpyMetric(n)
			case s.kind != "":
				cmp = PayloadMetric("", n)
			}
			r, err := env.sweepRow(ctx, metric, s.series, n, cmp, func() error { return s.op(n) })
			if err != nil {
				return nil, err
			}
			r.Note = join(s.note, r.Note)
			rows = append(rows, r)
			if s.kind == "put" && slices.Contains(payloadMemcpySizes, n) {
				// The copy it is compared with, right after (a busy
				// machine changes pace from minute to minute).
				idle := keepAlive(wd)
				r, err := payloadMemcpy(ctx, env, a, payload[:n])
				idle()
				if err != nil {
					return nil, err
				}
				rows = append(rows, r)
			}
		}
	}
	for _, n := range payloadMemcpySizes {
		if !slices.Contains(sizes, n) {
			rows = append(rows, SkipRows("not among this run's sizes", payloadMemcpyMetric(n))...)
		} else if n > maxSize {
			skip(n, payloadMemcpyMetric(n))
		}
	}
	// Reserve takes seconds in this process alone: the agent is idle, not
	// silent.
	idle := keepAlive(wd)

	// Reserve ahead of the first call: another arena of this process (as a
	// process that starts would open it) reserves room for the largest
	// payload, then makes its first call with it.
	r, err := payloadReserved(ctx, env, x.Dir(), maxSize, take, idle)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)

	// The agent's heap before and after a call with the largest Blob: the
	// payload never enters it.
	before, err := agent.Call[uint64](wd, h, "heap", agent.NoArgs{})
	if err != nil {
		return nil, err
	}
	if err := lend(maxSize); err != nil {
		return nil, err
	}
	after, err := agent.Call[uint64](wd, h, "heap", agent.NoArgs{})
	if err != nil {
		return nil, err
	}
	note := fmt.Sprintf("the agent's heap in use (after a GC) before and after a call with a %s Blob", sizeName(maxSize))
	rows = append(rows,
		Row{Metric: MetricPayloadHeapBefore, Value: float64(before), Unit: "B", Note: note},
		Row{Metric: MetricPayloadHeapAfter, Value: float64(after), Unit: "B", CompareTo: MetricPayloadHeapBefore, Note: note})
	return rows, nil
}

// payloadMemcpy times one copy of src into a warm block of the arena (a
// loan, given back), the mean of a few (as the round trips it is compared
// with are means): the limit of a round trip that copies its payload once.
func payloadMemcpy(ctx context.Context, env *Env, a *proxystore.Arena, src []byte) (Row, error) {
	reps := env.Reps + 2
	var total time.Duration
	hist := NewHistogram()
	for i := range reps + 1 {
		l, err := a.Alloc(ctx, len(src))
		if err != nil {
			return Row{}, err
		}
		t0 := time.Now()
		copy(l.Bytes(), src)
		el := time.Since(t0)
		if err := l.Abort(); err != nil {
			return Row{}, err
		}
		if i == 0 {
			continue // the first lap warms the block
		}
		hist.Record(el)
		total += el
	}
	return Row{Metric: payloadMemcpyMetric(len(src)), Value: float64(total.Nanoseconds()) / float64(reps), Unit: "ns", Bytes: int64(len(src)), Hist: hist.Summary(),
		Note: fmt.Sprintf("one memmove of %s from the heap into a warm arena block, mean of %d after a first", sizeName(len(src)), reps)}, nil
}

// keepAlive makes progress on wd every second until the returned function
// is called: for the steps of the parent alone, during which the child has
// nothing to answer.
func keepAlive(wd *Watchdog) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				wd.Progress()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// payloadReserved opens a new arena in dir, reserves room for a payload of
// n bytes (timed), and times the first call with a Blob of n bytes lent
// from it. idle ends the parent's idle keep-alive once Reserve is done.
func payloadReserved(ctx context.Context, env *Env, dir string, n int, take func(proxystore.Blob) error, idle func()) ([]Row, error) {
	defer idle()
	b, err := proxystore.OpenArena(dir, proxystore.WithMaxBytes(int64(n)+64<<20))
	if err != nil {
		return nil, err
	}
	defer b.Close()
	t0 := time.Now()
	if err := b.Reserve(ctx, n); err != nil {
		return nil, err
	}
	reserve := time.Since(t0)
	idle()
	t0 = time.Now()
	in, err := proxystore.AllocBlob(ctx, b, n)
	if err != nil {
		return nil, err
	}
	proxyStamp(in.Bytes(), 1)
	if err := take(in); err != nil {
		return nil, fmt.Errorf("first call after Reserve: %w", err)
	}
	first := time.Since(t0)
	if st := b.Stats(); st.Segments != 1 {
		return nil, fmt.Errorf("bench: the first call after Reserve made a segment (%+v)", st)
	}
	one := func(metric string, d time.Duration, cmp, note string) Row {
		h := NewHistogram()
		h.Record(d)
		return Row{Metric: metric, Value: float64(d.Nanoseconds()), Unit: "ns", Hist: h.Summary(), CompareTo: cmp, Bytes: int64(n), Note: note}
	}
	return []Row{
		one(MetricPayloadReserve, reserve, PayloadMetric("first", n),
			fmt.Sprintf("Arena.Reserve of room for a %s payload in a new arena: a segment created and populated ahead of the first call", sizeName(n))),
		one(MetricPayloadReservedFirst, first, PayloadMetric("", n),
			fmt.Sprintf("the first call with a %s Blob lent from the room Reserve prepared", sizeName(n))),
	}, nil
}
