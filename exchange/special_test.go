package exchange_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/shm"
)

// wantNotRegular fails the test unless err is shm.ErrNotRegular naming
// path.
func wantNotRegular(t *testing.T, what string, err error, path string) {
	t.Helper()
	if !errors.Is(err, shm.ErrNotRegular) || !strings.Contains(err.Error(), path) {
		t.Errorf("%s: %v, want shm.ErrNotRegular naming %s", what, err, path)
	}
}

// TestSHMSpecialRegistry: a FIFO (or any file shmex never makes) where
// the registry is expected fails Open with shm.ErrNotRegular naming it, at
// once, instead of blocking it in open(2).
func TestSHMSpecialRegistry(t *testing.T) {
	for _, k := range plant.Kinds {
		t.Run(string(k), func(t *testing.T) {
			// Under the temporary directory: a socket is planted by a
			// rename from there, which must not cross file systems.
			root := filepath.Join(t.TempDir(), "root")
			dir := filepath.Join(root, "planted")
			if err := shm.EnsureDir(dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, shm.RegistryName)
			plant.Plant(t, path, k)
			x, err := plant.Call(t, "Open", func() (*exchange.SHM, error) {
				return exchange.Open("planted", exchange.WithRoot(root), exchange.WithLogger(discardLog))
			})
			if err == nil {
				x.Close()
			}
			wantNotRegular(t, "Open", err, path)
		})
	}
}

// TestSHMSpecialRing: a FIFO put where an active mailbox's ring is
// expected fails a send to it with shm.ErrNotRegular naming it, at once.
func TestSHMSpecialRing(t *testing.T) {
	root := testRoot(t)
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, "planted-ring")
	aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Piped"})
	if err != nil {
		t.Fatal(err)
	}
	cid, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := x.RingPath(aid)
	plant.Plant(t, path, plant.FIFO)
	sender := openSHM(t, root, "planted-ring") // no mapping of the ring yet
	err = plant.Within(t, "Send", func() error { return sender.Send(ctx, exchange.NewPingRequest(cid, aid)) })
	wantNotRegular(t, "Send", err, path)
}

// TestSHMSpecialCollect: FIFOs put where Collect opens files (the ring of
// a dead owner's mailbox, a temporary file, a liveness lock file) do not
// stall it: it returns, removes the one at the ring's path (a ring that
// does not validate), and leaves the others.
func TestSHMSpecialCollect(t *testing.T) {
	root := testRoot(t)
	const name = "planted-collect"
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, name)
	aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Piped"})
	if err != nil {
		t.Fatal(err)
	}
	kid := childproc.Start(t, "receiver", root, name, aid.String())
	line(t, kid, "receiver start", childStart)
	kid.Kill() // the mailbox's owner is dead: Collect probes its ring
	ring := x.RingPath(aid)
	plant.Plant(t, ring, plant.FIFO)
	dir := filepath.Dir(ring)
	temp := filepath.Join(dir, shm.TempPrefix+"ring-planted")
	plant.Plant(t, temp, plant.FIFO)
	life := shm.LifePath(dir, 0xfeedf00d)
	plant.Plant(t, life, plant.FIFO)

	st, err := plant.Call(t, "Collect", func() (exchange.CollectStats, error) { return x.Collect(ctx) })
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if _, err := os.Lstat(ring); !errors.Is(err, os.ErrNotExist) || st.Rings != 1 {
		t.Errorf("the FIFO at the dead owner's ring: %v, %d rings collected; want it removed, 1", err, st.Rings)
	}
	for _, p := range []string{temp, life} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("the FIFO at %s: %v; want it left alone", p, err)
		}
	}
	if s, err := x.Status(ctx, aid); err != nil || s != exchange.StatusTerminated {
		t.Errorf("Status after Collect = %v, %v", s, err)
	}
}

// TestSHMSpecialCollectUnnamed: a FIFO at a ring's name that no entry of
// the registry names is a leftover, as one at a named ring's path is
// (TestSHMSpecialCollect): the dry run lists it and Collect removes it.
// (The two disagreed: Collect kept it, the dry run did not list it, while
// a FIFO at a named path went.)
func TestSHMSpecialCollectUnnamed(t *testing.T) {
	root := testRoot(t)
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, "planted-unnamed")
	name := ringFile(exchange.NewClientID())
	path := filepath.Join(x.Dir(), name)
	plant.Plant(t, path, plant.FIFO)

	dry, err := plant.Call(t, "Collect dry run", func() (exchange.CollectStats, error) { return x.Collect(ctx, exchange.DryRun()) })
	if err != nil || !slices.Contains(dry.Removed, name) {
		t.Errorf("dry run: %v, removes %q; want %s among them", err, dry.Removed, name)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the dry run touched the FIFO: %v", err)
	}
	st, err := plant.Call(t, "Collect", func() (exchange.CollectStats, error) { return x.Collect(ctx) })
	if err != nil || !slices.Contains(st.Removed, name) {
		t.Errorf("Collect: %v, removed %q; want %s among them", err, st.Removed, name)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the FIFO at an unnamed ring's name after Collect: %v; want it removed", err)
	}
}
