package proxystore

import (
	"bytes"
	"context"
	"errors"
	"runtime/debug"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// resolveSentinels are the errors a resolve of a forged proxy may wrap, in
// any store.
var resolveSentinels = []error{ErrBadProxy, ErrForeignProxy, ErrStaleProxy, ErrExpired, ErrOwnerDead,
	ErrClosed, ErrBadArena, ErrTooManyViews, ErrCorrupt}

func isResolveSentinel(err error) bool {
	for _, s := range resolveSentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// forgeStored is a payload a forged proxy may hit: the proxy its store
// gave, and its bytes.
type forgeStored struct {
	p    Proxy
	data []byte
}

// forgeStores holds a MemStore, an arena store (its owner and a second
// process-local reader of the same directory) and a file store, each with
// payloads of several sizes (slab slot, chunk run, single-block segment
// for the arena), some of them MessagePack bins (what a FormValue proxy of
// a Blob must name), one leased.
type forgeStores struct {
	mem    *MemStore
	owner  *Arena
	reader *Arena
	files  *FileStore
	stored []forgeStored
}

func newForgeStores(f *testing.F) *forgeStores {
	ctx := context.Background()
	dir := arenaDir(f)
	fs := &forgeStores{mem: NewMemStore()}
	f.Cleanup(func() { fs.mem.Close() })
	fs.owner = openArena(f, dir, WithSegmentSize(1<<20), WithMaxBytes(4<<20))
	fs.reader = openArena(f, dir)
	files, err := OpenFileStore(f.TempDir(), WithFileMaxPayload(4<<20))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { files.Close() })
	fs.files = files
	lease := WithLease(time.Now().Add(24 * time.Hour))
	for i, s := range []Store{fs.mem, fs.owner, fs.files} {
		for j, n := range []int{0, 10, 5000, 100 << 10, 2 << 20} {
			if s == fs.mem && n > 5000 {
				continue
			}
			data := make([]byte, n)
			arenaPattern(data, uint64(i*16+j+1))
			if j%2 == 1 {
				data = msgp.AppendBytes(nil, data) // a value: a bin
			}
			var opts []PutOption
			if j == 2 {
				opts = append(opts, lease)
			}
			p, err := s.Put(ctx, data, opts...)
			if err != nil {
				f.Fatal(err)
			}
			fs.stored = append(fs.stored, forgeStored{p, data})
		}
	}
	return fs
}

// find returns the payload whose proxy is p, if any.
func (fs *forgeStores) find(p Proxy) ([]byte, bool) {
	for _, s := range fs.stored {
		if s.p == p {
			return s.data, true
		}
	}
	return nil, false
}

// checkViews fails when an arena holds a view after everything was
// released.
func (fs *forgeStores) checkViews(t *testing.T) {
	for _, a := range []*Arena{fs.owner, fs.reader} {
		if n := a.Stats().Views; n != 0 {
			t.Fatalf("%d views left", n)
		}
	}
}

// forge makes a proxy from the sel-th stored payload's and the fuzzed
// fields, and its encoding with form, damaged at one byte by xor.
func (fs *forgeStores) forge(sel, which uint8, seg, off, n, gen uint64, kind, form, at, xor uint8) (Proxy, []byte) {
	p := fs.stored[int(which)%len(fs.stored)].p
	set := func(field *uint64, v uint64) {
		if sel&64 != 0 {
			*field += v // near the real value: v small or close to 2^64
		} else {
			*field = v
		}
	}
	if sel&1 != 0 {
		set(&p.Offset, off)
	}
	if sel&2 != 0 {
		set(&p.Length, n)
	}
	if sel&4 != 0 {
		set(&p.Generation, gen)
	}
	if sel&8 != 0 {
		p.Kind = kind
	}
	switch sel >> 4 & 3 {
	case 1:
		set(&p.Segment, seg)
	case 2: // another store's id (or the same store's when they share it)
		p.Store = fs.stored[(int(which)+7)%len(fs.stored)].p.Store
	case 3:
		p.Store = StoreID{}
	}
	enc := appendProxy(nil, p, Form(form%2))
	if int(at) < len(enc) {
		enc[at] ^= xor
	}
	return p, enc
}

// FuzzResolveForged resolves forged proxies (a real proxy's fields
// replaced or shifted by fuzzed values, another store's id, any kind, a
// byte of the encoding damaged) in every store kind, through every door a
// received proxy goes through: [ResolvePayload], each store's Resolve,
// [Blob.UnmarshalMsg] and [Blob.UnmarshalBinary] (the extension form).
// Each answer is a sentinel error or exactly the payload's bytes; a proxy
// its store gave resolves (no false refusal); a FormValue Blob is the
// content of the bin stored, and refused when the value is no bin. Views
// are all released (the arenas count none left), and no read leaves a
// mapping (a fault fails the test).
func FuzzResolveForged(f *testing.F) {
	ctx := context.Background()
	fs := newForgeStores(f)
	for i := range fs.stored {
		f.Add(uint8(0), uint8(i), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))
		f.Add(uint8(0), uint8(i), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(0), uint8(255), uint8(0))
	}
	f.Add(uint8(64|2), uint8(6), uint64(0), uint64(0), uint64(1), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))              // one byte longer
	f.Add(uint8(64|1), uint8(7), uint64(0), uint64(0), ^uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))             // one byte before
	f.Add(uint8(64|3), uint8(8), uint64(0), uint64(8), ^uint64(7), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))             // a tail of the block
	f.Add(uint8(64|4), uint8(9), uint64(0), uint64(0), uint64(0), uint64(1), uint8(0), uint8(1), uint8(255), uint8(0))              // next generation
	f.Add(uint8(2), uint8(8), uint64(0), uint64(0), ^uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))                // length 2^64-1
	f.Add(uint8(1), uint8(8), uint64(0), ^uint64(0)-9, uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))              // offset wraps
	f.Add(uint8(64|16), uint8(7), uint64(1), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))             // next segment
	f.Add(uint8(32), uint8(2), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))                // another store's id
	f.Add(uint8(8), uint8(12), uint64(0), uint64(0), uint64(0), uint64(0), uint8(KindArena), uint8(1), uint8(255), uint8(0))        // a file's proxy said arena
	f.Add(uint8(48), uint8(1), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0))                // zero store id
	f.Add(uint8(0), uint8(6), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(3+pxOffVersion), uint8(2))      // version 3
	f.Add(uint8(0), uint8(6), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(3+pxOffReserved+2), uint8(1))   // reserved byte
	f.Add(uint8(0), uint8(6), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(1), uint8(1))                   // ext length
	f.Add(uint8(0), uint8(6), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(0), uint8(3+pxOffForm), uint8(3))         // form 3
	f.Add(uint8(0), uint8(6), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(3+pxOffGeneration+7), uint8(1)) // generation byte
	f.Fuzz(func(t *testing.T, sel, which uint8, seg, off, n, gen uint64, kind, form, at, xor uint8) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		_, enc := fs.forge(sel, which, seg, off, n, gen, kind, form, at, xor)
		q, qf, perr := ParseProxy(enc)
		if perr != nil && !errors.Is(perr, ErrBadProxy) {
			t.Fatalf("ParseProxy: %v is not ErrBadProxy", perr)
		}
		want, genuine := fs.find(q)
		if perr != nil {
			genuine = false
		}
		// check judges one resolve: a sentinel, or exactly want.
		check := func(what string, v View, err error) {
			t.Helper()
			if err != nil {
				if !isResolveSentinel(err) {
					t.Fatalf("%s %v: %v is no sentinel", what, q, err)
				}
				if genuine && !errors.Is(err, ErrForeignProxy) {
					t.Fatalf("%s %v: the store's own proxy refused: %v", what, q, err)
				}
				return
			}
			if !genuine {
				t.Fatalf("%s: forged %v resolved to %d bytes", what, q, len(v.Bytes()))
			}
			if v.Proxy() != q || !bytes.Equal(v.Bytes(), want) {
				t.Fatalf("%s %v: view of %v, %d bytes, not the payload's %d", what, q, v.Proxy(), len(v.Bytes()), len(want))
			}
			if err := v.Release(); err != nil {
				t.Fatalf("%s: release: %v", what, err)
			}
		}

		v, form2, err := ResolvePayload(ctx, enc)
		if err == nil && form2 != qf {
			t.Fatalf("ResolvePayload: form %v, encoded %v", form2, qf)
		}
		if perr != nil && err == nil {
			t.Fatalf("ResolvePayload resolved what ParseProxy refuses (%v)", perr)
		}
		check("ResolvePayload", v, err)
		if perr == nil {
			for _, s := range []Store{fs.mem, fs.owner, fs.reader, fs.files} {
				v, err := s.Resolve(ctx, q)
				if err == nil && StoreID(q.Store) != s.ID() {
					t.Fatalf("%T resolved a proxy of store %v", s, StoreID(q.Store))
				}
				if err != nil && StoreID(q.Store) != s.ID() {
					if !isResolveSentinel(err) {
						t.Fatalf("%T: another store's proxy: %v is no sentinel", s, err)
					}
					continue
				}
				check("Resolve", v, err)
			}
		}

		// The Blob's wire forms: the MessagePack extension whole, and its
		// data alone (msgp.Extension), which goes with a sound header.
		var blobs [2]Blob
		var errs [2]error
		wholes := [2][]byte{enc, enc}
		_, errs[0] = blobs[0].UnmarshalMsg(enc)
		if len(enc) == ProxyEncodedSize {
			errs[1] = blobs[1].UnmarshalBinary(enc[3:])
			wholes[1] = append([]byte{extHeader8, ProxyDataSize, byte(ExtType)}, enc[3:]...)
		} else if errs[1] = blobs[1].UnmarshalBinary(enc); errs[1] == nil {
			t.Fatalf("UnmarshalBinary took %d bytes", len(enc))
		}
		for i, b := range blobs {
			err, whole := errs[i], wholes[i]
			q, qf, perr := ParseProxy(whole)
			want, genuine := fs.find(q)
			genuine = genuine && perr == nil
			if err != nil {
				if i == 1 || msgp.NextType(whole) == msgp.ExtensionType {
					if !isResolveSentinel(err) {
						t.Fatalf("Blob %d from % x: %v is no sentinel", i, whole, err)
					}
				}
				if genuine && !errors.Is(err, ErrForeignProxy) && !(qf == FormValue && !isBin(want)) {
					t.Fatalf("Blob %d: the store's own %v refused: %v", i, q, err)
				}
				continue
			}
			if p, ok := b.Proxy(); ok {
				if !genuine || p != q {
					t.Fatalf("Blob %d of %v from forged % x", i, p, whole)
				}
				content := want
				if qf == FormValue {
					var berr error
					content, _, berr = msgp.ReadBytesZC(want)
					if berr != nil {
						t.Fatalf("Blob %d of a FormValue proxy of a non-bin: %v", i, berr)
					}
				}
				if !bytes.Equal(b.Bytes(), content) || !b.Received() {
					t.Fatalf("Blob %d of %v: %d bytes, not the payload's %d", i, p, b.Size(), len(content))
				}
			} else if i == 1 {
				t.Fatalf("UnmarshalBinary of % x gave no proxy", enc)
			}
			if err := b.Release(); err != nil {
				t.Fatalf("Blob %d: release: %v", i, err)
			}
		}
		fs.checkViews(t)
	})
}

// isBin reports whether b is exactly one MessagePack bin.
func isBin(b []byte) bool {
	_, rest, err := msgp.ReadBytesZC(b)
	return err == nil && len(rest) == 0
}
