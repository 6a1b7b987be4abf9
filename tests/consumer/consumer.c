/* A tiny program that uses libhongbao as a consumer would: checks the version it linked and
 * round-trips one shake reply through the encoder and parser. */
#include <hongbao.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (hb_version() != HB_VERSION_HEX) {
        fprintf(stderr, "consumer: linked %s, compiled against %s\n", hb_version_string(),
                HB_VERSION_STRING);
        return 1;
    }
    hb_msg_t m;
    memset(&m, 0, sizeof m);
    m.cmd = HB_CMD_SHAKE_REPLY;
    m.timestamp = 1700000000;
    m.u.shake_reply.result = HB_SHAKE_GOT;
    m.u.shake_reply.envelope_id = HB_SHAKE_ENVELOPE_ID_BASE;
    m.u.shake_reply.amount = 42;
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(&m, buf, sizeof buf);
    hb_frame_t f;
    hb_msg_t back;
    if (n != 28 || hb_frame_parse(buf, (size_t)n, &f) != n || hb_msg_decode(&f, &back) != 0 ||
        back.u.shake_reply.amount != 42) {
        fprintf(stderr, "consumer: round trip failed (%d: %s)\n", n, hb_strerror(n < 0 ? n : 0));
        return 1;
    }
    printf("consumer: libhongbao %s OK\n", hb_version_string());
    return 0;
}
