package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
)

// TestMain lets the test binary serve as the agent's program too.
func TestMain(m *testing.M) {
	agent.ServeIfChild()
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, 8<<20); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "lent 8 MiB in place") || !strings.HasPrefix(lines[1], "copied 8 MiB in with Put") {
		t.Fatalf("output:\n%s", out.String())
	}
	for _, l := range lines {
		var got, want uint64
		i := strings.Index(l, "summed it to ")
		if i < 0 {
			t.Fatalf("line %q", l)
		}
		if _, err := fmtSscanf(l[i:], &got, &want); err != nil || got != want {
			t.Fatalf("line %q: sums %d and %d (%v)", l, got, want, err)
		}
	}
}

func fmtSscanf(s string, got, want *uint64) (int, error) {
	return fmt.Sscanf(s, "summed it to %d (want %d)", got, want)
}
