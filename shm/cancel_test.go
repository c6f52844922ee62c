package shm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shmex/shmex/shm"
)

// TestCancelRinger: a cancel wakes a sleeper in CancelRinger.Wait; sleeping
// again with the same context (or one sharing its Done) allocates nothing;
// a cancel while nobody sleeps rings nothing (the word may be unmapped by
// then).
func TestCancelRinger(t *testing.T) {
	var word uint32
	d := shm.NewDoorbell(&word)
	var r shm.CancelRinger
	defer r.Disarm()

	ctx, cancel := context.WithCancel(context.Background())
	child := context.WithValue(ctx, struct{}{}, 1)
	if err := r.Wait(ctx, d, d.Seq(), time.Millisecond); !errors.Is(err, shm.ErrTimedOut) {
		t.Fatalf("Wait with a timeout: %v", err)
	}
	if n := testing.AllocsPerRun(20, func() {
		r.Wait(ctx, d, d.Seq(), time.Microsecond)
		r.Wait(child, d, d.Seq(), time.Microsecond)
	}); n != 0 {
		t.Fatalf("sleeping again with the same context: %v allocations", n)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Wait(child, d, d.Seq(), 0) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not wake the sleeper")
	}

	// Registered but not sleeping: a cancel leaves the word alone.
	ctx2, cancel2 := context.WithCancel(context.Background())
	if err := r.Wait(ctx2, d, d.Seq(), time.Microsecond); !errors.Is(err, shm.ErrTimedOut) {
		t.Fatalf("Wait: %v", err)
	}
	seq := d.Seq()
	cancel2()
	time.Sleep(10 * time.Millisecond)
	if d.Seq() != seq {
		t.Fatal("a cancel rang the doorbell while nobody slept")
	}
	if err := r.Wait(ctx2, d, d.Seq(), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a done context: %v", err)
	}
}
