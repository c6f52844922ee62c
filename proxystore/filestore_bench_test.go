package proxystore

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkFileStore measures a Put (or Alloc and Commit) followed by a
// Resolve and Release of a single-use payload, per codec and size; the
// payload is half text, half random bytes.
func BenchmarkFileStore(b *testing.B) {
	ctx := context.Background()
	for _, c := range codecs {
		for _, n := range []int{4 << 10, 1 << 20, 16 << 20} {
			data := append(pattern(1, n/2, true), pattern(2, n-n/2, false)...)
			for _, loan := range []bool{false, true} {
				op := "Put"
				if loan {
					op = "Alloc"
				}
				b.Run(fmt.Sprintf("%v/%s/%dKiB", c, op, n>>10), func(b *testing.B) {
					// The default options (openFS lowers the mapped-loan
					// threshold for the tests).
					s, err := OpenFileStore(b.TempDir(), WithCompression(c))
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					b.SetBytes(int64(n))
					for b.Loop() {
						var p Proxy
						var err error
						if loan {
							var l Loan
							if l, err = s.Alloc(ctx, n, WithSingleUse()); err == nil {
								copy(l.Bytes(), data)
								p, err = l.Commit()
							}
						} else {
							p, err = s.Put(ctx, data, WithSingleUse())
						}
						if err != nil {
							b.Fatal(err)
						}
						v, err := s.Resolve(ctx, p)
						if err != nil {
							b.Fatal(err)
						}
						v.Release()
					}
				})
			}
		}
	}
}
