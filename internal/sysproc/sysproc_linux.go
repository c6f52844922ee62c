// Package sysproc holds the process attributes shmex gives the processes
// it starts (agent processes, test children, test servers).
package sysproc

import "syscall"

// DieWithParent returns attributes that make a child die (SIGKILL) with
// the thread that started it, however its parent ends: Linux's
// parent-death signal.
func DieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
