package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// A runtime serves its mailbox with a leader/followers pool: one goroutine,
// the leader, receives; it runs the action of a request itself, inline (no
// goroutine hand-off), and answers pings and shutdowns. If an action runs
// long, another goroutine is made leader and takes over receiving, so
// that pings, shutdowns and the responses to the agent's own handles keep
// flowing; the former leader finishes its action and parks as a follower.
//
// An action runs long when it runs over handoffDelay: a timer armed for
// each run says so. An action that ended within the delay quickRuns times
// in a row runs without the timer (arming and stopping one costs about as
// much as the rest of the agent's side of a call), and a watchdog looks at
// the runtimes that run such actions once per watchdogTick: an action it
// finds running at two ticks in a row is handed off the same way (and
// timed again from then on). A quick action that turns slow delays the
// mailbox by at most about two ticks.
//
// Worker states (worker.state): a leader is stLead while it receives and
// dispatches and stBusy while it runs an action inline; a hand-off
// (handoff, under wmu) takes a stBusy leader to stFollow and promotes
// another. The leader leaves stBusy with a CAS back to stLead, which fails
// when it was handed off.
//
// Leader/followers invariants (under wmu): at most one worker is stLead or
// stBusy, and only it calls mb.Recv or RecvBatch and touches the inbox
// (see inbox; the drain after serving ends starts only once servingDone
// is closed, when none is); running never exceeds a
// non-zero maxConcurrency; a request is queued only when no slot was free
// or others were queued before it, and started in queue order, by a
// goroutine holding a slot (see finishSlot for why none is stranded).

// handoffDelay is how long the leader runs an action inline before another
// goroutine takes over receiving: short actions cost no goroutine switch,
// and a long one (or one that waits for a response to the agent's own
// handles, which the next leader receives) delays the mailbox by at most
// this much.
const handoffDelay = 50 * time.Microsecond

// quickRuns is how many runs in a row within handoffDelay make an action
// quick: its next runs go without the hand-off timer.
const quickRuns = 16

// maxIdleWorkers is how many idle action workers a runtime without a
// concurrency bound keeps for the next burst.
const maxIdleWorkers = 16

// worker is one serving goroutine.
type worker struct {
	state   atomic.Int32  // stFollow, stLead or stBusy
	busySeq atomic.Uint64 // counts the leader's inline runs, for the watchdog
	wake    chan struct{} // a parked follower is woken here (capacity 1)
	timer   *time.Timer   // hands leadership off when an inline action runs long
}

const (
	stFollow = iota // not the leader
	stLead          // the leader, receiving or dispatching
	stBusy          // the leader, running an action inline
)

// promoteLocked makes a goroutine the leader: a parked follower, or a new
// one. r.wmu must be held.
func (r *Runtime) promoteLocked() {
	if r.stopped {
		return
	}
	if n := len(r.followers); n > 0 {
		w := r.followers[n-1]
		r.followers = r.followers[:n-1]
		w.state.Store(stLead)
		r.leader.Store(w)
		w.wake <- struct{}{}
		return
	}
	w := &worker{wake: make(chan struct{}, 1)}
	w.state.Store(stLead)
	w.timer = time.AfterFunc(time.Hour, func() { r.handoff(w) })
	w.timer.Stop()
	r.leader.Store(w)
	r.wwg.Add(1)
	go r.serveLoop(w)
}

// handoff makes another goroutine the leader if w is a leader running an
// action inline (from w's timer, or the watchdog).
func (r *Runtime) handoff(w *worker) {
	r.wmu.Lock()
	if !r.stopped && w.state.CompareAndSwap(stBusy, stFollow) {
		r.promoteLocked()
	}
	r.wmu.Unlock()
}

// endServingLocked marks the end of serving. r.wmu must be held.
func (r *Runtime) endServingLocked(w *worker) {
	w.state.Store(stFollow)
	if !r.stopped {
		r.stopped = true
		for _, f := range r.followers {
			close(f.wake)
		}
		r.followers = nil
		r.leader.Store(nil)
		close(r.servingDone)
	}
}

// serveBatch is how many messages the leader takes from a mailbox that
// receives in batches (exchange.BatchReceiver) in one receive: the
// mailbox's lock, fault guard and ring bookkeeping are paid once per
// batch.
const serveBatch = 16

// inbox holds the messages the leader received and has not dispatched
// yet: bufs[next:n], in the order they came; err is bufs[n-1]'s (received,
// but not whole). Every other buffer reads "nothing received" (clean).
//
// Only the current leader touches the inbox, without a lock; leadership
// passes it on with a happens-before edge each way it can pass:
//   - hand-off: the leader takes its message out of the inbox (next++)
//     before runAction stores stBusy; handoff's CAS from stBusy reads that
//     store, and promotes the next leader under wmu, which starts it with
//     a go statement or wakes it with a send on its wake channel, which it
//     receives before it reads the inbox. The former leader's CAS back to
//     stLead fails, and it never touches the inbox again unless promoted
//     the same way.
//   - end of serving: the leader that ends it (stopped, under wmu) answers
//     what is left in the inbox; none is promoted after, and Run reads
//     the inbox only after wwg.Wait.
//
// So a slow action never holds the messages received behind it: its
// leader took it out before running it, and the next leader continues
// from the inbox before it receives again.
type inbox struct {
	batch   exchange.BatchReceiver // the mailbox's, or nil: one Recv at a time
	bufs    []*exchange.Message    // serveBatch of them with batch, else 1
	next, n int
	err     error
}

// initInbox sets the inbox up for r.mb (before the first leader starts).
func (r *Runtime) initInbox() {
	in := &r.in
	in.batch, _ = r.mb.(exchange.BatchReceiver)
	if !r.o.terminateOnExit {
		// A request not taken when the runtime stops stays in the mailbox
		// for the next runtime with this id (WithTerminateOnExit): a
		// batch would have taken it out.
		in.batch = nil
	}
	size := 1
	if in.batch != nil {
		size = serveBatch
	}
	in.bufs = make([]*exchange.Message, size)
	for i := range in.bufs {
		in.bufs[i] = recycled(nil)
	}
}

// receive fills the (empty) inbox: what is in the mailbox, at least one
// message, at most len(bufs). It returns the error of the receive when
// nothing was received.
func (r *Runtime) receive() error {
	in := &r.in
	n, err := recvInto(r.sctx, r.mb, in.batch, in.bufs)
	if n == 0 {
		clean(in.bufs[0]) // what did decode of it
		return err
	}
	in.next, in.n, in.err = 0, n, err
	return nil
}

// take takes the next message out of the inbox, putting spare, made
// clean, in its place; it returns the message and its error (received,
// but not whole).
func (r *Runtime) take(spare *exchange.Message) (*exchange.Message, error) {
	in := &r.in
	i := in.next
	m := in.bufs[i]
	var err error
	if i == in.n-1 {
		err, in.err = in.err, nil
	}
	in.bufs[i] = recycled(spare) // do not keep large buffers
	in.next++
	return m, err
}

// serveLoop is a serving goroutine: it leads (receives and dispatches)
// while it is the leader, runs actions, and parks as a follower otherwise.
// Its Message, m, is its spare buffer: it trades it for the message it
// takes out of the inbox, which is the request and then the response,
// and which it keeps as its spare after: an inline action costs no buffer
// from a pool.
func (r *Runtime) serveLoop(w *worker) {
	defer r.wwg.Done()
	defer w.timer.Stop()
	m := getMsg()
	defer func() { putMsg(m) }()
	for r.follow(w) {
		// Leading: the inbox is ours.
		if r.in.next == r.in.n {
			err := r.receive()
			if errors.Is(err, exchange.ErrBadMessage) {
				r.o.log.Warn("agent: dropped a bad message", "agent", r.ep.id, "err", err)
				continue
			}
			if err != nil {
				if r.sctx.Err() == nil {
					r.o.log.Debug("agent: mailbox closed", "agent", r.ep.id, "err", err)
					r.requestStop(false)
				}
				r.endServing(w)
				return
			}
		}
		if r.sctx.Err() != nil {
			// Asked to stop with messages in the inbox: they are
			// answered as those that arrive after serving ends.
			r.endServing(w)
			return
		}
		var err error
		m, err = r.take(m)
		if err != nil {
			m = r.receivedBroken(m, err)
			continue
		}
		switch m.Kind {
		case exchange.KindActionRequest:
			if r.o.maxConcurrency > 0 && !r.takeSlot() {
				r.enqueue(m)
				m = getMsg()
				if r.takeQueuedSlot() {
					r.finishSlot(w)
				}
				continue
			}
			r.runAction(w, m)
			if r.o.maxConcurrency > 0 {
				r.finishSlot(w)
			}
		case exchange.KindPingRequest:
			m.SetResponse(m, nil)
			r.respond(m)
		case exchange.KindShutdownRequest:
			term := m.Terminate
			m.SetResponse(m, nil)
			r.respond(m)
			r.requestStop(term)
			r.endServing(w)
			return
		default: // a response to one of the agent's own handles
			m = r.ep.deliver(m)
		}
	}
}

// endServing ends serving from the leader w, then answers what is left in
// the inbox as drain answers what arrives after serving ends: requests
// with ErrorKindShuttingDown (their responses wait at most responseGrace,
// which Run starts once serving ended), responses to their calls. Nothing
// received is dropped unanswered.
func (r *Runtime) endServing(w *worker) {
	r.wmu.Lock()
	r.endServingLocked(w)
	r.wmu.Unlock()
	if r.in.next == r.in.n {
		return
	}
	spare := getMsg()
	for r.in.next < r.in.n {
		m, err := r.take(spare)
		switch {
		case err != nil:
			m = r.receivedBroken(m, err)
		case m.Kind.IsRequest():
			r.answerShuttingDown(m)
		default:
			m = r.ep.deliver(m)
		}
		spare = m
	}
	putMsg(spare)
}

// answerShuttingDown answers the request m, received after serving ended,
// with ErrorKindShuttingDown.
func (r *Runtime) answerShuttingDown(m *exchange.Message) {
	m.SetErrorResponse(m, &exchange.RemoteError{Kind: ErrorKindShuttingDown, Message: "agent " + r.ep.id.String() + " is shutting down"})
	r.respond(m)
}

// receivedBroken handles a message received with the error err: one of
// which nothing decoded is dropped (logged); of one received but not whole
// (its payload did not resolve, it did not decode whole), a request is
// answered with an error that says so, a response fails its call. It
// returns the Message to receive into next.
func (r *Runtime) receivedBroken(m *exchange.Message, err error) *exchange.Message {
	if m.Kind == exchange.KindInvalid {
		r.o.log.Warn("agent: dropped a bad message", "agent", r.ep.id, "err", err)
		return m
	}
	r.o.log.Debug("agent: a message could not be received whole", "agent", r.ep.id, "kind", m.Kind, "err", err)
	switch {
	case m.Kind == exchange.KindActionRequest:
		m.SetErrorResponse(m, &exchange.RemoteError{Kind: ErrorKindBadArguments, Message: fmt.Sprintf("action %q: the request could not be received: %v", m.Action, err)})
		r.respond(m)
	case m.Kind.IsRequest():
		m.SetErrorResponse(m, fmt.Errorf("the request could not be received: %w", err))
		r.respond(m)
	case m.Kind.IsResponse():
		r.ep.mu.Lock()
		next, _ := r.ep.deliverLocked(m, err)
		r.ep.mu.Unlock()
		if next != nil {
			return next
		}
	}
	return m
}

// follow returns true at once when w leads; otherwise it parks w until it
// is made leader (true) or serving ends (false).
func (r *Runtime) follow(w *worker) bool {
	if w.state.Load() == stLead {
		return true
	}
	r.wmu.Lock()
	if r.stopped || len(r.followers) >= maxIdleWorkers {
		r.wmu.Unlock()
		return false
	}
	r.followers = append(r.followers, w)
	r.wmu.Unlock()
	_, ok := <-w.wake
	return ok
}

// takeSlot takes one of the maxConcurrency running slots for a request
// just received, unless none is free or requests are queued (they go
// first).
func (r *Runtime) takeSlot() bool {
	if r.qlen.Load() != 0 {
		return false
	}
	return r.takeQueuedSlot()
}

// takeQueuedSlot takes a running slot, if one is free, to run queued
// requests with.
func (r *Runtime) takeQueuedSlot() bool {
	for {
		n := r.running.Load()
		if n >= int32(r.o.maxConcurrency) {
			return false
		}
		if r.running.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// enqueue queues the action request m until a slot frees.
func (r *Runtime) enqueue(m *exchange.Message) {
	r.wmu.Lock()
	r.queue = append(r.queue, m)
	r.qlen.Add(1)
	r.wmu.Unlock()
}

// dequeue returns the first queued request, or nil (also once serving
// ended: Run answers what is left).
func (r *Runtime) dequeue() *exchange.Message {
	if r.qlen.Load() == 0 {
		return nil
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.stopped || r.qhead == len(r.queue) {
		return nil
	}
	m := r.queue[r.qhead]
	r.queue[r.qhead] = nil
	if r.qhead++; r.qhead == len(r.queue) {
		r.queue, r.qhead = r.queue[:0], 0
	}
	r.qlen.Add(-1)
	return m
}

// finishSlot runs the queued requests with the slot its caller holds,
// while there are any, then gives the slot back. The queue is never
// stranded: a request is queued (qlen raised) before its receiver tries
// for a slot, and a slot is given back (running lowered) before its holder
// looks at qlen again; of the two, at least one sees the other's write.
func (r *Runtime) finishSlot(w *worker) {
	for {
		for m := r.dequeue(); m != nil; m = r.dequeue() {
			r.runAction(w, m)
			putMsg(m)
		}
		r.running.Add(-1)
		if r.qlen.Load() == 0 || !r.takeQueuedSlot() {
			return
		}
	}
}

// runAction runs the action of request m and sends the response, in m. A
// leader runs it inline: timed by its hand-off timer, or watched by the
// watchdog once the action is quick.
func (r *Runtime) runAction(w *worker, m *exchange.Message) {
	// The action last run, most often the one asked for again: a string
	// comparison instead of hashing the name.
	a := r.lastAction.Load()
	if a == nil || a.name != string(m.Action) {
		if a = r.b.actions[string(m.Action)]; a != nil {
			r.lastAction.Store(a)
		}
	}
	if a == nil {
		m.SetErrorResponse(m, &exchange.RemoteError{Kind: ErrorKindUnknownAction, Message: unknownActionMessage(r.b, string(m.Action))}) // explain.go
		r.respond(m)
		return
	}
	lead := w.state.Load() == stLead
	timed := false
	if lead {
		timed = a.quick.Load() < quickRuns
		w.busySeq.Add(1)
		w.state.Store(stBusy)
		if timed {
			w.timer.Reset(handoffDelay)
		} else if !r.watched.Load() {
			r.watch()
		}
	}
	res, err := r.invoke(a, m)
	if err != nil {
		m.SetErrorResponse(m, err)
	} else {
		// res was appended to m.Result's buffer: keep it in place rather
		// than have SetResponse copy it onto itself.
		m.SetResponse(m, nil)
		m.Result = res
	}
	r.respond(m)
	if lead {
		ontime := true
		if timed {
			ontime = w.timer.Stop()
		}
		if !w.state.CompareAndSwap(stBusy, stLead) {
			ontime = false // handed off
		}
		switch {
		case !ontime:
			a.quick.Store(0)
		case timed:
			a.quick.Add(1)
		}
	}
}

func (r *Runtime) invoke(a *action, m *exchange.Message) (res []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.o.log.Warn("agent: action panicked", "agent", r.ep.id, "action", a.name, "panic", p, "stack", string(debug.Stack()))
			err = &exchange.RemoteError{Kind: ErrorKindActionPanic, Message: fmt.Sprintf("action %q: %v", a.name, p)}
		}
	}()
	return a.h(r.actx, m.Args, m.Result[:0])
}

// respond sends the response m. A result that cannot be sent (too large
// for the requester's mailbox, or refused by a wrapping exchange) is
// answered with an error response that names the action and the size, so
// that its caller is never left waiting. Once the agent shuts down, a
// response waits at most responseGrace for room in a full mailbox.
//
// When the exchange is an [exchange.AsyncSender], the response is queued
// with SendAsync and not waited for (its failures are the exchange's to
// log); Run flushes them before it returns.
func (r *Runtime) respond(m *exchange.Message) {
	ctx := r.sendCtx
	err := r.ep.sendResponse(ctx, m)
	if err == nil {
		return
	}
	if m.Kind == exchange.KindActionResponse && !m.IsError() && unsendable(ctx, err) {
		re := &exchange.RemoteError{Kind: exchange.ErrorKindGeneric}
		if errors.Is(err, exchange.ErrMessageTooLarge) {
			re.Kind = ErrorKindResultTooLarge
		}
		re.Message = fmt.Sprintf("action %q: its result of %d bytes could not be sent to %v: %v", m.Action, len(m.Result), m.Dest, err)
		r.o.log.Debug("agent: answering with an error", "agent", r.ep.id, "err", re)
		m.SetError(re)
		if err = r.ep.sendResponse(ctx, m); err == nil {
			return
		}
	}
	level := slog.LevelDebug
	if ctx.Err() != nil || unsendable(ctx, err) {
		level = slog.LevelWarn // dropped: the requester's mailbox stayed full at shutdown, or takes nothing from us
	}
	r.o.log.Log(ctx, level, "agent: could not send a response", "agent", r.ep.id, "to", m.Dest, "err", err)
}

// unsendable reports whether err says that a message cannot be sent at
// all, rather than that its destination is gone or the wait ended.
func unsendable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, exchange.ErrMailboxClosed) && !errors.Is(err, exchange.ErrBadEntityID) &&
		!errors.Is(err, exchange.ErrExchangeClosed) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func (r *Runtime) answerErr(m *exchange.Message, err error) {
	m.SetErrorResponse(m, err)
	r.respond(m)
	putMsg(m)
}

// drain receives from the terminated mailbox until it is empty and closed:
// responses go to their calls, requests (none should be left) are answered.
func (r *Runtime) drain(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	m := getMsg()
	for {
		m.Kind, m.Tag = exchange.KindInvalid, exchange.UUID{}
		err := r.mb.Recv(ctx, m)
		if err != nil && (m.Kind != exchange.KindInvalid || errors.Is(err, exchange.ErrBadMessage)) {
			m = r.receivedBroken(m, err)
			continue
		}
		if err != nil {
			putMsg(m)
			return
		}
		if m.Kind.IsRequest() {
			r.answerShuttingDown(m)
		} else {
			m = r.ep.deliver(m)
		}
	}
}

// safeHook runs a hook, turning a panic into an error.
func safeHook(ctx context.Context, fn Hook) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrActionPanic, p)
		}
	}()
	return fn(ctx)
}

// watchdogTick is the period at which the watchdog looks at the leaders
// that run quick actions without a timer.
const watchdogTick = time.Millisecond

// watchdogIdleTicks is how many ticks without an inline run make the
// watchdog drop a runtime from its set (it joins again at its next run).
const watchdogIdleTicks = 100

// watchdog is the process's one watchdog goroutine and the runtimes it
// watches: while any runs quick actions inline, it ticks; it stops when its
// set is empty.
var watchdog struct {
	mu      sync.Mutex
	rts     map[*Runtime]*watchState
	running bool
}

// watchState is what the watchdog saw of a runtime at its last tick.
type watchState struct {
	w    *worker
	seq  uint64
	busy bool
	idle int
}

// watch puts r in the watchdog's set.
func (r *Runtime) watch() {
	watchdog.mu.Lock()
	defer watchdog.mu.Unlock()
	if r.watched.Load() {
		return
	}
	r.watched.Store(true)
	if watchdog.rts == nil {
		watchdog.rts = map[*Runtime]*watchState{}
	}
	watchdog.rts[r] = &watchState{}
	if !watchdog.running {
		watchdog.running = true
		go runWatchdog()
	}
}

// unwatch takes r out of the watchdog's set (serving ended).
func (r *Runtime) unwatch() {
	watchdog.mu.Lock()
	delete(watchdog.rts, r)
	r.watched.Store(false)
	watchdog.mu.Unlock()
}

func runWatchdog() {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	var stuck []*Runtime
	for range t.C {
		watchdog.mu.Lock()
		for r, st := range watchdog.rts {
			w := r.leader.Load()
			var seq uint64
			busy := false
			if w != nil {
				seq = w.busySeq.Load()
				busy = w.state.Load() == stBusy
			}
			same := w == st.w && seq == st.seq
			if same && busy && st.busy {
				stuck = append(stuck, r) // the same inline run at two ticks
			}
			if same {
				st.idle++
			} else {
				st.idle = 0
			}
			st.w, st.seq, st.busy = w, seq, busy
			if st.idle >= watchdogIdleTicks && !busy {
				// Dekker with runAction, which counts the run, then looks
				// at watched: a run counted before the store below is
				// seen in the look after it.
				r.watched.Store(false)
				if w2 := r.leader.Load(); w2 == w && (w == nil || w.busySeq.Load() == seq) {
					delete(watchdog.rts, r)
				} else {
					r.watched.Store(true)
					st.idle = 0
				}
			}
		}
		done := len(watchdog.rts) == 0
		if done {
			watchdog.running = false
		}
		watchdog.mu.Unlock()
		for _, r := range stuck {
			if w := r.leader.Load(); w != nil {
				r.handoff(w)
			}
		}
		clear(stuck)
		stuck = stuck[:0]
		if done {
			return
		}
	}
}
