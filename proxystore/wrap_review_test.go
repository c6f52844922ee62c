package proxystore

import (
	"bytes"
	"errors"
	"runtime/debug"
	"testing"

	"github.com/shmex/shmex/exchange"
)

// TestWrapZeroCopyTwoMessages alternates two Messages in zero-copy mode:
// Recv(m1), Recv(m2), Recv(m1). The second Recv releases m1's view; the
// third must not decode into m1's field, which still aliases the released
// read-only mapping (a fault: with SetPanicOnFault, a panic).
func TestWrapZeroCopyTwoMessages(t *testing.T) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	ctx := t.Context()
	fs := openFS(t, t.TempDir())
	x, agent, client, mb := wrapPair(t, fs, WithThreshold(1000), WithResolveMode(ResolveZeroCopy))
	big := pattern(5, 2*mmapThreshold, false)
	for _, args := range [][]byte{big, big, []byte("small"), []byte("again")} {
		if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", args)); err != nil {
			t.Fatal(err)
		}
	}
	var m1, m2 exchange.Message
	recv := func(m *exchange.Message) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = errors.New("fault: " + debugString(r))
			}
		}()
		recvMsg(t, mb, m)
		return nil
	}
	for i, m := range []*exchange.Message{&m1, &m2, &m1, &m2} {
		if err := recv(m); err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		want := big
		if i >= 2 {
			want = [][]byte{[]byte("small"), []byte("again")}[i-2]
		}
		if !bytes.Equal(m.Args, want) {
			t.Fatalf("recv %d: %d bytes", i, len(m.Args))
		}
	}
}

func debugString(r any) string {
	if e, ok := r.(error); ok {
		return e.Error()
	}
	if s, ok := r.(string); ok {
		return s
	}
	return "panic"
}

// TestWrapAsyncCloseBeforeFirstRecv plays the interleaving where Close runs
// between the first Recv's closed check and its start of the prefetcher:
// Close has consumed startOnce, so Recv must not use a nil prefetcher.
func TestWrapAsyncCloseBeforeFirstRecv(t *testing.T) {
	_, _, _, mbox := wrapPair(t, NewMemStore(), WithResolveAsync(true))
	mb := mbox.(*Mailbox)
	mb.startOnce.Do(func() {}) // what Close does after closed.Swap(true)
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Recv panicked: %v", r)
		}
	}()
	if err := mb.Recv(t.Context(), new(exchange.Message)); !errors.Is(err, exchange.ErrMailboxClosed) {
		t.Fatalf("Recv: %v", err)
	}
}
