package shm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shmex/shmex/shm"
)

// TestCancelRinger: an armed context wakes a WaitArmed sleeper when it is
// cancelled; arming again with the same context (or one sharing its Done)
// registers nothing; Disarm stops the ringing.
func TestCancelRinger(t *testing.T) {
	var word uint32
	d := shm.NewDoorbell(&word)
	var r shm.CancelRinger

	ctx, cancel := context.WithCancel(context.Background())
	child := context.WithValue(ctx, struct{}{}, 1)
	r.Arm(ctx, d)
	if n := testing.AllocsPerRun(100, func() { r.Arm(ctx, d); r.Arm(child, d) }); n != 0 {
		t.Fatalf("re-arming with the same context: %v allocations", n)
	}
	errc := make(chan error, 1)
	go func() { errc <- d.WaitArmed(child, d.Seq(), 0) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitArmed after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not wake the armed waiter")
	}
	r.Disarm()
	r.Disarm() // idempotent

	// Disarmed: a cancel rings nothing.
	ctx2, cancel2 := context.WithCancel(context.Background())
	r.Arm(ctx2, d)
	r.Disarm()
	seq := d.Seq()
	cancel2()
	time.Sleep(10 * time.Millisecond)
	if d.Seq() != seq {
		t.Fatal("a disarmed context rang the doorbell")
	}
	// A context that is never done arms nothing.
	r.Arm(context.Background(), d)
	if err := d.WaitArmed(context.Background(), d.Seq(), 10*time.Millisecond); !errors.Is(err, shm.ErrTimedOut) {
		t.Fatalf("WaitArmed with a timeout: %v", err)
	}
	r.Disarm()
}
