package proxystore

//go:generate go tool msgp

//msgp:limit arrays:16 maps:16 marshal:true
//msgp:tuple Proxy
//msgp:ignore StoreID Kind PayloadCodec

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
// On the wire a Proxy is a MessagePack array of six elements in field order
// (see [AppendPayload] for how a proxy travels in a message payload).
type Proxy struct {
	// Store is the id of the store that made the proxy.
	Store [16]byte `msg:"store"`
	// Kind is the store implementation, [KindArena] or [KindFile].
	Kind uint8 `msg:"kind"`
	// Segment names the arena segment or the file holding the payload.
	Segment uint64 `msg:"segment"`
	// Offset is the payload's offset in the segment's data area.
	Offset uint64 `msg:"offset"`
	// Length is the payload's length in bytes.
	Length uint64 `msg:"length"`
	// Generation tells apart the successive uses of one block: a proxy
	// whose generation no longer matches the block's is stale.
	Generation uint64 `msg:"generation"`
}

// String describes the proxy for logs and errors.
func (p Proxy) String() string {
	return fmt.Sprintf("proxy{%s %s seg=%x off=%d len=%d gen=%d}",
		StoreID(p.Store), Kind(p.Kind), p.Segment, p.Offset, p.Length, p.Generation)
}

// ExtType is the MessagePack extension type that marks a payload holding a
// proxy rather than the bytes themselves.
const ExtType int8 = 80 // 'P'

// MaxEncodedProxy bounds the encoded size of a Proxy.
const MaxEncodedProxy = 1 + 18 + 2 + 4*9

// AppendPayload appends to dst the payload that stands for p in a message:
// a MessagePack ext 8 of type [ExtType] whose data is p's encoding.
func AppendPayload(dst []byte, p Proxy) []byte {
	at := len(dst)
	dst = append(dst, 0xc7, 0, byte(ExtType))
	dst, _ = p.MarshalMsg(dst) // a value of fixed shape: MarshalMsg cannot fail
	dst[at+1] = byte(len(dst) - at - 3)
	return dst
}

// IsPayload reports whether payload is marked as a proxy: a MessagePack ext
// of type [ExtType]. It does not decode the proxy; [ParsePayload] does, and
// may still report [ErrBadProxy].
func IsPayload(payload []byte) bool {
	_, _, err := readExt(payload)
	return err == nil
}

// ParsePayload decodes the proxy in a payload made by [AppendPayload]. Bytes
// that are not exactly one such payload are [ErrBadProxy].
func ParsePayload(payload []byte) (Proxy, error) {
	var p Proxy
	data, rest, err := readExt(payload)
	if err != nil {
		return p, err
	}
	if len(rest) != 0 {
		return p, fmt.Errorf("%w: %d trailing bytes", ErrBadProxy, len(rest))
	}
	left, err := p.UnmarshalMsg(data)
	if err != nil {
		return Proxy{}, fmt.Errorf("%w: %v", ErrBadProxy, err)
	}
	if len(left) != 0 {
		return Proxy{}, fmt.Errorf("%w: %d trailing bytes in the proxy", ErrBadProxy, len(left))
	}
	return p, nil
}

// readExt splits a MessagePack ext of type ExtType (any of the ext and
// fixext forms) into its data and what follows it.
func readExt(b []byte) (data, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrBadProxy, len(b))
	}
	var n, hdr int
	switch b[0] {
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		n, hdr = 1<<(b[0]-0xd4), 1
	case 0xc7: // ext 8
		n, hdr = int(b[1]), 2
	case 0xc8: // ext 16
		if len(b) < 3 {
			return nil, nil, fmt.Errorf("%w: short ext header", ErrBadProxy)
		}
		n, hdr = int(b[1])<<8|int(b[2]), 3
	default: // ext 32 is far longer than any proxy
		return nil, nil, fmt.Errorf("%w: not a proxy payload (type byte %#x)", ErrBadProxy, b[0])
	}
	if n > MaxEncodedProxy {
		return nil, nil, fmt.Errorf("%w: %d-byte extension is too long for a proxy", ErrBadProxy, n)
	}
	if len(b) < hdr+1+n {
		return nil, nil, fmt.Errorf("%w: extension of %d bytes truncated", ErrBadProxy, n)
	}
	if t := int8(b[hdr]); t != ExtType {
		return nil, nil, fmt.Errorf("%w: extension type %d, want %d", ErrBadProxy, t, ExtType)
	}
	return b[hdr+1 : hdr+1+n], b[hdr+1+n:], nil
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
// A proxy encoded by it is left alone by [Wrap]'s policy (it already is a
// proxy), and resolved by a wrapped mailbox unless the mailbox resolves
// manually ([ResolveManual]). Like every proxy in a message, it stands for
// the MessagePack encoding of a value: see [AllocBytes] and [BytesOf].
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
