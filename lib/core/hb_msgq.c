/* The SET receive queue: a bounded lock-free MPMC ring of fixed-size messages, each cell
 * guarded by its own sequence number (Dmitry Vyukov's bounded queue design), and an ordered
 * overflow list past it for a single consumer. */
#include "hongbao/msgq.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HB_MSGQ_CACHELINE     64
#define HB_MSGQ_MAX_CAPACITY  (UINT32_C(1) << 24)
#define HB_MSGQ_MAX_ELEM_SIZE 4096
/* Message bytes start after the cell's sequence number, at this offset. */
#define HB_MSGQ_DATA_OFFSET 8

/* A cell is HB_MSGQ_DATA_OFFSET bytes holding its sequence number, then elem_size message bytes,
 * padded to a multiple of 8. Its sequence number says what the cell is waiting for: seq == pos
 * means empty and ready for the producer of position pos; seq == pos + 1 means full and ready
 * for the consumer of position pos, who hands it to the producer of pos + capacity. */
struct hb_msgq_ring {
    /* Read-only after init, shared by producers and consumers. */
    size_t mask;
    size_t stride;
    size_t elem_size;
    unsigned char *cells;
    /* The next position to enqueue, on its own cache line. */
    alignas(HB_MSGQ_CACHELINE) atomic_size_t enq_pos;
    /* The next position to dequeue, on its own cache line. */
    alignas(HB_MSGQ_CACHELINE) atomic_size_t deq_pos;
    /* The overflow: messages posted while the ring was full or while earlier ones waited here,
     * oldest first, under a spin lock; ovf_count > 0 tells posters to queue behind them. */
    alignas(HB_MSGQ_CACHELINE) atomic_flag ovf_lock;
    atomic_size_t ovf_count;
    struct hb_msgq_ovf *ovf_head, *ovf_tail;
    /* Keeps the cells, which follow the struct, off the dequeue position's line. */
    alignas(HB_MSGQ_CACHELINE) unsigned char end_[1];
};

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

static atomic_size_t *cell_seq(const struct hb_msgq_ring *ring, size_t pos)
{
    return (atomic_size_t *)(void *)(ring->cells + (pos & ring->mask) * ring->stride);
}

static unsigned char *cell_data(const struct hb_msgq_ring *ring, size_t pos)
{
    return ring->cells + (pos & ring->mask) * ring->stride + HB_MSGQ_DATA_OFFSET;
}

int hb_msgq_init(hb_msgq_t *q, uint32_t capacity, size_t elem_size)
{
    if (q == NULL || capacity == 0 || capacity > HB_MSGQ_MAX_CAPACITY || elem_size == 0 ||
        elem_size > HB_MSGQ_MAX_ELEM_SIZE)
        return HB_EINVAL;

    /* The sequence numbers need two cells at least: with one, a full cell (seq == pos + 1)
     * would look empty to the producer of pos + 1. */
    uint32_t cap = 2;
    while (cap < capacity)
        cap <<= 1;

    size_t stride = round_up(HB_MSGQ_DATA_OFFSET + elem_size, 8);
    size_t header = offsetof(struct hb_msgq_ring, end_);
    if ((SIZE_MAX - header - HB_MSGQ_CACHELINE) / stride < cap)
        return HB_ENOMEM;
    size_t total = round_up(header + (size_t)cap * stride, HB_MSGQ_CACHELINE);

    struct hb_msgq_ring *ring = aligned_alloc(HB_MSGQ_CACHELINE, total);
    if (ring == NULL)
        return HB_ENOMEM;
    ring->mask = (size_t)cap - 1;
    ring->stride = stride;
    ring->elem_size = elem_size;
    ring->cells = (unsigned char *)ring + header;
    atomic_init(&ring->enq_pos, 0);
    atomic_init(&ring->deq_pos, 0);
    atomic_flag_clear(&ring->ovf_lock);
    atomic_init(&ring->ovf_count, 0);
    ring->ovf_head = ring->ovf_tail = NULL;
    for (size_t i = 0; i < cap; i++)
        atomic_init(cell_seq(ring, i), i);

    q->capacity = cap;
    q->elem_size = elem_size;
    q->ring = ring;
    q->ovf_taken = NULL;
    return 0;
}

/* One overflowed message. */
struct hb_msgq_ovf {
    struct hb_msgq_ovf *next;
    alignas(8) unsigned char data[];
};

static void free_chain(struct hb_msgq_ovf *o)
{
    while (o != NULL) {
        struct hb_msgq_ovf *next = o->next;
        free(o);
        o = next;
    }
}

void hb_msgq_close(hb_msgq_t *q)
{
    if (q == NULL || q->ring == NULL)
        return;
    free_chain(q->ovf_taken);
    free_chain(q->ring->ovf_head);
    q->ovf_taken = NULL;
    free(q->ring);
    q->ring = NULL;
}

static void ovf_lock(struct hb_msgq_ring *ring)
{
    while (atomic_flag_test_and_set_explicit(&ring->ovf_lock, memory_order_acquire))
        ;
}

static void ovf_unlock(struct hb_msgq_ring *ring)
{
    atomic_flag_clear_explicit(&ring->ovf_lock, memory_order_release);
}

int hb_msgq_push(hb_msgq_t *q, const void *msg)
{
    if (q == NULL || q->ring == NULL || msg == NULL)
        return HB_EINVAL;
    struct hb_msgq_ring *ring = q->ring;
    size_t pos = atomic_load_explicit(&ring->enq_pos, memory_order_relaxed);
    atomic_size_t *seq;
    for (;;) {
        seq = cell_seq(ring, pos);
        size_t s = atomic_load_explicit(seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(s - pos);
        if (dif == 0) {
            /* The cell is free for pos: claim pos, or learn the new position on failure. */
            if (atomic_compare_exchange_weak_explicit(&ring->enq_pos, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            /* The cell still holds the message of pos - capacity: the ring is full. */
            return HB_EFULL;
        } else {
            /* Another producer took pos already. */
            pos = atomic_load_explicit(&ring->enq_pos, memory_order_relaxed);
        }
    }
    memcpy(cell_data(ring, pos), msg, ring->elem_size);
    atomic_store_explicit(seq, pos + 1, memory_order_release);
    return 0;
}

int hb_msgq_pop(hb_msgq_t *q, void *msg)
{
    if (q == NULL || q->ring == NULL || msg == NULL)
        return HB_EINVAL;
    struct hb_msgq_ring *ring = q->ring;
    size_t pos = atomic_load_explicit(&ring->deq_pos, memory_order_relaxed);
    atomic_size_t *seq;
    for (;;) {
        seq = cell_seq(ring, pos);
        size_t s = atomic_load_explicit(seq, memory_order_acquire);
        intptr_t dif = (intptr_t)(s - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&ring->deq_pos, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            /* The producer of pos has not finished (or not started): nothing to take. */
            return HB_EEMPTY;
        } else {
            /* Another consumer took pos already. */
            pos = atomic_load_explicit(&ring->deq_pos, memory_order_relaxed);
        }
    }
    memcpy(msg, cell_data(ring, pos), ring->elem_size);
    atomic_store_explicit(seq, pos + ring->mask + 1, memory_order_release);
    return 0;
}

size_t hb_msgq_size(const hb_msgq_t *q)
{
    if (q == NULL || q->ring == NULL)
        return 0;
    struct hb_msgq_ring *ring = q->ring;
    /* Dequeue first: the enqueue position it is compared with is then the newer one. Consumers
     * moving between the loads can still make the difference exceed the capacity, and with no
     * ordering between the two counters it is clamped at 0 too. */
    size_t deq = atomic_load_explicit(&ring->deq_pos, memory_order_acquire);
    size_t enq = atomic_load_explicit(&ring->enq_pos, memory_order_acquire);
    intptr_t dif = (intptr_t)(enq - deq);
    size_t n = dif < 0 ? 0 : (size_t)dif;
    return n > (size_t)q->capacity ? (size_t)q->capacity : n;
}

/* Why hb_msgq_post keeps order. A poster takes the ring only while the overflow is empty (checked
 * without the lock first, then under it); once one message waits in the overflow, every later
 * post joins it there. The consumer detaches the overflow only under the lock and only when no
 * ring position is claimed (enq_pos == deq_pos): every ring message whose push finished before
 * the detach has then been taken, and a push still to claim a position began before the
 * overflowed messages were posted or after the detach, so it is concurrent with them or newer.
 * The detached list is taken before the ring again. */
int hb_msgq_post(hb_msgq_t *q, const void *msg)
{
    if (q == NULL || q->ring == NULL || msg == NULL)
        return HB_EINVAL;
    struct hb_msgq_ring *ring = q->ring;
    if (atomic_load_explicit(&ring->ovf_count, memory_order_acquire) == 0 &&
        hb_msgq_push(q, msg) == 0)
        return 0;
    struct hb_msgq_ovf *o = malloc(sizeof *o + ring->elem_size);
    if (o == NULL)
        return HB_ENOMEM;
    o->next = NULL;
    memcpy(o->data, msg, ring->elem_size);
    ovf_lock(ring);
    if (atomic_load_explicit(&ring->ovf_count, memory_order_relaxed) == 0 &&
        hb_msgq_push(q, msg) == 0) {
        ovf_unlock(ring);
        free(o);
        return 0;
    }
    if (ring->ovf_tail != NULL)
        ring->ovf_tail->next = o;
    else
        ring->ovf_head = o;
    ring->ovf_tail = o;
    atomic_fetch_add_explicit(&ring->ovf_count, 1, memory_order_release);
    ovf_unlock(ring);
    return 0;
}

int hb_msgq_take(hb_msgq_t *q, void *msg)
{
    if (q == NULL || q->ring == NULL || msg == NULL)
        return HB_EINVAL;
    struct hb_msgq_ring *ring = q->ring;
    for (;;) {
        struct hb_msgq_ovf *o = q->ovf_taken;
        if (o != NULL) {
            q->ovf_taken = o->next;
            memcpy(msg, o->data, ring->elem_size);
            free(o);
            return 0;
        }
        if (hb_msgq_pop(q, msg) == 0)
            return 0;
        if (atomic_load_explicit(&ring->ovf_count, memory_order_acquire) == 0)
            return HB_EEMPTY;
        ovf_lock(ring);
        bool ring_empty = atomic_load_explicit(&ring->enq_pos, memory_order_acquire) ==
                          atomic_load_explicit(&ring->deq_pos, memory_order_relaxed);
        if (!ring_empty) {
            /* A push is finishing, or messages arrived: take those first. */
            ovf_unlock(ring);
            if (hb_msgq_pop(q, msg) == 0)
                return 0;
            return HB_EEMPTY; /* its poster's wake-up brings us back */
        }
        q->ovf_taken = ring->ovf_head;
        ring->ovf_head = ring->ovf_tail = NULL;
        atomic_store_explicit(&ring->ovf_count, 0, memory_order_release);
        ovf_unlock(ring);
    }
}

size_t hb_msgq_overflow(const hb_msgq_t *q)
{
    if (q == NULL || q->ring == NULL)
        return 0;
    return atomic_load_explicit(&q->ring->ovf_count, memory_order_relaxed);
}
