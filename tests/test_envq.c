/* Unit tests for the envq module: argument errors, ring order and bounds, round-robin placement,
 * batches, sizes, and a multi-threaded one-producer many-consumer stress run. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/envq.h"

static hb_envelope_t env(uint32_t id, uint32_t amount)
{
    hb_envelope_t e = {id, amount};
    return e;
}

/* Pop one envelope from bucket and check it is (id, amount). */
static void expect_pop(hb_envq_t *q, unsigned bucket, uint32_t id, uint32_t amount)
{
    hb_envelope_t e = env(0xdeadbeef, 0xdeadbeef);
    ck_assert_int_eq(hb_envq_pop(q, bucket, &e), 0);
    ck_assert_uint_eq(e.id, id);
    ck_assert_uint_eq(e.amount, amount);
}

START_TEST(test_init_rejects_bad_arguments)
{
    hb_envq_t q;
    memset(&q, 0xa5, sizeof q);
    q.data = &q;
    ck_assert_int_eq(hb_envq_init(&q, 0, 16), HB_EINVAL);
    ck_assert_ptr_eq(q.data, &q);
    /* A failed init leaves nothing to free and a queue every call treats as having no bucket. */
    ck_assert_ptr_null(q.buckets);
    ck_assert_uint_eq(q.nbuckets, 0);
    ck_assert_uint_eq(hb_envq_size(&q, 0), 0);
    ck_assert_int_eq(hb_envq_push(&q, env(1, 1), NULL), HB_EFULL);
    hb_envq_close(&q);

    ck_assert_int_eq(hb_envq_init(&q, 4, 0), HB_EINVAL);
    ck_assert_ptr_null(q.buckets);
    ck_assert_int_eq(hb_envq_init(&q, 4, (UINT32_C(1) << 30) + 1), HB_EINVAL);
    ck_assert_int_eq(hb_envq_init(&q, 4, UINT32_MAX), HB_EINVAL);
    ck_assert_ptr_null(q.buckets);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_init_rounds_capacity_to_power_of_two)
{
    static const struct {
        uint32_t asked, got;
    } cases[] = {{1, 1},       {2, 2},       {3, 4},
                 {4, 4},       {5, 8},       {1000, 1024},
                 {1024, 1024}, {1025, 2048}, {(UINT32_C(1) << 16) + 1, UINT32_C(1) << 17}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hb_envq_t q;
        q.data = &q;
        ck_assert_int_eq(hb_envq_init(&q, 2, cases[i].asked), 0);
        ck_assert_ptr_eq(q.data, &q);
        ck_assert_uint_eq(q.capacity, cases[i].got);
        ck_assert_uint_eq(q.nbuckets, 2);
        ck_assert_uint_eq(q.next, 0);
        /* The rounded capacity is what a bucket really holds. */
        for (uint32_t k = 0; k < cases[i].got; k++)
            ck_assert_int_eq(hb_envq_push_to(&q, 1, env(k, k)), 0);
        ck_assert_int_eq(hb_envq_push_to(&q, 1, env(0, 0)), HB_EFULL);
        ck_assert_uint_eq(hb_envq_size(&q, 1), cases[i].got);
        ck_assert_uint_eq(hb_envq_size(&q, 0), 0);
        hb_envq_close(&q);
        ck_assert_ptr_null(q.buckets);
        ck_assert_uint_eq(q.nbuckets, 0);
    }
}
END_TEST

START_TEST(test_close_twice_is_harmless)
{
    hb_envq_t q;
    ck_assert_int_eq(hb_envq_init(&q, 3, 8), 0);
    ck_assert_int_eq(hb_envq_push(&q, env(1, 2), NULL), 0);
    hb_envq_close(&q); /* the queued envelope is dropped, not leaked (ASan checks) */
    hb_envq_close(&q);
    ck_assert_ptr_null(q.buckets);
}
END_TEST

START_TEST(test_bucket_out_of_range)
{
    hb_envq_t q;
    hb_envelope_t out[4];
    ck_assert_int_eq(hb_envq_init(&q, 2, 4), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 2, env(1, 1)), HB_EINVAL);
    ck_assert_int_eq(hb_envq_push_to(&q, UINT32_MAX, env(1, 1)), HB_EINVAL);
    hb_envelope_t e = env(7, 7);
    ck_assert_int_eq(hb_envq_pop(&q, 2, &e), HB_EINVAL);
    ck_assert_uint_eq(e.id, 7);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 2, out, 4), 0);
    ck_assert_uint_eq(hb_envq_size(&q, 2), 0);
    /* Nothing was queued anywhere by the rejected calls. */
    ck_assert_uint_eq(hb_envq_size(&q, 0), 0);
    ck_assert_uint_eq(hb_envq_size(&q, 1), 0);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_fifo_within_bucket)
{
    hb_envq_t q;
    ck_assert_int_eq(hb_envq_init(&q, 2, 8), 0);
    for (uint32_t i = 0; i < 8; i++)
        ck_assert_int_eq(hb_envq_push_to(&q, 0, env(100 + i, 10 + i)), 0);
    for (uint32_t i = 0; i < 8; i++)
        expect_pop(&q, 0, 100 + i, 10 + i);

    /* Interleaved pushes and pops run the indices round the ring many times; order holds
     * across every wrap of the slot index. */
    uint32_t pushed = 0, popped = 0;
    for (int round = 0; round < 1000; round++) {
        int k = 1 + round % 8;
        for (int i = 0; i < k; i++, pushed++)
            ck_assert_int_eq(hb_envq_push_to(&q, 0, env(pushed, pushed * 3)), 0);
        ck_assert_uint_eq(hb_envq_size(&q, 0), (size_t)(pushed - popped));
        for (int i = 0; i < k; i++, popped++)
            expect_pop(&q, 0, popped, popped * 3);
    }
    ck_assert_uint_eq(hb_envq_size(&q, 0), 0);
    ck_assert_uint_eq(hb_envq_size(&q, 1), 0);
    hb_envq_close(&q);
}
END_TEST

/* hb_envq_popped: the consumer's position, per bucket, counted by pop and pop_batch alike; a
 * producer's two readings tell it which of its envelopes were taken. */
START_TEST(test_popped_tells_the_producer_what_was_taken)
{
    hb_envq_t q;
    hb_envelope_t out[4];
    ck_assert_int_eq(hb_envq_init(&q, 2, 8), 0);
    ck_assert_uint_eq(hb_envq_popped(&q, 0), 0);
    ck_assert_uint_eq(hb_envq_popped(&q, 7), 0); /* out of range */
    for (uint32_t i = 0; i < 6; i++)
        ck_assert_int_eq(hb_envq_push_to(&q, 0, env(100 + i, 1)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(200, 1)), 0);
    uint32_t seen = hb_envq_popped(&q, 0);
    expect_pop(&q, 0, 100, 1);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 3), 3);
    /* four taken: the producer's first four, 100..103 */
    ck_assert_uint_eq(hb_envq_popped(&q, 0) - seen, 4);
    ck_assert_uint_eq(hb_envq_popped(&q, 1), 0);
    /* across the ring's wrap many times */
    uint32_t pushed = 6, popped = 4;
    for (int round = 0; round < 1000; round++) {
        for (int i = 0; i < 3; i++, pushed++)
            ck_assert_int_eq(hb_envq_push_to(&q, 0, env(pushed, 1)), 0);
        for (int i = 0; i < 3; i++, popped++)
            ck_assert_int_eq(hb_envq_pop(&q, 0, &out[0]), 0);
        ck_assert_uint_eq(hb_envq_popped(&q, 0), popped);
    }
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_push_to_full_bucket)
{
    hb_envq_t q;
    ck_assert_int_eq(hb_envq_init(&q, 2, 4), 0);
    for (uint32_t i = 0; i < 4; i++)
        ck_assert_int_eq(hb_envq_push_to(&q, 1, env(i, i)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(99, 99)), HB_EFULL);
    ck_assert_uint_eq(hb_envq_size(&q, 1), 4);
    /* push_to does not spill over nor move the round-robin cursor. */
    ck_assert_uint_eq(hb_envq_size(&q, 0), 0);
    ck_assert_uint_eq(q.next, 0);
    /* One pop makes room for exactly one more. */
    expect_pop(&q, 1, 0, 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(4, 4)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(5, 5)), HB_EFULL);
    for (uint32_t i = 1; i <= 4; i++)
        expect_pop(&q, 1, i, i);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_round_robin_distribution)
{
    enum { N = 5 };
    hb_envq_t q;
    ck_assert_int_eq(hb_envq_init(&q, N, 16), 0);
    for (uint32_t i = 0; i < 10 * N; i++) {
        unsigned b = 12345;
        ck_assert_int_eq(hb_envq_push(&q, env(i, 1000 + i), &b), 0);
        ck_assert_uint_eq(b, i % N);
        ck_assert_uint_eq(q.next, (i + 1) % N);
    }
    for (unsigned b = 0; b < N; b++) {
        ck_assert_uint_eq(hb_envq_size(&q, b), 10);
        /* Bucket b got envelopes b, b+N, b+2N, ... in that order. */
        for (uint32_t k = 0; k < 10; k++)
            expect_pop(&q, b, b + k * N, 1000 + b + k * N);
        hb_envelope_t e;
        ck_assert_int_eq(hb_envq_pop(&q, b, &e), HB_EEMPTY);
    }
    /* A NULL bucket pointer is allowed. */
    ck_assert_int_eq(hb_envq_push(&q, env(1, 1), NULL), 0);
    ck_assert_uint_eq(hb_envq_size(&q, 0), 1);
    ck_assert_uint_eq(q.next, 1);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_round_robin_skips_full_bucket)
{
    hb_envq_t q;
    unsigned b;
    ck_assert_int_eq(hb_envq_init(&q, 3, 2), 0);
    /* Fill bucket 1. */
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(10, 1)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(11, 1)), 0);

    ck_assert_int_eq(hb_envq_push(&q, env(1, 1), &b), 0);
    ck_assert_uint_eq(b, 0);
    ck_assert_uint_eq(q.next, 1);
    /* The cursor points at the full bucket 1: the push lands in 2 and the cursor moves past it. */
    ck_assert_int_eq(hb_envq_push(&q, env(2, 1), &b), 0);
    ck_assert_uint_eq(b, 2);
    ck_assert_uint_eq(q.next, 0);
    ck_assert_int_eq(hb_envq_push(&q, env(3, 1), &b), 0);
    ck_assert_uint_eq(b, 0);
    /* Bucket 0 is now full too; from cursor 1 the only room left is in 2. */
    ck_assert_int_eq(hb_envq_push(&q, env(4, 1), &b), 0);
    ck_assert_uint_eq(b, 2);
    ck_assert_uint_eq(q.next, 0);

    expect_pop(&q, 0, 1, 1);
    expect_pop(&q, 0, 3, 1);
    expect_pop(&q, 1, 10, 1);
    expect_pop(&q, 1, 11, 1);
    expect_pop(&q, 2, 2, 1);
    expect_pop(&q, 2, 4, 1);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_all_full_changes_nothing)
{
    hb_envq_t q;
    ck_assert_int_eq(hb_envq_init(&q, 3, 2), 0);
    for (uint32_t i = 0; i < 5; i++)
        ck_assert_int_eq(hb_envq_push(&q, env(i, 50 + i), NULL), 0);
    /* One slot left, in bucket 2, where the cursor is: this push fills the last one. */
    ck_assert_uint_eq(q.next, 2);
    ck_assert_int_eq(hb_envq_push(&q, env(5, 55), NULL), 0);
    ck_assert_uint_eq(q.next, 0);

    for (int attempt = 0; attempt < 3; attempt++) {
        unsigned b = 777;
        ck_assert_int_eq(hb_envq_push(&q, env(99, 99), &b), HB_EFULL);
        ck_assert_uint_eq(b, 777);
        ck_assert_uint_eq(q.next, 0);
        for (unsigned k = 0; k < 3; k++)
            ck_assert_uint_eq(hb_envq_size(&q, k), 2);
    }
    /* Contents are intact and in order. */
    for (unsigned k = 0; k < 3; k++) {
        expect_pop(&q, k, k, 50 + k);
        expect_pop(&q, k, k + 3, 53 + k);
    }
    /* Refill all but one slot of bucket 1: from cursor 0 the push skips the full bucket 0 and
     * takes that slot, then all are full again. */
    ck_assert_int_eq(hb_envq_push_to(&q, 0, env(200, 1)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 0, env(201, 1)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 2, env(202, 1)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 2, env(203, 1)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(204, 1)), 0);
    unsigned b = 777;
    ck_assert_int_eq(hb_envq_push(&q, env(300, 1), &b), 0);
    ck_assert_uint_eq(b, 1);
    ck_assert_uint_eq(q.next, 2);
    ck_assert_int_eq(hb_envq_push(&q, env(301, 1), &b), HB_EFULL);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_pop_empty)
{
    hb_envq_t q;
    ck_assert_int_eq(hb_envq_init(&q, 2, 4), 0);
    hb_envelope_t e = env(42, 43);
    ck_assert_int_eq(hb_envq_pop(&q, 0, &e), HB_EEMPTY);
    ck_assert_uint_eq(e.id, 42);
    ck_assert_uint_eq(e.amount, 43);
    ck_assert_int_eq(hb_envq_push_to(&q, 1, env(1, 2)), 0);
    /* Another bucket's envelope is not ours. */
    ck_assert_int_eq(hb_envq_pop(&q, 0, &e), HB_EEMPTY);
    expect_pop(&q, 1, 1, 2);
    ck_assert_int_eq(hb_envq_pop(&q, 1, &e), HB_EEMPTY);
    ck_assert_uint_eq(e.id, 42);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_pop_batch)
{
    hb_envq_t q;
    hb_envelope_t out[16];
    ck_assert_int_eq(hb_envq_init(&q, 2, 8), 0);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 16), 0);

    for (uint32_t i = 0; i < 5; i++)
        ck_assert_int_eq(hb_envq_push_to(&q, 0, env(i, 10 * i)), 0);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 0), 0);
    ck_assert_uint_eq(hb_envq_size(&q, 0), 5);

    memset(out, 0xff, sizeof out);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 3), 3);
    for (uint32_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(out[i].id, i);
        ck_assert_uint_eq(out[i].amount, 10 * i);
    }
    ck_assert_uint_eq(out[3].id, 0xffffffffu); /* nothing written past the count */
    ck_assert_uint_eq(hb_envq_size(&q, 0), 2);

    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 16), 2);
    ck_assert_uint_eq(out[0].id, 3);
    ck_assert_uint_eq(out[1].id, 4);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 16), 0);

    /* The ring's read index is now 5: a full ring of 8 wraps the slot index; one batch larger
     * than the capacity takes all 8, in order, across the wrap. */
    for (uint32_t i = 0; i < 8; i++)
        ck_assert_int_eq(hb_envq_push_to(&q, 0, env(100 + i, i)), 0);
    ck_assert_int_eq(hb_envq_push_to(&q, 0, env(999, 0)), HB_EFULL);
    memset(out, 0xff, sizeof out);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 16), 8);
    for (uint32_t i = 0; i < 8; i++) {
        ck_assert_uint_eq(out[i].id, 100 + i);
        ck_assert_uint_eq(out[i].amount, i);
    }
    ck_assert_uint_eq(out[8].id, 0xffffffffu);
    ck_assert_uint_eq(hb_envq_size(&q, 0), 0);

    /* Batches and single pops share one read position. */
    for (uint32_t i = 0; i < 4; i++)
        ck_assert_int_eq(hb_envq_push_to(&q, 0, env(200 + i, 0)), 0);
    expect_pop(&q, 0, 200, 0);
    ck_assert_uint_eq(hb_envq_pop_batch(&q, 0, out, 2), 2);
    ck_assert_uint_eq(out[0].id, 201);
    ck_assert_uint_eq(out[1].id, 202);
    expect_pop(&q, 0, 203, 0);
    ck_assert_uint_eq(hb_envq_size(&q, 1), 0);
    hb_envq_close(&q);
}
END_TEST

START_TEST(test_size)
{
    hb_envq_t q;
    ck_assert_int_eq(hb_envq_init(&q, 3, 4), 0);
    for (unsigned b = 0; b < 3; b++)
        ck_assert_uint_eq(hb_envq_size(&q, b), 0);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_int_eq(hb_envq_push_to(&q, 2, env(i, i)), 0);
        ck_assert_uint_eq(hb_envq_size(&q, 2), i + 1);
    }
    ck_assert_int_eq(hb_envq_push_to(&q, 2, env(9, 9)), HB_EFULL);
    ck_assert_uint_eq(hb_envq_size(&q, 2), 4);
    ck_assert_uint_eq(hb_envq_size(&q, 0), 0);
    ck_assert_uint_eq(hb_envq_size(&q, 1), 0);
    for (uint32_t i = 0; i < 4; i++) {
        expect_pop(&q, 2, i, i);
        ck_assert_uint_eq(hb_envq_size(&q, 2), 3 - i);
    }
    hb_envq_close(&q);
}
END_TEST

/* ---- Multi-threaded stress: one producer, one consumer thread per bucket. ---- */

enum { STRESS_MAX_N = 200000, STRESS_BUCKETS = 4, STRESS_CAPACITY = 1024, STRESS_BATCH = 64 };

struct stress {
    hb_envq_t q;
    uint32_t n;          /* envelopes to push, ids 0..n-1 */
    atomic_bool done;    /* set (release) by the producer after its last push */
    uint64_t sum_pushed; /* written by the producer, read after join */
    uint64_t full_retries;
    uint8_t *pushed_to;   /* [id]: bucket the producer's push reported */
    uint8_t *popped_from; /* [id]: bucket that popped it; each id is written by one consumer */
    uint8_t *pop_count;   /* [id]: times popped; each id is written by one consumer */
};

struct stress_consumer {
    struct stress *s;
    unsigned bucket;
    bool use_batch;
    uint64_t sum;
    uint64_t count;
    uint64_t order_errors; /* ids not strictly increasing within the bucket */
    uint64_t range_errors; /* ids outside [0, n) */
};

/* splitmix64: a local seeded generator, so the test depends on no other module. */
static uint64_t stress_rand(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void *stress_producer(void *arg)
{
    struct stress *s = arg;
    uint64_t seed = 20240214;
    for (uint32_t id = 0; id < s->n; id++) {
        hb_envelope_t e = env(id, 10 + (uint32_t)(stress_rand(&seed) % 300));
        unsigned b;
        while (hb_envq_push(&s->q, e, &b) == HB_EFULL) {
            s->full_retries++;
            sched_yield();
        }
        s->pushed_to[id] = (uint8_t)b;
        s->sum_pushed += e.amount;
    }
    atomic_store_explicit(&s->done, true, memory_order_release);
    return NULL;
}

static void stress_take(struct stress_consumer *c, hb_envelope_t e, int64_t *last)
{
    if (e.id >= c->s->n) {
        c->range_errors++;
        return;
    }
    if ((int64_t)e.id <= *last)
        c->order_errors++;
    *last = e.id;
    c->s->pop_count[e.id]++;
    c->s->popped_from[e.id] = (uint8_t)c->bucket;
    c->sum += e.amount;
    c->count++;
}

static void *stress_consumer(void *arg)
{
    struct stress_consumer *c = arg;
    hb_envelope_t batch[STRESS_BATCH];
    int64_t last = -1;
    for (;;) {
        /* Read done before popping: if it was set, every push is visible to this pop. */
        bool done = atomic_load_explicit(&c->s->done, memory_order_acquire);
        size_t n;
        if (c->use_batch) {
            n = hb_envq_pop_batch(&c->s->q, c->bucket, batch, STRESS_BATCH);
            for (size_t i = 0; i < n; i++)
                stress_take(c, batch[i], &last);
        } else {
            hb_envelope_t e;
            int rc = hb_envq_pop(&c->s->q, c->bucket, &e);
            n = rc == 0;
            if (rc == 0)
                stress_take(c, e, &last);
            else if (rc != HB_EEMPTY)
                c->range_errors++;
        }
        if (n == 0) {
            if (done)
                break;
            sched_yield();
        }
    }
    return NULL;
}

/* Run one producer against nbuckets consumers and check every envelope arrived exactly once. */
static void run_stress(uint32_t n, unsigned nbuckets, uint32_t capacity)
{
    struct stress s;
    struct stress_consumer c[STRESS_BUCKETS];
    pthread_t consumers[STRESS_BUCKETS], producer;
    ck_assert_uint_le(nbuckets, STRESS_BUCKETS);
    ck_assert_uint_le(n, STRESS_MAX_N);

    memset(&s, 0, sizeof s);
    s.n = n;
    ck_assert_int_eq(hb_envq_init(&s.q, nbuckets, capacity), 0);
    atomic_init(&s.done, false);
    s.pushed_to = calloc(n, 1);
    s.popped_from = calloc(n, 1);
    s.pop_count = calloc(n, 1);
    ck_assert_ptr_nonnull(s.pushed_to);
    ck_assert_ptr_nonnull(s.popped_from);
    ck_assert_ptr_nonnull(s.pop_count);

    for (unsigned b = 0; b < nbuckets; b++) {
        c[b] = (struct stress_consumer){.s = &s, .bucket = b, .use_batch = b % 2 == 1};
        ck_assert_int_eq(pthread_create(&consumers[b], NULL, stress_consumer, &c[b]), 0);
    }
    ck_assert_int_eq(pthread_create(&producer, NULL, stress_producer, &s), 0);
    ck_assert_int_eq(pthread_join(producer, NULL), 0);
    for (unsigned b = 0; b < nbuckets; b++)
        ck_assert_int_eq(pthread_join(consumers[b], NULL), 0);

    uint64_t sum_popped = 0, count = 0;
    for (unsigned b = 0; b < nbuckets; b++) {
        ck_assert_uint_eq(c[b].order_errors, 0);
        ck_assert_uint_eq(c[b].range_errors, 0);
        ck_assert_uint_eq(hb_envq_size(&s.q, b), 0);
        sum_popped += c[b].sum;
        count += c[b].count;
    }
    size_t lost = 0, duplicated = 0, misplaced = 0;
    for (uint32_t id = 0; id < n; id++) {
        lost += s.pop_count[id] == 0;
        duplicated += s.pop_count[id] > 1;
        misplaced += s.popped_from[id] != s.pushed_to[id];
    }
    ck_assert_uint_eq(lost, 0);
    ck_assert_uint_eq(duplicated, 0);
    ck_assert_uint_eq(misplaced, 0);
    ck_assert_uint_eq(count, n);
    ck_assert_uint_eq(sum_popped, s.sum_pushed);
    /* Informational only: how often the producer found every bucket full. */
    (void)s.full_retries;

    free(s.pushed_to);
    free(s.popped_from);
    free(s.pop_count);
    hb_envq_close(&s.q);
}

START_TEST(test_stress_round_robin_consumers)
{
    run_stress(STRESS_MAX_N, STRESS_BUCKETS, STRESS_CAPACITY);
}
END_TEST

START_TEST(test_stress_tiny_ring)
{
    /* Capacity 2: the ring is full or empty almost all the time, stressing both edges. */
    run_stress(50000, 2, 2);
}
END_TEST

static Suite *envq_suite(void)
{
    Suite *s = suite_create("envq");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_rejects_bad_arguments);
    tcase_add_test(tc, test_init_rounds_capacity_to_power_of_two);
    tcase_add_test(tc, test_close_twice_is_harmless);
    tcase_add_test(tc, test_popped_tells_the_producer_what_was_taken);
    tcase_add_test(tc, test_bucket_out_of_range);
    tcase_add_test(tc, test_fifo_within_bucket);
    tcase_add_test(tc, test_push_to_full_bucket);
    tcase_add_test(tc, test_round_robin_distribution);
    tcase_add_test(tc, test_round_robin_skips_full_bucket);
    tcase_add_test(tc, test_all_full_changes_nothing);
    tcase_add_test(tc, test_pop_empty);
    tcase_add_test(tc, test_pop_batch);
    tcase_add_test(tc, test_size);
    suite_add_tcase(s, tc);

    TCase *stress = tcase_create("stress");
    tcase_set_timeout(stress, 60);
    tcase_add_test(stress, test_stress_round_robin_consumers);
    tcase_add_test(stress, test_stress_tiny_ring);
    suite_add_tcase(s, stress);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(envq_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
