/* The claim journal in the core: its on-disk record format (CRC32C framing, encoder, decoder), the
 * scanner that tells a torn tail from corruption, and the offline audit of the books. No thread,
 * no event loop; the only I/O is hb_journal_audit reading one file. The writer that appends,
 * replays and compacts a journal is the runtime's hongbao/ledger.h. docs/ledger.md.
 *
 * Errors: functions return HB_E* codes. The scan and the audit leave the reason for a failure in a
 * struct the caller owns (err, and errstr naming the offset), never in hidden or thread-local
 * state: the one last-error shape of the library's handles (hb_ledger_t has the same two fields).
 */
#ifndef HONGBAO_JOURNAL_H
#define HONGBAO_JOURNAL_H

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
 *   "HBLEDGER" (8 bytes), u32 version: HB_JOURNAL_VERSION (3) is written; 1 and 2 are still read.
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
 *   7 ENVELOPE (18 + 8n) for an envelope of n recipients, n other than 3 (version 3): id, total
 *                    (u32 each), created_s (u64), n (u8), then n pairs recipient, share (u32 each);
 *                    decoded as an ENVELOPE record
 *   8 STATE    (23 + 8n) the same, then claimed (u8 bitmask), claimed_sum (u32) (version 3);
 *                    decoded as a STATE record
 * An envelope of exactly three recipients keeps types 1 and 4.
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
#define HB_JOURNAL_MAGIC       "HBLEDGER"
#define HB_JOURNAL_VERSION     3u
#define HB_JOURNAL_VERSION_MIN 1u /* the oldest version read (upgraded by hb_ledger_open) */
#define HB_JOURNAL_HEADER_SIZE 12u
#define HB_JOURNAL_FRAME_SIZE  8u  /* length + CRC in front of every payload */
#define HB_JOURNAL_MAX_PAYLOAD 87u /* the longest payload (type 8 with 8 recipients) */
#define HB_JOURNAL_MAX_RECORD  (HB_JOURNAL_FRAME_SIZE + HB_JOURNAL_MAX_PAYLOAD)
/* The journal's file name in a ledger's directory. */
#define HB_JOURNAL_FILE_NAME "journal"

/* hb_journal_scan's result for a journal that ends in a torn record (a positive value, so it can
 * never be mistaken for an error code). */
#define HB_JOURNAL_TORN 1

/* The size of every errstr: a message, NUL-terminated, truncated beyond. */
#define HB_JOURNAL_ERRSTR_SIZE 512

typedef enum {
    HB_JOURNAL_ENVELOPE = 1,
    HB_JOURNAL_CLAIM = 2,
    HB_JOURNAL_EXPIRE = 3,
    HB_JOURNAL_STATE = 4,
    HB_JOURNAL_SNAPSHOT = 5,
    HB_JOURNAL_RESERVE = 6
} hb_journal_type_t;

/* Totals over the whole life of a journal, carried across compaction by SNAPSHOT records.
 * issued == claimed + expired_amount + the unclaimed rest of the envelopes still in the books.
 * An EXPIRE retires any envelope, fully claimed or not; only one with an unclaimed rest (not fully
 * claimed) counts in expired, and its rest in expired_amount: a fully claimed one changes no
 * total. */
typedef struct hb_journal_totals {
    uint64_t envelopes;      /* send-envelopes created */
    uint64_t claims;         /* claims granted */
    uint64_t expired;        /* envelopes expired before they were fully claimed */
    uint64_t issued;         /* sum of the envelopes' totals */
    uint64_t claimed;        /* sum of the amounts granted */
    uint64_t expired_amount; /* the unclaimed amounts of the expired envelopes */
} hb_journal_totals_t;

/* One decoded record. Only the fields of its type are meaningful; the others are zero. */
typedef struct hb_journal_record {
    hb_journal_type_t type;
    uint32_t envelope_id;       /* ENVELOPE, CLAIM, EXPIRE, STATE */
    uint32_t user;              /* CLAIM: the claimant */
    uint32_t amount;            /* CLAIM: the amount granted */
    hb_sendenv_t envelope;      /* ENVELOPE (claimed and claimed_sum 0) and STATE */
    uint32_t max_envelope_id;   /* SNAPSHOT */
    uint32_t outstanding;       /* SNAPSHOT: how many records of it follow (STATE, then RESERVE) */
    hb_journal_totals_t totals; /* SNAPSHOT */
    uint8_t kind;               /* RESERVE: the id space (hb_envelope_kind_t), as journaled */
    uint32_t last;              /* RESERVE: the highest id of that kind that may be handed out */
    size_t size;                /* bytes of the framed record, frame included */
} hb_journal_record_t;

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final xor ~0) of len
 * bytes: hb_journal_crc32c("123456789", 9) == 0xE3069283. Table-driven, no state. */
HB_EXTERN uint32_t hb_journal_crc32c(const void *data, size_t len);

/* Write the header of a journal of the current version (HB_JOURNAL_HEADER_SIZE bytes) into buf of
 * len bytes. Returns HB_JOURNAL_HEADER_SIZE, HB_EINVAL for a NULL buf, HB_ENOBUFS when len is too
 * small. */
HB_EXTERN int hb_journal_encode_header(uint8_t *buf, size_t len);

/* Encode r (type and that type's fields, as given: no check of their sense; size is ignored) as a
 * framed record of the current version into buf of len bytes. Returns the bytes written
 * (HB_JOURNAL_FRAME_SIZE + the type's payload length), HB_EINVAL for an unknown type or a NULL
 * argument, HB_ENOBUFS when len is too small. */
HB_EXTERN int hb_journal_encode(const hb_journal_record_t *r, uint8_t *buf, size_t len);

/* Decode the framed record at the start of buf (len bytes) of a journal of format version
 * version into *r (r->size set). Returns the record's size (> 0); 0 when buf holds less than the
 * whole record (a frame cut short, or a possible length running past len: need more);
 * HB_ECORRUPT for a length no record type has in that version, a CRC mismatch, or a matching CRC
 * with a type that does not fit the length; HB_EINVAL for a NULL argument or a version not read.
 * Never reads past len, never allocates. Whether a bad record is a torn tail or corruption depends
 * on what follows it: hb_journal_scan tells. */
HB_EXTERN int hb_journal_decode(const uint8_t *buf, size_t len, uint32_t version,
                                hb_journal_record_t *r);

/* What hb_journal_scan found besides its result: caller-owned, filled by the scan. */
typedef struct hb_journal_scan {
    /* The length of the valid prefix: the end of the last good record (for a stop by record_cb,
     * the end of the record it stopped at), so buf[0..good_end) scans to 0 with the same records;
     * for torn and corrupt it is the offset of the bad record (0 for a bad header). */
    size_t good_end;
    /* The header's format version when the header is whole and names a version this library
     * reads; 0 otherwise. */
    uint32_t version;
    /* What the scan returned, and for HB_JOURNAL_TORN, HB_ECORRUPT and HB_ENOTSUP why, naming the
     * byte offset (e.g. "offset 4153: corrupt record: CRC mismatch ..."); "" otherwise. */
    int err;
    char errstr[HB_JOURNAL_ERRSTR_SIZE];
} hb_journal_scan_t;

/* Scan a whole journal image (header included, version 1 or 2) of len bytes, calling record_cb
 * (if not NULL) for every valid record in order with its byte offset in buf. Only the framing is
 * checked here: not the books, nor whether a snapshot is whole (hb_ledger_open and
 * hb_journal_audit_buf check those). Never allocates, never reads past len. Returns:
 *   0                buf is a header followed by whole valid records (or is empty);
 *   HB_JOURNAL_TORN  buf ends in a torn record: a header or frame cut short, a frame whose length
 *                    runs past len, a CRC mismatch in the record that ends exactly at len, or an
 *                    impossible length after which no valid record follows (a zero-filled tail);
 *   HB_ECORRUPT      a bad record before the end: a CRC mismatch or an impossible length with a
 *                    valid record after it, a record whose CRC matches but whose type or length
 *                    does not, or a header that is not "HBLEDGER";
 *   HB_ENOTSUP       the header names another version;
 *   any non-zero value record_cb returned, which stops the scan (use negative values).
 * HB_EINVAL for a NULL buf with len > 0. *out (if not NULL) gets the valid prefix, the version
 * and the reason. */
HB_EXTERN int hb_journal_scan(const uint8_t *buf, size_t len,
                              int (*record_cb)(void *arg, const hb_journal_record_t *r,
                                               size_t offset),
                              void *arg, hb_journal_scan_t *out);

/* ---- Audit ---- */

/* What an audit found. Caller-owned, filled by the audit. */
typedef struct hb_journal_audit {
    uint64_t records;            /* valid records read */
    hb_journal_totals_t totals;  /* lifetime totals (a snapshot's plus what follows it) */
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
    /* When the audit could not be done (it returned a negative error): that error, and why,
     * naming the file (hb_journal_audit) and the offset where one applies, e.g.
     * "/var/lib/hongbao/set0/journal: offset 0: not a ledger journal (no "HBLEDGER" header)".
     * 0 and "" when the audit ran (its findings are violations). */
    int err;
    char errstr[HB_JOURNAL_ERRSTR_SIZE];
} hb_journal_audit_t;

/* Audit the journal dir/journal, read-only (never truncates, takes no lock: a live journal may be
 * audited, its last record perhaps seen torn). Judges every record with the books' one claim rule
 * (hb_book), as the ledger's replay does, and checks that every claim is of an envelope in the
 * books (created, or in a snapshot), not expired, by a listed recipient, once per (envelope,
 * user) (a share granted twice is a violation), for exactly that recipient's share, never taking
 * more than an envelope's total; that envelopes are well formed (hb_sendenv_check), have
 * send-envelope ids, each above every id issued before (ids are never reused); that expiry is only
 * of an envelope in the books; that reservations of each id space only go forward; that a
 * snapshot is at the start, is followed by all the records it announces (a journal cut inside
 * them is a violation) and balances; and at the end that issued == claimed + expired +
 * outstanding. Each violation is passed to violation (if not NULL) with a message and the offset
 * of the record concerned; a corrupt record is one (the records after it are not checked). Fills
 * *totals (if not NULL). Returns the number of violations (0: the books balance; capped at
 * INT32_MAX), or a negative error with totals->err and totals->errstr set: HB_ENOENT and other
 * I/O errors, HB_ENOMEM, HB_ECORRUPT (not a journal: bad header), HB_ENOTSUP (another version),
 * HB_EINVAL (NULL dir). */
HB_EXTERN int hb_journal_audit(const char *dir, hb_journal_audit_t *totals,
                               void (*violation)(void *arg, const char *msg, size_t offset),
                               void *arg);

/* hb_journal_audit on a journal image in memory (len bytes, header included); same checks and
 * results (no I/O errors; errstr names no file). */
HB_EXTERN int hb_journal_audit_buf(const uint8_t *buf, size_t len, hb_journal_audit_t *totals,
                                   void (*violation)(void *arg, const char *msg, size_t offset),
                                   void *arg);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_JOURNAL_H */
