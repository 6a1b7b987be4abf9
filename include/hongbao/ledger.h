/* The ledger: the writer of the claim journal, in the runtime. Every send-envelope created and
 * every claim granted is appended before the claim reply leaves the server; the journal is replayed
 * at start-up and compacted as it grows. A dedicated writer thread group-commits: many records, one
 * write() and (per the fsync policy) one fdatasync(). The record format, the scanner and the
 * offline audit (hb-audit) are the core's hongbao/journal.h, included here. docs/ledger.md has the
 * guarantees of each policy. */
#ifndef HONGBAO_LEDGER_H
#define HONGBAO_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/book.h"
#include "hongbao/envelope.h"
#include "hongbao/journal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The files in the ledger's directory: the journal (HB_JOURNAL_FILE_NAME, hongbao/journal.h);
 * compaction's scratch file, renamed over it; the lock file, flock()ed while a ledger has the
 * directory open. */
#define HB_LEDGER_COMPACT_NAME              "journal.new"
#define HB_LEDGER_LOCK_NAME                 "LOCK"
#define HB_LEDGER_DEFAULT_COMPACT_MIN_BYTES ((uint64_t)1 << 20)

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
    hb_log_cb log;
    void *log_arg;
    /* After each group commit: seq is the highest sequence number now durable per the policy
     * (ALWAYS: after fdatasync; EVERYSEC and NO: after write()). Called with increasing seq, never
     * under the ledger's lock: it may append or read stats. NULL: not called. */
    void (*on_durable)(void *arg, uint64_t seq);
    void *durable_arg;
    /* Called once, on the writer thread, when the writer's sticky I/O error happens (a write() or
     * fdatasync() of the journal failed, or the directory fsync() after a compaction's rename: err
     * is its UV_E* code; a compaction failing before its rename is only logged), after it is
     * logged, written to the ledger's err and errstr, and after every waiter has been woken with
     * it. From then on every append and wait fails with err, and no record appended after the
     * last seq passed to on_durable will ever become durable: the server rolls those claims back
     * (hb_book_unclaim) and answers "try again" (HB_ESTORE). Not called under the ledger's lock:
     * it may read stats. NULL: not called (the error is still logged and returned). */
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
    /* The last error, and why (hiredis's err + errstr): 0 and "" after a successful open. Set by a
     * failing hb_ledger_open (every failure but a NULL l), with a message naming the file and, for
     * a bad record, its byte offset (e.g. ".../journal: offset 4153: corrupt record: CRC mismatch
     * ..."); and once, by the writer thread, when its sticky I/O error happens (e.g. "writing
     * .../journal failed at offset 4096: EFBIG (file too large)"), before any append or wait can
     * return that error and before on_error is called. So read them on the thread of an open that
     * failed, after an append or wait returned the sticky error, in on_error, or after close (which
     * leaves them alone); appends refused for their arguments (UV_EINVAL) or for memory
     * (UV_ENOMEM) do not set them. */
    int err;
    char errstr[HB_JOURNAL_ERRSTR_SIZE];
    /* private */
    struct hb_ledger_state *state;
} hb_ledger_t;

/* Open (creating it if need be) the journal in o->dir and replay it. A torn last record is
 * truncated away, with one log line naming the offset; any other bad record fails the open with
 * HB_ECORRUPT (UV_ENOTSUP for a format version other than 1 and 2) and l->errstr naming the file
 * and byte offset: nothing is ever skipped silently, and the file is then left
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
 * counters, l->err and l->errstr the sticky error if there was one (a failure of the final
 * fdatasync becomes it too). No other call on l may run concurrently; appends after it fail with
 * UV_EINVAL. Harmless on a ledger not open (never opened needs l->state NULL: zero the struct). */
HB_EXTERN void hb_ledger_close(hb_ledger_t *l);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_LEDGER_H */
