package agent

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/shmex/shmex/exchange"
)

// Factory makes a fresh Behavior, with fresh state, for one run of an
// agent; a launcher calls it again for every restart.
type Factory func() (*Behavior, error)

var behaviors = struct {
	sync.RWMutex
	m map[string]Factory
}{m: map[string]Factory{}}

// RegisterBehavior registers the factory of the behavior called name, so
// that launchers can start agents of it by name, in this process or in a
// child process that runs [ServeIfChild]. Register every behavior at
// program start (in init or at the top of main, before ServeIfChild), the
// same way in the parent and its children. [ErrDuplicate] when name is
// taken.
func RegisterBehavior(name string, f Factory) error {
	if name == "" || f == nil {
		return fmt.Errorf("%w: RegisterBehavior needs a name and a factory", exchange.ErrInvalidArgument)
	}
	behaviors.Lock()
	defer behaviors.Unlock()
	if _, ok := behaviors.m[name]; ok {
		return fmt.Errorf("%w: behavior %q", ErrDuplicate, name)
	}
	behaviors.m[name] = f
	return nil
}

// LookupBehavior returns the factory registered under name.
func LookupBehavior(name string) (Factory, bool) {
	behaviors.RLock()
	defer behaviors.RUnlock()
	f, ok := behaviors.m[name]
	return f, ok
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

func lookup(name string) (Factory, error) {
	f, ok := LookupBehavior(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q (registered: %v)", ErrUnknownBehavior, name, RegisteredBehaviors())
	}
	return f, nil
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

func (in *Instance) setRun(id exchange.EntityID, pid int, stop func()) {
	in.mu.Lock()
	in.ids = append(in.ids, id)
	in.stop = stop
	in.mu.Unlock()
	in.pid.Store(int64(pid))
	in.target.Store(&id)
}

func (in *Instance) finish(err error) {
	in.mu.Lock()
	in.err = err
	in.mu.Unlock()
	close(in.done)
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
// [NewRuntime]) plus [WithRestarts]: a run that returns an error (a setup
// or loop failure) is restarted with a fresh Behavior, under the same id
// when x can reopen its mailbox ([exchange.Reopener]), else a new one.
func (l ThreadLauncher) Launch(ctx context.Context, x exchange.Exchange, behavior string, opts ...Option) (*Instance, error) {
	f, err := lookup(behavior)
	if err != nil {
		return nil, err
	}
	return l.LaunchFactory(ctx, x, behavior, f, opts...)
}

// LaunchFactory is Launch with a factory that need not be registered;
// name is only the instance's label.
func (ThreadLauncher) LaunchFactory(ctx context.Context, x exchange.Exchange, name string, f Factory, opts ...Option) (*Instance, error) {
	o := applyOptions(opts)
	in := newInstance(name)
	// start starts a runtime; a restart (prev not zero) keeps the id prev
	// when x can reopen its mailbox, else registers a new one.
	start := func(ctx context.Context, prev exchange.EntityID) (*Runtime, error) {
		b, err := f()
		if err != nil {
			return nil, fmt.Errorf("agent: behavior %q factory: %w", name, err)
		}
		ro := opts
		if !prev.IsZero() {
			ro = append(append([]Option(nil), opts...), WithAgentID(reopen(x, prev, o.log)))
		}
		return NewRuntime(ctx, x, b, ro...)
	}
	rt, err := start(ctx, exchange.EntityID{})
	if err != nil {
		return nil, err
	}
	in.setRun(rt.ID(), 0, rt.Shutdown)
	go func() {
		for {
			err := rt.Run(context.Background())
			if err == nil || in.stopping.Load() || in.Restarts() >= o.restarts {
				in.finish(err)
				return
			}
			o.log.Warn("agent: restarting a failed agent", "behavior", name, "agent", rt.ID(), "err", err)
			next, serr := start(context.Background(), rt.ID())
			if serr != nil {
				in.finish(fmt.Errorf("%w; restart failed: %w", err, serr))
				return
			}
			rt = next
			in.restarts.Add(1)
			in.setRun(rt.ID(), 0, rt.Shutdown)
			if in.stopping.Load() {
				rt.Shutdown()
			}
		}
	}()
	return in, nil
}
