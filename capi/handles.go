//go:build linux && cgo

package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// A handle is what C holds for an object: a number, never a Go pointer. Its
// low 8 bits name the object's kind (so that a handle of the wrong kind is
// reported as such), the rest is a serial number that is never reused, so a
// closed handle stays invalid for good. Handle 0 is NULL.
//
// Objects form a tree: an exchange owns clients, agents, mailboxes, loans and
// views; a client owns handles; a handle owns futures; an agent owns its
// unanswered requests. Closing an object closes its children first.
//
// Invariants:
//   - a child enters its parent's kids and the table together, under the
//     parent's mu, and only while the parent is not closed: a close, which
//     sets closed under the same mu before it takes the kids, never misses a
//     child being added;
//   - an object leaves the table as soon as its close starts, but a lookup
//     that raced the close may still return it, even after its release: so
//     every object stays safe to call once released (its operations fail
//     with errors and never touch memory the release freed);
//   - release runs once per object, after the releases of all its children.
type kind uint8

const (
	kindExchange kind = iota + 1
	kindClient
	kindHandle
	kindFuture
	kindAgent
	kindRequest
	kindMailbox
	kindLoan
	kindView
)

var kindNames = [...]string{"none", "exchange", "client", "handle", "future", "agent", "request", "mailbox", "loan", "view"}

func (k kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// object is anything C holds a handle to.
type object interface {
	base() *node
	// release frees what the object holds itself (not its children, which
	// are released before). It is called once.
	release() error
}

// node is the part of an object that the table manages.
type node struct {
	h      uint64
	parent object
	mu     sync.Mutex
	kids   map[uint64]object
	closed bool
}

func (n *node) base() *node { return n }

var serial atomic.Uint64

// The handle table maps a handle to its object. It is sharded by the
// handle's serial number (consecutive handles fall in different shards), and
// each shard is a plain map under a read-write lock: a lookup takes a read
// lock and allocates nothing; an insert allocates only when a shard's map
// grows. (A sync.Map allocated a node per insert and cost more per lookup,
// on the path of every call.)
const tableShards = 64

type tableShard struct {
	mu sync.RWMutex
	m  map[uint64]object
	_  [64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(map[uint64]object(nil)))%64]byte // a cache line per shard
}

var table [tableShards]tableShard

func shardOf(h uint64) *tableShard { return &table[(h>>8)%tableShards] }

func tableStore(h uint64, o object) {
	s := shardOf(h)
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[uint64]object)
	}
	s.m[h] = o
	s.mu.Unlock()
}

func tableLoad(h uint64) (object, bool) {
	s := shardOf(h)
	s.mu.RLock()
	o, ok := s.m[h]
	s.mu.RUnlock()
	return o, ok
}

func tableDelete(h uint64) {
	s := shardOf(h)
	s.mu.Lock()
	delete(s.m, h)
	s.mu.Unlock()
}

// adopt gives o a handle of kind k under parent (nil for an exchange) and
// puts it in the table. It fails with errClosed when the parent is closed
// (or closing); o is then not registered and the caller releases it.
func adopt(parent object, o object, k kind) (uint64, error) {
	n := o.base()
	n.h = serial.Add(1)<<8 | uint64(k)
	n.parent = parent
	if parent == nil {
		tableStore(n.h, o)
		return n.h, nil
	}
	p := parent.base()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, fmt.Errorf("%w: its %s is closed", errClosed, kind(p.h&0xff))
	}
	if p.kids == nil {
		p.kids = make(map[uint64]object)
	}
	p.kids[n.h] = o
	tableStore(n.h, o)
	return n.h, nil
}

// find returns the object of handle h when it is open and a T; no error
// is built (a caller on a path taken per message that expects misses).
func find[T object](h uint64) (T, bool) {
	v, ok := tableLoad(h)
	if !ok {
		var zero T
		return zero, false
	}
	o, ok := v.(T)
	return o, ok
}

// lookup returns the open object of type T that h names.
func lookup[T object](h uint64, want kind) (T, error) {
	var zero T
	if h == 0 {
		return zero, fmt.Errorf("%w: NULL %s", errBadHandle, want)
	}
	v, ok := tableLoad(h)
	if !ok {
		if k := kind(h & 0xff); k != want && k >= kindExchange && k <= kindView {
			return zero, fmt.Errorf("%w: a %s handle where a %s is expected (or a closed one)", errBadHandle, k, want)
		}
		return zero, fmt.Errorf("%w: %s %#x is closed or was never made", errBadHandle, want, h)
	}
	o, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("%w: a %s handle where a %s is expected", errBadHandle, kind(h&0xff), want)
	}
	return o, nil
}

// closeObject closes o: it leaves the table, its children are closed, its
// resources released, and it leaves its parent. A second close is errClosed
// (the handle is then unknown to C anyway).
func closeObject(o object) error {
	n := o.base()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return errClosed
	}
	n.closed = true
	kids := n.kids
	n.kids = nil
	n.mu.Unlock()
	tableDelete(n.h)
	for _, k := range kids {
		closeObject(k)
	}
	err := o.release()
	if p := n.parent; p != nil {
		pn := p.base()
		pn.mu.Lock()
		delete(pn.kids, n.h)
		pn.mu.Unlock()
	}
	return err
}

// children returns the open children of o of kind k.
func children(o object, k kind) []object {
	n := o.base()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []object
	for h, c := range n.kids {
		if kind(h&0xff) == k {
			out = append(out, c)
		}
	}
	return out
}
