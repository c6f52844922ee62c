package proxystore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestArenaReconcileABA interleaves live readers with the owner's reconcile
// of a dead reader's reference to an Owned block: between O1 and O3 a live
// reader M releases, and between O3 and O4 another live reader L resolves,
// so the descriptor word is back to the value O1 read (refs D+M = D+L)
// while O3 saw no live entry. Setting refs to 0 at O4 would drop L's
// reference: the block would be reclaimed while L holds a view of it.
func TestArenaReconcileABA(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir, WithReapInterval(time.Hour))
	d := openArena(t, dir, WithReapInterval(time.Hour))
	m := openArena(t, dir, WithReapInterval(time.Hour))
	l := openArena(t, dir, WithReapInterval(time.Hour))
	under := arenaUnderflows.Load()

	p, err := owner.Put(ctx, []byte("payload"), WithLifetime(Owned))
	if err != nil {
		t.Fatal(err)
	}
	arenaResolve(t, d, p)
	vm := arenaResolve(t, m, p)
	d.life.Close() // d dies holding its view

	var vl View
	t.Cleanup(func() { reconcileProbe = func(int) {} })
	reconcileProbe = func(step int) {
		switch step {
		case 1:
			if vm != nil {
				vm.Release()
				vm = nil
			}
		case 3:
			if vl == nil {
				vl = arenaResolve(t, l, p)
			}
		}
	}
	s := owner.own[0]
	owner.amu.Lock()
	s.reconcileDead(owner.life.ID(), owner.lives.alive)
	owner.amu.Unlock()
	reconcileProbe = func(int) {}
	if vm != nil {
		vm.Release()
	}
	if vl == nil {
		vl = arenaResolve(t, l, p)
	}

	// L holds a view: freeing the block must not reclaim it.
	if err := owner.Free(ctx, p); err != nil {
		t.Fatal(err)
	}
	owner.reap()
	if st := owner.Stats(); st.Blocks != 1 {
		t.Fatalf("block reclaimed while a live reader holds a view: %+v", st)
	}
	if string(vl.Bytes()) != "payload" {
		t.Fatalf("view changed: %q", vl.Bytes())
	}
	if err := vl.Release(); err != nil {
		t.Fatal(err)
	}
	if n := arenaUnderflows.Load() - under; n != 0 {
		t.Fatalf("%d releases found no reference to drop", n)
	}
	owner.reap()
	if st := owner.Stats(); st.Blocks != 0 {
		t.Fatalf("dead reader's reference not reclaimed after Free: %+v", st)
	}
}

// TestArenaBadLengthKeepsSingleUse: a proxy naming a single-use block with
// the right generation but a wrong length is refused, and must not consume
// the payload of its real receiver.
func TestArenaBadLengthKeepsSingleUse(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	p, err := owner.Put(ctx, []byte("single"), WithSingleUse())
	if err != nil {
		t.Fatal(err)
	}
	bad := p
	bad.Length = 2
	if _, err := reader.Resolve(ctx, bad); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("wrong length: %v", err)
	}
	v := arenaResolve(t, reader, p)
	if string(v.Bytes()) != "single" {
		t.Fatalf("got %q", v.Bytes())
	}
	v.Release()
	if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("second resolve of a single-use payload: %v", err)
	}
}

// TestArenaLeaseWithoutDeadline: Leased without a deadline is refused, as by
// the other stores (time.Time{}.UnixNano() is not a deadline).
func TestArenaLeaseWithoutDeadline(t *testing.T) {
	ctx := context.Background()
	a := openArena(t, arenaDir(t))
	if _, err := a.Put(ctx, []byte("x"), WithLifetime(Leased)); err == nil {
		t.Fatal("Put of a Leased payload without a deadline succeeded")
	}
	if _, err := a.Alloc(ctx, 1, WithLifetime(Leased)); err == nil {
		t.Fatal("Alloc of a Leased payload without a deadline succeeded")
	}
	if st := a.Stats(); st.Blocks != 0 {
		t.Fatalf("stats %+v", st)
	}
}
