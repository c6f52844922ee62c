package shm

import (
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations, without FUTEX_PRIVATE_FLAG: a private futex is keyed by
// the address space and would never see a waker in another process.
const (
	futexWait = 0
	futexWake = 1
)

// Wait sleeps while *addr == val, for at most timeout (forever when
// timeout < 0). It returns nil when woken, when *addr != val at the call, and
// on EINTR: in every case the caller must re-check its condition, because
// wake-ups can be spurious. It returns ErrTimedOut when the timeout passes.
// addr must point to 4-byte-aligned memory, normally inside a shared mapping.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	var tsp unsafe.Pointer
	var ts unix.Timespec
	if timeout >= 0 {
		ts = unix.NsecToTimespec(int64(timeout))
		tsp = unsafe.Pointer(&ts)
	}
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait,
		uintptr(val), uintptr(tsp), 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimedOut
	}
	return errno
}

// Wake wakes at most n waiters sleeping on addr, in any process, and returns
// how many it woke.
func Wake(addr *uint32, n int) (int, error) {
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	r, _, errno := unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake,
		uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
