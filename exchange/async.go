package exchange

import "context"

// AsyncSender is implemented by exchanges that can send a message without
// waiting for it to be committed: SendAsync checks and encodes the message,
// queues it for delivery and returns, and the exchange commits it in the
// background (on a networked exchange, in a later round trip shared with
// other sends). It is meant for messages whose sender has nothing to do
// with the outcome, such as the agent layer's responses; a request, whose
// caller must learn that it was not delivered, goes through Send.
//
// Guarantees:
//
//   - SendAsync returns an error, and queues nothing, when m does not pass
//     [Message.Validate] or does not fit ([ErrBadMessage],
//     [ErrMessageTooLarge]), when the handle is closed
//     ([ErrExchangeClosed]), and when ctx ends while it waits for room in
//     the handle's queue of unsent messages (which is bounded). Otherwise m
//     was copied (the caller may reuse it at once) and is queued.
//   - Order: the messages that one goroutine sends to one destination
//     through one handle, with SendAsync or Send, are committed in the
//     order of the calls, except a message that found the destination's
//     mailbox full: it waits for room apart from the others and may be
//     committed after messages sent later.
//   - A full mailbox: the queued message waits for room, as Send does,
//     until the ctx given to SendAsync ends (the context is kept past the
//     call for that: pass one that outlives it, ended when waiting is no
//     longer wanted) or the handle is closed and its flush gives up.
//   - Failures after SendAsync returned (destination missing or
//     terminated, mailbox still full when ctx ends, the exchange's backend
//     unreachable or a reply lost) are never silent: each is logged through
//     the exchange's logger (a missing or terminated destination at debug
//     level, as the agent layer logs a response to a requester that is
//     gone; the rest at warn level), and the next [AsyncSender.Flush]
//     returns the first of them.
//   - Delivery: at most once. A queued message whose commit failed, or
//     whose reply was lost, is not sent again (a lost reply leaves it
//     unknown whether it was committed). Once committed, it has Send's
//     guarantee (at least once to a receiver that may die, see the
//     implementation). Requests need their caller to learn of a failure:
//     send them with Send.
//   - Close of the handle flushes first: it waits for the queued messages
//     to be committed or to fail (bounded by the implementation's outage
//     wait), so that a clean shutdown loses nothing that was queued.
type AsyncSender interface {
	// SendAsync queues a copy of m for delivery to m.Dest and returns
	// without waiting for it to be committed (see AsyncSender).
	SendAsync(ctx context.Context, m *Message) error

	// Flush waits until every message queued with SendAsync on this
	// handle has been committed or has failed, or until ctx ends (its
	// error then). It returns the first failure of a queued message since
	// the previous Flush, or nil.
	Flush(ctx context.Context) error
}
