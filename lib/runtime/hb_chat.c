/* The built-in chat (HB_CMD_CHAT, our first extension): a frame handler written against the public
 * API alone, as any consumer's own command would be. It routes the text to the recipient with
 * hb_server_send_to_user and answers the sender with HB_CMD_CHAT_REPLY. */
#include "hb_chat.h"

#include <time.h>

int hb__chat_handler(hb_conn_t *c, const hb_frame_t *f, void *arg)
{
    (void)arg;
    hb_msg_t m;
    int r = hb_msg_decode(f, &m);
    if (r != 0)
        return r;
    uint64_t now_s = (uint64_t)time(NULL);
    uint32_t to = m.u.chat.user_id;
    hb_msg_t d = {.cmd = HB_CMD_CHAT_DELIVER, .timestamp = now_s};
    d.u.chat.user_id = hb_conn_user(c);
    d.u.chat.text = m.u.chat.text;
    d.u.chat.text_len = m.u.chat.text_len;
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(&d, buf, sizeof buf);
    if (n < 0)
        return n;
    r = hb_server_send_to_user(hb_conn_server(c), to, buf, (size_t)n);
    hb_msg_t reply = {.cmd = HB_CMD_CHAT_REPLY, .timestamp = now_s};
    reply.u.chat_reply.user_id = to;
    reply.u.chat_reply.result = r == 0             ? HB_CHAT_DELIVERED
                                : r == HB_EOFFLINE ? HB_CHAT_OFFLINE
                                                   : HB_CHAT_REJECTED;
    hb_conn_count(c, r == 0 ? HB_CTR_X_CHAT : HB_CTR_X_CHAT_FAILED, 1);
    n = hb_msg_encode(&reply, buf, sizeof buf);
    return n < 0 ? n : hb_conn_send(c, buf, (size_t)n);
}
