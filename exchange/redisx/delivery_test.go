package redisx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/redisx"
	"github.com/shmex/shmex/internal/childproc"
)

// Tests of the delivery guarantee when a receive moves more than it reads:
// a take that finds messages pending renames the whole mailbox to the
// receiver's taken list and reads a batch of it. What the list holds
// beyond what Recv returned goes back to the mailbox, in order, whether
// the receiver closes its Mailbox or dies.

// twoClients registers two clients in x.
func twoClients(t *testing.T, x exchange.Exchange) (c, d exchange.EntityID) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	var err error
	if c, err = x.RegisterClient(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err = x.RegisterClient(ctx); err != nil {
		t.Fatal(err)
	}
	return c, d
}

// sendResponses sends n action responses from d to c, with results
// "r0".."r<n-1>", and returns them.
func sendResponses(t *testing.T, x exchange.Exchange, d, c exchange.EntityID, n int) []*exchange.Message {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	var sent []*exchange.Message
	for i := range n {
		m := exchange.NewActionResponse(d, c, exchange.NewTag(), []byte(fmt.Sprint("r", i)))
		if err := x.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	return sent
}

// expectMessages receives want from mb, in order.
func expectMessages(t *testing.T, mb exchange.Mailbox, want []*exchange.Message) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	var m exchange.Message
	for i, w := range want {
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatalf("message %d of %d: %v", i, len(want), err)
		}
		if !m.Equal(w) {
			t.Fatalf("message %d: got %v (result %q), want result %q", i, &m, m.Result, w.Result)
		}
	}
}

// TestBatchLeftoversClose: a receiver that reads batches of 2 takes one
// message (the blocking move), then renames the other nine to its taken
// list and reads two of them; Recv has returned two. Closing its Mailbox
// gives the eight it did not return back to the mailbox, in order, for the
// next receiver, and nothing else.
func TestBatchLeftoversClose(t *testing.T) {
	srv := sharedServer(t)
	prefix := newPrefix()
	a := open(t, srv.Addr, prefix, redisx.WithRecvBatch(2))
	ctx := ctxT(t, 30*time.Second)
	c, d := twoClients(t, a)
	sent := sendResponses(t, a, d, c, 10)
	mb, err := a.Mailbox(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	expectMessages(t, mb, sent[:2])
	mb.Close()
	// What the first client did not return, then what is sent after.
	sent = append(sent, sendResponses(t, a, d, c, 3)...)
	mb, err = a.Mailbox(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	expectMessages(t, mb, sent[2:])
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	var m exchange.Message
	if err := mb.Recv(short, &m); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv after the last message: %v (%v), want a timeout", err, &m)
	}
}

// TestBatchLeftoversReceiverDies: the same receiver on node B is killed
// after Recv returned two messages. The batch it was reading (the second
// message and the third) is delivered again, and the seven it had moved
// and not read after them, in order, to the next client of the mailbox,
// which its death terminated: nothing is lost, and only what it read may
// come twice.
func TestBatchLeftoversReceiverDies(t *testing.T) {
	srv := sharedServer(t)
	prefix := newPrefix()
	a := joinT(t, spec(t, srv.Addr, prefix, "redis", "A"))
	ctx := ctxT(t, 60*time.Second)
	c, d := twoClients(t, a)
	sent := sendResponses(t, a, d, c, 10)
	child := childproc.Start(t, "receiver", append(spec(t, srv.Addr, prefix, "redis", "B").args(), c.String(), "2")...)
	for range 2 {
		expectLine(t, child, "got")
	}
	child.Kill()
	waitTerminated(ctx, t, a, c)
	mb, err := a.Mailbox(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	expectMessages(t, mb, sent[1:])
	var m exchange.Message
	if err := mb.Recv(ctx, &m); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Recv on the drained mailbox: %v", err)
	}
}

// TestBatchLeftoversTerminated: a receiver has moved ten requests to its
// taken list and returned two when its mailbox is terminated (Terminate
// answers only what is left in the mailbox: here nothing). Closing its
// Mailbox then answers the eight requests it did not return with errors,
// rather than putting them back into a terminated mailbox that nobody
// reads: every requester hears.
func TestBatchLeftoversTerminated(t *testing.T) {
	srv := sharedServer(t)
	prefix := newPrefix()
	a := open(t, srv.Addr, prefix, redisx.WithRecvBatch(2))
	ctx := ctxT(t, 30*time.Second)
	ag, err := a.RegisterAgent(ctx, exchange.Behavior{Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tags := map[exchange.UUID]bool{}
	for i := range 10 {
		m := exchange.NewActionRequest(c, ag, "f", []byte(fmt.Sprint(i)))
		tags[m.Tag] = true
		if err := a.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	mb, err := a.Mailbox(ctx, ag)
	if err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	for range 2 {
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
		delete(tags, m.Tag)
	}
	if err := a.Terminate(ctx, ag); err != nil {
		t.Fatal(err)
	}
	mb.Close()
	cmb, err := a.Mailbox(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer cmb.Close()
	for len(tags) > 0 {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := cmb.Recv(wctx, &m)
		cancel()
		if err != nil {
			t.Fatalf("%d requests not answered: %v", len(tags), err)
		}
		if !tags[m.Tag] || !m.IsError() {
			t.Fatalf("got %v, want an error response to one of the %d requests left", &m, len(tags))
		}
		delete(tags, m.Tag)
	}
}
