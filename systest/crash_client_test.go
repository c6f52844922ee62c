package systest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

const (
	// clientStreams is how many goroutines of a client child call at once;
	// each keeps up to clientDepth futures pending, waiting on one in four.
	clientStreams = 4
	clientDepth   = 32
	// workerBound is the parent agent's concurrency bound: workers stuck
	// answering a dead client would stall every later request.
	workerBound = 4
)

// clientChild is a client (agent.NewClient, a 4 KiB mailbox) calling the
// action "work" of an agent from clientStreams goroutines, keeping many
// futures pending, until it is killed. It reports "ready <client id>",
// then "ok <stream> <seq>" after each request was sent.
// args: root, exchange name, agent id, trial.
func clientChild(args []string) int {
	c, code := startStreamChild("client", args, 4<<10)
	if code != 0 {
		return code
	}
	defer c.close()
	x, dest, trialID, ctx := c.x, c.dest, c.trial, c.ctx
	cl, err := agent.NewClient(ctx, x, agent.WithName("crash-client"), agent.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return childFail("NewClient: %v", err)
	}
	say("ready", cl.ID())
	h := cl.Handle(dest)
	errs := make(chan error, clientStreams)
	for s := range uint32(clientStreams) {
		go func() {
			rng := childRand()
			var pending []*agent.Future[[]byte]
			var body []byte
			for seq := uint64(0); ; seq++ {
				body = patternBody(body[:0], rng.IntN(800), s, seq)
				rec := appendRecord(nil, trialID, s, seq, body)
				f, err := h.ActionRaw(ctx, "work", rec)
				if err != nil {
					errs <- err
					return
				}
				say("ok", s, seq)
				pending = append(pending, f)
				if seq%4 == 0 {
					// Wait for one in four (a random one), leave the
					// rest pending.
					i := rng.IntN(len(pending))
					if _, err := pending[i].Wait(ctx); err != nil {
						errs <- fmt.Errorf("future: %w", err)
						return
					}
					pending = slices.Delete(pending, i, i+1)
				}
				if len(pending) > clientDepth {
					pending = pending[1:] // dropped: a late response goes nowhere
				}
			}
		}()
	}
	return childFail("client: %v", <-errs)
}

// workLog is what the parent's "work" agent ran: every request once.
type workLog struct {
	mu       sync.Mutex
	ran      map[streamKey]map[uint64]bool
	dups     []string
	inFlight atomic.Int64
	count    atomic.Int64
}

// workBehavior returns the behavior of the parent's agent: "work" checks
// its argument is a whole record, notes it in w (a second run of one
// request is a failure), works for up to 5 ms and returns the record.
func workBehavior(w *workLog) *agent.Behavior {
	b := agent.NewBehavior("CrashWork")
	b.AddRawAction("work", func(ctx context.Context, args, out []byte) ([]byte, error) {
		w.inFlight.Add(1)
		defer w.inFlight.Add(-1)
		r, err := parseRecord(args)
		if err != nil {
			w.mu.Lock()
			w.dups = append(w.dups, fmt.Sprintf("work: %v", err))
			w.mu.Unlock()
			return nil, err
		}
		if r.stream != sentinel {
			if !checkPattern(r.body, r.stream, r.seq) {
				w.mu.Lock()
				w.dups = append(w.dups, fmt.Sprintf("work: trial %x stream %d seq %d: body is not its pattern", r.trial, r.stream, r.seq))
				w.mu.Unlock()
			}
			k := streamKey{r.trial, r.stream}
			w.mu.Lock()
			if w.ran[k] == nil {
				w.ran[k] = map[uint64]bool{}
			}
			if w.ran[k][r.seq] {
				w.dups = append(w.dups, fmt.Sprintf("trial %x stream %d seq %d ran twice", r.trial, r.stream, r.seq))
			}
			w.ran[k][r.seq] = true
			w.mu.Unlock()
			w.count.Add(1)
		}
		time.Sleep(time.Duration(childRand().Int64N(int64(5 * time.Millisecond))))
		return append(out, args...), nil
	})
	return b
}

// check compares what ran of trial with what the child reported sent:
// every reported request ran, at most one more per stream (sent, not yet
// reported), none twice.
func (w *workLog) check(trial uint64, com *committed) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	com.mu.Lock()
	defer com.mu.Unlock()
	errs := w.dups
	w.dups = nil
	var n int64
	for st := range uint32(clientStreams) {
		k := streamKey{trial, st}
		n += int64(len(w.ran[k]))
		rep := com.top[st]
		for seq := range rep {
			if !w.ran[k][seq] {
				errs = append(errs, fmt.Sprintf("stream %d seq %d: sent (reported), never ran", st, seq))
			}
		}
		for seq := range w.ran[k] {
			if seq > rep {
				errs = append(errs, fmt.Sprintf("stream %d seq %d ran; the child reported %d sent (at most one more can be unreported)", st, seq, rep))
			}
		}
		delete(w.ran, k)
	}
	if len(errs) > 0 {
		return n, errorsOf("requests", errs)
	}
	return n, nil
}

// TestCrashClient kills client processes with futures pending: each trial
// starts a child whose client (a 4 KiB mailbox) calls an agent of this
// process from 4 goroutines, leaving most futures pending, and SIGKILLs it
// at a random moment, maybe in the middle of writing a request. The agent
// (at most 4 actions at once) answers into the dead client's mailbox. Then
// the agent's mailbox is not stuck and the agent not wedged answering a
// dead client: a call from this process, queued behind everything the
// child sent, answers within 2 s (load-scaled); every request the child
// reported sent ran exactly once, at most one more per goroutine (sent but
// not reported), none twice, each whole; and the dead client's mailbox
// reads terminated.
func TestCrashClient(t *testing.T) {
	t.Parallel()
	c := newCampaign(t, "client")
	w := &workLog{ran: map[streamKey]map[uint64]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rt, err := agent.NewRuntime(ctx, c.x, workBehavior(w), agent.WithMaxConcurrency(workerBound),
		agent.WithLogger(slog.New(slog.NewTextHandler(c.log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- rt.Run(ctx) }()
	t.Cleanup(func() {
		rt.Shutdown()
		select {
		case <-runDone:
		case <-time.After(bound(callHang)):
			t.Error("the work agent did not stop")
		}
	})
	c.keep(rt.ID())
	cl, err := agent.NewClient(ctx, c.x, agent.WithLogger(slog.New(slog.NewTextHandler(c.log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.keep(cl.ID())
	h := cl.Handle(rt.ID())
	c.run(func(tr *trial) error {
		com := newCommitted()
		k := tr.start("client", com.line, c.root, c.name, rt.ID().String(), utoa(tr.id))
		f, err := tr.ready(k)
		if err != nil {
			return err
		}
		if f != nil {
			id, err := exchange.ParseEntityID(f[1])
			if err != nil {
				return fmt.Errorf("ready line %q: %v", f, err)
			}
			tr.dead = append(tr.dead, id)
			if err := tr.killLater(k); err != nil {
				return err
			}
		}
		// A call queued behind all the child sent: once it answers, every
		// request the child committed has been taken.
		if err := tr.callAfterKill(h, "work", "the agent"); err != nil {
			return err
		}
		if _, ok := within(bound(callHang), func() bool { return w.inFlight.Load() == 0 }); !ok {
			return fmt.Errorf("%d actions still running %v after the kill", w.inFlight.Load(), bound(callHang))
		}
		n, err := w.check(tr.id, com)
		tr.noteMessages(n)
		return err
	})
	c.done(map[string]any{"requests_run": w.count.Load()})
}
