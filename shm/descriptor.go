package shm

// Layout of the segment header. Every segment file starts with HeaderSize
// bytes laid out as below (little-endian). The header is written once, at
// creation, before the segment is published, and never changes afterwards;
// the body that follows is owned by the structure that the kind names.
//
//	offset size field
//	0      8    magic            "SHMEXSEG"
//	8      4    version          LayoutVersion
//	12     4    kind             Kind
//	16     8    size             total file size in bytes, header included
//	24     4    creator uid
//	28     4    creator pid
//	32     8    created          Unix nanoseconds
//	40     4    reserved         zero
//	44     4    checksum         CRC-32C (Castagnoli) of bytes [0, 44)
//	48     ...  zero up to HeaderSize
const (
	// HeaderSize is the size of the segment header. The body starts here, on
	// a 128-byte boundary, so that structures in the body can put contended
	// words on cache lines of their own.
	HeaderSize = 256

	// LayoutVersion is the version of the header layout written by this
	// package; Open refuses any other.
	LayoutVersion uint32 = 1

	offMagic    = 0
	offVersion  = 8
	offKind     = 12
	offSize     = 16
	offUID      = 24
	offPID      = 28
	offCreated  = 32
	offChecksum = 44
	checksummed = offChecksum // bytes covered by the checksum

	// CacheLine is the unit of separation for words that two processes
	// write: 128 bytes, because adjacent-line prefetch pairs 64-byte lines.
	CacheLine = 128

	// maxSegmentSize bounds the size field read from a header.
	maxSegmentSize = 1 << 46
)

// magic identifies a shmex segment.
var magic = [8]byte{'S', 'H', 'M', 'E', 'X', 'S', 'E', 'G'}

// Kind says what structure a segment's body holds.
type Kind uint32

// Segment kinds. The values are part of the layout: never renumber them.
const (
	KindRing     Kind = 1 // a mailbox ring (package ring)
	KindRegistry Kind = 2 // an exchange's registry of mailboxes
	KindArena    Kind = 3 // a proxy-store arena
	KindScratch  Kind = 4 // benchmark and test scratch space
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindRing:
		return "ring"
	case KindRegistry:
		return "registry"
	case KindArena:
		return "arena"
	case KindScratch:
		return "scratch"
	}
	return "kind(" + itoa(uint64(k)) + ")"
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
