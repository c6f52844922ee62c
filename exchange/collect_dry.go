package exchange

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// collectDry is Collect with DryRun: it lists what Collect would remove,
// deciding each file as Collect does, and changes nothing. The caller has
// entered.
func (x *SHM) collectDry(ctx context.Context) (st CollectStats, err error) {
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
		u, owner := x.reg.uuidAt(i), x.reg.owner(i)
		if !x.reg.current(i, s) {
			continue
		}
		path := ringPath(x.dir, u, s.inc())
		named[filepath.Base(path)] = true
		// Collect terminates the mailbox of a dead owner (active, or
		// damaged), then removes the ring of every terminated mailbox
		// whose owner is dead, unless a live receiver is attached.
		if x.alive(owner) || !x.reg.reaches(i) || !x.ringCollectable(path) {
			continue
		}
		st.Rings++
		st.Removed = append(st.Removed, filepath.Base(path))
	}
	return x.collectDir(st, named, true)
}

// ringCollectable reports whether Collect would remove the ring at path of
// a mailbox whose owner is dead: it exists, and no live receiver is
// attached to it (a ring that does not validate is removed too, as
// collectRing does). It maps the ring read-only.
func (x *SHM) ringCollectable(path string) bool {
	seg, err := shm.Open(path, shm.KindRing, shm.ReadOnly())
	if errors.Is(err, shm.ErrNotExist) {
		return false
	}
	if err != nil {
		return true // damaged
	}
	defer seg.Close()
	var consumer uint64
	if shm.TolerateFault(func() {
		var r *ring.Ring
		if r, err = ring.Attach(seg.Body(), ring.Options{}); err == nil {
			consumer = r.Stats().Consumer
		}
	}) || err != nil {
		return true // damaged
	}
	return consumer == 0 || !x.alive(consumer)
}
