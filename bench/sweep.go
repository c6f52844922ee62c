//go:build linux

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Payload sweep: one request carrying an argument of each size, answered
// with a MsgSize-byte result, over every transport. Rows carry Series and
// Bytes, so the plot draws latency against size.

// Sweep sizes and limits.
var sweepSizes = []int{64, 1 << 10, 64 << 10, 1 << 20, 4 << 20}

const (
	// sweepMaxBytes bounds a payload a sweep child accepts.
	sweepMaxBytes = 1 << 30
	// sweepMailboxBytes holds the largest inline sweep argument (an
	// exchange message takes at most a quarter of its mailbox).
	sweepMailboxBytes = 32 << 20
)

// Sweep series.
var sweepSeries = []string{"exchange", "uds", "tcp", "redis"}

// sweepLargeSizes are the sizes past the inline sweep at which the peers
// that carry any size are measured too (Unix sockets; Redis, whose bulk
// strings stop at 512 MB), to draw beside action/payload's Blob rows.
var sweepLargeSizes = []int{64 << 20, 1 << 30}

// sweepLargeSeries are those peers.
var sweepLargeSeries = []string{"uds", "redis"}

// redisMaxBulk is Redis's default proto-max-bulk-len.
const redisMaxBulk = 512 << 20

// SweepMetric returns the metric name of a sweep row.
func SweepMetric(series string, size int) string {
	return fmt.Sprintf("sweep.%s.rtt_%s_ns", series, sizeName(size))
}

// sizeName writes a power-of-two size as 64B, 1KiB, 4MiB, 1GiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func init() {
	var metrics []string
	for _, s := range sweepSeries {
		for _, n := range sweepSizes {
			metrics = append(metrics, SweepMetric(s, n))
		}
	}
	for _, s := range sweepLargeSeries {
		for _, n := range sweepLargeSizes {
			metrics = append(metrics, SweepMetric(s, n))
		}
	}
	Register(Scenario{
		Name: "sweep", Rank: RankOther,
		Doc: "payload sweep: a request with an argument of 64 B to 4 MiB and a 64-byte answer, with a child process, " +
			"inline through the exchange (default idle: spin a while, then futex) and through each peer; " +
			"Unix sockets and Redis also at 64 MiB and 1 GiB, beside action/payload's Blobs",
		Metrics: metrics,
		Run:     runSweep,
	})
}

// sweepPoint times round trips of op for a fraction of the run's phase
// (sweeps have many points), at least three of them.
func (e *Env) sweepPoint(ctx context.Context, op func() error) (Latency, error) {
	for range 2 {
		if err := op(); err != nil {
			return Latency{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	p := Phase{Duration: max(e.Duration/2, time.Millisecond)}
	if e.Iterations > 0 {
		p = Phase{Count: int64(max(3, min(e.Iterations, 100)))}
	}
	h := NewHistogram()
	n, el, err := p.TimedLoop(ctx, h, op)
	if err != nil {
		return Latency{}, err
	}
	for ; n < 3; n++ {
		t0 := time.Now()
		if err := op(); err != nil {
			return Latency{}, err
		}
		d := time.Since(t0)
		h.Record(d)
		el += d
	}
	mean := float64(el.Nanoseconds()) / float64(n)
	return Latency{Mean: mean, Reps: []float64{mean}, Hist: h}, nil
}

// inlineSizes returns the payload sizes of the inline sweep: Config.Sizes
// when set (those the inline transports can carry), else sweepSizes.
func (e *Env) inlineSizes() []int {
	if len(e.Sizes) == 0 {
		return sweepSizes
	}
	var s []int
	for _, n := range e.Sizes {
		if n <= sweepMaxInline {
			s = append(s, n)
		}
	}
	return s
}

// largeSizes returns the sizes past the inline sweep for the peers that
// carry any size: Config.Sizes above sweepMaxInline when set, else
// sweepLargeSizes.
func (e *Env) largeSizes() []int {
	if len(e.Sizes) == 0 {
		return sweepLargeSizes
	}
	var s []int
	for _, n := range e.Sizes {
		if n > sweepMaxInline {
			s = append(s, n)
		}
	}
	return s
}

// largeRows measures op at the large sizes for one series, or skips them
// (quick runs; sizes over max, with why).
func (e *Env) largeRows(ctx context.Context, series string, max int, why string, op func(size int) error) ([]Row, error) {
	var rows []Row
	for _, n := range e.largeSizes() {
		metric := SweepMetric(series, n)
		switch {
		case e.Quick:
			rows = append(rows, SkipRows("quick run: payloads up to "+sizeName(proxyQuickMax), metric)...)
			continue
		case n > max:
			rows = append(rows, SkipRows(why, metric)...)
			continue
		}
		r, err := e.sweepRow(ctx, metric, series, n, PayloadMetric("", n), func() error { return op(n) })
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// sweepMaxInline is the largest payload the inline sweep sends.
const sweepMaxInline = sweepMailboxBytes/4 - 4096

// ParseSizes parses a comma-separated list of sizes such as
// "64,1KiB,4MiB,1GiB" (suffixes B, KiB, MiB, GiB, also K, M, G).
func ParseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		for _, u := range []struct {
			suffix string
			mult   int
		}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
			if strings.HasSuffix(f, u.suffix) {
				f, mult = strings.TrimSuffix(f, u.suffix), u.mult
				break
			}
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || n > (1<<40)/mult {
			return nil, fmt.Errorf("bench: bad size %q", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

// sweepRow measures op, a round trip carrying n bytes, as one point of a
// sweep series (see sweepPoint) and returns its row.
func (e *Env) sweepRow(ctx context.Context, metric, series string, n int, compareTo string, op func() error) (Row, error) {
	l, err := e.sweepPoint(ctx, op)
	if err != nil {
		return Row{}, fmt.Errorf("%s %s: %w", series, sizeName(n), err)
	}
	r := e.LatencyRow(metric, l, compareTo)
	r.Series, r.Bytes = series, int64(n)
	r.Note = join(r.Note, fmt.Sprintf("%d round trips", r.Hist.Count))
	return r, nil
}

// sweepRows measures op at every inline sweep size for one series.
func (e *Env) sweepRows(ctx context.Context, series, vs string, op func(size int) error) ([]Row, error) {
	var rows []Row
	for _, n := range e.inlineSizes() {
		cmp := ""
		if vs != "" {
			cmp = SweepMetric(vs, n)
		}
		r, err := e.sweepRow(ctx, SweepMetric(series, n), series, n, cmp, func() error { return op(n) })
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func runSweep(ctx context.Context, env *Env) ([]Row, error) {
	sizes := env.inlineSizes()
	if len(sizes) == 0 && len(env.largeSizes()) == 0 {
		return nil, nil
	}
	n := 0
	if len(sizes) > 0 {
		n = slices.Max(sizes)
	}
	if large := env.largeSizes(); len(large) > 0 && !env.Quick {
		n = max(n, slices.Max(large))
	}
	payload := make([]byte, n)
	for i := range min(len(payload), sweepMaxInline) {
		payload[i] = byte(i * 7)
	}
	for i := sweepMaxInline; i < len(payload); i += 4096 {
		payload[i] = byte(i >> 12) // the large sizes: one byte a page is enough for a socket
	}
	var rows []Row
	r, err := sweepExchange(ctx, env, payload)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)
	for _, network := range []string{"unix", "tcp"} {
		r, err := sweepSocket(ctx, env, network, payload)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	r, err = sweepRedis(ctx, env, payload)
	if err != nil {
		return nil, err
	}
	return append(rows, r...), nil
}

// sweepExchange sends ActionRequests with the payload inline to an agent
// process that answers with MsgSize bytes; both sides use the exchange's
// default idle strategy (spin a while, then sleep on the futex).
func sweepExchange(ctx context.Context, env *Env, payload []byte) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	const name = "sweep"
	x, err := exchange.Open(name, exchange.WithRoot(root), exchangeIdle("default"), exchange.WithMailboxBytes(sweepMailboxBytes))
	if err != nil {
		return nil, err
	}
	defer x.Close()
	p, err := startMsgPeer(ctx, env, x, "exchange-echo", root, name, "default", fmt.Sprint(sweepMailboxBytes))
	if err != nil {
		return nil, err
	}
	rows, err := env.sweepRows(ctx, "exchange", "uds", func(n int) error { return p.call(payload[:n], MsgSize) })
	if cerr := p.close(ctx); err == nil {
		err = cerr
	}
	for i := range rows {
		rows[i].Note = join("inline, default idle (spin, then futex)", rows[i].Note)
	}
	return rows, err
}

// sweepSocket sends length-prefixed payloads to a socket child that answers
// each with MsgSize bytes.
func sweepSocket(ctx context.Context, env *Env, network string, payload []byte) ([]Row, error) {
	srv, err := startSockServer(ctx, env, network)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	conn, err := srv.dial(ctx, modePayload)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	series := map[string]string{"unix": "uds", "tcp": "tcp"}[network]
	var hdr [8]byte
	var ack [MsgSize]byte
	op := func(n int) error {
		conn.SetDeadline(time.Now().Add(srv.timeout))
		binary.LittleEndian.PutUint64(hdr[:], uint64(n))
		if _, err := (&net.Buffers{hdr[:], payload[:n]}).WriteTo(conn); err != nil {
			return err
		}
		_, err := io.ReadFull(conn, ack[:])
		return err
	}
	rows, err := env.sweepRows(ctx, series, "", op)
	if err != nil || !slices.Contains(sweepLargeSeries, series) {
		return rows, err
	}
	large, err := env.largeRows(ctx, series, min(len(payload), sweepMaxBytes), "larger than this run's payload", op)
	return append(rows, large...), err
}

// sweepRedis pushes the payload on a Redis list for a child that answers
// with MsgSize bytes, as Academy's Redis exchange moves messages.
func sweepRedis(ctx context.Context, env *Env, payload []byte) ([]Row, error) {
	path, skip := FindRedisServer(env.RedisServer)
	if skip != "" {
		var ms []string
		for _, n := range append(env.inlineSizes(), env.largeSizes()...) {
			ms = append(ms, SweepMetric("redis", n))
		}
		return SkipRows(skip, ms...), nil
	}
	p, err := startRedisPeer(ctx, env, path, fmt.Sprintf("shmbench-sweep:%d", os.Getpid()))
	if err != nil {
		return nil, err
	}
	maxLen := 0 // the largest payload sent to Redis
	for _, n := range append(env.inlineSizes(), env.largeSizes()...) {
		if n <= len(payload) && n < redisMaxBulk {
			maxLen = max(maxLen, n)
		}
	}
	msg := make([]byte, 1+maxLen)
	msg[0] = redisAck
	copy(msg[1:], payload)
	op := func(n int) error { return p.ack(ctx, msg[:1+n]) }
	rows, err := env.sweepRows(ctx, "redis", "", op)
	if err == nil {
		var large []Row
		large, err = env.largeRows(ctx, "redis", maxLen, "over Redis's 512 MB bulk strings", op)
		rows = append(rows, large...)
	}
	if cerr := p.close(ctx); err == nil {
		err = cerr
	}
	return rows, err
}
