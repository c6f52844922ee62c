//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/capi/capitest"
	"github.com/shmex/shmex/exchange"
	"github.com/tinylib/msgp/msgp"
)

// Metrics of the C ABI scenario: no-op actions from C and Python clients to a
// Go agent and from a Go client to a Python agent, each next to the same
// work from a Go client to the same Go agent, and numpy arrays of 1 KiB and
// 1 GiB lent by Python to a Go agent.
const (
	MetricCapiGoGoRTT  = "capi.go_go_rtt_ns"
	MetricCapiCGoRTT   = "capi.c_go_rtt_ns"
	MetricCapiPyGoRTT  = "capi.py_go_rtt_ns"
	MetricCapiGoPyRTT  = "capi.go_py_rtt_ns"
	MetricCapiGoGoOps  = "capi.go_go_throughput_ops"
	MetricCapiCGoOps   = "capi.c_go_throughput_ops"
	MetricCapiPyGoOps  = "capi.py_go_throughput_ops"
	MetricCapiGoPyOps  = "capi.go_py_throughput_ops"
	MetricCapiPyGo1K   = "capi.py_go_1k_rtt_ns"
	MetricCapiPyGoLoan = "capi.py_go_loan_1g_ns"
	// MetricCapiPyGoLoan1K is the same loan path with 1 KiB: next to the
	// 1 GiB row, it shows that the size costs nothing.
	MetricCapiPyGoLoan1K = "capi.py_go_loan_1k_ns"
)

var capiMetrics = []string{
	MetricCapiGoGoRTT, MetricCapiCGoRTT, MetricCapiPyGoRTT, MetricCapiGoPyRTT,
	MetricCapiGoGoOps, MetricCapiCGoOps, MetricCapiPyGoOps, MetricCapiGoPyOps,
	MetricCapiPyGo1K, MetricCapiPyGoLoan1K, MetricCapiPyGoLoan,
}

func init() {
	Register(Scenario{
		Name: "capi", Rank: RankShmex + 40,
		Doc: "the C ABI (libshmex) and its bindings: no-op actions C to Go, Python to Go and Go to Python next to Go to Go " +
			"(round trip and pipelined), and a 1 GiB numpy array lent by Python to a Go agent (and a 1 KiB one, by the same code) against a 1 KiB round trip",
		Metrics: capiMetrics,
		Run:     runCapi,
		Targets: []Target{
			{Metric: MetricCapiCGoRTT, Op: AtMost, Factor: 1.5, Vs: MetricCapiGoGoRTT, Issue: 12},
			{Metric: MetricCapiPyGoRTT, Stat: StatP50, Op: AtMost, Factor: 10_000, Issue: 12},
			{Metric: MetricCapiPyGoOps, Op: AtLeast, Factor: 100_000, Issue: 12},
			{Metric: MetricCapiPyGoLoan, Op: AtMost, Factor: 2, Vs: MetricCapiPyGo1K, Issue: 12},
		},
	})
	RegisterChild("capi-calc", childCapiCalc)
}

// childCapiCalc serves the Calc agent of capi/capitest (the agent the
// bindings' tests call) in exchange args[1] under root args[0], with idle
// mode args[2], tells its id and serves until it is shut down. Its whole
// process follows its role thread's pinning (pinAgentProcess) unless
// args[3] is "float", as the agent children of action/rtt and
// action/throughput.
func childCapiCalc(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want 4 arguments, got %d", len(args))
	}
	if args[3] != "float" {
		if err := pinAgentProcess(); err != nil {
			return err
		}
	}
	calc, err := capitest.StartCalc(context.Background(), args[0], args[1], exchangeIdle(args[2]))
	if err != nil {
		return err
	}
	if err := Ready(calc.ID.String()); err != nil {
		calc.Close()
		return err
	}
	<-calc.RT.Done()
	return calc.Close()
}

// capiRun is one run of the C ABI scenario: the library and the programs,
// and the phase running now (idle mode, exchange, Go agent, Go client).
type capiRun struct {
	env      *Env
	lib      *capitest.Lib
	cbench   string           // the C client
	py       *capitest.Python // or nil (pyskip says why)
	pyskip   string
	pyDir    string // python/ in the module
	root     string // exchange root
	loanSize int
	*capiPhase
}

// capiPhase is a Go Calc agent in a child process and this process's client
// of it, in an exchange whose receivers all wait the same way: spin, and
// the child pinned whole, for the round trips (as action.rtt_ns); the
// default strategy, the child floating, for the pipelined rows (as
// action.throughput_ops).
type capiPhase struct {
	idle string
	name string            // exchange name
	calc exchange.EntityID // the Go agent
	x    *exchange.SHM
	cl   *agent.Client
}

func runCapi(ctx context.Context, env *Env) ([]Row, error) {
	tmp, err := os.MkdirTemp("", "shmbench-capi-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if _, err := capitest.ModuleDir(ctx); err != nil {
		return SkipRows("the shmex module's sources are needed to build libshmex: "+err.Error(), capiMetrics...), nil
	}
	for _, tool := range []string{"go", "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return SkipRows(tool+" is needed to build libshmex: "+err.Error(), capiMetrics...), nil
		}
	}
	lib, err := capitest.Build(ctx, tmp, false)
	if err != nil {
		return nil, err
	}
	r := &capiRun{env: env, lib: lib, pyDir: filepath.Join(lib.Module, "python"), loanSize: 1 << 30}
	if env.Quick {
		r.loanSize = 4 << 20
	}
	r.cbench = filepath.Join(tmp, "bench")
	if err := capitest.BuildC(ctx, lib, false, r.cbench, filepath.Join(lib.Module, "capi", "testdata", "bench.c")); err != nil {
		return nil, err
	}
	if r.py, err = capitest.FindPython(); err != nil {
		r.pyskip = err.Error()
	} else if !r.py.NumPy {
		r.pyskip, r.py = "numpy is missing from "+r.py.Path+" (apt-get install python3-numpy)", nil
	}
	if r.root, err = env.Dir(); err != nil {
		return nil, err
	}
	byMetric := map[string]Row{}
	add := func(rows ...Row) {
		for _, row := range rows {
			byMetric[row.Metric] = row
		}
	}
	// Round trips: Go to Go, the peer of every other row, then C and
	// Python, repetition by repetition, so that the three see the same
	// load.
	err = r.phase(ctx, "spin", "pin", func() error {
		ext := []*extRTT{
			{metric: MetricCapiCGoRTT, what: "C client (libshmex, shmex_call_into) to the Go agent", run: r.cRTT},
			{metric: MetricCapiPyGoRTT, what: "Python client (handle.action(...).result()) to the Go agent", run: r.pyRTT(64), skip: r.pyskip},
		}
		goRTT := Latency{Hist: NewHistogram()}
		for rep := range r.env.Reps {
			if err := r.goRTTRep(ctx, r.cl.Handle(r.calc), &goRTT, rep == 0); err != nil {
				return fmt.Errorf("go to go: %w", err)
			}
			for _, x := range ext {
				x.rep(ctx, r, rep)
			}
		}
		goRTT.Mean = median(goRTT.Reps)
		add(r.rttRow(MetricCapiGoGoRTT, goRTT, "", "Go client to the Go agent, the peer of the rows below"))
		for _, x := range ext {
			add(x.row(r, MetricCapiGoGoRTT, "repetitions interleaved with the Go client's"))
		}
		add(r.goToPython(ctx, MetricCapiGoPyRTT))
		// A large array lent by Python, against a small round trip,
		// measured interleaved.
		add(r.pyLoans(ctx)...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Pipelined.
	err = r.phase(ctx, "default", "float", func() error {
		goOps, err := env.MeasureRate(ctx, func(ctx context.Context, ph Phase) (int64, time.Duration, error) {
			start := time.Now()
			n, err := pipeline(ctx, r.cl.Handle(r.calc), ph)
			return n, time.Since(start), err
		})
		if err != nil {
			return fmt.Errorf("go to go pipelined: %w", err)
		}
		row := env.RateRow(MetricCapiGoGoOps, "ops/s", goOps, "")
		row.Note = join(fmt.Sprintf("Go client to the Go agent, %d in flight", actionWindow), row.Note)
		add(row,
			r.rateRow(ctx, MetricCapiCGoOps, "C client to the Go agent (shmex_action, shmex_future_take)", r.cRate),
			r.rateRow(ctx, MetricCapiPyGoOps, "Python client to the Go agent", r.pyRate()))
		add(r.goToPython(ctx, MetricCapiGoPyOps))
		return nil
	})
	if err != nil {
		return nil, err
	}
	rows := make([]Row, 0, len(capiMetrics))
	for _, m := range capiMetrics {
		rows = append(rows, byMetric[m])
	}
	return rows, nil
}

// extIdle is the phase's idle mode as the C and Python programs name it:
// the bench's "default" is ring.Backoff (idleOf), the library's "backoff".
func (p *capiPhase) extIdle() string {
	if p.idle == "default" {
		return "backoff"
	}
	return p.idle
}

// phase starts a Go Calc agent child whose receivers, like this process's
// client and the programs', wait in the idle mode idle, the child pinned
// whole ("pin") or with its role thread only ("float"), runs fn, and stops
// the child.
func (r *capiRun) phase(ctx context.Context, idle, placement string, fn func() error) error {
	p := &capiPhase{idle: idle, name: "capi-" + idle}
	child, err := r.env.StartChild(ctx, "capi-calc", r.root, p.name, idle, placement)
	if err != nil {
		return err
	}
	defer child.Close()
	line, err := child.Expect(ctx, "ready")
	if err != nil {
		return err
	}
	if p.calc, err = exchange.ParseEntityID(strings.TrimSpace(line)); err != nil {
		return fmt.Errorf("bench: the Calc child said %q: %w", line, err)
	}
	if p.x, err = exchange.Open(p.name, exchange.WithRoot(r.root), exchangeIdle(idle)); err != nil {
		return err
	}
	defer p.x.Close()
	if p.cl, err = agent.NewClient(ctx, p.x); err != nil {
		return err
	}
	defer p.cl.Close()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), r.env.ChildTimeout)
		p.cl.Handle(p.calc).Shutdown(sctx)
		cancel()
		child.Wait()
	}()
	r.capiPhase = p
	defer func() { r.capiPhase = nil }()
	return fn()
}

// goRTT measures no-op actions from a Go handle, as the C and Python
// clients make them (raw MessagePack: 64 bytes in a bin).
func (r *capiRun) goRTT(ctx context.Context, h *agent.Handle) (Latency, error) {
	unlock := r.env.LockThread()
	defer unlock()
	return r.env.MeasureRTT(ctx, goNoop(ctx, h))
}

// goNoop returns one no-op action of h, as goRTT measures it.
func goNoop(ctx context.Context, h *agent.Handle) func() error {
	args := msgp.AppendBytes(nil, make([]byte, MsgSize))
	return func() error {
		f, err := h.ActionRaw(ctx, "noop", args)
		if err != nil {
			return err
		}
		_, err = f.Wait(ctx)
		return err
	}
}

// rttRow is a latency row with a note.
func (r *capiRun) rttRow(metric string, l Latency, compareTo, note string) Row {
	row := r.env.LatencyRow(metric, l, compareTo)
	row.Note = join(note, row.Note)
	return row
}

// goRTTRep adds one repetition of goRTT's measurement to l (warming up
// first when warm), as MeasureRTT makes each.
func (r *capiRun) goRTTRep(ctx context.Context, h *agent.Handle, l *Latency, warm bool) error {
	unlock := r.env.LockThread()
	defer unlock()
	rt := goNoop(ctx, h)
	if warm {
		if _, _, err := r.env.WarmupPhase().Loop(ctx, rt); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return r.env.MeasureRTTRep(ctx, rt, l)
}

// extRTT is a latency measured by a program of another language, one
// repetition at a time (rep), and its row (row): skipped when run is nil
// (skip says why), failed from the first repetition that fails.
type extRTT struct {
	metric, what, skip string
	run                func(ctx context.Context, samples string) (mean float64, err error)
	l                  Latency
	err                error
}

func (x *extRTT) rep(ctx context.Context, r *capiRun, i int) {
	if x.run == nil || x.err != nil {
		return
	}
	if x.l.Hist == nil {
		x.l.Hist = NewHistogram()
	}
	samples := filepath.Join(r.lib.Dir, fmt.Sprintf("%s-%d.samples", x.metric, i))
	mean, err := x.run(ctx, samples)
	if err == nil {
		err = readSamples(samples, x.l.Hist)
	}
	if err != nil {
		x.err = err
		return
	}
	x.l.Reps = append(x.l.Reps, mean)
}

func (x *extRTT) row(r *capiRun, compareTo, note string) Row {
	switch {
	case x.run == nil:
		return Row{Metric: x.metric, Skipped: true, Note: x.skip}
	case x.err != nil:
		return Row{Metric: x.metric, Error: x.err.Error()}
	}
	x.l.Mean = median(x.l.Reps)
	return r.rttRow(x.metric, x.l, compareTo, join(x.what, note))
}

// readSamples adds the int64 nanoseconds of file to h.
func readSamples(file string, h *Histogram) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if len(b) == 0 || len(b)%8 != 0 {
		return fmt.Errorf("bench: %s holds %d bytes, not int64 samples", file, len(b))
	}
	for i := 0; i < len(b); i += 8 {
		h.Record(time.Duration(int64(binary.NativeEndian.Uint64(b[i:]))))
	}
	return nil
}

// seconds is the length of one repetition of an external program, as long
// as MeasureRTT's bulk and timed phases together.
func (r *capiRun) seconds() string {
	return strconv.FormatFloat((2 * r.env.Duration).Seconds(), 'f', 3, 64)
}

// envBenchCPU tells an external program of the scenario the CPU to pin its
// measuring thread to (the C and Python clients, the Python agent's
// listener), as Env.LockThread pins the Go side's: its thread alone, after
// the library started the Go runtime's threads, which stay free to run
// elsewhere (pinning the whole process put a spinning receiver and the
// runtime's threads on one CPU: round trips of milliseconds).
const envBenchCPU = "SHMEX_BENCH_CPU"

// command returns an external program whose measuring thread is pinned to
// cpu when cpu >= 0.
func (r *capiRun) command(ctx context.Context, cpu int, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), "SHMEX_LIBRARY="+r.lib.Shared, "PYTHONPATH="+r.pyDir, "PYTHONDONTWRITEBYTECODE=1")
	if cpu >= 0 {
		cmd.Env = append(cmd.Env, envBenchCPU+"="+strconv.Itoa(cpu))
	}
	cmd.Dir = r.pyDir
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// runClient runs a client program on the parent's CPU and returns the
// fields of its output line that starts with want.
func (r *capiRun) runClient(ctx context.Context, want string, prog string, args ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*r.env.Duration+4*r.env.ChildTimeout)
	defer cancel()
	cpu, _, _ := r.env.CPUs()
	out, err := r.command(ctx, cpu, prog, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("bench: %s %s: %w", filepath.Base(prog), strings.Join(args, " "), err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == want {
			return f[1:], nil
		}
	}
	return nil, fmt.Errorf("bench: %s said %q, no %q line", filepath.Base(prog), out, want)
}

func (r *capiRun) cRTT(ctx context.Context, samples string) (float64, error) {
	f, err := r.runClient(ctx, "rtt", r.cbench, r.root, r.name, r.calc.String(), r.extIdle(), "rtt", r.seconds(), samples)
	if err != nil || len(f) != 2 {
		return 0, errors.Join(err, errOutput(f))
	}
	return strconv.ParseFloat(f[1], 64)
}

func errOutput(f []string) error {
	if f == nil {
		return nil
	}
	return fmt.Errorf("bench: unexpected output %q", f)
}

// pyRTT returns the Python client's round trip with size bytes of
// arguments, or nil without Python.
func (r *capiRun) pyRTT(size int) func(ctx context.Context, samples string) (float64, error) {
	if r.py == nil {
		return nil
	}
	return func(ctx context.Context, samples string) (float64, error) {
		f, err := r.runClient(ctx, "rtt", r.py.Path, "-m", "tests.bench", r.root, r.name, r.calc.String(), r.extIdle(),
			"rtt", r.seconds(), samples, strconv.Itoa(size))
		if err != nil || len(f) != 2 {
			return 0, errors.Join(err, errOutput(f))
		}
		return strconv.ParseFloat(f[1], 64)
	}
}

// rateRow measures a throughput with an external program, reps times
// (skipped when run is nil).
func (r *capiRun) rateRow(ctx context.Context, metric, what string, run func(ctx context.Context) (float64, error)) Row {
	if run == nil {
		return Row{Metric: metric, Skipped: true, Note: r.pyskip}
	}
	var rate Rate
	for range r.env.Reps {
		v, err := run(ctx)
		if err != nil {
			return Row{Metric: metric, Error: err.Error()}
		}
		rate.Reps = append(rate.Reps, v)
	}
	rate.PerSec = median(rate.Reps)
	row := r.env.RateRow(metric, "ops/s", rate, MetricCapiGoGoOps)
	row.Note = join(fmt.Sprintf("%s, %d in flight", what, actionWindow), row.Note)
	return row
}

func (r *capiRun) pipelineRate(ctx context.Context, prog string, args ...string) (float64, error) {
	f, err := r.runClient(ctx, "pipeline", prog, args...)
	if err != nil || len(f) != 2 {
		return 0, errors.Join(err, errOutput(f))
	}
	n, err1 := strconv.ParseFloat(f[0], 64)
	el, err2 := strconv.ParseFloat(f[1], 64)
	if err := errors.Join(err1, err2); err != nil || el <= 0 {
		return 0, fmt.Errorf("bench: pipeline output %q: %v", f, err)
	}
	return n / el, nil
}

func (r *capiRun) cRate(ctx context.Context) (float64, error) {
	return r.pipelineRate(ctx, r.cbench, r.root, r.name, r.calc.String(), r.extIdle(), "pipeline",
		strconv.FormatFloat(r.env.Duration.Seconds(), 'f', 3, 64), strconv.Itoa(actionWindow))
}

// pyRate returns the Python client's pipelined rate, or nil without Python.
func (r *capiRun) pyRate() func(ctx context.Context) (float64, error) {
	if r.py == nil {
		return nil
	}
	return func(ctx context.Context) (float64, error) { return r.pyPipeline(ctx) }
}

func (r *capiRun) pyPipeline(ctx context.Context) (float64, error) {
	return r.pipelineRate(ctx, r.py.Path, "-m", "tests.bench", r.root, r.name, r.calc.String(), r.extIdle(), "pipeline",
		strconv.FormatFloat(r.env.Duration.Seconds(), 'f', 3, 64), strconv.Itoa(actionWindow))
}

// pyLoans measures, in the same Python processes and interleaved round by
// round (so that the three see the same load, and their ratios hold on a
// busy machine), a no-op round trip with 1 KiB of arguments and loans of
// 1 KiB and of r.loanSize bytes passed to the Go agent, which resolves each
// (no byte read or copied) and answers its length. It returns the rows of
// MetricCapiPyGo1K, MetricCapiPyGoLoan1K and MetricCapiPyGoLoan.
func (r *capiRun) pyLoans(ctx context.Context) []Row {
	metrics := []string{MetricCapiPyGo1K, MetricCapiPyGoLoan1K, MetricCapiPyGoLoan}
	rows := func(f func(metric string) Row) []Row {
		out := make([]Row, len(metrics))
		for i, m := range metrics {
			out[i] = f(m)
		}
		return out
	}
	if r.py == nil {
		return rows(func(m string) Row { return Row{Metric: m, Skipped: true, Note: r.pyskip} })
	}
	ls := make([]Latency, len(metrics))
	for i := range ls {
		ls[i].Hist = NewHistogram()
	}
	var firsts, reserves []string
	for rep := range r.env.Reps {
		files := make([]string, len(metrics))
		for i, m := range metrics {
			files[i] = filepath.Join(r.lib.Dir, fmt.Sprintf("%s-%d.samples", m, rep))
		}
		ctx, cancel := context.WithTimeout(ctx, 10*r.env.Duration+4*r.env.ChildTimeout)
		cpu, _, _ := r.env.CPUs()
		out, err := r.command(ctx, cpu, r.py.Path, append([]string{"-m", "tests.bench", r.root, r.name, r.calc.String(), r.extIdle(), "loans",
			r.seconds(), strconv.Itoa(r.loanSize)}, files...)...).Output()
		cancel()
		if err != nil {
			return rows(func(m string) Row { return Row{Metric: m, Error: fmt.Sprintf("python loans: %v", err)} })
		}
		var means []float64
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "first":
				ns, _ := strconv.ParseInt(f[1], 10, 64)
				firsts = append(firsts, time.Duration(ns).Round(time.Microsecond).String())
			case len(f) == 2 && f[0] == "reserve":
				ns, _ := strconv.ParseInt(f[1], 10, 64)
				reserves = append(reserves, time.Duration(ns).Round(time.Millisecond).String())
			case len(f) == 2+len(metrics) && f[0] == "loans":
				for _, v := range f[2:] {
					x, _ := strconv.ParseFloat(v, 64)
					means = append(means, x)
				}
			}
		}
		if len(means) != len(metrics) || slices.Contains(means, 0) {
			return rows(func(m string) Row { return Row{Metric: m, Error: fmt.Sprintf("python loans said %q", out)} })
		}
		for i := range metrics {
			if err := readSamples(files[i], ls[i].Hist); err != nil {
				return rows(func(m string) Row { return Row{Metric: m, Error: err.Error()} })
			}
			ls[i].Reps = append(ls[i].Reps, means[i])
		}
	}
	for i := range ls {
		ls[i].Mean = median(ls[i].Reps)
	}
	interleaved := "timed one by one, interleaved round by round with the loans below (same processes)"
	lent := func(size int) string {
		return fmt.Sprintf("a %s numpy array lent by Python (loan, call; the Go agent takes it as a proxystore.Blob, in place, and answers its length), "+
			"interleaved with the 1 KiB round trip", humanBytes(size))
	}
	pyRTT := r.rttRow(MetricCapiPyGo1K, ls[0], MetricCapiGoGoRTT, "Python client to the Go agent, 1 KiB of arguments, "+interleaved)
	loan1K := r.rttRow(MetricCapiPyGoLoan1K, ls[1], MetricCapiPyGo1K, lent(1<<10))
	loan := r.rttRow(MetricCapiPyGoLoan, ls[2], MetricCapiPyGo1K, lent(r.loanSize)+
		fmt.Sprintf("; each process reserves its arena first (shmex_reserve: %s), then its first call (%s) is apart from these",
			strings.Join(reserves, ", "), strings.Join(firsts, ", ")))
	return []Row{pyRTT, loan1K, loan}
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// goToPython starts a Python agent (python/tests/agents.py) with its
// listener on the child's CPU and measures no-op actions to it from a Go
// client: the round trip (metric MetricCapiGoPyRTT) or the pipelined rate.
func (r *capiRun) goToPython(ctx context.Context, metric string) Row {
	if r.py == nil {
		return Row{Metric: metric, Skipped: true, Note: r.pyskip}
	}
	fail := func(err error) Row { return Row{Metric: metric, Error: err.Error()} }
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, cpu, _ := r.env.CPUs()
	cmd := r.command(pctx, cpu, r.py.Path, "-m", "tests.agents", r.name, r.root, r.extIdle())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	defer cmd.Wait()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	var line string
	select {
	case line = <-ready:
	case <-time.After(r.env.ChildTimeout):
		return fail(errors.New("bench: the Python agent did not start in time"))
	}
	id, err := exchange.ParseEntityID(strings.TrimSpace(strings.TrimPrefix(line, "ready ")))
	if err != nil {
		return fail(fmt.Errorf("bench: the Python agent said %q: %w", line, err))
	}
	h := r.cl.Handle(id)
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, r.env.ChildTimeout)
		h.Shutdown(sctx)
		cancel()
	}()
	if metric == MetricCapiGoPyRTT {
		l, err := r.goRTT(ctx, h)
		if err != nil {
			return fail(err)
		}
		return r.rttRow(metric, l, MetricCapiGoGoRTT, "Go client to a Python agent (shmex.Agent, actions run in its listener thread)")
	}
	rate, err := r.env.MeasureRate(ctx, func(ctx context.Context, ph Phase) (int64, time.Duration, error) {
		start := time.Now()
		n, err := pipeline(ctx, h, ph)
		return n, time.Since(start), err
	})
	if err != nil {
		return fail(err)
	}
	row := r.env.RateRow(metric, "ops/s", rate, MetricCapiGoGoOps)
	row.Note = join(fmt.Sprintf("Go client to a Python agent, %d in flight", actionWindow), row.Note)
	return row
}
