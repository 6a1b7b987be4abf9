/* The server tests' harness: a server on an ephemeral loopback port, its control loop in a thread
 * of the test, and users as plain blocking sockets. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

#include "server_harness.h"

/* ---- harness: a server whose control loop runs in its own thread
 * ---------------------------------- */

harness_t H;

void on_call(uv_async_t *a)
{
    (void)a;
    uv_mutex_lock(&H.lock);
    if (H.fn != NULL) {
        H.fn(H.arg);
        H.fn = NULL;
        H.done = 1;
        uv_cond_signal(&H.cond);
    }
    uv_mutex_unlock(&H.lock);
}

/* Run fn(arg) on the control loop's thread and wait for it. */
void on_loop(void (*fn)(void *), void *arg)
{
    uv_mutex_lock(&H.lock);
    H.fn = fn;
    H.arg = arg;
    H.done = 0;
    uv_async_send(&H.call_async);
    while (!H.done)
        uv_cond_wait(&H.cond, &H.lock);
    uv_mutex_unlock(&H.lock);
}

void loop_thread(void *arg)
{
    (void)arg;
    uv_run(&H.loop, UV_RUN_DEFAULT);
}

void start_server(const hb_server_options_t *extra)
{
    start_server_with(extra, NULL, NULL);
}

void start_server_with(const hb_server_options_t *extra, void (*prepare)(hb_server_t *, void *),
                       void *arg)
{
    memset(&H, 0, sizeof H);
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    ck_assert_int_eq(uv_mutex_init(&H.lock), 0);
    ck_assert_int_eq(uv_cond_init(&H.cond), 0);
    ck_assert_int_eq(uv_async_init(&H.loop, &H.call_async, on_call), 0);
    hb_server_options_t o;
    if (extra != NULL)
        o = *extra;
    else
        hb_server_options_default(&o);
    o.listen_port = 0;
    if (o.threads == 0)
        o.threads = 2;
    if (o.sets == 0)
        o.sets = 4;
    o.seed = 42;
    ck_assert_int_eq(hb_server_init(&H.loop, &H.server, &o), 0);
    if (prepare != NULL)
        prepare(&H.server, arg);
    ck_assert_int_eq(hb_server_start(&H.server), 0);
    ck_assert_int_gt(H.server.port, 0);
    ck_assert_int_eq(uv_thread_create(&H.thread, loop_thread, NULL), 0);
}

void on_closed(hb_server_t *s)
{
    (void)s;
    H.closed = 1;
    uv_close((uv_handle_t *)&H.call_async, NULL);
}

void do_close(void *arg)
{
    (void)arg;
    hb_server_close(&H.server, on_closed);
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    ck_abort_msg("handle of type %s left open", uv_handle_type_name(h->type));
}

void stop_server(void)
{
    on_loop(do_close, NULL);
    uv_thread_join(&H.thread);
    ck_assert_int_eq(H.closed, 1);
    uv_walk(&H.loop, walk_cb, NULL);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
    uv_mutex_destroy(&H.lock);
    uv_cond_destroy(&H.cond);
}

/* ---- users: blocking sockets
 * --------------------------------------------------------------------- */

int user_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)H.server.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        ck_assert_int_gt(n, 0);
        p += n;
        len -= (size_t)n;
    }
}

void send_msg(int fd, const hb_msg_t *m)
{
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(m, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    send_all(fd, buf, (size_t)n);
}

/* Read exactly len bytes within 5 s; returns 0, or -1 on EOF/error/timeout. */
int recv_exact(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 5000) != 1)
            return -1;
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

/* Receive one whole frame and decode it. */
void recv_msg(int fd, hb_msg_t *m, uint8_t *raw)
{
    static uint8_t local[HB_FRAME_MAX];
    uint8_t *buf = raw != NULL ? raw : local;
    ck_assert_int_eq(recv_exact(fd, buf, 2), 0);
    uint16_t len = hb_get_u16(buf);
    ck_assert_uint_ge(len, HB_FRAME_HEADER);
    ck_assert_uint_le(len, HB_FRAME_MAX);
    ck_assert_int_eq(recv_exact(fd, buf + 2, len - 2u), 0);
    hb_frame_t f;
    ck_assert_int_eq(hb_frame_parse(buf, len, &f), (int)len);
    ck_assert_int_eq(hb_msg_decode(&f, m), 0);
}

/* The peer closes: recv returns 0 (or a reset) within 5 s, with no frame in between. */
int closed_by_peer(int fd)
{
    uint8_t b[64];
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 5000) != 1)
            return 0;
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
        if (n < 0)
            return 0;
    }
}

/* Connect and send user's login: the socket, and its reply in *r. */
static int try_login(uint32_t user, hb_msg_t *r)
{
    int fd = user_connect();
    hb_msg_t m = {.cmd = HB_CMD_LOGIN, .timestamp = (uint64_t)time(NULL)};
    m.u.login.user_id = user;
    send_msg(fd, &m);
    recv_msg(fd, r, NULL);
    ck_assert_uint_eq(r->cmd, HB_CMD_LOGIN_REPLY);
    ck_assert_uint_eq(r->u.login_reply.user_id, user);
    return fd;
}

int login(uint32_t user)
{
    hb_msg_t r;
    int fd = try_login(user, &r);
    ck_assert_uint_eq(r.u.login_reply.result, 0);
    return fd;
}

void login_refused(uint32_t user)
{
    hb_msg_t r;
    int fd = try_login(user, &r);
    ck_assert_uint_eq(r.u.login_reply.result, 1);
    ck_assert(closed_by_peer(fd));
    close(fd);
}

hb_msg_t shake(int fd, uint32_t user)
{
    hb_msg_t m = {.cmd = HB_CMD_SHAKE, .timestamp = (uint64_t)time(NULL)};
    m.u.shake.user_id = user;
    send_msg(fd, &m);
    hb_msg_t r;
    recv_msg(fd, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_SHAKE_REPLY);
    return r;
}

/* n shakes of user in one write. */
void send_shakes(int fd, uint32_t user, int n)
{
    uint8_t buf[64 * 16];
    ck_assert_int_le(n, 64);
    hb_msg_t m = {.cmd = HB_CMD_SHAKE};
    m.u.shake.user_id = user;
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(hb_msg_encode(&m, buf + 16 * i, 16), 16);
    send_all(fd, buf, 16 * (size_t)n);
}

hb_msg_t claim(int fd, uint32_t payload_user, uint32_t envelope)
{
    hb_msg_t m = {.cmd = HB_CMD_CLAIM, .timestamp = (uint64_t)time(NULL)};
    m.u.claim.user_id = payload_user;
    m.u.claim.envelope_id = envelope;
    send_msg(fd, &m);
    hb_msg_t r;
    recv_msg(fd, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_CLAIM_REPLY);
    ck_assert_uint_eq(r.u.claim_reply.envelope_id, envelope);
    return r;
}

/* Sum of a counter slot over the last few seconds' cumulative totals. */
uint64_t counter(unsigned slot)
{
    hb_report_t rep;
    hb_counters_snapshot(hb_server_counters(&H.server), (uint64_t)time(NULL), &rep);
    return rep.cumulative[slot];
}

/* ---- the control routes over HTTP ---- */

static hb_http_server_t http;
static int http_port;

static void do_mount(void *arg)
{
    (void)arg;
    ck_assert_int_eq(hb_http_server_init(&H.loop, &http, NULL), 0);
    ck_assert_int_eq(hb_http_server_listen(&http, "127.0.0.1", 0), 0);
    ck_assert_int_eq(hb_server_mount_http(&H.server, &http), 0);
    http_port = hb_http_server_port(&http);
}

static void do_unmount(void *arg)
{
    (void)arg;
    hb_http_server_close(&http, NULL);
}

void http_mount(void)
{
    on_loop(do_mount, NULL);
}

void http_unmount(void)
{
    on_loop(do_unmount, NULL);
}

int http_get(const char *target, char *body, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)http_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     target);
    send_all(fd, req, (size_t)n);
    static char resp[65536];
    size_t got = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ck_assert_int_eq(poll(&p, 1, 5000), 1);
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    ck_assert_int_eq(sscanf(resp, "HTTP/1.1 %d", &status), 1);
    const char *b = strstr(resp, "\r\n\r\n");
    ck_assert_ptr_nonnull(b);
    snprintf(body, cap, "%s", b + 4);
    return status;
}
