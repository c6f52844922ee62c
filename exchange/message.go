package exchange

//go:generate go tool msgp

//msgp:limit arrays:16 maps:16 marshal:true
//msgp:tuple Message EntityID

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// EntityID identifies an entity (agent or client) and its mailbox. It is
// comparable, allocation-free and usable as a map key. A human-readable name
// is not part of the id: names live in the registry (see [WithName] and
// [Exchange.Info]). On the wire an EntityID is the MessagePack array
// [uuid bin16, role uint].
//
// It is declared here, beside Message, rather than in id.go with the rest
// of its methods, so that msgp, which sees one file at a time, generates
// its two fields into Message's codec instead of a call per id.
type EntityID struct {
	// UUID identifies the entity; an exchange never holds two entities with
	// the same UUID.
	UUID UUID
	// Role is the kind of entity.
	Role Role
}

// Message is the one envelope for all six kinds of messages. A single
// concrete struct, rather than one type per kind, lets a receiver decode
// every message into the same reused value without allocating; the fields a
// kind does not use stay empty (see [Message.Validate]).
//
// The byte-slice fields belong to the Message: decoding overwrites them in
// place, reusing their capacity, so a slice taken from a Message is valid
// only until the Message is next decoded into, reset or modified. Copy what
// must outlive that.
//
// On the wire a Message is a MessagePack array of 11 elements, in field
// order (see the package documentation).
type Message struct {
	// Kind says which of the six messages this is.
	Kind Kind `msg:"kind"`
	// Tag matches a response to its request: a response carries the tag of
	// the request it answers. Never zero in a valid message.
	Tag UUID `msg:"tag"`
	// Src is the sender, to whose mailbox a response goes.
	Src EntityID `msg:"src"`
	// Dest is the mailbox the message is sent to.
	Dest EntityID `msg:"dest"`
	// Label tells apart handles that share one mailbox; a response carries
	// its request's label. Zero when unused.
	Label UUID `msg:"label"`
	// Action is the action's name, in an ActionRequest (required) and
	// optionally echoed in its ActionResponse.
	Action Text `msg:"action"`
	// Args holds an ActionRequest's arguments, as MessagePack bytes by
	// convention; opaque to the exchange.
	Args Payload `msg:"args"`
	// Result holds an ActionResponse's result, as MessagePack bytes by
	// convention; opaque to the exchange.
	Result Payload `msg:"result"`
	// ErrorKind is non-empty in an error response only: the kind of the
	// [RemoteError] that [Message.Err] returns.
	ErrorKind Text `msg:"error_kind"`
	// ErrorMessage is the error response's message.
	ErrorMessage Text `msg:"error_message"`
	// Terminate, in a ShutdownRequest, asks that the agent's mailbox be
	// terminated as well.
	Terminate bool `msg:"terminate"`
}

// NewActionRequest returns an ActionRequest from src to dest, with a fresh
// tag, invoking action with args (copied).
func NewActionRequest(src, dest EntityID, action string, args []byte) *Message {
	m := &Message{Kind: KindActionRequest, Tag: NewTag(), Src: src, Dest: dest}
	m.Action = append(m.Action, action...)
	m.Args = append(m.Args, args...)
	return m
}

// NewActionResponse returns an ActionResponse from src to dest answering the
// request tagged tag, with result (copied). [Message.Response] is usually
// more convenient: it also keeps the request's label.
func NewActionResponse(src, dest EntityID, tag UUID, result []byte) *Message {
	m := &Message{Kind: KindActionResponse, Tag: tag, Src: src, Dest: dest}
	m.Result = append(m.Result, result...)
	return m
}

// NewPingRequest returns a PingRequest from src to dest with a fresh tag.
func NewPingRequest(src, dest EntityID) *Message {
	return &Message{Kind: KindPingRequest, Tag: NewTag(), Src: src, Dest: dest}
}

// NewPingResponse returns a PingResponse from src to dest answering the
// ping tagged tag.
func NewPingResponse(src, dest EntityID, tag UUID) *Message {
	return &Message{Kind: KindPingResponse, Tag: tag, Src: src, Dest: dest}
}

// NewShutdownRequest returns a ShutdownRequest from src to dest with a fresh
// tag; terminate asks that dest's mailbox be terminated too.
func NewShutdownRequest(src, dest EntityID, terminate bool) *Message {
	return &Message{Kind: KindShutdownRequest, Tag: NewTag(), Src: src, Dest: dest, Terminate: terminate}
}

// NewShutdownResponse returns a ShutdownResponse from src to dest answering
// the shutdown request tagged tag.
func NewShutdownResponse(src, dest EntityID, tag UUID) *Message {
	return &Message{Kind: KindShutdownResponse, Tag: tag, Src: src, Dest: dest}
}

// Reset clears m, keeping the capacity of its byte slices.
func (m *Message) Reset() {
	*m = Message{
		Action:       m.Action[:0],
		Args:         m.Args[:0],
		Result:       m.Result[:0],
		ErrorKind:    m.ErrorKind[:0],
		ErrorMessage: m.ErrorMessage[:0],
	}
}

// SetAction sets m.Action to name, reusing its capacity.
func (m *Message) SetAction(name string) { m.Action = append(m.Action[:0], name...) }

// Response returns a new response to the request m: the matching response
// kind, Src and Dest swapped, the same Tag, Label and Action, and result
// (copied) when m is an ActionRequest (ignored otherwise). When m is not a
// request the response's Kind is KindInvalid, which Validate rejects.
func (m *Message) Response(result []byte) *Message {
	r := new(Message)
	r.SetResponse(m, result)
	return r
}

// ErrorResponse returns a new error response to the request m, like
// [Message.Response], carrying err as a [RemoteError] (see
// [Message.SetError]).
func (m *Message) ErrorResponse(err error) *Message {
	r := new(Message)
	r.SetErrorResponse(m, err)
	return r
}

// SetResponse makes r the response to req, like [Message.Response], reusing
// r's capacity: the zero-allocation way to answer. r may be req itself, and
// result may alias req.Args.
func (r *Message) SetResponse(req *Message, result []byte) {
	kind := req.Kind.ResponseKind()
	// The ids swap, and r may be req: copied through temporaries by part,
	// a UUID and a byte, because a 17-byte temporary read back (a tuple
	// assignment of ids makes those) stalls on store forwarding. One field
	// per statement below for the same reason.
	srcUUID, srcRole := req.Dest.UUID, req.Dest.Role
	destUUID, destRole := req.Src.UUID, req.Src.Role
	r.Tag = req.Tag
	r.Label = req.Label
	if r != req {
		r.Action = append(r.Action[:0], req.Action...)
	}
	if kind == KindActionResponse {
		r.Result = append(r.Result[:0], result...)
	} else {
		r.Result = r.Result[:0]
	}
	r.Kind = kind
	r.Src.UUID = srcUUID
	r.Src.Role = srcRole
	r.Dest.UUID = destUUID
	r.Dest.Role = destRole
	if kind != KindActionResponse {
		r.Action = r.Action[:0]
	}
	r.Args = r.Args[:0]
	r.ErrorKind = r.ErrorKind[:0]
	r.ErrorMessage = r.ErrorMessage[:0]
	r.Terminate = false
}

// SetErrorResponse makes r the error response to req carrying err, like
// [Message.ErrorResponse], reusing r's capacity. r may be req itself.
func (r *Message) SetErrorResponse(req *Message, err error) {
	r.SetResponse(req, nil)
	r.SetError(err)
}

// SetError turns m into an error response carrying err and clears its
// Result. When err is (or wraps) a [*RemoteError] its kind and message are
// kept; the exchange's sentinel errors and the context errors get their
// ErrorKind constants; any other error gets [ErrorKindGeneric] and its
// Error() text. Texts longer than [MaxTextSize] are truncated.
func (m *Message) SetError(err error) {
	kind, msg := remoteErrorParts(err)
	m.ErrorKind = append(m.ErrorKind[:0], truncateText(kind)...)
	m.ErrorMessage = append(m.ErrorMessage[:0], truncateText(msg)...)
	m.Result = m.Result[:0]
}

func truncateText(s string) string {
	if len(s) <= MaxTextSize {
		return s
	}
	i := MaxTextSize
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// IsError reports whether m is an error response (its ErrorKind is set).
func (m *Message) IsError() bool { return len(m.ErrorKind) > 0 }

// Err returns nil when m is not an error response, and otherwise a new
// [*RemoteError] holding copies of its ErrorKind and ErrorMessage.
func (m *Message) Err() error {
	if !m.IsError() {
		return nil
	}
	return &RemoteError{Kind: string(m.ErrorKind), Message: string(m.ErrorMessage)}
}

// Clone returns a deep copy of m.
func (m *Message) Clone() *Message {
	c := new(Message)
	c.CopyFrom(m)
	return c
}

// CopyFrom makes m a deep copy of src, reusing m's capacity.
func (m *Message) CopyFrom(src *Message) {
	if m == src {
		return
	}
	// One field per statement: see SetResponse.
	m.Kind = src.Kind
	m.Tag = src.Tag
	m.Src = src.Src
	m.Dest = src.Dest
	m.Label = src.Label
	m.Terminate = src.Terminate
	m.Action = append(m.Action[:0], src.Action...)
	m.Args = append(m.Args[:0], src.Args...)
	m.Result = append(m.Result[:0], src.Result...)
	m.ErrorKind = append(m.ErrorKind[:0], src.ErrorKind...)
	m.ErrorMessage = append(m.ErrorMessage[:0], src.ErrorMessage...)
}

// Equal reports whether m and o have the same contents; nil and empty slices
// are equal.
func (m *Message) Equal(o *Message) bool {
	return m.Kind == o.Kind && m.Tag == o.Tag && m.Src == o.Src && m.Dest == o.Dest &&
		m.Label == o.Label && m.Terminate == o.Terminate &&
		bytes.Equal(m.Action, o.Action) && bytes.Equal(m.Args, o.Args) &&
		bytes.Equal(m.Result, o.Result) && bytes.Equal(m.ErrorKind, o.ErrorKind) &&
		bytes.Equal(m.ErrorMessage, o.ErrorMessage)
}

// String returns a one-line summary of m for logs and test failures; it
// shows the sizes of Args and Result, not their contents.
func (m *Message) String() string {
	s := fmt.Sprintf("%s tag=%s %s->%s", m.Kind, m.Tag, m.Src, m.Dest)
	if !m.Label.IsZero() {
		s += " label=" + m.Label.String()
	}
	if len(m.Action) > 0 {
		s += fmt.Sprintf(" action=%q", m.Action)
	}
	if len(m.Args) > 0 {
		s += fmt.Sprintf(" args=%dB", len(m.Args))
	}
	if len(m.Result) > 0 {
		s += fmt.Sprintf(" result=%dB", len(m.Result))
	}
	if m.IsError() {
		s += fmt.Sprintf(" error=%q", m.Err().Error())
	}
	if m.Terminate {
		s += " terminate"
	}
	return s
}

// Validate checks that m is a well-formed message of its kind. Errors wrap
// [ErrBadMessage], or [ErrMessageTooLarge] for fields over the codec limits.
//
// Every kind needs a valid Kind, a non-zero Tag and valid Src and Dest (a
// role and a non-zero UUID); Label is free. Then:
//   - ActionRequest: a non-empty Action; Args free.
//   - ActionResponse: Action free; Result, or else the error part.
//   - Args only in an ActionRequest, Result only in an ActionResponse,
//     Terminate only in a ShutdownRequest, Action only in action messages.
//   - Requests carry no error part; ErrorMessage needs ErrorKind; an error
//     response has no Result.
func (m *Message) Validate() error {
	if len(m.Action) > MaxTextSize || len(m.ErrorKind) > MaxTextSize || len(m.ErrorMessage) > MaxTextSize {
		return errTextTooLarge
	}
	if len(m.Args) > MaxPayloadSize || len(m.Result) > MaxPayloadSize {
		return errPayloadTooLarge
	}
	var why string
	switch {
	case !m.Kind.Valid():
		why = "invalid kind"
	case m.Tag.isZero():
		why = "zero tag"
	case !m.Src.valid():
		why = "invalid src"
	case !m.Dest.valid():
		why = "invalid dest"
	case m.Kind == KindActionRequest && len(m.Action) == 0:
		why = "action request without action"
	case len(m.Action) > 0 && m.Kind != KindActionRequest && m.Kind != KindActionResponse:
		why = "action name in a non-action message"
	case len(m.Args) > 0 && m.Kind != KindActionRequest:
		why = "args outside an action request"
	case len(m.Result) > 0 && m.Kind != KindActionResponse:
		why = "result outside an action response"
	case m.Terminate && m.Kind != KindShutdownRequest:
		why = "terminate outside a shutdown request"
	case len(m.ErrorMessage) > 0 && len(m.ErrorKind) == 0:
		why = "error message without error kind"
	case m.IsError() && m.Kind.IsRequest():
		why = "error in a request"
	case m.IsError() && len(m.Result) > 0:
		why = "error response with a result"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s: %s", ErrBadMessage, m.Kind, why)
}

// EncodedSize returns the exact number of bytes [Message.MarshalMsg] appends
// for m (the generated Msgsize is exact for Message, because every field's
// own Msgsize is). Use it to claim ring space before [Message.EncodeTo].
func (m *Message) EncodedSize() int {
	// Fast path: the common message, whose integers are fixints, texts
	// fixstrs and payloads bin8s, is the fixed part, five one- or
	// two-byte headers and the bytes of its fields. (A sum that disagreed
	// with MarshalMsg would fail encodeSized, and the fuzz tests.)
	if uint8(m.Kind)|uint8(m.Src.Role)|uint8(m.Dest.Role) < 0x80 &&
		len(m.Action)|len(m.ErrorKind)|len(m.ErrorMessage) <= 31 &&
		len(m.Args)|len(m.Result) <= 0xff {
		return fixedEncodedSize + 3*1 + 2*2 +
			len(m.Action) + len(m.ErrorKind) + len(m.ErrorMessage) + len(m.Args) + len(m.Result)
	}
	return m.Msgsize()
}

// EncodeTo encodes m into the start of dst, which must hold at least
// [Message.EncodedSize] bytes, and returns the number of bytes written. It
// never allocates and never writes past that size, so dst may be space
// claimed in a shared ring. It fails with [io.ErrShortBuffer] when dst is
// too small and [ErrMessageTooLarge] when a field exceeds the codec limits;
// it does not call Validate.
func (m *Message) EncodeTo(dst []byte) (int, error) {
	n := m.Msgsize()
	if len(dst) < n {
		return 0, io.ErrShortBuffer
	}
	return n, m.encodeSized(dst[:n])
}

// encodeSized is EncodeTo for a dst of exactly m.EncodedSize() bytes. The
// capacity is cut to len(dst): dst may be a claim in a ring, whose slice
// reaches over the records after it, and an encoding longer than expected
// must then reallocate (and fail the check below) rather than write there.
func (m *Message) encodeSized(dst []byte) error {
	out, err := m.MarshalMsg(dst[:0:len(dst)])
	if err != nil {
		return err
	}
	if len(out) != len(dst) || (len(out) > 0 && &out[0] != &dst[0]) {
		return errors.New("exchange: internal error: Msgsize disagrees with MarshalMsg")
	}
	return nil
}

// Decode decodes one whole message from b into m, reusing m's capacity, and
// validates it. Unlike [Message.UnmarshalMsg] it rejects trailing bytes.
// Errors wrap [ErrBadMessage]; on error m holds unspecified contents. In
// steady state (m's slices already large enough) it allocates nothing. m
// never aliases b: b may be released or overwritten as soon as Decode
// returns.
func (m *Message) Decode(b []byte) error {
	rest, err := m.UnmarshalMsg(b)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadMessage, len(rest))
	}
	if err := m.Validate(); err != nil {
		if !errors.Is(err, ErrBadMessage) {
			err = fmt.Errorf("%w: %w", ErrBadMessage, err)
		}
		return err
	}
	return nil
}
