package exchange

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// CollectStats reports what [SHM.Collect] removed (or, with [DryRun],
// would remove).
type CollectStats struct {
	// Rings is the number of ring segments of terminated mailboxes removed.
	Rings int
	// Lives is the number of liveness lock files of dead processes removed.
	Lives int
	// Temps is the number of abandoned temporary files removed.
	Temps int
	// Removed names every file removed, by its name in the exchange
	// directory, in the order of removal.
	Removed []string
}

// CollectOption configures [SHM.Collect].
type CollectOption func(*collectOptions)

type collectOptions struct{ dryRun bool }

// DryRun makes Collect remove nothing, terminate nothing and repair
// nothing: it reports the files it would remove, as the registry and the
// directory stand. (A dry run tests the lock of each temporary file as
// Collect does: a creator that tries to lock its new file at that instant
// starts over under another name, leaving the file to the next Collect.)
func DryRun() CollectOption { return func(o *collectOptions) { o.dryRun = true } }

// Entities returns what the registry holds about every entity of the
// exchange, agents and clients, active or terminated, in the order of
// their registry slots. Damaged entries are skipped (and logged). It
// changes nothing (for listings and dry runs): a mailbox whose owner is
// dead, or whose state is damaged, is reported terminated without being
// terminated (Status or Collect does that).
func (x *SHM) Entities(ctx context.Context) (_ []EntityInfo, err error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	n := x.reg.published()
	out := make([]EntityInfo, 0, n)
	for i := 0; i < n; i++ {
		s := x.reg.stamp(i)
		if s.state() == regFree {
			continue
		}
		info, _, ok, err := x.slotEntity(i, s)
		switch {
		case !ok:
			continue // reused while we looked
		case err != nil:
			x.opts.log.Warn("shmex: skipping damaged registry entry", "exchange", x.name, "entry", i, "err", err)
			continue
		}
		out = append(out, info)
	}
	return out, nil
}

// Collect removes what dead processes left in the exchange's directory:
//   - the ring segment of every terminated mailbox that no live process
//     receives from (its owner is dead, and no live receiver is attached):
//     nobody can drain it any more. Its entry stays in the registry
//     ([StatusTerminated]) until a registration needs its slot; sends to
//     it keep failing with [ErrMailboxClosed], and a Mailbox client of it
//     reports [ErrMailboxClosed] at once. Processes that mapped the
//     segment keep a valid mapping; this handle releases its own mappings
//     of terminated and reopened mailboxes' rings here, other handles at
//     their next look at the registry.
//   - ring segments that no registry entry names (left by a registration
//     or Reopen that died between creating a ring and publishing the
//     entry that names it), unless a live receiver drains one: both steps
//     happen under the registry's lock, which Collect takes to tell a
//     registration at work from a dead one;
//   - the liveness lock files of dead processes;
//   - temporary files whose creator died before publishing them (no
//     process holds their lock: see shm.RemoveAbandonedTemp).
//
// It compacts the registry: every active mailbox whose owner is dead is
// marked terminated first (its queued requests answered), so that its
// slot is free for reuse, and a damaged count or state word is repaired.
// Collect is safe while other processes use the exchange. With [DryRun]
// it changes nothing and lists what it would remove.
func (x *SHM) Collect(ctx context.Context, opts ...CollectOption) (st CollectStats, err error) {
	var o collectOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := x.enter(); err != nil {
		return st, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	if o.dryRun {
		return x.collectDry(ctx)
	}
	if err := x.repairCount(); err != nil {
		return st, err
	}
	named := map[string]bool{} // ring files the registry names
	n := x.reg.published()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		s := x.reg.stamp(i)
		if s.state() == regFree {
			continue
		}
		id := EntityID{UUID: x.reg.uuidAt(i), Role: x.reg.roleAt(i)}
		if !x.reg.current(i, s) {
			continue
		}
		path := ringPath(x.dir, id.UUID, s.inc())
		named[filepath.Base(path)] = true
		existed := fileExists(path)
		// status terminates a dead owner's mailbox, which removes its
		// ring when nothing is left in it: collected all the same.
		if x.status(i, id) != StatusTerminated || x.alive(x.reg.owner(i)) || !x.reg.current(i, s) {
			continue
		}
		removed, err := x.collectRing(i, x.reg.stamp(i), id, func(owner uint64) bool { return !x.alive(owner) })
		if err != nil {
			return st, err
		}
		if removed || existed && !fileExists(path) {
			st.Rings++
			st.Removed = append(st.Removed, filepath.Base(path))
		}
	}
	// This handle's mappings of the rings removed (by this Collect or
	// another process's) and of reopened mailboxes go now.
	x.reapAll()
	return x.collectDir(st, named, false)
}

// collectDir is the second half of Collect and of its dry run: the files
// of the exchange's directory that no registry entry accounts for.
// Abandoned temporary files, dead processes' lock files, and ring files no
// entry named (named lists those that entries did, as the first half
// looked) are removed, or, with dry, listed as they would be; st gets
// them added.
func (x *SHM) collectDir(st CollectStats, named map[string]bool, dry bool) (CollectStats, error) {
	entries, err := shm.ReadDir(x.dir)
	if err != nil {
		return st, err
	}
	var unnamed []string // ring files no entry named as Collect looked
	for _, de := range entries {
		name := de.Name()
		path := filepath.Join(x.dir, name)
		switch {
		case shm.IsTemp(name):
			// Its creator holds a lock on it until it is published: one
			// that nobody holds was left by a creator that died (see
			// shm.RemoveAbandonedTemp).
			if x.collectTemp(path, dry) {
				st.Temps++
				st.Removed = append(st.Removed, name)
			}
		case strings.HasPrefix(name, shm.RingPrefix) && !named[name]:
			unnamed = append(unnamed, name)
		case strings.HasPrefix(name, shm.LivePrefix):
			if _, ok := shm.ParseLifeName(name); !ok {
				continue
			}
			// A lock file is locked before it appears under its name
			// and its id is never reused: once unlocked, it stays dead.
			if alive, err := shm.AlivePath(path); err == nil && !alive && (dry || removeFile(path)) {
				st.Lives++
				st.Removed = append(st.Removed, name)
			}
		}
	}
	if len(unnamed) > 0 {
		removed, err := x.collectUnnamed(unnamed, dry)
		st.Rings += len(removed)
		st.Removed = append(st.Removed, removed...)
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// collectTemp removes the temporary file at path if its creator died
// before publishing it (with dry, reports whether it would).
func (x *SHM) collectTemp(path string, dry bool) bool {
	if dry {
		alive, err := shm.AlivePath(path)
		return err == nil && !alive
	}
	ok, err := shm.RemoveAbandonedTemp(path)
	return err == nil && ok
}

// collectUnnamed removes the ring files of names (in the exchange's
// directory) that no registry entry names, and returns the names of those
// it removed (with dry, of those it would remove, removing nothing). A registration or Reopen creates a ring and publishes the entry
// (or incarnation) that names it under the registry's lock: with the lock
// taken, a ring that no entry names is not one at work, but one left by a
// process that died between the two steps (the kernel released its lock),
// which nobody can ever reach. One a live receiver still drains (a
// forgotten mailbox's, whose removal failed) is left to it.
func (x *SHM) collectUnnamed(names []string, dry bool) ([]string, error) {
	if err := x.reg.lock(); err != nil {
		return nil, err
	}
	defer x.reg.unlock()
	var removed []string
	for _, name := range names {
		u, inc, ok := parseRingName(name)
		if !ok {
			continue // not a name this package makes: not ours to remove
		}
		if i, s := x.reg.find(u); i >= 0 && s.inc() == inc {
			continue // published since Collect looked
		}
		path := filepath.Join(x.dir, name)
		if dry {
			if x.ringCollectable(path) { // as removeUnnamed decides
				removed = append(removed, name)
			}
			continue
		}
		if x.removeUnnamed(path) {
			removed = append(removed, name)
		}
	}
	return removed, nil
}

// removeUnnamed removes the ring segment at path, which no entry names,
// unless a live receiver drains it; the caller holds the registry's lock.
// A segment that does not validate goes too (nobody can drain it), and so
// does a file that is not a regular one (a FIFO, say), as collectRing
// removes one at the path of a named ring: at a name this package makes,
// in a directory it keeps, whatever is not a live ring is a leftover. One
// put at the path after it was probed stays.
func (x *SHM) removeUnnamed(path string) bool {
	seg, c, err := x.probeRing(path)
	switch {
	case errors.Is(err, errDamagedRing): // ErrNotRegular among them
		return removeFile(path)
	case err != nil:
		return false // gone, busy (a live receiver), or not a segment
	}
	defer seg.Close()
	defer c.Close()
	if fi, err := os.Lstat(path); err != nil || !seg.SameFile(fi) {
		return false
	}
	return removeFile(path)
}

// parseRingName reads the UUID and incarnation of a ring file name that
// ringPath makes.
func parseRingName(name string) (u UUID, inc uint32, ok bool) {
	rest, found := strings.CutPrefix(name, shm.RingPrefix)
	if !found {
		return u, 0, false
	}
	h, n, dotted := strings.Cut(rest, ".")
	if len(h) != 2*len(u) {
		return u, 0, false
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, 0, false
	}
	if dotted {
		v, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return u, 0, false
		}
		inc = uint32(v)
	}
	// Only the one spelling ringPath makes (lower case, no ".0").
	return u, inc, filepath.Base(ringPath("", u, inc)) == name
}

// collectRing removes the ring segment of the terminated mailbox id (registry
// slot i, under stamp s) when removable says so of its owner, unless a
// live receiver is attached to it. It reports whether it removed it.
func (x *SHM) collectRing(i int, s stamp, id EntityID, removable func(owner uint64) bool) (bool, error) {
	// Under the registry's lock, looked at again: a Reopen since the
	// caller looked makes the mailbox active on a new ring, which must
	// not be taken for the terminated one, and a reuse of the slot makes
	// it another mailbox's.
	if err := x.reg.lock(); err != nil {
		return false, err
	}
	defer x.reg.unlock()
	cur := x.reg.stamp(i)
	if !cur.sameIncarnation(s) || cur.state() != regTerminated || !removable(x.reg.owner(i)) || !x.reg.reaches(i) {
		return false, nil // changed, or a shadowed duplicate: its path is another entry's ring
	}
	path := ringPath(x.dir, id.UUID, cur.inc())
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
	// No receiver attaches while the segment is removed. The path is
	// looked at again: only the file probed goes, not one put there since.
	defer seg.Close()
	defer c.Close()
	if fi, err := os.Lstat(path); err != nil || !seg.SameFile(fi) {
		return false, nil
	}
	return removeFile(path), nil
}

// repairCount repairs a damaged registry count under the lock (see
// registry.repairCount).
func (x *SHM) repairCount() error {
	if err := x.reg.lock(); err != nil {
		return err
	}
	defer x.reg.unlock()
	if x.reg.repairCount() {
		x.opts.log.Error("shmex: registry count was damaged; repaired", "exchange", x.name, "count", x.reg.published())
	}
	return nil
}

func removeFile(path string) bool { return os.Remove(path) == nil }

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
