/* The wire protocol: frames and messages of the reference prototype, byte for byte, plus our
 * extension commands. Pure code: no I/O, no allocation except the framer's rare large buffer. */
#ifndef HONGBAO_PROTO_H
#define HONGBAO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Frame: u16 length (whole frame, header included), u16 cmd, u64 timestamp (Unix seconds),
 * then the payload. All integers big-endian. */
#define HB_FRAME_HEADER 12
/* The largest frame of the reference commands (a send-envelope notice: 12 + 24). */
#define HB_FRAME_MAX_REFERENCE 36
/* The largest frame we accept, extensions included. */
#define HB_FRAME_MAX 512
/* Chat text is 1..HB_CHAT_MAX bytes of opaque data (UTF-8 by convention). */
#define HB_CHAT_MAX 256

/* Command ids. 0x0000..0x0006 are the reference's and never change meaning; ours start at
 * 0x0100. */
typedef enum {
    HB_CMD_LOGIN = 0x0000,          /* client->server: user_id */
    HB_CMD_LOGIN_REPLY = 0x0001,    /* server->client: user_id, result (0 = ok) */
    HB_CMD_SHAKE = 0x0002,          /* client->server: user_id */
    HB_CMD_SHAKE_REPLY = 0x0003,    /* server->client: user_id, result, envelope_id, amount */
    HB_CMD_NOTICE = 0x0004,         /* server->client: send-envelope notice */
    HB_CMD_CLAIM = 0x0005,          /* client->server: user_id (ignored), envelope_id */
    HB_CMD_CLAIM_REPLY = 0x0006,    /* server->client: envelope_id, amount (0 = nothing granted) */
    HB_CMD_CHAT = 0x0100,           /* client->server: to_user_id, text */
    HB_CMD_CHAT_DELIVER = 0x0101,   /* server->client: from_user_id, text */
    HB_CMD_CHAT_REPLY = 0x0102,     /* server->client: to_user_id, result (HB_CHAT_*) */
    HB_CMD_CLAIM_EX = 0x0103,       /* client->server: user_id (ignored), envelope_id */
    HB_CMD_CLAIM_EX_REPLY = 0x0104, /* server->client: envelope_id, amount, result (HB_CLAIM_*) */
    HB_CMD_NOTICE_EX = 0x0105       /* server->client: a send-envelope notice of any size:
                                       envelope_id, total_amount, user_id x 1..HB_NOTICE_EX_MAX
                                       (their number is the payload's size) */
} hb_cmd_t;

/* Application commands: a consumer of the server runtime may define its own commands in this range
 * (hb_server_handle). The parser accepts any payload of 0..HB_FRAME_MAX - HB_FRAME_HEADER bytes
 * for them; hb_msg_t carries the payload as raw bytes (u.app). */
#define HB_CMD_APP_FIRST   0x4000
#define HB_CMD_APP_LAST    0x7FFF
#define HB_CMD_IS_APP(cmd) ((cmd) >= HB_CMD_APP_FIRST && (cmd) <= HB_CMD_APP_LAST)

/* Shake reply results, as the reference sends them. */
enum {
    HB_SHAKE_GOT = 14,       /* envelope_id and amount filled */
    HB_SHAKE_NONE = 15,      /* no envelope now */
    HB_SHAKE_ALL_TAKEN = 16, /* defined by the reference, unused by it */
    HB_SHAKE_OVERLOAD = 17   /* server over its request cap this second */
};

/* Claim results: the extended claim (HB_CMD_CLAIM_EX, our extension) is answered with one of
 * these in HB_CMD_CLAIM_EX_REPLY. The reference's claim (HB_CMD_CLAIM) is answered with the amount
 * alone: the share for GRANTED and REPEAT, 0 for every other result. */
enum {
    HB_CLAIM_GRANTED = 0,       /* the share is yours now: amount */
    HB_CLAIM_REPEAT = 1,        /* granted to you before (a reply was lost): the same amount */
    HB_CLAIM_NOT_RECIPIENT = 2, /* the envelope is not addressed to you: amount 0 */
    HB_CLAIM_NO_ENVELOPE = 3,   /* no such envelope (unknown or expired): amount 0 */
    HB_CLAIM_TRY_AGAIN = 4,     /* nothing decided: the server could not make a grant durable now
                                   (journal or store unavailable) or you are over your rate
                                   limit; ask again later, and the answer will be the right one */
};

/* Chat reply results (our extension). */
enum {
    HB_CHAT_DELIVERED = 0, /* handed to the recipient's connection */
    HB_CHAT_OFFLINE = 1,   /* the recipient is not logged in */
    HB_CHAT_REJECTED = 2   /* the server refused it (e.g. rate limit) */
};

/* Shake envelope ids count up from here; send-envelope ids from HB_SEND_ENVELOPE_ID_BASE. */
#define HB_SHAKE_ENVELOPE_ID_BASE 0x100000u
#define HB_SEND_ENVELOPE_ID_BASE  0x200000u
/* The reference's notice (HB_CMD_NOTICE) names exactly three recipients; a send-envelope with
 * another count (1..HB_NOTICE_EX_MAX) is announced with HB_CMD_NOTICE_EX. */
#define HB_NOTICE_RECIPIENTS 3
#define HB_NOTICE_EX_MAX     8

/* A whole frame located in a caller's buffer. payload points into that buffer (zero copy) and
 * is valid as long as the buffer is. */
typedef struct hb_frame {
    uint16_t length; /* whole frame length, header included */
    uint16_t cmd;
    uint64_t timestamp;
    const uint8_t *payload;
    size_t payload_len; /* length - HB_FRAME_HEADER */
} hb_frame_t;

/* Parse one frame at the start of buf[0..len). Returns the frame's length (> 0) and fills *out
 * when a whole valid frame is there; 0 when more bytes are needed (never reads past len);
 * HB_EFRAMESHORT / HB_EFRAMELONG for a length outside [HB_FRAME_HEADER, HB_FRAME_MAX],
 * HB_EBADCMD for an unknown cmd, HB_EBADSIZE for a payload size the cmd does not allow. Errors
 * are reported as soon as the header's first 4 bytes show them, before the rest arrives (a bad
 * length as soon as its 2 bytes are there). Only the header is checked: payload values are not.
 * out->payload points into buf. out may be NULL to validate only; *out is untouched unless the
 * return is > 0. No allocation, no state: bytes after the frame are not looked at. */
HB_EXTERN int hb_frame_parse(const uint8_t *buf, size_t len, hb_frame_t *out);

/* The payload sizes cmd allows: [*min, *max] (either pointer may be NULL). Returns 0, or
 * HB_EBADCMD for an unknown cmd (*min and *max untouched then). */
HB_EXTERN int hb_cmd_payload_range(uint16_t cmd, size_t *min, size_t *max);

/* A short lowercase static name of cmd ("login", "login-reply", "shake", "shake-reply",
 * "notice", "claim", "claim-reply", "chat", "chat-deliver", "chat-reply", "claim-ex",
 * "claim-ex-reply", "notice-ex", "application"), or NULL when unknown. */
HB_EXTERN const char *hb_cmd_name(uint16_t cmd);

/* A decoded message. Which member of u is valid depends on cmd. Text fields point into the
 * frame's buffer (zero copy). */
typedef struct hb_msg {
    uint16_t cmd;
    uint64_t timestamp;
    union {
        struct {
            uint32_t user_id;
        } login;
        struct {
            uint32_t user_id;
            uint32_t result;
        } login_reply;
        struct {
            uint32_t user_id;
        } shake;
        struct {
            uint32_t user_id;
            uint32_t result;
            uint32_t envelope_id;
            uint32_t amount;
        } shake_reply;
        struct {
            uint32_t envelope_id;
            uint32_t total_amount;
            uint32_t recipient_count;
            uint32_t user_ids[HB_NOTICE_RECIPIENTS];
        } notice;
        struct {
            uint32_t user_id;
            uint32_t envelope_id;
        } claim;
        struct {
            uint32_t envelope_id;
            uint32_t amount;
        } claim_reply;
        struct {
            uint32_t user_id; /* chat: the recipient; chat-deliver: the sender */
            uint16_t text_len;
            const uint8_t *text;
        } chat; /* HB_CMD_CHAT and HB_CMD_CHAT_DELIVER */
        struct {
            uint16_t len;
            const uint8_t *payload; /* may be NULL when len is 0 */
        } app;                      /* HB_CMD_APP_FIRST..HB_CMD_APP_LAST */
        struct {
            uint32_t user_id;
            uint32_t result;
        } chat_reply;
        struct {
            uint32_t envelope_id;
            uint32_t amount;
            uint32_t result; /* HB_CLAIM_* */
        } claim_ex_reply;
        struct {
            uint32_t envelope_id;
            uint32_t total_amount;
            uint32_t count; /* 1..HB_NOTICE_EX_MAX: from the payload's size, not on the wire */
            uint32_t user_ids[HB_NOTICE_EX_MAX];
        } notice_ex;
    } u;
} hb_msg_t;

/* Decode a parsed frame into *out (fully overwritten; unused members are zeroed). Chat text
 * points into frame->payload and is valid as long as that is (for a framer's frame: during the
 * callback only). Every payload byte lands in a field, so hb_msg_encode of the result gives the
 * frame's bytes back. Returns 0, or HB_EBADCMD / HB_EBADSIZE when the frame did not come from
 * hb_frame_parse (which already checked both); *out is untouched then. frame->length is not
 * looked at: payload_len rules. */
HB_EXTERN int hb_msg_decode(const hb_frame_t *frame, hb_msg_t *out);

/* Encode *msg as one frame into buf[0..cap): the 12-byte header (with msg->timestamp) then the
 * payload; fields are written as given (a notice's recipient_count too; the reference always
 * sends 3). Returns the frame length, HB_ENOBUFS when cap is too small (nothing is written
 * then), HB_EBADCMD for an unknown cmd, HB_EBADSIZE for chat text_len outside 1..HB_CHAT_MAX,
 * HB_EINVAL for chat text NULL. The chat text is copied; buf may then be reused freely. */
HB_EXTERN int hb_msg_encode(const hb_msg_t *msg, uint8_t *buf, size_t cap);

/* The encoded length of *msg, or a negative error as hb_msg_encode would return. */
HB_EXTERN int hb_msg_encoded_len(const hb_msg_t *msg);

/* Stream reassembly: feed bytes as they come off a socket, in pieces of any size, and get whole
 * frames back. Frames wholly inside one fed piece are yielded in place (zero copy); only a frame
 * split across pieces is copied, into the framer's small inline buffer, or for an extension
 * frame longer than that into a heap buffer freed when the frame completes or on reset.
 * Caller-owned; about 56 bytes. */
#define HB_FRAMER_INLINE 40
typedef struct hb_framer {
    /* private */
    uint8_t *big;  /* heap buffer for a pending frame longer than HB_FRAMER_INLINE, or NULL */
    uint16_t have; /* bytes of the pending frame held */
    uint16_t need; /* its total length once its first 4 bytes are in and valid, else 0 */
    int error;     /* sticky: a bad frame, HB_ENOMEM or a callback's stop; 0 if none */
    uint8_t small[HB_FRAMER_INLINE];
} hb_framer_t;

/* Called once per whole frame, in stream order. frame->payload is valid only during the call
 * (it points into the fed data or into the framer). Return 0 to go on, or a negative value to
 * stop feeding: hb_framer_feed returns that value. The callback must not feed or reset the
 * framer it was called from. */
typedef int (*hb_framer_cb)(void *arg, const hb_frame_t *frame);

/* Initialise a framer: empty, no error, nothing allocated. */
HB_EXTERN void hb_framer_init(hb_framer_t *fr);

/* Consume data[0..len), calling cb (not NULL) for each frame completed; the tail of data that
 * starts a frame is copied into the framer, so data may be reused once this returns. Returns 0
 * when all was consumed, or a negative value after which the framer is failed: it holds nothing
 * (pending 0, heap buffer freed) and every later feed returns the same value at once without
 * calling cb, until hb_framer_reset (or discard it: close the connection). The failures are: the
 * first error hb_frame_parse reports (frames before the bad one were all delivered), HB_ENOMEM,
 * or a callback's negative return. A stop by the callback counts the frame it was given as
 * consumed; the bytes after that frame in data are neither delivered nor kept, which is why the
 * stop is sticky: the stream position is lost. HB_EINVAL (not sticky) when cb is NULL. */
HB_EXTERN int hb_framer_feed(hb_framer_t *fr, const uint8_t *data, size_t len, hb_framer_cb cb,
                             void *arg);

/* Bytes of an incomplete frame held, i.e. a peer that closes now closed mid-frame if > 0.
 * 0 at a frame boundary and in the failed state. */
HB_EXTERN size_t hb_framer_pending(const hb_framer_t *fr);

/* Drop any pending partial frame and error, free the heap buffer. The framer may be fed again,
 * from a frame boundary of a stream. Call it (or reset once more) before discarding a framer
 * that may hold a partial frame, or the heap buffer leaks. */
HB_EXTERN void hb_framer_reset(hb_framer_t *fr);

/* Big-endian helpers, exposed for other modules and consumers writing extension payloads. */
static inline void hb_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void hb_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void hb_put_u64(uint8_t *p, uint64_t v)
{
    hb_put_u32(p, (uint32_t)(v >> 32));
    hb_put_u32(p + 4, (uint32_t)v);
}
static inline uint16_t hb_get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t hb_get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t hb_get_u64(const uint8_t *p)
{
    return ((uint64_t)hb_get_u32(p) << 32) | hb_get_u32(p + 4);
}

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_PROTO_H */
