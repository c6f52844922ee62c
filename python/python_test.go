// Package python_test drives the tests of the Python bindings (python/shmex)
// from go test: the pytest suite (Python to Go, Python to Python), a Go
// client calling a Python agent, and a Python agent killed under a Go
// caller's pending calls.
package python_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/capi/capitest"
	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/tinylib/msgp/msgp"
)

func TestMain(m *testing.M) {
	code := m.Run()
	capitest.Cleanup()
	os.Exit(code)
}

// pythonEnv returns the environment of a Python process of the tests.
func pythonEnv(t *testing.T, lib *capitest.Lib, extra ...string) []string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"SHMEX_LIBRARY="+lib.Shared,
		"PYTHONPATH="+dir,
		"PYTHONDONTWRITEBYTECODE=1",
		"SHMEX_TEST_DRIVEN=1",
	)
	return append(env, extra...)
}

// need returns the library and an interpreter with msgpack, numpy and
// pytest, or skips (fails under CI=true).
func need(t *testing.T) (*capitest.Lib, *capitest.Python) {
	t.Helper()
	py, err := capitest.FindPytest()
	capitest.Need(t, err)
	if !py.NumPy {
		capitest.Need(t, errors.New("numpy is missing from "+py.Path+" (apt-get install python3-numpy)"))
	}
	return capitest.Library(t), py
}

// TestPytest runs python/tests with a Go Calc agent served by this process:
// Python clients calling a Go agent (calls, futures, errors, timeouts, loans
// summed in place by Go, results lent by Go read in place by numpy,
// threads), and Python agents in this and another Python process.
func TestPytest(t *testing.T) {
	lib, py := need(t)
	root := capitest.Root(t)
	calc := capitest.ServeCalc(t, root, "pytest-go")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py.Path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "tests")
	cmd.Env = pythonEnv(t, lib, "SHMEX_TEST_ROOT="+root, "SHMEX_TEST_CALC="+calc.Name+" "+calc.ID.String())
	out, err := cmd.CombinedOutput()
	t.Logf("%s (%s):\n%s", py.Path, py.Version, out)
	if err != nil {
		t.Fatalf("pytest: %v", err)
	}
	if strings.Contains(string(out), " skipped") && capitest.CI() {
		t.Fatalf("CI=true: pytest skipped tests")
	}
}

// pyAgent is a PyCalc agent (python/tests/agents.py) in a Python process.
type pyAgent struct {
	cmd *exec.Cmd
	id  exchange.EntityID
	out *bufio.Reader
}

func startPyAgent(t *testing.T, lib *capitest.Lib, py *capitest.Python, root, name string) *pyAgent {
	t.Helper()
	cmd := exec.Command(py.Path, "-m", "tests.agents", name, root)
	cmd.Env = pythonEnv(t, lib)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	p := &pyAgent{cmd: cmd, out: bufio.NewReader(stdout)}
	line, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("the Python agent did not start: %v", err)
	}
	if p.id, err = exchange.ParseEntityID(strings.TrimSpace(strings.TrimPrefix(line, "ready "))); err != nil {
		t.Fatalf("the Python agent said %q: %v", line, err)
	}
	return p
}

// TestGoClientToPythonAgent calls a Python agent from Go: plain actions,
// errors with their kinds, a Go loan summed by Python in place, and a
// result lent by Python read by Go in place.
func TestGoClientToPythonAgent(t *testing.T) {
	lib, py := need(t)
	root := capitest.Root(t)
	x, err := exchange.Open("go-to-py", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	arena, err := proxystore.OpenArena(x.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	p := startPyAgent(t, lib, py, root, "go-to-py")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	h := cl.Handle(p.id)

	ids, err := cl.Discover(ctx, "PyCalc", true)
	if err != nil || len(ids) != 1 || ids[0] != p.id {
		t.Fatalf("discover PyCalc: %v, %v", ids, err)
	}
	args := msgp.AppendInt64(msgp.AppendInt64(msgp.AppendArrayHeader(nil, 2), 20), 22)
	if n, err := call[int64](ctx, h, "add", args); err != nil || n != 42 {
		t.Fatalf("add: %d, %v", n, err)
	}
	var re *exchange.RemoteError
	if _, err := call[int64](ctx, h, "nope", msgp.AppendNil(nil)); !errors.As(err, &re) || re.Kind != "UnknownActionError" {
		t.Fatalf("unknown action: %v", err)
	}
	fargs := msgp.AppendString(msgp.AppendString(msgp.AppendArrayHeader(nil, 2), "ValueError"), "from go")
	if _, err := call[int64](ctx, h, "fail", fargs); !errors.As(err, &re) || re.Kind != "ValueError" || !strings.Contains(re.Message, "from go") {
		t.Fatalf("fail: %v", err)
	}

	// A Go Blob of float64s, summed by the Python agent with numpy in place.
	const n = 1 << 16
	bl, err := proxystore.AllocBlob(ctx, arena, 8*n)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	for i, b := 0, bl.Bytes(); i < n; i++ {
		v := float64(i) / 3
		want += v
		putF64(b[8*i:], v)
	}
	enc, err := bl.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := call[float64](ctx, h, "sum", enc)
	if err != nil || math.Abs(sum-want) > 1e-6*want {
		t.Fatalf("sum: %v, %v; want %v", sum, err, want)
	}

	// A result lent by the Python agent, read in place here.
	res, err := h.ActionRaw(ctx, "make", msgp.AppendInt64(nil, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := res.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v proxystore.Blob
	if _, err := v.UnmarshalMsg(raw); err != nil || !v.Received() {
		t.Fatalf("make returned %x: %v", raw, err)
	}
	for i, b := range v.Bytes() {
		if b != byte(i%251) {
			t.Fatalf("byte %d is %d", i, b)
		}
	}
	v.Release()

	// Through a proxy-store wrapper, arguments over its threshold travel as
	// proxies of form value: a []byte arrives in Python as a payload of its
	// bytes, another value decoded.
	wx := proxystore.Wrap(x, arena, proxystore.WithThreshold(1024))
	wcl, err := agent.NewClient(ctx, wx)
	if err != nil {
		t.Fatal(err)
	}
	defer wcl.Close()
	wh := wcl.Handle(p.id)
	if n, err := agent.Call[int64](ctx, wh, "length", make([]byte, 100<<10)); err != nil || n != 100<<10 {
		t.Fatalf("length of a proxied []byte: %d, %v", n, err)
	}
	list := msgp.AppendArrayHeader(nil, 3000)
	for i := range 3000 {
		list = msgp.AppendInt64(list, int64(i))
	}
	res, err = wh.ActionRaw(ctx, "echo", list)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err = res.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	nl, rest, err := msgp.ReadArrayHeaderBytes(raw)
	for i := 0; err == nil && i < int(nl); i++ {
		var v int64
		if v, rest, err = msgp.ReadInt64Bytes(rest); err == nil && v != int64(i) {
			err = fmt.Errorf("element %d is %d", i, v)
		}
	}
	if err != nil || nl != 3000 {
		t.Fatalf("echo of a proxied array: %d elements, %v", nl, err)
	}

	if _, err := h.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(p.out)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("the Python agent: %v\n%s", err, out)
	}
}

// call calls action with raw arguments and decodes a result of type T.
func call[T int64 | float64](ctx context.Context, h *agent.Handle, action string, args []byte) (T, error) {
	f, err := h.ActionRaw(ctx, action, args)
	if err != nil {
		return 0, err
	}
	b, err := f.Wait(ctx)
	if err != nil {
		return 0, err
	}
	var v T
	switch p := any(&v).(type) {
	case *int64:
		*p, _, err = msgp.ReadInt64Bytes(b)
	case *float64:
		*p, _, err = msgp.ReadFloat64Bytes(b)
	}
	return v, err
}

func putF64(b []byte, v float64) {
	u := math.Float64bits(v)
	for i := range 8 {
		b[i] = byte(u >> (8 * i))
	}
}

// TestPythonAgentKilled kills a Python agent (SIGKILL) while a Go client has
// calls in flight to it: they fail with agent.ErrAgentTerminated, through
// the exchange's liveness locks and the client's status poll (about 1.1 s
// by default), not by the callers' deadline.
func TestPythonAgentKilled(t *testing.T) {
	lib, py := need(t)
	root := capitest.Root(t)
	x, err := exchange.Open("py-killed", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	p := startPyAgent(t, lib, py, root, "py-killed")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	h := cl.Handle(p.id)
	if _, err := h.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	var futures []*agent.Future[[]byte]
	for range 4 {
		f, err := h.ActionRaw(ctx, "sleep", msgp.AppendInt64(nil, 600_000))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	// The first sleep runs in the agent; the others wait in its mailbox.
	killed := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i, f := range futures {
		_, err := f.Wait(ctx)
		if !errors.Is(err, agent.ErrAgentTerminated) {
			t.Fatalf("call %d: %v, want ErrAgentTerminated", i, err)
		}
	}
	t.Logf("the calls in flight failed %v after the SIGKILL (documented bound: status poll 100 ms + grace 1 s)", time.Since(killed))
	if st, err := x.Status(ctx, p.id); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("status of the dead agent: %v, %v", st, err)
	}
}
