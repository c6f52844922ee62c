package exchange_test

import (
	"context"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// BenchmarkSHMSendRecvBatch sends 64 messages, then receives them, in one
// goroutine: the per-message cost of the exchange's send and receive paths
// without any cross-core traffic.
func BenchmarkSHMSendRecvBatch(b *testing.B) {
	_, c, agent, client, amb, _ := shmPair(b)
	ctx := context.Background()
	req := exchange.NewActionRequest(client, agent, "compute", args64())
	var m exchange.Message
	b.ReportAllocs()
	for b.Loop() {
		for range 64 {
			if err := c.Send(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		for range 64 {
			if err := amb.Recv(ctx, &m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/msg")
}
