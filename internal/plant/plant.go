// Package plant puts in test directories the files that shmex never
// creates (FIFOs, sockets, symbolic links, devices, directories) where
// shmex expects its own, and runs calls that must not block on them with a
// bound on the time they take.
package plant

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Kind is a kind of file to plant.
type Kind string

// The kinds of file Plant makes.
const (
	FIFO    Kind = "fifo"    // a named pipe: opening it for reading blocks without O_NONBLOCK
	Socket  Kind = "socket"  // a listening Unix socket: opening it fails with ENXIO
	Symlink Kind = "symlink" // a symbolic link to a FIFO elsewhere
	Device  Kind = "device"  // a character device (the null device); needs CAP_MKNOD
	Dir     Kind = "dir"     // an empty directory
)

// Kinds are all the kinds, for tests that try each.
var Kinds = []Kind{FIFO, Socket, Symlink, Device, Dir}

// Plant makes a file of kind k at path, replacing whatever is there. It
// skips the test when the kind cannot be made here (a device without
// CAP_MKNOD). A FIFO, and the FIFO a symlink points to, are opened for
// writing when the test ends, which frees any open of them left blocked by
// a failed test; the socket is closed.
func Plant(tb testing.TB, path string, k Kind) {
	tb.Helper()
	if err := os.RemoveAll(path); err != nil {
		tb.Fatal(err)
	}
	switch k {
	case FIFO:
		mkfifo(tb, path)
	case Socket:
		// Bound under a short name (a socket's path has at most about
		// 100 bytes), then moved into place.
		short, err := os.MkdirTemp("", "plant")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(short) })
		l, err := net.Listen("unix", filepath.Join(short, "s"))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { l.Close() })
		if err := os.Rename(filepath.Join(short, "s"), path); err != nil {
			tb.Fatal(err)
		}
	case Symlink:
		target := filepath.Join(tb.TempDir(), "fifo")
		mkfifo(tb, target)
		if err := os.Symlink(target, path); err != nil {
			tb.Fatal(err)
		}
	case Device:
		if err := mknodNull(path); err != nil {
			tb.Skipf("cannot make a device node here: %v", err)
		}
	case Dir:
		if err := os.Mkdir(path, 0o700); err != nil {
			tb.Fatal(err)
		}
	default:
		tb.Fatalf("plant: unknown kind %q", k)
	}
}

// fifos are the FIFOs planted by tests that have not ended, with the
// descriptor that holds each open for writing once Within has released
// them (-1 before).
var (
	fifoMu sync.Mutex
	fifos  = map[string]int{}
)

func mkfifo(tb testing.TB, path string) {
	tb.Helper()
	if err := unix.Mkfifo(path, 0o600); err != nil {
		tb.Fatal(err)
	}
	fifoMu.Lock()
	fifos[path] = -1
	fifoMu.Unlock()
	tb.Cleanup(func() {
		releaseFIFOs() // a reader still blocked in open(2) returns
		fifoMu.Lock()
		defer fifoMu.Unlock()
		if fd := fifos[path]; fd >= 0 {
			unix.Close(fd)
		}
		delete(fifos, path)
	})
}

// releaseFIFOs opens every planted FIFO for writing and keeps it open
// until the test that planted it ends: a reader blocked in open(2) on one
// returns, and later opens for reading do not block. It lets a test that
// failed because a call blocked on a FIFO end, instead of waiting for ever
// in the deferred Close of whatever the blocked call holds.
func releaseFIFOs() {
	fifoMu.Lock()
	defer fifoMu.Unlock()
	for path, fd := range fifos {
		if fd >= 0 {
			continue
		}
		if fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			fifos[path] = fd
		}
	}
}

// Bound is how long Within lets a call run. A call that must not block
// returns in microseconds; the bound is generous so that a busy machine
// never fails a test, and finite so that a call that blocks fails it
// instead of hanging CI.
const Bound = 30 * time.Second

// Within runs f and returns its error; it fails the test when f has not
// returned after Bound, after releasing the planted FIFOs so that the
// blocked call can end. It must be called from the test's goroutine.
func Within(tb testing.TB, what string, f func() error) error {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTimer(Bound)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		releaseFIFOs()
		tb.Fatalf("%s: still blocked after %v", what, Bound)
		return nil
	}
}

// Call is Within for a function that returns a value.
func Call[T any](tb testing.TB, what string, f func() (T, error)) (T, error) {
	tb.Helper()
	var v T
	err := Within(tb, what, func() (err error) { v, err = f(); return err })
	return v, err
}
