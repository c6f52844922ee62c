//go:build linux && cgo

// Libshmex is the C ABI of shmex: this package, built with
//
//	go build -buildmode=c-shared -o libshmex.so ./capi   (and libshmex.h, which you do not need)
//	go build -buildmode=c-archive -o libshmex.a ./capi   (link with -lpthread)
//
// is the library that C, C++, Fortran (fortran/) and Python (python/) link
// against, through the hand-written, versioned header shmex.h in this
// directory. Read shmex.h for the contract; docs/embedding.md for the memory
// and thread rules and what a Go runtime inside another program implies.
//
// # How it is built
//
// shmex.h declares the public functions; shmex.c implements them as thin C
// wrappers over the Go functions exported here (named shmexgo_*, not part of
// the ABI), so that the header keeps its const qualifiers and C types, keeps
// the per-thread last error in C thread-local storage, and runs the serving
// callback loop without a Go-to-C call per request. mp.c is the small
// MessagePack writer and reader of the header.
//
// C never keeps a Go pointer: handles are numbers looked up in a table
// (handles.go), every buffer C keeps is malloc'ed (results, received
// messages, requests), and loans and views point into the arenas' shared
// mappings, never into the Go heap. Each exported function recovers a panic
// of its own into SHMEX_EIO (guard, in exports.go).
//
// # Objects
//
// An exchange handle (exchange.go) owns clients (client.go: agent.Client,
// its handles and futures), agents served from C (agent.go: a receive/reply
// loop over the agent's mailbox that answers pings and shutdowns itself),
// raw mailboxes (mailbox.go) and the payloads of its arena store
// (payload.go: loans and views). Closing an object closes what it owns
// first. exports.go converts between C and Go and maps errors to the
// header's status codes (status.go).
package main

func main() {}
