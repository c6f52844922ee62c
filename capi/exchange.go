//go:build linux && cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/ring"
)

// Idle modes of shmex_options.idle.
const (
	idleDefault = 0
	idleSpin    = 1
	idlePark    = 2
	idleBackoff = 3
)

// openOptions are shmex_options in Go.
type openOptions struct {
	root         string
	idle         int
	mailboxBytes uint64
}

// exchangeObj is a shmex_exchange: a shared-memory exchange handle and this
// process's arena store in it.
type exchangeObj struct {
	node
	x *exchange.SHM
	// ctx ends with the handle: it bounds sends that have no timeout of
	// their own (responses).
	ctx    context.Context
	cancel context.CancelFunc

	arenaMu sync.Mutex
	arena   *proxystore.Arena
	closed  bool // under arenaMu: no arena may be opened any more
	kept    kept // payloads made here that are not single use (payload.go)
}

func openExchange(name string, o openOptions) (*exchangeObj, uint64, error) {
	if name == "" {
		return nil, 0, fmt.Errorf("%w: empty exchange name", errInval)
	}
	var opts []exchange.Option
	if o.root != "" {
		opts = append(opts, exchange.WithRoot(o.root))
	}
	switch o.idle {
	case idleDefault:
	case idleSpin:
		opts = append(opts, exchange.WithIdle(ring.Spin))
	case idlePark:
		opts = append(opts, exchange.WithIdle(ring.Park))
	case idleBackoff:
		opts = append(opts, exchange.WithIdle(ring.Backoff))
	default:
		return nil, 0, fmt.Errorf("%w: idle mode %d", errInval, o.idle)
	}
	if o.mailboxBytes != 0 {
		if o.mailboxBytes > 1<<30 {
			return nil, 0, fmt.Errorf("%w: mailbox_bytes %d", errInval, o.mailboxBytes)
		}
		opts = append(opts, exchange.WithMailboxBytes(int(o.mailboxBytes)))
	}
	x, err := exchange.Open(name, opts...)
	if err != nil {
		return nil, 0, err
	}
	e := &exchangeObj{x: x}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	// The arena store is open from the start: the agent layer resolves the
	// proxies that arrive in results with the store of this process that
	// has their id (proxystore.StoreFor), before any loan of ours.
	if _, err := e.store(); err != nil {
		e.cancel()
		x.Close()
		return nil, 0, err
	}
	h, err := adopt(nil, e, kindExchange)
	return e, h, err
}

func (e *exchangeObj) release() error {
	e.cancel()
	e.arenaMu.Lock()
	e.closed = true
	a := e.arena
	e.arenaMu.Unlock()
	e.kept.releaseAll()
	var err error
	if a != nil {
		err = a.Close()
	}
	if xerr := e.x.Close(); err == nil {
		err = xerr
	}
	return err
}

// store returns the process's arena in the exchange, opening it on first use.
func (e *exchangeObj) store() (*proxystore.Arena, error) {
	e.arenaMu.Lock()
	defer e.arenaMu.Unlock()
	if e.closed {
		return nil, errClosed
	}
	if e.arena == nil {
		a, err := proxystore.OpenArena(e.x.Dir())
		if err != nil {
			return nil, err
		}
		e.arena = a
	}
	return e.arena, nil
}

// timeout returns a context for a wait of ns nanoseconds under parent:
// parent itself for ns < 0, an expired context for 0.
func timeout(parent context.Context, ns int64) (context.Context, context.CancelFunc) {
	switch {
	case ns < 0:
		return parent, func() {}
	case ns == 0:
		return context.WithDeadline(parent, time.Time{})
	}
	return context.WithTimeout(parent, time.Duration(ns))
}

func behaviorOf(name string, implements []string) (exchange.Behavior, error) {
	if name == "" {
		return exchange.Behavior{}, fmt.Errorf("%w: empty behavior name", errInval)
	}
	return exchange.Behavior{Name: name, Implements: implements}, nil
}

func (e *exchangeObj) registerAgent(behavior string, implements []string, name string) (exchange.EntityID, error) {
	b, err := behaviorOf(behavior, implements)
	if err != nil {
		return exchange.EntityID{}, err
	}
	var opts []exchange.RegisterOption
	if name != "" {
		opts = append(opts, exchange.WithName(name))
	}
	return e.x.RegisterAgent(e.ctx, b, opts...)
}

func (e *exchangeObj) registerClient(name string) (exchange.EntityID, error) {
	var opts []exchange.RegisterOption
	if name != "" {
		opts = append(opts, exchange.WithName(name))
	}
	return e.x.RegisterClient(e.ctx, opts...)
}

func validID(id exchange.EntityID) error {
	if !id.Valid() {
		return fmt.Errorf("%w: entity id %v (zero uuid or role not 1 or 2)", errInval, id)
	}
	return nil
}

func (e *exchangeObj) terminate(id exchange.EntityID) error {
	if err := validID(id); err != nil {
		return err
	}
	return e.x.Terminate(e.ctx, id)
}

func (e *exchangeObj) status(id exchange.EntityID) (exchange.Status, error) {
	if err := validID(id); err != nil {
		return 0, err
	}
	return e.x.Status(e.ctx, id)
}

func (e *exchangeObj) discover(behavior string, subtypes bool) ([]exchange.EntityID, error) {
	if behavior == "" {
		return nil, fmt.Errorf("%w: empty behavior name", errInval)
	}
	return e.x.Discover(e.ctx, behavior, subtypes)
}

// send sends m, waiting up to ns for room; a zero tag is replaced by a fresh
// one (m.Tag is updated).
func (e *exchangeObj) send(m *exchange.Message, ns int64) error {
	if m.Tag.IsZero() {
		m.Tag = exchange.NewTag()
	}
	// Send validates m: a malformed message is ErrBadMessage, the
	// caller's doing here (EINVAL; elsewhere, a message received broken,
	// it is not), a field over the codec limits ErrMessageTooLarge
	// (ETOOLARGE).
	ctx, cancel := timeout(e.ctx, ns)
	defer cancel()
	err := e.x.Send(ctx, m)
	if errors.Is(err, exchange.ErrBadMessage) {
		return fmt.Errorf("%w: %w", errInval, err)
	}
	return err
}
