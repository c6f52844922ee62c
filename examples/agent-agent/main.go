// Command agent-agent is the Go counterpart of Academy's agent-agent
// example: a Coordinator agent that, for each request, calls a Lowerer and
// a Reverser agent through handles bound to its own mailbox; the client
// passes the helpers' ids to the coordinator, which binds them there.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// Process is the coordinator's argument: the helpers' ids and the text, as
// a MessagePack array handled by a custom codec.
type Process struct {
	Lowerer, Reverser exchange.EntityID
	Text              string
}

func newLowerer() (*agent.Behavior, error) {
	b := agent.NewBehavior("Lowerer")
	return b, agent.AddAction(b, "lower", func(_ context.Context, s string) (string, error) { return strings.ToLower(s), nil })
}

func newReverser() (*agent.Behavior, error) {
	b := agent.NewBehavior("Reverser")
	return b, agent.AddAction(b, "reverse", func(_ context.Context, s string) (string, error) {
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return string(r), nil
	})
}

func newCoordinator() (*agent.Behavior, error) {
	b := agent.NewBehavior("Coordinator")
	return b, agent.AddActionCodec(b, "process", processCodec{}, stringCodec(), func(ctx context.Context, p Process) (string, error) {
		rt := agent.FromContext(ctx)
		lower, reverse := rt.Handle(p.Lowerer), rt.Handle(p.Reverser)
		defer lower.Close(ctx)
		defer reverse.Close(ctx)
		s, err := agent.Call[string](ctx, lower, "lower", p.Text)
		if err != nil {
			return "", err
		}
		return agent.Call[string](ctx, reverse, "reverse", s)
	})
}

func stringCodec() agent.Codec[string] {
	c, err := agent.CodecFor[string]()
	if err != nil {
		panic(err)
	}
	return c
}

func init() {
	for name, f := range map[string]agent.Factory{"Lowerer": newLowerer, "Reverser": newReverser, "Coordinator": newCoordinator} {
		if err := agent.RegisterBehavior(name, f); err != nil {
			panic(err)
		}
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
	handles := map[string]*agent.Handle{}
	for _, name := range []string{"Lowerer", "Reverser", "Coordinator"} {
		if handles[name], err = m.Launch(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(w, "launched %s agent\n", name)
	}
	text := "DEADBEEF"
	out, err := agent.ActionCodec[string](ctx, handles["Coordinator"], "process",
		Process{Lowerer: handles["Lowerer"].AgentID(), Reverser: handles["Reverser"].AgentID(), Text: text},
		processCodec{}, stringCodec())
	if err != nil {
		return err
	}
	res, err := out.Wait(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "coordinator processed %q into %q\n", text, res)
	if err := m.Close(); err != nil {
		return err
	}
	fmt.Fprintln(w, "all agents shut down")
	return nil
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}
