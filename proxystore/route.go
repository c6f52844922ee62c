package proxystore

import (
	"context"
	"fmt"

	"github.com/shmex/shmex/exchange"
)

// Locator tells whether an entity lives on this node. The hybrid exchange
// (redisx.Hybrid) implements it.
type Locator interface {
	SameNode(ctx context.Context, id exchange.EntityID) (bool, error)
}

// DestStore is a [Store] that chooses where a payload goes by the entity it
// is for. The wrapper ([Wrap]) calls PutFor with the message's destination
// when its store implements it, and Put otherwise.
type DestStore interface {
	Store
	// PutFor is Put for a payload that dest will resolve.
	PutFor(ctx context.Context, dest exchange.EntityID, b []byte, opts ...PutOption) (Proxy, error)
	// AllocFor is Alloc for a payload that dest will resolve.
	AllocFor(ctx context.Context, dest exchange.EntityID, n int, opts ...PutOption) (Loan, error)
}

// RouteStore picks a store per destination: payloads for entities of this
// node go to Local (the arena store: zero copies), payloads for other nodes
// to Shared (a [RedisStore], or a [FileStore] on a path every node mounts).
// Resolve and Free go to the store that made the proxy, by its store id; a
// proxy of neither is refused with an error that says why it cannot be
// reached from here.
//
// Put and Alloc, which know no destination, use Shared: what they make is
// reachable from every node. RouteStore does not own its stores: Close
// closes neither.
type RouteStore struct {
	local, shared Store
	loc           Locator
}

var _ DestStore = (*RouteStore)(nil)

// NewRouteStore returns a store that puts payloads for this node's entities
// in local and the others' in shared, asking loc where an entity lives.
func NewRouteStore(local, shared Store, loc Locator) *RouteStore {
	return &RouteStore{local: local, shared: shared, loc: loc}
}

// ID returns the local store's id.
func (r *RouteStore) ID() StoreID { return r.local.ID() }

// Local returns the store for this node's entities.
func (r *RouteStore) Local() Store { return r.local }

// Shared returns the store for other nodes' entities.
func (r *RouteStore) Shared() Store { return r.shared }

// pick returns the store for payloads that dest resolves.
func (r *RouteStore) pick(ctx context.Context, dest exchange.EntityID) (Store, error) {
	same, err := r.loc.SameNode(ctx, dest)
	if err != nil {
		return nil, fmt.Errorf("proxystore: where does %v live: %w", dest, err)
	}
	if same {
		return r.local, nil
	}
	return r.shared, nil
}

// PutFor puts b in the store for dest's node.
func (r *RouteStore) PutFor(ctx context.Context, dest exchange.EntityID, b []byte, opts ...PutOption) (Proxy, error) {
	s, err := r.pick(ctx, dest)
	if err != nil {
		return Proxy{}, err
	}
	return s.Put(ctx, b, opts...)
}

// AllocFor lends n bytes in the store for dest's node.
func (r *RouteStore) AllocFor(ctx context.Context, dest exchange.EntityID, n int, opts ...PutOption) (Loan, error) {
	s, err := r.pick(ctx, dest)
	if err != nil {
		return nil, err
	}
	return s.Alloc(ctx, n, opts...)
}

// Put puts b in the shared store.
func (r *RouteStore) Put(ctx context.Context, b []byte, opts ...PutOption) (Proxy, error) {
	return r.shared.Put(ctx, b, opts...)
}

// Alloc lends n bytes in the shared store.
func (r *RouteStore) Alloc(ctx context.Context, n int, opts ...PutOption) (Loan, error) {
	return r.shared.Alloc(ctx, n, opts...)
}

// owner returns the store that made p, or an error that says why p cannot
// be reached from here.
func (r *RouteStore) owner(p Proxy) (Store, error) {
	switch StoreID(p.Store) {
	case r.local.ID():
		return r.local, nil
	case r.shared.ID():
		return r.shared, nil
	}
	var why string
	switch Kind(p.Kind) {
	case KindArena:
		why = "it points into the shared-memory arena of another node (or another exchange), which this process cannot map; payloads for other nodes must go through a shared store (a Redis store, or a file store on a path both nodes mount), which the sender picks when its wrapper's store routes by destination"
	case KindFile:
		why = "it names a file store this process has not opened: open the same directory, on a path both nodes mount, as this node's shared store"
	case KindRedis:
		why = "it names a Redis store of another server or key prefix than this node's shared store"
	case KindMemory:
		why = "it points into another process's memory store"
	default:
		why = "its kind is unknown"
	}
	return nil, fmt.Errorf("%w: %v cannot be resolved on this node: %s", ErrForeignProxy, p, why)
}

// Resolve resolves p with the store that made it.
func (r *RouteStore) Resolve(ctx context.Context, p Proxy) (View, error) {
	s, err := r.owner(p)
	if err != nil {
		return nil, err
	}
	return s.Resolve(ctx, p)
}

// Free frees p with the store that made it.
func (r *RouteStore) Free(ctx context.Context, p Proxy) error {
	s, err := r.owner(p)
	if err != nil {
		return err
	}
	return s.Free(ctx, p)
}

// Close closes neither store.
func (r *RouteStore) Close() error { return nil }
