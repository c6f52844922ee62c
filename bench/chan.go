//go:build linux

package bench

import (
	"context"
	"errors"
	"time"
)

// Metric names of Go channels in one process, for CompareTo.
const (
	MetricChanRTT        = "chan.rtt_ns"
	MetricChanThroughput = "chan.throughput_msgs"
)

// MsgSize is the size of the small message of every round-trip and
// throughput scenario.
const MsgSize = 64

// chanCap is the capacity of the buffered channel of the throughput peer.
const chanCap = 1024

func init() {
	Register(Scenario{
		Name: "chan", Rank: RankPeer,
		Doc:     "Go channels in one process: 64-byte ping-pong between two goroutines, and 1-to-1 throughput through a buffered channel",
		Metrics: []string{MetricChanRTT, MetricChanThroughput},
		Run:     runChan,
	})
}

// chanPair is a goroutine that echoes 64-byte records from ping to pong.
type chanPair struct {
	ping, pong chan [MsgSize]byte
	msg        [MsgSize]byte
	done       chan struct{}
}

func startChanPair() *chanPair {
	p := &chanPair{ping: make(chan [MsgSize]byte), pong: make(chan [MsgSize]byte), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for m := range p.ping {
			p.pong <- m
		}
	}()
	return p
}

func (p *chanPair) rtt() error {
	p.ping <- p.msg
	p.msg = <-p.pong
	p.msg[0]++
	return nil
}

func (p *chanPair) close() {
	close(p.ping)
	<-p.done
}

// chanThroughput sends 64-byte records through a buffered channel to a
// consumer goroutine for one phase and returns the count and the time until
// the consumer had them all.
func chanThroughput(ctx context.Context, p Phase) (int64, time.Duration, error) {
	ch := make(chan [MsgSize]byte, chanCap)
	got := make(chan int64, 1)
	go func() {
		var n int64
		var sum byte
		for m := range ch {
			sum += m[0]
			n++
		}
		_ = sum
		got <- n
	}()
	var msg [MsgSize]byte
	start := time.Now()
	sent, _, err := p.Loop(ctx, func() error {
		msg[0]++
		ch <- msg
		return nil
	})
	close(ch)
	n := <-got
	el := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if n != sent {
		return 0, 0, errors.New("bench: channel lost messages")
	}
	return n, el, nil
}

func runChan(ctx context.Context, env *Env) ([]Row, error) {
	p := startChanPair()
	l, err := env.MeasureRTT(ctx, p.rtt)
	p.close()
	if err != nil {
		return nil, err
	}
	r, err := env.MeasureRate(ctx, chanThroughput)
	if err != nil {
		return nil, err
	}
	rtt := env.LatencyRow(MetricChanRTT, l, MetricFutexRTT)
	rtt.Note = join("goroutines, unpinned", rtt.Note)
	tp := env.RateRow(MetricChanThroughput, "msgs/s", r, "")
	tp.Note = join("buffered channel of 1024", tp.Note)
	return []Row{rtt, tp}, nil
}
