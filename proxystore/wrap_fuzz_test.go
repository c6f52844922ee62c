package proxystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

// wrapFuzzBox is one wrapped receiver of FuzzWrapRecv: a wrapper over its
// own Local exchange and a store, in one resolve mode, with an agent whose
// mailbox it receives from and a client that sends to it.
type wrapFuzzBox struct {
	name          string
	x             *Exchange
	store         Store
	mode          ResolveMode
	agent, client exchange.EntityID
	agentBox      exchange.Mailbox // wrapped: resolves requests' args
	clientBox     exchange.Mailbox // wrapped: resolves responses' results
}

// FuzzWrapRecv sends, through the unwrapped exchange, messages whose
// argument or result is a forged proxy (as FuzzResolveForged forges them)
// or arbitrary bytes, and receives them through wrapped mailboxes over an
// arena and a MemStore in every resolve mode (copy, zero-copy, copy one
// ahead, manual). Each Recv gives the message: with exactly the payload's
// bytes in the field when the proxy is the store's own and the mode
// resolves, with the field as sent otherwise, or with a *ResolveError
// (ErrResolve and a store sentinel) and the proxy left in the field; every
// other field as sent; the next Recv goes on. Views are all released once
// the next message is received, and no read leaves a mapping.
// [Exchange.Resolve], what a manual receiver calls, gives a sentinel or the
// payload's bytes too.
func FuzzWrapRecv(f *testing.F) {
	ctx := context.Background()
	fs := newForgeStores(f)
	var boxes []*wrapFuzzBox
	for _, c := range []struct {
		name  string
		store Store
		opts  []WrapOption
	}{
		{"arena-copy", fs.owner, nil},
		{"arena-zerocopy", fs.owner, []WrapOption{WithResolveMode(ResolveZeroCopy)}},
		{"arena-async", fs.reader, []WrapOption{WithResolveAsync(true)}},
		{"arena-manual", fs.owner, []WrapOption{WithResolveMode(ResolveManual)}},
		{"mem-copy", fs.mem, nil},
		{"mem-zerocopy", fs.mem, []WrapOption{WithResolveMode(ResolveZeroCopy)}},
	} {
		b := &wrapFuzzBox{name: c.name, store: c.store, mode: ResolveCopy}
		b.x = Wrap(exchange.NewLocal(), c.store, c.opts...)
		b.mode = b.x.o.mode
		f.Cleanup(func() { b.x.Close() })
		var err error
		if b.agent, err = b.x.RegisterAgent(ctx, exchange.Behavior{Name: "A"}); err != nil {
			f.Fatal(err)
		}
		if b.client, err = b.x.RegisterClient(ctx); err != nil {
			f.Fatal(err)
		}
		if b.agentBox, err = b.x.Mailbox(ctx, b.agent); err != nil {
			f.Fatal(err)
		}
		if b.clientBox, err = b.x.Mailbox(ctx, b.client); err != nil {
			f.Fatal(err)
		}
		boxes = append(boxes, b)
	}
	for i := range fs.stored {
		for c := range boxes {
			f.Add(uint8(c), uint8(i), false, uint8(0), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(0), uint8(255), uint8(0), []byte(nil))
		}
	}
	f.Add(uint8(0), uint8(3), true, uint8(2|64), uint64(0), uint64(0), uint64(1), uint64(0), uint8(0), uint8(0), uint8(255), uint8(0), []byte(nil))   // a byte longer
	f.Add(uint8(1), uint8(7), false, uint8(4|64), uint64(0), uint64(0), uint64(0), uint64(1), uint8(0), uint8(0), uint8(255), uint8(0), []byte(nil))  // next generation
	f.Add(uint8(4), uint8(1), true, uint8(1|64), uint64(0), uint64(1), uint64(0), uint64(0), uint8(0), uint8(0), uint8(255), uint8(0), []byte(nil))   // offset 1
	f.Add(uint8(2), uint8(4), false, uint8(0), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(1), uint8(255), uint8(0), []byte(nil))     // a Blob's form
	f.Add(uint8(0), uint8(4), false, uint8(0), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(0), uint8(3), uint8(1), []byte(nil))       // version
	f.Add(uint8(5), uint8(0), false, uint8(0), uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), uint8(0), uint8(255), uint8(0), []byte("plain")) // not a proxy
	var n int
	f.Fuzz(func(t *testing.T, box, which uint8, response bool, sel uint8, seg, off, ln, gen uint64, kind, form, at, xor uint8, raw []byte) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		b := boxes[int(box)%len(boxes)]
		_, payload := fs.forge(sel, which, seg, off, ln, gen, kind, form, at, xor)
		if raw != nil {
			if len(raw) > 4096 {
				return
			}
			payload = raw
		}
		n++
		req := exchange.NewActionRequest(b.client, b.agent, fmt.Sprintf("act%d", n), payload)
		sent, field, mb := req, func(m *exchange.Message) []byte { return m.Args }, b.agentBox
		if response {
			sent, field, mb = req.Response(payload), func(m *exchange.Message) []byte { return m.Result }, b.clientBox
		}
		if err := b.x.Unwrap().Send(ctx, sent); err != nil {
			t.Fatal(err)
		}
		want := payload // what the field holds after Recv
		resolves := b.mode != ResolveManual && IsPayload(payload) && Form(payload[3+pxOffForm]) != FormBytes
		q, _, perr := ParseProxy(payload)
		data, genuine := fs.find(q)
		genuine = genuine && perr == nil && StoreID(q.Store) == b.store.ID()
		if resolves && genuine {
			want = data
		}

		var m exchange.Message
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := mb.Recv(rctx, &m)
		if err != nil {
			var re *ResolveError
			if !errors.As(err, &re) || !errors.Is(err, ErrResolve) || !isResolveSentinel(re.Err) {
				t.Fatalf("%s: Recv: %v", b.name, err)
			}
			if !resolves || genuine {
				t.Fatalf("%s: Recv of %v refused (resolves %v, the store's own %v): %v", b.name, q, resolves, genuine, err)
			}
		}
		if !bytes.Equal(field(&m), want) {
			t.Fatalf("%s: received %d bytes, want %d (resolves %v, genuine %v, err %v)", b.name, len(field(&m)), len(want), resolves, genuine, err)
		}
		if response {
			m.Result = payload
		} else {
			m.Args = payload
		}
		if !m.Equal(sent) {
			t.Fatalf("%s: received %v, sent %v", b.name, &m, sent)
		}

		// What a manual receiver does with the field: Exchange.Resolve.
		if v, err := b.x.Resolve(ctx, payload); err != nil {
			if !isResolveSentinel(err) {
				t.Fatalf("%s: Exchange.Resolve: %v is no sentinel", b.name, err)
			}
			if genuine && Form(payload[3+pxOffForm]) == FormValue {
				t.Fatalf("%s: Exchange.Resolve refused the store's own %v: %v", b.name, q, err)
			}
		} else {
			if !genuine || v.Proxy() != q || !bytes.Equal(v.Bytes(), data) {
				t.Fatalf("%s: Exchange.Resolve of % x: %v, %d bytes", b.name, payload, v.Proxy(), len(v.Bytes()))
			}
			if err := v.Release(); err != nil {
				t.Fatal(err)
			}
		}

		// The next message comes, and the view held for the last one is
		// released.
		ping := exchange.NewPingRequest(b.client, b.agent)
		mb = b.agentBox
		if err := b.x.Unwrap().Send(ctx, ping); err != nil {
			t.Fatal(err)
		}
		if err := mb.Recv(rctx, &m); err != nil || !m.Equal(ping) {
			t.Fatalf("%s: Recv after: %v %v", b.name, &m, err)
		}
		if response { // the client's mailbox may hold a view too
			if err := b.x.Unwrap().Send(ctx, ping.Response(nil)); err != nil {
				t.Fatal(err)
			}
			if err := b.clientBox.Recv(rctx, &m); err != nil {
				t.Fatalf("%s: Recv after: %v", b.name, err)
			}
		}
		fs.checkViews(t)
	})
}
