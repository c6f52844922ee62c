//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Many-to-one throughput across processes.
//
// A fan-in scenario starts producer children that, on each "go" line, send
// as fast as they can until a "stop" line, then report "sent <n>"; "exit"
// ends them. The parent consumes for the phase, stops the producers, keeps
// consuming while they report (one may be blocked on a full mailbox until it
// is drained), then until every reported message has arrived.

// produceLoop is the child side of a fan-in scenario: it runs send in
// batches of 64 between each "go" and the next "stop", and reports how many
// it sent. send must bound its own waits by ctx.
func produceLoop(send func(ctx context.Context) error) error {
	return produceLoopN(1, send)
}

// produceLoopN is produceLoop with workers goroutines calling send at once.
func produceLoopN(workers int, send func(ctx context.Context) error) error {
	lines := make(chan string, 4)
	var stops atomic.Int64 // one "stop" follows each "go"; count them
	go func() {
		for {
			l, err := Listen()
			if err != nil {
				close(lines)
				return
			}
			if l == "stop" {
				stops.Add(1)
			}
			lines <- l
		}
	}()
	if err := Ready(""); err != nil {
		return err
	}
	var gos int64
	for l := range lines {
		switch l {
		case "exit":
			return nil
		case "go":
			gos++
			ctx, cancel := context.WithTimeout(context.Background(), ChildTimeout())
			counts := make([]int64, workers)
			errs := make([]error, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for stops.Load() < gos {
						for range 64 {
							if err := send(ctx); err != nil {
								errs[w] = err
								return
							}
						}
						counts[w] += 64
					}
				}()
			}
			wg.Wait()
			cancel()
			var n int64
			for w := range workers {
				if errs[w] != nil {
					return errs[w]
				}
				n += counts[w]
			}
			if err := Tell("sent %d", n); err != nil {
				return err
			}
		}
	}
	return nil
}

// fanInPhase runs one phase of a fan-in measure with the ready producers
// kids: it consumes until the phase is over (at least Count messages, or for
// Duration), then stops the producers and consumes what they sent. recv consumes what is there (block false: without waiting) or waits
// for at least one message until ctx is done (block true), and returns how
// many messages it consumed.
func fanInPhase(ctx context.Context, env *Env, kids []*Child, p Phase, recv func(ctx context.Context, block bool) (int64, error)) (int64, time.Duration, error) {
	var got int64
	start := time.Now()
	for _, k := range kids {
		if err := k.Send("go"); err != nil {
			return 0, 0, err
		}
	}
	// The receives fail once no message has arrived for ChildTimeout,
	// however long the phase.
	rctx := newWatchdog(ctx, env.ChildTimeout)
	defer rctx.Stop()
	// The phase lasts until Count messages have arrived, or for Duration.
	for p.Count > 0 && got < p.Count || p.Count <= 0 && time.Since(start) < p.Duration {
		n, err := recv(rctx, true)
		if err != nil {
			return 0, 0, err
		}
		got += n
		rctx.Progress()
	}
	for _, k := range kids {
		if err := k.Send("stop"); err != nil {
			return 0, 0, err
		}
	}
	type report struct {
		n   int64
		err error
	}
	reports := make(chan report, len(kids))
	for _, k := range kids {
		go func(k *Child) {
			l, err := k.Expect(ctx, "sent")
			if err != nil {
				reports <- report{err: err}
				return
			}
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(l, "sent")), 10, 64)
			if err != nil {
				err = fmt.Errorf("bench: producer said %q", l)
			}
			reports <- report{n, err}
		}(k)
	}
	var sent int64
	for pending := len(kids); pending > 0; {
		select {
		case rep := <-reports:
			if rep.err != nil {
				return 0, 0, rep.err
			}
			sent += rep.n
			pending--
			rctx.Progress()
		default:
			n, err := recv(rctx, false)
			if err != nil {
				return 0, 0, err
			}
			if n > 0 {
				got += n
				rctx.Progress()
			}
		}
	}
	for got < sent {
		n, err := recv(rctx, true)
		if err != nil {
			return 0, 0, err
		}
		got += n
		rctx.Progress()
	}
	if got != sent {
		return 0, 0, errors.New("bench: more messages delivered than were sent")
	}
	return got, time.Since(start), nil
}

// startProducers starts n children in role with args and waits until each
// is ready. stop ends them.
func startProducers(ctx context.Context, env *Env, n int, role string, args ...string) (kids []*Child, stop func(), err error) {
	stop = func() {
		for _, k := range kids { // all at once: they exit in parallel
			k.Send("exit")
		}
		for _, k := range kids {
			k.Wait()
			k.Close()
		}
	}
	for range n {
		k, err := env.StartChild(ctx, role, args...)
		if err != nil {
			stop()
			return nil, nil, err
		}
		kids = append(kids, k)
	}
	for _, k := range kids {
		if _, err := k.Expect(ctx, "ready"); err != nil {
			stop()
			return nil, nil, err
		}
	}
	return kids, stop, nil
}
