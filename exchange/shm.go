package exchange

import (
	"context"
	"fmt"
	"log/slog"
	"math/bits"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmex/shmex/internal/quietlog"
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

// WithIdle sets how the receivers of this handle's mailbox clients wait
// for messages, unless a client is given its own ([WithMailboxIdle]):
// [IdleBackoff] (the default, [DefaultIdle]: spin, yield, then sleep,
// adapting to where the sender runs), [IdleSpin] (lowest latency when the
// sender has a CPU of its own, a core busy), [IdlePark] (no CPU while
// idle) or [IdleSpinThenPark](n). [ParseIdleStrategy] reads one from text.
func WithIdle(s IdleStrategy) Option { return func(o *shmOptions) { o.idle = s } }

// WithRegistryCapacity sets how many mailboxes the exchange holds at once;
// it applies when this handle creates the exchange. Default
// DefaultRegistryCapacity. The slots of terminated mailboxes are reused
// when no free slot is left (see SHM.Status), so only active mailboxes
// fill the registry.
func WithRegistryCapacity(n int) Option { return func(o *shmOptions) { o.registryCap = n } }

// WithLogger sets the logger. The exchange logs at debug level the
// routine events of recovery (the owner of a mailbox found dead and its
// mailbox terminated), at warn level what a program should hear about
// (damaged registry entries or rings, requests to a terminated mailbox
// left unanswered, responses dropped), and at error level faults on
// shared memory. By default (nil) only the warnings and errors reach
// [slog.Default]; pass a logger to see the rest.
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
	mu           sync.RWMutex
	closeStarted atomic.Bool // Close was called
	closing      atomic.Bool // Close is past its clean-up: enter fails
	closed       bool
	broken       atomic.Bool // the registry faulted: enter fails (see registryFaulted)

	// The mappings of destination rings: see "Mapping lifecycle" at dest
	// for who may use a mapping and when it is unmapped.
	dests    sync.Map             // UUID -> *dest; changed only under destMu
	last     atomic.Pointer[dest] // the dest found last: most sends go where the previous one went
	destMu   sync.Mutex
	retired  []*dest       // unlinked mappings not yet unmapped (a user may hold them); under destMu
	nretired atomic.Int32  // len(retired), read without destMu
	seenGen  atomic.Uint64 // registry generation when the stale mappings were last retired

	mbMu   sync.Mutex
	mboxes map[*shmMailbox]struct{}
}

var (
	_ Exchange          = (*SHM)(nil)
	_ Reopener          = (*SHM)(nil)
	_ IncarnationSender = (*SHM)(nil)
)

// Open creates the exchange called name (letters, digits, '-', '_', '.'),
// or joins it if it exists, under the root directory (WithRoot): its
// registry segment, one ring segment per mailbox and the liveness lock files
// of its processes live in <root>/<name>/.
func Open(name string, opts ...Option) (*SHM, error) {
	o := shmOptions{mailboxBytes: DefaultMailboxBytes, idle: DefaultIdle, registryCap: DefaultRegistryCapacity}
	for _, opt := range opts {
		opt(&o)
	}
	if o.root == "" {
		o.root = shm.DefaultRoot()
	}
	o.log = quietlog.Or(o.log)
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
	var reg *registry
	if shm.TolerateFault(func() { reg, err = openRegistry(dir, o.registryCap) }) {
		err = fmt.Errorf("%w: the registry faulted as it was opened (truncated by another process?)", ErrCorruptRegistry)
	}
	if err != nil {
		if life.leave() {
			life.end()
		}
		return nil, err
	}
	return &SHM{name: name, dir: dir, opts: o, life: life, reg: reg, mboxes: map[*shmMailbox]struct{}{}}, nil
}

// Dir returns the exchange's directory.
func (x *SHM) Dir() string { return x.dir }

// Name returns the exchange's name.
func (x *SHM) Name() string { return x.name }

// hold is enter for a step that needs the mappings and not the registry's
// contents (it works on a handle whose registry faulted).
func (x *SHM) hold() error {
	if x.closing.Load() || !x.mu.TryRLock() {
		return ErrExchangeClosed
	}
	if x.closed {
		x.mu.RUnlock()
		return ErrExchangeClosed
	}
	return nil
}

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
	if x.broken.Load() {
		x.mu.RUnlock()
		return errBroken
	}
	return nil
}

// errBroken is what the calls on a handle whose registry faulted return.
var errBroken = fmt.Errorf("%w: the registry faulted (truncated by another process?)", ErrCorruptRegistry)

func (x *SHM) leave() { x.mu.RUnlock() }

// Close implements [Exchange.Close]: it closes this handle's mailbox
// clients (waking their receivers), releases its producers and unmaps its
// segments. Mailboxes stay while the process lives.
//
// When the last handle of this process on the exchange closes, the process
// stops being alive to the others: the mailboxes it owns would be found
// terminated at the others' next look. Close cleans up after it at once,
// so that a process that exits cleanly leaves nothing behind for
// [SHM.Collect]:
//   - every active mailbox this process owns (it received from it last, or
//     registered it and no other process took it as receiver) is
//     terminated: its queued requests are answered, and its ring removed;
//   - the ring of every terminated mailbox that this process registered
//     or owns is removed, unless another live process owns it or a live
//     receiver still drains it.
//
// A mailbox registered by this process but received by another live
// process is that process's: it survives, and so do the mailboxes of
// other processes. The registry entries stay ([StatusTerminated]) until
// new registrations need their slots.
func (x *SHM) Close() error {
	if x.closeStarted.Swap(true) {
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
		if shm.TolerateFault(mb.c.Interrupt) {
			mb.d.faulted.Store(true)
		}
	}
	x.mbMu.Unlock()
	last := x.life.leave()
	if last {
		// The receivers are detached first, so that the terminations
		// below answer what is queued for them; under mu, which a
		// client's Close holds to interrupt its receiver.
		x.mu.Lock()
		detach(mboxes)
		x.mu.Unlock()
		if err := x.releaseOwned(); err != nil {
			x.opts.log.Error("shmex: cleaning up after the process failed", "exchange", x.name, "err", err)
		}
	}
	x.closing.Store(true)
	// No entered operation is in progress once mu is held, and none can
	// start (enter fails without blocking).
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	// A receive holds its client's mu while it touches the ring and the
	// registry: wait for those in progress (interrupted above).
	detach(mboxes)
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
	x.dests.Range(func(_, v any) bool {
		v.(*dest).unmap()
		return true
	})
	x.destMu.Lock()
	for _, d := range x.retired {
		d.unmap()
	}
	x.retired = nil
	x.destMu.Unlock()
	x.reg.close()
	if last {
		x.life.end()
	}
	return nil
}

// detach detaches the receivers of the mailbox clients that Close took,
// waiting for each Recv in progress (interrupted): a receive holds its
// client's mu while it touches the ring and the registry. Detaching twice
// is a no-op.
func detach(mboxes map[*shmMailbox]struct{}) {
	for mb := range mboxes {
		if mb.lockUnlessStuck() {
			mb.detach()
			mb.mu.Unlock()
		}
	}
}

// releaseOwned cleans up after this process, whose last handle on the
// exchange is closing (see Close): it terminates the active mailboxes the
// process owns and removes the rings of the terminated mailboxes it
// registered or owns that nobody else can use any more.
func (x *SHM) releaseOwned() (err error) {
	if x.enter() != nil {
		return nil
	}
	defer x.leave()
	defer x.catch(&err, debug.SetPanicOnFault(true))
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	me := x.life.id()
	n := x.reg.published()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		s := x.reg.stamp(i)
		if s.state() != regActive || x.reg.owner(i) != me {
			continue
		}
		id := EntityID{UUID: x.reg.uuidAt(i), Role: x.reg.roleAt(i)}
		if !x.reg.current(i, s) {
			continue
		}
		if d, err := x.destPinned(id); err == nil {
			x.terminate(ctx, d)
			x.unpin(d)
		}
	}
	removable := func(owner uint64) bool { return owner == me || !x.alive(owner) }
	for i := 0; i < n && ctx.Err() == nil; i++ {
		s := x.reg.stamp(i)
		if s.state() != regTerminated || x.reg.owner(i) != me && x.reg.creator(i) != me {
			continue
		}
		id := EntityID{UUID: x.reg.uuidAt(i), Role: x.reg.roleAt(i)}
		if x.reg.current(i, s) {
			x.collectRing(i, s, id, removable)
		}
	}
	x.reapAll()
	return nil
}

// releaseTimeout bounds the clean-up of a process's last Close (answering
// the requests queued in its mailboxes waits a little for each full
// requester's mailbox).
const releaseTimeout = 10 * time.Second
