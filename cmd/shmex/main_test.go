package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/proxystore"
)

func TestMain(m *testing.M) {
	childproc.Main(m, map[string]childproc.Role{"owner": ownerChild})
}

// ownerChild joins exchange args[1] under root args[0], registers an agent
// named "doomed", opens its mailbox, puts a payload in an arena, prints the
// agent's id and waits to be killed.
func ownerChild(args []string) int {
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx := context.Background()
	id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Doomed"}, exchange.WithName("doomed"))
	if err == nil {
		_, err = x.Mailbox(ctx, id)
	}
	if err == nil { // and an arena with a payload in it
		var a *proxystore.Arena
		if a, err = proxystore.OpenArena(x.Dir()); err == nil {
			_, err = a.Put(ctx, []byte("left behind"))
		}
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("id", id)
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
	}
	return 0
}

func shmex(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLsGcRm(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	if code, out, _ := shmex(t, "-root", root, "ls"); code != exitOK || strings.Count(out, "\n") != 1 {
		t.Fatalf("ls of an empty root: %d %q", code, out)
	}
	x, err := exchange.Open("lab", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Counter", Implements: []string{"Agent"}}, exchange.WithName("counter")); err != nil {
		t.Fatal(err)
	}
	kid := childproc.Start(t, "owner", root, "lab")
	l, err := kid.Line(30 * time.Second)
	if err != nil || !strings.HasPrefix(l, "id ") {
		t.Fatalf("child: %q %v", l, err)
	}
	code, out, errs := shmex(t, "-root", root, "ls")
	if code != exitOK || !strings.Contains(out, "lab") {
		t.Fatalf("ls: %d %q %q", code, out, errs)
	}
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) != 5 || f[1] != "3" || f[2] != "2" || f[3] != "0" {
		t.Errorf("ls row %q: want 3 locks (this process, the child's exchange and arena), 2 active, 0 terminated", f)
	}
	code, out, errs = shmex(t, "-root", root, "ls", "lab")
	if code != exitOK || !strings.Contains(out, "Counter (Agent)") || !strings.Contains(out, "doomed") || strings.Count(out, "active") != 2 {
		t.Fatalf("ls lab: %d %q %q", code, out, errs)
	}
	if code, _, errs := shmex(t, "-root", root, "rm", "lab"); code != exitError || !strings.Contains(errs, "in use") {
		t.Fatalf("rm of a live exchange: %d %q", code, errs)
	}

	kid.Kill()
	code, out, errs = shmex(t, "-root", root, "gc")
	if code != exitOK || !strings.Contains(out, "lab: removed 1 ring(s), 2 arena file(s), 2 liveness file(s)") {
		t.Fatalf("gc: %d %q %q", code, out, errs)
	}
	code, out, _ = shmex(t, "-root", root, "ls", "lab")
	if code != exitOK || strings.Count(out, "terminated") != 1 || strings.Count(out, "active") != 1 {
		t.Fatalf("ls lab after gc: %d %q", code, out)
	}
	x.Close()
	if code, out, errs := shmex(t, "-root", root, "rm", "lab"); code != exitOK || !strings.Contains(out, "removed") {
		t.Fatalf("rm: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(root, "lab")); !os.IsNotExist(err) {
		t.Fatalf("exchange directory still there: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{{}, {"frobnicate"}, {"ls", "a", "b"}, {"rm"}, {"-nope"}} {
		if code, _, errs := shmex(t, append([]string{"-root", root}, args...)...); code != exitUsage || errs == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
	}
	if code, _, errs := shmex(t, "-root", root, "ls", "missing"); code != exitError || !strings.Contains(errs, "missing") {
		t.Errorf("ls of a missing exchange: %d %q", code, errs)
	}
	if code, _, errs := shmex(t, "-root", root, "ls", "../etc"); code != exitError || errs == "" {
		t.Errorf("ls of a bad name: %d %q", code, errs)
	}
}
