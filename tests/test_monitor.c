/* Unit tests for the monitor module: real reporter sockets on 127.0.0.1 driven by libuv on the
 * test's own loop, an injected clock and hb_monitor_tick, so no test waits for real seconds. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao.h"

#define T0_MS       1700000000000ull
#define S0          (T0_MS / 1000 - 5) /* a second a few seconds before the fake clock's now */
#define MAX_OUT     64
#define MAX_FEEDERS 8
#define MAX_LINES   16
#define HTTP_BUF    (1024 * 1024)
#define DEADLINE_MS 15000

typedef struct ctx ctx_t;

/* A reporter (or a garbage sender): a TCP client on the test loop. */
typedef struct feeder {
    uv_tcp_t tcp;
    uv_connect_t req;
    ctx_t *c;
    int connected;
    int eof;    /* the monitor closed the connection */
    int closed; /* our handle is closed */
    int writes; /* writes not yet completed */
    char rbuf[64];
} feeder_t;

struct ctx {
    uv_loop_t loop;
    hb_monitor_t mon;
    int mon_inited;
    int mon_closed;
    uint64_t now_ms;
    hb_monitor_second_t out[MAX_OUT];
    int nout;
    char lines[MAX_LINES][256];
    int nlines;
    feeder_t feeders[MAX_FEEDERS];
    int nfeeders;
    uv_timer_t deadline;
    int expired;
    hb_http_server_t http;
    int have_http;
    int http_closed;
    /* one HTTP exchange at a time */
    uv_tcp_t hc;
    uv_connect_t hc_req;
    uv_write_t hc_write;
    char hc_request[256];
    char *hc_buf;
    size_t hc_len;
    int hc_done;
};

/* Run the loop until cond holds; the deadline timer bounds the wait (an event, not a sleep). */
#define RUN_UNTIL(c, cond)                                                                         \
    do {                                                                                           \
        while (!(cond) && !(c)->expired)                                                           \
            uv_run(&(c)->loop, UV_RUN_ONCE);                                                       \
        ck_assert_msg((cond), "timed out waiting for: %s", #cond);                                 \
    } while (0)

/* ---- fixture ---- */

static uint64_t fake_now(void *arg)
{
    return ((ctx_t *)arg)->now_ms;
}

static void capture_second(hb_monitor_t *m, const hb_monitor_second_t *s, void *arg)
{
    ctx_t *c = arg;
    ck_assert_ptr_eq(m, &c->mon);
    ck_assert_int_lt(c->nout, MAX_OUT);
    c->out[c->nout++] = *s;
}

static void capture_log(void *arg, const char *line)
{
    ctx_t *c = arg;
    if (c->nlines < MAX_LINES)
        snprintf(c->lines[c->nlines++], sizeof c->lines[0], "%s", line);
}

static void on_deadline(uv_timer_t *t)
{
    ((ctx_t *)t->data)->expired = 1;
}

static ctx_t *ctx_new(void)
{
    ctx_t *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(uv_loop_init(&c->loop), 0);
    ck_assert_int_eq(uv_timer_init(&c->loop, &c->deadline), 0);
    c->deadline.data = c;
    ck_assert_int_eq(uv_timer_start(&c->deadline, on_deadline, DEADLINE_MS, 0), 0);
    c->now_ms = T0_MS;
    return c;
}

static hb_monitor_options_t base_opts(ctx_t *c)
{
    hb_monitor_options_t o;
    memset(&o, 0, sizeof o);
    o.on_second = capture_second;
    o.on_second_arg = c;
    o.log = capture_log;
    o.log_arg = c;
    o.now_ms = fake_now;
    o.now_arg = c;
    return o;
}

static void mon_start(ctx_t *c, const hb_monitor_options_t *o)
{
    ck_assert_int_eq(hb_monitor_init(&c->loop, &c->mon, o), 0);
    c->mon.data = c;
    c->mon_inited = 1;
    ck_assert_int_eq(hb_monitor_listen(&c->mon, "127.0.0.1", 0), 0);
    ck_assert_int_gt(hb_monitor_port(&c->mon), 0);
}

static void on_mon_closed(hb_monitor_t *m)
{
    ctx_t *c = m->data;
    c->mon_closed++;
}

static void on_http_closed(hb_http_server_t *h)
{
    ((ctx_t *)h->data)->http_closed++;
}

static void on_feeder_closed(uv_handle_t *h)
{
    ((feeder_t *)h->data)->closed = 1;
}

static void mon_close(ctx_t *c)
{
    if (c->have_http) {
        hb_http_server_close(&c->http, on_http_closed);
        c->have_http = 0;
    }
    hb_monitor_close(&c->mon, on_mon_closed);
    ck_assert_int_eq(c->mon_closed, 0); /* never from inside the call */
    RUN_UNTIL(c, c->mon_closed == 1);
    ck_assert_ptr_null(c->mon.impl);
    c->mon_inited = 0;
}

static void count_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        (*(int *)arg)++;
}

/* Close everything, assert nothing was left open and the loop closes cleanly. */
static void ctx_free(ctx_t *c)
{
    if (c->mon_inited)
        mon_close(c);
    for (int i = 0; i < c->nfeeders; i++)
        if (!c->feeders[i].closed && !uv_is_closing((uv_handle_t *)&c->feeders[i].tcp))
            uv_close((uv_handle_t *)&c->feeders[i].tcp, on_feeder_closed);
    uv_close((uv_handle_t *)&c->deadline, NULL);
    int left = 0;
    uv_walk(&c->loop, count_handle, &left);
    ck_assert_int_eq(left, 0);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&c->loop), 0);
    free(c->hc_buf);
    free(c);
}

/* ---- feeders ---- */

static void feeder_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    feeder_t *f = h->data;
    (void)suggested;
    *buf = uv_buf_init(f->rbuf, sizeof f->rbuf);
}

static void feeder_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    feeder_t *f = s->data;
    (void)buf;
    if (nread < 0) {
        f->eof = 1;
        uv_close((uv_handle_t *)s, on_feeder_closed);
    }
}

static void feeder_on_connect(uv_connect_t *req, int status)
{
    feeder_t *f = req->data;
    ck_assert_int_eq(status, 0);
    f->connected = 1;
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&f->tcp, feeder_alloc, feeder_on_read), 0);
}

/* Connect a new feeder and run until the monitor accepted it. */
static feeder_t *feeder_open(ctx_t *c)
{
    ck_assert_int_lt(c->nfeeders, MAX_FEEDERS);
    feeder_t *f = &c->feeders[c->nfeeders++];
    f->c = c;
    ck_assert_int_eq(uv_tcp_init(&c->loop, &f->tcp), 0);
    f->tcp.data = f;
    f->req.data = f;
    struct sockaddr_in sa;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", hb_monitor_port(&c->mon), &sa), 0);
    ck_assert_int_eq(
        uv_tcp_connect(&f->req, &f->tcp, (const struct sockaddr *)&sa, feeder_on_connect), 0);
    uint64_t want = c->mon.stats.connections_accepted + c->mon.stats.connections_rejected + 1;
    RUN_UNTIL(c, f->connected &&
                     c->mon.stats.connections_accepted + c->mon.stats.connections_rejected == want);
    return f;
}

struct wreq {
    uv_write_t req;
    uint8_t data[];
};

static void on_written(uv_write_t *req, int status)
{
    feeder_t *f = req->handle->data;
    ck_assert_int_eq(status, 0);
    f->writes--;
    free(req);
}

static void feeder_write(feeder_t *f, const void *bytes, size_t len)
{
    struct wreq *w = malloc(sizeof *w + len);
    ck_assert_ptr_nonnull(w);
    memcpy(w->data, bytes, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    ck_assert_int_eq(uv_write(&w->req, (uv_stream_t *)&f->tcp, &b, 1, on_written), 0);
    f->writes++;
}

static hb_report_t report(uint64_t second, uint64_t type)
{
    hb_report_t r;
    memset(&r, 0, sizeof r);
    r.second = second;
    r.type = type;
    return r;
}

/* Send r and run until the monitor has accepted it. */
static void send_report(feeder_t *f, const hb_report_t *r)
{
    ctx_t *c = f->c;
    uint8_t buf[HB_REPORT_SIZE];
    hb_report_encode(r, buf);
    uint64_t want = c->mon.stats.reports + 1;
    feeder_write(f, buf, sizeof buf);
    RUN_UNTIL(c, c->mon.stats.reports == want);
}

/* Close f from our side and run until the monitor saw it go. */
static void feeder_leave(feeder_t *f)
{
    ctx_t *c = f->c;
    uint64_t open = c->mon.stats.connections_open;
    uv_close((uv_handle_t *)&f->tcp, on_feeder_closed);
    RUN_UNTIL(c, f->closed && c->mon.stats.connections_open == open - 1);
}

static const hb_monitor_second_t *find_out(const ctx_t *c, uint64_t second, uint64_t type)
{
    for (int i = 0; i < c->nout; i++)
        if (c->out[i].second == second && c->out[i].type == type)
            return &c->out[i];
    return NULL;
}

/* ---- a tiny HTTP client on the same loop ---- */

static void hc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    ctx_t *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->hc_buf + c->hc_len, (unsigned)(HTTP_BUF - 1 - c->hc_len));
}

static void hc_on_closed(uv_handle_t *h)
{
    ((ctx_t *)h->data)->hc_done = 1;
}

static void hc_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ctx_t *c = s->data;
    (void)buf;
    if (nread > 0) {
        c->hc_len += (size_t)nread;
        ck_assert_uint_lt(c->hc_len, HTTP_BUF - 1);
    } else if (nread < 0) {
        c->hc_buf[c->hc_len] = '\0';
        uv_close((uv_handle_t *)s, hc_on_closed);
    }
}

static void hc_on_write(uv_write_t *req, int status)
{
    (void)req;
    ck_assert_int_eq(status, 0);
}

static void hc_on_connect(uv_connect_t *req, int status)
{
    ctx_t *c = req->data;
    ck_assert_int_eq(status, 0);
    uv_buf_t b = uv_buf_init(c->hc_request, (unsigned)strlen(c->hc_request));
    ck_assert_int_eq(uv_write(&c->hc_write, (uv_stream_t *)&c->hc, &b, 1, hc_on_write), 0);
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&c->hc, hc_alloc, hc_on_read), 0);
}

/* GET path with Connection: close; returns the whole response (headers and body). */
static const char *http_get(ctx_t *c, const char *path)
{
    if (c->hc_buf == NULL)
        c->hc_buf = malloc(HTTP_BUF);
    ck_assert_ptr_nonnull(c->hc_buf);
    c->hc_len = 0;
    c->hc_done = 0;
    snprintf(c->hc_request, sizeof c->hc_request,
             "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", path);
    ck_assert_int_eq(uv_tcp_init(&c->loop, &c->hc), 0);
    c->hc.data = c;
    c->hc_req.data = c;
    struct sockaddr_in sa;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", hb_http_server_port(&c->http), &sa), 0);
    ck_assert_int_eq(
        uv_tcp_connect(&c->hc_req, &c->hc, (const struct sockaddr *)&sa, hc_on_connect), 0);
    RUN_UNTIL(c, c->hc_done);
    return c->hc_buf;
}

static const char *body_of(const char *response)
{
    const char *b = strstr(response, "\r\n\r\n");
    ck_assert_ptr_nonnull(b);
    return b + 4;
}

/* ---- tests ---- */

START_TEST(test_slot_names_and_rules)
{
    /* The monitor names and combines the slots as the counter catalogue says. */
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        ck_assert_int_eq(hb_counter_combine(i) == HB_COUNTER_COMBINE_MAX,
                         i >= HB_CTR_LAT_P50 && i <= HB_CTR_LAT_CLAIM_P99);
    ck_assert_int_eq(HB_CTR_LAT_P50, 50);
    ck_assert_int_eq(HB_CTR_LAT_CLAIM_P99, 56);
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_SERVER, HB_CTR_REQUESTS), "requests");
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_CLIENT, HB_CTR_REQUESTS), "requests");
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_SERVER, HB_CTR_X_BAD_FRAME), "bad_frames");
    ck_assert_ptr_null(hb_counter_name_for(HB_REPORTER_CLIENT, HB_CTR_X_BAD_FRAME));
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_CLIENT, HB_CTR_LAT_P50), "latency_p50_us");
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_CLIENT, HB_CTR_LAT_P999), "latency_p999_us");
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_CLIENT, HB_CTR_LAT_CLAIM_P99),
                     "claim_latency_p99_us");
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_CLIENT, HB_CTR_C_SEND_MISSED), "send_missed");
    ck_assert_ptr_null(hb_counter_name_for(HB_REPORTER_SERVER, HB_CTR_LAT_P50));
    ck_assert_ptr_null(hb_counter_name_for(HB_REPORTER_CLIENT, 58));
    ck_assert_ptr_null(hb_counter_name_for(2, HB_CTR_REQUESTS));
    ck_assert_ptr_null(hb_counter_name_for(HB_REPORTER_SERVER, HB_COUNTER_SLOTS));
    ck_assert_int_eq(hb_counter_combine(49), HB_COUNTER_COMBINE_SUM);
    ck_assert_int_eq(hb_counter_combine(HB_CTR_LAT_P50), HB_COUNTER_COMBINE_MAX);
    ck_assert_int_eq(hb_counter_combine(HB_CTR_LAT_CLAIM_P99), HB_COUNTER_COMBINE_MAX);
    ck_assert_int_eq(hb_counter_combine(HB_CTR_C_SEND_MISSED), HB_COUNTER_COMBINE_SUM);
}
END_TEST

START_TEST(test_init_validates_and_closes_cleanly)
{
    ctx_t *c = ctx_new();
    hb_monitor_t m;
    hb_monitor_options_t o = base_opts(c);
    ck_assert_int_eq(hb_monitor_init(NULL, &m, &o), UV_EINVAL);
    ck_assert_int_eq(hb_monitor_init(&c->loop, NULL, &o), UV_EINVAL);
    o.history_s = HB_MONITOR_MIN_HISTORY_S - 1;
    ck_assert_int_eq(hb_monitor_init(&c->loop, &m, &o), UV_EINVAL);
    o.history_s = HB_MONITOR_MAX_HISTORY_S + 1;
    ck_assert_int_eq(hb_monitor_init(&c->loop, &m, &o), UV_EINVAL);
    o = base_opts(c);
    o.max_reporters = HB_MONITOR_MAX_REPORTERS + 1;
    ck_assert_int_eq(hb_monitor_init(&c->loop, &m, &o), UV_EINVAL);

    /* Defaults filled in; nothing held yet; closing without listening is fine. */
    ck_assert_int_eq(hb_monitor_init(&c->loop, &c->mon, NULL), 0);
    c->mon.data = c;
    c->mon_inited = 1;
    ck_assert_uint_eq(c->mon.opts.max_reporters, HB_MONITOR_DEFAULT_MAX_REPORTERS);
    ck_assert_uint_eq(c->mon.opts.history_s, HB_MONITOR_DEFAULT_HISTORY_S);
    ck_assert_uint_eq(c->mon.opts.grace_ms, HB_MONITOR_DEFAULT_GRACE_MS);
    ck_assert_uint_eq(c->mon.opts.known_ms, HB_MONITOR_DEFAULT_KNOWN_MS);
    ck_assert_int_eq(hb_monitor_port(&c->mon), UV_EBADF);
    uint64_t a, b;
    ck_assert_int_eq(hb_monitor_range(&c->mon, &a, &b), UV_ENOENT);
    ck_assert_int_eq(hb_monitor_latest(&c->mon, HB_REPORTER_SERVER, &a), UV_ENOENT);
    hb_monitor_second_t s;
    ck_assert_int_eq(hb_monitor_get(&c->mon, S0, HB_REPORTER_SERVER, &s), UV_ENOENT);
    ck_assert_int_eq(hb_monitor_listen(&c->mon, "not-an-ip", 0), UV_EINVAL);
    ck_assert_int_eq(hb_monitor_listen(&c->mon, "127.0.0.1", 70000), UV_EINVAL);

    char json[8192];
    int n = hb_monitor_format_series(&c->mon, 300, json, sizeof json);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(json, "\"first\":null,\"last\":null,\"seconds\":[]"));
    ck_assert_ptr_nonnull(strstr(json, "\"server\":{\"reports\":[],\"status\":[],"));
    ck_assert_int_eq(hb_monitor_format_series(&c->mon, 300, json, 10), UV_ENOBUFS);
    ck_assert_str_eq(json, "");
    mon_close(c);
    hb_monitor_close(&c->mon, on_mon_closed); /* a second close does nothing */
    ck_assert_int_eq(c->mon_closed, 1);
    ctx_free(c);
}
END_TEST

START_TEST(test_listen_errors)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    mon_start(c, &o);
    ck_assert_int_eq(hb_monitor_listen(&c->mon, "127.0.0.1", 0), UV_EINVAL); /* twice */
    hb_monitor_t other;
    int closed = 0;
    ck_assert_int_eq(hb_monitor_init(&c->loop, &other, &o), 0);
    other.data = &closed;
    ck_assert_int_eq(hb_monitor_listen(&other, "127.0.0.1", hb_monitor_port(&c->mon)),
                     UV_EADDRINUSE);
    ck_assert_int_eq(hb_monitor_port(&other), UV_EBADF);
    hb_monitor_close(&other, NULL);
    RUN_UNTIL(c, other.impl == NULL);
    ctx_free(c);
}
END_TEST

START_TEST(test_sums_servers_and_takes_latency_max)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    mon_start(c, &o);
    feeder_t *a = feeder_open(c), *b = feeder_open(c), *cl = feeder_open(c);
    ck_assert_uint_eq(c->mon.stats.connections_open, 3);

    /* Second S0 from two servers and a client. */
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 100;
    r.per_second[HB_CTR_SHAKE_GOT] = 7;
    r.cumulative[HB_CTR_REQUESTS] = 1000;
    r.cumulative[HB_CTR_CONN_OPENED] = 50;
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 0); /* b and the client have not reported: nothing complete */
    r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 200;
    r.cumulative[HB_CTR_REQUESTS] = 3000;
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 0); /* the client's type is not known yet: it counts for both */
    r = report(S0, HB_REPORTER_CLIENT);
    r.per_second[HB_CTR_REQUESTS] = 300;
    r.per_second[HB_CTR_LAT_P50] = 120;
    r.per_second[HB_CTR_LAT_P99] = 900;
    r.cumulative[HB_CTR_REQUESTS] = 7000;
    r.cumulative[HB_CTR_LAT_P50] = 999;
    send_report(cl, &r);

    ck_assert_int_eq(c->nout, 2);
    const hb_monitor_second_t *s = find_out(c, S0, HB_REPORTER_SERVER);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->status, HB_MONITOR_COMPLETE);
    ck_assert_int_eq(s->output, 1);
    ck_assert_uint_eq(s->reports, 2);
    ck_assert_uint_eq(s->per_second[HB_CTR_REQUESTS], 300);
    ck_assert_uint_eq(s->per_second[HB_CTR_SHAKE_GOT], 7);
    ck_assert_uint_eq(s->cumulative[HB_CTR_REQUESTS], 4000);
    ck_assert_uint_eq(s->cumulative[HB_CTR_CONN_OPENED], 50);
    s = find_out(c, S0, HB_REPORTER_CLIENT);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->reports, 1);
    ck_assert_uint_eq(s->per_second[HB_CTR_REQUESTS], 300);
    ck_assert_uint_eq(s->cumulative[HB_CTR_REQUESTS], 7000);

    /* S0 + 1: a second client joins; latency slots take the maximum, others the sum. */
    feeder_t *d = feeder_open(c);
    r = report(S0 + 1, HB_REPORTER_CLIENT);
    r.per_second[HB_CTR_REQUESTS] = 10;
    r.per_second[HB_CTR_LAT_P50] = 100;
    r.per_second[HB_CTR_LAT_P99] = 800;
    r.per_second[HB_CTR_LAT_MAX] = 1000;
    r.cumulative[HB_CTR_REQUESTS] = 7010;
    r.cumulative[HB_CTR_LAT_P50] = 1000;
    send_report(cl, &r);
    ck_assert_int_eq(c->nout, 2); /* d is connected and silent: waited for */
    r = report(S0 + 1, HB_REPORTER_CLIENT);
    r.per_second[HB_CTR_REQUESTS] = 20;
    r.per_second[HB_CTR_LAT_P50] = 150;
    r.per_second[HB_CTR_LAT_P99] = 700;
    r.per_second[HB_CTR_LAT_MAX] = 9000;
    r.cumulative[HB_CTR_REQUESTS] = 20;
    r.cumulative[HB_CTR_LAT_P50] = 400;
    send_report(d, &r);
    ck_assert_int_eq(c->nout, 3);
    s = find_out(c, S0 + 1, HB_REPORTER_CLIENT);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->status, HB_MONITOR_COMPLETE);
    ck_assert_uint_eq(s->reports, 2);
    ck_assert_uint_eq(s->per_second[HB_CTR_REQUESTS], 30);
    ck_assert_uint_eq(s->per_second[HB_CTR_LAT_P50], 150);
    ck_assert_uint_eq(s->per_second[HB_CTR_LAT_P99], 800);
    ck_assert_uint_eq(s->per_second[HB_CTR_LAT_MAX], 9000);
    ck_assert_uint_eq(s->cumulative[HB_CTR_REQUESTS], 7030);
    ck_assert_uint_eq(s->cumulative[HB_CTR_LAT_P50], 1000);

    /* Servers at different seconds: a reaches S0 + 2 while b is at S0: nothing yet. */
    r = report(S0 + 1, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 1;
    r.cumulative[HB_CTR_REQUESTS] = 1001;
    send_report(a, &r);
    r = report(S0 + 2, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 2;
    r.cumulative[HB_CTR_REQUESTS] = 1003;
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 3);
    /* b skips S0 + 1 (a dropped report) and sends S0 + 2: both seconds complete, in order. */
    r = report(S0 + 2, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 20;
    r.cumulative[HB_CTR_REQUESTS] = 3020;
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 5);
    ck_assert_uint_eq(c->out[3].second, S0 + 1);
    ck_assert_uint_eq(c->out[3].reports, 1);
    ck_assert_uint_eq(c->out[3].per_second[HB_CTR_REQUESTS], 1);
    ck_assert_uint_eq(c->out[4].second, S0 + 2);
    ck_assert_uint_eq(c->out[4].reports, 2);
    ck_assert_uint_eq(c->out[4].per_second[HB_CTR_REQUESTS], 22);
    ck_assert_uint_eq(c->out[4].cumulative[HB_CTR_REQUESTS], 4023);

    /* a leaves: its final cumulative keeps counting, and b alone completes S0 + 3. */
    feeder_leave(a);
    r = report(S0 + 3, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 5;
    r.cumulative[HB_CTR_REQUESTS] = 3025;
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 6);
    ck_assert_uint_eq(c->out[5].second, S0 + 3);
    ck_assert_int_eq(c->out[5].status, HB_MONITOR_COMPLETE);
    ck_assert_uint_eq(c->out[5].per_second[HB_CTR_REQUESTS], 5);
    ck_assert_uint_eq(c->out[5].cumulative[HB_CTR_REQUESTS], 1003 + 3025);

    uint64_t lo, hi;
    ck_assert_int_eq(hb_monitor_range(&c->mon, &lo, &hi), 0);
    ck_assert_uint_eq(lo, S0);
    ck_assert_uint_eq(hi, S0 + 3);
    ck_assert_int_eq(hb_monitor_latest(&c->mon, HB_REPORTER_SERVER, &lo), 0);
    ck_assert_uint_eq(lo, S0 + 3);
    ck_assert_int_eq(hb_monitor_latest(&c->mon, HB_REPORTER_CLIENT, &lo), 0);
    ck_assert_uint_eq(lo, S0 + 1);
    ck_assert_uint_eq(c->mon.stats.reports, 9);
    ck_assert_uint_eq(c->mon.stats.seconds_complete, 6);
    ck_assert_uint_eq(c->mon.stats.late, 0);
    ctx_free(c);
}
END_TEST

START_TEST(test_grace_period_and_late_reports)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    o.grace_ms = 2000;
    mon_start(c, &o);
    feeder_t *a = feeder_open(c), *b = feeder_open(c);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 100;
    send_report(a, &r);
    hb_monitor_tick(&c->mon);
    ck_assert_int_eq(c->nout, 0);
    c->now_ms += 1999;
    hb_monitor_tick(&c->mon);
    ck_assert_int_eq(c->nout, 0);
    c->now_ms += 1;
    hb_monitor_tick(&c->mon);
    ck_assert_int_eq(c->nout, 1);
    ck_assert_int_eq(c->out[0].status, HB_MONITOR_GRACE);
    ck_assert_uint_eq(c->out[0].reports, 1);
    ck_assert_uint_eq(c->mon.stats.seconds_grace, 1);

    /* b's report of S0 arrives after the output: kept in the history, not output again. */
    r.per_second[HB_CTR_REQUESTS] = 50;
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 1);
    ck_assert_uint_eq(c->mon.stats.late, 1);
    hb_monitor_second_t s;
    ck_assert_int_eq(hb_monitor_get(&c->mon, S0, HB_REPORTER_SERVER, &s), 0);
    ck_assert_uint_eq(s.reports, 2);
    ck_assert_uint_eq(s.per_second[HB_CTR_REQUESTS], 150);
    ck_assert_int_eq(s.output, 1);

    /* The next second: both report, complete at once without waiting. */
    r = report(S0 + 1, HB_REPORTER_SERVER);
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 1);
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 2);
    ck_assert_int_eq(c->out[1].status, HB_MONITOR_COMPLETE);

    /* A grace-period output is never held up by an older second still waiting: they go in
     * order. S0 + 2 from a only, then S0 + 3 from a only; after the grace period both leave. */
    r = report(S0 + 2, HB_REPORTER_SERVER);
    send_report(a, &r);
    r = report(S0 + 3, HB_REPORTER_SERVER);
    send_report(a, &r);
    c->now_ms += 2000;
    hb_monitor_tick(&c->mon);
    ck_assert_int_eq(c->nout, 4);
    ck_assert_uint_eq(c->out[2].second, S0 + 2);
    ck_assert_uint_eq(c->out[3].second, S0 + 3);
    ck_assert_int_eq(c->out[3].status, HB_MONITOR_GRACE);
    ctx_free(c);
}
END_TEST

START_TEST(test_join_late_leave_and_known_window)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    o.grace_ms = 60000; /* long: every output below is by the rule */
    o.known_ms = 10000;
    mon_start(c, &o);
    feeder_t *a = feeder_open(c);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    send_report(a, &r);
    r.second = S0 + 1;
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 2); /* a alone: complete at once */

    /* b joins: until it reports, it is waited for. */
    feeder_t *b = feeder_open(c);
    r.second = S0 + 2;
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 2);
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 3);
    ck_assert_uint_eq(c->out[2].reports, 2);

    /* A client joins: it holds server seconds only until its type is known. */
    feeder_t *cl = feeder_open(c);
    r.second = S0 + 3;
    send_report(a, &r);
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 3);
    hb_report_t rc = report(S0 + 3, HB_REPORTER_CLIENT);
    send_report(cl, &rc);
    ck_assert_int_eq(c->nout, 5);
    ck_assert_ptr_nonnull(find_out(c, S0 + 3, HB_REPORTER_SERVER));
    ck_assert_ptr_nonnull(find_out(c, S0 + 3, HB_REPORTER_CLIENT));

    /* a leaves with S0 + 4 pending on it: b's report completes it without a. */
    r.second = S0 + 4;
    send_report(b, &r);
    ck_assert_int_eq(c->nout, 5);
    feeder_leave(a);
    ck_assert_int_eq(c->nout, 6);
    ck_assert_uint_eq(c->out[5].second, S0 + 4);
    ck_assert_uint_eq(c->out[5].reports, 1);
    ck_assert_int_eq(c->out[5].status, HB_MONITOR_COMPLETE);

    /* A reporter silent for longer than known_ms is no longer waited for. */
    feeder_t *e = feeder_open(c);
    r.second = S0 + 5;
    send_report(e, &r);
    ck_assert_int_eq(c->nout, 6); /* b has not reported S0 + 5 */
    c->now_ms += 10000;
    hb_monitor_tick(&c->mon);
    ck_assert_int_eq(c->nout, 6); /* b was heard exactly known_ms ago: still waited for */
    c->now_ms += 1;
    hb_monitor_tick(&c->mon);
    ck_assert_int_eq(c->nout, 7);
    ck_assert_uint_eq(c->out[6].second, S0 + 5);
    ck_assert_int_eq(c->out[6].status, HB_MONITOR_COMPLETE);
    ck_assert_uint_eq(c->mon.stats.seconds_grace, 0);
    ck_assert_uint_eq(c->mon.stats.connections_open, 3);
    ctx_free(c);
}
END_TEST

static void feeder_wait_closed_by_monitor(feeder_t *f)
{
    RUN_UNTIL(f->c, f->eof && f->closed);
}

START_TEST(test_garbage_closes_only_that_connection)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    mon_start(c, &o);
    feeder_t *a = feeder_open(c);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 10;
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 1);
    uint8_t buf[HB_REPORT_SIZE];

    /* A report of type 7. */
    feeder_t *g = feeder_open(c);
    hb_report_t bad = report(S0 + 1, 7);
    hb_report_encode(&bad, buf);
    feeder_write(g, buf, sizeof buf);
    feeder_wait_closed_by_monitor(g);
    ck_assert_uint_eq(c->mon.stats.bad_reports, 1);

    /* A second two days off the monitor's clock. */
    g = feeder_open(c);
    bad = report(T0_MS / 1000 + 2 * 86400, HB_REPORTER_SERVER);
    hb_report_encode(&bad, buf);
    feeder_write(g, buf, sizeof buf);
    feeder_wait_closed_by_monitor(g);
    ck_assert_uint_eq(c->mon.stats.bad_reports, 2);

    /* Random bytes (the type field is never 0 or 1 here). */
    g = feeder_open(c);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof buf; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    buf[8] = 0xab;
    feeder_write(g, buf, sizeof buf);
    feeder_wait_closed_by_monitor(g);
    ck_assert_uint_eq(c->mon.stats.bad_reports, 3);

    /* A reporter that changes its type. */
    g = feeder_open(c);
    bad = report(S0 + 1, HB_REPORTER_CLIENT);
    send_report(g, &bad);
    bad.type = HB_REPORTER_SERVER;
    hb_report_encode(&bad, buf);
    feeder_write(g, buf, sizeof buf);
    feeder_wait_closed_by_monitor(g);
    ck_assert_uint_eq(c->mon.stats.bad_reports, 4);

    /* Half a report, then the sender closes. */
    g = feeder_open(c);
    hb_report_encode(&r, buf);
    feeder_write(g, buf, 500);
    RUN_UNTIL(c, g->writes == 0);
    uv_close((uv_handle_t *)&g->tcp, on_feeder_closed);
    RUN_UNTIL(c, c->mon.stats.truncated == 1);
    ck_assert_uint_eq(c->mon.stats.bad_reports, 4);

    /* Only the culprits were closed: a is still connected and counted alone. */
    RUN_UNTIL(c, c->mon.stats.connections_open == 1);
    ck_assert_int_eq(a->eof, 0);
    r.second = S0 + 1;
    r.per_second[HB_CTR_REQUESTS] = 11;
    send_report(a, &r);
    const hb_monitor_second_t *s = find_out(c, S0 + 1, HB_REPORTER_SERVER);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->reports, 1);
    ck_assert_uint_eq(s->per_second[HB_CTR_REQUESTS], 11);
    ck_assert_uint_eq(c->mon.stats.connections_accepted, 6);
    ck_assert_int_ge(c->nlines, 5);
    ck_assert_ptr_nonnull(strstr(c->lines[0], "bad report (type 7)"));
    ctx_free(c);
}
END_TEST

START_TEST(test_max_reporters)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    o.max_reporters = 2;
    mon_start(c, &o);
    feeder_open(c);
    feeder_open(c);
    feeder_t *third = feeder_open(c);
    feeder_wait_closed_by_monitor(third);
    ck_assert_uint_eq(c->mon.stats.connections_rejected, 1);
    ck_assert_uint_eq(c->mon.stats.connections_open, 2);
    ck_assert_uint_eq(c->mon.stats.connections_accepted, 2);
    ctx_free(c);
}
END_TEST

START_TEST(test_history_ring_and_flush)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    o.history_s = HB_MONITOR_MIN_HISTORY_S;
    mon_start(c, &o);
    feeder_t *a = feeder_open(c);
    feeder_open(c); /* connected, silent: holds every second until the grace period */
    hb_report_t r = report(S0 - 20, HB_REPORTER_SERVER);
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 0);
    /* S0 - 4 pushes S0 - 20 out of the 16-second ring: it is output first, marked. */
    r.second = S0 - 4;
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 1);
    ck_assert_uint_eq(c->out[0].second, S0 - 20);
    ck_assert_int_eq(c->out[0].status, HB_MONITOR_INCOMPLETE);
    hb_monitor_second_t s;
    ck_assert_int_eq(hb_monitor_get(&c->mon, S0 - 20, HB_REPORTER_SERVER, &s), UV_ENOENT);
    /* Older than the history (now S0 - 19 .. S0 - 4): ignored, counted. */
    r.second = S0 - 20;
    send_report(a, &r);
    ck_assert_uint_eq(c->mon.stats.too_old, 1);
    ck_assert_int_eq(c->nout, 1);
    uint64_t lo, hi;
    ck_assert_int_eq(hb_monitor_range(&c->mon, &lo, &hi), 0);
    ck_assert_uint_eq(lo, S0 - 4);
    ck_assert_uint_eq(hi, S0 - 4);
    /* Flush (at exit): the pending second is output, marked incomplete. */
    hb_monitor_flush(&c->mon);
    ck_assert_int_eq(c->nout, 2);
    ck_assert_uint_eq(c->out[1].second, S0 - 4);
    ck_assert_int_eq(c->out[1].status, HB_MONITOR_INCOMPLETE);
    ck_assert_uint_eq(c->mon.stats.seconds_incomplete, 2);
    hb_monitor_flush(&c->mon);
    ck_assert_int_eq(c->nout, 2);
    ctx_free(c);
}
END_TEST

START_TEST(test_close_flushes_and_disconnects_reporters)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    mon_start(c, &o);
    feeder_t *a = feeder_open(c), *b = feeder_open(c);
    hb_report_t r = report(S0, HB_REPORTER_CLIENT);
    send_report(a, &r);
    ck_assert_int_eq(c->nout, 0);
    hb_monitor_close(&c->mon, on_mon_closed);
    ck_assert_int_eq(c->nout, 1); /* flushed by close, at once */
    ck_assert_int_eq(c->out[0].status, HB_MONITOR_INCOMPLETE);
    RUN_UNTIL(c, c->mon_closed == 1 && a->eof && b->eof && a->closed && b->closed);
    c->mon_inited = 0;
    ctx_free(c);
}
END_TEST

START_TEST(test_http_series_and_metrics)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    mon_start(c, &o);
    ck_assert_int_eq(hb_http_server_init(&c->loop, &c->http, NULL), 0);
    c->have_http = 1;
    c->http.data = c;
    ck_assert_int_eq(hb_http_server_listen(&c->http, "127.0.0.1", 0), 0);
    ck_assert_int_eq(hb_monitor_mount_http(&c->mon, &c->http), 0);

    feeder_t *a = feeder_open(c), *cl = feeder_open(c);
    hb_report_t r = report(S0 - 1, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 90;
    r.cumulative[HB_CTR_REQUESTS] = 900;
    send_report(a, &r);
    r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 100;
    r.cumulative[HB_CTR_REQUESTS] = 1000;
    send_report(a, &r);
    hb_report_t rc = report(S0, HB_REPORTER_CLIENT);
    rc.per_second[HB_CTR_LAT_P99] = 900;
    rc.per_second[HB_CTR_SHAKE_RECEIVED] = 42;
    send_report(cl, &rc);
    ck_assert_int_eq(c->nout, 3);

    char want[512];
    /* Three seconds asked, two held: the window starts at the oldest second held. */
    const char *resp = http_get(c, "/api/series?seconds=3");
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(resp, "Content-Type: application/json\r\n"));
    const char *body = body_of(resp);
    snprintf(want, sizeof want,
             "{\"now\":%llu,\"first\":%llu,\"last\":%llu,\"seconds\":[%llu,%llu],"
             "\"server\":{\"reports\":[1,1],\"status\":[0,0],\"nic_hosts\":[0,0],"
             "\"per_second\":{\"frame_login\":[0,0],",
             (unsigned long long)(T0_MS / 1000), (unsigned long long)(S0 - 1),
             (unsigned long long)S0, (unsigned long long)(S0 - 1), (unsigned long long)S0);
    ck_assert_int_eq(strncmp(body, want, strlen(want)), 0);
    ck_assert_ptr_nonnull(strstr(body, "\"requests\":[90,100]"));
    const char *cum = strstr(body, "\"cumulative\":{");
    ck_assert_ptr_nonnull(cum);
    ck_assert_ptr_nonnull(strstr(cum, "\"requests\":[900,1000]"));
    const char *client = strstr(body, "\"client\":{");
    ck_assert_ptr_nonnull(client);
    ck_assert_ptr_nonnull(strstr(client, "\"reports\":[null,1],\"status\":[null,0],"));
    ck_assert_ptr_nonnull(strstr(client, "\"latency_p99_us\":[null,900]"));
    ck_assert_ptr_nonnull(strstr(client, "\"shake_received\":[null,42]"));
    const char *ccum = strstr(client, "\"cumulative\":{");
    ck_assert_ptr_nonnull(ccum);
    ck_assert_ptr_null(strstr(ccum, "latency")); /* no cumulative for maximum slots */
    ck_assert_ptr_nonnull(strstr(body, ",\"monitor\":{\"reporters\":2,\"reports\":3,"
                                       "\"bad_reports\":0,\"truncated\":0,\"late\":0,"
                                       "\"too_old\":0}}"));
    ck_assert_int_eq(body[strlen(body) - 1], '}');

    resp = http_get(c, "/api/series?seconds=0");
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 400 "));
    ck_assert_ptr_nonnull(strstr(resp, "parameter 'seconds'"));
    resp = http_get(c, "/api/series?seconds=abc");
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 400 "));
    resp = http_get(c, "/api/series?seconds=1");
    snprintf(want, sizeof want, "\"first\":%llu,\"last\":%llu,\"seconds\":[%llu],",
             (unsigned long long)S0, (unsigned long long)S0, (unsigned long long)S0);
    ck_assert_ptr_nonnull(strstr(resp, want));
    resp = http_get(c, "/api/series");
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    snprintf(want, sizeof want, "\"first\":%llu,", (unsigned long long)(S0 - 1));
    ck_assert_ptr_nonnull(strstr(resp, want));

    resp = http_get(c, "/metrics");
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(resp, "Content-Type: text/plain; version=0.0.4\r\n"));
    snprintf(want, sizeof want, "\nhongbao_server_report_second %llu\n", (unsigned long long)S0);
    ck_assert_ptr_nonnull(strstr(resp, want));
    ck_assert_ptr_nonnull(strstr(resp, "# TYPE hongbao_server_requests_total counter\n"
                                       "hongbao_server_requests_total 1000\n"));
    ck_assert_ptr_nonnull(strstr(resp, "# TYPE hongbao_server_requests_per_second gauge\n"
                                       "hongbao_server_requests_per_second 100\n"));
    ck_assert_ptr_nonnull(strstr(resp, "# TYPE hongbao_client_latency_p99_seconds gauge\n"
                                       "hongbao_client_latency_p99_seconds 0.000900\n"));
    ck_assert_ptr_null(strstr(resp, "latency_p99_us"));
    ck_assert_ptr_null(strstr(resp, "latency_p99_seconds_total"));
    ck_assert_ptr_nonnull(strstr(resp, "\nhongbao_monitor_reports_total 3\n"));
    ck_assert_ptr_nonnull(strstr(resp, "\nhongbao_monitor_seconds_total{status=\"complete\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(resp, "\nhongbao_monitor_reporters 2\n"));
    ctx_free(c);
}
END_TEST

/* The local port of feeder f's connection: the peer port the monitor sees. */
static int feeder_port(feeder_t *f)
{
    struct sockaddr_in sa;
    int len = sizeof sa;
    ck_assert_int_eq(uv_tcp_getsockname(&f->tcp, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

/* A server report of second from the instance serving at 127.0.0.1:port (none for 0). */
static hb_report_t instance_report(uint64_t second, int port, uint64_t requests)
{
    hb_report_t r = report(second, HB_REPORTER_SERVER);
    if (port > 0)
        r.per_second[HB_CTR_INSTANCE] = hb_report_instance("127.0.0.1", port);
    r.per_second[HB_CTR_REQUESTS] = requests;
    r.cumulative[HB_CTR_CONN_OPENED] = requests;
    return r;
}

/* The index of the instance labelled label in m's aggregate, or -1; *live its liveness. */
static int instance_index(const hb_monitor_t *m, const char *label, int *live)
{
    const hb_aggregate_t *a = hb_monitor_aggregate(m);
    ck_assert_ptr_nonnull(a);
    for (unsigned i = 0; i < a->ninstances; i++) {
        hb_instance_second_t is;
        hb_aggregate_instance_get(a, i, 0, &is);
        if (strcmp(is.label, label) == 0) {
            *live = is.live;
            return (int)i;
        }
    }
    return -1;
}

/* Instances over real connections: three servers by the address they report, one that
 * disconnects (its line ends, the totals go on), a restart at the same address continuing its
 * line, a reporter without identity known by its connection, the bound, and /api/series and
 * /metrics showing them. */
START_TEST(test_instances_over_connections)
{
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    o.max_instances = 3;
    mon_start(c, &o);
    ck_assert_uint_eq(c->mon.opts.max_instances, 3);
    ck_assert_int_eq(hb_http_server_init(&c->loop, &c->http, NULL), 0);
    c->have_http = 1;
    c->http.data = c;
    ck_assert_int_eq(hb_http_server_listen(&c->http, "127.0.0.1", 0), 0);
    ck_assert_int_eq(hb_monitor_mount_http(&c->mon, &c->http), 0);
    const hb_aggregate_t *agg = hb_monitor_aggregate(&c->mon);
    ck_assert_ptr_nonnull(agg);
    ck_assert_ptr_null(hb_monitor_aggregate(NULL));

    feeder_t *f[3];
    for (int i = 0; i < 3; i++)
        f[i] = feeder_open(c);
    for (int i = 0; i < 3; i++) {
        hb_report_t r = instance_report(S0, 7001 + i, 100 * (uint64_t)(i + 1));
        send_report(f[i], &r);
    }
    ck_assert_int_eq(c->nout, 1);
    ck_assert_uint_eq(c->out[0].per_second[HB_CTR_REQUESTS], 600);
    ck_assert_uint_eq(agg->ninstances, 3);
    int live = 0;
    ck_assert_int_eq(instance_index(&c->mon, "127.0.0.1:7003", &live), 2);
    ck_assert_int_eq(live, 1);

    /* The third disconnects: its line ends, the totals go on with the other two. */
    feeder_leave(f[2]);
    ck_assert_int_eq(instance_index(&c->mon, "127.0.0.1:7003", &live), 2);
    ck_assert_int_eq(live, 0);
    for (int i = 0; i < 2; i++) {
        hb_report_t r = instance_report(S0 + 1, 7001 + i, 10);
        send_report(f[i], &r);
    }
    ck_assert_int_eq(c->nout, 2);
    ck_assert_int_eq(c->out[1].status, HB_MONITOR_COMPLETE);
    ck_assert_uint_eq(c->out[1].per_second[HB_CTR_REQUESTS], 20);

    /* The first restarts: a new connection, the same address, the same line. */
    feeder_leave(f[0]);
    f[0] = feeder_open(c);
    /* One without identity: known by its connection; it takes the place of the one gone. */
    feeder_t *anon = feeder_open(c);
    char anon_label[32];
    snprintf(anon_label, sizeof anon_label, "127.0.0.1:%d", feeder_port(anon));
    hb_report_t r = instance_report(S0 + 2, 7001, 1);
    send_report(f[0], &r);
    r = instance_report(S0 + 2, 7002, 2);
    send_report(f[1], &r);
    r = instance_report(S0 + 2, 0, 4);
    send_report(anon, &r);
    ck_assert_int_eq(instance_index(&c->mon, "127.0.0.1:7001", &live), 0);
    ck_assert_int_eq(live, 1);
    ck_assert_int_eq(instance_index(&c->mon, anon_label, &live), 2);
    ck_assert_int_eq(instance_index(&c->mon, "127.0.0.1:7003", &live), -1);
    hb_instance_second_t is;
    ck_assert_int_eq(hb_aggregate_instance_get(agg, 0, S0, &is), 0); /* its line goes on */
    ck_assert_int_eq(hb_aggregate_instance_get(agg, 0, S0 + 2, &is), 0);
    ck_assert_uint_eq(is.v[HB_INSTANCE_REQUESTS], 1);

    /* Past the bound: counted, in the totals, no line. */
    feeder_t *extra = feeder_open(c);
    r = instance_report(S0 + 2, 7009, 8);
    send_report(extra, &r);
    ck_assert_uint_eq(agg->ninstances, 3);
    ck_assert_uint_eq(agg->instances_untracked, 1);
    ck_assert_int_eq(instance_index(&c->mon, "127.0.0.1:7009", &live), -1);
    hb_monitor_second_t s2; /* output before it came: a late report, still in the totals */
    ck_assert_int_eq(hb_monitor_get(&c->mon, S0 + 2, HB_REPORTER_SERVER, &s2), 0);
    ck_assert_uint_eq(s2.per_second[HB_CTR_REQUESTS], 1 + 2 + 4 + 8);
    ck_assert_uint_eq(c->mon.stats.late, 1);

    const char *body = body_of(http_get(c, "/api/series?seconds=3"));
    ck_assert_ptr_nonnull(strstr(body, "\"instances\":[{\"label\":\"127.0.0.1:7001\","
                                       "\"type\":\"server\",\"live\":true,\"reports\":[1,1,1],"
                                       "\"requests\":[100,10,1],"));
    ck_assert_ptr_nonnull(strstr(body,
                                 "{\"label\":\"127.0.0.1:7002\",\"type\":\"server\","
                                 "\"live\":true,\"reports\":[1,1,1],\"requests\":[200,10,2],"));
    char want[256];
    snprintf(want, sizeof want,
             "{\"label\":\"%s\",\"type\":\"server\",\"live\":true,\"reports\":"
             "[null,null,1],\"requests\":[null,null,4],",
             anon_label);
    ck_assert_ptr_nonnull(strstr(body, want));
    ck_assert_ptr_nonnull(
        strstr(body, "\"instance_table\":{\"tracked\":3,\"max\":3,\"untracked_reports\":1}"));
    const char *resp = http_get(c, "/metrics");
    ck_assert_ptr_nonnull(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(resp, "\nhongbao_server_instance_requests_per_second{instance=\""
                                       "127.0.0.1:7002\"} 2\n"));
    snprintf(want, sizeof want, "\nhongbao_server_instance_connections{instance=\"%s\"} 4\n",
             anon_label);
    ck_assert_ptr_nonnull(strstr(resp, want));
    ck_assert_ptr_nonnull(strstr(resp, "\nhongbao_monitor_untracked_reports_total 1\n"));
    ctx_free(c);
}
END_TEST

START_TEST(test_metrics_fit_their_bound)
{
    /* Every value at its widest: the Prometheus text still fits HB_MONITOR_METRICS_MAX and a
     * line HB_MONITOR_LINE_MAX, a CSV row HB_MONITOR_CSV_ROW_MAX. */
    ctx_t *c = ctx_new();
    hb_monitor_options_t o = base_opts(c);
    /* Every application slot of both types named, with the longest name and help there are. */
    hb_counter_names_t names;
    memset(&names, 0, sizeof names);
    static const unsigned app[HB_COUNTER_APP_SLOTS] = {HB_CTR_APP_0, HB_CTR_APP_1, HB_CTR_APP_2,
                                                       HB_CTR_APP_3, HB_CTR_APP_4};
    char help[HB_COUNTER_HELP_MAX];
    memset(help, 'h', sizeof help - 1);
    help[sizeof help - 1] = '\0';
    for (uint64_t t = 0; t < 2; t++) {
        for (unsigned k = 0; k < HB_COUNTER_APP_SLOTS; k++) {
            char name[HB_COUNTER_NAME_MAX];
            memset(name, 'a' + (char)k, sizeof name - 1);
            name[sizeof name - 1] = '\0';
            ck_assert_int_eq(hb_counter_names_add(&names, t, app[k], name, help), 0);
        }
    }
    o.names = &names;
    mon_start(c, &o);
    ck_assert_ptr_ne(c->mon.opts.names, &names); /* the monitor's own copy */
    feeder_t *a = feeder_open(c), *cl = feeder_open(c);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    for (int i = 0; i < HB_COUNTER_SLOTS; i++)
        r.per_second[i] = r.cumulative[i] = UINT64_MAX;
    send_report(a, &r);
    r.type = HB_REPORTER_CLIENT;
    send_report(cl, &r);
    ck_assert_int_eq(c->nout, 2);
    char *buf = malloc(HB_MONITOR_METRICS_MAX);
    ck_assert_ptr_nonnull(buf);
    int n = hb_monitor_format_metrics(&c->mon, buf, HB_MONITOR_METRICS_MAX);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(
        strstr(buf, "hongbao_client_latency_max_seconds 18446744073709.551615\n"));
    /* The host identity UINT64_MAX: one host of each type, its NIC values counted once. */
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_server_nic_hosts 1\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_client_nic_rx_packets_total "
                                      "18446744073709551615\n"));
    ck_assert_ptr_null(strstr(buf, "nic_host_"));
    ck_assert_ptr_nonnull(
        strstr(buf, "\nhongbao_client_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee_total "
                    "18446744073709551615\n"));
    ck_assert_int_eq(hb_monitor_format_metrics(&c->mon, buf, (size_t)n), UV_ENOBUFS);
    ck_assert_int_eq(hb_monitor_format_metrics(&c->mon, buf, (size_t)n + 1), n);
    for (int i = 0; i < 2; i++) {
        c->out[i].status = HB_MONITOR_INCOMPLETE;
        ck_assert_uint_eq(c->out[i].nic_hosts, 1);
        ck_assert_int_gt(hb_monitor_format_line(&c->out[i], buf, HB_MONITOR_LINE_MAX), 0);
        ck_assert_ptr_nonnull(strstr(buf, " nic_rx=18446744073709551615 "));
        ck_assert_int_gt(hb_monitor_format_csv_row(&c->out[i], buf, HB_MONITOR_CSV_ROW_MAX), 0);
    }
    free(buf);
    ctx_free(c);
}
END_TEST

/* The index of column name in a CSV line, or -1. */
static int csv_column(const char *header, const char *name)
{
    int col = 0;
    size_t nl = strlen(name);
    const char *p = header;
    for (;;) {
        size_t len = strcspn(p, ",\n");
        if (len == nl && strncmp(p, name, nl) == 0)
            return col;
        if (p[len] != ',')
            return -1;
        p += len + 1;
        col++;
    }
}

/* Field col of a CSV line, copied into out. */
static const char *csv_field(const char *line, int col, char *out, size_t cap)
{
    const char *p = line;
    for (int i = 0; i < col; i++) {
        p = strchr(p, ',');
        ck_assert_ptr_nonnull(p);
        p++;
    }
    size_t len = strcspn(p, ",\n");
    ck_assert_uint_lt(len, cap);
    memcpy(out, p, len);
    out[len] = '\0';
    return out;
}

static int count_char(const char *s, char ch)
{
    int n = 0;
    for (; *s; s++)
        n += *s == ch;
    return n;
}

START_TEST(test_csv_and_line_output)
{
    char header[4096], row[HB_MONITOR_CSV_ROW_MAX], f[32];
    int n = hb_monitor_format_csv_header(header, sizeof header);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(strncmp(header, "second,type,status,reports,frame_login,", 39), 0);
    ck_assert_int_eq(header[n - 1], '\n');
    int c_req = csv_column(header, "requests"), c_req_t = csv_column(header, "requests_total");
    int c_p50 = csv_column(header, "latency_p50_us"), c_env = csv_column(header, "envq_full");
    ck_assert_int_gt(c_req, 3);
    ck_assert_int_gt(c_req_t, c_req);
    ck_assert_int_gt(c_p50, c_req);
    ck_assert_int_gt(c_env, c_req);
    ck_assert_int_eq(csv_column(header, "latency_p50_us_total"), -1);
    ck_assert_int_eq(csv_column(header, "send_missed_total") > 0, 1);
    ck_assert_str_eq(hb_counter_name_for(HB_REPORTER_SERVER, 40), "envq_full");

    hb_monitor_second_t s;
    memset(&s, 0, sizeof s);
    s.second = 1700000000;
    s.type = HB_REPORTER_SERVER;
    s.reports = 2;
    s.status = HB_MONITOR_GRACE;
    s.per_second[HB_CTR_REQUESTS] = 1234;
    s.cumulative[HB_CTR_REQUESTS] = 99999;
    s.per_second[HB_CTR_X_ENVQ_FULL] = 3;
    s.per_second[HB_CTR_LAT_P50] = 77; /* not a server slot: written as 0 */
    n = hb_monitor_format_csv_row(&s, row, sizeof row);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(row[n - 1], '\n');
    ck_assert_int_eq(count_char(row, ','), count_char(header, ','));
    ck_assert_int_eq(strncmp(row, "1700000000,server,grace,2,", 26), 0);
    ck_assert_str_eq(csv_field(row, c_req, f, sizeof f), "1234");
    ck_assert_str_eq(csv_field(row, c_req_t, f, sizeof f), "99999");
    ck_assert_str_eq(csv_field(row, c_env, f, sizeof f), "3");
    ck_assert_str_eq(csv_field(row, c_p50, f, sizeof f), "0");
    s.type = HB_REPORTER_CLIENT;
    s.status = HB_MONITOR_COMPLETE;
    n = hb_monitor_format_csv_row(&s, row, sizeof row);
    ck_assert_int_eq(strncmp(row, "1700000000,client,complete,2,", 29), 0);
    ck_assert_str_eq(csv_field(row, c_p50, f, sizeof f), "77");
    ck_assert_str_eq(csv_field(row, c_env, f, sizeof f), "0");
    ck_assert_int_eq(hb_monitor_format_csv_row(&s, row, 10), UV_ENOBUFS);
    ck_assert_str_eq(row, "");
    ck_assert_int_eq(hb_monitor_format_csv_row(NULL, row, sizeof row), UV_EINVAL);

    /* The terminal line. */
    char line[HB_MONITOR_LINE_MAX];
    memset(&s, 0, sizeof s);
    s.second = 1700000000;
    s.type = HB_REPORTER_SERVER;
    s.reports = 2;
    uint64_t *ps = s.per_second;
    ps[HB_CTR_REQUESTS] = 1234;
    ps[HB_CTR_SHAKE_GOT] = 100;
    ps[HB_CTR_SHAKE_NONE] = 1000;
    ps[HB_CTR_SHAKE_OVERLOAD] = 4;
    ps[HB_CTR_SHAKE_ENVELOPES] = 101;
    ps[HB_CTR_SHAKE_HANDED_OUT] = 99;
    ps[HB_CTR_SEND_CREATED] = 3;
    ps[HB_CTR_CLAIMS_GRANTED] = 9;
    ps[HB_CTR_SHAKE_AMOUNT_ISSUED] = 12345;
    ps[HB_CTR_SEND_AMOUNT_ISSUED] = 600;
    ps[HB_CTR_CONN_OPENED] = 5;
    s.cumulative[HB_CTR_CONN_OPENED] = 2100;
    s.cumulative[HB_CTR_CONN_CLOSED] = 100;
    n = hb_monitor_format_line(&s, line, sizeof line);
    ck_assert_str_eq(line, "1700000000 server [2] req=1234 got=100 none=1000 overload=4 gen=101 "
                           "out=99 send=3 claims=9 amount=12345+600 conn=2000(+5)");
    ck_assert_int_eq(n, (int)strlen(line));
    memset(&s, 0, sizeof s);
    s.second = 1700000001;
    s.type = HB_REPORTER_CLIENT;
    s.reports = 1;
    s.status = HB_MONITOR_INCOMPLETE;
    ps[HB_CTR_REQUESTS] = 1234;
    ps[HB_CTR_RESPONSES] = 1230;
    ps[HB_CTR_SHAKE_RECEIVED] = 100;
    ps[HB_CTR_SHAKE_AMOUNT_RECEIVED] = 12345;
    ps[HB_CTR_CLAIMS_GRANTED] = 9;
    ps[HB_CTR_SEND_AMOUNT_CLAIMED] = 600;
    ps[HB_CTR_LAT_P50] = 120;
    ps[HB_CTR_LAT_P99] = 900;
    ps[HB_CTR_LAT_MAX] = 2100;
    hb_monitor_format_line(&s, line, sizeof line);
    ck_assert_str_eq(line, "1700000001 client [1] req=1234 replies=1230 env=100 amount=12345 "
                           "claims=9 claimed=600 lat_us p50=120 p99=900 max=2100 (incomplete)");
    ck_assert_int_eq(hb_monitor_format_line(&s, line, 20), UV_ENOBUFS);
}
END_TEST

static Suite *monitor_suite(void)
{
    Suite *s = suite_create("monitor");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_slot_names_and_rules);
    tcase_add_test(tc, test_init_validates_and_closes_cleanly);
    tcase_add_test(tc, test_listen_errors);
    tcase_add_test(tc, test_sums_servers_and_takes_latency_max);
    tcase_add_test(tc, test_grace_period_and_late_reports);
    tcase_add_test(tc, test_join_late_leave_and_known_window);
    tcase_add_test(tc, test_garbage_closes_only_that_connection);
    tcase_add_test(tc, test_max_reporters);
    tcase_add_test(tc, test_history_ring_and_flush);
    tcase_add_test(tc, test_close_flushes_and_disconnects_reporters);
    tcase_add_test(tc, test_http_series_and_metrics);
    tcase_add_test(tc, test_metrics_fit_their_bound);
    tcase_add_test(tc, test_csv_and_line_output);
    tcase_add_test(tc, test_instances_over_connections);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(monitor_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
