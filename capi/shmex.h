/*
 * shmex.h: the C ABI of shmex, a zero-copy shared-memory exchange for the
 * agent processes of one node (libshmex: the Go core built with
 * `go build -buildmode=c-shared` or `-buildmode=c-archive`).
 *
 * This header is written by hand and versioned (SHMEX_VERSION_*); it holds
 * no Go type. Every function is thread-safe and documented with who owns
 * which memory and for how long. The rules that hold everywhere:
 *
 *   Status codes.  Every function that can fail returns an int: SHMEX_OK (0)
 *     or a negative SHMEX_E* code. The failure's message is then available
 *     on the calling thread from shmex_last_error() (and, for an error
 *     answered by an agent, its kind from shmex_last_error_kind()) until the
 *     next failing call on that thread. A successful call does not clear it.
 *     Bad handles (never made, closed, or of the wrong kind), NULL pointers
 *     where a pointer is required, bad lengths and closed exchanges are
 *     status codes, never a crash.
 *
 *   Handles.  shmex_exchange*, shmex_client*, shmex_handle*, shmex_future*,
 *     shmex_agent*, shmex_request*, shmex_mailbox*, shmex_loan* and
 *     shmex_view* are opaque: never dereference them. They are numbers
 *     looked up in a table, never reused, so a stale or forged handle is
 *     SHMEX_EBADHANDLE. Every handle belongs to the exchange it was made
 *     from (clients own their handles, handles their futures, agents their
 *     requests); closing a parent closes its children. Any thread may use
 *     any handle; closing a handle while another thread uses it makes that
 *     use fail with a status (SHMEX_ECLOSED or SHMEX_EBADHANDLE).
 *
 *   Timeouts.  int64_t timeout_ns: negative (SHMEX_FOREVER) waits without a
 *     bound, 0 does not wait, positive waits at most that many nanoseconds;
 *     running out is SHMEX_ETIMEDOUT. Closing the handle (or its exchange)
 *     from another thread ends a wait with SHMEX_ECLOSED.
 *
 *   Memory.  Input buffers (names, arguments, messages) are read during the
 *     call only: the library copies what it keeps. Output buffers are
 *     either the caller's (a pointer and a capacity: SHMEX_ETRUNCATED when
 *     too small, with the needed length written) or the library's: results
 *     of calls are malloc'ed for the caller, who frees them with
 *     shmex_free(); pointers into a request, a received message, a loan or
 *     a view are the library's and stay valid for the lifetime stated at
 *     each function.
 *
 *   Zero-copy payloads.  A loan is writable memory inside this process's
 *     arena (shared memory of the exchange); committing it yields a proxy
 *     (SHMEX_PROXY_MAX bytes at most, a MessagePack ext value) that travels
 *     in action arguments or results in place of the bytes. A receiver
 *     resolves a proxy to a read-only pointer into the sender's arena. No
 *     byte of the payload is copied anywhere.
 *
 *   The Go runtime.  libshmex carries a Go runtime: it starts threads on
 *     load, installs handlers for some signals (SIGSEGV, SIGBUS, SIGFPE,
 *     SIGPIPE, SIGPROF, SIGURG...) that forward to the handlers the program
 *     had, and it does not survive fork() without exec(): a child of fork()
 *     must not call into libshmex (see docs/embedding.md).
 *
 * Arguments and results of actions are MessagePack bytes, the convention of
 * every shmex peer. The shmex_mp_* functions at the end are a small
 * MessagePack writer and reader for callers without a MessagePack library.
 */
#ifndef SHMEX_H
#define SHMEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version */

#define SHMEX_VERSION_MAJOR 0
#define SHMEX_VERSION_MINOR 2
#define SHMEX_VERSION_PATCH 0
/* SHMEX_VERSION is MAJOR*10000 + MINOR*100 + PATCH: compare with >=. */
#define SHMEX_VERSION (SHMEX_VERSION_MAJOR * 10000 + SHMEX_VERSION_MINOR * 100 + SHMEX_VERSION_PATCH)
#define SHMEX_VERSION_STRING "0.2.0"

/* shmex_version returns the SHMEX_VERSION the library was built with; a
 * program checks it against the header's at start. Static; never fails. */
int shmex_version(void);
/* shmex_version_string returns "MAJOR.MINOR.PATCH (go1.xx)". Static string,
 * valid for the life of the process. */
const char *shmex_version_string(void);

/* ----------------------------------------------------------- status codes */

#define SHMEX_OK 0
#define SHMEX_EINVAL (-1)            /* a bad argument: NULL, a bad length, a malformed id or name */
#define SHMEX_EBADHANDLE (-2)        /* a handle never made, closed, or of the wrong kind */
#define SHMEX_ECLOSED (-3)           /* the exchange, client, handle or agent is closed */
#define SHMEX_EBADID (-4)            /* no mailbox for this entity id (Academy's BadEntityIdError) */
#define SHMEX_EMAILBOX_CLOSED (-5)   /* the mailbox is terminated (Academy's MailboxClosedError) */
#define SHMEX_ETIMEDOUT (-6)         /* the timeout ran out */
#define SHMEX_EPENDING (-7)          /* the future is not complete yet */
#define SHMEX_EREMOTE (-8)           /* the agent answered with an error: see shmex_last_error_kind() */
#define SHMEX_EAGENT_TERMINATED (-9) /* the agent was terminated, or died, with the call in flight */
#define SHMEX_ECANCELED (-10)        /* the future was cancelled */
#define SHMEX_ESHUTDOWN (-11)        /* the agent was asked to shut down: stop serving */
#define SHMEX_ETOOLARGE (-12)        /* a message larger than the mailbox takes: send a proxy */
#define SHMEX_ENOSPACE (-13)         /* the arena, /dev/shm or the registry is full */
#define SHMEX_EPROXY (-14)           /* a bad, stale, foreign or expired proxy, or its owner died */
#define SHMEX_ETRUNCATED (-15)       /* an output buffer is too small: the needed length was written */
#define SHMEX_EEXIST (-16)           /* the entity id is already registered */
#define SHMEX_EIO (-17)              /* any other failure: see shmex_last_error() */
#define SHMEX_EBUSY (-18)            /* the mailbox already has a receiver in a live process */

/* shmex_strerror names a status code ("SHMEX_ETIMEDOUT: timed out").
 * Static string; never NULL. */
const char *shmex_strerror(int status);

/* shmex_last_error returns the message of the last failure on the calling
 * thread, "" if none. The string belongs to the library and is valid until
 * the next failing call on this thread. */
const char *shmex_last_error(void);

/* shmex_last_error_kind returns the kind of the last failure on the calling
 * thread when an agent answered with an error (SHMEX_EREMOTE,
 * SHMEX_EAGENT_TERMINATED): Academy's exception names, such as
 * "UnknownActionError", "MailboxTerminatedError", or whatever kind the agent
 * chose; "" otherwise. Same lifetime as shmex_last_error(). */
const char *shmex_last_error_kind(void);

/* shmex_free frees memory the library malloc'ed for the caller (results).
 * shmex_free(NULL) does nothing. */
void shmex_free(void *p);

/* ---------------------------------------------------------------- entities */

#define SHMEX_ROLE_AGENT 1
#define SHMEX_ROLE_CLIENT 2

/* shmex_id identifies an agent or a client: a 16-byte UUID and a role.
 * Plain data: copy it freely. */
typedef struct shmex_id {
    uint8_t uuid[16];
    uint32_t role; /* SHMEX_ROLE_AGENT or SHMEX_ROLE_CLIENT */
} shmex_id;

/* Room for the text form of an id, "client:" + 36 + NUL. */
#define SHMEX_ID_STRLEN 48

/* shmex_id_format writes the text form of *id ("agent:1b4e28ba-...") and a
 * NUL into buf (SHMEX_ID_STRLEN bytes suffice). */
int shmex_id_format(const shmex_id *id, char *buf, size_t cap);
/* shmex_id_parse parses the text form into *out. */
int shmex_id_parse(const char *s, shmex_id *out);

/* Timeouts, in nanoseconds: SHMEX_FOREVER (or any negative value) waits
 * without a bound, 0 does not wait. */
#define SHMEX_FOREVER (-1)

#define SHMEX_STATUS_MISSING 0
#define SHMEX_STATUS_ACTIVE 1
#define SHMEX_STATUS_TERMINATED 2

/* ----------------------------------------------------------------- exchange */

typedef struct shmex_exchange shmex_exchange;

#define SHMEX_IDLE_DEFAULT 0 /* the exchange's default (today: spin a little, then sleep on the futex) */
#define SHMEX_IDLE_SPIN 1    /* never sleep: lowest latency, a core busy while waiting */
#define SHMEX_IDLE_PARK 2    /* sleep at once: no CPU while idle */
#define SHMEX_IDLE_BACKOFF 3 /* spin, then yield, then sleep, adapting to where the sender runs */

/* Options of shmex_open. Zero them (or pass NULL), set size to
 * sizeof(shmex_options), then set what you need: fields the library does
 * not know (a newer header) must be zero. */
typedef struct shmex_options {
    size_t size;           /* sizeof(shmex_options) */
    const char *root;      /* directory of exchanges; NULL: /dev/shm/shmex-<uid> */
    int32_t idle;          /* SHMEX_IDLE_*: how receivers of this handle wait */
    int32_t reserved;
    uint64_t mailbox_bytes; /* ring size of mailboxes registered here; 0: 256 KiB */
} shmex_options;

/* shmex_open creates or joins the exchange called name (every process that
 * opens the same name and root shares its mailboxes). *out is the handle,
 * to close with shmex_close. */
int shmex_open(const char *name, const shmex_options *opts, shmex_exchange **out);

/* shmex_close closes the exchange handle and everything made from it:
 * clients (their calls in flight fail with SHMEX_ECLOSED), agents (their
 * mailboxes are terminated), mailboxes, requests not answered (answered
 * with an error), loans (aborted) and views (released). Pointers into
 * loans and views are invalid afterwards: the arena is unmapped. The
 * mailboxes of other processes are not affected. */
int shmex_close(shmex_exchange *x);

/* shmex_register_agent registers an agent of behavior (implementing the
 * behaviors in implements[0..n_implements), which shmex_discover with
 * subtypes finds) with an optional human-readable name (NULL for none),
 * and writes its id. Nobody receives from its mailbox until an agent takes
 * it (shmex_agent_open with that id); requests wait there. */
int shmex_register_agent(shmex_exchange *x, const char *behavior, const char *const *implements,
                         size_t n_implements, const char *name, shmex_id *out);

/* shmex_register_client registers a client mailbox (name may be NULL). */
int shmex_register_client(shmex_exchange *x, const char *name, shmex_id *out);

/* shmex_terminate terminates the mailbox of id: later sends fail with
 * SHMEX_EMAILBOX_CLOSED, requests still queued are answered with errors. A
 * missing mailbox is not an error (as in Academy). */
int shmex_terminate(shmex_exchange *x, const shmex_id *id);

/* shmex_status writes SHMEX_STATUS_MISSING, _ACTIVE or _TERMINATED. */
int shmex_status(shmex_exchange *x, const shmex_id *id, int *status);

/* shmex_discover writes into ids[0..cap) the ids of the active agents of
 * behavior (with allow_subtypes != 0: implementing it too), and the number
 * found into *n. SHMEX_ETRUNCATED when more than cap were found (the first
 * cap are written; call again with room for *n). */
int shmex_discover(shmex_exchange *x, const char *behavior, int allow_subtypes, shmex_id *ids,
                   size_t cap, size_t *n);

/* ----------------------------------------------------------------- messages */

#define SHMEX_ACTION_REQUEST 1
#define SHMEX_ACTION_RESPONSE 2
#define SHMEX_PING_REQUEST 3
#define SHMEX_PING_RESPONSE 4
#define SHMEX_SHUTDOWN_REQUEST 5
#define SHMEX_SHUTDOWN_RESPONSE 6

/* shmex_message is one of Academy's six messages. Byte fields are a pointer
 * and a length, not NUL-terminated; unused fields are NULL/0. Filled by the
 * library (shmex_mailbox_recv, shmex_agent_recv), the pointers are the
 * library's, valid for the lifetime each of those functions states. Filled
 * by the caller (shmex_send), they are read during the call only. */
typedef struct shmex_message {
    int32_t kind;      /* SHMEX_ACTION_REQUEST ... SHMEX_SHUTDOWN_RESPONSE */
    int32_t terminate; /* in a shutdown request: also terminate the mailbox */
    uint8_t tag[16];   /* matches a response to its request */
    uint8_t label[16]; /* tells apart handles that share a mailbox; zero when unused */
    shmex_id src;      /* the sender, to whose mailbox a response goes */
    shmex_id dest;     /* the mailbox the message is sent to */
    const char *action;
    size_t action_len;
    const uint8_t *args; /* an action request's MessagePack arguments */
    size_t args_len;
    const uint8_t *result; /* an action response's MessagePack result */
    size_t result_len;
    const char *error_kind; /* non-empty in an error response only */
    size_t error_kind_len;
    const char *error_message;
    size_t error_message_len;
} shmex_message;

/* shmex_send sends *m to m->dest, waiting up to timeout_ns for room in a
 * full mailbox. A zero tag is replaced by a fresh one, written back into
 * m->tag (so the caller can match the response); nothing else is written.
 * SHMEX_EBADID (no such mailbox), SHMEX_EMAILBOX_CLOSED (terminated),
 * SHMEX_ETOOLARGE, SHMEX_EINVAL (a message that is not valid). */
int shmex_send(shmex_exchange *x, shmex_message *m, int64_t timeout_ns);

typedef struct shmex_mailbox shmex_mailbox;

/* shmex_mailbox_open makes this process the receiver of id's mailbox (the
 * raw interface: no pings answered for you; see shmex_agent_* for that).
 * SHMEX_EBADID when it does not exist. */
int shmex_mailbox_open(shmex_exchange *x, const shmex_id *id, shmex_mailbox **out);

/* shmex_mailbox_recv waits for the next message and fills *out. Its
 * pointers are the library's and stay valid until the next
 * shmex_mailbox_recv on the same mailbox (from any thread) or its close.
 * SHMEX_EMAILBOX_CLOSED once the mailbox is terminated and drained. */
int shmex_mailbox_recv(shmex_mailbox *mb, int64_t timeout_ns, shmex_message *out);

/* shmex_mailbox_close stops receiving; it never terminates the mailbox. */
int shmex_mailbox_close(shmex_mailbox *mb);

/* ------------------------------------------------- clients, handles, calls */

typedef struct shmex_client shmex_client;
typedef struct shmex_handle shmex_handle;
typedef struct shmex_future shmex_future;

/* shmex_client_open registers a client (name may be NULL) whose mailbox
 * receives the responses of all its handles. A call in flight to an agent
 * that dies fails with SHMEX_EAGENT_TERMINATED within about 1.1 s (the
 * status poll, 100 ms, plus the terminated grace, 1 s). */
int shmex_client_open(shmex_exchange *x, const char *name, shmex_client **out);
/* shmex_client_id writes the client's id. */
int shmex_client_id(shmex_client *c, shmex_id *out);
/* shmex_client_close fails the calls still in flight with SHMEX_ECLOSED,
 * closes its handles and futures, and terminates the client's mailbox. */
int shmex_client_close(shmex_client *c);

/* shmex_handle_open makes a handle to the agent id on client c. */
int shmex_handle_open(shmex_client *c, const shmex_id *agent, shmex_handle **out);
/* shmex_handle_close lets the handle's futures complete for up to
 * timeout_ns, cancels those still pending, and frees the handle and its
 * futures (shmex_future_free them first if you want their results). */
int shmex_handle_close(shmex_handle *h, int64_t timeout_ns);

/* shmex_call calls the action named action with MessagePack arguments
 * args[0..args_len) and waits up to timeout_ns for its result. On success,
 * when result is not NULL, *result is a malloc'ed copy of the MessagePack
 * result (free it with shmex_free) and *result_len its length; a NULL
 * result discards it. SHMEX_EREMOTE when the agent answered with an error
 * (shmex_last_error_kind: "UnknownActionError", "BadArgumentsError", ...),
 * SHMEX_EAGENT_TERMINATED when it is gone, SHMEX_EBADID when no agent has
 * this id, SHMEX_ETIMEDOUT (the call is then abandoned: a late result is
 * dropped). */
int shmex_call(shmex_handle *h, const char *action, const uint8_t *args, size_t args_len,
               int64_t timeout_ns, uint8_t **result, size_t *result_len);

/* shmex_call_into is shmex_call with the result copied into the caller's
 * buffer buf[0..cap) (*len is its length): no allocation, one call into
 * the library. A result that does not fit is SHMEX_ETRUNCATED, with *len the
 * room it needed, and is lost (the action did run): use it where results
 * have a known bound, shmex_call elsewhere. */
int shmex_call_into(shmex_handle *h, const char *action, const uint8_t *args, size_t args_len,
                    int64_t timeout_ns, uint8_t *buf, size_t cap, size_t *len);

/* shmex_action sends the request and returns at once with a future of its
 * result (the request is sent, or failed, before it returns). Free every
 * future with shmex_future_free. */
int shmex_action(shmex_handle *h, const char *action, const uint8_t *args, size_t args_len,
                 shmex_future **out);

/* shmex_future_done returns 1 when the future is complete (with a result or
 * an error), 0 while it is pending, or a negative status. */
int shmex_future_done(shmex_future *f);

/* shmex_future_wait waits up to timeout_ns (0: poll) for the future and
 * returns its outcome as shmex_call does, with *result a malloc'ed copy
 * each time it is called. SHMEX_ETIMEDOUT leaves it pending. */
int shmex_future_wait(shmex_future *f, int64_t timeout_ns, uint8_t **result, size_t *result_len);

/* shmex_future_take waits up to timeout_ns (0: poll) for the future, then
 * consumes it: the result is copied into buf[0..cap) (*len is its length)
 * and the future is freed, whatever the outcome (a result, or the agent's
 * error as status). Two outcomes leave the future as it was, to call again:
 * SHMEX_ETIMEDOUT, and SHMEX_ETRUNCATED when the result does not fit (*len
 * is then the room it needs). The fast path for a caller that keeps a
 * buffer: no malloc, no second call to free. */
int shmex_future_take(shmex_future *f, int64_t timeout_ns, uint8_t *buf, size_t cap, size_t *len);

/* shmex_future_cancel gives up on the future locally (the agent is not
 * told): it completes with SHMEX_ECANCELED unless it was complete. */
int shmex_future_cancel(shmex_future *f);

/* shmex_future_free cancels the future if pending and frees it. */
int shmex_future_free(shmex_future *f);

/* shmex_ping pings the agent and writes the round trip in nanoseconds
 * (rtt_ns may be NULL). */
int shmex_ping(shmex_handle *h, int64_t timeout_ns, int64_t *rtt_ns);

/* shmex_shutdown asks the agent to shut down and waits for its
 * acknowledgement (an agent already terminated counts as shut down). */
int shmex_shutdown(shmex_handle *h, int64_t timeout_ns);

/* ------------------------------------------------------------------ agents */

typedef struct shmex_agent shmex_agent;
typedef struct shmex_request shmex_request;

/* shmex_agent_open serves an agent from this process. With id NULL it
 * registers a new agent of behavior (implementing implements[0..n), with
 * an optional name); with id set it takes over the mailbox of an agent
 * registered by someone else (behavior and implements are then used only
 * if it must be registered). This process becomes the receiver of the
 * agent's mailbox; if the process dies, the mailbox reads as terminated
 * and the calls in flight to it fail within the client's bound. */
int shmex_agent_open(shmex_exchange *x, const char *behavior, const char *const *implements,
                     size_t n_implements, const char *name, const shmex_id *id,
                     shmex_agent **out);

/* shmex_agent_id writes the agent's id. */
int shmex_agent_id(shmex_agent *a, shmex_id *out);

/* shmex_agent_recv waits for the next action request. Pings are answered
 * inside. A shutdown request is acknowledged, ends the agent (its mailbox
 * is terminated: requests still queued are answered with errors) and
 * returns SHMEX_ESHUTDOWN, as does every later call. On success *req is
 * the request, to answer exactly once with shmex_request_reply or
 * shmex_request_fail (from any thread); when msg is not NULL it is filled
 * with the request (action, args, src, tag, label), whose pointers stay
 * valid until the request is answered. Several threads may receive from one
 * agent at once; each gets its own requests. */
int shmex_agent_recv(shmex_agent *a, int64_t timeout_ns, shmex_request **req, shmex_message *msg);

/* shmex_request_reply answers the request with the MessagePack result
 * result[0..len) (copied) and frees it. */
int shmex_request_reply(shmex_request *r, const uint8_t *result, size_t len);

/* shmex_request_fail answers the request with an error of kind (NULL or ""
 * gives "Error"; use Academy's exception names where one fits) and message,
 * and frees it. The caller gets SHMEX_EREMOTE with that kind. */
int shmex_request_fail(shmex_request *r, const char *kind, const char *message);

/* shmex_action_fn serves one request in shmex_agent_serve: it answers req
 * with shmex_request_reply or shmex_request_fail. If it returns without
 * answering, the request is failed with kind "ActionError" and the message
 * of the returned status. msg's pointers are valid until req is answered. */
typedef int (*shmex_action_fn)(void *user, shmex_request *req, const shmex_message *msg);

/* shmex_agent_serve receives requests and calls fn(user, req, msg) for each
 * in the calling thread until the agent is shut down (returns SHMEX_OK) or
 * fails (returns the status). */
int shmex_agent_serve(shmex_agent *a, shmex_action_fn fn, void *user);

/* shmex_agent_shutdown makes the agent stop as a shutdown request would:
 * receivers waiting return SHMEX_ESHUTDOWN. It does not wait. */
int shmex_agent_shutdown(shmex_agent *a);

/* shmex_agent_close fails its unanswered requests with "AgentShutdownError",
 * terminates its mailbox, and frees it. */
int shmex_agent_close(shmex_agent *a);

/* ---------------------------------------------------- zero-copy payloads */

typedef struct shmex_loan shmex_loan;
typedef struct shmex_view shmex_view;

/* Room for a proxy (the bytes that stand for a payload in a message: today
 * 59, see docs/wire.md). */
#define SHMEX_PROXY_MAX 64

#define SHMEX_LIFETIME_SINGLE_USE 0 /* freed when the first reader releases its view */
#define SHMEX_LIFETIME_OWNED 1      /* until shmex_proxy_free by this process, or its close */
#define SHMEX_LIFETIME_LEASED 2     /* resolvable until now + lease_ns */

/* shmex_loan_alloc lends n writable bytes inside this process's arena of
 * the exchange (opened on first use): *data points at them, aligned to 64
 * bytes, valid until shmex_loan_commit, shmex_loan_abort or shmex_close.
 * Fill them in place, then commit. lease_ns is used with
 * SHMEX_LIFETIME_LEASED only. SHMEX_ENOSPACE when the arena or /dev/shm is
 * full. A loan is a Go proxystore.Blob: a Go action that takes a Blob
 * reads it in place. The first touch of fresh arena memory costs a page
 * fault per page: shmex_reserve warms segments ahead. */
int shmex_loan_alloc(shmex_exchange *x, size_t n, int lifetime, int64_t lease_ns, shmex_loan **loan,
                     void **data);

/* shmex_loan_commit publishes the loan's bytes and writes their proxy into
 * proxy[0..cap) (SHMEX_PROXY_MAX bytes suffice) and its length into *len;
 * the loan handle is freed and its memory must not be written any more.
 * Put the proxy in action arguments or results where the bytes would go:
 * it is one MessagePack value. */
int shmex_loan_commit(shmex_loan *l, uint8_t *proxy, size_t cap, size_t *len);

/* shmex_loan_abort gives the memory back without publishing it. */
int shmex_loan_abort(shmex_loan *l);

/* shmex_action_loan (since 0.2) commits the loan l and calls the action with
 * its proxy as the only argument, in one call into the library: what
 * shmex_loan_commit then shmex_action with the proxy as args do. When proxy
 * is not NULL, the proxy is also written into proxy[0..cap) (cap >=
 * SHMEX_PROXY_MAX; len must then not be NULL), for an OWNED or LEASED
 * payload to free later. *len (when len is not NULL) is set to 0 on entry
 * and to the proxy's length once the loan is committed: the handle, the
 * action name and the loan are checked first, and a failure there leaves
 * the loan open; once committed, the loan handle is freed and its memory
 * must not be written any more, even if the send then fails (*len > 0 with
 * an error status: the payload was committed but not sent). Free the
 * future with shmex_future_free. */
int shmex_action_loan(shmex_handle *h, const char *action, shmex_loan *l, uint8_t *proxy, size_t cap, size_t *len,
                      shmex_future **out);

/* shmex_put copies data[0..n) into the arena (one copy) and writes its
 * proxy, as shmex_loan_alloc, a memcpy and shmex_loan_commit would. */
int shmex_put(shmex_exchange *x, const void *data, size_t n, int lifetime, int64_t lease_ns,
              uint8_t *proxy, size_t cap, size_t *len);

/* shmex_is_proxy returns 1 when b[0..len) is exactly one proxy value, else 0. */
int shmex_is_proxy(const uint8_t *b, size_t len);

/* shmex_resolve checks the proxy b[0..len) (bounds, generation, lifetime,
 * its owner being alive) and sets *data to a read-only pointer to the
 * payload in its owner's arena and *n to its length: no copy. Writing
 * through it faults. The memory stays valid until shmex_view_release
 * (*view) or shmex_close, even if the owner frees the payload or dies
 * meanwhile. SHMEX_EPROXY for a bad, stale or expired proxy or a dead
 * owner. What the bytes are: shmex_view_form. */
int shmex_resolve(shmex_exchange *x, const uint8_t *b, size_t len, shmex_view **view,
                  const void **data, size_t *n);

#define SHMEX_FORM_VALUE 0 /* the MessagePack encoding of a value a Go wrapper proxied whole */
#define SHMEX_FORM_BYTES 1 /* bytes: a loan's, a put's, a Go Blob's, or a proxied bin's content */

/* shmex_view_form returns SHMEX_FORM_BYTES or SHMEX_FORM_VALUE for what a
 * view's bytes are, or a negative status. */
int shmex_view_form(shmex_view *v);

/* shmex_reserve creates warm arena segments (mapped, their pages touched)
 * ahead of payloads of the sizes sizes[0..n), so that the first loan of
 * each does not pay the first touch of fresh memory (about 5 µs a page on
 * some virtual machines: seconds for a GiB). */
int shmex_reserve(shmex_exchange *x, const size_t *sizes, size_t n);

/* shmex_view_release drops the view (a single-use payload is freed by its
 * owner afterwards); its memory must not be read any more. */
int shmex_view_release(shmex_view *v);

/* shmex_proxy_free frees an owned payload this process made. */
int shmex_proxy_free(shmex_exchange *x, const uint8_t *b, size_t len);

/* --------------------------------------------------- MessagePack helpers */

/* A writer appends MessagePack values to buf[0..cap). A value that does not
 * fit sets err to SHMEX_ETRUNCATED and is not written (nor anything after
 * it); len then keeps counting the room needed. Initialize with
 * shmex_mp_writer_init. */
typedef struct shmex_mp_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int32_t err;
    int32_t reserved;
} shmex_mp_writer;

void shmex_mp_writer_init(shmex_mp_writer *w, uint8_t *buf, size_t cap);
void shmex_mp_write_nil(shmex_mp_writer *w);
void shmex_mp_write_bool(shmex_mp_writer *w, int v);
void shmex_mp_write_int(shmex_mp_writer *w, int64_t v);
void shmex_mp_write_uint(shmex_mp_writer *w, uint64_t v);
void shmex_mp_write_double(shmex_mp_writer *w, double v);
void shmex_mp_write_str(shmex_mp_writer *w, const char *s, size_t n);
void shmex_mp_write_bin(shmex_mp_writer *w, const void *b, size_t n);
void shmex_mp_write_array(shmex_mp_writer *w, uint32_t n); /* then n values */
void shmex_mp_write_map(shmex_mp_writer *w, uint32_t n);   /* then n keys and values */
/* shmex_mp_write_raw appends bytes that already are MessagePack (a proxy). */
void shmex_mp_write_raw(shmex_mp_writer *w, const void *b, size_t n);

/* A reader reads MessagePack values from buf[0..len). A read of the wrong
 * type, or past the end, sets err to SHMEX_EINVAL, returns 0 (NULL) and
 * leaves pos; later reads keep failing. Pointers returned alias buf. */
typedef struct shmex_mp_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    int32_t err;
    int32_t reserved;
} shmex_mp_reader;

#define SHMEX_MP_NIL 1
#define SHMEX_MP_BOOL 2
#define SHMEX_MP_INT 3 /* any integer; read with _int or _uint */
#define SHMEX_MP_FLOAT 4
#define SHMEX_MP_STR 5
#define SHMEX_MP_BIN 6
#define SHMEX_MP_ARRAY 7
#define SHMEX_MP_MAP 8
#define SHMEX_MP_EXT 9 /* a proxy is an ext */

void shmex_mp_reader_init(shmex_mp_reader *r, const uint8_t *buf, size_t len);
/* shmex_mp_next returns the SHMEX_MP_* type of the next value, 0 at the end
 * or on a malformed byte. */
int shmex_mp_next(const shmex_mp_reader *r);
int shmex_mp_read_nil(shmex_mp_reader *r); /* 1 when a nil was read */
int shmex_mp_read_bool(shmex_mp_reader *r);
int64_t shmex_mp_read_int(shmex_mp_reader *r);   /* any integer that fits int64 */
uint64_t shmex_mp_read_uint(shmex_mp_reader *r); /* any non-negative integer */
double shmex_mp_read_double(shmex_mp_reader *r); /* a float or an integer */
const char *shmex_mp_read_str(shmex_mp_reader *r, size_t *n);
const uint8_t *shmex_mp_read_bin(shmex_mp_reader *r, size_t *n);
uint32_t shmex_mp_read_array(shmex_mp_reader *r);
uint32_t shmex_mp_read_map(shmex_mp_reader *r);
/* shmex_mp_read_raw skips one whole value (nested ones included) and
 * returns where it starts, its encoded length in *n: a proxy to pass to
 * shmex_resolve, say. */
const uint8_t *shmex_mp_read_raw(shmex_mp_reader *r, size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* SHMEX_H */
