//go:build linux

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

func init() {
	// Registered at program start in every process: the agent processes
	// look the behavior up by name.
	err := agent.RegisterBehavior("Squarer", func() (*agent.Behavior, error) {
		b := agent.NewBehavior("Squarer")
		return b, errors.Join(
			agent.AddAction(b, "square", func(_ context.Context, n int) (int, error) { return n * n, nil }),
			agent.AddAction(b, "pid", func(context.Context, agent.NoArgs) (int, error) { return os.Getpid(), nil }),
		)
	})
	if err != nil {
		panic(err)
	}
}

// The process launcher runs each agent in its own process: the program
// re-runs itself, and agent.ServeIfChild, called first in main, serves the
// agent there (it returns at once in the launching process). The exchange
// lives in /dev/shm/shmex-<uid>/<name> (`shmex ls` lists it while the
// program runs), and exchange.Remove deletes it at the end.
func ExampleProcessLauncher() {
	agent.ServeIfChild() // in an agent process: serve its agent, then exit

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := fmt.Sprintf("example-%d", os.Getpid())
	defer exchange.Remove(name) // after the Close below
	x, err := exchange.Open(name)
	if err != nil {
		panic(err)
	}
	defer x.Close()
	m, err := agent.NewManager(ctx, x, agent.NewProcessLauncher(x))
	if err != nil {
		panic(err)
	}
	defer m.Close() // stops the agents still running and waits for them

	h, err := m.Launch(ctx, "Squarer")
	if err != nil {
		panic(err)
	}
	sq, err := agent.Call[int](ctx, h, "square", 9)
	fmt.Println(sq, err)
	pid, err := agent.Call[int](ctx, h, "pid", agent.NoArgs{})
	fmt.Println("the agent runs in another process:", pid != os.Getpid(), err)
	fmt.Println(m.Shutdown(ctx, h.AgentID(), true))
	// Output:
	// 81 <nil>
	// the agent runs in another process: true <nil>
	// <nil>
}
