/* The id map: the library's one hash map, from a u32 id to a fixed-size value kept inline (as
 * nng's idhash). The book keeps its envelopes in one, the registry one per shard, a SET its
 * users' connections. Part of the core: no libuv, no locks. */
#ifndef HONGBAO_IDMAP_H
#define HONGBAO_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest value hb_idmap_init accepts, in bytes: keep anything bigger elsewhere and store a
 * pointer to it. */
#define HB_IDMAP_VALUE_MAX 256

/* An open-addressing hash map u32 key -> value of value_size bytes (fixed at init), stored in the
 * table itself: linear probing in a power-of-two table that doubles when an insert would fill
 * more than 7/10 of it and never shrinks; removal shifts the entries after the hole back
 * (no tombstones), so churn never grows the table. Keys are hashed by Fibonacci hashing, which
 * spreads ids in arithmetic progression (sequential, or every nsets-th as a SET sees them) almost
 * evenly, so a find mostly looks at one slot; when it places keys further from their homes than
 * random hashing would (a stride it spreads badly, or keys with no such pattern), the map switches
 * to the mixing hash hb_idmap_hash, which spreads any keys as random ones would, until it next
 * grows and gives Fibonacci hashing another chance. Every u32 is a valid key, 0 and UINT32_MAX
 * included.
 *
 * Values are aligned to 8 bytes (enough for integers, pointers and doubles). A value pointer from
 * find, insert or next stays valid until the next insert or removal (remove, remove_found,
 * remove_if) of any key, or close: each may move every entry.
 *
 * Not thread-safe: one owner at a time (the registry puts each of its maps behind a mutex).
 * Caller-owned struct: init allocates the table, insert may grow it, close frees it. */
typedef struct hb_idmap {
    /* read-only */
    size_t count;      /* keys held */
    size_t capacity;   /* slots: a power of two, 0 after close; count <= 7/10 of it */
    size_t value_size; /* bytes of each value, as given to init */
    /* private */
    unsigned char *slots; /* capacity slots of stride bytes: a header (key, in use), the value */
    size_t stride;
    unsigned shift; /* 64 - log2(capacity): a key's home slot is its hash >> shift */
    unsigned mixed; /* 0: Fibonacci hashing; 1: the mixing hash, until the next growth */
    size_t drift;   /* how far Fibonacci hashing places keys past their homes, lately */
} hb_idmap_t;

/* Set up an empty map of values of value_size bytes (0 to HB_IDMAP_VALUE_MAX; 0 makes a set of
 * keys), sized so that expected keys fit before it grows (0 is fine: it starts with 8 slots).
 * Returns 0; HB_EINVAL (m NULL, value_size too large); HB_ENOMEM (no table that size could be
 * allocated). On error *m holds no memory and hb_idmap_close is harmless on it. */
HB_EXTERN int hb_idmap_init(hb_idmap_t *m, size_t value_size, size_t expected);

/* Free the table. The map is then empty with capacity 0: finds fail, and an insert allocates a
 * table again. Closing twice is harmless. */
HB_EXTERN void hb_idmap_close(hb_idmap_t *m);

/* The value of key, or NULL when the map does not hold it. The value may be changed through the
 * pointer (which is why a const map gives a non-const pointer, as strchr does). Never
 * allocates. */
HB_EXTERN void *hb_idmap_find(const hb_idmap_t *m, uint32_t key);

/* Find key, adding it when absent; *value (when value is not NULL) then points at its value.
 * Returns 0 when key was added (its value all zero bytes, for the caller to fill in), 1 when the
 * map held it already (its value as it was; nothing changed), HB_ENOMEM when it was absent and the
 * table could not grow (nothing changed, *value NULL); HB_EINVAL on a map whose init failed. The
 * only call that allocates: adding a key may grow the table, which moves every entry. */
HB_EXTERN int hb_idmap_insert(hb_idmap_t *m, uint32_t key, void **value);

/* Remove key, copying its value into *out first when out is not NULL. Returns 0, or HB_ENOENT
 * (out untouched). Never allocates; may move other entries. */
HB_EXTERN int hb_idmap_remove(hb_idmap_t *m, uint32_t key, void *out);

/* Remove the entry whose value pointer find, insert or next gave (and is still valid): saves a
 * second lookup when the caller decides by looking at the value. Never allocates. */
HB_EXTERN void hb_idmap_remove_found(hb_idmap_t *m, void *value);

/* Iterate: start with *cursor = 0; each call returns the next entry's value (and stores its key
 * in *key when key is not NULL), or NULL when every entry has been seen. Order is unspecified.
 * The map must not be changed (insert, remove) during an iteration; values may be. */
HB_EXTERN void *hb_idmap_next(const hb_idmap_t *m, size_t *cursor, uint32_t *key);

/* Call pred(arg, key, value) once for every entry, removing those for which it returns nonzero.
 * Returns how many were removed. pred must not call into the map; it may change the value (of an
 * entry it keeps). Never allocates. */
HB_EXTERN size_t hb_idmap_remove_if(hb_idmap_t *m,
                                    int (*pred)(void *arg, uint32_t key, void *value), void *arg);

/* The mixing hash (splitmix64's finaliser: every bit of the key moves every bit of the hash, so
 * keys of any pattern spread as random ones would). A map takes a slot from the top bits of its
 * hash: a caller that splits keys over several maps (the registry's shards) should choose the
 * map from the low bits of this one. */
HB_EXTERN uint64_t hb_idmap_hash(uint32_t key);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_IDMAP_H */
