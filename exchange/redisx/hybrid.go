package redisx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/shmex/shmex/exchange"
)

// Hybrid is a handle on an exchange that spans nodes: the entities of this
// node live in its shared-memory exchange ([exchange.SHM]), and every
// entity of every node is registered in Redis with its node's name.
//
//   - Send to an entity of this node is the shared-memory exchange's Send,
//     and nothing else. Send to another node's entity (one the ring
//     registry does not know) pushes it to the entity's Redis mailbox, as
//     [Exchange.Send] does; where an entity lives is looked up in Redis
//     once and cached (an entity never changes node).
//   - Mailbox opens the entity's ring and starts a forwarder that moves
//     what other nodes send (to its Redis mailbox) into the ring; the
//     process that holds the Mailbox becomes the entity's owner in both.
//     A Mailbox of another node's entity is [ErrOtherNode].
//   - Status, Info and Incarnation answer from the shared-memory registry
//     for this node's entities and from Redis for the others; Discover
//     returns both. A process of this node that dies is seen by the others
//     of the node at once (its lock) and by the other nodes within the
//     liveness TTL.
//   - Terminate of this node's entity terminates its ring and its Redis
//     mailbox; of another node's entity, its Redis mailbox, then asks that
//     node's processes (a Redis channel) to terminate the ring, and waits
//     up to a second for one to confirm.
//   - Reopen works on this node's entities only ([ErrOtherNode]).
//
// Caveat: a request from another node that the forwarder had already put
// in the ring when the mailbox is terminated is answered by the
// shared-memory exchange, which cannot reach the requester: the agent
// layer's caller learns it from Status (its call fails after its grace
// period) instead of an error response.
type Hybrid struct {
	shm    *exchange.SHM
	ownSHM bool
	rx     *Exchange
	node   string

	where  sync.Map // exchange.UUID -> node name, of entities looked up in Redis
	closed atomic.Bool

	mu     sync.Mutex
	mboxes map[*hybridMailbox]struct{} // nil once closed

	ctl *control
}

var (
	_ exchange.Exchange          = (*Hybrid)(nil)
	_ exchange.Reopener          = (*Hybrid)(nil)
	_ exchange.IncarnationSender = (*Hybrid)(nil)
	_ exchange.AsyncSender       = (*Hybrid)(nil)
)

// NewHybrid returns a hybrid handle over the shared-memory exchange x of
// this node (WithNode names it; every process of one node must give the
// same name, and every node its own) and the Redis exchange that the
// options name. Closing the Hybrid does not close x.
func NewHybrid(ctx context.Context, x *exchange.SHM, opts ...Option) (*Hybrid, error) {
	rx, err := Open(ctx, opts...)
	if err != nil {
		return nil, err
	}
	h := &Hybrid{shm: x, rx: rx, node: rx.Node(), mboxes: map[*hybridMailbox]struct{}{}}
	if h.ctl, err = h.listen(ctx); err != nil {
		rx.Close()
		return nil, err
	}
	return h, nil
}

// OpenHybrid opens the shared-memory exchange name with shmOpts
// (exchange.Open) and returns a hybrid handle over it, which closes it.
func OpenHybrid(ctx context.Context, name string, shmOpts []exchange.Option, opts ...Option) (*Hybrid, error) {
	x, err := exchange.Open(name, shmOpts...)
	if err != nil {
		return nil, err
	}
	h, err := NewHybrid(ctx, x, opts...)
	if err != nil {
		x.Close()
		return nil, err
	}
	h.ownSHM = true
	return h, nil
}

// SHM returns the node's shared-memory exchange (for a ProcessLauncher).
func (h *Hybrid) SHM() *exchange.SHM { return h.shm }

// Redis returns the Redis half.
func (h *Hybrid) Redis() *Exchange { return h.rx }

// Node returns this node's name.
func (h *Hybrid) Node() string { return h.node }

func (h *Hybrid) check() error {
	if h.closed.Load() {
		return exchange.ErrExchangeClosed
	}
	return nil
}

// RegisterAgent implements [exchange.Exchange.RegisterAgent]: in Redis
// first (which keeps ids unique across nodes), then in the ring registry.
func (h *Hybrid) RegisterAgent(ctx context.Context, behavior exchange.Behavior, opts ...exchange.RegisterOption) (exchange.EntityID, error) {
	if behavior.Name == "" {
		return exchange.EntityID{}, fmt.Errorf("%w: empty behavior name", exchange.ErrInvalidArgument)
	}
	id, name, err := exchange.ResolveRegistration(exchange.RoleAgent, opts)
	if err != nil {
		return exchange.EntityID{}, err
	}
	return id, h.register(ctx, id, name, behavior)
}

// RegisterClient implements [exchange.Exchange.RegisterClient].
func (h *Hybrid) RegisterClient(ctx context.Context, opts ...exchange.RegisterOption) (exchange.EntityID, error) {
	id, name, err := exchange.ResolveRegistration(exchange.RoleClient, opts)
	if err != nil {
		return exchange.EntityID{}, err
	}
	return id, h.register(ctx, id, name, exchange.Behavior{})
}

func (h *Hybrid) register(ctx context.Context, id exchange.EntityID, name string, b exchange.Behavior) error {
	if err := h.check(); err != nil {
		return err
	}
	if err := h.rx.register(ctx, id, name, b, 0); err != nil {
		return err
	}
	ropts := []exchange.RegisterOption{exchange.WithID(id), exchange.WithName(name)}
	var err error
	if id.IsAgent() {
		_, err = h.shm.RegisterAgent(ctx, b, ropts...)
	} else {
		_, err = h.shm.RegisterClient(ctx, ropts...)
	}
	if err != nil {
		if uerr := h.rx.unregister(context.WithoutCancel(ctx), id); uerr != nil {
			h.rx.s.log.Warn("redisx: undo a registration", "id", id, "err", uerr)
		}
		return err
	}
	return nil
}

// local reports whether id is registered in this node's ring registry.
func (h *Hybrid) local(ctx context.Context, id exchange.EntityID) (exchange.Status, error) {
	return h.shm.Status(ctx, id)
}

// nodeOf returns the node id lives on, from the cache or Redis.
func (h *Hybrid) nodeOf(ctx context.Context, id exchange.EntityID) (string, error) {
	if v, ok := h.where.Load(id.UUID); ok {
		return v.(string), nil
	}
	node, err := h.rx.NodeOf(ctx, id)
	if err != nil {
		return "", err
	}
	h.where.Store(id.UUID, node)
	return node, nil
}

// remote reports whether id is known (cached) to live on another node.
func (h *Hybrid) remote(id exchange.EntityID) bool {
	v, ok := h.where.Load(id.UUID)
	return ok && v.(string) != h.node
}

// Send implements [exchange.Exchange.Send]: the shared-memory send first
// (nothing else on the same-node path), then, for a destination the ring
// registry does not know, Redis.
func (h *Hybrid) Send(ctx context.Context, m *exchange.Message) error {
	return h.send(ctx, m, false)
}

// send is Send, and SendAsync with async: the ring first, then Redis,
// waited for or queued.
func (h *Hybrid) send(ctx context.Context, m *exchange.Message, async bool) error {
	if err := h.check(); err != nil {
		return err
	}
	err := h.shm.Send(ctx, m)
	if !refusedByRing(err) {
		return err
	}
	if err := h.toRedis(ctx, m, err); err != nil {
		return err
	}
	if async {
		return h.rx.SendAsync(ctx, m)
	}
	return h.rx.Send(ctx, m)
}

// SendIncarnation implements [exchange.IncarnationSender]: Send that also
// returns the incarnation of the mailbox the message went to.
func (h *Hybrid) SendIncarnation(ctx context.Context, m *exchange.Message) (uint32, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	inc, err := h.shm.SendIncarnation(ctx, m)
	if !refusedByRing(err) {
		return inc, err
	}
	if err := h.toRedis(ctx, m, err); err != nil {
		return 0, err
	}
	return h.rx.SendIncarnation(ctx, m)
}

// SendAsync implements [exchange.AsyncSender]: to an entity of this node
// it is the shared-memory exchange's Send, synchronous as Send is (a
// ring's send is no round trip); to another node's entity it is
// [Exchange.SendAsync], queued to Redis without waiting. A first send to
// an entity that neither the ring registry nor the cache knows looks up its
// node in Redis first, synchronously.
func (h *Hybrid) SendAsync(ctx context.Context, m *exchange.Message) error {
	return h.send(ctx, m, true)
}

// Flush implements [exchange.AsyncSender.Flush]: it waits for what
// SendAsync queued to Redis (the same-node sends were done when SendAsync
// returned).
func (h *Hybrid) Flush(ctx context.Context) error {
	if err := h.check(); err != nil {
		return err
	}
	return h.rx.Flush(ctx)
}

// refusedByRing reports whether the shared-memory send's err says that
// the ring registry does not know the destination, or knows it
// terminated: the message may then be for another node.
func refusedByRing(err error) bool {
	return errors.Is(err, exchange.ErrBadEntityID) || errors.Is(err, exchange.ErrMailboxClosed)
}

// toRedis decides where m goes that the ring registry refused with shmErr:
// nil when through Redis (its destination lives on another node, or is
// registered in Redis and not yet in the ring registry); else the error
// for the sender (shmErr when the destination is unknown everywhere, or
// ours and terminated).
func (h *Hybrid) toRedis(ctx context.Context, m *exchange.Message, shmErr error) error {
	node, err := h.nodeOf(ctx, m.Dest)
	switch {
	case errors.Is(err, exchange.ErrBadEntityID):
		return shmErr
	case err != nil:
		return err
	case node == h.node && !errors.Is(shmErr, exchange.ErrBadEntityID):
		return shmErr // ours, and terminated
	}
	return nil
}

// Status implements [exchange.Exchange.Status].
func (h *Hybrid) Status(ctx context.Context, id exchange.EntityID) (exchange.Status, error) {
	if err := h.check(); err != nil {
		return exchange.StatusMissing, err
	}
	if !h.remote(id) {
		st, err := h.local(ctx, id)
		if err != nil || st != exchange.StatusMissing {
			return st, err
		}
	}
	return h.rx.Status(ctx, id)
}

// Info implements [exchange.Exchange.Info].
func (h *Hybrid) Info(ctx context.Context, id exchange.EntityID) (exchange.EntityInfo, error) {
	if err := h.check(); err != nil {
		return exchange.EntityInfo{}, err
	}
	if !h.remote(id) {
		info, err := h.shm.Info(ctx, id)
		if err == nil || !errors.Is(err, exchange.ErrBadEntityID) {
			return info, err
		}
	}
	return h.rx.Info(ctx, id)
}

// Discover implements [exchange.Exchange.Discover]: the agents of every
// node (Redis), and those of this node's ring registry that were
// registered without Redis; this node's agents whose process died are
// left out at once.
func (h *Hybrid) Discover(ctx context.Context, behavior string, allowSubtypes bool) ([]exchange.EntityID, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	here, err := h.shm.Discover(ctx, behavior, allowSubtypes)
	if err != nil {
		return nil, err
	}
	all, err := h.rx.Discover(ctx, behavior, allowSubtypes)
	if err != nil {
		return nil, err
	}
	out := here
	for _, id := range all {
		if slices.Contains(here, id) {
			continue
		}
		if st, err := h.local(ctx, id); err == nil && st == exchange.StatusTerminated {
			continue // this node saw it die
		}
		out = append(out, id)
	}
	return out, nil
}

// Terminate implements [exchange.Exchange.Terminate].
func (h *Hybrid) Terminate(ctx context.Context, id exchange.EntityID) error {
	if err := h.check(); err != nil {
		return err
	}
	st := exchange.StatusMissing
	if !h.remote(id) {
		var err error
		if st, err = h.local(ctx, id); err != nil {
			return err
		}
	}
	if st != exchange.StatusMissing {
		if err := h.shm.Terminate(ctx, id); err != nil {
			return err
		}
		return h.rx.Terminate(ctx, id)
	}
	node, err := h.nodeOf(ctx, id)
	if errors.Is(err, exchange.ErrBadEntityID) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.rx.Terminate(ctx, id); err != nil {
		return err
	}
	if node != h.node {
		h.tell(ctx, node, id)
	}
	return nil
}

// Reopen implements [exchange.Reopener] for this node's entities: the ring
// and the Redis mailbox come back under the ring's new incarnation.
func (h *Hybrid) Reopen(ctx context.Context, id exchange.EntityID) error {
	if err := h.check(); err != nil {
		return err
	}
	st, err := h.local(ctx, id)
	if err != nil {
		return err
	}
	if st == exchange.StatusMissing {
		node, err := h.nodeOf(ctx, id)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: %v lives on node %q", ErrOtherNode, id, node)
	}
	if err := h.shm.Reopen(ctx, id); err != nil {
		return err
	}
	inc, err := h.shm.Incarnation(ctx, id)
	if err != nil {
		return err
	}
	_, err = h.rx.reopen(ctx, id, fmt.Sprint(inc))
	if errors.Is(err, exchange.ErrMailboxBusy) {
		// Still active in Redis (the ring's owner died and the heartbeat
		// has not expired yet): terminate it there first.
		if terr := h.rx.Terminate(ctx, id); terr != nil {
			return terr
		}
		_, err = h.rx.reopen(ctx, id, fmt.Sprint(inc))
	}
	if errors.Is(err, exchange.ErrBadEntityID) {
		return nil // registered in the ring registry only
	}
	return err
}

// Incarnation implements [exchange.Reopener].
func (h *Hybrid) Incarnation(ctx context.Context, id exchange.EntityID) (uint32, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	inc, err := h.shm.Incarnation(ctx, id)
	if err == nil || !errors.Is(err, exchange.ErrBadEntityID) {
		return inc, err
	}
	return h.rx.Incarnation(ctx, id)
}

// SameNode reports whether the entity id lives on this node
// ([exchange.ErrBadEntityID] when it is registered nowhere): what a
// proxystore.RouteStore asks to pick a store per destination.
func (h *Hybrid) SameNode(ctx context.Context, id exchange.EntityID) (bool, error) {
	if h.remote(id) {
		return false, nil
	}
	if st, err := h.local(ctx, id); err == nil && st != exchange.StatusMissing {
		return true, nil
	}
	node, err := h.nodeOf(ctx, id)
	if err != nil {
		return false, err
	}
	return node == h.node, nil
}

// Mailbox implements [exchange.Exchange.Mailbox] for this node's entities;
// opts apply to the receiver of the node's ring.
func (h *Hybrid) Mailbox(ctx context.Context, id exchange.EntityID, opts ...exchange.MailboxOption) (exchange.Mailbox, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	if h.remote(id) {
		return nil, fmt.Errorf("%w: %v: open its mailbox on its node", ErrOtherNode, id)
	}
	inner, err := h.shm.Mailbox(ctx, id, opts...)
	if errors.Is(err, exchange.ErrBadEntityID) {
		if node, nerr := h.nodeOf(ctx, id); nerr == nil && node != h.node {
			return nil, fmt.Errorf("%w: %v lives on node %q: open its mailbox there", ErrOtherNode, id, node)
		}
	}
	if err != nil {
		return nil, err
	}
	hm := &hybridMailbox{h: h, inner: inner, id: id, left: make(chan struct{})}
	rmb, err := h.rx.attach(ctx, id)
	switch {
	case err == nil:
		hm.rmb = rmb
		h.rx.forget(rmb) // the hybrid mailbox closes it
		var fctx context.Context
		fctx, hm.stop = context.WithCancel(context.Background())
		hm.fwdDone = make(chan struct{})
		go hm.forward(fctx)
	case errors.Is(err, exchange.ErrBadEntityID):
		// In the ring registry only: nothing reaches it through Redis.
	default:
		inner.Close()
		return nil, err
	}
	h.mu.Lock()
	if h.mboxes == nil {
		h.mu.Unlock()
		hm.Close()
		return nil, exchange.ErrExchangeClosed
	}
	h.mboxes[hm] = struct{}{}
	h.mu.Unlock()
	return hm, nil
}

// Close implements [exchange.Exchange.Close]: it closes this handle's
// mailbox clients and its Redis half, and the shared-memory exchange when
// OpenHybrid opened it.
func (h *Hybrid) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	h.mu.Lock()
	mboxes := h.mboxes
	h.mboxes = nil
	h.mu.Unlock()
	for hm := range mboxes {
		hm.close(false)
	}
	h.ctl.close()
	err := h.rx.Close()
	if h.ownSHM {
		if serr := h.shm.Close(); err == nil {
			err = serr
		}
	}
	return err
}

func (h *Hybrid) forget(hm *hybridMailbox) {
	h.mu.Lock()
	if h.mboxes != nil {
		delete(h.mboxes, hm)
	}
	h.mu.Unlock()
}
