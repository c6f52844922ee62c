//go:build !linux

package agent

import "syscall"

// dieWithParent: only Linux has a parent-death signal; elsewhere an agent
// process outlives a launcher killed without its Close (agent processes
// need the shared-memory exchange, Linux-only, anyway).
func dieWithParent() *syscall.SysProcAttr { return nil }
