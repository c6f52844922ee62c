package exchange_test

import (
	"bytes"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/tinylib/msgp/msgp"
)

// FuzzWireFastPaths checks the fast paths of the hand-written field codecs
// (fixint, fixstr, bin8) against msgp's general readers: on every input,
// the same value, the same remaining bytes, and an error exactly when msgp
// reports one (or a limit is exceeded).
func FuzzWireFastPaths(f *testing.F) {
	var u exchange.UUID
	for i := range u {
		u[i] = byte(i)
	}
	ub, _ := u.MarshalMsg(nil)
	f.Add(ub)
	f.Add([]byte{0x03, 0xa4, 'w', 'o', 'r', 'k'})
	f.Add([]byte{0xa4, 'w', 'o'})
	f.Add(msgp.AppendBytes(nil, make([]byte, 64)))
	f.Add([]byte{0xc4, 0x10, 1, 2})
	f.Add([]byte{0xcc, 0x90})
	f.Add([]byte{0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)

		// UUID: a bin of exactly 16 bytes.
		var got exchange.UUID
		rest, err := got.UnmarshalMsg(b)
		var want exchange.UUID
		wrest, werr := []byte(nil), error(nil)
		if len(b) < 18 {
			werr = msgp.ErrShortBytes
		} else {
			wrest, werr = msgp.ReadExactBytes(b, want[:])
		}
		if (err == nil) != (werr == nil) || err == nil && (got != want || !bytes.Equal(rest, wrest)) {
			t.Fatalf("UUID of % x: %v %x % x, msgp: %v %x % x", b, err, got, rest, werr, want, wrest)
		}

		// Kind and Role: an integer in 0..255.
		var k exchange.Kind
		rest, err = k.UnmarshalMsg(b)
		v, wrest, werr := msgp.ReadUint8Bytes(b)
		if (err == nil) != (werr == nil) || err == nil && (uint8(k) != v || !bytes.Equal(rest, wrest)) {
			t.Fatalf("Kind of % x: %v %d, msgp: %v %d", b, err, k, werr, v)
		}
		var r exchange.Role
		rest, err = r.UnmarshalMsg(b)
		if (err == nil) != (werr == nil) || err == nil && (uint8(r) != v || !bytes.Equal(rest, wrest)) {
			t.Fatalf("Role of % x: %v %d, msgp: %v %d", b, err, r, werr, v)
		}

		// Text: a str or nil.
		var txt exchange.Text
		rest, err = txt.UnmarshalMsg(b)
		var ws []byte
		if msgp.IsNil(b) {
			ws, wrest, werr = nil, b[1:], nil
		} else {
			ws, wrest, werr = msgp.ReadStringZC(b)
			if werr == nil && len(ws) > exchange.MaxTextSize {
				werr = msgp.ErrShortBytes // any error: over the limit
			}
		}
		if (err == nil) != (werr == nil) || err == nil && (!bytes.Equal(txt, ws) || !bytes.Equal(rest, wrest)) {
			t.Fatalf("Text of % x: %v %q, msgp: %v %q", b, err, txt, werr, ws)
		}

		// Payload: a bin or nil.
		var p exchange.Payload
		rest, err = p.UnmarshalMsg(b)
		if msgp.IsNil(b) {
			ws, wrest, werr = nil, b[1:], nil
		} else {
			ws, wrest, werr = msgp.ReadBytesZC(b)
			if werr == nil && len(ws) > exchange.MaxPayloadSize {
				werr = msgp.ErrShortBytes
			}
		}
		if (err == nil) != (werr == nil) || err == nil && (!bytes.Equal(p, ws) || !bytes.Equal(rest, wrest)) {
			t.Fatalf("Payload of % x: %v % x, msgp: %v % x", b, err, p, werr, ws)
		}
		// The encoders' fast paths write what msgp writes: b as a Text,
		// as a Payload, and its first byte as a Kind and a Role.
		if len(b) <= exchange.MaxTextSize {
			got, err := exchange.Text(b).MarshalMsg([]byte{0x90})
			if want := msgp.AppendStringFromBytes([]byte{0x90}, b); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Text(% x).MarshalMsg = % x, %v; msgp = % x", b, got, err, want)
			}
		}
		enc, err := exchange.Payload(b).MarshalMsg([]byte{0x90})
		if want := msgp.AppendBytes([]byte{0x90}, b); err != nil || !bytes.Equal(enc, want) {
			t.Fatalf("Payload(% x).MarshalMsg = % x, %v; msgp = % x", b, enc, err, want)
		}
		if len(b) > 0 {
			want := msgp.AppendUint8([]byte{0x90}, b[0])
			if got, err := exchange.Kind(b[0]).MarshalMsg([]byte{0x90}); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Kind(%d).MarshalMsg = % x, %v; msgp = % x", b[0], got, err, want)
			}
			if got, err := exchange.Role(b[0]).MarshalMsg([]byte{0x90}); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Role(%d).MarshalMsg = % x, %v; msgp = % x", b[0], got, err, want)
			}
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("input modified")
		}
	})
}

// TestUUIDMarshalMatchesMsgp: the UUID encoder writes what
// msgp.AppendBytes writes.
func TestUUIDMarshalMatchesMsgp(t *testing.T) {
	u := exchange.NewUUID()
	got, err := u.MarshalMsg([]byte{0x90})
	if want := msgp.AppendBytes([]byte{0x90}, u[:]); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("MarshalMsg = % x, %v; msgp.AppendBytes = % x", got, err, want)
	}
}
