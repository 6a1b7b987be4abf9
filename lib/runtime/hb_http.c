/* The HTTP/1.1 control-endpoint server: connections on the library's socket layer (hb_sock.h)
 * around Debian's http-parser, the route table and responses (the query-string helpers are the
 * core's, hb_query.c). Over 800 lines for one job: reading, parsing and answering a connection
 * share its private state. */
#include "hongbao/http.h"
#include "hongbao/query.h"

#include <http_parser.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hb_internal.h"
#include "hb_sock.h"

/* After the last response of a connection: how long to wait for the peer's EOF. */
#define HB_HTTP_LINGER_MS 2000
/* Stop reading a connection while this many response bytes wait in its write queue. */
#define HB_HTTP_WRITE_HIGH_WATER (64 * 1024)
#define HB_HTTP_BACKLOG          128
/* The socket's own bound on its queue: none in effect. The queue is bounded by the high-water
 * mark above (no request is parsed past it) plus the one response that crossed it. */
#define HB_HTTP_MAX_QUEUED UINT32_MAX
/* A response head (status line and headers) up to this size is built on the stack. */
#define HB_HTTP_HEAD_STACK 2048
/* Status line, Content-Type, Content-Length, Connection, the handler's headers, blank line. */
#define HB_HTTP_RESPONSE_FMT "HTTP/1.1 %d %s\r\n%s%s%s%sConnection: %s\r\n%.*s\r\n"

static const char text_plain[] = "text/plain; charset=utf-8";
static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* A byte range of a connection's buffer. */
typedef struct hb_http_span {
    uint32_t off;
    uint32_t len;
} hb_http_span_t;

typedef struct hb_http_header {
    hb_http_span_t name;
    hb_http_span_t value;
} hb_http_header_t;

struct hb_http_response {
    struct hb_http_conn *conn;
    bool responded;
    bool head; /* the request was HEAD: send no body */
    size_t hdrs_len;
    char hdrs[HB_HTTP_RESPONSE_HEADERS_MAX];
};

/* One accepted connection, its read buffer allocated with it. Freed when both handles closed. */
typedef struct hb_http_conn {
    hb_sock_t sock; /* sock.poll.data: the connection */
    uv_timer_t timer;
    hb_http_server_t *srv;
    struct hb_http_conn *prev;
    struct hb_http_conn *next;
    http_parser parser;
    /* The message being parsed. */
    hb_http_span_t url;
    hb_http_span_t body;
    hb_http_header_t headers[HB_HTTP_MAX_HEADERS];
    unsigned nheaders;
    uint32_t span_end; /* end of the last URL or header byte seen */
    bool in_value;     /* the last header callback was a value */
    bool complete;     /* on_message_complete ran; the message waits for dispatch */
    bool keep_alive;   /* of the message just completed */
    int reject_status; /* set by a callback that stopped the parser: 413 or 431 */
    /* The request being answered. */
    hb_http_request_t req;
    struct hb_http_response res;
    /* Connection state. */
    unsigned handles; /* of sock and timer, not yet closed */
    bool closing;     /* both handles are closing: forgotten by the server */
    bool draining;    /* no more requests: a lingering close (hb__sock_end) until EOF or timer */
    bool read_paused; /* reading stopped while the write queue is long */
    size_t start;     /* where the message being parsed begins in buf */
    size_t parsed;    /* bytes of buf given to the parser */
    size_t len;       /* bytes in buf */
    size_t cap;
    char buf[];
} hb_http_conn_t;

/* The listening side, allocated at init and freed once closed. A server that never listened
 * has no socket to close: `later`, a handle closed as soon as it is made, then brings the close
 * callback from the loop. */
struct hb_http_listen {
    hb_listener_t l; /* l.poll.data: the server */
    uv_timer_t later;
    bool started; /* hb__listener_start was called: the listener holds descriptors */
};

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t n);
static int on_header_field(http_parser *p, const char *at, size_t n);
static int on_header_value(http_parser *p, const char *at, size_t n);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t n);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- small string helpers ---- */

static int ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static bool ascii_case_equal(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i])) {
            return false;
        }
    }
    return true;
}

static bool has_ctl_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* An RFC 9110 token character. */
static bool is_token_char(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') {
        return true;
    }
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
        return true;
    }
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static const char *status_reason(int status)
{
    const char *r = http_status_str((enum http_status)status);
    return r[0] == '<' ? "Unknown" : r;
}

/* ---- connection lifetime ---- */

static void server_handle_closed(hb_http_server_t *srv)
{
    srv->handles--;
    if (srv->closing && srv->handles == 0) {
        /* The lifetime rule: srv is whole and readable in the callback, which may free it; the
         * library's own memory goes after, without touching srv. */
        struct hb_http_listen *ls = srv->listen;
        hb_http_close_cb cb = srv->close_cb;
        srv->close_cb = NULL;
        if (cb != NULL)
            cb(srv);
        free(ls);
    }
}

static void conn_handle_closed(hb_http_conn_t *c)
{
    hb_http_server_t *srv = c->srv;
    if (--c->handles == 0) {
        free(c);
    }
    server_handle_closed(srv);
}

static void on_timer_closed(uv_handle_t *h)
{
    conn_handle_closed(h->data);
}

/* Forget c: unlink it, count it closed, close its timer. The socket is closed or closing. */
static void conn_forget(hb_http_conn_t *c)
{
    c->closing = true;
    hb_http_server_t *srv = c->srv;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    srv->stats.connections_open--;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* Close now: output still queued is dropped. */
static void conn_close(hb_http_conn_t *c)
{
    if (c->closing) {
        return;
    }
    hb__sock_close(&c->sock);
    conn_forget(c);
}

static void on_timer(uv_timer_t *t)
{
    hb_http_conn_t *c = t->data;
    if (!c->draining) {
        c->srv->stats.idle_timeouts++;
    }
    conn_close(c);
}

static void conn_process(hb_http_conn_t *c);

/* Take no more requests: FIN after the queued responses, then discard input until the peer's EOF
 * or the linger timer, so that the peer reads our last response rather than a reset. */
static void conn_drain(hb_http_conn_t *c)
{
    if (c->closing || c->draining) {
        return;
    }
    c->draining = true;
    hb__sock_end(&c->sock); /* closes the socket by itself once the peer's EOF comes */
    uint64_t linger = c->srv->opts.idle_timeout_ms < HB_HTTP_LINGER_MS
                          ? c->srv->opts.idle_timeout_ms
                          : HB_HTTP_LINGER_MS;
    uv_timer_start(&c->timer, on_timer, linger, 0);
}

/* ---- socket callbacks ---- */

static hb_http_conn_t *sock_conn(hb_sock_t *s)
{
    return s->poll.data;
}

static void on_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    hb_http_conn_t *c = sock_conn(s);
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hb_http_conn_t *c = sock_conn(s);
    (void)buf;
    if (nread == UV_EOF) {
        conn_drain(c); /* answers already queued still go out */
        return;
    }
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    uv_timer_start(&c->timer, on_timer, c->srv->opts.idle_timeout_ms, 0);
    conn_process(c);
}

/* Part of the responses reached the kernel: once the queue is below half the high-water mark,
 * read and parse again (the requests held back while the peer was not reading). */
static void on_progress(hb_sock_t *s)
{
    hb_http_conn_t *c = sock_conn(s);
    if (!c->read_paused || c->closing || c->draining ||
        hb__sock_queued(&c->sock) > HB_HTTP_WRITE_HIGH_WATER / 2) {
        return;
    }
    c->read_paused = false;
    if (hb__sock_read_start(&c->sock) != 0) {
        conn_close(c);
        return;
    }
    conn_process(c);
}

static void on_write_error(hb_sock_t *s, int err)
{
    (void)err;
    conn_close(sock_conn(s));
}

static void on_sock_closed(hb_sock_t *s)
{
    hb_http_conn_t *c = sock_conn(s);
    if (!c->closing) {
        conn_forget(c); /* the lingering close ended with the peer's EOF */
    }
    conn_handle_closed(c);
}

static const hb_sock_ops_t conn_ops = {
    .alloc = on_alloc,
    .read = on_read,
    .progress = on_progress,
    .drained = on_progress,
    .write_error = on_write_error,
    .closed = on_sock_closed,
};

/* ---- responses ---- */

static void response_reset(struct hb_http_response *res, hb_http_conn_t *c, bool head)
{
    res->conn = c;
    res->responded = false;
    res->head = head;
    res->hdrs_len = 0;
}

static void count_status(hb_http_stats_t *st, int status)
{
    switch (status / 100) {
    case 2:
        st->responses_2xx++;
        break;
    case 3:
        st->responses_3xx++;
        break;
    case 4:
        st->responses_4xx++;
        break;
    default:
        st->responses_5xx++;
        break;
    }
}

int hb_http_respond(hb_http_response_t *res, int status, const char *content_type, const void *body,
                    size_t len)
{
    if (res == NULL || status < 200 || status > 599 || (body == NULL && len > 0) || len > INT_MAX) {
        return UV_EINVAL;
    }
    if ((status == 204 || status == 304) && len > 0) {
        return UV_EINVAL;
    }
    if (content_type != NULL && has_ctl_break(content_type)) {
        return UV_EINVAL;
    }
    if (res->responded) {
        return UV_EALREADY;
    }
    hb_http_conn_t *c = res->conn;
    hb_http_server_t *srv = c->srv;
    res->responded = true;
    if (c->closing || c->draining || srv->closing) {
        return UV_ECANCELED;
    }

    const bool keep = c->keep_alive;
    char clen[48] = "";
    if (status != 204) {
        snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", len);
    }
    const char *ct_name = content_type != NULL ? "Content-Type: " : "";
    const char *ct_value = content_type != NULL ? content_type : "";
    const char *ct_end = content_type != NULL ? "\r\n" : "";
    const char *conn_value = keep ? "keep-alive" : "close";
    const char *reason = status_reason(status);
    int hlen = snprintf(NULL, 0, HB_HTTP_RESPONSE_FMT, status, reason, ct_name, ct_value, ct_end,
                        clen, conn_value, (int)res->hdrs_len, res->hdrs);
    if (hlen < 0) {
        return UV_EINVAL;
    }
    size_t body_len = res->head ? 0 : len;
    char stack_head[HB_HTTP_HEAD_STACK];
    char *head = (size_t)hlen < sizeof stack_head ? stack_head : malloc((size_t)hlen + 1);
    if (head == NULL) {
        conn_close(c); /* a response missing from the sequence would mismatch the next ones */
        return UV_ENOMEM;
    }
    snprintf(head, (size_t)hlen + 1, HB_HTTP_RESPONSE_FMT, status, reason, ct_name, ct_value,
             ct_end, clen, conn_value, (int)res->hdrs_len, res->hdrs);
    /* What the kernel does not take now is copied to the socket's queue. */
    uv_buf_t b[2] = {uv_buf_init(head, (unsigned)hlen),
                     uv_buf_init((char *)(uintptr_t)body, (unsigned)body_len)};
    int r = hb__sock_writev(&c->sock, b, body_len > 0 ? 2 : 1);
    if (head != stack_head) {
        free(head);
    }
    if (r != 0) {
        conn_close(c);
        return r;
    }
    count_status(&srv->stats, status);
    return 0;
}

int hb_http_response_header(hb_http_response_t *res, const char *name, const char *value)
{
    if (res == NULL || name == NULL || value == NULL || name[0] == '\0') {
        return UV_EINVAL;
    }
    size_t nlen = strlen(name);
    for (size_t i = 0; i < nlen; i++) {
        if (!is_token_char((unsigned char)name[i])) {
            return UV_EINVAL;
        }
    }
    static const char *const reserved[] = {"content-length", "connection", "transfer-encoding"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        if (strlen(reserved[i]) == nlen && ascii_case_equal(reserved[i], name, nlen)) {
            return UV_EINVAL;
        }
    }
    if (has_ctl_break(value)) {
        return UV_EINVAL;
    }
    if (res->responded) {
        return UV_EALREADY;
    }
    size_t vlen = strlen(value);
    size_t need = nlen + 2 + vlen + 2;
    if (need > sizeof res->hdrs - res->hdrs_len) {
        return UV_ENOBUFS;
    }
    char *p = res->hdrs + res->hdrs_len;
    memcpy(p, name, nlen);
    memcpy(p + nlen, ": ", 2);
    memcpy(p + nlen + 2, value, vlen);
    memcpy(p + nlen + 2 + vlen, "\r\n", 2);
    res->hdrs_len += need;
    return 0;
}

/* Answer with a short text/plain body from the library itself. */
static void respond_text(hb_http_response_t *res, int status, const char *text)
{
    hb_http_respond(res, status, text_plain, text, strlen(text));
}

/* ---- parsing ---- */

static void message_reset(hb_http_conn_t *c)
{
    c->url = (hb_http_span_t){0, 0};
    c->body = (hb_http_span_t){0, 0};
    c->nheaders = 0;
    c->span_end = 0;
    c->in_value = false;
    c->reject_status = 0;
}

/* Add n bytes at `at` (inside buf, already parsed) to span s, moving them down to follow s when a
 * gap (chunk framing, a folded line break) separates them: the gap is parsed bytes nobody uses. */
static void span_append(hb_http_conn_t *c, hb_http_span_t *s, const char *at, size_t n)
{
    uint32_t off = (uint32_t)(at - c->buf);
    if (s->len == 0) {
        s->off = off;
    } else if (s->off + s->len != off) {
        memmove(c->buf + s->off + s->len, at, n);
    }
    s->len += (uint32_t)n;
}

static void note_span_end(hb_http_conn_t *c, const char *at, size_t n)
{
    uint32_t end = (uint32_t)(at - c->buf + (ptrdiff_t)n);
    if (end > c->span_end) {
        c->span_end = end;
    }
}

static int on_message_begin(http_parser *p)
{
    message_reset(p->data);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    hb_http_conn_t *c = p->data;
    span_append(c, &c->url, at, n);
    note_span_end(c, at, n);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    hb_http_conn_t *c = p->data;
    if (c->nheaders == 0 || c->in_value) {
        if (c->nheaders == HB_HTTP_MAX_HEADERS) {
            c->reject_status = 431;
            return -1;
        }
        c->headers[c->nheaders++] = (hb_http_header_t){{0, 0}, {0, 0}};
        c->in_value = false;
    }
    span_append(c, &c->headers[c->nheaders - 1].name, at, n);
    note_span_end(c, at, n);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    hb_http_conn_t *c = p->data;
    if (c->nheaders == 0) {
        return -1; /* the parser gives a field first */
    }
    c->in_value = true;
    span_append(c, &c->headers[c->nheaders - 1].value, at, n);
    note_span_end(c, at, n);
    return 0;
}

/* The header field called name of the message being parsed, or NULL. */
static const hb_http_header_t *find_header(const hb_http_conn_t *c, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < c->nheaders; i++) {
        const hb_http_header_t *h = &c->headers[i];
        if (h->name.len == n && ascii_case_equal(c->buf + h->name.off, name, n)) {
            return h;
        }
    }
    return NULL;
}

static void trim_value(const hb_http_conn_t *c, hb_http_span_t *v)
{
    while (v->len > 0 &&
           (c->buf[v->off + v->len - 1] == ' ' || c->buf[v->off + v->len - 1] == '\t')) {
        v->len--;
    }
}

/* Send "100 Continue" when the client asked for it and a body is coming. */
static void maybe_continue(hb_http_conn_t *c)
{
    const http_parser *p = &c->parser;
    bool body_coming =
        (p->flags & F_CHUNKED) != 0 || (p->content_length != UINT64_MAX && p->content_length > 0);
    if (!body_coming || p->http_major != 1 || p->http_minor < 1) {
        return;
    }
    const hb_http_header_t *h = find_header(c, "expect");
    if (h == NULL) {
        return;
    }
    hb_http_span_t v = h->value;
    trim_value(c, &v);
    if (v.len != 12 || !ascii_case_equal(c->buf + v.off, "100-continue", 12)) {
        return;
    }
    /* A failed write is not acted on here, inside the parser: the next one fails again and
     * closes, or the read side reports the error. */
    (void)hb__sock_write(&c->sock, continue_line, sizeof continue_line - 1);
}

static int on_headers_complete(http_parser *p)
{
    hb_http_conn_t *c = p->data;
    if ((p->flags & F_CHUNKED) == 0 && p->content_length != UINT64_MAX) {
        /* span_end - start is a lower bound of the header's size. */
        uint64_t head = c->span_end > c->start ? c->span_end - c->start : 0;
        if (p->content_length > c->cap || head + p->content_length > c->cap) {
            c->reject_status = 413;
            return -1;
        }
    }
    maybe_continue(c);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    hb_http_conn_t *c = p->data;
    span_append(c, &c->body, at, n);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hb_http_conn_t *c = p->data;
    c->complete = true;
    c->keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
    http_parser_pause(p, 1); /* back to conn_process, which dispatches */
    return 0;
}

/* ---- dispatch ---- */

static void respond_405(hb_http_server_t *srv, hb_http_response_t *res, const char *path,
                        size_t path_len)
{
    char allow[HB_HTTP_MAX_ROUTES * (HB_HTTP_ROUTE_METHOD_MAX + 2) + 1];
    size_t n = 0;
    for (unsigned i = 0; i < srv->nroutes; i++) {
        const struct hb_http_route *r = &srv->routes[i];
        if (strlen(r->path) == path_len && memcmp(r->path, path, path_len) == 0) {
            n +=
                (size_t)snprintf(allow + n, sizeof allow - n, "%s%s", n > 0 ? ", " : "", r->method);
        }
    }
    hb_http_response_header(res, "Allow", allow);
    respond_text(res, 405, "method not allowed\n");
}

/* Fill c->req from the message just parsed; false when its URL is unusable. */
static bool request_build(hb_http_conn_t *c)
{
    hb_http_request_t *req = &c->req;
    const http_parser *p = &c->parser;
    struct http_parser_url u;
    http_parser_url_init(&u);
    /* Origin or absolute form only: a CONNECT authority fails here and gets a 400. */
    if (c->url.len == 0 || http_parser_parse_url(c->buf + c->url.off, c->url.len, 0, &u) != 0) {
        return false;
    }
    req->server = c->srv;
    req->conn = c;
    req->method = http_method_str((enum http_method)p->method);
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    /* Terminate strings in place: the byte after each is a delimiter already parsed. */
    if (u.field_set & (1u << UF_PATH)) {
        char *path = c->buf + c->url.off + u.field_data[UF_PATH].off;
        req->path = path;
        req->path_len = u.field_data[UF_PATH].len;
        path[req->path_len] = '\0';
    } else {
        req->path = "/";
        req->path_len = 1;
    }
    if (u.field_set & (1u << UF_QUERY)) {
        char *query = c->buf + c->url.off + u.field_data[UF_QUERY].off;
        req->query = query;
        req->query_len = u.field_data[UF_QUERY].len;
        query[req->query_len] = '\0';
    } else {
        req->query = "";
        req->query_len = 0;
    }
    for (unsigned i = 0; i < c->nheaders; i++) {
        hb_http_span_t *v = &c->headers[i].value;
        trim_value(c, v);
        if (v->len > 0) {
            c->buf[v->off + v->len] = '\0';
        }
    }
    req->body = c->body.len > 0 ? c->buf + c->body.off : "";
    req->body_len = c->body.len;
    return true;
}

/* Whether req carries the server's bearer token (compared in constant time). */
static bool authorized(const hb_http_server_t *srv, const hb_http_request_t *req)
{
    if (srv->token[0] == '\0') {
        return true;
    }
    const char *h = hb_http_request_header(req, "authorization");
    if (h == NULL || strncmp(h, "Bearer ", 7) != 0) {
        return false;
    }
    h += 7;
    size_t want = strlen(srv->token), got = strlen(h);
    unsigned diff = (unsigned)(want ^ got);
    for (size_t i = 0; i < want; i++) {
        diff |= (unsigned char)srv->token[i] ^ (unsigned char)(i < got ? h[i] : 0);
    }
    return diff == 0;
}

int hb_http_is_loopback(const char *host)
{
    struct sockaddr_storage ss;
    if (hb__sock_addr(host, 0, &ss) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        return (ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    }
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&ss)->sin6_addr);
}

static void conn_dispatch(hb_http_conn_t *c)
{
    hb_http_server_t *srv = c->srv;
    hb_http_response_t *res = &c->res;
    srv->stats.requests++;
    response_reset(res, c, c->parser.method == HTTP_HEAD);
    if (!request_build(c)) {
        c->keep_alive = false;
        srv->stats.bad_requests++;
        respond_text(res, 400, "bad request: invalid URL\n");
        return;
    }
    const hb_http_request_t *req = &c->req;
    if (!authorized(srv, req)) {
        srv->stats.unauthorized++;
        hb_http_response_header(res, "WWW-Authenticate", "Bearer");
        respond_text(res, 401,
                     "unauthorized: this endpoint needs 'Authorization: Bearer <token>'\n");
        return;
    }
    const struct hb_http_route *match = NULL;
    bool path_known = false;
    for (unsigned i = 0; i < srv->nroutes && match == NULL; i++) {
        const struct hb_http_route *r = &srv->routes[i];
        if (strlen(r->path) != req->path_len || memcmp(r->path, req->path, req->path_len) != 0) {
            continue;
        }
        path_known = true;
        if (r->method[0] == '\0' || strcmp(r->method, req->method) == 0) {
            match = r;
        }
    }
    if (match != NULL) {
        match->cb(req, res, match->arg);
        if (!res->responded) {
            respond_text(res, 500, "handler did not respond\n");
        }
    } else if (path_known) {
        respond_405(srv, res, req->path, req->path_len);
    } else {
        respond_text(res, 404, "not found\n");
    }
}

/* The parser stopped on an error: answer it and take no more requests. */
static void conn_fail(hb_http_conn_t *c, enum http_errno err, int status)
{
    hb_http_server_t *srv = c->srv;
    char text[128];
    if (status == 0) {
        status = c->reject_status != 0 ? c->reject_status : err == HPE_HEADER_OVERFLOW ? 413 : 400;
    }
    if (status == 400) {
        srv->stats.bad_requests++;
        snprintf(text, sizeof text, "bad request: %s\n", http_errno_description(err));
    } else {
        srv->stats.too_large++;
        snprintf(text, sizeof text, "%s\n",
                 status == 431 ? "too many header fields" : "request too large");
    }
    c->keep_alive = false;
    response_reset(&c->res, c, false);
    respond_text(&c->res, status, text);
    conn_drain(c);
}

/* Move the unfinished message to the front of buf. */
static void conn_compact(hb_http_conn_t *c)
{
    size_t s = c->start;
    if (s == 0) {
        return;
    }
    memmove(c->buf, c->buf + s, c->len - s);
    c->len -= s;
    c->parsed -= s;
    c->start = 0;
    c->span_end = c->span_end > s ? (uint32_t)(c->span_end - s) : 0;
    hb_http_span_t *spans[2 + 2 * HB_HTTP_MAX_HEADERS];
    unsigned n = 0;
    spans[n++] = &c->url;
    spans[n++] = &c->body;
    for (unsigned i = 0; i < c->nheaders; i++) {
        spans[n++] = &c->headers[i].name;
        spans[n++] = &c->headers[i].value;
    }
    for (unsigned i = 0; i < n; i++) {
        spans[i]->off = spans[i]->len > 0 ? (uint32_t)(spans[i]->off - s) : 0;
    }
}

/* Parse what was read, answering each complete request in order. While the peer leaves more than
 * HB_HTTP_WRITE_HIGH_WATER bytes of responses unread, stop: reading and parsing resume in
 * on_progress once they drain, so a pipelining client cannot make the queue grow unbounded. */
static void conn_process(hb_http_conn_t *c)
{
    while (c->parsed < c->len) {
        if (hb__sock_queued(&c->sock) > HB_HTTP_WRITE_HIGH_WATER) {
            break;
        }
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->buf + c->parsed,
                                       c->len - c->parsed);
        c->parsed += n;
        if (c->complete) {
            c->complete = false;
            http_parser_pause(&c->parser, 0);
            conn_dispatch(c);
            message_reset(c);
            c->start = c->parsed;
            if (c->closing || c->draining) {
                return;
            }
            if (!c->keep_alive) {
                conn_drain(c);
                return;
            }
            continue;
        }
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err != HPE_OK) {
            conn_fail(c, err, 0);
            return;
        }
    }
    conn_compact(c);
    if (c->parsed == c->len && c->len == c->cap) {
        conn_fail(c, HPE_OK, 413); /* full, and still no complete request */
        return;
    }
    if (hb__sock_queued(&c->sock) > HB_HTTP_WRITE_HIGH_WATER && !c->read_paused) {
        c->read_paused = true;
        if (hb__sock_read_stop(&c->sock) != 0) {
            conn_close(c);
        }
    }
}

/* ---- the listener ---- */

/* A connection refused (fd < 0: an accept error; the listener took and closed the peer when out
 * of descriptors): said at most once a second. */
static void note_refused(hb_http_server_t *srv, int err)
{
    srv->refused_unlogged++;
    uint64_t now = uv_now(srv->loop);
    if (srv->opts.log == NULL || now < srv->refused_log_ms)
        return;
    hb__vlogf_line(srv->opts.log, srv->opts.log_arg,
                   "connection refused: %s; %llu refused since the last line",
                   err != 0 ? hb_strerror(err) : "max_connections reached",
                   (unsigned long long)srv->refused_unlogged);
    srv->refused_unlogged = 0;
    srv->refused_log_ms = now + 1000;
}

static void on_accept(hb_listener_t *l, int fd)
{
    hb_http_server_t *srv = l->poll.data;
    if (fd < 0) {
        note_refused(srv, fd);
        return;
    }
    if (srv->closing) {
        close(fd);
        return;
    }
    size_t cap = srv->opts.max_request_bytes;
    hb_http_conn_t *c = NULL;
    if (srv->stats.connections_open < srv->opts.max_connections) {
        c = malloc(sizeof *c + cap);
    }
    if (c == NULL) {
        srv->stats.connections_rejected++;
        close(fd); /* accepted and closed at once */
        note_refused(srv, 0);
        return;
    }
    memset(c, 0, sizeof *c);
    c->srv = srv;
    c->cap = cap;
    if (hb__sock_open(srv->loop, &c->sock, fd, &conn_ops, HB_HTTP_MAX_QUEUED, 1) != 0) {
        free(c); /* fd closed by hb__sock_open */
        srv->stats.connections_rejected++;
        return;
    }
    c->sock.poll.data = c;
    uv_timer_init(srv->loop, &c->timer); /* cannot fail */
    c->timer.data = c;
    c->handles = 2;
    srv->handles += 2;
    c->next = srv->conns;
    if (srv->conns != NULL) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    srv->stats.connections_open++;
    srv->stats.connections_accepted++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_timer_start(&c->timer, on_timer, srv->opts.idle_timeout_ms, 0);
    if (hb__sock_read_start(&c->sock) != 0) {
        conn_close(c);
    }
}

static void listen_freed(hb_http_server_t *srv)
{
    server_handle_closed(srv);
}

static void on_listener_closed(hb_listener_t *l)
{
    listen_freed(l->poll.data);
}

static void on_later_closed(uv_handle_t *h)
{
    listen_freed(h->data);
}

int hb_http_server_init(uv_loop_t *loop, hb_http_server_t *srv, const hb_http_options_t *opts)
{
    if (loop == NULL || srv == NULL) {
        return UV_EINVAL;
    }
    hb_http_options_t o = {0};
    if (opts != NULL) {
        o = *opts;
    }
    if (o.max_request_bytes == 0) {
        o.max_request_bytes = HB_HTTP_DEFAULT_MAX_REQUEST_BYTES;
    }
    if (o.max_request_bytes < HB_HTTP_MIN_REQUEST_BYTES ||
        o.max_request_bytes > HB_HTTP_MAX_REQUEST_BYTES) {
        return UV_EINVAL;
    }
    if (o.max_connections == 0) {
        o.max_connections = HB_HTTP_DEFAULT_MAX_CONNECTIONS;
    }
    if (o.idle_timeout_ms == 0) {
        o.idle_timeout_ms = HB_HTTP_DEFAULT_IDLE_TIMEOUT_MS;
    }
    /* "" is refused rather than taken as "no token": NULL says that. */
    size_t token_len = o.bearer_token != NULL ? strlen(o.bearer_token) : 0;
    if (o.bearer_token != NULL &&
        (token_len == 0 || token_len > HB_HTTP_TOKEN_MAX || strpbrk(o.bearer_token, " \t\r\n"))) {
        return UV_EINVAL;
    }
    struct hb_http_listen *ls = calloc(1, sizeof *ls);
    if (ls == NULL) {
        return UV_ENOMEM;
    }
    memset(srv, 0, sizeof *srv);
    if (token_len > 0) {
        memcpy(srv->token, o.bearer_token, token_len + 1);
    }
    o.bearer_token = token_len > 0 ? srv->token : NULL;
    ls->l.poll.data = srv;
    ls->later.data = srv;
    srv->listen = ls;
    srv->loop = loop;
    srv->opts = o;
    srv->handles = 1; /* the listening side, closed by hb_http_server_close */
    return 0;
}

int hb_http_server_listen(hb_http_server_t *srv, const char *host, int port)
{
    if (srv == NULL || srv->closing || srv->listening || port < 0 || port > 65535) {
        return UV_EINVAL;
    }
    struct hb_http_listen *ls = srv->listen;
    if (ls->started) {
        return UV_EINVAL; /* a listen that failed half-way: the server can only be closed */
    }
    if (host == NULL) {
        host = "0.0.0.0";
    }
    int fd;
    int r = hb__sock_listen_fd(host, port, HB_HTTP_BACKLOG, 0, &fd, NULL);
    if (r != 0) {
        return r;
    }
    ls->started = true;
    r = hb__listener_start(srv->loop, &ls->l, fd, 1, on_accept);
    if (r == 0) {
        srv->listening = 1;
    }
    return r;
}

int hb_http_server_port(const hb_http_server_t *srv)
{
    if (srv == NULL) {
        return UV_EINVAL;
    }
    if (!srv->listening) {
        return UV_EBADF;
    }
    return hb__sock_local_port(srv->listen->l.fd);
}

int hb_http_server_route(hb_http_server_t *srv, const char *method, const char *path,
                         hb_http_handler_cb cb, void *arg)
{
    if (srv == NULL || path == NULL || cb == NULL || path[0] != '/' ||
        (method != NULL && method[0] == '\0')) {
        return UV_EINVAL;
    }
    if (method == NULL) {
        method = "";
    }
    if (strlen(method) > HB_HTTP_ROUTE_METHOD_MAX || strlen(path) > HB_HTTP_ROUTE_PATH_MAX) {
        return UV_ENAMETOOLONG;
    }
    for (unsigned i = 0; i < srv->nroutes; i++) {
        const struct hb_http_route *r = &srv->routes[i];
        if (strcmp(r->path, path) == 0 && strcmp(r->method, method) == 0) {
            return UV_EEXIST;
        }
    }
    if (srv->nroutes == HB_HTTP_MAX_ROUTES) {
        return UV_ENOBUFS;
    }
    struct hb_http_route *r = &srv->routes[srv->nroutes++];
    memset(r, 0, sizeof *r);
    memcpy(r->method, method, strlen(method));
    memcpy(r->path, path, strlen(path));
    r->cb = cb;
    r->arg = arg;
    return 0;
}

void hb_http_server_close(hb_http_server_t *srv, hb_http_close_cb cb)
{
    if (srv == NULL || srv->closing) {
        return;
    }
    srv->closing = 1;
    srv->close_cb = cb;
    struct hb_http_listen *ls = srv->listen;
    if (ls->started && ls->l.inited) {
        hb__listener_close(&ls->l, on_listener_closed);
    } else {
        if (ls->started) {
            hb__listener_close(&ls->l, NULL); /* its descriptors, closed at once */
        }
        uv_timer_init(srv->loop, &ls->later); /* cannot fail */
        uv_close((uv_handle_t *)&ls->later, on_later_closed);
    }
    while (srv->conns != NULL) {
        conn_close(srv->conns);
    }
}

const char *hb_http_request_header(const hb_http_request_t *req, const char *name)
{
    if (req == NULL || name == NULL || req->conn == NULL) {
        return NULL;
    }
    const hb_http_conn_t *c = req->conn;
    const hb_http_header_t *h = find_header(c, name);
    if (h == NULL) {
        return NULL;
    }
    return h->value.len > 0 ? c->buf + h->value.off : "";
}

/* ---- query strings ---- */

static int bad_param(hb_http_response_t *res, const char *name, int err, bool ranged, uint64_t min,
                     uint64_t max)
{
    char text[256];
    const char *nm = name != NULL ? name : "";
    switch (err) {
    case UV_ENOENT:
        snprintf(text, sizeof text, "parameter '%.64s': missing\n", nm);
        break;
    case UV_EINVAL:
        snprintf(text, sizeof text, "parameter '%.64s': not a non-negative integer\n", nm);
        break;
    case UV_ERANGE:
        if (ranged) {
            snprintf(text, sizeof text,
                     "parameter '%.64s': out of range [%" PRIu64 ", %" PRIu64 "]\n", nm, min, max);
        } else {
            snprintf(text, sizeof text, "parameter '%.64s': out of range\n", nm);
        }
        break;
    default:
        snprintf(text, sizeof text, "parameter '%.64s': invalid (%s)\n", nm, hb_strerror(err));
        break;
    }
    return hb_http_respond(res, 400, text_plain, text, strlen(text));
}

int hb_http_bad_param(hb_http_response_t *res, const char *name, int err)
{
    return bad_param(res, name, err, false, 0, 0);
}

int hb_http_bad_param_range(hb_http_response_t *res, const char *name, int err, uint64_t min,
                            uint64_t max)
{
    return bad_param(res, name, err, true, min, max);
}
