//go:build !linux

// Package sysproc holds the process attributes shmex gives the processes
// it starts (agent processes, test children, test servers).
package sysproc

import "syscall"

// DieWithParent returns nil where there is no parent-death signal: a child
// outlives a parent killed without its clean-up (the shared-memory
// exchange, which agent processes and most children need, is Linux-only).
func DieWithParent() *syscall.SysProcAttr { return nil }
