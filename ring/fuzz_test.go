package ring_test

import (
	"context"
	"encoding/binary"
	"runtime/debug"
	"testing"

	"github.com/shmex/shmex/ring"
)

// FuzzAttach attaches to arbitrary bytes, in a region that ends at an
// inaccessible page: a sentinel error, or a ring whose reads and writes
// stay inside the region (a fault fails the test) and whose errors are
// sentinels too. (Random bytes rarely pass the header checksum:
// FuzzAttachHeader seals the header it damages.)
func FuzzAttach(f *testing.F) {
	good := make([]byte, ring.Size(1024, 2))
	ring.New(good, ring.Config{Capacity: 1024, Slots: 2}, ring.Options{})
	f.Add(good)
	f.Add(good[:100])
	f.Add(make([]byte, 2000))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		region := guarded(t, len(b)) // a fresh copy, misaligned unless its length is a multiple of 8
		copy(region, b)
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		typed := func(what string, err error) bool {
			if err != nil && !isRingSentinel(err) {
				t.Fatalf("%s: %v is none of the sentinels", what, err)
			}
			return err == nil
		}
		r, err := ring.Attach(region, ring.Options{Alive: func(uint64) bool { return false }})
		if !typed("Attach", err) {
			return
		}
		if c, err := r.NewConsumer(1, ring.Park); typed("NewConsumer", err) {
			for i := 0; i < 4; i++ {
				_, err := c.Read(func(typ int32, p []byte) {
					if typ < 0 || len(p) > r.MaxPayload() {
						t.Fatalf("delivered type %d, %d bytes", typ, len(p))
					}
				}, 0)
				typed("Read", err)
			}
		}
		if p, err := r.NewProducer(2); typed("NewProducer", err) {
			if c, err := p.TryClaim(1, 8); typed("TryClaim", err) {
				c.Commit()
			}
		}
		r.Stats()
	})
}

// FuzzCorruptData writes records into a valid ring, then overwrites words of
// its data area and positions with fuzzed values, and reads: records of
// possible types and lengths, or sentinel errors (ErrCorrupt), never a
// panic or an access outside the region (it ends at an inaccessible page;
// a fault fails the test).
func FuzzCorruptData(f *testing.F) {
	f.Add(uint16(16), uint64(5000), uint16(0), uint64(0))
	f.Add(uint16(0), uint64(1<<63|16), uint16(24), uint64(0xFFFFFFF8))
	f.Add(uint16(8), uint64(0xFFFFFFF0|3<<32), uint16(40), uint64(16|1<<32))
	f.Fuzz(func(t *testing.T, off1 uint16, val1 uint64, off2 uint16, val2 uint64) {
		const capacity, slots = 1024, 2
		region := guarded(t, ring.Size(capacity, slots))
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		r, _ := ring.New(region, ring.Config{Capacity: capacity, MaxRecord: 256, Slots: slots}, ring.Options{})
		p, _ := r.NewProducer(1)
		for i := 0; i < 5; i++ {
			p.Write(context.Background(), 1, make([]byte, 40+i*8))
		}
		dataStart := len(region) - capacity
		// off1 hits the data area (8-aligned), off2 anywhere in the header
		// past the checksummed constants, or the data area too.
		o1 := dataStart + int(off1)%capacity&^7
		binary.LittleEndian.PutUint64(region[o1:], val1)
		o2 := 128 + int(off2)%(len(region)-128)&^7
		binary.LittleEndian.PutUint64(region[o2:], val2)
		r2, err := ring.Attach(region, ring.Options{Alive: func(uint64) bool { return false }, StuckAfter: 1})
		if err != nil {
			if !isRingSentinel(err) {
				t.Fatalf("Attach: %v is none of the sentinels", err)
			}
			return
		}
		c, err := r2.NewConsumer(3, ring.Park)
		if err != nil {
			if !isRingSentinel(err) {
				t.Fatalf("NewConsumer: %v is none of the sentinels", err)
			}
			return
		}
		check := func(typ int32, p []byte) {
			if typ < 0 || len(p) > 256 {
				t.Fatalf("delivered type %d, %d bytes", typ, len(p))
			}
		}
		for i := 0; i < 8; i++ {
			var err error
			if i%2 == 0 {
				_, err = c.Read(check, 0)
			} else { // ReadWhile, stopping at every second record
				k := 0
				_, err = c.ReadWhile(func(typ int32, p []byte) bool { check(typ, p); k++; return k%2 != 0 }, 0)
			}
			if err != nil && !isRingSentinel(err) {
				t.Fatalf("Read: %v is none of the sentinels", err)
			}
		}
	})
}

// FuzzTakeover: a consumer reads part of the records (holding their space
// back, unpublished) and dies; the consumed word it left, and optionally one
// word of the data area, are then overwritten with fuzzed values, and a
// successor sweeps, reads, recovers and closes, then a third consumer and a
// producer carry on. Never a panic or an access outside the region. When
// only the consumed word was damaged and it is not a record boundary the
// successor may take for real (a plausible position in the middle of a
// record can only be caught as far as the bytes there allow), every record
// delivered is one that was written, the records come in order, and none
// is skipped: the successor starts at a boundary and reads to the end.
func FuzzTakeover(f *testing.F) {
	f.Add(uint8(6), uint8(3), uint8(8), uint64(48), false, uint16(0), uint64(0))
	f.Add(uint8(12), uint8(12), uint8(200), uint64(1<<40), false, uint16(0), uint64(0))
	f.Add(uint8(9), uint8(2), uint8(40), uint64(24), true, uint16(64), uint64(0xFFFFFFF0|3<<32))
	f.Add(uint8(15), uint8(7), uint8(255), uint64(0), false, uint16(0), uint64(0))
	f.Fuzz(func(t *testing.T, nrec, nread, size uint8, consumed uint64, damage bool, off uint16, val uint64) {
		const capacity, slots, offConsumed = 1024, 2, 272
		region := make([]byte, ring.Size(capacity, slots))
		dead := map[uint64]bool{}
		opts := ring.Options{Alive: func(o uint64) bool { return !dead[o] }, StuckAfter: 1, UnknownOwnerTimeout: 1}
		r, err := ring.New(region, ring.Config{Capacity: capacity, MaxRecord: 256, Slots: slots}, opts)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := r.NewProducer(1)
		n := int(nrec % 16)
		plen := 8 + int(size)%160  // payload: 8-byte sequence number, then filler
		bounds := map[uint64]int{} // record boundary -> sequence number of the record there
		for i := 0; i < n; i++ {
			bounds[r.Stats().Tail] = i
			c, err := p.TryClaim(1, plen)
			if err != nil {
				n = i // full: the records held back are not published
				break
			}
			b := c.Bytes()
			binary.LittleEndian.PutUint64(b, uint64(i))
			for j := 8; j < len(b); j++ {
				b[j] = byte(i)
			}
			c.Commit()
		}
		tail := r.Stats().Tail
		bounds[tail] = n
		c1, err := r.NewConsumer(3, ring.Park)
		if err != nil {
			t.Fatal(err)
		}
		c1.Read(func(int32, []byte) {}, int(nread%16))
		head := r.Stats().Head
		dead[3] = true // c1 dies without publishing what it read
		binary.LittleEndian.PutUint64(region[offConsumed:], consumed)
		if damage {
			dataStart := len(region) - capacity
			binary.LittleEndian.PutUint64(region[dataStart+int(off)%capacity&^7:], val)
		}
		r2, err := ring.Attach(region, opts)
		if err != nil {
			return
		}
		// Where the successor must start: the consumed word when it is a
		// record boundary in [head, tail], else the head.
		start, plausible := bounds[consumed]
		plausible = plausible && consumed >= head && consumed-head < capacity
		if !plausible {
			start = bounds[head]
		}
		check := !damage && (plausible || consumed < head || consumed > tail || consumed%ring.RecordAlign != 0 || consumed-head >= capacity)
		next := start
		c2, err := r2.NewConsumer(4, ring.Park)
		if err != nil {
			t.Fatal(err)
		}
		handle := func(typ int32, b []byte) {
			if typ < 0 || len(b) > 256 {
				t.Fatalf("delivered type %d, %d bytes", typ, len(b))
			}
			if !check {
				return
			}
			if typ != 1 || len(b) != plen || binary.LittleEndian.Uint64(b) != uint64(next) {
				t.Fatalf("consumed word %d (head %d, tail %d): record %d: type %d, %d bytes, %x", consumed, head, tail, next, typ, len(b), b[:min(len(b), 8)])
			}
			next++
		}
		c2.Sweep(func(int32, []byte) bool { return false })
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		for i := 0; i < 4; i++ {
			c2.Receive(expired, handle, 0) // reads, or recovers and gives up at once
		}
		if check && next != n {
			t.Fatalf("consumed word %d (head %d, tail %d): read records %d to %d of %d", consumed, head, tail, start, next, n)
		}
		c2.Close()
		c3, err := r2.NewConsumer(5, ring.Park)
		if err != nil {
			t.Fatal(err)
		}
		if p2, err := r2.NewProducer(2); err == nil {
			for i := 0; i < 4; i++ {
				if c, err := p2.TryClaim(1, plen); err == nil {
					binary.LittleEndian.PutUint64(c.Bytes(), uint64(next))
					c.Commit()
				}
				c3.Read(func(typ int32, b []byte) {
					if typ < 0 || len(b) > 256 {
						t.Fatalf("delivered type %d, %d bytes", typ, len(b))
					}
				}, 0)
			}
		}
		r2.Stats()
	})
}
