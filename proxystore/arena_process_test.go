package proxystore

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/internal/childproc"
)

func init() {
	underflow = func() { arenaUnderflows.Add(1) }
	roles["arena-reader"] = arenaReaderRole
	roles["arena-owner"] = arenaOwnerRole
	roles["arena-looper"] = arenaLooperRole
}

// arenaUnderflows counts releases that found no reference to drop: it stays
// zero unless someone dropped a reference twice (the tests check it).
var arenaUnderflows atomic.Int64

func proxyHex(p Proxy) string { return hex.EncodeToString(AppendPayload(nil, p)) }

func parseProxyHex(s string) (Proxy, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return Proxy{}, err
	}
	return ParsePayload(b)
}

// errName names the sentinel an error wraps, for child reports.
func errName(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{ErrOwnerDead, "OwnerDead"}, {ErrStaleProxy, "Stale"}, {ErrExpired, "Expired"},
		{ErrForeignProxy, "Foreign"}, {ErrBadProxy, "Bad"}, {ErrBadArena, "BadArena"},
		{ErrStoreFull, "Full"}, {ErrClosed, "Closed"}, {ErrTooManyViews, "TooMany"},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "other:" + err.Error()
}

func arenaSeed(p Proxy) uint64 { return p.Generation ^ p.Segment<<1 ^ p.Offset }

// arenaReaderRole resolves proxies sent on stdin. Commands:
//
//	hold HEX     resolve, check the pattern, keep the view: "held" or "err NAME"
//	resolve HEX  resolve and release at once: "ok" or "err NAME"
//	check        check every held view: "ok N" or "bad"
//	release      release every held view: "released"
//	stream       then lines of HEX: resolve each, keep up to 8 views, check
//	             each pattern when resolved and again before release; on
//	             "end", answer "done N bad M under U"
func arenaReaderRole(args []string) int {
	a, err := OpenArena(args[0], WithSegmentSize(1<<20), WithPrefault(false))
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	defer a.Close()
	ctx := context.Background()
	fmt.Println("ready")
	var held []View
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "hold", "resolve":
			p, err := parseProxyHex(arg)
			if err != nil {
				fmt.Println("err", err)
				continue
			}
			v, err := a.Resolve(ctx, p)
			if err != nil {
				fmt.Println("err", errName(err))
				continue
			}
			if !arenaCheckPattern(v.Bytes(), arenaSeed(p)) {
				fmt.Println("err pattern")
			}
			if cmd == "resolve" {
				v.Release()
				fmt.Println("ok")
			} else {
				held = append(held, v)
				fmt.Println("held")
			}
		case "check":
			bad := false
			for _, v := range held {
				bad = bad || !arenaCheckPattern(v.Bytes(), arenaSeed(v.Proxy()))
			}
			if bad {
				fmt.Println("bad")
			} else {
				fmt.Println("ok", len(held))
			}
		case "release":
			for _, v := range held {
				v.Release()
			}
			held = nil
			fmt.Println("released")
		case "stream":
			n, bad := 0, 0
			for sc.Scan() && sc.Text() != "end" {
				p, err := parseProxyHex(sc.Text())
				if err != nil {
					bad++
					continue
				}
				v, err := a.Resolve(ctx, p)
				if err != nil {
					fmt.Fprintln(os.Stderr, "resolve:", err)
					bad++
					continue
				}
				n++
				if !arenaCheckPattern(v.Bytes(), arenaSeed(p)) {
					bad++
				}
				held = append(held, v)
				if len(held) > 8 {
					i := rand.IntN(len(held))
					old := held[i]
					if !arenaCheckPattern(old.Bytes(), arenaSeed(old.Proxy())) {
						bad++ // the block was reused while referenced
					}
					old.Release()
					held[i] = held[len(held)-1]
					held = held[:len(held)-1]
				}
			}
			for _, v := range held {
				if !arenaCheckPattern(v.Bytes(), arenaSeed(v.Proxy())) {
					bad++
				}
				v.Release()
			}
			held = nil
			fmt.Println("done", n, "bad", bad, "under", arenaUnderflows.Load())
		case "quit":
			return 0
		}
	}
	return 0
}

// arenaOwnerRole puts payloads on command:
//
//	put N LIFETIME   LIFETIME is owned, single or leased (1h): prints HEX
func arenaOwnerRole(args []string) int {
	a, err := OpenArena(args[0], WithSegmentSize(1<<20), WithPrefault(false))
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	defer a.Close()
	ctx := context.Background()
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "put" {
			n, _ := strconv.Atoi(f[1])
			var opt PutOption
			switch f[2] {
			case "single":
				opt = WithSingleUse()
			case "leased":
				opt = WithLease(time.Now().Add(time.Hour))
			}
			l, err := a.Alloc(ctx, n, opt)
			if err != nil {
				fmt.Println("err", errName(err))
				continue
			}
			al := l.(*arenaLoan)
			arenaPattern(l.Bytes(), arenaSeed(a.proxy(al.s, al.off, uint64(n), al.gen)))
			p, err := l.Commit()
			if err != nil {
				fmt.Println("err", errName(err))
				continue
			}
			fmt.Println(proxyHex(p))
		}
	}
	return 0
}

// arenaLooperRole resolves and releases the proxies given as arguments in a
// loop, holding a few at a time, until told "stop" (or killed). It prints
// "ready" after its first round; on stop: "stopped bad M under U".
func arenaLooperRole(args []string) int {
	a, err := OpenArena(args[0], WithPrefault(false))
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	defer a.Close()
	var ps []Proxy
	for _, s := range args[1:] {
		p, err := parseProxyHex(s)
		if err != nil {
			fmt.Println("err", err)
			return 1
		}
		ps = append(ps, p)
	}
	stop := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "stop" {
				break
			}
		}
		close(stop)
	}()
	ctx := context.Background()
	bad := 0
	var held []View
	for round := 0; ; round++ {
		for _, p := range ps {
			v, err := a.Resolve(ctx, p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "looper resolve:", err)
				bad++
				continue
			}
			if !arenaCheckPattern(v.Bytes(), arenaSeed(p)) {
				bad++
			}
			held = append(held, v)
			if len(held) > 4 {
				held[0].Release()
				held = held[1:]
			}
		}
		if round == 0 {
			fmt.Println("ready")
		}
		select {
		case <-stop:
			for _, v := range held {
				v.Release()
			}
			fmt.Println("stopped bad", bad, "under", arenaUnderflows.Load())
			return 0
		default:
		}
	}
}

func childLine(t *testing.T, c *childproc.Child, what string) string {
	t.Helper()
	l, err := c.Line(20 * time.Second)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return l
}

func childCmd(t *testing.T, c *childproc.Child, cmd, want string) string {
	t.Helper()
	if err := c.Send(cmd); err != nil {
		t.Fatal(err)
	}
	l := childLine(t, c, cmd)
	if want != "" && !strings.HasPrefix(l, want) {
		t.Fatalf("%s: child answered %q, want %q", cmd, l, want)
	}
	return l
}

// TestArenaProcessReuse: the parent owns a small arena and reuses its
// blocks aggressively; two reader processes resolve, hold a few views at a
// time, and check that what they hold never changes.
func TestArenaProcessReuse(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir, WithSegmentSize(1<<20), WithMaxBytes(1<<20), WithReapInterval(5*time.Millisecond))
	var readers []*childproc.Child
	for i := 0; i < 2; i++ {
		c := childproc.Start(t, "arena-reader", dir)
		childLine(t, c, "ready")
		if err := c.Send("stream"); err != nil {
			t.Fatal(err)
		}
		readers = append(readers, c)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	places := map[[2]uint64]int{}
	sent := 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	for sent < 4000 && time.Now().Before(deadline) {
		n := 1 + rng.IntN(48<<10)
		l, err := owner.Alloc(ctx, n, WithSingleUse())
		if errors.Is(err, ErrStoreFull) {
			time.Sleep(200 * time.Microsecond) // readers still hold everything
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		al := l.(*arenaLoan)
		p := owner.proxy(al.s, al.off, uint64(n), al.gen)
		arenaPattern(l.Bytes(), arenaSeed(p))
		if _, err := l.Commit(); err != nil {
			t.Fatal(err)
		}
		places[[2]uint64{p.Segment, p.Offset}]++
		if err := readers[sent%2].Send(proxyHex(p)); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	total := 0
	for _, c := range readers {
		l := childCmd(t, c, "end", "done")
		var n, bad, under int
		if _, err := fmt.Sscanf(l, "done %d bad %d under %d", &n, &bad, &under); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if bad != 0 || under != 0 {
			t.Fatalf("reader: %s", l)
		}
		total += n
	}
	if total != sent {
		t.Fatalf("readers resolved %d of %d", total, sent)
	}
	if len(places) >= sent/2 {
		t.Fatalf("little reuse: %d places for %d payloads", len(places), sent)
	}
	t.Logf("%d payloads through %d places", sent, len(places))
	waitBlocks(t, owner, 0)
}

// waitBlocks waits (bounded) until the owner's reaper brought its block
// count to want.
func waitBlocks(t *testing.T, a *Arena, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := a.Stats()
		if st.Blocks == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocks: %+v, want %d", st, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestArenaProcessOwnerKilled: the owner dies by SIGKILL while a reader
// holds views and while other readers are about to resolve.
func TestArenaProcessOwnerKilled(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := childproc.Start(t, "arena-owner", dir)
	childLine(t, owner, "ready")
	var ps []Proxy
	for _, cmd := range []string{"put 3000 owned", "put 100 single", "put 70000 leased", "put 2097152 owned", "put 10 owned"} {
		p, err := parseProxyHex(childCmd(t, owner, cmd, ""))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	me := openArena(t, dir)
	var held []View
	for _, p := range ps[:4] {
		v := arenaResolve(t, me, p)
		if !arenaCheckPattern(v.Bytes(), arenaSeed(p)) {
			t.Fatal("pattern")
		}
		held = append(held, v)
	}
	// One reader has mapped the segments, one has not.
	attached := childproc.Start(t, "arena-reader", dir)
	childLine(t, attached, "ready")
	childCmd(t, attached, "resolve "+proxyHex(ps[4]), "ok")
	childCmd(t, attached, "resolve "+proxyHex(ps[3]), "ok")
	fresh := childproc.Start(t, "arena-reader", dir)
	childLine(t, fresh, "ready")

	owner.Kill()

	for i, v := range held {
		if !arenaCheckPattern(v.Bytes(), arenaSeed(ps[i])) {
			t.Fatalf("view %d changed after the owner died", i)
		}
	}
	// A reader that attached the segments trusts its last look at the
	// owner's liveness for ownerCheckInterval: retry until it notices.
	untilOwnerDead(t, func() error {
		if l := childCmd(t, attached, "resolve "+proxyHex(ps[0]), ""); l != "ok" && l != "err OwnerDead" {
			return errors.New(l)
		} else if l == "err OwnerDead" {
			return ErrOwnerDead
		}
		return nil
	})
	untilOwnerDead(t, func() error {
		v, err := me.Resolve(ctx, ps[0])
		if err == nil {
			v.Release()
		}
		return err
	})
	for _, c := range []*childproc.Child{attached, fresh} {
		for _, p := range ps {
			childCmd(t, c, "resolve "+proxyHex(p), "err OwnerDead")
		}
	}
	for _, p := range ps {
		if _, err := me.Resolve(ctx, p); !errors.Is(err, ErrOwnerDead) {
			t.Fatalf("resolve after the owner died: %v", err)
		}
	}
	for _, v := range held {
		if err := v.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Collect(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range arenaDirNames(t, dir) {
		if _, ok := parseSegName(name); ok {
			t.Fatalf("%s left behind", name)
		}
	}
	me.reap()
	if st := me.Stats(); st.Attached != 0 || st.Views != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestArenaProcessReaderKilled: a reader holding references of every
// lifetime dies by SIGKILL; the owner reclaims them in bounded time.
func TestArenaProcessReaderKilled(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir, WithReapInterval(10*time.Millisecond))
	reader := childproc.Start(t, "arena-reader", dir)
	childLine(t, reader, "ready")
	var owned, leased []Proxy
	for i := 0; i < 12; i++ {
		for _, lt := range []PutOption{nil, WithSingleUse(), WithLease(time.Now().Add(time.Hour))} {
			b := make([]byte, 100+i*5000)
			l, err := owner.Alloc(ctx, len(b), lt)
			if err != nil {
				t.Fatal(err)
			}
			al := l.(*arenaLoan)
			p := owner.proxy(al.s, al.off, uint64(len(b)), al.gen)
			arenaPattern(l.Bytes(), arenaSeed(p))
			l.Commit()
			childCmd(t, reader, "hold "+proxyHex(p), "held")
			childCmd(t, reader, "hold "+proxyHex(p), "held") // two references
			switch ApplyPutOptions([]PutOption{lt}).Lifetime {
			case Owned:
				owned = append(owned, p)
			case Leased:
				leased = append(leased, p)
			}
		}
	}
	childCmd(t, reader, "check", "ok 72")
	for _, p := range owned {
		if err := owner.Free(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if st := owner.Stats(); st.Blocks != 36 {
		t.Fatalf("freed while held: %+v", st)
	}
	reader.Kill()
	waitBlocks(t, owner, len(leased)) // the owned and single-use ones
	for _, p := range leased {
		v := arenaResolve(t, owner, p) // still live: only the references went
		v.Release()
		if err := owner.Free(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	waitBlocks(t, owner, 0)
}

// TestArenaProcessKillCampaign: readers resolving and releasing in a loop
// are killed at random moments, while one reader keeps going; the owner
// drops exactly the dead readers' references: no leak (every block is
// reclaimed in the end) and no double drop (the survivor never finds its
// reference gone).
func TestArenaProcessKillCampaign(t *testing.T) {
	ctx := context.Background()
	dir := arenaDir(t)
	owner := openArena(t, dir, WithReapInterval(5*time.Millisecond))
	var args []string
	var ps []Proxy
	for i := 0; i < 6; i++ {
		b := make([]byte, 1000+i*3000)
		l, err := owner.Alloc(ctx, len(b))
		if err != nil {
			t.Fatal(err)
		}
		al := l.(*arenaLoan)
		p := owner.proxy(al.s, al.off, uint64(len(b)), al.gen)
		arenaPattern(l.Bytes(), arenaSeed(p))
		l.Commit()
		ps = append(ps, p)
		args = append(args, proxyHex(p))
	}
	args = append([]string{dir}, args...)
	survivor := childproc.Start(t, "arena-looper", args...)
	childLine(t, survivor, "ready")
	rng := rand.New(rand.NewPCG(7, 8))
	start := time.Now()
	for round := 0; round < 16 && time.Since(start) < 4*time.Second; round++ {
		var kids []*childproc.Child
		for k := 0; k < 2; k++ {
			c := childproc.Start(t, "arena-looper", args...)
			kids = append(kids, c)
		}
		for _, c := range kids {
			childLine(t, c, "ready")
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		for _, c := range kids {
			c.Kill()
		}
	}
	l := childCmd(t, survivor, "stop", "stopped")
	if l != "stopped bad 0 under 0" {
		t.Fatalf("survivor: %s", l)
	}
	if err := survivor.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if err := owner.Free(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	waitBlocks(t, owner, 0)
}

// TestArenaProcessCollect: an owner killed by SIGKILL while nobody maps its
// arena leaves files that Collect removes.
func TestArenaProcessCollect(t *testing.T) {
	dir := arenaDir(t)
	owner := childproc.Start(t, "arena-owner", dir)
	childLine(t, owner, "ready")
	p, err := parseProxyHex(childCmd(t, owner, "put 5000 owned", ""))
	if err != nil {
		t.Fatal(err)
	}
	if removed, err := Collect(dir); err != nil || len(removed) != 0 {
		t.Fatalf("collect with the owner alive: %v %v", removed, err)
	}
	owner.Kill()
	removed, err := Collect(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{segName(p.Segment, "data"), segName(p.Segment, "meta")}
	if strings.Join(removed, " ") != strings.Join(want, " ") {
		t.Fatalf("collect removed %v, want %v", removed, want)
	}
	a := openArena(t, dir)
	if _, err := a.Resolve(context.Background(), p); !errors.Is(err, ErrOwnerDead) {
		t.Fatalf("resolve after collect: %v", err)
	}
}
