package exchange_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/shm"
)

// longMode reports whether the long versions of the tests run
// (SHMEX_LONG=1): the full cycle counts of issue #15, minutes each.
func longMode() bool { return os.Getenv("SHMEX_LONG") == "1" }

// cycles returns n in long mode, else short (divided by 3 under -race).
func cycles(short, n int) int {
	switch {
	case longMode():
		return n
	case raceEnabled:
		return max(short/3, 1)
	}
	return short
}

// scribble writes b at offset off of the registry body of x's exchange, as
// a faulty process of the same user could (the file is shared with every
// mapping of it).
func scribble(t *testing.T, x *exchange.SHM, off int, b []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(x.Dir(), shm.RegistryName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(regBody+off)); err != nil {
		t.Fatal(err)
	}
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// TestSHMRegistrySlotReuse: an exchange with room for 64 mailboxes
// survives far more register/terminate cycles (1,000,000 in long mode):
// the slots of terminated mailboxes are reused, free slots first and then
// the terminated one longest ago. A mailbox reads terminated right after
// its Terminate, and, once its slot was taken by another registration,
// missing: never the state of the mailbox that took the slot.
func TestSHMRegistrySlotReuse(t *testing.T) {
	const capacity = 64
	root := testRoot(t)
	x := openSHM(t, root, "reuse", exchange.WithRegistryCapacity(capacity), exchange.WithMailboxBytes(1024))
	ctx := testCtx(t, 30*time.Minute)
	n := cycles(10000, 1000000)
	var recent []exchange.EntityID // the last capacity-1 terminated ids
	for c := 0; c < n; c++ {
		id, err := x.RegisterClient(ctx)
		if err != nil {
			t.Fatalf("cycle %d: RegisterClient: %v", c, err)
		}
		if err := x.Terminate(ctx, id); err != nil {
			t.Fatalf("cycle %d: Terminate: %v", c, err)
		}
		if c%997 == 0 || c == n-1 {
			if st, err := x.Status(ctx, id); err != nil || st != exchange.StatusTerminated {
				t.Fatalf("cycle %d: Status right after Terminate = %v, %v", c, st, err)
			}
		}
		recent = append(recent, id)
		if len(recent) > capacity {
			recent = recent[1:]
		}
	}
	// The last 64 terminated mailboxes still hold the 64 slots.
	for _, id := range recent {
		if st, err := x.Status(ctx, id); err != nil || st != exchange.StatusTerminated {
			t.Fatalf("Status of a recent terminated mailbox = %v, %v", st, err)
		}
	}
	// Each new registration takes the slot of the oldest of them, which
	// is then forgotten.
	live, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Live"})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := x.Status(ctx, recent[0]); err != nil || st != exchange.StatusMissing {
		t.Fatalf("Status of the id whose slot was reused = %v, %v; want missing", st, err)
	}
	if _, err := x.Info(ctx, recent[0]); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("Info of the id whose slot was reused: %v, want ErrBadEntityID", err)
	}
	if st, err := x.Status(ctx, recent[1]); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("Status of the next oldest = %v, %v; want terminated", st, err)
	}
	if st, err := x.Status(ctx, live); err != nil || st != exchange.StatusActive {
		t.Fatalf("Status of the new mailbox = %v, %v", st, err)
	}
	infos, err := x.Entities(ctx)
	if err != nil || len(infos) != capacity {
		t.Fatalf("Entities: %d, %v; want %d", len(infos), err, capacity)
	}
	// Only active mailboxes fill the registry for good.
	var ids []exchange.EntityID
	for range capacity - 1 {
		id, err := x.RegisterClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := x.RegisterClient(ctx); !errors.Is(err, exchange.ErrRegistryFull) {
		t.Fatalf("RegisterClient with every slot active: %v, want ErrRegistryFull", err)
	}
	if err := x.Terminate(ctx, ids[7]); err != nil {
		t.Fatal(err)
	}
	if _, err := x.RegisterClient(ctx); err != nil {
		t.Fatalf("RegisterClient after a Terminate: %v", err)
	}
}

// TestSHMSlotReuseNeverConfuses: a handle that mapped a mailbox (here, a
// second handle of the process: its own mappings, as another process's)
// sends to it after it was terminated and its slot taken by another
// mailbox: the send fails with ErrBadEntityID and nothing reaches the new
// mailbox. A receiver that drained the terminated one never sees the new
// one's messages, and the id reads missing everywhere.
func TestSHMSlotReuseNeverConfuses(t *testing.T) {
	root := testRoot(t)
	x := openSHM(t, root, "confuse", exchange.WithRegistryCapacity(2), exchange.WithMailboxBytes(1024))
	y := openSHM(t, root, "confuse")
	ctx := testCtx(t, time.Minute)
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Old"})
	if err != nil {
		t.Fatal(err)
	}
	oldMB, err := x.Mailbox(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := y.Send(ctx, exchange.NewActionResponse(client, old, exchange.NewTag(), []byte("first"))); err != nil {
		t.Fatal(err) // y maps old's ring and caches it
	}
	if err := x.Terminate(ctx, old); err != nil {
		t.Fatal(err)
	}
	if st, err := y.Status(ctx, old); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("Status after Terminate = %v, %v", st, err)
	}
	// The registry is full: the new agent takes old's slot.
	reused, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "New"})
	if err != nil {
		t.Fatal(err)
	}
	newMB, err := x.Mailbox(ctx, reused)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := y.Send(ctx, exchange.NewActionRequest(client, old, "stale", nil)); !errors.Is(err, exchange.ErrBadEntityID) {
			t.Fatalf("Send to the forgotten id: %v, want ErrBadEntityID", err)
		}
	}
	for _, h := range []*exchange.SHM{x, y} {
		if st, err := h.Status(ctx, old); err != nil || st != exchange.StatusMissing {
			t.Fatalf("Status of the forgotten id = %v, %v; want missing", st, err)
		}
		if inc, err := h.Incarnation(ctx, old); !errors.Is(err, exchange.ErrBadEntityID) {
			t.Fatalf("Incarnation of the forgotten id = %d, %v", inc, err)
		}
		if err := h.Reopen(ctx, old); !errors.Is(err, exchange.ErrBadEntityID) {
			t.Fatalf("Reopen of the forgotten id: %v", err)
		}
		if found, err := h.Discover(ctx, "Old", false); err != nil || len(found) != 0 {
			t.Fatalf("Discover(Old) = %v, %v", found, err)
		}
		if found, err := h.Discover(ctx, "New", false); err != nil || !slices.Equal(found, []exchange.EntityID{reused}) {
			t.Fatalf("Discover(New) = %v, %v", found, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	var m exchange.Message
	if err := newMB.Recv(short, &m); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the new mailbox received %v, %v; want nothing", &m, err)
	}
	// The old client drains what was queued before the Terminate, then
	// is closed.
	if err := oldMB.Recv(ctx, &m); err != nil || string(m.Result) != "first" {
		t.Fatalf("old mailbox: %v, %v", &m, err)
	}
	if err := oldMB.Recv(ctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("old mailbox after draining: %v", err)
	}
	// The id may be registered again: a new mailbox, not the old one
	// (in New's slot, once New is terminated: the registry is full).
	if err := x.Terminate(ctx, reused); err != nil {
		t.Fatal(err)
	}
	again, err := y.RegisterAgent(ctx, exchange.Behavior{Name: "Again"}, exchange.WithID(old))
	if err != nil {
		t.Fatalf("registering the forgotten id again: %v", err)
	}
	if err := x.Send(ctx, exchange.NewActionRequest(client, again, "again", nil)); err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.Recv(ctx, &m); err != nil || string(m.Action) != "again" {
		t.Fatalf("the id registered again got %v, %v", &m, err)
	}
}

// TestSHMRegistryScribbledCount: a count written by a faulty process is
// never believed: one above the capacity does not make the registry full,
// one below the slots in use does not hide or overwrite them.
func TestSHMRegistryScribbledCount(t *testing.T) {
	root := testRoot(t)
	x := openSHM(t, root, "count", exchange.WithRegistryCapacity(8), exchange.WithMailboxBytes(1024))
	ctx := testCtx(t, time.Minute)
	a, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "B"})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []uint32{9, 1000, 0xFFFFFFFF} {
		scribble(t, x, regOffCount, le32(bad))
		if found, err := x.Discover(ctx, "A", false); err != nil || !slices.Equal(found, []exchange.EntityID{a}) {
			t.Fatalf("count %d: Discover = %v, %v", bad, found, err)
		}
		id, err := x.RegisterClient(ctx)
		if err != nil {
			t.Fatalf("count %d: RegisterClient: %v", bad, err)
		}
		if err := x.Terminate(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	st, err := x.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	scribble(t, x, regOffCount, le32(0xFFFFFFFF))
	if _, err := x.Collect(ctx); err != nil {
		t.Fatalf("Collect with a damaged count: %v (first %+v)", err, st)
	}
	// Below the slots in use: a registration does not take theirs.
	scribble(t, x, regOffCount, le32(0))
	c, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "C"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []exchange.EntityID{a, b, c} {
		if st, err := x.Status(ctx, id); err != nil || st != exchange.StatusActive {
			t.Fatalf("Status(%v) after a count of 0 = %v, %v", id, st, err)
		}
	}
}

// TestSHMRegistryScribbledState: a state that is neither active nor
// terminated, written by a faulty process, is never taken for active: the
// mailbox reads (and is made) terminated, sends to it fail, Discover skips
// it. A state that says free hides the entry: its id reads missing.
func TestSHMRegistryScribbledState(t *testing.T) {
	root := testRoot(t)
	x := openSHM(t, root, "state", exchange.WithRegistryCapacity(8), exchange.WithMailboxBytes(1024))
	y := openSHM(t, root, "state")
	ctx := testCtx(t, time.Minute)
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "A"}) // slot 1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Mailbox(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := y.Send(ctx, exchange.NewPingRequest(client, a)); err != nil {
		t.Fatal(err)
	}
	stamp := regOffTable + 1*regEntrySize + regEntryStamp
	scribble(t, x, stamp, le64(3<<32)) // state 3: neither active nor terminated
	if found, err := y.Discover(ctx, "A", false); err != nil || len(found) != 0 {
		t.Fatalf("Discover with a damaged state = %v, %v", found, err)
	}
	if st, err := y.Status(ctx, a); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("Status with a damaged state = %v, %v; want terminated", st, err)
	}
	if err := y.Send(ctx, exchange.NewPingRequest(client, a)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Send with a damaged state: %v, want ErrMailboxClosed", err)
	}
	if st, err := x.Status(ctx, a); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("Status after the repair = %v, %v", st, err)
	}
	scribble(t, x, stamp, le64(0)) // free
	if st, err := y.Status(ctx, a); err != nil || st != exchange.StatusMissing {
		t.Fatalf("Status with a state that says free = %v, %v; want missing", st, err)
	}
	if err := y.Send(ctx, exchange.NewPingRequest(client, a)); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("Send with a state that says free: %v, want ErrBadEntityID", err)
	}
}

// TestSHMRegistryFullOfTheDead: a process killed with its mailboxes active
// leaves a full registry; a registration terminates the dead owner's
// mailboxes and takes a slot, and Collect (shmex gc) makes every slot of a
// dead process free for reuse.
func TestSHMRegistryFullOfTheDead(t *testing.T) {
	root := testRoot(t)
	const name = "dead-full"
	x := openSHM(t, root, name, exchange.WithRegistryCapacity(4), exchange.WithMailboxBytes(1024))
	ctx := testCtx(t, time.Minute)
	for round := range 2 {
		kid := childproc.Start(t, "registrar", root, name)
		ids := parseIDs(t, line(t, kid, "registrar", childStart)[1:]...)
		// The registrar terminated one of its four: that slot is taken
		// by the next registration, then the registry is full.
		first, err := x.RegisterClient(ctx)
		if err != nil {
			t.Fatalf("round %d: RegisterClient into the terminated slot: %v", round, err)
		}
		if _, err := x.RegisterClient(ctx); !errors.Is(err, exchange.ErrRegistryFull) {
			t.Fatalf("round %d: RegisterClient with the registrar alive: %v, want ErrRegistryFull", round, err)
		}
		kid.Kill()
		active := []exchange.EntityID{ids[0], ids[1], ids[3]} // owned, unopened, given
		if round == 1 {
			st, err := x.Collect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range active {
				if s, err := x.Status(ctx, id); err != nil || s != exchange.StatusTerminated {
					t.Fatalf("Status of a dead process's mailbox after Collect = %v, %v (collected %+v)", s, err, st)
				}
			}
		}
		mine := []exchange.EntityID{first}
		for range active {
			id, err := x.RegisterClient(ctx)
			if err != nil {
				t.Fatalf("round %d: RegisterClient after the registrar died: %v", round, err)
			}
			mine = append(mine, id)
		}
		for _, id := range mine {
			if err := x.Terminate(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
}
