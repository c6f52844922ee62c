//go:build linux

package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/shmex/shmex/shm"
	"golang.org/x/sys/unix"
)

// Config holds the settings of a run. The zero value of a field means "the
// default of the chosen size" (see DefaultConfig, FullConfig, QuickConfig).
type Config struct {
	// Duration is the length of one measuring phase: the bulk and the
	// timed phase of a round trip, or one throughput run.
	Duration time.Duration
	// Iterations, when positive, replaces Duration: every phase runs
	// exactly this many round trips or messages.
	Iterations int
	// Warmup is the length of the untimed phase before measuring.
	Warmup time.Duration
	// Reps is the number of repetitions of every measurement.
	Reps int
	// Full selects the long version of sizes (larger copies, sweeps).
	Full bool
	// Quick selects smoke-test sizes: the harness runs end to end in a
	// fraction of a second per scenario, and the figures mean nothing.
	Quick bool
	// Pin pins the two processes of a pair to different CPUs.
	Pin bool
	// MemcpyBytes is the size of the buffers of the memory bandwidth
	// limit.
	MemcpyBytes int64
	// Sizes, when set, replaces the payload sizes of the sweep and proxy
	// scenarios (their rows are then named after these sizes).
	Sizes []int
	// RedisServer is the redis-server program: a name looked up in PATH or
	// a path. Empty means "redis-server"; "none" skips the Redis rows.
	RedisServer string
	// ChildTimeout bounds every wait on another process: its readiness, one
	// answer, its exit. The defaults scale with the machine's load (see
	// LoadFactor).
	ChildTimeout time.Duration
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Progress, when not nil, receives a live progress line (use it only
	// for a terminal).
	Progress io.Writer
}

// DefaultConfig returns the settings of a plain `shmbench` run: every
// scenario at modest sizes, well under a minute and a half on two cores.
func DefaultConfig() Config {
	return Config{
		Duration:     200 * time.Millisecond,
		Warmup:       50 * time.Millisecond,
		Reps:         3,
		MemcpyBytes:  256 << 20,
		ChildTimeout: time.Duration(LoadFactor()) * 10 * time.Second,
	}
}

// FullConfig returns the settings of `shmbench --full`: longer phases, more
// repetitions, larger buffers.
func FullConfig() Config {
	return Config{
		Duration:     2 * time.Second,
		Warmup:       250 * time.Millisecond,
		Reps:         5,
		Full:         true,
		MemcpyBytes:  1 << 30,
		ChildTimeout: time.Duration(LoadFactor()) * 30 * time.Second,
	}
}

// QuickConfig returns smoke-test settings for tests: every code path runs,
// the figures mean nothing.
func QuickConfig() Config {
	return Config{
		Duration:     15 * time.Millisecond,
		Warmup:       2 * time.Millisecond,
		Reps:         1,
		Quick:        true,
		MemcpyBytes:  4 << 20,
		ChildTimeout: time.Duration(LoadFactor()) * 20 * time.Second, // children under -race start slowly
	}
}

// LoadFactor is how many times more runnable threads than CPUs the machine
// has had over the last minute (its 1-minute load average over the CPU
// count), at least 1 and at most 10. The default ChildTimeout is multiplied
// by it: on a machine that other jobs keep busy, a child may wait its turn
// for a CPU for that much longer before it answers, and a run must not fail
// for it.
func LoadFactor() int {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 1
	}
	var load float64
	if _, err := fmt.Sscan(string(b), &load); err != nil {
		return 1
	}
	f := math.Ceil(load / float64(runtime.NumCPU()))
	return int(min(max(f, 1), 10))
}

// withDefaults fills zero fields from the defaults of the chosen size.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Full {
		d = FullConfig()
	}
	if c.Quick {
		d = QuickConfig()
	}
	if c.Duration <= 0 {
		c.Duration = d.Duration
	}
	if c.Warmup <= 0 {
		c.Warmup = d.Warmup
	}
	if c.Reps <= 0 {
		c.Reps = d.Reps
	}
	if c.MemcpyBytes <= 0 {
		c.MemcpyBytes = d.MemcpyBytes
	}
	if c.ChildTimeout <= 0 {
		c.ChildTimeout = d.ChildTimeout
	}
	if c.RedisServer == "" {
		c.RedisServer = "redis-server"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Env is what a scenario runs in: the run's Config, a scratch directory for
// shared-memory segments, the child processes it started, and CPU pinning.
// Create it with NewEnv and Close it when the run ends; Close kills every
// child still running and removes the scratch directory. An Env may be used
// by one scenario at a time.
type Env struct {
	Config

	cpus []int // CPUs this process may run on, for pinning

	mu       sync.Mutex
	oneCPU   int // in OnOneCPU: the CPU everything runs on, plus one; 0 otherwise
	dir      string
	children []*Child
	closed   bool

	progress *progress
}

// NewEnv returns an environment for cfg, with zero fields set to defaults.
func NewEnv(cfg Config) *Env {
	cfg = cfg.withDefaults()
	e := &Env{Config: cfg}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		for cpu := 0; cpu < 1024 && len(e.cpus) < set.Count(); cpu++ {
			if set.IsSet(cpu) {
				e.cpus = append(e.cpus, cpu)
			}
		}
	}
	if e.Pin && len(e.cpus) < 2 {
		e.Logger.Warn("pinning needs two CPUs; running unpinned", "cpus", e.cpus)
		e.Pin = false
	}
	e.progress = newProgress(cfg.Progress)
	return e
}

// Dir returns the run's scratch directory for shared-memory segments, a fresh
// directory shm.DefaultRoot()/bench-<pid>-<random> (mode 0700) created on
// first use and removed by Close.
func (e *Env) Dir() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return "", errors.New("bench: environment closed")
	}
	if e.dir != "" {
		return e.dir, nil
	}
	var b [4]byte
	rand.Read(b[:])
	dir := filepath.Join(shm.DefaultRoot(), fmt.Sprintf("bench-%d-%s", os.Getpid(), hex.EncodeToString(b[:])))
	if err := shm.EnsureDir(dir); err != nil {
		return "", fmt.Errorf("bench: scratch directory: %w", err)
	}
	e.dir = dir
	return dir, nil
}

// NewSegment creates a scratch segment (kind shm.KindScratch) of the given
// body size in Dir, populated (shm.Populate) as the exchange's rings are.
// The caller closes it; Close of the Env removes the file.
func (e *Env) NewSegment(name string, bodySize int) (*shm.Segment, error) {
	dir, err := e.Dir()
	if err != nil {
		return nil, err
	}
	return shm.Create(filepath.Join(dir, name), shm.KindScratch, int64(shm.HeaderSize+bodySize), nil, shm.Populate())
}

// Close kills the children still running and removes the scratch directory.
// It is idempotent.
func (e *Env) Close() error {
	e.mu.Lock()
	children := e.children
	e.children = nil
	dir := e.dir
	e.closed = true
	e.mu.Unlock()
	for _, c := range children {
		c.Kill()
	}
	e.progress.stop()
	if dir != "" {
		return os.RemoveAll(dir)
	}
	return nil
}

// CPUs returns the CPUs of the two sides of a pair when pinning is on: the
// parent's and the child's. ok is false when the run is unpinned.
func (e *Env) CPUs() (parent, child int, ok bool) {
	if !e.Pin {
		return -1, -1, false
	}
	return e.cpus[0], e.cpus[1], true
}

// LockThread locks the calling goroutine to its OS thread and, when pinning
// is on, pins that thread to the parent's CPU. Measuring loops run between
// LockThread and the returned function, which restores the thread's CPU set
// and unlocks it. Always call the returned function before the goroutine
// ends: a goroutine that exits locked takes its thread with it, and a child
// started from that thread would get its parent-death signal.
//
// Inside OnOneCPU it does nothing: the whole process is pinned there, and
// the goroutine stays unlocked so that runtime.Gosched stays cheap.
func (e *Env) LockThread() (unlock func()) {
	if _, ok := e.oneCPUOf(); ok {
		return func() {}
	}
	runtime.LockOSThread()
	parent, _, ok := e.CPUs()
	if !ok {
		return runtime.UnlockOSThread
	}
	restore, err := pinThread(parent)
	if err != nil {
		e.Logger.Warn("pin parent thread", "cpu", parent, "err", err)
		return runtime.UnlockOSThread
	}
	return func() {
		restore()
		runtime.UnlockOSThread()
	}
}

// pinThread pins the calling thread (which must be locked) to cpu and returns
// a function that restores its previous CPU set.
func pinThread(cpu int) (restore func(), err error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return nil, err
	}
	return func() { unix.SchedSetaffinity(0, &old) }, nil
}

// note returns the standard note of a row measured reps times: how the
// repetitions combine, and pinning.
func (e *Env) note(extra string, reps int) string {
	s := extra
	if reps > 1 {
		s = join(s, fmt.Sprintf("median of %d", reps))
	}
	if e.Pin {
		s = join(s, "pinned")
	}
	return s
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "; " + b
}
