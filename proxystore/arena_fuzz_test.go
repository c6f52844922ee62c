package proxystore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/shmex/shmex/shm"
)

// arenaSentinels are the errors Resolve may wrap.
var arenaSentinels = []error{ErrForeignProxy, ErrBadProxy, ErrStaleProxy, ErrExpired, ErrOwnerDead,
	ErrClosed, ErrBadArena, ErrTooManyViews}

func isArenaSentinel(err error) bool {
	for _, s := range arenaSentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzArenaResolve resolves proxies with fuzzed fields against a real arena
// holding blocks of several sizes (slab, chunk run, single-block segment):
// every answer is a sentinel error or a view of exactly the proxy's bytes,
// never a panic or a read outside the mapping.
func FuzzArenaResolve(f *testing.F) {
	ctx := context.Background()
	dir := arenaDir(f)
	owner := openArena(f, dir, WithSegmentSize(1<<20), WithMaxBytes(4<<20))
	reader := openArena(f, dir)
	var ps []Proxy
	for _, n := range []int{0, 10, 5000, 100 << 10, 2 << 20} {
		p, err := owner.Put(ctx, make([]byte, n))
		if err != nil {
			f.Fatal(err)
		}
		ps = append(ps, p)
	}
	single, err := owner.Put(ctx, []byte("single use"), WithSingleUse())
	if err != nil {
		f.Fatal(err)
	}
	ps = append(ps, single)
	for _, p := range ps {
		f.Add(uint8(0), p.Segment, p.Offset, p.Length, p.Generation, uint8(1))
	}
	f.Add(uint8(1), uint64(0), uint64(1<<20), uint64(0), uint64(1), uint8(1))
	f.Add(uint8(2), uint64(0), ^uint64(0), uint64(2), uint64(3), uint8(2))
	f.Fuzz(func(t *testing.T, sel uint8, seg, off, n, gen uint64, kind uint8) {
		p := ps[int(sel)%len(ps)]
		switch sel / 16 % 4 {
		case 0: // keep the segment, fuzz the rest
		case 1:
			p.Segment = seg
		case 2:
			p.Store = StoreID{}
		}
		if sel&1 != 0 {
			p.Offset = off
		}
		if sel&2 != 0 {
			p.Length = n
		}
		if sel&4 != 0 {
			p.Generation = gen
		}
		if sel&8 != 0 {
			p.Kind = kind
		}
		for _, a := range []*Arena{reader, owner} {
			v, err := a.Resolve(ctx, p)
			if err != nil {
				if !isArenaSentinel(err) {
					t.Fatalf("resolve %v: unexpected error %v", p, err)
				}
				continue
			}
			b := v.Bytes()
			if uint64(len(b)) != p.Length || v.Proxy() != p {
				t.Fatalf("resolve %v: view of %d bytes", p, len(b))
			}
			if len(b) > 0 {
				_ = b[0] + b[len(b)-1] // must be mapped
			}
			if err := v.Release(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzArenaAttach builds an arena segment by hand, owned by a live process
// of the directory and holding one live block, corrupts its bytes (shm
// headers, arena headers, hold slots, descriptors) as the fuzzer says, and
// resolves the block's proxy from a fresh reader: a sentinel error or a view
// of the block, never a panic or a read outside the mapping (a fault fails
// the test); a segment undamaged, or damaged only in its statistics line,
// resolves. With seal set, the checksums of the damaged segment's shm
// header and arena header are recomputed after the damage, so that the
// checks behind them (flags, ids, sizes against one another and the file)
// see the damaged fields.
func FuzzArenaAttach(f *testing.F) {
	ctx := context.Background()
	dir := arenaDir(f)
	owner := openArena(f, dir) // fixes the store id and holds a live id
	for _, seal := range []bool{false, true} {
		f.Add(false, uint16(0), []byte{0}, seal)
		f.Add(true, uint16(shm.HeaderSize+ahOffDataSize), []byte{1}, seal)
		f.Add(true, uint16(shm.HeaderSize+metaOffNDesc), []byte{0xff, 0xff}, seal)
		f.Add(false, uint16(shm.HeaderSize+ahOffOwner), []byte{1, 2, 3}, seal)
		f.Add(true, uint16(shm.HeaderSize+metaBodySize(0, 1)), []byte{0x10, 0, 0, 0, 0, 0, 0, 0x10}, seal) // descriptor word
		f.Add(true, uint16(shm.HeaderSize+metaBodySize(0, 1)+descOffLength), []byte{0xff, 0xff, 0xff}, seal)
		f.Add(true, uint16(shm.HeaderSize+metaOffHoldTable+8), []byte{1, 0, 0, 0, 0, 0, 0, 0x10}, seal)
	}
	f.Add(false, uint16(shm.HeaderSize+ahOffFlags), []byte{1}, true)                       // data says single, meta not
	f.Add(true, uint16(shm.HeaderSize+metaOffHolds), []byte{1, 0x10}, true)                // hold slots past the file
	f.Add(true, uint16(16), []byte{0, 0x10}, true)                                         // shm size
	f.Add(false, uint16(shm.HeaderSize+ahOffDataSize+2), []byte{0xff, 0xff}, true)         // data size past the file
	f.Add(true, uint16(shm.HeaderSize+ahOffSegment), []byte{0xff}, true)                   // another segment id
	f.Add(true, uint16(shm.HeaderSize+ahOffVersion), []byte{3}, true)                      // meta version 1 (before the statistics line)
	f.Add(true, uint16(shm.HeaderSize+metaOffStats), bytes.Repeat([]byte{0xff}, 40), true) // statistics: only for operators
	var next atomic.Uint64
	next.Store(0x1000)
	f.Fuzz(func(t *testing.T, meta bool, at uint16, xor []byte, seal bool) {
		id := next.Add(1)
		const dataSize = ChunkSize
		hdr := arenaHeader{store: owner.ID(), segment: id, owner: owner.LifeID(), dataSize: dataSize,
			nDesc: dataSize / Granule, holdSlots: 1}
		// harmless: no byte changed, or only bytes of the meta segment's
		// statistics line (for operators; a reader never needs them).
		harmless := true
		corrupt := func(b []byte) {
			for i, x := range xor {
				if j := int(at) + i; j < len(b) && x != 0 {
					b[j] ^= x
					if k := j - shm.HeaderSize; !meta || k < metaOffStats || k >= metaOffStats+statFrees+8 {
						harmless = false
					}
				}
			}
		}
		dataPath := filepath.Join(dir, segName(id, "data"))
		metaPath := filepath.Join(dir, segName(id, "meta"))
		data, err := shm.Create(dataPath, shm.KindArena, dataFileOffset+dataSize, func(body []byte) error {
			putArenaHeader(body, dataMagic, hdr, false)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { data.Remove(); data.Close() }()
		ms, err := shm.Create(metaPath, shm.KindArena, shm.HeaderSize+metaBodySize(hdr.nDesc, hdr.holdSlots), func(body []byte) error {
			putArenaHeader(body, metaMagic, hdr, true)
			d := descOffset(hdr.holdSlots)
			binary.LittleEndian.PutUint64(body[d+descOffLength:], 100)
			binary.LittleEndian.PutUint64(body[d:], mkWord(1, stLive, 0))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { ms.Remove(); ms.Close() }()
		if meta {
			corrupt(ms.Bytes())
			if seal {
				sealArena(ms.Bytes(), metaOffSum)
			}
		} else {
			corrupt(data.Bytes()[:dataFileOffset])
			if seal {
				sealArena(data.Bytes(), dataOffSum)
			}
		}
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		// The owner id names a live process that is not the reader, so the
		// reader goes all the way to the descriptors.
		reader, err := OpenArena(dir, WithPrefault(false))
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		p := Proxy{Store: owner.ID(), Kind: uint8(KindArena), Segment: id, Length: 100, Generation: 1}
		v, err := reader.Resolve(ctx, p)
		if err != nil {
			if !isArenaSentinel(err) {
				t.Fatalf("unexpected error %v", err)
			}
			if harmless {
				t.Fatalf("a segment whose damage is harmless refused: %v", err)
			}
			return
		}
		b := v.Bytes()
		if len(b) != 100 {
			t.Fatalf("view of %d bytes", len(b))
		}
		_ = b[0] + b[99]
		if err := v.Release(); err != nil {
			t.Fatal(err)
		}
		if n := reader.Stats().Views; n != 0 {
			t.Fatalf("%d views left", n)
		}
	})
}

// sealArena recomputes, over a segment's bytes (shm header included), the
// checksum of the shm header (CRC-32C of [0, 44) at 44: shm/descriptor.go)
// and of the arena header that starts the body (at sum: dataOffSum or
// metaOffSum).
func sealArena(b []byte, sum int) {
	binary.LittleEndian.PutUint32(b[44:], crc32.Checksum(b[:44], castagnoli))
	body := b[shm.HeaderSize:]
	binary.LittleEndian.PutUint32(body[sum:], crc32.Checksum(body[:sum], castagnoli))
}

// FuzzStoreDesc writes the arena store's descriptor file (arena-store) of a
// fresh exchange directory with the fuzzed bytes as its body, under a valid
// shm header, and opens the arena store there twice. With seal set, the
// descriptor's checksum is recomputed over the fuzzed bytes first. Every
// refusal is ErrBadArena; exactly the well-formed descriptors (the layout's
// rule written out in the test) are accepted, and give both stores the
// store id they hold, as the layout places it.
func FuzzStoreDesc(f *testing.F) {
	good := make([]byte, sidSize)
	putStoreDesc(good, NewStoreID())
	f.Add(good, false)
	f.Add(good[:sidSize-1], true)
	f.Add(append(bytes.Clone(good), 1, 2, 3), false)
	other := bytes.Clone(good)
	other[ahOffVersion] = 2
	f.Add(other, true)
	f.Add(make([]byte, sidSize), true)
	root := f.TempDir()
	var next atomic.Uint64
	f.Fuzz(func(t *testing.T, body []byte, seal bool) {
		if len(body) > 1<<16 {
			return
		}
		dir := filepath.Join(root, "x", strconv.FormatUint(next.Add(1), 10))
		if err := shm.EnsureDir(dir); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		seg, err := shm.Create(filepath.Join(dir, storeDescName), shm.KindArena, int64(shm.HeaderSize+len(body)), func(b []byte) error {
			copy(b, body)
			if seal && len(b) >= sidOffChecksum+4 {
				binary.LittleEndian.PutUint32(b[sidOffChecksum:], crc32.Checksum(b[:sidOffChecksum], castagnoli))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var want StoreID
		b := bytes.Clone(seg.Body()) // used after Close
		copy(want[:], b[min(sidOffStore, len(body)):])
		// The layout's rule, written out: at least sidSize bytes, the
		// magic, version 1, the checksum of [0, 32) at 32.
		le := binary.LittleEndian
		wellFormed := len(b) >= sidSize && [8]byte(b[:8]) == sidMagic && le.Uint32(b[ahOffVersion:]) == 1 &&
			le.Uint32(b[sidOffChecksum:]) == crc32.Checksum(b[:sidOffChecksum], castagnoli)
		seg.Close()
		var ids []StoreID
		for range 2 {
			a, err := OpenArena(dir, WithSegmentSize(ChunkSize), WithMaxBytes(ChunkSize), WithPrefault(false))
			if err != nil {
				if !errors.Is(err, ErrBadArena) {
					t.Fatalf("OpenArena: %v is not ErrBadArena", err)
				}
				if wellFormed {
					t.Fatalf("a well-formed descriptor refused: %v", err)
				}
				return
			}
			if !wellFormed {
				t.Fatalf("a malformed descriptor accepted: % x", b)
			}
			ids = append(ids, a.ID())
			a.Close()
		}
		if ids[0] != want || ids[1] != want {
			t.Fatalf("stores opened with ids %v and %v from a descriptor that holds %v", ids[0], ids[1], want)
		}
	})
}
