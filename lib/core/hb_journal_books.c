/* The books of a journal: one hb_book judging every record with the library's one claim rule, the
 * lifetime totals and the reservations, as replay, the writer and the audit all keep them; and
 * the snapshot image of the books that compaction writes. */
#include "hb_internal.h"
#include "hb_journal_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(unsigned kind)
{
    return kind == HB_ENVELOPE_SHAKE ? "shake" : kind == HB_ENVELOPE_SEND ? "send" : "unknown";
}

static void books_problem(hb__books_t *b, uint64_t pos, const char *fmt, ...) HB_PRINTF(3, 4);
static void books_problem(hb__books_t *b, uint64_t pos, const char *fmt, ...)
{
    char msg[HB_JOURNAL_ERRSTR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->problem(b->problem_ctx, pos, msg);
}

int hb__books_init(hb__books_t *b, void (*problem)(void *ctx, uint64_t pos, const char *msg),
                   void *ctx)
{
    memset(b, 0, sizeof *b);
    b->problem = problem;
    b->problem_ctx = ctx;
    return hb_book_init(&b->book, 0);
}

void hb__books_free(hb__books_t *b)
{
    hb_book_close(&b->book);
}

/* How many recipients the bitmask says have claimed. */
static unsigned claimed_count(uint8_t claimed)
{
    unsigned n = 0;
    for (unsigned i = 0; i < 8; i++)
        n += (claimed >> i) & 1u;
    return n;
}

uint64_t hb__sendenv_unclaimed(const hb_sendenv_t *e)
{
    return e->claimed_sum >= e->total ? 0 : (uint64_t)e->total - e->claimed_sum;
}

bool hb__books_of_snapshot(const hb__books_t *b, const hb_journal_record_t *r)
{
    return b->snapshot_left > 0 && (r->type == HB_JOURNAL_STATE || r->type == HB_JOURNAL_RESERVE);
}

/* Add an envelope (of an ENVELOPE or STATE record) to the book. Returns 0, 1 (refused: reported),
 * or HB_ENOMEM. */
static int books_add(hb__books_t *b, const hb_sendenv_t *e, uint64_t pos, const char *what)
{
    const char *why = hb_sendenv_check(e);
    if (why != NULL) {
        books_problem(b, pos, "%s of envelope %" PRIu32 " is malformed: %s", what, e->id, why);
        return 1;
    }
    int rc = hb_book_add(&b->book, e);
    if (rc == HB_EEXIST) {
        books_problem(b, pos, "%s of envelope %" PRIu32 ": the id was issued before", what, e->id);
        return 1;
    }
    if (rc != 0)
        return rc;
    if (hb_sendenv_fully_claimed(e))
        b->full++;
    b->state_bytes += HB_JOURNAL_FRAME_SIZE + hb__state_payload(e);
    return 0;
}

static int books_envelope(hb__books_t *b, const hb_sendenv_t *e, uint64_t pos)
{
    b->totals.envelopes++;
    b->totals.issued += e->total;
    if (hb_envelope_id_kind(e->id) != HB_ENVELOPE_SEND) {
        books_problem(b, pos, "creation of envelope %" PRIu32 ": not a send-envelope id", e->id);
        return 1;
    }
    if (e->id <= b->max_id) {
        if (hb_book_find(&b->book, e->id) != NULL ||
            (b->retired != NULL && hb_book_find(b->retired, e->id) != NULL))
            books_problem(b, pos, "creation of envelope %" PRIu32 ": the id was issued before",
                          e->id);
        else
            books_problem(b, pos,
                          "creation of envelope %" PRIu32
                          ": the id is not above the highest issued before (%" PRIu32 ")",
                          e->id, b->max_id);
        return 1;
    }
    b->max_id = e->id;
    return books_add(b, e, pos, "creation");
}

static int books_claim(hb__books_t *b, const hb_journal_record_t *r, uint64_t pos)
{
    b->totals.claims++;
    b->totals.claimed += r->amount;
    uint32_t share = 0;
    switch (hb_book_claim(&b->book, r->envelope_id, r->user, &share)) {
    case 0:
        if (share == r->amount) {
            if (hb_sendenv_fully_claimed(hb_book_find(&b->book, r->envelope_id)))
                b->full++;
            return 0;
        }
        hb_book_unclaim(&b->book, r->envelope_id, r->user);
        books_problem(b, pos,
                      "claim of %" PRIu32 " on envelope %" PRIu32 " by user %" PRIu32
                      ", whose share is %" PRIu32,
                      r->amount, r->envelope_id, r->user, share);
        return 1;
    case HB_BOOK_REPEAT:
        books_problem(b, pos,
                      "second claim of envelope %" PRIu32 " by user %" PRIu32
                      ": its share (%" PRIu32 ") granted twice",
                      r->envelope_id, r->user, share);
        return 1;
    case HB_ENOTRECIPIENT:
        books_problem(b, pos,
                      "claim of %" PRIu32 " by user %" PRIu32
                      ", not a recipient of envelope %" PRIu32,
                      r->amount, r->user, r->envelope_id);
        return 1;
    default:
        if (b->retired != NULL && hb_book_find(b->retired, r->envelope_id) != NULL)
            books_problem(b, pos,
                          "claim of %" PRIu32 " by user %" PRIu32 " of envelope %" PRIu32
                          " after it expired",
                          r->amount, r->user, r->envelope_id);
        else if (hb_envelope_id_kind(r->envelope_id) == HB_ENVELOPE_SEND &&
                 r->envelope_id <= b->max_id)
            books_problem(b, pos,
                          "claim of %" PRIu32 " by user %" PRIu32 " of envelope %" PRIu32
                          ", which is not in the books (expired, refused, or never issued)",
                          r->amount, r->user, r->envelope_id);
        else
            books_problem(b, pos,
                          "claim of %" PRIu32 " by user %" PRIu32 " of envelope %" PRIu32
                          ", which was never issued",
                          r->amount, r->user, r->envelope_id);
        return 1;
    }
}

/* An expiry retires an envelope, fully claimed or not; only an unclaimed rest counts as expired. */
static int books_expire(hb__books_t *b, uint32_t id, uint64_t pos)
{
    hb_sendenv_t e;
    if (hb_book_remove(&b->book, id, &e) != 0) {
        if (b->retired != NULL && hb_book_find(b->retired, id) != NULL)
            books_problem(b, pos, "expiry of envelope %" PRIu32 ", which is already expired", id);
        else
            books_problem(b, pos, "expiry of envelope %" PRIu32 ", which is not in the books", id);
        return 1;
    }
    b->state_bytes -= HB_JOURNAL_FRAME_SIZE + hb__state_payload(&e);
    if (hb_sendenv_fully_claimed(&e)) {
        b->full--;
    } else {
        b->totals.expired++;
        b->totals.expired_amount += hb__sendenv_unclaimed(&e);
    }
    if (b->retired != NULL && hb_book_add(b->retired, &e) == HB_ENOMEM)
        return HB_ENOMEM;
    return 0;
}

static int books_state(hb__books_t *b, const hb_sendenv_t *e, bool in_snapshot, uint64_t pos)
{
    if (!in_snapshot) {
        /* A state outside a snapshot: its history is not in any totals yet. */
        b->totals.envelopes++;
        b->totals.issued += e->total;
        b->totals.claims += claimed_count(e->claimed);
        b->totals.claimed += e->claimed_sum;
    }
    if (hb_envelope_id_kind(e->id) != HB_ENVELOPE_SEND) {
        books_problem(b, pos, "state of envelope %" PRIu32 ": not a send-envelope id", e->id);
        return 1;
    }
    if (e->id > b->max_id)
        b->max_id = e->id;
    return books_add(b, e, pos, "state");
}

static int books_reserve(hb__books_t *b, const hb_journal_record_t *r, uint64_t pos)
{
    if (r->kind != HB_ENVELOPE_SHAKE && r->kind != HB_ENVELOPE_SEND) {
        books_problem(b, pos, "reservation of ids of an unknown kind %u", r->kind);
        return 1;
    }
    if (hb_envelope_id_kind(r->last) != r->kind) {
        books_problem(b, pos, "reservation of %s ids up to %" PRIu32 ", not a %s id",
                      kind_name(r->kind), r->last, kind_name(r->kind));
        return 1;
    }
    if (r->last <= b->reserved[r->kind]) {
        books_problem(b, pos,
                      "reservation of %s ids up to %" PRIu32 " goes backwards (%" PRIu32
                      " reserved before)",
                      kind_name(r->kind), r->last, b->reserved[r->kind]);
        return 1;
    }
    b->reserved[r->kind] = r->last;
    return 0;
}

int hb__books_apply(hb__books_t *b, const hb_journal_record_t *r, uint64_t pos)
{
    bool in_snapshot = hb__books_of_snapshot(b, r);
    if (in_snapshot) {
        b->snapshot_left--;
        b->snapshot_seen++;
    }
    switch (r->type) {
    case HB_JOURNAL_ENVELOPE:
        return books_envelope(b, &r->envelope, pos);
    case HB_JOURNAL_CLAIM:
        return books_claim(b, r, pos);
    case HB_JOURNAL_EXPIRE:
        return books_expire(b, r->envelope_id, pos);
    case HB_JOURNAL_STATE:
        return books_state(b, &r->envelope, in_snapshot, pos);
    case HB_JOURNAL_SNAPSHOT:
        b->totals = r->totals;
        if (hb_envelope_id_kind(r->max_envelope_id) == HB_ENVELOPE_SEND &&
            r->max_envelope_id > b->max_id)
            b->max_id = r->max_envelope_id;
        b->snapshot_offset = (size_t)pos;
        b->snapshot_left = r->outstanding;
        b->snapshot_seen = 0;
        return 0;
    case HB_JOURNAL_RESERVE:
        return books_reserve(b, r, pos);
    }
    return 0;
}

void hb__books_snapshot_cut(const hb__books_t *b, char *buf, size_t n, size_t at, bool at_end)
{
    snprintf(buf, n,
             "the snapshot at offset %zu announces %" PRIu64 " records, only %" PRIu64
             " follow it: %s at offset %zu",
             b->snapshot_offset, b->snapshot_left + b->snapshot_seen, b->snapshot_seen,
             at_end ? "the journal is cut" : "another record comes", at);
}

/* ---- Loading a journal image, as replay does ---- */

typedef struct load {
    hb__books_t *books;
    uint64_t records;
    size_t cut_at; /* where another record came among a snapshot's (0: none did) */
} load_t;

static int load_record(void *arg, const hb_journal_record_t *r, size_t offset)
{
    load_t *ld = arg;
    if (ld->books->snapshot_left > 0 && !hb__books_of_snapshot(ld->books, r)) {
        ld->cut_at = offset;
        return HB_ECORRUPT;
    }
    ld->records++;
    int rc = hb__books_apply(ld->books, r, offset);
    return rc < 0 ? rc : 0;
}

int hb__books_load(hb__books_t *b, const uint8_t *buf, size_t len, hb_journal_scan_t *out,
                   uint64_t *records)
{
    load_t ld = {b, 0, 0};
    char why[256]; /* the reason for a cut snapshot: a short sentence of numbers */
    int rc = hb_journal_scan(buf, len, load_record, &ld, out);
    *records = ld.records;
    if (ld.cut_at != 0) {
        hb__books_snapshot_cut(b, why, sizeof why, ld.cut_at, false);
        snprintf(out->errstr, sizeof out->errstr, "offset %zu: corrupt journal: %s", ld.cut_at,
                 why);
    } else if (rc == HB_JOURNAL_TORN && hb__journal_torn_snapshot(buf, len, out->good_end)) {
        snprintf(out->errstr, sizeof out->errstr,
                 "offset %zu: corrupt journal: a snapshot record cut short (%zu of %u bytes)",
                 out->good_end, len - out->good_end, HB_JOURNAL_FRAME_SIZE + HB__PAYLOAD_SNAPSHOT);
        rc = HB_ECORRUPT;
    } else if ((rc == 0 || rc == HB_JOURNAL_TORN) && b->snapshot_left > 0) {
        hb__books_snapshot_cut(b, why, sizeof why, out->good_end, true);
        snprintf(out->errstr, sizeof out->errstr, "offset %zu: corrupt journal: %s%s",
                 out->good_end, why, rc == HB_JOURNAL_TORN ? " (inside a torn record)" : "");
        rc = HB_ECORRUPT;
    }
    out->err = rc;
    return rc;
}

/* ---- The snapshot image ---- */

/* The kinds with a reservation, in the order a snapshot lists them. */
static const hb_envelope_kind_t reserve_kinds[] = {HB_ENVELOPE_SHAKE, HB_ENVELOPE_SEND};

/* How many RESERVE records a snapshot of b carries. */
static unsigned snapshot_reserves(const hb__books_t *b)
{
    unsigned n = 0;
    for (size_t k = 0; k < sizeof reserve_kinds / sizeof reserve_kinds[0]; k++)
        n += b->reserved[reserve_kinds[k]] != 0;
    return n;
}

uint64_t hb__books_snapshot_records(const hb__books_t *b)
{
    return 1 + (uint64_t)b->book.count + snapshot_reserves(b);
}

uint64_t hb__books_snapshot_size(const hb__books_t *b)
{
    return HB_JOURNAL_HEADER_SIZE + HB_JOURNAL_FRAME_SIZE + HB__PAYLOAD_SNAPSHOT + b->state_bytes +
           (uint64_t)snapshot_reserves(b) * (HB_JOURNAL_FRAME_SIZE + HB__PAYLOAD_RESERVE);
}

typedef struct image {
    uint8_t *p;
    size_t len;
    size_t cap;
} image_t;

static void image_put(image_t *img, const hb_journal_record_t *r)
{
    img->len += (size_t)hb_journal_encode(r, img->p + img->len, img->cap - img->len);
}

static void image_put_state(void *arg, const hb_sendenv_t *e)
{
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_STATE;
    r.envelope = *e;
    r.envelope_id = e->id;
    image_put(arg, &r);
}

uint8_t *hb__books_snapshot_image(const hb__books_t *b, size_t *len)
{
    uint64_t size = hb__books_snapshot_size(b);
    uint64_t records = hb__books_snapshot_records(b) - 1;
    if (size > SIZE_MAX || records > UINT32_MAX)
        return NULL;
    image_t img = {malloc((size_t)size), 0, (size_t)size};
    if (img.p == NULL)
        return NULL;
    img.len = (size_t)hb_journal_encode_header(img.p, img.cap);
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_SNAPSHOT;
    r.max_envelope_id = b->max_id;
    r.outstanding = (uint32_t)records;
    r.totals = b->totals;
    image_put(&img, &r);
    hb_book_foreach(&b->book, image_put_state, &img);
    for (size_t k = 0; k < sizeof reserve_kinds / sizeof reserve_kinds[0]; k++) {
        if (b->reserved[reserve_kinds[k]] == 0)
            continue;
        memset(&r, 0, sizeof r);
        r.type = HB_JOURNAL_RESERVE;
        r.kind = (uint8_t)reserve_kinds[k];
        r.last = b->reserved[reserve_kinds[k]];
        image_put(&img, &r);
    }
    *len = img.len;
    return img.p;
}
