/* The monitor's runtime half: the listener and the reporter connections on the library's socket
 * layer (hb_sock.h), the grace-period timer and the HTTP routes. What the reports add up to, when
 * a second is output and how it is rendered is the core's aggregate (hongbao/aggregate.h). */
#include "hb_clock.h"
#include "hb_internal.h"
#include "hongbao/monitor.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hb_sock.h"
#include "hongbao/proto.h"

#define LISTEN_BACKLOG 128
/* /api/series starts rendering into this much, /metrics into HB_MONITOR_METRICS_MAX; both double
 * up to the cap (the instances make either grow). */
#define SERIES_START (64u * 1024)
#define RENDER_CAP   (256u * 1024 * 1024)

/* One reporter connection. */
struct conn {
    hb_sock_t sock; /* sock.poll.data: the connection */
    hb_monitor_t *m;
    hb_aggregate_reporter_t rep; /* rep.data: the connection; joined while connected */
    size_t len;                  /* bytes of buf holding a partial report */
    uint8_t buf[HB_REPORT_SIZE];
};

struct hb_monitor_impl {
    hb_listener_t listener; /* listener.poll.data: the monitor */
    int listener_started;   /* hb__listener_start was called: close the listener */
    uv_timer_t timer;
    unsigned handles; /* handles on the loop and not yet closed */
    int listening;
    int closing;
    hb_monitor_close_cb close_cb;
    hb_aggregate_t agg; /* agg.data: the monitor; its reporters are the connections */
};

/* ---- small helpers ---- */

static uint64_t now_ms(const hb_monitor_t *m)
{
    return m->opts.now_ms(m->opts.now_arg);
}

static HB_PRINTF(2, 3) void log_line(hb_monitor_t *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(m->opts.log, m->opts.log_arg, fmt, ap);
    va_end(ap);
}

/* ---- output ---- */

/* The aggregate output s: count it, then hand it to the user. */
static void on_output(hb_aggregate_t *a, const hb_monitor_second_t *s, void *arg)
{
    hb_monitor_t *m = arg;
    (void)a;
    if (s->status == HB_MONITOR_COMPLETE)
        m->stats.seconds_complete++;
    else if (s->status == HB_MONITOR_GRACE)
        m->stats.seconds_grace++;
    else
        m->stats.seconds_incomplete++;
    if (m->opts.on_second != NULL)
        m->opts.on_second(m, s, m->opts.on_second_arg);
}

void hb_monitor_tick(hb_monitor_t *m)
{
    if (m == NULL || m->impl == NULL)
        return;
    hb_aggregate_tick(&m->impl->agg, now_ms(m));
}

void hb_monitor_flush(hb_monitor_t *m)
{
    if (m == NULL || m->impl == NULL)
        return;
    hb_aggregate_flush(&m->impl->agg, now_ms(m));
}

/* ---- connections ---- */

static void handle_closed(hb_monitor_t *m);

static void on_conn_closed(hb_sock_t *s)
{
    struct conn *c = s->poll.data;
    hb_monitor_t *m = c->m;
    free(c);
    handle_closed(m);
}

/* Forget c as a reporter and close its connection. */
static void conn_close(struct conn *c)
{
    hb_monitor_t *m = c->m;
    if (c->rep.joined) {
        hb_aggregate_leave(&m->impl->agg, &c->rep);
        m->stats.connections_open--;
    }
    hb__sock_close(&c->sock);
}

static void bad(struct conn *c, const char *why)
{
    hb_monitor_t *m = c->m;
    m->stats.bad_reports++;
    log_line(m, "reporter %s closed: %s", c->rep.peer, why);
    conn_close(c);
}

/* Reads land in the connection's one-report buffer: never more than the rest of a report. */
static void on_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    struct conn *c = s->poll.data;
    *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(HB_REPORT_SIZE - c->len));
}

/* A whole report is in c->buf: decode it and add it, or close c for garbage. */
static void take(struct conn *c)
{
    hb_monitor_t *m = c->m;
    hb_report_t r;
    char why[96];
    c->len = 0;
    if (hb_report_decode(c->buf, HB_REPORT_SIZE, &r) != 0) {
        snprintf(why, sizeof why, "bad report (type %" PRIu64 ")", hb_get_u64(c->buf + 8));
        bad(c, why);
        return;
    }
    uint64_t now = now_ms(m);
    int res = hb_aggregate_add(&m->impl->agg, &c->rep, &r, now);
    if (res == HB_AGGREGATE_SKEWED) {
        uint64_t now_s = now / 1000;
        uint64_t skew = r.second > now_s ? r.second - now_s : now_s - r.second;
        snprintf(why, sizeof why, "bad report (second %" PRIu64 " is %" PRIu64 " s off)", r.second,
                 skew);
        bad(c, why);
    } else if (res == HB_AGGREGATE_TYPE_CHANGED) {
        bad(c, "bad report (type changed)");
    } else if (res >= 0) {
        m->stats.reports++;
        m->stats.late += res == HB_AGGREGATE_LATE;
        m->stats.too_old += res == HB_AGGREGATE_TOO_OLD;
    }
}

static void on_read(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->poll.data;
    hb_monitor_t *m = c->m;
    (void)buf;
    if (nread < 0) {
        if (c->len > 0) {
            m->stats.truncated++;
            log_line(m, "reporter %s closed in the middle of a report (%zu of %d bytes)",
                     c->rep.peer, c->len, HB_REPORT_SIZE);
        }
        conn_close(c);
    } else {
        c->len += (size_t)nread;
        if (c->len < HB_REPORT_SIZE)
            return;
        take(c);
    }
    hb_monitor_tick(m); /* a report, or a reporter gone, may complete seconds */
}

/* The monitor writes nothing to its reporters: reads and a close are all it needs. */
static const hb_sock_ops_t conn_ops = {
    .alloc = on_alloc,
    .read = on_read,
    .closed = on_conn_closed,
};

/* "ip:port" ("[ip]:port" for IPv6) of the peer of fd, or "?". */
static void peer_name(int fd, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        snprintf(out, size, "?");
    else
        hb__sock_addr_name((const struct sockaddr *)&ss, out, size);
}

static void on_accept(hb_listener_t *l, int fd)
{
    hb_monitor_t *m = l->poll.data;
    struct hb_monitor_impl *impl = m->impl;
    if (fd < 0)
        return; /* an accept error; out of descriptors, the listener took and closed the peer */
    if (impl->closing) {
        close(fd);
        return;
    }
    char peer[HB_AGGREGATE_LABEL_MAX];
    peer_name(fd, peer, sizeof peer);
    if (impl->agg.nreporters >= m->opts.max_reporters) {
        m->stats.connections_rejected++;
        log_line(m, "reporter %s rejected: %u reporters connected already", peer,
                 impl->agg.nreporters);
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->m = m;
    c->rep.data = c;
    snprintf(c->rep.peer, sizeof c->rep.peer, "%s", peer); /* rep.peer: also its log name */
    if (hb__sock_open(m->loop, &c->sock, fd, &conn_ops, 0, 1) != 0) {
        free(c); /* fd closed by hb__sock_open */
        return;
    }
    c->sock.poll.data = c;
    impl->handles++;
    if (hb__sock_read_start(&c->sock) != 0 ||
        hb_aggregate_join(&impl->agg, &c->rep, now_ms(m)) != 0) {
        hb__sock_close(&c->sock);
        return;
    }
    m->stats.connections_accepted++;
    m->stats.connections_open++;
}

static void on_timer(uv_timer_t *t)
{
    hb_monitor_tick(t->data);
}

/* ---- life cycle ---- */

int hb_monitor_init(uv_loop_t *loop, hb_monitor_t *m, const hb_monitor_options_t *opts)
{
    if (loop == NULL || m == NULL)
        return UV_EINVAL;
    hb_monitor_options_t o;
    if (opts != NULL)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    if (o.now_ms == NULL) {
        o.now_ms = hb__wall_ms;
        o.now_arg = NULL;
    }
    struct hb_monitor_impl *impl = calloc(1, sizeof *impl);
    if (impl == NULL)
        return UV_ENOMEM;
    hb_aggregate_options_t ao = {
        .max_reporters = o.max_reporters,
        .history_s = o.history_s,
        .grace_ms = o.grace_ms,
        .known_ms = o.known_ms,
        .on_second = on_output,
        .on_second_arg = m,
        .names = o.names,
        .max_instances = o.max_instances,
    };
    int r = hb_aggregate_init(&impl->agg, &ao); /* fills the defaults in, checks the bounds */
    if (r != 0) {
        free(impl);
        return r;
    }
    r = uv_timer_init(loop, &impl->timer);
    if (r != 0) {
        hb_aggregate_close(&impl->agg);
        free(impl);
        return r;
    }
    o.max_reporters = impl->agg.opts.max_reporters;
    o.history_s = impl->agg.opts.history_s;
    o.grace_ms = impl->agg.opts.grace_ms;
    o.known_ms = impl->agg.opts.known_ms;
    o.names = impl->agg.opts.names; /* the aggregate's copy */
    o.max_instances = impl->agg.opts.max_instances;
    memset(m, 0, sizeof *m);
    m->loop = loop;
    m->opts = o;
    m->impl = impl;
    impl->agg.data = m;
    impl->handles = 1; /* the timer; the listener counts once it is on the loop */
    impl->timer.data = m;
    return 0;
}

int hb_monitor_listen(hb_monitor_t *m, const char *host, int port)
{
    if (m == NULL || m->impl == NULL || m->impl->closing || m->impl->listener_started || port < 0 ||
        port > 65535)
        return UV_EINVAL;
    struct hb_monitor_impl *impl = m->impl;
    if (host == NULL)
        host = "127.0.0.1";
    int fd;
    int r = hb__sock_listen_fd(host, port, LISTEN_BACKLOG, 0, &fd, NULL);
    if (r != 0)
        return r;
    impl->listener.poll.data = m;
    r = hb__listener_start(m->loop, &impl->listener, fd, 1, on_accept);
    impl->listener_started = 1;
    if (impl->listener.inited)
        impl->handles++;
    if (r != 0)
        return r;
    impl->listening = 1;
    return uv_timer_start(&impl->timer, on_timer, HB_MONITOR_TICK_MS, HB_MONITOR_TICK_MS);
}

int hb_monitor_port(const hb_monitor_t *m)
{
    if (m == NULL || m->impl == NULL || !m->impl->listening)
        return UV_EBADF;
    return hb__sock_local_port(m->impl->listener.fd);
}

static void handle_closed(hb_monitor_t *m)
{
    struct hb_monitor_impl *impl = m->impl;
    if (--impl->handles > 0 || !impl->closing)
        return;
    /* The monitor's state goes first (m->impl is NULL in the callback: closed); the struct is the
     * caller's to free in or after the callback, and the library does not touch it again. */
    hb_monitor_close_cb cb = impl->close_cb;
    hb_aggregate_close(&impl->agg);
    free(impl);
    m->impl = NULL;
    if (cb != NULL)
        cb(m);
}

static void on_own_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void on_listener_closed(hb_listener_t *l)
{
    handle_closed(l->poll.data);
}

void hb_monitor_close(hb_monitor_t *m, hb_monitor_close_cb cb)
{
    if (m == NULL || m->impl == NULL || m->impl->closing)
        return;
    struct hb_monitor_impl *impl = m->impl;
    hb_monitor_flush(m);
    impl->closing = 1;
    impl->close_cb = cb;
    while (impl->agg.nreporters > 0)
        conn_close(impl->agg.reporters[impl->agg.nreporters - 1]->data);
    if (impl->listener_started) /* not on the loop (a failed start): its fds close at once */
        hb__listener_close(&impl->listener, impl->listener.inited ? on_listener_closed : NULL);
    uv_close((uv_handle_t *)&impl->timer, on_own_closed);
}

/* ---- queries and renderers: the aggregate's ---- */

const hb_aggregate_t *hb_monitor_aggregate(const hb_monitor_t *m)
{
    return m != NULL && m->impl != NULL ? &m->impl->agg : NULL;
}

int hb_monitor_get(const hb_monitor_t *m, uint64_t second, uint64_t type, hb_monitor_second_t *out)
{
    if (m == NULL || m->impl == NULL)
        return UV_EINVAL;
    return hb_aggregate_get(&m->impl->agg, second, type, out);
}

int hb_monitor_range(const hb_monitor_t *m, uint64_t *oldest, uint64_t *newest)
{
    if (m == NULL || m->impl == NULL)
        return UV_EINVAL;
    return hb_aggregate_range(&m->impl->agg, oldest, newest);
}

int hb_monitor_latest(const hb_monitor_t *m, uint64_t type, uint64_t *second)
{
    if (m == NULL || m->impl == NULL)
        return UV_EINVAL;
    return hb_aggregate_latest(&m->impl->agg, type, second);
}

int hb_monitor_format_line(const hb_monitor_second_t *s, char *buf, size_t cap)
{
    return hb_aggregate_format_line(s, buf, cap);
}

int hb_monitor_format_csv_header(char *buf, size_t cap)
{
    return hb_aggregate_format_csv_header(buf, cap);
}

int hb_monitor_format_csv_row(const hb_monitor_second_t *s, char *buf, size_t cap)
{
    return hb_aggregate_format_csv_row(s, buf, cap);
}

int hb_monitor_format_metrics(const hb_monitor_t *m, char *buf, size_t cap)
{
    if (m == NULL || m->impl == NULL)
        return UV_EINVAL;
    return hb_aggregate_format_metrics(&m->impl->agg, &m->stats, buf, cap);
}

int hb_monitor_format_series(const hb_monitor_t *m, unsigned seconds, char *buf, size_t cap)
{
    if (m == NULL || m->impl == NULL)
        return UV_EINVAL;
    return hb_aggregate_format_series(&m->impl->agg, &m->stats, now_ms(m) / 1000, seconds, buf,
                                      cap);
}

/* ---- HTTP ---- */

/* A renderer of m into buf[0..cap) (seconds: /api/series's parameter, unused by /metrics). */
typedef int (*render_fn)(const hb_monitor_t *m, unsigned seconds, char *buf, size_t cap);

static int render_metrics(const hb_monitor_t *m, unsigned seconds, char *buf, size_t cap)
{
    (void)seconds;
    return hb_monitor_format_metrics(m, buf, cap);
}

/* Respond 200 with what render writes, into a buffer of `start` bytes doubled until it fits (500
 * past RENDER_CAP or without memory). */
static void respond_rendered(hb_http_response_t *res, const hb_monitor_t *m, render_fn render,
                             unsigned seconds, size_t start, const char *content_type)
{
    for (size_t cap = start; cap <= RENDER_CAP; cap *= 2) {
        char *buf = malloc(cap);
        if (buf == NULL)
            break;
        int n = render(m, seconds, buf, cap);
        if (n >= 0) {
            hb_http_response_header(res, "Cache-Control", "no-store");
            hb_http_respond(res, 200, content_type, buf, (size_t)n);
            free(buf);
            return;
        }
        free(buf);
    }
    hb_http_respond(res, 500, "text/plain", "too large to render\n", 20);
}

static void http_metrics(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_monitor_t *m = arg;
    (void)req;
    if (m->impl == NULL || m->impl->closing) {
        hb_http_respond(res, 503, "text/plain", "monitor closing\n", 16);
        return;
    }
    respond_rendered(res, m, render_metrics, 0, HB_MONITOR_METRICS_MAX,
                     "text/plain; version=0.0.4");
}

static void http_series(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_monitor_t *m = arg;
    if (m->impl == NULL || m->impl->closing) {
        hb_http_respond(res, 503, "text/plain", "monitor closing\n", 16);
        return;
    }
    uint64_t seconds = HB_MONITOR_SERIES_DEFAULT_S;
    if (seconds > m->opts.history_s)
        seconds = m->opts.history_s;
    int r = hb_query_u64(req->query, req->query_len, "seconds", 1, m->opts.history_s, &seconds);
    if (r != 0 && r != UV_ENOENT) {
        hb_http_bad_param_range(res, "seconds", r, 1, m->opts.history_s);
        return;
    }
    respond_rendered(res, m, hb_monitor_format_series, (unsigned)seconds, SERIES_START,
                     "application/json");
}

int hb_monitor_mount_http(hb_monitor_t *m, hb_http_server_t *http)
{
    if (m == NULL || m->impl == NULL || http == NULL)
        return UV_EINVAL;
    int r = hb_http_server_route(http, "GET", "/metrics", http_metrics, m);
    if (r == 0)
        r = hb_http_server_route(http, "GET", "/api/series", http_series, m);
    return r;
}
