package exchange_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// closerChild fills a 1 KiB mailbox it owns, then, args[2] times, opens a
// second handle, sends to the full mailbox with a deadline of under 2 ms
// (which must end the send with context.DeadlineExceeded) and closes that
// handle at once. It reports "ok" when every round passed. args: root,
// exchange name, rounds.
func closerChild(args []string) int {
	if len(args) != 3 {
		return childFail("closer: args %q", args)
	}
	root, name := args[0], args[1]
	rounds, _ := strconv.Atoi(args[2])
	ctx := context.Background()
	x, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithMailboxBytes(1024), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Full"})
	if err != nil {
		return childFail("RegisterAgent: %v", err)
	}
	if _, err := x.Mailbox(ctx, agent); err != nil { // owned by this live process: never swept
		return childFail("Mailbox: %v", err)
	}
	req := exchange.NewActionRequest(exchange.NewClientID(), agent, "work", make([]byte, 64))
	for i := 0; ; i++ {
		sctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		err := x.Send(sctx, req)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil || i == 1000 {
			return childFail("filling the mailbox: send %d: %v", i, err)
		}
	}
	for i := range rounds {
		y, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithLogger(discardLog))
		if err != nil {
			return childFail("Open: %v", err)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Duration(100+i%20*100)*time.Microsecond)
		err = y.Send(sctx, req)
		cancel()
		y.Close() // unmaps the ring the send waited on
		if !errors.Is(err, context.DeadlineExceeded) {
			return childFail("round %d: Send to the full mailbox: %v", i, err)
		}
	}
	say("ok")
	return 0
}

// TestSHMCloseAfterSendTimeout: a Send that waits for space in a full
// mailbox and ends with its context's deadline, followed at once by Close of
// the handle, must not crash the process. It runs in a child, where a crash
// (a fault writing to the unmapped ring) is an exit status, not the end of
// the test binary.
//
// It failed (the child died of SIGSEGV, "unexpected fault address" in
// shm.Doorbell.Wait.func1) while shm.Doorbell.Wait could return with the
// context.AfterFunc callback it registered still about to ring the doorbell
// in memory that the caller unmaps next.
func TestSHMCloseAfterSendTimeout(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	root := testRoot(t)
	kid := childproc.Start(t, "closer", root, "closer", strconv.Itoa(rounds))
	l, err := kid.Line(time.Minute)
	if err != nil || l != "ok" {
		werr := kid.Wait(childReply)
		t.Fatalf("child: %q, %v; exit: %v", l, err, werr)
	}
	if err := kid.Wait(childReply); err != nil {
		t.Fatalf("child exit: %v", err)
	}
}
