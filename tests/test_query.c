/* Unit tests for the query-string helpers (hongbao/query.h): finding a parameter, the first match,
 * percent-decoding, copying a value out, bounded integers. A core test: no libuv. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/query.h"

START_TEST(test_query_get)
{
    const char *q = "qps=100&sum=5&flag&empty=&q%70s=7&a+b=c";
    size_t n = strlen(q);
    const char *v;
    size_t vl;
    ck_assert_int_eq(hb_query_get(q, n, "qps", &v, &vl), 0);
    ck_assert_uint_eq(vl, 3);
    ck_assert_mem_eq(v, "100", 3);
    ck_assert_int_eq(hb_query_get(q, n, "sum", &v, &vl), 0);
    ck_assert_mem_eq(v, "5", 1);
    ck_assert_int_eq(hb_query_get(q, n, "flag", &v, &vl), 0);
    ck_assert_uint_eq(vl, 0);
    ck_assert_int_eq(hb_query_get(q, n, "empty", &v, &vl), 0);
    ck_assert_uint_eq(vl, 0);
    ck_assert_int_eq(hb_query_get(q, n, "a b", &v, &vl), 0); /* keys are decoded */
    ck_assert_mem_eq(v, "c", 1);
    ck_assert_int_eq(hb_query_get(q, n, "qp", &v, &vl), HB_ENOENT); /* no prefix match */
    ck_assert_int_eq(hb_query_get(q, n, "qpsx", &v, &vl), HB_ENOENT);
    ck_assert_int_eq(hb_query_get(q, n, "missing", &v, &vl), HB_ENOENT);
    ck_assert_int_eq(hb_query_get("", 0, "qps", &v, &vl), HB_ENOENT);
    ck_assert_int_eq(hb_query_get(NULL, 0, "qps", &v, &vl), HB_ENOENT);
    /* Only len bytes count. */
    ck_assert_int_eq(hb_query_get(q, 7, "sum", &v, &vl), HB_ENOENT);
    ck_assert_int_eq(hb_query_get(q, 7, "qps", &v, &vl), 0);
    ck_assert_uint_eq(vl, 3);
    ck_assert_int_eq(hb_query_get(q, n, NULL, &v, &vl), HB_EINVAL);
    ck_assert_int_eq(hb_query_get(q, n, "qps", NULL, &vl), HB_EINVAL);
}
END_TEST

START_TEST(test_query_first_match_wins)
{
    const char *q = "&&x=1&x=2";
    const char *v;
    size_t vl;
    ck_assert_int_eq(hb_query_get(q, strlen(q), "x", &v, &vl), 0);
    ck_assert_mem_eq(v, "1", 1);
    ck_assert_int_eq(hb_query_get(q, strlen(q), "", &v, &vl), HB_ENOENT);
}
END_TEST

START_TEST(test_percent_decode)
{
    char b[16];
    ck_assert_int_eq(hb_query_percent_decode("a%20b+c%2Fd%2f", 14, b, sizeof b), 8);
    ck_assert_str_eq(b, "a b c/d/");
    ck_assert_int_eq(hb_query_percent_decode("", 0, b, sizeof b), 0);
    ck_assert_str_eq(b, "");
    ck_assert_int_eq(hb_query_percent_decode("%4", 2, b, sizeof b), HB_EINVAL);
    ck_assert_int_eq(hb_query_percent_decode("%zz", 3, b, sizeof b), HB_EINVAL);
    ck_assert_int_eq(hb_query_percent_decode("%", 1, b, sizeof b), HB_EINVAL);
    /* Exactly fits with its NUL, then one byte short. */
    ck_assert_int_eq(hb_query_percent_decode("abc", 3, b, 4), 3);
    ck_assert_int_eq(hb_query_percent_decode("abcd", 4, b, 4), HB_ENOBUFS);
    ck_assert_int_eq(hb_query_percent_decode("%41%42%43", 9, b, 4), 3);
    ck_assert_str_eq(b, "ABC");
    ck_assert_int_eq(hb_query_percent_decode("", 0, b, 0), HB_ENOBUFS);
    ck_assert_int_eq(hb_query_percent_decode("a", 1, NULL, 4), HB_EINVAL);
}
END_TEST

START_TEST(test_query_copy)
{
    const char *q = "name=J%C3%BCrgen+X&bad=%G1&long=0123456789";
    size_t n = strlen(q);
    char b[10];
    size_t len = 99;
    ck_assert_int_eq(hb_query_copy(q, n, "name", b, sizeof b, &len), 0);
    ck_assert_str_eq(b, "J\xc3\xbcrgen X");
    ck_assert_uint_eq(len, 9);
    ck_assert_int_eq(hb_query_copy(q, n, "bad", b, sizeof b, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_query_copy(q, n, "long", b, sizeof b, NULL), HB_ENOBUFS);
    ck_assert_int_eq(hb_query_copy(q, n, "nope", b, sizeof b, NULL), HB_ENOENT);
}
END_TEST

static int u64_of(const char *q, uint64_t min, uint64_t max, uint64_t *out)
{
    return hb_query_u64(q, strlen(q), "qps", min, max, out);
}

START_TEST(test_query_u64)
{
    uint64_t v = 42;
    ck_assert_int_eq(u64_of("sum=1", 0, 10, &v), HB_ENOENT);
    ck_assert_int_eq(u64_of("qps=", 0, 10, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps", 0, 10, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps=abc", 0, 10, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps=-1", 0, 10, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps=%2B1", 0, 10, &v), HB_EINVAL); /* "+1" */
    ck_assert_int_eq(u64_of("qps=+1", 0, 10, &v), HB_EINVAL);   /* " 1" */
    ck_assert_int_eq(u64_of("qps=1x", 0, 10, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps=1%", 0, 10, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps=0x10", 0, 100, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps=18446744073709551616", 0, UINT64_MAX, &v), HB_ERANGE);
    ck_assert_int_eq(u64_of("qps=99999999999999999999999", 0, UINT64_MAX, &v), HB_ERANGE);
    /* Junk wins over overflow: it is not a number at all. */
    ck_assert_int_eq(u64_of("qps=18446744073709551616x", 0, UINT64_MAX, &v), HB_EINVAL);
    ck_assert_int_eq(u64_of("qps=11", 0, 10, &v), HB_ERANGE);
    ck_assert_int_eq(u64_of("qps=4", 5, 10, &v), HB_ERANGE);
    ck_assert_int_eq(u64_of("qps=4", 10, 5, &v), HB_EINVAL);
    ck_assert_uint_eq(v, 42); /* untouched on error */
    ck_assert_int_eq(u64_of("qps=18446744073709551615", 0, UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert_int_eq(u64_of("sum=3&qps=%31%30", 0, 10, &v), 0);
    ck_assert_uint_eq(v, 10);
    ck_assert_int_eq(u64_of("qps=007", 0, 10, &v), 0);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(u64_of("qps=5", 5, 5, &v), 0);
    ck_assert_uint_eq(v, 5);
    ck_assert_int_eq(hb_query_u64("qps=1", 5, "qps", 0, 1, NULL), HB_EINVAL);
}
END_TEST

/* ---- server set-up errors (loop, no client) ---- */

int main(void)
{
    Suite *s = suite_create("query");
    TCase *tc = tcase_create("query");
    tcase_add_test(tc, test_query_get);
    tcase_add_test(tc, test_query_first_match_wins);
    tcase_add_test(tc, test_percent_decode);
    tcase_add_test(tc, test_query_copy);
    tcase_add_test(tc, test_query_u64);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
