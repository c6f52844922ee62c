package systest

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

const (
	// readerHolds is how many views a reader child holds at once: more
	// than one hold slot's worth (31) in a segment.
	readerHolds = 48
	// ownerHoldSlots is the hold slots of each segment of the parent's
	// arena in the reader campaign: few, so that a dead reader's slots
	// never given back would soon make Resolve fail with ErrTooManyViews.
	ownerHoldSlots = 4
)

// readerChild receives records carrying proxies in its own mailbox,
// resolves each one, checks the payload whole and holds up to readerHolds
// views (releasing a random one, checked again, when it holds more), until
// it is killed. It reports "ready <client id>", then "got <seq>" as each
// record arrives. args: root, exchange name.
func readerChild(args []string) int {
	say("hello")
	if len(args) != 2 {
		return childFail("reader: args %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := childX(args[0], args[1], 8<<10)
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	a, err := proxystore.OpenArena(x.Dir(), proxystore.WithPrefault(false))
	if err != nil {
		return childFail("OpenArena: %v", err)
	}
	defer a.Close()
	me, err := x.RegisterClient(ctx, exchange.WithName("reader"))
	if err != nil {
		return childFail("RegisterClient: %v", err)
	}
	mb, err := x.Mailbox(ctx, me)
	if err != nil {
		return childFail("Mailbox: %v", err)
	}
	say("ready", me)
	rng := childRand()
	var held []heldView
	var m exchange.Message
	for {
		if err := mb.Recv(ctx, &m); err != nil {
			return childFail("Recv: %v", err)
		}
		r, err := parseRecord(m.Args)
		if err != nil {
			return childFail("record: %v", err)
		}
		say("got", r.seq)
		size, sum, p, err := parseProxyBody(r.body)
		if err != nil {
			return childFail("proxy: %v", err)
		}
		v, err := a.Resolve(ctx, p)
		if err != nil {
			return childFail("Resolve(%v): %v", p, err)
		}
		h := heldView{v, sum, size}
		if err := h.check(); err != nil {
			return childFail("%v", err)
		}
		if !checkPattern(v.Bytes(), r.stream, r.seq) {
			return childFail("payload of %v is not its pattern", p)
		}
		held = append(held, h)
		if len(held) > readerHolds {
			i := rng.IntN(len(held))
			if err := held[i].check(); err != nil {
				return childFail("%v", err)
			}
			if err := held[i].v.Release(); err != nil {
				return childFail("Release: %v", err)
			}
			held = slices.Delete(held, i, i+1)
		}
	}
}

// TestCrashReader kills readers holding views: each trial starts a child
// that resolves the proxies this process sends it (payloads of this
// process's arena, owned, single use or leased, some larger than a
// segment) and holds up to 48 views, and SIGKILLs it at a random moment.
// The arena's segments have only 4 hold slots each (31 views a slot), so
// slots a dead reader kept would soon refuse the next reader's resolves.
// Then this process's Send to the dead reader fails with ErrMailboxClosed
// within 2 s (load-scaled) of the kill, even when it waited on the full
// mailbox; once this process frees every payload it made, all of its
// blocks are reclaimed (Stats().Blocks back to 0: the dead reader's
// references dropped, its hold slots given back); its own views of the
// payloads keep their bytes throughout; and the next trial's reader
// resolves as many views as it likes.
func TestCrashReader(t *testing.T) {
	t.Parallel()
	c := newCampaign(t, "reader")
	a, err := proxystore.OpenArena(c.x.Dir(), proxystore.WithSegmentSize(1<<20), proxystore.WithHoldSlots(ownerHoldSlots))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	me, err := c.x.RegisterClient(context.Background(), exchange.WithName("reader-feeder"))
	if err != nil {
		t.Fatal(err)
	}
	c.keep(me)
	// The requests still queued in a dead reader's mailbox are answered
	// with errors, here: count them.
	var answered atomic.Int64
	var tmu sync.Mutex
	tags := map[exchange.UUID]uint64{} // the current trial's requests: tag -> seq
	answers := map[uint64]int{}        // seq -> error answers received
	mb, err := c.x.Mailbox(context.Background(), me)
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		var m exchange.Message
		for {
			err := mb.Recv(context.Background(), &m)
			if errors.Is(err, exchange.ErrMailboxClosed) {
				return
			}
			if err != nil {
				t.Errorf("feeder's Recv: %v", err)
				return
			}
			if errors.Is(m.Err(), exchange.ErrMailboxClosed) {
				answered.Add(1)
				tmu.Lock()
				if seq, ok := tags[m.Tag]; ok {
					answers[seq]++
				} else {
					t.Errorf("feeder received an answer to a request it never sent (or of an earlier trial): %v", &m)
				}
				tmu.Unlock()
			} else {
				t.Errorf("feeder received %v, want only error answers of a terminated mailbox", &m)
			}
		}
	}()
	t.Cleanup(func() { mb.Close(); <-drained })
	var made int64
	c.run(func(tr *trial) error {
		var gmu sync.Mutex
		got := map[uint64]int{}
		k := tr.start("reader", func(f []string) {
			if len(f) == 2 && f[0] == "got" {
				gmu.Lock()
				got[atou(f[1])]++
				gmu.Unlock()
			}
		}, c.root, c.name)
		tmu.Lock()
		clear(tags)
		clear(answers)
		tmu.Unlock()
		f, err := tr.ready(k)
		if err != nil {
			return err
		}
		if f == nil {
			return nil
		}
		dest, err := exchange.ParseEntityID(f[1])
		if err != nil {
			return fmt.Errorf("ready line %q: %v", f, err)
		}
		tr.dead = append(tr.dead, dest)

		// Feed the reader until its mailbox is closed by its death.
		var (
			mu      sync.Mutex
			proxies []proxystore.Proxy
			mine    []heldView // this process's own views, one in eight
			sendErr error
			ended   time.Time
			sent    uint64 // requests whose Send returned nil
		)
		done := make(chan struct{})
		go func() {
			defer close(done)
			rng := childRand()
			var buf, body, rec []byte
			for seq := uint64(0); ; seq++ {
				n := payloadSize(rng)
				buf = patternBody(buf[:0], n, 0, seq)
				sum := crc32.Checksum(buf, castagnoli)
				p, err := a.Put(tr.ctx, buf, putOpts(rng)...)
				if err != nil {
					mu.Lock()
					sendErr, ended = fmt.Errorf("Put: %w", err), time.Now()
					mu.Unlock()
					return
				}
				mu.Lock()
				proxies = append(proxies, p)
				mu.Unlock()
				if seq%8 == 0 {
					if v, err := a.Resolve(tr.ctx, p); err == nil {
						mu.Lock()
						mine = append(mine, heldView{v, sum, n})
						mu.Unlock()
					}
				}
				body = proxyBody(body[:0], n, sum, p)
				rec = appendRecord(rec[:0], tr.id, 0, seq, body)
				m := exchange.NewActionRequest(me, dest, "proxy", rec)
				tmu.Lock()
				tags[m.Tag] = seq
				tmu.Unlock()
				if err := c.x.Send(tr.ctx, m); err != nil {
					mu.Lock()
					sendErr, ended = err, time.Now()
					mu.Unlock()
					return
				}
				made++
				sent = seq + 1
			}
		}()
		time.Sleep(tr.delay)
		killAt := time.Now()
		if err := k.kill(); err != nil {
			return err
		}
		select {
		case <-done:
		case <-time.After(bound(callHang)):
			return fmt.Errorf("Send to the dead reader still blocked %v after the kill", bound(callHang))
		}
		if !errors.Is(sendErr, exchange.ErrMailboxClosed) {
			return fmt.Errorf("the last Send to the reader: %v, want ErrMailboxClosed", sendErr)
		}
		d := ended.Sub(killAt)
		if d > bound(stuckBound) {
			return fmt.Errorf("Send to the dead reader failed %v after the kill, over %v (load-scaled %v)", d, stuckBound, bound(stuckBound))
		}
		tr.noteStuck(max(d, 0))
		// Every request sent was received by the reader or answered as
		// terminated, once; one may be missing: received by the reader,
		// which died before it reported it.
		var missing []uint64
		var dups []string
		if _, ok := within(bound(stuckBound), func() bool {
			gmu.Lock()
			defer gmu.Unlock()
			tmu.Lock()
			defer tmu.Unlock()
			missing, dups = missing[:0], dups[:0]
			for seq := range sent {
				switch n := got[seq] + answers[seq]; {
				case n == 0:
					missing = append(missing, seq)
				case n > 1:
					dups = append(dups, fmt.Sprintf("seq %d: received %d times, answered %d times", seq, got[seq], answers[seq]))
				}
			}
			return len(missing) <= 1
		}); !ok || len(dups) > 0 {
			return fmt.Errorf("of %d requests sent, %d neither received nor answered (%v...); %q", sent, len(missing), missing[:min(len(missing), 5)], dups)
		}
		for _, h := range mine {
			if err := h.check(); err != nil {
				return fmt.Errorf("this process's own view: %w", err)
			}
			if err := h.v.Release(); err != nil {
				return fmt.Errorf("Release: %w", err)
			}
		}
		for _, p := range proxies {
			// Single-use payloads the reader resolved are gone already.
			if err := a.Free(tr.ctx, p); err != nil && !errors.Is(err, proxystore.ErrStaleProxy) {
				return fmt.Errorf("Free(%v): %w", p, err)
			}
		}
		if _, ok := within(bound(stuckBound), func() bool { return a.Stats().Blocks == 0 }); !ok {
			return fmt.Errorf("%d blocks of this process not reclaimed %v after every payload was freed and the reader died", a.Stats().Blocks, bound(stuckBound))
		}
		tr.noteMessages(int64(len(proxies)))
		return nil
	})
	c.done(map[string]any{"payloads": made, "requests_answered_terminated": answered.Load()})
}
