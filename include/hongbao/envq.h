/* Bucketed envelope queue: one bounded bucket per SET, fed round-robin by a generator, each
 * popped by its own SET only, with no lock on either path. */
#ifndef HONGBAO_ENVQ_H
#define HONGBAO_ENVQ_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/envelope.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Each bucket is a single-producer single-consumer ring (C11 atomics): at any moment at most one
 * thread may push (hb_envq_push / hb_envq_push_to, on any bucket) and, per bucket, at most one
 * thread may pop from it. Different buckets' consumers run in parallel without sharing a cache
 * line. Caller-owned struct; the rings are allocated by hb_envq_init and freed by hb_envq_close. */
typedef struct hb_envq {
    /* public */
    void *data;
    /* read-only */
    unsigned nbuckets;
    uint32_t capacity; /* per bucket, a power of two */
    /* private */
    unsigned next; /* the bucket the next round-robin push tries first */
    struct hb_envq_bucket *buckets;
} hb_envq_t;

/* Set up nbuckets buckets of at least capacity envelopes each (rounded up to a power of two,
 * stored in q->capacity); every bucket starts empty and q->next at 0. q->data is not touched.
 * Returns 0, HB_EINVAL for nbuckets or capacity 0 or capacity above 2^30, HB_ENOMEM. On error
 * nothing is allocated and q holds no bucket (hb_envq_close on it is harmless). */
HB_EXTERN int hb_envq_init(hb_envq_t *q, unsigned nbuckets, uint32_t capacity);

/* Free the rings. No push or pop may run concurrently or afterwards. Envelopes still queued are
 * dropped: count them first with hb_envq_size if they matter. Leaves q with no bucket, so a
 * second close does nothing. */
HB_EXTERN void hb_envq_close(hb_envq_t *q);

/* Push e (copied) to the next bucket in round-robin order (q->next); when that bucket is full, to
 * the following non-full one, and q->next moves just past the bucket used. Stores the bucket used
 * in *bucket if not NULL. Returns 0, or HB_EFULL when every bucket is full: then e was not queued
 * (the generator counts it) and neither q->next nor *bucket changed. Producer thread only. */
HB_EXTERN int hb_envq_push(hb_envq_t *q, hb_envelope_t e, unsigned *bucket);

/* Push e (copied) to one given bucket; q->next does not move. Returns 0, HB_EFULL, or HB_EINVAL
 * for a bucket out of range. Producer thread only. */
HB_EXTERN int hb_envq_push_to(hb_envq_t *q, unsigned bucket, hb_envelope_t e);

/* Pop the oldest envelope of bucket into *e. Returns 0, HB_EEMPTY, or HB_EINVAL for a bucket out
 * of range; on error *e is not written. That bucket's consumer thread only. */
HB_EXTERN int hb_envq_pop(hb_envq_t *q, unsigned bucket, hb_envelope_t *e);

/* Pop up to max envelopes of bucket, oldest first, into out[] (caller-owned, room for max);
 * returns how many, never more than q->capacity: 0 when the bucket is empty, max is 0 or the
 * bucket is out of range. Nothing past out[count - 1] is written. That bucket's consumer only. */
HB_EXTERN size_t hb_envq_pop_batch(hb_envq_t *q, unsigned bucket, hb_envelope_t *out, size_t max);

/* Envelopes queued in bucket right now (a snapshot, exact when neither side runs; never above
 * q->capacity), or 0 for a bucket out of range. Any thread. */
HB_EXTERN size_t hb_envq_size(const hb_envq_t *q, unsigned bucket);

/* How many envelopes have been popped from bucket since hb_envq_init, modulo 2^32 (the consumer's
 * position; 0 for a bucket out of range). A producer that remembers what it pushed, in order,
 * learns from two readings which of its envelopes were taken between them: the difference
 * (mod 2^32) is how many, and they are the oldest it had not yet seen taken. Any thread. */
HB_EXTERN uint32_t hb_envq_popped(const hb_envq_t *q, unsigned bucket);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_ENVQ_H */
