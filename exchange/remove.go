package exchange

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/shm"
)

// ErrExchangeInUse reports that an exchange cannot be removed because live
// processes use it (a handle open on it, an arena in it); the error names
// their pids.
var ErrExchangeInUse = errors.New("exchange: exchange in use")

// Remove removes the exchange called name under the root directory that
// WithRoot sets (default shm.DefaultRoot(), as for Open; the other
// options are ignored): its directory, with the registry, the rings, the
// arenas and the liveness files in it. It is what `shmex rm` does, for
// programs and tests that clean up after themselves.
//
// Remove refuses, with an error wrapping [ErrExchangeInUse] that names the
// pids of the processes holding it, while any live process uses the
// exchange, this one included (close every handle and arena first). The
// directory is moved aside before it is removed and looked at again
// there, so that a process opening the exchange meanwhile makes Remove
// fail (and the exchange is put back) rather than lose its files. A
// missing exchange is not an error.
func Remove(name string, opts ...Option) error {
	var o shmOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.root == "" {
		o.root = shm.DefaultRoot()
	}
	dir, err := shm.ExchangeDir(o.root, name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if err := shm.CheckDir(dir); err != nil {
		if errors.Is(err, shm.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := inUse(dir, name); err != nil {
		return err
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	aside := filepath.Join(o.root, shm.TempPrefix+"rm-"+name+"-"+hex.EncodeToString(b[:]))
	if err := os.Rename(dir, aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		return fmt.Errorf("exchange: remove %s: %w", name, err)
	}
	if err := inUse(aside, name); err != nil {
		// Opened meanwhile: put it back, unless a new exchange of that
		// name took its place (then the one opened stays aside, for its
		// users, and a later Remove or Collect of the root).
		if unix.Renameat2(unix.AT_FDCWD, aside, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE) != nil {
			return fmt.Errorf("%w (moved aside to %s)", err, aside)
		}
		return err
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("exchange: remove %s: %w", name, err)
	}
	return nil
}

// inUse returns an error wrapping ErrExchangeInUse naming the pids of the
// live processes holding a liveness lock in dir, or nil when none does.
func inUse(dir, name string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("exchange: remove %s: %w", name, err)
	}
	var pids []string
	for _, e := range ents {
		if _, ok := shm.ParseLifeName(e.Name()); !ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		alive, err := shm.AlivePath(path)
		if err != nil {
			return fmt.Errorf("exchange: remove %s: %w", name, err)
		}
		if alive {
			pids = append(pids, lifePid(path))
		}
	}
	if len(pids) == 0 {
		return nil
	}
	slices.Sort(pids)
	pids = slices.Compact(pids)
	return fmt.Errorf("%w: %s is used by live processes (pid %s)", ErrExchangeInUse, name, strings.Join(pids, ", "))
}

// lifePid returns the pid that the liveness lock file at path names
// ("pid N"), or "?" when it cannot be read. The file is opened without
// blocking and read only if it is a regular file.
func lifePid(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "?"
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "?"
	}
	var b [64]byte
	n, _ := unix.Read(fd, b[:])
	f := strings.Fields(string(b[:max(n, 0)]))
	if len(f) < 2 || f[0] != "pid" {
		return "?"
	}
	if _, err := strconv.Atoi(f[1]); err != nil {
		return "?"
	}
	return f[1]
}
