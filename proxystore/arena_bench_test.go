package proxystore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/shm"
	"golang.org/x/sys/unix"
)

func init() {
	roles["arena-bench-reader"] = arenaBenchReaderRole
}

// benchDir returns an exchange directory in /dev/shm (benchmarks measure
// shared memory, not a disk's page cache), removed at the end. It skips the
// benchmark when /dev/shm lacks need bytes.
func benchDir(b *testing.B, need int64) string {
	b.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil {
		b.Skipf("no /dev/shm: %v", err)
	}
	if avail := int64(st.Bavail) * int64(st.Bsize); avail < need {
		b.Skipf("/dev/shm has %d MiB free, the benchmark needs %d MiB", avail>>20, need>>20)
	}
	root, err := os.MkdirTemp("/dev/shm", "shmex-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o700); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(root, "ex")
	if err := shm.EnsureDir(dir); err != nil {
		b.Fatal(err)
	}
	return dir
}

// arenaBenchReaderRole resolves and releases each proxy it reads, timing
// only Resolve+Release, and answers "ok"; on "end" it prints "total NS N".
func arenaBenchReaderRole(args []string) int {
	a, err := OpenArena(args[0], WithPrefault(false))
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	defer a.Close()
	ctx := context.Background()
	fmt.Println("ready")
	out := bufio.NewWriter(os.Stdout)
	var total time.Duration
	n := 0
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "end" {
			fmt.Fprintln(out, "total", total.Nanoseconds(), n)
			out.Flush()
			continue
		}
		p, err := parseProxyHex(sc.Text())
		if err != nil {
			fmt.Fprintln(out, "err", err)
			out.Flush()
			continue
		}
		t0 := time.Now()
		v, err := a.Resolve(ctx, p)
		if err == nil {
			err = v.Release()
		}
		total += time.Since(t0)
		n++
		if err != nil {
			fmt.Fprintln(out, "err", err)
		} else {
			fmt.Fprintln(out, "ok")
		}
		out.Flush()
	}
	return 0
}

// BenchmarkArenaResolve passes a loaned payload to another process: the
// parent Allocs and Commits a single-use block (no byte is written), the
// child Resolves and Releases it (no byte is read), and the block is reused
// at the next iteration. ns/op includes the pipe round trip that carries the
// proxy; alloc-ns/op and resolve-ns/op are the two sides' own costs, which
// must not depend on the payload size (zero copies, no per-byte work).
func BenchmarkArenaResolve(b *testing.B) {
	for _, c := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}, {"64MiB", 64 << 20}, {"1GiB", 1 << 30}} {
		b.Run(c.name, func(b *testing.B) {
			dir := benchDir(b, int64(c.n)+int64(c.n)/2+(64<<20))
			ctx := context.Background()
			a, err := OpenArena(dir, WithMaxBytes(int64(c.n)+(64<<20)))
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			kid := childproc.Start(b, "arena-bench-reader", dir)
			if l, err := kid.Line(30 * time.Second); err != nil || l != "ready" {
				b.Fatalf("child: %q %v", l, err)
			}
			round := func() time.Duration {
				t0 := time.Now()
				l, err := a.Alloc(ctx, c.n, WithSingleUse())
				if err != nil {
					b.Fatal(err)
				}
				p, err := l.Commit()
				if err != nil {
					b.Fatal(err)
				}
				d := time.Since(t0)
				if err := kid.Send(proxyHex(p)); err != nil {
					b.Fatal(err)
				}
				if l, err := kid.Line(30 * time.Second); err != nil || l != "ok" {
					b.Fatalf("child: %q %v", l, err)
				}
				return d
			}
			round() // creates the segment and maps it on both sides
			var alloc time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				alloc += round()
			}
			b.StopTimer()
			kid.Send("end")
			l, err := kid.Line(30 * time.Second)
			var total int64
			var n int
			if err == nil {
				_, err = fmt.Sscanf(l, "total %d %d", &total, &n)
			}
			if err != nil {
				b.Fatalf("child: %q %v", l, err)
			}
			b.ReportMetric(float64(alloc.Nanoseconds())/float64(b.N), "alloc-ns/op")
			b.ReportMetric(float64(total)/float64(n), "resolve-ns/op")
		})
	}
}

// BenchmarkArenaPut measures Put bandwidth (a Put and a Free of the same
// block each iteration) against a plain copy() of the same size between
// heap buffers, timed in the same loop: put-MB/s, copy-MB/s and their ratio
// put/copy-%.
func BenchmarkArenaPut(b *testing.B) {
	for _, c := range []struct {
		name string
		n    int
	}{{"64KiB", 64 << 10}, {"1MiB", 1 << 20}, {"16MiB", 16 << 20}, {"64MiB", 64 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			dir := benchDir(b, 3*int64(c.n)+(64<<20))
			ctx := context.Background()
			a, err := OpenArena(dir, WithMaxBytes(int64(c.n)+(64<<20)))
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			src := make([]byte, c.n)
			arenaPattern(src, 1)
			dst := make([]byte, c.n)
			copy(dst, src)
			put := func() time.Duration {
				t0 := time.Now()
				p, err := a.Put(ctx, src)
				if err != nil {
					b.Fatal(err)
				}
				d := time.Since(t0)
				if err := a.Free(ctx, p); err != nil {
					b.Fatal(err)
				}
				return d
			}
			put()
			var tp, tc time.Duration
			b.SetBytes(int64(c.n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tp += put()
				t0 := time.Now()
				copy(dst, src)
				tc += time.Since(t0)
			}
			b.StopTimer()
			mbs := func(d time.Duration) float64 { return float64(c.n) * float64(b.N) / d.Seconds() / 1e6 }
			b.ReportMetric(mbs(tp), "put-MB/s")
			b.ReportMetric(mbs(tc), "copy-MB/s")
			b.ReportMetric(100*tc.Seconds()/tp.Seconds(), "put/copy-%")
		})
	}
}
