/* The offline audit of a journal's books (hb-audit): every record judged by the books' one claim
 * rule, as replay judges it, and the structure around them checked; and reading a journal file. */
#include "hb_internal.h"
#include "hb_journal_int.h"
#include "hongbao/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Files ---- */

char *hb__journal_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int hb__journal_read_fd(int fd, uint8_t **buf, size_t *len)
{
    struct stat sb;
    *buf = NULL;
    *len = 0;
    if (fstat(fd, &sb) != 0)
        return -errno;
    if (!S_ISREG(sb.st_mode))
        return HB_EINVAL;
    if (sb.st_size == 0)
        return 0;
    if ((uint64_t)sb.st_size > SIZE_MAX)
        return HB_ENOMEM;
    size_t size = (size_t)sb.st_size;
    uint8_t *p = malloc(size);
    if (p == NULL)
        return HB_ENOMEM;
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, p + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int rc = n < 0 ? -errno : HB_EIO;
            free(p);
            return rc;
        }
        got += (size_t)n;
    }
    *buf = p;
    *len = size;
    return 0;
}

/* ---- Audit ---- */

/* The audit applies every record to books of its own through hb__books_apply, as replay does (so
 * a record replay would skip is a violation), and checks the structure around them. */
typedef struct audit {
    hb__books_t books;
    hb_book_t retired; /* envelopes expired, to name a claim or expiry after it */
    hb_journal_audit_t *t;
    void (*violation)(void *arg, const char *msg, size_t offset);
    void *arg;
    /* The snapshot being read: */
    uint64_t snapshot_rest; /* the unclaimed rest of its STATE records */
    hb_journal_totals_t snapshot_totals;
    bool in_snapshot;
} audit_t;

static void violation(audit_t *a, size_t offset, const char *fmt, ...) HB_PRINTF(3, 4);
static void violation(audit_t *a, size_t offset, const char *fmt, ...)
{
    a->t->violations++;
    if (a->violation == NULL)
        return;
    char msg[HB_JOURNAL_ERRSTR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    a->violation(a->arg, msg, offset);
}

/* The books' problem reporter for the audit: a violation at the record's offset. */
static void audit_problem(void *ctx, uint64_t pos, const char *msg)
{
    violation(ctx, (size_t)pos, "%s", msg);
}

static void set_error(hb_journal_audit_t *t, int err, const char *fmt, ...) HB_PRINTF(3, 4);
static void set_error(hb_journal_audit_t *t, int err, const char *fmt, ...)
{
    t->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->errstr, sizeof t->errstr, fmt, ap);
    va_end(ap);
}

/* The snapshot's records are all read, or the journal moved on (at offset at) or ended there
 * (at_end) without them: check them against it. */
static void audit_end_snapshot(audit_t *a, size_t at, bool at_end)
{
    if (!a->in_snapshot)
        return;
    a->in_snapshot = false;
    hb__books_t *b = &a->books;
    if (b->snapshot_left > 0) {
        char why[HB_JOURNAL_ERRSTR_SIZE];
        hb__books_snapshot_cut(b, why, sizeof why, at, at_end);
        violation(a, b->snapshot_offset, "%s", why);
        b->snapshot_left = 0;
    }
    const hb_journal_totals_t *s = &a->snapshot_totals;
    uint64_t accounted = s->claimed + s->expired_amount + a->snapshot_rest;
    if (s->issued != accounted)
        violation(a, b->snapshot_offset,
                  "snapshot does not balance: issued %" PRIu64 " != claimed %" PRIu64
                  " + expired %" PRIu64 " + outstanding %" PRIu64,
                  s->issued, s->claimed, s->expired_amount, a->snapshot_rest);
}

/* A claim the books refused may still have taken money: flag one that takes more than the rest of
 * its envelope. */
static void audit_over_claim(audit_t *a, const hb_journal_record_t *r, size_t offset)
{
    const hb_sendenv_t *e = hb_book_find(&a->books.book, r->envelope_id);
    if (e == NULL)
        return;
    uint64_t sum = (uint64_t)e->claimed_sum + r->amount;
    if (sum > e->total)
        violation(a, offset, "envelope %" PRIu32 " over-claimed: %" PRIu64 " granted of %" PRIu32,
                  r->envelope_id, sum, e->total);
}

static int audit_record(void *arg, const hb_journal_record_t *r, size_t offset)
{
    audit_t *a = arg;
    hb_journal_audit_t *t = a->t;
    hb__books_t *b = &a->books;
    bool of_snapshot = hb__books_of_snapshot(b, r);
    if (!of_snapshot)
        audit_end_snapshot(a, offset, false);
    t->records++;

    if (r->type == HB_JOURNAL_STATE && !of_snapshot)
        violation(a, offset, "state of envelope %" PRIu32 " outside a snapshot", r->envelope.id);
    if (r->type == HB_JOURNAL_STATE && of_snapshot)
        a->snapshot_rest += hb__sendenv_unclaimed(&r->envelope);
    hb_journal_totals_t before = b->totals;
    int rc = hb__books_apply(b, r, offset);
    if (rc < 0)
        return rc;
    if (r->type == HB_JOURNAL_CLAIM && rc == 1)
        audit_over_claim(a, r, offset);
    if (r->type == HB_JOURNAL_SNAPSHOT) {
        if (offset != HB_JOURNAL_HEADER_SIZE) {
            /* Its totals replace nothing: what came before it stays counted. */
            violation(a, offset, "snapshot not at the start of the journal");
            b->totals = before;
        }
        a->in_snapshot = true;
        a->snapshot_rest = 0;
        a->snapshot_totals = r->totals;
    }
    if (a->in_snapshot && b->snapshot_left == 0)
        audit_end_snapshot(a, offset + r->size, false);
    return 0;
}

static void audit_tally(void *arg, const hb_sendenv_t *e)
{
    hb_journal_audit_t *t = arg;
    t->held++;
    if (!hb_sendenv_fully_claimed(e)) {
        t->outstanding++;
        t->outstanding_amount += hb__sendenv_unclaimed(e);
    }
}

static void audit_free(audit_t *a)
{
    hb__books_free(&a->books);
    hb_book_close(&a->retired);
}

/* After the scan (which returned rc, *sr): the end of a snapshot, a corrupt or torn tail, the
 * books at the end, and whether they balance. */
static void audit_finish(audit_t *a, const uint8_t *buf, size_t len, int rc,
                         const hb_journal_scan_t *sr)
{
    hb_journal_audit_t *t = a->t;
    t->version = sr->version;
    audit_end_snapshot(a, sr->good_end, true);
    if (rc == HB_ECORRUPT) {
        /* The scanner's reason starts "offset N: ", which the violation carries already. */
        const char *why = strstr(sr->errstr, ": ");
        violation(a, sr->good_end, "%s; the records after it are not checked",
                  why != NULL ? why + 2 : sr->errstr);
    } else if (rc == HB_JOURNAL_TORN) {
        t->torn = 1;
        t->torn_offset = sr->good_end;
        if (hb__journal_torn_snapshot(buf, len, sr->good_end))
            violation(a, sr->good_end,
                      "a snapshot record cut short (%zu of %u bytes): no crash cuts a snapshot",
                      len - sr->good_end, HB_JOURNAL_FRAME_SIZE + HB__PAYLOAD_SNAPSHOT);
    }

    hb_book_foreach(&a->books.book, audit_tally, t);
    t->totals = a->books.totals;
    t->max_envelope_id = a->books.max_id;
    t->reserved_shake = a->books.reserved[HB_ENVELOPE_SHAKE];
    t->reserved_send = a->books.reserved[HB_ENVELOPE_SEND];
    const hb_journal_totals_t *x = &t->totals;
    if (x->issued != x->claimed + x->expired_amount + t->outstanding_amount)
        violation(a, sr->good_end,
                  "the books do not balance: issued %" PRIu64 " != claimed %" PRIu64
                  " + expired %" PRIu64 " + outstanding %" PRIu64,
                  x->issued, x->claimed, x->expired_amount, t->outstanding_amount);
}

int hb_journal_audit_buf(const uint8_t *buf, size_t len, hb_journal_audit_t *totals,
                         void (*violation_cb)(void *arg, const char *msg, size_t offset), void *arg)
{
    hb_journal_audit_t dummy;
    if (totals == NULL)
        totals = &dummy;
    memset(totals, 0, sizeof *totals);
    totals->size = len;
    audit_t a;
    memset(&a, 0, sizeof a);
    a.t = totals;
    a.violation = violation_cb;
    a.arg = arg;
    if (hb__books_init(&a.books, audit_problem, &a) != 0 || hb_book_init(&a.retired, 0) != 0) {
        audit_free(&a);
        set_error(totals, HB_ENOMEM, "audit: %s", hb_strerror(HB_ENOMEM));
        return HB_ENOMEM;
    }
    a.books.retired = &a.retired;

    hb_journal_scan_t sr;
    int rc = hb_journal_scan(buf, len, audit_record, &a, &sr);
    if ((rc == HB_ECORRUPT && sr.good_end < HB_JOURNAL_HEADER_SIZE) || rc == HB_ENOTSUP) {
        /* Not a journal, or not one this library reads: the scanner says why. */
        audit_free(&a);
        set_error(totals, rc, "%s", sr.errstr);
        return rc;
    }
    if (rc == HB_ENOMEM || rc == HB_EINVAL) {
        audit_free(&a);
        set_error(totals, rc, "audit: %s", hb_strerror(rc));
        return rc;
    }
    audit_finish(&a, buf, len, rc, &sr);
    audit_free(&a);
    return totals->violations > INT32_MAX ? INT32_MAX : (int)totals->violations;
}

int hb_journal_audit(const char *dir, hb_journal_audit_t *totals,
                     void (*violation_cb)(void *arg, const char *msg, size_t offset), void *arg)
{
    hb_journal_audit_t dummy;
    if (totals == NULL)
        totals = &dummy;
    memset(totals, 0, sizeof *totals);
    if (dir == NULL) {
        set_error(totals, HB_EINVAL, "audit: no directory given");
        return HB_EINVAL;
    }
    char *path = hb__journal_path(dir, HB_JOURNAL_FILE_NAME);
    if (path == NULL) {
        set_error(totals, HB_ENOMEM, "audit: %s", hb_strerror(HB_ENOMEM));
        return HB_ENOMEM;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        set_error(totals, rc, "%s: %s", path, hb_strerror(rc));
    } else {
        rc = hb__journal_read_fd(fd, &buf, &len);
        close(fd);
        if (rc != 0)
            set_error(totals, rc, "%s: cannot read: %s", path, hb_strerror(rc));
    }
    if (rc == 0) {
        rc = hb_journal_audit_buf(buf, len, totals, violation_cb, arg);
        if (rc < 0) {
            char why[HB_JOURNAL_ERRSTR_SIZE];
            snprintf(why, sizeof why, "%s", totals->errstr);
            set_error(totals, rc, "%s: %s", path, why);
        }
    }
    free(buf);
    free(path);
    return rc;
}
