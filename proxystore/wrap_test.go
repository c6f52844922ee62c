package proxystore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/bits"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/exchange/exchangetest"
)

// countingStore counts what goes through a Store.
type countingStore struct {
	Store
	puts, resolves atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, b []byte, opts ...PutOption) (Proxy, error) {
	c.puts.Add(1)
	return c.Store.Put(ctx, b, opts...)
}

func (c *countingStore) Resolve(ctx context.Context, p Proxy) (View, error) {
	v, err := c.Store.Resolve(ctx, p)
	if err == nil {
		c.resolves.Add(1)
	}
	return v, err
}

// wrapConfig is one way of wrapping for the conformance suite.
type wrapConfig struct {
	name  string
	mode  ResolveMode
	async bool
}

var wrapConfigs = []wrapConfig{
	{"copy", ResolveCopy, false},
	{"zerocopy", ResolveZeroCopy, false},
	{"copy-async", ResolveCopy, true},
	{"zerocopy-async", ResolveZeroCopy, true},
}

func (c wrapConfig) opts() []WrapOption {
	// The suite's payloads are a few bytes: a threshold of 4 proxies most
	// of them and leaves some (the 3-byte echo arguments) as they are.
	// The suite checks that a payload over exchange.MaxPayloadSize is
	// refused: WithMaxPayload keeps that limit (by default the wrapper
	// carries any size; see TestWrapAnySize).
	return []WrapOption{WithThreshold(4), WithResolveMode(c.mode), WithResolveAsync(c.async), WithMaxPayload(exchange.MaxPayloadSize)}
}

func localOpts(cfg exchangetest.Config) []exchange.LocalOption {
	var opts []exchange.LocalOption
	if cfg.MailboxCapacity > 0 {
		opts = append(opts, exchange.WithLocalCapacity(cfg.MailboxCapacity))
	}
	return opts
}

// checkProxied fails unless the suite went through the store.
func checkProxied(t *testing.T, c *countingStore) {
	t.Helper()
	if c.puts.Load() < 100 || c.resolves.Load() < 100 {
		t.Fatalf("the suite made %d puts and %d resolves: payloads were not proxied", c.puts.Load(), c.resolves.Load())
	}
	t.Logf("%d payloads proxied, %d resolved", c.puts.Load(), c.resolves.Load())
}

func TestWrapConformanceLocal(t *testing.T) {
	for _, wc := range wrapConfigs {
		t.Run(wc.name, func(t *testing.T) {
			store := &countingStore{Store: NewMemStore()}
			t.Run("suite", func(t *testing.T) {
				exchangetest.Run(t, exchangetest.Harness{
					New: func(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
						return Wrap(exchange.NewLocal(localOpts(cfg)...), store, wc.opts()...)
					},
					Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
						return Wrap(ex.(*Exchange).Unwrap().(*exchange.Local).NewHandle(), store, wc.opts()...)
					},
				})
			})
			checkProxied(t, store)
		})
	}
}

// mailboxBytes returns a ring size that holds at least n messages of about
// 100 bytes, as exchange's own tests do.
func mailboxBytes(n int) int {
	need := n * 128
	if need < 1024 {
		return 1024
	}
	return 1 << bits.Len(uint(need-1))
}

func openSHM(t testing.TB, root string, mailbox int) *exchange.SHM {
	t.Helper()
	opts := []exchange.Option{exchange.WithRoot(root)}
	if mailbox > 0 {
		opts = append(opts, exchange.WithMailboxBytes(mailbox))
	}
	x, err := exchange.Open("wrapped", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestWrapConformanceSHMFileStore runs the suite over the shared-memory
// exchange with the file store; the second participant opens its own
// exchange handle and its own FileStore on the same directory, as another
// process would.
func TestWrapConformanceSHMFileStore(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, wc := range []wrapConfig{wrapConfigs[0], wrapConfigs[3]} {
		t.Run(wc.name, func(t *testing.T) {
			var puts, resolves atomic.Int64
			var mu sync.Mutex
			var stores []*countingStore
			newStore := func(t *testing.T, dir string, c Compression) *countingStore {
				fs, err := OpenFileStore(dir, WithCompression(c))
				if err != nil {
					t.Fatal(err)
				}
				cs := &countingStore{Store: fs}
				t.Cleanup(func() {
					fs.Close()
					puts.Add(cs.puts.Load())
					resolves.Add(cs.resolves.Load())
				})
				mu.Lock()
				stores = append(stores, cs)
				mu.Unlock()
				return cs
			}
			t.Run("suite", func(t *testing.T) {
				exchangetest.Run(t, exchangetest.Harness{
					New: func(t *testing.T, cfg exchangetest.Config) exchange.Exchange {
						base := t.TempDir()
						mb := 0
						if cfg.MailboxCapacity > 0 {
							mb = mailboxBytes(cfg.MailboxCapacity)
						}
						return Wrap(openSHM(t, filepath.Join(base, "root"), mb), newStore(t, filepath.Join(base, "files"), CompressNone), wc.opts()...)
					},
					Open: func(t *testing.T, ex exchange.Exchange) exchange.Exchange {
						w := ex.(*Exchange)
						x := w.Unwrap().(*exchange.SHM)
						fs := w.Store().(*countingStore).Store.(*FileStore)
						return Wrap(openSHM(t, filepath.Dir(x.Dir()), 0), newStore(t, fs.Dir(), CompressS2), wc.opts()...)
					},
				})
			})
			c := &countingStore{}
			c.puts.Store(puts.Load())
			c.resolves.Store(resolves.Load())
			checkProxied(t, c)
		})
	}
}

// wrapPair returns a wrapped Local exchange with an agent and a client, and
// the agent's mailbox.
func wrapPair(t *testing.T, store Store, opts ...WrapOption) (x *Exchange, agent, client exchange.EntityID, mb exchange.Mailbox) {
	t.Helper()
	x = Wrap(exchange.NewLocal(exchange.WithLocalMaxMessageSize(4096)), store, opts...)
	t.Cleanup(func() { x.Close() })
	ctx := t.Context()
	var err error
	if agent, err = x.RegisterAgent(ctx, exchange.Behavior{Name: "A"}); err != nil {
		t.Fatal(err)
	}
	if client, err = x.RegisterClient(ctx); err != nil {
		t.Fatal(err)
	}
	if mb, err = x.Mailbox(ctx, agent); err != nil {
		t.Fatal(err)
	}
	return x, agent, client, mb
}

func recvMsg(t *testing.T, mb exchange.Mailbox, m *exchange.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := mb.Recv(ctx, m); err != nil {
		t.Fatalf("Recv: %v", err)
	}
}

func TestWrapProxies(t *testing.T) {
	for _, async := range []bool{false, true} {
		name := "sync"
		if async {
			name = "async"
		}
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			store := NewMemStore()
			x, agent, client, mb := wrapPair(t, store, WithThreshold(1000), WithResolveAsync(async))
			big := pattern(1, 100_000, false) // over the exchange's 4096-byte messages
			req := exchange.NewActionRequest(client, agent, "f", big)
			if err := x.Send(ctx, req); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(req.Args, big) {
				t.Fatal("Send modified the caller's message")
			}
			if store.Len() != 1 || x.Stats().Proxied != 1 {
				t.Fatalf("store holds %d payloads, stats %+v", store.Len(), x.Stats())
			}
			small := exchange.NewActionRequest(client, agent, "g", []byte("small"))
			if err := x.Send(ctx, small); err != nil {
				t.Fatal(err)
			}
			var m exchange.Message
			recvMsg(t, mb, &m)
			if !m.Equal(req) {
				t.Fatalf("received %v, want %v", &m, req)
			}
			recvMsg(t, mb, &m)
			if !m.Equal(small) {
				t.Fatalf("received %v, want %v", &m, small)
			}
			if store.Len() != 0 || x.Stats().Resolved != 1 {
				t.Fatalf("single-use payload not evicted: %d left, stats %+v", store.Len(), x.Stats())
			}

			// Results are proxied too; error responses and other kinds
			// are left alone.
			cmb, err := x.Mailbox(ctx, client)
			if err != nil {
				t.Fatal(err)
			}
			resp := req.Response(big)
			if err := x.Send(ctx, resp); err != nil {
				t.Fatal(err)
			}
			errResp := req.ErrorResponse(errors.New("boom"))
			ping := exchange.NewPingRequest(agent, client)
			for _, s := range []*exchange.Message{errResp, ping} {
				if err := x.Send(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			for _, want := range []*exchange.Message{resp, errResp, ping} {
				recvMsg(t, cmb, &m)
				if !m.Equal(want) {
					t.Fatalf("received %v, want %v", &m, want)
				}
			}
			if st := x.Stats(); st.Proxied != 2 || st.Resolved != 2 {
				t.Fatalf("stats %+v", st)
			}

			// A payload that already is a proxy is sent as it is.
			p, err := store.Put(ctx, big)
			if err != nil {
				t.Fatal(err)
			}
			pre := exchange.NewActionRequest(client, agent, "f", AppendPayload(nil, p))
			if err := x.Send(ctx, pre); err != nil {
				t.Fatal(err)
			}
			recvMsg(t, mb, &m)
			if !bytes.Equal(m.Args, big) || x.Stats().Proxied != 2 {
				t.Fatalf("pre-proxied payload: received %d bytes, stats %+v", len(m.Args), x.Stats())
			}
			if store.Len() != 1 {
				t.Fatal("an owned payload was evicted by its resolve")
			}
		})
	}
}

func TestWrapSendFailures(t *testing.T) {
	ctx := t.Context()
	store := NewMemStore()
	x, agent, client, _ := wrapPair(t, store, WithThreshold(10), WithPutOptions())
	big := pattern(2, 5000, false)
	// The destination does not exist: the payload put is freed.
	err := x.Send(ctx, exchange.NewActionRequest(client, exchange.NewAgentID(), "f", big))
	wantIs(t, "Send to a missing mailbox", err, exchange.ErrBadEntityID)
	// An invalid message is refused before anything is put.
	bad := exchange.NewActionRequest(client, agent, "f", big)
	bad.Tag = exchange.UUID{}
	wantIs(t, "Send of an invalid message", x.Send(ctx, bad), exchange.ErrBadMessage)
	if store.Len() != 0 || x.Stats().Proxied != 0 {
		t.Fatalf("store holds %d payloads after failed sends", store.Len())
	}
	// The store fails: the message is not sent.
	store.Close()
	wantIs(t, "Send with a closed store", x.Send(ctx, exchange.NewActionRequest(client, agent, "f", big)), ErrClosed)
	// Unproxied messages still go.
	if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", []byte("tiny"))); err != nil {
		t.Fatal(err)
	}
}

func TestWrapShouldProxy(t *testing.T) {
	ctx := t.Context()
	store := NewMemStore()
	var seen atomic.Int64
	x, agent, client, mb := wrapPair(t, store, WithShouldProxy(func(b []byte) bool {
		seen.Add(1)
		return bytes.HasPrefix(b, []byte("proxy me"))
	}))
	for _, args := range []string{"proxy me please", "leave me", ""} {
		if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", []byte(args))); err != nil {
			t.Fatal(err)
		}
	}
	if seen.Load() != 2 || x.Stats().Proxied != 1 {
		t.Fatalf("policy called %d times (empty payloads skip it), %d proxied", seen.Load(), x.Stats().Proxied)
	}
	var m exchange.Message
	for _, want := range []string{"proxy me please", "leave me", ""} {
		recvMsg(t, mb, &m)
		if string(m.Args) != want {
			t.Fatalf("received %q, want %q", m.Args, want)
		}
	}
}

// In zero-copy mode the field aliases the view until the next Recv, which
// gives the Message its own buffer back before decoding into it: a decode
// into the read-only mapping would crash the test.
func TestWrapZeroCopy(t *testing.T) {
	ctx := t.Context()
	fs := openFS(t, t.TempDir())
	x, agent, client, mb := wrapPair(t, fs, WithThreshold(1000), WithResolveMode(ResolveZeroCopy))
	big := pattern(3, 3*mmapThreshold, false)
	for range 3 {
		if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", big)); err != nil {
			t.Fatal(err)
		}
		if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "g", []byte("a small one after"))); err != nil {
			t.Fatal(err)
		}
	}
	var m exchange.Message
	m.Args = make([]byte, 0, 256)
	own := &m.Args[:1][0]
	for i := range 3 {
		recvMsg(t, mb, &m)
		if !bytes.Equal(m.Args, big) || cap(m.Args) != len(m.Args) {
			t.Fatalf("received %d bytes with capacity %d", len(m.Args), cap(m.Args))
		}
		if payloads, _ := payloadFiles(t, fs.Dir()); len(payloads) != 3-i {
			t.Fatalf("%d payload files while a view is held", len(payloads))
		}
		recvMsg(t, mb, &m) // decodes into m's own buffer again
		if string(m.Args) != "a small one after" || &m.Args[0] != own {
			t.Fatalf("received %q, in its own buffer: %v", m.Args, &m.Args[0] == own)
		}
		// The single-use file went with the view.
		if payloads, _ := payloadFiles(t, fs.Dir()); len(payloads) != 2-i {
			t.Fatalf("%d payload files after the view was released", len(payloads))
		}
	}
	// Close releases the last view.
	if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", big)); err != nil {
		t.Fatal(err)
	}
	recvMsg(t, mb, &m)
	mb.Close()
	if payloads, _ := payloadFiles(t, fs.Dir()); len(payloads) != 0 {
		t.Fatalf("%d payload files after Close", len(payloads))
	}
}

func TestWrapManual(t *testing.T) {
	ctx := t.Context()
	store := NewMemStore()
	x, agent, client, mb := wrapPair(t, store, WithThreshold(1000), WithResolveMode(ResolveManual))
	big := pattern(4, 5000, true)
	if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", big)); err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	recvMsg(t, mb, &m)
	if !IsPayload(m.Args) {
		t.Fatalf("manual mode resolved the payload: %d bytes", len(m.Args))
	}
	v, err := x.Resolve(ctx, m.Args)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.Bytes(), big) {
		t.Fatal("resolved other bytes")
	}
	v.Release()
	_, err = x.Resolve(ctx, m.Args)
	wantIs(t, "second resolve of a single-use payload", err, ErrStaleProxy)
	_, err = x.Resolve(ctx, []byte("not a proxy"))
	wantIs(t, "Resolve of a plain payload", err, ErrBadProxy)
}

func TestWrapResolveErrors(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			ctx := t.Context()
			store := NewMemStore()
			x, agent, client, mb := wrapPair(t, store, WithThreshold(1000), WithResolveAsync(async))
			big := pattern(5, 5000, false)
			// A freed payload, a malformed proxy, a proxy of another
			// store, then a good message.
			p, err := store.Put(ctx, big)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Free(ctx, p); err != nil {
				t.Fatal(err)
			}
			freed := exchange.NewActionRequest(client, agent, "f", AppendPayload(nil, p))
			malformed := exchange.NewActionRequest(client, agent, "f", AppendPayload(nil, p))
			malformed.Args[3+pxOffVersion] = 2 // a layout this build does not know
			foreign := exchange.NewActionResponse(client, agent, exchange.NewTag(), AppendPayload(nil, Proxy{Store: NewStoreID(), Kind: 3, Segment: 1, Generation: 1}))
			good := exchange.NewActionRequest(client, agent, "f", big)
			for _, s := range []*exchange.Message{freed, malformed, foreign, good} {
				if err := x.Send(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			var m exchange.Message
			for _, tc := range []struct {
				sent  *exchange.Message
				cause error
				field string
			}{{freed, ErrStaleProxy, "args"}, {malformed, ErrBadProxy, "args"}, {foreign, ErrForeignProxy, "result"}} {
				err := mb.Recv(ctx, &m)
				var re *ResolveError
				if !errors.Is(err, ErrResolve) || !errors.Is(err, tc.cause) || !errors.As(err, &re) || re.Field != tc.field {
					t.Fatalf("Recv: %v, want a ResolveError of %s wrapping %v", err, tc.field, tc.cause)
				}
				// The message is there, proxy payload and all.
				if !m.Equal(tc.sent) {
					t.Fatalf("with the error, received %v, want %v", &m, tc.sent)
				}
			}
			recvMsg(t, mb, &m)
			if !bytes.Equal(m.Args, big) {
				t.Fatal("the message after the failures was not resolved")
			}
		})
	}
}

// capture is a slog handler that records messages.
type capture struct {
	mu   sync.Mutex
	msgs []string
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, r.Message)
	return nil
}
func (c *capture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *capture) WithGroup(string) slog.Handler      { return c }

func (c *capture) contains(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func TestWrapAsync(t *testing.T) {
	ctx := t.Context()
	store := &countingStore{Store: NewMemStore()}
	logs := &capture{}
	x, agent, client, mb := wrapPair(t, store, WithThreshold(1000), WithResolveAsync(true), WithWrapLogger(slog.New(logs)))
	var m exchange.Message
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	wantIs(t, "Recv on an empty mailbox", mb.Recv(short, &m), context.DeadlineExceeded)

	const n = 20
	for i := range n {
		if err := x.Send(ctx, exchange.NewActionRequest(client, agent, "f", pattern(uint64(i), 2000+i, false))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n - 2 {
		recvMsg(t, mb, &m)
		if !bytes.Equal(m.Args, pattern(uint64(i), 2000+i, false)) {
			t.Fatalf("message %d: wrong payload", i)
		}
	}
	// The mailbox resolves ahead of Recv.
	deadline := time.Now().Add(10 * time.Second)
	for store.resolves.Load() < n-1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if store.resolves.Load() != n-1 {
		t.Fatalf("%d resolves after %d Recvs: nothing resolved ahead", store.resolves.Load(), n-2)
	}
	// Closing the client with a message received ahead discards it,
	// loudly; the mailbox keeps the rest.
	mb.Close()
	if !logs.contains("received ahead") {
		t.Fatalf("no warning about the discarded message: %q", logs.msgs)
	}
	wantIs(t, "Recv after Close", mb.Recv(ctx, &m), exchange.ErrMailboxClosed)
	mb2, err := x.Mailbox(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	recvMsg(t, mb2, &m)
	if !bytes.Equal(m.Args, pattern(n-1, 2000+n-1, false)) {
		t.Fatal("the last message did not stay in the mailbox")
	}
}

func TestWrapCloseClosesMailboxes(t *testing.T) {
	store := NewMemStore()
	for _, async := range []bool{false, true} {
		x, _, _, mb := wrapPair(t, store, WithResolveAsync(async))
		done := make(chan error, 1)
		go func() {
			var m exchange.Message
			done <- mb.Recv(t.Context(), &m)
		}()
		time.Sleep(5 * time.Millisecond)
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, exchange.ErrMailboxClosed) && !errors.Is(err, exchange.ErrExchangeClosed) {
			t.Fatalf("Recv during Close: %v", err)
		}
		_, err := x.Mailbox(t.Context(), exchange.NewAgentID())
		wantIs(t, "Mailbox after Close", err, exchange.ErrExchangeClosed)
	}
}
