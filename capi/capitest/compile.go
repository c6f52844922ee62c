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

// CompileC compiles the C sources into the program out (in tb's temporary
// directory when out is a bare name) against lib: dynamically, with the
// library's directory as its run path, or statically with libshmex.a. It
// skips (or fails under CI) without gcc.
func CompileC(tb testing.TB, lib *Lib, static bool, out string, srcs ...string) string {
	tb.Helper()
	gcc, err := Tool("gcc", "gcc")
	Need(tb, err)
	if filepath.Base(out) == out {
		out = filepath.Join(tb.TempDir(), out)
	}
	args := append([]string{}, CFlags...)
	args = append(args, "-I", lib.Include, "-o", out)
	args = append(args, srcs...)
	if static {
		if lib.Archive == "" {
			tb.Fatal("capitest: libshmex.a was not built (use CachedArchive)")
		}
		args = append(args, lib.Archive, "-lpthread", "-lm")
	} else {
		args = append(args, "-L", lib.Dir, "-lshmex", "-Wl,-rpath,"+lib.Dir, "-lm")
	}
	run(tb, gcc, args...)
	return out
}

// run runs a compiler, failing tb with its output.
func run(tb testing.TB, prog string, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %v: %v\n%s", prog, args, err, out)
	}
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
	args := []string{"-std=f2008", "-O2", "-g", "-Wall", "-fcheck=all", "-J", dir, "-o", out}
	args = append(args, srcs...)
	args = append(args, "-L", lib.Dir, "-lshmex", fmt.Sprintf("-Wl,-rpath,%s", lib.Dir))
	run(tb, fc, args...)
	return out
}
