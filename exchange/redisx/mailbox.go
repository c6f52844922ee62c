package redisx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/shmex/shmex/exchange"
)

// Receiving (see the package documentation on delivery). A receiver moves
// what it takes from the mailbox list q to its taken list f, and drops from
// f what it took the time before only when it comes back for more: a
// message stays in Redis until then, so a receiver that dies loses nothing.
// Each take is a blocking move (BLMOVE q f), which returns at once when q
// holds something and otherwise waits for the next send, pipelined with the
// fetch script that acknowledges and takes the rest of the batch; a Close,
// a Terminate or the end of the Recv's context end the wait with a wake-up
// marker.

// blockStep bounds one blocking move: the receiver then looks at the
// mailbox's record again (reopened, taken over). Well under the client's
// read timeout (3 s), which bounds the reply's wait.
const blockStep = time.Second

// mailbox is a receiving client of one mailbox.
type mailbox struct {
	x     *Exchange
	id    exchange.EntityID
	hex   string
	k     entityKeys
	token string // receiver token, "<session>/<n>"
	inc   string // incarnation attached to

	closed  atomic.Bool
	blocked atomic.Bool // a Recv waits in a blocking move

	mu      sync.Mutex // one Recv at a time; guards what follows
	buf     []string   // taken, not yet returned, oldest first
	known   int        // elements of f this client took (all returned when buf is empty)
	seq     uint64     // sequence number of the last fetch that got its reply
	term    bool       // the mailbox was seen terminated
	over    bool       // reopened or taken over: closed for this client
	missing time.Time  // when the record was first found missing
	last    string     // the message Recv returned last
	answer  exchange.Message
}

var _ exchange.Mailbox = (*mailbox)(nil)

// ID implements [exchange.Mailbox.ID].
func (mb *mailbox) ID() exchange.EntityID { return mb.id }

// Recv implements [exchange.Mailbox.Recv]. While Redis cannot be reached it
// keeps reconnecting until ctx ends (a receive loop outlives a Redis
// restart); the error then wraps both ctx's error and [ErrUnavailable].
func (mb *mailbox) Recv(ctx context.Context, m *exchange.Message) error {
	if mb.closed.Load() {
		return exchange.ErrMailboxClosed
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	s := mb.x.s
	var outage error
	backoff := 5 * time.Millisecond
	for {
		if mb.closed.Load() {
			return exchange.ErrMailboxClosed
		}
		if len(mb.buf) > 0 {
			b := mb.buf[0]
			mb.buf[0] = ""
			mb.buf = mb.buf[1:]
			mb.last = b
			raw := unsafe.Slice(unsafe.StringData(b), len(b)) // Decode copies; never written
			if mb.term && len(b) > 1 && exchange.Kind(b[1]).IsRequest() {
				// Found after the mailbox was terminated: answered, as the
				// requests still queued were by Terminate.
				if mb.answer.Decode(raw) == nil {
					s.answer(ctx, mb.id.UUID, []any{b})
				}
				continue
			}
			return m.Decode(raw)
		}
		if mb.over {
			return exchange.ErrMailboxClosed
		}
		if err := ctx.Err(); err != nil {
			if outage != nil {
				return fmt.Errorf("%w: %w", err, outage)
			}
			return err
		}
		err := mb.take(ctx)
		if err == nil && len(mb.buf) == 0 && mb.term {
			return exchange.ErrMailboxClosed
		}
		if err == nil {
			outage, backoff = nil, 5*time.Millisecond
			continue
		}
		if errors.Is(err, exchange.ErrMailboxClosed) || errors.Is(err, exchange.ErrExchangeClosed) {
			return exchange.ErrMailboxClosed
		}
		if !errors.Is(err, ErrUnavailable) {
			if ctx.Err() != nil {
				continue // reported above
			}
			return err
		}
		if outage == nil {
			s.log.Warn("redisx: receiver lost Redis; reconnecting", "mailbox", mb.id, "err", err)
		}
		outage = err
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// take acknowledges what was taken and returned, and takes the next batch
// into buf, in one round trip: a blocking move (BLMOVE q f), which returns
// at once when the mailbox holds something and otherwise waits for the
// next message, at most blockStep (or until ctx's deadline); then the fetch
// script, which runs when the move returns and hands back everything the
// receiver now holds. Both replies come back together: the receiver wakes
// once per batch. A receiver that knows its mailbox terminated does not
// wait. take sets term, or over, or fails with ErrUnavailable.
func (mb *mailbox) take(ctx context.Context) error {
	s := mb.x.s
	wait := blockStep
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	block := wait >= time.Millisecond && !mb.term
	if block {
		mb.blocked.Store(true)
		if mb.closed.Load() { // Close looks at blocked after it sets closed
			block = false
			mb.blocked.Store(false)
		}
	}
	// No deadline of the caller's on the socket: the server's timeout ends
	// the move, and a read cut short leaves the outcome unknown (what the
	// move took would come back at the next take, but later).
	bg := context.Background()
	pipe := s.cl.Pipeline()
	if block {
		// (go-redis's BLMove rounds the timeout up to whole seconds: the
		// command is spelled out, with milliseconds.)
		pipe.Process(bg, redis.NewStringCmd(bg, "BLMOVE", mb.k.q, mb.k.f, "RIGHT", "LEFT",
			strconv.FormatFloat(wait.Seconds(), 'f', 3, 64)))
	}
	keys := []string{mb.k.e, mb.k.q, mb.k.f}
	args := []any{s.k.tag, s.grace, mb.token, mb.inc, strconv.FormatUint(mb.seq+1, 10), mb.known, s.o.batch}
	stale := s.scriptsStale.Load()
	// By body after a restart (which loads it again), else by hash.
	fc := redis.NewStringSliceCmd(bg, fetchScript.cmdArgs(stale, keys, args)...)
	pipe.Process(bg, fc)
	var stop func() bool
	if block {
		stop = context.AfterFunc(ctx, mb.wake)
	}
	pipe.Exec(bg)
	if block {
		stop()
		mb.blocked.Store(false)
	}
	res, err := fc.Result()
	switch {
	case redis.HasErrorPrefix(err, "NOSCRIPT"):
		s.scriptsStale.Store(true)
		return nil // did not run: again, with its body
	case err != nil:
		if isNetErr(err) {
			s.scriptsStale.Store(true)
		}
		// Whatever the move took is in f: the next fetch returns it.
		return unavailable(err)
	case stale:
		s.scriptsStale.Store(false)
	}
	return mb.fetched(res)
}

// fetched handles the fetch script's reply.
func (mb *mailbox) fetched(res []string) error {
	s := mb.x.s
	if len(res) == 0 {
		return fmt.Errorf("%w: fetch returned nothing", ErrProtocol)
	}
	code, err := strconv.Atoi(res[0])
	if err != nil {
		return fmt.Errorf("%w: fetch returned code %q", ErrProtocol, res[0])
	}
	switch code {
	case codeMissing:
		// Redis lost the record (and f): its owner writes it back within
		// a beat. Nothing of the new f is this client's yet.
		mb.known = 0
		if mb.missing.IsZero() {
			mb.missing = time.Now()
		}
		if time.Since(mb.missing) > 2*s.o.ttl {
			mb.over = true
			return fmt.Errorf("%w: %v is gone from Redis", exchange.ErrMailboxClosed, mb.id)
		}
		return fmt.Errorf("%w: the record of %v is missing (Redis lost its data?)", ErrUnavailable, mb.id)
	case codeReopened, codeDetached:
		mb.over = true
		return exchange.ErrMailboxClosed
	case codeTerminated:
		mb.term = true
	case codeActive:
	default:
		return fmt.Errorf("%w: fetch returned code %d", ErrProtocol, code)
	}
	mb.seq++
	mb.missing = time.Time{}
	mb.buf = mb.buf[:0]
	for _, b := range res[1:] {
		if b != "" {
			mb.buf = append(mb.buf, b)
		}
	}
	mb.known = len(mb.buf)
	return nil
}

// wake ends a blocking move of this client with a marker.
func (mb *mailbox) wake() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	mb.x.s.cl.LPush(ctx, mb.k.q, "")
}

// Close implements [exchange.Mailbox.Close]: the messages taken and not
// returned go back to the head of the mailbox for the next receiver.
func (mb *mailbox) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), mb.x.o.outage)
	defer cancel()
	mb.close(ctx, true)
	return nil
}

// close closes the client, giving up on Redis when ctx ends (the session
// then retries the release at each heartbeat).
func (mb *mailbox) close(ctx context.Context, forget bool) {
	if mb.closed.Swap(true) {
		return
	}
	if mb.blocked.Load() {
		mb.wake()
	}
	mb.mu.Lock()
	s := mb.x.s
	if err := mb.release(ctx); err != nil {
		s.log.Warn("redisx: releasing a mailbox; retried at each heartbeat", "mailbox", mb.id, "err", err)
		s.mu.Lock()
		s.releases[mb.token] = mb
		s.mu.Unlock()
	}
	mb.mu.Unlock()
	if forget {
		mb.x.forget(mb)
	}
}

// release detaches the receiver in Redis. Called with mu held, or from the
// session's retries once the client is closed.
func (mb *mailbox) release(ctx context.Context) error {
	s := mb.x.s
	returned := max(mb.known-len(mb.buf), 0)
	err := s.retry(ctx, true, func(ctx context.Context) error {
		return releaseScript.Run(ctx, s.cl, []string{mb.k.e, mb.k.q, mb.k.f}, s.k.tag, s.grace, mb.token, returned).Err()
	})
	if err != nil {
		return err
	}
	s.setReceiver(mb.id.UUID, "")
	return nil
}

// unget puts the message Recv returned last back in front: it counts as
// not returned (a Close gives it back to the mailbox). For the hybrid's
// forwarder, the only receiver of its client.
func (mb *mailbox) unget() {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.last != "" {
		mb.buf = append([]string{mb.last}, mb.buf...)
		mb.last = ""
	}
}

func (mb *mailbox) s() *session { return mb.x.s }
