package shm

import (
	"os"

	"golang.org/x/sys/unix"
)

// Supported reports whether the shared-memory primitives work on this
// system: nil on Linux, [ErrUnsupported] elsewhere.
func Supported() error { return nil }

// fallocate reserves the first size bytes of f.
func fallocate(f *os.File, size int64) error { return unix.Fallocate(int(f.Fd()), 0, 0, size) }

// renameNoReplace renames tmp to path unless path exists (EEXIST).
func renameNoReplace(tmp, path string) error {
	return unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
}

// AdvisePopulate asks the kernel to fill in the page tables of the mapped
// memory m now (MADV_POPULATE_WRITE, or _READ when readOnly), so that the
// first touch of each page takes no fault. Best effort: a kernel without
// the advice (before Linux 5.14), or a system other than Linux, does
// nothing. [Populate] does it, and reads a byte of every page, for a whole
// segment.
func AdvisePopulate(m []byte, readOnly bool) {
	advice := unix.MADV_POPULATE_WRITE
	if readOnly {
		advice = unix.MADV_POPULATE_READ
	}
	_ = unix.Madvise(m, advice) // best effort: populate reads the pages too
}
