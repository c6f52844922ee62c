package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

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

	// Serving goroutines (leader/followers, see serve.go).
	wmu         sync.Mutex
	queue       []*exchange.Message // guarded by wmu: action requests waiting for a slot
	qhead       int                 // guarded by wmu
	qlen        atomic.Int32        // len(queue) - qhead
	running     atomic.Int32        // actions holding a slot (with a concurrency bound)
	stopped     bool                // guarded by wmu: serving ended, no leader any more
	followers   []*worker           // guarded by wmu: parked, waiting to lead
	leader      atomic.Pointer[worker]
	lastAction  atomic.Pointer[action] // the action last run (a look-up cache)
	watched     atomic.Bool            // in the watchdog's set
	in          inbox                  // the leader's: received, not dispatched yet
	servingDone chan struct{}
	wwg         sync.WaitGroup // serving goroutines
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
// [WithLogger], [WithStatusPoll], [WithTerminatedGrace], [WithIdle].
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
	mb, err := openMailbox(ctx, x, id, &o) // blob.go: proxies stay in place for the decoders
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
// waits for them, and runs the shutdown hook; on an exchange that sends
// responses without waiting ([exchange.AsyncSender]), it then waits for
// them to be sent or to fail. It returns the setup hook's
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
			log.Debug("agent: setup failed", "err", err) // Run returns it
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
			if r.o.terminateOnErr {
				log.Debug("agent: control loop failed; stopping", "loop", l.name, "err", err) // Run returns it
				r.fail(fmt.Errorf("agent %v: loop %q: %w", r.ep.id, l.name, err))
				return
			}
			log.Warn("agent: control loop failed", "loop", l.name, "err", err)
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
	r.initInbox()
	r.wmu.Lock()
	r.promoteLocked()
	r.wmu.Unlock()
	<-r.servingDone
	scancel()
	r.unwatch()

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
	r.qlen.Store(0)
	r.wmu.Unlock()
	for _, m := range rest {
		r.answerErr(m, &exchange.RemoteError{Kind: ErrorKindShuttingDown, Message: "agent " + r.ep.id.String() + " is shutting down"})
	}
	r.wwg.Wait()
	for _, m := range r.in.bufs { // answered by the last leader (endServing)
		putMsg(m)
	}
	r.in.bufs = nil

	// 4. Stop the loops.
	lcancel()
	loops.Wait()

	// 5. The shutdown hook.
	if r.b.shutdown != nil {
		if err := safeHook(base, r.b.shutdown); err != nil {
			log.Warn("agent: shutdown hook failed", "err", err)
		}
	}
	r.ep.close(fmt.Errorf("%w: agent stopped", ErrHandleClosed))
	r.mb.Close()
	<-drained
	// 6. The responses queued without waiting (exchange.AsyncSender): sent
	// or failed (and logged by the exchange) before Run returns, within
	// responseGrace, as a response sent waiting is.
	if r.ep.async != nil {
		fctx, cancel := context.WithTimeout(base, r.o.responseGrace)
		if err := r.ep.async.Flush(fctx); err != nil {
			log.Debug("agent: a response queued without waiting failed", "err", err)
		}
		cancel()
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loopErr
}
