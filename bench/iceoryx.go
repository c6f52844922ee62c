//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmex/shmex/bench/internal/iceoryx"
)

// Metric names of the iceoryx peer: a 64-byte ping-pong between two child
// processes through iceoryx 2.0's C binding, each side polling or sleeping
// on a WaitSet.
const (
	MetricIceoryxRRPoll = "iceoryx.rtt_reqresp_poll_ns"
	MetricIceoryxRRWait = "iceoryx.rtt_reqresp_wait_ns"
	MetricIceoryxPSPoll = "iceoryx.rtt_pubsub_poll_ns"
	MetricIceoryxPSWait = "iceoryx.rtt_pubsub_wait_ns"
)

// iceoryxRows are the rows of the iceoryx scenario: how each is measured and
// what it is compared with.
var iceoryxRows = []struct {
	metric  string
	pattern iceoryx.Pattern
	wait    bool
	vs      string
	note    string
}{
	{MetricIceoryxRRPoll, iceoryx.RequestResponse, false, MetricExchangeRTTSpin, "client and server poll"},
	{MetricIceoryxRRWait, iceoryx.RequestResponse, true, MetricExchangeRTTFutex, "client and server wait on a WaitSet"},
	{MetricIceoryxPSPoll, iceoryx.PublishSubscribe, false, MetricExchangeRTTSpin, "publisher/subscriber pair each way, polling"},
	{MetricIceoryxPSWait, iceoryx.PublishSubscribe, true, MetricExchangeRTTFutex, "publisher/subscriber pair each way, WaitSet"},
}

func init() {
	var metrics []string
	for _, r := range iceoryxRows {
		metrics = append(metrics, r.metric)
	}
	Register(Scenario{
		Name: "iceoryx", Rank: RankPeer + 5,
		Doc: "Eclipse iceoryx 2.0 (C binding, RouDi started for the run): 64-byte request/response and " +
			"publish/subscribe ping-pong between two child processes, polling and on a WaitSet",
		Metrics: metrics,
		Run:     runIceoryx,
		// Issue 13: the exchange's round trip at most 0.5x iceoryx's polling
		// request/response one, i.e. iceoryx at least 2x the exchange.
		Targets: []Target{{Metric: MetricIceoryxRRPoll, Op: AtLeast, Factor: 2, Vs: MetricExchangeRTTSpin, Issue: 13}},
	})
	RegisterChild("iceoryx-echo", childIceoryxEcho)
	RegisterChild("iceoryx-driver", childIceoryxDriver)
}

// IceoryxSkip returns why the iceoryx rows cannot run here, or "" when they
// can: the binding (cgo, headers at build time, library at run time) and the
// RouDi daemon, iox-roudi on PATH.
func IceoryxSkip() string {
	if err := iceoryx.Available(); err != nil {
		return err.Error()
	}
	if _, err := exec.LookPath("iox-roudi"); err != nil {
		return "iox-roudi not found on PATH (apt-get install iceoryx)"
	}
	return ""
}

// errForeignRouDi is returned by startRouDi when a RouDi that this run did
// not start holds the machine's RouDi lock.
var errForeignRouDi = errors.New("another RouDi is running on this machine (iceoryx 2.0 allows one per machine, with fixed names in /tmp and /dev/shm): stop it to get the iceoryx rows")

func runIceoryx(ctx context.Context, env *Env) ([]Row, error) {
	var metrics []string
	for _, r := range iceoryxRows {
		metrics = append(metrics, r.metric)
	}
	if reason := IceoryxSkip(); reason != "" {
		return SkipRows(reason, metrics...), nil
	}
	roudi, err := startRouDi(ctx, env)
	if errors.Is(err, errForeignRouDi) {
		return SkipRows(err.Error(), metrics...), nil
	}
	if err != nil {
		return nil, err
	}
	defer roudi.Close()
	var rows []Row
	for i, r := range iceoryxRows {
		l, err := iceoryxRTT(ctx, env, r.pattern, r.wait, fmt.Sprintf("rtt%d", i))
		if err != nil {
			return rows, fmt.Errorf("%s: %w", r.metric, err)
		}
		row := env.LatencyRow(r.metric, l, r.vs)
		row.Note = join(r.note+"; one cgo call per round trip", row.Note)
		rows = append(rows, row)
	}
	return rows, roudi.Close()
}

// iceoryxRTT runs one ping-pong: an echo child and a driver child that
// measures with the run's settings and sends back what it measured.
func iceoryxRTT(ctx context.Context, env *Env, pattern iceoryx.Pattern, wait bool, service string) (Latency, error) {
	pat, w := strconv.Itoa(int(pattern)), strconv.FormatBool(wait)
	echo, err := env.StartChild(ctx, "iceoryx-echo", pat, w, service)
	if err != nil {
		return Latency{}, err
	}
	defer echo.Close()
	if _, err := echo.Expect(ctx, "ready"); err != nil {
		return Latency{}, err
	}
	parentCPU := -1
	if p, _, ok := env.CPUs(); ok {
		parentCPU = p
	}
	cfg, _ := json.Marshal(driverConfig{Duration: env.Duration, Warmup: env.Warmup, Reps: env.Reps,
		Iterations: env.Iterations, CPU: parentCPU})
	drv, err := env.StartChild(ctx, "iceoryx-driver", pat, w, service, string(cfg))
	if err != nil {
		return Latency{}, err
	}
	defer drv.Close()
	// An echo child that fails (it says why on standard error) ends the
	// wait for the driver's result at once instead of after ChildTimeout.
	ectx, cancel := echo.Context(ctx)
	defer cancel()
	l, err := expectLatency(ectx, drv)
	if err != nil && echo.Exited() && ctx.Err() == nil {
		if eerr := echo.Wait(); eerr != nil {
			return Latency{}, fmt.Errorf("echo child failed: %v (driver: %w)", eerr, err)
		}
		// The echo child left normally: the driver stopped it after it
		// sent its result, which is read now.
		l, err = expectLatency(ctx, drv)
	}
	if err != nil {
		return Latency{}, err
	}
	// The measurement is in hand. The children now stop the echo loop and
	// leave the iceoryx runtime; one that fails doing so fails the row, one
	// that hangs in it (seen under load in the runtime's shutdown) is
	// killed after a grace: RouDi, stopped after the run, frees what it
	// held.
	if err := exitOrKill(env, drv, iceoryxExitGrace); err != nil {
		return Latency{}, err
	}
	if err := exitOrKill(env, echo, iceoryxExitGrace); err != nil {
		return Latency{}, fmt.Errorf("echo: %w", err)
	}
	return l, nil
}

// iceoryxExitGrace is how long a child that delivered its part has to
// leave by itself.
const iceoryxExitGrace = 20 * time.Second

// exitOrKill waits up to grace for c to exit and returns its exit error;
// past the grace it kills c, logs it, and returns nil.
func exitOrKill(env *Env, c *Child, grace time.Duration) error {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.Done():
		return c.Wait()
	case <-t.C:
		env.Logger.Warn("iceoryx child did not leave after its part; killed", "role", c.Role, "pid", c.Pid(), "grace", grace)
		c.Kill()
		return nil
	}
}

// driverConfig is what a measuring child needs of the parent's Env.
type driverConfig struct {
	Duration   time.Duration `json:"duration"`
	Warmup     time.Duration `json:"warmup"`
	Reps       int           `json:"reps"`
	Iterations int           `json:"iterations,omitempty"`
	CPU        int           `json:"cpu"` // the parent's CPU when the run pins, else -1
}

// driverResult is a Latency measured in a child, as it travels to the
// parent.
type driverResult struct {
	Reps []float64 `json:"reps"`
	Hist string    `json:"hist"` // HDR histogram, V2 compressed, base64
}

// measureInChild runs MeasureRTT in a child role with the parent's settings
// (pinned to the parent's CPU when the run pins) and sends the result to
// the parent, which reads it with expectLatency. While it measures it tells
// the parent that it is alive every quarter of ChildTimeout, so that a
// measurement longer than the child timeout is not taken for a hang.
func measureInChild(cfgJSON string, rt func() error) error {
	var cfg driverConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return fmt.Errorf("bad driver config: %w", err)
	}
	if cfg.CPU >= 0 {
		if _, err := pinThread(cfg.CPU); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cfg.CPU, err)
		}
	}
	env := NewEnv(Config{Duration: cfg.Duration, Warmup: cfg.Warmup, Reps: cfg.Reps, Iterations: cfg.Iterations})
	defer env.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(ChildTimeout() / 4)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				Tell("m alive")
			}
		}
	}()
	l, err := env.MeasureRTT(context.Background(), rt)
	if err != nil {
		return err
	}
	enc, err := l.Hist.encode()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(driverResult{Reps: l.Reps, Hist: enc})
	return Tell("m result %s", b)
}

// expectLatency waits for the result of measureInChild, as long as the
// child keeps saying it is alive.
func expectLatency(ctx context.Context, c *Child) (Latency, error) {
	for {
		rest, err := c.Expect(ctx, "m")
		if err != nil {
			return Latency{}, err
		}
		kind, payload, _ := strings.Cut(rest, " ")
		if kind == "alive" {
			continue
		}
		if kind != "result" {
			return Latency{}, fmt.Errorf("bench: child %s said %q", c.Role, rest)
		}
		var r driverResult
		if err := json.Unmarshal([]byte(payload), &r); err != nil {
			return Latency{}, fmt.Errorf("bench: result of child %s: %w", c.Role, err)
		}
		h, err := decodeHistogram(r.Hist)
		if err != nil {
			return Latency{}, fmt.Errorf("bench: histogram of child %s: %w", c.Role, err)
		}
		if len(r.Reps) == 0 {
			return Latency{}, fmt.Errorf("bench: child %s measured nothing", c.Role)
		}
		return Latency{Mean: median(r.Reps), Reps: r.Reps, Hist: h}, nil
	}
}

// iceoryxArgs parses the arguments of the iceoryx roles: pattern, wait,
// service.
func iceoryxArgs(args []string, n int) (iceoryx.Pattern, bool, string, error) {
	if len(args) != n {
		return 0, false, "", fmt.Errorf("want %d arguments, got %d", n, len(args))
	}
	pat, err := strconv.Atoi(args[0])
	if err != nil {
		return 0, false, "", err
	}
	wait, err := strconv.ParseBool(args[1])
	if err != nil {
		return 0, false, "", err
	}
	return iceoryx.Pattern(pat), wait, args[2], nil
}

// childIceoryxEcho answers the driver's messages until it says stop, then
// leaves through iceoryx.Exit so that RouDi learns it is gone.
func childIceoryxEcho(args []string) error {
	pat, wait, service, err := iceoryxArgs(args, 3)
	if err != nil {
		return err
	}
	if err := iceoryx.Init(fmt.Sprintf("shmbench-echo-%d", os.Getpid())); err != nil {
		return err
	}
	err = func() error {
		p, err := iceoryx.Open(pat, iceoryx.Echo, wait, service)
		if err != nil {
			return err
		}
		defer p.Close()
		if err := Ready(""); err != nil {
			return err
		}
		_, err = p.Serve(ChildTimeout())
		return err
	}()
	if err != nil {
		return err
	}
	iceoryx.Exit(0)
	return nil
}

// childIceoryxDriver connects to the echo child, measures round trips,
// sends them to the parent and stops the echo child.
func childIceoryxDriver(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want 4 arguments, got %d", len(args))
	}
	pat, wait, service, err := iceoryxArgs(args[:3], 3)
	if err != nil {
		return err
	}
	if err := iceoryx.Init(fmt.Sprintf("shmbench-driver-%d", os.Getpid())); err != nil {
		return err
	}
	err = func() error {
		p, err := iceoryx.Open(pat, iceoryx.Driver, wait, service)
		if err != nil {
			return err
		}
		defer p.Close()
		if err := p.Connect(ChildTimeout()); err != nil {
			return err
		}
		timeout := ChildTimeout()
		if err := measureInChild(args[3], func() error { return p.RoundTrip(timeout) }); err != nil {
			return err
		}
		return p.Stop()
	}()
	if err != nil {
		return err
	}
	iceoryx.Exit(0)
	return nil
}

// rouDi is an iox-roudi process started for a run, with its own
// configuration, holding the machine-wide lock that keeps two shmbench runs
// from starting one each (iceoryx 2.0 has one RouDi per machine: its socket,
// lock and segment names are fixed).
type rouDi struct {
	cmd  *exec.Cmd
	dir  string
	lock *os.File
	done chan struct{}
	out  *syncBuffer
	err  error
}

// rouDiLockPath is the lock that serializes RouDi across shmbench runs.
const rouDiLockPath = "/tmp/shmbench-iceoryx.lock"

// rouDiConfig is the RouDi configuration of a run: one segment with small
// chunks, enough for a ping-pong of 64-byte messages.
const rouDiConfig = `[general]
version = 1

[[segment]]

[[segment.mempool]]
size = 128
count = 1024
`

// startRouDi takes the machine-wide lock (waiting up to two minutes for
// another shmbench's run), starts iox-roudi with the run's configuration
// and waits until it is ready for clients.
func startRouDi(ctx context.Context, env *Env) (*rouDi, error) {
	lock, err := lockFile(ctx, rouDiLockPath, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	r, err := startRouDiLocked(ctx, env, lock)
	if err != nil {
		lock.Close() // may be closed already: a second Close is harmless
	}
	return r, err
}

// startRouDiLocked starts RouDi once the lock is held; the returned rouDi
// releases the lock when it closes. On failure the caller releases it.
func startRouDiLocked(ctx context.Context, env *Env, lock *os.File) (*rouDi, error) {
	path, err := exec.LookPath("iox-roudi")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "shmbench-roudi-")
	if err != nil {
		return nil, err
	}
	r := &rouDi{dir: dir, lock: lock, done: make(chan struct{}), out: &syncBuffer{}}
	cfg := filepath.Join(dir, "roudi.toml")
	if err := os.WriteFile(cfg, []byte(rouDiConfig), 0o600); err != nil {
		r.release()
		return nil, err
	}
	// Monitoring off: with it on, RouDi takes a process whose keep-alive
	// thread missed its heartbeats (a loaded machine: CI runs the suite's
	// packages side by side on two CPUs) for dead and removes its ports
	// under it; the echo child then read "server does not offer" and the
	// driver waited for an answer until its timeout. The run's children
	// leave through iceoryx.Exit, and RouDi is stopped after the run.
	r.cmd = exec.Command(path, "-c", cfg, "-l", "info", "-k", "2", "-m", "off")
	r.cmd.Stderr = r.out
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		r.release()
		return nil, err
	}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		r.release()
		return nil, fmt.Errorf("bench: start iox-roudi: %w", err)
	}
	env.Logger.Debug("iox-roudi started", "pid", r.cmd.Process.Pid, "config", cfg)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			r.out.Write(append(sc.Bytes(), '\n'))
			if !said && strings.Contains(sc.Text(), "RouDi is ready for clients") {
				said = true
				close(ready)
			}
		}
	}()
	go func() { r.cmd.Wait(); close(r.done) }()
	t := time.NewTimer(env.ChildTimeout)
	defer t.Stop()
	select {
	case <-ready:
		return r, nil
	case <-r.done:
		out := r.out.Bytes()
		r.release()
		if strings.Contains(string(out), "RouDi still running") {
			return nil, errForeignRouDi
		}
		return nil, fmt.Errorf("bench: iox-roudi exited at start: %s", lastLines(string(out), 3))
	case <-t.C:
		r.Close()
		return nil, fmt.Errorf("bench: iox-roudi not ready within %v: %s", env.ChildTimeout, lastLines(string(r.out.Bytes()), 3))
	case <-ctx.Done():
		r.Close()
		return nil, ctx.Err()
	}
}

// Close stops RouDi with SIGTERM (it then removes its segments and socket),
// kills it if it lingers, and releases the lock. It is idempotent.
func (r *rouDi) Close() error {
	if r.cmd == nil {
		return r.err
	}
	select {
	case <-r.done:
	default:
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Signal(syscall.SIGKILL)
			<-r.done
			r.err = errors.New("bench: iox-roudi did not stop on SIGTERM within 10s")
		}
	}
	if left := r.removeLeftovers(); len(left) > 0 && r.err == nil {
		r.err = fmt.Errorf("bench: iox-roudi left %s behind (removed): %s", strings.Join(left, ", "),
			lastLines(string(r.out.Bytes()), 3))
	}
	r.cmd = nil
	r.release()
	return r.err
}

// removeLeftovers removes what a RouDi that did not shut down cleanly left:
// the shared-memory segments it said it reserved and its socket. It runs
// once RouDi has exited, under the lock, and returns what it removed.
func (r *rouDi) removeLeftovers() []string {
	var paths []string
	for _, l := range strings.Split(string(r.out.Bytes()), "\n") {
		if _, seg, ok := strings.Cut(l, "in the shared memory ["); ok {
			if name, _, ok := strings.Cut(seg, "]"); ok && name != "" && !strings.ContainsAny(name, "/.") {
				paths = append(paths, filepath.Join("/dev/shm", name))
			}
		}
	}
	paths = append(paths, "/tmp/roudi")
	var removed []string
	for _, p := range paths {
		if err := os.Remove(p); err == nil {
			removed = append(removed, p)
		}
	}
	return removed
}

func (r *rouDi) release() {
	os.RemoveAll(r.dir)
	if r.lock != nil {
		r.lock.Close() // releases the flock
		r.lock = nil
	}
}

// lockFile takes an exclusive flock on path, waiting at most wait.
func lockFile(ctx context.Context, path string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("bench: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
