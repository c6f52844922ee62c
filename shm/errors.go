package shm

import (
	"errors"
	"fmt"
	"runtime"
)

var (
	// ErrBadMagic means the file does not start with a shmex segment header.
	ErrBadMagic = errors.New("shm: not a shmex segment (bad magic)")

	// ErrVersion means the segment was written with another layout version.
	ErrVersion = errors.New("shm: segment layout version mismatch")

	// ErrWrongKind means the segment holds another kind of structure than
	// the one asked for.
	ErrWrongKind = errors.New("shm: segment is of another kind")

	// ErrTruncated means the file is shorter than its header says, or too
	// short to hold a header at all.
	ErrTruncated = errors.New("shm: segment truncated")

	// ErrChecksum means the header's checksum does not match its contents.
	ErrChecksum = errors.New("shm: segment header checksum mismatch")

	// ErrNotOwner means the file or directory belongs to another user or
	// has permissions that would let another user in.
	ErrNotOwner = errors.New("shm: owned by another user or too permissive")

	// ErrExist means a segment of that name exists already.
	ErrExist = errors.New("shm: segment exists")

	// ErrNotExist means there is no segment of that name.
	ErrNotExist = errors.New("shm: no such segment")

	// ErrNoSpace means the file system (typically /dev/shm) has no room for
	// the segment. It is reported at create time, never as a later SIGBUS.
	ErrNoSpace = errors.New("shm: no space left for segment")

	// ErrBadName means a segment or directory name is empty, too long, or
	// contains a path separator or other forbidden character.
	ErrBadName = errors.New("shm: bad name")

	// ErrClosed means the segment was closed by this process.
	ErrClosed = errors.New("shm: segment closed")

	// ErrBadSize means a requested size is out of range.
	ErrBadSize = errors.New("shm: bad segment size")

	// ErrNotRegular means a path in an exchange directory is not the kind
	// of file shmex puts there: a FIFO, a socket, a device, a symbolic
	// link or a directory where a regular file is expected, or anything
	// but a directory where a directory is expected. It is refused
	// without being followed and without blocking (see [OpenFile]).
	ErrNotRegular = errors.New("shm: not a regular file")

	// ErrUnsupported means the operation needs Linux (futex, fallocate,
	// the renames and advice shmex relies on): the shared-memory
	// exchange is Linux-only. It matches [errors.ErrUnsupported].
	ErrUnsupported = fmt.Errorf("shm: the shared-memory exchange is Linux-only (this is %s): %w", runtime.GOOS, errors.ErrUnsupported)
)

// ErrTimedOut means a futex wait ran out its timeout.
var ErrTimedOut = errors.New("shm: wait timed out")
