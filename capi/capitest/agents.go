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
// MessagePack; those that take a payload take a proxy (a MessagePack ext
// made by a loan or a put) and resolve it in the agent's arena a, without a
// copy:
//
//	add    [a int, b int] -> int
//	echo   any -> the same bytes
//	noop   any -> nil
//	sum    proxy of little-endian float64s -> float (their sum)
//	length proxy -> uint (the payload's length; no byte is read)
//	make   n uint -> proxy of n bytes, byte i = i % 251 (single use)
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
	resolve := func(ctx context.Context, args []byte) (proxystore.View, error) {
		p, err := proxystore.ParsePayload(args)
		if err != nil {
			return nil, err
		}
		return a.Resolve(ctx, p)
	}
	must(b.AddRawAction("sum", func(ctx context.Context, args, out []byte) ([]byte, error) {
		v, err := resolve(ctx, args)
		if err != nil {
			return nil, err
		}
		defer v.Release()
		data := v.Bytes()
		if len(data)%8 != 0 {
			return nil, badArgs(fmt.Sprintf("%d bytes are not float64s", len(data)))
		}
		var s float64
		for i := 0; i < len(data); i += 8 {
			s += math.Float64frombits(binary.LittleEndian.Uint64(data[i:]))
		}
		return msgp.AppendFloat64(out, s), nil
	}))
	must(b.AddRawAction("length", func(ctx context.Context, args, out []byte) ([]byte, error) {
		v, err := resolve(ctx, args)
		if err != nil {
			return nil, err
		}
		n := len(v.Bytes())
		v.Release()
		return msgp.AppendUint64(out, uint64(n)), nil
	}))
	must(b.AddRawAction("make", func(ctx context.Context, args, out []byte) ([]byte, error) {
		n, _, err := msgp.ReadUint64Bytes(args)
		if err != nil || n > 1<<34 {
			return nil, badArgs("make takes a size")
		}
		l, err := a.Alloc(ctx, int(n), proxystore.WithSingleUse())
		if err != nil {
			return nil, err
		}
		for i, buf := 0, l.Bytes(); i < len(buf); i++ {
			buf[i] = byte(i % 251)
		}
		p, err := l.Commit()
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
