package ring

import "math"

// Ready reports whether Read would find something at the consumer's
// position now: a committed record, or padding before one. It is one load
// of the header word there, and never blocks: a receiver that has just
// read a record asks it before trying for another, so that a batch of one
// costs no extra Read (whose finding nothing would publish the consumed
// space on the caller's time). A closed ring with records left is
// ready; a closed consumer, or one that found the ring corrupt, is not.
func (c *Consumer) Ready() bool {
	return c.r != nil && c.err == nil && c.readable()
}

// ReadWhile is Read for a receiver that decides after each record whether
// it wants the next: it hands committed records to fn, in order, until fn
// returns false (the record it was given is consumed all the same), limit
// records were handed over (no limit when limit <= 0), or none is left.
// One batch, one release of the space: a receiver that takes what is
// there after a Receive pays the batch's costs once, not per record. Unlike
// Read, a ReadWhile that finds nothing does not publish the consumed space
// (see Ready). It returns how many records it handed over, and
// ErrCorrupt, now and on every later call, for a ring found corrupt.
func (c *Consumer) ReadWhile(fn func(typ int32, payload []byte) bool, limit int) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.r == nil {
		return 0, ErrClosed
	}
	if limit <= 0 {
		limit = math.MaxInt
	}
	r := c.r
	head := c.head
	pos := head
	n, bytes := 0, 0
	more := true
	// As in Read: every claim lies in [pub, pub+capacity).
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
		return 0, c.err
	}
	return n, nil
}
