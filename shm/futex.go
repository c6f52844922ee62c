package shm

import (
	"context"
	"math"
	"runtime"
	"sync/atomic"
	"time"
)

// Doorbell is a 32-bit sequence word in shared memory that waiters sleep on
// and ringers bump. A waiter reads the sequence (Seq), re-checks its own
// condition, then calls Wait with the sequence it read: any Ring after the
// read makes Wait return, so no wake-up is lost between the check and the
// sleep.
//
// Every change of the word means only "look again": cancellation of a
// waiter's context rings the doorbell too, which may wake other waiters of the
// same word spuriously. They re-check and sleep again.
type Doorbell struct {
	seq *uint32
}

// NewDoorbell returns a doorbell on the word at addr.
func NewDoorbell(addr *uint32) Doorbell { return Doorbell{seq: addr} }

// Seq returns the current sequence.
func (d Doorbell) Seq() uint32 { return atomic.LoadUint32(d.seq) }

// Ring bumps the sequence and wakes at most n waiters.
func (d Doorbell) Ring(n int) {
	atomic.AddUint32(d.seq, 1)
	Wake(d.seq, n)
}

// Wait sleeps until the sequence differs from seen, ctx is done, or timeout
// passes (no timeout when timeout <= 0). It returns nil when the sequence
// moved (the caller re-checks its condition), ctx's error when ctx is done
// (context.DeadlineExceeded once its deadline has passed), or ErrTimedOut.
func (d Doorbell) Wait(ctx context.Context, seen uint32, timeout time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var until time.Time
	if timeout > 0 {
		until = time.Now().Add(timeout)
	}
	if ctx.Done() != nil {
		// Cancellation bumps the word, so a cancel that lands between
		// our check of the word and the sleep still wakes us.
		var r CancelRinger
		defer r.Disarm()
		return r.wait(ctx, d, seen, until)
	}
	return d.wait(ctx, seen, until)
}

func (d Doorbell) wait(ctx context.Context, seen uint32, until time.Time) error {
	dl, hasDeadline := ctx.Deadline()
	for {
		if atomic.LoadUint32(d.seq) != seen {
			return nil
		}
		wait := time.Duration(-1)
		now := time.Now()
		if !until.IsZero() {
			wait = until.Sub(now)
			if wait <= 0 {
				return ErrTimedOut
			}
		}
		if hasDeadline {
			left := dl.Sub(now)
			if left <= 0 {
				return context.DeadlineExceeded
			}
			if wait < 0 || left < wait {
				wait = left
			}
		}
		err := Wait(d.seq, seen, wait)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil && err != ErrTimedOut {
			return err
		}
	}
}

// CancelRinger wakes a sleeper on a doorbell when the sleeper's context is
// done. It is for a waiter that sleeps many times with the same context (a
// receive loop): it registers with the context (context.AfterFunc, which
// allocates) only when the context differs from the one of the previous
// sleep, so such a loop sleeps without allocating.
//
// It rings the doorbell only while its owner sleeps in [CancelRinger.Wait],
// and Wait does not return while a ring is under way: the doorbell's word
// may be unmapped as soon as Wait returns, even with the registration
// still in place. A CancelRinger is not safe for concurrent use; its zero
// value is ready. Disarm drops the registration.
type CancelRinger struct {
	done  <-chan struct{} // Done of the registered context; nil when none
	stop  func() bool
	state atomic.Int32 // ringerIdle, ringerSleeping or ringerRinging
}

const (
	ringerIdle     = iota // not in Wait: a cancel rings nothing
	ringerSleeping        // in Wait: a cancel rings
	ringerRinging         // a cancel is ringing: Wait waits for it to end
)

// Wait is [Doorbell.Wait] for the owner of r: it sleeps until the sequence
// of d differs from seen, ctx is done, or timeout passes (none when <= 0).
func (r *CancelRinger) Wait(ctx context.Context, d Doorbell, seen uint32, timeout time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var until time.Time
	if timeout > 0 {
		until = time.Now().Add(timeout)
	}
	return r.wait(ctx, d, seen, until)
}

func (r *CancelRinger) wait(ctx context.Context, d Doorbell, seen uint32, until time.Time) error {
	r.arm(ctx, d)
	// Dekker with the ringer: publish the sleep, then look at ctx (in
	// d.wait); a cancel sets ctx's error, then looks at the state.
	r.state.Store(ringerSleeping)
	defer r.settle()
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.wait(ctx, seen, until)
}

// settle ends a sleep: it waits for a ring under way to finish touching the
// doorbell's word.
func (r *CancelRinger) settle() {
	for !r.state.CompareAndSwap(ringerSleeping, ringerIdle) {
		if r.state.Load() == ringerIdle {
			return
		}
		runtime.Gosched()
	}
}

// arm registers with ctx, unless the registration in place is for a
// context with the same Done channel (a context and its WithValue
// children).
func (r *CancelRinger) arm(ctx context.Context, d Doorbell) {
	done := ctx.Done()
	if done == r.done {
		return
	}
	r.Disarm()
	if done == nil {
		return
	}
	r.done = done
	r.stop = context.AfterFunc(ctx, func() {
		if r.state.CompareAndSwap(ringerSleeping, ringerRinging) {
			ringGuarded(d)
			r.state.Store(ringerIdle)
		}
	})
}

// ringGuarded rings d for a cancel, from a goroutine of the context
// package, under the fault guard that every other path touching shared
// memory runs under (debug.SetPanicOnFault): the doorbell's word may sit in
// a segment that another process truncated under the sleeper, and a fault
// there, unguarded, would kill the process. Such a fault is recovered and
// the ring dropped: the sleeper's own access faults in its guard, or its
// timeout ends its sleep. Any other panic goes on.
func ringGuarded(d Doorbell) {
	TolerateFault(func() { d.Ring(math.MaxInt32) })
}

// Disarm drops the registration with the last context. Call it when the
// waiter is done with the context (a consumer's Close); it is not needed
// for memory safety.
func (r *CancelRinger) Disarm() {
	if r.done == nil {
		return
	}
	r.stop()
	r.done, r.stop = nil, nil
}
