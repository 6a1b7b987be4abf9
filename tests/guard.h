/* Inputs against a guard page, for the tests that check a parser never reads past its input: two
 * pages, the second PROT_NONE, and bytes copied to the very end of the first, so that reading one
 * byte past them faults. Use guard_setup and guard_teardown as a checked fixture. */
#ifndef HB_TEST_GUARD_H
#define HB_TEST_GUARD_H

#include <check.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *guard_base;
static size_t guard_page;

static void guard_setup(void)
{
    guard_page = (size_t)sysconf(_SC_PAGESIZE);
    void *p =
        mmap(NULL, 2 * guard_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    guard_base = p;
    ck_assert_int_eq(mprotect(guard_base + guard_page, guard_page, PROT_NONE), 0);
}

static void guard_teardown(void)
{
    munmap(guard_base, 2 * guard_page);
    guard_base = NULL;
}

/* n bytes of src ending where the readable page ends. */
static const char *guarded_bytes(const void *src, size_t n)
{
    ck_assert_uint_le(n, guard_page);
    char *at = guard_base + guard_page - n;
    memcpy(at, src, n);
    return at;
}

#endif /* HB_TEST_GUARD_H */
