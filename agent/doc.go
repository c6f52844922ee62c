// Package agent runs Academy-style agents over an [exchange.Exchange]:
// behaviors with typed actions, control loops and hooks; a runtime that
// serves them; handles and futures to call them; launchers that run agents
// as goroutines or as OS processes (with restarts); and a manager. The same
// code runs on the in-process exchange ([exchange.NewLocal]) and across the
// processes of one node on the shared-memory exchange ([exchange.Open]).
//
// # Model
//
// A [Behavior] has a name, the names of the behaviors it implements (what
// Discover with subtypes finds), actions, control loops ([Behavior.Loop])
// and optional setup and shutdown hooks. Actions are typed:
//
//	b := agent.NewBehavior("Counter")
//	err := agent.AddAction(b, "add", func(ctx context.Context, n int) (int, error) { ... })
//
// registers a func(ctx, In) (Out, error) with MessagePack codecs for In and
// Out ([CodecFor]): the basic types (bool, ints, uints, floats, string,
// []byte, struct{} a.k.a. [NoArgs]) through msgp's runtime functions, and
// any type whose pointer implements msgp.Marshaler and msgp.Unmarshaler
// (what `go tool msgp` generates). Any other type is refused at
// registration with [ErrNoCodec]; plug in another encoding with a [Codec]
// ([AddActionCodec], [ActionCodec]). Arguments and results are plain
// MessagePack, so peers in other languages can call the same agents.
//
// A [Runtime] runs one agent: [NewRuntime] registers it (or, with
// [WithAgentID], takes over an agent registered by a launcher) and opens its
// mailbox; [Runtime.Run] runs the setup hook, starts the loops and serves
// requests until a shutdown request, [Runtime.Shutdown], a loop error
// ([WithTerminateOnError]) or the end of its context. Then, in order, it
// stops taking requests, terminates its mailbox ([WithTerminateOnExit], or
// when the shutdown request asks for it: the exchange answers requests still
// queued with error responses), cancels the actions' context and waits for
// the running actions, stops the loops and runs the shutdown hook.
//
// Actions run at most [WithMaxConcurrency] at once (unbounded by default).
// The runtime serves with a leader/followers pool: the goroutine that
// receives a request runs the action itself, so a short action costs no
// goroutine switch; if it runs longer than 50 µs, another goroutine takes
// over receiving, so pings, shutdowns and responses to the agent's own
// handles keep flowing (a long or blocking action delays the mailbox by at
// most that much). An action that ended within 50 µs 16 times in a row
// runs without the timer that watches for this, and a watchdog that looks
// every millisecond hands off the run that turns slow: such an action
// delays the mailbox by about 2 ms, once (longer when it keeps the
// process's only CPU busy: the watchdog needs one to run), and is timed
// again from then on. The receiving goroutine takes what is waiting in a
// shared-memory mailbox in batches of up to 16 messages, and the next
// receiver continues from them, so a slow action holds none of the
// messages received behind it; those still untaken when the agent stops
// are answered with [ErrorKindShuttingDown]. (With
// [WithTerminateOnExit](false) it takes one at a time, so that what it has
// not taken stays in the mailbox for the next runtime.) Requests beyond
// the bound wait in the runtime, in arrival order. An action that returns
// an error is answered with an error
// response carrying a [*exchange.RemoteError] (return one to choose its
// kind); one that panics is answered with [ErrorKindActionPanic]; an
// unknown action with [ErrorKindUnknownAction]; arguments that do not
// decode (or do not arrive whole: a proxy that does not resolve) with
// [ErrorKindBadArguments]; a result that cannot be sent (too large for the
// requester's mailbox) with [ErrorKindResultTooLarge], naming the action
// and the size. The agent keeps serving in every case.
//
// A [Client] registers its own mailbox; any number of [Handle]s to any
// agents share it (each with its own label), and responses are routed to
// their calls by tag and label. [Client.WaitFor] waits until an agent of a
// behavior is active and returns its id ([Client.WaitForID] for a known
// id): on the shared-memory exchange it sleeps until the registry changes,
// in any process, instead of polling Discover. [Action] returns a [Future] (wait with a
// context, poll, cancel locally), [Call] is the synchronous form,
// [Handle.Ping] returns the round-trip time, [Handle.Shutdown] asks the
// agent to stop, [Handle.Close] waits for or cancels the pending futures.
// Inside an agent, [FromContext] returns the [Runtime], whose
// [Runtime.Handle] makes handles that use the agent's own mailbox (the
// runtime's receive loop routes their responses): to pass a handle to
// another agent, pass its [Handle.AgentID] (an [exchange.EntityID] is a
// valid argument) and bind it there.
//
// # Errors
//
// Errors from the agent side are [*exchange.RemoteError] values (test with
// [errors.As]); for the runtime's own kinds they also match a sentinel
// ([ErrUnknownAction], [ErrActionPanic], [ErrBadArguments],
// [ErrShuttingDown]; [ErrAgentTerminated] for a request answered by the
// exchange because the agent's mailbox was terminated). Local failures are
// sentinels too: [ErrHandleClosed], [ErrCanceled], [ErrAgentTerminated],
// [ErrNoCodec], [exchange.ErrBadEntityID] for a call to an id the exchange
// has no mailbox for ("no such agent"); a context that ends returns its
// own error.
//
// Errors say what to fix: an unknown action lists the agent's actions (and
// names the one meant when only case or underscores differ); arguments or
// a result that do not decode name the action, the Go type wanted and the
// MessagePack value that came ("result of action "swap" from ...: want
// int, got a MessagePack array of 2 [int, int]: ...").
//
// # Nothing waits forever
//
// While calls are in flight, a client (or runtime) polls the exchange for
// the status of the agents they wait on every [WithStatusPoll] (100 ms).
// A request still queued when an agent's mailbox is terminated is answered
// by the exchange; but a request taken by a process that then died is never
// answered, so a call to an agent seen not active for [WithTerminatedGrace]
// (1 s; a shutting-down agent still answers the actions it runs) fails with
// [ErrAgentTerminated]. On the shared-memory exchange a dead process's
// mailboxes read as terminated within about 100 ms, so a call in flight to
// a killed agent fails within about poll + grace.
//
// # Receiving without hand-offs
//
// A client has no goroutine between the mailbox and its callers on the
// fast path: a caller of [Call], [Handle.Ping] or [Handle.Shutdown] takes
// the client's receive token when it sends, if nobody holds it, and
// receives its own response itself; a caller of [Future.Wait] takes it
// when it waits. The holder routes whatever else arrives to its calls;
// callers that find the token taken wait for their calls and take over
// when it is released (leader/followers). A listener goroutine, started
// when needed, receives for futures nobody waits on: once the token stayed
// free for 1 ms with calls pending, or at once for [Future.Done],
// [Future.Result] and [Handle.Close], so responses never pile up. A
// holder whose call fails locally (cancelled, its agent gone) is woken by
// a message the client sends to its own mailbox, so receiving never needs
// a context of its own.
//
// In steady state [Call] allocates nothing, on either side, for basic and
// msgp-generated argument and result types, but the values that decoding
// makes ([]byte and string results; a []byte argument on the agent's
// side); [Action] allocates its [Future], unless futures read are given
// back for reuse with [Future.Release] (a pipeline then allocates nothing
// per action).
//
// A response that arrives but cannot be received whole (a proxied result
// that does not resolve, a message that does not decode) fails its call
// at once with the reason.
//
// # Launchers and manager
//
// A [Launcher] starts agents of behaviors registered by name with
// [RegisterBehavior] (a [Factory] gives each run a fresh Behavior), or
// with [RegisterBehaviorConfig] for agents that take a configuration at
// launch ([WithConfig]: Academy's agent instance with its state, encoded
// like an action argument and decoded afresh for each run, in the agent's
// process).
// [ThreadLauncher] runs them as goroutines over any exchange;
// [ProcessLauncher] runs each as its own OS process over the shared-memory
// exchange: the program re-runs itself with the behavior name, agent id and
// exchange name and root in the environment (see the Env* constants), and
// its main calls [ServeIfChild] first; [SetChildExchange] makes those
// processes serve on a wrapped exchange (a proxystore.Wrap, so that large
// arguments travel as proxies). [WithRestarts] restarts a failed run
// (an error from the runtime; a process that died or exited non-zero). The
// dead run's mailbox is terminated (its queued requests are answered with
// errors), then, when the exchange can ([exchange.Reopener]: the
// shared-memory and in-process exchanges), reopened under the same id, so
// that handles and ids held anywhere reach the new run, as with Academy's
// restarts; calls in flight to the old run fail with [ErrAgentTerminated]
// (a handle sees the incarnation of the mailbox that its request went to
// change: the exchange reports it with the send when it implements
// exchange.IncarnationSender). Over an exchange that
// cannot reopen, a restart registers a new id, which handles from
// [Manager.Launch] follow. A [Manager] launches agents and returns
// handles, shuts one down (optionally waiting) and waits for all.
//
// # Large payloads
//
// An argument or result (or a field of one) of type proxystore.Blob
// travels as a proxy into the sender's shared arena, whatever its size:
// the receiving action reads it in place, without a copy. The sender fills
// a Blob in place (proxystore.AllocBlob) or copies bytes in
// (proxystore.NewBlob); both sides open the arena store of the exchange's
// directory (an agent process with [SetChildExchange]). See the example of
// proxystore.Blob, and examples/zero-copy for the same across processes.
//
// # Lifetimes and caveats
//
//   - Arguments passed to [Action] are encoded before it returns. Results
//     are decoded into fresh values ([]byte and string results are copies);
//     the raw args slice given to a [Behavior.AddRawAction] function is
//     valid only until it returns.
//   - A response waits for room in its requester's full mailbox as long
//     as the agent serves, and at most [WithResponseGrace] (10 s) once it
//     shuts down; then it is dropped, with a warning (on the shared-memory
//     exchange a dead client's mailbox is seen terminated, which ends the
//     wait at once). A response that the requester's mailbox cannot take
//     at all is replaced by an error response; if even that cannot be
//     sent (a mailbox too small for it), it is dropped with a warning and
//     its caller waits until its context ends.
//   - [ProcessLauncher] children get SIGKILL when the launching process
//     dies (Linux parent-death signal; strictly, of the OS thread that
//     started them, which the Go runtime keeps alive in practice).
//   - The idle strategy of the shared-memory exchange (exchange.WithIdle
//     per handle, default exchange.IdleBackoff; [WithIdle] per runtime or
//     client) applies to every receive here: a waiting caller, the
//     listener, an agent's leader.
//   - The package logs through [WithLogger]'s logger; by default only
//     warnings reach slog.Default (see [WithLogger] for what is logged at
//     which level).
package agent
