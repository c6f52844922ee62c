/*
 * shmex.c implements shmex.h over the Go functions of exports.go (shmexgo_*,
 * declared in the _cgo_export.h that cgo generates). What lives here rather
 * than in Go: the per-thread last error (C thread-local storage), the
 * static strings, the options struct, and the serving loop of
 * shmex_agent_serve (so that a callback costs no call from Go into C).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmex.h"
#include "_cgo_export.h"

/* ------------------------------------------------------------ last error */

#define ERR_MSG_MAX 1024
#define ERR_KIND_MAX 128

static _Thread_local char err_msg[ERR_MSG_MAX];
static _Thread_local char err_kind[ERR_KIND_MAX];

/* shmex__set_error is called by the Go side, on the caller's thread. */
void shmex__set_error(int status, const char *kind, size_t kind_len, const char *msg, size_t msg_len) {
    (void)status;
    if (kind_len >= ERR_KIND_MAX) kind_len = ERR_KIND_MAX - 1;
    if (kind_len > 0) memcpy(err_kind, kind, kind_len);
    err_kind[kind_len] = 0;
    if (msg_len >= ERR_MSG_MAX) msg_len = ERR_MSG_MAX - 1;
    if (msg_len > 0) memcpy(err_msg, msg, msg_len);
    err_msg[msg_len] = 0;
}

static int set_error(int status, const char *msg) {
    shmex__set_error(status, "", 0, msg, strlen(msg));
    return status;
}

const char *shmex_last_error(void) { return err_msg; }
const char *shmex_last_error_kind(void) { return err_kind; }

void shmex_free(void *p) { free(p); }

/* ---------------------------------------------------------------- version */

int shmex_version(void) { return SHMEX_VERSION; }

static char version_string[64];
static pthread_once_t version_once = PTHREAD_ONCE_INIT;

static void version_init(void) {
    char go[32];
    shmexgo_go_version(go, sizeof go);
    snprintf(version_string, sizeof version_string, "%s (%s)", SHMEX_VERSION_STRING, go);
}

const char *shmex_version_string(void) {
    pthread_once(&version_once, version_init);
    return version_string;
}

const char *shmex_strerror(int status) {
    switch (status) {
    case SHMEX_OK: return "SHMEX_OK: success";
    case SHMEX_EINVAL: return "SHMEX_EINVAL: invalid argument";
    case SHMEX_EBADHANDLE: return "SHMEX_EBADHANDLE: bad handle";
    case SHMEX_ECLOSED: return "SHMEX_ECLOSED: closed";
    case SHMEX_EBADID: return "SHMEX_EBADID: no mailbox for this entity id";
    case SHMEX_EMAILBOX_CLOSED: return "SHMEX_EMAILBOX_CLOSED: mailbox terminated";
    case SHMEX_ETIMEDOUT: return "SHMEX_ETIMEDOUT: timed out";
    case SHMEX_EPENDING: return "SHMEX_EPENDING: future pending";
    case SHMEX_EREMOTE: return "SHMEX_EREMOTE: the agent answered with an error";
    case SHMEX_EAGENT_TERMINATED: return "SHMEX_EAGENT_TERMINATED: agent terminated";
    case SHMEX_ECANCELED: return "SHMEX_ECANCELED: cancelled";
    case SHMEX_ESHUTDOWN: return "SHMEX_ESHUTDOWN: agent shut down";
    case SHMEX_ETOOLARGE: return "SHMEX_ETOOLARGE: message too large";
    case SHMEX_ENOSPACE: return "SHMEX_ENOSPACE: no space";
    case SHMEX_EPROXY: return "SHMEX_EPROXY: bad proxy";
    case SHMEX_ETRUNCATED: return "SHMEX_ETRUNCATED: output buffer too small";
    case SHMEX_EEXIST: return "SHMEX_EEXIST: entity id already registered";
    case SHMEX_EIO: return "SHMEX_EIO: failure";
    case SHMEX_EBUSY: return "SHMEX_EBUSY: mailbox already has a receiver";
    }
    return "unknown status";
}

/* ---------------------------------------------------------------- entities */

int shmex_id_format(const shmex_id *id, char *buf, size_t cap) {
    return shmexgo_id_format((shmex_id *)id, buf, cap);
}

int shmex_id_parse(const char *s, shmex_id *out) { return shmexgo_id_parse((char *)s, out); }

/* ----------------------------------------------------------------- exchange */

int shmex_open(const char *name, const shmex_options *opts, shmex_exchange **out) {
    const char *root = NULL;
    int32_t idle = SHMEX_IDLE_DEFAULT;
    uint64_t mailbox_bytes = 0;
    if (opts != NULL) {
        if (opts->size < offsetof(shmex_options, mailbox_bytes) + sizeof opts->mailbox_bytes)
            return set_error(SHMEX_EINVAL, "invalid argument: shmex_options.size is smaller than this library's shmex_options (set it to sizeof(shmex_options))");
        if (opts->size > sizeof *opts) {
            /* A newer header: its extra fields must be zero. */
            const unsigned char *p = (const unsigned char *)opts;
            for (size_t i = sizeof *opts; i < opts->size; i++)
                if (p[i] != 0)
                    return set_error(SHMEX_EINVAL, "invalid argument: shmex_options has fields this library does not know");
        }
        root = opts->root;
        idle = opts->idle;
        mailbox_bytes = opts->mailbox_bytes;
    }
    return shmexgo_open((char *)name, (char *)root, idle, mailbox_bytes, (uintptr_t *)out);
}

int shmex_close(shmex_exchange *x) { return shmexgo_close((uintptr_t)x); }

int shmex_register_agent(shmex_exchange *x, const char *behavior, const char *const *implements,
                         size_t n_implements, const char *name, shmex_id *out) {
    return shmexgo_register_agent((uintptr_t)x, (char *)behavior, (char **)implements, n_implements, (char *)name, out);
}

int shmex_register_client(shmex_exchange *x, const char *name, shmex_id *out) {
    return shmexgo_register_client((uintptr_t)x, (char *)name, out);
}

int shmex_terminate(shmex_exchange *x, const shmex_id *id) { return shmexgo_terminate((uintptr_t)x, (shmex_id *)id); }

int shmex_status(shmex_exchange *x, const shmex_id *id, int *status) {
    return shmexgo_status((uintptr_t)x, (shmex_id *)id, status);
}

int shmex_discover(shmex_exchange *x, const char *behavior, int allow_subtypes, shmex_id *ids, size_t cap,
                   size_t *n) {
    return shmexgo_discover((uintptr_t)x, (char *)behavior, allow_subtypes, ids, cap, n);
}

/* ----------------------------------------------------------------- messages */

int shmex_send(shmex_exchange *x, shmex_message *m, int64_t timeout_ns) { return shmexgo_send((uintptr_t)x, m, timeout_ns); }

int shmex_mailbox_open(shmex_exchange *x, const shmex_id *id, shmex_mailbox **out) {
    return shmexgo_mailbox_open((uintptr_t)x, (shmex_id *)id, (uintptr_t *)out);
}

int shmex_mailbox_recv(shmex_mailbox *mb, int64_t timeout_ns, shmex_message *out) {
    return shmexgo_mailbox_recv((uintptr_t)mb, timeout_ns, out);
}

int shmex_mailbox_close(shmex_mailbox *mb) { return shmexgo_mailbox_close((uintptr_t)mb); }

/* ------------------------------------------------- clients, handles, calls */

int shmex_client_open(shmex_exchange *x, const char *name, shmex_client **out) {
    return shmexgo_client_open((uintptr_t)x, (char *)name, (uintptr_t *)out);
}

int shmex_client_id(shmex_client *c, shmex_id *out) { return shmexgo_client_id((uintptr_t)c, out); }

int shmex_client_close(shmex_client *c) { return shmexgo_client_close((uintptr_t)c); }

int shmex_handle_open(shmex_client *c, const shmex_id *agent, shmex_handle **out) {
    return shmexgo_handle_open((uintptr_t)c, (shmex_id *)agent, (uintptr_t *)out);
}

int shmex_handle_close(shmex_handle *h, int64_t timeout_ns) { return shmexgo_handle_close((uintptr_t)h, timeout_ns); }

int shmex_call(shmex_handle *h, const char *action, const uint8_t *args, size_t args_len, int64_t timeout_ns,
               uint8_t **result, size_t *result_len) {
    return shmexgo_call((uintptr_t)h, (char *)action, (uint8_t *)args, args_len, timeout_ns, result, result_len);
}

int shmex_call_into(shmex_handle *h, const char *action, const uint8_t *args, size_t args_len, int64_t timeout_ns,
                    uint8_t *buf, size_t cap, size_t *len) {
    return shmexgo_call_into((uintptr_t)h, (char *)action, (uint8_t *)args, args_len, timeout_ns, buf, cap, len);
}

int shmex_action(shmex_handle *h, const char *action, const uint8_t *args, size_t args_len, shmex_future **out) {
    return shmexgo_action((uintptr_t)h, (char *)action, (uint8_t *)args, args_len, (uintptr_t *)out);
}

int shmex_action_loan(shmex_handle *h, const char *action, shmex_loan *l, uint8_t *proxy, size_t cap, size_t *len,
                      shmex_future **out) {
    return shmexgo_action_loan((uintptr_t)h, (char *)action, (uintptr_t)l, proxy, cap, len, (uintptr_t *)out);
}

int shmex_future_done(shmex_future *f) { return shmexgo_future_done((uintptr_t)f); }

int shmex_future_wait(shmex_future *f, int64_t timeout_ns, uint8_t **result, size_t *result_len) {
    return shmexgo_future_wait((uintptr_t)f, timeout_ns, result, result_len);
}

int shmex_future_take(shmex_future *f, int64_t timeout_ns, uint8_t *buf, size_t cap, size_t *len) {
    return shmexgo_future_take((uintptr_t)f, timeout_ns, buf, cap, len);
}

int shmex_future_cancel(shmex_future *f) { return shmexgo_future_cancel((uintptr_t)f); }

int shmex_future_free(shmex_future *f) { return shmexgo_future_free((uintptr_t)f); }

int shmex_ping(shmex_handle *h, int64_t timeout_ns, int64_t *rtt_ns) { return shmexgo_ping((uintptr_t)h, timeout_ns, rtt_ns); }

int shmex_shutdown(shmex_handle *h, int64_t timeout_ns) { return shmexgo_shutdown((uintptr_t)h, timeout_ns); }

/* ------------------------------------------------------------------ agents */

int shmex_agent_open(shmex_exchange *x, const char *behavior, const char *const *implements, size_t n_implements,
                     const char *name, const shmex_id *id, shmex_agent **out) {
    return shmexgo_agent_open((uintptr_t)x, (char *)behavior, (char **)implements, n_implements, (char *)name,
                              (shmex_id *)id, (uintptr_t *)out);
}

int shmex_agent_id(shmex_agent *a, shmex_id *out) { return shmexgo_agent_id((uintptr_t)a, out); }

int shmex_agent_recv(shmex_agent *a, int64_t timeout_ns, shmex_request **req, shmex_message *msg) {
    return shmexgo_agent_recv((uintptr_t)a, timeout_ns, (uintptr_t *)req, msg);
}

int shmex_request_reply(shmex_request *r, const uint8_t *result, size_t len) {
    return shmexgo_request_reply((uintptr_t)r, (uint8_t *)result, len);
}

int shmex_request_fail(shmex_request *r, const char *kind, const char *message) {
    return shmexgo_request_fail((uintptr_t)r, (char *)kind, (char *)message);
}

int shmex_agent_serve(shmex_agent *a, shmex_action_fn fn, void *user) {
    if (fn == NULL) return set_error(SHMEX_EINVAL, "invalid argument: fn is NULL");
    for (;;) {
        shmex_request *req;
        shmex_message msg;
        int rc = shmex_agent_recv(a, SHMEX_FOREVER, &req, &msg);
        if (rc == SHMEX_ESHUTDOWN) return SHMEX_OK;
        if (rc != SHMEX_OK) return rc;
        rc = fn(user, req, &msg);
        shmexgo_request_done((uintptr_t)req, rc);
    }
}

int shmex_agent_shutdown(shmex_agent *a) { return shmexgo_agent_shutdown((uintptr_t)a); }

int shmex_agent_close(shmex_agent *a) { return shmexgo_agent_close((uintptr_t)a); }

/* ---------------------------------------------------- zero-copy payloads */

int shmex_loan_alloc(shmex_exchange *x, size_t n, int lifetime, int64_t lease_ns, shmex_loan **loan, void **data) {
    return shmexgo_loan_alloc((uintptr_t)x, n, lifetime, lease_ns, (uintptr_t *)loan, data);
}

int shmex_loan_commit(shmex_loan *l, uint8_t *proxy, size_t cap, size_t *len) {
    return shmexgo_loan_commit((uintptr_t)l, proxy, cap, len);
}

int shmex_loan_abort(shmex_loan *l) { return shmexgo_loan_abort((uintptr_t)l); }

int shmex_put(shmex_exchange *x, const void *data, size_t n, int lifetime, int64_t lease_ns, uint8_t *proxy,
              size_t cap, size_t *len) {
    return shmexgo_put((uintptr_t)x, (void *)data, n, lifetime, lease_ns, proxy, cap, len);
}

int shmex_is_proxy(const uint8_t *b, size_t len) { return shmexgo_is_proxy((uint8_t *)b, len); }

int shmex_resolve(shmex_exchange *x, const uint8_t *b, size_t len, shmex_view **view, const void **data,
                  size_t *n) {
    return shmexgo_resolve((uintptr_t)x, (uint8_t *)b, len, (uintptr_t *)view, (void **)data, n);
}

int shmex_view_form(shmex_view *v) { return shmexgo_view_form((uintptr_t)v); }

int shmex_reserve(shmex_exchange *x, const size_t *sizes, size_t n) {
    return shmexgo_reserve((uintptr_t)x, (size_t *)sizes, n);
}

int shmex_view_release(shmex_view *v) { return shmexgo_view_release((uintptr_t)v); }

int shmex_proxy_free(shmex_exchange *x, const uint8_t *b, size_t len) {
    return shmexgo_proxy_free((uintptr_t)x, (uint8_t *)b, len);
}
