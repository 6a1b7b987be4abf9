/* libFuzzer target for the HTTP server as a whole: each input is sent over a real loopback TCP
 * connection to an hb_http_server on a libuv loop (in up to three pieces), the loop runs until
 * the server has closed the connection, and the handlers and the server's counters are checked.
 *
 * Input: [0] size of the first piece (0: all at once), [1] size of the second (0: the rest),
 * then the bytes sent. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "hongbao/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash libFuzzer reports) when an invariant breaks; say which. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http: check failed at line %d: %s\n", __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Small, so that 413 is reachable with short inputs. */
#define FUZZ_MAX_REQUEST 1024
/* Loop turns (each waiting at most FUZZ_POLL_MS for an event) before a connection the client
 * has finished with must be closed by the server. */
#define FUZZ_MAX_TURNS 500
#define FUZZ_POLL_MS   10

/* Everything one process needs: one loop, one server, reused by every input. */
typedef struct fuzz_http {
    uv_loop_t loop;
    hb_http_server_t srv;
    int port;
    uint32_t source; /* picks the next connection's source address */
    /* What the handlers saw during the current input. */
    uint64_t calls;
    uint64_t by_class[6]; /* responses the handlers sent, by status / 100 */
} fuzz_http_t;

/* ---- handlers ---- */

static bool has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static bool is_token(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        bool alnum =
            (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!alnum && strchr("!#$%&'*+-.^_`|~", ch) == NULL)
            return false;
    }
    return true;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* What every handler checks of the request it is given. */
static void check_request(fuzz_http_t *fz, const hb_http_request_t *req, const char *route)
{
    FUZZ_CHECK(req->server == &fz->srv);
    FUZZ_CHECK(req->method != NULL && req->method[0] != '\0');
    FUZZ_CHECK(req->path_len == strlen(route) && strcmp(req->path, route) == 0);
    FUZZ_CHECK(req->query != NULL && strlen(req->query) == req->query_len);
    FUZZ_CHECK(req->body != NULL || req->body_len == 0);
    FUZZ_CHECK(req->body_len <= FUZZ_MAX_REQUEST);
    unsigned sum = 0;
    for (size_t i = 0; i < req->body_len; i++)
        sum += (unsigned char)req->body[i]; /* every byte readable */
    (void)sum;
    static const char *const names[] = {"host",   "Content-Length", "transfer-encoding",
                                        "EXPECT", "x-ct",           "connection"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = hb_http_request_header(req, names[i]);
        if (v == NULL)
            continue;
        size_t n = strlen(v);
        FUZZ_CHECK(n == 0 || (!is_space(v[0]) && !is_space(v[n - 1])));
        FUZZ_CHECK(!has_crlf(v));
    }
    FUZZ_CHECK(hb_http_request_header(req, "host") == hb_http_request_header(req, "HOST"));
}

static void count(fuzz_http_t *fz, int status)
{
    fz->by_class[status / 100]++;
}

/* After the one response: a second one and a late header are refused. */
static void check_responded(hb_http_response_t *res)
{
    FUZZ_CHECK(hb_http_respond(res, 200, NULL, NULL, 0) == UV_EALREADY);
    FUZZ_CHECK(hb_http_response_header(res, "X-Late", "1") == UV_EALREADY);
}

/* Answer a parameter error the way the control routes do. */
static void bad_param(fuzz_http_t *fz, hb_http_response_t *res, const char *name, int err,
                      uint64_t min, uint64_t max)
{
    FUZZ_CHECK(err == UV_ENOENT || err == UV_EINVAL || err == UV_ERANGE || err == UV_ENOBUFS);
    FUZZ_CHECK(hb_http_bad_param_range(res, name, err, min, max) == 0);
    count(fz, 400);
    check_responded(res);
}

/* /echo?a=N&b=N[&s=text][&n=name&h=value]: a in [0, 1000], b in [10, 2^64-11]; n and h add a
 * response header. */
static void h_echo(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fuzz_http_t *fz = arg;
    fz->calls++;
    check_request(fz, req, "/echo");
    const char *q = req->query;
    size_t ql = req->query_len;
    uint64_t a, b;
    int r = hb_http_query_u64(q, ql, "a", 0, 1000, &a);
    if (r != 0) {
        bad_param(fz, res, "a", r, 0, 1000);
        return;
    }
    FUZZ_CHECK(a <= 1000);
    r = hb_http_query_u64(q, ql, "b", 10, UINT64_MAX - 10, &b);
    if (r != 0) {
        bad_param(fz, res, "b", r, 10, UINT64_MAX - 10);
        return;
    }
    FUZZ_CHECK(b >= 10 && b <= UINT64_MAX - 10);
    char s[16] = "";
    size_t slen = 0;
    r = hb_http_query_copy(q, ql, "s", s, sizeof s, &slen);
    if (r != 0 && r != UV_ENOENT) {
        FUZZ_CHECK(r == UV_EINVAL || r == UV_ENOBUFS);
        FUZZ_CHECK(hb_http_bad_param(res, "s", r) == 0);
        count(fz, 400);
        check_responded(res);
        return;
    }
    FUZZ_CHECK(r != 0 || slen < sizeof s);
    char name[32], value[64];
    if (hb_http_query_copy(q, ql, "n", name, sizeof name, NULL) == 0 &&
        hb_http_query_copy(q, ql, "h", value, sizeof value, NULL) == 0) {
        r = hb_http_response_header(res, name, value);
        bool reserved = strcasecmp(name, "content-length") == 0 ||
                        strcasecmp(name, "connection") == 0 ||
                        strcasecmp(name, "transfer-encoding") == 0;
        if (!is_token(name) || reserved || has_crlf(value))
            FUZZ_CHECK(r == UV_EINVAL);
        else
            FUZZ_CHECK(r == 0);
    }
    char body[128];
    int n = snprintf(body, sizeof body, "a=%" PRIu64 " b=%" PRIu64 " s=%zu\n", a, b, slen);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof body);
    FUZZ_CHECK(hb_http_respond(res, 200, "text/plain", body, (size_t)n) == 0);
    count(fz, 200);
    check_responded(res);
}

/* /body[?status=N]: answer status N (200..599, default 200) with the request's body and the
 * Content-Type the request's X-CT header names. */
static void h_body(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fuzz_http_t *fz = arg;
    fz->calls++;
    check_request(fz, req, "/body");
    uint64_t status = 200;
    int r = hb_http_query_u64(req->query, req->query_len, "status", 200, 599, &status);
    if (r != 0 && r != UV_ENOENT) {
        bad_param(fz, res, "status", r, 200, 599);
        return;
    }
    const char *ct = hb_http_request_header(req, "x-ct");
    r = hb_http_respond(res, (int)status, ct, req->body, req->body_len);
    if ((status == 204 || status == 304) && req->body_len > 0) {
        FUZZ_CHECK(r == UV_EINVAL);
        FUZZ_CHECK(hb_http_respond(res, (int)status, ct, NULL, 0) == 0); /* still unanswered */
    } else {
        FUZZ_CHECK(r == 0);
    }
    count(fz, (int)status);
    check_responded(res);
}

/* /silent: no answer, so the library sends 500. */
static void h_silent(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fuzz_http_t *fz = arg;
    (void)res;
    fz->calls++;
    check_request(fz, req, "/silent");
    count(fz, 500);
}

/* /post, POST only: other methods get 405. */
static void h_post(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fuzz_http_t *fz = arg;
    fz->calls++;
    check_request(fz, req, "/post");
    FUZZ_CHECK(strcmp(req->method, "POST") == 0);
    FUZZ_CHECK(hb_http_respond(res, 201, NULL, "ok", 2) == 0);
    count(fz, 201);
    check_responded(res);
}

/* ---- the loop and the client side ---- */

static fuzz_http_t *fuzz_setup(void)
{
    static fuzz_http_t fz; /* one for the process; inputs run one at a time */
    static bool ready;
    if (ready)
        return &fz;
    FUZZ_CHECK(uv_loop_init(&fz.loop) == 0);
    hb_http_options_t opts = {.max_request_bytes = FUZZ_MAX_REQUEST};
    FUZZ_CHECK(hb_http_server_init(&fz.loop, &fz.srv, &opts) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, NULL, "/echo", h_echo, &fz) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, NULL, "/body", h_body, &fz) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, "GET", "/silent", h_silent, &fz) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, "POST", "/post", h_post, &fz) == 0);
    FUZZ_CHECK(hb_http_server_listen(&fz.srv, "127.0.0.1", 0) == 0);
    fz.port = hb_http_server_port(&fz.srv);
    FUZZ_CHECK(fz.port > 0);
    ready = true;
    return &fz;
}

static void count_handle(uv_handle_t *h, void *arg)
{
    (void)h;
    (*(unsigned *)arg)++;
}

/* Handles on the loop, closing ones included until their close callback has run. */
static unsigned loop_handles(uv_loop_t *loop)
{
    unsigned n = 0;
    uv_walk(loop, count_handle, &n);
    return n;
}

/* The client end of one connection. */
typedef struct client {
    int fd;
    bool eof;        /* the server's FIN (or a reset) was read */
    size_t received; /* bytes the server sent */
    char first[9];   /* its first bytes */
} client_t;

/* Read and discard what the server sent so far. */
static void client_drain(client_t *cl)
{
    char buf[4096];
    while (!cl->eof) {
        ssize_t n = recv(cl->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (cl->received < sizeof cl->first) {
                size_t k = sizeof cl->first - cl->received;
                memcpy(cl->first + cl->received, buf, (size_t)n < k ? (size_t)n : k);
            }
            cl->received += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            cl->eof = true;
        } else if (errno != EINTR) {
            return;
        }
    }
}

/* One loop turn without blocking, then read what arrived. */
static void pump(fuzz_http_t *fz, client_t *cl)
{
    uv_run(&fz->loop, UV_RUN_NOWAIT);
    client_drain(cl);
}

/* Wait (at most FUZZ_POLL_MS) until the loop or the client has something to do. */
static void wait_event(fuzz_http_t *fz, client_t *cl)
{
    struct pollfd p[2] = {{.fd = uv_backend_fd(&fz->loop), .events = POLLIN},
                          {.fd = cl->fd, .events = POLLIN}};
    poll(p, cl->eof ? 1 : 2, FUZZ_POLL_MS);
}

/* Send n bytes, turning the loop while the socket is full. False once the server has gone. */
static bool client_send(fuzz_http_t *fz, client_t *cl, const uint8_t *p, size_t n)
{
    for (int turns = 0; n > 0; turns++) {
        FUZZ_CHECK(turns < FUZZ_MAX_TURNS);
        ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false; /* EPIPE, ECONNRESET: the server closed */
        pump(fz, cl);
        wait_event(fz, cl);
    }
    return true;
}

/* Connect to the server from 127.1.x.y, a source address that changes with every connection:
 * each connection leaves a TIME_WAIT on the client side, and a fresh address keeps the ephemeral
 * ports from running out even where TIME_WAIT reuse is off. */
static int client_connect(fuzz_http_t *fz)
{
    struct sockaddr_in sa, src;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)fz->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0;; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(fd >= 0);
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7F010000u | (fz->source++ & 0xFFFFu));
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one); /* Linux 4.2+ */
        /* Blocking: on loopback the handshake completes inside connect, before any accept. */
        if (bind(fd, (struct sockaddr *)&src, sizeof src) == 0 &&
            connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            FUZZ_CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
            return fd;
        }
        int err = errno;
        close(fd);
        /* Failing every time would make every input a no-op: say so. */
        if (tries == 100) {
            fprintf(stderr, "fuzz_http: connect: %s\n", strerror(err));
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_t *fz = fuzz_setup();
    const hb_http_stats_t before = fz->srv.stats;
    fz->calls = 0;
    memset(fz->by_class, 0, sizeof fz->by_class);

    /* The pieces: [first, second, rest], empty ones skipped. */
    size_t first = size > 0 ? data[0] : 0, second = size > 1 ? data[1] : 0;
    const uint8_t *p = data + (size < 2 ? size : 2);
    size_t len = size - (size_t)(p - data);
    size_t cut[3];
    cut[0] = first == 0 || first > len ? len : first;
    cut[1] = second == 0 || second > len - cut[0] ? len - cut[0] : second;
    cut[2] = len - cut[0] - cut[1];

    client_t cl = {.fd = client_connect(fz)};
    for (int i = 0; i < 3; i++) {
        if (cut[i] == 0)
            continue;
        if (!client_send(fz, &cl, p, cut[i]))
            break;
        p += cut[i];
        /* Let the server read this piece on its own: accept, then read. */
        for (int k = 0; k < 3; k++)
            pump(fz, &cl);
    }
    shutdown(cl.fd, SHUT_WR);

    /* Run until the server has accepted, answered and closed the connection, every handle of it
     * closed (and its memory freed). */
    int turns = 0;
    for (;; turns++) {
        pump(fz, &cl);
        if (fz->srv.stats.connections_accepted > before.connections_accepted &&
            fz->srv.stats.connections_open == 0 && loop_handles(&fz->loop) == 1)
            break;
        if (turns == FUZZ_MAX_TURNS) {
            fprintf(stderr,
                    "fuzz_http: the server kept the connection open: %" PRIu64 " accepted, %" PRIu64
                    " open, %u handles\n",
                    fz->srv.stats.connections_accepted - before.connections_accepted,
                    fz->srv.stats.connections_open, loop_handles(&fz->loop));
            abort();
        }
        wait_event(fz, &cl);
    }
    client_drain(&cl);
    close(cl.fd);

    /* The server's counters against what the handlers did. */
    const hb_http_stats_t *now = &fz->srv.stats;
    uint64_t requests = now->requests - before.requests;
    uint64_t r2 = now->responses_2xx - before.responses_2xx;
    uint64_t r3 = now->responses_3xx - before.responses_3xx;
    uint64_t r4 = now->responses_4xx - before.responses_4xx;
    uint64_t r5 = now->responses_5xx - before.responses_5xx;
    uint64_t bad = now->bad_requests - before.bad_requests;
    uint64_t large = now->too_large - before.too_large;
    uint64_t responses = r2 + r3 + r4 + r5;
    FUZZ_CHECK(now->connections_accepted - before.connections_accepted == 1);
    FUZZ_CHECK(now->connections_rejected == before.connections_rejected);
    FUZZ_CHECK(now->idle_timeouts == before.idle_timeouts);
    FUZZ_CHECK(now->connections_open == 0);
    /* At most one error ends a connection: a malformed or too large request. */
    FUZZ_CHECK(bad + large <= 1);
    /* Every request is answered, plus the error that ended the connection. */
    FUZZ_CHECK(requests <= responses && responses <= requests + bad + large);
    FUZZ_CHECK(fz->calls <= requests);
    /* The library's own answers (400, 404, 405, 413, 431) are 4xx; the rest are the handlers'. */
    FUZZ_CHECK(r2 == fz->by_class[2] && r3 == fz->by_class[3] && r5 == fz->by_class[5]);
    FUZZ_CHECK(r4 >= fz->by_class[4] && r4 - fz->by_class[4] == responses - fz->calls);
    /* Whatever was sent starts as a response does. */
    if (responses > 0)
        FUZZ_CHECK(cl.received > 0);
    if (cl.received > 0)
        FUZZ_CHECK(cl.received >= sizeof cl.first && memcmp(cl.first, "HTTP/1.1 ", 9) == 0);
    (void)turns;
    return 0;
}
