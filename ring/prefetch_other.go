//go:build !amd64

package ring

// prefetchW is a no-op where no write-prefetch is implemented.
func prefetchW(addr uintptr, n uintptr) {}
