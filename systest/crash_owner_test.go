package systest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

const (
	// ownerStreams is how many goroutines of an arena owner child make
	// payloads and send their proxies.
	ownerStreams = 2
	// heldViews is how many views the parent holds at once in the arena
	// owner campaign; they stay held across the owner's death.
	heldViews = 16
)

// ownerTrust is how long a reader trusts its last look at an arena
// owner's liveness lock (proxystore's doc, "Process death"): within it of
// an owner's death, its committed payloads may still resolve.
const ownerTrust = 10 * time.Millisecond

// fillPattern writes the pattern of stream and seq over dst in place.
func fillPattern(dst []byte, stream uint32, seq uint64) {
	for i := range dst {
		dst[i] = byte(seq*131 + uint64(i)*7 + uint64(stream)*17)
	}
}

// proxyBody is the body of a record that carries a proxy: the payload's
// length and CRC-32C, then the proxy's payload form (AppendPayload).
func proxyBody(dst []byte, n int, sum uint32, p proxystore.Proxy) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = binary.LittleEndian.AppendUint32(dst, sum)
	return proxystore.AppendPayload(dst, p)
}

// parseProxyBody splits a proxy record's body.
func parseProxyBody(b []byte) (n int, sum uint32, p proxystore.Proxy, err error) {
	if len(b) < 8 {
		return 0, 0, p, fmt.Errorf("%w: proxy body of %d bytes", errTorn, len(b))
	}
	p, err = proxystore.ParsePayload(b[8:])
	return int(binary.LittleEndian.Uint32(b)), binary.LittleEndian.Uint32(b[4:]), p, err
}

// payloadSize draws a payload size: mostly up to 32 KiB (size classes and
// chunk runs), one in sixteen larger than a segment (a segment of its own).
func payloadSize(rng interface{ IntN(int) int }) int {
	if rng.IntN(16) == 0 {
		return 300<<10 + rng.IntN(64<<10)
	}
	return 1 + rng.IntN(32<<10)
}

// putOpts draws a lifetime: owned, single use or leased (for a minute).
func putOpts(rng interface{ IntN(int) int }) []proxystore.PutOption {
	switch rng.IntN(3) {
	case 0:
		return []proxystore.PutOption{proxystore.WithSingleUse()}
	case 1:
		return []proxystore.PutOption{proxystore.WithLease(time.Now().Add(time.Minute))}
	}
	return nil
}

// ownerChild owns an arena (256 KiB segments): from ownerStreams goroutines
// it makes payloads (half filled in place through Alloc, half copied with
// Put; owned, single use or leased) and sends each one's proxy, in a
// record, to a mailbox, reporting "ok <stream> <seq>" after each Send,
// until it is killed. args: root, exchange name, destination, trial.
func ownerChild(args []string) int {
	c, code := startStreamChild("owner", args, 8<<10)
	if code != 0 {
		return code
	}
	defer c.close()
	x, dest, trialID, ctx := c.x, c.dest, c.trial, c.ctx
	a, err := proxystore.OpenArena(x.Dir(), proxystore.WithSegmentSize(256<<10), proxystore.WithPrefault(false))
	if err != nil {
		return childFail("OpenArena: %v", err)
	}
	defer a.Close()
	me, err := x.RegisterClient(ctx, exchange.WithName("owner"))
	if err != nil {
		return childFail("RegisterClient: %v", err)
	}
	say("ready", me)
	errs := make(chan error, ownerStreams)
	for s := range uint32(ownerStreams) {
		go func() {
			rng := childRand()
			var buf, body, rec []byte
			for seq := uint64(0); ; seq++ {
				n := payloadSize(rng)
				var p proxystore.Proxy
				var sum uint32
				if rng.IntN(2) == 0 {
					l, err := a.Alloc(ctx, n, putOpts(rng)...)
					if err != nil {
						errs <- fmt.Errorf("Alloc(%d): %w", n, err)
						return
					}
					fillPattern(l.Bytes(), s, seq)
					sum = crc32.Checksum(l.Bytes(), castagnoli)
					if p, err = l.Commit(); err != nil {
						errs <- fmt.Errorf("Commit: %w", err)
						return
					}
				} else {
					buf = patternBody(buf[:0], n, s, seq)
					sum = crc32.Checksum(buf, castagnoli)
					var err error
					if p, err = a.Put(ctx, buf, putOpts(rng)...); err != nil {
						errs <- fmt.Errorf("Put(%d): %w", n, err)
						return
					}
				}
				body = proxyBody(body[:0], n, sum, p)
				rec = appendRecord(rec[:0], trialID, s, seq, body)
				m := exchange.NewActionRequest(me, dest, "proxy", rec)
				if err := x.Send(ctx, m); err != nil {
					errs <- err
					return
				}
				say("ok", s, seq)
			}
		}()
	}
	return childFail("owner: %v", <-errs)
}

// heldView is a view the parent holds, with what its bytes must be.
type heldView struct {
	v   proxystore.View
	sum uint32
	n   int
}

func (h heldView) check() error {
	b := h.v.Bytes()
	if len(b) != h.n || crc32.Checksum(b, castagnoli) != h.sum {
		return fmt.Errorf("%w: a held view of %v changed (%d bytes, want %d with CRC %08x)", errTorn, h.v.Proxy(), len(b), h.n, h.sum)
	}
	return nil
}

// viewKeeper resolves the proxies that arrive in the sink and holds some
// of their views.
type viewKeeper struct {
	a      *proxystore.Arena
	killAt atomic.Int64 // unix nanos, set just before the SIGKILL; 0 while the owner lives

	mu        sync.Mutex
	held      []heldView
	later     []proxystore.Proxy // not resolved while the owner lived
	resolved  int64
	ownerDead int64
	n         int // records seen
}

// onRec resolves the proxy in r and checks its payload whole; it keeps one
// proxy in eight unresolved for after the kill, and up to heldViews views.
func (vk *viewKeeper) onRec(r record) error {
	n, sum, p, err := parseProxyBody(r.body)
	if err != nil {
		return err
	}
	vk.mu.Lock()
	vk.n++
	keep := vk.n%8 == 0
	if keep {
		vk.later = append(vk.later, p)
	}
	vk.mu.Unlock()
	if keep {
		return nil
	}
	v, err := vk.a.Resolve(context.Background(), p)
	if err != nil {
		if errors.Is(err, proxystore.ErrOwnerDead) && vk.killAt.Load() != 0 {
			vk.mu.Lock()
			vk.ownerDead++
			vk.mu.Unlock()
			return nil
		}
		return fmt.Errorf("Resolve(%v) (owner killed: %v): %w", p, vk.killAt.Load() != 0, err)
	}
	h := heldView{v, sum, n}
	if err := h.check(); err != nil {
		v.Release()
		return err
	}
	if !checkPattern(v.Bytes(), r.stream, r.seq) {
		v.Release()
		return fmt.Errorf("%w: payload of %v is not its pattern", errTorn, p)
	}
	vk.mu.Lock()
	defer vk.mu.Unlock()
	vk.resolved++
	vk.held = append(vk.held, h)
	if len(vk.held) > heldViews {
		i := int(r.seq) % len(vk.held)
		old := vk.held[i]
		vk.held[i] = vk.held[len(vk.held)-1]
		vk.held = vk.held[:len(vk.held)-1]
		err := old.check()
		old.v.Release()
		return err
	}
	return nil
}

// checkHeld checks every held view.
func (vk *viewKeeper) checkHeld() error {
	vk.mu.Lock()
	defer vk.mu.Unlock()
	for _, h := range vk.held {
		if err := h.check(); err != nil {
			return err
		}
	}
	return nil
}

// releaseAll releases every held view.
func (vk *viewKeeper) releaseAll() error {
	vk.mu.Lock()
	defer vk.mu.Unlock()
	var first error
	for _, h := range vk.held {
		if err := h.v.Release(); err != nil && first == nil {
			first = err
		}
	}
	vk.held = nil
	return first
}

// TestCrashArenaOwner kills arena owners with proxies out: each trial
// starts a child that owns an arena and sends this process the proxies of
// payloads it makes (owned, single use, leased; filled in place or copied;
// some larger than a segment), and SIGKILLs it at a random moment. This
// process resolves each proxy as it arrives, checks the payload whole,
// holds up to 16 views across the kill and keeps one proxy in eight
// unresolved. Then every record reported sent arrived exactly once; every
// resolve either gave the whole payload or, after the kill only,
// ErrOwnerDead; the proxies kept unresolved fail with ErrOwnerDead once
// the reader's trust in its last look at the owner (10 ms) has passed (a
// clear error, never a read of freed memory); the views held across the
// kill keep their bytes, also after gc has removed the dead owner's
// arenas; and once they are released, this process unmaps the dead
// owner's segments (Stats().Attached back to 0).
func TestCrashArenaOwner(t *testing.T) {
	t.Parallel()
	c := newCampaign(t, "owner")
	a, err := proxystore.OpenArena(c.x.Dir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	vk := &viewKeeper{a: a}
	s := newSink(t, c.x, vk.onRec)
	c.keep(s.me)
	var lateDead int64
	c.run(func(tr *trial) error {
		vk.killAt.Store(0)
		tr.beforeKill = func() { vk.killAt.Store(time.Now().UnixNano()) }
		com := newCommitted()
		k := tr.start("owner", com.line, c.root, c.name, s.me.String(), utoa(tr.id))
		f, err := tr.ready(k)
		if err != nil {
			return err
		}
		if f != nil {
			if id, err := exchange.ParseEntityID(f[1]); err == nil {
				tr.dead = append(tr.dead, id)
			}
			if err := tr.killLater(k); err != nil {
				return err
			}
		}
		reaped := time.Now()
		stuck, err := s.mark(tr.ctx, tr.id)
		if err != nil {
			return err
		}
		tr.noteStuck(stuck)
		if errs := s.failures(); len(errs) > 0 {
			return errorsOf("records", errs)
		}
		if err := com.check(s, tr.id, ownerStreams); err != nil {
			return err
		}
		tr.noteMessages(s.forget(tr.id))
		vk.mu.Lock()
		later := vk.later
		vk.later = nil
		vk.mu.Unlock()
		// A reader trusts its last look at an owner's liveness lock for
		// ownerTrust (proxystore's doc): resolves from then on must fail.
		time.Sleep(time.Until(reaped.Add(2 * ownerTrust)))
		for _, p := range later {
			v, err := a.Resolve(tr.ctx, p)
			if err == nil {
				v.Release()
				return fmt.Errorf("a proxy of the dead owner resolved after its death: %v", p)
			}
			if !errors.Is(err, proxystore.ErrOwnerDead) {
				return fmt.Errorf("a proxy of the dead owner: %w, want ErrOwnerDead", err)
			}
			lateDead++
		}
		if err := vk.checkHeld(); err != nil {
			return fmt.Errorf("after the kill: %w", err)
		}
		if err := gc(tr.ctx, c.x); err != nil {
			return err
		}
		if err := vk.checkHeld(); err != nil {
			return fmt.Errorf("after gc: %w", err)
		}
		if err := vk.releaseAll(); err != nil {
			return fmt.Errorf("Release: %w", err)
		}
		if _, ok := within(bound(stuckBound), func() bool { return a.Stats().Attached == 0 }); !ok {
			return fmt.Errorf("%d segments of the dead owner still mapped %v after the last view's release", a.Stats().Attached, bound(stuckBound))
		}
		return nil
	})
	c.done(map[string]any{"resolved": vk.resolved, "owner_dead_resolves": vk.ownerDead + lateDead})
}
