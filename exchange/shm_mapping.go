package exchange

import (
	"encoding/hex"
	"errors"
	"fmt"
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
//	dest            returns the current mapping of an active        has entered
//	                mailbox for a send, mapping it on first use
//	                and whenever its stamp changed (retiring the
//	                old one); a terminated mailbox gets none
//	destPinned      the same, pinned, for a user that holds no      has entered
//	                box; a terminated mailbox's ring is mapped
//	                for it alone (retired from the start), to
//	                drain or terminate
//	cachedDest      returns the cached mapping without reading      holds nothing (a send)
//	                mapped memory: it may be stale or retired
//	pin, unpin      take and drop a use of a mapping without a      has entered
//	                box; the last unpin of a retired one reclaims
//	retireLocked    unlinks a mapping from the cache for good       holds destMu
//	                and queues it for unmapping
//	reclaim         unmaps every retired mapping that has no user   has entered (reclaimLocked:
//	                (releaseIfIdle, one mapping)                    and holds destMu)
//	stale           says whether a mapping can carry no message     has entered, or holds a
//	                any more: its slot's stamp changed (the         box or a pin of it
//	                mailbox was terminated or reopened, or the
//	                slot reused)
//	reap, reapAll   retire the stale mapping of one mailbox, of     has entered
//	                every mailbox, then reclaim; reapAll also runs
//	                when dest's slow path or a send's periodic
//	                owner check finds the registry changed
//
// closeBoxes and Close's unmap belong to the handle's Close, which runs
// alone (invariant 5).

// dest is a mapped mailbox ring, shared by the senders and receivers of one
// handle.
//
// Mapping lifecycle. A handle maps a mailbox's ring at its first use and
// keeps the mapping while it can carry messages: while the stamp of the
// mailbox's registry slot is the one it was mapped under. One that cannot
// any more (its mailbox was terminated or reopened on a new ring, or its
// slot reused for another mailbox) is retired, then unmapped once nobody
// uses it, while the handle lives; the steady-state send path pays nothing
// for it (no atomic, no lock beyond the box CAS it always made, and the
// one load of the stamp it always made). Invariants:
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
//     is false, or given with a dest that is never linked: a mailbox
//     client for its whole life, Terminate, Status and sendOnce
//     terminating a dead owner's mailbox, Close of the process's last
//     handle). The Go fields of a dest (id, index, stamp, r's
//     configuration) stay readable after the unmap. A dest whose ring
//     faulted (another process truncated its file) is retired and never
//     touched again, not even to give its producer slots back.
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
//     runs whenever dest's slow path runs (it retires a stale dest there,
//     and every stale one when the registry changed since it last looked),
//     after a Terminate, a Reopen and a Collect of this handle, when a send
//     had to retry off a stale ring (its box free by then) or found its
//     mailbox terminated, after a send whose periodic owner check finds the
//     registry changed, and when the last pin of a dead dest goes. A send
//     holds a box for one claim, so the dests left over by a pass are at
//     most those with a send in progress at that moment, or pinned (an
//     open mailbox client, a termination): a number bounded by the
//     goroutines using the handle, not by the mailboxes seen. A mapping of
//     a terminated mailbox, made for a client that drains it or for a
//     termination, is retired from the start: it goes with its last pin.
//  5. Close. A send uses a mapping (and reads the registry) only while it
//     holds a box, without having entered; a receive only while it holds
//     its mailbox client's mu. Close takes x.mu for writing (no entered
//     operation is in progress, and none can start), waits for each
//     mailbox client's mu (its receiver interrupted), then closes every
//     box of every dest, waiting for those held; only then does it unmap
//     the dests and the registry. Every reclaim runs inside an entered
//     operation, never alongside Close. (A receive asleep on a ring that
//     faulted cannot be woken: Close leaves it, and its mapping, alone.)
type dest struct {
	id        EntityID
	index     int   // registry slot
	stamp     stamp // the slot's stamp when mapped: the mapping is current while it stays
	seg       *shm.Segment
	r         *ring.Ring
	boxes     [producersPerDest]prodBox
	lastCheck atomic.Int64 // unix nanos of the last owner liveness check
	dead      atomic.Bool  // retired: unlinked from x.dests, never linked again
	pins      atomic.Int32 // users that hold no box (see the lifecycle above)
	faulted   atomic.Bool  // its ring faulted: never touched again (see quarantine)
	stuck     atomic.Bool  // a Recv sleeps on its faulted ring for ever: never unmapped
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

// dest returns the mapped ring of id's mailbox for a send, mapping it on
// first use, and again after the mailbox's stamp changed. The cache is
// keyed by UUID, but the role is part of the id: a cached ring is returned
// only for its whole id, and the same UUID with the other role is
// [ErrBadEntityID]. A terminated mailbox is [ErrMailboxClosed], and no
// ring is mapped for it.
func (x *SHM) dest(id EntityID) (*dest, error) {
	d, _, err := x.destFor(id, false)
	return d, err
}

// destPinned is dest for a user of the mapping that holds no producer box
// (see the lifecycle at dest): it returns d pinned; unpin it when done. A
// terminated mailbox whose ring is still there (queued messages no one
// has drained yet) gets a mapping of its own, retired from the start.
func (x *SHM) destPinned(id EntityID) (*dest, error) {
	for {
		d, pinned, err := x.destFor(id, true)
		if err != nil {
			return nil, err
		}
		if pinned || x.pin(d) {
			return d, nil
		}
		x.last.CompareAndSwap(d, nil) // retired meanwhile: look again
	}
}

// destFor is dest, and destPinned's look-up when drain is set: then a
// terminated mailbox's ring is mapped too, and returned pinned.
func (x *SHM) destFor(id EntityID, drain bool) (d *dest, pinned bool, err error) {
	if d := x.last.Load(); d != nil && d.id == id && x.reg.stamp(d.index) == d.stamp {
		return d, false, nil
	}
	if v, ok := x.dests.Load(id.UUID); ok {
		if d := v.(*dest); d.id == id && x.reg.stamp(d.index) == d.stamp {
			x.last.Store(d)
			return d, false, nil
		}
	}
	x.destMu.Lock()
	defer x.destMu.Unlock()
	if g := x.reg.generation(); g != x.seenGen.Load() {
		// The registry changed since this handle last looked: retire
		// every mapping that went stale meanwhile, not only id's.
		x.seenGen.Store(g)
		x.retireStaleLocked()
	}
	if v, ok := x.dests.Load(id.UUID); ok {
		d := v.(*dest)
		if x.reg.stamp(d.index) == d.stamp {
			if d.id != id {
				return nil, false, fmt.Errorf("%w: %v", ErrBadEntityID, id)
			}
			return d, false, nil
		}
		// Stale: other goroutines may still use the old mapping; it is
		// unmapped when they are done (see the lifecycle at dest).
		x.retireLocked(d)
	}
	x.reclaimLocked()
	for attempt := 0; ; attempt++ {
		i, s := x.lookup(id)
		if i < 0 {
			return nil, false, fmt.Errorf("%w: %v", ErrBadEntityID, id)
		}
		if s.state() != regActive && !drain {
			return nil, false, fmt.Errorf("%w: %v", ErrMailboxClosed, id)
		}
		d, err := x.mapDest(id, i, s)
		if err == errStale && attempt < 8 {
			continue // the slot changed while we looked
		}
		if err != nil {
			return nil, false, err
		}
		if s.state() != regActive {
			// A terminated mailbox's ring, to drain or terminate: the
			// caller's alone, retired from the start.
			d.dead.Store(true)
			d.pins.Store(1)
			x.retired = append(x.retired, d)
			x.nretired.Store(int32(len(x.retired)))
			return d, true, nil
		}
		x.dests.Store(id.UUID, d)
		return d, false, nil
	}
}

// mapDest maps the ring of id's mailbox, in slot i under stamp s. It
// fails with errStale when the slot's stamp changes meanwhile.
func (x *SHM) mapDest(id EntityID, i int, s stamp) (*dest, error) {
	// find matched the UUID alone: check the whole entry once, before
	// trusting it for the life of the mapping.
	if _, err := x.reg.decode(i); err != nil {
		if !x.reg.current(i, s) {
			return nil, errStale
		}
		return nil, err
	}
	seg, err := shm.Open(ringPath(x.dir, id.UUID, s.inc()), shm.KindRing, shm.Populate())
	if x.reg.stamp(i) != s {
		if err == nil {
			seg.Close()
		}
		return nil, errStale
	}
	if err != nil {
		if errors.Is(err, shm.ErrNotExist) && s.state() != regActive {
			return nil, fmt.Errorf("%w: %v (terminated, and nothing left in it)", ErrMailboxClosed, id)
		}
		return nil, fmt.Errorf("exchange: mailbox %v: %w", id, err)
	}
	r, err := ring.Attach(seg.Body(), ring.Options{Alive: x.alive})
	if err != nil {
		seg.Close()
		return nil, fmt.Errorf("exchange: mailbox %v: %w", id, err)
	}
	d := &dest{id: id, index: i, stamp: s, seg: seg, r: r}
	d.lastCheck.Store(time.Now().UnixNano())
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
	d.unmap()
	return true
}

// unmap gives back d's producer slots and unmaps its ring; every box is
// closed (no sender holds one). A ring that faulted is not written to
// again (see quarantine).
func (d *dest) unmap() {
	for i := range d.boxes {
		if p := d.boxes[i].p; p != nil {
			if !d.faulted.Load() && shm.TolerateFault(func() { p.Close() }) {
				d.faulted.Store(true)
			}
			d.boxes[i].p = nil
		}
	}
	if !d.stuck.Load() {
		d.seg.Close()
	}
}

// stale reports whether the mapping d can carry no message any more: the
// stamp of its slot changed (its mailbox was terminated or reopened, or
// the slot reused for another mailbox), or it was mapped for a
// terminated mailbox.
func (x *SHM) stale(d *dest) bool {
	return d.stamp.state() != regActive || x.reg.stamp(d.index) != d.stamp
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
	x.destMu.Lock()
	defer x.destMu.Unlock() // deferred: the registry may fault (see catch)
	x.seenGen.Store(x.reg.generation())
	x.retireStaleLocked()
	x.reclaimLocked()
}

// reapIfChanged is reapAll when the registry changed since this handle
// last looked. The caller has entered.
func (x *SHM) reapIfChanged() {
	if x.reg.generation() != x.seenGen.Load() {
		x.reapAll()
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

// retireStaleLocked retires every stale mapping; destMu is held.
func (x *SHM) retireStaleLocked() {
	x.dests.Range(func(_, v any) bool {
		if d := v.(*dest); x.stale(d) {
			x.retireLocked(d)
		}
		return true
	})
}
