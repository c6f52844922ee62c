package exchange_test

import (
	"context"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/cpuclock"
)

// BenchmarkSHMActionCost is the exchange's share of one pipelined action,
// both sides in one goroutine: the client sends 64 ActionRequests (64 bytes
// of args, a label, as the agent layer sends them) with SendIncarnation;
// the agent takes each with Recv, answers it in place (64 bytes of result)
// and Sends the response; the client takes the 64 responses with
// RecvBatch. One op is a batch of 64 actions; the metrics per action
// (two sends and two receives) are min-cpu-ns/op, cpu-ns/op and
// ns/action. There is no cross-core traffic: what it measures is the
// instructions of the path, which the agent layer's pipelined rate pays
// on each side, and its atomic operations.
//
// The CPU time per action of the shortest window (min-cpu-ns/op, see
// internal/cpuclock) varies by several percent on a loaded machine; for a
// figure that does not (to the instruction, from run to run), count the
// instructions under valgrind, the difference of two run lengths
// removing the setup:
//
//	go test -c -o /tmp/x.test ./exchange/
//	for n in 200 1200; do valgrind --tool=cachegrind --cache-sim=no \
//	  --cachegrind-out-file=/dev/null /tmp/x.test -test.run '^$' -test.cpu 1 \
//	  -test.bench 'SHMActionCost$' -test.benchtime ${n}x 2>&1 | grep 'I *refs'; done
//
// (instructions per action = difference / 1000 / 64: 6061 before the
// field codecs' fast paths, batched RecvBatch and EntityID generated into
// Message's codec, 5067 after). With
// --cachegrind-out-file and cg_annotate, the same run says where they go.
func BenchmarkSHMActionCost(b *testing.B) {
	a, c, agent, client, amb, cmb := shmPair(b)
	ctx := context.Background()
	var send exchange.IncarnationSender = c
	recvBatch := cmb.(exchange.BatchReceiver)
	req := exchange.NewActionRequest(client, agent, "compute", args64())
	req.Label = exchange.NewTag()
	var m exchange.Message
	resps := make([]*exchange.Message, 64)
	for i := range resps {
		resps[i] = new(exchange.Message)
	}
	batch := func() {
		for range 64 {
			if _, err := send.SendIncarnation(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		for range 64 {
			if err := amb.Recv(ctx, &m); err != nil {
				b.Fatal(err)
			}
			m.SetResponse(&m, m.Args)
			if err := a.Send(ctx, &m); err != nil {
				b.Fatal(err)
			}
		}
		for got := 0; got < 64; {
			n, err := recvBatch.RecvBatch(ctx, resps[got:])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	batch() // map the rings, attach the producers, grow the slices
	b.ReportAllocs()
	cpu := cpuclock.Start(512)
	for b.Loop() {
		batch()
		for range 64 {
			cpu.Tick()
		}
	}
	cpu.Report(b)
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N*64), "ns/action")
	if r := resps[63]; r.Tag != req.Tag || r.Label != req.Label || len(r.Result) != 64 {
		b.Fatalf("last response %v to %v", r, req)
	}
}
