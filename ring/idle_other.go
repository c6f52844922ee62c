//go:build !linux

package ring

import "runtime"

// schedYield yields the processor. Rings work only on Linux (shm's futex);
// elsewhere this only keeps the package building.
func schedYield() { runtime.Gosched() }

// threadSwitches reports that per-thread context switches are unknown here.
func threadSwitches() (int64, bool) { return 0, false }
