//go:build linux && cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/shmex/shmex/proxystore"
	"github.com/tinylib/msgp/msgp"
)

// Payloads of the C ABI are proxystore Blobs: a loan is AllocBlob, a put
// NewBlob, and their proxies the Blob's wire form (docs/wire.md: one
// 59-byte MessagePack ext of form bytes), which a Go action that takes a
// proxystore.Blob decodes without a copy and without a codec of its own.

// Lifetimes of shmex.h.
const (
	lifetimeSingleUse = 0
	lifetimeOwned     = 1
	lifetimeLeased    = 2
)

// Forms of shmex_view_form.
const (
	formValue = 0
	formBytes = 1
)

// maxProxy is SHMEX_PROXY_MAX: room for any proxy payload.
const maxProxy = 64

func init() {
	if proxystore.ProxyEncodedSize > maxProxy {
		panic("capi: SHMEX_PROXY_MAX is smaller than a proxy payload")
	}
}

func putOptions(lifetime int, leaseNS int64) ([]proxystore.PutOption, error) {
	switch lifetime {
	case lifetimeSingleUse:
		return nil, nil // a Blob's default
	case lifetimeOwned:
		return []proxystore.PutOption{proxystore.WithLifetime(proxystore.Owned)}, nil
	case lifetimeLeased:
		if leaseNS <= 0 {
			return nil, fmt.Errorf("%w: lease of %d ns", errInval, leaseNS)
		}
		return []proxystore.PutOption{proxystore.WithLease(time.Now().Add(time.Duration(leaseNS)))}, nil
	}
	return nil, fmt.Errorf("%w: lifetime %d", errInval, lifetime)
}

// kept holds the Blobs this process made with a lifetime other than single
// use, by proxy: releasing one frees its payload, which shmex_proxy_free
// (or the exchange's close) does.
type kept struct {
	mu    sync.Mutex
	blobs map[string]proxystore.Blob
}

func (k *kept) add(proxy []byte, b proxystore.Blob) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.blobs == nil {
		k.blobs = make(map[string]proxystore.Blob)
	}
	k.blobs[string(proxy)] = b
}

func (k *kept) take(proxy []byte) (proxystore.Blob, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.blobs[string(proxy)]
	delete(k.blobs, string(proxy))
	return b, ok
}

// releaseAll frees every kept payload (the exchange is closing).
func (k *kept) releaseAll() {
	k.mu.Lock()
	blobs := k.blobs
	k.blobs = nil
	k.mu.Unlock()
	for _, b := range blobs {
		b.Release()
	}
}

// loanObj is a shmex_loan: writable bytes in the process's arena, a Blob
// not sent yet.
type loanObj struct {
	node
	ex     *exchangeObj
	b      proxystore.Blob
	single bool
	done   bool // under mu: committed or aborted
}

func (e *exchangeObj) allocLoan(n uint64, lifetime int, leaseNS int64) (*loanObj, uint64, error) {
	if n > 1<<62 {
		return nil, 0, fmt.Errorf("%w: loan of %d bytes", errInval, n)
	}
	opts, err := putOptions(lifetime, leaseNS)
	if err != nil {
		return nil, 0, err
	}
	a, err := e.store()
	if err != nil {
		return nil, 0, err
	}
	b, err := proxystore.AllocBlob(e.ctx, a, int(n), opts...)
	if err != nil {
		return nil, 0, err
	}
	o := &loanObj{ex: e, b: b, single: lifetime == lifetimeSingleUse}
	h, err := adopt(e, o, kindLoan)
	if err != nil {
		b.Release()
		return nil, 0, err
	}
	return o, h, nil
}

// data returns the loan's first byte (a pointer into the mapping, even for
// 0 bytes).
func (o *loanObj) data() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(o.b.Bytes())) }

// finish marks the loan committed or aborted; false when it was already.
func (o *loanObj) finish() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return false
	}
	o.done = true
	return true
}

// commit publishes the loan and returns its proxy.
func (o *loanObj) commit() ([]byte, error) {
	if !o.finish() {
		return nil, fmt.Errorf("%w: the loan was committed or aborted", errBadHandle)
	}
	p, err := o.ex.publish(o.b, o.single)
	closeObject(o)
	return p, err
}

// publish encodes a made Blob (committing a loan) and hands its reference
// over: a single-use Blob is left to its receiver, whose release evicts it;
// another is kept until shmex_proxy_free or the exchange's close.
func (e *exchangeObj) publish(b proxystore.Blob, single bool) ([]byte, error) {
	p, err := b.MarshalMsg(make([]byte, 0, maxProxy))
	if err != nil {
		b.Release()
		return nil, err
	}
	if single {
		b.Release() // a sent single-use Blob is its receiver's to evict
	} else {
		e.kept.add(p, b)
	}
	return p, nil
}

// abort gives the loan back.
func (o *loanObj) abort() error {
	if !o.finish() {
		return fmt.Errorf("%w: the loan was committed or aborted", errBadHandle)
	}
	err := o.b.Release()
	closeObject(o)
	return err
}

// release gives back a loan neither committed nor aborted (its exchange is
// closing).
func (o *loanObj) release() error {
	if o.finish() {
		o.b.Release()
	}
	return nil
}

func (e *exchangeObj) put(data []byte, lifetime int, leaseNS int64) ([]byte, error) {
	opts, err := putOptions(lifetime, leaseNS)
	if err != nil {
		return nil, err
	}
	a, err := e.store()
	if err != nil {
		return nil, err
	}
	b, err := proxystore.NewBlob(e.ctx, a, data, opts...)
	if err != nil {
		return nil, err
	}
	return e.publish(b, lifetime == lifetimeSingleUse)
}

// reserve creates warm arena segments ahead of payloads of these sizes
// (proxystore.Arena.Reserve).
func (e *exchangeObj) reserve(sizes []int) error {
	a, err := e.store()
	if err != nil {
		return err
	}
	return a.Reserve(e.ctx, sizes...)
}

// viewObj is a shmex_view: a resolved payload, read-only.
type viewObj struct {
	node
	v    proxystore.View
	b    []byte // the bytes handed to C: a Blob's, or a proxied value's encoding
	form int
}

// resolve resolves a proxy of either form with this process's arena: for a
// Blob's (form bytes) the view is its bytes; for a value proxied whole by a
// Go wrapper (form value), the content of the bin when the value is one, or
// else the value's MessagePack encoding.
func (e *exchangeObj) resolve(payload []byte) (*viewObj, uint64, error) {
	p, f, err := proxystore.ParseProxy(payload)
	if err != nil {
		return nil, 0, err
	}
	a, err := e.store()
	if err != nil {
		return nil, 0, err
	}
	v, err := a.Resolve(e.ctx, p)
	if err != nil {
		return nil, 0, err
	}
	o := &viewObj{v: v, b: v.Bytes(), form: formBytes}
	if f == proxystore.FormValue {
		o.form = formValue
		if msgp.NextType(o.b) == msgp.BinType {
			if bin, rest, err := msgp.ReadBytesZC(o.b); err == nil && len(rest) == 0 {
				o.b, o.form = bin, formBytes
			}
		}
	}
	h, err := adopt(e, o, kindView)
	if err != nil {
		v.Release()
		return nil, 0, err
	}
	return o, h, nil
}

func (o *viewObj) data() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(o.b)) }

func (o *viewObj) release() error {
	if err := o.v.Release(); err != nil && !errors.Is(err, proxystore.ErrReleased) {
		return err
	}
	return nil
}

// freeProxy frees a payload this process made with a lifetime other than
// single use.
func (e *exchangeObj) freeProxy(payload []byte) error {
	if b, ok := e.kept.take(payload); ok {
		return b.Release()
	}
	p, _, err := proxystore.ParseProxy(payload)
	if err != nil {
		return err
	}
	a, err := e.store()
	if err != nil {
		return err
	}
	return a.Free(context.Background(), p)
}
