package proxystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

func init() {
	roles["wrap-agent"] = roleWrapAgent
}

// roleWrapAgent serves the agent args[2] of the shared-memory exchange
// "wrapped" under root args[0], wrapped with the file store in args[1]
// (codec args[3]) or, when args[1] is "arena", the exchange's arena store,
// with resolve mode args[4] and async args[5]: it answers every
// action request with its arguments reversed, and a shutdown request by
// answering and exiting.
func roleWrapAgent(args []string) int {
	fail := func(err error) int { fmt.Println("error", err); return 1 }
	ctx := context.Background()
	codec, _ := strconv.Atoi(args[3])
	mode, _ := strconv.Atoi(args[4])
	agent, err := exchange.ParseEntityID(args[2])
	if err != nil {
		return fail(err)
	}
	x, err := exchange.Open("wrapped", exchange.WithRoot(args[0]))
	if err != nil {
		return fail(err)
	}
	var store Store
	if args[1] == "arena" {
		store, err = OpenArena(x.Dir(), testArenaOpts...)
	} else {
		store, err = OpenFileStore(args[1], WithCompression(Compression(codec)))
	}
	if err != nil {
		return fail(err)
	}
	defer store.Close()
	w := Wrap(x, store, WithResolveMode(ResolveMode(mode)), WithResolveAsync(args[5] == "true"))
	defer w.Close()
	mb, err := w.Mailbox(ctx, agent)
	if err != nil {
		return fail(err)
	}
	fmt.Println("ready")
	var m exchange.Message
	for {
		if err := mb.Recv(ctx, &m); err != nil {
			return fail(err)
		}
		switch m.Kind {
		case exchange.KindActionRequest:
			res := slices.Clone(m.Args)
			slices.Reverse(res)
			m.SetResponse(&m, res)
		case exchange.KindShutdownRequest:
			m.SetResponse(&m, nil)
			if err := w.Send(ctx, &m); err != nil {
				return fail(err)
			}
			return 0
		default:
			return fail(fmt.Errorf("unexpected %v", &m))
		}
		if err := w.Send(ctx, &m); err != nil {
			return fail(err)
		}
	}
}

// Payloads of several MiB, far over the shared-memory exchange's largest
// message, go through the wrapped exchange between two processes with the
// file store or the arena store, both ways.
func TestWrapTwoProcessesBigPayloads(t *testing.T) {
	for _, tc := range []struct {
		name               string
		mine, theirs       Compression
		theirMode          ResolveMode
		myAsync, theirSync bool
		arena              bool
	}{
		{"plain-zerocopy-async", CompressNone, CompressS2, ResolveZeroCopy, false, false, false},
		{"zstd-copy", CompressZstd, CompressNone, ResolveCopy, true, true, false},
		{"arena-zerocopy", 0, 0, ResolveZeroCopy, false, true, true},
		{"arena-copy-async", 0, 0, ResolveCopy, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			base := t.TempDir()
			root, dir := filepath.Join(base, "root"), filepath.Join(base, "files")
			x := openSHM(t, root, 0)
			var store Store = openFS(t, dir, WithCompression(tc.mine))
			storeArg := dir
			if tc.arena {
				a, err := OpenArena(x.Dir(), testArenaOpts...)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Close()
				store, storeArg = a, "arena"
			}
			w := Wrap(x, store, WithResolveAsync(tc.myAsync))
			defer w.Close()
			agent, err := w.RegisterAgent(ctx, exchange.Behavior{Name: "Reverser"})
			if err != nil {
				t.Fatal(err)
			}
			client, err := w.RegisterClient(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mb, err := w.Mailbox(ctx, client)
			if err != nil {
				t.Fatal(err)
			}
			child := startChild(t, "wrap-agent", root, storeArg, agent.String(),
				strconv.Itoa(int(tc.theirs)), strconv.Itoa(int(tc.theirMode)), strconv.FormatBool(!tc.theirSync))
			if line, err := child.Line(20 * time.Second); line != "ready" {
				t.Fatalf("child said %q, %v", line, err)
			}

			sizes := []int{3 << 20, 64 << 10, 9 << 20, 100, 5 << 20}
			for i, n := range sizes {
				args := pattern(uint64(i), n, i%2 == 0)
				req := exchange.NewActionRequest(client, agent, "reverse", args)
				if n > 64<<10 {
					// Unwrapped, the message does not fit the ring.
					err := x.Send(ctx, req)
					wantIs(t, "unwrapped Send of a big payload", err, exchange.ErrMessageTooLarge)
				}
				if err := w.Send(ctx, req); err != nil {
					t.Fatal(err)
				}
				var m exchange.Message
				if err := mb.Recv(ctx, &m); err != nil {
					select {
					case line := <-child.Lines():
						t.Fatalf("Recv: %v (child: %q)", err, line)
					default:
					}
					t.Fatalf("Recv: %v", err)
				}
				want := slices.Clone(args)
				slices.Reverse(want)
				if m.Kind != exchange.KindActionResponse || m.Tag != req.Tag || !bytes.Equal(m.Result, want) {
					t.Fatalf("response %v to %v", &m, req)
				}
			}
			shut := exchange.NewShutdownRequest(client, agent, false)
			if err := w.Send(ctx, shut); err != nil {
				t.Fatal(err)
			}
			var m exchange.Message
			if err := mb.Recv(ctx, &m); err != nil || m.Kind != exchange.KindShutdownResponse {
				t.Fatalf("shutdown: %v %v", &m, err)
			}
			if err := child.Wait(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			if st := w.Stats(); st.Proxied != 4 || st.Resolved != 4 {
				t.Fatalf("stats %+v, want 4 proxied and 4 resolved", st)
			}
			// Every payload was single use and resolved: no file is left.
			mb.Close()
			if payloads, temps := payloadFiles(t, dir); len(payloads)+len(temps) != 0 {
				t.Fatalf("left payload files %v and temporary files %v", payloads, temps)
			}
		})
	}
}

// An agent killed at a random moment while it resolves requests and writes
// responses leaves the file store whole: every published file resolves,
// and Sweep removes the temporary files it was writing. The client is
// never wedged: what was sent before the kill is received, resolved or
// reported.
func TestWrapAgentKilled(t *testing.T) {
	for round := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		base := t.TempDir()
		root, dir := filepath.Join(base, "root"), filepath.Join(base, "files")
		x := openSHM(t, root, 0)
		fs := openFS(t, dir)
		w := Wrap(x, fs)
		agent, err := w.RegisterAgent(ctx, exchange.Behavior{Name: "Reverser"})
		if err != nil {
			t.Fatal(err)
		}
		client, _ := w.RegisterClient(ctx)
		mb, _ := w.Mailbox(ctx, client)
		child := startChild(t, "wrap-agent", root, dir, agent.String(), "0", "0", "false")
		if line, err := child.Line(20 * time.Second); line != "ready" {
			t.Fatalf("child said %q, %v", line, err)
		}
		const n = 12
		for i := range n {
			req := exchange.NewActionRequest(client, agent, "reverse", pattern(uint64(i), 2<<20, false))
			if err := w.Send(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
		// Let the agent answer some, then kill it mid-way.
		var m exchange.Message
		if err := mb.Recv(ctx, &m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
		child.Kill()
		got := 1
		for {
			short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
			err := mb.Recv(short, &m)
			stop()
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if err != nil && !errors.Is(err, ErrResolve) {
				t.Fatalf("Recv after the kill: %v", err)
			}
			got++
		}
		files := checkStoreFiles(t, fs)
		_, temps := payloadFiles(t, dir)
		removed, err := fs.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, left := payloadFiles(t, dir); len(left) != 0 || removed != len(temps) {
			t.Fatalf("Sweep removed %d of %v, left %v", removed, temps, left)
		}
		t.Logf("round %d: %d responses, %d whole files left, %d temporary files swept", round, got, files, removed)
		w.Close()
		cancel()
	}
}
