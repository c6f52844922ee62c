package proxystore

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/shm"
)

// TestFileStoreSpecialFiles: a FIFO (or a socket, a symbolic link, a
// device, a directory) that another process of the user put where the
// file store expects one of its files fails the call that opens it at
// once, with shm.ErrNotRegular naming the path, instead of blocking it in
// open(2): the store's id file (OpenFileStore), a payload file (Resolve,
// also ErrCorrupt); Sweep skips such files, and a lock file of the same
// kind, and returns.
func TestFileStoreSpecialFiles(t *testing.T) {
	ctx := context.Background()
	for _, k := range plant.Kinds {
		t.Run(string(k), func(t *testing.T) {
			fresh := t.TempDir()
			id := filepath.Join(fresh, fileIDName)
			plant.Plant(t, id, k)
			s, err := plant.Call(t, "OpenFileStore", func() (*FileStore, error) { return OpenFileStore(fresh) })
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), id) {
				t.Errorf("OpenFileStore with a %s as the id file: %v, want shm.ErrNotRegular naming it", k, err)
			}

			dir := t.TempDir()
			s = openFS(t, dir, WithFileLogger(slog.New(slog.DiscardHandler))) // Sweep warns of what it skips
			p, err := s.Put(ctx, pattern(1, 4096, false))
			if err != nil {
				t.Fatal(err)
			}
			path := s.path(p.Segment)
			plant.Plant(t, path, k)
			v, err := plant.Call(t, "Resolve", func() (View, error) { return s.Resolve(ctx, p) })
			if err == nil {
				v.Release()
			}
			if !errors.Is(err, ErrCorrupt) || !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), path) {
				t.Errorf("Resolve of a %s: %v, want ErrCorrupt and shm.ErrNotRegular naming it", k, err)
			}
			plant.Plant(t, shm.LifePath(filepath.Join(dir, fileLiveDir), 0xfeedf00d), k)
			n, err := plant.Call(t, "Sweep", func() (int, error) { return s.Sweep(ctx) })
			if err != nil || n != 0 {
				t.Errorf("Sweep with a %s planted: %d removed, %v; want 0, nil", k, n, err)
			}
			if _, err := os.Lstat(path); err != nil {
				t.Errorf("Sweep removed the planted %s: %v", k, err)
			}
		})
	}
}
