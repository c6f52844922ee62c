package exchange_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Cross-process tests of the shared-memory exchange. The children are the
// test binary re-run in a role (see main_test.go); they talk to the parent
// through one line per report on standard output and take commands on
// standard input. Every wait is bounded.

const (
	childStart = 30 * time.Second // a child's first line (a race binary starts slowly on a busy machine)
	childReply = 30 * time.Second // a child's reply to a command
	childLife  = 2 * time.Minute  // a child never lives longer
)

// ---- helpers shared by parents and children ----

var discardLog = slog.New(slog.DiscardHandler)

// logBuffer collects an exchange handle's log, shown when the test ends.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// openSHM opens exchange name under root for the test, with a logger whose
// output the test log shows; the handle is closed at cleanup.
func openSHM(t testing.TB, root, name string, opts ...exchange.Option) *exchange.SHM {
	t.Helper()
	logs := &logBuffer{}
	opts = append([]exchange.Option{exchange.WithRoot(root), exchange.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))}, opts...)
	x, err := exchange.Open(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		x.Close()
		if s := logs.String(); s != "" {
			t.Logf("log of the exchange handle:\n%s", s)
		}
	})
	return x
}

// testCtx returns a context that ends after d or when the test ends.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// say and childFail are a child's reports (childproc.Say, childproc.Fail).
var say, childFail = childproc.Say, childproc.Fail

// serve answers the requests that arrive in mb until the mailbox or the
// handle is closed: an ActionRequest gets the result
// "<behavior>|<action>|<args>", a ping its pong.
func serve(ctx context.Context, x exchange.Exchange, mb exchange.Mailbox, behavior string) error {
	var req, resp exchange.Message
	var result []byte
	for {
		err := mb.Recv(ctx, &req)
		if errors.Is(err, exchange.ErrMailboxClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("serve %s: Recv: %w", behavior, err)
		}
		switch req.Kind {
		case exchange.KindActionRequest:
			result = expectedResult(result[:0], behavior, req.Action, req.Args)
			resp.SetResponse(&req, result)
		case exchange.KindPingRequest:
			resp.SetResponse(&req, nil)
		default:
			continue
		}
		err = x.Send(ctx, &resp)
		if err != nil && !errors.Is(err, exchange.ErrMailboxClosed) && !errors.Is(err, exchange.ErrBadEntityID) {
			return fmt.Errorf("serve %s: Send: %w", behavior, err)
		}
	}
}

func expectedResult(dst []byte, behavior string, action, args []byte) []byte {
	dst = append(dst, behavior...)
	dst = append(dst, '|')
	dst = append(dst, action...)
	dst = append(dst, '|')
	return append(dst, args...)
}

// callAgents sends n ActionRequests from src to each of dests, interleaved,
// each with a fresh label and random args, then receives every response in
// mb and checks kind, tag, label, ends, action and result (the result the
// agent's behavior, read with Info, computes in serve).
func callAgents(ctx context.Context, x exchange.Exchange, mb exchange.Mailbox, src exchange.EntityID, dests []exchange.EntityID, n int) error {
	behavior := map[exchange.EntityID]string{}
	for _, d := range dests {
		info, err := x.Info(ctx, d)
		if err != nil {
			return fmt.Errorf("Info(%v): %w", d, err)
		}
		if info.Status != exchange.StatusActive || info.ID != d {
			return fmt.Errorf("Info(%v) = %+v", d, info)
		}
		behavior[d] = info.Behavior.Name
	}
	pending := map[exchange.UUID]*exchange.Message{}
	for i := 0; i < n; i++ {
		for _, d := range dests {
			args := make([]byte, 1+mrand.IntN(64))
			for k := range args {
				args[k] = byte(mrand.Uint32())
			}
			req := exchange.NewActionRequest(src, d, "act"+strconv.Itoa(i%7), args)
			req.Label = exchange.NewTag()
			if err := x.Send(ctx, req); err != nil {
				return fmt.Errorf("Send %v: %w", req, err)
			}
			pending[req.Tag] = req
		}
	}
	var resp exchange.Message
	for len(pending) > 0 {
		if err := mb.Recv(ctx, &resp); err != nil {
			return fmt.Errorf("Recv with %d responses pending: %w", len(pending), err)
		}
		req, ok := pending[resp.Tag]
		if !ok {
			return fmt.Errorf("unexpected or duplicate message %v", &resp)
		}
		delete(pending, resp.Tag)
		want := expectedResult(nil, behavior[req.Dest], req.Action, req.Args)
		if resp.Kind != exchange.KindActionResponse || resp.Src != req.Dest || resp.Dest != src ||
			resp.Label != req.Label || !bytes.Equal(resp.Action, req.Action) || resp.IsError() ||
			!bytes.Equal(resp.Result, want) {
			return fmt.Errorf("response %v (result %q) to %v, want result %q", &resp, resp.Result, req, want)
		}
	}
	return nil
}

// openRing maps the ring of id's mailbox (its first incarnation) in the
// exchange directory dir straight from its segment, bypassing the
// exchange; close the segment when done.
func openRing(dir string, id exchange.EntityID, opts ...shm.Option) (*shm.Segment, *ring.Ring, error) {
	seg, err := shm.Open(filepath.Join(dir, shm.RingPrefix+hex.EncodeToString(id.UUID[:])), shm.KindRing, opts...)
	if err != nil {
		return nil, nil, err
	}
	r, err := ring.Attach(seg.Body(), ring.Options{})
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, r, nil
}

// ringStats describes the ring of id's mailbox, read straight from its
// segment (how many records of dead producers the receiver recovered).
func ringStats(x *exchange.SHM, id exchange.EntityID) (ring.Stats, error) {
	seg, r, err := openRing(x.Dir(), id, shm.ReadOnly())
	if err != nil {
		return ring.Stats{}, err
	}
	defer seg.Close()
	return r.Stats(), nil
}

func joinIDs(ids []exchange.EntityID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func parseIDs(t *testing.T, fields ...string) []exchange.EntityID {
	t.Helper()
	ids := make([]exchange.EntityID, len(fields))
	for i, f := range fields {
		id, err := exchange.ParseEntityID(f)
		if err != nil {
			t.Fatalf("child sent id %q: %v", f, err)
		}
		ids[i] = id
	}
	return ids
}

// line returns c's next line, split into fields, failing on an error report.
func line(t *testing.T, c *childproc.Child, what string, timeout time.Duration) []string {
	t.Helper()
	l, err := c.Line(timeout)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	f := strings.Fields(l)
	if len(f) == 0 || f[0] == "error" {
		t.Fatalf("%s: child reported %q", what, l)
	}
	return f
}

func command(t *testing.T, c *childproc.Child, cmd string) {
	t.Helper()
	if err := c.Send(cmd); err != nil {
		t.Fatalf("command %q: %v", cmd, err)
	}
}

// ---- (a) three processes discover each other and call each other ----

// peerChild registers an agent and a client in an exchange, serves the
// agent's mailbox, reports "id <agent> <client>", then runs commands:
//
//	discover <behavior> <0|1>  ->  found <sorted ids, comma-separated>
//	call <n> <agent>...        ->  called <n*agents>
//	exit                       ->  bye (after closing the handle)
//
// args: root, exchange name, behavior name, implemented behaviors
// (comma-separated, possibly empty).
func peerChild(args []string) int {
	if len(args) != 4 {
		return childFail("peer: args %q", args)
	}
	root, name, beh := args[0], args[1], args[2]
	var impl []string
	if args[3] != "" {
		impl = strings.Split(args[3], ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(name, exchange.WithRoot(root), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: beh, Implements: impl}, exchange.WithName("peer-"+beh))
	if err != nil {
		return childFail("RegisterAgent: %v", err)
	}
	amb, err := x.Mailbox(ctx, agent)
	if err != nil {
		return childFail("Mailbox(agent): %v", err)
	}
	client, err := x.RegisterClient(ctx)
	if err != nil {
		return childFail("RegisterClient: %v", err)
	}
	cmb, err := x.Mailbox(ctx, client)
	if err != nil {
		return childFail("Mailbox(client): %v", err)
	}
	served := make(chan error, 1)
	go func() {
		err := serve(ctx, x, amb, beh)
		if err != nil {
			say("error", err)
		}
		served <- err
	}()
	say("id", agent, client)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "discover":
			ids, err := x.Discover(ctx, f[1], f[2] == "1")
			if err != nil {
				say("error", "Discover:", err)
				continue
			}
			say("found", joinIDs(ids))
		case len(f) >= 3 && f[0] == "call":
			n, _ := strconv.Atoi(f[1])
			var dests []exchange.EntityID
			for _, s := range f[2:] {
				id, err := exchange.ParseEntityID(s)
				if err != nil {
					return childFail("call: %v", err)
				}
				dests = append(dests, id)
			}
			if err := callAgents(ctx, x, cmb, client, dests, n); err != nil {
				say("error", "call:", err)
				continue
			}
			say("called", n*len(dests))
		case len(f) == 1 && f[0] == "exit":
			x.Close()
			select {
			case err := <-served:
				if err != nil {
					return 1
				}
			case <-time.After(10 * time.Second):
				return childFail("serve did not stop after Close")
			}
			say("bye")
			return 0
		default:
			return childFail("unknown command %q", sc.Text())
		}
	}
	return childFail("stdin closed without exit")
}

// TestSHMProcessesDiscoverAndCall: three processes (this one and two
// children) open one exchange, each registers an agent with a behavior;
// each process discovers the others by name and by implemented behavior;
// the parent calls each child's agent, and each child calls the other
// child's agent and the parent's, checking every response. When the
// children close their handles and exit, their agents are seen terminated.
func TestSHMProcessesDiscoverAndCall(t *testing.T) {
	root := testRoot(t)
	const name = "procs"
	ctx := testCtx(t, 2*time.Minute)
	x := openSHM(t, root, name)
	coord, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Coordinator", Implements: []string{"Peer"}})
	if err != nil {
		t.Fatal(err)
	}
	amb, err := x.Mailbox(ctx, coord)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serve(ctx, x, amb, "Coordinator") }()
	defer func() {
		amb.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmb, err := x.Mailbox(ctx, client)
	if err != nil {
		t.Fatal(err)
	}

	counterKid := childproc.Start(t, "peer", root, name, "Counter", "Peer,Agent")
	echoKid := childproc.Start(t, "peer", root, name, "Echo", "Peer")
	kids := []*childproc.Child{counterKid, echoKid}
	f := line(t, counterKid, "Counter child start", childStart)
	ids := parseIDs(t, f[1:]...)
	counter, counterClient := ids[0], ids[1]
	f = line(t, echoKid, "Echo child start", childStart)
	ids = parseIDs(t, f[1:]...)
	echo, echoClient := ids[0], ids[1]

	// Discovery, from all three processes.
	type query struct {
		behavior string
		subtypes bool
		want     []exchange.EntityID
	}
	queries := []query{
		{"Peer", false, nil},
		{"Peer", true, []exchange.EntityID{coord, counter, echo}},
		{"Counter", false, []exchange.EntityID{counter}},
		{"Counter", true, []exchange.EntityID{counter}},
		{"Agent", false, nil},
		{"Agent", true, []exchange.EntityID{counter}},
		{"Echo", true, []exchange.EntityID{echo}},
		{"Coordinator", false, []exchange.EntityID{coord}},
		{"Nobody", true, nil},
	}
	for _, q := range queries {
		want := joinIDs(q.want)
		got, err := x.Discover(ctx, q.behavior, q.subtypes)
		if err != nil || joinIDs(got) != want {
			t.Fatalf("parent: Discover(%q, %v) = %v, %v; want %v", q.behavior, q.subtypes, got, err, q.want)
		}
		sub := "0"
		if q.subtypes {
			sub = "1"
		}
		for _, c := range kids {
			command(t, c, "discover "+q.behavior+" "+sub)
		}
		for i, c := range kids {
			f := line(t, c, "discover", childReply)
			got := ""
			if len(f) > 1 {
				got = f[1]
			}
			if f[0] != "found" || got != want {
				t.Fatalf("child %d: Discover(%q, %v) = %q; want %q", i, q.behavior, q.subtypes, f, want)
			}
		}
	}

	// What the registry says about the children's entities.
	info, err := x.Info(ctx, counter)
	if err != nil || info.ID != counter || info.Name != "peer-Counter" || info.Status != exchange.StatusActive ||
		info.Behavior.Name != "Counter" || !slices.Equal(info.Behavior.Implements, []string{"Peer", "Agent"}) {
		t.Fatalf("Info(counter) = %+v, %v", info, err)
	}
	for _, id := range []exchange.EntityID{counter, counterClient, echo, echoClient} {
		if st, err := x.Status(ctx, id); st != exchange.StatusActive || err != nil {
			t.Fatalf("Status(%v) = %v, %v", id, st, err)
		}
	}

	// The parent calls both children, interleaved.
	const n = 64
	if err := callAgents(ctx, x, cmb, client, []exchange.EntityID{counter, echo}, n); err != nil {
		t.Fatal("parent:", err)
	}
	// Each child calls the other and the parent, both at once.
	command(t, counterKid, fmt.Sprintf("call %d %v %v", n/2, echo, coord))
	command(t, echoKid, fmt.Sprintf("call %d %v %v", n/2, counter, coord))
	for i, c := range kids {
		if f := line(t, c, "call", childReply); f[0] != "called" || f[1] != strconv.Itoa(n) {
			t.Fatalf("child %d: call: %q", i, f)
		}
	}

	// Children close their handles and exit: their process is gone, so
	// their mailboxes are terminated and no longer discovered.
	for _, c := range kids {
		command(t, c, "exit")
	}
	for i, c := range kids {
		if f := line(t, c, "exit", childReply); f[0] != "bye" {
			t.Fatalf("child %d: exit: %q", i, f)
		}
		if err := c.Wait(childReply); err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
	}
	for _, id := range []exchange.EntityID{counter, counterClient, echo, echoClient} {
		if st, err := x.Status(ctx, id); st != exchange.StatusTerminated || err != nil {
			t.Fatalf("Status(%v) after its process exited = %v, %v", id, st, err)
		}
	}
	if got, err := x.Discover(ctx, "Peer", true); err != nil || joinIDs(got) != coord.String() {
		t.Fatalf("Discover(Peer, true) after the children exited = %v, %v; want only %v", got, err, coord)
	}
}

// ---- (b) the owner of a mailbox dies ----

// ownerChild registers an agent (behavior Doomed, implementing Mortal) with
// a mailbox of the given size, opens its mailbox (becoming its owner),
// reports "id <agent>", then receives nothing and waits to be killed. args:
// root, exchange name, mailbox bytes.
func ownerChild(args []string) int {
	if len(args) != 3 {
		return childFail("owner: args %q", args)
	}
	size, _ := strconv.Atoi(args[2])
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithMailboxBytes(size), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Doomed", Implements: []string{"Mortal"}})
	if err != nil {
		return childFail("RegisterAgent: %v", err)
	}
	if _, err := x.Mailbox(ctx, agent); err != nil {
		return childFail("Mailbox: %v", err)
	}
	say("id", agent)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
	}
	return 0
}

// TestSHMProcessDeadOwner: a child owns an agent's mailbox, a request is
// queued in it, and the child is killed with SIGKILL. The parent must see
// the mailbox terminated (Status, Info, Discover), Sends to it must fail
// with ErrMailboxClosed (not a timeout), and every request queued in it must
// come back to the client as an error response of kind
// MailboxTerminatedError. The death is noticed first by Status
// (StatusFirst) or by a Send that finds the mailbox full (SendFirst), or,
// with a mailbox too large to fill, by Sends alone (SendNotFull).
func TestSHMProcessDeadOwner(t *testing.T) {
	for _, first := range []string{"StatusFirst", "SendFirst", "SendNotFull"} {
		t.Run(first, func(t *testing.T) {
			size := 4096
			if first == "SendNotFull" {
				// Only a sender's own liveness check can notice the death:
				// the mailbox does not fill within the loop below.
				size = exchange.DefaultMailboxBytes
			}
			root := testRoot(t)
			const name = "deadowner"
			ctx := testCtx(t, time.Minute)
			x := openSHM(t, root, name)
			client, err := x.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cmb, err := x.Mailbox(ctx, client)
			if err != nil {
				t.Fatal(err)
			}
			kid := childproc.Start(t, "owner", root, name, strconv.Itoa(size))
			agent := parseIDs(t, line(t, kid, "owner start", childStart)[1])[0]
			if st, err := x.Status(ctx, agent); st != exchange.StatusActive || err != nil {
				t.Fatalf("Status before the kill = %v, %v", st, err)
			}
			if got, err := x.Discover(ctx, "Mortal", true); err != nil || joinIDs(got) != agent.String() {
				t.Fatalf("Discover before the kill = %v, %v", got, err)
			}
			queued := exchange.NewActionRequest(client, agent, "work", []byte("queued before the kill"))
			queued.Label = exchange.NewTag()
			if err := x.Send(ctx, queued); err != nil {
				t.Fatal(err)
			}
			kid.Kill() // SIGKILL, and reaped: its liveness lock is gone

			pending := []*exchange.Message{queued}
			switch first {
			case "StatusFirst":
				deadline := time.Now().Add(10 * time.Second)
				for {
					st, err := x.Status(ctx, agent)
					if err != nil {
						t.Fatal(err)
					}
					if st == exchange.StatusTerminated {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("Status of the dead owner's agent still %v after 10s", st)
					}
					time.Sleep(10 * time.Millisecond)
				}
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := x.Send(sctx, exchange.NewActionRequest(client, agent, "work", nil))
				cancel()
				if !errors.Is(err, exchange.ErrMailboxClosed) {
					t.Fatalf("Send to the terminated mailbox: %v, want ErrMailboxClosed", err)
				}
			case "SendFirst":
				// Send until the mailbox is full and the sender notices
				// the owner is dead. Each send has its own deadline, which
				// must not be what ends the loop.
				for i := 0; ; i++ {
					if i == 10000 {
						t.Fatal("10000 sends to a dead owner's 4 KiB mailbox all succeeded")
					}
					m := exchange.NewActionRequest(client, agent, "work", make([]byte, 64))
					m.Label = exchange.NewTag()
					sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					err := x.Send(sctx, m)
					cancel()
					if err == nil {
						pending = append(pending, m)
						continue
					}
					if !errors.Is(err, exchange.ErrMailboxClosed) || errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("send %d to the dead owner's mailbox: %v, want ErrMailboxClosed", i, err)
					}
					break
				}
				t.Logf("%d sends to the dead owner's mailbox succeeded before one failed", len(pending)-1)
				if st, err := x.Status(ctx, agent); st != exchange.StatusTerminated || err != nil {
					t.Fatalf("Status after the failed Send = %v, %v", st, err)
				}
			case "SendNotFull":
				// A request every 20 ms for up to 5 s: at most 250 small
				// requests, a tenth of the mailbox. The first Send after
				// the death is noticed must fail with ErrMailboxClosed.
				deadline := time.Now().Add(5 * time.Second)
				for i := 0; ; i++ {
					if time.Now().After(deadline) {
						t.Fatalf("%d Sends to the dead owner's mailbox over 5s all succeeded", i)
					}
					m := exchange.NewActionRequest(client, agent, "work", nil)
					m.Label = exchange.NewTag()
					sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					err := x.Send(sctx, m)
					cancel()
					if err == nil {
						pending = append(pending, m)
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if !errors.Is(err, exchange.ErrMailboxClosed) {
						t.Fatalf("send %d to the dead owner's mailbox: %v, want ErrMailboxClosed", i, err)
					}
					break
				}
				if st, err := x.Status(ctx, agent); st != exchange.StatusTerminated || err != nil {
					t.Fatalf("Status after the failed Send = %v, %v", st, err)
				}
			}

			if info, err := x.Info(ctx, agent); err != nil || info.Status != exchange.StatusTerminated {
				t.Fatalf("Info of the dead owner's agent = %+v, %v", info, err)
			}
			for _, q := range []struct {
				b   string
				sub bool
			}{{"Doomed", false}, {"Doomed", true}, {"Mortal", true}} {
				if got, err := x.Discover(ctx, q.b, q.sub); err != nil || len(got) != 0 {
					t.Fatalf("Discover(%q, %v) after the owner died = %v, %v", q.b, q.sub, got, err)
				}
			}
			wantTerminatedAnswers(t, ctx, cmb, agent, client, pending)

			// The dead owner's mailbox can be taken over: it is drained
			// (the requests were answered, not left) and closed.
			mb, err := x.Mailbox(ctx, agent)
			if err != nil {
				t.Fatalf("Mailbox of the dead owner's agent: %v", err)
			}
			var m exchange.Message
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := mb.Recv(rctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
				t.Fatalf("Recv from the dead owner's mailbox: %v (%v), want ErrMailboxClosed", err, &m)
			}
		})
	}
}

// wantTerminatedAnswers receives one error response of kind
// MailboxTerminatedError for each of reqs, in any order, and then nothing.
func wantTerminatedAnswers(t *testing.T, ctx context.Context, mb exchange.Mailbox, agent, client exchange.EntityID, reqs []*exchange.Message) {
	t.Helper()
	pending := map[exchange.UUID]*exchange.Message{}
	for _, r := range reqs {
		pending[r.Tag] = r
	}
	var m exchange.Message
	for len(pending) > 0 {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := mb.Recv(rctx, &m)
		cancel()
		if err != nil {
			t.Fatalf("Recv with %d of %d answers missing: %v", len(pending), len(reqs), err)
		}
		req, ok := pending[m.Tag]
		if !ok {
			t.Fatalf("unexpected or duplicate message %v", &m)
		}
		delete(pending, m.Tag)
		if m.Kind != exchange.KindActionResponse || m.Src != agent || m.Dest != client || m.Label != req.Label ||
			!bytes.Equal(m.Action, req.Action) || len(m.Result) != 0 ||
			string(m.ErrorKind) != exchange.ErrorKindMailboxTerminated || !errors.Is(m.Err(), exchange.ErrMailboxClosed) {
			t.Fatalf("answer %v to %v", &m, req)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("answer %v: %v", &m, err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := mb.Recv(rctx, &m); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv after the %d answers: %v (%v), want nothing more", len(reqs), err, &m)
	}
}

// ---- (c) a sender is killed while it sends ----

// senderStreams is how many goroutines a flooding sender runs, each with its
// own sequence.
const senderStreams = 2

// seqMessage fills m as message seq of stream from src to dest: Args are the
// stream, seq (8 bytes, little-endian) and a pattern of a length that
// depends on seq, so that a torn or misdelivered record cannot pass
// checkSeqMessage.
func seqMessage(m *exchange.Message, src, dest exchange.EntityID, stream byte, seq uint64) {
	m.Reset()
	m.Kind, m.Tag, m.Src, m.Dest = exchange.KindActionRequest, exchange.NewTag(), src, dest
	m.SetAction("seq")
	m.Args = append(m.Args, stream)
	m.Args = binary.LittleEndian.AppendUint64(m.Args, seq)
	for i := range int(seq*7%160) + 1 {
		m.Args = append(m.Args, byte(seq)+byte(i)*13+stream)
	}
}

// checkSeqMessage returns the stream and sequence number of a message made
// by seqMessage, or an error.
func checkSeqMessage(m *exchange.Message, dest exchange.EntityID) (stream byte, seq uint64, err error) {
	if m.Kind != exchange.KindActionRequest || m.Dest != dest || string(m.Action) != "seq" || len(m.Args) < 9 {
		return 0, 0, fmt.Errorf("not a sequence message: %v", m)
	}
	stream, seq = m.Args[0], binary.LittleEndian.Uint64(m.Args[1:])
	pat := m.Args[9:]
	if len(pat) != int(seq*7%160)+1 {
		return 0, 0, fmt.Errorf("message %d of stream %d: %d pattern bytes", seq, stream, len(pat))
	}
	for i, b := range pat {
		if b != byte(seq)+byte(i)*13+stream {
			return 0, 0, fmt.Errorf("message %d of stream %d: pattern byte %d is %#x", seq, stream, i, b)
		}
	}
	return stream, seq, nil
}

// senderChild registers a client and sends sequence messages to the
// mailbox dest. In mode "flood" it reports "ready <client>" and sends from
// senderStreams goroutines as fast as it can until it is killed. Mode
// "flood-stuck" is "flood", plus: once it has sent a few messages, it
// claims a record in dest's ring directly (with the ring package, under a
// liveness lock of its own in the exchange directory), never commits it,
// and reports "claimed": it dies between a claim and its commit, which the
// receiver must recover from. In mode "live" it reports "ready <client>",
// then for each command "send <n>" sends n more messages on stream 0 and
// reports "sent <last seq>"; it exits when its standard input closes.
// args: root, exchange name, dest, mode.
func senderChild(args []string) int {
	if len(args) != 4 {
		return childFail("sender: args %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	dest, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return childFail("dest: %v", err)
	}
	me, err := x.RegisterClient(ctx)
	if err != nil {
		return childFail("RegisterClient: %v", err)
	}
	say("ready", me)
	switch args[3] {
	case "flood", "flood-stuck":
		var sent atomic.Uint64
		for s := range senderStreams {
			go func() {
				var m exchange.Message
				for seq := uint64(1); ; seq++ {
					seqMessage(&m, me, dest, byte(s), seq)
					if err := x.Send(ctx, &m); err != nil {
						say("error", "Send:", err)
						return
					}
					sent.Add(1)
				}
			}()
		}
		if args[3] == "flood-stuck" {
			for sent.Load() < 10 {
				if ctx.Err() != nil {
					return childFail("flooder sent %d messages", sent.Load())
				}
				time.Sleep(100 * time.Microsecond)
			}
			if err := claimForever(ctx, x.Dir(), dest); err != nil {
				return childFail("claim: %v", err)
			}
			say("claimed")
		}
		<-ctx.Done()
		return childFail("flooding sender was not killed")
	case "live":
		var m exchange.Message
		seq := uint64(0)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 || f[0] != "send" {
				return childFail("unknown command %q", sc.Text())
			}
			n, _ := strconv.Atoi(f[1])
			for range n {
				seq++
				seqMessage(&m, me, dest, 0, seq)
				if err := x.Send(ctx, &m); err != nil {
					return childFail("Send %d: %v", seq, err)
				}
			}
			say("sent", seq)
		}
		return 0
	}
	return childFail("unknown mode %q", args[3])
}

// claimForever claims a record in the ring of dest's mailbox, as a producer
// of a liveness lock of its own in the exchange directory dir, and leaves it
// uncommitted (its segment and lock stay held until the process dies).
func claimForever(ctx context.Context, dir string, dest exchange.EntityID) error {
	life, err := shm.HoldLife(dir)
	if err != nil {
		return err
	}
	_, r, err := openRing(dir, dest)
	if err != nil {
		return err
	}
	p, err := r.NewProducer(life.ID())
	if err != nil {
		return err
	}
	c, err := p.Claim(ctx, int32(exchange.KindActionRequest), 100)
	if err != nil {
		return err
	}
	copy(c.Bytes(), "never committed")
	return nil
}

// TestSHMProcessKilledSender: a child floods the parent's mailbox from two
// goroutines and is killed with SIGKILL at a random moment, mid-send (in odd
// trials it also holds a claim it never commits, so that the kill always
// leaves a stuck record); a second, live child then sends a batch. The
// parent's Recv must never stay stuck for 2 s, every message must decode and
// be intact, each sender's sequence must be 1, 2, 3, ... with no duplicate
// and no gap, the live sender's whole batch must arrive after the kill, and
// the ring must have recovered every stuck record through the liveness
// locks (not by timeout). Repeated.
func TestSHMProcessKilledSender(t *testing.T) {
	trials := 10
	if testing.Short() {
		trials = 3
	}
	const batch = 200
	root := testRoot(t)
	const name = "killsender"
	ctx := testCtx(t, 2*time.Minute)
	x := openSHM(t, root, name, exchange.WithMailboxBytes(16<<10))
	me, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	live := childproc.Start(t, "sender", root, name, me.String(), "live")
	liveID := parseIDs(t, line(t, live, "live sender start", childStart)[1])[0]

	type key struct {
		src    exchange.EntityID
		stream byte
	}
	last := map[key]uint64{}
	known := map[exchange.EntityID]bool{liveID: true}
	var m exchange.Message
	var killedTotal uint64
	stuckTrials := 0
	for trial := range trials {
		// Odd trials: the flooder also dies holding a claim it never
		// commits, which the receiver must recover.
		stuck := trial%2 == 1
		mode := "flood"
		if stuck {
			mode = "flood-stuck"
			stuckTrials++
		}
		flood := childproc.Start(t, "sender", root, name, me.String(), mode)
		floodID := parseIDs(t, line(t, flood, "flooding sender start", childStart)[1])[0]
		known[floodID] = true
		// Kill the flooder at a random moment while this goroutine
		// receives, then let the live sender send its batch.
		delay := time.Duration(1+mrand.IntN(50)) * time.Millisecond
		killed := make(chan error, 1)
		go func() {
			var err error
			if stuck {
				if l, e := flood.Line(childReply); e != nil || l != "claimed" {
					err = fmt.Errorf("flooder did not claim: %q, %v", l, e)
				}
			}
			time.Sleep(delay)
			flood.Kill()
			if e := live.Send("send " + strconv.Itoa(batch)); e != nil && err == nil {
				err = e
			}
			killed <- err
		}()
		want := uint64((trial + 1) * batch)
		for last[key{liveID, 0}] < want {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := mb.Recv(rctx, &m)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("trial %d: Recv stuck for 2s; live sender at %d of %d; last seqs %v", trial, last[key{liveID, 0}], want, last)
			}
			if err != nil {
				t.Fatalf("trial %d: Recv: %v", trial, err)
			}
			stream, seq, err := checkSeqMessage(&m, me)
			if err != nil {
				t.Fatalf("trial %d: %v", trial, err)
			}
			if !known[m.Src] {
				t.Fatalf("trial %d: message from unknown sender %v", trial, m.Src)
			}
			k := key{m.Src, stream}
			if seq != last[k]+1 {
				t.Fatalf("trial %d: sender %v stream %d: message %d after %d (duplicate or gap)", trial, m.Src, stream, seq, last[k])
			}
			last[k] = seq
		}
		if err := <-killed; err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if f := line(t, live, "live sender batch", childReply); f[0] != "sent" || f[1] != strconv.FormatUint(want, 10) {
			t.Fatalf("trial %d: live sender: %q", trial, f)
		}
		var got uint64
		for s := range senderStreams {
			got += last[key{floodID, byte(s)}]
		}
		killedTotal += got
		t.Logf("trial %d (%s): killed the flooder after %v; %d of its messages delivered", trial, mode, delay, got)
		if st, err := x.Status(ctx, floodID); st != exchange.StatusTerminated || err != nil {
			t.Fatalf("trial %d: Status of the killed sender = %v, %v", trial, st, err)
		}
	}
	// Nothing more is pending: no message of a killed sender shows up late.
	rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := mb.Recv(rctx, &m); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv after the last batch: %v (%v), want nothing", err, &m)
	}
	live.CloseStdin()
	if err := live.Wait(childReply); err != nil {
		t.Fatalf("live sender: %v", err)
	}
	st, err := ringStats(x, me)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d trials: %d messages of killed senders delivered, in order, none torn; mailbox ring: %+v", trials, killedTotal, st)
	if st.Recovered < uint64(stuckTrials) || st.RecoveredByTimeout != 0 {
		t.Fatalf("%d flooders died holding a claim, but the ring recovered %d records (%d by timeout)", stuckTrials, st.Recovered, st.RecoveredByTimeout)
	}
}
