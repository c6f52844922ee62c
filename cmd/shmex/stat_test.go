package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/childproc"
	"github.com/shmex/shmex/internal/plant"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// trafficPayloads are the sizes of the payloads trafficChild puts in its
// arena.
var trafficPayloads = []int{1000, 5000}

// trafficMessage sets m to the i-th message trafficChild sends from src to
// dest (its size varies with i).
func trafficMessage(m *exchange.Message, src, dest exchange.EntityID, i int) {
	m.Reset()
	m.Kind, m.Tag, m.Src, m.Dest = exchange.KindActionRequest, exchange.NewTag(), src, dest
	m.SetAction("traffic")
	for j := range i%97 + 1 {
		m.Args = append(m.Args, byte(i+j))
	}
}

// trafficChild joins exchange args[1] under root args[0], registers a
// client with a mailbox, puts trafficPayloads in its arena (and keeps
// them), sends args[3] messages to mailbox args[2], claims one more record
// there that it never commits (claimStuck), prints its client's id and
// waits for its standard input to close.
func trafficChild(args []string) int {
	x, err := exchange.Open(args[1], exchange.WithRoot(args[0]))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer x.Close()
	ctx := context.Background()
	dest, err := exchange.ParseEntityID(args[2])
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	n, _ := strconv.Atoi(args[3])
	src, err := x.RegisterClient(ctx)
	if err == nil {
		_, err = x.Mailbox(ctx, src)
	}
	var a *proxystore.Arena
	if err == nil {
		a, err = proxystore.OpenArena(x.Dir())
	}
	for _, size := range trafficPayloads {
		if err == nil {
			_, err = a.Put(ctx, bytes.Repeat([]byte{'p'}, size))
		}
	}
	var m exchange.Message
	for i := 0; i < n && err == nil; i++ {
		trafficMessage(&m, src, dest, i)
		err = x.Send(ctx, &m)
	}
	if err == nil {
		err = claimStuck(ctx, x.Dir(), dest)
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("id", src)
	for sc := bufio.NewScanner(os.Stdin); sc.Scan(); {
	}
	a.Close()
	return 0
}

// claimStuck claims a record in the ring of dest's mailbox, under a
// liveness lock of its own, and never commits it: the receiver recovers it
// once this process is dead.
func claimStuck(ctx context.Context, dir string, dest exchange.EntityID) error {
	life, err := shm.HoldLife(dir)
	if err != nil {
		return err
	}
	seg, err := shm.Open(filepath.Join(dir, shm.RingPrefix+hex.EncodeToString(dest.UUID[:])), shm.KindRing)
	if err != nil {
		return err
	}
	r, err := ring.Attach(seg.Body(), ring.Options{})
	if err != nil {
		return err
	}
	p, err := r.NewProducer(life.ID())
	if err != nil {
		return err
	}
	c, err := p.Claim(ctx, int32(exchange.KindActionRequest), stuckPayload)
	if err != nil {
		return err
	}
	copy(c.Bytes(), "never committed")
	return nil
}

// stuckPayload is the payload size of the record claimStuck leaves.
const stuckPayload = 100

// counted returns n when this build counts, else 0 (see ring.Counting).
func counted(n uint64) uint64 {
	if ring.Counting() {
		return n
	}
	return 0
}

// statJSON runs shmex --root root stat --json with args and decodes its output.
func statJSON(t *testing.T, root string, args ...string) *statFrame {
	t.Helper()
	code, out, errs := shmex(t, append([]string{"-root", root, "stat", "--json"}, args...)...)
	var f statFrame
	if err := json.Unmarshal([]byte(out), &f); code != exitOK || err != nil {
		t.Fatalf("stat --json %q: exit %d, %v\n%s%s", args, code, err, out, errs)
	}
	return &f
}

// mailboxOf returns the mailbox id of the one exchange of f, or nil.
func mailboxOf(t *testing.T, f *statFrame, id exchange.EntityID) *mailboxStat {
	t.Helper()
	if len(f.Exchanges) != 1 {
		t.Fatalf("exchanges %+v, want one", f.Exchanges)
	}
	for _, m := range f.Exchanges[0].Mailboxes {
		if m.ID == id.String() {
			return m
		}
	}
	return nil
}

// TestStat: a child sends N messages of sizes the test computes to a
// mailbox of this process, claims one more record there that it never
// commits, and keeps payloads in its arena; shmex stat reports them, in
// JSON and in tables, before and after they are received, with the
// owners' pids and liveness; once the child is killed and its record
// recovered, the record shows recovered, the child's process dead, and its
// mailbox is left out unless -a.
func TestStat(t *testing.T) {
	const n = 200
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	x, err := exchange.Open("lab", exchange.WithRoot(root), exchange.WithMailboxBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	me, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := x.Mailbox(ctx, me)
	if err != nil {
		t.Fatal(err)
	}

	kid := childproc.Start(t, "traffic", root, "lab", me.String(), strconv.Itoa(n))
	l, err := kid.Line(30 * time.Second)
	if err != nil || !strings.HasPrefix(l, "id ") {
		t.Fatalf("child: %q %v", l, err)
	}
	kidID, err := exchange.ParseEntityID(strings.TrimPrefix(l, "id "))
	if err != nil {
		t.Fatal(err)
	}
	kidPID := kid.Cmd.Process.Pid
	var bytes uint64
	var m exchange.Message
	for i := range n {
		trafficMessage(&m, kidID, me, i)
		bytes += uint64(m.EncodedSize())
	}
	mine, theirs := proc{PID: os.Getpid(), Alive: true}, proc{PID: kidPID, Alive: true}

	f := statJSON(t, root, "lab")
	es := f.Exchanges[0]
	if es.Name != "lab" || es.Dir != x.Dir() || len(es.Errors) != 0 || len(es.Mailboxes) != 2 || time.Since(f.Time) > time.Hour {
		t.Fatalf("stat: %+v", es)
	}
	s := mailboxOf(t, f, me)
	if s == nil || s.Role != "client" || s.Status != "active" || s.Owner != mine || s.Receiver == nil || *s.Receiver != mine ||
		!s.Ring || s.Capacity != 64<<10 || s.Closed || s.Producers < 1 || s.Slots < s.Producers {
		t.Fatalf("this process's mailbox: %+v", s)
	}
	if s.Sent != counted(n) || s.SentBytes != counted(bytes) || s.Received != 0 || s.RecvBytes != 0 ||
		s.Queued != counted(n) || s.Depth < int(bytes) || s.Recovered != 0 || s.Rates != nil {
		t.Fatalf("after %d messages of %d bytes sent: %+v", n, bytes, s)
	}
	if k := mailboxOf(t, f, kidID); k == nil || k.Status != "active" || k.Owner != theirs || k.Receiver == nil || *k.Receiver != theirs || k.Sent != 0 {
		t.Fatalf("the child's mailbox: %+v", k)
	}
	if len(es.Arenas) != 1 {
		t.Fatalf("arenas %+v, want the child's", es.Arenas)
	}
	a := es.Arenas[0]
	payload := uint64(trafficPayloads[0] + trafficPayloads[1])
	if a.Owner != theirs || a.Segments < 1 || a.Blocks != 2 || a.Payload != payload || a.InUse < payload ||
		a.InUse+a.Free != a.DataBytes || a.Allocs != 2 || a.Frees != 0 {
		t.Fatalf("the child's arena: %+v, want 2 blocks of %d bytes in all", a, payload)
	}
	procs := map[int]*processStat{}
	for _, p := range es.Processes {
		procs[p.PID] = p
	}
	if p := procs[kidPID]; len(es.Processes) != 2 || p == nil || !p.Alive || p.Mailboxes != 1 || p.ArenaBytes != a.DataBytes {
		t.Fatalf("processes %+v, want this one and the child (pid %d) with 1 mailbox and its arena", es.Processes, kidPID)
	}
	if p := procs[os.Getpid()]; p == nil || !p.Alive || p.Mailboxes != 1 || p.ArenaBytes != 0 {
		t.Fatalf("processes %+v, want this one with 1 mailbox and no arena", es.Processes)
	}

	// The JSON names what the help says it names.
	_, raw, _ := shmex(t, "-root", root, "stat", "--json", "lab")
	var generic map[string]any
	if err := json.Unmarshal([]byte(raw), &generic); err != nil {
		t.Fatal(err)
	}
	_, help, _ := shmex(t, "help", "stat")
	for _, key := range jsonKeys(generic) {
		if !strings.Contains(help, `"`+key+`"`) {
			t.Errorf("stat --json has %q, which its help does not name", key)
		}
	}

	for range n {
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	s = mailboxOf(t, statJSON(t, root, "lab"), me)
	if s.Sent != counted(n) || s.Received != counted(n) || s.RecvBytes != counted(bytes) || s.Queued != 0 ||
		s.Depth < ring.HeaderLen+stuckPayload || s.Recovered != 0 {
		t.Fatalf("after %d messages received, one claimed and not committed: %+v", n, s)
	}

	// The child dies holding its claim: the receiver recovers the record.
	kid.Kill()
	for deadline := time.Now().Add(time.Minute); ; {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := mb.Recv(rctx, &m)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Recv after the child died: %v, %v", err, &m)
		}
		if ms, err := x.MailboxStats(ctx, me); err != nil || ms.Recovered > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record of the dead child is not recovered after a minute")
		}
	}
	s = mailboxOf(t, statJSON(t, root, "lab"), me)
	if s.Sent != counted(n) || s.Received != counted(n) || s.Depth != 0 || s.Recovered != 1 || s.RecoveredT != 0 || s.RecoveredB == 0 {
		t.Fatalf("after the record of the dead child was recovered: %+v", s)
	}

	// The table: this process's mailbox with its counts.
	code, out, errs := shmex(t, "-root", root, "stat", "lab")
	if code != exitOK || errs != "" {
		t.Fatalf("stat: %d %q", code, errs)
	}
	var row []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, me.String()) {
			row = strings.Fields(l)
		}
	}
	sent := strconv.FormatUint(counted(n), 10)
	want := []string{me.String(), "active", strconv.Itoa(os.Getpid()), "0", "0", "B", "64.0", "KiB", sent, sent}
	if len(row) < len(want) || strings.Join(row[:len(want)], " ") != strings.Join(want, " ") || row[len(row)-1] != "1" {
		t.Errorf("stat: this process's mailbox %q, want %q... and 1 recovered\n%s", row, want, out)
	}
	if !strings.Contains(out, "ARENA OF") || !strings.Contains(out, strconv.Itoa(kidPID)+" dead") {
		t.Errorf("stat does not show the child's arena and process, dead:\n%s", out)
	}

	f = statJSON(t, root, "lab")
	es = f.Exchanges[0]
	if len(es.Mailboxes) != 1 || es.Mailboxes[0].ID != me.String() {
		t.Errorf("after the child died: mailboxes %+v, want this process's alone", es.Mailboxes)
	}
	if p := procsOf(es)[kidPID]; p == nil || p.Alive || p.Mailboxes != 0 {
		t.Errorf("after the child died: processes %+v, want the child dead", es.Processes)
	}
	if len(es.Arenas) != 1 || es.Arenas[0].Owner != (proc{PID: kidPID}) {
		t.Errorf("after the child died: arenas %+v, want the child's, dead", es.Arenas)
	}
	if k := mailboxOf(t, statJSON(t, root, "-a", "lab"), kidID); k == nil || k.Status != "terminated" || k.Owner != (proc{PID: kidPID}) {
		t.Errorf("stat -a: the child's mailbox %+v, want it terminated, its owner dead", k)
	}
	code, out, _ = shmex(t, "-root", root, "stat", "lab")
	if code != exitOK || !strings.Contains(out, "(1 terminated mailbox(es) not listed: -a lists them)") ||
		!strings.Contains(out, strconv.Itoa(kidPID)+" dead") {
		t.Errorf("stat after the child died:\n%s", out)
	}
}

func procsOf(es *exchangeStat) map[int]*processStat {
	procs := map[int]*processStat{}
	for _, p := range es.Processes {
		procs[p.PID] = p
	}
	return procs
}

// jsonKeys returns the keys of the objects in v, at every depth.
func jsonKeys(v any) []string {
	var keys []string
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			keys = append(keys, k)
			keys = append(keys, jsonKeys(e)...)
		}
	case []any:
		for _, e := range v {
			keys = append(keys, jsonKeys(e)...)
		}
	}
	return keys
}

// TestStatWatch: --watch with --count ends after that many refreshes, one
// JSON line each with the rates from the second on, or tables one after
// the other; without --count, the end of its context ends it.
func TestStatWatch(t *testing.T) {
	terminal := isTerminal
	defer func() { isTerminal = terminal }()
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	x, err := exchange.Open("lab", exchange.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	me, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Mailbox(ctx, me); err != nil {
		t.Fatal(err)
	}

	code, out, errs := shmex(t, "-root", root, "stat", "--watch", "--interval", "10ms", "--count", "3", "--json", "lab")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != exitOK || errs != "" || len(lines) != 3 {
		t.Fatalf("stat --watch --count 3 --json: exit %d, %d lines, stderr %q", code, len(lines), errs)
	}
	var prev time.Time
	for i, l := range lines {
		var f statFrame
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("line %d: %v: %q", i, err, l)
		}
		s := mailboxOf(t, &f, me)
		if s == nil || (s.Rates != nil) != (i > 0) || !f.Time.After(prev) {
			t.Fatalf("refresh %d: %+v at %v, rates %v", i, s, f.Time, s != nil && s.Rates != nil)
		}
		if s.Rates != nil && *s.Rates != (rates{}) {
			t.Errorf("refresh %d: rates %+v of an idle mailbox", i, *s.Rates)
		}
		prev = f.Time
	}

	code, out, _ = shmex(t, "-root", root, "stat", "--watch", "--interval=1ms", "--count=2", "lab")
	if code != exitOK || strings.Count(out, "exchange lab (") != 2 || !strings.Contains(out, "SENT/S") || strings.Contains(out, "\x1b[") {
		t.Fatalf("stat --watch --count 2: exit %d\n%s", code, out)
	}

	// On a terminal: each refresh rewrites the one before, from the top
	// left, clearing what it leaves of it.
	isTerminal = func(io.Writer) bool { return true }
	code, out, _ = shmex(t, "-root", root, "stat", "--watch", "--interval=1ms", "--count=3", "lab")
	frames := strings.Split(out, cursorHome)
	if code != exitOK || len(frames) != 4 || frames[0] != "" {
		t.Fatalf("stat --watch --count 3 on a terminal: exit %d, %d frames\n%q", code, len(frames)-1, out)
	}
	for i, f := range frames[1:] {
		if !strings.HasPrefix(f, "exchange lab (") || !strings.HasSuffix(f, clearLine+"\n"+clearBelow) ||
			strings.Count(f, "\n") != strings.Count(f, clearLine+"\n") {
			t.Errorf("refresh %d on a terminal: %q", i, f)
		}
	}
	if code, out, _ = shmex(t, "-root", root, "stat", "--json", "--watch", "--count=1", "lab"); strings.Contains(out, "\x1b") {
		t.Errorf("stat --json on a terminal: %q", out)
	}
	isTerminal = terminal

	// No count: it ends with its context (an interrupt, in the command).
	var buf, errb bytes.Buffer
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	plant.Within(t, "shmex stat --watch until a deadline", func() error {
		code = run(dctx, []string{"-root", root, "stat", "--watch", "--interval", "20ms", "lab"}, &buf, &errb)
		return nil
	})
	if code != exitOK || strings.Count(buf.String(), "exchange lab (") < 1 {
		t.Fatalf("stat --watch ended by its context: exit %d, %q %q", code, buf.String(), errb.String())
	}
}
