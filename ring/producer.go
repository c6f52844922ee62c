package ring

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmex/shmex/shm"
)

// Producer writes records into a ring. It owns one producer slot of the
// ring's header, through which the consumer can tell, should this process
// die, which claimed record was its. A Producer is not safe for concurrent
// use: give each goroutine its own, or guard one with a lock.
//
// The claim protocol (invariants the consumer relies on):
//
//  1. Before trying to claim [T, T+need), the producer publishes its intent
//     (intentLen, then intentPos = T) in its slot.
//  2. It claims by CAS of the tail from T to T+need. The tail never moves
//     past a claim without that CAS, so every position below the tail
//     belongs to exactly one claim, and the claim's owner has published an
//     intent covering it before the claim existed. A producer that loses
//     the CAS withdraws its intent (intentPos = noIntent) before retrying.
//  3. Right after a successful CAS it writes the padding header (committed at
//     once) when the record does not fit before the end of the data area,
//     then the record header with length -L and type = its slot index.
//  4. It writes the payload, then commits by storing the header with length
//     +L and the record's type, in one atomic 64-bit store.
//
// Because of (1) and (2), a record at position H that stays uncommitted is
// always attributable: by the slot named in its negative header, or, in the
// instant between the CAS and step 3 where the header is still zero, by the
// slot whose intent covers H.
type Producer struct {
	r        *Ring
	slot     int
	owner    uint64
	intent   *uint64 // slot's intentPos
	lenWord  *uint64 // slot's intentLen
	lastLen  uint64  // last value stored in lenWord
	headSeen uint64  // cached head: refreshed only when the ring looks full
	ctr      *slotCounters
	full     bool // found the ring full since its last claim: a wait is counted once
}

// NewProducer takes a free producer slot for a producer owned by the process
// whose liveness id is owner (non-zero). When every slot is taken, it reuses
// a slot whose owner Options.Alive reports dead and whose last claim the
// consumer has already passed; otherwise it fails with ErrNoSlot.
func (r *Ring) NewProducer(owner uint64) (*Producer, error) {
	if owner == 0 {
		return nil, ErrBadOwner
	}
	take := func(i int, old uint64) *Producer {
		if !atomic.CompareAndSwapUint64(r.slotWord(i, slotOwner), old, owner) {
			return nil
		}
		p := &Producer{r: r, slot: i, owner: owner,
			intent:  r.slotWord(i, slotIntentPos),
			lenWord: r.slotWord(i, slotIntentLen),
			ctr:     r.slotCounters(i)}
		atomic.StoreUint64(p.intent, noIntent)
		p.lastLen = atomic.LoadUint64(p.lenWord)
		p.headSeen = atomic.LoadUint64(r.head)
		return p
	}
	for i := 0; i < r.slots; i++ {
		if atomic.LoadUint64(r.slotWord(i, slotOwner)) == 0 {
			if p := take(i, 0); p != nil {
				return p, nil
			}
		}
	}
	head := atomic.LoadUint64(r.head)
	for i := 0; i < r.slots; i++ {
		old := atomic.LoadUint64(r.slotWord(i, slotOwner))
		if old == 0 {
			if p := take(i, 0); p != nil {
				return p, nil
			}
			continue
		}
		alive, known := r.aliveKnown(old)
		if !known || alive {
			continue
		}
		pos := atomic.LoadUint64(r.slotWord(i, slotIntentPos))
		n := atomic.LoadUint64(r.slotWord(i, slotIntentLen))
		if pos != noIntent && pos+n > head {
			continue // its last claim may still be stuck ahead of the consumer
		}
		if p := take(i, old); p != nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %d slots", ErrNoSlot, r.slots)
}

// Close releases the producer's slot. A claim still open must be committed
// or aborted first.
func (p *Producer) Close() error {
	if p.r == nil {
		return nil
	}
	atomic.StoreUint64(p.intent, noIntent)
	atomic.CompareAndSwapUint64(p.r.slotWord(p.slot, slotOwner), p.owner, 0)
	p.r = nil
	return nil
}

// Claim is space for one record, claimed but not yet committed. Fill Bytes
// in place, then Commit (or Abort). Until then the consumer cannot read past
// it, so keep the time between Claim and Commit short, and never lose a
// Claim: use defer or an explicit Abort on error paths.
type Claim struct {
	r      *Ring
	ctr    *slotCounters // the producer's
	idx    uint64        // data index of the record header
	length int32         // header + payload
	typ    int32
}

// Bytes returns the record's payload, a slice of shared memory valid until
// Commit or Abort.
func (c Claim) Bytes() []byte {
	return c.r.data[c.idx+HeaderLen : c.idx+uint64(c.length)]
}

// Commit publishes the record to the consumer. The header store is a full
// fence (sync/atomic), which the Dekker handshake with the consumer's waiter
// flag in wakeConsumer needs: commit, then look at the flag.
//
// The record is counted before it is committed (counters.go): a reader of
// the counters never sees it received before it was sent.
func (c Claim) Commit() {
	if counting {
		bump(&c.ctr.sent, 1)
		bump(&c.ctr.sentBytes, uint64(c.length)-HeaderLen)
	}
	atomic.StoreUint64(c.r.header(c.idx), uint64(uint32(c.length))|uint64(uint32(c.typ))<<32)
	c.r.wakeConsumer(c.ctr)
}

// Abort turns the claimed space into padding, which the consumer skips.
func (c Claim) Abort() {
	atomic.StoreUint64(c.r.header(c.idx), uint64(uint32(c.length))|paddingBits)
	c.r.wakeConsumer(c.ctr)
}

// wakeConsumer rings the consumer's doorbell if it sleeps, counting the
// wake-up in the producer's counters ctr. Only the producer that clears
// recvWaiting rings, so a burst of commits costs one system call.
func (r *Ring) wakeConsumer(ctr *slotCounters) {
	if atomic.LoadUint32(r.recvWaiting) != 0 && atomic.CompareAndSwapUint32(r.recvWaiting, 1, 0) {
		bump(&ctr.wakeups, 1)
		r.recvBell.Ring(1)
	}
}

// Claim claims space for a record of type typ (>= 0) with an n-byte payload,
// waiting for space until ctx is done. It fails with ErrClosed when the ring
// is closed, ErrTooLarge when the record can never fit, ErrBadType for a
// negative type, and ErrFull (wrapping ctx's error) when ctx ends first.
func (p *Producer) Claim(ctx context.Context, typ int32, n int) (Claim, error) {
	return p.claim(ctx, typ, n, true)
}

// TryClaim is Claim without waiting: ErrFull at once when there is no space.
func (p *Producer) TryClaim(typ int32, n int) (Claim, error) {
	return p.claim(nil, typ, n, false)
}

// Write copies payload into a new record of type typ and commits it, waiting
// for space until ctx is done.
func (p *Producer) Write(ctx context.Context, typ int32, payload []byte) error {
	c, err := p.claim(ctx, typ, len(payload), true)
	if err != nil {
		return err
	}
	copy(c.Bytes(), payload)
	c.Commit()
	return nil
}

func (p *Producer) claim(ctx context.Context, typ int32, n int, wait bool) (Claim, error) {
	r := p.r
	if r == nil {
		return Claim{}, ErrClosed
	}
	if typ < 0 {
		return Claim{}, fmt.Errorf("%w: %d", ErrBadType, typ)
	}
	if n < 0 || n > r.maxRecord-HeaderLen {
		return Claim{}, fmt.Errorf("%w: %d-byte payload, at most %d", ErrTooLarge, n, r.maxRecord-HeaderLen)
	}
	length := uint64(HeaderLen + n)
	aligned := (length + RecordAlign - 1) &^ (RecordAlign - 1)
	for {
		tail := atomic.LoadUint64(r.tail)
		if tail&closedBit != 0 {
			return Claim{}, ErrClosed
		}
		idx := tail & r.mask
		need := aligned
		if toEnd := r.capacity - idx; aligned > toEnd {
			need = toEnd + aligned // pad to the end, then start over at 0
		}
		if tail+need > p.headSeen+r.capacity {
			p.headSeen = atomic.LoadUint64(r.head)
			if tail+need > p.headSeen+r.capacity {
				if counting && !p.full {
					p.full = true // until the next claim: one wait, however many calls
					bump(&p.ctr.fullWaits, 1)
				}
				if !wait {
					return Claim{}, ErrFull
				}
				if err := p.waitSpace(ctx, tail+need-r.capacity, tail); err != nil {
					return Claim{}, err
				}
				continue
			}
		}
		// Invariant 1: intent before claim. intentLen changes rarely
		// (records of one size), so it is stored only when it changes.
		// The CAS below is a full fence, so release stores suffice to
		// make the intent visible before the claim.
		if need != p.lastLen {
			shm.StoreRelease(p.lenWord, need)
			p.lastLen = need
		}
		shm.StoreRelease(p.intent, tail)
		if !atomic.CompareAndSwapUint64(r.tail, tail, tail+need) {
			shm.StoreRelease(p.intent, noIntent)
			continue
		}
		if counting {
			p.full = false
		}
		// Invariant 3. These headers need no fence of their own: the
		// consumer reads them only when the record stays stuck.
		if need != aligned {
			shm.StoreRelease(r.header(idx), (r.capacity-idx)|paddingBits)
			idx = 0
		}
		// The lines of the record are in the consumer's cache, which
		// zeroed them: fetch them all at once rather than one per store.
		prefetchW(uintptr(unsafe.Pointer(&r.data[idx])), uintptr(min(length, fetchLimit)))
		shm.StoreRelease(r.header(idx), uint64(uint32(-int32(length)))|uint64(uint32(p.slot))<<32)
		return Claim{r: r, ctr: p.ctr, idx: idx, length: int32(length), typ: typ}, nil
	}
}

// waitSpace sleeps until the head reaches minHead, the ring closes, or ctx is
// done. tail is the tail the caller saw when it found the ring full.
//
// Waking is batched with a low-water mark: the waiter asks to be woken only
// once a quarter of the ring is free (spaceWanted, a maximum over the
// waiters), so that a consumer that releases one record at a time does not
// make a system call per record while producers wait. The mark never
// exceeds tail, so a consumer that drains the ring always reaches it; and a
// waiter that sleeps past the mark still re-reads the head at least every
// 100ms.
//
// Dekker with the consumer's publish: the waiter raises spaceWaiters and
// spaceWanted, then reads the head; the consumer stores the head, then reads
// both. Either the consumer sees the waiter (and rings once the head reaches
// the mark) or the waiter sees the new head.
func (p *Producer) waitSpace(ctx context.Context, minHead, tail uint64) error {
	r := p.r
	if ctx == nil {
		ctx = context.Background()
	}
	want := min(minHead+r.capacity/4, tail)
	atomic.AddUint32(r.spaceWaiters, 1)
	defer atomic.AddUint32(r.spaceWaiters, ^uint32(0))
	for w := atomic.LoadUint64(r.spaceWanted); w < want && !atomic.CompareAndSwapUint64(r.spaceWanted, w, want); {
		w = atomic.LoadUint64(r.spaceWanted)
	}
	for {
		seq := r.spaceBell.Seq()
		p.headSeen = atomic.LoadUint64(r.head)
		if p.headSeen >= minHead || r.Closed() {
			return nil
		}
		// The timeout only bounds how long a sleeper goes without
		// re-reading the head; every head move that reaches the mark
		// rings.
		err := r.spaceBell.Wait(ctx, seq, 100*time.Millisecond)
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrFull, ctx.Err())
		}
	}
}
