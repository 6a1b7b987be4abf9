/* The fleet's books read back and checked (hongbao/fleet.h). */
#include <string.h>

#include "hongbao/fleet.h"

/* A decimal number of at most 20 digits into *v. Returns 0, or -1 when it is not one. */
static int number(const char *s, size_t len, uint64_t *v)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

static int named(const hb_fleet_field_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && memcmp(f->name, name, n) == 0;
}

/* A "s:<user>" or "g:<user>" field: its user in *user. */
static int user_field(const hb_fleet_field_t *f, char kind, uint32_t *user)
{
    uint64_t u;
    if (f->name_len < 3 || f->name[0] != kind || f->name[1] != ':' ||
        number(f->name + 2, f->name_len - 2, &u) != 0 || u > UINT32_MAX)
        return 0;
    *user = (uint32_t)u;
    return 1;
}

/* Where user sits among e's recipients, or -1. */
static int recipient_index(const hb_sendenv_t *e, uint32_t user)
{
    for (unsigned i = 0; i < e->count; i++)
        if (e->recipients[i] == user)
            return (int)i;
    return -1;
}

const char *hb_fleet_envelope_read(uint32_t id, const hb_fleet_field_t *fields, size_t n,
                                   hb_sendenv_t *e)
{
    memset(e, 0, sizeof *e);
    e->id = id;
    uint64_t total = 0, count = 0, grants = 0, granted = 0, v;
    int have_t = 0, have_n = 0, have_k = 0, have_a = 0;
    /* The shares first, so that the grants can be matched against them. */
    for (size_t i = 0; i < n; i++) {
        const hb_fleet_field_t *f = &fields[i];
        uint32_t user;
        if (!user_field(f, 's', &user))
            continue;
        if (number(f->value, f->value_len, &v) != 0 || v > UINT32_MAX)
            return "a field is not a number";
        if (e->count == HB_SEND_MAX_RECIPIENTS)
            return "more recipients than an envelope may have";
        /* Ascending user order, whatever order the hash gave. */
        unsigned at = e->count;
        while (at > 0 && e->recipients[at - 1] > user) {
            e->recipients[at] = e->recipients[at - 1];
            e->shares[at] = e->shares[at - 1];
            at--;
        }
        if (at > 0 && e->recipients[at - 1] == user)
            return "recipients are not distinct";
        e->recipients[at] = user;
        e->shares[at] = (uint32_t)v;
        e->count++;
    }
    for (size_t i = 0; i < n; i++) {
        const hb_fleet_field_t *f = &fields[i];
        uint32_t user;
        uint64_t *slot = named(f, "t")   ? &total
                         : named(f, "n") ? &count
                         : named(f, "k") ? &grants
                         : named(f, "a") ? &granted
                                         : NULL;
        if (slot != NULL) {
            if (number(f->value, f->value_len, slot) != 0)
                return "a field is not a number";
            have_t |= slot == &total;
            have_n |= slot == &count;
            have_k |= slot == &grants;
            have_a |= slot == &granted;
            continue;
        }
        if (!user_field(f, 'g', &user))
            continue;
        if (number(f->value, f->value_len, &v) != 0)
            return "a field is not a number";
        int at = recipient_index(e, user);
        if (at < 0)
            return "a grant to a user who is not a recipient";
        if (v != e->shares[at])
            return "a grant differs from its share";
        e->claimed |= (uint8_t)(1u << at);
        e->claimed_sum += e->shares[at];
    }
    if (!have_t || !have_n || !have_k || !have_a)
        return "a field is missing (t, n, k or a)";
    if (e->count == 0)
        return "no recipient";
    if (total > UINT32_MAX)
        return "the total is too large";
    e->total = (uint32_t)total;
    if (count != e->count)
        return "n is not the number of recipients";
    const char *why = hb_sendenv_check(e);
    if (why != NULL)
        return why;
    if (grants != (uint64_t)__builtin_popcount(e->claimed))
        return "k is not the number of grants";
    if (granted != e->claimed_sum)
        return "a is not the amount granted";
    return NULL;
}

int hb_fleet_partition_set(hb_fleet_partition_t *p, const long long *values, size_t n)
{
    if (p == NULL || values == NULL || n != 15)
        return HB_EINVAL;
    uint64_t *out[] = {&p->generated,  &p->generated_amount,
                       &p->queued,     &p->queued_amount,
                       &p->leased,     &p->leased_amount,
                       &p->handed_out, &p->handed_out_amount,
                       &p->expired,    &p->expired_amount,
                       &p->returned,   &p->late,
                       &p->dup,        &p->bits,
                       &p->leases};
    for (size_t i = 0; i < n; i++) {
        if (values[i] < 0)
            return HB_EINVAL;
        *out[i] = (uint64_t)values[i];
    }
    return 0;
}

void hb_fleet_partition_add(hb_fleet_partition_t *sum, const hb_fleet_partition_t *p)
{
    sum->generated += p->generated;
    sum->generated_amount += p->generated_amount;
    sum->queued += p->queued;
    sum->queued_amount += p->queued_amount;
    sum->leased += p->leased;
    sum->leased_amount += p->leased_amount;
    sum->handed_out += p->handed_out;
    sum->handed_out_amount += p->handed_out_amount;
    sum->expired += p->expired;
    sum->expired_amount += p->expired_amount;
    sum->returned += p->returned;
    sum->late += p->late;
    sum->dup += p->dup;
    sum->bits += p->bits;
    sum->leases += p->leases;
}

const char *hb_fleet_partition_check(const hb_fleet_partition_t *p)
{
    if (p->generated != p->queued + p->leased + p->handed_out + p->expired)
        return "envelopes: generated is not queued + leased + handed out + expired";
    if (p->generated_amount !=
        p->queued_amount + p->leased_amount + p->handed_out_amount + p->expired_amount)
        return "amounts: generated is not queued + leased + handed out + expired";
    if (p->dup != 0)
        return "an envelope was handed out twice";
    if (p->bits != p->handed_out)
        return "the envelopes marked handed out are not as many as handed out";
    return NULL;
}
