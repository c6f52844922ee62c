package ring_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/shmex/shmex/ring"
)

// Single-process throughput of 64-byte records, n producers to one consumer,
// the ring against a buffered channel of the same records measured in the
// same run. Each reports records/s; ns/op is per record.

type record64 [64]byte

func BenchmarkThroughput(b *testing.B) {
	for _, producers := range []int{1, 4} {
		b.Run(fmt.Sprintf("ring_%dto1", producers), func(b *testing.B) { benchRing(b, producers) })
		b.Run(fmt.Sprintf("chan_%dto1", producers), func(b *testing.B) { benchChan(b, producers) })
	}
}

func benchRing(b *testing.B, producers int) {
	r := newRing(b, ring.Config{Capacity: 1 << 20, Slots: 16}, ring.Options{})
	c, _ := r.NewConsumer(1, ring.Spin)
	ctx := context.Background()
	per := b.N / producers
	total := per * producers
	var wg sync.WaitGroup
	var src record64
	b.ResetTimer()
	for i := 0; i < producers; i++ {
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			p, err := r.NewProducer(id)
			if err != nil {
				panic(err)
			}
			for j := 0; j < per; j++ {
				cl, err := p.Claim(ctx, 1, len(src))
				if err != nil {
					panic(err)
				}
				copy(cl.Bytes(), src[:])
				cl.Commit()
			}
		}(uint64(i + 1))
	}
	var sink record64
	got := 0
	h := func(_ int32, p []byte) { copy(sink[:], p); got++ }
	for got < total {
		if _, err := c.Receive(ctx, h, 256); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msgs/s")
}

func benchChan(b *testing.B, producers int) {
	ch := make(chan record64, 1<<14)
	per := b.N / producers
	total := per * producers
	var wg sync.WaitGroup
	var src record64
	b.ResetTimer()
	for i := 0; i < producers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				ch <- src
			}
		}()
	}
	var sink record64
	for got := 0; got < total; got++ {
		sink = <-ch
	}
	_ = sink
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msgs/s")
}
