//go:build !linux

package redistest

import "syscall"

// dieWithParent is nothing where there is no parent-death signal: a server
// outlives a test binary that is killed (servers are killed when their test
// ends).
func dieWithParent() *syscall.SysProcAttr { return nil }
