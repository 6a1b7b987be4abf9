/* What every store backend shares (hb_store.h): a new send-envelope's shares, and telling its
 * recipients. */
#include <string.h>

#include "hb_store.h"
#include "hongbao/book.h"
#include "hongbao/envelope.h"

int hb__store_new_envelope(const uint32_t *recipients, unsigned count, uint32_t total,
                           hb_rand_t *rng, hb_sendenv_t *e)
{
    memset(e, 0, sizeof *e);
    if (recipients == NULL || count < 1 || count > HB_SEND_MAX_RECIPIENTS)
        return HB_EINVAL;
    e->count = (uint8_t)count;
    e->total = total;
    memcpy(e->recipients, recipients, count * sizeof *recipients);
    if (hb_envelope_split(total, count, rng, e->shares) != 0 || hb_sendenv_check(e) != NULL)
        return HB_EINVAL; /* total < count, or recipients not distinct */
    e->created_s = hb__now_s();
    return 0;
}

int hb__store_notice_frame(const hb_sendenv_t *e, uint8_t *frame, size_t cap)
{
    /* Three recipients: the reference's notice; any other count: the extension's. */
    hb_msg_t n = {.timestamp = hb__now_s()};
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
    return hb_msg_encode(&n, frame, cap);
}

unsigned hb__store_announce(hb_setgroup_t *g, hb_set_t *from, const hb_sendenv_t *e,
                            const uint8_t *frame, size_t len)
{
    unsigned away = 0;
    for (unsigned i = 0; i < e->count; i++)
        if (hb__set_send_to_user(g, from, e->recipients[i], frame, len) != 0)
            away |= 1u << i;
    return away;
}

void hb__store_count_offline(hb_setgroup_t *g, hb_set_t *from, unsigned n)
{
    if (n == 0)
        return;
    if (from != NULL)
        hb__set_count(from, HB_CTR_X_NOTICE_OFFLINE, hb__now_s(), n);
    else
        hb__group_count_control(g, HB_CTR_X_NOTICE_OFFLINE, n);
}
