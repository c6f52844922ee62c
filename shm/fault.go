package shm

import "runtime/debug"

// TolerateFault runs f with faults on mapped memory turned into panics
// (debug.SetPanicOnFault, a flag of the goroutine, restored after) and
// reports whether one stopped it. It is for steps that touch a mapping
// that another process of the user may have truncated, and that have no
// caller to tell but can carry on without the step: unmapping a retired
// ring, detaching a receiver, ringing a doorbell for a cancel, reading
// stats. A panic that is not a fault goes on.
//
// Faults in a binary built with -race are not all caught: the race
// detector makes an atomic access to shared memory in its C runtime, and a
// truncation between its probe in Go and that access faults in C.
func TolerateFault(f func()) (faulted bool) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		r := recover()
		debug.SetPanicOnFault(old)
		if r == nil {
			return
		}
		if !IsFault(r) {
			panic(r)
		}
		faulted = true
	}()
	f()
	return false
}

// IsFault reports whether r, a recovered panic, is a fault on memory that
// debug.SetPanicOnFault turned into a panic (it has an Addr method: the
// faulting address).
func IsFault(r any) bool {
	_, ok := r.(interface{ Addr() uintptr })
	return ok
}
