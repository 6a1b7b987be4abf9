/* A multi-producer queue of fixed-size messages: the receive queue of a SET, into which any thread
 * pushes and the SET's own thread pops. A bounded lock-free ring, and for a single consumer an
 * ordered overflow past it (hb_msgq_post / hb_msgq_take), so that a message is never refused and
 * never overtakes one that was posted before it. */
#ifndef HONGBAO_MSGQ_H
#define HONGBAO_MSGQ_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Any number of threads may push concurrently and any number may pop concurrently (a cell
 * sequence-number ring, C11 atomics); the SET runtime uses one consumer. Messages are copied in
 * and out (elem_size bytes each). Caller-owned struct; the ring is allocated by init and freed
 * by close. */
typedef struct hb_msgq {
    /* public */
    void *data;
    /* read-only */
    uint32_t capacity; /* a power of two */
    size_t elem_size;
    /* private */
    struct hb_msgq_ring *ring;
    struct hb_msgq_ovf *ovf_taken; /* the consumer's detached overflow, oldest first */
} hb_msgq_t;

/* Set up a queue of at least capacity messages of elem_size bytes: capacity is rounded up to a
 * power of two, and to 2 at least (the ring's sequence numbers need two cells); q->capacity
 * holds the result. Allocates one block, freed by hb_msgq_close.
 * Returns 0, HB_EINVAL (q NULL, capacity 0 or above 2^24, elem_size 0 or above 4096), HB_ENOMEM.
 * On error q is left unchanged. */
HB_EXTERN int hb_msgq_init(hb_msgq_t *q, uint32_t capacity, size_t elem_size);

/* Free the ring and the overflow; messages still queued are dropped (call hb_msgq_take until
 * HB_EEMPTY first to see them, e.g. to free what they point to). No push, pop or size may run
 * concurrently or afterwards (until the next init). Closing a closed queue does nothing. */
HB_EXTERN void hb_msgq_close(hb_msgq_t *q);

/* Copy elem_size bytes from msg into the queue. Any thread. Returns 0, or HB_EFULL when the queue
 * holds capacity messages (nothing was queued; a message a consumer is copying out at that moment
 * still counts), or HB_EINVAL (q, its ring or msg NULL). Wait-free when not contended, lock-free
 * always; never allocates. The message is visible to pop once push returns, so push before the
 * uv_async_send that wakes the consumer. */
HB_EXTERN int hb_msgq_push(hb_msgq_t *q, const void *msg);

/* Copy the oldest message into msg (elem_size bytes). Any thread. Returns 0, HB_EEMPTY, or
 * HB_EINVAL (q, its ring or msg NULL). Messages leave in the order their pushes claimed their
 * places, so one producer's messages stay in order. HB_EEMPTY also when the oldest place was
 * claimed by a push that has not finished copying; that push's own wake-up brings the consumer
 * back, so draining until HB_EEMPTY on each wake-up loses nothing. */
HB_EXTERN int hb_msgq_pop(hb_msgq_t *q, void *msg);

/* Post a message for the queue's single consumer (hb_msgq_take), from any thread, in order: when
 * the ring is full, or while earlier messages wait past it, the message is copied into an
 * overflow list (one allocation, taken under a short spin lock), so posting never fails for
 * lack of room. Order: a message whose post finished before another post began is taken first,
 * whichever threads posted them, ring or overflow; so a message posted after seeing the effect
 * of an earlier one (a claim sent after the notice of the envelope it names) cannot overtake it.
 * Returns 0, HB_ENOMEM (nothing queued), HB_EINVAL (q, its ring or msg NULL). Do not mix with
 * hb_msgq_push on the same queue. */
HB_EXTERN int hb_msgq_post(hb_msgq_t *q, const void *msg);

/* The single consumer's side of hb_msgq_post: copy the oldest message into msg. Returns 0,
 * HB_EEMPTY (nothing to take now; as for hb_msgq_pop, a post in progress brings its own wake-up),
 * HB_EINVAL. Only one thread may take; do not mix with hb_msgq_pop. */
HB_EXTERN int hb_msgq_take(hb_msgq_t *q, void *msg);

/* Messages waiting past the ring in the overflow (a snapshot; any thread). */
HB_EXTERN size_t hb_msgq_overflow(const hb_msgq_t *q);

/* Messages queued now in the ring (a snapshot, 0..capacity, counting pushes and pops in progress).
 * Any thread. 0 for a closed queue. */
HB_EXTERN size_t hb_msgq_size(const hb_msgq_t *q);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_MSGQ_H */
