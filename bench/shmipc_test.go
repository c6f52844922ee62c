//go:build linux && !race

package bench

import (
	"context"
	"testing"
)

// TestShmipcRow runs the shmipc-go peer at smoke-test sizes (a -race build
// skips the row; cmd/shmbench's TestShmipcOutsideRace measures it then).
func TestShmipcRow(t *testing.T) {
	rows, err := runShmipc(context.Background(), testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Metric != MetricShmipcRTT || rows[0].Skipped || rows[0].Value <= 0 || rows[0].Hist == nil {
		t.Fatalf("rows %+v", rows)
	}
}
