//go:build cgo

package iceoryx

/*
#cgo CFLAGS: -O2 -I/usr/include/iceoryx/v2.0.3 -I/usr/local/include/iceoryx/v2.0.3
#cgo LDFLAGS: -ldl

#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// SB_NO_IOX (CGO_CFLAGS=-DSB_NO_IOX) builds the stub even where the headers are.
#if defined(__has_include) && !defined(SB_NO_IOX)
#if __has_include(<iceoryx_binding_c/runtime.h>)
#define SB_IOX 1
#endif
#endif

enum { SB_MSG = 64 };            // bytes each way
enum { SB_RR = 0, SB_PUBSUB = 1 }; // patterns
enum { SB_DRIVER = 0, SB_ECHO = 1 }; // sides
static const uint64_t SB_STOP = UINT64_MAX; // sequence number that ends an echo loop

static int64_t sb_now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void sb_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

#ifdef SB_IOX
#include <dlfcn.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/client.h>
#include <iceoryx_binding_c/server.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/wait_set.h>
#include <iceoryx_binding_c/notification_info.h>

// Every function of the binding used here, called through a pointer that
// sb_load fills with dlsym: the module never links against iceoryx.
#define SB_FUNCS(X) \
	X(iox_runtime_init) X(iox_runtime_shutdown) X(iox_set_loglevel) \
	X(iox_client_options_init) X(iox_client_init) X(iox_client_deinit) X(iox_client_loan_request) \
	X(iox_client_send) X(iox_client_take_response) X(iox_client_release_response) \
	X(iox_client_get_connection_state) \
	X(iox_server_options_init) X(iox_server_init) X(iox_server_deinit) X(iox_server_take_request) \
	X(iox_server_release_request) X(iox_server_loan_response) X(iox_server_send) X(iox_server_has_clients) \
	X(iox_pub_options_init) X(iox_pub_init) X(iox_pub_deinit) X(iox_pub_loan_chunk) X(iox_pub_publish_chunk) \
	X(iox_pub_has_subscribers) \
	X(iox_sub_options_init) X(iox_sub_init) X(iox_sub_deinit) X(iox_sub_take_chunk) X(iox_sub_release_chunk) \
	X(iox_sub_get_subscription_state) \
	X(iox_ws_init) X(iox_ws_deinit) X(iox_ws_timed_wait) X(iox_ws_attach_subscriber_state) \
	X(iox_ws_attach_client_event) X(iox_ws_attach_server_event) X(iox_ws_detach_subscriber_state) \
	X(iox_ws_detach_client_event) X(iox_ws_detach_server_event)

#define SB_DECL(f) static __typeof__(f) *p_##f;
SB_FUNCS(SB_DECL)

static void *sb_lib;

static int sb_load(char *err, size_t n) {
	if (sb_lib) return 0;
	void *lib = dlopen("libiceoryx_binding_c.so", RTLD_NOW | RTLD_LOCAL);
	if (!lib) lib = dlopen("libiceoryx_binding_c.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(err, n, "dlopen libiceoryx_binding_c.so: %s", dlerror());
		return -1;
	}
#define SB_LOAD(f) \
	p_##f = (__typeof__(f) *)dlsym(lib, #f); \
	if (!p_##f) { snprintf(err, n, "libiceoryx_binding_c.so lacks %s", #f); dlclose(lib); return -1; }
	SB_FUNCS(SB_LOAD)
	sb_lib = lib;
	return 0;
}

static void sb_init(const char *name) {
	p_iox_set_loglevel(Iceoryx_LogLevel_Warn);
	p_iox_runtime_init(name);
}

static void sb_shutdown(void) { p_iox_runtime_shutdown(); }

// sb_exit ends the process through libc's exit, which runs the C++ static
// destructors: the runtime's tells RouDi that this process is gone.
static void sb_exit(int code) { exit(code); }

// sb_peer is one side of a ping-pong: a client or server (request/response),
// or a publisher and a subscriber on two topics (publish/subscribe), and a
// WaitSet when the side waits instead of polling.
typedef struct {
	int pattern, side, wait;
	iox_client_storage_t cs; iox_client_t client;
	iox_server_storage_t ss; iox_server_t server;
	iox_pub_storage_t ps;    iox_pub_t pub;
	iox_sub_storage_t us;    iox_sub_t sub;
	iox_ws_storage_t ws;     iox_ws_t waitset;
	uint64_t seq;
} sb_peer;

static void sb_close(sb_peer *p) {
	if (!p) return;
	if (p->waitset) {
		if (p->client) p_iox_ws_detach_client_event(p->waitset, p->client, ClientEvent_RESPONSE_RECEIVED);
		if (p->server) p_iox_ws_detach_server_event(p->waitset, p->server, ServerEvent_REQUEST_RECEIVED);
		if (p->sub) p_iox_ws_detach_subscriber_state(p->waitset, p->sub, SubscriberState_HAS_DATA);
		p_iox_ws_deinit(p->waitset);
	}
	if (p->client) p_iox_client_deinit(p->client);
	if (p->server) p_iox_server_deinit(p->server);
	if (p->pub) p_iox_pub_deinit(p->pub);
	if (p->sub) p_iox_sub_deinit(p->sub);
	free(p);
}

// sb_ready reports whether the peer's ports are connected to the other side.
static bool sb_ready(sb_peer *p) {
	if (p->pattern == SB_RR) {
		if (p->client) return p_iox_client_get_connection_state(p->client) == ConnectionState_CONNECTED;
		return p_iox_server_has_clients(p->server);
	}
	return p_iox_sub_get_subscription_state(p->sub) == SubscribeState_SUBSCRIBED && p_iox_pub_has_subscribers(p->pub);
}

// sb_open creates the ports of one side of service.
static sb_peer *sb_open(int pattern, int side, int wait, const char *service, char *err, size_t n) {
	sb_peer *p = calloc(1, sizeof *p);
	if (!p) { snprintf(err, n, "out of memory"); return NULL; }
	p->pattern = pattern; p->side = side; p->wait = wait;
	if (pattern == SB_RR) {
		if (side == SB_DRIVER) {
			iox_client_options_t o;
			p_iox_client_options_init(&o);
			o.responseQueueCapacity = 4;
			p->client = p_iox_client_init(&p->cs, "shmbench", service, "rr", &o);
		} else {
			iox_server_options_t o;
			p_iox_server_options_init(&o);
			o.requestQueueCapacity = 4;
			p->server = p_iox_server_init(&p->ss, "shmbench", service, "rr", &o);
		}
	} else {
		// The driver publishes on "ping" and subscribes to "pong"; the echo the reverse.
		const char *out = side == SB_DRIVER ? "ping" : "pong", *in = side == SB_DRIVER ? "pong" : "ping";
		iox_pub_options_t po;
		p_iox_pub_options_init(&po);
		po.historyCapacity = 0;
		p->pub = p_iox_pub_init(&p->ps, "shmbench", service, out, &po);
		iox_sub_options_t so;
		p_iox_sub_options_init(&so);
		so.queueCapacity = 4;
		so.historyRequest = 0;
		p->sub = p_iox_sub_init(&p->us, "shmbench", service, in, &so);
	}
	if (wait) {
		p->waitset = p_iox_ws_init(&p->ws);
		int r = 0;
		if (p->client) r = p_iox_ws_attach_client_event(p->waitset, p->client, ClientEvent_RESPONSE_RECEIVED, 1, NULL);
		else if (p->server) r = p_iox_ws_attach_server_event(p->waitset, p->server, ServerEvent_REQUEST_RECEIVED, 1, NULL);
		else r = p_iox_ws_attach_subscriber_state(p->waitset, p->sub, SubscriberState_HAS_DATA, 1, NULL);
		if (r != WaitSetResult_SUCCESS) {
			snprintf(err, n, "attach to the WaitSet: result %d", r);
			sb_close(p);
			return NULL;
		}
	}
	return p;
}

// sb_connect waits, at most timeout_ns, until the other side is connected
// (RouDi's discovery runs periodically: this polls every millisecond).
static int sb_connect(sb_peer *p, int64_t timeout_ns, char *err, size_t n) {
	int64_t deadline = sb_now() + timeout_ns;
	while (!sb_ready(p)) {
		if (sb_now() > deadline) {
			snprintf(err, n, "%s side not connected within %lld ms", p->side == SB_DRIVER ? "driver" : "echo",
				(long long)(timeout_ns / 1000000));
			return -1;
		}
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

// sb_take takes the next message into msg (SB_MSG bytes): 1 when it took
// one, 0 when none is there, -1 on error.
static int sb_take(sb_peer *p, uint8_t *msg, char *err, size_t n) {
	const void *c = NULL;
	if (p->client) {
		int r = p_iox_client_take_response(p->client, &c);
		if (r == ChunkReceiveResult_NO_CHUNK_AVAILABLE) return 0;
		if (r != ChunkReceiveResult_SUCCESS) { snprintf(err, n, "take response: result %d", r); return -1; }
		memcpy(msg, c, SB_MSG);
		p_iox_client_release_response(p->client, c);
		return 1;
	}
	if (p->server) {
		int r = p_iox_server_take_request(p->server, &c);
		if (r == ServerRequestResult_NO_PENDING_REQUESTS) return 0;
		if (r != ServerRequestResult_SUCCESS) { snprintf(err, n, "take request: result %d", r); return -1; }
		memcpy(msg, c, SB_MSG);
		uint64_t seq;
		memcpy(&seq, c, sizeof seq);
		if (seq == SB_STOP) { // unanswered: the driver is leaving
			p_iox_server_release_request(p->server, c);
			return 1;
		}
		// The response is loaned against the request, so answer before releasing it.
		void *resp = NULL;
		int a = p_iox_server_loan_response(p->server, c, &resp, SB_MSG);
		if (a != AllocationResult_SUCCESS) {
			p_iox_server_release_request(p->server, c);
			snprintf(err, n, "loan response: result %d", a);
			return -1;
		}
		memcpy(resp, c, SB_MSG);
		p_iox_server_release_request(p->server, c);
		int s = p_iox_server_send(p->server, resp);
		if (s != ServerSendResult_SUCCESS) { snprintf(err, n, "send response: result %d", s); return -1; }
		return 1;
	}
	int r = p_iox_sub_take_chunk(p->sub, &c);
	if (r == ChunkReceiveResult_NO_CHUNK_AVAILABLE) return 0;
	if (r != ChunkReceiveResult_SUCCESS) { snprintf(err, n, "take chunk: result %d", r); return -1; }
	memcpy(msg, c, SB_MSG);
	p_iox_sub_release_chunk(p->sub, c);
	return 1;
}

// sb_send sends msg: a request from the driver's client, or a chunk on
// the side's publisher. A server answers inside sb_take.
static int sb_send(sb_peer *p, const uint8_t *msg, char *err, size_t n) {
	void *c = NULL;
	if (p->client) {
		int a = p_iox_client_loan_request(p->client, &c, SB_MSG);
		if (a != AllocationResult_SUCCESS) { snprintf(err, n, "loan request: result %d", a); return -1; }
		memcpy(c, msg, SB_MSG);
		int s = p_iox_client_send(p->client, c);
		if (s != ClientSendResult_SUCCESS) { snprintf(err, n, "send request: result %d", s); return -1; }
		return 0;
	}
	int a = p_iox_pub_loan_chunk(p->pub, &c, SB_MSG);
	if (a != AllocationResult_SUCCESS) { snprintf(err, n, "loan chunk: result %d", a); return -1; }
	memcpy(c, msg, SB_MSG);
	p_iox_pub_publish_chunk(p->pub, c);
	return 0;
}

// sb_recv waits until deadline (monotonic ns) for the next message:
// polling take with a PAUSE between tries, or sleeping on the WaitSet.
static int sb_recv(sb_peer *p, uint8_t *msg, int64_t deadline, char *err, size_t n) {
	for (uint64_t spins = 1;; spins++) {
		int r = sb_take(p, msg, err, n);
		if (r != 0) return r;
		if (p->wait) {
			int64_t left = deadline - sb_now();
			if (left <= 0) break;
			if (left > 100000000) left = 100000000;
			struct timespec ts = {left / 1000000000, left % 1000000000};
			iox_notification_info_t info[4];
			uint64_t missed = 0;
			p_iox_ws_timed_wait(p->waitset, ts, info, 4, &missed);
		} else {
			sb_pause();
			if ((spins & 1023) == 0 && sb_now() > deadline) break;
		}
	}
	snprintf(err, n, "no message within the timeout");
	return -1;
}

// sb_roundtrip sends one message from the driver and waits for its echo.
static int sb_roundtrip(sb_peer *p, int64_t timeout_ns, char *err, size_t n) {
	uint8_t msg[SB_MSG] = {0};
	uint64_t seq = ++p->seq;
	memcpy(msg, &seq, sizeof seq);
	if (sb_send(p, msg, err, n) < 0) return -1;
	if (sb_recv(p, msg, sb_now() + timeout_ns, err, n) < 0) return -1;
	uint64_t got;
	memcpy(&got, msg, sizeof got);
	if (got != seq) { snprintf(err, n, "echo of message %llu, want %llu", (unsigned long long)got, (unsigned long long)seq); return -1; }
	return 0;
}

// sb_stop tells the echo side to leave its loop.
static int sb_stop(sb_peer *p, char *err, size_t n) {
	uint8_t msg[SB_MSG] = {0};
	memcpy(msg, &SB_STOP, sizeof SB_STOP);
	return sb_send(p, msg, err, n);
}

// sb_serve answers every message until the stop message, failing when none
// comes for idle_ns.
static int sb_serve(sb_peer *p, int64_t idle_ns, int64_t *served, char *err, size_t n) {
	uint8_t msg[SB_MSG];
	for (;;) {
		if (sb_recv(p, msg, sb_now() + idle_ns, err, n) < 0) return -1;
		uint64_t seq;
		memcpy(&seq, msg, sizeof seq);
		if (seq == SB_STOP) return 0;
		(*served)++;
		if (p->pub && sb_send(p, msg, err, n) < 0) return -1;
	}
}

#else // !SB_IOX: built without the headers

typedef struct { int unused; } sb_peer;
static int sb_load(char *err, size_t n) {
	snprintf(err, n, "built without the iceoryx C binding's headers (install libiceoryx-binding-c-dev and rebuild)");
	return -1;
}
static void sb_init(const char *name) {}
static void sb_shutdown(void) {}
static void sb_exit(int code) { exit(code); }
static sb_peer *sb_open(int pattern, int side, int wait, const char *service, char *err, size_t n) {
	sb_load(err, n);
	return NULL;
}
static int sb_connect(sb_peer *p, int64_t timeout_ns, char *err, size_t n) { return sb_load(err, n); }
static void sb_close(sb_peer *p) {}
static int sb_roundtrip(sb_peer *p, int64_t timeout_ns, char *err, size_t n) { return sb_load(err, n); }
static int sb_stop(sb_peer *p, char *err, size_t n) { return sb_load(err, n); }
static int sb_serve(sb_peer *p, int64_t idle_ns, int64_t *served, char *err, size_t n) { return sb_load(err, n); }

#endif
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

const errLen = 256

var (
	loadOnce sync.Once
	loadErr  error
)

func cerr(b *[errLen]C.char) error {
	return errors.New("iceoryx: " + C.GoString(&b[0]))
}

// Available loads the binding on first use and reports whether it can be
// used: nil, or why not.
func Available() error {
	loadOnce.Do(func() {
		var e [errLen]C.char
		if C.sb_load(&e[0], errLen) != 0 {
			loadErr = cerr(&e)
		}
	})
	return loadErr
}

var (
	initMu   sync.Mutex
	initName string
)

// Init registers this process with RouDi under name. RouDi must be running
// (iceoryx waits for it, then aborts the process). A process has one
// runtime: a second Init fails.
func Init(name string) error {
	if err := Available(); err != nil {
		return err
	}
	initMu.Lock()
	defer initMu.Unlock()
	if initName != "" {
		return fmt.Errorf("iceoryx: runtime already initialized as %q", initName)
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	C.sb_init(cs)
	initName = name
	return nil
}

// Exit ends the process with code after stopping the runtime, so that RouDi
// learns it is gone: iceoryx deregisters a process in the destructor of its
// runtime, which only libc's exit runs (os.Exit runs no C++ destructors). A
// process that exits otherwise stays registered until RouDi's monitoring
// notices, and a RouDi stopped before then aborts on the process it cannot
// signal and leaves its segments behind. Close every Peer first.
func Exit(code int) {
	initMu.Lock()
	if initName != "" {
		C.sb_shutdown()
	}
	C.sb_exit(C.int(code))
}

// Pattern is the messaging pattern of a ping-pong.
type Pattern int

// Patterns.
const (
	RequestResponse  Pattern = C.SB_RR     // a client's request answered by a server
	PublishSubscribe Pattern = C.SB_PUBSUB // a publisher and a subscriber each way
)

// Side is one end of a ping-pong.
type Side int

// Sides.
const (
	Driver Side = C.SB_DRIVER // sends and times round trips
	Echo   Side = C.SB_ECHO   // answers
)

// Peer is one side of a ping-pong of 64-byte messages. It is not safe for
// concurrent use.
type Peer struct {
	p *C.sb_peer
}

// Open creates the ports of one side of the ping-pong on service. With
// wait, the side sleeps on a WaitSet for each message; without, it polls.
// The driver calls Connect before its first round trip; the echo side
// needs not, as the driver sends only once everything is connected.
func Open(pattern Pattern, side Side, wait bool, service string) (*Peer, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	cs := C.CString(service)
	defer C.free(unsafe.Pointer(cs))
	var e [errLen]C.char
	w := C.int(0)
	if wait {
		w = 1
	}
	p := C.sb_open(C.int(pattern), C.int(side), w, cs, &e[0], errLen)
	if p == nil {
		return nil, cerr(&e)
	}
	return &Peer{p: p}, nil
}

// Connect waits at most timeout until the other side is connected.
func (p *Peer) Connect(timeout time.Duration) error {
	var e [errLen]C.char
	if C.sb_connect(p.p, C.int64_t(timeout), &e[0], errLen) != 0 {
		return cerr(&e)
	}
	return nil
}

// RoundTrip sends one message (driver side) and waits at most timeout for
// its echo.
func (p *Peer) RoundTrip(timeout time.Duration) error {
	var e [errLen]C.char
	if C.sb_roundtrip(p.p, C.int64_t(timeout), &e[0], errLen) != 0 {
		return cerr(&e)
	}
	return nil
}

// Stop sends the message that ends the echo side's Serve (driver side).
func (p *Peer) Stop() error {
	var e [errLen]C.char
	if C.sb_stop(p.p, &e[0], errLen) != 0 {
		return cerr(&e)
	}
	return nil
}

// Serve answers messages (echo side) until the driver's Stop, and fails
// when no message comes for idle. It returns how many it answered.
func (p *Peer) Serve(idle time.Duration) (int64, error) {
	var e [errLen]C.char
	var served C.int64_t
	if C.sb_serve(p.p, C.int64_t(idle), &served, &e[0], errLen) != 0 {
		return int64(served), cerr(&e)
	}
	return int64(served), nil
}

// Close releases the ports.
func (p *Peer) Close() {
	if p.p != nil {
		C.sb_close(p.p)
		p.p = nil
	}
}
