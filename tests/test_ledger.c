/* Unit tests for the ledger module: CRC32C, the record format and scanner (torn vs corrupt),
 * replay, group commit from several threads, the fsync policies, compaction, the sticky I/O error
 * and the audit of the books. Every test works in its own mkdtemp directory under /tmp. */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

static void teardown(void)
{
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

static void collected_sort(collected_t *c)
{
    qsort(c->e, c->n < MAX_COLLECTED ? c->n : MAX_COLLECTED, sizeof c->e[0], by_id);
}

/* Envelope id with recipients 3id+1..3id+3 and shares 10, 20, 30 + id % 7. */
static hb_sendenv_t make_env(uint32_t id)
{
    hb_sendenv_t e;
    memset(&e, 0, sizeof e);
    e.id = id;
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

/* Offsets of the records of a journal image, via the scanner. */
typedef struct offsets {
    size_t off[4096];
    size_t size[4096];
    size_t n;
} offsets_t;

static int note_offset(void *arg, const hb_ledger_record_t *r, size_t offset)
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
    ck_assert_int_eq(hb_ledger_scan(buf, len, note_offset, o, NULL), 0);
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
    ck_assert_mem_eq(a->recipients, b->recipients, sizeof a->recipients);
    ck_assert_mem_eq(a->shares, b->shares, sizeof a->shares);
    ck_assert_uint_eq(a->claimed, b->claimed);
    ck_assert_uint_eq(a->claimed_sum, b->claimed_sum);
    ck_assert_uint_eq(a->created_s, b->created_s);
}

/* What write_history leaves outstanding. */
static void check_history_outstanding(collected_t *c)
{
    collected_sort(c);
    ck_assert_uint_eq(c->n, 3);
    hb_sendenv_t want[3] = {make_env(0x200001), make_env(0x200002), make_env(0x200003)};
    want[1].claimed = 2;
    want[1].claimed_sum = want[1].shares[1];
    want[2].claimed = 5;
    want[2].claimed_sum = want[2].shares[0] + want[2].shares[2];
    for (size_t i = 0; i < 3; i++)
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

/* ---- CRC, parsing of options, encoding ---- */

START_TEST(test_crc32c_vectors)
{
    ck_assert_uint_eq(hb_ledger_crc32c("123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(hb_ledger_crc32c("", 0), 0);
    /* RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xFF, and 0..31. */
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    ck_assert_uint_eq(hb_ledger_crc32c(buf, sizeof buf), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof buf);
    ck_assert_uint_eq(hb_ledger_crc32c(buf, sizeof buf), 0x62A8AB43u);
    for (unsigned i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)i;
    ck_assert_uint_eq(hb_ledger_crc32c(buf, sizeof buf), 0x46DD794Eu);
}
END_TEST

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

/* One record of every type, encoded after a header. */
static size_t all_types_image(uint8_t *buf, size_t cap, hb_ledger_record_t rec[5])
{
    memset(rec, 0, 5 * sizeof rec[0]);
    rec[0].type = HB_LEDGER_ENVELOPE;
    rec[0].envelope = make_env(0x01020304);
    rec[0].envelope_id = rec[0].envelope.id;
    rec[1].type = HB_LEDGER_CLAIM;
    rec[1].envelope_id = 0x01020304;
    rec[1].user = 0xA0B0C0D0;
    rec[1].amount = 10;
    rec[2].type = HB_LEDGER_EXPIRE;
    rec[2].envelope_id = 0xFFFFFFFF;
    rec[3].type = HB_LEDGER_STATE;
    rec[3].envelope = make_env(7);
    rec[3].envelope.claimed = 4;
    rec[3].envelope.claimed_sum = rec[3].envelope.shares[2];
    rec[3].envelope_id = 7;
    rec[4].type = HB_LEDGER_SNAPSHOT;
    rec[4].max_envelope_id = 0x7FFFFFFF;
    rec[4].outstanding = 3;
    rec[4].totals = (hb_ledger_totals_t){1, 2, 3, UINT64_C(0x0102030405060708), 5, 6};
    memcpy(buf, "HBLEDGER\0\0\0\1", HB_LEDGER_HEADER_SIZE);
    size_t off = HB_LEDGER_HEADER_SIZE;
    for (int i = 0; i < 5; i++) {
        int n = hb_ledger_encode(&rec[i], buf + off, cap - off);
        ck_assert_int_gt(n, 0);
        rec[i].size = (size_t)n;
        off += (size_t)n;
    }
    return off;
}

typedef struct decoded {
    hb_ledger_record_t r[8];
    size_t off[8];
    size_t n;
    int stop_at; /* return -7 from this record on (if > 0) */
} decoded_t;

static int keep_record(void *arg, const hb_ledger_record_t *r, size_t offset)
{
    decoded_t *d = arg;
    if (d->n < 8) {
        d->r[d->n] = *r;
        d->off[d->n] = offset;
    }
    d->n++;
    return d->stop_at > 0 && (int)d->n >= d->stop_at ? -7 : 0;
}

START_TEST(test_encode_scan_round_trip)
{
    uint8_t buf[512];
    hb_ledger_record_t rec[5];
    size_t len = all_types_image(buf, sizeof buf, rec);
    ck_assert_uint_eq(len, 12 + (8 + 41) + (8 + 13) + (8 + 5) + (8 + 46) + (8 + 57));
    /* Framing: big-endian length, then the CRC32C of the payload. */
    static const uint8_t claim_frame[] = {0, 0, 0, 13};
    ck_assert_mem_eq(buf + 12 + 49, claim_frame, 4);
    ck_assert_uint_eq(buf[12 + 49 + 8], HB_LEDGER_CLAIM);

    decoded_t d;
    memset(&d, 0, sizeof d);
    size_t good_end = 0;
    ck_assert_int_eq(hb_ledger_scan(buf, len, keep_record, &d, &good_end), 0);
    ck_assert_uint_eq(good_end, len);
    ck_assert_uint_eq(d.n, 5);
    size_t off = 12;
    for (size_t i = 0; i < 5; i++) {
        ck_assert_uint_eq(d.off[i], off);
        ck_assert_uint_eq(d.r[i].size, rec[i].size);
        const hb_ledger_record_t *x = &d.r[i], *y = &rec[i];
        ck_assert_int_eq(x->type, y->type);
        ck_assert_uint_eq(x->envelope_id, y->envelope_id);
        ck_assert_uint_eq(x->user, y->user);
        ck_assert_uint_eq(x->amount, y->amount);
        check_env_eq(&x->envelope, &y->envelope);
        ck_assert_uint_eq(x->max_envelope_id, y->max_envelope_id);
        ck_assert_uint_eq(x->outstanding, y->outstanding);
        ck_assert_mem_eq(&x->totals, &y->totals, sizeof x->totals);
        off += rec[i].size;
    }

    /* A record callback stops the scan with its value, good_end after that record. */
    memset(&d, 0, sizeof d);
    d.stop_at = 2;
    ck_assert_int_eq(hb_ledger_scan(buf, len, keep_record, &d, &good_end), -7);
    ck_assert_uint_eq(good_end, 12 + rec[0].size + rec[1].size);
    ck_assert_uint_eq(d.n, 2);

    /* Encoder errors. */
    hb_ledger_record_t bad = rec[0];
    bad.type = (hb_ledger_type_t)9;
    ck_assert_int_eq(hb_ledger_encode(&bad, buf, sizeof buf), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_encode(&rec[0], buf, 48), UV_ENOBUFS);
    ck_assert_int_eq(hb_ledger_encode(&rec[0], buf, 49), 49);

    /* Empty and header-only images are valid. */
    ck_assert_int_eq(hb_ledger_scan(buf, 0, NULL, NULL, &good_end), 0);
    ck_assert_uint_eq(good_end, 0);
    memcpy(buf, "HBLEDGER\0\0\0\1", 12);
    ck_assert_int_eq(hb_ledger_scan(buf, 12, NULL, NULL, &good_end), 0);
    ck_assert_uint_eq(good_end, 12);
}
END_TEST

/* Copy len bytes to the very end of a page followed by a PROT_NONE page: an over-read faults. */
typedef struct guarded {
    uint8_t *map;
    size_t page;
} guarded_t;

static uint8_t *guarded_copy(guarded_t *g, const uint8_t *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    g->page = page;
    g->map =
        mmap(NULL, (pages + 1) * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(g->map, MAP_FAILED);
    ck_assert_int_eq(mprotect(g->map + pages * page, page, PROT_NONE), 0);
    uint8_t *dst = g->map + pages * page - len;
    memcpy(dst, src, len);
    return dst;
}

static void guarded_free(guarded_t *g, size_t len)
{
    size_t pages = (len + g->page - 1) / g->page + 1;
    munmap(g->map, (pages + 1) * g->page);
}

static int count_record(void *arg, const hb_ledger_record_t *r, size_t offset)
{
    (void)r;
    (void)offset;
    (*(size_t *)arg)++;
    return 0;
}

START_TEST(test_scan_every_prefix_is_ok_or_torn)
{
    uint8_t img[512];
    hb_ledger_record_t rec[5];
    size_t len = all_types_image(img, sizeof img, rec);
    for (size_t cut = 0; cut <= len; cut++) {
        guarded_t g;
        uint8_t *p = guarded_copy(&g, img, cut);
        size_t n = 0, good_end = 99999;
        int rc = hb_ledger_scan(p, cut, count_record, &n, &good_end);
        /* The whole records within the prefix, and where they end. */
        size_t whole = 0, end = cut < 12 ? 0 : 12;
        for (size_t off = 12; whole < 5 && off + rec[whole].size <= cut; whole++)
            off = end = off + rec[whole].size;
        ck_assert_int_eq(rc, cut == end ? 0 : HB_LEDGER_TORN);
        ck_assert_uint_eq(n, whole);
        ck_assert_uint_eq(good_end, end);
        size_t again = 0, end2 = 0;
        ck_assert_int_eq(hb_ledger_scan(p, good_end, count_record, &again, &end2), 0);
        ck_assert_uint_eq(again, n);
        ck_assert_uint_eq(end2, good_end);
        guarded_free(&g, cut);
    }
}
END_TEST

START_TEST(test_scan_torn_versus_corrupt)
{
    uint8_t img[512], buf[600];
    hb_ledger_record_t rec[5];
    size_t len = all_types_image(img, sizeof img, rec);
    size_t last = len - rec[4].size;
    size_t second = 12 + rec[0].size;
    size_t good_end;

    /* A CRC mismatch in the record that ends the file: torn. */
    memcpy(buf, img, len);
    buf[len - 1] ^= 0x01;
    ck_assert_int_eq(hb_ledger_scan(buf, len, NULL, NULL, &good_end), HB_LEDGER_TORN);
    ck_assert_uint_eq(good_end, last);
    ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), "CRC mismatch"));

    /* ... and in an earlier record: corrupt, naming its offset. */
    memcpy(buf, img, len);
    buf[second + 10] ^= 0x40;
    ck_assert_int_eq(hb_ledger_scan(buf, len, NULL, NULL, &good_end), HB_ECORRUPT);
    ck_assert_uint_eq(good_end, second);
    char want[64];
    snprintf(want, sizeof want, "offset %zu:", second);
    ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), want));

    /* An impossible length with valid records after it: corrupt. */
    memcpy(buf, img, len);
    buf[second + 3] = 14;
    ck_assert_int_eq(hb_ledger_scan(buf, len, NULL, NULL, &good_end), HB_ECORRUPT);
    ck_assert_uint_eq(good_end, second);
    ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), "impossible length 14"));

    /* A zero-filled or garbage tail with nothing valid in it: torn. */
    memcpy(buf, img, len);
    memset(buf + len, 0, 40);
    ck_assert_int_eq(hb_ledger_scan(buf, len + 40, NULL, NULL, &good_end), HB_LEDGER_TORN);
    ck_assert_uint_eq(good_end, len);
    for (size_t i = 0; i < 40; i++)
        buf[len + i] = (uint8_t)(0xA5 ^ i);
    ck_assert_int_eq(hb_ledger_scan(buf, len + 40, NULL, NULL, &good_end), HB_LEDGER_TORN);
    ck_assert_uint_eq(good_end, len);

    /* A record with a matching CRC but an unknown type is corrupt, even at the end. */
    memcpy(buf, img, len);
    uint8_t *f = buf + len;
    static const uint8_t payload[13] = {9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint32_t crc = hb_ledger_crc32c(payload, sizeof payload);
    f[0] = 0, f[1] = 0, f[2] = 0, f[3] = 13;
    f[4] = (uint8_t)(crc >> 24), f[5] = (uint8_t)(crc >> 16), f[6] = (uint8_t)(crc >> 8);
    f[7] = (uint8_t)crc;
    memcpy(f + 8, payload, sizeof payload);
    ck_assert_int_eq(hb_ledger_scan(buf, len + 21, NULL, NULL, &good_end), HB_ECORRUPT);
    ck_assert_uint_eq(good_end, len);

    /* Headers: not a journal, another version, cut short. */
    memcpy(buf, img, len);
    buf[0] = 'X';
    ck_assert_int_eq(hb_ledger_scan(buf, len, NULL, NULL, &good_end), HB_ECORRUPT);
    ck_assert_uint_eq(good_end, 0);
    memcpy(buf, img, len);
    buf[11] = 2;
    ck_assert_int_eq(hb_ledger_scan(buf, len, NULL, NULL, &good_end), UV_ENOTSUP);
    ck_assert_int_eq(hb_ledger_scan(img, 5, NULL, NULL, &good_end), HB_LEDGER_TORN);
    ck_assert_uint_eq(good_end, 0);
    ck_assert_int_eq(hb_ledger_scan((const uint8_t *)"HBX", 3, NULL, NULL, &good_end), HB_ECORRUPT);
}
END_TEST

/* ---- Open, append, replay ---- */

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
    ck_assert_uint_eq(file_size(jpath), HB_LEDGER_HEADER_SIZE);

    /* One ledger per directory. */
    hb_ledger_t other;
    ck_assert_int_eq(hb_ledger_open(&other, &o, NULL, NULL), UV_EBUSY);
    ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), "LOCK"));

    /* Envelopes must be well formed and unclaimed. */
    hb_sendenv_t e = make_env(1);
    uint64_t seq = 0;
    e.shares[0]++;
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    e = make_env(1);
    e.recipients[2] = e.recipients[0];
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    e = make_env(1);
    e.claimed = 1;
    e.claimed_sum = e.shares[0];
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), UV_EINVAL);
    ck_assert_int_eq(hb_ledger_append_envelope(&l, NULL, &seq), UV_EINVAL);
    ck_assert_uint_eq(seq, 0);
    e = make_env(1);
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), 0);
    ck_assert_uint_eq(seq, 1);
    ck_assert_int_eq(hb_ledger_append_claim(&l, 1, e.recipients[0], e.shares[0], &seq), 0);
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
    ck_assert_int_eq(hb_ledger_append_claim(&l, 1, 2, 3, NULL), UV_EINVAL); /* closed */

    /* The lock went with the close. */
    ck_assert_int_eq(hb_ledger_open(&other, &o, NULL, NULL), 0);
    ck_assert_uint_eq(other.stats.replayed, 2);
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
    ck_assert_uint_eq(l.max_envelope_id, 0x200005); /* fully claimed, still counted */
    ck_assert_uint_eq(l.stats.replayed, 13);
    ck_assert_uint_eq(l.stats.outstanding, 3);
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
    ck_assert_uint_eq(c.n, 3);
    ck_assert_uint_eq(c.e[0].claimed, 2);
    ck_assert_uint_eq(c.e[0].claimed_sum, e1.shares[1]);
    hb_ledger_close(&l);
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

static void gc_worker(void *arg)
{
    gc_thread_t *t = arg;
    for (uint32_t i = 0; i < GC_PER; i++) {
        hb_sendenv_t e = make_env(0x300000 + t->index * GC_PER + i);
        uint64_t seq = 0;
        if (hb_ledger_append_envelope(t->sh->l, &e, &seq) != 0)
            t->failures++;
        t->sh->seqs[t->index][i] = seq;
    }
}

static void count_env(void *arg, const hb_sendenv_t *e)
{
    (void)e;
    (*(size_t *)arg)++;
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
    const uint64_t total = GC_THREADS * GC_PER;
    ck_assert_int_eq(hb_ledger_wait_durable(&l, total, 30000), 0);
    hb_ledger_close(&l);
    uv_mutex_destroy(&sh.gate);

    /* Every record got its own sequence number, increasing within each thread. */
    static uint8_t seen[GC_THREADS * GC_PER + 1];
    memset(seen, 0, sizeof seen);
    for (unsigned t = 0; t < GC_THREADS; t++) {
        for (unsigned i = 0; i < GC_PER; i++) {
            uint64_t s = sh.seqs[t][i];
            ck_assert_uint_ge(s, 1);
            ck_assert_uint_le(s, total);
            ck_assert_uint_eq(seen[s], 0);
            seen[s] = 1;
            if (i > 0)
                ck_assert_uint_gt(s, sh.seqs[t][i - 1]);
        }
    }
    /* All durable, reported in increasing order, in far fewer writes than records. */
    ck_assert_uint_eq(l.stats.appended, total);
    ck_assert_uint_eq(l.stats.durable, total);
    ck_assert_uint_eq(l.stats.synced, total);
    ck_assert_uint_eq(l.stats.records, total);
    ck_assert_int_eq(sh.non_monotonic, 0);
    ck_assert_uint_eq(sh.last, total);
    ck_assert_uint_lt(l.stats.writes, total);
    ck_assert_uint_le(l.stats.writes, 4);
    ck_assert_uint_ge(l.stats.fsyncs, sh.calls);
    ck_assert_uint_eq(l.stats.bytes, 12 + total * 49);

    size_t n = 0;
    ck_assert_int_eq(hb_ledger_open(&l, &o, count_env, &n), 0);
    ck_assert_uint_eq(n, total);
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
        hb_sendenv_t e = make_env(i);
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
    hb_sendenv_t e = make_env(1);
    uint64_t seq;
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, &seq), 0);
    ck_assert_int_eq(hb_ledger_wait_synced(&l, seq, 10000), 0);
    /* The second record is synced by the timed wait, within the second after the first sync,
     * with nothing else appended and no close. */
    e = make_env(2);
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
        hb_sendenv_t e = make_env(i);
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
    /* Without the last record (the expiry of envelope 4), envelope 4 is still outstanding. */
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
        ck_assert_uint_eq(c.n, 4);
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
    ck_assert_uint_eq(file_size(jpath), HB_LEDGER_HEADER_SIZE);
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
        ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), want));
        ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), jpath));
        ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), "CRC mismatch"));
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
    ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), want));

    /* Not a journal; a journal of another version. */
    memcpy(bad, full, len);
    bad[3] = 'X';
    write_all_file(jpath, bad, len);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), HB_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(hb_ledger_last_error(), "not a ledger journal"));
    memcpy(bad, full, len);
    bad[11] = 9;
    write_all_file(jpath, bad, len);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), UV_ENOTSUP);
    free(bad);
    free(full);
}
END_TEST

/* ---- Compaction ---- */

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

    /* 600 envelopes, all fully claimed but ids 100..109 (some partly claimed). */
    uint64_t issued = 0, claimed = 0, claims = 0, appended_bytes = 12;
    for (uint32_t id = 1; id <= 600; id++) {
        hb_sendenv_t e = make_env(id);
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
    }
    hb_ledger_close(&l);
    ck_assert_uint_ge(l.stats.compactions, 1);
    ck_assert_uint_le(l.stats.bytes, 4096);
    ck_assert_uint_lt(l.stats.bytes, appended_bytes);
    ck_assert_uint_eq(file_size(jpath), l.stats.bytes);
    ck_assert_uint_eq(l.stats.outstanding, 10);
    ck_assert_ptr_nonnull(strstr(log.all, "compacted"));
    ck_assert_int_eq(access(tmp, F_OK), -1);

    /* The same outstanding set comes back, and ids continue after the highest ever issued. */
    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_uint_eq(l.max_envelope_id, 600);
    hb_ledger_close(&l);
    collected_sort(&c);
    ck_assert_uint_eq(c.n, 10);
    for (uint32_t i = 0; i < 10; i++) {
        hb_sendenv_t want = make_env(100 + i);
        unsigned n = (100 + i) % 3;
        want.claimed = (uint8_t)((1u << n) - 1);
        for (unsigned k = 0; k < n; k++)
            want.claimed_sum += want.shares[k];
        check_env_eq(&c.e[i], &want);
    }

    /* The compacted journal still balances, with the lifetime totals. */
    hb_ledger_audit_t t;
    ck_assert_int_eq(hb_ledger_audit(jdir, &t, NULL, NULL), 0);
    ck_assert_uint_eq(t.totals.envelopes, 600);
    ck_assert_uint_eq(t.totals.claims, claims);
    ck_assert_uint_eq(t.totals.issued, issued);
    ck_assert_uint_eq(t.totals.claimed, claimed);
    ck_assert_uint_eq(t.outstanding, 10);
    ck_assert_uint_eq(t.outstanding_amount, issued - claimed);
    ck_assert_uint_eq(t.max_envelope_id, 600);
    uv_mutex_destroy(&log.mu);
}
END_TEST

START_TEST(test_no_compaction_below_minimum)
{
    hb_ledger_t l;
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, NULL);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    for (uint32_t id = 1; id <= 300; id++) {
        hb_sendenv_t e = make_env(id);
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
        for (unsigned i = 0; i < 3; i++)
            claim_share(&l, &e, i);
    }
    hb_ledger_close(&l);
    ck_assert_uint_eq(l.stats.compactions, 0);
    ck_assert_uint_eq(l.stats.bytes, 12 + 300 * (49 + 3 * 21));
    ck_assert_uint_eq(l.stats.outstanding, 0);
}
END_TEST

/* ---- The sticky I/O error ---- */

/* A write past RLIMIT_FSIZE fails with EFBIG, as root too: the writer's I/O error without a test
 * hook. While the limit is low nothing but the journal may grow, so no ck_assert runs then (Check
 * may write its progress to a file). */
START_TEST(test_sticky_io_error)
{
    signal(SIGXFSZ, SIG_IGN);
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_ALWAYS, &log);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    for (uint32_t id = 1; id <= 200; id++) {
        hb_sendenv_t e = make_env(id);
        ck_assert_int_eq(hb_ledger_append_envelope(&l, &e, NULL), 0);
    }
    ck_assert_int_eq(hb_ledger_wait_durable(&l, 200, 10000), 0);
    uint64_t size = file_size(jpath);
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);

    struct rlimit low = saved;
    low.rlim_cur = (rlim_t)size + 30; /* room for one claim and part of the next */
    int set = setrlimit(RLIMIT_FSIZE, &low);
    hb_sendenv_t e = make_env(1);
    int a1 = hb_ledger_append_claim(&l, 1, e.recipients[0], e.shares[0], NULL);
    int a2 = hb_ledger_append_claim(&l, 1, e.recipients[1], e.shares[1], NULL);
    int waited = hb_ledger_wait_durable(&l, 202, 10000);
    int a3 = hb_ledger_append_claim(&l, 1, e.recipients[2], e.shares[2], NULL);
    int a4 = hb_ledger_append_expire(&l, 2, NULL);
    int restored = setrlimit(RLIMIT_FSIZE, &saved);

    ck_assert_int_eq(set, 0);
    ck_assert_int_eq(restored, 0);
    ck_assert_int_eq(a1, 0);
    ck_assert_int_eq(a2, 0);
    ck_assert_int_eq(waited, UV_EFBIG);
    ck_assert_int_eq(a3, UV_EFBIG);
    ck_assert_int_eq(a4, UV_EFBIG);
    hb_ledger_close(&l);
    ck_assert_int_eq(logbook_lines(&log), 1); /* logged once */
    ck_assert_ptr_nonnull(strstr(log.last, "EFBIG"));
    ck_assert_uint_lt(l.stats.durable, 202);

    /* What reached the file before the error is replayed; the part-written record is torn. */
    collected_t c = {0};
    ck_assert_int_eq(hb_ledger_open(&l, &o, collect, &c), 0);
    ck_assert_int_eq(logbook_lines(&log), 2);
    ck_assert_ptr_nonnull(strstr(log.last, "torn"));
    hb_ledger_close(&l);
    ck_assert_uint_eq(c.n, 200);
    ck_assert_uint_eq(l.stats.replayed, 201); /* the first claim fitted */
    uv_mutex_destroy(&log.mu);
}
END_TEST

/* ---- Audit ---- */

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

START_TEST(test_audit_clean_books)
{
    make_history_journal();
    hb_ledger_audit_t t;
    found_t f = {0};
    ck_assert_int_eq(hb_ledger_audit(jdir, &t, on_violation, &f), 0);
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
    ck_assert_uint_eq(t.totals.issued,
                      t.totals.claimed + t.totals.expired_amount + t.outstanding_amount);
    ck_assert_uint_eq(t.max_envelope_id, 0x200005);
    ck_assert_int_eq(t.torn, 0);

    /* A torn tail is a warning, not a violation; the audit never truncates. */
    size_t len;
    uint8_t *full = read_all(jpath, &len);
    write_all_file(jpath, full, len - 3);
    ck_assert_int_eq(hb_ledger_audit(jdir, &t, on_violation, &f), 0);
    ck_assert_int_eq(t.torn, 1);
    ck_assert_uint_eq(t.torn_offset, len - 13); /* the expiry: 8 + 5 bytes */
    ck_assert_uint_eq(t.records, 12);
    ck_assert_uint_eq(file_size(jpath), len - 3);
    free(full);

    /* No journal, or not a journal. */
    char nowhere[256];
    snprintf(nowhere, sizeof nowhere, "%s/none", tmpdir);
    ck_assert_int_eq(hb_ledger_audit(nowhere, &t, NULL, NULL), UV_ENOENT);
    write_all_file(jpath, (const uint8_t *)"hello, world", 12);
    ck_assert_int_eq(hb_ledger_audit(jdir, &t, NULL, NULL), HB_ECORRUPT);
}
END_TEST

START_TEST(test_audit_reports_violations)
{
    hb_ledger_t l;
    logbook_t log;
    logbook_init(&log);
    hb_ledger_options_t o = opts_for(HB_FSYNC_NO, &log);
    ck_assert_int_eq(hb_ledger_open(&l, &o, NULL, NULL), 0);
    hb_sendenv_t a = make_env(10), b = make_env(11);
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &a, NULL), 0);      /* 0 */
    claim_share(&l, &a, 0);                                            /* 1 */
    claim_share(&l, &a, 0);                                            /* 2: twice */
    ck_assert_int_eq(hb_ledger_append_claim(&l, 10, 999, 5, NULL), 0); /* 3: stranger */
    ck_assert_int_eq(hb_ledger_append_envelope(&l, &b, NULL), 0);      /* 4 */
    ck_assert_int_eq(hb_ledger_append_claim(&l, 11, b.recipients[1], 9999, NULL), 0); /* 5 */
    ck_assert_int_eq(hb_ledger_append_expire(&l, 77, NULL), 0);      /* 6: unknown */
    ck_assert_int_eq(hb_ledger_append_claim(&l, 78, 1, 1, NULL), 0); /* 7: unknown */
    hb_ledger_close(&l);
    /* The writer journals them as given, logging what makes no sense in its books. */
    ck_assert_uint_eq(l.stats.anomalies, 5);
    ck_assert_int_eq(logbook_lines(&log), 5);
    ck_assert_ptr_nonnull(strstr(log.all, "record seq 3: second claim"));

    size_t len;
    uint8_t *full = read_all(jpath, &len);
    offsets_t offs;
    journal_offsets(full, len, &offs);
    ck_assert_uint_eq(offs.n, 8);
    free(full);

    hb_ledger_audit_t t;
    found_t f = {0};
    int n = hb_ledger_audit(jdir, &t, on_violation, &f);
    ck_assert_int_eq(n, (int)f.n);
    ck_assert_uint_eq(t.violations, f.n);
    ck_assert_int_ge(find_violation(&f, offs.off[2], "second claim of envelope 10 by user 31"), 0);
    ck_assert_int_ge(find_violation(&f, offs.off[3], "not a recipient of envelope 10"), 0);
    ck_assert_int_ge(find_violation(&f, offs.off[5], "whose share is 20"), 0);
    ck_assert_int_ge(find_violation(&f, offs.off[5], "envelope 11 over-claimed"), 0);
    ck_assert_int_ge(find_violation(&f, offs.off[6], "expiry of envelope 77"), 0);
    ck_assert_int_ge(find_violation(&f, offs.off[7], "envelope 78, which was never issued"), 0);
    ck_assert_int_ge(find_violation(&f, len, "do not balance"), 0);
    ck_assert_uint_eq(f.n, 7);
    /* Nothing reported against the good records. */
    ck_assert_int_eq(find_violation(&f, offs.off[0], ""), -1);
    ck_assert_int_eq(find_violation(&f, offs.off[1], ""), -1);
    ck_assert_int_eq(find_violation(&f, offs.off[4], ""), -1);
    ck_assert_uint_eq(t.totals.claims, 5);
    uv_mutex_destroy(&log.mu);
}
END_TEST

START_TEST(test_audit_full_claim_short_of_total_and_corruption)
{
    /* Crafted with the encoder: an envelope whose shares do not add up, fully claimed. */
    uint8_t img[1024];
    memcpy(img, "HBLEDGER\0\0\0\1", 12);
    size_t off = 12;
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_ENVELOPE;
    r.envelope = make_env(5);
    r.envelope.total += 1;
    off += (size_t)hb_ledger_encode(&r, img + off, sizeof img - off);
    size_t claims_at[3];
    for (unsigned i = 0; i < 3; i++) {
        memset(&r, 0, sizeof r);
        r.type = HB_LEDGER_CLAIM;
        r.envelope_id = 5;
        r.user = make_env(5).recipients[i];
        r.amount = make_env(5).shares[i];
        claims_at[i] = off;
        off += (size_t)hb_ledger_encode(&r, img + off, sizeof img - off);
    }
    found_t f = {0};
    hb_ledger_audit_t t;
    ck_assert_int_eq(hb_ledger_audit_buf(img, off, &t, on_violation, &f), 3);
    ck_assert_int_ge(find_violation(&f, 12, "malformed"), 0);
    ck_assert_int_ge(find_violation(&f, claims_at[2], "fully claimed for"), 0);
    ck_assert_int_ge(find_violation(&f, off, "do not balance"), 0);

    /* A corrupt record in the middle is a violation at its offset; the rest is not checked. */
    img[claims_at[1] + 12] ^= 1;
    memset(&f, 0, sizeof f);
    ck_assert_int_ge(hb_ledger_audit_buf(img, off, &t, on_violation, &f), 1);
    ck_assert_int_ge(find_violation(&f, claims_at[1], "CRC mismatch"), 0);
    ck_assert_uint_eq(t.records, 2);
}
END_TEST

static Suite *ledger_suite(void)
{
    Suite *s = suite_create("ledger");
    TCase *format = tcase_create("format");
    tcase_add_test(format, test_crc32c_vectors);
    tcase_add_test(format, test_fsync_parse);
    tcase_add_test(format, test_encode_scan_round_trip);
    tcase_add_test(format, test_scan_every_prefix_is_ok_or_torn);
    tcase_add_test(format, test_scan_torn_versus_corrupt);
    suite_add_tcase(s, format);

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
    tcase_add_test(journal, test_no_compaction_below_minimum);
    tcase_add_test(journal, test_sticky_io_error);
    tcase_add_test(journal, test_audit_clean_books);
    tcase_add_test(journal, test_audit_reports_violations);
    suite_add_tcase(s, journal);

    TCase *audit = tcase_create("audit");
    tcase_add_test(audit, test_audit_full_claim_short_of_total_and_corruption);
    suite_add_tcase(s, audit);
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
