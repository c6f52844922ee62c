package systest

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// creatorChild creates a segment the way a registration creates its
// mailbox's ring, and is killed while it fills the segment in: its
// temporary file is left behind. args: exchange directory.
func creatorChild(args []string) int {
	say("hello")
	if len(args) != 1 {
		return childFail("creator: args %q", args)
	}
	path := filepath.Join(args[0], shm.RingPrefix+"00112233445566778899aabbccddeeff")
	_, err := shm.Create(path, shm.KindRing, 64<<10, func([]byte) error {
		say("ready")
		time.Sleep(childLife)
		return nil
	})
	return childFail("Create returned: %v", err)
}

// TestGCRemovesDeadCreatorsTemp: a process killed while it creates a
// segment (a registration, a Reopen, an arena's growth) leaves the segment's
// temporary file; gc must remove it at once, since its creator is dead.
// (The crash campaign found it: TestCrashSender's children killed inside
// RegisterClient left .tmp-ring-... files that gc kept for a minute; fixed
// by 9186911 and a8d5e62.)
func TestGCRemovesDeadCreatorsTemp(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	x := openX(t, root, "temps", &logSink{})
	k := startKid(t, "creator", nil, x.Dir())
	killThenGC(t, x, k)
}

// orphanChild leaves the state of a registration killed between creating
// its mailbox's ring and publishing its registry entry (exchange's
// register does the two in that order, under the registry lock): it
// creates the ring segment of a fresh id, whole, as createRing does, and
// waits to be killed. args: exchange directory, UUID (hex).
func orphanChild(args []string) int {
	say("hello")
	if len(args) != 2 {
		return childFail("orphan: args %q", args)
	}
	const capacity = 4 << 10
	cfg := ring.Config{Capacity: capacity, MaxRecord: capacity / 4, Slots: 128}
	seg, err := shm.Create(filepath.Join(args[0], shm.RingPrefix+args[1]), shm.KindRing, int64(shm.HeaderSize+ring.Size(cfg.Capacity, cfg.Slots)),
		func(body []byte) error { _, err := ring.New(body, cfg, ring.Options{}); return err })
	if err != nil {
		return childFail("Create: %v", err)
	}
	defer seg.Close()
	say("ready")
	time.Sleep(childLife)
	return childFail("not killed")
}

// TestGCRemovesOrphanRing: a process killed inside a registration, after
// the mailbox's ring segment was created and before the registry entry
// that names it was published, leaves a ring that no entry names; gc must
// remove it at once (nobody can ever reach it, and its creator is dead).
// TestCrashRegistry's children hit it about once in eleven trials, and
// Collect kept such rings for a minute; it now takes the registry's lock,
// under which registrations create and publish, to tell a registration at
// work from a dead one, and removes them at once.
func TestGCRemovesOrphanRing(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	x := openX(t, root, "orphan", &logSink{})
	u := exchange.NewUUID()
	k := startKid(t, "orphan", nil, x.Dir(), hex.EncodeToString(u[:]))
	killThenGC(t, x, k)
}

// killThenGC waits for k to be ready, kills it, runs gc on x, and fails
// the test if gc left a file of k's in x's directory.
func killThenGC(t *testing.T, x *exchange.SHM, k *kid) {
	t.Helper()
	if _, err := k.waitReady(); err != nil {
		t.Fatal(err)
	}
	if err := k.kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound(30*time.Second))
	defer cancel()
	if err := gc(ctx, x); err != nil {
		t.Fatal(err)
	}
	left, err := leftovers(x.Dir(), map[int]bool{k.pid: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("gc left files of a dead process: %q", left)
	}
}
