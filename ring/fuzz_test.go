package ring_test

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/shmex/shmex/ring"
)

// FuzzAttach attaches to arbitrary bytes: an error, or a ring whose reads
// stay inside the region.
func FuzzAttach(f *testing.F) {
	good := make([]byte, ring.Size(1024, 2))
	ring.New(good, ring.Config{Capacity: 1024, Slots: 2}, ring.Options{})
	f.Add(good)
	f.Add(good[:100])
	f.Add(make([]byte, 2000))
	f.Fuzz(func(t *testing.T, b []byte) {
		region := make([]byte, len(b)) // fresh, 8-byte-aligned copy
		copy(region, b)
		r, err := ring.Attach(region, ring.Options{Alive: func(uint64) bool { return false }})
		if err != nil {
			return
		}
		if c, err := r.NewConsumer(1, ring.Park); err == nil {
			for i := 0; i < 4; i++ {
				c.Read(func(int32, []byte) {}, 0)
			}
		}
		if p, err := r.NewProducer(2); err == nil {
			if c, err := p.TryClaim(1, 8); err == nil {
				c.Commit()
			}
		}
		r.Stats()
	})
}

// FuzzCorruptData writes records into a valid ring, then overwrites words of
// its data area and positions with fuzzed values, and reads: records or
// ErrCorrupt, never a panic or an access outside the region.
func FuzzCorruptData(f *testing.F) {
	f.Add(uint16(16), uint64(5000), uint16(0), uint64(0))
	f.Add(uint16(0), uint64(1<<63|16), uint16(24), uint64(0xFFFFFFF8))
	f.Add(uint16(8), uint64(0xFFFFFFF0|3<<32), uint16(40), uint64(16|1<<32))
	f.Fuzz(func(t *testing.T, off1 uint16, val1 uint64, off2 uint16, val2 uint64) {
		const capacity, slots = 1024, 2
		region := make([]byte, ring.Size(capacity, slots))
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
			return
		}
		c, err := r2.NewConsumer(3, ring.Park)
		if err != nil {
			return
		}
		for i := 0; i < 8; i++ {
			c.Read(func(typ int32, p []byte) {
				if typ < 0 || len(p) > 256 {
					t.Fatalf("delivered type %d, %d bytes", typ, len(p))
				}
			}, 0)
		}
	})
}
