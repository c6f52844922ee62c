package exchange

import (
	"sync"
	"time"

	"github.com/shmex/shmex/shm"
)

func (x *SHM) alive(owner uint64) bool {
	if owner == x.life.id() {
		return true
	}
	ok, err := shm.Alive(x.dir, owner)
	return ok || err != nil // an unreadable lock file is not evidence of death
}

// processLife is this process's liveness lock in one exchange directory,
// shared by every handle of the process on that exchange.
type processLife struct {
	dir  string
	l    *shm.Life
	refs int
}

var (
	livesMu sync.Mutex
	lives   = map[string]*processLife{}
)

func acquireLife(dir string) (*processLife, error) {
	livesMu.Lock()
	defer livesMu.Unlock()
	if pl := lives[dir]; pl != nil {
		pl.refs++
		return pl, nil
	}
	l, err := shm.HoldLife(dir)
	if err != nil {
		return nil, err
	}
	pl := &processLife{dir: dir, l: l, refs: 1}
	lives[dir] = pl
	return pl, nil
}

func (pl *processLife) id() uint64 { return pl.l.ID() }

// leave drops a handle's reference and reports whether it was the last:
// then the process stops being alive to the others once the caller calls
// end. A handle opened from now on gets a liveness lock of its own (the
// mailboxes of this one are cleaned up as the ending process's).
func (pl *processLife) leave() (last bool) {
	livesMu.Lock()
	defer livesMu.Unlock()
	if pl.refs--; pl.refs > 0 {
		return false
	}
	if lives[pl.dir] == pl {
		delete(lives, pl.dir)
	}
	return true
}

// end releases the liveness lock, after the last leave.
func (pl *processLife) end() { pl.l.Close() }

// ownerCheckDue reports whether the owner of d is due for a liveness check,
// and if so takes the turn (one caller per interval).
func (d *dest) ownerCheckDue() bool {
	now, last := time.Now().UnixNano(), d.lastCheck.Load()
	return now-last > int64(ownerCheckInterval) && d.lastCheck.CompareAndSwap(last, now)
}
