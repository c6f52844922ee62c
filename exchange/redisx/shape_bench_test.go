package redisx_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/shmex/shmex/internal/redistest"
)

// BenchmarkCommandShape splits the exchange's request-response overhead
// over a plain list ping-pong (BenchmarkMsgRTTvsLists) into what its
// Redis commands cost and what its Go code costs: interleaved in rounds on
// one server, with go-redis alone (no exchange code), a plain LPUSH/BRPOP
// ping-pong ("lists"); the exchange's pipelines without the record reads
// and LLEN ("minimal": LPUSH; LTRIM+BLMOVE); and its full pipelines
// ("shaped": LPUSH+HMGET; LTRIM+BLMOVE+LLEN+HMGET). It reports the medians
// of the last two as ratios to the first.
func BenchmarkCommandShape(b *testing.B) {
	srv := redistest.StartVolatile(b)
	ctx := context.Background()
	plain := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2, DisableIdentity: true, PoolSize: 4, MaxRetries: -1,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
		b.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := plain(), plain()
	cb.HSet(ctx, "rec", "role", "1", "st", "1", "inc", "1", "cap", "100")
	done := make(chan struct{})
	defer close(done)
	// the echo of the plain ping-pong
	go func() {
		for {
			v, err := cb.BRPop(ctx, time.Second, "req").Result()
			select {
			case <-done:
				return
			default:
			}
			if err == nil {
				cb.LPush(ctx, "resp", v[1])
			}
		}
	}()
	// the echo of the pipelined ones: full adds the record reads and LLEN
	echo := func(cc *redis.Client, full bool, req, resp, f string) {
		held := 0
		for {
			p := cc.Pipeline()
			if held > 0 {
				p.LTrim(ctx, f, 0, int64(-(held + 1)))
			}
			bl := redis.NewStringCmd(ctx, "blmove", req, f, "RIGHT", "LEFT", "1.000")
			p.Process(ctx, bl)
			if full {
				p.LLen(ctx, req)
				p.HMGet(ctx, "rec", "st", "inc", "rcv")
			}
			p.Exec(ctx)
			select {
			case <-done:
				return
			default:
			}
			if v, err := bl.Result(); err == nil {
				held = 1
				q := cc.Pipeline()
				q.LPush(ctx, resp, v)
				if full {
					q.HMGet(ctx, "rec", "role", "st", "inc", "cap")
				}
				q.Exec(ctx)
			} else {
				held = 0
			}
		}
	}
	go echo(plain(), true, "sreq", "sresp", "fb")
	go echo(plain(), false, "mreq", "mresp", "fmb")
	msg := make([]byte, 98)
	const per = 200
	rounds := max(b.N/per, 3)
	var lists, shaped, minimal []float64
	held, mheld := 0, 0
	for range rounds {
		t := time.Now()
		for range per {
			ca.LPush(ctx, "req", msg)
			ca.BRPop(ctx, time.Second, "resp")
		}
		lists = append(lists, float64(time.Since(t).Nanoseconds())/per)
		t = time.Now()
		for range per {
			q := ca.Pipeline()
			q.LPush(ctx, "sreq", msg)
			q.HMGet(ctx, "rec", "role", "st", "inc", "cap")
			q.Exec(ctx)
			p := ca.Pipeline()
			if held > 0 {
				p.LTrim(ctx, "fa", 0, int64(-(held + 1)))
			}
			p.Process(ctx, redis.NewStringCmd(ctx, "blmove", "sresp", "fa", "RIGHT", "LEFT", "1.000"))
			p.LLen(ctx, "sresp")
			p.HMGet(ctx, "rec", "st", "inc", "rcv")
			p.Exec(ctx)
			held = 1
		}
		shaped = append(shaped, float64(time.Since(t).Nanoseconds())/per)
		t = time.Now()
		for range per {
			q := ca.Pipeline()
			q.LPush(ctx, "mreq", msg)
			q.Exec(ctx)
			p := ca.Pipeline()
			if mheld > 0 {
				p.LTrim(ctx, "fma", 0, int64(-(mheld + 1)))
			}
			p.Process(ctx, redis.NewStringCmd(ctx, "blmove", "mresp", "fma", "RIGHT", "LEFT", "1.000"))
			p.Exec(ctx)
			mheld = 1
		}
		minimal = append(minimal, float64(time.Since(t).Nanoseconds())/per)
	}
	slices.Sort(lists)
	slices.Sort(shaped)
	slices.Sort(minimal)
	b.ReportMetric(minimal[len(minimal)/2]/lists[len(lists)/2], "minimal-ratio")
	l, e := lists[len(lists)/2], shaped[len(shaped)/2]
	b.ReportMetric(l, "lists-ns/rtt")
	b.ReportMetric(e, "shaped-ns/rtt")
	b.ReportMetric(e/l, "ratio")
}
