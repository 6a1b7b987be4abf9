/* The journal's internals shared by the core's audit and the runtime's writer (hb_ledger.c): the
 * books model that judges records, the snapshot image, and reading a journal file. Not installed.
 */
#ifndef HB_JOURNAL_INT_H
#define HB_JOURNAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hongbao/journal.h"

/* Payload lengths of the record types. */
#define HB__PAYLOAD_ENVELOPE 41u
#define HB__PAYLOAD_CLAIM    13u
#define HB__PAYLOAD_EXPIRE   5u
#define HB__PAYLOAD_STATE    46u
#define HB__PAYLOAD_SNAPSHOT 57u
#define HB__PAYLOAD_RESERVE  6u
/* Version 3: envelopes of any recipient count (1..HB_SEND_MAX_RECIPIENTS) are written with these
 * types; one of exactly HB_NOTICE_RECIPIENTS keeps the fixed ENVELOPE and STATE layouts. Decoded,
 * they are ENVELOPE and STATE records like any other. */
#define HB__TYPE_ENVELOPE_N       7u
#define HB__TYPE_STATE_N          8u
#define HB__PAYLOAD_ENVELOPE_N(n) (18u + 8u * (uint32_t)(n))
#define HB__PAYLOAD_STATE_N(n)    (23u + 8u * (uint32_t)(n))
/* The payload of a STATE record for e (fixed or variable layout). */
uint32_t hb__state_payload(const hb_sendenv_t *e);

/* Whether the torn record at off (the end of a scan's valid prefix) is a SNAPSHOT cut short: its
 * length field, when there, is the SNAPSHOT's, which no appended record has. (hb_journal.c) */
bool hb__journal_torn_snapshot(const uint8_t *buf, size_t len, size_t off);

/* ---- The books (hb_journal_books.c) ----
 *
 * Replay, the writer and the audit apply every record through hb__books_apply, so the book's one
 * claim rule (hb_book) judges them all. Every record counts in the totals as journaled (so a claim
 * that makes no sense still shows as money granted, and compaction cannot hide it); the book holds
 * only what makes sense. A record that makes none is reported through problem() and changes
 * nothing else. Owned by one thread at a time. */
typedef struct hb__books {
    hb_book_t book;     /* the envelopes not expired, fully claimed or not */
    hb_book_t *retired; /* the audit's (else NULL): envelopes expired, to name a claim after one */
    uint64_t full;      /* fully claimed envelopes in the book */
    uint64_t state_bytes; /* the framed STATE records a snapshot of the book takes */
    hb_journal_totals_t totals;
    uint32_t max_id;      /* the highest send-envelope id seen */
    uint32_t reserved[3]; /* the last id reserved, by hb_envelope_kind_t (0: none) */
    /* The SNAPSHOT being read: */
    size_t snapshot_offset;
    uint64_t snapshot_left; /* its records (STATE, RESERVE) not yet seen */
    uint64_t snapshot_seen;
    /* Where a record that makes no sense is reported, with its position (a file offset, or a
     * sequence number in the writer). */
    void (*problem)(void *ctx, uint64_t pos, const char *msg);
    void *problem_ctx;
} hb__books_t;

/* Empty books reporting to problem(ctx, ...). Returns 0 or HB_ENOMEM (hb__books_free is harmless
 * then). */
int hb__books_init(hb__books_t *b, void (*problem)(void *ctx, uint64_t pos, const char *msg),
                   void *ctx);
void hb__books_free(hb__books_t *b);

/* Apply one record at pos. The caller has checked that a snapshot's records are STATE or RESERVE
 * (hb__books_of_snapshot). Returns 0 (applied), 1 (made no sense: reported, skipped) or
 * HB_ENOMEM. */
int hb__books_apply(hb__books_t *b, const hb_journal_record_t *r, uint64_t pos);

/* Whether r is one of the records the snapshot being read still announces. */
bool hb__books_of_snapshot(const hb__books_t *b, const hb_journal_record_t *r);

/* The reason why the snapshot being read is cut: its records stop at offset at, where the journal
 * ends (at_end) or another record comes. Into buf of n bytes. */
void hb__books_snapshot_cut(const hb__books_t *b, char *buf, size_t n, size_t at, bool at_end);

/* Load a whole journal image into b, as the ledger's replay does: every valid record applied,
 * and the journal refused as corrupt when a snapshot is cut (another record among its records,
 * the image ending before them, or a torn SNAPSHOT record): no crash cuts a snapshot. Returns
 * what hb_journal_scan returns (0, HB_JOURNAL_TORN, HB_ECORRUPT, HB_ENOTSUP, HB_EINVAL) or
 * HB_ENOMEM; *out as the scan fills it, with the reason for a cut snapshot (naming the offset)
 * in out->errstr. *records gets the records applied. */
int hb__books_load(hb__books_t *b, const uint8_t *buf, size_t len, hb_journal_scan_t *out,
                   uint64_t *records);

/* The unclaimed rest of an envelope. */
uint64_t hb__sendenv_unclaimed(const hb_sendenv_t *e);

/* The snapshot of the books as a whole journal image: header, SNAPSHOT, one STATE per envelope in
 * the book (fully claimed ones included), then one RESERVE per reserved id space, all counted by
 * the SNAPSHOT's outstanding. hb__books_snapshot_size is its size; hb__books_snapshot_records the
 * records it holds, SNAPSHOT included. The image is malloc'd (NULL: out of memory, or too big). */
uint64_t hb__books_snapshot_size(const hb__books_t *b);
uint64_t hb__books_snapshot_records(const hb__books_t *b);
uint8_t *hb__books_snapshot_image(const hb__books_t *b, size_t *len);

/* ---- Files (hb_journal_audit.c) ---- */

/* dir/name, malloc'd; NULL when out of memory. */
char *hb__journal_path(const char *dir, const char *name);

/* Read the whole regular file open as fd into *buf (malloc'd, NULL when empty). Returns 0,
 * HB_EINVAL (not a regular file), HB_ENOMEM, or the failing call's -errno. */
int hb__journal_read_fd(int fd, uint8_t **buf, size_t *len);

#endif /* HB_JOURNAL_INT_H */
