package proxystore

import (
	"context"
	"errors"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func TestAllocBytes(t *testing.T) {
	ctx := context.Background()
	s := NewMemStore()
	defer s.Close()
	for _, n := range []int{0, 1, 100, 70000} {
		l, err := AllocBytes(ctx, s, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Bytes()) != n {
			t.Fatalf("loan of %d bytes has %d", n, len(l.Bytes()))
		}
		for i := range l.Bytes() {
			l.Bytes()[i] = byte(i)
		}
		p, err := l.Commit()
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.Resolve(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		// The stored payload is the MessagePack encoding of a []byte.
		dec, rest, err := msgp.ReadBytesBytes(v.Bytes(), nil)
		if err != nil || len(rest) != 0 || len(dec) != n {
			t.Fatalf("stored payload decodes to %d bytes, %d left, %v", len(dec), len(rest), err)
		}
		b, err := BytesOf(v)
		if err != nil || len(b) != n || n > 0 && b[n-1] != byte(n-1) {
			t.Fatalf("BytesOf = %d bytes, %v", len(b), err)
		}
		v.Release()
	}
	l, err := AllocBytes(ctx, s, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := AllocBytes(ctx, s, -1); err == nil {
		t.Fatal("AllocBytes(-1): no error")
	}
	p, err := s.Put(ctx, []byte{0x01, 0x02})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Resolve(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	if _, err := BytesOf(v); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("BytesOf of a non-bin payload: %v", err)
	}
}
