//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Metric names of the proxy-store scenario.
const (
	MetricProxyLoan1KiB = "proxy.loan_rtt_1KiB_ns"
	MetricProxyLoan1GiB = "proxy.loan_rtt_1GiB_ns"
	MetricProxyPut      = "proxy.put_gbps"
)

// Proxy sweep sizes: the inline sizes and beyond, up to 1 GiB.
var proxySizes = append(append([]int(nil), sweepSizes...), 64<<20, 1<<30)

// proxyQuickMax is the largest payload of a quick run (tests): larger sizes
// are skipped rows.
const proxyQuickMax = 4 << 20

// proxyMetric returns the metric of a proxy round-trip row.
func proxyMetric(series string, n int) string {
	switch {
	case series == "proxy-loan" && n == 1<<10:
		return MetricProxyLoan1KiB
	case series == "proxy-loan" && n == 1<<30:
		return MetricProxyLoan1GiB
	}
	return SweepMetric(series, n)
}

func init() {
	metrics := []string{MetricProxyPut}
	for _, s := range []string{"proxy-loan", "proxy-put"} {
		for _, n := range proxySizes {
			metrics = append(metrics, proxyMetric(s, n))
		}
	}
	Register(Scenario{
		Name: "proxy", Rank: RankShmex + 30,
		Doc: "a request whose argument (64 B to 1 GiB) travels as a proxy into the shared arena, to an agent process that resolves it " +
			"(zero copies) and answers with 64 bytes: payload lent in place (Alloc) or copied in (Put); and Put bandwidth",
		Metrics: metrics,
		Run:     runProxy,
	})
	RegisterChild("proxy-agent", childProxyAgent)
}

// proxyStamp marks the first and last byte of a payload, so that the
// resolving side checks it sees the producer's bytes without reading them
// all.
func proxyStamp(b []byte, seq byte) {
	b[0], b[len(b)-1] = seq, ^seq
}

// childProxyAgent joins exchange args[1] under root args[0], opens the arena
// store of its directory, registers an agent and tells its id. It answers
// every ActionRequest with MsgSize bytes, after resolving and releasing the
// proxy in its arguments and checking the payload's stamp, until a
// ShutdownRequest.
func childProxyAgent(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want 2 arguments, got %d", len(args))
	}
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchangeIdle("default"))
	if err != nil {
		return err
	}
	defer x.Close()
	a, err := proxystore.OpenArena(x.Dir())
	if err != nil {
		return err
	}
	defer a.Close()
	ctx := context.Background()
	ack := make([]byte, MsgSize)
	return serveAgent(x, "ProxySink", func(m *exchange.Message) ([]byte, error) {
		p, err := proxystore.ParsePayload(m.Args)
		if err != nil {
			return nil, err
		}
		v, err := a.Resolve(ctx, p)
		if err != nil {
			return nil, err
		}
		b := v.Bytes()
		if len(b) == 0 || b[len(b)-1] != ^b[0] {
			v.Release()
			return nil, fmt.Errorf("bench: resolved payload of %d bytes without its stamp", len(b))
		}
		return ack, v.Release()
	})
}

// shmFree returns the bytes free in the file system of dir.
func shmFree(dir string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

func runProxy(ctx context.Context, env *Env) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	const name = "proxy"
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

	sizes := proxySizes
	if len(env.Sizes) > 0 {
		sizes = env.Sizes
	}
	// The largest size that fits: twice the payload (a block being
	// reclaimed while the next is lent) must fit in /dev/shm.
	maxSize := slices.Max(sizes)
	if env.Quick {
		maxSize = proxyQuickMax
	}
	for maxSize > proxyQuickMax && int64(3*maxSize) > shmFree(x.Dir()) {
		maxSize >>= 4
	}
	payload := make([]byte, maxSize)
	for i := 0; i < len(payload); i += 4096 {
		payload[i] = byte(i >> 12)
	}

	rows := []Row{}
	put, err := putBandwidth(ctx, env, a, payload)
	if err != nil {
		return nil, fmt.Errorf("put bandwidth: %w", err)
	}
	rows = append(rows, put)

	peer, err := startMsgPeer(ctx, env, x, "proxy-agent", root, name)
	if err != nil {
		return nil, err
	}
	defer peer.close(ctx)
	rctx := peer.ctx
	var seq byte
	var args []byte
	call := func(p proxystore.Proxy) error {
		args = proxystore.AppendPayload(args[:0], p)
		return peer.call(args, MsgSize)
	}
	loan := func(n int) error {
		l, err := a.Alloc(rctx, n, proxystore.WithSingleUse())
		if err != nil {
			return err
		}
		seq++
		proxyStamp(l.Bytes(), seq) // the producer writes its data in place
		p, err := l.Commit()
		if err != nil {
			return err
		}
		return call(p)
	}
	putOp := func(n int) error {
		seq++
		proxyStamp(payload[:n], seq)
		p, err := a.Put(rctx, payload[:n], proxystore.WithSingleUse())
		if err != nil {
			return err
		}
		return call(p)
	}
	for _, s := range []struct {
		series, note string
		op           func(int) error
	}{
		{"proxy-loan", "payload lent in place (Alloc, stamp, Commit), resolved without a copy; default idle", loan},
		{"proxy-put", "payload copied in (Put), resolved without a copy; default idle", putOp},
	} {
		for _, n := range sizes {
			metric := proxyMetric(s.series, n)
			if n > maxSize {
				reason := fmt.Sprintf("%s does not fit: /dev/shm has %s free", sizeName(n), sizeName(int(shmFree(x.Dir()))>>20<<20))
				if env.Quick {
					reason = "quick run: payloads up to " + sizeName(proxyQuickMax)
				}
				rows = append(rows, SkipRows(reason, metric)...)
				continue
			}
			cmp := ""
			switch {
			case s.series == "proxy-loan" && n > 1<<10:
				cmp = MetricProxyLoan1KiB
			case s.series == "proxy-put":
				cmp = proxyMetric("proxy-loan", n)
			}
			r, err := env.sweepRow(ctx, metric, s.series, n, cmp, func() error { return s.op(n) })
			if err != nil {
				return nil, err
			}
			r.Note = join(s.note, r.Note)
			rows = append(rows, r)
		}
	}
	if err := peer.close(ctx); err != nil {
		return nil, err
	}
	return rows, nil
}

// putBandwidth measures Put of the largest payload (at most 64 MiB) into
// the arena, freeing each copy, against the memory copy limit.
func putBandwidth(ctx context.Context, env *Env, a *proxystore.Arena, payload []byte) (Row, error) {
	size := min(len(payload), 64<<20)
	if env.Quick {
		size = min(size, 1<<20)
	}
	src := payload[:size]
	var best float64
	reps := env.Reps + 2
	for i := range reps + 1 {
		if err := ctx.Err(); err != nil {
			return Row{}, err
		}
		t0 := time.Now()
		p, err := a.Put(ctx, src)
		el := time.Since(t0)
		if err != nil {
			return Row{}, err
		}
		if err := a.Free(ctx, p); err != nil {
			return Row{}, err
		}
		if i > 0 { // the first Put maps the arena's pages
			best = max(best, float64(size)/el.Seconds()/1e9)
		}
	}
	if best == 0 {
		return Row{}, errors.New("bench: no Put timed")
	}
	return Row{Metric: MetricProxyPut, Value: best, Unit: "GB/s", CompareTo: MetricMemcpy,
		Note: fmt.Sprintf("best of %d Puts of %s into the arena, one thread", reps, sizeName(size))}, nil
}
