package proxystore

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, p := range []Proxy{
		{},
		{Store: NewStoreID(), Kind: uint8(KindArena), Segment: 7, Offset: 4096, Length: 1 << 30, Generation: 3},
		{Store: NewStoreID(), Kind: 255, Segment: math.MaxUint64, Offset: math.MaxUint64, Length: math.MaxUint64, Generation: math.MaxUint64},
	} {
		b := AppendPayload([]byte{1, 2}, p)[2:]
		if len(b) > 3+MaxEncodedProxy {
			t.Fatalf("encoded %d bytes, bound %d", len(b), 3+MaxEncodedProxy)
		}
		if !IsPayload(b) {
			t.Fatalf("IsPayload(%x) = false", b)
		}
		got, err := ParsePayload(b)
		if err != nil || got != p {
			t.Fatalf("ParsePayload = %v, %v; want %v", got, err, p)
		}
		if _, err := ParsePayload(append(b, 0)); !errors.Is(err, ErrBadProxy) {
			t.Fatalf("trailing byte: %v", err)
		}
		for i := range b {
			if _, err := ParsePayload(b[:i]); !errors.Is(err, ErrBadProxy) {
				t.Fatalf("truncated to %d: %v", i, err)
			}
		}
	}
	for _, b := range [][]byte{nil, {0x90}, {0xc4, 0}, {0xd4, 81, 0}, {0xc9, 0, 0, 0, 1, 80, 0}} {
		if IsPayload(b) {
			t.Fatalf("IsPayload(%x) = true", b)
		}
	}
}

func FuzzParsePayload(f *testing.F) {
	f.Add(AppendPayload(nil, Proxy{Kind: 1, Length: 10}))
	f.Add([]byte{0xd8, 80})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePayload(b)
		if err != nil {
			if !errors.Is(err, ErrBadProxy) {
				t.Fatalf("error %v is not ErrBadProxy", err)
			}
			return
		}
		if q, err := ParsePayload(AppendPayload(nil, p)); err != nil || q != p {
			t.Fatalf("re-encode: %v %v", q, err)
		}
	})
}

func TestPayloadCodec(t *testing.T) {
	p := Proxy{Store: NewStoreID(), Kind: uint8(KindArena), Segment: 1, Offset: 1024, Length: 7, Generation: 9}
	var c PayloadCodec
	b, err := c.Append([]byte("x"), p)
	if err != nil || !IsPayload(b[1:]) {
		t.Fatalf("Append = %x, %v", b, err)
	}
	var q Proxy
	if err := c.Decode(b[1:], &q); err != nil || q != p {
		t.Fatalf("Decode = %v, %v", q, err)
	}
	if err := c.Decode([]byte{0xc0}, &q); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("Decode(nil) = %v", err)
	}
}

// TestNotAProxyExplains: a plain value where a proxy was expected says
// what came and how to make the sender send a proxy.
func TestNotAProxyExplains(t *testing.T) {
	for _, b := range [][]byte{nil, {0x05}, {0xc4, 1, 'x'}, {0x92, 1, 2}} {
		_, err := ParsePayload(b)
		if !errors.Is(err, ErrBadProxy) || !strings.Contains(err.Error(), "expected a proxy") ||
			!strings.Contains(err.Error(), "proxystore.Wrap") || !strings.Contains(err.Error(), "proxystore.Blob") {
			t.Errorf("ParsePayload(% x): %v", b, err)
		}
	}
}
