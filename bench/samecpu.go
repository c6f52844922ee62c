//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Metric names of the same-CPU scenarios: round trips between two processes
// that share one CPU (an oversubscribed node, a container with one CPU,
// taskset), receivers waiting with the exchange's default idle strategy.
const (
	MetricFutexRTTSameCPU    = "limit.futex_rtt_same_cpu_ns"
	MetricRingRTTSameCPU     = "ring.rtt_same_cpu_ns"
	MetricExchangeRTTSameCPU = "exchange.rtt_same_cpu_ns"
	MetricActionRTTSameCPU   = "action.rtt_same_cpu_ns"
)

func init() {
	Register(Scenario{
		Name: "limit/same_cpu", Rank: RankLimit + 3,
		Doc:     "raw futex ping-pong between two processes pinned to one CPU (GOMAXPROCS 1 each)",
		Metrics: []string{MetricFutexRTTSameCPU},
		Run: func(ctx context.Context, env *Env) ([]Row, error) {
			return sameCPURow(env, MetricFutexRTTSameCPU, MetricFutexRTT, "", func() (Latency, error) {
				p, err := startPair(ctx, env, "limit-futex", "limit-futex-same-cpu")
				if err != nil {
					return Latency{}, err
				}
				l, err := env.MeasureRTT(ctx, p.futexRTT)
				if cerr := p.close(true); err == nil {
					err = cerr
				}
				return l, err
			})
		},
	})
	Register(Scenario{
		Name: "ring/same_cpu", Rank: RankShmex + 2,
		Doc:     "64-byte record round trip over two rings between two processes pinned to one CPU, receivers with the default idle strategy (ring.Backoff)",
		Metrics: []string{MetricRingRTTSameCPU},
		Run: func(ctx context.Context, env *Env) ([]Row, error) {
			return sameCPURow(env, MetricRingRTTSameCPU, MetricFutexRTTSameCPU, "ring.Backoff", func() (Latency, error) {
				rp, err := startRingPair(ctx, env, "default")
				if err != nil {
					return Latency{}, err
				}
				l, err := env.MeasureRTT(ctx, rp.rtt)
				if cerr := rp.close(); err == nil {
					err = cerr
				}
				return l, err
			})
		},
	})
	Register(Scenario{
		Name: "exchange/same_cpu", Rank: RankShmex + 12,
		Doc:     "ActionRequest with 64 bytes of arguments and its ActionResponse through the shared-memory exchange, client and echo agent in two processes pinned to one CPU, default idle strategy",
		Metrics: []string{MetricExchangeRTTSameCPU},
		Targets: []Target{{Metric: MetricExchangeRTTSameCPU, Op: AtMost, Factor: 2, Vs: MetricFutexRTTSameCPU, Issue: 13}},
		Run: func(ctx context.Context, env *Env) ([]Row, error) {
			root, err := env.Dir()
			if err != nil {
				return nil, err
			}
			return sameCPURow(env, MetricExchangeRTTSameCPU, MetricFutexRTTSameCPU, "ring.Backoff", func() (Latency, error) {
				return exchangeRTT(ctx, env, root, "default")
			})
		},
	})
	Register(Scenario{
		Name: "action/same_cpu", Rank: RankShmex + 22,
		Doc:     "no-op action with 64 bytes of arguments through the agent layer, client and agent in two processes pinned to one CPU, default idle strategy",
		Metrics: []string{MetricActionRTTSameCPU},
		Targets: []Target{{Metric: MetricActionRTTSameCPU, Op: AtMost, Factor: 2, Vs: MetricFutexRTTSameCPU, Issue: 13}},
		Run: func(ctx context.Context, env *Env) ([]Row, error) {
			root, err := env.Dir()
			if err != nil {
				return nil, err
			}
			return sameCPURow(env, MetricActionRTTSameCPU, MetricFutexRTTSameCPU, "ring.Backoff", func() (Latency, error) {
				return actionRTT(ctx, env, root, "default")
			})
		},
	})
}

// errNoOneCPU means OnOneCPU cannot pin this process here.
var errNoOneCPU = errors.New("bench: cannot pin the processes to one CPU")

// sameCPURow measures inside OnOneCPU and makes the row, or a skipped row
// when this machine cannot pin.
func sameCPURow(env *Env, metric, compareTo, note string, measure func() (Latency, error)) ([]Row, error) {
	var l Latency
	err := env.OnOneCPU(func() (err error) {
		l, err = measure()
		return err
	})
	if errors.Is(err, errNoOneCPU) {
		return SkipRows(err.Error(), metric), nil
	}
	if err != nil {
		return nil, err
	}
	row := env.LatencyRow(metric, l, compareTo)
	cpu, _ := env.firstCPU()
	// "pinned" (to different CPUs) does not apply to this placement.
	var rest []string
	for _, part := range strings.Split(row.Note, "; ") {
		if part != "pinned" {
			rest = append(rest, part)
		}
	}
	row.Note = join(join(note, fmt.Sprintf("both processes on CPU %d, GOMAXPROCS 1", cpu)), strings.Join(rest, "; "))
	return []Row{row}, nil
}

// firstCPU returns the CPU OnOneCPU pins to: the first this process may run
// on.
func (e *Env) firstCPU() (int, bool) {
	if len(e.cpus) == 0 {
		return -1, false
	}
	return e.cpus[0], true
}

// oneCPUOf returns the CPU of the OnOneCPU in progress, if any.
func (e *Env) oneCPUOf() (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.oneCPU - 1, e.oneCPU > 0
}

// OnOneCPU runs f with this whole process (every thread) pinned to one CPU
// and GOMAXPROCS 1, as `taskset -c N` would start it, and with the children
// that f starts (StartChild) pinned to the same CPU the same way: two
// processes sharing one CPU, the placement of an oversubscribed node. It
// restores the process's CPU sets and GOMAXPROCS afterwards. Inside,
// LockThread does nothing, so measuring goroutines stay unlocked (as a
// user's would). It fails with an error wrapping errNoOneCPU, before
// calling f, when this machine does not let the process pin itself.
func (e *Env) OnOneCPU(f func() error) error {
	cpu, ok := e.firstCPU()
	if !ok {
		return fmt.Errorf("%w: CPU affinity unknown", errNoOneCPU)
	}
	restore, err := pinProcess(cpu)
	if err != nil {
		return fmt.Errorf("%w: %v", errNoOneCPU, err)
	}
	e.mu.Lock()
	e.oneCPU = cpu + 1
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.oneCPU = 0
		e.mu.Unlock()
		restore()
	}()
	return f()
}

// pinProcess pins every thread of this process to cpu and sets GOMAXPROCS
// to 1. The returned function gives each thread back its CPU set (threads
// born meanwhile get the set the process had) and GOMAXPROCS its value.
func pinProcess(cpu int) (restore func(), err error) {
	var one, all unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedGetaffinity(os.Getpid(), &all); err != nil {
		return nil, err
	}
	old := map[int]unix.CPUSet{}
	// A thread created while we pin inherits the set of the thread that
	// created it, pinned or not: go over the threads until no new one
	// shows up.
	for pass := 0; ; pass++ {
		tids, err := threads()
		if err != nil {
			return nil, err
		}
		fresh := 0
		for _, tid := range tids {
			if _, done := old[tid]; done {
				continue
			}
			var s unix.CPUSet
			if unix.SchedGetaffinity(tid, &s) != nil {
				continue // exited meanwhile
			}
			if err := unix.SchedSetaffinity(tid, &one); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue
				}
				setAffinity(old, all)
				return nil, err
			}
			old[tid] = s
			fresh++
		}
		if fresh == 0 || pass == 8 {
			break
		}
	}
	procs := runtime.GOMAXPROCS(1)
	return func() {
		runtime.GOMAXPROCS(procs)
		setAffinity(old, all)
	}, nil
}

// setAffinity gives every thread of this process its CPU set from old, or
// def for a thread not in old.
func setAffinity(old map[int]unix.CPUSet, def unix.CPUSet) {
	tids, _ := threads()
	for _, tid := range tids {
		s, ok := old[tid]
		if !ok {
			s = def
		}
		unix.SchedSetaffinity(tid, &s)
	}
}

// threads lists the thread ids of this process.
func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
