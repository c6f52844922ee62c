//go:build linux && cgo

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shmex/shmex/capi/capitest"
)

// readmeExamples returns the code blocks of the README whose first line
// names a file with "README: NAME", by name.
func readmeExamples(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```[a-z]+\n([^\n]*README: ([a-z_.0-9]+)[^\n]*\n.*?)```")
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		out[m[2]] = m[1]
	}
	return out
}

// TestReadmeExamples compiles and runs the C, Fortran and Python examples of
// the README's "Other languages" section against a Go Calc agent.
func TestReadmeExamples(t *testing.T) {
	ex := readmeExamples(t)
	for _, name := range []string{"client.c", "simulation.f90", "example.py"} {
		if ex[name] == "" {
			t.Fatalf("the README has no %s example", name)
		}
	}
	lib := capitest.Library(t)
	root := capitest.Root(t)
	capitest.ServeCalc(t, root, "readme")
	write := func(t *testing.T, name string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(ex[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(t *testing.T, out string, want ...string) {
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}
	t.Run("C", func(t *testing.T) {
		prog := capitest.CompileC(t, lib, false, "client", write(t, "client.c"))
		check(t, runProgram(t, prog, "readme", root), "2 + 40 = 42\n", "sum = 500000.0\n")
	})
	t.Run("Fortran", func(t *testing.T) {
		prog := capitest.CompileFortran(t, lib, "simulation", "../fortran/src/shmex.f90", write(t, "simulation.f90"))
		check(t, runProgram(t, prog, "readme", root), "agent: ")
	})
	t.Run("Python", func(t *testing.T) {
		py, err := capitest.FindPython()
		capitest.Need(t, err)
		if !py.NumPy {
			capitest.Need(t, errors.New("numpy is missing from "+py.Path))
		}
		cmd := exec.Command(py.Path, write(t, "example.py"), "readme", root)
		cmd.Env = append(os.Environ(), "SHMEX_LIBRARY="+lib.Shared, "PYTHONPATH="+filepath.Join(lib.Module, "python"),
			"PYTHONDONTWRITEBYTECODE=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		check(t, string(out), "2 + 40 = 42\n", "sum = 500000.0\n", "21 * 2 = 42\n")
	})
}
