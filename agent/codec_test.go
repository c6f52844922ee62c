package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/tinylib/msgp/msgp"
)

func roundTrip[T any](t *testing.T, v T, eq func(a, b T) bool) {
	t.Helper()
	c, err := agent.CodecFor[T]()
	if err != nil {
		t.Fatalf("CodecFor[%T]: %v", v, err)
	}
	b, err := c.Append(nil, v)
	if err != nil {
		t.Fatalf("Append(%v): %v", v, err)
	}
	var got T
	if err := c.Decode(b, &got); err != nil {
		t.Fatalf("Decode(%v): %v", v, err)
	}
	if !eq(got, v) {
		t.Fatalf("round trip of %v gave %v", v, got)
	}
	if err := c.Decode(append(b, 0xc0), &got); err == nil {
		t.Fatalf("Decode with a trailing byte accepted (%T)", v)
	}
	if len(b) > 0 {
		if err := c.Decode(b[:len(b)-1], &got); err == nil && len(b) > 1 {
			t.Fatalf("Decode of a truncated %T accepted", v)
		}
	}
}

func eq[T comparable](a, b T) bool { return a == b }

func TestCodecs(t *testing.T) {
	roundTrip(t, true, eq)
	roundTrip(t, int(-7), eq)
	roundTrip(t, int8(-128), eq)
	roundTrip(t, int16(-300), eq)
	roundTrip(t, int32(math.MinInt32), eq)
	roundTrip(t, int64(math.MaxInt64), eq)
	roundTrip(t, uint(7), eq)
	roundTrip(t, uint8(255), eq)
	roundTrip(t, uint16(65535), eq)
	roundTrip(t, uint32(math.MaxUint32), eq)
	roundTrip(t, uint64(math.MaxUint64), eq)
	roundTrip(t, float32(1.5), eq)
	roundTrip(t, math.Pi, eq)
	roundTrip(t, "héllo", eq)
	roundTrip(t, []byte("bytes"), bytes.Equal)
	roundTrip(t, struct{}{}, eq)
	roundTrip(t, Pair{-1, 1 << 40}, eq)
	roundTrip(t, exchange.NewAgentID(), eq)

	// "No arguments" also accepts an empty array, an empty map or nothing.
	noArgs, _ := agent.CodecFor[agent.NoArgs]()
	var v agent.NoArgs
	for _, b := range [][]byte{nil, {0xc0}, {0x90}, {0x80}} {
		if err := noArgs.Decode(b, &v); err != nil {
			t.Errorf("NoArgs.Decode(%x): %v", b, err)
		}
	}
	for _, b := range [][]byte{{0x91, 0x01}, {0x01}, {0x81, 0xa1, 'a', 0x01}} {
		if err := noArgs.Decode(b, &v); err == nil {
			t.Errorf("NoArgs.Decode(%x) accepted", b)
		}
	}

	// Types with no codec are refused with ErrNoCodec, at registration too.
	type namedArray [4]int
	if _, err := agent.CodecFor[namedArray](); !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("CodecFor[namedArray]: %v", err)
	}
	if _, err := agent.CodecFor[map[float64]int](); !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("CodecFor[map with float keys]: %v", err)
	}
	if _, err := agent.CodecFor[[]any](); !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("CodecFor[[]any]: %v", err)
	}
	if _, err := agent.CodecFor[*int](); !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("CodecFor[*int]: %v", err)
	}
	if _, err := agent.CodecFor[[]struct{}](); !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("CodecFor[[]struct{}]: %v", err)
	}
	b := agent.NewBehavior("X")
	err := agent.AddAction(b, "bad", func(context.Context, struct{ A int }) (int, error) { return 0, nil })
	if !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("AddAction with a struct without codec: %v", err)
	}
	err = agent.AddAction(b, "bad2", func(context.Context, int) (chan int, error) { return nil, nil })
	if !errors.Is(err, agent.ErrNoCodec) {
		t.Errorf("AddAction with a chan result: %v", err)
	}
	if len(b.Actions()) != 0 {
		t.Errorf("rejected actions were added: %v", b.Actions())
	}
	if err := agent.AddAction(b, "ok", func(context.Context, int) (int, error) { return 0, nil }); err != nil {
		t.Fatal(err)
	}
	if err := agent.AddAction(b, "ok", func(context.Context, int) (int, error) { return 0, nil }); !errors.Is(err, agent.ErrDuplicate) {
		t.Errorf("duplicate action: %v", err)
	}
}

// upperCodec is a custom codec: strings travel upper-cased, as raw bytes.
type upperCodec struct{}

func (upperCodec) Append(b []byte, v string) ([]byte, error) {
	return append(b, bytes.ToUpper([]byte(v))...), nil
}
func (upperCodec) Decode(b []byte, v *string) error { *v = string(b); return nil }

func TestCustomCodec(t *testing.T) {
	ctx := testCtx(t)
	b := agent.NewBehavior("Custom")
	if err := agent.AddActionCodec(b, "id", upperCodec{}, upperCodec{}, func(_ context.Context, s string) (string, error) {
		return s + "!", nil
	}); err != nil {
		t.Fatal(err)
	}
	h := serveLocal(t, ctx, b)
	f, err := agent.ActionCodec[string](ctx, h, "id", "abc", upperCodec{}, upperCodec{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Wait(ctx); err != nil || got != "ABC!" {
		t.Fatalf("custom codec: %q, %v", got, err)
	}
}

// FuzzCodecs decodes bytes from outside with every built-in codec: errors,
// never panics. What decodes is the value msgp's generic reader finds in
// the bytes (for the basic types: same number, text, bytes or bool, and
// nothing after it), and it re-encodes to bytes that decode to an equal
// value (floats compared bit for bit, NaN included) and encode again to
// the same bytes.
func FuzzCodecs(f *testing.F) {
	for _, seed := range [][]byte{nil, {0xc0}, {0x92, 0x01, 0x02}, {0xa3, 'a', 'b', 'c'}, {0xc4, 0x02, 1, 2}, {0xcb, 0, 0, 0, 0, 0, 0, 0, 0},
		{0xdb, 0xff, 0xff, 0xff, 0xff}, {0x92, 0xc4, 0x10}, {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1}, {0xca, 0xff, 0xc0, 0, 1},
		{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0xd0, 0x80}, {0xcd, 0xff, 0xff},
		{0xc4, 0x00}, {0xa0}, {0x90}, {0x80}, {0x92, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0, 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0xc4, 0x10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzOne[bool](t, b)
		fuzzOne[int](t, b)
		fuzzOne[int8](t, b)
		fuzzOne[uint16](t, b)
		fuzzOne[uint64](t, b)
		fuzzOne[float32](t, b)
		fuzzOne[float64](t, b)
		fuzzOne[string](t, b)
		fuzzOne[[]byte](t, b)
		fuzzOne[agent.NoArgs](t, b)
		fuzzOne[Pair](t, b)
		fuzzOne[exchange.EntityID](t, b)
	})
}

func fuzzOne[T any](t *testing.T, b []byte) {
	c, err := agent.CodecFor[T]()
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if c.Decode(b, &v) != nil {
		return
	}
	if err := agreesWithMsgp(v, b); err != nil {
		t.Fatalf("%T decoded from % x: %v", v, b, err)
	}
	enc, err := c.Append(nil, v)
	if err != nil {
		t.Fatalf("re-encode %T: %v", v, err)
	}
	var w T
	if err := c.Decode(enc, &w); err != nil {
		t.Fatalf("decode of re-encoded %T %x: %v", v, enc, err)
	}
	if !sameValue(v, w) {
		t.Fatalf("%T %v decoded from % x re-encodes to % x, which decodes to %v", v, v, b, enc, w)
	}
	again, err := c.Append(nil, w)
	if err != nil || !bytes.Equal(again, enc) {
		t.Fatalf("%T %v encodes to % x, then to % x (%v)", v, v, enc, again, err)
	}
}

// sameValue compares decoded values: floats bit for bit (a NaN equals
// itself), everything else with reflect.DeepEqual.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float32:
		return math.Float32bits(x) == math.Float32bits(b.(float32))
	case float64:
		return math.Float64bits(x) == math.Float64bits(b.(float64))
	}
	return reflect.DeepEqual(a, b)
}

// agreesWithMsgp checks a basic value v that a codec decoded from b against
// msgp's generic reader: one value, nothing after it, and the same value.
// Other types pass (their round trip is checked).
func agreesWithMsgp(v any, b []byte) error {
	switch v.(type) {
	case bool, int, int8, uint16, uint64, float32, float64, string, []byte:
	default:
		return nil
	}
	i, rest, err := msgp.ReadIntfBytes(b)
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("msgp reads %v with %d bytes after it (%v)", i, len(rest), err)
	}
	ok := false
	switch x := v.(type) {
	case bool:
		y, is := i.(bool)
		ok = is && x == y
	case int, int8, uint16, uint64:
		n := reflect.ValueOf(v)
		switch y := i.(type) {
		case int64:
			ok = n.CanInt() && n.Int() == y || n.CanUint() && y >= 0 && n.Uint() == uint64(y)
		case uint64:
			ok = n.CanUint() && n.Uint() == y || n.CanInt() && y <= math.MaxInt64 && n.Int() == int64(y)
		}
	case float32:
		y, is := i.(float32)
		ok = is && math.Float32bits(x) == math.Float32bits(y)
	case float64:
		switch y := i.(type) {
		case float64:
			ok = math.Float64bits(x) == math.Float64bits(y)
		case float32:
			ok = math.Float64bits(x) == math.Float64bits(float64(y)) || math.IsNaN(x) && math.IsNaN(float64(y))
		}
	case string:
		switch y := i.(type) {
		case string:
			ok = x == y
		case []byte:
			ok = x == string(y)
		}
	case []byte:
		switch y := i.(type) {
		case string:
			ok = string(x) == y
		case []byte:
			ok = bytes.Equal(x, y)
		}
	}
	if !ok {
		return fmt.Errorf("msgp reads %T %v", i, i)
	}
	return nil
}

// FuzzActionArgs sends arbitrary argument bytes to every action of a
// running agent: each call gets a result or an error response, and the
// agent keeps serving.
func FuzzActionArgs(f *testing.F) {
	x := exchange.NewLocal()
	defer x.Close()
	ctx := context.Background()
	b, err := newEcho()
	if err != nil {
		f.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		f.Fatal(err)
	}
	go rt.Run(ctx)
	defer rt.Shutdown()
	c, err := agent.NewClient(ctx, x)
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	h := c.Handle(rt.ID())
	actions := []string{"echo", "noop", "add", "swap", "fail", "failplain", "pid", "maxseen", "self", "nope"}
	for _, seed := range [][]byte{nil, {0xc0}, {0x92, 0x01, 0x02}, {0xa3, 'a', 'b', 'c'}, {0xc4, 0x02, 1, 2}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, args []byte) {
		for _, a := range actions {
			fu, err := h.ActionRaw(ctx, a, args)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fu.Wait(ctx); err != nil {
				var re *exchange.RemoteError
				if !errors.As(err, &re) {
					t.Fatalf("%s(%x): not a remote error: %v", a, args, err)
				}
			}
		}
	})
}

// slowCodec decodes a string slowly, counting its decodes, and panics on
// "boom!" (the result of action "id" of "boom").
type slowCodec struct{ decodes *atomic.Int32 }

func (slowCodec) Append(b []byte, v string) ([]byte, error) { return append(b, v...), nil }
func (c slowCodec) Decode(b []byte, v *string) error {
	c.decodes.Add(1)
	time.Sleep(20 * time.Millisecond) // let the other readers race this one
	if string(b) == "boom!" {
		panic("slowCodec: boom")
	}
	*v = string(b)
	return nil
}

// TestFutureResultOnce: a future's result is decoded once, whatever the
// number of goroutines that wait for it at once, and each gets it; a codec
// that panics panics in the reader that decodes, and the others (and later
// ones) get an error instead of a zero result.
func TestFutureResultOnce(t *testing.T) {
	ctx := testCtx(t)
	var decodes atomic.Int32
	codec := slowCodec{&decodes}
	b := agent.NewBehavior("Slow")
	if err := agent.AddActionCodec(b, "id", codec, codec, func(_ context.Context, s string) (string, error) { return s + "!", nil }); err != nil {
		t.Fatal(err)
	}
	h := serveLocal(t, ctx, b)
	for _, in := range []string{"abc", "boom"} {
		f, err := agent.ActionCodec[string](ctx, h, "id", in, codec, codec)
		if err != nil {
			t.Fatal(err)
		}
		<-f.Done()
		decodes.Store(0) // the agent's decode of the argument
		want := in + "!"
		const readers = 4
		var wg sync.WaitGroup
		var panics, fails atomic.Int32
		for range readers {
			wg.Go(func() {
				defer func() {
					if recover() != nil {
						panics.Add(1)
					}
				}()
				got, err := f.Wait(ctx)
				switch {
				case err != nil:
					fails.Add(1)
				case got != want:
					t.Errorf("Wait = %q, want %q", got, want)
				}
			})
		}
		wg.Wait()
		if n := decodes.Load(); n != 1 {
			t.Errorf("%q: decoded %d times, want 1", in, n)
		}
		if in == "boom" && (panics.Load() != 1 || fails.Load() != readers-1) {
			t.Errorf("panicking codec: %d panics and %d errors, want 1 and %d", panics.Load(), fails.Load(), readers-1)
		}
		if in != "boom" && (panics.Load() != 0 || fails.Load() != 0) {
			t.Errorf("%d panics and %d errors", panics.Load(), fails.Load())
		}
	}
}
