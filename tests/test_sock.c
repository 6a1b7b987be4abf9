/* Unit tests for the socket layer (lib/hb_sock.c): echo through a listener and a connect, a peer
 * that resets or stops reading while replies are queued (no SIGPIPE, a clear error, the bound),
 * the lingering close that delivers the last bytes even with unread input, and a refused connect.
 * SIGPIPE is left at its default here, so a write that raised it would kill the test. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "expect.h"
#include "hb_sock.h"

typedef struct echo {
    uv_loop_t loop;
    hb_listener_t listener;
    hb_sock_t server_side;
    int accepted;
    int server_closed;
    int server_read_err;
    uint8_t rbuf[4096];
    /* the client */
    hb_sock_t client;
    int connect_status;
    int connected;
    int client_closed;
    size_t got;
    uint8_t got_bytes[1 << 20];
    int client_eof;
    /* progress and drained as the server side saw them */
    int progress_calls;
    int progress_bad; /* a call with nothing queued, or with no less queued than the last */
    size_t last_queued;
    int drained_calls;
} echo_t;

static echo_t *E(void *p)
{
    return (echo_t *)p;
}

static void srv_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    echo_t *e = E(s->poll.data);
    *buf = uv_buf_init((char *)e->rbuf, sizeof e->rbuf);
}

static void srv_read(hb_sock_t *s, ssize_t n, const uv_buf_t *buf)
{
    echo_t *e = E(s->poll.data);
    if (n < 0) {
        e->server_read_err = (int)n;
        hb__sock_close(s);
        return;
    }
    int r = hb__sock_write(s, buf->base, (size_t)n);
    if (r != 0)
        hb__sock_close(s);
}

static void srv_closed(hb_sock_t *s)
{
    E(s->poll.data)->server_closed++;
}

static const hb_sock_ops_t srv_ops = {.alloc = srv_alloc, .read = srv_read, .closed = srv_closed};

static void on_accept(hb_listener_t *l, int fd)
{
    echo_t *e = E(l->poll.data);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(e->accepted, 0);
    e->accepted = 1;
    ck_assert_int_eq(hb__sock_open(&e->loop, &e->server_side, fd, &srv_ops, 0, 1), 0);
    e->server_side.poll.data = e;
    ck_assert_int_eq(hb__sock_read_start(&e->server_side), 0);
    hb__listener_close(l, NULL);
}

static void cli_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    echo_t *e = E(s->poll.data);
    *buf = uv_buf_init((char *)e->got_bytes + e->got, (unsigned)(sizeof e->got_bytes - e->got));
}

static void cli_read(hb_sock_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    echo_t *e = E(s->poll.data);
    if (n == UV_EOF) {
        e->client_eof = 1;
        hb__sock_close(s);
        return;
    }
    ck_assert_int_gt(n, 0);
    e->got += (size_t)n;
}

static void cli_connected(hb_sock_t *s, int status)
{
    echo_t *e = E(s->poll.data);
    e->connected = 1;
    e->connect_status = status;
    if (status == 0)
        ck_assert_int_eq(hb__sock_read_start(s), 0);
    else
        hb__sock_close(s);
}

static void cli_closed(hb_sock_t *s)
{
    E(s->poll.data)->client_closed++;
}

static const hb_sock_ops_t cli_ops = {
    .alloc = cli_alloc, .read = cli_read, .connected = cli_connected, .closed = cli_closed};

/* A listener on a free loopback port; returns the port. */
static int listen_loopback(echo_t *e)
{
    int fd, port;
    ck_assert_int_eq(hb__sock_listen_fd("127.0.0.1", 0, 16, 0, &fd, &port), 0);
    e->listener.poll.data = e;
    ck_assert_int_eq(hb__listener_start(&e->loop, &e->listener, fd, 1, on_accept), 0);
    ck_assert_ptr_eq(e->listener.poll.data, e);
    return port;
}

static void connect_client(echo_t *e, int port)
{
    struct sockaddr_storage to;
    ck_assert_int_eq(hb__sock_addr("127.0.0.1", port, &to), 0);
    ck_assert_int_eq(
        hb__sock_connect(&e->loop, &e->client, &cli_ops, (struct sockaddr *)&to, NULL, 0), 0);
    e->client.poll.data = e;
}

static void run_until(echo_t *e, int *flag)
{
    for (int i = 0; i < 100000 && !*flag; i++)
        uv_run(&e->loop, UV_RUN_ONCE);
    ck_assert_int_ne(*flag, 0);
}

static void loop_done(echo_t *e)
{
    uv_run(&e->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_alive(&e->loop), 0);
    ck_assert_int_eq(uv_loop_close(&e->loop), 0);
}

START_TEST(test_echo)
{
    signal(SIGPIPE, SIG_DFL);
    echo_t *e = calloc(1, sizeof *e);
    ck_assert_int_eq(uv_loop_init(&e->loop), 0);
    int port = listen_loopback(e);
    connect_client(e, port);
    run_until(e, &e->connected);
    ck_assert_int_eq(e->connect_status, 0);
    static uint8_t msg[40000];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 7);
    ck_assert_int_eq(hb__sock_write(&e->client, msg, sizeof msg), 0);
    for (int i = 0; i < 100000 && e->got < sizeof msg; i++)
        uv_run(&e->loop, UV_RUN_ONCE);
    ck_assert_uint_eq(e->got, sizeof msg);
    ck_assert_mem_eq(e->got_bytes, msg, sizeof msg);
    /* The graceful end: the server sees EOF, closes; the client sees EOF. */
    hb__sock_end(&e->client);
    run_until(e, &e->server_closed);
    run_until(e, &e->client_closed);
    ck_assert_int_eq(e->server_read_err, UV_EOF);
    loop_done(e);
    free(e);
}
END_TEST

/* The server writes to a peer that has reset: the write fails with an error, no signal. */
START_TEST(test_write_to_a_reset_peer)
{
    signal(SIGPIPE, SIG_DFL);
    echo_t *e = calloc(1, sizeof *e);
    ck_assert_int_eq(uv_loop_init(&e->loop), 0);
    int port = listen_loopback(e);
    /* A raw client: connect, send, then reset (SO_LINGER 0) without reading. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage to;
    hb__sock_addr("127.0.0.1", port, &to);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof(struct sockaddr_in)), 0);
    run_until(e, &e->accepted);
    struct linger lg = {1, 0};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
    /* Keep writing until the kernel reports the reset; each write is a potential SIGPIPE. */
    static uint8_t chunk[8192];
    int r = 0;
    for (int i = 0; i < 1000 && r == 0; i++)
        r = hb__sock_write(&e->server_side, chunk, sizeof chunk);
    ck_assert_int_lt(r, 0);
    ck_assert(r == UV_EPIPE || r == UV_ECONNRESET);
    hb__sock_close(&e->server_side);
    run_until(e, &e->server_closed);
    loop_done(e);
    free(e);
}
END_TEST

static void write_error_close(hb_sock_t *s, int err)
{
    echo_t *e = E(s->poll.data);
    e->server_read_err = err;
    hb__sock_close(s);
}

static const hb_sock_ops_t srv_ops_we = {
    .alloc = srv_alloc, .read = srv_read, .write_error = write_error_close, .closed = srv_closed};

/* A peer that stops reading: the queue grows to its bound, then writes fail with UV_ENOBUFS; when
 * the peer then resets, the queued bytes' write fails through write_error, never a signal. */
START_TEST(test_queue_bound_then_reset)
{
    signal(SIGPIPE, SIG_DFL);
    echo_t *e = calloc(1, sizeof *e);
    ck_assert_int_eq(uv_loop_init(&e->loop), 0);
    int port = listen_loopback(e);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_storage to;
    hb__sock_addr("127.0.0.1", port, &to);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof(struct sockaddr_in)), 0);
    run_until(e, &e->accepted);
    /* Re-open the accepted side with a small bound and write_error set. */
    e->server_side.ops = &srv_ops_we;
    e->server_side.max_out = 64 * 1024;
    static uint8_t chunk[8192];
    int r = 0;
    size_t queued_max = 0;
    for (int i = 0; i < 10000 && r == 0; i++) {
        r = hb__sock_write(&e->server_side, chunk, sizeof chunk);
        if (hb__sock_queued(&e->server_side) > queued_max)
            queued_max = hb__sock_queued(&e->server_side);
    }
    ck_assert_int_eq(r, UV_ENOBUFS);
    ck_assert_uint_le(queued_max, 64 * 1024);
    ck_assert_uint_gt(queued_max, 0);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    run_until(e, &e->server_closed);
    ck_assert(e->server_read_err == UV_ECONNRESET || e->server_read_err == UV_EPIPE);
    loop_done(e);
    free(e);
}
END_TEST

/* The last reply reaches a peer that had sent more than we read: end() shuts the sending side
 * first and drains input, so the close is not a reset that destroys the reply. */
START_TEST(test_end_delivers_despite_unread_input)
{
    signal(SIGPIPE, SIG_DFL);
    echo_t *e = calloc(1, sizeof *e);
    ck_assert_int_eq(uv_loop_init(&e->loop), 0);
    int port = listen_loopback(e);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage to;
    hb__sock_addr("127.0.0.1", port, &to);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof(struct sockaddr_in)), 0);
    run_until(e, &e->accepted);
    hb__sock_read_stop(&e->server_side);
    static uint8_t junk[10000];
    ck_assert_int_eq(send(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
    static const char reply[] = "the last reply";
    ck_assert_int_eq(hb__sock_write(&e->server_side, reply, sizeof reply), 0);
    hb__sock_end(&e->server_side);
    for (int i = 0; i < 5; i++)
        uv_run(&e->loop, UV_RUN_NOWAIT);
    char got[64];
    ssize_t n = recv(fd, got, sizeof got, 0);
    ck_assert_int_eq(n, (ssize_t)sizeof reply);
    ck_assert_mem_eq(got, reply, sizeof reply);
    ck_assert_int_eq(recv(fd, got, sizeof got, 0), 0); /* EOF, not ECONNRESET */
    close(fd);
    run_until(e, &e->server_closed);
    loop_done(e);
    free(e);
}
END_TEST

static void srv_progress(hb_sock_t *s)
{
    echo_t *e = E(s->poll.data);
    size_t q = hb__sock_queued(s);
    if (q == 0 || q >= e->last_queued)
        e->progress_bad++;
    e->last_queued = q;
    e->progress_calls++;
}

static void srv_drained(hb_sock_t *s)
{
    echo_t *e = E(s->poll.data);
    ck_assert_uint_eq(hb__sock_queued(s), 0);
    e->drained_calls++;
}

static const hb_sock_ops_t srv_ops_progress = {.alloc = srv_alloc,
                                               .read = srv_read,
                                               .progress = srv_progress,
                                               .drained = srv_drained,
                                               .closed = srv_closed};

/* A queue that drains in several steps reports each step through progress (less queued each
 * time, never 0), then drained once. */
START_TEST(test_progress_then_drained)
{
    signal(SIGPIPE, SIG_DFL);
    echo_t *e = calloc(1, sizeof *e);
    ck_assert_int_eq(uv_loop_init(&e->loop), 0);
    int port = listen_loopback(e);
    connect_client(e, port);
    run_until(e, &e->connected);
    run_until(e, &e->accepted);
    e->server_side.ops = &srv_ops_progress;
    e->server_side.max_out = 1 << 20;
    int small = 4096;
    setsockopt(e->server_side.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    static uint8_t msg[1000000]; /* far more than the client's window */
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)(i * 13);
    ck_assert_int_eq(hb__sock_write(&e->server_side, msg, sizeof msg), 0);
    e->last_queued = hb__sock_queued(&e->server_side);
    ck_assert_uint_gt(e->last_queued, 0);
    for (int i = 0; i < 100000 && e->got < sizeof msg; i++)
        uv_run(&e->loop, UV_RUN_ONCE);
    ck_assert_uint_eq(e->got, sizeof msg);
    ck_assert_mem_eq(e->got_bytes, msg, sizeof msg);
    run_until(e, &e->drained_calls);
    ck_assert_int_gt(e->progress_calls, 0);
    ck_assert_int_eq(e->progress_bad, 0);
    ck_assert_int_eq(e->drained_calls, 1);
    hb__sock_close(&e->client);
    hb__sock_close(&e->server_side);
    run_until(e, &e->client_closed);
    run_until(e, &e->server_closed);
    loop_done(e);
    free(e);
}
END_TEST

START_TEST(test_connect_refused)
{
    echo_t *e = calloc(1, sizeof *e);
    ck_assert_int_eq(uv_loop_init(&e->loop), 0);
    /* A port nobody listens on: bind one, note it, close it. */
    int fd, port;
    ck_assert_int_eq(hb__sock_listen_fd("127.0.0.1", 0, 1, 0, &fd, &port), 0);
    close(fd);
    connect_client(e, port);
    run_until(e, &e->connected);
    ck_assert_int_eq(e->connect_status, UV_ECONNREFUSED);
    run_until(e, &e->client_closed);
    loop_done(e);
    free(e);
}
END_TEST

START_TEST(test_addresses_and_exclusive_port)
{
    struct sockaddr_storage ss;
    ck_assert_int_eq(hb__sock_addr("127.0.0.1", 80, &ss), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET);
    ck_assert_int_eq(hb__sock_addr("::1", 80, &ss), 0);
    ck_assert_int_eq(ss.ss_family, AF_INET6);
    ck_assert_int_eq(hb__sock_addr("localhost", 80, &ss), UV_EINVAL);
    ck_assert_int_eq(hb__sock_addr("127.0.0.1", 70000, &ss), UV_EINVAL);
    /* Without reuse_port a second bind of the same port fails; with it on both, it succeeds. */
    int a, b, port;
    ck_assert_int_eq(hb__sock_listen_fd("127.0.0.1", 0, 4, 0, &a, &port), 0);
    ck_assert_int_eq(hb__sock_listen_fd("127.0.0.1", port, 4, 0, &b, NULL), UV_EADDRINUSE);
    ck_assert_int_eq(hb__sock_listen_fd("127.0.0.1", port, 4, 1, &b, NULL), UV_EADDRINUSE);
    close(a);
    ck_assert_int_eq(hb__sock_listen_fd("127.0.0.1", 0, 4, 1, &a, &port), 0);
    ck_assert_int_eq(hb__sock_listen_fd("127.0.0.1", port, 4, 1, &b, NULL), 0);
    close(a);
    close(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sock");
    TCase *tc = tcase_create("sock");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_echo);
    tcase_add_test(tc, test_write_to_a_reset_peer);
    tcase_add_test(tc, test_queue_bound_then_reset);
    tcase_add_test(tc, test_end_delivers_despite_unread_input);
    tcase_add_test(tc, test_progress_then_drained);
    tcase_add_test(tc, test_connect_refused);
    tcase_add_test(tc, test_addresses_and_exclusive_port);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
