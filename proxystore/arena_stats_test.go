package proxystore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/childproc"
)

func init() { roles["arena-stats-owner"] = arenaStatsOwnerRole }

// arenaStatsOwnerRole opens an arena in dir (args[0], 1 MiB segments) and
// puts one payload of each size given in args[1:]; it prints "ready
// <liveness id in hex>" and waits to be killed or for stdin to close.
func arenaStatsOwnerRole(args []string) int {
	a, err := OpenArena(args[0], WithSegmentSize(1<<20), WithPrefault(false))
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	defer a.Close()
	for _, s := range args[1:] {
		n, _ := strconv.Atoi(s)
		if _, err := a.Put(context.Background(), make([]byte, n)); err != nil {
			fmt.Println("err", err)
			return 1
		}
	}
	fmt.Printf("ready %x\n", a.LifeID())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
	}
	return 0
}

// totals sums the statistics of the segments of owner.
func totals(segs []SegmentStats, owner uint64) (t SegmentStats, n int) {
	for _, s := range segs {
		if s.Owner != owner {
			continue
		}
		n++
		t.DataBytes += s.DataBytes
		t.InUse += s.InUse
		t.Free += s.Free
		t.Blocks += s.Blocks
		t.Payload += s.Payload
		t.Allocs += s.Allocs
		t.Frees += s.Frees
	}
	return t, n
}

// TestArenaSegmentsStats: the statistics in the segments follow the
// allocator: a slab slot, a chunk run and a single-block segment each
// count their footprint, the blocks and their payload bytes, until they
// are freed or aborted.
func TestArenaSegmentsStats(t *testing.T) {
	dir := arenaDir(t)
	a := openArena(t, dir)
	ctx := context.Background()
	sizes := []int{100, 5000, 40000, 3 << 20}
	// Footprints: a 1 KiB slot, a 6 KiB slot, one 64 KiB chunk, a whole
	// single-block segment of 3 MiB.
	footprint := uint64(1<<10 + 6<<10 + 64<<10 + 3<<20)
	var payload uint64
	var proxies []Proxy
	for _, n := range sizes {
		p, err := a.Put(ctx, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		proxies = append(proxies, p)
		payload += uint64(n)
	}
	loan, err := a.Alloc(ctx, 2000)
	if err != nil {
		t.Fatal(err)
	}
	segs, err := ArenaSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	tot, n := totals(segs, a.LifeID())
	if n != 2 || n != len(segs) {
		t.Fatalf("%d segments of this process, %d in all: %+v", n, len(segs), segs)
	}
	if tot.InUse != footprint+2<<10 || tot.Blocks != 5 || tot.Payload != payload+2000 || tot.Allocs != 5 || tot.Frees != 0 ||
		tot.DataBytes != 1<<20+3<<20 || tot.Free != tot.DataBytes-tot.InUse {
		t.Fatalf("after 5 allocations (%d bytes in use, %d of payload): %+v", footprint+2<<10, payload+2000, tot)
	}
	for _, s := range segs {
		if s.Single != (s.DataBytes == 3<<20) || s.Closed || !strings.HasSuffix(s.Name, ".meta") {
			t.Fatalf("segment %+v", s)
		}
	}
	if err := loan.Abort(); err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies {
		if err := a.Free(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	segs, err = ArenaSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tot, _ := totals(segs, a.LifeID()); tot.InUse != 0 || tot.Blocks != 0 || tot.Payload != 0 || tot.Allocs != 5 || tot.Frees != 5 {
		t.Fatalf("after every block was given back: %+v", tot)
	}
}

// TestArenaSegmentsProcess: a child process owns an arena with payloads of
// known sizes; this process reads their statistics from the child's
// segments; once the child is killed, Collect with DryRun names its
// segment files and removes nothing, and Collect removes exactly those.
func TestArenaSegmentsProcess(t *testing.T) {
	dir := arenaDir(t)
	kid := childproc.Start(t, "arena-stats-owner", dir, "10", "3000", "70000")
	l, err := kid.Line(30 * time.Second)
	id, perr := strconv.ParseUint(strings.TrimPrefix(l, "ready "), 16, 64)
	if err != nil || perr != nil {
		t.Fatalf("child: %q, %v", l, err)
	}
	segs, err := ArenaSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A 1 KiB slot, a 3 KiB slot and a run of two 64 KiB chunks.
	tot, n := totals(segs, id)
	if n != 1 || tot.InUse != 1<<10+3<<10+128<<10 || tot.Blocks != 3 || tot.Payload != 73010 || tot.DataBytes != 1<<20 {
		t.Fatalf("the child's arena: %d segments, %+v", n, tot)
	}
	kid.Kill()
	files := []string{segs[0].Name, strings.TrimSuffix(segs[0].Name, ".meta") + ".data"}
	slices.Sort(files)
	dry, err := Collect(dir, DryRun())
	slices.Sort(dry)
	if err != nil || !slices.Equal(dry, files) {
		t.Fatalf("dry run: %q, %v; want %q", dry, err, files)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("the dry run removed %s: %v", f, err)
		}
	}
	removed, err := Collect(dir)
	slices.Sort(removed)
	if err != nil || !slices.Equal(removed, files) {
		t.Fatalf("Collect removed %q, %v; want %q", removed, err, files)
	}
	if segs, err := ArenaSegments(dir); err != nil || len(segs) != 0 {
		t.Fatalf("after Collect: %+v, %v", segs, err)
	}
}
