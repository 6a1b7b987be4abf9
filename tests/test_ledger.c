/* Unit tests for the ledger module, the journal's writer: replay judged by the book's claim rule
 * (fully claimed envelopes kept until expiry, repeated grants skipped), reservations of envelope
 * ids, ids that only go up, group commit from several threads, the fsync policies, torn tails and
 * corruption at open, compaction, a journal cut inside a snapshot, the sticky I/O error and its
 * announcement (err and errstr in the handle), and the audit of journals the writer wrote. The
 * format, the scanner and the audit of crafted images are tested in the core (test_journal.c).
 * Every test works in its own mkdtemp directory under /tmp. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hongbao.h"

/* ---- Fixture: a fresh directory per test ---- */

static char basedir[64]; /* one per test case, made and removed by the parent process */
static char tmpdir[128]; /* one per test, inside basedir */
static char jdir[192];   /* the ledger's directory, created by the ledger itself */
static char jpath[224];  /* its journal */

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char child[512];
            snprintf(child, sizeof child, "%s/%s", path, de->d_name);
            remove_tree(child);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Unchecked: runs in the parent, so the directory goes even when a test fails (Check skips a
 * checked teardown after a failure). */
static void setup_base(void)
{
    snprintf(basedir, sizeof basedir, "/tmp/hb-ledger-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(basedir));
}

static void teardown_base(void)
{
    remove_tree(basedir);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/test-XXXXXX", basedir);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(jdir, sizeof jdir, "%s/books/a", tmpdir);
    snprintf(jpath, sizeof jpath, "%s/journal", jdir);
}

static int fsize_restore(void);

static void teardown(void)
{
    fsize_restore(); /* in case a test failed while it had lowered the file size limit */
    remove_tree(tmpdir);
}

/* ---- Helpers ---- */

/* Log lines, from whichever thread logs. */
typedef struct logbook {
    uv_mutex_t mu;
    int lines;
    char last[512];
    char all[8192];
} logbook_t;

static void logbook_init(logbook_t *b)
{
    memset(b, 0, sizeof *b);
    ck_assert_int_eq(uv_mutex_init(&b->mu), 0);
}

static void log_line(void *arg, const char *line)
{
    logbook_t *b = arg;
    uv_mutex_lock(&b->mu);
    b->lines++;
    snprintf(b->last, sizeof b->last, "%s", line);
    size_t used = strlen(b->all);
    snprintf(b->all + used, sizeof b->all - used, "%s\n", line);
    uv_mutex_unlock(&b->mu);
}

static int logbook_lines(logbook_t *b)
{
    uv_mutex_lock(&b->mu);
    int n = b->lines;
    uv_mutex_unlock(&b->mu);
    return n;
}

/* Outstanding envelopes reported by open, sorted by id by collected_sort. */
#define MAX_COLLECTED 64
typedef struct collected {
    hb_sendenv_t e[MAX_COLLECTED];
    size_t n;
} collected_t;

static void collect(void *arg, const hb_sendenv_t *e)
{
    collected_t *c = arg;
    if (c->n < MAX_COLLECTED)
        c->e[c->n] = *e;
    c->n++;
}

static int by_id(const void *a, const void *b)
{
    const hb_sendenv_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Counts the envelopes reported by open, and keeps the one with a given id. */
typedef struct picked {
    uint32_t id;
    size_t n;
    int found;
    hb_sendenv_t e;
} picked_t;

static void pick(void *arg, const hb_sendenv_t *e)
{
    picked_t *p = arg;
    p->n++;
    if (e->id == p->id) {
        p->found++;
        p->e = *e;
    }
}

static void collected_sort(collected_t *c)
{
    qsort(c->e, c->n < MAX_COLLECTED ? c->n : MAX_COLLECTED, sizeof c->e[0], by_id);
}

/* The n-th send-envelope id (n >= 0). */
#define SEND_ID(n)  (HB_SEND_ENVELOPE_ID_BASE + (uint32_t)(n))
#define SHAKE_ID(n) (HB_SHAKE_ENVELOPE_ID_BASE + (uint32_t)(n))

/* Envelope id with recipients 3id+1..3id+3 and shares 10, 20, 30 + id % 7. */
static hb_sendenv_t make_env(uint32_t id)
{
    hb_sendenv_t e;
    memset(&e, 0, sizeof e);
    e.id = id;
    e.count = 3;
    for (uint32_t i = 0; i < 3; i++) {
        e.recipients[i] = 3 * id + 1 + i;
        e.shares[i] = 10 * (i + 1);
    }
    e.shares[2] += id % 7;
    e.total = e.shares[0] + e.shares[1] + e.shares[2];
    e.created_s = 1700000000u + id;
    return e;
}

static void claim_share(hb_ledger_t *l, const hb_sendenv_t *e, unsigned i)
{
    ck_assert_int_eq(hb_ledger_append_claim(l, e->id, e->recipients[i], e->shares[i], NULL), 0);
}

static hb_ledger_options_t opts_for(hb_fsync_t policy, logbook_t *log)
{
    hb_ledger_options_t o;
    memset(&o, 0, sizeof o);
    o.dir = jdir;
    o.fsync = policy;
    if (log != NULL) {
        o.log = log_line;
        o.log_arg = log;
    }
    return o;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

/* The size, or 0 when it cannot be had; asserts nothing. */
static uint64_t file_size_or_zero(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* Offsets of the records of a journal image, via the scanner. */
typedef struct offsets {
    size_t off[4096];
    size_t size[4096];
    size_t n;
} offsets_t;

static int note_offset(void *arg, const hb_journal_record_t *r, size_t offset)
{
    offsets_t *o = arg;
    if (o->n < 4096) {
        o->off[o->n] = offset;
        o->size[o->n] = r->size;
    }
    o->n++;
    return 0;
}

static void journal_offsets(const uint8_t *buf, size_t len, offsets_t *o)
{
    memset(o, 0, sizeof *o);
    ck_assert_int_eq(hb_journal_scan(buf, len, note_offset, o, NULL), 0);
}

/* The standard small history: five envelopes, the highest id fully claimed, one expired. */
static void write_history(hb_ledger_t *l)
{
    hb_sendenv_t e[6];
    for (uint32_t id = 1; id <= 5; id++) {
        e[id] = make_env(0x200000 + id);
        ck_assert_int_eq(hb_ledger_append_envelope(l, &e[id], NULL), 0);
    }
    claim_share(l, &e[5], 0); /* 5: fully claimed */
    claim_share(l, &e[5], 2);
    claim_share(l, &e[5], 1);
    claim_share(l, &e[2], 1); /* 2: one claim */
    claim_share(l, &e[3], 0); /* 3: two claims */
    claim_share(l, &e[3], 2);
    claim_share(l, &e[4], 0); /* 4: expired after one claim */
    ck_assert_int_eq(hb_ledger_append_expire(l, e[4].id, NULL), 0);
    /* 1: untouched */
}

/* Envelopes equal field by field (their padding bytes may differ). */
static void check_env_eq(const hb_sendenv_t *a, const hb_sendenv_t *b)
{
    ck_assert_uint_eq(a->id, b->id);
    ck_assert_uint_eq(a->total, b->total);
    ck_assert_uint_eq(a->count, b->count);
    ck_assert_mem_eq(a->recipients, b->recipients, sizeof a->recipients);
    ck_assert_mem_eq(a->shares, b->shares, sizeof a->shares);
    ck_assert_uint_eq(a->claimed, b->claimed);
    ck_assert_uint_eq(a->claimed_sum, b->claimed_sum);
    ck_assert_uint_eq(a->created_s, b->created_s);
}

/* What write_history leaves in the books: 1, 2 and 3 outstanding, 5 fully claimed (kept until it
 * expires, so that a repeated claim is still answered). */
static void check_history_outstanding(collected_t *c)
{
    collected_sort(c);
    ck_assert_uint_eq(c->n, 4);
    hb_sendenv_t want[4] = {make_env(0x200001), make_env(0x200002), make_env(0x200003),
                            make_env(0x200005)};
    want[1].claimed = 2;
    want[1].claimed_sum = want[1].shares[1];
    want[2].claimed = 5;
    want[2].claimed_sum = want[2].shares[0] + want[2].shares[2];
    want[3].claimed = 7;
    want[3].claimed_sum = want[3].total;
    for (size_t i = 0; i < 4; i++)
        check_env_eq(&c->e[i], &want[i]);
}

static void make_history_journal(void)
{
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, NULL);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    write_history(&l);
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.appended, 13);
}

typedef struct found {
    char msg[16][256];
    size_t off[16];
    size_t n;
} found_t;

static void on_violation(void *arg, const char *msg, size_t offset)
{
    found_t *f = arg;
    if (f->n < 16) {
        snprintf(f->msg[f->n], sizeof f->msg[0], "%s", msg);
        f->off[f->n] = offset;
    }
    f->n++;
}

/* The index of the violation at offset whose message contains text, or -1. */
static int find_violation(const found_t *f, size_t offset, const char *text)
{
    for (size_t i = 0; i < f->n && i < 16; i++) {
        if (f->off[i] == offset && strstr(f->msg[i], text) != NULL)
            return (int)i;
    }
    return -1;
}

/* The text of a message naming envelope SEND_ID(n) and, if user != 0, a user. */
static const char *msg_of(char *buf, size_t n, const char *fmt, uint32_t id, uint32_t user)
{
    snprintf(buf, n, fmt, (unsigned)id, (unsigned)user);
    return buf;
}

/* An image being crafted with the encoder. */
typedef struct craft {
    uint8_t buf[4096];
    size_t len;
    size_t at[64]; /* offsets of the records */
    size_t n;
} craft_t;

static void craft_start(craft_t *c, unsigned version)
{
    memset(c, 0, sizeof *c);
    memcpy(c->buf, "HBLEDGER\0\0\0", 11);
    c->buf[11] = (uint8_t)version;
    c->len = 12;
}

static size_t craft_put(craft_t *c, const hb_journal_record_t *r)
{
    int n = hb_journal_encode(r, c->buf + c->len, sizeof c->buf - c->len);
    ck_assert_int_gt(n, 0);
    c->at[c->n++] = c->len;
    c->len += (size_t)n;
    return c->at[c->n - 1];
}

static size_t craft_state(craft_t *c, const hb_sendenv_t *e)
{
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_STATE;
    r.envelope = *e;
    r.envelope_id = e->id;
    return craft_put(c, &r);
}

static size_t craft_reserve(craft_t *c, unsigned kind, uint32_t last)
{
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_RESERVE;
    r.kind = (uint8_t)kind;
    r.last = last;
    return craft_put(c, &r);
}

static size_t craft_snapshot(craft_t *c, uint32_t max_id, uint32_t records,
                             hb_journal_totals_t totals)
{
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_SNAPSHOT;
    r.max_envelope_id = max_id;
    r.outstanding = records;
    r.totals = totals;
    return craft_put(c, &r);
}

/* ---- Parsing of options ---- */

START_TEST(test_fsync_parse)
{
    hb_fsync_t p = HB_FSYNC_NO;
    ck_assert_int_eq(hb_fsync_parse("always", &p), 0);
    ck_assert_int_eq(p, HB_FSYNC_ALWAYS);
    ck_assert_int_eq(hb_fsync_parse("everysec", &p), 0);
    ck_assert_int_eq(p, HB_FSYNC_EVERYSEC);
    ck_assert_int_eq(hb_fsync_parse("no", &p), 0);
    ck_assert_int_eq(p, HB_FSYNC_NO);
    ck_assert_int_eq(hb_fsync_parse("sometimes", &p), UV_EINVAL);
    ck_assert_int_eq(hb_fsync_parse("", &p), UV_EINVAL);
    ck_assert_int_eq(hb_fsync_parse(NULL, &p), UV_EINVAL);
    ck_assert_int_eq(p, HB_FSYNC_NO);
    ck_assert_str_eq(hb_fsync_name(HB_FSYNC_EVERYSEC), "everysec");
    ck_assert_str_eq(hb_fsync_name((hb_fsync_t)42), "unknown");
}
END_TEST

START_TEST(test_open_creates_and_validates)
{
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, NULL);
    ck_assert_int_eq(hb_ledger_open(NULL, &o, NULL, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_open(&l, NULL, NULL, NULL), UV_EINVAL);
    o.dir = NULL;
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), UV_EINVAL);
    o = opts_for((hb_fsync_t)7, NULL);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), UV_EINVAL);
    hb_ledger_close(&l); /* harmless after a failed open */

    /* The directory is created with its parents; a new journal is just the header. */
    o = opts_for(HB_FSYNC_ALWAYS, NULL);
    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(l.max_envelope_id, 0);
    ck_assert_uint_eq(l.reserved_shake, 0);
    ck_assert_uint_eq(l.reserved_send, 0);
    ck_assert_uint_eq(file_size(jpath), HB_JOURNAL_HEADER_SIZE);
    size_t hlen;
    uint8_t *header = read_all(jpath, &hlen);
    ck_assert_mem_eq(header, "HBLEDGER\0\0\0\3", HB_JOURNAL_HEADER_SIZE);
    free(header);

    /* One ledger per directory. */
    hb_ledger_t other;
    ck_assert_int_eq(hb_ledger_open(&other, &o, NULL, NULL), UV_EBUSY);
    ck_assert_ptr_nonnull(strstr(other.errstr, "LOCK"));
    ck_assert_int_eq(other.err, UV_EBUSY);

    /* Envelopes must be well formed, unclaimed, and have send-envelope ids. */
    hb_sendenv_t e = make_env(SEND_ID(1));
    uint64_t seq = 0;
    e.shares[0]++;
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    e = make_env(SEND_ID(1));
    e.recipients[2] = e.recipients[0];
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    e = make_env(SEND_ID(1));
    e.claimed = 1;
    e.claimed_sum = e.shares[0];
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    e.claimed_sum = 0;
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_envelope(&l, NULL, &seq), UV_EINVAL);
    static const uint32_t not_send[] = {0, 1, SHAKE_ID(0), 0x1FFFFF, 0x80000000, UINT32_MAX};
    for (size_t i = 0; i < sizeof not_send / sizeof not_send[0]; i++) {
        e = make_env(not_send[i]);
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    }
    ck_assert_uint_eq(seq, 0);
    e = make_env(SEND_ID(1));
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(hb_ledger_append_claim(&l, SEND_ID(1), e.recipients[0], e.shares[0], &seq), 0);
    ck_assert_uint_eq(seq, 2);
    /* Ids never go back (not even to one no longer in the books). */
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    e = make_env(SEND_ID(0));
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    ck_assert_uint_eq(seq, 2);
    ck_assert_int_eq(hb_ledger_wait_durable(&l, 3, 10), UV_EINVAL); /* not appended yet */
    ck_assert_int_eq(hb_ledger_wait_durable(&l, 2, 10000), 0);
    hb_ledger_close(&l);
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.appended, 2);
    ck_assert_uint_eq(l.stats.durable, 2);
    ck_assert_uint_eq(l.stats.records, 2);
    ck_assert_uint_eq(file_size(jpath), 12 + 49 + 21);
    ck_assert_uint_eq(l.stats.bytes, 12 + 49 + 21);
    ck_assert_int_eq(hb_ledger_append_claim(&l, 1, 2, 3, NULL), UV_EINVAL);          /* closed */
    ck_assert_int_eq(hb_ledger_append_reserve(&l, 1, SHAKE_ID(9), NULL), UV_EINVAL); /* closed */

    /* The lock went with the close; after a reopen the ids go on above the replayed ones. */
    ck_assert_int_eq(hb_ledger_open(&other, &o, NULL, NULL), 0);
    ck_assert_uint_eq(other.stats.replayed, 2);
    ck_assert_uint_eq(other.max_envelope_id, SEND_ID(1));
    e = make_env(SEND_ID(1));
    ck_assert_int_eq(hb_ledger_append_envelope(&other, &e, NULL), UV_EINVAL);
    e = make_env(SEND_ID(2));
    ck_assert_int_eq(hb_ledger_append_envelope(&other, &e, NULL), 0);
    hb_ledger_close(&other);
}
END_TEST

START_TEST(test_replay_outstanding)
{
    make_history_journal();
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    check_history_outstanding(&c);
    ck_assert_uint_eq(l.max_envelope_id, 0x200005);
    ck_assert_uint_eq(l.stats.replayed, 13);
    ck_assert_uint_eq(l.stats.outstanding, 3);
    ck_assert_uint_eq(l.stats.held, 4);
    ck_assert_uint_eq(l.stats.anomalies, 0);
    ck_assert_int_eq(logbook_lines(&log), 0);

    /* Sequence numbers restart at 1 in each open ledger; the journal keeps growing. */
    uint64_t seq = 0;
    hb_sendenv_t e1 = make_env(0x200001);
    ck_assert_int_eq(hb_ledger_append_claim(&l, e1.id, e1.recipients[1], e1.shares[1], &seq), 0);
    ck_assert_uint_eq(seq, 1);
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.records, 14);

    c.n = 0;
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    collected_sort(&c);
    ck_assert_uint_eq(c.n, 4);
    ck_assert_uint_eq(c.e[0].claimed, 2);
    ck_assert_uint_eq(c.e[0].claimed_sum, e1.shares[1]);
    hb_ledger_close(&l);
    ck_assert_int_eq(logbook_lines(&log), 0);
    uv_mutex_destroy(&log.mu);
}
END_TEST

/* ---- Group commit ---- */

#define GC_THREADS 4
#define GC_PER     5000

typedef struct gc_shared {
    hb_ledger_t *l;
    uv_mutex_t gate; /* held by the test until every append is queued: stalls the writer */
    uint64_t seqs[GC_THREADS][GC_PER];
    /* on_durable's view (writer thread only; read after close) */
    uint64_t calls;
    uint64_t last;
    int non_monotonic;
    int first_done;
} gc_shared_t;

typedef struct gc_thread {
    gc_shared_t *sh;
    unsigned index;
    int failures;
} gc_thread_t;

static void gc_durable(void *arg, uint64_t seq)
{
    gc_shared_t *sh = arg;
    if (seq <= sh->last)
        sh->non_monotonic++;
    sh->last = seq;
    sh->calls++;
    if (!sh->first_done) {
        /* The first group commit waits until every thread has appended all it has. */
        sh->first_done = 1;
        uv_mutex_lock(&sh->gate);
        uv_mutex_unlock(&sh->gate);
    }
}

/* Thread t claims recipient 0's share of envelopes 0x300000 + t * GC_PER + i. */
static void gc_worker(void *arg)
{
    gc_thread_t *t = arg;
    for (uint32_t i = 0; i < GC_PER; i++) {
        hb_sendenv_t e = make_env(0x300000 + t->index * GC_PER + i);
        uint64_t seq = 0;
        if (hb_ledger_append_claim(t->sh->l, e.id, e.recipients[0], e.shares[0], &seq) != 0)
            t->failures++;
        t->sh->seqs[t->index][i] = seq;
    }
}

/* Counts envelopes, and those whose recipient 0 alone has claimed. */
static void count_env(void *arg, const hb_sendenv_t *e)
{
    size_t *n = arg;
    n[0]++;
    n[1] += e->claimed == 1 && e->claimed_sum == e->shares[0];
}

START_TEST(test_group_commit_from_threads)
{
    static gc_shared_t sh;
    memset(&sh, 0, sizeof sh);
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, NULL);
    o.on_durable = gc_durable;
    o.durable_arg = &sh;
    ck_assert_int_eq(uv_mutex_init(&sh.gate), 0);
    uv_mutex_lock(&sh.gate);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    sh.l = &l;
    /* The envelopes first, from this thread: envelope ids only go up. Their sequence numbers are
     * 1..total; the writer may write some and then wait at the gate. */
    const uint64_t total = GC_THREADS * GC_PER;
    for (uint32_t i = 0; i < total; i++) {
        hb_sendenv_t e = make_env(0x300000 + i);
        uint64_t seq = 0;
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), 0);
        ck_assert_uint_eq(seq, i + 1);
    }

    uv_thread_t th[GC_THREADS];
    gc_thread_t args[GC_THREADS];
    for (unsigned i = 0; i < GC_THREADS; i++) {
        args[i] = (gc_thread_t){&sh, i, 0};
        ck_assert_int_eq(uv_thread_create(&th[i], gc_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < GC_THREADS; i++) {
        ck_assert_int_eq(uv_thread_join(&th[i]), 0);
        ck_assert_int_eq(args[i].failures, 0);
    }
    uv_mutex_unlock(&sh.gate);
    ck_assert_int_eq(hb_ledger_wait_durable(&l, 2 * total, 30000), 0);
    hb_ledger_close(&l);
    uv_mutex_destroy(&sh.gate);

    /* Every claim got its own sequence number after the envelopes', increasing within each
     * thread. */
    static uint8_t seen[2 * GC_THREADS * GC_PER + 1];
    memset(seen, 0, sizeof seen);
    for (unsigned t = 0; t < GC_THREADS; t++) {
        for (unsigned i = 0; i < GC_PER; i++) {
            uint64_t s = sh.seqs[t][i];
            ck_assert_uint_gt(s, total);
            ck_assert_uint_le(s, 2 * total);
            ck_assert_uint_eq(seen[s], 0);
            seen[s] = 1;
            if (i > 0)
                ck_assert_uint_gt(s, sh.seqs[t][i - 1]);
        }
    }
    /* All durable, reported in increasing order, in far fewer writes than records. */
    ck_assert_uint_eq(l.stats.appended, 2 * total);
    ck_assert_uint_eq(l.stats.durable, 2 * total);
    ck_assert_uint_eq(l.stats.synced, 2 * total);
    ck_assert_uint_eq(l.stats.records, 2 * total);
    ck_assert_uint_eq(l.stats.anomalies, 0);
    ck_assert_int_eq(sh.non_monotonic, 0);
    ck_assert_uint_eq(sh.last, 2 * total);
    ck_assert_uint_le(l.stats.writes, 4);
    ck_assert_uint_ge(l.stats.fsyncs, sh.calls);
    ck_assert_uint_eq(l.stats.bytes, 12 + total * (49 + 21));

    size_t n[2] = {0, 0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, count_env, n), 0);
    ck_assert_uint_eq(n[0], total);
    ck_assert_uint_eq(n[1], total);
    ck_assert_uint_eq(l.max_envelope_id, 0x300000 + total - 1);
    hb_ledger_close(&l);
}
END_TEST

/* ---- fsync policies ---- */

static void count_call(void *arg, uint64_t seq)
{
    (void)seq;
    (*(uint64_t *)arg)++;
}

START_TEST(test_fsync_always)
{
    hb_ledger_t l;
    uint64_t batches = 0;
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, NULL);
    o.on_durable = count_call;
    o.durable_arg = &batches;
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    for (uint32_t i = 1; i <= 20; i++) {
        hb_sendenv_t e = make_env(SEND_ID(i));
        uint64_t seq;
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), 0);
        ck_assert_int_eq(hb_ledger_wait_durable(&l, seq, 10000), 0);
        hb_ledger_stats_t s;
        hb_ledger_stats(&l, &s);
        ck_assert_uint_ge(s.synced, seq); /* durable means synced */
        ck_assert_uint_ge(s.fsyncs, i);   /* one batch per record here */
    }
    hb_ledger_close(&l);
    ck_assert_uint_eq(batches, 20);
    ck_assert_uint_ge(l.stats.fsyncs, batches);
    ck_assert_uint_eq(l.stats.synced, 20);
}
END_TEST

START_TEST(test_fsync_everysec)
{
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_EVERYSEC, NULL);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    hb_sendenv_t e = make_env(SEND_ID(1));
    uint64_t seq;
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), 0);
    ck_assert_int_eq(hb_ledger_wait_synced(&l, seq, 10000), 0);
    /* The second record is synced by the timed wait, within the second after the first sync,
     * with nothing else appended and no close. */
    e = make_env(SEND_ID(2));
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), 0);
    ck_assert_int_eq(hb_ledger_wait_durable(&l, seq, 10000), 0);
    ck_assert_int_eq(hb_ledger_wait_synced(&l, seq, 10000), 0);
    hb_ledger_stats_t s;
    hb_ledger_stats(&l, &s);
    ck_assert_uint_eq(s.fsyncs, 2);
    ck_assert_uint_eq(s.synced, 2);
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.fsyncs, 2); /* nothing left to sync at close */
}
END_TEST

START_TEST(test_fsync_no)
{
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, NULL);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    for (uint32_t i = 1; i <= 100; i++) {
        hb_sendenv_t e = make_env(SEND_ID(i));
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
    }
    ck_assert_int_eq(hb_ledger_wait_durable(&l, 100, 10000), 0);
    ck_assert_int_eq(hb_ledger_wait_synced(&l, 100, 50), UV_ETIMEDOUT);
    hb_ledger_stats_t s;
    hb_ledger_stats(&l, &s);
    ck_assert_uint_eq(s.fsyncs, 0);
    ck_assert_uint_eq(s.synced, 0);
    ck_assert_uint_eq(s.durable, 100);
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.fsyncs, 1); /* close syncs whatever the policy */
    ck_assert_uint_eq(l.stats.synced, 100);
}
END_TEST

/* ---- Torn tails and corruption ---- */

START_TEST(test_torn_tail_every_offset)
{
    make_history_journal();
    size_t len;
    uint8_t *full = read_all(jpath, &len);
    offsets_t offs;
    journal_offsets(full, len, &offs);
    ck_assert_uint_eq(offs.n, 13);
    /* Without the last record (the expiry of envelope 4), envelope 4 is still in the books. */
    size_t last = offs.off[12];
    ck_assert_uint_eq(last + offs.size[12], len);

    for (size_t cut = last + 1; cut < len; cut++) {
        write_all_file(jpath, full, cut);
        logbook_t log;
        logbook_init(&log);
        hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
        hb_ledger_t l;
        collected_t c = {0};
        ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
        ck_assert_uint_eq(c.n, 5);
        ck_assert_uint_eq(l.stats.replayed, 12);
        ck_assert_int_eq(logbook_lines(&log), 1);
        char want[64];
        snprintf(want, sizeof want, "offset %zu:", last);
        ck_assert_ptr_nonnull(strstr(log.last, want));
        ck_assert_ptr_nonnull(strstr(log.last, "torn"));
        ck_assert_uint_eq(file_size(jpath), last);
        hb_ledger_close(&l);
        ck_assert_int_eq(logbook_lines(&log), 1);
        ck_assert_uint_eq(file_size(jpath), last);
        uv_mutex_destroy(&log.mu);
    }

    /* The last record whole but with a bad CRC: torn as well. */
    full[len - 1] ^= 0x20;
    write_all_file(jpath, full, len);
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_int_eq(logbook_lines(&log), 1);
    ck_assert_uint_eq(l.stats.bytes, last);
    hb_ledger_close(&l);

    /* A header cut short: the journal starts again with a header. */
    write_all_file(jpath, full, 5);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_int_eq(logbook_lines(&log), 2);
    hb_ledger_close(&l);
    ck_assert_uint_eq(file_size(jpath), HB_JOURNAL_HEADER_SIZE);
    free(full);
}
END_TEST

START_TEST(test_corrupt_middle_fails_open)
{
    make_history_journal();
    size_t len;
    uint8_t *full = read_all(jpath, &len);
    offsets_t offs;
    journal_offsets(full, len, &offs);
    uint8_t *bad = malloc(len);
    ck_assert_ptr_nonnull(bad);

    /* A flipped bit in each record but the last one: HB_ECORRUPT naming file and offset. */
    for (size_t i = 0; i + 1 < offs.n; i++) {
        memcpy(bad, full, len);
        bad[offs.off[i] + 8 + 2] ^= 0x10;
        write_all_file(jpath, bad, len);
        hb_ledger_t l;
        logbook_t log;
        logbook_init(&log);
        hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
        collected_t c = {0};
        ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), HB_ECORRUPT);
        char want[64];
        snprintf(want, sizeof want, "offset %zu:", offs.off[i]);
        ck_assert_ptr_nonnull(strstr(l.errstr, want));
        ck_assert_ptr_nonnull(strstr(l.errstr, jpath));
        ck_assert_ptr_nonnull(strstr(l.errstr, "CRC mismatch"));
        ck_assert_uint_eq(c.n, 0); /* no envelope handed out from a journal that failed */
        ck_assert_int_eq(logbook_lines(&log), 0);
        /* The file is left exactly as it was, and stays locked by nobody. */
        size_t after_len;
        uint8_t *after = read_all(jpath, &after_len);
        ck_assert_uint_eq(after_len, len);
        ck_assert_mem_eq(after, bad, len);
        free(after);
        uv_mutex_destroy(&log.mu);
    }

    /* An impossible length in the middle. */
    memcpy(bad, full, len);
    bad[offs.off[3] + 3] = 200;
    write_all_file(jpath, bad, len);
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, NULL);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), HB_ECORRUPT);
    char want[64];
    snprintf(want, sizeof want, "offset %zu:", offs.off[3]);
    ck_assert_ptr_nonnull(strstr(l.errstr, want));

    /* Not a journal; a journal of another version. */
    memcpy(bad, full, len);
    bad[3] = 'X';
    write_all_file(jpath, bad, len);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), HB_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(l.errstr, "not a ledger journal"));
    memcpy(bad, full, len);
    bad[11] = 9;
    write_all_file(jpath, bad, len);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), UV_ENOTSUP);
    free(bad);
    free(full);
}
END_TEST

/* ---- Compaction ---- */

/* Records of a journal image, via the scanner (up to 4096). */
typedef struct records {
    hb_journal_record_t r[4096];
    size_t off[4096];
    size_t n;
} records_t;

static int keep_any(void *arg, const hb_journal_record_t *r, size_t offset)
{
    records_t *k = arg;
    if (k->n < 4096) {
        k->r[k->n] = *r;
        k->off[k->n] = offset;
    }
    k->n++;
    return 0;
}

static records_t *journal_records(const char *path)
{
    static records_t k;
    memset(&k, 0, sizeof k);
    size_t len;
    uint8_t *buf = read_all(path, &len);
    ck_assert_int_eq(hb_journal_scan(buf, len, keep_any, &k, NULL), 0);
    free(buf);
    return &k;
}

/* Envelopes of every recipient count, claimed in part, kept through compactions (their snapshot
 * records have variable sizes) and a reopen, then audited clean. */
START_TEST(test_any_recipient_count_survives)
{
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, &log);
    o.compact_min_bytes = 2048;
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, SEND_ID(1000), NULL), 0);
    hb_sendenv_t want[HB_SEND_MAX_RECIPIENTS];
    for (uint32_t round = 0; round < 40; round++) {
        for (unsigned n = 1; n <= HB_SEND_MAX_RECIPIENTS; n++) {
            hb_sendenv_t e;
            memset(&e, 0, sizeof e);
            e.id = SEND_ID(round * 10 + n);
            e.count = (uint8_t)n;
            for (unsigned i = 0; i < n; i++) {
                e.recipients[i] = e.id * 10 + i;
                e.shares[i] = 7 + i;
                e.total += e.shares[i];
            }
            e.created_s = 1700000000u;
            ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
            /* The first n / 2 recipients claim. */
            for (unsigned i = 0; i < n / 2; i++) {
                claim_share(&l, &e, i);
                e.claimed |= (uint8_t)(1u << i);
                e.claimed_sum += e.shares[i];
            }
            if (round < 39)
                ck_assert_int_eq(hb_ledger_append_expire(&l, e.id, NULL), 0);
            else
                want[n - 1] = e;
        }
    }
    hb_ledger_close(&l);
    ck_assert_uint_ge(l.stats.compactions, 1);
    ck_assert_uint_eq(l.stats.anomalies, 0);

    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_uint_eq(l.stats.anomalies, 0);
    hb_ledger_close(&l);
    collected_sort(&c);
    ck_assert_uint_eq(c.n, HB_SEND_MAX_RECIPIENTS);
    for (unsigned i = 0; i < HB_SEND_MAX_RECIPIENTS; i++)
        check_env_eq(&c.e[i], &want[i]);
    hb_journal_audit_t t;
    ck_assert_int_eq(hb_journal_audit(jdir, &t, NULL, NULL), 0);
    ck_assert_uint_eq(t.totals.envelopes, 40 * HB_SEND_MAX_RECIPIENTS);
    ck_assert_uint_eq(t.outstanding, HB_SEND_MAX_RECIPIENTS);
    uv_mutex_destroy(&log.mu);
}
END_TEST

START_TEST(test_compaction)
{
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, &log);
    o.compact_min_bytes = 4096;
    /* A leftover journal.new of a compaction cut short is removed at open. */
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    hb_ledger_close(&l);
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/journal.new", jdir);
    write_all_file(tmp, (const uint8_t *)"junk", 4);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    ck_assert_int_eq(logbook_lines(&log), 1);

    /* 600 envelopes, all fully claimed but 100..109 (some partly claimed); then every fully
     * claimed one below 590 expires (the server retires each at its expiry time, claimed or not),
     * and 100 and 101 too, with their rest. Reservations of both id spaces, raised half-way. */
    const uint32_t shake_last = 0x80000010u, send_last = SEND_ID(2000);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, SHAKE_ID(99), NULL), 0);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, SEND_ID(1000), NULL), 0);
    uint64_t issued = 0, claimed = 0, claims = 0, appended_bytes = 12 + 2 * 14;
    uint64_t expired_amount = 0;
    for (uint32_t id = 1; id <= 600; id++) {
        hb_sendenv_t e = make_env(SEND_ID(id));
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
        issued += e.total;
        appended_bytes += 49;
        unsigned n = id >= 100 && id < 110 ? id % 3 : 3;
        for (unsigned i = 0; i < n; i++) {
            claim_share(&l, &e, i);
            claimed += e.shares[i];
            claims++;
            appended_bytes += 21;
        }
        if (id == 300) {
            ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, shake_last, NULL), 0);
            ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, send_last, NULL), 0);
            appended_bytes += 2 * 14;
        }
    }
    for (uint32_t id = 1; id <= 600; id++) {
        if ((id < 590 && (id < 100 || id >= 110)) || id == 100 || id == 101) {
            ck_assert_int_eq(hb_ledger_append_expire(&l, SEND_ID(id), NULL), 0);
            appended_bytes += 13;
        }
    }
    hb_sendenv_t e100 = make_env(SEND_ID(100)), e101 = make_env(SEND_ID(101));
    expired_amount = e100.total - e100.shares[0] + e101.total - e101.shares[0] - e101.shares[1];
    hb_ledger_close(&l);
    ck_assert_uint_ge(l.stats.compactions, 1);
    ck_assert_uint_le(l.stats.bytes, 4096);
    ck_assert_uint_lt(l.stats.bytes, appended_bytes);
    ck_assert_uint_eq(file_size(jpath), l.stats.bytes);
    ck_assert_uint_eq(l.stats.outstanding, 8);
    ck_assert_uint_eq(l.stats.held, 19);
    ck_assert_uint_eq(l.stats.anomalies, 0);
    ck_assert_ptr_nonnull(strstr(log.all, "compacted"));
    ck_assert_int_eq(access(tmp, F_OK), -1);

    /* The compacted journal: SNAPSHOT, then the STATE of every envelope in the books, then one
     * RESERVE per id space, all counted by the SNAPSHOT. */
    records_t *k = journal_records(jpath);
    ck_assert_uint_ge(k->n, 1);
    ck_assert_int_eq(k->r[0].type, HB_JOURNAL_SNAPSHOT);
    ck_assert_uint_eq(k->off[0], 12);
    uint32_t of_snapshot = k->r[0].outstanding;
    ck_assert_uint_ge(k->n, 1 + of_snapshot);
    ck_assert_uint_ge(of_snapshot, 2);
    for (uint32_t i = 1; i + 2 <= of_snapshot; i++)
        ck_assert_int_eq(k->r[i].type, HB_JOURNAL_STATE);
    ck_assert_int_eq(k->r[of_snapshot - 1].type, HB_JOURNAL_RESERVE);
    ck_assert_uint_eq(k->r[of_snapshot - 1].kind, HB_ENVELOPE_SHAKE);
    ck_assert_uint_eq(k->r[of_snapshot - 1].last, shake_last);
    ck_assert_int_eq(k->r[of_snapshot].type, HB_JOURNAL_RESERVE);
    ck_assert_uint_eq(k->r[of_snapshot].kind, HB_ENVELOPE_SEND);
    ck_assert_uint_eq(k->r[of_snapshot].last, send_last);

    /* The same books come back (fully claimed envelopes not expired included), ids continue
     * after the highest ever issued, and the reservations hold. */
    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_uint_eq(l.max_envelope_id, SEND_ID(600));
    ck_assert_uint_eq(l.reserved_shake, shake_last);
    ck_assert_uint_eq(l.reserved_send, send_last);
    ck_assert_uint_eq(l.stats.outstanding, 8);
    ck_assert_uint_eq(l.stats.held, 19);
    hb_sendenv_t e = make_env(SEND_ID(600));
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, shake_last, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, send_last, NULL), UV_EINVAL);
    hb_ledger_close(&l);
    collected_sort(&c);
    ck_assert_uint_eq(c.n, 19);
    for (uint32_t i = 0; i < 8; i++) {
        hb_sendenv_t want = make_env(SEND_ID(102 + i));
        unsigned n = (102 + i) % 3;
        want.claimed = (uint8_t)((1u << n) - 1);
        for (unsigned j = 0; j < n; j++)
            want.claimed_sum += want.shares[j];
        check_env_eq(&c.e[i], &want);
    }
    for (uint32_t i = 0; i < 11; i++) {
        hb_sendenv_t want = make_env(SEND_ID(590 + i));
        want.claimed = 7;
        want.claimed_sum = want.total;
        check_env_eq(&c.e[8 + i], &want);
    }

    /* The compacted journal still balances, with the lifetime totals: only the two envelopes
     * expired with a rest count as expired. */
    hb_journal_audit_t t;
    found_t f = {0};
    ck_assert_int_eq(hb_journal_audit(jdir, &t, on_violation, &f), 0);
    ck_assert_uint_eq(t.version, HB_JOURNAL_VERSION);
    ck_assert_uint_eq(t.totals.envelopes, 600);
    ck_assert_uint_eq(t.totals.claims, claims);
    ck_assert_uint_eq(t.totals.issued, issued);
    ck_assert_uint_eq(t.totals.claimed, claimed);
    ck_assert_uint_eq(t.totals.expired, 2);
    ck_assert_uint_eq(t.totals.expired_amount, expired_amount);
    ck_assert_uint_eq(t.outstanding, 8);
    ck_assert_uint_eq(t.held, 19);
    ck_assert_uint_eq(t.outstanding_amount, issued - claimed - expired_amount);
    ck_assert_uint_eq(t.max_envelope_id, SEND_ID(600));
    ck_assert_uint_eq(t.reserved_shake, shake_last);
    ck_assert_uint_eq(t.reserved_send, send_last);
    uv_mutex_destroy(&log.mu);
}
END_TEST

START_TEST(test_no_compaction_below_minimum)
{
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, NULL);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    for (uint32_t id = 1; id <= 300; id++) {
        hb_sendenv_t e = make_env(SEND_ID(id));
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
        for (unsigned i = 0; i < 3; i++)
            claim_share(&l, &e, i);
        ck_assert_int_eq(hb_ledger_append_expire(&l, e.id, NULL), 0);
    }
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.compactions, 0);
    ck_assert_uint_eq(l.stats.bytes, 12 + 300 * (49 + 3 * 21 + 13));
    ck_assert_uint_eq(l.stats.outstanding, 0);
    ck_assert_uint_eq(l.stats.held, 0);
    ck_assert_uint_eq(l.stats.anomalies, 0);
}
END_TEST

/* ---- A journal cut inside a snapshot ---- */

/* A compacted journal whose file ends, cleanly or torn, before all the records its SNAPSHOT
 * announces (or inside the SNAPSHOT itself), or where another record comes among them, is
 * corrupt: compaction writes and syncs the whole snapshot before the rename, so no crash cuts it.
 * Open must fail (naming the file and the offset) rather than start without the envelopes that
 * followed; the file is left as it was; the audit reports it. */
START_TEST(test_snapshot_cut_is_corrupt)
{
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, NULL);
    o.compact_min_bytes = 4096;
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    /* 300 envelopes, each fully claimed and expired but the first ten (one claim each). */
    for (uint32_t id = 1; id <= 300; id++) {
        hb_sendenv_t e = make_env(SEND_ID(id));
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
        for (unsigned i = 0; i < (id <= 10 ? 1u : 3u); i++)
            claim_share(&l, &e, i);
        if (id > 10)
            ck_assert_int_eq(hb_ledger_append_expire(&l, e.id, NULL), 0);
    }
    hb_ledger_close(&l);
    ck_assert_uint_ge(l.stats.compactions, 1);

    size_t len;
    uint8_t *full = read_all(jpath, &len);
    /* The SNAPSHOT, then its STATE records: the ten envelopes left, and those the last
     * compaction found fully claimed but not expired yet. */
    records_t *k = journal_records(jpath);
    ck_assert_int_eq(k->r[0].type, HB_JOURNAL_SNAPSHOT);
    ck_assert_uint_eq(k->off[0], 12);
    ck_assert_uint_eq(k->r[0].size, 8 + 57);
    const size_t states = k->r[0].outstanding;
    ck_assert_uint_ge(states, 10);
    ck_assert_uint_lt(states, 20);
    ck_assert_uint_ge(k->n, 1 + states);
    for (size_t i = 1; i <= states; i++)
        ck_assert_int_eq(k->r[i].type, HB_JOURNAL_STATE);
    const size_t states_at = k->off[1], states_end = k->off[states] + k->r[states].size;

    logbook_t log;
    logbook_init(&log);
    o = opts_for(HB_FSYNC_ALWAYS, &log);
    for (size_t cut = 12 + 4; cut < states_end; cut++) {
        write_all_file(jpath, full, cut);
        collected_t c = {0};
        int rc = hb_ledger_open(&l, &o, collect, &c);
        if (rc == 0)
            hb_ledger_close(&l);
        if (rc != HB_ECORRUPT)
            ck_abort_msg("a journal cut at %zu, inside its snapshot, opened with %d (%s)", cut, rc,
                         rc == 0 ? "started without the envelopes after the cut" : hb_err_name(rc));
        /* The offset named: the first record of the snapshot not wholly there. */
        size_t at = states_at;
        for (size_t i = 1; i <= states && k->off[i] + k->r[i].size <= cut; i++)
            at = k->off[i] + k->r[i].size;
        if (cut < states_at)
            at = 12;
        char want[64];
        snprintf(want, sizeof want, "offset %zu:", at);
        const char *why = l.errstr;
        if (strstr(why, want) == NULL || strstr(why, jpath) == NULL ||
            strstr(why, "snapshot") == NULL)
            ck_abort_msg("cut at %zu: \"%s\" should name %s, \"%s\" and the snapshot", cut, why,
                         jpath, want);
        ck_assert_uint_eq(c.n, 0);
        ck_assert_int_eq(logbook_lines(&log), 0); /* nothing truncated */
        ck_assert_uint_eq(file_size(jpath), cut);

        hb_journal_audit_t t;
        found_t f = {0};
        ck_assert_int_ge(hb_journal_audit(jdir, &t, on_violation, &f), 1);
        if (cut >= states_at)
            ck_assert_int_ge(find_violation(&f, 12, "announces"), 0);
        else
            ck_assert_int_ge(find_violation(&f, 12, "snapshot record cut short"), 0);
    }

    /* Another record among the snapshot's: an ENVELOPE after three of its STATE records. */
    uint8_t *odd = malloc(len + 64);
    ck_assert_ptr_nonnull(odd);
    const size_t fourth = k->off[4];
    memcpy(odd, full, fourth);
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_ENVELOPE;
    r.envelope = make_env(SEND_ID(1000));
    r.envelope_id = r.envelope.id;
    int n = hb_journal_encode(&r, odd + fourth, 64);
    ck_assert_int_eq(n, 49);
    write_all_file(jpath, odd, fourth + 49);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), HB_ECORRUPT);
    char want[64];
    snprintf(want, sizeof want, "offset %zu:", fourth);
    ck_assert_ptr_nonnull(strstr(l.errstr, want));
    ck_assert_ptr_nonnull(strstr(l.errstr, "snapshot"));
    hb_journal_audit_t t;
    found_t f = {0};
    ck_assert_int_ge(hb_journal_audit(jdir, &t, on_violation, &f), 1);
    ck_assert_int_ge(find_violation(&f, 12, "announces"), 0);
    free(odd);

    /* A cut in the first 4 bytes of the SNAPSHOT's frame cannot be told from a new journal's
     * first record torn: the tail goes and the journal starts empty. */
    for (size_t cut = 13; cut < 16; cut++) {
        write_all_file(jpath, full, cut);
        ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
        hb_ledger_close(&l);
        ck_assert_uint_eq(file_size(jpath), 12);
    }

    /* Whole, with nothing after the snapshot or everything: opens with its envelopes, or the ten
     * left in the end. */
    size_t whole[2] = {states_end, len};
    size_t held[2] = {states, 10};
    for (int i = 0; i < 2; i++) {
        write_all_file(jpath, full, whole[i]);
        collected_t c = {0};
        ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
        hb_ledger_close(&l);
        ck_assert_uint_eq(c.n, held[i]);
        ck_assert_uint_eq(file_size(jpath), whole[i]);
    }
    free(full);
    uv_mutex_destroy(&log.mu);
}
END_TEST

/* ---- The sticky I/O error ---- */

/* RLIMIT_FSIZE's soft limit lowered for a test, with SIGXFSZ ignored (a write past it then fails
 * with EFBIG, as root too): fsize_restore() puts both back, and the journal cases' teardown calls
 * it too, so that a failing test (which skips the rest of its body, and under CK_FORK=no runs on
 * in this process) never leaves them changed. */
static struct {
    int active;
    struct rlimit limit;
    struct sigaction xfsz;
} fsize_saved;

static int fsize_limit(uint64_t bytes)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (getrlimit(RLIMIT_FSIZE, &fsize_saved.limit) != 0 ||
        sigaction(SIGXFSZ, &ign, &fsize_saved.xfsz) != 0)
        return -1;
    fsize_saved.active = 1;
    struct rlimit low = fsize_saved.limit;
    low.rlim_cur = (rlim_t)bytes;
    return setrlimit(RLIMIT_FSIZE, &low);
}

static int fsize_restore(void)
{
    if (!fsize_saved.active)
        return 0;
    fsize_saved.active = 0;
    int rc = setrlimit(RLIMIT_FSIZE, &fsize_saved.limit);
    if (sigaction(SIGXFSZ, &fsize_saved.xfsz, NULL) != 0)
        rc = -1;
    return rc;
}

/* What on_error and on_durable saw, from the writer thread. */
typedef struct announced {
    uv_mutex_t mu;
    uv_cond_t cond;
    int errors;
    int err;
    uint64_t durable;
    uint64_t durable_at_error; /* the last seq on_durable had reported when on_error came */
} announced_t;

static void announce_error(void *arg, int err)
{
    announced_t *a = arg;
    uv_mutex_lock(&a->mu);
    a->errors++;
    a->err = err;
    a->durable_at_error = a->durable;
    uv_cond_broadcast(&a->cond);
    uv_mutex_unlock(&a->mu);
}

static void announce_durable(void *arg, uint64_t seq)
{
    announced_t *a = arg;
    uv_mutex_lock(&a->mu);
    a->durable = seq;
    uv_mutex_unlock(&a->mu);
}

/* Wait (bounded) until on_error has been called; returns how many times it was. */
static int wait_announced(announced_t *a, uint64_t timeout_ms)
{
    uint64_t deadline = uv_hrtime() + timeout_ms * 1000000u;
    uv_mutex_lock(&a->mu);
    while (a->errors == 0) {
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            break;
        uv_cond_timedwait(&a->cond, &a->mu, deadline - now);
    }
    int n = a->errors;
    uv_mutex_unlock(&a->mu);
    return n;
}

/* A write past RLIMIT_FSIZE fails with EFBIG: the writer's I/O error without a test hook. It is
 * announced once to on_error, every later append and wait fails with it, nothing after the last
 * durable record becomes durable, and a reopen replays exactly what was durable (the part-written
 * record is a torn tail). While the limit is low nothing but the journal may grow, so no ck_assert
 * runs then (Check may write its progress to a file). */
START_TEST(test_sticky_io_error_announced)
{
    announced_t an;
    memset(&an, 0, sizeof an);
    ck_assert_int_eq(uv_mutex_init(&an.mu), 0);
    ck_assert_int_eq(uv_cond_init(&an.cond), 0);
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
    o.on_error = announce_error;
    o.error_arg = &an;
    o.on_durable = announce_durable;
    o.durable_arg = &an;
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    for (uint32_t id = 1; id <= 200; id++) {
        hb_sendenv_t e = make_env(SEND_ID(id));
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
    }
    hb_sendenv_t e = make_env(SEND_ID(1));
    uint64_t seq1 = 0;
    ck_assert_int_eq(hb_ledger_append_claim(&l, e.id, e.recipients[0], e.shares[0], &seq1), 0);
    ck_assert_uint_eq(seq1, 201);
    ck_assert_int_eq(hb_ledger_wait_durable(&l, 201, 10000), 0);
    uint64_t size = file_size(jpath);
    struct rlimit limit_before, limit_after;
    struct sigaction xfsz_before, xfsz_after;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &limit_before), 0);
    ck_assert_int_eq(sigaction(SIGXFSZ, NULL, &xfsz_before), 0);

    /* Room for 10 bytes more: the next claim (21 bytes) is cut short. */
    int set = fsize_limit(size + 10);
    uint64_t seq2 = 0;
    int a2 = hb_ledger_append_claim(&l, e.id, e.recipients[1], e.shares[1], &seq2);
    int waited = hb_ledger_wait_durable(&l, seq2, 10000);
    int calls = wait_announced(&an, 10000);
    int a3 = hb_ledger_append_claim(&l, e.id, e.recipients[2], e.shares[2], NULL);
    int a4 = hb_ledger_append_expire(&l, SEND_ID(2), NULL);
    int a5 = hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, SHAKE_ID(5), NULL);
    int waited_again = hb_ledger_wait_durable(&l, seq2, 10);
    uint64_t size_low = file_size_or_zero(jpath);
    int restored = fsize_restore();

    ck_assert_int_eq(set, 0);
    ck_assert_int_eq(restored, 0);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &limit_after), 0);
    ck_assert_uint_eq(limit_after.rlim_cur, limit_before.rlim_cur);
    ck_assert_int_eq(sigaction(SIGXFSZ, NULL, &xfsz_after), 0);
    ck_assert_ptr_eq((void *)xfsz_after.sa_handler, (void *)xfsz_before.sa_handler);
    ck_assert_int_eq(a2, 0);
    ck_assert_uint_eq(seq2, 202);
    ck_assert_int_eq(waited, UV_EFBIG);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(an.err, UV_EFBIG);
    ck_assert_uint_eq(an.durable_at_error, 201);
    ck_assert_int_eq(a3, UV_EFBIG);
    ck_assert_int_eq(a4, UV_EFBIG);
    ck_assert_int_eq(a5, UV_EFBIG);
    ck_assert_int_eq(waited_again, UV_EFBIG);
    ck_assert_uint_eq(size_low, size + 10);
    hb_ledger_close(&l);
    ck_assert_int_eq(an.errors, 1); /* once, even through close */
    ck_assert_uint_eq(an.durable, 201);
    ck_assert_uint_eq(l.stats.durable, 201);
    ck_assert_int_eq(logbook_lines(&log), 1); /* logged once */
    ck_assert_ptr_nonnull(strstr(log.last, "EFBIG"));
    /* The handle says which write failed, and where; close leaves it. */
    ck_assert_int_eq(l.err, UV_EFBIG);
    ck_assert_ptr_nonnull(strstr(l.errstr, jpath));
    char at[64];
    snprintf(at, sizeof at, "at offset %" PRIu64 ":", size);
    ck_assert_ptr_nonnull(strstr(l.errstr, at));

    /* Exactly what was durable comes back; the part-written record is torn. */
    picked_t p = {.id = SEND_ID(1)};
    o.on_error = NULL;
    o.on_durable = NULL;
    ck_assert_int_eq(hb_ledger_open(&l, &o, pick, &p), 0);
    ck_assert_int_eq(l.err, 0);
    ck_assert_str_eq(l.errstr, "");
    ck_assert_int_eq(logbook_lines(&log), 2);
    ck_assert_ptr_nonnull(strstr(log.last, "torn"));
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.replayed, 201);
    ck_assert_uint_eq(file_size(jpath), size);
    ck_assert_uint_eq(p.n, 200);
    ck_assert_int_eq(p.found, 1);
    ck_assert_uint_eq(p.e.claimed, 1);
    ck_assert_uint_eq(p.e.claimed_sum, e.shares[0]);
    uv_mutex_destroy(&log.mu);
    uv_cond_destroy(&an.cond);
    uv_mutex_destroy(&an.mu);
}
END_TEST

/* ---- Version 2: retention until expiry, repeats, reservations, version 1 journals ---- */

/* Fully claimed envelopes stay in the books (and are handed back at open) until an EXPIRE retires
 * them; a share granted twice in the journal is an anomaly, skipped. */
START_TEST(test_fully_claimed_kept_until_expiry)
{
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, &log);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    hb_sendenv_t e = make_env(SEND_ID(1)), g = make_env(SEND_ID(2));
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &g, NULL), 0);
    for (unsigned i = 0; i < 3; i++)
        claim_share(&l, &e, i);
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.outstanding, 1);
    ck_assert_uint_eq(l.stats.held, 2);
    ck_assert_uint_eq(l.stats.anomalies, 0);

    /* Replayed with every share claimed. */
    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    collected_sort(&c);
    ck_assert_uint_eq(c.n, 2);
    hb_sendenv_t want = e;
    want.claimed = 7;
    want.claimed_sum = e.total;
    check_env_eq(&c.e[0], &want);
    check_env_eq(&c.e[1], &g);
    /* A repeated grant in the journal is skipped as an anomaly; the expiry retires it. */
    claim_share(&l, &e, 2);
    ck_assert_int_eq(hb_ledger_append_expire(&l, e.id, NULL), 0);
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.anomalies, 1);
    ck_assert_uint_eq(l.stats.held, 1);
    ck_assert_int_eq(logbook_lines(&log), 1);
    char m[256];
    ck_assert_ptr_nonnull(
        strstr(log.all, msg_of(m, sizeof m, "second claim of envelope %u by user %u", e.id,
                               e.recipients[2])));

    c.n = 0;
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_uint_eq(c.e[0].id, g.id);
    ck_assert_uint_eq(l.stats.anomalies, 1);
    ck_assert_int_eq(logbook_lines(&log), 2); /* replay logs it again */
    hb_ledger_close(&l);

    /* The audit: the second grant is the one violation, and it unbalances the books by its
     * amount; the retired fully claimed envelope changes no total. */
    hb_journal_audit_t t;
    found_t f = {0};
    ck_assert_int_eq(hb_journal_audit(jdir, &t, on_violation, &f), 3);
    ck_assert_int_ge(find_violation(&f, 12 + 2 * 49 + 3 * 21, "granted twice"), 0);
    ck_assert_int_ge(find_violation(&f, 12 + 2 * 49 + 3 * 21, "over-claimed"), 0);
    ck_assert_uint_eq(t.totals.expired, 0);
    ck_assert_uint_eq(t.totals.expired_amount, 0);
    ck_assert_uint_eq(t.totals.claimed, e.total + e.shares[2]);
    ck_assert_uint_eq(t.outstanding_amount, g.total);
    uv_mutex_destroy(&log.mu);
}
END_TEST

START_TEST(test_reserve)
{
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_int_eq(hb_ledger_append_reserve(NULL, HB_ENVELOPE_SHAKE, SHAKE_ID(1), NULL),
                     UV_EINVAL);
    uint64_t seq = 0;
    /* Unknown kinds; ids not of the kind (or of none). */
    ck_assert_int_eq(hb_ledger_append_reserve(&l, (hb_envelope_kind_t)0, SHAKE_ID(1), &seq),
                     UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, (hb_envelope_kind_t)3, SHAKE_ID(1), &seq),
                     UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, SEND_ID(1), &seq), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, SHAKE_ID(1), &seq), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, 0x80000000u, &seq), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, 0, &seq), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, 0xFFFFF, &seq), UV_EINVAL);
    ck_assert_uint_eq(seq, 0);
    /* Forward only, each kind on its own. */
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, SHAKE_ID(999), &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, SHAKE_ID(999), &seq),
                     UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, SHAKE_ID(5), &seq), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, SEND_ID(0), &seq), 0);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, 0x1FFFFF, &seq), 0);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, 0x80000000u, &seq), 0);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, SEND_ID(4095), &seq), 0);
    ck_assert_uint_eq(seq, 5);
    ck_assert_int_eq(hb_ledger_wait_durable(&l, seq, 10000), 0);
    ck_assert_uint_eq(l.reserved_shake, 0); /* as replayed by open */
    hb_ledger_close(&l);
    ck_assert_uint_eq(file_size(jpath), 12 + 5 * 14);

    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_uint_eq(l.reserved_shake, 0x80000000u);
    ck_assert_uint_eq(l.reserved_send, SEND_ID(4095));
    ck_assert_uint_eq(l.max_envelope_id, 0); /* a reservation is not an envelope */
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, 0x80000000u, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SEND, SEND_ID(4095), NULL),
                     UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, UINT32_MAX, NULL), 0);
    hb_ledger_close(&l);
    ck_assert_int_eq(logbook_lines(&log), 0);

    /* A reservation going backwards (crafted: the API refuses it) is an anomaly at replay, and
     * the reservation stays where it was. */
    size_t len;
    uint8_t *buf = read_all(jpath, &len);
    craft_t k;
    craft_start(&k, HB_JOURNAL_VERSION);
    memcpy(k.buf + 12, buf + 12, len - 12);
    k.len = len;
    free(buf);
    craft_reserve(&k, HB_ENVELOPE_SEND, SEND_ID(7));
    write_all_file(jpath, k.buf, k.len);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_uint_eq(l.reserved_shake, UINT32_MAX);
    ck_assert_uint_eq(l.reserved_send, SEND_ID(4095));
    ck_assert_uint_eq(l.stats.anomalies, 1);
    ck_assert_ptr_nonnull(strstr(log.last, "goes backwards"));
    hb_ledger_close(&l);
    hb_journal_audit_t t;
    ck_assert_int_eq(hb_journal_audit(jdir, &t, NULL, NULL), 1);
    ck_assert_uint_eq(t.reserved_shake, UINT32_MAX);
    ck_assert_uint_eq(t.reserved_send, SEND_ID(4095));
    uv_mutex_destroy(&log.mu);
}
END_TEST

/* A version 1 journal is read, by replay and audit; opened, its header is rewritten to version 3
 * and synced before anything is appended. */
START_TEST(test_version_1_journal)
{
    make_history_journal();
    size_t len;
    uint8_t *v1 = read_all(jpath, &len);
    v1[11] = 1;
    write_all_file(jpath, v1, len);
    hb_journal_audit_t t;
    found_t f = {0};
    ck_assert_int_eq(hb_journal_audit(jdir, &t, on_violation, &f), 0);
    ck_assert_uint_eq(t.version, 1);
    ck_assert_uint_eq(t.records, 13);
    ck_assert_uint_eq(t.held, 4);

    /* Opened: replayed as it was, then the header says 3; the records are untouched. */
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
    hb_ledger_t l;
    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    check_history_outstanding(&c);
    ck_assert_uint_eq(l.stats.replayed, 13);
    ck_assert_int_eq(logbook_lines(&log), 1);
    ck_assert_ptr_nonnull(strstr(log.last, "format version 1 rewritten as version 3"));
    size_t now_len;
    uint8_t *now = read_all(jpath, &now_len);
    ck_assert_uint_eq(now_len, len);
    ck_assert_mem_eq(now, "HBLEDGER\0\0\0\3", 12);
    ck_assert_mem_eq(now + 12, v1 + 12, len - 12);
    free(now);
    ck_assert_int_eq(hb_ledger_append_reserve(&l, HB_ENVELOPE_SHAKE, SHAKE_ID(3), NULL), 0);
    hb_ledger_close(&l);
    ck_assert_int_eq(hb_journal_audit(jdir, &t, NULL, NULL), 0);
    ck_assert_uint_eq(t.version, HB_JOURNAL_VERSION);
    ck_assert_uint_eq(t.reserved_shake, SHAKE_ID(3));

    /* A torn version 1 journal: the tail goes, then the header is upgraded. */
    v1[11] = 1;
    write_all_file(jpath, v1, len - 4);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_int_eq(logbook_lines(&log), 3);
    ck_assert_ptr_nonnull(strstr(log.all, "torn"));
    hb_ledger_close(&l);
    now = read_all(jpath, &now_len);
    ck_assert_uint_eq(now_len, len - 13);
    ck_assert_uint_eq(now[11], HB_JOURNAL_VERSION);
    free(now);

    /* A version 1 journal that cannot be opened is left as it was. */
    v1[12 + 49 + 10] ^= 0x40;
    write_all_file(jpath, v1, len);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), HB_ECORRUPT);
    now = read_all(jpath, &now_len);
    ck_assert_mem_eq(now, v1, len);
    free(now);

    /* A compacted version 1 journal (its SNAPSHOT counts its STATE records). */
    craft_t k;
    craft_start(&k, 1);
    hb_sendenv_t a = make_env(SEND_ID(7)), b = make_env(SEND_ID(8));
    b.claimed = 2;
    b.claimed_sum = b.shares[1];
    craft_snapshot(&k, SEND_ID(600), 2,
                   (hb_journal_totals_t){600, 1795, 3, 40000,
                                         40000 - 63 - a.total - (b.total - b.shares[1]), 63});
    craft_state(&k, &a);
    craft_state(&k, &b);
    write_all_file(jpath, k.buf, k.len);
    ck_assert_int_eq(hb_journal_audit(jdir, &t, on_violation, &f), 0);
    c.n = 0;
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_uint_eq(c.n, 2);
    ck_assert_uint_eq(l.max_envelope_id, SEND_ID(600));
    hb_ledger_close(&l);
    ck_assert_int_eq(hb_journal_audit(jdir, &t, NULL, NULL), 0);
    ck_assert_uint_eq(t.version, HB_JOURNAL_VERSION);
    free(v1);
    uv_mutex_destroy(&log.mu);
}
END_TEST

/* ---- Audit ---- */

START_TEST(test_audit_clean_books)
{
    make_history_journal();
    hb_journal_audit_t t;
    found_t f = {0};
    ck_assert_int_eq(hb_journal_audit(jdir, &t, on_violation, &f), 0);
    ck_assert_uint_eq(f.n, 0);
    ck_assert_uint_eq(t.records, 13);
    ck_assert_uint_eq(t.totals.envelopes, 5);
    ck_assert_uint_eq(t.totals.claims, 7);
    ck_assert_uint_eq(t.totals.expired, 1);
    uint64_t issued = 0;
    for (uint32_t id = 1; id <= 5; id++)
        issued += make_env(0x200000 + id).total;
    ck_assert_uint_eq(t.totals.issued, issued);
    hb_sendenv_t e4 = make_env(0x200004);
    ck_assert_uint_eq(t.totals.expired_amount, e4.total - e4.shares[0]);
    ck_assert_uint_eq(t.outstanding, 3);
    ck_assert_uint_eq(t.held, 4); /* 5, fully claimed, is kept until it expires */
    ck_assert_uint_eq(t.totals.issued,
                      t.totals.claimed + t.totals.expired_amount + t.outstanding_amount);
    ck_assert_uint_eq(t.max_envelope_id, 0x200005);
    ck_assert_uint_eq(t.reserved_shake, 0);
    ck_assert_uint_eq(t.reserved_send, 0);
    ck_assert_uint_eq(t.version, HB_JOURNAL_VERSION);
    ck_assert_int_eq(t.torn, 0);

    /* A torn tail is a warning, not a violation; the audit never truncates. */
    size_t len;
    uint8_t *full = read_all(jpath, &len);
    write_all_file(jpath, full, len - 3);
    ck_assert_int_eq(hb_journal_audit(jdir, &t, on_violation, &f), 0);
    ck_assert_int_eq(t.torn, 1);
    ck_assert_uint_eq(t.torn_offset, len - 13); /* the expiry: 8 + 5 bytes */
    ck_assert_uint_eq(t.records, 12);
    ck_assert_uint_eq(file_size(jpath), len - 3);
    free(full);

    /* No journal, or not a journal. */
    char nowhere[256];
    snprintf(nowhere, sizeof nowhere, "%s/none", tmpdir);
    ck_assert_int_eq(hb_journal_audit(nowhere, &t, NULL, NULL), UV_ENOENT);
    write_all_file(jpath, (const uint8_t *)"hello, world", 12);
    ck_assert_int_eq(hb_journal_audit(jdir, &t, NULL, NULL), HB_ECORRUPT);
}
END_TEST

START_TEST(test_audit_reports_violations)
{
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, &log);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    hb_sendenv_t a = make_env(SEND_ID(10)), b = make_env(SEND_ID(11));
    const uint32_t A = a.id, B = b.id;
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &a, NULL), 0);     /* 0 */
    claim_share(&l, &a, 0);                                           /* 1 */
    claim_share(&l, &a, 0);                                           /* 2: twice */
    ck_assert_int_eq(hb_ledger_append_claim(&l, A, 999, 5, NULL), 0); /* 3: stranger */
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &b, NULL), 0);     /* 4 */
    ck_assert_int_eq(hb_ledger_append_claim(&l, B, b.recipients[1], 9999, NULL), 0); /* 5 */
    ck_assert_int_eq(hb_ledger_append_expire(&l, SEND_ID(77), NULL), 0);      /* 6: unknown */
    ck_assert_int_eq(hb_ledger_append_claim(&l, SEND_ID(78), 1, 1, NULL), 0); /* 7: unknown */
    ck_assert_int_eq(hb_ledger_append_expire(&l, A, NULL), 0);                /* 8 */
    claim_share(&l, &a, 1);                                                   /* 9: after expiry */
    ck_assert_int_eq(hb_ledger_append_expire(&l, A, NULL), 0);                /* 10: again */
    hb_ledger_close(&l);
    /* The writer journals them as given, logging what makes no sense in its books. */
    ck_assert_uint_eq(l.stats.anomalies, 7);
    ck_assert_int_eq(logbook_lines(&log), 7);
    ck_assert_ptr_nonnull(strstr(log.all, "record seq 3: second claim"));
    ck_assert_ptr_nonnull(strstr(log.all, "granted twice; skipped"));

    size_t len;
    uint8_t *full = read_all(jpath, &len);
    offsets_t offs;
    journal_offsets(full, len, &offs);
    ck_assert_uint_eq(offs.n, 11);
    free(full);

    /* The replay agrees with the writer: the same anomalies, skipped. */
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    ck_assert_uint_eq(l.stats.anomalies, 7);
    ck_assert_uint_eq(l.stats.held, 1);
    hb_ledger_close(&l);

    hb_journal_audit_t t;
    found_t f = {0};
    char m[256];
    int n = hb_journal_audit(jdir, &t, on_violation, &f);
    ck_assert_int_eq(n, (int)f.n);
    ck_assert_uint_eq(t.violations, f.n);
    ck_assert_int_ge(find_violation(&f, offs.off[2],
                                    msg_of(m, sizeof m, "second claim of envelope %u by user %u", A,
                                           a.recipients[0])),
                     0);
    ck_assert_int_ge(find_violation(&f, offs.off[2], "granted twice"), 0);
    ck_assert_int_ge(find_violation(&f, offs.off[3],
                                    msg_of(m, sizeof m, "not a recipient of envelope %u", A, 0)),
                     0);
    ck_assert_int_ge(find_violation(&f, offs.off[5], "whose share is 20"), 0);
    ck_assert_int_ge(
        find_violation(&f, offs.off[5], msg_of(m, sizeof m, "envelope %u over-claimed", B, 0)), 0);
    ck_assert_int_ge(
        find_violation(&f, offs.off[6],
                       msg_of(m, sizeof m, "expiry of envelope %u, which is not in the books",
                              SEND_ID(77), 0)),
        0);
    ck_assert_int_ge(
        find_violation(&f, offs.off[7],
                       msg_of(m, sizeof m, "envelope %u, which was never issued", SEND_ID(78), 0)),
        0);
    ck_assert_int_ge(
        find_violation(&f, offs.off[9], msg_of(m, sizeof m, "envelope %u after it expired", A, 0)),
        0);
    ck_assert_int_ge(
        find_violation(
            &f, offs.off[10],
            msg_of(m, sizeof m, "expiry of envelope %u, which is already expired", A, 0)),
        0);
    ck_assert_int_ge(find_violation(&f, len, "do not balance"), 0);
    ck_assert_uint_eq(f.n, 9);
    /* Nothing reported against the good records. */
    ck_assert_int_eq(find_violation(&f, offs.off[0], ""), -1);
    ck_assert_int_eq(find_violation(&f, offs.off[1], ""), -1);
    ck_assert_int_eq(find_violation(&f, offs.off[4], ""), -1);
    ck_assert_int_eq(find_violation(&f, offs.off[8], ""), -1);
    ck_assert_uint_eq(t.totals.claims, 6);
    ck_assert_uint_eq(t.totals.expired, 1);
    ck_assert_uint_eq(t.totals.expired_amount, a.total - a.shares[0]);
    uv_mutex_destroy(&log.mu);
}
END_TEST

static Suite *ledger_suite(void)
{
    Suite *s = suite_create("ledger");
    TCase *options = tcase_create("options");
    tcase_add_test(options, test_fsync_parse);
    suite_add_tcase(s, options);

    TCase *journal = tcase_create("journal");
    tcase_add_unchecked_fixture(journal, setup_base, teardown_base);
    tcase_add_checked_fixture(journal, setup, teardown);
    tcase_set_timeout(journal, 60);
    tcase_add_test(journal, test_open_creates_and_validates);
    tcase_add_test(journal, test_replay_outstanding);
    tcase_add_test(journal, test_group_commit_from_threads);
    tcase_add_test(journal, test_fsync_always);
    tcase_add_test(journal, test_fsync_everysec);
    tcase_add_test(journal, test_fsync_no);
    tcase_add_test(journal, test_torn_tail_every_offset);
    tcase_add_test(journal, test_corrupt_middle_fails_open);
    tcase_add_test(journal, test_compaction);
    tcase_add_test(journal, test_any_recipient_count_survives);
    tcase_add_test(journal, test_no_compaction_below_minimum);
    tcase_add_test(journal, test_snapshot_cut_is_corrupt);
    tcase_add_test(journal, test_sticky_io_error_announced);
    tcase_add_test(journal, test_audit_clean_books);
    tcase_add_test(journal, test_audit_reports_violations);
    tcase_add_test(journal, test_fully_claimed_kept_until_expiry);
    tcase_add_test(journal, test_reserve);
    tcase_add_test(journal, test_version_1_journal);
    suite_add_tcase(s, journal);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ledger_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
