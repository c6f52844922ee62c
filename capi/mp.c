/*
 * mp.c: the small MessagePack writer and reader of shmex.h (shmex_mp_*), for
 * C and Fortran callers without a MessagePack library. Big-endian numbers as
 * the format wants; every read checks the remaining length first.
 */
#include <string.h>

#include "shmex.h"

/* ------------------------------------------------------------------ writer */

void shmex_mp_writer_init(shmex_mp_writer *w, uint8_t *buf, size_t cap) {
    w->buf = buf;
    w->cap = buf == NULL ? 0 : cap;
    w->len = 0;
    w->err = 0;
    w->reserved = 0;
}

/* put appends n bytes: a header h[0..nh) and a body b[0..nb). */
static void put(shmex_mp_writer *w, const uint8_t *h, size_t nh, const void *b, size_t nb) {
    size_t n = nh + nb;
    if (w->err == 0 && w->len <= w->cap && n <= w->cap - w->len) {
        memcpy(w->buf + w->len, h, nh);
        if (nb > 0) memcpy(w->buf + w->len + nh, b, nb);
    } else {
        w->err = SHMEX_ETRUNCATED;
    }
    w->len += n;
}

static void be(uint8_t *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void put_head(shmex_mp_writer *w, uint8_t tag, uint64_t v, int n) {
    uint8_t h[9];
    h[0] = tag;
    be(h + 1, v, n);
    put(w, h, 1 + (size_t)n, NULL, 0);
}

void shmex_mp_write_nil(shmex_mp_writer *w) {
    uint8_t h = 0xc0;
    put(w, &h, 1, NULL, 0);
}

void shmex_mp_write_bool(shmex_mp_writer *w, int v) {
    uint8_t h = v ? 0xc3 : 0xc2;
    put(w, &h, 1, NULL, 0);
}

void shmex_mp_write_uint(shmex_mp_writer *w, uint64_t v) {
    if (v < 128) {
        uint8_t h = (uint8_t)v;
        put(w, &h, 1, NULL, 0);
    } else if (v <= 0xff) {
        put_head(w, 0xcc, v, 1);
    } else if (v <= 0xffff) {
        put_head(w, 0xcd, v, 2);
    } else if (v <= 0xffffffffu) {
        put_head(w, 0xce, v, 4);
    } else {
        put_head(w, 0xcf, v, 8);
    }
}

void shmex_mp_write_int(shmex_mp_writer *w, int64_t v) {
    if (v >= 0) {
        shmex_mp_write_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        uint8_t h = (uint8_t)(int8_t)v;
        put(w, &h, 1, NULL, 0);
    } else if (v >= INT8_MIN) {
        put_head(w, 0xd0, (uint64_t)v, 1);
    } else if (v >= INT16_MIN) {
        put_head(w, 0xd1, (uint64_t)v, 2);
    } else if (v >= INT32_MIN) {
        put_head(w, 0xd2, (uint64_t)v, 4);
    } else {
        put_head(w, 0xd3, (uint64_t)v, 8);
    }
}

void shmex_mp_write_double(shmex_mp_writer *w, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_head(w, 0xcb, bits, 8);
}

static void put_len(shmex_mp_writer *w, uint8_t fix, uint8_t fixmax, uint8_t t8, uint8_t t16, uint8_t t32, size_t n,
                    const void *b) {
    uint8_t h[5];
    size_t nh;
    if (fix != 0 && n <= fixmax) {
        h[0] = (uint8_t)(fix | n);
        nh = 1;
    } else if (t8 != 0 && n <= 0xff) {
        h[0] = t8;
        h[1] = (uint8_t)n;
        nh = 2;
    } else if (n <= 0xffff) {
        h[0] = t16;
        be(h + 1, n, 2);
        nh = 3;
    } else if (n <= 0xffffffffu) {
        h[0] = t32;
        be(h + 1, n, 4);
        nh = 5;
    } else {
        w->err = SHMEX_EINVAL;
        return;
    }
    put(w, h, nh, b, b == NULL ? 0 : n);
}

void shmex_mp_write_str(shmex_mp_writer *w, const char *s, size_t n) {
    if (s == NULL && n > 0) {
        w->err = SHMEX_EINVAL;
        return;
    }
    put_len(w, 0xa0, 31, 0xd9, 0xda, 0xdb, n, n == 0 ? "" : s);
}

void shmex_mp_write_bin(shmex_mp_writer *w, const void *b, size_t n) {
    if (b == NULL && n > 0) {
        w->err = SHMEX_EINVAL;
        return;
    }
    put_len(w, 0, 0, 0xc4, 0xc5, 0xc6, n, n == 0 ? "" : b);
}

void shmex_mp_write_array(shmex_mp_writer *w, uint32_t n) { put_len(w, 0x90, 15, 0, 0xdc, 0xdd, n, NULL); }

void shmex_mp_write_map(shmex_mp_writer *w, uint32_t n) { put_len(w, 0x80, 15, 0, 0xde, 0xdf, n, NULL); }

void shmex_mp_write_raw(shmex_mp_writer *w, const void *b, size_t n) {
    if (b == NULL && n > 0) {
        w->err = SHMEX_EINVAL;
        return;
    }
    put(w, (const uint8_t *)"", 0, b, n);
}

/* ------------------------------------------------------------------ reader */

void shmex_mp_reader_init(shmex_mp_reader *r, const uint8_t *buf, size_t len) {
    r->buf = buf;
    r->len = buf == NULL ? 0 : len;
    r->pos = 0;
    r->err = 0;
    r->reserved = 0;
}

static uint64_t rbe(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static size_t left(const shmex_mp_reader *r) { return r->err != 0 || r->pos > r->len ? 0 : r->len - r->pos; }

static int bad(shmex_mp_reader *r) {
    r->err = SHMEX_EINVAL;
    return 0;
}

int shmex_mp_next(const shmex_mp_reader *r) {
    if (left(r) == 0) return 0;
    uint8_t b = r->buf[r->pos];
    if (b <= 0x7f || b >= 0xe0) return SHMEX_MP_INT;
    if (b <= 0x8f) return SHMEX_MP_MAP;
    if (b <= 0x9f) return SHMEX_MP_ARRAY;
    if (b <= 0xbf) return SHMEX_MP_STR;
    switch (b) {
    case 0xc0: return SHMEX_MP_NIL;
    case 0xc2: case 0xc3: return SHMEX_MP_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return SHMEX_MP_BIN;
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return SHMEX_MP_EXT;
    case 0xca: case 0xcb: return SHMEX_MP_FLOAT;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: case 0xd0: case 0xd1: case 0xd2: case 0xd3: return SHMEX_MP_INT;
    case 0xd9: case 0xda: case 0xdb: return SHMEX_MP_STR;
    case 0xdc: case 0xdd: return SHMEX_MP_ARRAY;
    case 0xde: case 0xdf: return SHMEX_MP_MAP;
    }
    return 0; /* 0xc1 is never used */
}

int shmex_mp_read_nil(shmex_mp_reader *r) {
    if (left(r) == 0 || r->buf[r->pos] != 0xc0) return bad(r);
    r->pos++;
    return 1;
}

int shmex_mp_read_bool(shmex_mp_reader *r) {
    if (left(r) == 0) return bad(r);
    uint8_t b = r->buf[r->pos];
    if (b != 0xc2 && b != 0xc3) return bad(r);
    r->pos++;
    return b == 0xc3;
}

/* read_integer reads any integer as a sign and a magnitude. */
static int read_integer(shmex_mp_reader *r, int *neg, uint64_t *mag) {
    size_t n = left(r);
    if (n == 0) return bad(r);
    const uint8_t *p = r->buf + r->pos;
    uint8_t b = p[0];
    int64_t s;
    if (b <= 0x7f) {
        *neg = 0, *mag = b, r->pos++;
        return 1;
    }
    if (b >= 0xe0) {
        *neg = 1, *mag = (uint64_t)(-(int64_t)(int8_t)b), r->pos++;
        return 1;
    }
    int w;
    switch (b) {
    case 0xcc: case 0xd0: w = 1; break;
    case 0xcd: case 0xd1: w = 2; break;
    case 0xce: case 0xd2: w = 4; break;
    case 0xcf: case 0xd3: w = 8; break;
    default: return bad(r);
    }
    if (n < 1 + (size_t)w) return bad(r);
    uint64_t v = rbe(p + 1, w);
    if (b >= 0xd0) { /* signed */
        if (w == 1) s = (int8_t)v;
        else if (w == 2) s = (int16_t)v;
        else if (w == 4) s = (int32_t)v;
        else s = (int64_t)v;
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = 0, *mag = v;
    }
    r->pos += 1 + (size_t)w;
    return 1;
}

int64_t shmex_mp_read_int(shmex_mp_reader *r) {
    size_t at = r->pos;
    int neg;
    uint64_t mag;
    if (!read_integer(r, &neg, &mag)) return 0;
    if ((!neg && mag > (uint64_t)INT64_MAX) || (neg && mag > (uint64_t)INT64_MAX + 1)) {
        r->pos = at;
        return bad(r);
    }
    return neg ? (int64_t)(0 - mag) : (int64_t)mag;
}

uint64_t shmex_mp_read_uint(shmex_mp_reader *r) {
    size_t at = r->pos;
    int neg;
    uint64_t mag;
    if (!read_integer(r, &neg, &mag)) return 0;
    if (neg && mag != 0) {
        r->pos = at;
        return bad(r);
    }
    return mag;
}

double shmex_mp_read_double(shmex_mp_reader *r) {
    size_t n = left(r);
    if (n == 0) return bad(r);
    const uint8_t *p = r->buf + r->pos;
    if (p[0] == 0xcb) {
        if (n < 9) return bad(r);
        uint64_t bits = rbe(p + 1, 8);
        double d;
        memcpy(&d, &bits, 8);
        r->pos += 9;
        return d;
    }
    if (p[0] == 0xca) {
        if (n < 5) return bad(r);
        uint32_t bits = (uint32_t)rbe(p + 1, 4);
        float f;
        memcpy(&f, &bits, 4);
        r->pos += 5;
        return f;
    }
    int neg;
    uint64_t mag;
    if (!read_integer(r, &neg, &mag)) return 0;
    return neg ? -(double)mag : (double)mag;
}

/* read_len reads a length header: a fix form (fix..fix+fixmax) or one of
 * the tags t8, t16, t32 (0 for none). */
static int read_len(shmex_mp_reader *r, uint8_t fix, uint8_t fixmax, uint8_t t8, uint8_t t16, uint8_t t32,
                    uint64_t *len, size_t *hdr) {
    size_t n = left(r);
    if (n == 0) return bad(r);
    const uint8_t *p = r->buf + r->pos;
    uint8_t b = p[0];
    int w;
    if (fixmax != 0 && b >= fix && b <= fix + fixmax) {
        *len = (uint64_t)(b - fix), *hdr = 1;
        return 1;
    }
    if (t8 != 0 && b == t8) w = 1;
    else if (b == t16) w = 2;
    else if (b == t32) w = 4;
    else return bad(r);
    if (n < 1 + (size_t)w) return bad(r);
    *len = rbe(p + 1, w), *hdr = 1 + (size_t)w;
    return 1;
}

static const uint8_t *read_body(shmex_mp_reader *r, uint8_t fix, uint8_t fixmax, uint8_t t8, uint8_t t16,
                                uint8_t t32, size_t *n) {
    uint64_t len;
    size_t hdr;
    if (!read_len(r, fix, fixmax, t8, t16, t32, &len, &hdr)) return NULL;
    if (len > left(r) - hdr) {
        bad(r);
        return NULL;
    }
    const uint8_t *p = r->buf + r->pos + hdr;
    r->pos += hdr + (size_t)len;
    if (n != NULL) *n = (size_t)len;
    return p;
}

const char *shmex_mp_read_str(shmex_mp_reader *r, size_t *n) {
    return (const char *)read_body(r, 0xa0, 31, 0xd9, 0xda, 0xdb, n);
}

const uint8_t *shmex_mp_read_bin(shmex_mp_reader *r, size_t *n) { return read_body(r, 0, 0, 0xc4, 0xc5, 0xc6, n); }

static uint32_t read_count(shmex_mp_reader *r, uint8_t fix, uint8_t t16, uint8_t t32) {
    uint64_t len;
    size_t hdr;
    if (!read_len(r, fix, 15, 0, t16, t32, &len, &hdr)) return 0;
    /* Each element takes at least one byte: a count larger than what is
     * left is malformed (and would make a caller loop long). */
    if (len > left(r) - hdr) return (uint32_t)bad(r);
    r->pos += hdr;
    return (uint32_t)len;
}

uint32_t shmex_mp_read_array(shmex_mp_reader *r) { return read_count(r, 0x90, 0xdc, 0xdd); }

uint32_t shmex_mp_read_map(shmex_mp_reader *r) { return read_count(r, 0x80, 0xde, 0xdf); }

/* skip skips one value, nested ones included, without recursion deeper than
 * the input allows: depth counts the values still to skip. */
static int skip(shmex_mp_reader *r) {
    uint64_t todo = 1;
    while (todo > 0) {
        todo--;
        size_t n = left(r);
        if (n == 0) return bad(r);
        uint8_t b = r->buf[r->pos];
        uint64_t len;
        size_t hdr;
        switch (shmex_mp_next(r)) {
        case SHMEX_MP_NIL: case SHMEX_MP_BOOL:
            r->pos++;
            break;
        case SHMEX_MP_INT: {
            int neg;
            uint64_t mag;
            if (!read_integer(r, &neg, &mag)) return 0;
            break;
        }
        case SHMEX_MP_FLOAT:
            if (n < (b == 0xca ? 5u : 9u)) return bad(r);
            r->pos += b == 0xca ? 5 : 9;
            break;
        case SHMEX_MP_STR:
            if (read_body(r, 0xa0, 31, 0xd9, 0xda, 0xdb, NULL) == NULL) return 0;
            break;
        case SHMEX_MP_BIN:
            if (read_body(r, 0, 0, 0xc4, 0xc5, 0xc6, NULL) == NULL) return 0;
            break;
        case SHMEX_MP_ARRAY:
            todo += read_count(r, 0x90, 0xdc, 0xdd);
            if (r->err) return 0;
            break;
        case SHMEX_MP_MAP:
            len = read_count(r, 0x80, 0xde, 0xdf);
            if (r->err) return 0;
            todo += 2 * len;
            break;
        case SHMEX_MP_EXT:
            if (b >= 0xd4 && b <= 0xd8) {
                len = (uint64_t)1 << (b - 0xd4), hdr = 2;
            } else {
                int w = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
                if (n < 2 + (size_t)w) return bad(r);
                len = rbe(r->buf + r->pos + 1, w), hdr = 2 + (size_t)w;
            }
            if (n < hdr || len > n - hdr) return bad(r);
            r->pos += hdr + (size_t)len;
            break;
        default:
            return bad(r);
        }
    }
    return 1;
}

const uint8_t *shmex_mp_read_raw(shmex_mp_reader *r, size_t *n) {
    size_t at = r->pos;
    if (!skip(r)) {
        r->pos = at;
        return NULL;
    }
    if (n != NULL) *n = r->pos - at;
    return r->buf + at;
}
