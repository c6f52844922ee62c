package capitest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// CFlags are the flags every C program of the tests is compiled with.
var CFlags = []string{"-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread"}

// BuildC compiles the C sources into the program out against lib:
// dynamically, with the library's directory as its run path, or statically
// with libshmex.a.
func BuildC(ctx context.Context, lib *Lib, static bool, out string, srcs ...string) error {
	gcc, err := Tool("gcc", "gcc")
	if err != nil {
		return err
	}
	args := append([]string{}, CFlags...)
	args = append(args, "-I", lib.Include, "-o", out)
	args = append(args, srcs...)
	if static {
		if lib.Archive == "" {
			return fmt.Errorf("capitest: libshmex.a was not built (use CachedArchive or Build with archive)")
		}
		args = append(args, lib.Archive, "-lpthread", "-lm")
	} else {
		args = append(args, "-L", lib.Dir, "-lshmex", "-Wl,-rpath,"+lib.Dir, "-lm")
	}
	return compile(ctx, gcc, args...)
}

// compile runs a compiler, with its output in the error.
func compile(ctx context.Context, prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w\n%s", prog, args, err, out)
	}
	return nil
}

// CompileC is BuildC for tests: out is made in tb's temporary directory when
// it is a bare name; it skips (or fails under CI) without gcc and fails on a
// compile error.
func CompileC(tb testing.TB, lib *Lib, static bool, out string, srcs ...string) string {
	tb.Helper()
	_, err := Tool("gcc", "gcc")
	Need(tb, err)
	if filepath.Base(out) == out {
		out = filepath.Join(tb.TempDir(), out)
	}
	if err := BuildC(context.Background(), lib, static, out, srcs...); err != nil {
		tb.Fatal(err)
	}
	return out
}

// CompileFortran compiles Fortran sources (the shmex module first) into the
// program out against libshmex.so; module files go to a temporary
// directory. It skips (or fails under CI) without gfortran.
func CompileFortran(tb testing.TB, lib *Lib, out string, srcs ...string) string {
	tb.Helper()
	fc, err := Tool("gfortran", "gfortran")
	Need(tb, err)
	dir := tb.TempDir()
	if filepath.Base(out) == out {
		out = filepath.Join(dir, out)
	}
	// -fno-backtrace: libgfortran would otherwise replace the Go runtime's
	// handlers of SIGSEGV, SIGBUS and SIGFPE (see docs/embedding.md).
	args := []string{"-std=f2008", "-O2", "-g", "-Wall", "-fcheck=all", "-fno-backtrace", "-J", dir, "-o", out}
	args = append(args, srcs...)
	args = append(args, "-L", lib.Dir, "-lshmex", fmt.Sprintf("-Wl,-rpath,%s", lib.Dir))
	if err := compile(context.Background(), fc, args...); err != nil {
		tb.Fatal(err)
	}
	return out
}
