package redisx_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/redistest"
)

// BenchmarkMsgRTT: an ActionRequest and its response between two sessions
// (two nodes) of this process through Redis.
func BenchmarkMsgRTT(b *testing.B) {
	srv := redistest.StartVolatile(b)
	prefix := newPrefix()
	a := open(b, srv.Addr, prefix, redisx.WithNode("A"))
	z := open(b, srv.Addr, prefix, redisx.WithNode("B"))
	ctx := context.Background()
	aid, _ := z.RegisterAgent(ctx, exchange.Behavior{Name: "Echo"})
	cid, _ := a.RegisterClient(ctx)
	amb, err := z.Mailbox(ctx, aid)
	if err != nil {
		b.Fatal(err)
	}
	cmb, err := a.Mailbox(ctx, cid)
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		var m exchange.Message
		for {
			if err := amb.Recv(ctx, &m); err != nil {
				return
			}
			select {
			case <-stop:
				return
			default:
			}
			m.SetResponse(&m, m.Args)
			z.Send(ctx, &m)
		}
	}()
	req := exchange.NewActionRequest(cid, aid, "echo", make([]byte, 64))
	var resp exchange.Message
	b.ResetTimer()
	for range b.N {
		req.Tag = exchange.NewTag()
		if err := a.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
		if err := cmb.Recv(ctx, &resp); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	amb.Close()
}

// BenchmarkActions: no-op actions through the agent layer, 64 goroutines
// using the handles of 2 clients of session A, 64 actions in flight each, to
// 8 agents of session B (the shape of shmbench's cluster.throughput_ops,
// here in one process).
func BenchmarkActions(b *testing.B) {
	const agents, clients, workers, window = 8, 2, 64, 64
	srv := redistest.StartVolatile(b)
	prefix := newPrefix()
	a := open(b, srv.Addr, prefix, redisx.WithNode("A"))
	z := open(b, srv.Addr, prefix, redisx.WithNode("B"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var count atomic.Int64
	var ids []exchange.EntityID
	var rts []*agent.Runtime
	defer func() { // the runtimes stop before the exchanges close
		cancel()
		for _, rt := range rts {
			<-rt.Done()
		}
	}()
	for range agents {
		rt, err := agent.NewRuntime(ctx, z, workerBehavior(&count))
		if err != nil {
			b.Fatal(err)
		}
		go rt.Run(ctx)
		rts = append(rts, rt)
		ids = append(ids, rt.ID())
	}
	var cls []*agent.Client
	for range clients {
		cl, err := agent.NewClient(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		cls = append(cls, cl)
	}
	per := b.N/workers + 1
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		h := cls[w%clients].Handle(ids[w%agents])
		wg.Add(1)
		go func() {
			defer wg.Done()
			var fs []*agent.Future[int64]
			for i := 0; i < per; i++ {
				f, err := agent.Action[int64](ctx, h, "add", int64(1))
				if err != nil {
					b.Error(err)
					return
				}
				fs = append(fs, f)
				if len(fs) == window {
					if _, err := fs[0].Wait(ctx); err != nil {
						b.Error(err)
						return
					}
					fs = fs[1:]
				}
			}
			for _, f := range fs {
				f.Wait(ctx)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*workers)/time.Since(start).Seconds(), "actions/s")
}

// BenchmarkMsgRTTvsLists measures, interleaved in rounds so that the load
// of the machine hits both alike, a request-response between two sessions
// (two nodes) of this process through the exchange, and a plain Redis list
// ping-pong (LPUSH, BRPOP each way, what shmbench's redis.rtt_ns does
// between two processes) on the same server; it reports both medians and
// their ratio.
func BenchmarkMsgRTTvsLists(b *testing.B) {
	srv := redistest.StartVolatile(b)
	ctx := context.Background()
	plain := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2, DisableIdentity: true, PoolSize: 2, MaxRetries: -1,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
		b.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := plain(), plain()
	prefix := newPrefix()
	req, resp := prefix+":req", prefix+":resp"
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			v, err := cb.BRPop(ctx, time.Second, req).Result()
			select {
			case <-done:
				return
			default:
			}
			if err == nil {
				cb.LPush(ctx, resp, v[1])
			}
		}
	}()
	a := open(b, srv.Addr, prefix, redisx.WithNode("A"))
	z := open(b, srv.Addr, prefix, redisx.WithNode("B"))
	aid, _ := z.RegisterAgent(ctx, exchange.Behavior{Name: "Echo"})
	cid, _ := a.RegisterClient(ctx)
	amb, err := z.Mailbox(ctx, aid)
	if err != nil {
		b.Fatal(err)
	}
	defer amb.Close()
	cmb, err := a.Mailbox(ctx, cid)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		var m exchange.Message
		for amb.Recv(ctx, &m) == nil {
			m.SetResponse(&m, m.Args)
			z.Send(ctx, &m)
		}
	}()
	msg := make([]byte, 64)
	m := exchange.NewActionRequest(cid, aid, "echo", msg)
	var r exchange.Message
	const per = 200
	rounds := max(b.N/per, 3)
	var lists, ex []float64
	b.ResetTimer()
	for range rounds {
		t := time.Now()
		for range per {
			ca.LPush(ctx, req, msg)
			ca.BRPop(ctx, time.Second, resp)
		}
		lists = append(lists, float64(time.Since(t).Nanoseconds())/per)
		t = time.Now()
		for range per {
			m.Tag = exchange.NewTag()
			if err := a.Send(ctx, m); err != nil {
				b.Fatal(err)
			}
			if err := cmb.Recv(ctx, &r); err != nil {
				b.Fatal(err)
			}
		}
		ex = append(ex, float64(time.Since(t).Nanoseconds())/per)
	}
	slices.Sort(lists)
	slices.Sort(ex)
	l, e := lists[len(lists)/2], ex[len(ex)/2]
	b.ReportMetric(l, "lists-ns/rtt")
	b.ReportMetric(e, "exchange-ns/rtt")
	b.ReportMetric(e/l, "ratio")
}
