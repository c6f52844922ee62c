package ring

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
