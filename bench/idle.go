//go:build linux

package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
)

// MetricIdleCPU is the metric of the idle scenario.
const MetricIdleCPU = "idle.cpu_percent"

// Idle scenario sizes.
const (
	idleMailboxes      = 1000
	idleQuickMailboxes = 50
	idleMailboxBytes   = 16 << 10
)

func init() {
	Register(Scenario{
		Name: "idle", Rank: RankShmex + 90,
		Doc:     "CPU used by a process whose 1,000 agent mailboxes each have a receiver blocked in Recv (futex mode), over a quiet window; then every receiver is pinged to show that it wakes",
		Metrics: []string{MetricIdleCPU},
		Run:     runIdle,
	})
	RegisterChild("exchange-idle", childExchangeIdle)
}

// cpuTime returns the user and system CPU time this process has used.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// childExchangeIdle joins exchange args[1] under root args[0], registers
// args[2] agents, and blocks one receiver in Recv on each (receivers sleep
// on the futex), answering pings. It tells "ready" with the agents' ids
// (space-separated); on "measure <duration>" it tells "cpu <percent>", the
// CPU it used over that window as a percentage of one CPU; "exit" ends it.
func childExchangeIdle(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want 3 arguments, got %d", len(args))
	}
	n, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithIdle(ring.Park), exchange.WithMailboxBytes(idleMailboxBytes))
	if err != nil {
		return err
	}
	defer x.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Idle"})
		if err != nil {
			return err
		}
		mb, err := x.Mailbox(ctx, aid)
		if err != nil {
			return err
		}
		ids[i] = aid.UUID.String()
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m exchange.Message
			for {
				if err := mb.Recv(ctx, &m); err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				if m.Kind == exchange.KindPingRequest {
					m.SetResponse(&m, nil)
					if err := x.Send(ctx, &m); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	if err := Tell("ready %s", strings.Join(ids, " ")); err != nil {
		return err
	}
	for {
		l, err := Listen()
		if err != nil || l == "exit" {
			return nil
		}
		select {
		case err := <-errs:
			return err
		default:
		}
		if d, ok := strings.CutPrefix(l, "measure "); ok {
			window, err := time.ParseDuration(d)
			if err != nil {
				return err
			}
			c0, err := cpuTime()
			if err != nil {
				return err
			}
			t0 := time.Now()
			time.Sleep(window)
			c1, err := cpuTime()
			if err != nil {
				return err
			}
			pct := 100 * float64(c1-c0) / float64(time.Since(t0))
			if err := Tell("cpu %g", pct); err != nil {
				return err
			}
		}
	}
}

func runIdle(ctx context.Context, env *Env) ([]Row, error) {
	root, err := env.Dir()
	if err != nil {
		return nil, err
	}
	n := idleMailboxes
	if env.Quick {
		n = idleQuickMailboxes
	}
	const name = "idle"
	x, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithIdle(ring.Park), exchange.WithMailboxBytes(idleMailboxBytes))
	if err != nil {
		return nil, err
	}
	defer x.Close()
	child, err := env.StartChild(ctx, "exchange-idle", root, name, strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	defer func() { child.Send("exit"); child.Wait(); child.Close() }()
	line, err := child.Expect(ctx, "ready")
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(line)
	if len(fields) != n {
		return nil, fmt.Errorf("bench: idle child reported %d mailboxes, want %d", len(fields), n)
	}
	// Let the receivers settle into their futex waits, then measure.
	time.Sleep(100 * time.Millisecond)
	window := max(env.Duration*5, time.Second)
	if env.Quick {
		window = 100 * time.Millisecond
	}
	var cpus []float64
	for range env.Reps {
		if err := child.Send("measure " + window.String()); err != nil {
			return nil, err
		}
		l, err := child.Expect(ctx, "cpu")
		if err != nil {
			return nil, err
		}
		pct, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, "cpu")), 64)
		if err != nil {
			return nil, fmt.Errorf("bench: idle child said %q", l)
		}
		cpus = append(cpus, pct)
	}
	// Every receiver must wake: ping them all and wait for every answer.
	cid, err := x.RegisterClient(ctx)
	if err != nil {
		return nil, err
	}
	mb, err := x.Mailbox(ctx, cid)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, env.ChildTimeout)
	defer cancel()
	for _, f := range fields {
		u, err := exchange.ParseUUID(f)
		if err != nil {
			return nil, err
		}
		if err := x.Send(pctx, exchange.NewPingRequest(cid, exchange.EntityID{UUID: u, Role: exchange.RoleAgent})); err != nil {
			return nil, err
		}
	}
	var m exchange.Message
	for range n {
		if err := mb.Recv(pctx, &m); err != nil {
			return nil, fmt.Errorf("bench: waiting for the idle receivers' answers: %w", err)
		}
		if m.Kind != exchange.KindPingResponse {
			return nil, fmt.Errorf("bench: unexpected message %v", &m)
		}
	}
	return []Row{{
		Metric: MetricIdleCPU, Value: median(cpus), Unit: "%",
		Note: env.note(fmt.Sprintf("%d blocked receivers in one process, %v windows; all %d woke to a ping afterwards", n, window, n), len(cpus)),
	}}, nil
}
