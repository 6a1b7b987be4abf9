/* The user registry: user_id -> (SET, login generation), sharded open-addressing hash tables
 * with linear probing and backward-shift deletion, one mutex per shard. */
#include "hongbao/registry.h"

#include <uv.h>

#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HB_REGISTRY_CACHELINE  64
#define HB_REGISTRY_MAX_SHARDS 4096
#define HB_REGISTRY_MIN_SLOTS  8
/* A table grows when an insert would fill more than LOAD_NUM / LOAD_DEN of its slots. */
#define HB_REGISTRY_LOAD_NUM 7
#define HB_REGISTRY_LOAD_DEN 10

typedef struct hb_registry_slot {
    uint64_t gen;
    uint32_t user;
    uint32_t set;
    bool used;
} hb_registry_slot_t;

/* One shard, alone on its cache lines so that threads locking neighbouring shards do not
 * contend for the same line. */
struct hb_registry_shard {
    alignas(HB_REGISTRY_CACHELINE) uv_mutex_t lock;
    hb_registry_slot_t *slots; /* nslots entries */
    size_t mask;               /* nslots - 1; nslots is a power of two */
    size_t count;              /* used slots */
};

/* splitmix64's finaliser: every bit of the user id affects every bit of the hash, so sequential
 * ids spread evenly over the shards (top bits) and over the slots (low bits). */
static uint64_t hb_registry_hash(uint32_t user)
{
    uint64_t x = (uint64_t)user + UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

static struct hb_registry_shard *hb_registry_shard_of(hb_registry_t *r, uint64_t hash)
{
    /* The top bits; nshards is a power of two, so this is an even split. With one shard the
     * shift would be 64, so mask instead. */
    return &r->shards[(size_t)(hash >> 32) & (r->nshards - 1)];
}

static size_t hb_registry_home(const struct hb_registry_shard *sh, uint64_t hash)
{
    return (size_t)hash & sh->mask;
}

/* The slot holding user, or the empty slot where it would go. The table is never full. */
static size_t hb_registry_find(const struct hb_registry_shard *sh, uint32_t user, uint64_t hash)
{
    size_t i = hb_registry_home(sh, hash);
    while (sh->slots[i].used && sh->slots[i].user != user)
        i = (i + 1) & sh->mask;
    return i;
}

static hb_registry_slot_t *hb_registry_alloc_slots(size_t nslots)
{
    if (nslots > SIZE_MAX / sizeof(hb_registry_slot_t))
        return NULL;
    return calloc(nslots, sizeof(hb_registry_slot_t));
}

/* Double the shard's table. Returns 0 or UV_ENOMEM (the table is unchanged). */
static int hb_registry_grow(struct hb_registry_shard *sh)
{
    size_t old_n = sh->mask + 1;
    if (old_n > SIZE_MAX / 2)
        return UV_ENOMEM;
    hb_registry_slot_t *old = sh->slots;
    hb_registry_slot_t *slots = hb_registry_alloc_slots(old_n * 2);
    if (slots == NULL)
        return UV_ENOMEM;
    sh->slots = slots;
    sh->mask = old_n * 2 - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].used)
            sh->slots[hb_registry_find(sh, old[i].user, hb_registry_hash(old[i].user))] = old[i];
    }
    free(old);
    return 0;
}

/* Empty slot i, moving later members of its probe run back so that no lookup stops short. */
static void hb_registry_delete_at(struct hb_registry_shard *sh, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & sh->mask;
        if (!sh->slots[j].used)
            break;
        size_t home = hb_registry_home(sh, hb_registry_hash(sh->slots[j].user));
        /* The entry at j may fill the hole at i when i lies on its probe path, from home to j. */
        if (((j - home) & sh->mask) >= ((j - i) & sh->mask)) {
            sh->slots[i] = sh->slots[j];
            i = j;
        }
    }
    sh->slots[i].used = false;
    sh->count--;
}

static size_t hb_registry_slots_for(size_t users)
{
    /* Enough slots that users entries stay within the load factor. */
    size_t need = users / HB_REGISTRY_LOAD_NUM * HB_REGISTRY_LOAD_DEN +
                  (users % HB_REGISTRY_LOAD_NUM * HB_REGISTRY_LOAD_DEN + HB_REGISTRY_LOAD_NUM - 1) /
                      HB_REGISTRY_LOAD_NUM +
                  1;
    size_t n = HB_REGISTRY_MIN_SLOTS;
    while (n < need && n <= SIZE_MAX / 2)
        n <<= 1;
    return n;
}

static void hb_registry_free_shards(hb_registry_t *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uv_mutex_destroy(&r->shards[i].lock);
        free(r->shards[i].slots);
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
    size_t nslots = hb_registry_slots_for((expected_users + n - 1) / n);

    struct hb_registry_shard *shards =
        aligned_alloc(HB_REGISTRY_CACHELINE, n * sizeof(struct hb_registry_shard));
    if (shards == NULL)
        return UV_ENOMEM;
    r->shards = shards;
    for (unsigned i = 0; i < n; i++) {
        struct hb_registry_shard *sh = &shards[i];
        int err = uv_mutex_init(&sh->lock);
        if (err == 0) {
            sh->slots = hb_registry_alloc_slots(nslots);
            if (sh->slots == NULL) {
                uv_mutex_destroy(&sh->lock);
                err = UV_ENOMEM;
            }
        }
        if (err != 0) {
            hb_registry_free_shards(r, i);
            return err;
        }
        sh->mask = nslots - 1;
        sh->count = 0;
    }
    r->nshards = n;
    return 0;
}

void hb_registry_close(hb_registry_t *r)
{
    if (r == NULL || r->shards == NULL)
        return;
    hb_registry_free_shards(r, r->nshards);
}

int hb_registry_put(hb_registry_t *r, uint32_t user, hb_registry_entry_t e,
                    hb_registry_entry_t *old)
{
    if (r == NULL || r->shards == NULL)
        return UV_EINVAL;
    uint64_t hash = hb_registry_hash(user);
    struct hb_registry_shard *sh = hb_registry_shard_of(r, hash);
    int ret;
    uv_mutex_lock(&sh->lock);
    size_t i = hb_registry_find(sh, user, hash);
    if (sh->slots[i].used) {
        if (old != NULL) {
            old->set = sh->slots[i].set;
            old->gen = sh->slots[i].gen;
        }
        ret = 1;
    } else {
        /* A new user: make room first, so that a failed growth changes nothing. */
        if ((sh->count + 1) * HB_REGISTRY_LOAD_DEN > (sh->mask + 1) * HB_REGISTRY_LOAD_NUM) {
            ret = hb_registry_grow(sh);
            if (ret != 0)
                goto out;
            i = hb_registry_find(sh, user, hash);
        }
        sh->slots[i].user = user;
        sh->slots[i].used = true;
        sh->count++;
        ret = 0;
    }
    sh->slots[i].set = e.set;
    sh->slots[i].gen = e.gen;
out:
    uv_mutex_unlock(&sh->lock);
    return ret;
}

int hb_registry_get(hb_registry_t *r, uint32_t user, hb_registry_entry_t *out)
{
    if (r == NULL || r->shards == NULL || out == NULL)
        return UV_EINVAL;
    uint64_t hash = hb_registry_hash(user);
    struct hb_registry_shard *sh = hb_registry_shard_of(r, hash);
    int ret = UV_ENOENT;
    uv_mutex_lock(&sh->lock);
    size_t i = hb_registry_find(sh, user, hash);
    if (sh->slots[i].used) {
        out->set = sh->slots[i].set;
        out->gen = sh->slots[i].gen;
        ret = 0;
    }
    uv_mutex_unlock(&sh->lock);
    return ret;
}

int hb_registry_remove(hb_registry_t *r, uint32_t user, uint64_t gen)
{
    if (r == NULL || r->shards == NULL)
        return UV_EINVAL;
    uint64_t hash = hb_registry_hash(user);
    struct hb_registry_shard *sh = hb_registry_shard_of(r, hash);
    int ret = UV_ENOENT;
    uv_mutex_lock(&sh->lock);
    size_t i = hb_registry_find(sh, user, hash);
    if (sh->slots[i].used && sh->slots[i].gen == gen) {
        hb_registry_delete_at(sh, i);
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
        total += r->shards[i].count;
        uv_mutex_unlock(&r->shards[i].lock);
    }
    return total;
}
