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
		// users, and a later Remove of the root's leftovers).
		if shm.Publish(aside, dir) != nil { // renames, never replacing
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
// A lock file that cannot be tested (not a regular file, say) is an error
// too: Remove does not guess.
func inUse(dir, name string) error {
	lives, err := shm.Lives(dir)
	if err != nil {
		return fmt.Errorf("exchange: remove %s: %w", name, err)
	}
	var pids []string
	for _, l := range lives {
		if !l.Alive {
			continue
		}
		pid := "?"
		if l.PID > 0 {
			pid = strconv.Itoa(l.PID)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		return nil
	}
	slices.Sort(pids)
	pids = slices.Compact(pids)
	return fmt.Errorf("%w: %s is used by live processes (pid %s)", ErrExchangeInUse, name, strings.Join(pids, ", "))
}
