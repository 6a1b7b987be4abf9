/* Unit tests for the msgq module: argument checks, FIFO order, full and empty, wrap-around, odd
 * message sizes, and multi-producer / multi-consumer stress with exactly-once delivery. */
#include <check.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "hongbao/msgq.h"

/* POSIX threads for the stress tests: the core is tested without libuv. */
typedef void (*thread_fn)(void *arg);

typedef struct thread_start {
    thread_fn fn;
    void *arg;
} thread_start_t;

static void *thread_trampoline(void *p)
{
    thread_start_t s = *(thread_start_t *)p;
    free(p);
    s.fn(s.arg);
    return NULL;
}

static int thread_create(pthread_t *t, thread_fn fn, void *arg)
{
    thread_start_t *s = malloc(sizeof *s);
    if (s == NULL)
        return -1;
    s->fn = fn;
    s->arg = arg;
    return pthread_create(t, NULL, thread_trampoline, s);
}

START_TEST(test_init_rejects_bad_arguments)
{
    hb_msgq_t q;
    memset(&q, 0, sizeof q);
    ck_assert_int_eq(hb_msgq_init(NULL, 8, 8), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_init(&q, 0, 8), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_init(&q, (UINT32_C(1) << 24) + 1, 8), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_init(&q, UINT32_MAX, 8), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_init(&q, 8, 0), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_init(&q, 8, 4097), HB_EINVAL);
    ck_assert_ptr_null(q.ring);

    /* The limits themselves are accepted. */
    ck_assert_int_eq(hb_msgq_init(&q, 8, 4096), 0);
    ck_assert_uint_eq(q.elem_size, 4096);
    hb_msgq_close(&q);
}
END_TEST

START_TEST(test_capacity_rounds_up_to_power_of_two)
{
    static const uint32_t asked[] = {1, 2, 3, 5, 8, 9, 1000};
    static const uint32_t got[] = {2, 2, 4, 8, 8, 16, 1024};
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
        hb_msgq_t q;
        ck_assert_int_eq(hb_msgq_init(&q, asked[i], 4), 0);
        ck_assert_uint_eq(q.capacity, got[i]);
        /* Exactly capacity messages fit. */
        for (uint32_t k = 0; k < got[i]; k++)
            ck_assert_int_eq(hb_msgq_push(&q, &k), 0);
        uint32_t extra = 0;
        ck_assert_int_eq(hb_msgq_push(&q, &extra), HB_EFULL);
        ck_assert_uint_eq(hb_msgq_size(&q), got[i]);
        hb_msgq_close(&q);
    }
}
END_TEST

START_TEST(test_null_and_closed_queue)
{
    hb_msgq_t q;
    uint64_t v = 1;
    ck_assert_int_eq(hb_msgq_init(&q, 4, sizeof v), 0);
    q.data = &v;
    ck_assert_int_eq(hb_msgq_push(NULL, &v), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_push(&q, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_pop(NULL, &v), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_pop(&q, NULL), HB_EINVAL);
    ck_assert_uint_eq(hb_msgq_size(NULL), 0);
    ck_assert_uint_eq(hb_msgq_size(&q), 0);
    /* init leaves the user's data alone. */
    ck_assert_ptr_eq(q.data, &v);

    /* Queued messages are dropped by close; closing twice is harmless. */
    ck_assert_int_eq(hb_msgq_push(&q, &v), 0);
    hb_msgq_close(&q);
    ck_assert_ptr_null(q.ring);
    hb_msgq_close(&q);
    hb_msgq_close(NULL);
    ck_assert_int_eq(hb_msgq_push(&q, &v), HB_EINVAL);
    ck_assert_int_eq(hb_msgq_pop(&q, &v), HB_EINVAL);
    ck_assert_uint_eq(hb_msgq_size(&q), 0);
}
END_TEST

START_TEST(test_fifo_full_and_empty)
{
    hb_msgq_t q;
    ck_assert_int_eq(hb_msgq_init(&q, 16, sizeof(uint64_t)), 0);
    uint64_t v = 0;
    ck_assert_int_eq(hb_msgq_pop(&q, &v), HB_EEMPTY);

    for (uint64_t i = 0; i < 16; i++) {
        uint64_t m = 1000 + i;
        ck_assert_int_eq(hb_msgq_push(&q, &m), 0);
        ck_assert_uint_eq(hb_msgq_size(&q), i + 1);
    }
    uint64_t m = 99;
    ck_assert_int_eq(hb_msgq_push(&q, &m), HB_EFULL);
    ck_assert_uint_eq(hb_msgq_size(&q), 16);

    /* Popping one makes room for exactly one. */
    ck_assert_int_eq(hb_msgq_pop(&q, &v), 0);
    ck_assert_uint_eq(v, 1000);
    m = 1016;
    ck_assert_int_eq(hb_msgq_push(&q, &m), 0);
    ck_assert_int_eq(hb_msgq_push(&q, &m), HB_EFULL);

    for (uint64_t i = 1; i <= 16; i++) {
        ck_assert_int_eq(hb_msgq_pop(&q, &v), 0);
        ck_assert_uint_eq(v, 1000 + i);
        ck_assert_uint_eq(hb_msgq_size(&q), 16 - i);
    }
    v = 7;
    ck_assert_int_eq(hb_msgq_pop(&q, &v), HB_EEMPTY);
    /* A failed pop leaves the buffer alone. */
    ck_assert_uint_eq(v, 7);
    hb_msgq_close(&q);
}
END_TEST

START_TEST(test_wraps_around_many_times)
{
    hb_msgq_t q;
    EXPECT_INT(hb_msgq_init(&q, 8, sizeof(uint32_t)), ==, 0);
    uint32_t next_in = 0, next_out = 0;
    /* Batches of varying length, so the head and tail meet every cell many times. */
    for (uint32_t round = 0; round < 20000; round++) {
        uint32_t batch = 1 + round % 8;
        for (uint32_t k = 0; k < batch; k++) {
            EXPECT_INT(hb_msgq_push(&q, &next_in), ==, 0);
            next_in++;
        }
        if (batch == 8)
            EXPECT_INT(hb_msgq_push(&q, &next_in), ==, HB_EFULL);
        for (uint32_t k = 0; k < batch; k++) {
            uint32_t v;
            EXPECT_INT(hb_msgq_pop(&q, &v), ==, 0);
            EXPECT_UINT(v, ==, next_out);
            next_out++;
        }
        uint32_t v;
        EXPECT_INT(hb_msgq_pop(&q, &v), ==, HB_EEMPTY);
    }
    EXPECT_UINT(next_out, ==, next_in);
    ck_assert_uint_gt(next_in / 8, 10000);
    hb_msgq_close(&q);
}
END_TEST

START_TEST(test_odd_element_size_copies_exactly)
{
    enum { SIZE = 13, CAP = 4 };
    hb_msgq_t q;
    ck_assert_int_eq(hb_msgq_init(&q, CAP, SIZE), 0);
    ck_assert_uint_eq(q.elem_size, SIZE);
    /* Exactly SIZE bytes on the heap, so ASan catches any read past them. */
    unsigned char *in = malloc(SIZE);
    ck_assert_ptr_nonnull(in);
    for (int round = 0; round < 3 * CAP; round++) {
        for (int i = 0; i < SIZE; i++)
            in[i] = (unsigned char)(round * 31 + i * 7 + 1);
        ck_assert_int_eq(hb_msgq_push(&q, in), 0);

        unsigned char out[SIZE + 3];
        memset(out, 0xA5, sizeof out);
        ck_assert_int_eq(hb_msgq_pop(&q, out), 0);
        ck_assert_mem_eq(out, in, SIZE);
        /* Nothing written past elem_size. */
        for (int i = SIZE; i < SIZE + 3; i++)
            ck_assert_uint_eq(out[i], 0xA5);
    }
    /* Full ring of odd-sized messages: neighbouring cells do not overlap. */
    for (int k = 0; k < CAP; k++) {
        memset(in, 0x10 + k, SIZE);
        ck_assert_int_eq(hb_msgq_push(&q, in), 0);
    }
    for (int k = 0; k < CAP; k++) {
        unsigned char out[SIZE], want[SIZE];
        memset(want, 0x10 + k, SIZE);
        ck_assert_int_eq(hb_msgq_pop(&q, out), 0);
        ck_assert_mem_eq(out, want, SIZE);
    }
    free(in);
    hb_msgq_close(&q);
}
END_TEST

/* Stress: tagged messages from several producers, through a small ring. */
enum {
    STRESS_PRODUCERS = 4,
    STRESS_PER_PRODUCER = 200000,
    STRESS_TOTAL = STRESS_PRODUCERS * STRESS_PER_PRODUCER,
    STRESS_CAPACITY = 64,
    STRESS_WORDS = 4,
    STRESS_MAX_CONSUMERS = 2,
};

typedef struct stress_msg {
    uint32_t producer;
    uint32_t seq;
    uint64_t payload[STRESS_WORDS];
    uint64_t checksum;
} stress_msg_t;

typedef struct stress {
    hb_msgq_t q;
    pthread_barrier_t start;
    atomic_uint received;       /* by all consumers */
    atomic_uint producers_done; /* producers whose every push has returned */
    unsigned char seen[STRESS_PRODUCERS][STRESS_PER_PRODUCER];
} stress_t;

typedef struct stress_producer {
    stress_t *st;
    uint32_t id;
} stress_producer_t;

typedef struct stress_consumer {
    stress_t *st;
    uint32_t count;
    uint32_t bad_checksum;
    uint32_t out_of_order; /* a producer's message after a later one of the same producer */
    uint32_t duplicates;
    int64_t last_seq[STRESS_PRODUCERS];
} stress_consumer_t;

static uint64_t stress_mix(uint64_t x)
{
    x ^= x >> 31;
    x *= UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 29;
    return x;
}

static uint64_t stress_checksum(const stress_msg_t *m)
{
    uint64_t c = ((uint64_t)m->producer << 32) | m->seq;
    for (int i = 0; i < STRESS_WORDS; i++)
        c = stress_mix(c ^ m->payload[i]);
    return c;
}

static void stress_produce(void *arg)
{
    stress_producer_t *p = arg;
    pthread_barrier_wait(&p->st->start);
    for (uint32_t seq = 0; seq < STRESS_PER_PRODUCER; seq++) {
        stress_msg_t m;
        m.producer = p->id;
        m.seq = seq;
        for (int i = 0; i < STRESS_WORDS; i++)
            m.payload[i] = stress_mix(((uint64_t)p->id << 48) ^ ((uint64_t)seq << 8) ^ (uint64_t)i);
        m.checksum = stress_checksum(&m);
        int rc;
        while ((rc = hb_msgq_push(&p->st->q, &m)) == HB_EFULL)
            sched_yield();
        if (rc != 0)
            abort();
    }
    atomic_fetch_add(&p->st->producers_done, 1);
}

static void stress_consume(void *arg)
{
    stress_consumer_t *c = arg;
    stress_t *st = c->st;
    for (int p = 0; p < STRESS_PRODUCERS; p++)
        c->last_seq[p] = -1;
    pthread_barrier_wait(&st->start);
    /* Until all is received, or (should a message be lost) all is pushed and the queue empty. */
    while (atomic_load(&st->received) < STRESS_TOTAL) {
        unsigned done = atomic_load(&st->producers_done);
        stress_msg_t m;
        int rc = hb_msgq_pop(&st->q, &m);
        if (rc == HB_EEMPTY) {
            if (done == STRESS_PRODUCERS)
                break;
            sched_yield();
            continue;
        }
        if (rc != 0 || m.producer >= STRESS_PRODUCERS || m.seq >= STRESS_PER_PRODUCER)
            abort();
        atomic_fetch_add(&st->received, 1);
        c->count++;
        if (m.checksum != stress_checksum(&m))
            c->bad_checksum++;
        if ((int64_t)m.seq <= c->last_seq[m.producer])
            c->out_of_order++;
        c->last_seq[m.producer] = m.seq;
        /* Each (producer, seq) belongs to one message, so seen[][] cells are never shared. */
        if (st->seen[m.producer][m.seq]++ != 0)
            c->duplicates++;
    }
}

static void run_stress(int nconsumers)
{
    stress_t *st = calloc(1, sizeof *st);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(hb_msgq_init(&st->q, STRESS_CAPACITY, sizeof(stress_msg_t)), 0);
    ck_assert_int_eq(
        pthread_barrier_init(&st->start, NULL, STRESS_PRODUCERS + (unsigned)nconsumers), 0);
    atomic_init(&st->received, 0);
    atomic_init(&st->producers_done, 0);

    stress_producer_t producers[STRESS_PRODUCERS];
    stress_consumer_t consumers[STRESS_MAX_CONSUMERS];
    pthread_t pt[STRESS_PRODUCERS], ct[STRESS_MAX_CONSUMERS];
    memset(consumers, 0, sizeof consumers);
    for (int i = 0; i < nconsumers; i++) {
        consumers[i].st = st;
        ck_assert_int_eq(thread_create(&ct[i], stress_consume, &consumers[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) {
        producers[i].st = st;
        producers[i].id = (uint32_t)i;
        ck_assert_int_eq(thread_create(&pt[i], stress_produce, &producers[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++)
        ck_assert_int_eq(pthread_join(pt[i], NULL), 0);
    for (int i = 0; i < nconsumers; i++)
        ck_assert_int_eq(pthread_join(ct[i], NULL), 0);

    uint32_t total = 0;
    for (int i = 0; i < nconsumers; i++) {
        ck_assert_uint_eq(consumers[i].bad_checksum, 0);
        ck_assert_uint_eq(consumers[i].out_of_order, 0);
        ck_assert_uint_eq(consumers[i].duplicates, 0);
        total += consumers[i].count;
    }
    ck_assert_uint_eq(total, STRESS_TOTAL);
    /* Exactly once: every message seen, none twice. */
    for (int p = 0; p < STRESS_PRODUCERS; p++)
        for (int s = 0; s < STRESS_PER_PRODUCER; s++)
            EXPECT_UINT(st->seen[p][s], ==, 1);
    if (nconsumers == 1) {
        /* One consumer sees each producer's whole sequence, in order, to the end. */
        for (int p = 0; p < STRESS_PRODUCERS; p++)
            ck_assert_int_eq(consumers[0].last_seq[p], STRESS_PER_PRODUCER - 1);
    }
    ck_assert_uint_eq(hb_msgq_size(&st->q), 0);
    stress_msg_t m;
    ck_assert_int_eq(hb_msgq_pop(&st->q, &m), HB_EEMPTY);

    pthread_barrier_destroy(&st->start);
    hb_msgq_close(&st->q);
    free(st);
}

START_TEST(test_stress_producers_one_consumer)
{
    run_stress(1);
}
END_TEST

START_TEST(test_stress_producers_two_consumers)
{
    run_stress(2);
}
END_TEST

/* Contention without waiting: producers fill a queue large enough for all their messages at
 * once, then consumers drain it, so every thread spends its time racing the others for the
 * same position. */
enum {
    RACE_THREADS = 4,
    RACE_PER_THREAD = 200000,
    RACE_TOTAL = RACE_THREADS * RACE_PER_THREAD,
};

typedef struct race {
    hb_msgq_t q;
    pthread_barrier_t start;
    unsigned char seen[RACE_TOTAL];
} race_t;

typedef struct race_thread {
    race_t *rc;
    uint32_t id;
    uint32_t count;
    uint32_t errors; /* pushes refused, corrupt messages, or out of order for a producer */
} race_thread_t;

static void race_produce(void *arg)
{
    race_thread_t *t = arg;
    pthread_barrier_wait(&t->rc->start);
    for (uint32_t i = 0; i < RACE_PER_THREAD; i++) {
        uint64_t m[2] = {(uint64_t)t->id * RACE_PER_THREAD + i, 0};
        m[1] = stress_mix(m[0]);
        if (hb_msgq_push(&t->rc->q, m) != 0)
            t->errors++;
        else
            t->count++;
    }
}

static void race_consume(void *arg)
{
    race_thread_t *t = arg;
    uint64_t last[RACE_THREADS];
    memset(last, 0xff, sizeof last);
    pthread_barrier_wait(&t->rc->start);
    uint64_t m[2];
    while (hb_msgq_pop(&t->rc->q, m) == 0) {
        t->count++;
        uint64_t producer = m[0] / RACE_PER_THREAD;
        if (m[0] >= RACE_TOTAL || m[1] != stress_mix(m[0]) ||
            (last[producer] != UINT64_MAX && m[0] <= last[producer])) {
            t->errors++;
            continue;
        }
        last[producer] = m[0];
        t->rc->seen[m[0]]++;
    }
}

static void race_run(race_t *rc, thread_fn fn, race_thread_t *threads)
{
    pthread_t tid[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        threads[i].rc = rc;
        threads[i].id = (uint32_t)i;
        ck_assert_int_eq(thread_create(&tid[i], fn, &threads[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++)
        ck_assert_int_eq(pthread_join(tid[i], NULL), 0);
}

START_TEST(test_race_fill_then_drain)
{
    race_t *rc = calloc(1, sizeof *rc);
    ck_assert_ptr_nonnull(rc);
    ck_assert_int_eq(hb_msgq_init(&rc->q, RACE_TOTAL, 2 * sizeof(uint64_t)), 0);
    ck_assert_int_eq(pthread_barrier_init(&rc->start, NULL, RACE_THREADS), 0);

    race_thread_t producers[RACE_THREADS], consumers[RACE_THREADS];
    memset(producers, 0, sizeof producers);
    memset(consumers, 0, sizeof consumers);
    race_run(rc, race_produce, producers);
    for (int i = 0; i < RACE_THREADS; i++) {
        ck_assert_uint_eq(producers[i].errors, 0);
        ck_assert_uint_eq(producers[i].count, RACE_PER_THREAD);
    }
    ck_assert_uint_eq(hb_msgq_size(&rc->q), RACE_TOTAL);

    race_run(rc, race_consume, consumers);
    uint32_t total = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        ck_assert_uint_eq(consumers[i].errors, 0);
        total += consumers[i].count;
    }
    ck_assert_uint_eq(total, RACE_TOTAL);
    for (uint32_t i = 0; i < RACE_TOTAL; i++)
        EXPECT_UINT(rc->seen[i], ==, 1);
    ck_assert_uint_eq(hb_msgq_size(&rc->q), 0);

    pthread_barrier_destroy(&rc->start);
    hb_msgq_close(&rc->q);
    free(rc);
}
END_TEST

/* hb_msgq_post past a full ring keeps order, also when the ring has room again while earlier
 * messages still wait in the overflow. */
START_TEST(test_post_keeps_order_past_the_ring)
{
    hb_msgq_t q;
    ck_assert_int_eq(hb_msgq_init(&q, 2, sizeof(uint32_t)), 0);
    uint32_t next_in = 0, next_out = 0, v;
    for (int round = 0; round < 200; round++) {
        /* Post 1..5, take 1..4: the ring (2 cells) overflows, drains, refills. */
        int posts = 1 + round % 5, takes = 1 + (round * 7) % 4;
        for (int i = 0; i < posts; i++, next_in++)
            ck_assert_int_eq(hb_msgq_post(&q, &next_in), 0);
        for (int i = 0; i < takes && hb_msgq_take(&q, &v) == 0; i++, next_out++)
            ck_assert_uint_eq(v, next_out);
    }
    ck_assert_uint_gt(hb_msgq_overflow(&q), 0);
    while (hb_msgq_take(&q, &v) == 0)
        ck_assert_uint_eq(v, next_out++);
    ck_assert_uint_eq(next_out, next_in);
    ck_assert_uint_eq(hb_msgq_overflow(&q), 0);
    ck_assert_int_eq(hb_msgq_take(&q, &v), HB_EEMPTY);
    /* Messages left at close are freed with it (ASan checks). */
    for (uint32_t i = 0; i < 10; i++)
        ck_assert_int_eq(hb_msgq_post(&q, &i), 0);
    ck_assert_int_eq(hb_msgq_take(&q, &v), 0);
    hb_msgq_close(&q);
}
END_TEST

/* Causal order across threads through a tiny ring: the "envelope" poster posts E(i) then
 * publishes i; the "claim" poster waits to see i, then posts C(i); noise posters keep the ring
 * full. The consumer must take every E(i) before C(i): a claim never overtakes its envelope. */
enum { CAUSAL_N = 100000, CAUSAL_NOISE = 2, CAUSAL_NOISE_N = 100000 };

typedef struct causal {
    hb_msgq_t q;
    atomic_uint published;
    pthread_barrier_t start;
} causal_t;

typedef struct causal_msg {
    uint32_t kind; /* 0 envelope, 1 claim, 2 noise */
    uint32_t i;
} causal_msg_t;

static void causal_post(causal_t *c, uint32_t kind, uint32_t i)
{
    causal_msg_t m = {kind, i};
    while (hb_msgq_post(&c->q, &m) != 0)
        ;
}

static void causal_envelopes(void *arg)
{
    causal_t *c = arg;
    pthread_barrier_wait(&c->start);
    for (uint32_t i = 0; i < CAUSAL_N; i++) {
        causal_post(c, 0, i);
        atomic_store_explicit(&c->published, i + 1, memory_order_release);
    }
}

static void causal_claims(void *arg)
{
    causal_t *c = arg;
    pthread_barrier_wait(&c->start);
    for (uint32_t i = 0; i < CAUSAL_N; i++) {
        while (atomic_load_explicit(&c->published, memory_order_acquire) <= i)
            ;
        causal_post(c, 1, i);
    }
}

static void causal_noise(void *arg)
{
    causal_t *c = arg;
    pthread_barrier_wait(&c->start);
    for (uint32_t i = 0; i < CAUSAL_NOISE_N; i++)
        causal_post(c, 2, i);
}

START_TEST(test_post_causal_order_across_threads)
{
    causal_t *c = calloc(1, sizeof *c);
    ck_assert_int_eq(hb_msgq_init(&c->q, 4, sizeof(causal_msg_t)), 0);
    atomic_init(&c->published, 0);
    pthread_barrier_init(&c->start, NULL, 3 + CAUSAL_NOISE);
    pthread_t t[2 + CAUSAL_NOISE];
    thread_create(&t[0], causal_envelopes, c);
    thread_create(&t[1], causal_claims, c);
    for (int k = 0; k < CAUSAL_NOISE; k++)
        thread_create(&t[2 + k], causal_noise, c);
    uint8_t *seen = calloc(CAUSAL_N, 1);
    uint32_t next_env = 0, next_claim = 0, noise = 0, violations = 0;
    pthread_barrier_wait(&c->start);
    while (next_claim < CAUSAL_N || noise < CAUSAL_NOISE * CAUSAL_NOISE_N) {
        causal_msg_t m;
        if (hb_msgq_take(&c->q, &m) != 0)
            continue;
        if (m.kind == 0) {
            violations += m.i != next_env;
            next_env++;
            seen[m.i] = 1;
        } else if (m.kind == 1) {
            violations += m.i != next_claim || !seen[m.i];
            next_claim++;
        } else {
            noise++;
        }
    }
    for (int k = 0; k < 2 + CAUSAL_NOISE; k++)
        pthread_join(t[k], NULL);
    ck_assert_uint_eq(violations, 0);
    ck_assert_uint_eq(next_env, CAUSAL_N);
    causal_msg_t m;
    ck_assert_int_eq(hb_msgq_take(&c->q, &m), HB_EEMPTY);
    free(seen);
    pthread_barrier_destroy(&c->start);
    hb_msgq_close(&c->q);
    free(c);
}
END_TEST

static Suite *msgq_suite(void)
{
    Suite *s = suite_create("msgq");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_rejects_bad_arguments);
    tcase_add_test(tc, test_capacity_rounds_up_to_power_of_two);
    tcase_add_test(tc, test_null_and_closed_queue);
    tcase_add_test(tc, test_fifo_full_and_empty);
    tcase_add_test(tc, test_wraps_around_many_times);
    tcase_add_test(tc, test_odd_element_size_copies_exactly);
    tcase_add_test(tc, test_post_keeps_order_past_the_ring);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    TCase *stress = tcase_create("stress");
    tcase_add_test(stress, test_stress_producers_one_consumer);
    tcase_add_test(stress, test_stress_producers_two_consumers);
    tcase_add_test(stress, test_race_fill_then_drain);
    tcase_add_test(stress, test_post_causal_order_across_threads);
    tcase_set_timeout(stress, 60);
    suite_add_tcase(s, stress);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(msgq_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
