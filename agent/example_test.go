package agent_test

import (
	"context"
	"fmt"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// An agent with a typed action, called by a client, on the in-process
// exchange.
func Example() {
	ctx := context.Background()
	x := exchange.NewLocal()
	defer x.Close()

	b := agent.NewBehavior("Greeter")
	if err := agent.AddAction(b, "greet", func(_ context.Context, name string) (string, error) {
		return "hello, " + name, nil
	}); err != nil {
		panic(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()

	c, err := agent.NewClient(ctx, x)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	h := c.Handle(rt.ID())
	out, err := agent.Call[string](ctx, h, "greet", "world")
	fmt.Println(out, err)

	// Futures: start several calls, then wait for them.
	f1, _ := agent.Action[string](ctx, h, "greet", "Ada")
	f2, _ := agent.Action[string](ctx, h, "greet", "Grace")
	r1, _ := f1.Wait(ctx)
	r2, _ := f2.Wait(ctx)
	fmt.Println(r1, "/", r2)

	h.Shutdown(ctx)
	fmt.Println("run:", <-done)
	// Output:
	// hello, world <nil>
	// hello, Ada / hello, Grace
	// run: <nil>
}

// A manager launching agents of a registered behavior as goroutines; with
// agent.NewProcessLauncher on a shared-memory exchange, the same code runs
// each agent in its own process.
func ExampleManager() {
	ctx := context.Background()
	x := exchange.NewLocal()
	defer x.Close()
	m, err := agent.NewManager(ctx, x, agent.ThreadLauncher{})
	if err != nil {
		panic(err)
	}
	h, err := m.Launch(ctx, "Echo") // registered with agent.RegisterBehavior in TestMain
	if err != nil {
		panic(err)
	}
	sum, err := agent.Call[int64](ctx, h, "add", Pair{A: 40, B: 2})
	fmt.Println(sum, err)
	fmt.Println(m.Shutdown(ctx, h.AgentID(), true))
	fmt.Println(m.Close())
	// Output:
	// 42 <nil>
	// <nil>
	// <nil>
}

// An error returned by an action arrives as an *exchange.RemoteError.
func ExampleCall_error() {
	ctx := context.Background()
	x := exchange.NewLocal()
	defer x.Close()
	m, _ := agent.NewManager(ctx, x, nil)
	defer m.Close()
	h, _ := m.Launch(ctx, "Echo")
	_, err := agent.Call[int](ctx, h, "fail", "negative input")
	fmt.Println(err)
	_, err = agent.Call[int](ctx, h, "missing", 1)
	fmt.Println(err)
	// Output:
	// ValueError: negative input
	// UnknownActionError: behavior "Echo" has no action "missing"; its actions: add, big, echo, fail, failplain, maxseen, noop, noop64, panic, pid, relay, self, selfping, sleep, swap
}
