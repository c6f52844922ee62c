// Package cpuclock times benchmarks by the CPU time of their thread, in
// short windows, so that a difference of a few percent shows on a loaded
// machine.
//
// A benchmark's wall-clock time on a machine shared with other work counts
// the time the process waited for a CPU, and its CPU time counts the cache
// misses that other processes' time slices leave behind: on two CPUs with a
// load of 10, either varies by 20% from one run to the next. A window of a
// few thousand operations mostly runs within one time slice: the shortest
// window's CPU time per operation is what the code costs undisturbed, and
// it varies by a few percent between runs.
package cpuclock

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Thread returns the CPU time the calling OS thread has used. Two readings
// compare only when the goroutine stayed on its thread in between
// (runtime.LockOSThread).
func Thread() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Sampler times windows of a fixed number of operations by the CPU time of
// the benchmark's thread, to which Start locks the calling goroutine. All
// the work of an operation must be done by that goroutine.
type Sampler struct {
	every   int           // operations per window
	n       int           // operations in the current window
	start   time.Duration // CPU time at its start
	best    time.Duration // CPU time of the shortest window
	total   time.Duration // of every window
	windows int
}

// Start locks the calling goroutine to its thread and starts the first
// window of every operations.
func Start(every int) *Sampler {
	runtime.LockOSThread()
	return &Sampler{every: every, start: Thread()}
}

// Tick counts an operation, and ends the window at every-th.
func (s *Sampler) Tick() {
	s.n++
	if s.n < s.every {
		return
	}
	now := Thread()
	d := now - s.start
	if s.windows == 0 || d < s.best {
		s.best = d
	}
	s.total += d
	s.windows++
	s.n, s.start = 0, now
}

// Report unlocks the goroutine from its thread and reports, per
// operation, the CPU time of the shortest window (min-cpu-ns/op) and of
// all of them (cpu-ns/op).
func (s *Sampler) Report(b *testing.B) {
	runtime.UnlockOSThread()
	if s.windows == 0 {
		return
	}
	b.ReportMetric(float64(s.best.Nanoseconds())/float64(s.every), "min-cpu-ns/op")
	b.ReportMetric(float64(s.total.Nanoseconds())/float64(s.windows*s.every), "cpu-ns/op")
}
