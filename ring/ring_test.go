package ring_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/ring"
)

// newRing lays out a ring in heap memory (so that -race sees every access).
func newRing(t testing.TB, cfg ring.Config, opts ring.Options) *ring.Ring {
	t.Helper()
	if cfg.Slots == 0 {
		cfg.Slots = 16
	}
	region := make([]byte, ring.Size(cfg.Capacity, cfg.Slots))
	r, err := ring.New(region, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

type rec struct {
	typ  int32
	data []byte
}

func collect(out *[]rec) ring.Handler {
	return func(typ int32, p []byte) { *out = append(*out, rec{typ, append([]byte(nil), p...)}) }
}

func TestWriteReadWrap(t *testing.T) {
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
	next := 0
	for round := 0; round < 200; round++ {
		var want []rec
		for k := 0; k < 1+round%5; k++ {
			n := (round*37 + k*11) % 150
			data := bytes.Repeat([]byte{byte(next)}, n)
			typ := int32(next % 7)
			next++
			if err := p.Write(ctx, typ, data); err != nil {
				t.Fatal(err)
			}
			want = append(want, rec{typ, data})
		}
		var got []rec
		for len(got) < len(want) {
			if _, err := c.Receive(ctx, collect(&got), 0); err != nil {
				t.Fatal(err)
			}
		}
		for i := range want {
			if got[i].typ != want[i].typ || !bytes.Equal(got[i].data, want[i].data) {
				t.Fatalf("round %d record %d: got type %d len %d, want type %d len %d",
					round, i, got[i].typ, len(got[i].data), want[i].typ, len(want[i].data))
			}
		}
	}
	st := r.Stats()
	if c.Position() != st.Tail || st.Tail < 10*1024 {
		t.Fatalf("stats %+v: expected many wraps, drained", st)
	}
}

func TestClaimErrors(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 1024, MaxRecord: 128}, ring.Options{})
	p, _ := r.NewProducer(7)
	if r.MaxPayload() != 120 {
		t.Fatalf("MaxPayload %d", r.MaxPayload())
	}
	if _, err := p.TryClaim(0, 121); !errors.Is(err, ring.ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := p.TryClaim(-1, 8); !errors.Is(err, ring.ErrBadType) {
		t.Fatalf("negative type: %v", err)
	}
	// Fill the ring: 1024 / 64 = 16 records of 56 bytes.
	for i := 0; i < 16; i++ {
		c, err := p.TryClaim(1, 56)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		c.Commit()
	}
	if _, err := p.TryClaim(1, 56); !errors.Is(err, ring.ErrFull) {
		t.Fatalf("full TryClaim: %v", err)
	}
	start := time.Now()
	err := p.Write(ctxT(t, 30*time.Millisecond), 1, make([]byte, 56))
	if !errors.Is(err, ring.ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("full Write: %v", err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("full Write returned before its deadline")
	}
	// A consumer frees space: a blocked writer proceeds.
	c, _ := r.NewConsumer(7, ring.Park)
	done := make(chan error, 1)
	go func() { done <- p.Write(ctxT(t, 10*time.Second), 2, []byte("late")) }()
	time.Sleep(5 * time.Millisecond)
	var got []rec
	for len(got) < 17 {
		if _, err := c.Receive(ctxT(t, 10*time.Second), collect(&got), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("blocked writer: %v", err)
	}
	if string(got[16].data) != "late" {
		t.Fatalf("last record %q", got[16].data)
	}
	if _, err := r.NewConsumer(8, ring.Park); !errors.Is(err, ring.ErrBusy) {
		t.Fatalf("second consumer: %v", err)
	}
	if _, err := r.NewProducer(0); !errors.Is(err, ring.ErrBadOwner) {
		t.Fatalf("zero owner: %v", err)
	}
}

func TestAbortAndEmptyPayload(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 1024}, ring.Options{})
	p, _ := r.NewProducer(1)
	c, _ := r.NewConsumer(1, ring.Park)
	a, _ := p.TryClaim(3, 40)
	copy(a.Bytes(), "aborted")
	a.Abort()
	e, _ := p.TryClaim(4, 0)
	e.Commit()
	var got []rec
	n, err := c.Read(collect(&got), 0)
	if err != nil || n != 1 || got[0].typ != 4 || len(got[0].data) != 0 {
		t.Fatalf("n=%d err=%v got=%v", n, err, got)
	}
}

func TestCloseDrains(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 4096}, ring.Options{})
	p, _ := r.NewProducer(1)
	c, _ := r.NewConsumer(1, ring.SpinThenPark(100))
	ctx := ctxT(t, 10*time.Second)
	open, _ := p.TryClaim(1, 10) // claimed before the close, committed after
	for i := 0; i < 5; i++ {
		p.Write(ctx, 1, []byte{byte(i)})
	}
	r.Close()
	r.Close()
	if !r.Closed() {
		t.Fatal("not closed")
	}
	if err := p.Write(ctx, 1, []byte("x")); !errors.Is(err, ring.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		open.Commit()
	}()
	var got []rec
	for {
		_, err := c.Receive(ctx, collect(&got), 0)
		if errors.Is(err, ring.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 6 {
		t.Fatalf("drained %d records, want 6", len(got))
	}
	// A receiver blocked before the close is woken by it.
	r2 := newRing(t, ring.Config{Capacity: 4096}, ring.Options{})
	c2, _ := r2.NewConsumer(1, ring.Park)
	errc := make(chan error, 1)
	go func() { _, err := c2.Receive(ctx, func(int32, []byte) {}, 0); errc <- err }()
	time.Sleep(5 * time.Millisecond)
	r2.Close()
	if err := <-errc; !errors.Is(err, ring.ErrClosed) {
		t.Fatalf("blocked receiver: %v", err)
	}
}

func TestReceiveDeadline(t *testing.T) {
	for _, idle := range []ring.IdleStrategy{ring.Park, ring.Spin, ring.SpinThenPark(1000)} {
		r := newRing(t, ring.Config{Capacity: 4096}, ring.Options{})
		c, _ := r.NewConsumer(1, idle)
		_, err := c.Receive(ctxT(t, 20*time.Millisecond), func(int32, []byte) {}, 0)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("idle %+v: %v", idle, err)
		}
	}
}

// payload encodes (producer, seq) with filler and a checksum.
func payload(buf []byte, producer uint32, seq uint64) {
	binary.LittleEndian.PutUint32(buf[0:], producer)
	binary.LittleEndian.PutUint64(buf[4:], seq)
	for i := 12; i < len(buf)-4; i++ {
		buf[i] = byte(seq) + byte(i)
	}
	binary.LittleEndian.PutUint32(buf[len(buf)-4:], crc32.ChecksumIEEE(buf[:len(buf)-4]))
}

// checker verifies records made by payload: every record intact, and each
// producer's sequence numbers consecutive from 1.
type checker struct {
	last map[uint32]uint64
	n    int
	err  error
}

func newChecker() *checker { return &checker{last: map[uint32]uint64{}} }

func (k *checker) handle(typ int32, p []byte) {
	if k.err != nil {
		return
	}
	if len(p) < 16 {
		k.err = fmt.Errorf("record of %d bytes", len(p))
		return
	}
	if crc32.ChecksumIEEE(p[:len(p)-4]) != binary.LittleEndian.Uint32(p[len(p)-4:]) {
		k.err = fmt.Errorf("torn record: checksum mismatch (%d bytes)", len(p))
		return
	}
	prod, seq := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint64(p[4:])
	if int32(prod) != typ {
		k.err = fmt.Errorf("type %d carries producer %d", typ, prod)
		return
	}
	if seq != k.last[prod]+1 {
		k.err = fmt.Errorf("producer %d: seq %d after %d", prod, seq, k.last[prod])
		return
	}
	k.last[prod] = seq
	k.n++
}

func TestManyProducersOneConsumer(t *testing.T) {
	for _, tc := range []struct {
		capacity, maxRec, producers, each int
		idle                              ring.IdleStrategy
	}{
		{4096, 512, 4, 3000, ring.Park},
		{1 << 16, 4096, 4, 3000, ring.SpinThenPark(200)},
		{1 << 12, 1024, 8, 1000, ring.Spin},
	} {
		t.Run(fmt.Sprintf("cap%d_p%d", tc.capacity, tc.producers), func(t *testing.T) {
			r := newRing(t, ring.Config{Capacity: tc.capacity, MaxRecord: tc.maxRec}, ring.Options{})
			ctx := ctxT(t, 60*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, tc.producers)
			for i := 1; i <= tc.producers; i++ {
				wg.Add(1)
				go func(id uint32) {
					defer wg.Done()
					p, err := r.NewProducer(uint64(id))
					if err != nil {
						errs <- err
						return
					}
					defer p.Close()
					rng := rand.New(rand.NewPCG(uint64(id), 1))
					for seq := uint64(1); seq <= uint64(tc.each); seq++ {
						n := 16 + rng.IntN(r.MaxPayload()-16+1)
						c, err := p.Claim(ctx, int32(id), n)
						if err != nil {
							errs <- err
							return
						}
						payload(c.Bytes(), id, seq)
						c.Commit()
					}
				}(uint32(i))
			}
			c, _ := r.NewConsumer(99, tc.idle)
			k := newChecker()
			total := tc.producers * tc.each
			for k.n < total && k.err == nil {
				if _, err := c.Receive(ctx, k.handle, 64); err != nil {
					t.Fatalf("after %d records: %v", k.n, err)
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if k.err != nil {
				t.Fatal(k.err)
			}
			if st := r.Stats(); st.Tail < uint64(4*tc.capacity) || st.Recovered != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestNoSlot(t *testing.T) {
	dead := map[uint64]bool{}
	var mu sync.Mutex
	r := newRing(t, ring.Config{Capacity: 1024, Slots: 2}, ring.Options{Alive: func(o uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return !dead[o]
	}})
	a, _ := r.NewProducer(1)
	b, err := r.NewProducer(2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.NewProducer(3); !errors.Is(err, ring.ErrNoSlot) {
		t.Fatalf("third producer: %v", err)
	}
	a.Write(context.Background(), 1, []byte("a"))
	mu.Lock()
	dead[1] = true
	mu.Unlock()
	// Owner 1 is dead but its last record is not yet consumed.
	if _, err := r.NewProducer(3); !errors.Is(err, ring.ErrNoSlot) {
		t.Fatalf("slot reused before the consumer passed it: %v", err)
	}
	c, _ := r.NewConsumer(9, ring.Park)
	c.Read(func(int32, []byte) {}, 0)
	c.Close() // publishes the space it consumed
	p3, err := r.NewProducer(3)
	if err != nil {
		t.Fatalf("dead producer's slot not reused: %v", err)
	}
	b.Close()
	if _, err := r.NewProducer(4); err != nil {
		t.Fatalf("closed producer's slot not reused: %v", err)
	}
	p3.Close()
}

func TestGeometry(t *testing.T) {
	bad := []ring.Config{
		{Capacity: 1000},
		{Capacity: 512},
		{Capacity: 4096, MaxRecord: 4096},
		{Capacity: 4096, Slots: ring.MaxSlots + 1},
	}
	for _, cfg := range bad {
		if _, err := ring.New(make([]byte, 1<<16), cfg, ring.Options{}); !errors.Is(err, ring.ErrGeometry) {
			t.Fatalf("%+v: %v", cfg, err)
		}
	}
	if _, err := ring.New(make([]byte, 100), ring.Config{Capacity: 4096}, ring.Options{}); !errors.Is(err, ring.ErrGeometry) {
		t.Fatalf("short region: %v", err)
	}
	if _, err := ring.New(make([]byte, 1<<16)[1:], ring.Config{Capacity: 4096}, ring.Options{}); !errors.Is(err, ring.ErrGeometry) {
		t.Fatalf("misaligned region: %v", err)
	}
}

func TestAttachValidates(t *testing.T) {
	fresh := func() []byte {
		b := make([]byte, ring.Size(4096, 4))
		if _, err := ring.New(b, ring.Config{Capacity: 4096, Slots: 4}, ring.Options{}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := ring.Attach(fresh(), ring.Options{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		f    func([]byte) []byte
		want error
	}{
		{"magic", func(b []byte) []byte { b[0] = 0; return b }, ring.ErrNotRing},
		{"version", func(b []byte) []byte { b[8] = 9; return b }, ring.ErrVersion},
		{"checksum", func(b []byte) []byte { b[16] ^= 0x10; return b }, ring.ErrChecksum},
		{"short", func(b []byte) []byte { return b[:len(b)-8] }, ring.ErrGeometry},
		{"tiny", func(b []byte) []byte { return b[:64] }, ring.ErrGeometry},
		{"head>tail", func(b []byte) []byte { b[256] = 8; return b }, ring.ErrCorrupt},
		{"tail far ahead", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[128:], 1<<20); return b }, ring.ErrCorrupt},
	}
	for _, c := range cases {
		if _, err := ring.Attach(c.f(fresh()), ring.Options{}); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestCorruptRecords(t *testing.T) {
	cases := []struct {
		name string
		hdr  uint64
	}{
		{"length past the end", 5000},
		{"length below header", 3},
		{"oversized record", 1000 | 1<<32},
		{"negative type", 16 | uint64(0xFFFFFFFE)<<32},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			region := make([]byte, ring.Size(4096, 4))
			r, _ := ring.New(region, ring.Config{Capacity: 4096, MaxRecord: 512, Slots: 4}, ring.Options{})
			p, _ := r.NewProducer(1)
			p.Write(context.Background(), 1, []byte("good"))
			c, _ := r.NewConsumer(2, ring.Park)
			if n, err := c.Read(func(int32, []byte) {}, 0); n != 1 || err != nil {
				t.Fatal(n, err)
			}
			// Forge a committed header at the head.
			p.Write(context.Background(), 1, []byte("next"))
			off := ring.Size(4096, 4) - 4096 + 16
			binary.LittleEndian.PutUint64(region[off:], tc.hdr)
			n, err := c.Read(func(int32, []byte) { t.Fatal("forged record delivered") }, 0)
			if n != 0 || !errors.Is(err, ring.ErrCorrupt) {
				t.Fatalf("n=%d err=%v", n, err)
			}
			if _, err := c.Receive(ctxT(t, time.Second), func(int32, []byte) {}, 0); !errors.Is(err, ring.ErrCorrupt) {
				t.Fatalf("Receive after corruption: %v", err)
			}
		})
	}
	// A committed header beyond the tail is forged too.
	region := make([]byte, ring.Size(4096, 4))
	r, _ := ring.New(region, ring.Config{Capacity: 4096, Slots: 4}, ring.Options{})
	c, _ := r.NewConsumer(2, ring.Park)
	binary.LittleEndian.PutUint64(region[ring.Size(4096, 4)-4096:], 16|1<<32)
	c.Read(func(int32, []byte) {}, 0)
	if _, err := c.Receive(ctxT(t, time.Second), func(int32, []byte) {}, 0); !errors.Is(err, ring.ErrCorrupt) {
		t.Fatalf("record past the tail: %v", err)
	}
}

func TestSweepAndTakeover(t *testing.T) {
	dead := map[uint64]bool{}
	var mu sync.Mutex
	r := newRing(t, ring.Config{Capacity: 4096}, ring.Options{Alive: func(o uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return !dead[o]
	}})
	p, _ := r.NewProducer(1)
	ctx := ctxT(t, 5*time.Second)
	for i := 0; i < 10; i++ {
		p.Write(ctx, int32(i%2), []byte{byte(i)})
	}
	c1, _ := r.NewConsumer(5, ring.Park)
	var first []rec
	c1.Read(collect(&first), 2)
	if _, err := r.NewConsumer(6, ring.Park); !errors.Is(err, ring.ErrBusy) {
		t.Fatalf("live consumer taken over: %v", err)
	}
	mu.Lock()
	dead[5] = true
	mu.Unlock()
	c2, err := r.NewConsumer(6, ring.Park)
	if err != nil {
		t.Fatalf("dead consumer not taken over: %v", err)
	}
	// The new consumer starts where the dead one last published (after
	// the two records it read).
	n, err := c2.Sweep(func(typ int32, p []byte) bool { return typ == 1 })
	if n != 4 || err != nil {
		t.Fatalf("swept %d: %v", n, err)
	}
	var rest []rec
	c2.Read(collect(&rest), 0)
	if len(rest) != 4 {
		t.Fatalf("after sweep read %d records", len(rest))
	}
	for i, x := range rest {
		if x.typ != 0 || x.data[0] != byte(2+2*i) {
			t.Fatalf("record %d: %+v", i, x)
		}
	}
}

func TestInterrupt(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 4096}, ring.Options{})
	for _, idle := range []ring.IdleStrategy{ring.Park, ring.Spin} {
		c, _ := r.NewConsumer(1, idle)
		errc := make(chan error, 1)
		go func() { _, err := c.Receive(ctxT(t, 10*time.Second), func(int32, []byte) {}, 0); errc <- err }()
		time.Sleep(5 * time.Millisecond)
		c.Interrupt()
		if err := <-errc; !errors.Is(err, ring.ErrInterrupted) {
			t.Fatalf("idle %+v: %v", idle, err)
		}
		c.ClearInterrupt()
		p, _ := r.NewProducer(2)
		p.Write(context.Background(), 1, []byte("x"))
		p.Close()
		if n, err := c.Receive(ctxT(t, time.Second), func(int32, []byte) {}, 0); n != 1 || err != nil {
			t.Fatalf("after ClearInterrupt: %d %v", n, err)
		}
		c.Close()
	}
}

// A consumer that polls with Read hands back the space it consumed as soon
// as a producer waits for it, even when it has nothing left to read.
func TestReadReleasesSpaceToWaitingProducer(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 1 << 16, MaxRecord: 1 << 13}, ring.Options{})
	p, _ := r.NewProducer(1)
	c, _ := r.NewConsumer(2, ring.Spin)
	ctx := ctxT(t, 10*time.Second)
	big := make([]byte, 4000)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 100; i++ { // 400 KB through a 64 KiB ring
			if err := p.Write(ctx, 1, big); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	got := 0
	for got < 100 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("producer: %v (after %d records read)", err, got)
			}
			done = nil
		default:
		}
		n, err := c.Read(func(int32, []byte) {}, 0)
		if err != nil {
			t.Fatal(err)
		}
		got += n
		if ctx.Err() != nil {
			t.Fatalf("stuck after %d records", got)
		}
		runtime.Gosched()
	}
}

// TestTakeoverBeforePublish: a consumer publishes what it read only when
// it is idle (or holds back a quarter of the ring), so it may die with
// records read but neither zeroed nor handed back. Its successor starts
// after them (the consumed word) and zeroes them before producers reuse
// the space: many laps later every record still arrives once, in order.
// A consumed word that cannot be right makes the successor start at the
// published head instead: records come again, none is skipped.
func TestTakeoverBeforePublish(t *testing.T) {
	for _, damaged := range []bool{false, true} {
		dead := map[uint64]bool{}
		var mu sync.Mutex
		region := make([]byte, ring.Size(4096, 16))
		r, err := ring.New(region, ring.Config{Capacity: 4096, Slots: 16}, ring.Options{Alive: func(o uint64) bool {
			mu.Lock()
			defer mu.Unlock()
			return !dead[o]
		}})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := r.NewProducer(1)
		ctx := ctxT(t, 10*time.Second)
		seq := 0
		write := func(n int) {
			for range n {
				if err := p.Write(ctx, 0, binary.LittleEndian.AppendUint64(nil, uint64(seq))); err != nil {
					t.Fatal(err)
				}
				seq++
			}
		}
		write(5)
		c1, _ := r.NewConsumer(5, ring.Park)
		var got []rec
		if n, err := c1.Read(collect(&got), 0); n != 5 || err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
		if st := r.Stats(); st.Head != 0 {
			t.Fatalf("head published at %d before the consumer was idle", st.Head)
		}
		want := uint64(5)
		if damaged {
			binary.LittleEndian.PutUint64(region[272:], 1<<40) // the consumed word
			want = 0
		}
		mu.Lock()
		dead[5] = true
		mu.Unlock()
		c2, err := r.NewConsumer(6, ring.Park)
		if err != nil {
			t.Fatal(err)
		}
		next := want
		for lap := 0; lap < 40; lap++ {
			write(50) // 50 × 16 bytes: 40 rounds are 8 laps of the ring
			var batch []rec
			if _, err := c2.Read(collect(&batch), 0); err != nil {
				t.Fatalf("damaged=%v round %d: %v", damaged, lap, err)
			}
			for _, x := range batch {
				if v := binary.LittleEndian.Uint64(x.data); v != next {
					t.Fatalf("damaged=%v: record %d, want %d", damaged, v, next)
				}
				next++
			}
		}
		if next != uint64(seq) {
			t.Fatalf("damaged=%v: read up to %d of %d", damaged, next, seq)
		}
	}
}

// TestTakeoverFallbackRepairsConsumed: a successor that finds the consumed
// word impossible starts at the published head, and writes that position
// back, so that the damaged value cannot become plausible later (once the
// tail passes it) and make a third consumer start in the middle of the
// records, skipping those before. Without the write-back the third
// consumer started at the damaged position.
func TestTakeoverFallbackRepairsConsumed(t *testing.T) {
	dead := map[uint64]bool{}
	var mu sync.Mutex
	region := make([]byte, ring.Size(4096, 4))
	r, err := ring.New(region, ring.Config{Capacity: 4096, Slots: 4}, ring.Options{Alive: func(o uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return !dead[o]
	}})
	if err != nil {
		t.Fatal(err)
	}
	kill := func(o uint64) {
		mu.Lock()
		dead[o] = true
		mu.Unlock()
	}
	p, _ := r.NewProducer(1)
	ctx := ctxT(t, 10*time.Second)
	seq := 0
	write := func(n int) {
		for range n {
			if err := p.Write(ctx, 0, binary.LittleEndian.AppendUint64(nil, uint64(seq))); err != nil {
				t.Fatal(err)
			}
			seq++
		}
	}
	write(5) // 5 × 16 bytes: the tail is at 80
	c1, _ := r.NewConsumer(5, ring.Park)
	if n, err := c1.Read(func(int32, []byte) {}, 0); n != 5 || err != nil {
		t.Fatalf("read %d: %v", n, err)
	}
	binary.LittleEndian.PutUint64(region[272:], 800) // the consumed word: past the tail, aligned
	kill(5)
	if _, err := ring.Attach(region, ring.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.NewConsumer(6, ring.Park); err != nil { // falls back to the head (0), reads nothing, dies
		t.Fatal(err)
	}
	kill(6)
	write(60) // the tail passes 800
	c3, err := r.NewConsumer(7, ring.Park)
	if err != nil {
		t.Fatal(err)
	}
	var got []rec
	if _, err := c3.Read(collect(&got), 0); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 {
		t.Fatal("read nothing")
	}
	if first := binary.LittleEndian.Uint64(got[0].data); first != 0 || len(got) != seq {
		t.Fatalf("the third consumer read %d records from record %d; want all %d from 0", len(got), first, seq)
	}
}
