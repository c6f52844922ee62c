package proxystore

import (
	"encoding/binary"
	"fmt"
)

// Wire layout of a proxy in a MessagePack payload. Every offset and size of
// the encoding is here, so that the layout reads in one place (compare
// arena_layout.go); docs/wire.md says the same for implementers in other
// languages. A proxy travels as one MessagePack extension:
//
//	0xc7 0x38 0x50   ext 8 header: 56 data bytes (0x38), extension type 80 (0x50, 'P')
//	then 56 data bytes:
//
//	offset  size  field
//	0       1     version     layout version, 1
//	1       1     kind        store kind: 1 arena, 2 file, 3 memory (in-process only)
//	2       1     form        what the proxied bytes are (below)
//	3       5     reserved    zero
//	8       16    store       the store id (16 bytes, as is)
//	24      8     segment     arena segment id, or file number (big-endian uint64)
//	32      8     offset      offset of the payload in the segment's data area (big-endian)
//	40      8     length      payload length in bytes (big-endian)
//	48      8     generation  generation of the block (big-endian), never 0
//
// Integers are big-endian, as MessagePack's own. The encoding is always the
// ext 8 form above (59 bytes in all): a decoder accepts no other header, no
// other length, no other version and no non-zero reserved byte, so that
// every proxy has exactly one encoding.
//
// The form says how the receiver reads the proxied bytes:
//
//   - FormValue (0): they are the MessagePack encoding of the value that
//     stands where the proxy stands. [Wrap] makes these when it proxies a
//     whole action argument or result, and [AppendPayload] writes them.
//   - FormBytes (1): they are the raw content of a byte string: the value
//     is a MessagePack bin of exactly those bytes. A [Blob] travels so,
//     alone or as a field of a larger value.
//
// Either way a receiver that wants bytes (a bin) can read them in place: a
// FormBytes proxy is the bytes; a FormValue proxy whose value is a bin holds
// them after the bin's header.
const (
	// ExtType is the MessagePack extension type of a proxy.
	ExtType int8 = 80 // 'P'

	// ProxyDataSize is the size of the extension's data: the layout above.
	ProxyDataSize = 56
	// ProxyEncodedSize is the size of a whole encoded proxy: the ext 8
	// header (3 bytes) and the data.
	ProxyEncodedSize = 3 + ProxyDataSize

	// MaxEncodedProxy is the size of a proxy's extension data
	// ([ProxyDataSize]); 3+MaxEncodedProxy bytes hold a whole payload.
	MaxEncodedProxy = ProxyDataSize

	proxyLayoutVersion = 1

	pxOffVersion    = 0
	pxOffKind       = 1
	pxOffForm       = 2
	pxOffReserved   = 3
	pxOffStore      = 8
	pxOffSegment    = 24
	pxOffOffset     = 32
	pxOffLength     = 40
	pxOffGeneration = 48

	extHeader8 = 0xc7 // MessagePack ext 8
)

// Form says what the bytes a proxy names are (see the layout above).
type Form uint8

// Forms of a proxy.
const (
	// FormValue: the proxied bytes are the MessagePack encoding of a value.
	FormValue Form = 0
	// FormBytes: the proxied bytes are the content of a byte string.
	FormBytes Form = 1
)

// String names the form.
func (f Form) String() string {
	switch f {
	case FormValue:
		return "value"
	case FormBytes:
		return "bytes"
	}
	return fmt.Sprintf("Form(%d)", uint8(f))
}

// appendProxy appends the encoding of p with form f to dst.
func appendProxy(dst []byte, p Proxy, f Form) []byte {
	at := len(dst)
	dst = append(dst, make([]byte, ProxyEncodedSize)...)
	b := dst[at:]
	b[0], b[1], b[2] = extHeader8, ProxyDataSize, byte(ExtType)
	d := b[3:]
	be := binary.BigEndian
	d[pxOffVersion] = proxyLayoutVersion
	d[pxOffKind] = p.Kind
	d[pxOffForm] = byte(f)
	copy(d[pxOffStore:pxOffStore+16], p.Store[:])
	be.PutUint64(d[pxOffSegment:], p.Segment)
	be.PutUint64(d[pxOffOffset:], p.Offset)
	be.PutUint64(d[pxOffLength:], p.Length)
	be.PutUint64(d[pxOffGeneration:], p.Generation)
	return dst
}

// isProxyHeader reports whether b starts with the header of an encoded
// proxy. It says nothing of the data.
func isProxyHeader(b []byte) bool {
	return len(b) >= 3 && b[0] == extHeader8 && b[1] == ProxyDataSize && int8(b[2]) == ExtType
}

// readProxy decodes the proxy at the start of b and returns it with its form
// and the bytes after it. Anything but the one encoding of the layout is
// [ErrBadProxy]; the store checks the fields' values when it resolves.
func readProxy(b []byte) (Proxy, Form, []byte, error) {
	var p Proxy
	if len(b) == 0 || !isExt(b[0]) {
		return p, 0, nil, notAProxy(b)
	}
	if len(b) < 3 {
		return p, 0, nil, fmt.Errorf("%w: %d bytes", ErrBadProxy, len(b))
	}
	if !isProxyHeader(b) {
		switch {
		case b[0] == extHeader8 && int8(b[2]) == ExtType:
			return p, 0, nil, fmt.Errorf("%w: proxy extension of %d bytes, want %d (another layout version?)", ErrBadProxy, b[1], ProxyDataSize)
		}
		return p, 0, nil, fmt.Errorf("%w: not a proxy: an extension of another type or form (header % x)", ErrBadProxy, b[:3])
	}
	if len(b) < ProxyEncodedSize {
		return p, 0, nil, fmt.Errorf("%w: proxy truncated to %d of %d bytes", ErrBadProxy, len(b), ProxyEncodedSize)
	}
	d := b[3:ProxyEncodedSize]
	if v := d[pxOffVersion]; v != proxyLayoutVersion {
		return p, 0, nil, fmt.Errorf("%w: proxy layout version %d, want %d", ErrBadProxy, v, proxyLayoutVersion)
	}
	f := Form(d[pxOffForm])
	if f != FormValue && f != FormBytes {
		return p, 0, nil, fmt.Errorf("%w: proxy form %d", ErrBadProxy, f)
	}
	for _, c := range d[pxOffReserved:pxOffStore] {
		if c != 0 {
			return p, 0, nil, fmt.Errorf("%w: proxy reserved bytes are not zero", ErrBadProxy)
		}
	}
	be := binary.BigEndian
	p.Kind = d[pxOffKind]
	copy(p.Store[:], d[pxOffStore:pxOffStore+16])
	p.Segment = be.Uint64(d[pxOffSegment:])
	p.Offset = be.Uint64(d[pxOffOffset:])
	p.Length = be.Uint64(d[pxOffLength:])
	p.Generation = be.Uint64(d[pxOffGeneration:])
	return p, f, b[ProxyEncodedSize:], nil
}

// isExt reports whether c is the type byte of a MessagePack extension.
func isExt(c byte) bool { return c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8 }
