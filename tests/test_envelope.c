/* Unit tests for the envelope module: the double-mean split, the lazy single draw, and the envelope
 * id spaces. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "hongbao/envelope.h"

/* The cap of the next share by the double-mean rule, recomputed independently of the library:
 * min(2 * remaining / left, remaining - (left - 1)), in 64 bits. */
static uint64_t double_mean_cap(uint64_t remaining, uint64_t left)
{
    uint64_t cap = 2 * remaining / left;
    uint64_t keep_one_each = remaining - (left - 1);
    return cap < keep_one_each ? cap : keep_one_each;
}

/* Asserts every share >= 1, every share but the last within its cap, the last taking the rest,
 * and the sum equal to total. */
static void check_split(uint32_t total, uint32_t n, const uint32_t *shares)
{
    uint64_t remaining = total, sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t left = n - i;
        EXPECT_UINT(shares[i], >=, 1);
        if (left > 1)
            EXPECT_UINT(shares[i], <=, double_mean_cap(remaining, left));
        else
            EXPECT_UINT(shares[i], ==, remaining);
        remaining -= shares[i];
        sum += shares[i];
    }
    EXPECT_UINT(sum, ==, total);
}

/* Many random splits of small n (the common case), then fewer of n up to 100. */
START_TEST(test_envelope_split_conserves_and_caps)
{
    uint32_t shares[100];
    hb_rand_t rng, params;
    hb_rand_seed(&rng, 1);
    hb_rand_seed(&params, 2);
    for (int i = 0; i < 2000000; i++) {
        uint32_t n = (uint32_t)hb_rand_range(&params, 1, 8);
        uint32_t total = (uint32_t)hb_rand_range(&params, n, 10000000);
        EXPECT_INT(hb_envelope_split(total, n, &rng, shares), ==, 0);
        check_split(total, n, shares);
    }
    for (int i = 0; i < 50000; i++) {
        uint32_t n = (uint32_t)hb_rand_range(&params, 1, 100);
        /* Half the totals close to n, where the "one for each" bound is the binding cap. */
        uint32_t hi = (i & 1) ? 10000000 : 2 * n;
        uint32_t total = (uint32_t)hb_rand_range(&params, n, hi);
        EXPECT_INT(hb_envelope_split(total, n, &rng, shares), ==, 0);
        check_split(total, n, shares);
    }
}
END_TEST

/* Each position's mean is total / n: for 1000 in 3 shares, ~333.3 within 1%. */
START_TEST(test_envelope_split_mean_is_fair)
{
    enum { SPLITS = 300000 };
    static const struct {
        uint32_t total, n;
    } cases[] = {{1000, 3}, {100000, 10}};
    hb_rand_t rng;
    hb_rand_seed(&rng, 3);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t n = cases[c].n, shares[10];
        uint64_t sum[10] = {0};
        for (int i = 0; i < SPLITS; i++) {
            EXPECT_INT(hb_envelope_split(cases[c].total, n, &rng, shares), ==, 0);
            for (uint32_t k = 0; k < n; k++)
                sum[k] += shares[k];
        }
        double fair = (double)cases[c].total / n;
        for (uint32_t k = 0; k < n; k++) {
            double mean = (double)sum[k] / SPLITS;
            ck_assert_double_gt(mean, fair * 0.99);
            ck_assert_double_lt(mean, fair * 1.01);
        }
    }
}
END_TEST

START_TEST(test_envelope_split_is_deterministic)
{
    uint32_t a[10], b[10];
    hb_rand_t ra, rb;
    hb_rand_seed(&ra, 77);
    hb_rand_seed(&rb, 77);
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(hb_envelope_split(10000, 10, &ra, a), 0);
        ck_assert_int_eq(hb_envelope_split(10000, 10, &rb, b), 0);
        ck_assert_mem_eq(a, b, sizeof a);
    }

    /* Regression vector: seed 42, 10000 in 10 shares (also checked against an independent
     * model of xoshiro256** + splitmix64 + Lemire + the double-mean rule). */
    static const uint32_t expect[10] = {168, 828, 1531, 1975, 1817, 1134, 916, 924, 538, 169};
    hb_rand_seed(&ra, 42);
    ck_assert_int_eq(hb_envelope_split(10000, 10, &ra, a), 0);
    ck_assert_mem_eq(a, expect, sizeof expect);

    static const uint32_t expect_max[3] = {2012684190, 1187783705, 1094499400};
    hb_rand_seed(&ra, 1);
    ck_assert_int_eq(hb_envelope_split(UINT32_MAX, 3, &ra, a), 0);
    ck_assert_mem_eq(a, expect_max, sizeof expect_max);

    /* Another seed gives another vector. */
    hb_rand_seed(&rb, 43);
    ck_assert_int_eq(hb_envelope_split(10000, 10, &rb, b), 0);
    ck_assert_int_ne(memcmp(b, expect, sizeof expect), 0);
}
END_TEST

/* split is draw in a loop: the same generator state gives the same shares either way. */
START_TEST(test_envelope_split_equals_draw_loop)
{
    hb_rand_t ra, rb, params;
    hb_rand_seed(&ra, 8);
    hb_rand_seed(&rb, 8);
    hb_rand_seed(&params, 9);
    for (int i = 0; i < 10000; i++) {
        uint32_t shares[20];
        uint32_t n = (uint32_t)hb_rand_range(&params, 1, 20);
        uint32_t total = (uint32_t)hb_rand_range(&params, n, 100000);
        EXPECT_INT(hb_envelope_split(total, n, &ra, shares), ==, 0);
        uint32_t remaining = total;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t share = hb_envelope_draw(remaining, n - k, &rb);
            EXPECT_UINT(share, ==, shares[k]);
            remaining -= share;
        }
        EXPECT_UINT(remaining, ==, 0);
    }
}
END_TEST

START_TEST(test_envelope_split_rejects_bad_arguments)
{
    uint32_t shares[4] = {0xdead, 0xdead, 0xdead, 0xdead};
    const uint32_t untouched[4] = {0xdead, 0xdead, 0xdead, 0xdead};
    hb_rand_t rng, copy;
    hb_rand_seed(&rng, 4);
    copy = rng;

    ck_assert_int_eq(hb_envelope_split(100, 0, &rng, shares), HB_EINVAL);
    ck_assert_int_eq(hb_envelope_split(0, 0, &rng, shares), HB_EINVAL);
    ck_assert_int_eq(hb_envelope_split(100, 3, &rng, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_envelope_split(100, 3, NULL, shares), HB_EINVAL);
    ck_assert_int_eq(hb_envelope_split(2, 3, &rng, shares), HB_EAMOUNT);
    ck_assert_int_eq(hb_envelope_split(0, 1, &rng, shares), HB_EAMOUNT);
    ck_assert_int_eq(hb_envelope_split(3, 4, &rng, shares), HB_EAMOUNT);
    ck_assert_int_eq(hb_envelope_split(UINT32_MAX - 1, UINT32_MAX, &rng, shares), HB_EAMOUNT);

    /* A failed call writes nothing and leaves the generator as it was. */
    ck_assert_mem_eq(shares, untouched, sizeof shares);
    ck_assert_uint_eq(hb_rand_next(&rng), hb_rand_next(&copy));
}
END_TEST

START_TEST(test_envelope_split_degenerate_totals)
{
    uint32_t shares[1000];
    hb_rand_t rng;
    hb_rand_seed(&rng, 5);

    /* total == n: everyone gets exactly 1. */
    static const uint32_t ns[] = {1, 2, 3, 7, 1000};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        ck_assert_int_eq(hb_envelope_split(ns[c], ns[c], &rng, shares), 0);
        for (uint32_t k = 0; k < ns[c]; k++)
            ck_assert_uint_eq(shares[k], 1);
    }

    /* n == 1: the only share is the total. */
    static const uint32_t totals[] = {1, 2, 309, 10000000, UINT32_MAX};
    for (size_t c = 0; c < sizeof totals / sizeof totals[0]; c++) {
        ck_assert_int_eq(hb_envelope_split(totals[c], 1, &rng, shares), 0);
        ck_assert_uint_eq(shares[0], totals[c]);
    }

    /* total == n + 1: exactly one share gets 2. */
    ck_assert_int_eq(hb_envelope_split(1001, 1000, &rng, shares), 0);
    check_split(1001, 1000, shares);
}
END_TEST

START_TEST(test_envelope_draw_edge_cases)
{
    hb_rand_t rng;
    hb_rand_seed(&rng, 6);

    /* left == 1 takes the rest, without needing a generator. */
    ck_assert_uint_eq(hb_envelope_draw(1, 1, NULL), 1);
    ck_assert_uint_eq(hb_envelope_draw(12345, 1, NULL), 12345);
    ck_assert_uint_eq(hb_envelope_draw(UINT32_MAX, 1, NULL), UINT32_MAX);
    ck_assert_uint_eq(hb_envelope_draw(12345, 1, &rng), 12345);

    /* Nothing can be granted: remaining < left, or no share left. */
    ck_assert_uint_eq(hb_envelope_draw(0, 1, NULL), 0);
    ck_assert_uint_eq(hb_envelope_draw(2, 3, NULL), 0);
    ck_assert_uint_eq(hb_envelope_draw(UINT32_MAX - 1, UINT32_MAX, NULL), 0);
    ck_assert_uint_eq(hb_envelope_draw(100, 0, NULL), 0);
    ck_assert_uint_eq(hb_envelope_draw(0, 0, NULL), 0);

    /* remaining == left: 1, so the others still get 1 each. */
    ck_assert_uint_eq(hb_envelope_draw(5, 5, &rng), 1);
    ck_assert_uint_eq(hb_envelope_draw(UINT32_MAX, UINT32_MAX, &rng), 1);
}
END_TEST

/* The draw is uniform on the whole of [1, cap]: both ends are reached, nothing beyond. */
START_TEST(test_envelope_draw_reaches_both_ends)
{
    static const struct {
        uint32_t remaining, left, cap;
    } cases[] = {
        {1000, 3, 666}, /* 2 * 1000 / 3 */
        {10, 2, 9},     /* remaining - (left - 1) binds */
        {3, 2, 2},      {7, 6, 2}, {100, 10, 20},
    };
    hb_rand_t rng;
    hb_rand_seed(&rng, 10);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ck_assert_uint_eq(double_mean_cap(cases[c].remaining, cases[c].left), cases[c].cap);
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int i = 0; i < 100000; i++) {
            uint32_t v = hb_envelope_draw(cases[c].remaining, cases[c].left, &rng);
            if (v < lo)
                lo = v;
            if (v > hi)
                hi = v;
        }
        ck_assert_uint_eq(lo, 1);
        ck_assert_uint_eq(hi, cases[c].cap);
    }
}
END_TEST

/* Totals up to UINT32_MAX: 2 * remaining needs 33 bits. Had it wrapped in 32 bits, the cap for
 * (UINT32_MAX, 2) would be 2^31 - 1; the right cap is UINT32_MAX - 1. */
START_TEST(test_envelope_max_totals)
{
    hb_rand_t rng;
    hb_rand_seed(&rng, 15);

    uint32_t hi = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t v = hb_envelope_draw(UINT32_MAX, 2, &rng);
        ck_assert_uint_ge(v, 1);
        ck_assert_uint_le(v, UINT32_MAX - 1);
        if (v > hi)
            hi = v;
    }
    ck_assert_uint_gt(hi, UINT32_C(0x80000000));

    for (int i = 0; i < 1000; i++) {
        uint32_t v = hb_envelope_draw(UINT32_MAX, 3, &rng);
        ck_assert_uint_ge(v, 1);
        ck_assert_uint_le(v, double_mean_cap(UINT32_MAX, 3));
    }

    static uint32_t shares[1000];
    static const uint32_t ns[] = {2, 3, 10, 1000};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        for (int i = 0; i < 200; i++) {
            ck_assert_int_eq(hb_envelope_split(UINT32_MAX, ns[c], &rng, shares), 0);
            check_split(UINT32_MAX, ns[c], shares);
        }
    }
}
END_TEST

/* ---- Envelope id spaces ---- */

#define SHAKE_LOW_FIRST  UINT32_C(0x100000)
#define SHAKE_LOW_LAST   UINT32_C(0x1FFFFF)
#define SEND_FIRST       UINT32_C(0x200000)
#define SEND_LAST        UINT32_C(0x7FFFFFFF)
#define SHAKE_HIGH_FIRST UINT32_C(0x80000000)
#define SHAKE_COUNT      (UINT64_C(0x100000) + UINT64_C(0x80000000))
#define SEND_COUNT       (UINT64_C(0x7FFFFFFF) - UINT64_C(0x200000) + 1)

/* The model: the ids of a kind numbered 0, 1, ... in order. */
static uint64_t model_count(hb_envelope_kind_t kind)
{
    return kind == HB_ENVELOPE_SHAKE ? SHAKE_COUNT : SEND_COUNT;
}

static uint32_t model_id_at(hb_envelope_kind_t kind, uint64_t i)
{
    if (kind == HB_ENVELOPE_SEND)
        return (uint32_t)(SEND_FIRST + i);
    return i < 0x100000 ? (uint32_t)(SHAKE_LOW_FIRST + i)
                        : (uint32_t)(SHAKE_HIGH_FIRST + (i - 0x100000));
}

/* The number of id in its kind's order; -1 for an id below both spaces. */
static int64_t model_index(uint32_t id)
{
    if (id < SHAKE_LOW_FIRST)
        return -1;
    if (id <= SHAKE_LOW_LAST)
        return id - SHAKE_LOW_FIRST;
    if (id <= SEND_LAST)
        return id - SEND_FIRST;
    return 0x100000 + (int64_t)(id - SHAKE_HIGH_FIRST);
}

static int model_kind(uint32_t id)
{
    if (id < SHAKE_LOW_FIRST)
        return 0;
    return id >= SEND_FIRST && id <= SEND_LAST ? HB_ENVELOPE_SEND : HB_ENVELOPE_SHAKE;
}

/* hb_envelope_id_add per the model: n >= 1, id of kind or below both spaces. */
static uint32_t model_add(hb_envelope_kind_t kind, uint32_t id, uint64_t n)
{
    int k = model_kind(id);
    if (k != 0 && k != (int)kind)
        return 0;
    int64_t at = model_index(id);
    uint64_t count = model_count(kind);
    if (n > count || (uint64_t)(at + 1) > count - n)
        return 0;
    return model_id_at(kind, (uint64_t)(at + (int64_t)n));
}

START_TEST(test_envelope_id_kind_boundaries)
{
    ck_assert_int_eq(hb_envelope_id_kind(0), 0);
    ck_assert_int_eq(hb_envelope_id_kind(1), 0);
    ck_assert_int_eq(hb_envelope_id_kind(SHAKE_LOW_FIRST - 1), 0);
    ck_assert_int_eq(hb_envelope_id_kind(SHAKE_LOW_FIRST), HB_ENVELOPE_SHAKE);
    ck_assert_int_eq(hb_envelope_id_kind(HB_SHAKE_ENVELOPE_ID_BASE), HB_ENVELOPE_SHAKE);
    ck_assert_int_eq(hb_envelope_id_kind(SHAKE_LOW_LAST), HB_ENVELOPE_SHAKE);
    ck_assert_int_eq(hb_envelope_id_kind(SEND_FIRST), HB_ENVELOPE_SEND);
    ck_assert_int_eq(hb_envelope_id_kind(HB_SEND_ENVELOPE_ID_BASE), HB_ENVELOPE_SEND);
    ck_assert_int_eq(hb_envelope_id_kind(0x12345678), HB_ENVELOPE_SEND);
    ck_assert_int_eq(hb_envelope_id_kind(SEND_LAST), HB_ENVELOPE_SEND);
    ck_assert_int_eq(hb_envelope_id_kind(SHAKE_HIGH_FIRST), HB_ENVELOPE_SHAKE);
    ck_assert_int_eq(hb_envelope_id_kind(0xDEADBEEF), HB_ENVELOPE_SHAKE);
    ck_assert_int_eq(hb_envelope_id_kind(UINT32_MAX), HB_ENVELOPE_SHAKE);
    /* Every id around a boundary, against the model. */
    static const uint32_t edges[] = {0, SHAKE_LOW_FIRST, SEND_FIRST, SHAKE_HIGH_FIRST, UINT32_MAX};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        for (int64_t d = -300; d <= 300; d++) {
            int64_t id = (int64_t)edges[i] + d;
            if (id < 0 || id > UINT32_MAX)
                continue;
            EXPECT_INT(hb_envelope_id_kind((uint32_t)id), ==, model_kind((uint32_t)id));
        }
    }
}
END_TEST

START_TEST(test_envelope_id_add_boundaries)
{
    const hb_envelope_kind_t SHAKE = HB_ENVELOPE_SHAKE, SEND = HB_ENVELOPE_SEND;
    /* The first ids: from 0, or any id below both spaces. */
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 0, 1), HB_SHAKE_ENVELOPE_ID_BASE);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, 0, 1), HB_SEND_ENVELOPE_ID_BASE);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 12345, 1), SHAKE_LOW_FIRST);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SHAKE_LOW_FIRST - 1, 1), SEND_FIRST);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 0, 2), SHAKE_LOW_FIRST + 1);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SEND_FIRST, 1), SEND_FIRST + 1);
    /* n = 0 from an id of the kind: the id itself. */
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SEND_FIRST + 9, 0), SEND_FIRST + 9);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_HIGH_FIRST, 0), SHAKE_HIGH_FIRST);

    /* Shakes jump over the send space: 0x1FFFFF -> 0x80000000, never into a send id. */
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_LOW_LAST - 1, 1), SHAKE_LOW_LAST);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_LOW_LAST, 1), SHAKE_HIGH_FIRST);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_LOW_LAST, 2), SHAKE_HIGH_FIRST + 1);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_LOW_LAST - 4, 10), SHAKE_HIGH_FIRST + 5);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 0, 0x100000), SHAKE_LOW_LAST);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 0, 0x100001), SHAKE_HIGH_FIRST);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_LOW_FIRST, 0x100000), SHAKE_HIGH_FIRST);

    /* The last ids; past them nothing (0), never a wrap. */
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SEND_LAST - 1, 1), SEND_LAST);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SEND_LAST, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SEND_LAST - 5, 6), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, 0, SEND_COUNT), SEND_LAST);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, 0, SEND_COUNT + 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, UINT32_MAX - 1, 1), UINT32_MAX);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, UINT32_MAX, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 0, SHAKE_COUNT), UINT32_MAX);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 0, SHAKE_COUNT + 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_LOW_LAST, SHAKE_COUNT), 0);

    /* An id of the other kind, or an unknown kind: 0. */
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SHAKE_LOW_FIRST, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SHAKE_LOW_LAST, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SHAKE_HIGH_FIRST, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SEND_FIRST, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SEND_LAST, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add((hb_envelope_kind_t)0, 0, 1), 0);
    ck_assert_uint_eq(hb_envelope_id_add((hb_envelope_kind_t)3, SEND_FIRST, 1), 0);

    /* Large n: the largest steps that fit, and any beyond, up to UINT64_MAX. */
    ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_LOW_FIRST, SHAKE_COUNT - 1), UINT32_MAX);
    ck_assert_uint_eq(hb_envelope_id_add(SEND, SEND_FIRST, SEND_COUNT - 1), SEND_LAST);
    static const uint64_t huge[] = {UINT64_C(1) << 32, (UINT64_C(1) << 32) + 1, UINT64_C(1) << 63,
                                    UINT64_MAX};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        ck_assert_uint_eq(hb_envelope_id_add(SHAKE, 0, huge[i]), 0);
        ck_assert_uint_eq(hb_envelope_id_add(SEND, 0, huge[i]), 0);
        ck_assert_uint_eq(hb_envelope_id_add(SHAKE, SHAKE_HIGH_FIRST, huge[i]), 0);
        ck_assert_uint_eq(hb_envelope_id_add(SEND, SEND_LAST, huge[i]), 0);
    }
}
END_TEST

/* hb_envelope_id_index: dense places across the shake space's jump, the inverse of stepping from
 * 0, and -1 outside the kind's space. */
START_TEST(test_envelope_id_index)
{
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SHAKE, SHAKE_LOW_FIRST), ==, 0);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SHAKE, SHAKE_LOW_LAST), ==,
               SHAKE_LOW_LAST - SHAKE_LOW_FIRST);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SHAKE, SHAKE_HIGH_FIRST), ==,
               SHAKE_LOW_LAST - SHAKE_LOW_FIRST + 1);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SHAKE, UINT32_MAX), ==, (int64_t)SHAKE_COUNT - 1);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SEND, SEND_FIRST), ==, 0);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SEND, SEND_LAST), ==, SEND_LAST - SEND_FIRST);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SHAKE, SEND_FIRST), ==, -1);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SEND, SHAKE_LOW_FIRST), ==, -1);
    EXPECT_INT(hb_envelope_id_index(HB_ENVELOPE_SHAKE, 0), ==, -1);
    hb_rand_t rng;
    hb_rand_seed(&rng, 11);
    for (unsigned i = 0; i < 100000; i++) {
        hb_envelope_kind_t kind = hb_rand_below(&rng, 2) ? HB_ENVELOPE_SHAKE : HB_ENVELOPE_SEND;
        uint64_t count =
            kind == HB_ENVELOPE_SHAKE ? SHAKE_COUNT : (uint64_t)SEND_LAST - SEND_FIRST + 1;
        uint64_t place = hb_rand_below(&rng, count);
        uint32_t id = hb_envelope_id_add(kind, 0, place + 1);
        EXPECT_INT(hb_envelope_id_index(kind, id), ==, (int64_t)place);
    }
}
END_TEST

/* Random ids and steps (small, near the boundaries, and huge) against the model; and stepping
 * by 1 across each boundary visits every id of the kind in order. */
START_TEST(test_envelope_id_add_matches_model)
{
    hb_rand_t rng;
    hb_rand_seed(&rng, 2024);
    static const uint32_t anchors[] = {0,          1,         SHAKE_LOW_FIRST,  SHAKE_LOW_LAST,
                                       SEND_FIRST, SEND_LAST, SHAKE_HIGH_FIRST, UINT32_MAX};
    for (unsigned i = 0; i < 200000; i++) {
        uint32_t id;
        switch (hb_rand_below(&rng, 3)) {
        case 0:
            id = (uint32_t)hb_rand_next(&rng);
            break;
        default:
            id = anchors[hb_rand_below(&rng, sizeof anchors / sizeof anchors[0])] +
                 (uint32_t)hb_rand_below(&rng, 64) - 32u;
            break;
        }
        uint64_t n;
        switch (hb_rand_below(&rng, 4)) {
        case 0:
            n = 1 + hb_rand_below(&rng, 16);
            break;
        case 1:
            n = 1 + hb_rand_below(&rng, UINT64_C(1) << 32);
            break;
        case 2:
            n = SHAKE_COUNT - 64 + hb_rand_below(&rng, 128);
            break;
        default:
            n = 1 + (hb_rand_next(&rng) >> 1);
            break;
        }
        hb_envelope_kind_t kind = hb_rand_below(&rng, 2) ? HB_ENVELOPE_SHAKE : HB_ENVELOPE_SEND;
        uint32_t got = hb_envelope_id_add(kind, id, n);
        uint32_t want = model_add(kind, id, n);
        if (got != want)
            ck_abort_msg("hb_envelope_id_add(%d, 0x%x, %llu) = 0x%x, want 0x%x", (int)kind, id,
                         (unsigned long long)n, got, want);
        if (got != 0)
            EXPECT_INT(hb_envelope_id_kind(got), ==, kind);
    }
    /* Stepping one by one across the shake jump and to the end of each space. */
    uint32_t id = SHAKE_LOW_LAST - 100;
    for (unsigned i = 0; i < 200; i++) {
        uint32_t next = hb_envelope_id_add(HB_ENVELOPE_SHAKE, id, 1);
        EXPECT_UINT(next, ==, i < 100 ? id + 1 : i == 100 ? SHAKE_HIGH_FIRST : id + 1);
        EXPECT_INT(hb_envelope_id_kind(next), ==, HB_ENVELOPE_SHAKE);
        id = next;
    }
    id = SEND_LAST - 50;
    for (unsigned i = 0; i < 50; i++)
        id = hb_envelope_id_add(HB_ENVELOPE_SEND, id, 1);
    ck_assert_uint_eq(id, SEND_LAST);
    ck_assert_uint_eq(hb_envelope_id_add(HB_ENVELOPE_SEND, id, 1), 0);
}
END_TEST

static Suite *envelope_suite(void)
{
    Suite *s = suite_create("envelope");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_envelope_split_is_deterministic);
    tcase_add_test(tc, test_envelope_split_equals_draw_loop);
    tcase_add_test(tc, test_envelope_split_rejects_bad_arguments);
    tcase_add_test(tc, test_envelope_split_degenerate_totals);
    tcase_add_test(tc, test_envelope_draw_edge_cases);
    tcase_add_test(tc, test_envelope_draw_reaches_both_ends);
    tcase_add_test(tc, test_envelope_max_totals);
    tcase_add_test(tc, test_envelope_id_kind_boundaries);
    tcase_add_test(tc, test_envelope_id_add_boundaries);
    tcase_add_test(tc, test_envelope_id_add_matches_model);
    tcase_add_test(tc, test_envelope_id_index);
    suite_add_tcase(s, tc);

    TCase *bulk = tcase_create("bulk");
    tcase_set_timeout(bulk, 30);
    tcase_add_test(bulk, test_envelope_split_conserves_and_caps);
    tcase_add_test(bulk, test_envelope_split_mean_is_fair);
    suite_add_tcase(s, bulk);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(envelope_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
