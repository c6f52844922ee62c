package agent

import (
	"log/slog"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/quietlog"
)

// Option configures a [Runtime], a [Client], a [Manager] or a launch. Each
// option says which it applies to; the others ignore it.
type Option func(*options)

type options struct {
	log             *slog.Logger
	maxConcurrency  int
	terminateOnExit bool
	terminateOnErr  bool
	agentID         exchange.EntityID
	name            string
	statusPoll      time.Duration
	grace           time.Duration
	responseGrace   time.Duration
	restarts        int
	config          *launchConfig // WithConfig (config.go)
	idle            *exchange.IdleStrategy
}

func defaultOptions() options {
	return options{
		log:             quietLogger,
		terminateOnExit: true,
		terminateOnErr:  true,
		statusPoll:      100 * time.Millisecond,
		grace:           time.Second,
		responseGrace:   10 * time.Second,
	}
}

func applyOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// WithLogger sets the logger (all). The package logs at debug level what
// helps to follow an agent's life (responses dropped, status polls that
// failed, mailboxes closed) and at warn level what a program should hear
// about (a control loop or shutdown hook that failed while nobody else is
// told, an action that panicked, an agent restarted, a response dropped at
// shutdown, a message that did not decode). By default only the warnings
// reach [slog.Default]; pass a logger to see the rest.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithMaxConcurrency bounds how many actions a runtime runs at once (n ≥
// 1); 0, the default, is no bound (Academy's max_action_concurrency=None).
// Requests beyond the bound wait in the runtime, in arrival order, while
// pings, shutdowns and responses to the agent's own handles keep flowing.
func WithMaxConcurrency(n int) Option { return func(o *options) { o.maxConcurrency = max(n, 0) } }

// WithTerminateOnExit says whether a runtime terminates its mailbox when it
// stops (default true). When false, requests that arrive after the stop
// stay queued for the next runtime of the same agent id; a shutdown request
// with Terminate set terminates anyway.
func WithTerminateOnExit(v bool) Option { return func(o *options) { o.terminateOnExit = v } }

// WithTerminateOnError says whether a control loop that returns an error
// shuts the runtime down (default true); when false the error is logged and
// the other loops and the actions go on.
func WithTerminateOnError(v bool) Option { return func(o *options) { o.terminateOnErr = v } }

// WithAgentID makes a runtime serve the agent id instead of registering a
// new one: it registers id when missing and takes over its mailbox when it
// is registered and active (how a launcher starts an agent it registered).
func WithAgentID(id exchange.EntityID) Option { return func(o *options) { o.agentID = id } }

// WithName gives the registered agent or client a human-readable name.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithStatusPoll sets how often a client or runtime with calls in flight
// polls the exchange for the status of the agents they wait on (default
// 100 ms).
func WithStatusPoll(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.statusPoll = d
		}
	}
}

// WithTerminatedGrace sets how long a call in flight to an agent whose
// mailbox is terminated (by its shutdown, or because its process died) may
// still wait for its response before it fails with [ErrAgentTerminated]
// (default 1 s): a shutting-down agent answers the actions it is running
// after it terminated its mailbox; a dead one never does.
func WithTerminatedGrace(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.grace = d
		}
	}
}

// WithResponseGrace sets how long, once the agent shuts down, a response
// may wait for space in its requester's mailbox (default 10 s). While the
// agent serves, a response waits as long as it takes, like any send to a
// full mailbox; at shutdown, a requester that never reads its mailbox would
// otherwise keep the agent from ever finishing. A response dropped this way
// is logged.
func WithResponseGrace(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.responseGrace = d
		}
	}
}

// WithRestarts sets how many times a launcher restarts an agent whose run
// failed (an error from the runtime, or a process that died or exited with
// a non-zero status); default 0. A restart keeps the agent's id when the
// exchange can reopen its mailbox ([exchange.Reopener]), and registers a
// new one otherwise; handles from [Manager.Launch] follow the agent either
// way.
func WithRestarts(n int) Option { return func(o *options) { o.restarts = max(n, 0) } }

// WithIdle sets how a runtime's or a client's receiver waits for messages
// (a runtime's, a client's, a manager's client's, and the agents a
// launcher starts): [exchange.IdleBackoff], [exchange.IdleSpin],
// [exchange.IdlePark] or [exchange.IdleSpinThenPark]; default: the
// exchange handle's ([exchange.WithIdle], itself [exchange.DefaultIdle] by
// default). It is passed to the exchange as [exchange.WithMailboxIdle]; a
// [ProcessLauncher] passes it to its children (over its Idle field).
func WithIdle(s exchange.IdleStrategy) Option { return func(o *options) { o.idle = &s } }

// quietLogger is the default logger: warnings and errors go to
// slog.Default() (looked up at each record, so that a later SetDefault
// counts), the rest nowhere.
var quietLogger = quietlog.Logger
