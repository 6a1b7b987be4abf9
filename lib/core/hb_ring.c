/* Rendezvous hashing of users over instances (hongbao/ring.h): a weight per (instance, user) made
 * of the library's mixing function, and the user's order of instances by weight. */
#include "hongbao/ring.h"

#include <string.h>

#include "hb_internal.h"

#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)

uint64_t hb_ring_key(const char *name)
{
    const char *s = name != NULL ? name : "";
    return hb__mix64(hb__fnv1a64(HB__FNV_OFFSET, s, strlen(s)));
}

/* The user's own mix, computed once per lookup. */
static uint64_t user_mix(uint32_t user)
{
    return hb__mix64((uint64_t)user + GOLDEN);
}

static uint64_t weight(uint64_t key, uint64_t umix)
{
    return hb__mix64(key ^ umix);
}

uint64_t hb_ring_weight(uint64_t key, uint32_t user)
{
    return weight(key, user_mix(user));
}

/* One instance as a user ranks it. */
typedef struct rank {
    uint64_t w, key;
    uint32_t i;
} rank_t;

/* Whether a comes before b in the user's order: the higher weight, then the larger key, then the
 * lower index (a total order, so a walk visits every instance). */
static int ahead(const rank_t *a, const rank_t *b)
{
    if (a->w != b->w)
        return a->w > b->w;
    if (a->key != b->key)
        return a->key > b->key;
    return a->i < b->i;
}

uint32_t hb_ring_pick(const uint64_t *keys, uint32_t n, uint32_t user)
{
    if (keys == NULL || n == 0)
        return HB_RING_NONE;
    uint64_t umix = user_mix(user);
    rank_t best = {weight(keys[0], umix), keys[0], 0};
    for (uint32_t i = 1; i < n; i++) {
        rank_t r = {weight(keys[i], umix), keys[i], i};
        if (ahead(&r, &best))
            best = r;
    }
    return best.i;
}

uint32_t hb_ring_next(const uint64_t *keys, uint32_t n, uint32_t user, uint32_t after)
{
    if (keys == NULL || after >= n)
        return HB_RING_NONE;
    uint64_t umix = user_mix(user);
    rank_t from = {weight(keys[after], umix), keys[after], after};
    rank_t best = {0, 0, HB_RING_NONE};
    for (uint32_t i = 0; i < n; i++) {
        rank_t r = {weight(keys[i], umix), keys[i], i};
        if (ahead(&from, &r) && (best.i == HB_RING_NONE || ahead(&r, &best)))
            best = r;
    }
    return best.i != HB_RING_NONE ? best.i : hb_ring_pick(keys, n, user);
}
