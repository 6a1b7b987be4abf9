/* The send-envelope book: the send-envelopes of their lifetime and who has claimed them, enforcing
 * that only a listed recipient claims, each at most once, that a repeated claim learns the share
 * already granted, and that the shares add up to the total. The one claim rule: the live server,
 * the journal's replay and the audit all judge claims through it. */
#ifndef HONGBAO_BOOK_H
#define HONGBAO_BOOK_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/idmap.h"
#include "hongbao/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most recipients one send-envelope may have (its notice then travels as HB_CMD_NOTICE_EX;
 * with exactly HB_NOTICE_RECIPIENTS, 3, as the reference's notice). */
#define HB_SEND_MAX_RECIPIENTS HB_NOTICE_EX_MAX

/* A send-envelope: its total split in advance into one share per recipient (recipient i of the
 * first `count` may claim shares[i]). claimed has bit i set once recipient i has claimed. */
typedef struct hb_sendenv {
    uint32_t id;
    uint32_t total;
    uint32_t recipients[HB_SEND_MAX_RECIPIENTS];
    uint32_t shares[HB_SEND_MAX_RECIPIENTS];
    uint32_t claimed_sum;
    uint8_t claimed;
    uint8_t count;      /* recipients: 1..HB_SEND_MAX_RECIPIENTS */
    uint64_t created_s; /* Unix second of creation, for expiry */
} hb_sendenv_t;

/* hb_book_claim's result for a repeated claim: the user was granted its share before; *amount is
 * that share (a positive value, so it is never mistaken for an error code). */
#define HB_BOOK_REPEAT 1

/* The envelopes by id, kept inline in an id map (hongbao/idmap.h). Not thread-safe: one book is
 * owned by one thread (the runtime routes every claim of an envelope to the SET owning its id).
 * Caller-owned struct; the table is allocated by init, grown by add, freed by close. */
typedef struct hb_book {
    /* public */
    void *data;
    /* read-only */
    size_t count;         /* envelopes held */
    uint64_t granted;     /* claims granted so far */
    uint64_t granted_sum; /* amount granted so far */
    /* private */
    hb_idmap_t envelopes; /* id -> hb_sendenv_t */
} hb_book_t;

/* Set up a book sized to hold expected envelopes before it grows (0 is fine: the table starts
 * small and grows as needed). The caller owns *b; data is left as it was. Returns 0 or HB_ENOMEM;
 * on error the book is empty and holds no memory (hb_book_close is harmless on it). */
HB_EXTERN int hb_book_init(hb_book_t *b, size_t expected);

/* Free the table. The book is then empty; only hb_book_init may be called on it again. Calling
 * it twice is harmless. */
HB_EXTERN void hb_book_close(hb_book_t *b);

/* Copy *e into the book (its claimed state as given, normally 0; every share claimed is allowed: a
 * fully claimed envelope stays in the book until it expires, so repeats are answered). Returns 0;
 * HB_EEXIST for an id already held; HB_EINVAL when e is NULL, the recipients are not distinct, a
 * share is 0, the shares do not add up to total, or the claimed state is inconsistent (a bit above
 * the three recipients, or claimed_sum not the sum of the claimed shares); HB_ENOMEM
 * (nothing changed). Any user id, 0 included, may be a recipient. The only call that allocates:
 * it may grow the table, which moves every envelope and so invalidates pointers from
 * hb_book_find. */
HB_EXTERN int hb_book_add(hb_book_t *b, const hb_sendenv_t *e);

/* Claim user's share of envelope id. A first claim returns 0, stores the share in *amount, and
 * adds one to granted and the share to granted_sum. A repeated claim by a recipient who was
 * granted before returns HB_BOOK_REPEAT with the same share in *amount and changes nothing, so a
 * claimant whose reply was lost learns its share by asking again. Errors (nothing granted,
 * nothing changed, *amount set to 0): HB_ENOENVELOPE (unknown or expired), HB_ENOTRECIPIENT.
 * The envelope stays in the book when its last share is claimed (until hb_book_expire or
 * hb_book_remove). amount may be NULL. Never allocates. User 0 is an ordinary user id here:
 * taking the claimant from the connection's login is the caller's job. */
HB_EXTERN int hb_book_claim(hb_book_t *b, uint32_t id, uint32_t user, uint32_t *amount);

/* Undo user's grant of envelope id (a grant that could not be made durable): clears the claimed
 * bit, takes the share off claimed_sum, granted and granted_sum. Returns 0; HB_ENOENVELOPE;
 * HB_ENOTRECIPIENT; HB_EINVAL (the user holds no grant of it). Never allocates. */
HB_EXTERN int hb_book_unclaim(hb_book_t *b, uint32_t id, uint32_t user);

/* Why e may not enter a book, as a static string ("a share is 0", "recipients are not distinct",
 * "shares do not add up to the total", "claimed bits beyond the recipients", "claimed_sum is not
 * the sum of the claimed shares", "no envelope" for NULL), or NULL when it may: the one
 * validation rule hb_book_add applies (and the journal's replay and audit report). */
HB_EXTERN const char *hb_sendenv_check(const hb_sendenv_t *e);

/* Whether every share of e has been claimed. */
HB_EXTERN int hb_sendenv_fully_claimed(const hb_sendenv_t *e);

/* user's share of e in *share (if not NULL): returns 1 when it has been claimed, 0 when not yet,
 * HB_ENOTRECIPIENT when user is none of e's recipients. */
HB_EXTERN int hb_sendenv_share_of(const hb_sendenv_t *e, uint32_t user, uint32_t *share);

/* Remove envelope id (one that could not be made durable), copying it into *out if not NULL.
 * Returns 0 or HB_ENOENVELOPE. Never allocates. */
HB_EXTERN int hb_book_remove(hb_book_t *b, uint32_t id, hb_sendenv_t *out);

/* The envelope with this id, or NULL. The pointer is valid until the next add, remove or expire. */
HB_EXTERN const hb_sendenv_t *hb_book_find(const hb_book_t *b, uint32_t id);

/* Remove every envelope created before second before_s (created_s < before_s), fully claimed or
 * not, calling cb (if not NULL) with each before it goes (to account for unclaimed amounts:
 * e->total - e->claimed_sum).
 * cb must not call into this book. Scans the whole table; never allocates. Returns how many were
 * removed. */
HB_EXTERN size_t hb_book_expire(hb_book_t *b, uint64_t before_s,
                                void (*cb)(void *arg, const hb_sendenv_t *e), void *arg);

/* Call cb(arg, e) once for every envelope in the book, in no particular order. cb must not change
 * the book (no add, claim, unclaim, remove or expire); e is valid during the call only. Never
 * allocates. */
HB_EXTERN void hb_book_foreach(const hb_book_t *b, void (*cb)(void *arg, const hb_sendenv_t *e),
                               void *arg);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_BOOK_H */
