/* Unit tests for the http module: query helpers, and the server over real sockets on 127.0.0.1
 * (the loop runs in the test thread; a second thread is a blocking-socket client). */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include "hongbao.h"

/* ---- the blocking client, run in the client thread ---- */

typedef struct client {
    int fd;
    size_t len;
    char buf[16384];
} client_t;

typedef struct resp {
    int status;
    char head[4096];
    char body[4096];
    size_t body_len;
} resp_t;

static const char *find_bytes(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(hay + i, needle, k) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

static int cl_connect_rcvbuf(client_t *c, int port, int rcvbuf)
{
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) {
        return -1;
    }
    if (rcvbuf > 0) { /* a small window makes the server's writes back up */
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    struct timeval tv = {5, 0}; /* a hung server fails the test instead of blocking it */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(c->fd, (struct sockaddr *)&a, sizeof a);
}

static int cl_connect(client_t *c, int port)
{
    return cl_connect_rcvbuf(c, port, 0);
}

static int cl_send(client_t *c, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);
        if (k <= 0) {
            return -1;
        }
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

static int cl_sends(client_t *c, const char *s)
{
    return cl_send(c, s, strlen(s));
}

static ssize_t cl_fill(client_t *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
    }
    return n;
}

/* The value of header name in r (case-insensitive), copied into out; false when absent. */
static bool resp_header(const resp_t *r, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line != NULL && line[2] != '\r') {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (eol != NULL && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ') {
                v++;
            }
            snprintf(out, size, "%.*s", (int)(eol - v), v);
            return true;
        }
        line = eol;
    }
    return false;
}

/* Read one response (the body by its Content-Length, none when head_only). 0, or -1 on EOF. */
static int cl_response(client_t *c, resp_t *r, bool head_only)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    const char *end;
    while ((end = find_bytes(c->buf, c->len, "\r\n\r\n")) == NULL) {
        if (cl_fill(c) <= 0) {
            return -1;
        }
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (hlen >= sizeof r->head) {
        return -1;
    }
    memcpy(r->head, c->buf, hlen);
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) {
        return -1;
    }
    char v[64];
    size_t want = 0;
    if (!head_only && resp_header(r, "Content-Length", v, sizeof v)) {
        want = strtoul(v, NULL, 10);
    }
    r->body_len = want;
    size_t used = hlen;
    size_t copied = 0;
    /* Keep the first bytes of a body larger than r->body, drop the rest. */
    while (want > 0) {
        if (used == c->len) {
            c->len = used = 0;
            if (cl_fill(c) <= 0) {
                return -1;
            }
        }
        size_t take = c->len - used < want ? c->len - used : want;
        size_t keep = sizeof r->body - 1 - copied < take ? sizeof r->body - 1 - copied : take;
        memcpy(r->body + copied, c->buf + used, keep);
        copied += keep;
        used += take;
        want -= take;
    }
    c->len -= used;
    memmove(c->buf, c->buf + used, c->len);
    return 0;
}

/* True when the server closes the connection with nothing more to read. */
static bool cl_closed(client_t *c)
{
    char tmp[256];
    ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
    if (n == 0) {
        return c->len == 0;
    }
    return n < 0 && errno == ECONNRESET && c->len == 0;
}

static void cl_close(client_t *c)
{
    close(c->fd);
}

/* ---- the fixture: a server on its own loop, a client thread, results to check ---- */

typedef struct fixture fixture_t;
typedef void (*client_fn)(fixture_t *f);

#define MAX_RESP 16

struct fixture {
    uv_loop_t loop;
    hb_http_server_t srv;
    uv_async_t done; /* the client thread finished */
    uv_async_t kick; /* the client thread asks the loop to run on_kick */
    uv_thread_t thread;
    client_fn client;
    void (*on_kick)(fixture_t *f);
    int port;
    int close_calls;
    /* Written by the client thread, read after it is joined. */
    resp_t resp[MAX_RESP];
    int got[MAX_RESP];
    int nresp;
    bool closed[8];
    client_t cl[4];
    /* Written by handlers on the loop thread. */
    int rc[24];
    int nrc;
    char seen[256];
    char *big;           /* BIG_BODY bytes for /big */
    atomic_int big_read; /* /big responses the client has read in full */
    int big_lag;         /* the most /big requests answered ahead of the client's reading */
};

#define BIG_BODY (256 * 1024)

/* Read one response into the next result slot. */
static void expect_response(fixture_t *f, client_t *c, bool head_only)
{
    if (f->nresp < MAX_RESP) {
        f->got[f->nresp] = cl_response(c, &f->resp[f->nresp], head_only);
        f->nresp++;
    }
}

static void on_server_closed(hb_http_server_t *srv)
{
    fixture_t *f = srv->data;
    f->close_calls++;
}

static void h_hello(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)arg;
    char b[512];
    int n = snprintf(b, sizeof b, "%s %s ?%s", req->method, req->path, req->query);
    hb_http_respond(res, 200, "text/plain", b, (size_t)n);
}

static void h_echo(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)arg;
    const char *tok = hb_http_request_header(req, "x-token");
    if (tok != NULL) {
        hb_http_response_header(res, "X-Echo-Token", tok);
    }
    hb_http_respond(res, 200, "application/octet-stream", req->body, req->body_len);
}

static void h_params(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)arg;
    uint64_t qps;
    int r = hb_query_u64(req->query, req->query_len, "qps", 0, 1000000, &qps);
    if (r < 0) {
        hb_http_bad_param_range(res, "qps", r, 0, 1000000);
        return;
    }
    char b[64];
    int n = snprintf(b, sizeof b, "qps=%" PRIu64, qps);
    hb_http_respond(res, 200, "text/plain", b, (size_t)n);
}

static void h_name(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)arg;
    char name[32];
    int r = hb_query_copy(req->query, req->query_len, "name", name, sizeof name, NULL);
    if (r < 0) {
        hb_http_bad_param(res, "name", r);
        return;
    }
    char b[64];
    int n = snprintf(b, sizeof b, "hello, %s", name);
    hb_http_respond(res, 200, "text/plain", b, (size_t)n);
}

static void h_silent(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    (void)res;
    (void)arg;
}

static void h_post_only(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    (void)arg;
    hb_http_respond(res, 200, "text/plain", "posted", 6);
}

static void h_headers(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fixture_t *f = arg;
    (void)req;
    int *rc = f->rc;
    rc[0] = hb_http_response_header(res, "X-One", "1");
    rc[1] = hb_http_response_header(res, "Bad Name", "v");
    rc[2] = hb_http_response_header(res, "X-Evil", "a\r\nInjected: 1");
    rc[3] = hb_http_response_header(res, "content-length", "5");
    rc[4] = hb_http_respond(res, 99, "text/plain", "x", 1);
    rc[5] = hb_http_respond(res, 204, NULL, "x", 1);
    rc[6] = hb_http_respond(res, 200, "text/plain\r\nX: y", "x", 1);
    /* Fill the extra-header space: some fit, then UV_ENOBUFS. */
    char v[100];
    memset(v, 'v', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    int added = 0;
    int r;
    while ((r = hb_http_response_header(res, "X-Fill", v)) == 0) {
        added++;
    }
    rc[7] = r;
    rc[8] = added;
    rc[9] = hb_http_respond(res, 201, "text/plain", "made", 4);
    rc[10] = hb_http_respond(res, 200, "text/plain", "again", 5);
    rc[11] = hb_http_response_header(res, "X-Late", "1");
    f->nrc = 12;
}

static void h_shutdown(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fixture_t *f = arg;
    (void)req;
    hb_http_server_close(&f->srv, on_server_closed);
    f->rc[0] = hb_http_respond(res, 200, "text/plain", "bye", 3);
    f->nrc = 1;
}

static const char *or_null(const char *s)
{
    return s != NULL ? s : "(null)";
}

static void h_request_view(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fixture_t *f = arg;
    const char *missing = hb_http_request_header(req, "x-missing");
    const char *empty = hb_http_request_header(req, "x-empty");
    snprintf(f->seen, sizeof f->seen, "%s|%s|%zu|%s|%zu|%u.%u|%s|%s|%s|%d", req->method, req->path,
             req->path_len, req->query, req->query_len, req->http_major, req->http_minor,
             or_null(hb_http_request_header(req, "X-TOKEN")), empty != NULL ? "[empty]" : "null",
             or_null(hb_http_request_header(req, "host")), missing == NULL);
    f->rc[0] = req->server == &f->srv;
    f->nrc = 1;
    hb_http_respond(res, 204, NULL, NULL, 0);
}

/* Pin the send buffer of every connection (a socket on the loop that is not listening). */
static void shrink_sndbuf(uv_handle_t *h, void *arg)
{
    (void)arg;
    uv_os_fd_t fd;
    int size = 16384, listening = 1;
    socklen_t len = sizeof listening;
    if (uv_fileno(h, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && !listening) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
}

/* A large response: "n=<n>;" then filler, BIG_BODY bytes in all. The first one also pins the
 * connection's send buffer small (no autotuning), so how far the server runs ahead of the client
 * depends on the server's own bound only. */
static void h_big(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fixture_t *f = arg;
    uint64_t n = 0;
    hb_query_u64(req->query, req->query_len, "n", 0, 1000, &n);
    if (n == 0) {
        uv_walk(&f->loop, shrink_sndbuf, f);
    }
    int lag = (int)n - atomic_load(&f->big_read);
    if (lag > f->big_lag) {
        f->big_lag = lag;
    }
    int k = snprintf(f->big, 32, "n=%" PRIu64 ";", n);
    memset(f->big + k, 'z', BIG_BODY - (size_t)k);
    hb_http_respond(res, 200, "application/octet-stream", f->big, BIG_BODY);
}

/* /open: the number of connections the server has open, as text. */
static void h_open(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)arg;
    char b[32];
    int n = snprintf(b, sizeof b, "%" PRIu64, req->server->stats.connections_open);
    hb_http_respond(res, 200, "text/plain", b, (size_t)n);
}

static fixture_t *fx_new(const hb_http_options_t *opts)
{
    fixture_t *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->big = malloc(BIG_BODY);
    ck_assert_ptr_nonnull(f->big);
    ck_assert_int_eq(uv_loop_init(&f->loop), 0);
    ck_assert_int_eq(hb_http_server_init(&f->loop, &f->srv, opts), 0);
    f->srv.data = f;
    hb_http_server_t *s = &f->srv;
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/hello", h_hello, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, NULL, "/any", h_hello, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, NULL, "/echo", h_echo, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/params", h_params, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/name", h_name, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/silent", h_silent, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "POST", "/post-only", h_post_only, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "PUT", "/post-only", h_post_only, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/headers", h_headers, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/shutdown", h_shutdown, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, NULL, "/view", h_request_view, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/big", h_big, f), 0);
    ck_assert_int_eq(hb_http_server_route(s, "GET", "/open", h_open, f), 0);
    ck_assert_int_eq(hb_http_server_listen(s, "127.0.0.1", 0), 0);
    f->port = hb_http_server_port(s);
    ck_assert_int_gt(f->port, 0);
    return f;
}

static void on_done(uv_async_t *a)
{
    fixture_t *f = a->data;
    hb_http_server_close(&f->srv, on_server_closed); /* a no-op if a test closed it already */
    uv_close((uv_handle_t *)&f->kick, NULL);
    uv_close((uv_handle_t *)&f->done, NULL);
}

static void on_kick(uv_async_t *a)
{
    fixture_t *f = a->data;
    if (f->on_kick != NULL) {
        f->on_kick(f);
    }
}

static void client_main(void *arg)
{
    fixture_t *f = arg;
    f->client(f);
    uv_async_send(&f->done);
}

/* Run the loop until the client function has finished and the server is closed. */
static void fx_run(fixture_t *f, client_fn client)
{
    f->client = client;
    ck_assert_int_eq(uv_async_init(&f->loop, &f->done, on_done), 0);
    ck_assert_int_eq(uv_async_init(&f->loop, &f->kick, on_kick), 0);
    f->done.data = f;
    f->kick.data = f;
    ck_assert_int_eq(uv_thread_create(&f->thread, client_main, f), 0);
    ck_assert_int_eq(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_thread_join(&f->thread), 0);
    ck_assert_int_eq(f->close_calls, 1);
    ck_assert_uint_eq(f->srv.stats.connections_open, 0);
}

static void count_and_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) {
        (*(int *)arg)++;
        uv_close(h, NULL);
    }
}

/* libuv's MAKE_VALGRIND_HAPPY: nothing may be left open, and the loop closes cleanly. */
static void loop_teardown(uv_loop_t *loop)
{
    int left = 0;
    uv_walk(loop, count_and_close, &left);
    uv_run(loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(left, 0);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

static void fx_free(fixture_t *f)
{
    loop_teardown(&f->loop);
    free(f->big);
    free(f);
}

static void assert_resp(const fixture_t *f, int i, int status, const char *body)
{
    ck_assert_int_lt(i, f->nresp);
    ck_assert_int_eq(f->got[i], 0);
    ck_assert_int_eq(f->resp[i].status, status);
    ck_assert_uint_eq(f->resp[i].body_len, strlen(body));
    ck_assert_mem_eq(f->resp[i].body, body, strlen(body));
}

static void assert_header(const fixture_t *f, int i, const char *name, const char *value)
{
    char v[256];
    ck_assert_msg(resp_header(&f->resp[i], name, v, sizeof v), "response %d has no %s", i, name);
    ck_assert_str_eq(v, value);
}

/* ---- query helpers (no sockets) ---- */

static void dummy_handler(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    (void)res;
    (void)arg;
}

static void count_close(hb_http_server_t *srv)
{
    (*(int *)srv->data)++;
}

START_TEST(test_init_options)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_http_server_t srv;
    hb_http_options_t o = {0};
    o.max_request_bytes = 100;
    ck_assert_int_eq(hb_http_server_init(&loop, &srv, &o), UV_EINVAL);
    o.max_request_bytes = (size_t)HB_HTTP_MAX_REQUEST_BYTES + 1;
    ck_assert_int_eq(hb_http_server_init(&loop, &srv, &o), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_init(NULL, &srv, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_init(&loop, &srv, NULL), 0);
    ck_assert_uint_eq(srv.opts.max_request_bytes, HB_HTTP_DEFAULT_MAX_REQUEST_BYTES);
    ck_assert_uint_eq(srv.opts.max_connections, HB_HTTP_DEFAULT_MAX_CONNECTIONS);
    ck_assert_uint_eq(srv.opts.idle_timeout_ms, HB_HTTP_DEFAULT_IDLE_TIMEOUT_MS);
    ck_assert_ptr_eq(srv.loop, &loop);
    /* Never listened: the port is unknown, and close still calls back once. */
    ck_assert_int_eq(hb_http_server_port(&srv), UV_EBADF);
    int calls = 0;
    srv.data = &calls;
    hb_http_server_close(&srv, count_close);
    hb_http_server_close(&srv, count_close);
    ck_assert_int_eq(calls, 0); /* never from inside the call */
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(calls, 1);
    loop_teardown(&loop);
}
END_TEST

START_TEST(test_route_table)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_http_server_t srv;
    ck_assert_int_eq(hb_http_server_init(&loop, &srv, NULL), 0);
    ck_assert_int_eq(hb_http_server_route(&srv, "GET", "nopath", dummy_handler, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_route(&srv, "GET", NULL, dummy_handler, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_route(&srv, "GET", "/x", NULL, NULL), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_route(&srv, "", "/x", dummy_handler, NULL), UV_EINVAL);
    char long_path[HB_HTTP_ROUTE_PATH_MAX + 2];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    ck_assert_int_eq(hb_http_server_route(&srv, "GET", long_path, dummy_handler, NULL),
                     UV_ENAMETOOLONG);
    long_path[sizeof long_path - 2] = '\0'; /* exactly the maximum */
    ck_assert_int_eq(hb_http_server_route(&srv, "GET", long_path, dummy_handler, NULL), 0);
    ck_assert_int_eq(hb_http_server_route(&srv, "AVERYLONGMETHODNAME", "/x", dummy_handler, NULL),
                     UV_ENAMETOOLONG);
    ck_assert_int_eq(hb_http_server_route(&srv, "GET", "/x", dummy_handler, NULL), 0);
    ck_assert_int_eq(hb_http_server_route(&srv, "GET", "/x", dummy_handler, NULL), UV_EEXIST);
    ck_assert_int_eq(hb_http_server_route(&srv, "POST", "/x", dummy_handler, NULL), 0);
    ck_assert_int_eq(hb_http_server_route(&srv, NULL, "/x", dummy_handler, NULL), 0);
    ck_assert_int_eq(hb_http_server_route(&srv, NULL, "/x", dummy_handler, NULL), UV_EEXIST);
    for (int i = 4; i < HB_HTTP_MAX_ROUTES; i++) {
        char p[16];
        snprintf(p, sizeof p, "/r%d", i);
        ck_assert_int_eq(hb_http_server_route(&srv, NULL, p, dummy_handler, NULL), 0);
    }
    ck_assert_int_eq(hb_http_server_route(&srv, NULL, "/one-too-many", dummy_handler, NULL),
                     UV_ENOBUFS);
    hb_http_server_close(&srv, NULL);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    loop_teardown(&loop);
}
END_TEST

START_TEST(test_listen_errors)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_http_server_t a, b, c;
    ck_assert_int_eq(hb_http_server_init(&loop, &a, NULL), 0);
    ck_assert_int_eq(hb_http_server_init(&loop, &b, NULL), 0);
    ck_assert_int_eq(hb_http_server_init(&loop, &c, NULL), 0);
    ck_assert_int_eq(hb_http_server_listen(&a, "not-an-address", 0), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_listen(&a, "127.0.0.1", 65536), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_listen(&a, "127.0.0.1", -1), UV_EINVAL);
    ck_assert_int_eq(hb_http_server_listen(&a, "127.0.0.1", 0), 0);
    ck_assert_int_eq(hb_http_server_listen(&a, "127.0.0.1", 0), UV_EINVAL); /* already */
    int port = hb_http_server_port(&a);
    ck_assert_int_gt(port, 0);
    ck_assert_int_eq(hb_http_server_listen(&b, "127.0.0.1", port), UV_EADDRINUSE);
    /* IPv6 literals are accepted (skipped where the host has no IPv6 loopback). */
    int r6 = hb_http_server_listen(&c, "::1", 0);
    if (r6 == 0) {
        ck_assert_int_gt(hb_http_server_port(&c), 0);
    } else {
        ck_assert_int_ne(r6, UV_EINVAL);
    }
    int calls = 0;
    a.data = b.data = c.data = &calls;
    hb_http_server_close(&a, count_close);
    hb_http_server_close(&b, count_close);
    hb_http_server_close(&c, count_close);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(calls, 3);
    loop_teardown(&loop);
}
END_TEST

/* ---- the server over sockets ---- */

static void c_get_with_query(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /hello?name=bob&x=%41 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_get_with_query)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_get_with_query);
    assert_resp(f, 0, 200, "GET /hello ?name=bob&x=%41");
    assert_header(f, 0, "Content-Type", "text/plain");
    assert_header(f, 0, "Connection", "keep-alive");
    ck_assert_uint_eq(f->srv.stats.requests, 1);
    ck_assert_uint_eq(f->srv.stats.responses_2xx, 1);
    ck_assert_uint_eq(f->srv.stats.connections_accepted, 1);
    fx_free(f);
}
END_TEST

static void c_request_view(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "DELETE http://example.org/view?a=b%20c#frag HTTP/1.1\r\nHost: example.org \r\n"
                "X-Token:   tok en  \r\nX-Empty:\r\n\r\n");
    expect_response(f, c, false);
    cl_close(c);
}

static void c_bearer_token(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /hello?name=a HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "GET /hello?name=b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "GET /hello?name=c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "GET /hello?name=d HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret2\r\n\r\n");
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_bearer_token)
{
    hb_http_options_t o;
    memset(&o, 0, sizeof o);
    o.bearer_token = "s3cret";
    fixture_t *f = fx_new(&o);
    fx_run(f, c_bearer_token);
    ck_assert_int_eq(f->resp[0].status, 401);
    assert_header(f, 0, "WWW-Authenticate", "Bearer");
    ck_assert_int_eq(f->resp[1].status, 401);
    assert_resp(f, 2, 200, "GET /hello ?name=c");
    ck_assert_int_eq(f->resp[3].status, 401);
    ck_assert_uint_eq(f->srv.stats.unauthorized, 3);
    fx_free(f);
    /* Tokens with spaces or too long are refused at init. */
    uv_loop_t loop;
    hb_http_server_t srv;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    o.bearer_token = "a b";
    ck_assert_int_eq(hb_http_server_init(&loop, &srv, &o), UV_EINVAL);
    char long_token[HB_HTTP_TOKEN_MAX + 2];
    memset(long_token, 't', sizeof long_token - 1);
    long_token[sizeof long_token - 1] = '\0';
    o.bearer_token = long_token;
    ck_assert_int_eq(hb_http_server_init(&loop, &srv, &o), UV_EINVAL);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_int_eq(hb_http_is_loopback("127.0.0.1"), 1);
    ck_assert_int_eq(hb_http_is_loopback("127.9.8.7"), 1);
    ck_assert_int_eq(hb_http_is_loopback("::1"), 1);
    ck_assert_int_eq(hb_http_is_loopback("0.0.0.0"), 0);
    ck_assert_int_eq(hb_http_is_loopback("10.0.0.1"), 0);
    ck_assert_int_eq(hb_http_is_loopback("localhost"), 0);
}
END_TEST

START_TEST(test_request_view)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_request_view);
    assert_resp(f, 0, 204, "");
    char v[32];
    ck_assert_int_eq(false,
                     resp_header(&f->resp[0], "Content-Length", v, sizeof v)); /* none for 204 */
    ck_assert_int_eq(f->nrc, 1);
    ck_assert_int_eq(f->rc[0], 1);
    ck_assert_str_eq(f->seen, "DELETE|/view|5|a=b%20c|7|1.1|tok en|[empty]|example.org|1");
    fx_free(f);
}
END_TEST

static void c_not_found(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "GET /hello/ HTTP/1.1\r\nHost: t\r\n\r\n"); /* exact match only */
    expect_response(f, c, false);
    cl_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"); /* same connection still serves */
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_not_found)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_not_found);
    assert_resp(f, 0, 404, "not found\n");
    assert_header(f, 0, "Connection", "keep-alive");
    assert_resp(f, 1, 404, "not found\n");
    assert_resp(f, 2, 200, "GET /hello ?");
    ck_assert_uint_eq(f->srv.stats.requests, 3);
    ck_assert_uint_eq(f->srv.stats.responses_4xx, 2);
    ck_assert_uint_eq(f->srv.stats.connections_accepted, 1);
    fx_free(f);
}
END_TEST

static void c_method_not_allowed(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /post-only HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "POST /post-only HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    expect_response(f, c, false);
    cl_sends(c, "PATCH /any HTTP/1.1\r\nHost: t\r\n\r\n"); /* a NULL-method route takes all */
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_method_not_allowed)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_method_not_allowed);
    assert_resp(f, 0, 405, "method not allowed\n");
    assert_header(f, 0, "Allow", "POST, PUT");
    assert_resp(f, 1, 200, "posted");
    assert_resp(f, 2, 405, "method not allowed\n");
    assert_header(f, 2, "Allow", "GET");
    assert_resp(f, 3, 200, "PATCH /any ?");
    fx_free(f);
}
END_TEST

static void c_keep_alive(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /hello?n=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    expect_response(f, c, false);
    cl_sends(c, "GET /hello?n=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    expect_response(f, c, false);
    f->closed[0] = cl_closed(c);
    cl_close(c);
}

START_TEST(test_keep_alive)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_keep_alive);
    assert_resp(f, 0, 200, "GET /hello ?n=1");
    assert_header(f, 0, "Connection", "keep-alive");
    assert_resp(f, 1, 200, "hello");
    assert_resp(f, 2, 200, "GET /hello ?n=3");
    assert_header(f, 2, "Connection", "close");
    ck_assert_int_eq(f->closed[0], true);
    ck_assert_uint_eq(f->srv.stats.requests, 3);
    ck_assert_uint_eq(f->srv.stats.connections_accepted, 1);
    fx_free(f);
}
END_TEST

static void c_pipelined(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /hello?a=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: two\r\nContent-Length: 5\r\n\r\nhello"
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /hello?a=5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                "GET /hello?a=6 HTTP/1.1\r\nHost: t\r\n\r\n"); /* after close: ignored */
    for (int i = 0; i < 5; i++) {
        expect_response(f, c, false);
    }
    f->closed[0] = cl_closed(c);
    cl_close(c);
}

START_TEST(test_pipelined)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_pipelined);
    ck_assert_int_eq(f->nresp, 5);
    assert_resp(f, 0, 200, "GET /hello ?a=1");
    assert_resp(f, 1, 200, "hello");
    assert_header(f, 1, "X-Echo-Token", "two");
    assert_resp(f, 2, 200, "hello world");
    assert_resp(f, 3, 404, "not found\n");
    assert_resp(f, 4, 200, "GET /hello ?a=5");
    assert_header(f, 4, "Connection", "close");
    ck_assert_int_eq(f->closed[0], true);
    ck_assert_uint_eq(f->srv.stats.requests, 5);
    fx_free(f);
}
END_TEST

static void send_bytewise(client_t *c, const char *s)
{
    for (size_t i = 0; s[i] != '\0'; i++) {
        cl_send(c, s + i, 1);
    }
}

static void c_split(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    send_bytewise(c, "POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nX-Token: abc\r\n"
                     "Content-Length: 11\r\n\r\nhello world");
    expect_response(f, c, false);
    send_bytewise(c, "POST /echo HTTP/1.1\r\nX-Token: chunky\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n");
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_split_across_reads)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_split);
    assert_resp(f, 0, 200, "hello world");
    assert_header(f, 0, "X-Echo-Token", "abc");
    assert_resp(f, 1, 200, "abcdefg");
    assert_header(f, 1, "X-Echo-Token", "chunky");
    fx_free(f);
}
END_TEST

/* A partial request stays behind complete ones; the buffer must make room by moving it. */
static void c_compaction(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    const char *second = "POST /echo HTTP/1.1\r\nHost: t\r\nX-Token: second-request-token\r\n"
                         "X-Pad: pppppppppppppppppppppppppppppppppppppppppppppp\r\n"
                         "Content-Length: 10\r\n\r\n0123456789";
    size_t n2 = strlen(second);
    char xs[151];
    memset(xs, 'x', 150);
    xs[150] = '\0';
    char buf[512];
    int k = snprintf(buf, sizeof buf, "GET /hello?first=%s HTTP/1.1\r\nHost: t\r\n\r\n%.*s", xs,
                     (int)(n2 / 2), second);
    cl_send(c, buf, (size_t)k);
    expect_response(f, c, false);
    cl_send(c, second + n2 / 2, n2 - n2 / 2);
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_buffer_compaction)
{
    hb_http_options_t o = {0};
    o.max_request_bytes = 256;
    fixture_t *f = fx_new(&o);
    fx_run(f, c_compaction);
    char want[200];
    snprintf(want, sizeof want, "GET /hello ?first=%0150d", 0);
    memset(want + 18, 'x', 150);
    assert_resp(f, 0, 200, want);
    assert_resp(f, 1, 200, "0123456789");
    assert_header(f, 1, "X-Echo-Token", "second-request-token");
    ck_assert_uint_eq(f->srv.stats.too_large, 0);
    fx_free(f);
}
END_TEST

static void c_params(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    static const char *const targets[] = {
        "/params",
        "/params?qps=abc",
        "/params?qps=-1",
        "/params?qps=18446744073709551616",
        "/params?qps=1000001",
        "/params?sum=1&qps=%31%32",
        "/params?qps=1000000",
        "/name?name=J%C3%BCrgen+X",
        "/name?name=0123456789012345678901234567890123456789",
        "/name",
    };
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", targets[i]);
        cl_sends(c, req);
        expect_response(f, c, false);
    }
    cl_close(c);
}

START_TEST(test_query_params_over_http)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_params);
    assert_resp(f, 0, 400, "parameter 'qps': missing\n");
    assert_header(f, 0, "Content-Type", "text/plain; charset=utf-8");
    assert_header(f, 0, "Connection", "keep-alive");
    assert_resp(f, 1, 400, "parameter 'qps': not a non-negative integer\n");
    assert_resp(f, 2, 400, "parameter 'qps': not a non-negative integer\n");
    assert_resp(f, 3, 400, "parameter 'qps': out of range [0, 1000000]\n");
    assert_resp(f, 4, 400, "parameter 'qps': out of range [0, 1000000]\n");
    assert_resp(f, 5, 200, "qps=12");
    assert_resp(f, 6, 200, "qps=1000000");
    assert_resp(f, 7, 200, "hello, J\xc3\xbcrgen X");
    assert_resp(f, 8, 400, "parameter 'name': invalid (no buffer space available)\n");
    assert_resp(f, 9, 400, "parameter 'name': missing\n");
    ck_assert_uint_eq(f->srv.stats.responses_4xx, 7);
    ck_assert_uint_eq(f->srv.stats.responses_2xx, 3);
    ck_assert_uint_eq(f->srv.stats.bad_requests, 0); /* a 400 from a handler is not malformed */
    fx_free(f);
}
END_TEST

START_TEST(test_bad_param_needs_response)
{
    ck_assert_int_eq(hb_http_bad_param(NULL, "x", UV_EINVAL), UV_EINVAL);
    ck_assert_int_eq(hb_http_bad_param_range(NULL, "x", UV_ERANGE, 0, 1), UV_EINVAL);
}
END_TEST

static void c_garbage(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "\x01\x02 garbage\r\n\r\n");
        expect_response(f, c, false);
        f->closed[0] = cl_closed(c);
        cl_close(c);
    }
    /* A bad request after a good one on the same connection. */
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nBad Header\r\n\r\n");
        expect_response(f, c, false);
        expect_response(f, c, false);
        f->closed[1] = cl_closed(c);
        cl_close(c);
    }
    /* A target the parser takes but no route can use: CONNECT's authority form. */
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "CONNECT host:80 HTTP/1.1\r\nHost: t\r\n\r\n");
        expect_response(f, c, false);
        f->closed[2] = cl_closed(c);
        cl_close(c);
    }
}

START_TEST(test_garbage_is_400)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_garbage);
    ck_assert_int_eq(f->nresp, 4);
    ck_assert_int_eq(f->got[0], 0);
    ck_assert_int_eq(f->resp[0].status, 400);
    ck_assert_str_eq(f->resp[0].body, "bad request: invalid HTTP method\n");
    assert_header(f, 0, "Connection", "close");
    ck_assert_int_eq(f->closed[0], true);
    assert_resp(f, 1, 200, "GET /hello ?");
    assert_resp(f, 2, 400, "bad request: invalid character in header\n");
    ck_assert_int_eq(f->closed[1], true);
    assert_resp(f, 3, 400, "bad request: invalid URL\n");
    ck_assert_int_eq(f->closed[2], true);
    ck_assert_uint_eq(f->srv.stats.bad_requests, 3);
    fx_free(f);
}
END_TEST

static void c_too_large(fixture_t *f)
{
    client_t *c = &f->cl[0];
    char big[2048];
    /* Headers larger than the buffer. */
    if (cl_connect(c, f->port) == 0) {
        char pad[1001];
        memset(pad, 'p', 1000);
        pad[1000] = '\0';
        snprintf(big, sizeof big, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: %s\r\n\r\n", pad);
        cl_sends(c, big);
        expect_response(f, c, false);
        f->closed[0] = cl_closed(c);
        cl_close(c);
    }
    /* A declared body that cannot fit: refused before it is sent. */
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
        expect_response(f, c, false);
        f->closed[1] = cl_closed(c);
        cl_close(c);
    }
    /* A chunked body that outgrows the buffer. */
    if (cl_connect(c, f->port) == 0) {
        char chunk[801];
        memset(chunk, 'c', 800);
        chunk[800] = '\0';
        snprintf(big, sizeof big,
                 "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "320\r\n%s\r\n0\r\n\r\n",
                 chunk);
        cl_sends(c, big);
        expect_response(f, c, false);
        f->closed[2] = cl_closed(c);
        cl_close(c);
    }
    /* Too many header fields. */
    if (cl_connect(c, f->port) == 0) {
        char *p = big;
        p += sprintf(p, "GET /hello HTTP/1.1\r\n");
        for (int i = 0; i < HB_HTTP_MAX_HEADERS + 1; i++) {
            p += sprintf(p, "H%d: v\r\n", i);
        }
        sprintf(p, "\r\n");
        cl_sends(c, big);
        expect_response(f, c, false);
        f->closed[3] = cl_closed(c);
        cl_close(c);
    }
    /* The largest request that fits is served. */
    if (cl_connect(c, f->port) == 0) {
        const char *head = "POST /echo HTTP/1.1\r\nContent-Length: 468\r\n\r\n";
        size_t hl = strlen(head);
        memcpy(big, head, hl);
        memset(big + hl, 'b', 512 - hl);
        cl_send(c, big, 512);
        expect_response(f, c, false);
        cl_close(c);
    }
}

START_TEST(test_too_large_is_413)
{
    hb_http_options_t o = {0};
    o.max_request_bytes = 512;
    fixture_t *f = fx_new(&o);
    fx_run(f, c_too_large);
    ck_assert_int_eq(f->nresp, 5);
    assert_resp(f, 0, 413, "request too large\n");
    assert_header(f, 0, "Connection", "close");
    assert_resp(f, 1, 413, "request too large\n");
    assert_resp(f, 2, 413, "request too large\n");
    assert_resp(f, 3, 431, "too many header fields\n");
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(f->closed[i], "connection %d not closed", i);
    }
    ck_assert_int_eq(f->got[4], 0);
    ck_assert_int_eq(f->resp[4].status, 200);
    ck_assert_uint_eq(f->resp[4].body_len, 468);
    ck_assert_uint_eq(f->srv.stats.too_large, 4);
    ck_assert_uint_eq(f->srv.stats.bad_requests, 0);
    fx_free(f);
}
END_TEST

static void c_max_connections(fixture_t *f)
{
    client_t *a = &f->cl[0], *b = &f->cl[1], *x = &f->cl[2];
    if (cl_connect(a, f->port) != 0 || cl_connect(b, f->port) != 0) {
        return;
    }
    /* A response on each proves the server holds both. */
    cl_sends(a, "GET /hello?c=a HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, a, false);
    cl_sends(b, "GET /hello?c=b HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, b, false);
    if (cl_connect(x, f->port) == 0) {
        f->closed[0] = cl_closed(x);
        cl_close(x);
    }
    cl_sends(a, "GET /hello?c=a2 HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, a, false);
    cl_close(a);
    cl_close(b);
}

START_TEST(test_max_connections)
{
    hb_http_options_t o = {0};
    o.max_connections = 2;
    fixture_t *f = fx_new(&o);
    fx_run(f, c_max_connections);
    assert_resp(f, 0, 200, "GET /hello ?c=a");
    assert_resp(f, 1, 200, "GET /hello ?c=b");
    ck_assert_int_eq(f->closed[0], true);
    assert_resp(f, 2, 200, "GET /hello ?c=a2");
    ck_assert_uint_eq(f->srv.stats.connections_rejected, 1);
    ck_assert_uint_eq(f->srv.stats.connections_accepted, 2);
    fx_free(f);
}
END_TEST

static void kick_close_server(fixture_t *f)
{
    hb_http_server_close(&f->srv, on_server_closed);
}

static void c_close_with_clients(fixture_t *f)
{
    client_t *a = &f->cl[0], *b = &f->cl[1];
    if (cl_connect(a, f->port) != 0 || cl_connect(b, f->port) != 0) {
        return;
    }
    cl_sends(a, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, a, false);
    cl_sends(b, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, b, false);
    cl_sends(b, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"); /* partial */
    uv_async_send(&f->kick);
    f->closed[0] = cl_closed(a);
    f->closed[1] = cl_closed(b);
    cl_close(a);
    cl_close(b);
}

START_TEST(test_close_with_clients_connected)
{
    fixture_t *f = fx_new(NULL);
    f->on_kick = kick_close_server;
    fx_run(f, c_close_with_clients);
    assert_resp(f, 0, 200, "GET /hello ?");
    assert_resp(f, 1, 200, "GET /hello ?");
    ck_assert_int_eq(f->closed[0], true);
    ck_assert_int_eq(f->closed[1], true);
    fx_free(f);
}
END_TEST

static void c_close_from_handler(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /shutdown HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_close_from_handler)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_close_from_handler);
    ck_assert_int_eq(f->got[0], -1); /* closed with no response */
    ck_assert_int_eq(f->nrc, 1);
    ck_assert_int_eq(f->rc[0], UV_ECANCELED);
    fx_free(f);
}
END_TEST

static void c_handler_errors(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) != 0) {
        return;
    }
    cl_sends(c, "GET /silent HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, c, false);
    cl_sends(c, "GET /headers HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_response(f, c, false);
    cl_close(c);
}

START_TEST(test_handler_errors)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_handler_errors);
    assert_resp(f, 0, 500, "handler did not respond\n");
    assert_header(f, 0, "Connection", "keep-alive");
    assert_resp(f, 1, 201, "made");
    assert_header(f, 1, "X-One", "1");
    char v[128];
    ck_assert_int_eq(false, resp_header(&f->resp[1], "Injected", v, sizeof v));
    ck_assert_int_eq(false, resp_header(&f->resp[1], "X-Late", v, sizeof v));
    ck_assert_int_eq(f->nrc, 12);
    ck_assert_int_eq(f->rc[0], 0);
    ck_assert_int_eq(f->rc[1], UV_EINVAL);
    ck_assert_int_eq(f->rc[2], UV_EINVAL);
    ck_assert_int_eq(f->rc[3], UV_EINVAL);
    ck_assert_int_eq(f->rc[4], UV_EINVAL);
    ck_assert_int_eq(f->rc[5], UV_EINVAL);
    ck_assert_int_eq(f->rc[6], UV_EINVAL);
    ck_assert_int_eq(f->rc[7], UV_ENOBUFS);
    /* 1024 bytes of room, "X-One: 1\r\n" used 10; each X-Fill line takes 109. */
    ck_assert_int_eq(f->rc[8], (HB_HTTP_RESPONSE_HEADERS_MAX - 10) / 109);
    ck_assert_int_eq(f->rc[9], 0);
    ck_assert_int_eq(f->rc[10], UV_EALREADY);
    ck_assert_int_eq(f->rc[11], UV_EALREADY);
    ck_assert_uint_eq(f->srv.stats.responses_5xx, 1);
    ck_assert_uint_eq(f->srv.stats.responses_2xx, 1);
    fx_free(f);
}
END_TEST

static void c_http10_head_continue(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "HEAD /any?h=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        expect_response(f, c, true);
        cl_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                    "Content-Length: 5\r\n\r\n");
        expect_response(f, c, false); /* 100 Continue, before the body is sent */
        cl_sends(c, "hello");
        expect_response(f, c, false);
        cl_close(c);
    }
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "GET /hello HTTP/1.0\r\n\r\n");
        expect_response(f, c, false);
        f->closed[0] = cl_closed(c);
        cl_close(c);
    }
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        expect_response(f, c, false);
        cl_close(c);
    }
    /* Upgrade is not supported: answered, then closed. */
    if (cl_connect(c, f->port) == 0) {
        cl_sends(c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
        expect_response(f, c, false);
        f->closed[1] = cl_closed(c);
        cl_close(c);
    }
}

START_TEST(test_http10_head_and_continue)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_http10_head_continue);
    ck_assert_int_eq(f->nresp, 6);
    assert_resp(f, 0, 200, "");
    assert_header(f, 0, "Content-Length", "14"); /* of "HEAD /any ?h=1", not sent */
    assert_resp(f, 1, 100, "");
    assert_resp(f, 2, 200, "hello");
    assert_resp(f, 3, 200, "GET /hello ?");
    assert_header(f, 3, "Connection", "close");
    ck_assert_int_eq(f->closed[0], true);
    assert_resp(f, 4, 200, "GET /hello ?");
    assert_header(f, 4, "Connection", "keep-alive");
    assert_resp(f, 5, 200, "GET /hello ?");
    assert_header(f, 5, "Connection", "close");
    ck_assert_int_eq(f->closed[1], true);
    ck_assert_uint_eq(f->srv.stats.responses_2xx, 5); /* 100 Continue not counted */
    fx_free(f);
}
END_TEST

/* Many pipelined requests for large responses, read only after all are sent: the server must hold
 * back (its write queue is bounded) and resume as the client reads, answering all in order. */
#define BIG_REQUESTS 40

static void c_backpressure(fixture_t *f)
{
    client_t *c = &f->cl[0];
    if (cl_connect_rcvbuf(c, f->port, 4096) != 0) {
        return;
    }
    char reqs[BIG_REQUESTS * 48];
    size_t n = 0;
    for (int i = 0; i < BIG_REQUESTS; i++) {
        n += (size_t)snprintf(reqs + n, sizeof reqs - n,
                              "GET /big?n=%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    }
    cl_send(c, reqs, n);
    resp_t *r = malloc(sizeof *r);
    int in_order = 0;
    for (int i = 0; i < BIG_REQUESTS && r != NULL; i++) {
        char want[16];
        int k = snprintf(want, sizeof want, "n=%d;", i);
        if (cl_response(c, r, false) == 0 && r->status == 200 && r->body_len == BIG_BODY &&
            memcmp(r->body, want, (size_t)k) == 0 && r->body[k] == 'z') {
            in_order++;
        }
        atomic_fetch_add(&f->big_read, 1);
    }
    free(r);
    f->rc[0] = in_order;
    cl_close(c);
}

START_TEST(test_backpressure)
{
    fixture_t *f = fx_new(NULL);
    fx_run(f, c_backpressure);
    ck_assert_int_eq(f->rc[0], BIG_REQUESTS);
    /* Without the bound all 40 would be answered at once, before the client reads any. With it,
     * at most the high-water mark plus socket buffers (well under two responses) is in flight. */
    ck_assert_int_le(f->big_lag, 6);
    ck_assert_uint_eq(f->srv.stats.requests, BIG_REQUESTS);
    ck_assert_uint_eq(f->srv.stats.responses_2xx, BIG_REQUESTS);
    fx_free(f);
}
END_TEST

static void c_idle_and_abort(fixture_t *f)
{
    client_t *a = &f->cl[0], *b = &f->cl[1];
    /* A peer that leaves mid-request. */
    if (cl_connect(b, f->port) == 0) {
        cl_sends(b, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial");
        cl_close(b);
    }
    /* An idle connection is closed by the server. */
    if (cl_connect(a, f->port) == 0) {
        cl_sends(a, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        expect_response(f, a, false);
        f->closed[0] = cl_closed(a);
        cl_close(a);
    }
}

START_TEST(test_idle_timeout_and_abort)
{
    hb_http_options_t o = {0};
    o.idle_timeout_ms = 50;
    fixture_t *f = fx_new(&o);
    fx_run(f, c_idle_and_abort);
    assert_resp(f, 0, 200, "GET /hello ?");
    ck_assert_int_eq(f->closed[0], true);
    ck_assert_uint_ge(f->srv.stats.idle_timeouts, 1);
    ck_assert_uint_eq(f->srv.stats.requests, 1);
    ck_assert_uint_eq(f->srv.stats.connections_accepted, 2);
    fx_free(f);
}
END_TEST

/* An empty bearer token is refused at init: "" must not mean "no token" (hb-server
 * --control-token "" used to serve its control port to anyone, on any address). */
START_TEST(test_empty_token_refused)
{
    uv_loop_t loop;
    hb_http_server_t srv;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_http_options_t o = {0};
    o.bearer_token = "";
    ck_assert_int_eq(hb_http_server_init(&loop, &srv, &o), UV_EINVAL);
    /* On error nothing needs closing: the loop has no handle. */
    ck_assert_int_eq(uv_loop_alive(&loop), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* Peers that pipeline requests and leave without reading the answers: the server's writes then
 * meet a closed or reset socket. SIGPIPE is at its default disposition, so a write that raised
 * it would kill the test. Half the peers close (FIN: our later writes get EPIPE), half reset
 * (SO_LINGER 0). Then a well-behaved client is still served and every dead connection is gone. */
#define GONE_PEERS 200

static void c_peers_gone(fixture_t *f)
{
    const char *auth = f->rc[0] ? "Authorization: Bearer s3cret\r\n" : "";
    char req[256];
    int rn = snprintf(req, sizeof req, "GET /hello HTTP/1.1\r\nHost: t\r\n%s\r\n", auth);
    char pipelined[5 * 256];
    size_t n = 0;
    for (int k = 0; k < 4; k++) { /* unauthenticated ones get 401 when a token is set */
        n += (size_t)snprintf(pipelined + n, sizeof pipelined - n,
                              "GET /hello?k=%d HTTP/1.1\r\nHost: t\r\n\r\n", k);
    }
    memcpy(pipelined + n, req, (size_t)rn);
    n += (size_t)rn;
    client_t *c = &f->cl[0];
    for (int i = 0; i < GONE_PEERS; i++) {
        if (cl_connect(c, f->port) != 0 || cl_send(c, pipelined, n) != 0) {
            f->rc[1]++;
            cl_close(c);
            continue;
        }
        if (i % 2 == 1) {
            struct linger lg = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        cl_close(c);
    }
    /* A well-behaved client: served, and it sees the dead connections go (by asking /open). */
    client_t *g = &f->cl[1];
    if (cl_connect(g, f->port) != 0) {
        return;
    }
    char open_req[256];
    int on = snprintf(open_req, sizeof open_req, "GET /open HTTP/1.1\r\nHost: t\r\n%s\r\n", auth);
    resp_t *r = malloc(sizeof *r);
    for (int tries = 0; r != NULL && tries < 10000; tries++) {
        if (cl_send(g, open_req, (size_t)on) != 0 || cl_response(g, r, false) != 0) {
            break;
        }
        if (r->status == 200 && strcmp(r->body, "1") == 0) {
            f->rc[2] = 1; /* only this connection is left */
            break;
        }
    }
    free(r);
    cl_send(g, req, (size_t)rn);
    expect_response(f, g, false);
    cl_close(g);
}

static void run_peers_gone(const char *token)
{
    signal(SIGPIPE, SIG_DFL);
    hb_http_options_t o = {0};
    o.bearer_token = token;
    o.max_connections = GONE_PEERS + 8; /* none refused: every peer is a served connection */
    fixture_t *f = fx_new(&o);
    f->rc[0] = token != NULL;
    fx_run(f, c_peers_gone);
    ck_assert_int_eq(f->rc[1], 0);
    ck_assert_int_eq(f->rc[2], 1);
    assert_resp(f, 0, 200, "GET /hello ?");
    ck_assert_uint_eq(f->srv.stats.connections_accepted, GONE_PEERS + 1);
    ck_assert_uint_eq(f->srv.stats.connections_rejected, 0);
    ck_assert_uint_ge(f->srv.stats.requests, 1);
    if (token != NULL) {
        ck_assert_uint_ge(f->srv.stats.unauthorized, 1);
    }
    fx_free(f);
}

START_TEST(test_peers_gone_without_reading)
{
    run_peers_gone(NULL);
}
END_TEST

START_TEST(test_peers_gone_without_reading_401)
{
    run_peers_gone("s3cret");
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tq = tcase_create("query");
    tcase_add_test(tq, test_bad_param_needs_response);
    suite_add_tcase(s, tq);

    TCase *ts = tcase_create("server");
    tcase_set_timeout(ts, 10);
    tcase_add_test(ts, test_init_options);
    tcase_add_test(ts, test_route_table);
    tcase_add_test(ts, test_listen_errors);
    tcase_add_test(ts, test_get_with_query);
    tcase_add_test(ts, test_request_view);
    tcase_add_test(ts, test_bearer_token);
    tcase_add_test(ts, test_not_found);
    tcase_add_test(ts, test_method_not_allowed);
    tcase_add_test(ts, test_keep_alive);
    tcase_add_test(ts, test_pipelined);
    tcase_add_test(ts, test_split_across_reads);
    tcase_add_test(ts, test_buffer_compaction);
    tcase_add_test(ts, test_query_params_over_http);
    tcase_add_test(ts, test_garbage_is_400);
    tcase_add_test(ts, test_too_large_is_413);
    tcase_add_test(ts, test_max_connections);
    tcase_add_test(ts, test_close_with_clients_connected);
    tcase_add_test(ts, test_close_from_handler);
    tcase_add_test(ts, test_handler_errors);
    tcase_add_test(ts, test_http10_head_and_continue);
    tcase_add_test(ts, test_idle_timeout_and_abort);
    tcase_add_test(ts, test_backpressure);
    tcase_add_test(ts, test_empty_token_refused);
    tcase_add_test(ts, test_peers_gone_without_reading);
    tcase_add_test(ts, test_peers_gone_without_reading_401);
    suite_add_tcase(s, ts);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
