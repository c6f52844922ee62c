package exchange

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Statistics for operators (`shmex stat`, `shmex ls`): what the exchange
// can tell about its mailboxes by reading shared memory, changing nothing.
// The counters are kept by the rings (see package ring, counters.go), in
// shared memory, by every process that sends to or receives from a
// mailbox, without a lock or a system call on the path of a message.

// ProcessInfo identifies a process of the exchange by its liveness lock.
type ProcessInfo struct {
	// ID is the process's liveness id (its lock file is live-<ID in hex>
	// in the exchange directory); 0 means no process.
	ID uint64
	// PID is the pid the process wrote in its lock file; 0 when unknown.
	// Pids are reused: Alive, which tests the lock, is what tells.
	PID int
	// Alive reports whether the process holds its liveness lock.
	Alive bool
}

// MailboxStats is a snapshot of one mailbox: its registry entry, the
// processes that own it and receive from it, its ring's occupancy and the
// counters of what went through it since the ring was made (a Reopen makes
// a new ring, with counters from zero).
type MailboxStats struct {
	EntityInfo // Status as Entities reports it: a dead owner's mailbox reads terminated

	// Incarnation is how many times the mailbox was reopened.
	Incarnation uint32
	// Owner is the process that owns the mailbox (whose death terminates it).
	Owner ProcessInfo
	// Receiver is the process attached to the ring as its receiver (ID 0:
	// none is).
	Receiver ProcessInfo

	// HasRing is false when the mailbox's ring is gone (a terminated
	// mailbox drained or collected): the fields below are then zero.
	HasRing bool
	// Capacity is the ring's data area, in bytes; MaxMessage the largest
	// encoded message it takes.
	Capacity, MaxMessage int
	// Depth is the bytes queued: claimed by senders and not yet read
	// (record headers and padding included).
	Depth int
	// Producers is the number of producer slots in use (senders attached,
	// a few per sending handle), of Slots.
	Producers, Slots int
	// Closed reports whether the ring is closed (the mailbox terminated).
	Closed bool

	// Counters are the ring's cumulative counts: messages and encoded bytes
	// sent and received, full-ring waits, futex sleeps and wake-ups (see
	// ring.Counters). A process built with the tag shmex_nocounters leaves
	// them as they are.
	ring.Counters
	// Recovered is the number of messages left half-written by senders
	// that died, turned into padding by the receiver (RecoveredByTimeout
	// of them after a timeout, their sender unknown), RecoveredBytes
	// their space.
	Recovered, RecoveredByTimeout, RecoveredBytes uint64
}

// Queued returns the messages sent and not yet received, from the
// counters (one too many for each sender that died between counting a
// message and committing it: see ring's counters.go).
func (s *MailboxStats) Queued() uint64 {
	if s.Sent < s.Received {
		return 0
	}
	return s.Sent - s.Received
}

// MailboxStats returns a snapshot of the mailbox of id ([ErrBadEntityID]
// when the registry does not hold it). It changes nothing, in the registry
// or in the ring, which it maps read-only for the call: a mailbox whose
// owner is dead is reported terminated without being terminated.
func (x *SHM) MailboxStats(ctx context.Context, id EntityID) (_ MailboxStats, err error) {
	if err := x.enter(); err != nil {
		return MailboxStats{}, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	for {
		i, s := x.lookup(id)
		if i < 0 {
			return MailboxStats{}, fmt.Errorf("%w: %v", ErrBadEntityID, id)
		}
		ms, ok, err := x.slotStats(i, s)
		if !ok {
			continue // the slot was reused while we looked
		}
		return ms, err
	}
}

// Mailboxes returns a snapshot of every mailbox of the registry, active or
// terminated, in the order of their registry slots, as MailboxStats does.
// A damaged entry is skipped (and logged), as Entities does; a mailbox
// whose ring cannot be read is listed with what the registry holds, and
// its error joined in the error returned.
func (x *SHM) Mailboxes(ctx context.Context) (_ []MailboxStats, err error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true)) // see shm_fault.go
	n := x.reg.published()
	out := make([]MailboxStats, 0, n)
	var errs []error
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		s := x.reg.stamp(i)
		if s.state() == regFree {
			continue
		}
		ms, ok, err := x.slotStats(i, s)
		switch {
		case !ok:
			continue // reused while we looked
		case errors.Is(err, errDamagedEntry):
			x.opts.log.Warn("shmex: skipping damaged registry entry", "exchange", x.name, "entry", i, "err", err)
			continue
		case err != nil:
			errs = append(errs, err)
		}
		out = append(out, ms)
	}
	return out, errors.Join(errs...)
}

// errDamagedEntry wraps the error of a registry entry that does not decode.
var errDamagedEntry = errors.New("damaged registry entry")

// slotStats reads the mailbox of registry slot i, found under stamp s. ok
// is false when the slot changed meanwhile (the caller looks again). An
// error about the ring comes with the registry's part of the snapshot.
func (x *SHM) slotStats(i int, s stamp) (ms MailboxStats, ok bool, err error) {
	info, owner, ok, err := x.slotEntity(i, s)
	if !ok || err != nil {
		return ms, ok, err
	}
	ms.EntityInfo = info
	ms.Incarnation = s.inc()
	ms.Owner = x.process(owner)
	rs, found, err := readRing(ringPath(x.dir, info.ID.UUID, s.inc()))
	if cur := x.reg.stamp(i); !cur.sameIncarnation(s) {
		return ms, false, nil // reused or reopened: that ring is not this stamp's
	}
	if err != nil {
		return ms, true, fmt.Errorf("exchange: mailbox %v: %w", info.ID, err)
	}
	if !found {
		return ms, true, nil
	}
	ms.HasRing = true
	ms.Capacity, ms.MaxMessage = rs.Capacity, rs.MaxPayload
	ms.Depth = int(rs.Depth())
	ms.Producers, ms.Slots = rs.Producers, rs.Slots
	ms.Closed = rs.Closed
	ms.Counters = rs.Counters
	ms.Recovered, ms.RecoveredByTimeout, ms.RecoveredBytes = rs.Recovered, rs.RecoveredByTimeout, rs.RecoveredBytes
	if rs.Consumer != 0 {
		ms.Receiver = x.process(rs.Consumer)
	}
	return ms, true, nil
}

// slotEntity reads what registry slot i holds under stamp s: its entity,
// with the status Entities reports (a mailbox whose owner is dead, or
// whose state is damaged, reads terminated), and its owner. ok is false
// when the slot changed meanwhile; err wraps errDamagedEntry when the
// entry does not decode.
func (x *SHM) slotEntity(i int, s stamp) (info EntityInfo, owner uint64, ok bool, err error) {
	e, err := x.reg.decode(i)
	owner = x.reg.owner(i)
	if !x.reg.current(i, s) {
		return info, 0, false, nil
	}
	if err != nil {
		return info, 0, true, fmt.Errorf("%w: %w", errDamagedEntry, err)
	}
	info = EntityInfo{ID: e.id, Name: e.name, Behavior: e.behavior, Status: StatusTerminated}
	if s.state() == regActive && x.alive(owner) {
		info.Status = StatusActive
	}
	return info, owner, x.reg.current(i, s), nil
}

// readRing maps the ring at path read-only, for the time it takes to read
// its Stats. found is false when there is no such file.
func readRing(path string) (st ring.Stats, found bool, err error) {
	seg, err := shm.Open(path, shm.KindRing, shm.ReadOnly())
	if errors.Is(err, shm.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	defer seg.Close()
	if shm.TolerateFault(func() {
		var r *ring.Ring
		if r, err = ring.Attach(seg.Body(), ring.Options{}); err == nil {
			st = r.Stats()
		}
	}) {
		return st, true, fmt.Errorf("%w: its ring faulted as it was read (truncated by another process?)", ring.ErrCorrupt)
	}
	return st, true, err
}

// process returns what the liveness lock of process id tells.
func (x *SHM) process(id uint64) ProcessInfo {
	p := ProcessInfo{ID: id}
	switch {
	case id == 0:
	case id == x.life.id():
		p.PID, p.Alive = os.Getpid(), true
	default:
		if li, err := shm.ReadLife(shm.LifePath(x.dir, id)); err == nil {
			p.PID, p.Alive = li.PID, li.Alive
		}
	}
	return p
}
