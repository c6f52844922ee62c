package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// TestErrorsExplain: the errors a newcomer meets first say what went wrong
// without a look at the source.
func TestErrorsExplain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	x := exchange.NewLocal()
	defer x.Close()
	m, err := agent.NewManager(ctx, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Echo")
	if err != nil {
		t.Fatal(err)
	}
	contains := func(t *testing.T, err error, parts ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		t.Log(err)
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q lacks %q", err, p)
			}
		}
	}

	t.Run("result of the wrong type", func(t *testing.T) {
		_, err := agent.Call[int](ctx, h, "swap", Pair{1, 2})
		contains(t, err, `result of action "swap"`, "want int", "got a MessagePack array of 2 [int, int]")
		if !errors.Is(err, agent.ErrBadArguments) {
			t.Errorf("not ErrBadArguments: %v", err)
		}
		_, err = agent.Call[Pair](ctx, h, "echo", []byte("abc"))
		contains(t, err, `result of action "echo"`, "want agent_test.Pair", "got a MessagePack bin of 3 bytes")
	})
	t.Run("arguments of the wrong type", func(t *testing.T) {
		_, err := agent.Call[int64](ctx, h, "add", map[string]int{"a": 1, "b": 2})
		contains(t, err, `arguments of action "add"`, "want agent_test.Pair", `got a MessagePack map of 2 {`, `"a": int`)
		if !errors.Is(err, agent.ErrBadArguments) {
			t.Errorf("not ErrBadArguments: %v", err)
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		_, err := agent.Call[int](ctx, h, "missing", 1)
		contains(t, err, `behavior "Echo" has no action "missing"`, "its actions: add, big, echo, fail")
		if !errors.Is(err, agent.ErrUnknownAction) {
			t.Errorf("not ErrUnknownAction: %v", err)
		}
		// A Go method name for a snake_case action.
		_, err = agent.Call[int](ctx, h, "MaxSeen", agent.NoArgs{})
		contains(t, err, `did you mean "maxseen"?`)
	})
	t.Run("no such agent", func(t *testing.T) {
		never := exchange.EntityID{UUID: exchange.NewUUID(), Role: exchange.RoleAgent}
		_, err := agent.Call[int](ctx, m.Client().Handle(never), "add", Pair{})
		contains(t, err, "no such agent", never.String())
		if !errors.Is(err, exchange.ErrBadEntityID) || errors.Is(err, agent.ErrAgentTerminated) {
			t.Errorf("a never registered id: %v (want ErrBadEntityID, not ErrAgentTerminated)", err)
		}
		if strings.Contains(err.Error(), "terminated:") {
			t.Errorf("a never registered id said terminated: %v", err)
		}
		// A client's id is not an agent's.
		_, err = agent.Call[int](ctx, m.Client().Handle(exchange.EntityID{UUID: exchange.NewUUID(), Role: exchange.RoleClient}), "add", Pair{})
		contains(t, err, "no such agent", "a client's, not an agent's")
		// A terminated agent still says terminated.
		if err := m.Shutdown(ctx, h.AgentID(), true); err != nil {
			t.Fatal(err)
		}
		_, err = agent.Call[int](ctx, h, "add", Pair{})
		if !errors.Is(err, agent.ErrAgentTerminated) {
			t.Errorf("a terminated agent: %v", err)
		}
	})
}

// TestProxyErrorsExplain: a proxy where a plain value is expected, and a
// plain value where a proxy is, say how to configure the other side.
func TestProxyErrorsExplain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	x := newSHM(t)
	a, err := proxystore.OpenArena(x.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	wx := proxystore.Wrap(x, a, proxystore.WithThreshold(proxyThreshold))
	defer wx.Close()
	// The agent process serves on the plain exchange (no AGENT_TEST_PROXY_MODE):
	// it opens no store.
	m, err := agent.NewManager(ctx, wx, agent.NewProcessLauncher(x))
	if err != nil {
		t.Fatal(err)
	}
	defer m.CloseTimeout(testTimeout)
	h, err := m.Launch(ctx, "Blob")
	if err != nil {
		t.Fatal(err)
	}

	// A value the client's wrapper proxies, to an agent that has no store.
	_, err = agent.Call[uint64](ctx, h, "sum", make([]byte, 4*proxyThreshold))
	t.Log(err)
	for _, want := range []string{`arguments of action "sum"`, "no store of this id is open in this process", "proxystore.OpenArena(x.Dir())", "agent.SetChildExchange"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("proxy to a side without a store: %v; want it to say %q", err, want)
		}
	}
	if !errors.Is(err, agent.ErrBadArguments) {
		t.Errorf("not ErrBadArguments: %v", err)
	}

	// A plain value to an action that takes a proxy.
	_, err = agent.Call[uint64](ctx, h, "sumProxy", []byte("small"))
	t.Log(err)
	for _, want := range []string{`arguments of action "sumProxy"`, "want proxystore.Proxy", "expected a proxy, got a plain MessagePack bin", "proxystore.Wrap", "proxystore.Blob"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("plain value to a proxy action: %v; want it to say %q", err, want)
		}
	}
}
