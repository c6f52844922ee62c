package agent_test

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/shmex/shmex/agent"
)

// Celsius is a named type over a basic one.
type Celsius float64

// Tags is a named slice type.
type Tags []string

func deepEq[T any](a, b T) bool { return reflect.DeepEqual(a, b) }

// TestCompositeCodecs: the types codegen accepts round-trip through
// CodecFor, and peers in other languages read them as plain MessagePack.
func TestCompositeCodecs(t *testing.T) {
	roundTrip(t, Celsius(-40.5), eq)
	roundTrip(t, []float64{1, 2.5, -3}, slices.Equal)
	roundTrip(t, Tags{"a", "b"}, deepEq)
	roundTrip(t, []string{}, deepEq)
	roundTrip(t, [][]byte{[]byte("x"), {}}, deepEq)
	roundTrip(t, [][]int{{1}, {2, 3}}, deepEq)
	roundTrip(t, map[string]int{"a": 1, "b": -2}, maps.Equal)
	roundTrip(t, map[int64]string{7: "seven", -1: "minus one"}, maps.Equal)
	roundTrip(t, map[string][]float64{"v": {1, 2}}, deepEq)
	roundTrip(t, []Pair{{1, 2}, {3, 4}}, slices.Equal)
	roundTrip(t, map[string]Pair{"p": {5, 6}}, maps.Equal)
	roundTrip(t, &Pair{7, 8}, func(a, b *Pair) bool { return *a == *b })
	roundTrip(t, []*Pair{{9, 10}, nil}, func(a, b []*Pair) bool {
		return len(a) == 2 && len(b) == 2 && *a[0] == *b[0] && a[1] == nil && b[1] == nil
	})

	// nil travels as MessagePack nil and comes back nil.
	c, _ := agent.CodecFor[*Pair]()
	b, err := c.Append(nil, nil)
	if err != nil || !msgp.IsNil(b) {
		t.Fatalf("nil *Pair = %x, %v", b, err)
	}
	p := &Pair{1, 1}
	if err := c.Decode(b, &p); err != nil || p != nil {
		t.Fatalf("decode nil into *Pair = %v, %v", p, err)
	}

	// The wire form is plain MessagePack: an array, a map.
	fc, _ := agent.CodecFor[[]float64]()
	b, _ = fc.Append(nil, []float64{1, 2})
	if n, _, err := msgp.ReadArrayHeaderBytes(b); err != nil || n != 2 {
		t.Fatalf("[]float64 wire form %x: %d, %v", b, n, err)
	}

	// An int that does not fit its Go type is an error, not a wrap.
	ic, _ := agent.CodecFor[[]int8]()
	var small []int8
	if err := ic.Decode(msgp.AppendInt64(msgp.AppendArrayHeader(nil, 1), 300), &small); err == nil {
		t.Fatalf("300 decoded into int8: %v", small)
	}
	// A count that the bytes cannot hold is refused before anything is
	// allocated for it.
	var big []float64
	if err := fc.Decode(msgp.AppendArrayHeader(nil, 1<<31), &big); !errors.Is(err, msgp.ErrShortBytes) {
		t.Fatalf("array of 2^31 in 5 bytes: %v", err)
	}
	mc, _ := agent.CodecFor[map[string]int]()
	var m map[string]int
	if err := mc.Decode(msgp.AppendMapHeader(nil, 1<<30), &m); !errors.Is(err, msgp.ErrShortBytes) {
		t.Fatalf("map of 2^30 in 5 bytes: %v", err)
	}
}

// FuzzCompositeCodecs: bytes from another process never panic a composite
// decoder, and what decodes re-encodes to bytes that decode equal.
func FuzzCompositeCodecs(f *testing.F) {
	seed := func(v map[string][]Pair) {
		c, _ := agent.CodecFor[map[string][]Pair]()
		b, _ := c.Append(nil, v)
		f.Add(b)
	}
	seed(map[string][]Pair{"a": {{1, 2}}, "b": nil})
	seed(nil)
	f.Add([]byte{0x81, 0xa1, 'a', 0x92, 0x92, 0x01, 0x02, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _ := agent.CodecFor[map[string][]Pair]()
		var v map[string][]Pair
		if err := c.Decode(b, &v); err != nil {
			return
		}
		again, err := c.Append(nil, v)
		if err != nil {
			t.Fatalf("re-encoding %v: %v", v, err)
		}
		var w map[string][]Pair
		if err := c.Decode(again, &w); err != nil {
			t.Fatalf("decoding the re-encoding of %v: %v", v, err)
		}
		if !reflect.DeepEqual(v, w) {
			t.Fatalf("decoded %v, re-encoded and decoded %v", v, w)
		}
	})
}
