/* The ledger: a durable journal of every send-envelope created and every claim granted, appended
 * before the claim reply leaves the server, replayed at start-up, compacted as it grows, and
 * audited offline (hb-audit). A dedicated writer thread group-commits: many records, one write()
 * and (per the fsync policy) one fdatasync(). docs/ledger.md has the guarantees of each policy. */
#ifndef HONGBAO_LEDGER_H
#define HONGBAO_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/book.h"
#include "hongbao/envelope.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- On-disk format ----
 *
 * All integers are big-endian, as on the wire.
 * The journal is the file "journal" in the ledger's directory. At offset 0 a 12-byte header:
 *   "HBLEDGER" (8 bytes), u32 version: HB_LEDGER_VERSION (2) is written; 1 is still read.
 * Then records, one after the other, each framed as
 *   u32 payload length, u32 CRC32C of the payload (Castagnoli), payload.
 * The payload starts with a u8 type; its length is fixed by the type:
 *   1 ENVELOPE (41)  id, total, recipient[3], share[3] (u32 each), created_s (u64)
 *   2 CLAIM    (13)  envelope_id, user, amount (u32 each)
 *   3 EXPIRE    (5)  envelope_id (u32)
 *   4 STATE    (46)  the ENVELOPE fields, then claimed (u8 bitmask), claimed_sum (u32)
 *   5 SNAPSHOT (57)  max_envelope_id, outstanding (u32 each), then the lifetime totals envelopes,
 *                    claims, expired, issued, claimed, expired_amount (u64 each)
 *   6 RESERVE   (6)  kind (u8: 1 shake, 2 send, as hb_envelope_kind_t), last (u32): envelope ids
 *                    of that kind up to and including last may have been handed out (version 2)
 * Envelopes stay in the books, fully claimed or not, until an EXPIRE retires them (version 2: an
 * EXPIRE may name a fully claimed envelope; version 1 dropped them when fully claimed). ENVELOPE
 * ids are send-envelope ids, each above every envelope id journaled before it. A compacted journal
 * starts with one SNAPSHOT record followed by `outstanding` records: one STATE per envelope in the
 * books (fully claimed ones included), then one RESERVE per id space with a reservation. The
 * SNAPSHOT carries what compaction drops: the highest envelope id ever issued (so ids are never
 * reused) and the lifetime totals (so the books can still be balanced). A journal that ends
 * (cleanly or torn) before a SNAPSHOT's records are all there is corrupt: compaction writes them
 * at once and syncs them before the rename, so no crash can cut them. Any other length is
 * impossible, and a record whose CRC matches but whose type or length does not (in version 1:
 * RESERVE) is corrupt. */
#define HB_LEDGER_MAGIC       "HBLEDGER"
#define HB_LEDGER_VERSION     2u
#define HB_LEDGER_VERSION_MIN 1u /* the oldest version read (and upgraded when opened) */
#define HB_LEDGER_HEADER_SIZE 12u
#define HB_LEDGER_FRAME_SIZE  8u  /* length + CRC in front of every payload */
#define HB_LEDGER_MAX_PAYLOAD 57u /* the longest payload (SNAPSHOT) */
#define HB_LEDGER_MAX_RECORD  (HB_LEDGER_FRAME_SIZE + HB_LEDGER_MAX_PAYLOAD)
/* The files in the ledger's directory: the journal; compaction's scratch file, renamed over it;
 * the lock file, flock()ed while a ledger has the directory open. */
#define HB_LEDGER_JOURNAL_NAME              "journal"
#define HB_LEDGER_COMPACT_NAME              "journal.new"
#define HB_LEDGER_LOCK_NAME                 "LOCK"
#define HB_LEDGER_DEFAULT_COMPACT_MIN_BYTES ((uint64_t)1 << 20)

/* hb_ledger_scan's result for a journal that ends in a torn record (a positive value, so it can
 * never be mistaken for an error code). */
#define HB_LEDGER_TORN 1

typedef enum {
    HB_LEDGER_ENVELOPE = 1,
    HB_LEDGER_CLAIM = 2,
    HB_LEDGER_EXPIRE = 3,
    HB_LEDGER_STATE = 4,
    HB_LEDGER_SNAPSHOT = 5,
    HB_LEDGER_RESERVE = 6
} hb_ledger_type_t;

/* Totals over the whole life of a journal, carried across compaction by SNAPSHOT records.
 * issued == claimed + expired_amount + the unclaimed rest of the envelopes still in the books.
 * An EXPIRE retires any envelope, fully claimed or not; only one with an unclaimed rest (not fully
 * claimed) counts in expired, and its rest in expired_amount: a fully claimed one changes no
 * total. */
typedef struct hb_ledger_totals {
    uint64_t envelopes;      /* send-envelopes created */
    uint64_t claims;         /* claims granted */
    uint64_t expired;        /* envelopes expired before they were fully claimed */
    uint64_t issued;         /* sum of the envelopes' totals */
    uint64_t claimed;        /* sum of the amounts granted */
    uint64_t expired_amount; /* the unclaimed amounts of the expired envelopes */
} hb_ledger_totals_t;

/* One decoded record. Only the fields of its type are meaningful; the others are zero. */
typedef struct hb_ledger_record {
    hb_ledger_type_t type;
    uint32_t envelope_id;      /* ENVELOPE, CLAIM, EXPIRE, STATE */
    uint32_t user;             /* CLAIM: the claimant */
    uint32_t amount;           /* CLAIM: the amount granted */
    hb_sendenv_t envelope;     /* ENVELOPE (claimed and claimed_sum 0) and STATE */
    uint32_t max_envelope_id;  /* SNAPSHOT */
    uint32_t outstanding;      /* SNAPSHOT: how many records of it follow (STATE, then RESERVE) */
    hb_ledger_totals_t totals; /* SNAPSHOT */
    uint8_t kind;              /* RESERVE: the id space (hb_envelope_kind_t), as journaled */
    uint32_t last;             /* RESERVE: the highest id of that kind that may be handed out */
    size_t size;               /* bytes of the framed record, frame included */
} hb_ledger_record_t;

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final xor ~0) of len
 * bytes: hb_ledger_crc32c("123456789", 9) == 0xE3069283. Table-driven, no state. */
HB_EXTERN uint32_t hb_ledger_crc32c(const void *data, size_t len);

/* Encode r (type and that type's fields, as given: no check of their sense; size is ignored) as a
 * framed record of the current version into buf of len bytes. Returns the bytes written
 * (HB_LEDGER_FRAME_SIZE + the type's payload length), UV_EINVAL for an unknown type, UV_ENOBUFS
 * when len is too small. For tools, tests and seed generators. */
HB_EXTERN int hb_ledger_encode(const hb_ledger_record_t *r, uint8_t *buf, size_t len);

/* Scan a whole journal image (header included, version 1 or 2) of len bytes, calling record_cb
 * (if not NULL) for every valid record in order with its byte offset in buf. Only the framing is
 * checked here: not the books, nor whether a snapshot is whole (hb_ledger_open and
 * hb_ledger_audit_buf check those). Never allocates, never reads past len. Returns:
 *   0               buf is a header followed by whole valid records (or is empty);
 *   HB_LEDGER_TORN  buf ends in a torn record: a header or frame cut short, a frame whose length
 *                   runs past len, a CRC mismatch in the record that ends exactly at len, or an
 *                   impossible length after which no valid record follows (a zero-filled tail);
 *   HB_ECORRUPT     a bad record before the end: a CRC mismatch or an impossible length with a
 *                   valid record after it, a record whose CRC matches but whose type or length
 *                   does not, or a header that is not "HBLEDGER";
 *   UV_ENOTSUP      the header names another version;
 *   any non-zero value record_cb returned, which stops the scan (use negative values).
 * *good_end (if not NULL) gets the length of the valid prefix: the end of the last good record
 * (for a stop by record_cb, the end of the record it stopped at), so buf[0..*good_end) scans to
 * 0 with the same records; for torn and corrupt it is the offset of the bad record (0 for a bad
 * header). On HB_LEDGER_TORN, HB_ECORRUPT and UV_ENOTSUP the reason, naming the offset, is left
 * in hb_ledger_last_error(). UV_EINVAL for a NULL buf with len > 0. */
HB_EXTERN int hb_ledger_scan(const uint8_t *buf, size_t len,
                             int (*record_cb)(void *arg, const hb_ledger_record_t *r,
                                              size_t offset),
                             void *arg, size_t *good_end);

/* A message describing the last failure of hb_ledger_open, hb_ledger_scan or hb_ledger_audit on
 * the calling thread (thread-local, static, never NULL; "" when none). For corruption it names
 * the file and the byte offset. */
HB_EXTERN const char *hb_ledger_last_error(void);

/* ---- The journal writer ---- */

/* When the writer calls fdatasync() (Redis's appendfsync):
 *   ALWAYS    after every group commit, before on_durable (the default: zero);
 *   EVERYSEC  at most once a second, from a timed wait, whenever something written is unsynced;
 *   NO        never while open (the OS writes back when it likes); once at close. */
typedef enum { HB_FSYNC_ALWAYS = 0, HB_FSYNC_EVERYSEC, HB_FSYNC_NO } hb_fsync_t;

/* Parse "always", "everysec" or "no" into *out. Returns 0, or UV_EINVAL (*out unchanged). */
HB_EXTERN int hb_fsync_parse(const char *text, hb_fsync_t *out);

/* The policy's name as hb_fsync_parse reads it ("always"...), static; "unknown" otherwise. */
HB_EXTERN const char *hb_fsync_name(hb_fsync_t policy);

/* Options. Zero-initialise and set dir; a zero field takes its default. Copied by open (dir
 * too). The callbacks run on the thread of hb_ledger_open during open and on the writer thread
 * afterwards; they must not call hb_ledger_close. */
typedef struct hb_ledger_options {
    /* The journal's directory, created (with missing parents) if missing. Required. */
    const char *dir;
    /* The fsync policy; 0 is HB_FSYNC_ALWAYS. */
    hb_fsync_t fsync;
    /* Compaction runs when the journal is larger than this and more than twice the size of a
     * snapshot of what is outstanding. 0 means 1 MiB; UINT64_MAX never compacts. */
    uint64_t compact_min_bytes;
    /* Log lines (no trailing newline, valid during the call only): a torn tail truncated at
     * open, records that make no sense in the books (skipped), compaction, the first I/O error.
     * NULL: nothing is logged. */
    void (*log)(void *arg, const char *line);
    void *log_arg;
    /* After each group commit: seq is the highest sequence number now durable per the policy
     * (ALWAYS: after fdatasync; EVERYSEC and NO: after write()). Called with increasing seq, never
     * under the ledger's lock: it may append or read stats. NULL: not called. */
    void (*on_durable)(void *arg, uint64_t seq);
    void *durable_arg;
    /* Called once, on the writer thread, when the writer's sticky I/O error happens (a write() or
     * fdatasync() of the journal failed, or the directory fsync() after a compaction's rename: err
     * is its UV_E* code; a compaction failing before its rename is only logged), after it is
     * logged and after every waiter has been woken with it. From then on every append and wait
     * fails with err, and no record appended after the last seq passed to on_durable will ever
     * become durable: the server rolls those claims back (hb_book_unclaim) and answers "try again"
     * (HB_ESTORE). Not called under the ledger's lock: it may read stats. NULL: not called (the
     * error is still logged and returned). */
    void (*on_error)(void *arg, int err);
    void *error_arg;
} hb_ledger_options_t;

/* Counters. The writer updates them under the ledger's lock: read them with hb_ledger_stats
 * while the ledger is open, or straight from l->stats once hb_ledger_close has returned. */
typedef struct hb_ledger_stats {
    uint64_t appended;    /* records appended since open: the last sequence number handed out */
    uint64_t durable;     /* the highest sequence number durable per the policy */
    uint64_t synced;      /* the highest sequence number covered by a completed fdatasync() */
    uint64_t records;     /* records in the journal file (replayed, written, or the snapshot) */
    uint64_t bytes;       /* size of the journal file */
    uint64_t writes;      /* write() calls appending records (group commits, plus any retries) */
    uint64_t fsyncs;      /* fdatasync() calls for appended records (compaction's not counted) */
    uint64_t compactions; /* compactions completed */
    uint64_t replayed;    /* records replayed by open */
    uint64_t outstanding; /* envelopes neither fully claimed nor expired, as last written */
    uint64_t held;        /* envelopes in the books (not expired, fully claimed or not) */
    uint64_t anomalies;   /* records that made no sense in the books: logged and skipped */
} hb_ledger_stats_t;

/* The ledger. Caller-owned; hb_ledger_open starts it, hb_ledger_close ends it. */
typedef struct hb_ledger {
    /* public */
    void *data;
    /* read-only */
    uint32_t max_envelope_id; /* the highest send-envelope id ever journaled, as replayed by open */
    /* The last envelope id of each kind reserved (RESERVE records), as replayed by open; 0: none.
     * hb_ledger_append_reserve does not change them. */
    uint32_t reserved_shake;
    uint32_t reserved_send;
    hb_ledger_stats_t stats; /* see hb_ledger_stats_t for how to read it */
    /* private */
    struct hb_ledger_state *state_;
} hb_ledger_t;

/* Open (creating it if need be) the journal in o->dir and replay it. A torn last record is
 * truncated away, with one log line naming the offset; any other bad record fails the open with
 * HB_ECORRUPT (UV_ENOTSUP for a format version other than 1 and 2) and hb_ledger_last_error()
 * naming the file and byte offset: nothing is ever skipped silently, and the file is then left
 * untouched. A journal cut (cleanly or torn) inside a snapshot (its SNAPSHOT record, or before all
 * the records it announces) is corrupt too, not torn: no crash can cut a snapshot. A leftover
 * journal.new (a compaction cut short) is removed: the journal is authoritative. A version 1
 * journal is replayed as such, then its header is rewritten to version 2 and synced (logged)
 * before anything is appended. Then calls outstanding(arg, e) (if not NULL) for each envelope in
 * the books: every one not expired, fully claimed ones included (so that a repeated claim after a
 * restart is answered with its share), e pointing at its replayed state (claimed bitmask and
 * claimed_sum; valid during the call only; outstanding must not call into the ledger), sets
 * l->max_envelope_id, l->reserved_shake and l->reserved_send (0 if none) and l->stats, leaves
 * l->data alone, and starts the writer thread. Returns 0; UV_EINVAL (NULL l, o or o->dir, an
 * unknown policy); UV_EBUSY (another ledger holds the directory's LOCK); HB_ECORRUPT;
 * UV_ENOTSUP; UV_ENOMEM; or the failing system call's UV_E* code. On error nothing is left open
 * (hb_ledger_close is harmless) and outstanding may have been called for none or some envelopes. */
HB_EXTERN int hb_ledger_open(hb_ledger_t *l, const hb_ledger_options_t *o,
                             void (*outstanding)(void *arg, const hb_sendenv_t *e), void *arg);

/* Append the creation of e (its claimed and claimed_sum must be 0) and store its sequence
 * number (1, 2, ... from open) in *seq (if not NULL). Thread-safe; copies the record into the
 * writer's queue and returns without waiting for the disk (no allocation once the queue has
 * grown to its working size; the queue has no bound, so a stalled disk makes it grow). Envelope
 * ids are never reused: e->id must be a send-envelope id (hb_envelope_id_kind) above every
 * envelope id journaled before (replayed, or appended since open), so the server creates them in
 * increasing order (from one thread, or appending in the order it numbers them). Returns 0;
 * UV_EINVAL (NULL l or e, a ledger not open or closing, an id not a send id or not above the last,
 * shares that are 0 or do not add up to total, recipients not distinct, a claimed state);
 * UV_ENOMEM; or the writer's sticky I/O error: once a write, an fdatasync or the directory sync of
 * a compaction fails, every later append fails with it (the server must stop acknowledging claims;
 * see on_error). */
HB_EXTERN int hb_ledger_append_envelope(hb_ledger_t *l, const hb_sendenv_t *e, uint64_t *seq);

/* Append a claim of amount by user on envelope_id; as hb_ledger_append_envelope otherwise. The
 * record is journaled as given: a claim that makes no sense (unknown envelope, not a recipient,
 * twice, an amount other than the share) is logged and skipped by replay and reported by audit. */
HB_EXTERN int hb_ledger_append_claim(hb_ledger_t *l, uint32_t envelope_id, uint32_t user,
                                     uint32_t amount, uint64_t *seq);

/* Append the expiry of envelope_id, fully claimed or not: it leaves the books, its unclaimed rest
 * (if any) counted as expired; as hb_ledger_append_envelope otherwise. */
HB_EXTERN int hb_ledger_append_expire(hb_ledger_t *l, uint32_t envelope_id, uint64_t *seq);

/* Append a reservation: envelope ids of kind up to and including last may be handed out from now
 * on (journal it, and wait until it is durable, before handing out an id above the last durable
 * reservation: after a restart the ids continue above it, so none is ever reused, shake ids
 * included). As hb_ledger_append_envelope otherwise. Returns UV_EINVAL also for an unknown kind,
 * a last that is not an id of that kind (hb_envelope_id_kind), or a last not above the previous
 * reservation of that kind (replayed, or appended since open). */
HB_EXTERN int hb_ledger_append_reserve(hb_ledger_t *l, hb_envelope_kind_t kind, uint32_t last,
                                       uint64_t *seq);

/* Copy the counters into *out under the ledger's lock (any thread). */
HB_EXTERN void hb_ledger_stats(hb_ledger_t *l, hb_ledger_stats_t *out);

/* Block until record seq is durable per the policy (stats.durable >= seq), or synced by an
 * fdatasync (stats.synced >= seq), or timeout_ms passed. Returns 0; UV_ETIMEDOUT; the sticky I/O
 * error; UV_EINVAL (ledger not open, or seq above stats.appended). Any thread but the writer's
 * (so not from on_durable). Under HB_FSYNC_NO nothing is synced before close. */
HB_EXTERN int hb_ledger_wait_durable(hb_ledger_t *l, uint64_t seq, uint64_t timeout_ms);
HB_EXTERN int hb_ledger_wait_synced(hb_ledger_t *l, uint64_t seq, uint64_t timeout_ms);

/* Write and fdatasync everything queued (whatever the policy; not after a sticky error), stop and
 * join the writer, close the files and free the ledger's memory. l->stats then holds the final
 * counters. No other call on l may run concurrently; appends after it fail with UV_EINVAL.
 * Harmless on a ledger not open (never opened needs l->state_ NULL: zero the struct). */
HB_EXTERN void hb_ledger_close(hb_ledger_t *l);

/* ---- Audit ---- */

/* What an audit found. */
typedef struct hb_ledger_audit {
    uint64_t records;            /* valid records read */
    hb_ledger_totals_t totals;   /* lifetime totals (a snapshot's plus what follows it) */
    uint64_t outstanding;        /* envelopes neither fully claimed nor expired at the end */
    uint64_t outstanding_amount; /* their unclaimed rest */
    uint64_t held;               /* envelopes not expired at the end, fully claimed or not */
    uint32_t max_envelope_id;    /* the highest send-envelope id issued */
    uint32_t reserved_shake;     /* the last shake envelope id reserved (0: none) */
    uint32_t reserved_send;      /* the last send-envelope id reserved (0: none) */
    uint32_t version;            /* the journal's format version (0: no whole header) */
    uint64_t violations;         /* violations reported */
    int torn;           /* 1: the journal ends in a torn record (a warning, not a violation) */
    size_t torn_offset; /* where, when torn */
    size_t size;        /* bytes audited */
} hb_ledger_audit_t;

/* Audit the journal in dir, read-only (never truncates, takes no lock: a live journal may be
 * audited, its last record perhaps seen torn). Judges every record with the books' one claim rule
 * (hb_book), as replay does, and checks that every claim is of an envelope in the books (created,
 * or in a snapshot), not expired, by a listed recipient, once per (envelope, user) (a share granted
 * twice is a violation), for exactly that recipient's share, never taking more than an envelope's
 * total; that envelopes are well formed (hb_sendenv_check), have send-envelope ids, each above
 * every id issued before (ids are never reused); that expiry is only of an envelope in the books;
 * that reservations of each id space only go forward; that a snapshot is at the start, is followed
 * by all the records it announces (a journal cut inside them is a violation) and balances; and at
 * the end that issued == claimed + expired + outstanding. Each violation is passed to violation
 * (if not NULL) with a message and the offset of the record concerned; a corrupt record is one
 * (the records after it are not checked). Fills *totals (if not NULL). Returns the number of
 * violations (0: the books balance; capped at INT32_MAX), or a negative error with
 * hb_ledger_last_error() set: UV_ENOENT and other I/O errors, UV_ENOMEM, HB_ECORRUPT (not a
 * journal: bad header), UV_ENOTSUP (another version). */
HB_EXTERN int hb_ledger_audit(const char *dir, hb_ledger_audit_t *totals,
                              void (*violation)(void *arg, const char *msg, size_t offset),
                              void *arg);

/* hb_ledger_audit on a journal image in memory (len bytes, header included); same checks and
 * results (no I/O errors). */
HB_EXTERN int hb_ledger_audit_buf(const uint8_t *buf, size_t len, hb_ledger_audit_t *totals,
                                  void (*violation)(void *arg, const char *msg, size_t offset),
                                  void *arg);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_LEDGER_H */
