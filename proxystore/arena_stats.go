package proxystore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"unsafe"

	"github.com/shmex/shmex/shm"
)

// Arena statistics, for operators (`shmex stat`): each segment's owner
// keeps, in the segment's meta (arena_layout.go), the bytes allocated, the
// blocks held and their payload bytes, and how many blocks it allocated
// and gave back. It updates them under its allocator's lock, as it
// allocates and reclaims: readers, and a resolve, pay nothing for them.
// Anyone who can map the segment reads them, with [ArenaSegments].

// SegmentStats is a snapshot of one arena segment's statistics.
type SegmentStats struct {
	// Segment is the segment's id; Name the name of its meta file in the
	// exchange directory.
	Segment uint64
	Name    string
	// Owner is the liveness id of the process that owns the segment (its
	// lock file is live-<Owner in hex> in the exchange directory).
	Owner uint64
	// Single reports a single-block segment (a payload larger than a
	// regular segment); Closed one its owner retired.
	Single, Closed bool
	// DataBytes is the size of the data area; InUse the bytes allocated to
	// blocks (slab slots, chunk runs, a single block's whole segment), Free
	// the rest.
	DataBytes, InUse, Free uint64
	// Blocks is the number of blocks held: allocated and not yet given
	// back, whether loaned, live, or released and waiting for the owner's
	// reclaim (a single-use proxy resolved and released counts until the
	// owner's next reclaim pass). Payload is their payload bytes.
	Blocks, Payload uint64
	// Allocs and Frees count the blocks allocated and given back since the
	// segment was made.
	Allocs, Frees uint64
}

// ArenaSegments returns the statistics of every arena segment in the exchange
// directory dir, in the order of their names, mapping each meta file
// read-only for the time it takes to read it. A segment that cannot be
// read is left out and reported in the error, which joins every such
// problem; one removed meanwhile is left out.
func ArenaSegments(dir string) ([]SegmentStats, error) {
	if err := shm.CheckDir(dir); err != nil {
		return nil, err
	}
	entries, err := shm.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []SegmentStats
	var errs []error
	for _, e := range entries {
		if meta, ok := parseSegName(e.Name()); !ok || !meta {
			continue
		}
		st, err := segmentStats(filepath.Join(dir, e.Name()))
		switch {
		case errors.Is(err, shm.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		default:
			out = append(out, st)
		}
	}
	return out, errors.Join(errs...)
}

// segmentStats reads the statistics of the meta segment at path.
func segmentStats(path string) (st SegmentStats, err error) {
	seg, err := shm.Open(path, shm.KindArena, shm.ReadOnly())
	if err != nil {
		return st, err
	}
	defer seg.Close()
	// Another process of the user may truncate the file under us: a fault
	// is an error, not the end of the program.
	if shm.TolerateFault(func() { st, err = readSegmentStats(seg, path) }) {
		return SegmentStats{}, fmt.Errorf("%w: %s faulted as it was read (truncated?)", ErrBadArena, path)
	}
	return st, err
}

// readSegmentStats reads the statistics of seg, the meta segment at path.
func readSegmentStats(seg *shm.Segment, path string) (SegmentStats, error) {
	body := seg.Body()
	h, err := parseArenaHeader(body, seg.Info().Size, true)
	if err != nil {
		return SegmentStats{}, fmt.Errorf("%w (%s)", err, path)
	}
	word := func(off int) uint64 { return atomic.LoadUint64(wordAt(body, off)) }
	st := SegmentStats{
		Segment: h.segment, Name: filepath.Base(path), Owner: h.owner, Single: h.single(),
		Closed:    atomic.LoadUint32(closedAt(body)) != 0,
		DataBytes: h.dataSize,
		InUse:     word(metaOffStats + statInUse),
		Blocks:    word(metaOffStats + statBlocks),
		Payload:   word(metaOffStats + statPayload),
		Allocs:    word(metaOffStats + statAllocs),
		Frees:     word(metaOffStats + statFrees),
	}
	if st.InUse <= st.DataBytes {
		st.Free = st.DataBytes - st.InUse
	}
	return st, nil
}

// statWord returns the statistics word at field (arena_layout.go).
func (s *arenaSeg) statWord(field int) *uint64 { return s.word(metaOffStats + field) }

// countAlloc records the allocation of block idx for n payload bytes. The
// owner calls it, its allocator's lock held, once the block is allocated.
func (s *arenaSeg) countAlloc(idx uint32, n int) {
	atomic.AddUint64(s.statWord(statInUse), s.footprint(idx))
	atomic.AddUint64(s.statWord(statBlocks), 1)
	atomic.AddUint64(s.statWord(statPayload), uint64(n))
	atomic.AddUint64(s.statWord(statAllocs), 1)
}

// countFree records that block idx goes back to the allocator. The owner
// calls it, its allocator's lock held, before the allocator takes the
// block back (footprint reads its chunk).
func (s *arenaSeg) countFree(idx uint32) {
	sub := func(field int, n uint64) { atomic.AddUint64(s.statWord(field), -n) }
	sub(statInUse, s.footprint(idx))
	sub(statBlocks, 1)
	sub(statPayload, atomic.LoadUint64(s.descField(idx, descOffLength)))
	atomic.AddUint64(s.statWord(statFrees), 1)
}

// footprint returns the bytes of the data area that the allocated block
// idx takes.
func (s *arenaSeg) footprint(idx uint32) uint64 {
	o := s.own
	if o.single {
		return s.hdr.dataSize
	}
	switch info := o.chunk[int(idx)*Granule/ChunkSize]; info.kind {
	case chunkHead:
		return uint64(info.runLen) * ChunkSize
	case chunkSlab:
		return uint64(classSizes[info.slab.class])
	}
	return 0
}

// wordAt and closedAt address words of a meta body mapped by a reader
// (parseArenaHeader checked its size).
func wordAt(body []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&body[off])) }
func closedAt(body []byte) *uint32        { return (*uint32)(unsafe.Pointer(&body[metaOffClosed])) }
