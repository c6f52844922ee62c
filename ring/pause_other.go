//go:build !amd64

package ring

// cpuRelax backs off briefly inside a spin-wait loop.
func cpuRelax() {}
