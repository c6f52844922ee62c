package redisx

import (
	"errors"
	"slices"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// FuzzUnpackBehavior: a behavior record read from Redis (anyone may have
// written it) decodes or fails with ErrProtocol, never panics, and what
// packBehavior writes comes back unchanged.
func FuzzUnpackBehavior(f *testing.F) {
	f.Add(packBehavior(exchange.Behavior{Name: "Counter", Implements: []string{"Agent", "Base"}}))
	f.Add(packBehavior(exchange.Behavior{Name: "x"}))
	f.Add("\x91")
	f.Add("\xdd\xff\xff\xff\xff")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := unpackBehavior(s)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		if len(b.Implements) > maxImpl {
			t.Fatalf("%d implemented behaviors", len(b.Implements))
		}
		again, err := unpackBehavior(packBehavior(b))
		if err != nil || again.Name != b.Name || !slices.Equal(again.Implements, b.Implements) {
			t.Fatalf("round trip of %+v: %+v, %v", b, again, err)
		}
	})
}

// FuzzParseHexID: UUIDs in keys and script replies: ErrProtocol, or the
// UUID whose key form (hexID, lower case) is exactly the text: an
// upper-case form is another Redis key.
func FuzzParseHexID(f *testing.F) {
	f.Add(hexID(exchange.NewUUID()))
	f.Add("zz")
	f.Add("0123456789ABCDEF0123456789abcdef")
	f.Fuzz(func(t *testing.T, h string) {
		u, err := parseHexID(h)
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("parseHexID(%q): %v is not ErrProtocol", h, err)
		}
		if err == nil && hexID(u) != h {
			t.Fatalf("parseHexID(%q) = %v", h, u)
		}
	})
}
