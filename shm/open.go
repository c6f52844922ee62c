package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// OpenFile opens path, a file in an exchange directory, without ever
// blocking, and refuses anything that is not what shmex puts there. Every
// open of a path in an exchange directory, in shmex and in the programs
// built on it, goes through here.
//
// flag is os.O_RDONLY or os.O_RDWR, optionally with os.O_CREATE|os.O_EXCL
// (perm is then the new file's mode). OpenFile adds O_NONBLOCK, so that a
// FIFO or a device planted where a segment or a lock file is expected
// cannot stall the open; O_NOFOLLOW, so that a symbolic link is refused
// instead of followed; O_NOCTTY and O_CLOEXEC. It then checks the type of
// what it opened with fstat: anything but a regular file (a FIFO, a
// socket, a device, a directory) is closed and refused with
// [ErrNotRegular], naming the path and what it is. With
// syscall.O_DIRECTORY in flag, it wants a directory instead, and refuses
// anything else the same way.
//
// A missing file is an error that matches both [ErrNotExist] and
// [fs.ErrNotExist]. On regular files and directories O_NONBLOCK changes
// nothing, so the file returned behaves as one opened by os.OpenFile.
func OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, _, err := openFile(path, flag, perm)
	return f, err
}

// openFile is OpenFile that also returns the fstat of the open file.
func openFile(path string, flag int, perm os.FileMode) (*os.File, *unix.Stat_t, error) {
	wantDir := flag&syscall.O_DIRECTORY != 0
	fl := flag | syscall.O_NONBLOCK | syscall.O_NOFOLLOW | syscall.O_NOCTTY | syscall.O_CLOEXEC
	// os.OpenFile retries on EINTR and keeps the descriptor out of the
	// poller when it is a regular file or a directory.
	f, err := os.OpenFile(path, fl, perm)
	if err != nil {
		return nil, nil, openError(path, wantDir, err)
	}
	st := new(unix.Stat_t)
	if err := unix.Fstat(int(f.Fd()), st); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("shm: stat %s: %w", path, err)
	}
	typ := uint32(st.Mode) & unix.S_IFMT
	if wantDir && typ != unix.S_IFDIR || !wantDir && typ != unix.S_IFREG {
		f.Close()
		return nil, nil, notRegular(path, wantDir, typ)
	}
	return f, st, nil
}

// openError turns the error of an open into one that says what is wrong
// with path.
func openError(path string, wantDir bool, err error) error {
	var errno syscall.Errno
	errors.As(err, &errno)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s (%w)", ErrNotExist, path, errno)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%w: %s (%w)", ErrExist, path, errno)
	case errno == syscall.ELOOP, errno == syscall.ENXIO, errno == syscall.ENOTDIR,
		errno == syscall.EISDIR, errno == syscall.ENODEV, errno == syscall.EOPNOTSUPP:
		// ELOOP: a symbolic link under O_NOFOLLOW. ENXIO: a socket, or
		// a FIFO opened for writing with no reader. ENOTDIR: not a
		// directory under O_DIRECTORY. EISDIR: a directory opened for
		// writing. Say what the file is, when it can still be seen.
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil {
			typ := uint32(st.Mode) & unix.S_IFMT
			if wantDir && typ != unix.S_IFDIR || !wantDir && typ != unix.S_IFREG {
				return notRegular(path, wantDir, typ)
			}
		}
	}
	return fmt.Errorf("shm: open %s: %w", path, err)
}

func notRegular(path string, wantDir bool, typ uint32) error {
	want := "a regular file"
	if wantDir {
		want = "a directory"
	}
	return fmt.Errorf("%w: %s is %s, not %s", ErrNotRegular, path, fileType(typ), want)
}

// fileType names the file type typ (the S_IFMT bits of a mode).
func fileType(typ uint32) string {
	switch typ {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	}
	return fmt.Sprintf("a file of type %#o", typ)
}

// ReadDir returns the entries of the directory dir, sorted by name, opening
// it with OpenFile: a FIFO or a symbolic link where the directory should be
// is refused with [ErrNotRegular] instead of blocking the caller or being
// followed.
func ReadDir(dir string) ([]os.DirEntry, error) {
	f, err := OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("shm: read directory %s: %w", dir, err)
	}
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}
