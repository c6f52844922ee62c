package proxystore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Store holds payloads and hands out proxies to them. Two implementations
// share this contract: the arena store (shared-memory arenas of one
// exchange; zero copies between processes) and the file store (files under a
// directory, optionally compressed; payloads that must outlive the
// processes or do not fit the arenas).
//
// All methods are safe for concurrent use. After Close they return
// [ErrClosed].
type Store interface {
	// ID returns the store's id, carried by every proxy it makes.
	ID() StoreID

	// Put copies b into the store and returns its proxy.
	Put(ctx context.Context, b []byte, opts ...PutOption) (Proxy, error)

	// Alloc lends a writable region of n bytes inside the store: the caller
	// fills [Loan.Bytes] in place and turns it into a proxy with
	// [Loan.Commit], so the payload is never copied. A store that cannot
	// lend memory in place may back the loan with a buffer and copy at
	// Commit.
	Alloc(ctx context.Context, n int, opts ...PutOption) (Loan, error)

	// Resolve checks p (store id, kind, bounds, generation, lifetime, the
	// owner being alive) and returns a view of its payload. Every
	// successful Resolve takes one reference, dropped by [View.Release].
	// Errors: [ErrForeignProxy], [ErrBadProxy], [ErrStaleProxy],
	// [ErrExpired], [ErrOwnerDead], [ErrClosed].
	Resolve(ctx context.Context, p Proxy) (View, error)

	// Free ends the life of a payload this store made: it is reclaimed as
	// soon as no reference to it remains, and later resolves of p fail
	// with [ErrStaleProxy]. Only the process that made the payload may
	// free an arena block ([ErrNotOwner] otherwise).
	Free(ctx context.Context, p Proxy) error

	// Close releases the store's resources: the views and loans it handed
	// out become invalid (see the package documentation for what stays
	// mapped), and the arenas this process owns are unlinked.
	io.Closer
}

// Loan is a writable region lent by [Store.Alloc].
type Loan interface {
	// Bytes returns the region: len(Bytes()) is the n given to Alloc. It is
	// valid until Commit or Abort.
	Bytes() []byte
	// Commit publishes the region's contents and returns their proxy. The
	// region must not be written after Commit.
	Commit() (Proxy, error)
	// Abort gives the region back without publishing it.
	Abort() error
}

// View is a read-only view of a resolved payload.
type View interface {
	// Bytes returns the payload. The slice may alias shared memory mapped
	// read-only: writing to it faults. It is valid until Release.
	Bytes() []byte
	// Proxy returns the proxy this view resolved.
	Proxy() Proxy
	// Release drops the view's reference. A second Release is
	// [ErrReleased].
	Release() error
}

// Lifetime says when a payload is reclaimed, as in ProxyStore.
type Lifetime uint8

// Lifetimes.
const (
	// Owned (the default): the payload lives until its maker frees it
	// ([Store.Free]) or closes the store, and no reference remains.
	Owned Lifetime = iota
	// SingleUse: the payload is evicted when the first reference taken by a
	// Resolve is released (ProxyStore's evict=True); later resolves fail
	// with [ErrStaleProxy].
	SingleUse
	// Leased: the payload lives until a deadline ([WithLease]); resolves
	// after the deadline fail with [ErrExpired], and it is reclaimed once
	// no reference remains.
	Leased
)

// String names the lifetime.
func (l Lifetime) String() string {
	switch l {
	case Owned:
		return "owned"
	case SingleUse:
		return "single-use"
	case Leased:
		return "leased"
	}
	return "Lifetime(?)"
}

// PutOptions are the options of [Store.Put] and [Store.Alloc], built by
// [ApplyPutOptions] from [PutOption] values.
type PutOptions struct {
	// Lifetime of the payload; Owned by default.
	Lifetime Lifetime
	// Deadline of a Leased payload.
	Deadline time.Time
}

// PutOption sets an option of [Store.Put] or [Store.Alloc].
type PutOption func(*PutOptions)

// WithSingleUse makes the payload single use: evicted when the first
// resolver releases it.
func WithSingleUse() PutOption {
	return func(o *PutOptions) { o.Lifetime = SingleUse }
}

// WithLease makes the payload live until deadline.
func WithLease(deadline time.Time) PutOption {
	return func(o *PutOptions) { o.Lifetime, o.Deadline = Leased, deadline }
}

// WithLifetime sets the lifetime explicitly; with Leased, pair it with a
// deadline through [WithLease] instead.
func WithLifetime(l Lifetime) PutOption {
	return func(o *PutOptions) { o.Lifetime = l }
}

// ApplyPutOptions returns the options that opts set.
func ApplyPutOptions(opts []PutOption) PutOptions {
	switch {
	case len(opts) == 0:
		return PutOptions{}
	case len(opts) == 1 && &opts[0] == &singleUseOpts[0]:
		// A Blob's default, on every AllocBlob: applying the option would
		// move o to the heap (an allocation per payload).
		return PutOptions{Lifetime: SingleUse}
	}
	var o PutOptions
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// putOptions applies opts and checks them as every store does before it
// allocates: a known lifetime, and a deadline for a Leased one.
func putOptions(opts []PutOption) (PutOptions, error) {
	o := ApplyPutOptions(opts)
	switch {
	case o.Lifetime > Leased:
		return o, fmt.Errorf("proxystore: unknown lifetime %v", o.Lifetime)
	case o.Lifetime == Leased && o.Deadline.IsZero():
		return o, errors.New("proxystore: Leased payload without a deadline (use WithLease)")
	}
	return o, nil
}
