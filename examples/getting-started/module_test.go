package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/testenv"
	"github.com/shmex/shmex/shm"
)

// typesGo is a message type of the user's own, with msgp codecs made by
// `go tool msgp`: what docs/getting-started.md says to set up.
const typesGo = `package main

` + "//go:" + `generate go tool msgp -io=false -tests=false

// Greeting is a message type of this module.
type Greeting struct {
	Text string ` + "`msg:\"text\"`" + `
}
`

// TestOwnModule follows docs/getting-started.md: a module of one's own
// depends on shmex through a clone (this repository) without any proxy
// (GOPROXY=off: the module is on none), adds msgp as a tool for its own
// message types, builds the getting-started program, and runs it as two
// processes. A workspace (go.work) instead of the replace builds it too.
func TestOwnModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module with the go command")
	}
	goCmd := testenv.LookPath(t, "go")
	clone, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(clone, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/tinylib/msgp (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no msgp requirement in go.mod")
	}
	msgpVersion := string(m[1])
	main, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = dir
		// No proxy: every module but shmex comes from the module cache
		// (a user's go command fetches those from the public proxy).
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOSUMDB=off", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local", "GOWORK=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	write := func(dir string, files map[string]string) {
		t.Helper()
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	// 1. A replace directive to the clone.
	dir := t.TempDir()
	write(dir, map[string]string{"main.go": string(main), "types.go": typesGo})
	run(dir, "mod", "init", "example.com/hello")
	run(dir, "mod", "edit", "-require=github.com/shmex/shmex@v0.0.0", "-replace=github.com/shmex/shmex="+clone)
	run(dir, "mod", "tidy")
	// Before the tool is added: the error the doc explains.
	cmd := exec.CommandContext(ctx, goCmd, "tool", "msgp")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), `no such tool "msgp"`) {
		t.Errorf("go tool msgp before go get -tool: %v\n%s", err, out)
	}
	run(dir, "get", "-tool", "github.com/tinylib/msgp@"+msgpVersion)
	run(dir, "generate", "./...")
	if _, err := os.Stat(filepath.Join(dir, "types_gen.go")); err != nil {
		t.Fatalf("go generate with msgp: %v", err)
	}
	bin := filepath.Join(dir, "hello")
	run(dir, "build", "-o", bin, ".")

	root := filepath.Join(t.TempDir(), "shm")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	start := func(role string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.CommandContext(ctx, bin, role)
		cmd.Env = append(os.Environ(), shm.RootEnv+"="+root)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	client, clientOut := start("client")
	agent, agentOut := start("agent")
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, clientOut)
	}
	if err := agent.Wait(); err != nil {
		t.Fatalf("agent: %v\n%s", err, agentOut)
	}
	if want := fmt.Sprintf("hello, world, from process %d\n", agent.Process.Pid); clientOut.String() != want {
		t.Errorf("client printed %q, want %q", clientOut, want)
	}

	// 2. A workspace instead: no replace in go.mod.
	wdir := t.TempDir()
	write(wdir, map[string]string{"main.go": string(main)})
	run(wdir, "mod", "init", "example.com/hello")
	run(wdir, "work", "init", ".", clone)
	cmd = exec.CommandContext(ctx, goCmd, "build", "-o", filepath.Join(wdir, "hello"), ".")
	cmd.Dir = wdir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOSUMDB=off", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in a workspace: %v\n%s", err, out)
	}
}
