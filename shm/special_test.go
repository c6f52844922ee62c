package shm_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/shm"
)

// wantNotRegular fails the test unless err is ErrNotRegular naming path.
func wantNotRegular(t *testing.T, what string, err error, path string) {
	t.Helper()
	if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), path) {
		t.Errorf("%s: %v, want ErrNotRegular naming %s", what, err, path)
	}
}

// TestSpecialFiles: a FIFO, a socket, a symbolic link, a device or a
// directory where a segment or a lock file is expected is refused at
// once with ErrNotRegular naming it, by every function that opens one.
// Before OpenFile, a FIFO blocked them in open(2) for ever.
func TestSpecialFiles(t *testing.T) {
	for _, k := range plant.Kinds {
		t.Run(string(k), func(t *testing.T) {
			dir := testDir(t)
			seg := filepath.Join(dir, "ring-0123")
			plant.Plant(t, seg, k)
			for _, c := range []struct {
				what string
				f    func() error
			}{
				{"Open", func() error { _, err := shm.Open(seg, shm.KindRing); return err }},
				{"Open read-only", func() error { _, err := shm.Open(seg, shm.KindRing, shm.ReadOnly()); return err }},
				{"OpenFile read-only", func() error { _, err := shm.OpenFile(seg, os.O_RDONLY, 0); return err }},
				{"OpenFile read-write", func() error { _, err := shm.OpenFile(seg, os.O_RDWR, 0); return err }},
				{"AlivePath", func() error { _, err := shm.AlivePath(seg); return err }},
			} {
				wantNotRegular(t, c.what, plant.Within(t, c.what, c.f), seg)
			}
			const id = 0x1234
			plant.Plant(t, shm.LifePath(dir, id), k)
			var alive bool
			err := plant.Within(t, "Alive", func() (err error) { alive, err = shm.Alive(dir, id); return err })
			wantNotRegular(t, "Alive", err, shm.LifePath(dir, id))
			if alive {
				t.Error("Alive: a planted lock file reads alive")
			}
		})
	}
}

// TestSpecialDirs: anything but a directory where the exchange directory
// is expected is refused with ErrNotRegular naming it, without blocking.
func TestSpecialDirs(t *testing.T) {
	for _, k := range plant.Kinds {
		if k == plant.Dir {
			continue
		}
		t.Run(string(k), func(t *testing.T) {
			dir := filepath.Join(filepath.Dir(testDir(t)), "y")
			plant.Plant(t, dir, k)
			for _, c := range []struct {
				what string
				f    func() error
			}{
				{"CheckDir", func() error { return shm.CheckDir(dir) }},
				{"EnsureDir", func() error { return shm.EnsureDir(dir) }},
				{"ReadDir", func() error { _, err := shm.ReadDir(dir); return err }},
				{"OpenFile(O_DIRECTORY)", func() error { _, err := shm.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0); return err }},
				{"HoldLife", func() error { _, err := shm.HoldLife(dir); return err }},
				{"Create", func() error { _, err := shm.Create(filepath.Join(dir, "s"), shm.KindRing, 4096, nil); return err }},
			} {
				wantNotRegular(t, c.what, plant.Within(t, c.what, c.f), dir)
			}
		})
	}
}

// TestOpenFile: OpenFile opens regular files and directories as wanted,
// creates exclusively, and says when a file is missing.
func TestOpenFile(t *testing.T) {
	dir := testDir(t)
	path := filepath.Join(dir, "f")
	f, err := shm.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := shm.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, shm.ErrExist) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("exclusive create of an existing file: %v", err)
	}
	f, err = shm.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "hello" {
		t.Fatalf("read %q: %v", b, err)
	}
	f.Close()
	missing := filepath.Join(dir, "missing")
	if _, err := shm.OpenFile(missing, os.O_RDONLY, 0); !errors.Is(err, shm.ErrNotExist) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if ok, err := shm.AlivePath(missing); ok || err != nil {
		t.Fatalf("missing lock file: %v %v", ok, err)
	}
	wantNotRegular(t, "directory where a file is expected", func() error { _, err := shm.OpenFile(dir, os.O_RDONLY, 0); return err }(), dir)
	wantNotRegular(t, "file where a directory is expected", func() error { _, err := shm.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY, 0); return err }(), path)
	entries, err := shm.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "f" {
		t.Fatalf("ReadDir: %v %v", entries, err)
	}
}

// TestSegmentSameFile: a segment knows the file it maps, whether it
// created or opened it; a file put at its path afterwards is not it.
func TestSegmentSameFile(t *testing.T) {
	dir := testDir(t)
	path := filepath.Join(dir, "ring-0456")
	made, err := shm.Create(path, shm.KindRing, shm.HeaderSize+64, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer made.Close()
	opened, err := shm.Open(path, shm.KindRing)
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !made.SameFile(fi) || !opened.SameFile(fi) {
		t.Fatalf("SameFile of the segment's own file: created %v, opened %v", made.SameFile(fi), opened.SameFile(fi))
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("impostor"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err = os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	if made.SameFile(fi) || opened.SameFile(fi) {
		t.Fatal("SameFile takes the file put at the path afterwards for the segment's")
	}
}
