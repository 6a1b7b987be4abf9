/* A small, fast, seedable pseudo-random generator (xoshiro256**), for envelope amounts and
 * recipient draws. Not for secrets. No global state: each user owns its generator. */
#ifndef HONGBAO_RAND_H
#define HONGBAO_RAND_H

#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caller-owned generator state; copy it to fork a stream. Not thread-safe: one per thread. */
typedef struct hb_rand {
    /* private */
    uint64_t s[4];
} hb_rand_t;

/* Seed the generator r (caller-owned, any prior content); the same seed always gives the same
 * sequence. Any seed is valid (the state is expanded with splitmix64, so 0 is fine). Cannot
 * fail. */
HB_EXTERN void hb_rand_seed(hb_rand_t *r, uint64_t seed);

/* The next 64 random bits of the xoshiro256** sequence; advances r. Cannot fail. */
HB_EXTERN uint64_t hb_rand_next(hb_rand_t *r);

/* A uniform integer in [0, bound), without modulo bias (rejection may consume more than one
 * value of the sequence); bound 0 gives 0 and consumes nothing. Cannot fail. */
HB_EXTERN uint64_t hb_rand_below(hb_rand_t *r, uint64_t bound);

/* A uniform integer in [lo, hi], both included; lo >= hi gives lo and consumes nothing. The full
 * range [0, UINT64_MAX] is allowed. Cannot fail. */
HB_EXTERN uint64_t hb_rand_range(hb_rand_t *r, uint64_t lo, uint64_t hi);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_RAND_H */
