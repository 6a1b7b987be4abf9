/* Unit tests for the fleetaudit module: its argument errors and, in a library built without
 * hiredis, UV_ENOTSUP. (Against a real cluster it runs in the fleet's tests.) */
#include <check.h>
#include <stdlib.h>

#include "hongbao.h"

static void never(int err, const hb_fleet_audit_result_t *r, void *arg)
{
    (void)err, (void)r, (void)arg;
    ck_abort_msg("the callback of a call that failed ran");
}

START_TEST(arguments)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(hb_fleet_audit(NULL, "127.0.0.1:1", NULL, NULL, never, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_fleet_audit(&loop, NULL, NULL, NULL, never, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_fleet_audit(&loop, "", NULL, NULL, never, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_fleet_audit(&loop, "127.0.0.1:1", NULL, NULL, NULL, NULL), UV_EINVAL);
#ifndef HB_HAVE_REDIS
    ck_assert_int_eq(hb_fleet_audit(&loop, "127.0.0.1:1", NULL, NULL, never, NULL), UV_ENOTSUP);
#endif
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fleetaudit");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, arguments);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
