package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/sysproc"
)

// Environment variables with which [ProcessLauncher] tells a child process
// which agent to run; [ServeIfChild] reads them.
const (
	EnvBehavior        = "SHMEX_AGENT_BEHAVIOR"          // registered behavior name
	EnvAgentID         = "SHMEX_AGENT_ID"                // agent id, as EntityID.String
	EnvExchange        = "SHMEX_AGENT_EXCHANGE"          // shared-memory exchange name
	EnvRoot            = "SHMEX_AGENT_ROOT"              // exchange root directory
	EnvIdle            = "SHMEX_AGENT_IDLE"              // receiver's idle strategy (exchange.ParseIdleStrategy), or a spin count before parking
	EnvMaxConcurrency  = "SHMEX_AGENT_MAX_CONCURRENCY"   // WithMaxConcurrency
	EnvTerminateOnExit = "SHMEX_AGENT_TERMINATE_ON_EXIT" // WithTerminateOnExit: 1 or 0
	EnvTerminateOnErr  = "SHMEX_AGENT_TERMINATE_ON_ERR"  // WithTerminateOnError: 1 or 0
)

// ProcessLauncher runs each agent as its own OS process: the program re-runs
// itself (os.Executable) with the behavior's name, the agent id and the
// shared-memory exchange's name and root in its environment (the Env*
// constants), and the child's main calls [ServeIfChild] first. The parent
// registers the agent's mailbox before it starts the child, so requests can
// be sent at once; the child takes the mailbox over. When a child exits,
// the launcher terminates its mailbox (answering requests still queued),
// and restarts a failed child ([WithRestarts]): under the same id when the
// exchange can reopen the mailbox ([exchange.Reopener]), else under a new
// one.
//
// Children are killed (SIGKILL) when the launching process dies (Linux
// Pdeathsig of the launching thread's process).
type ProcessLauncher struct {
	// Exchange and Root name the shared-memory exchange the children open
	// (exchange.Open(Exchange, exchange.WithRoot(Root))).
	Exchange string
	Root     string
	// Idle, when set, is the children's receive idle strategy, unless the
	// launch sets one ([WithIdle]).
	Idle *exchange.IdleStrategy
	// Env is added to the children's environment.
	Env []string
	// Stdout and Stderr receive the children's output (default os.Stderr).
	Stdout, Stderr io.Writer
	// Log receives the launcher's events (default: the WithLogger of the
	// launch, else warnings only, to slog.Default(); see [WithLogger]).
	Log *slog.Logger
}

// NewProcessLauncher returns a launcher whose children open the
// shared-memory exchange x.
func NewProcessLauncher(x *exchange.SHM) *ProcessLauncher {
	return &ProcessLauncher{Exchange: x.Name(), Root: filepath.Dir(x.Dir())}
}

// Launch implements [Launcher]. x must be a handle on the same exchange as
// the launcher's (the parent registers the agent with it). Options:
// [WithName], [WithConfig], [WithMaxConcurrency], [WithTerminateOnExit],
// [WithTerminateOnError], [WithRestarts], [WithLogger] (for the launcher),
// [WithIdle] (for the children, over the launcher's Idle).
func (l *ProcessLauncher) Launch(ctx context.Context, x exchange.Exchange, behavior string, opts ...Option) (*Instance, error) {
	o := applyOptions(opts)
	f, err := lookup(behavior, o.config)
	if err != nil {
		return nil, err
	}
	// The parent makes the behavior too: for its registration, and to
	// fail here, not in the child, on a configuration that does not fit.
	b, err := f()
	if err != nil {
		return nil, fmt.Errorf("agent: behavior %q factory: %w", behavior, err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	log := o.log
	if l.Log != nil {
		log = l.Log
	}
	var ropts []exchange.RegisterOption
	if o.name != "" {
		ropts = append(ropts, exchange.WithName(o.name))
	}
	in := newInstance(behavior)
	// start starts a child for the agent id, registered first when id is
	// zero.
	start := func(ctx context.Context, id exchange.EntityID) (run, error) {
		if id.IsZero() {
			var err error
			if id, err = x.RegisterAgent(ctx, b.Exchange(), ropts...); err != nil {
				return run{}, err
			}
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), l.Env...)
		cmd.Env = append(cmd.Env,
			EnvBehavior+"="+behavior,
			EnvAgentID+"="+id.String(),
			EnvExchange+"="+l.Exchange,
			EnvRoot+"="+l.Root,
			EnvMaxConcurrency+"="+strconv.Itoa(o.maxConcurrency),
			EnvTerminateOnExit+"="+boolEnv(o.terminateOnExit),
			EnvTerminateOnErr+"="+boolEnv(o.terminateOnErr),
		)
		if idle := cmp.Or(o.idle, l.Idle); idle != nil {
			cmd.Env = append(cmd.Env, EnvIdle+"="+idle.String())
		}
		cmd.Env = append(cmd.Env, configEnv(o.config)) // config.go
		cmd.Stdout, cmd.Stderr = l.Stdout, l.Stderr
		if cmd.Stdout == nil {
			cmd.Stdout = os.Stderr
		}
		if cmd.Stderr == nil {
			cmd.Stderr = os.Stderr
		}
		cmd.SysProcAttr = sysproc.DieWithParent()
		if err := cmd.Start(); err != nil {
			x.Terminate(context.WithoutCancel(ctx), id)
			return run{}, err
		}
		p := cmd.Process
		return run{id: id, pid: p.Pid, stop: func() { p.Signal(syscall.SIGTERM) }, wait: func() error {
			err := cmd.Wait()
			// Whatever happened to the child, its mailbox is done: answer
			// what is queued there, and let callers see it terminated.
			tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if terr := x.Terminate(tctx, id); terr != nil && !errors.Is(terr, exchange.ErrExchangeClosed) {
				log.Warn("agent: terminating the mailbox of an exited agent failed", "agent", id, "err", terr)
			}
			cancel()
			if err != nil {
				err = fmt.Errorf("agent %v (%s, pid %d): %w", id, behavior, p.Pid, err)
			}
			return err
		}}, nil
	}
	first, err := start(ctx, exchange.EntityID{})
	if err != nil {
		return nil, err
	}
	in.supervise(log, o.restarts, first, func(prev exchange.EntityID) (run, error) {
		return start(context.Background(), reopen(x, prev, log))
	})
	return in, nil
}

func boolEnv(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// ServeIfChild returns at once in a process that [ProcessLauncher] did not
// start. In a child it started, it runs the agent named by the environment
// until the agent stops, then exits the process: status 0 after a clean
// shutdown, 1 after a failure. Call it at the top of main (or of TestMain),
// after the behaviors are registered.
func ServeIfChild() {
	if os.Getenv(EnvBehavior) == "" {
		return
	}
	if err := serveChild(); err != nil {
		fmt.Fprintf(os.Stderr, "shmex agent %s %s: %v\n", os.Getenv(EnvBehavior), os.Getenv(EnvAgentID), err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveChild() error {
	cfg, err := configFromEnv(os.Getenv(EnvConfig)) // config.go
	if err != nil {
		return err
	}
	f, err := lookup(os.Getenv(EnvBehavior), cfg)
	if err != nil {
		return err
	}
	id, err := exchange.ParseEntityID(os.Getenv(EnvAgentID))
	if err != nil {
		return err
	}
	xopts := []exchange.Option{exchange.WithRoot(os.Getenv(EnvRoot))}
	if s := os.Getenv(EnvIdle); s != "" {
		idle, err := parseIdleEnv(s)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", EnvIdle, s, err)
		}
		xopts = append(xopts, exchange.WithIdle(idle))
	}
	shmx, err := exchange.Open(os.Getenv(EnvExchange), xopts...)
	if err != nil {
		return err
	}
	defer shmx.Close()
	var x exchange.Exchange = shmx
	if wrap := childExchange.Load(); wrap != nil {
		wx, closer, err := (*wrap)(shmx)
		if err != nil {
			return fmt.Errorf("agent: child exchange: %w", err)
		}
		if closer != nil {
			defer closer.Close()
		}
		x = wx
	}
	b, err := f()
	if err != nil {
		return err
	}
	opts := []Option{WithAgentID(id)}
	if n, err := strconv.Atoi(os.Getenv(EnvMaxConcurrency)); err == nil {
		opts = append(opts, WithMaxConcurrency(n))
	}
	if s := os.Getenv(EnvTerminateOnExit); s != "" {
		opts = append(opts, WithTerminateOnExit(s == "1"))
	}
	if s := os.Getenv(EnvTerminateOnErr); s != "" {
		opts = append(opts, WithTerminateOnError(s == "1"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rt, err := NewRuntime(ctx, x, b, opts...)
	if err != nil {
		return err
	}
	return rt.Run(ctx)
}

// childExchange is the function set by SetChildExchange.
var childExchange atomic.Pointer[func(*exchange.SHM) (exchange.Exchange, io.Closer, error)]

// SetChildExchange sets how an agent process started by a [ProcessLauncher]
// turns the shared-memory exchange it opened into the exchange its agent
// serves on: for instance a proxystore.Wrap of it with an arena store, so
// that large arguments and results travel as proxies. closer, when not nil,
// is closed after the agent stops (the store, say). Call it at program
// start, before [ServeIfChild]; nil restores the default (the shared-memory
// exchange itself).
func SetChildExchange(f func(x *exchange.SHM) (ex exchange.Exchange, closer io.Closer, err error)) {
	if f == nil {
		childExchange.Store(nil)
		return
	}
	childExchange.Store(&f)
}

// parseIdleEnv reads EnvIdle: an idle strategy as exchange.IdleStrategy's
// String writes it, or, as earlier versions wrote it, a number of spins
// before parking (-1 spins for ever).
func parseIdleEnv(s string) (exchange.IdleStrategy, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return exchange.IdleStrategy{Spins: n}, nil
	}
	return exchange.ParseIdleStrategy(s)
}
