/* libFuzzer target for the HTTP query-string helpers: hb_query_get, hb_query_copy,
 * hb_query_percent_decode and hb_query_u64 on an arbitrary query and parameter name, each
 * compared with a plain reading of the header's rules, into heap buffers of exactly the size
 * given so that ASan catches a write past it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash libFuzzer reports) when an invariant breaks; say which. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_query: check failed at line %d: %s\n", __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input: a fixed header, the name, then the query (the rest).
 *   [0]     name length (% (FUZZ_NAME_MAX + 1))
 *   [1]     size of the output buffers (% FUZZ_OUT_MAX)
 *   [2]     how the bounds of hb_query_u64 are made from a and b (% 4)
 *   [3..7)  a, u32 big-endian
 *   [7..11) b, u32 big-endian */
#define FUZZ_HEADER   11
#define FUZZ_NAME_MAX 16
#define FUZZ_OUT_MAX  96

/* ---- the reference reading ---- */

static int hex(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode src[0..len) into out (room for len bytes): the decoded length, or -1 when a '%'
 * is not followed by two hex digits, *good then being how many bytes decoded before it. */
static long ref_decode(const uint8_t *src, size_t len, uint8_t *out, size_t *good)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            if (len - i < 3 || hex(src[i + 1]) < 0 || hex(src[i + 2]) < 0) {
                *good = o;
                return -1;
            }
            out[o++] = (uint8_t)(hex(src[i + 1]) * 16 + hex(src[i + 2]));
            i += 2;
        } else {
            out[o++] = src[i] == '+' ? ' ' : src[i];
        }
    }
    *good = o;
    return (long)o;
}

/* The first pair whose key decodes to name: its raw value (offset and length in q). Pairs are
 * split on '&'; empty ones are nothing; a pair without '=' has an empty value. */
static bool ref_get(const uint8_t *q, size_t len, const char *name, size_t *voff, size_t *vlen,
                    uint8_t *scratch)
{
    size_t nlen = strlen(name);
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        size_t eq = i;
        while (eq < end && q[eq] != '=')
            eq++;
        size_t good;
        long klen = end > i ? ref_decode(q + i, eq - i, scratch, &good) : -1;
        if (klen >= 0 && (size_t)klen == nlen && memcmp(scratch, name, nlen) == 0) {
            *voff = eq < end ? eq + 1 : end;
            *vlen = eq < end ? end - eq - 1 : 0;
            return true;
        }
        i = end + 1;
    }
    return false;
}

/* ---- checks ---- */

/* hb_query_percent_decode of src[0..len) into a heap buffer of exactly size bytes. */
static void check_decode(const uint8_t *src, size_t len, size_t size, uint8_t *scratch)
{
    size_t good;
    long want = ref_decode(src, len, scratch, &good);
    char *dst = malloc(size);
    FUZZ_CHECK(dst != NULL || size == 0);
    int rc = hb_query_percent_decode((const char *)src, len, dst, size);
    if (want < 0) {
        /* Either error may win when both apply. */
        FUZZ_CHECK(rc == HB_EINVAL || (rc == HB_ENOBUFS && good + 1 > size));
    } else if ((size_t)want + 1 > size) {
        FUZZ_CHECK(rc == HB_ENOBUFS);
    } else {
        FUZZ_CHECK(rc == want);
        FUZZ_CHECK(memcmp(dst, scratch, (size_t)want) == 0 && dst[want] == '\0');
    }
    free(dst);
}

static void check_name(const uint8_t *q, size_t qlen, const char *name, size_t out_size,
                       uint64_t min, uint64_t max, uint8_t *scratch)
{
    const char *query = (const char *)q;
    size_t voff = 0, vlen = 0;
    bool present = ref_get(q, qlen, name, &voff, &vlen, scratch);

    /* hb_query_get: the same pair, pointing into the query. */
    const char *val = NULL;
    size_t val_len = 12345;
    int rc = hb_query_get(query, qlen, name, &val, &val_len);
    if (!present) {
        FUZZ_CHECK(rc == HB_ENOENT);
    } else {
        FUZZ_CHECK(rc == 0 && val == query + voff && val_len == vlen);
    }

    /* hb_query_percent_decode of the raw value, and of the whole query. */
    check_decode(q + voff, vlen, out_size, scratch);
    check_decode(q, qlen, out_size, scratch);

    /* hb_query_copy: the decoded value, its length < size, or an error. */
    size_t good;
    long dlen = present ? ref_decode(q + voff, vlen, scratch, &good) : 0;
    char *buf = malloc(out_size);
    FUZZ_CHECK(buf != NULL || out_size == 0);
    size_t out_len = 777;
    rc = hb_query_copy(query, qlen, name, buf, out_size, &out_len);
    if (!present) {
        FUZZ_CHECK(rc == HB_ENOENT && out_len == 777);
    } else if (dlen < 0) {
        FUZZ_CHECK(rc == HB_EINVAL || (rc == HB_ENOBUFS && good + 1 > out_size));
        FUZZ_CHECK(out_len == 777);
    } else if ((size_t)dlen + 1 > out_size) {
        FUZZ_CHECK(rc == HB_ENOBUFS && out_len == 777);
    } else {
        FUZZ_CHECK(rc == 0 && out_len == (size_t)dlen && out_len < out_size);
        FUZZ_CHECK(memcmp(buf, scratch, out_len) == 0 && buf[out_len] == '\0');
        /* A NULL out_len is allowed. */
        FUZZ_CHECK(hb_query_copy(query, qlen, name, buf, out_size, NULL) == 0);
    }
    free(buf);

    /* hb_query_u64: all digits after decoding, within [min, max]; *out untouched on error. */
    int want = 0;
    uint64_t n = 0;
    if (min > max) {
        want = HB_EINVAL;
    } else if (!present) {
        want = HB_ENOENT;
    } else if (dlen <= 0) {
        want = HB_EINVAL; /* bad encoding or empty */
    } else {
        bool overflow = false;
        for (long i = 0; i < dlen && want == 0; i++) {
            if (scratch[i] < '0' || scratch[i] > '9') {
                want = HB_EINVAL;
            } else {
                unsigned d = scratch[i] - '0';
                if (n > (UINT64_MAX - d) / 10)
                    overflow = true;
                n = n * 10 + d;
            }
        }
        if (want == 0 && (overflow || n < min || n > max))
            want = HB_ERANGE;
    }
    uint64_t out = 0xDEADBEEFCAFEF00Du;
    rc = hb_query_u64(query, qlen, name, min, max, &out);
    if (want == HB_EINVAL && min > max && !present) {
        FUZZ_CHECK(rc == HB_EINVAL || rc == HB_ENOENT); /* the header orders neither first */
    } else {
        FUZZ_CHECK(rc == want);
    }
    if (rc == 0) {
        FUZZ_CHECK(out == n && out >= min && out <= max);
    } else {
        FUZZ_CHECK(out == 0xDEADBEEFCAFEF00Du);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t head[FUZZ_HEADER] = {0};
    memcpy(head, data, size < FUZZ_HEADER ? size : FUZZ_HEADER);
    size_t off = size < FUZZ_HEADER ? size : FUZZ_HEADER;

    char name[FUZZ_NAME_MAX + 1];
    size_t nlen = head[0] % (FUZZ_NAME_MAX + 1);
    if (nlen > size - off)
        nlen = size - off;
    memcpy(name, data + off, nlen);
    name[nlen] = '\0'; /* an embedded NUL shortens it */
    off += nlen;

    /* The query is the input's tail, so reading past its end leaves the input's heap block. */
    const uint8_t *q = data + off;
    size_t qlen = size - off;
    size_t out_size = head[1] % FUZZ_OUT_MAX;

    uint64_t a =
        (uint64_t)head[3] << 24 | (uint64_t)head[4] << 16 | (uint64_t)head[5] << 8 | head[6];
    uint64_t b =
        (uint64_t)head[7] << 24 | (uint64_t)head[8] << 16 | (uint64_t)head[9] << 8 | head[10];
    uint64_t min = 0, max = UINT64_MAX;
    switch (head[2] % 4) {
    case 1:
        min = a;
        max = b;
        break;
    case 2:
        min = a;
        max = UINT64_MAX - b;
        break;
    case 3:
        min = UINT64_MAX - a;
        max = UINT64_MAX - b;
        break;
    default:
        break;
    }

    uint8_t *scratch = malloc(qlen + 1);
    FUZZ_CHECK(scratch != NULL);
    check_name(q, qlen, name, out_size, min, max, scratch);
    check_name(q, qlen, "qps", out_size, min, max, scratch);
    free(scratch);

    /* Argument errors. */
    const char *v;
    size_t vl;
    FUZZ_CHECK(hb_query_get(NULL, 0, name, &v, &vl) == HB_ENOENT);
    FUZZ_CHECK(hb_query_get((const char *)q, qlen, NULL, &v, &vl) == HB_EINVAL);
    FUZZ_CHECK(hb_query_percent_decode((const char *)q, qlen, NULL, 8) == HB_EINVAL);
    FUZZ_CHECK(hb_query_u64((const char *)q, qlen, name, 0, 1, NULL) == HB_EINVAL);
    return 0;
}
