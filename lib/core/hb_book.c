/* The send-envelope book: the envelopes by id in an id map (hongbao/idmap.h), each recipient
 * granted its share exactly once. */
#include "hongbao/book.h"

#include <stdalign.h>
#include <stdint.h>

/* Every recipient of e has claimed. */
static uint8_t all_claimed(const hb_sendenv_t *e)
{
    return (uint8_t)((1u << e->count) - 1u);
}

_Static_assert(HB_SEND_MAX_RECIPIENTS <= 8, "claimed is a bitmask of 8 bits");

/* The id map keeps values aligned to 8 bytes, and envelopes inline. */
_Static_assert(alignof(hb_sendenv_t) <= 8, "an envelope needs no more than the id map's alignment");
_Static_assert(sizeof(hb_sendenv_t) <= HB_IDMAP_VALUE_MAX, "an envelope fits an id map's value");

const char *hb_sendenv_check(const hb_sendenv_t *e)
{
    if (e == NULL)
        return "no envelope";
    if (e->count < 1 || e->count > HB_SEND_MAX_RECIPIENTS)
        return "recipient count outside 1..HB_SEND_MAX_RECIPIENTS";
    uint64_t sum = 0;
    uint64_t claimed_sum = 0;
    for (unsigned i = 0; i < e->count; i++) {
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
    if ((e->claimed & ~all_claimed(e)) != 0)
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
    return hb_idmap_init(&b->envelopes, sizeof(hb_sendenv_t), expected);
}

void hb_book_close(hb_book_t *b)
{
    hb_idmap_close(&b->envelopes);
    b->count = 0;
}

int hb_book_add(hb_book_t *b, const hb_sendenv_t *e)
{
    if (hb_sendenv_check(e) != NULL)
        return HB_EINVAL;
    void *slot;
    int rc = hb_idmap_insert(&b->envelopes, e->id, &slot);
    if (rc != 0)
        return rc == 1 ? HB_EEXIST : rc;
    *(hb_sendenv_t *)slot = *e;
    b->count = b->envelopes.count;
    return 0;
}

/* The index of user among e's recipients, or e->count. */
static unsigned recipient_index(const hb_sendenv_t *e, uint32_t user)
{
    unsigned r = 0;
    while (r < e->count && e->recipients[r] != user)
        r++;
    return r;
}

int hb_sendenv_fully_claimed(const hb_sendenv_t *e)
{
    return e->claimed == all_claimed(e);
}

int hb_sendenv_share_of(const hb_sendenv_t *e, uint32_t user, uint32_t *share)
{
    unsigned r = recipient_index(e, user);
    if (r == e->count)
        return HB_ENOTRECIPIENT;
    if (share != NULL)
        *share = e->shares[r];
    return (e->claimed >> r) & 1u;
}

int hb_book_claim(hb_book_t *b, uint32_t id, uint32_t user, uint32_t *amount)
{
    if (amount != NULL)
        *amount = 0;
    hb_sendenv_t *e = hb_idmap_find(&b->envelopes, id);
    if (e == NULL)
        return HB_ENOENVELOPE;
    unsigned r = recipient_index(e, user);
    if (r == e->count)
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
    hb_sendenv_t *e = hb_idmap_find(&b->envelopes, id);
    if (e == NULL)
        return HB_ENOENVELOPE;
    unsigned r = recipient_index(e, user);
    if (r == e->count)
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
    if (hb_idmap_remove(&b->envelopes, id, out) != 0)
        return HB_ENOENVELOPE;
    b->count = b->envelopes.count;
    return 0;
}

const hb_sendenv_t *hb_book_find(const hb_book_t *b, uint32_t id)
{
    return hb_idmap_find(&b->envelopes, id);
}

/* hb_book_expire's test and callback, for hb_idmap_remove_if. */
struct expiry {
    uint64_t before_s;
    void (*cb)(void *arg, const hb_sendenv_t *e);
    void *arg;
};

static int expired(void *arg, uint32_t id, void *value)
{
    const struct expiry *x = arg;
    const hb_sendenv_t *e = value;
    (void)id;
    if (e->created_s >= x->before_s)
        return 0;
    if (x->cb != NULL)
        x->cb(x->arg, e);
    return 1;
}

size_t hb_book_expire(hb_book_t *b, uint64_t before_s, void (*cb)(void *arg, const hb_sendenv_t *e),
                      void *arg)
{
    struct expiry x = {before_s, cb, arg};
    size_t removed = hb_idmap_remove_if(&b->envelopes, expired, &x);
    b->count = b->envelopes.count;
    return removed;
}

void hb_book_foreach(const hb_book_t *b, void (*cb)(void *arg, const hb_sendenv_t *e), void *arg)
{
    size_t cursor = 0;
    const hb_sendenv_t *e;
    while ((e = hb_idmap_next(&b->envelopes, &cursor, NULL)) != NULL)
        cb(arg, e);
}
