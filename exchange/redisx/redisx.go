package redisx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/shmex/shmex/exchange"
)

// Exchange is a handle on an exchange kept in Redis: the registry and the
// mailboxes of every entity, on every node, live in one Redis server (or
// one Redis Cluster shard). See the package documentation for the model.
type Exchange struct {
	s      *session
	o      options
	closed atomic.Bool
	async  *asyncTracker // sends of SendAsync in flight

	mu     sync.Mutex
	mboxes map[*mailbox]struct{} // nil once closed
}

var (
	_ exchange.Exchange          = (*Exchange)(nil)
	_ exchange.Reopener          = (*Exchange)(nil)
	_ exchange.IncarnationSender = (*Exchange)(nil)
	_ exchange.AsyncSender       = (*Exchange)(nil)
)

// Open returns a handle on the exchange that the options name (server,
// prefix), as participant of node WithNode. It fails when Redis does not
// answer within ctx (and the outage wait). Handles of one process on the
// same server, prefix and node share one session (one heartbeat, one
// connection pool); Close each.
func Open(ctx context.Context, opts ...Option) (*Exchange, error) {
	o := defaultOptions()
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.prefix == "" {
		return nil, fmt.Errorf("%w: empty key prefix", exchange.ErrInvalidArgument)
	}
	s, err := acquireSession(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("redisx: open %s (prefix %q): %w", o.addr, o.prefix, err)
	}
	return &Exchange{s: s, o: o, mboxes: map[*mailbox]struct{}{}, async: newAsyncTracker(s.log)}, nil
}

// Node returns the node name this handle registers entities on.
func (x *Exchange) Node() string { return x.s.node }

// Prefix returns the key prefix.
func (x *Exchange) Prefix() string { return x.o.prefix }

// SessionID returns the id of this process's session (its heartbeat key is
// {prefix}:s:<id>).
func (x *Exchange) SessionID() string { return x.s.id }

func (x *Exchange) check() error {
	if x.closed.Load() {
		return exchange.ErrExchangeClosed
	}
	return nil
}

// Field limits of a registration, as the shared-memory registry's where
// they are stricter.
const (
	maxName     = 255
	maxBehavior = 255
	maxImpl     = 255
)

func checkFields(name string, b exchange.Behavior) error {
	switch {
	case len(name) > maxName:
		return fmt.Errorf("%w: name longer than %d bytes", exchange.ErrInvalidArgument, maxName)
	case len(b.Name) > maxBehavior:
		return fmt.Errorf("%w: behavior name longer than %d bytes", exchange.ErrInvalidArgument, maxBehavior)
	case len(b.Implements) > maxImpl:
		return fmt.Errorf("%w: more than %d implemented behaviors", exchange.ErrInvalidArgument, maxImpl)
	}
	for _, s := range b.Implements {
		if len(s) > maxBehavior {
			return fmt.Errorf("%w: implemented behavior name longer than %d bytes", exchange.ErrInvalidArgument, maxBehavior)
		}
	}
	return nil
}

// packBehavior encodes a behavior as a MessagePack array of strings, name
// first (what the discover script unpacks).
func packBehavior(b exchange.Behavior) string {
	out := msgp.AppendArrayHeader(nil, uint32(1+len(b.Implements)))
	out = msgp.AppendString(out, b.Name)
	for _, s := range b.Implements {
		out = msgp.AppendString(out, s)
	}
	return string(out)
}

func unpackBehavior(s string) (exchange.Behavior, error) {
	b := []byte(s)
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n == 0 || n > 1+maxImpl {
		return exchange.Behavior{}, fmt.Errorf("%w: bad behavior record", ErrProtocol)
	}
	var out exchange.Behavior
	for i := uint32(0); i < n; i++ {
		var v string
		if v, b, err = msgp.ReadStringBytes(b); err != nil {
			return exchange.Behavior{}, fmt.Errorf("%w: bad behavior record", ErrProtocol)
		}
		if i == 0 {
			out.Name = v
		} else {
			out.Implements = append(out.Implements, v)
		}
	}
	return out, nil
}

// RegisterAgent implements [exchange.Exchange.RegisterAgent].
func (x *Exchange) RegisterAgent(ctx context.Context, behavior exchange.Behavior, opts ...exchange.RegisterOption) (exchange.EntityID, error) {
	if behavior.Name == "" {
		return exchange.EntityID{}, fmt.Errorf("%w: empty behavior name", exchange.ErrInvalidArgument)
	}
	id, name, err := exchange.ResolveRegistration(exchange.RoleAgent, opts)
	if err != nil {
		return exchange.EntityID{}, err
	}
	return id, x.register(ctx, id, name, behavior, 0)
}

// RegisterClient implements [exchange.Exchange.RegisterClient].
func (x *Exchange) RegisterClient(ctx context.Context, opts ...exchange.RegisterOption) (exchange.EntityID, error) {
	id, name, err := exchange.ResolveRegistration(exchange.RoleClient, opts)
	if err != nil {
		return exchange.EntityID{}, err
	}
	return id, x.register(ctx, id, name, exchange.Behavior{}, 0)
}

// register creates the record of id, owned by this session, with
// incarnation inc.
func (x *Exchange) register(ctx context.Context, id exchange.EntityID, name string, b exchange.Behavior, inc uint32) error {
	if err := x.check(); err != nil {
		return err
	}
	if err := checkFields(name, b); err != nil {
		return err
	}
	s := x.s
	h, ek := s.k.of(id)
	beh := ""
	if id.IsAgent() {
		beh = packBehavior(b)
	}
	var created int64
	attempts := 0
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		attempts++
		created, err = registerScript.Run(ctx, s.cl, []string{ek.e, s.k.agents(), s.k.owned(s.id)},
			s.k.tag, s.grace, h, roleArg(id.Role), name, beh, s.node, s.id, x.o.capacity, inc, "1", "").Int64()
		return err
	})
	if err != nil {
		return fmt.Errorf("redisx: register %v: %w", id, err)
	}
	if created == 0 && attempts > 1 {
		// A retry of our own registration whose reply was lost finds the
		// record ours: look before calling it a duplicate.
		if node, own, err := x.owner(ctx, ek.e); err == nil && own == s.id && node == s.node && inc == 0 {
			if info, err := x.Info(ctx, id); err == nil && info.Name == name && info.Behavior.Name == b.Name {
				created = 1
			}
		}
	}
	if created == 0 {
		return fmt.Errorf("%w: %v", exchange.ErrDuplicateID, id)
	}
	s.own(ownedEntity{id: id, name: name, beh: beh, cap: x.o.capacity, inc: inc})
	return nil
}

// owner returns the node and owning session of a record.
func (x *Exchange) owner(ctx context.Context, key string) (node, own string, err error) {
	v, err := x.s.cl.HMGet(ctx, key, "node", "own").Result()
	if err != nil {
		return "", "", unavailable(err)
	}
	node, _ = v[0].(string)
	own, _ = v[1].(string)
	return node, own, nil
}

// unregister removes a record this session just created (see Hybrid).
func (x *Exchange) unregister(ctx context.Context, id exchange.EntityID) error {
	s := x.s
	h, ek := s.k.of(id)
	err := s.retry(ctx, true, func(ctx context.Context) error {
		return unregisterScript.Run(ctx, s.cl, []string{ek.e, ek.q, s.k.agents(), s.k.owned(s.id)}, s.k.tag, s.grace, h, s.id).Err()
	})
	s.disown(id.UUID)
	return err
}

// Send implements [exchange.Exchange.Send]: one script, shared with the
// sends of other goroutines of the process (see the package documentation).
// Besides the exchange's errors it returns [ErrUnavailable] when Redis
// cannot be reached within the outage wait; when the context ends while
// the message is on its way, the error says that it may have been
// delivered.
func (x *Exchange) Send(ctx context.Context, m *exchange.Message) error {
	_, err := x.SendIncarnation(ctx, m)
	return err
}

// SendIncarnation implements [exchange.IncarnationSender]: Send that also
// returns the incarnation of the mailbox the message went to (read in the
// same round trip), so that a caller learns which run of the agent it
// asked.
func (x *Exchange) SendIncarnation(ctx context.Context, m *exchange.Message) (uint32, error) {
	if err := x.check(); err != nil {
		return 0, err
	}
	return x.s.send(ctx, m, -1)
}

// Status implements [exchange.Exchange.Status]. A mailbox whose owner is
// dead (its heartbeat expired) is terminated here, its queued requests
// answered, and reported [exchange.StatusTerminated].
func (x *Exchange) Status(ctx context.Context, id exchange.EntityID) (exchange.Status, error) {
	if err := x.check(); err != nil {
		return exchange.StatusMissing, err
	}
	code, err := x.status(ctx, id)
	if err != nil {
		return exchange.StatusMissing, err
	}
	switch code {
	case codeMissing:
		return exchange.StatusMissing, nil
	case codeActive:
		return exchange.StatusActive, nil
	}
	return exchange.StatusTerminated, nil
}

// status returns the state code of id, terminating a dead owner's mailbox.
func (x *Exchange) status(ctx context.Context, id exchange.EntityID) (int64, error) {
	s := x.s
	_, ek := s.k.of(id)
	var res []int64
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		res, err = statusScript.Run(ctx, s.cl, []string{ek.e}, s.k.tag, s.grace, roleArg(id.Role)).Int64Slice()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("redisx: status of %v: %w", id, err)
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("%w: status returned %v", ErrProtocol, res)
	}
	if res[0] != codeMissing {
		s.noteInc(id, res[1])
	}
	if res[0] == codeDeadOwner {
		if err := s.terminate(ctx, id, true); err != nil {
			return 0, err
		}
		return codeTerminated, nil
	}
	return res[0], nil
}

// Info implements [exchange.Exchange.Info].
func (x *Exchange) Info(ctx context.Context, id exchange.EntityID) (exchange.EntityInfo, error) {
	info, _, err := x.info(ctx, id)
	return info, err
}

// NodeOf returns the node the entity id lives on ([exchange.ErrBadEntityID]
// when missing).
func (x *Exchange) NodeOf(ctx context.Context, id exchange.EntityID) (string, error) {
	_, node, err := x.info(ctx, id)
	return node, err
}

func (x *Exchange) info(ctx context.Context, id exchange.EntityID) (exchange.EntityInfo, string, error) {
	if err := x.check(); err != nil {
		return exchange.EntityInfo{}, "", err
	}
	s := x.s
	_, ek := s.k.of(id)
	var res []any
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		res, err = infoScript.Run(ctx, s.cl, []string{ek.e}, s.k.tag, s.grace, roleArg(id.Role)).Slice()
		return err
	})
	if err != nil {
		return exchange.EntityInfo{}, "", fmt.Errorf("redisx: info of %v: %w", id, err)
	}
	if len(res) == 0 {
		return exchange.EntityInfo{}, "", fmt.Errorf("%w: info returned nothing", ErrProtocol)
	}
	code, _ := res[0].(int64)
	if code == codeMissing {
		return exchange.EntityInfo{}, "", fmt.Errorf("%w: %v", exchange.ErrBadEntityID, id)
	}
	if len(res) != 5 {
		return exchange.EntityInfo{}, "", fmt.Errorf("%w: info returned %d fields", ErrProtocol, len(res))
	}
	inc, _ := res[1].(int64)
	name, _ := res[2].(string)
	beh, _ := res[3].(string)
	node, _ := res[4].(string)
	s.noteInc(id, inc)
	info := exchange.EntityInfo{ID: id, Name: name, Status: exchange.StatusActive}
	if id.IsAgent() {
		if info.Behavior, err = unpackBehavior(beh); err != nil {
			return exchange.EntityInfo{}, "", err
		}
	}
	switch code {
	case codeTerminated:
		info.Status = exchange.StatusTerminated
	case codeDeadOwner:
		if err := s.terminate(ctx, id, true); err != nil {
			return exchange.EntityInfo{}, "", err
		}
		info.Status = exchange.StatusTerminated
	}
	return info, node, nil
}

// Discover implements [exchange.Exchange.Discover]: one script over the
// active agents of every node. Agents whose owner is dead are terminated
// here and not returned.
func (x *Exchange) Discover(ctx context.Context, behavior string, allowSubtypes bool) ([]exchange.EntityID, error) {
	if err := x.check(); err != nil {
		return nil, err
	}
	s := x.s
	sub := "0"
	if allowSubtypes {
		sub = "1"
	}
	var res []any
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		res, err = discoverScript.Run(ctx, s.cl, []string{s.k.agents()}, s.k.tag, s.grace, behavior, sub).Slice()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redisx: discover %q: %w", behavior, err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("%w: discover returned %d parts", ErrProtocol, len(res))
	}
	found, _ := res[0].([]any)
	dead, _ := res[1].([]any)
	var out []exchange.EntityID
	for _, v := range found {
		if u, err := parseHex(v); err == nil {
			out = append(out, exchange.EntityID{UUID: u, Role: exchange.RoleAgent})
		}
	}
	for _, v := range dead {
		if u, err := parseHex(v); err == nil {
			if err := s.terminate(ctx, exchange.EntityID{UUID: u, Role: exchange.RoleAgent}, true); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func parseHex(v any) (exchange.UUID, error) {
	h, _ := v.(string)
	return parseHexID(h)
}

// Terminate implements [exchange.Exchange.Terminate]: one script marks the
// mailbox terminated and takes its queued requests out, then the error
// responses go to their senders. A receiver blocked in Recv is woken.
func (x *Exchange) Terminate(ctx context.Context, id exchange.EntityID) error {
	if err := x.check(); err != nil {
		return err
	}
	if err := x.s.terminate(ctx, id, false); err != nil {
		return fmt.Errorf("redisx: terminate %v: %w", id, err)
	}
	return nil
}

// Reopen implements [exchange.Reopener]: the terminated mailbox of id comes
// back empty and active, owned by this process; its incarnation goes up by
// one. [exchange.ErrMailboxBusy] when it is active under a live owner, or
// when a live receiver still drains the terminated one after a second.
func (x *Exchange) Reopen(ctx context.Context, id exchange.EntityID) error {
	_, err := x.reopen(ctx, id, "")
	return err
}

// reopen reopens id, with incarnation inc when not empty, and returns the
// new incarnation.
func (x *Exchange) reopen(ctx context.Context, id exchange.EntityID, inc string) (uint32, error) {
	if err := x.check(); err != nil {
		return 0, err
	}
	s := x.s
	h, ek := s.k.of(id)
	wait := time.Now().Add(time.Second)
	for attempt := 0; ; attempt++ {
		var res []int64
		err := s.retry(ctx, true, func(ctx context.Context) error {
			var err error
			res, err = reopenScript.Run(ctx, s.cl, []string{ek.e, ek.q, s.k.agents(), s.k.owned(s.id)},
				s.k.tag, s.grace, roleArg(id.Role), s.id, h, inc).Int64Slice()
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("redisx: reopen %v: %w", id, err)
		}
		if len(res) != 2 {
			return 0, fmt.Errorf("%w: reopen returned %v", ErrProtocol, res)
		}
		switch res[0] {
		case codeMissing:
			return 0, fmt.Errorf("%w: %v", exchange.ErrBadEntityID, id)
		case codeActive:
			return uint32(res[1]), nil
		case codeBusy:
			return 0, fmt.Errorf("%w: %v is active", exchange.ErrMailboxBusy, id)
		case codeDeadOwner:
			if attempt > 2 {
				return 0, fmt.Errorf("%w: %v is active", exchange.ErrMailboxBusy, id)
			}
			if err := s.terminate(ctx, id, true); err != nil {
				return 0, err
			}
			continue
		case codeDraining:
			if time.Now().After(wait) || ctx.Err() != nil {
				return 0, fmt.Errorf("%w: %v is still drained by a live receiver", exchange.ErrMailboxBusy, id)
			}
			time.Sleep(5 * time.Millisecond)
			continue
		case codeReopened:
			s.noteInc(id, res[1])
			info, _, err := x.info(ctx, id)
			if err == nil {
				s.own(ownedEntity{id: id, name: info.Name, beh: packIf(id, info.Behavior), cap: x.o.capacity, inc: uint32(res[1])})
			}
			return uint32(res[1]), nil
		}
		return 0, fmt.Errorf("%w: reopen returned code %d", ErrProtocol, res[0])
	}
}

func packIf(id exchange.EntityID, b exchange.Behavior) string {
	if id.IsAgent() {
		return packBehavior(b)
	}
	return ""
}

// Incarnation implements [exchange.Reopener]. It is answered from the
// incarnations seen in the replies of the last second (every send and
// status carries one), else with a round trip: a Reopen by another process
// is seen at most a second late, or at the next Status.
func (x *Exchange) Incarnation(ctx context.Context, id exchange.EntityID) (uint32, error) {
	if err := x.check(); err != nil {
		return 0, err
	}
	if inc, ok := x.s.cachedInc(id); ok {
		return inc, nil
	}
	s := x.s
	_, ek := s.k.of(id)
	var res []int64
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		res, err = statusScript.Run(ctx, s.cl, []string{ek.e}, s.k.tag, s.grace, roleArg(id.Role)).Int64Slice()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("redisx: incarnation of %v: %w", id, err)
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("%w: status returned %v", ErrProtocol, res)
	}
	if res[0] == codeMissing {
		return 0, fmt.Errorf("%w: %v", exchange.ErrBadEntityID, id)
	}
	s.noteInc(id, res[1])
	return uint32(res[1]), nil
}

// Mailbox implements [exchange.Exchange.Mailbox]. A mailbox has one
// receiver at a time across all processes ([exchange.ErrMailboxBusy]); the
// process that opens it becomes its owner, whose death terminates it. The
// options are accepted and ignored: a receiver here waits on Redis, not on
// a ring.
func (x *Exchange) Mailbox(ctx context.Context, id exchange.EntityID, _ ...exchange.MailboxOption) (exchange.Mailbox, error) {
	if err := x.check(); err != nil {
		return nil, err
	}
	mb, err := x.attach(ctx, id)
	if err != nil {
		return nil, err
	}
	return mb, nil
}

func (x *Exchange) attach(ctx context.Context, id exchange.EntityID) (*mailbox, error) {
	s := x.s
	h, ek := s.k.of(id)
	token := s.id + "/" + strconv.FormatUint(s.tokens.Add(1), 10)
	var res []int64
	err := s.retry(ctx, true, func(ctx context.Context) error {
		var err error
		res, err = attachScript.Run(ctx, s.cl, []string{ek.e, s.k.owned(s.id)},
			s.k.tag, s.grace, roleArg(id.Role), token, s.id, h).Int64Slice()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redisx: mailbox of %v: %w", id, err)
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("%w: attach returned %v", ErrProtocol, res)
	}
	switch res[0] {
	case codeMissing:
		return nil, fmt.Errorf("%w: %v", exchange.ErrBadEntityID, id)
	case codeBusy:
		return nil, fmt.Errorf("%w: %v", exchange.ErrMailboxBusy, id)
	case codeActive, codeTerminated:
	default:
		return nil, fmt.Errorf("%w: attach returned code %d", ErrProtocol, res[0])
	}
	s.noteInc(id, res[1])
	mb := &mailbox{x: x, id: id, hex: h, k: ek, f: s.k.taken(h, token), token: token,
		inc: strconv.FormatInt(res[1], 10), term: res[0] == codeTerminated}
	if res[0] == codeActive {
		info, err := x.Info(ctx, id)
		if err == nil {
			s.own(ownedEntity{id: id, name: info.Name, beh: packIf(id, info.Behavior), cap: x.o.capacity, inc: uint32(res[1]), rcv: token})
		}
	}
	x.mu.Lock()
	if x.mboxes == nil {
		x.mu.Unlock()
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		mb.release(c)
		cancel()
		return nil, exchange.ErrExchangeClosed
	}
	x.mboxes[mb] = struct{}{}
	x.mu.Unlock()
	return mb, nil
}

// Close implements [exchange.Exchange.Close]: it first waits for the
// messages this handle queued with SendAsync to be sent or to fail (up to
// the outage wait and 5 s; those still waiting for room in a full mailbox
// then are dropped, logged), then closes this handle's mailbox clients (waking their receivers, giving back what they took and
// did not return) and releases the process's session when it was the last
// handle: the heartbeat stops and is deleted, so that the other processes
// see the entities this process still owns as terminated at once.
func (x *Exchange) Close() error {
	if x.closed.Swap(true) {
		return nil
	}
	x.async.close(x.o.outage + 5*time.Second)
	x.mu.Lock()
	mboxes := x.mboxes
	x.mboxes = nil
	x.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), x.o.outage)
	defer cancel()
	for mb := range mboxes {
		mb.close(ctx, false)
	}
	x.s.release()
	return nil
}

// forget removes mb from the handle's clients.
func (x *Exchange) forget(mb *mailbox) {
	x.mu.Lock()
	if x.mboxes != nil {
		delete(x.mboxes, mb)
	}
	x.mu.Unlock()
}

// errClosedSession is what a mailbox reports once its handle closed.
var errClosedSession = errors.New("redisx: exchange closed")
