/* The modulo scheduler: a global send numbering, a low-discrepancy rotation of the users over it,
 * millisecond and microsecond placement inside each second, and the walk over one range of users'
 * sends. Pure arithmetic, no allocation, no libuv. */
#include "hongbao/sched.h"

#include <stddef.h>
#include <stdlib.h>

#define HB_SCHED_MAX_MS_ (HB_SCHED_MAX_S * 1000)

static uint64_t sched_gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The inverse of a modulo m (gcd(a, m) == 1, m <= 2^32), by the extended Euclidean algorithm;
 * 0 when m is 1. The Bezout coefficients stay within m in absolute value, so int64_t holds them. */
static uint64_t sched_inverse(uint64_t a, uint64_t m)
{
    int64_t r0 = (int64_t)m, r1 = (int64_t)(a % m);
    int64_t t0 = 0, t1 = 1;
    if (m == 1)
        return 0;
    while (r1 != 0) {
        int64_t q = r0 / r1;
        int64_t r2 = r0 - q * r1;
        int64_t t2 = t0 - q * t1;
        r0 = r1;
        r1 = r2;
        t0 = t1;
        t1 = t2;
    }
    return (uint64_t)(t0 < 0 ? t0 + (int64_t)m : t0);
}

/* Set the rotation for s->users and qps. gcd(users, 0) is users: one column, the identity. */
static void sched_rotation(hb_sched_t *s, uint64_t qps)
{
    uint64_t g = sched_gcd(s->users, qps);
    s->qps = qps;
    s->rows = g;
    s->cols = s->users / g;
    s->stride = (qps / g) % s->cols;
    s->unstride = sched_inverse(s->stride, s->cols);
}

/* The rotation position of user u (u < users). Every product is below 2^64: both factors are
 * below cols <= 2^32. */
static uint64_t sched_pos(const hb_sched_t *s, uint64_t u)
{
    uint64_t slot = (u % s->cols) * s->stride % s->cols;
    return slot * s->rows + u / s->cols;
}

int hb_sched_init(hb_sched_t *s, uint64_t users, uint64_t qps, uint64_t start_s)
{
    if (users == 0 || users > HB_SCHED_MAX_USERS || qps > HB_SCHED_MAX_QPS ||
        start_s >= HB_SCHED_MAX_S)
        return HB_EINVAL;
    s->users = users;
    s->epoch_s = start_s;
    s->base_k = 0;
    sched_rotation(s, qps);
    return 0;
}

int hb_sched_set_rate(hb_sched_t *s, uint64_t qps, uint64_t from_s)
{
    if (from_s < s->epoch_s || from_s >= HB_SCHED_MAX_S || qps > HB_SCHED_MAX_QPS)
        return HB_EINVAL;
    s->base_k += (from_s - s->epoch_s) * s->qps;
    s->epoch_s = from_s;
    sched_rotation(s, qps);
    return 0;
}

uint64_t hb_sched_user_of(const hb_sched_t *s, uint64_t k)
{
    uint64_t p = k % s->users;
    uint64_t col = (p / s->rows) * s->unstride % s->cols;
    return (p % s->rows) * s->cols + col;
}

uint64_t hb_sched_time_of(const hb_sched_t *s, uint64_t k)
{
    uint64_t d;
    if (s->qps == 0)
        return UINT64_MAX;
    d = k > s->base_k ? k - s->base_k : 0;
    return (s->epoch_s + d / s->qps) * 1000 + (d % s->qps) * 1000 / s->qps;
}

uint64_t hb_sched_time_us_of(const hb_sched_t *s, uint64_t k)
{
    uint64_t d;
    if (s->qps == 0)
        return UINT64_MAX;
    d = k > s->base_k ? k - s->base_k : 0;
    /* d % qps < 2^32, so the product stays below 2^52. */
    return (s->epoch_s + d / s->qps) * 1000000 + (d % s->qps) * 1000000 / s->qps;
}

uint64_t hb_sched_first_at(const hb_sched_t *s, uint64_t at_ms)
{
    uint64_t sec, ms;
    if (s->qps == 0 || at_ms < s->epoch_s * 1000)
        return s->base_k;
    if (at_ms > HB_SCHED_MAX_MS_)
        at_ms = HB_SCHED_MAX_MS_;
    sec = at_ms / 1000;
    ms = at_ms % 1000;
    /* Index i of a second is at millisecond floor(i * 1000 / qps), which is >= ms exactly when
     * i >= ms * qps / 1000: the first such i is the ceiling. It may be qps, the next second. */
    return s->base_k + (sec - s->epoch_s) * s->qps + (ms * s->qps + 999) / 1000;
}

int hb_sched_next(const hb_sched_t *s, uint64_t user, uint64_t at_ms, uint64_t *k,
                  uint64_t *when_ms)
{
    uint64_t k0, kn;
    if (user >= s->users || at_ms >= HB_SCHED_MAX_MS_)
        return HB_EINVAL;
    if (s->qps == 0)
        return HB_EIDLE;
    k0 = hb_sched_first_at(s, at_ms);
    kn = k0 + (sched_pos(s, user) + s->users - k0 % s->users) % s->users;
    if (k != NULL)
        *k = kn;
    if (when_ms != NULL)
        *when_ms = hb_sched_time_of(s, kn);
    return 0;
}

static int range_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Place the walk at the range's first send at or after index k0. */
static void range_place(hb_sched_range_t *r, uint64_t k0)
{
    uint64_t p0 = k0 % r->users, lo = 0, hi = r->count;
    /* The first entry whose position is p0 or later. */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if ((r->order[mid] >> 32) < p0)
            lo = mid + 1;
        else
            hi = mid;
    }
    r->cycle = k0 - p0;
    r->next = lo;
    if (lo == r->count) {
        r->cycle += r->users;
        r->next = 0;
    }
}

int hb_sched_range_init(hb_sched_range_t *r, const hb_sched_t *s, uint64_t first, uint64_t count,
                        uint64_t *order)
{
    if (count == 0 || order == NULL || first >= s->users || count > s->users - first)
        return HB_EINVAL;
    /* Positions are below users <= 2^32 and offsets below count <= 2^32: 32 bits each. */
    for (uint64_t i = 0; i < count; i++)
        order[i] = sched_pos(s, first + i) << 32 | i;
    qsort(order, (size_t)count, sizeof *order, range_cmp);
    r->first = first;
    r->count = count;
    r->users = s->users;
    r->order = order;
    range_place(r, s->base_k);
    return 0;
}

void hb_sched_range_seek(hb_sched_range_t *r, const hb_sched_t *s, uint64_t at_ms)
{
    range_place(r, hb_sched_first_at(s, at_ms));
}

void hb_sched_range_next(hb_sched_range_t *r, uint64_t *k, uint64_t *user)
{
    uint64_t e = r->order[r->next];
    if (k != NULL)
        *k = r->cycle + (e >> 32);
    if (user != NULL)
        *user = r->first + (e & 0xFFFFFFFFu);
    if (++r->next == r->count) {
        r->next = 0;
        r->cycle += r->users;
    }
}

int hb_sched_reference_due(uint64_t users, uint64_t qps, uint64_t user, uint64_t t)
{
    uint64_t g;
    if (qps == 0 || qps > users || user >= users)
        return HB_EINVAL;
    g = users / qps;
    return t % g == user % g;
}
