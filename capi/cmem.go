//go:build linux && cgo

package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"sync"
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

// Action names are interned: a program calls a few actions many times, and
// converting the name C passes (C.GoString) cost an allocation per call.
// actionName returns the Go string of a name from a table of those seen
// before, allocating only for a new one; the table keeps at most
// maxNames names of at most maxNameLen bytes (others are converted each
// time).
const (
	maxNames   = 1024
	maxNameLen = 256
)

var names struct {
	mu sync.RWMutex
	m  map[string]string
}

// actionName returns the NUL-terminated string at p (not NULL) as a Go
// string.
func actionName(p *C.char) string {
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(p)), n)
	if n > maxNameLen {
		return string(b)
	}
	names.mu.RLock()
	s, ok := names.m[string(b)] // no allocation: a lookup by bytes
	names.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	names.mu.Lock()
	if names.m == nil {
		names.m = make(map[string]string)
	}
	if len(names.m) < maxNames {
		names.m[s] = s
	}
	names.mu.Unlock()
	return s
}
