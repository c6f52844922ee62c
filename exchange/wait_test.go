package exchange_test

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// The waits for an agent to appear, on the in-process exchange (polled)
// and the shared-memory one (woken by the registry's futex), in one
// process and across processes.

func TestWaitDiscover(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func(t *testing.T) exchange.Exchange
	}{
		{"local", func(t *testing.T) exchange.Exchange {
			x := exchange.NewLocal()
			t.Cleanup(func() { x.Close() })
			return x
		}},
		{"shm", func(t *testing.T) exchange.Exchange { return openSHM(t, testRoot(t), "wait") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			x := tc.new(t)

			// Nothing yet: the wait ends with the context, and says what
			// it waited for.
			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, err := exchange.WaitDiscover(short, x, "Worker", false)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"Worker"`) {
				t.Fatalf("wait with nothing registered: %v", err)
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := exchange.WaitDiscover(cctx, x, "Worker", false); !errors.Is(err, context.Canceled) {
				t.Fatalf("wait with a cancelled context: %v", err)
			}

			// A waiter started before the registration returns it.
			type result struct {
				ids []exchange.EntityID
				err error
			}
			done := make(chan result, 1)
			go func() {
				ids, err := exchange.WaitDiscover(ctx, x, "Base", true)
				done <- result{ids, err}
			}()
			// Other registrations do not end the wait.
			if _, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Other"}); err != nil {
				t.Fatal(err)
			}
			if _, err := x.RegisterClient(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-done:
				t.Fatalf("the wait returned before a matching agent was registered: %v, %v", r.ids, r.err)
			default:
			}
			id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Worker", Implements: []string{"Base"}})
			if err != nil {
				t.Fatal(err)
			}
			if r := <-done; r.err != nil || !slices.Equal(r.ids, []exchange.EntityID{id}) {
				t.Fatalf("WaitDiscover = %v, %v; want [%v]", r.ids, r.err, id)
			}
			// Already there: at once.
			if ids, err := exchange.WaitDiscover(ctx, x, "Worker", false); err != nil || !slices.Equal(ids, []exchange.EntityID{id}) {
				t.Fatalf("WaitDiscover when registered = %v, %v", ids, err)
			}
		})
	}
}

func TestWaitActive(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func(t *testing.T) exchange.Exchange
	}{
		{"local", func(t *testing.T) exchange.Exchange {
			x := exchange.NewLocal()
			t.Cleanup(func() { x.Close() })
			return x
		}},
		{"shm", func(t *testing.T) exchange.Exchange { return openSHM(t, testRoot(t), "wait") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			x := tc.new(t)
			id := exchange.EntityID{UUID: exchange.NewUUID(), Role: exchange.RoleAgent}

			short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			err := exchange.WaitActive(short, x, id)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never registered") || !strings.Contains(err.Error(), id.String()) {
				t.Fatalf("wait for a missing id: %v", err)
			}

			done := make(chan error, 1)
			go func() { done <- exchange.WaitActive(ctx, x, id) }()
			select {
			case err := <-done:
				t.Fatalf("the wait returned before the registration: %v", err)
			default:
			}
			if _, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Worker"}, exchange.WithID(id)); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("WaitActive: %v", err)
			}
			if err := exchange.WaitActive(ctx, x, id); err != nil {
				t.Fatalf("WaitActive when active: %v", err)
			}

			// Terminated: the wait says so when its context ends, and
			// returns once a supervisor reopens the mailbox.
			if err := x.Terminate(ctx, id); err != nil {
				t.Fatal(err)
			}
			short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
			err = exchange.WaitActive(short, x, id)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "terminated") {
				t.Fatalf("wait for a terminated id: %v", err)
			}
			go func() { done <- exchange.WaitActive(ctx, x, id) }()
			if err := x.(exchange.Reopener).Reopen(ctx, id); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("WaitActive after a reopen: %v", err)
			}
		})
	}
}

// TestWaitClosedExchange: a wait on a handle that closes ends with
// ErrExchangeClosed.
func TestWaitClosedExchange(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	x, err := exchange.Open("wait", exchange.WithRoot(testRoot(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := exchange.WaitDiscover(ctx, x, "Worker", false)
		done <- err
	}()
	x.Close()
	if err := <-done; !errors.Is(err, exchange.ErrExchangeClosed) {
		t.Fatalf("wait on a closed handle: %v", err)
	}
}

// TestWaitAcrossProcesses: a process waits, in WaitDiscover and in
// WaitActive, for agents that another registers.
func TestWaitAcrossProcesses(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	root := testRoot(t)
	x := openSHM(t, root, "wait")
	id := exchange.EntityID{UUID: exchange.NewUUID(), Role: exchange.RoleAgent}

	// The child waits; this process registers.
	c := childproc.Start(t, "waiter", root, "wait", id.String())
	if line, err := c.Line(childStart); err != nil || line != "waiting" {
		t.Fatalf("child: %q, %v", line, err)
	}
	found, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Worker"})
	if err != nil {
		t.Fatal(err)
	}
	if line, err := c.Line(childReply); err != nil || line != "found "+found.String() {
		t.Fatalf("child after the registration: %q, %v; want found %v", line, err, found)
	}
	if _, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Worker"}, exchange.WithID(id)); err != nil {
		t.Fatal(err)
	}
	if line, err := c.Line(childReply); err != nil || line != "active" {
		t.Fatalf("child after the registration of its id: %q, %v", line, err)
	}
	if err := c.Wait(childReply); err != nil {
		t.Fatal(err)
	}

	// This process waits; the child registers.
	other := exchange.EntityID{UUID: exchange.NewUUID(), Role: exchange.RoleAgent}
	errs := make(chan error, 1)
	go func() { errs <- exchange.WaitActive(ctx, x, other) }()
	ids := make(chan []exchange.EntityID, 1)
	go func() {
		found, err := exchange.WaitDiscover(ctx, x, "Remote", false)
		if err != nil {
			t.Error(err)
		}
		ids <- found
	}()
	r := childproc.Start(t, "registrar-of", root, "wait", other.String())
	if err := <-errs; err != nil {
		t.Fatalf("WaitActive for the child's agent: %v", err)
	}
	if got := <-ids; !slices.Equal(got, []exchange.EntityID{other}) {
		t.Fatalf("WaitDiscover for the child's agent = %v, want [%v]", got, other)
	}
	r.CloseStdin() // the child exits
	if err := r.Wait(childReply); err != nil {
		t.Fatal(err)
	}
}

// waiterChild waits for an agent of behavior Worker, then for the id in
// its arguments. Args: root, exchange name, id.
func waiterChild(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	id, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return childFail("%v", err)
	}
	say("waiting")
	ids, err := exchange.WaitDiscover(ctx, x, "Worker", false)
	if err != nil || len(ids) != 1 {
		return childFail("WaitDiscover = %v, %v", ids, err)
	}
	say("found", ids[0])
	if err := exchange.WaitActive(ctx, x, id); err != nil {
		return childFail("WaitActive: %v", err)
	}
	say("active")
	return 0
}

// registrarOfChild registers the agent id of its arguments, of behavior
// Remote, and keeps it until its standard input closes. Args: root,
// exchange name, id.
func registrarOfChild(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]), exchange.WithLogger(discardLog))
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	id, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return childFail("%v", err)
	}
	if _, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Remote"}, exchange.WithID(id)); err != nil {
		return childFail("RegisterAgent: %v", err)
	}
	say("registered")
	io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return 0
}
