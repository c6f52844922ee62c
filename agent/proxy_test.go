package agent_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Agents over the proxy-store wrapper (proxystore.Wrap with an arena store):
// large arguments and results travel as proxies into shared memory, and an
// action either gets the bytes transparently or takes a proxy and resolves
// it when it wants.

// proxyThreshold is the wrapper's threshold in these tests: anything larger
// travels as a proxy.
const proxyThreshold = 1 << 10

// envProxyMode tells an agent process to serve on a wrapped exchange, and
// how its wrapper resolves: "manual" (actions get the proxies) or
// "transparent" (the bytes). Without it, agent processes serve on the
// shared-memory exchange itself.
const envProxyMode = "AGENT_TEST_PROXY_MODE"

// blobStore is the store of this process's wrapped exchange, for the
// actions that resolve proxies themselves.
var blobStore proxystore.Store

// wrapForChild is the agent processes' SetChildExchange: the shared-memory
// exchange wrapped with an arena store of its directory.
func wrapForChild(x *exchange.SHM) (exchange.Exchange, io.Closer, error) {
	mode := os.Getenv(envProxyMode)
	if mode == "" {
		return x, nil, nil
	}
	a, err := proxystore.OpenArena(x.Dir())
	if err != nil {
		return nil, nil, err
	}
	blobStore = a
	opts := []proxystore.WrapOption{proxystore.WithThreshold(proxyThreshold)}
	if mode == "manual" {
		opts = append(opts, proxystore.WithResolveMode(proxystore.ResolveManual))
	}
	return proxystore.Wrap(x, a, opts...), a, nil
}

// sum8 is a checksum the two sides compare.
func sum8(b []byte) uint64 {
	var s uint64
	for i, c := range b {
		s += uint64(c) * uint64(i%251+1)
	}
	return s
}

// newBlob is a behavior whose actions take and return large payloads:
//   - sum: bytes in (resolved by the wrapper), checksum out;
//   - sumProxy: a proxy in, resolved by the action itself, checksum out;
//   - make: a size in, that many bytes out (proxied by the wrapper);
//   - makeProxy: a size in, a proxy out, lent from the store and filled in
//     place by the action.
func newBlob() (*agent.Behavior, error) {
	b := agent.NewBehavior("Blob")
	u64, err := agent.CodecFor[uint64]()
	if err != nil {
		return nil, err
	}
	fill := func(p []byte) {
		for i := range p {
			p[i] = byte(i * 13)
		}
	}
	return b, errors.Join(
		agent.AddAction(b, "sum", func(_ context.Context, in []byte) (uint64, error) { return sum8(in), nil }),
		agent.AddActionCodec(b, "sumProxy", proxystore.PayloadCodec{}, u64, func(ctx context.Context, p proxystore.Proxy) (uint64, error) {
			v, err := blobStore.Resolve(ctx, p)
			if err != nil {
				return 0, err
			}
			defer v.Release()
			b, err := proxystore.BytesOf(v)
			if err != nil {
				return 0, err
			}
			return sum8(b), nil
		}),
		agent.AddAction(b, "make", func(_ context.Context, n int) ([]byte, error) {
			p := make([]byte, n)
			fill(p)
			return p, nil
		}),
		agent.AddActionCodec(b, "makeProxy", u64, proxystore.PayloadCodec{}, func(ctx context.Context, n uint64) (proxystore.Proxy, error) {
			l, err := proxystore.AllocBytes(ctx, blobStore, int(n), proxystore.WithSingleUse())
			if err != nil {
				return proxystore.Proxy{}, err
			}
			fill(l.Bytes())
			return l.Commit()
		}),
	)
}

// TestAgentProxies runs Blob agents in their own processes over wrapped
// exchanges, in both resolve modes, and calls them from a wrapped client
// with payloads up to 8 MiB: beyond what the exchange's 256 KiB mailboxes
// carry inline.
func TestAgentProxies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := filepath.Join(t.TempDir(), "root")
	x, err := exchange.Open("proxies", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	a, err := proxystore.OpenArena(x.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	wx := proxystore.Wrap(x, a, proxystore.WithThreshold(proxyThreshold))
	defer wx.Close()

	launch := func(mode string) *agent.Handle {
		l := agent.NewProcessLauncher(x)
		l.Env = []string{envProxyMode + "=" + mode}
		m, err := agent.NewManager(ctx, wx, l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.CloseTimeout(testTimeout) })
		h, err := m.Launch(ctx, "Blob")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	transparent, manual := launch("transparent"), launch("manual")

	payload := make([]byte, 8<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, n := range []int{10, 4 << 10, 8 << 20} {
		want := sum8(payload[:n])
		// Bytes in: the wrapper proxies them, the agent's wrapper resolves.
		if got, err := agent.Call[uint64](ctx, transparent, "sum", payload[:n]); err != nil || got != want {
			t.Fatalf("sum of %d bytes = %d, %v; want %d", n, got, err, want)
		}
		if n <= proxyThreshold {
			continue
		}
		// A proxy in: the client lends and fills; the agent resolves it
		// itself (its wrapper resolves nothing).
		l, err := proxystore.AllocBytes(ctx, a, n, proxystore.WithSingleUse())
		if err != nil {
			t.Fatal(err)
		}
		copy(l.Bytes(), payload[:n])
		p, err := l.Commit()
		if err != nil {
			t.Fatal(err)
		}
		f, err := agent.ActionCodec[uint64](ctx, manual, "sumProxy", p, proxystore.PayloadCodec{}, mustCodec[uint64](t))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.Wait(ctx); err != nil || got != want {
			t.Fatalf("sumProxy of %d bytes = %d, %v; want %d", n, got, err, want)
		}
		// Bytes out, proxied by the agent's wrapper, resolved by ours.
		out, err := agent.Call[[]byte](ctx, transparent, "make", n)
		if err != nil || len(out) != n || sum8(out) != sum8(fillPattern(n)) {
			t.Fatalf("make(%d) = %d bytes, %v", n, len(out), err)
		}
		// A proxy out, lent and filled in place by the agent: resolved by
		// our wrapper into bytes.
		out, err = agent.Call[[]byte](ctx, manual, "makeProxy", uint64(n))
		if err != nil || len(out) != n || sum8(out) != sum8(fillPattern(n)) {
			t.Fatalf("makeProxy(%d) = %d bytes, %v", n, len(out), err)
		}
	}
	// The agent layer resolves what it receives as it decodes (blob.go),
	// not through the wrapper's mailboxes: only Proxied counts here.
	if st := wx.Stats(); st.Proxied == 0 {
		t.Fatalf("wrapper stats %+v: nothing went through the store", st)
	}
	// A forged proxy is an error response, and the agent keeps serving.
	forged := proxystore.Proxy{Store: [16]byte(a.ID()), Kind: uint8(proxystore.KindArena), Segment: 1, Offset: 1 << 40, Length: 10, Generation: 1}
	f, err := agent.ActionCodec[uint64](ctx, manual, "sumProxy", forged, proxystore.PayloadCodec{}, mustCodec[uint64](t))
	if err != nil {
		t.Fatal(err)
	}
	var re *exchange.RemoteError
	if _, err := f.Wait(ctx); !errors.As(err, &re) {
		t.Fatalf("sumProxy of a forged proxy: %v, want a remote error", err)
	}
	if _, err := agent.Call[uint64](ctx, manual, "sum", payload[:10]); err != nil {
		t.Fatalf("agent after the forged proxy: %v", err)
	}
}

func fillPattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i * 13)
	}
	return p
}

func mustCodec[T any](t *testing.T) agent.Codec[T] {
	t.Helper()
	c, err := agent.CodecFor[T]()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
