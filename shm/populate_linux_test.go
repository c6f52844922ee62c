package shm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/shmex/shmex/shm"
	"golang.org/x/sys/unix"
)

// minorFaults returns the minor page faults the calling thread has taken.
func minorFaults(t *testing.T) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// TestPopulate: a segment opened (or created) with Populate takes no page
// fault on the first write to each of its pages; one opened without it
// takes about one per page (the control, which shows that the count
// measures something).
func TestPopulate(t *testing.T) {
	root := filepath.Join(shm.DefaultRoot(), fmt.Sprintf("test-populate-%d", os.Getpid()))
	dir := filepath.Join(root, "x")
	if err := shm.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	const pages = 1024
	page := os.Getpagesize()
	path := filepath.Join(dir, "seg")
	c, err := shm.Create(path, shm.KindScratch, int64(pages*page), nil, shm.Populate())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Faults are counted per thread: keep the goroutine on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	writeAll := func(s *shm.Segment) int64 {
		b := s.Bytes()
		before := minorFaults(t)
		for i := page; i < len(b); i += page {
			b[i]++
		}
		return minorFaults(t) - before
	}
	created := writeAll(c)
	o, err := shm.Open(path, shm.KindScratch)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	control := writeAll(o)
	p, err := shm.Open(path, shm.KindScratch, shm.Populate())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	populated := writeAll(p)
	r, err := shm.Open(path, shm.KindScratch, shm.ReadOnly(), shm.Populate())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before := minorFaults(t)
	var sum byte
	for _, v := range r.Bytes()[page:] {
		sum += v
	}
	readOnly := minorFaults(t) - before
	t.Logf("faults over %d pages: created with Populate %d, opened without %d, with %d, read-only with %d (sum %d)",
		pages-1, created, control, populated, readOnly, sum)
	// A kernel with large tmpfs folios maps up to a folio (16 pages of
	// 4 KiB here) per fault: the control then counts fewer faults than
	// pages, but still one per folio.
	if control < 8 {
		t.Skipf("the kernel took %d faults for %d pages without Populate: nothing to compare", control, pages-1)
	}
	for name, n := range map[string]int64{"created": created, "opened": populated, "read-only": readOnly} {
		if n > control/8 {
			t.Errorf("%s with Populate: %d faults over %d pages, against %d without", name, n, pages-1, control)
		}
	}
}
