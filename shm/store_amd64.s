//go:build !race

#include "textflag.h"

// func StoreRelease(addr *uint64, v uint64)
// A plain MOV: on amd64 (TSO) a store is never reordered with earlier
// stores, so this is a release store. It is not a StoreLoad fence.
TEXT ·StoreRelease(SB), NOSPLIT, $0-16
	MOVQ addr+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, 0(AX)
	RET

// func StoreRelease32(addr *uint32, v uint32)
TEXT ·StoreRelease32(SB), NOSPLIT, $0-12
	MOVQ addr+0(FP), AX
	MOVL v+8(FP), BX
	MOVL BX, 0(AX)
	RET
