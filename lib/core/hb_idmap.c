/* The id map: open addressing with linear probing over a power-of-two table of fixed-size slots
 * (an 8-byte header, then the value), growth by doubling, backward-shift deletion. */
#include "hongbao/idmap.h"

#include "hb_internal.h"

#include <stdlib.h>
#include <string.h>

/* The table never has fewer slots than this (a non-empty one). */
#define MIN_CAPACITY ((size_t)8)
/* Values start this far into a slot, and slots are a multiple of it long. */
#define VALUE_ALIGN ((size_t)8)
/* When Fibonacci hashing places keys more than a slot past their homes on average, for long
 * enough, it is clustering them (or the keys have no pattern it spreads well): the map switches to
 * the mixing hash until it next grows, when Fibonacci hashing gets another chance (a stride it
 * clusters in a small table may spread well in a larger one). The measure is a drift: each key
 * placed (inserted, or moved by a growth) adds its distance from its home and takes off one,
 * never going below 0; the switch comes when it reaches DRIFT_LIMIT. Ids in a progression that
 * Fibonacci hashing spreads well land 0 to 2 slots from home and keep the drift near 0; keys it
 * spreads no better than random ones push it up soon enough, and then the switch costs nothing,
 * since the mixing hash spreads them as well. */
#define DRIFT_LIMIT ((size_t)16)
/* rehash's answer when Fibonacci hashing drifted: the new table was given up. */
#define DRIFTED 1

struct slot_header {
    uint32_t key;
    uint32_t used; /* 0: empty (calloc makes every slot empty); 1: holds key */
};

/* The most keys a table of capacity slots holds: 7/10 of it, rounded down, without overflow. At
 * least 3/10 of the slots stay empty, so every probe ends. */
static size_t load_limit(size_t capacity)
{
    return capacity / 10 * 7 + capacity % 10 * 7 / 10;
}

/* splitmix64's finaliser (see hb_idmap_hash). */
static uint64_t mix(uint32_t key)
{
    return hb__mix64((uint64_t)key + UINT64_C(0x9E3779B97F4A7C15));
}

static struct slot_header *slot_at(const hb_idmap_t *m, size_t i)
{
    return (struct slot_header *)(m->slots + i * m->stride);
}

static void *value_of(struct slot_header *h)
{
    return (unsigned char *)h + VALUE_ALIGN;
}

/* The home slot of key: the top bits of its hash. Fibonacci hashing (multiply by 2^64 divided by
 * the golden ratio) first: it places ids in arithmetic progression, sequential or every nsets-th,
 * almost evenly apart, so nearly every find looks at one slot; but a stride whose multiple of the
 * golden ratio is close to a whole number (as for Fibonacci numbers: 6765 is the worst below
 * 10000) piles keys up in long runs, and then the map uses the mixing hash, which spreads any keys
 * as random ones would. */
static size_t home_of(const hb_idmap_t *m, uint32_t key)
{
    uint64_t h = m->mixed ? mix(key) : (uint64_t)key * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> m->shift);
}

/* log2 of a power of two. */
static unsigned log2_of(size_t capacity)
{
    unsigned n = 0;
    while (capacity > 1) {
        capacity >>= 1;
        n++;
    }
    return n;
}

/* The smallest power-of-two capacity (at least the minimum) that holds n keys within the load
 * limit and whose table's size fits a size_t, or 0 when there is none. */
static size_t capacity_for(size_t n, size_t stride)
{
    size_t capacity = MIN_CAPACITY;
    while (load_limit(capacity) < n) {
        if (capacity > SIZE_MAX / 2)
            return 0;
        capacity *= 2;
    }
    return capacity > SIZE_MAX / stride ? 0 : capacity;
}

/* The index of the slot holding key, or of the empty slot that ends its probe from home. The
 * table has a slot, and an empty one. */
static size_t probe(const hb_idmap_t *m, uint32_t key, size_t home)
{
    size_t mask = m->capacity - 1;
    size_t i = home;
    for (;;) {
        const struct slot_header *h = slot_at(m, i);
        if (!h->used || h->key == key)
            return i;
        i = (i + 1) & mask;
    }
}

/* Account for a key placed displacement slots past its home under Fibonacci hashing; whether
 * it should give way now (see DRIFT_LIMIT). */
static int drifted(hb_idmap_t *m, size_t displacement)
{
    if (m->mixed)
        return 0;
    m->drift = m->drift + displacement > 0 ? m->drift + displacement - 1 : 0;
    return m->drift >= DRIFT_LIMIT;
}

/* Move every entry into a fresh table of capacity slots, hashed as mixed says. Returns 0,
 * HB_ENOMEM, or DRIFTED when Fibonacci hashing drifted on the way (the new table is given up at
 * once); but for 0, the map is unchanged. */
static int rehash(hb_idmap_t *m, size_t capacity, unsigned mixed)
{
    unsigned char *slots = calloc(capacity, m->stride);
    if (slots == NULL)
        return HB_ENOMEM;
    hb_idmap_t old = *m;
    m->slots = slots;
    m->capacity = capacity;
    m->shift = 64u - log2_of(capacity);
    m->mixed = mixed;
    m->drift = 0;
    for (size_t j = 0; j < old.capacity; j++) {
        struct slot_header *from = slot_at(&old, j);
        if (!from->used)
            continue;
        size_t home = home_of(m, from->key);
        size_t i = probe(m, from->key, home);
        if (drifted(m, (i - home) & (capacity - 1))) {
            free(slots);
            *m = old;
            return DRIFTED;
        }
        memcpy(slot_at(m, i), from, m->stride);
    }
    free(old.slots);
    return 0;
}

/* Move every entry into a fresh table of capacity slots: by Fibonacci hashing, or by the mixing
 * hash if that drifts there. Returns 0 or HB_ENOMEM (the map is unchanged). */
static int rebuild(hb_idmap_t *m, size_t capacity)
{
    int err = rehash(m, capacity, 0);
    return err == DRIFTED ? rehash(m, capacity, 1) : err;
}

/* Empty slot i, moving each later entry of the run that may fill the hole back into it, so that no
 * probe stops short and no tombstone is needed. Entries move only backwards, and never past an
 * empty slot. */
static void remove_at(hb_idmap_t *m, size_t i)
{
    size_t mask = m->capacity - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        struct slot_header *h = slot_at(m, j);
        if (!h->used)
            break;
        /* The entry at j may fill the hole when i lies on its probe path, from its home to j. */
        size_t home = home_of(m, h->key);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            memcpy(slot_at(m, i), h, m->stride);
            i = j;
        }
    }
    slot_at(m, i)->used = 0;
    m->count--;
}

uint64_t hb_idmap_hash(uint32_t key)
{
    return mix(key);
}

int hb_idmap_init(hb_idmap_t *m, size_t value_size, size_t expected)
{
    if (m == NULL)
        return HB_EINVAL;
    memset(m, 0, sizeof *m);
    if (value_size > HB_IDMAP_VALUE_MAX)
        return HB_EINVAL;
    m->value_size = value_size;
    m->stride = VALUE_ALIGN + (value_size + VALUE_ALIGN - 1) / VALUE_ALIGN * VALUE_ALIGN;
    size_t capacity = capacity_for(expected, m->stride);
    if (capacity == 0)
        return HB_ENOMEM;
    return rebuild(m, capacity);
}

void hb_idmap_close(hb_idmap_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->count = 0;
    m->capacity = 0;
    m->shift = 0;
    m->mixed = 0;
    m->drift = 0;
}

void *hb_idmap_find(const hb_idmap_t *m, uint32_t key)
{
    if (m->count == 0)
        return NULL;
    struct slot_header *h = slot_at(m, probe(m, key, home_of(m, key)));
    return h->used ? value_of(h) : NULL;
}

int hb_idmap_insert(hb_idmap_t *m, uint32_t key, void **value)
{
    size_t i = 0;
    if (m->capacity != 0) {
        size_t home = home_of(m, key);
        i = probe(m, key, home);
        struct slot_header *h = slot_at(m, i);
        if (h->used) {
            if (value != NULL)
                *value = value_of(h);
            return 1;
        }
        if (drifted(m, (i - home) & (m->capacity - 1)) && m->count + 1 <= load_limit(m->capacity)) {
            /* Fibonacci hashing is clustering these keys: switch to the mixing hash (if the
             * new table cannot be had, the old one still serves). */
            if (rehash(m, m->capacity, 1) == 0)
                i = probe(m, key, home_of(m, key));
        }
    }
    if (m->capacity == 0 || m->count + 1 > load_limit(m->capacity)) {
        size_t capacity = m->capacity == 0 ? MIN_CAPACITY : m->capacity * 2;
        int err = m->stride == 0                           ? HB_EINVAL /* init failed */
                  : m->capacity > SIZE_MAX / 2 / m->stride ? HB_ENOMEM
                                                           : rebuild(m, capacity);
        if (err != 0) {
            if (value != NULL)
                *value = NULL;
            return err;
        }
        i = probe(m, key, home_of(m, key));
    }
    struct slot_header *h = slot_at(m, i);
    h->key = key;
    h->used = 1;
    memset(value_of(h), 0, m->value_size);
    m->count++;
    if (value != NULL)
        *value = value_of(h);
    return 0;
}

int hb_idmap_remove(hb_idmap_t *m, uint32_t key, void *out)
{
    if (m->count == 0)
        return HB_ENOENT;
    size_t i = probe(m, key, home_of(m, key));
    struct slot_header *h = slot_at(m, i);
    if (!h->used)
        return HB_ENOENT;
    if (out != NULL)
        memcpy(out, value_of(h), m->value_size);
    remove_at(m, i);
    return 0;
}

void hb_idmap_remove_found(hb_idmap_t *m, void *value)
{
    size_t offset = (size_t)((unsigned char *)value - VALUE_ALIGN - m->slots);
    remove_at(m, offset / m->stride);
}

void *hb_idmap_next(const hb_idmap_t *m, size_t *cursor, uint32_t *key)
{
    for (size_t i = *cursor; i < m->capacity; i++) {
        struct slot_header *h = slot_at(m, i);
        if (h->used) {
            *cursor = i + 1;
            if (key != NULL)
                *key = h->key;
            return value_of(h);
        }
    }
    *cursor = m->capacity;
    return NULL;
}

size_t hb_idmap_remove_if(hb_idmap_t *m, int (*pred)(void *arg, uint32_t key, void *value),
                          void *arg)
{
    if (m->count == 0)
        return 0;
    size_t mask = m->capacity - 1;
    /* An empty slot: no probe run crosses it, now or after any removal. */
    size_t start = 0;
    while (slot_at(m, start)->used)
        start++;
    /* First ask about every entry, emptying the slots of those that go: runs now have holes. */
    size_t removed = 0;
    for (size_t i = 0; i < m->capacity; i++) {
        struct slot_header *h = slot_at(m, i);
        if (h->used && pred(arg, h->key, value_of(h))) {
            h->used = 0;
            removed++;
        }
    }
    if (removed == 0)
        return 0;
    m->count -= removed;
    /* Then close the holes in one pass round the table from the empty slot: each entry, in
     * order, moves to the first empty slot from its home. That slot is never past the entry, and
     * every slot from its home up to it has been settled already, so each entry ends reachable
     * (where an insert in this order would have put it) and moves at most once: linear time,
     * where removing the entries one by one would shift a run's tail once for each. */
    for (size_t n = 1, j = (start + 1) & mask; n < m->capacity; n++, j = (j + 1) & mask) {
        struct slot_header *h = slot_at(m, j);
        if (!h->used)
            continue;
        size_t i = probe(m, h->key, home_of(m, h->key));
        if (i != j) {
            memcpy(slot_at(m, i), h, m->stride);
            h->used = 0;
        }
    }
    return removed;
}
