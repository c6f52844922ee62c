package proxystore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var codecs = []Compression{CompressNone, CompressZstd, CompressS2}

// openFS opens a file store that lends mapped loans from mmapThreshold up
// (the default too; tests rely on it).
func openFS(t testing.TB, dir string, opts ...FileOption) *FileStore {
	t.Helper()
	s, err := OpenFileStore(dir, append([]FileOption{withLoanMapMin(mmapThreshold)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pattern returns n bytes derived from seed: compressible when text is true.
func pattern(seed uint64, n int, text bool) []byte {
	b := make([]byte, n)
	if text {
		line := fmt.Sprintf("payload %d of a file store test; ", seed)
		for i := range b {
			b[i] = line[i%len(line)]
		}
		return b
	}
	r := rand.New(rand.NewPCG(seed, 7))
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// payloadFiles returns the names of the payload and temporary files in dir.
func payloadFiles(t testing.TB, dir string) (payloads, temps []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), filePrefix):
			payloads = append(payloads, e.Name())
		case strings.HasPrefix(e.Name(), fileTempPrefix):
			temps = append(temps, e.Name())
		}
	}
	return payloads, temps
}

func resolveBytes(t testing.TB, s Store, p Proxy) []byte {
	t.Helper()
	v, err := s.Resolve(context.Background(), p)
	if err != nil {
		t.Fatalf("Resolve(%v): %v", p, err)
	}
	b := bytes.Clone(v.Bytes())
	if v.Proxy() != p {
		t.Fatalf("View.Proxy() = %v, want %v", v.Proxy(), p)
	}
	if err := v.Release(); err != nil {
		t.Fatal(err)
	}
	if err := v.Release(); !errors.Is(err, ErrReleased) {
		t.Fatalf("second Release: %v", err)
	}
	return b
}

func wantIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

func TestFileStoreRoundTrip(t *testing.T) {
	ctx := t.Context()
	sizes := []int{0, 1, 100, mmapThreshold - 1, mmapThreshold, 1 << 20}
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			s := openFS(t, dir, WithCompression(c))
			if s.Compression() != c || s.Dir() != dir {
				t.Fatalf("Compression() = %v, Dir() = %q", s.Compression(), s.Dir())
			}
			for i, n := range sizes {
				for _, text := range []bool{false, true} {
					want := pattern(uint64(i), n, text)
					p, err := s.Put(ctx, want)
					if err != nil {
						t.Fatal(err)
					}
					if StoreID(p.Store) != s.ID() || Kind(p.Kind) != KindFile || p.Length != uint64(n) {
						t.Fatalf("Put returned %v", p)
					}
					if got := resolveBytes(t, s, p); !bytes.Equal(got, want) {
						t.Fatalf("size %d text %v: resolved %d bytes that differ", n, text, len(got))
					}
					// A compressible payload is stored compressed.
					if text && c != CompressNone && n >= 100 {
						fi, err := os.Stat(s.path(p.Segment))
						if err != nil {
							t.Fatal(err)
						}
						if fi.Size() >= int64(fileHeaderSize+n) {
							t.Fatalf("%v: %d-byte text stored in %d bytes", c, n, fi.Size())
						}
					}
					l, err := s.Alloc(ctx, n)
					if err != nil {
						t.Fatal(err)
					}
					if len(l.Bytes()) != n {
						t.Fatalf("Alloc(%d) lent %d bytes", n, len(l.Bytes()))
					}
					copy(l.Bytes(), want)
					q, err := l.Commit()
					if err != nil {
						t.Fatal(err)
					}
					wantIs(t, "Commit again", func() error { _, err := l.Commit(); return err }(), ErrReleased)
					wantIs(t, "Abort after Commit", l.Abort(), ErrReleased)
					if got := resolveBytes(t, s, q); !bytes.Equal(got, want) {
						t.Fatalf("loan of %d bytes resolved to other bytes", n)
					}
					if q.Segment == p.Segment {
						t.Fatal("two payloads share a file")
					}
					l, err = s.Alloc(ctx, n)
					if err != nil {
						t.Fatal(err)
					}
					if err := l.Abort(); err != nil {
						t.Fatal(err)
					}
					wantIs(t, "Abort again", l.Abort(), ErrReleased)
				}
			}
			payloads, temps := payloadFiles(t, dir)
			if len(temps) != 0 || len(payloads) != 4*len(sizes) {
				t.Fatalf("%d payload files (want %d) and temporary files %v", len(payloads), 4*len(sizes), temps)
			}
		})
	}
}

// Uncompressed payloads from the mapping threshold up resolve to a
// read-only mapping.
func TestFileStoreMapsReadOnly(t *testing.T) {
	s := openFS(t, t.TempDir())
	p, err := s.Put(t.Context(), pattern(1, mmapThreshold, false))
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Resolve(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	if fv := v.(*fileView); fv.mmap == nil || cap(v.Bytes()) != len(v.Bytes()) {
		t.Fatalf("view of %d bytes is not a capped mapping", len(v.Bytes()))
	}
}

func TestFileStoreID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	const n = 8
	ids := make([]StoreID, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := OpenFileStore(dir)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = s.ID()
			s.Close()
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] || id == (StoreID{}) {
			t.Fatalf("concurrent opens got ids %v", ids)
		}
	}
	a, b := openFS(t, dir), openFS(t, dir)
	if a.ID() != ids[0] || b.ID() != ids[0] {
		t.Fatal("reopen changed the id")
	}
	// Each store resolves the other's proxies.
	p, err := a.Put(t.Context(), []byte("from a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resolveBytes(t, b, p); string(got) != "from a" {
		t.Fatalf("b resolved %q", got)
	}
	// Another directory is another store.
	other := openFS(t, t.TempDir())
	_, err = other.Resolve(t.Context(), p)
	wantIs(t, "Resolve in another store", err, ErrForeignProxy)
	wantIs(t, "Free in another store", other.Free(t.Context(), p), ErrForeignProxy)

	// A damaged id file is refused.
	idPath := filepath.Join(dir, fileIDName)
	orig, _ := os.ReadFile(idPath)
	for _, damage := range []func([]byte) []byte{
		func(b []byte) []byte { return b[:10] },
		func(b []byte) []byte { b[20] ^= 1; return b },
		func(b []byte) []byte { b[0] = 'X'; return b },
		func(b []byte) []byte { return append(b, 0) },
	} {
		if err := os.WriteFile(idPath, damage(bytes.Clone(orig)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenFileStore(dir)
		wantIs(t, "open with a damaged id file", err, ErrCorrupt)
	}
	// A directory open to others is refused.
	loose := filepath.Join(t.TempDir(), "loose")
	os.Mkdir(loose, 0o700)
	os.Chmod(loose, 0o770)
	if _, err := OpenFileStore(loose); err == nil {
		t.Fatal("opened a store in a directory writable by its group")
	}
	if _, err := OpenFileStore(t.TempDir(), WithCompression(9)); err == nil {
		t.Fatal("opened a store with an unknown codec")
	}
}

func TestFileStoreLifetimes(t *testing.T) {
	ctx := t.Context()
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			s := openFS(t, dir, WithCompression(c))
			other := openFS(t, dir) // another process's view of the store
			data := pattern(3, 2*mmapThreshold, true)

			// SingleUse: evicted at the first release; a view taken
			// before stays valid.
			p, err := s.Put(ctx, data, WithSingleUse())
			if err != nil {
				t.Fatal(err)
			}
			v1, err := other.Resolve(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			v2, err := s.Resolve(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if err := v1.Release(); err != nil {
				t.Fatal(err)
			}
			_, err = s.Resolve(ctx, p)
			wantIs(t, "Resolve after a single-use release", err, ErrStaleProxy)
			if !bytes.Equal(v2.Bytes(), data) {
				t.Fatal("a view taken before the eviction changed")
			}
			if err := v2.Release(); err != nil {
				t.Fatal(err)
			}

			// Leased: resolvable until the deadline, then ErrExpired and
			// gone.
			p, err = s.Put(ctx, data, WithLease(time.Now().Add(time.Hour)))
			if err != nil {
				t.Fatal(err)
			}
			resolveBytes(t, other, p)
			resolveBytes(t, other, p)
			p, err = s.Put(ctx, data, WithLease(time.Now().Add(-time.Millisecond)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = other.Resolve(ctx, p)
			wantIs(t, "Resolve after the deadline", err, ErrExpired)
			_, err = other.Resolve(ctx, p)
			wantIs(t, "Resolve after the expired file was removed", err, ErrStaleProxy)
			_, err = s.Put(ctx, data, WithLifetime(Leased))
			if err == nil {
				t.Fatal("Leased without a deadline accepted")
			}

			// Owned: until Free, by any process of the store.
			p, err = s.Put(ctx, data)
			if err != nil {
				t.Fatal(err)
			}
			resolveBytes(t, s, p)
			held, err := s.Resolve(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if err := other.Free(ctx, p); err != nil {
				t.Fatal(err)
			}
			_, err = s.Resolve(ctx, p)
			wantIs(t, "Resolve after Free", err, ErrStaleProxy)
			wantIs(t, "Free again", s.Free(ctx, p), ErrStaleProxy)
			if !bytes.Equal(held.Bytes(), data) {
				t.Fatal("a view held across Free changed")
			}
			held.Release()
		})
	}
}

func TestFileStoreSweep(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openFS(t, dir)
	expired, err := s.Put(ctx, []byte("old"), WithLease(time.Now().Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	live, err := s.Put(ctx, []byte("new"), WithLease(time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	owned, err := s.Put(ctx, []byte("owned"))
	if err != nil {
		t.Fatal(err)
	}
	// Leftovers of a dead writer (a life id with no lock file) and a
	// loan of this store in progress.
	dead := filepath.Join(dir, fileTempPrefix+"00000000deadbeef-0011")
	os.WriteFile(dead, []byte("partial"), 0o600)
	l, err := s.Alloc(ctx, mmapThreshold)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2 files removed", n, err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Fatal("the dead writer's temporary file is still there")
	}
	_, err = s.Resolve(ctx, expired)
	wantIs(t, "Resolve of a swept lease", err, ErrStaleProxy)
	resolveBytes(t, s, live)
	resolveBytes(t, s, owned)
	copy(l.Bytes(), "loan")
	p, err := l.Commit()
	if err != nil {
		t.Fatalf("Commit of a loan across a Sweep: %v", err)
	}
	resolveBytes(t, s, p)
}

func TestFileStoreClose(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := OpenFileStore(dir, withLoanMapMin(mmapThreshold))
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(5, 2*mmapThreshold, false)
	p, err := s.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Resolve(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := s.Alloc(ctx, mmapThreshold)
	if err != nil {
		t.Fatal(err)
	}
	if mapped.(*fileLoan).mmap == nil {
		t.Fatal("a loan of the mapping threshold is not mapped")
	}
	heap, err := s.Alloc(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Views stay valid until released; loans fail at Commit.
	if !bytes.Equal(v.Bytes(), data) {
		t.Fatal("view changed at Close")
	}
	if err := v.Release(); err != nil {
		t.Fatal(err)
	}
	copy(mapped.Bytes(), "still writable")
	_, err = mapped.Commit()
	wantIs(t, "Commit after Close", err, ErrClosed)
	_, err = heap.Commit()
	wantIs(t, "Commit after Close", err, ErrClosed)
	_, err = s.Put(ctx, data)
	wantIs(t, "Put after Close", err, ErrClosed)
	_, err = s.Alloc(ctx, 1)
	wantIs(t, "Alloc after Close", err, ErrClosed)
	_, err = s.Resolve(ctx, p)
	wantIs(t, "Resolve after Close", err, ErrClosed)
	wantIs(t, "Free after Close", s.Free(ctx, p), ErrClosed)
	_, err = s.Sweep(ctx)
	wantIs(t, "Sweep after Close", err, ErrClosed)
	if payloads, temps := payloadFiles(t, dir); len(payloads) != 1 || len(temps) != 0 {
		t.Fatalf("after Close: payloads %v, temporary files %v", payloads, temps)
	}
	// The payload outlives the store.
	resolveBytes(t, openFS(t, dir), p)
}

func TestFileStoreBadProxies(t *testing.T) {
	ctx := t.Context()
	s := openFS(t, t.TempDir(), WithFileMaxPayload(1<<20))
	p, err := s.Put(ctx, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		mod  func(*Proxy)
		want error
	}{
		"store":      {func(q *Proxy) { q.Store[0] ^= 1 }, ErrForeignProxy},
		"kind":       {func(q *Proxy) { q.Kind = uint8(KindArena) }, ErrBadProxy},
		"offset":     {func(q *Proxy) { q.Offset = 1 }, ErrBadProxy},
		"zero seg":   {func(q *Proxy) { q.Segment = 0 }, ErrBadProxy},
		"zero gen":   {func(q *Proxy) { q.Generation = 0 }, ErrBadProxy},
		"length":     {func(q *Proxy) { q.Length++ }, ErrBadProxy},
		"huge":       {func(q *Proxy) { q.Length = 1 << 62 }, ErrBadProxy},
		"generation": {func(q *Proxy) { q.Generation++ }, ErrStaleProxy},
		"segment":    {func(q *Proxy) { q.Segment++ }, ErrStaleProxy},
	} {
		q := p
		tc.mod(&q)
		_, err := s.Resolve(ctx, q)
		wantIs(t, name, err, tc.want)
		if name != "generation" {
			wantIs(t, "Free "+name, s.Free(ctx, q), tc.want)
		}
	}
	_, err = s.Put(ctx, make([]byte, 1<<20+1))
	wantIs(t, "Put over the limit", err, ErrStoreFull)
	_, err = s.Alloc(ctx, 1<<20+1)
	wantIs(t, "Alloc over the limit", err, ErrStoreFull)
	if _, err := s.Alloc(ctx, -1); err == nil {
		t.Fatal("Alloc(-1) succeeded")
	}
	resolveBytes(t, s, p)
}

// rewriteFile rewrites the payload file of p with mod applied to its bytes.
func rewriteFile(t *testing.T, s *FileStore, p Proxy, mod func([]byte) []byte) {
	t.Helper()
	path := s.path(p.Segment)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, mod(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFileStoreTampered(t *testing.T) {
	ctx := t.Context()
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			s := openFS(t, t.TempDir(), WithCompression(c))
			for _, n := range []int{50, 3 * mmapThreshold} {
				data := pattern(uint64(n), n, true)
				put := func() Proxy {
					p, err := s.Put(ctx, data)
					if err != nil {
						t.Fatal(err)
					}
					return p
				}
				check := func(what string, p Proxy, target error) {
					t.Helper()
					_, err := s.Resolve(ctx, p)
					wantIs(t, fmt.Sprintf("%d bytes, %s", n, what), err, target)
				}
				// Every header byte is covered by the header checksum.
				for i := range fileHeaderSize {
					p := put()
					rewriteFile(t, s, p, func(b []byte) []byte { b[i] ^= 0x10; return b })
					check(fmt.Sprintf("header byte %d flipped", i), p, ErrCorrupt)
				}
				p := put()
				rewriteFile(t, s, p, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
				check("last byte flipped", p, ErrCorrupt)
				p = put()
				rewriteFile(t, s, p, func(b []byte) []byte { return b[:len(b)-1] })
				check("truncated by one byte", p, ErrCorrupt)
				p = put()
				rewriteFile(t, s, p, func(b []byte) []byte { return b[:fileHeaderSize/2] })
				check("truncated in the header", p, ErrCorrupt)
				p = put()
				rewriteFile(t, s, p, func(b []byte) []byte { return append(b, 0) })
				check("one byte appended", p, ErrCorrupt)
				p = put()
				rewriteFile(t, s, p, func([]byte) []byte { return nil })
				check("emptied", p, ErrCorrupt)

				// A consistent header (checksums right) that lies. mod
				// returns the new stored bytes, or nil to skip the case
				// (a payload stored uncompressed).
				forge := func(what string, target error, follow bool, mod func(h *fileHeader, data []byte) []byte) {
					t.Helper()
					p := put()
					skip := false
					rewriteFile(t, s, p, func(b []byte) []byte {
						h, err := parseFileHeader(b, 1<<62)
						if err != nil {
							t.Fatal(err)
						}
						stored := mod(&h, bytes.Clone(b[fileHeaderSize:]))
						if stored == nil {
							skip = true
							return b
						}
						h.storedLen = uint64(len(stored))
						h.dataCRC = crc32.Checksum(stored, castagnoli)
						out := make([]byte, fileHeaderSize)
						h.put(out)
						if follow {
							p.Length = h.rawLen
						}
						return append(out, stored...)
					})
					if !skip {
						check(what, p, target)
					}
				}
				forge("raw length over the limit", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte { h.rawLen = 1 << 40; return d })
				forge("other store", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte { h.store[3]++; return d })
				forge("other segment", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte { h.segment++; return d })
				forge("other generation", ErrStaleProxy, false, func(h *fileHeader, d []byte) []byte { h.generation++; return d })
				forge("other length", ErrBadProxy, false, func(h *fileHeader, d []byte) []byte {
					if h.codec == CompressNone {
						h.rawLen--
						return d[1:]
					}
					h.rawLen++
					return d
				})
				forge("deadline on an owned payload", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte { h.deadline = 5; return d })
				forge("unknown codec", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte { h.codec = 7; return d })
				forge("unknown lifetime", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte { h.lifetime = 9; return d })
				forge("stored as long as raw", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte {
					if h.codec == CompressNone {
						return nil
					}
					return make([]byte, h.rawLen)
				})
				forge("garbage compressed bytes", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte {
					if h.codec == CompressNone {
						return nil
					}
					for i := range d {
						d[i] = byte(i * 7)
					}
					return d
				})
				forge("compressed bytes cut short", ErrCorrupt, false, func(h *fileHeader, d []byte) []byte {
					if h.codec == CompressNone {
						return nil
					}
					return d[:len(d)/2]
				})
				forge("decompresses to less than recorded", ErrCorrupt, true, func(h *fileHeader, d []byte) []byte {
					if h.codec == CompressNone {
						return nil
					}
					h.rawLen++
					return d
				})
				// A symbolic link in place of the file is not followed.
				p = put()
				path := s.path(p.Segment)
				os.Remove(path)
				target := filepath.Join(t.TempDir(), "elsewhere")
				os.WriteFile(target, data, 0o600)
				os.Symlink(target, path)
				if _, err := s.Resolve(ctx, p); err == nil {
					t.Fatal("resolved through a symbolic link")
				}
			}
		})
	}
}

func TestFileStoreConcurrent(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	stores := []*FileStore{openFS(t, dir), openFS(t, dir, WithCompression(CompressS2)), openFS(t, dir, WithCompression(CompressZstd))}
	const workers, rounds = 6, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range rounds {
				s, o := stores[r.IntN(len(stores))], stores[r.IntN(len(stores))]
				n := []int{0, 10, 1000, mmapThreshold, 3 * mmapThreshold}[r.IntN(5)]
				seed := uint64(w*rounds + i)
				want := pattern(seed, n, i%2 == 0)
				var p Proxy
				var err error
				life := []PutOption{WithSingleUse(), WithLease(time.Now().Add(time.Minute)), nil}[i%3]
				if i%4 == 0 {
					var l Loan
					if l, err = s.Alloc(ctx, n, life); err == nil {
						copy(l.Bytes(), want)
						p, err = l.Commit()
					}
				} else {
					p, err = s.Put(ctx, want, life)
				}
				if err != nil {
					t.Error(err)
					return
				}
				v, err := o.Resolve(ctx, p)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(v.Bytes(), want) {
					t.Errorf("payload %d resolved to other bytes", seed)
				}
				v.Release()
				if i%3 != 0 {
					if err := o.Free(ctx, p); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if payloads, temps := payloadFiles(t, dir); len(payloads) != 0 || len(temps) != 0 {
		t.Fatalf("left payload files %v and temporary files %v", payloads, temps)
	}
}
