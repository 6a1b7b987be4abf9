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
        return HB_EINVAL;
    if (total < n)
        return HB_EAMOUNT;

    uint32_t remaining = total;
    for (uint32_t i = 0; i < n; i++) {
        shares[i] = hb_envelope_draw(remaining, n - i, rng);
        remaining -= shares[i];
    }
    return 0;
}

/* The spaces as ranges of ids, in order: shake ids take two ranges around the send range. */
static const struct {
    uint32_t first, last;
    hb_envelope_kind_t kind;
} id_ranges[] = {
    {HB_SHAKE_ENVELOPE_ID_BASE, HB_SEND_ENVELOPE_ID_BASE - 1, HB_ENVELOPE_SHAKE},
    {HB_SEND_ENVELOPE_ID_BASE, UINT32_C(0x7FFFFFFF), HB_ENVELOPE_SEND},
    {UINT32_C(0x80000000), UINT32_MAX, HB_ENVELOPE_SHAKE},
};

#define ID_RANGES (sizeof id_ranges / sizeof id_ranges[0])

int hb_envelope_id_kind(uint32_t id)
{
    for (size_t i = 0; i < ID_RANGES; i++)
        if (id >= id_ranges[i].first && id <= id_ranges[i].last)
            return (int)id_ranges[i].kind;
    return 0;
}

int64_t hb_envelope_id_index(hb_envelope_kind_t kind, uint32_t id)
{
    uint64_t before = 0; /* ids of the kind in the ranges before id's */
    for (size_t i = 0; i < ID_RANGES; i++) {
        if (id_ranges[i].kind != kind)
            continue;
        if (id >= id_ranges[i].first && id <= id_ranges[i].last)
            return (int64_t)(before + (id - id_ranges[i].first));
        before += (uint64_t)id_ranges[i].last - id_ranges[i].first + 1;
    }
    return -1;
}

uint32_t hb_envelope_id_add(hb_envelope_kind_t kind, uint32_t id, uint64_t n)
{
    int k = hb_envelope_id_kind(id);
    if (k != 0 && k != (int)kind)
        return 0;
    if (n == 0)
        return k == (int)kind ? id : 0; /* an id below the space is none of its ids */
    /* Walk the kind's ranges from the one holding id (or the first after it). */
    for (size_t i = 0; i < ID_RANGES; i++) {
        if (id_ranges[i].kind != kind || id > id_ranges[i].last)
            continue;
        uint64_t at = id < id_ranges[i].first ? (uint64_t)id_ranges[i].first - 1 : id;
        uint64_t room = (uint64_t)id_ranges[i].last - at;
        if (n <= room)
            return (uint32_t)(at + n);
        n -= room;
        id = id_ranges[i].last;
    }
    return 0;
}
