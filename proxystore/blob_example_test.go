package proxystore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Pass 1 GiB to an agent and get 1 GiB back, with no copy on the way in or
// out: the caller fills its argument in place in its arena; the agent
// reads it in place (a read-only view) and lends its result from the
// arena, which the caller reads in place. The code between the marks is
// the README's example; here the agent runs in this process, and with
// agent.NewProcessLauncher it runs in its own (its process opens the arena
// store of the exchange's directory, and lends from it).
func ExampleBlob() {
	root, _ := os.MkdirTemp("", "shmex-example-")
	defer os.RemoveAll(root)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// --- README: Large payloads ---
	x, _ := exchange.Open("lab", exchange.WithRoot(root))
	a, _ := proxystore.OpenArena(x.Dir()) // this process's arena: payloads live here
	b := agent.NewBehavior("Mirror")
	agent.AddAction(b, "mirror", func(ctx context.Context, in proxystore.Blob) (proxystore.Blob, error) {
		out, err := proxystore.AllocBlob(ctx, a, in.Size()) // the result, lent in place
		mirror(out.Bytes(), in.Bytes())                     // in: a view of the caller's bytes
		return out, err
	})
	rt, _ := agent.NewRuntime(ctx, x, b)
	go rt.Run(ctx)
	in, _ := proxystore.AllocBlob(ctx, a, 1<<30) // 1 GiB, lent in place
	fill(in.Bytes())
	out, _ := agent.Call[proxystore.Blob](ctx, rt.Handle(rt.ID()), "mirror", in)
	defer out.Release()
	fmt.Println(out.Size()>>20, "MiB back:", check(out.Bytes()))
	// --- end ---

	rt.Shutdown()
	<-rt.Done()
	a.Close() // (the deferred Release then has nothing left to do)
	x.Close()
	// Output: 1024 MiB back: true
}

// fill writes the page number into every 4 KiB page of b.
func fill(b []byte) {
	for i := 0; i+8 <= len(b); i += 4096 {
		binary.LittleEndian.PutUint64(b[i:], uint64(i/4096))
	}
}

// mirror writes the pages of src into dst in reverse order: the agent's
// work, one pass over its argument.
func mirror(dst, src []byte) {
	n := len(src) / 4096
	for i := 0; i < n && len(dst) == len(src); i++ {
		copy(dst[i*4096:(i+1)*4096], src[(n-1-i)*4096:(n-i)*4096])
	}
}

// check reports whether b holds fill's pages in reverse order.
func check(b []byte) bool {
	n := len(b) / 4096
	for i := 0; i < n; i++ {
		if binary.LittleEndian.Uint64(b[i*4096:]) != uint64(n-1-i) {
			return false
		}
	}
	return n > 0
}
