package exchange

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// The mapping lifecycle: how a handle maps mailbox rings (dests) and gives
// the mappings back. The invariants are at dest; the verbs, each in one
// place:
//
//	verb            what it does                                    the caller
//	dest            returns the current mapping of a mailbox,       has entered
//	                mapping it on first use, and again after a
//	                Reopen (retiring the old one)
//	cachedDest      returns the cached mapping without reading      holds nothing (a send)
//	                mapped memory: it may be stale or retired
//	pin, unpin      take and drop a use of a mapping without a      has entered
//	                box; the last unpin of a retired one reclaims
//	retireLocked    unlinks a mapping from the cache for good       holds destMu
//	                and queues it for unmapping
//	reclaim         unmaps every retired mapping that has no user   has entered (reclaimLocked:
//	                (releaseIfIdle, one mapping)                    and holds destMu)
//	stale           says whether a mapping can never carry a        has entered, or holds a
//	                message again                                   box or a pin of it
//	reap, reapAll   retire the stale mapping of one mailbox, of     has entered
//	                every mailbox, then reclaim
//
// closeBoxes and Close's unmap belong to the handle's Close, which runs
// alone (invariant 5).

// dest is a mapped mailbox ring, shared by the senders and receivers of one
// handle.
//
// Mapping lifecycle. A handle maps a mailbox's ring at its first use and
// keeps the mapping while it can carry messages. One that cannot any more
// (its mailbox was reopened on a new ring, or terminated and its ring
// collected) is retired, then unmapped once nobody uses it, while the
// handle lives; the steady-state send path pays nothing for it (no atomic,
// no lock beyond the box CAS it always made). Invariants:
//
//  1. Reachability. x.dests and x.last are the only ways to a dest. Every
//     change of x.dests is made under destMu. retire removes a dest from
//     x.dests, then sets dead, then clears x.last if it points at it; a
//     dest is stored in x.dests only when freshly mapped, so a dead one is
//     never stored there again. x.last may still come to point at a dead
//     dest (a dest call that loaded it from x.dests just before the removal
//     stores it after the clear): whoever finds it dead (every box closed,
//     or a pin refused) clears x.last again, so it does not stay, and until
//     then its mapping is still valid or its boxes refuse every sender.
//  2. Users. The mapped memory of a dest (its ring, producers and consumer)
//     is touched only by the holder of one of its producer boxes (a send:
//     busy moved from boxIdle to boxBusy by CAS, back to boxIdle by its
//     holder alone), or by the holder of a pin (pins > 0, taken while dead
//     is false: a mailbox client for its whole life, Terminate, Status and
//     sendOnce terminating a dead owner's mailbox). The Go fields of a dest
//     (id, index, inc, r's configuration) stay readable after the unmap.
//  3. Release. releaseIfIdle unmaps a dead dest only after it has seen pins
//     == 0 and turned every box from boxIdle to boxClosed by CAS. A pin is
//     taken by incrementing pins, then loading dead (and undone when dead
//     is set): with dead set before releaseIfIdle loads pins, either the
//     pinner sees dead or the releaser sees the pin. A closed box never
//     opens again, so once all are closed no sender holds one and none can
//     take one. This is the race of a sender that loaded the dest just
//     before it was unlinked: its box CAS either comes first (the box is
//     busy, the dest stays mapped, and its write lands in a closed but
//     valid ring) or fails (the box is closed); no check can go stale
//     between the validation and the use, as the CAS is both. A sender that
//     finds every box busy looks at dead and, set, goes back to x.dests
//     (errRetired).
//  4. Progress. A dead dest that still has a user when reclaimLocked looks
//     at it stays in x.retired (its idle boxes already closed). reclaim
//     runs whenever dest's slow path runs (it retires a reopened
//     mailbox's dest there), after a Reopen and a Collect of this handle,
//     when a send had to retry off an old ring (its box free by then) or
//     found its mailbox terminated and its ring collected, and when the
//     last pin of a dead dest goes. A send holds a box for one claim, so
//     the dests left over by a pass are at most those with a send in
//     progress at that moment, or pinned (an open mailbox client, a
//     termination): a number bounded by the goroutines using the handle,
//     not by the incarnations seen.
//  5. Close. A send uses a mapping (and reads the registry) only while it
//     holds a box, without having entered; a receive only while it holds
//     its mailbox client's mu. Close takes x.mu for writing (no entered
//     operation is in progress, and none can start), waits for each
//     mailbox client's mu (its receiver interrupted), then closes every
//     box of every dest, waiting for those held; only then does it unmap
//     the dests and the registry. Every reclaim runs inside an entered
//     operation, never alongside Close.
type dest struct {
	id        EntityID
	index     int    // registry entry
	inc       uint32 // incarnation of the mailbox this ring belongs to
	seg       *shm.Segment
	r         *ring.Ring
	boxes     [producersPerDest]prodBox
	lastCheck atomic.Int64 // unix nanos of the last owner liveness check
	dead      atomic.Bool  // retired: unlinked from x.dests, never linked again
	pins      atomic.Int32 // users that hold no box (see the lifecycle above)
}

// prodBox holds one ring producer, used by one sending goroutine at a time.
type prodBox struct {
	busy  uint32 // boxIdle, boxBusy or boxClosed; atomic, released by shm.StoreRelease32
	sends uint32 // sends made through the box; the holder's alone
	p     *ring.Producer
	_     [48]byte // keep boxes on separate cache lines
}

// take moves b from idle to busy.
func (b *prodBox) take() bool {
	return atomic.LoadUint32(&b.busy) == boxIdle && atomic.CompareAndSwapUint32(&b.busy, boxIdle, boxBusy)
}

// release gives b back. A release store is enough: whoever takes or
// closes b next does so by CAS, a full fence, after which the holder's
// writes to the ring are visible.
func (b *prodBox) release() { shm.StoreRelease32(&b.busy, boxIdle) }

// close moves b to closed for good, waiting for its holder to release it
// if it is busy (Close: a send holds a box for one claim, or, waiting for
// space, until its next look at the handle, within ownerCheckInterval).
// It yields at first, then sleeps, rather than spin through such a wait.
func (b *prodBox) close() {
	for spins := 0; atomic.LoadUint32(&b.busy) != boxClosed && !atomic.CompareAndSwapUint32(&b.busy, boxIdle, boxClosed); spins++ {
		if spins < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// closeBoxes closes every box of d, waiting for those held (Close).
func (d *dest) closeBoxes() {
	for i := range d.boxes {
		d.boxes[i].close()
	}
}

// States of a prodBox.
const (
	boxIdle   = 0 // free to take
	boxBusy   = 1 // held by one sending goroutine
	boxClosed = 2 // taken for good by releaseIfIdle: the mapping goes away
)

// ringPath returns the path of the ring of incarnation inc of mailbox u.
func ringPath(dir string, u UUID, inc uint32) string {
	p := filepath.Join(dir, shm.RingPrefix+hex.EncodeToString(u[:]))
	if inc > 0 {
		p += "." + strconv.FormatUint(uint64(inc), 10)
	}
	return p
}

// dest returns the mapped ring of id's mailbox, mapping it on first use,
// and again after the mailbox was reopened. The cache is keyed by UUID, but
// the role is part of the id: a cached ring is returned only for its whole
// id, and the same UUID with the other role is [ErrBadEntityID].
func (x *SHM) dest(id EntityID) (*dest, error) {
	if d := x.last.Load(); d != nil && d.id == id && x.reg.incarnation(d.index) == d.inc {
		return d, nil
	}
	if v, ok := x.dests.Load(id.UUID); ok {
		if d := v.(*dest); d.id == id && x.reg.incarnation(d.index) == d.inc {
			x.last.Store(d)
			return d, nil
		}
	}
	x.destMu.Lock()
	defer x.destMu.Unlock()
	x.reclaimLocked()
	if v, ok := x.dests.Load(id.UUID); ok {
		d := v.(*dest)
		if d.id != id {
			return nil, fmt.Errorf("%w: %v", ErrBadEntityID, id)
		}
		if x.reg.incarnation(d.index) == d.inc {
			return d, nil
		}
		// Reopened: other goroutines may still use the old mapping; it
		// is unmapped when they are done (see the lifecycle at dest).
		x.retireLocked(d)
		x.reclaimLocked()
	}
	i := x.lookup(id)
	if i < 0 {
		return nil, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	// find matched the UUID alone: check the whole entry once, before
	// trusting it for the life of the mapping.
	if _, err := x.reg.decode(i); err != nil {
		return nil, err
	}
	var seg *shm.Segment
	var inc uint32
	for attempt := 0; ; attempt++ {
		inc = x.reg.incarnation(i)
		var err error
		seg, err = shm.Open(ringPath(x.dir, id.UUID, inc), shm.KindRing, shm.Populate())
		if err == nil {
			break
		}
		// The state before the incarnation: Reopen stores the new
		// incarnation, then the active state, so an active state read
		// first comes with the new incarnation.
		st := x.reg.state(i)
		if errors.Is(err, shm.ErrNotExist) && x.reg.incarnation(i) != inc && attempt < 8 {
			continue // reopened while we looked
		}
		if errors.Is(err, shm.ErrNotExist) && st == regTerminated {
			return nil, fmt.Errorf("%w: %v (collected)", ErrMailboxClosed, id)
		}
		return nil, fmt.Errorf("exchange: mailbox %v: %w", id, err)
	}
	r, err := ring.Attach(seg.Body(), ring.Options{Alive: x.alive})
	if err != nil {
		seg.Close()
		return nil, fmt.Errorf("exchange: mailbox %v: %w", id, err)
	}
	d := &dest{id: id, index: i, inc: inc, seg: seg, r: r}
	d.lastCheck.Store(time.Now().UnixNano())
	x.dests.Store(id.UUID, d)
	return d, nil
}

// cachedDest returns the mapping of id's mailbox that this handle has
// cached, or nil. It reads no mapped memory (a send calls it before it
// holds a box): the mapping may be of an earlier incarnation, or retired,
// which the send finds out once it holds a box.
func (x *SHM) cachedDest(id EntityID) *dest {
	if d := x.last.Load(); d != nil && d.id == id {
		return d
	}
	if v, ok := x.dests.Load(id.UUID); ok {
		if d := v.(*dest); d.id == id {
			x.last.Store(d)
			return d
		}
	}
	return nil
}

// destPinned is dest for a user of the mapping that holds no producer box
// (see the lifecycle at dest): it returns d pinned; unpin it when done.
func (x *SHM) destPinned(id EntityID) (*dest, error) {
	for {
		d, err := x.dest(id)
		if err != nil {
			return nil, err
		}
		if x.pin(d) {
			return d, nil
		}
		x.last.CompareAndSwap(d, nil) // retired meanwhile: look again
	}
}

// pin takes a pin on d, unless d is retired (false, and no pin held).
func (x *SHM) pin(d *dest) bool {
	d.pins.Add(1)
	if !d.dead.Load() {
		return true
	}
	x.unpin(d)
	return false
}

// unpin drops a pin of d, unmapping d if it was the last one of a retired
// dest. The caller has entered and does not hold destMu.
func (x *SHM) unpin(d *dest) {
	if d.pins.Add(-1) == 0 && d.dead.Load() {
		x.reclaim()
	}
}

// retireLocked unlinks d, the mapping of a mailbox that can carry no more
// messages through it, and queues it for unmapping. destMu is held.
func (x *SHM) retireLocked(d *dest) {
	if !x.dests.CompareAndDelete(d.id.UUID, d) {
		return // not linked: retired already
	}
	d.dead.Store(true)
	x.last.CompareAndSwap(d, nil)
	x.retired = append(x.retired, d)
	x.nretired.Store(int32(len(x.retired)))
}

// reclaim unmaps the retired dests that nobody uses any more. The caller
// has entered and does not hold destMu.
func (x *SHM) reclaim() {
	x.destMu.Lock()
	x.reclaimLocked()
	x.destMu.Unlock()
}

// reclaimLocked is reclaim with destMu held.
func (x *SHM) reclaimLocked() {
	if len(x.retired) == 0 {
		return
	}
	kept := x.retired[:0]
	for _, d := range x.retired {
		if !d.releaseIfIdle() {
			kept = append(kept, d)
		}
	}
	clear(x.retired[len(kept):])
	x.retired = kept
	x.nretired.Store(int32(len(kept)))
}

// releaseIfIdle unmaps the retired d when it has no user: no pin, and every
// box closed (those still held by a send stay open and d stays mapped; the
// others are closed already, for the next attempt). It reports whether it
// unmapped d.
func (d *dest) releaseIfIdle() bool {
	if d.pins.Load() != 0 { // dead is set: no pin can be taken any more
		return false
	}
	idle := true
	for i := range d.boxes {
		b := &d.boxes[i]
		if atomic.LoadUint32(&b.busy) != boxClosed && !atomic.CompareAndSwapUint32(&b.busy, boxIdle, boxClosed) {
			idle = false
		}
	}
	if !idle {
		return false
	}
	// Every box is closed, and was released (or never taken) before:
	// the producers' writes happened before the CASes that closed them.
	for i := range d.boxes {
		if p := d.boxes[i].p; p != nil {
			p.Close()
			d.boxes[i].p = nil
		}
	}
	d.seg.Close()
	return true
}

// stale reports whether the mapping d can never carry a message again: its
// mailbox was reopened on another ring, or it is terminated and its ring was
// collected (a ring's path is never used again once removed).
func (x *SHM) stale(d *dest) bool {
	if x.reg.incarnation(d.index) != d.inc {
		return true
	}
	if x.reg.state(d.index) != regTerminated {
		return false
	}
	_, err := os.Stat(ringPath(x.dir, d.id.UUID, d.inc))
	return errors.Is(err, fs.ErrNotExist)
}

// reap retires this handle's mapping of mailbox id if it is stale, then
// reclaims. A send to id that failed with [ErrMailboxClosed] may have gone
// through a retired mapping still cached in x.last, whose box it held, so
// that the retire could not close it: reap uncaches it, and, its box free
// now, reclaim unmaps it (x.dests has no entry for it, so no lookup's slow
// path would). The caller has entered.
func (x *SHM) reap(id EntityID) {
	if d := x.last.Load(); d != nil && d.dead.Load() {
		x.last.CompareAndSwap(d, nil)
	}
	x.retireIfStale(id.UUID)
	if x.nretired.Load() != 0 {
		x.reclaim()
	}
}

// reapAll is reap for every mapping of this handle. The caller has entered.
func (x *SHM) reapAll() {
	x.dests.Range(func(k, _ any) bool {
		x.retireIfStale(k.(UUID))
		return true
	})
	if x.nretired.Load() != 0 {
		x.reclaim()
	}
}

// retireIfStale retires this handle's mapping of mailbox u if it is stale.
func (x *SHM) retireIfStale(u UUID) {
	v, ok := x.dests.Load(u)
	if !ok || !x.stale(v.(*dest)) {
		return
	}
	x.destMu.Lock()
	x.retireLocked(v.(*dest))
	x.destMu.Unlock()
}
