// Command getting-started is a whole shmex program in two processes: an
// agent in one, a client in the other, which finds the agent, calls it and
// shuts it down. Start them in either order, in two terminals:
//
//	go run ./examples/getting-started agent
//	go run ./examples/getting-started client
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

func main() {
	x, err := exchange.Open("getting-started") // in /dev/shm/shmex-<uid>/; Linux only
	check(err)
	defer x.Close()
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		b := agent.NewBehavior("Greeter")
		check(agent.AddAction(b, "greet", func(_ context.Context, name string) (string, error) {
			return fmt.Sprintf("hello, %s, from process %d", name, os.Getpid()), nil
		}))
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		rt, err := agent.NewRuntime(ctx, x, b)
		check(err)
		check(rt.Run(ctx)) // serves until a client shuts it down (or Ctrl-C)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := agent.NewClient(ctx, x)
	check(err)
	defer c.Close()
	ids, err := c.WaitFor(ctx, "Greeter") // discovery: returns once an agent is active
	check(err)
	h := c.Handle(ids[0])
	out, err := agent.Call[string](ctx, h, "greet", "world")
	check(err)
	fmt.Println(out)
	check(h.Shutdown(ctx))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
