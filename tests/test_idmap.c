/* Unit tests for the id map: init and close, insert/find/remove with every value size, removal by
 * pointer, iteration, remove_if (every entry seen once, clusters wrapping round the table's end
 * included), a randomised comparison against a plain array, growth to a million keys, churn
 * that never grows the table, the hash's spread of arithmetic progressions, and a failed growth
 * under an address-space limit that changes nothing. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "expect.h"
#include "hongbao/idmap.h"

/* A small seeded generator (splitmix64), so every run sees the same sequence. */
typedef struct test_rng {
    uint64_t s;
} test_rng_t;

static uint64_t rng_next(test_rng_t *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint32_t rng_below(test_rng_t *r, uint32_t n)
{
    return (uint32_t)(rng_next(r) % n);
}

/* ---- the table's private layout, for the invariant checks ---- */

/* Each slot: u32 key, u32 in use, then the value at offset 8. */
static uint32_t slot_used(const hb_idmap_t *m, size_t i)
{
    uint32_t used;
    memcpy(&used, m->slots + i * m->stride + 4, sizeof used);
    return used;
}

static uint32_t slot_key(const hb_idmap_t *m, size_t i)
{
    uint32_t key;
    memcpy(&key, m->slots + i * m->stride, sizeof key);
    return key;
}

/* Fibonacci hashing, or after the switch the mixing hash: the top bits. */
static size_t home_slot(const hb_idmap_t *m, uint32_t key)
{
    uint64_t h = m->mixed ? hb_idmap_hash(key) : key * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> m->shift);
}

/* The slot index of a value pointer. */
static size_t slot_of(const hb_idmap_t *m, const void *value)
{
    return (size_t)((const unsigned char *)value - 8 - m->slots) / m->stride;
}

/* hb_idmap_insert, the value pointer returned rather than stored through a void **. */
static void *insert(hb_idmap_t *m, uint32_t key, int *rc)
{
    void *v = NULL;
    *rc = hb_idmap_insert(m, key, &v);
    return v;
}

/* Probe statistics of a map: mean slots looked at by a successful find, and the longest
 * displacement of an entry from its home. */
struct probe_stats {
    double mean_hit;
    size_t max_displacement;
};

/* Checks everything a map promises: power-of-two capacity, the load limit, count matching the
 * used slots, no duplicate key, and every entry reachable from its home without crossing an
 * empty slot (so finds never stop short). */
static struct probe_stats check_invariants(const hb_idmap_t *m)
{
    struct probe_stats st = {0, 0};
    EXPECT_PTR(m->slots, !=, NULL);
    EXPECT_UINT(m->capacity & (m->capacity - 1), ==, 0);
    EXPECT_UINT(m->capacity, >=, 8);
    EXPECT_UINT(m->count * 10, <=, m->capacity * 7);
    EXPECT_UINT(m->shift + __builtin_ctzll(m->capacity), ==, 64);
    size_t mask = m->capacity - 1, used = 0;
    uint64_t probes = 0;
    for (size_t i = 0; i < m->capacity; i++) {
        if (!slot_used(m, i))
            continue;
        used++;
        uint32_t key = slot_key(m, i);
        size_t home = home_slot(m, key);
        size_t d = (i - home) & mask;
        for (size_t k = 0; k < d; k++)
            EXPECT_UINT(slot_used(m, (home + k) & mask), ==, 1);
        EXPECT_PTR(hb_idmap_find(m, key), ==, m->slots + i * m->stride + 8);
        probes += d + 1;
        if (d > st.max_displacement)
            st.max_displacement = d;
    }
    EXPECT_UINT(used, ==, m->count);
    st.mean_hit = used == 0 ? 0 : (double)probes / (double)used;
    return st;
}

/* ---- basic behaviour ---- */

START_TEST(test_init_sizes_and_close)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(NULL, 8, 0), HB_EINVAL);
    ck_assert_int_eq(hb_idmap_init(&m, HB_IDMAP_VALUE_MAX + 1, 0), HB_EINVAL);
    ck_assert_ptr_null(m.slots);
    ck_assert_uint_eq(m.capacity, 0);
    ck_assert_ptr_null(hb_idmap_find(&m, 1));
    ck_assert_int_eq(hb_idmap_insert(&m, 1, NULL), HB_EINVAL); /* init failed */
    hb_idmap_close(&m);

    /* The smallest table that holds expected keys within 7/10. */
    static const size_t expected[] = {0, 1, 5, 6, 11, 12, 700, 716, 717, 1000, 734003, 734004};
    static const size_t capacity[] = {8,    8,    8,    16,   16,       32,
                                      1024, 1024, 2048, 2048, 1u << 20, 1u << 21};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        ck_assert_int_eq(hb_idmap_init(&m, 16, expected[i]), 0);
        ck_assert_uint_eq(m.capacity, capacity[i]);
        ck_assert_uint_eq(m.count, 0);
        ck_assert_uint_eq(m.value_size, 16);
        ck_assert_uint_eq(m.stride, 24);
        /* That many inserts never grow it. */
        const unsigned char *slots = m.slots;
        for (uint32_t k = 0; k < expected[i]; k++)
            EXPECT_INT(hb_idmap_insert(&m, k, NULL), ==, 0);
        ck_assert_ptr_eq(m.slots, slots);
        ck_assert_uint_eq(m.capacity, capacity[i]);
        check_invariants(&m);
        hb_idmap_close(&m);
        ck_assert_ptr_null(m.slots);
        ck_assert_uint_eq(m.capacity, 0);
        ck_assert_uint_eq(m.count, 0);
        hb_idmap_close(&m);
    }

    /* Slot sizes: an 8-byte header, the value rounded up to 8. */
    static const size_t sizes[] = {0, 1, 7, 8, 9, 48, HB_IDMAP_VALUE_MAX};
    static const size_t strides[] = {8, 16, 16, 16, 24, 56, HB_IDMAP_VALUE_MAX + 8};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ck_assert_int_eq(hb_idmap_init(&m, sizes[i], 0), 0);
        ck_assert_uint_eq(m.stride, strides[i]);
        hb_idmap_close(&m);
    }

    /* An expected count no table can hold fails cleanly. */
    ck_assert_int_eq(hb_idmap_init(&m, 8, SIZE_MAX), HB_ENOMEM);
    ck_assert_ptr_null(m.slots);
    ck_assert_uint_eq(m.capacity, 0);
    ck_assert_ptr_null(hb_idmap_find(&m, 0));
    hb_idmap_close(&m);
    ck_assert_int_eq(hb_idmap_init(&m, HB_IDMAP_VALUE_MAX, SIZE_MAX / 16), HB_ENOMEM);
    hb_idmap_close(&m);
}
END_TEST

START_TEST(test_closed_map_is_empty_and_reusable)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint64_t), 100), 0);
    for (uint32_t k = 0; k < 50; k++)
        ck_assert_int_eq(hb_idmap_insert(&m, k, NULL), 0);
    hb_idmap_close(&m);
    size_t cursor = 0;
    ck_assert_ptr_null(hb_idmap_find(&m, 7));
    ck_assert_int_eq(hb_idmap_remove(&m, 7, NULL), HB_ENOENT);
    ck_assert_ptr_null(hb_idmap_next(&m, &cursor, NULL));
    ck_assert_uint_eq(hb_idmap_remove_if(&m, NULL, NULL), 0);
    /* An insert allocates the smallest table again. */
    void *v = NULL;
    ck_assert_int_eq(hb_idmap_insert(&m, 7, &v), 0);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(m.capacity, 8);
    ck_assert_uint_eq(m.count, 1);
    ck_assert_ptr_eq(hb_idmap_find(&m, 7), v);
    hb_idmap_close(&m);
}
END_TEST

struct entry {
    uint64_t a;
    uint32_t b;
    uint16_t c;
};

START_TEST(test_insert_find_remove)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(struct entry), 0), 0);
    static const uint32_t keys[] = {0, 1, 2, 42, 0x200000, UINT32_MAX - 1, UINT32_MAX};
    enum { NKEYS = sizeof keys / sizeof keys[0] };
    for (size_t i = 0; i < NKEYS; i++) {
        ck_assert_ptr_null(hb_idmap_find(&m, keys[i]));
        int rc;
        struct entry *e = insert(&m, keys[i], &rc);
        ck_assert_int_eq(rc, 0);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq((uintptr_t)e % 8, 0);
        /* A new key's value is zero. */
        ck_assert_uint_eq(e->a, 0);
        ck_assert_uint_eq(e->b, 0);
        ck_assert_uint_eq(e->c, 0);
        e->a = (uint64_t)keys[i] << 20 | 0xABC;
        e->b = keys[i] ^ 0x5555;
        e->c = (uint16_t)i;
        ck_assert_uint_eq(m.count, i + 1);
    }
    ck_assert_uint_eq(m.capacity, 16); /* grew once: 7 keys do not fit 8 slots at 7/10 */
    check_invariants(&m);
    for (size_t i = 0; i < NKEYS; i++) {
        const struct entry *e = hb_idmap_find(&m, keys[i]);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(e->a, (uint64_t)keys[i] << 20 | 0xABC);
        ck_assert_uint_eq(e->b, keys[i] ^ 0x5555);
        ck_assert_uint_eq(e->c, i);
    }
    static const uint32_t absent[] = {3, 41, 43, 0x1FFFFF, 0x200001, UINT32_MAX - 2};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        ck_assert_ptr_null(hb_idmap_find(&m, absent[i]));

    /* Inserting a held key finds it: same pointer, value untouched, nothing added. */
    int rc;
    struct entry *e = insert(&m, 42, &rc);
    ck_assert_int_eq(rc, 1);
    ck_assert_ptr_eq(e, hb_idmap_find(&m, 42));
    ck_assert_uint_eq(e->b, 42 ^ 0x5555);
    ck_assert_int_eq(hb_idmap_insert(&m, 42, NULL), 1);
    ck_assert_uint_eq(m.count, NKEYS);

    /* Remove copies the value out; a second remove, or an absent key, leaves out as it was. */
    struct entry out;
    ck_assert_int_eq(hb_idmap_remove(&m, 42, &out), 0);
    ck_assert_uint_eq(out.a, (uint64_t)42 << 20 | 0xABC);
    ck_assert_uint_eq(out.c, 3);
    memset(&out, 0xEE, sizeof out);
    ck_assert_int_eq(hb_idmap_remove(&m, 42, &out), HB_ENOENT);
    ck_assert_int_eq(hb_idmap_remove(&m, 3, NULL), HB_ENOENT);
    ck_assert_uint_eq(out.b, 0xEEEEEEEEu);
    ck_assert_ptr_null(hb_idmap_find(&m, 42));
    ck_assert_uint_eq(m.count, NKEYS - 1);
    check_invariants(&m);

    /* Re-inserted, the key starts from zero again. */
    e = insert(&m, 42, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(e->a, 0);
    ck_assert_uint_eq(e->b, 0);

    /* The extremes go like any other key. */
    ck_assert_int_eq(hb_idmap_remove(&m, 0, NULL), 0);
    ck_assert_int_eq(hb_idmap_remove(&m, UINT32_MAX, NULL), 0);
    ck_assert_ptr_null(hb_idmap_find(&m, 0));
    ck_assert_ptr_null(hb_idmap_find(&m, UINT32_MAX));
    ck_assert_ptr_nonnull(hb_idmap_find(&m, UINT32_MAX - 1));
    ck_assert_uint_eq(m.count, NKEYS - 2);
    check_invariants(&m);
    hb_idmap_close(&m);
}
END_TEST

/* Values of every size keep their own bytes: fill each with a pattern of its key and check that
 * no other entry's writes (or a growth) disturbed it. */
START_TEST(test_value_sizes)
{
    static const size_t sizes[] = {0, 1, 3, 8, 13, 48, 100, HB_IDMAP_VALUE_MAX};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t size = sizes[s];
        hb_idmap_t m;
        ck_assert_int_eq(hb_idmap_init(&m, size, 0), 0);
        for (uint32_t k = 0; k < 3000; k++) {
            int rc;
            unsigned char *v = insert(&m, k * 7919u, &rc);
            EXPECT_INT(rc, ==, 0);
            EXPECT_UINT((uintptr_t)v % 8, ==, 0);
            for (size_t i = 0; i < size; i++) {
                EXPECT_UINT(v[i], ==, 0);
                v[i] = (unsigned char)(k + i);
            }
        }
        for (uint32_t k = 0; k < 3000; k += 2)
            EXPECT_INT(hb_idmap_remove(&m, k * 7919u, NULL), ==, 0);
        for (uint32_t k = 0; k < 3000; k++) {
            const unsigned char *v = hb_idmap_find(&m, k * 7919u);
            if (k % 2 == 0) {
                EXPECT_PTR(v, ==, NULL);
                continue;
            }
            EXPECT_PTR(v, !=, NULL);
            for (size_t i = 0; i < size; i++)
                EXPECT_UINT(v[i], ==, (unsigned char)(k + i));
        }
        ck_assert_uint_eq(m.count, 1500);
        check_invariants(&m);
        hb_idmap_close(&m);
    }
}
END_TEST

/* remove_found: the entry of a value pointer goes, the others stay findable. */
START_TEST(test_remove_found)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(void *), 0), 0);
    int objects[500];
    for (uint32_t k = 0; k < 500; k++) {
        int rc;
        void **v = insert(&m, 1000 + k, &rc);
        ck_assert_int_eq(rc, 0);
        *v = &objects[k];
    }
    /* As a SET drops a connection: remove the user's entry only if it is this connection. */
    for (uint32_t k = 0; k < 500; k += 3) {
        void **v = hb_idmap_find(&m, 1000 + k);
        ck_assert_ptr_nonnull(v);
        ck_assert_ptr_eq(*v, &objects[k]);
        hb_idmap_remove_found(&m, v);
        ck_assert_ptr_null(hb_idmap_find(&m, 1000 + k));
    }
    ck_assert_uint_eq(m.count, 500 - 167);
    for (uint32_t k = 0; k < 500; k++) {
        void **v = hb_idmap_find(&m, 1000 + k);
        if (k % 3 == 0) {
            ck_assert_ptr_null(v);
        } else {
            ck_assert_ptr_nonnull(v);
            ck_assert_ptr_eq(*v, &objects[k]);
        }
    }
    check_invariants(&m);
    /* Down to empty through pointers from next. */
    size_t cursor = 0;
    void *v;
    while ((v = hb_idmap_next(&m, &cursor, NULL)) != NULL) {
        hb_idmap_remove_found(&m, v);
        cursor = 0; /* the map changed: start again */
    }
    ck_assert_uint_eq(m.count, 0);
    hb_idmap_close(&m);
}
END_TEST

START_TEST(test_next_visits_each_once)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint32_t), 0), 0);
    size_t cursor = 0;
    uint32_t key = 12345;
    ck_assert_ptr_null(hb_idmap_next(&m, &cursor, &key));
    ck_assert_uint_eq(key, 12345); /* untouched at the end */
    enum { N = 5000 };
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    for (uint32_t k = 0; k < N; k++) {
        int rc;
        uint32_t *v = insert(&m, k * 64, &rc);
        ck_assert_int_eq(rc, 0);
        *v = k;
    }
    for (uint32_t k = 0; k < N; k += 5)
        ck_assert_int_eq(hb_idmap_remove(&m, k * 64, NULL), 0);
    cursor = 0;
    size_t visits = 0;
    uint32_t *v;
    while ((v = hb_idmap_next(&m, &cursor, &key)) != NULL) {
        EXPECT_UINT(key, ==, *v * 64);
        EXPECT_UINT(*v % 5, !=, 0);
        EXPECT_UINT(seen[*v], ==, 0);
        seen[*v] = 1;
        *v += N; /* values may be changed while iterating */
        visits++;
    }
    ck_assert_uint_eq(visits, N - N / 5);
    ck_assert_uint_eq(visits, m.count);
    ck_assert_ptr_null(hb_idmap_next(&m, &cursor, NULL)); /* stays at the end */
    ck_assert_uint_eq(*(uint32_t *)hb_idmap_find(&m, 64), 1 + N);
    /* A NULL key pointer is allowed. */
    cursor = 0;
    visits = 0;
    while (hb_idmap_next(&m, &cursor, NULL) != NULL)
        visits++;
    ck_assert_uint_eq(visits, m.count);
    hb_idmap_close(&m);
}
END_TEST

/* ---- remove_if ---- */

struct filter {
    unsigned char *visits; /* per key index */
    uint32_t modulus;      /* remove keys whose index + 1 is 0 modulo this */
    uint32_t stride;
    size_t calls;
};

static int filter_pred(void *arg, uint32_t key, void *value)
{
    struct filter *f = arg;
    uint32_t k = *(uint32_t *)value;
    EXPECT_UINT(key, ==, k * f->stride);
    f->visits[k]++;
    f->calls++;
    return (k + 1) % f->modulus == 0;
}

static void remove_if_case(uint32_t n, uint32_t stride, uint32_t modulus, size_t expected)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint32_t), expected), 0);
    unsigned char *visits = calloc(n, 1);
    ck_assert_ptr_nonnull(visits);
    for (uint32_t k = 0; k < n; k++) {
        int rc;
        uint32_t *v = insert(&m, k * stride, &rc);
        EXPECT_INT(rc, ==, 0);
        *v = k;
    }
    struct filter f = {visits, modulus, stride, 0};
    size_t want = n / modulus;
    ck_assert_uint_eq(hb_idmap_remove_if(&m, filter_pred, &f), want);
    ck_assert_uint_eq(f.calls, n);
    for (uint32_t k = 0; k < n; k++)
        EXPECT_UINT(visits[k], ==, 1);
    ck_assert_uint_eq(m.count, n - want);
    check_invariants(&m);
    for (uint32_t k = 0; k < n; k++)
        EXPECT_INT(hb_idmap_find(&m, k * stride) == NULL, ==, (k + 1) % modulus == 0);
    hb_idmap_close(&m);
    free(visits);
}

START_TEST(test_remove_if_sees_each_once)
{
    /* Full tables (at the load limit), so clusters are long and some wrap round the end; every
     * entry removed, every other, every seventh, none. */
    static const uint32_t moduli[] = {1, 2, 7, UINT32_MAX};
    for (size_t i = 0; i < sizeof moduli / sizeof moduli[0]; i++) {
        remove_if_case(5, 1, moduli[i], 0);
        remove_if_case(716, 1, moduli[i], 716);
        remove_if_case(716, 1024, moduli[i], 716);
        remove_if_case(100000, 13, moduli[i], 100000);
    }
}
END_TEST

/* Removes the entries whose value (an index below 5) has its bit set in subset. */
struct subset_filter {
    unsigned subset;
    unsigned char visits[5];
    unsigned calls;
};

static int subset_pred(void *arg, uint32_t key, void *value)
{
    struct subset_filter *f = arg;
    uint32_t i = *(uint32_t *)value;
    (void)key;
    EXPECT_UINT(i, <, 5);
    f->visits[i]++;
    f->calls++;
    return (f->subset >> i) & 1;
}

/* A map whose last slot and first slots form one cluster: entries must move back across the end
 * of the table, and a careless scan would see one twice (before and after it moves). */
START_TEST(test_remove_if_wrapping_cluster)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint32_t), 0), 0);
    ck_assert_uint_eq(m.capacity, 8);
    /* Five keys whose home is the last slot: they fill slots 7, 0, 1, 2, 3. */
    uint32_t keys[5];
    unsigned found = 0;
    for (uint32_t k = 0; found < 5; k++) {
        if (home_slot(&m, k) == 7)
            keys[found++] = k;
    }
    hb_idmap_close(&m);
    /* Every subset of the five removed in one pass (a fresh map each time, as the map would
     * rightly give up Fibonacci hashing for keys chosen to collide): each entry seen once, the
     * right ones gone, the rest reachable. */
    for (unsigned subset = 0; subset < 32; subset++) {
        ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint32_t), 0), 0);
        for (unsigned i = 0; i < 5; i++) {
            int rc;
            uint32_t *v = insert(&m, keys[i], &rc);
            ck_assert_int_eq(rc, 0);
            *v = i;
        }
        ck_assert_uint_eq(m.capacity, 8);
        ck_assert_uint_eq(m.mixed, 0);
        for (unsigned i = 0; i < 5; i++)
            ck_assert_uint_eq(slot_of(&m, hb_idmap_find(&m, keys[i])), (7 + i) % 8);
        struct subset_filter f;
        memset(&f, 0, sizeof f);
        f.subset = subset;
        size_t removed = (size_t)__builtin_popcount(subset);
        ck_assert_uint_eq(hb_idmap_remove_if(&m, subset_pred, &f), removed);
        ck_assert_uint_eq(f.calls, 5);
        for (unsigned i = 0; i < 5; i++) {
            ck_assert_uint_eq(f.visits[i], 1);
            ck_assert_int_eq(hb_idmap_find(&m, keys[i]) == NULL, (subset >> i) & 1);
        }
        ck_assert_uint_eq(m.count, 5 - removed);
        struct probe_stats st = check_invariants(&m);
        /* Closed up: the survivors fill slots 7, 0, ... in their order. */
        ck_assert_uint_eq(st.max_displacement, 5 - removed == 0 ? 0 : 5 - removed - 1);
        hb_idmap_close(&m);
    }
}
END_TEST

/* remove_if's predicate may change the values of the entries it keeps. */
static int halve_odd(void *arg, uint32_t key, void *value)
{
    (void)arg;
    uint64_t *v = value;
    if (key % 2 == 0)
        return 1;
    *v /= 2;
    return 0;
}

START_TEST(test_remove_if_may_change_kept_values)
{
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint64_t), 0), 0);
    for (uint32_t k = 0; k < 1000; k++) {
        int rc;
        uint64_t *v = insert(&m, k, &rc);
        ck_assert_int_eq(rc, 0);
        *v = 2 * (uint64_t)k;
    }
    ck_assert_uint_eq(hb_idmap_remove_if(&m, halve_odd, NULL), 500);
    for (uint32_t k = 0; k < 1000; k++) {
        const uint64_t *v = hb_idmap_find(&m, k);
        if (k % 2 == 0)
            ck_assert_ptr_null(v);
        else
            ck_assert_uint_eq(*v, k);
    }
    hb_idmap_close(&m);
}
END_TEST

/* ---- against a model ---- */

#define MODEL_KEYS 1024u

struct model_value {
    uint64_t stamp;
    uint32_t key;
    uint32_t index;
};

/* The model: a plain array over MODEL_KEYS key indexes; index i is key base + i * step (wrapping
 * 32 bits), so a run covers clustered and spread keys alike. */
struct model {
    uint32_t base, step;
    bool present[MODEL_KEYS];
    uint64_t stamp[MODEL_KEYS];
    size_t count;
};

static uint32_t model_key(const struct model *md, uint32_t i)
{
    return md->base + i * md->step;
}

static void model_check_all(const struct model *md, const hb_idmap_t *m)
{
    EXPECT_UINT(m->count, ==, md->count);
    check_invariants(m);
    for (uint32_t i = 0; i < MODEL_KEYS; i++) {
        const struct model_value *v = hb_idmap_find(m, model_key(md, i));
        if (!md->present[i]) {
            EXPECT_PTR(v, ==, NULL);
            continue;
        }
        EXPECT_PTR(v, !=, NULL);
        EXPECT_UINT(v->stamp, ==, md->stamp[i]);
        EXPECT_UINT(v->key, ==, model_key(md, i));
        EXPECT_UINT(v->index, ==, i);
    }
    /* Iteration gives exactly the model's keys, once each. */
    unsigned char seen[MODEL_KEYS];
    memset(seen, 0, sizeof seen);
    size_t cursor = 0, visits = 0;
    uint32_t key;
    const struct model_value *v;
    while ((v = hb_idmap_next(m, &cursor, &key)) != NULL) {
        EXPECT_UINT(v->index, <, MODEL_KEYS);
        EXPECT_UINT(key, ==, model_key(md, v->index));
        EXPECT_UINT(md->present[v->index], ==, 1);
        EXPECT_UINT(seen[v->index], ==, 0);
        seen[v->index] = 1;
        visits++;
    }
    EXPECT_UINT(visits, ==, md->count);
}

struct model_expire {
    uint64_t before;
    size_t calls;
};

static int model_expire_pred(void *arg, uint32_t key, void *value)
{
    struct model_expire *x = arg;
    const struct model_value *v = value;
    EXPECT_UINT(v->key, ==, key);
    x->calls++;
    return v->stamp < x->before;
}

/* Random inserts (new and held keys), finds, removes (by key and by pointer) and remove_if
 * passes against the model, in three key spaces; results and state must agree throughout. */
static void model_run(uint32_t base, uint32_t step, uint64_t seed)
{
    enum { OPS = 300000 };
    static struct model md; /* static: large */
    memset(&md, 0, sizeof md);
    md.base = base;
    md.step = step;
    test_rng_t rng = {seed};
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(struct model_value), 0), 0);
    unsigned outcomes[6] = {0};
    size_t peak = 0;
    uint64_t stamp = 0;
    for (unsigned op = 0; op < OPS; op++) {
        /* The live share drifts between sparse and dense, so the table grows in bursts. */
        uint32_t range = (op / 50000) % 2 == 0 ? MODEL_KEYS : MODEL_KEYS / 8;
        uint32_t i = rng_below(&rng, range);
        uint32_t key = model_key(&md, i);
        uint32_t dice = rng_below(&rng, 100);
        stamp++;
        if (dice < 40) {
            int rc;
            struct model_value *v = insert(&m, key, &rc);
            EXPECT_INT(rc, ==, md.present[i] ? 1 : 0);
            EXPECT_PTR(v, !=, NULL);
            if (rc == 0) {
                EXPECT_UINT(v->stamp, ==, 0);
                v->key = key;
                v->index = i;
                md.present[i] = true;
                md.count++;
            } else {
                EXPECT_UINT(v->stamp, ==, md.stamp[i]);
            }
            v->stamp = stamp;
            md.stamp[i] = stamp;
            outcomes[rc]++;
        } else if (dice < 60) {
            struct model_value out;
            memset(&out, 0, sizeof out);
            int rc = hb_idmap_remove(&m, key, &out);
            EXPECT_INT(rc, ==, md.present[i] ? 0 : HB_ENOENT);
            if (rc == 0) {
                EXPECT_UINT(out.stamp, ==, md.stamp[i]);
                EXPECT_UINT(out.index, ==, i);
                md.present[i] = false;
                md.count--;
                outcomes[2]++;
            }
        } else if (dice < 70) {
            struct model_value *v = hb_idmap_find(&m, key);
            EXPECT_INT(v != NULL, ==, md.present[i]);
            if (v != NULL && v->stamp % 2 == 0) {
                hb_idmap_remove_found(&m, v);
                md.present[i] = false;
                md.count--;
                outcomes[3]++;
            }
        } else if (dice < 99) {
            const struct model_value *v = hb_idmap_find(&m, key);
            EXPECT_INT(v != NULL, ==, md.present[i]);
            if (v != NULL)
                EXPECT_UINT(v->stamp, ==, md.stamp[i]);
            outcomes[4]++;
        } else {
            /* Expire what is older than a random age. */
            struct model_expire x = {stamp - rng_below(&rng, 3000), 0};
            size_t calls = md.count, want = 0;
            for (uint32_t j = 0; j < MODEL_KEYS; j++) {
                if (md.present[j] && md.stamp[j] < x.before) {
                    md.present[j] = false;
                    md.count--;
                    want++;
                }
            }
            EXPECT_UINT(hb_idmap_remove_if(&m, model_expire_pred, &x), ==, want);
            EXPECT_UINT(x.calls, ==, calls);
            outcomes[5] += (unsigned)want;
        }
        if (md.count > peak)
            peak = md.count;
        if (op % 2000 == 1999)
            model_check_all(&md, &m);
    }
    model_check_all(&md, &m);
    for (unsigned k = 0; k < 6; k++)
        ck_assert_uint_gt(outcomes[k], 100);
    ck_assert_uint_gt(peak, 358); /* past what 512 slots hold: the table grew to 1024 */
    hb_idmap_close(&m);
}

START_TEST(test_random_operations_match_model)
{
    static const uint32_t bases[] = {0, 0x200000, UINT32_MAX - 100};
    static const uint32_t steps[] = {1, 64, 0x9E3779B9u};
    model_run(bases[_i], steps[_i], 100 + (uint64_t)_i);
}
END_TEST

/* ---- size ---- */

#define MILLION 1000000u

/* A million keys into a map that starts small, sequential or every 7th or 4096th (ids as a SET of
 * a server with that many SETs sees them): all found with their values, none extra, the table at
 * the size the load limit asks, probes short; then all removed in another order. */
START_TEST(test_growth_to_a_million)
{
    static const uint32_t steps[] = {1, 7, 4096};
    uint32_t step = steps[_i];
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint32_t), 0), 0);
    size_t grows = 0, capacity = m.capacity;
    for (uint32_t k = 0; k < MILLION; k++) {
        int rc;
        uint32_t *v = insert(&m, 0x200000u + k * step, &rc);
        EXPECT_INT(rc, ==, 0);
        *v = k;
        if (m.capacity != capacity) {
            EXPECT_UINT(m.capacity, ==, capacity * 2);
            capacity = m.capacity;
            grows++;
        }
    }
    ck_assert_uint_eq(m.count, MILLION);
    ck_assert_uint_eq(m.capacity, 1u << 21); /* 2^20 slots hold 734003 */
    ck_assert_uint_eq(grows, 18);            /* 8 -> 2^21 */
    struct probe_stats st = check_invariants(&m);
    ck_assert_double_le(st.mean_hit, 2.5); /* linear probing at 0.48 load: 1.46 expected */
    for (uint32_t k = 0; k < MILLION; k++) {
        const uint32_t *v = hb_idmap_find(&m, 0x200000u + k * step);
        EXPECT_PTR(v, !=, NULL);
        EXPECT_UINT(*v, ==, k);
        /* Beyond the last key, or between two. */
        EXPECT_PTR(hb_idmap_find(&m, 0x200000u + k * step + (step > 1 ? 1 : MILLION)), ==, NULL);
    }
    ck_assert_ptr_null(hb_idmap_find(&m, 0x200000u - step));
    /* Removed from the middle out, alternately; the rest stays findable. */
    for (uint32_t d = 0; d < MILLION / 2; d++) {
        uint32_t a = MILLION / 2 + d, b = MILLION / 2 - 1 - d;
        uint32_t out = 0;
        EXPECT_INT(hb_idmap_remove(&m, 0x200000u + a * step, &out), ==, 0);
        EXPECT_UINT(out, ==, a);
        EXPECT_INT(hb_idmap_remove(&m, 0x200000u + b * step, NULL), ==, 0);
        if (d % 100000 == 0) {
            const uint32_t *v = hb_idmap_find(&m, 0x200000u);
            EXPECT_PTR(v, !=, NULL);
            check_invariants(&m);
        }
    }
    ck_assert_uint_eq(m.count, 0);
    ck_assert_uint_eq(m.capacity, 1u << 21); /* never shrinks */
    ck_assert_ptr_null(hb_idmap_find(&m, 0x200000u));
    hb_idmap_close(&m);
}
END_TEST

/* A few keys live while hundreds of thousands pass through a small map, ids rising by a stride:
 * the table never grows (no tombstones pile up) and probes stay short. */
START_TEST(test_churn_never_grows)
{
    static const uint32_t strides[] = {1, 2, 7, 64, 1000, 65536};
    uint32_t stride = strides[_i];
    enum { WINDOW = 11, ROUNDS = 400000 };
    test_rng_t rng = {77 + (uint64_t)_i};
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, sizeof(uint32_t), WINDOW), 0);
    const size_t capacity = m.capacity;
    ck_assert_uint_eq(capacity, 16);
    uint32_t live[WINDOW];
    unsigned nlive = 0;
    double worst_mean = 0;
    for (uint32_t round = 0; round < ROUNDS; round++) {
        uint32_t key = round * stride;
        int rc;
        uint32_t *v = insert(&m, key, &rc);
        EXPECT_INT(rc, ==, 0);
        *v = round;
        live[nlive++] = key;
        EXPECT_UINT(m.capacity, ==, capacity);
        if (nlive == WINDOW) {
            unsigned victim = rng_below(&rng, WINDOW);
            EXPECT_INT(hb_idmap_remove(&m, live[victim], NULL), ==, 0);
            EXPECT_PTR(hb_idmap_find(&m, live[victim]), ==, NULL);
            live[victim] = live[--nlive];
        }
        EXPECT_PTR(hb_idmap_find(&m, key + stride), ==, NULL);
        if (round % 1000 == 0) {
            struct probe_stats st = check_invariants(&m);
            if (st.mean_hit > worst_mean)
                worst_mean = st.mean_hit;
            for (unsigned k = 0; k < nlive; k++)
                EXPECT_PTR(hb_idmap_find(&m, live[k]), !=, NULL);
        }
    }
    ck_assert_uint_eq(m.count, nlive);
    ck_assert_uint_eq(m.capacity, capacity);
    /* 10 or 11 keys in 16 slots: the mean probe of a full table is 2.2 (random hashing). */
    ck_assert_double_le(worst_mean, 6.0);
    hb_idmap_close(&m);
}
END_TEST

/* Fill a map of 2^log2_capacity slots to its load limit with keys in arithmetic progression
 * (presized or grown from the smallest table); its probe statistics. */
static struct probe_stats fill_progression(unsigned log2_capacity, uint32_t stride, int grow,
                                           unsigned *mixed)
{
    size_t capacity = (size_t)1 << log2_capacity;
    size_t n = capacity / 10 * 7 + capacity % 10 * 7 / 10;
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, 0, grow ? 0 : n), 0);
    for (uint32_t k = 0; k < n; k++)
        EXPECT_INT(hb_idmap_insert(&m, 0x200000u + k * stride, NULL), ==, 0);
    EXPECT_UINT(m.capacity, ==, capacity);
    struct probe_stats st = check_invariants(&m);
    *mixed = m.mixed;
    hb_idmap_close(&m);
    return st;
}

/* Keys in arithmetic progression, as full as the load limit lets them: for every stride up to 256
 * and some far larger, the mean successful find looks at no more slots than random keys would
 * need (2.17 at 7/10 full, by linear probing's formula; a few tenths more in small tables).
 * Fibonacci hashing alone would give 13 for stride 62 in a million-slot table, and over 1000 for
 * stride 6765 in 8192 slots: such strides make the map switch to the mixing hash. Strides it
 * spreads well keep it, and a find looks at close to one slot. */
START_TEST(test_hash_spreads_progressions)
{
    static const unsigned log2_capacity[] = {4, 7, 10, 14};
    static const uint32_t large[] = {987, 4096, 6765, 65536, 1u << 20, 0x9E3779B9u, 4181};
    for (size_t c = 0; c < sizeof log2_capacity / sizeof log2_capacity[0]; c++) {
        size_t capacity = (size_t)1 << log2_capacity[c];
        size_t n = capacity / 10 * 7 + capacity % 10 * 7 / 10;
        unsigned kept = 0, tried = 0;
        double worst = 0;
        for (uint32_t s = 1; s <= 256 + sizeof large / sizeof large[0]; s++) {
            uint32_t stride = s <= 256 ? s : large[s - 257];
            if (stride % 2 == 0 && (uint64_t)n * stride > UINT32_MAX - 0x200000u)
                continue; /* the keys would wrap round and repeat */
            for (int grow = 0; grow < 2; grow++) {
                unsigned mixed;
                struct probe_stats st = fill_progression(log2_capacity[c], stride, grow, &mixed);
                if (st.mean_hit > worst)
                    worst = st.mean_hit;
                if (capacity >= 1024)
                    EXPECT_UINT(st.mean_hit * 100, <=, 300);
                if (!mixed && capacity >= 1024)
                    EXPECT_UINT(st.mean_hit * 100, <=, 160);
                kept += !mixed;
                tried++;
            }
        }
        ck_assert_double_le(worst, capacity >= 1024 ? 3.0 : 3.5);
        /* A good share of strides keep Fibonacci hashing. */
        ck_assert_uint_ge(kept * 4, tried);
    }
    /* Sequential ids keep it at every size, one slot a find; 6765 and 987 lose it. */
    for (unsigned c = 4; c <= 16; c++) {
        unsigned mixed;
        struct probe_stats st = fill_progression(c, 1, 1, &mixed);
        ck_assert_uint_eq(mixed, 0);
        ck_assert_double_le(st.mean_hit, 1.05);
        ck_assert_uint_le(st.max_displacement, 2);
    }
    unsigned mixed;
    fill_progression(13, 6765, 0, &mixed);
    ck_assert_uint_eq(mixed, 1);
    fill_progression(12, 987, 1, &mixed);
    ck_assert_uint_eq(mixed, 1);
}
END_TEST

/* The switch also comes under churn, without growth: a window of keys stepping by a stride
 * Fibonacci hashing clusters, moving through a presized map. */
START_TEST(test_hash_switch_under_churn)
{
    enum { WINDOW = 5000 };
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, 0, WINDOW), 0);
    size_t capacity = m.capacity;
    ck_assert_uint_eq(capacity, 8192);
    for (uint32_t k = 0; k < 20 * WINDOW; k++) {
        EXPECT_INT(hb_idmap_insert(&m, k * 6765u, NULL), ==, 0);
        if (k >= WINDOW)
            EXPECT_INT(hb_idmap_remove(&m, (k - WINDOW) * 6765u, NULL), ==, 0);
    }
    ck_assert_uint_eq(m.mixed, 1);
    ck_assert_uint_eq(m.capacity, capacity);
    struct probe_stats st = check_invariants(&m);
    ck_assert_double_le(st.mean_hit, 2.0); /* 0.61 full: 1.78 expected */
    hb_idmap_close(&m);

    /* Sequential ids through the same map keep Fibonacci hashing. */
    ck_assert_int_eq(hb_idmap_init(&m, 0, WINDOW), 0);
    for (uint32_t k = 0; k < 20 * WINDOW; k++) {
        EXPECT_INT(hb_idmap_insert(&m, k, NULL), ==, 0);
        if (k >= WINDOW)
            EXPECT_INT(hb_idmap_remove(&m, k - WINDOW, NULL), ==, 0);
    }
    ck_assert_uint_eq(m.mixed, 0);
    st = check_invariants(&m);
    ck_assert_double_le(st.mean_hit, 1.05);
    hb_idmap_close(&m);
}
END_TEST

/* Keys split over several maps by the hash's low bits (as the registry's shards do) still spread
 * over each map's slots, which take the top bits. */
START_TEST(test_sharded_maps_spread)
{
    enum { SHARDS = 64, KEYS = 200000 };
    hb_idmap_t *maps = calloc(SHARDS, sizeof *maps);
    ck_assert_ptr_nonnull(maps);
    for (unsigned i = 0; i < SHARDS; i++)
        ck_assert_int_eq(hb_idmap_init(&maps[i], sizeof(uint64_t), 0), 0);
    for (uint32_t k = 0; k < KEYS; k++)
        EXPECT_INT(hb_idmap_insert(&maps[hb_idmap_hash(k) & (SHARDS - 1)], k, NULL), ==, 0);
    size_t lo = SIZE_MAX, hi = 0;
    for (unsigned i = 0; i < SHARDS; i++) {
        struct probe_stats st = check_invariants(&maps[i]);
        EXPECT_UINT(st.mean_hit * 100, <=, 300);
        if (maps[i].count < lo)
            lo = maps[i].count;
        if (maps[i].count > hi)
            hi = maps[i].count;
        hb_idmap_close(&maps[i]);
    }
    /* 3125 a shard on average. */
    ck_assert_uint_ge(lo, 2900);
    ck_assert_uint_le(hi, 3350);
    free(maps);
}
END_TEST

/* ---- a growth that fails ---- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HB_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define HB_TEST_SANITIZED 1
#endif
#endif

#ifndef HB_TEST_SANITIZED
/* The process's address space in bytes, from /proc/self/statm; 0 when unknown. */
static size_t address_space_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    unsigned long pages = 0;
    int n = fscanf(f, "%lu", &pages);
    fclose(f);
    return n == 1 ? (size_t)pages * 4096 : 0;
}
#endif

/* Under an address-space limit, inserts go on until a growth cannot be allocated: that insert
 * fails with HB_ENOMEM and changes nothing, and every key already held is still there. (Not under
 * the sanitizers, whose allocators stop the process instead of failing.) */
START_TEST(test_failed_growth_changes_nothing)
{
#ifdef HB_TEST_SANITIZED
    return;
#else
    size_t now = address_space_now();
    struct rlimit saved;
    if (now == 0 || getrlimit(RLIMIT_AS, &saved) != 0)
        return;
    hb_idmap_t m;
    ck_assert_int_eq(hb_idmap_init(&m, 48, 0), 0);
    struct rlimit tight = saved;
    tight.rlim_cur = now + ((rlim_t)64 << 20);
    if (saved.rlim_cur != RLIM_INFINITY && saved.rlim_cur < tight.rlim_cur)
        tight.rlim_cur = saved.rlim_cur;
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &tight), 0);
    int rc = 0;
    uint32_t k = 0;
    size_t count = 0, capacity = 0;
    const unsigned char *slots = NULL;
    for (; k < 4 * MILLION; k++) {
        count = m.count;
        capacity = m.capacity;
        slots = m.slots;
        void *v = NULL;
        rc = hb_idmap_insert(&m, k, &v);
        if (rc != 0) {
            EXPECT_PTR(v, ==, NULL);
            break;
        }
        memcpy(v, &k, sizeof k);
    }
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &saved), 0);
    ck_assert_int_eq(rc, HB_ENOMEM);
    ck_assert_uint_eq(m.count, count);
    ck_assert_uint_eq(m.capacity, capacity);
    ck_assert_ptr_eq(m.slots, slots);
    ck_assert_ptr_null(hb_idmap_find(&m, k));
    for (uint32_t j = 0; j < k; j++) {
        const uint32_t *v = hb_idmap_find(&m, j);
        EXPECT_PTR(v, !=, NULL);
        EXPECT_UINT(*v, ==, j);
    }
    /* With room again, the same insert succeeds. */
    ck_assert_int_eq(hb_idmap_insert(&m, k, NULL), 0);
    ck_assert_uint_eq(m.capacity, capacity * 2);
    hb_idmap_close(&m);
#endif
}
END_TEST

static Suite *idmap_suite(void)
{
    Suite *s = suite_create("idmap");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_sizes_and_close);
    tcase_add_test(tc, test_closed_map_is_empty_and_reusable);
    tcase_add_test(tc, test_insert_find_remove);
    tcase_add_test(tc, test_value_sizes);
    tcase_add_test(tc, test_remove_found);
    tcase_add_test(tc, test_next_visits_each_once);
    tcase_add_test(tc, test_remove_if_sees_each_once);
    tcase_add_test(tc, test_remove_if_wrapping_cluster);
    tcase_add_test(tc, test_remove_if_may_change_kept_values);
    suite_add_tcase(s, tc);

    TCase *big = tcase_create("large");
    tcase_set_timeout(big, 120);
    tcase_add_loop_test(big, test_random_operations_match_model, 0, 3);
    tcase_add_loop_test(big, test_growth_to_a_million, 0, 3);
    tcase_add_loop_test(big, test_churn_never_grows, 0, 6);
    tcase_add_test(big, test_hash_spreads_progressions);
    tcase_add_test(big, test_hash_switch_under_churn);
    tcase_add_test(big, test_sharded_maps_spread);
    tcase_add_test(big, test_failed_growth_changes_nothing);
    suite_add_tcase(s, big);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(idmap_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
