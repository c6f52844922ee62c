package redisx

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Sending. A send is one script that checks the destination (registered,
// active, its owner alive, room in the mailbox) and pushes the message: one
// round trip. Sends from concurrent goroutines of a process are combined:
// the first sender to find nobody talking to Redis becomes the leader and
// runs every send queued meanwhile as one script (up to maxSendBatch
// messages), then the next batch, until its own send is done; a leader
// whose own send is done hands the queue to a new goroutine. A lone sender
// pays one round trip; many senders share them, which is what lets one
// Redis server carry tens of thousands of actions per second.

// sendReq is one message waiting to be sent.
type sendReq struct {
	e, q, role string
	msg        []byte
	state      atomic.Int32 // reqQueued, reqTaken, reqAbandoned
	res        int64        // script result, valid once done is closed
	err        error
	done       chan struct{}
}

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
}

// submit queues r and returns once it was sent (r.res, r.err set), or when
// ctx ends: before r was taken, r is never sent and ctx's error is
// returned; after, the outcome is unknown and the error says so.
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
		if own != nil && own.state.Load() == reqTaken && isDone(own) {
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

func isDone(r *sendReq) bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// exec runs one batch as one script and hands each request its result.
func (sd *sender) exec(batch []*sendReq) {
	s := sd.s
	keys := make([]string, 0, 2*len(batch))
	args := make([]any, 0, 3+2*len(batch))
	args = append(args, s.k.tag, s.grace, len(batch))
	for _, r := range batch {
		keys = append(keys, r.e, r.q)
		args = append(args, r.role, r.msg)
	}
	// Not the context of any one caller: the batch is theirs together. The
	// outage wait and the client's timeouts bound it.
	ctx, cancel := context.WithTimeout(context.Background(), s.o.outage+5*time.Second)
	defer cancel()
	var res []int64
	err := s.retry(ctx, false, func(ctx context.Context) error {
		var err error
		res, err = sendScript.runInts(ctx, s.cl, keys, args)
		return err
	})
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("%w: send script returned %d results for %d messages", ErrProtocol, len(res), len(batch))
	}
	for i, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.res = res[i]
		}
		close(r.done)
	}
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
	_, ek := s.keysFor(m.Dest.UUID)
	msg, err := m.MarshalMsg(make([]byte, 0, m.Msgsize()))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", exchange.ErrMessageTooLarge, err)
	}
	role := roleArg(m.Dest.Role)
	var full time.Time
	backoff := 250 * time.Microsecond
	for {
		r := &sendReq{e: ek.e, q: ek.q, role: role, msg: msg, done: make(chan struct{})}
		if err := s.snd.submit(ctx, r); err != nil {
			return 0, err
		}
		if r.err != nil {
			return 0, fmt.Errorf("redisx: send %v: %w", m, r.err)
		}
		switch r.res {
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
			backoff = min(2*backoff, 20*time.Millisecond)
			continue
		}
		if r.res < 0 {
			return 0, fmt.Errorf("%w: send result %d", ErrProtocol, r.res)
		}
		s.noteInc(m.Dest, r.res)
		return uint32(r.res), nil
	}
}
