package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

func TestMain(m *testing.M) {
	childproc.Main(m, map[string]childproc.Role{"owner": ownerChild, "traffic": trafficChild})
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

// shmex runs the command with args, within plant.Bound.
func shmex(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	plant.Within(t, "shmex "+strings.Join(args, " "), func() error {
		code = run(context.Background(), args, &out, &errb)
		return nil
	})
	t.Logf("shmex %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

// startOwner starts an ownerChild on exchange name under root and returns
// it with its agent's id.
func startOwner(t *testing.T, root, name string) (*childproc.Child, exchange.EntityID) {
	t.Helper()
	kid := childproc.Start(t, "owner", root, name)
	l, err := kid.Line(30 * time.Second)
	if err != nil || !strings.HasPrefix(l, "id ") {
		t.Fatalf("child: %q %v", l, err)
	}
	id, err := exchange.ParseEntityID(strings.TrimPrefix(l, "id "))
	if err != nil {
		t.Fatal(err)
	}
	return kid, id
}

// lockFiles returns the names of the lock files of process pid in dir.
func lockFiles(t *testing.T, dir string, pid int) []string {
	t.Helper()
	lives, err := shm.Lives(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range lives {
		if l.PID == pid {
			names = append(names, filepath.Base(l.Path))
		}
	}
	return names
}

func fileNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := shm.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
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
	kid, _ := startOwner(t, root, "lab")
	me, kidPID := strconv.Itoa(os.Getpid()), strconv.Itoa(kid.Cmd.Process.Pid)
	kidLocks := lockFiles(t, x.Dir(), kid.Cmd.Process.Pid)
	if len(kidLocks) != 2 {
		t.Fatalf("child holds lock files %q, want 2 (exchange and arena)", kidLocks)
	}

	code, out, errs := shmex(t, "-root", root, "ls")
	if code != exitOK || !strings.Contains(out, "lab") {
		t.Fatalf("ls: %d %q %q", code, out, errs)
	}
	f := strings.Fields(strings.Split(out, "\n")[1])
	if len(f) != 7 || f[0] != "lab" || f[2] != "0" || f[3] != "2" || f[4] != "0" {
		t.Errorf("ls row %q: want lab, pids, 0 dead, 2 active, 0 terminated, bytes", f)
	}
	if pids := strings.Split(f[1], ","); len(pids) != 2 || !slices.Contains(pids, me) || !slices.Contains(pids, kidPID) {
		t.Errorf("ls pids %q, want %s and %s", f[1], me, kidPID)
	}

	code, out, errs = shmex(t, "-root", root, "ls", "lab")
	if code != exitOK || !strings.Contains(out, "Counter (Agent)") || !strings.Contains(out, "doomed") || strings.Count(out, "active") != 2 {
		t.Fatalf("ls lab: %d %q %q", code, out, errs)
	}
	// The child's mailbox: its owner's pid, depth and capacity.
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(l, "doomed") &&
			(f[1] != "active" || f[2] != kidPID || f[3]+f[4] != "0B" || f[5]+f[6] != "256.0KiB") {
			t.Errorf("ls lab: the child's mailbox %q, want active, owner %s, depth 0 B, capacity 256.0 KiB", f, kidPID)
		}
	}
	for _, l := range kidLocks {
		if !strings.Contains(out, kidPID+"  ") || !strings.Contains(out, l) {
			t.Errorf("ls lab does not show the child's pid %s and lock file %s:\n%s", kidPID, l, out)
		}
	}

	code, _, errs = shmex(t, "-root", root, "rm", "lab")
	if code != exitError || !strings.Contains(errs, "in use") || !strings.Contains(errs, me) || !strings.Contains(errs, kidPID) {
		t.Fatalf("rm of a live exchange: %d %q, want the pids %s and %s named", code, errs, me, kidPID)
	}

	kid.Kill()
	before := fileNames(t, x.Dir())
	code, dry, errs := shmex(t, "-root", root, "gc", "--dry-run")
	if code != exitOK {
		t.Fatalf("gc --dry-run: %d %q %q", code, dry, errs)
	}
	if after := fileNames(t, x.Dir()); !slices.Equal(before, after) {
		t.Fatalf("gc --dry-run removed files: before %q, after %q", before, after)
	}

	code, out, errs = shmex(t, "-root", root, "gc")
	if code != exitOK || !strings.Contains(out, "lab: removed 1 ring(s), 2 arena file(s), 2 liveness file(s), 0 temporary file(s)") {
		t.Fatalf("gc: %d %q %q", code, out, errs)
	}
	for _, l := range kidLocks {
		if !strings.Contains(out, "lab: removed "+l+" (lock file of dead process "+kidPID+")") {
			t.Errorf("gc does not name %s:\n%s", l, out)
		}
	}
	if strings.Count(out, "(ring of a terminated mailbox)") != 1 || strings.Count(out, "(arena segment of a dead process)") != 2 {
		t.Errorf("gc does not name the ring and the two arena files it removed:\n%s", out)
	}
	// The dry run named exactly what gc removed, and nothing else.
	if want := strings.ReplaceAll(out, ": removed ", ": would remove "); dry != want {
		t.Errorf("gc --dry-run said\n%s\ngc did\n%s", dry, out)
	}
	removed := 0
	for _, f := range before {
		if !slices.Contains(fileNames(t, x.Dir()), f) {
			removed++
			if !strings.Contains(out, "lab: removed "+f+" (") {
				t.Errorf("gc removed %s without naming it:\n%s", f, out)
			}
		}
	}
	if removed != 5 {
		t.Errorf("gc removed %d files, want 5", removed)
	}

	code, out, _ = shmex(t, "-root", root, "ls", "lab")
	if code != exitOK || strings.Contains(out, "doomed") || strings.Count(out, "active") != 1 ||
		!strings.Contains(out, "(1 terminated mailbox(es) not listed: -a lists them)") {
		t.Fatalf("ls lab after gc: %d %q", code, out)
	}
	for _, args := range [][]string{{"ls", "-a", "lab"}, {"ls", "lab", "-a"}} {
		code, out, _ = shmex(t, append([]string{"-root", root}, args...)...)
		if code != exitOK || !strings.Contains(out, "doomed") || strings.Count(out, "terminated") != 1 {
			t.Fatalf("%q after gc: %d %q", args, code, out)
		}
	}

	for _, all := range []bool{false, true} {
		args := []string{"-root", root, "ls", "--json"}
		if all {
			args = append(args, "-a")
		}
		code, out, errs = shmex(t, args...)
		var got []exchangeInfo
		if err := json.Unmarshal([]byte(out), &got); code != exitOK || err != nil {
			t.Fatalf("%q: %d %v %q %q", args, code, err, out, errs)
		}
		if len(got) != 1 || got[0].Name != "lab" || got[0].Dir != x.Dir() || got[0].Active != 1 || got[0].Terminated != 1 || got[0].Bytes == 0 {
			t.Fatalf("%q: %+v", args, got)
		}
		if p := got[0].Processes; len(p) != 1 || p[0].PID != os.Getpid() || !p[0].Alive || !strings.HasPrefix(p[0].Lock, shm.LivePrefix) {
			t.Errorf("%q: processes %+v, want this one alone", args, p)
		}
		want := []mailboxInfo{{Role: "agent", Name: "counter", Behavior: "Counter", Implements: []string{"Agent"}, Status: "active",
			Owner: proc{PID: os.Getpid(), Alive: true}, Capacity: exchange.DefaultMailboxBytes}}
		if all { // the child's: its ring and its lock file (where its pid was) collected
			want = append(want, mailboxInfo{Role: "agent", Name: "doomed", Behavior: "Doomed", Status: "terminated"})
		}
		mbs := got[0].Mailboxes
		if len(mbs) != len(want) {
			t.Fatalf("%q: mailboxes %+v, want %+v", args, mbs, want)
		}
		for i := range want {
			want[i].ID = mbs[i].ID
			if !strings.HasPrefix(mbs[i].ID, "agent:") || !slices.Equal(mbs[i].Implements, want[i].Implements) ||
				mbs[i].Role != want[i].Role || mbs[i].Name != want[i].Name || mbs[i].Behavior != want[i].Behavior || mbs[i].Status != want[i].Status ||
				mbs[i].Owner != want[i].Owner || mbs[i].Depth != 0 || mbs[i].Capacity != want[i].Capacity {
				t.Errorf("%q: mailbox %+v, want %+v", args, mbs[i], want[i])
			}
		}
	}

	x.Close()
	if code, out, errs := shmex(t, "-root", root, "rm", "lab"); code != exitOK || !strings.Contains(out, "removed") {
		t.Fatalf("rm: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(root, "lab")); !os.IsNotExist(err) {
		t.Fatalf("exchange directory still there: %v", err)
	}
}

// TestHelp: help, --help, -h and COMMAND --help print help on standard
// output and exit 0.
func TestHelp(t *testing.T) {
	root := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "Commands:"},
		{[]string{"--help"}, "Commands:"},
		{[]string{"-h"}, "Commands:"},
		{[]string{"-help"}, "Commands:"},
		{[]string{"-root", root, "--help"}, "Commands:"},
		{[]string{"help", "ls"}, "Usage: shmex [--root DIR] ls [-a] [--json] [NAME...]"},
		{[]string{"ls", "--help"}, "Usage: shmex [--root DIR] ls"},
		{[]string{"ls", "-h"}, "Usage: shmex [--root DIR] ls"},
		{[]string{"-root", root, "ls", "lab", "--help"}, "Usage: shmex [--root DIR] ls"},
		{[]string{"help", "gc"}, "--dry-run"},
		{[]string{"gc", "--help"}, "Usage: shmex [--root DIR] gc"},
		{[]string{"help", "rm"}, "Usage: shmex [--root DIR] rm [-f] NAME"},
		{[]string{"rm", "--help"}, "Usage: shmex [--root DIR] rm"},
		{[]string{"help", "stat"}, "Usage: shmex [--root DIR] stat [-a] [--json] [--watch]"},
		{[]string{"stat", "--help"}, "Usage: shmex [--root DIR] stat"},
		{[]string{"-root", root, "stat", "--watch", "lab", "-h"}, "--interval D"},
	} {
		code, out, errs := shmex(t, c.args...)
		if code != exitOK || !strings.Contains(out, c.want) || errs != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 0 and %q", c.args, code, out, errs, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "lab")); !os.IsNotExist(err) {
		t.Errorf("ls lab --help made an exchange: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{{}, {"frobnicate"}, {"rm", "a", "b"}, {"rm"}, {"-nope"}, {"ls", "-x"}, {"gc", "--nope"}, {"help", "nope"},
		{"stat", "-x"}, {"stat", "--watch", "--interval", "0"}, {"stat", "--count", "-1"}, {"stat", "--interval", "soon"}} {
		if code, _, errs := shmex(t, append([]string{"-root", root}, args...)...); code != exitUsage || !strings.Contains(errs, "Usage:") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
	}
	if code, _, errs := shmex(t, "-root", root, "ls", "missing"); code != exitError || !strings.Contains(errs, "no exchange missing") {
		t.Errorf("ls of a missing exchange: %d %q", code, errs)
	}
	if code, _, errs := shmex(t, "-root", root, "stat", "missing"); code != exitError || !strings.Contains(errs, "no exchange missing") {
		t.Errorf("stat of a missing exchange: %d %q", code, errs)
	}
	if code, _, errs := shmex(t, "-root", root, "ls", "../etc"); code != exitError || errs == "" {
		t.Errorf("ls of a bad name: %d %q", code, errs)
	}
}
