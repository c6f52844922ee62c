package proxystore

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// The stores open in this process, by id: a decoder that meets a proxy (a
// [Blob] in an action's arguments, a proxied payload in an agent's message)
// has no store at hand, and finds one here. Every store registers itself
// when it is opened and leaves when it is closed.

// ErrNoStore reports a proxy whose store is not open in this process: open
// the store (for the arena store, [OpenArena] on the exchange's directory)
// in every process that receives proxies of it.
var ErrNoStore = fmt.Errorf("%w: no store of this id is open in this process", ErrForeignProxy)

var registry struct {
	mu     sync.RWMutex
	stores map[StoreID][]Store
}

// register adds s to the stores of this process.
func register(s Store) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.stores == nil {
		registry.stores = make(map[StoreID][]Store)
	}
	registry.stores[s.ID()] = append(registry.stores[s.ID()], s)
}

// unregister removes s.
func unregister(s Store) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	id := s.ID()
	list := slices.DeleteFunc(registry.stores[id], func(x Store) bool { return x == s })
	if len(list) == 0 {
		delete(registry.stores, id)
		return
	}
	registry.stores[id] = list
}

// StoreFor returns a store open in this process with the given id (the
// first opened of those still open), or [ErrNoStore].
func StoreFor(id StoreID) (Store, error) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	if list := registry.stores[id]; len(list) > 0 {
		return list[0], nil
	}
	return nil, fmt.Errorf("%w (store %v): the sender proxies payloads into a store this process did not open. "+
		"Open it here: proxystore.OpenArena(x.Dir()) for the arena store of the shared-memory exchange x, "+
		"and receive through proxystore.Wrap(x, arena) "+
		"(in an agent process that a ProcessLauncher starts, with agent.SetChildExchange); "+
		"proxystore.OpenFileStore on the same directory for a file store", ErrNoStore, id)
}

// ResolvePayload resolves a payload that is one proxy (of either form) with
// the store of this process that made or shares it ([StoreFor]), and
// returns the view and the proxy's form: for [FormValue] the view holds the
// MessagePack encoding of the value, for [FormBytes] the bytes themselves.
// The caller releases the view. Errors: those of [ParseProxy], [StoreFor]
// and the store's Resolve.
func ResolvePayload(ctx context.Context, payload []byte) (View, Form, error) {
	p, f, err := ParseProxy(payload)
	if err != nil {
		return nil, 0, err
	}
	s, err := StoreFor(p.Store)
	if err != nil {
		return nil, 0, err
	}
	v, err := s.Resolve(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	return v, f, nil
}
