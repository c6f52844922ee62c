package exchange_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/shm"
)

// TestSHMRecvBatch: RecvBatch takes what is in the mailbox, in order, up
// to the batch's size; a message that does not decode ends its batch (the
// last one filled, with Recv's error for it) and the next batch goes on
// behind it; an empty mailbox waits as Recv does, and a closed client says
// so.
func TestSHMRecvBatch(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	_, x, agent, client, _, mb := shmPair(t)
	br, ok := mb.(exchange.BatchReceiver)
	if !ok {
		t.Fatalf("%T is not a BatchReceiver", mb)
	}
	var tags []exchange.UUID
	send := func(n int) {
		t.Helper()
		for range n {
			m := exchange.NewPingRequest(client, agent)
			m.SetResponse(m, nil) // a ping response to the client
			tags = append(tags, m.Tag)
			if err := x.Send(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A record that is no message, from another producer of the ring.
	garbage := func() {
		t.Helper()
		life, err := shm.HoldLife(x.Dir())
		if err != nil {
			t.Fatal(err)
		}
		defer life.Close()
		seg, r, err := openRing(x.Dir(), client)
		if err != nil {
			t.Fatal(err)
		}
		defer seg.Close()
		p, err := r.NewProducer(life.ID())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, err := p.TryClaim(int32(exchange.KindPingResponse), 8)
		if err != nil {
			t.Fatal(err)
		}
		copy(c.Bytes(), []byte{0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1}) // 0xc1: never MessagePack
		c.Commit()
		tags = append(tags, exchange.UUID{})
	}
	ms := make([]*exchange.Message, 4)
	for i := range ms {
		ms[i] = new(exchange.Message)
	}
	next := 0
	recv := func(want int, wantErr error) {
		t.Helper()
		n, err := br.RecvBatch(ctx, ms)
		if n != want || !errors.Is(err, wantErr) {
			t.Fatalf("RecvBatch: %d, %v; want %d, %v", n, err, want, wantErr)
		}
		for i := range n {
			if i == n-1 && err != nil {
				next++
				continue // the bad one
			}
			if ms[i].Tag != tags[next] || ms[i].Kind != exchange.KindPingResponse {
				t.Fatalf("message %d of the batch: %v, want the response tagged %v", i, ms[i], tags[next])
			}
			next++
		}
	}

	send(6)
	recv(4, nil)
	recv(2, nil)
	send(2)
	garbage()
	send(3)
	recv(3, exchange.ErrBadMessage) // two, then the bad one
	recv(3, nil)

	// An empty mailbox: a batch waits for its first message.
	late := exchange.NewPingRequest(client, agent)
	late.SetResponse(late, nil)
	tags = append(tags, late.Tag)
	sent := make(chan error, 1)
	go func() {
		time.Sleep(10 * time.Millisecond)
		sent <- x.Send(ctx, late)
	}()
	recv(1, nil)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if n, err := br.RecvBatch(sctx, ms); n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RecvBatch of an empty mailbox: %d, %v; want 0, context.DeadlineExceeded", n, err)
	}
	if n, err := br.RecvBatch(ctx, nil); n != 0 || !errors.Is(err, exchange.ErrInvalidArgument) {
		t.Fatalf("RecvBatch of no room: %d, %v; want 0, ErrInvalidArgument", n, err)
	}
	mb.Close()
	if n, err := br.RecvBatch(ctx, ms); n != 0 || !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("RecvBatch of a closed client: %d, %v; want 0, ErrMailboxClosed", n, err)
	}
}

// TestSHMRecvBatchTerminated: a batch of a terminated mailbox drains what
// is left, then reports it closed.
func TestSHMRecvBatchTerminated(t *testing.T) {
	root := testRoot(t)
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, "batchterm")
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	for range 3 {
		m := exchange.NewPingRequest(client, other) // answered: to client
		m.SetResponse(m, nil)
		if err := x.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Terminate(ctx, client); err != nil {
		t.Fatal(err)
	}
	ms := []*exchange.Message{new(exchange.Message), new(exchange.Message)}
	br := mb.(exchange.BatchReceiver)
	got := 0
	for {
		n, err := br.RecvBatch(ctx, ms)
		got += n
		if err != nil {
			if !errors.Is(err, exchange.ErrMailboxClosed) || n != 0 {
				t.Fatalf("RecvBatch: %d, %v; want 0, ErrMailboxClosed at the end", n, err)
			}
			break
		}
	}
	if got != 3 {
		t.Fatalf("drained %d responses, want 3", got)
	}
}

// TestSHMRecvBatchFaultAfterFirst: the ring is truncated under a batch
// after its first message (the first page of data kept): the batch
// returns the message it read whole, without an error (an error with n >=
// 1 says that ms[n-1] did not decode); the next call reports the mailbox
// closed. Before, it returned n=1 with the fault's error, and agent's
// client failed the call whose response ms[0] was.
func TestSHMRecvBatchFaultAfterFirst(t *testing.T) {
	if raceEnabled {
		t.Skip("a truncation under -race may fault in the race runtime's C code (see TestSHMProcessTruncation)")
	}
	ctx := testCtx(t, time.Minute)
	_, x, agent, client, _, mb := shmPair(t, exchange.WithMailboxBytes(1<<16))
	defer mb.Close()
	first := exchange.NewActionResponse(agent, client, exchange.NewTag(), []byte("one"))
	second := exchange.NewActionResponse(agent, client, exchange.NewTag(), bytes.Repeat([]byte("x"), 12000))
	for _, m := range []*exchange.Message{first, second} {
		if err := x.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	path := x.RingPath(client)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	dataStart := fi.Size() - (1 << 16)
	if err := os.Truncate(path, (dataStart+4095)/4096*4096+4096); err != nil { // the first page of data kept
		t.Fatal(err)
	}
	ms := []*exchange.Message{new(exchange.Message), new(exchange.Message), new(exchange.Message)}
	n, err := mb.(exchange.BatchReceiver).RecvBatch(ctx, ms)
	if n != 1 || err != nil || ms[0].Tag != first.Tag || string(ms[0].Result) != "one" {
		t.Fatalf("RecvBatch over a ring truncated after its first message: n=%d, err=%v, ms[0]=%v; want 1, nil, the first response", n, err, ms[0])
	}
	if n, err := mb.(exchange.BatchReceiver).RecvBatch(ctx, ms); n != 0 || !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("the next RecvBatch: n=%d, err=%v; want 0, ErrMailboxClosed", n, err)
	}
}
