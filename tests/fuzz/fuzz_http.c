/* libFuzzer target for the HTTP server as a whole, with peers that misbehave: each input is a
 * script run over real loopback TCP connections (up to FUZZ_SLOTS at once) to an hb_http_server
 * on a libuv loop: request bytes interleaved with half-closes, resets, plain closes and a client
 * that stops (and resumes) reading while replies are in flight. At the end every connection still
 * open is half-closed and read to its end, the loop runs until the server has closed them all,
 * and the handlers and the server's counters are checked. SIGPIPE is left at its default: a write
 * of the server that raised it would end the run.
 *
 * Input: a sequence of operations, each one byte b: kind = b >> 4, slot = b & 3, arg = (b >> 2) & 3
 *   0 send: a 2-byte big-endian length n follows, then n request bytes (fewer if the input ends)
 *   1 pump: (arg + 1) * 2 loop turns, reading what the reading connections were sent
 *   2 half-close (shutdown SHUT_WR)       3 reset (SO_LINGER 0, then close)
 *   4 stop reading                         5 read again
 *   6 close (whatever is unread makes it a reset)
 *   7 wait: turn the loop until a reply to the slot's last send begins to arrive (bounded)
 *   8..15 send: 1-byte length n, then n bytes
 * An operation on a slot with no connection opens one first (at most FUZZ_MAX_CONNS an input). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
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
/* Connections open at once, and in all, per input. */
#define FUZZ_SLOTS        4
#define FUZZ_MAX_CONNS    8
#define FUZZ_WAIT_TURNS   20 /* of FUZZ_WAIT_POLL_MS each */
#define FUZZ_WAIT_POLL_MS 1
/* The client's receive buffer: small, so that a client that stops reading backs replies up. */
#define FUZZ_RCVBUF 4096
/* /big?k=K answers K KiB (at most this many). */
#define FUZZ_BIG_MAX_KIB 256
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
    uint64_t silent;      /* calls of /silent: the library answers those */
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

/* A respond call's result: 0, or the error of a connection its peer has dropped (a reset, a close
 * that the write met, nothing sent). Any other error is the library's fault. */
static bool respond_ok(int r)
{
    return r == 0 || r == UV_EPIPE || r == UV_ECONNRESET || r == UV_ECANCELED || r == UV_ENOTCONN;
}

/* Count a response the handler sent (r == 0) in its status class. */
static void count(fuzz_http_t *fz, int status, int r)
{
    FUZZ_CHECK(respond_ok(r));
    if (r == 0)
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
    count(fz, 400, hb_http_bad_param_range(res, name, err, min, max));
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
    int r = hb_query_u64(q, ql, "a", 0, 1000, &a);
    if (r != 0) {
        bad_param(fz, res, "a", r, 0, 1000);
        return;
    }
    FUZZ_CHECK(a <= 1000);
    r = hb_query_u64(q, ql, "b", 10, UINT64_MAX - 10, &b);
    if (r != 0) {
        bad_param(fz, res, "b", r, 10, UINT64_MAX - 10);
        return;
    }
    FUZZ_CHECK(b >= 10 && b <= UINT64_MAX - 10);
    char s[16] = "";
    size_t slen = 0;
    r = hb_query_copy(q, ql, "s", s, sizeof s, &slen);
    if (r != 0 && r != UV_ENOENT) {
        FUZZ_CHECK(r == UV_EINVAL || r == UV_ENOBUFS);
        count(fz, 400, hb_http_bad_param(res, "s", r));
        check_responded(res);
        return;
    }
    FUZZ_CHECK(r != 0 || slen < sizeof s);
    char name[32], value[64];
    if (hb_query_copy(q, ql, "n", name, sizeof name, NULL) == 0 &&
        hb_query_copy(q, ql, "h", value, sizeof value, NULL) == 0) {
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
    count(fz, 200, hb_http_respond(res, 200, "text/plain", body, (size_t)n));
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
    int r = hb_query_u64(req->query, req->query_len, "status", 200, 599, &status);
    if (r != 0 && r != UV_ENOENT) {
        bad_param(fz, res, "status", r, 200, 599);
        return;
    }
    const char *ct = hb_http_request_header(req, "x-ct");
    r = hb_http_respond(res, (int)status, ct, req->body, req->body_len);
    if ((status == 204 || status == 304) && req->body_len > 0) {
        FUZZ_CHECK(r == UV_EINVAL);
        r = hb_http_respond(res, (int)status, ct, NULL, 0); /* still unanswered */
    }
    count(fz, (int)status, r);
    check_responded(res);
}

/* /silent: no answer, so the library sends 500 (counted apart: it may fail unseen). */
static void h_silent(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fuzz_http_t *fz = arg;
    (void)res;
    fz->calls++;
    fz->silent++;
    check_request(fz, req, "/silent");
}

/* /big?k=K: K KiB (0..FUZZ_BIG_MAX_KIB) of filler, so that replies can back up behind a client
 * that stops reading. */
static void h_big(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    static char filler[FUZZ_BIG_MAX_KIB * 1024];
    fuzz_http_t *fz = arg;
    fz->calls++;
    check_request(fz, req, "/big");
    uint64_t k;
    int r = hb_query_u64(req->query, req->query_len, "k", 0, FUZZ_BIG_MAX_KIB, &k);
    if (r != 0) {
        bad_param(fz, res, "k", r, 0, FUZZ_BIG_MAX_KIB);
        return;
    }
    if (filler[0] == '\0')
        memset(filler, 'z', sizeof filler);
    count(fz, 200, hb_http_respond(res, 200, "text/plain", filler, (size_t)k * 1024));
    check_responded(res);
}

/* /post, POST only: other methods get 405. */
static void h_post(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    fuzz_http_t *fz = arg;
    fz->calls++;
    check_request(fz, req, "/post");
    FUZZ_CHECK(strcmp(req->method, "POST") == 0);
    count(fz, 201, hb_http_respond(res, 201, NULL, "ok", 2));
    check_responded(res);
}

/* ---- the loop and the client side ---- */

static fuzz_http_t *fuzz_setup(void)
{
    static fuzz_http_t fz; /* one for the process; inputs run one at a time */
    static bool ready;
    if (ready)
        return &fz;
    signal(SIGPIPE, SIG_DFL); /* a write that raised it would end the run: a finding */
    FUZZ_CHECK(uv_loop_init(&fz.loop) == 0);
    hb_http_options_t opts = {.max_request_bytes = FUZZ_MAX_REQUEST};
    FUZZ_CHECK(hb_http_server_init(&fz.loop, &fz.srv, &opts) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, NULL, "/echo", h_echo, &fz) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, NULL, "/body", h_body, &fz) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, "GET", "/silent", h_silent, &fz) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, "POST", "/post", h_post, &fz) == 0);
    FUZZ_CHECK(hb_http_server_route(&fz.srv, "GET", "/big", h_big, &fz) == 0);
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
    int fd;          /* -1: no connection in this slot */
    bool reading;    /* the client reads what the server sends (else it leaves it unread) */
    bool shut;       /* the client half-closed */
    bool eof;        /* the server's FIN (or a reset) was read */
    size_t received; /* bytes the server sent */
    size_t mark;     /* received when the client last sent: a reply comes after it */
    bool awaiting;   /* sent since the last wait: a reply may be on its way */
    char first[9];   /* its first bytes */
} client_t;

/* Read and discard what the server sent so far (only while the client reads). */
static void client_drain(client_t *cl)
{
    char buf[16384];
    while (cl->fd >= 0 && cl->reading && !cl->eof) {
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

static void drain_all(client_t *cls)
{
    for (int i = 0; i < FUZZ_SLOTS; i++)
        client_drain(&cls[i]);
}

/* Whatever a connection received starts as a response does. */
static void check_first_bytes(const client_t *cl)
{
    if (cl->received >= sizeof cl->first)
        FUZZ_CHECK(memcmp(cl->first, "HTTP/1.1 ", 9) == 0);
}

/* End the client side of a connection: closed, with a reset or not. */
static void client_close(client_t *cl, bool reset)
{
    if (cl->fd < 0)
        return;
    check_first_bytes(cl);
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(cl->fd);
    cl->fd = -1;
}

/* One loop turn without blocking, then read what arrived. */
static void pump(fuzz_http_t *fz, client_t *cls)
{
    uv_run(&fz->loop, UV_RUN_NOWAIT);
    drain_all(cls);
}

/* Wait (at most ms) until the loop or a reading client has something to do; not at all when the
 * loop has work pending already (a handle closing, say). */
static void wait_event_ms(fuzz_http_t *fz, client_t *cls, int ms)
{
    int due = uv_backend_timeout(&fz->loop);
    if (due == 0)
        return;
    if (due > 0 && due < ms)
        ms = due;
    struct pollfd p[1 + FUZZ_SLOTS];
    nfds_t n = 0;
    p[n++] = (struct pollfd){.fd = uv_backend_fd(&fz->loop), .events = POLLIN};
    for (int i = 0; i < FUZZ_SLOTS; i++)
        if (cls[i].fd >= 0 && cls[i].reading && !cls[i].eof)
            p[n++] = (struct pollfd){.fd = cls[i].fd, .events = POLLIN};
    poll(p, n, ms);
}

static void wait_event(fuzz_http_t *fz, client_t *cls)
{
    wait_event_ms(fz, cls, FUZZ_POLL_MS);
}

/* Send n bytes, turning the loop while the socket is full. Stops (without failing) once the
 * server has gone or will not take more: a server that stopped reading this client (its write
 * queue is long and the client does not read) leaves the rest unsent after a bound. */
static void client_send(fuzz_http_t *fz, client_t *cls, client_t *cl, const uint8_t *p, size_t n)
{
    if (cl->shut)
        return;
    for (int turns = 0; n > 0 && turns < FUZZ_MAX_TURNS; turns++) {
        ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return; /* EPIPE, ECONNRESET: the server closed */
        if (!cl->reading)
            return; /* the server waits for us to read: leave the rest */
        pump(fz, cls);
        wait_event(fz, cls);
    }
}

/* Connect to the server from 127.1.x.y, a source address that changes with every connection:
 * each connection leaves a TIME_WAIT on the client side, and a fresh address keeps the ephemeral
 * ports from running out even where TIME_WAIT reuse is off. The receive buffer is small (set
 * before connecting, so the window stays small). */
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
        int one = 1, rcvbuf = FUZZ_RCVBUF;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one); /* Linux 4.2+ */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
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

/* The connection of slot i, opened (and accepted by the server) if there is none; NULL once the
 * input has used FUZZ_MAX_CONNS connections. */
static client_t *slot_conn(fuzz_http_t *fz, client_t *cls, int i, int *opened)
{
    client_t *cl = &cls[i];
    if (cl->fd >= 0)
        return cl;
    if (*opened == FUZZ_MAX_CONNS)
        return NULL;
    uint64_t accepted = fz->srv.stats.connections_accepted;
    *cl = (client_t){.fd = client_connect(fz), .reading = true};
    (*opened)++;
    /* Let the server accept it now, so that every connection is counted whatever comes next. */
    for (int turns = 0; fz->srv.stats.connections_accepted == accepted; turns++) {
        FUZZ_CHECK(turns < FUZZ_MAX_TURNS);
        pump(fz, cls);
        if (fz->srv.stats.connections_accepted == accepted)
            wait_event(fz, cls);
    }
    return cl;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_t *fz = fuzz_setup();
    const hb_http_stats_t before = fz->srv.stats;
    fz->calls = fz->silent = 0;
    memset(fz->by_class, 0, sizeof fz->by_class);

    client_t cls[FUZZ_SLOTS];
    for (int i = 0; i < FUZZ_SLOTS; i++)
        cls[i] = (client_t){.fd = -1};
    int opened = 0;
    size_t at = 0;
    while (at < size) {
        uint8_t b = data[at++];
        unsigned kind = b >> 4, arg = (b >> 2) & 3;
        client_t *cl = slot_conn(fz, cls, b & 3, &opened);
        if (cl == NULL)
            break;
        if (kind == 0 || kind >= 8) { /* send */
            size_t n = 0;
            if (kind == 0 && at + 2 <= size) {
                n = (size_t)data[at] << 8 | data[at + 1];
                at += 2;
            } else if (kind >= 8 && at < size) {
                n = data[at++];
            }
            n = n < size - at ? n : size - at;
            cl->mark = cl->received;
            cl->awaiting = n > 0;
            client_send(fz, cls, cl, data + at, n);
            at += n;
            continue; /* the server reads it at the next pump, wait, send or the end */
        }
        switch (kind) {
        case 1:
            for (unsigned k = 0; k < (arg + 1) * 2; k++)
                pump(fz, cls);
            break;
        case 2:
            if (!cl->shut)
                shutdown(cl->fd, SHUT_WR);
            cl->shut = true;
            break;
        case 3:
            client_close(cl, true);
            break;
        case 4:
            cl->reading = false;
            break;
        case 5:
            cl->reading = true;
            break;
        case 6:
            client_close(cl, false);
            break;
        case 7: { /* wait until a reply to the last send has begun to arrive */
            if (!cl->awaiting)
                break;
            bool was = cl->reading;
            cl->reading = true;
            for (int k = 0; k < FUZZ_WAIT_TURNS && cl->received == cl->mark && !cl->eof; k++) {
                pump(fz, cls);
                wait_event_ms(fz, cls, FUZZ_WAIT_POLL_MS);
            }
            cl->reading = was;
            cl->awaiting = false;
            break;
        }
        }
    }

    /* The end: every connection left half-closes and reads to its end; run until the server has
     * closed every connection, every handle of them closed (and its memory freed). */
    for (int i = 0; i < FUZZ_SLOTS; i++) {
        if (cls[i].fd < 0)
            continue;
        if (!cls[i].shut)
            shutdown(cls[i].fd, SHUT_WR);
        cls[i].shut = cls[i].reading = true;
    }
    int turns = 0;
    for (;; turns++) {
        pump(fz, cls);
        bool all_eof = true;
        for (int i = 0; i < FUZZ_SLOTS; i++)
            all_eof = all_eof && (cls[i].fd < 0 || cls[i].eof);
        if (all_eof && fz->srv.stats.connections_open == 0 && loop_handles(&fz->loop) == 1)
            break;
        if (turns == FUZZ_MAX_TURNS) {
            fprintf(stderr,
                    "fuzz_http: the server kept a connection open: %" PRIu64 " accepted, %" PRIu64
                    " open, %u handles\n",
                    fz->srv.stats.connections_accepted - before.connections_accepted,
                    fz->srv.stats.connections_open, loop_handles(&fz->loop));
            abort();
        }
        wait_event(fz, cls);
    }
    for (int i = 0; i < FUZZ_SLOTS; i++)
        client_close(&cls[i], false);

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
    FUZZ_CHECK(now->connections_accepted - before.connections_accepted == (uint64_t)opened);
    FUZZ_CHECK(now->connections_rejected == before.connections_rejected);
    FUZZ_CHECK(now->idle_timeouts == before.idle_timeouts);
    FUZZ_CHECK(now->connections_open == 0);
    /* At most one error ends a connection: a malformed or too large request. */
    FUZZ_CHECK(bad + large <= (uint64_t)opened);
    /* A response answers a request or the error that ended a connection; a request may go
     * unanswered only because its peer left (the write failed, or nothing was sent). */
    FUZZ_CHECK(responses <= requests + bad + large);
    FUZZ_CHECK(fz->calls <= requests);
    /* The handlers' own answers are counted exactly; the library's are 4xx, and 500 for /silent. */
    FUZZ_CHECK(r2 == fz->by_class[2] && r3 == fz->by_class[3]);
    FUZZ_CHECK(r5 >= fz->by_class[5] && r5 - fz->by_class[5] <= fz->silent);
    FUZZ_CHECK(r4 >= fz->by_class[4]);
    (void)turns;
    return 0;
}
