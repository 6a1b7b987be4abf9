/* The user registry: which SET holds the connection of each online user, so any thread can route
 * a message to a user by id. */
#ifndef HONGBAO_REGISTRY_H
#define HONGBAO_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a user is: the SET index and the login generation (unique per login, so a stale close
 * can be told from the current connection). */
typedef struct hb_registry_entry {
    uint32_t set;
    uint64_t gen;
} hb_registry_entry_t;

/* A hash map user_id -> entry split into shards, each an id map (hongbao/idmap.h) behind its own
 * mutex, so threads touching different users rarely meet. All functions are thread-safe.
 * Caller-owned struct; tables allocated by init, grown on insert, freed by close. */
typedef struct hb_registry {
    /* public */
    void *data;
    /* read-only */
    unsigned nshards; /* a power of two */
    /* private */
    struct hb_registry_shard *shards;
} hb_registry_t;

/* Set up nshards shards (rounded up to a power of two, at most 4096), each sized for
 * expected_users / nshards users before it grows (expected_users may be 0). A user's shard comes
 * from a mixing hash of the id (hb_idmap_hash), so sequential ids spread evenly. Returns 0,
 * UV_EINVAL (r NULL, nshards 0 or above 4096), UV_ENOMEM (nothing is left allocated). */
HB_EXTERN int hb_registry_init(hb_registry_t *r, unsigned nshards, size_t expected_users);

/* Free every table. No other call may run concurrently or afterwards (until the next init).
 * Closing a closed registry does nothing. */
HB_EXTERN void hb_registry_close(hb_registry_t *r);

/* Record that user is at e, replacing any earlier entry. When there was one, copies it into *old
 * (if old is not NULL) and returns 1; returns 0 when the user was not registered; UV_ENOMEM when
 * the table could not grow (nothing changed); UV_EINVAL when r is NULL or closed. A shard's
 * table doubles (under its lock) when it would pass 70% full; it never shrinks. */
HB_EXTERN int hb_registry_put(hb_registry_t *r, uint32_t user, hb_registry_entry_t e,
                              hb_registry_entry_t *old);

/* Look user up. Returns 0 and fills *out, or UV_ENOENT, or UV_EINVAL (r NULL or closed, out
 * NULL). */
HB_EXTERN int hb_registry_get(hb_registry_t *r, uint32_t user, hb_registry_entry_t *out);

/* Remove user's entry only if its generation is gen (a connection closing removes itself, never a
 * newer login of the same user). Returns 0, or UV_ENOENT when absent or of another generation
 * (the entry stays), or UV_EINVAL (r NULL or closed). */
HB_EXTERN int hb_registry_remove(hb_registry_t *r, uint32_t user, uint64_t gen);

/* Users registered now (a snapshot: shards are counted one after another). 0 for NULL or a closed
 * registry. */
HB_EXTERN size_t hb_registry_count(hb_registry_t *r);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_REGISTRY_H */
