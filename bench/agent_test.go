//go:build linux

package bench

import (
	"context"
	"testing"

	"github.com/shmex/shmex/agent"
)

// The agent scenarios as `go test -bench`, beside BenchmarkExchangeRTT*: a
// no-op action round trip (Call, 64 bytes of arguments) per op, and
// pipelined actions (64 futures in flight per client) reported as
// msgs/s.

func benchActionRTT(b *testing.B, mode string) {
	env := benchEnvPin(b, mode == "park")
	root, err := env.Dir()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	p, err := startAgents(ctx, env, root, "bench-action-"+mode, mode, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer p.close(ctx)
	cl, err := agent.NewClient(ctx, p.x)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	h := cl.Handle(p.ids[0])
	args := make([]byte, MsgSize)
	call := func() error {
		_, err := agent.Call[agent.NoArgs](p.ctx, h, "noop", args)
		return err
	}
	for range 1000 { // warm up: the pools, the action's quick count
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	unlock := env.LockThread()
	defer unlock()
	b.ReportAllocs()
	loopRTT(b, mode == "park", call)
}

func BenchmarkActionRTTSpin(b *testing.B)  { benchActionRTT(b, "spin") }
func BenchmarkActionRTTFutex(b *testing.B) { benchActionRTT(b, "park") }

func benchActionThroughput(b *testing.B, clients, procs int) {
	env := benchEnv(b)
	root, err := env.Dir()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rig, err := startActionRig(ctx, env, root, clients, procs)
	defer rig.close(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := rig.run(ctx, env.WarmupPhase()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	benchRate(b, rig.run)
}

func BenchmarkActionThroughput(b *testing.B)    { benchActionThroughput(b, 1, 1) }
func BenchmarkActionThroughput8x8(b *testing.B) { benchActionThroughput(b, 8, 2) }
