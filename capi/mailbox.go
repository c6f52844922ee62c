//go:build linux && cgo

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/shmex/shmex/exchange"
)

// mailboxObj is a shmex_mailbox: the raw receiving side of a mailbox. The
// last message received lives in buf (C memory) until the next receive.
type mailboxObj struct {
	node
	ex     *exchangeObj
	mb     exchange.Mailbox
	ctx    context.Context // cancelled by close: ends a receive's wait
	cancel context.CancelFunc
	sem    chan struct{} // held while receiving and while buf is replaced
	m      exchange.Message
	buf    cbuf
	closed bool // under sem
}

func (e *exchangeObj) openMailbox(id exchange.EntityID) (*mailboxObj, uint64, error) {
	if err := validID(id); err != nil {
		return nil, 0, err
	}
	mb, err := e.x.Mailbox(e.ctx, id)
	if err != nil {
		return nil, 0, err
	}
	o := &mailboxObj{ex: e, mb: mb, sem: make(chan struct{}, 1)}
	o.ctx, o.cancel = context.WithCancel(e.ctx)
	h, err := adopt(e, o, kindMailbox)
	if err != nil {
		o.cancel()
		mb.Close()
		return nil, 0, err
	}
	return o, h, nil
}

func (o *mailboxObj) release() error {
	o.cancel()
	err := o.mb.Close()
	o.sem <- struct{}{}
	o.closed = true
	o.buf.free()
	<-o.sem
	return err
}

// recv waits up to ns for the next message and returns it over the
// mailbox's C buffer.
func (o *mailboxObj) recv(ns int64) (cmsg, error) {
	ctx, cancel := timeout(o.ctx, ns)
	defer cancel()
	select {
	case o.sem <- struct{}{}:
	default:
		select {
		case o.sem <- struct{}{}:
		case <-ctx.Done():
			return cmsg{}, o.waitErr(ctx)
		}
	}
	defer func() { <-o.sem }()
	if o.closed {
		return cmsg{}, errClosed
	}
	for {
		err := o.mb.Recv(ctx, &o.m)
		if errors.Is(err, exchange.ErrBadMessage) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return cmsg{}, o.waitErr(ctx)
			}
			return cmsg{}, err
		}
		return copyToC(&o.buf, &o.m)
	}
}

func (o *mailboxObj) waitErr(ctx context.Context) error {
	if o.ctx.Err() != nil {
		return errClosed
	}
	return fmt.Errorf("%w: no message", errTimedOut)
}
