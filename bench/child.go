//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Child processes.
//
// A scenario that needs a peer process re-executes the current program with
// the environment variable ChildEnv naming a role registered with
// RegisterChild. The program's main (and the TestMain of every test package
// that runs scenarios) calls ChildMain first thing; in a child, ChildMain runs
// the role and exits, so the rest of the program never runs.
//
// Parent and child talk in lines:
//
//   - child to parent on a pipe that the child sees as file descriptor 3
//     (Tell, Ready); the parent reads them with Child.Expect. A role that
//     returns an error reports it as a line "error <message>" and exits 1.
//   - parent to child on the child's standard input (Child.Send); the child
//     reads them with Listen. When the parent closes the child's standard
//     input (Child.Close) or dies, the child exits at once.
//
// The child's standard output and error go to the parent's standard error,
// so they never corrupt a report on standard output.

// Environment variables read by ChildMain.
const (
	ChildEnv        = "SHMBENCH_CHILD"         // role name
	childArgsEnv    = "SHMBENCH_CHILD_ARGS"    // JSON array of strings
	childCPUEnv     = "SHMBENCH_CHILD_CPU"     // CPU to pin the role's thread to
	childOneCPUEnv  = "SHMBENCH_CHILD_ONE_CPU" // CPU to pin the whole child to (Env.OnOneCPU)
	childTimeoutEnv = "SHMBENCH_CHILD_TIMEOUT" // the parent's ChildTimeout
	childCtlFD      = 3
)

var (
	rolesMu sync.Mutex
	roles   = map[string]func(args []string) error{}
)

// RegisterChild registers a child role under name. Call it from an init
// function. The role runs in the child on the main goroutine, locked to its
// OS thread (and pinned to the child's CPU when the run pins), with the
// arguments given to Env.StartChild; a child started inside Env.OnOneCPU
// runs the role unlocked, with the whole process on the parent's CPU and
// GOMAXPROCS 1. It panics on a duplicate name.
func RegisterChild(name string, role func(args []string) error) {
	rolesMu.Lock()
	defer rolesMu.Unlock()
	if _, dup := roles[name]; dup {
		panic(fmt.Sprintf("bench: child role %q registered twice", name))
	}
	roles[name] = role
}

// ChildMain runs the child role named by the environment and exits, or
// returns at once when this process is not a bench child. Call it first thing
// in main, and in TestMain of any test package that runs scenarios:
//
//	func TestMain(m *testing.M) {
//		bench.ChildMain()
//		os.Exit(m.Run())
//	}
func ChildMain() {
	name := os.Getenv(ChildEnv)
	if name == "" {
		return
	}
	os.Exit(childMain(name))
}

// child-side state: the control pipe and the lines from the parent.
var (
	ctlMu    sync.Mutex
	ctl      *os.File
	stdinCh  = make(chan string, 16)
	cTimeout = 10 * time.Second
)

func childMain(name string) int {
	argsJSON, cpuStr, timeoutStr := os.Getenv(childArgsEnv), os.Getenv(childCPUEnv), os.Getenv(childTimeoutEnv)
	oneCPUStr := os.Getenv(childOneCPUEnv)
	// Keep our variables from leaking into the role's own children
	// (redis-server and the like are not bench children).
	for _, v := range []string{ChildEnv, childArgsEnv, childCPUEnv, childOneCPUEnv, childTimeoutEnv} {
		os.Unsetenv(v)
	}
	ctl = os.NewFile(childCtlFD, "shmbench-control")
	fail := func(err error) int {
		Tell("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
		fmt.Fprintf(os.Stderr, "shmbench child %s (pid %d): %v\n", name, os.Getpid(), err)
		return 1
	}
	rolesMu.Lock()
	role := roles[name]
	rolesMu.Unlock()
	if role == nil {
		return fail(fmt.Errorf("unknown child role %q", name))
	}
	var args []string
	if argsJSON != "" {
		if err := json.Unmarshal([]byte(argsJSON), &args); err != nil {
			return fail(fmt.Errorf("bad %s: %w", childArgsEnv, err))
		}
	}
	if t, err := time.ParseDuration(timeoutStr); err == nil && t > 0 {
		cTimeout = t
	}
	if oneCPUStr != "" {
		// The whole process on one CPU, GOMAXPROCS 1, the role's
		// goroutine unlocked (see Env.OnOneCPU).
		cpu, err := strconv.Atoi(oneCPUStr)
		if err != nil {
			return fail(fmt.Errorf("bad %s: %w", childOneCPUEnv, err))
		}
		if _, err := pinProcess(cpu); err != nil {
			return fail(fmt.Errorf("pin to CPU %d: %w", cpu, err))
		}
	} else {
		runtime.LockOSThread()
	}
	if cpuStr != "" {
		cpu, err := strconv.Atoi(cpuStr)
		if err != nil {
			return fail(fmt.Errorf("bad %s: %w", childCPUEnv, err))
		}
		if _, err := pinThread(cpu); err != nil {
			return fail(fmt.Errorf("pin to CPU %d: %w", cpu, err))
		}
	}
	// exiting is held by whichever side ends the process first: the role
	// returning (its status stands, even when the parent closes our
	// standard input right after reading our error) or the parent
	// stopping us.
	var exiting sync.Mutex
	go func() {
		// The parent closes our standard input to stop us; a dead
		// parent closes it too. Either way, leave now.
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			stdinCh <- sc.Text()
		}
		exiting.Lock()
		os.Exit(0)
	}()
	err := role(args)
	exiting.Lock()
	if err != nil {
		return fail(err)
	}
	return 0
}

// Tell sends one line to the parent (child side). It is safe for concurrent
// use.
func Tell(format string, args ...any) error {
	ctlMu.Lock()
	defer ctlMu.Unlock()
	if ctl == nil {
		return errors.New("bench: Tell outside a child")
	}
	line := fmt.Sprintf(format, args...)
	_, err := io.WriteString(ctl, strings.ReplaceAll(line, "\n", " ")+"\n")
	return err
}

// Ready tells the parent that the child is ready, with an optional detail
// (an address, say) that Child.Expect(ctx, "ready") returns.
func Ready(detail string) error { return Tell("ready %s", detail) }

// Listen returns the next line from the parent (child side), waiting at most
// ChildTimeout.
func Listen() (string, error) {
	t := time.NewTimer(cTimeout)
	defer t.Stop()
	select {
	case l := <-stdinCh:
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("bench: no word from the parent within %v", cTimeout)
	}
}

// ChildTimeout returns the parent's bound on waits (child side): a role must
// not wait longer than this for the parent.
func ChildTimeout() time.Duration { return cTimeout }

// Child is a running child process (parent side).
type Child struct {
	Role string

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string
	done    chan struct{}
	waitErr error
	timeout time.Duration

	closeOnce sync.Once
	closeErr  error
}

// StartChild starts the current program as a child in the given role. The
// child dies with the parent (PR_SET_PDEATHSIG), is pinned to the child CPU
// when the run pins (to the parent's one CPU inside OnOneCPU), and is
// killed by Close of the Env if the scenario did not close it.
func (e *Env) StartChild(ctx context.Context, role string, args ...string) (*Child, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	a, _ := json.Marshal(args)
	// The -test.* arguments keep a test binary whose TestMain forgot to
	// call ChildMain from running the tests (and forking again); shmbench
	// never sees them because ChildMain exits first.
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(),
		ChildEnv+"="+role,
		childArgsEnv+"="+string(a),
		childTimeoutEnv+"="+e.ChildTimeout.String())
	if cpu, ok := e.oneCPUOf(); ok {
		cmd.Env = append(cmd.Env, childOneCPUEnv+"="+strconv.Itoa(cpu))
	} else if _, cpu, ok := e.CPUs(); ok {
		cmd.Env = append(cmd.Env, childCPUEnv+"="+strconv.Itoa(cpu))
	}
	// A race-enabled child sleeps 1 s at exit by default, and every
	// scenario waits for its children to exit (see internal/childproc).
	if !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	// Pdeathsig fires when the thread that forked the child exits: the Go
	// runtime keeps its threads except those of goroutines that end while
	// locked, which Env.LockThread's contract rules out.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: false}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{w}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("bench: start child %s: %w", role, err)
	}
	w.Close()
	c := &Child{Role: role, cmd: cmd, stdin: stdin, lines: make(chan string, 64),
		done: make(chan struct{}), timeout: e.ChildTimeout}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 4096), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		r.Close()
		close(c.lines)
	}()
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	e.mu.Lock()
	closed := e.closed
	if !closed {
		e.children = append(e.children, c)
	}
	e.mu.Unlock()
	if closed {
		c.Kill()
		return nil, errors.New("bench: environment closed")
	}
	e.Logger.Debug("child started", "role", role, "pid", cmd.Process.Pid, "args", args)
	return c, nil
}

// Pid returns the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Expect waits for the child's next line, which must start with the word
// want, and returns the rest of the line. It fails when the child reports an
// error, exits, sends another word, or stays silent for the Env's
// ChildTimeout, and when ctx is done.
func (c *Child) Expect(ctx context.Context, want string) (string, error) {
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case l, ok := <-c.lines:
		if !ok {
			select {
			case <-c.done:
				return "", fmt.Errorf("bench: child %s exited before %q: %v", c.Role, want, c.waitErr)
			case <-t.C:
				return "", fmt.Errorf("bench: child %s closed its control pipe before %q", c.Role, want)
			}
		}
		word, rest, _ := strings.Cut(l, " ")
		switch word {
		case want:
			return rest, nil
		case "error":
			return "", fmt.Errorf("bench: child %s: %s", c.Role, rest)
		}
		return "", fmt.Errorf("bench: child %s said %q, want %q", c.Role, l, want)
	case <-t.C:
		return "", fmt.Errorf("bench: child %s did not say %q within %v", c.Role, want, c.timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Send writes one line to the child's standard input.
func (c *Child) Send(line string) error {
	_, err := io.WriteString(c.stdin, line+"\n")
	return err
}

// Exited reports whether the child has exited.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Done is closed when the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Context returns a context derived from parent that is also cancelled when
// the child exits, so that a wait on the child's answers fails when it dies
// instead of hanging. Call cancel when done with it.
func (c *Child) Context(parent context.Context) (ctx context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithCancel(parent)
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Wait waits at most the Env's ChildTimeout for the child to exit by itself
// and returns its exit error (nil for status 0). It does not kill the child.
func (c *Child) Wait() error {
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.waitErr
	case <-t.C:
		return fmt.Errorf("bench: child %s still running after %v", c.Role, c.timeout)
	}
}

// Close stops the child: it closes the child's standard input, which makes a
// bench child exit, waits a moment, and kills it if it is still there. It
// returns the child's exit error when it exited with an error by itself.
// Close is idempotent and safe to call after Kill.
func (c *Child) Close() error {
	c.closeOnce.Do(func() {
		c.stdin.Close()
		t := time.NewTimer(2 * time.Second)
		defer t.Stop()
		select {
		case <-c.done:
			c.closeErr = c.waitErr
		case <-t.C:
			c.Kill()
		}
	})
	return c.closeErr
}

// Kill kills the child with SIGKILL and reaps it. It is idempotent.
func (c *Child) Kill() {
	if !c.Exited() {
		c.cmd.Process.Signal(syscall.SIGKILL)
	}
	c.stdin.Close()
	go func() {
		for range c.lines {
		}
	}()
	<-c.done
}

// Watchdog is a context for a child's receive loop that ends once the loop
// has made no progress for ChildTimeout: a loop that calls Progress after
// every message gets the protection of a per-receive timeout without
// creating a timer per message (which would add to the latency measured).
type Watchdog struct {
	context.Context
	progress atomic.Uint64
	cancel   context.CancelFunc
}

// NewWatchdog starts a watchdog (child side); Stop it when the loop ends.
func NewWatchdog() *Watchdog { return newWatchdog(context.Background(), ChildTimeout()) }

// newWatchdog starts a watchdog derived from parent that ends after timeout
// without progress.
func newWatchdog(parent context.Context, timeout time.Duration) *Watchdog {
	ctx, cancel := context.WithCancel(parent)
	w := &Watchdog{Context: ctx, cancel: cancel}
	go func() {
		t := time.NewTicker(timeout)
		defer t.Stop()
		last := uint64(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if p := w.progress.Load(); p == last {
					cancel()
					return
				} else {
					last = p
				}
			}
		}
	}()
	return w
}

// Progress records that the loop made progress.
func (w *Watchdog) Progress() { w.progress.Add(1) }

// Stop ends the watchdog.
func (w *Watchdog) Stop() { w.cancel() }
