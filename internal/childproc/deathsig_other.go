//go:build !linux

package childproc

import "syscall"

// dieWithParent is nothing where there is no parent-death signal: a child
// outlives a test binary that is killed (children are killed when their
// test ends).
func dieWithParent() *syscall.SysProcAttr { return nil }
