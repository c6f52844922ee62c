package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

// scriptedBatches is a mailbox whose RecvBatch returns the batches a test
// scripts, each with the error of its last message; its other methods are
// the real mailbox's.
type scriptedBatches struct {
	exchange.Mailbox
	batches chan scriptedBatch
}

type scriptedBatch struct {
	ms  []*exchange.Message
	err error
}

func (s *scriptedBatches) RecvBatch(ctx context.Context, ms []*exchange.Message) (int, error) {
	select {
	case b, ok := <-s.batches:
		if !ok {
			return 0, exchange.ErrMailboxClosed
		}
		if len(b.ms) > len(ms) {
			panic("scripted batch larger than the receiver's")
		}
		for i, m := range b.ms {
			if ms[i].Kind != exchange.KindInvalid {
				panic(fmt.Sprintf("RecvBatch into a buffer that is not clean: %v", ms[i]))
			}
			ms[i].CopyFrom(m)
		}
		return len(b.ms), b.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// TestServeBatchBroken: in a batch, a message that was received but not
// whole (the last of its batch, with RecvBatch's error) is answered with
// an error when it is a request, fails its call when it is a response to
// one of the agent's own handles, and is dropped when nothing of it
// decoded; the messages before and after it are served.
func TestServeBatchBroken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	x := exchange.NewLocal()
	defer x.Close()
	b := NewBehavior("Broken")
	target, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Target"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddRawAction("echo", func(ctx context.Context, args, out []byte) ([]byte, error) {
		return append(out, args...), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRawAction("pingTarget", func(ctx context.Context, args, out []byte) ([]byte, error) {
		_, err := FromContext(ctx).Handle(target).Ping(ctx)
		return out, err
	}); err != nil {
		t.Fatal(err)
	}
	rt, err := NewRuntime(ctx, x, b)
	if err != nil {
		t.Fatal(err)
	}
	sb := &scriptedBatches{Mailbox: rt.mb, batches: make(chan scriptedBatch)}
	rt.mb = sb
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmb, err := x.Mailbox(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	defer cmb.Close()
	tmb, err := x.Mailbox(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer tmb.Close()
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(ctx) }()
	defer func() {
		rt.Shutdown()
		<-rt.Done()
	}()
	id := rt.ID()
	recv := func(want *exchange.Message) *exchange.Message {
		t.Helper()
		var m exchange.Message
		if err := cmb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
		if m.Tag != want.Tag {
			t.Fatalf("got %v, want the response to %v", &m, want)
		}
		return &m
	}
	bad := fmt.Errorf("%w: scripted", exchange.ErrBadMessage)

	// A request received but not whole, after a ping.
	ping := exchange.NewPingRequest(client, id)
	broken := exchange.NewActionRequest(client, id, "echo", []byte("x"))
	sb.batches <- scriptedBatch{ms: []*exchange.Message{ping, broken}, err: bad}
	if r := recv(ping); r.IsError() {
		t.Fatalf("ping: %v", r)
	}
	var re *exchange.RemoteError
	if r := recv(broken); !errors.As(r.Err(), &re) || re.Kind != ErrorKindBadArguments || !strings.Contains(re.Message, "could not be received") {
		t.Fatalf("a broken request: got %v, want a %s that says it could not be received", r, ErrorKindBadArguments)
	}

	// Nothing of the last one decoded: dropped; the batch before it is served.
	echo := exchange.NewActionRequest(client, id, "echo", []byte("y"))
	sb.batches <- scriptedBatch{ms: []*exchange.Message{echo, {}}, err: bad}
	if r := recv(echo); r.IsError() || string(r.Result) != "y" {
		t.Fatalf("echo: %v", r)
	}

	// A response to the agent's own handle received but not whole: its
	// call fails and says so; the action that made it answers.
	call := exchange.NewActionRequest(client, id, "pingTarget", nil)
	sb.batches <- scriptedBatch{ms: []*exchange.Message{call}}
	var req exchange.Message
	if err := tmb.Recv(ctx, &req); err != nil || req.Kind != exchange.KindPingRequest {
		t.Fatalf("the target got %v, %v; want the agent's ping", &req, err)
	}
	resp := req.Clone()
	resp.SetResponse(&req, nil)
	ping2 := exchange.NewPingRequest(client, id)
	sb.batches <- scriptedBatch{ms: []*exchange.Message{ping2, resp}, err: bad}
	// The ping and the call's failure, in either order.
	got := map[exchange.UUID]*exchange.Message{}
	for range 2 {
		var m exchange.Message
		if err := cmb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
		got[m.Tag] = m.Clone()
	}
	if r := got[ping2.Tag]; r == nil || r.IsError() {
		t.Fatalf("ping: %v", r)
	}
	if r := got[call.Tag]; r == nil || !r.IsError() || !strings.Contains(string(r.ErrorMessage), "could not be received") {
		t.Fatalf("the action whose call's response was broken: got %v, want an error that says it could not be received", r)
	}

	// A shutdown in the middle of a batch that ends with a broken request:
	// the requests after it are answered.
	shutdown := exchange.NewShutdownRequest(client, id, false)
	after := exchange.NewPingRequest(client, id)
	broken2 := exchange.NewActionRequest(client, id, "echo", []byte("z"))
	sb.batches <- scriptedBatch{ms: []*exchange.Message{shutdown, after, broken2}, err: bad}
	if r := recv(shutdown); r.IsError() {
		t.Fatalf("shutdown: %v", r)
	}
	if r := recv(after); !errors.As(r.Err(), &re) || re.Kind != ErrorKindShuttingDown {
		t.Fatalf("a ping after the shutdown: got %v, want a %s", r, ErrorKindShuttingDown)
	}
	if r := recv(broken2); !errors.As(r.Err(), &re) || re.Kind != ErrorKindBadArguments {
		t.Fatalf("a broken request after the shutdown: got %v, want a %s", r, ErrorKindBadArguments)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rt.in.bufs != nil {
		t.Fatal("Run kept the inbox's buffers")
	}
}

// TestServeInboxBatches: the runtime of an agent on the shared-memory
// exchange receives in batches (its mailbox is an exchange.BatchReceiver),
// one on a Local exchange one message at a time.
func TestServeInboxBatches(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	shm, err := exchange.Open("servebatch", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer shm.Close()
	local := exchange.NewLocal()
	defer local.Close()
	for _, c := range []struct {
		x    exchange.Exchange
		want int
	}{{shm, serveBatch}, {local, 1}} {
		rt, err := NewRuntime(ctx, c.x, NewBehavior("B"))
		if err != nil {
			t.Fatal(err)
		}
		rt.initInbox()
		if len(rt.in.bufs) != c.want || (rt.in.batch != nil) != (c.want > 1) {
			t.Errorf("%T: an inbox of %d (batch %v), want %d", c.x, len(rt.in.bufs), rt.in.batch != nil, c.want)
		}
		rt.mb.Close()
	}
}
