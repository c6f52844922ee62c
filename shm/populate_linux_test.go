package shm_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

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

// presentPages returns how many pages of m have an entry in this process's
// page table, from /proc/self/pagemap (bit 63 of each page's word: present;
// unprivileged readers see it, only the frame numbers are hidden).
func presentPages(t *testing.T, m []byte) int {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skipf("cannot read the page table: %v", err)
	}
	defer f.Close()
	page := os.Getpagesize()
	words := make([]byte, 8*(len(m)/page))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	if _, err := f.ReadAt(words, int64(base/uintptr(page))*8); err != nil {
		t.Skipf("cannot read the page table: %v", err)
	}
	n := 0
	for i := 0; i < len(words); i += 8 {
		if binary.LittleEndian.Uint64(words[i:])>>63 != 0 {
			n++
		}
	}
	return n
}

// touchPages touches one byte of every page of m after the first (the
// header's, which Open read), writing when write is set, and returns the
// sum of the bytes read. norace: under the race detector a touch would
// otherwise be a call into the race runtime (which ignores memory outside
// Go's heap anyway), making the measured window many times longer.
//
//go:norace
func touchPages(m []byte, page int, write bool) byte {
	var sum byte
	for i := page; i < len(m); i += page {
		if write {
			m[i]++
		} else {
			sum += m[i]
		}
	}
	return sum
}

// TestPopulate: a segment created or opened with Populate has every page of
// its mapping in the page table when Create or Open returns, and the first
// touch of each page takes no page fault; one opened without it has few
// pages mapped and takes about one fault per page (the control, which shows
// that both measures see something).
//
// The page table, read from /proc/self/pagemap, is the exact measure of
// what Populate promises and sees only this mapping. The fault count is
// per thread, and a thread takes faults of its own: under -race on a busy
// machine, the first asynchronous preemption of the thread (SIGURG) costs
// it 20 to 30 minor faults in one burst, which is the race runtime's
// memory first touched on that thread, not the segment's (seen with a
// fault count per page of a loop that touches only pages the page table
// had already: one burst per process at most, landing on any page, gone
// with GODEBUG=asyncpreemptoff=1, never without -race). Such faults only
// add to a count: the count of a fresh mapping is taken a few times and
// the least kept, and the loop is kept short (one touch per page, no race
// instrumentation) so that a preemption seldom lands in it at all.
func TestPopulate(t *testing.T) {
	root := filepath.Join(shm.DefaultRoot(), fmt.Sprintf("test-populate-%d", os.Getpid()))
	dir := filepath.Join(root, "x")
	if err := shm.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	const pages, tries = 1024, 3
	page := os.Getpagesize()
	path := filepath.Join(dir, "seg")
	// Faults are counted per thread: keep the goroutine on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// firstTouch maps a fresh segment with open, checks its page table,
	// and counts the faults of its first touch; the least over tries.
	firstTouch := func(name string, write bool, open func(i int) (*shm.Segment, error)) int64 {
		least := int64(-1)
		for i := range tries {
			s, err := open(i)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if n := presentPages(t, s.Bytes()); n != pages {
				t.Errorf("%s with Populate: %d of %d pages in the page table", name, n, pages)
			}
			before := minorFaults(t)
			touchPages(s.Bytes(), page, write)
			n := minorFaults(t) - before
			s.Close()
			if least < 0 || n < least {
				least = n
			}
			if least == 0 {
				break
			}
		}
		return least
	}
	created := firstTouch("created", true, func(i int) (*shm.Segment, error) {
		return shm.Create(fmt.Sprintf("%s-%d", path, i), shm.KindScratch, int64(pages*page), nil, shm.Populate())
	})
	// The segment the others open: created without Populate and filled
	// through a mapping of its own, closed before they map it.
	c, err := shm.Create(path, shm.KindScratch, int64(pages*page), nil)
	if err != nil {
		t.Fatal(err)
	}
	touchPages(c.Bytes(), page, true)
	c.Close()

	o, err := shm.Open(path, shm.KindScratch)
	if err != nil {
		t.Fatal(err)
	}
	mapped := presentPages(t, o.Bytes())
	before := minorFaults(t)
	touchPages(o.Bytes(), page, true)
	control := minorFaults(t) - before
	o.Close()

	populated := firstTouch("opened", true, func(int) (*shm.Segment, error) {
		return shm.Open(path, shm.KindScratch, shm.Populate())
	})
	readOnly := firstTouch("read-only", false, func(int) (*shm.Segment, error) {
		return shm.Open(path, shm.KindScratch, shm.ReadOnly(), shm.Populate())
	})
	t.Logf("over %d pages: without Populate %d in the page table, %d faults; least faults with Populate (of %d fresh mappings): created %d, opened %d, read-only %d",
		pages, mapped, control, tries, created, populated, readOnly)
	// A kernel with large tmpfs folios maps up to a folio (16 pages of
	// 4 KiB here) per fault: the control then counts fewer faults than
	// pages, but still one per folio.
	if control < 8 || mapped > pages/2 {
		t.Skipf("without Populate the kernel mapped %d of %d pages at once and took %d faults to touch them: nothing to compare", mapped, pages, control)
	}
	for name, n := range map[string]int64{"created": created, "opened": populated, "read-only": readOnly} {
		if n > control/8 {
			t.Errorf("%s with Populate: %d faults over %d pages, against %d without", name, n, pages-1, control)
		}
	}
}
