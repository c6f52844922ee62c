package proxystore

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

// asyncLocal is a Local exchange that is an exchange.AsyncSender: its
// SendAsync counts and sends at once; Flush counts.
type asyncLocal struct {
	*exchange.Local
	async, flushes atomic.Int64
}

func (a *asyncLocal) SendAsync(ctx context.Context, m *exchange.Message) error {
	a.async.Add(1)
	return a.Local.Send(ctx, m)
}

func (a *asyncLocal) Flush(context.Context) error { a.flushes.Add(1); return nil }

// TestWrapSendAsync: the wrapper is an exchange.AsyncSender. Over one, a
// response whose result travels inline goes through the wrapped
// SendAsync; one whose result the wrapper proxies is sent as Send sends it
// (waiting, so that a failure frees what was put); Flush is the wrapped
// one's. Over an exchange that is not an AsyncSender, SendAsync is Send
// and Flush does nothing. The receiver gets both responses, in order,
// whole.
func TestWrapSendAsync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, async := range []bool{true, false} {
		local := exchange.NewLocal()
		inner := exchange.Exchange(local)
		al := &asyncLocal{Local: local}
		if async {
			inner = al
		}
		store := &countingStore{Store: NewMemStore()}
		x := Wrap(inner, store, WithThreshold(16))
		var as exchange.AsyncSender = x
		agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "A"})
		if err != nil {
			t.Fatal(err)
		}
		client, err := x.RegisterClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := x.Mailbox(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		small, large := []byte("ok"), bytes.Repeat([]byte("L"), 100)
		for _, r := range [][]byte{small, large} {
			if err := as.SendAsync(ctx, exchange.NewActionResponse(agent, client, exchange.NewTag(), r)); err != nil {
				t.Fatalf("async=%v: SendAsync: %v", async, err)
			}
		}
		if err := as.Flush(ctx); err != nil {
			t.Fatalf("async=%v: Flush: %v", async, err)
		}
		for _, want := range [][]byte{small, large} {
			var m exchange.Message
			if err := mb.Recv(ctx, &m); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Result, want) {
				t.Fatalf("async=%v: received a result of %d bytes, want %d", async, len(m.Result), len(want))
			}
		}
		if got := store.puts.Load(); got != 1 {
			t.Errorf("async=%v: %d payloads put, want 1 (the large result)", async, got)
		}
		if async && (al.async.Load() != 1 || al.flushes.Load() != 1) {
			t.Errorf("the wrapped SendAsync took %d messages and Flush %d calls; want 1 (the inline one) and 1", al.async.Load(), al.flushes.Load())
		}
		mb.Close()
		x.Close()
	}
}
