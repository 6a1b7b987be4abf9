/* The log-linear latency histogram: bucket arithmetic, recording, merging, interval subtraction,
 * percentiles and the one-line summary. */
#include "hongbao/hist.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define SUB_MASK ((uint64_t)HB_HIST_SUB_COUNT - 1)
/* Buckets below this index hold one value each (the first two blocks). */
#define EXACT_BUCKETS ((size_t)2 * HB_HIST_SUB_COUNT)

/* The index of v's highest set bit; v != 0. */
static unsigned top_bit(uint64_t v)
{
#if defined(__GNUC__)
    return 63u - (unsigned)__builtin_clzll(v);
#else
    unsigned m = 0;
    while (v >>= 1)
        m++;
    return m;
#endif
}

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
    uint64_t s = a + b;
    return s < a ? UINT64_MAX : s;
}

size_t hb_hist_bucket_index(uint64_t v)
{
    if (v < HB_HIST_SUB_COUNT)
        return (size_t)v;
    unsigned m = top_bit(v);
    return ((size_t)(m - HB_HIST_SUB_BITS + 1) << HB_HIST_SUB_BITS) +
           (size_t)((v >> (m - HB_HIST_SUB_BITS)) & SUB_MASK);
}

uint64_t hb_hist_bucket_lowest(size_t i)
{
    if (i >= HB_HIST_BUCKETS)
        return UINT64_MAX;
    if (i < EXACT_BUCKETS)
        return (uint64_t)i;
    size_t block = i >> HB_HIST_SUB_BITS;
    return (HB_HIST_SUB_COUNT + ((uint64_t)i & SUB_MASK)) << (block - 1);
}

uint64_t hb_hist_bucket_highest(size_t i)
{
    if (i >= HB_HIST_BUCKETS)
        return UINT64_MAX;
    if (i < EXACT_BUCKETS)
        return (uint64_t)i;
    size_t block = i >> HB_HIST_SUB_BITS;
    /* lowest + (width - 1): for the last bucket exactly UINT64_MAX, never past it. */
    return hb_hist_bucket_lowest(i) + (((uint64_t)1 << (block - 1)) - 1);
}

void hb_hist_init(hb_hist_t *h)
{
    memset(h, 0, sizeof *h);
}

void hb_hist_record(hb_hist_t *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum = add_saturating(h->sum, v);
    h->buckets[hb_hist_bucket_index(v)]++;
}

void hb_hist_record_n(hb_hist_t *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count += n;
    if (v != 0 && n > UINT64_MAX / v)
        h->sum = UINT64_MAX;
    else
        h->sum = add_saturating(h->sum, v * n);
    h->buckets[hb_hist_bucket_index(v)] += n;
}

void hb_hist_merge(hb_hist_t *dst, const hb_hist_t *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum = add_saturating(dst->sum, src->sum);
    for (size_t i = 0; i < HB_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

int hb_hist_sub(hb_hist_t *out, const hb_hist_t *now, const hb_hist_t *before)
{
    if (out == NULL || now == NULL || before == NULL || before->count > now->count)
        return HB_EINVAL;
    for (size_t i = 0; i < HB_HIST_BUCKETS; i++)
        if (before->buckets[i] > now->buckets[i])
            return HB_EINVAL;
    /* Decide min and max before writing: out may be now or before. */
    uint64_t count = now->count - before->count;
    uint64_t sum = now->sum == UINT64_MAX ? UINT64_MAX : now->sum - before->sum;
    int exact_min = before->count == 0 || now->min < before->min;
    int exact_max = before->count == 0 || now->max > before->max;
    uint64_t now_min = now->min, now_max = now->max;
    size_t lowest = HB_HIST_BUCKETS, highest = 0;
    for (size_t i = 0; i < HB_HIST_BUCKETS; i++) {
        uint64_t n = now->buckets[i] - before->buckets[i];
        out->buckets[i] = n;
        if (n != 0) {
            if (lowest == HB_HIST_BUCKETS)
                lowest = i;
            highest = i;
        }
    }
    out->count = count;
    if (count == 0) {
        out->sum = out->min = out->max = 0;
        return 0;
    }
    out->sum = sum;
    if (exact_min) {
        out->min = now_min;
    } else {
        uint64_t low = hb_hist_bucket_lowest(lowest);
        out->min = low > now_min ? low : now_min;
    }
    if (exact_max) {
        out->max = now_max;
    } else {
        uint64_t high = hb_hist_bucket_highest(highest);
        out->max = high < now_max ? high : now_max;
    }
    return 0;
}

/* The nearest rank for p in (0, 100): ceil(p / 100 * count) in [1, count], count > 0. */
static uint64_t percentile_rank(uint64_t count, double p)
{
    double r = p / 100.0 * (double)count;
    /* A decimal p is a double slightly off its decimal value; the tolerance lets 99.9 of 1000
     * be rank 999 rather than 1000. */
    r -= r * 1e-12;
    if (r >= (double)count)
        return count;
    double c = ceil(r);
    if (c < 1.0)
        return 1;
    uint64_t rank = (uint64_t)c;
    return rank > count ? count : rank;
}

uint64_t hb_hist_percentile(const hb_hist_t *h, double p)
{
    if (h->count == 0)
        return 0;
    if (!(p > 0.0))
        return h->min;
    if (p >= 100.0)
        return h->max;
    uint64_t rank = percentile_rank(h->count, p);
    uint64_t seen = 0;
    for (size_t i = 0; i < HB_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t high = hb_hist_bucket_highest(i);
            return high < h->max ? high : h->max;
        }
    }
    return h->max;
}

double hb_hist_mean(const hb_hist_t *h)
{
    if (h->count == 0)
        return 0.0;
    if (h->sum != UINT64_MAX)
        return (double)h->sum / (double)h->count;
    double total = 0.0;
    for (size_t i = 0; i < HB_HIST_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        double mid =
            (double)hb_hist_bucket_lowest(i) / 2.0 + (double)hb_hist_bucket_highest(i) / 2.0;
        total += mid * (double)h->buckets[i];
    }
    double mean = total / (double)h->count;
    if (mean < (double)h->min)
        return (double)h->min;
    if (mean > (double)h->max)
        return (double)h->max;
    return mean;
}

int hb_hist_format(const hb_hist_t *h, const char *unit, char *buf, size_t cap)
{
    if (h == NULL || (buf == NULL && cap > 0))
        return HB_EINVAL;
    if (unit == NULL)
        unit = "";
    if (strlen(unit) > (INT_MAX - 152) / 5)
        return HB_EINVAL;
    int n = snprintf(buf, cap,
                     "p50=%" PRIu64 "%s p90=%" PRIu64 "%s p99=%" PRIu64 "%s p99.9=%" PRIu64
                     "%s max=%" PRIu64 "%s (n=%" PRIu64 ")",
                     hb_hist_percentile(h, 50.0), unit, hb_hist_percentile(h, 90.0), unit,
                     hb_hist_percentile(h, 99.0), unit, hb_hist_percentile(h, 99.9), unit, h->max,
                     unit, h->count);
    if (n < 0)
        return HB_EINVAL;
    if ((size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return HB_ENOBUFS;
    }
    return n;
}
