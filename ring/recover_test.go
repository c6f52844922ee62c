package ring

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type deadSet struct {
	mu   sync.Mutex
	dead map[uint64]bool
}

func (d *deadSet) alive(o uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.dead[o]
}

func (d *deadSet) kill(o uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead[o] = true
}

func setup(t *testing.T, opts Options) (*Ring, *deadSet) {
	t.Helper()
	d := &deadSet{dead: map[uint64]bool{}}
	if opts.Alive == nil {
		opts.Alive = d.alive
	} else {
		opts.Alive = nil
	}
	region := make([]byte, Size(4096, 8))
	r, err := New(region, Config{Capacity: 4096, MaxRecord: 512, Slots: 8}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, d
}

func receiveAll(t *testing.T, c *Consumer, want int) []string {
	t.Helper()
	// Generous: recovery takes milliseconds, but a busy machine may not
	// run this goroutine for a while.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < want {
		if _, err := c.Receive(ctx, func(_ int32, p []byte) { got = append(got, string(p)) }, 0); err != nil {
			t.Fatalf("after %v: %v (stuck on a dead producer?)", got, err)
		}
	}
	return got
}

// A producer dies after writing its negative header: the consumer pads the
// record and reads on.
func TestRecoverClaimedRecord(t *testing.T) {
	r, d := setup(t, Options{})
	dead, _ := r.NewProducer(1)
	live, _ := r.NewProducer(2)
	live.Write(context.Background(), 1, []byte("before"))
	claim, _ := dead.TryClaim(1, 100)
	copy(claim.Bytes(), "half-written")
	live.Write(context.Background(), 1, []byte("after"))
	c, _ := r.NewConsumer(3, Park)
	// While its owner lives, the record blocks the consumer.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	var got []string
	c.Receive(ctx, func(_ int32, p []byte) { got = append(got, string(p)) }, 0)
	_, err := c.Receive(ctx, func(_ int32, p []byte) { got = append(got, string(p)) }, 0)
	cancel()
	if len(got) != 1 || err == nil {
		t.Fatalf("read past a live claim: %v %v", got, err)
	}
	d.kill(1)
	got = receiveAll(t, c, 1)
	if got[0] != "after" {
		t.Fatalf("got %v", got)
	}
	if st := r.Stats(); st.Recovered != 1 || st.RecoveredBytes != 112 {
		t.Fatalf("stats %+v", st)
	}
}

// A producer dies between its CAS and its header: the header is still zero,
// and only its intent says whose the claim is.
func TestRecoverZeroHeader(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		r, d := setup(t, Options{})
		live, _ := r.NewProducer(2)
		dead, _ := r.NewProducer(1)
		c, _ := r.NewConsumer(3, SpinThenPark(10))
		if wrap {
			// Move close to the end of the data area.
			for i := 0; i < 15; i++ {
				live.Write(context.Background(), 1, make([]byte, 248))
			}
			receiveAll(t, c, 15)
		}
		// Simulate dead's claim up to (not including) the header store.
		tail := atomic.LoadUint64(r.tail)
		need := uint64(128)
		if wrap {
			need = r.capacity - tail&r.mask + 128
		}
		atomic.StoreUint64(dead.lenWord, need)
		atomic.StoreUint64(dead.intent, tail)
		if !atomic.CompareAndSwapUint64(r.tail, tail, tail+need) {
			t.Fatal("CAS")
		}
		live.Write(context.Background(), 1, []byte("after"))
		d.kill(1)
		if got := receiveAll(t, c, 1); got[0] != "after" {
			t.Fatalf("got %v", got)
		}
		if st := r.Stats(); st.Recovered != 1 || st.RecoveredBytes != need {
			t.Fatalf("wrap=%v stats %+v", wrap, st)
		}
	}
}

// A dead producer that lost the CAS leaves an intent at the same position as
// the live winner's: the consumer must wait for the winner.
func TestLoserIntentDoesNotPadLiveWinner(t *testing.T) {
	r, d := setup(t, Options{})
	winner, _ := r.NewProducer(2)
	loser, _ := r.NewProducer(1)
	c, _ := r.NewConsumer(3, Park)
	tail := atomic.LoadUint64(r.tail)
	atomic.StoreUint64(loser.lenWord, 64)
	atomic.StoreUint64(loser.intent, tail)
	d.kill(1)
	claim, _ := winner.TryClaim(1, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	n, err := c.Receive(ctx, func(int32, []byte) {}, 0)
	cancel()
	if n != 0 || err == nil {
		t.Fatalf("consumer passed a live claim: n=%d err=%v", n, err)
	}
	copy(claim.Bytes(), "winner's record")
	claim.Commit()
	if got := receiveAll(t, c, 1); got[0][:6] != "winner" {
		t.Fatalf("got %q", got)
	}
	if st := r.Stats(); st.Recovered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Without a liveness function the owner is unknown: the record is padded
// after UnknownOwnerTimeout.
func TestRecoverUnknownOwner(t *testing.T) {
	r, _ := setup(t, Options{Alive: func(uint64) bool { return true }, UnknownOwnerTimeout: 50 * time.Millisecond})
	a, _ := r.NewProducer(1)
	b, _ := r.NewProducer(2)
	a.TryClaim(1, 40) // never committed
	b.Write(context.Background(), 1, []byte("after"))
	c, _ := r.NewConsumer(3, Park)
	start := time.Now()
	if got := receiveAll(t, c, 1); got[0] != "after" {
		t.Fatalf("got %v", got)
	}
	if time.Since(start) < 40*time.Millisecond {
		t.Fatal("padded before the timeout")
	}
	if st := r.Stats(); st.RecoveredByTimeout != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A producer dies between clearing recvWaiting and ringing the doorbell
// (wakeConsumer's two steps): the sleeping consumer is never rung, and a
// live producer after it, seeing the flag clear, commits without ringing.
// The consumer must still read the record, ParkRecheck late at most, and
// raise the flag again for the next sleep, so that later producers ring.
func TestLostWakeupOfDeadProducer(t *testing.T) {
	r, _ := setup(t, Options{})
	live, _ := r.NewProducer(2)
	c, _ := r.NewConsumer(3, Park)
	got := make(chan string, 2)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for range 2 {
			if _, err := c.Receive(ctx, func(_ int32, p []byte) { got <- string(p) }, 1); err != nil {
				errc <- err
				return
			}
		}
	}()
	asleep := func() bool {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if atomic.LoadUint32(r.recvWaiting) == 1 {
				return true
			}
		}
		return false
	}
	if !asleep() {
		t.Fatal("the consumer never went to sleep")
	}
	// The dying producer's half of wakeConsumer: the flag cleared, no ring.
	if !atomic.CompareAndSwapUint32(r.recvWaiting, 1, 0) {
		t.Fatal("the flag changed under the test")
	}
	live.Write(context.Background(), 1, []byte("after"))
	wait := func(want string) {
		t.Helper()
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("got %q, want %q", s, want)
			}
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%q not received: the consumer sleeps on (lost wake-up)", want)
		}
	}
	wait("after")
	// The next sleep raises the flag again: a producer rings it.
	if !asleep() {
		t.Fatal("the consumer never went to sleep again")
	}
	live.Write(context.Background(), 1, []byte("next"))
	wait("next")
}
