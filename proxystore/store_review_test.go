package proxystore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// reviewStores returns one store of each implementation, closed at the end
// of the test.
func reviewStores(t *testing.T) map[string]Store {
	t.Helper()
	mem := NewMemStore()
	t.Cleanup(func() { mem.Close() })
	return map[string]Store{
		"memory": mem,
		"file":   openFS(t, filepath.Join(t.TempDir(), "fs")),
		"arena":  openArena(t, arenaDir(t)),
	}
}

// TestStoresRefuseBadPutOptions: every store checks the put options alike,
// in Put and in Alloc, and allocates nothing for a refused payload.
func TestStoresRefuseBadPutOptions(t *testing.T) {
	ctx := context.Background()
	for name, s := range reviewStores(t) {
		for what, opt := range map[string]PutOption{
			"lease without deadline": WithLifetime(Leased),
			"unknown lifetime":       WithLifetime(Leased + 1),
		} {
			if _, err := s.Put(ctx, []byte("x"), opt); err == nil {
				t.Errorf("%s: Put with %s succeeded", name, what)
			}
			if l, err := s.Alloc(ctx, 1, opt); err == nil {
				l.Abort()
				t.Errorf("%s: Alloc with %s succeeded", name, what)
			}
		}
	}
}

// TestStoresFreeWrongLength: Free of a proxy that names a payload with the
// right generation but a wrong length is ErrBadProxy in every store, and the
// payload stays resolvable by its real proxy (the arena freed it).
func TestStoresFreeWrongLength(t *testing.T) {
	ctx := context.Background()
	for name, s := range reviewStores(t) {
		p, err := s.Put(ctx, []byte("payload"))
		if err != nil {
			t.Fatal(err)
		}
		bad := p
		bad.Length--
		if err := s.Free(ctx, bad); !errors.Is(err, ErrBadProxy) {
			t.Errorf("%s: Free of a wrong-length proxy: %v, want ErrBadProxy", name, err)
		}
		v, err := s.Resolve(ctx, p)
		if err != nil {
			t.Errorf("%s: resolve after a refused Free: %v", name, err)
			continue
		}
		if string(v.Bytes()) != "payload" {
			t.Errorf("%s: got %q", name, v.Bytes())
		}
		v.Release()
		if err := s.Free(ctx, p); err != nil {
			t.Errorf("%s: Free: %v", name, err)
		}
	}
}
