package exchange_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// receiverChild joins exchange args[1] under root args[0], opens the
// mailbox of args[2] (becoming its owner), says "ready", then reports the
// action of every ActionRequest it receives as "got <action>". args: root,
// exchange name, agent id.
func receiverChild(args []string) int {
	if len(args) != 3 {
		return childFail("receiver: args %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	id, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return childFail("id: %v", err)
	}
	mb, err := x.Mailbox(ctx, id)
	if err != nil {
		return childFail("Mailbox: %v", err)
	}
	say("ready")
	var m exchange.Message
	for {
		if err := mb.Recv(ctx, &m); err != nil {
			return childFail("Recv: %v", err)
		}
		if m.Kind == exchange.KindActionRequest {
			say("got", string(m.Action))
		}
	}
}

// TestSHMProcessReopen: the process that owns an agent's mailbox is killed;
// a supervisor reopens the mailbox under the same id and a new process takes
// it over. A sender that had mapped the old mailbox reaches the new owner,
// and nothing queued in the dead one is delivered to it.
func TestSHMProcessReopen(t *testing.T) {
	root := testRoot(t)
	const name = "reopen"
	ctx := testCtx(t, time.Minute)
	sup := openSHM(t, root, name)
	aid, err := sup.RegisterAgent(ctx, exchange.Behavior{Name: "Phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	snd := openSHM(t, root, name) // another handle: its own mappings
	cid, err := snd.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmb, err := snd.Mailbox(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}

	first := childproc.Start(t, "receiver", root, name, aid.String())
	line(t, first, "first receiver start", childStart)
	if err := snd.Send(ctx, exchange.NewActionRequest(cid, aid, "one", nil)); err != nil {
		t.Fatal(err)
	}
	if f := line(t, first, "first receiver", 10*time.Second); f[1] != "one" {
		t.Fatalf("first receiver got %q", f)
	}
	// A busy mailbox cannot be reopened.
	if err := sup.Reopen(ctx, aid); !errors.Is(err, exchange.ErrMailboxBusy) {
		t.Fatalf("Reopen with a live owner: %v, want ErrMailboxBusy", err)
	}
	first.Kill()
	// A request queued in the dead mailbox is answered by the exchange.
	queued := exchange.NewActionRequest(cid, aid, "lost", nil)
	if err := snd.Send(ctx, queued); err != nil && !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatal(err)
	}
	if err := sup.Reopen(ctx, aid); err != nil {
		t.Fatalf("Reopen after the owner died: %v", err)
	}
	if st, err := snd.Status(ctx, aid); err != nil || st != exchange.StatusActive {
		t.Fatalf("Status after Reopen = %v, %v", st, err)
	}
	second := childproc.Start(t, "receiver", root, name, aid.String())
	line(t, second, "second receiver start", childStart)
	if err := snd.Send(ctx, exchange.NewActionRequest(cid, aid, "two", nil)); err != nil {
		t.Fatalf("Send after Reopen: %v", err)
	}
	if f := line(t, second, "second receiver", 10*time.Second); f[1] != "two" {
		t.Fatalf("second receiver got %q, want two (nothing of the old mailbox)", f)
	}
	// The queued request was answered with an error, if it was queued.
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	var m exchange.Message
	if err := cmb.Recv(rctx, &m); err == nil {
		if m.Tag != queued.Tag || !errors.Is(m.Err(), exchange.ErrMailboxClosed) {
			t.Fatalf("client got %v", &m)
		}
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

// TestSHMStatusDeadOwnerReopened (issue 15, agent's TestRestart under
// load): Status finds the owner of a mailbox dead; before it terminates the
// mailbox, a supervisor terminates it and reopens it (a new incarnation,
// with a live owner). Status must answer for the new incarnation (active)
// and leave it alone, not terminate it for the death of the old owner.
func TestSHMStatusDeadOwnerReopened(t *testing.T) {
	root := testRoot(t)
	const name = "status-reopen"
	ctx := testCtx(t, time.Minute)
	sup := openSHM(t, root, name)
	aid, err := sup.RegisterAgent(ctx, exchange.Behavior{Name: "Phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	obs := openSHM(t, root, name) // the handle that asks: its own mappings
	cid, err := obs.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kid := childproc.Start(t, "receiver", root, name, aid.String())
	line(t, kid, "receiver start", childStart)
	kid.Kill() // the owner of incarnation 0 is dead

	var fired atomic.Bool
	exchange.SetDeadOwnerHook(t, func(id exchange.EntityID) {
		if id != aid || !fired.CompareAndSwap(false, true) {
			return
		}
		// The supervisor, having seen its child die, terminates the
		// mailbox and reopens it, between Status's look and its
		// termination.
		if err := sup.Terminate(ctx, aid); err != nil {
			t.Errorf("Terminate: %v", err)
		}
		if err := sup.Reopen(ctx, aid); err != nil {
			t.Errorf("Reopen: %v", err)
		}
	})
	st, err := obs.Status(ctx, aid)
	if !fired.Load() {
		t.Fatalf("Status = %v, %v without finding the owner dead", st, err)
	}
	if err != nil || st != exchange.StatusActive {
		t.Fatalf("Status across a reopen = %v, %v; want active (the new incarnation)", st, err)
	}
	if inc, err := sup.Incarnation(ctx, aid); err != nil || inc != 1 {
		t.Fatalf("Incarnation = %d, %v; want 1", inc, err)
	}
	// The new incarnation works: its owner receives what is sent to it.
	mb, err := sup.Mailbox(ctx, aid)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := obs.Send(ctx, exchange.NewPingRequest(cid, aid)); err != nil {
		t.Fatalf("Send to the reopened mailbox: %v", err)
	}
	var m exchange.Message
	if err := mb.Recv(ctx, &m); err != nil || m.Kind != exchange.KindPingRequest {
		t.Fatalf("Recv on the reopened mailbox: %v, %v", m.Kind, err)
	}
	if st, err := sup.Status(ctx, aid); err != nil || st != exchange.StatusActive {
		t.Fatalf("Status afterwards = %v, %v", st, err)
	}
}

// TestSHMStatusDeadOwnerTakenOver: as TestSHMStatusDeadOwnerReopened, with
// the mailbox taken over by a new receiving process (a new owner of the
// same incarnation) between Status's look and its termination.
func TestSHMStatusDeadOwnerTakenOver(t *testing.T) {
	root := testRoot(t)
	const name = "status-takeover"
	ctx := testCtx(t, time.Minute)
	sup := openSHM(t, root, name)
	aid, err := sup.RegisterAgent(ctx, exchange.Behavior{Name: "Phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	obs := openSHM(t, root, name)
	cid, err := obs.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fired, second := takeOverOnDeadOwner(t, root, name, aid)
	st, err := obs.Status(ctx, aid)
	if !fired.Load() {
		t.Fatalf("Status = %v, %v without finding the owner dead", st, err)
	}
	if err != nil || st != exchange.StatusActive {
		t.Fatalf("Status across a take-over = %v, %v; want active", st, err)
	}
	if err := obs.Send(ctx, exchange.NewActionRequest(cid, aid, "after", nil)); err != nil {
		t.Fatalf("Send to the mailbox taken over: %v", err)
	}
	if f := line(t, *second, "second receiver", 10*time.Second); f[1] != "after" {
		t.Fatalf("second receiver got %q", f)
	}
}

// TestSHMSendDeadOwnerTakenOver: a send finds the owner of its mailbox dead
// (at its periodic look, or waiting for space in the full mailbox); before
// it terminates the mailbox, a new receiving process takes it over. The
// send must leave the mailbox to its new owner and deliver, not terminate
// it for the death of the old owner.
func TestSHMSendDeadOwnerTakenOver(t *testing.T) {
	root := testRoot(t)
	const name = "send-takeover"
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, name, exchange.WithMailboxBytes(4096))
	aid, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	cid, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fired, second := takeOverOnDeadOwner(t, root, name, aid)
	// More than the mailbox holds: the sends wait for space, and find the
	// owner dead by then at the latest.
	const n = 200
	for i := range n {
		action := "fill"
		if i == n-1 {
			action = "last"
		}
		if err := x.Send(ctx, exchange.NewActionRequest(cid, aid, action, nil)); err != nil {
			t.Fatalf("send %d (hook fired: %v): %v", i, fired.Load(), err)
		}
	}
	if !fired.Load() {
		t.Fatal("no send found the owner dead")
	}
	for {
		if f := line(t, *second, "second receiver", 10*time.Second); f[1] == "last" {
			break
		}
	}
	if st, err := x.Status(ctx, aid); err != nil || st != exchange.StatusActive {
		t.Fatalf("Status after the take-over = %v, %v; want active", st, err)
	}
}

// takeOverOnDeadOwner starts a receiving child of aid's mailbox and kills
// it; the first time this process then finds that dead owner (before it
// terminates the mailbox), a second child takes the mailbox over. fired
// tells whether that happened, and *second is the second child then.
func takeOverOnDeadOwner(t *testing.T, root, name string, aid exchange.EntityID) (fired *atomic.Bool, second **childproc.Child) {
	t.Helper()
	first := childproc.Start(t, "receiver", root, name, aid.String())
	line(t, first, "first receiver start", childStart)
	first.Kill()
	fired, second = new(atomic.Bool), new(*childproc.Child)
	exchange.SetDeadOwnerHook(t, func(id exchange.EntityID) {
		if id != aid || !fired.CompareAndSwap(false, true) {
			return
		}
		*second = childproc.Start(t, "receiver", root, name, aid.String())
		line(t, *second, "second receiver start", childStart)
	})
	return fired, second
}
