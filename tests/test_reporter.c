/* Unit tests for the reporter module: real sockets on 127.0.0.1, a fake monitor on the same
 * loop, and an injected clock driven with hb_reporter_tick, so no test waits for real seconds.
 * The reporter's queue is read through the socket layer (lib/hb_sock.h). */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hb_sock.h"
#include "hongbao.h"

#define T0           1700000000ull
#define MON_MAX_CONN 4
#define MON_BUF      (1024 * 1024)
#define MAX_LINES    16
#define DEADLINE_MS  15000

typedef struct fake_monitor {
    uv_loop_t *loop;
    uv_tcp_t server;
    int port;
    int reading; /* read accepted connections */
    uv_tcp_t conn[MON_MAX_CONN];
    int nconn;
    int open[MON_MAX_CONN];
    int eofs;
    size_t len;
    uint8_t *buf; /* everything received, all connections, in order */
} fake_monitor_t;

typedef struct ctx {
    uv_loop_t loop;
    hb_counters_t counters;
    hb_reporter_t rep;
    int rep_inited;
    int closed; /* reporter close callbacks run */
    uint64_t now;
    char lines[MAX_LINES][256];
    int nlines;
    fake_monitor_t mon;
    uv_timer_t deadline;
    int expired;
    uv_write_t mon_write;
    int mon_written;
    /* targets of the run_until predicates */
    size_t want_bytes;
    uint64_t want_sent;
    uint64_t want_failures;
} ctx_t;

/* ---- fixture ---- */

static uint64_t fake_now(void *arg)
{
    return ((ctx_t *)arg)->now;
}

static void capture_log(void *arg, const char *line)
{
    ctx_t *c = arg;
    ck_assert_int_lt(c->nlines, MAX_LINES);
    ck_assert_uint_lt(strlen(line), sizeof c->lines[0]);
    strcpy(c->lines[c->nlines++], line);
}

static void on_deadline(uv_timer_t *t)
{
    ((ctx_t *)t->data)->expired = 1;
}

static void find_reporter_handle(uv_handle_t *h, void *arg)
{
    ck_assert_ptr_ne(h->data, arg);
}

/* The close callback: by now every handle of the reporter is gone from the loop. */
static void on_rep_closed(hb_reporter_t *r)
{
    ctx_t *c = r->data;
    uv_walk(&c->loop, find_reporter_handle, r);
    c->closed++;
}

static ctx_t *ctx_new(void)
{
    ctx_t *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->mon.buf = malloc(MON_BUF);
    ck_assert_ptr_nonnull(c->mon.buf);
    ck_assert_int_eq(uv_loop_init(&c->loop), 0);
    ck_assert_int_eq(hb_counters_init(&c->counters, 2, HB_REPORTER_SERVER), 0);
    ck_assert_int_eq(uv_timer_init(&c->loop, &c->deadline), 0);
    c->deadline.data = c;
    ck_assert_int_eq(uv_timer_start(&c->deadline, on_deadline, DEADLINE_MS, 0), 0);
    c->mon.loop = &c->loop;
    c->now = T0 + 10;
    return c;
}

/* Run the loop until pred holds; the deadline timer bounds the wait (an event, not a sleep). */
static void run_until(ctx_t *c, int (*pred)(ctx_t *))
{
    while (!pred(c) && !c->expired)
        uv_run(&c->loop, UV_RUN_ONCE);
    ck_assert_int_eq(pred(c), 1);
}

static int p_closed(ctx_t *c)
{
    return c->closed > 0;
}

static void rep_init(ctx_t *c, int port)
{
    hb_reporter_options_t o = {0};
    o.host = "127.0.0.1";
    o.port = port;
    o.backoff_min_ms = 10;
    o.backoff_max_ms = 40;
    o.log = capture_log;
    o.log_arg = c;
    o.now_s = fake_now;
    o.now_arg = c;
    ck_assert_int_eq(hb_reporter_init(&c->loop, &c->rep, &c->counters, &o), 0);
    c->rep.data = c;
    c->rep_inited = 1;
}

static void rep_close(ctx_t *c)
{
    hb_reporter_close(&c->rep, on_rep_closed);
    ck_assert_int_eq(c->closed, 0); /* never from inside the call */
    run_until(c, p_closed);
    ck_assert_int_eq(c->closed, 1);
    ck_assert_uint_eq(c->rep.queued_reports, 0); /* every report sent or dropped */
}

static void count_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) {
        (*(int *)arg)++;
        uv_close(h, NULL);
    }
}

/* Close everything, assert nothing was left open and the loop closes cleanly. */
static void ctx_free(ctx_t *c)
{
    if (c->rep_inited && c->closed == 0)
        rep_close(c);
    for (int i = 0; i < c->mon.nconn; i++)
        if (c->mon.open[i])
            uv_close((uv_handle_t *)&c->mon.conn[i], NULL);
    if (c->mon.port != 0)
        uv_close((uv_handle_t *)&c->mon.server, NULL);
    uv_close((uv_handle_t *)&c->deadline, NULL);
    int left = 0;
    uv_walk(&c->loop, count_handle, &left);
    ck_assert_int_eq(left, 0);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&c->loop), 0);
    hb_counters_close(&c->counters);
    free(c->mon.buf);
    free(c);
}

/* ---- the fake monitor ---- */

static void mon_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fake_monitor_t *m = h->data;
    ck_assert_uint_lt(m->len, MON_BUF);
    *buf = uv_buf_init((char *)m->buf + m->len, (unsigned)(MON_BUF - m->len));
}

static void mon_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    fake_monitor_t *m = s->data;
    if (nread > 0) {
        m->len += (size_t)nread;
        return;
    }
    if (nread < 0) {
        m->eofs++;
        for (int i = 0; i < m->nconn; i++)
            if ((uv_stream_t *)&m->conn[i] == s && m->open[i]) {
                m->open[i] = 0;
                uv_close((uv_handle_t *)s, NULL);
            }
    }
}

static void mon_on_connection(uv_stream_t *server, int status)
{
    fake_monitor_t *m = server->data;
    ck_assert_int_eq(status, 0);
    ck_assert_int_lt(m->nconn, MON_MAX_CONN);
    uv_tcp_t *t = &m->conn[m->nconn];
    ck_assert_int_eq(uv_tcp_init(m->loop, t), 0);
    t->data = m;
    m->open[m->nconn] = 1;
    m->nconn++;
    ck_assert_int_eq(uv_accept(server, (uv_stream_t *)t), 0);
    if (m->reading)
        ck_assert_int_eq(uv_read_start((uv_stream_t *)t, mon_alloc, mon_on_read), 0);
}

/* Bind an ephemeral port on 127.0.0.1 without listening: connections to it are refused. */
static void mon_bind(ctx_t *c)
{
    fake_monitor_t *m = &c->mon;
    struct sockaddr_in sa;
    ck_assert_int_eq(uv_tcp_init(&c->loop, &m->server), 0);
    m->server.data = m;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    ck_assert_int_eq(uv_tcp_bind(&m->server, (const struct sockaddr *)&sa, 0), 0);
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    ck_assert_int_eq(uv_tcp_getsockname(&m->server, (struct sockaddr *)&ss, &len), 0);
    m->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    ck_assert_int_gt(m->port, 0);
}

static void mon_listen(ctx_t *c)
{
    ck_assert_int_eq(uv_listen((uv_stream_t *)&c->mon.server, 8, mon_on_connection), 0);
}

/* A monitor that is up and reads. */
static void mon_start(ctx_t *c)
{
    c->mon.reading = 1;
    mon_bind(c);
    mon_listen(c);
}

static size_t mon_reports(const ctx_t *c)
{
    return c->mon.len / HB_REPORT_SIZE;
}

static hb_report_t mon_report(const ctx_t *c, size_t i)
{
    hb_report_t rep;
    ck_assert_uint_le((i + 1) * HB_REPORT_SIZE, c->mon.len);
    ck_assert_int_eq(hb_report_decode(c->mon.buf + i * HB_REPORT_SIZE, HB_REPORT_SIZE, &rep), 0);
    return rep;
}

/* ---- predicates ---- */

static int p_connected(ctx_t *c)
{
    return c->rep.connected && c->mon.nconn >= 1 && c->rep.stats.connects >= 1;
}

static int p_received(ctx_t *c)
{
    return c->mon.len >= c->want_bytes && c->rep.stats.sent >= c->want_sent;
}

static int p_failures(ctx_t *c)
{
    return c->rep.stats.connect_failures >= c->want_failures;
}

static int p_reconnected(ctx_t *c)
{
    return c->rep.stats.disconnects == 1 && c->rep.stats.connects == 2 && c->rep.connected &&
           c->mon.nconn == 2;
}

static int p_drained(ctx_t *c)
{
    return hb__sock_queued(c->rep.sock) == 0;
}

static int p_closed_and_eof(ctx_t *c)
{
    return c->closed > 0 && c->mon.eofs >= 1;
}

static int p_mon_written(ctx_t *c)
{
    return c->mon_written;
}

static void on_mon_written(uv_write_t *req, int status)
{
    ck_assert_int_eq(status, 0);
    ((ctx_t *)req->data)->mon_written = 1;
}

/* Tick, then run until the monitor has `reports` reports in all and the reporter counts them
 * sent. */
static void tick_and_receive(ctx_t *c, size_t reports)
{
    hb_reporter_tick(&c->rep);
    c->want_bytes = reports * HB_REPORT_SIZE;
    c->want_sent = reports;
    run_until(c, p_received);
    ck_assert_uint_eq(c->mon.len, reports * HB_REPORT_SIZE);
    ck_assert_uint_eq(c->rep.stats.sent, reports);
}

static void connect_reporter(ctx_t *c)
{
    mon_start(c);
    rep_init(c, c->mon.port);
    ck_assert_int_eq(hb_reporter_start(&c->rep), 0);
    run_until(c, p_connected);
}

static void assert_line(const ctx_t *c, int i, const char *what)
{
    char want[256];
    snprintf(want, sizeof want, "monitor 127.0.0.1:%d %s", c->mon.port, what);
    ck_assert_int_gt(c->nlines, i);
    ck_assert_str_eq(c->lines[i], want);
}

/* ---- tests ---- */

static void on_close_count(hb_reporter_t *r)
{
    (*(int *)r->data)++;
}

START_TEST(test_init_validates_and_fills_defaults)
{
    uv_loop_t loop;
    hb_counters_t ctr;
    hb_reporter_t r;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(hb_counters_init(&ctr, 1, HB_REPORTER_CLIENT), 0);

    hb_reporter_options_t o = {0};
    ck_assert_int_eq(hb_reporter_init(NULL, &r, &ctr, &o), UV_EINVAL);
    ck_assert_int_eq(hb_reporter_init(&loop, NULL, &ctr, &o), UV_EINVAL);
    ck_assert_int_eq(hb_reporter_init(&loop, &r, NULL, &o), UV_EINVAL);
    static const char *const bad_hosts[] = {"localhost", "256.0.0.1", "1.2.3",
                                            "",          "::g",       "127.0.0.1:80"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        o.host = bad_hosts[i];
        ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), UV_EINVAL);
    }
    /* A valid IPv6 literal (an unknown zone id is accepted) too long to keep. */
    char long_host[HB_REPORTER_HOST_MAX + 8] = "fe80::1%";
    memset(long_host + 8, 'z', sizeof long_host - 9);
    long_host[sizeof long_host - 1] = '\0';
    o.host = long_host;
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), UV_EINVAL);
    o.host = NULL;
    o.port = -1;
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), UV_EINVAL);
    o.port = 65536;
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), UV_EINVAL);
    o.port = 0;
    o.delay_s = HB_REPORTER_MAX_DELAY_S + 1;
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), UV_EINVAL);
    o.delay_s = 0;
    o.backoff_min_ms = 300;
    o.backoff_max_ms = 100;
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), UV_EINVAL);
    o.backoff_min_ms = 6000; /* above the default maximum */
    o.backoff_max_ms = 0;
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), UV_EINVAL);

    /* NULL options: every default. */
    int closes = 0;
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, NULL), 0);
    ck_assert_ptr_null(r.data);
    r.data = &closes;
    ck_assert_str_eq(r.opts.host, "127.0.0.1");
    ck_assert_int_eq(r.opts.port, HB_REPORTER_DEFAULT_PORT);
    ck_assert_uint_eq(r.opts.delay_s, 3);
    ck_assert_uint_eq(r.opts.backoff_min_ms, 200);
    ck_assert_uint_eq(r.opts.backoff_max_ms, 5000);
    ck_assert_ptr_nonnull(r.opts.now_s);
    ck_assert_str_eq(r.peer, "127.0.0.1:8002");
    ck_assert_int_eq(r.connected, 0);
    ck_assert_uint_eq(r.stats.sent + r.stats.dropped + r.stats.connects, 0);
    hb_reporter_close(&r, on_close_count); /* never started: closes all the same */
    hb_reporter_close(&r, on_close_count); /* a second call does nothing */
    ck_assert_int_eq(hb_reporter_start(&r), UV_EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(closes, 1);

    /* An IPv6 literal, and a host string that need not outlive init. */
    char host[8];
    strcpy(host, "::1");
    o = (hb_reporter_options_t){.host = host, .port = 9, .delay_s = HB_REPORTER_MAX_DELAY_S};
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, &o), 0);
    strcpy(host, "xx");
    ck_assert_str_eq(r.opts.host, "::1");
    ck_assert_str_eq(r.peer, "[::1]:9");
    hb_reporter_close(&r, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);

    /* Counters that are not initialised. */
    hb_counters_close(&ctr);
    ck_assert_int_eq(hb_reporter_init(&loop, &r, &ctr, NULL), UV_EINVAL);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(test_reports_arrive_with_the_delayed_second)
{
    ctx_t *c = ctx_new();
    /* Second T0+7: 5 + 2 requests from two shards and 3 shakes got; second T0+8: 11 requests. */
    hb_counters_add(&c->counters, 0, HB_CTR_REQUESTS, T0 + 7, 5);
    hb_counters_add(&c->counters, 1, HB_CTR_REQUESTS, T0 + 7, 2);
    hb_counters_add(&c->counters, 1, HB_CTR_SHAKE_GOT, T0 + 7, 3);
    hb_counters_add(&c->counters, 0, HB_CTR_REQUESTS, T0 + 8, 11);
    connect_reporter(c);
    ck_assert_int_eq(hb_reporter_start(&c->rep), UV_EALREADY);
    ck_assert_int_eq(c->nlines, 1);
    assert_line(c, 0, "connected");

    c->now = T0 + 10;
    tick_and_receive(c, 1);
    hb_report_t rep = mon_report(c, 0);
    ck_assert_uint_eq(rep.second, T0 + 7);
    ck_assert_uint_eq(rep.type, HB_REPORTER_SERVER);
    ck_assert_uint_eq(rep.per_second[HB_CTR_REQUESTS], 7);
    ck_assert_uint_eq(rep.per_second[HB_CTR_SHAKE_GOT], 3);
    ck_assert_uint_eq(rep.per_second[HB_CTR_RESPONSES], 0);
    ck_assert_uint_eq(rep.cumulative[HB_CTR_REQUESTS], 18);
    ck_assert_uint_eq(rep.cumulative[HB_CTR_SHAKE_GOT], 3);

    /* The same second again sends nothing; the next second sends exactly the next report. */
    hb_reporter_tick(&c->rep);
    c->now = T0 + 11;
    tick_and_receive(c, 2);
    rep = mon_report(c, 1);
    ck_assert_uint_eq(rep.second, T0 + 8);
    ck_assert_uint_eq(rep.per_second[HB_CTR_REQUESTS], 11);
    ck_assert_uint_eq(rep.per_second[HB_CTR_SHAKE_GOT], 0);
    ck_assert_uint_eq(rep.cumulative[HB_CTR_REQUESTS], 18);

    ck_assert_uint_eq(c->rep.stats.dropped, 0);
    ck_assert_uint_eq(c->rep.stats.connects, 1);
    ck_assert_uint_eq(c->rep.stats.connect_failures, 0);
    ck_assert_int_eq(c->nlines, 1);
    ctx_free(c);
}
END_TEST

START_TEST(test_catch_up_after_a_gap_is_bounded_by_history)
{
    ctx_t *c = ctx_new();
    hb_counters_add(&c->counters, 0, HB_CTR_REQUESTS, T0 + 100, 100);
    hb_counters_add(&c->counters, 1, HB_CTR_REQUESTS, T0 + 105, 105);
    connect_reporter(c);
    c->now = T0 + 100;
    tick_and_receive(c, 1);
    ck_assert_uint_eq(mon_report(c, 0).second, T0 + 97);

    /* Ten seconds later: the ten seconds T0+98..T0+107, in order, in one batch. */
    c->now = T0 + 110;
    tick_and_receive(c, 11);
    for (size_t i = 0; i < 11; i++) {
        hb_report_t rep = mon_report(c, i);
        ck_assert_uint_eq(rep.second, T0 + 97 + i);
        uint64_t want = rep.second == T0 + 100 ? 100 : rep.second == T0 + 105 ? 105 : 0;
        ck_assert_uint_eq(rep.per_second[HB_CTR_REQUESTS], want);
    }

    /* A long gap: only the seconds still in the history are sent, the older ones are dropped. */
    hb_counters_add(&c->counters, 0, HB_CTR_REQUESTS, T0 + 296, 9);
    c->now = T0 + 300;
    const uint64_t first = T0 + 300 - (HB_COUNTERS_HISTORY - 1);
    const size_t batch = (size_t)(T0 + 297 - first + 1);
    ck_assert_uint_eq(batch, HB_COUNTERS_HISTORY - 3);
    tick_and_receive(c, 11 + batch);
    ck_assert_uint_eq(c->rep.stats.dropped, first - (T0 + 108));
    for (size_t i = 0; i < batch; i++) {
        hb_report_t rep = mon_report(c, 11 + i);
        ck_assert_uint_eq(rep.second, first + i);
        ck_assert_uint_eq(rep.per_second[HB_CTR_REQUESTS], rep.second == T0 + 296 ? 9 : 0);
        ck_assert_uint_eq(rep.cumulative[HB_CTR_REQUESTS], 214);
    }
    /* Every second from the first one is either sent or dropped. */
    ck_assert_uint_eq(c->rep.stats.sent + c->rep.stats.dropped, (T0 + 297) - (T0 + 97) + 1);

    /* The clock steps back a little: nothing is sent again, nothing until it passes T0+297. */
    c->now = T0 + 250;
    hb_reporter_tick(&c->rep);
    c->now = T0 + 301;
    tick_and_receive(c, 11 + batch + 1);
    ck_assert_uint_eq(mon_report(c, 11 + batch).second, T0 + 298);
    /* It steps back beyond the history: reporting restarts from there rather than stall. */
    c->now = T0 + 100;
    tick_and_receive(c, 11 + batch + 2);
    ck_assert_uint_eq(mon_report(c, 11 + batch + 1).second, T0 + 97);
    ctx_free(c);
}
END_TEST

START_TEST(test_monitor_down_at_start)
{
    ctx_t *c = ctx_new();
    mon_bind(c); /* bound, not listening: refused */
    c->mon.reading = 1;
    rep_init(c, c->mon.port);
    c->now = T0 + 10;
    ck_assert_int_eq(hb_reporter_start(&c->rep), 0);
    hb_reporter_tick(&c->rep); /* first second due: T0+7 */

    /* Several refused attempts, through the back-off timer: one line only. */
    c->want_failures = 4;
    run_until(c, p_failures);
    ck_assert_int_eq(c->rep.connected, 0);
    ck_assert_uint_eq(c->rep.backoff_ms, 40); /* doubled up to the maximum */
    ck_assert_int_eq(c->nlines, 1);
    assert_line(c, 0,
                "unreachable (connection refused); reports dropped until it is back, retrying");

    /* Seconds wait while they are in the history, then are dropped and counted. */
    for (int i = 0; i < 5; i++) {
        c->now++;
        hb_reporter_tick(&c->rep);
    }
    ck_assert_uint_eq(c->rep.stats.dropped, 0);
    ck_assert_uint_eq(c->rep.stats.sent, 0);
    c->now = T0 + 100;
    hb_reporter_tick(&c->rep);
    const uint64_t first = T0 + 100 - (HB_COUNTERS_HISTORY - 1);
    ck_assert_uint_eq(c->rep.stats.dropped, first - (T0 + 7));
    c->want_failures = c->rep.stats.connect_failures + 2;
    run_until(c, p_failures);
    ck_assert_int_eq(c->nlines, 1);

    /* The monitor comes up: the reporter connects on its own and says so once. */
    mon_listen(c);
    run_until(c, p_connected);
    ck_assert_int_eq(c->nlines, 2);
    assert_line(c, 1, "connected");
    ck_assert_uint_eq(c->rep.stats.connects, 1);
    ck_assert_uint_eq(c->rep.stats.disconnects, 0);

    /* The next tick catches up on the seconds still in the history. */
    const size_t batch = (size_t)(T0 + 97 - first + 1);
    tick_and_receive(c, batch);
    for (size_t i = 0; i < batch; i++)
        ck_assert_uint_eq(mon_report(c, i).second, first + i);
    ck_assert_uint_eq(c->rep.stats.sent + c->rep.stats.dropped, (T0 + 97) - (T0 + 7) + 1);
    ck_assert_uint_eq(c->rep.backoff_ms, 10); /* a write succeeded: back to the minimum */
    ck_assert_int_eq(c->nlines, 2);
    ctx_free(c);
}
END_TEST

START_TEST(test_monitor_data_is_discarded_and_close_reconnects)
{
    ctx_t *c = ctx_new();
    connect_reporter(c);
    c->now = T0 + 10;
    tick_and_receive(c, 1);

    /* The monitor sends something: read, discarded, the connection stays. */
    static char junk[] = "unexpected bytes from the monitor\n";
    uv_buf_t b = uv_buf_init(junk, sizeof junk - 1);
    c->mon_write.data = c;
    ck_assert_int_eq(uv_write(&c->mon_write, (uv_stream_t *)&c->mon.conn[0], &b, 1, on_mon_written),
                     0);
    run_until(c, p_mon_written);
    c->now = T0 + 11;
    tick_and_receive(c, 2);
    c->now = T0 + 12;
    tick_and_receive(c, 3);
    ck_assert_uint_eq(c->rep.stats.disconnects, 0);
    ck_assert_int_eq(c->rep.connected, 1);

    /* The monitor closes the connection: the reporter notices and reconnects. */
    c->mon.open[0] = 0;
    uv_close((uv_handle_t *)&c->mon.conn[0], NULL);
    run_until(c, p_reconnected);
    ck_assert_int_eq(c->nlines, 3);
    assert_line(c, 0, "connected");
    char want[128];
    int n = snprintf(want, sizeof want, "monitor 127.0.0.1:%d connection lost (", c->mon.port);
    ck_assert_int_eq(strncmp(c->lines[1], want, (size_t)n), 0);
    ck_assert_ptr_nonnull(strstr(c->lines[1], "); reports dropped until it is back, retrying"));
    assert_line(c, 2, "connected");

    /* Reports flow on the new connection. */
    c->now = T0 + 13;
    tick_and_receive(c, 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(mon_report(c, i).second, T0 + 7 + i);
    ck_assert_uint_eq(c->rep.stats.dropped, 0);
    ctx_free(c);
}
END_TEST

START_TEST(test_close_sends_the_final_seconds)
{
    ctx_t *c = ctx_new();
    hb_counters_add(&c->counters, 0, HB_CTR_REQUESTS, T0 + 9, 4);
    connect_reporter(c);
    c->now = T0 + 10;
    tick_and_receive(c, 1);

    /* Close at T0+10: T0+8 and T0+9 go out at once, then the callback runs. */
    hb_reporter_close(&c->rep, on_rep_closed);
    ck_assert_int_eq(c->closed, 0);
    hb_reporter_tick(&c->rep); /* ignored once closing */
    run_until(c, p_closed_and_eof);
    ck_assert_int_eq(c->closed, 1);
    ck_assert_uint_eq(c->mon.len, 3 * HB_REPORT_SIZE);
    ck_assert_uint_eq(mon_report(c, 1).second, T0 + 8);
    hb_report_t rep = mon_report(c, 2);
    ck_assert_uint_eq(rep.second, T0 + 9);
    ck_assert_uint_eq(rep.per_second[HB_CTR_REQUESTS], 4);
    ck_assert_uint_eq(c->rep.stats.sent, 3);
    ck_assert_uint_eq(c->rep.stats.dropped, 0);
    ck_assert_int_eq(c->rep.connected, 0);
    ck_assert_int_eq(c->nlines, 1); /* nothing logged by close */
    ctx_free(c);
}
END_TEST

START_TEST(test_close_while_disconnected)
{
    ctx_t *c = ctx_new();
    mon_bind(c);
    rep_init(c, c->mon.port);
    c->now = T0 + 10;
    ck_assert_int_eq(hb_reporter_start(&c->rep), 0);
    hb_reporter_tick(&c->rep);
    c->want_failures = 2;
    run_until(c, p_failures);
    rep_close(c);
    /* T0+7..T0+9 could not be sent: dropped. */
    ck_assert_uint_eq(c->rep.stats.dropped, 3);
    ck_assert_uint_eq(c->rep.stats.sent, 0);
    ck_assert_int_eq(c->nlines, 1);
    ctx_free(c);

    /* Closed with the connect still in flight. */
    c = ctx_new();
    mon_bind(c);
    rep_init(c, c->mon.port);
    ck_assert_int_eq(hb_reporter_start(&c->rep), 0);
    rep_close(c);
    ck_assert_uint_eq(c->rep.stats.connects, 0);
    ctx_free(c);

    /* Closed while the monitor is connected and stalled on nothing: no tick ever ran. */
    c = ctx_new();
    connect_reporter(c);
    rep_close(c);
    ck_assert_uint_eq(c->rep.stats.sent, c->rep.opts.delay_s);
    ctx_free(c);
}
END_TEST

/* Connect to a monitor that accepts and never reads, with small socket buffers on both sides. */
static void connect_stuck_monitor(ctx_t *c)
{
    mon_bind(c);
    int small = 4096;
    ck_assert_int_eq(uv_recv_buffer_size((uv_handle_t *)&c->mon.server, &small), 0);
    mon_listen(c);
    rep_init(c, c->mon.port);
    ck_assert_int_eq(hb_reporter_start(&c->rep), 0);
    run_until(c, p_connected);
    small = 4096;
    ck_assert_int_eq(setsockopt(c->rep.sock->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    hb_reporter_tick(&c->rep);
}

START_TEST(test_stuck_monitor_costs_drops_not_memory)
{
    ctx_t *c = ctx_new();
    connect_stuck_monitor(c);
    const uint64_t first = c->now - c->rep.opts.delay_s;
    for (int i = 0; i < 400 && c->rep.stats.dropped == 0; i++) {
        c->now += HB_COUNTERS_HISTORY - 3;
        hb_reporter_tick(&c->rep);
        uv_run(&c->loop, UV_RUN_NOWAIT);
        ck_assert_uint_le(hb__sock_queued(c->rep.sock), HB_REPORTER_MAX_PENDING_BYTES);
    }
    ck_assert_uint_gt(c->rep.stats.dropped, 0);
    ck_assert_uint_gt(hb__sock_queued(c->rep.sock), 0);
    ck_assert_int_eq(c->rep.connected, 1);
    ck_assert_uint_eq(c->rep.stats.disconnects, 0);

    /* The monitor reads again: what was queued arrives, the next tick catches up. */
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&c->mon.conn[0], mon_alloc, mon_on_read), 0);
    run_until(c, p_drained);
    c->now++;
    hb_reporter_tick(&c->rep);
    run_until(c, p_drained);
    c->want_bytes = c->rep.stats.sent * HB_REPORT_SIZE;
    c->want_sent = 0;
    run_until(c, p_received);
    ck_assert_uint_eq(c->mon.len, c->rep.stats.sent * HB_REPORT_SIZE);
    const uint64_t last = c->now - c->rep.opts.delay_s;
    ck_assert_uint_eq(mon_report(c, mon_reports(c) - 1).second, last);
    for (size_t i = 1; i < mon_reports(c); i++)
        ck_assert_uint_gt(mon_report(c, i).second, mon_report(c, i - 1).second);
    ck_assert_uint_eq(c->rep.stats.sent + c->rep.stats.dropped, last - first + 1);
    ctx_free(c);
}
END_TEST

START_TEST(test_close_waits_for_queued_writes)
{
    ctx_t *c = ctx_new();
    connect_stuck_monitor(c);
    const uint64_t first = c->now - c->rep.opts.delay_s;
    /* Queue writes the kernel cannot take yet. */
    for (int i = 0; i < 400 && hb__sock_queued(c->rep.sock) == 0; i++) {
        c->now += HB_COUNTERS_HISTORY - 3;
        hb_reporter_tick(&c->rep);
        uv_run(&c->loop, UV_RUN_NOWAIT);
    }
    ck_assert_uint_gt(hb__sock_queued(c->rep.sock), 0);
    const uint64_t sent_before = c->rep.stats.sent;

    /* Close waits for them, for a bounded time; the monitor reads meanwhile and gets them all. */
    hb_reporter_close(&c->rep, on_rep_closed);
    ck_assert_int_eq(c->closed, 0);
    ck_assert_int_ne(uv_is_active((uv_handle_t *)&c->rep.timer), 0);
    ck_assert_uint_gt(uv_timer_get_due_in(&c->rep.timer), 0);
    ck_assert_uint_le(uv_timer_get_due_in(&c->rep.timer), HB_REPORTER_CLOSE_TIMEOUT_MS);
    ck_assert_int_eq(uv_read_start((uv_stream_t *)&c->mon.conn[0], mon_alloc, mon_on_read), 0);
    run_until(c, p_closed_and_eof);
    ck_assert_uint_gt(c->rep.stats.sent, sent_before);
    ck_assert_uint_eq(c->mon.len, c->rep.stats.sent * HB_REPORT_SIZE);
    ck_assert_uint_eq(c->rep.stats.sent + c->rep.stats.dropped, (c->now - 1) - first + 1);
    ck_assert_uint_eq(c->rep.stats.disconnects, 0);
    ctx_free(c);
}
END_TEST

START_TEST(test_monitor_reset_with_queued_reports)
{
    signal(SIGPIPE, SIG_DFL); /* a write that raised it would end the test */
    ctx_t *c = ctx_new();
    connect_stuck_monitor(c);
    const uint64_t first = c->now - c->rep.opts.delay_s;
    for (int i = 0; i < 400 && hb__sock_queued(c->rep.sock) == 0; i++) {
        c->now += HB_COUNTERS_HISTORY - 3;
        hb_reporter_tick(&c->rep);
        uv_run(&c->loop, UV_RUN_NOWAIT);
    }
    ck_assert_uint_gt(hb__sock_queued(c->rep.sock), 0);
    const uint64_t dropped_before = c->rep.stats.dropped;

    /* The monitor closes with unread data: a reset. The reports queued are counted as dropped
     * (never sent twice); the reporter reconnects. */
    c->mon.reading = 1;
    c->mon.open[0] = 0;
    uv_close((uv_handle_t *)&c->mon.conn[0], NULL);
    run_until(c, p_reconnected);
    ck_assert_uint_gt(c->rep.stats.dropped, dropped_before);
    ck_assert_int_eq(c->nlines, 3);
    char want[128];
    int n = snprintf(want, sizeof want, "monitor 127.0.0.1:%d connection lost (", c->mon.port);
    ck_assert_int_eq(strncmp(c->lines[1], want, (size_t)n), 0);
    assert_line(c, 2, "connected");

    const uint64_t sent_before = c->rep.stats.sent;
    c->now++;
    hb_reporter_tick(&c->rep);
    run_until(c, p_drained);
    c->want_bytes = (c->rep.stats.sent - sent_before) * HB_REPORT_SIZE;
    c->want_sent = 0;
    run_until(c, p_received);
    ck_assert_uint_gt(c->mon.len, 0);
    ck_assert_uint_eq(c->mon.len, (c->rep.stats.sent - sent_before) * HB_REPORT_SIZE);
    const uint64_t last = c->now - c->rep.opts.delay_s;
    ck_assert_uint_eq(mon_report(c, mon_reports(c) - 1).second, last);
    ck_assert_uint_eq(c->rep.stats.sent + c->rep.stats.dropped, last - first + 1);
    ctx_free(c);
}
END_TEST

static Suite *reporter_suite(void)
{
    Suite *s = suite_create("reporter");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_init_validates_and_fills_defaults);
    tcase_add_test(tc, test_reports_arrive_with_the_delayed_second);
    tcase_add_test(tc, test_catch_up_after_a_gap_is_bounded_by_history);
    tcase_add_test(tc, test_monitor_down_at_start);
    tcase_add_test(tc, test_monitor_data_is_discarded_and_close_reconnects);
    tcase_add_test(tc, test_close_sends_the_final_seconds);
    tcase_add_test(tc, test_close_while_disconnected);
    tcase_add_test(tc, test_stuck_monitor_costs_drops_not_memory);
    tcase_add_test(tc, test_close_waits_for_queued_writes);
    tcase_add_test(tc, test_monitor_reset_with_queued_reports);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reporter_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
