/*
 * bench.c: the C side of the C-to-Go rows of the benchmark (bench/capi.go):
 * no-op action round trips and pipelined actions from C to an agent.
 *
 *   bench ROOT NAME AGENT_ID IDLE rtt SECONDS SAMPLES_FILE
 *       warms up, then times no-op actions (64 bytes of arguments) one by
 *       one for SECONDS: writes each round trip in ns (int64, native
 *       endian) to SAMPLES_FILE and prints "rtt N MEAN_NS" (MEAN_NS from
 *       a bulk phase timed as a whole).
 *   bench ROOT NAME AGENT_ID IDLE pipeline SECONDS WINDOW
 *       keeps WINDOW actions in flight for SECONDS and prints
 *       "pipeline N SECONDS_ELAPSED".
 *
 * IDLE is default, spin, park or backoff. With SHMEX_BENCH_CPU set, the measuring
 * thread (this one, not the Go runtime's) is pinned to that CPU once the
 * library is loaded. Exit status 1 on any error.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmex.h"

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "bench: %s: %s: %s\n", what, shmex_strerror(rc), shmex_last_error());
    exit(1);
}

static uint8_t args[80];
static size_t nargs;
static uint8_t res[256];

/* call is one round trip: the synchronous call, one entry into the
 * library, the result in our buffer. */
static void call(shmex_handle *h) {
    size_t n;
    int rc = shmex_call_into(h, "noop", args, nargs, SHMEX_FOREVER, res, sizeof res, &n);
    if (rc != SHMEX_OK) die("call", rc);
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s ROOT NAME AGENT_ID IDLE rtt|pipeline SECONDS SAMPLES_FILE|WINDOW\n", argv[0]);
        return 2;
    }
    shmex_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.root = argv[1];
    o.idle = strcmp(argv[4], "spin") == 0      ? SHMEX_IDLE_SPIN
             : strcmp(argv[4], "park") == 0    ? SHMEX_IDLE_PARK
             : strcmp(argv[4], "backoff") == 0 ? SHMEX_IDLE_BACKOFF
                                               : SHMEX_IDLE_DEFAULT;
    shmex_exchange *x;
    shmex_client *c;
    shmex_handle *h;
    shmex_id id;
    int rc;
    if ((rc = shmex_open(argv[2], &o, &x)) != SHMEX_OK) die("open", rc);
    const char *cpu = getenv("SHMEX_BENCH_CPU");
    if (cpu != NULL) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(cpu), &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
    }
    if ((rc = shmex_id_parse(argv[3], &id)) != SHMEX_OK) die("agent id", rc);
    if ((rc = shmex_client_open(x, NULL, &c)) != SHMEX_OK) die("client", rc);
    if ((rc = shmex_handle_open(c, &id, &h)) != SHMEX_OK) die("handle", rc);
    shmex_mp_writer w;
    uint8_t payload[64];
    memset(payload, 'x', sizeof payload);
    shmex_mp_writer_init(&w, args, sizeof args);
    shmex_mp_write_bin(&w, payload, sizeof payload);
    nargs = w.len;
    double seconds = atof(argv[6]);
    int64_t dur = (int64_t)(seconds * 1e9);

    /* Warm up for a tenth of the time. */
    for (int64_t end = now_ns() + dur / 10; now_ns() < end;)
        for (int i = 0; i < 100; i++) call(h);

    if (strcmp(argv[5], "rtt") == 0) {
        /* Bulk phase: the mean without a clock read per call. */
        int64_t n = 0, t0 = now_ns(), end = t0 + dur / 2;
        while (now_ns() < end) {
            for (int i = 0; i < 100; i++) call(h);
            n += 100;
        }
        double mean = (double)(now_ns() - t0) / (double)n;
        /* Timed phase: every round trip on its own. */
        size_t cap = 1 << 20, k = 0;
        int64_t *s = malloc(cap * sizeof *s);
        end = now_ns() + dur / 2;
        while (k < cap) {
            int64_t a = now_ns();
            call(h);
            int64_t b = now_ns();
            s[k++] = b - a;
            if (b >= end) break;
        }
        FILE *f = fopen(argv[7], "wb");
        if (f == NULL || fwrite(s, sizeof *s, k, f) != k || fclose(f) != 0) {
            perror(argv[7]);
            return 1;
        }
        printf("rtt %zu %.1f\n", k, mean);
    } else if (strcmp(argv[5], "pipeline") == 0) {
        int window = atoi(argv[7]);
        if (window < 1 || window > 4096) {
            fprintf(stderr, "bench: window %d\n", window);
            return 2;
        }
        shmex_future **q = calloc((size_t)window, sizeof *q);
        int64_t n = 0, t0 = now_ns(), end = t0 + dur;
        size_t got;
        for (int i = 0; i < window; i++)
            if ((rc = shmex_action(h, "noop", args, nargs, &q[i])) != SHMEX_OK) die("action", rc);
        for (int i = 0;; i = (i + 1) % window) {
            if ((rc = shmex_future_take(q[i], SHMEX_FOREVER, res, sizeof res, &got)) != SHMEX_OK) die("take", rc);
            n++;
            if ((n & 63) == 0 && now_ns() >= end) {
                for (int j = (i + 1) % window; j != i; j = (j + 1) % window) {
                    if ((rc = shmex_future_take(q[j], SHMEX_FOREVER, res, sizeof res, &got)) != SHMEX_OK)
                        die("take", rc);
                    n++;
                }
                break;
            }
            if ((rc = shmex_action(h, "noop", args, nargs, &q[i])) != SHMEX_OK) die("action", rc);
        }
        printf("pipeline %lld %.6f\n", (long long)n, (double)(now_ns() - t0) / 1e9);
    } else {
        fprintf(stderr, "bench: mode %s\n", argv[5]);
        return 2;
    }
    shmex_client_close(c);
    shmex_close(x);
    return 0;
}
