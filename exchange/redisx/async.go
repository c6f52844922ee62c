package redisx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Sending without waiting (exchange.AsyncSender). SendAsync encodes the
// message and puts a request in the session's send queue, as Send does,
// but does not wait: when no leader runs, it starts one in the background.
// The leader hands the outcome of an asynchronous request to asyncDone
// instead of waking a caller: success notes the incarnation; a full
// mailbox schedules a retry (after the same backoff as Send's, until the
// context given to SendAsync ends or the handle's Close gives up); any
// other failure is logged and kept for the next Flush. Each handle counts
// its requests in flight (asyncTracker): Flush and Close wait for them.

// maxAsyncPending bounds the asynchronous sends in flight per handle:
// SendAsync waits for room beyond it (until its context ends).
const maxAsyncPending = 4096

// asyncSend is what an asynchronous request carries besides the message.
type asyncSend struct {
	t       *asyncTracker
	gen     uint64          // the tracker's generation
	ctx     context.Context // bounds the wait for room in a full mailbox
	dest    exchange.EntityID
	kind    exchange.Kind
	buf     *[]byte // the encoding buffer, back to its pool when done
	backoff time.Duration
}

// asyncTracker counts the asynchronous sends of one handle.
type asyncTracker struct {
	log     *slog.Logger
	slots   chan struct{} // one token per send in flight
	retries sync.WaitGroup
	quit    chan struct{} // closed when Close stops waiting: retries give up

	mu       sync.Mutex
	closed   bool
	quitting bool   // quit is being closed: no more retries
	cur      uint64 // the generation new sends join; Flush starts a new one
	gens     map[uint64]*asyncGen
	firstErr error // the first failure since the last Flush
}

// asyncGen counts the sends in flight of one generation (between two
// Flushes), so that a Flush waits for what was queued before it and not
// for what other goroutines keep queueing.
type asyncGen struct {
	n    int
	done chan struct{} // closed when n drops to zero; nil if nobody waits
}

func newAsyncTracker(log *slog.Logger) *asyncTracker {
	return &asyncTracker{log: log, slots: make(chan struct{}, maxAsyncPending), quit: make(chan struct{}), gens: map[uint64]*asyncGen{}}
}

// add counts one more send in flight, waiting for a slot until ctx ends,
// and returns its generation.
func (t *asyncTracker) add(ctx context.Context) (uint64, error) {
	select {
	case t.slots <- struct{}{}:
	default:
		select {
		case t.slots <- struct{}{}:
		case <-ctx.Done():
			return 0, fmt.Errorf("redisx: %d asynchronous sends in flight: %w", maxAsyncPending, ctx.Err())
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		<-t.slots
		return 0, exchange.ErrExchangeClosed
	}
	g := t.gens[t.cur]
	if g == nil {
		g = &asyncGen{}
		t.gens[t.cur] = g
	}
	g.n++
	return t.cur, nil
}

// done counts one send of generation gen in flight less, keeping err (the
// first) for Flush.
func (t *asyncTracker) done(gen uint64, err error) {
	t.mu.Lock()
	if err != nil && t.firstErr == nil {
		t.firstErr = err
	}
	if g := t.gens[gen]; g != nil {
		if g.n--; g.n == 0 {
			if g.done != nil {
				close(g.done)
			}
			if gen != t.cur {
				delete(t.gens, gen)
			}
		}
	}
	t.mu.Unlock()
	<-t.slots
}

// flush waits until the sends queued before it are done, or ctx ends, and
// returns the first failure since the last flush.
func (t *asyncTracker) flush(ctx context.Context) error {
	t.mu.Lock()
	var waits []chan struct{}
	for gen, g := range t.gens {
		if g.n == 0 {
			delete(t.gens, gen)
			continue
		}
		if g.done == nil {
			g.done = make(chan struct{})
		}
		waits = append(waits, g.done)
	}
	t.cur++
	t.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return fmt.Errorf("redisx: flush: asynchronous sends still in flight: %w", ctx.Err())
		}
	}
	t.mu.Lock()
	err := t.firstErr
	t.firstErr = nil
	t.mu.Unlock()
	return err
}

// close refuses new sends and waits up to wait for those in flight; then
// the retries of sends waiting for room in a full mailbox give up (and are
// logged), and close waits for them to have.
func (t *asyncTracker) close(wait time.Duration) {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	err := t.flush(ctx)
	cancel()
	if err != nil && ctx.Err() != nil {
		t.log.Warn("redisx: close: asynchronous sends still in flight after the wait; the queued ones waiting for room are dropped", "wait", wait, "err", err)
	}
	t.mu.Lock()
	t.quitting = true // retries.Add happens under mu while !quitting: all before the Wait
	t.mu.Unlock()
	close(t.quit)
	t.retries.Wait()
}

// SendAsync implements [exchange.AsyncSender]: m is checked and encoded,
// queued into the process's send pipeline, and SendAsync returns without
// waiting for the round trip. See [exchange.AsyncSender] for the
// guarantees; here:
//
//   - the message goes out in the next pipeline of the session (shared
//     with the sends of every goroutine), in the order of the queue;
//   - a destination missing or terminated is logged at debug level, Redis
//     unreachable for the outage wait or a lost reply at warn level, and
//     kept for the next Flush; a message whose reply was lost is not sent
//     again (it may have been delivered: at most once);
//   - a full mailbox is polled for room (250 µs doubling to 20 ms) until
//     ctx ends; the message may then arrive after messages sent later.
//
// At most 4096 messages per handle are in flight: beyond, SendAsync waits
// for room until ctx ends.
func (x *Exchange) SendAsync(ctx context.Context, m *exchange.Message) error {
	if err := x.check(); err != nil {
		return err
	}
	return x.s.sendAsync(ctx, m, x.async)
}

// Flush implements [exchange.AsyncSender.Flush].
func (x *Exchange) Flush(ctx context.Context) error {
	if err := x.check(); err != nil {
		return err
	}
	return x.async.flush(ctx)
}

// sendAsync queues m for the session's sender, counted by t.
func (s *session) sendAsync(ctx context.Context, m *exchange.Message, t *asyncTracker) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	gen, err := t.add(ctx)
	if err != nil {
		return err
	}
	ek, buf, msg, err := s.encode(m)
	if err != nil {
		t.done(gen, nil)
		return err
	}
	*buf = msg
	r := getSendReq()
	r.e, r.q, r.role, r.msg = ek.e, ek.q, roleArg(m.Dest.Role), msg
	r.as = asyncSend{t: t, gen: gen, ctx: ctx, dest: m.Dest, kind: m.Kind, buf: buf, backoff: fullBackoffMin}
	r.async = &r.as
	s.snd.submitAsync(r)
	return nil
}

// submitAsync queues r and makes sure a leader runs; it does not wait.
func (sd *sender) submitAsync(r *sendReq) {
	sd.mu.Lock()
	sd.q = append(sd.q, r)
	if sd.busy {
		sd.mu.Unlock()
		return
	}
	sd.busy = true
	sd.bg.Add(1)
	sd.mu.Unlock()
	go func() {
		defer sd.bg.Done()
		sd.lead(nil)
	}()
}

// complete hands a request its outcome: wakes its caller, or, for an
// asynchronous one, acts on it. The leader does not touch r afterwards.
func (sd *sender) complete(r *sendReq) {
	if r.async == nil {
		r.finish()
		return
	}
	sd.asyncDone(r)
}

// asyncDone acts on the outcome of the asynchronous request r.
func (sd *sender) asyncDone(r *sendReq) {
	a := r.async
	s := sd.s
	var err error
	level := slog.LevelWarn
	switch {
	case r.err != nil:
		err = fmt.Errorf("redisx: asynchronous send of a %v to %v: %w", a.kind, a.dest, r.err)
	case r.res == sendMissing:
		err = fmt.Errorf("redisx: asynchronous send of a %v: %w: %v", a.kind, exchange.ErrBadEntityID, a.dest)
		level = slog.LevelDebug
	case r.res == sendClosed:
		err = fmt.Errorf("redisx: asynchronous send of a %v: %w: %v", a.kind, exchange.ErrMailboxClosed, a.dest)
		level = slog.LevelDebug
	case r.res == sendFull:
		sd.retryFull(r)
		return
	case r.res < 0:
		err = fmt.Errorf("%w: send code %d", ErrProtocol, r.res)
	default:
		s.noteInc(a.dest, r.res)
	}
	sd.asyncEnd(r, err, level)
}

// asyncEnd ends the asynchronous request r with err (logged at level).
func (sd *sender) asyncEnd(r *sendReq, err error, level slog.Level) {
	a := r.async
	if err != nil {
		sd.s.log.Log(context.Background(), level, "redisx: an asynchronous send failed", "to", a.dest, "kind", a.kind, "err", err)
	}
	putSendBuf(a.buf)
	t, gen := a.t, a.gen
	r.async = nil
	putSendReq(r)
	t.done(gen, err)
}

// retryFull queues r again after a backoff, while its context and its
// handle allow.
func (sd *sender) retryFull(r *sendReq) {
	a := r.async
	t := a.t
	d := a.backoff
	a.backoff = nextFullBackoff(a.backoff)
	closedErr := func() error {
		return fmt.Errorf("redisx: asynchronous send of a %v: mailbox %v full when the handle closed: %w", a.kind, a.dest, errAsyncClosed)
	}
	t.mu.Lock()
	if t.quitting {
		t.mu.Unlock()
		sd.asyncEnd(r, closedErr(), slog.LevelWarn)
		return
	}
	t.retries.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.retries.Done()
		timer := time.NewTimer(d)
		defer timer.Stop()
		var err error
		select {
		case <-timer.C:
			t.mu.Lock()
			if !t.quitting {
				r.reset()
				sd.submitAsync(r)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			err = closedErr()
		case <-a.ctx.Done():
			err = fmt.Errorf("redisx: asynchronous send of a %v: mailbox %v full: %w", a.kind, a.dest, a.ctx.Err())
		case <-t.quit:
			err = closedErr()
		}
		sd.asyncEnd(r, err, slog.LevelWarn)
	}()
}

// errAsyncClosed says a queued message was dropped by Close.
var errAsyncClosed = errors.New("dropped at close")
