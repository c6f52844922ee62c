package ring

// ReadWhile is Read for a receiver that decides after each record whether
// it wants the next: it hands committed records to fn, in order, until fn
// returns false (the record it was given is consumed all the same), limit
// records were handed over (no limit when limit <= 0), or none is left.
// One batch, one release of the space: a receiver that takes what is
// there after a Receive pays the batch's costs once, not per record. Unlike
// Read, a ReadWhile that finds nothing does not publish the consumed
// space. It returns how many records it handed over, and ErrCorrupt, now
// and on every later call, for a ring found corrupt.
func (c *Consumer) ReadWhile(fn func(typ int32, payload []byte) bool, limit int) (int, error) {
	n, _, err := c.read(fn, limit)
	return n, err
}
