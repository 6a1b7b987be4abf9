/* What every store backend shares (hb_store.h): telling a new send-envelope's recipients. */
#include <string.h>

#include "hb_store.h"
#include "hongbao/book.h"

void hb__store_announce(hb_setgroup_t *g, hb_set_t *from, const hb_sendenv_t *e)
{
    uint64_t now_s = hb__now_s();
    /* Three recipients: the reference's notice; any other count: the extension's. */
    hb_msg_t n = {.timestamp = now_s};
    if (e->count == HB_NOTICE_RECIPIENTS) {
        n.cmd = HB_CMD_NOTICE;
        n.u.notice.envelope_id = e->id;
        n.u.notice.total_amount = e->total;
        n.u.notice.recipient_count = HB_NOTICE_RECIPIENTS;
        memcpy(n.u.notice.user_ids, e->recipients, sizeof n.u.notice.user_ids);
    } else {
        n.cmd = HB_CMD_NOTICE_EX;
        n.u.notice_ex.envelope_id = e->id;
        n.u.notice_ex.total_amount = e->total;
        n.u.notice_ex.count = e->count;
        memcpy(n.u.notice_ex.user_ids, e->recipients, sizeof n.u.notice_ex.user_ids);
    }
    uint8_t frame[HB_FRAME_HEADER + 8 + 4 * HB_SEND_MAX_RECIPIENTS];
    int len = hb_msg_encode(&n, frame, sizeof frame);
    for (unsigned i = 0; i < e->count && len > 0; i++) {
        if (hb__set_send_to_user(g, from, e->recipients[i], frame, (size_t)len) == 0)
            continue;
        if (from != NULL)
            hb__set_count(from, HB_CTR_X_NOTICE_OFFLINE, now_s, 1);
        else
            hb__group_count_control(g, HB_CTR_X_NOTICE_OFFLINE, 1);
    }
}
