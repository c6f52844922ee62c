package systest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
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
			return time.Since(start), fmt.Errorf("mailbox stuck: the sentinel did not come through within %v (load-scaled %v)", limit, stuckBound)
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
