package proxystore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tinylib/msgp/msgp"
)

// ErrForwardSingleUse reports an attempt to send on a received [Blob] whose
// payload is single use: it is evicted when this process releases it, so
// its next receiver would find it gone. Copy it into a Blob of your own
// ([NewBlob]: one copy), or have its maker give it another lifetime.
var ErrForwardSingleUse = errors.New("proxystore: a received single-use Blob cannot be sent on")

// Blob is a byte payload for action arguments and results that crosses
// processes without being copied. It is a value of a few words; copies of a
// Blob share its payload and its references.
//
// # Making one
//
// A sender makes a Blob in a [Store] (for processes of one node, the arena
// store of the exchange, [OpenArena]): [AllocBlob] lends room that the
// caller fills in place (no copy at all), [NewBlob] copies bytes in (one
// copy). Either travels as a proxy of a few dozen bytes whatever its size
// (see proxy_layout.go), so it is never held back by an exchange's inline
// limit. [BlobOf] wraps bytes of this process's memory without a store: it
// travels inline, as a MessagePack bin, and suits small payloads.
//
// # Receiving one
//
// A Blob decodes ([Blob.UnmarshalMsg]) from a proxy into a read-only view of
// the sender's payload, resolved with the store of this process that has
// the proxy's store id ([StoreFor]: open the arena store on the exchange's
// directory in every process that receives Blobs). No byte is copied, and
// the view is checked as every resolve is (bounds, generation, lifetime, the
// owner being alive): a forged or stale proxy is an error, never a read
// outside a mapping. A Blob also decodes from a MessagePack bin (a copy: the
// sender sent a []byte or an inline Blob) and from a proxied value that is
// a bin (in place), so that the two sides of a call may choose differently.
// Writing into a received Blob's bytes faults.
//
// # Lifetimes
//
// A Blob holds one reference when it is made or decoded; [Blob.Retain]
// adds one, [Blob.Release] drops one, and the last Release ends this
// process's use of the payload:
//
//   - a received Blob's view is released: its bytes must not be touched
//     after that. The agent package releases the Blobs of an action's
//     arguments when the action returns: Retain one to keep it longer, and
//     Release it when done. A Blob result is the caller's to Release.
//   - a Blob this process made and never sent is given back to its store;
//     one sent with the default lifetime (single use) is evicted by its
//     receiver's release, so Release leaves it alone; one made with another
//     lifetime ([WithLifetime], [WithLease]) is freed, and receivers that
//     hold views keep them (later resolves fail with [ErrStaleProxy]).
//
// A made Blob's bytes may be written until it is sent (encoded), never
// after. A received single-use Blob cannot be sent on
// ([ErrForwardSingleUse]); other received Blobs are sent on as the same
// proxy. The zero Blob is empty and travels as an empty bin.
//
// Blob implements msgp.Marshaler, msgp.Unmarshaler, msgp.Sizer,
// msgp.Encodable and msgp.Decodable, so that it can be an action's argument
// or result on its own ([agent.CodecFor] picks these up) or a field of a
// msgp-generated struct (declare the field as proxystore.Blob on the
// receiving side; a []byte field does not decode a proxy). *Blob also
// implements msgp.Extension for code that handles extensions by type
// ([ExtType]).
//
// [agent.CodecFor]: https://pkg.go.dev/github.com/shmex/shmex/agent#CodecFor
type Blob struct{ r *blobRef }

// blobKind says where a Blob's bytes are.
type blobKind uint8

const (
	blobInline blobKind = iota // this process's memory: travels as a bin
	blobLoan                   // lent by AllocBlob: committed when first encoded
	blobMade                   // committed in a store of this process: travels as its proxy
	blobView                   // received: a view of a store's payload
)

// blobRef is what copies of a Blob share. mu guards every field but those
// set once at creation (kind's initial value aside, only a loan's commit
// changes kind).
type blobRef struct {
	mu     sync.Mutex
	kind   blobKind
	b      []byte
	store  Store
	loan   Loan
	view   View
	p      Proxy
	form   Form
	single bool // the payload is single use
	sent   bool // made: encoded at least once
	refs   int  // 0: released
}

// blobPutOptions returns the options of a made Blob: single use unless
// opts say otherwise.
func blobPutOptions(opts []PutOption) ([]PutOption, bool) {
	if len(opts) == 0 {
		return singleUseOpts, true
	}
	all := append([]PutOption{WithSingleUse()}, opts...)
	return all, ApplyPutOptions(all).Lifetime == SingleUse
}

var singleUseOpts = []PutOption{WithSingleUse()}

// AllocBlob lends n writable bytes in s and returns them as a Blob: fill
// [Blob.Bytes] in place, then send the Blob (as an action's argument or
// result): the payload reaches its receiver without a copy. It is single
// use unless opts give another lifetime. The loan is committed when the
// Blob is first encoded (or by [Blob.Commit]); a Blob released before
// that gives its room back. The bytes are not zeroed.
func AllocBlob(ctx context.Context, s Store, n int, opts ...PutOption) (Blob, error) {
	if s == nil {
		return Blob{}, errors.New("proxystore: AllocBlob with a nil store")
	}
	all, single := blobPutOptions(opts)
	l, err := s.Alloc(ctx, n, all...)
	if err != nil {
		return Blob{}, err
	}
	return Blob{&blobRef{kind: blobLoan, b: l.Bytes(), store: s, loan: l, form: FormBytes, single: single, refs: 1}}, nil
}

// NewBlob copies b into s (one copy) and returns the copy as a Blob, single
// use unless opts give another lifetime.
func NewBlob(ctx context.Context, s Store, b []byte, opts ...PutOption) (Blob, error) {
	bl, err := AllocBlob(ctx, s, len(b), opts...)
	if err != nil {
		return Blob{}, err
	}
	copy(bl.r.b, b)
	if err := bl.Commit(); err != nil {
		bl.Release()
		return Blob{}, err
	}
	return bl, nil
}

// BlobOf returns a Blob of b in this process's memory, without a store and
// without a copy: it travels inline, as a MessagePack bin, so it is limited
// by the exchange's inline payload size unless a wrapper ([Wrap]) proxies
// the whole message payload. b must not be modified while the Blob is in
// use.
func BlobOf(b []byte) Blob {
	return Blob{&blobRef{kind: blobInline, b: b[:len(b):len(b)], refs: 1}}
}

// Bytes returns the payload: a read-only view for a received Blob (writing
// to it faults), the writable loan for a Blob from [AllocBlob] until it is
// sent. Nil for the zero Blob and after the last Release.
func (b Blob) Bytes() []byte {
	r := b.r
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.b
}

// Size returns the payload's length in bytes.
func (b Blob) Size() int { return len(b.Bytes()) }

// Proxy returns the proxy the Blob travels as, and false for an inline Blob
// or a loan not yet committed.
func (b Blob) Proxy() (Proxy, bool) {
	r := b.r
	if r == nil {
		return Proxy{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kind == blobMade || r.kind == blobView {
		return r.p, true
	}
	return Proxy{}, false
}

// Received reports whether the Blob is a view of a payload this process
// received (read-only, released by [Blob.Release]).
func (b Blob) Received() bool {
	r := b.r
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kind == blobView
}

// Commit publishes the payload of a Blob from [AllocBlob]: its bytes must
// not be written after. Encoding the Blob commits it too. A no-op for
// other Blobs; [ErrReleased] after the last Release.
func (b Blob) Commit() error {
	r := b.r
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commitLocked()
}

func (r *blobRef) commitLocked() error {
	if r.refs == 0 {
		return ErrReleased
	}
	if r.kind != blobLoan {
		return nil
	}
	p, err := r.loan.Commit()
	if err != nil {
		return err
	}
	r.kind, r.p, r.loan = blobMade, p, nil
	return nil
}

// Retain adds a reference to the Blob's payload, to be dropped by a
// Release: an action keeps a Blob of its arguments after it returns this
// way. [ErrReleased] after the last Release.
func (b Blob) Retain() error {
	r := b.r
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refs == 0 {
		return ErrReleased
	}
	r.refs++
	return nil
}

// Release drops a reference; the last one ends this process's use of the
// payload (see [Blob] for what that does to each kind of Blob). A Release
// beyond the last is [ErrReleased]. The zero Blob has nothing to release.
func (b Blob) Release() error {
	r := b.r
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refs == 0 {
		return ErrReleased
	}
	if r.refs--; r.refs > 0 {
		return nil
	}
	var err error
	switch r.kind {
	case blobLoan:
		err = r.loan.Abort()
		r.loan = nil
	case blobMade:
		if !(r.single && r.sent) {
			err = r.store.Free(context.Background(), r.p)
			if errors.Is(err, ErrStaleProxy) {
				err = nil // used and evicted already
			}
		}
	case blobView:
		err = r.view.Release()
		r.view = nil
	}
	r.b, r.store = nil, nil
	return err
}

// String describes the Blob for logs.
func (b Blob) String() string {
	r := b.r
	if r == nil {
		return "blob{empty}"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.refs == 0:
		return "blob{released}"
	case r.kind == blobInline:
		return fmt.Sprintf("blob{inline %d bytes}", len(r.b))
	case r.kind == blobLoan:
		return fmt.Sprintf("blob{loan %d bytes}", len(r.b))
	case r.kind == blobMade:
		return fmt.Sprintf("blob{made %v}", r.p)
	}
	return fmt.Sprintf("blob{view %v}", r.p)
}

// MarshalMsg appends the Blob's encoding to o: a proxy (form [FormBytes],
// or the form it was received as) for a Blob in a store, committing a loan
// first; a MessagePack bin for an inline or zero Blob. Errors: the
// commit's, [ErrReleased], [ErrForwardSingleUse].
func (b Blob) MarshalMsg(o []byte) ([]byte, error) {
	r := b.r
	if r == nil {
		return msgp.AppendBytes(o, nil), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refs == 0 {
		return o, ErrReleased
	}
	switch r.kind {
	case blobInline:
		return msgp.AppendBytes(o, r.b), nil
	case blobLoan:
		if err := r.commitLocked(); err != nil {
			return o, err
		}
	case blobView:
		if r.single {
			return o, fmt.Errorf("%w (%v)", ErrForwardSingleUse, r.p)
		}
	}
	r.sent = true
	return appendProxy(o, r.p, r.form), nil
}

// Msgsize returns an upper bound of the encoding's size.
func (b Blob) Msgsize() int {
	r := b.r
	if r == nil {
		return msgp.BytesPrefixSize
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kind == blobInline {
		return msgp.BytesPrefixSize + len(r.b)
	}
	return ProxyEncodedSize
}

// UnmarshalMsg decodes a Blob from the start of bts and returns the rest: a
// proxy of either form is resolved into a view without a copy (see
// [Blob]); a bin is copied into this process's memory; nil is the zero
// Blob. Whatever b held before is replaced, not released. Errors: a
// malformed or foreign proxy ([ErrBadProxy], [ErrNoStore]), the store's
// ([ErrStaleProxy], [ErrExpired], [ErrOwnerDead], ...), msgp's for other
// types.
func (b *Blob) UnmarshalMsg(bts []byte) ([]byte, error) {
	if isProxyHeader(bts) {
		p, f, rest, err := readProxy(bts)
		if err != nil {
			return bts, err
		}
		r, err := resolveBlob(p, f)
		if err != nil {
			return bts, err
		}
		b.r = r
		return rest, nil
	}
	if msgp.IsNil(bts) {
		rest, err := msgp.ReadNilBytes(bts)
		if err == nil {
			b.r = nil
		}
		return rest, err
	}
	switch t := msgp.NextType(bts); t {
	case msgp.BinType:
		data, rest, err := msgp.ReadBytesBytes(bts, nil)
		if err != nil {
			return bts, err
		}
		*b = BlobOf(data)
		return rest, nil
	case msgp.ExtensionType:
		_, _, _, err := readProxy(bts)
		return bts, err
	default:
		return bts, fmt.Errorf("%w: a Blob decodes from a MessagePack bin, nil or proxy, not %v", ErrBadProxy, t)
	}
}

// resolveBlob resolves a received proxy into a view Blob.
func resolveBlob(p Proxy, f Form) (*blobRef, error) {
	s, err := StoreFor(p.Store)
	if err != nil {
		return nil, err
	}
	v, err := s.Resolve(context.Background(), p)
	if err != nil {
		return nil, err
	}
	data := v.Bytes()
	if f == FormValue {
		content, rest, err := msgp.ReadBytesZC(data)
		if err == nil && len(rest) != 0 {
			err = fmt.Errorf("%d bytes after it", len(rest))
		}
		if err != nil {
			v.Release()
			return nil, fmt.Errorf("%w: %v holds a value that is not one byte string: %v", ErrBadProxy, p, err)
		}
		data = content
	}
	single := false
	if su, ok := v.(singleUser); ok {
		single = su.singleUse()
	}
	return &blobRef{kind: blobView, b: data[:len(data):len(data)], store: s, view: v, p: p, form: f, single: single, refs: 1}, nil
}

// EncodeMsg writes the Blob to en, as MarshalMsg encodes it.
func (b Blob) EncodeMsg(en *msgp.Writer) error {
	if b.r != nil {
		b.r.mu.Lock()
		inline := b.r.kind == blobInline && b.r.refs > 0
		data := b.r.b
		b.r.mu.Unlock()
		if inline {
			return en.WriteBytes(data)
		}
	}
	var buf [ProxyEncodedSize]byte
	o, err := b.MarshalMsg(buf[:0])
	if err != nil {
		return err
	}
	_, err = en.Write(o)
	return err
}

// DecodeMsg reads a Blob from dc, as UnmarshalMsg decodes it.
func (b *Blob) DecodeMsg(dc *msgp.Reader) error {
	var raw msgp.Raw
	if err := raw.DecodeMsg(dc); err != nil {
		return err
	}
	rest, err := b.UnmarshalMsg(raw)
	if err == nil && len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after the Blob", ErrBadProxy, len(rest))
	}
	return err
}

// ExtensionType implements msgp.Extension: [ExtType].
func (b *Blob) ExtensionType() int8 { return ExtType }

// Len implements msgp.Extension: the length of the extension's data,
// always [ProxyDataSize] (the payload's length is [Blob.Size]).
func (b *Blob) Len() int { return ProxyDataSize }

// MarshalBinaryTo implements msgp.Extension: it writes the proxy's layout
// into d (ProxyDataSize bytes). An inline Blob has no proxy: an error.
func (b *Blob) MarshalBinaryTo(d []byte) error {
	r := b.r
	if r != nil {
		r.mu.Lock()
		inline := r.kind == blobInline
		r.mu.Unlock()
		if inline {
			r = nil
		}
	}
	if r == nil {
		return errors.New("proxystore: an inline Blob has no proxy to encode as an extension (make it with AllocBlob or NewBlob)")
	}
	var buf [ProxyEncodedSize]byte
	o, err := b.MarshalMsg(buf[:0])
	if err != nil {
		return err
	}
	if len(d) < ProxyDataSize {
		return fmt.Errorf("proxystore: %d bytes for a %d-byte extension", len(d), ProxyDataSize)
	}
	copy(d, o[3:])
	return nil
}

// UnmarshalBinary implements msgp.Extension: d is the extension's data (the
// layout without the ext header), resolved as UnmarshalMsg resolves a
// proxy.
func (b *Blob) UnmarshalBinary(d []byte) error {
	if len(d) != ProxyDataSize {
		return fmt.Errorf("%w: extension of %d bytes, want %d", ErrBadProxy, len(d), ProxyDataSize)
	}
	var buf [ProxyEncodedSize]byte
	buf[0], buf[1], buf[2] = extHeader8, ProxyDataSize, byte(ExtType)
	copy(buf[3:], d)
	rest, err := b.UnmarshalMsg(buf[:])
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: trailing bytes", ErrBadProxy)
	}
	return err
}

var (
	_ msgp.Marshaler   = Blob{}
	_ msgp.Sizer       = Blob{}
	_ msgp.Encodable   = Blob{}
	_ msgp.Unmarshaler = (*Blob)(nil)
	_ msgp.Decodable   = (*Blob)(nil)
	_ msgp.Extension   = (*Blob)(nil)
)

// singleUser is a View that knows whether its payload is single use
// (evicted at its release), so that a received Blob is not forwarded. Every
// store's view is one.
type singleUser interface{ singleUse() bool }

var (
	_ singleUser = (*arenaView)(nil)
	_ singleUser = (*fileView)(nil)
	_ singleUser = (*memView)(nil)
	_ singleUser = (*redisView)(nil)
)
