package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/shmex/shmex/exchange"
)

// Sentinel errors. Calls return them wrapped with detail; test with
// [errors.Is]. An error that an agent sent back in an error response is also
// a [*exchange.RemoteError] (test with [errors.As]); for the kinds below the
// agent package wraps it with the matching sentinel as well.
var (
	// ErrUnknownAction reports a request for an action the agent's behavior
	// does not have (remote kind [ErrorKindUnknownAction]).
	ErrUnknownAction = errors.New("agent: unknown action")

	// ErrActionPanic reports an action that panicked; the agent recovered
	// and keeps serving (remote kind [ErrorKindActionPanic]).
	ErrActionPanic = errors.New("agent: action panicked")

	// ErrBadArguments reports action arguments or a result that did not
	// decode with the action's codec (remote kind [ErrorKindBadArguments]
	// when the agent could not decode the arguments).
	ErrBadArguments = errors.New("agent: bad action arguments or result")

	// ErrAgentTerminated reports a call to an agent whose mailbox is
	// terminated, or whose process died with the call in flight. It also
	// matches [exchange.ErrMailboxClosed] through the wrapped remote error
	// when the exchange answered the request. A call to an id the exchange
	// has no mailbox for is not this error but "no such agent", which
	// matches [exchange.ErrBadEntityID].
	ErrAgentTerminated = errors.New("agent: agent terminated")

	// ErrShuttingDown reports a request that the agent received but did not
	// run because it was shutting down (remote kind [ErrorKindShuttingDown]).
	ErrShuttingDown = errors.New("agent: agent shutting down")

	// ErrHandleClosed reports a call on a closed handle, or a future that
	// the handle's Close (or its client's or runtime's end) cancelled.
	ErrHandleClosed = errors.New("agent: handle closed")

	// ErrCanceled reports a future cancelled locally with [Future.Cancel];
	// it wraps [context.Canceled] too.
	ErrCanceled = fmt.Errorf("agent: future cancelled: %w", context.Canceled)

	// ErrNoCodec reports an action argument or result type with no
	// MessagePack codec: neither a basic type nor a type whose pointer
	// implements msgp.Marshaler and msgp.Unmarshaler.
	ErrNoCodec = errors.New("agent: no codec for type")

	// ErrDuplicate reports a second action with the same name in one
	// behavior, or a second behavior registered under one name.
	ErrDuplicate = errors.New("agent: duplicate name")

	// ErrUnknownBehavior reports a launch of a behavior name that was
	// never registered with [RegisterBehavior].
	ErrUnknownBehavior = errors.New("agent: unknown behavior")

	// ErrNotRunning reports a Runtime that is not (or no longer) running,
	// such as a second call to Run.
	ErrNotRunning = errors.New("agent: runtime not running")

	// ErrPending is returned by [Future.Result] while the future is not
	// done.
	ErrPending = errors.New("agent: future pending")
)

// Remote error kinds produced by the agent runtime, in the style of
// Academy's exception names so that peers in other languages can map them.
const (
	// ErrorKindUnknownAction answers a request for an action the behavior
	// does not have.
	ErrorKindUnknownAction = "UnknownActionError"
	// ErrorKindActionPanic answers a request whose action panicked.
	ErrorKindActionPanic = "ActionPanicError"
	// ErrorKindBadArguments answers a request whose arguments did not
	// decode.
	ErrorKindBadArguments = "BadArgumentsError"
	// ErrorKindShuttingDown answers a request that arrived, or was queued,
	// while the agent was shutting down.
	ErrorKindShuttingDown = "AgentShutdownError"
	// ErrorKindNotAnAgent answers a request sent to a client's mailbox.
	ErrorKindNotAnAgent = "NotAnAgentError"
	// ErrorKindResultTooLarge answers a request whose result did not fit
	// the requester's mailbox; the message names the action and the
	// result's size. It matches [exchange.ErrMessageTooLarge].
	ErrorKindResultTooLarge = "ResultTooLargeError"
)

// remoteErr turns an error response into the error a caller sees: the
// *exchange.RemoteError, wrapped with the agent sentinel its kind maps to.
func remoteErr(m *exchange.Message) error {
	err := m.Err()
	var sentinel error
	switch string(m.ErrorKind) {
	case ErrorKindUnknownAction:
		sentinel = ErrUnknownAction
	case ErrorKindActionPanic:
		sentinel = ErrActionPanic
	case ErrorKindBadArguments:
		sentinel = ErrBadArguments
	case ErrorKindShuttingDown:
		sentinel = ErrShuttingDown
	case exchange.ErrorKindMailboxTerminated, exchange.ErrorKindMailboxClosed, exchange.ErrorKindBadEntityID:
		sentinel = ErrAgentTerminated
	case ErrorKindResultTooLarge:
		sentinel = exchange.ErrMessageTooLarge
	}
	if sentinel == nil {
		return err
	}
	return &kindError{sentinel: sentinel, remote: err}
}

// kindError is a remote error that also matches an agent sentinel.
type kindError struct {
	sentinel error
	remote   error
}

func (e *kindError) Error() string   { return e.remote.Error() }
func (e *kindError) Unwrap() []error { return []error{e.sentinel, e.remote} }
