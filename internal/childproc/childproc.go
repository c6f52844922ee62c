// Package childproc runs test children: the test binary re-run as another
// process with a role named in its environment.
//
// A test package that spawns children calls Main from its TestMain with the
// roles it offers; the parent calls Start with a role and arguments. The child
// runs the role's function and exits, never reaching the tests. Children talk
// to the parent through their standard output, one line per report, and read
// commands from standard input.
package childproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/sysproc"
)

const (
	envRole = "SHMEX_TEST_CHILD"
	envArgs = "SHMEX_TEST_CHILD_ARGS"
	argSep  = "\x1f"
)

// Role is the body of a child process. Its return value is the exit status.
type Role func(args []string) int

// IsChild reports whether this process is a test child (Main will run a
// role instead of the tests). A TestMain that must clean up after the tests
// calls Main when it is, and m.Run itself otherwise.
func IsChild() bool { return os.Getenv(envRole) != "" }

// Main dispatches to a role when this process is a child, and otherwise runs
// the tests. Call it as the whole of TestMain.
func Main(m *testing.M, roles map[string]Role) {
	if name := os.Getenv(envRole); name != "" {
		role, ok := roles[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "childproc: unknown role %q\n", name)
			os.Exit(3)
		}
		var args []string
		if a := os.Getenv(envArgs); a != "" {
			args = strings.Split(a, argSep)
		}
		os.Exit(role(args))
	}
	os.Exit(m.Run())
}

// Child is a running child process.
type Child struct {
	Cmd     *exec.Cmd
	lines   chan string
	in      io.WriteCloser
	done    chan struct{}
	err     error // the exit error, set before done is closed
	readErr error // why reading lines stopped early, set before lines is closed
}

// Start runs the test binary as a child in the given role. The child is
// killed when the test ends if it is still running.
func Start(tb testing.TB, role string, args ...string) *Child {
	tb.Helper()
	c, err := StartCmd(role, args...)
	if err != nil {
		tb.Fatalf("start child %s: %v", role, err)
	}
	tb.Cleanup(func() { c.Kill() })
	return c
}

// StartCmd is Start without a testing.TB: the caller must Kill or Wait.
func StartCmd(role string, args ...string) (*Child, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"="+role, envArgs+"="+strings.Join(args, argSep))
	// Under -race, a process sleeps 1 s at exit by default (to let racy
	// goroutines report); tests start hundreds of children.
	if !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		cmd.Env = append(cmd.Env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = sysproc.DieWithParent()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Child{Cmd: cmd, lines: make(chan string, 1024), in: in, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		c.readErr = sc.Err() // a line longer than the buffer
		close(c.lines)
		// Keep the pipe flowing: a child blocked writing would never exit.
		io.Copy(io.Discard, out)
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// ErrNoLine means the child exited, its output could not be read, or the
// timeout passed before a line came.
var ErrNoLine = errors.New("childproc: no line from child")

// Line returns the child's next output line, waiting at most timeout.
func (c *Child) Line(timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l, ok := <-c.lines:
		if !ok {
			if c.readErr != nil {
				return "", fmt.Errorf("%w: reading the child's output: %w", ErrNoLine, c.readErr)
			}
			return "", fmt.Errorf("%w: child exited", ErrNoLine)
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("%w within %v", ErrNoLine, timeout)
	}
}

// Lines returns the channel of the child's output lines; it is closed when
// the child's output ends.
func (c *Child) Lines() <-chan string { return c.lines }

// Send writes one line to the child's standard input.
func (c *Child) Send(line string) error {
	_, err := io.WriteString(c.in, line+"\n")
	return err
}

// CloseStdin closes the child's standard input.
func (c *Child) CloseStdin() error { return c.in.Close() }

// Kill sends SIGKILL and waits for the child to be reaped.
func (c *Child) Kill() {
	if c.Cmd.Process != nil {
		c.Cmd.Process.Signal(syscall.SIGKILL)
	}
	// Drain output so the reader goroutine can finish.
	go func() {
		for range c.lines {
		}
	}()
	<-c.done
}

// Wait waits at most timeout for the child to exit and returns its error
// (nil on exit status 0). The output must be drained by the caller or it is
// discarded here.
func (c *Child) Wait(timeout time.Duration) error {
	go func() {
		for range c.lines {
		}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		return fmt.Errorf("childproc: child still running after %v", timeout)
	}
}

// Done is closed when the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// outMu keeps a child's report lines whole.
var outMu sync.Mutex

// Say writes one report line of a child to its standard output, the words
// separated by spaces. A line written (Say returned) is one the parent
// reads, whatever happens to the child next; lines of several goroutines
// never interleave.
func Say(words ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Println(words...)
}

// Fail reports "error <message>" and returns 1: a role's exit status when
// it cannot go on.
func Fail(format string, args ...any) int {
	Say("error", fmt.Sprintf(format, args...))
	return 1
}
