/* Unit tests for the fleetaudit module: its argument errors; a cluster that cannot be reached
 * (the callback once, with an error, and the loop left clean); UV_ENOTSUP from a library built
 * without hiredis. (Against a real cluster, balanced and not, it runs in tests/fleet.) */
#include <check.h>
#include <stdlib.h>

#include "hongbao.h"

static void record(int err, const hb_fleet_audit_result_t *r, void *arg)
{
    int *calls = arg;
    ck_assert_ptr_nonnull(r);
    ck_assert_int_ne(err, 0);
    calls[0]++;
    calls[1] = err;
}

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
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    /* Nothing listens on port 1: an error, once, within the cluster client's deadline. */
    int calls[2] = {0, 0};
    int r = hb_fleet_audit(&loop, "127.0.0.1:1", NULL, NULL, record, calls);
    if (r == UV_ENOTSUP) { /* built without hiredis */
        ck_assert_int_eq(uv_loop_close(&loop), 0);
        return;
    }
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(calls[0], 1);
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
