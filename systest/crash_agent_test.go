package systest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

const (
	// agentStreams is how many goroutines of the parent call the agent at
	// once, each with up to agentDepth futures pending.
	agentStreams = 4
	agentDepth   = 4
	// deadCallBound is the agent layer's documented bound on a call in
	// flight to an agent whose process died (agent package doc, "Nothing
	// waits forever"): the dead process's mailbox reads terminated within
	// about 100 ms, then a client polls its status every WithStatusPoll
	// (100 ms) and fails the call once it has been terminated for
	// WithTerminatedGrace (1 s). 300 ms of slack for "about" (asserted
	// load-scaled).
	deadCallBound = 100*time.Millisecond + 100*time.Millisecond + time.Second + 300*time.Millisecond
	// callHang is how long a call may take before it counts as hung.
	callHang = 30 * time.Second
)

// echoBehavior returns a behavior whose action "echo" checks that its
// argument is a whole record, reports it with "ran <stream> <seq>" when
// report is set, works for up to maxWork, and returns the record.
func echoBehavior(report bool, maxWork time.Duration) *agent.Behavior {
	b := agent.NewBehavior("CrashEcho", "Echo")
	b.AddRawAction("echo", func(ctx context.Context, args, out []byte) ([]byte, error) {
		r, err := parseRecord(args)
		if err != nil {
			if report {
				say("bad", "echo args:", err)
			}
			return nil, err
		}
		if report {
			say("ran", r.stream, r.seq)
		}
		if maxWork > 0 {
			t := time.NewTimer(time.Duration(childRand().Int64N(int64(maxWork))))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		return append(out, args...), nil
	})
	return b
}

// agentChild runs an agent whose "echo" actions take up to 20 ms each,
// with no bound on how many run at once, until it is killed. It reports
// "ready <agent id>", then "ran <stream> <seq>" as each action starts.
// args: root, exchange name.
func agentChild(args []string) int {
	say("hello")
	if len(args) != 2 {
		return childFail("agent: args %q", args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), childLife)
	defer cancel()
	x, err := childX(args[0], args[1], 8<<10)
	if err != nil {
		return childFail("Open: %v", err)
	}
	defer x.Close()
	rt, err := agent.NewRuntime(ctx, x, echoBehavior(true, 20*time.Millisecond), agent.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return childFail("NewRuntime: %v", err)
	}
	say("ready", rt.ID())
	err = rt.Run(ctx)
	return childFail("Run returned: %v", err)
}

// ranLog collects an agent child's "ran <stream> <seq>" lines and counts
// each request run more than once.
type ranLog struct {
	mu   sync.Mutex
	ran  map[[2]uint64]bool
	dups []string
}

func newRanLog() *ranLog { return &ranLog{ran: map[[2]uint64]bool{}} }

func (r *ranLog) line(f []string) {
	if len(f) != 3 || f[0] != "ran" {
		return
	}
	k := [2]uint64{atou(f[1]), atou(f[2])}
	r.mu.Lock()
	if r.ran[k] {
		r.dups = append(r.dups, fmt.Sprintf("stream %d seq %d ran twice", k[0], k[1]))
	}
	r.ran[k] = true
	r.mu.Unlock()
}

func (r *ranLog) has(stream uint32, seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ran[[2]uint64{uint64(stream), seq}]
}

// startEchoAgent runs an echo agent in this process on x until the test
// ends, and returns its id.
func startEchoAgent(t testing.TB, x exchange.Exchange, opts ...agent.Option) exchange.EntityID {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts = append([]agent.Option{agent.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	rt, err := agent.NewRuntime(ctx, x, echoBehavior(false, 0), opts...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		rt.Shutdown()
		cancel()
		select {
		case <-done:
		case <-time.After(bound(callHang)):
			t.Error("the echo agent did not stop")
		}
	})
	return rt.ID()
}

// callOutcome is what became of one call of a trial.
type callOutcome struct {
	stream uint32
	seq    uint64
	sent   time.Time
	done   time.Time
	err    error
}

// TestCrashAgent kills agent processes while their actions run: each trial
// starts a child serving an agent whose actions take up to 20 ms, calls it
// from this process's client with futures pending (4 goroutines, up to 4
// each), and SIGKILLs it at a random moment. Then every call has ended,
// none hung: with the echoed record, whole, from an action the agent ran
// once, or with ErrAgentTerminated within the agent layer's documented
// bound of the kill (deadCallBound, load-scaled); no request ran twice; a
// call made after the kill fails within that bound; and the client's
// mailbox, into which the agent may have died writing a response, is not
// stuck: a call to a live agent through it answers within 2 s
// (load-scaled).
func TestCrashAgent(t *testing.T) {
	t.Parallel()
	c := newCampaign(t, "agent")
	live := startEchoAgent(t, c.x)
	c.keep(live)
	cl, err := agent.NewClient(context.Background(), c.x, agent.WithLogger(slog.New(slog.NewTextHandler(c.log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.keep(cl.ID())
	liveH := cl.Handle(live)
	var calls, failed atomic.Int64
	c.run(func(tr *trial) error {
		ran := newRanLog()
		k := tr.start("agent", ran.line, c.root, c.name)
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
			if err := tr.callDyingAgent(cl.Handle(id), k, ran, &calls, &failed); err != nil {
				return err
			}
		}
		// The client's mailbox is not stuck.
		return tr.callAfterKill(liveH, "echo", "the live agent")
	})
	c.done(map[string]any{"calls": calls.Load(), "calls_failed": failed.Load()})
}

// callDyingAgent calls the agent of child k through h from agentStreams
// goroutines until the agent dies, kills k at the trial's moment, and
// checks what became of every call.
func (tr *trial) callDyingAgent(h *agent.Handle, k *kid, ran *ranLog, calls, failed *atomic.Int64) error {
	var killAt atomic.Int64 // unix nanos, set just before the SIGKILL
	var mu sync.Mutex
	var outs []callOutcome
	var wg sync.WaitGroup
	hctx, cancel := context.WithTimeout(tr.ctx, bound(callHang))
	defer cancel()
	for s := range uint32(agentStreams) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			type pending struct {
				f    *agent.Future[[]byte]
				rec  []byte
				seq  uint64
				sent time.Time
			}
			var queue []pending
			finish := func(p pending) bool {
				res, err := p.f.Wait(hctx)
				o := callOutcome{stream: s, seq: p.seq, sent: p.sent, done: time.Now(), err: err}
				if err == nil && !bytes.Equal(res, p.rec) {
					o.err = fmt.Errorf("%w: result of %d bytes is not the %d-byte record sent", errTorn, len(res), len(p.rec))
				}
				mu.Lock()
				outs = append(outs, o)
				mu.Unlock()
				return err == nil
			}
			rng := childRand()
			var body []byte
			for seq := uint64(0); ; seq++ {
				body = patternBody(body[:0], rng.IntN(512), s, seq)
				rec := appendRecord(nil, tr.id, s, seq, body)
				sent := time.Now()
				f, err := h.ActionRaw(hctx, "echo", rec)
				if err != nil {
					mu.Lock()
					outs = append(outs, callOutcome{stream: s, seq: seq, sent: sent, done: time.Now(), err: err})
					mu.Unlock()
					break
				}
				queue = append(queue, pending{f, rec, seq, sent})
				if len(queue) >= agentDepth {
					ok := finish(queue[0])
					queue = queue[1:]
					if !ok {
						break
					}
				}
			}
			for _, p := range queue {
				finish(p)
			}
		}()
	}
	time.Sleep(tr.delay)
	killAt.Store(time.Now().UnixNano())
	if err := k.kill(); err != nil {
		return err
	}
	wg.Wait()
	// A call made after the kill fails too, within the bound.
	start := time.Now()
	f, err := h.ActionRaw(hctx, "echo", appendRecord(nil, tr.id, sentinel, 1, nil))
	if err == nil {
		_, err = f.Wait(hctx)
	}
	if !errors.Is(err, agent.ErrAgentTerminated) {
		return fmt.Errorf("call to the dead agent: %v, want ErrAgentTerminated", err)
	}
	if d := time.Since(start); d > bound(deadCallBound) {
		return fmt.Errorf("call to the dead agent failed after %v, over the bound %v (load-scaled %v)", d, deadCallBound, bound(deadCallBound))
	} else {
		tr.noteFail(d)
	}
	h.Close(hctx)

	kill := time.Unix(0, killAt.Load())
	var errs []string
	var nOK int64
	for _, o := range outs {
		calls.Add(1)
		switch {
		case o.err == nil:
			nOK++
			if !ran.has(o.stream, o.seq) {
				errs = append(errs, fmt.Sprintf("stream %d seq %d: a result, but the agent never reported running it", o.stream, o.seq))
			}
		case errors.Is(o.err, agent.ErrAgentTerminated):
			failed.Add(1)
			from := kill
			if o.sent.After(from) {
				from = o.sent
			}
			d := o.done.Sub(from)
			if d > bound(deadCallBound) {
				errs = append(errs, fmt.Sprintf("stream %d seq %d failed %v after the kill (or its send), over the bound %v (load-scaled %v)", o.stream, o.seq, d, deadCallBound, bound(deadCallBound)))
			}
			tr.noteFail(max(d, 0))
			if o.done.Before(kill.Add(-time.Millisecond)) {
				errs = append(errs, fmt.Sprintf("stream %d seq %d failed before the kill: %v", o.stream, o.seq, o.err))
			}
		default:
			errs = append(errs, fmt.Sprintf("stream %d seq %d: %v (want a result or ErrAgentTerminated)", o.stream, o.seq, o.err))
		}
	}
	ran.mu.Lock()
	errs = append(errs, ran.dups...)
	ran.mu.Unlock()
	if len(errs) > 0 {
		return errorsOf("calls", errs)
	}
	tr.noteMessages(nOK)
	return nil
}
