// Package fortran_test drives the Fortran bindings (fortran/src/shmex.f90) from
// go test: it compiles the module, its tests and the simulation example with
// gfortran against libshmex and runs them against a Go agent.
package fortran_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/capi/capitest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	capitest.Cleanup()
	os.Exit(code)
}

func run(t *testing.T, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", prog, err, out)
	}
	return string(out)
}

// TestFortran runs tests/test_shmex.f90: statuses for bad handles, ids,
// futures, remote errors, a result lent by Go read in place, a put.
func TestFortran(t *testing.T) {
	lib := capitest.Library(t)
	prog := capitest.CompileFortran(t, lib, "test_shmex", "src/shmex.f90", "tests/test_shmex.f90", "tests/handlers.c")
	root := capitest.Root(t)
	calc := capitest.ServeCalc(t, root, "fortran")
	if out := run(t, prog, root, "fortran", calc.ID.String()); !strings.HasSuffix(out, "PASS\n") {
		t.Fatalf("output:\n%s", out)
	}
}

// TestSimulationExample runs examples/simulation.f90: a simulation rank
// fills a 2-D field in place in a loan, a Go analysis agent sums it from the
// rank's arena without a copy, and the rank checks the sum against its own.
func TestSimulationExample(t *testing.T) {
	lib := capitest.Library(t)
	prog := capitest.CompileFortran(t, lib, "simulation", "src/shmex.f90", "examples/simulation.f90")
	root := capitest.Root(t)
	capitest.ServeCalc(t, root, "simulation")
	out := run(t, prog, root, "simulation", "3")
	if !strings.Contains(out, "step 3: sum") || !strings.HasSuffix(out, "ok\n") {
		t.Fatalf("output:\n%s", out)
	}
	t.Logf("%s", out)
}
