// Package capitest builds libshmex and finds the compilers and interpreter
// that the tests and benchmarks of the C ABI and its bindings (C, Fortran,
// Python) drive, and serves the Go agents those programs call.
//
// A test that needs a tool it cannot find skips with the reason, except
// under CI=true, where it fails: CI cannot pass without running it (see
// [Need]).
package capitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/testenv"
)

// Lib is a built libshmex.
type Lib struct {
	// Dir holds the library: libshmex.so (and libshmex.a when built).
	Dir string
	// Shared is the path of libshmex.so.
	Shared string
	// Archive is the path of libshmex.a, or "" when not built.
	Archive string
	// Include is the directory of shmex.h.
	Include string
	// Module is the root of the shmex module.
	Module string
}

// ModuleDir returns the root directory of the shmex module that holds the
// current directory (go env GOMOD).
func ModuleDir(ctx context.Context) (string, error) {
	out, err := goCmd(ctx, "", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("capitest: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("capitest: not inside the shmex module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// goCmd is the go command: the one of the running toolchain when it is on
// PATH (go test and go run put it first), with cgo on.
func goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	return cmd
}

// Build builds libshmex.so (and, with archive, libshmex.a) from the module
// into dir, with the go command on PATH. It takes tens of seconds the first
// time on a machine (the Go runtime is compiled for cgo), a few seconds
// after.
func Build(ctx context.Context, dir string, archive bool) (*Lib, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return nil, fmt.Errorf("capitest: the go command is needed to build libshmex: %w", err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		return nil, fmt.Errorf("capitest: gcc is needed to build libshmex (cgo): %w", err)
	}
	mod, err := ModuleDir(ctx)
	if err != nil {
		return nil, err
	}
	lib := &Lib{Dir: dir, Shared: filepath.Join(dir, "libshmex.so"), Include: filepath.Join(mod, "capi"), Module: mod}
	build := func(mode, out string) error {
		var stderr bytes.Buffer
		cmd := goCmd(ctx, mod, "build", "-buildmode="+mode, "-o", out, "./capi")
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("capitest: go build -buildmode=%s ./capi: %w\n%s", mode, err, stderr.Bytes())
		}
		return nil
	}
	if err := build("c-shared", lib.Shared); err != nil {
		return nil, err
	}
	if archive {
		lib.Archive = filepath.Join(dir, "libshmex.a")
		if err := build("c-archive", lib.Archive); err != nil {
			return nil, err
		}
	}
	return lib, nil
}

var (
	cacheMu  sync.Mutex
	cacheDir string
	cached   *Lib
	cacheErr error
)

// Cached builds libshmex.so once per process into a temporary directory and
// returns it; Cleanup removes the directory (call it from TestMain after the
// tests).
func Cached() (*Lib, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if cached != nil || cacheErr != nil {
		return cached, cacheErr
	}
	dir, err := os.MkdirTemp("", "libshmex-")
	if err != nil {
		cacheErr = err
		return nil, err
	}
	cacheDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cached, cacheErr = Build(ctx, dir, false)
	return cached, cacheErr
}

var archiveOnce sync.Once

// CachedArchive is Cached, with libshmex.a built too (once).
func CachedArchive() (*Lib, error) {
	lib, err := Cached()
	if err != nil {
		return nil, err
	}
	archiveOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		a, aerr := Build(ctx, lib.Dir, true)
		cacheMu.Lock()
		if aerr != nil {
			cacheErr = aerr
		} else {
			cached.Archive = a.Archive
		}
		cacheMu.Unlock()
	})
	cacheMu.Lock()
	defer cacheMu.Unlock()
	return cached, cacheErr
}

// Cleanup removes what Cached built.
func Cleanup() {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if cacheDir != "" {
		os.RemoveAll(cacheDir)
	}
	cacheDir, cached, cacheErr = "", nil, errors.New("capitest: cleaned up")
}

// CI reports whether the tests run under CI (CI=true), where a missing tool
// is a failure rather than a skip.
func CI() bool { return testenv.InCI() }

// Need skips tb with what is missing when err is not nil, or fails it under
// CI=true (internal/testenv).
func Need(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		testenv.Missing(tb, "a tool of the C ABI's tests", err.Error())
	}
}

// Library is Cached for tests: it skips (or fails under CI) when the library
// cannot be built for want of a tool, and fails when the build fails.
func Library(tb testing.TB) *Lib {
	tb.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		Need(tb, fmt.Errorf("gcc is not on PATH (apt-get install gcc)"))
	}
	lib, err := Cached()
	if err != nil {
		tb.Fatal(err)
	}
	return lib
}
