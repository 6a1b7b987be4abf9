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

/* Seed the generator; the same seed always gives the same sequence. Any seed is valid (the
 * state is expanded with splitmix64, so 0 is fine). */
HB_EXTERN void hb_rand_seed(hb_rand_t *r, uint64_t seed);

/* The next 64 random bits. */
HB_EXTERN uint64_t hb_rand_next(hb_rand_t *r);

/* A uniform integer in [0, bound), without modulo bias; bound 0 gives 0. */
HB_EXTERN uint64_t hb_rand_below(hb_rand_t *r, uint64_t bound);

/* A uniform integer in [lo, hi], both included; lo > hi gives lo. */
HB_EXTERN uint64_t hb_rand_range(hb_rand_t *r, uint64_t lo, uint64_t hi);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_RAND_H */
