package proxystore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shmex/shmex/shm"
	"golang.org/x/sys/unix"
)

// collectEvery is how many reaper passes run between two collections of
// the arenas of dead owners.
const collectEvery = 20

// tmpMaxAge is how old a temporary arena file (a segment being created)
// must be before Collect removes it: its creator died before publishing.
const tmpMaxAge = time.Minute

// reaper runs the background pass until Close.
func (a *Arena) reaper() {
	defer close(a.done)
	t := time.NewTicker(a.opts.reapInterval)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.reap()
		if tick%collectEvery == 0 {
			if removed, err := collect(a.dir, a.life.ID(), &a.lives, false); err != nil {
				a.log.Warn("proxystore: collecting dead arenas", "err", err)
			} else if len(removed) > 0 {
				a.log.Debug("proxystore: removed arenas of dead owners", "files", removed)
			}
		}
	}
}

// reap is one background pass: drop the references of dead readers in the
// segments this process owns, expire leases and reclaim released blocks,
// then unmap the segments of dead owners and the retired segments that no
// view of this process uses any more.
func (a *Arena) reap() {
	me := a.life.ID()
	a.amu.Lock()
	dropped := 0
	for _, s := range a.own {
		dropped += s.reconcileDead(me, a.lives.alive)
	}
	if n := a.reclaim(dropped > 0); n > 0 || dropped > 0 {
		a.log.Debug("proxystore: reclaimed", "blocks", n, "dead-references", dropped)
	}
	retired := len(a.retired) > 0
	a.amu.Unlock()

	var gone []*arenaSeg
	a.smu.RLock()
	for _, s := range a.segs {
		if s.own == nil && s.views.Load() == 0 && (s.dead.Load() || a.ownerAlive(s) != nil) {
			gone = append(gone, s)
		}
	}
	a.smu.RUnlock()
	if len(gone) == 0 && !retired {
		return
	}
	a.mu.Lock() // no operation in flight: safe to unmap
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.amu.Lock()
	a.smu.Lock()
	for _, s := range a.retired {
		if s.views.Load() == 0 {
			delete(a.segs, s.id)
			s.unmap()
		}
	}
	a.retired = a.retired[:0]
	for _, s := range gone {
		if s.views.Load() == 0 && a.segs[s.id] == s {
			delete(a.segs, s.id)
			s.dropHolds(me)
			s.unmap()
		}
	}
	a.smu.Unlock()
	a.amu.Unlock()
}

// lifeCache answers liveness questions about other processes of the
// exchange directory, keeping their lock files open: one flock system call
// per question. A process found dead stays dead (ids are never reused).
type lifeCache struct {
	dir   string
	mu    sync.Mutex
	files map[uint64]*os.File
	dead  map[uint64]bool
}

// alive reports whether process id lives. When it cannot tell (an
// unexpected error), it answers alive: references are never dropped on a
// guess.
func (c *lifeCache) alive(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead[id] {
		return false
	}
	if c.files == nil {
		c.files, c.dead = make(map[uint64]*os.File), make(map[uint64]bool)
	}
	f := c.files[id]
	if f == nil {
		var err error
		f, err = shm.OpenFile(shm.LifePath(c.dir, id), os.O_RDONLY, 0)
		if errors.Is(err, os.ErrNotExist) {
			c.dead[id] = true
			return false
		}
		if err != nil {
			return true
		}
		c.files[id] = f
	}
	if held, err := lockHeld(f); held || err != nil {
		return true
	}
	f.Close()
	delete(c.files, id)
	c.dead[id] = true
	return false
}

// lockHeld reports whether the process of the open lock file f holds its
// exclusive lock (it lives), with one flock system call: the same test as
// shm.Alive, on a file kept open.
func lockHeld(f *os.File) (bool, error) {
	err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	switch {
	case err == nil:
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	}
	return false, err
}

func (c *lifeCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
}

// Collect removes from the exchange directory dir the arena segments whose
// owner process is dead (it died without closing its store), and the
// temporary files of segments whose creation was interrupted more than a
// minute ago. It returns the names of the files it removed. Processes that
// still map a removed segment keep a valid view of it; new resolves of its
// proxies fail with [ErrOwnerDead]. Files it cannot parse are left in place
// and reported in the error. The arena stores of the directory call it on
// open and periodically; `shmex gc` calls it too. With [DryRun] it removes
// nothing and returns the names of the files it would remove.
func Collect(dir string, opts ...CollectOption) ([]string, error) {
	var o collectOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := shm.CheckDir(dir); err != nil {
		return nil, err
	}
	var lives lifeCache
	lives.dir = dir
	defer lives.close()
	return collect(dir, 0, &lives, o.dryRun)
}

// CollectOption configures [Collect].
type CollectOption func(*collectOptions)

type collectOptions struct{ dryRun bool }

// DryRun makes [Collect] remove nothing: it lists what it would remove.
func DryRun() CollectOption { return func(o *collectOptions) { o.dryRun = true } }

// collect is Collect, skipping the segments of process me; dry removes
// nothing.
func collect(dir string, me uint64, lives *lifeCache, dry bool) ([]string, error) {
	entries, err := shm.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("proxystore: collect %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	tmp := shm.TempPrefix + shm.ArenaPrefix
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmp) && shm.IsTemp(name) {
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > tmpMaxAge {
				if dry || os.Remove(filepath.Join(dir, name)) == nil {
					removed = append(removed, name)
				}
			}
			continue
		}
		meta, ok := parseSegName(name)
		if !ok {
			continue
		}
		path := filepath.Join(dir, name)
		seg, err := shm.Open(path, shm.KindArena, shm.ReadOnly())
		if err != nil {
			if !errors.Is(err, shm.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		h, err := parseArenaHeader(seg.Body(), seg.Info().Size, meta)
		seg.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%w (%s)", err, path))
			continue
		}
		if h.owner == me || lives.alive(h.owner) {
			continue
		}
		if !dry {
			if err := shm.Remove(path); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// parseSegName recognizes arena-<16 hex>.meta and arena-<16 hex>.data.
func parseSegName(name string) (meta, ok bool) {
	rest, found := strings.CutPrefix(name, shm.ArenaPrefix)
	if !found || len(rest) != 16+5 {
		return false, false
	}
	switch rest[16:] {
	case ".meta":
		meta = true
	case ".data":
	default:
		return false, false
	}
	_, ok = parseID16(rest[:16])
	return meta, ok
}
