package shm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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

// ParseLifeName returns the id named by a lock file's base name.
func ParseLifeName(base string) (uint64, bool) {
	if len(base) != len(LivePrefix)+16 || base[:len(LivePrefix)] != LivePrefix {
		return 0, false
	}
	id, err := strconv.ParseUint(base[len(LivePrefix):], 16, 64)
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
		tmp := filepath.Join(dir, TempPrefix+"live-"+randomHex(8))
		f, err := OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("shm: create lock file: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			os.Remove(tmp)
			return nil, fmt.Errorf("shm: lock %s: %w", tmp, err)
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
		return false, fmt.Errorf("shm: liveness of %s: %w", path, err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false, nil
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	return false, fmt.Errorf("shm: liveness of %s: %w", path, err)
}
