// Package redistest runs redis-server processes for tests: each on a free
// loopback port, in a directory of its own, killed when the test ends, and
// able to stop and come back on the same port (with its append-only file,
// so that what it acknowledged survives) to test what clients do while it is
// gone.
//
// A test that needs Redis calls [Start]; when redis-server is not installed
// the test is skipped with the reason, or fails when the environment
// variable CI is "true" (.ci/run installs it; see internal/testenv).
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/sysproc"
	"github.com/shmex/shmex/internal/testenv"
)

// Path returns the path of redis-server, or a reason why there is none.
func Path() (string, string) {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", "redis-server not found on PATH (apt-get install redis-server)"
	}
	return p, ""
}

// Require skips tb when redis-server is missing (fails it when CI=true,
// see internal/testenv) and returns its path.
func Require(tb testing.TB) string {
	tb.Helper()
	return testenv.LookPath(tb, "redis-server")
}

// Server is a redis-server process on a loopback port.
type Server struct {
	// Addr is host:port.
	Addr string

	path     string
	dir      string
	port     int
	volatile bool // no persistence (benchmarks: an fsync per write would be what they measure)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *bytes.Buffer
}

// Start starts a redis-server for tb (see [Require]) with an append-only
// file synced at every write, and stops it and removes its directory when
// tb ends.
func Start(tb testing.TB) *Server { tb.Helper(); return start(tb, false) }

// StartVolatile is Start for a server without persistence, as benchmarks
// want it (an fsync per write would be what they measure).
func StartVolatile(tb testing.TB) *Server { tb.Helper(); return start(tb, true) }

func start(tb testing.TB, volatile bool) *Server {
	tb.Helper()
	path := Require(tb)
	dir := tb.TempDir()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		s := &Server{path: path, dir: dir, port: port, volatile: volatile, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		if err = s.start(); err == nil {
			tb.Cleanup(func() { s.Kill() })
			return s
		}
	}
	tb.Fatalf("redistest: start redis-server: %v", err)
	return nil
}

// StartProcess is Start for a process without a testing.TB (a test child):
// the caller kills the server.
func StartProcess(dir string) (*Server, error) {
	path, why := Path()
	if why != "" {
		return nil, fmt.Errorf("redistest: %s", why)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{path: path, dir: dir, port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	return s, s.start()
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	out := &bytes.Buffer{}
	persist := []string{"--appendonly", "yes", "--appendfsync", "always"}
	if s.volatile {
		persist = []string{"--appendonly", "no"}
	}
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", ""}, persist...)
	args = append(args, "--dir", s.dir, "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning")
	cmd := exec.Command(s.path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysproc.DieWithParent()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done, s.out = cmd, done, out
	if err := waitReady(s.Addr, done, 20*time.Second); err != nil {
		cmd.Process.Kill()
		<-done
		s.cmd = nil
		return fmt.Errorf("%w (%s)", err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// Kill kills the server (SIGKILL): what it acknowledged is in its
// append-only file. A no-op when it is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port and directory, after
// Kill; the data comes back from the append-only file.
func (s *Server) Restart() error {
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The port may linger a moment after the kill.
		if err = s.start(); err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Wipe removes the server's data files (after Kill): the next Restart
// comes back empty, as a server without persistence, or a replica that
// lagged, would.
func (s *Server) Wipe() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Running reports whether the server process runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Dir returns the server's data directory.
func (s *Server) Dir() string { return filepath.Clean(s.dir) }

func waitReady(addr string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 64)
			var n int
			if _, err = conn.Write([]byte("PING\r\n")); err == nil {
				n, err = conn.Read(buf)
			}
			conn.Close()
			if err == nil && bytes.HasPrefix(buf[:n], []byte("+PONG")) {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("redistest: redis-server on %s exited at start", addr)
		case <-ctx.Done():
			return fmt.Errorf("redistest: redis-server on %s not ready within %v", addr, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
