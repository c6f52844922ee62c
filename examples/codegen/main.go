// Command codegen shows the codegen tool at work: an agent that computes
// statistics, served in its own process from an implementation of the
// Stats interface (stats.go), and called through the generated handle as
// if it were a local value. Run `go generate` here after changing the
// interface; the generated files are committed.
//
//	go run ./examples/codegen
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
)

// stats implements Stats: what the agent process runs.
type stats struct{}

func (stats) Mean(_ context.Context, v []float64) (float64, error) {
	if len(v) == 0 {
		return 0, &exchange.RemoteError{Kind: "ValueError", Message: "mean of no values"}
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v)), nil
}

func (s stats) Summarize(ctx context.Context, v []float64) (Summary, error) {
	mean, err := s.Mean(ctx, v)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{N: len(v), Min: math.Inf(1), Max: math.Inf(-1), Mean: mean}
	for _, x := range v {
		sum.Min, sum.Max = min(sum.Min, x), max(sum.Max, x)
	}
	return sum, nil
}

func (stats) Histogram(_ context.Context, v []int) (map[int64]int, error) {
	h := map[int64]int{}
	for _, x := range v {
		h[int64(x)]++
	}
	return h, nil
}

func init() {
	err := agent.RegisterBehavior("Stats", func() (*agent.Behavior, error) {
		b := agent.NewBehavior("Stats")
		return b, AddStatsActions(b, stats{}) // generated: one action per method
	})
	if err != nil {
		panic(err)
	}
}

func run(ctx context.Context, w io.Writer) error {
	name := fmt.Sprintf("codegen-%d", os.Getpid())
	x, err := exchange.Open(name) // under /dev/shm/shmex-<uid>: `shmex ls` shows it
	if err != nil {
		return err
	}
	defer exchange.Remove(name) // after x.Close, deferred below
	defer x.Close()
	m, err := agent.NewManager(ctx, x, agent.NewProcessLauncher(x))
	if err != nil {
		return err
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Stats")
	if err != nil {
		return err
	}

	s := NewStatsHandle(h) // a Stats whose methods run in the agent's process
	mean, err := s.Mean(ctx, []float64{1, 2, 3, 6})
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "mean:", mean)
	sum, err := s.Summarize(ctx, []float64{4, -1, 9})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "summary: %+v\n", sum)
	f, err := s.HistogramAsync(ctx, []int{1, 1, 5}) // a future: wait for it later
	if err != nil {
		return err
	}
	hist, err := f.Wait(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "histogram:", hist)
	_, err = s.Mean(ctx, nil)
	fmt.Fprintln(w, "error:", err)
	// The actions are named for peers in other languages.
	mean, err = agent.Call[float64](ctx, h, "mean", []float64{10, 20})
	fmt.Fprintln(w, `"mean" called by name:`, mean, err)
	return m.Shutdown(ctx, h.AgentID(), true)
}

func main() {
	agent.ServeIfChild() // the agent process runs its agent here and exits
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
}
