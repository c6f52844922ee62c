// Command zero-copy passes a large payload to an agent in another process
// without copying it: the client lends room in its shared arena, fills it in
// place, and sends a proxy of a few dozen bytes; the agent, whose exchange
// is wrapped with the proxy store, resolves the proxy to a read-only view of
// the client's arena and sums the bytes where they lie. The same payload is
// then sent with Put (one copy into the arena) for comparison.
//
//	go run ./examples/zero-copy            # 256 MiB
//	go run ./examples/zero-copy -mib 1024  # 1 GiB
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/tinylib/msgp/msgp"
)

// store is the agent process's arena store, for its action to resolve
// proxies with.
var store proxystore.Store

// newSummer returns a behavior with one action, "sum": a proxy in, the sum
// of the bytes it stands for out, computed on the view without a copy.
func newSummer() (*agent.Behavior, error) {
	b := agent.NewBehavior("Summer")
	u64, err := agent.CodecFor[uint64]()
	if err != nil {
		return nil, err
	}
	return b, agent.AddActionCodec(b, "sum", proxystore.PayloadCodec{}, u64,
		func(ctx context.Context, p proxystore.Proxy) (uint64, error) {
			v, err := store.Resolve(ctx, p)
			if err != nil {
				return 0, err
			}
			defer v.Release()
			data, err := proxystore.BytesOf(v)
			if err != nil {
				return 0, err
			}
			return sum(data), nil
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
	// Agent processes serve on the shared-memory exchange wrapped with an
	// arena store of its directory; the action resolves proxies itself.
	agent.SetChildExchange(func(x *exchange.SHM) (exchange.Exchange, io.Closer, error) {
		a, err := proxystore.OpenArena(x.Dir())
		if err != nil {
			return nil, nil, err
		}
		store = a
		return proxystore.Wrap(x, a, proxystore.WithResolveMode(proxystore.ResolveManual)), a, nil
	})
}

func run(ctx context.Context, w io.Writer, size int) error {
	root, err := os.MkdirTemp("", "shmex-zero-copy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o700); err != nil {
		return err
	}
	x, err := exchange.Open("zero-copy", exchange.WithRoot(root))
	if err != nil {
		return err
	}
	defer x.Close()
	a, err := proxystore.OpenArena(x.Dir(), proxystore.WithMaxBytes(int64(3*size)+64<<20))
	if err != nil {
		return err
	}
	defer a.Close()
	m, err := agent.NewManager(ctx, x, agent.NewProcessLauncher(x))
	if err != nil {
		return err
	}
	defer m.Close()
	h, err := m.Launch(ctx, "Summer")
	if err != nil {
		return err
	}
	u64, err := agent.CodecFor[uint64]()
	if err != nil {
		return err
	}
	call := func(p proxystore.Proxy) (uint64, time.Duration, error) {
		t0 := time.Now()
		f, err := agent.ActionCodec[uint64](ctx, h, "sum", p, proxystore.PayloadCodec{}, u64)
		if err != nil {
			return 0, 0, err
		}
		s, err := f.Wait(ctx)
		return s, time.Since(t0), err
	}

	// 1. Lend room in the arena and produce the data in place.
	t0 := time.Now()
	loan, err := proxystore.AllocBytes(ctx, a, size, proxystore.WithSingleUse())
	if err != nil {
		return err
	}
	alloc := time.Since(t0)
	t0 = time.Now()
	data := loan.Bytes()
	for i := range data {
		data[i] = byte(i)
	}
	want := sum(data)
	fill := time.Since(t0)
	p, err := loan.Commit()
	if err != nil {
		return err
	}
	got, rtt, err := call(p)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "lent %d MiB in place (allocated in %v, filled in %v), sent a %d-byte proxy: the agent summed it to %d (want %d) in a %v round trip\n",
		size>>20, alloc.Round(time.Millisecond), fill.Round(time.Millisecond), len(proxystore.AppendPayload(nil, p)), got, want, rtt.Round(time.Microsecond))

	// 2. The same bytes from the Go heap, copied in with Put.
	heap := make([]byte, size)
	for i := range heap {
		heap[i] = byte(i)
	}
	// Put takes what a proxy of a []byte stands for: its MessagePack bin
	// encoding (AllocBytes writes the header in place instead).
	bin := msgp.AppendBytes(make([]byte, 0, 5+len(heap)), heap)
	t0 = time.Now()
	p, err = a.Put(ctx, bin, proxystore.WithSingleUse())
	if err != nil {
		return err
	}
	put := time.Since(t0)
	got, rtt, err = call(p)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "copied %d MiB in with Put in %v (the copy a loan avoids): the agent summed it to %d (want %d) in a %v round trip\n",
		size>>20, put.Round(time.Millisecond), got, want, rtt.Round(time.Microsecond))
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
