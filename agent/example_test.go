package agent_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

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

// A client waits for an agent that another part of the program (or
// another process) starts, then calls it: no Discover loop with sleeps.
func ExampleClient_WaitFor() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x := exchange.NewLocal()
	defer x.Close()
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// The agent starts later, elsewhere.
	done := make(chan error, 1)
	go func() {
		b := agent.NewBehavior("Greeter")
		agent.AddAction(b, "greet", func(_ context.Context, name string) (string, error) { return "hello, " + name, nil })
		rt, err := agent.NewRuntime(ctx, x, b)
		if err != nil {
			done <- err
			return
		}
		done <- rt.Run(ctx)
	}()

	ids, err := c.WaitFor(ctx, "Greeter") // returns once one is active
	if err != nil {
		panic(err)
	}
	h := c.Handle(ids[0])
	out, err := agent.Call[string](ctx, h, "greet", "world")
	fmt.Println(out, err)
	fmt.Println(h.Shutdown(ctx), <-done)
	// Output:
	// hello, world <nil>
	// <nil> <nil>
}

// An error returned by an action arrives as an *exchange.RemoteError with
// the kind and message the action chose; the runtime's own errors (an
// unknown action, arguments or a result of the wrong type) also match the
// package's sentinels.
func ExampleCall_error() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x := exchange.NewLocal()
	defer x.Close()

	b := agent.NewBehavior("Calculator")
	agent.AddAction(b, "sqrt", func(_ context.Context, v float64) (float64, error) {
		if v < 0 {
			return 0, &exchange.RemoteError{Kind: "ValueError", Message: fmt.Sprintf("sqrt of %v", v)}
		}
		return math.Sqrt(v), nil
	})
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		panic(err)
	}
	go rt.Run(ctx)
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	h := c.Handle(rt.ID())

	_, err = agent.Call[float64](ctx, h, "sqrt", -4.0)
	var re *exchange.RemoteError
	fmt.Println(err, "|", errors.As(err, &re) && re.Kind == "ValueError")
	_, err = agent.Call[float64](ctx, h, "Sqrt", 4.0)
	fmt.Println(err, "|", errors.Is(err, agent.ErrUnknownAction))
	_, err = agent.Call[string](ctx, h, "sqrt", 4.0) // the result is a float64
	fmt.Println(errors.Is(err, agent.ErrBadArguments))
	h.Shutdown(ctx)
	<-rt.Done()
	// Output:
	// ValueError: sqrt of -4 | true
	// UnknownActionError: behavior "Calculator" has no action "Sqrt" (did you mean "sqrt"?); its actions: sqrt | true
	// true
}
