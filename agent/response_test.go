package agent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/tinylib/msgp/msgp"
)

// TestResultTooLarge: a result too large for the requester's mailbox (over
// the default mailbox's largest record, 64 KiB) is answered with an error
// that names the action and the size, at once, to a Call with no
// deadline and to a future; the agent and the client keep working. On the
// shared-memory exchange, with agents as goroutines and as processes.
func TestResultTooLarge(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		if !e.shm {
			// The in-process exchange takes results up to
			// exchange.MaxPayloadSize: give it a mailbox's limit.
			x = exchange.NewLocal(exchange.WithLocalMaxMessageSize(64 << 10))
			t.Cleanup(func() { x.Close() })
			var err error
			if m, err = agent.NewManager(context.Background(), x, nil); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
		}
		testResultTooLarge(t, m)
	})
}

func testResultTooLarge(t *testing.T, m *agent.Manager) {
	ctx := testCtx(t)
	h, err := m.Launch(ctx, "Echo")
	if err != nil {
		t.Fatal(err)
	}
	const n = 100 << 10
	size := len(msgp.AppendBytes(nil, make([]byte, n))) // the encoded result
	check := func(what string, err error) {
		t.Helper()
		var re *exchange.RemoteError
		if !errors.Is(err, exchange.ErrMessageTooLarge) || !errors.As(err, &re) || re.Kind != agent.ErrorKindResultTooLarge {
			t.Fatalf("%s: %v, want a %s", what, err, agent.ErrorKindResultTooLarge)
		}
		if !strings.Contains(re.Message, `"big"`) || !strings.Contains(re.Message, fmt.Sprint(size)) {
			t.Fatalf("%s: %q does not name the action and the size (%d)", what, re.Message, size)
		}
	}
	// Background: the answer must come; nothing else would end the call.
	_, err = agent.Call[[]byte](context.Background(), h, "big", n)
	check("Call", err)
	f, err := agent.Action[[]byte](ctx, h, "big", n)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Wait(context.Background())
	check("future", err)
	// Just under the limit still goes through, and the agent serves on.
	if got, err := agent.Call[[]byte](ctx, h, "big", 60<<10); err != nil || len(got) != 60<<10 {
		t.Fatalf("a 60 KiB result: %d bytes, %v", len(got), err)
	}
	if _, err := h.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestResponseNotResolvable: a response that arrives but cannot be received
// whole (here a proxied result that the client's store cannot resolve)
// fails its call at once, with the reason, instead of being dropped; the
// client keeps working.
func TestResponseNotResolvable(t *testing.T) {
	ctx := testCtx(t)
	root := filepath.Join(t.TempDir(), "root")
	x, err := exchange.Open("unresolvable", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	// The client resolves with a store of its own that knows nothing of
	// the agent's arena.
	wx := proxystore.Wrap(x, proxystore.NewMemStore(), proxystore.WithThreshold(proxyThreshold))
	defer wx.Close()
	l := agent.NewProcessLauncher(x)
	l.Env = []string{envProxyMode + "=transparent"}
	m, err := agent.NewManager(ctx, wx, l)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Blob")
	if err != nil {
		t.Fatal(err)
	}
	_, err = agent.Call[[]byte](context.Background(), h, "make", 4<<10)
	// The client decodes the result itself (proxies are resolved as they
	// are decoded, not by the wrapper's mailbox): its store knows nothing of
	// the agent's arena.
	if !errors.Is(err, proxystore.ErrForeignProxy) {
		t.Fatalf("a result that does not resolve: %v", err)
	}
	// Small results travel inline and still arrive.
	if got, err := agent.Call[[]byte](ctx, h, "make", 10); err != nil || len(got) != 10 {
		t.Fatalf("a small result after that: %d bytes, %v", len(got), err)
	}
}
