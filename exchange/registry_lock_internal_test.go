package exchange

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/shm"
)

// TestRegistryLockPlanted: the registry file is opened a second time for
// the writers' flock, after it was mapped. Whatever another process put at
// its path meanwhile is refused at once: a FIFO or another special file
// with shm.ErrNotRegular naming it (before, open(2) of a FIFO blocked for
// ever), a regular file that is not the one mapped with
// errRegistryReplaced, and openRegistry then opens what is there now.
func TestRegistryLockPlanted(t *testing.T) {
	for _, k := range append([]plant.Kind{"regular"}, plant.Kinds...) {
		t.Run(string(k), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "root", "ex")
			if err := shm.EnsureDir(dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, shm.RegistryName)
			r, err := openRegistry(dir, 4)
			if err != nil {
				t.Fatal(err)
			}
			r.close()
			seg, err := shm.Open(path, shm.KindRegistry)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			if k == "regular" {
				// A registry made again at the same path: a new file.
				os.Remove(path)
				r, err := openRegistry(dir, 4)
				if err != nil {
					t.Fatal(err)
				}
				r.close()
			} else {
				plant.Plant(t, path, k)
			}
			r, err = plant.Call(t, "attachRegistry", func() (*registry, error) { return attachRegistry(seg) })
			if err == nil {
				r.close()
				t.Fatalf("attachRegistry with a %s at the registry's path: no error", k)
			}
			if k == "regular" {
				if !errors.Is(err, errRegistryReplaced) {
					t.Fatalf("attachRegistry with the registry made again: %v, want errRegistryReplaced", err)
				}
				r, err := openRegistry(dir, 4)
				if err != nil {
					t.Fatalf("openRegistry of the registry made again: %v", err)
				}
				r.close()
				return
			}
			if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), path) {
				t.Fatalf("attachRegistry with a %s at the registry's path: %v, want shm.ErrNotRegular naming it", k, err)
			}
		})
	}
}
