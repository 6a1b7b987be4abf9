/* The monitor: reporter connections on the library's socket layer (hb_sock.h), per-(second,
 * type) aggregation in a bounded ring, the completeness rule, and the renderers (line, CSV,
 * Prometheus, JSON series). */
#include "hb_internal.h"
#include "hongbao/monitor.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hb_sock.h"

#include "hongbao/server.h"

#define HB_MON_NTYPES         2
#define HB_MON_LISTEN_BACKLOG 128
/* /api/series starts rendering into this much and doubles up to the cap. */
#define HB_MON_SERIES_START (64u * 1024)
#define HB_MON_SERIES_CAP   (256u * 1024 * 1024)

/* One (second, type) of the history. */
struct hb_mon_entry {
    uint64_t second;
    uint64_t first_ms; /* when its first report arrived */
    uint32_t reports;
    uint8_t held; /* a report of this second and type was added */
    uint8_t output;
    uint8_t status;
    uint64_t per_second[HB_COUNTER_SLOTS];
    uint64_t cumulative[HB_COUNTER_SLOTS];
};

/* One reporter connection. */
struct hb_mon_conn {
    hb_sock_t sock; /* sock.poll.data: the connection */
    hb_monitor_t *m;
    unsigned index; /* in impl->conns while connected */
    int connected;  /* 0 once closing or rejected */
    int have_type;
    uint64_t type;
    int have_last;
    uint64_t last_second;           /* the newest second it reported */
    uint64_t heard_ms;              /* when it connected, then when its latest report arrived */
    uint64_t cum[HB_COUNTER_SLOTS]; /* its latest cumulative values */
    size_t len;                     /* bytes of buf holding a partial report */
    char peer[64];
    uint8_t buf[HB_REPORT_SIZE];
};

struct hb_monitor_impl {
    hb_listener_t listener; /* listener.poll.data: the monitor */
    int listener_started;   /* hb__listener_start was called: close the listener */
    uv_timer_t timer;
    unsigned handles; /* handles on the loop and not yet closed */
    int listening;
    int closing;
    int emitting;
    hb_monitor_close_cb close_cb;
    struct hb_mon_entry *ring; /* history_s * 2 entries: [(second % history_s) * 2 + type] */
    int have_newest;
    uint64_t newest;              /* the newest second held, either type */
    uint64_t next[HB_MON_NTYPES]; /* every held entry of a type below it was output */
    int have_latest[HB_MON_NTYPES];
    uint64_t latest[HB_MON_NTYPES];                      /* the newest second output */
    uint64_t total_cum[HB_MON_NTYPES][HB_COUNTER_SLOTS]; /* sum of every reporter's latest */
    struct hb_mon_conn **conns; /* connected reporters, max_reporters slots */
    unsigned nconns;
    char metrics_buf[HB_MONITOR_METRICS_MAX];
};

/* ---- names ---- */

static const char *const hb_mon_client_names[] = {
    "latency_p50_us", "latency_p90_us",       "latency_p99_us",       "latency_p999_us",
    "latency_max_us", "claim_latency_p50_us", "claim_latency_p99_us", "send_missed",
};

int hb_monitor_slot_is_max(unsigned idx)
{
    return idx >= HB_MONITOR_MAX_SLOT_FIRST && idx <= HB_MONITOR_MAX_SLOT_LAST;
}

const char *hb_monitor_slot_name(uint64_t type, unsigned idx)
{
    if (idx >= HB_COUNTER_SLOTS)
        return NULL;
    if (type == HB_REPORTER_SERVER)
        return hb_server_counter_name(idx);
    if (type != HB_REPORTER_CLIENT)
        return NULL;
    const char *n = hb_counter_name(idx);
    if (n != NULL)
        return n;
    unsigned first = HB_MONITOR_MAX_SLOT_FIRST;
    if (idx >= first && idx - first < sizeof hb_mon_client_names / sizeof hb_mon_client_names[0])
        return hb_mon_client_names[idx - first];
    return NULL;
}

/* The name of a slot for either type (the CSV's union of columns). */
static const char *hb_mon_any_name(unsigned idx)
{
    const char *n = hb_monitor_slot_name(HB_REPORTER_SERVER, idx);
    return n != NULL ? n : hb_monitor_slot_name(HB_REPORTER_CLIENT, idx);
}

static const char *hb_mon_type_name(uint64_t type)
{
    return type == HB_REPORTER_SERVER ? "server" : "client";
}

static const char *const hb_mon_status_names[] = {"complete", "grace", "incomplete"};

/* ---- small helpers ---- */

static uint64_t hb_mon_system_ms(void *arg)
{
    (void)arg;
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0 || tv.tv_sec < 0)
        return 0;
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static uint64_t hb_mon_now(const hb_monitor_t *m)
{
    return m->opts.now_ms(m->opts.now_arg);
}

static HB_PRINTF(2, 3) void hb_mon_logf(hb_monitor_t *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(m->opts.log, m->opts.log_arg, fmt, ap);
    va_end(ap);
}

/* The oldest second the ring may hold, given its newest. */
static uint64_t hb_mon_oldest(const struct hb_monitor_impl *impl, unsigned history)
{
    return impl->newest >= history - 1 ? impl->newest - (history - 1) : 0;
}

static struct hb_mon_entry *hb_mon_slot(const hb_monitor_t *m, uint64_t second, uint64_t type)
{
    return &m->impl->ring[(second % m->opts.history_s) * HB_MON_NTYPES + type];
}

/* The entry of (second, type) if the history holds it, else NULL. */
static struct hb_mon_entry *hb_mon_entry(const hb_monitor_t *m, uint64_t second, uint64_t type)
{
    const struct hb_monitor_impl *impl = m->impl;
    if (!impl->have_newest || second > impl->newest ||
        second < hb_mon_oldest(impl, m->opts.history_s))
        return NULL;
    struct hb_mon_entry *e = hb_mon_slot(m, second, type);
    return e->held && e->second == second ? e : NULL;
}

static void hb_mon_to_public(const struct hb_mon_entry *e, uint64_t type, hb_monitor_second_t *s)
{
    s->second = e->second;
    s->type = type;
    s->reports = e->reports;
    s->status = (hb_monitor_status_t)e->status;
    s->output = e->output;
    memcpy(s->per_second, e->per_second, sizeof s->per_second);
    memcpy(s->cumulative, e->cumulative, sizeof s->cumulative);
}

/* ---- completeness and output ---- */

/* The newest second every expected reporter of type has reached, into *horizon (UINT64_MAX when
 * none is expected). Returns 0 when some expected reporter has not reported yet, so no second
 * can be complete by the rule. */
static int hb_mon_horizon(const hb_monitor_t *m, uint64_t type, uint64_t now, uint64_t *horizon)
{
    const struct hb_monitor_impl *impl = m->impl;
    uint64_t h = UINT64_MAX;
    for (unsigned i = 0; i < impl->nconns; i++) {
        const struct hb_mon_conn *c = impl->conns[i];
        if (now > c->heard_ms && now - c->heard_ms > m->opts.known_ms)
            continue; /* silent too long: not waited for */
        if (!c->have_type)
            return 0;
        if (c->type != type)
            continue;
        if (c->last_second < h)
            h = c->last_second;
    }
    *horizon = h;
    return 1;
}

static void hb_mon_output(hb_monitor_t *m, struct hb_mon_entry *e, uint64_t type, int status)
{
    struct hb_monitor_impl *impl = m->impl;
    e->output = 1;
    e->status = (uint8_t)status;
    if (status == HB_MONITOR_COMPLETE)
        m->stats.seconds_complete++;
    else if (status == HB_MONITOR_GRACE)
        m->stats.seconds_grace++;
    else
        m->stats.seconds_incomplete++;
    if (!impl->have_latest[type] || e->second > impl->latest[type]) {
        impl->have_latest[type] = 1;
        impl->latest[type] = e->second;
    }
    if (m->opts.on_second != NULL) {
        hb_monitor_second_t s;
        hb_mon_to_public(e, type, &s);
        impl->emitting++;
        m->opts.on_second(m, &s, m->opts.on_second_arg);
        impl->emitting--;
    }
}

/* Output the entries of type from next[type] on, in order, while they are due; with force, every
 * entry up to and including limit is output whether due or not (INCOMPLETE when not). */
static void hb_mon_emit(hb_monitor_t *m, uint64_t type, int force, uint64_t limit)
{
    struct hb_monitor_impl *impl = m->impl;
    if (!impl->have_newest)
        return;
    uint64_t now = hb_mon_now(m);
    uint64_t horizon = 0;
    int rule = hb_mon_horizon(m, type, now, &horizon);
    uint64_t s = impl->next[type];
    uint64_t oldest = hb_mon_oldest(impl, m->opts.history_s);
    if (s < oldest)
        s = oldest;
    for (; s <= impl->newest; s++) {
        struct hb_mon_entry *e = hb_mon_entry(m, s, type);
        if (e == NULL || e->output)
            continue;
        int status;
        if (rule && s <= horizon)
            status = HB_MONITOR_COMPLETE;
        else if (now >= e->first_ms + m->opts.grace_ms)
            status = HB_MONITOR_GRACE;
        else if (force && s <= limit)
            status = HB_MONITOR_INCOMPLETE;
        else
            break;
        hb_mon_output(m, e, type, status);
    }
    impl->next[type] = s;
}

void hb_monitor_tick(hb_monitor_t *m)
{
    if (m == NULL || m->impl == NULL || m->impl->emitting)
        return;
    for (uint64_t t = 0; t < HB_MON_NTYPES; t++)
        hb_mon_emit(m, t, 0, 0);
}

void hb_monitor_flush(hb_monitor_t *m)
{
    if (m == NULL || m->impl == NULL || m->impl->emitting)
        return;
    for (uint64_t t = 0; t < HB_MON_NTYPES; t++)
        hb_mon_emit(m, t, 1, UINT64_MAX);
}

/* Make the ring's newest second `second`, outputting first what would fall out of it. */
static void hb_mon_advance(hb_monitor_t *m, uint64_t second)
{
    struct hb_monitor_impl *impl = m->impl;
    unsigned history = m->opts.history_s;
    if (impl->have_newest) {
        uint64_t new_oldest = second >= history - 1 ? second - (history - 1) : 0;
        if (new_oldest > 0 && !impl->emitting)
            for (uint64_t t = 0; t < HB_MON_NTYPES; t++)
                hb_mon_emit(m, t, 1, new_oldest - 1);
    } else {
        impl->next[0] = impl->next[1] = second;
    }
    impl->have_newest = 1;
    impl->newest = second;
}

/* Add report r from c (already validated) into the history. */
static void hb_mon_add(hb_monitor_t *m, struct hb_mon_conn *c, const hb_report_t *r, uint64_t now)
{
    struct hb_monitor_impl *impl = m->impl;
    uint64_t t = r->type;
    uint64_t *total = impl->total_cum[t];
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        total[i] += r->cumulative[i] - c->cum[i]; /* wraps like the counters themselves */
        c->cum[i] = r->cumulative[i];
    }
    c->heard_ms = now;
    if (!c->have_last || r->second > c->last_second) {
        c->have_last = 1;
        c->last_second = r->second;
    }
    m->stats.reports++;

    if (!impl->have_newest || r->second > impl->newest)
        hb_mon_advance(m, r->second);
    if (r->second < hb_mon_oldest(impl, m->opts.history_s)) {
        m->stats.too_old++;
        return;
    }
    struct hb_mon_entry *e = hb_mon_slot(m, r->second, t);
    if (!e->held || e->second != r->second) {
        memset(e, 0, sizeof *e);
        e->second = r->second;
        e->held = 1;
        e->first_ms = now;
        if (r->second < impl->next[t])
            impl->next[t] = r->second;
    }
    if (e->output)
        m->stats.late++;
    e->reports++;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        if (hb_monitor_slot_is_max(i)) {
            if (r->per_second[i] > e->per_second[i])
                e->per_second[i] = r->per_second[i];
            if (r->cumulative[i] > e->cumulative[i])
                e->cumulative[i] = r->cumulative[i];
        } else {
            e->per_second[i] += r->per_second[i];
            e->cumulative[i] = total[i];
        }
    }
}

/* ---- connections ---- */

static void hb_mon_handle_closed(hb_monitor_t *m);

static void hb_mon_on_conn_closed(hb_sock_t *s)
{
    struct hb_mon_conn *c = s->poll.data;
    hb_monitor_t *m = c->m;
    free(c);
    hb_mon_handle_closed(m);
}

/* Forget c as a reporter and close its connection. */
static void hb_mon_conn_close(struct hb_mon_conn *c)
{
    hb_monitor_t *m = c->m;
    struct hb_monitor_impl *impl = m->impl;
    if (c->connected) {
        c->connected = 0;
        impl->nconns--;
        struct hb_mon_conn *last = impl->conns[impl->nconns];
        impl->conns[c->index] = last;
        last->index = c->index;
        impl->conns[impl->nconns] = NULL;
        m->stats.connections_open--;
    }
    hb__sock_close(&c->sock);
}

static void hb_mon_bad(struct hb_mon_conn *c, const char *why)
{
    hb_monitor_t *m = c->m;
    m->stats.bad_reports++;
    hb_mon_logf(m, "reporter %s closed: %s", c->peer, why);
    hb_mon_conn_close(c);
}

/* Reads land in the connection's one-report buffer: never more than the rest of a report. */
static void hb_mon_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    struct hb_mon_conn *c = s->poll.data;
    *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(HB_REPORT_SIZE - c->len));
}

/* A whole report is in c->buf: validate and add it. Returns 0, or -1 when c was closed. */
static int hb_mon_take(struct hb_mon_conn *c)
{
    hb_monitor_t *m = c->m;
    hb_report_t r;
    char why[96];
    c->len = 0;
    if (hb_report_decode(c->buf, HB_REPORT_SIZE, &r) != 0) {
        uint64_t type = 0;
        for (int i = 8; i < 16; i++)
            type = type << 8 | c->buf[i];
        snprintf(why, sizeof why, "bad report (type %" PRIu64 ")", type);
        hb_mon_bad(c, why);
        return -1;
    }
    uint64_t now = hb_mon_now(m);
    uint64_t now_s = now / 1000;
    uint64_t skew = r.second > now_s ? r.second - now_s : now_s - r.second;
    if (skew > HB_MONITOR_MAX_SKEW_S) {
        snprintf(why, sizeof why, "bad report (second %" PRIu64 " is %" PRIu64 " s off)", r.second,
                 skew);
        hb_mon_bad(c, why);
        return -1;
    }
    if (c->have_type && r.type != c->type) {
        hb_mon_bad(c, "bad report (type changed)");
        return -1;
    }
    c->have_type = 1;
    c->type = r.type;
    hb_mon_add(m, c, &r, now);
    return 0;
}

static void hb_mon_on_read(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct hb_mon_conn *c = s->poll.data;
    hb_monitor_t *m = c->m;
    (void)buf;
    if (nread < 0) {
        if (c->len > 0) {
            m->stats.truncated++;
            hb_mon_logf(m, "reporter %s closed in the middle of a report (%zu of %d bytes)",
                        c->peer, c->len, HB_REPORT_SIZE);
        }
        hb_mon_conn_close(c);
    } else {
        c->len += (size_t)nread;
        if (c->len < HB_REPORT_SIZE)
            return;
        hb_mon_take(c);
    }
    hb_monitor_tick(m); /* a report, or a reporter gone, may complete seconds */
}

/* The monitor writes nothing to its reporters: reads and a close are all it needs. */
static const hb_sock_ops_t hb_mon_conn_ops = {
    .alloc = hb_mon_alloc,
    .read = hb_mon_on_read,
    .closed = hb_mon_on_conn_closed,
};

/* "ip:port" ("[ip]:port" for IPv6) of the peer of fd, or "?". */
static void hb_mon_peer_name(int fd, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    snprintf(out, size, "?");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    char ip[48] = "?";
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, size, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, size, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    }
}

static void hb_mon_on_accept(hb_listener_t *l, int fd)
{
    hb_monitor_t *m = l->poll.data;
    struct hb_monitor_impl *impl = m->impl;
    if (fd < 0)
        return; /* an accept error; out of descriptors, the listener took and closed the peer */
    if (impl->closing) {
        close(fd);
        return;
    }
    char peer[64];
    hb_mon_peer_name(fd, peer, sizeof peer);
    if (impl->nconns >= m->opts.max_reporters) {
        m->stats.connections_rejected++;
        hb_mon_logf(m, "reporter %s rejected: %u reporters connected already", peer, impl->nconns);
        close(fd);
        return;
    }
    struct hb_mon_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->m = m;
    memcpy(c->peer, peer, sizeof c->peer);
    if (hb__sock_open(m->loop, &c->sock, fd, &hb_mon_conn_ops, 0, 1) != 0) {
        free(c); /* fd closed by hb__sock_open */
        return;
    }
    c->sock.poll.data = c;
    impl->handles++;
    if (hb__sock_read_start(&c->sock) != 0) {
        hb__sock_close(&c->sock);
        return;
    }
    c->connected = 1;
    c->heard_ms = hb_mon_now(m);
    c->index = impl->nconns;
    impl->conns[impl->nconns++] = c;
    m->stats.connections_accepted++;
    m->stats.connections_open++;
}

static void hb_mon_on_timer(uv_timer_t *t)
{
    hb_monitor_tick(t->data);
}

/* ---- life cycle ---- */

static void hb_mon_free_impl(struct hb_monitor_impl *impl)
{
    free(impl->ring);
    free(impl->conns);
    free(impl);
}

int hb_monitor_init(uv_loop_t *loop, hb_monitor_t *m, const hb_monitor_options_t *opts)
{
    if (loop == NULL || m == NULL)
        return UV_EINVAL;
    hb_monitor_options_t o;
    if (opts != NULL)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    if (o.max_reporters == 0)
        o.max_reporters = HB_MONITOR_DEFAULT_MAX_REPORTERS;
    if (o.history_s == 0)
        o.history_s = HB_MONITOR_DEFAULT_HISTORY_S;
    if (o.grace_ms == 0)
        o.grace_ms = HB_MONITOR_DEFAULT_GRACE_MS;
    if (o.known_ms == 0)
        o.known_ms = HB_MONITOR_DEFAULT_KNOWN_MS;
    if (o.now_ms == NULL) {
        o.now_ms = hb_mon_system_ms;
        o.now_arg = NULL;
    }
    if (o.max_reporters > HB_MONITOR_MAX_REPORTERS || o.history_s < HB_MONITOR_MIN_HISTORY_S ||
        o.history_s > HB_MONITOR_MAX_HISTORY_S)
        return UV_EINVAL;

    struct hb_monitor_impl *impl = calloc(1, sizeof *impl);
    if (impl == NULL)
        return UV_ENOMEM;
    impl->ring = calloc((size_t)o.history_s * HB_MON_NTYPES, sizeof *impl->ring);
    impl->conns = calloc(o.max_reporters, sizeof *impl->conns);
    if (impl->ring == NULL || impl->conns == NULL) {
        hb_mon_free_impl(impl);
        return UV_ENOMEM;
    }
    int r = uv_timer_init(loop, &impl->timer);
    if (r != 0) {
        hb_mon_free_impl(impl);
        return r;
    }
    memset(m, 0, sizeof *m);
    m->loop = loop;
    m->opts = o;
    m->impl = impl;
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
    int r = hb__sock_listen_fd(host, port, HB_MON_LISTEN_BACKLOG, 0, &fd, NULL);
    if (r != 0)
        return r;
    impl->listener.poll.data = m;
    r = hb__listener_start(m->loop, &impl->listener, fd, 1, hb_mon_on_accept);
    impl->listener_started = 1;
    if (impl->listener.inited)
        impl->handles++;
    if (r != 0)
        return r;
    impl->listening = 1;
    return uv_timer_start(&impl->timer, hb_mon_on_timer, HB_MONITOR_TICK_MS, HB_MONITOR_TICK_MS);
}

int hb_monitor_port(const hb_monitor_t *m)
{
    if (m == NULL || m->impl == NULL || !m->impl->listening)
        return UV_EBADF;
    return hb__sock_local_port(m->impl->listener.fd);
}

static void hb_mon_handle_closed(hb_monitor_t *m)
{
    struct hb_monitor_impl *impl = m->impl;
    if (--impl->handles > 0 || !impl->closing)
        return;
    hb_monitor_close_cb cb = impl->close_cb;
    hb_mon_free_impl(impl);
    m->impl = NULL;
    if (cb != NULL)
        cb(m);
}

static void hb_mon_on_own_closed(uv_handle_t *h)
{
    hb_mon_handle_closed(h->data);
}

static void hb_mon_on_listener_closed(hb_listener_t *l)
{
    hb_mon_handle_closed(l->poll.data);
}

void hb_monitor_close(hb_monitor_t *m, hb_monitor_close_cb cb)
{
    if (m == NULL || m->impl == NULL || m->impl->closing)
        return;
    struct hb_monitor_impl *impl = m->impl;
    hb_monitor_flush(m);
    impl->closing = 1;
    impl->close_cb = cb;
    while (impl->nconns > 0)
        hb_mon_conn_close(impl->conns[impl->nconns - 1]);
    if (impl->listener_started) /* not on the loop (a failed start): its fds close at once */
        hb__listener_close(&impl->listener,
                           impl->listener.inited ? hb_mon_on_listener_closed : NULL);
    uv_close((uv_handle_t *)&impl->timer, hb_mon_on_own_closed);
}

/* ---- queries ---- */

int hb_monitor_get(const hb_monitor_t *m, uint64_t second, uint64_t type, hb_monitor_second_t *out)
{
    if (m == NULL || m->impl == NULL || out == NULL)
        return UV_EINVAL;
    if (type >= HB_MON_NTYPES)
        return UV_ENOENT;
    const struct hb_mon_entry *e = hb_mon_entry(m, second, type);
    if (e == NULL)
        return UV_ENOENT;
    hb_mon_to_public(e, type, out);
    return 0;
}

int hb_monitor_range(const hb_monitor_t *m, uint64_t *oldest, uint64_t *newest)
{
    if (m == NULL || m->impl == NULL || oldest == NULL || newest == NULL)
        return UV_EINVAL;
    const struct hb_monitor_impl *impl = m->impl;
    if (!impl->have_newest)
        return UV_ENOENT;
    uint64_t lo = hb_mon_oldest(impl, m->opts.history_s);
    for (uint64_t s = lo; s <= impl->newest; s++) {
        if (hb_mon_entry(m, s, 0) != NULL || hb_mon_entry(m, s, 1) != NULL) {
            *oldest = s;
            *newest = impl->newest;
            return 0;
        }
    }
    return UV_ENOENT;
}

int hb_monitor_latest(const hb_monitor_t *m, uint64_t type, uint64_t *second)
{
    if (m == NULL || m->impl == NULL || second == NULL)
        return UV_EINVAL;
    if (type >= HB_MON_NTYPES || !m->impl->have_latest[type] ||
        hb_mon_entry(m, m->impl->latest[type], type) == NULL)
        return UV_ENOENT;
    *second = m->impl->latest[type];
    return 0;
}

/* ---- rendering ---- */

/* A bounded string builder: writes nothing at or past cap, remembers overflow. */
struct hb_mon_out {
    char *buf;
    size_t cap;
    size_t len;
    int overflow;
};

static void hb_mon_put(struct hb_mon_out *o, const char *s, size_t n)
{
    if (o->overflow || o->len + n >= o->cap) {
        o->overflow = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void hb_mon_str(struct hb_mon_out *o, const char *s)
{
    hb_mon_put(o, s, strlen(s));
}

static void hb_mon_u64(struct hb_mon_out *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    hb_mon_put(o, tmp + sizeof tmp - n, (size_t)n);
}

static HB_PRINTF(2, 3) void hb_mon_fmt(struct hb_mon_out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    o->len += (size_t)n;
}

static int hb_mon_out_start(struct hb_mon_out *o, char *buf, size_t cap)
{
    if (buf == NULL && cap > 0)
        return UV_EINVAL;
    o->buf = buf;
    o->cap = cap;
    o->len = 0;
    o->overflow = cap == 0;
    return 0;
}

static int hb_mon_out_end(struct hb_mon_out *o)
{
    if (o->overflow) {
        if (o->cap > 0)
            o->buf[0] = '\0';
        return UV_ENOBUFS;
    }
    o->buf[o->len] = '\0';
    return (int)o->len;
}

int hb_monitor_format_line(const hb_monitor_second_t *s, char *buf, size_t cap)
{
    struct hb_mon_out o;
    if (s == NULL || hb_mon_out_start(&o, buf, cap) != 0)
        return UV_EINVAL;
    const uint64_t *ps = s->per_second, *cum = s->cumulative;
    hb_mon_fmt(&o, "%" PRIu64 " %s [%u]", s->second, hb_mon_type_name(s->type), s->reports);
    if (s->type == HB_REPORTER_SERVER) {
        hb_mon_fmt(&o,
                   " req=%" PRIu64 " got=%" PRIu64 " none=%" PRIu64 " overload=%" PRIu64
                   " gen=%" PRIu64 " out=%" PRIu64 " send=%" PRIu64 " claims=%" PRIu64
                   " amount=%" PRIu64 "+%" PRIu64 " conn=%" PRIu64 "(+%" PRIu64 ")",
                   ps[HB_CTR_REQUESTS], ps[HB_CTR_SHAKE_GOT], ps[HB_CTR_SHAKE_NONE],
                   ps[HB_CTR_SHAKE_OVERLOAD], ps[HB_CTR_SHAKE_ENVELOPES],
                   ps[HB_CTR_SHAKE_HANDED_OUT], ps[HB_CTR_SEND_CREATED], ps[HB_CTR_CLAIMS_GRANTED],
                   ps[HB_CTR_SHAKE_AMOUNT_ISSUED], ps[HB_CTR_SEND_AMOUNT_ISSUED],
                   cum[HB_CTR_CONN_OPENED] - cum[HB_CTR_CONN_CLOSED], ps[HB_CTR_CONN_OPENED]);
    } else {
        hb_mon_fmt(&o,
                   " req=%" PRIu64 " replies=%" PRIu64 " env=%" PRIu64 " amount=%" PRIu64
                   " claims=%" PRIu64 " claimed=%" PRIu64 " lat_us p50=%" PRIu64 " p99=%" PRIu64
                   " max=%" PRIu64,
                   ps[HB_CTR_REQUESTS], ps[HB_CTR_RESPONSES], ps[HB_CTR_SHAKE_RECEIVED],
                   ps[HB_CTR_SHAKE_AMOUNT_RECEIVED], ps[HB_CTR_CLAIMS_GRANTED],
                   ps[HB_CTR_SEND_AMOUNT_CLAIMED], ps[HB_MONITOR_MAX_SLOT_FIRST],
                   ps[HB_MONITOR_MAX_SLOT_FIRST + 2], ps[HB_MONITOR_MAX_SLOT_FIRST + 4]);
    }
    if (s->status == HB_MONITOR_GRACE)
        hb_mon_str(&o, " (grace)");
    else if (s->status == HB_MONITOR_INCOMPLETE)
        hb_mon_str(&o, " (incomplete)");
    return hb_mon_out_end(&o);
}

int hb_monitor_format_csv_header(char *buf, size_t cap)
{
    struct hb_mon_out o;
    if (hb_mon_out_start(&o, buf, cap) != 0)
        return UV_EINVAL;
    hb_mon_str(&o, "second,type,status,reports");
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *n = hb_mon_any_name(i);
        if (n != NULL)
            hb_mon_fmt(&o, ",%s", n);
    }
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *n = hb_mon_any_name(i);
        if (n != NULL && !hb_monitor_slot_is_max(i))
            hb_mon_fmt(&o, ",%s_total", n);
    }
    hb_mon_str(&o, "\n");
    return hb_mon_out_end(&o);
}

int hb_monitor_format_csv_row(const hb_monitor_second_t *s, char *buf, size_t cap)
{
    struct hb_mon_out o;
    if (s == NULL || hb_mon_out_start(&o, buf, cap) != 0)
        return UV_EINVAL;
    unsigned st = (unsigned)s->status < 3 ? (unsigned)s->status : HB_MONITOR_INCOMPLETE;
    hb_mon_fmt(&o, "%" PRIu64 ",%s,%s,%u", s->second, hb_mon_type_name(s->type),
               hb_mon_status_names[st], s->reports);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
            if (hb_mon_any_name(i) == NULL || (pass == 1 && hb_monitor_slot_is_max(i)))
                continue;
            hb_mon_str(&o, ",");
            if (hb_monitor_slot_name(s->type, i) == NULL)
                hb_mon_str(&o, "0");
            else
                hb_mon_u64(&o, pass == 0 ? s->per_second[i] : s->cumulative[i]);
        }
    }
    hb_mon_str(&o, "\n");
    return hb_mon_out_end(&o);
}

/* One Prometheus family with its HELP and TYPE lines. */
static void hb_mon_prom(struct hb_mon_out *o, const char *prefix, const char *name,
                        const char *suffix, const char *kind, uint64_t v, const char *help)
{
    hb_mon_fmt(o, "# HELP %s%s%s %s\n# TYPE %s%s%s %s\n%s%s%s ", prefix, name, suffix, help, prefix,
               name, suffix, kind, prefix, name, suffix);
    hb_mon_u64(o, v);
    hb_mon_str(o, "\n");
}

int hb_monitor_format_metrics(const hb_monitor_t *m, char *buf, size_t cap)
{
    struct hb_mon_out o;
    if (m == NULL || m->impl == NULL || hb_mon_out_start(&o, buf, cap) != 0)
        return UV_EINVAL;
    static const uint64_t types[] = {HB_REPORTER_SERVER, HB_REPORTER_CLIENT};
    char help[160];
    for (unsigned k = 0; k < 2; k++) {
        uint64_t t = types[k], second;
        if (hb_monitor_latest(m, t, &second) != 0)
            continue;
        const struct hb_mon_entry *e = hb_mon_entry(m, second, t);
        const char *prefix = t == HB_REPORTER_SERVER ? "hongbao_server_" : "hongbao_client_";
        const char *who = hb_mon_type_name(t);
        snprintf(help, sizeof help, "The latest second output for the %ss (Unix time).", who);
        hb_mon_prom(&o, prefix, "report_second", "", "gauge", second, help);
        snprintf(help, sizeof help, "Reports from %ss added into that second.", who);
        hb_mon_prom(&o, prefix, "reports", "", "gauge", e->reports, help);
        for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
            const char *n = hb_monitor_slot_name(t, i);
            if (n == NULL)
                continue;
            if (hb_monitor_slot_is_max(i)) {
                snprintf(help, sizeof help,
                         "Slot %u (%s) in the report second, maximum over the %ss.", i, n, who);
                hb_mon_prom(&o, prefix, n, "", "gauge", e->per_second[i], help);
                continue;
            }
            snprintf(help, sizeof help, "Slot %u (%s), cumulative, summed over the %ss.", i, n,
                     who);
            hb_mon_prom(&o, prefix, n, "_total", "counter", e->cumulative[i], help);
            snprintf(help, sizeof help, "Slot %u (%s) in the report second, summed over the %ss.",
                     i, n, who);
            hb_mon_prom(&o, prefix, n, "_per_second", "gauge", e->per_second[i], help);
        }
    }
    const hb_monitor_stats_t *st = &m->stats;
    const char *p = "hongbao_monitor_";
    hb_mon_prom(&o, p, "reporters", "", "gauge", st->connections_open,
                "Reporter connections open now.");
    hb_mon_prom(&o, p, "connections_rejected", "_total", "counter", st->connections_rejected,
                "Reporter connections closed at once: too many reporters.");
    hb_mon_prom(&o, p, "reports", "_total", "counter", st->reports, "Reports accepted.");
    hb_mon_prom(&o, p, "bad_reports", "_total", "counter", st->bad_reports,
                "Reporter connections closed for a malformed report.");
    hb_mon_prom(&o, p, "truncated_reports", "_total", "counter", st->truncated,
                "Reporter connections that ended in the middle of a report.");
    hb_mon_prom(&o, p, "late_reports", "_total", "counter", st->late,
                "Reports for a second already output.");
    hb_mon_prom(&o, p, "too_old_reports", "_total", "counter", st->too_old,
                "Reports for a second older than the history, ignored.");
    hb_mon_str(&o, "# HELP hongbao_monitor_seconds_total Seconds output, by how they completed.\n"
                   "# TYPE hongbao_monitor_seconds_total counter\n");
    const uint64_t by_status[3] = {st->seconds_complete, st->seconds_grace, st->seconds_incomplete};
    for (unsigned i = 0; i < 3; i++) {
        hb_mon_fmt(&o, "hongbao_monitor_seconds_total{status=\"%s\"} ", hb_mon_status_names[i]);
        hb_mon_u64(&o, by_status[i]);
        hb_mon_str(&o, "\n");
    }
    return hb_mon_out_end(&o);
}

/* The array of slot i's values (cumulative or per second) of type over [first, last]. */
static void hb_mon_json_values(struct hb_mon_out *o, const hb_monitor_t *m, uint64_t t, int what,
                               unsigned i, uint64_t first, uint64_t last)
{
    hb_mon_str(o, "[");
    for (uint64_t s = first; s <= last; s++) {
        const struct hb_mon_entry *e = hb_mon_entry(m, s, t);
        if (s != first)
            hb_mon_str(o, ",");
        if (e == NULL || !e->output)
            hb_mon_str(o, "null");
        else if (what == 0)
            hb_mon_u64(o, e->per_second[i]);
        else if (what == 1)
            hb_mon_u64(o, e->cumulative[i]);
        else if (what == 2)
            hb_mon_u64(o, e->reports);
        else
            hb_mon_u64(o, e->status);
    }
    hb_mon_str(o, "]");
}

int hb_monitor_format_series(const hb_monitor_t *m, unsigned seconds, char *buf, size_t cap)
{
    struct hb_mon_out o;
    if (m == NULL || m->impl == NULL || hb_mon_out_start(&o, buf, cap) != 0)
        return UV_EINVAL;
    if (seconds < 1)
        seconds = 1;
    if (seconds > m->opts.history_s)
        seconds = m->opts.history_s;
    int have = 0;
    uint64_t first = 0, last = 0, s;
    for (uint64_t t = 0; t < HB_MON_NTYPES; t++) {
        if (hb_monitor_latest(m, t, &s) == 0 && (!have || s > last)) {
            last = s;
            have = 1;
        }
    }
    uint64_t oldest, newest;
    if (have && hb_monitor_range(m, &oldest, &newest) == 0) {
        first = last >= seconds - 1 ? last - (seconds - 1) : 0;
        if (first < oldest)
            first = oldest; /* no leading seconds without any report */
    }
    hb_mon_str(&o, "{\"now\":");
    hb_mon_u64(&o, hb_mon_now(m) / 1000);
    if (have) {
        hb_mon_str(&o, ",\"first\":");
        hb_mon_u64(&o, first);
        hb_mon_str(&o, ",\"last\":");
        hb_mon_u64(&o, last);
        hb_mon_str(&o, ",\"seconds\":[");
        for (s = first; s <= last; s++) {
            if (s != first)
                hb_mon_str(&o, ",");
            hb_mon_u64(&o, s);
        }
        hb_mon_str(&o, "]");
    } else {
        hb_mon_str(&o, ",\"first\":null,\"last\":null,\"seconds\":[]");
    }
    static const uint64_t types[] = {HB_REPORTER_SERVER, HB_REPORTER_CLIENT};
    for (unsigned k = 0; k < 2; k++) {
        uint64_t t = types[k];
        hb_mon_fmt(&o, ",\"%s\":{", hb_mon_type_name(t));
        for (int what = 2; what < 4; what++) {
            hb_mon_str(&o, what == 2 ? "\"reports\":" : ",\"status\":");
            if (have)
                hb_mon_json_values(&o, m, t, what, 0, first, last);
            else
                hb_mon_str(&o, "[]");
        }
        for (int what = 0; what < 2; what++) {
            hb_mon_str(&o, what == 0 ? ",\"per_second\":{" : ",\"cumulative\":{");
            const char *sep = "";
            for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
                const char *n = hb_monitor_slot_name(t, i);
                if (n == NULL || (what == 1 && hb_monitor_slot_is_max(i)))
                    continue;
                hb_mon_fmt(&o, "%s\"%s\":", sep, n);
                sep = ",";
                if (have)
                    hb_mon_json_values(&o, m, t, what, i, first, last);
                else
                    hb_mon_str(&o, "[]");
            }
            hb_mon_str(&o, "}");
        }
        hb_mon_str(&o, "}");
    }
    const hb_monitor_stats_t *st = &m->stats;
    hb_mon_str(&o, ",\"monitor\":{\"reporters\":");
    hb_mon_u64(&o, st->connections_open);
    hb_mon_str(&o, ",\"reports\":");
    hb_mon_u64(&o, st->reports);
    hb_mon_str(&o, ",\"bad_reports\":");
    hb_mon_u64(&o, st->bad_reports);
    hb_mon_str(&o, ",\"truncated\":");
    hb_mon_u64(&o, st->truncated);
    hb_mon_str(&o, ",\"late\":");
    hb_mon_u64(&o, st->late);
    hb_mon_str(&o, ",\"too_old\":");
    hb_mon_u64(&o, st->too_old);
    hb_mon_str(&o, "}}");
    return hb_mon_out_end(&o);
}

/* ---- HTTP ---- */

static void hb_mon_http_metrics(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_monitor_t *m = arg;
    (void)req;
    if (m->impl == NULL || m->impl->closing) {
        hb_http_respond(res, 503, "text/plain", "monitor closing\n", 16);
        return;
    }
    int n = hb_monitor_format_metrics(m, m->impl->metrics_buf, sizeof m->impl->metrics_buf);
    if (n < 0) {
        hb_http_respond(res, 500, "text/plain", "metrics too large\n", 18);
        return;
    }
    hb_http_respond(res, 200, "text/plain; version=0.0.4", m->impl->metrics_buf, (size_t)n);
}

static void hb_mon_http_series(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_monitor_t *m = arg;
    if (m->impl == NULL || m->impl->closing) {
        hb_http_respond(res, 503, "text/plain", "monitor closing\n", 16);
        return;
    }
    uint64_t seconds = HB_MONITOR_SERIES_DEFAULT_S;
    if (seconds > m->opts.history_s)
        seconds = m->opts.history_s;
    int r =
        hb_http_query_u64(req->query, req->query_len, "seconds", 1, m->opts.history_s, &seconds);
    if (r != 0 && r != UV_ENOENT) {
        hb_http_bad_param_range(res, "seconds", r, 1, m->opts.history_s);
        return;
    }
    for (size_t cap = HB_MON_SERIES_START; cap <= HB_MON_SERIES_CAP; cap *= 2) {
        char *buf = malloc(cap);
        if (buf == NULL)
            break;
        int n = hb_monitor_format_series(m, (unsigned)seconds, buf, cap);
        if (n >= 0) {
            hb_http_response_header(res, "Cache-Control", "no-store");
            hb_http_respond(res, 200, "application/json", buf, (size_t)n);
            free(buf);
            return;
        }
        free(buf);
    }
    hb_http_respond(res, 500, "text/plain", "series too large\n", 17);
}

int hb_monitor_mount_http(hb_monitor_t *m, hb_http_server_t *http)
{
    if (m == NULL || m->impl == NULL || http == NULL)
        return UV_EINVAL;
    int r = hb_http_server_route(http, "GET", "/metrics", hb_mon_http_metrics, m);
    if (r == 0)
        r = hb_http_server_route(http, "GET", "/api/series", hb_mon_http_series, m);
    return r;
}
