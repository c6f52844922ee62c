package shm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/shm"
)

// stuckCreator creates a segment in the directory args[0] and, while it
// fills it in, says so and waits for ever: the parent kills it there.
func stuckCreator(args []string) int {
	_, err := shm.Create(filepath.Join(args[0], "seg"), shm.KindScratch, 1<<16, func([]byte) error {
		fmt.Println("filling")
		select {}
	})
	fmt.Println("create:", err)
	return 1
}

// temps returns the temporary files in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if shm.IsTemp(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestRemoveAbandonedTemp: the temporary file of a creator killed while it
// made a segment is removed at once, with no grace period; one whose
// creator is at work is left alone.
func TestRemoveAbandonedTemp(t *testing.T) {
	dir := testDir(t)
	for i := 0; i < 3; i++ {
		c := childproc.Start(t, "creator", dir)
		if l, err := c.Line(30 * time.Second); err != nil || l != "filling" {
			t.Fatalf("creator said %q, %v", l, err)
		}
		tmp := temps(t, dir)
		if len(tmp) != 1 {
			t.Fatalf("temporary files while creating: %v", tmp)
		}
		path := filepath.Join(dir, tmp[0])
		// At work: left alone.
		if removed, err := shm.RemoveAbandonedTemp(path); removed || err != nil {
			t.Fatalf("temp of a live creator: removed %v, %v", removed, err)
		}
		c.Kill()
		if removed, err := shm.RemoveAbandonedTemp(path); !removed || err != nil {
			t.Fatalf("temp of a killed creator: removed %v, %v", removed, err)
		}
		if left := temps(t, dir); len(left) != 0 {
			t.Fatalf("left after removal: %v", left)
		}
	}
	// A published segment's temporary name is gone: nothing to remove.
	s, err := shm.Create(filepath.Join(dir, "seg"), shm.KindScratch, 1<<16, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if removed, err := shm.RemoveAbandonedTemp(filepath.Join(dir, shm.TempPrefix+"seg-0000")); removed || err != nil {
		t.Fatalf("missing temp: removed %v, %v", removed, err)
	}
	// A lock file is made under a temporary name too, locked from the start.
	l, err := shm.HoldLife(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if left := temps(t, dir); len(left) != 0 {
		t.Fatalf("temporary files after HoldLife: %v", left)
	}
	// A FIFO with a temporary name is refused, not opened for ever.
	fifo := filepath.Join(dir, shm.TempPrefix+"fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := shm.RemoveAbandonedTemp(fifo); err == nil || !strings.Contains(err.Error(), "fifo") {
		t.Fatalf("FIFO: %v", err)
	}
}

// TestCreateRacesCollector: segments created while another goroutine
// removes every abandoned temporary file it sees all come out whole. The
// collector may catch a temporary file between its creator's open and its
// lock (and remove it): the creator then starts again under another name.
func TestCreateRacesCollector(t *testing.T) {
	dir := testDir(t)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		removed := 0
		for {
			select {
			case <-stop:
				done <- removed
				return
			default:
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if shm.IsTemp(e.Name()) {
					if ok, _ := shm.RemoveAbandonedTemp(filepath.Join(dir, e.Name())); ok {
						removed++
					}
				}
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	n := 0
	for ; n < 300 && time.Now().Before(deadline); n++ {
		s, err := shm.Create(filepath.Join(dir, fmt.Sprintf("seg%d", n)), shm.KindScratch, 1<<16, nil)
		if err != nil {
			t.Fatalf("create %d: %v", n, err)
		}
		s.Close()
	}
	close(stop)
	removed := <-done
	for i := 0; i < n; i++ {
		s, err := shm.Open(filepath.Join(dir, fmt.Sprintf("seg%d", i)), shm.KindScratch)
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		s.Close()
	}
	if left := temps(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	t.Logf("%d segments created beside the collector, which caught %d temporary files in the making", n, removed)
}

// TestCreatedSegmentUnlocked: a published segment carries no lock of its
// creator's, even while the creator maps it (a mapping holds the open file
// description, whose flock would otherwise outlive the descriptor): the
// registry is a segment that its writers flock.
func TestCreatedSegmentUnlocked(t *testing.T) {
	dir := testDir(t)
	path := filepath.Join(dir, "seg")
	s, err := shm.Create(path, shm.KindScratch, 1<<16, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock of a segment its creator maps: %v", err)
	}
}
