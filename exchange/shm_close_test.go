package exchange_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
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

// TestSHMCloseWhileNoProducerSlot: when other producers (here, of another
// liveness lock, alive) hold every producer slot of a mailbox's ring, a Send
// waits for a slot until its context ends, and a Close of the handle ends a
// Send whose context never does, instead of hanging on it.
func TestSHMCloseWhileNoProducerSlot(t *testing.T) {
	root := testRoot(t)
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, "noslot")
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Crowded"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	life, err := shm.HoldLife(x.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer life.Close()
	seg, r, err := openRing(x.Dir(), agent)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	for n := 0; ; n++ {
		p, err := r.NewProducer(life.ID())
		if errors.Is(err, ring.ErrNoSlot) {
			break
		}
		if err != nil || n == 1<<16 {
			t.Fatalf("taking producer slot %d: %v", n, err)
		}
		defer p.Close()
	}

	req := exchange.NewPingRequest(client, agent)
	sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err = x.Send(sctx, req)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with no producer slot: %v, want context.DeadlineExceeded", err)
	}

	sent := make(chan error, 1)
	go func() { sent <- x.Send(context.Background(), req) }()
	time.Sleep(20 * time.Millisecond) // let the Send start waiting
	closed := make(chan error, 1)
	go func() { closed <- x.Close() }()
	for _, c := range []struct {
		what string
		ch   chan error
		want error
	}{{"Send", sent, exchange.ErrExchangeClosed}, {"Close", closed, nil}} {
		select {
		case err := <-c.ch:
			if !errors.Is(err, c.want) {
				t.Fatalf("%s: %v, want %v", c.what, err, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waiting 10s after Close, on a mailbox with no free producer slot", c.what)
		}
	}
}

// TestSHMCorruptRing: a mailbox whose ring another process damaged (here, a
// committed record header with an impossible length) cannot be read any
// more. Recv must say so with ErrMailboxClosed, not with ErrBadMessage,
// which receive loops skip (they would spin on it forever), and the
// mailbox is terminated, so that senders are refused at once.
func TestSHMCorruptRing(t *testing.T) {
	root := testRoot(t)
	ctx := testCtx(t, time.Minute)
	x := openSHM(t, root, "corrupt")
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Victim"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	seg, r, err := openRing(x.Dir(), agent)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	// The data area ends the ring's region; its first record header (int32
	// length, int32 type) is where the receiver reads first.
	data := seg.Body()[len(seg.Body())-r.Capacity():]
	binary.LittleEndian.PutUint32(data[0:], 1<<30)
	binary.LittleEndian.PutUint32(data[4:], uint32(exchange.KindActionRequest))

	var m exchange.Message
	for i := range 3 {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := mb.Recv(rctx, &m)
		cancel()
		if !errors.Is(err, exchange.ErrMailboxClosed) || !errors.Is(err, ring.ErrCorrupt) || errors.Is(err, exchange.ErrBadMessage) {
			t.Fatalf("Recv %d from the corrupt mailbox: %v, want ErrMailboxClosed wrapping ring.ErrCorrupt", i, err)
		}
	}
	if st, err := x.Status(ctx, agent); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("Status of the corrupt mailbox = %v, %v; want terminated", st, err)
	}
	if err := x.Send(ctx, exchange.NewPingRequest(client, agent)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Send to the corrupt mailbox: %v, want ErrMailboxClosed", err)
	}
}

// TestSHMMailboxCloseRacesHandleClose: a Mailbox client closed while its
// handle closes. The client's Close interrupts its receiver through the
// ring; the handle's Close detaches that consumer and unmaps the ring. The
// interrupt must not touch the ring once the handle may unmap it (a fault
// on the unmapped doorbell); under -race, the read of the consumer's ring
// raced with the handle's Close setting it to nil.
func TestSHMMailboxCloseRacesHandleClose(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root") // EnsureDir makes it 0700
	ctx := context.Background()
	for i := range 400 {
		x := openSHM(t, root, "mbclose"+strconv.Itoa(i))
		id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Unit"})
		if err != nil {
			t.Fatal(err)
		}
		mb, err := x.Mailbox(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		recvd := make(chan error, 1)
		if i%2 == 0 { // half the rounds with a receiver waiting
			go func() { recvd <- mb.Recv(ctx, new(exchange.Message)) }()
		} else {
			recvd <- exchange.ErrMailboxClosed
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); <-start; mb.Close() }()
		go func() { defer wg.Done(); <-start; x.Close() }()
		close(start)
		wg.Wait()
		if err := <-recvd; !errors.Is(err, exchange.ErrMailboxClosed) {
			t.Fatalf("round %d: Recv: %v", i, err)
		}
	}
}

// TestSHMCloseRacesSendAndRecv: Close of a handle while its goroutines send
// (on the steady-state path, through producer boxes, without entering the
// handle) and receive (holding their client's lock), and while another
// goroutine opens a mailbox client. Close must wait for each send and
// receive in progress before it unmaps anything: none may fault, each must
// end with the handle's or the mailbox's closed error, and Close and all of
// them must return.
func TestSHMCloseRacesSendAndRecv(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 30
	}
	root := filepath.Join(t.TempDir(), "root") // EnsureDir makes it 0700
	ctx := context.Background()
	for i := range rounds {
		name := "closerace" + strconv.Itoa(i)
		idle := exchange.WithIdle(ring.SpinThenPark(50))
		y := openSHM(t, root, name, idle) // stays open: owns the mailbox x sends to
		x := openSHM(t, root, name, idle) // closed under its users
		peer, err := y.RegisterAgent(ctx, exchange.Behavior{Name: "Peer"})
		if err != nil {
			t.Fatal(err)
		}
		peerMB, err := y.Mailbox(ctx, peer)
		if err != nil {
			t.Fatal(err)
		}
		own, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Own"})
		if err != nil {
			t.Fatal(err)
		}
		ownMB, err := x.Mailbox(ctx, own)
		if err != nil {
			t.Fatal(err)
		}
		late, err := x.RegisterClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		stop := make(chan struct{})
		send := func(h *exchange.SHM, to exchange.EntityID, want error) {
			defer wg.Done()
			req := exchange.NewActionRequest(exchange.NewClientID(), to, "work", make([]byte, 64))
			for {
				sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				err := h.Send(sctx, req) // the first send maps the ring; the rest take the steady state
				cancel()
				if err == nil || errors.Is(err, context.DeadlineExceeded) {
					select {
					case <-stop:
						errs <- nil
						return
					default:
						continue
					}
				}
				if !errors.Is(err, want) {
					err = fmt.Errorf("send to %v: %w, want %v", to, err, want)
				} else {
					err = nil
				}
				errs <- err
				return
			}
		}
		wg.Add(4)
		go send(x, peer, exchange.ErrExchangeClosed)
		go send(x, peer, exchange.ErrExchangeClosed)
		go send(y, own, nil) // y stays open: runs until stop
		// x's own mailbox: received until closed.
		go func() {
			defer wg.Done()
			var m exchange.Message
			for {
				if err := ownMB.Recv(ctx, &m); err != nil {
					if !errors.Is(err, exchange.ErrMailboxClosed) {
						err = fmt.Errorf("Recv: %w", err)
					} else {
						err = nil
					}
					errs <- err
					return
				}
			}
		}()
		drained := make(chan struct{}) // peer's mailbox drained so that x's sends do not all wait
		go func() {
			defer close(drained)
			var m exchange.Message
			for peerMB.Recv(ctx, &m) == nil {
			}
		}()
		opened := make(chan error, 1)
		go func() { // a client opened while x closes
			mb, err := x.Mailbox(ctx, late)
			if err == nil {
				err = mb.Close()
			} else if errors.Is(err, exchange.ErrExchangeClosed) {
				err = nil
			}
			opened <- err
		}()
		time.Sleep(time.Duration(i%10) * 100 * time.Microsecond)
		var cerr error
		exchange.Within(t, 10*time.Second, fmt.Sprintf("round %d: Close", i), func() { cerr = x.Close() })
		if cerr != nil {
			t.Fatalf("round %d: Close: %v", i, cerr)
		}
		close(stop)
		exchange.Within(t, 10*time.Second, fmt.Sprintf("round %d: the sends and receives, after Close,", i), wg.Wait)
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if err := <-opened; err != nil {
			t.Fatalf("round %d: Mailbox during Close: %v", i, err)
		}
		peerMB.Close()
		<-drained
		y.Close()
	}
}
