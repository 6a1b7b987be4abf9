/* A log-linear latency histogram (HdrHistogram-like) in a plain caller-owned struct: records
 * uint64_t values (microseconds, say) over the whole uint64_t range with a relative error of at
 * most 1/32, and answers percentiles. No allocation, no locks: one writer at a time. */
#ifndef HONGBAO_HIST_H
#define HONGBAO_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Linear sub-buckets per power of two, as a bit count: 2^5 = 32, so a bucket's width is at most
 * 1/32 of its lowest value (about 3 %). Values below 2^(HB_HIST_SUB_BITS + 1) have a bucket each
 * and are recorded exactly. */
#define HB_HIST_SUB_BITS  5
#define HB_HIST_SUB_COUNT (1u << HB_HIST_SUB_BITS)
/* Buckets covering 0..UINT64_MAX: one block of 32 for the values below 32, then one block of 32
 * for each power of two from 2^5 to 2^63. */
#define HB_HIST_BUCKETS ((64 - HB_HIST_SUB_BITS + 1) << HB_HIST_SUB_BITS)

/* Buffer size, NUL included, that always suffices for hb_hist_format (reached when every number
 * is UINT64_MAX), given strlen(unit). */
#define HB_HIST_FORMAT_MAX(unit_len) ((size_t)152 + 5 * (size_t)(unit_len))

/* A histogram. The caller allocates it (about 15 KB: mind small thread stacks) and initialises
 * it with hb_hist_init; it owns no other memory, so it needs no close and may be copied with
 * memcpy. Every field is read-only: change them only through the functions below. */
typedef struct hb_hist {
    uint64_t count; /* read-only: values recorded */
    uint64_t sum;   /* read-only: their sum, saturating at UINT64_MAX */
    uint64_t min;   /* read-only: smallest value recorded, exact; 0 when count is 0 */
    uint64_t max;   /* read-only: largest value recorded, exact; 0 when count is 0 */
    /* read-only: buckets[i] counts the values v with hb_hist_bucket_index(v) == i, that is
     * hb_hist_bucket_lowest(i) <= v <= hb_hist_bucket_highest(i). */
    uint64_t buckets[HB_HIST_BUCKETS];
} hb_hist_t;

/* Initialise, or reset, *h to the empty histogram. Any previous content is discarded. */
HB_EXTERN void hb_hist_init(hb_hist_t *h);

/* Record the value v once. O(1), no allocation. The caller keeps count below 2^64 (counts wrap
 * modulo 2^64; sum saturates instead). */
HB_EXTERN void hb_hist_record(hb_hist_t *h, uint64_t v);

/* Record the value v n times: the same result as n calls of hb_hist_record (sum saturating the
 * same way). n == 0 changes nothing. */
HB_EXTERN void hb_hist_record_n(hb_hist_t *h, uint64_t v, uint64_t n);

/* Add every value recorded in *src to *dst, leaving *src alone: the result is what recording
 * both histograms' values into one would give. dst may equal src (doubling it). */
HB_EXTERN void hb_hist_merge(hb_hist_t *dst, const hb_hist_t *src);

/* The histogram of an interval: what was recorded into a histogram between two of its
 * snapshots. A snapshot is a copy (`hb_hist_t before = *h;` or memcpy), so per-second or
 * per-report percentiles need one copy per interval and this call, not a second histogram to
 * record into nor a rebuild bucket by bucket:
 *
 *     hb_hist_sub(&interval, &now, &before);   (then before = now for the next interval)
 *
 * *out gets count, buckets and sum of now minus before (sum stays UINT64_MAX, "saturated", when
 * now's had saturated). min and max cannot be subtracted: they are exact when the interval holds
 * now's own min or max (now->min < before->min, now->max > before->max, or before empty);
 * otherwise they are the bounds of the interval's lowest and highest non-empty buckets (clamped to
 * now's min and max), within 1/32 of the truth, min at or below it and max at or above it, so
 * hb_hist_percentile keeps its guarantee for every p in (0, 100). An empty interval gives the
 * empty histogram. before must be an earlier snapshot of the same histogram (no bucket and no
 * count above now's; hb_hist_init between them breaks this): otherwise returns HB_EINVAL and
 * leaves *out alone. out may be the same histogram as now or before. Returns 0. O(buckets), no
 * allocation. */
HB_EXTERN int hb_hist_sub(hb_hist_t *out, const hb_hist_t *now, const hb_hist_t *before);

/* The p-th percentile, p in [0, 100]. The true percentile is the nearest-rank one: the
 * rank-th smallest value recorded, rank = ceil(p / 100 * count) and at least 1 (computed with a
 * relative tolerance of 1e-12, so that a decimal p such as 99.9 gives the rank its decimal value
 * gives). The answer is the highest value of the bucket holding that value, clamped to max:
 * never below the true percentile, and at most true / 32 above it. p <= 0 (and NaN) gives min
 * exactly, p >= 100 gives max exactly; an empty histogram gives 0. */
HB_EXTERN uint64_t hb_hist_percentile(const hb_hist_t *h, double p);

/* The arithmetic mean of the values recorded, 0.0 when empty. Exact up to double rounding while
 * sum has not saturated; once it has (sum == UINT64_MAX), estimated from the buckets' midpoints
 * (within 1/64 of the true mean) and clamped to [min, max]. */
HB_EXTERN double hb_hist_mean(const hb_hist_t *h);

/* Write the summary "p50=Xu p90=Xu p99=Xu p99.9=Xu max=Xu (n=N)" into buf[0..cap) as a
 * NUL-terminated string, where X are hb_hist_percentile's answers and max, each followed by
 * unit (NULL means ""), e.g. "p50=510us p90=910us p99=990us p99.9=999us max=1000us (n=1000)".
 * Returns the length without the NUL; HB_ENOBUFS when it does not fit (cap must exceed the
 * length; HB_HIST_FORMAT_MAX(strlen(unit)) always suffices), and then buf holds "" when
 * cap > 0; nothing is written at or past buf + cap. HB_EINVAL when h is NULL, buf is NULL with
 * cap > 0, or unit is so long the length would exceed INT_MAX. No allocation. */
HB_EXTERN int hb_hist_format(const hb_hist_t *h, const char *unit, char *buf, size_t cap);

/* The bucket v is counted in, below HB_HIST_BUCKETS: v itself for v < 32; otherwise, with
 * m = floor(log2(v)), ((m - 4) << 5) + the 5 bits of v just below its top bit. */
HB_EXTERN size_t hb_hist_bucket_index(uint64_t v);

/* The lowest and the highest value bucket i counts (hb_hist_bucket_highest(HB_HIST_BUCKETS - 1)
 * is UINT64_MAX, and each bucket starts just after the previous one ends). i at or above
 * HB_HIST_BUCKETS gives UINT64_MAX from both. */
HB_EXTERN uint64_t hb_hist_bucket_lowest(size_t i);
HB_EXTERN uint64_t hb_hist_bucket_highest(size_t i);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_HIST_H */
