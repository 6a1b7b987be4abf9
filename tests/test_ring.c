/* Unit tests for the ring module (rendezvous hashing of users over instances): pinned keys and
 * orders (every process and version computes the same), balance, what adding and removing an
 * instance moves (about 1/(K+1) of users, only to the new one; only the removed one's users, to
 * their second choice), the spread of a dead instance's users, and the walk of hb_ring_next.
 * Core only: no libuv. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/ring.h"

#define USERS 100000u
#define KMAX  16

/* Keys of instances named like the client names servers: "127.0.0.1:PORT". */
static void make_keys(uint64_t *keys, uint32_t n, unsigned first_port)
{
    for (uint32_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "127.0.0.1:%u", first_port + i);
        keys[i] = hb_ring_key(name);
    }
}

/* Five standard deviations of a binomial count of `trials` with probability p, plus one: a bound
 * that a fair hash meets (the inputs are fixed, so the test is deterministic) and a biased one
 * misses. */
static double tolerance(double trials, double p)
{
    return 5 * sqrt(trials * p * (1 - p)) + 1;
}

/* ---- stability ---- */

/* Values computed outside the library (a few lines of Python with the same FNV-1a and splitmix64
 * finaliser): a change to the hashing would silently re-route every user of a fleet whose
 * processes run different versions. */
START_TEST(test_keys_and_orders_are_pinned)
{
    ck_assert_uint_eq(hb_ring_key("127.0.0.1:7100"), UINT64_C(0xd934c8ed878ec9c7));
    ck_assert_uint_eq(hb_ring_key("127.0.0.1:7101"), UINT64_C(0x041b7d78a1ee9c8f));
    ck_assert_uint_eq(hb_ring_key("127.0.0.1:7102"), UINT64_C(0x88e8bdf6c8188f2d));
    ck_assert_uint_eq(hb_ring_key("[::1]:7100"), UINT64_C(0x9db0ad5856ef1cf6));
    ck_assert_uint_eq(hb_ring_key(""), UINT64_C(0xf52a15e9a9b5e89b));
    ck_assert_uint_eq(hb_ring_key(NULL), hb_ring_key(""));
    uint64_t keys[3];
    make_keys(keys, 3, 7100);
    ck_assert_uint_eq(hb_ring_weight(keys[0], 0), UINT64_C(0x427bfb9021bec080));
    ck_assert_uint_eq(hb_ring_weight(keys[0], 42), UINT64_C(0x800ebeba677e940c));
    /* Whole orders, first choice first. */
    static const struct {
        uint32_t user;
        uint32_t order[3];
    } want[] = {{0, {2, 0, 1}}, {1, {2, 0, 1}},  {2, {1, 0, 2}},
                {3, {2, 0, 1}}, {42, {1, 0, 2}}, {UINT32_MAX, {2, 1, 0}}};
    for (size_t t = 0; t < sizeof want / sizeof want[0]; t++) {
        uint32_t i = hb_ring_pick(keys, 3, want[t].user);
        ck_assert_uint_eq(i, want[t].order[0]);
        i = hb_ring_next(keys, 3, want[t].user, i);
        ck_assert_uint_eq(i, want[t].order[1]);
        i = hb_ring_next(keys, 3, want[t].user, i);
        ck_assert_uint_eq(i, want[t].order[2]);
        ck_assert_uint_eq(hb_ring_next(keys, 3, want[t].user, i), want[t].order[0]);
    }
}
END_TEST

/* The choice depends on the set of keys, not on their order in the list. */
START_TEST(test_order_of_the_list_does_not_matter)
{
    uint64_t keys[8], rev[8];
    make_keys(keys, 8, 9000);
    for (int i = 0; i < 8; i++)
        rev[i] = keys[7 - i];
    for (uint32_t u = 0; u < USERS; u += 7) {
        uint32_t a = hb_ring_pick(keys, 8, u), b = hb_ring_pick(rev, 8, u);
        ck_assert_uint_eq(keys[a], rev[b]);
        ck_assert_uint_eq(keys[hb_ring_next(keys, 8, u, a)], rev[hb_ring_next(rev, 8, u, b)]);
    }
}
END_TEST

/* ---- balance and movement ---- */

START_TEST(test_users_spread_evenly)
{
    uint64_t keys[KMAX];
    for (uint32_t k = 1; k <= KMAX; k++) {
        make_keys(keys, k, 7100);
        uint32_t count[KMAX] = {0};
        for (uint32_t u = 0; u < USERS; u++)
            count[hb_ring_pick(keys, k, u)]++;
        double expect = (double)USERS / k, tol = tolerance(USERS, 1.0 / k);
        for (uint32_t i = 0; i < k; i++)
            ck_assert_msg(fabs(count[i] - expect) <= tol,
                          "K=%u: instance %u has %u users, expected %.0f +- %.0f", k, i, count[i],
                          expect, tol);
    }
}
END_TEST

/* Adding a K+1-th instance moves about 1/(K+1) of the users, every one of them to the new one. */
START_TEST(test_adding_moves_only_to_the_new_instance)
{
    uint64_t keys[KMAX + 1];
    for (uint32_t k = 1; k <= 8; k++) {
        make_keys(keys, k + 1, 7100);
        uint32_t moved = 0;
        for (uint32_t u = 0; u < USERS; u++) {
            uint32_t before = hb_ring_pick(keys, k, u), after = hb_ring_pick(keys, k + 1, u);
            if (before != after) {
                ck_assert_uint_eq(after, k);
                moved++;
            }
        }
        double expect = (double)USERS / (k + 1), tol = tolerance(USERS, 1.0 / (k + 1));
        ck_assert_msg(fabs(moved - expect) <= tol,
                      "K=%u -> %u: %u users moved, expected %.0f +- %.0f", k, k + 1, moved, expect,
                      tol);
    }
}
END_TEST

/* Removing an instance (from the middle of the list, so the indices after it shift) moves only
 * its users, each to its second choice, and they spread evenly over the survivors. */
START_TEST(test_removing_moves_only_its_users_to_their_next)
{
    uint64_t keys[KMAX], rest[KMAX];
    for (uint32_t k = 2; k <= 9; k++) {
        make_keys(keys, k, 7100);
        uint32_t gone = k / 2, m = 0;
        for (uint32_t i = 0; i < k; i++)
            if (i != gone)
                rest[m++] = keys[i];
        uint32_t landed[KMAX] = {0}, orphans = 0;
        for (uint32_t u = 0; u < USERS; u++) {
            uint32_t before = hb_ring_pick(keys, k, u);
            uint64_t now = rest[hb_ring_pick(rest, k - 1, u)];
            if (before != gone) {
                ck_assert_uint_eq(now, keys[before]);
                continue;
            }
            uint32_t next = hb_ring_next(keys, k, u, gone);
            ck_assert_uint_ne(next, gone);
            ck_assert_uint_eq(now, keys[next]);
            landed[next]++;
            orphans++;
        }
        double share = (double)orphans / (k - 1), tol = tolerance(orphans, 1.0 / (k - 1));
        for (uint32_t i = 0; i < k; i++) {
            if (i == gone)
                continue;
            ck_assert_msg(fabs(landed[i] - share) <= tol,
                          "K=%u, instance %u removed: %u of its %u users went to %u, expected "
                          "%.0f +- %.0f",
                          k, gone, landed[i], orphans, i, share, tol);
        }
    }
}
END_TEST

/* ---- the walk ---- */

/* From the first choice, hb_ring_next visits every instance once by falling weight, then comes
 * back to the first choice. */
START_TEST(test_next_walks_every_instance_by_weight)
{
    uint64_t keys[KMAX];
    for (uint32_t k = 1; k <= KMAX; k++) {
        make_keys(keys, k, 7100);
        for (uint32_t u = 0; u < 5000; u++) {
            uint32_t first = hb_ring_pick(keys, k, u), at = first;
            unsigned seen[KMAX] = {0};
            for (uint32_t step = 0; step < k; step++) {
                ck_assert_uint_lt(at, k);
                seen[at]++;
                uint32_t next = hb_ring_next(keys, k, u, at);
                if (step + 1 < k)
                    ck_assert_uint_gt(hb_ring_weight(keys[at], u), hb_ring_weight(keys[next], u));
                at = next;
            }
            ck_assert_uint_eq(at, first);
            for (uint32_t i = 0; i < k; i++)
                ck_assert_uint_eq(seen[i], 1);
        }
    }
}
END_TEST

/* A key listed twice is one instance twice: the walk still visits every index once. */
START_TEST(test_equal_keys_still_walk_every_index)
{
    uint64_t keys[4];
    make_keys(keys, 3, 7100);
    keys[3] = keys[1];
    for (uint32_t u = 0; u < 1000; u++) {
        uint32_t at = hb_ring_pick(keys, 4, u);
        unsigned seen[4] = {0};
        for (int step = 0; step < 4; step++) {
            seen[at]++;
            at = hb_ring_next(keys, 4, u, at);
        }
        for (int i = 0; i < 4; i++)
            ck_assert_uint_eq(seen[i], 1);
    }
}
END_TEST

START_TEST(test_empty_and_out_of_range)
{
    uint64_t keys[2];
    make_keys(keys, 2, 7100);
    ck_assert_uint_eq(hb_ring_pick(keys, 0, 5), HB_RING_NONE);
    ck_assert_uint_eq(hb_ring_pick(NULL, 2, 5), HB_RING_NONE);
    ck_assert_uint_eq(hb_ring_next(keys, 2, 5, 2), HB_RING_NONE);
    ck_assert_uint_eq(hb_ring_next(keys, 0, 5, 0), HB_RING_NONE);
    ck_assert_uint_eq(hb_ring_next(NULL, 2, 5, 0), HB_RING_NONE);
    /* One instance: everybody's, and its own next. */
    ck_assert_uint_eq(hb_ring_pick(keys, 1, 5), 0);
    ck_assert_uint_eq(hb_ring_next(keys, 1, 5, 0), 0);
    /* Names that differ in one character differ in key. */
    ck_assert_uint_ne(hb_ring_key("127.0.0.1:7100"), hb_ring_key("127.0.0.1:7101"));
    ck_assert_uint_ne(hb_ring_key("127.0.0.1:7100"), hb_ring_key("127.0.0.2:7100"));
}
END_TEST

static Suite *ring_suite(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_keys_and_orders_are_pinned);
    tcase_add_test(tc, test_order_of_the_list_does_not_matter);
    tcase_add_test(tc, test_users_spread_evenly);
    tcase_add_test(tc, test_adding_moves_only_to_the_new_instance);
    tcase_add_test(tc, test_removing_moves_only_its_users_to_their_next);
    tcase_add_test(tc, test_next_walks_every_instance_by_weight);
    tcase_add_test(tc, test_equal_keys_still_walk_every_index);
    tcase_add_test(tc, test_empty_and_out_of_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ring_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
