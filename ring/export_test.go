package ring

// SpinBudget returns the consumer's adaptive spin budget (see learn).
func SpinBudget(c *Consumer) int { return c.spins }
