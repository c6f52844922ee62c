package ring_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/shmex/shmex/ring"
)

// TestReadWhile: ReadWhile hands records over in order, across the wrap
// of the data area, until its handler says stop (that record consumed, the
// next one left for the next read) or its limit is reached; it delivers
// every record exactly once, and a ReadWhile that finds nothing publishes
// nothing.
func TestReadWhile(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 1024, MaxRecord: 256}, ring.Options{})
	p, err := r.NewProducer(1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.NewConsumer(1, ring.Park)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1+i%90) }
	sent, got := 0, 0
	for round := range 300 {
		for range 1 + round%7 { // a few records, of varied sizes: the ring wraps
			if err := p.Write(ctx, int32(sent%5), payload(sent)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		stopAfter := 1 + round%3 // the handler says stop at this record
		limit := []int{0, 2, 5}[round%3]
		seen := 0
		n, err := c.ReadWhile(func(typ int32, b []byte) bool {
			if typ != int32(got%5) || !bytes.Equal(b, payload(got)) {
				t.Fatalf("record %d: type %d, %d bytes", got, typ, len(b))
			}
			got++
			seen++
			return seen < stopAfter
		}, limit)
		want := min(sent-(got-seen), stopAfter)
		if limit > 0 {
			want = min(want, limit)
		}
		if err != nil || n != seen || n != want {
			t.Fatalf("round %d: ReadWhile = %d, %v; handed %d, want %d", round, n, err, seen, want)
		}
		// Drain with Read, as a receiver would before the next round.
		for got < sent {
			if _, err := c.Read(func(typ int32, b []byte) {
				if typ != int32(got%5) || !bytes.Equal(b, payload(got)) {
					t.Fatalf("record %d after ReadWhile: type %d, %d bytes", got, typ, len(b))
				}
				got++
			}, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Everything read: a ReadWhile finds nothing and leaves the consumed
	// space unpublished; a Read that finds nothing publishes it.
	head := r.Stats().Head
	if head == c.Position() {
		t.Fatal("everything consumed is published already: the test below checks nothing")
	}
	if n, err := c.ReadWhile(func(int32, []byte) bool { t.Fatal("handed a record"); return true }, 0); n != 0 || err != nil {
		t.Fatalf("ReadWhile on an empty ring = %d, %v", n, err)
	}
	if h := r.Stats().Head; h != head {
		t.Fatalf("ReadWhile on an empty ring published: head %d -> %d", head, h)
	}
	if n, err := c.Read(func(int32, []byte) {}, 0); n != 0 || err != nil {
		t.Fatalf("Read on an empty ring = %d, %v", n, err)
	}
	if h := r.Stats().Head; h != c.Position() {
		t.Fatalf("Read on an empty ring left head %d, consumer at %d", h, c.Position())
	}
}
