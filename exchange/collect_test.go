package exchange_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// TestSHMCollect: a child owns an agent's mailbox and is killed; Collect
// removes its ring segment and its liveness file, and afterwards the
// mailbox reads as terminated everywhere: Send fails with
// ErrMailboxClosed, a Mailbox client reports ErrMailboxClosed at once. The
// live process's own mailbox and liveness file stay.
func TestSHMCollect(t *testing.T) {
	root := testRoot(t)
	const name = "collect"
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
	abandoned := filepath.Join(dir, ".tmp-ring-abandoned")
	if err := os.WriteFile(abandoned, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(abandoned, old, old); err != nil {
		t.Fatal(err)
	}
	// A temporary file still being made: its creator (this test) holds
	// its lock, as shm.Create does until it publishes.
	fresh := filepath.Join(dir, ".tmp-ring-fresh")
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

	// While the owner lives, nothing of it goes.
	st, err := x.Collect(ctx)
	if err != nil || !sameCounts(st, exchange.CollectStats{Temps: 1}) {
		t.Fatalf("Collect with the owner alive = %+v, %v; want only the old temporary file", st, err)
	}
	kid.Kill()
	st, err = x.Collect(ctx)
	if err != nil || !sameCounts(st, exchange.CollectStats{Rings: 1, Lives: 1}) {
		t.Fatalf("Collect after the kill = %+v, %v; want one ring and one liveness file", st, err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary file was removed: %v", err)
	}
	var rings, lives int
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), "ring-"):
			rings++
		case strings.HasPrefix(e.Name(), "live-"):
			lives++
		}
	}
	if rings != 1 || lives != 1 {
		t.Errorf("after Collect: %d rings and %d liveness files, want this process's one of each", rings, lives)
	}
	if st, err := x.Collect(ctx); err != nil || !sameCounts(st, exchange.CollectStats{}) {
		t.Errorf("second Collect = %+v, %v; want nothing", st, err)
	}

	// A fresh handle (no mapping cached) sees the mailbox closed.
	y := openSHM(t, root, name)
	if st, err := y.Status(ctx, agent); err != nil || st != exchange.StatusTerminated {
		t.Errorf("Status = %v, %v", st, err)
	}
	if err := y.Send(ctx, exchange.NewActionRequest(client, agent, "work", nil)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Errorf("Send to the collected mailbox: %v, want ErrMailboxClosed", err)
	}
	mb, err := y.Mailbox(ctx, agent)
	if err != nil {
		t.Fatalf("Mailbox of the collected mailbox: %v", err)
	}
	var m exchange.Message
	if err := mb.Recv(ctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Errorf("Recv from the collected mailbox: %v, want ErrMailboxClosed", err)
	}
	infos, err := y.Entities(ctx)
	if err != nil || len(infos) != 2 {
		t.Fatalf("Entities = %v, %v", infos, err)
	}
	for _, in := range infos {
		want := exchange.StatusActive
		if in.ID == agent {
			want = exchange.StatusTerminated
		}
		if in.Status != want {
			t.Errorf("Entities: %v is %v, want %v", in.ID, in.Status, want)
		}
	}
}

// TestSHMCollectUnnamedRing: a ring file that no registry entry names (a
// registration killed between creating its ring and publishing its entry
// leaves one; systest's TestGCRemovesOrphanRing kills one there) is
// removed by the next Collect, at once; one that a live receiver drains
// stays, and so do the rings entries name.
func TestSHMCollectUnnamedRing(t *testing.T) {
	root := testRoot(t)
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, "unnamed")
	drained, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, drained)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	idle, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ringOf := func(u exchange.UUID) string {
		return filepath.Join(x.Dir(), "ring-"+hex.EncodeToString(u[:]))
	}
	copyRing := func(from string) string {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		to := ringOf(exchange.NewUUID())
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return to
	}
	orphan := copyRing(ringOf(idle.UUID))      // no receiver: nobody can reach it
	withRecv := copyRing(ringOf(drained.UUID)) // this process's receiver attached
	dry, err := x.Collect(ctx, exchange.DryRun())
	if err != nil || dry.Rings != 1 || len(dry.Removed) != 1 || dry.Removed[0] != filepath.Base(orphan) {
		t.Fatalf("Collect(DryRun) = %+v, %v; want the one unnamed ring", dry, err)
	}
	if _, err := os.Stat(orphan); err != nil {
		t.Fatalf("the dry run removed it: %v", err)
	}
	st, err := x.Collect(ctx)
	if err != nil || st.Rings != 1 || st.Lives != 0 || st.Temps != 0 || len(st.Removed) != 1 || st.Removed[0] != filepath.Base(orphan) {
		t.Fatalf("Collect = %+v, %v; want the one unnamed ring", st, err)
	}
	for path, want := range map[string]bool{orphan: false, withRecv: true, ringOf(drained.UUID): true, ringOf(idle.UUID): true} {
		if _, err := os.Stat(path); (err == nil) != want {
			t.Errorf("%s: exists %v after Collect, want %v", filepath.Base(path), err == nil, want)
		}
	}
}
