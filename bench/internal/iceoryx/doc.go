// Package iceoryx drives the C binding of Eclipse iceoryx 2.0 for shmbench's peer rows: a request/response or
// publish/subscribe ping-pong of 64-byte messages, each side waiting by polling or on a WaitSet.
//
// # How the binding is found
//
// The package needs cgo and the headers of the binding (Debian's
// libiceoryx-binding-c-dev, in /usr/include/iceoryx/v2.0.3): the C code tests
// for them with __has_include, so a plain `go build` uses iceoryx where the
// headers are installed and compiles a stub everywhere else. The library
// itself is loaded at run time with dlopen (libiceoryx_binding_c.so, from the
// same package), so the module links and runs on machines without it. No
// build tag is needed; [Available] says why the binding cannot be used when it
// cannot: built without cgo, built without the headers, or the library
// missing at run time.
//
// # Caveats
//
// A process has one iceoryx runtime ([Init] once), registered with a RouDi
// daemon that must already run: iceoryx 2.0 waits for RouDi and terminates
// the process when it does not come. Its errors are fatal to the process
// (its error handler aborts), so shmbench runs both sides of a ping-pong in
// child processes, never in the process that writes the report. One cgo
// call per round trip is included in the figures (tens of nanoseconds).
package iceoryx
