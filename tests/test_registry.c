/* Unit tests for the registry module: put/get/remove semantics, generations, growth to a million
 * users, deletion against a model, and concurrent logins and logouts from several threads. */
#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include <uv.h>

#include "hongbao/registry.h"

static hb_registry_entry_t entry(uint32_t set, uint64_t gen)
{
    hb_registry_entry_t e;
    memset(&e, 0, sizeof e);
    e.set = set;
    e.gen = gen;
    return e;
}

START_TEST(test_init_rejects_bad_arguments)
{
    hb_registry_t r;
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(hb_registry_init(NULL, 4, 100), UV_EINVAL);
    ck_assert_int_eq(hb_registry_init(&r, 0, 100), UV_EINVAL);
    ck_assert_int_eq(hb_registry_init(&r, 4097, 100), UV_EINVAL);
    ck_assert_ptr_null(r.shards);

    ck_assert_int_eq(hb_registry_init(&r, 4096, 0), 0);
    ck_assert_uint_eq(r.nshards, 4096);
    hb_registry_close(&r);
    ck_assert_ptr_null(r.shards);
    hb_registry_close(&r);
    hb_registry_close(NULL);
}
END_TEST

START_TEST(test_shards_round_up_to_power_of_two)
{
    static const unsigned asked[] = {1, 2, 3, 5, 64, 100, 4095};
    static const unsigned got[] = {1, 2, 4, 8, 64, 128, 4096};
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
        hb_registry_t r;
        ck_assert_int_eq(hb_registry_init(&r, asked[i], 10), 0);
        ck_assert_uint_eq(r.nshards, got[i]);
        hb_registry_close(&r);
    }
}
END_TEST

START_TEST(test_put_get_remove)
{
    hb_registry_t r;
    int user_data = 0;
    ck_assert_int_eq(hb_registry_init(&r, 4, 16), 0);
    r.data = &user_data;
    hb_registry_entry_t got = entry(99, 99);

    ck_assert_int_eq(hb_registry_get(&r, 42, &got), UV_ENOENT);
    ck_assert_uint_eq(got.set, 99); /* untouched on failure */
    ck_assert_uint_eq(hb_registry_count(&r), 0);

    ck_assert_int_eq(hb_registry_put(&r, 42, entry(3, 1000), NULL), 0);
    ck_assert_int_eq(hb_registry_get(&r, 42, &got), 0);
    ck_assert_uint_eq(got.set, 3);
    ck_assert_uint_eq(got.gen, 1000);
    ck_assert_uint_eq(hb_registry_count(&r), 1);

    /* The extreme ids are ordinary users. */
    ck_assert_int_eq(hb_registry_put(&r, 0, entry(1, 1), NULL), 0);
    ck_assert_int_eq(hb_registry_put(&r, UINT32_MAX, entry(2, UINT64_MAX), NULL), 0);
    ck_assert_int_eq(hb_registry_get(&r, 0, &got), 0);
    ck_assert_uint_eq(got.set, 1);
    ck_assert_uint_eq(got.gen, 1);
    ck_assert_int_eq(hb_registry_get(&r, UINT32_MAX, &got), 0);
    ck_assert_uint_eq(got.set, 2);
    ck_assert_uint_eq(got.gen, UINT64_MAX);
    ck_assert_uint_eq(hb_registry_count(&r), 3);

    ck_assert_int_eq(hb_registry_remove(&r, 42, 1000), 0);
    ck_assert_int_eq(hb_registry_get(&r, 42, &got), UV_ENOENT);
    ck_assert_int_eq(hb_registry_remove(&r, 42, 1000), UV_ENOENT);
    ck_assert_int_eq(hb_registry_remove(&r, 7, 0), UV_ENOENT);
    ck_assert_uint_eq(hb_registry_count(&r), 2);
    ck_assert_int_eq(hb_registry_remove(&r, 0, 1), 0);
    ck_assert_int_eq(hb_registry_remove(&r, UINT32_MAX, UINT64_MAX), 0);
    ck_assert_uint_eq(hb_registry_count(&r), 0);
    ck_assert_ptr_eq(r.data, &user_data);

    /* Argument errors. */
    ck_assert_int_eq(hb_registry_put(NULL, 1, entry(0, 0), NULL), UV_EINVAL);
    ck_assert_int_eq(hb_registry_get(NULL, 1, &got), UV_EINVAL);
    ck_assert_int_eq(hb_registry_get(&r, 1, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_registry_remove(NULL, 1, 0), UV_EINVAL);
    ck_assert_uint_eq(hb_registry_count(NULL), 0);
    hb_registry_close(&r);
    ck_assert_int_eq(hb_registry_put(&r, 1, entry(0, 0), NULL), UV_EINVAL);
    ck_assert_int_eq(hb_registry_get(&r, 1, &got), UV_EINVAL);
    ck_assert_int_eq(hb_registry_remove(&r, 1, 0), UV_EINVAL);
    ck_assert_uint_eq(hb_registry_count(&r), 0);
}
END_TEST

START_TEST(test_put_replaces_and_returns_old)
{
    hb_registry_t r;
    ck_assert_int_eq(hb_registry_init(&r, 2, 4), 0);
    hb_registry_entry_t old = entry(0, 0), got;

    ck_assert_int_eq(hb_registry_put(&r, 500, entry(1, 10), &old), 0);
    ck_assert_uint_eq(old.set, 0); /* no earlier entry: old untouched */
    ck_assert_uint_eq(old.gen, 0);

    ck_assert_int_eq(hb_registry_put(&r, 500, entry(2, 11), &old), 1);
    ck_assert_uint_eq(old.set, 1);
    ck_assert_uint_eq(old.gen, 10);
    ck_assert_int_eq(hb_registry_get(&r, 500, &got), 0);
    ck_assert_uint_eq(got.set, 2);
    ck_assert_uint_eq(got.gen, 11);
    ck_assert_uint_eq(hb_registry_count(&r), 1);

    /* old may be NULL. */
    ck_assert_int_eq(hb_registry_put(&r, 500, entry(3, 12), NULL), 1);
    ck_assert_int_eq(hb_registry_get(&r, 500, &got), 0);
    ck_assert_uint_eq(got.set, 3);
    ck_assert_uint_eq(got.gen, 12);
    ck_assert_uint_eq(hb_registry_count(&r), 1);
    hb_registry_close(&r);
}
END_TEST

START_TEST(test_remove_with_wrong_generation_keeps_entry)
{
    hb_registry_t r;
    ck_assert_int_eq(hb_registry_init(&r, 1, 4), 0);
    hb_registry_entry_t got;
    /* A user logs in (gen 1), logs in again elsewhere (gen 2); the first connection closes. */
    ck_assert_int_eq(hb_registry_put(&r, 77, entry(0, 1), NULL), 0);
    ck_assert_int_eq(hb_registry_put(&r, 77, entry(5, 2), NULL), 1);
    ck_assert_int_eq(hb_registry_remove(&r, 77, 1), UV_ENOENT);
    ck_assert_int_eq(hb_registry_get(&r, 77, &got), 0);
    ck_assert_uint_eq(got.set, 5);
    ck_assert_uint_eq(got.gen, 2);
    ck_assert_uint_eq(hb_registry_count(&r), 1);
    ck_assert_int_eq(hb_registry_remove(&r, 77, 3), UV_ENOENT);
    ck_assert_uint_eq(hb_registry_count(&r), 1);
    ck_assert_int_eq(hb_registry_remove(&r, 77, 2), 0);
    ck_assert_uint_eq(hb_registry_count(&r), 0);
    hb_registry_close(&r);
}
END_TEST

enum { MILLION = 1000000 };

static uint64_t million_gen(uint32_t i)
{
    return ((uint64_t)i << 20) ^ 0xABCDEu;
}

/* Users are sequential ids and ids spread over the whole 32-bit range. */
static uint32_t million_user(uint32_t i)
{
    return (i & 1) ? i / 2 : UINT32_MAX - (i / 2) * 4099u;
}

START_TEST(test_grows_to_a_million_users)
{
    hb_registry_t r;
    /* Tiny tables, so each shard doubles many times. */
    EXPECT_INT(hb_registry_init(&r, 8, 1), ==, 0);
    for (uint32_t i = 0; i < MILLION; i++)
        EXPECT_INT(hb_registry_put(&r, million_user(i), entry(i % 64, million_gen(i)), NULL), ==,
                   0);
    EXPECT_UINT(hb_registry_count(&r), ==, MILLION);

    hb_registry_entry_t got;
    for (uint32_t i = 0; i < MILLION; i++) {
        EXPECT_INT(hb_registry_get(&r, million_user(i), &got), ==, 0);
        EXPECT_UINT(got.set, ==, i % 64);
        EXPECT_UINT(got.gen, ==, million_gen(i));
    }

    /* Remove every third user, then check who is left. */
    for (uint32_t i = 0; i < MILLION; i += 3)
        EXPECT_INT(hb_registry_remove(&r, million_user(i), million_gen(i)), ==, 0);
    size_t left = MILLION - (MILLION + 2) / 3;
    EXPECT_UINT(hb_registry_count(&r), ==, left);
    for (uint32_t i = 0; i < MILLION; i++) {
        if (i % 3 == 0) {
            EXPECT_INT(hb_registry_get(&r, million_user(i), &got), ==, UV_ENOENT);
        } else {
            EXPECT_INT(hb_registry_get(&r, million_user(i), &got), ==, 0);
            EXPECT_UINT(got.gen, ==, million_gen(i));
        }
    }

    /* Of those left, the even half leave, in the other order. */
    for (uint32_t i = MILLION; i-- > 0;) {
        if (i % 3 != 0 && i % 2 == 0)
            EXPECT_INT(hb_registry_remove(&r, million_user(i), million_gen(i)), ==, 0);
    }
    size_t odd_left = 0;
    for (uint32_t i = 0; i < MILLION; i++) {
        int want_present = i % 3 != 0 && i % 2 == 1;
        odd_left += (size_t)want_present;
        EXPECT_INT(hb_registry_get(&r, million_user(i), &got), ==, want_present ? 0 : UV_ENOENT);
        if (want_present)
            EXPECT_UINT(got.gen, ==, million_gen(i));
    }
    EXPECT_UINT(hb_registry_count(&r), ==, odd_left);
    hb_registry_close(&r);
}
END_TEST

/* A small xorshift generator: the model test's sequence is the same on every run. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

START_TEST(test_matches_a_model_under_random_churn)
{
    /* One shard, few users, many collisions: every put, replace and delete (with its backward
     * shift) is checked against a plain array. */
    enum { USERS = 2048, OPS = 300000 };
    hb_registry_t r;
    EXPECT_INT(hb_registry_init(&r, 1, 1), ==, 0);
    uint64_t *model = calloc(USERS, sizeof *model); /* gen + 1, or 0 when absent */
    ck_assert_ptr_nonnull(model);
    size_t present = 0;
    uint64_t seed = 0x2545F4914F6CDD1DULL;
    for (uint32_t op = 0; op < OPS; op++) {
        uint64_t x = next_random(&seed);
        /* Users are multiples of 1024, so their ids alone say little about their slots. */
        uint32_t u = (uint32_t)(x % USERS);
        uint32_t user = u * 1024u;
        uint64_t gen = op;
        switch ((x >> 32) % 4) {
        case 0:
        case 1: {
            hb_registry_entry_t old;
            int rc = hb_registry_put(&r, user, entry(u, gen), &old);
            EXPECT_INT(rc, ==, model[u] != 0 ? 1 : 0);
            if (rc == 1)
                EXPECT_UINT(old.gen + 1, ==, model[u]);
            else
                present++;
            model[u] = gen + 1;
            break;
        }
        case 2:
            /* Remove with the right generation when present. */
            if (model[u] != 0) {
                EXPECT_INT(hb_registry_remove(&r, user, model[u] - 1), ==, 0);
                model[u] = 0;
                present--;
            } else {
                EXPECT_INT(hb_registry_remove(&r, user, gen), ==, UV_ENOENT);
            }
            break;
        default:
            /* A stale generation never removes. */
            EXPECT_INT(hb_registry_remove(&r, user, model[u] + 1000000000u), ==, UV_ENOENT);
            break;
        }
        if (op % 10000 == 0 || op == OPS - 1) {
            EXPECT_UINT(hb_registry_count(&r), ==, present);
            for (uint32_t v = 0; v < USERS; v++) {
                hb_registry_entry_t got;
                int rc = hb_registry_get(&r, v * 1024u, &got);
                if (model[v] == 0) {
                    EXPECT_INT(rc, ==, UV_ENOENT);
                } else {
                    EXPECT_INT(rc, ==, 0);
                    EXPECT_UINT(got.gen + 1, ==, model[v]);
                    EXPECT_UINT(got.set, ==, v);
                }
            }
        }
    }
    free(model);
    hb_registry_close(&r);
}
END_TEST

/* Concurrency: each thread logs its own users and a range shared by all in and out, with
 * generations that name the thread, the round and the user. */
enum {
    MT_THREADS = 4,   /* MT_OWN / 3 == MT_SHARED / 2: the loop visits them in groups of 3 + 2 */
    MT_OWN = 3000,    /* users only this thread touches */
    MT_SHARED = 2000, /* users every thread touches */
    MT_ROUNDS = 40,
    MT_SHARED_BASE = 0, /* shared users are 0..MT_SHARED-1 */
    MT_OWN_BASE = 100000,
};

typedef struct mt_thread {
    hb_registry_t *r;
    uv_barrier_t *start;
    uint32_t id;
    uint32_t errors;
} mt_thread_t;

static uint64_t mt_gen(uint32_t thread, uint32_t round, uint32_t user)
{
    return ((uint64_t)round << 40) | ((uint64_t)thread << 32) | user;
}

static uint32_t mt_own_user(uint32_t thread, uint32_t k)
{
    return MT_OWN_BASE + thread * MT_OWN + k;
}

/* An entry anyone may see: a generation naming this user, and the set its thread puts. */
static int mt_entry_ok(uint32_t user, hb_registry_entry_t e)
{
    return (uint32_t)e.gen == user && ((e.gen >> 32) & 0xff) == e.set && e.set < MT_THREADS &&
           (e.gen >> 40) < MT_ROUNDS;
}

static void mt_run(void *arg)
{
    mt_thread_t *t = arg;
    hb_registry_t *r = t->r;
    uv_barrier_wait(t->start);
    for (uint32_t round = 0; round < MT_ROUNDS; round++) {
        int last = round == MT_ROUNDS - 1;
        for (uint32_t k = 0; k < MT_OWN + MT_SHARED; k++) {
            /* Three own users, then two shared ones, which each thread visits from its own
             * starting point. */
            int own = k % 5 < 3;
            uint32_t user =
                own ? mt_own_user(t->id, k / 5 * 3 + k % 5)
                    : MT_SHARED_BASE + (k / 5 * 2 + k % 5 - 3 + t->id * 499) % MT_SHARED;
            uint64_t gen = mt_gen(t->id, round, user);
            hb_registry_entry_t old, got;
            int rc = hb_registry_put(r, user, entry(t->id, gen), &old);
            if (own ? rc != 0 : (rc != 0 && rc != 1))
                t->errors++;
            if (rc == 1 && !mt_entry_ok(user, old))
                t->errors++;
            rc = hb_registry_get(r, user, &got);
            if (own ? rc != 0 || got.gen != gen : (rc == 0 && !mt_entry_ok(user, got)))
                t->errors++;
            if (last)
                continue;
            rc = hb_registry_remove(r, user, gen);
            if (own ? rc != 0 : (rc != 0 && rc != UV_ENOENT))
                t->errors++;
        }
    }
}

START_TEST(test_concurrent_logins_and_logouts)
{
    hb_registry_t r;
    /* Few, small shards: threads meet in the same shard and tables grow while they do. */
    ck_assert_int_eq(hb_registry_init(&r, 4, 4), 0);
    uv_barrier_t start;
    ck_assert_int_eq(uv_barrier_init(&start, MT_THREADS), 0);
    mt_thread_t threads[MT_THREADS];
    uv_thread_t tid[MT_THREADS];
    for (uint32_t i = 0; i < MT_THREADS; i++) {
        threads[i].r = &r;
        threads[i].start = &start;
        threads[i].id = i;
        threads[i].errors = 0;
        ck_assert_int_eq(uv_thread_create(&tid[i], mt_run, &threads[i]), 0);
    }
    for (uint32_t i = 0; i < MT_THREADS; i++)
        ck_assert_int_eq(uv_thread_join(&tid[i]), 0);
    for (uint32_t i = 0; i < MT_THREADS; i++)
        ck_assert_uint_eq(threads[i].errors, 0);

    /* Every thread's last operation on each of its users is a put that stays: every own user
     * holds its thread's last put, every shared user the last put of one of the threads. */
    ck_assert_uint_eq(hb_registry_count(&r), MT_THREADS * MT_OWN + MT_SHARED);
    hb_registry_entry_t got;
    for (uint32_t t = 0; t < MT_THREADS; t++) {
        for (uint32_t k = 0; k < MT_OWN; k++) {
            uint32_t user = mt_own_user(t, k);
            ck_assert_int_eq(hb_registry_get(&r, user, &got), 0);
            ck_assert_uint_eq(got.set, t);
            ck_assert_uint_eq(got.gen, mt_gen(t, MT_ROUNDS - 1, user));
        }
    }
    for (uint32_t user = MT_SHARED_BASE; user < MT_SHARED_BASE + MT_SHARED; user++) {
        ck_assert_int_eq(hb_registry_get(&r, user, &got), 0);
        ck_assert_uint_lt(got.set, MT_THREADS);
        ck_assert_uint_eq(got.gen, mt_gen(got.set, MT_ROUNDS - 1, user));
    }
    uv_barrier_destroy(&start);
    hb_registry_close(&r);
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_rejects_bad_arguments);
    tcase_add_test(tc, test_shards_round_up_to_power_of_two);
    tcase_add_test(tc, test_put_get_remove);
    tcase_add_test(tc, test_put_replaces_and_returns_old);
    tcase_add_test(tc, test_remove_with_wrong_generation_keeps_entry);
    suite_add_tcase(s, tc);

    TCase *big = tcase_create("big");
    tcase_add_test(big, test_grows_to_a_million_users);
    tcase_add_test(big, test_matches_a_model_under_random_churn);
    tcase_add_test(big, test_concurrent_logins_and_logouts);
    tcase_set_timeout(big, 60);
    suite_add_tcase(s, big);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
