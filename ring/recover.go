package ring

// Crash recovery and sweeps: the consumer's slow paths, apart from the read
// path of consumer.go. Receive calls recover only when it finds the ring
// empty while records are claimed (head < tail); Read never does. The
// invariant they keep (see Consumer): a stuck record is turned into padding
// only when its producer is known dead, or after UnknownOwnerTimeout when
// its producer cannot be known, so nothing committed is skipped and nothing
// torn is delivered.

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Sweep walks the records committed at the head without consuming them and
// turns every record for which drop returns true into padding, which Read
// skips. The others stay, in order, for Read. It stops at the first record
// not yet committed and returns how many records it dropped. The payload
// handed to drop is valid only during the call.
func (c *Consumer) Sweep(drop Predicate) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.r == nil {
		return 0, ErrClosed
	}
	r := c.r
	n := 0
	for pos := c.head; pos < c.pub+r.capacity; {
		typ, payload, size, ok := c.committed(pos)
		if !ok {
			return n, c.err
		}
		if typ != PaddingType && drop(typ, payload) {
			atomic.StoreUint64(r.header(pos&r.mask), uint64(HeaderLen+len(payload))|paddingBits)
			n++
		}
		pos += size
	}
	return n, nil
}

// Predicate is a Handler that answers a yes-or-no question about a record.
type Predicate func(typ int32, payload []byte) bool

// recover looks at a record stuck at the head and turns it into padding if
// its producer is dead. It reports whether the head record became readable.
func (c *Consumer) recover() bool {
	r := c.r
	pos := c.head
	h := atomic.LoadUint64(r.header(pos & r.mask))
	length := int32(uint32(h))
	if length > 0 {
		return true
	}
	tail := atomic.LoadUint64(r.tail) &^ closedBit
	if pos >= tail {
		c.stuckSince = time.Time{}
		return false
	}
	now := time.Now()
	if pos != c.stuckPos || c.stuckSince.IsZero() {
		c.stuckPos, c.stuckSince = pos, now
		return false
	}
	stuck := now.Sub(c.stuckSince)
	if stuck < r.opts.StuckAfter {
		return false
	}
	timedOut := stuck >= r.opts.UnknownOwnerTimeout
	var end uint64
	var byTimeout bool
	if length < 0 {
		slot := int(int32(h >> 32))
		size := (uint64(-int64(length)) + RecordAlign - 1) &^ (RecordAlign - 1)
		if slot < 0 || slot >= r.slots || -length < HeaderLen || (pos&r.mask)+size > r.capacity || pos+size > tail {
			c.err = fmt.Errorf("%w: claimed record at %d has length %d, slot %d", ErrCorrupt, pos, length, slot)
			return true // let Read report it
		}
		alive, known := r.aliveKnown(atomic.LoadUint64(r.slotWord(slot, slotOwner)))
		switch {
		case known && !alive:
		case !known && timedOut:
			byTimeout = true
		default:
			return false
		}
		end = pos + size
	} else {
		var ok bool
		end, byTimeout, ok = c.attribute(pos, tail, timedOut)
		if !ok {
			return false
		}
	}
	c.pad(pos, end)
	if byTimeout {
		atomic.AddUint64(r.recoveredTO, 1)
	} else {
		atomic.AddUint64(r.recovered, 1)
	}
	atomic.AddUint64(r.recoveredB, end-pos)
	c.stuckSince = time.Time{}
	return true
}

// attribute finds the claim covering position pos, whose header is still
// zero, from the producers' published intents. It returns the end of that
// claim when every producer whose intent covers pos is dead, or, after the
// timeout, when no producer can be found at all.
func (c *Consumer) attribute(pos, tail uint64, timedOut bool) (end uint64, byTimeout, ok bool) {
	r := c.r
	var ends [4]uint64
	nends := 0
	unknown := false
	for i := 0; i < r.slots; i++ {
		owner := atomic.LoadUint64(r.slotWord(i, slotOwner))
		if owner == 0 {
			continue
		}
		ip := atomic.LoadUint64(r.slotWord(i, slotIntentPos))
		if ip == noIntent || ip > pos {
			continue
		}
		il := atomic.LoadUint64(r.slotWord(i, slotIntentLen))
		if pos-ip >= il {
			continue
		}
		alive, known := r.aliveKnown(owner)
		switch {
		case !known:
			unknown = true
		case alive:
			return 0, false, false // it may be the claimant, about to write
		case nends < len(ends):
			ends[nends] = ip + il
			nends++
		}
	}
	if nends == 0 || unknown {
		if !timedOut {
			return 0, false, false
		}
		byTimeout = true
	}
	if nends == 0 {
		// Nobody to attribute it to: pad up to the next header in
		// sight, the tail, or the end of the data area.
		limit := min(tail, pos+(r.capacity-pos&r.mask))
		for q := pos + RecordAlign; q < limit; q += RecordAlign {
			if atomic.LoadUint64(r.header(q&r.mask)) != 0 {
				return q, true, true
			}
		}
		return limit, true, true
	}
	// Dead claimants that lost their CAS may have left an intent at pos
	// too. The winner's end is where the next claim starts: the tail, or
	// a header that is already written. Prefer such an end.
	best := uint64(0)
	for _, e := range ends[:nends] {
		if e <= pos || e > tail {
			continue
		}
		consistent := e == tail || atomic.LoadUint64(r.header(e&r.mask)) != 0
		if consistent && (best == 0 || e < best) {
			best = e
		}
	}
	if best == 0 {
		for _, e := range ends[:nends] {
			if e > pos && e <= tail && (best == 0 || e < best) {
				best = e
			}
		}
	}
	if best == 0 {
		return 0, false, false
	}
	return best, byTimeout, true
}

// pad turns [pos, end) into padding records, split at the end of the data
// area.
func (c *Consumer) pad(pos, end uint64) {
	r := c.r
	for pos < end {
		idx := pos & r.mask
		chunk := min(end-pos, r.capacity-idx)
		atomic.StoreUint64(r.header(idx), chunk|paddingBits)
		pos += chunk
	}
}
