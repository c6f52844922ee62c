//go:build linux

package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shmex/shmex/exchange"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	ChildMain()
	os.Exit(m.Run())
}

// Roles used only by the tests.
func init() {
	RegisterChild("test-echo", func(args []string) error {
		if err := Ready(strings.Join(args, ",")); err != nil {
			return err
		}
		for {
			l, err := Listen()
			if err != nil {
				return err
			}
			if l == "quit" {
				return nil
			}
			Tell("echo %s", l)
		}
	})
	// test-placement tells its CPU set and GOMAXPROCS.
	RegisterChild("test-placement", func(args []string) error {
		cpus, err := threadCPUs()
		if err != nil {
			return err
		}
		return Ready(fmt.Sprintf("%s %d", cpus, runtime.GOMAXPROCS(0)))
	})
	RegisterChild("test-fail", func(args []string) error {
		return errors.New("deliberate failure")
	})
	RegisterChild("test-hang", func(args []string) error {
		Ready("")
		select {}
	})
	// test-silent-agent registers an agent in exchange args[1] under root
	// args[0], says its id, and never answers.
	RegisterChild("test-silent-agent", func(args []string) error {
		x, err := exchange.Open(args[1], exchange.WithRoot(args[0]))
		if err != nil {
			return err
		}
		aid, err := x.RegisterAgent(context.Background(), exchange.Behavior{Name: "Silent"})
		if err != nil {
			return err
		}
		if _, err := x.Mailbox(context.Background(), aid); err != nil {
			return err
		}
		Ready(aid.UUID.String())
		select {}
	})
	// test-parent starts a grandchild and reports its pid; the test kills
	// this process and checks that the grandchild dies with it.
	RegisterChild("test-parent", func(args []string) error {
		env := NewEnv(QuickConfig())
		gc, err := env.StartChild(context.Background(), "test-hang")
		if err != nil {
			return err
		}
		if _, err := gc.Expect(context.Background(), "ready"); err != nil {
			return err
		}
		Ready(strconv.Itoa(gc.Pid()))
		select {}
	})
}

// testEnv returns a quick environment closed at the end of the test.
func testEnv(t testing.TB, mod ...func(*Config)) *Env {
	cfg := QuickConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, f := range mod {
		f(&cfg)
	}
	env := NewEnv(cfg)
	t.Cleanup(func() { env.Close() })
	return env
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// checkRows checks that rows hold each metric of s exactly once with a
// plausible value, or a skip reason.
func checkRows(t *testing.T, s Scenario, rows []Row) {
	t.Helper()
	for _, m := range s.Metrics {
		var found []Row
		for _, r := range rows {
			if r.Metric == m {
				found = append(found, r)
			}
		}
		if len(found) != 1 {
			t.Errorf("metric %s: %d rows, want 1", m, len(found))
			continue
		}
		r := found[0]
		if r.Error != "" {
			t.Errorf("metric %s: error %s", m, r.Error)
		}
		if r.Skipped {
			if r.Note == "" {
				t.Errorf("metric %s: skipped without a reason", m)
			}
			continue
		}
		// A share of CPU may be zero; every other figure is positive.
		if !(r.Value > 0 || r.Unit == "%" && r.Value == 0) || math.IsInf(r.Value, 0) {
			t.Errorf("metric %s: value %v", m, r.Value)
		}
		if r.Unit == "" {
			t.Errorf("metric %s: no unit", m)
		}
		if r.Unit == "ns" && (r.Hist == nil || r.Hist.Count == 0 || r.Hist.P50 <= 0 || r.Hist.Max < r.Hist.P999) {
			t.Errorf("metric %s: bad histogram %+v", m, r.Hist)
		}
	}
	if len(rows) != len(s.Metrics) {
		t.Errorf("%d rows for %d metrics", len(rows), len(s.Metrics))
	}
}

// TestScenarios runs every registered scenario at smoke-test sizes: children
// start and stop, every declared metric is reported, the scratch directory
// goes away.
func TestScenarios(t *testing.T) {
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			env := testEnv(t)
			rows, err := s.Run(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			checkRows(t, s, rows)
			env.mu.Lock()
			dir, children := env.dir, slices.Clone(env.children)
			env.mu.Unlock()
			for _, c := range children {
				select {
				case <-c.Done():
				case <-time.After(env.ChildTimeout):
					t.Errorf("child %s (pid %d) still running after its scenario", c.Role, c.Pid())
				}
			}
			env.Close()
			if dir != "" {
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("scratch directory %s left behind: %v", dir, err)
				}
			}
		})
	}
}

func TestPinned(t *testing.T) {
	env := testEnv(t, func(c *Config) { c.Pin = true })
	if !env.Pin {
		t.Skip("pinning needs two CPUs")
	}
	for _, name := range []string{"limit/shared_word", "limit/futex"} {
		s, _ := Select("^" + name + "$")
		if len(s) != 1 {
			t.Fatalf("no scenario %s", name)
		}
		rows, err := s[0].Run(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rows[0].Note, "pinned") {
			t.Errorf("note %q does not say pinned", rows[0].Note)
		}
	}
}

// threadCPUs describes the CPU sets of this process's threads: the sorted
// distinct sets, each as its CPUs separated by commas, joined with "|".
func threadCPUs() (string, error) {
	tids, err := threads()
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for _, tid := range tids {
		var set unix.CPUSet
		if unix.SchedGetaffinity(tid, &set) != nil {
			continue
		}
		var cpus []string
		for c := 0; c < 1024; c++ {
			if set.IsSet(c) {
				cpus = append(cpus, strconv.Itoa(c))
			}
		}
		seen[strings.Join(cpus, ",")] = true
	}
	return strings.Join(slices.Sorted(maps.Keys(seen)), "|"), nil
}

// OnOneCPU pins this process and its children, every thread, to one CPU
// with GOMAXPROCS 1, and puts everything back afterwards.
func TestOnOneCPU(t *testing.T) {
	env := testEnv(t, func(c *Config) { c.Pin = true })
	before, err := threadCPUs()
	if err != nil {
		t.Fatal(err)
	}
	procs := runtime.GOMAXPROCS(0)
	cpu, _ := env.firstCPU()
	err = env.OnOneCPU(func() error {
		inside, err := threadCPUs()
		if err != nil {
			return err
		}
		if want := strconv.Itoa(cpu); inside != want || runtime.GOMAXPROCS(0) != 1 {
			t.Errorf("inside: threads on %q, GOMAXPROCS %d; want %q and 1", inside, runtime.GOMAXPROCS(0), want)
		}
		c, err := env.StartChild(context.Background(), "test-placement")
		if err != nil {
			return err
		}
		defer c.Close()
		line, err := c.Expect(context.Background(), "ready")
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("%d 1", cpu); line != want {
			t.Errorf("child: %q, want %q", line, want)
		}
		return nil
	})
	if errors.Is(err, errNoOneCPU) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	after, err := threadCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if after != before || runtime.GOMAXPROCS(0) != procs {
		t.Errorf("after: threads on %q, GOMAXPROCS %d; before: %q, %d", after, runtime.GOMAXPROCS(0), before, procs)
	}
	// Outside, a pinned child gets a thread pinned to the other CPU, not
	// the whole process.
	if env.Pin {
		c, err := env.StartChild(context.Background(), "test-placement")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		line, err := c.Expect(context.Background(), "ready")
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(line, " 1") && runtime.NumCPU() > 1 {
			t.Errorf("child outside OnOneCPU: %q", line)
		}
	}
}

func TestRedisMissing(t *testing.T) {
	s, _ := Select("^redis$")
	if len(s) != 1 {
		t.Fatal("no redis scenario")
	}
	check := func(t *testing.T, env *Env, reason string) {
		rows, err := s[0].Run(context.Background(), env)
		if err != nil {
			t.Fatalf("missing redis-server is an error: %v", err)
		}
		checkRows(t, s[0], rows)
		for _, r := range rows {
			if !r.Skipped || !strings.Contains(r.Note, reason) {
				t.Errorf("row %+v: want skipped with %q", r, reason)
			}
		}
	}
	t.Run("path", func(t *testing.T) {
		check(t, testEnv(t, func(c *Config) { c.RedisServer = "/nonexistent/redis-server" }), "not found")
	})
	t.Run("none", func(t *testing.T) {
		check(t, testEnv(t, func(c *Config) { c.RedisServer = "none" }), "disabled")
	})
	t.Run("PATH", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		check(t, testEnv(t), "redis-server not found")
	})
}

func TestSelect(t *testing.T) {
	all, err := Select("")
	if err != nil || len(all) != len(Scenarios()) {
		t.Fatalf("Select(\"\") = %d scenarios, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Rank > all[i].Rank {
			t.Errorf("scenarios out of rank order: %s before %s", all[i-1].Name, all[i].Name)
		}
	}
	got, _ := Select(`^uds\.rtt_ns$`)
	if len(got) != 1 || got[0].Name != "uds" {
		t.Errorf("select by metric: %v", got)
	}
	got, _ = Select(`^limit/`)
	if len(got) != 4 { // shared word, futex, futex on one CPU, memcpy
		t.Errorf("select limits: %d scenarios", len(got))
	}
	if _, err := Select("("); err == nil {
		t.Error("bad expression accepted")
	}
}

func TestRegisterDuplicate(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("duplicate scenario accepted")
		}
	}()
	Register(Scenario{Name: "chan", Metrics: []string{"x.y_ns"}, Run: runChan})
}

func TestRatiosAndOutputs(t *testing.T) {
	r := &Report{Tool: "shmbench", Schema: ReportSchema, Rows: []Row{
		{Metric: "limit.a_ns", Value: 100, Unit: "ns", Hist: &Summary{Count: 3, Mean: 110, P50: 100, P99: 150, P999: 160, Max: 170}},
		{Metric: "x.b_ns", Value: 250, Unit: "ns", CompareTo: "limit.a_ns", Note: "has, a comma"},
		{Metric: "x.c_msgs", Value: 5e6, Unit: "msgs/s", CompareTo: "gone.metric"},
		{Metric: "y.d_ns", Skipped: true, Note: "no server"},
		{Metric: "z.e_ns", Value: 10, Unit: "ns", CompareTo: "y.d_ns"},
		{Metric: "z.f_ns", Error: "boom", CompareTo: "limit.a_ns"},
	}}
	r.ComputeRatios()
	want := []float64{0, 2.5, 0, 0, 0, 0}
	for i, w := range want {
		if r.Rows[i].Ratio != w {
			t.Errorf("%s: ratio %v, want %v", r.Rows[i].Metric, r.Rows[i].Ratio, w)
		}
	}
	if !r.Failed() {
		t.Error("report with an error row not failed")
	}

	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rows) != len(r.Rows) || back.Rows[1].Ratio != 2.5 || back.Rows[0].Hist.P999 != 160 || !back.Rows[3].Skipped {
		t.Errorf("JSON round trip: %+v", back.Rows)
	}

	var cs bytes.Buffer
	if err := r.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(r.Rows)+1 || !slices.Equal(recs[0], CSVHeader) {
		t.Fatalf("CSV: %q", recs)
	}
	if recs[2][11] != "2.5" || recs[2][14] != "has, a comma" || recs[1][8] != "160" || recs[4][12] != "true" {
		t.Errorf("CSV rows: %q", recs[1:])
	}

	var tb bytes.Buffer
	if err := r.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"METRIC", "limit.a_ns", "2.50x", "skipped", "FAILED", "boom"} {
		if !strings.Contains(tb.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tb.String())
		}
	}
}

func TestHuman(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 12.345: "12.35", 812.44: "812.4", 56780: "56780",
		123456: "123.5k", 25.1e6: "25.10M", 9.87e9: "9.870G", 0.5: "0.5000"} {
		if got := Human(v); got != want {
			t.Errorf("Human(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestRunErrorRows(t *testing.T) {
	env := testEnv(t)
	scen := []Scenario{
		{Name: "ok", Metrics: []string{"t.ok_ns"}, Run: func(context.Context, *Env) ([]Row, error) {
			return []Row{{Metric: "t.ok_ns", Value: 2, Unit: "ns"}}, nil
		}},
		{Name: "bad", Metrics: []string{"t.bad_ns", "t.bad2_ns"}, Run: func(context.Context, *Env) ([]Row, error) {
			return []Row{{Metric: "t.bad_ns", Value: 4, Unit: "ns", CompareTo: "t.ok_ns"}}, errors.New("half done")
		}},
	}
	r, err := Run(context.Background(), env, scen, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 3 || r.Rows[1].Ratio != 2 || r.Rows[2].Error != "half done" || r.Rows[2].Scenario != "bad" || !r.Failed() {
		t.Errorf("rows: %+v", r.Rows)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, env, scen, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

func TestChildProtocol(t *testing.T) {
	ctx := context.Background()
	env := testEnv(t)
	c, err := env.StartChild(ctx, "test-echo", "a b", "c")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Expect(ctx, "ready"); err != nil || got != "a b,c" {
		t.Fatalf("ready %q, %v", got, err)
	}
	c.Send("hello")
	if got, err := c.Expect(ctx, "echo"); err != nil || got != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}
	c.Send("x")
	if _, err := c.Expect(ctx, "other"); err == nil {
		t.Fatal("unexpected word accepted")
	}
	c.Send("quit")
	if err := c.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	f, err := env.StartChild(ctx, "test-fail")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Expect(ctx, "ready"); err == nil || !strings.Contains(err.Error(), "deliberate failure") {
		t.Fatalf("failing child: %v", err)
	}
	if err := f.Close(); err == nil {
		t.Error("failing child exited 0")
	}

	u, err := env.StartChild(ctx, "no-such-role")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Expect(ctx, "ready"); err == nil || !strings.Contains(err.Error(), "unknown child role") {
		t.Fatalf("unknown role: %v", err)
	}
}

func TestChildTimeoutAndKill(t *testing.T) {
	ctx := context.Background()
	env := testEnv(t, func(c *Config) { c.ChildTimeout = 300 * time.Millisecond })
	h, err := env.StartChild(ctx, "test-hang")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Expect(ctx, "ready"); err != nil {
		// A race-instrumented child may need longer than the timeout
		// to start; the bound on Expect is what this test checks.
		t.Logf("ready: %v", err)
	}
	t0 := time.Now()
	if _, err := h.Expect(ctx, "never"); err == nil {
		t.Fatal("silent child answered")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Expect waited %v", d)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Expect(ctx2, "never"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Expect: %v", err)
	}
	// The scenario "forgot" to close the child: Close of the Env kills it.
	env.Close()
	select {
	case <-h.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Env.Close left a child running")
	}
	if _, err := env.StartChild(ctx, "test-hang"); err == nil {
		t.Error("StartChild after Close")
	}
}

// TestChildDiesWithParent kills a child that has a grandchild and checks that
// the grandchild dies too (PR_SET_PDEATHSIG).
func TestChildDiesWithParent(t *testing.T) {
	ctx := context.Background()
	env := testEnv(t)
	p, err := env.StartChild(ctx, "test-parent")
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Expect(ctx, "ready")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(got)
	if err != nil {
		t.Fatal(err)
	}
	if !processAlive(pid) {
		t.Fatalf("grandchild %d not running", pid)
	}
	p.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d outlived its parent", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processAlive reports whether pid is a running (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func TestEnvDir(t *testing.T) {
	env := testEnv(t)
	dir, err := env.Dir()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 || !strings.HasPrefix(filepath.Base(dir), "bench-") {
		t.Fatalf("dir %s: %v %v", dir, fi.Mode(), err)
	}
	if again, _ := env.Dir(); again != dir {
		t.Errorf("Dir changed: %s, %s", dir, again)
	}
	env.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir left behind: %v", err)
	}
	if _, err := env.Dir(); err == nil {
		t.Error("Dir after Close")
	}
}

func TestPhaseLoop(t *testing.T) {
	ctx := context.Background()
	n, _, err := Phase{Count: 1000}.Loop(ctx, func() error { return nil })
	if n != 1000 || err != nil {
		t.Errorf("count phase: %d, %v", n, err)
	}
	h := NewHistogram()
	n, _, err = Phase{Count: 10}.TimedLoop(ctx, h, func() error { return nil })
	if n != 10 || err != nil || h.Count() != 10 {
		t.Errorf("timed count phase: %d, %v, %d samples", n, err, h.Count())
	}
	n, el, err := Phase{Duration: 5 * time.Millisecond}.Loop(ctx, func() error { return nil })
	if n == 0 || el < 5*time.Millisecond || err != nil {
		t.Errorf("duration phase: %d in %v, %v", n, el, err)
	}
	boom := errors.New("boom")
	k := 0
	n, _, err = Phase{Count: 100}.Loop(ctx, func() error {
		if k++; k == 7 {
			return boom
		}
		return nil
	})
	if n != 6 || !errors.Is(err, boom) {
		t.Errorf("failing op: %d, %v", n, err)
	}
	if median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 3, 2}) != 2.5 || median(nil) != 0 {
		t.Error("median")
	}
}

// Benchmarks: the scenarios as `go test -bench`, one round trip or one
// message per op.

func benchEnv(b *testing.B) *Env { return benchEnvPin(b, false) }

// benchEnvPin is benchEnv, with the two processes of a pair pinned to
// different CPUs when pin is set. The futex round trips pin: on a VM, a
// wake-up that lands on the waker's own CPU (a context switch, a few
// microseconds) is ten times cheaper than one that crosses to the other,
// halted CPU (an interrupt), and unpinned runs mix the two in proportions
// that differ from one benchmark to the next.
func benchEnvPin(b *testing.B, pin bool) *Env {
	env := NewEnv(Config{ChildTimeout: 30 * time.Second, MemcpyBytes: 256 << 20, Pin: pin})
	b.Cleanup(func() { env.Close() })
	return env
}

// loopRTT runs rt b.N times. For futex round trips it also reports the
// median (p50-ns), which a few wake-ups of the other kind do not move.
func loopRTT(b *testing.B, futex bool, rt func() error) {
	var lat []time.Duration // the first 1M round trips; allocated before the loop, which counts allocations
	if futex {
		lat = make([]time.Duration, 0, 1<<20)
	}
	if !futex { // no clock in the loop: a read costs tens of ns here
		for b.Loop() {
			if err := rt(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	for b.Loop() {
		start := time.Now()
		if err := rt(); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	}
}

func benchPair(b *testing.B, role string, futex bool) {
	env := benchEnvPin(b, futex)
	p, err := startPair(context.Background(), env, role, role)
	if err != nil {
		b.Fatal(err)
	}
	defer p.close(futex)
	rt := p.wordRTT
	if futex {
		rt = p.futexRTT
	}
	unlock := env.LockThread()
	defer unlock()
	loopRTT(b, futex, rt)
}

func BenchmarkLimitSharedWordRTT(b *testing.B) { benchPair(b, "limit-word", false) }

func BenchmarkLimitFutexRTT(b *testing.B) { benchPair(b, "limit-futex", true) }

// benchRingRTT is the ring round trip of a 64-byte record with a child
// process, receivers spinning, sleeping on the futex, or with the default
// strategy (mode spin, park, default; the last two pinned).
func benchRingRTT(b *testing.B, mode string) {
	env := benchEnvPin(b, mode != "spin")
	rp, err := startRingPair(context.Background(), env, mode)
	if err != nil {
		b.Fatal(err)
	}
	defer rp.close()
	unlock := env.LockThread()
	defer unlock()
	loopRTT(b, mode != "spin", rp.rtt)
}

func BenchmarkRingRTTSpin(b *testing.B)  { benchRingRTT(b, "spin") }
func BenchmarkRingRTTFutex(b *testing.B) { benchRingRTT(b, "park") }

// BenchmarkRingRTTDefault is the ring round trip with the default idle
// strategy (ring.Backoff), the two processes pinned to different CPUs:
// against BenchmarkRingRTTSpin, what Backoff costs where spinning pays.
func BenchmarkRingRTTDefault(b *testing.B) { benchRingRTT(b, "default") }

// benchExchangeRTT is the exchange round trip of an ActionRequest with 64
// bytes of arguments and its response, with an agent in a child process.
func benchExchangeRTT(b *testing.B, mode string) {
	env := benchEnvPin(b, mode != "spin")
	benchExchangeLoop(b, env, mode)
}

// benchExchangeLoop times exchange round trips with an echo agent started
// in env, both sides with idle mode mode.
func benchExchangeLoop(b *testing.B, env *Env, mode string) {
	root, err := env.Dir()
	if err != nil {
		b.Fatal(err)
	}
	name := "bench-exchange-" + mode
	x, err := exchange.Open(name, exchange.WithRoot(root), exchangeIdle(mode))
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	ctx := context.Background()
	p, err := startMsgPeer(ctx, env, x, "exchange-echo", root, name, mode)
	if err != nil {
		b.Fatal(err)
	}
	defer p.close(ctx)
	args := make([]byte, MsgSize)
	unlock := env.LockThread()
	defer unlock()
	b.ReportAllocs()
	loopRTT(b, mode != "spin", func() error { return p.call(args, MsgSize) })
}

func BenchmarkExchangeRTTSpin(b *testing.B)  { benchExchangeRTT(b, "spin") }
func BenchmarkExchangeRTTFutex(b *testing.B) { benchExchangeRTT(b, "park") }

// BenchmarkExchangeRTTDefault: the default idle strategy (ring.Backoff),
// processes pinned to different CPUs (see BenchmarkRingRTTDefault).
func BenchmarkExchangeRTTDefault(b *testing.B) { benchExchangeRTT(b, "default") }

// Same-CPU round trips: both processes pinned to one CPU (GOMAXPROCS 1
// each, see Env.OnOneCPU), receivers with the default idle strategy,
// against a raw futex ping-pong placed the same way. Each reports the
// median too (p50-ns).

// onOneCPU runs f inside env.OnOneCPU, skipping the benchmark when this
// machine cannot pin.
func onOneCPU(b *testing.B, env *Env, f func()) {
	err := env.OnOneCPU(func() error { f(); return nil })
	if errors.Is(err, errNoOneCPU) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkLimitFutexRTTSameCPU(b *testing.B) {
	env := benchEnv(b)
	onOneCPU(b, env, func() {
		p, err := startPair(context.Background(), env, "limit-futex", "limit-futex")
		if err != nil {
			b.Fatal(err)
		}
		defer p.close(true)
		loopRTT(b, true, p.futexRTT)
	})
}

func BenchmarkRingRTTSameCPU(b *testing.B) {
	env := benchEnv(b)
	onOneCPU(b, env, func() {
		rp, err := startRingPair(context.Background(), env, "default")
		if err != nil {
			b.Fatal(err)
		}
		defer rp.close()
		loopRTT(b, true, rp.rtt)
	})
}

func BenchmarkExchangeRTTSameCPU(b *testing.B) {
	env := benchEnv(b)
	onOneCPU(b, env, func() { benchExchangeLoop(b, env, "default") })
}

func BenchmarkMemcpy(b *testing.B) {
	env := benchEnv(b)
	src, dst := memcpyBuffers(env.MemcpyBytes)
	b.SetBytes(env.MemcpyBytes)
	for b.Loop() {
		copy(dst, src)
	}
}

func BenchmarkChanRTT(b *testing.B) {
	p := startChanPair()
	defer p.close()
	for b.Loop() {
		p.rtt()
	}
}

// benchRate runs a throughput function for b.N messages and reports msgs/s.
func benchRate(b *testing.B, run func(ctx context.Context, p Phase) (int64, time.Duration, error)) {
	b.ResetTimer()
	n, el, err := run(context.Background(), Phase{Count: int64(b.N)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/el.Seconds(), "msgs/s")
}

func BenchmarkChanThroughput(b *testing.B) { benchRate(b, chanThroughput) }

func benchSocket(b *testing.B, network string, rtt bool) {
	env := benchEnv(b)
	ctx := context.Background()
	srv, err := startSockServer(ctx, env, network)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.close()
	if !rtt {
		benchRate(b, srv.throughput)
		return
	}
	echo, err := srv.echo(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer echo.conn.Close()
	for b.Loop() {
		if err := echo.rtt(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUDSRTT(b *testing.B)        { benchSocket(b, "unix", true) }
func BenchmarkUDSThroughput(b *testing.B) { benchSocket(b, "unix", false) }
func BenchmarkTCPRTT(b *testing.B)        { benchSocket(b, "tcp", true) }
func BenchmarkTCPThroughput(b *testing.B) { benchSocket(b, "tcp", false) }

func benchRedis(b *testing.B, rtt bool) {
	path, skip := FindRedisServer("redis-server")
	if skip != "" {
		b.Skip(skip)
	}
	env := benchEnv(b)
	ctx := context.Background()
	p, err := startRedisPeer(ctx, env, path, fmt.Sprintf("shmbench:%d", os.Getpid()))
	if err != nil {
		b.Fatal(err)
	}
	defer p.close(ctx)
	if !rtt {
		benchRate(b, p.throughput)
		return
	}
	for b.Loop() {
		if err := p.rtt(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisRTT(b *testing.B)        { benchRedis(b, true) }
func BenchmarkRedisThroughput(b *testing.B) { benchRedis(b, false) }

func TestParseSizes(t *testing.T) {
	got, err := ParseSizes("64, 1KiB,4MiB,1GiB,2K,3M,1G,10B")
	want := []int{64, 1 << 10, 4 << 20, 1 << 30, 2 << 10, 3 << 20, 1 << 30, 10}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ParseSizes = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "x", "0", "-1", "1TiB0", "2000GiB", "1,,2"} {
		if _, err := ParseSizes(bad); err == nil {
			t.Errorf("ParseSizes(%q): no error", bad)
		}
	}
}

// TestRowNotes checks that a row's note counts the repetitions it was
// measured over, not the run's setting: a sweep point, measured once, never
// says "median of".
func TestRowNotes(t *testing.T) {
	env := testEnv(t, func(c *Config) { c.Reps = 3 })
	env.Pin = true // the note only; nothing here pins
	h := NewHistogram()
	h.Record(100)
	if got := env.LatencyRow("t.a_ns", Latency{Mean: 100, Reps: []float64{100}, Hist: h}, "").Note; got != "pinned" {
		t.Errorf("one repetition: note %q", got)
	}
	if got := env.LatencyRow("t.b_ns", Latency{Mean: 100, Reps: []float64{90, 100, 110}, Hist: h}, "").Note; got != "median of 3; pinned" {
		t.Errorf("three repetitions: note %q", got)
	}
	if got := env.RateRow("t.c_msgs", "msgs/s", Rate{PerSec: 5, Reps: []float64{4, 6}}, "").Note; got != "median of 2; pinned" {
		t.Errorf("rate: note %q", got)
	}
	r, err := env.sweepRow(context.Background(), "t.d_ns", "t", 64, "", func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.Note, "median") || !strings.Contains(r.Note, "pinned") || !strings.Contains(r.Note, "round trips") ||
		r.Series != "t" || r.Bytes != 64 {
		t.Errorf("sweep point: %+v", r)
	}
}

// TestFanInPhaseBounds checks that a fan-in phase honours Count
// (-iterations) and that ChildTimeout bounds the wait for each message, not
// the whole phase.
func TestFanInPhaseBounds(t *testing.T) {
	ctx := context.Background()
	env := testEnv(t)
	f, err := startRingFanIn(ctx, env, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	// A phase of Count messages ends once they have arrived, whatever its
	// Duration (an hour here; before, the phase ran for Duration and
	// failed at ChildTimeout).
	n, _, err := f.phase(ctx, Phase{Count: 5000, Duration: time.Hour})
	if err != nil || n < 5000 {
		t.Fatalf("count phase: %d messages, %v", n, err)
	}
	// A phase three times longer than ChildTimeout, with messages flowing
	// all along. (ChildTimeout is not shorter: a gap of more than a second
	// between two messages of a child that sends flat out would be a
	// starved machine, not this test's business.)
	env.ChildTimeout = time.Second
	n, el, err := f.phase(ctx, Phase{Duration: 3 * time.Second})
	if err != nil || n == 0 || el < 3*time.Second {
		t.Fatalf("phase of 3s with a ChildTimeout of 1s: %d messages in %v, %v", n, el, err)
	}
}

// TestChildFailureStatus checks that a role's error stands when the parent
// closes the child's standard input as soon as it has read the error (the
// child's input reader used to exit 0 first, now and then).
func TestChildFailureStatus(t *testing.T) {
	ctx := context.Background()
	env := testEnv(t)
	for i := range 20 {
		f, err := env.StartChild(ctx, "test-fail")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Expect(ctx, "ready"); err == nil {
			t.Fatal("failing child said ready")
		}
		if err := f.Close(); err == nil {
			t.Fatalf("run %d: failing child exited 0", i)
		}
	}
}

// TestMsgPeerSilentAgent: an agent process that stays alive but answers
// nothing fails a round trip after the child timeout instead of hanging it.
// (The agent starts with the default timeout, which scales with the load:
// a child under -race on a busy machine may need more than the short one
// to say it is ready.)
func TestMsgPeerSilentAgent(t *testing.T) {
	env := testEnv(t)
	root, err := env.Dir()
	if err != nil {
		t.Fatal(err)
	}
	x, err := exchange.Open("silent", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := startMsgPeer(ctx, env, x, "test-silent-agent", root, "silent")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.child.Kill()
		p.close(ctx)
	}()
	p.wd.Stop()
	p.limit = 300 * time.Millisecond
	p.wd = newWatchdog(p.ctx, p.limit)
	start := time.Now()
	err = p.call(make([]byte, MsgSize), MsgSize)
	if err == nil || !strings.Contains(err.Error(), "sent nothing") {
		t.Fatalf("call to a silent agent: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the call failed only after %v", d)
	}
}
