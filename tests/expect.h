/* Assertions for loops of many checks. Check records every passing ck_assert (a write to the
 * parent process when it forks), which makes million-iteration loops slow; these reach Check
 * only when the check fails, and then print both values like the typed ck_assert_* do. */
#ifndef HB_TESTS_EXPECT_H
#define HB_TESTS_EXPECT_H

#include <check.h>
#include <stdint.h>

#define HB_EXPECT_(type, fmt, X, OP, Y)                                                            \
    do {                                                                                           \
        type expect_x_ = (type)(X);                                                                \
        type expect_y_ = (type)(Y);                                                                \
        if (!(expect_x_ OP expect_y_))                                                             \
            ck_abort_msg("Assertion '%s %s %s' failed: %" fmt " vs %" fmt, #X, #OP, #Y, expect_x_, \
                         expect_y_);                                                               \
    } while (0)

/* EXPECT_UINT(a, <=, b): compare as uintmax_t; EXPECT_INT as intmax_t; EXPECT_PTR as pointers. */
#define EXPECT_UINT(X, OP, Y) HB_EXPECT_(uintmax_t, "ju", X, OP, Y)
#define EXPECT_INT(X, OP, Y)  HB_EXPECT_(intmax_t, "jd", X, OP, Y)
#define EXPECT_PTR(X, OP, Y)  HB_EXPECT_(const void *, "p", X, OP, Y)

#endif /* HB_TESTS_EXPECT_H */
