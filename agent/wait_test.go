package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
)

// TestWaitFor waits for agents that a launcher starts after the wait
// began, in every environment, and for a context that ends first.
func TestWaitFor(t *testing.T) {
	forEnvs(t, func(t *testing.T, e env, x exchange.Exchange, m *agent.Manager) {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		c := m.Client()

		short, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := c.WaitFor(short, "Base")
		scancel()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"Base"`) {
			t.Fatalf("WaitFor with no agent: %v", err)
		}
		missing := exchange.EntityID{UUID: exchange.NewUUID(), Role: exchange.RoleAgent}
		short, scancel = context.WithTimeout(ctx, 20*time.Millisecond)
		err = c.WaitForID(short, missing)
		scancel()
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never registered") {
			t.Fatalf("WaitForID of a missing agent: %v", err)
		}

		found := make(chan []exchange.EntityID, 1)
		go func() {
			ids, err := c.WaitFor(ctx, "Base") // Echo implements Base
			if err != nil {
				t.Error(err)
			}
			found <- ids
		}()
		h, err := m.Launch(ctx, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		if ids := <-found; !slices.Equal(ids, []exchange.EntityID{h.AgentID()}) {
			t.Fatalf("WaitFor = %v, want [%v]", ids, h.AgentID())
		}
		if err := c.WaitForID(ctx, h.AgentID()); err != nil {
			t.Fatal(err)
		}
		if out, err := agent.Call[[]byte](ctx, c.Handle(h.AgentID()), "echo", []byte("hi")); err != nil || string(out) != "hi" {
			t.Fatalf("echo = %q, %v", out, err)
		}
	})
}

// TestWaitForAcrossProcesses: a client process waits for an agent that
// this process launches as a third process, then for an agent id that it
// was told before the agent existed.
func TestWaitForAcrossProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	x := newSHM(t)
	root := filepath.Dir(x.Dir())
	later := exchange.EntityID{UUID: exchange.NewUUID(), Role: exchange.RoleAgent}
	child := childproc.Start(t, "waitfor", x.Name(), root, later.String())
	if line, err := child.Line(testTimeout); err != nil || line != "waiting" {
		t.Fatalf("child: %q, %v", line, err)
	}
	m, err := agent.NewManager(ctx, x, agent.NewProcessLauncher(x))
	if err != nil {
		t.Fatal(err)
	}
	defer m.CloseTimeout(testTimeout)
	h, err := m.Launch(ctx, "Echo")
	if err != nil {
		t.Fatal(err)
	}
	if line, err := child.Line(testTimeout); err != nil || line != "echo "+h.AgentID().String() {
		t.Fatalf("child after the launch: %q, %v", line, err)
	}
	// The agent the child waits for by id: a runtime of this process that
	// registers the id the child was given.
	b, err := newEcho()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b, agent.WithAgentID(later))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	if line, err := child.Line(testTimeout); err != nil || line != "pinged" {
		t.Fatalf("child after the registration of its id: %q, %v", line, err)
	}
	if err := child.Wait(testTimeout); err != nil {
		t.Fatal(err)
	}
	rt.Shutdown()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitForRole is a client process that waits for an Echo agent and calls
// it, then waits for the agent id it was given and pings it. Args:
// exchange name, root, agent id.
func waitForRole(args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	x, err := exchange.Open(args[0], exchange.WithRoot(args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer x.Close()
	later, err := exchange.ParseEntityID(args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	fmt.Println("waiting")
	ids, err := c.WaitFor(ctx, "Echo")
	if err != nil || len(ids) != 1 {
		fmt.Fprintln(os.Stderr, "WaitFor:", ids, err)
		return 1
	}
	if out, err := agent.Call[[]byte](ctx, c.Handle(ids[0]), "echo", []byte("x")); err != nil || string(out) != "x" {
		fmt.Fprintln(os.Stderr, "echo:", out, err)
		return 1
	}
	fmt.Println("echo", ids[0])
	if err := c.WaitForID(ctx, later); err != nil {
		fmt.Fprintln(os.Stderr, "WaitForID:", err)
		return 1
	}
	if _, err := c.Handle(later).Ping(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ping:", err)
		return 1
	}
	fmt.Println("pinged")
	return 0
}
