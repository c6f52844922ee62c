package systest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
	"github.com/shmex/shmex/shm"
)

// damagedChild drives the public API over an exchange whose files were
// damaged: Open, the registry's readers, a receive from and sends to the
// mailboxes, a registration, a termination, an arena's open and resolves,
// and both collections. It reports "call <name>" before each call and
// "done" at the end; errors are expected, a panic, a fault or a hang are
// failures. It receives from the first mailbox, sends to all and
// terminates the last. args: root, exchange name, mailbox ids
// (comma-separated), proxies (hex, comma-separated).
func damagedChild(args []string) int {
	say("hello")
	if len(args) != 4 {
		return childFail("damaged: args %q", args)
	}
	var ids []exchange.EntityID
	for _, s := range strings.Split(args[2], ",") {
		id, err := exchange.ParseEntityID(s)
		if err != nil {
			return childFail("id: %v", err)
		}
		ids = append(ids, id)
	}
	var proxies []proxystore.Proxy
	for _, s := range strings.Split(args[3], ",") {
		b, err := hex.DecodeString(s)
		if err != nil {
			return childFail("proxy: %v", err)
		}
		p, err := proxystore.ParsePayload(b)
		if err != nil {
			return childFail("proxy: %v", err)
		}
		proxies = append(proxies, p)
	}
	say("ready")
	call := func(name string) { say("call", name) }
	// failed reports a call's error ("err <call> <error>"), for the
	// control run on an undamaged copy.
	failed := func(name string, err error) {
		if err != nil {
			say("err", name, strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	call("Open")
	x, err := childX(args[0], args[1], 4<<10)
	failed("Open", err)
	if err == nil {
		defer x.Close()
		call("Entities")
		_, err := x.Entities(ctx)
		failed("Entities", err)
		for _, id := range ids {
			call("Status")
			_, err := x.Status(ctx, id)
			failed("Status", err)
			call("Info")
			_, err = x.Info(ctx, id)
			failed("Info", err)
		}
		call("Discover")
		_, err = x.Discover(ctx, "Damaged", true)
		failed("Discover", err)
		call("Mailbox")
		mb, err := x.Mailbox(ctx, ids[0])
		failed("Mailbox", err)
		if err == nil {
			var m exchange.Message
			n := 0
			for range 64 {
				call("Recv")
				rctx, rcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				err := mb.Recv(rctx, &m)
				rcancel()
				if err == nil {
					n++
				} else if !errors.Is(err, exchange.ErrBadMessage) {
					break
				}
			}
			say("recv", n)
			mb.Close()
		}
		for _, id := range ids {
			call("Send")
			sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
			x.Send(sctx, exchange.NewActionRequest(ids[len(ids)-1], id, "x", []byte("after the damage")))
			scancel()
		}
		call("RegisterClient")
		_, err = x.RegisterClient(ctx)
		failed("RegisterClient", err)
		call("Terminate")
		failed("Terminate", x.Terminate(ctx, ids[len(ids)-1]))
		call("Collect")
		_, err = x.Collect(ctx)
		failed("Collect", err)
	}
	dir := filepath.Join(args[0], args[1])
	call("OpenArena")
	a, err := proxystore.OpenArena(dir)
	failed("OpenArena", err)
	if err == nil {
		for _, p := range proxies {
			call("Resolve")
			if v, err := a.Resolve(ctx, p); err == nil {
				if b := v.Bytes(); len(b) > 0 {
					touched ^= b[0] ^ b[len(b)-1] // read both ends of the view
				}
				v.Release()
			}
		}
		call("Arena.Close")
		a.Close()
	}
	call("proxystore.Collect")
	_, err = proxystore.Collect(dir)
	failed("proxystore.Collect", err)
	say("done")
	return 0
}

// touched keeps the reads of views from being optimized away.
var touched byte

// A damage to a file of an exchange, applied to a copy of the file.
type damage struct {
	name  string
	apply func(b []byte, rng *mrand.Rand) []byte
}

var damages = []damage{
	{"truncated", func(b []byte, rng *mrand.Rand) []byte { return b[:rng.IntN(len(b))] }},
	{"empty", func(b []byte, _ *mrand.Rand) []byte { return nil }},
	{"zeroed", func(b []byte, _ *mrand.Rand) []byte { return make([]byte, len(b)) }},
	{"header-bytes", func(b []byte, rng *mrand.Rand) []byte {
		for range 1 + rng.IntN(8) {
			b[rng.IntN(min(len(b), 4096))] = byte(rng.Uint32())
		}
		return b
	}},
	{"random-bytes", func(b []byte, rng *mrand.Rand) []byte {
		for range 1 + rng.IntN(64) {
			b[rng.IntN(len(b))] = byte(rng.Uint32())
		}
		return b
	}},
	{"garbage", func(b []byte, rng *mrand.Rand) []byte {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}},
	{"doubled", func(b []byte, _ *mrand.Rand) []byte { return append(b, b...) }},
}

// fileKind names a file of an exchange directory for the damage campaign.
func fileKind(name string) string {
	switch {
	case name == shm.RegistryName:
		return "registry"
	case strings.HasPrefix(name, shm.RingPrefix):
		return "ring"
	case name == shm.ArenaPrefix+"store":
		return "arena-store"
	case strings.HasPrefix(name, shm.ArenaPrefix) && strings.HasSuffix(name, ".meta"):
		return "arena-meta"
	case strings.HasPrefix(name, shm.ArenaPrefix):
		return "arena-data"
	case strings.HasPrefix(name, shm.LivePrefix):
		return "live"
	}
	return "other"
}

// TestDamagedFiles: bad files never crash nor wedge a process. An exchange
// is built (mailboxes with messages queued, an arena with payloads), and
// for every kind of file in its directory (registry, ring, arena data and
// meta segments, the store descriptor, lock files) and every damage
// (truncated, emptied, zeroed, bytes changed in the headers or anywhere,
// garbage, doubled in size), a copy of the directory with that one file
// damaged is driven through the public API by a child process: Open, the
// registry's readers, Recv, Send, a registration and a termination,
// Collect, OpenArena, Resolve, proxystore.Collect. Each call may fail, but
// the child must finish (within 30 s, load-scaled), never panic, never
// fault (a mapping read past a file's end is a SIGBUS). Normal suite: one
// round; long modes: ten, with other random damages.
func TestDamagedFiles(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	x := openX(t, root, "pristine", &logSink{}, exchange.WithMailboxBytes(64<<10))
	ctx, cancel := context.WithTimeout(context.Background(), bound(time.Minute))
	defer cancel()
	agentID, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "Damaged", Implements: []string{"Base"}})
	if err != nil {
		t.Fatal(err)
	}
	clientID, err := x.RegisterClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Queued: requests to the agent (answered with errors by whoever finds
	// its owner dead) and responses to the client (left for its receiver).
	for i := range 16 {
		m := exchange.NewActionRequest(clientID, agentID, "act", patternBody(nil, 40*i, 0, uint64(i)))
		if i%2 == 1 {
			m = exchange.NewPingRequest(clientID, agentID)
		}
		if err := x.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
		r := exchange.NewActionResponse(agentID, clientID, exchange.NewTag(), patternBody(nil, 40*i, 1, uint64(i)))
		if err := x.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	a, err := proxystore.OpenArena(x.Dir(), proxystore.WithSegmentSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	var proxies []string
	for i, n := range []int{100, 5000, 40 << 10, 300 << 10} {
		opts := [][]proxystore.PutOption{nil, {proxystore.WithSingleUse()}, {proxystore.WithLease(time.Now().Add(time.Hour))}, nil}[i]
		p, err := a.Put(ctx, patternBody(nil, n, 1, uint64(i)), opts...)
		if err != nil {
			t.Fatal(err)
		}
		proxies = append(proxies, hex.EncodeToString(proxystore.AppendPayload(nil, p)))
	}
	entries, err := os.ReadDir(x.Dir())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	kinds := map[string][]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(x.Dir(), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
		k := fileKind(e.Name())
		kinds[k] = append(kinds[k], e.Name())
	}
	for _, want := range []string{"registry", "ring", "arena-store", "arena-meta", "arena-data", "live"} {
		if len(kinds[want]) == 0 {
			t.Fatalf("no %s file in %v", want, slices.Sorted(func(yield func(string) bool) {
				for n := range files {
					if !yield(n) {
						return
					}
				}
			}))
		}
	}

	// Control: an undamaged copy works (the copy's processes are all
	// dead: its mailboxes read terminated, its arenas are collected).
	ids := clientID.String() + "," + agentID.String()
	copyDir := func(name, target string, d damage, rng *mrand.Rand) {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for f, b := range files {
			b = slices.Clone(b)
			if f == target {
				b = d.apply(b, rng)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	copyDir("control", "", damage{}, nil)
	res, err := driveDamaged(t, root, "control", ids, strings.Join(proxies, ","))
	if err != nil {
		t.Fatalf("control: %v", err)
	}
	if atoi(res.recv) < 16 || len(res.errs) > 0 {
		t.Fatalf("control, an undamaged copy: received %s messages from the client's mailbox, want its 16 responses at least; errors %q", res.recv, res.errs)
	}
	os.RemoveAll(filepath.Join(root, "control"))

	rounds := 1
	if mode() != "normal" {
		rounds = 10
	}
	s := seed(t)
	rng := mrand.New(mrand.NewPCG(s, s^0x5bd1e995))
	n := 0
	for round := range rounds {
		for _, kind := range slices.Sorted(func(yield func(string) bool) {
			for k := range kinds {
				if !yield(k) {
					return
				}
			}
		}) {
			for _, d := range damages {
				target := kinds[kind][rng.IntN(len(kinds[kind]))]
				name := fmt.Sprintf("damaged-%d", n)
				n++
				copyDir(name, target, d, rng)
				if _, err := driveDamaged(t, root, name, ids, strings.Join(proxies, ",")); err != nil {
					t.Errorf("round %d, %s %s (%s): %v", round, kind, d.name, target, err)
				}
				os.RemoveAll(filepath.Join(root, name))
			}
		}
	}
	report(t, map[string]any{"test": "damaged-files", "runs": n, "kinds": len(kinds), "damages": len(damages)})
}

// damagedResult is what a damagedChild reported.
type damagedResult struct {
	recv string   // messages received from the first mailbox
	errs []string // calls that failed: "<call> <error>"
}

// driveDamaged runs damagedChild on exchange name and waits for it.
func driveDamaged(t *testing.T, root, name, ids, proxies string) (damagedResult, error) {
	var mu sync.Mutex
	var last string
	var res damagedResult
	done := make(chan struct{})
	k := startKid(t, "damaged", func(f []string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case len(f) == 2 && f[0] == "call":
			last = f[1]
		case len(f) == 2 && f[0] == "recv":
			res.recv = f[1]
		case len(f) >= 2 && f[0] == "err":
			res.errs = append(res.errs, strings.Join(f[1:], " "))
		case len(f) == 1 && f[0] == "done":
			close(done)
		}
	}, root, name, ids, proxies)
	lastCall := func() string {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	if _, err := k.waitReady(); err != nil {
		return res, err
	}
	select {
	case <-k.ended:
	case <-time.After(bound(30 * time.Second)):
		l := lastCall()
		k.kill()
		return res, fmt.Errorf("child still in %s after %v", l, bound(30*time.Second))
	}
	err := k.c.Wait(bound(30 * time.Second))
	if errs := k.failures(); len(errs) > 0 {
		return res, fmt.Errorf("child: %q", errs)
	}
	select {
	case <-done:
	default:
		return res, fmt.Errorf("child died in %s: %v", lastCall(), err)
	}
	if err != nil {
		return res, fmt.Errorf("child exit: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return res, nil
}
