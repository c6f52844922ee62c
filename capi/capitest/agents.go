package capitest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
	"github.com/tinylib/msgp/msgp"
)

// CalcBehavior is the name of the behavior of the Go agent that the
// bindings' tests call (it implements "Base" too, for discovery with
// subtypes).
const CalcBehavior = "Calc"

// NewCalc returns a Calc agent's behavior. Its actions take and return
// MessagePack; those that take a payload take a proxystore.Blob (what a
// loan or a put of libshmex is), read in place in the sender's arena, and
// make results lent from the agent's arena a:
//
//	add    [a int, b int] -> int
//	echo   any -> the same bytes
//	noop   any -> nil
//	sum    Blob of little-endian float64s -> float (their sum)
//	length Blob -> uint (the payload's length; no byte is read)
//	make   n uint -> Blob of n bytes, byte i = i % 251 (single use)
//	value  n uint -> a proxy of form value (what a Go wrapper makes of a
//	       large value): of [42, "proxied"] for 0, of a bin of n bytes
//	       (byte i = i % 251) otherwise
//	fail   [kind str, message str] -> an error of that kind
//	sleep  ms int -> nil, after ms milliseconds (or the agent's shutdown)
func NewCalc(a *proxystore.Arena) *agent.Behavior {
	b := agent.NewBehavior(CalcBehavior, "Base")
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(b.AddRawAction("add", func(_ context.Context, args, out []byte) ([]byte, error) {
		n, rest, err := msgp.ReadArrayHeaderBytes(args)
		if err != nil || n != 2 {
			return nil, badArgs("add takes [a, b]")
		}
		x, rest, err := msgp.ReadInt64Bytes(rest)
		if err != nil {
			return nil, badArgs(err.Error())
		}
		y, _, err := msgp.ReadInt64Bytes(rest)
		if err != nil {
			return nil, badArgs(err.Error())
		}
		return msgp.AppendInt64(out, x+y), nil
	}))
	must(b.AddRawAction("echo", func(_ context.Context, args, out []byte) ([]byte, error) {
		return append(out, args...), nil
	}))
	must(b.AddRawAction("noop", func(_ context.Context, _, out []byte) ([]byte, error) {
		return msgp.AppendNil(out), nil
	}))
	// Payloads are proxystore.Blobs: a C, Fortran or Python loan decodes
	// into a view of the sender's arena, released when the action returns.
	must(agent.AddAction(b, "sum", func(_ context.Context, bl proxystore.Blob) (float64, error) {
		data := bl.Bytes()
		if len(data)%8 != 0 {
			return 0, badArgs(fmt.Sprintf("%d bytes are not float64s", len(data)))
		}
		var s float64
		for i := 0; i < len(data); i += 8 {
			s += math.Float64frombits(binary.LittleEndian.Uint64(data[i:]))
		}
		return s, nil
	}))
	must(agent.AddAction(b, "length", func(_ context.Context, bl proxystore.Blob) (uint64, error) {
		return uint64(bl.Size()), nil
	}))
	must(agent.AddAction(b, "make", func(ctx context.Context, n uint64) (proxystore.Blob, error) {
		if n > 1<<34 {
			return proxystore.Blob{}, badArgs("make takes a size up to 16 GiB")
		}
		bl, err := proxystore.AllocBlob(ctx, a, int(n))
		if err != nil {
			return proxystore.Blob{}, err
		}
		for i, buf := 0, bl.Bytes(); i < len(buf); i++ {
			buf[i] = byte(i % 251)
		}
		return bl, nil
	}))
	// A value proxied whole, as a Go proxystore.Wrap proxies a large
	// argument or result: a proxy of form value over the value's encoding.
	must(b.AddRawAction("value", func(ctx context.Context, args, out []byte) ([]byte, error) {
		n, _, err := msgp.ReadUint64Bytes(args)
		if err != nil || n > 1<<30 {
			return nil, badArgs("value takes a size")
		}
		var enc []byte
		if n == 0 {
			enc = msgp.AppendString(msgp.AppendInt64(msgp.AppendArrayHeader(nil, 2), 42), "proxied")
		} else {
			buf := make([]byte, n)
			for i := range buf {
				buf[i] = byte(i % 251)
			}
			enc = msgp.AppendBytes(nil, buf)
		}
		p, err := a.Put(ctx, enc, proxystore.WithSingleUse())
		if err != nil {
			return nil, err
		}
		return proxystore.AppendPayload(out, p), nil
	}))
	must(b.AddRawAction("fail", func(_ context.Context, args, _ []byte) ([]byte, error) {
		n, rest, err := msgp.ReadArrayHeaderBytes(args)
		if err != nil || n != 2 {
			return nil, badArgs("fail takes [kind, message]")
		}
		kind, rest, err := msgp.ReadStringBytes(rest)
		if err != nil {
			return nil, badArgs(err.Error())
		}
		msg, _, err := msgp.ReadStringBytes(rest)
		if err != nil {
			return nil, badArgs(err.Error())
		}
		return nil, &exchange.RemoteError{Kind: kind, Message: msg}
	}))
	must(b.AddRawAction("sleep", func(ctx context.Context, args, out []byte) ([]byte, error) {
		ms, _, err := msgp.ReadInt64Bytes(args)
		if err != nil {
			return nil, badArgs("sleep takes milliseconds")
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		return msgp.AppendNil(out), nil
	}))
	return b
}

func badArgs(msg string) error {
	return &exchange.RemoteError{Kind: agent.ErrorKindBadArguments, Message: msg}
}

// Root returns a fresh directory for exchanges under shm.DefaultRoot(),
// removed when tb ends.
func Root(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	root := filepath.Join(shm.DefaultRoot(), "test-capi-"+hex.EncodeToString(b))
	if err := shm.EnsureDir(root); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// Calc is a Calc agent served by goroutines of the test process.
type Calc struct {
	// Root and Name locate the exchange.
	Root, Name string
	// X is the test process's handle on the exchange.
	X *exchange.SHM
	// Arena is the test process's arena in it.
	Arena *proxystore.Arena
	// ID is the agent's id.
	ID exchange.EntityID
	// RT is the agent's runtime.
	RT *agent.Runtime
}

// ServeCalc opens the exchange name under root and serves a Calc agent in
// it until tb ends.
func ServeCalc(tb testing.TB, root, name string) *Calc {
	tb.Helper()
	c, err := StartCalc(context.Background(), root, name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// StartCalc is ServeCalc without a testing.TB: Close stops it.
func StartCalc(ctx context.Context, root, name string, opts ...exchange.Option) (*Calc, error) {
	x, err := exchange.Open(name, append([]exchange.Option{exchange.WithRoot(root)}, opts...)...)
	if err != nil {
		return nil, err
	}
	a, err := proxystore.OpenArena(x.Dir())
	if err != nil {
		x.Close()
		return nil, err
	}
	rt, err := agent.NewRuntime(ctx, x, NewCalc(a), agent.WithName("calc"))
	if err != nil {
		a.Close()
		x.Close()
		return nil, err
	}
	go rt.Run(context.Background())
	return &Calc{Root: root, Name: name, X: x, Arena: a, ID: rt.ID(), RT: rt}, nil
}

// Close shuts the agent down, waits for it, and closes the arena and the
// exchange handle.
func (c *Calc) Close() error {
	c.RT.Shutdown()
	var err error
	select {
	case <-c.RT.Done():
	case <-time.After(30 * time.Second):
		err = errors.New("capitest: the Calc agent did not stop within 30 s")
	}
	return errors.Join(err, c.Arena.Close(), c.X.Close())
}
