package childproc

import "syscall"

// dieWithParent makes a child die with the test binary, however that ends.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
