/* Unit tests for the sched module: exact per-second counts, fairness, spread of user ranges and
 * inside the second, next() against brute force, microsecond placement, the walk over a range's
 * sends against a scan of the whole schedule, rate changes, the reference rule, and limits. */
#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao.h"

/* A cheap check for hot loops. Check's own assertions record a mark point (a pipe write) on every
 * pass, too slow for millions of checks: this calls into Check only to fail, and prints both
 * values and the case being checked (a string ctx in scope). */
#define REQUIRE_U64(a, op, b)                                                                      \
    do {                                                                                           \
        uint64_t a_ = (a), b_ = (b);                                                               \
        if (!(a_ op b_))                                                                           \
            ck_abort_msg("%s %s %s: %" PRIu64 " vs %" PRIu64 " [%s]", #a, #op, #b, a_, b_, ctx);   \
    } while (0)

#define UNIX_NOW_S UINT64_C(1700000000)

/* splitmix64: a local, seeded generator so the property tests are reproducible. */
static uint64_t prng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A uniform-enough value in [lo, hi] (the modulo bias is irrelevant here). */
static uint64_t prng_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
    uint64_t span = hi - lo + 1;
    return span == 0 ? prng_next(state) : lo + prng_next(state) % span;
}

/* A schedule at qps from second epoch_s on whose first send there has index base_k: base_k sends
 * at rate base_k in the second before, then the rate change. */
static hb_sched_t make_sched(uint64_t users, uint64_t qps, uint64_t epoch_s, uint64_t base_k)
{
    hb_sched_t s;
    if (base_k == 0) {
        ck_assert_int_eq(hb_sched_init(&s, users, qps, epoch_s), 0);
    } else {
        ck_assert_int_eq(hb_sched_init(&s, users, base_k, epoch_s - 1), 0);
        ck_assert_int_eq(hb_sched_set_rate(&s, qps, epoch_s), 0);
    }
    ck_assert_uint_eq(s.base_k, base_k);
    ck_assert_uint_eq(s.epoch_s, epoch_s);
    ck_assert_uint_eq(s.qps, qps);
    return s;
}

/* The number of sends a second makes of each user, or of users [0, L), must be the floor or the
 * ceiling of num / den: den * count lies in (num - den, num + den). */
static int near_share(uint64_t count, uint64_t num, uint64_t den)
{
    uint64_t lo = num / den, hi = lo + (num % den != 0);
    return count >= lo && count <= hi;
}

START_TEST(test_init_and_set_rate_validate)
{
    hb_sched_t s, before;
    ck_assert_int_eq(hb_sched_init(&s, 0, 10, 5), HB_EINVAL);
    ck_assert_int_eq(hb_sched_init(&s, HB_SCHED_MAX_USERS + 1, 10, 5), HB_EINVAL);
    ck_assert_int_eq(hb_sched_init(&s, 10, HB_SCHED_MAX_QPS + 1, 5), HB_EINVAL);
    ck_assert_int_eq(hb_sched_init(&s, 10, 10, HB_SCHED_MAX_S), HB_EINVAL);
    ck_assert_int_eq(hb_sched_init(&s, HB_SCHED_MAX_USERS, HB_SCHED_MAX_QPS, HB_SCHED_MAX_S - 1),
                     0);
    ck_assert_int_eq(hb_sched_init(&s, 10, 0, 0), 0);
    ck_assert_int_eq(hb_sched_init(&s, 1000, 60, 5), 0);
    ck_assert_uint_eq(s.users, 1000);
    ck_assert_uint_eq(s.qps, 60);
    ck_assert_uint_eq(s.epoch_s, 5);
    ck_assert_uint_eq(s.base_k, 0);

    before = s;
    ck_assert_int_eq(hb_sched_set_rate(&s, 70, 4), HB_EINVAL);
    ck_assert_int_eq(hb_sched_set_rate(&s, 70, HB_SCHED_MAX_S), HB_EINVAL);
    ck_assert_int_eq(hb_sched_set_rate(&s, HB_SCHED_MAX_QPS + 1, 6), HB_EINVAL);
    ck_assert_mem_eq(&s, &before, sizeof s);

    /* A change in the epoch second itself only replaces the rate. */
    ck_assert_int_eq(hb_sched_set_rate(&s, 70, 5), 0);
    ck_assert_uint_eq(s.base_k, 0);
    ck_assert_uint_eq(s.qps, 70);

    ck_assert_int_eq(hb_sched_next(&s, 1000, 5000, NULL, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_sched_next(&s, 0, HB_SCHED_MAX_S * 1000, NULL, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_sched_next(&s, 999, HB_SCHED_MAX_S * 1000 - 1, NULL, NULL), 0);
}
END_TEST

/* The example of docs/scheduler.md, users = 10, qps = 4: gcd 2, 5 columns of 2 visited in slot
 * order 0, 3, 1, 4, 2 (column c in slot 2c mod 5). */
START_TEST(test_worked_example)
{
    static const uint64_t order[10] = {0, 5, 3, 8, 1, 6, 4, 9, 2, 7};
    hb_sched_t s;
    ck_assert_int_eq(hb_sched_init(&s, 10, 4, 100), 0);
    for (uint64_t k = 0; k < 40; k++) {
        ck_assert_uint_eq(hb_sched_user_of(&s, k), order[k % 10]);
        ck_assert_uint_eq(hb_sched_time_of(&s, k), (100 + k / 4) * 1000 + (k % 4) * 250);
    }
    uint64_t k = 0, when = 0;
    ck_assert_int_eq(hb_sched_next(&s, 8, 100001, &k, &when), 0);
    ck_assert_uint_eq(k, 3);
    ck_assert_uint_eq(when, 100750);
    ck_assert_int_eq(hb_sched_next(&s, 8, 100751, &k, &when), 0);
    ck_assert_uint_eq(k, 13);
    ck_assert_uint_eq(when, 103250);
}
END_TEST

/* Every second has exactly qps sends, counted by the time time_of gives each index, for every
 * users in 1..60 and qps in 0..130, with the numbering starting at 0 and elsewhere. */
START_TEST(test_exact_count_per_second)
{
    enum { SECONDS = 5 };
    char ctx[96];
    for (uint64_t users = 1; users <= 60; users++) {
        for (uint64_t qps = 0; qps <= 130; qps++) {
            for (uint64_t base = 0; base <= 37; base += 37) {
                hb_sched_t s = make_sched(users, qps, 1000, base);
                uint64_t count[SECONDS + 1] = {0};
                snprintf(ctx, sizeof ctx, "users %" PRIu64 " qps %" PRIu64 " base %" PRIu64, users,
                         qps, base);
                if (qps == 0) {
                    REQUIRE_U64(hb_sched_time_of(&s, base), ==, UINT64_MAX);
                    REQUIRE_U64(hb_sched_first_at(&s, 1003500), ==, base);
                    continue;
                }
                for (uint64_t k = base; k < base + (SECONDS + 1) * qps + 1; k++) {
                    uint64_t sec = hb_sched_time_of(&s, k) / 1000;
                    REQUIRE_U64(sec, >=, 1000);
                    if (sec - 1000 < SECONDS + 1)
                        count[sec - 1000]++;
                }
                for (uint64_t t = 0; t < SECONDS; t++) {
                    REQUIRE_U64(count[t], ==, qps);
                    uint64_t k = hb_sched_first_at(&s, (1000 + t) * 1000);
                    REQUIRE_U64(k, ==, base + t * qps);
                    REQUIRE_U64(hb_sched_time_of(&s, k), ==, (1000 + t) * 1000);
                }
            }
        }
    }
}
END_TEST

/* Over any window of whole seconds each user sends floor or ceil of T * qps / users times, so two
 * users' counts differ by at most one. */
START_TEST(test_fairness_over_whole_seconds)
{
    enum { STARTS = 4, LENGTH = 8 };
    char ctx[96];
    uint32_t count[60];
    for (uint64_t users = 1; users <= 60; users++) {
        for (uint64_t qps = 1; qps <= 130; qps++) {
            hb_sched_t s = make_sched(users, qps, 50, (users * 7 + qps) % 23);
            for (uint64_t a = 0; a < STARTS; a++) {
                uint64_t k = hb_sched_first_at(&s, (50 + a) * 1000);
                memset(count, 0, sizeof count);
                for (uint64_t t = 1; t <= LENGTH; t++) {
                    uint64_t end = hb_sched_first_at(&s, (50 + a + t) * 1000);
                    for (; k < end; k++)
                        count[hb_sched_user_of(&s, k)]++;
                    uint32_t lo = UINT32_MAX, hi = 0;
                    for (uint64_t u = 0; u < users; u++) {
                        lo = count[u] < lo ? count[u] : lo;
                        hi = count[u] > hi ? count[u] : hi;
                    }
                    snprintf(ctx, sizeof ctx,
                             "users %" PRIu64 " qps %" PRIu64 " from %" PRIu64 " T %" PRIu64, users,
                             qps, a, t);
                    REQUIRE_U64(hi - lo, <=, 1);
                    REQUIRE_U64(near_share(lo, t * qps, users), ==, 1);
                    REQUIRE_U64(near_share(hi, t * qps, users), ==, 1);
                }
            }
        }
    }
}
END_TEST

/* The bound the rotation guarantees (docs/scheduler.md proves it): in every second, users [0, L)
 * make floor or ceil of qps * L / users sends, for every L; hence any contiguous range [a, a + L)
 * makes within less than 2 of its share. Checked over a whole rotation cycle (at most users
 * seconds) for every users in 1..60, qps in 1..130 and three numbering offsets. */
START_TEST(test_user_ranges_spread_over_seconds)
{
    char ctx[96];
    uint64_t count[61];
    for (uint64_t users = 1; users <= 60; users++) {
        for (uint64_t qps = 1; qps <= 130; qps++) {
            static const uint64_t bases[] = {0, 1, 41};
            for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
                hb_sched_t s = make_sched(users, qps, 10, bases[b]);
                uint64_t k = s.base_k;
                for (uint64_t t = 0; t < users; t++) {
                    uint64_t end = hb_sched_first_at(&s, (11 + t) * 1000);
                    memset(count, 0, sizeof count);
                    for (; k < end; k++)
                        count[hb_sched_user_of(&s, k) + 1]++;
                    for (uint64_t u = 1; u <= users; u++)
                        count[u] += count[u - 1]; /* count[L]: sends by users [0, L) */
                    snprintf(ctx, sizeof ctx,
                             "users %" PRIu64 " qps %" PRIu64 " base %" PRIu64 " second %" PRIu64,
                             users, qps, bases[b], t);
                    for (uint64_t l = 1; l <= users; l++)
                        REQUIRE_U64(near_share(count[l], qps * l, users), ==, 1);
                    uint64_t quarter = users / 4;
                    for (uint64_t a = 0; a + quarter <= users; a++) {
                        uint64_t in = count[a + quarter] - count[a];
                        REQUIRE_U64(in * users + 2 * users, >, qps * quarter);
                        REQUIRE_U64(in * users, <, qps * quarter + 2 * users);
                    }
                }
            }
        }
    }
}
END_TEST

/* Inside a second, ms offsets are non-decreasing in k, start at 0, stay below 1000, and each
 * 100 ms phase holds floor or ceil of qps / 10 sends. */
START_TEST(test_spread_inside_the_second)
{
    char ctx[96];
    for (uint64_t qps = 1; qps <= 3000; qps++) {
        hb_sched_t s = make_sched(977, qps, UNIX_NOW_S, qps % 11);
        uint64_t phase[10] = {0};
        uint64_t sec_ms = (UNIX_NOW_S + 2) * 1000;
        uint64_t k0 = hb_sched_first_at(&s, sec_ms), prev = sec_ms;
        snprintf(ctx, sizeof ctx, "qps %" PRIu64, qps);
        REQUIRE_U64(hb_sched_time_of(&s, k0), ==, sec_ms);
        REQUIRE_U64(hb_sched_time_of(&s, k0 - 1), <, sec_ms);
        for (uint64_t k = k0; k < k0 + qps; k++) {
            uint64_t at = hb_sched_time_of(&s, k);
            REQUIRE_U64(at, >=, prev);
            REQUIRE_U64(at - sec_ms, <, 1000);
            phase[(at - sec_ms) / 100]++;
            prev = at;
        }
        REQUIRE_U64(hb_sched_time_of(&s, k0 + qps), ==, sec_ms + 1000);
        if (qps >= 10)
            for (int p = 0; p < 10; p++)
                REQUIRE_U64(near_share(phase[p], qps, 10), ==, 1);
    }
    /* Large rates too: 60,000/s puts exactly 60 sends in every millisecond. */
    hb_sched_t s = make_sched(1000000, 60000, UNIX_NOW_S, 0);
    for (uint64_t i = 0; i < 60000; i++)
        ck_assert_uint_eq(hb_sched_time_of(&s, i), UNIX_NOW_S * 1000 + i / 60);
}
END_TEST

/* first_at against its definition: the smallest index whose time is at or after at_ms. */
START_TEST(test_first_at_rounding)
{
    char ctx[96];
    for (uint64_t qps = 1; qps <= 2100; qps += (qps < 40 ? 1 : 97)) {
        hb_sched_t s = make_sched(53, qps, 300, 5);
        snprintf(ctx, sizeof ctx, "qps %" PRIu64, qps);
        REQUIRE_U64(hb_sched_first_at(&s, 0), ==, 5);
        REQUIRE_U64(hb_sched_first_at(&s, 299999), ==, 5);
        uint64_t k = s.base_k;
        for (uint64_t at = 300000; at < 302500; at++) {
            while (hb_sched_time_of(&s, k) < at)
                k++;
            REQUIRE_U64(hb_sched_first_at(&s, at), ==, k);
        }
    }
}
END_TEST

/* One rotation cycle visits every user once: user_of over any users consecutive indices is a
 * permutation, and next() finds each user inside it. */
START_TEST(test_rotation_is_a_permutation)
{
    char ctx[96];
    uint8_t seen[200];
    for (uint64_t users = 1; users <= 200; users++) {
        for (uint64_t qps = 0; qps <= 250; qps++) {
            hb_sched_t s;
            ck_assert_int_eq(hb_sched_init(&s, users, qps, 0), 0);
            snprintf(ctx, sizeof ctx, "users %" PRIu64 " qps %" PRIu64, users, qps);
            memset(seen, 0, sizeof seen);
            for (uint64_t k = users * 3; k < users * 4; k++) {
                uint64_t u = hb_sched_user_of(&s, k);
                REQUIRE_U64(u, <, users);
                REQUIRE_U64(seen[u], ==, 0);
                seen[u] = 1;
            }
            if (qps == 0)
                continue;
            for (uint64_t u = 0; u < users; u++) {
                uint64_t k = 0;
                REQUIRE_U64((uint64_t)hb_sched_next(&s, u, 0, &k, NULL), ==, 0);
                REQUIRE_U64(k, <, users);
                REQUIRE_U64(hb_sched_user_of(&s, k), ==, u);
            }
        }
    }
}
END_TEST

/* next() against brute force at every millisecond of a span that starts before the epoch (so
 * every send time, at which the send itself is the answer, is included), for every user, for
 * users in 1..16 and qps in 1..40 (below and above users), numbering from 0 and from 29. */
START_TEST(test_next_matches_brute_force_small)
{
    enum { SPAN_MS = 2500 };
    uint64_t nxt[16];
    for (uint64_t users = 1; users <= 16; users++) {
        for (uint64_t qps = 1; qps <= 40; qps++) {
            for (uint64_t base = 0; base <= 29; base += 29) {
                hb_sched_t s = make_sched(users, qps, 700, base);
                uint64_t from = 700 * 1000 - 3, to = from + SPAN_MS;
                /* Walk the indices downward from past the span: nxt[u] is user u's first send at
                 * or after index kk, and kk is the first index whose time is at or after at. */
                uint64_t kk = base + (SPAN_MS / 1000 + 2) * qps + users;
                for (uint64_t u = 0; u < users; u++)
                    nxt[u] = UINT64_MAX;
                for (uint64_t at = to; at-- > from;) {
                    while (kk > base && hb_sched_time_of(&s, kk - 1) >= at) {
                        kk--;
                        nxt[hb_sched_user_of(&s, kk)] = kk;
                    }
                    for (uint64_t u = 0; u < users; u++) {
                        uint64_t k = 0, when = 0;
                        int rc = hb_sched_next(&s, u, at, &k, &when);
                        if (rc != 0 || k != nxt[u] || when != hb_sched_time_of(&s, nxt[u]))
                            ck_abort_msg("users %" PRIu64 " qps %" PRIu64 " base %" PRIu64
                                         " user %" PRIu64 " at %" PRIu64 ": rc %d k %" PRIu64
                                         " when %" PRIu64 ", want k %" PRIu64,
                                         users, qps, base, u, at, rc, k, when, nxt[u]);
                    }
                }
            }
        }
    }
}
END_TEST

/* next() against a forward scan for random mid-sized schedules and random instants around the
 * epoch, with a seeded generator. */
START_TEST(test_next_matches_brute_force_random)
{
    char ctx[160];
    uint64_t rng = 0x5C4ED;
    for (int i = 0; i < 400; i++) {
        uint64_t users = prng_range(&rng, 1, 3000), qps = prng_range(&rng, 1, 6000);
        uint64_t epoch = prng_range(&rng, 1, UNIX_NOW_S), base = prng_range(&rng, 0, 5000);
        hb_sched_t s = make_sched(users, qps, epoch, base);
        uint64_t user = prng_range(&rng, 0, users - 1);
        uint64_t at = epoch * 1000 - 1000 + prng_range(&rng, 0, 4000);
        if (i % 4 == 0) /* exactly at a send time */
            at = hb_sched_time_of(&s, base + prng_range(&rng, 0, 3 * qps));
        snprintf(ctx, sizeof ctx,
                 "users %" PRIu64 " qps %" PRIu64 " base %" PRIu64 " user %" PRIu64 " at %" PRIu64,
                 users, qps, base, user, at);
        uint64_t want = base;
        while (hb_sched_time_of(&s, want) < at || hb_sched_user_of(&s, want) != user)
            want++;
        uint64_t k = 0, when = 0;
        REQUIRE_U64((uint64_t)hb_sched_next(&s, user, at, &k, &when), ==, 0);
        REQUIRE_U64(k, ==, want);
        REQUIRE_U64(when, ==, hb_sched_time_of(&s, want));
    }
}
END_TEST

/* Properties of next() and first_at() that pin the answer down, for random schedules over the
 * whole supported ranges (where no scan is possible): the send is the user's, at or after at_ms,
 * and less than one rotation after the first send at or after at_ms, which is itself the first
 * index at or after at_ms. Includes the extremes of every range. */
START_TEST(test_next_properties_full_range)
{
    char ctx[160];
    uint64_t rng = 0xB16B00B5;
    for (int i = 0; i < 20000; i++) {
        uint64_t users, qps, start, at;
        switch (i % 4) {
        case 0:
            users = HB_SCHED_MAX_USERS;
            qps = HB_SCHED_MAX_QPS - prng_range(&rng, 0, 2);
            start = 0;
            at = HB_SCHED_MAX_S * 1000 - 1 - prng_range(&rng, 0, 5000);
            break;
        case 1:
            users = HB_SCHED_MAX_USERS - prng_range(&rng, 0, 2);
            qps = prng_range(&rng, 1, HB_SCHED_MAX_QPS);
            start = prng_range(&rng, 0, UNIX_NOW_S);
            at = prng_range(&rng, 0, HB_SCHED_MAX_S * 1000 - 1);
            break;
        default:
            users = prng_range(&rng, 1, HB_SCHED_MAX_USERS);
            qps = prng_range(&rng, 1, HB_SCHED_MAX_QPS);
            start = prng_range(&rng, 0, HB_SCHED_MAX_S - 1);
            at = start * 1000 + prng_range(&rng, 0, 100000);
            if (at >= HB_SCHED_MAX_S * 1000)
                at = HB_SCHED_MAX_S * 1000 - 1;
            break;
        }
        hb_sched_t s;
        ck_assert_int_eq(hb_sched_init(&s, users, qps, start), 0);
        uint64_t user = prng_range(&rng, 0, users - 1);
        snprintf(ctx, sizeof ctx,
                 "users %" PRIu64 " qps %" PRIu64 " start %" PRIu64 " user %" PRIu64 " at %" PRIu64,
                 users, qps, start, user, at);
        uint64_t k0 = hb_sched_first_at(&s, at);
        uint64_t eff = at > start * 1000 ? at : start * 1000;
        REQUIRE_U64(hb_sched_time_of(&s, k0), >=, eff);
        if (k0 > s.base_k)
            REQUIRE_U64(hb_sched_time_of(&s, k0 - 1), <, eff);
        uint64_t k = 0, when = 0;
        REQUIRE_U64((uint64_t)hb_sched_next(&s, user, at, &k, &when), ==, 0);
        REQUIRE_U64(hb_sched_user_of(&s, k), ==, user);
        REQUIRE_U64(k, >=, k0);
        REQUIRE_U64(k - k0, <, users);
        REQUIRE_U64(when, ==, hb_sched_time_of(&s, k));
        REQUIRE_U64(when, >=, eff);
        /* The user's previous send, one rotation earlier, is before at_ms (or before base). */
        if (k >= s.base_k + users)
            REQUIRE_U64(hb_sched_time_of(&s, k - users), <, eff);
    }
    hb_sched_t s;
    ck_assert_int_eq(hb_sched_init(&s, 7, 3, 10), 0);
    ck_assert_uint_eq(hb_sched_first_at(&s, UINT64_MAX), (HB_SCHED_MAX_S - 10) * 3);
}
END_TEST

/* Rate changes: continuous numbering, the new rate's exact count from from_s on, clamping of
 * earlier queries, rejection of a change into the past, and qps 0. */
START_TEST(test_rate_changes)
{
    hb_sched_t s, old;
    uint64_t k = 0, when = 0;
    ck_assert_int_eq(hb_sched_init(&s, 50, 30, 1000), 0);
    old = s;
    ck_assert_int_eq(hb_sched_set_rate(&s, 70, 1003), 0);
    ck_assert_uint_eq(s.base_k, 90);
    ck_assert_uint_eq(s.epoch_s, 1003);
    ck_assert_uint_eq(hb_sched_first_at(&old, 1003000), s.base_k);
    ck_assert_uint_eq(hb_sched_time_of(&old, s.base_k - 1) / 1000, 1002);
    ck_assert_uint_eq(hb_sched_time_of(&s, s.base_k), 1003000);
    for (uint64_t t = 1003; t < 1008; t++)
        ck_assert_uint_eq(hb_sched_first_at(&s, (t + 1) * 1000) - hb_sched_first_at(&s, t * 1000),
                          70);
    /* Earlier queries are clamped to the change. */
    ck_assert_uint_eq(hb_sched_first_at(&s, 1001500), 90);
    ck_assert_uint_eq(hb_sched_time_of(&s, 10), 1003000);
    ck_assert_int_eq(hb_sched_next(&s, 17, 1001500, &k, &when), 0);
    ck_assert_uint_ge(when, 1003000);
    ck_assert_uint_lt(k, 90 + 50);
    ck_assert_uint_eq(hb_sched_user_of(&s, k), 17);

    hb_sched_t before = s;
    ck_assert_int_eq(hb_sched_set_rate(&s, 40, 1002), HB_EINVAL);
    ck_assert_mem_eq(&s, &before, sizeof s);

    /* qps 0: nothing is due, the numbering stands still. */
    ck_assert_int_eq(hb_sched_set_rate(&s, 0, 1005), 0);
    ck_assert_uint_eq(s.base_k, 90 + 2 * 70);
    ck_assert_int_eq(hb_sched_next(&s, 3, 1006000, &k, &when), HB_EIDLE);
    ck_assert_uint_eq(hb_sched_first_at(&s, 1009000), 230);
    ck_assert_uint_eq(hb_sched_time_of(&s, 230), UINT64_MAX);
    ck_assert_int_eq(hb_sched_set_rate(&s, 25, 1010), 0);
    ck_assert_uint_eq(s.base_k, 230);
    ck_assert_uint_eq(hb_sched_time_of(&s, 230), 1010000);
    ck_assert_int_eq(hb_sched_next(&s, 3, 1006000, &k, &when), 0);
    ck_assert_uint_ge(when, 1010000);
    ck_assert_uint_eq(hb_sched_first_at(&s, 1011000) - hb_sched_first_at(&s, 1010000), 25);
}
END_TEST

/* Random sequences of rate changes: base_k is the sum of the earlier rates' sends, and every
 * second, checked by time_of over its indices, has its rate's count. */
START_TEST(test_rate_change_sequences)
{
    char ctx[96];
    uint64_t rng = 42;
    for (int round = 0; round < 300; round++) {
        uint64_t users = prng_range(&rng, 1, 500), t = prng_range(&rng, 0, UNIX_NOW_S);
        uint64_t qps = prng_range(&rng, 0, 900), sent = 0;
        hb_sched_t s;
        ck_assert_int_eq(hb_sched_init(&s, users, qps, t), 0);
        for (int change = 0; change < 6; change++) {
            uint64_t len = prng_range(&rng, 0, 3);
            snprintf(ctx, sizeof ctx, "round %d change %d", round, change);
            for (uint64_t sec = t; sec < t + len; sec++) {
                uint64_t k0 = hb_sched_first_at(&s, sec * 1000);
                REQUIRE_U64(k0, ==, sent);
                REQUIRE_U64(hb_sched_first_at(&s, (sec + 1) * 1000) - k0, ==, qps);
                for (uint64_t k = k0; k < k0 + qps; k++)
                    REQUIRE_U64(hb_sched_time_of(&s, k) / 1000, ==, sec);
                sent += qps;
            }
            t += len;
            qps = prng_range(&rng, 0, 900);
            ck_assert_int_eq(hb_sched_set_rate(&s, qps, t), 0);
            REQUIRE_U64(s.base_k, ==, sent);
        }
    }
}
END_TEST

/* Across a rate change each window's per-user counts differ by at most two (one per rate). */
START_TEST(test_fairness_across_a_rate_change)
{
    char ctx[96];
    uint32_t count[30];
    for (uint64_t users = 1; users <= 30; users++) {
        for (uint64_t q1 = 1; q1 <= 40; q1 += 3) {
            for (uint64_t q2 = 1; q2 <= 40; q2++) {
                hb_sched_t s;
                ck_assert_int_eq(hb_sched_init(&s, users, q1, 0), 0);
                memset(count, 0, sizeof count);
                for (uint64_t k = 0; k < 2 * q1; k++)
                    count[hb_sched_user_of(&s, k)]++;
                ck_assert_int_eq(hb_sched_set_rate(&s, q2, 2), 0);
                for (uint64_t k = 2 * q1; k < 2 * q1 + 3 * q2; k++)
                    count[hb_sched_user_of(&s, k)]++;
                uint32_t lo = UINT32_MAX, hi = 0;
                for (uint64_t u = 0; u < users; u++) {
                    lo = count[u] < lo ? count[u] : lo;
                    hi = count[u] > hi ? count[u] : hi;
                }
                snprintf(ctx, sizeof ctx, "users %" PRIu64 " q1 %" PRIu64 " q2 %" PRIu64, users, q1,
                         q2);
                REQUIRE_U64(hi - lo, <=, 2);
            }
        }
    }
}
END_TEST

/* When qps divides users and the numbering starts at second 0, the users of second t are exactly
 * the reference's {u : t % G == u % G}, each once; checked near 1970 and at today's Unix time. */
START_TEST(test_reference_rule_when_qps_divides_users)
{
    char ctx[96];
    uint8_t sends[60];
    for (uint64_t users = 1; users <= 60; users++) {
        for (uint64_t qps = 1; qps <= users; qps++) {
            if (users % qps != 0)
                continue;
            hb_sched_t s;
            uint64_t g = users / qps;
            ck_assert_int_eq(hb_sched_init(&s, users, qps, 0), 0);
            for (uint64_t j = 0; j < 2 * (2 * g + 3); j++) {
                uint64_t t = j < 2 * g + 3 ? j : UNIX_NOW_S + j;
                uint64_t end = hb_sched_first_at(&s, (t + 1) * 1000);
                memset(sends, 0, sizeof sends);
                for (uint64_t k = hb_sched_first_at(&s, t * 1000); k < end; k++)
                    sends[hb_sched_user_of(&s, k)]++;
                snprintf(ctx, sizeof ctx, "users %" PRIu64 " qps %" PRIu64 " t %" PRIu64, users,
                         qps, t);
                for (uint64_t u = 0; u < users; u++)
                    REQUIRE_U64(sends[u], ==, (uint64_t)hb_sched_reference_due(users, qps, u, t));
            }
        }
    }
}
END_TEST

START_TEST(test_reference_rule_itself)
{
    ck_assert_int_eq(hb_sched_reference_due(10, 0, 1, 5), HB_EINVAL);
    ck_assert_int_eq(hb_sched_reference_due(10, 11, 1, 5), HB_EINVAL);
    ck_assert_int_eq(hb_sched_reference_due(10, 5, 10, 5), HB_EINVAL);
    ck_assert_int_eq(hb_sched_reference_due(10, 5, 3, 1), 1);
    ck_assert_int_eq(hb_sched_reference_due(10, 5, 3, 4), 0);
    /* Where qps does not divide users the reference misses the rate: users 10 at qps 4 has
     * G = 2, so 5 users send every second, not 4. */
    int due = 0;
    for (uint64_t u = 0; u < 10; u++)
        due += hb_sched_reference_due(10, 4, u, 7);
    ck_assert_int_eq(due, 5);
}
END_TEST

/* Large schedules, by their exact counts per second, the share of a quarter of the users, one
 * whole rotation cycle, and next() against one forward scan for sampled users and instants. */
static void check_large(uint64_t users, uint64_t qps, uint64_t cycle_s)
{
    enum { SAMPLES = 64 };
    char ctx[96];
    uint8_t *count = calloc(users, 1);
    uint8_t *sampled = calloc(users, 1);
    uint64_t user[SAMPLES], at[SAMPLES], want[SAMPLES];
    uint64_t rng = users ^ qps;
    hb_sched_t s;
    ck_assert_ptr_nonnull(count);
    ck_assert_ptr_nonnull(sampled);
    ck_assert_int_eq(hb_sched_init(&s, users, qps, UNIX_NOW_S), 0);
    snprintf(ctx, sizeof ctx, "users %" PRIu64 " qps %" PRIu64, users, qps);

    /* A whole cycle: each second exactly qps sends, users [0, users / 4) exactly their share. */
    uint64_t k = 0;
    for (uint64_t t = 0; t < cycle_s; t++) {
        uint64_t sec_ms = (UNIX_NOW_S + t) * 1000, quarter = 0;
        REQUIRE_U64(hb_sched_first_at(&s, sec_ms), ==, k);
        for (uint64_t i = 0; i < qps; i++, k++) {
            uint64_t u = hb_sched_user_of(&s, k);
            REQUIRE_U64(hb_sched_time_of(&s, k) / 1000, ==, UNIX_NOW_S + t);
            quarter += u < users / 4;
            count[u]++;
        }
        REQUIRE_U64(quarter, ==, qps / 4);
    }
    /* A cycle is a whole number of rotations: every user the same number of times. */
    for (uint64_t u = 0; u < users; u++)
        REQUIRE_U64(count[u], ==, cycle_s * qps / users);

    k = s.base_k;
    for (int i = 0; i < SAMPLES; i++) {
        do
            user[i] = prng_range(&rng, 0, users - 1);
        while (sampled[user[i]]);
        sampled[user[i]] = (uint8_t)(i + 1);
        at[i] = UNIX_NOW_S * 1000 - 500 + prng_range(&rng, 0, 2500);
        want[i] = UINT64_MAX;
    }
    /* One forward scan from the first send finds every sampled user's answer. */
    for (int left = SAMPLES; left > 0; k++) {
        int i = sampled[hb_sched_user_of(&s, k)] - 1;
        if (i >= 0 && want[i] == UINT64_MAX && hb_sched_time_of(&s, k) >= at[i]) {
            want[i] = k;
            left--;
        }
    }
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t got = 0, when = 0;
        REQUIRE_U64((uint64_t)hb_sched_next(&s, user[i], at[i], &got, &when), ==, 0);
        REQUIRE_U64(got, ==, want[i]);
        REQUIRE_U64(when, ==, hb_sched_time_of(&s, want[i]));
    }
    free(count);
    free(sampled);
}

START_TEST(test_large_one_million_users)
{
    /* gcd 20,000: 50 columns, a cycle of 50 seconds in which each user sends 3 times. */
    check_large(1000000, 60000, 50);
}
END_TEST

START_TEST(test_large_qps_above_users)
{
    /* gcd 1,000: 19 columns, a cycle of 19 seconds in which each user sends 50 times. */
    check_large(19000, 50000, 19);
}
END_TEST

/* Microsecond placement: inside hb_sched_time_of's millisecond, the first send of each second at
 * its first microsecond, evenly spread (floor(i * 10^6 / qps)), never decreasing, distinct while
 * qps <= 10^6; UINT64_MAX at qps 0; no overflow at the limits. */
START_TEST(test_time_us_of)
{
    char ctx[128];
    static const uint64_t rates[] = {1,     3,     4,      999,     1000,    1001,
                                     19000, 60000, 999999, 1000000, 1000001, 3000000};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        uint64_t qps = rates[r];
        for (uint64_t base = 0; base <= 7; base += 7) {
            hb_sched_t s = make_sched(1000, qps, UNIX_NOW_S, base);
            snprintf(ctx, sizeof ctx, "qps %" PRIu64 " base %" PRIu64, qps, base);
            uint64_t n = qps < 200000 ? 2 * qps + 3 : 200000, prev = 0;
            for (uint64_t d = 0; d < n; d++) {
                uint64_t k = base + d, us = hb_sched_time_us_of(&s, k);
                REQUIRE_U64(us / 1000, ==, hb_sched_time_of(&s, k));
                REQUIRE_U64(us, ==, (UNIX_NOW_S + d / qps) * 1000000 + (d % qps) * 1000000 / qps);
                if (d % qps == 0)
                    REQUIRE_U64(us % 1000000, ==, 0);
                if (d > 0 && qps <= 1000000)
                    REQUIRE_U64(us, >, prev);
                else if (d > 0)
                    REQUIRE_U64(us, >=, prev);
                prev = us;
            }
            /* before base_k: clamped to it, as hb_sched_time_of */
            if (base > 0)
                REQUIRE_U64(hb_sched_time_us_of(&s, 0), ==, UNIX_NOW_S * 1000000);
        }
    }
    /* At 60,000/s the 60 sends of a millisecond are 16 or 17 us apart. */
    hb_sched_t s = make_sched(1000000, 60000, UNIX_NOW_S, 0);
    for (uint64_t k = 1; k < 60000; k++) {
        uint64_t gap = hb_sched_time_us_of(&s, k) - hb_sched_time_us_of(&s, k - 1);
        ck_assert(gap == 16 || gap == 17);
    }
    ck_assert_int_eq(hb_sched_set_rate(&s, 0, UNIX_NOW_S + 5), 0);
    ck_assert_uint_eq(hb_sched_time_us_of(&s, s.base_k), UINT64_MAX);
    /* The last second and the highest rate: below 2^64 and in the right millisecond. */
    ck_assert_int_eq(hb_sched_init(&s, HB_SCHED_MAX_USERS, HB_SCHED_MAX_QPS, 0), 0);
    uint64_t k = hb_sched_first_at(&s, HB_SCHED_MAX_S * 1000 - 1);
    ck_assert_uint_eq(hb_sched_time_us_of(&s, k) / 1000, hb_sched_time_of(&s, k));
    ck_assert_uint_ge(hb_sched_time_us_of(&s, k), (HB_SCHED_MAX_S * 1000 - 1) * 1000);
}
END_TEST

/* Walk n sends of r and compare them with a forward scan of the whole schedule from index k0,
 * keeping the range's users. */
static void check_walk(hb_sched_range_t *r, const hb_sched_t *s, uint64_t k0, uint64_t n,
                       const char *ctx)
{
    uint64_t scan = k0;
    for (uint64_t i = 0; i < n; i++) {
        while (hb_sched_user_of(s, scan) < r->first ||
               hb_sched_user_of(s, scan) >= r->first + r->count)
            scan++;
        uint64_t k = 0, user = 0;
        hb_sched_range_next(r, &k, &user);
        REQUIRE_U64(k, ==, scan);
        REQUIRE_U64(user, ==, hb_sched_user_of(s, scan));
        scan++;
    }
}

/* The walk of a range against a scan of the whole schedule, for every range of small schedules,
 * several rates, index bases and seek instants (at a send, between sends, before the epoch). */
START_TEST(test_range_walk_matches_scan)
{
    char ctx[160];
    uint64_t order[24];
    for (uint64_t users = 1; users <= 24; users++) {
        for (uint64_t qps = 1; qps <= 61; qps += (qps < 8 ? 1 : 7)) {
            for (uint64_t base = 0; base <= 13; base += 13) {
                hb_sched_t s = make_sched(users, qps, 500, base);
                for (uint64_t first = 0; first < users; first++) {
                    for (uint64_t count = 1; first + count <= users; count++) {
                        hb_sched_range_t r;
                        snprintf(ctx, sizeof ctx,
                                 "users %" PRIu64 " qps %" PRIu64 " base %" PRIu64 " range %" PRIu64
                                 "+%" PRIu64,
                                 users, qps, base, first, count);
                        REQUIRE_U64((uint64_t)hb_sched_range_init(&r, &s, first, count, order), ==,
                                    0);
                        REQUIRE_U64(r.first, ==, first);
                        REQUIRE_U64(r.count, ==, count);
                        /* from init: the first send at or after base_k */
                        check_walk(&r, &s, base, 2 * count + 3, ctx);
                        static const uint64_t ats[] = {0, 500000, 500001, 500333, 501999, 503250};
                        for (size_t a = 0; a < sizeof ats / sizeof ats[0]; a++) {
                            hb_sched_range_seek(&r, &s, ats[a]);
                            /* each user's first send is hb_sched_next's answer */
                            uint64_t k = 0, user = 0, want = 0;
                            hb_sched_range_seek(&r, &s, ats[a]);
                            for (uint64_t i = 0; i < count; i++) {
                                hb_sched_range_next(&r, &k, &user);
                                REQUIRE_U64((uint64_t)hb_sched_next(&s, user, ats[a], &want, NULL),
                                            ==, 0);
                                REQUIRE_U64(k, ==, want);
                            }
                            hb_sched_range_seek(&r, &s, ats[a]);
                            check_walk(&r, &s, hb_sched_first_at(&s, ats[a]), 3 * count, ctx);
                        }
                    }
                }
            }
        }
    }
}
END_TEST

/* A walk across a rate change (prepared again and sought to the change), rate 0 (nothing ever
 * due), and the arguments init refuses. */
START_TEST(test_range_walk_rate_change_and_errors)
{
    char ctx[64] = "rate change";
    uint64_t order[40], k = 0, user = 0;
    hb_sched_t s = make_sched(97, 30, UNIX_NOW_S, 0);
    hb_sched_range_t r;
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 20, 40, order), 0);
    hb_sched_range_seek(&r, &s, UNIX_NOW_S * 1000 + 400);
    check_walk(&r, &s, hb_sched_first_at(&s, UNIX_NOW_S * 1000 + 400), 30, ctx);
    ck_assert_int_eq(hb_sched_set_rate(&s, 1000, UNIX_NOW_S + 7), 0);
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 20, 40, order), 0);
    hb_sched_range_seek(&r, &s, (UNIX_NOW_S + 7) * 1000);
    check_walk(&r, &s, s.base_k, 3000, ctx);

    ck_assert_int_eq(hb_sched_set_rate(&s, 0, UNIX_NOW_S + 9), 0);
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 20, 40, order), 0);
    hb_sched_range_seek(&r, &s, (UNIX_NOW_S + 20) * 1000);
    hb_sched_range_next(&r, &k, &user);
    ck_assert_uint_eq(hb_sched_time_of(&s, k), UINT64_MAX);
    ck_assert_uint_eq(hb_sched_time_us_of(&s, k), UINT64_MAX);
    ck_assert_uint_ge(user, 20);
    ck_assert_uint_lt(user, 60);

    hb_sched_range_t before = r;
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 0, 0, order), HB_EINVAL);
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 0, 10, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 90, 8, order), HB_EINVAL);
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 97, 1, order), HB_EINVAL);
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 1, UINT64_MAX, order), HB_EINVAL);
    ck_assert_mem_eq(&r, &before, sizeof r);
    ck_assert_int_eq(hb_sched_range_init(&r, &s, 96, 1, order), 0);
}
END_TEST

/* One process of the million scenario: users 0..18,867 of 1,000,000 at 60,000/s. The walk gives
 * that range's share of every second (1,132.08: 1,131 to 1,133), the same sends as a scan of the
 * whole schedule, and times in microseconds that never decrease; and the last of 53 such ranges
 * (shorter) too. */
START_TEST(test_range_walk_million_share)
{
    char ctx[64] = "million share";
    const uint64_t users = 1000000, qps = 60000;
    uint64_t *order = malloc(18868 * sizeof *order);
    ck_assert_ptr_nonnull(order);
    hb_sched_t s;
    ck_assert_int_eq(hb_sched_init(&s, users, qps, 0), 0);
    static const uint64_t firsts[] = {0, 18868 * 52};
    for (size_t f = 0; f < 2; f++) {
        uint64_t first = firsts[f], count = first + 18868 > users ? users - first : 18868;
        hb_sched_range_t r;
        ck_assert_int_eq(hb_sched_range_init(&r, &s, first, count, order), 0);
        hb_sched_range_seek(&r, &s, UNIX_NOW_S * 1000);
        check_walk(&r, &s, hb_sched_first_at(&s, UNIX_NOW_S * 1000), 3 * count, ctx);
        hb_sched_range_seek(&r, &s, UNIX_NOW_S * 1000);
        uint64_t k = 0, second = UNIX_NOW_S, n = 0, prev_us = 0;
        for (;;) {
            hb_sched_range_next(&r, &k, NULL);
            uint64_t us = hb_sched_time_us_of(&s, k);
            REQUIRE_U64(us, >=, prev_us);
            prev_us = us;
            if (us / 1000000 != second) {
                /* the share of a second, to within less than 2 */
                REQUIRE_U64(n * users + 2 * users, >, qps * count);
                REQUIRE_U64(n * users, <, qps * count + 2 * users);
                if (++second == UNIX_NOW_S + 20)
                    break;
                n = 0;
            }
            n++;
        }
    }
    free(order);
}
END_TEST

static Suite *sched_suite(void)
{
    Suite *s = suite_create("sched");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_init_and_set_rate_validate);
    tcase_add_test(core, test_worked_example);
    tcase_add_test(core, test_rate_changes);
    tcase_add_test(core, test_reference_rule_itself);
    suite_add_tcase(s, core);

    TCase *props = tcase_create("properties");
    tcase_set_timeout(props, 30);
    tcase_add_test(props, test_exact_count_per_second);
    tcase_add_test(props, test_fairness_over_whole_seconds);
    tcase_add_test(props, test_user_ranges_spread_over_seconds);
    tcase_add_test(props, test_spread_inside_the_second);
    tcase_add_test(props, test_first_at_rounding);
    tcase_add_test(props, test_rotation_is_a_permutation);
    tcase_add_test(props, test_next_matches_brute_force_small);
    tcase_add_test(props, test_next_matches_brute_force_random);
    tcase_add_test(props, test_next_properties_full_range);
    tcase_add_test(props, test_rate_change_sequences);
    tcase_add_test(props, test_fairness_across_a_rate_change);
    tcase_add_test(props, test_reference_rule_when_qps_divides_users);
    tcase_add_test(props, test_time_us_of);
    tcase_add_test(props, test_range_walk_matches_scan);
    tcase_add_test(props, test_range_walk_rate_change_and_errors);
    suite_add_tcase(s, props);

    TCase *large = tcase_create("large");
    tcase_set_timeout(large, 30);
    tcase_add_test(large, test_large_one_million_users);
    tcase_add_test(large, test_large_qps_above_users);
    tcase_add_test(large, test_range_walk_million_share);
    suite_add_tcase(s, large);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sched_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
