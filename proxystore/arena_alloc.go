package proxystore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/shm"
)

// The owner's allocator. It lives in the owner's private memory (never in
// shared memory), under Arena.amu; no other process allocates from or frees
// into an owner's segments, so it needs no cross-process lock.
//
// A regular segment's data area is cut into chunks of ChunkSize bytes.
// Payloads up to MaxSmall bytes come from slabs: a chunk cut into equal
// slots of one size class. Larger payloads take a run of whole chunks
// (first fit over a sorted list of free runs, coalesced on free). A payload
// larger than a regular segment gets a single-block segment of its own,
// which is reused for later payloads that fit and unlinked when the byte or
// segment limit needs room.

// numClasses is the number of size classes.
const numClasses = 10

// classSizes are the slot sizes of the size classes, multiples of Granule.
var classSizes = [numClasses]int{1 << 10, 2 << 10, 3 << 10, 4 << 10, 6 << 10, 8 << 10, 12 << 10, 16 << 10, 24 << 10, 32 << 10}

func classOf(n int) int {
	for c, size := range classSizes {
		if n <= size {
			return c
		}
	}
	return -1
}

// ownSeg is the owner's private bookkeeping of one of its segments.
type ownSeg struct {
	single bool
	inUse  bool // single: its block is allocated

	runs  []chunkRun  // free runs of chunks, sorted by start
	chunk []chunkInfo // per chunk

	gen     uint64              // last generation handed out
	blocks  int                 // blocks not free
	pending map[uint32]struct{} // blocks that may become reclaimable without the owner

	seenReclaim  uint64 // the meta's reclaimable counter at the last scan
	leases       int    // leased blocks in pending
	nextDeadline int64  // earliest deadline among them (0: unknown)
}

type chunkRun struct{ start, n int }

const (
	chunkFree = iota
	chunkSlab
	chunkHead
)

type chunkInfo struct {
	kind   uint8
	runLen int32
	slab   *slab
}

// slab is a chunk cut into the slots of one size class.
type slab struct {
	seg       *arenaSeg
	chunk     int
	class     int
	slots     int
	free      []uint16
	inPartial bool
}

// allocRun takes k contiguous chunks (first fit).
func (o *ownSeg) allocRun(k int) (int, bool) {
	for i := range o.runs {
		r := &o.runs[i]
		if r.n < k {
			continue
		}
		start := r.start
		r.start += k
		r.n -= k
		if r.n == 0 {
			o.runs = append(o.runs[:i], o.runs[i+1:]...)
		}
		return start, true
	}
	return 0, false
}

// freeRun gives chunks [start, start+k) back, coalescing with neighbors.
func (o *ownSeg) freeRun(start, k int) {
	for c := start; c < start+k; c++ {
		o.chunk[c] = chunkInfo{}
	}
	i := sort.Search(len(o.runs), func(i int) bool { return o.runs[i].start > start })
	if i > 0 && o.runs[i-1].start+o.runs[i-1].n == start {
		o.runs[i-1].n += k
		if i < len(o.runs) && o.runs[i-1].start+o.runs[i-1].n == o.runs[i].start {
			o.runs[i-1].n += o.runs[i].n
			o.runs = append(o.runs[:i], o.runs[i+1:]...)
		}
		return
	}
	if i < len(o.runs) && start+k == o.runs[i].start {
		o.runs[i].start, o.runs[i].n = start, o.runs[i].n+k
		return
	}
	o.runs = append(o.runs, chunkRun{})
	copy(o.runs[i+1:], o.runs[i:])
	o.runs[i] = chunkRun{start, k}
}

// tryAlloc finds room for n bytes in the existing segments.
func (a *Arena) tryAlloc(n int) (*arenaSeg, uint64, bool) {
	if n > int(a.opts.segmentSize) {
		var best, used *arenaSeg
		for _, s := range a.own {
			if !s.own.single || s.hdr.dataSize < uint64(n) {
				continue
			}
			if !s.own.inUse {
				if best == nil || s.hdr.dataSize < best.hdr.dataSize {
					best = s
				}
			} else if used == nil || s.hdr.dataSize < used.hdr.dataSize {
				used = s
			}
		}
		// None free: the block of one that fits may be released already
		// (a large payload sent, used and let go, the next one being
		// made): reclaim it here, one look at its word, rather than by
		// reclaim's pass over every pending block.
		if best == nil && used != nil && a.reclaimBlock(used, 0) {
			best = used
		}
		if best == nil {
			return nil, 0, false
		}
		best.own.inUse = true
		return best, 0, true
	}
	if n > MaxSmall {
		k := (n + ChunkSize - 1) / ChunkSize
		for _, s := range a.own {
			if s.own.single {
				continue
			}
			if c, ok := s.own.allocRun(k); ok {
				s.own.chunk[c] = chunkInfo{kind: chunkHead, runLen: int32(k)}
				return s, uint64(c) * ChunkSize, true
			}
		}
		return nil, 0, false
	}
	c := classOf(n)
	list := a.partial[c]
	if len(list) == 0 {
		for _, s := range a.own {
			if s.own.single {
				continue
			}
			if ch, ok := s.own.allocRun(1); ok {
				size := classSizes[c]
				sl := &slab{seg: s, chunk: ch, class: c, slots: ChunkSize / size, inPartial: true}
				for i := sl.slots - 1; i >= 0; i-- {
					sl.free = append(sl.free, uint16(i))
				}
				s.own.chunk[ch] = chunkInfo{kind: chunkSlab, slab: sl}
				list = append(list, sl)
				break
			}
		}
		if len(list) == 0 {
			return nil, 0, false
		}
	}
	sl := list[len(list)-1]
	slot := sl.free[len(sl.free)-1]
	sl.free = sl.free[:len(sl.free)-1]
	if len(sl.free) == 0 {
		sl.inPartial = false
		list = list[:len(list)-1]
	}
	a.partial[c] = list
	return sl.seg, uint64(sl.chunk)*ChunkSize + uint64(slot)*uint64(classSizes[sl.class]), true
}

// freeBlock gives the block at descriptor idx back to the allocator.
func (a *Arena) freeBlock(s *arenaSeg, idx uint32) {
	s.countFree(idx) // arena_stats.go
	o := s.own
	o.blocks--
	delete(o.pending, idx)
	if o.single {
		o.inUse = false
		return
	}
	off := int(idx) * Granule
	c := off / ChunkSize
	info := o.chunk[c]
	switch info.kind {
	case chunkHead:
		o.freeRun(c, int(info.runLen))
	case chunkSlab:
		sl := info.slab
		sl.free = append(sl.free, uint16((off-c*ChunkSize)/classSizes[sl.class]))
		list := a.partial[sl.class]
		if !sl.inPartial {
			sl.inPartial = true
			a.partial[sl.class] = append(list, sl)
			return
		}
		if len(sl.free) == sl.slots && len(list) > 1 {
			// Empty, and the class has another partial slab: give the
			// chunk back so that other classes and large blocks can use it.
			for i, x := range list {
				if x == sl {
					a.partial[sl.class] = append(list[:i], list[i+1:]...)
					break
				}
			}
			o.freeRun(c, 1)
		}
	}
}

// trimSlabs gives the chunks of empty slabs back to their segments.
func (a *Arena) trimSlabs() int {
	n := 0
	for c, list := range a.partial {
		kept := list[:0]
		for _, sl := range list {
			if len(sl.free) == sl.slots {
				sl.inPartial = false
				sl.seg.own.freeRun(sl.chunk, 1)
				n++
				continue
			}
			kept = append(kept, sl)
		}
		clear(list[len(kept):])
		a.partial[c] = kept
	}
	return n
}

// allocBlock allocates a block of n bytes: from the free space of the
// existing segments, else after reclaiming released blocks, else from a new
// segment within the limits. It returns the segment and the block's offset.
func (a *Arena) allocBlock(n int) (*arenaSeg, uint64, error) {
	if s, off, ok := a.tryAlloc(n); ok {
		return s, off, nil
	}
	if a.reclaim(false) > 0 {
		if s, off, ok := a.tryAlloc(n); ok {
			return s, off, nil
		}
	}
	if a.trimSlabs() > 0 {
		if s, off, ok := a.tryAlloc(n); ok {
			return s, off, nil
		}
	}
	if err := a.grow(n); err != nil {
		return nil, 0, err
	}
	if s, off, ok := a.tryAlloc(n); ok {
		return s, off, nil
	}
	return nil, 0, fmt.Errorf("%w: no room for %d bytes", ErrStoreFull, n)
}

// Reserve prepares room in this process's arena for payloads of the given
// sizes, so that the first Alloc or Put of each finds warm memory rather
// than creating a segment: for a size over the segment size
// ([WithSegmentSize]), a free single-block segment that holds it (one per
// such size given); for a smaller one, a regular segment with a free run
// that holds it. What is missing is created now, populated as
// [WithPrefault] says, within the limits ([ErrStoreFull] beyond them).
// Fresh memory costs its price here, once (see [WithPrefault]); call
// Reserve at startup, before the first large call, for that call to run
// warm. Reserved room is ordinary free room: any allocation may use it.
func (a *Arena) Reserve(ctx context.Context, sizes ...int) error {
	if err := a.enter(); err != nil {
		return err
	}
	defer a.mu.RUnlock()
	a.amu.Lock()
	defer a.amu.Unlock()
	taken := map[*arenaSeg]bool{} // single-block segments counted for a size already
	for _, n := range sizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n < 0 {
			return fmt.Errorf("proxystore: Reserve of %d bytes", n)
		}
		if s := a.roomFor(n, taken); s != nil {
			if s.own.single {
				taken[s] = true
			}
			continue
		}
		if err := a.grow(n); err != nil {
			return err
		}
		if s := a.roomFor(n, taken); s != nil && s.own.single {
			taken[s] = true
		}
	}
	return nil
}

// roomFor returns a segment with free room for n bytes, not allocating it:
// a free single-block segment not in taken for n over the segment size, a
// regular segment with a free run for the others. a.amu is held.
func (a *Arena) roomFor(n int, taken map[*arenaSeg]bool) *arenaSeg {
	single := n > int(a.opts.segmentSize)
	k := max(1, (n+ChunkSize-1)/ChunkSize)
	for _, s := range a.own {
		switch {
		case single && s.own.single && !s.own.inUse && !taken[s] && s.hdr.dataSize >= uint64(n):
			return s
		case !single && !s.own.single:
			for _, r := range s.own.runs {
				if r.n >= k {
					return s
				}
			}
		}
	}
	return nil
}

// grow creates a segment with room for n bytes.
func (a *Arena) grow(n int) error {
	size := a.opts.segmentSize
	single := int64(n) > size
	if single {
		size = (int64(n) + 4095) &^ 4095
		if size == 0 {
			size = 4096
		}
	}
	if size > maxDataSize {
		return fmt.Errorf("%w: %d bytes is larger than any segment", ErrStoreFull, n)
	}
	if len(a.own)+1 > a.opts.maxSegments || a.ownBytes+size > a.opts.maxBytes {
		a.retireIdle(size)
		if len(a.own)+1 > a.opts.maxSegments || a.ownBytes+size > a.opts.maxBytes {
			return fmt.Errorf("%w: %d bytes in %d segments, a new one of %d bytes exceeds the limits (%d bytes, %d segments)",
				ErrStoreFull, a.ownBytes, len(a.own), size, a.opts.maxBytes, a.opts.maxSegments)
		}
	}
	s, err := a.createSeg(size, single)
	if err != nil {
		return err
	}
	a.own = append(a.own, s)
	a.ownBytes += size
	a.smu.Lock()
	a.segs[s.id] = s
	a.smu.Unlock()
	return nil
}

// retireIdle unlinks free single-block segments until need more bytes fit.
// Their mappings are dropped by the next reaper pass.
func (a *Arena) retireIdle(need int64) {
	for i := 0; i < len(a.own); {
		s := a.own[i]
		fits := len(a.own)+1 <= a.opts.maxSegments && a.ownBytes+need <= a.opts.maxBytes
		if fits {
			return
		}
		if !s.own.single || s.own.inUse || s.own.blocks > 0 || s.views.Load() != 0 {
			i++
			continue
		}
		atomic.StoreUint32(s.closedFlag(), 1)
		if err := s.remove(); err != nil {
			a.log.Warn("proxystore: removing an idle arena segment", "err", err)
		}
		s.dead.Store(true)
		a.own = append(a.own[:i], a.own[i+1:]...)
		a.ownBytes -= int64(s.hdr.dataSize)
		a.retired = append(a.retired, s)
	}
}

// createSeg creates and maps a new segment of this process.
func (a *Arena) createSeg(size int64, single bool) (*arenaSeg, error) {
	hdr := arenaHeader{store: a.id, owner: a.life.ID(), dataSize: uint64(size), holdSlots: uint32(a.opts.holdSlots)}
	hdr.nDesc = uint32(size / Granule)
	if single {
		hdr.flags, hdr.nDesc = flagSingle, 1
	}
	for attempt := 0; ; attempt++ {
		var b [8]byte
		rand.Read(b[:])
		hdr.segment = binary.LittleEndian.Uint64(b[:])
		if hdr.segment == 0 {
			continue
		}
		dataPath := filepath.Join(a.dir, segName(hdr.segment, "data"))
		metaPath := filepath.Join(a.dir, segName(hdr.segment, "meta"))
		data, err := shm.Create(dataPath, shm.KindArena, dataFileOffset+size, func(body []byte) error {
			putArenaHeader(body, dataMagic, hdr, false)
			return nil
		}, a.populate()...)
		if errors.Is(err, shm.ErrExist) && attempt < 8 {
			continue
		}
		if err != nil {
			return nil, arenaCreateErr(err)
		}
		meta, err := shm.Create(metaPath, shm.KindArena, shm.HeaderSize+metaBodySize(hdr.nDesc, hdr.holdSlots), func(body []byte) error {
			putArenaHeader(body, metaMagic, hdr, true)
			return nil
		})
		if err != nil {
			data.Remove()
			data.Close()
			if errors.Is(err, shm.ErrExist) && attempt < 8 {
				continue
			}
			return nil, arenaCreateErr(err)
		}
		s := &arenaSeg{id: hdr.segment, hdr: hdr, meta: meta, data: data, mb: meta.Body(),
			descOff: descOffset(hdr.holdSlots)}
		s.db = data.Bytes()[dataFileOffset : dataFileOffset+int(size)]
		s.own = &ownSeg{single: single, pending: make(map[uint32]struct{})}
		if !single {
			chunks := int(size / ChunkSize)
			s.own.chunk = make([]chunkInfo, chunks)
			s.own.runs = []chunkRun{{0, chunks}}
		}
		a.log.Debug("proxystore: new arena segment", "segment", fmt.Sprintf("%016x", hdr.segment), "bytes", size, "single", single)
		return s, nil
	}
}

func arenaCreateErr(err error) error {
	if errors.Is(err, shm.ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrStoreFull, err)
	}
	return err
}

// newBlock allocates a block for n bytes with options opts and marks it
// loaned. Called with a.mu read-locked.
func (a *Arena) newBlock(n int, opts []PutOption) (*arenaSeg, uint32, uint64, uint64, error) {
	if n < 0 {
		return nil, 0, 0, 0, fmt.Errorf("proxystore: negative size %d", n)
	}
	o, err := putOptions(opts)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	a.amu.Lock()
	defer a.amu.Unlock()
	s, off, err := a.allocBlock(n)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	idx := uint32(off / Granule)
	s.countAlloc(idx, n) // arena_stats.go
	o2 := s.own
	o2.blocks++
	if o2.gen >= arenaMaxGen {
		// Never in practice (2^36 allocations in one segment): fail
		// rather than repeat a generation.
		a.freeBlock(s, idx)
		return nil, 0, 0, 0, fmt.Errorf("%w: segment %016x ran out of generations", ErrStoreFull, s.id)
	}
	o2.gen++
	gen := o2.gen
	var deadline int64
	if o.Lifetime == Leased {
		deadline = o.Deadline.UnixNano()
		o2.leases++
		if o2.nextDeadline == 0 || deadline < o2.nextDeadline {
			o2.nextDeadline = deadline
		}
	}
	if o.Lifetime != Owned {
		o2.pending[idx] = struct{}{}
	}
	atomic.StoreUint64(s.descField(idx, descOffLength), uint64(n))
	atomic.StoreUint64(s.descField(idx, descOffDeadline), uint64(deadline))
	atomic.StoreUint64(s.descField(idx, descOffLifetime), uint64(o.Lifetime))
	atomic.StoreUint64(s.descWord(idx), mkWord(gen, stLoaned, 0))
	return s, idx, off, gen, nil
}

// reclaimBlock reclaims block idx if it is dead and unreferenced.
func (a *Arena) reclaimBlock(s *arenaSeg, idx uint32) bool {
	w := s.descWord(idx)
	v := atomic.LoadUint64(w)
	switch wordState(v) {
	case stFreed, stEvicted, stExpired:
	default:
		return false
	}
	if wordRefs(v) != 0 || !atomic.CompareAndSwapUint64(w, v, mkWord(wordGen(v), stFree, 0)) {
		return false
	}
	if s.descLifetime(idx) == Leased && s.own.leases > 0 {
		s.own.leases--
	}
	a.freeBlock(s, idx)
	return true
}

// reclaim scans the pending blocks of the segments where readers released
// something or a lease is due (all of them if force), expiring leases and
// reclaiming dead blocks. It returns the number of blocks reclaimed.
func (a *Arena) reclaim(force bool) int {
	now := time.Now().UnixNano()
	n := 0
	for _, s := range a.own {
		o := s.own
		cur := atomic.LoadUint64(s.reclaimWord())
		due := o.leases > 0 && (o.nextDeadline == 0 || now >= o.nextDeadline)
		if !force && cur == o.seenReclaim && !due {
			continue
		}
		o.seenReclaim = cur
		o.nextDeadline = 0
		for idx := range o.pending {
			w := s.descWord(idx)
			if s.descLifetime(idx) == Leased {
				d := int64(atomic.LoadUint64(s.descField(idx, descOffDeadline)))
				for {
					v := atomic.LoadUint64(w)
					if wordState(v) != stLive || now < d {
						break
					}
					if atomic.CompareAndSwapUint64(w, v, v&^stateMask|stExpired<<refsBits) {
						break
					}
				}
				if v := atomic.LoadUint64(w); wordState(v) == stLive && (o.nextDeadline == 0 || d < o.nextDeadline) {
					o.nextDeadline = d
				}
			}
			if a.reclaimBlock(s, idx) {
				n++
			}
		}
	}
	return n
}

// Put copies b into a new block of this process's arena and returns its
// proxy. The copy is one memmove into pages mapped at segment creation.
func (a *Arena) Put(ctx context.Context, b []byte, opts ...PutOption) (Proxy, error) {
	if err := ctx.Err(); err != nil {
		return Proxy{}, err
	}
	if err := a.enter(); err != nil {
		return Proxy{}, err
	}
	defer a.mu.RUnlock()
	s, idx, off, gen, err := a.newBlock(len(b), opts)
	if err != nil {
		return Proxy{}, err
	}
	copy(s.db[off:off+uint64(len(b))], b)
	atomic.StoreUint64(s.descWord(idx), mkWord(gen, stLive, 0))
	return a.proxy(s, off, uint64(len(b)), gen), nil
}

func (a *Arena) proxy(s *arenaSeg, off, n, gen uint64) Proxy {
	return Proxy{Store: a.id, Kind: uint8(KindArena), Segment: s.id, Offset: off, Length: n, Generation: gen}
}

// Alloc lends n writable bytes inside this process's arena: fill
// Loan.Bytes in place, then Commit to get the proxy. The bytes are not
// zeroed (a reused block holds an earlier payload).
func (a *Arena) Alloc(ctx context.Context, n int, opts ...PutOption) (Loan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := a.enter(); err != nil {
		return nil, err
	}
	defer a.mu.RUnlock()
	s, idx, off, gen, err := a.newBlock(n, opts)
	if err != nil {
		return nil, err
	}
	end := off + uint64(n)
	return &arenaLoan{a: a, s: s, idx: idx, off: off, gen: gen, b: s.db[off:end:end]}, nil
}

// arenaLoan is a block lent by Alloc.
type arenaLoan struct {
	a    *Arena
	s    *arenaSeg
	idx  uint32
	off  uint64
	gen  uint64
	b    []byte
	done atomic.Bool
}

func (l *arenaLoan) Bytes() []byte { return l.b }

func (l *arenaLoan) Commit() (Proxy, error) {
	if !l.done.CompareAndSwap(false, true) {
		return Proxy{}, ErrReleased
	}
	if err := l.a.enter(); err != nil {
		return Proxy{}, err
	}
	defer l.a.mu.RUnlock()
	atomic.StoreUint64(l.s.descWord(l.idx), mkWord(l.gen, stLive, 0))
	return l.a.proxy(l.s, l.off, uint64(len(l.b)), l.gen), nil
}

func (l *arenaLoan) Abort() error {
	if !l.done.CompareAndSwap(false, true) {
		return ErrReleased
	}
	if err := l.a.enter(); err != nil {
		return err
	}
	defer l.a.mu.RUnlock()
	l.a.amu.Lock()
	defer l.a.amu.Unlock()
	if l.s.descLifetime(l.idx) == Leased && l.s.own.leases > 0 {
		l.s.own.leases--
	}
	atomic.StoreUint64(l.s.descWord(l.idx), mkWord(l.gen, stFree, 0))
	l.a.freeBlock(l.s, l.idx)
	return nil
}

// Free ends the life of a payload this process made: later resolves fail
// with ErrStaleProxy, and the block is reclaimed once no reference remains
// (at once if none). Any lifetime may be freed early. A proxy that does not
// match the block (generation, state) is [ErrStaleProxy]; one whose length
// is not the block's is [ErrBadProxy] and frees nothing.
func (a *Arena) Free(ctx context.Context, p Proxy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := a.check(p); err != nil {
		return err
	}
	if err := a.enter(); err != nil {
		return err
	}
	defer a.mu.RUnlock()
	a.smu.RLock()
	s := a.segs[p.Segment]
	a.smu.RUnlock()
	if s == nil || s.own == nil {
		return fmt.Errorf("%w: arena segment %016x is not this process's", ErrNotOwner, p.Segment)
	}
	idx, err := s.index(p.Offset, p.Length)
	if err != nil {
		return err
	}
	a.amu.Lock()
	defer a.amu.Unlock()
	w := s.descWord(idx)
	for {
		v := atomic.LoadUint64(w)
		if wordGen(v) != p.Generation || wordState(v) != stLive && wordState(v) != stExpired {
			return fmt.Errorf("%w: %v", ErrStaleProxy, p)
		}
		// The length is the generation's: only the owner writes it, under
		// amu, before the block is live.
		if n := atomic.LoadUint64(s.descField(idx, descOffLength)); n != p.Length {
			return fmt.Errorf("%w: %v: the block holds %d bytes", ErrBadProxy, p, n)
		}
		if atomic.CompareAndSwapUint64(w, v, v&^stateMask|stFreed<<refsBits) {
			break
		}
	}
	if !a.reclaimBlock(s, idx) {
		s.own.pending[idx] = struct{}{}
	}
	return nil
}
