package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// endpoint is a mailbox that handles send requests from and receive
// responses in: a Client's, or a Runtime's own. It holds the calls in
// flight, keyed by tag. A client's endpoint receives itself (mb != nil:
// the receive token, receive.go); a runtime's is fed by the runtime's
// serving goroutines (deliver).
//
// Invariants (under mu):
//   - A call is in calls from its registration until it is complete; it is
//     completed exactly once, by whoever removes it from calls (deliver,
//     fail, cancelCalls, the watcher, close).
//   - While calls is non-empty, exactly one watcher goroutine runs
//     (watching); it exits only when it finds calls empty.
//   - Once closeErr is set no call is added.
type endpoint struct {
	x     exchange.Exchange
	id    exchange.EntityID
	log   *slog.Logger
	poll  time.Duration
	grace time.Duration

	// How the send learns the incarnation of the mailbox it delivered to:
	// incSender when the exchange reports it, else reopener before the
	// send; neither for an exchange that cannot reopen mailboxes.
	incSender exchange.IncarnationSender
	reopener  exchange.Reopener
	async     exchange.AsyncSender // when the exchange is one: responses go without waiting

	tagPrefix uint64        // random, with the version bits: a tag's first half (putTag)
	tagSeq    atomic.Uint64 // requests made, for nextTag

	mu       sync.Mutex
	calls    callTable
	closeErr error
	watching bool

	recv receiver // a client's: the receive token and the listener
}

func newEndpoint(x exchange.Exchange, id exchange.EntityID, o *options) *endpoint {
	ep := &endpoint{x: x, id: id, log: o.log, poll: o.statusPoll, grace: o.grace}
	t := exchange.NewTag()
	ep.tagPrefix = binary.BigEndian.Uint64(t[:8])&^0xf000 | 0x4000 // version 4 (byte 6)
	ep.incSender, _ = x.(exchange.IncarnationSender)
	ep.reopener, _ = x.(exchange.Reopener)
	ep.async, _ = x.(exchange.AsyncSender)
	return ep
}

// maxPooledBytes bounds the buffers a pooled Message keeps.
const maxPooledBytes = 64 << 10

var msgPool = sync.Pool{New: func() any { return new(exchange.Message) }}

func getMsg() *exchange.Message { return msgPool.Get().(*exchange.Message) }

// msgBytes is the capacity of m's payload buffers.
func msgBytes(m *exchange.Message) int { return cap(m.Args) + cap(m.Result) + cap(m.ErrorMessage) }

func putMsg(m *exchange.Message) {
	if m == nil || msgBytes(m) > maxPooledBytes {
		return // do not pin large buffers
	}
	resetMsg(m)
	msgPool.Put(m)
}

// resetMsg is m.Reset() field by field: Reset assigns a whole Message,
// which costs a bulk write barrier while the GC runs (TestResetMsg checks
// that the two agree).
func resetMsg(m *exchange.Message) {
	// One field per statement: a tuple assignment zeroes temporaries and
	// copies them, and the copy of a 17-byte one stalls on store forwarding.
	m.Kind = 0
	m.Tag = exchange.UUID{}
	m.Src = exchange.EntityID{}
	m.Dest = exchange.EntityID{}
	m.Label = exchange.UUID{}
	m.Terminate = false
	m.Action = m.Action[:0]
	m.Args = m.Args[:0]
	m.Result = m.Result[:0]
	m.ErrorKind = m.ErrorKind[:0]
	m.ErrorMessage = m.ErrorMessage[:0]
}

// Request tags: the endpoint's random prefix and a count, as a version 4
// UUID. Unique among the endpoint's requests (what routing needs) and, with
// 64 random bits, across endpoints; cheaper than drawing 128 random bits
// per call.

// nextTag returns the count of the next tag (see putTag).
func (ep *endpoint) nextTag() uint64 { return ep.tagSeq.Add(1) }

// putTag writes the tag of count n to u, in two whole words (version and
// variant bits folded in: no byte edits, which would stall the next copy
// of u on store forwarding). The count's top two bits are the variant
// (RFC 9562, 0b10): it never gets there.
func (ep *endpoint) putTag(u *exchange.UUID, n uint64) {
	binary.BigEndian.PutUint64(u[:8], ep.tagPrefix)
	binary.BigEndian.PutUint64(u[8:], n&^(3<<62)|1<<63)
}

// register adds c to the calls in flight; with lead, it also gives c's
// caller the receive token when it is free. It fails when the endpoint or
// the handle is closed.
func (ep *endpoint) register(c *call, lead bool) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closeErr != nil {
		return ep.closeErr
	}
	if c.h.closed {
		return ErrHandleClosed
	}
	ep.calls.add(c)
	c.h.inflight++
	if !ep.watching {
		ep.watching = true
		go ep.watch()
	}
	if ep.recv.mb != nil {
		if lead {
			ep.recv.takeLocked(c)
		} else {
			ep.recv.pendingLocked() // someone must receive for a future
		}
	}
	return nil
}

// fail completes c with err unless it is complete already.
func (ep *endpoint) fail(c *call, err error) {
	ep.mu.Lock()
	if ep.calls.remove(c) {
		c.completeLocked(err)
	}
	ep.mu.Unlock()
}

// failSend is fail for c's owner after a failed send: the receive token
// that register gave it is released.
func (ep *endpoint) failSend(c *call, err error) {
	ep.mu.Lock()
	if ep.calls.remove(c) {
		c.completeLocked(err)
	}
	if c.leads {
		ep.recv.releaseLocked()
	}
	ep.mu.Unlock()
}

// deliver routes the response m, received by a runtime's serving
// goroutine, to its call. It returns the Message to receive the next
// message into: the call's free buffer when m went to it, else m.
func (ep *endpoint) deliver(m *exchange.Message) *exchange.Message {
	ep.mu.Lock()
	next, ok := ep.deliverLocked(m, nil)
	ep.mu.Unlock()
	if !ok {
		ep.log.Debug("agent: dropping a response to no call in flight", "mailbox", ep.id, "msg", m)
	}
	if next == nil {
		next = getMsg()
	}
	return next
}

// deliverLocked is deliver with ep.mu held. rerr, when not nil, says that
// m could not be received whole (a payload that did not resolve, a
// message that did not decode): its call fails with that error. It
// reports whether m went to a call, and returns the Message to receive
// into next: the completed call's free buffer, or m itself.
func (ep *endpoint) deliverLocked(m *exchange.Message, rerr error) (*exchange.Message, bool) {
	c := ep.calls.get(m.Tag)
	if c == nil || c.h.label != m.Label {
		return m, false
	}
	ep.calls.remove(c)
	switch {
	case rerr != nil:
		c.completeLocked(fmt.Errorf("agent: the response from %v to a %v could not be received: %w", c.dest, c.kind, rerr))
		return m, true
	case m.Kind != c.kind.ResponseKind():
		c.completeLocked(fmt.Errorf("%w: a %v answered a %v", exchange.ErrBadMessage, m.Kind, c.kind))
		return m, true
	}
	next := c.msg
	if c.phase.CompareAndSwap(phaseSending, phaseEarly) {
		next = getMsg() // the sender still holds its request, and recycles it
	}
	c.msg, c.resp = m, true
	c.completeLocked(nil)
	return next, true
}

// sendErr maps an exchange send error to what a caller sees.
func sendErr(dest exchange.EntityID, err error) error {
	if errors.Is(err, exchange.ErrBadEntityID) {
		return noSuchAgent(dest, err) // explain.go
	}
	if errors.Is(err, exchange.ErrMailboxClosed) {
		return fmt.Errorf("%w: %v: %w", ErrAgentTerminated, dest, err)
	}
	return err
}

// cancelCalls fails the calls for which match is true with err.
func (ep *endpoint) cancelCalls(match func(*call) bool, err error) {
	ep.mu.Lock()
	ep.calls.each(func(c *call) {
		if match(c) {
			ep.calls.remove(c)
			c.completeLocked(err)
		}
	})
	ep.mu.Unlock()
}

// close fails every call in flight with err and refuses new ones.
func (ep *endpoint) close(err error) {
	ep.mu.Lock()
	if ep.closeErr == nil {
		ep.closeErr = err
	}
	ep.recv.closeLocked()
	ep.mu.Unlock()
	ep.cancelCalls(func(*call) bool { return true }, err)
}

// watch polls the status of the agents that calls in flight wait on, and
// fails the calls to an agent that stayed terminated (or missing) for the
// grace period, or that was restarted since the call was sent: a request
// taken by a process that then died is never answered, and nothing else
// would tell its caller.
func (ep *endpoint) watch() {
	t := time.NewTicker(ep.poll)
	defer t.Stop()
	dests := map[exchange.EntityID]bool{}  // dest -> active
	incs := map[exchange.EntityID]uint32{} // dest -> incarnation
	for range t.C {
		ep.mu.Lock()
		if ep.calls.len() == 0 {
			ep.watching = false
			ep.mu.Unlock()
			return
		}
		clear(dests)
		clear(incs)
		ep.calls.each(func(c *call) { dests[c.dest] = true })
		ep.mu.Unlock()

		var fatal error
		for d := range dests {
			ctx, cancel := context.WithTimeout(context.Background(), ep.poll)
			st, err := ep.x.Status(ctx, d)
			cancel()
			switch {
			case errors.Is(err, exchange.ErrExchangeClosed):
				fatal = err
			case err != nil:
				ep.log.Debug("agent: status poll failed", "agent", d, "err", err)
			default:
				dests[d] = st == exchange.StatusActive
			}
			if ep.reopener != nil {
				ctx, cancel := context.WithTimeout(context.Background(), ep.poll)
				if inc, err := ep.reopener.Incarnation(ctx, d); err == nil {
					incs[d] = inc
				}
				cancel()
			}
		}
		if fatal != nil {
			ep.cancelCalls(func(*call) bool { return true }, fmt.Errorf("%w: %w", ErrHandleClosed, fatal))
			continue
		}

		now := monoNow()
		ep.mu.Lock()
		ep.calls.each(func(c *call) {
			active, seen := dests[c.dest]
			if inc, ok := incs[c.dest]; ok {
				if sent := c.inc.Load(); sent&incKnown != 0 && inc > uint32(sent) {
					// The run that the request went to ended, and the
					// agent was restarted under its id: no answer will
					// come.
					ep.calls.remove(c)
					c.completeLocked(fmt.Errorf("%w: %v was restarted and did not answer", ErrAgentTerminated, c.dest))
					return
				}
			}
			switch {
			case !seen || active:
				c.deadSince = 0
			case c.deadSince == 0 && ep.grace > 0:
				c.deadSince = now
			case c.deadSince == 0 || time.Duration(now-c.deadSince) >= ep.grace:
				ep.calls.remove(c)
				c.completeLocked(fmt.Errorf("%w: %v is no longer active and did not answer", ErrAgentTerminated, c.dest))
			}
		})
		ep.mu.Unlock()
	}
}

// strayAnswerTimeout bounds how long a client waits for room in the mailbox
// of a peer that sent it a request, to answer it with an error.
const strayAnswerTimeout = 100 * time.Millisecond

// answerStray answers a request that came to a client's mailbox with an
// error, without waiting long for the sender's mailbox: the receive token
// is held, and its holder's calls depend on it.
func (ep *endpoint) answerStray(m *exchange.Message) {
	m.SetErrorResponse(m, &exchange.RemoteError{Kind: ErrorKindNotAnAgent, Message: "mailbox " + ep.id.String() + " is a client"})
	ctx, cancel := context.WithTimeout(context.Background(), strayAnswerTimeout)
	if err := ep.x.Send(ctx, m); err != nil {
		ep.log.Debug("agent: client could not answer a request", "to", m.Dest, "err", err)
	}
	cancel()
}

// sendResponse sends a response: with SendAsync when the exchange is an
// exchange.AsyncSender (not waited for; Runtime.Run flushes), else Send.
func (ep *endpoint) sendResponse(ctx context.Context, m *exchange.Message) error {
	if ep.async != nil {
		return ep.async.SendAsync(ctx, m)
	}
	return ep.x.Send(ctx, m)
}
