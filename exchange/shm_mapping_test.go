package exchange_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/shm"
)

// ringMappings counts the mappings this process holds of the ring segments
// (every incarnation) of the mailbox of id in the exchange x, as the kernel
// lists them in /proc/self/maps; -1 when that file cannot be read.
func ringMappings(x *exchange.SHM, id exchange.EntityID) int {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return -1
	}
	defer f.Close()
	prefix := filepath.Join(x.Dir(), shm.RingPrefix+hex.EncodeToString(id.UUID[:]))
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if i := strings.Index(sc.Text(), prefix); i >= 0 {
			rest := sc.Text()[i+len(prefix):]
			if rest == "" || rest[0] == '.' || rest[0] == ' ' {
				n++
			}
		}
	}
	if sc.Err() != nil {
		return -1
	}
	return n
}

// churnTag is the tag of message seq of sender g.
func churnTag(g, seq int) exchange.UUID {
	var u exchange.UUID
	binary.LittleEndian.PutUint64(u[:8], uint64(g)+1)
	binary.LittleEndian.PutUint64(u[8:], uint64(seq))
	return u
}

// TestSHMReopenChurnUnmaps: goroutines of two handles send without pause to
// an agent's mailbox while a third handle terminates it, drains it and
// reopens it, again and again (Terminate is called alternately by the
// owner and by a sending handle). Nothing crashes (a sender still writing
// to the mapping of an incarnation that its handle retired must not see it
// unmapped), every Send that returned nil is received exactly once (the
// receiver of each incarnation drains it to the end before it is reopened),
// and the number of ring mappings each handle holds stays bounded instead
// of growing by one per incarnation; once the senders are quiet, each
// handle holds one mapping of the mailbox, its current ring.
func TestSHMReopenChurnUnmaps(t *testing.T) {
	root := testRoot(t)
	const name = "churn"
	ctx := testCtx(t, time.Minute)
	owner := openSHM(t, root, name, exchange.WithMailboxBytes(4096)) // small: senders also wait for space
	agent, err := owner.RegisterAgent(ctx, exchange.Behavior{Name: "Phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := owner.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	senders := []*exchange.SHM{openSHM(t, root, name), openSHM(t, root, name)}
	const perHandle = 3

	// Senders waiting for space when they are told to stop give up.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var (
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		sentMu sync.Mutex
		sent   = map[exchange.UUID]bool{}
		errs   = make(chan error, 2*perHandle)
	)
	for h, x := range senders {
		for k := range perHandle {
			g := h*perHandle + k
			wg.Add(1)
			go func() {
				defer wg.Done()
				for seq := 0; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					m := exchange.NewActionResponse(src, agent, churnTag(g, seq), []byte("payload"))
					err := x.Send(sendCtx, m)
					switch {
					case err == nil:
						sentMu.Lock()
						sent[m.Tag] = true
						sentMu.Unlock()
					case errors.Is(err, exchange.ErrMailboxClosed):
						time.Sleep(50 * time.Microsecond) // terminated: wait for the reopen
					case sendCtx.Err() != nil:
						return // stopped (nothing was sent: the claim failed)
					default:
						errs <- err
						return
					}
					if seq%64 == 0 {
						if _, err := x.Status(ctx, agent); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
	}

	received := map[exchange.UUID]int{}
	// incarnation receives from a new client of the mailbox, ends the
	// incarnation with a Terminate by ender, drains it and closes the client.
	incarnation := func(ender *exchange.SHM, until func() bool) {
		t.Helper()
		mb, err := owner.Mailbox(ctx, agent)
		if err != nil {
			t.Fatalf("Mailbox: %v", err)
		}
		got := make(chan []exchange.UUID, 1)
		recvErr := make(chan error, 1)
		go func() {
			var tags []exchange.UUID
			var m exchange.Message
			for {
				err := mb.Recv(ctx, &m)
				if err != nil {
					got <- tags
					if !errors.Is(err, exchange.ErrMailboxClosed) {
						recvErr <- err
					}
					close(recvErr)
					return
				}
				tags = append(tags, m.Tag)
			}
		}()
		for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline) && !until(); {
			time.Sleep(time.Millisecond)
		}
		if err := ender.Terminate(ctx, agent); err != nil {
			t.Fatalf("Terminate: %v", err)
		}
		for _, tag := range <-got {
			received[tag]++
		}
		if err := <-recvErr; err != nil {
			t.Fatalf("Recv: %v", err)
		}
		mb.Close()
		if err := owner.Reopen(ctx, agent); err != nil {
			t.Fatalf("Reopen: %v", err)
		}
	}

	maxMapped := make([]int, len(senders))
	sample := func() {
		for h, x := range senders {
			maxMapped[h] = max(maxMapped[h], x.MappedRings())
		}
	}
	const cycles = 40
	start := time.Now()
	n := 0
	for ; n < cycles && time.Since(start) < 8*time.Second; n++ {
		ender := owner
		if n%2 == 1 {
			ender = senders[n/2%2]
		}
		sentMu.Lock()
		before := len(sent)
		sentMu.Unlock()
		incarnation(ender, func() bool {
			sentMu.Lock()
			defer sentMu.Unlock()
			return len(sent) >= before+20
		})
		sample()
		select {
		case err := <-errs:
			t.Fatalf("Send: %v", err)
		default:
		}
	}
	close(stop)
	stopSending()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Send: %v", err)
	}
	// The last incarnation: whatever was sent since the last reopen.
	incarnation(owner, func() bool { return true })
	t.Logf("%d incarnations, %d messages sent, largest number of mappings per sending handle %v", n+1, len(sent), maxMapped)

	for tag := range sent {
		if received[tag] != 1 {
			t.Errorf("message %x: sent, received %d times", tag, received[tag])
		}
	}
	for tag, k := range received {
		if !sent[tag] {
			t.Errorf("message %x: received %d times, never reported sent", tag, k)
		}
	}
	if len(sent) == 0 {
		t.Fatal("nothing was sent")
	}
	// Concurrent senders of a handle may each delay the unmapping of one
	// retired ring: the bound is theirs, not the number of incarnations.
	for h, m := range maxMapped {
		if m > perHandle+2 {
			t.Errorf("sending handle %d held up to %d ring mappings over %d incarnations, want at most %d", h, m, n+1, perHandle+2)
		}
	}

	// Quiet now: one send from each handle and a receiver on the current
	// ring leave each handle one mapping, of the current ring.
	mb, err := owner.Mailbox(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	for _, x := range senders {
		if err := x.Send(ctx, exchange.NewActionResponse(src, agent, exchange.NewUUID(), nil)); err != nil {
			t.Fatal(err)
		}
	}
	for h, x := range append([]*exchange.SHM{owner}, senders...) {
		if got := x.MappedRings(); got != 1 {
			t.Errorf("handle %d holds %d ring mappings when quiet, want 1", h, got)
		}
	}
	if got := ringMappings(owner, agent); got != -1 && got != 3 {
		t.Errorf("the process maps the agent's rings %d times when quiet (per /proc/self/maps), want 3: one per handle", got)
	}
}

// TestSHMCollectUnmaps: a child owns an agent's mailbox and a handle of the
// parent has mapped its ring by sending to it; the child is killed and the
// ring collected. The handle then releases its mapping: at once when it is
// the one that collects (Self), at its next send, which finds the mailbox
// terminated and its ring gone, when another handle collects (Other). The
// mailbox keeps reading as terminated.
func TestSHMCollectUnmaps(t *testing.T) {
	for _, who := range []string{"Self", "Other"} {
		t.Run(who, func(t *testing.T) {
			root := testRoot(t)
			const name = "collectunmap"
			ctx := testCtx(t, time.Minute)
			x := openSHM(t, root, name)
			client, err := x.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			kid := childproc.Start(t, "owner", root, name, "4096")
			agent := parseIDs(t, line(t, kid, "owner start", childStart)[1])[0]
			// A response: a request would make the collector answer it,
			// mapping the client's ring too.
			if err := x.Send(ctx, exchange.NewActionResponse(client, agent, exchange.NewUUID(), []byte("queued"))); err != nil {
				t.Fatal(err)
			}
			if got := x.MappedRings(); got != 1 {
				t.Fatalf("after a send: %d mappings, want 1", got)
			}
			if got := ringMappings(x, agent); got != -1 && got != 1 {
				t.Fatalf("after a send: the process maps the agent's ring %d times, want 1", got)
			}
			kid.Kill()
			collector := x
			if who == "Other" {
				collector = openSHM(t, root, name)
			}
			st, err := collector.Collect(ctx)
			if err != nil || st.Rings != 1 {
				t.Fatalf("Collect = %+v, %v; want one ring", st, err)
			}
			if got := collector.MappedRings(); got != 0 {
				t.Errorf("the collecting handle holds %d mappings after Collect, want 0", got)
			}
			if who == "Other" {
				if got := x.MappedRings(); got != 1 {
					t.Errorf("before its next send, the handle holds %d mappings, want 1 (it has not looked yet)", got)
				}
				if err := x.Send(ctx, exchange.NewActionResponse(client, agent, exchange.NewUUID(), nil)); !errors.Is(err, exchange.ErrMailboxClosed) {
					t.Fatalf("Send to the collected mailbox: %v, want ErrMailboxClosed", err)
				}
				if got := x.MappedRings(); got != 0 {
					t.Errorf("after a send found the mailbox collected: %d mappings, want 0", got)
				}
			}
			if got := ringMappings(x, agent); got != -1 && got != 0 {
				t.Errorf("the process still maps the collected ring %d times (per /proc/self/maps)", got)
			}
			// Still terminated, from every angle, and nothing mapped again.
			if err := x.Send(ctx, exchange.NewActionResponse(client, agent, exchange.NewUUID(), nil)); !errors.Is(err, exchange.ErrMailboxClosed) {
				t.Errorf("second Send to the collected mailbox: %v, want ErrMailboxClosed", err)
			}
			if st, err := x.Status(ctx, agent); err != nil || st != exchange.StatusTerminated {
				t.Errorf("Status = %v, %v", st, err)
			}
			if got := x.MappedRings(); got != 0 {
				t.Errorf("at the end: %d mappings, want 0", got)
			}
		})
	}
}

// TestSHMProcessRestartsUnmap: the process that owns an agent's mailbox is
// killed at a random moment, again and again, while goroutines of another
// handle send to it and ask its status; each time a supervisor handle
// reopens the mailbox and a new process takes it over. The senders notice
// each death themselves (terminating the mailbox through a mapping that
// may be retired under them) and move to each new ring; the sending handle
// keeps a bounded number of mappings, and one when quiet.
func TestSHMProcessRestartsUnmap(t *testing.T) {
	root := testRoot(t)
	const name = "restarts"
	ctx := testCtx(t, time.Minute)
	sup := openSHM(t, root, name, exchange.WithMailboxBytes(4096))
	agent, err := sup.RegisterAgent(ctx, exchange.Behavior{Name: "Phoenix"})
	if err != nil {
		t.Fatal(err)
	}
	snd := openSHM(t, root, name)
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	const senders = 3
	var wg sync.WaitGroup
	var sent, closed atomic.Int64
	errs := make(chan error, senders)
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; sendCtx.Err() == nil; seq++ {
				err := snd.Send(sendCtx, exchange.NewActionResponse(agent, agent, churnTag(g, seq), nil))
				switch {
				case err == nil:
					sent.Add(1)
				case errors.Is(err, exchange.ErrMailboxClosed):
					closed.Add(1)
					time.Sleep(100 * time.Microsecond)
				case sendCtx.Err() != nil:
					return
				default:
					errs <- err
					return
				}
				if seq%32 == 0 {
					if _, err := snd.Status(sendCtx, agent); err != nil && sendCtx.Err() == nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	const restarts = 8
	maxMapped := 0
	for n := range restarts {
		kid := childproc.Start(t, "receiver", root, name, agent.String())
		line(t, kid, "receiver start", childStart)
		time.Sleep(time.Duration(mrand.IntN(30)) * time.Millisecond)
		kid.Kill()
		// The senders notice the death on their own; wait until they do
		// (a send fails), or a while.
		before := closed.Load()
		for deadline := time.Now().Add(2 * time.Second); closed.Load() == before && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if err := sup.Reopen(ctx, agent); err != nil {
			t.Fatalf("Reopen %d: %v", n, err)
		}
		maxMapped = max(maxMapped, snd.MappedRings())
		select {
		case err := <-errs:
			t.Fatalf("sender: %v", err)
		default:
		}
	}
	stopSending()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("sender: %v", err)
	}
	t.Logf("%d restarts: %d sends went through, %d found the mailbox closed; at most %d mappings", restarts, sent.Load(), closed.Load(), maxMapped)
	if maxMapped > senders+2 {
		t.Errorf("the sending handle held up to %d mappings over %d incarnations, want at most %d", maxMapped, restarts+1, senders+2)
	}
	// Nobody drained the last incarnation while the senders went on:
	// drain it, so that the last send finds space.
	mb, err := sup.Mailbox(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := mb.Recv(rctx, new(exchange.Message))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("draining the last incarnation: %v", err)
		}
	}
	mb.Close()
	if err := snd.Send(ctx, exchange.NewActionResponse(agent, agent, exchange.NewUUID(), nil)); err != nil {
		t.Fatalf("Send to the last incarnation: %v", err)
	}
	if got := snd.MappedRings(); got != 1 {
		t.Errorf("the sending handle holds %d mappings when quiet, want 1", got)
	}
	if got := sup.MappedRings(); got > 1 {
		t.Errorf("the supervisor holds %d mappings when quiet, want at most 1", got)
	}
	if got := ringMappings(snd, agent); got != -1 && got > 2 {
		t.Errorf("the process maps the agent's rings %d times when quiet, want at most 2", got)
	}
}
