package systest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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
// (The crash campaign hits the same: TestCrashSender's children killed
// inside RegisterClient leave .tmp-ring-... files.)
func TestGCRemovesDeadCreatorsTemp(t *testing.T) {
	t.Skip("bug: gc keeps a dead creator's temp file for a minute; fix pending in shm.Create (lead)")
	t.Parallel()
	root := newRoot(t)
	x := openX(t, root, "temps", &logSink{})
	k := startKid(t, "creator", nil, x.Dir())
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
