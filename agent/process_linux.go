package agent

import "syscall"

// dieWithParent makes an agent process die with the process that launched
// it, however that ends (Linux's parent-death signal).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
