/* Unit tests for the common module: error codes, messages and version queries. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "hongbao/common.h"

START_TEST(test_hb_errors_have_names_and_messages)
{
    ck_assert_str_eq(hb_err_name(HB_EFRAMELONG), "EFRAMELONG");
    ck_assert_str_eq(hb_strerror(HB_EFRAMELONG), "frame length is above the maximum frame size");
    ck_assert_str_eq(hb_err_name(HB_EIDLE), "EIDLE");
    ck_assert_str_eq(hb_err_name(HB_EFULL), "EFULL");
}
END_TEST

START_TEST(test_uv_errors_pass_through)
{
    ck_assert_str_eq(hb_err_name(HB_EINVAL), "EINVAL");
    ck_assert_str_eq(hb_strerror(HB_ENOMEM), uv_strerror(HB_ENOMEM));
    ck_assert_str_eq(hb_err_name(HB_ENOBUFS), "ENOBUFS");
}
END_TEST

START_TEST(test_unknown_errors_are_static)
{
    ck_assert_str_eq(hb_strerror(-29999), "unknown error");
    ck_assert_str_eq(hb_err_name(-29999), "UNKNOWN");
    ck_assert_str_eq(hb_err_name(12345), "UNKNOWN");
}
END_TEST

START_TEST(test_hb_errors_are_disjoint_from_errno)
{
    /* Every HB_E* code lies in -30000..-30999, outside errno's and libuv's ranges. */
    static const int codes[] = {
#define HB_TEST_CODE_(name, value, text) HB_##name,
        HB_ERRNO_MAP(HB_TEST_CODE_)
#undef HB_TEST_CODE_
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_int_le(codes[i], -30000);
        ck_assert_int_ge(codes[i], -30999);
        ck_assert_str_ne(hb_strerror(codes[i]), "unknown error");
    }
}
END_TEST

START_TEST(test_version_matches_header)
{
    ck_assert_uint_eq(hb_version(), HB_VERSION_HEX);
    ck_assert_str_eq(hb_version_string(), HB_VERSION_STRING);
    ck_assert_uint_eq(hb_version() >> 16, HB_VERSION_MAJOR);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hb_errors_have_names_and_messages);
    tcase_add_test(tc, test_uv_errors_pass_through);
    tcase_add_test(tc, test_unknown_errors_are_static);
    tcase_add_test(tc, test_hb_errors_are_disjoint_from_errno);
    tcase_add_test(tc, test_version_matches_header);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(common_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
