#include "textflag.h"

// func cpuRelax()
// PAUSE a few times: tells the core it is in a spin-wait loop, which stops
// it from hammering a cache line another core is writing.
TEXT ·cpuRelax(SB), NOSPLIT, $0-0
	PAUSE
	PAUSE
	PAUSE
	PAUSE
	RET
