/* Helpers the library's modules share; not installed, not part of the API. */
#ifndef HB_INTERNAL_H
#define HB_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#if defined(__GNUC__)
#define HB_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HB_PRINTF(f, a)
#endif

/* Format one line (at most 511 bytes, truncated beyond) and hand it to log(arg, line); does
 * nothing when log is NULL. */
void hb__vlogf(hb_log_cb log, void *arg, const char *fmt, va_list ap) HB_PRINTF(3, 0);

/* The same with the arguments inline. */
void hb__vlogf_line(hb_log_cb log, void *arg, const char *fmt, ...) HB_PRINTF(3, 4);

/* splitmix64's finaliser: every bit of x moves every bit of the result (a bijection), so inputs of
 * any pattern come out as random ones would. The id map's mixing hash, the seeding of rand and the
 * weights of the ring are made of it. */
static inline uint64_t hb__mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

/* A retry's back-off: base_ms doubled for each earlier try, at most 2^max_shift times. */
static inline uint64_t hb__backoff_ms(uint64_t base_ms, unsigned tries, unsigned max_shift)
{
    return base_ms << (tries < max_shift ? tries : max_shift);
}

/* FNV-1a (64 bits) of n bytes at p, going on from h: start from HB__FNV_OFFSET. Cheap and stable
 * (the same in every process and version), weak in its last bytes: mix it before using its low
 * bits. */
#define HB__FNV_OFFSET UINT64_C(14695981039346656037)
static inline uint64_t hb__fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* A FIFO of fixed-size elements (elem bytes each) in a ring that doubles when full. Zero it with
 * elem set, push, look at element i (0: the oldest) through hb__fifo_at, pop; free at the end. Not
 * thread-safe. */
typedef struct hb__fifo {
    unsigned char *buf;
    size_t elem, head, count, cap;
} hb__fifo_t;
/* Append a copy of elem. Returns 0 or HB_ENOMEM (nothing changed). */
int hb__fifo_push(hb__fifo_t *f, const void *elem);
/* Remove the oldest (count > 0), copying it to out if not NULL. */
void hb__fifo_pop(hb__fifo_t *f, void *out);
void hb__fifo_free(hb__fifo_t *f);
static inline void *hb__fifo_at(const hb__fifo_t *f, size_t i)
{
    return f->buf + ((f->head + i) % f->cap) * f->elem;
}

#endif /* HB_INTERNAL_H */
