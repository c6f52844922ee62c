package systest

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/shm"
)

// sink receives records in one mailbox of the parent, checking each one
// whole (parseRecord) and in order within its stream: the seqs of a stream
// arrive 0, 1, 2, ... with no gap and no repeat.
type sink struct {
	x     *exchange.SHM
	me    exchange.EntityID
	mb    exchange.Mailbox
	onRec func(r record) error // more checks per record, or nil

	mu    sync.Mutex
	next  map[streamKey]uint64
	errs  []string
	count int64
	marks chan uint64
	done  chan struct{}
}

// newSink registers a client mailbox in x and receives from it until the
// test ends.
func newSink(t testing.TB, x *exchange.SHM, onRec func(r record) error) *sink {
	t.Helper()
	ctx := context.Background()
	me, err := x.RegisterClient(ctx, exchange.WithName("sink"))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{x: x, me: me, mb: mb, onRec: onRec, next: map[streamKey]uint64{}, marks: make(chan uint64, 64), done: make(chan struct{})}
	go s.loop()
	t.Cleanup(func() {
		mb.Close()
		select {
		case <-s.done:
		case <-time.After(bound(30 * time.Second)):
			t.Error("sink: Recv did not return after Close")
		}
	})
	return s
}

func (s *sink) fail(format string, args ...any) {
	s.mu.Lock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *sink) loop() {
	defer close(s.done)
	var m exchange.Message
	for {
		err := s.mb.Recv(context.Background(), &m)
		if errors.Is(err, exchange.ErrMailboxClosed) {
			return
		}
		if err != nil {
			s.fail("Recv: %v", err)
			if errors.Is(err, exchange.ErrBadMessage) {
				continue
			}
			return
		}
		r, err := parseRecord(m.Args)
		if err != nil {
			s.fail("message from %v: %v", m.Src, err)
			continue
		}
		if r.stream == sentinel {
			s.marks <- r.trial
			continue
		}
		k := streamKey{r.trial, r.stream}
		s.mu.Lock()
		want := s.next[k]
		if r.seq != want {
			s.errs = append(s.errs, fmt.Sprintf("trial %x stream %d: seq %d, want %d (lost or repeated)", r.trial, r.stream, r.seq, want))
		}
		s.next[k] = r.seq + 1
		s.count++
		s.mu.Unlock()
		if s.onRec != nil {
			if err := s.onRec(r); err != nil {
				s.fail("trial %x stream %d seq %d: %v", r.trial, r.stream, r.seq, err)
			}
		}
	}
}

// mark sends a sentinel of trial to the sink's mailbox and waits for it:
// once it arrives, every record committed to the mailbox before the call
// has been received. It returns how long that took.
func (s *sink) mark(ctx context.Context, trial uint64) (time.Duration, error) {
	start := time.Now()
	limit := bound(stuckBound)
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	m := exchange.NewActionRequest(s.me, s.me, "mark", appendRecord(nil, trial, sentinel, 0, nil))
	if err := s.x.Send(sctx, m); err != nil {
		return time.Since(start), fmt.Errorf("sending the sentinel: %w (after %v)", err, time.Since(start))
	}
	for {
		select {
		case got := <-s.marks:
			if got == trial {
				return time.Since(start), nil
			}
		case <-sctx.Done():
			s.mu.Lock()
			errs := slices.Clone(s.errs)
			s.mu.Unlock()
			ended := "receiving"
			select {
			case <-s.done:
				ended = "its receive loop ENDED"
			default:
			}
			err := fmt.Errorf("mailbox stuck: the sentinel did not come through within %v (load-scaled %v); sink %s, failures %q; ring then: %s", limit, stuckBound, ended, errs, ringDump(s.x.Dir(), s.me))
			// Whether it comes at all tells a slow recovery from none.
			select {
			case got := <-s.marks:
				if got == trial {
					return time.Since(start), fmt.Errorf("%w; it came after %v", err, time.Since(start))
				}
			case <-time.After(bound(10 * time.Second)):
			}
			return time.Since(start), fmt.Errorf("%w; not after %v either; ring: %s; the sink's goroutine: %s", err, time.Since(start), ringDump(s.x.Dir(), s.me), sinkStack())
		}
	}
}

// delivered returns how many records of stream of trial arrived.
func (s *sink) delivered(trial uint64, stream uint32) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next[streamKey{trial, stream}]
}

// failures returns and clears the sink's failures.
func (s *sink) failures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.errs
	s.errs = nil
	return e
}

// forget drops the sink's state of trial and returns how many of its
// records arrived.
func (s *sink) forget(trial uint64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for k, v := range s.next {
		if k.trial == trial {
			n += int64(v)
			delete(s.next, k)
		}
	}
	return n
}

// committed collects what a child reports committed: "ok <stream> <seq>"
// lines, the highest seq per stream.
type committed struct {
	mu  sync.Mutex
	top map[uint32]uint64 // stream -> highest seq reported + 1
}

func newCommitted() *committed { return &committed{top: map[uint32]uint64{}} }

// line handles a child's line "ok <stream> <seq>"; other lines are
// ignored.
func (c *committed) line(f []string) {
	if len(f) != 3 || f[0] != "ok" {
		return
	}
	s, seq := uint32(atou(f[1])), atou(f[2])
	c.mu.Lock()
	c.top[s] = max(c.top[s], seq+1)
	c.mu.Unlock()
}

// check compares what arrived in s for each of streams of trial with what
// the child reported committed: every reported record arrived, and at most
// one more per stream (committed, but the child died before reporting it).
func (c *committed) check(s *sink, trial uint64, streams int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for st := range uint32(streams) {
		got, rep := s.delivered(trial, st), c.top[st]
		if got < rep {
			return fmt.Errorf("stream %d: the child reported %d records committed, %d arrived", st, rep, got)
		}
		if got > rep+1 {
			return fmt.Errorf("stream %d: %d records arrived, the child reported %d committed (at most one more can be unreported)", st, got, rep)
		}
	}
	return nil
}

// ringDump describes the ring of mailbox id in exchange directory dir, read
// from its file, for a failure message: positions, producer slots (with
// their owners' liveness) and the record headers from the consumer's
// position on. The offsets are ring's layout (ring/descriptor.go) after the
// segment header.
func ringDump(dir string, id exchange.EntityID) string {
	b, err := os.ReadFile(filepath.Join(dir, shm.RingPrefix+hex.EncodeToString(id.UUID[:])))
	if err != nil {
		return err.Error()
	}
	const base = shm.HeaderSize
	if len(b) < base+768 {
		return fmt.Sprintf("ring file of %d bytes", len(b))
	}
	le := binary.LittleEndian
	r := b[base:]
	slots := int(le.Uint32(r[12:]))
	capacity := le.Uint64(r[16:])
	dataOff := le.Uint64(r[32:])
	tail, head, consumer, consumed := le.Uint64(r[128:]), le.Uint64(r[256:]), le.Uint64(r[264:]), le.Uint64(r[272:])
	var sb strings.Builder
	fmt.Fprintf(&sb, "capacity %d, tail %d (closed %v), head %d, consumed %d, consumer %d (alive %v), recvWaiting %d, spaceWaiters %d, spaceWanted %d, recovered %d/%d/%d bytes",
		capacity, tail&^(1<<63), tail>>63 == 1, head, consumed, consumer, aliveStr(dir, consumer), le.Uint32(r[384:]), le.Uint32(r[512:]), le.Uint64(r[520:]),
		le.Uint64(r[640:]), le.Uint64(r[648:]), le.Uint64(r[656:]))
	if capacity == 0 || capacity&(capacity-1) != 0 || dataOff+capacity > uint64(len(r)) {
		return sb.String()
	}
	data := r[dataOff : dataOff+capacity]
	pos := consumed
	for n := 0; n < 16 && pos < tail&^(1<<63); n++ {
		h := data[pos&(capacity-1):]
		length, typ := int32(le.Uint32(h)), int32(le.Uint32(h[4:]))
		fmt.Fprintf(&sb, "; record at %d: length %d, type %d", pos, length, typ)
		if length <= 0 {
			break
		}
		pos += uint64(length+7) &^ 7
	}
	// The slots whose last claim covers what is not consumed yet, and a
	// count of the others.
	live, dead := 0, 0
	for i := range slots {
		s := r[768+i*64:]
		if len(s) < 24 {
			break
		}
		owner := le.Uint64(s)
		if owner == 0 {
			continue
		}
		ip, il := le.Uint64(s[8:]), le.Uint64(s[16:])
		a := aliveStr(dir, owner)
		if a == "true" {
			live++
		} else {
			dead++
		}
		if ip != ^uint64(0) && ip+il > consumed || a == "true" {
			fmt.Fprintf(&sb, "; slot %d: owner %d (alive %v), intent %d+%d", i, owner, a, int64(ip), il)
		}
	}
	fmt.Fprintf(&sb, "; slots taken: %d by live owners, %d by dead ones", live, dead)
	return sb.String()
}

func aliveStr(dir string, owner uint64) string {
	if owner == 0 {
		return "-"
	}
	ok, err := shm.Alive(dir, owner)
	if err != nil {
		return err.Error()
	}
	return strconv.FormatBool(ok)
}

// sinkStack returns the stack of the goroutine running a sink's loop.
func sinkStack() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "(*sink).loop") {
			return g
		}
	}
	return "not found"
}
