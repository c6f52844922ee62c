//go:build linux

package ring_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/ring"
	"golang.org/x/sys/unix"
)

// yieldOnly never spins and yields for ever (in practice): every wait of a
// Receive runs in the yield phase, which these tests exercise.
var yieldOnly = ring.SpinYieldPark(0, 1<<30)

// Receive in the yield phase honours its context, Interrupt and Close like
// the other phases.
func TestYieldPhaseEnds(t *testing.T) {
	for _, idle := range []ring.IdleStrategy{yieldOnly, ring.Backoff} {
		r := newRing(t, ring.Config{Capacity: 4096}, ring.Options{})
		c, _ := r.NewConsumer(1, idle)
		if _, err := c.Receive(ctxT(t, 20*time.Millisecond), func(int32, []byte) {}, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%v: deadline: %v", idle, err)
		}
		errc := make(chan error, 1)
		go func() { _, err := c.Receive(ctxT(t, 30*time.Second), func(int32, []byte) {}, 0); errc <- err }()
		c.Interrupt()
		if err := <-errc; !errors.Is(err, ring.ErrInterrupted) {
			t.Fatalf("%v: interrupt: %v", idle, err)
		}
		c.ClearInterrupt()
		go func() { _, err := c.Receive(ctxT(t, 30*time.Second), func(int32, []byte) {}, 0); errc <- err }()
		r.Close()
		if err := <-errc; !errors.Is(err, ring.ErrClosed) {
			t.Fatalf("%v: close: %v", idle, err)
		}
	}
}

// pingPong bounces a record n times between two goroutines over two rings,
// receiving with idle, and returns the spin budgets of both consumers after
// each round trip. Before it starts, each goroutine runs setup (locked to
// its thread when lock is set).
func pingPong(t *testing.T, idle ring.IdleStrategy, n int, lock bool, setup func() error) (a, b []int) {
	t.Helper()
	ra := newRing(t, ring.Config{Capacity: 1 << 14}, ring.Options{})
	rb := newRing(t, ring.Config{Capacity: 1 << 14}, ring.Options{})
	ctx := ctxT(t, 60*time.Second)
	b = make([]int, 0, n)
	errc := make(chan error, 1)
	go func() {
		if lock {
			runtime.LockOSThread() // the thread ends with the goroutine, pinned or not
		}
		errc <- func() error {
			if err := setup(); err != nil {
				return err
			}
			c, _ := ra.NewConsumer(2, idle)
			p, _ := rb.NewProducer(2)
			for range n {
				var werr error
				if _, err := c.Receive(ctx, func(typ int32, m []byte) { werr = p.Write(ctx, typ, m) }, 1); err != nil {
					return err
				}
				if werr != nil {
					return werr
				}
				b = append(b, ring.SpinBudget(c))
			}
			return nil
		}()
	}()
	if lock {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var old unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			t.Fatal(err)
		}
		defer unix.SchedSetaffinity(0, &old)
	}
	if err := setup(); err != nil {
		t.Fatal(err)
	}
	p, _ := ra.NewProducer(1)
	c, _ := rb.NewConsumer(1, idle)
	for i := range n {
		if err := p.Write(ctx, 1, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		got := 0
		for got == 0 {
			k, err := c.Receive(ctx, func(int32, []byte) {}, 1)
			if err != nil {
				t.Fatalf("round trip %d: %v", i, err)
			}
			got = k
		}
		a = append(a, ring.SpinBudget(c))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return a, b
}

// reachesZero reports whether the budget was 0 after one of the last
// round trips.
func reachesZero(budgets []int) bool {
	for _, v := range budgets[len(budgets)/2:] {
		if v == 0 {
			return true
		}
	}
	return false
}

// Two threads pinned to one CPU: each consumer's records come only after a
// yield that ran the other thread, so Backoff stops spinning (budget 0).
// Whatever else runs on that CPU, a yield that runs it also reads as
// shared: the test holds on a busy machine.
func TestBackoffSharedCPU(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Skip("no CPU affinity here:", err)
	}
	cpu := 0
	for !set.IsSet(cpu) {
		cpu++
	}
	pin := func() error {
		var one unix.CPUSet
		one.Set(cpu)
		return unix.SchedSetaffinity(0, &one)
	}
	a, b := pingPong(t, ring.Backoff, 200, true, pin)
	if !reachesZero(a) || !reachesZero(b) {
		t.Errorf("spin budgets on one CPU never reached 0:\n%v\n%v", a, b)
	}
}

// With GOMAXPROCS 1, two goroutines of one process share a P: a producer
// goroutine runs only when the consumer gives the P up, which Backoff learns
// from its Goscheds. Spin, which never does that outside its spin phase's
// Gosched, still gets its records.
func TestBackoffOneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	a, b := pingPong(t, ring.Backoff, 200, false, func() error { return nil })
	if !reachesZero(a) || !reachesZero(b) {
		t.Errorf("spin budgets with GOMAXPROCS 1 never reached 0:\n%v\n%v", a, b)
	}
	pingPong(t, ring.Spin, 20, false, func() error { return nil })
	pingPong(t, yieldOnly, 20, false, func() error { return nil })
}

// TestSpinnersLetTimersRun: with every P held by a receiver that spins on
// an empty ring, the process's timers still fire about on time: a waiting
// receiver lets its P go (runtime.Gosched) once per goschedEvery, so that
// a P enters the scheduler, where timers, context deadlines and runnable
// goroutines get their turn. A rule that let the P go only when the
// runtime counted runnable goroutines (timers are not counted) left a
// 200 µs sleep 18-21 ms late, until the runtime preempted a spinner.
func TestSpinnersLetTimersRun(t *testing.T) {
	for _, idle := range []ring.IdleStrategy{ring.Spin, ring.SpinThenPark(1 << 30), ring.Backoff} {
		t.Run(idle.String(), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
			count := ring.CountGosched()
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range 2 {
				r := newRing(t, ring.Config{Capacity: 1024, MaxRecord: 256}, ring.Options{})
				c, err := r.NewConsumer(1, idle)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { c.Receive(ctx, func(int32, []byte) {}, 1) })
			}
			time.Sleep(5 * time.Millisecond) // the receivers are waiting
			var lates []time.Duration
			for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
				t0 := time.Now()
				time.Sleep(200 * time.Microsecond)
				lates = append(lates, time.Since(t0)-200*time.Microsecond)
			}
			cancel()
			wg.Wait()
			n := count()
			slices.Sort(lates)
			p50 := lates[len(lates)/2]
			t.Logf("%s: %d sleeps, late p50 %v, max %v; %d Goscheds by the time bound", idle, len(lates), p50, lates[len(lates)-1], n)
			if p50 > 5*time.Millisecond {
				t.Errorf("a 200 µs sleep woke %v late (p50) while two receivers spun", p50)
			}
			if idle != ring.Backoff && n == 0 { // Backoff parks soon: its wait may never reach the bound
				t.Errorf("no Gosched in 200 ms of spinning")
			}
		})
	}
}
