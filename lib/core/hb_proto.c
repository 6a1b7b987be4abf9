/* The wire protocol: frame parsing, message encoding and decoding, and stream reassembly.
 * No I/O; the only allocation is the framer's buffer for a split frame longer than its inline one.
 */
#include "hongbao/proto.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of the header that identify a frame: u16 length, u16 cmd. */
#define HB_FRAME_PREFIX 4
/* A chat payload: u32 user_id, then the text. */
#define HB_CHAT_TEXT_OFFSET 4

int hb_cmd_payload_range(uint16_t cmd, size_t *min, size_t *max)
{
    size_t lo, hi;

    switch (cmd) {
    case HB_CMD_LOGIN:
    case HB_CMD_SHAKE:
        lo = hi = 4;
        break;
    case HB_CMD_LOGIN_REPLY:
    case HB_CMD_CLAIM:
    case HB_CMD_CLAIM_REPLY:
    case HB_CMD_CHAT_REPLY:
    case HB_CMD_CLAIM_EX:
        lo = hi = 8;
        break;
    case HB_CMD_CLAIM_EX_REPLY:
        lo = hi = 12;
        break;
    case HB_CMD_NOTICE_EX:
        lo = 8 + 4;
        hi = 8 + 4 * HB_NOTICE_EX_MAX;
        break;
    case HB_CMD_SHAKE_REPLY:
        lo = hi = 16;
        break;
    case HB_CMD_NOTICE:
        lo = hi = 12 + 4 * HB_NOTICE_RECIPIENTS;
        break;
    case HB_CMD_CHAT:
    case HB_CMD_CHAT_DELIVER:
        lo = HB_CHAT_TEXT_OFFSET + 1;
        hi = HB_CHAT_TEXT_OFFSET + HB_CHAT_MAX;
        break;
    default:
        if (!HB_CMD_IS_APP(cmd))
            return HB_EBADCMD;
        lo = 0;
        hi = HB_FRAME_MAX - HB_FRAME_HEADER;
        break;
    }
    if (min != NULL)
        *min = lo;
    if (max != NULL)
        *max = hi;
    return 0;
}

const char *hb_cmd_name(uint16_t cmd)
{
    switch (cmd) {
    case HB_CMD_LOGIN:
        return "login";
    case HB_CMD_LOGIN_REPLY:
        return "login-reply";
    case HB_CMD_SHAKE:
        return "shake";
    case HB_CMD_SHAKE_REPLY:
        return "shake-reply";
    case HB_CMD_NOTICE:
        return "notice";
    case HB_CMD_CLAIM:
        return "claim";
    case HB_CMD_CLAIM_REPLY:
        return "claim-reply";
    case HB_CMD_CHAT:
        return "chat";
    case HB_CMD_CHAT_DELIVER:
        return "chat-deliver";
    case HB_CMD_CHAT_REPLY:
        return "chat-reply";
    case HB_CMD_CLAIM_EX:
        return "claim-ex";
    case HB_CMD_CLAIM_EX_REPLY:
        return "claim-ex-reply";
    case HB_CMD_NOTICE_EX:
        return "notice-ex";
    default:
        return HB_CMD_IS_APP(cmd) ? "application" : NULL;
    }
}

/* Check a frame's length and cmd against each other: 0 or a negative error. */
static int frame_check(uint16_t length, uint16_t cmd)
{
    size_t min, max, payload;
    int rc;

    if (length < HB_FRAME_HEADER)
        return HB_EFRAMESHORT;
    if (length > HB_FRAME_MAX)
        return HB_EFRAMELONG;
    rc = hb_cmd_payload_range(cmd, &min, &max);
    if (rc != 0)
        return rc;
    payload = (size_t)length - HB_FRAME_HEADER;
    if (payload < min || payload > max)
        return HB_EBADSIZE;
    if (cmd == HB_CMD_NOTICE_EX && payload % 4 != 0)
        return HB_EBADSIZE; /* whole user ids only */
    return 0;
}

int hb_frame_parse(const uint8_t *buf, size_t len, hb_frame_t *out)
{
    uint16_t length, cmd;
    int rc;

    /* The length alone already rules out too short or too long frames. */
    if (len < 2)
        return 0;
    length = hb_get_u16(buf);
    if (length < HB_FRAME_HEADER)
        return HB_EFRAMESHORT;
    if (length > HB_FRAME_MAX)
        return HB_EFRAMELONG;
    if (len < HB_FRAME_PREFIX)
        return 0;
    cmd = hb_get_u16(buf + 2);
    rc = frame_check(length, cmd);
    if (rc != 0)
        return rc;
    if (len < length)
        return 0;
    if (out != NULL) {
        out->length = length;
        out->cmd = cmd;
        out->timestamp = hb_get_u64(buf + 4);
        out->payload = buf + HB_FRAME_HEADER;
        out->payload_len = (size_t)length - HB_FRAME_HEADER;
    }
    return (int)length;
}

int hb_msg_decode(const hb_frame_t *frame, hb_msg_t *out)
{
    const uint8_t *p = frame->payload;
    size_t min, max;
    int rc;

    rc = hb_cmd_payload_range(frame->cmd, &min, &max);
    if (rc != 0)
        return rc;
    if (frame->payload_len < min || frame->payload_len > max || p == NULL ||
        (frame->cmd == HB_CMD_NOTICE_EX && frame->payload_len % 4 != 0))
        return HB_EBADSIZE;

    memset(out, 0, sizeof *out);
    out->cmd = frame->cmd;
    out->timestamp = frame->timestamp;
    switch (frame->cmd) {
    case HB_CMD_LOGIN:
        out->u.login.user_id = hb_get_u32(p);
        break;
    case HB_CMD_LOGIN_REPLY:
        out->u.login_reply.user_id = hb_get_u32(p);
        out->u.login_reply.result = hb_get_u32(p + 4);
        break;
    case HB_CMD_SHAKE:
        out->u.shake.user_id = hb_get_u32(p);
        break;
    case HB_CMD_SHAKE_REPLY:
        out->u.shake_reply.user_id = hb_get_u32(p);
        out->u.shake_reply.result = hb_get_u32(p + 4);
        out->u.shake_reply.envelope_id = hb_get_u32(p + 8);
        out->u.shake_reply.amount = hb_get_u32(p + 12);
        break;
    case HB_CMD_NOTICE:
        out->u.notice.envelope_id = hb_get_u32(p);
        out->u.notice.total_amount = hb_get_u32(p + 4);
        out->u.notice.recipient_count = hb_get_u32(p + 8);
        for (size_t i = 0; i < HB_NOTICE_RECIPIENTS; i++)
            out->u.notice.user_ids[i] = hb_get_u32(p + 12 + 4 * i);
        break;
    case HB_CMD_CLAIM:
    case HB_CMD_CLAIM_EX:
        out->u.claim.user_id = hb_get_u32(p);
        out->u.claim.envelope_id = hb_get_u32(p + 4);
        break;
    case HB_CMD_CLAIM_EX_REPLY:
        out->u.claim_ex_reply.envelope_id = hb_get_u32(p);
        out->u.claim_ex_reply.amount = hb_get_u32(p + 4);
        out->u.claim_ex_reply.result = hb_get_u32(p + 8);
        break;
    case HB_CMD_NOTICE_EX:
        /* The payload's size says how many users follow. */
        out->u.notice_ex.envelope_id = hb_get_u32(p);
        out->u.notice_ex.total_amount = hb_get_u32(p + 4);
        out->u.notice_ex.count = (uint32_t)((frame->payload_len - 8) / 4);
        for (size_t i = 0; i < out->u.notice_ex.count; i++)
            out->u.notice_ex.user_ids[i] = hb_get_u32(p + 8 + 4 * i);
        break;
    case HB_CMD_CLAIM_REPLY:
        out->u.claim_reply.envelope_id = hb_get_u32(p);
        out->u.claim_reply.amount = hb_get_u32(p + 4);
        break;
    case HB_CMD_CHAT:
    case HB_CMD_CHAT_DELIVER:
        out->u.chat.user_id = hb_get_u32(p);
        out->u.chat.text_len = (uint16_t)(frame->payload_len - HB_CHAT_TEXT_OFFSET);
        out->u.chat.text = p + HB_CHAT_TEXT_OFFSET;
        break;
    case HB_CMD_CHAT_REPLY:
        out->u.chat_reply.user_id = hb_get_u32(p);
        out->u.chat_reply.result = hb_get_u32(p + 4);
        break;
    default:
        out->u.app.len = (uint16_t)frame->payload_len;
        out->u.app.payload = p;
        break;
    }
    return 0;
}

int hb_msg_encoded_len(const hb_msg_t *msg)
{
    size_t min, max;
    int rc;

    rc = hb_cmd_payload_range(msg->cmd, &min, &max);
    if (rc != 0)
        return rc;
    if (msg->cmd == HB_CMD_CHAT || msg->cmd == HB_CMD_CHAT_DELIVER) {
        if (msg->u.chat.text_len < 1 || msg->u.chat.text_len > HB_CHAT_MAX)
            return HB_EBADSIZE;
        if (msg->u.chat.text == NULL)
            return HB_EINVAL;
        return (int)(HB_FRAME_HEADER + HB_CHAT_TEXT_OFFSET + msg->u.chat.text_len);
    }
    if (msg->cmd == HB_CMD_NOTICE_EX) {
        if (msg->u.notice_ex.count < 1 || msg->u.notice_ex.count > HB_NOTICE_EX_MAX)
            return HB_EBADSIZE;
        return (int)(HB_FRAME_HEADER + 8 + 4 * msg->u.notice_ex.count);
    }
    if (HB_CMD_IS_APP(msg->cmd)) {
        if (msg->u.app.len > max)
            return HB_EBADSIZE;
        if (msg->u.app.payload == NULL && msg->u.app.len > 0)
            return HB_EINVAL;
        return (int)(HB_FRAME_HEADER + msg->u.app.len);
    }
    return (int)(HB_FRAME_HEADER + min);
}

int hb_msg_encode(const hb_msg_t *msg, uint8_t *buf, size_t cap)
{
    uint8_t *p = buf + HB_FRAME_HEADER;
    int len;

    len = hb_msg_encoded_len(msg);
    if (len < 0)
        return len;
    if (cap < (size_t)len)
        return HB_ENOBUFS;

    hb_put_u16(buf, (uint16_t)len);
    hb_put_u16(buf + 2, msg->cmd);
    hb_put_u64(buf + 4, msg->timestamp);
    switch (msg->cmd) {
    case HB_CMD_LOGIN:
        hb_put_u32(p, msg->u.login.user_id);
        break;
    case HB_CMD_LOGIN_REPLY:
        hb_put_u32(p, msg->u.login_reply.user_id);
        hb_put_u32(p + 4, msg->u.login_reply.result);
        break;
    case HB_CMD_SHAKE:
        hb_put_u32(p, msg->u.shake.user_id);
        break;
    case HB_CMD_SHAKE_REPLY:
        hb_put_u32(p, msg->u.shake_reply.user_id);
        hb_put_u32(p + 4, msg->u.shake_reply.result);
        hb_put_u32(p + 8, msg->u.shake_reply.envelope_id);
        hb_put_u32(p + 12, msg->u.shake_reply.amount);
        break;
    case HB_CMD_NOTICE:
        hb_put_u32(p, msg->u.notice.envelope_id);
        hb_put_u32(p + 4, msg->u.notice.total_amount);
        hb_put_u32(p + 8, msg->u.notice.recipient_count);
        for (size_t i = 0; i < HB_NOTICE_RECIPIENTS; i++)
            hb_put_u32(p + 12 + 4 * i, msg->u.notice.user_ids[i]);
        break;
    case HB_CMD_CLAIM:
    case HB_CMD_CLAIM_EX:
        hb_put_u32(p, msg->u.claim.user_id);
        hb_put_u32(p + 4, msg->u.claim.envelope_id);
        break;
    case HB_CMD_CLAIM_EX_REPLY:
        hb_put_u32(p, msg->u.claim_ex_reply.envelope_id);
        hb_put_u32(p + 4, msg->u.claim_ex_reply.amount);
        hb_put_u32(p + 8, msg->u.claim_ex_reply.result);
        break;
    case HB_CMD_NOTICE_EX:
        hb_put_u32(p, msg->u.notice_ex.envelope_id);
        hb_put_u32(p + 4, msg->u.notice_ex.total_amount);
        for (size_t i = 0; i < msg->u.notice_ex.count; i++)
            hb_put_u32(p + 8 + 4 * i, msg->u.notice_ex.user_ids[i]);
        break;
    case HB_CMD_CLAIM_REPLY:
        hb_put_u32(p, msg->u.claim_reply.envelope_id);
        hb_put_u32(p + 4, msg->u.claim_reply.amount);
        break;
    case HB_CMD_CHAT:
    case HB_CMD_CHAT_DELIVER:
        hb_put_u32(p, msg->u.chat.user_id);
        memcpy(p + HB_CHAT_TEXT_OFFSET, msg->u.chat.text, msg->u.chat.text_len);
        break;
    case HB_CMD_CHAT_REPLY:
        hb_put_u32(p, msg->u.chat_reply.user_id);
        hb_put_u32(p + 4, msg->u.chat_reply.result);
        break;
    default:
        if (msg->u.app.len > 0)
            memcpy(p, msg->u.app.payload, msg->u.app.len);
        break;
    }
    return len;
}

void hb_framer_init(hb_framer_t *fr)
{
    memset(fr, 0, sizeof *fr);
}

/* Drop the pending partial frame, if any, and its heap buffer. */
static void framer_release(hb_framer_t *fr)
{
    free(fr->big);
    fr->big = NULL;
    fr->have = 0;
    fr->need = 0;
}

/* Enter the failed state: nothing is held any more, only the error. */
static int framer_fail(hb_framer_t *fr, int err)
{
    framer_release(fr);
    fr->error = err;
    return err;
}

/* Append bytes from *data to the pending frame, up to its end, advancing *data and *len.
 * Returns 1 with *out filled when the frame is complete (its payload lives in the framer), 0
 * when all of *data was taken and the frame is still incomplete, or a negative error. */
static int framer_append(hb_framer_t *fr, const uint8_t **data, size_t *len, hb_frame_t *out)
{
    uint8_t *buf;
    size_t take;
    int rc;

    if (fr->need == 0) {
        /* The length and cmd are not known yet: gather them in small[]. */
        take = HB_FRAME_PREFIX - fr->have;
        if (take > *len)
            take = *len;
        memcpy(fr->small + fr->have, *data, take);
        fr->have = (uint16_t)(fr->have + take);
        *data += take;
        *len -= take;
        rc = hb_frame_parse(fr->small, fr->have, NULL);
        if (rc < 0)
            return rc;
        if (fr->have < HB_FRAME_PREFIX)
            return 0;
        fr->need = hb_get_u16(fr->small);
        if (fr->need > HB_FRAMER_INLINE) {
            fr->big = malloc(fr->need);
            if (fr->big == NULL)
                return HB_ENOMEM;
            memcpy(fr->big, fr->small, fr->have);
        }
    }

    buf = fr->big != NULL ? fr->big : fr->small;
    take = (size_t)(fr->need - fr->have);
    if (take > *len)
        take = *len;
    memcpy(buf + fr->have, *data, take);
    fr->have = (uint16_t)(fr->have + take);
    *data += take;
    *len -= take;
    if (fr->have < fr->need)
        return 0;
    rc = hb_frame_parse(buf, fr->have, out);
    return rc < 0 ? rc : 1;
}

int hb_framer_feed(hb_framer_t *fr, const uint8_t *data, size_t len, hb_framer_cb cb, void *arg)
{
    hb_frame_t frame;
    int rc;

    if (fr->error != 0)
        return fr->error;
    if (cb == NULL)
        return HB_EINVAL;

    while (len > 0) {
        if (fr->have == 0) {
            /* At a frame boundary: yield whole frames straight from the caller's data. */
            rc = hb_frame_parse(data, len, &frame);
            if (rc < 0)
                return framer_fail(fr, rc);
            if (rc > 0) {
                data += rc;
                len -= (size_t)rc;
                rc = cb(arg, &frame);
                if (rc < 0)
                    return framer_fail(fr, rc);
                continue;
            }
            /* The rest of data is the start of a frame: hold it. */
        }
        rc = framer_append(fr, &data, &len, &frame);
        if (rc < 0)
            return framer_fail(fr, rc);
        if (rc == 0)
            return 0; /* everything taken, the frame goes on in the next piece */
        rc = cb(arg, &frame);
        framer_release(fr);
        if (rc < 0)
            return framer_fail(fr, rc);
    }
    return 0;
}

size_t hb_framer_pending(const hb_framer_t *fr)
{
    return fr->have;
}

void hb_framer_reset(hb_framer_t *fr)
{
    framer_release(fr);
    fr->error = 0;
}
