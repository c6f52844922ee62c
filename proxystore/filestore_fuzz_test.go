package proxystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/shmex/shmex/shm"
)

// FuzzFileHeader decodes arbitrary bytes as a payload file header: an
// ErrCorrupt, or a header that keeps the layout's invariants and encodes
// back to the same bytes, never a panic. With seal set, the header's
// checksum is recomputed over the fuzzed bytes first, so that the checks
// behind it (flags, codec, lifetime, deadline, lengths) see them.
func FuzzFileHeader(f *testing.F) {
	for _, h := range []fileHeader{
		{store: NewStoreID(), segment: 1, generation: 2, rawLen: 10, storedLen: 10},
		{codec: CompressZstd, lifetime: Leased, store: NewStoreID(), segment: 3, generation: 4, rawLen: 100, storedLen: 20, deadline: time.Now().UnixNano()},
		{codec: CompressS2, lifetime: SingleUse, segment: 5, generation: 6, rawLen: 1 << 30, storedLen: 1 << 20},
		{codec: CompressS2, lifetime: Owned, segment: 5, generation: 6, rawLen: 10, storedLen: 10}, // compressed, not smaller
		{codec: 7, segment: 5, generation: 6, rawLen: 10, storedLen: 10},
		{lifetime: Owned, segment: 5, generation: 6, rawLen: 10, storedLen: 10, deadline: 1},
		{segment: 5, generation: 6, rawLen: 1 << 41, storedLen: 1 << 41},
	} {
		b := make([]byte, fileHeaderSize)
		h.put(b)
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte(fileMagic), false)
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		const maxRaw = 1 << 40
		b = bytes.Clone(b)
		if seal && len(b) >= fileHeaderSize {
			binary.LittleEndian.PutUint32(b[offHeaderCRC:], crc32.Checksum(b[:offHeaderCRC], castagnoli))
		}
		h, err := parseFileHeader(b, maxRaw)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if h.codec > CompressS2 || h.lifetime > Leased || h.lifetime != Leased && h.deadline != 0 || h.rawLen > maxRaw ||
			h.codec == CompressNone && h.storedLen != h.rawLen || h.codec != CompressNone && h.storedLen >= h.rawLen {
			t.Fatalf("accepted %+v", h)
		}
		out := make([]byte, fileHeaderSize)
		h.put(out)
		if !bytes.Equal(out, b[:fileHeaderSize]) {
			t.Fatalf("header %x re-encodes to %x", b[:fileHeaderSize], out)
		}
	})
}

// FuzzStoreIDFile decodes arbitrary bytes as a storeid file: an ErrCorrupt,
// or an id that encodes back to the same bytes. With seal set, the
// checksum is recomputed over the fuzzed bytes first.
func FuzzStoreIDFile(f *testing.F) {
	f.Add(putStoreID(NewStoreID()), false)
	f.Add(putStoreID(NewStoreID()), true)
	bad := putStoreID(NewStoreID())
	bad[12] = 1 // a reserved byte
	f.Add(bad, true)
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		b = bytes.Clone(b)
		if seal && len(b) >= offIDCRC+4 {
			binary.LittleEndian.PutUint32(b[offIDCRC:], crc32.Checksum(b[:offIDCRC], castagnoli))
		}
		id, err := parseStoreID(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(putStoreID(id), b) {
			t.Fatal("storeid file does not re-encode to itself")
		}
	})
}

// FuzzFileResolve resolves payload files whose header is consistent (right
// checksums, so that the stored bytes reach the decompressors) but whose
// stored bytes and lengths are arbitrary: a sentinel error, or exactly the
// recorded length of exactly the bytes the codec's reference decoder makes
// of the stored ones, never a panic or an allocation beyond the limit.
func FuzzFileResolve(f *testing.F) {
	text := bytes.Repeat([]byte("fuzz the file store "), 50)
	enc, _ := zstd.NewWriter(nil)
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(4<<20))
	defer dec.Close()
	f.Add(uint8(CompressZstd), uint32(len(text)), uint8(Owned), enc.EncodeAll(text, nil))
	f.Add(uint8(CompressS2), uint32(len(text)), uint8(SingleUse), s2.Encode(nil, text))
	f.Add(uint8(CompressNone), uint32(len(text)), uint8(Leased), text)
	f.Add(uint8(CompressZstd), uint32(1<<20), uint8(Owned), []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58, 0, 0, 0})
	dir := f.TempDir()
	s, err := OpenFileStore(dir, WithFileMaxPayload(1<<20))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, codec uint8, rawLen uint32, life uint8, stored []byte) {
		h := fileHeader{
			codec:      Compression(codec % 4),
			lifetime:   Lifetime(life % 4),
			store:      s.ID(),
			segment:    randomNonZero(),
			generation: 1,
			rawLen:     uint64(rawLen % (1<<20 + 2)),
			storedLen:  uint64(len(stored)),
			dataCRC:    crc32.Checksum(stored, castagnoli),
		}
		if h.lifetime == Leased {
			h.deadline = time.Now().Add(time.Hour).UnixNano()
		}
		b := make([]byte, fileHeaderSize, fileHeaderSize+len(stored))
		h.put(b)
		path := s.path(h.segment)
		if err := os.WriteFile(path, append(b, stored...), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		v, err := s.Resolve(t.Context(), h.proxy())
		if err != nil {
			if !isResolveSentinel(err) {
				t.Fatalf("resolve: %v is no sentinel", err)
			}
			return
		}
		if uint64(len(v.Bytes())) != h.rawLen {
			t.Fatalf("resolved %d bytes, header says %d", len(v.Bytes()), h.rawLen)
		}
		// The bytes are what the stored ones decode to, with the codec's
		// reference decoder.
		var want []byte
		switch h.codec {
		case CompressNone:
			want = stored
		case CompressZstd:
			want, err = dec.DecodeAll(stored, nil)
		case CompressS2:
			want, err = s2.Decode(nil, stored)
		}
		if err != nil || !bytes.Equal(v.Bytes(), want) {
			t.Fatalf("%v payload resolved to %d bytes; the reference decoder gives %d (%v)", h.codec, len(v.Bytes()), len(want), err)
		}
		if err := v.Release(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzNames parses names found in a store's directory as the file store's
// payload and temporary files and the arena store's segments: what is
// accepted is a non-zero id that the store would spell exactly so (16
// lower-case hex digits), so that the name and the id are one file. The
// names that the parsers took for other files' before are in
// testdata/fuzz/FuzzNames.
func FuzzNames(f *testing.F) {
	f.Add(filePrefix + "0123456789abcdef")
	f.Add(filePrefix + "0000000000000000")
	f.Add(fmt.Sprintf("%s%016x-%s", fileTempPrefix, uint64(42), "00ff00ff00ff00ff"))
	f.Add(fileTempPrefix + "+123456789abcdef-x")
	f.Add(segName(0xfeed, "meta"))
	f.Add(segName(0xfeed, "data"))
	f.Add(shm.ArenaPrefix + "store")
	f.Fuzz(func(t *testing.T, name string) {
		if seg, ok := payloadSegment(name); ok && (seg == 0 || fmt.Sprintf("%s%016x", filePrefix, seg) != name) {
			t.Fatalf("payloadSegment(%q) = %#x", name, seg)
		}
		if life, ok := tempLife(name); ok && (life == 0 || !strings.HasPrefix(name, fmt.Sprintf("%s%016x-", fileTempPrefix, life))) {
			t.Fatalf("tempLife(%q) = %#x", name, life)
		}
		if meta, ok := parseSegName(name); ok {
			suffix := "data"
			if meta {
				suffix = "meta"
			}
			id, err := strconv.ParseUint(name[len(shm.ArenaPrefix):][:16], 16, 64)
			if err != nil || id == 0 || segName(id, suffix) != name {
				t.Fatalf("parseSegName(%q) = %v, %v", name, meta, ok)
			}
		}
	})
}
