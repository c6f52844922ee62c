// Command zero-copy passes a large payload to an agent in another process
// without copying it. The client lends room in its shared arena
// (proxystore.AllocBlob), fills it in place, and calls the agent with a
// Frame whose Data field is that Blob: a proxy of 59 bytes travels in the
// message. The agent's action gets Data as a read-only view of the
// client's arena and sums the bytes where they lie. The same payload is
// then sent from the Go heap with proxystore.NewBlob (one copy into the
// arena) for comparison: the loan saves that copy.
//
// Both processes reserve room in their arenas at startup
// (Arena.Reserve), so that no call pays for fresh memory; each mode runs
// a few rounds and the best is printed.
//
//	go run ./examples/zero-copy            # 256 MiB
//	go run ./examples/zero-copy -mib 1024  # 1 GiB
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// rounds is how many calls each mode makes.
const rounds = 3

// newSummer returns a behavior with one action, "sum": a Frame in, the sum
// of its Data out, computed on the view without a copy. The Blob is
// released when the action returns.
func newSummer() (*agent.Behavior, error) {
	b := agent.NewBehavior("Summer")
	return b, agent.AddAction(b, "sum", func(_ context.Context, f Frame) (uint64, error) {
		if !f.Data.Received() {
			return 0, fmt.Errorf("frame %d: the payload arrived as a copy", f.Step)
		}
		return sum(f.Data.Bytes()), nil
	})
}

func sum(b []byte) uint64 {
	var s uint64
	for _, c := range b {
		s += uint64(c)
	}
	return s
}

func init() {
	if err := agent.RegisterBehavior("Summer", newSummer); err != nil {
		panic(err)
	}
	// Agent processes open the arena store of the exchange's directory:
	// the Blobs they receive resolve there.
	agent.SetChildExchange(func(x *exchange.SHM) (exchange.Exchange, io.Closer, error) {
		a, err := proxystore.OpenArena(x.Dir())
		if err != nil {
			return nil, nil, err
		}
		return proxystore.Wrap(x, a), a, nil
	})
}

func run(ctx context.Context, w io.Writer, size int) (err error) {
	// The exchange and its arenas live under the default root,
	// /dev/shm/shmex-<uid>/: `shmex ls` lists them while the example runs.
	// A unique name, removed at the end (once the agent, the arenas and
	// this process's handle are gone).
	name := fmt.Sprintf("zero-copy-%d", os.Getpid())
	x, err := exchange.Open(name)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, exchange.Remove(name)) }()
	defer x.Close()
	a, err := proxystore.OpenArena(x.Dir(), proxystore.WithMaxBytes(int64(3*size)+64<<20))
	if err != nil {
		return err
	}
	defer a.Close()
	wx := proxystore.Wrap(x, a)
	defer wx.Close()

	// Startup: room for a payload lent and one copied in, ahead of the
	// calls (fresh memory is paid for here, once).
	t0 := time.Now()
	if err := a.Reserve(ctx, size, size); err != nil {
		return err
	}
	fmt.Fprintf(w, "reserved room for 2 payloads of %d MiB in %v (once, at startup)\n", size>>20, time.Since(t0).Round(time.Millisecond))

	m, err := agent.NewManager(ctx, wx, agent.NewProcessLauncher(x))
	if err != nil {
		return err
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Summer")
	if err != nil {
		return err
	}

	// The same bytes in the Go heap, for NewBlob.
	heap := make([]byte, size)
	for i := range heap {
		heap[i] = byte(i)
	}
	want := sum(heap)

	for _, mode := range []string{"loan", "put"} {
		best := time.Duration(0)
		var got uint64
		for step := range rounds {
			var data proxystore.Blob
			t0 := time.Now()
			if mode == "loan" {
				// Lend room in the arena and produce the data in place
				// (producing it is the program's own work: not timed).
				if data, err = proxystore.AllocBlob(ctx, a, size); err != nil {
					return err
				}
				produce := time.Now()
				p := data.Bytes()
				for i := range p {
					p[i] = byte(i)
				}
				t0 = t0.Add(time.Since(produce))
			} else if data, err = proxystore.NewBlob(ctx, a, heap); err != nil { // one copy into the arena
				return err
			}
			if got, err = agent.Call[uint64](ctx, h, "sum", Frame{Step: step, Data: data}); err != nil {
				return err
			}
			if el := time.Since(t0); best == 0 || el < best {
				best = el
			}
			if got != want {
				return fmt.Errorf("%s: the agent summed %d, want %d", mode, got, want)
			}
		}
		what := map[string]string{"loan": "lent in place (AllocBlob)", "put": "copied in from the heap (NewBlob)"}[mode]
		fmt.Fprintf(w, "%s: %d MiB %s, summed in place by the agent to %d (want %d): best call of %d %v\n",
			mode, size>>20, what, got, want, rounds, best.Round(100*time.Microsecond))
	}
	return m.Shutdown(ctx, h.AgentID(), true)
}

func main() {
	agent.ServeIfChild() // the agent process runs its agent here and exits
	mib := flag.Int("mib", 256, "payload size in MiB")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *mib<<20); err != nil {
		log.Fatal(err)
	}
}
