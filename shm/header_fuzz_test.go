package shm_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/shmex/shmex/shm"
)

// The segment header as shm/descriptor.go lays it out: the fuzz targets
// write headers field by field and seal them with their checksum, so that
// the checks behind the checksum see the fields.
const (
	hdrVersion  = 8
	hdrKind     = 12
	hdrSize     = 16
	hdrUID      = 24
	hdrPID      = 28
	hdrCreated  = 32
	hdrReserved = 40
	hdrChecksum = 44
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// headerSentinels are the errors ParseHeader and Open report for a bad
// header or file.
var headerSentinels = []error{shm.ErrTruncated, shm.ErrBadMagic, shm.ErrVersion, shm.ErrChecksum,
	shm.ErrBadSize, shm.ErrWrongKind, shm.ErrNotOwner}

func isHeaderSentinel(err error) bool {
	for _, s := range headerSentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// sealHeader writes the header's checksum over its first 44 bytes.
func sealHeader(b []byte) {
	binary.LittleEndian.PutUint32(b[hdrChecksum:], crc32.Checksum(b[:hdrChecksum], castagnoli))
}

// fields is a header's fields as written at their offsets.
type fields struct {
	version, kind, uid, pid, reserved uint32
	size, created                     uint64
}

func (h fields) put(b []byte) {
	le := binary.LittleEndian
	copy(b, "SHMEXSEG")
	le.PutUint32(b[hdrVersion:], h.version)
	le.PutUint32(b[hdrKind:], h.kind)
	le.PutUint64(b[hdrSize:], h.size)
	le.PutUint32(b[hdrUID:], h.uid)
	le.PutUint32(b[hdrPID:], h.pid)
	le.PutUint64(b[hdrCreated:], h.created)
	le.PutUint32(b[hdrReserved:], h.reserved)
	sealHeader(b)
}

// FuzzParseHeader parses arbitrary bytes as a segment header: a sentinel
// error, or the fields at their offsets, with a size in range. With seal
// set, the checksum is recomputed over the fuzzed bytes first (and the
// magic written), so that the version and size checks behind it are
// reached.
func FuzzParseHeader(f *testing.F) {
	dir := testDir(f)
	s, err := shm.Create(filepath.Join(dir, "seed"), shm.KindRing, 4096, nil)
	if err != nil {
		f.Fatal(err)
	}
	good := append([]byte(nil), s.Bytes()[:shm.HeaderSize]...)
	s.Close()
	f.Add(good, false)
	f.Add(good, true)
	f.Add([]byte("SHMEXSEG"), false)
	f.Add(make([]byte, shm.HeaderSize), true)
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		b = append([]byte(nil), b...)
		if seal && len(b) >= shm.HeaderSize {
			copy(b, "SHMEXSEG")
			sealHeader(b)
		}
		info, err := shm.ParseHeader(b)
		if err != nil {
			if !isHeaderSentinel(err) {
				t.Fatalf("ParseHeader: %v is none of the sentinels", err)
			}
			return
		}
		le := binary.LittleEndian
		want := shm.Info{Kind: shm.Kind(le.Uint32(b[hdrKind:])), Size: int64(le.Uint64(b[hdrSize:])),
			UID: le.Uint32(b[hdrUID:]), PID: le.Uint32(b[hdrPID:]), Created: time.Unix(0, int64(le.Uint64(b[hdrCreated:])))}
		if info != want || info.Size < shm.HeaderSize || info.Size > 1<<46 || le.Uint32(b[hdrVersion:]) != shm.LayoutVersion {
			t.Fatalf("accepted %+v from % x", info, b[:hdrChecksum+4])
		}
	})
}

// FuzzHeaderFields writes every field of a header, seals it, and parses
// it: accepted exactly when the version is this package's and the size is
// in [HeaderSize, 2^46], and then with the fields as written.
func FuzzHeaderFields(f *testing.F) {
	f.Add(shm.LayoutVersion, uint32(shm.KindRing), uint64(4096), uint32(0), uint32(1), uint64(0), uint32(0))
	f.Add(uint32(2), uint32(shm.KindRegistry), uint64(shm.HeaderSize), uint32(1000), uint32(1), uint64(1)<<63, uint32(7))
	f.Add(shm.LayoutVersion, uint32(99), uint64(shm.HeaderSize-1), uint32(0), uint32(0), uint64(0), uint32(0))
	f.Add(shm.LayoutVersion, uint32(shm.KindArena), uint64(1)<<63, uint32(0), uint32(0), uint64(0), uint32(0))
	f.Fuzz(func(t *testing.T, version, kind uint32, size uint64, uid, pid uint32, created uint64, reserved uint32) {
		h := fields{version: version, kind: kind, size: size, uid: uid, pid: pid, created: created, reserved: reserved}
		b := make([]byte, shm.HeaderSize)
		h.put(b)
		info, err := shm.ParseHeader(b)
		ok := version == shm.LayoutVersion && size >= shm.HeaderSize && size <= 1<<46
		if (err == nil) != ok {
			t.Fatalf("ParseHeader(%+v) = %v", h, err)
		}
		if err != nil {
			if !isHeaderSentinel(err) {
				t.Fatalf("ParseHeader: %v is none of the sentinels", err)
			}
			return
		}
		if info.Kind != shm.Kind(kind) || info.Size != int64(size) || info.UID != uid || info.PID != pid || info.Created.UnixNano() != int64(created) {
			t.Fatalf("ParseHeader(%+v) = %+v", h, info)
		}
	})
}

// FuzzOpen opens a file whose header is sealed with fuzzed fields (kind,
// size, uid, version) and whose length is fuzzed too: a sentinel error, or
// a segment of the kind asked for, created by this user, whose mapping is
// exactly the file (every byte of it readable, the last one included).
func FuzzOpen(f *testing.F) {
	dir := testDir(f)
	uid := uint32(os.Geteuid())
	f.Add(shm.LayoutVersion, uint32(shm.KindRing), uint64(4096), uid, uint32(4096))
	f.Add(shm.LayoutVersion, uint32(shm.KindRing), uint64(8192), uid, uint32(4096))
	f.Add(shm.LayoutVersion, uint32(shm.KindRing), uint64(4096), uid, uint32(8192))
	f.Add(shm.LayoutVersion, uint32(shm.KindRing), uint64(shm.HeaderSize), uid, uint32(shm.HeaderSize))
	f.Add(shm.LayoutVersion, uint32(shm.KindArena), uint64(4096), uid, uint32(4096))
	f.Add(shm.LayoutVersion, uint32(shm.KindRing), uint64(4096), uid+1, uint32(4096))
	f.Add(shm.LayoutVersion, uint32(shm.KindRing), uint64(1)<<40, uid, uint32(4096))
	var n int
	f.Fuzz(func(t *testing.T, version, kind uint32, size uint64, owner, length uint32) {
		length %= 1 << 16
		n++
		path := filepath.Join(dir, fmt.Sprintf("s%d", n))
		b := make([]byte, max(int(length), shm.HeaderSize))
		fields{version: version, kind: kind, size: size, uid: owner, pid: 1}.put(b)
		if err := os.WriteFile(path, b[:length], 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		s, err := shm.Open(path, shm.KindRing)
		if err != nil {
			if !isHeaderSentinel(err) {
				t.Fatalf("Open: %v is none of the sentinels", err)
			}
			return
		}
		defer s.Close()
		info := s.Info()
		m := s.Bytes()
		if info.Kind != shm.KindRing || info.UID != uid || info.Size != int64(length) || len(m) != int(length) ||
			len(s.Body()) != int(length)-shm.HeaderSize {
			t.Fatalf("Open of a %d-byte file: %+v, mapping of %d bytes", length, info, len(m))
		}
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // a fault fails the test rather than kill it
		_ = m[0] + m[len(m)-1]
	})
}

// FuzzParseLifeName parses names found in an exchange directory as
// liveness lock files: what it accepts is a non-zero id whose lock file
// LifePath names with exactly that name, so that the id and the file are
// one.
func FuzzParseLifeName(f *testing.F) {
	f.Add(filepath.Base(shm.LifePath("/", 0x0123456789abcdef)))
	f.Add(shm.LivePrefix + "0000000000000000")
	f.Add(shm.LivePrefix + "+123456789abcdef")
	f.Add("live-")
	f.Fuzz(func(t *testing.T, name string) {
		id, ok := shm.ParseLifeName(name)
		if !ok {
			return
		}
		if id == 0 || filepath.Base(shm.LifePath("/x", id)) != name {
			t.Fatalf("ParseLifeName(%q) = %#x, the lock file of which is %s", name, id, filepath.Base(shm.LifePath("/x", id)))
		}
	})
}
