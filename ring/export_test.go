package ring

import "sync/atomic"

// SpinBudget returns the consumer's adaptive spin budget (see learn).
func SpinBudget(c *Consumer) int { return c.spins }

// CountGosched counts the Goscheds that the idle strategies' time bound
// allows (goschedDue) until the returned function is called, which
// returns the count.
func CountGosched() func() int64 {
	var n atomic.Int64
	goschedHook = func() { n.Add(1) }
	return func() int64 {
		goschedHook = func() {}
		return n.Load()
	}
}
