package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/agent"
	"github.com/shmex/shmex/shm"
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
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "reserved room for 2 payloads of 8 MiB") ||
		!strings.HasPrefix(lines[1], "loan: 8 MiB lent in place") || !strings.HasPrefix(lines[2], "put: 8 MiB copied in") {
		t.Fatalf("output:\n%s", out.String())
	}
	for _, l := range lines[1:] {
		var got, want uint64
		i := strings.Index(l, "agent to ")
		if i < 0 {
			t.Fatalf("line %q", l)
		}
		if _, err := fmt.Sscanf(l[i:], "agent to %d (want %d)", &got, &want); err != nil || got != want {
			t.Fatalf("line %q: sums %d and %d (%v)", l, got, want, err)
		}
	}
	// The exchange, under the default root while the example ran, is gone.
	if _, err := os.Stat(filepath.Join(shm.DefaultRoot(), fmt.Sprintf("zero-copy-%d", os.Getpid()))); !os.IsNotExist(err) {
		t.Errorf("the exchange is left behind: %v", err)
	}
}
