package exchange

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// FuzzDecodeMessage feeds arbitrary bytes to the decoders. They must fail
// or succeed without panicking; what they accept must re-encode to bytes
// that decode to the same message, whatever the Message held before; the
// byte and stream decoders must agree; Decode must accept exactly what
// UnmarshalMsg accepts whole and Validate passes.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := m.MarshalMsg(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	tag := NewTag()
	f.Add(encodeRaw(rawUint(3), rawBin(tag[:]), rawID(testSrc), rawID(testDest), rawBin(make([]byte, 16)),
		rawNil, rawNil, rawNil, rawNil, rawNil, rawBool(false)))
	f.Add([]byte{})
	f.Add([]byte{0x9b})
	f.Add([]byte{0x9b, 0x01, 0xc4, 0x10})

	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		rest, err := m.UnmarshalMsg(data)
		var d Message
		derr := d.Decode(data)
		var s Message
		serr := msgp.Decode(bytes.NewReader(data), &s)
		if err != nil {
			if derr == nil {
				t.Fatalf("Decode accepts what UnmarshalMsg rejects (%v)", err)
			}
			if !errors.Is(derr, ErrBadMessage) {
				t.Fatalf("Decode error %v does not wrap ErrBadMessage", derr)
			}
			if serr == nil {
				t.Fatalf("the stream decoder accepts what UnmarshalMsg rejects (%v): %v", err, &s)
			}
			return
		}
		if serr != nil || !s.Equal(&m) {
			t.Fatalf("stream decoder: %v, %v; byte decoder: %v", &s, serr, &m)
		}
		if wantOK := len(rest) == 0 && m.Validate() == nil; (derr == nil) != wantOK {
			t.Fatalf("Decode = %v; %d trailing bytes, Validate = %v", derr, len(rest), m.Validate())
		}
		if derr == nil && !d.Equal(&m) {
			t.Fatalf("Decode gave %v, UnmarshalMsg %v", &d, &m)
		}

		// Re-encode and decode again.
		enc, err := m.MarshalMsg(nil)
		if err != nil {
			t.Fatalf("re-encoding %v: %v", &m, err)
		}
		if len(enc) != m.EncodedSize() {
			t.Fatalf("EncodedSize %d, encoded %d", m.EncodedSize(), len(enc))
		}
		var m2 Message
		if rest, err := m2.UnmarshalMsg(enc); err != nil || len(rest) != 0 || !m2.Equal(&m) {
			t.Fatalf("decoding the re-encoding: %v, %v, %d trailing; want %v", &m2, err, len(rest), &m)
		}

		// Decoding into a dirty Message gives the same result.
		dirty := NewActionRequest(testDest, testSrc, "stale action name", bytes.Repeat([]byte{0xee}, 300))
		dirty.Result = append(dirty.Result, "stale result"...)
		dirty.SetError(errors.New("stale error"))
		dirty.Label, dirty.Terminate = NewTag(), true
		if _, err := dirty.UnmarshalMsg(data); err != nil || !dirty.Equal(&m) {
			t.Fatalf("decoding into a dirty message: %v, %v; want %v", dirty, err, &m)
		}
	})
}
