/* The "double mean" split of an envelope's total into shares. */
#include "hongbao/envelope.h"

uint32_t hb_envelope_draw(uint32_t remaining, uint32_t left, hb_rand_t *rng)
{
    if (left == 0 || remaining < left)
        return 0;
    if (left == 1)
        return remaining;

    /* 64-bit so that 2 * remaining cannot overflow for remaining near UINT32_MAX. */
    uint64_t cap = 2 * (uint64_t)remaining / left;
    uint64_t keep_one_each = (uint64_t)remaining - (left - 1);
    if (cap > keep_one_each)
        cap = keep_one_each;
    /* cap >= 1 here: remaining >= left >= 2 gives 2 * remaining / left >= 2 and
     * remaining - (left - 1) >= 1. */
    return (uint32_t)(1 + hb_rand_below(rng, cap));
}

int hb_envelope_split(uint32_t total, uint32_t n, hb_rand_t *rng, uint32_t *shares)
{
    if (n == 0 || shares == NULL || rng == NULL)
        return UV_EINVAL;
    if (total < n)
        return HB_EAMOUNT;

    uint32_t remaining = total;
    for (uint32_t i = 0; i < n; i++) {
        shares[i] = hb_envelope_draw(remaining, n - i, rng);
        remaining -= shares[i];
    }
    return 0;
}
