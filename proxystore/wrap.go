package proxystore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/internal/quietlog"
)

// DefaultThreshold is the payload size from which [Wrap] proxies action
// arguments and results by default.
const DefaultThreshold = 64 << 10

// ErrResolve reports a received proxy that could not be resolved. It comes
// in a [*ResolveError], which also wraps the store's error (such as
// [ErrStaleProxy] or [ErrExpired]); the message itself was received.
var ErrResolve = errors.New("proxystore: cannot resolve a received proxy")

// ResolveError is the error [Mailbox.Recv] returns with a message whose
// proxy failed to resolve. The message is in the Message given to Recv,
// with the proxy payload left in place of the bytes, so that the receiver
// can still answer it (for example with an error response); the next Recv
// goes on with the following message. errors.Is(err, [ErrResolve]) is true,
// and so is errors.Is(err, cause) for the store's sentinel.
type ResolveError struct {
	// Field is "args" or "result": which payload of the message failed.
	Field string
	// Proxy is the proxy that failed, zero when the payload could not even
	// be parsed ([ErrBadProxy]).
	Proxy Proxy
	// Err is the store's error.
	Err error
}

// Error describes the failure.
func (e *ResolveError) Error() string {
	return fmt.Sprintf("proxystore: resolve %s %v: %v", e.Field, e.Proxy, e.Err)
}

// Unwrap returns [ErrResolve] and the store's error.
func (e *ResolveError) Unwrap() []error { return []error{ErrResolve, e.Err} }

// ResolveMode says what a wrapped [Mailbox] does with the proxies it
// receives.
type ResolveMode uint8

// Resolve modes.
const (
	// ResolveCopy (the default): Args or Result receives a copy of the
	// payload, in the Message's own buffers, and the view is released at
	// once. The Message behaves exactly as with an unwrapped exchange.
	ResolveCopy ResolveMode = iota
	// ResolveZeroCopy: Args or Result aliases the store's view of the
	// payload (read-only shared memory for the arena and uncompressed
	// files). The view is held until the next Recv on the same Mailbox or
	// its Close; see [Mailbox.Recv] for the rules that come with it.
	ResolveZeroCopy
	// ResolveManual: proxies are left in place; the receiver resolves
	// them when it wants the bytes, with [Exchange.Resolve] (or
	// [ParsePayload] and its store), and releases the view itself.
	ResolveManual
)

// String names the mode.
func (m ResolveMode) String() string {
	switch m {
	case ResolveCopy:
		return "copy"
	case ResolveZeroCopy:
		return "zero-copy"
	case ResolveManual:
		return "manual"
	}
	return fmt.Sprintf("ResolveMode(%d)", uint8(m))
}

// WrapOption configures [Wrap].
type WrapOption func(*wrapOptions)

type wrapOptions struct {
	should     func([]byte) bool
	put        []PutOption
	mode       ResolveMode
	async      bool
	log        *slog.Logger
	maxPayload int64
}

// WithThreshold proxies the action arguments and results of n bytes or more
// (default [DefaultThreshold]). It replaces a [WithShouldProxy] policy.
func WithThreshold(n int) WrapOption {
	return func(o *wrapOptions) { o.should = func(b []byte) bool { return len(b) >= n } }
}

// WithShouldProxy sets the policy, Academy's should_proxy: f is called with
// every non-empty action argument payload (ActionRequest.Args) and result
// (ActionResponse.Result) that is not already a proxy, and the payload is
// proxied when it returns true. f must be safe for concurrent use and must
// not keep the slice.
func WithShouldProxy(f func(payload []byte) bool) WrapOption {
	return func(o *wrapOptions) { o.should = f }
}

// WithPutOptions sets the options of the Put that proxies a payload
// (default [WithSingleUse]: each proxied payload has exactly one receiver,
// and is evicted once it has resolved it).
func WithPutOptions(opts ...PutOption) WrapOption {
	return func(o *wrapOptions) { o.put = opts }
}

// WithResolveMode sets what mailboxes do with received proxies (default
// [ResolveCopy]).
func WithResolveMode(m ResolveMode) WrapOption {
	return func(o *wrapOptions) { o.mode = m }
}

// WithResolveAsync, Academy's resolve_async, makes each mailbox start
// resolving a message's proxy as soon as the message arrives rather than
// when Recv is called: from its first Recv, a mailbox keeps a goroutine
// that receives one message ahead and resolves its proxy, so that the
// resolution (reading and decompressing a file) overlaps with the
// caller's work on the previous message. Caveat: closing the Mailbox
// client discards the message received ahead, if any (it is logged at
// Warn level with its tag), as a message consumed by a client that then
// closes is lost with any exchange.
func WithResolveAsync(on bool) WrapOption {
	return func(o *wrapOptions) { o.async = on }
}

// WithMaxPayload bounds the payloads Send carries: a larger action argument
// or result is refused with [exchange.ErrMessageTooLarge], as an
// unwrapped exchange refuses payloads over [exchange.MaxPayloadSize]. By
// default (0) there is no bound but the store's.
func WithMaxPayload(n int64) WrapOption {
	return func(o *wrapOptions) { o.maxPayload = n }
}

// WithWrapLogger sets the logger. By default (nil) only warnings and
// errors reach [slog.Default]; pass a logger to see the debug records too.
func WithWrapLogger(l *slog.Logger) WrapOption {
	return func(o *wrapOptions) { o.log = l }
}

// Exchange wraps an [exchange.Exchange] as Academy's ProxyStoreExchange:
// Send replaces every action argument and result that the policy selects
// with a proxy into the store, and the mailboxes it hands out resolve the
// proxies they receive. Everything else is the wrapped exchange's.
//
// Every process that receives proxied payloads must wrap its exchange with
// a store that resolves them: the same arena directory, or the same file
// store directory.
type Exchange struct {
	inner exchange.Exchange
	async exchange.AsyncSender // inner, when it is one
	store Store
	o     wrapOptions

	proxied  atomic.Uint64
	resolved atomic.Uint64

	mu     sync.Mutex
	closed bool
	mboxes map[*Mailbox]struct{}
}

var (
	_ exchange.Exchange          = (*Exchange)(nil)
	_ exchange.IncarnationSender = (*Exchange)(nil)
	_ exchange.AsyncSender       = (*Exchange)(nil)
)

// Wrap returns ex wrapped with store. The wrapper does not own store:
// closing the wrapper closes ex and its mailboxes, not the store.
func Wrap(ex exchange.Exchange, store Store, opts ...WrapOption) *Exchange {
	o := wrapOptions{put: []PutOption{WithSingleUse()}}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	o.log = quietlog.Or(o.log)
	if o.should == nil {
		WithThreshold(DefaultThreshold)(&o)
	}
	async, _ := ex.(exchange.AsyncSender)
	return &Exchange{inner: ex, async: async, store: store, o: o, mboxes: map[*Mailbox]struct{}{}}
}

// Unwrap returns the wrapped exchange.
func (x *Exchange) Unwrap() exchange.Exchange { return x.inner }

// Store returns the store.
func (x *Exchange) Store() Store { return x.store }

// StoreOf returns the store of x when x is a wrapper, or wraps one (through
// Unwrap methods), and nil otherwise. An action in an agent process finds
// the store to lend its results from this way:
//
//	store := proxystore.StoreOf(agent.FromContext(ctx).Exchange())
func StoreOf(x exchange.Exchange) Store {
	for x != nil {
		if w, ok := x.(*Exchange); ok {
			return w.store
		}
		u, ok := x.(interface{ Unwrap() exchange.Exchange })
		if !ok {
			return nil
		}
		x = u.Unwrap()
	}
	return nil
}

// WrapStats counts what a wrapper did.
type WrapStats struct {
	// Proxied counts the payloads Send put in the store.
	Proxied uint64
	// Resolved counts the proxies this wrapper's mailboxes resolved.
	Resolved uint64
}

// Stats returns the wrapper's counters.
func (x *Exchange) Stats() WrapStats {
	return WrapStats{Proxied: x.proxied.Load(), Resolved: x.resolved.Load()}
}

// RegisterAgent is the wrapped exchange's.
func (x *Exchange) RegisterAgent(ctx context.Context, behavior exchange.Behavior, opts ...exchange.RegisterOption) (exchange.EntityID, error) {
	return x.inner.RegisterAgent(ctx, behavior, opts...)
}

// RegisterClient is the wrapped exchange's.
func (x *Exchange) RegisterClient(ctx context.Context, opts ...exchange.RegisterOption) (exchange.EntityID, error) {
	return x.inner.RegisterClient(ctx, opts...)
}

// Terminate is the wrapped exchange's. Caveat: the requests still queued in
// the mailbox are answered by the wrapped exchange without being resolved,
// so their proxied payloads are not evicted: single-use payloads of the
// file store stay on disk until freed, and arena blocks until their owner
// frees them or closes.
func (x *Exchange) Terminate(ctx context.Context, id exchange.EntityID) error {
	return x.inner.Terminate(ctx, id)
}

// Discover is the wrapped exchange's.
func (x *Exchange) Discover(ctx context.Context, behavior string, allowSubtypes bool) ([]exchange.EntityID, error) {
	return x.inner.Discover(ctx, behavior, allowSubtypes)
}

// Status is the wrapped exchange's.
func (x *Exchange) Status(ctx context.Context, id exchange.EntityID) (exchange.Status, error) {
	return x.inner.Status(ctx, id)
}

// Info is the wrapped exchange's.
func (x *Exchange) Info(ctx context.Context, id exchange.EntityID) (exchange.EntityInfo, error) {
	return x.inner.Info(ctx, id)
}

// wants reports whether payload is to be proxied by the policy.
func (x *Exchange) wants(payload []byte) bool {
	return len(payload) > 0 && !IsPayload(payload) && x.o.should(payload)
}

// payloadField returns the payload field of m that the wrapper may proxy:
// the arguments of an action request, the result of an action response.
func payloadField(m *exchange.Message) (*exchange.Payload, string) {
	switch m.Kind {
	case exchange.KindActionRequest:
		return &m.Args, "args"
	case exchange.KindActionResponse:
		return &m.Result, "result"
	}
	return nil, ""
}

// Send sends m, with its action argument (ActionRequest.Args) or result
// (ActionResponse.Result) put in the store and replaced by its proxy when
// the policy says so, and in any case when it is too large to travel
// inline: larger than [exchange.MaxPayloadSize], or refused by the wrapped
// exchange as too large for its mailbox ([exchange.ErrMessageTooLarge]; the
// payload is then proxied and the message sent again). So the wrapper
// carries any payload its store can hold. Payloads that already are
// proxies (a [Blob], a proxy of [AppendPayload]) are sent as they are. m
// itself is not modified. When the wrapped Send fails, the payload just put
// is freed. Errors: those of the wrapped Send, and the store's when the Put
// fails (the message is then not sent).
func (x *Exchange) Send(ctx context.Context, m *exchange.Message) error {
	_, err := x.send(ctx, m, sendPlain)
	return err
}

// SendIncarnation is Send that also returns the incarnation of the
// destination mailbox (exchange.IncarnationSender): the wrapped exchange's
// SendIncarnation when it has one; otherwise the incarnation read before
// the send when it is an [exchange.Reopener] ([exchange.IncarnationUnknown]
// when that read fails), else 0.
func (x *Exchange) SendIncarnation(ctx context.Context, m *exchange.Message) (uint32, error) {
	return x.send(ctx, m, sendIncarnation)
}

// SendAsync implements [exchange.AsyncSender]: a message whose payload
// travels inline is queued with the wrapped exchange's SendAsync, when it
// has one (its failures after the call are then the wrapped exchange's to
// log, and its next Flush returns the first); a message whose payload the
// wrapper puts in the store is sent as Send sends it, waiting, so that a
// send that fails frees what was put. On a wrapped exchange that is not an
// AsyncSender, SendAsync is Send.
func (x *Exchange) SendAsync(ctx context.Context, m *exchange.Message) error {
	_, err := x.send(ctx, m, sendQueued)
	return err
}

// Flush implements [exchange.AsyncSender]: the wrapped exchange's Flush,
// when it has one; nil otherwise (every send waited).
func (x *Exchange) Flush(ctx context.Context) error {
	if x.async != nil {
		return x.async.Flush(ctx)
	}
	return nil
}

// sendMode is how the wrapper hands a message to the wrapped exchange.
type sendMode uint8

const (
	sendPlain       sendMode = iota // Send
	sendIncarnation                 // SendIncarnation, or the best the wrapped exchange offers
	sendQueued                      // SendAsync when it has one, else Send
)

// sendInner sends m with the wrapped exchange in mode, reporting the
// incarnation of its destination in mode sendIncarnation.
func (x *Exchange) sendInner(ctx context.Context, m *exchange.Message, mode sendMode) (uint32, error) {
	switch {
	case mode == sendQueued && x.async != nil:
		return 0, x.async.SendAsync(ctx, m)
	case mode != sendIncarnation:
		return 0, x.inner.Send(ctx, m)
	}
	if s, ok := x.inner.(exchange.IncarnationSender); ok {
		return s.SendIncarnation(ctx, m)
	}
	var n uint32 // an exchange that cannot reopen: always the first incarnation
	if r, ok := x.inner.(exchange.Reopener); ok {
		n = exchange.IncarnationUnknown // not 0: a later look-up above it would read as a restart
		if v, err := r.Incarnation(ctx, m.Dest); err == nil {
			n = v
		}
	}
	return n, x.inner.Send(ctx, m)
}

// send is Send, SendIncarnation and SendAsync, by mode. A payload put in
// the store is sent waiting (sendQueued becomes sendPlain), so that a send
// that fails frees it.
func (x *Exchange) send(ctx context.Context, m *exchange.Message, mode sendMode) (uint32, error) {
	field, name := payloadField(m)
	if field != nil && x.o.maxPayload > 0 && int64(len(*field)) > x.o.maxPayload {
		return 0, fmt.Errorf("%w: %s of %d bytes, this wrapper carries at most %d (WithMaxPayload)",
			exchange.ErrMessageTooLarge, name, len(*field), x.o.maxPayload)
	}
	if field == nil || !x.wants(*field) && len(*field) <= exchange.MaxPayloadSize {
		n, err := x.sendInner(ctx, m, mode)
		if field == nil || !errors.Is(err, exchange.ErrMessageTooLarge) || len(*field) == 0 || IsPayload(*field) {
			return n, err
		}
		// Too large for the wrapped exchange's mailbox: proxy it.
	}
	// Send a shallow copy: replacing its field leaves the caller's message
	// alone.
	cp := *m
	m = &cp
	field, _ = payloadField(m)
	payload := *field
	// Validate everything but the payload's size before anything is put:
	// the proxy that replaces the payload is well under every limit.
	var buf [ProxyEncodedSize]byte
	*field = AppendPayload(buf[:0], Proxy{})
	if err := m.Validate(); err != nil {
		return 0, err
	}
	p, err := x.store.Put(ctx, payload, x.o.put...)
	if err != nil {
		return 0, fmt.Errorf("proxystore: proxy the %s of %v: %w", name, m, err)
	}
	*field = AppendPayload(buf[:0], p)
	if mode == sendQueued {
		mode = sendPlain
	}
	n, err := x.sendInner(ctx, m, mode)
	if err != nil {
		if ferr := x.store.Free(context.WithoutCancel(ctx), p); ferr != nil {
			x.o.log.Warn("proxystore: free the proxy of an unsent message", "proxy", p, "err", ferr)
		}
		return n, err
	}
	x.proxied.Add(1)
	return n, nil
}

// Resolve resolves a proxy payload (as found in Args or Result with
// [ResolveManual]) with the wrapper's store. The caller releases the view.
func (x *Exchange) Resolve(ctx context.Context, payload []byte) (View, error) {
	p, err := ParsePayload(payload)
	if err != nil {
		return nil, err
	}
	return x.store.Resolve(ctx, p)
}

// Mailbox returns a client of the mailbox of id that resolves the proxies
// it receives (see [Mailbox.Recv]). opts go to the wrapped exchange's
// Mailbox.
func (x *Exchange) Mailbox(ctx context.Context, id exchange.EntityID, opts ...exchange.MailboxOption) (exchange.Mailbox, error) {
	return x.mailbox(ctx, id, x.o.mode, x.o.async, opts)
}

// ManualMailbox returns a client of the mailbox of id that resolves
// nothing, whatever the wrapper's resolve mode: proxies stay in the
// messages it receives, as with [ResolveManual]. It is for receivers that
// resolve proxies as they decode, reading the payloads in place rather
// than copies of them: the agent package's runtimes and clients receive
// this way (with [ResolvePayload] and [Blob]).
func (x *Exchange) ManualMailbox(ctx context.Context, id exchange.EntityID, opts ...exchange.MailboxOption) (exchange.Mailbox, error) {
	return x.mailbox(ctx, id, ResolveManual, false, opts)
}

func (x *Exchange) mailbox(ctx context.Context, id exchange.EntityID, mode ResolveMode, async bool, opts []exchange.MailboxOption) (exchange.Mailbox, error) {
	inner, err := x.inner.Mailbox(ctx, id, opts...)
	if err != nil {
		return nil, err
	}
	mb := &Mailbox{x: x, inner: inner, mode: mode, async: async}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		inner.Close()
		return nil, exchange.ErrExchangeClosed
	}
	x.mboxes[mb] = struct{}{}
	return mb, nil
}

// Close closes the wrapper's mailboxes (releasing the views they hold) and
// the wrapped exchange. It does not close the store. Idempotent.
func (x *Exchange) Close() error {
	x.mu.Lock()
	x.closed = true
	boxes := make([]*Mailbox, 0, len(x.mboxes))
	for mb := range x.mboxes {
		boxes = append(boxes, mb)
	}
	x.mu.Unlock()
	for _, mb := range boxes {
		mb.Close()
	}
	return x.inner.Close()
}

// Mailbox is a client of a mailbox of a wrapped exchange: it receives with
// the wrapped client and resolves the proxies in what it receives.
type Mailbox struct {
	x     *Exchange
	inner exchange.Mailbox
	mode  ResolveMode // the wrapper's, or ResolveManual for ManualMailbox
	async bool        // resolve one message ahead

	closed atomic.Bool
	mu     sync.Mutex        // one Recv at a time; guards held, spare
	held   View              // ResolveZeroCopy: the view m's field aliases
	heldIn *exchange.Message // the Message whose field aliases held
	spare  []byte            // the buffer the aliased field had, given back later

	startOnce sync.Once
	pf        *prefetcher
}

var _ exchange.Mailbox = (*Mailbox)(nil)

// ID returns the mailbox's id.
func (mb *Mailbox) ID() exchange.EntityID { return mb.inner.ID() }

// Recv receives the next message into m, as [exchange.Mailbox.Recv] does,
// and resolves its proxied Args or Result according to the resolve mode:
//
//   - ResolveCopy: the field holds a copy of the payload in m's own
//     buffers, valid as [exchange.Message] says (until m is next decoded
//     into, reset or modified).
//   - ResolveZeroCopy: the field aliases the store's view of the payload
//     and is valid until the next Recv on this Mailbox or its Close,
//     whichever comes first, even when m is not decoded into again. It is
//     read-only (for the arena and uncompressed files, writing to it
//     faults and kills the process), and its capacity is its length. The
//     next Recv puts m's previous buffer back in the field before it
//     decodes (into m, or into another Message: m is then left with its
//     own buffer), so reusing m for Recv is safe; but do not write into the
//     field in place, directly or through its capacity, for instance with
//     m.Reset() followed by append to m.Args, or by m.SetResponse on a
//     received response: give the field a buffer of its own first. Copy
//     what must outlive the next Recv.
//   - ResolveManual: the field holds the proxy payload; nothing is
//     resolved.
//
// A proxy that fails to resolve is reported with a [*ResolveError]
// (errors.Is(err, ErrResolve)) with the message in m and the proxy payload
// left in the field: the message is never dropped. The resolution itself is
// not cut short by ctx once the message is received, so a deadline never
// hides a received message. Other errors are the wrapped Recv's.
func (mb *Mailbox) Recv(ctx context.Context, m *exchange.Message) error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.giveBack(m)
	if mb.closed.Load() {
		return exchange.ErrMailboxClosed
	}
	if mb.async {
		mb.startOnce.Do(mb.startPrefetch)
		if mb.pf == nil { // Close came between the check above and here
			return exchange.ErrMailboxClosed
		}
		return mb.pf.recv(ctx, mb, m)
	}
	if err := mb.inner.Recv(ctx, m); err != nil {
		return err
	}
	r := mb.take(m)
	return mb.install(m, r)
}

// giveBack releases the view held for the previous message. When m is not
// nil (the next Recv, about to decode into m), it first takes the view out
// of the Message it was installed in, putting back the buffer it replaced,
// and out of m when m is another Message: no decode may ever write into
// the view's memory (read-only, or a store's shared buffer), whichever
// Message the caller passes to Recv. Close passes nil: it does not write
// into a Message another goroutine may be using.
func (mb *Mailbox) giveBack(m *exchange.Message) {
	if mb.held == nil {
		return
	}
	b := mb.held.Bytes()
	if m != nil {
		if in := mb.heldIn; in != nil {
			if aliases(in.Args, b) {
				in.Args = mb.spare
			}
			if aliases(in.Result, b) {
				in.Result = mb.spare
			}
		}
		if aliases(m.Args, b) {
			m.Args = nil
		}
		if aliases(m.Result, b) {
			m.Result = nil
		}
	}
	if err := mb.held.Release(); err != nil {
		mb.x.o.log.Warn("proxystore: release a received payload", "proxy", mb.held.Proxy(), "err", err)
	}
	mb.held, mb.heldIn, mb.spare = nil, nil, nil
}

// aliases reports whether s (through its capacity) starts inside b.
func aliases(s, b []byte) bool {
	if cap(s) == 0 || len(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= base && p < base+uintptr(len(b))
}

// resolution is a received message's proxy, resolved or failed.
type resolution struct {
	field string // "", "args" or "result"
	view  View
	err   error
}

// proxyField returns the field of m holding a proxied value to resolve, if
// any. A Blob's proxy (FormBytes) is not one: the Blob's decoder resolves
// it.
func proxyField(m *exchange.Message) (*exchange.Payload, string) {
	f, name := payloadField(m)
	if f == nil || !IsPayload(*f) || Form((*f)[3+pxOffForm]) == FormBytes {
		return nil, ""
	}
	return f, name
}

// take resolves the proxy in m, if any and if the mode resolves.
func (mb *Mailbox) take(m *exchange.Message) resolution {
	if mb.mode == ResolveManual {
		return resolution{}
	}
	f, name := proxyField(m)
	if f == nil {
		return resolution{}
	}
	r := resolution{field: name}
	p, err := ParsePayload(*f)
	if err != nil {
		r.err = &ResolveError{Field: name, Err: err}
		return r
	}
	// Never cut short by the caller's context: the message is received.
	v, err := mb.x.store.Resolve(context.Background(), p)
	if err != nil {
		r.err = &ResolveError{Field: name, Proxy: p, Err: err}
		return r
	}
	mb.x.resolved.Add(1)
	r.view = v
	return r
}

// install puts a resolved payload into m's field, per the mode.
func (mb *Mailbox) install(m *exchange.Message, r resolution) error {
	if r.err != nil || r.view == nil {
		return r.err
	}
	f := &m.Args
	if r.field == "result" {
		f = &m.Result
	}
	b := r.view.Bytes()
	if mb.mode == ResolveZeroCopy {
		mb.held, mb.heldIn, mb.spare = r.view, m, (*f)[:0]
		*f = b[:len(b):len(b)]
		return nil
	}
	*f = append((*f)[:0], b...)
	if err := r.view.Release(); err != nil {
		mb.x.o.log.Warn("proxystore: release a received payload", "proxy", r.view.Proxy(), "err", err)
	}
	return nil
}

// Close closes this client (never the mailbox) and releases the view it
// holds: a ResolveZeroCopy field from the last Recv is invalid from then
// on. Idempotent.
func (mb *Mailbox) Close() error {
	if mb.closed.Swap(true) {
		return nil
	}
	err := mb.inner.Close() // wakes a Recv in progress
	mb.startOnce.Do(func() {})
	if mb.pf != nil {
		mb.pf.stop()
	}
	mb.mu.Lock()
	mb.giveBack(nil)
	mb.mu.Unlock()
	x := mb.x
	x.mu.Lock()
	delete(x.mboxes, mb)
	x.mu.Unlock()
	return err
}
