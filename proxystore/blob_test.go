package proxystore

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"reflect"
	"runtime/debug"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// TestProxyLayoutGolden pins the wire layout of proxy_layout.go (and of
// docs/wire.md, whose example is these bytes).
func TestProxyLayoutGolden(t *testing.T) {
	var store StoreID
	for i := range store {
		store[i] = byte(0xa0 + i)
	}
	p := Proxy{Store: store, Kind: uint8(KindArena), Segment: 0x0102030405060708, Offset: 0x10000, Length: 1 << 30, Generation: 7}
	got := hex.EncodeToString(appendProxy(nil, p, FormBytes))
	want := "c73850" + // ext 8, 56 bytes, type 80
		"01" + "01" + "01" + "0000000000" + // version, kind arena, form bytes, reserved
		"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" + // store
		"0102030405060708" + // segment
		"0000000000010000" + // offset
		"0000000040000000" + // length
		"0000000000000007" // generation
	if got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	q, f, err := ParseProxy(appendProxy(nil, p, FormBytes))
	if err != nil || q != p || f != FormBytes {
		t.Fatalf("ParseProxy = %v %v %v", q, f, err)
	}
}

func TestProxyLayoutRejects(t *testing.T) {
	good := appendProxy(nil, Proxy{Store: NewStoreID(), Kind: 1, Segment: 1, Length: 1, Generation: 1}, FormValue)
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"nil":           {0xc0},
		"bin":           msgp.AppendBytes(nil, []byte("x")),
		"other ext":     mutate(func(b []byte) { b[2] = 81 }),
		"short ext":     append([]byte{0xc7, 55, 80}, good[3:58]...),
		"fixext":        {0xd8, 80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		"version 0":     mutate(func(b []byte) { b[3+pxOffVersion] = 0 }),
		"version 2":     mutate(func(b []byte) { b[3+pxOffVersion] = 2 }),
		"form 2":        mutate(func(b []byte) { b[3+pxOffForm] = 2 }),
		"reserved":      mutate(func(b []byte) { b[3+pxOffReserved+4] = 1 }),
		"trailing byte": append(bytes.Clone(good), 0),
	} {
		if _, _, err := ParseProxy(b); !errors.Is(err, ErrBadProxy) {
			t.Errorf("%s: ParseProxy = %v, want ErrBadProxy", name, err)
		}
	}
	for i := range good {
		if _, _, err := ParseProxy(good[:i]); !errors.Is(err, ErrBadProxy) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
	blob := mutate(func(b []byte) { b[3+pxOffForm] = byte(FormBytes) })
	if !IsPayload(blob) || !IsPayload(good) {
		t.Fatal("IsPayload false for a proxy")
	}
	if _, err := ParsePayload(blob); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("ParsePayload of a Blob's proxy: %v", err)
	}
}

// blobStores returns an arena store for Blob tests.
func blobArena(t *testing.T) *Arena {
	return openArena(t, arenaDir(t))
}

// roundTrip encodes b and decodes the encoding into a new Blob.
func roundTrip(t *testing.T, b Blob) (Blob, []byte) {
	t.Helper()
	enc, err := b.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > b.Msgsize() {
		t.Fatalf("encoded %d bytes, Msgsize %d", len(enc), b.Msgsize())
	}
	var got Blob
	rest, err := got.UnmarshalMsg(enc)
	if err != nil || len(rest) != 0 {
		t.Fatalf("UnmarshalMsg = %d left, %v", len(rest), err)
	}
	return got, enc
}

func TestBlobLoan(t *testing.T) {
	ctx := t.Context()
	a := blobArena(t)
	b, err := AllocBlob(ctx, a, 100<<10)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Proxy(); ok || b.Received() || b.Size() != 100<<10 {
		t.Fatalf("a fresh loan: %v", b)
	}
	arenaPattern(b.Bytes(), 3)
	got, enc := roundTrip(t, b)
	if len(enc) != ProxyEncodedSize {
		t.Fatalf("encoded as %d bytes", len(enc))
	}
	if p, ok := b.Proxy(); !ok || p.Length != 100<<10 {
		t.Fatalf("after encoding: %v %v", p, ok)
	}
	if !got.Received() || !arenaCheckPattern(got.Bytes(), 3) {
		t.Fatalf("decoded %v", got)
	}
	// The decoded Blob is a view of the arena: no copy.
	if _, ok := got.r.view.(*arenaView); !ok {
		t.Fatalf("decoded into %T", got.r.view)
	}
	// Single use: the view's release evicts the payload, and the sender's
	// Release of a sent single-use Blob leaves it to that.
	if err := got.Release(); err != nil {
		t.Fatal(err)
	}
	if got.Bytes() != nil {
		t.Fatal("bytes after Release")
	}
	if err := got.Release(); !errors.Is(err, ErrReleased) {
		t.Fatalf("second Release: %v", err)
	}
	var again Blob
	if _, err := again.UnmarshalMsg(enc); !errors.Is(err, ErrStaleProxy) {
		t.Fatalf("decode after the single use: %v", err)
	}
	if err := b.Release(); err != nil {
		t.Fatalf("sender's Release: %v", err)
	}
	if _, err := b.MarshalMsg(nil); !errors.Is(err, ErrReleased) {
		t.Fatalf("encode after Release: %v", err)
	}
}

func TestBlobReleaseUnsent(t *testing.T) {
	ctx := t.Context()
	a := blobArena(t)
	loan, err := AllocBlob(ctx, a, 5000)
	if err != nil {
		t.Fatal(err)
	}
	made, err := NewBlob(ctx, a, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	owned, err := NewBlob(ctx, a, []byte("owned"), WithLifetime(Owned))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owned.MarshalMsg(nil); err != nil { // sent, but owned: Release frees it
		t.Fatal(err)
	}
	if n := a.Stats().Blocks; n != 3 {
		t.Fatalf("%d blocks", n)
	}
	for _, b := range []Blob{loan, made, owned} {
		if err := b.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Stats().Blocks; n != 0 {
		t.Fatalf("%d blocks after releasing unsent Blobs", n)
	}
}

func TestBlobRetain(t *testing.T) {
	ctx := t.Context()
	a := blobArena(t)
	b, err := NewBlob(ctx, a, []byte("retained"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := roundTrip(t, b)
	if err := got.Retain(); err != nil {
		t.Fatal(err)
	}
	if err := got.Release(); err != nil || string(got.Bytes()) != "retained" {
		t.Fatalf("after one of two releases: %q %v", got.Bytes(), err)
	}
	if err := got.Release(); err != nil || got.Bytes() != nil {
		t.Fatalf("after the second: %v", err)
	}
	if err := got.Retain(); !errors.Is(err, ErrReleased) {
		t.Fatalf("Retain after the last Release: %v", err)
	}
}

func TestBlobInline(t *testing.T) {
	var zero Blob
	got, enc := roundTrip(t, zero)
	if !bytes.Equal(enc, []byte{0xc4, 0}) || got.Size() != 0 || got.Release() != nil {
		t.Fatalf("zero Blob: %x %v", enc, got)
	}
	src := []byte("inline bytes")
	got, enc = roundTrip(t, BlobOf(src))
	if !bytes.Equal(enc, msgp.AppendBytes(nil, src)) || string(got.Bytes()) != string(src) || got.Received() {
		t.Fatalf("inline: %x %v", enc, got)
	}
	if &got.Bytes()[0] == &src[0] {
		t.Fatal("a Blob decoded from a bin aliases the message")
	}
	// nil decodes as the zero Blob; other types are errors.
	var b Blob
	if _, err := b.UnmarshalMsg([]byte{0xc0}); err != nil || b.r != nil {
		t.Fatalf("nil: %v", err)
	}
	for _, bad := range [][]byte{msgp.AppendInt(nil, 3), msgp.AppendString(nil, "s"), {0xd4, 1, 0}} {
		if _, err := b.UnmarshalMsg(bad); err == nil {
			t.Fatalf("decoded %x", bad)
		}
	}
	var ext Blob
	if err := ext.MarshalBinaryTo(make([]byte, ProxyDataSize)); err == nil {
		t.Fatal("MarshalBinaryTo of an inline Blob")
	}
}

// A proxied value that is a bin (what Wrap makes of a []byte argument)
// decodes into a Blob in place; any other value is an error.
func TestBlobFromValueProxy(t *testing.T) {
	ctx := t.Context()
	a := blobArena(t)
	l, err := AllocBytes(ctx, a, 3000)
	if err != nil {
		t.Fatal(err)
	}
	arenaPattern(l.Bytes(), 5)
	p, err := l.Commit()
	if err != nil {
		t.Fatal(err)
	}
	var b Blob
	if _, err := b.UnmarshalMsg(AppendPayload(nil, p)); err != nil || !arenaCheckPattern(b.Bytes(), 5) || !b.Received() {
		t.Fatalf("decode: %v", err)
	}
	// Sent on as it came: a value proxy.
	if enc, err := b.MarshalMsg(nil); err != nil || !bytes.Equal(enc, AppendPayload(nil, p)) {
		t.Fatalf("forward: %x %v", enc, err)
	}
	b.Release()
	q, err := a.Put(ctx, msgp.AppendInt(nil, 42))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.UnmarshalMsg(AppendPayload(nil, q)); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("a proxied int: %v", err)
	}
	if st := a.Stats(); st.Views != 0 {
		t.Fatalf("%d views left", st.Views)
	}
}

func TestBlobForward(t *testing.T) {
	ctx := t.Context()
	a := blobArena(t)
	single, err := NewBlob(ctx, a, []byte("single"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := roundTrip(t, single)
	if _, err := got.MarshalMsg(nil); !errors.Is(err, ErrForwardSingleUse) {
		t.Fatalf("forwarding a single-use Blob: %v", err)
	}
	got.Release()
	owned, err := NewBlob(ctx, a, []byte("owned"), WithLifetime(Owned))
	if err != nil {
		t.Fatal(err)
	}
	got, enc := roundTrip(t, owned)
	if fwd, err := got.MarshalMsg(nil); err != nil || !bytes.Equal(fwd, enc) {
		t.Fatalf("forwarding an owned Blob: %x %v", fwd, err)
	}
	got.Release()
	owned.Release()
}

func TestBlobNoStore(t *testing.T) {
	enc := appendProxy(nil, Proxy{Store: NewStoreID(), Kind: uint8(KindArena), Segment: 1, Length: 1, Generation: 1}, FormBytes)
	var b Blob
	_, err := b.UnmarshalMsg(enc)
	if !errors.Is(err, ErrNoStore) || !errors.Is(err, ErrForeignProxy) {
		t.Fatalf("a proxy of a store not open here: %v", err)
	}
}

func TestBlobMemStore(t *testing.T) {
	s := NewMemStore()
	defer s.Close()
	b, err := NewBlob(t.Context(), s, []byte("mem"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := roundTrip(t, b)
	if string(got.Bytes()) != "mem" {
		t.Fatalf("%q", got.Bytes())
	}
	got.Release()
	if s.Len() != 0 {
		t.Fatal("single use payload not evicted")
	}
	s.Close()
	if _, err := StoreFor(s.ID()); !errors.Is(err, ErrNoStore) {
		t.Fatalf("a closed store is still registered: %v", err)
	}
}

func TestBlobStreamAndExtension(t *testing.T) {
	ctx := t.Context()
	a := blobArena(t)
	b, err := NewBlob(ctx, a, []byte("streamed"), WithLifetime(Owned))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	var buf bytes.Buffer
	w := msgp.NewWriter(&buf)
	if err := b.EncodeMsg(w); err != nil {
		t.Fatal(err)
	}
	if err := BlobOf([]byte("inline")).EncodeMsg(w); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	r := msgp.NewReader(&buf)
	var x, y Blob
	if err := x.DecodeMsg(r); err != nil || string(x.Bytes()) != "streamed" {
		t.Fatalf("DecodeMsg: %q %v", x.Bytes(), err)
	}
	if err := y.DecodeMsg(r); err != nil || string(y.Bytes()) != "inline" {
		t.Fatalf("DecodeMsg: %q %v", y.Bytes(), err)
	}
	x.Release()
	// As a msgp.Extension.
	enc, err := msgp.AppendExtension(nil, &b)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := b.MarshalMsg(nil); !bytes.Equal(enc, want) {
		t.Fatalf("AppendExtension %x, MarshalMsg %x", enc, want)
	}
	var e Blob
	if _, err := msgp.ReadExtensionBytes(enc, &e); err != nil || string(e.Bytes()) != "streamed" {
		t.Fatalf("ReadExtensionBytes: %v", err)
	}
	e.Release()
}

// blobHolder is a decoded value with Blobs at every depth.
type blobHolder struct {
	A   Blob
	P   *Blob
	S   []Blob
	M   map[string]Blob
	N   struct{ In [2]Blob }
	hid Blob
	X   int
}

func TestReleaseBlobs(t *testing.T) {
	if HasBlobs(reflect.TypeFor[int]()) || HasBlobs(reflect.TypeFor[[]byte]()) || HasBlobs(reflect.TypeFor[struct{ A, B string }]()) {
		t.Fatal("HasBlobs true for a type without Blobs")
	}
	type rec struct {
		Next *rec
		B    Blob
	}
	for _, ty := range []reflect.Type{reflect.TypeFor[Blob](), reflect.TypeFor[*blobHolder](), reflect.TypeFor[map[int][]*Blob](), reflect.TypeFor[rec]()} {
		if !HasBlobs(ty) {
			t.Fatalf("HasBlobs(%v) false", ty)
		}
	}
	ctx := t.Context()
	a := blobArena(t)
	var all []Blob
	view := func() Blob {
		b, err := NewBlob(ctx, a, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := roundTrip(t, b)
		all = append(all, got)
		return got
	}
	p := view()
	h := blobHolder{A: view(), P: &p, S: []Blob{view(), {}}, M: map[string]Blob{"k": view()}, hid: view()}
	h.N.In[1] = view()
	kept := h.S[0]
	kept.Retain()
	if n := ReleaseBlobs(&h); n != len(all) {
		t.Fatalf("released %d of %d", n, len(all))
	}
	if a.Stats().Views != 1 || string(kept.Bytes()) != "x" {
		t.Fatalf("%d views left, want the retained one", a.Stats().Views)
	}
	kept.Release()
	if a.Stats().Views != 0 {
		t.Fatal("views left")
	}
	if n := ReleaseBlobs(&h); n != 0 {
		t.Fatalf("released %d again", n)
	}
	r := &rec{B: view()}
	r.Next = r // a cycle: the walk stops
	ReleaseBlobs(r)

	// One *Blob (an action's argument), which takes a path of its own: the
	// same counts, a retained Blob kept.
	one := view()
	if n := ReleaseBlobs(&one); n != 1 || one.Bytes() != nil {
		t.Fatalf("*Blob: released %d, bytes %q", n, one.Bytes())
	}
	if n := ReleaseBlobs(&one); n != 0 {
		t.Fatalf("*Blob released %d again", n)
	}
	one = view()
	one.Retain()
	if n := ReleaseBlobs(&one); n != 1 || string(one.Bytes()) != "x" {
		t.Fatalf("retained *Blob: released %d, bytes %q", n, one.Bytes())
	}
	one.Release()
	var zero Blob
	if n := ReleaseBlobs(&zero) + ReleaseBlobs((*Blob)(nil)); n != 0 {
		t.Fatalf("zero and nil Blob: released %d", n)
	}
	if a.Stats().Views != 0 {
		t.Fatal("views left")
	}
}

func TestExplainDecodeError(t *testing.T) {
	enc := appendProxy(nil, Proxy{Kind: 1}, FormBytes)
	_, _, err := msgp.ReadBytesBytes(enc, nil)
	if err == nil {
		t.Fatal("a proxy decoded as bytes")
	}
	got := ExplainDecodeError(msgp.WrapError(err, "Data"))
	var te msgp.TypeError
	if !errors.As(got, &te) || !bytes.Contains([]byte(got.Error()), []byte("proxystore.Blob")) {
		t.Fatalf("explained: %v", got)
	}
	if ExplainDecodeError(nil) != nil || ExplainDecodeError(ErrBadProxy) != ErrBadProxy {
		t.Fatal("other errors changed")
	}
}

// FuzzBlobUnmarshal decodes fuzzed bytes as a Blob against a real arena
// holding blocks of zeros (a slab slot, a chunk run, a single-block
// segment): every outcome is an error (a sentinel when the bytes are an
// extension) or a Blob of exactly the bytes sent: a proxy's block (all
// zeros, the proxy's length for FormBytes) or the bin's content, never a
// panic or a read outside a mapping, and every view taken is released.
// FuzzResolveForged forges proxies field by field.
func FuzzBlobUnmarshal(f *testing.F) {
	ctx := context.Background()
	dir := arenaDir(f)
	a := openArena(f, dir, WithSegmentSize(1<<20), WithMaxBytes(4<<20))
	for _, n := range []int{10, 5000, 100 << 10, 2 << 20} {
		b, err := NewBlob(ctx, a, make([]byte, n), WithLifetime(Owned))
		if err != nil {
			f.Fatal(err)
		}
		enc, err := b.MarshalMsg(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		p, _ := b.Proxy()
		f.Add(AppendPayload(nil, p))
	}
	f.Add(msgp.AppendBytes(nil, []byte("inline")))
	f.Add([]byte{0xc0})
	f.Fuzz(func(t *testing.T, in []byte) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		var b Blob
		rest, err := b.UnmarshalMsg(in)
		if err != nil {
			if msgp.NextType(in) == msgp.ExtensionType && !isResolveSentinel(err) {
				t.Fatalf("% x: %v is no sentinel", in, err)
			}
			return
		}
		if len(rest) > len(in) || !bytes.Equal(rest, in[len(in)-len(rest):]) {
			t.Fatalf("rest of %d bytes from %d", len(rest), len(in))
		}
		if p, ok := b.Proxy(); ok {
			_, f, _ := ParseProxy(in[:ProxyEncodedSize])
			if f == FormBytes && uint64(b.Size()) != p.Length {
				t.Fatalf("Blob of %d bytes for %v", b.Size(), p)
			}
			if bytes.ContainsFunc(b.Bytes(), func(r rune) bool { return r != 0 }) {
				t.Fatalf("Blob of %v is not the block of zeros", p)
			}
		} else if msgp.IsNil(in) {
			if b.Size() != 0 {
				t.Fatalf("nil decoded to %d bytes", b.Size())
			}
		} else if want, _, err := msgp.ReadBytesBytes(in, nil); err != nil || !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("Blob of % x holds % x (msgp: %v)", in, b.Bytes(), err)
		}
		if err := b.Release(); err != nil {
			t.Fatal(err)
		}
		if v := a.Stats().Views; v != 0 {
			t.Fatalf("%d views left", v)
		}
	})
}
