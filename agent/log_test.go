package agent_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/logrecord"
)

// TestQuietByDefault: a program that never asked for the agent package's
// logs gets its warnings only, through slog.Default; the debug records go
// to a logger given with WithLogger.
func TestQuietByDefault(t *testing.T) {
	def := logrecord.SetDefault(t)

	run := func(opts ...agent.Option) {
		ctx := testCtx(t)
		x := exchange.NewLocal()
		defer x.Close()
		b := agent.NewBehavior("Loud")
		b.OnShutdown(func(context.Context) error { return errors.New("hook broke") }) // a warning: nobody else is told
		if err := agent.AddAction(b, "quick", func(context.Context, agent.NoArgs) (int, error) { return 2, nil }); err != nil {
			t.Fatal(err)
		}
		rt, err := agent.NewRuntime(ctx, x, b, opts...)
		if err != nil {
			t.Fatal(err)
		}
		ran := make(chan error, 1)
		go func() { ran <- rt.Run(ctx) }()
		c, err := agent.NewClient(ctx, x, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if v, err := agent.Call[int](ctx, c.Handle(rt.ID()), "quick", agent.NoArgs{}); err != nil || v != 2 {
			t.Fatalf("quick = %v, %v", v, err)
		}
		// Terminated from outside: the runtime stops, and says so at
		// debug level.
		if err := x.Terminate(ctx, rt.ID()); err != nil {
			t.Fatal(err)
		}
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
	}

	run()
	below, warn, msgs := def.Levels()
	if below != 0 || warn == 0 {
		t.Fatalf("default logger got %d records below warn and %d at warn or above, want 0 and some: %q", below, warn, msgs)
	}

	mine := &logrecord.Recorder{}
	run(agent.WithLogger(slog.New(mine)))
	if below, _, msgs := mine.Levels(); below == 0 {
		t.Fatalf("WithLogger's logger got no debug records: %q", msgs)
	}
}
