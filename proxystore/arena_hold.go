package proxystore

import (
	"fmt"
	"sync/atomic"
)

// References, holds and their reclaim.
//
// Every block has a descriptor word in the meta segment (see
// arena_layout.go): refs | state | generation. Readers map the meta segment
// read-write and change the word only with CAS; the data segment they map
// read-only. Each reader process also records what it holds in hold slots
// of the same meta segment, so that the owner can attribute references to
// the reader's liveness id and drop them when the reader dies.
//
// Protocol (all accesses are sync/atomic, hence sequentially consistent):
//
//	reader, Resolve (acquire):
//	  R1  store entry := gen<<28 | idx in one of its own hold slots
//	  R2  CAS word: (gen, live, r) -> (gen, live, r+1); on a generation or
//	      state mismatch, clear the entry and fail (stale, expired); so
//	      does a length that is not the block's (a bad proxy): it is read
//	      between the load of the word and the CAS, hence (the CAS
//	      succeeding) while the block is live in the generation, and
//	      checked before any reference is taken, because R3 of a
//	      single-use block evicts it
//	reader, Release:
//	  R3  CAS word: (gen, s, r) -> (gen, s', r-1), where s' = evicted if the
//	      block is single use and s is live, else s; when the result has
//	      refs 0 and a state other than live, add 1 to the meta's
//	      reclaimable counter (a hint for the owner)
//	  R4  store entry := 0
//	owner, commit: store word := (gen, live, 0)     (from (gen, loaned, 0))
//	owner, Free / lease expiry: CAS (gen, live, r) -> (gen, freed|expired, r)
//	owner, reclaim: CAS (gen, freed|evicted|expired, 0) -> (gen, free, 0); the
//	      next allocation of the block stores (gen', loaned, 0) with a gen'
//	      never used before in the segment (a per-segment counter)
//	owner, dead reader D (its slot's holder is not alive), per entry (idx, gen):
//	  O1  v := load word
//	  O2  if gen(v) != gen: drop the entry (D held no reference: see I2)
//	  O2' if refs(v) > 0, state(v) = live and the block is not single use,
//	      leave the entry for a later pass (see I7): it is reconciled once
//	      the block is freed or its lease expires
//	  O3  scan every slot not held by a dead reader; if one has the entry
//	      (idx, gen), leave it for a later pass
//	  O4  CAS word: v -> (gen, s', 0), s' = evicted if the block is single use,
//	      live and refs(v) > 0, else state(v); on failure retry in a later
//	      pass; on success drop every dead slot's entries (idx, gen)
//	  O5  when all of D's entries are dropped, free the slot (holder := 0)
//
// Invariants:
//
//	I1  refs(word) counts exactly the references taken by R2 and not yet
//	    dropped by R3 or O4.
//	I2  the generation of a block changes only in reclaim and reallocation,
//	    both of which need refs = 0. So while a reader holds a reference,
//	    the generation it resolved stays in the word and the block is not
//	    reused: no block is handed out twice while referenced.
//	I3  a reader that holds (or is taking or dropping) a reference has its
//	    entry stored: R1 precedes R2, R4 follows R3. So every reference of a
//	    live reader is covered by a live entry.
//	I4  generations are unique within a segment, so a stale proxy (its
//	    block reclaimed, whatever was allocated at its offset since) never
//	    matches the word it finds: it fails at R2 with ErrStaleProxy.
//	I5  (correctness of O4) O1 reads v before O3 scans. If a live reader's
//	    R2 or R3 is part of v, its entry was stored before (I3) and O3 sees
//	    it. If a live reader's R2 or R3 comes after O1, the word is no
//	    longer v and O4 fails. So when O4 succeeds, no live reader holds a
//	    reference counted in v: all of refs(v) belong to dead readers, and
//	    setting refs to 0 drops exactly those, whatever instruction the dead
//	    readers died at (between R1 and R2, or R3 and R4, included).
//	    This needs the word to change at every R2 or R3 between O1 and
//	    O4, which holds only where the word cannot come back to v (ABA):
//	    refs(v) = 0 (O4 then changes nothing), a state other than live
//	    (no R2 is possible: refs only go down), or a live single-use block
//	    (R2 only raises refs, and R3 leaves the live state for good).
//	I6  a hold slot is written only by the process that claimed it (CAS
//	    holder 0 -> its id), except by the owner after that process died.
//	I7  on a live block that is not single use, R3 followed by another
//	    reader's R2 brings the word back to v: a live reader M counted in
//	    v releases before O3 scans its slot, another live reader L takes a
//	    reference after O3 scanned L's slot. O4 would then zero L's
//	    reference and the block could be reused under L's view. Hence O2':
//	    such entries wait until Free or the lease's expiry ends the live
//	    state (their dead slot stays taken until then).
//
// Only the owner of a segment reclaims blocks and reconciles dead readers'
// slots; readers never free memory.

// acquire records a hold on (idx, gen) and takes a reference to a block of
// length bytes: R1 and R2. It returns the entry's offset in the meta body.
func (s *arenaSeg) acquire(me uint64, idx uint32, gen, length uint64) (int, error) {
	entry, err := s.takeEntry(me)
	if err != nil {
		return 0, err
	}
	ew := s.word(entry)
	atomic.StoreUint64(ew, mkEntry(gen, idx)) // R1
	w := s.descWord(idx)
	for {
		v := atomic.LoadUint64(w)
		var err error
		switch {
		case wordGen(v) != gen:
			err = fmt.Errorf("%w: block of generation %d, proxy of %d", ErrStaleProxy, wordGen(v), gen)
		case wordState(v) == stExpired:
			err = fmt.Errorf("%w: block of generation %d", ErrExpired, gen)
		case wordState(v) != stLive:
			err = fmt.Errorf("%w: block of generation %d is no longer live", ErrStaleProxy, gen)
		case wordRefs(v) >= maxRefs:
			err = fmt.Errorf("%w: %d references to one block", ErrTooManyViews, wordRefs(v))
		default:
			if n := atomic.LoadUint64(s.descField(idx, descOffLength)); n != length {
				if atomic.LoadUint64(w) != v {
					continue // the length may be another generation's: look again
				}
				err = fmt.Errorf("%w: length %d, the block holds %d", ErrBadProxy, length, n)
			}
		}
		if err != nil {
			atomic.StoreUint64(ew, 0)
			s.putEntry(entry)
			return 0, err
		}
		if atomic.CompareAndSwapUint64(w, v, v+1) { // R2
			return entry, nil
		}
	}
}

// release drops a reference taken by acquire and its hold: R3 and R4.
func (s *arenaSeg) release(entry int, idx uint32, gen uint64) {
	s.unref(idx, gen)
	atomic.StoreUint64(s.word(entry), 0) // R4
	s.putEntry(entry)
}

// unref is R3.
func (s *arenaSeg) unref(idx uint32, gen uint64) {
	w := s.descWord(idx)
	single := s.descLifetime(idx) == SingleUse
	for {
		v := atomic.LoadUint64(w)
		if wordGen(v) != gen || wordRefs(v) == 0 {
			// Cannot happen unless a reference was dropped twice or the
			// meta was scribbled on: never underflow.
			underflow()
			return
		}
		nv := v - 1
		if single && wordState(v) == stLive {
			nv = nv&^stateMask | stEvicted<<refsBits
		}
		if atomic.CompareAndSwapUint64(w, v, nv) {
			if wordRefs(nv) == 0 && wordState(nv) != stLive {
				atomic.AddUint64(s.reclaimWord(), 1)
			}
			return
		}
	}
}

// takeEntry returns a free entry in one of this process's hold slots,
// claiming a new slot when they are all in use.
func (s *arenaSeg) takeEntry(me uint64) (int, error) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if n := len(s.free); n > 0 {
		e := s.free[n-1]
		s.free = s.free[:n-1]
		return e, nil
	}
	for i := 0; i < int(s.hdr.holdSlots); i++ {
		if atomic.CompareAndSwapUint64(s.word(holdSlotOff(i)+holdOffHolder), 0, me) {
			s.slots = append(s.slots, i)
			base := holdSlotOff(i) + holdOffEntries
			for j := holdEntries - 1; j > 0; j-- {
				s.free = append(s.free, base+j*8)
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d hold slots of segment %016x are taken", ErrTooManyViews, s.hdr.holdSlots, s.id)
}

func (s *arenaSeg) putEntry(e int) {
	s.hmu.Lock()
	s.free = append(s.free, e)
	s.hmu.Unlock()
}

// dropHolds releases every reference this process holds in the segment and
// gives its hold slots back (used by Close).
func (s *arenaSeg) dropHolds(me uint64) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	for _, i := range s.slots {
		base := holdSlotOff(i) + holdOffEntries
		for j := 0; j < holdEntries; j++ {
			ew := s.word(base + j*8)
			if e := atomic.LoadUint64(ew); e != 0 {
				idx, gen := uint32(e&entryIdxMask), e>>entryIdxBits
				if idx < s.hdr.nDesc {
					s.unref(idx, gen)
				}
				atomic.StoreUint64(ew, 0)
			}
		}
		atomic.CompareAndSwapUint64(s.word(holdSlotOff(i)+holdOffHolder), me, 0)
	}
	s.slots, s.free = nil, nil
}

// reconcileDead runs O1-O5 over the segment's hold slots: the owner drops
// the references of dead readers. alive tells whether a holder id lives.
// It returns how many references were dropped.
func (s *arenaSeg) reconcileDead(me uint64, alive func(uint64) bool) int {
	n := int(s.hdr.holdSlots)
	dead := make(map[int]bool)
	for i := 0; i < n; i++ {
		h := atomic.LoadUint64(s.word(holdSlotOff(i) + holdOffHolder))
		if h != 0 && h != me && !alive(h) {
			dead[i] = true
		}
	}
	if len(dead) == 0 {
		return 0
	}
	dropped := 0
	for i := range dead {
		base := holdSlotOff(i) + holdOffEntries
		for j := 0; j < holdEntries; j++ {
			e := atomic.LoadUint64(s.word(base + j*8))
			if e == 0 {
				continue
			}
			idx, gen := uint32(e&entryIdxMask), e>>entryIdxBits
			if idx >= s.hdr.nDesc {
				s.dropDeadEntries(dead, e) // garbage: nothing to reconcile
				continue
			}
			w := s.descWord(idx)
			v := atomic.LoadUint64(w) // O1
			reconcileProbe(1)
			if wordGen(v) != gen {
				s.dropDeadEntries(dead, e) // O2
				continue
			}
			if wordRefs(v) > 0 && wordState(v) == stLive && s.descLifetime(idx) != SingleUse {
				continue // O2': not ABA-safe while live (I7)
			}
			if s.liveEntry(dead, e) { // O3
				continue
			}
			reconcileProbe(3)
			nv := v &^ refsMask
			if wordRefs(v) > 0 && wordState(v) == stLive && s.descLifetime(idx) == SingleUse {
				nv = nv&^stateMask | stEvicted<<refsBits
			}
			if atomic.CompareAndSwapUint64(w, v, nv) { // O4
				dropped += int(wordRefs(v))
				s.dropDeadEntries(dead, e)
			}
		}
	}
	for i := range dead { // O5
		base := holdSlotOff(i) + holdOffEntries
		empty := true
		for j := 0; j < holdEntries && empty; j++ {
			empty = atomic.LoadUint64(s.word(base+j*8)) == 0
		}
		if empty {
			h := atomic.LoadUint64(s.word(holdSlotOff(i) + holdOffHolder))
			atomic.CompareAndSwapUint64(s.word(holdSlotOff(i)+holdOffHolder), h, 0)
		}
	}
	return dropped
}

// liveEntry reports whether a slot not in dead holds entry e.
func (s *arenaSeg) liveEntry(dead map[int]bool, e uint64) bool {
	for i := 0; i < int(s.hdr.holdSlots); i++ {
		if dead[i] {
			continue
		}
		base := holdSlotOff(i) + holdOffEntries
		for j := 0; j < holdEntries; j++ {
			if atomic.LoadUint64(s.word(base+j*8)) == e {
				return true
			}
		}
	}
	return false
}

// dropDeadEntries clears entry e in every dead slot.
func (s *arenaSeg) dropDeadEntries(dead map[int]bool, e uint64) {
	for i := range dead {
		base := holdSlotOff(i) + holdOffEntries
		for j := 0; j < holdEntries; j++ {
			atomic.CompareAndSwapUint64(s.word(base+j*8), e, 0)
		}
	}
}

// reconcileProbe is called by reconcileDead after its steps O1 and O3, so
// that tests can interleave readers with the owner's reconcile.
var reconcileProbe = func(step int) {}

// underflow is called when a release finds no reference to drop. Tests
// count such events (they must not happen); it is a variable so that the
// package's own code pays nothing for it.
var underflow = func() {}
