//go:build linux && cgo

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/capi/capitest"
	"github.com/shmex/shmex/exchange"
	"github.com/tinylib/msgp/msgp"
)

// These tests call the Go core of the library directly (the functions that
// exports.go wraps), under the race detector: concurrent use of one handle
// from many threads, and closes racing calls, must give statuses, never a
// crash or a race.

func openTest(t testing.TB, root, name string) *exchangeObj {
	t.Helper()
	e, _, err := openExchange(name, openOptions{root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeObject(e) })
	return e
}

func addArgs(a, b int64) []byte {
	return msgp.AppendInt64(msgp.AppendInt64(msgp.AppendArrayHeader(nil, 2), a), b)
}

func TestHandleKinds(t *testing.T) {
	root := capitest.Root(t)
	calc := capitest.ServeCalc(t, root, "kinds")
	e := openTest(t, root, "kinds")
	c, ch, err := e.openClient("")
	if err != nil {
		t.Fatal(err)
	}
	_, hh, err := c.openHandle(calc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lookup[*handleObj](ch, kindHandle); !errors.Is(err, errBadHandle) || !strings.Contains(err.Error(), "client handle where a handle") {
		t.Fatalf("client as handle: %v", err)
	}
	if _, err := lookup[*handleObj](0, kindHandle); !errors.Is(err, errBadHandle) {
		t.Fatalf("NULL: %v", err)
	}
	if _, err := lookup[*handleObj](hh, kindHandle); err != nil {
		t.Fatal(err)
	}
	if err := closeObject(c); err != nil {
		t.Fatal(err)
	}
	// The client's close closed its handle too.
	if _, err := lookup[*handleObj](hh, kindHandle); !errors.Is(err, errBadHandle) {
		t.Fatalf("handle of a closed client: %v", err)
	}
	if err := closeObject(c); !errors.Is(err, errClosed) {
		t.Fatalf("second close: %v", err)
	}
}

// TestConcurrentCalls runs calls and futures from many goroutines on one
// handle and on handles of their own, while others open and free futures.
func TestConcurrentCalls(t *testing.T) {
	root := capitest.Root(t)
	calc := capitest.ServeCalc(t, root, "conc")
	e := openTest(t, root, "conc")
	c, _, err := e.openClient("")
	if err != nil {
		t.Fatal(err)
	}
	shared, _, err := c.openHandle(calc.ID)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := shared
			if g%2 == 0 {
				var err error
				if h, _, err = c.openHandle(calc.ID); err != nil {
					errs <- err
					return
				}
				defer closeHandle(h, -1)
			}
			for i := range 100 {
				var res []byte
				var err error
				if i%2 == 0 {
					res, err = h.call("add", addArgs(int64(g), int64(i)), int64(time.Minute))
				} else {
					var f *futureObj
					if f, _, err = h.action("add", addArgs(int64(g), int64(i))); err == nil {
						res, err = f.wait(-1)
						closeObject(f)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				if v, _, err := msgp.ReadInt64Bytes(res); err != nil || v != int64(g+i) {
					errs <- fmt.Errorf("%d + %d = %d, %v", g, i, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCloseRacesCalls closes the client, then the exchange, while goroutines
// call through them: every call ends with a status of a closed object.
func TestCloseRacesCalls(t *testing.T) {
	root := capitest.Root(t)
	calc := capitest.ServeCalc(t, root, "race")
	for round := range 3 {
		e, _, err := openExchange("race", openOptions{root: root})
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := e.openClient("")
		if err != nil {
			t.Fatal(err)
		}
		h, hh, err := c.openHandle(calc.ID)
		if err != nil {
			t.Fatal(err)
		}
		var calls atomic.Int64
		var wg sync.WaitGroup
		bad := make(chan error, 16)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					// Look the handle up each time, as every exported call does.
					ho, err := lookup[*handleObj](hh, kindHandle)
					if err == nil {
						if f, _, ferr := ho.action("add", addArgs(1, 2)); ferr == nil {
							_, err = f.wait(-1)
							closeObject(f)
						} else {
							err = ferr
						}
					}
					if err == nil {
						calls.Add(1)
						continue
					}
					if st, _ := statusOf(err); st != statusBadHandle && st != statusClosed {
						bad <- err
					}
					return
				}
			}()
		}
		for calls.Load() < 50 {
			time.Sleep(time.Millisecond)
		}
		if round%2 == 0 {
			closeObject(c)
		}
		closeObject(e)
		wg.Wait()
		close(bad)
		for err := range bad {
			t.Errorf("round %d: %v (status %d)", round, err, func() int { s, _ := statusOf(err); return s }())
		}
		if _, err := h.call("add", addArgs(1, 1), -1); err == nil {
			t.Errorf("round %d: a call on a closed handle worked", round)
		}
	}
}

// TestAgentReceivers receives from one agent in several goroutines and
// answers from others, while a Go client calls it; then closes it while
// receivers wait.
func TestAgentReceivers(t *testing.T) {
	root := capitest.Root(t)
	e := openTest(t, root, "recv")
	a, _, err := e.openAgent("Echo", nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := e.openClient("")
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := c.openHandle(a.id)
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan *requestObj, 16)
	var recvs sync.WaitGroup
	for range 3 {
		recvs.Add(1)
		go func() {
			defer recvs.Done()
			for {
				r, _, err := a.recv(-1)
				if err != nil {
					if st, _ := statusOf(err); st != statusShutdown && st != statusClosed {
						t.Errorf("recv: %v", err)
					}
					return
				}
				reqs <- r
			}
		}()
	}
	var replies sync.WaitGroup
	for range 2 {
		replies.Add(1)
		go func() {
			defer replies.Done()
			for r := range reqs {
				if err := r.reply(append([]byte(nil), r.msg.args...)); err != nil {
					t.Errorf("reply: %v", err)
				}
			}
		}()
	}
	var calls sync.WaitGroup
	for g := range 4 {
		calls.Add(1)
		go func() {
			defer calls.Done()
			for i := range 50 {
				want := msgp.AppendInt64(nil, int64(g*1000+i))
				res, err := h.call("echo", want, int64(time.Minute))
				if err != nil || string(res) != string(want) {
					t.Errorf("echo: %x, %v", res, err)
					return
				}
			}
		}()
	}
	calls.Wait()
	if _, err := h.ping(int64(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := closeObject(a); err != nil {
		t.Fatal(err)
	}
	recvs.Wait()
	close(reqs)
	replies.Wait()
	if st, err := e.status(a.id); err != nil || st != exchange.StatusTerminated {
		t.Fatalf("status after close: %v, %v", st, err)
	}
}

// TestHeaderStatusCodes checks the status codes of shmex.h, the Python
// bindings and the Fortran module against status.go.
func TestHeaderStatusCodes(t *testing.T) {
	want := map[string]int{
		"OK": statusOK, "EINVAL": statusInval, "EBADHANDLE": statusBadHandle, "ECLOSED": statusClosed,
		"EBADID": statusBadID, "EMAILBOX_CLOSED": statusMailboxClosed, "ETIMEDOUT": statusTimedOut,
		"EPENDING": statusPending, "EREMOTE": statusRemote, "EAGENT_TERMINATED": statusAgentTerminated,
		"ECANCELED": statusCanceled, "ESHUTDOWN": statusShutdown, "ETOOLARGE": statusTooLarge,
		"ENOSPACE": statusNoSpace, "EPROXY": statusProxy, "ETRUNCATED": statusTruncated,
		"EEXIST": statusExist, "EIO": statusIO, "EBUSY": statusBusy,
	}
	for _, src := range []struct {
		file string
		re   *regexp.Regexp
	}{
		{"shmex.h", regexp.MustCompile(`#define SHMEX_(OK|E[A-Z_]+) \(?(-?\d+)\)?`)},
		{"../python/shmex/_lib.py", regexp.MustCompile(`(?m)^(OK|E[A-Z_]+) = (-?\d+)$`)},
		{"../fortran/src/shmex.f90", regexp.MustCompile(`SHMEX_(OK|E[A-Z_]+) = (-?\d+)`)},
	} {
		b, err := os.ReadFile(src.file)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, m := range src.re.FindAllStringSubmatch(string(b), -1) {
			got[m[1]], _ = strconv.Atoi(m[2])
		}
		for name, v := range want {
			if g, ok := got[name]; !ok || g != v {
				t.Errorf("%s: %s is %d (present %v), want %d", src.file, name, g, ok, v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d status codes, want %d", src.file, len(got), len(want))
		}
	}
}

// TestHeaderExported checks that every function shmex.h declares is defined
// by shmex.c or mp.c (so that the library exports it).
func TestHeaderExported(t *testing.T) {
	decl := regexp.MustCompile(`(?m)^[a-z][a-z0-9_ *]*?\b(shmex_[a-z0-9_]+)\(`)
	h, err := os.ReadFile("shmex.h")
	if err != nil {
		t.Fatal(err)
	}
	var defs strings.Builder
	for _, f := range []string{"shmex.c", "mp.c"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		defs.Write(b)
	}
	defined := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(defs.String()))
	for sc.Scan() {
		if m := decl.FindStringSubmatch(sc.Text()); m != nil {
			defined[m[1]] = true
		}
	}
	n := 0
	for _, m := range decl.FindAllStringSubmatch(string(h), -1) {
		n++
		if !defined[m[1]] {
			t.Errorf("%s is declared in shmex.h but not defined", m[1])
		}
	}
	if n < 60 {
		t.Fatalf("found only %d declarations in shmex.h", n)
	}
}

// tableSize counts the objects in the handle table.
func tableSize() int {
	n := 0
	for i := range table {
		s := &table[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// TestNoHandleLeak checks that futures taken, requests answered, views
// released and loans committed leave neither the table nor their parents.
func TestNoHandleLeak(t *testing.T) {
	root := capitest.Root(t)
	calc := capitest.ServeCalc(t, root, "leak")
	e := openTest(t, root, "leak")
	c, _, err := e.openClient("")
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := c.openHandle(calc.ID)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := e.openAgent("Echo", nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ha, _, err := c.openHandle(a.id)
	if err != nil {
		t.Fatal(err)
	}
	before := tableSize()
	for i := range 500 {
		f, _, err := h.action("add", addArgs(1, int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.wait(-1); err != nil {
			t.Fatal(err)
		}
		closeObject(f)
		af, _, err := ha.action("x", nil)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := a.recv(-1)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			err = r.reply(msgp.AppendNil(nil))
		} else {
			err = r.failRequest("KeyError", "odd")
		}
		if err != nil {
			t.Fatal(err)
		}
		af.wait(-1)
		closeObject(af)
		l, _, err := e.allocLoan(64, lifetimeSingleUse, 0)
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.commit()
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := e.resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		closeObject(v)
	}
	if after := tableSize(); after != before {
		t.Fatalf("%d objects in the table after the calls, %d before", after, before)
	}
	for _, o := range []object{h, ha, a} {
		if n := len(o.base().kids); n != 0 {
			t.Errorf("%T keeps %d children", o, n)
		}
	}
}

// BenchmarkCoreAction measures what the library adds to a Go action call
// (the handle table, the future's object, the copy of the result), without
// the crossing from C: compare with BenchmarkGoAction.
func BenchmarkCoreAction(b *testing.B) {
	root := capitest.Root(b)
	calc := capitest.ServeCalc(b, root, "bcore")
	e := openTest(b, root, "bcore")
	c, _, err := e.openClient("")
	if err != nil {
		b.Fatal(err)
	}
	h, hh, err := c.openHandle(calc.ID)
	if err != nil {
		b.Fatal(err)
	}
	args := msgp.AppendBytes(nil, make([]byte, 64))
	b.Run("library", func(b *testing.B) {
		for b.Loop() {
			ho, err := lookup[*handleObj](hh, kindHandle)
			if err != nil {
				b.Fatal(err)
			}
			f, fh, err := ho.action("noop", args)
			if err != nil {
				b.Fatal(err)
			}
			fo, err := lookup[*futureObj](fh, kindFuture)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := fo.wait(-1); err != nil {
				b.Fatal(err)
			}
			closeObject(f)
		}
	})
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			f, err := h.h.ActionRaw(context.Background(), "noop", args)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Wait(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCoreLoan measures the library's side of a loan passed to a Go
// action (shmex_loan_alloc, then shmex_action_loan and shmex_future_take:
// the handle table, the Blob, the commit), next to a no-op action, without
// the crossing from C. "alloc" is a loan given back unused; "loan/SIZE" a
// loan of SIZE bytes (256 MiB: a single-block segment, reserved first).
func BenchmarkCoreLoan(b *testing.B) {
	root := capitest.Root(b)
	calc := capitest.ServeCalc(b, root, "bloan")
	e := openTest(b, root, "bloan")
	c, _, err := e.openClient("")
	if err != nil {
		b.Fatal(err)
	}
	h, _, err := c.openHandle(calc.ID)
	if err != nil {
		b.Fatal(err)
	}
	call := func(b *testing.B, action string, args []byte) {
		f, _, err := h.action(action, args)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.wait(-1); err != nil {
			b.Fatal(err)
		}
		closeObject(f)
	}
	b.Run("noop", func(b *testing.B) {
		args := msgp.AppendBytes(nil, make([]byte, 1024))
		for b.Loop() {
			call(b, "noop", args)
		}
	})
	b.Run("alloc", func(b *testing.B) {
		for b.Loop() {
			l, _, err := e.allocLoan(1024, lifetimeSingleUse, 0)
			if err != nil {
				b.Fatal(err)
			}
			if err := l.abort(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, size := range []uint64{1 << 10, 256 << 20} { // 256 MiB: a segment of its own
		b.Run(fmt.Sprintf("loan/%d", size), func(b *testing.B) {
			if err := e.reserve([]int{int(size)}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				l, _, err := e.allocLoan(size, lifetimeSingleUse, 0)
				if err != nil {
					b.Fatal(err)
				}
				p, err := l.commit()
				if err != nil {
					b.Fatal(err)
				}
				call(b, "length", p)
			}
		})
	}
}

// TestSendStatus: a message the caller built badly is SHMEX_EINVAL, one
// with a text field over the codec limit SHMEX_ETOOLARGE, as shmex.h says
// (the send used to wrap both as EINVAL).
func TestSendStatus(t *testing.T) {
	e := openTest(t, capitest.Root(t), "send-status")
	a, err := e.registerAgent("Sink", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.registerClient("")
	if err != nil {
		t.Fatal(err)
	}
	long := exchange.NewActionRequest(c, a, strings.Repeat("x", exchange.MaxTextSize+1), nil)
	if st, _ := statusOf(e.send(long, int64(time.Second))); st != statusTooLarge {
		t.Errorf("send with an action name over MaxTextSize: status %d, want %d (ETOOLARGE)", st, statusTooLarge)
	}
	bad := exchange.NewActionRequest(c, a, "", nil) // an action request without an action
	if st, _ := statusOf(e.send(bad, int64(time.Second))); st != statusInval {
		t.Errorf("send of a malformed message: status %d, want %d (EINVAL)", st, statusInval)
	}
}
