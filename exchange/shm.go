package exchange

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/ring"
	"github.com/shmex/shmex/shm"
)

// Defaults of the shared-memory exchange.
const (
	// DefaultMailboxBytes is the default ring capacity of a mailbox.
	DefaultMailboxBytes = 256 << 10
	// ringSlots is the number of producer slots per mailbox ring: how many
	// producers (a few per sending process) may write to one mailbox at once.
	ringSlots = 128
	// producersPerDest bounds the producers one handle keeps per mailbox.
	producersPerDest = 8
	// ownerCheckInterval is how often a sender looks again whether the
	// owner of a mailbox it sends to is alive.
	ownerCheckInterval = 100 * time.Millisecond
	// ownerCheckEvery is how many sends go, on average, between two reads
	// of the clock for that check (a clock read costs as much as a quarter
	// of a send on some virtual machines); a power of two.
	ownerCheckEvery = 16
)

// Option configures Open.
type Option func(*shmOptions)

type shmOptions struct {
	root         string
	mailboxBytes int
	idle         ring.IdleStrategy
	registryCap  int
	log          *slog.Logger
}

// WithRoot sets the root directory of exchanges (default shm.DefaultRoot(),
// /dev/shm/shmex-<uid>). Every process of one exchange must use the same.
func WithRoot(dir string) Option { return func(o *shmOptions) { o.root = dir } }

// WithMailboxBytes sets the ring capacity of the mailboxes this handle
// registers: a power of two from 1 KiB to 1 GiB, default 256 KiB. The
// largest message is a quarter of it.
func WithMailboxBytes(n int) Option { return func(o *shmOptions) { o.mailboxBytes = n } }

// WithIdle sets how this handle's receivers wait for messages: ring.Spin
// (lowest latency, a core busy), ring.Park (no CPU while idle) or
// ring.SpinThenPark(n) (the default, with n = 2000).
func WithIdle(s ring.IdleStrategy) Option { return func(o *shmOptions) { o.idle = s } }

// WithRegistryCapacity sets how many mailboxes the exchange can ever
// register; it applies when this handle creates the exchange. Default
// DefaultRegistryCapacity.
func WithRegistryCapacity(n int) Option { return func(o *shmOptions) { o.registryCap = n } }

// WithLogger sets the logger for events such as a mailbox found dead.
func WithLogger(l *slog.Logger) Option { return func(o *shmOptions) { o.log = l } }

// SHM is a handle on a shared-memory exchange: any number of processes on
// one node Open the same name and see the same mailboxes. See the package
// documentation for the model and Open for the layout.
type SHM struct {
	name string
	dir  string
	opts shmOptions
	life *processLife
	reg  *registry

	// mu is held for reading by every operation that touches mapped
	// memory outside the two steady-state paths (a send holding a producer
	// box, a receive holding its mailbox's mu), and for writing by Close,
	// which unmaps it once those have ended too (see Close).
	mu      sync.RWMutex
	closing atomic.Bool
	closed  bool

	// The mappings of destination rings: see "Mapping lifecycle" at dest
	// for who may use a mapping and when it is unmapped.
	dests    sync.Map             // UUID -> *dest; changed only under destMu
	last     atomic.Pointer[dest] // the dest found last: most sends go where the previous one went
	destMu   sync.Mutex
	retired  []*dest      // unlinked mappings not yet unmapped (a user may hold them); under destMu
	nretired atomic.Int32 // len(retired), read without destMu

	mbMu   sync.Mutex
	mboxes map[*shmMailbox]struct{}
}

var _ Exchange = (*SHM)(nil)

// dest is a mapped mailbox ring, shared by the senders and receivers of one
// handle.
//
// Mapping lifecycle. A handle maps a mailbox's ring at its first use and
// keeps the mapping while it can carry messages. One that cannot any more
// (its mailbox was reopened on a new ring, or terminated and its ring
// collected) is retired, then unmapped once nobody uses it, while the
// handle lives; the steady-state send path pays nothing for it (no atomic,
// no lock beyond the box CAS it always made). Invariants:
//
//  1. Reachability. x.dests and x.last are the only ways to a dest. Every
//     change of x.dests is made under destMu. retire removes a dest from
//     x.dests, then sets dead, then clears x.last if it points at it; a
//     dest is stored in x.dests only when freshly mapped, so a dead one is
//     never stored there again. x.last may still come to point at a dead
//     dest (a dest call that loaded it from x.dests just before the removal
//     stores it after the clear): whoever finds it dead (every box closed,
//     or a pin refused) clears x.last again, so it does not stay, and until
//     then its mapping is still valid or its boxes refuse every sender.
//  2. Users. The mapped memory of a dest (its ring, producers and consumer)
//     is touched only by the holder of one of its producer boxes (a send:
//     busy moved from boxIdle to boxBusy by CAS, back to boxIdle by its
//     holder alone), or by the holder of a pin (pins > 0, taken while dead
//     is false: a mailbox client for its whole life, Terminate, Status and
//     sendOnce terminating a dead owner's mailbox). The Go fields of a dest
//     (id, index, inc, r's configuration) stay readable after the unmap.
//  3. Release. releaseIfIdle unmaps a dead dest only after it has seen pins
//     == 0 and turned every box from boxIdle to boxClosed by CAS. A pin is
//     taken by incrementing pins, then loading dead (and undone when dead
//     is set): with dead set before releaseIfIdle loads pins, either the
//     pinner sees dead or the releaser sees the pin. A closed box never
//     opens again, so once all are closed no sender holds one and none can
//     take one. This is the race of a sender that loaded the dest just
//     before it was unlinked: its box CAS either comes first (the box is
//     busy, the dest stays mapped, and its write lands in a closed but
//     valid ring) or fails (the box is closed); no check can go stale
//     between the validation and the use, as the CAS is both. A sender that
//     finds every box busy looks at dead and, set, goes back to x.dests
//     (errRetired).
//  4. Progress. A dead dest that still has a user when reclaimLocked looks
//     at it stays in x.retired (its idle boxes already closed). reclaim
//     runs whenever dest's slow path runs (it retires a reopened
//     mailbox's dest there), after a Reopen and a Collect of this handle,
//     when a send had to retry off an old ring (its box free by then) or
//     found its mailbox terminated and its ring collected, and when the
//     last pin of a dead dest goes. A send holds a box for one claim, so
//     the dests left over by a pass are at most those with a send in
//     progress at that moment, or pinned (an open mailbox client, a
//     termination): a number bounded by the goroutines using the handle,
//     not by the incarnations seen.
//  5. Close. A send uses a mapping (and reads the registry) only while it
//     holds a box, without having entered; a receive only while it holds
//     its mailbox client's mu. Close takes x.mu for writing (no entered
//     operation is in progress, and none can start), waits for each
//     mailbox client's mu (its receiver interrupted), then closes every
//     box of every dest, waiting for those held; only then does it unmap
//     the dests and the registry. Every reclaim runs inside an entered
//     operation, never alongside Close.
type dest struct {
	id        EntityID
	index     int    // registry entry
	inc       uint32 // incarnation of the mailbox this ring belongs to
	seg       *shm.Segment
	r         *ring.Ring
	boxes     [producersPerDest]prodBox
	lastCheck atomic.Int64 // unix nanos of the last owner liveness check
	dead      atomic.Bool  // retired: unlinked from x.dests, never linked again
	pins      atomic.Int32 // users that hold no box (see the lifecycle above)
}

// prodBox holds one ring producer, used by one sending goroutine at a time.
type prodBox struct {
	busy  uint32 // boxIdle, boxBusy or boxClosed; atomic, released by shm.StoreRelease32
	sends uint32 // sends made through the box; the holder's alone
	p     *ring.Producer
	_     [48]byte // keep boxes on separate cache lines
}

// take moves b from idle to busy.
func (b *prodBox) take() bool {
	return atomic.LoadUint32(&b.busy) == boxIdle && atomic.CompareAndSwapUint32(&b.busy, boxIdle, boxBusy)
}

// release gives b back. A release store is enough: whoever takes or
// closes b next does so by CAS, a full fence, after which the holder's
// writes to the ring are visible.
func (b *prodBox) release() { shm.StoreRelease32(&b.busy, boxIdle) }

// close moves b to closed for good, waiting for its holder to release it
// if it is busy (Close: a send holds a box for one claim, or, waiting for
// space, until its next look at the handle, within ownerCheckInterval).
// It yields at first, then sleeps, rather than spin through such a wait.
func (b *prodBox) close() {
	for spins := 0; atomic.LoadUint32(&b.busy) != boxClosed && !atomic.CompareAndSwapUint32(&b.busy, boxIdle, boxClosed); spins++ {
		if spins < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// closeBoxes closes every box of d, waiting for those held (Close).
func (d *dest) closeBoxes() {
	for i := range d.boxes {
		d.boxes[i].close()
	}
}

// States of a prodBox.
const (
	boxIdle   = 0 // free to take
	boxBusy   = 1 // held by one sending goroutine
	boxClosed = 2 // taken for good by releaseIfIdle: the mapping goes away
)

// Open creates the exchange called name (letters, digits, '-', '_', '.'),
// or joins it if it exists, under the root directory (WithRoot): its
// registry segment, one ring segment per mailbox and the liveness lock files
// of its processes live in <root>/<name>/.
func Open(name string, opts ...Option) (*SHM, error) {
	o := shmOptions{mailboxBytes: DefaultMailboxBytes, idle: ring.SpinThenPark(2000), registryCap: DefaultRegistryCapacity}
	for _, opt := range opts {
		opt(&o)
	}
	if o.root == "" {
		o.root = shm.DefaultRoot()
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.mailboxBytes < ring.MinCapacity || o.mailboxBytes > ring.MaxCapacity || bits.OnesCount(uint(o.mailboxBytes)) != 1 {
		return nil, fmt.Errorf("%w: mailbox size %d is not a power of two in [%d, %d]", ErrInvalidArgument, o.mailboxBytes, ring.MinCapacity, ring.MaxCapacity)
	}
	if o.registryCap < 1 || o.registryCap > 1<<20 {
		return nil, fmt.Errorf("%w: registry capacity %d", ErrInvalidArgument, o.registryCap)
	}
	dir, err := shm.ExchangeDir(o.root, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if err := shm.EnsureDir(dir); err != nil {
		return nil, err
	}
	life, err := acquireLife(dir)
	if err != nil {
		return nil, err
	}
	reg, err := openRegistry(dir, o.registryCap)
	if err != nil {
		life.release()
		return nil, err
	}
	return &SHM{name: name, dir: dir, opts: o, life: life, reg: reg, mboxes: map[*shmMailbox]struct{}{}}, nil
}

// Dir returns the exchange's directory.
func (x *SHM) Dir() string { return x.dir }

// Name returns the exchange's name.
func (x *SHM) Name() string { return x.name }

// enter guards an operation against a concurrent Close.
func (x *SHM) enter() error {
	// Only Close takes mu for writing, after setting closing: a failed
	// TryRLock means that Close is under way. Never blocking here is what
	// lets Close wait for a send or a receive in progress while holding
	// mu, whatever that send or receive calls.
	if x.closing.Load() || !x.mu.TryRLock() {
		return ErrExchangeClosed
	}
	if x.closed {
		x.mu.RUnlock()
		return ErrExchangeClosed
	}
	return nil
}

func (x *SHM) leave() { x.mu.RUnlock() }

// ringPath returns the path of the ring of incarnation inc of mailbox u.
func ringPath(dir string, u UUID, inc uint32) string {
	p := filepath.Join(dir, shm.RingPrefix+hex.EncodeToString(u[:]))
	if inc > 0 {
		p += "." + strconv.FormatUint(uint64(inc), 10)
	}
	return p
}

func (x *SHM) alive(owner uint64) bool {
	if owner == x.life.id() {
		return true
	}
	ok, err := shm.Alive(x.dir, owner)
	return ok || err != nil // an unreadable lock file is not evidence of death
}

// RegisterAgent implements [Exchange.RegisterAgent].
func (x *SHM) RegisterAgent(ctx context.Context, behavior Behavior, opts ...RegisterOption) (EntityID, error) {
	if behavior.Name == "" {
		return EntityID{}, fmt.Errorf("%w: empty behavior name", ErrInvalidArgument)
	}
	id, name, err := ResolveRegistration(RoleAgent, opts)
	if err != nil {
		return EntityID{}, err
	}
	return x.register(id, name, behavior)
}

// RegisterClient implements [Exchange.RegisterClient].
func (x *SHM) RegisterClient(ctx context.Context, opts ...RegisterOption) (EntityID, error) {
	id, name, err := ResolveRegistration(RoleClient, opts)
	if err != nil {
		return EntityID{}, err
	}
	return x.register(id, name, Behavior{})
}

func (x *SHM) register(id EntityID, name string, b Behavior) (EntityID, error) {
	if err := checkFields(name, b); err != nil {
		return EntityID{}, err
	}
	if err := x.enter(); err != nil {
		return EntityID{}, err
	}
	defer x.leave()
	if err := x.reg.lock(); err != nil {
		return EntityID{}, err
	}
	defer x.reg.unlock()
	if x.reg.find(id.UUID) >= 0 {
		return EntityID{}, fmt.Errorf("%w: %v", ErrDuplicateID, id)
	}
	capacity := x.opts.mailboxBytes
	path := ringPath(x.dir, id.UUID, 0)
	if err := createRing(path, capacity, capacity/4); err != nil {
		return EntityID{}, err
	}
	e := entry{id: id, name: name, behavior: b, ringCap: capacity, maxRecord: capacity / 4}
	if _, err := x.reg.append(e, x.life.id()); err != nil {
		shm.Remove(path)
		return EntityID{}, err
	}
	return id, nil
}

// createRing creates the ring segment of a mailbox at path, replacing one
// left there by a registration or Reopen that died before publishing it.
func createRing(path string, capacity, maxRecord int) error {
	cfg := ring.Config{Capacity: capacity, MaxRecord: maxRecord, Slots: ringSlots}
	shm.Remove(path)
	seg, err := shm.Create(path, shm.KindRing, int64(shm.HeaderSize+ring.Size(cfg.Capacity, cfg.Slots)),
		func(body []byte) error { _, err := ring.New(body, cfg, ring.Options{}); return err })
	if err != nil {
		return err
	}
	return seg.Close()
}

// lookup returns the registry index of id, or -1.
func (x *SHM) lookup(id EntityID) int {
	i := x.reg.find(id.UUID)
	if i < 0 || Role(x.reg.raw(i)[entRole]) != id.Role {
		return -1
	}
	return i
}

// dest returns the mapped ring of id's mailbox, mapping it on first use,
// and again after the mailbox was reopened. The cache is keyed by UUID, but
// the role is part of the id: a cached ring is returned only for its whole
// id, and the same UUID with the other role is [ErrBadEntityID].
func (x *SHM) dest(id EntityID) (*dest, error) {
	if d := x.last.Load(); d != nil && d.id == id && x.reg.incarnation(d.index) == d.inc {
		return d, nil
	}
	if v, ok := x.dests.Load(id.UUID); ok {
		if d := v.(*dest); d.id == id && x.reg.incarnation(d.index) == d.inc {
			x.last.Store(d)
			return d, nil
		}
	}
	x.destMu.Lock()
	defer x.destMu.Unlock()
	x.reclaimLocked()
	if v, ok := x.dests.Load(id.UUID); ok {
		d := v.(*dest)
		if d.id != id {
			return nil, fmt.Errorf("%w: %v", ErrBadEntityID, id)
		}
		if x.reg.incarnation(d.index) == d.inc {
			return d, nil
		}
		// Reopened: other goroutines may still use the old mapping; it
		// is unmapped when they are done (see the lifecycle at dest).
		x.retireLocked(d)
		x.reclaimLocked()
	}
	i := x.lookup(id)
	if i < 0 {
		return nil, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	// find matched the UUID alone: check the whole entry once, before
	// trusting it for the life of the mapping.
	if _, err := x.reg.decode(i); err != nil {
		return nil, err
	}
	var seg *shm.Segment
	var inc uint32
	for attempt := 0; ; attempt++ {
		inc = x.reg.incarnation(i)
		var err error
		seg, err = shm.Open(ringPath(x.dir, id.UUID, inc), shm.KindRing, shm.Populate())
		if err == nil {
			break
		}
		// The state before the incarnation: Reopen stores the new
		// incarnation, then the active state, so an active state read
		// first comes with the new incarnation.
		st := x.reg.state(i)
		if errors.Is(err, shm.ErrNotExist) && x.reg.incarnation(i) != inc && attempt < 8 {
			continue // reopened while we looked
		}
		if errors.Is(err, shm.ErrNotExist) && st == regTerminated {
			return nil, fmt.Errorf("%w: %v (collected)", ErrMailboxClosed, id)
		}
		return nil, fmt.Errorf("exchange: mailbox %v: %w", id, err)
	}
	r, err := ring.Attach(seg.Body(), ring.Options{Alive: x.alive})
	if err != nil {
		seg.Close()
		return nil, fmt.Errorf("exchange: mailbox %v: %w", id, err)
	}
	d := &dest{id: id, index: i, inc: inc, seg: seg, r: r}
	d.lastCheck.Store(time.Now().UnixNano())
	x.dests.Store(id.UUID, d)
	return d, nil
}

// cachedDest returns the mapping of id's mailbox that this handle has
// cached, or nil. It reads no mapped memory (a send calls it before it
// holds a box): the mapping may be of an earlier incarnation, or retired,
// which the send finds out once it holds a box.
func (x *SHM) cachedDest(id EntityID) *dest {
	if d := x.last.Load(); d != nil && d.id == id {
		return d
	}
	if v, ok := x.dests.Load(id.UUID); ok {
		if d := v.(*dest); d.id == id {
			x.last.Store(d)
			return d
		}
	}
	return nil
}

// destPinned is dest for a user of the mapping that holds no producer box
// (see the lifecycle at dest): it returns d pinned; unpin it when done.
func (x *SHM) destPinned(id EntityID) (*dest, error) {
	for {
		d, err := x.dest(id)
		if err != nil {
			return nil, err
		}
		if x.pin(d) {
			return d, nil
		}
		x.last.CompareAndSwap(d, nil) // retired meanwhile: look again
	}
}

// pin takes a pin on d, unless d is retired (false, and no pin held).
func (x *SHM) pin(d *dest) bool {
	d.pins.Add(1)
	if !d.dead.Load() {
		return true
	}
	x.unpin(d)
	return false
}

// unpin drops a pin of d, unmapping d if it was the last one of a retired
// dest. The caller has entered and does not hold destMu.
func (x *SHM) unpin(d *dest) {
	if d.pins.Add(-1) == 0 && d.dead.Load() {
		x.reclaim()
	}
}

// retireLocked unlinks d, the mapping of a mailbox that can carry no more
// messages through it, and queues it for unmapping. destMu is held.
func (x *SHM) retireLocked(d *dest) {
	if !x.dests.CompareAndDelete(d.id.UUID, d) {
		return // not linked: retired already
	}
	d.dead.Store(true)
	x.last.CompareAndSwap(d, nil)
	x.retired = append(x.retired, d)
	x.nretired.Store(int32(len(x.retired)))
}

// reclaim unmaps the retired dests that nobody uses any more. The caller
// has entered and does not hold destMu.
func (x *SHM) reclaim() {
	x.destMu.Lock()
	x.reclaimLocked()
	x.destMu.Unlock()
}

// reclaimLocked is reclaim with destMu held.
func (x *SHM) reclaimLocked() {
	if len(x.retired) == 0 {
		return
	}
	kept := x.retired[:0]
	for _, d := range x.retired {
		if !d.releaseIfIdle() {
			kept = append(kept, d)
		}
	}
	clear(x.retired[len(kept):])
	x.retired = kept
	x.nretired.Store(int32(len(kept)))
}

// releaseIfIdle unmaps the retired d when it has no user: no pin, and every
// box closed (those still held by a send stay open and d stays mapped; the
// others are closed already, for the next attempt). It reports whether it
// unmapped d.
func (d *dest) releaseIfIdle() bool {
	if d.pins.Load() != 0 { // dead is set: no pin can be taken any more
		return false
	}
	idle := true
	for i := range d.boxes {
		b := &d.boxes[i]
		if atomic.LoadUint32(&b.busy) != boxClosed && !atomic.CompareAndSwapUint32(&b.busy, boxIdle, boxClosed) {
			idle = false
		}
	}
	if !idle {
		return false
	}
	// Every box is closed, and was released (or never taken) before:
	// the producers' writes happened before the CASes that closed them.
	for i := range d.boxes {
		if p := d.boxes[i].p; p != nil {
			p.Close()
			d.boxes[i].p = nil
		}
	}
	d.seg.Close()
	return true
}

// stale reports whether the mapping d can never carry a message again: its
// mailbox was reopened on another ring, or it is terminated and its ring was
// collected (a ring's path is never used again once removed).
func (x *SHM) stale(d *dest) bool {
	if x.reg.incarnation(d.index) != d.inc {
		return true
	}
	if x.reg.state(d.index) != regTerminated {
		return false
	}
	_, err := os.Stat(ringPath(x.dir, d.id.UUID, d.inc))
	return errors.Is(err, fs.ErrNotExist)
}

// reap retires and unmaps this handle's mapping of mailbox u if it is
// stale. The caller has entered.
func (x *SHM) reap(u UUID) {
	v, ok := x.dests.Load(u)
	if !ok || !x.stale(v.(*dest)) {
		return
	}
	x.destMu.Lock()
	x.retireLocked(v.(*dest))
	x.reclaimLocked()
	x.destMu.Unlock()
}

// reapClosed is reap for a send to id that failed with [ErrMailboxClosed]:
// a mailbox that stays terminated and whose ring was collected keeps no
// mapping here. The send may have gone through a retired mapping still
// cached in x.last, whose box it held, so that the retire could not close
// it: that mapping is uncached and, its box free now, unmapped as well
// (x.dests has no entry for it, so no lookup's slow path would).
func (x *SHM) reapClosed(id EntityID) {
	if d := x.last.Load(); d != nil && d.dead.Load() {
		x.last.CompareAndSwap(d, nil)
	}
	x.reap(id.UUID)
	if x.nretired.Load() != 0 {
		x.reclaim()
	}
}

// reapAll retires and unmaps every stale mapping of this handle. The caller
// has entered.
func (x *SHM) reapAll() {
	x.dests.Range(func(k, _ any) bool {
		x.reap(k.(UUID))
		return true
	})
	if x.nretired.Load() != 0 {
		x.reclaim()
	}
}

// acquire returns a free producer box of d, creating its producer on first
// use; release it with b.release(). While the box is held, d's ring and the
// registry stay mapped (see Close). When every box is busy, or the ring has
// no free producer slot (other processes hold them all), it waits until ctx
// is done or this handle is closed: first yielding, then, when no slot
// frees up soon, sleeping between attempts. It fails with errRetired when d
// was retired and its free boxes closed: the caller looks for the
// mailbox's mapping again.
func (x *SHM) acquire(ctx context.Context, d *dest) (*prodBox, error) {
	for spins := 0; ; spins++ {
		noSlot := false
		for i := range d.boxes {
			b := &d.boxes[i]
			if !b.take() {
				continue
			}
			if b.p == nil {
				p, err := d.r.NewProducer(x.life.id())
				if err != nil {
					b.release()
					if errors.Is(err, ring.ErrNoSlot) {
						noSlot = true
						break // wait for a box that has a producer, or a slot
					}
					return nil, err
				}
				b.p = p
			}
			return b, nil
		}
		// Not on the steady-state path: only when no box was free.
		if d.dead.Load() {
			return nil, errRetired
		}
		if x.closing.Load() {
			return nil, ErrExchangeClosed // Close closes the boxes
		}
		if spins&63 == 63 {
			if err := ctx.Err(); err != nil {
				if noSlot {
					return nil, fmt.Errorf("exchange: no free producer slot in mailbox %v: %w", d.id, err)
				}
				return nil, err
			}
		}
		if noSlot && spins >= 64 {
			time.Sleep(time.Millisecond) // every slot is held by other processes
		} else {
			runtime.Gosched()
		}
	}
}

// Send implements [Exchange.Send]. In steady state it is a claim in the
// destination ring, an encoding straight into it and a commit: no copy and
// no allocation. A mailbox's ring has a fixed number of producer slots
// (128, shared by every process that sends to it; a handle takes one per
// goroutine sending at once, up to 8): a Send that finds none free waits
// for one as it waits for space in a full mailbox.
func (x *SHM) Send(ctx context.Context, m *Message) error {
	if err := m.Validate(); err != nil {
		return err
	}
	return x.send(ctx, m, true)
}

// errReopened tells send that the mailbox was reopened under its feet.
var errReopened = errors.New("exchange: mailbox reopened")

// errRetired tells send that the mapping it took was retired meanwhile.
var errRetired = errors.New("exchange: mailbox mapping retired")

// send is Send without the validation. wait says whether to wait for space
// in a full mailbox. It needs no enter: the steady state touches mapped
// memory only while holding a producer box, and the slow paths enter.
func (x *SHM) send(ctx context.Context, m *Message, wait bool) error {
	lookup := false
	for {
		err := x.sendOnce(ctx, m, wait, lookup)
		switch {
		case err == nil:
			return nil
		case err == errReopened || err == errRetired:
			// The box this send held on the old ring is free now: the
			// ring may be unmapped, if no one else holds it. The next
			// attempt looks the mailbox up (and retires a reopened
			// mailbox's old mapping there).
			lookup = true
			if x.nretired.Load() != 0 && x.enter() == nil {
				x.reclaim()
				x.leave()
			}
			continue
		case errors.Is(err, ErrMailboxClosed):
			if x.enter() == nil {
				x.reapClosed(m.Dest)
				x.leave()
			}
		}
		return err
	}
}

// sendOnce is one attempt of send, on the ring of the mailbox's current
// incarnation; errReopened when it was reopened meanwhile. lookup skips the
// cached mappings.
func (x *SHM) sendOnce(ctx context.Context, m *Message, wait, lookup bool) error {
	var d *dest
	if !lookup {
		d = x.cachedDest(m.Dest)
	}
	if d == nil {
		if err := x.enter(); err != nil {
			return err
		}
		var err error
		d, err = x.dest(m.Dest)
		x.leave()
		if err != nil {
			return err
		}
	}
	if x.closing.Load() { // a closed handle says so before anything else
		return ErrExchangeClosed
	}
	n := m.EncodedSize()
	if n > d.r.MaxPayload() {
		return fmt.Errorf("%w: %d bytes encoded, the mailbox takes at most %d", ErrMessageTooLarge, n, d.r.MaxPayload())
	}
	b, err := x.acquire(ctx, d)
	if err != nil {
		if err == errRetired {
			x.last.CompareAndSwap(d, nil) // it may have come from there
		}
		return err
	}
	// From here on the box keeps d's ring and the registry mapped.
	if x.reg.incarnation(d.index) != d.inc {
		b.release()
		return errReopened
	}
	// A mailbox whose owner died is terminated rather than filled: look at
	// the owner at most once per ownerCheckInterval per mailbox, and at the
	// clock at one send in ownerCheckEvery through a box (a counter shared
	// by the senders would be a cache line that every one writes). A full
	// mailbox is checked at once, in claimSlow.
	if b.sends++; b.sends&(ownerCheckEvery-1) == 0 && d.ownerCheckDue() &&
		x.reg.state(d.index) == regActive && !x.alive(x.reg.owner(d.index)) {
		b.release()
		return x.ownerDied(d)
	}
	defer b.release()
	c, err := b.p.TryClaim(int32(m.Kind), n)
	if errors.Is(err, ring.ErrFull) {
		if !wait {
			return err
		}
		c, err = x.claimSlow(ctx, d, b.p, m.Kind, n)
	}
	if err != nil {
		if errors.Is(err, ring.ErrClosed) {
			if x.reg.incarnation(d.index) != d.inc {
				return errReopened // send again, to the new ring
			}
			return fmt.Errorf("%w: %v", ErrMailboxClosed, m.Dest)
		}
		return err
	}
	if err := m.encodeSized(c.Bytes()); err != nil {
		c.Abort()
		return err
	}
	c.Commit()
	return nil
}

// ownerDied terminates the mailbox of d, whose owner a send found dead,
// and fails the send.
func (x *SHM) ownerDied(d *dest) error {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	if !x.pin(d) {
		x.last.CompareAndSwap(d, nil)
		return errRetired
	}
	x.terminateDead(d)
	x.unpin(d)
	return fmt.Errorf("%w: %v (its owner died)", ErrMailboxClosed, d.id)
}

// claimSlow waits for space in a full mailbox, in steps, so that it notices
// a Close of this handle and the death of the mailbox's owner (whose ring
// would otherwise never drain).
func (x *SHM) claimSlow(ctx context.Context, d *dest, p *ring.Producer, k Kind, n int) (ring.Claim, error) {
	for {
		if x.closing.Load() {
			return ring.Claim{}, ErrExchangeClosed
		}
		if !x.alive(x.reg.owner(d.index)) {
			x.terminateDead(d)
			return ring.Claim{}, ring.ErrClosed
		}
		step, cancel := context.WithTimeout(ctx, ownerCheckInterval)
		c, err := p.Claim(step, int32(k), n)
		cancel()
		if err == nil || !errors.Is(err, ring.ErrFull) || ctx.Err() != nil {
			return c, err
		}
	}
}

// Status implements [Exchange.Status]. An active mailbox whose owner
// process is dead is reported (and marked) terminated.
func (x *SHM) Status(ctx context.Context, id EntityID) (Status, error) {
	if err := x.enter(); err != nil {
		return StatusMissing, err
	}
	defer x.leave()
	i := x.lookup(id)
	if i < 0 {
		return StatusMissing, nil
	}
	return x.status(i, id), nil
}

func (x *SHM) status(i int, id EntityID) Status {
	if x.reg.state(i) == regTerminated {
		return StatusTerminated
	}
	if !x.alive(x.reg.owner(i)) {
		if d, err := x.destPinned(id); err == nil {
			x.terminateDead(d)
			x.unpin(d)
		}
		return StatusTerminated
	}
	return StatusActive
}

// Info implements [Exchange.Info].
func (x *SHM) Info(ctx context.Context, id EntityID) (EntityInfo, error) {
	if err := x.enter(); err != nil {
		return EntityInfo{}, err
	}
	defer x.leave()
	i := x.lookup(id)
	if i < 0 {
		return EntityInfo{}, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	e, err := x.reg.decode(i)
	if err != nil {
		return EntityInfo{}, err
	}
	return EntityInfo{ID: e.id, Name: e.name, Behavior: e.behavior, Status: x.status(i, id)}, nil
}

// Discover implements [Exchange.Discover]. Agents whose owner process is
// dead are not returned.
func (x *SHM) Discover(ctx context.Context, behavior string, allowSubtypes bool) ([]EntityID, error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	var found []EntityID
	n := x.reg.published()
	for i := 0; i < n; i++ {
		if x.reg.state(i) != regActive || Role(x.reg.raw(i)[entRole]) != RoleAgent {
			continue
		}
		e, err := x.reg.decode(i)
		if err != nil {
			x.opts.log.Warn("shmex: skipping damaged registry entry", "exchange", x.name, "entry", i, "err", err)
			continue
		}
		if e.behavior.Matches(behavior, allowSubtypes) && x.status(i, e.id) == StatusActive {
			found = append(found, e.id)
		}
	}
	return found, nil
}

// Terminate implements [Exchange.Terminate]. The ring is closed first, so
// no send succeeds afterwards; then the entry is marked. When no live
// receiver is attached, Terminate itself answers the queued requests; a
// live receiver answers those it finds after the close.
func (x *SHM) Terminate(ctx context.Context, id EntityID) error {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	i := x.lookup(id)
	if i < 0 || x.reg.state(i) == regTerminated {
		return nil
	}
	d, err := x.destPinned(id)
	if err != nil {
		return err
	}
	defer x.unpin(d)
	return x.terminate(ctx, d)
}

// terminate terminates the mailbox of d; the caller holds a pin or a box
// of d.
func (x *SHM) terminate(ctx context.Context, d *dest) error {
	if err := x.reg.lock(); err != nil {
		return err
	}
	if x.reg.incarnation(d.index) != d.inc {
		// d maps the ring of an earlier incarnation, terminated before
		// the mailbox was reopened: the current one is not ours to end.
		x.reg.unlock()
		return nil
	}
	d.r.Close()
	atomic.StoreUint32(x.reg.stateWord(d.index), regTerminated)
	atomic.AddUint64(x.reg.gen, 1)
	x.reg.unlock()
	x.sweep(ctx, d)
	return nil
}

// terminateDead terminates the mailbox of a dead owner.
func (x *SHM) terminateDead(d *dest) {
	if x.reg.state(d.index) == regTerminated {
		return
	}
	x.opts.log.Info("shmex: owner of mailbox died; terminating it", "exchange", x.name, "mailbox", d.id)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	x.terminate(ctx, d)
}

// sweep answers the requests queued in d's closed ring, if no live receiver
// is attached to it (that one answers them as it reads).
func (x *SHM) sweep(ctx context.Context, d *dest) {
	c, err := d.r.NewConsumer(x.life.id(), ring.Park)
	if err != nil {
		return
	}
	defer c.Close()
	var m Message
	var stuck map[UUID]bool // requesters whose full mailbox refused an answer
	c.Sweep(func(typ int32, p []byte) bool {
		if !Kind(typ).IsRequest() {
			return false
		}
		if m.Decode(p) != nil || stuck[m.Src.UUID] {
			return true
		}
		if err := x.answerTerminated(ctx, d.id, &m); err != nil && !errors.Is(err, ErrBadEntityID) && !errors.Is(err, ErrMailboxClosed) {
			// Waiting again for the same full mailbox would make a
			// terminate of n queued requests take n steps.
			if stuck == nil {
				stuck = make(map[UUID]bool)
			}
			stuck[m.Src.UUID] = true
			x.opts.log.Warn("shmex: could not answer the requests of a sender to a terminated mailbox", "exchange", x.name, "mailbox", d.id, "sender", m.Src, "err", err)
		}
		return true
	})
}

// answerTerminated answers the request m, found queued in the terminated
// mailbox of id, with an error response, waiting a short while for space in
// the sender's mailbox.
func (x *SHM) answerTerminated(ctx context.Context, id EntityID, m *Message) error {
	m.SetErrorResponse(m, &RemoteError{Kind: ErrorKindMailboxTerminated, Message: "mailbox " + id.String() + " was terminated"})
	step, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	return x.send(step, m, true)
}

// Mailbox implements [Exchange.Mailbox]. A mailbox has one receiver at a
// time across all processes ([ErrMailboxBusy]); the process that opens it
// becomes its owner, whose death terminates it.
func (x *SHM) Mailbox(ctx context.Context, id EntityID) (Mailbox, error) {
	if err := x.enter(); err != nil {
		return nil, err
	}
	defer x.leave()
	d, err := x.destPinned(id) // for the life of the client
	if errors.Is(err, ErrMailboxClosed) {
		return closedMailbox{id}, nil // terminated, and its ring collected
	}
	if err != nil {
		return nil, err
	}
	c, err := d.r.NewConsumer(x.life.id(), x.opts.idle)
	if err != nil {
		x.unpin(d)
		if errors.Is(err, ring.ErrBusy) {
			return nil, fmt.Errorf("%w: %v", ErrMailboxBusy, id)
		}
		return nil, err
	}
	if x.reg.state(d.index) == regActive && x.reg.owner(d.index) != x.life.id() {
		if err := x.reg.lock(); err != nil {
			c.Close()
			x.unpin(d)
			return nil, err
		}
		atomic.StoreUint64(x.reg.ownerWord(d.index), x.life.id())
		atomic.AddUint64(x.reg.gen, 1)
		x.reg.unlock()
	}
	mb := &shmMailbox{x: x, d: d, c: c}
	x.mbMu.Lock()
	if x.mboxes == nil { // Close took the clients already
		x.mbMu.Unlock()
		c.Close()
		x.unpin(d)
		return nil, ErrExchangeClosed
	}
	x.mboxes[mb] = struct{}{}
	x.mbMu.Unlock()
	return mb, nil
}

// Close implements [Exchange.Close]: it closes this handle's mailbox
// clients (waking their receivers), releases its producers and unmaps its
// segments. Mailboxes stay; when the last handle of this process on the
// exchange closes, the process stops being alive to the others, so the
// mailboxes it still owns are seen as terminated.
func (x *SHM) Close() error {
	if x.closing.Swap(true) {
		return nil
	}
	// The mailbox clients: closed and their receivers woken. No client is
	// added afterwards (Mailbox looks at mboxes under mbMu); one closed
	// meanwhile by its own Close finds mboxes nil and detaches its
	// receiver under its mu, as this Close does below.
	x.mbMu.Lock()
	mboxes := x.mboxes
	x.mboxes = nil
	for mb := range mboxes {
		mb.closed.Store(true)
		mb.c.Interrupt()
	}
	x.mbMu.Unlock()
	// No entered operation is in progress once mu is held, and none can
	// start (enter fails without blocking).
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	// A receive holds its client's mu while it touches the ring and the
	// registry: wait for those in progress (interrupted above).
	for mb := range mboxes {
		mb.mu.Lock()
		mb.c.Close()
		mb.mu.Unlock()
	}
	// A send holds a producer box while it touches a ring and the
	// registry: close every box, waiting for those held.
	x.dests.Range(func(_, v any) bool {
		v.(*dest).closeBoxes()
		return true
	})
	x.destMu.Lock()
	for _, d := range x.retired {
		d.closeBoxes()
	}
	x.destMu.Unlock()
	unmap := func(d *dest) {
		for i := range d.boxes {
			if p := d.boxes[i].p; p != nil {
				p.Close()
			}
		}
		d.seg.Close()
	}
	x.dests.Range(func(_, v any) bool {
		unmap(v.(*dest))
		return true
	})
	x.destMu.Lock()
	for _, d := range x.retired {
		unmap(d)
	}
	x.retired = nil
	x.destMu.Unlock()
	x.reg.close()
	x.life.release()
	return nil
}

// shmMailbox is a receiving client of one mailbox.
type shmMailbox struct {
	x      *SHM
	d      *dest
	c      *ring.Consumer
	mu     sync.Mutex // one Recv at a time
	closed atomic.Bool
	answer Message // scratch for answering requests after a terminate
}

func (mb *shmMailbox) ID() EntityID { return mb.d.id }

// Recv implements [Mailbox.Recv]: it decodes the next message straight out
// of the ring into m, then releases its space. A ring whose shared state
// was damaged (by a faulty or hostile process) terminates the mailbox:
// Recv returns [ErrMailboxClosed], wrapping [ring.ErrCorrupt].
func (mb *shmMailbox) Recv(ctx context.Context, m *Message) error {
	x := mb.x
	// mu, not enter, keeps the ring and the registry mapped: Close of the
	// handle waits for it (see Close).
	mb.mu.Lock()
	defer mb.mu.Unlock()
	// Looked at under mu: a Recv that waited for a Close to finish must
	// not touch the ring, which may be unmapped by now.
	if mb.closed.Load() {
		return ErrMailboxClosed
	}
	for {
		got := false
		var derr error
		_, err := mb.c.Receive(ctx, func(typ int32, p []byte) {
			if Kind(typ).IsRequest() && mb.terminated() {
				if mb.answer.Decode(p) == nil {
					x.answerTerminated(ctx, mb.d.id, &mb.answer)
				}
				return
			}
			got = true
			derr = m.Decode(p)
		}, 1)
		if got {
			return derr
		}
		switch {
		case err == nil:
			continue // a request was answered: look for the next message
		case errors.Is(err, ring.ErrClosed), errors.Is(err, ring.ErrInterrupted):
			return ErrMailboxClosed
		case errors.Is(err, ring.ErrCorrupt):
			// Nothing can be read from a damaged ring, now or later: not
			// ErrBadMessage, which a receive loop skips (it would spin).
			// Terminate the mailbox so that its senders and callers are
			// not left waiting; a supervisor may Reopen it, on a new ring.
			if x.reg.state(mb.d.index) != regTerminated && x.enter() == nil {
				x.opts.log.Error("shmex: mailbox ring corrupt; terminating the mailbox", "exchange", x.name, "mailbox", mb.d.id, "err", err)
				x.terminate(ctx, mb.d)
				x.leave()
			}
			return fmt.Errorf("%w: mailbox %v: %w", ErrMailboxClosed, mb.d.id, err)
		}
		return err
	}
}

// terminated reports whether the mailbox was terminated (or reopened on a
// new ring). It reads the registry entry, a line that changes only when
// the mailbox does, rather than the ring's closed bit, which lives in the
// tail word that every send writes: loading it per request would cost a
// cache-line transfer per message. terminate closes the ring before it
// marks the entry, so a request read in between is delivered, as one read
// just before the close would be.
func (mb *shmMailbox) terminated() bool {
	reg, d := mb.x.reg, mb.d
	return reg.state(d.index) == regTerminated || reg.incarnation(d.index) != d.inc
}

// Close implements [Mailbox.Close]: it detaches this receiver; the mailbox
// stays.
func (mb *shmMailbox) Close() error {
	if mb.closed.Swap(true) {
		return nil
	}
	x := mb.x
	// The interrupt rings the doorbell in the ring: only while entered,
	// so that a concurrent Close of the handle cannot unmap the ring (nor
	// detach the consumer) under it. A handle that is closing interrupts
	// its receivers itself. (The client's pin keeps every other unmap
	// away.)
	if x.enter() == nil {
		mb.c.Interrupt()
		x.leave()
	}
	mb.mu.Lock() // wait for a Recv in progress
	x.mbMu.Lock()
	live := x.mboxes != nil // else the handle's Close has taken the client
	if live {
		// Under mbMu: the handle's Close, which takes its clients under
		// mbMu, will not know this one, so it must be detached before
		// that Close can unmap the ring.
		delete(x.mboxes, mb)
		mb.c.Close()
	}
	x.mbMu.Unlock()
	if !live {
		// The handle's Close has taken this client: it detaches it under
		// mu before it unmaps, so the ring is mapped while mu is held
		// here. Detached here too, so that the mailbox has no receiver
		// once this Close returns (a no-op if that Close came first).
		mb.c.Close()
	}
	mb.mu.Unlock()
	// The client's pin goes last, holding no lock: releasing a retired
	// ring enters the handle.
	if live && mb.d.pins.Add(-1) == 0 && mb.d.dead.Load() && x.enter() == nil {
		x.reclaim()
		x.leave()
	}
	return nil
}

// processLife is this process's liveness lock in one exchange directory,
// shared by every handle of the process on that exchange.
type processLife struct {
	dir  string
	l    *shm.Life
	refs int
}

var (
	livesMu sync.Mutex
	lives   = map[string]*processLife{}
)

func acquireLife(dir string) (*processLife, error) {
	livesMu.Lock()
	defer livesMu.Unlock()
	if pl := lives[dir]; pl != nil {
		pl.refs++
		return pl, nil
	}
	l, err := shm.HoldLife(dir)
	if err != nil {
		return nil, err
	}
	pl := &processLife{dir: dir, l: l, refs: 1}
	lives[dir] = pl
	return pl, nil
}

func (pl *processLife) id() uint64 { return pl.l.ID() }

func (pl *processLife) release() {
	livesMu.Lock()
	defer livesMu.Unlock()
	if pl.refs--; pl.refs == 0 {
		pl.l.Close()
		delete(lives, pl.dir)
	}
}

// closedMailbox is the client of a terminated mailbox whose ring was
// collected: there is nothing left to drain.
type closedMailbox struct{ id EntityID }

func (c closedMailbox) ID() EntityID                         { return c.id }
func (c closedMailbox) Recv(context.Context, *Message) error { return ErrMailboxClosed }
func (c closedMailbox) Close() error                         { return nil }

// ownerCheckDue reports whether the owner of d is due for a liveness check,
// and if so takes the turn (one caller per interval).
func (d *dest) ownerCheckDue() bool {
	now, last := time.Now().UnixNano(), d.lastCheck.Load()
	return now-last > int64(ownerCheckInterval) && d.lastCheck.CompareAndSwap(last, now)
}

// Reopen brings back the terminated mailbox of id under the same id, empty,
// with this process as its owner, for a supervisor that restarts an agent
// (Academy's restarts keep the agent's id). Senders that mapped the old
// mailbox move to the new one at their next send. It is a no-op when the
// mailbox is active and owned by this process; it fails with
// [ErrMailboxBusy] when it is active under a live owner, or when a live
// receiver stays attached to the terminated one (it drains it) for a
// second, and with [ErrBadEntityID] when id is not registered. Messages still queued in
// the terminated mailbox are dropped (its requests were answered when it
// was terminated).
func (x *SHM) Reopen(ctx context.Context, id EntityID) error {
	if err := x.enter(); err != nil {
		return err
	}
	defer x.leave()
	i := x.lookup(id)
	if i < 0 {
		return fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	e, err := x.reg.decode(i)
	if err != nil {
		return err
	}
	if x.status(i, id) == StatusActive { // marks a dead owner's mailbox terminated
		if x.reg.owner(i) == x.life.id() {
			return nil
		}
		return fmt.Errorf("%w: %v is active", ErrMailboxBusy, id)
	}
	// A receiver still attached to the old ring is most often on its way
	// out: a sweep (by any process) answering the requests queued when
	// the mailbox was terminated, or a receiver about to find it closed.
	// Give it a moment, outside the registry's lock.
	for wait := time.Now().Add(reopenBusyWait); x.ringHasReceiver(ringPath(x.dir, id.UUID, x.reg.incarnation(i))); {
		if time.Now().After(wait) || ctx.Err() != nil {
			break // the check under the lock reports it
		}
		time.Sleep(time.Millisecond)
	}
	if err := x.reg.lock(); err != nil {
		return err
	}
	defer x.reg.unlock()
	if x.reg.state(i) != regTerminated {
		return fmt.Errorf("%w: %v was reopened meanwhile", ErrMailboxBusy, id)
	}
	inc := x.reg.incarnation(i)
	old := ringPath(x.dir, id.UUID, inc)
	if x.ringHasReceiver(old) {
		return fmt.Errorf("%w: %v is still drained by a live receiver", ErrMailboxBusy, id)
	}
	if err := createRing(ringPath(x.dir, id.UUID, inc+1), e.ringCap, e.maxRecord); err != nil {
		return fmt.Errorf("exchange: reopening %v: %w", id, err)
	}
	atomic.StoreUint64(x.reg.ownerWord(i), x.life.id())
	atomic.StoreUint32(x.reg.incWord(i), inc+1)
	atomic.StoreUint32(x.reg.stateWord(i), regActive)
	atomic.AddUint64(x.reg.gen, 1)
	shm.Remove(old) // mappings of it stay valid; new ones go to the new ring
	x.reap(id.UUID) // this handle's own mapping of it
	return nil
}

// reopenBusyWait bounds how long Reopen waits for a receiver of the old
// ring to go.
const reopenBusyWait = time.Second

// ringHasReceiver reports whether the ring segment at path has a live
// receiver (consumer) attached.
func (x *SHM) ringHasReceiver(path string) bool {
	seg, c, err := x.probeRing(path)
	if err == nil {
		c.Close()
		seg.Close()
	}
	return errors.Is(err, ring.ErrBusy)
}

// errDamagedRing tells probeRing's caller that the segment at the path does
// not hold a valid ring: nobody can drain it.
var errDamagedRing = errors.New("exchange: damaged ring segment")

// probeRing maps the ring segment at path and attaches a consumer of this
// process to it, which succeeds only when no live receiver is attached
// (else ring.ErrBusy). The caller closes c, then seg. A segment or ring
// that does not validate is errDamagedRing (wrapping the reason); a
// missing one is shm.ErrNotExist.
func (x *SHM) probeRing(path string) (*shm.Segment, *ring.Consumer, error) {
	seg, err := shm.Open(path, shm.KindRing)
	if errors.Is(err, shm.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
		return nil, nil, shm.ErrNotExist
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errDamagedRing, err)
	}
	r, err := ring.Attach(seg.Body(), ring.Options{Alive: x.alive})
	if err != nil {
		seg.Close()
		return nil, nil, fmt.Errorf("%w: %w", errDamagedRing, err)
	}
	c, err := r.NewConsumer(x.life.id(), ring.Park)
	if err != nil {
		seg.Close()
		return nil, nil, err
	}
	return seg, c, nil
}

// Incarnation implements [Reopener]: how many times the mailbox of id was
// reopened ([ErrBadEntityID] when it is not registered).
func (x *SHM) Incarnation(ctx context.Context, id EntityID) (uint32, error) {
	if err := x.enter(); err != nil {
		return 0, err
	}
	defer x.leave()
	if v, ok := x.dests.Load(id.UUID); ok && v.(*dest).id == id {
		return x.reg.incarnation(v.(*dest).index), nil
	}
	i := x.lookup(id)
	if i < 0 {
		return 0, fmt.Errorf("%w: %v", ErrBadEntityID, id)
	}
	return x.reg.incarnation(i), nil
}
