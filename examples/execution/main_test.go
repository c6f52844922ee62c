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

// TestMain lets the test binary serve as the workers' program too: the
// process launcher re-runs os.Executable.
func TestMain(m *testing.M) {
	agent.ServeIfChild()
	os.Exit(m.Run())
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"worker 0 runs in its own process", "worker 1 runs in its own process",
		"sum of squares 0..5 computed by the workers: 55", "worker 1 shut down"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The exchange, under the default root while the example ran, is gone.
	if _, err := os.Stat(filepath.Join(shm.DefaultRoot(), fmt.Sprintf("execution-%d", os.Getpid()))); !os.IsNotExist(err) {
		t.Errorf("the exchange is left behind: %v", err)
	}
}
