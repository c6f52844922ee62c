/*
 * client.c: a C program that calls a Go agent through libshmex.
 *
 * It joins the exchange NAME, discovers an agent of behavior "Calc", calls
 * its action "add" with the MessagePack arguments [2, 40], then lends an
 * array of a million doubles in place in shared memory and has the agent
 * sum it, without a copy.
 *
 *   cc -I capi -o client capi/examples/client.c -L. -lshmex     (or libshmex.a -lpthread)
 *   ./client NAME [ROOT]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmex.h"

#define CHECK(call)                                                                        \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ != SHMEX_OK) {                                                             \
            fprintf(stderr, "%s: %s: %s\n", #call, shmex_strerror(rc_), shmex_last_error()); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s NAME [ROOT]\n", argv[0]);
        return 2;
    }
    if (shmex_version() / 10000 != SHMEX_VERSION_MAJOR) {
        fprintf(stderr, "libshmex %s does not match shmex.h %s\n", shmex_version_string(), SHMEX_VERSION_STRING);
        return 1;
    }
    shmex_options opts = {.size = sizeof opts, .root = argc > 2 ? argv[2] : NULL};
    shmex_exchange *x;
    CHECK(shmex_open(argv[1], &opts, &x));

    /* Find the agent. */
    shmex_id calc;
    size_t found;
    int rc = shmex_discover(x, "Calc", 0, &calc, 1, &found);
    if ((rc != SHMEX_OK && rc != SHMEX_ETRUNCATED) || found == 0) {
        fprintf(stderr, "no Calc agent in %s\n", argv[1]);
        return 1;
    }
    shmex_client *client;
    shmex_handle *calc_h;
    CHECK(shmex_client_open(x, "c-example", &client));
    CHECK(shmex_handle_open(client, &calc, &calc_h));

    /* add [2, 40]: arguments and results are MessagePack. */
    uint8_t args[32];
    shmex_mp_writer w;
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_array(&w, 2);
    shmex_mp_write_int(&w, 2);
    shmex_mp_write_int(&w, 40);
    uint8_t *res;
    size_t nres;
    CHECK(shmex_call(calc_h, "add", args, w.len, 5000000000LL, &res, &nres));
    shmex_mp_reader r;
    shmex_mp_reader_init(&r, res, nres);
    printf("2 + 40 = %lld\n", (long long)shmex_mp_read_int(&r));
    shmex_free(res); /* results are the caller's */

    /* A million doubles filled in place in this process's arena... */
    const size_t n = 1000000;
    shmex_loan *loan;
    double *v;
    CHECK(shmex_loan_alloc(x, n * sizeof *v, SHMEX_LIFETIME_SINGLE_USE, 0, &loan, (void **)&v));
    for (size_t i = 0; i < n; i++) v[i] = 0.5;
    /* ...published as a proxy of a few dozen bytes, which is the argument. */
    uint8_t proxy[SHMEX_PROXY_MAX];
    size_t nproxy;
    CHECK(shmex_loan_commit(loan, proxy, sizeof proxy, &nproxy));
    CHECK(shmex_call(calc_h, "sum", proxy, nproxy, 5000000000LL, &res, &nres));
    shmex_mp_reader_init(&r, res, nres);
    printf("sum of %zu halves = %.1f (%zu bytes sent)\n", n, shmex_mp_read_double(&r), nproxy);
    shmex_free(res);

    CHECK(shmex_client_close(client));
    CHECK(shmex_close(x));
    return 0;
}
