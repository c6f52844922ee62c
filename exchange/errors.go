package exchange

import (
	"context"
	"errors"
)

// Sentinel errors. Methods return them wrapped with detail (the id, the
// limit, the field); test with [errors.Is]. A wait that runs out of time or
// is cancelled returns the context's error: [context.DeadlineExceeded] (the
// counterpart of Academy's TimeoutError) or [context.Canceled].
var (
	// ErrBadEntityID reports that no mailbox exists for an id (Academy's
	// BadEntityIdError): it was never registered in this exchange, or it
	// was registered with another role, or (in a shared-memory exchange)
	// its registry slot was reused since it was terminated (see
	// SHM.Status).
	ErrBadEntityID = errors.New("exchange: no mailbox for entity id")

	// ErrMailboxClosed reports that a mailbox was terminated (sends fail,
	// and receives fail once the mailbox is drained), or that the Mailbox
	// client used to receive was closed (Academy's MailboxClosedError and
	// MailboxTerminatedError).
	ErrMailboxClosed = errors.New("exchange: mailbox closed")

	// ErrExchangeClosed reports a call on an Exchange handle after its
	// Close.
	ErrExchangeClosed = errors.New("exchange: exchange closed")

	// ErrMessageTooLarge reports a message whose fields exceed the codec's
	// limits ([MaxTextSize], [MaxPayloadSize]) or whose encoding does not fit
	// the implementation's largest record. Large payloads belong in a proxy
	// store; only a proxy travels in the message.
	ErrMessageTooLarge = errors.New("exchange: message too large")

	// ErrBadMessage reports a malformed message: bytes from the wire that do
	// not decode, or a Message whose fields do not fit its kind (see
	// [Message.Validate]).
	ErrBadMessage = errors.New("exchange: bad message")

	// ErrDuplicateID reports a registration with an id (see [WithID]) whose
	// UUID is already registered, whatever its state or role.
	ErrDuplicateID = errors.New("exchange: entity id already registered")

	// ErrWrongRole reports an id whose role does not fit the operation, for
	// example [WithID] with a client id given to RegisterAgent.
	ErrWrongRole = errors.New("exchange: entity id has the wrong role")

	// ErrInvalidArgument reports an argument that can never be valid: an
	// empty behavior name, a zero id given to [WithID], a malformed id
	// string.
	ErrInvalidArgument = errors.New("exchange: invalid argument")

	// ErrMailboxBusy reports that a mailbox already has a receiving client
	// and the implementation allows only one at a time (a many-to-one ring
	// has a single consumer). The in-process implementation never returns
	// it.
	ErrMailboxBusy = errors.New("exchange: mailbox already has a receiver")
)

// Remote error kinds that the exchange itself produces or maps to sentinel
// errors. The names follow Academy's exception classes so that a peer in
// another language can map them back.
const (
	// ErrorKindMailboxTerminated is the kind of the error response that
	// answers a request still pending in a mailbox when it is terminated.
	ErrorKindMailboxTerminated = "MailboxTerminatedError"
	// ErrorKindMailboxClosed corresponds to [ErrMailboxClosed].
	ErrorKindMailboxClosed = "MailboxClosedError"
	// ErrorKindBadEntityID corresponds to [ErrBadEntityID].
	ErrorKindBadEntityID = "BadEntityIdError"
	// ErrorKindTimeout corresponds to [context.DeadlineExceeded].
	ErrorKindTimeout = "TimeoutError"
	// ErrorKindCanceled corresponds to [context.Canceled].
	ErrorKindCanceled = "CancelledError"
	// ErrorKindGeneric is the kind given to an error with no better kind.
	ErrorKindGeneric = "Error"
)

// RemoteError is an error that travels in an error response: a kind (a
// short name, such as an exception class name) and a human-readable message.
// It is plain data, never executable. [Message.Err] returns one; return one
// from a behavior to choose the kind the caller sees.
type RemoteError struct {
	// Kind names the error, for example "ValueError" or
	// [ErrorKindMailboxTerminated].
	Kind string
	// Message describes the error.
	Message string
}

// Error returns "Kind: Message" (or just the kind when there is no message).
func (e *RemoteError) Error() string {
	if e.Message == "" {
		return e.Kind
	}
	return e.Kind + ": " + e.Message
}

// Is lets [errors.Is] match a remote error against the sentinel its kind
// corresponds to: ErrorKindMailboxTerminated and ErrorKindMailboxClosed match
// [ErrMailboxClosed], ErrorKindBadEntityID matches [ErrBadEntityID],
// ErrorKindTimeout matches [context.DeadlineExceeded], ErrorKindCanceled
// matches [context.Canceled].
func (e *RemoteError) Is(target error) bool {
	switch e.Kind {
	case ErrorKindMailboxTerminated, ErrorKindMailboxClosed:
		return target == ErrMailboxClosed
	case ErrorKindBadEntityID:
		return target == ErrBadEntityID
	case ErrorKindTimeout:
		return target == context.DeadlineExceeded
	case ErrorKindCanceled:
		return target == context.Canceled
	}
	return false
}

// remoteErrorParts returns the kind and message an error response carries
// for err.
func remoteErrorParts(err error) (kind, msg string) {
	var re *RemoteError
	switch {
	case err == nil:
		return ErrorKindGeneric, ""
	case errors.As(err, &re):
		if re.Kind == "" {
			return ErrorKindGeneric, re.Message
		}
		return re.Kind, re.Message
	case errors.Is(err, ErrMailboxClosed):
		return ErrorKindMailboxClosed, err.Error()
	case errors.Is(err, ErrBadEntityID):
		return ErrorKindBadEntityID, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return ErrorKindTimeout, err.Error()
	case errors.Is(err, context.Canceled):
		return ErrorKindCanceled, err.Error()
	}
	return ErrorKindGeneric, err.Error()
}
