/* Bucketed envelope queue: an array of bounded single-producer single-consumer rings, one per
 * SET, filled round-robin by one producer thread and each drained by its own consumer thread. */
#include "hongbao/envq.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define HB_ENVQ_CACHE_LINE   64
#define HB_ENVQ_MAX_CAPACITY (UINT32_C(1) << 30)

/* One ring. head and tail run freely over uint32_t and wrap; the capacity is a power of two no
 * larger than 2^30, so it divides 2^32, slot = index & mask stays right across the wrap, and
 * tail - head (mod 2^32) is always the number queued. Each side's index sits on its own cache
 * line with that side's private copy of the other side's index, so in the steady state neither
 * side reads the other's line except when its copy says the ring looks full (producer) or empty
 * (consumer). */
struct hb_envq_bucket {
    /* Read-only after init. */
    alignas(HB_ENVQ_CACHE_LINE) hb_envelope_t *slots;
    uint32_t mask;

    /* Written by the producer only. */
    alignas(HB_ENVQ_CACHE_LINE) atomic_uint_least32_t tail; /* next slot to fill */
    uint32_t head_seen; /* the head the producer last loaded; never ahead of head */

    /* Written by the consumer only. */
    alignas(HB_ENVQ_CACHE_LINE) atomic_uint_least32_t head; /* next slot to read */
    uint32_t tail_seen; /* the tail the consumer last loaded; never ahead of tail */
};

/* aligned_alloc wants a size that is a multiple of the alignment; a struct aligned to 64 has one.
 */
_Static_assert(sizeof(struct hb_envq_bucket) % HB_ENVQ_CACHE_LINE == 0,
               "a bucket spans whole cache lines");

/* The smallest power of two >= v, for 1 <= v <= 2^30. */
static uint32_t round_up_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

int hb_envq_init(hb_envq_t *q, unsigned nbuckets, uint32_t capacity)
{
    q->nbuckets = 0;
    q->capacity = 0;
    q->next = 0;
    q->buckets = NULL;
    if (nbuckets == 0 || capacity == 0 || capacity > HB_ENVQ_MAX_CAPACITY)
        return HB_EINVAL;

    uint32_t cap = round_up_pow2(capacity);
    /* Sizes that do not fit a size_t (only possible where size_t is 32 bits). */
    if (sizeof(struct hb_envq_bucket) > SIZE_MAX / nbuckets ||
        sizeof(hb_envelope_t) > SIZE_MAX / cap)
        return HB_ENOMEM;

    struct hb_envq_bucket *b =
        aligned_alloc(HB_ENVQ_CACHE_LINE, (size_t)nbuckets * sizeof(struct hb_envq_bucket));
    if (b == NULL)
        return HB_ENOMEM;

    /* Slots start on a cache line of their own, so two buckets' rings never share one. */
    size_t slot_bytes = (size_t)cap * sizeof(hb_envelope_t);
    size_t alloc_bytes = (slot_bytes + HB_ENVQ_CACHE_LINE - 1) & ~(size_t)(HB_ENVQ_CACHE_LINE - 1);
    if (alloc_bytes < slot_bytes) {
        free(b);
        return HB_ENOMEM;
    }
    for (unsigned i = 0; i < nbuckets; i++) {
        b[i].slots = aligned_alloc(HB_ENVQ_CACHE_LINE, alloc_bytes);
        if (b[i].slots == NULL) {
            while (i > 0)
                free(b[--i].slots);
            free(b);
            return HB_ENOMEM;
        }
        b[i].mask = cap - 1;
        atomic_init(&b[i].tail, 0);
        b[i].head_seen = 0;
        atomic_init(&b[i].head, 0);
        b[i].tail_seen = 0;
    }

    q->nbuckets = nbuckets;
    q->capacity = cap;
    q->buckets = b;
    return 0;
}

void hb_envq_close(hb_envq_t *q)
{
    if (q->buckets != NULL) {
        for (unsigned i = 0; i < q->nbuckets; i++)
            free(q->buckets[i].slots);
        free(q->buckets);
    }
    q->buckets = NULL;
    q->nbuckets = 0;
    q->capacity = 0;
    q->next = 0;
}

/* Producer side: append e unless the ring is full. */
static int bucket_push(struct hb_envq_bucket *b, hb_envelope_t e)
{
    uint32_t tail = atomic_load_explicit(&b->tail, memory_order_relaxed);
    if (tail - b->head_seen > b->mask) {
        /* Looks full: refresh. Acquire so the consumer's reads of the slots it freed are done
         * before we overwrite them. */
        b->head_seen = atomic_load_explicit(&b->head, memory_order_acquire);
        if (tail - b->head_seen > b->mask)
            return HB_EFULL;
    }
    b->slots[tail & b->mask] = e;
    /* Release: the slot's contents become visible no later than the new tail. */
    atomic_store_explicit(&b->tail, tail + 1, memory_order_release);
    return 0;
}

/* Consumer side: how many envelopes can be read starting at head, refreshing the cached tail
 * only when the cache says fewer than want. */
static uint32_t bucket_available(struct hb_envq_bucket *b, uint32_t head, uint32_t want)
{
    uint32_t avail = b->tail_seen - head;
    if (avail < want) {
        /* Acquire pairs with the producer's release of tail: the slots below it are written. */
        b->tail_seen = atomic_load_explicit(&b->tail, memory_order_acquire);
        avail = b->tail_seen - head;
    }
    return avail;
}

int hb_envq_push_to(hb_envq_t *q, unsigned bucket, hb_envelope_t e)
{
    if (bucket >= q->nbuckets)
        return HB_EINVAL;
    return bucket_push(&q->buckets[bucket], e);
}

int hb_envq_push(hb_envq_t *q, hb_envelope_t e, unsigned *bucket)
{
    unsigned n = q->nbuckets;
    unsigned b = q->next;
    for (unsigned tried = 0; tried < n; tried++) {
        if (bucket_push(&q->buckets[b], e) == 0) {
            q->next = b + 1 == n ? 0 : b + 1;
            if (bucket != NULL)
                *bucket = b;
            return 0;
        }
        b = b + 1 == n ? 0 : b + 1;
    }
    return HB_EFULL;
}

int hb_envq_pop(hb_envq_t *q, unsigned bucket, hb_envelope_t *e)
{
    if (bucket >= q->nbuckets)
        return HB_EINVAL;
    struct hb_envq_bucket *b = &q->buckets[bucket];
    uint32_t head = atomic_load_explicit(&b->head, memory_order_relaxed);
    if (bucket_available(b, head, 1) == 0)
        return HB_EEMPTY;
    *e = b->slots[head & b->mask];
    /* Release: our read of the slot is done before the producer may see it free. */
    atomic_store_explicit(&b->head, head + 1, memory_order_release);
    return 0;
}

size_t hb_envq_pop_batch(hb_envq_t *q, unsigned bucket, hb_envelope_t *out, size_t max)
{
    if (bucket >= q->nbuckets || max == 0)
        return 0;
    struct hb_envq_bucket *b = &q->buckets[bucket];
    uint32_t head = atomic_load_explicit(&b->head, memory_order_relaxed);
    uint32_t want = max > b->mask ? b->mask + 1 : (uint32_t)max;
    uint32_t n = bucket_available(b, head, want);
    if (n > want)
        n = want;
    for (uint32_t i = 0; i < n; i++)
        out[i] = b->slots[(head + i) & b->mask];
    if (n > 0)
        atomic_store_explicit(&b->head, head + n, memory_order_release);
    return n;
}

size_t hb_envq_size(const hb_envq_t *q, unsigned bucket)
{
    if (bucket >= q->nbuckets)
        return 0;
    struct hb_envq_bucket *b = &q->buckets[bucket];
    /* head first: the tail read after it is never behind it, so the difference cannot wrap. It
     * may still exceed the capacity if both sides ran in between: clamp. */
    uint32_t head = atomic_load_explicit(&b->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&b->tail, memory_order_acquire);
    uint32_t n = tail - head;
    return n > b->mask ? (size_t)b->mask + 1 : n;
}

uint32_t hb_envq_popped(const hb_envq_t *q, unsigned bucket)
{
    if (bucket >= q->nbuckets)
        return 0;
    return atomic_load_explicit(&q->buckets[bucket].head, memory_order_acquire);
}
