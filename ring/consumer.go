package ring

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmex/shmex/shm"
)

// Handler receives one record: its type and its payload. The payload aliases
// the ring and is valid only until the handler returns; copy what you keep.
type Handler func(typ int32, payload []byte)

// Consumer reads the records of a ring. A ring has at most one consumer at a
// time (across all processes); it is not safe for concurrent use.
//
// Consumer invariants:
//   - The consumer reads at its own position (head below), stores it in
//     the shared consumed word after every batch (where a successor
//     starts), and publishes the shared head (pub) behind it: it zeroes
//     what it consumed and only then publishes that space to the producers. Producers claim only inside
//     [pub, pub+capacity), so every claim lies there, and everything in
//     [head, pub+capacity) that no claim covers is zero. A header word at the
//     consumer's position is thus zero (not yet claimed, or claimed an
//     instant ago), negative (claimed) or positive (committed), never stale;
//     and a batch never reads at or past pub+capacity, where the memory is
//     consumed but not yet zeroed.
//   - Zeroing is the one cost of consuming that the consumer's next send
//     would wait for (its next fence drains the zeroing stores, each of
//     which must take a line back from the producer's core), so the consumer
//     publishes when it is idle: a Read that finds nothing publishes what
//     was consumed, and so does Receive before it spins or sleeps. A busy
//     consumer publishes once it holds back 1/publishLag of the ring, and
//     at its next Read when a producer waits for space. The space held
//     back after a Read is thus below a quarter of the ring, and a record
//     (at most half of it) fits in an empty ring unless it wraps (padding
//     up to the end of the data area, then the record, may need more than
//     three quarters): then it waits for the consumer's next Read.
//   - The head only moves over committed records and padding, so nothing
//     committed is skipped, and a record is delivered at most once.
//   - A stuck record (head < tail, header not positive) is turned into
//     padding only when its producer is known dead, or after
//     UnknownOwnerTimeout when its producer cannot be known.
type Consumer struct {
	r     *Ring
	owner uint64
	idle  IdleStrategy
	head  uint64 // position of the next record to read
	pub   uint64 // == *r.head: released to producers; head-pub < capacity
	err   error  // sticky: set when the ring is found corrupt

	stuckPos   uint64
	stuckSince time.Time

	burst       int           // records handed over by the last Receive
	spins       int           // adaptive spin budget of an IdleStrategy with Yields (idle.go)
	goschedMin  time.Duration // shortest runtime.Gosched of this consumer's yields, 0 before the first
	sink        byte          // what fetchLines loaded, kept so that the loads stay
	interrupted atomic.Bool
	cancel      shm.CancelRinger // rings recvBell when Receive's context is done
}

// Interrupt makes a Receive that is waiting, or the next one, return
// ErrInterrupted. It is the one Consumer method that is safe to call from
// another goroutine, though not concurrently with Close (nor with the unmap
// of the ring); ClearInterrupt re-arms the consumer.
func (c *Consumer) Interrupt() {
	c.interrupted.Store(true)
	if r := c.r; r != nil {
		r.recvBell.Ring(1 << 30)
	}
}

// ClearInterrupt clears a pending Interrupt.
func (c *Consumer) ClearInterrupt() { c.interrupted.Store(false) }

// NewConsumer attaches the ring's consumer for the process whose liveness id
// is owner (non-zero). It fails with ErrBusy when the ring has a consumer,
// unless Options.Alive reports that consumer's process dead: then the new
// consumer takes over after the last batch the dead one finished reading,
// published or not (the consumed word). (Records of the batch it was
// reading when it died are delivered again; a batch it was zeroing when it
// died may leave zeroed records that recovery pads after
// UnknownOwnerTimeout.)
func (r *Ring) NewConsumer(owner uint64, idle IdleStrategy) (*Consumer, error) {
	if owner == 0 {
		return nil, ErrBadOwner
	}
	for {
		old := atomic.LoadUint64(r.consumer)
		if old != 0 {
			if alive, known := r.aliveKnown(old); alive || !known {
				return nil, ErrBusy
			}
		}
		if atomic.CompareAndSwapUint64(r.consumer, old, owner) {
			break
		}
	}
	// Start after what the last consumer read, even what it had not
	// published yet; a consumed word that cannot be right (a damaged
	// header) falls back to the head: records may then come again, but
	// nothing is skipped.
	head := atomic.LoadUint64(r.head)
	from := atomic.LoadUint64(r.consumed)
	tail := atomic.LoadUint64(r.tail) &^ closedBit
	if from < head || from > tail || from-head >= r.capacity || from%RecordAlign != 0 {
		from = head
		// Repair the word now: left as it was, a damaged value past the
		// tail would become plausible once the tail passes it, and a
		// successor of this consumer (dead before its first batch) would
		// start there, in the middle of the records.
		shm.StoreRelease(r.consumed, from)
	}
	return &Consumer{r: r, owner: owner, idle: idle, head: from, pub: head, spins: idle.Spins}, nil
}

// Position returns the position of the next record this consumer reads; it
// equals Stats().Tail when everything claimed so far has been read. (Stats().Head
// is the position published to producers, which may lag behind it.)
func (c *Consumer) Position() uint64 { return c.head }

// Idle returns the idle strategy Receive waits with (NewConsumer's).
func (c *Consumer) Idle() IdleStrategy { return c.idle }

// Close publishes everything consumed and detaches the consumer; another
// may attach afterwards.
func (c *Consumer) Close() error {
	c.cancel.Disarm()
	if c.r != nil {
		c.publish(c.head)
		atomic.CompareAndSwapUint64(c.r.consumer, c.owner, 0)
		c.r = nil
	}
	return nil
}

// Read hands up to limit committed records (all of them when limit <= 0) to
// fn, in order, then marks them consumed; their space goes back to the
// producers when the consumer is idle, holds back a quarter of the ring or
// sees a producer waiting (see the invariants on Consumer), so a consumer
// that stops calling Read may keep that much from the producers. It
// returns how many it handed over; it never blocks. A ring found corrupt
// returns ErrCorrupt, now and on every later call.
func (c *Consumer) Read(fn Handler, limit int) (int, error) {
	n, idle, err := c.read(func(typ int32, payload []byte) bool { fn(typ, payload); return true }, limit)
	if idle && c.pub != c.head {
		c.publish(c.head) // idle: hand back what was consumed
	}
	return n, err
}

// read is Read and ReadWhile: it hands committed records to fn, in order,
// until fn returns false, limit records were handed over (none when limit
// <= 0) or none is left, and marks what it read consumed. idle says that
// it found nothing to read at all (not even padding).
func (c *Consumer) read(fn func(typ int32, payload []byte) bool, limit int) (n int, idle bool, err error) {
	if c.err != nil {
		return 0, false, c.err
	}
	if c.r == nil {
		return 0, false, ErrClosed
	}
	if limit <= 0 {
		limit = math.MaxInt
	}
	r := c.r
	head := c.head
	pos := head
	bytes := 0
	more := true
	// Every claim lies in [pub, pub+capacity): past that a batch would
	// meet records consumed but not yet zeroed.
	for more && n < limit && pos < c.pub+r.capacity {
		typ, payload, size, ok := c.committed(pos)
		if !ok {
			break
		}
		if typ != PaddingType {
			c.sink = fetchLines(payload)
			more = fn(typ, payload)
			n++
			bytes += len(payload)
		}
		pos += size
	}
	if pos != head {
		c.advance(pos, n, bytes)
	}
	if n == 0 && c.err != nil {
		return 0, false, c.err
	}
	return n, pos == head, nil
}

// advance ends a batch that handed n records (bytes of payload) over and
// read up to pos, past the consumer's position: it counts them and marks
// them consumed.
func (c *Consumer) advance(pos uint64, n, bytes int) {
	r := c.r
	if counting && n > 0 { // on the line of the consumed word, stored below
		bump(&r.cc.received, uint64(n))
		bump(&r.cc.receivedBytes, uint64(bytes))
	}
	if atomic.LoadUint32(r.spaceWaiters) != 0 {
		c.head = pos
		shm.StoreRelease(r.consumed, pos)
		c.publish(pos) // a producer waits for space
		return
	}
	c.release(pos)
}

// committed returns the record committed at pos: its type, its payload and
// its aligned size. ok is false when the header at pos is not committed yet
// (zero or negative), and when it is impossible: then c.err is set, and no
// length from it has been used to address the data area.
func (c *Consumer) committed(pos uint64) (typ int32, payload []byte, size uint64, ok bool) {
	r := c.r
	idx := pos & r.mask
	h := atomic.LoadUint64(r.header(idx))
	length := int32(uint32(h))
	if length <= 0 {
		return 0, nil, 0, false
	}
	typ = int32(h >> 32)
	size = (uint64(length) + RecordAlign - 1) &^ (RecordAlign - 1)
	if length < HeaderLen || idx+size > r.capacity ||
		typ != PaddingType && (typ < 0 || int(length) > r.maxRecord) {
		c.err = fmt.Errorf("%w: record at %d has length %d, type %d", ErrCorrupt, pos, length, typ)
		return 0, nil, 0, false
	}
	return typ, r.data[idx+HeaderLen : idx+uint64(length)], size, true
}

// fetchLines loads one byte of each cache line of the first fetchLimit
// bytes of a record, in loads that do not depend on one another, so that
// the core fetches those lines from the producer's core in parallel. A
// handler that parses the record (each length found in the bytes before the
// next field) would otherwise miss on one line after the other. Past
// fetchLimit, the hardware prefetcher follows a sequential reader.
func fetchLines(p []byte) byte {
	n := min(len(p), fetchLimit)
	if n == 0 {
		return 0
	}
	var x byte
	// The first byte of each line after the header's (which the consumer
	// has just read); the header is the HeaderLen bytes before p.
	h := uintptr(unsafe.Pointer(&p[0])) - HeaderLen
	for i := int((h | 63) + 1 - uintptr(unsafe.Pointer(&p[0]))); i < n; i += 64 {
		x |= p[i]
	}
	return x
}

// fetchLimit bounds fetchLines and prefetchClaim.
const fetchLimit = 1024

// release records that everything before to is consumed. It publishes it
// only when the consumer holds back a quarter of the ring; otherwise the
// next idle Read or Receive does (see the invariants on Consumer).
func (c *Consumer) release(to uint64) {
	c.head = to
	shm.StoreRelease(c.r.consumed, to) // on the consumer's own line: no transfer
	if to-c.pub >= c.r.capacity/publishLag {
		c.publish(to)
	}
}

// publishLag: a busy consumer publishes once it holds back 1/publishLag
// of the ring.
const publishLag = 4

// publish zeroes [pub, to) and hands it back to the producers.
func (c *Consumer) publish(to uint64) {
	r := c.r
	if to <= c.pub {
		return
	}
	i, j := c.pub&r.mask, to&r.mask
	if i < j {
		clear(r.data[i:j])
	} else {
		clear(r.data[i:])
		clear(r.data[:j])
	}
	atomic.StoreUint64(r.head, to)
	c.pub = to
	// Wake waiting producers once the head reaches their low-water mark
	// (see Producer.waitSpace).
	if atomic.LoadUint32(r.spaceWaiters) != 0 && to >= atomic.LoadUint64(r.spaceWanted) {
		bump(&r.cc.spaceWakeups, 1)
		r.spaceBell.Ring(1 << 30)
	}
}

// Receive is Read that blocks until at least one record was handed to fn,
// following the consumer's idle strategy. It returns ErrClosed once the ring
// is closed and everything committed before the close was read, and ctx's
// error when ctx is done first. A record left stuck by a dead producer is
// recovered while Receive waits, so Receive never waits on a dead producer
// for longer than StuckAfter plus the time Alive takes (UnknownOwnerTimeout
// when the owner cannot be known).
func (c *Consumer) Receive(ctx context.Context, fn Handler, limit int) (int, error) {
	r := c.r
	if r == nil {
		return 0, ErrClosed
	}
	// A record waiting is taken before the setup for a wait (whose
	// learning a wait that never waited would not change).
	if n, err := c.Read(fn, limit); n > 0 || err != nil {
		c.burst = n
		return n, err
	}
	var w waitState
	parked := false
	spins := c.spinBudget()
	for i := 0; ; i++ {
		if i > 0 {
			n, err := c.Read(fn, limit)
			if n > 0 || err != nil {
				c.burst = n
				if n > 0 {
					c.learn(&w, parked)
				}
				return n, err
			}
		}
		if i == 0 && c.burst >= BurstSize && !c.idle.NoBurstBackoff {
			for range burstRelaxes {
				cpuRelax()
			}
			continue
		}
		if spins < 0 || i < spins {
			cpuRelax()
			if i&255 == 255 {
				if err := c.idleChecks(ctx); err != nil {
					return 0, err
				}
				c.recover()
				c.spinPause(&w)
			}
			continue
		}
		if w.yields < c.idle.Yields {
			if w.yields&7 == 0 {
				if err := c.idleChecks(ctx); err != nil {
					return 0, err
				}
				c.recover()
			}
			c.yield(&w)
			continue
		}
		closed, drained := c.state()
		if c.err != nil {
			return 0, c.err
		}
		if drained {
			if closed {
				return 0, ErrClosed
			}
		} else if c.recover() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if c.interrupted.Load() {
			return 0, ErrInterrupted
		}
		c.publish(c.head) // a sleeping consumer holds back no space
		// Dekker with the producers' wakeConsumer: raise the flag, then
		// look; a producer commits, then looks at the flag.
		seq := r.recvBell.Seq()
		atomic.StoreUint32(r.recvWaiting, 1)
		if c.readable() || r.Closed() != closed || c.interrupted.Load() {
			atomic.StoreUint32(r.recvWaiting, 0)
			continue
		}
		bump(&r.cc.sleeps, 1)
		err := c.cancel.Wait(ctx, r.recvBell, seq, c.parkTimeout(drained))
		atomic.StoreUint32(r.recvWaiting, 0)
		if err != nil && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if drained && errors.Is(err, shm.ErrTimedOut) {
			// Nobody rang for ParkRecheck: look at the ring, then sleep
			// again without spinning (see ParkRecheck).
			parked = true
			continue
		}
		// Spin and yield again after a wake-up.
		i, w, parked, spins = -1, waitState{}, true, c.spinBudget()
	}
}

// idleChecks is what a spinning or yielding Receive looks at now and then:
// its context, an Interrupt, and a closed ring that is drained.
func (c *Consumer) idleChecks(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.interrupted.Load() {
		return ErrInterrupted
	}
	if closed, drained := c.state(); closed && drained {
		return ErrClosed
	}
	return nil
}

// readable reports whether a committed record (or padding) is at the head.
func (c *Consumer) readable() bool {
	return int32(uint32(atomic.LoadUint64(c.r.header(c.head&c.r.mask)))) > 0
}

// state reports whether the ring is closed and whether every claim made so
// far has been consumed. A committed header can only stand below the tail,
// so a head past the tail means forged records were read: the ring is
// corrupt. (The check is here, on the idle path, rather than in release,
// because loading the tail there costs a cache-line transfer per batch.)
func (c *Consumer) state() (closed, drained bool) {
	t := atomic.LoadUint64(c.r.tail)
	if c.head > t&^closedBit && c.err == nil {
		c.err = fmt.Errorf("%w: consumed past the tail (%d > %d)", ErrCorrupt, c.head, t&^closedBit)
	}
	return t&closedBit != 0, c.head == t&^closedBit
}
