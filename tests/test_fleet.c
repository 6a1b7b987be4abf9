/* Unit tests for the fleet module (core): a send-envelope's Redis hash read into the book's
 * envelope and judged by its one validation rule, in any field order, with every way the hash can
 * be wrong named; a budget partition's balance. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "hongbao/fleet.h"
#include "hongbao/rand.h"

#define ENV HB_SEND_ENVELOPE_ID_BASE

/* Fields from "name=value" strings. */
static size_t fields_of(const char *const *pairs, size_t n, hb_fleet_field_t *out)
{
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(pairs[i], '=');
        out[i] = (hb_fleet_field_t){pairs[i], (size_t)(eq - pairs[i]), eq + 1, strlen(eq + 1)};
    }
    return n;
}

static const char *read_pairs(const char *const *pairs, size_t n, hb_sendenv_t *e)
{
    hb_fleet_field_t f[32];
    ck_assert_uint_le(n, 32);
    return hb_fleet_envelope_read(ENV, f, fields_of(pairs, n, f), e);
}

static const char *const GOOD[] = {"t=100", "ms=1765065600000", "by=10.0.0.1:1025",
                                   "n=3",   "s:9=39",           "s:5=60",
                                   "s:0=1", "g:5=60",           "k=1",
                                   "a=60"};
#define NGOOD (sizeof GOOD / sizeof GOOD[0])

START_TEST(reads_a_well_formed_envelope)
{
    hb_sendenv_t e;
    const char *why = read_pairs(GOOD, NGOOD, &e);
    ck_assert_msg(why == NULL, "%s", why);
    EXPECT_UINT(e.id, ==, ENV);
    EXPECT_UINT(e.total, ==, 100);
    EXPECT_UINT(e.count, ==, 3);
    /* ascending users, whatever the hash's order */
    EXPECT_UINT(e.recipients[0], ==, 0);
    EXPECT_UINT(e.recipients[1], ==, 5);
    EXPECT_UINT(e.recipients[2], ==, 9);
    EXPECT_UINT(e.shares[0], ==, 1);
    EXPECT_UINT(e.shares[1], ==, 60);
    EXPECT_UINT(e.shares[2], ==, 39);
    EXPECT_UINT(e.claimed, ==, 2);
    EXPECT_UINT(e.claimed_sum, ==, 60);
}
END_TEST

START_TEST(any_field_order_reads_the_same)
{
    hb_rand_t rng;
    hb_rand_seed(&rng, 3);
    hb_sendenv_t want, got;
    ck_assert_ptr_null(read_pairs(GOOD, NGOOD, &want));
    const char *shuffled[NGOOD];
    memcpy(shuffled, GOOD, sizeof GOOD);
    for (int round = 0; round < 200; round++) {
        for (size_t i = NGOOD - 1; i > 0; i--) {
            size_t j = (size_t)hb_rand_below(&rng, i + 1);
            const char *t = shuffled[i];
            shuffled[i] = shuffled[j];
            shuffled[j] = t;
        }
        ck_assert_ptr_null(read_pairs(shuffled, NGOOD, &got));
        ck_assert_mem_eq(&got, &want, sizeof got);
    }
}
END_TEST

/* GOOD with field `name` replaced by `with` (NULL: removed), then read. */
static const char *read_with(const char *name, const char *with)
{
    const char *pairs[NGOOD + 1];
    size_t n = 0, len = strlen(name);
    int replaced = 0;
    for (size_t i = 0; i < NGOOD; i++) {
        if (strncmp(GOOD[i], name, len) == 0 && GOOD[i][len] == '=') {
            replaced = 1;
            if (with != NULL)
                pairs[n++] = with;
            continue;
        }
        pairs[n++] = GOOD[i];
    }
    if (!replaced)
        pairs[n++] = with;
    hb_sendenv_t e;
    return read_pairs(pairs, n, &e);
}

START_TEST(names_what_is_wrong)
{
    ck_assert_str_eq(read_with("t", "t=101"), "shares do not add up to the total");
    ck_assert_str_eq(read_with("t", NULL), "a field is missing (t, n, k or a)");
    ck_assert_str_eq(read_with("k", NULL), "a field is missing (t, n, k or a)");
    ck_assert_str_eq(read_with("t", "t=1x"), "a field is not a number");
    ck_assert_str_eq(read_with("s:9", "s:9=-39"), "a field is not a number");
    ck_assert_str_eq(read_with("n", "n=4"), "n is not the number of recipients");
    ck_assert_str_eq(read_with("g:5", "g:5=59"), "a grant differs from its share");
    ck_assert_str_eq(read_with("g:7", "g:7=1"), "a grant to a user who is not a recipient");
    ck_assert_str_eq(read_with("k", "k=2"), "k is not the number of grants");
    ck_assert_str_eq(read_with("a", "a=61"), "a is not the amount granted");
    ck_assert_str_eq(read_with("s:0", "s:0=0"), "a share is 0");
    ck_assert_str_eq(read_with("t", "t=99999999999"), "the total is too large");
    /* a second grant, consistent, is fine */
    const char *two[] = {"t=100",  "n=3",   "s:9=39", "s:5=60", "s:0=1",
                         "g:5=60", "g:0=1", "k=2",    "a=61"};
    hb_sendenv_t e;
    ck_assert_ptr_null(read_pairs(two, sizeof two / sizeof two[0], &e));
    EXPECT_UINT(e.claimed, ==, 3);
    const char *none[] = {"t=100", "n=0", "k=0", "a=0"};
    ck_assert_str_eq(read_pairs(none, 4, &e), "no recipient");
    const char *many[] = {"t=100",  "n=9",    "k=0",    "a=0",    "s:1=10", "s:2=10", "s:3=10",
                          "s:4=10", "s:5=10", "s:6=10", "s:7=10", "s:8=10", "s:9=20"};
    ck_assert_str_eq(read_pairs(many, sizeof many / sizeof many[0], &e),
                     "more recipients than an envelope may have");
}
END_TEST

START_TEST(partition_balance)
{
    long long v[15] = {10, 1000, 2, 200, 3, 300, 4, 400, 1, 100, 5, 1, 0, 4, 2};
    hb_fleet_partition_t p;
    ck_assert_int_eq(hb_fleet_partition_set(&p, v, 15), 0);
    ck_assert_ptr_null(hb_fleet_partition_check(&p));
    EXPECT_UINT(p.returned, ==, 5);
    EXPECT_UINT(p.leases, ==, 2);
    p.expired++;
    ck_assert_ptr_nonnull(strstr(hb_fleet_partition_check(&p), "envelopes"));
    p.expired--;
    p.queued_amount--;
    ck_assert_ptr_nonnull(strstr(hb_fleet_partition_check(&p), "amounts"));
    p.queued_amount++;
    p.dup = 1;
    ck_assert_str_eq(hb_fleet_partition_check(&p), "an envelope was handed out twice");
    p.dup = 0;
    p.bits = 3;
    ck_assert_ptr_nonnull(hb_fleet_partition_check(&p));
    hb_fleet_partition_t sum = {0};
    p.bits = 4;
    hb_fleet_partition_add(&sum, &p);
    hb_fleet_partition_add(&sum, &p);
    EXPECT_UINT(sum.generated, ==, 20);
    EXPECT_UINT(sum.handed_out_amount, ==, 800);
    EXPECT_UINT(sum.leases, ==, 4);
    ck_assert_ptr_null(hb_fleet_partition_check(&sum)); /* sums of balanced partitions balance */
    ck_assert_int_eq(hb_fleet_partition_set(&p, v, 14), HB_EINVAL);
    v[3] = -1;
    ck_assert_int_eq(hb_fleet_partition_set(&p, v, 15), HB_EINVAL);
}
END_TEST

static Suite *fleet_suite(void)
{
    Suite *s = suite_create("fleet");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, reads_a_well_formed_envelope);
    tcase_add_test(tc, any_field_order_reads_the_same);
    tcase_add_test(tc, names_what_is_wrong);
    tcase_add_test(tc, partition_balance);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fleet_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
