/* libFuzzer target for the journal's format (versions 1 and 2), in the core: hb_journal_scan on
 * arbitrary bytes, checked against itself (the valid prefix rescans clean to the same records),
 * against the encoder and the decoder (every record decoded re-encodes to its bytes, and decodes
 * alone to itself), and fed to the audit, whose books (judged by hb_book) must be consistent with
 * what it reports. Built from the core's sources only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash libFuzzer reports) when an invariant breaks. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

typedef struct seen {
    const uint8_t *data;
    size_t size;
    size_t records;
    size_t next; /* where the next record must start */
} seen_t;

/* Records come in order, back to back from the header on, and re-encode to their own bytes. */
static int check_record(void *arg, const hb_journal_record_t *r, size_t offset)
{
    seen_t *s = arg;
    uint8_t again[HB_JOURNAL_MAX_RECORD];
    FUZZ_CHECK(offset == s->next);
    FUZZ_CHECK(r->size >= HB_JOURNAL_FRAME_SIZE && r->size <= HB_JOURNAL_MAX_RECORD);
    FUZZ_CHECK(offset + r->size <= s->size);
    int n = hb_journal_encode(r, again, sizeof again);
    FUZZ_CHECK(n > 0 && (size_t)n == r->size);
    FUZZ_CHECK(memcmp(again, s->data + offset, r->size) == 0);
    hb_journal_record_t alone; /* the header is valid, or no record would be seen */
    uint32_t version = hb_get_u32(s->data + 8);
    FUZZ_CHECK(hb_journal_decode(s->data + offset, s->size - offset, version, &alone) == n);
    FUZZ_CHECK(alone.type == r->type && alone.size == r->size);
    s->records++;
    s->next = offset + r->size;
    return 0;
}

static void count_violation(void *arg, const char *msg, size_t offset)
{
    seen_t *s = arg;
    FUZZ_CHECK(msg != NULL && msg[0] != '\0');
    FUZZ_CHECK(offset <= s->size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seen_t first = {data, size, 0, HB_JOURNAL_HEADER_SIZE};
    hb_journal_scan_t sr;
    sr.good_end = SIZE_MAX;
    int rc = hb_journal_scan(data, size, check_record, &first, &sr);
    size_t good_end = sr.good_end;
    FUZZ_CHECK(rc == 0 || rc == HB_JOURNAL_TORN || rc == HB_ECORRUPT || rc == HB_ENOTSUP);
    FUZZ_CHECK(sr.err == rc);
    FUZZ_CHECK(good_end <= size);
    if (rc == 0)
        FUZZ_CHECK(good_end == size);
    if (first.records > 0)
        FUZZ_CHECK(good_end == first.next);
    if (rc != 0)
        FUZZ_CHECK(sr.errstr[0] != '\0');
    else
        FUZZ_CHECK(sr.errstr[0] == '\0');

    /* The valid prefix is a valid journal with the same records. */
    seen_t second = {data, good_end, 0, HB_JOURNAL_HEADER_SIZE};
    hb_journal_scan_t sr2;
    sr2.good_end = SIZE_MAX;
    FUZZ_CHECK(hb_journal_scan(data, good_end, check_record, &second, &sr2) == 0);
    FUZZ_CHECK(sr2.good_end == good_end);
    FUZZ_CHECK(second.records == first.records);

    /* The audit reads the same records and reports violations within the input. */
    hb_journal_audit_t t;
    seen_t third = {data, size, 0, HB_JOURNAL_HEADER_SIZE};
    int arc = hb_journal_audit_buf(data, size, &t, count_violation, &third);
    if (arc >= 0) {
        FUZZ_CHECK(t.err == 0 && t.errstr[0] == '\0');
        FUZZ_CHECK(t.version == sr.version);
        FUZZ_CHECK((uint64_t)arc == t.violations);
        FUZZ_CHECK(t.records == first.records);
        FUZZ_CHECK(t.torn == (rc == HB_JOURNAL_TORN));
        if (rc == HB_ECORRUPT)
            FUZZ_CHECK(t.violations >= 1);
        /* A whole header names a version read; an empty or torn one none. */
        if (size >= HB_JOURNAL_HEADER_SIZE)
            FUZZ_CHECK(t.version >= HB_JOURNAL_VERSION_MIN && t.version <= HB_JOURNAL_VERSION);
        else
            FUZZ_CHECK(t.version == 0);
        /* The books: what is outstanding is held; ids are of their spaces. */
        FUZZ_CHECK(t.outstanding <= t.held);
        FUZZ_CHECK(t.max_envelope_id == 0 ||
                   hb_envelope_id_kind(t.max_envelope_id) == HB_ENVELOPE_SEND);
        FUZZ_CHECK(t.reserved_shake == 0 ||
                   hb_envelope_id_kind(t.reserved_shake) == HB_ENVELOPE_SHAKE);
        FUZZ_CHECK(t.reserved_send == 0 ||
                   hb_envelope_id_kind(t.reserved_send) == HB_ENVELOPE_SEND);
        /* Books found to balance do balance. */
        if (t.violations == 0)
            FUZZ_CHECK(t.totals.issued ==
                       t.totals.claimed + t.totals.expired_amount + t.outstanding_amount);
        /* Version 1 has no RESERVE. */
        if (t.version == 1)
            FUZZ_CHECK(t.reserved_shake == 0 && t.reserved_send == 0);
    } else {
        FUZZ_CHECK(arc == HB_ECORRUPT || arc == HB_ENOTSUP);
        FUZZ_CHECK(arc == rc && good_end == 0);
        FUZZ_CHECK(t.err == arc && strcmp(t.errstr, sr.errstr) == 0);
    }
    return 0;
}
