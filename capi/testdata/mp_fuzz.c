/*
 * mp_fuzz.c: the MessagePack reader of mp.c on random and mutated input,
 * built by TestMPReaderFuzz with AddressSanitizer and UBSan so that a read
 * out of bounds, an overflow or undefined behaviour fails the test.
 *
 *   mp_fuzz ITERATIONS SEED
 *
 * mp.c is included directly: no libshmex, no Go runtime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mp.c"

static uint64_t rng;

static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* walk reads b[0..n) every way the reader offers and checks its invariants. */
static int walk(const uint8_t *b, size_t n) {
    shmex_mp_reader r;
    size_t len;
    shmex_mp_reader_init(&r, b, n);
    const uint8_t *raw = shmex_mp_read_raw(&r, &len);
    if (raw != NULL && (raw != b || len == 0 || len > n || r.pos != len)) return 1;
    if (raw == NULL && (r.pos != 0 || r.err == 0)) return 2;
    /* Typed reads until an error or the end. */
    shmex_mp_reader_init(&r, b, n);
    for (int steps = 0; steps < 10000 && r.err == 0 && r.pos < r.len; steps++) {
        size_t before = r.pos;
        switch (shmex_mp_next(&r)) {
        case SHMEX_MP_NIL: shmex_mp_read_nil(&r); break;
        case SHMEX_MP_BOOL: shmex_mp_read_bool(&r); break;
        case SHMEX_MP_INT: (void)(next_rand() & 1 ? shmex_mp_read_int(&r) : (int64_t)shmex_mp_read_uint(&r)); break;
        case SHMEX_MP_FLOAT: (void)shmex_mp_read_double(&r); break;
        case SHMEX_MP_STR: {
            const char *s = shmex_mp_read_str(&r, &len);
            if (s != NULL && (s < (const char *)b || s + len > (const char *)b + n)) return 3;
            break;
        }
        case SHMEX_MP_BIN: {
            const uint8_t *p = shmex_mp_read_bin(&r, &len);
            if (p != NULL && (p < b || p + len > b + n)) return 4;
            break;
        }
        case SHMEX_MP_ARRAY: shmex_mp_read_array(&r); break;
        case SHMEX_MP_MAP: shmex_mp_read_map(&r); break;
        default: shmex_mp_read_raw(&r, &len); break;
        }
        if (r.pos > r.len || (r.err == 0 && r.pos <= before)) return 5;
    }
    return 0;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 100000;
    rng = argc > 2 ? strtoull(argv[2], NULL, 10) | 1 : 88172645463325252ULL;
    /* Seeds: valid encodings of every type, which mutations start from. */
    uint8_t seed[512];
    shmex_mp_writer w;
    shmex_mp_writer_init(&w, seed, sizeof seed);
    shmex_mp_write_array(&w, 12);
    shmex_mp_write_map(&w, 2);
    shmex_mp_write_str(&w, "k", 1);
    shmex_mp_write_int(&w, -70000);
    shmex_mp_write_str(&w, "a longer key than thirty-one bytes!", 35);
    shmex_mp_write_double(&w, 1.5);
    shmex_mp_write_nil(&w);
    shmex_mp_write_bool(&w, 0);
    shmex_mp_write_uint(&w, UINT64_MAX);
    shmex_mp_write_int(&w, INT64_MIN);
    shmex_mp_write_bin(&w, "0123456789", 10);
    shmex_mp_write_raw(&w, "\xc7\x03\x50\x01\x02\x03", 6);
    shmex_mp_write_raw(&w, "\xd6\x01\x00\x00\x00\x00", 6);
    shmex_mp_write_raw(&w, "\xca\x3f\x80\x00\x00", 5);
    shmex_mp_write_array(&w, 1);
    shmex_mp_write_array(&w, 0);
    shmex_mp_write_int(&w, 127);
    if (w.err != 0) return 10;
    uint8_t *buf = malloc(sizeof seed);
    for (long i = 0; i < iters; i++) {
        size_t n;
        if (next_rand() % 4 == 0) {
            n = next_rand() % 64;
            for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)next_rand();
        } else {
            n = w.len;
            memcpy(buf, seed, n);
            int flips = 1 + (int)(next_rand() % 4);
            for (int k = 0; k < flips; k++) buf[next_rand() % n] = (uint8_t)next_rand();
            if (next_rand() % 2) n = next_rand() % (n + 1);
        }
        /* A fresh allocation of exactly n bytes: ASan catches a read past it. */
        uint8_t *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        int bad = walk(exact, n);
        if (bad) {
            printf("iteration %ld: invariant %d broken on", i, bad);
            for (size_t j = 0; j < n; j++) printf(" %02x", exact[j]);
            printf("\n");
            return 1;
        }
        free(exact);
    }
    free(buf);
    printf("PASS %ld\n", iters);
    return 0;
}
