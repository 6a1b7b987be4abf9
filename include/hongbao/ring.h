/* Consistent hashing of users over a set of server instances: which instance a user goes to, and
 * where it goes next when that one is down. Pure arithmetic on the instances' keys (no sockets, no
 * allocation): part of the core. The load client routes its users with it (docs/client.md, "Many
 * servers"); any process that needs to know where a user is computes the same answer.
 *
 * The method is rendezvous (highest random weight) hashing, not a ring of points: each instance
 * gets a weight for each user, hb_ring_weight(key, user), and the user's order of instances is by
 * weight, highest first. Chosen over a ring with virtual nodes because, for the tens to hundreds
 * of instances a fleet has, it gives exactly what the fleet needs with nothing stored:
 * - a user's instance depends only on the user and the set of instances' keys (not their order in
 *   a list), so every process computes the same;
 * - adding an instance moves to it exactly the users for which it outweighs the rest (1/(K+1) of
 *   them on average, balanced to random sampling's precision, no virtual-node count to tune) and
 *   moves nobody else; removing one moves only its own users;
 * - a user's second choice is uniformly spread over the other instances, so when one instance
 *   dies its users divide evenly among the survivors instead of all landing on its neighbour.
 * The price is O(K) weights per lookup (K instances; a few nanoseconds each), which the client
 * pays at connect time only, never per request. The module's name keeps the usual word for a
 * consistent-hash router. */
#ifndef HONGBAO_RING_H
#define HONGBAO_RING_H

#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* No instance: hb_ring_pick and hb_ring_next of an empty set. */
#define HB_RING_NONE UINT32_MAX

/* An instance's key: a 64-bit hash (FNV-1a, then splitmix64's finaliser) of its name, the text up
 * to the NUL (NULL as ""). The name is whatever identifies the instance to every process; the load
 * client names a server by its address in canonical text, "IP:PORT" with the IP as inet_ntop
 * writes it and an IPv6 one in brackets ("127.0.0.1:7100", "[::1]:7100"). Stable: the same name
 * gives the same key in every process and every version of the library (a test pins values). */
HB_EXTERN uint64_t hb_ring_key(const char *name);

/* The weight of the instance of key `key` for user: splitmix64's finaliser of the key XOR the
 * user's own mix. Every user ranks the instances by it, highest first. */
HB_EXTERN uint64_t hb_ring_weight(uint64_t key, uint32_t user);

/* user's first choice among the n instances of keys[0..n-1]: the index of the highest weight (a
 * tie, which needs two equal 64-bit weights, goes to the larger key, then to the lower index).
 * O(n), no allocation; HB_RING_NONE when n is 0 or keys is NULL. Keys should be distinct (equal
 * keys are one instance listed twice: their order is by index). */
HB_EXTERN uint32_t hb_ring_pick(const uint64_t *keys, uint32_t n, uint32_t user);

/* The instance that follows instance `after` in user's order (the next lower weight): where the
 * user goes when `after` is down. After the last instance comes the first choice again, so a walk
 * from hb_ring_pick visits every instance once and then starts over. O(n), no allocation;
 * HB_RING_NONE when after >= n or keys is NULL. */
HB_EXTERN uint32_t hb_ring_next(const uint64_t *keys, uint32_t n, uint32_t user, uint32_t after);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_RING_H */
