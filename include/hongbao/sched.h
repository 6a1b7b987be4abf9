/* The modulo scheduler: decides, with no coordinator, when each simulated user sends, so that a
 * fleet of client processes together sends exactly the target rate. See docs/scheduler.md. */
#ifndef HONGBAO_SCHED_H
#define HONGBAO_SCHED_H

#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The schedule numbers sends k = base_k, base_k + 1, ... from second epoch_s on: send k is in
 * second epoch_s + (k - base_k) / qps, at millisecond ((k - base_k) % qps) * 1000 / qps of it,
 * and belongs to the user at rotation position k % users. The rotation visits users in
 * "column" order, (u % cols, u / cols) with cols = ceil(users / qps), so when qps divides users
 * the users of second t are exactly the reference's {u : u % G == t % G}, G = users / qps, and a
 * contiguous range of users (one client process) is spread over all seconds. Every second has
 * exactly qps sends; over any window each user's count differs from any other's by at most one.
 * Plain data, caller-owned, no resources: copy it freely. Every process computing from the same
 * (users, qps, epoch) gets the same schedule. */
typedef struct hb_sched {
    /* read-only */
    uint64_t users;   /* total simulated users, user ids 0..users-1 */
    uint64_t qps;     /* sends per second, 0 = none */
    uint64_t epoch_s; /* the second the current rate took effect */
    uint64_t base_k;  /* the index of the first send at epoch_s */
    /* private */
    uint64_t cols; /* rotation columns */
    uint64_t rows; /* users / cols (full rows) */
    uint64_t rem;  /* users % cols: columns with one extra user */
} hb_sched_t;

/* Initialise a schedule for users ids 0..users-1 at qps sends a second from second start_s.
 * Returns 0, or UV_EINVAL when users is 0. qps may be 0 (nothing is due) or above users (users
 * send several times a second). */
HB_EXTERN int hb_sched_init(hb_sched_t *s, uint64_t users, uint64_t qps, uint64_t start_s);

/* Change the rate from second from_s on (from_s >= s->epoch_s). Sends stay numbered
 * continuously (base_k moves past the old rate's sends before from_s), so every second has
 * exactly its own rate's count. The schedule then describes time from from_s on only: queries for
 * earlier times are clamped to from_s, so change the rate for a coming second and recompute the
 * users' next times. Returns 0 or UV_EINVAL when from_s < epoch_s. */
HB_EXTERN int hb_sched_set_rate(hb_sched_t *s, uint64_t qps, uint64_t from_s);

/* The user who makes send k (k >= base_k). O(1). */
HB_EXTERN uint64_t hb_sched_user_of(const hb_sched_t *s, uint64_t k);

/* The time, in Unix milliseconds, of send k (k >= base_k). O(1). */
HB_EXTERN uint64_t hb_sched_time_of(const hb_sched_t *s, uint64_t k);

/* The index of the first send due at or after Unix millisecond at_ms (clamped to the epoch). */
HB_EXTERN uint64_t hb_sched_first_at(const hb_sched_t *s, uint64_t at_ms);

/* The next send of user at or after Unix millisecond at_ms: stores its index in *k (if k is not
 * NULL) and its time in *when_ms. O(1). Returns 0, UV_EINVAL for user >= users, or HB_EIDLE
 * when qps is 0. */
HB_EXTERN int hb_sched_next(const hb_sched_t *s, uint64_t user, uint64_t at_ms, uint64_t *k,
                            uint64_t *when_ms);

/* Whether user sends in second t according to the reference's own rule, t % G == user % G with
 * G = users / qps (valid only when qps divides users): kept for comparison and tests. */
HB_EXTERN int hb_sched_reference_due(uint64_t users, uint64_t qps, uint64_t user, uint64_t t);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_SCHED_H */
