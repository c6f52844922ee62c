package proxystore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
)

// File store layout: every byte of a file store's files is described here.
//
// A file store is a directory owned by the user and writable by nobody else
// (created with mode 0700), holding:
//
//	<dir>/storeid                 the store's id (fileIDSize bytes), created once
//	<dir>/p-<segment:016x>        one payload file per proxy
//	<dir>/.live/live-<id:016x>    liveness lock files, one per open FileStore
//	<dir>/.tmp-<life:016x>-<rand> payload files being written (never read)
//
// A payload file is a fileHeaderSize-byte header followed by the stored
// bytes (the payload, or its compressed form). All integers are little
// endian.
//
//	offset size field
//	     0    8 magic       "shmexPF\x00"
//	     8    2 version     fileVersion
//	    10    1 codec       Compression of the stored bytes
//	    11    1 lifetime    Lifetime of the payload
//	    12    4 flags       zero (reserved)
//	    16   16 store       StoreID of the store that wrote the file
//	    32    8 segment     the file's name, as in the proxy
//	    40    8 generation  random nonce, as in the proxy
//	    48    8 raw length  payload length (the proxy's Length)
//	    56    8 stored len  bytes after the header; the file is exactly
//	                        fileHeaderSize + stored len bytes long
//	    64    8 deadline    unix nanoseconds of a Leased payload, else 0
//	    72    4 data crc    CRC-32C (Castagnoli) of the stored bytes
//	    76    4 header crc  CRC-32C of bytes [0, 76)
//	    80      stored bytes
//
// Invariants a valid header satisfies (checked by parseFileHeader, so that
// a tampered file is an error and never an allocation or a read beyond the
// file): magic, version, flags zero, header crc, a known codec and
// lifetime, deadline zero unless Leased, stored len == raw len when
// uncompressed and stored len < raw len when compressed (a writer keeps the
// raw bytes when compression does not shrink them), raw len at most the
// store's payload limit.
//
// The storeid file is fileIDSize bytes:
//
//	offset size field
//	     0    8 magic    "shmexFI\x00"
//	     8    2 version  fileVersion
//	    10    6 zero
//	    16   16 id       the StoreID
//	    32    4 crc      CRC-32C of bytes [0, 32)
//	    36    4 zero
const (
	fileMagic   = "shmexPF\x00"
	fileIDMagic = "shmexFI\x00"
	fileVersion = 1

	fileHeaderSize = 80
	fileIDSize     = 40

	offMagic      = 0
	offVersion    = 8
	offCodec      = 10
	offLifetime   = 11
	offFlags      = 12
	offStore      = 16
	offSegment    = 32
	offGeneration = 40
	offRawLen     = 48
	offStoredLen  = 56
	offDeadline   = 64
	offDataCRC    = 72
	offHeaderCRC  = 76

	offIDVersion = 8
	offID        = 16
	offIDCRC     = 32

	fileIDName     = "storeid"
	filePrefix     = "p-"
	fileTempPrefix = ".tmp-"
	fileLiveDir    = ".live"
)

// parseID16 parses an id as the store's names spell it: exactly 16
// lower-case hex digits (fmt's %016x), not zero. Any other spelling names
// another file than the one the store would give that id.
func parseID16(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	var id uint64
	for i := 0; i < 16; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		id = id<<4 | uint64(c)
	}
	return id, id != 0
}

// payloadSegment returns the segment a payload file's name (p-<segment>)
// names.
func payloadSegment(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, filePrefix)
	if !ok {
		return 0, false
	}
	return parseID16(rest)
}

// castagnoli is the CRC-32C table of every checksum of the package (file
// and arena headers, payload files).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileHeader is the decoded header of a payload file.
type fileHeader struct {
	codec      Compression
	lifetime   Lifetime
	store      StoreID
	segment    uint64
	generation uint64
	rawLen     uint64
	storedLen  uint64
	deadline   int64 // unix nanoseconds; Leased only
	dataCRC    uint32
}

// put encodes h into b[:fileHeaderSize], header checksum included.
func (h *fileHeader) put(b []byte) {
	b = b[:fileHeaderSize]
	clear(b)
	copy(b[offMagic:], fileMagic)
	le := binary.LittleEndian
	le.PutUint16(b[offVersion:], fileVersion)
	b[offCodec] = byte(h.codec)
	b[offLifetime] = byte(h.lifetime)
	copy(b[offStore:offStore+16], h.store[:])
	le.PutUint64(b[offSegment:], h.segment)
	le.PutUint64(b[offGeneration:], h.generation)
	le.PutUint64(b[offRawLen:], h.rawLen)
	le.PutUint64(b[offStoredLen:], h.storedLen)
	le.PutUint64(b[offDeadline:], uint64(h.deadline))
	le.PutUint32(b[offDataCRC:], h.dataCRC)
	le.PutUint32(b[offHeaderCRC:], crc32.Checksum(b[:offHeaderCRC], castagnoli))
}

// parseFileHeader decodes and checks the header at the start of b against
// the invariants listed above; maxRaw bounds the raw length. Errors wrap
// ErrCorrupt.
func parseFileHeader(b []byte, maxRaw uint64) (fileHeader, error) {
	var h fileHeader
	if len(b) < fileHeaderSize {
		return h, fmt.Errorf("%w: header of %d bytes, want %d", ErrCorrupt, len(b), fileHeaderSize)
	}
	b = b[:fileHeaderSize]
	le := binary.LittleEndian
	if string(b[offMagic:offMagic+8]) != fileMagic {
		return h, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b[offMagic:offMagic+8])
	}
	if v := le.Uint16(b[offVersion:]); v != fileVersion {
		return h, fmt.Errorf("%w: layout version %d, want %d", ErrCorrupt, v, fileVersion)
	}
	if got, want := le.Uint32(b[offHeaderCRC:]), crc32.Checksum(b[:offHeaderCRC], castagnoli); got != want {
		return h, fmt.Errorf("%w: header checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if f := le.Uint32(b[offFlags:]); f != 0 {
		return h, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, f)
	}
	h.codec = Compression(b[offCodec])
	h.lifetime = Lifetime(b[offLifetime])
	copy(h.store[:], b[offStore:offStore+16])
	h.segment = le.Uint64(b[offSegment:])
	h.generation = le.Uint64(b[offGeneration:])
	h.rawLen = le.Uint64(b[offRawLen:])
	h.storedLen = le.Uint64(b[offStoredLen:])
	h.deadline = int64(le.Uint64(b[offDeadline:]))
	h.dataCRC = le.Uint32(b[offDataCRC:])
	switch {
	case h.codec > CompressS2:
		return h, fmt.Errorf("%w: unknown codec %d", ErrCorrupt, h.codec)
	case h.lifetime > Leased:
		return h, fmt.Errorf("%w: unknown lifetime %d", ErrCorrupt, h.lifetime)
	case h.lifetime != Leased && h.deadline != 0:
		return h, fmt.Errorf("%w: deadline on a %v payload", ErrCorrupt, h.lifetime)
	case h.rawLen > maxRaw:
		return h, fmt.Errorf("%w: payload of %d bytes over the limit of %d", ErrCorrupt, h.rawLen, maxRaw)
	case h.codec == CompressNone && h.storedLen != h.rawLen:
		return h, fmt.Errorf("%w: uncompressed payload stores %d bytes for %d", ErrCorrupt, h.storedLen, h.rawLen)
	case h.codec != CompressNone && h.storedLen >= h.rawLen:
		return h, fmt.Errorf("%w: compressed payload stores %d bytes for %d", ErrCorrupt, h.storedLen, h.rawLen)
	}
	return h, nil
}

// deadlineTime returns the lease deadline of h.
func (h *fileHeader) deadlineTime() time.Time { return time.Unix(0, h.deadline) }

// putStoreID encodes the storeid file's contents.
func putStoreID(id StoreID) []byte {
	b := make([]byte, fileIDSize)
	copy(b, fileIDMagic)
	binary.LittleEndian.PutUint16(b[offIDVersion:], fileVersion)
	copy(b[offID:offID+16], id[:])
	binary.LittleEndian.PutUint32(b[offIDCRC:], crc32.Checksum(b[:offIDCRC], castagnoli))
	return b
}

// parseStoreID decodes the storeid file's contents. Errors wrap ErrCorrupt.
func parseStoreID(b []byte) (StoreID, error) {
	var id StoreID
	if len(b) != fileIDSize {
		return id, fmt.Errorf("%w: storeid file of %d bytes, want %d", ErrCorrupt, len(b), fileIDSize)
	}
	if string(b[:8]) != fileIDMagic {
		return id, fmt.Errorf("%w: storeid file: bad magic", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[offIDVersion:]); v != fileVersion {
		return id, fmt.Errorf("%w: storeid file: version %d, want %d", ErrCorrupt, v, fileVersion)
	}
	for _, c := range append(b[offIDVersion+2:offID:offID], b[offIDCRC+4:]...) {
		if c != 0 {
			return id, fmt.Errorf("%w: storeid file: reserved bytes not zero", ErrCorrupt)
		}
	}
	if binary.LittleEndian.Uint32(b[offIDCRC:]) != crc32.Checksum(b[:offIDCRC], castagnoli) {
		return id, fmt.Errorf("%w: storeid file: bad checksum", ErrCorrupt)
	}
	copy(id[:], b[offID:offID+16])
	return id, nil
}
