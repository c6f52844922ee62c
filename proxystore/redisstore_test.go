package proxystore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/redistest"
)

// resolveCopy resolves p in s and returns a copy of its bytes, releasing
// the view.
func resolveCopy(t testing.TB, s Store, p Proxy) []byte {
	t.Helper()
	v, err := s.Resolve(context.Background(), p)
	if err != nil {
		t.Fatalf("resolve %v: %v", p, err)
	}
	b := bytes.Clone(v.Bytes())
	if err := v.Release(); err != nil {
		t.Fatalf("release %v: %v", p, err)
	}
	return b
}

func openRedisStoreT(t *testing.T, addr, prefix string) *RedisStore {
	t.Helper()
	s, err := OpenRedisStore(t.Context(), WithRedisAddr(addr), WithRedisPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	a := openRedisStoreT(t, srv.Addr, "ps")
	b := openRedisStoreT(t, srv.Addr, "ps") // another node's store on the same server
	other := openRedisStoreT(t, srv.Addr, "other")
	if a.ID() != b.ID() || a.ID() == other.ID() {
		t.Fatalf("store ids: same prefix %v %v, other prefix %v", a.ID(), b.ID(), other.ID())
	}

	data := []byte("a payload that crosses nodes")
	p, err := a.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if Kind(p.Kind) != KindRedis || p.Length != uint64(len(data)) {
		t.Fatalf("proxy %v", p)
	}
	for range 2 { // owned: resolves until freed
		if got := resolveCopy(t, b, p); !bytes.Equal(got, data) {
			t.Fatalf("resolved %q", got)
		}
	}
	if _, err := other.Resolve(ctx, p); !errors.Is(err, ErrForeignProxy) {
		t.Fatalf("resolve in another prefix's store: %v", err)
	}
	if err := b.Free(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resolve(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("resolve after Free: %v", err)
	}
	if err := a.Free(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("second Free: %v", err)
	}

	// Single use: the first release evicts.
	p, err = a.Put(ctx, data, WithSingleUse())
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Resolve(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Release(); err != nil {
		t.Fatal(err)
	}
	if err := v.Release(); !errors.Is(err, ErrReleased) {
		t.Fatalf("second Release: %v", err)
	}
	if !bytes.Equal(v.Bytes(), data) {
		t.Fatal("a released view's bytes changed")
	}
	if _, err := b.Resolve(ctx, p); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("resolve of a used single-use payload: %v", err)
	}

	// Leased: expired after the deadline.
	p, err = a.Put(ctx, data, WithLease(time.Now().Add(50*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	resolveCopy(t, b, p)
	time.Sleep(100 * time.Millisecond)
	if _, err := b.Resolve(ctx, p); !errors.Is(err, ErrExpired) {
		t.Fatalf("resolve after the lease: %v", err)
	}

	// Alloc: a loan, committed once.
	l, err := a.Alloc(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	copy(l.Bytes(), "abc")
	p, err = l.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(); !errors.Is(err, ErrReleased) {
		t.Fatalf("second Commit: %v", err)
	}
	if got := resolveCopy(t, b, p); string(got) != "abc" {
		t.Fatalf("resolved %q", got)
	}

	// Bad proxies and values.
	bad := p
	bad.Offset = 8
	if _, err := a.Resolve(ctx, bad); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("proxy with an offset: %v", err)
	}
	bad = p
	bad.Length++
	if _, err := a.Resolve(ctx, bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("proxy with the wrong length: %v", err)
	}
	if err := a.cl.Set(ctx, a.key(p.Segment), "not a payload", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resolve(ctx, p); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered value: %v", err)
	}
	if _, err := a.Alloc(ctx, DefaultRedisMaxPayload+1); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("oversized Alloc: %v", err)
	}

	// Redis gone: a clear error, within the context.
	srv.Kill()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.Put(c, data); !errors.Is(err, ErrStoreUnreachable) {
		t.Fatalf("Put with Redis killed: %v", err)
	}
	if _, err := a.Resolve(c, p); !errors.Is(err, ErrStoreUnreachable) {
		t.Fatalf("Resolve with Redis killed: %v", err)
	}
	a.Close()
	if _, err := a.Put(ctx, data); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
}

// TestRedisStoreLarge: a 64 MiB payload through Redis between two stores.
func TestRedisStoreLarge(t *testing.T) {
	srv := redistest.Start(t)
	a := openRedisStoreT(t, srv.Addr, "big")
	b := openRedisStoreT(t, srv.Addr, "big")
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 31)
	}
	p, err := a.Put(t.Context(), data, WithSingleUse())
	if err != nil {
		t.Fatal(err)
	}
	if got := resolveCopy(t, b, p); !bytes.Equal(got, data) {
		t.Fatal("64 MiB payload changed on its way through Redis")
	}
}

// locatorFunc is a Locator from a function.
type locatorFunc func(exchange.EntityID) (bool, error)

func (f locatorFunc) SameNode(_ context.Context, id exchange.EntityID) (bool, error) { return f(id) }

func TestRouteStore(t *testing.T) {
	ctx := t.Context()
	local, shared := NewMemStore(), NewMemStore()
	near, far := exchange.NewAgentID(), exchange.NewAgentID()
	r := NewRouteStore(local, shared, locatorFunc(func(id exchange.EntityID) (bool, error) {
		if id == near {
			return true, nil
		}
		if id == far {
			return false, nil
		}
		return false, exchange.ErrBadEntityID
	}))
	p, err := r.PutFor(ctx, near, []byte("near"))
	if err != nil || StoreID(p.Store) != local.ID() {
		t.Fatalf("PutFor a same-node entity: %v, %v", p, err)
	}
	if got := resolveCopy(t, r, p); string(got) != "near" {
		t.Fatalf("resolved %q", got)
	}
	p, err = r.PutFor(ctx, far, []byte("far"))
	if err != nil || StoreID(p.Store) != shared.ID() {
		t.Fatalf("PutFor another node's entity: %v, %v", p, err)
	}
	if err := r.Free(ctx, p); err != nil {
		t.Fatal(err)
	}
	l, err := r.AllocFor(ctx, far, 2)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = l.Commit(); err != nil || StoreID(p.Store) != shared.ID() {
		t.Fatalf("AllocFor another node's entity: %v, %v", p, err)
	}
	if p, err = r.Put(ctx, []byte("anywhere")); err != nil || StoreID(p.Store) != shared.ID() {
		t.Fatalf("Put without a destination: %v, %v", p, err)
	}
	if _, err := r.PutFor(ctx, exchange.NewAgentID(), []byte("nobody")); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("PutFor an unknown entity: %v", err)
	}
	// A proxy into another node's arena: refused, saying why.
	foreign := Proxy{Store: NewStoreID(), Kind: uint8(KindArena), Segment: 1, Length: 10, Generation: 1}
	_, err = r.Resolve(ctx, foreign)
	if !errors.Is(err, ErrForeignProxy) || !strings.Contains(err.Error(), "arena of another node") {
		t.Fatalf("resolve of another node's arena proxy: %v", err)
	}
}

// FuzzRedisValue: a value read from Redis never makes the parser panic or
// return a payload that disagrees with the proxy.
func FuzzRedisValue(f *testing.F) {
	good := func(life Lifetime, data []byte, dl int64) []byte {
		b := make([]byte, redisHeaderSize, redisHeaderSize+len(data))
		copy(b, redisMagic)
		b[8] = byte(life)
		binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(data, redisCRC))
		binary.LittleEndian.PutUint64(b[16:], uint64(len(data)))
		binary.LittleEndian.PutUint64(b[24:], uint64(dl))
		return append(b, data...)
	}
	f.Add(good(Owned, []byte("payload"), 0), uint64(7))
	f.Add(good(Leased, []byte("x"), time.Now().UnixNano()), uint64(1))
	f.Add([]byte("SHMXRED1"), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, length uint64) {
		p := Proxy{Kind: uint8(KindRedis), Segment: 1, Length: length, Generation: 1}
		data, life, _, err := parseRedisValue(b, p)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if uint64(len(data)) != length || life > Leased || len(b) != redisHeaderSize+len(data) {
			t.Fatalf("accepted %d bytes for length %d, lifetime %d", len(data), length, life)
		}
		if !bytes.Equal(data, b[redisHeaderSize:]) || crc32.Checksum(data, redisCRC) != binary.LittleEndian.Uint32(b[12:]) {
			t.Fatal("the payload is not the value's bytes after the header, or not the checksummed ones")
		}
	})
}
