package exchange

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// RegisterAgent implements [Exchange.RegisterAgent].
func (x *SHM) RegisterAgent(ctx context.Context, behavior Behavior, opts ...RegisterOption) (EntityID, error) {
	if behavior.Name == "" {
		return EntityID{}, fmt.Errorf("%w: empty behavior name", ErrInvalidArgument)
	}
	id, name, err := ResolveRegistration(RoleAgent, opts)
	if err != nil {
		return EntityID{}, err
	}
	return x.register(id, name, behavior)
}

// RegisterClient implements [Exchange.RegisterClient].
func (x *SHM) RegisterClient(ctx context.Context, opts ...RegisterOption) (EntityID, error) {
	id, name, err := ResolveRegistration(RoleClient, opts)
	if err != nil {
		return EntityID{}, err
	}
	return x.register(id, name, Behavior{})
}

func (x *SHM) register(id EntityID, name string, b Behavior) (_ EntityID, err error) {
	if err := checkFields(name, b); err != nil {
		return EntityID{}, err
	}
	if err := x.enter(); err != nil {
		return EntityID{}, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	for attempt := 0; ; attempt++ {
		err := x.registerLocked(id, name, b)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrRegistryFull) || attempt > 0 {
			return EntityID{}, err
		}
		// Every slot holds an active mailbox: those of dead processes
		// are terminated (as Status would find them), which frees
		// their slots for reuse.
		if x.terminateDeadEntries() == 0 {
			return EntityID{}, err
		}
	}
}

// registerLocked registers id under the registry's lock. It takes a free
// slot if there is one, else the slot of the mailbox terminated longest
// ago, whose ring it removes (see registry_layout.go): that id is
// forgotten, Status reports it missing.
func (x *SHM) registerLocked(id EntityID, name string, b Behavior) error {
	if err := x.reg.lock(); err != nil {
		return err
	}
	defer x.reg.unlock()
	if x.reg.repairCount() {
		x.opts.log.Error("shmex: registry count was damaged; repaired", "exchange", x.name, "count", x.reg.published())
	}
	if i, _ := x.reg.find(id.UUID); i >= 0 {
		return fmt.Errorf("%w: %v", ErrDuplicateID, id)
	}
	i, reused, err := x.reg.slotFor()
	if err != nil {
		return err
	}
	capacity := x.opts.mailboxBytes
	path := ringPath(x.dir, id.UUID, 0)
	if err := createRing(path, capacity, capacity/4); err != nil {
		return err
	}
	if reused && x.reg.reaches(i) {
		// The terminated mailbox that held the slot is forgotten: its
		// ring goes (a receiver still draining it keeps its mapping).
		// A shadowed duplicate's path is another entry's ring.
		shm.Remove(ringPath(x.dir, x.reg.uuidAt(i), x.reg.incarnation(i)))
	}
	e := entry{id: id, name: name, behavior: b, ringCap: capacity, maxRecord: capacity / 4}
	x.reg.fill(i, e, x.life.id())
	return nil
}

// createRing creates the ring segment of a mailbox at path, replacing one
// left there by a registration or Reopen that died before publishing it.
func createRing(path string, capacity, maxRecord int) error {
	cfg := ring.Config{Capacity: capacity, MaxRecord: maxRecord, Slots: ringSlots}
	shm.Remove(path)
	seg, err := shm.Create(path, shm.KindRing, int64(shm.HeaderSize+ring.Size(cfg.Capacity, cfg.Slots)),
		func(body []byte) error { _, err := ring.New(body, cfg, ring.Options{}); return err })
	if err != nil {
		return err
	}
	return seg.Close()
}

// lookup returns the registry slot of id and its stamp, or -1. The stamp
// was read before the slot's UUID: whoever reads more of the slot checks
// afterwards, with reg.current, that it still holds id.
func (x *SHM) lookup(id EntityID) (int, stamp) {
	for attempt := 0; attempt < 16; attempt++ {
		i, s := x.reg.find(id.UUID)
		if i < 0 {
			return -1, 0
		}
		role := x.reg.roleAt(i)
		if !x.reg.current(i, s) {
			continue // the slot was reused while we looked: look again
		}
		if role != id.Role {
			return -1, 0
		}
		return i, s
	}
	return -1, 0
}

// Status implements [Exchange.Status]. An active mailbox whose owner
// process is dead is reported (and marked) terminated. A terminated
// mailbox is reported terminated until its registry slot is taken by a
// new registration (only when no free slot is left, the one terminated
// longest ago first): then its id is forgotten, and reported missing, as
// the registry no longer holds anything of it. Never is another
// mailbox's state reported for it.
func (x *SHM) Status(ctx context.Context, id EntityID) (_ Status, err error) {
	if err := x.enter(); err != nil {
		return StatusMissing, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	for {
		i, s := x.lookup(id)
		if i < 0 {
			return StatusMissing, nil
		}
		if st := x.status(i, id); x.reg.current(i, s) {
			return st, nil
		}
		// The slot was reused while we looked: id is forgotten, unless
		// it was registered again elsewhere.
	}
}

// status returns the state of id's mailbox, in slot i. An active one whose
// owner is dead is terminated first, and so is one whose state is damaged
// (neither active nor terminated: written by a faulty process). The caller
// checks that slot i still holds id afterwards.
//
// The stamp is read before the owner, and the termination is of that
// stamp's incarnation only, with that owner, checked again under the
// registry's lock: a supervisor may terminate the dead owner's mailbox and
// reopen it (a new incarnation, with a live owner) between this look and
// the termination, and the new incarnation must not be terminated for the
// death of the old one's owner. When the mailbox changed meanwhile, status
// looks again.
func (x *SHM) status(i int, id EntityID) Status {
	first := x.reg.stamp(i)
	for {
		s := x.reg.stamp(i)
		if s.gen() != first.gen() {
			return StatusMissing // the slot was reused: the caller looks again
		}
		owner := x.reg.owner(i)
		switch s.state() {
		case regTerminated:
			return StatusTerminated
		case regActive:
			if x.alive(owner) {
				return StatusActive
			}
		case regFree:
			return StatusMissing
		default:
			x.opts.log.Error("shmex: damaged state in the registry; terminating the mailbox", "exchange", x.name, "mailbox", id)
			owner = anyOwner
		}
		if hook := testHookDeadOwner.Load(); hook != nil {
			(*hook)(id)
		}
		// The dead owner's mailbox is terminated only while that owner
		// owns that incarnation.
		if x.terminateStamp(id, s, owner) {
			return StatusTerminated
		}
		if x.reg.stamp(i) == s {
			// Slot i did not change, yet its mailbox was not
			// terminated: id's look-up reaches another slot (a damaged
			// registry holds its UUID twice, and this entry is
			// shadowed). Its entry goes in the registry alone (the ring
			// at its path is the other entry's), or status would look
			// again for ever (FuzzRegistryEntries found that).
			if x.terminateSlotEntry(i, s, owner) {
				return StatusTerminated
			}
		}
	}
}

// testHookDeadOwner, when set (by tests), is called by status after it
// found an active mailbox's owner dead (or its state damaged), before it
// terminates the mailbox.
var testHookDeadOwner atomic.Pointer[func(id EntityID)]

// terminateStamp terminates the mailbox of id if its registry stamp is
// still s and its owner still owner (anyOwner: any), and reports whether
// the mailbox is terminated in s's incarnation (by this call or another),
// false when it changed: reopened, taken over by a new owner, or its slot
// reused.
func (x *SHM) terminateStamp(id EntityID, s stamp, owner uint64) bool {
	d, err := x.destPinned(id)
	if err != nil {
		return x.terminateEntry(id, s, owner) // no ring to close: the registry alone
	}
	defer x.unpin(d)
	if d.stamp != s {
		// Mapped under another stamp: the mailbox changed since s was
		// read (or d is a mapping of a terminated s, which the next
		// look reports).
		return false
	}
	x.opts.log.Debug("shmex: owner of mailbox died; terminating it", "exchange", x.name, "mailbox", id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if done, err := x.terminateIf(ctx, d, owner); done || err != nil {
		return true // err: the registry's lock failed; the owner is dead all the same
	}
	cur := x.reg.stamp(d.index)
	return cur.sameIncarnation(s) && cur.state() == regTerminated
}

// Info implements [Exchange.Info]: what the registry holds about id, with
// the Status that Status reports.
func (x *SHM) Info(ctx context.Context, id EntityID) (_ EntityInfo, err error) {
	if err := x.enter(); err != nil {
		return EntityInfo{}, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	for {
		i, s := x.lookup(id)
		if i < 0 {
			return EntityInfo{}, fmt.Errorf("%w: %v", ErrBadEntityID, id)
		}
		e, err := x.reg.decode(i)
		st := x.status(i, id)
		if !x.reg.current(i, s) {
			continue // reused while we looked
		}
		if err != nil {
			return EntityInfo{}, err
		}
		return EntityInfo{ID: e.id, Name: e.name, Behavior: e.behavior, Status: st}, nil
	}
}

// Discover implements [Exchange.Discover]. Agents whose owner process is
// dead are not returned.
func (x *SHM) Discover(ctx context.Context, behavior string, allowSubtypes bool) (_ []EntityID, err error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	var found []EntityID
	var slots []int
	n := x.reg.published()
	for i := 0; i < n; i++ {
		s := x.reg.stamp(i)
		if s.state() != regActive || x.reg.roleAt(i) != RoleAgent {
			continue
		}
		e, err := x.reg.decode(i)
		if !x.reg.current(i, s) {
			continue // reused while we looked: a registration since Discover began
		}
		if err != nil {
			x.opts.log.Warn("shmex: skipping damaged registry entry", "exchange", x.name, "entry", i, "err", err)
			continue
		}
		if e.behavior.Matches(behavior, allowSubtypes) && x.status(i, e.id) == StatusActive && x.reg.current(i, s) {
			found, slots = append(found, e.id), append(slots, i)
		}
	}
	return x.reg.dropShadowed(found, slots), nil
}

// terminateDeadEntries terminates the active mailboxes whose owner process
// is dead, as Status would find them, and returns how many it terminated.
func (x *SHM) terminateDeadEntries() int {
	n, done := x.reg.published(), 0
	for i := 0; i < n; i++ {
		s := x.reg.stamp(i)
		if s.state() != regActive || x.alive(x.reg.owner(i)) {
			continue
		}
		id := EntityID{UUID: x.reg.uuidAt(i), Role: x.reg.roleAt(i)}
		if x.reg.current(i, s) && x.status(i, id) == StatusTerminated {
			done++
		}
	}
	return done
}
