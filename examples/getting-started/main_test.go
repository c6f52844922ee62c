package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/shm"
)

// envRole makes the test binary run main as the role it names, the way
// `go run . agent` and `go run . client` would.
const envRole = "GETTING_STARTED_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		os.Args = []string{"getting-started", role}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestTwoProcesses runs the client first, then the agent, each in its own
// process: the client waits for the agent, calls it and shuts it down, and
// both exit cleanly. The exchange lives in a temporary root (SHMEX_ROOT).
func TestTwoProcesses(t *testing.T) {
	root := t.TempDir()
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	start := func(role string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envRole+"="+role, shm.RootEnv+"="+root)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		return cmd, &out
	}
	client, clientOut := start("client")
	agent, agentOut := start("agent")
	wait := func(cmd *exec.Cmd, out *bytes.Buffer, who string) {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v\n%s", who, err, out)
			}
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%s still running after 2 minutes:\n%s", who, out)
		}
	}
	wait(client, clientOut, "client")
	wait(agent, agentOut, "agent")
	want := fmt.Sprintf("hello, world, from process %d\n", agent.Process.Pid)
	if got := clientOut.String(); got != want {
		t.Errorf("client printed %q, want %q", got, want)
	}
	if s := agentOut.String(); strings.TrimSpace(s) != "" {
		t.Errorf("agent printed %q", s)
	}
}

// TestDocShowsMain: docs/getting-started.md shows this program whole, as
// it is.
func TestDocShowsMain(t *testing.T) {
	doc, err := os.ReadFile("../../docs/getting-started.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	// main.go from its package clause on (the doc has no use for the
	// command's doc comment).
	code := string(src[bytes.Index(src, []byte("package main")):])
	if !strings.Contains(string(doc), "```go\n"+code+"```\n") {
		t.Error("docs/getting-started.md does not show main.go as it is: copy it from `package main` on")
	}
}
