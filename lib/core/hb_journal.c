/* The claim journal's record format: CRC32C, the header, the encoder and decoder of framed records,
 * and the scanner that reads a whole journal image, telling a torn tail from corruption. Pure: no
 * I/O, no allocation. */
#include "hb_internal.h"
#include "hb_journal_int.h"
#include "hongbao/journal.h"
#include "hongbao/proto.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

uint32_t hb_journal_crc32c(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++)
        crc = crc32c_table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

/* ---- Encoding and decoding ---- */

/* The payload length of a record type in a journal of this version, 0 for a type unknown there. */
static uint32_t payload_size(unsigned type, uint32_t version)
{
    switch (type) {
    case HB_JOURNAL_ENVELOPE:
        return HB__PAYLOAD_ENVELOPE;
    case HB_JOURNAL_CLAIM:
        return HB__PAYLOAD_CLAIM;
    case HB_JOURNAL_EXPIRE:
        return HB__PAYLOAD_EXPIRE;
    case HB_JOURNAL_STATE:
        return HB__PAYLOAD_STATE;
    case HB_JOURNAL_SNAPSHOT:
        return HB__PAYLOAD_SNAPSHOT;
    case HB_JOURNAL_RESERVE:
        return version >= 2 ? HB__PAYLOAD_RESERVE : 0;
    default:
        return 0;
    }
}

/* Whether len is a variable-size envelope payload (types 7, 8) of some recipient count. */
static bool possible_n_length(uint32_t len)
{
    return (len >= HB__PAYLOAD_ENVELOPE_N(1) &&
            len <= HB__PAYLOAD_ENVELOPE_N(HB_SEND_MAX_RECIPIENTS) &&
            (len - HB__PAYLOAD_ENVELOPE_N(0)) % 8 == 0) ||
           (len >= HB__PAYLOAD_STATE_N(1) && len <= HB__PAYLOAD_STATE_N(HB_SEND_MAX_RECIPIENTS) &&
            (len - HB__PAYLOAD_STATE_N(0)) % 8 == 0);
}

/* Whether some record type of this version has a payload of this length. */
static bool possible_length(uint32_t len, uint32_t version)
{
    return len == HB__PAYLOAD_ENVELOPE || len == HB__PAYLOAD_CLAIM || len == HB__PAYLOAD_EXPIRE ||
           len == HB__PAYLOAD_STATE || len == HB__PAYLOAD_SNAPSHOT ||
           (len == HB__PAYLOAD_RESERVE && version >= 2) || (version >= 3 && possible_n_length(len));
}

uint32_t hb__state_payload(const hb_sendenv_t *e)
{
    return e->count == HB_NOTICE_RECIPIENTS ? HB__PAYLOAD_STATE : HB__PAYLOAD_STATE_N(e->count);
}

int hb_journal_encode_header(uint8_t *buf, size_t len)
{
    if (buf == NULL)
        return HB_EINVAL;
    if (len < HB_JOURNAL_HEADER_SIZE)
        return HB_ENOBUFS;
    memcpy(buf, HB_JOURNAL_MAGIC, 8);
    hb_put_u32(buf + 8, HB_JOURNAL_VERSION);
    return HB_JOURNAL_HEADER_SIZE;
}

/* The envelope fields shared by ENVELOPE and STATE, at p (40 bytes). */
static void put_envelope(uint8_t *p, const hb_sendenv_t *e)
{
    hb_put_u32(p, e->id);
    hb_put_u32(p + 4, e->total);
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        hb_put_u32(p + 8 + 4 * i, e->recipients[i]);
        hb_put_u32(p + 20 + 4 * i, e->shares[i]);
    }
    hb_put_u64(p + 32, e->created_s);
}

static void get_envelope(const uint8_t *p, hb_sendenv_t *e)
{
    memset(e, 0, sizeof *e);
    e->id = hb_get_u32(p);
    e->total = hb_get_u32(p + 4);
    e->count = HB_NOTICE_RECIPIENTS;
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        e->recipients[i] = hb_get_u32(p + 8 + 4 * i);
        e->shares[i] = hb_get_u32(p + 20 + 4 * i);
    }
    e->created_s = hb_get_u64(p + 32);
}

/* The variable layout (types 7, 8): id, total, created_s, n, n pairs; 17 + 8n bytes at p. */
static void put_envelope_n(uint8_t *p, const hb_sendenv_t *e)
{
    hb_put_u32(p, e->id);
    hb_put_u32(p + 4, e->total);
    hb_put_u64(p + 8, e->created_s);
    p[16] = e->count;
    for (unsigned i = 0; i < e->count; i++) {
        hb_put_u32(p + 17 + 8 * i, e->recipients[i]);
        hb_put_u32(p + 21 + 8 * i, e->shares[i]);
    }
}

/* Decode the variable layout of avail bytes; false when n is out of range or does not fit. */
static bool get_envelope_n(const uint8_t *p, uint32_t avail, hb_sendenv_t *e)
{
    memset(e, 0, sizeof *e);
    if (avail < 17 || p[16] < 1 || p[16] > HB_SEND_MAX_RECIPIENTS || avail < 17 + 8u * p[16])
        return false;
    e->id = hb_get_u32(p);
    e->total = hb_get_u32(p + 4);
    e->created_s = hb_get_u64(p + 8);
    e->count = p[16];
    for (unsigned i = 0; i < e->count; i++) {
        e->recipients[i] = hb_get_u32(p + 17 + 8 * i);
        e->shares[i] = hb_get_u32(p + 21 + 8 * i);
    }
    return true;
}

int hb_journal_encode(const hb_journal_record_t *r, uint8_t *buf, size_t len)
{
    if (r == NULL || buf == NULL)
        return HB_EINVAL;
    uint32_t plen = payload_size((unsigned)r->type, HB_JOURNAL_VERSION);
    if (plen == 0)
        return HB_EINVAL;
    int variable = (r->type == HB_JOURNAL_ENVELOPE || r->type == HB_JOURNAL_STATE) &&
                   r->envelope.count != HB_NOTICE_RECIPIENTS;
    if (variable) {
        unsigned n = r->envelope.count;
        if (n < 1 || n > HB_SEND_MAX_RECIPIENTS)
            return HB_EINVAL;
        plen = r->type == HB_JOURNAL_ENVELOPE ? HB__PAYLOAD_ENVELOPE_N(n) : HB__PAYLOAD_STATE_N(n);
        if (len < HB_JOURNAL_FRAME_SIZE + plen)
            return HB_ENOBUFS;
        uint8_t *p = buf + HB_JOURNAL_FRAME_SIZE;
        p[0] = (uint8_t)(r->type == HB_JOURNAL_ENVELOPE ? HB__TYPE_ENVELOPE_N : HB__TYPE_STATE_N);
        put_envelope_n(p + 1, &r->envelope);
        if (r->type == HB_JOURNAL_STATE) {
            p[18 + 8 * n] = r->envelope.claimed;
            hb_put_u32(p + 19 + 8 * n, r->envelope.claimed_sum);
        }
        hb_put_u32(buf, plen);
        hb_put_u32(buf + 4, hb_journal_crc32c(p, plen));
        return (int)(HB_JOURNAL_FRAME_SIZE + plen);
    }
    if (len < HB_JOURNAL_FRAME_SIZE + plen)
        return HB_ENOBUFS;
    uint8_t *p = buf + HB_JOURNAL_FRAME_SIZE;
    p[0] = (uint8_t)r->type;
    switch (r->type) {
    case HB_JOURNAL_ENVELOPE:
        put_envelope(p + 1, &r->envelope);
        break;
    case HB_JOURNAL_CLAIM:
        hb_put_u32(p + 1, r->envelope_id);
        hb_put_u32(p + 5, r->user);
        hb_put_u32(p + 9, r->amount);
        break;
    case HB_JOURNAL_EXPIRE:
        hb_put_u32(p + 1, r->envelope_id);
        break;
    case HB_JOURNAL_STATE:
        put_envelope(p + 1, &r->envelope);
        p[41] = r->envelope.claimed;
        hb_put_u32(p + 42, r->envelope.claimed_sum);
        break;
    case HB_JOURNAL_SNAPSHOT:
        hb_put_u32(p + 1, r->max_envelope_id);
        hb_put_u32(p + 5, r->outstanding);
        hb_put_u64(p + 9, r->totals.envelopes);
        hb_put_u64(p + 17, r->totals.claims);
        hb_put_u64(p + 25, r->totals.expired);
        hb_put_u64(p + 33, r->totals.issued);
        hb_put_u64(p + 41, r->totals.claimed);
        hb_put_u64(p + 49, r->totals.expired_amount);
        break;
    case HB_JOURNAL_RESERVE:
        p[1] = r->kind;
        hb_put_u32(p + 2, r->last);
        break;
    }
    hb_put_u32(buf, plen);
    hb_put_u32(buf + 4, hb_journal_crc32c(p, plen));
    return (int)(HB_JOURNAL_FRAME_SIZE + plen);
}

/* Decode a payload whose CRC matched. False when its type is unknown in this version or its
 * length is not the type's. */
static bool decode_payload(const uint8_t *p, uint32_t plen, uint32_t version,
                           hb_journal_record_t *r)
{
    memset(r, 0, sizeof *r);
    unsigned type = p[0];
    if (version >= 3 && (type == HB__TYPE_ENVELOPE_N || type == HB__TYPE_STATE_N)) {
        if (!get_envelope_n(p + 1, plen - 1, &r->envelope))
            return false;
        unsigned n = r->envelope.count;
        if (type == HB__TYPE_ENVELOPE_N) {
            if (plen != HB__PAYLOAD_ENVELOPE_N(n))
                return false;
            r->type = HB_JOURNAL_ENVELOPE;
        } else {
            if (plen != HB__PAYLOAD_STATE_N(n))
                return false;
            r->type = HB_JOURNAL_STATE;
            r->envelope.claimed = p[18 + 8 * n];
            r->envelope.claimed_sum = hb_get_u32(p + 19 + 8 * n);
        }
        r->envelope_id = r->envelope.id;
        r->size = HB_JOURNAL_FRAME_SIZE + plen;
        return true;
    }
    if (payload_size(type, version) == 0 || payload_size(type, version) != plen)
        return false;
    r->type = (hb_journal_type_t)type;
    switch (r->type) {
    case HB_JOURNAL_ENVELOPE:
        get_envelope(p + 1, &r->envelope);
        r->envelope_id = r->envelope.id;
        break;
    case HB_JOURNAL_CLAIM:
        r->envelope_id = hb_get_u32(p + 1);
        r->user = hb_get_u32(p + 5);
        r->amount = hb_get_u32(p + 9);
        break;
    case HB_JOURNAL_EXPIRE:
        r->envelope_id = hb_get_u32(p + 1);
        break;
    case HB_JOURNAL_STATE:
        get_envelope(p + 1, &r->envelope);
        r->envelope.claimed = p[41];
        r->envelope.claimed_sum = hb_get_u32(p + 42);
        r->envelope_id = r->envelope.id;
        break;
    case HB_JOURNAL_SNAPSHOT:
        r->max_envelope_id = hb_get_u32(p + 1);
        r->outstanding = hb_get_u32(p + 5);
        r->totals.envelopes = hb_get_u64(p + 9);
        r->totals.claims = hb_get_u64(p + 17);
        r->totals.expired = hb_get_u64(p + 25);
        r->totals.issued = hb_get_u64(p + 33);
        r->totals.claimed = hb_get_u64(p + 41);
        r->totals.expired_amount = hb_get_u64(p + 49);
        break;
    case HB_JOURNAL_RESERVE:
        r->kind = p[1];
        r->last = hb_get_u32(p + 2);
        break;
    }
    r->size = HB_JOURNAL_FRAME_SIZE + plen;
    return true;
}

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
                                  hb_journal_record_t *r, uint32_t *plen)
{
    size_t rem = len - off;
    *plen = 0;
    if (rem < HB_JOURNAL_FRAME_SIZE)
        return FRAME_SHORT;
    *plen = hb_get_u32(buf + off);
    if (!possible_length(*plen, version))
        return FRAME_BAD_LEN;
    if (*plen > rem - HB_JOURNAL_FRAME_SIZE)
        return FRAME_PAST_END;
    const uint8_t *payload = buf + off + HB_JOURNAL_FRAME_SIZE;
    if (hb_journal_crc32c(payload, *plen) != hb_get_u32(buf + off + 4))
        return FRAME_BAD_CRC;
    if (!decode_payload(payload, *plen, version, r))
        return FRAME_BAD_TYPE;
    return FRAME_OK;
}

int hb_journal_decode(const uint8_t *buf, size_t len, uint32_t version, hb_journal_record_t *r)
{
    if (buf == NULL || r == NULL || version < HB_JOURNAL_VERSION_MIN ||
        version > HB_JOURNAL_VERSION)
        return HB_EINVAL;
    if (len == 0)
        return 0;
    uint32_t plen;
    switch (frame_at(buf, len, 0, version, r, &plen)) {
    case FRAME_OK:
        return (int)r->size;
    case FRAME_SHORT:
    case FRAME_PAST_END:
        return 0;
    default:
        return HB_ECORRUPT;
    }
}

/* ---- Scanning ---- */

/* The offset of the first valid record starting at or after from, or len if none. */
static size_t next_valid_record(const uint8_t *buf, size_t len, size_t from, uint32_t version)
{
    hb_journal_record_t r;
    uint32_t plen;
    for (size_t p = from; p < len && len - p >= HB_JOURNAL_FRAME_SIZE; p++) {
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

static void set_reason(hb_journal_scan_t *out, const char *fmt, ...) HB_PRINTF(2, 3);
static void set_reason(hb_journal_scan_t *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->errstr, sizeof out->errstr, fmt, ap);
    va_end(ap);
}

/* The header at the start of buf: 0 when valid (out->version set), HB_JOURNAL_TORN for a prefix of
 * one, else HB_ECORRUPT or HB_ENOTSUP (the reason set for all but 0). */
static int check_header(const uint8_t *buf, size_t len, hb_journal_scan_t *out)
{
    uint8_t h[HB_JOURNAL_HEADER_SIZE];
    hb_journal_encode_header(h, sizeof h);
    if (len < HB_JOURNAL_HEADER_SIZE) {
        /* Any prefix of 11 bytes or fewer is one of a version 1 header too. */
        if (memcmp(buf, h, len) == 0) {
            set_reason(out, "offset 0: file header cut short (%zu of %u bytes)", len,
                       HB_JOURNAL_HEADER_SIZE);
            return HB_JOURNAL_TORN;
        }
        set_reason(out, "offset 0: not a ledger journal (no \"%s\" header)", HB_JOURNAL_MAGIC);
        return HB_ECORRUPT;
    }
    if (memcmp(buf, h, 8) != 0) {
        set_reason(out, "offset 0: not a ledger journal (no \"%s\" header)", HB_JOURNAL_MAGIC);
        return HB_ECORRUPT;
    }
    uint32_t version = hb_get_u32(buf + 8);
    if (version < HB_JOURNAL_VERSION_MIN || version > HB_JOURNAL_VERSION) {
        set_reason(out, "offset 8: journal format version %" PRIu32 ", this library reads %u to %u",
                   version, HB_JOURNAL_VERSION_MIN, HB_JOURNAL_VERSION);
        return HB_ENOTSUP;
    }
    out->version = version;
    return 0;
}

/* The records after the header, from out->good_end on; returns as hb_journal_scan. */
static int scan_records(const uint8_t *buf, size_t len,
                        int (*record_cb)(void *arg, const hb_journal_record_t *r, size_t offset),
                        void *arg, hb_journal_scan_t *out)
{
    size_t off = out->good_end;
    uint32_t version = out->version;
    int rc;
    while (off < len) {
        hb_journal_record_t r;
        uint32_t plen;
        size_t after, valid;
        switch (frame_at(buf, len, off, version, &r, &plen)) {
        case FRAME_OK:
            off += r.size;
            out->good_end = off;
            if (record_cb != NULL && (rc = record_cb(arg, &r, off - r.size)) != 0)
                return rc;
            break;
        case FRAME_SHORT:
            set_reason(out, "offset %zu: torn record: its frame is cut short (%zu of %u bytes)",
                       off, len - off, HB_JOURNAL_FRAME_SIZE);
            return HB_JOURNAL_TORN;
        case FRAME_PAST_END:
            set_reason(out,
                       "offset %zu: torn record: %" PRIu32 " payload bytes run past the end of "
                       "the journal (%zu bytes left)",
                       off, plen, len - off - HB_JOURNAL_FRAME_SIZE);
            return HB_JOURNAL_TORN;
        case FRAME_BAD_CRC:
            after = off + HB_JOURNAL_FRAME_SIZE + plen;
            if (all_zero(buf + after, len - after)) {
                set_reason(out, "offset %zu: torn record: CRC mismatch in the last record", off);
                return HB_JOURNAL_TORN;
            }
            set_reason(out,
                       "offset %zu: corrupt record: CRC mismatch (stored 0x%08" PRIx32
                       ", computed 0x%08" PRIx32 ") with %zu more bytes after it",
                       off, hb_get_u32(buf + off + 4),
                       hb_journal_crc32c(buf + off + HB_JOURNAL_FRAME_SIZE, plen), len - after);
            return HB_ECORRUPT;
        case FRAME_BAD_LEN:
            valid = next_valid_record(buf, len, off + 1, version);
            if (valid == len) {
                set_reason(out,
                           "offset %zu: torn record: impossible length %" PRIu32
                           " and nothing valid after it",
                           off, plen);
                return HB_JOURNAL_TORN;
            }
            set_reason(out,
                       "offset %zu: corrupt record: impossible length %" PRIu32
                       " with a valid record at offset %zu after it",
                       off, plen, valid);
            return HB_ECORRUPT;
        case FRAME_BAD_TYPE:
            set_reason(out,
                       "offset %zu: corrupt record: CRC matches but type %u does not fit length "
                       "%" PRIu32,
                       off, (unsigned)buf[off + HB_JOURNAL_FRAME_SIZE], plen);
            return HB_ECORRUPT;
        }
    }
    return 0;
}

int hb_journal_scan(const uint8_t *buf, size_t len,
                    int (*record_cb)(void *arg, const hb_journal_record_t *r, size_t offset),
                    void *arg, hb_journal_scan_t *out)
{
    hb_journal_scan_t dummy;
    if (out == NULL)
        out = &dummy;
    out->good_end = 0;
    out->version = 0;
    out->err = 0;
    out->errstr[0] = '\0';
    int rc = 0;
    if (len > 0 && buf == NULL)
        rc = HB_EINVAL;
    else if (len > 0 && (rc = check_header(buf, len, out)) == 0) {
        out->good_end = HB_JOURNAL_HEADER_SIZE;
        rc = scan_records(buf, len, record_cb, arg, out);
    }
    out->err = rc;
    return rc;
}

bool hb__journal_torn_snapshot(const uint8_t *buf, size_t len, size_t off)
{
    return off >= HB_JOURNAL_HEADER_SIZE && len - off >= 4 &&
           hb_get_u32(buf + off) == HB__PAYLOAD_SNAPSHOT;
}
