package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/shm"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrRegistryFull means the exchange's registry has no room for another
// mailbox (see WithRegistryCapacity).
var ErrRegistryFull = errors.New("exchange: registry full")

// ErrCorruptRegistry means the registry segment's header is damaged.
var ErrCorruptRegistry = errors.New("exchange: corrupt registry")

// registry is a view of the registry segment (see registry_layout.go).
type registry struct {
	seg      *shm.Segment
	body     []byte
	entries  int
	count    *uint32
	gen      *uint64
	lockFile *os.File   // the registry file opened again, for flock
	lockFd   int        // lockFile's descriptor
	lockMu   sync.Mutex // the flock excludes other handles (their own descriptors), this the goroutines of this one
}

// entry is the decoded immutable part of a registry entry.
type entry struct {
	id        EntityID
	name      string
	behavior  Behavior
	creator   uint64
	ringCap   int
	maxRecord int
}

// stamp is a slot's stamp word: generation, state and incarnation (see
// registry_layout.go).
type stamp uint64

func makeStamp(gen, state, inc uint32) stamp {
	return stamp(uint64(gen)<<stampGenShift | uint64(state&3)<<stampStateShift | uint64(inc))
}

// inc returns the incarnation: how many times the mailbox was reopened.
func (s stamp) inc() uint32 { return uint32(s) }

// state returns regFree, regActive, regTerminated, or 3 (damaged).
func (s stamp) state() uint32 { return uint32(s>>stampStateShift) & 3 }

// gen returns the slot's generation: it changes when the slot takes a new
// entry.
func (s stamp) gen() uint32 { return uint32(s >> stampGenShift) }

// sameIncarnation reports whether s and o stamp the same incarnation of the
// same entry of a slot, whatever their states: a mapping, a look-up or a
// sweep made under o still speaks of the mailbox that s stamps now.
func (s stamp) sameIncarnation(o stamp) bool { return s.gen() == o.gen() && s.inc() == o.inc() }

// withState returns s in state st.
func (s stamp) withState(st uint32) stamp { return makeStamp(s.gen(), st, s.inc()) }

func initRegistry(body []byte, entries int) error {
	copy(body, regMagic)
	le := binary.LittleEndian
	le.PutUint32(body[regOffVersion:], regVersion)
	le.PutUint32(body[regOffEntries:], uint32(entries))
	le.PutUint32(body[regOffEntSize:], regEntrySize)
	le.PutUint32(body[regOffCheck:], crc32.Checksum(body[:regOffCheck], castagnoli))
	return nil
}

// attachRegistry validates the registry header in seg's body.
func attachRegistry(seg *shm.Segment) (*registry, error) {
	body := seg.Body()
	if len(body) < regOffTable {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorruptRegistry, len(body))
	}
	le := binary.LittleEndian
	switch {
	case string(body[:8]) != regMagic:
		return nil, fmt.Errorf("%w: bad magic", ErrCorruptRegistry)
	case le.Uint32(body[regOffVersion:]) != regVersion:
		return nil, fmt.Errorf("%w: version %d", ErrCorruptRegistry, le.Uint32(body[regOffVersion:]))
	case le.Uint32(body[regOffCheck:]) != crc32.Checksum(body[:regOffCheck], castagnoli):
		return nil, fmt.Errorf("%w: header checksum", ErrCorruptRegistry)
	case le.Uint32(body[regOffEntSize:]) != regEntrySize:
		return nil, fmt.Errorf("%w: entry size %d", ErrCorruptRegistry, le.Uint32(body[regOffEntSize:]))
	}
	n := int(le.Uint32(body[regOffEntries:]))
	if n < 1 || registrySize(n) > len(body) {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", ErrCorruptRegistry, n, len(body))
	}
	lf, err := openRegistryLock(seg)
	if err != nil {
		return nil, err
	}
	r := &registry{seg: seg, body: body, entries: n, lockFile: lf, lockFd: int(lf.Fd()),
		count: (*uint32)(unsafe.Pointer(&body[regOffCount])),
		gen:   (*uint64)(unsafe.Pointer(&body[regOffGen]))}
	return r, nil
}

// openRegistryLock opens the registry file that seg maps again, for the
// writers' flock: through shm.OpenFile, which neither blocks on a FIFO nor
// takes anything but a regular file, and only while the path still names
// the file mapped. Another process may have put something else there
// since seg was opened: a lock on another file would exclude nobody.
func openRegistryLock(seg *shm.Segment) (*os.File, error) {
	f, err := shm.OpenFile(seg.Path(), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("exchange: open registry lock: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("exchange: open registry lock: %w", err)
	}
	if !seg.SameFile(fi) {
		f.Close()
		return nil, fmt.Errorf("%w: %s", errRegistryReplaced, seg.Path())
	}
	return f, nil
}

// errRegistryReplaced tells openRegistry that the registry's path named
// another file when it was opened again for the lock (the exchange was
// removed and made again meanwhile, or something else was put there).
var errRegistryReplaced = errors.New("exchange: the registry file was replaced while it was opened")

func (r *registry) close() {
	if r.lockFile != nil {
		r.lockFile.Close()
		r.lockFile, r.lockFd = nil, -1
	}
	r.seg.Close()
}

// lock takes the writers' lock; the kernel drops it if this process dies.
// A flock excludes the holders of other open file descriptions only (a
// second flock on the same descriptor succeeds at once): lockMu excludes
// the goroutines of this handle from one another.
func (r *registry) lock() error {
	r.lockMu.Lock()
	for {
		err := unix.Flock(r.lockFd, unix.LOCK_EX)
		if err == nil {
			return nil
		}
		if err != unix.EINTR {
			r.lockMu.Unlock()
			return err
		}
	}
}

func (r *registry) unlock() {
	unix.Flock(r.lockFd, unix.LOCK_UN)
	r.lockMu.Unlock()
}

// published returns how many slots may hold an entry: count, bounded by
// the capacity (a count above it is damaged; see repairCount).
func (r *registry) published() int {
	return min(int(atomic.LoadUint32(r.count)), r.entries)
}

// generation returns the registry's change counter.
func (r *registry) generation() uint64 { return atomic.LoadUint64(r.gen) }

// changed bumps the change counter and wakes the processes waiting for a
// change (wait.go); the caller holds the lock and has made a change.
func (r *registry) changed() { atomic.AddUint64(r.gen, 1); r.wakeWatchers() }

func (r *registry) raw(i int) []byte {
	off := regOffTable + i*regEntrySize
	return r.body[off : off+regEntrySize]
}

func (r *registry) word64(i, field int) *uint64 {
	return (*uint64)(unsafe.Pointer(&r.raw(i)[field]))
}

// stamp returns slot i's stamp: one atomic load.
func (r *registry) stamp(i int) stamp { return stamp(atomic.LoadUint64(r.word64(i, entStamp))) }

// setStamp stores slot i's stamp; the caller holds the lock.
func (r *registry) setStamp(i int, s stamp) { atomic.StoreUint64(r.word64(i, entStamp), uint64(s)) }

// state returns the state of slot i.
func (r *registry) state(i int) uint32 { return r.stamp(i).state() }

// incarnation returns how many times the mailbox of slot i was reopened.
func (r *registry) incarnation(i int) uint32 { return r.stamp(i).inc() }

func (r *registry) owner(i int) uint64 { return atomic.LoadUint64(r.word64(i, entOwner)) }

// setOwner stores slot i's owner; the caller holds the lock.
func (r *registry) setOwner(i int, owner uint64) { atomic.StoreUint64(r.word64(i, entOwner), owner) }

// creator returns the liveness id of the process that registered slot i's
// mailbox (covered by the entry checksum).
func (r *registry) creator(i int) uint64 {
	return binary.LittleEndian.Uint64(r.raw(i)[entCreator:])
}

func (r *registry) terminatedAt(i int) uint64 { return atomic.LoadUint64(r.word64(i, entTermAt)) }

// setTerminated marks the entry of slot i, under stamp s, terminated; the
// caller holds the lock.
func (r *registry) setTerminated(i int, s stamp) {
	atomic.StoreUint64(r.word64(i, entTermAt), r.generation())
	r.setStamp(i, s.withState(regTerminated))
	r.changed()
}

// current reports whether slot i still holds the entry it held under s:
// the slot was not reused since. A reader checks it after reading what it
// needs from the slot.
func (r *registry) current(i int, s stamp) bool { return r.stamp(i).gen() == s.gen() }

func entryChecksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[entRole:entChecksum])
	c = crc32.Update(c, castagnoli, b[entUUID:entOwner])
	c = crc32.Update(c, castagnoli, b[entCreator:entTermAt])
	return crc32.Update(c, castagnoli, b[entRingCap:regEntrySize])
}

// uuidAt returns the UUID of entry i without decoding the rest.
func (r *registry) uuidAt(i int) UUID { return UUID(r.raw(i)[entUUID : entUUID+16]) }

// roleAt returns the role of entry i without decoding the rest.
func (r *registry) roleAt(i int) Role { return Role(r.raw(i)[entRole]) }

// decode validates and decodes entry i. A damaged entry is an error.
func (r *registry) decode(i int) (entry, error) {
	b := r.raw(i)
	if binary.LittleEndian.Uint32(b[entChecksum:]) != entryChecksum(b) {
		return entry{}, fmt.Errorf("%w: entry %d checksum", ErrCorruptRegistry, i)
	}
	nl, bl, ic := int(b[entNameLen]), int(b[entBehLen]), int(b[entImplCount])
	role := Role(b[entRole])
	if nl > regMaxName || bl > regMaxBehavior || !role.Valid() || UUID(b[entUUID:entUUID+16]).IsZero() {
		return entry{}, fmt.Errorf("%w: entry %d fields", ErrCorruptRegistry, i)
	}
	e := entry{
		id:        EntityID{UUID: UUID(b[entUUID : entUUID+16]), Role: role},
		name:      string(b[entName : entName+nl]),
		creator:   binary.LittleEndian.Uint64(b[entCreator:]),
		ringCap:   int(binary.LittleEndian.Uint32(b[entRingCap:])),
		maxRecord: int(binary.LittleEndian.Uint32(b[entMaxRecord:])),
	}
	e.behavior.Name = string(b[entBehavior : entBehavior+bl])
	impl := b[entImpl:regEntrySize]
	for k := 0; k < ic; k++ {
		if len(impl) < 1 || int(impl[0])+1 > len(impl) {
			return entry{}, fmt.Errorf("%w: entry %d implements", ErrCorruptRegistry, i)
		}
		n := 1 + int(impl[0]) // an int: 1+impl[0] in bytes wraps to 0 for a name of 255 bytes
		e.behavior.Implements = append(e.behavior.Implements, string(impl[1:n]))
		impl = impl[n:]
	}
	return e, nil
}

// find returns the slot that holds the entry with UUID u, and its stamp as
// read before the UUID: check it with current after reading the entry.
// It returns -1 when no slot holds u, and for the zero UUID, which no
// entry holds (one that does is damaged: see decode).
func (r *registry) find(u UUID) (int, stamp) {
	if u.isZero() {
		return -1, 0
	}
	n := r.published()
	for i := 0; i < n; i++ {
		s := r.stamp(i)
		if s.state() != regFree && r.uuidAt(i) == u {
			return i, s
		}
	}
	return -1, 0
}

// reaches reports whether a look-up of slot i's UUID finds slot i: false
// for a shadowed duplicate (a faulty writer's), whose ring path is the
// entry's that the look-up finds, never its own to remove.
func (r *registry) reaches(i int) bool {
	j, _ := r.find(r.uuidAt(i))
	return j == i
}

// dropShadowed drops from found, the ids Discover read from slots (in
// slot order), those whose UUID an earlier slot holds too: a faulty
// writer's duplicate, that no lookup reaches (find answers the first
// slot), so that Discover never reports an id that Info and Status would
// describe from another entry. One pass over the slots before the last
// found, and a map of the found ids, only when something was found: lost
// in the noise of a Discover of 2,000 entries (about 2 ms, which checks
// each owner's liveness).
func (r *registry) dropShadowed(found []EntityID, slots []int) []EntityID {
	if len(found) == 0 {
		return found
	}
	first := make(map[UUID]int, len(found))
	for k, id := range found {
		first[id.UUID] = slots[k]
	}
	for j := range min(r.published(), slots[len(slots)-1]) {
		if r.state(j) == regFree {
			continue
		}
		u := r.uuidAt(j)
		if s, ok := first[u]; ok && j < s {
			first[u] = j
		}
	}
	kept := found[:0]
	for k, id := range found {
		if first[id.UUID] == slots[k] {
			kept = append(kept, id)
		}
	}
	return kept
}

// checkFields validates what a registration will store.
func checkFields(name string, b Behavior) error {
	size := 0
	for _, s := range b.Implements {
		if len(s) > 255 {
			return fmt.Errorf("%w: implemented behavior name longer than 255 bytes", ErrInvalidArgument)
		}
		size += 1 + len(s)
	}
	switch {
	case len(name) > regMaxName:
		return fmt.Errorf("%w: name longer than %d bytes", ErrInvalidArgument, regMaxName)
	case len(b.Name) > regMaxBehavior:
		return fmt.Errorf("%w: behavior name longer than %d bytes", ErrInvalidArgument, regMaxBehavior)
	case size > regMaxImpl || len(b.Implements) > 255:
		return fmt.Errorf("%w: implemented behaviors take more than %d bytes", ErrInvalidArgument, regMaxImpl)
	}
	return nil
}

// slotFor returns the slot a new registration takes, the caller holding
// the lock: the first free slot, else the next unused one, else the slot
// of the mailbox terminated longest ago (reused reports that one: its ring
// is the caller's to remove), else ErrRegistryFull. A damaged count is
// repaired first.
func (r *registry) slotFor() (i int, reused bool, err error) {
	r.repairCount()
	n := r.published()
	oldest, oldestAt := -1, uint64(0)
	for i := 0; i < n; i++ {
		switch r.state(i) {
		case regFree:
			return i, false, nil
		case regTerminated:
			if at := r.terminatedAt(i); oldest < 0 || at < oldestAt {
				oldest, oldestAt = i, at
			}
		}
	}
	if n < r.entries {
		return n, false, nil
	}
	if oldest >= 0 {
		return oldest, true, nil
	}
	return 0, false, fmt.Errorf("%w: %d mailboxes active", ErrRegistryFull, r.entries)
}

// repairCount makes count right again if a faulty process (or a writer
// killed between publishing a slot and count) left it wrong; the caller
// holds the lock. A count above the capacity, which would make the
// registry full for ever, becomes one past the last slot in use; a count
// below slots in use (that readers would not see, and a registration would
// overwrite) moves past those that run on from it. It reports whether it
// changed count.
func (r *registry) repairCount() bool {
	c := int(atomic.LoadUint32(r.count))
	n := c
	if c > r.entries {
		n = 0
		for i := 0; i < r.entries; i++ {
			if r.state(i) != regFree {
				n = i + 1
			}
		}
	}
	for n < r.entries && r.state(n) != regFree {
		n++
	}
	if n == c {
		return false
	}
	atomic.StoreUint32(r.count, uint32(n))
	r.changed()
	return true
}

// fill writes e into slot i (from slotFor) as a new active entry owned
// and created by owner, and publishes it; the caller holds the lock and
// has checked the fields and that the UUID is new. The slot's stamp says
// free, under a new generation, while it is written: a reader that
// matched the slot's previous UUID finds the generation changed.
func (r *registry) fill(i int, e entry, owner uint64) stamp {
	gen := r.stamp(i).gen() + 1
	r.setStamp(i, makeStamp(gen, regFree, 0))
	b := r.raw(i)
	clear(b[entStamp+8:])
	b[entRole] = byte(e.id.Role)
	b[entNameLen] = byte(copy(b[entName:entName+regMaxName], e.name))
	b[entBehLen] = byte(copy(b[entBehavior:entBehavior+regMaxBehavior], e.behavior.Name))
	b[entImplCount] = byte(len(e.behavior.Implements))
	impl := b[entImpl:regEntrySize]
	for _, s := range e.behavior.Implements {
		impl[0] = byte(len(s))
		copy(impl[1:], s)
		impl = impl[1+len(s):]
	}
	copy(b[entUUID:], e.id.UUID[:])
	binary.LittleEndian.PutUint64(b[entCreator:], owner)
	binary.LittleEndian.PutUint32(b[entRingCap:], uint32(e.ringCap))
	binary.LittleEndian.PutUint32(b[entMaxRecord:], uint32(e.maxRecord))
	binary.LittleEndian.PutUint32(b[entChecksum:], entryChecksum(b))
	r.setOwner(i, owner)
	s := makeStamp(gen, regActive, 0)
	r.setStamp(i, s) // publish
	if i >= int(atomic.LoadUint32(r.count)) {
		atomic.StoreUint32(r.count, uint32(i+1))
	}
	r.changed()
	return s
}

// openRegistry opens the exchange's registry, creating it if it does not
// exist yet. Two processes that race to create it both end up with the one
// that won.
func openRegistry(dir string, entries int) (*registry, error) {
	path := dir + string(os.PathSeparator) + shm.RegistryName
	for attempt := 0; ; attempt++ {
		seg, err := shm.Open(path, shm.KindRegistry)
		if errors.Is(err, shm.ErrNotExist) && attempt < 3 {
			size := int64(shm.HeaderSize + registrySize(entries))
			seg, err = shm.Create(path, shm.KindRegistry, size, func(body []byte) error { return initRegistry(body, entries) })
			if errors.Is(err, shm.ErrExist) {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		r, err := attachRegistry(seg)
		if err != nil {
			seg.Close()
			if errors.Is(err, errRegistryReplaced) && attempt < 3 {
				continue // open what is there now
			}
			return nil, err
		}
		return r, nil
	}
}
