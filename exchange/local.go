package exchange

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// DefaultLocalCapacity is the number of messages a [Local] mailbox holds
// before Send waits for space, unless [WithLocalCapacity] says otherwise.
const DefaultLocalCapacity = 1024

// LocalOption configures [NewLocal].
type LocalOption func(*Local)

// WithLocalCapacity sets how many messages each mailbox holds before Send
// waits for space (at least 1; default [DefaultLocalCapacity]).
func WithLocalCapacity(n int) LocalOption {
	return func(l *Local) { l.s.capacity = max(n, 1) }
}

// WithLocalMaxMessageSize sets the largest encoded message Send accepts
// (default and upper bound [MaxMessageSize]); larger ones fail with
// [ErrMessageTooLarge]. Use it to mimic a shared-memory ring's limit.
func WithLocalMaxMessageSize(n int) LocalOption {
	return func(l *Local) { l.s.maxSize = min(max(n, 1), MaxMessageSize) }
}

// Local is the in-process implementation of [Exchange]: a mutex-protected
// registry and one bounded queue per mailbox, for tests of higher layers and
// for single-process programs. Send encodes the message into a pooled
// buffer (so the sender may reuse its Message at once) and Recv decodes it
// into the receiver's Message, exercising the same codec as the
// shared-memory exchange. Several Mailbox clients of one mailbox may receive
// at once; each message goes to one of them.
//
// The error responses with which Terminate answers pending requests are
// queued even when the requester's mailbox is full, so that Terminate never
// waits.
//
// [Local.NewHandle] returns another handle on the same exchange, which is
// closed independently, as a second process's Open of a shared-memory
// exchange would be.
//
// Local ignores the contexts of calls that never wait.
type Local struct {
	s      *localState
	closed bool          // guarded by s.mu
	done   chan struct{} // closed by Close
}

// localState is the exchange that the handles of a Local share.
type localState struct {
	capacity int
	maxSize  int

	mu      sync.Mutex
	entries map[UUID]*localEntry
	seq     uint64
}

var (
	_ Exchange          = (*Local)(nil)
	_ IncarnationSender = (*Local)(nil)
)

// localEntry is one registered entity and its mailbox; all fields but the
// channels are guarded by Local.mu.
type localEntry struct {
	info        EntityInfo
	seq         uint64 // registration order, for Discover
	inc         uint32 // Reopens of the mailbox
	q           bufQueue
	recvWaiters int
	sendWaiters int
	notEmpty    chan struct{} // one token: a message arrived
	notFull     chan struct{} // one token: space was freed
	terminated  chan struct{} // closed by Terminate
}

// NewLocal returns a handle on a new, empty in-process exchange.
func NewLocal(opts ...LocalOption) *Local {
	l := &Local{
		s: &localState{
			capacity: DefaultLocalCapacity,
			maxSize:  MaxMessageSize,
			entries:  make(map[UUID]*localEntry),
		},
		done: make(chan struct{}),
	}
	for _, o := range opts {
		if o != nil {
			o(l)
		}
	}
	return l
}

// NewHandle returns another handle on the exchange behind l. Handles share
// the registry and the mailboxes; each is closed on its own, and closing one
// closes only the Mailbox clients obtained from it.
func (l *Local) NewHandle() *Local {
	return &Local{s: l.s, done: make(chan struct{})}
}

// lookup returns the entry of id, or nil when missing. s.mu must be held.
func (s *localState) lookup(id EntityID) *localEntry {
	e := s.entries[id.UUID]
	if e == nil || e.info.ID.Role != id.Role {
		return nil
	}
	return e
}

func (l *Local) register(id EntityID, name string, b Behavior) (EntityID, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return EntityID{}, ErrExchangeClosed
	}
	if _, ok := l.s.entries[id.UUID]; ok {
		return EntityID{}, fmt.Errorf("%w: %v", ErrDuplicateID, id)
	}
	l.s.seq++
	l.s.entries[id.UUID] = &localEntry{
		info:       EntityInfo{ID: id, Name: name, Behavior: b, Status: StatusActive},
		seq:        l.s.seq,
		notEmpty:   make(chan struct{}, 1),
		notFull:    make(chan struct{}, 1),
		terminated: make(chan struct{}),
	}
	return id, nil
}

// RegisterAgent implements [Exchange.RegisterAgent].
func (l *Local) RegisterAgent(_ context.Context, behavior Behavior, opts ...RegisterOption) (EntityID, error) {
	if behavior.Name == "" {
		return EntityID{}, fmt.Errorf("%w: empty behavior name", ErrInvalidArgument)
	}
	id, name, err := ResolveRegistration(RoleAgent, opts)
	if err != nil {
		return EntityID{}, err
	}
	behavior.Implements = slices.Clone(behavior.Implements)
	return l.register(id, name, behavior)
}

// RegisterClient implements [Exchange.RegisterClient].
func (l *Local) RegisterClient(_ context.Context, opts ...RegisterOption) (EntityID, error) {
	id, name, err := ResolveRegistration(RoleClient, opts)
	if err != nil {
		return EntityID{}, err
	}
	return l.register(id, name, Behavior{})
}

// Terminate implements [Exchange.Terminate].
func (l *Local) Terminate(_ context.Context, id EntityID) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return ErrExchangeClosed
	}
	e := l.s.lookup(id)
	if e == nil || e.info.Status == StatusTerminated {
		return nil
	}
	e.info.Status = StatusTerminated
	close(e.terminated)

	// Answer the pending requests; keep the rest for the receiver to drain.
	var (
		kept bufQueue
		m    Message
		rerr = &RemoteError{Kind: ErrorKindMailboxTerminated, Message: fmt.Sprintf("mailbox %v was terminated", id)}
	)
	for bp := e.q.pop(); bp != nil; bp = e.q.pop() {
		if m.Decode(*bp) != nil || !m.Kind.IsRequest() {
			kept.push(bp)
			continue
		}
		putBuf(bp)
		m.SetErrorResponse(&m, rerr)
		to := l.s.lookup(m.Dest)
		if to == nil || to.info.Status != StatusActive {
			continue // the requester is gone too: nobody waits
		}
		rb := getBuf(m.EncodedSize())
		if _, err := m.EncodeTo(*rb); err != nil {
			putBuf(rb)
			continue
		}
		to.q.push(rb) // beyond capacity if need be: Terminate never waits
		if to.recvWaiters > 0 {
			signal(to.notEmpty)
		}
	}
	e.q = kept
	return nil
}

// Reopen implements [Reopener]: a terminated mailbox comes back under the
// same id, empty; clients of the terminated one keep draining it and then
// report ErrMailboxClosed. A no-op when the mailbox is active.
func (l *Local) Reopen(_ context.Context, id EntityID) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return ErrExchangeClosed
	}
	e := l.s.lookup(id)
	if e == nil {
		return fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	if e.info.Status == StatusActive {
		return nil
	}
	info := e.info
	info.Status = StatusActive
	l.s.entries[id.UUID] = &localEntry{
		info:       info,
		seq:        e.seq,
		inc:        e.inc + 1,
		notEmpty:   make(chan struct{}, 1),
		notFull:    make(chan struct{}, 1),
		terminated: make(chan struct{}),
	}
	return nil
}

// Incarnation implements [Reopener].
func (l *Local) Incarnation(_ context.Context, id EntityID) (uint32, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return 0, ErrExchangeClosed
	}
	e := l.s.lookup(id)
	if e == nil {
		return 0, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	return e.inc, nil
}

// Discover implements [Exchange.Discover]; Local returns agents in
// registration order.
func (l *Local) Discover(_ context.Context, behavior string, allowSubtypes bool) ([]EntityID, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return nil, ErrExchangeClosed
	}
	var found []*localEntry
	for _, e := range l.s.entries {
		if e.info.ID.Role == RoleAgent && e.info.Status == StatusActive && e.info.Behavior.Matches(behavior, allowSubtypes) {
			found = append(found, e)
		}
	}
	slices.SortFunc(found, func(a, b *localEntry) int { return cmp.Compare(a.seq, b.seq) })
	ids := make([]EntityID, len(found))
	for i, e := range found {
		ids[i] = e.info.ID
	}
	return ids, nil
}

// Mailbox implements [Exchange.Mailbox]. Its receivers wait on channels:
// the idle strategy of [WithMailboxIdle] does not apply.
func (l *Local) Mailbox(_ context.Context, id EntityID, _ ...MailboxOption) (Mailbox, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return nil, ErrExchangeClosed
	}
	e := l.s.lookup(id)
	if e == nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	return &localMailbox{l: l, e: e, done: make(chan struct{})}, nil
}

// Send implements [Exchange.Send].
func (l *Local) Send(ctx context.Context, m *Message) error {
	_, err := l.SendIncarnation(ctx, m)
	return err
}

// SendIncarnation implements [IncarnationSender]: Send, returning the
// incarnation of the mailbox that queued the message.
func (l *Local) SendIncarnation(ctx context.Context, m *Message) (uint32, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	n := m.EncodedSize()
	if n > l.s.maxSize {
		return 0, fmt.Errorf("%w: %d bytes encoded, the mailbox takes at most %d: %s", ErrMessageTooLarge, n, l.s.maxSize, largePayloadHint)
	}
	bp := getBuf(n)
	if _, err := m.EncodeTo(*bp); err != nil {
		putBuf(bp)
		return 0, err
	}

	l.s.mu.Lock()
	for {
		var err error
		e := l.s.lookup(m.Dest)
		switch {
		case l.closed:
			err = ErrExchangeClosed
		case e == nil:
			err = fmt.Errorf("%w: %v", ErrBadEntityID, m.Dest)
		case e.info.Status != StatusActive:
			err = fmt.Errorf("%w: %v", ErrMailboxClosed, m.Dest)
		case e.q.n < l.s.capacity:
			e.q.push(bp)
			if e.recvWaiters > 0 {
				signal(e.notEmpty)
			}
			if e.sendWaiters > 0 && e.q.n < l.s.capacity {
				signal(e.notFull) // pass the wake-up on to the next blocked sender
			}
			inc := e.inc
			l.s.mu.Unlock()
			return inc, nil
		default: // full: wait for space
			e.sendWaiters++
			l.s.mu.Unlock()
			select {
			case <-e.notFull:
			case <-e.terminated:
			case <-l.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
			l.s.mu.Lock()
			e.sendWaiters--
			if err == nil {
				continue
			}
		}
		if e != nil && e.sendWaiters > 0 && e.q.n < l.s.capacity {
			signal(e.notFull) // we may have taken a token meant for another sender
		}
		l.s.mu.Unlock()
		putBuf(bp)
		return 0, err
	}
}

// Status implements [Exchange.Status].
func (l *Local) Status(_ context.Context, id EntityID) (Status, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return StatusMissing, ErrExchangeClosed
	}
	if e := l.s.lookup(id); e != nil {
		return e.info.Status, nil
	}
	return StatusMissing, nil
}

// Info implements [Exchange.Info].
func (l *Local) Info(_ context.Context, id EntityID) (EntityInfo, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.closed {
		return EntityInfo{}, ErrExchangeClosed
	}
	e := l.s.lookup(id)
	if e == nil {
		return EntityInfo{}, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	info := e.info
	info.Behavior.Implements = slices.Clone(info.Behavior.Implements)
	return info, nil
}

// Close implements [Exchange.Close]: it closes this handle and the Mailbox
// clients obtained from it. Other handles ([Local.NewHandle]) keep working;
// the exchange's state lives as long as any handle or client references it.
func (l *Local) Close() error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	return nil
}

// errRecvExchangeClosed is what Recv returns after the Exchange's Close: it
// matches both ErrMailboxClosed and ErrExchangeClosed.
var errRecvExchangeClosed = fmt.Errorf("%w: %w", ErrMailboxClosed, ErrExchangeClosed)

// localMailbox is a Mailbox client of a Local.
type localMailbox struct {
	l      *Local
	e      *localEntry
	closed bool          // guarded by l.s.mu
	done   chan struct{} // closed by Close
}

// ID implements [Mailbox.ID].
func (c *localMailbox) ID() EntityID { return c.e.info.ID }

// Recv implements [Mailbox.Recv].
func (c *localMailbox) Recv(ctx context.Context, m *Message) error {
	l, e := c.l, c.e
	l.s.mu.Lock()
	for {
		var err error
		switch {
		case c.closed:
			err = ErrMailboxClosed
		case l.closed:
			err = errRecvExchangeClosed
		case e.q.n > 0:
			bp := e.q.pop()
			if e.recvWaiters > 0 && e.q.n > 0 {
				signal(e.notEmpty) // pass the wake-up on to the next receiver
			}
			if e.sendWaiters > 0 {
				signal(e.notFull)
			}
			l.s.mu.Unlock()
			err := m.Decode(*bp)
			putBuf(bp)
			return err
		case e.info.Status != StatusActive:
			err = ErrMailboxClosed
		default: // empty: wait
			e.recvWaiters++
			l.s.mu.Unlock()
			select {
			case <-e.notEmpty:
			case <-e.terminated:
			case <-c.done:
			case <-l.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
			l.s.mu.Lock()
			e.recvWaiters--
			if err == nil {
				continue
			}
		}
		if e.recvWaiters > 0 && e.q.n > 0 {
			signal(e.notEmpty) // we may have taken a token meant for another receiver
		}
		l.s.mu.Unlock()
		return err
	}
}

// Close implements [Mailbox.Close].
func (c *localMailbox) Close() error {
	c.l.s.mu.Lock()
	defer c.l.s.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

// signal leaves a wake-up token in ch unless one is already there.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// bufQueue is a FIFO of encoded messages: a ring that grows by doubling.
type bufQueue struct {
	items []*[]byte
	head  int
	n     int
}

func (q *bufQueue) push(b *[]byte) {
	if q.n == len(q.items) {
		items := make([]*[]byte, max(2*len(q.items), 8))
		for i := range q.n {
			items[i] = q.items[(q.head+i)%len(q.items)]
		}
		q.items, q.head = items, 0
	}
	q.items[(q.head+q.n)%len(q.items)] = b
	q.n++
}

func (q *bufQueue) pop() *[]byte {
	if q.n == 0 {
		return nil
	}
	b := q.items[q.head]
	q.items[q.head] = nil
	q.head = (q.head + 1) % len(q.items)
	q.n--
	return b
}

// bufPool recycles the buffers that hold encoded messages between Send and
// Recv.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledBuf bounds the buffers kept in bufPool.
const maxPooledBuf = 64 << 10

func getBuf(n int) *[]byte {
	bp := bufPool.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	*bp = (*bp)[:n]
	return bp
}

func putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledBuf {
		bufPool.Put(bp)
	}
}
