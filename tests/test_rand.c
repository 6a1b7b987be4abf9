/* Unit tests for the rand module: xoshiro256** known answers, splitmix64 seeding, unbiased
 * bounded draws and inclusive ranges. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "hongbao/rand.h"

/* The published xoshiro256** reference state {1, 2, 3, 4}: result = rotl(s[1] * 5, 7) * 9. */
START_TEST(test_rand_xoshiro_known_answers)
{
    static const uint64_t expect[] = {
        UINT64_C(11520),
        UINT64_C(0),
        UINT64_C(1509978240),
        UINT64_C(1215971899390074240),
        UINT64_C(1216172134540287360),
        UINT64_C(607988272756665600),
    };
    hb_rand_t r = {.s = {1, 2, 3, 4}};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        ck_assert_uint_eq(hb_rand_next(&r), expect[i]);
}
END_TEST

/* Seeding expands the seed with splitmix64: seed 0 gives its published first four outputs. */
START_TEST(test_rand_seed_is_splitmix64)
{
    hb_rand_t r;
    memset(&r, 0xa5, sizeof r);
    hb_rand_seed(&r, 0);
    ck_assert_uint_eq(r.s[0], UINT64_C(0xe220a8397b1dcdaf));
    ck_assert_uint_eq(r.s[1], UINT64_C(0x6e789e6aa1b965f4));
    ck_assert_uint_eq(r.s[2], UINT64_C(0x06c45d188009454f));
    ck_assert_uint_eq(r.s[3], UINT64_C(0xf88bb8a8724c81ec));
    ck_assert_uint_eq(hb_rand_next(&r), UINT64_C(0x99ec5f36cb75f2b4));
    ck_assert_uint_eq(hb_rand_next(&r), UINT64_C(0xbf6e1f784956452a));

    hb_rand_seed(&r, 42);
    ck_assert_uint_eq(hb_rand_next(&r), UINT64_C(0x15780b2e0c2ec716));
    ck_assert_uint_eq(hb_rand_next(&r), UINT64_C(0x6104d9866d113a7e));
}
END_TEST

START_TEST(test_rand_same_seed_same_sequence)
{
    hb_rand_t a, b;
    hb_rand_seed(&a, UINT64_C(0x0123456789abcdef));
    hb_rand_seed(&b, UINT64_C(0x0123456789abcdef));
    for (int i = 0; i < 10000; i++)
        EXPECT_UINT(hb_rand_next(&a), ==, hb_rand_next(&b));

    /* Reseeding restarts the sequence; a copy continues it identically. */
    hb_rand_seed(&a, 5);
    uint64_t first = hb_rand_next(&a);
    hb_rand_seed(&a, 5);
    ck_assert_uint_eq(hb_rand_next(&a), first);
    hb_rand_t fork = a;
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(hb_rand_next(&fork), hb_rand_next(&a));
}
END_TEST

START_TEST(test_rand_different_seeds_differ)
{
    /* The first outputs of seeds 0..255 are pairwise distinct. */
    enum { NSEEDS = 256 };
    uint64_t first[NSEEDS];
    for (uint64_t seed = 0; seed < NSEEDS; seed++) {
        hb_rand_t r;
        hb_rand_seed(&r, seed);
        first[seed] = hb_rand_next(&r);
        for (uint64_t j = 0; j < seed; j++)
            ck_assert_uint_ne(first[seed], first[j]);
    }

    /* Two neighbouring seeds share (almost) none of their first 1000 outputs position-wise. */
    hb_rand_t a, b;
    hb_rand_seed(&a, 1);
    hb_rand_seed(&b, 2);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += hb_rand_next(&a) == hb_rand_next(&b);
    ck_assert_int_eq(same, 0);
}
END_TEST

/* Fixed outputs of hb_rand_below, including huge bounds (so the full 128-bit product matters)
 * and a first draw that is rejected (bound 3 * 2^62 rejects a quarter of the raw values). */
START_TEST(test_rand_below_known_answers)
{
    static const struct {
        uint64_t bound, value;
    } kat[] = {
        {UINT64_C(0xc000000000000000), UINT64_C(0x6c49baade56264de)},
        {UINT64_C(0xc000000000000000), UINT64_C(0x489e00881fb19052)},
        {UINT64_C(0x8000000000000001), UINT64_C(0x6d853812bbb0baee)},
        {UINT64_C(0x8000000000000001), UINT64_C(0x649a12c7eaab1f8a)},
        {UINT64_MAX, UINT64_C(0x34af27f3d7a8965f)},
        {UINT64_MAX, UINT64_C(0x472277b98be4051b)},
        {UINT64_C(1000003), UINT64_C(0xe51d)},
        {UINT64_C(1000003), UINT64_C(0xce8f7)},
        {UINT64_C(0xdeadbeefcafebabe), UINT64_C(0x8213b31795b538dd)},
        {UINT64_C(0xdeadbeefcafebabe), UINT64_C(0xa4dec2fd050b9a4b)},
    };
    hb_rand_t r;
    hb_rand_seed(&r, 99);
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++)
        ck_assert_uint_eq(hb_rand_below(&r, kat[i].bound), kat[i].value);

    static const uint64_t digits[] = {7, 2, 8, 9, 9, 8, 0, 1, 4, 1, 5, 7, 9, 8, 4, 5, 2, 4, 1, 1};
    hb_rand_seed(&r, 7);
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++)
        ck_assert_uint_eq(hb_rand_below(&r, 10), digits[i]);
}
END_TEST

START_TEST(test_rand_below_edge_bounds)
{
    hb_rand_t r, copy;
    hb_rand_seed(&r, 11);
    for (int i = 0; i < 10000; i++)
        EXPECT_UINT(hb_rand_below(&r, 1), ==, 0);

    /* Bound 0 gives 0 and leaves the generator untouched. */
    copy = r;
    ck_assert_uint_eq(hb_rand_below(&r, 0), 0);
    ck_assert_uint_eq(hb_rand_next(&r), hb_rand_next(&copy));
}
END_TEST

START_TEST(test_rand_below_stays_in_range)
{
    static const uint64_t bounds[] = {2,
                                      3,
                                      7,
                                      10,
                                      300,
                                      UINT64_C(1) << 32,
                                      (UINT64_C(1) << 32) + 1,
                                      UINT64_C(0x8000000000000001),
                                      UINT64_C(0xc000000000000000),
                                      UINT64_MAX - 1,
                                      UINT64_MAX};
    hb_rand_t r;
    hb_rand_seed(&r, 12);
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        uint64_t max_seen = 0;
        for (int i = 0; i < 20000; i++) {
            uint64_t v = hb_rand_below(&r, bounds[b]);
            EXPECT_UINT(v, <, bounds[b]);
            if (v > max_seen)
                max_seen = v;
        }
        /* The top of the range is reached too: the largest of 20000 draws lies in the top
         * tenth (small bounds: it is bound - 1). */
        ck_assert_uint_ge(max_seen, bounds[b] - 1 - (bounds[b] - 1) / 10);
    }
}
END_TEST

/* Chi-square over 10 buckets, 1e6 draws: 9 degrees of freedom, mean 9; 40 is far beyond the
 * 0.999 quantile (27.9), so only a real bias fails. The seed is fixed, so the test is stable. */
START_TEST(test_rand_below_is_uniform)
{
    enum { BUCKETS = 10, DRAWS = 1000000 };
    uint64_t count[BUCKETS] = {0};
    hb_rand_t r;
    hb_rand_seed(&r, 2024);
    for (int i = 0; i < DRAWS; i++)
        count[hb_rand_below(&r, BUCKETS)]++;
    double expected = (double)DRAWS / BUCKETS, chi2 = 0;
    for (int k = 0; k < BUCKETS; k++) {
        double d = (double)count[k] - expected;
        chi2 += d * d / expected;
    }
    ck_assert_double_lt(chi2, 40.0);
}
END_TEST

/* With bound 3 * 2^62, reducing x mod bound would put half of all results in the first third
 * [0, 2^62) and a quarter in each other third; an unbiased draw puts a third in each. */
START_TEST(test_rand_below_has_no_modulo_bias)
{
    enum { DRAWS = 300000 };
    const uint64_t third = UINT64_C(1) << 62;
    uint64_t count[3] = {0};
    hb_rand_t r;
    hb_rand_seed(&r, 31337);
    for (int i = 0; i < DRAWS; i++)
        count[hb_rand_below(&r, 3 * third) / third]++;
    for (int k = 0; k < 3; k++) {
        /* 1/3 +- 0.01 (the standard deviation of each share is ~0.00086). */
        ck_assert_uint_gt(count[k], (uint64_t)(DRAWS * (1.0 / 3 - 0.01)));
        ck_assert_uint_lt(count[k], (uint64_t)(DRAWS * (1.0 / 3 + 0.01)));
    }
}
END_TEST

START_TEST(test_rand_range_is_inclusive)
{
    hb_rand_t r;
    hb_rand_seed(&r, 13);
    int seen[3] = {0};
    for (int i = 0; i < 3000; i++) {
        uint64_t v = hb_rand_range(&r, 5, 7);
        EXPECT_UINT(v, >=, 5);
        EXPECT_UINT(v, <=, 7);
        seen[v - 5]++;
    }
    for (int k = 0; k < 3; k++)
        ck_assert_int_gt(seen[k], 800);

    /* The top of the 64-bit range is reachable. */
    int top = 0, below_top = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = hb_rand_range(&r, UINT64_MAX - 1, UINT64_MAX);
        ck_assert_uint_ge(v, UINT64_MAX - 1);
        if (v == UINT64_MAX)
            top++;
        else
            below_top++;
    }
    ck_assert_int_gt(top, 0);
    ck_assert_int_gt(below_top, 0);

    /* hi - lo = UINT64_MAX - 1: never lo - 1 (0), never a wrapped value. */
    for (int i = 0; i < 10000; i++)
        EXPECT_UINT(hb_rand_range(&r, 1, UINT64_MAX), !=, 0);
}
END_TEST

START_TEST(test_rand_range_edge_cases)
{
    hb_rand_t r, copy;
    hb_rand_seed(&r, 14);

    /* lo > hi and lo == hi give lo without consuming the sequence. */
    copy = r;
    ck_assert_uint_eq(hb_rand_range(&r, 10, 3), 10);
    ck_assert_uint_eq(hb_rand_range(&r, UINT64_MAX, 0), UINT64_MAX);
    ck_assert_uint_eq(hb_rand_range(&r, 42, 42), 42);
    ck_assert_uint_eq(hb_rand_range(&r, 0, 0), 0);
    ck_assert_uint_eq(hb_rand_range(&r, UINT64_MAX, UINT64_MAX), UINT64_MAX);
    ck_assert_uint_eq(hb_rand_next(&r), hb_rand_next(&copy));

    /* The full range [0, UINT64_MAX]: all 64 bits vary (each bit is seen both 0 and 1). */
    uint64_t ones = 0, zeros = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = hb_rand_range(&r, 0, UINT64_MAX);
        ones |= v;
        zeros |= ~v;
    }
    ck_assert_uint_eq(ones, UINT64_MAX);
    ck_assert_uint_eq(zeros, UINT64_MAX);

    /* A range at an offset equals lo + below(hi - lo + 1) of the same state. */
    copy = r;
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(hb_rand_range(&r, 1000, 1999), 1000 + hb_rand_below(&copy, 1000));
}
END_TEST

static Suite *rand_suite(void)
{
    Suite *s = suite_create("rand");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_rand_xoshiro_known_answers);
    tcase_add_test(tc, test_rand_seed_is_splitmix64);
    tcase_add_test(tc, test_rand_same_seed_same_sequence);
    tcase_add_test(tc, test_rand_different_seeds_differ);
    tcase_add_test(tc, test_rand_below_known_answers);
    tcase_add_test(tc, test_rand_below_edge_bounds);
    tcase_add_test(tc, test_rand_below_stays_in_range);
    tcase_add_test(tc, test_rand_range_is_inclusive);
    tcase_add_test(tc, test_rand_range_edge_cases);
    suite_add_tcase(s, tc);

    TCase *stats = tcase_create("statistics");
    tcase_set_timeout(stats, 30);
    tcase_add_test(stats, test_rand_below_is_uniform);
    tcase_add_test(stats, test_rand_below_has_no_modulo_bias);
    suite_add_tcase(s, stats);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rand_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
