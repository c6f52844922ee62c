package agent_test

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// Register behaviors at program start, the same way in every process of
// the program (agent processes look them up by name).
func init() {
	if err := agent.RegisterBehaviorConfig("Counter", newCounter); err != nil {
		panic(err)
	}
}

// newCounter makes a Counter behavior, with fresh state, for each launch:
// start is the configuration the launch gives (agent.WithConfig).
func newCounter(start int64) (*agent.Behavior, error) {
	var count atomic.Int64 // actions may run concurrently
	count.Store(start)
	b := agent.NewBehavior("Counter")
	err := agent.AddAction(b, "add", func(_ context.Context, n int64) (int64, error) {
		return count.Add(n), nil
	})
	return b, err
}

// A manager launches agents of registered behaviors, here as goroutines of
// this process and with a configuration, and hands out handles to them;
// with agent.NewProcessLauncher on a shared-memory exchange, the same code
// runs each agent in its own process (see ExampleProcessLauncher).
func ExampleManager() {
	ctx := context.Background()
	x := exchange.NewLocal()
	defer x.Close()
	m, err := agent.NewManager(ctx, x, agent.ThreadLauncher{})
	if err != nil {
		panic(err)
	}
	h, err := m.Launch(ctx, "Counter", agent.WithConfig(int64(40)))
	if err != nil {
		panic(err)
	}
	count, err := agent.Call[int64](ctx, h, "add", 2)
	fmt.Println(count, err)
	fmt.Println(m.Shutdown(ctx, h.AgentID(), true)) // and wait until it stopped
	fmt.Println(m.Close())
	// Output:
	// 42 <nil>
	// <nil>
	// <nil>
}
