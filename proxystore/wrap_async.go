package proxystore

import (
	"context"
	"errors"

	"github.com/shmex/shmex/exchange"
)

// prefetcher is the goroutine of a Mailbox with WithResolveAsync: it
// receives one message ahead of Recv and resolves its proxy.
//
// Invariants:
//   - Only the goroutine calls the wrapped Recv, into one of two items
//     that circulate between free (the goroutine takes one), ready (an
//     unbuffered hand-off to Recv) and back to free (Recv returns it once
//     it has copied the message out). So at most one message is received
//     and not yet returned by Recv, plus the one Recv is handing out.
//   - A message is handed to Recv or, when the prefetcher is stopped
//     first, logged and discarded (its view released): never silently.
//   - final is written before done is closed; Recv reads it only after
//     done is closed.
type prefetcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan *prefetched
	free   chan *prefetched
	done   chan struct{}
	final  error
}

// prefetched is a message received ahead, with its resolution, or the
// error of the wrapped Recv.
type prefetched struct {
	m   exchange.Message
	r   resolution
	err error
}

// startPrefetch starts the prefetcher; called once, under mb.mu, by the
// first Recv.
func (mb *Mailbox) startPrefetch() {
	ctx, cancel := context.WithCancel(context.Background())
	pf := &prefetcher{
		ctx:    ctx,
		cancel: cancel,
		ready:  make(chan *prefetched),
		free:   make(chan *prefetched, 2),
		done:   make(chan struct{}),
	}
	pf.free <- new(prefetched)
	pf.free <- new(prefetched)
	mb.pf = pf
	go pf.run(mb)
}

func (pf *prefetcher) run(mb *Mailbox) {
	final := error(exchange.ErrMailboxClosed)
	defer func() {
		pf.final = final
		close(pf.done)
	}()
	for {
		var it *prefetched
		select {
		case it = <-pf.free:
		case <-pf.ctx.Done():
			return
		}
		err := mb.inner.Recv(pf.ctx, &it.m)
		if pf.ctx.Err() != nil {
			if err == nil {
				mb.discard(it)
			}
			return
		}
		it.err, it.r = err, resolution{}
		if err == nil {
			it.r = mb.take(&it.m)
		}
		if !pf.deliver(mb, it) {
			return
		}
		if err != nil && !errors.Is(err, exchange.ErrBadMessage) {
			final = err // the wrapped mailbox is done: so are we
			return
		}
	}
}

// deliver hands it to Recv, or discards it when the prefetcher is stopped
// first.
func (pf *prefetcher) deliver(mb *Mailbox, it *prefetched) bool {
	select {
	case pf.ready <- it:
		return true
	case <-pf.ctx.Done():
		if it.err == nil {
			mb.discard(it)
		}
		return false
	}
}

// discard drops a message received ahead when the Mailbox closes.
func (mb *Mailbox) discard(it *prefetched) {
	mb.x.o.log.Warn("proxystore: mailbox client closed with a message received ahead; it is discarded",
		"mailbox", mb.inner.ID(), "message", it.m.String())
	if it.r.view != nil {
		it.r.view.Release()
		it.r.view = nil
	}
}

// recv is Recv with a prefetcher; mb.mu is held.
func (pf *prefetcher) recv(ctx context.Context, mb *Mailbox, m *exchange.Message) error {
	select {
	case it := <-pf.ready:
		defer func() { pf.free <- it }()
		if it.err != nil {
			return it.err
		}
		m.CopyFrom(&it.m)
		r := it.r
		it.r = resolution{}
		return mb.install(m, r)
	case <-pf.done:
		return pf.final
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop stops the prefetcher and waits for it; the wrapped mailbox is
// already closed, so its Recv returns.
func (pf *prefetcher) stop() {
	pf.cancel()
	<-pf.done
}
