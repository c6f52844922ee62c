package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// interplayOpen opens a handle with small mailboxes and no log.
func interplayOpen(t *testing.T, root, name string) *SHM {
	t.Helper()
	x, err := Open(name, WithRoot(root), WithMailboxBytes(4096), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// killOwner makes the registry say that id's owner is a process that does
// not exist (no lock file: dead).
func killOwner(x *SHM, id EntityID) {
	i, _ := x.lookup(id)
	atomic.StoreUint64(x.reg.word64(i, entOwner), 0x7eadbeef00000000|uint64(time.Now().UnixNano()&0xffffff))
}

// TestCloseInterplay: Close of a handle racing sends that terminate a dead
// owner's mailbox while holding a box (claimSlow, terminateDead, sweep,
// answerTerminated), a Recv answering the requests queued in a terminated
// mailbox, Reopen, Terminate, Status, Collect and mailbox client churn.
// Nothing may fault, Close and every goroutine must return, and every error
// must be one the operation documents.
func TestCloseInterplay(t *testing.T) {
	rounds := 60
	if s := testing.Short(); s {
		rounds = 10
	}
	root := filepath.Join(t.TempDir(), "root")
	for round := range rounds {
		name := "interplay" + strconv.Itoa(round)
		ctx, cancelAll := context.WithTimeout(context.Background(), 30*time.Second)
		y := interplayOpen(t, root, name)
		x := interplayOpen(t, root, name)
		peer, _ := y.RegisterAgent(ctx, Behavior{Name: "Peer"})
		dead, _ := y.RegisterAgent(ctx, Behavior{Name: "Dead"})
		own, _ := x.RegisterAgent(ctx, Behavior{Name: "Own"})
		churn, _ := x.RegisterAgent(ctx, Behavior{Name: "Churn"})
		peerMB, err := y.Mailbox(ctx, peer)
		if err != nil {
			t.Fatal(err)
		}
		ownMB, err := x.Mailbox(ctx, own)
		if err != nil {
			t.Fatal(err)
		}
		killOwner(y, dead)
		stop := make(chan struct{})
		stopped := func() bool {
			select {
			case <-stop:
				return true
			default:
				return false
			}
		}
		var wg sync.WaitGroup
		var unexpected atomic.Value
		bad := func(what string, err error) { unexpected.CompareAndSwap(nil, what+": "+err.Error()) }
		// y drains peer.
		go func() {
			var m Message
			for peerMB.Recv(ctx, &m) == nil {
			}
		}()
		// y: reopen the dead mailbox whenever it was terminated, and kill
		// its owner again.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped() {
				if st, _ := y.Status(ctx, dead); st == StatusTerminated {
					if err := y.Reopen(ctx, dead); err == nil {
						killOwner(y, dead)
					}
				}
				time.Sleep(200 * time.Microsecond)
			}
		}()
		// x: senders of requests (from own) to the dead mailbox and to peer.
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				to := dead
				if g == 2 {
					to = peer
				}
				req := NewActionRequest(own, to, "work", make([]byte, 100))
				for {
					sctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
					err := x.Send(sctx, req)
					cancel()
					switch {
					case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrMailboxClosed):
						continue
					case errors.Is(err, ErrExchangeClosed):
						return
					default:
						bad("send", err)
						return
					}
				}
			}()
		}
		// x: own mailbox received (answers come here).
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m Message
			for {
				err := ownMB.Recv(ctx, &m)
				if err == nil || errors.Is(err, ErrBadMessage) {
					continue
				}
				if !errors.Is(err, ErrMailboxClosed) {
					bad("recv", err)
				}
				return
			}
		}()
		// x: client churn with Terminate/Reopen and requests queued in the
		// terminated mailbox, answered by its receiver.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mb, err := x.Mailbox(ctx, churn)
				if err != nil {
					if !errors.Is(err, ErrExchangeClosed) && !errors.Is(err, ErrMailboxBusy) {
						bad("mailbox", err)
					}
					if errors.Is(err, ErrExchangeClosed) {
						return
					}
					continue
				}
				for range 5 {
					sctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
					x.Send(sctx, NewActionRequest(own, churn, "q", nil))
					cancel()
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					var m Message
					for mb.Recv(ctx, &m) == nil {
					}
				}()
				x.Terminate(ctx, churn)
				x.Status(ctx, dead)
				x.Collect(ctx)
				mb.Close()
				<-done
				if err := x.Reopen(ctx, churn); err != nil && !errors.Is(err, ErrExchangeClosed) && !errors.Is(err, ErrMailboxBusy) {
					bad("reopen", err)
				}
				if _, err := x.Incarnation(ctx, churn); errors.Is(err, ErrExchangeClosed) {
					return
				}
			}
		}()
		time.Sleep(time.Duration(2+round%15) * time.Millisecond)
		Within(t, 15*time.Second, fmt.Sprintf("round %d: Close", round), func() { x.Close() })
		close(stop)
		Within(t, 15*time.Second, fmt.Sprintf("round %d: the goroutines, after Close,", round), wg.Wait)
		if v := unexpected.Load(); v != nil {
			t.Fatalf("round %d: %v", round, v)
		}
		peerMB.Close()
		y.Close()
		cancelAll()
	}
}

// TestSendAfterCloseError: a Send on a closed handle fails with
// ErrExchangeClosed, whatever the message: an oversized one to a cached
// destination too (the size check used to come first).
func TestSendAfterCloseError(t *testing.T) {
	x, id := unitSHM(t)
	ctx := testContext(t)
	if err := x.Send(ctx, ping(id)); err != nil {
		t.Fatal(err)
	}
	x.Close()
	big := NewActionRequest(id, id, "work", make([]byte, 8192))
	if err := x.Send(ctx, big); !errors.Is(err, ErrExchangeClosed) {
		t.Errorf("Send of an oversized message after Close: %v, want ErrExchangeClosed", err)
	}
	if err := x.Send(ctx, ping(id)); !errors.Is(err, ErrExchangeClosed) {
		t.Errorf("Send after Close: %v, want ErrExchangeClosed", err)
	}
}

// TestCollectAfterReopen: Collect looks at a mailbox (terminated, owner
// dead), and before it removes the ring, a supervisor reopens the mailbox
// on a new ring. The removal must not take the new, active ring: it looks
// again under the registry's lock. (It did take it: senders then failed
// with "no such segment" on an active mailbox, and what they had sent was
// lost.)
func TestCollectAfterReopen(t *testing.T) {
	x, id := unitSHM(t)
	ctx := testContext(t)
	killOwner(x, id)
	if st, err := x.Status(ctx, id); err != nil || st != StatusTerminated {
		t.Fatalf("Status of a dead owner's mailbox: %v, %v", st, err)
	}
	i, s := x.lookup(id) // Collect has looked at entry i: terminated, owner dead
	if err := x.Reopen(ctx, id); err != nil {
		t.Fatal(err)
	}
	if removed, err := x.collectRing(i, s, id, func(owner uint64) bool { return !x.alive(owner) }); removed || err != nil {
		t.Fatalf("collectRing after the Reopen: removed %v, %v; want neither", removed, err)
	}
	if err := x.Send(ctx, ping(id)); err != nil {
		t.Fatalf("Send to the reopened mailbox: %v", err)
	}
}
