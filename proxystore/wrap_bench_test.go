package proxystore

import (
	"context"
	"fmt"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// BenchmarkWrapSendRecv measures Send and Recv of an action request whose
// arguments are proxied, through Wrap over the in-process exchange, per
// store, resolve mode and payload size.
func BenchmarkWrapSendRecv(b *testing.B) {
	ctx := context.Background()
	for _, st := range []string{"mem", "file"} {
		for _, mode := range []ResolveMode{ResolveCopy, ResolveZeroCopy} {
			for _, n := range []int{64 << 10, 4 << 20} {
				b.Run(fmt.Sprintf("%s/%v/%dKiB", st, mode, n>>10), func(b *testing.B) {
					var store Store = NewMemStore()
					if st == "file" {
						store = openFS(b, b.TempDir())
					}
					x := Wrap(exchange.NewLocal(), store, WithResolveMode(mode))
					defer x.Close()
					agent, _ := x.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
					client, _ := x.RegisterClient(ctx)
					mb, _ := x.Mailbox(ctx, agent)
					req := exchange.NewActionRequest(client, agent, "f", pattern(1, n, false))
					var m exchange.Message
					b.SetBytes(int64(n))
					for b.Loop() {
						req.Tag = exchange.NewTag()
						if err := x.Send(ctx, req); err != nil {
							b.Fatal(err)
						}
						if err := mb.Recv(ctx, &m); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
