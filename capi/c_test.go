//go:build linux && cgo

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/capi/capitest"
	"github.com/shmex/shmex/exchange"
	"github.com/tinylib/msgp/msgp"
)

func TestMain(m *testing.M) {
	code := m.Run()
	capitest.Cleanup()
	os.Exit(code)
}

// runProgram runs a test program with a bound on its time and fails t with
// its output when it exits non-zero.
func runProgram(t *testing.T, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(prog), err, out)
	}
	return string(out)
}

// TestC runs the C tests of the ABI (testdata/abi_test.c) against a Go
// agent in this process: bad handles and arguments, calls, futures,
// timeouts, remote errors, loans and proxies both ways, threads, an agent
// served from C, the raw mailbox interface, the MessagePack helpers.
func TestC(t *testing.T) {
	lib := capitest.Library(t)
	prog := capitest.CompileC(t, lib, false, "abi_test", "testdata/abi_test.c")
	root := capitest.Root(t)
	calc := capitest.ServeCalc(t, root, "c")
	out := runProgram(t, prog, root, "c", calc.ID.String())
	for _, name := range []string{"version", "mp", "bad_input", "calls", "payloads", "threads", "agent"} {
		if !strings.Contains(out, "ok "+name+"\n") {
			t.Errorf("test %s did not pass", name)
		}
	}
	if !strings.HasSuffix(out, "PASS\n") {
		t.Errorf("output:\n%s", out)
	}
}

// TestExample builds examples/client.c statically (libshmex.a) and
// dynamically, and runs both against a Go agent.
func TestExample(t *testing.T) {
	capitest.Library(t) // skips (or fails under CI) for want of a tool
	lib, err := capitest.CachedArchive()
	if err != nil {
		t.Fatal(err)
	}
	root := capitest.Root(t)
	capitest.ServeCalc(t, root, "example")
	for _, static := range []bool{true, false} {
		prog := capitest.CompileC(t, lib, static, "client", "examples/client.c")
		out := runProgram(t, prog, "example", root)
		if !strings.Contains(out, "2 + 40 = 42\n") || !strings.Contains(out, "sum of 1000000 halves = 500000.0") {
			t.Fatalf("static %v: output:\n%s", static, out)
		}
	}
}

// TestGoClientToCAgent calls an agent served by a C program (shmex_agent_serve)
// from a Go client, and shuts it down.
func TestGoClientToCAgent(t *testing.T) {
	lib := capitest.Library(t)
	prog := capitest.CompileC(t, lib, false, "abi_test", "testdata/abi_test.c")
	root := capitest.Root(t)
	x, err := exchange.Open("cagent", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, root, "cagent", "serve")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewReader(stdout)
	line, err := lines.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the agent's id: %v", err)
	}
	id, err := exchange.ParseEntityID(strings.TrimSpace(strings.TrimPrefix(line, "ready ")))
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	cl, err := agent.NewClient(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	h := cl.Handle(id)
	res, err := h.ActionRaw(ctx, "upper", msgp.AppendString(nil, "go to c"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := res.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s, _, err := msgp.ReadStringBytes(b); err != nil || s != "GO TO C" {
		t.Fatalf("upper: %q, %v", s, err)
	}
	n, err := agent.Call[int64](ctx, h, "count", agent.NoArgs{})
	if err != nil || n != 2 {
		t.Fatalf("count: %d, %v", n, err)
	}
	var re *exchange.RemoteError
	if _, err := agent.Call[int64](ctx, h, "nope", agent.NoArgs{}); !errors.As(err, &re) || re.Kind != "UnknownActionError" {
		t.Fatalf("unknown action: %v", err)
	}
	if _, err := h.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(lines)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the C agent: %v\n%s", err, rest)
	}
}

// TestMPReaderFuzz runs the MessagePack reader of mp.c (the helpers C and
// Fortran callers decode results with) on random and mutated input, built
// with AddressSanitizer and UBSan: a read outside the input fails.
func TestMPReaderFuzz(t *testing.T) {
	gcc, err := capitest.Tool("gcc", "gcc")
	capitest.Need(t, err)
	prog := filepath.Join(t.TempDir(), "mp_fuzz")
	out, err := exec.Command(gcc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
		"-fno-sanitize-recover=all", "-I", ".", "-o", prog, "testdata/mp_fuzz.c").CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	iters := "200000"
	if testing.Short() {
		iters = "20000"
	}
	if out := runProgram(t, prog, iters, strconv.FormatInt(time.Now().UnixNano(), 10)); !strings.HasPrefix(out, "PASS") {
		t.Fatalf("output:\n%s", out)
	}
}
