// Package exchange defines the shmex exchange: entities, their mailboxes,
// the messages they send each other, and the [Exchange] and [Mailbox]
// interfaces that every implementation (shared memory, in-process [Local],
// proxy-store wrappers, remote ones) satisfies and that the conformance
// suite in package exchangetest checks.
//
// # Model
//
// An exchange hosts one mailbox per entity. An entity is an agent or a
// client, identified by an [EntityID]: a random [UUID] and a [Role]. Agents
// are registered with a [Behavior] (a name and the names of the behaviors
// it implements), which [Exchange.Discover] searches; clients invoke agents
// and receive their responses. Names are optional, live in the registry
// ([WithName], [Exchange.Info]) and never travel in messages.
//
// A mailbox is active until it is terminated ([Exchange.Terminate]); a
// terminated mailbox stays in the registry ([StatusTerminated]; in a
// shared-memory exchange, until a new registration needs its slot), refuses
// new messages with [ErrMailboxClosed], answers the requests still queued
// in it with error responses so that no caller waits forever, and lets its
// receiver drain the rest. A supervisor that restarts an agent can bring
// its terminated mailbox back under the same id ([Reopener]; each reopen
// is a new incarnation of the mailbox). A [Mailbox] value is a client that
// receives from one mailbox; closing it never terminates the mailbox.
//
// # Messages
//
// A [Message] is one envelope for Academy's six message kinds
// (ActionRequest, ActionResponse, PingRequest, PingResponse,
// ShutdownRequest, ShutdownResponse), told apart by its [Kind]. A request
// carries a fresh Tag; its response carries the same Tag and Label with Src
// and Dest swapped ([Message.Response], [Message.SetResponse]). An error
// response carries a [RemoteError] (a kind and a message: plain data, never
// executable) in ErrorKind and ErrorMessage; [Message.Err] returns it.
// Action arguments and results are opaque byte strings, by convention
// MessagePack, so that any language can read them; large payloads travel as
// proxies into a proxy store, not in the message.
//
// # Byte slices and their lifetimes
//
//   - Send copies (encodes) the message before it returns: the caller may
//     reuse or modify its Message, and the slices in it, at once.
//   - Recv decodes into the caller's Message, overwriting its byte slices in
//     place and reusing their capacity, so a receive loop that reuses one
//     Message allocates nothing in steady state. The slices never alias
//     shared memory or the exchange's buffers; they stay valid until the
//     Message is next decoded into, reset or modified. Copy what must live
//     longer (or [Message.Clone] it).
//   - The constructors ([NewActionRequest], ...) copy their byte arguments.
//
// # Wire format
//
// A Message is encoded as a MessagePack array of 11 elements, by code that
// github.com/tinylib/msgp generates (go generate); decoding checks every
// length against the remaining bytes and the limits [MaxTextSize] and
// [MaxPayloadSize] before it copies, and never panics:
//
//	#   field          type              meaning
//	0   kind           uint              1..6, see Kind
//	1   tag            bin 16            UUID
//	2   src            [bin 16, uint]    EntityID: UUID, Role (1 agent, 2 client)
//	3   dest           [bin 16, uint]    EntityID
//	4   label          bin 16            UUID, zero when unused
//	5   action         str               (nil read as empty)
//	6   args           bin               (nil read as empty)
//	7   result         bin               (nil read as empty)
//	8   error_kind     str               non-empty in error responses only
//	9   error_message  str
//	10  terminate      bool
//
// [Message.EncodedSize] (equal to the generated Msgsize, which is exact
// here) and [Message.EncodeTo] let a sender claim exactly the right space in
// a ring and encode in place; [Message.Decode] decodes and validates one
// whole message.
//
// # Correspondence with Academy
//
//	Academy                                   shmex
//	register_agent(behavior, agent_id, name)  RegisterAgent(ctx, Behavior, WithID, WithName)
//	register_client(name)                     RegisterClient(ctx, WithName)
//	terminate(uid)                            Terminate(ctx, id)
//	discover(behavior, allow_subclasses)      Discover(ctx, name, allowSubtypes)
//	get_mailbox(uid)                          Mailbox(ctx, id)
//	send(uid, message)                        Send(ctx, m), to m.Dest
//	status(uid) -> MailboxStatus              Status(ctx, id) -> Status
//	mailbox.recv(timeout)                     Mailbox.Recv(ctx, m), ctx with a deadline
//	mailbox.close()                           Mailbox.Close()
//	BadEntityIdError                          ErrBadEntityID
//	MailboxClosedError                        ErrMailboxClosed
//	MailboxTerminatedError                    ErrMailboxClosed (ErrorKindMailboxTerminated in answers)
//	TimeoutError                              context.DeadlineExceeded
//	AgentId, UserId                           EntityID with RoleAgent, RoleClient
//	Message.tag, src, dest, label             Message.Tag, Src, Dest, Label
//
// Handles, behaviors, launchers and managers belong to higher layers.
package exchange
