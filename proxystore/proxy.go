package proxystore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// StoreID identifies a store: every process of one exchange that opens the
// arena store of that exchange sees the same StoreID, and a proxy made by
// another store is refused with [ErrForeignProxy].
type StoreID [16]byte

// NewStoreID returns a random StoreID.
func NewStoreID() StoreID {
	var id StoreID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never returns an error
	return id
}

// String returns the id in hex.
func (id StoreID) String() string { return hex.EncodeToString(id[:]) }

// Kind says which store implementation made a proxy.
type Kind uint8

// Store kinds.
const (
	// KindArena: the payload lives in a shared-memory arena segment of the
	// exchange; Segment names the arena, Offset and Length the bytes.
	KindArena Kind = 1
	// KindFile: the payload lives in a file of a file store; Segment names
	// the file, Offset is zero and Length is the uncompressed length.
	KindFile Kind = 2
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindArena:
		return "arena"
	case KindFile:
		return "file"
	case KindMemory:
		return "memory"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Proxy is a reference to a payload held by a [Store]: a few dozen bytes
// whatever the payload's size. It is plain data: a proxy from the wire is
// checked by the store that resolves it (bounds, generation, ownership)
// before any byte it names is read, so a forged or stale proxy is an error,
// never a read outside a mapping.
//
// In a message a Proxy travels as a MessagePack extension of a fixed layout
// (proxy_layout.go, docs/wire.md): [AppendPayload], [ParseProxy], [Blob].
type Proxy struct {
	// Store is the id of the store that made the proxy.
	Store [16]byte
	// Kind is the store implementation, [KindArena] or [KindFile].
	Kind uint8
	// Segment names the arena segment or the file holding the payload.
	Segment uint64
	// Offset is the payload's offset in the segment's data area.
	Offset uint64
	// Length is the payload's length in bytes.
	Length uint64
	// Generation tells apart the successive uses of one block: a proxy
	// whose generation no longer matches the block's is stale.
	Generation uint64
}

// String describes the proxy for logs and errors.
func (p Proxy) String() string {
	return fmt.Sprintf("proxy{%s %s seg=%x off=%d len=%d gen=%d}",
		StoreID(p.Store), Kind(p.Kind), p.Segment, p.Offset, p.Length, p.Generation)
}

// AppendPayload appends to dst the payload that stands for p in a message:
// a proxy of form [FormValue] (the proxied bytes are the MessagePack
// encoding of a value), in the layout of proxy_layout.go.
func AppendPayload(dst []byte, p Proxy) []byte { return appendProxy(dst, p, FormValue) }

// IsPayload reports whether payload is exactly one encoded proxy, of either
// form ([FormValue] or [FormBytes]). It does not check the proxy's fields;
// [ParsePayload] and [ParseProxy] do, and may still report [ErrBadProxy].
func IsPayload(payload []byte) bool {
	return len(payload) == ProxyEncodedSize && isProxyHeader(payload)
}

// ParsePayload decodes the proxy in a payload made by [AppendPayload]: one
// proxy of form [FormValue] and nothing else. Anything else, a [Blob]'s
// proxy (form [FormBytes]) included, is [ErrBadProxy].
func ParsePayload(payload []byte) (Proxy, error) {
	p, f, err := ParseProxy(payload)
	if err != nil {
		return Proxy{}, err
	}
	if f != FormValue {
		return Proxy{}, fmt.Errorf("%w: a proxy of form %v (a Blob's) where a value's was expected: decode it as a proxystore.Blob", ErrBadProxy, f)
	}
	return p, nil
}

// ParseProxy decodes a payload that is exactly one proxy, of either form,
// and returns it with its form. Anything else is [ErrBadProxy].
func ParseProxy(payload []byte) (Proxy, Form, error) {
	p, f, rest, err := readProxy(payload)
	if err != nil {
		return Proxy{}, 0, err
	}
	if len(rest) != 0 {
		return Proxy{}, 0, fmt.Errorf("%w: %d trailing bytes after the proxy", ErrBadProxy, len(rest))
	}
	return p, f, nil
}

// PayloadCodec encodes a [Proxy] as the payload that stands for it in a
// message ([AppendPayload], [ParsePayload]). It has the method set of the
// agent package's Codec[Proxy], so that an action can take or return a
// proxy and resolve it when it wants the bytes:
//
//	agent.AddActionCodec(b, "sum", proxystore.PayloadCodec{}, u64Codec,
//		func(ctx context.Context, p proxystore.Proxy) (uint64, error) {
//			v, err := store.Resolve(ctx, p)
//			...
//		})
//
// [Blob] does the same with less: no codec to register, no resolve to
// call. A proxy encoded by PayloadCodec is left alone by [Wrap]'s policy
// (it already is a proxy); the agent package hands it to the action as it
// came (PayloadCodec is a [ProxyDecoder]), and a wrapped mailbox resolves
// it unless it resolves manually ([ResolveManual]). Like every proxy of
// form [FormValue], it stands for the MessagePack encoding of a value: see
// [AllocBytes] and [BytesOf].
type PayloadCodec struct{}

// Append appends the payload of p to b.
func (PayloadCodec) Append(b []byte, p Proxy) ([]byte, error) { return AppendPayload(b, p), nil }

// Decode parses the payload b into p ([ErrBadProxy] when b is not one).
func (PayloadCodec) Decode(b []byte, p *Proxy) error {
	q, err := ParsePayload(b)
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// DecodesProxies marks PayloadCodec as a [ProxyDecoder].
func (PayloadCodec) DecodesProxies() {}

// ProxyDecoder is implemented by codecs that decode proxies themselves,
// such as [PayloadCodec]: a receiver that resolves proxied payloads before
// it decodes them (the agent package does) hands such a codec the payload
// as it came.
type ProxyDecoder interface {
	DecodesProxies()
}

// ExplainDecodeError returns err, a decoder's error, with a hint when it
// comes from a proxy met where the decoder expected another type (msgp's
// "attempted to decode type ext"): a [Blob] or a proxied value sent to a
// receiver whose type cannot take one. Other errors, and nil, are returned
// as they are.
func ExplainDecodeError(err error) error {
	if err == nil {
		return nil // before te: its address escapes, and it would be allocated for nothing
	}
	var te msgp.TypeError
	if !errors.As(err, &te) || te.Encoded != msgp.ExtensionType {
		return err
	}
	return fmt.Errorf("%w (a proxy, such as a proxystore.Blob, arrived where the receiver's type expects a %v: "+
		"declare that argument, result or field as proxystore.Blob, which decodes both)", err, te.Method)
}
