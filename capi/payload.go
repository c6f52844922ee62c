package main

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/shmex/shmex/proxystore"
)

// Lifetimes of shmex.h.
const (
	lifetimeSingleUse = 0
	lifetimeOwned     = 1
	lifetimeLeased    = 2
)

// maxProxy is SHMEX_PROXY_MAX: room for any proxy payload.
const maxProxy = 64

func init() {
	if proxystore.MaxEncodedProxy+3 > maxProxy {
		panic("capi: SHMEX_PROXY_MAX is smaller than a proxy payload")
	}
}

func putOptions(lifetime int, leaseNS int64) ([]proxystore.PutOption, error) {
	switch lifetime {
	case lifetimeSingleUse:
		return []proxystore.PutOption{proxystore.WithSingleUse()}, nil
	case lifetimeOwned:
		return nil, nil
	case lifetimeLeased:
		if leaseNS <= 0 {
			return nil, fmt.Errorf("%w: lease of %d ns", errInval, leaseNS)
		}
		return []proxystore.PutOption{proxystore.WithLease(time.Now().Add(time.Duration(leaseNS)))}, nil
	}
	return nil, fmt.Errorf("%w: lifetime %d", errInval, lifetime)
}

// loanObj is a shmex_loan: writable bytes in the process's arena.
type loanObj struct {
	node
	l proxystore.Loan
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
	l, err := a.Alloc(e.ctx, int(n), opts...)
	if err != nil {
		return nil, 0, err
	}
	o := &loanObj{l: l}
	h, err := adopt(e, o, kindLoan)
	if err != nil {
		l.Abort()
		return nil, 0, err
	}
	return o, h, nil
}

// data returns the loan's first byte (never nil: a pointer into the
// mapping even for 0 bytes).
func (o *loanObj) data() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(o.l.Bytes())) }

// commit publishes the loan and returns its proxy payload.
func (o *loanObj) commit() ([]byte, error) {
	p, err := o.l.Commit()
	if err != nil {
		return nil, err
	}
	closeObject(o) // release finds the loan committed: Abort is a no-op error
	return proxystore.AppendPayload(make([]byte, 0, maxProxy), p), nil
}

// abort gives the loan back.
func (o *loanObj) abort() error {
	err := o.l.Abort()
	closeObject(o)
	return err
}

// release aborts a loan neither committed nor aborted (its exchange is
// closing). After Commit or Abort, Abort fails harmlessly.
func (o *loanObj) release() error {
	o.l.Abort()
	return nil
}

func (e *exchangeObj) put(b []byte, lifetime int, leaseNS int64) ([]byte, error) {
	opts, err := putOptions(lifetime, leaseNS)
	if err != nil {
		return nil, err
	}
	a, err := e.store()
	if err != nil {
		return nil, err
	}
	p, err := a.Put(e.ctx, b, opts...)
	if err != nil {
		return nil, err
	}
	return proxystore.AppendPayload(make([]byte, 0, maxProxy), p), nil
}

// viewObj is a shmex_view: a resolved payload, read-only.
type viewObj struct {
	node
	v proxystore.View
}

func (e *exchangeObj) resolve(payload []byte) (*viewObj, uint64, error) {
	p, err := proxystore.ParsePayload(payload)
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
	o := &viewObj{v: v}
	h, err := adopt(e, o, kindView)
	if err != nil {
		v.Release()
		return nil, 0, err
	}
	return o, h, nil
}

func (o *viewObj) data() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(o.v.Bytes())) }

func (o *viewObj) release() error {
	if err := o.v.Release(); err != nil && !errors.Is(err, proxystore.ErrReleased) {
		return err
	}
	return nil
}

func (e *exchangeObj) freeProxy(payload []byte) error {
	p, err := proxystore.ParsePayload(payload)
	if err != nil {
		return err
	}
	a, err := e.store()
	if err != nil {
		return err
	}
	return a.Free(e.ctx, p)
}
