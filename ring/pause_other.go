//go:build !amd64

package ring

// cpuRelax backs off briefly inside a spin-wait loop.
func cpuRelax() {}

// prefetchW is a no-op where no write-prefetch is implemented.
func prefetchW(addr uintptr, n uintptr) {}
