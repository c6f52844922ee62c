package proxystore

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// TestWrapAnySize: the inline limits apply to what goes on the wrapped
// exchange, never to what the wrapper proxies. A payload the policy leaves
// inline but the wrapped exchange refuses as too large is proxied and sent
// again; one over exchange.MaxPayloadSize is always proxied.
func TestWrapAnySize(t *testing.T) {
	ctx := t.Context()
	store := NewMemStore()
	defer store.Close()
	// A policy that never proxies, over an exchange of 4096-byte messages.
	x, agent, client, mb := wrapPair(t, store, WithShouldProxy(func([]byte) bool { return false }))
	for _, n := range []int{100, 10 << 10, exchange.MaxPayloadSize + 1, 40 << 20} {
		payload := pattern(uint64(n), n, false)
		if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", payload)); err != nil {
			t.Fatalf("send %d bytes: %v", n, err)
		}
		var m exchange.Message
		recvMsg(t, mb, &m)
		if !bytes.Equal(m.Args, payload) {
			t.Fatalf("%d bytes sent, %d received", n, len(m.Args))
		}
	}
	if st := x.Stats(); st.Proxied != 3 || st.Resolved != 3 {
		t.Fatalf("stats %+v, want 3 proxied (all but the 100 bytes)", st)
	}
	if store.Len() != 0 {
		t.Fatalf("%d payloads left in the store", store.Len())
	}
	// Results too.
	resp := exchange.NewActionResponse(agent, client, exchange.NewTag(), pattern(9, 20<<20, false))
	if err := x.Send(ctx, resp); err != nil {
		t.Fatal(err)
	}
	cmb, err := x.Mailbox(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	recvMsg(t, cmb, &m)
	if !bytes.Equal(m.Result, resp.Result) {
		t.Fatal("result changed")
	}

	if StoreOf(x) != Store(store) || StoreOf(x.Unwrap()) != nil || StoreOf(nil) != nil {
		t.Fatal("StoreOf")
	}

	// WithMaxPayload bounds what the wrapper carries.
	y, agent2, client2, _ := wrapPair(t, store, WithMaxPayload(1<<20))
	err = y.Send(ctx, exchange.NewActionRequest(client2, agent2, "f", make([]byte, 2<<20)))
	if !errors.Is(err, exchange.ErrMessageTooLarge) {
		t.Fatalf("over WithMaxPayload: %v", err)
	}
	// An invalid message is refused before anything is put.
	bad := exchange.NewActionRequest(client2, agent2, "", make([]byte, 100<<10))
	if err := y.Send(ctx, bad); !errors.Is(err, exchange.ErrBadMessage) || store.Len() != 0 {
		t.Fatalf("invalid message: %v, %d payloads stored", err, store.Len())
	}
}

// A Blob's proxy in a message is left for the Blob's decoder: a wrapped
// mailbox, whatever its mode, does not resolve it; a proxied value is
// resolved, except by a ManualMailbox.
func TestWrapLeavesBlobs(t *testing.T) {
	ctx := t.Context()
	store := NewMemStore()
	defer store.Close()
	for _, mode := range []ResolveMode{ResolveCopy, ResolveZeroCopy} {
		x, agent, client, mb := wrapPair(t, store, WithThreshold(1000), WithResolveMode(mode))
		b, err := NewBlob(ctx, store, pattern(3, 5000, false))
		if err != nil {
			t.Fatal(err)
		}
		args, err := b.MarshalMsg(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", args)); err != nil {
			t.Fatal(err)
		}
		var m exchange.Message
		recvMsg(t, mb, &m)
		if !bytes.Equal(m.Args, args) {
			t.Fatalf("%v: the Blob's proxy was changed into %d bytes", mode, len(m.Args))
		}
		var got Blob
		if _, err := got.UnmarshalMsg(m.Args); err != nil || !bytes.Equal(got.Bytes(), pattern(3, 5000, false)) {
			t.Fatalf("%v: decode: %v", mode, err)
		}
		got.Release()
		if x.Stats().Proxied != 0 || x.Stats().Resolved != 0 {
			t.Fatalf("%v: stats %+v", mode, x.Stats())
		}

		// A ManualMailbox leaves a proxied value as it came.
		manual, err := x.ManualMailbox(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		big := pattern(4, 5000, false)
		if err := x.Send(ctx, exchange.NewActionResponse(agent, client, exchange.NewTag(), big)); err != nil {
			t.Fatal(err)
		}
		recvMsg(t, manual, &m)
		v, f, err := ResolvePayload(ctx, m.Result)
		if err != nil || f != FormValue || !bytes.Equal(v.Bytes(), big) {
			t.Fatalf("%v: ManualMailbox then ResolvePayload: %v %v", mode, f, err)
		}
		v.Release()
	}
}

// TestWrapSendIncarnation: the wrapper reports the incarnation of the
// mailbox a message went to, proxied or not, as the wrapped exchange does.
func TestWrapSendIncarnation(t *testing.T) {
	ctx := t.Context()
	store := NewMemStore()
	defer store.Close()
	x, agent, client, mb := wrapPair(t, store, WithThreshold(1000))
	want, err := x.Incarnation(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 5000} {
		got, err := x.SendIncarnation(ctx, exchange.NewActionRequest(client, agent, "f", make([]byte, n)))
		if err != nil || got != want {
			t.Fatalf("SendIncarnation of %d bytes = %d, %v; want %d", n, got, err, want)
		}
		var m exchange.Message
		recvMsg(t, mb, &m)
		if len(m.Args) != n {
			t.Fatalf("received %d bytes", len(m.Args))
		}
	}
	if err := x.Terminate(ctx, agent); err != nil {
		t.Fatal(err)
	}
	mb.Close()
	if err := x.Reopen(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if got, err := x.SendIncarnation(ctx, exchange.NewActionRequest(client, agent, "f", make([]byte, 5000))); err != nil || got != want+1 {
		t.Fatalf("after Reopen: %d, %v; want %d", got, err, want+1)
	}
	if _, err := x.SendIncarnation(ctx, exchange.NewPingRequest(client, exchange.NewAgentID())); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("to a missing id: %v", err)
	}
}

// reopenOnly is an exchange that can reopen mailboxes and tell their
// incarnation, but whose Send does not report it (no SendIncarnation), and
// whose Incarnation fails while failing is set.
type reopenOnly struct {
	exchange.Exchange
	r       exchange.Reopener
	failing bool
}

func (x *reopenOnly) Reopen(ctx context.Context, id exchange.EntityID) error {
	return x.r.Reopen(ctx, id)
}

func (x *reopenOnly) Incarnation(ctx context.Context, id exchange.EntityID) (uint32, error) {
	if x.failing {
		return 0, errors.New("reopenOnly: incarnation unknown")
	}
	return x.r.Incarnation(ctx, id)
}

// TestWrapSendIncarnationUnknown: over an exchange that cannot report the
// incarnation with the send, the wrapper looks it up; when the look-up
// fails it reports IncarnationUnknown, which no restart exceeds, rather
// than 0, which the agent layer's watcher would take for a restart once
// the agent's incarnation reads above 0.
func TestWrapSendIncarnationUnknown(t *testing.T) {
	ctx := t.Context()
	local := exchange.NewLocal()
	defer local.Close()
	inner := &reopenOnly{Exchange: local, r: local}
	store := NewMemStore()
	defer store.Close()
	x := Wrap(inner, store)
	agent, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Terminate(ctx, agent); err != nil {
		t.Fatal(err)
	}
	if err := local.Reopen(ctx, agent); err != nil {
		t.Fatal(err)
	}
	want, err := local.Incarnation(ctx, agent)
	if err != nil || want == 0 {
		t.Fatalf("incarnation after a reopen: %d, %v", want, err)
	}
	if got, err := x.SendIncarnation(ctx, exchange.NewPingRequest(client, agent)); err != nil || got != want {
		t.Fatalf("SendIncarnation = %d, %v; want %d", got, err, want)
	}
	inner.failing = true
	if got, err := x.SendIncarnation(ctx, exchange.NewPingRequest(client, agent)); err != nil || got != exchange.IncarnationUnknown {
		t.Fatalf("SendIncarnation with the look-up failing = %d, %v; want IncarnationUnknown", got, err)
	}
}
