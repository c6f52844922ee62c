package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

var (
	testSrc  = EntityID{UUID: UUID{1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16}, Role: RoleClient}
	testDest = EntityID{UUID: UUID{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0x47, 0xa8, 0x89, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0}, Role: RoleAgent}
)

// sampleMessages returns valid messages of every kind, with every field the
// kind allows set in some of them.
func sampleMessages() []*Message {
	label := UUID{0xee, 1, 2, 3, 4, 5, 0x46, 7, 0x88, 9, 10, 11, 12, 13, 14, 15}
	args := make([]byte, 64)
	for i := range args {
		args[i] = byte(i)
	}
	req := NewActionRequest(testSrc, testDest, "compute", args)
	req.Label = label
	ping := NewPingRequest(testSrc, testDest)
	ping.Label = label
	shut := NewShutdownRequest(testSrc, testDest, true)
	return []*Message{
		req,
		req.Response([]byte{0x92, 0x01, 0xa1, 'x'}),
		req.ErrorResponse(&RemoteError{Kind: "ValueError", Message: "x must be positive"}),
		ping,
		ping.Response(nil),
		ping.ErrorResponse(context.DeadlineExceeded),
		shut,
		NewShutdownRequest(testSrc, testDest, false),
		shut.Response(nil),
		NewActionRequest(testSrc, testDest, "noargs", nil),
		NewActionResponse(testDest, testSrc, NewTag(), nil),
		NewPingResponse(testDest, testSrc, NewTag()),
		NewShutdownResponse(testDest, testSrc, NewTag()),
	}
}

func TestKind(t *testing.T) {
	for k := KindInvalid; k < 10; k++ {
		switch {
		case k == KindInvalid:
			if k.Valid() || k.IsRequest() || k.IsResponse() || k.String() != "Invalid" {
				t.Fatal("KindInvalid")
			}
		case k.Valid():
			if k.IsRequest() == k.IsResponse() || strings.HasPrefix(k.String(), "Kind(") {
				t.Fatalf("kind %d", k)
			}
			if k.IsRequest() && (k.ResponseKind() != k+1 || !k.ResponseKind().IsResponse()) {
				t.Fatalf("%v.ResponseKind() = %v", k, k.ResponseKind())
			}
			if k.IsResponse() && k.ResponseKind() != KindInvalid {
				t.Fatalf("%v.ResponseKind() = %v", k, k.ResponseKind())
			}
		default:
			if k.IsRequest() || k.IsResponse() || k.String() != fmt.Sprintf("Kind(%d)", k) {
				t.Fatalf("kind %d", k)
			}
		}
	}
}

func TestMessageCodecRoundTrip(t *testing.T) {
	var got Message
	for _, m := range sampleMessages() {
		if err := m.Validate(); err != nil {
			t.Fatalf("Validate(%v): %v", m, err)
		}
		b, err := m.MarshalMsg(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != m.EncodedSize() || len(b) != m.Msgsize() {
			t.Fatalf("%v: encoded %d bytes, EncodedSize %d, Msgsize %d", m, len(b), m.EncodedSize(), m.Msgsize())
		}
		// The wire form is plain MessagePack: an array of 11.
		if n, _, err := msgp.ReadArrayHeaderBytes(b); err != nil || n != 11 {
			t.Fatalf("wire form: array of %d, %v", n, err)
		}
		if err := got.Decode(b); err != nil {
			t.Fatalf("Decode(%v): %v", m, err)
		}
		if !got.Equal(m) {
			t.Fatalf("decoded %v, want %v", &got, m)
		}
		// The stream codec agrees with the byte codec.
		var buf bytes.Buffer
		if err := msgp.Encode(&buf, m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), b) {
			t.Fatalf("EncodeMsg and MarshalMsg differ for %v", m)
		}
		var streamed Message
		if err := msgp.Decode(&buf, &streamed); err != nil || !streamed.Equal(m) {
			t.Fatalf("DecodeMsg = %v, %v; want %v", &streamed, err, m)
		}
	}
}

func TestEncodedSizeExact(t *testing.T) {
	textSizes := []int{0, 1, 31, 32, 255, 256, 65535, MaxTextSize}
	payloadSizes := []int{0, 1, 255, 256, 65535, 65536, 70000}
	m := NewActionResponse(testSrc, testDest, NewTag(), nil)
	check := func() {
		t.Helper()
		b, err := m.MarshalMsg(nil)
		if err != nil {
			t.Fatal(err)
		}
		n := m.EncodedSize()
		if len(b) != n {
			t.Fatalf("kind %d, action %d, result %d, error %d/%d: EncodedSize %d, encoded %d",
				m.Kind, len(m.Action), len(m.Result), len(m.ErrorKind), len(m.ErrorMessage), n, len(b))
		}
		// EncodeTo writes exactly there, and nothing past it.
		dst := bytes.Repeat([]byte{0xcc}, n+8)
		w, err := m.EncodeTo(dst)
		if err != nil || w != n || !bytes.Equal(dst[:n], b) || !bytes.Equal(dst[n:], bytes.Repeat([]byte{0xcc}, 8)) {
			t.Fatalf("EncodeTo = %d, %v", w, err)
		}
		if _, err := m.EncodeTo(dst[:n-1]); !errors.Is(err, io.ErrShortBuffer) {
			t.Fatalf("EncodeTo into a short buffer: %v", err)
		}
	}
	for _, ts := range textSizes {
		for _, ps := range payloadSizes {
			m.Action = bytes.Repeat([]byte{'a'}, ts)
			m.Result = make([]byte, ps)
			m.ErrorKind = bytes.Repeat([]byte{'k'}, (ts+1)%MaxTextSize)
			check()
		}
	}
	// Out-of-range kinds and roles encode on two bytes; Msgsize still agrees.
	for _, v := range []uint8{0, 6, 127, 128, 255} {
		m.Kind, m.Src.Role, m.Dest.Role = Kind(v), Role(v), Role(255-v)
		check()
	}
	// Every field at the bounds of EncodedSize's fast path (fixints,
	// fixstrs, bin8s), alone and together, with kinds and roles on
	// either side of theirs.
	for _, v := range []uint8{1, 127, 128} {
		for _, ts := range []int{0, 31, 32} {
			for _, ps := range []int{0, 255, 256} {
				for f := range 5 {
					m.Kind, m.Src.Role, m.Dest.Role = Kind(v), RoleAgent, Role(v)
					m.Action, m.ErrorKind, m.ErrorMessage = m.Action[:0], m.ErrorKind[:0], m.ErrorMessage[:0]
					m.Args, m.Result = m.Args[:0], m.Result[:0]
					text, payload := bytes.Repeat([]byte{'t'}, ts), make([]byte, ps)
					switch f {
					case 0:
						m.Action, m.Args = text, payload
					case 1:
						m.ErrorKind, m.Result = text, payload
					case 2:
						m.ErrorMessage, m.Args = text, payload
					case 3:
						m.Action, m.ErrorKind, m.ErrorMessage, m.Args, m.Result = text, text, text, payload, payload
					case 4:
						m.Src.Role = Role(v)
					}
					check()
				}
			}
		}
	}
}

func TestEncodeLimits(t *testing.T) {
	m := NewActionRequest(testSrc, testDest, "f", nil)
	m.Args = make([]byte, MaxPayloadSize+1)
	if _, err := m.MarshalMsg(nil); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("MarshalMsg of an oversized payload: %v", err)
	}
	if _, err := m.EncodeTo(make([]byte, m.EncodedSize())); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("EncodeTo of an oversized payload: %v", err)
	}
	if err := msgp.Encode(io.Discard, m); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("EncodeMsg of an oversized payload: %v", err)
	}
	m.Args = nil
	m.Action = make([]byte, MaxTextSize+1)
	if _, err := m.MarshalMsg(nil); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("MarshalMsg of an oversized text: %v", err)
	}
	if err := m.Validate(); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Validate of an oversized text: %v", err)
	}
	m.Action = []byte("f")
	if MaxMessageSize < MaxPayloadSize*2 {
		t.Fatalf("MaxMessageSize %d", MaxMessageSize)
	}
}

// encodeRaw builds a message with msgp's primitives, so that tests can make
// encodings that MarshalMsg never produces.
func encodeRaw(fields ...func([]byte) []byte) []byte {
	return encodeRawN(uint32(len(fields)), fields...)
}

// encodeRawN is encodeRaw with an array header of n whatever the fields.
func encodeRawN(n uint32, fields ...func([]byte) []byte) []byte {
	b := msgp.AppendArrayHeader(nil, n)
	for _, f := range fields {
		b = f(b)
	}
	return b
}

func rawID(id EntityID) func([]byte) []byte {
	return func(b []byte) []byte {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendBytes(b, id.UUID[:])
		return msgp.AppendUint8(b, uint8(id.Role))
	}
}

func rawUint(v uint64) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendUint64(b, v) }
}
func rawBin(v []byte) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendBytes(b, v) }
}
func rawStr(v string) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendString(b, v) }
}
func rawNil(b []byte) []byte { return msgp.AppendNil(b) }
func rawBool(v bool) func([]byte) []byte {
	return func(b []byte) []byte { return msgp.AppendBool(b, v) }
}

func TestDecodeForeignEncodings(t *testing.T) {
	tag := NewTag()
	// nil for every text and payload field, an int64-typed kind: what a
	// Python or other encoder may produce.
	b := encodeRaw(func(b []byte) []byte { return msgp.AppendInt64(b, 3) }, rawBin(tag[:]), rawID(testSrc), rawID(testDest),
		rawBin(make([]byte, 16)), rawNil, rawNil, rawNil, rawNil, rawNil, rawBool(false))
	m := NewActionRequest(testDest, testSrc, "stale", []byte("stale")) // dirty: must be overwritten
	m.SetError(errors.New("stale"))
	if err := m.Decode(b); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := &Message{Kind: KindPingRequest, Tag: tag, Src: testSrc, Dest: testDest}
	if !m.Equal(want) {
		t.Fatalf("decoded %v, want %v", m, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, err := NewActionRequest(testSrc, testDest, "f", []byte{1, 2, 3}).MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	// Every truncation fails, and so do trailing bytes.
	for i := range len(valid) {
		if err := m.Decode(valid[:i]); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("Decode of %d of %d bytes: %v", i, len(valid), err)
		}
	}
	if err := m.Decode(append(valid, 0xc0)); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("Decode with a trailing byte: %v", err)
	}

	tag := NewTag()
	good := []func([]byte) []byte{rawUint(1), rawBin(tag[:]), rawID(testSrc), rawID(testDest),
		rawBin(make([]byte, 16)), rawStr("f"), rawBin(nil), rawBin(nil), rawStr(""), rawStr(""), rawBool(false)}
	if err := m.Decode(encodeRaw(good...)); err != nil {
		t.Fatalf("Decode of the good raw message: %v", err)
	}
	with := func(i int, f func([]byte) []byte) []byte {
		fs := append([]func([]byte) []byte(nil), good...)
		fs[i] = f
		return encodeRaw(fs...)
	}
	hugeStr := func(b []byte) []byte { return append(b, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'a') }
	hugeBin := func(b []byte) []byte { return append(b, 0xc6, 0xff, 0xff, 0xff, 0xf0, 'a') }
	cases := map[string][]byte{
		"short array":          encodeRaw(good[:10]...),
		"long array":           encodeRaw(append(good, rawNil)...),
		"map instead of array": msgp.AppendMapHeader(nil, 0),
		"kind 300":             with(0, rawUint(300)),
		"kind negative":        with(0, func(b []byte) []byte { return msgp.AppendInt64(b, -1) }),
		"kind string":          with(0, rawStr("ActionRequest")),
		"kind invalid":         with(0, rawUint(7)),
		"tag of 15 bytes":      with(1, rawBin(make([]byte, 15))),
		"tag of 17 bytes":      with(1, rawBin(make([]byte, 17))),
		"tag as str":           with(1, rawStr("0123456789abcdef")),
		"zero tag":             with(1, rawBin(make([]byte, 16))),
		"src of 3": with(2, func(b []byte) []byte {
			b = msgp.AppendArrayHeader(b, 3)
			b = msgp.AppendBytes(b, testSrc.UUID[:])
			return msgp.AppendUint8(msgp.AppendUint8(b, 2), 2)
		}),
		"src role 7":               with(2, rawID(EntityID{UUID: testSrc.UUID, Role: 7})),
		"dest zero":                with(3, rawID(EntityID{})),
		"action as bin":            with(5, rawBin([]byte("f"))),
		"action empty":             with(5, rawStr("")),
		"action length lies":       with(5, hugeStr),
		"args length lies":         with(6, hugeBin),
		"args as str":              with(6, rawStr("x")),
		"result in request":        with(7, rawBin([]byte{1})),
		"error in request":         with(8, rawStr("Error")),
		"error message only":       with(9, rawStr("oops")),
		"terminate in request":     with(10, rawBool(true)),
		"terminate as int":         with(10, rawUint(1)),
		"action too long":          with(5, rawStr(strings.Repeat("a", MaxTextSize+1))),
		"args too long":            with(6, rawBin(make([]byte, MaxPayloadSize+1))),
		"empty input":              nil,
		"array header only (0x9b)": {0x9b},
	}
	for name, b := range cases {
		if err := m.Decode(b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: Decode = %v, want ErrBadMessage", name, err)
		}
	}
	// A lying length must not make the decoder allocate what it claims.
	b := with(6, hugeBin)
	if n := testing.AllocsPerRun(20, func() { _ = m.Decode(b) }); n > 10 {
		t.Errorf("Decode of a lying length: %v allocations", n)
	}
}

func TestValidate(t *testing.T) {
	for _, m := range sampleMessages() {
		if err := m.Validate(); err != nil {
			t.Fatalf("Validate(%v): %v", m, err)
		}
	}
	base := func() *Message { return NewActionRequest(testSrc, testDest, "f", []byte{1}) }
	cases := map[string]func(*Message){
		"invalid kind":         func(m *Message) { m.Kind = 9 },
		"zero kind":            func(m *Message) { m.Kind = KindInvalid },
		"zero tag":             func(m *Message) { m.Tag = UUID{} },
		"zero src":             func(m *Message) { m.Src = EntityID{} },
		"src without role":     func(m *Message) { m.Src.Role = 0 },
		"dest without uuid":    func(m *Message) { m.Dest.UUID = UUID{} },
		"no action":            func(m *Message) { m.Action = m.Action[:0] },
		"action in ping":       func(m *Message) { m.Kind, m.Args = KindPingRequest, nil },
		"args in response":     func(m *Message) { m.Kind, m.Action = KindActionResponse, nil },
		"result in request":    func(m *Message) { m.Result = []byte{1} },
		"terminate in request": func(m *Message) { m.Terminate = true },
		"error in request":     func(m *Message) { m.ErrorKind = Text("E") },
		"message without kind": func(m *Message) { m.Kind, m.Args, m.ErrorMessage = KindActionResponse, nil, Text("x") },
		"error with result": func(m *Message) {
			m.Kind, m.Args, m.Result, m.ErrorKind = KindActionResponse, nil, []byte{1}, Text("E")
		},
	}
	for name, mutate := range cases {
		m := base()
		mutate(m)
		if err := m.Validate(); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: Validate = %v, want ErrBadMessage", name, err)
		}
	}
	m := base()
	m.Args = make([]byte, MaxPayloadSize+1)
	if err := m.Validate(); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("oversized args: Validate = %v", err)
	}
}

func TestResponses(t *testing.T) {
	label := NewTag()
	req := NewActionRequest(testSrc, testDest, "act", []byte("args"))
	req.Label = label
	check := func(r *Message, kind Kind) {
		t.Helper()
		if r.Kind != kind || r.Tag != req.Tag || r.Label != label || r.Src != testDest || r.Dest != testSrc {
			t.Fatalf("response %v to %v", r, req)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Validate(%v): %v", r, err)
		}
	}
	r := req.Response([]byte("result"))
	check(r, KindActionResponse)
	if string(r.Result) != "result" || string(r.Action) != "act" || len(r.Args) != 0 || r.IsError() || r.Err() != nil {
		t.Fatalf("Response = %v", r)
	}
	// Into a dirty message, and in place.
	dirty := NewShutdownRequest(testDest, testDest, true)
	dirty.Args = []byte("x")
	dirty.SetError(errors.New("x"))
	dirty.SetResponse(req, []byte("r2"))
	check(dirty, KindActionResponse)
	inPlace := req.Clone()
	inPlace.SetResponse(inPlace, inPlace.Args) // result aliasing args
	check(inPlace, KindActionResponse)
	if string(inPlace.Result) != "args" || len(inPlace.Args) != 0 {
		t.Fatalf("in-place response %v", inPlace)
	}

	e := req.ErrorResponse(fmt.Errorf("wrapped: %w", &RemoteError{Kind: "KeyError", Message: "k"}))
	check(e, KindActionResponse)
	var re *RemoteError
	if !e.IsError() || !errors.As(e.Err(), &re) || re.Kind != "KeyError" || re.Message != "k" || len(e.Result) != 0 {
		t.Fatalf("ErrorResponse = %v", e)
	}
	for _, c := range []struct {
		err    error
		kind   string
		target error // what the answer's Err() must match, if anything
	}{
		{ErrMailboxClosed, ErrorKindMailboxClosed, ErrMailboxClosed},
		{fmt.Errorf("x: %w", ErrBadEntityID), ErrorKindBadEntityID, ErrBadEntityID},
		{context.DeadlineExceeded, ErrorKindTimeout, context.DeadlineExceeded},
		{context.Canceled, ErrorKindCanceled, context.Canceled},
		{&RemoteError{Kind: ErrorKindMailboxClosed}, ErrorKindMailboxClosed, ErrMailboxClosed},
		{errors.New("plain"), ErrorKindGeneric, nil},
		{&RemoteError{Message: "no kind"}, ErrorKindGeneric, nil},
		{nil, ErrorKindGeneric, nil},
	} {
		inPlace.SetErrorResponse(req, c.err)
		if string(inPlace.ErrorKind) != c.kind || inPlace.Validate() != nil {
			t.Errorf("SetErrorResponse(%v): kind %q, want %q", c.err, inPlace.ErrorKind, c.kind)
		}
		if c.target != nil && !errors.Is(inPlace.Err(), c.target) {
			t.Errorf("SetErrorResponse(%v).Err() does not match %v", c.err, c.target)
		}
	}
	// Remote errors match the sentinels their kinds stand for.
	for kind, target := range map[string]error{
		ErrorKindMailboxTerminated: ErrMailboxClosed,
		ErrorKindMailboxClosed:     ErrMailboxClosed,
		ErrorKindBadEntityID:       ErrBadEntityID,
		ErrorKindTimeout:           context.DeadlineExceeded,
		ErrorKindCanceled:          context.Canceled,
	} {
		if err := (&RemoteError{Kind: kind}); !errors.Is(err, target) || errors.Is(err, ErrExchangeClosed) {
			t.Errorf("RemoteError %q and %v", kind, target)
		}
	}
	if (&RemoteError{Kind: "K", Message: "m"}).Error() != "K: m" || (&RemoteError{Kind: "K"}).Error() != "K" {
		t.Error("RemoteError.Error")
	}

	// A long error message is truncated on a rune boundary.
	long := strings.Repeat("é", MaxTextSize) // 2 bytes each
	e = req.ErrorResponse(errors.New(long))
	if len(e.ErrorMessage) > MaxTextSize || !utf8.Valid(e.ErrorMessage) || e.Validate() != nil {
		t.Fatalf("long error: %d bytes, valid UTF-8 %v", len(e.ErrorMessage), utf8.Valid(e.ErrorMessage))
	}
	e = req.ErrorResponse(errors.New(strings.Repeat("a", MaxTextSize+10)))
	if len(e.ErrorMessage) != MaxTextSize {
		t.Fatalf("long error: %d bytes", len(e.ErrorMessage))
	}

	// Ping and shutdown responses carry no result or action.
	ping := NewPingRequest(testSrc, testDest)
	ping.Label = label
	pr := ping.Response([]byte("ignored"))
	if pr.Kind != KindPingResponse || len(pr.Result) != 0 || pr.Validate() != nil || pr.Label != label {
		t.Fatalf("ping response %v", pr)
	}
	sr := NewShutdownRequest(testSrc, testDest, true).Response(nil)
	if sr.Kind != KindShutdownResponse || sr.Terminate || sr.Validate() != nil {
		t.Fatalf("shutdown response %v", sr)
	}
	// A response to a response is invalid.
	if rr := pr.Response(nil); rr.Kind != KindInvalid || !errors.Is(rr.Validate(), ErrBadMessage) {
		t.Fatalf("response to a response: %v", rr)
	}
}

func TestMessageHelpers(t *testing.T) {
	args := []byte("args")
	m := NewActionRequest(testSrc, testDest, "act", args)
	args[0] = 'X' // constructors copy
	if string(m.Args) != "args" {
		t.Fatal("NewActionRequest does not copy args")
	}
	c := m.Clone()
	if !c.Equal(m) || &c.Args[0] == &m.Args[0] {
		t.Fatal("Clone")
	}
	c.Args[0] = 'Y'
	if c.Equal(m) {
		t.Fatal("Equal ignores Args")
	}
	c.CopyFrom(c)
	c.CopyFrom(m)
	if !c.Equal(m) {
		t.Fatal("CopyFrom")
	}
	capArgs := cap(m.Args)
	m.Reset()
	if !m.Equal(&Message{}) || cap(m.Args) != capArgs {
		t.Fatalf("Reset: %v, cap %d", m, cap(m.Args))
	}
	m.SetAction("again")
	if string(m.Action) != "again" {
		t.Fatal("SetAction")
	}
	for _, m := range sampleMessages() {
		if s := m.String(); !strings.Contains(s, m.Kind.String()) {
			t.Fatalf("String() = %q", s)
		}
	}
	if (&Message{}).String() == "" {
		t.Fatal("String of the zero message")
	}
}

func TestStreamDecodeLimits(t *testing.T) {
	hugeStr := encodeRawN(11, rawUint(1), rawBin(testSrc.UUID[:]), rawID(testSrc), rawID(testDest), rawBin(make([]byte, 16)),
		func(b []byte) []byte { return append(b, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'a') })
	var m Message
	if err := msgp.Decode(bytes.NewReader(hugeStr), &m); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("DecodeMsg of a huge str: %v", err)
	}
	hugeBin := encodeRawN(11, rawUint(1), rawBin(testSrc.UUID[:]), rawID(testSrc), rawID(testDest), rawBin(make([]byte, 16)),
		rawStr("f"), func(b []byte) []byte { return append(b, 0xc6, 0xff, 0xff, 0xff, 0xf0, 'a') })
	if err := msgp.Decode(bytes.NewReader(hugeBin), &m); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("DecodeMsg of a huge bin: %v", err)
	}
	withNils := encodeRaw(rawUint(3), rawBin(testSrc.UUID[:]), rawID(testSrc), rawID(testDest), rawBin(make([]byte, 16)),
		rawNil, rawNil, rawNil, rawNil, rawNil, rawBool(false))
	m.SetAction("stale")
	if err := msgp.Decode(bytes.NewReader(withNils), &m); err != nil || len(m.Action) != 0 || m.Kind != KindPingRequest {
		t.Fatalf("DecodeMsg with nils: %v, %v", &m, err)
	}
}

// TestDecodeAllocs checks that decoding into a reused Message allocates
// nothing once its slices have grown.
func TestDecodeAllocs(t *testing.T) {
	var encoded [][]byte
	for _, m := range sampleMessages() {
		b, err := m.MarshalMsg(nil)
		if err != nil {
			t.Fatal(err)
		}
		encoded = append(encoded, b)
	}
	var m Message
	for _, b := range encoded { // warm up: grow the slices
		if err := m.Decode(b); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range encoded {
			if err := m.Decode(b); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Fatalf("Decode into a reused Message: %v allocations per run, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := m.UnmarshalMsg(encoded[0]); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("UnmarshalMsg into a reused Message: %v allocations per run, want 0", n)
	}
}

// TestEncodeAllocs checks that encoding into a large enough buffer, and
// answering a request in place, allocate nothing.
func TestEncodeAllocs(t *testing.T) {
	msgs := sampleMessages()
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		for _, m := range msgs {
			var err error
			if buf, err = m.MarshalMsg(buf[:0]); err != nil {
				t.Fatal(err)
			}
			if _, err := m.EncodeTo(buf[:cap(buf)]); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Fatalf("encoding: %v allocations per run, want 0", n)
	}
	req := msgs[0]
	var r Message
	r.SetResponse(req, req.Args)
	if n := testing.AllocsPerRun(100, func() {
		r.SetResponse(req, req.Args)
		r.Tag = NewTag()
	}); n != 0 {
		t.Fatalf("SetResponse into a reused Message: %v allocations per run, want 0", n)
	}
}

// BenchmarkMessageRoundTrip encodes an ActionRequest with 64 bytes of args
// into a reused buffer and decodes it into a reused Message.
func BenchmarkMessageRoundTrip(b *testing.B) {
	m := NewActionRequest(testSrc, testDest, "compute", make([]byte, 64))
	m.Label = NewTag()
	buf := make([]byte, m.EncodedSize())
	var out Message
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		n, err := m.EncodeTo(buf)
		if err != nil {
			b.Fatal(err)
		}
		if err := out.Decode(buf[:n]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessageEncode measures EncodeTo alone, as a sender writing into
// ring space does.
func BenchmarkMessageEncode(b *testing.B) {
	m := NewActionRequest(testSrc, testDest, "compute", make([]byte, 64))
	buf := make([]byte, m.EncodedSize())
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.EncodeTo(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessageDecode measures Decode (with validation) alone.
func BenchmarkMessageDecode(b *testing.B) {
	buf, err := NewActionRequest(testSrc, testDest, "compute", make([]byte, 64)).MarshalMsg(nil)
	if err != nil {
		b.Fatal(err)
	}
	var out Message
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := out.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodeSizedStaysInside: encodeSized writes into space claimed in a
// ring, whose slice has capacity up to the end of the data area, over other
// processes' records. Should the size it is given ever disagree with what
// MarshalMsg writes (a bug in a Msgsize, a Message changed by another
// goroutine between the two), it must fail without writing past len(dst):
// the encoding may append only within dst's length.
func TestEncodeSizedStaysInside(t *testing.T) {
	m := NewActionRequest(testSrc, testDest, "act", []byte("some arguments"))
	n := m.EncodedSize()
	buf := bytes.Repeat([]byte{0xcc}, n+64)
	if err := m.encodeSized(buf[:n-1]); err == nil {
		t.Fatal("encodeSized into one byte less than the encoding: no error")
	}
	if !bytes.Equal(buf[n-1:], bytes.Repeat([]byte{0xcc}, 65)) {
		t.Fatalf("encodeSized wrote past the end of its space: % x", buf[n-1:n+3])
	}
}
