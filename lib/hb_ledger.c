/* The ledger: the claim journal's format (CRC32C framing, scanner, encoder), its writer thread
 * with group commit and compaction, replay at open, and the offline audit of the books. */
#include "hb_internal.h"
#include "hongbao/ledger.h"

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

#define ALL_CLAIMED ((uint8_t)((1u << HB_NOTICE_RECIPIENTS) - 1u))
#define NS_PER_S    UINT64_C(1000000000)
#define NS_PER_MS   UINT64_C(1000000)
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

/* The payload length of a record type, 0 for an unknown type. */
static uint32_t payload_size(unsigned type)
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
    default:
        return 0;
    }
}

/* Whether some record type has a payload of this length. */
static bool possible_length(uint32_t len)
{
    return len == PAYLOAD_ENVELOPE || len == PAYLOAD_CLAIM || len == PAYLOAD_EXPIRE ||
           len == PAYLOAD_STATE || len == PAYLOAD_SNAPSHOT;
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
    uint32_t plen = payload_size((unsigned)r->type);
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
    }
    put32(buf, plen);
    put32(buf + 4, hb_ledger_crc32c(p, plen));
    return (int)(HB_LEDGER_FRAME_SIZE + plen);
}

/* Decode a payload whose CRC matched. False when its type is unknown or its length is not the
 * type's. */
static bool decode_payload(const uint8_t *p, uint32_t plen, hb_ledger_record_t *r)
{
    memset(r, 0, sizeof *r);
    unsigned type = p[0];
    if (payload_size(type) == 0 || payload_size(type) != plen)
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

/* Look at the frame at off (< len); on FRAME_OK *r is the decoded record. *plen gets the length
 * field when there is one. */
static enum frame_status frame_at(const uint8_t *buf, size_t len, size_t off, hb_ledger_record_t *r,
                                  uint32_t *plen)
{
    size_t rem = len - off;
    *plen = 0;
    if (rem < HB_LEDGER_FRAME_SIZE)
        return FRAME_SHORT;
    *plen = get32(buf + off);
    if (!possible_length(*plen))
        return FRAME_BAD_LEN;
    if (*plen > rem - HB_LEDGER_FRAME_SIZE)
        return FRAME_PAST_END;
    const uint8_t *payload = buf + off + HB_LEDGER_FRAME_SIZE;
    if (hb_ledger_crc32c(payload, *plen) != get32(buf + off + 4))
        return FRAME_BAD_CRC;
    if (!decode_payload(payload, *plen, r))
        return FRAME_BAD_TYPE;
    return FRAME_OK;
}

/* The offset of the first valid record starting at or after from, or len if none. */
static size_t next_valid_record(const uint8_t *buf, size_t len, size_t from)
{
    hb_ledger_record_t r;
    uint32_t plen;
    for (size_t p = from; p < len && len - p >= HB_LEDGER_FRAME_SIZE; p++) {
        if (frame_at(buf, len, p, &r, &plen) == FRAME_OK)
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

/* The header at the start of buf: 0 when valid, HB_LEDGER_TORN for a prefix of one, else
 * HB_ECORRUPT or UV_ENOTSUP (last_error set for all but 0). */
static int check_header(const uint8_t *buf, size_t len)
{
    uint8_t h[HB_LEDGER_HEADER_SIZE];
    header_bytes(h);
    if (len < HB_LEDGER_HEADER_SIZE) {
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
    uint32_t version = get32(buf + 8);
    if (version != HB_LEDGER_VERSION) {
        set_error("offset 8: journal format version %" PRIu32 ", this library reads %u", version,
                  HB_LEDGER_VERSION);
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
    int rc = check_header(buf, len);
    if (rc != 0)
        return rc;

    size_t off = HB_LEDGER_HEADER_SIZE;
    *good_end = off;
    while (off < len) {
        hb_ledger_record_t r;
        uint32_t plen;
        size_t after, valid;
        switch (frame_at(buf, len, off, &r, &plen)) {
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
            valid = next_valid_record(buf, len, off + 1);
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

/* ---- The envelope map: open addressing, linear probing, backward-shift deletion ---- */

struct slot {
    hb_sendenv_t e;
    uint8_t used;
    uint8_t status; /* the audit's SLOT_* */
};

typedef struct envmap {
    struct slot *slots;
    size_t mask; /* capacity - 1, capacity a power of two (0 when slots is NULL) */
    unsigned bits;
    size_t count;
} envmap_t;

enum { SLOT_OPEN = 0, SLOT_FULL = 1, SLOT_EXPIRED = 2 };

static size_t map_home(const envmap_t *m, uint32_t id)
{
    return (size_t)(((uint64_t)id * UINT64_C(0x9E3779B97F4A7C15)) >> (64u - m->bits));
}

static struct slot *map_find(const envmap_t *m, uint32_t id)
{
    if (m->slots == NULL)
        return NULL;
    for (size_t i = map_home(m, id);; i = (i + 1) & m->mask) {
        struct slot *s = &m->slots[i];
        if (!s->used)
            return NULL;
        if (s->e.id == id)
            return s;
    }
}

/* Put e (whose id is not in m) into its place, in a table known to have room. */
static struct slot *map_place(envmap_t *m, const hb_sendenv_t *e)
{
    size_t i = map_home(m, e->id);
    while (m->slots[i].used)
        i = (i + 1) & m->mask;
    m->slots[i].e = *e;
    m->slots[i].used = 1;
    m->slots[i].status = SLOT_OPEN;
    m->count++;
    return &m->slots[i];
}

/* Insert e, whose id must not be in m yet, growing the table to stay at most half full. Returns
 * the slot, or NULL when out of memory (nothing changed). */
static struct slot *map_insert(envmap_t *m, const hb_sendenv_t *e)
{
    size_t capacity = m->slots == NULL ? 0 : m->mask + 1;
    if ((m->count + 1) * 2 > capacity) {
        size_t new_capacity = capacity == 0 ? 16 : capacity * 2;
        unsigned bits = m->slots == NULL ? 4 : m->bits + 1;
        if (new_capacity > SIZE_MAX / sizeof(struct slot))
            return NULL;
        struct slot *slots = calloc(new_capacity, sizeof *slots);
        if (slots == NULL)
            return NULL;
        envmap_t bigger = {slots, new_capacity - 1, bits, 0};
        for (size_t i = 0; i < capacity; i++) {
            if (m->slots[i].used)
                map_place(&bigger, &m->slots[i].e)->status = m->slots[i].status;
        }
        free(m->slots);
        *m = bigger;
    }
    return map_place(m, e);
}

/* Remove the entry in slot s, shifting later entries of its probe chain back. */
static void map_remove(envmap_t *m, struct slot *s)
{
    size_t hole = (size_t)(s - m->slots);
    for (size_t j = (hole + 1) & m->mask; m->slots[j].used; j = (j + 1) & m->mask) {
        size_t home = map_home(m, m->slots[j].e.id);
        /* The entry at j may move to the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole < j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].used = 0;
    m->count--;
}

static void map_free(envmap_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- Envelope checks shared by append, replay and audit ---- */

/* Why e's fixed fields are not a valid envelope, or NULL. */
static const char *envelope_problem(const hb_sendenv_t *e)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        if (e->shares[i] == 0)
            return "a share is 0";
        for (unsigned j = 0; j < i; j++) {
            if (e->recipients[j] == e->recipients[i])
                return "recipients are not distinct";
        }
        sum += e->shares[i];
    }
    if (sum != e->total)
        return "shares do not add up to the total";
    return NULL;
}

/* Why e's claimed state (of a STATE record) is not one an outstanding envelope can have, or
 * NULL. */
static const char *state_problem(const hb_sendenv_t *e)
{
    const char *why = envelope_problem(e);
    if (why != NULL)
        return why;
    if ((e->claimed & ~ALL_CLAIMED) != 0)
        return "claimed bits beyond the recipients";
    if (e->claimed == ALL_CLAIMED)
        return "every recipient has claimed";
    uint64_t sum = 0;
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        if (e->claimed & (1u << i))
            sum += e->shares[i];
    }
    if (sum != e->claimed_sum)
        return "claimed_sum is not the sum of the claimed shares";
    return NULL;
}

/* The index of user among e's recipients, or -1. */
static int recipient_index(const hb_sendenv_t *e, uint32_t user)
{
    for (int i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        if (e->recipients[i] == user)
            return i;
    }
    return -1;
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

/* ---- The books the ledger keeps: outstanding envelopes and lifetime totals ---- */

/* Every record counts in the totals as journaled (so a claim that makes no sense still shows
 * as money granted, and compaction cannot hide it); the map holds only what makes sense. */
typedef struct books {
    envmap_t map;
    hb_ledger_totals_t totals;
    uint32_t max_id;
    uint64_t states_left; /* STATE records the last SNAPSHOT announced and not yet seen */
    uint64_t anomalies;
    /* Where an anomaly is logged, with the record's position. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    bool replaying; /* positions are file offsets (else sequence numbers) */
} books_t;

static void books_anomaly(books_t *b, uint64_t pos, const char *fmt, ...) HB_PRINTF(3, 4);
static void books_anomaly(books_t *b, uint64_t pos, const char *fmt, ...)
{
    b->anomalies++;
    if (b->log == NULL || b->anomalies > ANOMALY_LOG_MAX + 1)
        return;
    char line[MSG_MAX];
    if (b->anomalies == ANOMALY_LOG_MAX + 1) {
        snprintf(line, sizeof line, "ledger: more records that make no sense: counted, not logged");
    } else {
        char what[MSG_MAX - 64];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(line, sizeof line, "ledger: %s %" PRIu64 ": %s; skipped",
                 b->replaying ? "journal offset" : "record seq", pos, what);
    }
    b->log(b->log_ctx, line);
}

static void books_see_id(books_t *b, uint32_t id)
{
    if (id > b->max_id)
        b->max_id = id;
}

/* Apply one record. Returns 0 or UV_ENOMEM. */
static int books_apply(books_t *b, const hb_ledger_record_t *r, uint64_t pos)
{
    struct slot *s;
    const char *why;
    int i;
    if (r->type != HB_LEDGER_STATE)
        b->states_left = 0;
    switch (r->type) {
    case HB_LEDGER_ENVELOPE:
        b->totals.envelopes++;
        b->totals.issued += r->envelope.total;
        books_see_id(b, r->envelope.id);
        if ((why = envelope_problem(&r->envelope)) != NULL) {
            books_anomaly(b, pos, "envelope %" PRIu32 ": %s", r->envelope.id, why);
        } else if (map_find(&b->map, r->envelope.id) != NULL) {
            books_anomaly(b, pos, "envelope %" PRIu32 " created twice", r->envelope.id);
        } else if (map_insert(&b->map, &r->envelope) == NULL) {
            return UV_ENOMEM;
        }
        break;
    case HB_LEDGER_CLAIM:
        b->totals.claims++;
        b->totals.claimed += r->amount;
        s = map_find(&b->map, r->envelope_id);
        if (s == NULL) {
            books_anomaly(b, pos,
                          "claim by user %" PRIu32 " of envelope %" PRIu32
                          ", which is not outstanding",
                          r->user, r->envelope_id);
            break;
        }
        i = recipient_index(&s->e, r->user);
        if (i < 0) {
            books_anomaly(b, pos,
                          "claim of envelope %" PRIu32 " by user %" PRIu32 ", not a recipient",
                          r->envelope_id, r->user);
        } else if (s->e.claimed & (1u << i)) {
            books_anomaly(b, pos, "second claim of envelope %" PRIu32 " by user %" PRIu32,
                          r->envelope_id, r->user);
        } else if (r->amount != s->e.shares[i]) {
            books_anomaly(b, pos,
                          "claim of %" PRIu32 " on envelope %" PRIu32 " by user %" PRIu32
                          ", whose share is %" PRIu32,
                          r->amount, r->envelope_id, r->user, s->e.shares[i]);
        } else {
            s->e.claimed |= (uint8_t)(1u << i);
            s->e.claimed_sum += r->amount;
            if (s->e.claimed == ALL_CLAIMED)
                map_remove(&b->map, s);
        }
        break;
    case HB_LEDGER_EXPIRE:
        s = map_find(&b->map, r->envelope_id);
        if (s == NULL) {
            books_anomaly(b, pos, "expiry of envelope %" PRIu32 ", which is not outstanding",
                          r->envelope_id);
            break;
        }
        b->totals.expired++;
        b->totals.expired_amount += unclaimed(&s->e);
        map_remove(&b->map, s);
        break;
    case HB_LEDGER_STATE:
        books_see_id(b, r->envelope.id);
        if (b->states_left > 0) {
            b->states_left--;
        } else {
            /* A state outside a snapshot: its history is not in any totals yet. */
            b->totals.envelopes++;
            b->totals.issued += r->envelope.total;
            b->totals.claims += claimed_count(r->envelope.claimed);
            b->totals.claimed += r->envelope.claimed_sum;
        }
        if ((why = state_problem(&r->envelope)) != NULL) {
            books_anomaly(b, pos, "state of envelope %" PRIu32 ": %s", r->envelope.id, why);
        } else if (map_find(&b->map, r->envelope.id) != NULL) {
            books_anomaly(b, pos, "state of envelope %" PRIu32 " given twice", r->envelope.id);
        } else if (map_insert(&b->map, &r->envelope) == NULL) {
            return UV_ENOMEM;
        }
        break;
    case HB_LEDGER_SNAPSHOT:
        b->totals = r->totals;
        books_see_id(b, r->max_envelope_id);
        b->states_left = r->outstanding;
        break;
    }
    return 0;
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

    uv_mutex_t mu;
    uv_cond_t wake; /* the writer waits here for work or close */
    uv_cond_t done; /* waiters wait here for progress */
    uv_thread_t thread;
    bool thread_started;
    /* Under mu: */
    queue_buf_t cur; /* appenders fill it */
    bool closing;
    int error; /* sticky I/O error, 0 if none */

    /* The writer's own (also open's, before the writer starts): */
    queue_buf_t spare; /* the batch being written */
    books_t books;
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

static void books_log(void *ctx, const char *line)
{
    struct hb_ledger_state *st = ctx;
    st->log(st->log_arg, line);
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
    map_free(&st->books.map);
    free(st->dir);
    free(st->path);
    free(st->tmp_path);
    free(st);
}

/* Record the writer's first I/O error; every later append fails with it. Called without mu. */
static void set_sticky(struct hb_ledger_state *st, int err, const char *what)
{
    uv_mutex_lock(&st->mu);
    bool first = st->error == 0;
    if (first)
        st->error = err;
    st->cur.len = 0; /* never to be acknowledged */
    uv_cond_broadcast(&st->done);
    uv_mutex_unlock(&st->mu);
    if (first)
        st_log(st, "ledger: %s %s failed: %s (%s); every later append fails", what, st->path,
               hb_err_name(err), hb_strerror(err));
}

/* ---- Compaction ---- */

static uint64_t snapshot_size(size_t outstanding)
{
    return HB_LEDGER_HEADER_SIZE + HB_LEDGER_FRAME_SIZE + PAYLOAD_SNAPSHOT +
           (uint64_t)outstanding * (HB_LEDGER_FRAME_SIZE + PAYLOAD_STATE);
}

/* Build the snapshot image of st's books: header, SNAPSHOT, one STATE per outstanding envelope. */
static uint8_t *snapshot_image(const books_t *b, size_t *len)
{
    uint64_t size = snapshot_size(b->map.count);
    if (size > SIZE_MAX || b->map.count > UINT32_MAX)
        return NULL;
    uint8_t *img = malloc((size_t)size);
    if (img == NULL)
        return NULL;
    header_bytes(img);
    size_t off = HB_LEDGER_HEADER_SIZE;
    hb_ledger_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_LEDGER_SNAPSHOT;
    r.max_envelope_id = b->max_id;
    r.outstanding = (uint32_t)b->map.count;
    r.totals = b->totals;
    off += (size_t)hb_ledger_encode(&r, img + off, (size_t)size - off);
    size_t capacity = b->map.slots == NULL ? 0 : b->map.mask + 1;
    for (size_t i = 0; i < capacity; i++) {
        if (!b->map.slots[i].used)
            continue;
        memset(&r, 0, sizeof r);
        r.type = HB_LEDGER_STATE;
        r.envelope = b->map.slots[i].e;
        r.envelope_id = r.envelope.id;
        off += (size_t)hb_ledger_encode(&r, img + off, (size_t)size - off);
    }
    *len = off;
    return img;
}

/* Compact when the journal is over both thresholds. A failure before the rename leaves the old
 * journal in use (logged; retried once the journal has grown by compact_min more); a failure
 * after it is returned (it becomes the sticky error). */
static int maybe_compact(struct hb_ledger_state *st)
{
    uint64_t snap = snapshot_size(st->books.map.count);
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
    st->records = 1 + st->books.map.count;
    st->compact_floor = 0;
    rc = sync_dir(st->dir);
    uv_mutex_lock(&st->mu);
    st->l->stats.compactions++;
    st->l->stats.bytes = st->bytes;
    st->l->stats.records = st->records;
    uv_mutex_unlock(&st->mu);
    if (rc == 0)
        st_log(st, "ledger: compacted %s: %" PRIu64 " -> %zu bytes, %zu envelopes outstanding",
               st->path, old, len, st->books.map.count);
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
        if (frame_at(batch->p, batch->len, off, &r, &plen) != FRAME_OK)
            return UV_EIO; /* cannot happen: the appenders encoded these */
        int rc = books_apply(&st->books, &r, seq++);
        if (rc != 0)
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
        l->stats.outstanding = st->books.map.count;
        l->stats.anomalies = st->books.anomalies;
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
    st->records++;
    return books_apply(&st->books, r, offset);
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

/* Replay st->path into st->books, truncating a torn tail and writing the header of a new (or
 * header-torn) journal. */
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
    st->books.replaying = true;
    rc = hb_ledger_scan(buf, len, replay_record, st, &good_end);
    st->books.replaying = false;
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
    st->books.log = o->log != NULL ? books_log : NULL;
    st->books.log_ctx = st;
    st->dir = strdup(o->dir);
    st->path = path_join(o->dir, HB_LEDGER_JOURNAL_NAME);
    st->tmp_path = path_join(o->dir, HB_LEDGER_COMPACT_NAME);
    int rc = UV_ENOMEM;
    if (st->dir == NULL || st->path == NULL || st->tmp_path == NULL ||
        queue_reserve(&st->cur, 1) != 0 || queue_reserve(&st->spare, 1) != 0)
        goto fail;
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

    size_t capacity = st->books.map.slots == NULL ? 0 : st->books.map.mask + 1;
    for (size_t i = 0; i < capacity && outstanding != NULL; i++) {
        if (st->books.map.slots[i].used)
            outstanding(arg, &st->books.map.slots[i].e);
    }
    l->max_envelope_id = st->books.max_id;
    l->stats.records = st->records;
    l->stats.replayed = st->records;
    l->stats.bytes = st->bytes;
    l->stats.outstanding = st->books.map.count;
    l->stats.anomalies = st->books.anomalies;

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
    else
        rc = queue_reserve(&st->cur, (size_t)n);
    if (rc == 0) {
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
    if (l == NULL || l->state_ == NULL || e == NULL || envelope_problem(e) != NULL ||
        e->claimed != 0 || e->claimed_sum != 0)
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

typedef struct audit {
    envmap_t map; /* every envelope ever seen, with its SLOT_* status */
    hb_ledger_audit_t *t;
    void (*violation)(void *arg, const char *msg, size_t offset);
    void *arg;
    /* The snapshot being read: */
    size_t snapshot_offset;
    uint64_t states_left;
    uint64_t snapshot_states;
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

/* The snapshot's STATE records are all read (or the journal moved on): check them against it. */
static void audit_end_snapshot(audit_t *a)
{
    if (!a->in_snapshot)
        return;
    a->in_snapshot = false;
    const hb_ledger_totals_t *s = &a->snapshot_totals;
    if (a->states_left > 0)
        violation(a, a->snapshot_offset,
                  "snapshot announces %" PRIu64 " envelope states, %" PRIu64 " follow it",
                  a->snapshot_states + a->states_left, a->snapshot_states);
    a->states_left = 0;
    uint64_t accounted = s->claimed + s->expired_amount + a->snapshot_rest;
    if (s->issued != accounted)
        violation(a, a->snapshot_offset,
                  "snapshot does not balance: issued %" PRIu64 " != claimed %" PRIu64
                  " + expired %" PRIu64 " + outstanding %" PRIu64,
                  s->issued, s->claimed, s->expired_amount, a->snapshot_rest);
}

/* Add envelope e (from the record at offset) to the map; false when out of memory. */
static bool audit_add(audit_t *a, const hb_sendenv_t *e, size_t offset, const char *what)
{
    if (e->id > a->t->max_envelope_id)
        a->t->max_envelope_id = e->id;
    if (map_find(&a->map, e->id) != NULL) {
        violation(a, offset, "%s of envelope %" PRIu32 ": the id was issued before", what, e->id);
        return true;
    }
    return map_insert(&a->map, e) != NULL;
}

static void audit_claim(audit_t *a, const hb_ledger_record_t *r, size_t offset)
{
    a->t->totals.claims++;
    a->t->totals.claimed += r->amount;
    struct slot *s = map_find(&a->map, r->envelope_id);
    if (s == NULL) {
        violation(a, offset,
                  "claim of %" PRIu32 " by user %" PRIu32 " of envelope %" PRIu32
                  ", which was never issued",
                  r->amount, r->user, r->envelope_id);
        return;
    }
    if (s->status == SLOT_EXPIRED)
        violation(a, offset,
                  "claim of %" PRIu32 " by user %" PRIu32 " of envelope %" PRIu32
                  " after it expired",
                  r->amount, r->user, r->envelope_id);
    int i = recipient_index(&s->e, r->user);
    if (i < 0) {
        violation(a, offset,
                  "claim of %" PRIu32 " by user %" PRIu32 ", not a recipient of envelope %" PRIu32,
                  r->amount, r->user, r->envelope_id);
    } else if (s->e.claimed & (1u << i)) {
        violation(a, offset, "second claim of envelope %" PRIu32 " by user %" PRIu32,
                  r->envelope_id, r->user);
    } else {
        if (r->amount != s->e.shares[i])
            violation(a, offset,
                      "claim of %" PRIu32 " on envelope %" PRIu32 " by user %" PRIu32
                      ", whose share is %" PRIu32,
                      r->amount, r->envelope_id, r->user, s->e.shares[i]);
        s->e.claimed |= (uint8_t)(1u << i);
    }
    /* Whatever was granted on this envelope counts against its total. */
    uint64_t sum = (uint64_t)s->e.claimed_sum + r->amount;
    bool was_over = s->e.claimed_sum > s->e.total;
    s->e.claimed_sum = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
    if (sum > s->e.total && !was_over)
        violation(a, offset, "envelope %" PRIu32 " over-claimed: %" PRIu64 " granted of %" PRIu32,
                  r->envelope_id, sum, s->e.total);
    if (s->status == SLOT_OPEN && s->e.claimed == ALL_CLAIMED) {
        s->status = SLOT_FULL;
        if (sum < s->e.total)
            violation(a, offset,
                      "envelope %" PRIu32 " fully claimed for %" PRIu64 " of its total %" PRIu32,
                      r->envelope_id, sum, s->e.total);
    }
}

static int audit_record(void *arg, const hb_ledger_record_t *r, size_t offset)
{
    audit_t *a = arg;
    hb_ledger_audit_t *t = a->t;
    const char *why;
    struct slot *s;
    if (r->type != HB_LEDGER_STATE || a->states_left == 0)
        audit_end_snapshot(a);
    switch (r->type) {
    case HB_LEDGER_ENVELOPE:
        t->totals.envelopes++;
        t->totals.issued += r->envelope.total;
        if ((why = envelope_problem(&r->envelope)) != NULL)
            violation(a, offset, "envelope %" PRIu32 " is malformed: %s", r->envelope.id, why);
        if (!audit_add(a, &r->envelope, offset, "creation"))
            return UV_ENOMEM;
        break;
    case HB_LEDGER_CLAIM:
        audit_claim(a, r, offset);
        break;
    case HB_LEDGER_EXPIRE:
        s = map_find(&a->map, r->envelope_id);
        if (s == NULL) {
            violation(a, offset, "expiry of envelope %" PRIu32 ", which was never issued",
                      r->envelope_id);
        } else if (s->status != SLOT_OPEN) {
            violation(a, offset, "expiry of envelope %" PRIu32 ", which is already %s",
                      r->envelope_id, s->status == SLOT_FULL ? "fully claimed" : "expired");
        } else {
            s->status = SLOT_EXPIRED;
            t->totals.expired++;
            t->totals.expired_amount += unclaimed(&s->e);
        }
        break;
    case HB_LEDGER_STATE:
        if ((why = state_problem(&r->envelope)) != NULL)
            violation(a, offset, "state of envelope %" PRIu32 " is inconsistent: %s",
                      r->envelope.id, why);
        if (a->in_snapshot) {
            a->states_left--;
            a->snapshot_states++;
            a->snapshot_rest += unclaimed(&r->envelope);
        } else {
            violation(a, offset, "state of envelope %" PRIu32 " outside a snapshot",
                      r->envelope.id);
            t->totals.envelopes++;
            t->totals.issued += r->envelope.total;
            t->totals.claims += claimed_count(r->envelope.claimed);
            t->totals.claimed += r->envelope.claimed_sum;
        }
        if (!audit_add(a, &r->envelope, offset, "state"))
            return UV_ENOMEM;
        break;
    case HB_LEDGER_SNAPSHOT:
        if (offset != HB_LEDGER_HEADER_SIZE)
            violation(a, offset, "snapshot not at the start of the journal");
        else
            t->totals = r->totals;
        if (r->max_envelope_id > t->max_envelope_id)
            t->max_envelope_id = r->max_envelope_id;
        a->in_snapshot = true;
        a->snapshot_offset = offset;
        a->states_left = r->outstanding;
        a->snapshot_states = 0;
        a->snapshot_rest = 0;
        a->snapshot_totals = r->totals;
        break;
    }
    t->records++;
    return 0;
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

    size_t good_end = 0;
    int rc = hb_ledger_scan(buf, len, audit_record, &a, &good_end);
    if (rc == HB_ECORRUPT && good_end < HB_LEDGER_HEADER_SIZE) {
        map_free(&a.map);
        return rc; /* not a journal: last_error says why */
    }
    if (rc == UV_ENOTSUP || rc == UV_ENOMEM || rc == UV_EINVAL) {
        map_free(&a.map);
        if (rc != UV_ENOTSUP)
            set_error("audit: %s", hb_strerror(rc));
        return rc;
    }
    audit_end_snapshot(&a);
    if (rc == HB_ECORRUPT) {
        /* The scanner's reason starts "offset N: ", which the violation carries already. */
        const char *why = strstr(last_error, ": ");
        violation(&a, good_end, "%s; the records after it are not checked",
                  why != NULL ? why + 2 : last_error);
    } else if (rc == HB_LEDGER_TORN) {
        totals->torn = 1;
        totals->torn_offset = good_end;
    }

    size_t capacity = a.map.slots == NULL ? 0 : a.map.mask + 1;
    for (size_t i = 0; i < capacity; i++) {
        const struct slot *s = &a.map.slots[i];
        if (s->used && s->status == SLOT_OPEN) {
            totals->outstanding++;
            totals->outstanding_amount += unclaimed(&s->e);
        }
    }
    map_free(&a.map);
    const hb_ledger_totals_t *x = &totals->totals;
    if (x->issued != x->claimed + x->expired_amount + totals->outstanding_amount)
        violation(&a, good_end,
                  "the books do not balance: issued %" PRIu64 " != claimed %" PRIu64
                  " + expired %" PRIu64 " + outstanding %" PRIu64,
                  x->issued, x->claimed, x->expired_amount, totals->outstanding_amount);
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
