package ring

// cpuRelax backs off briefly inside a spin-wait loop (PAUSE instructions).
func cpuRelax()
