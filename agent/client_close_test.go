package agent_test

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/shm"
)

// TestClientCloseRemovesRing (bug 5 of docs/guarantees.md): Close of a
// Client whose mailbox holds a message nobody received (a wake-up it sent
// itself to interrupt its listener, which had meanwhile received the
// response it waited for and left; a response that came after its call
// was given up) removes its mailbox's ring file while the process lives.
// Close terminates the mailbox while its receiver is attached, so
// Terminate cannot sweep it, then closes the receiver: that Close must.
// In the 10-minute soak about one client in 300 kept its ring this way.
func TestClientCloseRemovesRing(t *testing.T) {
	x := newSHM(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, kind := range []exchange.Kind{exchange.KindPingResponse, exchange.KindActionResponse} {
		cl, err := agent.NewClient(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		id := cl.ID()
		path := filepath.Join(x.Dir(), shm.RingPrefix+hex.EncodeToString(id.UUID[:]))
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("ring of a live client: %v", err)
		}
		m := &exchange.Message{Kind: kind, Tag: exchange.NewTag(), Src: id, Dest: id}
		if err := x.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
		if err := cl.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v left in the mailbox: ring of the closed client kept: stat: %v", kind, err)
		}
	}
}

// TestClientCloseAfterListenerRemovesRing is how the clients of the soak
// kept their rings (bug 5): a caller that waits for its future only after
// listenerDelay finds the listener holding the receive token and
// interrupts it with a wake-up message to the client's own mailbox; the
// listener, having received the response meanwhile, leaves, and the
// wake-up stays in the mailbox when the client closes. Under load (two
// goroutines that keep yielding, as the soak's senders keep the CPUs
// busy) 20 of these 300 clients left a ring file holding one
// PingResponse, with and without -race, before the fix (376fe23); every
// ring goes now. The leak needs that timing, so a run on the old code may
// leave fewer; none is unlikely.
func TestClientCloseAfterListenerRemovesRing(t *testing.T) {
	x := newSHM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := agent.NewManager(ctx, x, agent.ThreadLauncher{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo")
	if err != nil {
		t.Fatal(err)
	}
	rings := func() int {
		ents, err := os.ReadDir(x.Dir())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), shm.RingPrefix) {
				n++
			}
		}
		return n
	}
	before := rings()
	var stop atomic.Bool
	done := make(chan struct{}, 2)
	for range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			for !stop.Load() {
				runtime.Gosched()
			}
		}()
	}
	defer func() { stop.Store(true); <-done; <-done }()
	arg := []byte{0xc4, 1, 'x'} // MessagePack bin: "x"
	for i := range 300 {
		cl, err := agent.NewClient(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		f, err := cl.Handle(h.AgentID()).ActionRaw(ctx, "echo", arg)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			time.Sleep(time.Millisecond) // the listener takes the token
		}
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cl.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := rings(); n != before {
		t.Fatalf("%d ring files in the exchange directory after 300 clients were made and closed, %d before", n, before)
	}
}
