package proxystore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/shmex/shmex/shm"
)

// Layout of the arena store's shared memory. Every offset and size of the
// structure is here, so the layout reads in one place (compare Agrona's
// RingBufferDescriptor). All integers are little-endian; every word that two
// processes touch is accessed only through sync/atomic at an 8-byte-aligned
// address inside the mapping.
//
// # Files in the exchange directory
//
//	arena-store              the store descriptor: the StoreID of the exchange's arena store
//	arena-<seg>.data         data segment of arena segment <seg> (16 hex digits, random, never 0)
//	arena-<seg>.meta         meta segment of the same arena segment
//
// All three are shm segments of kind shm.KindArena (so the generic header,
// checksum, owner uid and size are validated by shm.Open); the body of each
// starts with a line of its own header, checksummed with CRC-32C.
//
// An arena segment is split in two files so that readers can map the payload
// bytes read-only and still update reference counts: the data segment is
// mapped read-write by its owner only and read-only by every reader; the meta
// segment (block descriptors, reader hold slots) is mapped read-write by all.
//
// # Store descriptor body (arena-store), written once at creation
//
//	0   8   magic  "SHMXASID"
//	8   4   version
//	12  4   reserved
//	16  16  store id
//	32  4   checksum  CRC-32C of [0, 32)
//
// # Data segment (arena-<seg>.data)
//
//	file offset     size      what
//	0               256       shm header
//	256             128       data header (below), written once by the owner
//	dataFileOffset  dataSize  the data area: payload bytes, page aligned
//
// Data header:
//
//	0   8   magic  "SHMXADAT"
//	8   4   version
//	12  4   flags     flagSingle: the segment holds one block at offset 0
//	16  16  store id
//	32  8   segment id
//	40  8   owner     liveness id (shm.HoldLife) of the owning process
//	48  8   dataSize  bytes of the data area
//	56  4   checksum  CRC-32C of [0, 56)
//
// # Meta segment (arena-<seg>.meta), offsets from the start of the body
//
//	line  offset        size             field            written by
//	0     0             64               meta header      the owner, once (same fields as the
//	                                                      data header, plus nDesc and holdSlots)
//	1     128           4                closed           the owner: 1 once the segment is retired
//	2     256           8                reclaimable      readers: bumped when a release leaves a
//	                                                      dead block (refs 0, state not live)
//	3     384           40               statistics       the owner, under its allocator's lock
//	                                                      (arena_stats.go)
//	4     512           holdSlots*256    hold slots       each slot by the reader that claimed it
//	      descOffset    nDesc*32         block descriptors (descOffset = 512 + holdSlots*256,
//	                                                      a multiple of 128)
//
// Meta header:
//
//	0   8   magic  "SHMXAMET"
//	8   4   version
//	12  4   flags
//	16  16  store id
//	32  8   segment id
//	40  8   owner
//	48  8   dataSize
//	56  4   nDesc      number of block descriptors: dataSize/Granule, or 1 with flagSingle
//	60  4   holdSlots  number of hold slots
//	64  4   checksum   CRC-32C of [0, 64)
//
// Statistics (meta version 2), for operators (`shmex stat`), written by the
// owner alone as it allocates and reclaims blocks, read by anyone:
//
//	0   8   inUse    bytes of the data area allocated to blocks (slab slots,
//	                 chunk runs, a single block's whole segment)
//	8   8   blocks   blocks allocated and not yet reclaimed: loaned, live, or
//	                 released and waiting for the owner's reclaim
//	16  8   payload  payload bytes of those blocks
//	24  8   allocs   blocks allocated since the segment was made
//	32  8   frees    blocks given back since (reclaimed, freed, aborted)
//
// A hold slot (holdSlotSize bytes) records what one reader process holds:
//
//	0   8   holder   liveness id of the reader process that claimed the slot, 0 = free
//	8   8*31         entries, one per reference being taken, held or dropped:
//	                 gen<<28 | descriptor index, 0 = empty
//
// A block descriptor (descSize bytes); the descriptor of a block is the one
// at index offset/Granule (index 0 in a single-block segment):
//
//	0   8   word      refs (bits 0-23) | state (bits 24-27) | generation (bits 28-63);
//	                  readers CAS refs and, for single-use blocks, the state;
//	                  the owner CASes the state and the generation
//	8   8   length    payload length, written by the owner before the block is live
//	16  8   deadline  lease deadline, Unix nanoseconds (0: none), idem
//	24  1   lifetime  Lifetime, idem
//	25  7   reserved
//
// The protocol between readers and the owner on these words, and its
// invariants, is written next to the code in arena_hold.go.
const (
	// Granule is the allocation unit of a regular arena segment: every
	// block starts at a multiple of it and has the descriptor at index
	// offset/Granule. Payloads smaller than it still take one granule.
	Granule = 1 << 10
	// ChunkSize is the unit of the general allocator: slabs of one size
	// class are one chunk, large blocks are runs of whole chunks.
	ChunkSize = 64 << 10
	// MaxSmall is the largest payload served from a size class.
	MaxSmall = 32 << 10

	// arenaVersion is the version of the store descriptor and the data
	// header; metaVersion that of the meta header (2: the statistics
	// line, which moved the hold table).
	arenaVersion uint32 = 1
	metaVersion  uint32 = 2

	dataFileOffset = 4096

	flagSingle uint32 = 1

	// Store descriptor body.
	sidOffStore    = 16
	sidOffChecksum = 32
	sidSize        = 128

	// Data and meta headers share their first 56 bytes.
	ahOffMagic    = 0
	ahOffVersion  = 8
	ahOffFlags    = 12
	ahOffStore    = 16
	ahOffSegment  = 32
	ahOffOwner    = 40
	ahOffDataSize = 48
	dataOffSum    = 56
	metaOffNDesc  = 56
	metaOffHolds  = 60
	metaOffSum    = 64

	arenaLine        = 128
	metaOffClosed    = 1 * arenaLine
	metaOffReclaim   = 2 * arenaLine
	metaOffStats     = 3 * arenaLine
	metaOffHoldTable = 4 * arenaLine

	// Statistics line, from metaOffStats.
	statInUse   = 0
	statBlocks  = 8
	statPayload = 16
	statAllocs  = 24
	statFrees   = 32

	holdSlotSize    = 256
	holdEntries     = (holdSlotSize - 8) / 8 // 31
	holdOffHolder   = 0
	holdOffEntries  = 8
	maxHoldSlots    = 4096
	defaultHoldSlot = 64

	descSize        = 32
	descOffWord     = 0
	descOffLength   = 8
	descOffDeadline = 16
	descOffLifetime = 24

	// Descriptor word.
	refsBits  = 24
	stateBits = 4
	genShift  = refsBits + stateBits // 28
	refsMask  = 1<<refsBits - 1
	stateMask = (1<<stateBits - 1) << refsBits
	maxRefs   = refsMask - 1
	// MaxGeneration bounds the generations of a segment (36 bits).
	arenaMaxGen = 1<<(64-genShift) - 1

	// Hold entries pack the descriptor index in the low bits.
	entryIdxBits = genShift
	entryIdxMask = 1<<entryIdxBits - 1
	maxDesc      = entryIdxMask // bounds nDesc, so dataSize <= 256 GiB

	// maxDataSize bounds a data area read from a header.
	maxDataSize = 1 << 46
)

// Block states (bits 24-27 of the descriptor word).
const (
	stFree    = 0 // not allocated (or not the head of a block)
	stLoaned  = 1 // allocated, being filled by the owner; not resolvable
	stLive    = 2 // committed: resolvable
	stFreed   = 3 // Free was called; reclaimed once refs reach 0
	stEvicted = 4 // single use, released once; reclaimed once refs reach 0
	stExpired = 5 // lease passed; reclaimed once refs reach 0
)

var (
	sidMagic  = [8]byte{'S', 'H', 'M', 'X', 'A', 'S', 'I', 'D'}
	dataMagic = [8]byte{'S', 'H', 'M', 'X', 'A', 'D', 'A', 'T'}
	metaMagic = [8]byte{'S', 'H', 'M', 'X', 'A', 'M', 'E', 'T'}
)

func mkWord(gen uint64, state, refs uint64) uint64 {
	return gen<<genShift | state<<refsBits | refs
}
func wordGen(w uint64) uint64   { return w >> genShift }
func wordState(w uint64) uint64 { return (w & stateMask) >> refsBits }
func wordRefs(w uint64) uint64  { return w & refsMask }

func mkEntry(gen uint64, idx uint32) uint64 { return gen<<entryIdxBits | uint64(idx) }

// arenaHeader is a decoded data or meta header.
type arenaHeader struct {
	flags     uint32
	store     StoreID
	segment   uint64
	owner     uint64
	dataSize  uint64
	nDesc     uint32 // meta only
	holdSlots uint32 // meta only
}

func (h arenaHeader) single() bool { return h.flags&flagSingle != 0 }

// headerVersion is the layout version of a meta (meta) or data header.
func headerVersion(meta bool) uint32 {
	if meta {
		return metaVersion
	}
	return arenaVersion
}

// metaBodySize is the body size of a meta segment.
func metaBodySize(nDesc, holdSlots uint32) int64 {
	return int64(descOffset(holdSlots)) + int64(nDesc)*descSize
}

func descOffset(holdSlots uint32) int { return metaOffHoldTable + int(holdSlots)*holdSlotSize }

func putStoreDesc(b []byte, id StoreID) {
	le := binary.LittleEndian
	copy(b, sidMagic[:])
	le.PutUint32(b[ahOffVersion:], arenaVersion)
	copy(b[sidOffStore:], id[:])
	le.PutUint32(b[sidOffChecksum:], crc32.Checksum(b[:sidOffChecksum], castagnoli))
}

func parseStoreDesc(b []byte) (StoreID, error) {
	var id StoreID
	if len(b) < sidSize {
		return id, fmt.Errorf("%w: store descriptor of %d bytes", ErrBadArena, len(b))
	}
	le := binary.LittleEndian
	if [8]byte(b[:8]) != sidMagic {
		return id, fmt.Errorf("%w: store descriptor has a bad magic", ErrBadArena)
	}
	if v := le.Uint32(b[ahOffVersion:]); v != arenaVersion {
		return id, fmt.Errorf("%w: store descriptor version %d, want %d", ErrBadArena, v, arenaVersion)
	}
	if le.Uint32(b[sidOffChecksum:]) != crc32.Checksum(b[:sidOffChecksum], castagnoli) {
		return id, fmt.Errorf("%w: store descriptor checksum mismatch", ErrBadArena)
	}
	copy(id[:], b[sidOffStore:])
	return id, nil
}

func putArenaHeader(b []byte, magic [8]byte, h arenaHeader, meta bool) {
	le := binary.LittleEndian
	copy(b, magic[:])
	le.PutUint32(b[ahOffVersion:], headerVersion(meta))
	le.PutUint32(b[ahOffFlags:], h.flags)
	copy(b[ahOffStore:], h.store[:])
	le.PutUint64(b[ahOffSegment:], h.segment)
	le.PutUint64(b[ahOffOwner:], h.owner)
	le.PutUint64(b[ahOffDataSize:], h.dataSize)
	sum := dataOffSum
	if meta {
		le.PutUint32(b[metaOffNDesc:], h.nDesc)
		le.PutUint32(b[metaOffHolds:], h.holdSlots)
		sum = metaOffSum
	}
	le.PutUint32(b[sum:], crc32.Checksum(b[:sum], castagnoli))
}

// parseArenaHeader validates a data (meta=false) or meta header in b, the body
// of a segment whose file holds fileSize bytes. It checks that every size it
// decodes agrees with the others and with the file, so that nothing computed
// from the header can point outside the mapping.
func parseArenaHeader(b []byte, fileSize int64, meta bool) (arenaHeader, error) {
	var h arenaHeader
	what, magic, sum := "data", dataMagic, dataOffSum
	if meta {
		what, magic, sum = "meta", metaMagic, metaOffSum
	}
	if len(b) < sum+4 {
		return h, fmt.Errorf("%w: %s body of %d bytes", ErrBadArena, what, len(b))
	}
	le := binary.LittleEndian
	if [8]byte(b[:8]) != magic {
		return h, fmt.Errorf("%w: %s header has a bad magic", ErrBadArena, what)
	}
	if v := le.Uint32(b[ahOffVersion:]); v != headerVersion(meta) {
		return h, fmt.Errorf("%w: %s header version %d, want %d", ErrBadArena, what, v, headerVersion(meta))
	}
	if le.Uint32(b[sum:]) != crc32.Checksum(b[:sum], castagnoli) {
		return h, fmt.Errorf("%w: %s header checksum mismatch", ErrBadArena, what)
	}
	h.flags = le.Uint32(b[ahOffFlags:])
	copy(h.store[:], b[ahOffStore:])
	h.segment = le.Uint64(b[ahOffSegment:])
	h.owner = le.Uint64(b[ahOffOwner:])
	h.dataSize = le.Uint64(b[ahOffDataSize:])
	if h.flags&^flagSingle != 0 {
		return h, fmt.Errorf("%w: %s header has unknown flags %#x", ErrBadArena, what, h.flags)
	}
	if h.segment == 0 || h.owner == 0 {
		return h, fmt.Errorf("%w: %s header has a zero segment or owner id", ErrBadArena, what)
	}
	if h.dataSize == 0 || h.dataSize > maxDataSize || h.dataSize%Granule != 0 ||
		(!h.single() && h.dataSize%ChunkSize != 0) {
		return h, fmt.Errorf("%w: %s header has a data size of %d", ErrBadArena, what, h.dataSize)
	}
	if !meta {
		if fileSize != dataFileOffset+int64(h.dataSize) {
			return h, fmt.Errorf("%w: data file of %d bytes for %d data bytes", ErrBadArena, fileSize, h.dataSize)
		}
		return h, nil
	}
	h.nDesc = le.Uint32(b[metaOffNDesc:])
	h.holdSlots = le.Uint32(b[metaOffHolds:])
	want := uint32(1)
	if !h.single() {
		if h.dataSize/Granule > maxDesc {
			return h, fmt.Errorf("%w: meta header has a data size of %d", ErrBadArena, h.dataSize)
		}
		want = uint32(h.dataSize / Granule)
	}
	if h.nDesc != want {
		return h, fmt.Errorf("%w: meta header has %d descriptors for %d data bytes", ErrBadArena, h.nDesc, h.dataSize)
	}
	if h.holdSlots == 0 || h.holdSlots > maxHoldSlots {
		return h, fmt.Errorf("%w: meta header has %d hold slots", ErrBadArena, h.holdSlots)
	}
	if fileSize != shm.HeaderSize+metaBodySize(h.nDesc, h.holdSlots) {
		return h, fmt.Errorf("%w: meta file of %d bytes, layout needs %d", ErrBadArena, fileSize,
			shm.HeaderSize+metaBodySize(h.nDesc, h.holdSlots))
	}
	return h, nil
}
