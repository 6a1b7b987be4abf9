/* Unit tests for the proto module: byte vectors of every command, parser contract and errors,
 * no over-read (guard page), stream reassembly in any piece sizes, garbage input. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hongbao/proto.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A tiny deterministic generator (xorshift64), so runs are reproducible. */
static uint64_t xs_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* A value in [lo, hi]. */
static size_t xs_range(uint64_t *s, size_t lo, size_t hi)
{
    return lo + (size_t)(xs_next(s) % (hi - lo + 1));
}

/* Two pages, the second PROT_NONE: an input placed to end at the boundary faults on over-read. */
typedef struct guard {
    uint8_t *base;
    size_t page;
} guard_t;

static void guard_init(guard_t *g)
{
    long page = sysconf(_SC_PAGESIZE);
    ck_assert_int_gt(page, 0);
    g->page = (size_t)page;
    void *p = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    g->base = p;
    ck_assert_int_eq(mprotect(g->base + g->page, g->page, PROT_NONE), 0);
}

static void guard_free(guard_t *g)
{
    ck_assert_int_eq(munmap(g->base, 2 * g->page), 0);
}

/* Copy src[0..len) so that it ends exactly at the guard page; returns the copy. */
static const uint8_t *guard_place(guard_t *g, const uint8_t *src, size_t len)
{
    ck_assert_uint_le(len, g->page);
    uint8_t *dst = g->base + g->page - len;
    if (len > 0)
        memcpy(dst, src, len);
    return dst;
}

/* ---- the vectors ------------------------------------------------------------------------ */

#define TS       0x0102030405060708ull
#define TS_BYTES 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08

static const uint8_t v_login[] = {0x00, 0x10, 0x00, 0x00, TS_BYTES, 0x00, 0x00, 0x00, 0x07};
static const uint8_t v_login_reply[] = {0x00, 0x14, 0x00, 0x01, TS_BYTES, 0x00, 0x00,
                                        0x00, 0x07, 0x00, 0x00, 0x00,     0x00};
static const uint8_t v_shake[] = {0x00, 0x10, 0x00, 0x02, 0xff, 0xee, 0xdd, 0xcc,
                                  0xbb, 0xaa, 0x99, 0x88, 0x0a, 0x0b, 0x0c, 0x0d};
static const uint8_t v_shake_reply[] = {0x00, 0x1c, 0x00, 0x03, TS_BYTES, 0x00, 0x00,
                                        0x00, 0x00, 0x00, 0x00, 0x00,     0x0e, 0x00,
                                        0x10, 0x00, 0x01, 0x00, 0x00,     0x00, 0x7b};
static const uint8_t v_notice[] = {0x00, 0x24, 0x00, 0x04, TS_BYTES, 0x00, 0x20, 0x00, 0x02, 0x00,
                                   0x00, 0x03, 0xe8, 0x00, 0x00,     0x00, 0x03, 0x00, 0x00, 0x00,
                                   0x0b, 0x00, 0x00, 0x00, 0x0c,     0x00, 0x00, 0x00, 0x0d};
static const uint8_t v_claim[] = {0x00, 0x14, 0x00, 0x05, TS_BYTES, 0x00, 0x00,
                                  0x00, 0x00, 0x00, 0x20, 0x00,     0x02};
static const uint8_t v_claim_reply[] = {0x00, 0x14, 0x00, 0x06, TS_BYTES, 0x00, 0x20,
                                        0x00, 0x02, 0x00, 0x00, 0x01,     0x55};
static const uint8_t v_chat[] = {0x00, 0x12, 0x01, 0x00, TS_BYTES, 0x00,
                                 0x00, 0x00, 0x09, 'h',  'i'};
static const uint8_t v_chat_deliver[] = {0x00, 0x15, 0x01, 0x01, TS_BYTES, 0x01, 0x02,
                                         0x03, 0x04, 'h',  'e',  'l',      'l',  'o'};
static const uint8_t v_chat_reply[] = {0x00, 0x14, 0x01, 0x02, TS_BYTES, 0x00, 0x00,
                                       0x00, 0x09, 0x00, 0x00, 0x00,     0x01};
static const uint8_t v_claim_ex[] = {0x00, 0x14, 0x01, 0x03, TS_BYTES, 0x00, 0x00,
                                     0x00, 0x00, 0x00, 0x20, 0x00,     0x02};
static const uint8_t v_claim_ex_reply[] = {0x00, 0x18, 0x01, 0x04, TS_BYTES, 0x00, 0x20, 0x00, 0x02,
                                           0x00, 0x00, 0x01, 0x55, 0x00,     0x00, 0x00, 0x01};
/* A notice of a 2-recipient envelope: 8 + 2 * 4 payload bytes. */
static const uint8_t v_notice_ex[] = {0x00, 0x1c, 0x01, 0x05, TS_BYTES, 0x00, 0x20,
                                      0x00, 0x02, 0x00, 0x00, 0x01,     0xf4, 0x00,
                                      0x00, 0x00, 0x0b, 0x00, 0x00,     0x00, 0x0c};

typedef struct vector {
    const char *name;
    hb_msg_t msg;
    const uint8_t *bytes;
    size_t len;
} vector_t;

#define VEC(name_, bytes_, ...)                                                                    \
    {                                                                                              \
        name_, __VA_ARGS__, bytes_, sizeof bytes_                                                  \
    }

static const vector_t vectors[] = {
    VEC("login", v_login, {.cmd = HB_CMD_LOGIN, .timestamp = TS, .u.login = {7}}),
    VEC("login-reply", v_login_reply,
        {.cmd = HB_CMD_LOGIN_REPLY, .timestamp = TS, .u.login_reply = {7, 0}}),
    VEC("shake", v_shake,
        {.cmd = HB_CMD_SHAKE, .timestamp = 0xffeeddccbbaa9988ull, .u.shake = {0x0a0b0c0d}}),
    VEC("shake-reply", v_shake_reply,
        {.cmd = HB_CMD_SHAKE_REPLY,
         .timestamp = TS,
         .u.shake_reply = {0, HB_SHAKE_GOT, HB_SHAKE_ENVELOPE_ID_BASE + 1, 123}}),
    VEC("notice", v_notice,
        {.cmd = HB_CMD_NOTICE,
         .timestamp = TS,
         .u.notice = {HB_SEND_ENVELOPE_ID_BASE + 2, 1000, 3, {11, 12, 13}}}),
    VEC("claim", v_claim,
        {.cmd = HB_CMD_CLAIM, .timestamp = TS, .u.claim = {0, HB_SEND_ENVELOPE_ID_BASE + 2}}),
    VEC("claim-reply", v_claim_reply,
        {.cmd = HB_CMD_CLAIM_REPLY,
         .timestamp = TS,
         .u.claim_reply = {HB_SEND_ENVELOPE_ID_BASE + 2, 341}}),
    VEC("chat", v_chat,
        {.cmd = HB_CMD_CHAT, .timestamp = TS, .u.chat = {9, 2, (const uint8_t *)"hi"}}),
    VEC("chat-deliver", v_chat_deliver,
        {.cmd = HB_CMD_CHAT_DELIVER,
         .timestamp = TS,
         .u.chat = {0x01020304, 5, (const uint8_t *)"hello"}}),
    VEC("chat-reply", v_chat_reply,
        {.cmd = HB_CMD_CHAT_REPLY, .timestamp = TS, .u.chat_reply = {9, HB_CHAT_OFFLINE}}),
    VEC("claim-ex", v_claim_ex,
        {.cmd = HB_CMD_CLAIM_EX, .timestamp = TS, .u.claim = {0, HB_SEND_ENVELOPE_ID_BASE + 2}}),
    VEC("claim-ex-reply", v_claim_ex_reply,
        {.cmd = HB_CMD_CLAIM_EX_REPLY,
         .timestamp = TS,
         .u.claim_ex_reply = {HB_SEND_ENVELOPE_ID_BASE + 2, 341, HB_CLAIM_REPEAT}}),
    VEC("notice-ex", v_notice_ex,
        {.cmd = HB_CMD_NOTICE_EX,
         .timestamp = TS,
         .u.notice_ex = {HB_SEND_ENVELOPE_ID_BASE + 2, 500, 2, {11, 12}}}),
};
#define NVECTORS (sizeof vectors / sizeof vectors[0])

/* Compare two messages field by field (chat text by content). */
static void assert_msg_eq(const hb_msg_t *a, const hb_msg_t *b)
{
    ck_assert_uint_eq(a->cmd, b->cmd);
    ck_assert_uint_eq(a->timestamp, b->timestamp);
    switch (a->cmd) {
    case HB_CMD_LOGIN:
        ck_assert_uint_eq(a->u.login.user_id, b->u.login.user_id);
        break;
    case HB_CMD_LOGIN_REPLY:
        ck_assert_uint_eq(a->u.login_reply.user_id, b->u.login_reply.user_id);
        ck_assert_uint_eq(a->u.login_reply.result, b->u.login_reply.result);
        break;
    case HB_CMD_SHAKE:
        ck_assert_uint_eq(a->u.shake.user_id, b->u.shake.user_id);
        break;
    case HB_CMD_SHAKE_REPLY:
        ck_assert_uint_eq(a->u.shake_reply.user_id, b->u.shake_reply.user_id);
        ck_assert_uint_eq(a->u.shake_reply.result, b->u.shake_reply.result);
        ck_assert_uint_eq(a->u.shake_reply.envelope_id, b->u.shake_reply.envelope_id);
        ck_assert_uint_eq(a->u.shake_reply.amount, b->u.shake_reply.amount);
        break;
    case HB_CMD_NOTICE:
        ck_assert_uint_eq(a->u.notice.envelope_id, b->u.notice.envelope_id);
        ck_assert_uint_eq(a->u.notice.total_amount, b->u.notice.total_amount);
        ck_assert_uint_eq(a->u.notice.recipient_count, b->u.notice.recipient_count);
        for (size_t i = 0; i < HB_NOTICE_RECIPIENTS; i++)
            ck_assert_uint_eq(a->u.notice.user_ids[i], b->u.notice.user_ids[i]);
        break;
    case HB_CMD_CLAIM:
    case HB_CMD_CLAIM_EX:
        ck_assert_uint_eq(a->u.claim.user_id, b->u.claim.user_id);
        ck_assert_uint_eq(a->u.claim.envelope_id, b->u.claim.envelope_id);
        break;
    case HB_CMD_CLAIM_EX_REPLY:
        ck_assert_uint_eq(a->u.claim_ex_reply.envelope_id, b->u.claim_ex_reply.envelope_id);
        ck_assert_uint_eq(a->u.claim_ex_reply.amount, b->u.claim_ex_reply.amount);
        ck_assert_uint_eq(a->u.claim_ex_reply.result, b->u.claim_ex_reply.result);
        break;
    case HB_CMD_CLAIM_REPLY:
        ck_assert_uint_eq(a->u.claim_reply.envelope_id, b->u.claim_reply.envelope_id);
        ck_assert_uint_eq(a->u.claim_reply.amount, b->u.claim_reply.amount);
        break;
    case HB_CMD_CHAT:
    case HB_CMD_CHAT_DELIVER:
        ck_assert_uint_eq(a->u.chat.user_id, b->u.chat.user_id);
        ck_assert_uint_eq(a->u.chat.text_len, b->u.chat.text_len);
        ck_assert_mem_eq(a->u.chat.text, b->u.chat.text, a->u.chat.text_len);
        break;
    case HB_CMD_CHAT_REPLY:
        ck_assert_uint_eq(a->u.chat_reply.user_id, b->u.chat_reply.user_id);
        ck_assert_uint_eq(a->u.chat_reply.result, b->u.chat_reply.result);
        break;
    case HB_CMD_NOTICE_EX:
        ck_assert_uint_eq(a->u.notice_ex.envelope_id, b->u.notice_ex.envelope_id);
        ck_assert_uint_eq(a->u.notice_ex.total_amount, b->u.notice_ex.total_amount);
        ck_assert_uint_eq(a->u.notice_ex.count, b->u.notice_ex.count);
        for (size_t i = 0; i < a->u.notice_ex.count; i++)
            ck_assert_uint_eq(a->u.notice_ex.user_ids[i], b->u.notice_ex.user_ids[i]);
        break;
    default:
        ck_abort_msg("unexpected cmd %u", a->cmd);
    }
}

static const uint16_t all_cmds[] = {
    HB_CMD_LOGIN,    HB_CMD_LOGIN_REPLY,    HB_CMD_SHAKE,    HB_CMD_SHAKE_REPLY,  HB_CMD_NOTICE,
    HB_CMD_CLAIM,    HB_CMD_CLAIM_REPLY,    HB_CMD_CHAT,     HB_CMD_CHAT_DELIVER, HB_CMD_CHAT_REPLY,
    HB_CMD_CLAIM_EX, HB_CMD_CLAIM_EX_REPLY, HB_CMD_NOTICE_EX};
#define NCMDS (sizeof all_cmds / sizeof all_cmds[0])

/* A message of a random command with random fields; chat text from text_pool[0..HB_CHAT_MAX). */
static void random_msg(uint64_t *s, hb_msg_t *m, const uint8_t *text_pool)
{
    memset(m, 0, sizeof *m);
    m->cmd = all_cmds[xs_range(s, 0, NCMDS - 1)];
    m->timestamp = xs_next(s);
    switch (m->cmd) {
    case HB_CMD_CHAT:
    case HB_CMD_CHAT_DELIVER:
        m->u.chat.user_id = (uint32_t)xs_next(s);
        /* Often the longest texts, which need the framer's heap buffer when split. */
        m->u.chat.text_len =
            (uint16_t)(xs_next(s) % 4 == 0 ? HB_CHAT_MAX : xs_range(s, 1, HB_CHAT_MAX));
        m->u.chat.text = text_pool + xs_range(s, 0, HB_CHAT_MAX - m->u.chat.text_len);
        break;
    case HB_CMD_NOTICE_EX:
        m->u.notice_ex.envelope_id = (uint32_t)xs_next(s);
        m->u.notice_ex.total_amount = (uint32_t)xs_next(s);
        m->u.notice_ex.count = (uint32_t)xs_range(s, 1, HB_NOTICE_EX_MAX);
        for (size_t i = 0; i < m->u.notice_ex.count; i++)
            m->u.notice_ex.user_ids[i] = (uint32_t)xs_next(s);
        break;
    default:
        /* Every other payload is made only of u32 fields: fill the union's first 6 words. */
        m->u.notice.envelope_id = (uint32_t)xs_next(s);
        m->u.notice.total_amount = (uint32_t)xs_next(s);
        m->u.notice.recipient_count = (uint32_t)xs_next(s);
        for (size_t i = 0; i < HB_NOTICE_RECIPIENTS; i++)
            m->u.notice.user_ids[i] = (uint32_t)xs_next(s);
        break;
    }
}

/* ---- encode / parse / decode ------------------------------------------------------------ */

START_TEST(test_encode_gives_the_vectors)
{
    for (size_t i = 0; i < NVECTORS; i++) {
        const vector_t *v = &vectors[i];
        uint8_t buf[HB_FRAME_MAX];
        ck_assert_int_eq(hb_msg_encoded_len(&v->msg), (int)v->len);
        ck_assert_int_eq(hb_msg_encode(&v->msg, buf, sizeof buf), (int)v->len);
        ck_assert_mem_eq(buf, v->bytes, v->len);
        /* An exact-size buffer is enough; one byte less is not, and nothing is written then. */
        ck_assert_int_eq(hb_msg_encode(&v->msg, buf, v->len), (int)v->len);
        ck_assert_mem_eq(buf, v->bytes, v->len);
        memset(buf, 0xa5, sizeof buf);
        ck_assert_int_eq(hb_msg_encode(&v->msg, buf, v->len - 1), HB_ENOBUFS);
        for (size_t k = 0; k < sizeof buf; k++)
            ck_assert_uint_eq(buf[k], 0xa5);
    }
}
END_TEST

START_TEST(test_reference_frame_lengths)
{
    /* The sizes verified on the reference's wire. */
    ck_assert_uint_eq(sizeof v_login, 16);
    ck_assert_uint_eq(sizeof v_login_reply, 20);
    ck_assert_uint_eq(sizeof v_shake, 16);
    ck_assert_uint_eq(sizeof v_shake_reply, 28);
    ck_assert_uint_eq(sizeof v_notice, 36);
    ck_assert_uint_eq(sizeof v_claim, 20);
    ck_assert_uint_eq(sizeof v_claim_reply, 20);
    ck_assert_uint_eq(sizeof v_notice, HB_FRAME_MAX_REFERENCE);
    ck_assert_uint_le(HB_FRAME_MAX_REFERENCE, HB_FRAMER_INLINE);
}
END_TEST

START_TEST(test_parse_and_decode_the_vectors)
{
    for (size_t i = 0; i < NVECTORS; i++) {
        const vector_t *v = &vectors[i];
        hb_frame_t f;
        hb_msg_t m;
        ck_assert_int_eq(hb_frame_parse(v->bytes, v->len, &f), (int)v->len);
        ck_assert_uint_eq(f.length, v->len);
        ck_assert_uint_eq(f.cmd, v->msg.cmd);
        ck_assert_uint_eq(f.timestamp, v->msg.timestamp);
        ck_assert_ptr_eq(f.payload, v->bytes + HB_FRAME_HEADER);
        ck_assert_uint_eq(f.payload_len, v->len - HB_FRAME_HEADER);
        ck_assert_int_eq(hb_msg_decode(&f, &m), 0);
        assert_msg_eq(&m, &v->msg);
        if (m.cmd == HB_CMD_CHAT || m.cmd == HB_CMD_CHAT_DELIVER)
            ck_assert_ptr_eq(m.u.chat.text, v->bytes + HB_FRAME_HEADER + 4);
        /* Bytes after the frame are not part of it. */
        uint8_t two[2 * HB_FRAME_MAX];
        memcpy(two, v->bytes, v->len);
        memcpy(two + v->len, v->bytes, v->len);
        ck_assert_int_eq(hb_frame_parse(two, 2 * v->len, &f), (int)v->len);
        ck_assert_int_eq(hb_frame_parse(two, 2 * v->len, NULL), (int)v->len);
    }
}
END_TEST

START_TEST(test_round_trip_every_cmd)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    uint8_t pool[HB_CHAT_MAX];
    for (size_t i = 0; i < sizeof pool; i++)
        pool[i] = (uint8_t)xs_next(&s);
    size_t seen[NCMDS] = {0};

    for (int n = 0; n < 5000; n++) {
        hb_msg_t m, d;
        hb_frame_t f;
        uint8_t buf[HB_FRAME_MAX], again[HB_FRAME_MAX];
        random_msg(&s, &m, pool);
        int len = hb_msg_encode(&m, buf, sizeof buf);
        ck_assert_int_gt(len, 0);
        ck_assert_int_eq(hb_msg_encoded_len(&m), len);
        ck_assert_int_eq(hb_frame_parse(buf, (size_t)len, &f), len);
        ck_assert_int_eq(hb_msg_decode(&f, &d), 0);
        assert_msg_eq(&d, &m);
        ck_assert_int_eq(hb_msg_encode(&d, again, sizeof again), len);
        ck_assert_mem_eq(again, buf, (size_t)len);
        for (size_t c = 0; c < NCMDS; c++)
            if (all_cmds[c] == m.cmd)
                seen[c]++;
    }
    for (size_t c = 0; c < NCMDS; c++)
        ck_assert_uint_gt(seen[c], 0);
}
END_TEST

START_TEST(test_payload_ranges_and_names)
{
    static const struct {
        uint16_t cmd;
        size_t min, max;
        const char *name;
    } want[] = {
        {HB_CMD_LOGIN, 4, 4, "login"},
        {HB_CMD_LOGIN_REPLY, 8, 8, "login-reply"},
        {HB_CMD_SHAKE, 4, 4, "shake"},
        {HB_CMD_SHAKE_REPLY, 16, 16, "shake-reply"},
        {HB_CMD_NOTICE, 24, 24, "notice"},
        {HB_CMD_CLAIM, 8, 8, "claim"},
        {HB_CMD_CLAIM_REPLY, 8, 8, "claim-reply"},
        {HB_CMD_CHAT, 5, 4 + HB_CHAT_MAX, "chat"},
        {HB_CMD_CHAT_DELIVER, 5, 4 + HB_CHAT_MAX, "chat-deliver"},
        {HB_CMD_CHAT_REPLY, 8, 8, "chat-reply"},
        {HB_CMD_CLAIM_EX, 8, 8, "claim-ex"},
        {HB_CMD_CLAIM_EX_REPLY, 12, 12, "claim-ex-reply"},
        {HB_CMD_NOTICE_EX, 12, 8 + 4 * HB_NOTICE_EX_MAX, "notice-ex"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t min = 0, max = 0;
        ck_assert_int_eq(hb_cmd_payload_range(want[i].cmd, &min, &max), 0);
        ck_assert_uint_eq(min, want[i].min);
        ck_assert_uint_eq(max, want[i].max);
        ck_assert_uint_le(HB_FRAME_HEADER + max, HB_FRAME_MAX);
        ck_assert_str_eq(hb_cmd_name(want[i].cmd), want[i].name);
    }
    ck_assert_int_eq(hb_cmd_payload_range(HB_CMD_CHAT, NULL, NULL), 0);

    static const uint16_t unknown[] = {0x0007, 0x0008, 0x00ff, 0x0106, 0x1000, 0xffff};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        size_t min = 77, max = 77;
        ck_assert_int_eq(hb_cmd_payload_range(unknown[i], &min, &max), HB_EBADCMD);
        ck_assert_uint_eq(min, 77);
        ck_assert_uint_eq(max, 77);
        ck_assert_ptr_null(hb_cmd_name(unknown[i]));
    }
    /* Every cmd id below 0x0200 that is not ours is unknown. */
    size_t known = 0;
    for (unsigned c = 0; c < 0x200; c++)
        if (hb_cmd_payload_range((uint16_t)c, NULL, NULL) == 0)
            known++;
    ck_assert_uint_eq(known, NCMDS);
}
END_TEST

/* An invalid input and the error it must give once `at` bytes of it are there. */
typedef struct bad_input {
    uint8_t bytes[20];
    size_t len;
    size_t at;
    int err;
} bad_input_t;

static const bad_input_t bad_inputs[] = {
    /* length 0 and 11: below the header, seen from the length field alone */
    {{0x00, 0x00}, 2, 2, HB_EFRAMESHORT},
    {{0x00, 0x0b, 0x00, 0x00}, 4, 2, HB_EFRAMESHORT},
    {{0x00, 0x08, 0x00, 0x00, 0, 0, 0, 0}, 8, 2, HB_EFRAMESHORT},
    /* length 513 and 0xffff: above HB_FRAME_MAX */
    {{0x02, 0x01}, 2, 2, HB_EFRAMELONG},
    {{0xff, 0xff, 0x00, 0x00}, 4, 2, HB_EFRAMELONG},
    /* unknown cmds, with a plausible length */
    {{0x00, 0x10, 0x00, 0x07}, 4, 4, HB_EBADCMD},
    {{0x00, 0x10, 0x01, 0x06}, 4, 4, HB_EBADCMD},
    {{0x00, 0x1a, 0x01, 0x05}, 4, 4, HB_EBADSIZE}, /* notice-ex with 14: not whole user ids */
    {{0x00, 0x38, 0x01, 0x05}, 4, 4, HB_EBADSIZE}, /* notice-ex with 9 user ids */
    {{0x00, 0x10, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 16, 4, HB_EBADCMD},
    /* payload sizes the cmd does not allow */
    {{0x00, 0x11, 0x00, 0x00}, 4, 4, HB_EBADSIZE}, /* login with 5 */
    {{0x00, 0x0c, 0x00, 0x00}, 4, 4, HB_EBADSIZE}, /* login with 0 */
    {{0x00, 0x10, 0x00, 0x03}, 4, 4, HB_EBADSIZE}, /* shake reply with 4 */
    {{0x00, 0x28, 0x00, 0x04}, 4, 4, HB_EBADSIZE}, /* notice with 28 */
    {{0x00, 0x10, 0x01, 0x00}, 4, 4, HB_EBADSIZE}, /* chat with no text */
    {{0x01, 0x11, 0x01, 0x01}, 4, 4, HB_EBADSIZE}, /* chat-deliver with 257 bytes */
    {{0x00, 0x10, 0x01, 0x02, TS_BYTES, 0, 0, 0, 9}, 16, 4, HB_EBADSIZE}, /* chat reply, 4 */
};
#define NBAD (sizeof bad_inputs / sizeof bad_inputs[0])

START_TEST(test_errors_from_the_first_bytes)
{
    for (size_t i = 0; i < NBAD; i++) {
        const bad_input_t *b = &bad_inputs[i];
        for (size_t k = 0; k <= b->len; k++) {
            hb_frame_t f;
            memset(&f, 0x5a, sizeof f);
            int want = k < b->at ? 0 : b->err;
            ck_assert_int_eq(hb_frame_parse(b->bytes, k, &f), want);
            ck_assert_uint_eq(f.length, 0x5a5a); /* untouched */
        }
        ck_assert_str_ne(hb_strerror(b->err), "unknown error");
    }
}
END_TEST

START_TEST(test_largest_frames_are_accepted)
{
    /* The longest chat (272 bytes) is valid; the header of a 273-byte chat is not. */
    uint8_t buf[HB_FRAME_MAX];
    memset(buf, 'x', sizeof buf);
    hb_put_u16(buf, HB_FRAME_HEADER + 4 + HB_CHAT_MAX);
    hb_put_u16(buf + 2, HB_CMD_CHAT);
    ck_assert_int_eq(hb_frame_parse(buf, 4, NULL), 0);
    ck_assert_int_eq(hb_frame_parse(buf, sizeof buf, NULL), HB_FRAME_HEADER + 4 + HB_CHAT_MAX);
    hb_put_u16(buf, HB_FRAME_HEADER + 4 + HB_CHAT_MAX + 1);
    ck_assert_int_eq(hb_frame_parse(buf, 4, NULL), HB_EBADSIZE);
    /* HB_FRAME_MAX itself is a length the frame check allows; the cmd decides the rest. */
    hb_put_u16(buf, HB_FRAME_MAX);
    ck_assert_int_eq(hb_frame_parse(buf, 2, NULL), 0);
    ck_assert_int_eq(hb_frame_parse(buf, 4, NULL), HB_EBADSIZE);
    hb_put_u16(buf, HB_FRAME_MAX + 1);
    ck_assert_int_eq(hb_frame_parse(buf, 2, NULL), HB_EFRAMELONG);
}
END_TEST

START_TEST(test_every_strict_prefix_needs_more)
{
    for (size_t i = 0; i < NVECTORS; i++) {
        const vector_t *v = &vectors[i];
        for (size_t k = 0; k < v->len; k++) {
            hb_frame_t f;
            memset(&f, 0x5a, sizeof f);
            ck_assert_int_eq(hb_frame_parse(v->bytes, k, &f), 0);
            ck_assert_uint_eq(f.cmd, 0x5a5a);
        }
    }
}
END_TEST

START_TEST(test_no_over_read_at_a_guard_page)
{
    guard_t g;
    guard_init(&g);
    for (size_t i = 0; i < NVECTORS; i++) {
        const vector_t *v = &vectors[i];
        for (size_t k = 0; k <= v->len; k++) {
            const uint8_t *p = guard_place(&g, v->bytes, k);
            hb_frame_t f;
            int want = k < v->len ? 0 : (int)v->len;
            ck_assert_int_eq(hb_frame_parse(p, k, &f), want);
            if (k == v->len) {
                hb_msg_t m;
                ck_assert_int_eq(hb_msg_decode(&f, &m), 0);
                assert_msg_eq(&m, &v->msg);
            }
        }
    }
    for (size_t i = 0; i < NBAD; i++) {
        const bad_input_t *b = &bad_inputs[i];
        for (size_t k = 0; k <= b->len; k++) {
            const uint8_t *p = guard_place(&g, b->bytes, k);
            ck_assert_int_eq(hb_frame_parse(p, k, NULL), k < b->at ? 0 : b->err);
        }
    }
    /* The longest chat, and every prefix of it. */
    uint8_t chat[HB_FRAME_HEADER + 4 + HB_CHAT_MAX];
    memset(chat, 'c', sizeof chat);
    hb_put_u16(chat, sizeof chat);
    hb_put_u16(chat + 2, HB_CMD_CHAT_DELIVER);
    for (size_t k = 0; k <= sizeof chat; k++) {
        const uint8_t *p = guard_place(&g, chat, k);
        ck_assert_int_eq(hb_frame_parse(p, k, NULL), k < sizeof chat ? 0 : (int)sizeof chat);
    }
    guard_free(&g);
}
END_TEST

START_TEST(test_encode_errors)
{
    uint8_t buf[HB_FRAME_MAX];
    uint8_t text[HB_CHAT_MAX + 1];
    memset(text, 't', sizeof text);
    hb_msg_t m = {.cmd = 0x0007};
    ck_assert_int_eq(hb_msg_encoded_len(&m), HB_EBADCMD);
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), HB_EBADCMD);

    m.cmd = HB_CMD_CHAT;
    m.u.chat.text = text;
    m.u.chat.text_len = 0;
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), HB_EBADSIZE);
    m.u.chat.text_len = HB_CHAT_MAX + 1;
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), HB_EBADSIZE);
    ck_assert_int_eq(hb_msg_encoded_len(&m), HB_EBADSIZE);
    m.u.chat.text_len = HB_CHAT_MAX;
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), HB_FRAME_HEADER + 4 + HB_CHAT_MAX);
    m.cmd = HB_CMD_CHAT_DELIVER;
    m.u.chat.text_len = 1;
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), HB_FRAME_HEADER + 5);
    m.u.chat.text = NULL;
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), HB_EINVAL);

    /* A notice's recipient_count is written as given. */
    hb_msg_t n = vectors[4].msg;
    ck_assert_uint_eq(n.cmd, HB_CMD_NOTICE);
    n.u.notice.recipient_count = 2;
    ck_assert_int_eq(hb_msg_encode(&n, buf, sizeof buf), 36);
    ck_assert_uint_eq(hb_get_u32(buf + HB_FRAME_HEADER + 8), 2);
}
END_TEST

START_TEST(test_decode_errors)
{
    uint8_t payload[HB_CHAT_MAX + 8];
    memset(payload, 1, sizeof payload);
    hb_msg_t m;
    memset(&m, 0x5a, sizeof m);

    hb_frame_t f = {.length = 16, .cmd = 0x0042, .payload = payload, .payload_len = 4};
    ck_assert_int_eq(hb_msg_decode(&f, &m), HB_EBADCMD);
    f.cmd = HB_CMD_LOGIN;
    f.payload_len = 8;
    ck_assert_int_eq(hb_msg_decode(&f, &m), HB_EBADSIZE);
    f.cmd = HB_CMD_CHAT;
    f.payload_len = 4;
    ck_assert_int_eq(hb_msg_decode(&f, &m), HB_EBADSIZE);
    f.payload_len = 4 + HB_CHAT_MAX + 1;
    ck_assert_int_eq(hb_msg_decode(&f, &m), HB_EBADSIZE);
    f.payload = NULL;
    f.payload_len = 8;
    f.cmd = HB_CMD_CLAIM;
    ck_assert_int_eq(hb_msg_decode(&f, &m), HB_EBADSIZE);
    ck_assert_uint_eq(m.cmd, 0x5a5a); /* untouched */

    f.payload = payload;
    f.cmd = HB_CMD_CHAT;
    f.payload_len = 4 + HB_CHAT_MAX;
    ck_assert_int_eq(hb_msg_decode(&f, &m), 0);
    ck_assert_uint_eq(m.u.chat.text_len, HB_CHAT_MAX);
    ck_assert_ptr_eq(m.u.chat.text, payload + 4);
}
END_TEST

/* ---- the framer ------------------------------------------------------------------------- */

/* What a callback checks frames against: the stream and where each frame starts. */
typedef struct expect {
    const uint8_t *stream;
    const size_t *offsets; /* nframes + 1 entries, the last one the stream's length */
    size_t nframes;
    size_t next;          /* frames received so far */
    const uint8_t *piece; /* the piece being fed, and where it starts in the stream */
    size_t piece_len;
    size_t piece_off;
    hb_framer_t *fr;
    size_t copied;   /* frames that came from the framer's buffers */
    size_t big_used; /* of those, frames that came from the heap buffer */
    size_t stop_at;  /* return -42 when this frame (index) arrives; SIZE_MAX for never */
} expect_t;

static int expect_cb(void *arg, const hb_frame_t *f)
{
    expect_t *e = arg;
    ck_assert_uint_lt(e->next, e->nframes);
    size_t off = e->offsets[e->next];
    size_t len = e->offsets[e->next + 1] - off;
    const uint8_t *want = e->stream + off;
    ck_assert_uint_eq(f->length, len);
    ck_assert_uint_eq(f->cmd, hb_get_u16(want + 2));
    ck_assert_uint_eq(f->timestamp, hb_get_u64(want + 4));
    ck_assert_uint_eq(f->payload_len, len - HB_FRAME_HEADER);
    ck_assert_mem_eq(f->payload, want + HB_FRAME_HEADER, f->payload_len);

    hb_msg_t m;
    uint8_t again[HB_FRAME_MAX];
    ck_assert_int_eq(hb_msg_decode(f, &m), 0);
    ck_assert_int_eq(hb_msg_encode(&m, again, sizeof again), (int)len);
    ck_assert_mem_eq(again, want, len);

    /* Zero copy exactly when the frame lies wholly inside the piece being fed. */
    if (off >= e->piece_off && off + len <= e->piece_off + e->piece_len) {
        ck_assert_ptr_eq(f->payload, e->piece + (off - e->piece_off) + HB_FRAME_HEADER);
    } else {
        e->copied++;
        if (len > HB_FRAMER_INLINE) {
            ck_assert_ptr_nonnull(e->fr->big);
            ck_assert_ptr_eq(f->payload, e->fr->big + HB_FRAME_HEADER);
            e->big_used++;
        } else {
            ck_assert_ptr_null(e->fr->big);
            ck_assert_ptr_eq(f->payload, e->fr->small + HB_FRAME_HEADER);
        }
    }
    if (e->next++ == e->stop_at)
        return -42;
    return 0;
}

/* A stream of every vector, the longest chat, then `n` random frames of every kind, with the
 * frame offsets. */
typedef struct stream {
    uint8_t *bytes;
    size_t len;
    size_t *offsets;
    size_t nframes;
} stream_t;

static void stream_build(stream_t *st, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    uint8_t pool[HB_CHAT_MAX];
    for (size_t i = 0; i < sizeof pool; i++)
        pool[i] = (uint8_t)xs_next(&s);
    size_t cap = 0;
    for (size_t i = 0; i < NVECTORS; i++)
        cap += vectors[i].len;
    cap += (n + 1) * HB_FRAME_MAX;
    st->bytes = malloc(cap);
    st->offsets = malloc((NVECTORS + n + 2) * sizeof *st->offsets);
    ck_assert_ptr_nonnull(st->bytes);
    ck_assert_ptr_nonnull(st->offsets);
    st->len = 0;
    st->nframes = 0;
    for (size_t i = 0; i < NVECTORS; i++) {
        st->offsets[st->nframes++] = st->len;
        memcpy(st->bytes + st->len, vectors[i].bytes, vectors[i].len);
        st->len += vectors[i].len;
    }
    hb_msg_t longest = {
        .cmd = HB_CMD_CHAT_DELIVER, .timestamp = TS, .u.chat = {5, HB_CHAT_MAX, pool}};
    st->offsets[st->nframes++] = st->len;
    ck_assert_int_eq(hb_msg_encode(&longest, st->bytes + st->len, cap - st->len),
                     HB_FRAME_HEADER + 4 + HB_CHAT_MAX);
    st->len += HB_FRAME_HEADER + 4 + HB_CHAT_MAX;
    for (size_t i = 0; i < n; i++) {
        hb_msg_t m;
        random_msg(&s, &m, pool);
        st->offsets[st->nframes++] = st->len;
        int rc = hb_msg_encode(&m, st->bytes + st->len, cap - st->len);
        ck_assert_int_gt(rc, 0);
        st->len += (size_t)rc;
    }
    st->offsets[st->nframes] = st->len;
}

static void stream_free(stream_t *st)
{
    free(st->bytes);
    free(st->offsets);
}

static void expect_init(expect_t *e, const stream_t *st, hb_framer_t *fr)
{
    memset(e, 0, sizeof *e);
    e->stream = st->bytes;
    e->offsets = st->offsets;
    e->nframes = st->nframes;
    e->fr = fr;
    e->stop_at = SIZE_MAX;
}

/* Feed stream[off..off+len) as one piece. The piece is a private heap copy, freed on return,
 * so that a framer keeping a pointer into it would be caught by ASan. */
static int feed_piece(hb_framer_t *fr, expect_t *e, size_t off, size_t len)
{
    uint8_t *piece = malloc(len > 0 ? len : 1);
    ck_assert_ptr_nonnull(piece);
    memcpy(piece, e->stream + off, len);
    e->piece = piece;
    e->piece_len = len;
    e->piece_off = off;
    int rc = hb_framer_feed(fr, piece, len, expect_cb, e);
    free(piece);
    return rc;
}

/* Feed the whole stream in pieces of sizes chosen by piece_size; check every frame came out. */
static void feed_stream(const stream_t *st, size_t (*piece_size)(uint64_t *s, size_t left),
                        uint64_t seed, expect_t *out)
{
    hb_framer_t fr;
    hb_framer_init(&fr);
    expect_t e;
    expect_init(&e, st, &fr);
    uint64_t s = seed;
    size_t off = 0;
    while (off < st->len) {
        size_t n = piece_size(&s, st->len - off);
        if (n > st->len - off)
            n = st->len - off;
        ck_assert_int_eq(feed_piece(&fr, &e, off, n), 0);
        off += n;
        /* Pending is the part of the current frame received so far. */
        size_t k = 0;
        while (k < st->nframes && st->offsets[k + 1] <= off)
            k++;
        ck_assert_uint_eq(hb_framer_pending(&fr), off - st->offsets[k]);
        ck_assert_uint_eq(e.next, k);
    }
    ck_assert_uint_eq(e.next, st->nframes);
    ck_assert_uint_eq(hb_framer_pending(&fr), 0);
    ck_assert_ptr_null(fr.big);
    ck_assert_int_eq(fr.error, 0);
    hb_framer_reset(&fr);
    *out = e;
}

static size_t piece_one(uint64_t *s, size_t left)
{
    (void)s;
    (void)left;
    return 1;
}

static size_t piece_all(uint64_t *s, size_t left)
{
    (void)s;
    return left;
}

static size_t piece_random(uint64_t *s, size_t left)
{
    (void)left;
    switch (xs_next(s) % 4) {
    case 0:
        return xs_range(s, 1, 3);
    case 1:
        return xs_range(s, 1, 16);
    case 2:
        return xs_range(s, 1, 64);
    default:
        return xs_range(s, 1, 700);
    }
}

START_TEST(test_framer_one_byte_at_a_time)
{
    stream_t st;
    stream_build(&st, 300, 1);
    expect_t e;
    feed_stream(&st, piece_one, 0, &e);
    /* Every frame was split, so every one was copied; the long ones into the heap buffer. */
    ck_assert_uint_eq(e.copied, st.nframes);
    ck_assert_uint_gt(e.big_used, 0);
    stream_free(&st);
}
END_TEST

START_TEST(test_framer_all_at_once_is_zero_copy)
{
    stream_t st;
    stream_build(&st, 300, 2);
    expect_t e;
    feed_stream(&st, piece_all, 0, &e);
    ck_assert_uint_eq(e.copied, 0);
    stream_free(&st);
}
END_TEST

START_TEST(test_framer_random_pieces)
{
    stream_t st;
    stream_build(&st, 300, 3);
    size_t copied = 0, big = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        expect_t e;
        feed_stream(&st, piece_random, seed * 0x2545f4914f6cdd1dull, &e);
        copied += e.copied;
        big += e.big_used;
    }
    /* The mix of piece sizes exercised both kinds of copies, and zero copy. */
    ck_assert_uint_gt(copied, 0);
    ck_assert_uint_gt(big, 0);
    ck_assert_uint_lt(copied, 40 * st.nframes);
    stream_free(&st);
}
END_TEST

START_TEST(test_framer_every_two_piece_split)
{
    /* The vectors plus a few long chats, cut in two at every offset, and fed from a guard
     * page so that the framer over-reading a piece faults. */
    stream_t st;
    stream_build(&st, 4, 4);
    guard_t g;
    guard_init(&g);
    for (size_t cut = 0; cut <= st.len; cut++) {
        hb_framer_t fr;
        hb_framer_init(&fr);
        expect_t e;
        expect_init(&e, &st, &fr);
        e.piece = guard_place(&g, st.bytes, cut);
        e.piece_len = cut;
        e.piece_off = 0;
        ck_assert_int_eq(hb_framer_feed(&fr, e.piece, cut, expect_cb, &e), 0);
        e.piece = guard_place(&g, st.bytes + cut, st.len - cut);
        e.piece_len = st.len - cut;
        e.piece_off = cut;
        ck_assert_int_eq(hb_framer_feed(&fr, e.piece, st.len - cut, expect_cb, &e), 0);
        ck_assert_uint_eq(e.next, st.nframes);
        ck_assert_uint_eq(hb_framer_pending(&fr), 0);
        hb_framer_reset(&fr);
    }
    guard_free(&g);
    stream_free(&st);
}
END_TEST

static int count_cb(void *arg, const hb_frame_t *f)
{
    (void)f;
    (*(size_t *)arg)++;
    return 0;
}

START_TEST(test_framer_pending_mid_frame)
{
    hb_framer_t fr;
    hb_framer_init(&fr);
    size_t n = 0;
    ck_assert_uint_eq(hb_framer_pending(&fr), 0);
    ck_assert_int_eq(hb_framer_feed(&fr, NULL, 0, count_cb, &n), 0);
    ck_assert_uint_eq(hb_framer_pending(&fr), 0);
    /* One whole login then the first byte of the next: a close now is mid-frame. */
    uint8_t two[32];
    memcpy(two, v_login, 16);
    memcpy(two + 16, v_login, 16);
    ck_assert_int_eq(hb_framer_feed(&fr, two, 17, count_cb, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(hb_framer_pending(&fr), 1);
    ck_assert_int_eq(hb_framer_feed(&fr, two + 17, 9, count_cb, &n), 0);
    ck_assert_uint_eq(hb_framer_pending(&fr), 10);
    ck_assert_int_eq(hb_framer_feed(&fr, two + 26, 6, count_cb, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(hb_framer_pending(&fr), 0);
    ck_assert_int_eq(hb_framer_feed(&fr, NULL, 0, count_cb, &n), 0);
    ck_assert_int_eq(hb_framer_feed(&fr, two, 16, NULL, NULL), HB_EINVAL);
    ck_assert_int_eq(hb_framer_feed(&fr, two, 16, count_cb, &n), 0); /* EINVAL was not sticky */
    ck_assert_uint_eq(n, 3);
    hb_framer_reset(&fr);
}
END_TEST

START_TEST(test_framer_error_is_sticky)
{
    /* Three good frames, a frame with an unknown cmd, then a good one. */
    uint8_t buf[16 * 5];
    for (int i = 0; i < 5; i++)
        memcpy(buf + 16 * i, v_login, 16);
    hb_put_u16(buf + 16 * 3 + 2, 0x0042);
    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        hb_framer_t fr;
        hb_framer_init(&fr);
        size_t n = 0;
        int rc = hb_framer_feed(&fr, buf, cut, count_cb, &n);
        if (rc == 0)
            rc = hb_framer_feed(&fr, buf + cut, sizeof buf - cut, count_cb, &n);
        /* The error shows once the bad frame's 4th byte is in, whichever piece that is. */
        ck_assert_int_eq(rc, HB_EBADCMD);
        ck_assert_uint_eq(n, 3);
        ck_assert_uint_eq(hb_framer_pending(&fr), 0);
        ck_assert_ptr_null(fr.big);
        /* Sticky: good data is refused, no callback. */
        ck_assert_int_eq(hb_framer_feed(&fr, v_login, sizeof v_login, count_cb, &n), HB_EBADCMD);
        ck_assert_int_eq(hb_framer_feed(&fr, NULL, 0, count_cb, &n), HB_EBADCMD);
        ck_assert_uint_eq(n, 3);
        /* Reset clears it. */
        hb_framer_reset(&fr);
        ck_assert_int_eq(hb_framer_feed(&fr, v_login, sizeof v_login, count_cb, &n), 0);
        ck_assert_uint_eq(n, 4);
        hb_framer_reset(&fr);
    }
}
END_TEST

START_TEST(test_framer_error_in_a_split_long_frame)
{
    /* A long chat header whose cmd turns out unknown when its 4th byte arrives. */
    uint8_t bad[4] = {0x01, 0x00, 0x01, 0x07};
    hb_framer_t fr;
    hb_framer_init(&fr);
    size_t n = 0;
    ck_assert_int_eq(hb_framer_feed(&fr, bad, 3, count_cb, &n), 0);
    ck_assert_uint_eq(hb_framer_pending(&fr), 3);
    ck_assert_int_eq(hb_framer_feed(&fr, bad + 3, 1, count_cb, &n), HB_EBADCMD);
    ck_assert_uint_eq(hb_framer_pending(&fr), 0);
    ck_assert_ptr_null(fr.big);
    hb_framer_reset(&fr);

    /* A bad length is seen from its 2 bytes, even split in two pieces. */
    uint8_t longer[2] = {0x7f, 0xff};
    ck_assert_int_eq(hb_framer_feed(&fr, longer, 1, count_cb, &n), 0);
    ck_assert_int_eq(hb_framer_feed(&fr, longer + 1, 1, count_cb, &n), HB_EFRAMELONG);
    hb_framer_reset(&fr);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_framer_callback_stop)
{
    stream_t st;
    stream_build(&st, 60, 5);
    /* Stop at each frame in turn, fed all at once and one byte at a time. */
    for (size_t stop = 0; stop < st.nframes; stop++) {
        for (int bytewise = 0; bytewise <= 1; bytewise++) {
            hb_framer_t fr;
            hb_framer_init(&fr);
            expect_t e;
            expect_init(&e, &st, &fr);
            e.stop_at = stop;
            int rc = 0;
            size_t off = 0;
            if (bytewise) {
                for (; off < st.len && rc == 0; off++)
                    rc = feed_piece(&fr, &e, off, 1);
            } else {
                rc = feed_piece(&fr, &e, 0, st.len);
            }
            ck_assert_int_eq(rc, -42);
            ck_assert_uint_eq(e.next, stop + 1);
            if (bytewise) /* the stopping frame's last byte was the last one taken */
                ck_assert_uint_eq(off, st.offsets[stop + 1]);
            /* Consistent: nothing held, heap buffer freed, the stop is sticky. */
            ck_assert_uint_eq(hb_framer_pending(&fr), 0);
            ck_assert_ptr_null(fr.big);
            ck_assert_int_eq(feed_piece(&fr, &e, 0, st.len), -42);
            ck_assert_uint_eq(e.next, stop + 1);
            /* After a reset the stream can start over. */
            hb_framer_reset(&fr);
            expect_init(&e, &st, &fr);
            ck_assert_int_eq(feed_piece(&fr, &e, 0, st.len), 0);
            ck_assert_uint_eq(e.next, st.nframes);
            hb_framer_reset(&fr);
        }
    }
    stream_free(&st);
}
END_TEST

START_TEST(test_framer_reset_frees_the_heap_buffer)
{
    uint8_t chat[HB_FRAME_HEADER + 4 + HB_CHAT_MAX];
    memset(chat, 'z', sizeof chat);
    hb_put_u16(chat, sizeof chat);
    hb_put_u16(chat + 2, HB_CMD_CHAT);
    hb_framer_t fr;
    hb_framer_init(&fr);
    size_t n = 0;
    /* Until the length and cmd are known the bytes sit in small[]. */
    ck_assert_int_eq(hb_framer_feed(&fr, chat, 3, count_cb, &n), 0);
    ck_assert_ptr_null(fr.big);
    ck_assert_int_eq(hb_framer_feed(&fr, chat + 3, 97, count_cb, &n), 0);
    ck_assert_ptr_nonnull(fr.big);
    ck_assert_uint_eq(hb_framer_pending(&fr), 100);
    hb_framer_reset(&fr);
    ck_assert_ptr_null(fr.big);
    ck_assert_uint_eq(hb_framer_pending(&fr), 0);
    /* A partial long frame held when the start of a new stream comes: start over cleanly. */
    ck_assert_int_eq(hb_framer_feed(&fr, chat, 200, count_cb, &n), 0);
    ck_assert_ptr_nonnull(fr.big);
    hb_framer_reset(&fr);
    ck_assert_int_eq(hb_framer_feed(&fr, chat, sizeof chat, count_cb, &n), 0);
    ck_assert_ptr_null(fr.big);
    ck_assert_uint_eq(n, 1);
    /* A split long frame completes and its buffer goes. */
    ck_assert_int_eq(hb_framer_feed(&fr, chat, 50, count_cb, &n), 0);
    ck_assert_int_eq(hb_framer_feed(&fr, chat + 50, sizeof chat - 50, count_cb, &n), 0);
    ck_assert_ptr_null(fr.big);
    ck_assert_uint_eq(n, 2);
    hb_framer_reset(&fr);
    hb_framer_reset(&fr); /* twice is harmless */
}
END_TEST

/* Garbage: frames and their results, for comparing two ways of feeding the same bytes. */
typedef struct record {
    size_t nframes;
    size_t bytes; /* total length of the frames yielded */
    uint64_t hash;
} record_t;

static int record_cb(void *arg, const hb_frame_t *f)
{
    record_t *r = arg;
    hb_msg_t m;
    uint8_t again[HB_FRAME_MAX];
    ck_assert_int_eq(hb_msg_decode(f, &m), 0);
    ck_assert_int_eq(hb_msg_encode(&m, again, sizeof again), f->length);
    ck_assert_mem_eq(again + HB_FRAME_HEADER, f->payload, f->payload_len);
    r->nframes++;
    r->bytes += f->length;
    r->hash = r->hash * 31 + f->cmd + f->timestamp;
    for (size_t i = 0; i < f->payload_len; i++)
        r->hash = r->hash * 131 + f->payload[i];
    return 0;
}

START_TEST(test_framer_garbage)
{
    uint64_t s = 0xdeadbeefcafef00dull;
    uint8_t pool[HB_CHAT_MAX];
    for (size_t i = 0; i < sizeof pool; i++)
        pool[i] = (uint8_t)xs_next(&s);
    enum { CAP = 8192 };
    uint8_t *buf = malloc(CAP);
    ck_assert_ptr_nonnull(buf);
    size_t errors = 0, pendings = 0;

    for (int round = 0; round < 2000; round++) {
        /* Valid frames mixed with random runs, or headers with plausible lengths. */
        size_t len = 0;
        while (len < CAP - HB_FRAME_MAX) {
            size_t kind = xs_next(&s) % 8;
            if (kind < 5) {
                hb_msg_t m;
                random_msg(&s, &m, pool);
                len += (size_t)hb_msg_encode(&m, buf + len, CAP - len);
            } else if (kind < 7) {
                size_t n = xs_range(&s, 1, 40);
                for (size_t i = 0; i < n; i++)
                    buf[len++] = (uint8_t)xs_next(&s);
            } else {
                hb_put_u16(buf + len, (uint16_t)xs_range(&s, 0, HB_FRAME_MAX + 2));
                hb_put_u16(buf + len + 2, (uint16_t)(xs_next(&s) % 2 ? xs_range(&s, 0, 7)
                                                                     : xs_range(&s, 0xfe, 0x103)));
                len += 4;
            }
            if (xs_next(&s) % 16 == 0)
                break;
        }

        hb_framer_t whole, pieces;
        record_t rw = {0}, rp = {0};
        hb_framer_init(&whole);
        hb_framer_init(&pieces);
        int rcw = hb_framer_feed(&whole, buf, len, record_cb, &rw);
        int rcp = 0;
        for (size_t off = 0; off < len && rcp == 0;) {
            size_t n = piece_random(&s, len - off);
            if (n > len - off)
                n = len - off;
            rcp = hb_framer_feed(&pieces, buf + off, n, record_cb, &rp);
            off += n;
        }
        /* However it is cut, the same bytes give the same frames and the same end. */
        ck_assert_int_eq(rcp, rcw);
        ck_assert_uint_eq(rp.nframes, rw.nframes);
        ck_assert_uint_eq(rp.bytes, rw.bytes);
        ck_assert_uint_eq(rp.hash, rw.hash);
        ck_assert_uint_eq(hb_framer_pending(&pieces), hb_framer_pending(&whole));
        if (rcw < 0) {
            /* A failed framer holds nothing. */
            ck_assert_msg(rcw == HB_EFRAMESHORT || rcw == HB_EFRAMELONG || rcw == HB_EBADCMD ||
                              rcw == HB_EBADSIZE,
                          "unexpected error %d", rcw);
            ck_assert_uint_eq(hb_framer_pending(&whole), 0);
            ck_assert_ptr_null(whole.big);
            errors++;
        } else {
            /* Otherwise everything was consumed: frames, plus a pending partial one. */
            ck_assert_uint_eq(rw.bytes + hb_framer_pending(&whole), len);
            ck_assert_uint_lt(hb_framer_pending(&whole), HB_FRAME_MAX);
            if (hb_framer_pending(&whole) > 0)
                pendings++;
        }
        hb_framer_reset(&whole);
        hb_framer_reset(&pieces);
    }
    ck_assert_uint_gt(errors, 0);
    ck_assert_uint_gt(pendings, 0);
    free(buf);
}
END_TEST

START_TEST(test_framer_pure_random_bytes)
{
    /* Bytes with no structure at all, fed in random pieces, never crash. */
    uint64_t s = 12345;
    uint8_t buf[1024];
    for (int round = 0; round < 3000; round++) {
        size_t len = xs_range(&s, 0, sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)xs_next(&s);
        hb_framer_t fr;
        hb_framer_init(&fr);
        record_t r = {0};
        int rc = 0;
        for (size_t off = 0; off < len && rc == 0;) {
            size_t n = piece_random(&s, len - off);
            if (n > len - off)
                n = len - off;
            rc = hb_framer_feed(&fr, buf + off, n, record_cb, &r);
            off += n;
        }
        if (rc == 0)
            ck_assert_uint_eq(r.bytes + hb_framer_pending(&fr), len);
        else
            ck_assert_uint_eq(hb_framer_pending(&fr), 0);
        hb_framer_reset(&fr);
    }
}
END_TEST

START_TEST(test_application_commands)
{
    /* 0x4000..0x7fff carry raw payloads of 0..500 bytes for a consumer's own commands. */
    static const uint8_t v_app[] = {0x00, 0x0f, 0x40, 0x01, 0, 0, 0, 0, 0, 0, 0, 9, 'a', 'b', 'c'};
    hb_frame_t f;
    hb_msg_t m;
    ck_assert_int_eq(hb_frame_parse(v_app, sizeof v_app, &f), (int)sizeof v_app);
    ck_assert_int_eq(hb_msg_decode(&f, &m), 0);
    ck_assert_uint_eq(m.cmd, 0x4001);
    ck_assert_uint_eq(m.u.app.len, 3);
    ck_assert_mem_eq(m.u.app.payload, "abc", 3);
    ck_assert_str_eq(hb_cmd_name(0x7fff), "application");
    uint8_t buf[HB_FRAME_MAX];
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), (int)sizeof v_app);
    ck_assert_mem_eq(buf, v_app, sizeof v_app);
    /* An empty payload is allowed; the largest frame is HB_FRAME_MAX. */
    static const uint8_t v_empty[] = {0x00, 0x0c, 0x7f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(hb_frame_parse(v_empty, sizeof v_empty, &f), 12);
    ck_assert_int_eq(hb_msg_decode(&f, &m), 0);
    ck_assert_uint_eq(m.u.app.len, 0);
    size_t min, max;
    ck_assert_int_eq(hb_cmd_payload_range(0x4000, &min, &max), 0);
    ck_assert_uint_eq(min, 0);
    ck_assert_uint_eq(max, HB_FRAME_MAX - HB_FRAME_HEADER);
    /* Just outside the range stays unknown. */
    ck_assert_int_eq(hb_cmd_payload_range(0x3fff, NULL, NULL), HB_EBADCMD);
    ck_assert_int_eq(hb_cmd_payload_range(0x8000, NULL, NULL), HB_EBADCMD);
    m.u.app.len = HB_FRAME_MAX - HB_FRAME_HEADER + 1;
    ck_assert_int_eq(hb_msg_encode(&m, buf, sizeof buf), HB_EBADSIZE);
}
END_TEST

static Suite *proto_suite(void)
{
    Suite *s = suite_create("proto");
    TCase *tc = tcase_create("messages");
    tcase_add_test(tc, test_encode_gives_the_vectors);
    tcase_add_test(tc, test_reference_frame_lengths);
    tcase_add_test(tc, test_parse_and_decode_the_vectors);
    tcase_add_test(tc, test_round_trip_every_cmd);
    tcase_add_test(tc, test_payload_ranges_and_names);
    tcase_add_test(tc, test_errors_from_the_first_bytes);
    tcase_add_test(tc, test_largest_frames_are_accepted);
    tcase_add_test(tc, test_every_strict_prefix_needs_more);
    tcase_add_test(tc, test_no_over_read_at_a_guard_page);
    tcase_add_test(tc, test_encode_errors);
    tcase_add_test(tc, test_decode_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("framer");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_framer_one_byte_at_a_time);
    tcase_add_test(tc, test_framer_all_at_once_is_zero_copy);
    tcase_add_test(tc, test_framer_random_pieces);
    tcase_add_test(tc, test_framer_every_two_piece_split);
    tcase_add_test(tc, test_framer_pending_mid_frame);
    tcase_add_test(tc, test_framer_error_is_sticky);
    tcase_add_test(tc, test_framer_error_in_a_split_long_frame);
    tcase_add_test(tc, test_framer_callback_stop);
    tcase_add_test(tc, test_framer_reset_frees_the_heap_buffer);
    tcase_add_test(tc, test_framer_garbage);
    tcase_add_test(tc, test_framer_pure_random_bytes);
    tcase_add_test(tc, test_application_commands);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(proto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
