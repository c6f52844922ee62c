package ring_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/cpuclock"
	"github.com/shmex/shmex/ring"
)

// want returns n when this build counts, else 0 (the shmex_nocounters build
// leaves every counter at zero).
func want(n uint64) uint64 {
	if ring.Counting() {
		return n
	}
	return 0
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCountersSentReceived(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 4096, MaxRecord: 512, Slots: 4}, ring.Options{})
	p1, _ := r.NewProducer(1)
	p2, _ := r.NewProducer(2)
	c, _ := r.NewConsumer(9, ring.Spin)
	var sent, bytes uint64
	for i := range 100 {
		p := p1
		if i%3 == 0 {
			p = p2
		}
		if err := p.Write(context.Background(), 1, make([]byte, i)); err != nil {
			t.Fatal(err)
		}
		sent++
		bytes += uint64(i)
		if i%10 == 9 {
			// An aborted claim is padding: not counted.
			cl, err := p.TryClaim(2, 40)
			if err != nil {
				t.Fatal(err)
			}
			cl.Abort()
			if _, err := c.Read(func(int32, []byte) {}, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := r.Stats()
	if st.Sent != want(sent) || st.SentBytes != want(bytes) {
		t.Fatalf("sent %d records, %d bytes; stats %+v", sent, bytes, st.Counters)
	}
	if st.Received != want(sent) || st.ReceivedBytes != want(bytes) || st.Consumer != 9 || st.Producers != 2 || st.Slots != 4 {
		t.Fatalf("stats %+v", st)
	}
	if st.Depth() != 0 {
		t.Fatalf("depth %d after reading everything: %+v", st.Depth(), st)
	}
	// The counts of a slot stay when its producer goes and another takes it.
	p2.Close()
	p3, _ := r.NewProducer(3)
	if err := p3.Write(context.Background(), 1, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	st = r.Stats()
	if st.Sent != want(sent+1) || st.SentBytes != want(bytes+8) || st.Received != want(sent) {
		t.Fatalf("after a slot changed hands: %+v", st.Counters)
	}
	if st.Depth() != 16 { // one record: 8-byte header, 8 bytes
		t.Fatalf("depth %d, want 16", st.Depth())
	}
}

// TestCountersFullWaits: a producer that finds the ring full counts one
// wait, however many claims fail before one succeeds; a later full ring
// counts another; the consumer that frees space for a sleeping producer
// counts the wake-up.
func TestCountersFullWaits(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 1024, MaxRecord: 256}, ring.Options{})
	p, _ := r.NewProducer(1)
	c, _ := r.NewConsumer(2, ring.Park)
	fill := func() {
		t.Helper()
		for {
			cl, err := p.TryClaim(1, 100)
			if errors.Is(err, ring.ErrFull) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cl.Commit()
		}
	}
	fill()
	for range 5 {
		if _, err := p.TryClaim(1, 100); !errors.Is(err, ring.ErrFull) {
			t.Fatalf("claim in a full ring: %v", err)
		}
	}
	if got := r.Stats().FullWaits; got != want(1) {
		t.Fatalf("full waits %d after one full episode, want %d", got, want(1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := p.Claim(ctx, 1, 100)
	cancel()
	if !errors.Is(err, ring.ErrFull) {
		t.Fatalf("claim waiting in a full ring: %v", err)
	}
	if got := r.Stats().FullWaits; got != want(1) {
		t.Fatalf("full waits %d: the same wait counted again", got)
	}
	// A producer asleep for space, woken by the consumer's reads.
	done := make(chan error, 1)
	go func() { done <- p.Write(ctxT(t, time.Minute), 1, make([]byte, 100)) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Read(func(int32, []byte) {}, 0); err != nil {
				t.Fatal(err)
			}
			st := r.Stats()
			// The Write above may have found space at once (the first
			// Read came first): then it did not wait. SpaceWakeups is
			// not compared with FullWaits: it counts the consumer's
			// wake-ups, and on a loaded machine several Reads may each
			// find the producer still flagged asleep and wake it.
			if st.FullWaits > want(2) {
				t.Fatalf("stats %+v", st.Counters)
			}
			fill()
			if got := r.Stats().FullWaits; got != st.FullWaits+want(1) {
				t.Fatalf("full waits %d after another full episode, want %d", got, st.FullWaits+want(1))
			}
			return
		case <-time.After(time.Millisecond):
			if _, err := c.Read(func(int32, []byte) {}, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCountersSleepsAndWakeups: a consumer that sleeps on the futex counts
// the sleep, and the producer whose commit wakes it counts the wake-up.
func TestCountersSleepsAndWakeups(t *testing.T) {
	r := newRing(t, ring.Config{Capacity: 4096, MaxRecord: 512}, ring.Options{})
	p, _ := r.NewProducer(1)
	c, _ := r.NewConsumer(2, ring.Park)
	for i := range 3 {
		var wg sync.WaitGroup
		wg.Add(1)
		var err error
		go func() {
			defer wg.Done()
			_, err = c.Receive(ctxT(t, time.Minute), func(int32, []byte) {}, 0)
		}()
		if ring.Counting() {
			eventually(t, time.Minute, "the consumer sleeps", func() bool { return r.Stats().Sleeps > uint64(i) })
		}
		if err := p.Write(context.Background(), 1, []byte("x")); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
	}
	st := r.Stats()
	// A consumer woken by the commit, or one that saw the record before
	// it slept, or woken for nothing (a spurious wake-up), sleeps again:
	// at least one sleep and at most one wake-up per record.
	if st.Sleeps < want(3) || st.Wakeups > want(3) || st.Received != want(3) {
		t.Fatalf("stats %+v", st.Counters)
	}
	if ring.Counting() && st.Wakeups == 0 {
		t.Fatalf("no wake-up counted: %+v", st.Counters)
	}
}

// TestCountersProcesses: producer processes write records of sizes only
// they know; the counters summed over their slots agree with what the
// consumer read, record for record and byte for byte; a producer killed
// between a claim and its commit shows in Recovered, and its record in no
// count.
func TestCountersProcesses(t *testing.T) {
	const each = 20_000
	dir := shmDir(t)
	pr := newProcRing(t, dir, "ring-counters", ring.Config{Capacity: 1 << 15, MaxRecord: 1024, Slots: 8})
	kids := pr.start(t, each, false, false, true)
	k := newChecker()
	var bytes uint64
	handle := func(typ int32, p []byte) {
		k.handle(typ, p)
		bytes += uint64(len(p))
	}
	finished := func() bool {
		select {
		case <-kids[3].Done():
			return k.last[1] == each && k.last[2] == each && pr.c.Position() == pr.r.Stats().Tail
		default:
			return false
		}
	}
	deadline := time.Now().Add(patience(3 * time.Minute))
	for !finished() {
		if time.Now().After(deadline) {
			t.Fatalf("%d records read; stats %+v", k.n, pr.r.Stats())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := pr.c.Receive(ctx, handle, 256)
		cancel()
		if k.err != nil {
			t.Fatal(k.err)
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
	}
	for _, c := range kids[1:3] {
		if err := c.Wait(patience(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	st := pr.r.Stats()
	if st.Sent != want(uint64(k.n)) || st.Received != want(uint64(k.n)) {
		t.Fatalf("read %d records; stats %+v", k.n, st.Counters)
	}
	if st.SentBytes != want(bytes) || st.ReceivedBytes != want(bytes) {
		t.Fatalf("read %d bytes; stats %+v", bytes, st.Counters)
	}
	if k.last[3] >= each {
		t.Fatalf("the suicidal producer wrote all its records")
	}
	if st.Recovered != 1 || st.RecoveredByTimeout != 0 {
		t.Fatalf("a producer killed mid-record: recovered %d (by timeout %d), want 1", st.Recovered, st.RecoveredByTimeout)
	}
	t.Logf("%d records, %d bytes: %s", k.n, bytes, fmt.Sprintf("%+v", st.Counters))
}

// BenchmarkWriteRead is the path of one record through the ring in one
// goroutine (claim, commit, read), without the cache-line transfers of two
// cores: what counting adds to it shows here undiluted. Compare with a
// build with -tags shmex_nocounters, runs of the two interleaved (see
// counters.go). Besides the wall-clock time it reports the CPU time per
// record of the shortest window of 4096 records (min-cpu-ns/op), which a
// loaded machine disturbs least (see internal/cpuclock).
func BenchmarkWriteRead(b *testing.B) {
	r := newRing(b, ring.Config{Capacity: 1 << 16, MaxRecord: 1024}, ring.Options{})
	p, _ := r.NewProducer(1)
	c, _ := r.NewConsumer(2, ring.Spin)
	var sink int
	fn := func(_ int32, p []byte) { sink += len(p) }
	cpu := cpuclock.Start(4096)
	for b.Loop() {
		cl, err := p.TryClaim(1, 64)
		if err != nil {
			b.Fatal(err)
		}
		cl.Commit()
		if _, err := c.Read(fn, 1); err != nil {
			b.Fatal(err)
		}
		cpu.Tick()
	}
	cpu.Report(b)
	if st := r.Stats(); st.Received != want(st.Sent) {
		b.Fatalf("stats %+v", st.Counters)
	}
}
