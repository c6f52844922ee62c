//go:build linux && cgo

package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// cbuf is memory from C's malloc, which C may keep after a call returns
// (Go memory it may not). The zero cbuf is empty.
type cbuf struct {
	p   unsafe.Pointer
	cap int
}

// errNoMemory reports a malloc that failed.
var errNoMemory = fmt.Errorf("%w: out of memory", errInval)

// cmalloc returns n bytes of C memory (at least 1, so never NULL on success).
func cmalloc(n int) (unsafe.Pointer, error) {
	p := C.malloc(C.size_t(max(n, 1)))
	if p == nil {
		return nil, errNoMemory
	}
	return p, nil
}

// cfree frees C memory; nil does nothing.
func cfree(p unsafe.Pointer) {
	if p != nil {
		C.free(p)
	}
}

// cbytes returns a malloc'ed copy of b.
func cbytes(b []byte) (unsafe.Pointer, error) {
	p, err := cmalloc(len(b))
	if err != nil {
		return nil, err
	}
	copy(unsafe.Slice((*byte)(p), len(b)), b)
	return p, nil
}

// grow makes room for n bytes, discarding the contents, and returns them.
func (b *cbuf) grow(n int) ([]byte, error) {
	if n > b.cap || b.p == nil {
		c := max(n, 2*b.cap, 256)
		p, err := cmalloc(c)
		if err != nil {
			return nil, err
		}
		cfree(b.p)
		b.p, b.cap = p, c
	}
	return unsafe.Slice((*byte)(b.p), n), nil
}

func (b *cbuf) free() {
	cfree(b.p)
	b.p, b.cap = nil, 0
}

// goBytes views C memory as a slice, for the duration of a call: nil for
// n == 0 or a NULL pointer.
func goBytes(p unsafe.Pointer, n int) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)
}
