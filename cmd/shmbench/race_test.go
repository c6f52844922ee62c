//go:build linux && race

package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shmex/shmex/bench"
	"github.com/shmex/shmex/internal/testenv"
)

// TestShmipcOutsideRace measures the shmipc-go row, which a -race build
// skips (the library races on its own), with shmbench built without -race.
func TestShmipcOutsideRace(t *testing.T) {
	goTool := testenv.LookPath(t, "go")
	exe := filepath.Join(t.TempDir(), "shmbench")
	build := exec.Command(goTool, "build", "-o", exe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(exe, "-quick", "-json", "-progress=false", "-run", "^shmipc$").Output()
	if err != nil {
		t.Fatalf("shmbench: %v\n%s", err, out)
	}
	var r bench.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	row, ok := r.Row(bench.MetricShmipcRTT)
	if !ok || row.Skipped || row.Error != "" || row.Value <= 0 || row.Hist == nil {
		t.Fatalf("row %+v", row)
	}
}
