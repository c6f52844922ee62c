package exchange_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Regression tests of issue #15: a process that keeps creating and
// terminating mailboxes keeps a flat count of files in the exchange
// directory and of mappings, in itself and in the processes that send to
// those mailboxes; a clean Close leaves nothing that nobody can use.

// mapsLines returns the number of mappings of this process (lines of
// /proc/self/maps).
func mapsLines(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps: %v", err)
	}
	return bytes.Count(b, []byte{'\n'})
}

// dirFiles returns the names of the files in dir, by prefix: rings,
// and the others.
func dirFiles(t testing.TB, dir string) (rings, others int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), shm.RingPrefix) {
			rings++
		} else {
			others++
		}
	}
	return rings, others
}

// mapsSlack is how many mappings the Go runtime may add while a test runs
// (heap arenas, stacks, the race detector's shadow): the flat counts are
// checked within it.
const mapsSlack = 24

// TestSHMCyclesStayFlat: one handle cycles mailboxes through the ways a
// program uses them (a client per request, an agent runtime that closes
// its client before or after Terminate, a mailbox terminated with a
// request queued, one drained after its Terminate); the files of the
// exchange directory and the process's mappings stay flat (100,000 cycles
// with SHMEX_LONG=1).
func TestSHMCyclesStayFlat(t *testing.T) {
	root := testRoot(t)
	x := openSHM(t, root, "flat", exchange.WithMailboxBytes(1024), exchange.WithRegistryCapacity(256))
	ctx := testCtx(t, time.Hour)
	k, err := x.RegisterClient(ctx) // a long-lived client: the requester
	if err != nil {
		t.Fatal(err)
	}
	kmb, err := x.Mailbox(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	recv := func(mb exchange.Mailbox, what string) {
		t.Helper()
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatalf("%s: Recv: %v", what, err)
		}
	}
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	cycle := func(c int) {
		switch c % 4 {
		case 0: // a client per request
			id, err := x.RegisterClient(ctx)
			must(err, "RegisterClient")
			mb, err := x.Mailbox(ctx, id)
			must(err, "Mailbox")
			must(x.Send(ctx, exchange.NewActionResponse(k, id, exchange.NewTag(), []byte("r"))), "Send")
			recv(mb, "client")
			must(mb.Close(), "Close")
			must(x.Terminate(ctx, id), "Terminate")
		case 1: // an agent runtime: serve one request, close, terminate
			id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Cycle"})
			must(err, "RegisterAgent")
			mb, err := x.Mailbox(ctx, id)
			must(err, "Mailbox")
			req := exchange.NewActionRequest(k, id, "work", nil)
			must(x.Send(ctx, req), "Send request")
			recv(mb, "agent")
			must(x.Send(ctx, req.Response([]byte("done"))), "Send response")
			recv(kmb, "requester")
			must(mb.Close(), "Close")
			must(x.Terminate(ctx, id), "Terminate")
		case 2: // terminated with a request queued: answered
			id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Cycle"})
			must(err, "RegisterAgent")
			must(x.Send(ctx, exchange.NewPingRequest(k, id)), "Send")
			must(x.Terminate(ctx, id), "Terminate")
			recv(kmb, "answer")
			if !errors.Is(m.Err(), exchange.ErrMailboxClosed) {
				t.Fatalf("answer %v", &m)
			}
		case 3: // terminated under its receiver, which drains it
			id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Cycle"})
			must(err, "RegisterAgent")
			mb, err := x.Mailbox(ctx, id)
			must(err, "Mailbox")
			must(x.Send(ctx, exchange.NewActionResponse(k, id, exchange.NewTag(), nil)), "Send")
			must(x.Terminate(ctx, id), "Terminate")
			recv(mb, "drain")
			if err := mb.Recv(ctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
				t.Fatalf("Recv after draining: %v", err)
			}
			must(mb.Close(), "Close")
		}
	}
	for c := range 200 { // warm up: the runtime's own mappings settle
		cycle(c)
	}
	rings0, others0 := dirFiles(t, x.Dir())
	maps0 := mapsLines(t)
	n := cycles(4000, 100000)
	for c := range n {
		cycle(c)
		if c%1000 == 999 || c == n-1 {
			rings, others := dirFiles(t, x.Dir())
			maps := mapsLines(t)
			if rings != rings0 || others != others0 || maps > maps0+mapsSlack || x.MappedRings() > 2 {
				t.Fatalf("after %d cycles: %d rings and %d other files (at first %d and %d), %d mappings (at first %d), %d rings mapped",
					c+1, rings, others, rings0, others0, maps, maps0, x.MappedRings())
			}
		}
	}
}

// mapperChild joins exchange args[1] under root args[0] and sends a
// response to every mailbox the parent names, as a process that talks to
// many short-lived mailboxes does:
//
//	send <id>  ->  sent <rings mapped> <mappings of the process>
func mapperChild(args []string) int {
	if len(args) != 2 {
		return childFail("mapper: args %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	src := exchange.NewClientID()
	say("ready")
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != "send" {
			return childFail("command %q", sc.Text())
		}
		id, err := exchange.ParseEntityID(f[1])
		if err != nil {
			return childFail("id: %v", err)
		}
		if err := x.Send(ctx, exchange.NewActionResponse(src, id, exchange.NewTag(), nil)); err != nil {
			return childFail("Send: %v", err)
		}
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			return childFail("maps: %v", err)
		}
		say("sent", x.MappedRings(), bytes.Count(b, []byte{'\n'}))
	}
	return 0
}

// TestSHMProcessSenderUnmaps: a sender process that sends once to each of
// a stream of mailboxes that another process creates and terminates lets
// go of their rings: the rings it keeps mapped and its mappings stay flat.
func TestSHMProcessSenderUnmaps(t *testing.T) {
	root := testRoot(t)
	const name = "mapper"
	x := openSHM(t, root, name, exchange.WithMailboxBytes(1024))
	ctx := testCtx(t, time.Hour)
	kid := childproc.Start(t, "mapper", root, name)
	line(t, kid, "mapper start", childStart)
	var m exchange.Message
	n := cycles(600, 20000)
	var maps0 int
	for c := range n {
		id, err := x.RegisterClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := x.Mailbox(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		command(t, kid, "send "+id.String())
		f := line(t, kid, "mapper", childReply)
		if len(f) != 3 {
			t.Fatalf("mapper said %q", f)
		}
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
		mb.Close()
		if err := x.Terminate(ctx, id); err != nil {
			t.Fatal(err)
		}
		mapped, _ := strconv.Atoi(f[1])
		maps, _ := strconv.Atoi(f[2])
		if c == 100 {
			maps0 = maps
		}
		if mapped > 2 || c > 100 && maps > maps0+mapsSlack {
			t.Fatalf("cycle %d: the sender maps %d rings and has %d mappings (%d at cycle 100)", c, mapped, maps, maps0)
		}
	}
	if rings, _ := dirFiles(t, x.Dir()); rings != 0 {
		t.Fatalf("%d ring files left", rings)
	}
}

// registrarChild joins exchange args[1] under root args[0], registers
//
//	owned     an agent whose mailbox it opens, a request queued in it
//	unopened  a client it never receives from
//	left      an agent, terminated with a response left in it
//	given     an agent for the parent to take over as receiver
//
// reports "ids <owned> <unopened> <left> <given>", and on "close" closes
// its handle and reports "closed".
func registrarChild(args []string) int {
	if len(args) != 2 {
		return childFail("registrar: args %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	var ids []exchange.EntityID
	for _, b := range []string{"Owned", "", "Left", "Given"} {
		var id exchange.EntityID
		if b == "" {
			id, err = x.RegisterClient(ctx)
		} else {
			id, err = x.RegisterAgent(ctx, exchange.Behavior{Name: b})
		}
		if err != nil {
			return childFail("register: %v", err)
		}
		ids = append(ids, id)
	}
	owned, unopened, left := ids[0], ids[1], ids[2]
	if _, err := x.Mailbox(ctx, owned); err != nil {
		return childFail("Mailbox: %v", err)
	}
	for _, m := range []*exchange.Message{
		exchange.NewActionRequest(unopened, owned, "queued", nil),
		exchange.NewActionResponse(unopened, left, exchange.NewTag(), []byte("left")),
	} {
		if err := x.Send(ctx, m); err != nil {
			return childFail("Send: %v", err)
		}
	}
	if err := x.Terminate(ctx, left); err != nil {
		return childFail("Terminate: %v", err)
	}
	say("ids", ids[0], ids[1], ids[2], ids[3])
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
		if sc.Text() == "close" {
			if err := x.Close(); err != nil {
				return childFail("Close: %v", err)
			}
			say("closed")
		}
	}
	return 0
}

// TestSHMProcessCloseRemovesRings: a process that closes its last handle
// cleanly terminates the mailboxes it owns (answering what is queued in
// them) and removes every ring it created that nobody else can use; the
// mailbox it registered but another live process took over as receiver
// survives, and works.
func TestSHMProcessCloseRemovesRings(t *testing.T) {
	root := testRoot(t)
	const name = "closer-rings"
	x := openSHM(t, root, name, exchange.WithMailboxBytes(1024))
	ctx := testCtx(t, time.Minute)
	kid := childproc.Start(t, "registrar", root, name)
	ids := parseIDs(t, line(t, kid, "registrar", childStart)[1:]...)
	owned, unopened, left, given := ids[0], ids[1], ids[2], ids[3]
	gmb, err := x.Mailbox(ctx, given) // this process takes it over
	if err != nil {
		t.Fatal(err)
	}
	rings, _ := dirFiles(t, x.Dir())
	if rings != 4 {
		t.Fatalf("%d rings before the close, want 4", rings)
	}
	command(t, kid, "close")
	line(t, kid, "registrar close", childReply)
	for _, id := range []exchange.EntityID{owned, unopened, left} {
		if st, err := x.Status(ctx, id); err != nil || st != exchange.StatusTerminated {
			t.Fatalf("Status(%v) after its process closed = %v, %v", id, st, err)
		}
	}
	if st, err := x.Status(ctx, given); err != nil || st != exchange.StatusActive {
		t.Fatalf("Status of the mailbox taken over = %v, %v", st, err)
	}
	var names []string
	ents, _ := os.ReadDir(x.Dir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), shm.RingPrefix) {
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 || names[0] != filepath.Base(ringFile(given)) {
		t.Fatalf("rings after the close: %q, want only %s's", names, given)
	}
	// The request queued in owned was answered to unopened, whose ring is
	// gone with it: nothing to see there. The mailbox taken over works.
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := exchange.NewActionRequest(client, given, "still", nil)
	if err := x.Send(ctx, req); err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	if err := gmb.Recv(ctx, &m); err != nil || m.Tag != req.Tag {
		t.Fatalf("Recv on the mailbox taken over: %v, %v", &m, err)
	}
	if err := x.Send(ctx, exchange.NewPingRequest(client, owned)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Send to a mailbox of the closed process: %v", err)
	}
	st, err := x.Collect(ctx)
	if err != nil || st.Rings != 0 {
		t.Fatalf("Collect after a clean close = %+v, %v; want no ring", st, err)
	}
}

// ringFile returns the base name of the ring of id's first incarnation.
func ringFile(id exchange.EntityID) string {
	return fmt.Sprintf("%s%x", shm.RingPrefix, id.UUID[:])
}

// TestSHMTerminatedRingRemovedByLastParty (bug 5 of docs/guarantees.md):
// the ring of a mailbox terminated while its receiver is attached goes
// with the last party that lets go of it, whatever is left in it and in
// whichever order the Terminate, the receiver's Close and a late send
// come. agent.Client.Close terminates its mailbox, then closes the
// receiver; a message that came after its last Recv (a wake-up the
// client sent itself, a late response) kept the ring's file until the
// owner's process exited: Terminate could not sweep the ring (a receiver
// was attached), and the receiver's Close removed it only when empty.
func TestSHMTerminatedRingRemovedByLastParty(t *testing.T) {
	root := testRoot(t)
	x := openSHM(t, root, "lastparty", exchange.WithMailboxBytes(4096))
	ctx := testCtx(t, time.Minute)
	k, err := x.RegisterClient(ctx) // a requester, for the answers
	if err != nil {
		t.Fatal(err)
	}
	kmb, err := x.Mailbox(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	defer kmb.Close()
	for _, tc := range []struct {
		name  string
		left  func(id exchange.EntityID) *exchange.Message // queued before the Terminate
		close bool                                         // the receiver closes before the Terminate
	}{
		{"response, terminate then close", func(id exchange.EntityID) *exchange.Message {
			return exchange.NewActionResponse(k, id, exchange.NewTag(), []byte("late"))
		}, false},
		{"wake-up to itself, terminate then close", func(id exchange.EntityID) *exchange.Message {
			return &exchange.Message{Kind: exchange.KindPingResponse, Tag: exchange.NewTag(), Src: id, Dest: id}
		}, false},
		{"request, terminate then close", func(id exchange.EntityID) *exchange.Message {
			return exchange.NewPingRequest(k, id)
		}, false},
		{"request, close then terminate", func(id exchange.EntityID) *exchange.Message {
			return exchange.NewPingRequest(k, id)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := x.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mb, err := x.Mailbox(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			path := x.RingPath(id)
			m := tc.left(id)
			if err := x.Send(ctx, m); err != nil {
				t.Fatal(err)
			}
			if tc.close {
				mb.Close()
			}
			if err := x.Terminate(ctx, id); err != nil {
				t.Fatal(err)
			}
			mb.Close()
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				st, _ := x.Status(ctx, id)
				t.Fatalf("ring of the terminated mailbox (status %v) kept after its receiver closed, its owner alive: stat: %v", st, err)
			}
			if m.Kind.IsRequest() { // answered, not left waiting
				var a exchange.Message
				if err := kmb.Recv(ctx, &a); err != nil || !errors.Is(a.Err(), exchange.ErrMailboxClosed) {
					t.Fatalf("answer to the queued request: %v, %v", &a, err)
				}
			}
		})
	}
}

// TestSHMTerminatedRingLateCommit (bug 5): a send that claimed space in a
// mailbox's ring before its Terminate closed it commits only once the
// last party to let go of the ring is at it: the receiver's Close (the
// receiver was attached during the Terminate), or the Terminate's sweep
// (no receiver). That party waits for the commit, drains it and removes
// the ring. (Before, it saw the claim pending and kept the ring, which
// then stayed until its owner's process exited: nobody looked at it
// again.) The late sender is a producer of another "process" (a liveness
// lock of its own) that commits once the party waits for it, sleeping on
// the ring (its Sleeps counter), or once the party returned (it did not
// wait).
func TestSHMTerminatedRingLateCommit(t *testing.T) {
	if !ring.Counting() {
		t.Skip("the test waits for the ring's Sleeps counter; this build counts nothing (shmex_nocounters)")
	}
	root := testRoot(t)
	x := openSHM(t, root, "latecommit", exchange.WithMailboxBytes(4096))
	ctx := testCtx(t, time.Minute)
	for _, receiver := range []bool{true, false} {
		t.Run(fmt.Sprintf("receiver=%v", receiver), func(t *testing.T) {
			id, err := x.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var mb exchange.Mailbox
			if receiver {
				if mb, err = x.Mailbox(ctx, id); err != nil {
					t.Fatal(err)
				}
				defer mb.Close()
			}
			path := x.RingPath(id)

			// The late sender: its own mapping of the ring, its own liveness.
			life, err := shm.HoldLife(x.Dir())
			if err != nil {
				t.Fatal(err)
			}
			defer life.Close()
			seg, err := shm.Open(path, shm.KindRing)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			r, err := ring.Attach(seg.Body(), ring.Options{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := r.NewProducer(life.ID())
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			c, err := p.TryClaim(int32(exchange.KindActionResponse), 16)
			if err != nil {
				t.Fatal(err)
			}

			sleeps := r.Stats().Sleeps
			returned := make(chan struct{})
			committed := make(chan struct{})
			go func() {
				defer close(committed)
				for deadline := time.Now().Add(time.Minute); r.Stats().Sleeps == sleeps && time.Now().Before(deadline); {
					select {
					case <-returned:
						c.Commit()
						return
					case <-time.After(100 * time.Microsecond):
					}
				}
				c.Commit()
			}()
			// The receiver attached: the Terminate cannot sweep, and
			// the receiver's Close is the last party; else the
			// Terminate's sweep is.
			if err := x.Terminate(ctx, id); err != nil {
				t.Fatal(err)
			}
			if receiver {
				mb.Close()
			}
			close(returned)
			<-committed
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("ring of the terminated mailbox kept after a send committed to it late, its owner alive: stat: %v", err)
			}
		})
	}
}
