package exchange_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// victimChild joins exchange args[1] under root args[0], receives from
// agent args[2]'s mailbox in a loop, with the idle strategy args[3] ("spin"
// or "park"), reporting "got <action>" for each message and "recv-error
// <err>" when the loop stops, and runs commands:
//
//	send <id>  ->  sent | send-error <err>
//	status <id> -> status <status> <err>
//	ping       ->  pong
//	close      ->  closed (after closing the handle)
//
// With args[3] "step" it spins too, but receives only when told to:
//
//	recv       ->  got <action> | recv-error <err>
func victimChild(args []string) int {
	if len(args) != 4 {
		return childFail("victim: args %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	idle := ring.Spin
	if args[3] == "park" {
		idle = ring.Park
	}
	step := make(chan struct{})
	if args[3] != "step" {
		close(step) // every receive may go at once
	}
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithLogger(discardLog), exchange.WithIdle(idle))
	if err != nil {
		return childFail("Open: %v", err)
	}
	id, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return childFail("id: %v", err)
	}
	mb, err := x.Mailbox(ctx, id)
	if err != nil {
		return childFail("Mailbox: %v", err)
	}
	go func() {
		// No deadline: a receive asleep on a ring truncated under it
		// cannot be woken, and the end of its context would ring the
		// ring's doorbell from a goroutine of the context package, which
		// faults unguarded (see shm_fault.go).
		var m exchange.Message
		for {
			<-step
			if err := mb.Recv(context.Background(), &m); err != nil {
				say("recv-error", strings.ReplaceAll(err.Error(), "\n", " "))
				return
			}
			say("got", string(m.Action))
		}
	}()
	say("ready")
	src := exchange.NewClientID()
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "send":
			to, _ := exchange.ParseEntityID(f[1])
			if err := x.Send(ctx, exchange.NewActionRequest(src, to, "from-victim", nil)); err != nil {
				say("send-error", err)
			} else {
				say("sent")
			}
		case len(f) == 2 && f[0] == "status":
			to, _ := exchange.ParseEntityID(f[1])
			st, err := x.Status(ctx, to)
			say("status", st, err)
		case len(f) == 1 && f[0] == "ping":
			say("pong")
		case len(f) == 1 && f[0] == "recv" && args[3] == "step":
			step <- struct{}{}
		case len(f) == 1 && f[0] == "close":
			mb.Close()
			x.Close()
			say("closed")
		default:
			return childFail("command %q", sc.Text())
		}
	}
	return 0
}

// TestSHMProcessTruncation: another process of the same user truncates a
// ring and then the registry that a live sender and receiver (a child,
// and this process) have mapped. Nobody dies of SIGBUS: the receiver of
// the truncated ring and its senders get ErrMailboxClosed wrapping
// ring.ErrCorrupt (the mailbox is terminated), every call after the
// registry's truncation fails with ErrCorruptRegistry, and both processes
// close their handles and exit cleanly.
func TestSHMProcessTruncation(t *testing.T) {
	root := testRoot(t)
	const name = "truncate"
	x := openSHM(t, root, name, exchange.WithMailboxBytes(4096))
	ctx := testCtx(t, time.Minute)
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Victim"})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := x.RegisterClient(ctx) // this process receives it; the child sends to it
	if err != nil {
		t.Fatal(err)
	}
	smb, err := x.Mailbox(ctx, sink)
	if err != nil {
		t.Fatal(err)
	}
	// Under the race detector, an atomic operation on shared memory runs
	// in its C runtime on the system stack, after a probe of the address
	// in Go: a truncation that lands between the probe and the access
	// faults in C, which the Go runtime cannot turn into a panic, and the
	// child dies (1 or 2 runs in 100, with or without this package's
	// guards). There, the child's receiver spins only when told to, so
	// that the truncation comes while it is outside the ring; its next
	// receive faults at the probe and takes the same path.
	mode := "spin"
	if raceEnabled {
		mode = "step"
	}
	kid := childproc.Start(t, "victim", root, name, agent.String(), mode)
	line(t, kid, "victim start", childStart)
	recv := func() {
		if raceEnabled {
			command(t, kid, "recv")
		}
	}
	expect := func(what, prefix string) []string {
		t.Helper()
		f := line(t, kid, what, childReply)
		if f[0] != prefix {
			t.Fatalf("%s: child said %q, want %s", what, f, prefix)
		}
		return f
	}
	var m exchange.Message
	// Both directions work, and map the rings.
	if err := x.Send(ctx, exchange.NewActionRequest(sink, agent, "hello", nil)); err != nil {
		t.Fatal(err)
	}
	recv()
	expect("first message", "got")
	command(t, kid, "send "+sink.String())
	expect("first send", "sent")
	if err := smb.Recv(ctx, &m); err != nil {
		t.Fatal(err)
	}

	// The agent's ring, which the child receives from and this process
	// sends to, is truncated.
	if err := os.Truncate(filepath.Join(x.Dir(), ringFile(agent)), 0); err != nil {
		t.Fatal(err)
	}
	// The send faults on the ring (ErrMailboxClosed wrapping
	// ring.ErrCorrupt), unless the child's receiver, spinning on the same
	// ring, faulted first and terminated the mailbox: then the send finds
	// it terminated (ErrMailboxClosed alone).
	err = x.Send(ctx, exchange.NewActionRequest(sink, agent, "into-the-void", nil))
	if !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Send into a truncated ring: %v; want ErrMailboxClosed (wrapping ring.ErrCorrupt when this send faulted first)", err)
	}
	recv()
	if f := expect("receiver of the truncated ring", "recv-error"); !strings.Contains(strings.Join(f, " "), "closed") {
		t.Fatalf("receiver of the truncated ring: %q", f)
	}
	if st, err := x.Status(ctx, agent); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("Status of the mailbox whose ring was truncated = %v, %v", st, err)
	}
	if err := x.Send(ctx, exchange.NewActionRequest(sink, agent, "again", nil)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Send after the truncation: %v", err)
	}
	command(t, kid, "ping")
	expect("ping after the ring's truncation", "pong")

	// The sink's ring, which the child sends to and this process
	// receives from.
	if err := os.Truncate(filepath.Join(x.Dir(), ringFile(sink)), 0); err != nil {
		t.Fatal(err)
	}
	command(t, kid, "send "+sink.String())
	if f := expect("send into a truncated ring", "send-error"); !strings.Contains(strings.Join(f, " "), "corrupt") {
		t.Fatalf("child's send into a truncated ring: %q", f)
	}
	if err := smb.Recv(ctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Recv from a truncated ring: %v", err)
	}

	// The registry.
	other, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	command(t, kid, "send "+other.String())
	expect("send to a fresh mailbox", "sent")
	if err := os.Truncate(filepath.Join(x.Dir(), shm.RegistryName), 0); err != nil {
		t.Fatal(err)
	}
	command(t, kid, "send "+other.String())
	if f := expect("send with the registry truncated", "send-error"); !strings.Contains(strings.Join(f, " "), "registry") {
		t.Fatalf("child's send with the registry truncated: %q", f)
	}
	command(t, kid, "status "+other.String())
	if f := expect("status with the registry truncated", "status"); !strings.Contains(strings.Join(f, " "), "registry") {
		t.Fatalf("child's status with the registry truncated: %q", f)
	}
	if _, err := x.Status(ctx, other); !errors.Is(err, exchange.ErrCorruptRegistry) {
		t.Fatalf("Status with the registry truncated: %v", err)
	}
	if _, err := x.RegisterClient(ctx); !errors.Is(err, exchange.ErrCorruptRegistry) {
		t.Fatalf("RegisterClient with the registry truncated: %v", err)
	}
	if err := x.Send(ctx, exchange.NewActionRequest(sink, other, "x", nil)); !errors.Is(err, exchange.ErrCorruptRegistry) {
		t.Fatalf("Send with the registry truncated: %v", err)
	}
	command(t, kid, "close")
	expect("close", "closed")
	kid.CloseStdin()
	if err := kid.Wait(childReply); err != nil {
		t.Fatalf("the child did not exit cleanly: %v", err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSHMProcessTruncationAsleep: a receiver asleep on a ring that another
// process truncates cannot be woken (the doorbell it sleeps on went with
// the pages); closing its client and its handle still returns, leaving
// that receive and its mapping alone, and the process exits cleanly.
func TestSHMProcessTruncationAsleep(t *testing.T) {
	root := testRoot(t)
	const name = "truncate-asleep"
	x := openSHM(t, root, name, exchange.WithMailboxBytes(4096))
	ctx := testCtx(t, time.Minute)
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Sleeper"})
	if err != nil {
		t.Fatal(err)
	}
	kid := childproc.Start(t, "victim", root, name, agent.String(), "park")
	line(t, kid, "victim start", childStart)
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "hello", nil)); err != nil {
		t.Fatal(err)
	}
	if f := line(t, kid, "first message", childReply); f[0] != "got" {
		t.Fatalf("child said %q", f)
	}
	// The receiver goes back to sleep: the ring is empty, and it parks at
	// once. Truncated now, its pages go; it keeps sleeping.
	if err := os.Truncate(filepath.Join(x.Dir(), ringFile(agent)), 0); err != nil {
		t.Fatal(err)
	}
	command(t, kid, "close")
	for f := line(t, kid, "close", childReply); f[0] != "closed"; f = line(t, kid, "close", childReply) {
		if f[0] != "recv-error" { // if the close's interrupt woke it after all
			t.Fatalf("child said %q", f)
		}
	}
	kid.CloseStdin()
	if err := kid.Wait(childReply); err != nil {
		t.Fatalf("the child did not exit cleanly: %v", err)
	}
}
