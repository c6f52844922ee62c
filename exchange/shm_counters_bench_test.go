package exchange_test

import (
	"context"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/cpuclock"
)

// What counting costs (ring's counters.go): compare these with a build
// with -tags shmex_nocounters, interleaving the two builds' runs (see the
// README, "What the counters cost").

// BenchmarkSHMRoundTripInline is BenchmarkSHMRoundTrip's request and
// response, both sent and received by one goroutine: every step of the
// round trip through the exchange (encode, claim, count, commit, read,
// decode, twice) without the wait for another core, so that what counting
// adds shows undiluted by scheduling. Besides the wall-clock time it
// reports the CPU time per round trip of the shortest window of 512
// (min-cpu-ns/op), which a loaded machine disturbs least (see
// internal/cpuclock).
func BenchmarkSHMRoundTripInline(b *testing.B) {
	a, c, agent, client, amb, cmb := shmPair(b)
	ctx := context.Background()
	req := exchange.NewActionRequest(client, agent, "compute", args64())
	var m, resp exchange.Message
	b.ReportAllocs()
	cpu := cpuclock.Start(512)
	for b.Loop() {
		if err := c.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
		if err := amb.Recv(ctx, &m); err != nil {
			b.Fatal(err)
		}
		m.SetResponse(&m, m.Args)
		if err := a.Send(ctx, &m); err != nil {
			b.Fatal(err)
		}
		if err := cmb.Recv(ctx, &resp); err != nil {
			b.Fatal(err)
		}
		cpu.Tick()
	}
	cpu.Report(b)
	if resp.Tag != req.Tag || len(resp.Result) != 64 {
		b.Fatalf("last response %v to %v", &resp, req)
	}
}
