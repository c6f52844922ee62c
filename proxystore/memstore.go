package proxystore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// KindMemory marks the proxies of a [MemStore]: they resolve in the process
// that made them only.
const KindMemory Kind = 3

// MemStore is an in-process [Store]: a map of heap buffers. It is what tests
// and single-process programs (with [exchange.NewLocal]) use in place of the
// arena store; its proxies mean nothing to another process. Lifetimes
// behave as in the other stores. Views share the stored buffer: do not
// write to [View.Bytes].
//
// [exchange.NewLocal]: https://pkg.go.dev/github.com/shmex/shmex/exchange#NewLocal
type MemStore struct {
	id StoreID

	mu     sync.Mutex
	closed bool
	next   uint64
	items  map[uint64]*memItem
}

// memGeneration is the generation of every MemStore proxy: a segment
// number is never reused, so a payload needs no other.
const memGeneration = 1

type memItem struct {
	b        []byte
	life     Lifetime
	deadline time.Time
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore with a fresh id.
// It is registered in the process's stores ([StoreFor]) until Close.
func NewMemStore() *MemStore {
	s := &MemStore{id: NewStoreID(), items: map[uint64]*memItem{}}
	register(s)
	return s
}

// ID returns the store's id.
func (s *MemStore) ID() StoreID { return s.id }

// Len returns how many payloads the store holds.
func (s *MemStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Put copies b into the store.
func (s *MemStore) Put(ctx context.Context, b []byte, opts ...PutOption) (Proxy, error) {
	l, err := s.Alloc(ctx, len(b), opts...)
	if err != nil {
		return Proxy{}, err
	}
	copy(l.Bytes(), b)
	return l.Commit()
}

// Alloc lends a heap buffer of n bytes.
func (s *MemStore) Alloc(ctx context.Context, n int, opts ...PutOption) (Loan, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("%w: negative size %d", ErrBadProxy, n)
	}
	o, err := putOptions(opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return &memLoan{s: s, b: make([]byte, n), o: o}, nil
}

type memLoan struct {
	s    *MemStore
	b    []byte
	o    PutOptions
	done atomic.Bool
}

func (l *memLoan) Bytes() []byte { return l.b }

func (l *memLoan) Commit() (Proxy, error) {
	if l.done.Swap(true) {
		return Proxy{}, ErrReleased
	}
	s := l.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Proxy{}, ErrClosed
	}
	s.next++
	seg := s.next
	s.items[seg] = &memItem{b: l.b[:len(l.b):len(l.b)], life: l.o.Lifetime, deadline: l.o.Deadline}
	return Proxy{Store: s.id, Kind: uint8(KindMemory), Segment: seg, Length: uint64(len(l.b)), Generation: memGeneration}, nil
}

func (l *memLoan) Abort() error {
	if l.done.Swap(true) {
		return ErrReleased
	}
	return nil
}

// lookup returns the live item p names; s.mu is held.
func (s *MemStore) lookup(p Proxy) (*memItem, error) {
	switch {
	case s.closed:
		return nil, ErrClosed
	case StoreID(p.Store) != s.id:
		return nil, fmt.Errorf("%w: %v", ErrForeignProxy, p)
	case Kind(p.Kind) != KindMemory || p.Offset != 0:
		return nil, fmt.Errorf("%w: %v", ErrBadProxy, p)
	}
	it := s.items[p.Segment]
	if it == nil || p.Generation != memGeneration {
		return nil, fmt.Errorf("%w: %v", ErrStaleProxy, p)
	}
	if uint64(len(it.b)) != p.Length {
		return nil, fmt.Errorf("%w: %v: holds %d bytes", ErrBadProxy, p, len(it.b))
	}
	return it, nil
}

// Resolve returns a view sharing the stored buffer.
func (s *MemStore) Resolve(ctx context.Context, p Proxy) (View, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, err := s.lookup(p)
	if err != nil {
		return nil, err
	}
	if it.life == Leased && time.Now().After(it.deadline) {
		delete(s.items, p.Segment)
		return nil, fmt.Errorf("%w: %v", ErrExpired, p)
	}
	return &memView{s: s, p: p, b: it.b, evict: it.life == SingleUse}, nil
}

type memView struct {
	s        *MemStore
	p        Proxy
	b        []byte
	evict    bool
	released atomic.Bool
}

func (v *memView) Bytes() []byte   { return v.b }
func (v *memView) Proxy() Proxy    { return v.p }
func (v *memView) singleUse() bool { return v.evict }

func (v *memView) Release() error {
	if v.released.Swap(true) {
		return ErrReleased
	}
	if v.evict {
		s := v.s
		s.mu.Lock()
		if _, ok := s.items[v.p.Segment]; ok {
			delete(s.items, v.p.Segment)
		}
		s.mu.Unlock()
	}
	return nil
}

// Free removes the payload; views keep their bytes.
func (s *MemStore) Free(ctx context.Context, p Proxy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.lookup(p); err != nil {
		return err
	}
	delete(s.items, p.Segment)
	return nil
}

// Close drops every payload; views keep their bytes.
func (s *MemStore) Close() error {
	unregister(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.items = nil
	return nil
}
