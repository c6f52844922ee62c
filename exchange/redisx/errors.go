package redisx

import "errors"

// Sentinel errors of this package; the exchange's own sentinels
// (exchange.ErrBadEntityID, exchange.ErrMailboxClosed, ...) keep their
// meaning. Test with errors.Is.
var (
	// ErrUnavailable reports that Redis could not be reached (refused,
	// reset, timed out) within the outage wait or the caller's context. It
	// wraps the network error. A Send that fails with it after its command
	// was written may or may not have delivered the message (the reply was
	// lost); one that failed to connect did not.
	ErrUnavailable = errors.New("redisx: Redis unavailable")

	// ErrOtherNode reports an operation that only the node an entity lives
	// on can do: opening its Mailbox or reopening it from a hybrid exchange
	// on another node.
	ErrOtherNode = errors.New("redisx: entity lives on another node")

	// ErrProtocol reports a reply from Redis that the exchange did not
	// expect (another program wrote to its keys, or a script failed).
	ErrProtocol = errors.New("redisx: unexpected reply from Redis")
)
