package proxystore

import (
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// FuzzFileHeader decodes arbitrary bytes as a payload file header: an error
// or a header that encodes back to the same bytes, never a panic.
func FuzzFileHeader(f *testing.F) {
	for _, h := range []fileHeader{
		{store: NewStoreID(), segment: 1, generation: 2, rawLen: 10, storedLen: 10},
		{codec: CompressZstd, lifetime: Leased, store: NewStoreID(), segment: 3, generation: 4, rawLen: 100, storedLen: 20, deadline: time.Now().UnixNano()},
		{codec: CompressS2, lifetime: SingleUse, segment: 5, generation: 6, rawLen: 1 << 30, storedLen: 1 << 20},
	} {
		b := make([]byte, fileHeaderSize)
		h.put(b)
		f.Add(b)
	}
	f.Add([]byte(fileMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseFileHeader(b, 1<<40)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		out := make([]byte, fileHeaderSize)
		h.put(out)
		if !bytes.Equal(out, b[:fileHeaderSize]) {
			t.Fatalf("header %x re-encodes to %x", b[:fileHeaderSize], out)
		}
	})
}

// FuzzStoreIDFile decodes arbitrary bytes as a storeid file.
func FuzzStoreIDFile(f *testing.F) {
	f.Add(putStoreID(NewStoreID()))
	f.Fuzz(func(t *testing.T, b []byte) {
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
// stored bytes and lengths are arbitrary: an error or exactly the recorded
// length, never a panic or an allocation beyond the limit.
func FuzzFileResolve(f *testing.F) {
	text := bytes.Repeat([]byte("fuzz the file store "), 50)
	enc, _ := zstd.NewWriter(nil)
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
			return
		}
		if uint64(len(v.Bytes())) != h.rawLen {
			t.Fatalf("resolved %d bytes, header says %d", len(v.Bytes()), h.rawLen)
		}
		if h.codec == CompressNone && !bytes.Equal(v.Bytes(), stored) {
			t.Fatal("uncompressed payload resolved to other bytes")
		}
		v.Release()
	})
}
