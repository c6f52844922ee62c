package redisx

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shmex/shmex/exchange"
)

// Sending. A send is one round trip of two plain commands: LPUSH the
// message to the destination's mailbox (whose key carries the role), and
// read its record (role, state, incarnation, capacity). When the record
// says the send should not have happened (missing, terminated, full), the
// message is taken back (LREM) in a second round trip; a message that was
// taken by its receiver in between counts as delivered. Sends from
// concurrent goroutines of a process are combined: the first sender to
// find nobody talking to Redis becomes the leader and sends every message
// queued meanwhile in one pipeline (up to maxSendBatch messages; messages
// to one mailbox share one LPUSH and one record read), then the next
// batch, until its own send is done; a leader whose own send is done hands
// the queue to a new goroutine. A lone sender pays one round trip; many
// senders share them, which is what lets one Redis server carry tens of
// thousands of actions per second.

// sendReq is one message waiting to be sent.
type sendReq struct {
	e, q, role string // record key, mailbox key, role ("1", "2")
	msg        []byte
	state      atomic.Int32 // reqQueued, reqTaken, reqAbandoned
	res        int64        // the incarnation, or a send code; valid once done
	inc        int64        // the incarnation, when res is a code
	err        error
	sent       atomic.Bool   // done: set before done gets its token
	done       chan struct{} // capacity 1: one token when the request is done
	async      *asyncSend    // set for SendAsync (to as): nobody waits on done
	as         asyncSend     // async's storage, so that SendAsync allocates no request state
}

// Backoff of a send that finds its mailbox full: it polls again after
// fullBackoffMin, doubling up to fullBackoffMax.
const (
	fullBackoffMin = 250 * time.Microsecond
	fullBackoffMax = 20 * time.Millisecond
)

// nextFullBackoff is the wait after d of a send that found its mailbox
// full again.
func nextFullBackoff(d time.Duration) time.Duration { return min(2*d, fullBackoffMax) }

// reset makes r a request not yet sent, with no outcome.
func (r *sendReq) reset() {
	r.state.Store(reqQueued)
	r.sent.Store(false)
	r.res, r.inc, r.err = 0, 0, nil
}

// Requests are reused once their caller took the token of done (see
// submit): a request abandoned, or cut short while being sent, may still
// be read by the leader, and is left to the collector.
var sendReqs = sync.Pool{New: func() any { return &sendReq{done: make(chan struct{}, 1)} }}

func getSendReq() *sendReq {
	r := sendReqs.Get().(*sendReq)
	r.reset()
	r.async = nil
	return r
}

func putSendReq(r *sendReq) {
	r.msg, r.async, r.as = nil, nil, asyncSend{}
	sendReqs.Put(r)
}

// finish marks r done; the leader calls it once per request.
func (r *sendReq) finish() {
	r.sent.Store(true)
	r.done <- struct{}{} // never blocks: one token per use, capacity 1
}

// MarshalBinary returns the encoded message: a *sendReq is a command
// argument of its own, which go-redis writes with this, so that the
// message's slice header is not copied to the heap to be boxed.
func (r *sendReq) MarshalBinary() ([]byte, error) { return r.msg, nil }

// Send codes (res).
const (
	sendMissing = -1
	sendClosed  = -2
	sendFull    = -3
)

const (
	reqQueued    = 0
	reqTaken     = 1 // in a batch being sent
	reqAbandoned = 2 // its caller's context ended before it was taken
)

// sender batches the sends of a session.
type sender struct {
	s    *session
	mu   sync.Mutex
	q    []*sendReq
	busy bool           // a leader runs
	bg   sync.WaitGroup // leaders started in the background

	// The leader's scratch, reused from batch to batch (one leader runs
	// at a time: busy).
	groups map[string]*sendGroup
	gbuf   []sendGroup
	order  []*sendGroup
}

// submit queues r and returns once it was sent (r.res, r.err set), or when
// ctx ends: before r was taken, r is never sent and ctx's error is
// returned; after, the outcome is unknown and the error says so. When it
// returns nil it has taken done's token: r may be reused.
func (sd *sender) submit(ctx context.Context, r *sendReq) error {
	sd.mu.Lock()
	sd.q = append(sd.q, r)
	if sd.busy {
		sd.mu.Unlock()
		select {
		case <-r.done:
			return nil
		case <-ctx.Done():
			if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
				return ctx.Err()
			}
			select {
			case <-r.done:
				return nil
			default:
			}
			return fmt.Errorf("%w (the message was being sent: it may have been delivered)", ctx.Err())
		}
	}
	sd.busy = true
	sd.mu.Unlock()
	sd.lead(r)
	<-r.done // lead returns once its own request is done
	return nil
}

// lead sends batches until own is sent (own nil: until the queue is
// empty), then hands what is left to a background leader.
func (sd *sender) lead(own *sendReq) {
	batch := make([]*sendReq, 0, 16)
	for {
		sd.mu.Lock()
		if len(sd.q) == 0 {
			sd.busy = false
			sd.mu.Unlock()
			return
		}
		if own != nil && own.state.Load() == reqTaken && own.sent.Load() {
			// Ours is sent; others wait: let a new leader serve them.
			sd.bg.Add(1)
			sd.mu.Unlock()
			go func() {
				defer sd.bg.Done()
				sd.lead(nil)
			}()
			return
		}
		batch = batch[:0]
		n := 0
		for n < len(sd.q) && len(batch) < maxSendBatch {
			r := sd.q[n]
			n++
			if r.state.CompareAndSwap(reqQueued, reqTaken) {
				batch = append(batch, r)
			}
		}
		rest := copy(sd.q, sd.q[n:])
		clear(sd.q[rest:])
		sd.q = sd.q[:rest]
		sd.mu.Unlock()
		if len(batch) > 0 {
			sd.exec(batch)
		}
	}
}

// sendGroup is the messages of a batch to one mailbox.
type sendGroup struct {
	e, q, role string
	reqs       []*sendReq
	args       []any
	push       *redis.IntCmd
	rec        *redis.StringSliceCmd
}

// exec sends one batch in one pipeline and hands each request its result.
func (sd *sender) exec(batch []*sendReq) {
	s := sd.s
	if sd.groups == nil {
		sd.groups = make(map[string]*sendGroup)
	}
	groups := sd.groups
	if cap(sd.gbuf) < len(batch) {
		sd.gbuf = make([]sendGroup, 0, max(len(batch), 2*cap(sd.gbuf)))
	}
	gbuf, order := sd.gbuf[:0], sd.order[:0]
	defer func() {
		clear(groups)
		for i := range gbuf {
			g := &gbuf[i]
			clear(g.reqs)
			clear(g.args)
			*g = sendGroup{reqs: g.reqs[:0], args: g.args[:0]}
		}
		clear(order)
		sd.gbuf, sd.order = gbuf[:0], order[:0]
	}()
	for _, r := range batch {
		g := groups[r.q]
		if g == nil {
			gbuf = gbuf[:len(gbuf)+1] // within capacity: the pointers stay valid
			g = &gbuf[len(gbuf)-1]
			g.e, g.q, g.role = r.e, r.q, r.role
			groups[r.q] = g
			order = append(order, g)
		}
		g.reqs = append(g.reqs, r)
	}
	// Not the context of any one caller: the batch is theirs together. The
	// outage wait and the client's timeouts bound it.
	ctx, cancel := context.WithTimeout(context.Background(), s.o.outage+5*time.Second)
	defer cancel()
	err := s.retry(ctx, false, func(ctx context.Context) error {
		pipe := s.cl.Pipeline()
		for _, g := range order {
			g.args = append(g.args[:0], "lpush", g.q)
			for _, r := range g.reqs {
				g.args = append(g.args, r) // written as r.msg (MarshalBinary)
			}
			g.push = redis.NewIntCmd(ctx, g.args...)
			pipe.Process(ctx, g.push)
			// HMGET's nil replies (no record) read as "".
			g.rec = redis.NewStringSliceCmd(ctx, "hmget", g.e, "role", "st", "inc", "cap")
			pipe.Process(ctx, g.rec)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		for _, r := range batch {
			r.err = err
			sd.complete(r)
		}
		return
	}
	// What the records say; what must be taken back.
	var undo []*sendReq
	for _, g := range order {
		v := g.rec.Val()
		if len(v) != 4 { // not from a Redis that keeps HMGET's contract
			for _, r := range g.reqs {
				r.err = fmt.Errorf("%w: HMGET of a record returned %d fields", ErrProtocol, len(v))
				undo = append(undo, r) // failed: not left in the mailbox
			}
			continue
		}
		role, st := v[0], v[1]
		inc, _ := strconv.ParseInt(v[2], 10, 64)
		capacity, _ := strconv.ParseInt(v[3], 10, 64)
		switch {
		case role != g.role:
			for _, r := range g.reqs {
				r.res = sendMissing
				undo = append(undo, r)
			}
		case st != "1":
			for _, r := range g.reqs {
				r.res = sendClosed
				r.inc = inc
				undo = append(undo, r)
			}
		default:
			over := g.push.Val() - capacity
			for i, r := range g.reqs {
				r.res = inc
				if int64(len(g.reqs)-i) <= over {
					r.res, r.inc = sendFull, inc
					undo = append(undo, r)
				}
			}
		}
	}
	if len(undo) > 0 {
		// Taking back is harmless to repeat (LREM of a message that is not
		// there removes nothing).
		var rems []*redis.IntCmd
		err = s.retry(ctx, true, func(ctx context.Context) error {
			pipe := s.cl.Pipeline()
			rems = rems[:0]
			for _, r := range undo {
				rems = append(rems, pipe.LRem(ctx, r.q, 1, r))
			}
			_, err := pipe.Exec(ctx)
			return err
		})
		for i, r := range undo {
			switch {
			case err != nil:
				r.err = fmt.Errorf("%w (taking back a message that was not to be sent: it may have been delivered)", err)
			case rems[i].Val() == 0 && r.res != sendMissing:
				r.res = r.inc // taken by its receiver meanwhile: delivered
			}
		}
	}
	for _, r := range batch {
		sd.complete(r)
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// drain waits for the background leaders.
func (sd *sender) drain() { sd.bg.Wait() }

// send delivers m to its destination's mailbox and returns the mailbox's
// incarnation. When the mailbox is full it waits for space, polling, until
// ctx ends, or for fullWait when that is not negative.
func (s *session) send(ctx context.Context, m *exchange.Message, fullWait time.Duration) (uint32, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ek, buf, msg, err := s.encode(m)
	if err != nil {
		return 0, err
	}
	// The buffer goes back to the pool only once the last request that
	// held it is done: one abandoned, or cut short while being sent, may
	// still be read by the leader.
	reuse := false
	defer func() {
		if reuse {
			*buf = msg[:0]
			putSendBuf(buf)
		}
	}()
	role := roleArg(m.Dest.Role)
	var full time.Time
	backoff := fullBackoffMin
	for {
		r := getSendReq()
		r.e, r.q, r.role, r.msg = ek.e, ek.q, role, msg
		if err := s.snd.submit(ctx, r); err != nil {
			reuse = false
			return 0, err
		}
		reuse = true
		res, rerr := r.res, r.err
		putSendReq(r)
		if rerr != nil {
			return 0, fmt.Errorf("redisx: send %v: %w", m, rerr)
		}
		switch res {
		case sendMissing:
			return 0, fmt.Errorf("%w: %v", exchange.ErrBadEntityID, m.Dest)
		case sendClosed:
			return 0, fmt.Errorf("%w: %v", exchange.ErrMailboxClosed, m.Dest)
		case sendFull:
			if full.IsZero() {
				full = time.Now()
			}
			if fullWait >= 0 && time.Since(full) >= fullWait {
				return 0, fmt.Errorf("redisx: mailbox %v full: %w", m.Dest, context.DeadlineExceeded)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, ctx.Err()
			case <-t.C:
			}
			backoff = nextFullBackoff(backoff)
			continue
		}
		if res < 0 {
			return 0, fmt.Errorf("%w: send code %d", ErrProtocol, res)
		}
		s.noteInc(m.Dest, res)
		return uint32(res), nil
	}
}

// encode encodes m, validated, into a pooled buffer for a send: the keys
// of its destination, the buffer (the caller gives it back once no request
// holds it) and the encoded message in it.
func (s *session) encode(m *exchange.Message) (entityKeys, *[]byte, []byte, error) {
	_, ek := s.keysFor(m.Dest)
	buf := getSendBuf(m.Msgsize())
	msg, err := m.MarshalMsg((*buf)[:0])
	if err != nil {
		putSendBuf(buf)
		return ek, nil, nil, fmt.Errorf("%w: %w", exchange.ErrMessageTooLarge, err)
	}
	return ek, buf, msg, nil
}

// Encoding buffers of sends, reused once their message is sent: up to
// maxPooledSend bytes (a larger one is left to the collector).
const maxPooledSend = 64 << 10

var sendBufs = sync.Pool{New: func() any { return new([]byte) }}

func getSendBuf(size int) *[]byte {
	b := sendBufs.Get().(*[]byte)
	if cap(*b) < size {
		*b = make([]byte, 0, size)
	}
	return b
}

func putSendBuf(b *[]byte) {
	if cap(*b) <= maxPooledSend {
		sendBufs.Put(b)
	}
}
