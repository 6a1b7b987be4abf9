/* Query-string helpers: find a parameter, percent-decode it, read it as a bounded integer. Pure
 * string work (hongbao/query.h), used by the HTTP control routes. */
#include "hongbao/query.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static int ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static int hex_digit(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    ch = (unsigned char)ascii_lower(ch);
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
}

/* Decode the character at s[i] (i < len) into *out: the number of bytes it took (1 or 3), or
 * HB_EINVAL for a bad percent escape. */
static int decode_at(const char *s, size_t len, size_t i, unsigned char *out)
{
    unsigned char ch = (unsigned char)s[i];
    if (ch == '+') {
        *out = ' ';
        return 1;
    }
    if (ch != '%') {
        *out = ch;
        return 1;
    }
    if (len - i < 3) {
        return HB_EINVAL;
    }
    int hi = hex_digit((unsigned char)s[i + 1]);
    int lo = hex_digit((unsigned char)s[i + 2]);
    if (hi < 0 || lo < 0) {
        return HB_EINVAL;
    }
    *out = (unsigned char)(hi * 16 + lo);
    return 3;
}

/* Whether the encoded key (klen bytes) decodes to name exactly. */
static bool key_matches(const char *key, size_t klen, const char *name)
{
    const unsigned char *nm = (const unsigned char *)name;
    size_t i = 0;
    while (i < klen) {
        unsigned char ch;
        int k = decode_at(key, klen, i, &ch);
        if (k < 0 || *nm == '\0' || *nm != ch) {
            return false;
        }
        nm++;
        i += (size_t)k;
    }
    return *nm == '\0';
}

int hb_query_get(const char *query, size_t len, const char *name, const char **val, size_t *val_len)
{
    if (name == NULL || val == NULL || val_len == NULL || (query == NULL && len > 0)) {
        return HB_EINVAL;
    }
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && query[end] != '&') {
            end++;
        }
        size_t eq = i;
        while (eq < end && query[eq] != '=') {
            eq++;
        }
        if (end > i && key_matches(query + i, eq - i, name)) {
            *val = eq < end ? query + eq + 1 : query + end;
            *val_len = eq < end ? end - eq - 1 : 0;
            return 0;
        }
        i = end + 1;
    }
    return HB_ENOENT;
}

int hb_query_percent_decode(const char *src, size_t len, char *dst, size_t size)
{
    if ((src == NULL && len > 0) || dst == NULL || len > INT_MAX) {
        return HB_EINVAL;
    }
    size_t o = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char ch;
        int k = decode_at(src, len, i, &ch);
        if (k < 0) {
            return k;
        }
        if (o + 1 >= size) {
            return HB_ENOBUFS;
        }
        dst[o++] = (char)ch;
        i += (size_t)k;
    }
    if (size == 0) {
        return HB_ENOBUFS;
    }
    dst[o] = '\0';
    return (int)o;
}

int hb_query_copy(const char *query, size_t len, const char *name, char *buf, size_t size,
                  size_t *out_len)
{
    const char *v;
    size_t vlen;
    int r = hb_query_get(query, len, name, &v, &vlen);
    if (r != 0) {
        return r;
    }
    r = hb_query_percent_decode(v, vlen, buf, size);
    if (r < 0) {
        return r;
    }
    if (out_len != NULL) {
        *out_len = (size_t)r;
    }
    return 0;
}

int hb_query_u64(const char *query, size_t len, const char *name, uint64_t min, uint64_t max,
                 uint64_t *out)
{
    if (out == NULL || min > max) {
        return HB_EINVAL;
    }
    const char *v;
    size_t vlen;
    int r = hb_query_get(query, len, name, &v, &vlen);
    if (r != 0) {
        return r;
    }
    if (vlen == 0) {
        return HB_EINVAL;
    }
    uint64_t n = 0;
    bool overflow = false;
    size_t i = 0;
    while (i < vlen) {
        unsigned char ch;
        int k = decode_at(v, vlen, i, &ch);
        if (k < 0 || ch < '0' || ch > '9') {
            return HB_EINVAL;
        }
        unsigned d = ch - '0';
        if (n > (UINT64_MAX - d) / 10) {
            overflow = true;
        } else {
            n = n * 10 + d;
        }
        i += (size_t)k;
    }
    if (overflow || n < min || n > max) {
        return HB_ERANGE;
    }
    *out = n;
    return 0;
}
