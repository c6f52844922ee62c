package proxystore

import (
	"bytes"
	"testing"
	"time"
)

func TestMemStore(t *testing.T) {
	ctx := t.Context()
	s := NewMemStore()
	data := []byte("in-process payload")
	p, err := s.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := resolveBytes(t, s, p); !bytes.Equal(got, data) {
		t.Fatalf("resolved %q", got)
	}
	other := NewMemStore()
	_, err = other.Resolve(ctx, p)
	wantIs(t, "foreign", err, ErrForeignProxy)
	q := p
	q.Length++
	_, err = s.Resolve(ctx, q)
	wantIs(t, "length", err, ErrBadProxy)
	q = p
	q.Generation++
	_, err = s.Resolve(ctx, q)
	wantIs(t, "generation", err, ErrStaleProxy)

	// Lifetimes.
	single, _ := s.Put(ctx, data, WithSingleUse())
	v1, _ := s.Resolve(ctx, single)
	v2, err := s.Resolve(ctx, single)
	if err != nil {
		t.Fatal(err)
	}
	v1.Release()
	_, err = s.Resolve(ctx, single)
	wantIs(t, "single use after release", err, ErrStaleProxy)
	if !bytes.Equal(v2.Bytes(), data) {
		t.Fatal("view changed")
	}
	wantIs(t, "release twice", v1.Release(), ErrReleased)
	expired, _ := s.Put(ctx, data, WithLease(time.Now().Add(-time.Second)))
	_, err = s.Resolve(ctx, expired)
	wantIs(t, "expired", err, ErrExpired)
	if _, err := s.Put(ctx, data, WithLifetime(Leased)); err == nil {
		t.Fatal("lease without deadline")
	}
	if err := s.Free(ctx, p); err != nil {
		t.Fatal(err)
	}
	wantIs(t, "free twice", s.Free(ctx, p), ErrStaleProxy)

	// Loans.
	l, _ := s.Alloc(ctx, 3)
	copy(l.Bytes(), "abc")
	lp, err := l.Commit()
	if err != nil {
		t.Fatal(err)
	}
	wantIs(t, "abort after commit", l.Abort(), ErrReleased)
	if got := resolveBytes(t, s, lp); string(got) != "abc" {
		t.Fatalf("loan resolved to %q", got)
	}
	l, _ = s.Alloc(ctx, 3)
	s.Close()
	_, err = l.Commit()
	wantIs(t, "commit after close", err, ErrClosed)
	_, err = s.Put(ctx, data)
	wantIs(t, "put after close", err, ErrClosed)
	_, err = s.Resolve(ctx, lp)
	wantIs(t, "resolve after close", err, ErrClosed)
}
