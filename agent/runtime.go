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

// maxIdleWorkers is how many idle action workers a runtime without a
// concurrency bound keeps for the next burst.
const maxIdleWorkers = 16

// Runtime runs one agent: it owns the agent's mailbox, runs the behavior's
// setup hook, starts its control loops, serves requests (actions on a
// bounded pool of worker goroutines, pings and shutdowns inline), and routes
// responses to the handles its actions made with [Runtime.Handle]. Make it
// with [NewRuntime] and call [Runtime.Run] once.
type Runtime struct {
	b  *Behavior
	o  options
	ep *endpoint
	mb exchange.Mailbox

	started  atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu        sync.Mutex
	termAsked bool  // a shutdown request asked to terminate the mailbox
	loopErr   error // first loop error that stopped the agent

	actx    context.Context // actions' context, cancelled at shutdown
	sendCtx context.Context // for responses: ends responseGrace after shutdown begins

	sctx context.Context // the serving context, cancelled by a stop request

	// Serving goroutines (leader/followers, see lead); guarded by wmu.
	wmu         sync.Mutex
	queue       []*exchange.Message // action requests waiting for a slot
	qhead       int
	running     int       // actions running
	stopped     bool      // serving ended: no leader any more
	followers   []*worker // parked, waiting to lead
	servingDone chan struct{}
	wwg         sync.WaitGroup // serving goroutines
}

// worker is one serving goroutine's state, guarded by Runtime.wmu.
type worker struct {
	leading bool          // this goroutine is (or is to become) the receiver
	busy    bool          // the leader is running an action inline
	wake    chan struct{} // a parked follower is woken here (capacity 1)
	timer   *time.Timer   // hands leadership off when an inline action runs long
}

type runtimeKey struct{}

// FromContext returns the runtime that runs the action, loop or hook ctx
// was given to (to make handles bound to the agent's own mailbox with
// [Runtime.Handle]), or nil.
func FromContext(ctx context.Context) *Runtime {
	r, _ := ctx.Value(runtimeKey{}).(*Runtime)
	return r
}

// NewRuntime registers a new agent of behavior b in x (or, with
// [WithAgentID], takes over that agent's mailbox, registering it when
// missing) and opens its mailbox. Options: [WithAgentID], [WithName],
// [WithMaxConcurrency], [WithTerminateOnExit], [WithTerminateOnError],
// [WithLogger], [WithStatusPoll], [WithTerminatedGrace].
func NewRuntime(ctx context.Context, x exchange.Exchange, b *Behavior, opts ...Option) (*Runtime, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil behavior", exchange.ErrInvalidArgument)
	}
	o := applyOptions(opts)
	var ropts []exchange.RegisterOption
	if o.name != "" {
		ropts = append(ropts, exchange.WithName(o.name))
	}
	id := o.agentID
	register := true
	if !id.IsZero() {
		st, err := x.Status(ctx, id)
		if err != nil {
			return nil, err
		}
		switch st {
		case exchange.StatusTerminated:
			return nil, fmt.Errorf("%w: %v", ErrAgentTerminated, id)
		case exchange.StatusActive:
			register = false
		}
		ropts = append(ropts, exchange.WithID(id))
	}
	if register {
		var err error
		if id, err = x.RegisterAgent(ctx, b.Exchange(), ropts...); err != nil {
			return nil, err
		}
	}
	mb, err := openMailbox(ctx, x, id) // blob.go: proxies stay in place for the decoders
	if err != nil {
		if register {
			x.Terminate(context.WithoutCancel(ctx), id)
		}
		return nil, err
	}
	r := &Runtime{b: b, o: o, ep: newEndpoint(x, id, &o), mb: mb, stopCh: make(chan struct{}), done: make(chan struct{}), servingDone: make(chan struct{})}
	return r, nil
}

// ID returns the agent's id.
func (r *Runtime) ID() exchange.EntityID { return r.ep.id }

// Behavior returns the behavior the runtime runs.
func (r *Runtime) Behavior() *Behavior { return r.b }

// Exchange returns the exchange the agent is registered in.
func (r *Runtime) Exchange() exchange.Exchange { return r.ep.x }

// Handle returns a handle to the agent id bound to this agent's mailbox:
// its responses come back through the runtime's receive loop. It is valid
// while the runtime runs; its calls in flight fail when the runtime stops.
func (r *Runtime) Handle(id exchange.EntityID) *Handle { return newHandle(r.ep, fixedTarget(id)) }

// Shutdown asks the runtime to stop, as a shutdown request without
// Terminate would; it does not wait (see [Runtime.Done]).
func (r *Runtime) Shutdown() { r.requestStop(false) }

// Done returns a channel closed when Run has returned.
func (r *Runtime) Done() <-chan struct{} { return r.done }

func (r *Runtime) requestStop(terminate bool) {
	if terminate {
		r.mu.Lock()
		r.termAsked = true
		r.mu.Unlock()
	}
	r.stopOnce.Do(func() { close(r.stopCh) })
}

func (r *Runtime) fail(err error) {
	r.mu.Lock()
	if r.loopErr == nil {
		r.loopErr = err
	}
	r.mu.Unlock()
	r.requestStop(false)
}

// Run runs the agent until a shutdown request, [Runtime.Shutdown], a loop
// error (with [WithTerminateOnError]) or the end of ctx. It runs the setup
// hook, starts the loops and serves requests; then, in this order, it stops
// taking requests, terminates the mailbox (with [WithTerminateOnExit], or
// when the shutdown request asked for it), cancels the actions' context and
// waits for the running actions (requests queued behind the concurrency
// bound are answered with [ErrorKindShuttingDown]), stops the loops and
// waits for them, and runs the shutdown hook. It returns the setup hook's
// error, the loop error that stopped the agent, or nil. Run may be called
// once ([ErrNotRunning] after).
func (r *Runtime) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return ErrNotRunning
	}
	defer close(r.done)
	log := r.o.log.With("agent", r.ep.id, "behavior", r.b.name)
	base := context.WithValue(context.WithoutCancel(ctx), runtimeKey{}, r)
	// Sends consult their context only to wait for space in a full
	// mailbox: once sendCtx ends, a response still goes out when there is
	// room, and no longer waits when there is none.
	sendCtx, sendCancel := context.WithCancel(base)
	defer sendCancel()
	r.sendCtx = sendCtx
	actx, acancel := context.WithCancel(base)
	defer acancel()
	r.actx = actx
	lctx, lcancel := context.WithCancel(base)
	defer lcancel()

	if r.b.setup != nil {
		if err := safeHook(context.WithValue(ctx, runtimeKey{}, r), r.b.setup); err != nil {
			log.Error("agent: setup failed", "err", err)
			if r.o.terminateOnExit {
				r.ep.x.Terminate(base, r.ep.id)
			}
			r.ep.close(ErrHandleClosed)
			r.mb.Close()
			return fmt.Errorf("agent %v: setup: %w", r.ep.id, err)
		}
	}

	var loops sync.WaitGroup
	for _, l := range r.b.loops {
		loops.Add(1)
		go func() {
			defer loops.Done()
			err := safeHook(lctx, l.fn)
			if err == nil || lctx.Err() != nil {
				return
			}
			log.Error("agent: control loop failed", "loop", l.name, "err", err)
			if r.o.terminateOnErr {
				r.fail(fmt.Errorf("agent %v: loop %q: %w", r.ep.id, l.name, err))
			}
		}()
	}

	// Serve until asked to stop.
	sctx, scancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-r.stopCh:
		case <-sctx.Done():
		}
		scancel()
	}()
	r.sctx = sctx
	r.wmu.Lock()
	r.promoteLocked()
	r.wmu.Unlock()
	<-r.servingDone
	scancel()

	// 1. Stop taking requests (done), 2. terminate the mailbox.
	r.mu.Lock()
	terminate := r.o.terminateOnExit || r.termAsked
	r.mu.Unlock()
	drained := make(chan struct{})
	if terminate {
		if err := r.ep.x.Terminate(base, r.ep.id); err != nil {
			log.Warn("agent: terminating the mailbox failed", "err", err)
		}
		// Keep routing responses to the agent's own handles while the
		// running actions finish; answer stray requests.
		go r.drain(base, drained)
	} else {
		r.ep.close(fmt.Errorf("%w: agent stopped", ErrHandleClosed))
		close(drained)
	}

	// 3. Cancel the actions' context and wait for the running actions,
	// whose responses wait at most responseGrace for space in their
	// requesters' mailboxes.
	stopSends := time.AfterFunc(r.o.responseGrace, sendCancel)
	defer stopSends.Stop()
	acancel()
	r.wmu.Lock()
	rest := r.queue[r.qhead:]
	r.queue, r.qhead = nil, 0
	r.wmu.Unlock()
	for _, m := range rest {
		r.answerErr(m, &exchange.RemoteError{Kind: ErrorKindShuttingDown, Message: "agent " + r.ep.id.String() + " is shutting down"})
	}
	r.wwg.Wait()

	// 4. Stop the loops.
	lcancel()
	loops.Wait()

	// 5. The shutdown hook.
	if r.b.shutdown != nil {
		if err := safeHook(base, r.b.shutdown); err != nil {
			log.Error("agent: shutdown hook failed", "err", err)
		}
	}
	r.ep.close(fmt.Errorf("%w: agent stopped", ErrHandleClosed))
	r.mb.Close()
	<-drained

	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loopErr
}

// handoffDelay is how long the leader runs an action inline before another
// goroutine takes over receiving: short actions cost no goroutine switch,
// and a long one (or one that waits for a response to the agent's own
// handles, which the next leader receives) delays the mailbox by at most
// this much.
const handoffDelay = 50 * time.Microsecond

// promoteLocked makes a goroutine the leader: a parked follower, or a new
// one. r.wmu must be held.
//
// Leader/followers invariants (under wmu): at most one worker has leading
// set, and only it calls mb.Recv (the drain after serving ends is started
// only once servingDone is closed, when none has); running never exceeds a
// non-zero maxConcurrency; a queued request is started only by a goroutine
// that ends an action (keeping its slot), so the queue is never stranded
// while running > 0, and it is non-empty only while running ==
// maxConcurrency.
func (r *Runtime) promoteLocked() {
	if r.stopped {
		return
	}
	if n := len(r.followers); n > 0 {
		w := r.followers[n-1]
		r.followers = r.followers[:n-1]
		w.leading = true
		w.wake <- struct{}{}
		return
	}
	w := &worker{leading: true, wake: make(chan struct{}, 1)}
	w.timer = time.AfterFunc(time.Hour, func() { r.handoff(w) })
	w.timer.Stop()
	r.wwg.Add(1)
	go r.serveLoop(w)
}

// handoff runs when the leader w has been running an action inline for
// handoffDelay: another goroutine takes over receiving.
func (r *Runtime) handoff(w *worker) {
	r.wmu.Lock()
	if w.leading && w.busy {
		w.leading = false
		r.promoteLocked()
	}
	r.wmu.Unlock()
}

// endServingLocked marks the end of serving. r.wmu must be held.
func (r *Runtime) endServingLocked(w *worker) {
	w.leading = false
	if !r.stopped {
		r.stopped = true
		for _, f := range r.followers {
			close(f.wake)
		}
		r.followers = nil
		close(r.servingDone)
	}
}

// serveLoop is a serving goroutine: it leads (receives and dispatches)
// while it has leading, runs actions, and parks as a follower otherwise.
func (r *Runtime) serveLoop(w *worker) {
	defer r.wwg.Done()
	defer w.timer.Stop()
	m := r.ep.getMsg()
	defer func() { r.ep.putMsg(m) }()
	for {
		if !r.follow(w) {
			return
		}
		// Leading.
		err := r.mb.Recv(r.sctx, m)
		if errors.Is(err, exchange.ErrBadMessage) {
			r.o.log.Warn("agent: dropped a bad message", "agent", r.ep.id, "err", err)
			continue
		}
		if err != nil {
			if r.sctx.Err() == nil {
				r.o.log.Debug("agent: mailbox closed", "agent", r.ep.id, "err", err)
				r.requestStop(false)
			}
			r.wmu.Lock()
			r.endServingLocked(w)
			r.wmu.Unlock()
			return
		}
		switch m.Kind {
		case exchange.KindActionRequest:
			r.wmu.Lock()
			if r.o.maxConcurrency > 0 && r.running >= r.o.maxConcurrency {
				r.queue = append(r.queue, m)
				r.wmu.Unlock()
				m = r.ep.getMsg()
				continue
			}
			r.running++
			r.wmu.Unlock()
			r.runActions(w, m)
			m = r.ep.getMsg()
		case exchange.KindPingRequest:
			m.SetResponse(m, nil)
			r.sendResponse(m)
		case exchange.KindShutdownRequest:
			term := m.Terminate
			m.SetResponse(m, nil)
			r.sendResponse(m)
			r.requestStop(term)
			r.wmu.Lock()
			r.endServingLocked(w)
			r.wmu.Unlock()
			return
		default: // a response to one of the agent's own handles
			if r.ep.deliver(m) {
				m = r.ep.getMsg()
			}
		}
	}
}

// follow returns true at once when w leads; otherwise it parks w until it
// is made leader (true) or serving ends (false).
func (r *Runtime) follow(w *worker) bool {
	r.wmu.Lock()
	if w.leading {
		r.wmu.Unlock()
		return true
	}
	if r.stopped || len(r.followers) >= maxIdleWorkers {
		r.wmu.Unlock()
		return false
	}
	r.followers = append(r.followers, w)
	r.wmu.Unlock()
	_, ok := <-w.wake
	return ok
}

// runActions runs the action request m, holding one of the running slots,
// then the queued requests while there are any, and gives the slot back.
// The leader's timer hands leadership off if an action runs long.
func (r *Runtime) runActions(w *worker, m *exchange.Message) {
	for {
		r.wmu.Lock()
		w.busy = true
		lead := w.leading
		r.wmu.Unlock()
		if lead {
			w.timer.Reset(handoffDelay)
		}
		r.runAction(m)
		if lead {
			w.timer.Stop()
		}
		r.wmu.Lock()
		w.busy = false
		if r.stopped || r.qhead == len(r.queue) {
			r.running--
			r.wmu.Unlock()
			return
		}
		m = r.queue[r.qhead]
		r.queue[r.qhead] = nil
		if r.qhead++; r.qhead == len(r.queue) {
			r.queue, r.qhead = r.queue[:0], 0
		}
		r.wmu.Unlock()
	}
}

// drain receives from the terminated mailbox until it is empty and closed:
// responses go to their calls, requests (none should be left) are answered.
func (r *Runtime) drain(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	m := r.ep.getMsg()
	for {
		err := r.mb.Recv(ctx, m)
		if errors.Is(err, exchange.ErrBadMessage) {
			continue
		}
		if err != nil {
			return
		}
		if m.Kind.IsRequest() {
			m.SetErrorResponse(m, &exchange.RemoteError{Kind: ErrorKindShuttingDown, Message: "agent " + r.ep.id.String() + " is shutting down"})
			r.sendResponse(m)
		} else if r.ep.deliver(m) {
			m = r.ep.getMsg()
		}
	}
}

func (r *Runtime) sendResponse(m *exchange.Message) {
	ctx := r.sendCtx
	if err := r.ep.x.Send(ctx, m); err != nil {
		level := slog.LevelDebug
		if ctx.Err() != nil {
			level = slog.LevelWarn // dropped at shutdown: the requester's mailbox stayed full
		}
		r.o.log.Log(ctx, level, "agent: could not send a response", "agent", r.ep.id, "to", m.Dest, "err", err)
	}
}

func (r *Runtime) answerErr(m *exchange.Message, err error) {
	m.SetErrorResponse(m, err)
	r.sendResponse(m)
	r.ep.putMsg(m)
}

// runAction runs the action of request m and sends the response.
func (r *Runtime) runAction(m *exchange.Message) {
	h := r.b.actions[string(m.Action)]
	if h == nil {
		r.answerErr(m, &exchange.RemoteError{Kind: ErrorKindUnknownAction, Message: fmt.Sprintf("behavior %q has no action %q", r.b.name, m.Action)})
		return
	}
	res, err := r.invoke(h, m)
	if err != nil {
		m.SetErrorResponse(m, err)
	} else {
		// res was appended to m.Result's buffer: keep it in place rather
		// than have SetResponse copy it onto itself.
		m.SetResponse(m, nil)
		m.Result = res
	}
	r.sendResponse(m)
	r.ep.putMsg(m)
}

func (r *Runtime) invoke(h handler, m *exchange.Message) (res []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.o.log.Error("agent: action panicked", "agent", r.ep.id, "action", string(m.Action), "panic", p, "stack", string(debug.Stack()))
			err = &exchange.RemoteError{Kind: ErrorKindActionPanic, Message: fmt.Sprintf("action %q: %v", m.Action, p)}
		}
	}()
	return h(r.actx, m.Args, m.Result[:0])
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
