/* The fleet's books, as Redis keeps them (docs/fleet.md), read back and checked: a send-envelope's
 * hash turned into the book's envelope, so that the one validation rule (hb_sendenv_check) judges
 * it, and a budget partition's figures balanced. No I/O: the caller reads Redis and hands the
 * fields over. */
#ifndef HONGBAO_FLEET_H
#define HONGBAO_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/book.h"
#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One field of a hash as Redis returns it (HGETALL): name and value, not NUL-terminated. */
typedef struct hb_fleet_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} hb_fleet_field_t;

/* Read send-envelope id's hash (fields t, n, s:<user>, g:<user>, k, a, and ms, by, which are not
 * checked here) into *e: recipients in ascending user order with their shares, claimed bits from
 * the g: fields, claimed_sum from them. Returns NULL when the hash is a well-formed envelope the
 * book would take (hb_sendenv_check) whose counters agree (k grants, a granted, each g: equal to
 * its s:, n recipients); else a static string saying what is wrong ("a field is not a number",
 * "a grant differs from its share", "k is not the number of grants", ...). */
HB_EXTERN const char *hb_fleet_envelope_read(uint32_t id, const hb_fleet_field_t *fields, size_t n,
                                             hb_sendenv_t *e);

/* What one partition of the shake budget holds, as budget_audit.lua answers. */
typedef struct hb_fleet_partition {
    uint64_t generated, generated_amount;
    uint64_t queued, queued_amount;
    uint64_t leased, leased_amount;
    uint64_t handed_out, handed_out_amount;
    uint64_t expired, expired_amount;
    uint64_t returned, late, dup, bits, leases;
} hb_fleet_partition_t;

/* Fill *p from the 15 integers of budget_audit.lua's answer, in its order. Returns 0, or
 * HB_EINVAL when n is not 15 or a value is negative. */
HB_EXTERN int hb_fleet_partition_set(hb_fleet_partition_t *p, const long long *values, size_t n);

/* Add p's figures to *sum (a fleet's whole budget is the sum of its partitions). */
HB_EXTERN void hb_fleet_partition_add(hb_fleet_partition_t *sum, const hb_fleet_partition_t *p);

/* The balance of a partition: every envelope, and every cent, in exactly one place (generated =
 * queued + leased + handed out + expired), none handed out twice (dup 0, bits set = handed out).
 * Returns NULL when it holds, else a static string naming the first rule broken. */
HB_EXTERN const char *hb_fleet_partition_check(const hb_fleet_partition_t *p);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_FLEET_H */
