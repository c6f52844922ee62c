package exchange

import (
	"encoding/binary"
	"hash/crc32"
)

// SealRegistry recomputes the checksums of a registry body (see
// registry_layout.go) after a fuzz target damaged its bytes: the header's,
// when the header is whole, and every whole entry's, so that the checks
// behind the checksums are reached. It changes nothing else.
func SealRegistry(body []byte) {
	le := binary.LittleEndian
	if len(body) >= regOffCheck+4 {
		le.PutUint32(body[regOffCheck:], crc32.Checksum(body[:regOffCheck], castagnoli))
	}
	for off := regOffTable; off+regEntrySize <= len(body); off += regEntrySize {
		e := body[off : off+regEntrySize]
		le.PutUint32(e[entChecksum:], entryChecksum(e))
	}
}
