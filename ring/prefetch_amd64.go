package ring

// prefetchW hints that the lines of [addr, addr+n) are about to be written
// (PREFETCHW). A hint: it never faults, whatever the address.
//
//go:noescape
func prefetchW(addr uintptr, n uintptr)
