/* The user registry: user_id -> (SET, login generation), one id map (hongbao/idmap.h) a shard,
 * each behind its own mutex. */
#include "hongbao/registry.h"

#include <uv.h>

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#include "hongbao/idmap.h"

#define HB_REGISTRY_CACHELINE  64
#define HB_REGISTRY_MAX_SHARDS 4096

_Static_assert(alignof(hb_registry_entry_t) <= 8,
               "an entry needs no more than the id map's alignment");

/* One shard, alone on its cache lines so that threads locking neighbouring shards do not
 * contend for the same line. */
struct hb_registry_shard {
    alignas(HB_REGISTRY_CACHELINE) uv_mutex_t lock;
    hb_idmap_t users; /* user -> hb_registry_entry_t */
};

/* The shard of user: the low bits of the id map's mixing hash, so sequential ids spread evenly
 * over the shards while each shard's map takes its slots from other bits (the top of its own
 * hash). */
static struct hb_registry_shard *shard_of(hb_registry_t *r, uint32_t user)
{
    return &r->shards[(size_t)hb_idmap_hash(user) & (r->nshards - 1)];
}

static void free_shards(hb_registry_t *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uv_mutex_destroy(&r->shards[i].lock);
        hb_idmap_close(&r->shards[i].users);
    }
    free(r->shards);
    r->shards = NULL;
}

int hb_registry_init(hb_registry_t *r, unsigned nshards, size_t expected_users)
{
    if (r == NULL || nshards == 0 || nshards > HB_REGISTRY_MAX_SHARDS)
        return UV_EINVAL;
    unsigned n = 1;
    while (n < nshards)
        n <<= 1;
    /* User ids are 32-bit: never more than 2^32 users to plan for. */
    if ((uint64_t)expected_users > UINT64_C(1) << 32)
        expected_users = (size_t)(UINT64_C(1) << 32);
    size_t per_shard = (expected_users + n - 1) / n;

    struct hb_registry_shard *shards =
        aligned_alloc(HB_REGISTRY_CACHELINE, n * sizeof(struct hb_registry_shard));
    if (shards == NULL)
        return UV_ENOMEM;
    r->shards = shards;
    for (unsigned i = 0; i < n; i++) {
        struct hb_registry_shard *sh = &shards[i];
        int err = uv_mutex_init(&sh->lock);
        if (err == 0) {
            err = hb_idmap_init(&sh->users, sizeof(hb_registry_entry_t), per_shard);
            if (err != 0)
                uv_mutex_destroy(&sh->lock);
        }
        if (err != 0) {
            free_shards(r, i);
            return err;
        }
    }
    r->nshards = n;
    return 0;
}

void hb_registry_close(hb_registry_t *r)
{
    if (r == NULL || r->shards == NULL)
        return;
    free_shards(r, r->nshards);
}

int hb_registry_put(hb_registry_t *r, uint32_t user, hb_registry_entry_t e,
                    hb_registry_entry_t *old)
{
    if (r == NULL || r->shards == NULL)
        return UV_EINVAL;
    struct hb_registry_shard *sh = shard_of(r, user);
    uv_mutex_lock(&sh->lock);
    void *slot;
    int ret = hb_idmap_insert(&sh->users, user, &slot);
    if (ret >= 0) {
        hb_registry_entry_t *held = slot;
        if (ret == 1 && old != NULL)
            *old = *held;
        *held = e;
    }
    uv_mutex_unlock(&sh->lock);
    return ret;
}

int hb_registry_get(hb_registry_t *r, uint32_t user, hb_registry_entry_t *out)
{
    if (r == NULL || r->shards == NULL || out == NULL)
        return UV_EINVAL;
    struct hb_registry_shard *sh = shard_of(r, user);
    int ret = UV_ENOENT;
    uv_mutex_lock(&sh->lock);
    const hb_registry_entry_t *held = hb_idmap_find(&sh->users, user);
    if (held != NULL) {
        *out = *held;
        ret = 0;
    }
    uv_mutex_unlock(&sh->lock);
    return ret;
}

int hb_registry_remove(hb_registry_t *r, uint32_t user, uint64_t gen)
{
    if (r == NULL || r->shards == NULL)
        return UV_EINVAL;
    struct hb_registry_shard *sh = shard_of(r, user);
    int ret = UV_ENOENT;
    uv_mutex_lock(&sh->lock);
    hb_registry_entry_t *held = hb_idmap_find(&sh->users, user);
    if (held != NULL && held->gen == gen) {
        hb_idmap_remove_found(&sh->users, held);
        ret = 0;
    }
    uv_mutex_unlock(&sh->lock);
    return ret;
}

size_t hb_registry_count(hb_registry_t *r)
{
    if (r == NULL || r->shards == NULL)
        return 0;
    size_t total = 0;
    for (unsigned i = 0; i < r->nshards; i++) {
        uv_mutex_lock(&r->shards[i].lock);
        total += r->shards[i].users.count;
        uv_mutex_unlock(&r->shards[i].lock);
    }
    return total;
}
