package exchange

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
)

// Exchange hosts one mailbox per entity (agent or client), and lets
// entities register, discover agents, send messages and receive them through
// [Mailbox] clients. It is Academy's Exchange in Go idiom: every call takes a
// context, options are functional, errors are the package's sentinels
// (test with [errors.Is]).
//
// An Exchange value is a handle on an exchange: one process, or one
// component of a process, holds it. Several handles may share one exchange
// (two Opens of the same shared-memory exchange); what one registers,
// terminates or sends, the others see. All methods are safe for concurrent
// use. Every method returns [ErrExchangeClosed] after Close.
//
// A wait that the context ends returns the context's error
// ([context.DeadlineExceeded] for a timeout, [context.Canceled]).
type Exchange interface {
	// RegisterAgent creates a mailbox for a new agent implementing behavior
	// and returns its id: a fresh random one, or the one given with
	// [WithID] (which must be an agent id; [ErrWrongRole] otherwise, and
	// [ErrDuplicateID] when its UUID is already registered, whatever the
	// state). [WithName] sets a human-readable name. An empty
	// behavior.Name is [ErrInvalidArgument].
	RegisterAgent(ctx context.Context, behavior Behavior, opts ...RegisterOption) (EntityID, error)

	// RegisterClient creates a mailbox for a new client and returns its
	// id, with the options and errors of RegisterAgent ([WithID] needs a
	// client id).
	RegisterClient(ctx context.Context, opts ...RegisterOption) (EntityID, error)

	// Terminate closes the mailbox of id for good (only a supervisor's
	// [Reopener.Reopen] brings it back, for a restarted agent). It is a
	// no-op (nil) when the mailbox does not exist or is already
	// terminated. Once it returns:
	//   - sends to id fail with [ErrMailboxClosed], and senders blocked on
	//     the full mailbox return that error;
	//   - every request (action, ping, shutdown) that was still queued has
	//     been removed and answered with an error response of the matching
	//     kind, [ErrorKindMailboxTerminated], Src id, and the request's Tag
	//     and Label, sent to the request's Src (dropped when that mailbox
	//     is missing or terminated too), so that no caller waits forever;
	//   - the other queued messages (responses) stay: Recv returns them,
	//     then [ErrMailboxClosed];
	//   - the entity stays in the registry with [StatusTerminated], and
	//     Discover no longer returns it.
	Terminate(ctx context.Context, id EntityID) error

	// Discover returns the ids of the active agents whose behavior is
	// named behavior, or, with allowSubtypes, whose behavior is named
	// behavior or lists it in Implements (Academy's allow_subclasses).
	// Terminated agents and clients are never returned. The order is
	// unspecified; no match is an empty result, not an error.
	Discover(ctx context.Context, behavior string, allowSubtypes bool) ([]EntityID, error)

	// Mailbox returns a new client that receives from the mailbox of id
	// ([ErrBadEntityID] when missing). A client of a terminated mailbox is
	// returned too: it drains what is left, then reports
	// [ErrMailboxClosed]. Implementations with a single receiver per
	// mailbox may return [ErrMailboxBusy] while another client of the same
	// mailbox is open. Options ([WithMailboxIdle]) configure this client
	// only; an implementation ignores those that do not apply to it.
	Mailbox(ctx context.Context, id EntityID, opts ...MailboxOption) (Mailbox, error)

	// Send delivers a copy of m to the mailbox of m.Dest; the caller may
	// reuse m as soon as Send returns. m must pass [Message.Validate]
	// ([ErrBadMessage], [ErrMessageTooLarge] otherwise, also when it does
	// not fit the implementation's largest record). It fails with
	// [ErrBadEntityID] when the mailbox does not exist and
	// [ErrMailboxClosed] when it is terminated. When the mailbox is full,
	// Send waits for space until ctx is done and then returns ctx's error:
	// a message is never dropped silently. Messages from one sender
	// (one goroutine calling Send in sequence) arrive in order.
	Send(ctx context.Context, m *Message) error

	// Status returns the state of the mailbox of id: [StatusMissing] (no
	// error) when it does not exist.
	Status(ctx context.Context, id EntityID) (Status, error)

	// Info returns what the registry holds about id ([ErrBadEntityID]
	// when missing).
	Info(ctx context.Context, id EntityID) (EntityInfo, error)

	// Close releases this handle and closes the Mailbox clients obtained
	// from it (their Recv returns [ErrMailboxClosed]). It terminates no
	// mailbox that another handle can still receive from: other handles
	// and the registry are unaffected. (Where a mailbox lives only as long
	// as the process that owns it, as in [SHM], the last Close of that
	// process terminates the mailboxes it owns, which the others would
	// find terminated anyway.) Close is idempotent; later calls on the
	// handle return [ErrExchangeClosed].
	io.Closer
}

// Reopener is implemented by exchanges that can bring a terminated mailbox
// back under the same id ([SHM] and [Local] do): a supervisor that restarts
// an agent keeps its id, as Academy's restarts do, so that handles and ids
// held elsewhere keep working. Reopen is a no-op on an active mailbox of
// the caller; the reopened mailbox is empty and active, and Discover finds
// the agent again.
//
// Incarnation tells the runs of a mailbox apart: it counts the Reopens of
// id. A request sent while the incarnation was n and still unanswered when
// it is above n was taken by a run that ended (or answered as terminated):
// its caller can stop waiting. Incarnation is cheap (no system call).
type Reopener interface {
	Reopen(ctx context.Context, id EntityID) error
	Incarnation(ctx context.Context, id EntityID) (uint32, error)
}

// IncarnationSender is implemented by exchanges whose Send can report the
// incarnation (see Reopener) of the mailbox that took the message.
type IncarnationSender interface {
	// SendIncarnation is Send that also returns the incarnation of the
	// destination mailbox the message was delivered to, or
	// IncarnationUnknown when the send succeeded and the incarnation
	// could not be learnt.
	SendIncarnation(ctx context.Context, m *Message) (uint32, error)
}

// IncarnationUnknown is what SendIncarnation reports for a message it
// sent when it cannot tell the incarnation of the mailbox that took it (a
// wrapper over an exchange whose look-up failed). No incarnation exceeds
// it, so a caller that compares incarnations to detect a restart never
// takes it for one.
const IncarnationUnknown = math.MaxUint32

// Mailbox is a client that receives from one mailbox. Closing it closes this
// client only, never the mailbox in the exchange: others may still send to
// the mailbox, and a new client may receive what they send. A Mailbox is safe
// for concurrent use, but one receiving goroutine is the normal case.
type Mailbox interface {
	// ID returns the id of the mailbox this client receives from.
	ID() EntityID

	// Recv waits for the next message and decodes it into m, reusing m's
	// capacity (no allocation in steady state); see [Message] for how long
	// the slices in m stay valid. It returns [ErrMailboxClosed] once the
	// mailbox is terminated and drained, or once this client (or the
	// Exchange handle it came from) is closed, and the context's error when
	// ctx is done first. [ErrBadMessage] reports a message that could not be
	// decoded (possible only when the mailbox is shared with other
	// processes); it has been dropped, and the next Recv continues with
	// the following one.
	Recv(ctx context.Context, m *Message) error

	// Close closes this client: its pending and later Recv calls return
	// [ErrMailboxClosed]. It never terminates the mailbox. Closing the
	// client of a terminated mailbox lets go of what is left in it: an
	// implementation may answer the requests left and drop the rest (the
	// shared-memory exchange does, and removes the mailbox's ring). Close
	// is idempotent.
	io.Closer
}

// Behavior describes an agent's type for registration and discovery: its
// name and the names of the behaviors it implements (Academy's base
// classes), used by [Exchange.Discover] with allowSubtypes.
type Behavior struct {
	// Name is the behavior's name, such as "Counter"; required.
	Name string
	// Implements lists the names of the behaviors this one implements or
	// derives from, such as "Agent"; Name itself need not be listed.
	Implements []string
}

// Matches reports whether an agent of behavior b is found by Discover for
// name: b.Name == name, or, with allowSubtypes, name is in b.Implements.
func (b Behavior) Matches(name string, allowSubtypes bool) bool {
	return b.Name == name || allowSubtypes && slices.Contains(b.Implements, name)
}

// Status is the state of a mailbox in an exchange.
type Status uint8

// The states of a mailbox.
const (
	// StatusMissing: no mailbox with that id was ever registered in this
	// exchange.
	StatusMissing Status = 0
	// StatusActive: the mailbox accepts messages.
	StatusActive Status = 1
	// StatusTerminated: the mailbox was terminated; it accepts no more
	// messages.
	StatusTerminated Status = 2
)

// String returns "missing", "active", "terminated" or "Status(n)".
func (s Status) String() string {
	switch s {
	case StatusMissing:
		return "missing"
	case StatusActive:
		return "active"
	case StatusTerminated:
		return "terminated"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// EntityInfo is what the registry holds about an entity.
type EntityInfo struct {
	// ID is the entity's id; ID.Role is its role.
	ID EntityID
	// Name is the name given with [WithName], or empty.
	Name string
	// Behavior is an agent's behavior (Name and Implements); zero for a
	// client.
	Behavior Behavior
	// Status is the state of the entity's mailbox.
	Status Status
}

// RegisterOption configures RegisterAgent and RegisterClient.
type RegisterOption func(*RegisterOptions)

// RegisterOptions holds the settings that RegisterOption functions make; an
// implementation of [Exchange] reads them with [ApplyRegisterOptions].
type RegisterOptions struct {
	// ID is the id to register, or zero for a fresh random one.
	ID EntityID
	// Name is the entity's human-readable name, or empty.
	Name string
}

// WithID registers the entity under id instead of a fresh random one: the
// way to re-create a known agent. The id's role must match the registration.
func WithID(id EntityID) RegisterOption {
	return func(o *RegisterOptions) { o.ID = id }
}

// WithName gives the entity a human-readable name, reported by
// [Exchange.Info]. Names need not be unique and are not carried in messages.
func WithName(name string) RegisterOption {
	return func(o *RegisterOptions) { o.Name = name }
}

// ApplyRegisterOptions applies opts in order to zero RegisterOptions and
// returns them.
func ApplyRegisterOptions(opts []RegisterOption) RegisterOptions {
	var o RegisterOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// ResolveRegistration applies opts for a registration with role: it returns
// the id to register (the one given with [WithID], or a fresh random one)
// and the name. It checks what every implementation must check: a given id
// has a non-zero UUID ([ErrInvalidArgument]) and the role ([ErrWrongRole]).
func ResolveRegistration(role Role, opts []RegisterOption) (EntityID, string, error) {
	o := ApplyRegisterOptions(opts)
	id := o.ID
	switch {
	case id.IsZero():
		id = EntityID{UUID: NewUUID(), Role: role}
	case id.UUID.IsZero():
		return EntityID{}, "", fmt.Errorf("%w: WithID with a zero UUID", ErrInvalidArgument)
	case id.Role != role:
		return EntityID{}, "", fmt.Errorf("%w: WithID(%v) to register a %v", ErrWrongRole, id, role)
	}
	return id, o.Name, nil
}
