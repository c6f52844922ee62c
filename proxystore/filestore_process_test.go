package proxystore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/childproc"
)

func init() {
	roles["filestore-writer"] = roleFileWriter
	roles["filestore-reader"] = roleFileReader
}

// startChild starts a child process in role; under the race detector the
// child skips the detector's one-second sleep at exit.
func startChild(t *testing.T, role string, args ...string) *childproc.Child {
	t.Helper()
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return childproc.Start(t, role, args...)
}

// writerSize returns the size of payload i of a writer child.
func writerSize(i int) int {
	return []int{0, 7, 1000, mmapThreshold - 1, mmapThreshold, 300_000}[i%6]
}

// roleFileWriter writes payloads pattern(i, writerSize(i), i%2 == 0) into the
// store in args[0] with codec args[1], alternating Put and Alloc, and prints
// "P <i> <proxy payload hex>" for each. It writes args[2] payloads and
// prints "done", or, with 0, writes until it is killed.
func roleFileWriter(args []string) int {
	codec, _ := strconv.Atoi(args[1])
	count, _ := strconv.Atoi(args[2])
	s, err := OpenFileStore(args[0], WithCompression(Compression(codec)), withLoanMapMin(mmapThreshold))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx := context.Background()
	for i := 0; count == 0 || i < count; i++ {
		data := pattern(uint64(i), writerSize(i), i%2 == 0)
		var p Proxy
		if i%2 == 0 {
			p, err = s.Put(ctx, data)
		} else {
			var l Loan
			if l, err = s.Alloc(ctx, len(data)); err == nil {
				copy(l.Bytes(), data)
				p, err = l.Commit()
			}
		}
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Printf("P %d %x\n", i, AppendPayload(nil, p))
	}
	fmt.Println("done")
	return 0
}

// roleFileReader resolves the proxy payloads (hex) it reads, one a line,
// from the store in args[0], and prints "ok <length> <crc32c>" or
// "err <error>" for each.
func roleFileReader(args []string) int {
	s, err := OpenFileStore(args[0])
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		b, err := hex.DecodeString(sc.Text())
		var v View
		if err == nil {
			var p Proxy
			if p, err = ParsePayload(b); err == nil {
				v, err = s.Resolve(context.Background(), p)
			}
		}
		if err != nil {
			fmt.Println("err", err)
			continue
		}
		n, sum := len(v.Bytes()), crc32.Checksum(v.Bytes(), castagnoli)
		if err := v.Release(); err != nil {
			fmt.Println("err", err)
			continue
		}
		fmt.Printf("ok %d %d\n", n, sum)
	}
	return 0
}

// parseWriterLine decodes a "P <i> <hex>" line.
func parseWriterLine(t *testing.T, line string) (int, Proxy) {
	t.Helper()
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "P" {
		t.Fatalf("writer said %q", line)
	}
	i, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(f[2])
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePayload(b)
	if err != nil {
		t.Fatal(err)
	}
	return i, p
}

// One process writes, another resolves, in both directions and with every
// codec.
func TestFileStoreTwoProcesses(t *testing.T) {
	ctx := t.Context()
	for _, c := range codecs {
		t.Run(c.String(), func(t *testing.T) {
			dir := t.TempDir()
			s := openFS(t, dir, WithCompression(c))

			const n = 12
			w := startChild(t, "filestore-writer", dir, strconv.Itoa(int(c)), strconv.Itoa(n))
			for range n {
				line, err := w.Line(20 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				i, p := parseWriterLine(t, line)
				if got, want := resolveBytes(t, s, p), pattern(uint64(i), writerSize(i), i%2 == 0); !bytes.Equal(got, want) {
					t.Fatalf("payload %d from the writer child: %d bytes that differ", i, len(got))
				}
			}
			if line, _ := w.Line(20 * time.Second); line != "done" {
				t.Fatalf("writer said %q", line)
			}
			if err := w.Wait(20 * time.Second); err != nil {
				t.Fatal(err)
			}

			r := startChild(t, "filestore-reader", dir)
			if line, err := r.Line(20 * time.Second); line != "ready" {
				t.Fatalf("reader said %q, %v", line, err)
			}
			for i := range n {
				data := pattern(uint64(i+100), writerSize(i), i%3 == 0)
				p, err := s.Put(ctx, data, WithSingleUse())
				if err != nil {
					t.Fatal(err)
				}
				if err := r.Send(hex.EncodeToString(AppendPayload(nil, p))); err != nil {
					t.Fatal(err)
				}
				line, err := r.Line(20 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("ok %d %d", len(data), crc32.Checksum(data, castagnoli)); line != want {
					t.Fatalf("reader said %q, want %q", line, want)
				}
				// The reader released it: the single-use file is gone.
				_, err = s.Resolve(ctx, p)
				wantIs(t, "Resolve of a payload the reader used", err, ErrStaleProxy)
			}
			r.CloseStdin()
			if err := r.Wait(20 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkStoreFiles resolves every payload file in the store's directory:
// whatever happened to the writers, a file under its final name is whole.
func checkStoreFiles(t *testing.T, s *FileStore) int {
	t.Helper()
	payloads, _ := payloadFiles(t, s.Dir())
	for _, name := range payloads {
		seg, err := strconv.ParseUint(name[len(filePrefix):], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(s.path(seg))
		if err != nil {
			t.Fatal(err)
		}
		h, err := parseFileHeader(b, 1<<40)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resolveBytes(t, s, h.proxy())
	}
	return len(payloads)
}

// A writer killed at random moments leaves only whole payload files, and
// temporary files that Sweep removes.
func TestFileStoreWriterKilled(t *testing.T) {
	for round := range 4 {
		c := codecs[round%len(codecs)]
		dir := t.TempDir()
		s := openFS(t, dir)
		w := startChild(t, "filestore-writer", dir, strconv.Itoa(int(c)), "0")
		var got []string
		want := 1 + rand.IntN(20)
		for len(got) < want {
			line, err := w.Line(20 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, line)
		}
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		w.Kill()
		for _, line := range got {
			i, p := parseWriterLine(t, line)
			if b := resolveBytes(t, s, p); !bytes.Equal(b, pattern(uint64(i), writerSize(i), i%2 == 0)) {
				t.Fatalf("payload %d of the killed writer differs", i)
			}
		}
		files := checkStoreFiles(t, s)
		_, temps := payloadFiles(t, dir)
		removed, err := s.Sweep(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, left := payloadFiles(t, dir); removed != len(temps) || len(left) != 0 {
			t.Fatalf("Sweep removed %d of the temporary files %v; left %v", removed, temps, left)
		}
		t.Logf("round %d (%v): killed after %d payloads, %d files whole, %d temporary files swept", round, c, len(got), files, removed)
	}
}
