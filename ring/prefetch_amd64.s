#include "textflag.h"

// func prefetchW(addr uintptr, n uintptr)
// PREFETCHW each 64-byte line of [addr, addr+n): asks for the lines in
// exclusive state at once, so that the fetches from the consumer's core
// (which zeroed them) run in parallel, ahead of the stores that need them.
// The Go assembler has no mnemonic for it: 0F 0D /1, here (AX).
TEXT ·prefetchW(SB), NOSPLIT, $0-16
	MOVQ addr+0(FP), AX
	MOVQ n+8(FP), CX
	ADDQ AX, CX
	ANDQ $~63, AX // from the start of addr's line: every line is covered

loop:
	CMPQ AX, CX
	JAE  done
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08 // PREFETCHW (AX)
	ADDQ $64, AX
	JMP  loop

done:
	RET
