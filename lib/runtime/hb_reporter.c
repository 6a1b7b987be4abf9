/* Monitor reporting: a once-a-second tick that snapshots, encodes and writes the counter reports
 * due, over one TCP connection (the library's socket layer, hb_sock.h) that reconnects with
 * back-off and never holds the loop up. */
#include "hb_internal.h"
#include "hongbao/reporter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hb_sock.h"

/* Connection states. */
enum {
    HB_REPORTER_S_IDLE,       /* no socket: waiting for the back-off timer, or not started */
    HB_REPORTER_S_CONNECTING, /* connect in flight, timer_ is its timeout */
    HB_REPORTER_S_CONNECTED,  /* established and reading */
    HB_REPORTER_S_CLOSING     /* the socket is closing, its closed callback not yet run */
};

static void start_connect(hb_reporter_t *r);
static void close_handles(hb_reporter_t *r);
static void on_timer(uv_timer_t *t);

static uint64_t wall_clock(void *arg)
{
    (void)arg;
    time_t t = time(NULL);
    return t < 0 ? 0 : (uint64_t)t;
}

static HB_PRINTF(2, 3) void hb_reporter_logf(hb_reporter_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(r->opts.log, r->opts.log_arg, fmt, ap);
    va_end(ap);
}

/* Log that the monitor is gone, once per outage, and never while closing. */
static void log_down(hb_reporter_t *r, const char *what, int err)
{
    if (r->down_logged || r->closing)
        return;
    r->down_logged = 1;
    hb_reporter_logf(r, "monitor %s %s (%s); reports dropped until it is back, retrying", r->peer,
                     what, uv_strerror(err));
}

/* Milliseconds from now until the next wall-clock second boundary plus the tick offset. */
static uint64_t ms_to_next_tick(void)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0)
        return 1000;
    uint64_t into = (uint64_t)tv.tv_usec / 1000;
    uint64_t ms = (1000 - into + HB_REPORTER_TICK_OFFSET_MS) % 1000;
    /* A timer that fires a little early must not tick twice in one second. */
    if (ms < 20)
        ms += 1000;
    return ms;
}

static void maybe_finish(hb_reporter_t *r)
{
    if (r->closing && r->handles_closing && r->live_handles == 0 && r->sock != NULL) {
        /* The lifetime rule: r is readable in the callback, which may free it; the library's own
         * memory goes after, without touching r. */
        struct hb_sock *sock = r->sock;
        r->sock = NULL;
        hb_reporter_close_cb cb = r->close_cb;
        r->close_cb = NULL;
        if (cb != NULL)
            cb(r);
        free(sock);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    hb_reporter_t *r = h->data;
    r->live_handles--;
    maybe_finish(r);
}

/* Arm the back-off timer for the next connect attempt and double the next wait. */
static void schedule_retry(hb_reporter_t *r)
{
    unsigned wait = r->backoff_ms;
    r->backoff_ms = wait > r->opts.backoff_max_ms / 2 ? r->opts.backoff_max_ms : wait * 2;
    uv_timer_start(&r->timer, on_timer, wait, 0);
}

/* Reports of the batches written that the kernel has not yet wholly taken: the queue ends on a
 * report boundary, so its bytes cover that many reports, the first perhaps in part. */
static uint64_t reports_queued(const hb_reporter_t *r)
{
    return (hb__sock_queued(r->sock) + HB_REPORT_SIZE - 1) / HB_REPORT_SIZE;
}

/* Count the reports the kernel took since the last count as sent. */
static void account(hb_reporter_t *r)
{
    uint64_t left = reports_queued(r);
    if (left < r->queued_reports) {
        r->stats.sent += r->queued_reports - left;
        r->backoff_ms = r->opts.backoff_min_ms; /* a write succeeded on this connection */
    }
    r->queued_reports = left;
}

static hb_reporter_t *reporter_of(hb_sock_t *s)
{
    return s->poll.data;
}

static void on_sock_closed(hb_sock_t *s)
{
    hb_reporter_t *r = reporter_of(s);
    r->live_handles--;
    r->state = HB_REPORTER_S_IDLE;
    if (r->closing) {
        close_handles(r);
        maybe_finish(r);
        return;
    }
    schedule_retry(r);
}

/* Close the socket (a connect in flight, or the connection with what it still queues: those
 * reports count as dropped); its closed callback schedules the next attempt unless the reporter
 * is closing. */
static void drop_socket(hb_reporter_t *r)
{
    if (!r->closing)
        uv_timer_stop(&r->timer);
    r->connected = 0;
    r->state = HB_REPORTER_S_CLOSING;
    r->stats.dropped += r->queued_reports;
    r->queued_reports = 0;
    hb__sock_close(r->sock);
}

static void connect_failed(hb_reporter_t *r, int err)
{
    r->stats.connect_failures++;
    log_down(r, "unreachable", err);
    drop_socket(r);
}

/* An established connection ended (EOF, read or write error). */
static void lost(hb_reporter_t *r, int err)
{
    if (r->state != HB_REPORTER_S_CONNECTED)
        return;
    r->stats.disconnects++;
    log_down(r, "connection lost", err);
    drop_socket(r);
}

static void on_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    hb_reporter_t *r = reporter_of(s);
    *buf = uv_buf_init(r->read_buf, sizeof r->read_buf);
}

/* The monitor sends nothing: whatever comes is discarded; EOF or an error ends the connection. */
static void on_read(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        lost(reporter_of(s), (int)nread);
}

static void on_connected(hb_sock_t *s, int status)
{
    hb_reporter_t *r = reporter_of(s);
    uv_timer_stop(&r->timer);
    if (status < 0) {
        connect_failed(r, status);
        return;
    }
    r->state = HB_REPORTER_S_CONNECTED;
    r->connected = 1;
    r->stats.connects++;
    if (!r->ever_connected || r->down_logged)
        hb_reporter_logf(r, "monitor %s connected", r->peer);
    r->ever_connected = 1;
    r->down_logged = 0;
    int err = hb__sock_read_start(s);
    if (err != 0)
        lost(r, err);
}

/* Queued reports went out, some or all: count them; once all did, a close can finish. */
static void on_progress(hb_sock_t *s)
{
    account(reporter_of(s));
}

static void on_drained(hb_sock_t *s)
{
    hb_reporter_t *r = reporter_of(s);
    account(r);
    if (r->closing)
        close_handles(r);
}

static void on_write_error(hb_sock_t *s, int err)
{
    hb_reporter_t *r = reporter_of(s);
    if (r->state == HB_REPORTER_S_CONNECTED)
        lost(r, err);
    else
        drop_socket(r);
}

static const hb_sock_ops_t reporter_ops = {
    .alloc = on_alloc,
    .read = on_read,
    .connected = on_connected,
    .progress = on_progress,
    .drained = on_drained,
    .write_error = on_write_error,
    .closed = on_sock_closed,
};

static void on_timer(uv_timer_t *t)
{
    hb_reporter_t *r = t->data;
    if (r->closing) {
        close_handles(r); /* the final writes took too long */
        return;
    }
    if (r->state == HB_REPORTER_S_CONNECTING)
        connect_failed(r, UV_ETIMEDOUT);
    else if (r->state == HB_REPORTER_S_IDLE)
        start_connect(r);
}

static void start_connect(hb_reporter_t *r)
{
    int err = hb__sock_connect(r->loop, r->sock, &reporter_ops, (const struct sockaddr *)&r->addr,
                               NULL, HB_REPORTER_MAX_PENDING_BYTES);
    r->sock->poll.data = r;
    r->queued_reports = 0;
    if (err != 0) {
        if (hb__sock_connect_started(r->sock)) {
            r->live_handles++;
            connect_failed(r, err); /* closes the socket, then retries */
        } else {
            r->stats.connect_failures++;
            log_down(r, "unreachable", err);
            schedule_retry(r);
        }
        return;
    }
    r->live_handles++;
    r->state = HB_REPORTER_S_CONNECTING;
    uv_timer_start(&r->timer, on_timer, HB_REPORTER_CONNECT_TIMEOUT_MS, 0);
}

/* Send, or keep waiting, or drop, the seconds due up to last, at clock value now. */
static void flush(hb_reporter_t *r, uint64_t now, uint64_t last)
{
    if (!r->have_next) {
        r->next = last;
        r->have_next = 1;
    }
    /* The clock went back further than the history: start again from last rather than wait. */
    if (r->next > last + HB_COUNTERS_HISTORY)
        r->next = last;
    uint64_t oldest = now >= HB_COUNTERS_HISTORY - 1 ? now - (HB_COUNTERS_HISTORY - 1) : 0;
    if (r->next < oldest) {
        r->stats.dropped += oldest - r->next;
        r->next = oldest;
    }
    if (last < r->next || r->state != HB_REPORTER_S_CONNECTED)
        return;
    uint64_t count = last - r->next + 1; /* at most HB_COUNTERS_HISTORY - 1 */
    size_t len = (size_t)count * HB_REPORT_SIZE;
    if (hb__sock_queued(r->sock) + len > HB_REPORTER_MAX_PENDING_BYTES)
        return;
    uint8_t *bytes = malloc(len);
    if (bytes == NULL)
        return;
    hb_report_t rep;
    for (uint64_t i = 0; i < count; i++) {
        hb_counters_snapshot(r->counters, r->next + i, &rep);
        if (r->opts.instance != 0)
            rep.per_second[HB_CTR_INSTANCE] = r->opts.instance;
        hb_report_encode(&rep, bytes + i * HB_REPORT_SIZE);
    }
    int err = hb__sock_write(r->sock, bytes, len);
    free(bytes);
    if (err != 0) {
        /* The seconds wait for the next connection (the monitor drops a report cut short). */
        lost(r, err);
        return;
    }
    r->queued_reports += count;
    account(r);
    r->next = last + 1;
}

static void on_tick(uv_timer_t *t)
{
    hb_reporter_t *r = t->data;
    hb_reporter_tick(r);
    uv_timer_start(t, on_tick, ms_to_next_tick(), 0);
}

/* Close the timers and the socket (if open); the last close callback calls the user's. */
static void close_handles(hb_reporter_t *r)
{
    if (r->handles_closing)
        return;
    r->handles_closing = 1;
    uv_close((uv_handle_t *)&r->tick_timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    if (r->state == HB_REPORTER_S_CONNECTING || r->state == HB_REPORTER_S_CONNECTED)
        drop_socket(r);
}

int hb_reporter_init(uv_loop_t *loop, hb_reporter_t *r, hb_counters_t *counters,
                     const hb_reporter_options_t *opts)
{
    if (loop == NULL || r == NULL || counters == NULL || counters->nshards == 0)
        return UV_EINVAL;
    hb_reporter_options_t o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.host == NULL)
        o.host = HB_REPORTER_DEFAULT_HOST;
    if (o.port == 0)
        o.port = HB_REPORTER_DEFAULT_PORT;
    if (o.delay_s == 0)
        o.delay_s = HB_REPORTER_DEFAULT_DELAY_S;
    if (o.backoff_min_ms == 0)
        o.backoff_min_ms = HB_REPORTER_DEFAULT_BACKOFF_MIN_MS;
    if (o.backoff_max_ms == 0)
        o.backoff_max_ms = HB_REPORTER_DEFAULT_BACKOFF_MAX_MS;
    if (o.now_s == NULL)
        o.now_s = wall_clock;
    if (o.port < 1 || o.port > 65535 || o.delay_s > HB_REPORTER_MAX_DELAY_S ||
        o.backoff_min_ms > o.backoff_max_ms || strlen(o.host) >= sizeof r->host)
        return UV_EINVAL;

    struct sockaddr_storage addr;
    if (hb__sock_addr(o.host, o.port, &addr) != 0)
        return UV_EINVAL;
    int v6 = addr.ss_family == AF_INET6;

    hb_sock_t *sock = calloc(1, sizeof *sock);
    if (sock == NULL)
        return UV_ENOMEM;
    memset(r, 0, sizeof *r);
    r->sock = sock;
    r->loop = loop;
    r->counters = counters;
    r->addr = addr;
    memcpy(r->host, o.host, strlen(o.host) + 1);
    o.host = r->host;
    r->opts = o;
    if (v6)
        snprintf(r->peer, sizeof r->peer, "[%s]:%d", r->host, o.port);
    else
        snprintf(r->peer, sizeof r->peer, "%s:%d", r->host, o.port);
    r->backoff_ms = o.backoff_min_ms;
    r->state = HB_REPORTER_S_IDLE;
    /* uv_timer_init cannot fail. */
    uv_timer_init(loop, &r->tick_timer);
    uv_timer_init(loop, &r->timer);
    r->tick_timer.data = r;
    r->timer.data = r;
    r->live_handles = 2;
    return 0;
}

int hb_reporter_start(hb_reporter_t *r)
{
    if (r == NULL || r->closing)
        return UV_EINVAL;
    if (r->started)
        return UV_EALREADY;
    r->started = 1;
    uv_timer_start(&r->tick_timer, on_tick, ms_to_next_tick(), 0);
    start_connect(r);
    return 0;
}

void hb_reporter_tick(hb_reporter_t *r)
{
    if (r == NULL || r->closing)
        return;
    uint64_t now = r->opts.now_s(r->opts.now_arg);
    if (now < r->opts.delay_s)
        return;
    flush(r, now, now - r->opts.delay_s);
}

void hb_reporter_close(hb_reporter_t *r, hb_reporter_close_cb cb)
{
    if (r == NULL || r->closing)
        return;
    r->closing = 1;
    r->close_cb = cb;
    uv_timer_stop(&r->tick_timer);
    uv_timer_stop(&r->timer);

    /* A final tick without the delay: every second due up to now - 1 is sent or dropped. */
    uint64_t now = r->opts.now_s(r->opts.now_arg);
    if (now >= 1) {
        uint64_t last = now - 1;
        if (!r->have_next && now >= r->opts.delay_s) {
            r->next = now - r->opts.delay_s;
            r->have_next = 1;
        }
        if (r->have_next) {
            flush(r, now, last);
            if (r->next <= last) {
                r->stats.dropped += last - r->next + 1;
                r->next = last + 1;
            }
        }
    }

    if (r->state == HB_REPORTER_S_CONNECTED && hb__sock_queued(r->sock) > 0) {
        uv_timer_start(&r->timer, on_timer, HB_REPORTER_CLOSE_TIMEOUT_MS, 0);
        return;
    }
    close_handles(r);
}
