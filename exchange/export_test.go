package exchange

// MappedRings returns how many mailbox ring segments x holds mapped: its
// cached destinations and the retired ones it has not unmapped yet. Tests
// use it to see that a long-lived handle does not accumulate mappings.
func (x *SHM) MappedRings() int {
	x.destMu.Lock()
	defer x.destMu.Unlock()
	n := len(x.retired)
	x.dests.Range(func(_, _ any) bool { n++; return true })
	return n
}
