/* The send-envelope book: an open-addressing hash map (linear probing, tombstones, power-of-two
 * capacity) from envelope id to hb_sendenv_t, granting each recipient its share exactly once. */
#include "hongbao/book.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* The table never holds fewer slots than this. */
#define HB_BOOK_MIN_CAPACITY ((size_t)8)
/* Every recipient has claimed. */
#define HB_BOOK_ALL_CLAIMED ((uint8_t)((1u << HB_NOTICE_RECIPIENTS) - 1u))

enum hb_book_slot_state {
    HB_BOOK_SLOT_EMPTY = 0, /* never used since the last rehash: ends a probe (calloc gives it) */
    HB_BOOK_SLOT_USED = 1,
    HB_BOOK_SLOT_TOMBSTONE = 2 /* removed: a probe walks past it, an insert may reuse it */
};

struct hb_book_slot {
    hb_sendenv_t env;
    uint8_t state;
};

/* Used slots plus tombstones may fill at most 7/10 of the table, so at least 3/10 of the slots
 * are always empty and every probe ends. */
static bool over_load(size_t used, size_t capacity)
{
    return used > capacity / 10 * 7 + capacity % 10 * 7 / 10;
}

static size_t capacity_of(const hb_book_t *b)
{
    return b->slots == NULL ? 0 : b->mask + 1;
}

/* log2 of a power of two. */
static unsigned log2_pow2(size_t capacity)
{
#if defined(__GNUC__)
    return (unsigned)__builtin_ctzll((unsigned long long)capacity);
#else
    unsigned n = 0;
    while (capacity > 1) {
        capacity >>= 1;
        n++;
    }
    return n;
#endif
}

/* The home slot of id: Fibonacci hashing (multiply by 2^64 / golden ratio, keep the top bits).
 * The top bits of the product depend on every bit of id and spread an arithmetic progression of
 * ids (sequential ids, or every nsets-th one as a SET sees them) almost perfectly evenly. */
static size_t home_slot(uint32_t id, size_t capacity)
{
    unsigned bits = log2_pow2(capacity);
    uint64_t x = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(x >> (64u - bits));
}

/* The smallest power-of-two capacity (at least the minimum) that holds n entries within the load
 * limit, or 0 if no size_t capacity does or the table would not fit in memory. */
static size_t capacity_for(size_t n)
{
    size_t capacity = HB_BOOK_MIN_CAPACITY;
    while (over_load(n, capacity)) {
        if (capacity > SIZE_MAX / 2)
            return 0;
        capacity *= 2;
    }
    if (capacity > SIZE_MAX / sizeof(struct hb_book_slot))
        return 0;
    return capacity;
}

/* The index of the used slot holding id, or SIZE_MAX. */
static size_t locate(const hb_book_t *b, uint32_t id)
{
    size_t capacity = capacity_of(b);
    if (capacity == 0)
        return SIZE_MAX;
    for (size_t i = home_slot(id, capacity);; i = (i + 1) & b->mask) {
        const struct hb_book_slot *s = &b->slots[i];
        if (s->state == HB_BOOK_SLOT_EMPTY)
            return SIZE_MAX;
        if (s->state == HB_BOOK_SLOT_USED && s->env.id == id)
            return i;
    }
}

/* Move every used slot into a fresh table of capacity slots, dropping the tombstones. On
 * HB_ENOMEM the book is unchanged. */
static int rehash(hb_book_t *b, size_t capacity)
{
    struct hb_book_slot *slots = calloc(capacity, sizeof *slots);
    if (slots == NULL)
        return HB_ENOMEM;
    size_t mask = capacity - 1;
    size_t old_capacity = capacity_of(b);
    for (size_t j = 0; j < old_capacity; j++) {
        const struct hb_book_slot *from = &b->slots[j];
        if (from->state != HB_BOOK_SLOT_USED)
            continue;
        size_t i = home_slot(from->env.id, capacity);
        while (slots[i].state != HB_BOOK_SLOT_EMPTY)
            i = (i + 1) & mask;
        slots[i] = *from;
    }
    free(b->slots);
    b->slots = slots;
    b->mask = mask;
    b->tombstones = 0;
    return 0;
}

/* Remove the envelope in used slot i. A tombstone keeps later entries of the probe chain
 * reachable; but when the next slot is empty no chain runs through slot i, so it and the
 * tombstones just before it become empty again, and churn leaves fewer tombstones behind. */
static void remove_at(hb_book_t *b, size_t i)
{
    b->slots[i].state = HB_BOOK_SLOT_TOMBSTONE;
    b->tombstones++;
    b->count--;
    if (b->slots[(i + 1) & b->mask].state != HB_BOOK_SLOT_EMPTY)
        return;
    /* Ends at the latest at slot i + 1, which is empty. */
    while (b->slots[i].state == HB_BOOK_SLOT_TOMBSTONE) {
        b->slots[i].state = HB_BOOK_SLOT_EMPTY;
        b->tombstones--;
        i = (i - 1) & b->mask;
    }
}

const char *hb_sendenv_check(const hb_sendenv_t *e)
{
    if (e == NULL)
        return "no envelope";
    uint64_t sum = 0;
    uint64_t claimed_sum = 0;
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        if (e->shares[i] == 0)
            return "a share is 0";
        for (unsigned j = 0; j < i; j++) {
            if (e->recipients[j] == e->recipients[i])
                return "recipients are not distinct";
        }
        sum += e->shares[i];
        if (e->claimed & (1u << i))
            claimed_sum += e->shares[i];
    }
    if (sum != e->total)
        return "shares do not add up to the total";
    if ((e->claimed & ~HB_BOOK_ALL_CLAIMED) != 0)
        return "claimed bits beyond the recipients";
    if (claimed_sum != e->claimed_sum)
        return "claimed_sum is not the sum of the claimed shares";
    return NULL;
}

int hb_book_init(hb_book_t *b, size_t expected)
{
    b->count = 0;
    b->granted = 0;
    b->granted_sum = 0;
    b->slots = NULL;
    b->mask = 0;
    b->tombstones = 0;
    size_t capacity = capacity_for(expected);
    if (capacity == 0)
        return HB_ENOMEM;
    b->slots = calloc(capacity, sizeof *b->slots);
    if (b->slots == NULL)
        return HB_ENOMEM;
    b->mask = capacity - 1;
    return 0;
}

void hb_book_close(hb_book_t *b)
{
    free(b->slots);
    b->slots = NULL;
    b->mask = 0;
    b->count = 0;
    b->tombstones = 0;
}

int hb_book_add(hb_book_t *b, const hb_sendenv_t *e)
{
    if (hb_sendenv_check(e) != NULL)
        return HB_EINVAL;

    /* One probe both detects a duplicate and finds where e goes: the first tombstone on the
     * way, else the empty slot that ends the chain. */
    size_t capacity = capacity_of(b);
    size_t target = SIZE_MAX;
    if (capacity != 0) {
        for (size_t i = home_slot(e->id, capacity);; i = (i + 1) & b->mask) {
            const struct hb_book_slot *s = &b->slots[i];
            if (s->state == HB_BOOK_SLOT_EMPTY) {
                if (target == SIZE_MAX)
                    target = i;
                break;
            }
            if (s->state == HB_BOOK_SLOT_USED) {
                if (s->env.id == e->id)
                    return HB_EEXIST;
            } else if (target == SIZE_MAX) {
                target = i;
            }
        }
    }

    if (target == SIZE_MAX || (b->slots[target].state == HB_BOOK_SLOT_EMPTY &&
                               over_load(b->count + b->tombstones + 1, capacity))) {
        /* Taking an empty slot would pass the load limit: rebuild without tombstones, doubling
         * until the live entries fill at most half of the limit, so the next rebuild is at
         * least as many adds away as there are live entries (amortised O(1) per add). */
        size_t want = b->count + 1;
        size_t new_capacity = capacity_for(want > SIZE_MAX / 2 ? SIZE_MAX : want * 2);
        if (new_capacity == 0)
            return HB_ENOMEM;
        if (new_capacity < capacity)
            new_capacity = capacity;
        int err = rehash(b, new_capacity);
        if (err != 0)
            return err;
        target = home_slot(e->id, new_capacity);
        while (b->slots[target].state != HB_BOOK_SLOT_EMPTY)
            target = (target + 1) & b->mask;
    }

    struct hb_book_slot *s = &b->slots[target];
    if (s->state == HB_BOOK_SLOT_TOMBSTONE)
        b->tombstones--;
    s->env = *e;
    s->state = HB_BOOK_SLOT_USED;
    b->count++;
    return 0;
}

/* The index of user among e's recipients, or HB_NOTICE_RECIPIENTS. */
static unsigned recipient_index(const hb_sendenv_t *e, uint32_t user)
{
    unsigned r = 0;
    while (r < HB_NOTICE_RECIPIENTS && e->recipients[r] != user)
        r++;
    return r;
}

int hb_sendenv_fully_claimed(const hb_sendenv_t *e)
{
    return e->claimed == HB_BOOK_ALL_CLAIMED;
}

int hb_book_claim(hb_book_t *b, uint32_t id, uint32_t user, uint32_t *amount)
{
    if (amount != NULL)
        *amount = 0;
    size_t i = locate(b, id);
    if (i == SIZE_MAX)
        return HB_ENOENVELOPE;
    hb_sendenv_t *e = &b->slots[i].env;
    unsigned r = recipient_index(e, user);
    if (r == HB_NOTICE_RECIPIENTS)
        return HB_ENOTRECIPIENT;
    uint8_t bit = (uint8_t)(1u << r);
    uint32_t share = e->shares[r];
    if (amount != NULL)
        *amount = share;
    if (e->claimed & bit)
        return HB_BOOK_REPEAT;
    e->claimed |= bit;
    e->claimed_sum += share;
    b->granted++;
    b->granted_sum += share;
    return 0;
}

int hb_book_unclaim(hb_book_t *b, uint32_t id, uint32_t user)
{
    size_t i = locate(b, id);
    if (i == SIZE_MAX)
        return HB_ENOENVELOPE;
    hb_sendenv_t *e = &b->slots[i].env;
    unsigned r = recipient_index(e, user);
    if (r == HB_NOTICE_RECIPIENTS)
        return HB_ENOTRECIPIENT;
    uint8_t bit = (uint8_t)(1u << r);
    if (!(e->claimed & bit))
        return HB_EINVAL;
    e->claimed &= (uint8_t)~bit;
    e->claimed_sum -= e->shares[r];
    b->granted--;
    b->granted_sum -= e->shares[r];
    return 0;
}

int hb_book_remove(hb_book_t *b, uint32_t id, hb_sendenv_t *out)
{
    size_t i = locate(b, id);
    if (i == SIZE_MAX)
        return HB_ENOENVELOPE;
    if (out != NULL)
        *out = b->slots[i].env;
    remove_at(b, i);
    return 0;
}

const hb_sendenv_t *hb_book_find(const hb_book_t *b, uint32_t id)
{
    size_t i = locate(b, id);
    return i == SIZE_MAX ? NULL : &b->slots[i].env;
}

size_t hb_book_expire(hb_book_t *b, uint64_t before_s, void (*cb)(void *arg, const hb_sendenv_t *e),
                      void *arg)
{
    size_t removed = 0;
    size_t capacity = capacity_of(b);
    for (size_t i = 0; i < capacity; i++) {
        const struct hb_book_slot *s = &b->slots[i];
        if (s->state != HB_BOOK_SLOT_USED || s->env.created_s >= before_s)
            continue;
        if (cb != NULL)
            cb(arg, &s->env);
        remove_at(b, i);
        removed++;
    }
    return removed;
}

void hb_book_foreach(const hb_book_t *b, void (*cb)(void *arg, const hb_sendenv_t *e), void *arg)
{
    size_t capacity = capacity_of(b);
    for (size_t i = 0; i < capacity; i++) {
        if (b->slots[i].state == HB_BOOK_SLOT_USED)
            cb(arg, &b->slots[i].env);
    }
}
