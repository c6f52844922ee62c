package shm

// SpinPause is one spin-wait hint (PAUSE): a few tens of nanoseconds in
// which the core stops issuing loads of the line it polls.
func SpinPause()
