package exchange

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// CollectStats reports what [SHM.Collect] removed.
type CollectStats struct {
	// Rings is the number of ring segments of terminated mailboxes removed.
	Rings int
	// Lives is the number of liveness lock files of dead processes removed.
	Lives int
	// Temps is the number of abandoned temporary files removed.
	Temps int
}

// tempGrace is how old a temporary file must be before Collect takes it for
// abandoned: creating a segment takes far less.
const tempGrace = time.Minute

// Entities returns what the registry holds about every entity of the
// exchange, agents and clients, active or terminated, in registration
// order. Damaged entries are skipped (and logged).
func (x *SHM) Entities(ctx context.Context) ([]EntityInfo, error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	n := x.reg.published()
	out := make([]EntityInfo, 0, n)
	for i := 0; i < n; i++ {
		e, err := x.reg.decode(i)
		if err != nil {
			x.opts.log.Warn("shmex: skipping damaged registry entry", "exchange", x.name, "entry", i, "err", err)
			continue
		}
		out = append(out, EntityInfo{ID: e.id, Name: e.name, Behavior: e.behavior, Status: x.status(i, e.id)})
	}
	return out, nil
}

// Collect removes what dead processes left in the exchange's directory:
//   - the ring segment of every terminated mailbox that no live process
//     receives from (its owner is dead, and no live receiver is attached):
//     nobody can drain it any more. Its entry stays in the registry
//     ([StatusTerminated]); sends to it keep failing with
//     [ErrMailboxClosed], and a Mailbox client of it reports
//     [ErrMailboxClosed] at once. Processes that mapped the segment keep a
//     valid mapping; this handle releases its own mappings of collected
//     and reopened mailboxes' rings here, other handles at their next send
//     to the mailbox (or their next Collect).
//   - the liveness lock files of dead processes;
//   - temporary files older than a minute (segments whose creator died
//     before publishing them).
//
// Collect is safe while other processes use the exchange. It marks
// terminated, first, every active mailbox whose owner is dead.
func (x *SHM) Collect(ctx context.Context) (CollectStats, error) {
	var st CollectStats
	if err := x.enter(); err != nil {
		return st, err
	}
	defer x.leave()
	n := x.reg.published()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		id := EntityID{UUID: x.reg.uuidAt(i), Role: Role(x.reg.raw(i)[entRole])}
		if x.status(i, id) != StatusTerminated || x.alive(x.reg.owner(i)) {
			continue
		}
		removed, err := x.collectRing(i, id)
		if err != nil {
			return st, err
		}
		if removed {
			st.Rings++
		}
	}
	// This handle's mappings of the rings removed (by this Collect or
	// another process's) and of reopened mailboxes go now.
	x.reapAll()
	entries, err := os.ReadDir(x.dir)
	if err != nil {
		return st, err
	}
	for _, de := range entries {
		name := de.Name()
		path := filepath.Join(x.dir, name)
		switch {
		case shm.IsTemp(name):
			fi, err := de.Info()
			if err != nil || time.Since(fi.ModTime()) < tempGrace {
				continue
			}
			if removeFile(path) {
				st.Temps++
			}
		case strings.HasPrefix(name, shm.LivePrefix):
			if _, ok := shm.ParseLifeName(name); !ok {
				continue
			}
			// A lock file is locked before it appears under its name
			// and its id is never reused: once unlocked, it stays dead.
			if alive, err := shm.AlivePath(path); err == nil && !alive && removeFile(path) {
				st.Lives++
			}
		}
	}
	return st, nil
}

// collectRing removes the ring segment of the terminated mailbox id (registry
// entry i) unless a live receiver is attached to it. It reports whether it
// removed it.
func (x *SHM) collectRing(i int, id EntityID) (bool, error) {
	// Under the registry's lock, looked at again: a Reopen since the
	// caller looked makes the mailbox active on a new ring, which must
	// not be taken for the terminated one.
	if err := x.reg.lock(); err != nil {
		return false, err
	}
	defer x.reg.unlock()
	if x.reg.state(i) != regTerminated || x.alive(x.reg.owner(i)) {
		return false, nil
	}
	path := ringPath(x.dir, id.UUID, x.reg.incarnation(i))
	seg, c, err := x.probeRing(path)
	switch {
	case errors.Is(err, shm.ErrNotExist), errors.Is(err, ring.ErrBusy):
		return false, nil // gone already, or a live receiver still drains it
	case errors.Is(err, errDamagedRing):
		// A segment that does not validate cannot be drained either.
		x.opts.log.Warn("shmex: removing damaged ring segment", "exchange", x.name, "mailbox", id, "err", err)
		return removeFile(path), nil
	case err != nil:
		return false, fmt.Errorf("exchange: collecting mailbox %v: %w", id, err)
	}
	// No receiver attaches while the segment is removed.
	defer seg.Close()
	defer c.Close()
	return removeFile(path), nil
}

func removeFile(path string) bool { return os.Remove(path) == nil }
