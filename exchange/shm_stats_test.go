package exchange_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/ring"
)

// counted returns n when this build counts, else 0 (see ring.Counting: a
// build with the tag shmex_nocounters leaves the counters at zero).
func counted(n uint64) uint64 {
	if ring.Counting() {
		return n
	}
	return 0
}

// TestSHMStatsProcesses: a child sends N messages of sizes the parent can
// compute; the counters the parent reads from shared memory agree, before
// and after it receives them, and name the processes involved; a sender
// killed holding a claim shows in Recovered once the receiver has
// recovered its record; MailboxStats and Mailboxes change nothing (the
// killed child's mailbox reads terminated, but is not terminated).
func TestSHMStatsProcesses(t *testing.T) {
	const n = 300
	root := testRoot(t)
	const name = "stats"
	ctx := testCtx(t, 2*time.Minute)
	x := openSHM(t, root, name, exchange.WithMailboxBytes(64<<10))
	me, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := x.MailboxStats(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	if ms.ID != me || ms.Status != exchange.StatusActive || !ms.HasRing || ms.Capacity != 64<<10 ||
		ms.Owner.PID != os.Getpid() || !ms.Owner.Alive || ms.Receiver != ms.Owner ||
		ms.Sent != 0 || ms.Depth != 0 || ms.Closed {
		t.Fatalf("fresh mailbox: %+v", ms)
	}

	live := childproc.Start(t, "sender", root, name, me.String(), "live")
	liveID := parseIDs(t, line(t, live, "sender start", childStart)[1])[0]
	command(t, live, "send "+strconv.Itoa(n))
	if f := line(t, live, "sender batch", childReply); f[0] != "sent" || f[1] != strconv.Itoa(n) {
		t.Fatalf("sender: %q", f)
	}
	var bytes uint64
	var m exchange.Message
	for seq := uint64(1); seq <= n; seq++ {
		seqMessage(&m, liveID, me, 0, seq)
		bytes += uint64(m.EncodedSize())
	}
	ms, err = x.MailboxStats(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Sent != counted(n) || ms.SentBytes != counted(bytes) || ms.Received != 0 || ms.Queued() != counted(n) {
		t.Fatalf("after %d messages of %d bytes sent: %+v", n, bytes, ms.Counters)
	}
	if ms.Depth < int(bytes) || ms.Producers < 1 {
		t.Fatalf("after %d messages of %d bytes sent: depth %d, %d producers", n, bytes, ms.Depth, ms.Producers)
	}
	for range n {
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	ms, err = x.MailboxStats(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Sent != counted(n) || ms.Received != counted(n) || ms.ReceivedBytes != counted(bytes) || ms.Queued() != 0 || ms.Depth != 0 {
		t.Fatalf("after %d messages received: depth %d, %+v", n, ms.Depth, ms.Counters)
	}

	// A sender killed while it floods the mailbox, holding a claim it
	// never commits.
	flood := childproc.Start(t, "sender", root, name, me.String(), "flood-stuck")
	floodID := parseIDs(t, line(t, flood, "flooder start", childStart)[1])[0]
	floodPID := flood.Cmd.Process.Pid
	// Receive while the flooder fills the mailbox, until it holds its
	// claim (a claim in a full ring waits for space); then kill it, and
	// drain the mailbox.
	claimed := make(chan error, 1)
	go func() {
		l, err := flood.Line(childReply)
		if err == nil && l != "claimed" {
			err = errors.New("flooder said " + l)
		}
		claimed <- err
	}()
	received := uint64(n)
	recv := func(d time.Duration) bool {
		rctx, cancel := context.WithTimeout(ctx, d)
		err := mb.Recv(rctx, &m)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		received++
		return true
	}
	for waiting := true; waiting; {
		select {
		case err := <-claimed:
			if err != nil {
				t.Fatal(err)
			}
			waiting = false
		default:
			recv(10 * time.Millisecond)
		}
	}
	flood.Kill()
	for recv(200 * time.Millisecond) {
	}
	ms, err = x.MailboxStats(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	// A flooding goroutine killed between counting a message and
	// committing it leaves one counted that nobody receives.
	if ms.Received != counted(received) || ms.Sent < ms.Received || ms.Sent > ms.Received+2 || ms.Depth != 0 {
		t.Fatalf("%d messages received in all: depth %d, %+v", received, ms.Depth, ms.Counters)
	}
	if ms.Recovered < 1 || ms.RecoveredByTimeout != 0 {
		t.Fatalf("a sender died holding a claim: recovered %d (%d by timeout)", ms.Recovered, ms.RecoveredByTimeout)
	}

	// The killed sender's mailbox: terminated to the reader, not in fact.
	all, err := x.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]exchange.EntityID, len(all))
	for i, s := range all {
		ids[i] = s.ID
	}
	i := slices.Index(ids, floodID)
	if len(all) != 3 || i < 0 || !slices.Contains(ids, me) || !slices.Contains(ids, liveID) {
		t.Fatalf("Mailboxes = %v, want %v, %v and %v", ids, me, liveID, floodID)
	}
	fs := all[i]
	if fs.Status != exchange.StatusTerminated || fs.Owner.Alive || fs.Owner.PID != floodPID || fs.Closed || !fs.HasRing {
		t.Fatalf("killed sender's mailbox: %+v (its pid %d)", fs, floodPID)
	}
	if ls := all[slices.Index(ids, liveID)]; ls.Status != exchange.StatusActive || ls.Owner.PID != live.Cmd.Process.Pid || !ls.Owner.Alive {
		t.Fatalf("live sender's mailbox: %+v (its pid %d)", ls, live.Cmd.Process.Pid)
	}
	// Status terminates it for real: its (empty) ring is closed, or gone.
	if st, err := x.Status(ctx, floodID); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("Status = %v, %v", st, err)
	}
	if fs, err := x.MailboxStats(ctx, floodID); err != nil || fs.HasRing && !fs.Closed {
		t.Fatalf("after Status: %+v, %v", fs, err)
	}
	if _, err := x.MailboxStats(ctx, exchange.NewClientID()); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("MailboxStats of an unknown id: %v", err)
	}
	live.CloseStdin()
	if err := live.Wait(childReply); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages received; %+v, recovered %d", received, ms.Counters, ms.Recovered)
}
