/* Unit tests for the internal FIFO (lib/core/hb_internal.h): order kept across growth and across
 * the ring's wrap, at() from the oldest, pop without a copy, free and reuse. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "hb_internal.h"

typedef struct item {
    uint64_t a;
    uint32_t b;
} item_t;

START_TEST(order_across_growth_and_wrap)
{
    hb__fifo_t f = {.elem = sizeof(item_t)};
    uint64_t pushed = 0, popped = 0;
    for (int round = 0; round < 200; round++) {
        int in = 1 + round % 97, out = round % 89;
        for (int i = 0; i < in; i++, pushed++) {
            item_t x = {pushed, (uint32_t)(pushed * 3)};
            ck_assert_int_eq(hb__fifo_push(&f, &x), 0);
        }
        ck_assert_uint_eq(f.count, pushed - popped);
        ck_assert_uint_eq(((const item_t *)hb__fifo_at(&f, 0))->a, popped);
        ck_assert_uint_eq(((const item_t *)hb__fifo_at(&f, f.count - 1))->a, pushed - 1);
        for (int i = 0; i < out && f.count > 0; i++, popped++) {
            item_t y;
            if (i % 2) {
                hb__fifo_pop(&f, &y);
                ck_assert_uint_eq(y.a, popped);
                ck_assert_uint_eq(y.b, (uint32_t)(popped * 3));
            } else {
                hb__fifo_pop(&f, NULL);
            }
        }
    }
    hb__fifo_free(&f);
    ck_assert_uint_eq(f.count, 0);
    item_t z = {7, 7};
    ck_assert_int_eq(hb__fifo_push(&f, &z), 0); /* usable again after free */
    ck_assert_uint_eq(((const item_t *)hb__fifo_at(&f, 0))->a, 7);
    hb__fifo_free(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fifo");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, order_across_growth_and_wrap);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
