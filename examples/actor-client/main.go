// Command actor-client is the Go counterpart of Academy's actor-client
// example: a Counter agent (an actor: state and actions, no loop) called by
// a client, on the in-process exchange.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"sync/atomic"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// newCounter returns a behavior with a counter and two actions.
func newCounter() (*agent.Behavior, error) {
	var count atomic.Int64
	b := agent.NewBehavior("Counter")
	err := agent.AddAction(b, "increment", func(_ context.Context, by int64) (int64, error) {
		return count.Add(by), nil
	})
	if err != nil {
		return nil, err
	}
	err = agent.AddAction(b, "get", func(context.Context, agent.NoArgs) (int64, error) {
		return count.Load(), nil
	})
	return b, err
}

func init() {
	if err := agent.RegisterBehavior("Counter", newCounter); err != nil {
		panic(err)
	}
}

func run(ctx context.Context, w io.Writer) error {
	x := exchange.NewLocal()
	defer x.Close()
	m, err := agent.NewManager(ctx, x, agent.ThreadLauncher{})
	if err != nil {
		return err
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Counter")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "launched Counter agent %v\n", h.AgentID())

	if _, err := h.Ping(ctx); err != nil {
		return err
	}
	fmt.Fprintln(w, "ping: agent is alive")

	f, err := agent.Action[int64](ctx, h, "increment", int64(1))
	if err != nil {
		return err
	}
	if _, err := f.Wait(ctx); err != nil {
		return err
	}
	n, err := agent.Call[int64](ctx, h, "get", agent.NoArgs{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "count after increment(1): %d\n", n)

	if err := m.Shutdown(ctx, h.AgentID(), true); err != nil {
		return err
	}
	fmt.Fprintf(w, "agent shut down: %v\n", m.Wait(ctx))
	return nil
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}
