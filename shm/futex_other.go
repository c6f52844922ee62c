//go:build !linux

package shm

import "time"

// Wait is the futex wait of Linux; elsewhere there is no futex that works
// across processes, and Wait returns ErrUnsupported.
func Wait(addr *uint32, val uint32, timeout time.Duration) error { return ErrUnsupported }

// Wake is the futex wake of Linux; elsewhere it returns ErrUnsupported.
func Wake(addr *uint32, n int) (int, error) { return 0, ErrUnsupported }
