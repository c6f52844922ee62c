/*
 * abi_test.c: tests of libshmex's C ABI, compiled with gcc and run by
 * capi_test.go against a Go "Calc" agent served by the test process.
 *
 *   abi_test ROOT NAME AGENT_ID        run every test; prints "ok NAME" per test
 *   abi_test ROOT NAME serve           serve a C agent "Upper" until shut down
 *
 * Exit status 0 when every check passed, 1 otherwise (each failure printed
 * as "FAIL file:line: what").
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmex.h"

static int failures;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            failures++;                                                                   \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            printf(__VA_ARGS__);                                                          \
            printf(" (last error: %s)\n", shmex_last_error());                            \
            fflush(stdout);                                                               \
        }                                                                                 \
    } while (0)

#define CHECK_RC(rc, want) CHECK((rc) == (want), "got %d (%s), want %d", (rc), shmex_strerror(rc), (want))

static const char *root, *name;
static shmex_id calc;

static shmex_exchange *open_exchange(void) {
    shmex_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.root = root;
    shmex_exchange *x = NULL;
    int rc = shmex_open(name, &o, &x);
    CHECK_RC(rc, SHMEX_OK);
    return x;
}

/* args_ab encodes [a, b] for "add". */
static size_t args_ab(uint8_t *buf, size_t cap, int64_t a, int64_t b) {
    shmex_mp_writer w;
    shmex_mp_writer_init(&w, buf, cap);
    shmex_mp_write_array(&w, 2);
    shmex_mp_write_int(&w, a);
    shmex_mp_write_int(&w, b);
    return w.err == 0 ? w.len : 0;
}

static int64_t result_int(const uint8_t *res, size_t n) {
    shmex_mp_reader r;
    shmex_mp_reader_init(&r, res, n);
    int64_t v = shmex_mp_read_int(&r);
    CHECK(r.err == 0 && r.pos == n, "result is not one integer");
    return v;
}

static void test_version(void) {
    CHECK(shmex_version() == SHMEX_VERSION, "library %d, header %d", shmex_version(), SHMEX_VERSION);
    CHECK(strncmp(shmex_version_string(), SHMEX_VERSION_STRING, strlen(SHMEX_VERSION_STRING)) == 0, "%s",
          shmex_version_string());
    CHECK(strstr(shmex_version_string(), "go1.") != NULL, "%s", shmex_version_string());
    CHECK(strstr(shmex_strerror(SHMEX_ETIMEDOUT), "SHMEX_ETIMEDOUT") != NULL, "strerror");
    CHECK(strcmp(shmex_strerror(12345), "unknown status") == 0, "strerror of an unknown status");
    printf("ok version\n");
}

static void test_bad_input(void) {
    int rc;
    shmex_exchange *x = NULL;
    /* Handles never made, NULL, forged. */
    CHECK_RC(shmex_close(NULL), SHMEX_EBADHANDLE);
    CHECK(strlen(shmex_last_error()) > 0, "no message for a bad handle");
    CHECK_RC(shmex_close((shmex_exchange *)(uintptr_t)0xdeadbeef), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_client_close((shmex_client *)(uintptr_t)1), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_future_free((shmex_future *)(uintptr_t)-1), SHMEX_EBADHANDLE);
    /* NULL arguments. */
    CHECK_RC(shmex_open(NULL, NULL, &x), SHMEX_EINVAL);
    CHECK_RC(shmex_open("n", NULL, NULL), SHMEX_EINVAL);
    CHECK_RC(shmex_open("", NULL, &x), SHMEX_EINVAL);
    shmex_options o;
    memset(&o, 0, sizeof o);
    o.size = 4;
    CHECK_RC(shmex_open(name, &o, &x), SHMEX_EINVAL);
    o.size = sizeof o;
    o.root = root;
    o.idle = 99;
    CHECK_RC(shmex_open(name, &o, &x), SHMEX_EINVAL);

    x = open_exchange();
    shmex_client *c = NULL;
    CHECK_RC(shmex_client_open(x, NULL, &c), SHMEX_OK);
    shmex_handle *h = NULL;
    CHECK_RC(shmex_handle_open(c, &calc, &h), SHMEX_OK);
    /* Handles of the wrong kind. */
    rc = shmex_call((shmex_handle *)c, "add", NULL, 0, 1000000000, NULL, NULL);
    CHECK_RC(rc, SHMEX_EBADHANDLE);
    CHECK(strstr(shmex_last_error(), "client") != NULL, "the message names the kind: %s", shmex_last_error());
    CHECK_RC(shmex_client_close((shmex_client *)x), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_loan_abort((shmex_loan *)h), SHMEX_EBADHANDLE);
    /* Bad lengths and pointers. */
    CHECK_RC(shmex_call(h, "add", NULL, 5, SHMEX_FOREVER, NULL, NULL), SHMEX_EINVAL);
    uint8_t buf[16] = {0};
    CHECK_RC(shmex_call(h, "add", buf, (size_t)-1, SHMEX_FOREVER, NULL, NULL), SHMEX_ETOOLARGE);
    CHECK_RC(shmex_call(h, NULL, buf, 1, SHMEX_FOREVER, NULL, NULL), SHMEX_EINVAL);
    CHECK_RC(shmex_call(h, "", buf, 1, SHMEX_FOREVER, NULL, NULL), SHMEX_EINVAL);
    CHECK_RC(shmex_call(h, "add", buf, 1, 0, NULL, NULL), SHMEX_EINVAL);
    /* Ids. */
    shmex_id id;
    CHECK_RC(shmex_id_parse("nonsense", &id), SHMEX_EINVAL);
    CHECK_RC(shmex_id_parse(NULL, &id), SHMEX_EINVAL);
    char s[SHMEX_ID_STRLEN];
    CHECK_RC(shmex_id_format(&calc, s, sizeof s), SHMEX_OK);
    CHECK_RC(shmex_id_parse(s, &id), SHMEX_OK);
    CHECK(memcmp(&id, &calc, sizeof id) == 0, "id round trip %s", s);
    CHECK_RC(shmex_id_format(&calc, s, 10), SHMEX_ETRUNCATED);
    memset(&id, 0, sizeof id);
    CHECK_RC(shmex_status(x, &id, &rc), SHMEX_EINVAL);
    CHECK_RC(shmex_handle_open(c, &id, &h), SHMEX_EINVAL);
    /* A mailbox that does not exist. */
    memcpy(&id, &calc, sizeof id);
    id.uuid[0] ^= 0xff;
    int st = -1;
    CHECK_RC(shmex_status(x, &id, &st), SHMEX_OK);
    CHECK(st == SHMEX_STATUS_MISSING, "status %d", st);
    shmex_handle *hm = NULL;
    CHECK_RC(shmex_handle_open(c, &id, &hm), SHMEX_OK);
    CHECK_RC(shmex_call(hm, "add", buf, 1, 2000000000, NULL, NULL), SHMEX_EBADID); /* no such agent */
    shmex_message m;
    memset(&m, 0, sizeof m);
    m.kind = SHMEX_PING_REQUEST;
    m.dest = id;
    CHECK_RC(shmex_client_id(c, &m.src), SHMEX_OK);
    CHECK_RC(shmex_send(x, &m, 0), SHMEX_EBADID);
    m.kind = 42;
    CHECK_RC(shmex_send(x, &m, 0), SHMEX_EINVAL);
    /* Proxies: forged, truncated. */
    uint8_t junk[8] = {0xc7, 3, 80, 1, 2, 3, 4, 5};
    shmex_view *v;
    const void *data;
    size_t n;
    CHECK_RC(shmex_resolve(x, junk, sizeof junk, &v, &data, &n), SHMEX_EPROXY);
    CHECK_RC(shmex_resolve(x, junk, 1, &v, &data, &n), SHMEX_EPROXY);
    CHECK(shmex_is_proxy(junk, sizeof junk) == 0, "junk is no proxy");
    shmex_loan *l;
    void *p;
    CHECK_RC(shmex_loan_alloc(x, 100, 7, 0, &l, &p), SHMEX_EINVAL);
    CHECK_RC(shmex_loan_alloc(x, 100, SHMEX_LIFETIME_LEASED, 0, &l, &p), SHMEX_EINVAL);
    CHECK_RC(shmex_loan_alloc(x, 100, SHMEX_LIFETIME_SINGLE_USE, 0, &l, &p), SHMEX_OK);
    uint8_t small[8];
    CHECK_RC(shmex_loan_commit(l, small, sizeof small, &n), SHMEX_EINVAL);
    CHECK_RC(shmex_loan_abort(l), SHMEX_OK); /* still there after the refused commit */
    CHECK_RC(shmex_loan_abort(l), SHMEX_EBADHANDLE);
    /* Discover into no room. */
    size_t found = 0;
    CHECK_RC(shmex_discover(x, "Calc", 0, NULL, 0, &found), SHMEX_ETRUNCATED);
    CHECK(found >= 1, "found %zu", found);
    /* Double close, use after close. */
    CHECK_RC(shmex_client_close(c), SHMEX_OK);
    CHECK_RC(shmex_client_close(c), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_call(h, "add", buf, 1, SHMEX_FOREVER, NULL, NULL), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_close(x), SHMEX_OK);
    CHECK_RC(shmex_close(x), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_client_open(x, NULL, &c), SHMEX_EBADHANDLE);
    printf("ok bad_input\n");
}

static void test_calls(void) {
    shmex_exchange *x = open_exchange();
    shmex_id ids[8];
    size_t n = 0;
    CHECK_RC(shmex_discover(x, "Calc", 0, ids, 8, &n), SHMEX_OK);
    CHECK(n >= 1 && memcmp(&ids[0], &calc, sizeof calc) == 0, "discover found %zu", n);
    CHECK_RC(shmex_discover(x, "Base", 1, ids, 8, &n), SHMEX_OK);
    CHECK(n >= 1, "discover with subtypes found %zu", n);
    CHECK_RC(shmex_discover(x, "Base", 0, ids, 8, &n), SHMEX_OK);
    CHECK(n == 0, "discover without subtypes found %zu", n);
    int st = -1;
    CHECK_RC(shmex_status(x, &calc, &st), SHMEX_OK);
    CHECK(st == SHMEX_STATUS_ACTIVE, "status %d", st);

    shmex_client *c;
    CHECK_RC(shmex_client_open(x, "abi-test", &c), SHMEX_OK);
    shmex_handle *h;
    CHECK_RC(shmex_handle_open(c, &calc, &h), SHMEX_OK);
    uint8_t args[64];
    size_t na = args_ab(args, sizeof args, 2, 40);
    uint8_t *res = NULL;
    size_t nres = 0;
    CHECK_RC(shmex_call(h, "add", args, na, 10000000000LL, &res, &nres), SHMEX_OK);
    CHECK(res != NULL && result_int(res, nres) == 42, "2 + 40");
    shmex_free(res);
    CHECK_RC(shmex_call(h, "add", args, na, SHMEX_FOREVER, NULL, NULL), SHMEX_OK);

    /* Errors answered by the agent. */
    CHECK_RC(shmex_call(h, "nope", args, na, SHMEX_FOREVER, &res, &nres), SHMEX_EREMOTE);
    CHECK(strcmp(shmex_last_error_kind(), "UnknownActionError") == 0, "kind %s", shmex_last_error_kind());
    shmex_mp_writer w;
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_array(&w, 2);
    shmex_mp_write_str(&w, "ValueError", 10);
    shmex_mp_write_str(&w, "bad value", 9);
    CHECK_RC(shmex_call(h, "fail", args, w.len, SHMEX_FOREVER, &res, &nres), SHMEX_EREMOTE);
    CHECK(strcmp(shmex_last_error_kind(), "ValueError") == 0, "kind %s", shmex_last_error_kind());
    CHECK(strstr(shmex_last_error(), "bad value") != NULL, "message %s", shmex_last_error());
    CHECK_RC(shmex_call(h, "add", args, 1, SHMEX_FOREVER, &res, &nres), SHMEX_EREMOTE);
    CHECK(strcmp(shmex_last_error_kind(), "BadArgumentsError") == 0, "kind %s", shmex_last_error_kind());

    /* Futures. */
    shmex_future *f;
    na = args_ab(args, sizeof args, -7, 3);
    CHECK_RC(shmex_action(h, "add", args, na, &f), SHMEX_OK);
    CHECK_RC(shmex_future_wait(f, SHMEX_FOREVER, &res, &nres), SHMEX_OK);
    CHECK(result_int(res, nres) == -4, "-7 + 3");
    shmex_free(res);
    CHECK(shmex_future_done(f) == 1, "done after wait");
    CHECK_RC(shmex_future_wait(f, 0, &res, &nres), SHMEX_OK); /* again: another copy */
    CHECK(result_int(res, nres) == -4, "-7 + 3 again");
    shmex_free(res);
    CHECK_RC(shmex_future_free(f), SHMEX_OK);
    CHECK_RC(shmex_future_free(f), SHMEX_EBADHANDLE);

    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_int(&w, 300);
    CHECK_RC(shmex_action(h, "sleep", args, w.len, &f), SHMEX_OK);
    CHECK(shmex_future_done(f) == 0, "pending");
    CHECK_RC(shmex_future_wait(f, 0, &res, &nres), SHMEX_ETIMEDOUT);
    CHECK_RC(shmex_future_wait(f, 1000000, &res, &nres), SHMEX_ETIMEDOUT);
    CHECK_RC(shmex_future_wait(f, SHMEX_FOREVER, NULL, &nres), SHMEX_OK);
    CHECK(nres == 1, "nil result is one byte, got %zu", nres);
    CHECK_RC(shmex_future_free(f), SHMEX_OK);

    CHECK_RC(shmex_action(h, "sleep", args, w.len, &f), SHMEX_OK);
    CHECK_RC(shmex_future_cancel(f), SHMEX_OK);
    CHECK_RC(shmex_future_wait(f, SHMEX_FOREVER, NULL, NULL), SHMEX_ECANCELED);
    CHECK_RC(shmex_future_free(f), SHMEX_OK);

    /* Call into the caller's buffer. */
    na = args_ab(args, sizeof args, 7, 8);
    uint8_t small[4], big[256];
    size_t got = 0;
    CHECK_RC(shmex_call_into(h, "add", args, na, SHMEX_FOREVER, big, sizeof big, &got), SHMEX_OK);
    CHECK(result_int(big, got) == 15, "7 + 8 into a buffer");
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_str(&w, "longer than four bytes", 22);
    CHECK_RC(shmex_call_into(h, "echo", args, w.len, SHMEX_FOREVER, small, sizeof small, &got), SHMEX_ETRUNCATED);
    CHECK(got == w.len, "needed %zu", got);
    CHECK_RC(shmex_call_into(h, "echo", args, w.len, SHMEX_FOREVER, NULL, 0, NULL), SHMEX_EINVAL);

    /* Take: the result into the caller's buffer, the future freed. */
    na = args_ab(args, sizeof args, 1000, 2);
    CHECK_RC(shmex_action(h, "add", args, na, &f), SHMEX_OK);
    CHECK_RC(shmex_future_take(f, SHMEX_FOREVER, big, sizeof big, &got), SHMEX_OK);
    CHECK(result_int(big, got) == 1002, "take 1000 + 2");
    CHECK_RC(shmex_future_take(f, 0, big, sizeof big, &got), SHMEX_EBADHANDLE);
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_str(&w, "longer than four bytes", 22);
    CHECK_RC(shmex_action(h, "echo", args, w.len, &f), SHMEX_OK);
    CHECK_RC(shmex_future_take(f, SHMEX_FOREVER, small, sizeof small, &got), SHMEX_ETRUNCATED);
    CHECK(got == w.len, "needed %zu, want %zu", got, w.len);
    CHECK_RC(shmex_future_take(f, SHMEX_FOREVER, big, sizeof big, &got), SHMEX_OK);
    CHECK(got == w.len && memcmp(big, args, got) == 0, "echo taken");
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_int(&w, 200);
    CHECK_RC(shmex_action(h, "sleep", args, w.len, &f), SHMEX_OK);
    CHECK_RC(shmex_future_take(f, 0, big, sizeof big, &got), SHMEX_ETIMEDOUT);
    CHECK_RC(shmex_future_take(f, 1000000, big, sizeof big, &got), SHMEX_ETIMEDOUT);
    CHECK_RC(shmex_future_take(f, SHMEX_FOREVER, big, sizeof big, &got), SHMEX_OK);
    CHECK(got == 1 && big[0] == 0xc0, "nil after the sleep");
    CHECK_RC(shmex_action(h, "fail", (const uint8_t *)"\x92\xa1K\xa1m", 5, &f), SHMEX_OK);
    CHECK_RC(shmex_future_take(f, SHMEX_FOREVER, big, sizeof big, &got), SHMEX_EREMOTE);
    CHECK(strcmp(shmex_last_error_kind(), "K") == 0, "kind %s", shmex_last_error_kind());
    CHECK_RC(shmex_future_free(f), SHMEX_EBADHANDLE); /* taken, even on an error */
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_int(&w, 300);

    /* A call that times out. */
    CHECK_RC(shmex_call(h, "sleep", args, w.len, 20000000, &res, &nres), SHMEX_ETIMEDOUT);

    int64_t rtt = 0;
    CHECK_RC(shmex_ping(h, SHMEX_FOREVER, &rtt), SHMEX_OK);
    CHECK(rtt > 0, "rtt %" PRId64, rtt);

    /* Closing a handle with a future pending cancels and frees it. */
    CHECK_RC(shmex_action(h, "sleep", args, w.len, &f), SHMEX_OK);
    CHECK_RC(shmex_handle_close(h, 0), SHMEX_OK);
    CHECK_RC(shmex_future_wait(f, 0, NULL, NULL), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_client_close(c), SHMEX_OK);
    CHECK_RC(shmex_close(x), SHMEX_OK);
    printf("ok calls\n");
}

static void test_payloads(void) {
    shmex_exchange *x = open_exchange();
    shmex_client *c;
    shmex_handle *h;
    CHECK_RC(shmex_client_open(x, NULL, &c), SHMEX_OK);
    CHECK_RC(shmex_handle_open(c, &calc, &h), SHMEX_OK);

    /* A loan filled in place, passed as a proxy, summed by the Go agent. */
    const size_t count = 100000;
    shmex_loan *l;
    void *p;
    CHECK_RC(shmex_loan_alloc(x, count * sizeof(double), SHMEX_LIFETIME_SINGLE_USE, 0, &l, &p), SHMEX_OK);
    CHECK(((uintptr_t)p & 63) == 0, "loan at %p is not 64-byte aligned", p);
    double *d = p, want = 0;
    for (size_t i = 0; i < count; i++) {
        d[i] = (double)i * 0.5;
        want += d[i];
    }
    uint8_t proxy[SHMEX_PROXY_MAX];
    size_t np = 0;
    CHECK_RC(shmex_loan_commit(l, proxy, sizeof proxy, &np), SHMEX_OK);
    CHECK(np > 0 && np <= SHMEX_PROXY_MAX && shmex_is_proxy(proxy, np) == 1, "proxy of %zu bytes", np);
    CHECK_RC(shmex_loan_commit(l, proxy, sizeof proxy, &np), SHMEX_EBADHANDLE);
    uint8_t *res;
    size_t nres;
    CHECK_RC(shmex_call(h, "sum", proxy, np, SHMEX_FOREVER, &res, &nres), SHMEX_OK);
    shmex_mp_reader r;
    shmex_mp_reader_init(&r, res, nres);
    double got = shmex_mp_read_double(&r);
    CHECK(r.err == 0 && got == want, "sum %f, want %f", got, want);
    shmex_free(res);
    /* Single use: the agent released it, a second use fails. */
    CHECK_RC(shmex_call(h, "sum", proxy, np, SHMEX_FOREVER, &res, &nres), SHMEX_EREMOTE);

    /* shmex_action_loan: the commit and the call in one entry. */
    CHECK_RC(shmex_loan_alloc(x, count * sizeof(double), SHMEX_LIFETIME_SINGLE_USE, 0, &l, &p), SHMEX_OK);
    d = p;
    for (size_t i = 0; i < count; i++) d[i] = (double)i * 0.5;
    shmex_future *f;
    size_t nl = 99;
    uint8_t tiny[8];
    CHECK_RC(shmex_action_loan(h, NULL, l, NULL, 0, &nl, &f), SHMEX_EINVAL);
    CHECK(nl == 0, "len %zu after a refused call", nl);
    CHECK_RC(shmex_action_loan(h, "", l, NULL, 0, &nl, &f), SHMEX_EINVAL);
    CHECK_RC(shmex_action_loan(h, "sum", l, tiny, sizeof tiny, &nl, &f), SHMEX_EINVAL);
    CHECK_RC(shmex_action_loan(h, "sum", l, proxy, sizeof proxy, NULL, &f), SHMEX_EINVAL);
    CHECK_RC(shmex_action_loan(h, "sum", (shmex_loan *)h, NULL, 0, &nl, &f), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_action_loan((shmex_handle *)l, "sum", l, NULL, 0, &nl, &f), SHMEX_EBADHANDLE);
    CHECK(nl == 0, "len %zu after a refused call", nl);
    /* Still open after the refusals: now commit and call. */
    CHECK_RC(shmex_action_loan(h, "sum", l, proxy, sizeof proxy, &nl, &f), SHMEX_OK);
    CHECK(nl > 0 && nl <= SHMEX_PROXY_MAX && shmex_is_proxy(proxy, nl) == 1, "proxy of %zu bytes", nl);
    uint8_t rbuf[64];
    CHECK_RC(shmex_future_take(f, SHMEX_FOREVER, rbuf, sizeof rbuf, &nres), SHMEX_OK);
    shmex_mp_reader_init(&r, rbuf, nres);
    got = shmex_mp_read_double(&r);
    CHECK(r.err == 0 && got == want, "sum %f by shmex_action_loan, want %f", got, want);
    CHECK_RC(shmex_action_loan(h, "sum", l, NULL, 0, NULL, &f), SHMEX_EBADHANDLE); /* committed */
    CHECK_RC(shmex_loan_abort(l), SHMEX_EBADHANDLE);
    /* A send that fails after the commit: *len tells that the loan was
     * committed, and the proxy lets the caller free an owned payload. */
    shmex_id ghost = calc;
    ghost.uuid[0] ^= 0xff;
    ghost.uuid[1] ^= 0x5a;
    shmex_handle *hg;
    CHECK_RC(shmex_handle_open(c, &ghost, &hg), SHMEX_OK);
    CHECK_RC(shmex_loan_alloc(x, 4096, SHMEX_LIFETIME_OWNED, 0, &l, &p), SHMEX_OK);
    int rc = shmex_action_loan(hg, "sum", l, proxy, sizeof proxy, &nl, &f);
    CHECK(rc < 0 && nl > 0, "shmex_action_loan to a missing agent: status %d, len %zu", rc, nl);
    CHECK_RC(shmex_loan_abort(l), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_proxy_free(x, proxy, nl), SHMEX_OK);
    CHECK_RC(shmex_handle_close(hg, 0), SHMEX_OK);

    /* Put (one copy), owned: usable twice, then freed. */
    double small[4] = {1, 2, 3, 4.5};
    CHECK_RC(shmex_put(x, small, sizeof small, SHMEX_LIFETIME_OWNED, 0, proxy, sizeof proxy, &np), SHMEX_OK);
    for (int i = 0; i < 2; i++) {
        CHECK_RC(shmex_call(h, "sum", proxy, np, SHMEX_FOREVER, &res, &nres), SHMEX_OK);
        shmex_mp_reader_init(&r, res, nres);
        CHECK(shmex_mp_read_double(&r) == 10.5, "sum of the put");
        shmex_free(res);
    }
    CHECK_RC(shmex_proxy_free(x, proxy, np), SHMEX_OK);
    CHECK_RC(shmex_call(h, "sum", proxy, np, SHMEX_FOREVER, &res, &nres), SHMEX_EREMOTE);

    /* A result that is a proxy into the Go agent's arena, read in place. */
    shmex_mp_writer w;
    uint8_t args[16];
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_uint(&w, 1 << 20);
    CHECK_RC(shmex_call(h, "make", args, w.len, SHMEX_FOREVER, &res, &nres), SHMEX_OK);
    CHECK(shmex_is_proxy(res, nres) == 1, "make returns a proxy");
    shmex_mp_reader_init(&r, res, nres);
    CHECK(shmex_mp_next(&r) == SHMEX_MP_EXT, "a proxy is an ext");
    shmex_view *v;
    const void *data;
    size_t n;
    CHECK_RC(shmex_resolve(x, res, nres, &v, &data, &n), SHMEX_OK);
    CHECK(n == 1 << 20, "payload of %zu bytes", n);
    CHECK(shmex_view_form(v) == SHMEX_FORM_BYTES, "a Blob is bytes");
    const uint8_t *b = data;
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += b[i] != (uint8_t)(i % 251);
    CHECK(bad == 0, "%d bytes differ", bad);
    CHECK_RC(shmex_view_release(v), SHMEX_OK);
    CHECK_RC(shmex_view_release(v), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_resolve(x, res, nres, &v, &data, &n), SHMEX_EPROXY); /* single use */
    shmex_free(res);

    CHECK(shmex_view_form(v) == SHMEX_EBADHANDLE, "form of a released view");

    /* A proxy of form value in a result (what a Go wrapper makes of a large
     * value) is decoded by the client: the caller gets the value. */
    for (int k = 0; k < 2; k++) {
        shmex_mp_writer_init(&w, args, sizeof args);
        shmex_mp_write_uint(&w, k == 0 ? 0 : 5000);
        CHECK_RC(shmex_call(h, "value", args, w.len, SHMEX_FOREVER, &res, &nres), SHMEX_OK);
        CHECK(shmex_is_proxy(res, nres) == 0, "the value, not its proxy");
        shmex_mp_reader_init(&r, res, nres);
        if (k == 0) {
            CHECK(shmex_mp_read_array(&r) == 2 && shmex_mp_read_int(&r) == 42, "[42, \"proxied\"]");
        } else {
            b = shmex_mp_read_bin(&r, &n);
            CHECK(b != NULL && n == 5000 && b[4999] == (uint8_t)(4999 % 251), "the bin, %zu bytes", n);
        }
        shmex_free(res);
    }

    /* Warm segments ahead of large loans. */
    size_t sizes[] = {1 << 20, 64 << 10};
    CHECK_RC(shmex_reserve(x, sizes, 2), SHMEX_OK);
    CHECK_RC(shmex_reserve(x, NULL, 1), SHMEX_EINVAL);

    /* Loans and views left open are released by the exchange's close. */
    CHECK_RC(shmex_loan_alloc(x, 4096, SHMEX_LIFETIME_OWNED, 0, &l, &p), SHMEX_OK);
    CHECK_RC(shmex_client_close(c), SHMEX_OK);
    CHECK_RC(shmex_close(x), SHMEX_OK);
    CHECK_RC(shmex_loan_abort(l), SHMEX_EBADHANDLE);
    printf("ok payloads\n");
}

/* ----------------------------------------------------------------- threads */

struct worker {
    shmex_handle *h; /* shared, or NULL: open one on c */
    shmex_client *c;
    int id, calls, errors, bad_status;
    char kind[64];
};

static void *worker_run(void *arg) {
    struct worker *wk = arg;
    shmex_handle *h = wk->h;
    if (h == NULL && shmex_handle_open(wk->c, &calc, &h) != SHMEX_OK) {
        wk->errors++;
        return NULL;
    }
    for (int i = 0; i < wk->calls; i++) {
        uint8_t args[32], *res;
        size_t n = args_ab(args, sizeof args, wk->id, i), nres;
        int rc = shmex_call(h, "add", args, n, SHMEX_FOREVER, &res, &nres);
        if (rc != SHMEX_OK) {
            wk->errors++;
            continue;
        }
        shmex_mp_reader r;
        shmex_mp_reader_init(&r, res, nres);
        if (shmex_mp_read_int(&r) != wk->id + i) wk->errors++;
        shmex_free(res);
    }
    /* Each thread's last error is its own. */
    int rc = shmex_call(h, "nope", NULL, 0, SHMEX_FOREVER, NULL, NULL);
    if (rc != SHMEX_EREMOTE) wk->bad_status = rc;
    snprintf(wk->kind, sizeof wk->kind, "%s", shmex_last_error_kind());
    if (wk->h == NULL) shmex_handle_close(h, SHMEX_FOREVER);
    return NULL;
}

static atomic_int stop_calling;

struct caller {
    shmex_handle *h;
    int unexpected;
    int ok;
};

static void *call_until_closed(void *arg) {
    struct caller *cl = arg;
    while (!atomic_load(&stop_calling)) {
        uint8_t args[32];
        size_t n = args_ab(args, sizeof args, 1, 1);
        int rc = shmex_call(cl->h, "add", args, n, SHMEX_FOREVER, NULL, NULL);
        if (rc == SHMEX_OK) {
            cl->ok++;
        } else if (rc == SHMEX_EBADHANDLE || rc == SHMEX_ECLOSED) {
            break;
        } else {
            cl->unexpected = rc;
            break;
        }
    }
    return NULL;
}

static void test_threads(void) {
    shmex_exchange *x = open_exchange();
    shmex_client *c;
    shmex_handle *h;
    CHECK_RC(shmex_client_open(x, NULL, &c), SHMEX_OK);
    CHECK_RC(shmex_handle_open(c, &calc, &h), SHMEX_OK);
    enum { N = 8 };
    pthread_t t[N];
    struct worker wk[N];
    for (int i = 0; i < N; i++) {
        wk[i] = (struct worker){.h = i % 2 ? h : NULL, .c = c, .id = i * 1000, .calls = 200};
        pthread_create(&t[i], NULL, worker_run, &wk[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK(wk[i].errors == 0, "thread %d: %d errors", i, wk[i].errors);
        CHECK(wk[i].bad_status == 0, "thread %d: unknown action gave %d", i, wk[i].bad_status);
        CHECK(strcmp(wk[i].kind, "UnknownActionError") == 0, "thread %d: kind %s", i, wk[i].kind);
    }

    /* Close the client under threads that call through it: statuses only. */
    struct caller cl[4];
    pthread_t tc[4];
    atomic_store(&stop_calling, 0);
    for (int i = 0; i < 4; i++) {
        cl[i] = (struct caller){.h = h};
        pthread_create(&tc[i], NULL, call_until_closed, &cl[i]);
    }
    /* Let them call a while. */
    for (int i = 0; i < 200; i++) shmex_ping(h, SHMEX_FOREVER, NULL);
    CHECK_RC(shmex_client_close(c), SHMEX_OK);
    atomic_store(&stop_calling, 1);
    for (int i = 0; i < 4; i++) {
        pthread_join(tc[i], NULL);
        CHECK(cl[i].unexpected == 0, "caller %d got %d (%s)", i, cl[i].unexpected, shmex_strerror(cl[i].unexpected));
    }
    CHECK_RC(shmex_close(x), SHMEX_OK);
    printf("ok threads\n");
}

/* ------------------------------------------------------------ a C agent */

/* upper answers "upper" with its string argument in upper case, and
 * "count" with the number of requests served. */
struct upper_state {
    atomic_int served;
};

static int upper(void *user, shmex_request *req, const shmex_message *msg) {
    struct upper_state *s = user;
    atomic_fetch_add(&s->served, 1);
    if (msg->action_len == 5 && memcmp(msg->action, "count", 5) == 0) {
        uint8_t out[16];
        shmex_mp_writer w;
        shmex_mp_writer_init(&w, out, sizeof out);
        shmex_mp_write_int(&w, atomic_load(&s->served));
        return shmex_request_reply(req, out, w.len);
    }
    if (msg->action_len != 5 || memcmp(msg->action, "upper", 5) != 0)
        return shmex_request_fail(req, "UnknownActionError", "no such action");
    shmex_mp_reader r;
    shmex_mp_reader_init(&r, msg->args, msg->args_len);
    size_t n;
    const char *s_in = shmex_mp_read_str(&r, &n);
    if (s_in == NULL) return shmex_request_fail(req, "BadArgumentsError", "upper takes a string");
    char *up = malloc(n + 8);
    uint8_t *out = malloc(n + 8);
    for (size_t i = 0; i < n; i++) up[i] = (s_in[i] >= 'a' && s_in[i] <= 'z') ? s_in[i] - 32 : s_in[i];
    shmex_mp_writer w;
    shmex_mp_writer_init(&w, out, n + 8);
    shmex_mp_write_str(&w, up, n);
    int rc = shmex_request_reply(req, out, w.len);
    free(up);
    free(out);
    return rc;
}

struct serve_args {
    shmex_agent *a;
    struct upper_state *s;
    int rc;
};

static void *serve(void *arg) {
    struct serve_args *sa = arg;
    sa->rc = shmex_agent_serve(sa->a, upper, sa->s);
    return NULL;
}

/* ignore leaves the request unanswered: serve fails it for us. */
static int ignore(void *user, shmex_request *req, const shmex_message *msg) {
    (void)user, (void)req, (void)msg;
    return SHMEX_EIO;
}

static void test_agent(void) {
    shmex_exchange *x = open_exchange();
    shmex_agent *a;
    const char *impl[] = {"Base"};
    CHECK_RC(shmex_agent_open(x, "Upper", impl, 1, "upper", NULL, &a), SHMEX_OK);
    shmex_id aid;
    CHECK_RC(shmex_agent_id(a, &aid), SHMEX_OK);
    CHECK(aid.role == SHMEX_ROLE_AGENT, "role %u", aid.role);
    struct upper_state s = {0};
    struct serve_args sa = {.a = a, .s = &s};
    pthread_t t;
    pthread_create(&t, NULL, serve, &sa);

    shmex_client *c;
    shmex_handle *h;
    CHECK_RC(shmex_client_open(x, NULL, &c), SHMEX_OK);
    CHECK_RC(shmex_handle_open(c, &aid, &h), SHMEX_OK);
    uint8_t args[64], *res;
    size_t nres;
    shmex_mp_writer w;
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_str(&w, "shmex from c", 12);
    CHECK_RC(shmex_call(h, "upper", args, w.len, SHMEX_FOREVER, &res, &nres), SHMEX_OK);
    shmex_mp_reader r;
    shmex_mp_reader_init(&r, res, nres);
    size_t n;
    const char *got = shmex_mp_read_str(&r, &n);
    CHECK(got != NULL && n == 12 && memcmp(got, "SHMEX FROM C", 12) == 0, "upper: %.*s", (int)n, got);
    shmex_free(res);
    CHECK_RC(shmex_call(h, "lower", args, w.len, SHMEX_FOREVER, &res, &nres), SHMEX_EREMOTE);
    CHECK(strcmp(shmex_last_error_kind(), "UnknownActionError") == 0, "kind %s", shmex_last_error_kind());
    CHECK_RC(shmex_ping(h, SHMEX_FOREVER, NULL), SHMEX_OK);
    CHECK_RC(shmex_shutdown(h, SHMEX_FOREVER), SHMEX_OK);
    pthread_join(t, NULL);
    CHECK_RC(sa.rc, SHMEX_OK);
    shmex_request *req;
    CHECK_RC(shmex_agent_recv(a, 0, &req, NULL), SHMEX_ESHUTDOWN);
    int st;
    CHECK_RC(shmex_status(x, &aid, &st), SHMEX_OK);
    CHECK(st == SHMEX_STATUS_TERMINATED, "status after shutdown %d", st);
    CHECK_RC(shmex_call(h, "upper", args, w.len, SHMEX_FOREVER, &res, &nres), SHMEX_EAGENT_TERMINATED);
    CHECK_RC(shmex_agent_close(a), SHMEX_OK);

    /* A callback that does not answer: the request is failed for it. */
    CHECK_RC(shmex_agent_open(x, "Ignore", NULL, 0, NULL, NULL, &a), SHMEX_OK);
    CHECK_RC(shmex_agent_id(a, &aid), SHMEX_OK);
    shmex_handle *h2;
    CHECK_RC(shmex_handle_open(c, &aid, &h2), SHMEX_OK);
    shmex_future *f;
    CHECK_RC(shmex_action(h2, "x", NULL, 0, &f), SHMEX_OK);
    shmex_message msg;
    CHECK_RC(shmex_agent_recv(a, SHMEX_FOREVER, &req, &msg), SHMEX_OK);
    CHECK(msg.kind == SHMEX_ACTION_REQUEST && msg.action_len == 1 && msg.action[0] == 'x', "request");
    CHECK(msg.args_len == 0 && msg.args == NULL, "no args");
    ignore(NULL, req, &msg);
    CHECK_RC(shmex_request_fail(req, "KeyError", "no x"), SHMEX_OK);
    CHECK_RC(shmex_request_fail(req, "KeyError", "twice"), SHMEX_EBADHANDLE);
    CHECK_RC(shmex_future_wait(f, SHMEX_FOREVER, NULL, NULL), SHMEX_EREMOTE);
    CHECK(strcmp(shmex_last_error_kind(), "KeyError") == 0, "kind %s", shmex_last_error_kind());
    shmex_future_free(f);
    /* A receive with nothing queued times out; a local shutdown ends it. */
    CHECK_RC(shmex_agent_recv(a, 1000000, &req, NULL), SHMEX_ETIMEDOUT);
    /* A request still unanswered when the agent closes is failed. */
    CHECK_RC(shmex_action(h2, "y", NULL, 0, &f), SHMEX_OK);
    CHECK_RC(shmex_agent_recv(a, SHMEX_FOREVER, &req, &msg), SHMEX_OK);
    CHECK_RC(shmex_agent_close(a), SHMEX_OK);
    CHECK_RC(shmex_future_wait(f, SHMEX_FOREVER, NULL, NULL), SHMEX_EREMOTE);
    CHECK(strcmp(shmex_last_error_kind(), "AgentShutdownError") == 0, "kind %s", shmex_last_error_kind());
    CHECK_RC(shmex_request_reply(req, NULL, 0), SHMEX_EBADHANDLE);
    shmex_future_free(f);

    /* The raw interface: a message sent by hand, its answer received. */
    shmex_id me;
    CHECK_RC(shmex_register_client(x, "raw", &me), SHMEX_OK);
    shmex_mailbox *mb;
    CHECK_RC(shmex_mailbox_open(x, &me, &mb), SHMEX_OK);
    shmex_message m;
    memset(&m, 0, sizeof m);
    m.kind = SHMEX_ACTION_REQUEST;
    m.src = me;
    m.dest = calc;
    m.action = "add";
    m.action_len = 3;
    m.args = args;
    m.args_len = args_ab(args, sizeof args, 20, 22);
    CHECK_RC(shmex_send(x, &m, SHMEX_FOREVER), SHMEX_OK);
    uint8_t zero[16] = {0};
    CHECK(memcmp(m.tag, zero, 16) != 0, "a fresh tag was written back");
    shmex_message got_m;
    CHECK_RC(shmex_mailbox_recv(mb, SHMEX_FOREVER, &got_m), SHMEX_OK);
    CHECK(got_m.kind == SHMEX_ACTION_RESPONSE && memcmp(got_m.tag, m.tag, 16) == 0, "the response");
    CHECK(result_int(got_m.result, got_m.result_len) == 42, "20 + 22");
    CHECK_RC(shmex_mailbox_recv(mb, 0, &got_m), SHMEX_ETIMEDOUT);
    /* Raw messages carry proxies of form value as they came: resolved, a
     * bin's is its content, another value's its MessagePack encoding. */
    for (int k = 0; k < 2; k++) {
        shmex_mp_writer w2;
        uint8_t a2[16];
        shmex_mp_writer_init(&w2, a2, sizeof a2);
        shmex_mp_write_uint(&w2, k == 0 ? 0 : 5000);
        memset(m.tag, 0, sizeof m.tag);
        m.action = "value";
        m.action_len = 5;
        m.args = a2;
        m.args_len = w2.len;
        CHECK_RC(shmex_send(x, &m, SHMEX_FOREVER), SHMEX_OK);
        CHECK_RC(shmex_mailbox_recv(mb, SHMEX_FOREVER, &got_m), SHMEX_OK);
        CHECK(shmex_is_proxy(got_m.result, got_m.result_len) == 1, "a proxy of form value");
        shmex_view *v;
        const void *data;
        size_t n;
        CHECK_RC(shmex_resolve(x, got_m.result, got_m.result_len, &v, &data, &n), SHMEX_OK);
        shmex_mp_reader r2;
        if (k == 0) {
            CHECK(shmex_view_form(v) == SHMEX_FORM_VALUE, "form %d", shmex_view_form(v));
            shmex_mp_reader_init(&r2, data, n);
            CHECK(shmex_mp_read_array(&r2) == 2 && shmex_mp_read_int(&r2) == 42, "[42, \"proxied\"]");
        } else {
            const uint8_t *b = data;
            CHECK(shmex_view_form(v) == SHMEX_FORM_BYTES, "form %d", shmex_view_form(v));
            CHECK(n == 5000 && b[4999] == (uint8_t)(4999 % 251), "the bin's content, %zu bytes", n);
        }
        CHECK_RC(shmex_view_release(v), SHMEX_OK);
    }
    CHECK_RC(shmex_mailbox_close(mb), SHMEX_OK);
    CHECK_RC(shmex_terminate(x, &me), SHMEX_OK);
    CHECK_RC(shmex_status(x, &me, &st), SHMEX_OK);
    CHECK(st == SHMEX_STATUS_TERMINATED, "status %d", st);
    CHECK_RC(shmex_close(x), SHMEX_OK);
    printf("ok agent\n");
}

static void test_mp(void) {
    uint8_t buf[256];
    shmex_mp_writer w;
    shmex_mp_writer_init(&w, buf, sizeof buf);
    shmex_mp_write_array(&w, 9);
    shmex_mp_write_nil(&w);
    shmex_mp_write_bool(&w, 1);
    int64_t ints[] = {0, -1, -33, 127, 128, -129, 70000, -70000, 5000000000LL, INT64_MIN};
    shmex_mp_write_array(&w, 10);
    for (int i = 0; i < 10; i++) shmex_mp_write_int(&w, ints[i]);
    shmex_mp_write_uint(&w, UINT64_MAX);
    shmex_mp_write_double(&w, 2.5);
    shmex_mp_write_str(&w, "héllo", strlen("héllo"));
    shmex_mp_write_bin(&w, "\x00\x01", 2);
    shmex_mp_write_map(&w, 1);
    shmex_mp_write_str(&w, "k", 1);
    shmex_mp_write_int(&w, 7);
    shmex_mp_write_raw(&w, "\xc0", 1);
    CHECK(w.err == 0, "writer error %d", w.err);
    shmex_mp_reader r;
    shmex_mp_reader_init(&r, buf, w.len);
    CHECK(shmex_mp_read_array(&r) == 9, "array");
    CHECK(shmex_mp_read_nil(&r) == 1, "nil");
    CHECK(shmex_mp_read_bool(&r) == 1, "bool");
    CHECK(shmex_mp_read_array(&r) == 10, "ints");
    for (int i = 0; i < 10; i++) CHECK(shmex_mp_read_int(&r) == ints[i], "int %d", i);
    CHECK(shmex_mp_read_uint(&r) == UINT64_MAX, "uint");
    CHECK(shmex_mp_read_double(&r) == 2.5, "double");
    size_t n;
    const char *s = shmex_mp_read_str(&r, &n);
    CHECK(s != NULL && n == strlen("héllo") && memcmp(s, "héllo", n) == 0, "str");
    const uint8_t *b = shmex_mp_read_bin(&r, &n);
    CHECK(b != NULL && n == 2 && b[1] == 1, "bin");
    size_t at = r.pos;
    const uint8_t *raw = shmex_mp_read_raw(&r, &n);
    CHECK(raw == buf + at && n == 4, "raw map of %zu bytes", n);
    CHECK(shmex_mp_read_nil(&r) == 1 && r.pos == w.len && r.err == 0, "end");
    /* Errors: wrong type, past the end, a count larger than the input. */
    shmex_mp_reader_init(&r, buf, w.len);
    CHECK(shmex_mp_read_int(&r) == 0 && r.err == SHMEX_EINVAL && r.pos == 0, "wrong type");
    CHECK(shmex_mp_read_array(&r) == 0, "sticky error");
    uint8_t lying[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    shmex_mp_reader_init(&r, lying, sizeof lying);
    CHECK(shmex_mp_read_array(&r) == 0 && r.err != 0, "an array count beyond the input");
    shmex_mp_reader_init(&r, lying, sizeof lying);
    CHECK(shmex_mp_read_raw(&r, &n) == NULL && r.err != 0, "skip of a lying array");
    uint8_t shortstr[] = {0xd9, 10, 'a'};
    shmex_mp_reader_init(&r, shortstr, sizeof shortstr);
    CHECK(shmex_mp_read_str(&r, &n) == NULL && r.err != 0, "a string beyond the input");
    /* A writer out of room counts what it needs. */
    shmex_mp_writer_init(&w, buf, 3);
    shmex_mp_write_str(&w, "hello", 5);
    CHECK(w.err == SHMEX_ETRUNCATED && w.len == 6, "truncated: err %d len %zu", w.err, w.len);
    printf("ok mp\n");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ROOT NAME AGENT_ID|serve\n", argv[0]);
        return 2;
    }
    root = argv[1];
    name = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[3], "serve") == 0) {
        shmex_exchange *x = open_exchange();
        shmex_agent *a;
        CHECK_RC(shmex_agent_open(x, "Upper", NULL, 0, NULL, NULL, &a), SHMEX_OK);
        shmex_id aid;
        char s[SHMEX_ID_STRLEN];
        shmex_agent_id(a, &aid);
        shmex_id_format(&aid, s, sizeof s);
        printf("ready %s\n", s);
        struct upper_state st = {0};
        CHECK_RC(shmex_agent_serve(a, upper, &st), SHMEX_OK);
        CHECK_RC(shmex_agent_close(a), SHMEX_OK);
        CHECK_RC(shmex_close(x), SHMEX_OK);
        return failures != 0;
    }
    if (shmex_id_parse(argv[3], &calc) != SHMEX_OK) {
        fprintf(stderr, "bad agent id %s: %s\n", argv[3], shmex_last_error());
        return 2;
    }
    test_version();
    test_mp();
    test_bad_input();
    test_calls();
    test_payloads();
    test_threads();
    test_agent();
    printf(failures ? "FAILED\n" : "PASS\n");
    return failures != 0;
}
