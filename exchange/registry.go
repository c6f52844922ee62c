package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
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

// registry is a view of the registry segment.
type registry struct {
	seg     *shm.Segment
	body    []byte
	entries int
	count   *uint32
	gen     *uint64
	lockFd  int // descriptor of the registry file, for flock
}

// entry is the decoded immutable part of a registry entry.
type entry struct {
	id        EntityID
	name      string
	behavior  Behavior
	ringCap   int
	maxRecord int
}

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
	fd, err := unix.Open(seg.Path(), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("exchange: open registry lock: %w", err)
	}
	r := &registry{seg: seg, body: body, entries: n, lockFd: fd,
		count: (*uint32)(unsafe.Pointer(&body[regOffCount])),
		gen:   (*uint64)(unsafe.Pointer(&body[regOffGen]))}
	return r, nil
}

func (r *registry) close() {
	if r.lockFd >= 0 {
		unix.Close(r.lockFd)
		r.lockFd = -1
	}
	r.seg.Close()
}

// lock takes the writers' lock; the kernel drops it if this process dies.
func (r *registry) lock() error {
	for {
		err := unix.Flock(r.lockFd, unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

func (r *registry) unlock() { unix.Flock(r.lockFd, unix.LOCK_UN) }

func (r *registry) published() int {
	return min(int(atomic.LoadUint32(r.count)), r.entries)
}

func (r *registry) raw(i int) []byte {
	off := regOffTable + i*regEntrySize
	return r.body[off : off+regEntrySize]
}

func (r *registry) stateWord(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.raw(i)[entState]))
}

func (r *registry) ownerWord(i int) *uint64 {
	return (*uint64)(unsafe.Pointer(&r.raw(i)[entOwner]))
}

func (r *registry) incWord(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.raw(i)[entInc]))
}

func (r *registry) state(i int) uint32 { return atomic.LoadUint32(r.stateWord(i)) }

// incarnation returns how many times entry i was reopened.
func (r *registry) incarnation(i int) uint32 { return atomic.LoadUint32(r.incWord(i)) }
func (r *registry) owner(i int) uint64       { return atomic.LoadUint64(r.ownerWord(i)) }

func entryChecksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[4:24])
	c = crc32.Update(c, castagnoli, b[32:40])
	return crc32.Update(c, castagnoli, b[48:regEntrySize])
}

// uuidAt returns the UUID of entry i without decoding the rest.
func (r *registry) uuidAt(i int) UUID { return UUID(r.raw(i)[entUUID : entUUID+16]) }

// decode validates and decodes entry i. A damaged entry is an error.
func (r *registry) decode(i int) (entry, error) {
	b := r.raw(i)
	if binary.LittleEndian.Uint32(b[entChecksum:]) != entryChecksum(b) {
		return entry{}, fmt.Errorf("%w: entry %d checksum", ErrCorruptRegistry, i)
	}
	nl, bl, ic := int(b[entNameLen]), int(b[entBehLen]), int(b[entImplCount])
	role := Role(b[entRole])
	if nl > regMaxName || bl > regMaxBehavior || !role.Valid() {
		return entry{}, fmt.Errorf("%w: entry %d fields", ErrCorruptRegistry, i)
	}
	e := entry{
		id:        EntityID{UUID: UUID(b[entUUID : entUUID+16]), Role: role},
		name:      string(b[entName : entName+nl]),
		ringCap:   int(binary.LittleEndian.Uint32(b[entRingCap:])),
		maxRecord: int(binary.LittleEndian.Uint32(b[entMaxRecord:])),
	}
	e.behavior.Name = string(b[entBehavior : entBehavior+bl])
	impl := b[entImpl:regEntrySize]
	for k := 0; k < ic; k++ {
		if len(impl) < 1 || int(impl[0])+1 > len(impl) {
			return entry{}, fmt.Errorf("%w: entry %d implements", ErrCorruptRegistry, i)
		}
		e.behavior.Implements = append(e.behavior.Implements, string(impl[1:1+impl[0]]))
		impl = impl[1+impl[0]:]
	}
	return e, nil
}

// find returns the index of the entry with id's UUID, or -1.
func (r *registry) find(u UUID) int {
	n := r.published()
	for i := 0; i < n; i++ {
		if r.uuidAt(i) == u {
			return i
		}
	}
	return -1
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

// append publishes a new active entry; the caller holds the lock and has
// checked the fields and that the UUID is new.
func (r *registry) append(e entry, owner uint64) (int, error) {
	i := int(atomic.LoadUint32(r.count))
	if i >= r.entries {
		return 0, fmt.Errorf("%w: %d mailboxes", ErrRegistryFull, r.entries)
	}
	b := r.raw(i)
	clear(b)
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
	binary.LittleEndian.PutUint32(b[entRingCap:], uint32(e.ringCap))
	binary.LittleEndian.PutUint32(b[entMaxRecord:], uint32(e.maxRecord))
	binary.LittleEndian.PutUint32(b[entChecksum:], entryChecksum(b))
	atomic.StoreUint64(r.ownerWord(i), owner)
	atomic.StoreUint32(r.stateWord(i), regActive)
	atomic.StoreUint32(r.count, uint32(i+1)) // publish
	atomic.AddUint64(r.gen, 1)
	return i, nil
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
			return nil, err
		}
		return r, nil
	}
}
