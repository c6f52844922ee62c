package exchange

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// Codec limits. Decoding checks every size from the wire against these
// limits and against the bytes that remain before it copies anything, so a
// hostile length can neither make the decoder read out of bounds nor make
// it allocate more than the limit.
const (
	// MaxTextSize is the largest Text field (action name, error kind, error
	// message) in bytes. [Message.SetError] truncates longer error messages.
	MaxTextSize = 64 << 10
	// MaxPayloadSize is the largest Payload field (action arguments or
	// result) in bytes. Implementations may accept less (a shared-memory
	// ring accepts records up to a fraction of its size) and report
	// [ErrMessageTooLarge]. Larger data belongs in a proxy store.
	MaxPayloadSize = 16 << 20
	// MaxMessageSize is the largest encoding of a valid Message.
	MaxMessageSize = fixedEncodedSize + 3*(5+MaxTextSize) + 2*(5+MaxPayloadSize)

	// fixedEncodedSize is the encoded size of a Message minus its Text and
	// Payload fields (headers included) when Kind and the roles are below
	// 128: array header, kind, tag, src, dest, label, terminate.
	fixedEncodedSize = 1 + 1 + 18 + 20 + 20 + 18 + 1
)

// largePayloadHint ends the errors about a payload too large to travel in
// a message: what to do instead.
const largePayloadHint = "send larger payloads as proxies, through proxystore.Wrap (any []byte) or as a proxystore.Blob"

var (
	errTextTooLarge    = fmt.Errorf("%w: text field longer than %d bytes", ErrMessageTooLarge, MaxTextSize)
	errPayloadTooLarge = fmt.Errorf("%w: payload longer than %d bytes: %s", ErrMessageTooLarge, MaxPayloadSize, largePayloadHint)
)

// Text is a short string (an action name, an error kind or message) held in
// a byte slice so that decoding into a reused [Message] reuses its capacity
// instead of allocating a string. On the wire it is a MessagePack str; nil is
// read as empty. Convert with string(t) (free in comparisons and map look-ups)
// and set with append(t[:0], s...) or [Message.SetAction].
type Text []byte

// Payload is an opaque byte string, by convention MessagePack bytes (action
// arguments and results), held in a byte slice that decoding into a reused
// [Message] reuses. On the wire it is a MessagePack bin; nil is read as
// empty. The exchange never looks inside.
type Payload []byte

// grow returns b resized to n bytes, reusing its capacity when it can.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// strHeaderSize is the size of the MessagePack str header for n bytes.
func strHeaderSize(n int) int {
	switch {
	case n <= 31:
		return 1
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	}
	return 5
}

// binHeaderSize is the size of the MessagePack bin header for n bytes.
func binHeaderSize(n int) int {
	switch {
	case n <= 0xff:
		return 2
	case n <= 0xffff:
		return 3
	}
	return 5
}

// uintSize is the size of the MessagePack encoding of a small unsigned
// integer.
func uintSize(v uint8) int {
	if v < 0x80 {
		return 1
	}
	return 2
}

// Msgsize returns the exact encoded size of t.
func (t Text) Msgsize() int { return strHeaderSize(len(t)) + len(t) }

// MarshalMsg appends t as a MessagePack str. It fails with
// [ErrMessageTooLarge] when t is longer than [MaxTextSize].
func (t Text) MarshalMsg(b []byte) ([]byte, error) {
	if len(t) <= 31 { // fast path: a fixstr, as msgp writes it
		return append(append(b, 0xa0|byte(len(t))), t...), nil
	}
	if len(t) > MaxTextSize {
		return b, errTextTooLarge
	}
	return msgp.AppendStringFromBytes(b, t), nil
}

// UnmarshalMsg reads a MessagePack str (or nil) into t, reusing t's
// capacity, and returns the remaining bytes.
func (t *Text) UnmarshalMsg(b []byte) ([]byte, error) {
	// Fast path: a fixstr (up to 31 bytes), the form of every action name.
	if len(b) > 0 && b[0]&0xe0 == 0xa0 {
		if n := int(b[0] & 0x1f); len(b) > n {
			t.set(b[1 : 1+n])
			return b[1+n:], nil
		}
	}
	if msgp.IsNil(b) {
		*t = (*t)[:0]
		return b[1:], nil
	}
	v, o, err := msgp.ReadStringZC(b) // checks the length against len(b)
	if err != nil {
		return b, err
	}
	if len(v) > MaxTextSize {
		return b, errTextTooLarge
	}
	t.set(v)
	return o, nil
}

// set makes t a copy of v, reusing t's capacity. An empty v, the common
// case of the error fields, costs a comparison: t is stored only when its
// length changes (a store of a slice into a Message on the heap passes
// the write barrier).
func (t *Text) set(v []byte) {
	if len(v) == 0 {
		if len(*t) != 0 {
			*t = (*t)[:0]
		}
		return
	}
	*t = append((*t)[:0], v...)
}

// EncodeMsg writes t as a MessagePack str.
func (t Text) EncodeMsg(w *msgp.Writer) error {
	if len(t) > MaxTextSize {
		return errTextTooLarge
	}
	return w.WriteStringFromBytes(t)
}

// DecodeMsg reads a MessagePack str (or nil) into t, reusing t's capacity.
func (t *Text) DecodeMsg(r *msgp.Reader) error {
	if r.IsNil() {
		*t = (*t)[:0]
		return r.ReadNil()
	}
	n, err := r.ReadStringHeader()
	if err != nil {
		return err
	}
	if n > MaxTextSize {
		return errTextTooLarge
	}
	*t = grow(*t, int(n))
	_, err = r.ReadFull(*t)
	return err
}

// Msgsize returns the exact encoded size of p.
func (p Payload) Msgsize() int { return binHeaderSize(len(p)) + len(p) }

// MarshalMsg appends p as a MessagePack bin. It fails with
// [ErrMessageTooLarge] when p is longer than [MaxPayloadSize].
func (p Payload) MarshalMsg(b []byte) ([]byte, error) {
	if len(p) <= 0xff { // fast path: a bin8, as msgp writes it
		return append(append(b, 0xc4, byte(len(p))), p...), nil
	}
	if len(p) > MaxPayloadSize {
		return b, errPayloadTooLarge
	}
	return msgp.AppendBytes(b, p), nil
}

// UnmarshalMsg reads a MessagePack bin (or nil) into p, reusing p's
// capacity, and returns the remaining bytes.
func (p *Payload) UnmarshalMsg(b []byte) ([]byte, error) {
	// Fast path: a bin8 (up to 255 bytes).
	if len(b) > 1 && b[0] == 0xc4 {
		if n := int(b[1]); len(b) >= 2+n {
			p.set(b[2 : 2+n])
			return b[2+n:], nil
		}
	}
	if msgp.IsNil(b) {
		*p = (*p)[:0]
		return b[1:], nil
	}
	v, o, err := msgp.ReadBytesZC(b) // checks the length against len(b)
	if err != nil {
		return b, err
	}
	if len(v) > MaxPayloadSize {
		return b, errPayloadTooLarge
	}
	p.set(v)
	return o, nil
}

// set makes p a copy of v, reusing p's capacity (see Text.set).
func (p *Payload) set(v []byte) {
	if len(v) == 0 {
		if len(*p) != 0 {
			*p = (*p)[:0]
		}
		return
	}
	*p = append((*p)[:0], v...)
}

// EncodeMsg writes p as a MessagePack bin.
func (p Payload) EncodeMsg(w *msgp.Writer) error {
	if len(p) > MaxPayloadSize {
		return errPayloadTooLarge
	}
	return w.WriteBytes(p)
}

// DecodeMsg reads a MessagePack bin (or nil) into p, reusing p's capacity.
func (p *Payload) DecodeMsg(r *msgp.Reader) error {
	if r.IsNil() {
		*p = (*p)[:0]
		return r.ReadNil()
	}
	n, err := r.ReadBytesHeader()
	if err != nil {
		return err
	}
	if n > MaxPayloadSize {
		return errPayloadTooLarge
	}
	*p = grow(*p, int(n))
	_, err = r.ReadFull(*p)
	return err
}

// Msgsize returns the exact encoded size of a UUID: a bin of 16 bytes.
func (u *UUID) Msgsize() int { return 2 + len(u) }

// MarshalMsg appends u as a MessagePack bin of 16 bytes.
func (u *UUID) MarshalMsg(b []byte) ([]byte, error) {
	return append(append(b, 0xc4, byte(len(u))), u[:]...), nil // bin8 header, as msgp.AppendBytes writes it
}

// UnmarshalMsg reads a MessagePack bin of exactly 16 bytes into u.
func (u *UUID) UnmarshalMsg(b []byte) ([]byte, error) {
	// Fast path: the bin8 form MarshalMsg writes.
	if len(b) >= 2+len(u) && b[0] == 0xc4 && int(b[1]) == len(u) {
		*u = UUID(b[2 : 2+len(u)])
		return b[2+len(u):], nil
	}
	// msgp.ReadExactBytes checks the declared length but copies short
	// input silently: check the remaining bytes first.
	if len(b) < 2+len(u) {
		return b, msgp.ErrShortBytes
	}
	return msgp.ReadExactBytes(b, u[:])
}

// EncodeMsg writes u as a MessagePack bin of 16 bytes.
func (u *UUID) EncodeMsg(w *msgp.Writer) error { return w.WriteBytes(u[:]) }

// DecodeMsg reads a MessagePack bin of exactly 16 bytes into u.
func (u *UUID) DecodeMsg(r *msgp.Reader) error { return r.ReadExactBytes(u[:]) }

// Msgsize returns the exact encoded size of r.
func (r Role) Msgsize() int { return uintSize(uint8(r)) }

// MarshalMsg appends r as a MessagePack unsigned integer.
func (r Role) MarshalMsg(b []byte) ([]byte, error) {
	if r < 0x80 { // fast path: a positive fixint, as msgp writes it
		return append(b, byte(r)), nil
	}
	return msgp.AppendUint8(b, uint8(r)), nil
}

// UnmarshalMsg reads a MessagePack integer in 0..255 into r. It does not
// check that r is valid; [Message.Validate] does.
func (r *Role) UnmarshalMsg(b []byte) ([]byte, error) {
	if len(b) > 0 && b[0] < 0x80 { // fast path: a positive fixint
		*r = Role(b[0])
		return b[1:], nil
	}
	v, o, err := msgp.ReadUint8Bytes(b)
	if err != nil {
		return b, err
	}
	*r = Role(v)
	return o, nil
}

// EncodeMsg writes r as a MessagePack unsigned integer.
func (r Role) EncodeMsg(w *msgp.Writer) error { return w.WriteUint8(uint8(r)) }

// DecodeMsg reads a MessagePack integer in 0..255 into r.
func (r *Role) DecodeMsg(rd *msgp.Reader) error {
	v, err := rd.ReadUint8()
	if err != nil {
		return err
	}
	*r = Role(v)
	return nil
}

// Msgsize returns the exact encoded size of k.
func (k Kind) Msgsize() int { return uintSize(uint8(k)) }

// MarshalMsg appends k as a MessagePack unsigned integer.
func (k Kind) MarshalMsg(b []byte) ([]byte, error) {
	if k < 0x80 { // fast path: a positive fixint, as msgp writes it
		return append(b, byte(k)), nil
	}
	return msgp.AppendUint8(b, uint8(k)), nil
}

// UnmarshalMsg reads a MessagePack integer in 0..255 into k. It does not
// check that k is valid; [Message.Validate] does.
func (k *Kind) UnmarshalMsg(b []byte) ([]byte, error) {
	if len(b) > 0 && b[0] < 0x80 { // fast path: a positive fixint
		*k = Kind(b[0])
		return b[1:], nil
	}
	v, o, err := msgp.ReadUint8Bytes(b)
	if err != nil {
		return b, err
	}
	*k = Kind(v)
	return o, nil
}

// EncodeMsg writes k as a MessagePack unsigned integer.
func (k Kind) EncodeMsg(w *msgp.Writer) error { return w.WriteUint8(uint8(k)) }

// DecodeMsg reads a MessagePack integer in 0..255 into k.
func (k *Kind) DecodeMsg(r *msgp.Reader) error {
	v, err := r.ReadUint8()
	if err != nil {
		return err
	}
	*k = Kind(v)
	return nil
}
