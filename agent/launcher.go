package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Factory makes a fresh Behavior, with fresh state, for one run of an
// agent; a launcher calls it again for every restart.
type Factory func() (*Behavior, error)

var behaviors = struct {
	sync.RWMutex
	m map[string]registered // config.go
}{m: map[string]registered{}}

// RegisterBehavior registers the factory of the behavior called name, so
// that launchers can start agents of it by name, in this process or in a
// child process that runs [ServeIfChild]. Register every behavior at
// program start (in init or at the top of main, before ServeIfChild), the
// same way in the parent and its children. [ErrDuplicate] when name is
// taken. A behavior whose agents take a configuration at launch is
// registered with [RegisterBehaviorConfig].
func RegisterBehavior(name string, f Factory) error {
	if f == nil {
		return fmt.Errorf("%w: RegisterBehavior needs a name and a factory", exchange.ErrInvalidArgument)
	}
	return register(name, registered{build: func([]byte) (*Behavior, error) { return f() }})
}

func register(name string, r registered) error {
	if name == "" {
		return fmt.Errorf("%w: RegisterBehavior needs a name and a factory", exchange.ErrInvalidArgument)
	}
	behaviors.Lock()
	defer behaviors.Unlock()
	if _, ok := behaviors.m[name]; ok {
		return fmt.Errorf("%w: behavior %q", ErrDuplicate, name)
	}
	behaviors.m[name] = r
	return nil
}

// LookupBehavior returns the factory registered under name (for a
// behavior registered with [RegisterBehaviorConfig], one that makes it
// with the zero configuration).
func LookupBehavior(name string) (Factory, bool) {
	behaviors.RLock()
	defer behaviors.RUnlock()
	r, ok := behaviors.m[name]
	if !ok {
		return nil, false
	}
	return func() (*Behavior, error) { return r.build(nil) }, true
}

// RegisteredBehaviors returns the sorted names of the registered behaviors.
func RegisteredBehaviors() []string {
	behaviors.RLock()
	defer behaviors.RUnlock()
	names := make([]string, 0, len(behaviors.m))
	for n := range behaviors.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lookup returns the factory of one launch of the behavior name with the
// configuration cfg (nil: none given).
func lookup(name string, cfg *launchConfig) (Factory, error) {
	behaviors.RLock()
	r, ok := behaviors.m[name]
	behaviors.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q (registered: %v)", ErrUnknownBehavior, name, RegisteredBehaviors())
	}
	return r.factory(name, cfg)
}

// Launcher starts agents of registered behaviors and supervises them,
// restarting a failed one up to [WithRestarts] times.
type Launcher interface {
	// Launch starts an agent of the behavior registered as behavior, in x,
	// and returns its instance once the agent's mailbox is registered (the
	// agent may still be starting: requests sent to it wait in its
	// mailbox).
	Launch(ctx context.Context, x exchange.Exchange, behavior string, opts ...Option) (*Instance, error)
}

// Instance is one launched agent, across its restarts.
type Instance struct {
	behavior string
	target   *atomic.Pointer[exchange.EntityID]
	pid      atomic.Int64
	restarts atomic.Int32
	stopping atomic.Bool
	done     chan struct{}

	mu   sync.Mutex
	ids  []exchange.EntityID
	stop func() // stops the current run
	err  error
}

func newInstance(behavior string) *Instance {
	return &Instance{behavior: behavior, target: new(atomic.Pointer[exchange.EntityID]), done: make(chan struct{})}
}

// run is one run of a launched agent: goroutines of this process, or a
// child process.
type run struct {
	id   exchange.EntityID
	pid  int          // 0 for goroutines
	stop func()       // asks the run to stop; it does not wait
	wait func() error // waits until the run ended and returns its error (nil: a clean stop)
}

func (in *Instance) setRun(r run) {
	in.mu.Lock()
	in.ids = append(in.ids, r.id)
	in.stop = r.stop
	in.mu.Unlock()
	in.pid.Store(int64(r.pid))
	in.target.Store(&r.id)
}

func (in *Instance) finish(err error) {
	in.mu.Lock()
	in.err = err
	in.mu.Unlock()
	close(in.done)
}

// supervise is the restart loop both launchers share: it waits for the run
// r and, while runs fail, in is not stopping and restarts remain, starts
// the next one with restart, given the id of the run that failed (which
// restart keeps when the exchange can reopen its mailbox, see reopen). It
// finishes in with the last run's error.
func (in *Instance) supervise(log *slog.Logger, restarts int, r run, restart func(prev exchange.EntityID) (run, error)) {
	in.setRun(r)
	go func() {
		for {
			err := r.wait()
			if err == nil || in.stopping.Load() || in.Restarts() >= restarts {
				in.finish(err)
				return
			}
			log.Warn("agent: restarting a failed agent", "behavior", in.behavior, "agent", r.id, "err", err)
			next, serr := restart(r.id)
			if serr != nil {
				in.finish(fmt.Errorf("%w; restart failed: %w", err, serr))
				return
			}
			r = next
			in.restarts.Add(1)
			in.setRun(r)
			if in.stopping.Load() {
				r.stop()
			}
		}
	}()
}

// reopen brings back the terminated mailbox of id for a restart and returns
// id, or returns the zero id (a new one is to be registered) when x cannot
// reopen it.
func reopen(x exchange.Exchange, id exchange.EntityID, log *slog.Logger) exchange.EntityID {
	r, ok := x.(exchange.Reopener)
	if !ok {
		return exchange.EntityID{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Reopen(ctx, id); err != nil {
		log.Warn("agent: cannot reopen the mailbox of a restarted agent; it gets a new id", "agent", id, "err", err)
		return exchange.EntityID{}
	}
	return id
}

// Behavior returns the name of the instance's behavior.
func (in *Instance) Behavior() string { return in.behavior }

// ID returns the id of the agent's current run (a restart keeps it when the
// exchange can reopen the mailbox, and registers a new one otherwise).
func (in *Instance) ID() exchange.EntityID { return *in.target.Load() }

// IDs returns the ids of all the agent's runs, the first first.
func (in *Instance) IDs() []exchange.EntityID {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]exchange.EntityID(nil), in.ids...)
}

// PID returns the process id of the agent's current run, or 0 for an agent
// run as goroutines.
func (in *Instance) PID() int { return int(in.pid.Load()) }

// Restarts returns how many times the agent was restarted.
func (in *Instance) Restarts() int { return int(in.restarts.Load()) }

// Done returns a channel closed when the agent stopped for good (after its
// last run).
func (in *Instance) Done() <-chan struct{} { return in.done }

// Err returns the error of the agent's last run once Done is closed (nil
// for a clean shutdown), and nil before.
func (in *Instance) Err() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

// Stop stops the agent without restarting it: a goroutine agent is asked to
// shut down ([Runtime.Shutdown]), a process agent gets SIGTERM (its child
// runtime then shuts down the same way). It does not wait (see Done).
func (in *Instance) Stop() {
	in.stopping.Store(true)
	in.mu.Lock()
	stop := in.stop
	in.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// ThreadLauncher runs each agent as goroutines of this process, over any
// [exchange.Exchange].
type ThreadLauncher struct{}

// Launch implements [Launcher]. Options are the runtime's (see
// [NewRuntime]) plus [WithConfig] and [WithRestarts]: a run that returns an error (a setup
// or loop failure) is restarted with a fresh Behavior, under the same id
// when x can reopen its mailbox ([exchange.Reopener]), else a new one.
func (l ThreadLauncher) Launch(ctx context.Context, x exchange.Exchange, behavior string, opts ...Option) (*Instance, error) {
	o := applyOptions(opts)
	f, err := lookup(behavior, o.config)
	if err != nil {
		return nil, err
	}
	return l.launch(ctx, x, behavior, f, o, opts)
}

// LaunchFactory is Launch with a factory that need not be registered;
// name is only the instance's label. The factory takes no configuration
// ([WithConfig] is an error).
func (l ThreadLauncher) LaunchFactory(ctx context.Context, x exchange.Exchange, name string, f Factory, opts ...Option) (*Instance, error) {
	o := applyOptions(opts)
	if o.config != nil {
		return nil, fmt.Errorf("agent: LaunchFactory(%q) takes no configuration: register the behavior with RegisterBehaviorConfig and Launch it", name)
	}
	return l.launch(ctx, x, name, f, o, opts)
}

func (ThreadLauncher) launch(ctx context.Context, x exchange.Exchange, name string, f Factory, o options, opts []Option) (*Instance, error) {
	in := newInstance(name)
	// start starts a runtime for id, or for a new agent when id is zero.
	start := func(ctx context.Context, id exchange.EntityID) (run, error) {
		b, err := f()
		if err != nil {
			return run{}, fmt.Errorf("agent: behavior %q factory: %w", name, err)
		}
		ro := opts
		if !id.IsZero() {
			ro = append(append([]Option(nil), opts...), WithAgentID(id))
		}
		rt, err := NewRuntime(ctx, x, b, ro...)
		if err != nil {
			return run{}, err
		}
		return run{id: rt.ID(), stop: rt.Shutdown, wait: func() error { return rt.Run(context.Background()) }}, nil
	}
	first, err := start(ctx, exchange.EntityID{})
	if err != nil {
		return nil, err
	}
	in.supervise(o.log, o.restarts, first, func(prev exchange.EntityID) (run, error) {
		return start(context.Background(), reopen(x, prev, o.log))
	})
	return in, nil
}
