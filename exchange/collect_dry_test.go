package exchange_test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/shm"
)

// sameCounts compares the counts of two CollectStats (not the names).
func sameCounts(a, b exchange.CollectStats) bool {
	return a.Rings == b.Rings && a.Lives == b.Lives && a.Temps == b.Temps
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// TestSHMCollectDryRun: with DryRun, Collect names every file it would
// remove (the ring of a dead owner's mailbox, the dead process's lock
// file, an abandoned temporary file, a ring no entry names) and removes,
// terminates and repairs nothing; the Collect that follows removes exactly
// those files and names them.
func TestSHMCollectDryRun(t *testing.T) {
	root := testRoot(t)
	const name = "collectdry"
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, name)
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Mailbox(ctx, client); err != nil {
		t.Fatal(err)
	}
	kid := childproc.Start(t, "owner", root, name, "4096")
	agent := parseIDs(t, line(t, kid, "owner start", childStart)[1])[0]
	if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "work", []byte("queued"))); err != nil {
		t.Fatal(err)
	}
	dir := x.Dir()
	old := time.Now().Add(-time.Hour)
	abandoned := ".tmp-ring-abandoned"
	orphan := shm.RingPrefix + hex.EncodeToString(make([]byte, 16))
	for _, f := range []string{abandoned, orphan} {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	fresh := filepath.Join(dir, ".tmp-ring-fresh") // its creator at work
	if err := os.WriteFile(fresh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ff, err := os.Open(fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	if err := unix.Flock(int(ff.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	kid.Kill()
	lives, err := shm.Lives(dir)
	if err != nil {
		t.Fatal(err)
	}
	var deadLock string
	for _, l := range lives {
		if !l.Alive {
			deadLock = filepath.Base(l.Path)
		}
	}
	if deadLock == "" {
		t.Fatalf("no dead lock file among %+v", lives)
	}
	want := []string{abandoned, deadLock, shm.RingPrefix + hex.EncodeToString(agent.UUID[:]), orphan}
	slices.Sort(want)

	before := dirNames(t, dir)
	dry, err := x.Collect(ctx, exchange.DryRun())
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(dry.Removed))
	if !slices.Equal(got, want) || !sameCounts(dry, exchange.CollectStats{Rings: 2, Lives: 1, Temps: 1}) {
		t.Fatalf("dry run would remove %q (%+v), want %q", got, dry, want)
	}
	if after := dirNames(t, dir); !slices.Equal(after, before) {
		t.Fatalf("a dry run changed the directory: %q, then %q", before, after)
	}
	// Nor did it terminate the dead owner's mailbox: its ring is open.
	ms, err := x.MailboxStats(ctx, agent)
	if err != nil || !ms.HasRing || ms.Closed || ms.Status != exchange.StatusTerminated {
		t.Fatalf("the dead owner's mailbox after a dry run: %+v, %v", ms, err)
	}
	if again, err := x.Collect(ctx, exchange.DryRun()); err != nil || !slices.Equal(slices.Sorted(slices.Values(again.Removed)), want) {
		t.Fatalf("a second dry run: %q, %v", again.Removed, err)
	}

	st, err := x.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(st.Removed)); !slices.Equal(got, want) || !sameCounts(st, dry) {
		t.Fatalf("Collect removed %q (%+v), the dry run said %q", got, st, want)
	}
	for _, f := range want {
		if _, err := os.Lstat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", f, err)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary file was removed: %v", err)
	}
	if dry, err := x.Collect(ctx, exchange.DryRun()); err != nil || len(dry.Removed) != 0 {
		t.Errorf("dry run after Collect: %q, %v; want nothing", dry.Removed, err)
	}
}
