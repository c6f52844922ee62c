package exchange_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/ring"
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
	// Checked after the handle's Close (cleanups run last first): no call
	// on the damaged registry touched memory outside a mapping, which the
	// handle would have turned into an error and logged (shm_fault.go).
	faults := &faultLog{}
	t.Cleanup(func() {
		if m := faults.first(); m != "" {
			t.Errorf("a fault on shared memory: %s", m)
		}
	})
	x, err := exchange.Open(name, exchange.WithRoot(tp.root), exchange.WithMailboxBytes(1024), exchange.WithLogger(slog.New(faults)))
	if err == nil {
		t.Cleanup(func() { x.Close() })
	} else if !isSentinel(err, openSentinels...) {
		t.Fatalf("Open: %v is none of the sentinel errors", err)
	}
	return x, err
}

// openSentinels are the errors Open may report for a damaged registry.
var openSentinels = []error{exchange.ErrCorruptRegistry, shm.ErrBadMagic, shm.ErrVersion, shm.ErrWrongKind,
	shm.ErrTruncated, shm.ErrChecksum, shm.ErrBadSize, shm.ErrNotOwner}

// callSentinels are the errors the calls on a handle with a damaged
// registry may report: the exchange's sentinels, the context's (the sends
// and receives are given a context already done), and those of the layers
// below, which a send wraps when the ring of a mailbox the registry calls
// active is missing or damaged (shm.ErrNotExist, ring.ErrGeometry, ...).
var callSentinels = append([]error{exchange.ErrBadEntityID, exchange.ErrMailboxClosed, exchange.ErrCorruptRegistry,
	exchange.ErrWrongRole, exchange.ErrMailboxBusy, exchange.ErrBadMessage, exchange.ErrInvalidArgument,
	exchange.ErrRegistryFull, exchange.ErrDuplicateID, context.Canceled, context.DeadlineExceeded,
	ring.ErrFull, ring.ErrCorrupt, ring.ErrClosed, ring.ErrNotRing, ring.ErrVersion, ring.ErrChecksum,
	ring.ErrGeometry, ring.ErrNoSlot, ring.ErrBusy, shm.ErrNotExist}, openSentinels...)

func isSentinel(err error, sentinels ...error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// faultLog is a slog handler that keeps the first record about a fault
// on shared memory (see shm_fault.go) and drops the rest.
type faultLog struct {
	mu  sync.Mutex
	msg string
}

func (l *faultLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *faultLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *faultLog) WithGroup(string) slog.Handler            { return l }
func (l *faultLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "fault") {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msg == "" {
		l.msg = r.Message
		r.Attrs(func(a slog.Attr) bool { l.msg += " " + a.String(); return true })
	}
	return nil
}

func (l *faultLog) first() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

// exercise calls every method of x on the template's ids, on ids the
// registry never held and on the zero ids, and checks what the answers
// say of one another: every id Discover finds is a valid agent that Info
// and Status describe alike (active, with the behavior looked for), an Info
// that succeeds describes the id it was asked about with the state Status
// reports, a terminated id never reads active again, and every error is one
// of the sentinels (callSentinels). Panics, hangs and faults (see open)
// fail too.
func (tp *regTemplate) exercise(t *testing.T, x *exchange.SHM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Sends and receives do not wait: their context is already done, so
	// they deliver or take what fits or is there, and fail otherwise.
	now, stop := context.WithCancel(ctx)
	stop()
	typed := func(what string, id exchange.EntityID, err error) {
		t.Helper()
		if err != nil && !isSentinel(err, callSentinels...) {
			t.Fatalf("%s(%v): %v is none of the sentinel errors", what, id, err)
		}
	}
	ids := append([]exchange.EntityID(nil), tp.ids...)
	for _, id := range tp.ids { // the same UUIDs with the other role
		ids = append(ids, exchange.EntityID{UUID: id.UUID, Role: exchange.RoleAgent + exchange.RoleClient - id.Role})
	}
	ids = append(ids, exchange.NewAgentID(), exchange.NewClientID(),
		exchange.EntityID{Role: exchange.RoleAgent}, exchange.EntityID{Role: exchange.RoleClient})
	for _, b := range tp.behaviors {
		for _, sub := range []bool{false, true} {
			found, err := x.Discover(ctx, b, sub)
			typed("Discover", exchange.EntityID{}, err)
			seen := map[exchange.EntityID]bool{}
			for _, id := range found {
				if !id.IsAgent() || !id.Valid() || seen[id] {
					t.Fatalf("Discover(%q, %v) returned %v (of %v)", b, sub, id, found)
				}
				seen[id] = true
				info, err := x.Info(ctx, id)
				if err != nil || info.ID != id || info.Status != exchange.StatusActive || !info.Behavior.Matches(b, sub) {
					t.Fatalf("Discover(%q, %v) found %v; Info says %+v, %v", b, sub, id, info, err)
				}
				if st, err := x.Status(ctx, id); st != exchange.StatusActive || err != nil {
					t.Fatalf("Discover(%q, %v) found %v; Status says %v, %v", b, sub, id, st, err)
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
		info, ierr := x.Info(ctx, id)
		typed("Info", id, ierr)
		st, err := x.Status(ctx, id)
		typed("Status", id, err)
		if ierr == nil && (info.ID != id || info.Status != st || !id.Valid()) {
			t.Fatalf("Info(%v) = %+v, Status %v", id, info, st)
		}
		if !id.Valid() && st != exchange.StatusMissing {
			t.Fatalf("Status of the invalid id %v: %v", id, st)
		}
		if id.Valid() {
			typed("Send", id, x.Send(now, exchange.NewActionRequest(from, id, "fuzz", []byte{1, 2, 3})))
			typed("Send", id, x.Send(now, exchange.NewPingRequest(from, id)))
		}
	}
	// Receive what can be received, from the template's mailboxes and a
	// new one.
	id, err := x.RegisterAgent(ctx, exchange.Behavior{Name: "New", Implements: []string{"Peer"}})
	typed("RegisterAgent", id, err)
	if err == nil {
		if st, err := x.Status(ctx, id); st != exchange.StatusActive || err != nil {
			t.Fatalf("registered %v; Status says %v, %v", id, st, err)
		}
		ids = append(ids, id)
		typed("Send", id, x.Send(now, exchange.NewActionRequest(from, id, "fuzz", nil)))
	}
	for _, id := range ids[:len(tp.ids)+1] {
		mb, err := x.Mailbox(ctx, id)
		typed("Mailbox", id, err)
		if err != nil {
			continue
		}
		for range 4 {
			err := mb.Recv(now, &m)
			typed("Recv", id, err)
			if err != nil && !errors.Is(err, exchange.ErrBadMessage) {
				break
			}
		}
		typed("Close", id, mb.Close())
	}
	for _, id := range ids[:2] {
		err := x.Terminate(ctx, id)
		typed("Terminate", id, err)
		if st, _ := x.Status(ctx, id); err == nil && st == exchange.StatusActive {
			t.Fatalf("Status(%v) is active after its Terminate", id)
		}
	}
	_, err = x.Discover(ctx, "Peer", true)
	typed("Discover", exchange.EntityID{}, err)
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
// the fuzzed bytes as its body; the template's rings are beside it. With
// seal set, the registry header's and every entry's checksums are
// recomputed over the fuzzed bytes (exchange.SealRegistry), so that the
// checks behind them see the bytes.
func FuzzRegistryBody(f *testing.F) {
	tp := newRegTemplate(f)
	good := tp.registry[regBody:]
	for _, seal := range []bool{false, true} {
		f.Add(bytes.Clone(good), seal)
		f.Add(bytes.Clone(good[:regOffTable]), seal)                  // header only
		f.Add(bytes.Clone(good[:regOffTable+3*regEntrySize+7]), seal) // shorter than its capacity
		f.Add([]byte{}, seal)
		f.Add(bytes.Repeat([]byte{0xFF}, len(good)), seal)
	}
	f.Fuzz(func(t *testing.T, body []byte, seal bool) {
		if len(body) > 1<<16 {
			return
		}
		x, err := tp.open(t, nil, func(path string, live uint64) error {
			seg, err := shm.Create(path, shm.KindRegistry, int64(shm.HeaderSize+len(body)), func(b []byte) error {
				copy(b, body)
				tp.revive(b, live)
				if seal {
					exchange.SealRegistry(b)
				}
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

// FuzzRegistryEntries damages the registry past its checksums: patch is
// written into entry slot (at off, spilling into the next entries when
// long); word is stored as an aligned 64-bit word at woff in the registry
// header (where = 1: the version, capacity, entry size, count and
// generation words) or in entry slot+1 (where = 2: its stamp, owner and
// termination words, which no checksum covers), or entry slot's UUID is
// copied into entry slot+1 (where = 3: a duplicate), or nothing more
// (where = 0); then the header's and every entry's checksums are recomputed
// (exchange.SealRegistry). Open fails with ErrCorruptRegistry, or the
// exchange works as exercise checks: an entry the registry accepts is a
// valid id, described alike by Discover, Info and Status.
//
// The inputs that found bugs are in testdata/fuzz/FuzzRegistryEntries,
// named after them.
func FuzzRegistryEntries(f *testing.F) {
	tp := newRegTemplate(f)
	stampOf := func(gen, state, inc uint64) uint64 { return gen<<34 | state<<32 | inc }
	const none, hdr, next, dup = 0, 1, 2, 3
	f.Add(uint8(1), uint16(regEntryUUID), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(none), uint16(0), uint64(0))   // Echo's ring is not there
	f.Add(uint8(0), uint16(regEntryRole), []byte{3}, uint8(none), uint16(0), uint64(0))                           // no such role
	f.Add(uint8(0), uint16(regEntryLens), []byte{65, 0, 3}, uint8(none), uint16(0), uint64(0))                    // name too long
	f.Add(uint8(1), uint16(regEntryLens+1), []byte{255, 255}, uint8(none), uint16(0), uint64(0))                  // behavior and implements
	f.Add(uint8(0), uint16(56), []byte{0, 0, 0, 0x40, 0xff, 0xff, 0xff, 0x7f}, uint8(none), uint16(0), uint64(0)) // ring capacity and max record
	f.Add(uint8(1), uint16(40), []byte{1, 2, 3, 4}, uint8(next), uint16(0), stampOf(1, 2, 7))                     // creator; Gone's stamp
	f.Add(uint8(2), uint16(0), []byte{}, uint8(next), uint16(0), stampOf(1, 1, 0))                                // Owned revived
	f.Add(uint8(4), uint16(0), []byte{}, uint8(next), uint16(0), stampOf(1, 1, 0))                                // an unused slot made active
	f.Add(uint8(2), uint16(regEntryRole), []byte{2}, uint8(next), uint16(regEntryOwner), uint64(1))               // a dead owner
	f.Add(uint8(0), uint16(0), []byte{}, uint8(hdr), uint16(8), uint64(regTemplateCap+1)<<32|2)                   // capacity past the file
	f.Add(uint8(0), uint16(0), []byte{}, uint8(hdr), uint16(16), uint64(0x100000200))                             // entry size
	f.Add(uint8(0), uint16(0), []byte{}, uint8(hdr), uint16(regOffCount), uint64(1<<31))                          // count
	f.Add(uint8(0), uint16(0), []byte{}, uint8(hdr), uint16(8), uint64(regTemplateCap)<<32|1)                     // version 1
	f.Add(uint8(4), uint16(regEntrySize-8), append(make([]byte, 8),                                               // slot 5, unused, made active with an entry
		0, 0, 0, 0, 1, 0, 0, 0, 1, 4, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), uint8(none), uint16(0), uint64(0))
	f.Fuzz(func(t *testing.T, slot uint8, off uint16, patch []byte, where uint8, woff uint16, word uint64) {
		if len(patch) > 4*regEntrySize {
			return
		}
		x, err := tp.open(t, func(reg []byte, live uint64) []byte {
			body := reg[regBody:]
			tp.revive(body, live)
			i := int(slot) % regTemplateCap
			copy(body[regOffTable+i*regEntrySize+int(off)%regEntrySize:], patch)
			j := (i + 1) % regTemplateCap
			switch where % 4 {
			case hdr:
				binary.LittleEndian.PutUint64(body[(int(woff)%regOffTable)&^7:], word)
			case next:
				binary.LittleEndian.PutUint64(body[regOffTable+j*regEntrySize+(int(woff)%regEntrySize)&^7:], word)
			case dup:
				from := body[regOffTable+i*regEntrySize+regEntryUUID:]
				copy(body[regOffTable+j*regEntrySize+regEntryUUID:], from[:16])
			}
			exchange.SealRegistry(body)
			return reg
		}, nil)
		if err != nil {
			if !errors.Is(err, exchange.ErrCorruptRegistry) {
				t.Fatalf("Open: %v, want ErrCorruptRegistry", err)
			}
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
