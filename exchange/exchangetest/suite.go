// Package exchangetest is the conformance suite that every implementation
// of [exchange.Exchange] must pass unchanged.
//
// An implementation's test calls [Run] with a [Harness] that makes fresh
// exchanges and, optionally, opens a second handle on the same exchange as
// another participant (another process) would. The suite runs its subtests
// in parallel, each on its own exchange; every wait in it is bounded by a
// context deadline, so a bug fails a test instead of hanging it, and no
// test asserts a duration.
package exchangetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
)

// Harness tells the suite how to make the exchanges it tests.
type Harness struct {
	// New returns a handle on a new, empty exchange configured by cfg. The
	// suite closes the handle (Close must be idempotent); New registers
	// any other clean-up (directories, segments) with t.Cleanup. When it
	// cannot honour cfg it calls t.Skip. New is called from parallel
	// subtests.
	New func(t *testing.T, cfg Config) exchange.Exchange

	// Open, when not nil, returns another handle on the exchange behind ex,
	// as a second participant (another process) would open it: for a
	// shared-memory exchange, a second Open of the same name. The suite
	// then sends, receives, registers and terminates through both handles
	// and checks that each sees what the other did, and that closing one
	// leaves the other working. The suite closes the handle. When Open is
	// nil the suite uses ex for both participants.
	Open func(t *testing.T, ex exchange.Exchange) exchange.Exchange
}

// Config is what a subtest asks of the exchange it gets from Harness.New.
type Config struct {
	// MailboxCapacity, when not zero, asks for small mailboxes: each must
	// fill up after at least MailboxCapacity and at most a few thousand
	// small messages (about 100 bytes encoded), so that the suite can test
	// a full mailbox. Zero means the implementation's default.
	MailboxCapacity int
}

const (
	// waitLong bounds the waits for events that must happen.
	waitLong = 20 * time.Second
	// waitShort bounds the waits for events that must not happen.
	waitShort = 50 * time.Millisecond
)

// Run runs the conformance suite on the implementation that h describes.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("exchangetest: Harness.New is nil")
	}
	s := &suite{h: h}
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"RegisterAgent", s.testRegisterAgent},
		{"RegisterClient", s.testRegisterClient},
		{"RegisterWithID", s.testRegisterWithID},
		{"RegisterErrors", s.testRegisterErrors},
		{"Discover", s.testDiscover},
		{"Missing", s.testMissing},
		{"SendErrors", s.testSendErrors},
		{"RecvTimeout", s.testRecvTimeout},
		{"RecvCanceled", s.testRecvCanceled},
		{"RoundTripAllKinds", s.testRoundTripAllKinds},
		{"SenderMayReuseMessage", s.testSenderMayReuseMessage},
		{"RequestResponse", s.testRequestResponse},
		{"MailboxIdleOptions", s.testMailboxIdleOptions},
		{"TerminateNoop", s.testTerminateNoop},
		{"TerminateDrains", s.testTerminateDrains},
		{"TerminateWakesRecv", s.testTerminateWakesRecv},
		{"TerminateAnswersRequests", s.testTerminateAnswersRequests},
		{"Reopen", s.testReopen},
		{"SendIncarnation", s.testSendIncarnation},
		{"MailboxCloseKeepsMailbox", s.testMailboxCloseKeepsMailbox},
		{"MailboxCloseWakesRecv", s.testMailboxCloseWakesRecv},
		{"FullMailbox", s.testFullMailbox},
		{"FullMailboxTerminate", s.testFullMailboxTerminate},
		{"ConcurrentSenders", func(t *testing.T) { s.testConcurrentSenders(t, Config{}) }},
		{"ConcurrentSendersSmallMailbox", func(t *testing.T) { s.testConcurrentSenders(t, Config{MailboxCapacity: 8}) }},
		{"PeerHandles", s.testPeerHandles},
		{"Close", s.testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t)
		})
	}
}

type suite struct{ h Harness }

// newExchange returns a fresh exchange, closed at the end of the test.
func (s *suite) newExchange(t *testing.T, cfg Config) exchange.Exchange {
	t.Helper()
	ex := s.h.New(t, cfg)
	if ex == nil {
		t.Fatal("Harness.New returned nil")
	}
	t.Cleanup(func() { _ = ex.Close() })
	return ex
}

// pair returns two handles on one fresh exchange: a, and b for the other
// participant (a itself when the harness has no Open).
func (s *suite) pair(t *testing.T, cfg Config) (a, b exchange.Exchange) {
	t.Helper()
	a = s.newExchange(t, cfg)
	if s.h.Open == nil {
		return a, a
	}
	b = s.h.Open(t, a)
	if b == nil {
		t.Fatal("Harness.Open returned nil")
	}
	t.Cleanup(func() { _ = b.Close() })
	return a, b
}

// ctx returns a context that ends after d or with the test.
func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return c
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func regAgent(t *testing.T, ex exchange.Exchange, name string, implements ...string) exchange.EntityID {
	t.Helper()
	id, err := ex.RegisterAgent(ctx(t, waitLong), exchange.Behavior{Name: name, Implements: implements})
	noErr(t, "RegisterAgent", err)
	return id
}

func regClient(t *testing.T, ex exchange.Exchange) exchange.EntityID {
	t.Helper()
	id, err := ex.RegisterClient(ctx(t, waitLong))
	noErr(t, "RegisterClient", err)
	return id
}

func mailbox(t *testing.T, ex exchange.Exchange, id exchange.EntityID) exchange.Mailbox {
	t.Helper()
	mb, err := ex.Mailbox(ctx(t, waitLong), id)
	noErr(t, "Mailbox", err)
	if mb.ID() != id {
		t.Fatalf("Mailbox(%v).ID() = %v", id, mb.ID())
	}
	t.Cleanup(func() { _ = mb.Close() })
	return mb
}

func send(t *testing.T, ex exchange.Exchange, m *exchange.Message) {
	t.Helper()
	noErr(t, "Send "+m.String(), ex.Send(ctx(t, waitLong), m))
}

func recv(t *testing.T, mb exchange.Mailbox) *exchange.Message {
	t.Helper()
	var m exchange.Message
	noErr(t, "Recv", mb.Recv(ctx(t, waitLong), &m))
	return &m
}

func wantStatus(t *testing.T, ex exchange.Exchange, id exchange.EntityID, want exchange.Status) {
	t.Helper()
	st, err := ex.Status(ctx(t, waitLong), id)
	noErr(t, "Status", err)
	if st != want {
		t.Fatalf("Status(%v) = %v, want %v", id, st, want)
	}
}

func wantMessage(t *testing.T, got, want *exchange.Message) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("received %v\n     want %v", got, want)
	}
}

// sortIDs sorts ids by their string form, for comparing sets.
func sortIDs(ids []exchange.EntityID) []exchange.EntityID {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b exchange.EntityID) int { return strings.Compare(a.String(), b.String()) })
	return ids
}

func (s *suite) testRegisterAgent(t *testing.T) {
	ex := s.newExchange(t, Config{})
	c := ctx(t, waitLong)
	impl := []string{"Agent", "Base"}
	id, err := ex.RegisterAgent(c, exchange.Behavior{Name: "Counter", Implements: impl}, exchange.WithName("counter-1"))
	noErr(t, "RegisterAgent", err)
	if !id.Valid() || !id.IsAgent() {
		t.Fatalf("RegisterAgent returned %v, want a valid agent id", id)
	}
	impl[0] = "Changed" // the registry must hold its own copy
	wantStatus(t, ex, id, exchange.StatusActive)
	info, err := ex.Info(c, id)
	noErr(t, "Info", err)
	if info.ID != id || info.Name != "counter-1" || info.Status != exchange.StatusActive ||
		info.Behavior.Name != "Counter" || !slices.Equal(info.Behavior.Implements, []string{"Agent", "Base"}) {
		t.Fatalf("Info = %+v", info)
	}
	info.Behavior.Implements[0] = "Changed" // nor may Info share it
	info, err = ex.Info(c, id)
	noErr(t, "Info", err)
	if !slices.Equal(info.Behavior.Implements, []string{"Agent", "Base"}) {
		t.Fatalf("Info after changing a previous result = %+v", info)
	}
	id2 := regAgent(t, ex, "Counter")
	if id2 == id {
		t.Fatalf("two registrations returned the same id %v", id)
	}
	info2, err := ex.Info(c, id2)
	noErr(t, "Info", err)
	if info2.Name != "" || len(info2.Behavior.Implements) != 0 {
		t.Fatalf("Info of an unnamed agent = %+v", info2)
	}
}

func (s *suite) testRegisterClient(t *testing.T) {
	ex := s.newExchange(t, Config{})
	c := ctx(t, waitLong)
	id, err := ex.RegisterClient(c, exchange.WithName("user"))
	noErr(t, "RegisterClient", err)
	if !id.Valid() || !id.IsClient() {
		t.Fatalf("RegisterClient returned %v, want a valid client id", id)
	}
	wantStatus(t, ex, id, exchange.StatusActive)
	info, err := ex.Info(c, id)
	noErr(t, "Info", err)
	if info.ID != id || info.Name != "user" || info.Status != exchange.StatusActive || info.Behavior.Name != "" {
		t.Fatalf("Info = %+v", info)
	}
	if id2 := regClient(t, ex); id2 == id {
		t.Fatalf("two registrations returned the same id %v", id)
	}
}

func (s *suite) testRegisterWithID(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	aid := exchange.NewAgentID()
	got, err := a.RegisterAgent(c, exchange.Behavior{Name: "B"}, exchange.WithID(aid), exchange.WithName("named"))
	noErr(t, "RegisterAgent(WithID)", err)
	if got != aid {
		t.Fatalf("RegisterAgent(WithID(%v)) = %v", aid, got)
	}
	cid := exchange.NewClientID()
	got, err = a.RegisterClient(c, exchange.WithID(cid))
	noErr(t, "RegisterClient(WithID)", err)
	if got != cid {
		t.Fatalf("RegisterClient(WithID(%v)) = %v", cid, got)
	}
	info, err := b.Info(c, aid)
	noErr(t, "Info", err)
	if info.Name != "named" || info.Behavior.Name != "B" {
		t.Fatalf("Info = %+v", info)
	}
	wantStatus(t, b, cid, exchange.StatusActive)
}

func (s *suite) testRegisterErrors(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	beh := exchange.Behavior{Name: "B"}
	aid := regAgent(t, a, "B")
	cid := regClient(t, a)

	_, err := b.RegisterAgent(c, beh, exchange.WithID(aid))
	wantErr(t, "RegisterAgent with a registered id", err, exchange.ErrDuplicateID)
	_, err = b.RegisterClient(c, exchange.WithID(cid))
	wantErr(t, "RegisterClient with a registered id", err, exchange.ErrDuplicateID)
	_, err = b.RegisterClient(c, exchange.WithID(exchange.EntityID{UUID: aid.UUID, Role: exchange.RoleClient}))
	wantErr(t, "RegisterClient with an agent's UUID", err, exchange.ErrDuplicateID)

	noErr(t, "Terminate", a.Terminate(c, aid))
	_, err = b.RegisterAgent(c, beh, exchange.WithID(aid))
	wantErr(t, "RegisterAgent with a terminated id", err, exchange.ErrDuplicateID)

	_, err = a.RegisterAgent(c, beh, exchange.WithID(exchange.NewClientID()))
	wantErr(t, "RegisterAgent with a client id", err, exchange.ErrWrongRole)
	_, err = a.RegisterClient(c, exchange.WithID(exchange.NewAgentID()))
	wantErr(t, "RegisterClient with an agent id", err, exchange.ErrWrongRole)
	_, err = a.RegisterAgent(c, exchange.Behavior{})
	wantErr(t, "RegisterAgent with an empty behavior", err, exchange.ErrInvalidArgument)
	_, err = a.RegisterAgent(c, beh, exchange.WithID(exchange.EntityID{Role: exchange.RoleAgent}))
	wantErr(t, "RegisterAgent with a zero UUID", err, exchange.ErrInvalidArgument)
	wantStatus(t, a, aid, exchange.StatusTerminated)
	wantStatus(t, a, cid, exchange.StatusActive)
}

func (s *suite) testDiscover(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	base := regAgent(t, a, "Base")
	mid := regAgent(t, b, "Mid", "Base")
	leaf := regAgent(t, a, "Leaf", "Mid", "Base")
	other := regAgent(t, b, "Other", "Unrelated")
	regClient(t, a)

	check := func(ex exchange.Exchange, behavior string, sub bool, want ...exchange.EntityID) {
		t.Helper()
		got, err := ex.Discover(c, behavior, sub)
		noErr(t, "Discover", err)
		if !slices.Equal(sortIDs(got), sortIDs(want)) {
			t.Fatalf("Discover(%q, %v) = %v, want %v", behavior, sub, got, want)
		}
	}
	for _, ex := range []exchange.Exchange{a, b} {
		check(ex, "Base", false, base)
		check(ex, "Base", true, base, mid, leaf)
		check(ex, "Mid", true, mid, leaf)
		check(ex, "Mid", false, mid)
		check(ex, "Leaf", true, leaf)
		check(ex, "Unrelated", true, other)
		check(ex, "Unrelated", false)
		check(ex, "Nobody", true)
		check(ex, "", true)
	}
	noErr(t, "Terminate", b.Terminate(c, mid))
	check(a, "Base", true, base, leaf)
	check(a, "Mid", false)
	noErr(t, "Terminate", a.Terminate(c, base))
	check(b, "Base", true, leaf)
	check(b, "Base", false)
}

func (s *suite) testMissing(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	missing := exchange.NewAgentID()
	_, err := a.Mailbox(c, missing)
	wantErr(t, "Mailbox of a missing id", err, exchange.ErrBadEntityID)
	_, err = a.Info(c, missing)
	wantErr(t, "Info of a missing id", err, exchange.ErrBadEntityID)
	wantStatus(t, a, missing, exchange.StatusMissing)

	// The role is part of the id: the same UUID with the other role is
	// another, missing, entity.
	aid := regAgent(t, a, "B")
	other := exchange.EntityID{UUID: aid.UUID, Role: exchange.RoleClient}
	_, err = b.Mailbox(c, other)
	wantErr(t, "Mailbox with the wrong role", err, exchange.ErrBadEntityID)
	_, err = b.Info(c, other)
	wantErr(t, "Info with the wrong role", err, exchange.ErrBadEntityID)
	wantStatus(t, b, other, exchange.StatusMissing)

	// Still so once the handle has used the mailbox under its real id
	// (an implementation that caches mailboxes by UUID must check the
	// role on every use).
	mailbox(t, b, aid)
	_, err = b.Mailbox(c, other)
	wantErr(t, "Mailbox with the wrong role after Mailbox with the right one", err, exchange.ErrBadEntityID)
	wantStatus(t, b, other, exchange.StatusMissing)
}

func (s *suite) testSendErrors(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	aid := regAgent(t, a, "B")
	cid := regClient(t, b)

	wantErr(t, "Send to a missing id", b.Send(c, exchange.NewPingRequest(cid, exchange.NewAgentID())), exchange.ErrBadEntityID)
	wantErr(t, "Send to the wrong role", b.Send(c, exchange.NewPingRequest(cid, exchange.EntityID{UUID: aid.UUID, Role: exchange.RoleClient})), exchange.ErrBadEntityID)
	noErr(t, "Send", b.Send(c, exchange.NewPingRequest(cid, aid)))
	wantErr(t, "Send to the wrong role after a Send to the right one", b.Send(c, exchange.NewPingRequest(cid, exchange.EntityID{UUID: aid.UUID, Role: exchange.RoleClient})), exchange.ErrBadEntityID)

	bad := exchange.NewPingRequest(cid, aid)
	bad.Kind = exchange.KindInvalid
	wantErr(t, "Send of an invalid kind", b.Send(c, bad), exchange.ErrBadMessage)
	wantErr(t, "Send of an action request without action", b.Send(c, exchange.NewActionRequest(cid, aid, "", nil)), exchange.ErrBadMessage)
	bad = exchange.NewPingRequest(cid, aid)
	bad.Tag = exchange.UUID{}
	wantErr(t, "Send with a zero tag", b.Send(c, bad), exchange.ErrBadMessage)
	bad = exchange.NewPingRequest(exchange.EntityID{}, aid)
	wantErr(t, "Send with a zero src", b.Send(c, bad), exchange.ErrBadMessage)

	big := exchange.NewActionRequest(cid, aid, "f", nil)
	big.Args = make([]byte, exchange.MaxPayloadSize+1)
	wantErr(t, "Send of an oversized message", b.Send(c, big), exchange.ErrMessageTooLarge)

	noErr(t, "Terminate", a.Terminate(c, aid))
	wantErr(t, "Send to a terminated mailbox", b.Send(c, exchange.NewPingRequest(cid, aid)), exchange.ErrMailboxClosed)
	wantErr(t, "Send to a terminated mailbox", a.Send(c, exchange.NewPingRequest(cid, aid)), exchange.ErrMailboxClosed)
}

func (s *suite) testRecvTimeout(t *testing.T) {
	ex := s.newExchange(t, Config{})
	aid := regAgent(t, ex, "B")
	mb := mailbox(t, ex, aid)
	var m exchange.Message
	wantErr(t, "Recv on an empty mailbox", mb.Recv(ctx(t, waitShort), &m), context.DeadlineExceeded)
	// The mailbox still works afterwards.
	cid := regClient(t, ex)
	want := exchange.NewPingRequest(cid, aid)
	send(t, ex, want)
	wantMessage(t, recv(t, mb), want)
}

func (s *suite) testRecvCanceled(t *testing.T) {
	ex := s.newExchange(t, Config{})
	aid := regAgent(t, ex, "B")
	mb := mailbox(t, ex, aid)
	var m exchange.Message

	c, cancel := context.WithCancel(ctx(t, waitLong))
	cancel()
	wantErr(t, "Recv with a canceled context", mb.Recv(c, &m), context.Canceled)

	c, cancel = context.WithCancel(ctx(t, waitLong))
	done := make(chan error, 1)
	go func() {
		var m exchange.Message
		done <- mb.Recv(c, &m)
	}()
	cancel() // before or during the wait: either way Recv must report it
	wantErr(t, "Recv canceled while waiting", <-done, context.Canceled)
}

// allKinds returns one message of each kind, and error responses, from src
// to dest, with every field the kind allows set.
func allKinds(src, dest exchange.EntityID) []*exchange.Message {
	label := exchange.NewTag()
	args := make([]byte, 4096) // a bin16 payload, with zero bytes in it
	for i := range args {
		args[i] = byte(i * 7)
	}
	req := exchange.NewActionRequest(src, dest, strings.Repeat("action", 7), args) // a str8 action name
	req.Label = label
	resp := req.Response([]byte{0x93, 0x01, 0x02, 0x03})
	resp.Src, resp.Dest = src, dest
	errResp := req.ErrorResponse(&exchange.RemoteError{Kind: "ValueError", Message: "bad value: ünïcode"})
	errResp.Src, errResp.Dest = src, dest
	ping := exchange.NewPingRequest(src, dest)
	ping.Label = label
	pong := exchange.NewPingResponse(src, dest, ping.Tag)
	pong.Label = label
	pongErr := ping.ErrorResponse(errors.New("plain error"))
	pongErr.Src, pongErr.Dest = src, dest
	shut := exchange.NewShutdownRequest(src, dest, true)
	shut.Label = label
	shutResp := exchange.NewShutdownResponse(src, dest, shut.Tag)
	empty := exchange.NewActionRequest(src, dest, "x", nil)
	return []*exchange.Message{req, resp, errResp, ping, pong, pongErr, shut, shutResp, empty}
}

func (s *suite) testRoundTripAllKinds(t *testing.T) {
	a, b := s.pair(t, Config{})
	aid := regAgent(t, a, "B")
	cid := regClient(t, b)
	mb := mailbox(t, a, aid)
	msgs := allKinds(cid, aid)
	for _, m := range msgs {
		noErr(t, "Validate "+m.String(), m.Validate())
		send(t, b, m)
	}
	// Receive into one reused, dirty Message: every field must be
	// overwritten, whatever the previous message held.
	got := exchange.NewActionRequest(aid, cid, strings.Repeat("stale", 100), make([]byte, 10000))
	got.SetError(errors.New("stale"))
	got.Label = exchange.NewTag()
	got.Terminate = true
	for _, want := range msgs {
		noErr(t, "Recv", mb.Recv(ctx(t, waitLong), got))
		wantMessage(t, got, want)
		noErr(t, "Validate received "+got.String(), got.Validate())
		var g, w *exchange.RemoteError
		if errors.As(want.Err(), &w) && (!errors.As(got.Err(), &g) || *g != *w) {
			t.Fatalf("received Err() = %#v, want %#v", got.Err(), w)
		}
	}
}

func (s *suite) testSenderMayReuseMessage(t *testing.T) {
	a, b := s.pair(t, Config{})
	aid := regAgent(t, a, "B")
	cid := regClient(t, b)
	mb := mailbox(t, a, aid)
	m := exchange.NewActionRequest(cid, aid, "first", []byte("payload one"))
	want := m.Clone()
	send(t, b, m)
	// Overwrite the message in place and send it again.
	copy(m.Args, "PAYLOAD TWO")
	m.SetAction("second")
	m.Tag = exchange.NewTag()
	want2 := m.Clone()
	send(t, b, m)
	m.Reset()
	wantMessage(t, recv(t, mb), want)
	wantMessage(t, recv(t, mb), want2)
}

// testMailboxIdleOptions: Mailbox takes options (an implementation that
// does not poll ignores the idle strategy), and a client opened with any
// idle strategy receives what the other handle sends, also when it is
// already waiting.
func (s *suite) testMailboxIdleOptions(t *testing.T) {
	a, b := s.pair(t, Config{})
	cid := regClient(t, a)
	for _, idle := range []exchange.IdleStrategy{exchange.IdleSpin, exchange.IdlePark, exchange.IdleBackoff, exchange.IdleSpinThenPark(10)} {
		aid := regAgent(t, b, "Echo")
		mb, err := b.Mailbox(ctx(t, waitLong), aid, exchange.WithMailboxIdle(idle), nil)
		noErr(t, "Mailbox with "+idle.String(), err)
		got := make(chan error, 1)
		go func() {
			var m exchange.Message
			err := mb.Recv(ctx(t, waitLong), &m)
			if err == nil && m.Kind != exchange.KindPingRequest {
				err = fmt.Errorf("received %v", &m)
			}
			got <- err
		}()
		send(t, a, exchange.NewPingRequest(cid, aid))
		noErr(t, "Recv with "+idle.String(), <-got)
		noErr(t, "Close", mb.Close())
	}
}

func (s *suite) testRequestResponse(t *testing.T) {
	a, b := s.pair(t, Config{})
	aid := regAgent(t, a, "Echo")
	cid := regClient(t, b)
	agentMB := mailbox(t, a, aid)
	clientMB := mailbox(t, b, cid)

	// The agent answers every action request with its args reversed.
	agentDone := make(chan error, 1)
	go func() {
		c := ctx(t, waitLong)
		var m exchange.Message
		for {
			if err := agentMB.Recv(c, &m); err != nil {
				agentDone <- err
				return
			}
			if m.Kind != exchange.KindActionRequest {
				agentDone <- fmt.Errorf("agent received %v", &m)
				return
			}
			res := slices.Clone(m.Args)
			slices.Reverse(res)
			m.SetResponse(&m, res)
			if err := a.Send(c, &m); err != nil {
				agentDone <- err
				return
			}
		}
	}()

	// Two handles share the client's mailbox; labels tell their responses
	// apart.
	const n = 20
	labels := [2]exchange.UUID{exchange.NewTag(), exchange.NewTag()}
	sent := make(map[exchange.UUID]*exchange.Message)
	for i := range n {
		m := exchange.NewActionRequest(cid, aid, "echo", []byte{byte(i), 1, 2})
		m.Label = labels[i%2]
		sent[m.Tag] = m
		send(t, b, m)
	}
	var r exchange.Message
	for range n {
		noErr(t, "Recv response", clientMB.Recv(ctx(t, waitLong), &r))
		req, ok := sent[r.Tag]
		if !ok {
			t.Fatalf("response with an unknown or repeated tag: %v", &r)
		}
		delete(sent, r.Tag)
		want := []byte{2, 1, req.Args[0]}
		if r.Kind != exchange.KindActionResponse || r.Label != req.Label || r.Src != aid || r.Dest != cid ||
			!bytes.Equal(r.Result, want) || string(r.Action) != "echo" || r.IsError() {
			t.Fatalf("response %v to %v", &r, req)
		}
	}
	noErr(t, "Terminate", a.Terminate(ctx(t, waitLong), aid))
	wantErr(t, "agent loop", <-agentDone, exchange.ErrMailboxClosed)
}

func (s *suite) testTerminateNoop(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	missing := exchange.NewAgentID()
	noErr(t, "Terminate of a missing id", a.Terminate(c, missing))
	wantStatus(t, a, missing, exchange.StatusMissing)

	aid := regAgent(t, a, "B")
	noErr(t, "Terminate", b.Terminate(c, aid))
	noErr(t, "Terminate again", a.Terminate(c, aid))
	noErr(t, "Terminate again", b.Terminate(c, aid))
	wantStatus(t, a, aid, exchange.StatusTerminated)
	wantStatus(t, b, aid, exchange.StatusTerminated)
	info, err := b.Info(c, aid)
	noErr(t, "Info of a terminated entity", err)
	if info.Status != exchange.StatusTerminated || info.Behavior.Name != "B" {
		t.Fatalf("Info = %+v", info)
	}
}

func (s *suite) testTerminateDrains(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	aid := regAgent(t, b, "B")
	cid := regClient(t, a)
	// Responses queued for the client stay after it is terminated.
	ping := exchange.NewPingRequest(cid, aid)
	want := []*exchange.Message{
		exchange.NewActionResponse(aid, cid, exchange.NewTag(), []byte("result")),
		ping.Response(nil),
		exchange.NewShutdownResponse(aid, cid, exchange.NewTag()),
	}
	for _, m := range want {
		send(t, b, m)
	}
	noErr(t, "Terminate", a.Terminate(c, cid))
	mb := mailbox(t, a, cid)
	for _, w := range want {
		wantMessage(t, recv(t, mb), w)
	}
	var m exchange.Message
	wantErr(t, "Recv on a drained terminated mailbox", mb.Recv(c, &m), exchange.ErrMailboxClosed)
	wantErr(t, "Recv again", mb.Recv(c, &m), exchange.ErrMailboxClosed)
}

func (s *suite) testTerminateWakesRecv(t *testing.T) {
	a, b := s.pair(t, Config{})
	aid := regAgent(t, a, "B")
	mb := mailbox(t, a, aid)
	done := make(chan error, 1)
	go func() {
		var m exchange.Message
		done <- mb.Recv(ctx(t, waitLong), &m)
	}()
	noErr(t, "Terminate", b.Terminate(ctx(t, waitLong), aid))
	wantErr(t, "Recv blocked during Terminate", <-done, exchange.ErrMailboxClosed)
}

func (s *suite) testTerminateAnswersRequests(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	aid := regAgent(t, a, "B")
	cid := regClient(t, b)
	label := exchange.NewTag()

	act := exchange.NewActionRequest(cid, aid, "work", []byte{1, 2, 3})
	act.Label = label
	ping := exchange.NewPingRequest(cid, aid)
	shut := exchange.NewShutdownRequest(cid, aid, false)
	shut.Label = label
	// A response queued for the agent is not answered, and stays.
	resp := exchange.NewActionResponse(cid, aid, exchange.NewTag(), []byte("late"))
	// A request from an entity that is not registered: its answer has
	// nowhere to go, which must not make Terminate fail.
	ghost := exchange.NewPingRequest(exchange.NewClientID(), aid)
	// A request from a client terminated since: no answer for it either.
	gone := regClient(t, b)
	goneReq := exchange.NewActionRequest(gone, aid, "work", nil)
	reqs := []*exchange.Message{act, ping, shut}
	for _, m := range []*exchange.Message{act, ping, resp, ghost, goneReq, shut} {
		send(t, b, m)
	}
	noErr(t, "Terminate the requester", b.Terminate(c, gone))
	noErr(t, "Terminate", a.Terminate(c, aid))
	var m exchange.Message
	wantErr(t, "Recv on the terminated requester's mailbox", mailbox(t, a, gone).Recv(c, &m), exchange.ErrMailboxClosed)

	mb := mailbox(t, b, cid)
	pending := make(map[exchange.UUID]*exchange.Message)
	for _, r := range reqs {
		pending[r.Tag] = r
	}
	for range reqs {
		r := recv(t, mb)
		req, ok := pending[r.Tag]
		if !ok {
			t.Fatalf("unexpected message %v", r)
		}
		delete(pending, r.Tag)
		if r.Kind != req.Kind.ResponseKind() || r.Src != aid || r.Dest != cid || r.Label != req.Label ||
			string(r.ErrorKind) != exchange.ErrorKindMailboxTerminated || !errors.Is(r.Err(), exchange.ErrMailboxClosed) {
			t.Fatalf("answer %v to %v", r, req)
		}
		noErr(t, "Validate answer", r.Validate())
	}
	wantErr(t, "Recv after the answers", mb.Recv(ctx(t, waitShort), &m), context.DeadlineExceeded)

	agentMB := mailbox(t, a, aid)
	wantMessage(t, recv(t, agentMB), resp)
	wantErr(t, "Recv on the drained terminated mailbox", agentMB.Recv(c, &m), exchange.ErrMailboxClosed)
}

func (s *suite) testMailboxCloseKeepsMailbox(t *testing.T) {
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	aid := regAgent(t, a, "B")
	cid := regClient(t, b)

	mb1, err := a.Mailbox(c, aid)
	noErr(t, "Mailbox", err)
	first := exchange.NewPingRequest(cid, aid)
	send(t, b, first)
	wantMessage(t, recv(t, mb1), first)
	noErr(t, "Mailbox.Close", mb1.Close())
	noErr(t, "Mailbox.Close again", mb1.Close())
	var m exchange.Message
	wantErr(t, "Recv on a closed client", mb1.Recv(c, &m), exchange.ErrMailboxClosed)

	wantStatus(t, a, aid, exchange.StatusActive)
	wantStatus(t, b, aid, exchange.StatusActive)
	second := exchange.NewActionRequest(cid, aid, "f", []byte("after close"))
	send(t, b, second)
	found, err := b.Discover(c, "B", false)
	noErr(t, "Discover", err)
	if !slices.Equal(found, []exchange.EntityID{aid}) {
		t.Fatalf("Discover after Mailbox.Close = %v", found)
	}
	mb2 := mailbox(t, b, aid)
	wantMessage(t, recv(t, mb2), second)
}

func (s *suite) testMailboxCloseWakesRecv(t *testing.T) {
	a, b := s.pair(t, Config{})
	aid := regAgent(t, a, "B")
	mb, err := a.Mailbox(ctx(t, waitLong), aid)
	noErr(t, "Mailbox", err)
	done := make(chan error, 1)
	go func() {
		var m exchange.Message
		done <- mb.Recv(ctx(t, waitLong), &m)
	}()
	noErr(t, "Mailbox.Close", mb.Close())
	wantErr(t, "Recv blocked during Close", <-done, exchange.ErrMailboxClosed)
	wantStatus(t, b, aid, exchange.StatusActive)
}

// fill sends responses (never requests, so that Terminate answers nothing)
// from src to dest until a Send waits for space, and returns them.
func fill(t *testing.T, ex exchange.Exchange, src, dest exchange.EntityID) []*exchange.Message {
	t.Helper()
	var sent []*exchange.Message
	for i := 0; ; i++ {
		if i > 1<<16 {
			t.Fatalf("sent %d messages to a mailbox with a small capacity and none waited", i)
		}
		m := exchange.NewActionResponse(src, dest, exchange.NewTag(), binary.BigEndian.AppendUint32(nil, uint32(i)))
		c, cancel := context.WithTimeout(t.Context(), waitShort)
		err := ex.Send(c, m)
		cancel()
		if err != nil {
			wantErr(t, "Send to a full mailbox", err, context.DeadlineExceeded)
			return sent
		}
		sent = append(sent, m)
	}
}

func (s *suite) testFullMailbox(t *testing.T) {
	const capacity = 4
	a, b := s.pair(t, Config{MailboxCapacity: capacity})
	aid := regAgent(t, a, "B")
	cid := regClient(t, b)
	sent := fill(t, b, cid, aid)
	if len(sent) < capacity {
		t.Fatalf("mailbox full after %d messages, asked for capacity %d", len(sent), capacity)
	}
	// Still full: a send with an expired context fails too.
	c, cancel := context.WithCancel(ctx(t, waitLong))
	cancel()
	if err := b.Send(c, exchange.NewActionResponse(cid, aid, exchange.NewTag(), nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a canceled context to a full mailbox: %v", err)
	}
	// A sender blocked on the full mailbox proceeds once the receiver has
	// made room (how much room one Recv makes is up to the implementation:
	// a byte ring may need more than one record's worth), and nothing is
	// lost or reordered.
	done := make(chan error, 1)
	blocked := exchange.NewActionResponse(cid, aid, exchange.NewTag(), []byte("blocked"))
	go func() { done <- b.Send(ctx(t, waitLong), blocked) }()
	mb := mailbox(t, a, aid)
	for _, w := range sent {
		wantMessage(t, recv(t, mb), w)
	}
	noErr(t, "blocked Send", <-done)
	wantMessage(t, recv(t, mb), blocked)

	// The drained mailbox works as before, and fills up again.
	last := exchange.NewActionResponse(cid, aid, exchange.NewTag(), []byte("last"))
	send(t, b, last)
	wantMessage(t, recv(t, mb), last)
	again := fill(t, b, cid, aid)
	if len(again) < capacity {
		t.Fatalf("mailbox full after %d messages the second time, asked for capacity %d", len(again), capacity)
	}
	for _, w := range again {
		wantMessage(t, recv(t, mb), w)
	}
}

func (s *suite) testFullMailboxTerminate(t *testing.T) {
	a, b := s.pair(t, Config{MailboxCapacity: 4})
	aid := regAgent(t, a, "B")
	cid := regClient(t, b)
	sent := fill(t, b, cid, aid)
	done := make(chan error, 1)
	go func() { done <- b.Send(ctx(t, waitLong), exchange.NewActionResponse(cid, aid, exchange.NewTag(), nil)) }()
	noErr(t, "Terminate", a.Terminate(ctx(t, waitLong), aid))
	wantErr(t, "Send blocked during Terminate", <-done, exchange.ErrMailboxClosed)
	// What was queued before Terminate is still delivered.
	mb := mailbox(t, a, aid)
	for _, w := range sent {
		wantMessage(t, recv(t, mb), w)
	}
	var m exchange.Message
	wantErr(t, "Recv on the drained terminated mailbox", mb.Recv(ctx(t, waitLong), &m), exchange.ErrMailboxClosed)
}

func (s *suite) testConcurrentSenders(t *testing.T, cfg Config) {
	const senders, perSender = 4, 200
	a, b := s.pair(t, cfg)
	aid := regAgent(t, a, "Sink")
	mb := mailbox(t, a, aid)
	ids := make([]exchange.EntityID, senders)
	for i := range ids {
		ids[i] = regClient(t, b)
	}

	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i, id := range ids {
		ex := a
		if i%2 == 1 {
			ex = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ctx(t, waitLong)
			m := exchange.NewActionRequest(id, aid, "count", nil)
			for seq := range perSender {
				m.Tag = exchange.NewTag()
				m.Args = binary.BigEndian.AppendUint64(m.Args[:0], uint64(seq))
				if err := ex.Send(c, m); err != nil {
					errs <- fmt.Errorf("sender %d, message %d: %w", i, seq, err)
					return
				}
			}
		}()
	}

	next := make(map[exchange.EntityID]uint64)
	var m exchange.Message
	c := ctx(t, waitLong)
	for n := 0; n < senders*perSender; n++ {
		if err := mb.Recv(c, &m); err != nil {
			select {
			case serr := <-errs:
				t.Fatalf("after %d messages: %v (and Recv: %v)", n, serr, err)
			default:
			}
			t.Fatalf("Recv after %d messages: %v", n, err)
		}
		if len(m.Args) != 8 {
			t.Fatalf("received %v", &m)
		}
		seq := binary.BigEndian.Uint64(m.Args)
		if want, known := next[m.Src]; seq != want || !known && !slices.Contains(ids, m.Src) {
			t.Fatalf("from %v: got message %d, want %d (per-sender order, each once)", m.Src, seq, want)
		}
		next[m.Src] = seq + 1
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		if next[id] != perSender {
			t.Fatalf("sender %v: received %d messages, want %d", id, next[id], perSender)
		}
	}
	if err := mb.Recv(ctx(t, waitShort), &m); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv after all messages: %v, %v", err, &m)
	}
}

func (s *suite) testPeerHandles(t *testing.T) {
	if s.h.Open == nil {
		t.Skip("Harness.Open is nil: one handle per exchange")
	}
	a, b := s.pair(t, Config{})
	c := ctx(t, waitLong)
	aid := regAgent(t, a, "B")
	bid := regAgent(t, b, "B")
	cid := regClient(t, b)
	for _, ex := range []exchange.Exchange{a, b} {
		got, err := ex.Discover(c, "B", false)
		noErr(t, "Discover", err)
		if !slices.Equal(sortIDs(got), sortIDs([]exchange.EntityID{aid, bid})) {
			t.Fatalf("Discover = %v, want %v and %v", got, aid, bid)
		}
	}
	// Closing one handle leaves the exchange, its registrations and the
	// other handle working.
	noErr(t, "Close a", a.Close())
	noErr(t, "Close a again", a.Close())
	wantStatus(t, b, aid, exchange.StatusActive)
	m := exchange.NewActionRequest(cid, aid, "f", []byte("to an agent registered by a closed handle"))
	send(t, b, m)
	mb := mailbox(t, b, aid)
	wantMessage(t, recv(t, mb), m)
	noErr(t, "Terminate", b.Terminate(c, bid))
	wantStatus(t, b, bid, exchange.StatusTerminated)
	// A third handle sees the same state.
	third := s.h.Open(t, b)
	t.Cleanup(func() { _ = third.Close() })
	wantStatus(t, third, aid, exchange.StatusActive)
	wantStatus(t, third, bid, exchange.StatusTerminated)
}

func (s *suite) testClose(t *testing.T) {
	ex := s.newExchange(t, Config{})
	c := ctx(t, waitLong)
	aid := regAgent(t, ex, "B")
	cid := regClient(t, ex)
	mb := mailbox(t, ex, aid)
	done := make(chan error, 1)
	go func() {
		var m exchange.Message
		done <- mb.Recv(ctx(t, waitLong), &m)
	}()
	noErr(t, "Close", ex.Close())
	if err := <-done; !errors.Is(err, exchange.ErrMailboxClosed) && !errors.Is(err, exchange.ErrExchangeClosed) {
		t.Fatalf("Recv blocked during Close: %v, want ErrMailboxClosed or ErrExchangeClosed", err)
	}
	noErr(t, "Close again", ex.Close())

	_, err := ex.RegisterAgent(c, exchange.Behavior{Name: "B"})
	wantErr(t, "RegisterAgent after Close", err, exchange.ErrExchangeClosed)
	_, err = ex.RegisterClient(c)
	wantErr(t, "RegisterClient after Close", err, exchange.ErrExchangeClosed)
	wantErr(t, "Terminate after Close", ex.Terminate(c, aid), exchange.ErrExchangeClosed)
	_, err = ex.Discover(c, "B", true)
	wantErr(t, "Discover after Close", err, exchange.ErrExchangeClosed)
	_, err = ex.Mailbox(c, aid)
	wantErr(t, "Mailbox after Close", err, exchange.ErrExchangeClosed)
	wantErr(t, "Send after Close", ex.Send(c, exchange.NewPingRequest(cid, aid)), exchange.ErrExchangeClosed)
	_, err = ex.Status(c, aid)
	wantErr(t, "Status after Close", err, exchange.ErrExchangeClosed)
	_, err = ex.Info(c, aid)
	wantErr(t, "Info after Close", err, exchange.ErrExchangeClosed)
	var m exchange.Message
	if err := mb.Recv(c, &m); !errors.Is(err, exchange.ErrMailboxClosed) && !errors.Is(err, exchange.ErrExchangeClosed) {
		t.Fatalf("Recv after Close: %v", err)
	}
}

// testReopen: an exchange that implements exchange.Reopener brings a
// terminated mailbox back under its id, empty and active; senders that sent
// to it before reach the new one; clients of the terminated one report
// ErrMailboxClosed.
func (s *suite) testReopen(t *testing.T) {
	a, b := s.pair(t, Config{})
	ra, ok := a.(exchange.Reopener)
	if !ok {
		t.Skip("the exchange does not implement exchange.Reopener")
	}
	c := ctx(t, waitLong)
	aid := regAgent(t, a, "Phoenix")
	cid := regClient(t, b)
	wantErr(t, "Reopen of a missing id", ra.Reopen(c, exchange.NewAgentID()), exchange.ErrBadEntityID)
	old := mailbox(t, a, aid)
	before := exchange.NewActionRequest(cid, aid, "before", nil)
	send(t, b, before)
	wantMessage(t, recv(t, old), before)
	send(t, b, exchange.NewActionResponse(cid, aid, exchange.NewTag(), []byte("stale")))
	noErr(t, "Terminate", a.Terminate(c, aid))
	noErr(t, "Close the terminated mailbox's client", old.Close())

	inc0, err := ra.Incarnation(c, aid)
	noErr(t, "Incarnation", err)
	noErr(t, "Reopen", ra.Reopen(c, aid))
	if inc, err := ra.Incarnation(c, aid); err != nil || inc != inc0+1 {
		t.Fatalf("Incarnation after Reopen = %d, %v; want %d", inc, err, inc0+1)
	}
	if _, err := ra.Incarnation(c, exchange.NewAgentID()); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("Incarnation of a missing id: %v", err)
	}
	if _, err := ra.Incarnation(c, exchange.EntityID{UUID: aid.UUID, Role: exchange.RoleClient}); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("Incarnation with the wrong role: %v", err)
	}
	if st, err := b.Status(c, aid); err != nil || st != exchange.StatusActive {
		t.Fatalf("Status after Reopen = %v, %v", st, err)
	}
	if got, err := b.Discover(c, "Phoenix", false); err != nil || len(got) != 1 || got[0] != aid {
		t.Fatalf("Discover after Reopen = %v, %v", got, err)
	}
	noErr(t, "Reopen of an active mailbox", ra.Reopen(c, aid))
	// b sent to the old mailbox: its next send reaches the new one, which
	// holds nothing of the old (the stale response is gone).
	after := exchange.NewActionRequest(cid, aid, "after", []byte{7})
	send(t, b, after)
	mb := mailbox(t, a, aid)
	wantMessage(t, recv(t, mb), after)
	var m exchange.Message
	wantErr(t, "Recv on the reopened, drained mailbox", mb.Recv(ctx(t, waitShort), &m), context.DeadlineExceeded)
}

// testSendIncarnation: an exchange that implements
// exchange.IncarnationSender reports, with every delivery, the incarnation
// of the mailbox that took the message: the one Reopener.Incarnation
// reports, moving on after a Reopen; and it fails as Send fails.
func (s *suite) testSendIncarnation(t *testing.T) {
	a, b := s.pair(t, Config{})
	sb, ok := b.(exchange.IncarnationSender)
	if !ok {
		t.Skip("the exchange does not implement exchange.IncarnationSender")
	}
	c := ctx(t, waitLong)
	aid := regAgent(t, a, "Phoenix")
	cid := regClient(t, b)
	mb := mailbox(t, a, aid)
	first := exchange.NewActionRequest(cid, aid, "first", nil)
	inc, err := sb.SendIncarnation(c, first)
	noErr(t, "SendIncarnation", err)
	wantMessage(t, recv(t, mb), first)
	if _, err := sb.SendIncarnation(c, exchange.NewPingRequest(cid, exchange.NewAgentID())); !errors.Is(err, exchange.ErrBadEntityID) {
		t.Fatalf("SendIncarnation to a missing id: %v, want ErrBadEntityID", err)
	}
	if _, err := sb.SendIncarnation(c, &exchange.Message{Kind: exchange.KindActionRequest, Src: cid, Dest: aid}); !errors.Is(err, exchange.ErrBadMessage) {
		t.Fatalf("SendIncarnation of an invalid message: %v, want ErrBadMessage", err)
	}
	ra, ok := a.(exchange.Reopener)
	if !ok {
		noErr(t, "Terminate", a.Terminate(c, aid))
		_, err := sb.SendIncarnation(c, exchange.NewPingRequest(cid, aid))
		wantErr(t, "SendIncarnation to a terminated mailbox", err, exchange.ErrMailboxClosed)
		return
	}
	if got, err := ra.Incarnation(c, aid); err != nil || got != inc {
		t.Fatalf("Incarnation = %d, %v; SendIncarnation reported %d", got, err, inc)
	}
	noErr(t, "Terminate", a.Terminate(c, aid))
	_, err = sb.SendIncarnation(c, exchange.NewPingRequest(cid, aid))
	wantErr(t, "SendIncarnation to a terminated mailbox", err, exchange.ErrMailboxClosed)
	noErr(t, "Close the terminated mailbox's client", mb.Close())
	noErr(t, "Reopen", ra.Reopen(c, aid))
	after := exchange.NewActionRequest(cid, aid, "after", nil)
	got, err := sb.SendIncarnation(c, after)
	noErr(t, "SendIncarnation after Reopen", err)
	if got != inc+1 {
		t.Fatalf("SendIncarnation after Reopen = %d, want %d", got, inc+1)
	}
	wantMessage(t, recv(t, mailbox(t, a, aid)), after)
}
