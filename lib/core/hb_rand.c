/* xoshiro256** generator seeded through splitmix64, with unbiased bounded draws (Lemire's
 * multiply-and-reject method). */
#include "hongbao/rand.h"

#include "hb_internal.h"

/* The splitmix64 step: advances *state by the golden-ratio increment and returns a well-mixed
 * 64-bit value of it. Used only to expand a 64-bit seed into the 256-bit state. */
static uint64_t splitmix64_next(uint64_t *state)
{
    return hb__mix64(*state += UINT64_C(0x9e3779b97f4a7c15));
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* The full 128-bit product a * b, as its high and low 64-bit halves. */
static void mul_64x64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
#if defined(__SIZEOF_INT128__) && !defined(HB_RAND_NO_INT128)
    __extension__ typedef unsigned __int128 u128;
    u128 p = (u128)a * b;
    *hi = (uint64_t)(p >> 64);
    *lo = (uint64_t)p;
#else
    /* Schoolbook on 32-bit halves, for targets without a 128-bit integer type. */
    uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
    uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
    uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    *lo = (mid << 32) | (ll & 0xffffffffu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
#endif
}

void hb_rand_seed(hb_rand_t *r, uint64_t seed)
{
    /* splitmix64 is a bijection of its counter, so four consecutive outputs are never all
     * zero: the forbidden all-zero xoshiro state cannot arise. */
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64_next(&seed);
}

uint64_t hb_rand_next(hb_rand_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

uint64_t hb_rand_below(hb_rand_t *r, uint64_t bound)
{
    uint64_t hi, lo;

    if (bound == 0)
        return 0;
    /* The high half of x * bound is uniform over [0, bound) except that 2^64 mod bound of the
     * x values make some results one more likely; those x are exactly the ones whose low half
     * falls below 2^64 mod bound, so they are redrawn. The modulo is computed only when the
     * low half is small enough that a rejection is possible. */
    mul_64x64(hb_rand_next(r), bound, &hi, &lo);
    if (lo < bound) {
        uint64_t threshold = (0 - bound) % bound; /* 2^64 mod bound */
        while (lo < threshold)
            mul_64x64(hb_rand_next(r), bound, &hi, &lo);
    }
    return hi;
}

uint64_t hb_rand_range(hb_rand_t *r, uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return lo;
    if (hi - lo == UINT64_MAX)
        return hb_rand_next(r);
    return lo + hb_rand_below(r, hi - lo + 1);
}
