package ring

import "golang.org/x/sys/unix"

// schedYield moves the calling thread to the back of its CPU's run queue:
// another runnable thread of any process on this CPU runs first. (A raw
// system call: the goroutine keeps its P, which is what a poll loop wants.)
func schedYield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// threadSwitches returns how many context switches, voluntary and not, the
// calling thread has made, or false when the system does not say.
func threadSwitches() (int64, bool) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0, false
	}
	return ru.Nvcsw + ru.Nivcsw, true
}
