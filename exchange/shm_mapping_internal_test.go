package exchange

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// These tests drive the mapping lifecycle (see dest) step by step: a
// retired dest is unmapped only when no box is held and no pin taken, and
// a sender that loaded a dest before it was retired never touches it once
// it is unmapped.

// unitSHM opens a handle on a fresh exchange under a temporary root, with
// one agent registered; closed at cleanup.
func unitSHM(t *testing.T) (*SHM, EntityID) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root") // EnsureDir makes it 0700
	x, err := Open("unit", WithRoot(root), WithMailboxBytes(4096), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	id, err := x.RegisterAgent(context.Background(), Behavior{Name: "Unit"})
	if err != nil {
		t.Fatal(err)
	}
	return x, id
}

// cycle terminates the mailbox of id and reopens it on a new ring.
func cycle(t *testing.T, x *SHM, id EntityID) {
	t.Helper()
	ctx := context.Background()
	if err := x.Terminate(ctx, id); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	if err := x.Reopen(ctx, id); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
}

// cached returns x's mapping of id's mailbox.
func cached(x *SHM, id EntityID) *dest {
	v, _ := x.dests.Load(id.UUID)
	d, _ := v.(*dest)
	return d
}

func mapped(d *dest) bool { return d.seg.Body() != nil }

func ping(id EntityID) *Message { return NewPingResponse(id, id, NewTag()) }

// TestRetiredDestUnmapped: a mapping retired by a Reopen with no user left
// is unmapped at once; a sender that loaded it before (from x.last or
// x.dests) finds every box closed and moves on to the new ring without
// touching the old one.
func TestRetiredDestUnmapped(t *testing.T) {
	x, id := unitSHM(t)
	ctx := testContext(t)
	if err := x.Send(ctx, ping(id)); err != nil {
		t.Fatal(err)
	}
	old := cached(x, id)
	cycle(t, x, id)
	if !old.dead.Load() || mapped(old) {
		t.Fatalf("after Reopen: dead %v, mapped %v; want the old ring unmapped", old.dead.Load(), mapped(old))
	}
	if n := x.MappedRings(); n != 0 {
		t.Fatalf("%d mappings, want 0", n)
	}
	// The late sender: it loaded old before the retirement.
	if _, err := x.acquire(ctx, old); err != errRetired {
		t.Fatalf("acquire on a retired, unmapped dest: %v, want errRetired", err)
	}
	// A stale x.last (its incarnation tells it is old) is passed over,
	// then replaced.
	x.last.Store(old)
	for range 2 {
		if err := x.Send(ctx, ping(id)); err != nil {
			t.Fatal(err)
		}
	}
	if d := x.last.Load(); d != cached(x, id) || d.stamp.inc() != old.stamp.inc()+1 {
		t.Fatalf("x.last after a send: %p (old %p)", d, old)
	}
	if n := x.MappedRings(); n != 1 {
		t.Fatalf("%d mappings, want 1", n)
	}
}

// holdBox takes a producer box of d, as a send does, and gives it back at
// the end of the test if the test did not (a box held for ever would keep
// the handle's Close waiting).
func holdBox(t *testing.T, x *SHM, d *dest) *prodBox {
	t.Helper()
	b, err := x.acquire(testContext(t), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { atomic.CompareAndSwapUint32(&b.busy, boxBusy, boxIdle) })
	return b
}

// TestRetiredDestHeldBySender: a sender holds a box of the mapping when it
// is retired: the mapping stays (the sender's claim fails with ErrClosed
// on valid memory), the idle boxes are closed, and it is unmapped at the
// next reclaim after the box is released.
func TestRetiredDestHeldBySender(t *testing.T) {
	x, id := unitSHM(t)
	ctx := testContext(t)
	d, err := x.dest(id)
	if err != nil {
		t.Fatal(err)
	}
	b := holdBox(t, x, d)
	cycle(t, x, id)
	if !d.dead.Load() || !mapped(d) {
		t.Fatalf("retired with a box held: dead %v, mapped %v; want dead and mapped", d.dead.Load(), mapped(d))
	}
	for i := range d.boxes {
		if bb := &d.boxes[i]; bb != b && atomic.LoadUint32(&bb.busy) != boxClosed {
			t.Errorf("idle box %d not closed: %d", i, atomic.LoadUint32(&bb.busy))
		}
	}
	if _, err := b.p.TryClaim(int32(KindPingResponse), 16); !errors.Is(err, ring.ErrClosed) {
		t.Fatalf("claim in the old ring: %v, want ErrClosed", err)
	}
	if _, err := x.acquire(ctx, d); err != errRetired {
		t.Fatalf("second acquire: %v, want errRetired", err)
	}
	b.release()
	if !mapped(d) {
		t.Fatal("unmapped before any reclaim")
	}
	// The next slow path reclaims it.
	if err := x.Send(ctx, ping(id)); err != nil {
		t.Fatal(err)
	}
	if mapped(d) {
		t.Fatal("still mapped after the send that mapped the new ring")
	}
	if n := x.MappedRings(); n != 1 {
		t.Fatalf("%d mappings, want 1", n)
	}
	if atomic.LoadUint32(&b.busy) != boxClosed {
		t.Fatalf("released box: %d, want closed", atomic.LoadUint32(&b.busy))
	}
}

// TestRetiredDestPinned: a pinned mapping (a user that holds no box) stays
// mapped when retired and goes with its last pin; a retired dest refuses
// new pins.
func TestRetiredDestPinned(t *testing.T) {
	x, id := unitSHM(t)
	d, err := x.destPinned(id)
	if err != nil {
		t.Fatal(err)
	}
	cycle(t, x, id)
	if !d.dead.Load() || !mapped(d) {
		t.Fatalf("retired with a pin: dead %v, mapped %v; want dead and mapped", d.dead.Load(), mapped(d))
	}
	if x.pin(d) {
		t.Fatal("a retired dest took a pin")
	}
	if d.pins.Load() != 1 {
		t.Fatalf("pins = %d, want 1", d.pins.Load())
	}
	x.unpin(d)
	if mapped(d) {
		t.Fatal("still mapped after its last pin went")
	}
	if n := x.MappedRings(); n != 0 {
		t.Fatalf("%d mappings, want 0", n)
	}
}

// TestCollectedDestUnmapped: the mailbox is terminated and its ring removed
// (as another process's Collect does): the send that finds it so unmaps
// the handle's mapping, even one still cached in x.last, and later sends
// fail without mapping anything.
func TestCollectedDestUnmapped(t *testing.T) {
	x, id := unitSHM(t)
	ctx := testContext(t)
	if err := x.Send(ctx, ping(id)); err != nil {
		t.Fatal(err)
	}
	d := cached(x, id)
	if err := x.Terminate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := shm.Remove(ringPath(x.dir, id.UUID, d.stamp.inc())); err != nil {
		t.Fatal(err)
	}
	if err := x.Send(ctx, ping(id)); !errors.Is(err, ErrMailboxClosed) {
		t.Fatalf("Send: %v, want ErrMailboxClosed", err)
	}
	if !d.dead.Load() || mapped(d) {
		t.Fatalf("after the failed send: dead %v, mapped %v", d.dead.Load(), mapped(d))
	}
	// A stale x.last (the incarnation is unchanged: only the boxes tell).
	x.last.Store(d)
	if err := x.Send(ctx, ping(id)); !errors.Is(err, ErrMailboxClosed) {
		t.Fatalf("Send with a stale x.last: %v, want ErrMailboxClosed", err)
	}
	if x.last.Load() == d {
		t.Fatal("x.last still points at the unmapped dest")
	}
	if n := x.MappedRings(); n != 0 {
		t.Fatalf("%d mappings, want 0", n)
	}
}

// TestRetireRace: goroutines take boxes of whichever mapping is current
// and write through them while another one retires it (Terminate, Reopen)
// again and again. Whenever a box is held its mapping is mapped, and the
// retired mappings do not pile up.
func TestRetireRace(t *testing.T) {
	x, id := unitSHM(t)
	ctx := testContext(t)
	var cur atomic.Pointer[dest]
	d, err := x.dest(id)
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(d)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var held atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := cur.Load()
				b, err := x.acquire(ctx, d)
				if err == errRetired {
					runtime.Gosched()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if !mapped(d) {
					t.Error("a box is held on an unmapped ring")
				}
				if c, err := b.p.TryClaim(int32(KindPingResponse), 16); err == nil {
					c.Abort()
				}
				held.Add(1)
				b.release()
				runtime.Gosched()
			}
		}()
	}
	maxRetired := 0
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline) && !t.Failed(); i++ {
		cycle(t, x, id)
		nd, err := x.dest(id)
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(nd)
		x.destMu.Lock()
		maxRetired = max(maxRetired, len(x.retired))
		x.destMu.Unlock()
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	t.Logf("%d boxes taken; at most %d retired mappings left after a pass", held.Load(), maxRetired)
	if maxRetired > 3 {
		t.Errorf("up to %d retired mappings left, want at most one per sender (3)", maxRetired)
	}
	x.reclaim()
	if n := x.MappedRings(); n != 1 {
		t.Errorf("%d mappings when quiet, want 1", n)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestCollectedDestHeldBySenderUnmapped: a sender holds a box of the
// mapping when its terminated mailbox's ring is collected, so that box is
// not closed by the retire; and a dest call that loaded the mapping just
// before the unlink stores it back in x.last (invariant 1 admits it). Once
// the box is free, the sends that go through x.last take that box, fail
// with ErrMailboxClosed on the closed ring, and must clear x.last and
// unmap the mapping: with nothing else in x.dests, no other slow path may
// ever come. They kept it mapped, and cached, for as long as they went on.
func TestCollectedDestHeldBySenderUnmapped(t *testing.T) {
	x, id := unitSHM(t)
	ctx := testContext(t)
	if err := x.Send(ctx, ping(id)); err != nil {
		t.Fatal(err)
	}
	d := cached(x, id)
	b := holdBox(t, x, d)
	if err := x.Terminate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := shm.Remove(ringPath(x.dir, id.UUID, d.stamp.inc())); err != nil {
		t.Fatal(err)
	}
	x.reap(id) // as a Collect does
	if !d.dead.Load() || !mapped(d) {
		t.Fatalf("retired with a box held: dead %v, mapped %v; want dead and mapped", d.dead.Load(), mapped(d))
	}
	x.last.Store(d) // a dest call that loaded it before the unlink
	b.release()
	for range 3 {
		if err := x.Send(ctx, ping(id)); !errors.Is(err, ErrMailboxClosed) {
			t.Fatalf("Send: %v, want ErrMailboxClosed", err)
		}
	}
	if x.last.Load() == d || mapped(d) {
		t.Fatalf("after sends that failed on it: cached in x.last %v, mapped %v; want neither", x.last.Load() == d, mapped(d))
	}
	if n := x.MappedRings(); n != 0 {
		t.Fatalf("%d mappings, want 0", n)
	}
}
