/* The ledger: the claim journal's format (CRC32C framing, scanner, encoder), its writer thread
 * with group commit and compaction, replay at open, and the offline audit of the books. */
#include "hb_internal.h"
#include "hongbao/ledger.h"

#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Payload lengths of the record types. */
#define PAYLOAD_ENVELOPE 41u
#define PAYLOAD_CLAIM    13u
#define PAYLOAD_EXPIRE   5u
#define PAYLOAD_STATE    46u
#define PAYLOAD_SNAPSHOT 57u
#define PAYLOAD_RESERVE  6u

#define NS_PER_S  UINT64_C(1000000000)
#define NS_PER_MS UINT64_C(1000000)
/* The append queue starts with this much room in each of its two buffers. */
#define QUEUE_INITIAL_CAPACITY ((size_t)64 * 1024)
/* At most this many records that make no sense in the books are logged per open ledger. */
#define ANOMALY_LOG_MAX 20u
/* The longest single condition-variable wait of hb_ledger_wait_*. */
#define WAIT_SLICE_NS (3600 * NS_PER_S)
#define MSG_MAX       512

/* ---- CRC32C ---- */

/* crc32c_table[i]: the reflected CRC of byte i under polynomial 0x82F63B78. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xF26B8303u, 0xE13B70F7u, 0x1350F3F4u, 0xC79A971Fu, 0x35F1141Cu, 0x26A1E7E8u,
    0xD4CA64EBu, 0x8AD958CFu, 0x78B2DBCCu, 0x6BE22838u, 0x9989AB3Bu, 0x4D43CFD0u, 0xBF284CD3u,
    0xAC78BF27u, 0x5E133C24u, 0x105EC76Fu, 0xE235446Cu, 0xF165B798u, 0x030E349Bu, 0xD7C45070u,
    0x25AFD373u, 0x36FF2087u, 0xC494A384u, 0x9A879FA0u, 0x68EC1CA3u, 0x7BBCEF57u, 0x89D76C54u,
    0x5D1D08BFu, 0xAF768BBCu, 0xBC267848u, 0x4E4DFB4Bu, 0x20BD8EDEu, 0xD2D60DDDu, 0xC186FE29u,
    0x33ED7D2Au, 0xE72719C1u, 0x154C9AC2u, 0x061C6936u, 0xF477EA35u, 0xAA64D611u, 0x580F5512u,
    0x4B5FA6E6u, 0xB93425E5u, 0x6DFE410Eu, 0x9F95C20Du, 0x8CC531F9u, 0x7EAEB2FAu, 0x30E349B1u,
    0xC288CAB2u, 0xD1D83946u, 0x23B3BA45u, 0xF779DEAEu, 0x05125DADu, 0x1642AE59u, 0xE4292D5Au,
    0xBA3A117Eu, 0x4851927Du, 0x5B016189u, 0xA96AE28Au, 0x7DA08661u, 0x8FCB0562u, 0x9C9BF696u,
    0x6EF07595u, 0x417B1DBCu, 0xB3109EBFu, 0xA0406D4Bu, 0x522BEE48u, 0x86E18AA3u, 0x748A09A0u,
    0x67DAFA54u, 0x95B17957u, 0xCBA24573u, 0x39C9C670u, 0x2A993584u, 0xD8F2B687u, 0x0C38D26Cu,
    0xFE53516Fu, 0xED03A29Bu, 0x1F682198u, 0x5125DAD3u, 0xA34E59D0u, 0xB01EAA24u, 0x42752927u,
    0x96BF4DCCu, 0x64D4CECFu, 0x77843D3Bu, 0x85EFBE38u, 0xDBFC821Cu, 0x2997011Fu, 0x3AC7F2EBu,
    0xC8AC71E8u, 0x1C661503u, 0xEE0D9600u, 0xFD5D65F4u, 0x0F36E6F7u, 0x61C69362u, 0x93AD1061u,
    0x80FDE395u, 0x72966096u, 0xA65C047Du, 0x5437877Eu, 0x4767748Au, 0xB50CF789u, 0xEB1FCBADu,
    0x197448AEu, 0x0A24BB5Au, 0xF84F3859u, 0x2C855CB2u, 0xDEEEDFB1u, 0xCDBE2C45u, 0x3FD5AF46u,
    0x7198540Du, 0x83F3D70Eu, 0x90A324FAu, 0x62C8A7F9u, 0xB602C312u, 0x44694011u, 0x5739B3E5u,
    0xA55230E6u, 0xFB410CC2u, 0x092A8FC1u, 0x1A7A7C35u, 0xE811FF36u, 0x3CDB9BDDu, 0xCEB018DEu,
    0xDDE0EB2Au, 0x2F8B6829u, 0x82F63B78u, 0x709DB87Bu, 0x63CD4B8Fu, 0x91A6C88Cu, 0x456CAC67u,
    0xB7072F64u, 0xA457DC90u, 0x563C5F93u, 0x082F63B7u, 0xFA44E0B4u, 0xE9141340u, 0x1B7F9043u,
    0xCFB5F4A8u, 0x3DDE77ABu, 0x2E8E845Fu, 0xDCE5075Cu, 0x92A8FC17u, 0x60C37F14u, 0x73938CE0u,
    0x81F80FE3u, 0x55326B08u, 0xA759E80Bu, 0xB4091BFFu, 0x466298FCu, 0x1871A4D8u, 0xEA1A27DBu,
    0xF94AD42Fu, 0x0B21572Cu, 0xDFEB33C7u, 0x2D80B0C4u, 0x3ED04330u, 0xCCBBC033u, 0xA24BB5A6u,
    0x502036A5u, 0x4370C551u, 0xB11B4652u, 0x65D122B9u, 0x97BAA1BAu, 0x84EA524Eu, 0x7681D14Du,
    0x2892ED69u, 0xDAF96E6Au, 0xC9A99D9Eu, 0x3BC21E9Du, 0xEF087A76u, 0x1D63F975u, 0x0E330A81u,
    0xFC588982u, 0xB21572C9u, 0x407EF1CAu, 0x532E023Eu, 0xA145813Du, 0x758FE5D6u, 0x87E466D5u,
    0x94B49521u, 0x66DF1622u, 0x38CC2A06u, 0xCAA7A905u, 0xD9F75AF1u, 0x2B9CD9F2u, 0xFF56BD19u,
    0x0D3D3E1Au, 0x1E6DCDEEu, 0xEC064EEDu, 0xC38D26C4u, 0x31E6A5C7u, 0x22B65633u, 0xD0DDD530u,
    0x0417B1DBu, 0xF67C32D8u, 0xE52CC12Cu, 0x1747422Fu, 0x49547E0Bu, 0xBB3FFD08u, 0xA86F0EFCu,
    0x5A048DFFu, 0x8ECEE914u, 0x7CA56A17u, 0x6FF599E3u, 0x9D9E1AE0u, 0xD3D3E1ABu, 0x21B862A8u,
    0x32E8915Cu, 0xC083125Fu, 0x144976B4u, 0xE622F5B7u, 0xF5720643u, 0x07198540u, 0x590AB964u,
    0xAB613A67u, 0xB831C993u, 0x4A5A4A90u, 0x9E902E7Bu, 0x6CFBAD78u, 0x7FAB5E8Cu, 0x8DC0DD8Fu,
    0xE330A81Au, 0x115B2B19u, 0x020BD8EDu, 0xF0605BEEu, 0x24AA3F05u, 0xD6C1BC06u, 0xC5914FF2u,
    0x37FACCF1u, 0x69E9F0D5u, 0x9B8273D6u, 0x88D28022u, 0x7AB90321u, 0xAE7367CAu, 0x5C18E4C9u,
    0x4F48173Du, 0xBD23943Eu, 0xF36E6F75u, 0x0105EC76u, 0x12551F82u, 0xE03E9C81u, 0x34F4F86Au,
    0xC69F7B69u, 0xD5CF889Du, 0x27A40B9Eu, 0x79B737BAu, 0x8BDCB4B9u, 0x988C474Du, 0x6AE7C44Eu,
    0xBE2DA0A5u, 0x4C4623A6u, 0x5F16D052u, 0xAD7D5351u,
};

uint32_t hb_ledger_crc32c(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++)
        crc = crc32c_table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

/* ---- Errors ---- */

static _Thread_local char last_error[MSG_MAX];

const char *hb_ledger_last_error(void)
{
    return last_error;
}

static void set_error(const char *fmt, ...) HB_PRINTF(1, 2);
static void set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

/* ---- Encoding ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* The payload length of a record type in a journal of this version, 0 for a type unknown there. */
static uint32_t payload_size(unsigned type, uint32_t version)
{
    switch (type) {
    case HB_LEDGER_ENVELOPE:
        return PAYLOAD_ENVELOPE;
    case HB_LEDGER_CLAIM:
        return PAYLOAD_CLAIM;
    case HB_LEDGER_EXPIRE:
        return PAYLOAD_EXPIRE;
    case HB_LEDGER_STATE:
        return PAYLOAD_STATE;
    case HB_LEDGER_SNAPSHOT:
        return PAYLOAD_SNAPSHOT;
    case HB_LEDGER_RESERVE:
        return version >= 2 ? PAYLOAD_RESERVE : 0;
    default:
        return 0;
    }
}

/* Whether some record type of this version has a payload of this length. */
static bool possible_length(uint32_t len, uint32_t version)
{
    return len == PAYLOAD_ENVELOPE || len == PAYLOAD_CLAIM || len == PAYLOAD_EXPIRE ||
           len == PAYLOAD_STATE || len == PAYLOAD_SNAPSHOT ||
           (len == PAYLOAD_RESERVE && version >= 2);
}

static void header_bytes(uint8_t h[HB_LEDGER_HEADER_SIZE])
{
    memcpy(h, HB_LEDGER_MAGIC, 8);
    put32(h + 8, HB_LEDGER_VERSION);
}

/* The envelope fields shared by ENVELOPE and STATE, at p (40 bytes). */
static void put_envelope(uint8_t *p, const hb_sendenv_t *e)
{
    put32(p, e->id);
    put32(p + 4, e->total);
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        put32(p + 8 + 4 * i, e->recipients[i]);
        put32(p + 20 + 4 * i, e->shares[i]);
    }
    put64(p + 32, e->created_s);
}

static void get_envelope(const uint8_t *p, hb_sendenv_t *e)
{
    e->id = get32(p);
    e->total = get32(p + 4);
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        e->recipients[i] = get32(p + 8 + 4 * i);
        e->shares[i] = get32(p + 20 + 4 * i);
    }
    e->created_s = get64(p + 32);
    e->claimed = 0;
    e->claimed_sum = 0;
}

int hb_ledger_encode(const hb_ledger_record_t *r, uint8_t *buf, size_t len)
{
    if (r == NULL || buf == NULL)
        return UV_EINVAL;
    uint32_t plen = payload_size((unsigned)r->type, HB_LEDGER_VERSION);
    if (plen == 0)
        return UV_EINVAL;
    if (len < HB_LEDGER_FRAME_SIZE + plen)
        return UV_ENOBUFS;
    uint8_t *p = buf + HB_LEDGER_FRAME_SIZE;
    p[0] = (uint8_t)r->type;
    switch (r->type) {
    case HB_LEDGER_ENVELOPE:
        put_envelope(p + 1, &r->envelope);
        break;
    case HB_LEDGER_CLAIM:
        put32(p + 1, r->envelope_id);
        put32(p + 5, r->user);
        put32(p + 9, r->amount);
        break;
    case HB_LEDGER_EXPIRE:
        put32(p + 1, r->envelope_id);
        break;
    case HB_LEDGER_STATE:
        put_envelope(p + 1, &r->envelope);
        p[41] = r->envelope.claimed;
        put32(p + 42, r->envelope.claimed_sum);
        break;
    case HB_LEDGER_SNAPSHOT:
        put32(p + 1, r->max_envelope_id);
        put32(p + 5, r->outstanding);
        put64(p + 9, r->totals.envelopes);
        put64(p + 17, r->totals.claims);
        put64(p + 25, r->totals.expired);
        put64(p + 33, r->totals.issued);
        put64(p + 41, r->totals.claimed);
        put64(p + 49, r->totals.expired_amount);
        break;
    case HB_LEDGER_RESERVE:
        p[1] = r->kind;
        put32(p + 2, r->last);
        break;
    }
    put32(buf, plen);
    put32(buf + 4, hb_ledger_crc32c(p, plen));
    return (int)(HB_LEDGER_FRAME_SIZE + plen);
}

/* Decode a payload whose CRC matched. False when its type is unknown in this version or its
 * length is not the type's. */
static bool decode_payload(const uint8_t *p, uint32_t plen, uint32_t version, hb_ledger_record_t *r)
{
    memset(r, 0, sizeof *r);
    unsigned type = p[0];
    if (payload_size(type, version) == 0 || payload_size(type, version) != plen)
        return false;
    r->type = (hb_ledger_type_t)type;
    switch (r->type) {
    case HB_LEDGER_ENVELOPE:
        get_envelope(p + 1, &r->envelope);
        r->envelope_id = r->envelope.id;
        break;
    case HB_LEDGER_CLAIM:
        r->envelope_id = get32(p + 1);
        r->user = get32(p + 5);
        r->amount = get32(p + 9);
        break;
    case HB_LEDGER_EXPIRE:
        r->envelope_id = get32(p + 1);
        break;
    case HB_LEDGER_STATE:
        get_envelope(p + 1, &r->envelope);
        r->envelope.claimed = p[41];
        r->envelope.claimed_sum = get32(p + 42);
        r->envelope_id = r->envelope.id;
        break;
    case HB_LEDGER_SNAPSHOT:
        r->max_envelope_id = get32(p + 1);
        r->outstanding = get32(p + 5);
        r->totals.envelopes = get64(p + 9);
        r->totals.claims = get64(p + 17);
        r->totals.expired = get64(p + 25);
        r->totals.issued = get64(p + 33);
        r->totals.claimed = get64(p + 41);
        r->totals.expired_amount = get64(p + 49);
        break;
    case HB_LEDGER_RESERVE:
        r->kind = p[1];
        r->last = get32(p + 2);
        break;
    }
    r->size = HB_LEDGER_FRAME_SIZE + plen;
    return true;
}

/* ---- Scanning ---- */

enum frame_status {
    FRAME_OK,
    FRAME_SHORT,    /* fewer than 8 bytes left */
    FRAME_PAST_END, /* a possible length that runs past the end */
    FRAME_BAD_LEN,  /* a length no record type has */
    FRAME_BAD_CRC,
    FRAME_BAD_TYPE /* the CRC matches, the type or its length does not */
};

/* Look at the frame at off (< len) of a journal of this version; on FRAME_OK *r is the decoded
 * record. *plen gets the length field when there is one. */
static enum frame_status frame_at(const uint8_t *buf, size_t len, size_t off, uint32_t version,
                                  hb_ledger_record_t *r, uint32_t *plen)
{
    size_t rem = len - off;
    *plen = 0;
    if (rem < HB_LEDGER_FRAME_SIZE)
        return FRAME_SHORT;
    *plen = get32(buf + off);
    if (!possible_length(*plen, version))
        return FRAME_BAD_LEN;
    if (*plen > rem - HB_LEDGER_FRAME_SIZE)
        return FRAME_PAST_END;
    const uint8_t *payload = buf + off + HB_LEDGER_FRAME_SIZE;
    if (hb_ledger_crc32c(payload, *plen) != get32(buf + off + 4))
        return FRAME_BAD_CRC;
    if (!decode_payload(payload, *plen, version, r))
        return FRAME_BAD_TYPE;
    return FRAME_OK;
}

/* The offset of the first valid record starting at or after from, or len if none. */
static size_t next_valid_record(const uint8_t *buf, size_t len, size_t from, uint32_t version)
{
    hb_ledger_record_t r;
    uint32_t plen;
    for (size_t p = from; p < len && len - p >= HB_LEDGER_FRAME_SIZE; p++) {
        if (frame_at(buf, len, p, version, &r, &plen) == FRAME_OK)
            return p;
    }
    return len;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return false;
    }
    return true;
}

/* The header at the start of buf: 0 when valid (*version set), HB_LEDGER_TORN for a prefix of one,
 * else HB_ECORRUPT or UV_ENOTSUP (last_error set for all but 0). */
static int check_header(const uint8_t *buf, size_t len, uint32_t *version)
{
    uint8_t h[HB_LEDGER_HEADER_SIZE];
    header_bytes(h);
    if (len < HB_LEDGER_HEADER_SIZE) {
        /* Any prefix of 11 bytes or fewer is one of a version 1 header too. */
        if (memcmp(buf, h, len) == 0) {
            set_error("offset 0: file header cut short (%zu of %u bytes)", len,
                      HB_LEDGER_HEADER_SIZE);
            return HB_LEDGER_TORN;
        }
        set_error("offset 0: not a ledger journal (no \"%s\" header)", HB_LEDGER_MAGIC);
        return HB_ECORRUPT;
    }
    if (memcmp(buf, h, 8) != 0) {
        set_error("offset 0: not a ledger journal (no \"%s\" header)", HB_LEDGER_MAGIC);
        return HB_ECORRUPT;
    }
    *version = get32(buf + 8);
    if (*version < HB_LEDGER_VERSION_MIN || *version > HB_LEDGER_VERSION) {
        set_error("offset 8: journal format version %" PRIu32 ", this library reads %u to %u",
                  *version, HB_LEDGER_VERSION_MIN, HB_LEDGER_VERSION);
        return UV_ENOTSUP;
    }
    return 0;
}

int hb_ledger_scan(const uint8_t *buf, size_t len,
                   int (*record_cb)(void *arg, const hb_ledger_record_t *r, size_t offset),
                   void *arg, size_t *good_end)
{
    size_t end_dummy;
    if (good_end == NULL)
        good_end = &end_dummy;
    *good_end = 0;
    if (len == 0)
        return 0;
    if (buf == NULL)
        return UV_EINVAL;
    uint32_t version = 0;
    int rc = check_header(buf, len, &version);
    if (rc != 0)
        return rc;

    size_t off = HB_LEDGER_HEADER_SIZE;
    *good_end = off;
    while (off < len) {
        hb_ledger_record_t r;
        uint32_t plen;
        size_t after, valid;
        switch (frame_at(buf, len, off, version, &r, &plen)) {
        case FRAME_OK:
            off += r.size;
            if (record_cb != NULL && (rc = record_cb(arg, &r, off - r.size)) != 0) {
                *good_end = off;
                return rc;
            }
            *good_end = off;
            break;
        case FRAME_SHORT:
            set_error("offset %zu: torn record: its frame is cut short (%zu of %u bytes)", off,
                      len - off, HB_LEDGER_FRAME_SIZE);
            return HB_LEDGER_TORN;
        case FRAME_PAST_END:
            set_error("offset %zu: torn record: %" PRIu32 " payload bytes run past the end of the "
                      "journal (%zu bytes left)",
                      off, plen, len - off - HB_LEDGER_FRAME_SIZE);
            return HB_LEDGER_TORN;
        case FRAME_BAD_CRC:
            after = off + HB_LEDGER_FRAME_SIZE + plen;
            if (all_zero(buf + after, len - after)) {
                set_error("offset %zu: torn record: CRC mismatch in the last record", off);
                return HB_LEDGER_TORN;
            }
            set_error("offset %zu: corrupt record: CRC mismatch (stored 0x%08" PRIx32
                      ", computed 0x%08" PRIx32 ") with %zu more bytes after it",
                      off, get32(buf + off + 4),
                      hb_ledger_crc32c(buf + off + HB_LEDGER_FRAME_SIZE, plen), len - after);
            return HB_ECORRUPT;
        case FRAME_BAD_LEN:
            valid = next_valid_record(buf, len, off + 1, version);
            if (valid == len) {
                set_error("offset %zu: torn record: impossible length %" PRIu32
                          " and nothing valid after it",
                          off, plen);
                return HB_LEDGER_TORN;
            }
            set_error("offset %zu: corrupt record: impossible length %" PRIu32
                      " with a valid record at offset %zu after it",
                      off, plen, valid);
            return HB_ECORRUPT;
        case FRAME_BAD_TYPE:
            set_error("offset %zu: corrupt record: CRC matches but type %u does not fit length "
                      "%" PRIu32,
                      off, (unsigned)buf[off + HB_LEDGER_FRAME_SIZE], plen);
            return HB_ECORRUPT;
        }
    }
    return 0;
}

/* ---- The books: one hb_book judging every record, and the lifetime totals ---- */

/* Replay, the writer and the audit all apply records through books_apply, so the book's one claim
 * rule (hb_book) judges them all. Every record counts in the totals as journaled (so a claim that
 * makes no sense still shows as money granted, and compaction cannot hide it); the book holds only
 * what makes sense. A record that makes none is reported through problem() and changes nothing
 * else. */
typedef struct books {
    hb_book_t book;     /* the envelopes not expired, fully claimed or not */
    hb_book_t *retired; /* the audit's: envelopes expired, to name a claim after expiry */
    uint64_t full;      /* fully claimed envelopes in the book */
    hb_ledger_totals_t totals;
    uint32_t max_id;      /* the highest send-envelope id seen */
    uint32_t reserved[3]; /* the last id reserved, by hb_envelope_kind_t (0: none) */
    /* The SNAPSHOT being read: */
    size_t snapshot_offset;
    uint64_t snapshot_left; /* its records (STATE, RESERVE) not yet seen */
    uint64_t snapshot_seen;
    /* Where a record that makes no sense is reported, with its position. */
    void (*problem)(void *ctx, uint64_t pos, const char *msg);
    void *problem_ctx;
} books_t;

static const char *kind_name(unsigned kind)
{
    return kind == HB_ENVELOPE_SHAKE ? "shake" : kind == HB_ENVELOPE_SEND ? "send" : "unknown";
}

static void books_problem(books_t *b, uint64_t pos, const char *fmt, ...) HB_PRINTF(3, 4);
static void books_problem(books_t *b, uint64_t pos, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->problem(b->problem_ctx, pos, msg);
}

static int books_init(books_t *b)
{
    memset(b, 0, sizeof *b);
    return hb_book_init(&b->book, 0);
}

static void books_free(books_t *b)
{
    hb_book_close(&b->book);
}

/* How many recipients the bitmask says have claimed. */
static unsigned claimed_count(uint8_t claimed)
{
    unsigned n = 0;
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++)
        n += (claimed >> i) & 1u;
    return n;
}

static uint64_t unclaimed(const hb_sendenv_t *e)
{
    return e->claimed_sum >= e->total ? 0 : (uint64_t)e->total - e->claimed_sum;
}

/* Whether a record of this type may be one of a snapshot's. */
static bool snapshot_type(hb_ledger_type_t type)
{
    return type == HB_LEDGER_STATE || type == HB_LEDGER_RESERVE;
}

/* Add an envelope (of an ENVELOPE or STATE record) to the book. Returns 0, 1 (refused: reported),
 * or UV_ENOMEM. */
static int books_add(books_t *b, const hb_sendenv_t *e, uint64_t pos, const char *what)
{
    const char *why = hb_sendenv_check(e);
    if (why != NULL) {
        books_problem(b, pos, "%s of envelope %" PRIu32 " is malformed: %s", what, e->id, why);
        return 1;
    }
    int rc = hb_book_add(&b->book, e);
    if (rc == UV_EEXIST) {
        books_problem(b, pos, "%s of envelope %" PRIu32 ": the id was issued before", what, e->id);
        return 1;
    }
    if (rc != 0)
        return rc;
    if (hb_sendenv_fully_claimed(e))
        b->full++;
    return 0;
}

static int books_envelope(books_t *b, const hb_sendenv_t *e, uint64_t pos)
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

static int books_claim(books_t *b, const hb_ledger_record_t *r, uint64_t pos)
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
static int books_expire(books_t *b, uint32_t id, uint64_t pos)
{
    hb_sendenv_t e;
    if (hb_book_remove(&b->book, id, &e) != 0) {
        if (b->retired != NULL && hb_book_find(b->retired, id) != NULL)
            books_problem(b, pos, "expiry of envelope %" PRIu32 ", which is already expired", id);
        else
            books_problem(b, pos, "expiry of envelope %" PRIu32 ", which is not in the books", id);
        return 1;
    }
    if (hb_sendenv_fully_claimed(&e)) {
        b->full--;
    } else {
        b->totals.expired++;
        b->totals.expired_amount += unclaimed(&e);
    }
    if (b->retired != NULL && hb_book_add(b->retired, &e) == UV_ENOMEM)
        return UV_ENOMEM;
    return 0;
}

static int books_state(books_t *b, const hb_sendenv_t *e, bool in_snapshot, uint64_t pos)
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

static int books_reserve(books_t *b, const hb_ledger_record_t *r, uint64_t pos)
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

/* Apply one record at pos (a file offset, or a sequence number in the writer). The caller has
 * checked that a snapshot's records are STATE or RESERVE. Returns 0 (applied), 1 (made no sense:
 * reported, skipped) or UV_ENOMEM. */
static int books_apply(books_t *b, const hb_ledger_record_t *r, uint64_t pos)
{
    bool in_snapshot = b->snapshot_left > 0 && snapshot_type(r->type);
    if (in_snapshot) {
        b->snapshot_left--;
        b->snapshot_seen++;
    }
    switch (r->type) {
    case HB_LEDGER_ENVELOPE:
        return books_envelope(b, &r->envelope, pos);
    case HB_LEDGER_CLAIM:
        return books_claim(b, r, pos);
    case HB_LEDGER_EXPIRE:
        return books_expire(b, r->envelope_id, pos);
    case HB_LEDGER_STATE:
        return books_state(b, &r->envelope, in_snapshot, pos);
    case HB_LEDGER_SNAPSHOT:
        b->totals = r->totals;
        if (hb_envelope_id_kind(r->max_envelope_id) == HB_ENVELOPE_SEND &&
            r->max_envelope_id > b->max_id)
            b->max_id = r->max_envelope_id;
        b->snapshot_offset = (size_t)pos;
        b->snapshot_left = r->outstanding;
        b->snapshot_seen = 0;
        return 0;
    case HB_LEDGER_RESERVE:
        return books_reserve(b, r, pos);
    }
    return 0;
}

/* The reason (for last_error or a violation) why the snapshot at b->snapshot_offset is cut: its
 * records stop at offset at, where the journal ends (at_end) or another record comes. */
static void snapshot_cut_reason(const books_t *b, char *buf, size_t n, size_t at, bool at_end)
{
    snprintf(buf, n,
             "the snapshot at offset %zu announces %" PRIu64 " records, only %" PRIu64
             " follow it: %s at offset %zu",
             b->snapshot_offset, b->snapshot_left + b->snapshot_seen, b->snapshot_seen,
             at_end ? "the journal is cut" : "another record comes", at);
}

/* Whether the torn record at off (the end of the valid prefix) is a SNAPSHOT cut short: its length
 * field, when there, is the SNAPSHOT's, which no appended record has. */
static bool torn_snapshot(const uint8_t *buf, size_t len, size_t off)
{
    return off >= HB_LEDGER_HEADER_SIZE && len - off >= 4 && get32(buf + off) == PAYLOAD_SNAPSHOT;
}

/* ---- The ledger's private state ---- */

typedef struct queue_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
} queue_buf_t;

struct hb_ledger_state {
    hb_ledger_t *l;
    char *dir;
    char *path;     /* dir/journal */
    char *tmp_path; /* dir/journal.new */
    int fd;         /* the journal, O_APPEND */
    int lock_fd;    /* dir/LOCK, flock()ed */
    hb_fsync_t policy;
    uint64_t compact_min;
    void (*log)(void *arg, const char *line);
    void *log_arg;
    void (*on_durable)(void *arg, uint64_t seq);
    void *durable_arg;
    void (*on_error)(void *arg, int err);
    void *error_arg;

    uv_mutex_t mu;
    uv_cond_t wake; /* the writer waits here for work or close */
    uv_cond_t done; /* waiters wait here for progress */
    uv_thread_t thread;
    bool thread_started;
    /* Under mu: */
    queue_buf_t cur; /* appenders fill it */
    bool closing;
    int error;                 /* sticky I/O error, 0 if none */
    uint32_t last_envelope_id; /* the highest envelope id journaled or queued */
    uint32_t last_reserved[3]; /* the last reservation journaled or queued, by kind */

    /* The writer's own (also open's, before the writer starts): */
    queue_buf_t spare; /* the batch being written */
    books_t books;
    uint64_t anomalies;   /* records that made no sense in the books */
    bool replaying;       /* anomaly positions are file offsets (else sequence numbers) */
    uint64_t bytes;       /* journal size */
    uint64_t records;     /* records in the journal */
    uint64_t written_seq; /* the last seq handed to write() successfully */
    bool dirty;           /* written and not yet fdatasync()ed */
    uint64_t last_sync_ns;
    uint64_t compact_floor; /* no compaction attempt until bytes exceeds this */
};

static void st_log(struct hb_ledger_state *st, const char *fmt, ...) HB_PRINTF(2, 3);
static void st_log(struct hb_ledger_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(st->log, st->log_arg, fmt, ap);
    va_end(ap);
}

/* The books' problem reporter for replay and the writer: count, and log the first few. */
static void log_anomaly(void *ctx, uint64_t pos, const char *msg)
{
    struct hb_ledger_state *st = ctx;
    st->anomalies++;
    if (st->anomalies <= ANOMALY_LOG_MAX)
        st_log(st, "ledger: %s %" PRIu64 ": %s; skipped",
               st->replaying ? "journal offset" : "record seq", pos, msg);
    else if (st->anomalies == ANOMALY_LOG_MAX + 1)
        st_log(st, "ledger: more records that make no sense: counted, not logged");
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t *calls)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (calls != NULL)
            (*calls)++;
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return UV_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sync_fd(int fd)
{
    while (fdatasync(fd) != 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    while (fsync(fd) != 0) {
        if (errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    close(fd);
    return rc;
}

/* mkdir -p. */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (p == NULL)
        return UV_ENOMEM;
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = -errno;
        p[i] = c;
    }
    free(p);
    return rc;
}

/* Make sure b has room for n more bytes. */
static int queue_reserve(queue_buf_t *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    size_t cap = b->cap == 0 ? QUEUE_INITIAL_CAPACITY : b->cap;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return UV_ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return UV_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void state_free(struct hb_ledger_state *st)
{
    if (st->fd >= 0)
        close(st->fd);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the flock */
    free(st->cur.p);
    free(st->spare.p);
    books_free(&st->books);
    free(st->dir);
    free(st->path);
    free(st->tmp_path);
    free(st);
}

/* Record the writer's first I/O error; every later append fails with it. Called without mu, on
 * the writer thread: the first time, it is logged and announced to on_error. */
static void set_sticky(struct hb_ledger_state *st, int err, const char *what)
{
    uv_mutex_lock(&st->mu);
    bool first = st->error == 0;
    if (first)
        st->error = err;
    st->cur.len = 0; /* never to be acknowledged */
    uv_cond_broadcast(&st->done);
    uv_mutex_unlock(&st->mu);
    if (!first)
        return;
    st_log(st, "ledger: %s %s failed: %s (%s); every later append fails", what, st->path,
           hb_err_name(err), hb_strerror(err));
    if (st->on_error != NULL)
        st->on_error(st->error_arg, err);
}

/* ---- Compaction ---- */

/* The kinds with a reservation, in the order a snapshot lists them. */
static const hb_envelope_kind_t reserve_kinds[] = {HB_ENVELOPE_SHAKE, HB_ENVELOPE_SEND};

/* How many RESERVE records a snapshot of b carries. */
static unsigned snapshot_reserves(const books_t *b)
{
    unsigned n = 0;
    for (size_t k = 0; k < sizeof reserve_kinds / sizeof reserve_kinds[0]; k++)
        n += b->reserved[reserve_kinds[k]] != 0;
    return n;
}

static uint64_t snapshot_size(const books_t *b)
{
    return HB_LEDGER_HEADER_SIZE + HB_LEDGER_FRAME_SIZE + PAYLOAD_SNAPSHOT +
           (uint64_t)b->book.count * (HB_LEDGER_FRAME_SIZE + PAYLOAD_STATE) +
           (uint64_t)snapshot_reserves(b) * (HB_LEDGER_FRAME_SIZE + PAYLOAD_RESERVE);
}

typedef struct image {
    uint8_t *p;
    size_t len;
    size_t cap;
} image_t;

static void image_put(image_t *img, const hb_ledger_record_t *r)
{
    img->len += (size_t)hb_ledger_encode(r, img->p + img->len, img->cap - img->len);
}

static void image_put_state(void *arg, const hb_sendenv_t *e)
{
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_STATE;
    r.envelope = *e;
    r.envelope_id = e->id;
    image_put(arg, &r);
}

/* Build the snapshot image of the books: header, SNAPSHOT, one STATE per envelope in the book
 * (fully claimed ones included), then one RESERVE per reserved id space; the SNAPSHOT's
 * outstanding counts the STATE and RESERVE records. */
static uint8_t *snapshot_image(const books_t *b, size_t *len)
{
    uint64_t size = snapshot_size(b);
    uint64_t records = (uint64_t)b->book.count + snapshot_reserves(b);
    if (size > SIZE_MAX || records > UINT32_MAX)
        return NULL;
    image_t img = {malloc((size_t)size), 0, (size_t)size};
    if (img.p == NULL)
        return NULL;
    header_bytes(img.p);
    img.len = HB_LEDGER_HEADER_SIZE;
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_SNAPSHOT;
    r.max_envelope_id = b->max_id;
    r.outstanding = (uint32_t)records;
    r.totals = b->totals;
    image_put(&img, &r);
    hb_book_foreach(&b->book, image_put_state, &img);
    for (size_t k = 0; k < sizeof reserve_kinds / sizeof reserve_kinds[0]; k++) {
        if (b->reserved[reserve_kinds[k]] == 0)
            continue;
        memset(&r, 0, sizeof r);
        r.type = HB_LEDGER_RESERVE;
        r.kind = (uint8_t)reserve_kinds[k];
        r.last = b->reserved[reserve_kinds[k]];
        image_put(&img, &r);
    }
    *len = img.len;
    return img.p;
}

/* Compact when the journal is over both thresholds. A failure before the rename leaves the old
 * journal in use (logged; retried once the journal has grown by compact_min more); a failure
 * after it is returned (it becomes the sticky error). */
static int maybe_compact(struct hb_ledger_state *st)
{
    uint64_t snap = snapshot_size(&st->books);
    if (st->bytes <= st->compact_min || st->bytes <= st->compact_floor || st->bytes / 2 < snap ||
        (st->bytes / 2 == snap && st->bytes % 2 == 0))
        return 0;

    size_t len = 0;
    const char *step = "building the snapshot";
    int rc = UV_ENOMEM;
    int fd = -1;
    uint8_t *img = snapshot_image(&st->books, &len);
    if (img == NULL)
        goto failed;
    step = "creating";
    fd = open(st->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto failed;
    }
    step = "writing";
    if ((rc = write_all(fd, img, len, NULL)) != 0)
        goto failed;
    step = "syncing";
    if ((rc = sync_fd(fd)) != 0)
        goto failed;
    step = "renaming";
    if (rename(st->tmp_path, st->path) != 0) {
        rc = -errno;
        goto failed;
    }
    free(img);
    /* From here on the new file is the journal. */
    close(st->fd);
    st->fd = fd;
    uint64_t old = st->bytes;
    st->bytes = len;
    st->records = 1 + st->books.book.count + snapshot_reserves(&st->books);
    st->compact_floor = 0;
    rc = sync_dir(st->dir);
    uv_mutex_lock(&st->mu);
    st->l->stats.compactions++;
    st->l->stats.bytes = st->bytes;
    st->l->stats.records = st->records;
    uv_mutex_unlock(&st->mu);
    if (rc == 0)
        st_log(st, "ledger: compacted %s: %" PRIu64 " -> %zu bytes, %zu envelopes in the books",
               st->path, old, len, st->books.book.count);
    return rc;

failed:
    st_log(st, "ledger: compaction of %s failed %s %s: %s; the journal stays as it is", st->path,
           step, st->tmp_path, hb_strerror(rc));
    if (fd >= 0) {
        close(fd);
        unlink(st->tmp_path);
    }
    free(img);
    st->compact_floor = st->bytes + st->compact_min;
    return 0;
}

/* ---- The writer thread ---- */

/* Whether EVERYSEC's once-a-second fdatasync is due (dirty, and a second since the last). */
static bool sync_due(const struct hb_ledger_state *st, uint64_t now)
{
    return st->policy == HB_FSYNC_EVERYSEC && st->dirty && now - st->last_sync_ns >= NS_PER_S;
}

/* Apply the records of a batch just written to the books. */
static int apply_batch(struct hb_ledger_state *st, const queue_buf_t *batch, uint64_t first_seq)
{
    size_t off = 0;
    uint64_t seq = first_seq;
    while (off < batch->len) {
        hb_ledger_record_t r;
        uint32_t plen;
        if (frame_at(batch->p, batch->len, off, HB_LEDGER_VERSION, &r, &plen) != FRAME_OK)
            return UV_EIO; /* cannot happen: the appenders encoded these */
        int rc = books_apply(&st->books, &r, seq++);
        if (rc < 0)
            return rc;
        off += r.size;
        st->records++;
    }
    return 0;
}

static void writer_main(void *arg)
{
    struct hb_ledger_state *st = arg;
    hb_ledger_t *l = st->l;
    int rc = maybe_compact(st);
    if (rc != 0)
        set_sticky(st, rc, "syncing the directory of");

    uv_mutex_lock(&st->mu);
    for (;;) {
        /* Wait for records, a due fdatasync, or close. */
        for (;;) {
            if (st->closing || st->error != 0)
                break;
            if (st->cur.len > 0)
                break;
            uint64_t now = uv_hrtime();
            if (sync_due(st, now))
                break;
            if (st->policy == HB_FSYNC_EVERYSEC && st->dirty)
                uv_cond_timedwait(&st->wake, &st->mu, st->last_sync_ns + NS_PER_S - now);
            else
                uv_cond_wait(&st->wake, &st->mu);
        }
        if (st->error != 0 || (st->closing && st->cur.len == 0))
            break;

        /* Take the whole queue: one write for all of it. */
        queue_buf_t batch = st->cur;
        st->cur = st->spare;
        st->spare = batch;
        uint64_t batch_last = l->stats.appended;
        uv_mutex_unlock(&st->mu);

        uint64_t writes = 0;
        uint64_t fsyncs = 0;
        const char *what = "writing";
        rc = 0;
        if (batch.len > 0) {
            rc = write_all(st->fd, batch.p, batch.len, &writes);
            if (rc == 0) {
                st->bytes += batch.len;
                st->dirty = true;
                what = "indexing what was written to";
                rc = apply_batch(st, &batch, st->written_seq + 1);
                if (rc == 0)
                    st->written_seq = batch_last;
            }
        }
        uint64_t now = uv_hrtime();
        if (rc == 0 && (st->policy == HB_FSYNC_ALWAYS ? batch.len > 0 : sync_due(st, now))) {
            what = "syncing";
            rc = sync_fd(st->fd);
            fsyncs++;
            if (rc == 0) {
                st->dirty = false;
                st->last_sync_ns = now;
            }
        }
        st->spare.len = 0;

        uv_mutex_lock(&st->mu);
        l->stats.writes += writes;
        l->stats.fsyncs += fsyncs;
        l->stats.bytes = st->bytes;
        l->stats.records = st->records;
        l->stats.outstanding = st->books.book.count - st->books.full;
        l->stats.held = st->books.book.count;
        l->stats.anomalies = st->anomalies;
        if (rc == 0) {
            if (!st->dirty)
                l->stats.synced = st->written_seq;
            l->stats.durable = st->policy == HB_FSYNC_ALWAYS ? l->stats.synced : st->written_seq;
        }
        uint64_t durable = l->stats.durable;
        uv_cond_broadcast(&st->done);
        uv_mutex_unlock(&st->mu);

        if (rc != 0) {
            set_sticky(st, rc, what);
        } else {
            if (batch.len > 0 && st->on_durable != NULL)
                st->on_durable(st->durable_arg, durable);
            rc = maybe_compact(st);
            if (rc != 0)
                set_sticky(st, rc, "syncing the directory of");
        }
        uv_mutex_lock(&st->mu);
    }
    bool final_sync = st->error == 0 && st->dirty;
    uv_mutex_unlock(&st->mu);

    /* Close: whatever the policy, what was written reaches the disk. */
    if (final_sync) {
        rc = sync_fd(st->fd);
        uv_mutex_lock(&st->mu);
        l->stats.fsyncs++;
        if (rc == 0) {
            st->dirty = false;
            l->stats.synced = st->written_seq;
            l->stats.durable = st->written_seq;
        }
        uv_cond_broadcast(&st->done);
        uv_mutex_unlock(&st->mu);
        if (rc != 0)
            set_sticky(st, rc, "syncing");
    }
}

/* ---- Open, replay, close ---- */

int hb_fsync_parse(const char *text, hb_fsync_t *out)
{
    if (text == NULL || out == NULL)
        return UV_EINVAL;
    if (strcmp(text, "always") == 0)
        *out = HB_FSYNC_ALWAYS;
    else if (strcmp(text, "everysec") == 0)
        *out = HB_FSYNC_EVERYSEC;
    else if (strcmp(text, "no") == 0)
        *out = HB_FSYNC_NO;
    else
        return UV_EINVAL;
    return 0;
}

const char *hb_fsync_name(hb_fsync_t policy)
{
    switch (policy) {
    case HB_FSYNC_ALWAYS:
        return "always";
    case HB_FSYNC_EVERYSEC:
        return "everysec";
    case HB_FSYNC_NO:
        return "no";
    }
    return "unknown";
}

static int replay_record(void *arg, const hb_ledger_record_t *r, size_t offset)
{
    struct hb_ledger_state *st = arg;
    if (st->books.snapshot_left > 0 && !snapshot_type(r->type)) {
        char why[MSG_MAX];
        snapshot_cut_reason(&st->books, why, sizeof why, offset, false);
        set_error("offset %zu: corrupt journal: %s", offset, why);
        return HB_ECORRUPT;
    }
    st->records++;
    int rc = books_apply(&st->books, r, offset);
    return rc < 0 ? rc : 0;
}

/* Read the whole file open as fd into *buf (malloc'd, NULL when empty). */
static int read_file(int fd, uint8_t **buf, size_t *len)
{
    struct stat sb;
    *buf = NULL;
    *len = 0;
    if (fstat(fd, &sb) != 0)
        return -errno;
    if (!S_ISREG(sb.st_mode))
        return UV_EINVAL;
    if (sb.st_size == 0)
        return 0;
    if ((uint64_t)sb.st_size > SIZE_MAX)
        return UV_ENOMEM;
    size_t size = (size_t)sb.st_size;
    uint8_t *p = malloc(size);
    if (p == NULL)
        return UV_ENOMEM;
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, p + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int rc = n < 0 ? -errno : UV_EIO;
            free(p);
            return rc;
        }
        got += (size_t)n;
    }
    *buf = p;
    *len = size;
    return 0;
}

/* Rewrite the version in the header of a version 1 journal (replayed, nothing after its valid
 * records) to the current one, and sync it, before anything is appended. Through a descriptor of
 * its own: a pwrite() to the O_APPEND one would append. */
static int upgrade_header(struct hb_ledger_state *st)
{
    uint8_t v[4];
    put32(v, HB_LEDGER_VERSION);
    int fd = open(st->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    ssize_t n;
    while ((n = pwrite(fd, v, sizeof v, 8)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        rc = -errno;
    else if (n != (ssize_t)sizeof v)
        rc = UV_EIO;
    if (rc == 0)
        rc = sync_fd(fd);
    close(fd);
    return rc;
}

/* Replay st->path into st->books, truncating a torn tail, writing the header of a new (or
 * header-torn) journal, and upgrading the header of a version 1 journal. */
static int replay(struct hb_ledger_state *st)
{
    uint8_t *buf;
    size_t len;
    int rc = read_file(st->fd, &buf, &len);
    if (rc != 0) {
        set_error("%s: cannot read: %s", st->path, hb_strerror(rc));
        return rc;
    }
    size_t good_end = 0;
    st->replaying = true;
    rc = hb_ledger_scan(buf, len, replay_record, st, &good_end);
    st->replaying = false;
    uint32_t version = len >= HB_LEDGER_HEADER_SIZE ? get32(buf + 8) : HB_LEDGER_VERSION;
    /* A snapshot is written whole and synced before it becomes the journal: no crash cuts it. */
    if (rc == HB_LEDGER_TORN && torn_snapshot(buf, len, good_end)) {
        set_error("offset %zu: corrupt journal: a snapshot record cut short (%zu of %u bytes)",
                  good_end, len - good_end, HB_LEDGER_FRAME_SIZE + PAYLOAD_SNAPSHOT);
        rc = HB_ECORRUPT;
    } else if ((rc == 0 || rc == HB_LEDGER_TORN) && st->books.snapshot_left > 0) {
        char why[MSG_MAX];
        snapshot_cut_reason(&st->books, why, sizeof why, good_end, true);
        set_error("offset %zu: corrupt journal: %s%s", good_end, why,
                  rc == HB_LEDGER_TORN ? " (inside a torn record)" : "");
        rc = HB_ECORRUPT;
    }
    free(buf);
    if (rc == HB_ECORRUPT || rc == UV_ENOTSUP) {
        char why[MSG_MAX];
        snprintf(why, sizeof why, "%s", last_error);
        set_error("%s: %s", st->path, why);
        return rc;
    }
    if (rc < 0) {
        set_error("%s: replay failed: %s", st->path, hb_strerror(rc));
        return rc;
    }
    if (rc == HB_LEDGER_TORN) {
        st_log(st, "ledger: %s: %s; truncated to %zu bytes (%zu dropped)", st->path, last_error,
               good_end, len - good_end);
        rc = ftruncate(st->fd, (off_t)good_end) != 0 ? -errno : sync_fd(st->fd);
        if (rc != 0) {
            set_error("%s: cannot truncate the torn tail: %s", st->path, hb_strerror(rc));
            return rc;
        }
        len = good_end;
    }
    if (len == 0) {
        uint8_t h[HB_LEDGER_HEADER_SIZE];
        header_bytes(h);
        if ((rc = write_all(st->fd, h, sizeof h, NULL)) != 0 || (rc = sync_fd(st->fd)) != 0 ||
            (rc = sync_dir(st->dir)) != 0) {
            set_error("%s: cannot write the header: %s", st->path, hb_strerror(rc));
            return rc;
        }
        len = sizeof h;
        version = HB_LEDGER_VERSION;
    }
    if (version < HB_LEDGER_VERSION) {
        if ((rc = upgrade_header(st)) != 0) {
            set_error("%s: cannot rewrite the header to format version %u: %s", st->path,
                      HB_LEDGER_VERSION, hb_strerror(rc));
            return rc;
        }
        st_log(st, "ledger: %s: format version %" PRIu32 " rewritten as version %u", st->path,
               version, HB_LEDGER_VERSION);
    }
    st->bytes = len;
    return 0;
}

/* Take dir/LOCK, so that two ledgers never append to one journal. */
static int take_lock(struct hb_ledger_state *st)
{
    char *lock_path = path_join(st->dir, HB_LEDGER_LOCK_NAME);
    if (lock_path == NULL)
        return UV_ENOMEM;
    int rc = 0;
    st->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0) {
        rc = -errno;
        set_error("%s: %s", lock_path, hb_strerror(rc));
    } else if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? UV_EBUSY : -errno;
        set_error("%s: %s", lock_path,
                  rc == UV_EBUSY ? "the journal is open in another ledger" : hb_strerror(rc));
    }
    free(lock_path);
    return rc;
}

int hb_ledger_open(hb_ledger_t *l, const hb_ledger_options_t *o,
                   void (*outstanding)(void *arg, const hb_sendenv_t *e), void *arg)
{
    last_error[0] = '\0';
    if (l == NULL)
        return UV_EINVAL;
    l->state_ = NULL;
    l->max_envelope_id = 0;
    l->reserved_shake = 0;
    l->reserved_send = 0;
    memset(&l->stats, 0, sizeof l->stats);
    if (o == NULL || o->dir == NULL || o->dir[0] == '\0' ||
        (o->fsync != HB_FSYNC_ALWAYS && o->fsync != HB_FSYNC_EVERYSEC && o->fsync != HB_FSYNC_NO)) {
        set_error("invalid ledger options");
        return UV_EINVAL;
    }

    struct hb_ledger_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return UV_ENOMEM;
    st->l = l;
    st->fd = -1;
    st->lock_fd = -1;
    st->policy = o->fsync;
    st->compact_min =
        o->compact_min_bytes == 0 ? HB_LEDGER_DEFAULT_COMPACT_MIN_BYTES : o->compact_min_bytes;
    st->log = o->log;
    st->log_arg = o->log_arg;
    st->on_durable = o->on_durable;
    st->durable_arg = o->durable_arg;
    st->on_error = o->on_error;
    st->error_arg = o->error_arg;
    st->dir = strdup(o->dir);
    st->path = path_join(o->dir, HB_LEDGER_JOURNAL_NAME);
    st->tmp_path = path_join(o->dir, HB_LEDGER_COMPACT_NAME);
    int rc = UV_ENOMEM;
    if (books_init(&st->books) != 0 || st->dir == NULL || st->path == NULL ||
        st->tmp_path == NULL || queue_reserve(&st->cur, 1) != 0 ||
        queue_reserve(&st->spare, 1) != 0)
        goto fail;
    st->books.problem = log_anomaly;
    st->books.problem_ctx = st;
    if ((rc = make_dirs(o->dir)) != 0) {
        set_error("%s: cannot create: %s", o->dir, hb_strerror(rc));
        goto fail;
    }
    if ((rc = take_lock(st)) != 0)
        goto fail;
    if (unlink(st->tmp_path) == 0)
        st_log(st, "ledger: removed %s left by a compaction cut short", st->tmp_path);
    st->fd = open(st->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (st->fd < 0) {
        rc = -errno;
        set_error("%s: %s", st->path, hb_strerror(rc));
        goto fail;
    }
    if ((rc = replay(st)) != 0)
        goto fail;

    if (outstanding != NULL)
        hb_book_foreach(&st->books.book, outstanding, arg);
    l->max_envelope_id = st->books.max_id;
    l->reserved_shake = st->books.reserved[HB_ENVELOPE_SHAKE];
    l->reserved_send = st->books.reserved[HB_ENVELOPE_SEND];
    st->last_envelope_id = st->books.max_id;
    memcpy(st->last_reserved, st->books.reserved, sizeof st->last_reserved);
    l->stats.records = st->records;
    l->stats.replayed = st->records;
    l->stats.bytes = st->bytes;
    l->stats.outstanding = st->books.book.count - st->books.full;
    l->stats.held = st->books.book.count;
    l->stats.anomalies = st->anomalies;

    if ((rc = uv_mutex_init(&st->mu)) != 0)
        goto fail;
    if ((rc = uv_cond_init(&st->wake)) != 0) {
        uv_mutex_destroy(&st->mu);
        goto fail;
    }
    if ((rc = uv_cond_init(&st->done)) != 0) {
        uv_cond_destroy(&st->wake);
        uv_mutex_destroy(&st->mu);
        goto fail;
    }
    l->state_ = st;
    if ((rc = uv_thread_create(&st->thread, writer_main, st)) != 0) {
        l->state_ = NULL;
        uv_cond_destroy(&st->done);
        uv_cond_destroy(&st->wake);
        uv_mutex_destroy(&st->mu);
        set_error("cannot start the ledger's writer thread: %s", hb_strerror(rc));
        goto fail;
    }
    last_error[0] = '\0';
    return 0;

fail:
    state_free(st);
    l->max_envelope_id = 0;
    l->reserved_shake = 0;
    l->reserved_send = 0;
    memset(&l->stats, 0, sizeof l->stats);
    return rc;
}

void hb_ledger_close(hb_ledger_t *l)
{
    if (l == NULL || l->state_ == NULL)
        return;
    struct hb_ledger_state *st = l->state_;
    uv_mutex_lock(&st->mu);
    st->closing = true;
    uv_cond_signal(&st->wake);
    uv_mutex_unlock(&st->mu);
    uv_thread_join(&st->thread);
    uv_cond_destroy(&st->done);
    uv_cond_destroy(&st->wake);
    uv_mutex_destroy(&st->mu);
    l->state_ = NULL;
    state_free(st);
}

/* ---- Appending ---- */

/* Under mu: whether r may follow what was journaled and queued before it (envelope ids and
 * reservations only go up). */
static bool in_order(const struct hb_ledger_state *st, const hb_ledger_record_t *r)
{
    if (r->type == HB_LEDGER_ENVELOPE)
        return r->envelope.id > st->last_envelope_id;
    if (r->type == HB_LEDGER_RESERVE)
        return r->last > st->last_reserved[r->kind];
    return true;
}

static int append_record(hb_ledger_t *l, const hb_ledger_record_t *r, uint64_t *seq)
{
    uint8_t rec[HB_LEDGER_MAX_RECORD];
    int n = hb_ledger_encode(r, rec, sizeof rec);
    if (n < 0)
        return n;
    struct hb_ledger_state *st = l->state_;
    int rc = 0;
    uv_mutex_lock(&st->mu);
    if (st->closing)
        rc = UV_EINVAL;
    else if (st->error != 0)
        rc = st->error;
    else if (!in_order(st, r))
        rc = UV_EINVAL;
    else
        rc = queue_reserve(&st->cur, (size_t)n);
    if (rc == 0) {
        if (r->type == HB_LEDGER_ENVELOPE)
            st->last_envelope_id = r->envelope.id;
        else if (r->type == HB_LEDGER_RESERVE)
            st->last_reserved[r->kind] = r->last;
        if (st->cur.len == 0)
            uv_cond_signal(&st->wake);
        memcpy(st->cur.p + st->cur.len, rec, (size_t)n);
        st->cur.len += (size_t)n;
        uint64_t s = ++l->stats.appended;
        if (seq != NULL)
            *seq = s;
    }
    uv_mutex_unlock(&st->mu);
    return rc;
}

int hb_ledger_append_envelope(hb_ledger_t *l, const hb_sendenv_t *e, uint64_t *seq)
{
    if (l == NULL || l->state_ == NULL || e == NULL || e->claimed != 0 ||
        hb_sendenv_check(e) != NULL || hb_envelope_id_kind(e->id) != HB_ENVELOPE_SEND)
        return UV_EINVAL;
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_ENVELOPE;
    r.envelope = *e;
    r.envelope_id = e->id;
    return append_record(l, &r, seq);
}

int hb_ledger_append_claim(hb_ledger_t *l, uint32_t envelope_id, uint32_t user, uint32_t amount,
                           uint64_t *seq)
{
    if (l == NULL || l->state_ == NULL)
        return UV_EINVAL;
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_CLAIM;
    r.envelope_id = envelope_id;
    r.user = user;
    r.amount = amount;
    return append_record(l, &r, seq);
}

int hb_ledger_append_expire(hb_ledger_t *l, uint32_t envelope_id, uint64_t *seq)
{
    if (l == NULL || l->state_ == NULL)
        return UV_EINVAL;
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_EXPIRE;
    r.envelope_id = envelope_id;
    return append_record(l, &r, seq);
}

int hb_ledger_append_reserve(hb_ledger_t *l, hb_envelope_kind_t kind, uint32_t last, uint64_t *seq)
{
    if (l == NULL || l->state_ == NULL || (kind != HB_ENVELOPE_SHAKE && kind != HB_ENVELOPE_SEND) ||
        hb_envelope_id_kind(last) != (int)kind)
        return UV_EINVAL;
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_RESERVE;
    r.kind = (uint8_t)kind;
    r.last = last;
    return append_record(l, &r, seq);
}

void hb_ledger_stats(hb_ledger_t *l, hb_ledger_stats_t *out)
{
    if (l == NULL || out == NULL)
        return;
    struct hb_ledger_state *st = l->state_;
    if (st == NULL) {
        *out = l->stats;
        return;
    }
    uv_mutex_lock(&st->mu);
    *out = l->stats;
    uv_mutex_unlock(&st->mu);
}

static int wait_for(hb_ledger_t *l, uint64_t seq, bool synced, uint64_t timeout_ms)
{
    if (l == NULL || l->state_ == NULL)
        return UV_EINVAL;
    struct hb_ledger_state *st = l->state_;
    uint64_t start = uv_hrtime();
    uint64_t timeout_ns = timeout_ms > UINT64_MAX / NS_PER_MS ? UINT64_MAX : timeout_ms * NS_PER_MS;
    int rc;
    uv_mutex_lock(&st->mu);
    if (seq > l->stats.appended) {
        rc = UV_EINVAL;
    } else {
        for (;;) {
            if ((synced ? l->stats.synced : l->stats.durable) >= seq) {
                rc = 0;
                break;
            }
            if (st->error != 0) {
                rc = st->error;
                break;
            }
            uint64_t elapsed = uv_hrtime() - start;
            if (elapsed >= timeout_ns) {
                rc = UV_ETIMEDOUT;
                break;
            }
            /* In slices: libuv adds the timeout to the clock, which must not overflow. */
            uint64_t left = timeout_ns - elapsed;
            uv_cond_timedwait(&st->done, &st->mu, left < WAIT_SLICE_NS ? left : WAIT_SLICE_NS);
        }
    }
    uv_mutex_unlock(&st->mu);
    return rc;
}

int hb_ledger_wait_durable(hb_ledger_t *l, uint64_t seq, uint64_t timeout_ms)
{
    return wait_for(l, seq, false, timeout_ms);
}

int hb_ledger_wait_synced(hb_ledger_t *l, uint64_t seq, uint64_t timeout_ms)
{
    return wait_for(l, seq, true, timeout_ms);
}

/* ---- Audit ---- */

/* The audit applies every record to books of its own through books_apply, as replay does (so a
 * record replay would skip is a violation), and checks the structure around them. */
typedef struct audit {
    books_t books;
    hb_book_t retired; /* envelopes expired, to name a claim or expiry after it */
    hb_ledger_audit_t *t;
    void (*violation)(void *arg, const char *msg, size_t offset);
    void *arg;
    /* The snapshot being read: */
    uint64_t snapshot_rest; /* the unclaimed rest of its STATE records */
    hb_ledger_totals_t snapshot_totals;
    bool in_snapshot;
} audit_t;

static void violation(audit_t *a, size_t offset, const char *fmt, ...) HB_PRINTF(3, 4);
static void violation(audit_t *a, size_t offset, const char *fmt, ...)
{
    a->t->violations++;
    if (a->violation == NULL)
        return;
    char msg[MSG_MAX];
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

/* The snapshot's records are all read, or the journal moved on (at offset at) or ended there
 * (at_end) without them: check them against it. */
static void audit_end_snapshot(audit_t *a, size_t at, bool at_end)
{
    if (!a->in_snapshot)
        return;
    a->in_snapshot = false;
    books_t *b = &a->books;
    if (b->snapshot_left > 0) {
        char why[MSG_MAX];
        snapshot_cut_reason(b, why, sizeof why, at, at_end);
        violation(a, b->snapshot_offset, "%s", why);
        b->snapshot_left = 0;
    }
    const hb_ledger_totals_t *s = &a->snapshot_totals;
    uint64_t accounted = s->claimed + s->expired_amount + a->snapshot_rest;
    if (s->issued != accounted)
        violation(a, b->snapshot_offset,
                  "snapshot does not balance: issued %" PRIu64 " != claimed %" PRIu64
                  " + expired %" PRIu64 " + outstanding %" PRIu64,
                  s->issued, s->claimed, s->expired_amount, a->snapshot_rest);
}

/* A claim the books refused may still have taken money: flag one that takes more than the rest of
 * its envelope. */
static void audit_over_claim(audit_t *a, const hb_ledger_record_t *r, size_t offset)
{
    const hb_sendenv_t *e = hb_book_find(&a->books.book, r->envelope_id);
    if (e == NULL)
        return;
    uint64_t sum = (uint64_t)e->claimed_sum + r->amount;
    if (sum > e->total)
        violation(a, offset, "envelope %" PRIu32 " over-claimed: %" PRIu64 " granted of %" PRIu32,
                  r->envelope_id, sum, e->total);
}

static int audit_record(void *arg, const hb_ledger_record_t *r, size_t offset)
{
    audit_t *a = arg;
    hb_ledger_audit_t *t = a->t;
    books_t *b = &a->books;
    bool of_snapshot = b->snapshot_left > 0 && snapshot_type(r->type);
    if (!of_snapshot)
        audit_end_snapshot(a, offset, false);
    t->records++;

    if (r->type == HB_LEDGER_STATE && !of_snapshot)
        violation(a, offset, "state of envelope %" PRIu32 " outside a snapshot", r->envelope.id);
    if (r->type == HB_LEDGER_STATE && of_snapshot)
        a->snapshot_rest += unclaimed(&r->envelope);
    hb_ledger_totals_t before = b->totals;
    int rc = books_apply(b, r, offset);
    if (rc < 0)
        return rc;
    if (r->type == HB_LEDGER_CLAIM && rc == 1)
        audit_over_claim(a, r, offset);
    if (r->type == HB_LEDGER_SNAPSHOT) {
        if (offset != HB_LEDGER_HEADER_SIZE) {
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
    hb_ledger_audit_t *t = arg;
    t->held++;
    if (!hb_sendenv_fully_claimed(e)) {
        t->outstanding++;
        t->outstanding_amount += unclaimed(e);
    }
}

static void audit_free(audit_t *a)
{
    books_free(&a->books);
    hb_book_close(&a->retired);
}

int hb_ledger_audit_buf(const uint8_t *buf, size_t len, hb_ledger_audit_t *totals,
                        void (*violation_cb)(void *arg, const char *msg, size_t offset), void *arg)
{
    hb_ledger_audit_t dummy;
    if (totals == NULL)
        totals = &dummy;
    memset(totals, 0, sizeof *totals);
    totals->size = len;
    audit_t a;
    memset(&a, 0, sizeof a);
    a.t = totals;
    a.violation = violation_cb;
    a.arg = arg;
    if (books_init(&a.books) != 0 || hb_book_init(&a.retired, 0) != 0) {
        audit_free(&a);
        set_error("audit: %s", hb_strerror(UV_ENOMEM));
        return UV_ENOMEM;
    }
    a.books.retired = &a.retired;
    a.books.problem = audit_problem;
    a.books.problem_ctx = &a;

    size_t good_end = 0;
    int rc = hb_ledger_scan(buf, len, audit_record, &a, &good_end);
    if (rc == HB_ECORRUPT && good_end < HB_LEDGER_HEADER_SIZE) {
        audit_free(&a);
        return rc; /* not a journal: last_error says why */
    }
    if (rc == UV_ENOTSUP || rc == UV_ENOMEM || rc == UV_EINVAL) {
        audit_free(&a);
        if (rc != UV_ENOTSUP)
            set_error("audit: %s", hb_strerror(rc));
        return rc;
    }
    if (len >= HB_LEDGER_HEADER_SIZE)
        totals->version = get32(buf + 8);
    audit_end_snapshot(&a, good_end, true);
    if (rc == HB_ECORRUPT) {
        /* The scanner's reason starts "offset N: ", which the violation carries already. */
        const char *why = strstr(last_error, ": ");
        violation(&a, good_end, "%s; the records after it are not checked",
                  why != NULL ? why + 2 : last_error);
    } else if (rc == HB_LEDGER_TORN) {
        totals->torn = 1;
        totals->torn_offset = good_end;
        if (torn_snapshot(buf, len, good_end))
            violation(&a, good_end,
                      "a snapshot record cut short (%zu of %u bytes): no crash cuts a snapshot",
                      len - good_end, HB_LEDGER_FRAME_SIZE + PAYLOAD_SNAPSHOT);
    }

    hb_book_foreach(&a.books.book, audit_tally, totals);
    totals->totals = a.books.totals;
    totals->max_envelope_id = a.books.max_id;
    totals->reserved_shake = a.books.reserved[HB_ENVELOPE_SHAKE];
    totals->reserved_send = a.books.reserved[HB_ENVELOPE_SEND];
    const hb_ledger_totals_t *x = &totals->totals;
    if (x->issued != x->claimed + x->expired_amount + totals->outstanding_amount)
        violation(&a, good_end,
                  "the books do not balance: issued %" PRIu64 " != claimed %" PRIu64
                  " + expired %" PRIu64 " + outstanding %" PRIu64,
                  x->issued, x->claimed, x->expired_amount, totals->outstanding_amount);
    audit_free(&a);
    return totals->violations > INT32_MAX ? INT32_MAX : (int)totals->violations;
}

int hb_ledger_audit(const char *dir, hb_ledger_audit_t *totals,
                    void (*violation_cb)(void *arg, const char *msg, size_t offset), void *arg)
{
    last_error[0] = '\0';
    if (dir == NULL)
        return UV_EINVAL;
    char *path = path_join(dir, HB_LEDGER_JOURNAL_NAME);
    if (path == NULL)
        return UV_ENOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        set_error("%s: %s", path, hb_strerror(rc));
        free(path);
        return rc;
    }
    uint8_t *buf;
    size_t len;
    int rc = read_file(fd, &buf, &len);
    close(fd);
    if (rc != 0) {
        set_error("%s: cannot read: %s", path, hb_strerror(rc));
        free(path);
        return rc;
    }
    rc = hb_ledger_audit_buf(buf, len, totals, violation_cb, arg);
    free(buf);
    if (rc < 0) {
        char why[MSG_MAX];
        snprintf(why, sizeof why, "%s", last_error);
        set_error("%s: %s", path, why);
    }
    free(path);
    return rc;
}
