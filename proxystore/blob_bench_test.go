package proxystore

import (
	"testing"
)

// BenchmarkBlobLoop is the work a Blob argument adds to a call, in one
// process: the sender lends, fills a stamp and encodes; the receiver
// decodes (resolving with a second arena of the directory, as another
// process would: its owner's liveness checked with a flock) and releases.
func BenchmarkBlobLoop(b *testing.B) {
	for _, n := range []int{1 << 10, 64 << 20} {
		b.Run(sizeLabel(n), func(b *testing.B) {
			dir := benchDir(b, 3*int64(n)+64<<20)
			owner := openArena(b, dir, WithMaxBytes(4*int64(n)+64<<20), WithSegmentSize(16<<20))
			reader := openArena(b, dir)
			ctx := b.Context()
			buf := make([]byte, 0, ProxyEncodedSize)
			b.ReportAllocs()
			for b.Loop() {
				bl, err := AllocBlob(ctx, owner, n)
				if err != nil {
					b.Fatal(err)
				}
				p := bl.Bytes()
				p[0], p[len(p)-1] = 1, 2
				enc, err := bl.MarshalMsg(buf[:0])
				if err != nil {
					b.Fatal(err)
				}
				q, f, err := ParseProxy(enc)
				if err != nil || f != FormBytes {
					b.Fatal(err)
				}
				v, err := reader.Resolve(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				if err := v.Release(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func sizeLabel(n int) string {
	if n >= 1<<20 {
		return itoa(n>>20) + "MiB"
	}
	return itoa(n>>10) + "KiB"
}

func itoa(n int) string {
	s := ""
	for ; n > 0 || s == ""; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}
