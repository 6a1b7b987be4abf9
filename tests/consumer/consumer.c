/* A server program written as a consumer writes one: it checks the version it linked, runs a server
 * on libuv's default loop with one shake envelope of its own amount queued, and serves a login and
 * a shake to a user of its own (a thread with a plain socket) before closing down. Exits 0 when
 * the user got that envelope and the loop ended with nothing left open. */
#include <arpa/inet.h>
#include <hongbao.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define AMOUNT 123

static hb_server_t server;
static uv_async_t done;
static int user_result = -1; /* the shake reply's result, or -1 */
static uint32_t user_amount;

/* Read one whole frame of `want` bytes. */
static int read_frame(int fd, uint8_t *buf, size_t want, hb_msg_t *m)
{
    size_t got = 0;
    while (got < want) {
        ssize_t n = recv(fd, buf + got, want - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    hb_frame_t f;
    return hb_frame_parse(buf, want, &f) == (int)want && hb_msg_decode(&f, m) == 0 ? 0 : -1;
}

static int send_msg(int fd, const hb_msg_t *m)
{
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(m, buf, sizeof buf);
    return n > 0 && send(fd, buf, (size_t)n, 0) == n ? 0 : -1;
}

/* The user: log in as 7, shake once. */
static void user_thread(void *arg)
{
    (void)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint8_t buf[HB_FRAME_MAX];
    hb_msg_t m = {.cmd = HB_CMD_LOGIN, .u.login = {7}};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && send_msg(fd, &m) == 0 &&
        read_frame(fd, buf, 20, &m) == 0 && m.cmd == HB_CMD_LOGIN_REPLY &&
        m.u.login_reply.result == 0) {
        m = (hb_msg_t){.cmd = HB_CMD_SHAKE, .u.shake = {7}};
        if (send_msg(fd, &m) == 0 && read_frame(fd, buf, 28, &m) == 0 &&
            m.cmd == HB_CMD_SHAKE_REPLY) {
            user_result = (int)m.u.shake_reply.result;
            user_amount = m.u.shake_reply.amount;
        }
    }
    if (fd >= 0)
        close(fd);
    uv_async_send(&done);
}

static void on_done(uv_async_t *a)
{
    uv_close((uv_handle_t *)a, NULL);
    hb_server_close(&server, NULL);
}

int main(void)
{
    if (hb_version() != HB_VERSION_HEX) {
        fprintf(stderr, "consumer: linked %s, compiled against %s\n", hb_version_string(),
                HB_VERSION_STRING);
        return 1;
    }
    uv_loop_t *loop = uv_default_loop();
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.listen_port = 0;
    o.threads = 1;
    int r = hb_server_init(loop, &server, &o);
    if (r == 0 && (r = hb_server_start(&server)) != 0)
        hb_server_close(&server, NULL);
    if (r != 0) {
        fprintf(stderr, "consumer: %s\n", hb_server_last_error(&server));
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    const uint32_t amounts[1] = {AMOUNT};
    r = hb_server_put_shake_envelopes(&server, amounts, 1, NULL);
    uv_async_init(loop, &done, on_done);
    uv_thread_t user;
    if (r != 0 || uv_thread_create(&user, user_thread, NULL) != 0) {
        fprintf(stderr, "consumer: %s\n", hb_strerror(r));
        uv_async_send(&done);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    uv_thread_join(&user);
    if (uv_loop_close(loop) != 0) {
        fprintf(stderr, "consumer: handles left open\n");
        return 1;
    }
    if (user_result != HB_SHAKE_GOT || user_amount != AMOUNT) {
        fprintf(stderr, "consumer: the user's shake got result %d, amount %u\n", user_result,
                (unsigned)user_amount);
        return 1;
    }
    printf("consumer: libhongbao %s served a login and a shake of %u\n", hb_version_string(),
           (unsigned)user_amount);
    return 0;
}
