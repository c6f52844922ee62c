package ring

// Idle strategies: how Consumer.Receive waits when it finds the ring empty.

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/shm"
	"golang.org/x/sys/unix"
)

// SpinForever is IdleStrategy.Spins for a receiver that never sleeps.
const SpinForever = -1

// IdleStrategy says how a blocking receive waits for records: it polls the
// ring up to Spins times, then, when Yields > 0, polls up to Yields more
// times giving up the CPU between two polls, then sleeps on the futex until
// a producer rings (looking at the ring every ParkRecheck meanwhile). It is a small comparable value; String and
// ParseIdleStrategy turn it into text and back.
//
// With Yields > 0 the number of polls before the first yield adapts to
// where the producer runs (see Backoff): Spins is then its upper bound.
type IdleStrategy struct {
	// Spins is how many times Receive polls an empty ring before it
	// yields or sleeps; SpinForever never sleeps (lowest latency, one
	// core busy), 0 sleeps (or yields) at once.
	Spins int
	// Yields is how many times Receive gives up the CPU (sched_yield,
	// now and then runtime.Gosched for producers in this process) and
	// polls again after its spins, before it sleeps. 0 makes a
	// spin-then-park strategy that never yields.
	Yields int
	// NoBurstBackoff turns off the pause that Receive takes when it finds
	// the ring empty right after handing over a batch of at least
	// BurstSize records (see Receive). Only a receiver that takes
	// batches (Receive with a limit of 0 or at least BurstSize) ever
	// pauses so: one that takes a record at a time, as the exchange's
	// mailboxes do, is unaffected by it.
	NoBurstBackoff bool
}

// Idle strategies.
var (
	// Spin polls until a record comes: the lowest latency when the
	// producer runs on another CPU, and one core busy for as long as
	// the receiver waits. Two spinning processes on one CPU wait for the
	// scheduler to preempt them: use Backoff there.
	Spin = IdleStrategy{Spins: SpinForever}
	// Park sleeps on the futex at once: no CPU while idle, a system call
	// per wake-up.
	Park = IdleStrategy{Spins: 0}
	// Backoff spins, then yields, then parks, with a spin budget that
	// adapts to where the producer runs: the strategy for a receiver
	// that cannot know its placement, and the one meant as the default.
	// A receiver whose producer runs on another CPU spins (up to 2000
	// polls, about 170 µs), as SpinThenPark(2000) does; one that finds
	// the record only after yielding the CPU to another thread, because
	// the producer shares its CPU, stops spinning and yields at once, so
	// that a round trip between two processes on one CPU costs a pair of
	// context switches rather than two spin budgets. It parks after 64
	// yields. See SpinYieldPark.
	Backoff = SpinYieldPark(2000, 64)
)

// SpinThenPark polls n times before sleeping, never yielding.
func SpinThenPark(n int) IdleStrategy { return IdleStrategy{Spins: n} }

// SpinYieldPark polls up to spins times, then yields the CPU and polls up to
// yields times, then sleeps on the futex. The number of polls before the
// first yield (the spin budget, spins at first) adapts: a wait that ended
// after a yield that let another thread run on this CPU (the yield took
// more than twice as long as one that ran nobody) sets it to 0, since the
// producer then likely shares this CPU and spinning only delays it; a wait
// that ended after yields that ran nobody doubles it, up to spins. A wait
// that ended while spinning or in the futex leaves it. With yields <= 0 it
// is SpinThenPark(spins). (The rules, and why: see learn in idle.go.)
func SpinYieldPark(spins, yields int) IdleStrategy {
	return IdleStrategy{Spins: spins, Yields: max(yields, 0)}
}

// adaptive reports whether the spin budget adapts.
func (s IdleStrategy) adaptive() bool { return s.Yields > 0 && s.Spins > 0 }

// String returns the strategy in the form ParseIdleStrategy reads: "spin",
// "park", "spinpark:N", "backoff:N:M" (N spins, M yields), with
// ",noburstbackoff" appended when NoBurstBackoff is set.
func (s IdleStrategy) String() string {
	var b string
	switch {
	case s.Spins < 0:
		b = "spin"
	case s.Yields > 0:
		b = "backoff:" + strconv.Itoa(s.Spins) + ":" + strconv.Itoa(s.Yields)
	case s.Spins == 0:
		b = "park"
	default:
		b = "spinpark:" + strconv.Itoa(s.Spins)
	}
	if s.NoBurstBackoff {
		b += ",noburstbackoff"
	}
	return b
}

// ErrBadIdleStrategy means ParseIdleStrategy could not read its text.
var ErrBadIdleStrategy = errors.New("ring: bad idle strategy")

// ParseIdleStrategy reads the text String writes; "backoff" alone is
// Backoff. Spin counts above a billion are refused.
func ParseIdleStrategy(text string) (IdleStrategy, error) {
	base, opt, _ := strings.Cut(text, ",")
	var s IdleStrategy
	switch opt {
	case "":
	case "noburstbackoff":
		s.NoBurstBackoff = true
	default:
		return IdleStrategy{}, fmt.Errorf("%w: %q: unknown option %q", ErrBadIdleStrategy, text, opt)
	}
	name, nums, _ := strings.Cut(base, ":")
	var n []int
	if nums != "" {
		for _, f := range strings.Split(nums, ":") {
			v, err := strconv.Atoi(f)
			if err != nil || v < 0 || v > 1e9 {
				return IdleStrategy{}, fmt.Errorf("%w: %q: bad count %q", ErrBadIdleStrategy, text, f)
			}
			n = append(n, v)
		}
	}
	switch {
	case name == "spin" && len(n) == 0:
		s.Spins = SpinForever
	case name == "park" && len(n) == 0:
	case name == "spinpark" && len(n) == 1:
		s.Spins = n[0]
	case name == "backoff" && len(n) == 0:
		s.Spins, s.Yields = Backoff.Spins, Backoff.Yields
	case name == "backoff" && len(n) == 2 && n[1] > 0:
		s.Spins, s.Yields = n[0], n[1]
	default:
		return IdleStrategy{}, fmt.Errorf("%w: %q", ErrBadIdleStrategy, text)
	}
	return s, nil
}

// ParkRecheck is the longest a Receive sleeps on the futex before it looks
// at the ring again on its own: an idle receiver wakes ParkRecheck apart
// (10 times a second, a few microseconds of CPU each), never sleeps
// unbounded, and then sleeps again without spinning.
//
// Why: a producer wakes a sleeping consumer in two steps (wakeConsumer):
// it clears recvWaiting, then rings the doorbell. Killed between the two,
// it leaves the flag clear and the consumer asleep, and the producers
// after it, seeing the flag clear, commit without ringing. Without a bound
// the mailbox would be wedged for ever; with it, such a record is read at
// most ParkRecheck late, and the consumer's next sleep raises the flag
// again, so later producers ring as before. (A producer cannot tell a
// flag cleared by a dead peer from one cleared by a live peer about to
// ring, so the bound is on the sleeping side, where it costs nothing on
// the round trip: a wake-up by a ring is a wake-up as before.)
const ParkRecheck = 100 * time.Millisecond

// parkTimeout is how long a Receive that found the ring empty sleeps
// before it looks again unrung. drained says no claim is outstanding;
// otherwise a record is in flight: its producer will ring when it commits,
// but a dead one never will, so the consumer looks again soon (the
// claim's recovery, see recover.go).
func (c *Consumer) parkTimeout(drained bool) time.Duration {
	if drained {
		return ParkRecheck
	}
	return min(max(time.Since(c.stuckSince)/2, c.r.opts.StuckAfter), 20*time.Millisecond)
}

// Burst backoff: a consumer that has just drained a batch of BurstSize
// records or more is keeping pace with a stream. Finding the ring empty, it
// pauses (burstRelaxes spin-wait hints, a few microseconds) before polling
// again, so that the producers write a batch without the consumer reading
// the very cache line they are writing; polling that line after every
// record made the producers' commits stall and cut throughput by half or
// more. A consumer that reads one record at a time (a request-response
// mailbox) never pauses, and the pause is taken once per Receive.
const (
	BurstSize    = 8
	burstRelaxes = 128 // cpuRelax calls: several microseconds
)

// cpuRelax backs off inside a spin-wait loop: relaxPauses spin-wait hints
// (about 85 ns on the AMD machines measured, more on Intel's), long enough
// that a polling consumer leaves the line a producer writes alone, short
// enough to see a record soon after its commit.
func cpuRelax() {
	for range relaxPauses {
		shm.SpinPause()
	}
}

const relaxPauses = 4

// waitState is where one Receive stands in its idle strategy.
type waitState struct {
	yields    int  // yields since the last spin phase
	shared    bool // a yield (or Gosched) of this wait let another thread run
	oneP      bool // see Consumer.oneP, valid when onePKnown
	onePKnown bool
	gosched   time.Time // when the wait last let its P go (see goschedDue); zero before the first look
}

// spinBudget is how many polls the current spin phase makes.
func (c *Consumer) spinBudget() int {
	if c.idle.adaptive() {
		return c.spins
	}
	return c.idle.Spins
}

// Adapting the spin budget. The question is whether the producer that will
// write the next record runs on this CPU: then the record cannot come while
// this thread spins (the producer is not running), and every poll before the
// first yield is lost. A yield answers it: one that lets another thread run
// on this CPU takes at least two context switches, several times a yield
// that runs nobody. After a wait that ended in its yield phase,
//
//   - some yield let another thread run: the producer shares this CPU (or a
//     busy machine does; yielding is the polite thing there too), so the
//     next waits yield at once (budget 0);
//   - every yield ran nobody: the record came from another CPU, later than
//     the spins, and spinning longer would have seen it sooner, so the
//     budget doubles (from spinRegrow when it was 0), up to Spins.
//
// A wait that ended while spinning had spins enough, and one that ended in
// the futex says nothing about placement: both leave the budget alone. (A
// record found while spinning on a shared CPU came in while this thread was
// preempted; growing the budget then would make the next waits spin in
// vain.) A long spin phase yields every 256 polls (spinPause), and a yield
// there that ran another thread counts too. With GOMAXPROCS 1, a
// runtime.Gosched that ran another goroutine counts as a yield that ran
// another thread: a producer goroutine of this process then shares this
// CPU too. Both placements converge in a few round trips, and a wrong guess
// (a noisy neighbour's time slice taken for the producer) costs a few waits.
const spinRegrow = 16 // budget after 0, when spinning pays again

// learn adapts the spin budget after a wait that found a record. parked
// says the wait slept on the futex since its last spin phase.
func (c *Consumer) learn(w *waitState, parked bool) {
	switch {
	case !c.idle.adaptive() || parked:
	case w.shared:
		c.spins = 0
	case w.yields > 0:
		c.spins = min(c.idle.Spins, max(2*c.spins, spinRegrow))
	}
}

// yield gives up the CPU once and records in w whether another thread ran
// meanwhile (it took more than twice, and 500 ns more than, a yield that
// ran nobody). Mostly it calls sched_yield, which lets a thread of another
// process (or of this one) run on this CPU. Now and then it calls
// runtime.Gosched instead, which lets a goroutine of this process run on
// this thread's P: a producer goroutine needs it when every P is taken,
// as with GOMAXPROCS 1 (a goroutine of the agent runtime that answers a
// request, say). With GOMAXPROCS 1 that is the first yield and every
// fourth after it; with more Ps, once per goschedEvery of waiting
// (goschedDue), because a Gosched there wakes another thread of the
// runtime to look for work, which the next sched_yield then runs (the
// goroutine kept yielding to its own runtime, and a ping-pong between two
// goroutines of one process looked like one CPU shared). A goroutine locked to its thread pays a
// hand-off of the thread for each Gosched (15 to 25 µs measured): a
// consumer whose Gosched never took less than 8 times an unlocked one's
// is treated as if it had more Ps.
func (c *Consumer) yield(w *waitState) {
	var gosched bool
	if c.oneP(w) {
		gosched = w.yields&3 == 0
	} else {
		gosched = c.goschedDue(w)
	}
	w.yields++
	if gosched {
		c.gosched(w)
	} else {
		c.schedYield(w)
	}
}

// spinPause is what a spin phase does every 256 polls: with GOMAXPROCS 1,
// a Gosched (timed, see yield, for an adaptive strategy); with more Ps, a
// Gosched once per goschedEvery (goschedDue), so that a spinning goroutine
// does not keep its P from the others for long; otherwise an adaptive
// strategy yields as in its yield phase, and the others go on polling.
func (c *Consumer) spinPause(w *waitState) {
	switch {
	case c.oneP(w):
		if c.idle.adaptive() {
			c.gosched(w)
		} else {
			runtime.Gosched()
		}
	case c.goschedDue(w):
		runtime.Gosched()
	case c.idle.adaptive():
		c.schedYield(w)
	}
}

// schedYield calls sched_yield and records in w whether another thread ran
// meanwhile (see yield).
func (c *Consumer) schedYield(w *waitState) {
	t0 := time.Now()
	schedYield()
	d := time.Since(t0)
	w.shared = w.shared || ranOther(d, quickYield(d))
}

// gosched calls runtime.Gosched and, when GOMAXPROCS is 1, records in w
// whether another goroutine ran meanwhile (see yield): every goroutine of
// this process then shares this thread's P, and a producer goroutine that
// ran during the Gosched is one that spinning kept waiting. With more Ps, a
// Gosched that takes long says nothing of the kind (the scheduler may move
// the goroutine to another P).
func (c *Consumer) gosched(w *waitState) {
	t0 := time.Now()
	runtime.Gosched()
	d := time.Since(t0)
	if c.goschedMin == 0 || d < c.goschedMin {
		c.goschedMin = d
	}
	if c.oneP(w) {
		w.shared = w.shared || ranOther(d, quickGosched(d))
	}
}

// goschedEvery is how long a wait polls, with GOMAXPROCS above 1, before
// it lets its P go with a runtime.Gosched (and then again after as long).
//
// Why not more often: a Gosched while a P is idle wakes a thread of the
// runtime to look for work (runtime.wakep: a futex wake-up, and a thread
// that searches for microseconds, on the CPU the peer process runs on),
// even when nothing waits. The old rule (every eighth yield) paid that in
// every short wait of a pipelined stream of actions: it was most of the
// client's futex and scheduler time (perf), and the client's CPU per
// action went from 597-1021 ns to 545-653 ns without it (2 vCPUs).
//
// Why at all: goroutines of this process may wait for a P, and timers
// (time.Sleep, context deadlines, time.AfterFunc) and the GC's workers run
// only when a P enters the scheduler. With every P held by a spinning
// receiver, nothing else would let them run until the runtime preempts the
// spinners (10 ms and more): a 200 µs sleep woke 18-21 ms late in a review
// of a rule that looked only at the runtime's count of runnable goroutines
// (which counts neither timers nor the GC). Once per goschedEvery bounds
// that delay, and costs a wait at most one wake-up of a thread per 50 µs.
const goschedEvery = 50 * time.Microsecond

// goschedDue reports whether the wait w has polled goschedEvery since it
// last let its P go (or since its first look, the first time), and if so
// starts the next period.
func (c *Consumer) goschedDue(w *waitState) bool {
	now := time.Now()
	if w.gosched.IsZero() {
		w.gosched = now
		return false
	}
	if now.Sub(w.gosched) < goschedEvery {
		return false
	}
	w.gosched = now
	goschedHook()
	return true
}

// goschedHook is called for every Gosched that goschedDue allows: a test
// counts them (export_test.go).
var goschedHook = func() {}

// oneP reports whether every goroutine of this process shares this
// consumer's P: GOMAXPROCS is 1 and the consumer's goroutine is not locked
// to its thread (as far as its Goscheds tell). It asks once per wait.
func (c *Consumer) oneP(w *waitState) bool {
	if !w.onePKnown {
		locked := c.goschedMin > 0 && c.goschedMin > 8*quickGosched(c.goschedMin)
		w.oneP, w.onePKnown = runtime.GOMAXPROCS(0) == 1 && !locked, true
	}
	return w.oneP
}

// ranOther tells from how long a yield took (d) whether another thread ran
// meanwhile, given how long one that ran nobody takes (q).
func ranOther(d, q time.Duration) bool {
	return d > 2*q && d > q+500*time.Nanosecond
}

// Durations of a sched_yield and of a runtime.Gosched that ran nobody
// (process-wide minima, nanoseconds); they start from a calibration and
// only go down.
var (
	quickYieldNs, quickGoschedNs atomic.Int64
	quickYieldOnce, goschedOnce  sync.Once
)

// quickYield returns the duration of a sched_yield that runs nobody,
// after counting d, a yield just timed, in.
func quickYield(d time.Duration) time.Duration {
	quickYieldOnce.Do(calibrateYield)
	return lower(&quickYieldNs, d)
}

// quickGosched returns the duration of a runtime.Gosched that runs no
// other goroutine on a thread not locked to its goroutine, after counting
// d, a Gosched just timed, in.
func quickGosched(d time.Duration) time.Duration {
	goschedOnce.Do(calibrateGosched)
	return lower(&quickGoschedNs, d)
}

const maxQuickGosched = time.Microsecond

// lower stores min(*v, d) in v and returns it.
func lower(v *atomic.Int64, d time.Duration) time.Duration {
	for {
		q := v.Load()
		if int64(d) >= q {
			return time.Duration(q)
		}
		if v.CompareAndSwap(q, int64(d)) {
			return d
		}
	}
}

// calibrateYield times yields that provably ran no other thread (the
// thread's count of context switches did not move), so that a process
// whose every later yield runs its peer still knows what a yield alone
// costs. When every try ran another thread (a peer that shares this CPU
// and never sleeps), it estimates the cost as 3 times that of a trivial
// system call, the ratio measured on the machines at hand (650 ns against
// 220 ns on an AMD EPYC VM), or the shortest yield it saw if that is less.
// Later yields only lower the figure.
func calibrateYield() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best, alone, trivial := int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64)
	for range 16 {
		t0 := time.Now()
		unix.Getppid()
		trivial = min(trivial, int64(time.Since(t0)))
		before, ok := threadSwitches()
		if !ok {
			break
		}
		t0 = time.Now()
		schedYield()
		d := int64(time.Since(t0))
		after, ok := threadSwitches()
		if !ok {
			break
		}
		best = min(best, d)
		if after == before {
			alone = min(alone, d)
		}
	}
	if alone == math.MaxInt64 {
		alone = min(best, 3*trivial)
	}
	quickYieldNs.Store(alone)
}

// calibrateGosched times Gosched on a goroutine of its own (the caller's
// may be locked to its thread), keeping the shortest of a few but at most
// maxQuickGosched: with GOMAXPROCS 1 and another goroutine spinning, every
// try runs it. (A Gosched that runs nobody takes 80 to 400 ns measured.)
func calibrateGosched() {
	done := make(chan int64)
	go func() {
		best := int64(math.MaxInt64)
		for range 16 {
			t0 := time.Now()
			runtime.Gosched()
			best = min(best, int64(time.Since(t0)))
		}
		done <- best
	}()
	quickGoschedNs.Store(min(<-done, int64(maxQuickGosched)))
}
