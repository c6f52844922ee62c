package shm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Life is this process's liveness lock: an exclusive flock on a file
// live-<id> in an exchange directory, held until Close or until the process
// dies. Other processes test it with Alive. Ids are random 64-bit values
// created exclusively, so a lock file never names two processes.
type Life struct {
	id   uint64
	path string

	mu sync.Mutex
	f  *os.File
}

// LifePath returns the path of the lock file of process id in dir.
func LifePath(dir string, id uint64) string {
	return filepath.Join(dir, LivePrefix+fmt.Sprintf("%016x", id))
}

// ParseLifeName returns the id named by a lock file's base name: the name
// LifePath gives it, 16 lower-case hex digits after the prefix (any other
// spelling of the id names another file, not the lock of that id).
func ParseLifeName(base string) (uint64, bool) {
	if len(base) != len(LivePrefix)+16 || base[:len(LivePrefix)] != LivePrefix {
		return 0, false
	}
	hex := base[len(LivePrefix):]
	if strings.ContainsFunc(hex, func(c rune) bool { return !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') }) {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil && id != 0
}

// HoldLife creates a lock file with a fresh id in dir (which must exist) and
// holds an exclusive lock on it. The file is locked before it appears under
// its name, so Alive never sees it unlocked while its owner lives.
func HoldLife(dir string) (*Life, error) {
	if err := Supported(); err != nil {
		return nil, err
	}
	if err := CheckDir(dir); err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 8; attempt++ {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
		id := binary.LittleEndian.Uint64(b[:])
		if id == 0 {
			continue
		}
		f, tmp, err := createTemp(dir, "live") // locked from the start: see temp.go
		if err != nil {
			return nil, fmt.Errorf("shm: create lock file: %w", err)
		}
		fmt.Fprintf(f, "pid %d\n", os.Getpid())
		path := LifePath(dir, id)
		if err := Publish(tmp, path); err != nil {
			f.Close()
			os.Remove(tmp)
			if errors.Is(err, ErrExist) {
				continue
			}
			return nil, err
		}
		return &Life{id: id, path: path, f: f}, nil
	}
	return nil, errors.New("shm: could not create a unique lock file")
}

// ID returns the id that other processes pass to Alive.
func (l *Life) ID() uint64 { return l.id }

// Path returns the lock file's path.
func (l *Life) Path() string { return l.path }

// Close removes the lock file and releases the lock: to other processes, this
// process is from now on dead. Close is idempotent.
func (l *Life) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	os.Remove(l.path)
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}

// Alive reports whether the process holding lock file id in dir is alive. A
// missing file counts as dead. The answer is right after SIGKILL (the kernel
// drops the lock of a dead process) and does not depend on pids.
func Alive(dir string, id uint64) (bool, error) {
	return AlivePath(LifePath(dir, id))
}

// AlivePath is Alive for the lock file at path.
func AlivePath(path string) (bool, error) {
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, ErrNotExist) {
			return false, nil
		}
		return false, err // it names path
	}
	defer f.Close()
	alive, err := lockHeld(f)
	if err != nil {
		return false, fmt.Errorf("shm: liveness of %s: %w", path, err)
	}
	return alive, nil
}

// LifeInfo describes a liveness lock file and the process behind it.
type LifeInfo struct {
	ID    uint64 // the id other processes pass to Alive
	Path  string // the lock file
	PID   int    // the pid its creator wrote in it; 0 when unreadable. Informational: pids are reused, the lock is what tells
	Alive bool   // whether its process holds the lock
}

// ReadLife opens the lock file at path once, to test its lock and read
// the pid its creator wrote in it.
func ReadLife(path string) (LifeInfo, error) {
	id, ok := ParseLifeName(filepath.Base(path))
	if !ok {
		return LifeInfo{}, fmt.Errorf("%w: %q is not a lock file name", ErrBadName, filepath.Base(path))
	}
	li := LifeInfo{ID: id, Path: path}
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return li, err // it names path
	}
	defer f.Close()
	if li.Alive, err = lockHeld(f); err != nil {
		return li, fmt.Errorf("shm: liveness of %s: %w", path, err)
	}
	var b [32]byte
	n, _ := f.ReadAt(b[:], 0)
	if rest, ok := strings.CutPrefix(string(b[:n]), "pid "); ok {
		if end := strings.IndexByte(rest, '\n'); end > 0 {
			if pid, err := strconv.Atoi(rest[:end]); err == nil && pid > 0 {
				li.PID = pid
			}
		}
	}
	return li, nil
}

// Lives lists the liveness lock files of dir, in the order of their
// names. A file that is not a regular file, or whose lock cannot be
// tested, is skipped and reported in the error, which joins every such
// problem; the others are listed all the same. A lock file removed while
// Lives reads the directory is left out.
func Lives(dir string) ([]LifeInfo, error) {
	entries, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []LifeInfo
	var errs []error
	for _, e := range entries {
		if _, ok := ParseLifeName(e.Name()); !ok {
			continue
		}
		li, err := ReadLife(filepath.Join(dir, e.Name()))
		switch {
		case errors.Is(err, ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		default:
			out = append(out, li)
		}
	}
	return out, errors.Join(errs...)
}

// lockHeld reports whether another process holds the exclusive lock of
// the open lock file f.
func lockHeld(f *os.File) (bool, error) {
	err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false, nil
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
