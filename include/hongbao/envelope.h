/* Envelopes and the "double mean" amount split used by real red-envelope services. */
#ifndef HONGBAO_ENVELOPE_H
#define HONGBAO_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/proto.h"
#include "hongbao/rand.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One envelope as it travels through the queues: an id and an amount in cents. */
typedef struct hb_envelope {
    uint32_t id;
    uint32_t amount;
} hb_envelope_t;

/* Split total (cents) into n shares by the double-mean rule: each share but the last is drawn
 * uniformly from [1, min(2 * remaining / left, remaining - (left - 1))], where remaining is what
 * is not yet handed out and left the shares still to draw, and the last share takes the rest.
 * The shares always sum to total exactly and each is >= 1. Deterministic for a given generator
 * state. shares (caller-owned) has room for n and is written only on success; rng is advanced.
 * Returns 0, HB_EINVAL when n is 0 or shares or rng is NULL, or HB_EAMOUNT when total < n. */
HB_EXTERN int hb_envelope_split(uint32_t total, uint32_t n, hb_rand_t *rng, uint32_t *shares);

/* The next share alone, for splitting lazily as claims come in: given what remains and how many
 * shares are left (left >= 1, remaining >= left), the amount of the next share. With left == 1
 * it is remaining. Returns 0 when remaining < left or left == 0 (nothing can be granted). rng is
 * used (and must be non-NULL) only when left >= 2 and remaining >= left; then the result lies in
 * [1, remaining - (left - 1)], so every later share can still get at least 1. */
HB_EXTERN uint32_t hb_envelope_draw(uint32_t remaining, uint32_t left, hb_rand_t *rng);

/* Envelope id spaces. Shake envelope ids are HB_SHAKE_ENVELOPE_ID_BASE (0x100000) .. 0x1FFFFF,
 * then 0x80000000 .. 0xFFFFFFFF; send-envelope ids are HB_SEND_ENVELOPE_ID_BASE (0x200000) ..
 * 0x7FFFFFFF. The reference starts the two where we do; the spaces never overlap and never wrap:
 * when one is used up, no more envelopes of that kind can be made (HB_EIDSPACE). */
typedef enum { HB_ENVELOPE_SHAKE = 1, HB_ENVELOPE_SEND = 2 } hb_envelope_kind_t;

/* The kind whose space holds id, or 0 for an id in neither (below 0x100000). */
HB_EXTERN int hb_envelope_id_kind(uint32_t id);

/* The id n places after id in kind's space (n = 1: the next id; n = 0: id itself). An id below the
 * space's first counts as one before it, so hb_envelope_id_add(kind, 0, 1) is the first id. Returns
 * 0 when that would pass the end of the space, for an unknown kind or an id of the other space, and
 * for n = 0 with an id below the space. */
HB_EXTERN uint32_t hb_envelope_id_add(hb_envelope_kind_t kind, uint32_t id, uint64_t n);

/* id's place in kind's space, counting from 0 (the inverse of hb_envelope_id_add(kind, 0, i + 1)),
 * or -1 for an id not in kind's space. Dense across the space's ranges, for tables indexed by
 * envelope (the fleet's bitmap of shake envelopes handed out). */
HB_EXTERN int64_t hb_envelope_id_index(hb_envelope_kind_t kind, uint32_t id);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_ENVELOPE_H */
