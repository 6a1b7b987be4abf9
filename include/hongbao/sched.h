/* The modulo scheduler: decides, with no coordinator, when each simulated user sends, so that a
 * fleet of client processes together sends exactly the target rate. See docs/scheduler.md. */
#ifndef HONGBAO_SCHED_H
#define HONGBAO_SCHED_H

#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Supported ranges. users is in [1, HB_SCHED_MAX_USERS], qps in [0, HB_SCHED_MAX_QPS], and every
 * second (start_s, from_s, and the second of any at_ms) below HB_SCHED_MAX_S, that is Unix times
 * up to February 2106. Within them no computation overflows 64 bits, even with start_s 0 (which
 * numbers sends from 1970 on and so needs no shared epoch); outside them the functions that can
 * return an error return HB_EINVAL. */
#define HB_SCHED_MAX_USERS (UINT64_C(1) << 32)
#define HB_SCHED_MAX_QPS   (UINT64_C(1) << 32)
#define HB_SCHED_MAX_S     UINT64_C(0xFFFFFFFF)

/* The schedule numbers sends k = base_k, base_k + 1, ... from second epoch_s on: send k is in
 * second epoch_s + (k - base_k) / qps, at millisecond ((k - base_k) % qps) * 1000 / qps of it,
 * and belongs to the user at rotation position k % users.
 *
 * The rotation: with g = gcd(users, qps), lay the users out in cols = users / g columns of
 * rows = g users each, user u in column u % cols at row u / cols. The rotation visits column
 * c = u % cols in slot (c * (qps / g)) % cols, and a column's users by row: position
 * pos(u) = ((u % cols) * (qps / g) % cols) * rows + u / cols. When qps divides users,
 * cols = G = users / qps and the slots are in column order, so the users of second t are exactly
 * the reference's {u : u % G == t % G} (with base_k = epoch_s * qps, e.g. start_s = 0); when users
 * divides qps the rotation is u itself. In general:
 *  - every second has exactly qps sends;
 *  - over any run of consecutive sends (so any window of whole seconds) each user's count differs
 *    from any other's by at most one;
 *  - in every second (indeed any T whole seconds), the users [0, L) make floor or ceil of
 *    T * qps * L / users of the sends, so any contiguous range of users (one client process)
 *    makes its exact share to within less than 2, every second.
 * Plain data, caller-owned, no resources: copy it freely. Every process computing from the same
 * (users, qps, start_s) and the same rate changes gets the same schedule. */
typedef struct hb_sched {
    /* read-only */
    uint64_t users;   /* total simulated users, user ids 0..users-1 */
    uint64_t qps;     /* sends per second, 0 = none */
    uint64_t epoch_s; /* the second the current rate took effect */
    uint64_t base_k;  /* the index of the first send at epoch_s */
    /* private */
    uint64_t cols;     /* rotation columns: users / gcd(users, qps) */
    uint64_t rows;     /* users per column: gcd(users, qps) */
    uint64_t stride;   /* (qps / rows) % cols: slot of column c is c * stride % cols */
    uint64_t unstride; /* the inverse of stride modulo cols */
} hb_sched_t;

/* Initialise the caller-owned s for user ids 0..users-1 at qps sends a second from second start_s
 * on, numbering the first send 0. Returns 0, or HB_EINVAL when users is 0 or a value is outside
 * the supported ranges (s is then unchanged). qps may be 0 (nothing is due) or above users (users
 * send several times a second). */
HB_EXTERN int hb_sched_init(hb_sched_t *s, uint64_t users, uint64_t qps, uint64_t start_s);

/* Change the rate from second from_s on (from_s >= s->epoch_s). Sends stay numbered
 * continuously (base_k moves past the old rate's sends before from_s), so every second has
 * exactly its own rate's count. The schedule then describes time from from_s on only: queries for
 * earlier times are clamped to from_s, so change the rate for a coming second and recompute the
 * users' next times. The rotation is recomputed for the new rate, so the one-send fairness bound
 * holds within each rate's period; over a window spanning a change counts differ by at most two.
 * Returns 0, or HB_EINVAL (s unchanged) when from_s < epoch_s, from_s >= HB_SCHED_MAX_S or
 * qps > HB_SCHED_MAX_QPS. */
HB_EXTERN int hb_sched_set_rate(hb_sched_t *s, uint64_t qps, uint64_t from_s);

/* The user who makes send k, for k >= base_k (an earlier k gets the current rate's rotation,
 * which may differ from the one it was sent under). O(1), cannot fail. */
HB_EXTERN uint64_t hb_sched_user_of(const hb_sched_t *s, uint64_t k);

/* The time, in Unix milliseconds, of send k (k >= base_k; an earlier k is clamped to base_k).
 * Non-decreasing in k. UINT64_MAX when qps is 0 (no send is ever made). O(1), cannot fail. */
HB_EXTERN uint64_t hb_sched_time_of(const hb_sched_t *s, uint64_t k);

/* The time, in Unix microseconds, of send k: the placement of hb_sched_time_of one level finer.
 * Index i of a second is at microsecond floor(i * 1000000 / qps) of it, which lies inside the
 * millisecond hb_sched_time_of gives (hb_sched_time_us_of(s, k) / 1000 == hb_sched_time_of(s, k)),
 * so the sends of one millisecond are spread evenly across it (at 60,000/s, 16 or 17 us apart)
 * instead of sharing its first microsecond. Non-decreasing in k, strictly increasing when
 * qps <= 1,000,000. UINT64_MAX when qps is 0. O(1), cannot fail. */
HB_EXTERN uint64_t hb_sched_time_us_of(const hb_sched_t *s, uint64_t k);

/* The index of the first send due at or after Unix millisecond at_ms: at_ms before the epoch is
 * clamped to it (giving base_k), at_ms at or above HB_SCHED_MAX_S * 1000 to that. base_k when qps
 * is 0 (the index the next send will have). O(1), cannot fail. */
HB_EXTERN uint64_t hb_sched_first_at(const hb_sched_t *s, uint64_t at_ms);

/* The next send of user at or after Unix millisecond at_ms (a send exactly at at_ms counts;
 * at_ms before the epoch is clamped to it): stores its index in *k and its time in *when_ms,
 * each if not NULL. O(1). Returns 0; HB_EINVAL for user >= users or at_ms >= HB_SCHED_MAX_S * 1000;
 * HB_EIDLE when qps is 0. On error nothing is stored. */
HB_EXTERN int hb_sched_next(const hb_sched_t *s, uint64_t user, uint64_t at_ms, uint64_t *k,
                            uint64_t *when_ms);

/* The sends of one contiguous range of users, in order: what a client process owning users
 * first..first + count - 1 sends, without visiting any of the fleet's other sends. Under one rate
 * user u sends at the indices congruent to its rotation position modulo users, so the range's
 * sends repeat with period users, ordered by position: the walk keeps the range's users sorted by
 * position, in an array the caller provides (8 bytes a user), and steps through it cycle after
 * cycle, O(1) a send. Plain data, caller-owned, no allocation; the array must outlive the walk. */
typedef struct hb_sched_range {
    /* read-only */
    uint64_t first; /* the range's first user */
    uint64_t count; /* its users */
    /* private */
    uint64_t users;  /* s->users at hb_sched_range_init */
    uint64_t *order; /* count entries, position << 32 | (user - first), ascending */
    uint64_t cycle;  /* the index of position 0 of the current cycle, a multiple of users */
    uint64_t next;   /* the entry of the walk's next send */
} hb_sched_range_t;

/* Prepare a walk of the users first..first + count - 1 of s under its current rate, at its first
 * send at or after s->base_k. order is the caller's array of count uint64_t, used by the walk
 * until it is prepared again or dropped. O(count log count). The walk describes the rate it was
 * prepared under: after hb_sched_set_rate, prepare it again (the rotation changed) and seek.
 * Returns 0, or HB_EINVAL when count is 0, order is NULL or first + count > s->users (nothing is
 * changed then). */
HB_EXTERN int hb_sched_range_init(hb_sched_range_t *r, const hb_sched_t *s, uint64_t first,
                                  uint64_t count, uint64_t *order);

/* Move the walk to the range's first send due at or after Unix millisecond at_ms (clamped as
 * hb_sched_first_at clamps it). s is the schedule the walk was prepared with, unchanged since.
 * O(log count), cannot fail. */
HB_EXTERN void hb_sched_range_seek(hb_sched_range_t *r, const hb_sched_t *s, uint64_t at_ms);

/* The walk's next send: stores its index in *k and its user in *user (each if not NULL), and steps
 * past it. Successive sends have increasing indices, so their times (hb_sched_time_of,
 * hb_sched_time_us_of) never decrease; they are exactly the sends of the fleet's schedule whose
 * user is in the range, in the order of the index, none skipped: a user's first send from a seek
 * to at_ms is the one hb_sched_next(s, user, at_ms) gives, and each later one is users indices
 * after its previous. O(1), cannot fail. */
HB_EXTERN void hb_sched_range_next(hb_sched_range_t *r, uint64_t *k, uint64_t *user);

/* The reference's own rule, kept for comparison and tests: 1 if user sends in second t, that is
 * t % G == user % G with G = users / qps in integer division as the reference computes it, else
 * 0. The rule is exact only when qps divides users (otherwise a second has about users / G
 * senders, not qps). Returns HB_EINVAL when qps is 0, qps > users (G would be 0) or
 * user >= users. */
HB_EXTERN int hb_sched_reference_due(uint64_t users, uint64_t qps, uint64_t user, uint64_t t);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_SCHED_H */
