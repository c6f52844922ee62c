package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

// Issue 15: a FIFO (or socket, device, link, directory) where a shmex file
// is expected froze every process of the exchange in open(2). These tests
// plant one where each kind of file is expected and check that the calls of
// the public API and the commands return within plant.Bound, and that the
// commands name the file.

// wantFileError fails the test unless the command failed (exit 1) and its
// standard error names path.
func wantFileError(t *testing.T, what string, code int, stderr, path string) {
	t.Helper()
	if code != exitError || !strings.Contains(stderr, path) || !strings.Contains(stderr, "not a regular file") {
		t.Errorf("%s: exit %d, stderr %q; want exit 1 and %s named as not a regular file", what, code, stderr, path)
	}
}

// TestSpecialRegistry: the registry.
func TestSpecialRegistry(t *testing.T) {
	for _, k := range plant.Kinds {
		t.Run(string(k), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			x, err := exchange.Open("lab", exchange.WithRoot(root))
			if err != nil {
				t.Fatal(err)
			}
			reg := filepath.Join(x.Dir(), shm.RegistryName)
			x.Close()
			plant.Plant(t, reg, k)

			err = plant.Within(t, "exchange.Open", func() error {
				x, err := exchange.Open("lab", exchange.WithRoot(root))
				if err == nil {
					x.Close()
				}
				return err
			})
			if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), reg) {
				t.Errorf("exchange.Open: %v, want ErrNotRegular naming %s", err, reg)
			}
			code, out, errs := shmex(t, "--root", root, "ls")
			wantFileError(t, "ls", code, errs, reg)
			if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 5 || f[0] != "lab" || f[3] != "?" || f[4] != "?" {
				t.Errorf("ls row %q: want lab with unknown counts", f)
			}
			code, _, errs = shmex(t, "--root", root, "ls", "lab")
			wantFileError(t, "ls lab", code, errs, reg)
			code, out, _ = shmex(t, "--root", root, "ls", "--json")
			var got []exchangeInfo
			if err := json.Unmarshal([]byte(out), &got); err != nil || code != exitError || len(got) != 1 ||
				len(got[0].Errors) == 0 || !strings.Contains(got[0].Errors[0], reg) {
				t.Errorf("ls --json: exit %d, %+v, %v; want the registry named in errors", code, got, err)
			}
			for _, args := range [][]string{{"gc"}, {"gc", "lab"}, {"gc", "--dry-run"}} {
				code, _, errs := shmex(t, append([]string{"--root", root}, args...)...)
				wantFileError(t, strings.Join(args, " "), code, errs, reg)
			}
			if code, _, errs := shmex(t, "--root", root, "rm", "lab"); code != exitOK {
				t.Errorf("rm of an exchange with a bad registry and no process: %d %q", code, errs)
			}
		})
	}
}

// TestSpecialLockFile: the lock files of a live process. Status, Discover
// and Send to its agent, the arena store and the commands return; the
// commands name the files; nothing of the live process is removed.
func TestSpecialLockFile(t *testing.T) {
	for _, k := range []plant.Kind{plant.FIFO, plant.Socket, plant.Symlink} {
		t.Run(string(k), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			ctx := context.Background()
			kid, agent := startOwner(t, root, "lab")
			dir := filepath.Join(root, "lab")
			locks := lockFiles(t, dir, kid.Cmd.Process.Pid)
			if len(locks) != 2 {
				t.Fatalf("child's lock files %q, want 2", locks)
			}
			for _, l := range locks {
				plant.Plant(t, filepath.Join(dir, l), k)
			}
			files := fileNames(t, dir)

			x, err := exchange.Open("lab", exchange.WithRoot(root))
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			client, err := x.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var st exchange.Status
			if err := plant.Within(t, "Status", func() (err error) { st, err = x.Status(ctx, agent); return err }); err != nil || st != exchange.StatusActive {
				t.Errorf("Status of the live child's agent: %v %v, want active", st, err)
			}
			var found []exchange.EntityID
			if err := plant.Within(t, "Discover", func() (err error) { found, err = x.Discover(ctx, "Doomed", false); return err }); err != nil || len(found) != 1 {
				t.Errorf("Discover: %v %v, want the child's agent", found, err)
			}
			if err := plant.Within(t, "Send", func() error { return x.Send(ctx, exchange.NewPingRequest(client, agent)) }); err != nil {
				t.Errorf("Send to the live child's agent: %v", err)
			}
			if err := plant.Within(t, "proxystore.OpenArena", func() error {
				a, err := proxystore.OpenArena(dir)
				if err == nil {
					a.Close()
				}
				return err
			}); err != nil {
				t.Errorf("OpenArena: %v", err)
			}
			if _, err := plant.Call(t, "proxystore.Collect", func() ([]string, error) { return proxystore.Collect(dir) }); err != nil {
				t.Errorf("proxystore.Collect: %v", err)
			}
			x.Close()

			code, _, errs := shmex(t, "--root", root, "ls", "lab")
			for _, l := range locks {
				wantFileError(t, "ls lab", code, errs, filepath.Join(dir, l))
			}
			code, _, errs = shmex(t, "--root", root, "gc")
			for _, l := range locks {
				wantFileError(t, "gc", code, errs, filepath.Join(dir, l))
			}
			code, _, errs = shmex(t, "--root", root, "rm", "lab")
			if !strings.Contains(errs, "remove lab") || !strings.Contains(errs, "-f removes it anyway") {
				t.Errorf("rm: %q, want a refusal", errs)
			}
			for _, l := range locks {
				wantFileError(t, "rm", code, errs, filepath.Join(dir, l))
			}
			after := fileNames(t, dir)
			for _, f := range files {
				if !strings.HasPrefix(f, shm.LivePrefix) && !strings.HasPrefix(f, shm.RingPrefix) && !strings.HasPrefix(f, shm.ArenaPrefix) {
					continue
				}
				if !slices.Contains(after, f) {
					t.Errorf("%s of the live child was removed", f)
				}
			}
		})
	}
}

// TestSpecialRingAndArena: a mailbox's ring and the arena store's files.
func TestSpecialRingAndArena(t *testing.T) {
	for _, k := range []plant.Kind{plant.FIFO, plant.Socket, plant.Symlink, plant.Device} {
		t.Run(string(k), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			ctx := context.Background()
			x1, err := exchange.Open("lab", exchange.WithRoot(root))
			if err != nil {
				t.Fatal(err)
			}
			defer x1.Close()
			agent, err := x1.RegisterAgent(ctx, exchange.Behavior{Name: "A"})
			if err != nil {
				t.Fatal(err)
			}
			var ring string
			for _, f := range fileNames(t, x1.Dir()) {
				if strings.HasPrefix(f, shm.RingPrefix) {
					ring = filepath.Join(x1.Dir(), f)
				}
			}
			if ring == "" {
				t.Fatal("no ring file")
			}
			plant.Plant(t, ring, k)
			x2, err := exchange.Open("lab", exchange.WithRoot(root)) // a handle with no mapping cached
			if err != nil {
				t.Fatal(err)
			}
			defer x2.Close()
			client, err := x2.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = plant.Within(t, "Send", func() error { return x2.Send(ctx, exchange.NewPingRequest(client, agent)) })
			if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), ring) {
				t.Errorf("Send to a mailbox whose ring is a %s: %v, want ErrNotRegular naming %s", k, err, ring)
			}
			err = plant.Within(t, "Mailbox", func() error {
				mb, err := x2.Mailbox(ctx, agent)
				if err == nil {
					mb.Close()
				}
				return err
			})
			if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), ring) {
				t.Errorf("Mailbox whose ring is a %s: %v, want ErrNotRegular naming %s", k, err, ring)
			}

			seg := filepath.Join(x1.Dir(), shm.ArenaPrefix+"00000000000000ab.meta")
			plant.Plant(t, seg, k)
			_, err = plant.Call(t, "proxystore.Collect", func() ([]string, error) { return proxystore.Collect(x1.Dir()) })
			if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), seg) {
				t.Errorf("proxystore.Collect with an arena segment that is a %s: %v, want ErrNotRegular naming %s", k, err, seg)
			}
			store := filepath.Join(x1.Dir(), shm.ArenaPrefix+"store")
			plant.Plant(t, store, k)
			err = plant.Within(t, "proxystore.OpenArena", func() error {
				a, err := proxystore.OpenArena(x1.Dir())
				if err == nil {
					a.Close()
				}
				return err
			})
			if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), store) {
				t.Errorf("OpenArena with a store descriptor that is a %s: %v, want ErrNotRegular naming %s", k, err, store)
			}
			code, _, errs := shmex(t, "--root", root, "gc")
			wantFileError(t, "gc", code, errs, seg)
		})
	}
}

// TestSpecialRoot: the root or an exchange directory is not a directory.
func TestSpecialRoot(t *testing.T) {
	for _, k := range []plant.Kind{plant.FIFO, plant.Socket, plant.Symlink} {
		t.Run(string(k), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			plant.Plant(t, root, k)
			for _, args := range [][]string{{"ls"}, {"gc"}} {
				code, _, errs := shmex(t, append([]string{"--root", root}, args...)...)
				wantFileError(t, strings.Join(args, " "), code, errs, root)
			}
			root = filepath.Join(t.TempDir(), "root")
			if err := shm.EnsureDir(filepath.Join(root, "x")); err != nil {
				t.Fatal(err)
			}
			lab := filepath.Join(root, "lab")
			plant.Plant(t, lab, k)
			for _, args := range [][]string{{"ls", "lab"}, {"gc", "lab"}, {"rm", "lab"}} {
				code, _, errs := shmex(t, append([]string{"--root", root}, args...)...)
				wantFileError(t, strings.Join(args, " "), code, errs, lab)
			}
			if _, err := os.Lstat(lab); err != nil {
				t.Errorf("rm removed what was not an exchange: %v", err)
			}
		})
	}
}
