package shm

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestCancelRingerFault: a cancel that rings a doorbell whose page went
// away (its segment truncated by another process while the owner slept on
// it) is caught by the fault guard instead of killing the process from
// the context package's goroutine, and the ringer goes back to idle.
func TestCancelRingerFault(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "bell"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	d := NewDoorbell((*uint32)(unsafe.Pointer(&m[0])))
	if err := f.Truncate(0); err != nil { // the word's page is gone: touching it faults
		t.Fatal(err)
	}

	var r CancelRinger
	defer r.Disarm()
	ctx, cancel := context.WithCancel(context.Background())
	r.arm(ctx, d)
	// As Wait does before it sleeps on the word (which it cannot read
	// here without faulting).
	r.state.Store(ringerSleeping)
	cancel()
	for deadline := time.Now().Add(30 * time.Second); r.state.Load() != ringerIdle; {
		if time.Now().After(deadline) {
			t.Fatalf("the cancel's ring did not finish: state %d", r.state.Load())
		}
		runtime.Gosched()
	}
}
