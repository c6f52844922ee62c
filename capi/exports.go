//go:build linux && cgo

package main

/*
#include <stdlib.h>
#include "shmex.h"

void shmex__set_error(int status, const char *kind, size_t kind_len, const char *msg, size_t msg_len);
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/shmex/shmex/exchange"
	"github.com/shmex/shmex/proxystore"
)

// The functions exported here are called by the wrappers of shmex.c, which
// implement shmex.h; they are not part of the ABI. Each checks its pointers,
// converts C to Go, calls the core and converts back; a failure sets the
// calling thread's last error (in C thread-local storage: a Go function
// called from C runs on the caller's thread) and returns its status.

// fail records err as the calling thread's last error and returns its status.
func fail(err error) C.int {
	status, kind := statusOf(err)
	msg := err.Error()
	C.shmex__set_error(C.int(status), cstr(kind), C.size_t(len(kind)), cstr(msg), C.size_t(len(msg)))
	return C.int(status)
}

// cstr points at s's bytes for the duration of a call into C.
func cstr(s string) *C.char { return (*C.char)(unsafe.Pointer(unsafe.StringData(s))) }

func null(what string) C.int { return fail(fmt.Errorf("%w: %s is NULL", errInval, what)) }

func goStr(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

func goStrs(p **C.char, n C.size_t) ([]string, error) {
	if n == 0 {
		return nil, nil
	}
	if p == nil {
		return nil, fmt.Errorf("%w: implements is NULL with a count of %d", errInval, n)
	}
	if n > 1<<16 {
		return nil, fmt.Errorf("%w: %d behaviors implemented", errInval, n)
	}
	out := make([]string, n)
	for i, s := range unsafe.Slice(p, n) {
		if s == nil {
			return nil, fmt.Errorf("%w: implements[%d] is NULL", errInval, i)
		}
		out[i] = C.GoString(s)
	}
	return out, nil
}

func goID(p *C.shmex_id) exchange.EntityID {
	var id exchange.EntityID
	for i := range id.UUID {
		id.UUID[i] = byte(p.uuid[i])
	}
	if p.role <= 255 {
		id.Role = exchange.Role(p.role)
	}
	return id
}

func putID(p *C.shmex_id, id exchange.EntityID) {
	for i, b := range id.UUID {
		p.uuid[i] = C.uint8_t(b)
	}
	p.role = C.uint32_t(id.Role)
}

func goUUID(p *[16]C.uint8_t) exchange.UUID {
	var u exchange.UUID
	for i := range u {
		u[i] = byte(p[i])
	}
	return u
}

func putUUID(p *[16]C.uint8_t, u exchange.UUID) {
	for i, b := range u {
		p[i] = C.uint8_t(b)
	}
}

// putMsg writes m into out; byte fields point into m's C memory.
func putMsg(out *C.shmex_message, m cmsg) {
	out.kind = C.int32_t(m.kind)
	out.terminate = 0
	if m.terminate {
		out.terminate = 1
	}
	putUUID(&out.tag, m.tag)
	putUUID(&out.label, m.label)
	putID(&out.src, m.src)
	putID(&out.dest, m.dest)
	out.action, out.action_len = (*C.char)(bytesPtr(m.action)), C.size_t(len(m.action))
	out.args, out.args_len = (*C.uint8_t)(bytesPtr(m.args)), C.size_t(len(m.args))
	out.result, out.result_len = (*C.uint8_t)(bytesPtr(m.result)), C.size_t(len(m.result))
	out.error_kind, out.error_kind_len = (*C.char)(bytesPtr(m.ekind)), C.size_t(len(m.ekind))
	out.error_message, out.error_message_len = (*C.char)(bytesPtr(m.emsg)), C.size_t(len(m.emsg))
}

// bytesPtr is the first byte of b, NULL when b is empty.
func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// putResult hands res to C as malloc'ed memory in *out (unless out is NULL).
func putResult(res []byte, out **C.uint8_t, outLen *C.size_t) C.int {
	if out != nil {
		p, err := cbytes(res)
		if err != nil {
			return fail(err)
		}
		*out = (*C.uint8_t)(p)
	}
	if outLen != nil {
		*outLen = C.size_t(len(res))
	}
	return C.SHMEX_OK
}

// putBytes copies b into buf[0..cap) and writes its length; errTruncated
// when it does not fit.
func putBytes(b []byte, buf *C.uint8_t, capacity C.size_t, n *C.size_t) C.int {
	if n != nil {
		*n = C.size_t(len(b))
	}
	if uint64(len(b)) > uint64(capacity) {
		return fail(fmt.Errorf("%w: %d bytes needed, room for %d", errTruncated, len(b), capacity))
	}
	if len(b) > 0 {
		if buf == nil {
			return null("the output buffer")
		}
		copy(unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(b)), b)
	}
	return C.SHMEX_OK
}

func handleOf(p C.uintptr_t) uint64 { return uint64(p) }

// guard turns a panic in an exported function into SHMEX_EIO: a bug here
// must not bring down the program that embeds the library. Every exported
// function that returns a status defers it.
func guard(st *C.int) {
	if r := recover(); r != nil {
		*st = fail(fmt.Errorf("libshmex: internal error (please report): %v", r))
	}
}

// slice views n bytes of C memory at p, refusing a NULL pointer with a
// length and lengths above limit (a negative length cast to size_t, say).
func slice(p unsafe.Pointer, n C.size_t, limit uint64, what string) ([]byte, error) {
	if n > 0 && p == nil {
		return nil, fmt.Errorf("%w: %s is NULL with a length of %d", errInval, what, n)
	}
	if uint64(n) > limit {
		return nil, fmt.Errorf("%w: %s of %d bytes (at most %d)", exchange.ErrMessageTooLarge, what, uint64(n), limit)
	}
	return goBytes(p, int(n)), nil
}

//export shmexgo_go_version
func shmexgo_go_version(buf *C.char, capacity C.size_t) {
	v := runtime.Version()
	if buf == nil || capacity == 0 {
		return
	}
	n := int(min(uint64(len(v)), uint64(capacity)-1))
	b := unsafe.Slice((*byte)(unsafe.Pointer(buf)), n+1)
	copy(b, v[:n])
	b[n] = 0
}

//export shmexgo_id_format
func shmexgo_id_format(id *C.shmex_id, buf *C.char, capacity C.size_t) (st C.int) {
	defer guard(&st)
	if id == nil {
		return null("id")
	}
	g := goID(id)
	if !g.Role.Valid() {
		return fail(fmt.Errorf("%w: role %d", errInval, id.role))
	}
	s := g.String()
	var n C.size_t
	return putBytes(append([]byte(s), 0), (*C.uint8_t)(unsafe.Pointer(buf)), capacity, &n)
}

//export shmexgo_id_parse
func shmexgo_id_parse(s *C.char, out *C.shmex_id) (st C.int) {
	defer guard(&st)
	if s == nil {
		return null("s")
	}
	if out == nil {
		return null("out")
	}
	id, err := exchange.ParseEntityID(C.GoString(s))
	if err != nil {
		return fail(err)
	}
	putID(out, id)
	return C.SHMEX_OK
}

//export shmexgo_open
func shmexgo_open(name, root *C.char, idle C.int32_t, mailboxBytes C.uint64_t, out *C.uintptr_t) (st C.int) {
	defer guard(&st)
	if name == nil {
		return null("name")
	}
	if out == nil {
		return null("out")
	}
	_, h, err := openExchange(C.GoString(name), openOptions{root: goStr(root), idle: int(idle), mailboxBytes: uint64(mailboxBytes)})
	if err != nil {
		return fail(err)
	}
	*out = C.uintptr_t(h)
	return C.SHMEX_OK
}

// closeKind closes the object of kind k that p names.
func closeKind[T object](p C.uintptr_t, k kind) (st C.int) {
	defer guard(&st)
	o, err := lookup[T](handleOf(p), k)
	if err != nil {
		return fail(err)
	}
	if err := closeObject(o); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_close
func shmexgo_close(x C.uintptr_t) C.int { return closeKind[*exchangeObj](x, kindExchange) }

func exchangeOf(x C.uintptr_t) (*exchangeObj, error) {
	return lookup[*exchangeObj](handleOf(x), kindExchange)
}

//export shmexgo_register_agent
func shmexgo_register_agent(x C.uintptr_t, behavior *C.char, impl **C.char, nimpl C.size_t, name *C.char, out *C.shmex_id) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if behavior == nil {
		return null("behavior")
	}
	if out == nil {
		return null("out")
	}
	implements, err := goStrs(impl, nimpl)
	if err != nil {
		return fail(err)
	}
	id, err := e.registerAgent(C.GoString(behavior), implements, goStr(name))
	if err != nil {
		return fail(err)
	}
	putID(out, id)
	return C.SHMEX_OK
}

//export shmexgo_register_client
func shmexgo_register_client(x C.uintptr_t, name *C.char, out *C.shmex_id) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return null("out")
	}
	id, err := e.registerClient(goStr(name))
	if err != nil {
		return fail(err)
	}
	putID(out, id)
	return C.SHMEX_OK
}

//export shmexgo_terminate
func shmexgo_terminate(x C.uintptr_t, id *C.shmex_id) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if id == nil {
		return null("id")
	}
	if err := e.terminate(goID(id)); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_status
func shmexgo_status(x C.uintptr_t, id *C.shmex_id, status *C.int) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if id == nil {
		return null("id")
	}
	if status == nil {
		return null("status")
	}
	s, err := e.status(goID(id))
	if err != nil {
		return fail(err)
	}
	*status = C.int(s)
	return C.SHMEX_OK
}

//export shmexgo_discover
func shmexgo_discover(x C.uintptr_t, behavior *C.char, subtypes C.int, ids *C.shmex_id, capacity C.size_t, n *C.size_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if behavior == nil {
		return null("behavior")
	}
	if n == nil {
		return null("n")
	}
	if ids == nil && capacity > 0 {
		return null("ids")
	}
	found, err := e.discover(C.GoString(behavior), subtypes != 0)
	if err != nil {
		return fail(err)
	}
	*n = C.size_t(len(found))
	if k := min(uint64(len(found)), uint64(capacity)); k > 0 {
		out := unsafe.Slice(ids, k)
		for i := range out {
			putID(&out[i], found[i])
		}
	}
	if uint64(len(found)) > uint64(capacity) {
		return fail(fmt.Errorf("%w: %d agents found, room for %d", errTruncated, len(found), capacity))
	}
	return C.SHMEX_OK
}

//export shmexgo_send
func shmexgo_send(x C.uintptr_t, m *C.shmex_message, ns C.int64_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if m == nil {
		return null("m")
	}
	// The byte fields alias C's memory for the duration of the send, which
	// encodes the message into the ring before it returns (no copy).
	msg := msgPool.Get().(*exchange.Message)
	defer func() {
		msg.Action, msg.Args, msg.Result, msg.ErrorKind, msg.ErrorMessage = nil, nil, nil, nil, nil
		msgPool.Put(msg)
	}()
	if m.kind < 0 || m.kind > 255 {
		return fail(fmt.Errorf("%w: message kind %d", errInval, m.kind))
	}
	msg.Kind = exchange.Kind(m.kind)
	msg.Terminate = m.terminate != 0
	msg.Tag, msg.Label = goUUID(&m.tag), goUUID(&m.label)
	msg.Src, msg.Dest = goID(&m.src), goID(&m.dest)
	field := func(dst *[]byte, p unsafe.Pointer, n C.size_t, what string) error {
		b, err := slice(p, n, exchange.MaxPayloadSize, what)
		*dst = b
		return err
	}
	for _, f := range []struct {
		dst  *[]byte
		p    unsafe.Pointer
		n    C.size_t
		what string
	}{
		{(*[]byte)(&msg.Action), unsafe.Pointer(m.action), m.action_len, "action"},
		{(*[]byte)(&msg.Args), unsafe.Pointer(m.args), m.args_len, "args"},
		{(*[]byte)(&msg.Result), unsafe.Pointer(m.result), m.result_len, "result"},
		{(*[]byte)(&msg.ErrorKind), unsafe.Pointer(m.error_kind), m.error_kind_len, "error_kind"},
		{(*[]byte)(&msg.ErrorMessage), unsafe.Pointer(m.error_message), m.error_message_len, "error_message"},
	} {
		if err := field(f.dst, f.p, f.n, f.what); err != nil {
			return fail(err)
		}
	}
	err = e.send(msg, int64(ns))
	putUUID(&m.tag, msg.Tag)
	if err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_mailbox_open
func shmexgo_mailbox_open(x C.uintptr_t, id *C.shmex_id, out *C.uintptr_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if id == nil {
		return null("id")
	}
	if out == nil {
		return null("out")
	}
	_, h, err := e.openMailbox(goID(id))
	if err != nil {
		return fail(err)
	}
	*out = C.uintptr_t(h)
	return C.SHMEX_OK
}

//export shmexgo_mailbox_recv
func shmexgo_mailbox_recv(mb C.uintptr_t, ns C.int64_t, out *C.shmex_message) (st C.int) {
	defer guard(&st)
	o, err := lookup[*mailboxObj](handleOf(mb), kindMailbox)
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return null("out")
	}
	m, err := o.recv(int64(ns))
	if err != nil {
		return fail(err)
	}
	putMsg(out, m)
	return C.SHMEX_OK
}

//export shmexgo_mailbox_close
func shmexgo_mailbox_close(mb C.uintptr_t) C.int { return closeKind[*mailboxObj](mb, kindMailbox) }

//export shmexgo_client_open
func shmexgo_client_open(x C.uintptr_t, name *C.char, out *C.uintptr_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return null("out")
	}
	_, h, err := e.openClient(goStr(name))
	if err != nil {
		return fail(err)
	}
	*out = C.uintptr_t(h)
	return C.SHMEX_OK
}

//export shmexgo_client_id
func shmexgo_client_id(c C.uintptr_t, out *C.shmex_id) (st C.int) {
	defer guard(&st)
	o, err := lookup[*clientObj](handleOf(c), kindClient)
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return null("out")
	}
	putID(out, o.cl.ID())
	return C.SHMEX_OK
}

//export shmexgo_client_close
func shmexgo_client_close(c C.uintptr_t) C.int { return closeKind[*clientObj](c, kindClient) }

//export shmexgo_handle_open
func shmexgo_handle_open(c C.uintptr_t, id *C.shmex_id, out *C.uintptr_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*clientObj](handleOf(c), kindClient)
	if err != nil {
		return fail(err)
	}
	if id == nil {
		return null("agent")
	}
	if out == nil {
		return null("out")
	}
	_, h, err := o.openHandle(goID(id))
	if err != nil {
		return fail(err)
	}
	*out = C.uintptr_t(h)
	return C.SHMEX_OK
}

//export shmexgo_handle_close
func shmexgo_handle_close(hp C.uintptr_t, ns C.int64_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*handleObj](handleOf(hp), kindHandle)
	if err != nil {
		return fail(err)
	}
	if err := closeHandle(o, int64(ns)); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_call
func shmexgo_call(hp C.uintptr_t, action *C.char, args *C.uint8_t, argsLen C.size_t, ns C.int64_t, result **C.uint8_t, resultLen *C.size_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*handleObj](handleOf(hp), kindHandle)
	if err != nil {
		return fail(err)
	}
	if action == nil {
		return null("action")
	}
	a, err := slice(unsafe.Pointer(args), argsLen, exchange.MaxPayloadSize, "args")
	if err != nil {
		return fail(err)
	}
	res, err := o.call(actionName(action), a, int64(ns))
	if err != nil {
		return fail(err)
	}
	return putResult(res, result, resultLen)
}

//export shmexgo_call_into
func shmexgo_call_into(hp C.uintptr_t, action *C.char, args *C.uint8_t, argsLen C.size_t, ns C.int64_t, buf *C.uint8_t, capacity C.size_t, n *C.size_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*handleObj](handleOf(hp), kindHandle)
	if err != nil {
		return fail(err)
	}
	if action == nil {
		return null("action")
	}
	if n == nil {
		return null("len")
	}
	a, err := slice(unsafe.Pointer(args), argsLen, exchange.MaxPayloadSize, "args")
	if err != nil {
		return fail(err)
	}
	res, err := o.call(actionName(action), a, int64(ns))
	if err != nil {
		return fail(err)
	}
	return putBytes(res, buf, capacity, n)
}

//export shmexgo_action
func shmexgo_action(hp C.uintptr_t, action *C.char, args *C.uint8_t, argsLen C.size_t, out *C.uintptr_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*handleObj](handleOf(hp), kindHandle)
	if err != nil {
		return fail(err)
	}
	if action == nil {
		return null("action")
	}
	if out == nil {
		return null("out")
	}
	a, err := slice(unsafe.Pointer(args), argsLen, exchange.MaxPayloadSize, "args")
	if err != nil {
		return fail(err)
	}
	_, h, err := o.action(actionName(action), a)
	if err != nil {
		return fail(err)
	}
	*out = C.uintptr_t(h)
	return C.SHMEX_OK
}

//export shmexgo_action_loan
func shmexgo_action_loan(hp C.uintptr_t, action *C.char, l C.uintptr_t, proxy *C.uint8_t, capacity C.size_t, plen *C.size_t, out *C.uintptr_t) (st C.int) {
	defer guard(&st)
	if plen != nil {
		*plen = 0 // set to the proxy's length once the loan is committed
	}
	o, err := lookup[*handleObj](handleOf(hp), kindHandle)
	if err != nil {
		return fail(err)
	}
	if action == nil {
		return null("action")
	}
	if out == nil {
		return null("out")
	}
	if proxy != nil && (plen == nil || capacity < maxProxy) {
		return fail(fmt.Errorf("%w: the proxy buffer must hold SHMEX_PROXY_MAX (%d) bytes and come with len, has %d", errInval, maxProxy, capacity))
	}
	name := actionName(action)
	if name == "" {
		return fail(fmt.Errorf("%w: empty action name", errInval))
	}
	lo, err := lookup[*loanObj](handleOf(l), kindLoan)
	if err != nil {
		return fail(err)
	}
	// Past its checks: commit, then send the proxy as the arguments. A
	// failed send leaves the loan committed, as shmex_loan_commit then
	// shmex_action would; *len tells the caller so.
	p, err := lo.commit()
	if err != nil {
		return fail(err)
	}
	if proxy != nil {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(proxy)), len(p)), p)
		*plen = C.size_t(len(p))
	}
	_, h, err := o.action(name, p)
	if err != nil {
		return fail(err)
	}
	*out = C.uintptr_t(h)
	return C.SHMEX_OK
}

func futureOf(f C.uintptr_t) (*futureObj, error) {
	return lookup[*futureObj](handleOf(f), kindFuture)
}

//export shmexgo_future_done
func shmexgo_future_done(f C.uintptr_t) (st C.int) {
	defer guard(&st)
	o, err := futureOf(f)
	if err != nil {
		return fail(err)
	}
	if o.done() {
		return 1
	}
	return 0
}

//export shmexgo_future_wait
func shmexgo_future_wait(f C.uintptr_t, ns C.int64_t, result **C.uint8_t, resultLen *C.size_t) (st C.int) {
	defer guard(&st)
	o, err := futureOf(f)
	if err != nil {
		return fail(err)
	}
	res, err := o.wait(int64(ns))
	if err != nil {
		return fail(err)
	}
	return putResult(res, result, resultLen)
}

//export shmexgo_future_take
func shmexgo_future_take(f C.uintptr_t, ns C.int64_t, buf *C.uint8_t, capacity C.size_t, n *C.size_t) (st C.int) {
	defer guard(&st)
	o, err := futureOf(f)
	if err != nil {
		return fail(err)
	}
	if n == nil {
		return null("len")
	}
	res, err := o.wait(int64(ns))
	if err != nil {
		if !o.done() {
			return fail(err) // still pending (timed out): kept
		}
		res, err = o.f.Result() // the outcome, even if it came just after the timeout
	}
	if err == nil {
		if st := putBytes(res, buf, capacity, n); st != C.SHMEX_OK {
			return st // kept, to take again with room
		}
	}
	closeObject(o)
	if err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_future_cancel
func shmexgo_future_cancel(f C.uintptr_t) (st C.int) {
	defer guard(&st)
	o, err := futureOf(f)
	if err != nil {
		return fail(err)
	}
	o.f.Cancel()
	return C.SHMEX_OK
}

//export shmexgo_future_free
func shmexgo_future_free(f C.uintptr_t) C.int { return closeKind[*futureObj](f, kindFuture) }

//export shmexgo_ping
func shmexgo_ping(hp C.uintptr_t, ns C.int64_t, rtt *C.int64_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*handleObj](handleOf(hp), kindHandle)
	if err != nil {
		return fail(err)
	}
	d, err := o.ping(int64(ns))
	if err != nil {
		return fail(err)
	}
	if rtt != nil {
		*rtt = C.int64_t(d.Nanoseconds())
	}
	return C.SHMEX_OK
}

//export shmexgo_shutdown
func shmexgo_shutdown(hp C.uintptr_t, ns C.int64_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*handleObj](handleOf(hp), kindHandle)
	if err != nil {
		return fail(err)
	}
	if err := o.shutdown(int64(ns)); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_agent_open
func shmexgo_agent_open(x C.uintptr_t, behavior *C.char, impl **C.char, nimpl C.size_t, name *C.char, id *C.shmex_id, out *C.uintptr_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if behavior == nil && id == nil {
		return null("behavior")
	}
	if out == nil {
		return null("out")
	}
	implements, err := goStrs(impl, nimpl)
	if err != nil {
		return fail(err)
	}
	var aid *exchange.EntityID
	if id != nil {
		g := goID(id)
		aid = &g
	}
	_, h, err := e.openAgent(goStr(behavior), implements, goStr(name), aid)
	if err != nil {
		return fail(err)
	}
	*out = C.uintptr_t(h)
	return C.SHMEX_OK
}

func agentOf(a C.uintptr_t) (*agentObj, error) { return lookup[*agentObj](handleOf(a), kindAgent) }

//export shmexgo_agent_id
func shmexgo_agent_id(a C.uintptr_t, out *C.shmex_id) (st C.int) {
	defer guard(&st)
	o, err := agentOf(a)
	if err != nil {
		return fail(err)
	}
	if out == nil {
		return null("out")
	}
	putID(out, o.id)
	return C.SHMEX_OK
}

//export shmexgo_agent_recv
func shmexgo_agent_recv(a C.uintptr_t, ns C.int64_t, req *C.uintptr_t, msg *C.shmex_message) (st C.int) {
	defer guard(&st)
	o, err := agentOf(a)
	if err != nil {
		return fail(err)
	}
	if req == nil {
		return null("req")
	}
	r, h, err := o.recv(int64(ns))
	if err != nil {
		return fail(err)
	}
	if msg != nil {
		putMsg(msg, r.msg)
	}
	*req = C.uintptr_t(h)
	return C.SHMEX_OK
}

func requestOf(r C.uintptr_t) (*requestObj, error) {
	return lookup[*requestObj](handleOf(r), kindRequest)
}

//export shmexgo_request_reply
func shmexgo_request_reply(r C.uintptr_t, result *C.uint8_t, n C.size_t) (st C.int) {
	defer guard(&st)
	o, err := requestOf(r)
	if err != nil {
		return fail(err)
	}
	res, err := slice(unsafe.Pointer(result), n, exchange.MaxPayloadSize, "result")
	if err != nil {
		return fail(err)
	}
	if err := o.reply(res); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_request_fail
func shmexgo_request_fail(r C.uintptr_t, kind, message *C.char) (st C.int) {
	defer guard(&st)
	o, err := requestOf(r)
	if err != nil {
		return fail(err)
	}
	if err := o.failRequest(goStr(kind), goStr(message)); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

// shmexgo_request_done is called by shmex_agent_serve after the callback
// returned status: a request it left unanswered is failed.
//
//export shmexgo_request_done
func shmexgo_request_done(r C.uintptr_t, status C.int) {
	o, ok := find[*requestObj](handleOf(r))
	if !ok {
		return // answered (and freed) by the callback: the normal case
	}
	o.failRequest(errorKindActionGeneric, fmt.Sprintf("the action returned status %d (%s) without answering", status, C.GoString(C.shmex_strerror(status))))
}

//export shmexgo_agent_shutdown
func shmexgo_agent_shutdown(a C.uintptr_t) (st C.int) {
	defer guard(&st)
	o, err := agentOf(a)
	if err != nil {
		return fail(err)
	}
	o.shutdown()
	return C.SHMEX_OK
}

//export shmexgo_agent_close
func shmexgo_agent_close(a C.uintptr_t) C.int { return closeKind[*agentObj](a, kindAgent) }

//export shmexgo_loan_alloc
func shmexgo_loan_alloc(x C.uintptr_t, n C.size_t, lifetime C.int, leaseNS C.int64_t, loan *C.uintptr_t, data *unsafe.Pointer) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if loan == nil {
		return null("loan")
	}
	if data == nil {
		return null("data")
	}
	o, h, err := e.allocLoan(uint64(n), int(lifetime), int64(leaseNS))
	if err != nil {
		return fail(err)
	}
	*data = o.data()
	*loan = C.uintptr_t(h)
	return C.SHMEX_OK
}

//export shmexgo_loan_commit
func shmexgo_loan_commit(l C.uintptr_t, proxy *C.uint8_t, capacity C.size_t, n *C.size_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*loanObj](handleOf(l), kindLoan)
	if err != nil {
		return fail(err)
	}
	if n == nil {
		return null("len")
	}
	if proxy == nil || capacity < maxProxy {
		// Checked before the commit: a commit that cannot hand its proxy
		// back would leak the payload.
		return fail(fmt.Errorf("%w: the proxy buffer must hold SHMEX_PROXY_MAX (%d) bytes, has %d", errInval, maxProxy, capacity))
	}
	b, err := o.commit()
	if err != nil {
		return fail(err)
	}
	return putBytes(b, proxy, capacity, n)
}

//export shmexgo_loan_abort
func shmexgo_loan_abort(l C.uintptr_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*loanObj](handleOf(l), kindLoan)
	if err != nil {
		return fail(err)
	}
	if err := o.abort(); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_put
func shmexgo_put(x C.uintptr_t, data unsafe.Pointer, n C.size_t, lifetime C.int, leaseNS C.int64_t, proxy *C.uint8_t, capacity C.size_t, plen *C.size_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if plen == nil {
		return null("len")
	}
	if proxy == nil || capacity < maxProxy {
		return fail(fmt.Errorf("%w: the proxy buffer must hold SHMEX_PROXY_MAX (%d) bytes, has %d", errInval, maxProxy, capacity))
	}
	in, err := slice(data, n, 1<<48, "data")
	if err != nil {
		return fail(err)
	}
	b, err := e.put(in, int(lifetime), int64(leaseNS))
	if err != nil {
		return fail(err)
	}
	return putBytes(b, proxy, capacity, plen)
}

//export shmexgo_resolve
func shmexgo_resolve(x C.uintptr_t, b *C.uint8_t, n C.size_t, view *C.uintptr_t, data *unsafe.Pointer, dataLen *C.size_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if b == nil {
		return null("proxy")
	}
	if view == nil {
		return null("view")
	}
	if data == nil {
		return null("data")
	}
	if dataLen == nil {
		return null("n")
	}
	p, err := slice(unsafe.Pointer(b), n, maxProxy*4, "proxy")
	if err != nil {
		return fail(err)
	}
	o, h, err := e.resolve(p)
	if err != nil {
		return fail(err)
	}
	*data = o.data()
	*dataLen = C.size_t(len(o.b))
	*view = C.uintptr_t(h)
	return C.SHMEX_OK
}

//export shmexgo_is_proxy
func shmexgo_is_proxy(b *C.uint8_t, n C.size_t) C.int {
	if b == nil || n > maxProxy*4 {
		return 0
	}
	if _, _, err := proxystore.ParseProxy(goBytes(unsafe.Pointer(b), int(n))); err != nil {
		return 0
	}
	return 1
}

//export shmexgo_view_form
func shmexgo_view_form(v C.uintptr_t) (st C.int) {
	defer guard(&st)
	o, err := lookup[*viewObj](handleOf(v), kindView)
	if err != nil {
		return fail(err)
	}
	return C.int(o.form)
}

//export shmexgo_reserve
func shmexgo_reserve(x C.uintptr_t, sizes *C.size_t, n C.size_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if n > 0 && sizes == nil {
		return null("sizes")
	}
	if n > 1<<16 {
		return fail(fmt.Errorf("%w: %d sizes", errInval, n))
	}
	var in []int
	if n > 0 {
		for _, s := range unsafe.Slice(sizes, n) {
			if uint64(s) > 1<<48 {
				return fail(fmt.Errorf("%w: a reservation of %d bytes", errInval, uint64(s)))
			}
			in = append(in, int(s))
		}
	}
	if err := e.reserve(in); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}

//export shmexgo_view_release
func shmexgo_view_release(v C.uintptr_t) C.int { return closeKind[*viewObj](v, kindView) }

//export shmexgo_proxy_free
func shmexgo_proxy_free(x C.uintptr_t, b *C.uint8_t, n C.size_t) (st C.int) {
	defer guard(&st)
	e, err := exchangeOf(x)
	if err != nil {
		return fail(err)
	}
	if b == nil {
		return null("proxy")
	}
	p, err := slice(unsafe.Pointer(b), n, maxProxy*4, "proxy")
	if err != nil {
		return fail(err)
	}
	if err := e.freeProxy(p); err != nil {
		return fail(err)
	}
	return C.SHMEX_OK
}
