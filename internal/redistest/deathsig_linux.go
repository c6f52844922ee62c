package redistest

import "syscall"

// dieWithParent makes a server die with the test binary, however that ends.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
