package exchange

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"time"
	"unsafe"

	"github.com/shmex/shmex/shm"
)

// Waiting for an agent to appear. WaitDiscover and WaitActive work over
// any Exchange: over one that can wait for a change of its registry
// ([RegistryWatcher]: the shared-memory exchange, and a wrapper of one
// that has an Unwrap method, such as proxystore's) they look again only
// when the registry changed; over any other they poll with a backoff
// (1 ms, doubling up to pollMax).

// RegistryWatcher is implemented by exchanges that can wait for a change
// of their registry (a registration, a termination, a reopen, a change of
// a mailbox's receiver), so that a program waiting for an agent to appear
// sleeps instead of polling. [SHM] implements it with a futex on the
// registry's change counter, shared by every process of the exchange.
type RegistryWatcher interface {
	// RegistryVersion returns the registry's change counter: a number
	// that changes whenever the registry does.
	RegistryVersion(ctx context.Context) (uint64, error)
	// WaitRegistryChange returns nil once the counter differs from seen
	// (it may also return nil spuriously: the caller looks again), or
	// ctx's error once ctx is done.
	WaitRegistryChange(ctx context.Context, seen uint64) error
}

var _ RegistryWatcher = (*SHM)(nil)

// pollMax bounds the backoff of the polls over an exchange that is not a
// RegistryWatcher.
const pollMax = 50 * time.Millisecond

// WaitDiscover waits until at least one active agent of behavior (with
// allowSubtypes, or one that implements it) is in x, and returns the ids
// that [Exchange.Discover] returns then. It returns at once when there is
// one already. When ctx ends first, it returns an error that wraps ctx's
// error ([context.DeadlineExceeded], [context.Canceled]) and names what it
// waited for; any other error of x ends the wait with that error.
func WaitDiscover(ctx context.Context, x Exchange, behavior string, allowSubtypes bool) ([]EntityID, error) {
	var ids []EntityID
	err := waitUntil(ctx, x, func() (bool, error) {
		var err error
		ids, err = x.Discover(ctx, behavior, allowSubtypes)
		return len(ids) > 0, err
	})
	if err != nil {
		what := "an agent of behavior " + fmt.Sprintf("%q", behavior)
		if allowSubtypes {
			what = "an agent implementing " + fmt.Sprintf("%q", behavior)
		}
		return nil, waitErr(err, what, "none is active")
	}
	return ids, nil
}

// WaitActive waits until the mailbox of id is active in x: registered (by
// a launcher, or by the agent itself with a known id) and not terminated,
// or reopened after its termination. It returns at once when it is active
// already. When ctx ends first, it returns an error that wraps ctx's error
// and says in which state id was last seen (never registered, or
// terminated); any other error of x ends the wait with that error.
func WaitActive(ctx context.Context, x Exchange, id EntityID) error {
	last := StatusMissing
	err := waitUntil(ctx, x, func() (bool, error) {
		var err error
		last, err = x.Status(ctx, id)
		return last == StatusActive, err
	})
	if err != nil {
		state := "it was never registered"
		if last == StatusTerminated {
			state = "it is terminated"
		}
		return waitErr(err, fmt.Sprintf("%v to be active", id), state)
	}
	return nil
}

// waitErr explains a wait that ctx ended.
func waitErr(err error, what, state string) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("exchange: waiting for %s: %s: %w", what, state, err)
	}
	return err
}

// waitUntil calls found until it reports true or an error, looking again
// when x's registry changes (or, for an exchange that cannot tell, after a
// backoff), until ctx is done.
func waitUntil(ctx context.Context, x Exchange, found func() (bool, error)) error {
	w := registryWatcher(x)
	delay := time.Millisecond
	for {
		var seen uint64
		if w != nil {
			// Read the counter before looking: a change after it wakes the
			// wait below, whether or not the look saw it.
			var err error
			if seen, err = w.RegistryVersion(ctx); err != nil {
				return err
			}
		}
		ok, err := found()
		if ok || err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if w != nil {
			if err := w.WaitRegistryChange(ctx, seen); err != nil {
				return err
			}
			continue
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		delay = min(2*delay, pollMax)
	}
}

// registryWatcher returns the RegistryWatcher that x is or wraps (through
// Unwrap methods), or nil.
func registryWatcher(x Exchange) RegistryWatcher {
	for range 16 {
		if w, ok := x.(RegistryWatcher); ok {
			return w
		}
		u, ok := x.(interface{ Unwrap() Exchange })
		if !ok {
			return nil
		}
		x = u.Unwrap()
	}
	return nil
}

// registryWaitSlice bounds one sleep of WaitRegistryChange: a sleeper does
// not hold the handle (a Close does not wait for it), so the one that
// starts to sleep just as its handle closes, or just as its context is
// cancelled, notices within this time. (A change of the registry is never
// missed: the futex compares the counter with the one the waiter saw.) A
// variable for the tests.
var registryWaitSlice = 100 * time.Millisecond

// RegistryVersion implements [RegistryWatcher]: the registry's change
// counter, which every process's registry writer bumps.
func (x *SHM) RegistryVersion(ctx context.Context) (_ uint64, err error) {
	if err := x.enter(); err != nil {
		return 0, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	return x.reg.generation(), nil
}

// WaitRegistryChange implements [RegistryWatcher]: it sleeps on a futex
// on the registry's change counter (its low 32 bits), which every change
// of the registry, in any process, wakes (registry.changed).
func (x *SHM) WaitRegistryChange(ctx context.Context, seen uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	word := x.reg.genWord()
	// A cancelled context wakes the sleepers of the word (in every
	// process: they look again and sleep on).
	stop := context.AfterFunc(ctx, func() { shm.Wake(word, math.MaxInt32) })
	defer stop()
	for {
		cur, err := x.RegistryVersion(ctx)
		if err != nil {
			return err
		}
		if cur != seen {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := registryWaitSlice
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			return context.DeadlineExceeded
		}
		// Outside enter: the kernel reads the word (an unmapped one, after
		// a Close, is EFAULT, not a fault), and Close need not wait.
		switch err := shm.Wait(word, uint32(seen), wait); {
		case err == nil, errors.Is(err, shm.ErrTimedOut):
		case errors.Is(err, shm.ErrUnsupported):
			return fmt.Errorf("exchange: waiting for a registry change: %w", err)
		default:
			// EFAULT: the handle closed under us; the next look says so.
		}
	}
}

// genWord returns the address of the low 32 bits of the change counter,
// the futex word that registry.changed wakes.
func (r *registry) genWord() *uint32 {
	p := unsafe.Pointer(r.gen)
	if !littleEndian {
		p = unsafe.Add(p, 4)
	}
	return (*uint32)(p)
}

// wakeWatchers wakes every process sleeping in WaitRegistryChange; the
// caller has just bumped the counter. A FUTEX_WAKE nobody waits for costs
// a system call of a fraction of a microsecond, next to the flock and the
// file operations of every registry change.
func (r *registry) wakeWatchers() { shm.Wake(r.genWord(), math.MaxInt32) }

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()
