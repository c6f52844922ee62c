package ring_test

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/bits"
	"os"
	"runtime/debug"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/ring"
)

// The ring header as ring/descriptor.go lays it out: the fuzz targets
// write its fields and seal it with its checksum, so that the geometry and
// position checks behind the checksum see them.
const (
	hdrSlots     = 12
	hdrCapacity  = 16
	hdrMaxRecord = 24
	hdrDataOff   = 32
	hdrSize      = 40
	hdrChecksum  = 48
	hdrTail      = 128
	hdrHead      = 256
	hdrConsumer  = 264
	hdrConsumed  = 272
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func sealRing(region []byte) {
	binary.LittleEndian.PutUint32(region[hdrChecksum:], crc32.Checksum(region[:hdrChecksum], castagnoli))
}

// ringSentinels are the errors Attach and the consumer and producer report
// for a damaged ring.
var ringSentinels = []error{ring.ErrNotRing, ring.ErrVersion, ring.ErrChecksum, ring.ErrGeometry, ring.ErrCorrupt,
	ring.ErrBusy, ring.ErrNoSlot, ring.ErrFull, ring.ErrClosed, ring.ErrTooLarge, context.Canceled}

func isRingSentinel(err error) bool {
	for _, s := range ringSentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// guarded returns a region of n bytes (8-byte aligned when n is a multiple
// of 8) that ends where an inaccessible page begins, so that a read or write
// past its end faults (and, with debug.SetPanicOnFault, panics and fails
// the test) instead of landing in other memory unseen. The region is
// unmapped when the test ends.
func guarded(t *testing.T, n int) []byte {
	t.Helper()
	page := os.Getpagesize()
	pages := (n + page - 1) / page
	m, err := unix.Mmap(-1, 0, (pages+1)*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	if err := unix.Mprotect(m[pages*page:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	return m[pages*page-n : pages*page : pages*page]
}

// FuzzAttachHeader lays out a valid ring (capacity 1 KiB, 2 slots, two
// records committed), overwrites the fields of its header (slots,
// capacity, max record, data offset, region size) and its positions (tail,
// head, consumed) with fuzzed values, seals the header with its checksum,
// and attaches a copy of it in a region of fuzzed length that ends at an
// inaccessible page: Attach fails with a sentinel, or the geometry it
// accepts fits the region (a power-of-two capacity in range, a max record
// of at most half of it), and a consumer and a producer then work inside
// the region: every record delivered has a type and a length that can be,
// a record written to a ring found empty is read back as written, and no
// access leaves the region (a fault fails the test).
func FuzzAttachHeader(f *testing.F) {
	const capacity, slots = 1024, 2
	size := ring.Size(capacity, slots)
	valid := func(region []byte) (tail uint64) {
		r, err := ring.New(region[:size], ring.Config{Capacity: capacity, MaxRecord: 256, Slots: slots}, ring.Options{})
		if err != nil {
			f.Fatal(err)
		}
		p, _ := r.NewProducer(1)
		p.Write(context.Background(), 1, []byte("first record"))
		p.Write(context.Background(), 2, make([]byte, 100))
		return r.Stats().Tail
	}
	seed := make([]byte, size)
	tail := valid(seed)
	validTail := tail
	le := binary.LittleEndian
	// slots, capacity, maxRecord, dataOff, size, tail, head, consumed, region length
	f.Add(uint32(slots), uint64(capacity), uint32(256), le.Uint64(seed[hdrDataOff:]), uint64(size), tail, uint64(0), uint64(0), uint32(size))
	f.Add(uint32(slots), uint64(capacity), uint32(256), le.Uint64(seed[hdrDataOff:]), uint64(size), tail, tail, tail, uint32(size))
	f.Add(uint32(slots), uint64(capacity), uint32(256), le.Uint64(seed[hdrDataOff:]), uint64(size), tail, uint64(0), uint64(0), uint32(size-8))
	f.Add(uint32(1), uint64(2048), uint32(1024), uint64(896), uint64(896+2048), uint64(0), uint64(0), uint64(0), uint32(896+2048))
	f.Add(uint32(slots), uint64(capacity), uint32(513), le.Uint64(seed[hdrDataOff:]), uint64(size), tail, uint64(0), uint64(0), uint32(size))
	f.Add(uint32(slots), uint64(capacity), uint32(256), le.Uint64(seed[hdrDataOff:]), uint64(size), uint64(1<<63)|tail, uint64(8), uint64(16), uint32(size))
	f.Add(uint32(4096), uint64(1<<30), uint32(16), uint64(1<<20), uint64(1<<31), uint64(0), uint64(0), uint64(0), uint32(1<<16))
	f.Fuzz(func(t *testing.T, nslots uint32, cap64 uint64, maxRecord uint32, dataOff, regionSize, tail, head, consumed uint64, length uint32) {
		n := int(length%(1<<17)) &^ 7
		buf := make([]byte, max(n, size))
		fresh := tail&^(1<<63) == head && head == consumed && head%8 == 0
		valid(buf)
		le.PutUint32(buf[hdrSlots:], nslots)
		le.PutUint64(buf[hdrCapacity:], cap64)
		le.PutUint32(buf[hdrMaxRecord:], maxRecord)
		le.PutUint64(buf[hdrDataOff:], dataOff)
		le.PutUint64(buf[hdrSize:], regionSize)
		le.PutUint64(buf[hdrTail:], tail)
		le.PutUint64(buf[hdrHead:], head)
		le.PutUint64(buf[hdrConsumed:], consumed)
		sealRing(buf)
		region := guarded(t, n)
		copy(region, buf)
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		r, err := ring.Attach(region, ring.Options{Alive: func(uint64) bool { return false }, StuckAfter: 1, UnknownOwnerTimeout: 1})
		if err != nil {
			if !isRingSentinel(err) {
				t.Fatalf("Attach: %v is none of the sentinels", err)
			}
			// The valid ring's own header, sealed here, in a region that
			// holds it, attaches: the seal is the ring's.
			if nslots == slots && cap64 == capacity && maxRecord == 256 && dataOff == le.Uint64(seed[hdrDataOff:]) &&
				regionSize == uint64(size) && n >= size && tail == validTail && (head == 0 && consumed == 0 || head == tail && consumed == tail) {
				t.Fatalf("the valid header refused: %v", err)
			}
			return
		}
		c := r.Capacity()
		if c < ring.MinCapacity || c > ring.MaxCapacity || bits.OnesCount(uint(c)) != 1 || ring.Size(c, int(nslots)) > n ||
			r.MaxPayload() < 8 || r.MaxPayload()+ring.HeaderLen > c/2 {
			t.Fatalf("attached a ring of capacity %d, max payload %d, %d slots in %d bytes", c, r.MaxPayload(), nslots, n)
		}
		check := func(typ int32, p []byte) {
			if typ < 0 || len(p) > r.MaxPayload() {
				t.Fatalf("delivered type %d, %d bytes", typ, len(p))
			}
		}
		cons, err := r.NewConsumer(3, ring.Park)
		if err != nil {
			if !isRingSentinel(err) {
				t.Fatalf("NewConsumer: %v is none of the sentinels", err)
			}
			return
		}
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		for range 4 {
			if _, err := cons.Receive(expired, check, 0); err != nil && !isRingSentinel(err) {
				t.Fatalf("Receive: %v is none of the sentinels", err)
			}
		}
		empty := r.Stats().Head == r.Stats().Tail && !r.Closed() && fresh
		p, err := r.NewProducer(2)
		if err != nil {
			if !isRingSentinel(err) {
				t.Fatalf("NewProducer: %v is none of the sentinels", err)
			}
			return
		}
		msg := []byte("after the damage")
		if err := p.Write(expired, 7, msg); err != nil {
			if !isRingSentinel(err) {
				t.Fatalf("Write: %v is none of the sentinels", err)
			}
			return
		}
		got := 0
		for range 4 {
			cons.Receive(expired, func(typ int32, b []byte) {
				check(typ, b)
				if empty && (typ != 7 || string(b) != string(msg)) {
					t.Fatalf("wrote type 7 %q to an empty ring, read type %d %q", msg, typ, b)
				}
				got++
			}, 0)
		}
		if empty && got != 1 {
			t.Fatalf("wrote one record to an empty ring, read %d", got)
		}
		p.Close()
		cons.Close()
		r.Stats()
	})
}
