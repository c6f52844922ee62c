package proxystore

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/shm"
)

// arenaDir returns a fresh exchange directory under the test's temp dir.
func arenaDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root", "ex")
	if err := shm.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openArena opens an arena closed at the end of the test. Tests use small
// segments so that the package stays well under its shm budget.
func openArena(t testing.TB, dir string, opts ...ArenaOption) *Arena {
	t.Helper()
	opts = append([]ArenaOption{WithSegmentSize(1 << 20), WithMaxBytes(8 << 20), WithPrefault(false)}, opts...)
	a, err := OpenArena(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// pattern fills b with bytes derived from seed.
func arenaPattern(b []byte, seed uint64) {
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		if i%8 == 0 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		b[i] = byte(x >> (8 * (i % 8)))
	}
}

func arenaCheckPattern(b []byte, seed uint64) bool {
	want := make([]byte, len(b))
	arenaPattern(want, seed)
	return bytes.Equal(b, want)
}

func arenaResolve(t testing.TB, a *Arena, p Proxy) View {
	t.Helper()
	v, err := a.Resolve(context.Background(), p)
	if err != nil {
		t.Fatalf("resolve %v: %v", p, err)
	}
	return v
}

func TestArenaPutResolve(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	if owner.ID() != reader.ID() {
		t.Fatalf("store ids differ: %v %v", owner.ID(), reader.ID())
	}
	sizes := []int{0, 1, 1000, Granule, Granule + 1, 5000, MaxSmall, MaxSmall + 1, 200 << 10, 1 << 20, 3 << 20}
	var proxies []Proxy
	for i, n := range sizes {
		b := make([]byte, n)
		arenaPattern(b, uint64(i))
		p, err := owner.Put(ctx, b)
		if err != nil {
			t.Fatalf("put %d: %v", n, err)
		}
		if p.Length != uint64(n) || Kind(p.Kind) != KindArena || StoreID(p.Store) != owner.ID() {
			t.Fatalf("put %d: proxy %v", n, p)
		}
		proxies = append(proxies, p)
	}
	for i, p := range proxies {
		for _, a := range []*Arena{reader, owner} {
			v := arenaResolve(t, a, p)
			if v.Proxy() != p || !arenaCheckPattern(v.Bytes(), uint64(i)) || cap(v.Bytes()) != len(v.Bytes()) {
				t.Fatalf("resolve %v: wrong view", p)
			}
			if err := v.Release(); err != nil {
				t.Fatal(err)
			}
			if err := v.Release(); !errors.Is(err, ErrReleased) {
				t.Fatalf("second release: %v", err)
			}
		}
	}
	st := owner.Stats()
	if st.Blocks != len(sizes) || st.Segments != 3 {
		t.Fatalf("owner stats %+v", st)
	}
	if st := reader.Stats(); st.Attached != 3 || st.Views != 0 {
		t.Fatalf("reader stats %+v", st)
	}
	for _, p := range proxies {
		if err := owner.Free(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if st := owner.Stats(); st.Blocks != 0 {
		t.Fatalf("after free: %+v", st)
	}
}

func TestArenaViewIsReadOnly(t *testing.T) {
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	p, err := owner.Put(context.Background(), []byte("read only"))
	if err != nil {
		t.Fatal(err)
	}
	v := arenaResolve(t, reader, p)
	defer v.Release()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	faulted := func() (f bool) {
		defer func() { f = recover() != nil }()
		v.Bytes()[0] = 'X'
		return false
	}()
	if !faulted {
		t.Fatal("writing a reader's view did not fault")
	}
}

func TestArenaLoan(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	l, err := owner.Alloc(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Bytes()) != 10000 {
		t.Fatalf("loan of %d bytes", len(l.Bytes()))
	}
	arenaPattern(l.Bytes(), 7)
	p, err := l.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(); !errors.Is(err, ErrReleased) {
		t.Fatalf("second commit: %v", err)
	}
	if err := l.Abort(); !errors.Is(err, ErrReleased) {
		t.Fatalf("abort after commit: %v", err)
	}
	v := arenaResolve(t, reader, p)
	if !arenaCheckPattern(v.Bytes(), 7) {
		t.Fatal("loaned payload differs")
	}
	v.Release()

	l2, err := owner.Alloc(ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Abort(); err != nil {
		t.Fatal(err)
	}
	if st := owner.Stats(); st.Blocks != 1 {
		t.Fatalf("after abort: %+v", st)
	}
	if _, err := owner.Alloc(ctx, -1); err == nil {
		t.Fatal("negative alloc succeeded")
	}
}

func TestArenaSingleUse(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	b := make([]byte, 3000)
	arenaPattern(b, 1)
	p, err := owner.Put(ctx, b, WithSingleUse())
	if err != nil {
		t.Fatal(err)
	}
	v1 := arenaResolve(t, reader, p)
	v2 := arenaResolve(t, reader, p) // a second reference while the first is held
	if err := v1.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("resolve after single use: %v", err)
	}
	if !arenaCheckPattern(v2.Bytes(), 1) {
		t.Fatal("held view changed after eviction")
	}
	owner.reap()
	if st := owner.Stats(); st.Blocks != 1 {
		t.Fatalf("reclaimed while held: %+v", st)
	}
	v2.Release()
	owner.reap()
	if st := owner.Stats(); st.Blocks != 0 {
		t.Fatalf("not reclaimed: %+v", st)
	}
}

func TestArenaLeased(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	past, err := owner.Put(ctx, []byte("gone"), WithLease(time.Now().Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Resolve(ctx, past); !errors.Is(err, ErrExpired) {
		t.Fatalf("resolve after deadline: %v", err)
	}
	deadline := time.Now().Add(100 * time.Millisecond)
	p, err := owner.Put(ctx, []byte("leased"), WithLease(deadline))
	if err != nil {
		t.Fatal(err)
	}
	v, err := reader.Resolve(ctx, p)
	if err != nil {
		if errors.Is(err, ErrExpired) && time.Now().After(deadline) {
			t.Skip("machine too slow for a 100ms lease")
		}
		t.Fatal(err)
	}
	time.Sleep(time.Until(deadline) + 10*time.Millisecond)
	if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrExpired) {
		t.Fatalf("resolve after deadline: %v", err)
	}
	owner.reap()
	if string(v.Bytes()) != "leased" {
		t.Fatal("held view changed after expiry")
	}
	if st := owner.Stats(); st.Blocks != 1 {
		t.Fatalf("after expiry, while held: %+v", st)
	}
	v.Release()
	owner.reap()
	if st := owner.Stats(); st.Blocks != 0 {
		t.Fatalf("expired blocks not reclaimed: %+v", st)
	}
}

func TestArenaOwnedFree(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	p, err := owner.Put(ctx, []byte("owned"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Free(ctx, p); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("free by a reader: %v", err)
	}
	v := arenaResolve(t, reader, p)
	if err := owner.Free(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := owner.Free(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("second free: %v", err)
	}
	if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("resolve after free: %v", err)
	}
	if string(v.Bytes()) != "owned" {
		t.Fatal("held view changed after free")
	}
	if st := owner.Stats(); st.Blocks != 1 {
		t.Fatalf("reclaimed while held: %+v", st)
	}
	v.Release()
	owner.reap()
	if st := owner.Stats(); st.Blocks != 0 {
		t.Fatalf("not reclaimed: %+v", st)
	}
	// The block is reused with a new generation: the old proxy stays stale.
	q, err := owner.Put(ctx, []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	if q.Segment != p.Segment || q.Offset != p.Offset || q.Generation == p.Generation {
		t.Fatalf("reuse: %v after %v", q, p)
	}
	if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("stale proxy after reuse: %v", err)
	}
	v = arenaResolve(t, reader, q)
	if string(v.Bytes()) != "again" {
		t.Fatal("reused block")
	}
	v.Release()
}

func TestArenaBadProxies(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	p, err := owner.Put(ctx, make([]byte, 4096))
	if err != nil {
		t.Fatal(err)
	}
	big, err := owner.Put(ctx, make([]byte, 2<<20)) // a single-block segment
	if err != nil {
		t.Fatal(err)
	}
	other := openArena(t, arenaDir(t))
	mod := func(f func(*Proxy)) Proxy { q := p; f(&q); return q }
	cases := []struct {
		name string
		p    Proxy
		want error
	}{
		{"foreign store", mod(func(q *Proxy) { q.Store = other.ID() }), ErrForeignProxy},
		{"zero store", mod(func(q *Proxy) { q.Store = StoreID{} }), ErrForeignProxy},
		{"file kind", mod(func(q *Proxy) { q.Kind = uint8(KindFile) }), ErrBadProxy},
		{"generation 0", mod(func(q *Proxy) { q.Generation = 0 }), ErrBadProxy},
		{"generation too large", mod(func(q *Proxy) { q.Generation = math.MaxUint64 }), ErrBadProxy},
		{"wrong generation", mod(func(q *Proxy) { q.Generation++ }), ErrStaleProxy},
		{"offset past the end", mod(func(q *Proxy) { q.Offset = 1 << 40 }), ErrBadProxy},
		{"length past the end", mod(func(q *Proxy) { q.Length = 1 << 40 }), ErrBadProxy},
		{"offset+length overflow", mod(func(q *Proxy) { q.Offset, q.Length = math.MaxUint64-10, 100 }), ErrBadProxy},
		{"offset at the end", mod(func(q *Proxy) { q.Offset, q.Length = 1<<20, 0 }), ErrBadProxy},
		{"misaligned offset", mod(func(q *Proxy) { q.Offset++ }), ErrBadProxy},
		{"offset inside the block", mod(func(q *Proxy) { q.Offset += Granule; q.Length = 10 }), ErrStaleProxy},
		{"wrong length", mod(func(q *Proxy) { q.Length = 100 }), ErrBadProxy},
		{"segment 0", mod(func(q *Proxy) { q.Segment = 0 }), ErrBadProxy},
		{"unknown segment", mod(func(q *Proxy) { q.Segment = 0x1234 }), ErrOwnerDead},
		{"single-block offset", func() Proxy { q := big; q.Offset, q.Length = Granule, 10; return q }(), ErrBadProxy},
	}
	for _, c := range cases {
		for _, a := range []*Arena{reader, owner} {
			v, err := a.Resolve(ctx, c.p)
			if !errors.Is(err, c.want) {
				if v != nil {
					v.Release()
				}
				t.Errorf("%s: resolve %v = %v, want %v", c.name, c.p, err, c.want)
			}
		}
	}
	// Another exchange's store refuses this one's proxies, even with the
	// segment files copied into its directory.
	if _, err := other.Resolve(ctx, p); !errors.Is(err, ErrForeignProxy) {
		t.Fatalf("other exchange: %v", err)
	}
	for _, suffix := range []string{"meta", "data"} {
		b, err := os.ReadFile(filepath.Join(dir, segName(p.Segment, suffix)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(other.Dir(), segName(p.Segment, suffix)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q := p
	q.Store = other.ID()
	if _, err := other.Resolve(ctx, q); !errors.Is(err, ErrForeignProxy) {
		t.Fatalf("copied arena: %v", err)
	}
	if st := reader.Stats(); st.Views != 0 {
		t.Fatalf("views leaked: %+v", st)
	}
}

func TestArenaFull(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	a := openArena(t, dir, WithSegmentSize(1<<20), WithMaxBytes(2<<20))
	var ps []Proxy
	for i := 0; i < 2; i++ {
		p, err := a.Put(ctx, make([]byte, 700<<10))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if _, err := a.Put(ctx, make([]byte, 700<<10)); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("put into a full arena: %v", err)
	}
	if _, err := a.Alloc(ctx, 3<<20); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("alloc beyond max bytes: %v", err)
	}
	if err := a.Free(ctx, ps[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, make([]byte, 700<<10)); err != nil {
		t.Fatalf("put after free: %v", err)
	}
	if st := a.Stats(); st.Segments != 2 || st.Bytes != 2<<20 {
		t.Fatalf("stats %+v", st)
	}

	// Single-block segments are retired to make room.
	b := openArena(t, dir, WithSegmentSize(1<<20), WithMaxBytes(5<<20))
	p, err := b.Put(ctx, make([]byte, 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Free(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, make([]byte, 4<<20)); err != nil {
		t.Fatalf("put after retiring an idle segment: %v", err)
	}
	if st := b.Stats(); st.Segments != 1 || st.Bytes != 4<<20 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(p.Segment, "data"))); !os.IsNotExist(err) {
		t.Fatalf("retired segment still there: %v", err)
	}
}

func TestArenaAllocator(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	a := openArena(t, dir, WithSegmentSize(1<<20), WithMaxBytes(4<<20))
	rng := rand.New(rand.NewPCG(1, 2))
	type block struct {
		p    Proxy
		seed uint64
	}
	var live []block
	check := func() {
		for _, b := range live {
			v := arenaResolve(t, a, b.p)
			if !arenaCheckPattern(v.Bytes(), b.seed) {
				t.Fatalf("block %v was overwritten", b.p)
			}
			v.Release()
		}
	}
	for i := 0; i < 3000; i++ {
		if len(live) > 0 && rng.IntN(3) == 0 {
			j := rng.IntN(len(live))
			if err := a.Free(ctx, live[j].p); err != nil {
				t.Fatal(err)
			}
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
			continue
		}
		var n int
		switch rng.IntN(4) {
		case 0:
			n = rng.IntN(Granule)
		case 1:
			n = rng.IntN(MaxSmall)
		case 2:
			n = MaxSmall + rng.IntN(300<<10)
		default:
			n = rng.IntN(8 << 10)
		}
		l, err := a.Alloc(ctx, n)
		if errors.Is(err, ErrStoreFull) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		seed := uint64(i)
		arenaPattern(l.Bytes(), seed)
		p, err := l.Commit()
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, block{p, seed})
		if i%500 == 0 {
			check()
		}
	}
	check()
	// No two live blocks overlap.
	sort.Slice(live, func(i, j int) bool {
		x, y := live[i].p, live[j].p
		return x.Segment < y.Segment || x.Segment == y.Segment && x.Offset < y.Offset
	})
	for i := 1; i < len(live); i++ {
		x, y := live[i-1].p, live[i].p
		if x.Segment == y.Segment && x.Offset+max(x.Length, 1) > y.Offset {
			t.Fatalf("blocks overlap: %v %v", x, y)
		}
	}
	for _, b := range live {
		if err := a.Free(ctx, b.p); err != nil {
			t.Fatal(err)
		}
	}
	st := a.Stats()
	if st.Blocks != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Everything came back: one payload per segment of its whole size fits.
	for i := 0; i < st.Segments; i++ {
		if _, err := a.Put(ctx, make([]byte, 1<<20)); err != nil {
			t.Fatalf("after freeing everything: %v (%+v)", err, st)
		}
	}
}

func TestArenaConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir, WithSegmentSize(1<<20), WithMaxBytes(2<<20))
	reader := openArena(t, dir)
	ch := make(chan Proxy, 64)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range ch {
				v, err := reader.Resolve(ctx, p)
				if err != nil {
					errc <- err
					return
				}
				if !arenaCheckPattern(v.Bytes(), p.Generation^p.Segment) {
					errc <- errors.New("pattern mismatch while held")
				}
				v.Release()
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Second)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 4000 && time.Now().Before(deadline); i++ {
		n := 1 + rng.IntN(100<<10)
		l, err := owner.Alloc(ctx, n, WithSingleUse())
		if errors.Is(err, ErrStoreFull) {
			owner.reap()
			i--
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		p := owner.proxy(l.(*arenaLoan).s, l.(*arenaLoan).off, uint64(n), l.(*arenaLoan).gen)
		arenaPattern(l.Bytes(), p.Generation^p.Segment)
		if _, err := l.Commit(); err != nil {
			t.Fatal(err)
		}
		ch <- p
	}
	close(ch)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	owner.reap()
	if st := owner.Stats(); st.Blocks != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestArenaClose(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	p, err := owner.Put(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	v := arenaResolve(t, reader, p)
	l, err := owner.Alloc(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Put(ctx, []byte("y")); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v", err)
	}
	if _, err := owner.Resolve(ctx, p); !errors.Is(err, ErrClosed) {
		t.Fatalf("resolve after close: %v", err)
	}
	if _, err := l.Commit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("commit after close: %v", err)
	}
	// The reader's held view stays valid; new resolves fail.
	if string(v.Bytes()) != "x" {
		t.Fatal("view changed")
	}
	if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("resolve after the owner closed: %v", err)
	}
	v.Release()
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Release(); !errors.Is(err, ErrReleased) {
		t.Fatalf("release after close: %v", err)
	}
	names := arenaDirNames(t, dir)
	if len(names) != 1 || names[0] != storeDescName {
		t.Fatalf("left in the directory: %v", names)
	}
}

func arenaDirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestArenaDeadOwnerInProcess plays an owner's death by dropping its
// liveness lock (the cross-process tests use SIGKILL).
func TestArenaDeadOwnerInProcess(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	p1, _ := owner.Put(ctx, []byte("one"))
	p2, _ := owner.Put(ctx, []byte("two"))
	big, _ := owner.Put(ctx, make([]byte, 2<<20))
	v := arenaResolve(t, reader, p1)
	owner.life.Close() // the owner is dead to everyone else
	untilOwnerDead(t, func() error {
		v, err := reader.Resolve(ctx, p1)
		if err == nil {
			v.Release()
		}
		return err
	})
	for _, p := range []Proxy{p1, p2, big} {
		if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("resolve after owner death: %v", err)
		}
	}
	if string(v.Bytes()) != "one" {
		t.Fatal("held view changed")
	}
	v.Release()
	// The reader, noticing, removed the dead owner's segments.
	for _, name := range arenaDirNames(t, dir) {
		if _, ok := parseSegName(name); ok {
			t.Fatalf("%s left behind", name)
		}
	}
	// Collect removes the segments of a dead owner nobody noticed.
	other := openArena(t, dir)
	if _, err := other.Put(ctx, []byte("three")); err != nil {
		t.Fatal(err)
	}
	other.life.Close()
	removed, err := Collect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Fatalf("collect removed %v", removed)
	}
	reader.reap()
	if st := reader.Stats(); st.Attached != 0 {
		t.Fatalf("dead segments still mapped: %+v", st)
	}
	fresh := openArena(t, dir)
	if _, err := fresh.Resolve(ctx, p2); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("fresh reader: %v", err)
	}
}

// untilOwnerDead calls resolve until it fails with ErrOwnerDead, which it
// must within a few times ownerCheckInterval (a reader that looked at the
// owner's liveness lock trusts it that long).
func untilOwnerDead(t *testing.T, resolve func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := resolve()
		if errors.Is(err, ErrOwnerDead) {
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("resolve after the owner's death: %v", err)
		}
		time.Sleep(ownerCheckInterval / 4)
	}
}

// TestArenaDeadReaderInProcess plays a reader's death by dropping its
// liveness lock; the owner's reaper drops its references.
func TestArenaDeadReaderInProcess(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir)
	reader := openArena(t, dir)
	var ps []Proxy
	for i := 0; i < 40; i++ { // more than one hold slot
		p, _ := owner.Put(ctx, []byte("held"), WithSingleUse())
		ps = append(ps, p)
		arenaResolve(t, reader, p)
		arenaResolve(t, reader, p)
	}
	owned, _ := owner.Put(ctx, []byte("owned"))
	arenaResolve(t, reader, owned)
	if err := owner.Free(ctx, owned); err != nil {
		t.Fatal(err)
	}
	owner.reap()
	if st := owner.Stats(); st.Blocks != 41 {
		t.Fatalf("stats %+v", st)
	}
	reader.life.Close()
	owner.reap()
	if st := owner.Stats(); st.Blocks != 0 {
		t.Fatalf("dead reader's references not reclaimed: %+v", st)
	}
	for _, p := range ps {
		if _, err := owner.Resolve(ctx, p); !errors.Is(err, ErrStaleProxy) {
			t.Fatalf("single use held by a dead reader: %v", err)
		}
	}
}

func TestArenaTampered(t *testing.T) {
	ctx := context.Background()
	corrupt := func(path string, off int64) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var b [1]byte
		f.ReadAt(b[:], off)
		b[0] ^= 0x5a
		if _, err := f.WriteAt(b[:], off); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("store descriptor", func(t *testing.T) {
		dir := arenaDir(t)
		openArena(t, dir)
		corrupt(filepath.Join(dir, storeDescName), shm.HeaderSize+20)
		if _, err := OpenArena(dir); !errors.Is(err, ErrBadArena) {
			t.Fatalf("open with a tampered store descriptor: %v", err)
		}
	})
	for _, c := range []struct {
		name   string
		suffix string
		off    int64
	}{
		{"meta shm header", "meta", 0},
		{"meta header store", "meta", shm.HeaderSize + ahOffStore},
		{"meta header size", "meta", shm.HeaderSize + ahOffDataSize},
		{"meta header slots", "meta", shm.HeaderSize + metaOffHolds},
		{"data shm header", "data", 3},
		{"data header owner", "data", shm.HeaderSize + ahOffOwner},
		{"data header magic", "data", shm.HeaderSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := arenaDir(t)
			owner := openArena(t, dir)
			p, err := owner.Put(ctx, []byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			corrupt(filepath.Join(dir, segName(p.Segment, c.suffix)), c.off)
			reader := openArena(t, dir)
			if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrBadArena) {
				t.Fatalf("resolve into a tampered arena: %v", err)
			}
		})
	}
}

func TestArenaTooManyViews(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir, WithHoldSlots(1))
	reader := openArena(t, dir)
	other := openArena(t, dir)
	p, err := owner.Put(ctx, []byte("popular"))
	if err != nil {
		t.Fatal(err)
	}
	var views []View
	for i := 0; i < holdEntries; i++ {
		views = append(views, arenaResolve(t, reader, p))
	}
	if _, err := reader.Resolve(ctx, p); !errors.Is(err, ErrTooManyViews) {
		t.Fatalf("32nd view: %v", err)
	}
	if _, err := other.Resolve(ctx, p); !errors.Is(err, ErrTooManyViews) {
		t.Fatalf("another reader, slot taken: %v", err)
	}
	views[0].Release()
	v := arenaResolve(t, reader, p)
	v.Release()
	for _, v := range views[1:] {
		v.Release()
	}
	// Closing gives the slot back.
	reader.Close()
	v = arenaResolve(t, other, p)
	v.Release()
}

// TestArenaReserve: Reserve creates the segments that payloads of the
// given sizes need, once; the allocations that follow reuse them.
func TestArenaReserve(t *testing.T) {
	ctx := t.Context()
	a := openArena(t, arenaDir(t), WithSegmentSize(1<<20), WithMaxBytes(16<<20))
	if err := a.Reserve(ctx, 5<<20, 5<<20, 100, 300<<10); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Segments != 3 || st.Bytes != 11<<20 || st.Blocks != 0 {
		t.Fatalf("after Reserve: %+v, want two 5 MiB single-block segments and one regular", st)
	}
	if err := a.Reserve(ctx, 5<<20, 1<<20, 4<<20); err != nil {
		t.Fatal(err)
	}
	if got := a.Stats(); got.Segments != 3 {
		t.Fatalf("a second Reserve of what is there: %+v", got)
	}
	var loans []Loan
	for _, n := range []int{5 << 20, 5 << 20, 100, 300 << 10} {
		l, err := a.Alloc(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		loans = append(loans, l)
	}
	if got := a.Stats(); got.Segments != 3 || got.Blocks != 4 {
		t.Fatalf("allocations after Reserve made segments: %+v", got)
	}
	if err := a.Reserve(ctx, 8<<20); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Reserve beyond the limits: %v", err)
	}
	for _, l := range loans {
		l.Abort()
	}
	if err := a.Reserve(ctx, -1); err == nil {
		t.Fatal("Reserve(-1)")
	}
}

// TestArenaSingleBlockReused: a single-use payload larger than a segment,
// used and released by a reader, leaves its single-block segment to the
// next one of that size (reclaimed when the allocation looks for room),
// whichever of two such segments it was in; a leased one still live is
// not taken.
func TestArenaSingleBlockReused(t *testing.T) {
	ctx := t.Context()
	dir := arenaDir(t)
	owner := openArena(t, dir, WithSegmentSize(1<<20), WithMaxBytes(16<<20))
	reader := openArena(t, dir)
	if err := owner.Reserve(ctx, 2<<20, 3<<20); err != nil {
		t.Fatal(err)
	}
	lease, err := owner.Put(ctx, make([]byte, 2<<20), WithLease(time.Now().Add(time.Hour))) // the 2 MiB segment, taken
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		l, err := owner.Alloc(ctx, 2<<20, WithSingleUse()) // the 3 MiB segment, every time
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		l.Bytes()[0] = byte(i)
		p, err := l.Commit()
		if err != nil {
			t.Fatal(err)
		}
		v := arenaResolve(t, reader, p)
		if v.Bytes()[0] != byte(i) || len(v.Bytes()) != 2<<20 {
			t.Fatalf("round %d: read %d of %d bytes", i, v.Bytes()[0], len(v.Bytes()))
		}
		v.Release()
	}
	// Blocks: the lease, and the last round's until an allocation
	// reclaims it.
	if st := owner.Stats(); st.Segments != 2 || st.Blocks > 2 {
		t.Fatalf("after 20 rounds: %+v, want the two reserved segments, at most two blocks", st)
	}
	if err := owner.Free(ctx, lease); err != nil {
		t.Fatal(err)
	}
}
