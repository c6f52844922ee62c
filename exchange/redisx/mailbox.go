package redisx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/shmex/shmex/exchange"
)

// Receiving (see the package documentation on delivery). A receiver moves
// what it takes from the mailbox list q to a taken list f of its own, and
// drops from f what it took the time before only when it comes back for
// more: a message stays in Redis until then, so a receiver that dies loses
// nothing. A take is one round trip of plain commands (see take): the trim
// of f that acknowledges the previous batch; a blocking move of one
// message (BLMOVE q f) when nothing was pending, else the rename of the
// whole of q to f and the read of a batch of it; the mailbox's length;
// the record's state. A Close, a Terminate or the end of the Recv's
// context end the wait with a wake-up marker. Only this receiver writes to
// its f, so the trim by count is exact; after a take whose reply was lost,
// the recover script finds out what f holds.

// blockStep bounds one blocking move: the receiver then looks at the
// mailbox's record again (reopened, taken over). Well under the client's
// read timeout (3 s), which bounds the reply's wait.
const blockStep = time.Second

// recordCheck bounds how long a receiver whose takes bring messages goes
// without reading its mailbox's record (state, incarnation, receiver): a
// take reads it when it did not for that long; otherwise only a take that
// finds a marker does, in a second round trip. Terminate pushes a marker
// after it marks the record (and what is sent after a terminate lies
// behind it), so a terminate is seen before any message sent after it is
// returned; what it bounds is how long a receiver that was taken over
// (seen dead while it lived) or whose record Redis lost goes on taking.
const recordCheck = 50 * time.Millisecond

// mailbox is a receiving client of one mailbox.
type mailbox struct {
	x     *Exchange
	id    exchange.EntityID
	hex   string
	k     entityKeys
	f     string // this client's taken list
	token string // receiver token, "<session>/<n>"
	inc   string // incarnation attached to

	closed  atomic.Bool
	blocked atomic.Bool // a Recv waits in a blocking move

	mu       sync.Mutex  // one Recv at a time; guards what follows
	buf      []string    // taken, not yet returned, oldest first
	bufStore []string    // buf's backing array, from its start
	held     []string    // what f holds (markers too), oldest first
	queued   int         // messages may be pending after the last take, in f or in the mailbox (0: the next take blocks)
	dirty    bool        // a take's reply was lost: f must be recovered first
	term     bool        // the mailbox was seen terminated
	over     bool        // reopened or taken over: closed for this client
	missing  time.Time   // when the record was first found missing
	last     string      // the message Recv returned last
	checked  time.Time   // when a take last read the record
	conn     *redis.Conn // pinned for the takes (nil: not yet, or a cluster client)
	answer   exchange.Message
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
					s.answer(ctx, mb.id.UUID, &mb.answer)
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
		if err == nil && len(mb.buf) == 0 && mb.term && mb.queued == 0 {
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
// into buf, in one round trip of plain commands, which starts with the trim
// of f that drops the previous batch (after it f is empty, unless the last
// take left some of what it moved there). When nothing was pending after
// the last take, a blocking move (BLMOVE q f) takes one message, returning
// at once when the mailbox holds something and otherwise waiting for the
// next one, at most blockStep (or until ctx's deadline); the mailbox's
// length follows (none in a ping-pong). When messages were pending, the
// take does not wait: it renames the whole mailbox into f (RENAMENX, O(1),
// which does nothing while f still holds some of the last move), reads
// the oldest batch of f and the length of the new mailbox (a full batch
// says that f may hold more). Every
// few takes, and after one that found a marker, the record's state. The
// replies come back together: the receiver wakes once per batch. A
// receiver that knows its mailbox terminated does not wait. take sets term,
// or over, or fails with ErrUnavailable.
func (mb *mailbox) take(ctx context.Context) error {
	s := mb.x.s
	if mb.dirty {
		if err := mb.recover(ctx); err != nil || len(mb.buf) > 0 {
			return err
		}
	}
	wait := blockStep
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	block := wait >= time.Millisecond && !mb.term && mb.queued == 0
	if block {
		mb.blocked.Store(true)
		if mb.closed.Load() { // Close looks at blocked after it sets closed
			block = false
			mb.blocked.Store(false)
		}
	}
	// No deadline of the caller's on the socket: the server's timeout ends
	// the move, and a read cut short leaves the outcome unknown.
	bg := context.Background()
	if mb.conn == nil {
		mb.conn = s.pinRecv()
	}
	pipe := s.pipeline(mb.conn)
	// The acknowledgment first: it runs before the move blocks, off the
	// path from a send to this receiver's wake-up.
	if n := len(mb.held); n > 0 {
		pipe.LTrim(bg, mb.f, 0, int64(-(n + 1)))
	}
	var bl *redis.StringCmd
	var rn *redis.BoolCmd
	var rg *redis.StringSliceCmd
	if block {
		// (go-redis's BLMove rounds the timeout up to whole seconds: the
		// command is spelled out, with milliseconds.)
		bl = redis.NewStringCmd(bg, "blmove", mb.k.q, mb.f, "RIGHT", "LEFT",
			strconv.FormatFloat(wait.Seconds(), 'f', 3, 64))
		pipe.Process(bg, bl)
	} else {
		// The whole mailbox becomes f when f is empty; a mailbox that does
		// not exist (empty) fails the rename, which says only that.
		rn = pipe.RenameNX(bg, mb.k.q, mb.f)
		rg = pipe.LRange(bg, mb.f, int64(-s.o.batch), -1)
	}
	qlen := pipe.LLen(bg, mb.k.q)
	// The record is read when it was not for recordCheck, and by a take
	// that does not block; otherwise only after a take that found a
	// marker (below).
	var rec *redis.SliceCmd
	if !block || time.Since(mb.checked) >= recordCheck {
		rec = pipe.HMGet(bg, mb.k.e, "st", "inc", "rcv")
	}
	var stop func() bool
	if block {
		stop = context.AfterFunc(ctx, mb.wake)
	}
	_, err := pipe.Exec(bg)
	if block {
		stop()
		mb.blocked.Store(false)
	}
	if err != nil && rn != nil && redis.HasErrorPrefix(rn.Err(), "no such key") {
		// The mailbox was empty, which the rename says with an error:
		// the other replies say what f holds.
		err = nil
		for _, c := range []redis.Cmder{rg, qlen, rec} {
			if c != nil && c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
				err = c.Err()
				break
			}
		}
	}
	mb.conn = s.unpinRecv(mb.conn, err)
	if err != nil && !errors.Is(err, redis.Nil) {
		mb.dirty = true // what f holds is not known any more
		return unavailable(err)
	}
	mb.held = mb.held[:0]
	left := 0
	if bl != nil {
		if v, err := bl.Result(); err == nil {
			mb.held = append(mb.held, v)
		}
	}
	if rg != nil {
		v := rg.Val() // the newest first
		for i := len(v) - 1; i >= 0; i-- {
			mb.held = append(mb.held, v[i])
		}
		if len(v) == s.o.batch {
			left = 1 // maybe more in f: the next take does not wait
		}
	}
	mb.queued = left + int(qlen.Val())
	if rec == nil && slices.Contains(mb.held, "") {
		// A Terminate, a Close or a wake-up pushed a marker: what was sent
		// after it is returned only once the record says what happened.
		ctx, cancel := context.WithTimeout(bg, s.o.outage)
		err := s.retry(ctx, true, func(ctx context.Context) error {
			rec = s.cl.HMGet(ctx, mb.k.e, "st", "inc", "rcv")
			return rec.Err()
		})
		cancel()
		if err != nil {
			// f holds the previous batch no more (the trim ran) and this
			// one: recover hands all of it out.
			mb.held = mb.held[:0]
			mb.dirty = true
			return unavailable(err)
		}
	}
	if rec == nil {
		mb.fill()
		return nil
	}
	mb.checked = time.Now()
	v := rec.Val()
	st, inc, rcv := str(v[0]), str(v[1]), str(v[2])
	switch {
	case st == "":
		// Redis lost the record: its owner writes it back within a beat.
		// What was moved is delivered.
		if mb.missing.IsZero() {
			mb.missing = time.Now()
		}
		if time.Since(mb.missing) > 2*s.o.ttl {
			mb.over = true
		}
	case inc != mb.inc || rcv != mb.token:
		// Reopened, or taken over (this client was seen dead): what it
		// moved goes back for the mailbox's receiver.
		mb.over = true
		ctx, cancel := context.WithTimeout(bg, s.o.outage)
		err := s.retry(ctx, true, func(ctx context.Context) error {
			return releaseScript.Run(ctx, s.cl, []string{mb.k.e, mb.k.q, mb.f}, s.k.tag, s.grace, mb.token, 0).Err()
		})
		cancel()
		if err != nil {
			s.log.Warn("redisx: giving back what a stale receiver took", "mailbox", mb.id, "err", err)
		}
		mb.held = mb.held[:0]
		mb.buf = mb.buf[:0]
		return exchange.ErrMailboxClosed
	default:
		mb.missing = time.Time{}
		if st == "2" {
			mb.term = true
		}
	}
	mb.fill()
	if mb.over && len(mb.buf) == 0 {
		return fmt.Errorf("%w: %v is gone from Redis", exchange.ErrMailboxClosed, mb.id)
	}
	if !mb.over && st == "" && len(mb.buf) == 0 {
		return fmt.Errorf("%w: the record of %v is missing (Redis lost its data?)", ErrUnavailable, mb.id)
	}
	return nil
}

// fill sets buf to what held holds but markers, in the backing array
// bufStore (Recv's reslicing of buf from the front loses capacity).
func (mb *mailbox) fill() {
	mb.buf = mb.bufStore[:0]
	for _, v := range mb.held {
		if v != "" {
			mb.buf = append(mb.buf, v)
		}
	}
	mb.bufStore = mb.buf
}

// recover finds out what f holds after a take whose reply was lost, and
// hands it out: the previous batch is dropped if its trim did not run,
// what the lost take moved is returned.
func (mb *mailbox) recover(ctx context.Context) error {
	s := mb.x.s
	args := make([]any, 0, 3+len(mb.held))
	args = append(args, s.k.tag, s.grace, len(mb.held))
	for _, v := range mb.held {
		args = append(args, v)
	}
	var left []string
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		left, err = recoverScript.Run(ctx, s.cl, []string{mb.f}, args...).StringSlice()
		return err
	})
	if err != nil {
		return unavailable(err)
	}
	mb.dirty = false
	mb.held = mb.held[:0]
	for i := len(left) - 1; i >= 0; i-- {
		mb.held = append(mb.held, left[i])
	}
	mb.queued = s.o.batch
	mb.fill()
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
	if mb.conn != nil {
		mb.conn.Close()
		mb.conn = nil
		s.pinnedRecv.Add(-1)
	}
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
	if mb.dirty {
		if err := mb.recover(ctx); err != nil {
			return err
		}
	}
	returned := max(len(mb.held)-len(mb.buf), 0)
	var res []any
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		res, err = releaseScript.Run(ctx, s.cl, []string{mb.k.e, mb.k.q, mb.f}, s.k.tag, s.grace, mb.token, returned).Slice()
		return err
	})
	if err != nil {
		return err
	}
	s.setReceiver(mb.id.UUID, "")
	if len(res) > 1 {
		// The mailbox was terminated while this receiver held these
		// requests (Terminate answers only what the mailbox holds):
		// answered here, not put back where nobody reads.
		s.answerRaw(ctx, mb.id.UUID, res[1:])
	}
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
