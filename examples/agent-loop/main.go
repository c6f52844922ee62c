// Command agent-loop is the Go counterpart of Academy's agent-loop example:
// an agent whose control loop counts in the background, observed by a
// client through an action, on the in-process exchange.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// newTicker returns a behavior with a control loop that increments a
// counter every millisecond until shutdown, and an action that reads it.
func newTicker() (*agent.Behavior, error) {
	var ticks atomic.Int64
	b := agent.NewBehavior("Ticker")
	b.Loop("count", func(ctx context.Context) error {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				ticks.Add(1)
			case <-ctx.Done():
				return nil
			}
		}
	})
	err := agent.AddAction(b, "ticks", func(context.Context, agent.NoArgs) (int64, error) {
		return ticks.Load(), nil
	})
	return b, err
}

func init() {
	if err := agent.RegisterBehavior("Ticker", newTicker); err != nil {
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
	h, err := m.Launch(ctx, "Ticker")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "launched Ticker agent %v\n", h.AgentID())
	var last int64
	for i := range 3 {
		// Wait until the loop has advanced.
		for {
			n, err := agent.Call[int64](ctx, h, "ticks", agent.NoArgs{})
			if err != nil {
				return err
			}
			if n > last {
				last = n
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		fmt.Fprintf(w, "observation %d: the control loop is running\n", i+1)
	}
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
