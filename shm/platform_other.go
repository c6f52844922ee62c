//go:build !linux

package shm

import (
	"os"

	"golang.org/x/sys/unix"
)

// Supported reports whether the shared-memory primitives work on this
// system: nil on Linux, [ErrUnsupported] elsewhere. Without Linux's
// futex, no process could sleep until another one writes to a mailbox;
// EnsureDir, Create, Open, HoldLife, Wait and Wake return ErrUnsupported
// here, so that an exchange says so when it is opened.
func Supported() error { return ErrUnsupported }

// Without fallocate and renameat2, Reserve sizes the file and Publish
// links it.

func fallocate(f *os.File, size int64) error { return unix.ENOSYS }

func renameNoReplace(tmp, path string) error { return unix.ENOSYS }

// AdvisePopulate is the advice of Linux that fills in page tables; here it
// does nothing.
func AdvisePopulate(m []byte, readOnly bool) {}
