package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
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
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	want := `mean: 3
summary: {N:3 Min:-1 Max:9 Mean:4}
histogram: map[1:2 5:1]
error: ValueError: mean of no values
"mean" called by name: 15 <nil>
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	// The exchange is gone.
	if _, err := os.Stat(filepath.Join(shm.DefaultRoot(), fmt.Sprintf("codegen-%d", os.Getpid()))); !os.IsNotExist(err) {
		t.Errorf("the exchange is left behind: %v", err)
	}
}
