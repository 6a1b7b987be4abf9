/* Unit tests for the book module: validation, exactly-once claims, repeated claims answered with
 * the share already granted, fully claimed envelopes kept until expiry or removal, unclaim, remove,
 * foreach, growth to a million envelopes, churn, expiry, and a randomised model check. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expect.h"
#include "hongbao/book.h"

#define ID0 HB_SEND_ENVELOPE_ID_BASE

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

/* Uniform in [0, n), n >= 1 (the modulo bias is irrelevant here). */
static uint32_t rng_below(test_rng_t *r, uint32_t n)
{
    return (uint32_t)(rng_next(r) % n);
}

static hb_sendenv_t make_env(uint32_t id, const uint32_t users[3], const uint32_t shares[3],
                             uint64_t created_s)
{
    hb_sendenv_t e;
    memset(&e, 0, sizeof e);
    e.id = id;
    e.count = 3;
    e.total = shares[0] + shares[1] + shares[2];
    for (unsigned i = 0; i < 3; i++) {
        e.recipients[i] = users[i];
        e.shares[i] = shares[i];
    }
    e.created_s = created_s;
    return e;
}

/* Split total (>= 3) into three random shares, each >= 1. */
static void random_shares(test_rng_t *r, uint32_t total, uint32_t shares[3])
{
    shares[0] = 1 + rng_below(r, total - 2);
    shares[1] = 1 + rng_below(r, total - shares[0] - 1);
    shares[2] = total - shares[0] - shares[1];
}

static void assert_env_eq(const hb_sendenv_t *got, const hb_sendenv_t *want)
{
    EXPECT_PTR(got, !=, NULL);
    EXPECT_UINT(got->id, ==, want->id);
    EXPECT_UINT(got->total, ==, want->total);
    for (unsigned i = 0; i < 3; i++) {
        EXPECT_UINT(got->recipients[i], ==, want->recipients[i]);
        EXPECT_UINT(got->shares[i], ==, want->shares[i]);
    }
    EXPECT_UINT(got->claimed_sum, ==, want->claimed_sum);
    EXPECT_UINT(got->claimed, ==, want->claimed);
    EXPECT_UINT(got->created_s, ==, want->created_s);
}

/* The table's invariants (the book's id map): power-of-two capacity, the book's count the map's,
 * envelopes within 70% of the capacity (removal leaves no tombstones: envelopes are all that
 * fills the table). */
static void assert_load_ok(const hb_book_t *b)
{
    size_t capacity = b->envelopes.capacity;
    EXPECT_PTR(b->envelopes.slots, !=, NULL);
    EXPECT_UINT(capacity & (capacity - 1), ==, 0);
    EXPECT_UINT(b->envelopes.count, ==, b->count);
    EXPECT_UINT(b->count * 10, <=, capacity * 7);
}

static const uint32_t users_abc[3] = {1001, 1002, 1003};
static const uint32_t shares_abc[3] = {5, 17, 78};

START_TEST(test_init_sizes_and_close)
{
    hb_book_t b;
    b.data = &b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    ck_assert_ptr_eq(b.data, &b);
    ck_assert_uint_eq(b.count, 0);
    ck_assert_uint_eq(b.granted, 0);
    ck_assert_uint_eq(b.granted_sum, 0);
    ck_assert_ptr_null(hb_book_find(&b, ID0));
    hb_book_close(&b);
    hb_book_close(&b);
    ck_assert_ptr_null(b.envelopes.slots);

    /* Sized for expected: that many adds never rebuild the table. */
    ck_assert_int_eq(hb_book_init(&b, 1000), 0);
    const unsigned char *slots = b.envelopes.slots;
    for (uint32_t k = 0; k < 1000; k++) {
        hb_sendenv_t e = make_env(ID0 + k, users_abc, shares_abc, 0);
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
    }
    ck_assert_ptr_eq(b.envelopes.slots, slots);
    ck_assert_uint_eq(b.count, 1000);
    assert_load_ok(&b);
    hb_book_close(&b);

    /* An expected count no table can hold fails cleanly. */
    ck_assert_int_eq(hb_book_init(&b, SIZE_MAX), HB_ENOMEM);
    ck_assert_ptr_null(b.envelopes.slots);
    ck_assert_uint_eq(b.count, 0);
    ck_assert_ptr_null(hb_book_find(&b, ID0));
    hb_book_close(&b);
}
END_TEST

START_TEST(test_add_copies_and_finds)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 4), 0);
    hb_sendenv_t e = make_env(ID0 + 7, users_abc, shares_abc, 1700000000);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    ck_assert_uint_eq(b.count, 1);
    hb_sendenv_t want = e;
    e.total = 1; /* the book keeps its own copy */
    assert_env_eq(hb_book_find(&b, ID0 + 7), &want);
    ck_assert_ptr_null(hb_book_find(&b, ID0 + 8));
    ck_assert_ptr_null(hb_book_find(&b, 0));

    /* A partly claimed envelope may be added as given. */
    const uint32_t users[3] = {7, 8, 9};
    hb_sendenv_t p = make_env(ID0 + 8, users, shares_abc, 0);
    p.claimed = 0x5;
    p.claimed_sum = shares_abc[0] + shares_abc[2];
    ck_assert_int_eq(hb_book_add(&b, &p), 0);
    uint32_t amount = 0xdeadbeef;
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 8, 7, &amount), HB_BOOK_REPEAT);
    ck_assert_uint_eq(amount, shares_abc[0]);
    ck_assert_uint_eq(b.granted, 0); /* grants made before the add are not the book's */
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 8, 8, &amount), 0);
    ck_assert_uint_eq(amount, shares_abc[1]);
    ck_assert_uint_eq(b.granted, 1);
    /* Its last share claimed, it stays (fully claimed) until expired or removed. */
    p.claimed = 0x7;
    p.claimed_sum = p.total;
    assert_env_eq(hb_book_find(&b, ID0 + 8), &p);
    ck_assert_int_ne(hb_sendenv_fully_claimed(hb_book_find(&b, ID0 + 8)), 0);
    ck_assert_int_eq(hb_sendenv_fully_claimed(hb_book_find(&b, ID0 + 7)), 0);
    ck_assert_uint_eq(b.count, 2);

    /* A fully claimed envelope may be added as given too (a restart keeps answering repeats). */
    const uint32_t users2[3] = {17, 18, 19};
    hb_sendenv_t full = make_env(ID0 + 9, users2, shares_abc, 5);
    full.claimed = 0x7;
    full.claimed_sum = full.total;
    ck_assert_int_eq(hb_book_add(&b, &full), 0);
    for (unsigned r = 0; r < 3; r++) {
        amount = 0;
        ck_assert_int_eq(hb_book_claim(&b, ID0 + 9, users2[r], &amount), HB_BOOK_REPEAT);
        ck_assert_uint_eq(amount, shares_abc[r]);
    }
    assert_env_eq(hb_book_find(&b, ID0 + 9), &full);
    ck_assert_uint_eq(b.count, 3);
    ck_assert_uint_eq(b.granted, 1);
    ck_assert_uint_eq(b.granted_sum, shares_abc[1]);
    hb_book_close(&b);
}
END_TEST

/* add(e) must fail with err and leave the book as it was (one envelope, ID0). */
static void expect_add_fails(hb_book_t *b, const hb_sendenv_t *e, int err)
{
    const hb_sendenv_t *held = hb_book_find(b, ID0);
    ck_assert_ptr_nonnull(held);
    hb_sendenv_t before = *held;
    ck_assert_int_eq(hb_book_add(b, e), err);
    ck_assert_uint_eq(b->count, 1);
    assert_env_eq(hb_book_find(b, ID0), &before);
    if (e != NULL && e->id != ID0)
        ck_assert_ptr_null(hb_book_find(b, e->id));
}

START_TEST(test_add_validates)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    hb_sendenv_t good = make_env(ID0, users_abc, shares_abc, 0);
    ck_assert_int_eq(hb_book_add(&b, &good), 0);

    /* Duplicate id, even with other contents. */
    hb_sendenv_t dup = make_env(ID0, users_abc, (const uint32_t[3]){1, 1, 1}, 9);
    expect_add_fails(&b, &dup, HB_EEXIST);
    expect_add_fails(&b, NULL, HB_EINVAL);

    /* Recipients not distinct: every pair. */
    static const uint32_t same[3][3] = {{4, 4, 5}, {4, 5, 4}, {5, 4, 4}};
    for (unsigned i = 0; i < 3; i++) {
        hb_sendenv_t e = make_env(ID0 + 1, same[i], shares_abc, 0);
        expect_add_fails(&b, &e, HB_EINVAL);
    }
    hb_sendenv_t zeros = make_env(ID0 + 1, (const uint32_t[3]){0, 0, 0}, shares_abc, 0);
    expect_add_fails(&b, &zeros, HB_EINVAL);

    /* A zero share, wherever it is, even when the sum is right. */
    for (unsigned i = 0; i < 3; i++) {
        uint32_t shares[3] = {10, 20, 30};
        shares[i] = 0;
        hb_sendenv_t e = make_env(ID0 + 1, users_abc, shares, 0);
        ck_assert_uint_eq(e.total, 60 - (i + 1) * 10);
        expect_add_fails(&b, &e, HB_EINVAL);
    }

    /* Shares not adding up to the total: below, above, and above by a 32-bit wrap. */
    hb_sendenv_t e = make_env(ID0 + 1, users_abc, shares_abc, 0);
    e.total = 99;
    expect_add_fails(&b, &e, HB_EINVAL);
    e.total = 101;
    expect_add_fails(&b, &e, HB_EINVAL);
    e = make_env(ID0 + 1, users_abc, (const uint32_t[3]){UINT32_MAX, 1, 1}, 0);
    ck_assert_uint_eq(e.total, 1); /* the wrapped sum */
    expect_add_fails(&b, &e, HB_EINVAL);

    /* Inconsistent claimed state. */
    e = make_env(ID0 + 1, users_abc, shares_abc, 0);
    e.claimed = 0x8;
    expect_add_fails(&b, &e, HB_EINVAL);
    e.claimed = 0x7;
    e.claimed_sum = 99; /* fully claimed is fine, with the whole total */
    expect_add_fails(&b, &e, HB_EINVAL);
    e.claimed = 0x2;
    e.claimed_sum = 5;
    expect_add_fails(&b, &e, HB_EINVAL);
    e.claimed = 0;
    e.claimed_sum = 1;
    expect_add_fails(&b, &e, HB_EINVAL);

    /* The same envelope made valid goes in; the largest shares that fit a u32 total too. */
    e.claimed_sum = 0;
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    e = make_env(ID0 + 2, users_abc, (const uint32_t[3]){UINT32_MAX - 2, 1, 1}, 0);
    ck_assert_uint_eq(e.total, UINT32_MAX);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    ck_assert_uint_eq(b.count, 3);
    ck_assert_uint_eq(b.granted, 0);
    hb_book_close(&b);
}
END_TEST

/* The one validation rule, with its reasons. */
START_TEST(test_sendenv_check_reasons)
{
    hb_sendenv_t e = make_env(ID0, users_abc, shares_abc, 0);
    ck_assert_ptr_null(hb_sendenv_check(&e));
    e.claimed = 0x5;
    e.claimed_sum = shares_abc[0] + shares_abc[2];
    ck_assert_ptr_null(hb_sendenv_check(&e));
    e.claimed = 0x7;
    e.claimed_sum = e.total;
    ck_assert_ptr_null(hb_sendenv_check(&e));
    ck_assert_str_eq(hb_sendenv_check(NULL), "no envelope");
    e.claimed_sum--;
    ck_assert_str_eq(hb_sendenv_check(&e), "claimed_sum is not the sum of the claimed shares");
    e.claimed = 0xF;
    ck_assert_str_eq(hb_sendenv_check(&e), "claimed bits beyond the recipients");
    e = make_env(ID0, users_abc, shares_abc, 0);
    e.total++;
    ck_assert_str_eq(hb_sendenv_check(&e), "shares do not add up to the total");
    e = make_env(ID0, (const uint32_t[3]){1, 2, 1}, shares_abc, 0);
    ck_assert_str_eq(hb_sendenv_check(&e), "recipients are not distinct");
    e = make_env(ID0, users_abc, (const uint32_t[3]){1, 0, 2}, 0);
    ck_assert_str_eq(hb_sendenv_check(&e), "a share is 0");
}
END_TEST

/* Any count from 1 to HB_SEND_MAX_RECIPIENTS: each recipient claims its own share once, and only
 * the first count recipients are recipients. */
START_TEST(test_any_recipient_count)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    for (unsigned n = 1; n <= HB_SEND_MAX_RECIPIENTS; n++) {
        hb_sendenv_t e;
        memset(&e, 0, sizeof e);
        e.id = ID0 + n;
        e.count = (uint8_t)n;
        for (unsigned i = 0; i < n; i++) {
            e.recipients[i] = 500 + i;
            e.shares[i] = 10 + i;
            e.total += e.shares[i];
        }
        ck_assert_ptr_null(hb_sendenv_check(&e));
        /* A recipient past the count is none. */
        e.recipients[n % HB_SEND_MAX_RECIPIENTS] = n < HB_SEND_MAX_RECIPIENTS ? 999 : 500;
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
        if (n < HB_SEND_MAX_RECIPIENTS)
            ck_assert_int_eq(hb_book_claim(&b, e.id, 999, NULL), HB_ENOTRECIPIENT);
        uint64_t sum = 0;
        for (unsigned i = n; i-- > 0;) {
            const hb_sendenv_t *held = hb_book_find(&b, e.id);
            uint32_t share = 0;
            ck_assert_int_eq(hb_sendenv_share_of(held, 500 + i, &share), 0);
            ck_assert_uint_eq(share, 10 + i);
            ck_assert_int_eq(hb_sendenv_fully_claimed(held), 0);
            uint32_t amount = 0;
            ck_assert_int_eq(hb_book_claim(&b, e.id, 500 + i, &amount), 0);
            ck_assert_uint_eq(amount, 10 + i);
            ck_assert_int_eq(hb_book_claim(&b, e.id, 500 + i, &amount), HB_BOOK_REPEAT);
            ck_assert_int_eq(hb_sendenv_share_of(held, 500 + i, NULL), 1);
            sum += amount;
        }
        ck_assert_uint_eq(sum, e.total);
        ck_assert_int_eq(hb_sendenv_fully_claimed(hb_book_find(&b, e.id)), 1);
        ck_assert_int_eq(hb_sendenv_share_of(hb_book_find(&b, e.id), 4242, NULL), HB_ENOTRECIPIENT);
    }
    /* No recipients, or more than the maximum: refused. */
    hb_sendenv_t e = make_env(ID0 + 100, users_abc, shares_abc, 0);
    e.count = 0;
    ck_assert_str_eq(hb_sendenv_check(&e), "recipient count outside 1..HB_SEND_MAX_RECIPIENTS");
    ck_assert_int_eq(hb_book_add(&b, &e), HB_EINVAL);
    e.count = HB_SEND_MAX_RECIPIENTS + 1;
    ck_assert_int_eq(hb_book_add(&b, &e), HB_EINVAL);
    hb_book_close(&b);
}
END_TEST

START_TEST(test_each_recipient_claims_its_share_once)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    hb_sendenv_t e = make_env(ID0 + 1, users_abc, shares_abc, 0);
    hb_sendenv_t other = make_env(ID0 + 2, users_abc, (const uint32_t[3]){1, 2, 3}, 0);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    ck_assert_int_eq(hb_book_add(&b, &other), 0);
    ck_assert_uint_eq(b.count, 2);

    /* In the order 2, 0, 1: each gets exactly its share, and the state follows. */
    static const unsigned order[3] = {2, 0, 1};
    uint64_t sum = 0;
    for (unsigned k = 0; k < 3; k++) {
        unsigned r = order[k];
        uint32_t amount = 0xdeadbeef;
        ck_assert_int_eq(hb_book_claim(&b, e.id, users_abc[r], &amount), 0);
        ck_assert_uint_eq(amount, shares_abc[r]);
        sum += amount;
        e.claimed |= (uint8_t)(1u << r);
        e.claimed_sum += amount;
        ck_assert_uint_eq(b.granted, k + 1);
        ck_assert_uint_eq(b.granted_sum, sum);
        ck_assert_int_eq(hb_sendenv_fully_claimed(hb_book_find(&b, e.id)), k == 2);
        assert_env_eq(hb_book_find(&b, e.id), &e);
        ck_assert_uint_eq(b.count, 2);
    }
    ck_assert_uint_eq(sum, e.total);

    /* Fully claimed: still held, every recipient's repeat answered with its own share and nothing
     * changed; the other envelope is untouched. */
    ck_assert_uint_eq(b.count, 2);
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned r = 0; r < 3; r++) {
            uint32_t amount = 0xdeadbeef;
            ck_assert_int_eq(hb_book_claim(&b, e.id, users_abc[r], &amount), HB_BOOK_REPEAT);
            ck_assert_uint_eq(amount, shares_abc[r]);
        }
    }
    ck_assert_int_eq(hb_book_claim(&b, e.id, 4242, NULL), HB_ENOTRECIPIENT);
    assert_env_eq(hb_book_find(&b, e.id), &e);
    assert_env_eq(hb_book_find(&b, other.id), &other);
    ck_assert_uint_eq(b.granted, 3);
    ck_assert_uint_eq(b.granted_sum, 100);

    /* Removed, it is gone for everyone; the id may then be used again. */
    hb_sendenv_t out;
    ck_assert_int_eq(hb_book_remove(&b, e.id, &out), 0);
    assert_env_eq(&out, &e);
    ck_assert_uint_eq(b.count, 1);
    ck_assert_ptr_null(hb_book_find(&b, e.id));
    for (unsigned r = 0; r < 3; r++) {
        uint32_t amount = 0xdeadbeef;
        ck_assert_int_eq(hb_book_claim(&b, e.id, users_abc[r], &amount), HB_ENOENVELOPE);
        ck_assert_uint_eq(amount, 0);
    }
    ck_assert_int_eq(hb_book_add(&b, &other), HB_EEXIST);
    hb_sendenv_t again = make_env(e.id, users_abc, shares_abc, 0);
    ck_assert_int_eq(hb_book_add(&b, &again), 0);
    ck_assert_uint_eq(b.count, 2);
    hb_book_close(&b);
}
END_TEST

START_TEST(test_removal_leaves_nothing_behind)
{
    /* A removed envelope's slot becomes empty again (no tombstone): add and remove as often as
     * you like, the table stays at its smallest. */
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    for (uint32_t k = 0; k < 100; k++) {
        hb_sendenv_t e = make_env(ID0 + k, users_abc, shares_abc, 0);
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
        for (unsigned r = 0; r < 3; r++)
            ck_assert_int_eq(hb_book_claim(&b, ID0 + k, users_abc[r], NULL), 0);
        ck_assert_uint_eq(b.count, 1);
        ck_assert_int_eq(hb_book_remove(&b, ID0 + k, NULL), 0);
        ck_assert_uint_eq(b.count, 0);
        ck_assert_uint_eq(b.envelopes.count, 0);
        ck_assert_uint_eq(b.envelopes.capacity, 8);
    }
    ck_assert_uint_eq(b.envelopes.capacity, 8);
    ck_assert_uint_eq(b.granted_sum, 100 * 100);
    hb_book_close(&b);
}
END_TEST

START_TEST(test_refused_and_repeated_claims_change_nothing)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    hb_sendenv_t e = make_env(ID0, users_abc, shares_abc, 0);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    uint32_t amount = 0;
    ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[1], &amount), 0);
    ck_assert_uint_eq(amount, shares_abc[1]);
    hb_sendenv_t snapshot = *hb_book_find(&b, ID0);

    /* The same user again: the share it was granted, nothing granted anew. */
    for (int i = 0; i < 3; i++) {
        amount = 0xdeadbeef;
        ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[1], &amount), HB_BOOK_REPEAT);
        ck_assert_uint_eq(amount, shares_abc[1]);
    }
    /* Not a recipient (0 and users next to the recipients included). */
    static const uint32_t strangers[] = {0, 1000, 1004, UINT32_MAX};
    for (size_t i = 0; i < sizeof strangers / sizeof strangers[0]; i++) {
        amount = 0xdeadbeef;
        ck_assert_int_eq(hb_book_claim(&b, ID0, strangers[i], &amount), HB_ENOTRECIPIENT);
        ck_assert_uint_eq(amount, 0);
    }
    /* Unknown ids. */
    static const uint32_t unknown[] = {ID0 + 1, ID0 - 1, 0, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        amount = 0xdeadbeef;
        ck_assert_int_eq(hb_book_claim(&b, unknown[i], users_abc[0], &amount), HB_ENOENVELOPE);
        ck_assert_uint_eq(amount, 0);
    }
    /* A NULL amount is allowed, and the result is the same. */
    ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[1], NULL), HB_BOOK_REPEAT);
    ck_assert_int_eq(hb_book_claim(&b, ID0, strangers[1], NULL), HB_ENOTRECIPIENT);
    ck_assert_int_eq(hb_book_claim(&b, unknown[0], users_abc[1], NULL), HB_ENOENVELOPE);

    assert_env_eq(hb_book_find(&b, ID0), &snapshot);
    ck_assert_uint_eq(b.count, 1);
    ck_assert_uint_eq(b.granted, 1);
    ck_assert_uint_eq(b.granted_sum, shares_abc[1]);

    ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[0], NULL), 0);
    ck_assert_uint_eq(b.granted_sum, shares_abc[0] + shares_abc[1]);
    hb_book_close(&b);
}
END_TEST

START_TEST(test_user_zero_is_an_ordinary_user)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    hb_sendenv_t with0 = make_env(ID0, (const uint32_t[3]){9, 0, 4}, shares_abc, 0);
    hb_sendenv_t without0 = make_env(ID0 + 1, (const uint32_t[3]){1, 2, 3}, shares_abc, 0);
    ck_assert_int_eq(hb_book_add(&b, &with0), 0);
    ck_assert_int_eq(hb_book_add(&b, &without0), 0);

    uint32_t amount = 0;
    ck_assert_int_eq(hb_book_claim(&b, ID0, 0, &amount), 0);
    ck_assert_uint_eq(amount, shares_abc[1]);
    amount = 0;
    ck_assert_int_eq(hb_book_claim(&b, ID0, 0, &amount), HB_BOOK_REPEAT);
    ck_assert_uint_eq(amount, shares_abc[1]);
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 1, 0, &amount), HB_ENOTRECIPIENT);
    ck_assert_uint_eq(amount, 0);
    ck_assert_uint_eq(hb_book_find(&b, ID0)->claimed, 0x2);
    ck_assert_uint_eq(hb_book_find(&b, ID0 + 1)->claimed, 0);
    ck_assert_int_eq(hb_book_unclaim(&b, ID0 + 1, 0), HB_ENOTRECIPIENT);
    ck_assert_int_eq(hb_book_unclaim(&b, ID0, 0), 0);
    ck_assert_uint_eq(hb_book_find(&b, ID0)->claimed, 0);
    hb_book_close(&b);
}
END_TEST

/* Accumulates what hb_book_expire reports. */
struct expire_tally {
    unsigned calls;
    unsigned full;
    uint64_t totals;
    uint64_t claimed;
    uint64_t unclaimed;
    uint64_t max_created;
};

static void tally_expired(void *arg, const hb_sendenv_t *e)
{
    struct expire_tally *t = arg;
    t->calls++;
    t->full += hb_sendenv_fully_claimed(e) != 0;
    t->totals += e->total;
    t->claimed += e->claimed_sum;
    t->unclaimed += e->total - e->claimed_sum;
    if (e->created_s > t->max_created)
        t->max_created = e->created_s;
}

/* Accumulates what hb_book_foreach visits. */
struct foreach_tally {
    size_t calls;
    size_t full;
    uint64_t claimed;
    uint64_t id_sum;
};

static void tally_foreach(void *arg, const hb_sendenv_t *e)
{
    struct foreach_tally *t = arg;
    t->calls++;
    t->full += hb_sendenv_fully_claimed(e) != 0;
    t->claimed += e->claimed_sum;
    t->id_sum += e->id;
}

#define MILLION 1000000u

/* A million envelopes added to a book that starts small, then every share claimed in random
 * order: every claim gets its share, the grants add up to the totals exactly, every envelope stays
 * (fully claimed) answering repeats, and expiry empties the book. */
START_TEST(test_growth_to_a_million_then_claim_all)
{
    test_rng_t rng = {42};
    uint32_t *shares = malloc((size_t)MILLION * 3 * sizeof *shares);
    uint32_t *order = malloc((size_t)MILLION * 3 * sizeof *order);
    ck_assert_ptr_nonnull(shares);
    ck_assert_ptr_nonnull(order);

    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    size_t initial_capacity = b.envelopes.capacity;
    uint64_t total_sum = 0;
    for (uint32_t k = 0; k < MILLION; k++) {
        uint32_t total = 3 + rng_below(&rng, 100000);
        random_shares(&rng, total, &shares[3 * k]);
        /* Users k, k + 1M, k + 2M: distinct, and each user is in exactly one envelope. */
        const uint32_t users[3] = {k, k + MILLION, k + 2 * MILLION};
        hb_sendenv_t e = make_env(ID0 + k, users, &shares[3 * k], k / 1000);
        EXPECT_UINT(e.total, ==, total);
        EXPECT_INT(hb_book_add(&b, &e), ==, 0);
        total_sum += total;
    }
    EXPECT_UINT(b.count, ==, MILLION);
    ck_assert_uint_gt(b.envelopes.capacity, initial_capacity);
    assert_load_ok(&b);
    for (uint32_t k = 0; k < MILLION; k += 9973) {
        const hb_sendenv_t *e = hb_book_find(&b, ID0 + k);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(e->recipients[2], k + 2 * MILLION);
        ck_assert_uint_eq(e->shares[1], shares[3 * k + 1]);
    }
    ck_assert_ptr_null(hb_book_find(&b, ID0 + MILLION));
    ck_assert_ptr_null(hb_book_find(&b, ID0 - 1));

    /* Fisher-Yates shuffle of all (envelope, recipient) pairs. */
    for (uint32_t i = 0; i < 3 * MILLION; i++)
        order[i] = i;
    for (uint32_t i = 3 * MILLION - 1; i > 0; i--) {
        uint32_t j = rng_below(&rng, i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0; i < 3 * MILLION; i++) {
        uint32_t k = order[i] / 3, r = order[i] % 3;
        uint32_t amount = 0;
        int err = hb_book_claim(&b, ID0 + k, k + r * MILLION, &amount);
        if (err != 0 || amount != shares[order[i]])
            ck_abort_msg("claim %u of envelope %u: err %d, amount %u, want %u", r, k, err, amount,
                         shares[order[i]]);
    }
    ck_assert_uint_eq(b.count, MILLION);
    ck_assert_uint_eq(b.granted, 3 * MILLION);
    ck_assert_uint_eq(b.granted_sum, total_sum);
    struct foreach_tally all = {0};
    hb_book_foreach(&b, tally_foreach, &all);
    ck_assert_uint_eq(all.calls, MILLION);
    ck_assert_uint_eq(all.full, MILLION);
    ck_assert_uint_eq(all.claimed, total_sum);
    for (uint32_t k = 0; k < MILLION; k += 7919) {
        uint32_t amount = 0;
        EXPECT_INT(hb_book_claim(&b, ID0 + k, k + 2 * MILLION, &amount), ==, HB_BOOK_REPEAT);
        EXPECT_UINT(amount, ==, shares[3 * k + 2]);
    }
    ck_assert_uint_eq(b.granted, 3 * MILLION);

    /* Expiry (by creation second) retires them, fully claimed as they are. */
    struct expire_tally t = {0};
    ck_assert_uint_eq(hb_book_expire(&b, MILLION / 1000 / 2, tally_expired, &t), MILLION / 2);
    ck_assert_uint_eq(t.unclaimed, 0);
    ck_assert_uint_eq(b.count, MILLION / 2);
    ck_assert_uint_eq(hb_book_expire(&b, UINT64_MAX, NULL, NULL), MILLION / 2);
    ck_assert_uint_eq(b.count, 0);
    ck_assert_ptr_null(hb_book_find(&b, ID0));
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 1, 1, NULL), HB_ENOENVELOPE);
    hb_book_close(&b);
    free(order);
    free(shares);
}
END_TEST

/* Keep a handful of envelopes live in a small book while a hundred thousand pass through it, ids
 * stepping by stride (a SET sees every nsets-th id). The table must keep its size (not grow, not
 * fill up and probe forever). */
static void churn(uint32_t stride, uint64_t seed)
{
    enum { WINDOW = 4, ROUNDS = 100000 };
    test_rng_t rng = {seed};
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 8), 0);
    const size_t capacity = b.envelopes.capacity;
    ck_assert_uint_eq(capacity, 16);

    uint32_t live[WINDOW];
    unsigned nlive = 0;
    uint32_t next = 0;
    for (unsigned round = 0; round < ROUNDS; round++) {
        uint32_t id = ID0 + next++ * stride;
        const uint32_t users[3] = {id, id + 1, id + 2};
        hb_sendenv_t e = make_env(id, users, (const uint32_t[3]){1, 2, 3}, 0);
        EXPECT_INT(hb_book_add(&b, &e), ==, 0);
        live[nlive++] = id;
        EXPECT_UINT(b.envelopes.capacity, ==, capacity);
        assert_load_ok(&b);

        if (nlive == WINDOW) {
            /* Claim every share of a random live envelope, recipients in random order. */
            unsigned victim = rng_below(&rng, WINDOW);
            uint32_t vid = live[victim];
            unsigned first = rng_below(&rng, 3);
            for (unsigned k = 0; k < 3; k++) {
                uint32_t amount = 0;
                uint32_t r = (first + k) % 3;
                EXPECT_INT(hb_book_claim(&b, vid, vid + r, &amount), ==, 0);
                EXPECT_UINT(amount, ==, r + 1);
            }
            /* Fully claimed, it stays until removed (as the server does at its expiry). */
            EXPECT_INT(hb_sendenv_fully_claimed(hb_book_find(&b, vid)), !=, 0);
            EXPECT_UINT(b.count, ==, nlive);
            EXPECT_INT(hb_book_remove(&b, vid, NULL), ==, 0);
            EXPECT_PTR(hb_book_find(&b, vid), ==, NULL);
            EXPECT_INT(hb_book_remove(&b, vid, NULL), ==, HB_ENOENVELOPE);
            live[victim] = live[--nlive];
            EXPECT_UINT(b.count, ==, nlive);
            assert_load_ok(&b);
        }
        /* Lookups of absent ids end. */
        EXPECT_PTR(hb_book_find(&b, id + stride), ==, NULL);
        EXPECT_INT(hb_book_claim(&b, id + stride, 0, NULL), ==, HB_ENOENVELOPE);
    }
    for (unsigned i = 0; i < nlive; i++)
        ck_assert_ptr_nonnull(hb_book_find(&b, live[i]));
    ck_assert_uint_eq(b.envelopes.capacity, capacity);
    ck_assert_uint_eq(b.granted, 3u * (ROUNDS - nlive));
    hb_book_close(&b);
}

START_TEST(test_churn_keeps_the_table_size)
{
    static const uint32_t strides[] = {1, 2, 4, 7, 64};
    churn(strides[_i], 1000 + (uint64_t)_i);
}
END_TEST

START_TEST(test_expire_reports_unclaimed)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    /* Envelopes created at seconds 100..139; of the first 20, four fully claimed (4, 9, 14, 19)
     * and the others partly or not at all. */
    uint64_t old_totals = 0, old_granted = 0;
    for (uint32_t k = 0; k < 40; k++) {
        const uint32_t users[3] = {3 * k, 3 * k + 1, 3 * k + 2};
        const uint32_t shares[3] = {k + 1, 2 * k + 1, 3 * k + 1};
        hb_sendenv_t e = make_env(ID0 + k, users, shares, 100 + k);
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
        if (k < 20) {
            old_totals += e.total;
            for (unsigned r = 0; r < (k % 5 == 4 ? 3 : k % 3); r++) {
                uint32_t amount = 0;
                ck_assert_int_eq(hb_book_claim(&b, e.id, users[r], &amount), 0);
                old_granted += amount;
            }
        }
    }
    ck_assert_uint_eq(b.granted_sum, old_granted);

    struct expire_tally t = {0};
    ck_assert_uint_eq(hb_book_expire(&b, 120, tally_expired, &t), 20);
    ck_assert_uint_eq(t.calls, 20);
    ck_assert_uint_eq(t.totals, old_totals);
    ck_assert_uint_eq(t.claimed, old_granted);
    ck_assert_uint_eq(t.claimed + t.unclaimed, old_totals);
    ck_assert_uint_eq(t.max_created, 119);
    ck_assert_uint_eq(t.full, 4); /* fully claimed ones are retired at their expiry too */
    ck_assert_uint_eq(b.count, 20);
    ck_assert_uint_eq(b.granted_sum, old_granted); /* expiry grants nothing */
    for (uint32_t k = 0; k < 40; k++) {
        uint32_t amount = 0xdeadbeef;
        int err = hb_book_claim(&b, ID0 + k, 3 * k + 2, &amount);
        if (k < 20) {
            ck_assert_int_eq(err, HB_ENOENVELOPE);
            ck_assert_uint_eq(amount, 0);
        } else {
            ck_assert_int_eq(err, 0);
            ck_assert_uint_eq(amount, 3 * k + 1);
        }
    }

    /* Nothing older left; created_s == before_s stays; a NULL callback is allowed. */
    memset(&t, 0, sizeof t);
    ck_assert_uint_eq(hb_book_expire(&b, 120, tally_expired, &t), 0);
    ck_assert_uint_eq(t.calls, 0);
    ck_assert_uint_eq(hb_book_expire(&b, 139, NULL, NULL), 19);
    ck_assert_uint_eq(b.count, 1);
    ck_assert_ptr_nonnull(hb_book_find(&b, ID0 + 39));
    ck_assert_uint_eq(hb_book_expire(&b, UINT64_MAX, tally_expired, &t), 1);
    ck_assert_uint_eq(t.calls, 1);
    ck_assert_uint_eq(b.count, 0);

    /* The book still works after expiring everything. */
    hb_sendenv_t e = make_env(ID0 + 5, users_abc, shares_abc, 0);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 5, users_abc[2], NULL), 0);
    hb_book_close(&b);
}
END_TEST

/* A repeat returns the share granted before and changes nothing, whatever the state around it. */
START_TEST(test_repeat_returns_same_share)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    hb_sendenv_t e = make_env(ID0, users_abc, shares_abc, 77);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    for (unsigned r = 0; r < 3; r++) {
        uint32_t amount = 0;
        ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[r], &amount), 0);
        ck_assert_uint_eq(amount, shares_abc[r]);
        hb_sendenv_t before = *hb_book_find(&b, ID0);
        uint64_t granted = b.granted, granted_sum = b.granted_sum;
        /* Every recipient granted so far: its share; the others not yet. */
        for (unsigned q = 0; q <= r; q++) {
            amount = 0;
            ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[q], &amount), HB_BOOK_REPEAT);
            ck_assert_uint_eq(amount, shares_abc[q]);
            ck_assert_int_eq(HB_BOOK_REPEAT, 1);
        }
        assert_env_eq(hb_book_find(&b, ID0), &before);
        ck_assert_uint_eq(b.granted, granted);
        ck_assert_uint_eq(b.granted_sum, granted_sum);
    }
    ck_assert_uint_eq(b.granted_sum, e.total);
    hb_book_close(&b);
}
END_TEST

/* A fully claimed envelope is found and answered until hb_book_expire or hb_book_remove. */
START_TEST(test_fully_claimed_stays_until_expire_or_remove)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    for (uint32_t k = 0; k < 4; k++) {
        hb_sendenv_t e = make_env(ID0 + k, users_abc, shares_abc, 100 + k);
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
        for (unsigned r = 0; r < 3; r++)
            ck_assert_int_eq(hb_book_claim(&b, ID0 + k, users_abc[r], NULL), 0);
    }
    ck_assert_uint_eq(b.count, 4);
    /* Expiry before their creation keeps them. */
    ck_assert_uint_eq(hb_book_expire(&b, 100, NULL, NULL), 0);
    for (uint32_t k = 0; k < 4; k++) {
        const hb_sendenv_t *e = hb_book_find(&b, ID0 + k);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_ne(hb_sendenv_fully_claimed(e), 0);
        ck_assert_uint_eq(e->claimed_sum, e->total);
    }
    /* Expiry takes the two oldest, reporting a rest of 0. */
    struct expire_tally t = {0};
    ck_assert_uint_eq(hb_book_expire(&b, 102, tally_expired, &t), 2);
    ck_assert_uint_eq(t.full, 2);
    ck_assert_uint_eq(t.unclaimed, 0);
    ck_assert_ptr_null(hb_book_find(&b, ID0));
    ck_assert_ptr_null(hb_book_find(&b, ID0 + 1));
    ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[0], NULL), HB_ENOENVELOPE);
    uint32_t amount = 0;
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 2, users_abc[2], &amount), HB_BOOK_REPEAT);
    ck_assert_uint_eq(amount, shares_abc[2]);
    /* Removal takes one at once. */
    ck_assert_int_eq(hb_book_remove(&b, ID0 + 3, NULL), 0);
    ck_assert_ptr_null(hb_book_find(&b, ID0 + 3));
    ck_assert_ptr_nonnull(hb_book_find(&b, ID0 + 2));
    ck_assert_uint_eq(b.count, 1);
    ck_assert_uint_eq(b.granted, 12);
    hb_book_close(&b);
}
END_TEST

/* Unclaim undoes exactly one grant: the envelope, granted and granted_sum are as before it. */
START_TEST(test_unclaim_restores_exactly)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    hb_sendenv_t e = make_env(ID0, users_abc, shares_abc, 9);
    hb_sendenv_t other = make_env(ID0 + 1, users_abc, shares_abc, 9);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    ck_assert_int_eq(hb_book_add(&b, &other), 0);
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 1, users_abc[0], NULL), 0);
    hb_sendenv_t other_before = *hb_book_find(&b, ID0 + 1);

    /* Each recipient in turn: claim, unclaim, and all is as before; claim again for good. */
    for (unsigned r = 0; r < 3; r++) {
        hb_sendenv_t before = *hb_book_find(&b, ID0);
        uint64_t granted = b.granted, granted_sum = b.granted_sum;
        ck_assert_int_eq(hb_book_unclaim(&b, ID0, users_abc[r]), HB_EINVAL); /* no grant yet */
        ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[r], NULL), 0);
        ck_assert_int_eq(hb_book_unclaim(&b, ID0, users_abc[r]), 0);
        assert_env_eq(hb_book_find(&b, ID0), &before);
        ck_assert_uint_eq(b.granted, granted);
        ck_assert_uint_eq(b.granted_sum, granted_sum);
        ck_assert_int_eq(hb_book_unclaim(&b, ID0, users_abc[r]), HB_EINVAL); /* not twice */
        uint32_t amount = 0;
        ck_assert_int_eq(hb_book_claim(&b, ID0, users_abc[r], &amount), 0); /* a fresh grant */
        ck_assert_uint_eq(amount, shares_abc[r]);
    }
    /* Undoing the last share of a fully claimed envelope makes it claimable again. */
    ck_assert_int_ne(hb_sendenv_fully_claimed(hb_book_find(&b, ID0)), 0);
    ck_assert_int_eq(hb_book_unclaim(&b, ID0, users_abc[1]), 0);
    ck_assert_int_eq(hb_sendenv_fully_claimed(hb_book_find(&b, ID0)), 0);
    ck_assert_uint_eq(hb_book_find(&b, ID0)->claimed, 0x5);
    ck_assert_uint_eq(hb_book_find(&b, ID0)->claimed_sum, shares_abc[0] + shares_abc[2]);
    ck_assert_uint_eq(b.granted, 3);
    ck_assert_uint_eq(b.granted_sum, shares_abc[0] * 2 + shares_abc[2]);

    /* Errors change nothing. */
    ck_assert_int_eq(hb_book_unclaim(&b, ID0 + 5, users_abc[0]), HB_ENOENVELOPE);
    ck_assert_int_eq(hb_book_unclaim(&b, ID0, 4242), HB_ENOTRECIPIENT);
    ck_assert_int_eq(hb_book_unclaim(&b, ID0, users_abc[1]), HB_EINVAL);
    assert_env_eq(hb_book_find(&b, ID0 + 1), &other_before);
    ck_assert_uint_eq(b.granted, 3);
    hb_book_close(&b);
}
END_TEST

START_TEST(test_remove)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    for (uint32_t k = 0; k < 50; k++) {
        hb_sendenv_t e = make_env(ID0 + k, users_abc, shares_abc, k);
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
    }
    ck_assert_int_eq(hb_book_claim(&b, ID0 + 10, users_abc[1], NULL), 0);
    hb_sendenv_t out;
    memset(&out, 0xAB, sizeof out);
    ck_assert_int_eq(hb_book_remove(&b, ID0 + 10, &out), 0);
    hb_sendenv_t want = make_env(ID0 + 10, users_abc, shares_abc, 10);
    want.claimed = 0x2;
    want.claimed_sum = shares_abc[1];
    assert_env_eq(&out, &want);
    ck_assert_uint_eq(b.count, 49);
    ck_assert_ptr_null(hb_book_find(&b, ID0 + 10));
    /* Unknown ids: an error, out untouched. */
    memset(&out, 0xAB, sizeof out);
    ck_assert_int_eq(hb_book_remove(&b, ID0 + 10, &out), HB_ENOENVELOPE);
    ck_assert_int_eq(hb_book_remove(&b, ID0 + 50, NULL), HB_ENOENVELOPE);
    ck_assert_uint_eq(out.id, 0xABABABABu);
    /* Removal grants nothing back and keeps every other envelope reachable. */
    ck_assert_uint_eq(b.granted, 1);
    for (uint32_t k = 0; k < 50; k += 2) {
        if (k != 10)
            ck_assert_int_eq(hb_book_remove(&b, ID0 + k, NULL), 0);
    }
    ck_assert_uint_eq(b.count, 25);
    for (uint32_t k = 0; k < 50; k++) {
        const hb_sendenv_t *e = hb_book_find(&b, ID0 + k);
        if (k % 2 == 0 || k == 10)
            ck_assert_ptr_null(e);
        else
            ck_assert_uint_eq(e->created_s, k);
    }
    assert_load_ok(&b);
    hb_book_close(&b);
}
END_TEST

START_TEST(test_foreach_visits_each_once)
{
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    struct foreach_tally t = {0};
    hb_book_foreach(&b, tally_foreach, &t);
    ck_assert_uint_eq(t.calls, 0);
    uint64_t id_sum = 0;
    for (uint32_t k = 0; k < 300; k++) {
        hb_sendenv_t e = make_env(ID0 + k, users_abc, shares_abc, k);
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
        id_sum += ID0 + k;
    }
    /* Removed envelopes are not visited (and those shifted back into their slots are, once):
     * remove a third, fully claim another. */
    for (uint32_t k = 0; k < 300; k += 3) {
        ck_assert_int_eq(hb_book_remove(&b, ID0 + k, NULL), 0);
        id_sum -= ID0 + k;
    }
    for (unsigned r = 0; r < 3; r++)
        ck_assert_int_eq(hb_book_claim(&b, ID0 + 1, users_abc[r], NULL), 0);
    ck_assert_uint_eq(b.count, 200);
    hb_book_foreach(&b, tally_foreach, &t);
    ck_assert_uint_eq(t.calls, 200);
    ck_assert_uint_eq(t.calls, b.count);
    ck_assert_uint_eq(t.full, 1);
    ck_assert_uint_eq(t.claimed, 100);
    ck_assert_uint_eq(t.id_sum, id_sum);
    hb_book_close(&b);
    /* A closed book has nothing to visit. */
    memset(&t, 0, sizeof t);
    hb_book_foreach(&b, tally_foreach, &t);
    ck_assert_uint_eq(t.calls, 0);
}
END_TEST

/* The reference model for the property test: one slot per id in a small range. */
#define MODEL_IDS   256u
#define MODEL_USERS 10u

struct model {
    bool present[MODEL_IDS];
    hb_sendenv_t env[MODEL_IDS];
    size_t count;
    uint64_t granted, granted_sum;
};

static void model_check_all(const struct model *m, const hb_book_t *b)
{
    EXPECT_UINT(b->count, ==, m->count);
    EXPECT_UINT(b->granted, ==, m->granted);
    EXPECT_UINT(b->granted_sum, ==, m->granted_sum);
    assert_load_ok(b);
    for (uint32_t k = 0; k < MODEL_IDS; k++) {
        const hb_sendenv_t *e = hb_book_find(b, ID0 + k);
        if (m->present[k])
            assert_env_eq(e, &m->env[k]);
        else
            EXPECT_PTR(e, ==, NULL);
    }
}

/* An envelope for id k, valid unless the draw makes it one of the invalid kinds. */
static hb_sendenv_t model_random_env(test_rng_t *rng, uint32_t k, uint64_t now, bool *valid)
{
    uint32_t users[3];
    users[0] = rng_below(rng, MODEL_USERS);
    do
        users[1] = rng_below(rng, MODEL_USERS);
    while (users[1] == users[0]);
    do
        users[2] = rng_below(rng, MODEL_USERS);
    while (users[2] == users[0] || users[2] == users[1]);
    uint32_t shares[3];
    random_shares(rng, 3 + rng_below(rng, 300), shares);
    hb_sendenv_t e = make_env(ID0 + k, users, shares, now);
    *valid = true;
    switch (rng_below(rng, 20)) {
    case 0:
        e.recipients[rng_below(rng, 3)] = e.recipients[(rng_below(rng, 2) + 1) % 3];
        *valid = e.recipients[0] != e.recipients[1] && e.recipients[1] != e.recipients[2] &&
                 e.recipients[0] != e.recipients[2];
        break;
    case 1:
        e.total += 1 + rng_below(rng, 5);
        *valid = false;
        break;
    case 2:
        e.shares[rng_below(rng, 3)] = 0;
        e.total = e.shares[0] + e.shares[1] + e.shares[2];
        *valid = false;
        break;
    default:
        break;
    }
    return e;
}

/* Random adds, claims (repeats included), unclaims, removals, finds and expiries against the
 * model; results and state must agree. */
START_TEST(test_random_operations_match_model)
{
    enum { OPS = 200000 };
    static struct model m; /* static: large, and zeroed */
    memset(&m, 0, sizeof m);
    test_rng_t rng = {7};
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    uint64_t now = 1000;
    /* Claim outcomes: granted, no envelope, not a recipient, repeat; then expired, unclaimed,
     * removed. */
    unsigned outcomes[7] = {0};
    unsigned answered_when_full = 0; /* claims of a fully claimed envelope */

    for (unsigned op = 0; op < OPS; op++) {
        if (op % 500 == 0)
            now++;
        uint32_t k = rng_below(&rng, MODEL_IDS);
        uint32_t dice = rng_below(&rng, 100);
        if (dice < 30) {
            bool valid;
            hb_sendenv_t e = model_random_env(&rng, k, now, &valid);
            int want = !valid ? HB_EINVAL : m.present[k] ? HB_EEXIST : 0;
            EXPECT_INT(hb_book_add(&b, &e), ==, want);
            if (want == 0) {
                m.present[k] = true;
                m.env[k] = e;
                m.count++;
            }
        } else if (dice < 85) {
            /* Mostly a recipient's claim when the envelope exists. */
            uint32_t user = rng_below(&rng, MODEL_USERS);
            if (m.present[k] && rng_below(&rng, 4) != 0)
                user = m.env[k].recipients[rng_below(&rng, 3)];
            int want = HB_ENOENVELOPE;
            uint32_t want_amount = 0;
            if (m.present[k]) {
                hb_sendenv_t *e = &m.env[k];
                answered_when_full += e->claimed == 0x7;
                unsigned r = 0;
                while (r < 3 && e->recipients[r] != user)
                    r++;
                if (r == 3) {
                    want = HB_ENOTRECIPIENT;
                } else if (e->claimed & (1u << r)) {
                    want = HB_BOOK_REPEAT;
                    want_amount = e->shares[r];
                } else {
                    want = 0;
                    want_amount = e->shares[r];
                    e->claimed |= (uint8_t)(1u << r);
                    e->claimed_sum += want_amount;
                    m.granted++;
                    m.granted_sum += want_amount;
                }
            }
            uint32_t amount = 0xdeadbeef;
            EXPECT_INT(hb_book_claim(&b, ID0 + k, user, &amount), ==, want);
            EXPECT_UINT(amount, ==, want_amount);
            outcomes[want == 0                  ? 0
                     : want == HB_ENOENVELOPE   ? 1
                     : want == HB_ENOTRECIPIENT ? 2
                                                : 3]++;
        } else if (dice < 90) {
            /* Unclaim, mostly of a recipient's grant. */
            uint32_t user = rng_below(&rng, MODEL_USERS);
            if (m.present[k] && rng_below(&rng, 4) != 0)
                user = m.env[k].recipients[rng_below(&rng, 3)];
            int want = HB_ENOENVELOPE;
            if (m.present[k]) {
                hb_sendenv_t *e = &m.env[k];
                unsigned r = 0;
                while (r < 3 && e->recipients[r] != user)
                    r++;
                if (r == 3) {
                    want = HB_ENOTRECIPIENT;
                } else if (!(e->claimed & (1u << r))) {
                    want = HB_EINVAL;
                } else {
                    want = 0;
                    e->claimed &= (uint8_t) ~(1u << r);
                    e->claimed_sum -= e->shares[r];
                    m.granted--;
                    m.granted_sum -= e->shares[r];
                }
            }
            EXPECT_INT(hb_book_unclaim(&b, ID0 + k, user), ==, want);
            outcomes[5] += want == 0;
        } else if (dice < 92) {
            hb_sendenv_t out;
            int want = m.present[k] ? 0 : HB_ENOENVELOPE;
            EXPECT_INT(hb_book_remove(&b, ID0 + k, &out), ==, want);
            if (want == 0) {
                assert_env_eq(&out, &m.env[k]);
                m.present[k] = false;
                m.count--;
                outcomes[6]++;
            }
        } else if (dice < 99) {
            const hb_sendenv_t *e = hb_book_find(&b, ID0 + k);
            if (m.present[k])
                assert_env_eq(e, &m.env[k]);
            else
                EXPECT_PTR(e, ==, NULL);
        } else {
            uint64_t before = now - rng_below(&rng, 20);
            struct expire_tally t = {0}, want = {0};
            for (uint32_t j = 0; j < MODEL_IDS; j++) {
                if (m.present[j] && m.env[j].created_s < before) {
                    tally_expired(&want, &m.env[j]);
                    m.present[j] = false;
                    m.count--;
                }
            }
            EXPECT_UINT(hb_book_expire(&b, before, tally_expired, &t), ==, want.calls);
            EXPECT_UINT(t.calls, ==, want.calls);
            EXPECT_UINT(t.totals, ==, want.totals);
            EXPECT_UINT(t.claimed, ==, want.claimed);
            outcomes[4] += want.calls;
        }
        if (op % 1000 == 999)
            model_check_all(&m, &b);
    }
    model_check_all(&m, &b);
    /* The run reached every outcome: grants, each refusal, repeats, expiries, unclaims and
     * removals; and fully claimed envelopes were held. */
    for (unsigned i = 0; i < 7; i++)
        ck_assert_uint_gt(outcomes[i], 100);
    ck_assert_uint_gt(answered_when_full, 100);
    hb_book_close(&b);
}
END_TEST

static Suite *book_suite(void)
{
    Suite *s = suite_create("book");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_sizes_and_close);
    tcase_add_test(tc, test_add_copies_and_finds);
    tcase_add_test(tc, test_add_validates);
    tcase_add_test(tc, test_each_recipient_claims_its_share_once);
    tcase_add_test(tc, test_any_recipient_count);
    tcase_add_test(tc, test_removal_leaves_nothing_behind);
    tcase_add_test(tc, test_refused_and_repeated_claims_change_nothing);
    tcase_add_test(tc, test_user_zero_is_an_ordinary_user);
    tcase_add_test(tc, test_expire_reports_unclaimed);
    tcase_add_test(tc, test_sendenv_check_reasons);
    tcase_add_test(tc, test_repeat_returns_same_share);
    tcase_add_test(tc, test_fully_claimed_stays_until_expire_or_remove);
    tcase_add_test(tc, test_unclaim_restores_exactly);
    tcase_add_test(tc, test_remove);
    tcase_add_test(tc, test_foreach_visits_each_once);
    suite_add_tcase(s, tc);

    TCase *big = tcase_create("large");
    tcase_set_timeout(big, 60);
    tcase_add_test(big, test_growth_to_a_million_then_claim_all);
    tcase_add_loop_test(big, test_churn_keeps_the_table_size, 0, 5);
    tcase_add_test(big, test_random_operations_match_model);
    suite_add_tcase(s, big);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(book_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
