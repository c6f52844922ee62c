package exchange_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/shm"
)

// Fuzz targets for a shared-memory exchange whose registry segment is
// damaged. The registry is internal, so the targets go through the public
// API: a valid exchange is built once (regTemplate), its files are copied
// into a fresh exchange directory per input with the registry corrupted,
// and the exchange is opened and used. Open may fail; every other call may
// fail; nothing may panic, hang or touch memory outside the mappings.

// Byte offsets inside the registry segment file (shm header, then the
// registry body; see registry_layout.go). The fuzz targets use them only to
// aim their seeds and to know which corruption Open must refuse.
const (
	regBody        = shm.HeaderSize // the registry body starts here
	regShmChecked  = 48             // shm header bytes Open validates (magic .. checksum)
	regHdrChecked  = 28             // registry header bytes Open validates (magic .. checksum)
	regOffCount    = 128
	regOffTable    = 256
	regEntrySize   = 512
	regEntryStamp  = 0
	regEntryState  = 4 // the byte of the stamp that holds the state (bits 32-33)
	regEntryRole   = 8
	regEntryLens   = 9
	regEntryUUID   = 16
	regEntryOwner  = 32
	regEntryImpl   = 192
	regTemplateCap = 8 // registry capacity of the template
)

// regTemplate is a closed exchange with a few registrations, as files.
type regTemplate struct {
	root      string
	files     map[string][]byte // base name -> contents, registry included
	registry  []byte
	owner     uint64 // liveness id of the template's handle, dead
	ids       []exchange.EntityID
	client    exchange.EntityID
	behaviors []string
	next      atomic.Int64
}

// newRegTemplate builds the template: agents Counter (implements Agent,
// Peer), Echo (implements Peer), Gone (terminated, a response left in it)
// and Owned (whose mailbox this process opened, so that its owner is dead
// once the handle closes, holding a request and a response), and a
// client. Each mailbox is 1 KiB. The files are copied while the handle is
// open, as a process killed at that moment would leave them (its clean
// Close would terminate the mailboxes it owns).
func newRegTemplate(tb testing.TB) *regTemplate {
	tb.Helper()
	root := testRoot(tb)
	x, err := exchange.Open("tmpl", exchange.WithRoot(root), exchange.WithRegistryCapacity(regTemplateCap),
		exchange.WithMailboxBytes(1024), exchange.WithLogger(discardLog))
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	tp := &regTemplate{root: root, files: map[string][]byte{}, behaviors: []string{"Counter", "Echo", "Gone", "Owned", "Agent", "Peer", ""}}
	reg := func(b exchange.Behavior, name string) exchange.EntityID {
		id, err := x.RegisterAgent(ctx, b, exchange.WithName(name))
		if err != nil {
			tb.Fatal(err)
		}
		tp.ids = append(tp.ids, id)
		return id
	}
	reg(exchange.Behavior{Name: "Counter", Implements: []string{"Agent", "Peer"}}, "counter")
	reg(exchange.Behavior{Name: "Echo", Implements: []string{"Peer"}}, "")
	gone := reg(exchange.Behavior{Name: "Gone"}, "gone")
	owned := reg(exchange.Behavior{Name: "Owned", Implements: []string{"Peer"}}, "owned")
	if tp.client, err = x.RegisterClient(ctx, exchange.WithName("client")); err != nil {
		tb.Fatal(err)
	}
	tp.ids = append(tp.ids, tp.client)
	// A response left in Gone keeps its ring after the Terminate, for a
	// receiver to drain.
	if err := x.Send(ctx, exchange.NewActionResponse(tp.client, gone, exchange.NewTag(), []byte("left"))); err != nil {
		tb.Fatal(err)
	}
	if err := x.Terminate(ctx, gone); err != nil {
		tb.Fatal(err)
	}
	if _, err := x.Mailbox(ctx, owned); err != nil {
		tb.Fatal(err)
	}
	for _, m := range []*exchange.Message{
		exchange.NewActionRequest(tp.client, owned, "work", []byte("queued")),
		exchange.NewActionResponse(tp.client, owned, exchange.NewTag(), []byte("late")),
	} {
		if err := x.Send(ctx, m); err != nil {
			tb.Fatal(err)
		}
	}
	dir := x.Dir()
	defer x.Close()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), shm.RingPrefix) && e.Name() != shm.RegistryName {
			continue // liveness lock files
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		tp.files[e.Name()] = b
	}
	tp.registry = tp.files[shm.RegistryName]
	if len(tp.registry) != regBody+regOffTable+regTemplateCap*regEntrySize || len(tp.files) != 6 {
		tb.Fatalf("template: registry of %d bytes, %d files", len(tp.registry), len(tp.files))
	}
	tp.owner = binary.LittleEndian.Uint64(tp.registry[regBody+regOffTable+regEntryOwner:])
	x.Close()
	os.RemoveAll(dir)
	return tp
}

// revive makes the owner of every entry but Owned's, in a registry body,
// the process whose liveness id is live when it is the template's handle
// (dead once the template was closed): those mailboxes are active in the
// copy, Owned's stays the mailbox of a dead owner.
func (tp *regTemplate) revive(body []byte, live uint64) {
	for i := range regTemplateCap {
		off := regOffTable + i*regEntrySize + regEntryOwner
		if i == 3 || off+8 > len(body) {
			continue
		}
		if binary.LittleEndian.Uint64(body[off:]) == tp.owner {
			binary.LittleEndian.PutUint64(body[off:], live)
		}
	}
}

// open writes the template's files into a fresh exchange directory, with
// prepare(registry) as the registry file (or, when mk is set, a registry
// that mk creates), and opens the exchange. prepare gets a copy of the
// template's registry and the liveness id of a lock this process holds in
// the directory until the test ends. The directory is removed when the
// test ends.
func (tp *regTemplate) open(t *testing.T, prepare func(reg []byte, live uint64) []byte, mk func(path string, live uint64) error) (*exchange.SHM, error) {
	name := fmt.Sprintf("x%d", tp.next.Add(1))
	dir := filepath.Join(tp.root, name)
	if err := shm.EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	life, err := shm.HoldLife(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { life.Close() })
	var registry []byte
	if prepare != nil {
		registry = prepare(bytes.Clone(tp.registry), life.ID())
	}
	for base, b := range tp.files {
		if base == shm.RegistryName {
			b = registry
			if b == nil {
				continue
			}
		}
		if err := os.WriteFile(filepath.Join(dir, base), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if mk != nil {
		if err := mk(filepath.Join(dir, shm.RegistryName), life.ID()); err != nil {
			t.Fatal(err)
		}
	}
	x, err := exchange.Open(name, exchange.WithRoot(tp.root), exchange.WithMailboxBytes(1024), exchange.WithLogger(discardLog))
	if err == nil {
		t.Cleanup(func() { x.Close() })
	}
	return x, err
}

// exercise calls every method of x on the template's ids and on ids the
// registry never held. Errors are expected; panics and hangs are not.
func (tp *regTemplate) exercise(t *testing.T, x *exchange.SHM) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Sends and receives do not wait: their context is already done, so
	// they deliver or take what fits or is there, and fail otherwise.
	now, stop := context.WithCancel(ctx)
	stop()
	ids := append([]exchange.EntityID(nil), tp.ids...)
	for _, id := range tp.ids { // the same UUIDs with the other role
		ids = append(ids, exchange.EntityID{UUID: id.UUID, Role: exchange.RoleAgent + exchange.RoleClient - id.Role})
	}
	ids = append(ids, exchange.NewAgentID(), exchange.NewClientID())
	for _, b := range tp.behaviors {
		for _, sub := range []bool{false, true} {
			found, err := x.Discover(ctx, b, sub)
			if err != nil {
				continue
			}
			for _, id := range found {
				if !id.IsAgent() || !id.Valid() {
					t.Fatalf("Discover(%q, %v) returned %v", b, sub, id)
				}
				ids = append(ids, id)
			}
		}
	}
	// The requests come from an id the registry does not hold, so that
	// terminating a mailbox drops their answers instead of waiting for
	// room in a full requester's mailbox (see TestSHMCloseAfterSendTimeout
	// for the crash that wait could end in).
	from := exchange.NewClientID()
	var m exchange.Message
	for _, id := range ids {
		x.Status(ctx, id)
		x.Info(ctx, id)
		x.Send(now, exchange.NewActionRequest(from, id, "fuzz", []byte{1, 2, 3}))
		x.Send(now, exchange.NewPingRequest(from, id))
	}
	// Receive what can be received, from the template's mailboxes and a
	// new one.
	if id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "New", Implements: []string{"Peer"}}); err == nil {
		ids = append(ids, id)
		x.Send(now, exchange.NewActionRequest(from, id, "fuzz", nil))
	}
	for _, id := range ids[:len(tp.ids)+1] {
		mb, err := x.Mailbox(ctx, id)
		if err != nil {
			continue
		}
		for range 4 {
			if err := mb.Recv(now, &m); err != nil && !errors.Is(err, exchange.ErrBadMessage) {
				break
			}
		}
		mb.Close()
	}
	for _, id := range ids[:2] {
		x.Terminate(ctx, id)
	}
	x.Discover(ctx, "Peer", true)
}

// FuzzRegistryAttach corrupts a valid registry: patch is written at file
// offset off (inside the registry body, or anywhere in the file when
// header is set), and word, as an aligned 64-bit little-endian word, at body
// offset woff. A change to the validated part of the shm header or of the
// registry header must make Open fail; anything else may work or fail, but
// never panic.
func FuzzRegistryAttach(f *testing.F) {
	tp := newRegTemplate(f)
	entry := func(i, field int) uint16 { return uint16(regOffTable + i*regEntrySize + field) }
	f.Add(uint16(0), []byte{}, uint16(regOffCount), uint64(1000), false)                    // count past the capacity
	f.Add(uint16(0), []byte{}, uint16(regOffCount), uint64(0xFFFFFFFF), false)              // count huge
	f.Add(uint16(0), []byte{}, uint16(regOffCount), uint64(0), false)                       // nothing published
	f.Add(entry(0, regEntryRole), []byte{7}, entry(1, regEntryStamp), uint64(3)<<32, false) // damaged state
	f.Add(entry(1, regEntryLens), []byte{255, 255, 255}, entry(3, regEntryOwner), uint64(0), false)
	f.Add(entry(2, regEntryState), []byte{1, 0, 0, 0}, entry(0, regEntryOwner), uint64(12345), false) // revive Gone
	f.Add(entry(3, regEntryUUID), bytes.Repeat([]byte{0xAB}, 16), entry(4, regEntryStamp), uint64(2)<<32, false)
	f.Add(entry(0, regEntryImpl), []byte{200, 'A'}, entry(5, regEntryStamp), uint64(1)<<32, false) // unpublished slot
	f.Add(entry(4, regEntryRole), []byte{1}, entry(4, regEntryOwner), uint64(1<<63), false)        // client turned agent
	f.Add(uint16(0), []byte("XXXXXXXX"), uint16(0), uint64(0), false)                              // registry magic
	f.Add(uint16(12), []byte{0, 1}, uint16(8), uint64(2), false)                                   // entries, version
	f.Add(uint16(5), []byte{0}, uint16(0), uint64(0), true)                                        // shm magic
	f.Add(uint16(16), []byte{1, 2, 3}, uint16(0), uint64(0), true)                                 // shm size
	f.Add(uint16(100), []byte{1, 2, 3}, uint16(200), uint64(0), true)                              // unchecked shm header bytes
	f.Fuzz(func(t *testing.T, off uint16, patch []byte, woff uint16, word uint64, header bool) {
		mustFail := false
		x, err := tp.open(t, func(reg []byte, live uint64) []byte {
			body := reg[regBody:]
			tp.revive(body, live)
			if header {
				copy(reg[int(off)%len(reg):], patch)
			} else {
				copy(body[int(off)%len(body):], patch)
			}
			binary.LittleEndian.PutUint64(body[(int(woff)%len(body))&^7:], word)
			mustFail = !bytes.Equal(reg[:regShmChecked], tp.registry[:regShmChecked]) ||
				!bytes.Equal(body[:regHdrChecked], tp.registry[regBody:regBody+regHdrChecked])
			return reg
		}, nil)
		if err != nil {
			return
		}
		if mustFail {
			t.Fatal("Open accepted a registry with a damaged header")
		}
		tp.exercise(t, x)
	})
}

// FuzzRegistryBody makes the registry a segment with a valid shm header and
// the fuzzed bytes as its body; the template's rings are beside it.
func FuzzRegistryBody(f *testing.F) {
	tp := newRegTemplate(f)
	good := tp.registry[regBody:]
	f.Add(bytes.Clone(good))
	f.Add(bytes.Clone(good[:regOffTable]))                  // header only
	f.Add(bytes.Clone(good[:regOffTable+3*regEntrySize+7])) // shorter than its capacity
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xFF}, len(good)))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		x, err := tp.open(t, nil, func(path string, live uint64) error {
			seg, err := shm.Create(path, shm.KindRegistry, int64(shm.HeaderSize+len(body)), func(b []byte) error {
				copy(b, body)
				tp.revive(b, live)
				return nil
			})
			if err == nil {
				seg.Close()
			}
			return err
		})
		if err != nil {
			return
		}
		tp.exercise(t, x)
	})
}

// TestRegistryTemplate checks the fuzz targets' harness: an unmodified copy
// of the template opens and works, so that the targets exercise a working
// exchange and not only Open's errors.
func TestRegistryTemplate(t *testing.T) {
	tp := newRegTemplate(t)
	x, err := tp.open(t, func(reg []byte, live uint64) []byte {
		tp.revive(reg[regBody:], live)
		return reg
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counter, echo, gone, owned := tp.ids[0], tp.ids[1], tp.ids[2], tp.ids[3]
	if got, err := x.Discover(ctx, "Peer", true); err != nil || joinIDs(got) != joinIDs([]exchange.EntityID{counter, echo}) {
		t.Fatalf("Discover(Peer, true) = %v, %v; want %v and %v", got, err, counter, echo)
	}
	for id, want := range map[exchange.EntityID]exchange.Status{counter: exchange.StatusActive, gone: exchange.StatusTerminated, owned: exchange.StatusTerminated} {
		if st, err := x.Status(ctx, id); st != want || err != nil {
			t.Fatalf("Status(%v) = %v, %v; want %v", id, st, err, want)
		}
	}
	// Owned's owner (the template's handle) is gone: its queued request
	// was answered to the client, whose mailbox also holds nothing else.
	mb, err := x.Mailbox(ctx, tp.client)
	if err != nil {
		t.Fatal(err)
	}
	var m exchange.Message
	if err := mb.Recv(ctx, &m); err != nil || m.Src != owned || string(m.ErrorKind) != exchange.ErrorKindMailboxTerminated {
		t.Fatalf("client Recv: %v, %v", &m, err)
	}
	if err := x.Send(ctx, exchange.NewActionRequest(tp.client, counter, "work", nil)); err != nil {
		t.Fatal(err)
	}
	tp.exercise(t, x)
}
