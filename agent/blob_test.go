package agent_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// Large payloads between processes through agent.Call: proxystore.Blob
// arguments and results (views of the sender's arena, no copy), plain
// []byte over the proxy-store wrapper (any size), and every mix of the two
// and of the two sides' wrapper options. The agents run in their own
// processes (see wrapForChild for how they wrap their exchange).

func init() {
	mustRegister("Payload", newPayload)
}

// envLargeTests runs the 2 GiB cases and the 512 MiB []byte ones (several
// GiB of memory under the race detector): SHMEX_TEST_LARGE=1.
const envLargeTests = "SHMEX_TEST_LARGE"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcOf(b []byte) uint64 { return uint64(crc32.Checksum(b, castagnoli)) }

// fillFast fills b with a pattern of period 4093 (a prime: a block moved by
// a page or a chunk changes the checksum) derived from seed, plus its
// offset every 64 KiB, by doubling copies: fast even under the race
// detector.
func fillFast(b []byte, seed byte) {
	n := min(len(b), 4093)
	for i := range n {
		b[i] = byte(i*31) ^ seed
	}
	for done := n; done < len(b); done *= 2 {
		copy(b[done:], b[:done])
	}
	for i := 0; i+8 <= len(b); i += 64 << 10 {
		binary.LittleEndian.PutUint64(b[i:], uint64(i)^uint64(seed))
	}
}

// keptBlob is a Blob an action retained past its return.
var (
	keptMu   sync.Mutex
	keptBlob proxystore.Blob
)

// Labeled is a msgp struct with a Blob field (its methods are what
// `go tool msgp` generates for it).
type Labeled struct {
	Name string
	Data proxystore.Blob
}

// MarshalMsg implements msgp.Marshaler.
func (z *Labeled) MarshalMsg(b []byte) (o []byte, err error) {
	o = msgp.Require(b, z.Msgsize())
	o = append(o, 0x82, 0xa4, 'N', 'a', 'm', 'e')
	o = msgp.AppendString(o, z.Name)
	o = append(o, 0xa4, 'D', 'a', 't', 'a')
	o, err = z.Data.MarshalMsg(o)
	if err != nil {
		err = msgp.WrapError(err, "Data")
	}
	return
}

// UnmarshalMsg implements msgp.Unmarshaler.
func (z *Labeled) UnmarshalMsg(bts []byte) (o []byte, err error) {
	var field []byte
	var n uint32
	if n, bts, err = msgp.ReadMapHeaderBytes(bts); err != nil {
		return bts, msgp.WrapError(err)
	}
	for ; n > 0; n-- {
		if field, bts, err = msgp.ReadMapKeyZC(bts); err != nil {
			return bts, msgp.WrapError(err)
		}
		switch msgp.UnsafeString(field) {
		case "Name":
			if z.Name, bts, err = msgp.ReadStringBytes(bts); err != nil {
				return bts, msgp.WrapError(err, "Name")
			}
		case "Data":
			if bts, err = z.Data.UnmarshalMsg(bts); err != nil {
				return bts, msgp.WrapError(err, "Data")
			}
		default:
			if bts, err = msgp.Skip(bts); err != nil {
				return bts, msgp.WrapError(err)
			}
		}
	}
	return bts, nil
}

// Msgsize implements msgp.Sizer.
func (z *Labeled) Msgsize() int {
	return 1 + 5 + msgp.StringPrefixSize + len(z.Name) + 5 + z.Data.Msgsize()
}

// newPayload is the behavior of these tests:
//   - crc: a Blob in, its checksum out;
//   - crcBytes: a []byte in, its checksum out;
//   - make / makeBytes / makeOwned: a size and a seed in, that many bytes
//     out, lent from the agent's arena (a single-use Blob, or an owned one),
//     or a []byte;
//   - keep: retains its Blob argument past the return; kept: the kept
//     Blob's checksum, then its release;
//   - echo: returns its Blob argument (a single-use Blob cannot be sent
//     on: an error);
//   - label: a Labeled in, its name and checksum out;
//   - heap: the heap in use after a GC; pid: the process id.
func newPayload() (*agent.Behavior, error) {
	b := agent.NewBehavior("Payload")
	type sized struct {
		N    uint64
		Seed byte
	}
	makeBlob := func(ctx context.Context, n uint64, seed byte, opts ...proxystore.PutOption) (proxystore.Blob, error) {
		out, err := proxystore.AllocBlob(ctx, blobStore, int(n), opts...)
		if err != nil {
			return out, err
		}
		fillFast(out.Bytes(), seed)
		return out, nil
	}
	return b, errors.Join(
		agent.AddAction(b, "crc", func(_ context.Context, in proxystore.Blob) (uint64, error) {
			if in.Size() > 0 && !in.Received() {
				return 0, errors.New("the Blob argument is a copy, not a view")
			}
			return crcOf(in.Bytes()), nil
		}),
		agent.AddAction(b, "crcBytes", func(_ context.Context, in []byte) (uint64, error) { return crcOf(in), nil }),
		agent.AddAction(b, "make", func(ctx context.Context, n uint64) (proxystore.Blob, error) {
			return makeBlob(ctx, n, byte(n))
		}),
		agent.AddAction(b, "makeOwned", func(ctx context.Context, n uint64) (proxystore.Blob, error) {
			return makeBlob(ctx, n, byte(n), proxystore.WithLifetime(proxystore.Owned))
		}),
		agent.AddAction(b, "makeBytes", func(_ context.Context, n uint64) ([]byte, error) {
			out := make([]byte, n)
			fillFast(out, byte(n))
			return out, nil
		}),
		agent.AddAction(b, "keep", func(_ context.Context, in proxystore.Blob) (uint64, error) {
			if err := in.Retain(); err != nil {
				return 0, err
			}
			keptMu.Lock()
			defer keptMu.Unlock()
			keptBlob = in
			return crcOf(in.Bytes()), nil
		}),
		agent.AddAction(b, "kept", func(context.Context, agent.NoArgs) (uint64, error) {
			keptMu.Lock()
			defer keptMu.Unlock()
			sum := crcOf(keptBlob.Bytes())
			return sum, keptBlob.Release()
		}),
		agent.AddAction(b, "echo", func(_ context.Context, in proxystore.Blob) (proxystore.Blob, error) { return in, nil }),
		agent.AddAction(b, "label", func(_ context.Context, in Labeled) (string, error) {
			return fmt.Sprintf("%s:%d", in.Name, crcOf(in.Data.Bytes())), nil
		}),
		agent.AddAction(b, "heap", func(context.Context, agent.NoArgs) (uint64, error) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapInuse, nil
		}),
		agent.AddAction(b, "pid", func(context.Context, agent.NoArgs) (int, error) { return os.Getpid(), nil }),
	)
}

// payloadEnv is a shared-memory exchange with this process's arena store
// (and a wrapper over them), and Payload agents in their own processes.
type payloadEnv struct {
	ctx context.Context
	x   *exchange.SHM
	a   *proxystore.Arena
	wx  *proxystore.Exchange
}

func newPayloadEnv(t *testing.T, timeout time.Duration) *payloadEnv {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	root := filepath.Join(t.TempDir(), "root")
	x, err := exchange.Open("payload", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	a, err := proxystore.OpenArena(x.Dir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	wx := proxystore.Wrap(x, a, proxystore.WithThreshold(proxyThreshold))
	t.Cleanup(func() { wx.Close() })
	return &payloadEnv{ctx: ctx, x: x, a: a, wx: wx}
}

// launch starts a Payload agent in its own process, serving on an exchange
// wrapped as mode says ("transparent", "manual", or "" for no wrapper and
// no store), and returns a handle from a client of cx.
func (e *payloadEnv) launch(t *testing.T, mode string, cx exchange.Exchange) *agent.Handle {
	t.Helper()
	l := agent.NewProcessLauncher(e.x)
	l.Env = []string{envProxyMode + "=" + mode}
	m, err := agent.NewManager(e.ctx, cx, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.CloseTimeout(10 * time.Second) })
	h, err := m.Launch(e.ctx, "Payload")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func shmFree(t *testing.T, dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// TestBlobCall passes Blob arguments and results of growing size to an
// agent process and back through agent.Call, checked by checksum: 512 MiB
// in the normal run, 2 GiB (or the largest /dev/shm holds) with
// SHMEX_TEST_LARGE=1. The agent reads the argument in place (a view, no
// copy) and lends its result from its own arena, which this process reads
// in place; the agent's heap does not grow with the payload.
func TestBlobCall(t *testing.T) {
	e := newPayloadEnv(t, 5*time.Minute)
	h := e.launch(t, "transparent", e.wx)
	sizes := []int{0, 100, 5000, 3 << 20, 512 << 20}
	if os.Getenv(envLargeTests) != "" {
		big := int64(2 << 30)
		for big > 512<<20 && 2*big+(256<<20) > shmFree(t, e.x.Dir()) {
			big /= 2
		}
		if big > 512<<20 {
			sizes = append(sizes, int(big))
		} else {
			t.Logf("/dev/shm holds %d bytes: no case above 512 MiB", shmFree(t, e.x.Dir()))
		}
	}
	heap0, err := agent.Call[uint64](e.ctx, h, "heap", agent.NoArgs{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		in, err := proxystore.AllocBlob(e.ctx, e.a, n)
		if err != nil {
			t.Fatalf("AllocBlob(%d): %v", n, err)
		}
		fillFast(in.Bytes(), 7)
		want := crcOf(in.Bytes())
		got, err := agent.Call[uint64](e.ctx, h, "crc", in)
		if err != nil || got != want {
			t.Fatalf("crc of a %d-byte Blob = %x, %v; want %x", n, got, err, want)
		}
		in.Release()

		out, err := agent.Call[proxystore.Blob](e.ctx, h, "make", uint64(n))
		if err != nil {
			t.Fatalf("make(%d): %v", n, err)
		}
		wantOut := make([]byte, min(n, 64<<20))
		fillFast(wantOut, byte(n))
		b := out.Bytes()
		if len(b) != n || (n > 0 && !out.Received()) || crcOf(b[:len(wantOut)]) != crcOf(wantOut) {
			t.Fatalf("make(%d) = %d bytes (received %v)", n, len(b), out.Received())
		}
		if err := out.Release(); err != nil {
			t.Fatal(err)
		}
	}
	heap1, err := agent.Call[uint64](e.ctx, h, "heap", agent.NoArgs{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent heap in use: %d KiB before, %d KiB after payloads up to %d MiB", heap0>>10, heap1>>10, sizes[len(sizes)-1]>>20)
	if heap1 > heap0+32<<20 {
		t.Fatalf("the agent's heap grew from %d to %d bytes: a payload was copied", heap0, heap1)
	}
	// Everything this process lent was used and reclaimed; every view it
	// took was released.
	if st := e.a.Stats(); st.Views != 0 {
		t.Fatalf("arena stats %+v: views left", st)
	}
}

// TestBytesCall: plain []byte arguments and results of any size through
// the wrapper (beyond exchange.MaxPayloadSize: the 16 MiB cap applies to
// what goes on a ring, not to what is proxied), 512 MiB with
// SHMEX_TEST_LARGE=1.
func TestBytesCall(t *testing.T) {
	e := newPayloadEnv(t, 5*time.Minute)
	h := e.launch(t, "transparent", e.wx)
	sizes := []int{10, 5000, exchange.MaxPayloadSize + 1, 40 << 20}
	if os.Getenv(envLargeTests) != "" {
		sizes = append(sizes, 512<<20)
	}
	for _, n := range sizes {
		in := make([]byte, n)
		fillFast(in, 3)
		got, err := agent.Call[uint64](e.ctx, h, "crcBytes", in)
		if err != nil || got != crcOf(in) {
			t.Fatalf("crcBytes of %d bytes = %x, %v; want %x", n, got, err, crcOf(in))
		}
		out, err := agent.Call[[]byte](e.ctx, h, "makeBytes", uint64(n))
		want := make([]byte, n)
		fillFast(want, byte(n))
		if err != nil || crcOf(out) != crcOf(want) {
			t.Fatalf("makeBytes(%d) = %d bytes, %v", n, len(out), err)
		}
	}
}

// TestUnwrappedTooLarge: without the wrapper, a payload over the inline
// limit is refused, and the error says how to send it.
func TestUnwrappedTooLarge(t *testing.T) {
	e := newPayloadEnv(t, time.Minute)
	h := e.launch(t, "transparent", e.x)
	_, err := agent.Call[uint64](e.ctx, h, "crcBytes", make([]byte, exchange.MaxPayloadSize+1))
	if !errors.Is(err, exchange.ErrMessageTooLarge) {
		t.Fatalf("a 16 MiB argument without the wrapper: %v", err)
	}
	t.Logf("error: %v", err)
}

// TestBlobMixedOptions: the two sides of a call choose independently
// between Blob and []byte, and between a wrapper that resolves by copy, one
// that resolves manually, and no wrapper at all: every combination agrees,
// or fails with an error that says why.
func TestBlobMixedOptions(t *testing.T) {
	e := newPayloadEnv(t, 3*time.Minute)
	manualX := proxystore.Wrap(e.x, e.a, proxystore.WithThreshold(proxyThreshold), proxystore.WithResolveMode(proxystore.ResolveManual))
	type client struct {
		name string
		x    exchange.Exchange
	}
	clients := []client{{"copy", e.wx}, {"manual", manualX}, {"unwrapped", e.x}}
	agents := map[string]*agent.Handle{}
	for _, mode := range []string{"transparent", "manual"} {
		agents[mode] = e.launch(t, mode, e.wx)
	}
	const n = 1 << 20 // over the mailboxes' largest record (a quarter of 256 KiB)
	payload := make([]byte, n)
	fillFast(payload, 9)
	want := crcOf(payload)
	for _, c := range clients {
		cl, err := agent.NewClient(e.ctx, c.x)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for mode, ah := range agents {
			h := cl.Handle(ah.AgentID())
			name := c.name + " client, " + mode + " agent"
			// A Blob to an action that takes a Blob, and to one that takes []byte.
			for _, action := range []string{"crc", "crcBytes"} {
				in, err := proxystore.NewBlob(e.ctx, e.a, payload)
				if err != nil {
					t.Fatal(err)
				}
				got, err := agent.Call[uint64](e.ctx, h, action, in)
				if err != nil || got != want {
					t.Fatalf("%s: Blob to %s = %x, %v", name, action, got, err)
				}
			}
			// []byte to an action that takes a Blob: over the wrapper it
			// travels as a proxied value that the Blob reads in place;
			// unwrapped, the 1 MiB does not fit a mailbox record.
			got, err := agent.Call[uint64](e.ctx, h, "crc", payload)
			if c.name == "unwrapped" {
				if !errors.Is(err, exchange.ErrMessageTooLarge) {
					t.Fatalf("%s: []byte to crc = %v", name, err)
				}
			} else if err != nil || got != want {
				t.Fatalf("%s: []byte to crc = %x, %v", name, got, err)
			}
			// Results: a Blob result read as []byte or Blob; a []byte
			// result read as Blob.
			outBytes, err := agent.Call[[]byte](e.ctx, h, "make", uint64(n))
			if err != nil || len(outBytes) != n {
				t.Fatalf("%s: Blob result as []byte: %d bytes, %v", name, len(outBytes), err)
			}
			outBlob, err := agent.Call[proxystore.Blob](e.ctx, h, "makeBytes", uint64(n))
			if err != nil || crcOf(outBlob.Bytes()) != crcOf(outBytes) {
				t.Fatalf("%s: []byte result as Blob: %v", name, err)
			}
			outBlob.Release()
			// A msgp struct with a Blob field.
			data, err := proxystore.NewBlob(e.ctx, e.a, payload)
			if err != nil {
				t.Fatal(err)
			}
			s, err := agent.Call[string](e.ctx, h, "label", Labeled{Name: "x", Data: data})
			if err != nil || s != fmt.Sprintf("x:%d", want) {
				t.Fatalf("%s: label = %q, %v", name, s, err)
			}
		}
	}
	// A Blob to an action that takes something else: a clear error.
	in, err := proxystore.NewBlob(e.ctx, e.a, payload)
	if err != nil {
		t.Fatal(err)
	}
	_, err = agent.Call[uint64](e.ctx, agents["transparent"], "heap", in)
	if !errors.Is(err, agent.ErrBadArguments) {
		t.Fatalf("a Blob to an action without arguments: %v", err)
	}
	// An agent process without a store cannot read a Blob, and says so.
	bare := e.launch(t, "", e.wx)
	_, err = agent.Call[uint64](e.ctx, bare, "crc", in)
	if !errors.Is(err, agent.ErrBadArguments) || !strings.Contains(err.Error(), "no store") {
		t.Fatalf("a Blob to an agent without a store: %v", err)
	}
	in.Release()
}

// TestBlobBadProxies: forged and stale proxies inside a Blob (alone or in a
// struct) are refused with errors, and the agent keeps serving.
func TestBlobBadProxies(t *testing.T) {
	e := newPayloadEnv(t, 2*time.Minute)
	h := e.launch(t, "manual", e.wx)
	good, err := proxystore.NewBlob(e.ctx, e.a, []byte("some bytes"), proxystore.WithLifetime(proxystore.Owned))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Release()
	enc, err := good.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := good.Proxy()
	forge := func(f func(*proxystore.Proxy)) []byte {
		q := p
		f(&q)
		// Encode a Blob's proxy by hand: the layout of proxy_layout.go.
		out := append([]byte(nil), enc...)
		binary.BigEndian.PutUint64(out[3+24:], q.Segment)
		binary.BigEndian.PutUint64(out[3+32:], q.Offset)
		binary.BigEndian.PutUint64(out[3+40:], q.Length)
		binary.BigEndian.PutUint64(out[3+48:], q.Generation)
		return out
	}
	stale, err := proxystore.NewBlob(e.ctx, e.a, []byte("gone"))
	if err != nil {
		t.Fatal(err)
	}
	staleEnc, err := stale.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := agent.Call[uint64](e.ctx, h, "crc", stale); err != nil || got != crcOf([]byte("gone")) {
		t.Fatalf("crc = %v, %v", got, err)
	}
	for name, tc := range map[string]struct {
		args []byte
		want string
	}{
		"offset out of range": {forge(func(q *proxystore.Proxy) { q.Offset = 1 << 40 }), "bad proxy"},
		"misaligned offset":   {forge(func(q *proxystore.Proxy) { q.Offset += 8 }), "bad proxy"},
		"wrong length":        {forge(func(q *proxystore.Proxy) { q.Length = 1 << 20 }), "bad proxy"},
		"wrong generation":    {forge(func(q *proxystore.Proxy) { q.Generation += 1000 }), "stale proxy"},
		"unknown segment":     {forge(func(q *proxystore.Proxy) { q.Segment ^= 0x5a5a }), "arena segment"},
		"used single-use":     {staleEnc, "stale proxy"},
		"bad layout version":  {append([]byte{0xc7, 56, 80, 9}, enc[4:]...), "layout version"},
	} {
		f, err := h.ActionRaw(e.ctx, "crc", tc.args)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Wait(e.ctx)
		var re *exchange.RemoteError
		if !errors.As(err, &re) || !errors.Is(err, agent.ErrBadArguments) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want a bad-arguments error about %q", name, err, tc.want)
		}
		// The same inside a struct.
		raw := msgp.AppendMapHeader(nil, 2)
		raw = msgp.AppendString(raw, "Name")
		raw = msgp.AppendString(raw, "x")
		raw = msgp.AppendString(raw, "Data")
		raw = append(raw, tc.args...)
		if f, err = h.ActionRaw(e.ctx, "label", raw); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Wait(e.ctx); !errors.Is(err, agent.ErrBadArguments) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s in a struct: %v", name, err)
		}
	}
	if got, err := agent.Call[uint64](e.ctx, h, "crc", good); err != nil || got != crcOf([]byte("some bytes")) {
		t.Fatalf("after the bad proxies: %v, %v", got, err)
	}
}

// TestBlobRetainAndForward: an action keeps a Blob past its return with
// Retain; sending on a received single-use Blob is a clear error.
func TestBlobRetainAndForward(t *testing.T) {
	e := newPayloadEnv(t, time.Minute)
	h := e.launch(t, "transparent", e.wx)
	in, err := proxystore.NewBlob(e.ctx, e.a, []byte("kept for later"))
	if err != nil {
		t.Fatal(err)
	}
	want := crcOf([]byte("kept for later"))
	if got, err := agent.Call[uint64](e.ctx, h, "keep", in); err != nil || got != want {
		t.Fatalf("keep = %v, %v", got, err)
	}
	if got, err := agent.Call[uint64](e.ctx, h, "kept", agent.NoArgs{}); err != nil || got != want {
		t.Fatalf("kept = %v, %v", got, err)
	}
	// The agent's release evicted the single-use payload; the owner
	// reclaims it in its background pass.
	for deadline := time.Now().Add(30 * time.Second); e.a.Stats().Blocks != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d blocks left after the agent released its view", e.a.Stats().Blocks)
		}
	}
	in, err = proxystore.NewBlob(e.ctx, e.a, []byte("echo"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Call[proxystore.Blob](e.ctx, h, "echo", in); err == nil || !strings.Contains(err.Error(), "cannot be sent on") {
		t.Fatalf("echo of a single-use Blob: %v", err)
	}
}

// TestBlobOwnerKilled: this process holds a view of a Blob lent by an agent
// process; the agent is killed. The view stays readable; a new decode of
// the same proxy fails with ErrOwnerDead.
func TestBlobOwnerKilled(t *testing.T) {
	e := newPayloadEnv(t, time.Minute)
	h := e.launch(t, "transparent", e.wx)
	const n = 8 << 20
	out, err := agent.Call[proxystore.Blob](e.ctx, h, "makeOwned", uint64(n))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	want := crcOf(out.Bytes())
	enc, err := out.MarshalMsg(nil) // owned: may be sent on, and decoded again
	if err != nil {
		t.Fatal(err)
	}
	pid, err := agent.Call[int](e.ctx, h, "pid", agent.NoArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var again proxystore.Blob
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := again.UnmarshalMsg(enc)
		if errors.Is(err, proxystore.ErrOwnerDead) {
			break
		}
		if err == nil {
			again.Release()
		}
		if time.Now().After(deadline) {
			t.Fatalf("decode after the owner's death: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if crcOf(out.Bytes()) != want {
		t.Fatal("the view changed after its owner died")
	}
}

// TestBlobSliceInProcess: Blobs in a slice argument, on the in-process
// exchange with a MemStore: each is read in place and released when the
// action returns (single use: evicted from the store).
func TestBlobSliceInProcess(t *testing.T) {
	ctx := t.Context()
	x := exchange.NewLocal()
	defer x.Close()
	store := proxystore.NewMemStore()
	defer store.Close()
	b := agent.NewBehavior("Slices")
	if err := agent.AddAction(b, "total", func(_ context.Context, in []proxystore.Blob) (int, error) {
		n := 0
		for _, bl := range in {
			if !bl.Received() {
				return 0, errors.New("a copy")
			}
			n += bl.Size()
		}
		return n, nil
	}); err != nil {
		t.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		t.Fatal(err)
	}
	go rt.Run(ctx)
	defer func() { rt.Shutdown(); <-rt.Done() }()
	var in []proxystore.Blob
	for _, n := range []int{10, 2000, 70000} {
		bl, err := proxystore.NewBlob(ctx, store, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, bl)
	}
	got, err := agent.Call[int](ctx, rt.Handle(rt.ID()), "total", in)
	if err != nil || got != 72010 {
		t.Fatalf("total = %d, %v", got, err)
	}
	if store.Len() != 0 {
		t.Fatalf("%d payloads left: the action's Blobs were not released", store.Len())
	}
}

// TestBlobDecodeFailureReleases: a result that fails to decode after one of
// its Blobs resolved leaves no view behind.
func TestBlobDecodeFailureReleases(t *testing.T) {
	ctx := t.Context()
	x := exchange.NewLocal()
	defer x.Close()
	store := proxystore.NewMemStore()
	defer store.Close()
	b := agent.NewBehavior("Broken")
	// The raw result: a Labeled whose Data resolves, then a field of the
	// wrong type.
	if err := b.AddRawAction("broken", func(ctx context.Context, _ []byte, out []byte) ([]byte, error) {
		bl, err := proxystore.NewBlob(ctx, store, []byte("resolved first"))
		if err != nil {
			return out, err
		}
		out = msgp.AppendMapHeader(out, 2)
		out = msgp.AppendString(out, "Data")
		if out, err = bl.MarshalMsg(out); err != nil {
			return out, err
		}
		out = msgp.AppendString(out, "Name")
		return msgp.AppendInt(out, 3), nil
	}); err != nil {
		t.Fatal(err)
	}
	rt, err := agent.NewRuntime(ctx, x, b)
	if err != nil {
		t.Fatal(err)
	}
	go rt.Run(ctx)
	defer func() { rt.Shutdown(); <-rt.Done() }()
	if _, err := agent.Call[Labeled](ctx, rt.Handle(rt.ID()), "broken", agent.NoArgs{}); err == nil {
		t.Fatal("a result with a wrong field decoded")
	}
	if store.Len() != 0 {
		t.Fatal("the Blob resolved before the failure was not released")
	}
}
