/* Unit tests for the journal module, in the core (no libuv): CRC32C, the record format (versions 1
 * and 2), the decoder and the scanner (torn vs corrupt, every prefix before a guard page), the
 * error reasons left in the caller's structs, and the audit of crafted books (snapshots included).
 * The writer's tests, which write journals through the ledger, are in test_ledger.c. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hongbao/core.h"

/* ---- Helpers ---- */

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

static size_t craft_envelope(craft_t *c, const hb_sendenv_t *e)
{
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_ENVELOPE;
    r.envelope = *e;
    r.envelope_id = e->id;
    return craft_put(c, &r);
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

static size_t craft_claim(craft_t *c, uint32_t id, uint32_t user, uint32_t amount)
{
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_CLAIM;
    r.envelope_id = id;
    r.user = user;
    r.amount = amount;
    return craft_put(c, &r);
}

static size_t craft_expire(craft_t *c, uint32_t id)
{
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_EXPIRE;
    r.envelope_id = id;
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

/* ---- CRC, encoding, decoding, scanning ---- */

START_TEST(test_crc32c_vectors)
{
    ck_assert_uint_eq(hb_journal_crc32c("123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(hb_journal_crc32c("", 0), 0);
    /* RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xFF, and 0..31. */
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    ck_assert_uint_eq(hb_journal_crc32c(buf, sizeof buf), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof buf);
    ck_assert_uint_eq(hb_journal_crc32c(buf, sizeof buf), 0x62A8AB43u);
    for (unsigned i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)i;
    ck_assert_uint_eq(hb_journal_crc32c(buf, sizeof buf), 0x46DD794Eu);
}
END_TEST

#define ALL_TYPES 6

/* One record of every type, encoded after a version 2 header. */
static size_t all_types_image(uint8_t *buf, size_t cap, hb_journal_record_t rec[ALL_TYPES])
{
    memset(rec, 0, ALL_TYPES * sizeof rec[0]);
    rec[0].type = HB_JOURNAL_ENVELOPE;
    rec[0].envelope = make_env(0x01020304);
    rec[0].envelope_id = rec[0].envelope.id;
    rec[1].type = HB_JOURNAL_CLAIM;
    rec[1].envelope_id = 0x01020304;
    rec[1].user = 0xA0B0C0D0;
    rec[1].amount = 10;
    rec[2].type = HB_JOURNAL_EXPIRE;
    rec[2].envelope_id = 0xFFFFFFFF;
    rec[3].type = HB_JOURNAL_STATE;
    rec[3].envelope = make_env(7);
    rec[3].envelope.claimed = 4;
    rec[3].envelope.claimed_sum = rec[3].envelope.shares[2];
    rec[3].envelope_id = 7;
    rec[4].type = HB_JOURNAL_SNAPSHOT;
    rec[4].max_envelope_id = 0x7FFFFFFF;
    rec[4].outstanding = 3;
    rec[4].totals = (hb_journal_totals_t){1, 2, 3, UINT64_C(0x0102030405060708), 5, 6};
    rec[5].type = HB_JOURNAL_RESERVE;
    rec[5].kind = HB_ENVELOPE_SHAKE;
    rec[5].last = 0x80A0B0C0;
    memcpy(buf, "HBLEDGER\0\0\0\2", HB_JOURNAL_HEADER_SIZE);
    size_t off = HB_JOURNAL_HEADER_SIZE;
    for (int i = 0; i < ALL_TYPES; i++) {
        int n = hb_journal_encode(&rec[i], buf + off, cap - off);
        ck_assert_int_gt(n, 0);
        rec[i].size = (size_t)n;
        off += (size_t)n;
    }
    return off;
}

typedef struct decoded {
    hb_journal_record_t r[8];
    size_t off[8];
    size_t n;
    int stop_at; /* return -7 from this record on (if > 0) */
} decoded_t;

static int keep_record(void *arg, const hb_journal_record_t *r, size_t offset)
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
    hb_journal_record_t rec[ALL_TYPES];
    size_t len = all_types_image(buf, sizeof buf, rec);
    ck_assert_uint_eq(len, 12 + (8 + 41) + (8 + 13) + (8 + 5) + (8 + 46) + (8 + 57) + (8 + 6));
    /* RESERVE: type, kind, last. */
    static const uint8_t reserve_payload[] = {6, 1, 0x80, 0xA0, 0xB0, 0xC0};
    ck_assert_mem_eq(buf + len - 6, reserve_payload, 6);
    ck_assert_uint_eq(buf[len - 14 + 3], 6);
    /* Framing: big-endian length, then the CRC32C of the payload. */
    static const uint8_t claim_frame[] = {0, 0, 0, 13};
    ck_assert_mem_eq(buf + 12 + 49, claim_frame, 4);
    ck_assert_uint_eq(buf[12 + 49 + 8], HB_JOURNAL_CLAIM);

    decoded_t d;
    memset(&d, 0, sizeof d);
    hb_journal_scan_t sr;
    ck_assert_int_eq(hb_journal_scan(buf, len, keep_record, &d, &sr), 0);
    ck_assert_uint_eq(sr.good_end, len);
    ck_assert_uint_eq(d.n, ALL_TYPES);
    size_t off = 12;
    for (size_t i = 0; i < ALL_TYPES; i++) {
        ck_assert_uint_eq(d.off[i], off);
        ck_assert_uint_eq(d.r[i].size, rec[i].size);
        const hb_journal_record_t *x = &d.r[i], *y = &rec[i];
        ck_assert_int_eq(x->type, y->type);
        ck_assert_uint_eq(x->envelope_id, y->envelope_id);
        ck_assert_uint_eq(x->user, y->user);
        ck_assert_uint_eq(x->amount, y->amount);
        check_env_eq(&x->envelope, &y->envelope);
        ck_assert_uint_eq(x->max_envelope_id, y->max_envelope_id);
        ck_assert_uint_eq(x->outstanding, y->outstanding);
        ck_assert_mem_eq(&x->totals, &y->totals, sizeof x->totals);
        ck_assert_uint_eq(x->kind, y->kind);
        ck_assert_uint_eq(x->last, y->last);
        off += rec[i].size;
    }

    /* A record callback stops the scan with its value, good_end after that record. */
    memset(&d, 0, sizeof d);
    d.stop_at = 2;
    ck_assert_int_eq(hb_journal_scan(buf, len, keep_record, &d, &sr), -7);
    ck_assert_uint_eq(sr.good_end, 12 + rec[0].size + rec[1].size);
    ck_assert_uint_eq(d.n, 2);

    /* Encoder errors. */
    hb_journal_record_t bad = rec[0];
    bad.type = (hb_journal_type_t)9;
    ck_assert_int_eq(hb_journal_encode(&bad, buf, sizeof buf), HB_EINVAL);
    bad.type = (hb_journal_type_t)7;
    ck_assert_int_eq(hb_journal_encode(&bad, buf, sizeof buf), HB_EINVAL);
    bad.type = (hb_journal_type_t)0;
    ck_assert_int_eq(hb_journal_encode(&bad, buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_journal_encode(&rec[5], buf, 13), HB_ENOBUFS);
    ck_assert_int_eq(hb_journal_encode(&rec[5], buf, 14), 14);
    ck_assert_int_eq(hb_journal_encode(&rec[0], buf, 48), HB_ENOBUFS);
    ck_assert_int_eq(hb_journal_encode(&rec[0], buf, 49), 49);

    /* Empty and header-only images are valid. */
    ck_assert_int_eq(hb_journal_scan(buf, 0, NULL, NULL, &sr), 0);
    ck_assert_uint_eq(sr.good_end, 0);
    memcpy(buf, "HBLEDGER\0\0\0\1", 12);
    ck_assert_int_eq(hb_journal_scan(buf, 12, NULL, NULL, &sr), 0);
    ck_assert_uint_eq(sr.good_end, 12);
    memcpy(buf, "HBLEDGER\0\0\0\2", 12);
    ck_assert_int_eq(hb_journal_scan(buf, 12, NULL, NULL, &sr), 0);
    ck_assert_uint_eq(sr.good_end, 12);
}
END_TEST

/* A version 1 journal: the same records but RESERVE, which is unknown there. */
START_TEST(test_scan_version_1)
{
    uint8_t img[512], buf[600];
    hb_journal_record_t rec[ALL_TYPES];
    size_t len = all_types_image(img, sizeof img, rec);
    size_t reserve_at = len - rec[5].size;
    hb_journal_scan_t sr;
    memcpy(buf, img, len);
    buf[11] = 1;
    decoded_t d;
    memset(&d, 0, sizeof d);
    ck_assert_int_eq(hb_journal_scan(buf, reserve_at, keep_record, &d, &sr), 0);
    ck_assert_uint_eq(d.n, 5);
    ck_assert_uint_eq(sr.good_end, reserve_at);

    /* A RESERVE with a good CRC in a version 1 journal: its length is impossible there; followed by
     * a valid record it is corrupt, at the end a torn tail. */
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_JOURNAL_TORN);
    ck_assert_uint_eq(sr.good_end, reserve_at);
    memcpy(buf + len, img + 12, rec[0].size);
    ck_assert_int_eq(hb_journal_scan(buf, len + rec[0].size, NULL, NULL, &sr), HB_ECORRUPT);
    ck_assert_uint_eq(sr.good_end, reserve_at);
    ck_assert_ptr_nonnull(strstr(sr.errstr, "impossible length 6"));
    /* The same in version 2 is fine. */
    buf[11] = 2;
    ck_assert_int_eq(hb_journal_scan(buf, len + rec[0].size, NULL, NULL, &sr), 0);

    /* Versions 0 and 4 are not read. */
    buf[11] = 4;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ENOTSUP);
    ck_assert_ptr_nonnull(strstr(sr.errstr, "version 4"));
    buf[11] = 0;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ENOTSUP);
    /* A header cut short is torn whatever version it was going to name. */
    ck_assert_int_eq(hb_journal_scan(buf, 11, NULL, NULL, &sr), HB_JOURNAL_TORN);
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

static int count_record(void *arg, const hb_journal_record_t *r, size_t offset)
{
    (void)r;
    (void)offset;
    (*(size_t *)arg)++;
    return 0;
}

START_TEST(test_scan_every_prefix_is_ok_or_torn)
{
    uint8_t img[512];
    hb_journal_record_t rec[ALL_TYPES];
    size_t len = all_types_image(img, sizeof img, rec);
    for (size_t cut = 0; cut <= len; cut++) {
        guarded_t g;
        uint8_t *p = guarded_copy(&g, img, cut);
        size_t n = 0;
        hb_journal_scan_t sr, sr2;
        sr.good_end = 99999;
        int rc = hb_journal_scan(p, cut, count_record, &n, &sr);
        /* The whole records within the prefix, and where they end. */
        size_t whole = 0, end = cut < 12 ? 0 : 12;
        for (size_t off = 12; whole < ALL_TYPES && off + rec[whole].size <= cut; whole++)
            off = end = off + rec[whole].size;
        ck_assert_int_eq(rc, cut == end ? 0 : HB_JOURNAL_TORN);
        ck_assert_uint_eq(n, whole);
        ck_assert_uint_eq(sr.good_end, end);
        size_t again = 0;
        sr2.good_end = 0;
        ck_assert_int_eq(hb_journal_scan(p, sr.good_end, count_record, &again, &sr2), 0);
        ck_assert_uint_eq(again, n);
        ck_assert_uint_eq(sr2.good_end, sr.good_end);
        guarded_free(&g, cut);
    }
}
END_TEST

START_TEST(test_scan_torn_versus_corrupt)
{
    uint8_t img[512], buf[600];
    hb_journal_record_t rec[ALL_TYPES];
    size_t len = all_types_image(img, sizeof img, rec);
    size_t last = len - rec[ALL_TYPES - 1].size;
    size_t second = 12 + rec[0].size;
    hb_journal_scan_t sr;

    /* A CRC mismatch in the record that ends the file: torn. */
    memcpy(buf, img, len);
    buf[len - 1] ^= 0x01;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_JOURNAL_TORN);
    ck_assert_uint_eq(sr.good_end, last);
    ck_assert_ptr_nonnull(strstr(sr.errstr, "CRC mismatch"));

    /* ... and in an earlier record: corrupt, naming its offset. */
    memcpy(buf, img, len);
    buf[second + 10] ^= 0x40;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ECORRUPT);
    ck_assert_uint_eq(sr.good_end, second);
    char want[64];
    snprintf(want, sizeof want, "offset %zu:", second);
    ck_assert_ptr_nonnull(strstr(sr.errstr, want));

    /* An impossible length with valid records after it: corrupt. */
    memcpy(buf, img, len);
    buf[second + 3] = 14;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ECORRUPT);
    ck_assert_uint_eq(sr.good_end, second);
    ck_assert_ptr_nonnull(strstr(sr.errstr, "impossible length 14"));

    /* A zero-filled or garbage tail with nothing valid in it: torn. */
    memcpy(buf, img, len);
    memset(buf + len, 0, 40);
    ck_assert_int_eq(hb_journal_scan(buf, len + 40, NULL, NULL, &sr), HB_JOURNAL_TORN);
    ck_assert_uint_eq(sr.good_end, len);
    for (size_t i = 0; i < 40; i++)
        buf[len + i] = (uint8_t)(0xA5 ^ i);
    ck_assert_int_eq(hb_journal_scan(buf, len + 40, NULL, NULL, &sr), HB_JOURNAL_TORN);
    ck_assert_uint_eq(sr.good_end, len);

    /* A record with a matching CRC but an unknown type is corrupt, even at the end. */
    memcpy(buf, img, len);
    uint8_t *f = buf + len;
    static const uint8_t payload[13] = {9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint32_t crc = hb_journal_crc32c(payload, sizeof payload);
    f[0] = 0, f[1] = 0, f[2] = 0, f[3] = 13;
    f[4] = (uint8_t)(crc >> 24), f[5] = (uint8_t)(crc >> 16), f[6] = (uint8_t)(crc >> 8);
    f[7] = (uint8_t)crc;
    memcpy(f + 8, payload, sizeof payload);
    ck_assert_int_eq(hb_journal_scan(buf, len + 21, NULL, NULL, &sr), HB_ECORRUPT);
    ck_assert_uint_eq(sr.good_end, len);

    /* Headers: not a journal, another version, cut short. */
    memcpy(buf, img, len);
    buf[0] = 'X';
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ECORRUPT);
    ck_assert_uint_eq(sr.good_end, 0);
    memcpy(buf, img, len);
    buf[11] = 4;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ENOTSUP);
    ck_assert_int_eq(hb_journal_scan(img, 5, NULL, NULL, &sr), HB_JOURNAL_TORN);
    ck_assert_uint_eq(sr.good_end, 0);
    ck_assert_int_eq(hb_journal_scan((const uint8_t *)"HBX", 3, NULL, NULL, &sr), HB_ECORRUPT);
}
END_TEST

/* ---- Audit ---- */

START_TEST(test_audit_malformed_envelope_and_corruption)
{
    /* Crafted with the encoder: an envelope whose shares do not add up, then every share claimed.
     * The book refuses it, so each claim is of an envelope not in the books. */
    craft_t c;
    craft_start(&c, 2);
    hb_sendenv_t bad = make_env(SEND_ID(5));
    bad.total += 1;
    craft_envelope(&c, &bad);
    hb_sendenv_t e = make_env(SEND_ID(5));
    for (unsigned i = 0; i < 3; i++)
        craft_claim(&c, e.id, e.recipients[i], e.shares[i]);
    found_t f = {0};
    hb_journal_audit_t t;
    ck_assert_int_eq(hb_journal_audit_buf(c.buf, c.len, &t, on_violation, &f), 5);
    ck_assert_int_ge(find_violation(&f, 12, "malformed: shares do not add up to the total"), 0);
    for (unsigned i = 0; i < 3; i++)
        ck_assert_int_ge(find_violation(&f, c.at[1 + i], "which is not in the books"), 0);
    ck_assert_int_ge(find_violation(&f, c.len, "do not balance"), 0);
    ck_assert_uint_eq(t.max_envelope_id, SEND_ID(5)); /* its id is used, all the same */

    /* A corrupt record in the middle is a violation at its offset; the rest is not checked. */
    c.buf[c.at[2] + 12] ^= 1;
    memset(&f, 0, sizeof f);
    ck_assert_int_ge(hb_journal_audit_buf(c.buf, c.len, &t, on_violation, &f), 1);
    ck_assert_int_ge(find_violation(&f, c.at[2], "CRC mismatch"), 0);
    ck_assert_uint_eq(t.records, 2);
}
END_TEST

/* Version 2's rules in the audit: ids of the send space, increasing; reservations going forward;
 * expiry of fully claimed envelopes (no total changes); a share granted twice. */
START_TEST(test_audit_ids_reservations_and_retention)
{
    craft_t c;
    craft_start(&c, 2);
    hb_sendenv_t e1 = make_env(SEND_ID(1)), e2 = make_env(SEND_ID(2)), e3 = make_env(SEND_ID(3));
    craft_reserve(&c, HB_ENVELOPE_SHAKE, SHAKE_ID(100)); /* 0 */
    craft_reserve(&c, HB_ENVELOPE_SEND, SEND_ID(10));    /* 1 */
    craft_envelope(&c, &e2);                             /* 2 */
    craft_envelope(&c, &e1);                             /* 3: id goes back */
    craft_envelope(&c, &e2);                             /* 4: issued before */
    hb_sendenv_t shake_id = make_env(SHAKE_ID(7));
    craft_envelope(&c, &shake_id);                      /* 5: not a send id */
    craft_reserve(&c, HB_ENVELOPE_SHAKE, SHAKE_ID(50)); /* 6: backwards */
    craft_reserve(&c, HB_ENVELOPE_SHAKE, SEND_ID(50));  /* 7: not a shake id */
    craft_reserve(&c, 3, 5);                            /* 8: unknown kind */
    craft_reserve(&c, HB_ENVELOPE_SHAKE, 0x80000000u);  /* 9: forward */
    for (unsigned i = 0; i < 3; i++)
        craft_claim(&c, e2.id, e2.recipients[i], e2.shares[i]); /* 10..12 */
    craft_claim(&c, e2.id, e2.recipients[1], e2.shares[1]);     /* 13: twice */
    craft_expire(&c, e2.id);                                    /* 14: fully claimed */
    craft_envelope(&c, &e3);                                    /* 15 */
    craft_claim(&c, e3.id, e3.recipients[0], e3.shares[0]);     /* 16 */
    craft_expire(&c, e3.id);                                    /* 17: with a rest */
    found_t f = {0};
    hb_journal_audit_t t;
    int n = hb_journal_audit_buf(c.buf, c.len, &t, on_violation, &f);
    char m[256];
    ck_assert_int_ge(find_violation(&f, c.at[3],
                                    msg_of(m, sizeof m,
                                           "creation of envelope %u: the id is not above the "
                                           "highest issued before",
                                           e1.id, 0)),
                     0);
    ck_assert_int_ge(
        find_violation(
            &f, c.at[4],
            msg_of(m, sizeof m, "creation of envelope %u: the id was issued before", e2.id, 0)),
        0);
    ck_assert_int_ge(find_violation(&f, c.at[5], "not a send-envelope id"), 0);
    ck_assert_int_ge(find_violation(&f, c.at[6], "reservation of shake ids up to"), 0);
    ck_assert_int_ge(find_violation(&f, c.at[6], "goes backwards"), 0);
    ck_assert_int_ge(find_violation(&f, c.at[7], "not a shake id"), 0);
    ck_assert_int_ge(find_violation(&f, c.at[8], "unknown kind 3"), 0);
    ck_assert_int_ge(find_violation(&f, c.at[13], "granted twice"), 0);
    ck_assert_int_ge(find_violation(&f, c.at[13], "over-claimed"), 0);
    /* The refused creations count as issued, the second grant as claimed: no balance. */
    ck_assert_int_ge(find_violation(&f, c.len, "do not balance"), 0);
    ck_assert_int_eq(n, 9);
    ck_assert_uint_eq(f.n, 9);
    for (size_t i = 0; i < c.n; i++) {
        if (i == 0 || i == 1 || i == 2 || i == 9 || (i >= 10 && i <= 12) || i >= 14)
            ck_assert_int_eq(find_violation(&f, c.at[i], ""), -1);
    }
    ck_assert_uint_eq(t.reserved_shake, 0x80000000u);
    ck_assert_uint_eq(t.reserved_send, SEND_ID(10));
    ck_assert_uint_eq(t.max_envelope_id, e3.id);
    /* Expired: e3 alone (e2 retired fully claimed changes no total). */
    ck_assert_uint_eq(t.totals.expired, 1);
    ck_assert_uint_eq(t.totals.expired_amount, e3.total - e3.shares[0]);
    ck_assert_uint_eq(t.held, 0);
    ck_assert_uint_eq(t.outstanding, 0);

    /* Without the second grant the books balance. */
    craft_t ok;
    craft_start(&ok, 2);
    craft_envelope(&ok, &e2);
    for (unsigned i = 0; i < 3; i++)
        craft_claim(&ok, e2.id, e2.recipients[i], e2.shares[i]);
    craft_envelope(&ok, &e3);
    craft_expire(&ok, e2.id);
    craft_reserve(&ok, HB_ENVELOPE_SEND, SEND_ID(3));
    memset(&f, 0, sizeof f);
    ck_assert_int_eq(hb_journal_audit_buf(ok.buf, ok.len, &t, on_violation, &f), 0);
    ck_assert_uint_eq(t.totals.expired, 0);
    ck_assert_uint_eq(t.totals.expired_amount, 0);
    ck_assert_uint_eq(t.outstanding, 1);
    ck_assert_uint_eq(t.outstanding_amount, e3.total);
    ck_assert_uint_eq(t.held, 1);
}
END_TEST

/* ---- The decoder, the header, and the reasons left in the caller's structs ---- */

START_TEST(test_decode_one_record)
{
    uint8_t img[512];
    hb_journal_record_t rec[ALL_TYPES], r;
    size_t len = all_types_image(img, sizeof img, rec);
    size_t off = 12;
    for (int i = 0; i < ALL_TYPES; i++) {
        ck_assert_int_eq(hb_journal_decode(img + off, len - off, 2, &r), (int)rec[i].size);
        ck_assert_int_eq(r.type, rec[i].type);
        ck_assert_uint_eq(r.size, rec[i].size);
        /* Any part of it: need more. */
        for (size_t cut = 0; cut < rec[i].size; cut++)
            ck_assert_int_eq(hb_journal_decode(img + off, cut, 2, &r), 0);
        off += rec[i].size;
    }
    /* RESERVE is unknown in version 1: its length is impossible there. */
    size_t reserve_at = len - rec[5].size;
    ck_assert_int_eq(hb_journal_decode(img + reserve_at, rec[5].size, 1, &r), HB_ECORRUPT);
    ck_assert_int_eq(hb_journal_decode(img + 12, len - 12, 1, &r), (int)rec[0].size);
    /* A CRC mismatch, an impossible length. */
    uint8_t bad[64];
    memcpy(bad, img + 12, rec[0].size);
    bad[20] ^= 1;
    ck_assert_int_eq(hb_journal_decode(bad, rec[0].size, 2, &r), HB_ECORRUPT);
    memcpy(bad, img + 12, rec[0].size);
    bad[3] = 14;
    ck_assert_int_eq(hb_journal_decode(bad, rec[0].size, 2, &r), HB_ECORRUPT);
    /* Arguments. */
    ck_assert_int_eq(hb_journal_decode(NULL, 10, 2, &r), HB_EINVAL);
    ck_assert_int_eq(hb_journal_decode(img + 12, len - 12, 2, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_journal_decode(img + 12, len - 12, 0, &r), HB_EINVAL);
    ck_assert_int_eq(hb_journal_decode(img + 12, len - 12, 4, &r), HB_EINVAL);

    /* The header the writer writes. */
    uint8_t h[16];
    ck_assert_int_eq(hb_journal_encode_header(h, 11), HB_ENOBUFS);
    ck_assert_int_eq(hb_journal_encode_header(NULL, 12), HB_EINVAL);
    ck_assert_int_eq(hb_journal_encode_header(h, sizeof h), HB_JOURNAL_HEADER_SIZE);
    ck_assert_mem_eq(h, "HBLEDGER\0\0\0\3", HB_JOURNAL_HEADER_SIZE);
}
END_TEST

START_TEST(test_reasons_in_callers_structs)
{
    uint8_t img[512], buf[600];
    hb_journal_record_t rec[ALL_TYPES];
    size_t len = all_types_image(img, sizeof img, rec);
    hb_journal_scan_t sr;

    /* A clean scan: no reason; the version read. */
    memset(&sr, 0x5A, sizeof sr);
    ck_assert_int_eq(hb_journal_scan(img, len, NULL, NULL, &sr), 0);
    ck_assert_int_eq(sr.err, 0);
    ck_assert_str_eq(sr.errstr, "");
    ck_assert_uint_eq(sr.version, 2);
    /* A stop by the callback: its value, no reason. */
    decoded_t d;
    memset(&d, 0, sizeof d);
    d.stop_at = 1;
    ck_assert_int_eq(hb_journal_scan(img, len, keep_record, &d, &sr), -7);
    ck_assert_int_eq(sr.err, -7);
    ck_assert_str_eq(sr.errstr, "");
    /* Torn, corrupt, another version: err is the result, errstr names the offset. */
    ck_assert_int_eq(hb_journal_scan(img, len - 1, NULL, NULL, &sr), HB_JOURNAL_TORN);
    ck_assert_int_eq(sr.err, HB_JOURNAL_TORN);
    char want[64];
    snprintf(want, sizeof want, "offset %zu: torn record", len - rec[5].size);
    ck_assert_ptr_nonnull(strstr(sr.errstr, want));
    memcpy(buf, img, len);
    buf[12 + 10] ^= 0x40;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ECORRUPT);
    ck_assert_int_eq(sr.err, HB_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(sr.errstr, "offset 12: corrupt record: CRC mismatch"));
    buf[12 + 10] ^= 0x40;
    buf[11] = 4;
    ck_assert_int_eq(hb_journal_scan(buf, len, NULL, NULL, &sr), HB_ENOTSUP);
    ck_assert_int_eq(sr.err, HB_ENOTSUP);
    ck_assert_uint_eq(sr.version, 0);
    ck_assert_ptr_nonnull(strstr(sr.errstr, "offset 8: journal format version 4"));
    ck_assert_int_eq(hb_journal_scan(NULL, 5, NULL, NULL, &sr), HB_EINVAL);
    ck_assert_int_eq(sr.err, HB_EINVAL);

    /* The audit of an image: a failure leaves err and errstr in the result; a run clears them. */
    hb_journal_audit_t t;
    ck_assert_int_eq(hb_journal_audit_buf(buf, len, &t, NULL, NULL), HB_ENOTSUP);
    ck_assert_int_eq(t.err, HB_ENOTSUP);
    ck_assert_ptr_nonnull(strstr(t.errstr, "version 4"));
    ck_assert_int_eq(hb_journal_audit_buf((const uint8_t *)"hello, world", 12, &t, NULL, NULL),
                     HB_ECORRUPT);
    ck_assert_int_eq(t.err, HB_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(t.errstr, "offset 0: not a ledger journal"));
    ck_assert_int_ge(hb_journal_audit_buf(img, len - 1, &t, NULL, NULL), 0);
    ck_assert_int_eq(t.err, 0);
    ck_assert_str_eq(t.errstr, "");

    /* The audit of a directory names the file. */
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/hb-journal-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/%s", dir, HB_JOURNAL_FILE_NAME);
    ck_assert_int_eq(hb_journal_audit(dir, &t, NULL, NULL), HB_ENOENT);
    ck_assert_int_eq(t.err, HB_ENOENT);
    ck_assert_ptr_nonnull(strstr(t.errstr, path));
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite("HBX", 1, 3, f), 3);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(hb_journal_audit(dir, &t, NULL, NULL), HB_ECORRUPT);
    ck_assert_int_eq(t.err, HB_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(t.errstr, path));
    ck_assert_ptr_nonnull(strstr(t.errstr, "offset 0: not a ledger journal"));
    f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(img, 1, 12, f), 12);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(hb_journal_audit(dir, &t, NULL, NULL), 0);
    ck_assert_int_eq(t.err, 0);
    ck_assert_str_eq(t.errstr, "");
    ck_assert_uint_eq(t.version, 2);
    ck_assert_int_eq(hb_journal_audit(NULL, &t, NULL, NULL), HB_EINVAL);
    ck_assert_int_eq(t.err, HB_EINVAL);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* A compacted journal, crafted: the audit balances it whole, and reports it cut (cleanly, inside a
 * record, or inside the SNAPSHOT record) or interrupted by another record. */
START_TEST(test_audit_snapshot)
{
    craft_t c;
    craft_start(&c, 2);
    hb_sendenv_t a = make_env(SEND_ID(7)), b = make_env(SEND_ID(8));
    b.claimed = 2;
    b.claimed_sum = b.shares[1];
    uint64_t rest = a.total + (b.total - b.shares[1]);
    craft_snapshot(&c, SEND_ID(600), 3,
                   (hb_journal_totals_t){600, 1795, 3, 40000, 40000 - 63 - rest, 63});
    craft_state(&c, &a);
    craft_state(&c, &b);
    craft_reserve(&c, HB_ENVELOPE_SHAKE, SHAKE_ID(40));
    found_t f = {0};
    hb_journal_audit_t t;
    ck_assert_int_eq(hb_journal_audit_buf(c.buf, c.len, &t, on_violation, &f), 0);
    ck_assert_uint_eq(t.records, 4);
    ck_assert_uint_eq(t.held, 2);
    ck_assert_uint_eq(t.outstanding, 2);
    ck_assert_uint_eq(t.outstanding_amount, rest);
    ck_assert_uint_eq(t.max_envelope_id, SEND_ID(600));
    ck_assert_uint_eq(t.reserved_shake, SHAKE_ID(40));

    /* Cut at every byte after the SNAPSHOT's length field: a violation at the snapshot. */
    for (size_t cut = 12 + 4; cut < c.len; cut++) {
        memset(&f, 0, sizeof f);
        ck_assert_int_ge(hb_journal_audit_buf(c.buf, cut, &t, on_violation, &f), 1);
        if (cut < c.at[1])
            ck_assert_int_ge(find_violation(&f, 12, "snapshot record cut short"), 0);
        else
            ck_assert_int_ge(find_violation(&f, 12, "announces 3 records"), 0);
    }
    /* Another record among its records. */
    craft_t odd;
    memcpy(&odd, &c, sizeof odd);
    odd.len = c.at[2];
    odd.n = 2;
    craft_claim(&odd, a.id, a.recipients[0], a.shares[0]);
    memset(&f, 0, sizeof f);
    ck_assert_int_ge(hb_journal_audit_buf(odd.buf, odd.len, &t, on_violation, &f), 1);
    ck_assert_int_ge(find_violation(&f, 12, "another record comes"), 0);
}
END_TEST

/* An envelope of n recipients (n other than 3 takes the variable-size records). */
static hb_sendenv_t make_env_n(uint32_t id, unsigned n)
{
    hb_sendenv_t e;
    memset(&e, 0, sizeof e);
    e.id = id;
    e.count = (uint8_t)n;
    for (unsigned i = 0; i < n; i++) {
        e.recipients[i] = 100 * id + i;
        e.shares[i] = 1 + i;
        e.total += e.shares[i];
    }
    e.created_s = 1700000000u;
    return e;
}

/* Envelopes of 1..HB_SEND_MAX_RECIPIENTS recipients: written as types 7 and 8 (3 keeps 1 and 4),
 * read back the same, audited like any other; a version 2 journal cannot hold them. */
START_TEST(test_any_recipient_count)
{
    for (unsigned n = 1; n <= HB_SEND_MAX_RECIPIENTS; n++) {
        hb_sendenv_t e = make_env_n(SEND_ID(n), n);
        hb_journal_record_t r, back;
        memset(&r, 0, sizeof r);
        r.type = HB_JOURNAL_ENVELOPE;
        r.envelope = e;
        r.envelope_id = e.id;
        uint8_t buf[HB_JOURNAL_MAX_RECORD];
        int len = hb_journal_encode(&r, buf, sizeof buf);
        ck_assert_int_eq(len, n == 3 ? 8 + 41 : 8 + 18 + 8 * (int)n);
        ck_assert_uint_eq(buf[8], n == 3 ? 1 : 7);
        ck_assert_int_eq(hb_journal_decode(buf, (size_t)len, HB_JOURNAL_VERSION, &back), len);
        ck_assert_int_eq(back.type, HB_JOURNAL_ENVELOPE);
        check_env_eq(&back.envelope, &e);
        /* Too small a buffer, by one byte. */
        ck_assert_int_eq(hb_journal_encode(&r, buf, (size_t)len - 1), HB_ENOBUFS);
        /* A state, with claims. */
        e.claimed = 1;
        e.claimed_sum = e.shares[0];
        r.type = HB_JOURNAL_STATE;
        r.envelope = e;
        len = hb_journal_encode(&r, buf, sizeof buf);
        ck_assert_int_eq(len, n == 3 ? 8 + 46 : 8 + 23 + 8 * (int)n);
        ck_assert_int_le(len, HB_JOURNAL_MAX_RECORD);
        ck_assert_int_eq(hb_journal_decode(buf, (size_t)len, HB_JOURNAL_VERSION, &back), len);
        ck_assert_int_eq(back.type, HB_JOURNAL_STATE);
        check_env_eq(&back.envelope, &e);
        /* Version 2 has no such record. */
        if (n != 3)
            ck_assert_int_eq(hb_journal_decode(buf, (size_t)len, 2, &back), HB_ECORRUPT);
    }
    /* No recipients, or too many: not encoded. */
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_ENVELOPE;
    r.envelope = make_env_n(SEND_ID(1), 2);
    uint8_t buf[HB_JOURNAL_MAX_RECORD];
    r.envelope.count = 0;
    ck_assert_int_eq(hb_journal_encode(&r, buf, sizeof buf), HB_EINVAL);
    r.envelope.count = HB_SEND_MAX_RECIPIENTS + 1;
    ck_assert_int_eq(hb_journal_encode(&r, buf, sizeof buf), HB_EINVAL);

    /* A count byte that disagrees with the record's length is corrupt. */
    hb_sendenv_t five = make_env_n(SEND_ID(5), 5);
    r.envelope = five;
    int len = hb_journal_encode(&r, buf, sizeof buf);
    buf[8 + 17] = 4; /* n */
    uint32_t crc = hb_journal_crc32c(buf + 8, (size_t)len - 8);
    buf[4] = (uint8_t)(crc >> 24), buf[5] = (uint8_t)(crc >> 16), buf[6] = (uint8_t)(crc >> 8);
    buf[7] = (uint8_t)crc;
    hb_journal_record_t back;
    ck_assert_int_eq(hb_journal_decode(buf, (size_t)len, HB_JOURNAL_VERSION, &back), HB_ECORRUPT);

    /* The audit judges their claims as any other's. */
    craft_t c;
    craft_start(&c, HB_JOURNAL_VERSION);
    craft_reserve(&c, HB_ENVELOPE_SEND, SEND_ID(100));
    hb_sendenv_t one = make_env_n(SEND_ID(1), 1);
    craft_envelope(&c, &one);
    craft_envelope(&c, &five);
    craft_claim(&c, one.id, one.recipients[0], one.shares[0]);
    for (unsigned i = 0; i < 5; i++)
        craft_claim(&c, five.id, five.recipients[i], five.shares[i]);
    size_t twice = craft_claim(&c, five.id, five.recipients[4], five.shares[4]);
    size_t stranger = craft_claim(&c, five.id, 7, 1);
    found_t f = {0};
    hb_journal_audit_t t;
    /* (each also over-claims the envelope and unbalances the books: 5 violations in all) */
    ck_assert_int_eq(hb_journal_audit_buf(c.buf, c.len, &t, on_violation, &f), 5);
    ck_assert_int_ge(find_violation(&f, twice, "granted twice"), 0);
    ck_assert_int_ge(find_violation(&f, stranger, "not a recipient"), 0);
    ck_assert_uint_eq(t.totals.envelopes, 2);
    ck_assert_uint_eq(t.totals.issued, one.total + five.total);
    ck_assert_uint_eq(t.held, 2);
    ck_assert_uint_eq(t.outstanding, 0);
}
END_TEST

static Suite *journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *format = tcase_create("format");
    tcase_add_test(format, test_crc32c_vectors);
    tcase_add_test(format, test_encode_scan_round_trip);
    tcase_add_test(format, test_scan_every_prefix_is_ok_or_torn);
    tcase_add_test(format, test_scan_torn_versus_corrupt);
    tcase_add_test(format, test_scan_version_1);
    tcase_add_test(format, test_decode_one_record);
    tcase_add_test(format, test_reasons_in_callers_structs);
    tcase_add_test(format, test_any_recipient_count);
    suite_add_tcase(s, format);

    TCase *audit = tcase_create("audit");
    tcase_add_test(audit, test_audit_malformed_envelope_and_corruption);
    tcase_add_test(audit, test_audit_ids_reservations_and_retention);
    tcase_add_test(audit, test_audit_snapshot);
    suite_add_tcase(s, audit);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(journal_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
