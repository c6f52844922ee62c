package proxystore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmex/shmex/internal/quietlog"
	"github.com/shmex/shmex/shm"
)

// Errors of the arena store, in addition to the package's sentinels.
var (
	// ErrBadArena reports an arena file whose header is not valid: a bad
	// magic, version or checksum, sizes that disagree with each other or
	// with the file, or a store descriptor that was tampered with.
	ErrBadArena = errors.New("proxystore: bad arena segment")

	// ErrTooManyViews reports that an arena segment's table of held views
	// is full: every hold slot is taken by live readers (see
	// [WithHoldSlots]). Release views and retry.
	ErrTooManyViews = errors.New("proxystore: too many views held in one arena segment")
)

// Defaults of the arena options.
const (
	DefaultSegmentSize  = 16 << 20
	DefaultMaxSegments  = 256
	DefaultMaxBytes     = 4 << 30
	DefaultHoldSlots    = defaultHoldSlot
	DefaultReapInterval = 50 * time.Millisecond
)

// ArenaOption configures [OpenArena]. The options are process-local: each
// process that opens the arena store of an exchange chooses its own, and
// they apply to the segments that process creates.
type ArenaOption func(*arenaOptions)

type arenaOptions struct {
	segmentSize  int64
	maxSegments  int
	maxBytes     int64
	holdSlots    int
	reapInterval time.Duration
	prefault     bool
	logger       *slog.Logger
}

// WithSegmentSize sets the data size of the regular segments this process
// creates (rounded up to [ChunkSize]); payloads larger than it get a
// segment of their own. Default [DefaultSegmentSize].
func WithSegmentSize(n int64) ArenaOption { return func(o *arenaOptions) { o.segmentSize = n } }

// WithMaxSegments bounds the number of segments this process owns at once.
// Default [DefaultMaxSegments].
func WithMaxSegments(n int) ArenaOption { return func(o *arenaOptions) { o.maxSegments = n } }

// WithMaxBytes bounds the data bytes of the segments this process owns at
// once; an allocation beyond it is [ErrStoreFull]. Default
// [DefaultMaxBytes].
func WithMaxBytes(n int64) ArenaOption { return func(o *arenaOptions) { o.maxBytes = n } }

// WithHoldSlots sets the number of hold slots in each segment this process
// creates. A reader process claims one slot per 31 views it holds at once
// in a segment; when all are taken by live readers, Resolve is
// [ErrTooManyViews]. Default [DefaultHoldSlots].
func WithHoldSlots(n int) ArenaOption { return func(o *arenaOptions) { o.holdSlots = n } }

// WithReapInterval sets how often the background pass runs: it reclaims
// the references of dead readers, expires leases, reclaims released blocks
// and unmaps the segments of dead owners. Default [DefaultReapInterval].
func WithReapInterval(d time.Duration) ArenaOption {
	return func(o *arenaOptions) { o.reapInterval = d }
}

// WithPrefault says whether the segments this process creates are made
// ready at creation (shm.Populate: page tables filled, every page
// touched), so that the first writes into loans and Puts take no page
// faults. Creating a segment costs time in proportion to its size either
// way (on the virtual machines measured, about 1.5 ms per MiB for memory
// the machine never used, most of it in reserving the pages); the
// allocator reuses warm segments first, and [Arena.Reserve] creates them
// ahead of the first payload that needs them. Readers do not populate the
// segments they map: a view costs a minor fault per page it reads, once.
// Default true.
func WithPrefault(on bool) ArenaOption { return func(o *arenaOptions) { o.prefault = on } }

// populate returns the shm options that prefault a mapping, if on.
func (a *Arena) populate() []shm.Option {
	if a.opts.prefault {
		return []shm.Option{shm.Populate()}
	}
	return nil
}

// WithArenaLogger sets the logger of the arena store. The store logs at
// debug level the routine events (segments made, arenas of dead owners
// removed, blocks reclaimed) and at warn level the failures to clean up.
// By default (nil) only warnings and errors reach [slog.Default]; pass a
// logger to see the rest.
func WithArenaLogger(l *slog.Logger) ArenaOption { return func(o *arenaOptions) { o.logger = l } }

// Arena is one process's view of the arena store of an exchange: the
// segments it owns and allocates from, and the segments of other processes
// it maps to resolve their proxies. Every process opens its own Arena on
// the exchange directory; all of them share one [StoreID]. It implements
// [Store]; its methods are safe for concurrent use.
type Arena struct {
	dir  string
	id   StoreID
	opts arenaOptions
	log  *slog.Logger
	life *shm.Life

	// mu guards closed and the mappings: every operation holds it for
	// reading, so that Close and the reaper (writing) never unmap memory
	// under them. Lock order: mu, then amu, then smu.
	mu     sync.RWMutex
	closed bool

	// smu guards segs, the segments mapped by this process by id.
	smu  sync.RWMutex
	segs map[uint64]*arenaSeg

	// amu guards the allocator: own, partial, ownBytes, retired and every
	// ownSeg.
	amu      sync.Mutex
	own      []*arenaSeg
	partial  [numClasses][]*slab
	ownBytes int64
	retired  []*arenaSeg // own segments unlinked, to unmap at the next reaper pass

	lives lifeCache

	stop chan struct{}
	done chan struct{}
}

var _ Store = (*Arena)(nil)

// arenaSeg is one arena segment mapped by this process, owned or not.
type arenaSeg struct {
	id      uint64
	hdr     arenaHeader
	meta    *shm.Segment
	data    *shm.Segment
	mb      []byte // meta body: read-write
	db      []byte // data area: read-only unless this process owns it
	descOff int
	own     *ownSeg // nil for another process's segment

	ownerLive *os.File     // another process's segment: its owner's lock file
	liveUntil atomic.Int64 // the owner was seen alive: trusted until then (Unix ns)
	dead      atomic.Bool
	views     atomic.Int64 // views of this process into the segment

	hmu   sync.Mutex
	slots []int // hold slots claimed by this process
	free  []int // free entry offsets (into mb) in those slots
}

// OpenArena opens the arena store of the exchange directory dir (see
// shm.ExchangeDir; it must exist, see shm.EnsureDir). The first process to
// open it creates the store descriptor that fixes its [StoreID]; every
// other one reads it. Opening also removes the arenas of dead owners (as
// [Collect] does).
func OpenArena(dir string, opts ...ArenaOption) (*Arena, error) {
	o := arenaOptions{
		segmentSize:  DefaultSegmentSize,
		maxSegments:  DefaultMaxSegments,
		maxBytes:     DefaultMaxBytes,
		holdSlots:    DefaultHoldSlots,
		reapInterval: DefaultReapInterval,
		prefault:     true,
	}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	switch {
	case o.segmentSize <= 0 || o.segmentSize > maxDataSize:
		return nil, fmt.Errorf("proxystore: segment size %d out of range", o.segmentSize)
	case o.maxSegments <= 0:
		return nil, fmt.Errorf("proxystore: max segments %d out of range", o.maxSegments)
	case o.maxBytes <= 0:
		return nil, fmt.Errorf("proxystore: max bytes %d out of range", o.maxBytes)
	case o.holdSlots <= 0 || o.holdSlots > maxHoldSlots:
		return nil, fmt.Errorf("proxystore: %d hold slots not in [1, %d]", o.holdSlots, maxHoldSlots)
	case o.reapInterval <= 0:
		return nil, fmt.Errorf("proxystore: reap interval %v out of range", o.reapInterval)
	}
	o.segmentSize = (o.segmentSize + ChunkSize - 1) &^ (ChunkSize - 1)
	if o.segmentSize/Granule > maxDesc {
		return nil, fmt.Errorf("proxystore: segment size %d out of range", o.segmentSize)
	}
	log := quietlog.Or(o.logger)
	if err := shm.CheckDir(dir); err != nil {
		return nil, err
	}
	id, err := storeID(dir)
	if err != nil {
		return nil, err
	}
	life, err := shm.HoldLife(dir)
	if err != nil {
		return nil, err
	}
	a := &Arena{
		dir: dir, id: id, opts: o, log: log, life: life,
		segs: make(map[uint64]*arenaSeg),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	a.lives.dir = dir
	if removed, err := collect(dir, life.ID(), &a.lives, false); err != nil {
		log.Warn("proxystore: collecting dead arenas", "err", err)
	} else if len(removed) > 0 {
		log.Debug("proxystore: removed arenas of dead owners", "files", removed)
	}
	go a.reaper()
	register(a)
	return a, nil
}

// storeDescName is the file that holds the arena store's StoreID.
const storeDescName = shm.ArenaPrefix + "store"

// storeID reads the store descriptor of dir, creating it if it is missing.
func storeID(dir string) (StoreID, error) {
	path := filepath.Join(dir, storeDescName)
	for attempt := 0; attempt < 2; attempt++ {
		seg, err := shm.Open(path, shm.KindArena, shm.ReadOnly())
		if err == nil {
			id, err := parseStoreDesc(seg.Body())
			seg.Close()
			if err != nil {
				return id, fmt.Errorf("%w (%s)", err, path)
			}
			return id, nil
		}
		if !errors.Is(err, shm.ErrNotExist) {
			return StoreID{}, fmt.Errorf("%w: %w", ErrBadArena, err)
		}
		id := NewStoreID()
		seg, err = shm.Create(path, shm.KindArena, shm.HeaderSize+sidSize, func(body []byte) error {
			putStoreDesc(body, id)
			return nil
		})
		if err == nil {
			seg.Close()
			return id, nil
		}
		if !errors.Is(err, shm.ErrExist) {
			return StoreID{}, err
		}
		// Another process created it first: read theirs.
	}
	return StoreID{}, fmt.Errorf("%w: cannot open or create %s", ErrBadArena, path)
}

// ID returns the store id shared by every Arena of the exchange directory.
func (a *Arena) ID() StoreID { return a.id }

// Dir returns the exchange directory.
func (a *Arena) Dir() string { return a.dir }

// LifeID returns this process's liveness id in the exchange directory (the
// owner id written in the segments it creates).
func (a *Arena) LifeID() uint64 { return a.life.ID() }

// ArenaStats describes one process's arena store.
type ArenaStats struct {
	Segments int   // segments this process owns
	Bytes    int64 // their data bytes
	Blocks   int   // blocks of those segments not free: loaned, live, or waiting for their last reference
	Attached int   // segments of other processes mapped by this process
	Views    int64 // views held by this process, into any segment
}

// Stats returns a snapshot of the store's counters.
func (a *Arena) Stats() ArenaStats {
	var st ArenaStats
	a.amu.Lock()
	st.Segments, st.Bytes = len(a.own), a.ownBytes
	for _, s := range a.own {
		st.Blocks += s.own.blocks
	}
	a.amu.Unlock()
	a.smu.RLock()
	for _, s := range a.segs {
		if s.own == nil {
			st.Attached++
		}
		st.Views += s.views.Load()
	}
	a.smu.RUnlock()
	return st
}

func segName(id uint64, suffix string) string {
	return fmt.Sprintf("%s%016x.%s", shm.ArenaPrefix, id, suffix)
}

func (s *arenaSeg) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&s.mb[off])) }
func (s *arenaSeg) descWord(idx uint32) *uint64 {
	return s.word(s.descOff + int(idx)*descSize + descOffWord)
}
func (s *arenaSeg) descField(idx uint32, field int) *uint64 {
	return s.word(s.descOff + int(idx)*descSize + field)
}
func (s *arenaSeg) descLifetime(idx uint32) Lifetime {
	return Lifetime(atomic.LoadUint64(s.descField(idx, descOffLifetime)) & 0xff)
}
func (s *arenaSeg) closedFlag() *uint32  { return (*uint32)(unsafe.Pointer(&s.mb[metaOffClosed])) }
func (s *arenaSeg) reclaimWord() *uint64 { return s.word(metaOffReclaim) }
func holdSlotOff(i int) int              { return metaOffHoldTable + i*holdSlotSize }

// index returns the descriptor index of the block at offset off, after
// checking that a block can start there and that [off, off+n) lies in the
// data area.
func (s *arenaSeg) index(off, n uint64) (uint32, error) {
	size := s.hdr.dataSize
	if off > size || n > size-off {
		return 0, fmt.Errorf("%w: offset %d length %d outside a data area of %d bytes", ErrBadProxy, off, n, size)
	}
	if s.hdr.single() {
		if off != 0 {
			return 0, fmt.Errorf("%w: offset %d in a single-block segment", ErrBadProxy, off)
		}
		return 0, nil
	}
	if off%Granule != 0 || off == size {
		return 0, fmt.Errorf("%w: offset %d is not a block start", ErrBadProxy, off)
	}
	return uint32(off / Granule), nil
}

// enter takes the read lock for an operation; it fails once closed.
func (a *Arena) enter() error {
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Close stops the background pass, drops every reference this process
// holds (so that other owners can reclaim those blocks), retires and
// unlinks the segments it owns, unmaps everything and drops the liveness
// lock. Views and loans handed out become invalid: their slices must not
// be used after Close (the memory is unmapped), and their Release, Commit
// and Abort return [ErrClosed]. Close is idempotent.
func (a *Arena) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	unregister(a)
	close(a.stop)
	<-a.done

	a.mu.Lock()
	defer a.mu.Unlock()
	a.amu.Lock()
	defer a.amu.Unlock()
	a.smu.Lock()
	defer a.smu.Unlock()
	var errs []error
	for _, s := range a.retired {
		delete(a.segs, s.id)
		errs = append(errs, s.unmap())
	}
	a.retired = nil
	for _, s := range a.segs {
		s.dropHolds(a.life.ID())
		if s.own != nil {
			atomic.StoreUint32(s.closedFlag(), 1)
			errs = append(errs, s.remove())
		}
		errs = append(errs, s.unmap())
	}
	a.segs = nil
	a.own = nil
	a.partial = [numClasses][]*slab{}
	a.ownBytes = 0
	a.lives.close()
	errs = append(errs, a.life.Close())
	return errors.Join(errs...)
}

// remove unlinks the segment's files.
func (s *arenaSeg) remove() error {
	return errors.Join(s.meta.Remove(), s.data.Remove())
}

// unmap unmaps the segment and closes its owner's lock file.
func (s *arenaSeg) unmap() error {
	err := errors.Join(s.meta.Close(), s.data.Close())
	if s.ownerLive != nil {
		s.ownerLive.Close()
	}
	return err
}

// ownerCheckInterval is how long a resolve trusts the last look at a
// segment's owner's liveness lock: a resolve in the hot path costs no
// system call, and an owner killed meanwhile is noticed by the first
// resolve after the interval (until then its committed payloads, still
// mapped, resolve as before). An owner that closes its Arena is noticed at
// once, by the segment's closed flag.
const ownerCheckInterval = 10 * time.Millisecond

// ownerAlive reports whether another process's segment's owner lives, with
// one flock system call on the owner's lock file (held open since attach)
// at most every ownerCheckInterval. A dead owner's segment is unlinked
// here: this store noticed first.
func (a *Arena) ownerAlive(s *arenaSeg) error {
	if s.dead.Load() {
		return fmt.Errorf("%w: arena segment %016x", ErrOwnerDead, s.id)
	}
	if atomic.LoadUint32(s.closedFlag()) != 0 {
		s.dead.Store(true)
		return fmt.Errorf("%w: arena segment %016x was retired by its owner", ErrOwnerDead, s.id)
	}
	now := time.Now().UnixNano()
	if now < s.liveUntil.Load() {
		return nil
	}
	held, err := lockHeld(s.ownerLive)
	if err != nil {
		return fmt.Errorf("proxystore: liveness of arena segment %016x: %w", s.id, err)
	}
	if held {
		s.liveUntil.Store(now + int64(ownerCheckInterval))
		return nil
	}
	s.dead.Store(true)
	if err := s.remove(); err != nil {
		a.log.Warn("proxystore: removing a dead owner's arena", "segment", fmt.Sprintf("%016x", s.id), "err", err)
	}
	return fmt.Errorf("%w: arena segment %016x", ErrOwnerDead, s.id)
}

// lookup returns the mapped segment id, attaching it if needed. It is
// called with a.mu read-locked.
func (a *Arena) lookup(id uint64) (*arenaSeg, error) {
	a.smu.RLock()
	s := a.segs[id]
	a.smu.RUnlock()
	if s != nil {
		return s, nil
	}
	s, err := a.attach(id)
	if err != nil {
		return nil, err
	}
	a.smu.Lock()
	if old := a.segs[id]; old != nil {
		a.smu.Unlock()
		s.unmap()
		return old, nil
	}
	a.segs[id] = s
	a.smu.Unlock()
	return s, nil
}

// attach maps another process's segment: meta read-write, data read-only.
func (a *Arena) attach(id uint64) (*arenaSeg, error) {
	if id == 0 {
		return nil, fmt.Errorf("%w: segment id 0", ErrBadProxy)
	}
	metaPath := filepath.Join(a.dir, segName(id, "meta"))
	dataPath := filepath.Join(a.dir, segName(id, "data"))
	meta, err := shm.Open(metaPath, shm.KindArena)
	if err != nil {
		if errors.Is(err, shm.ErrNotExist) {
			return nil, fmt.Errorf("%w: arena segment %016x is gone", ErrOwnerDead, id)
		}
		return nil, fmt.Errorf("%w: %w", ErrBadArena, err)
	}
	s := &arenaSeg{id: id, meta: meta}
	fail := func(err error) (*arenaSeg, error) {
		meta.Close()
		if s.data != nil {
			s.data.Close()
		}
		if s.ownerLive != nil {
			s.ownerLive.Close()
		}
		return nil, err
	}
	s.hdr, err = parseArenaHeader(meta.Body(), meta.Info().Size, true)
	if err != nil {
		return fail(fmt.Errorf("%w (%s)", err, metaPath))
	}
	if s.hdr.store != a.id {
		return fail(fmt.Errorf("%w: arena segment %016x belongs to store %v", ErrForeignProxy, id, s.hdr.store))
	}
	if s.hdr.segment != id {
		return fail(fmt.Errorf("%w: %s names segment %016x", ErrBadArena, metaPath, s.hdr.segment))
	}
	s.data, err = shm.Open(dataPath, shm.KindArena, shm.ReadOnly())
	if err != nil {
		if errors.Is(err, shm.ErrNotExist) {
			return fail(fmt.Errorf("%w: arena segment %016x is gone", ErrOwnerDead, id))
		}
		return fail(fmt.Errorf("%w: %w", ErrBadArena, err))
	}
	dh, err := parseArenaHeader(s.data.Body(), s.data.Info().Size, false)
	if err != nil {
		return fail(fmt.Errorf("%w (%s)", err, dataPath))
	}
	if dh.flags != s.hdr.flags || dh.store != s.hdr.store || dh.segment != id ||
		dh.owner != s.hdr.owner || dh.dataSize != s.hdr.dataSize {
		return fail(fmt.Errorf("%w: data and meta headers of segment %016x disagree", ErrBadArena, id))
	}
	s.mb = meta.Body()
	s.db = s.data.Bytes()[dataFileOffset : dataFileOffset+int(s.hdr.dataSize)]
	s.descOff = descOffset(s.hdr.holdSlots)
	if s.hdr.owner == a.life.ID() {
		// Our own id on a segment we do not know: forged, or left by a
		// process that closed its arena. Never ours to resolve.
		return fail(fmt.Errorf("%w: arena segment %016x is gone", ErrOwnerDead, id))
	}
	f, err := shm.OpenFile(shm.LifePath(a.dir, s.hdr.owner), os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			s.remove()
			return fail(fmt.Errorf("%w: arena segment %016x", ErrOwnerDead, id))
		}
		return fail(fmt.Errorf("proxystore: liveness of arena segment %016x: %w", id, err))
	}
	s.ownerLive = f
	return s, nil
}

// check checks what p says of itself: this store, the arena kind, a
// generation that a block can have.
func (a *Arena) check(p Proxy) error {
	switch {
	case StoreID(p.Store) != a.id:
		return fmt.Errorf("%w: %v", ErrForeignProxy, p)
	case Kind(p.Kind) != KindArena:
		return fmt.Errorf("%w: kind %v in the arena store", ErrBadProxy, Kind(p.Kind))
	case p.Generation == 0 || p.Generation > arenaMaxGen:
		return fmt.Errorf("%w: generation %d", ErrBadProxy, p.Generation)
	}
	return nil
}

// Resolve checks p and returns a view of its payload: a read-only slice
// that aliases the owner's arena, valid until the view's Release (or this
// Arena's Close). No byte of the payload is read or copied.
func (a *Arena) Resolve(ctx context.Context, p Proxy) (View, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := a.check(p); err != nil {
		return nil, err
	}
	if err := a.enter(); err != nil {
		return nil, err
	}
	defer a.mu.RUnlock()
	s, err := a.lookup(p.Segment)
	if err != nil {
		return nil, err
	}
	idx, err := s.index(p.Offset, p.Length)
	if err != nil {
		return nil, err
	}
	if s.own == nil {
		if err := a.ownerAlive(s); err != nil {
			return nil, err
		}
	}
	entry, err := s.acquire(a.life.ID(), idx, p.Generation, p.Length)
	if err != nil {
		return nil, err
	}
	if s.descLifetime(idx) == Leased {
		if d := int64(atomic.LoadUint64(s.descField(idx, descOffDeadline))); time.Now().UnixNano() >= d {
			s.release(entry, idx, p.Generation)
			return nil, fmt.Errorf("%w: %v", ErrExpired, p)
		}
	}
	s.views.Add(1)
	end := p.Offset + p.Length
	return &arenaView{a: a, s: s, p: p, idx: idx, entry: entry, b: s.db[p.Offset:end:end],
		single: s.descLifetime(idx) == SingleUse}, nil
}

// arenaView is a resolved payload.
type arenaView struct {
	a        *Arena
	s        *arenaSeg
	p        Proxy
	idx      uint32
	entry    int
	b        []byte
	single   bool // the block is single use
	released atomic.Bool
}

func (v *arenaView) Bytes() []byte   { return v.b }
func (v *arenaView) Proxy() Proxy    { return v.p }
func (v *arenaView) singleUse() bool { return v.single }

// Release drops the view's reference: the slice must not be used after it.
func (v *arenaView) Release() error {
	if !v.released.CompareAndSwap(false, true) {
		return ErrReleased
	}
	if err := v.a.enter(); err != nil {
		return err // Close dropped the reference already
	}
	defer v.a.mu.RUnlock()
	v.s.release(v.entry, v.idx, v.p.Generation)
	v.s.views.Add(-1)
	return nil
}
