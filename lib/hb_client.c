/* The load-generating client: simulated users on one loop, connected at a bounded rate, shaking
 * on the modulo schedule, claiming what they are sent, timing every request from its intended
 * send time (so a late send shows as latency instead of hiding). */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hongbao/client.h"
#include "hongbao/proto.h"

#define TICK_MS            1
#define SHAKES_OUTSTANDING 8 /* per user; a scheduled shake past this is counted missed */
#define CLAIMS_OUTSTANDING 4
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define MAX_SENDS_PER_TICK 200000

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { U_IDLE, U_CONNECTING, U_LOGIN_SENT, U_READY, U_CLOSING };

typedef struct cuser {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    hb_framer_t framer;
    struct hb_client_impl *impl;
    uint32_t user;
    uint8_t state;
    uint8_t shake_head, shake_count;
    uint8_t claim_head, claim_count;
    uint8_t backoff;
    uint64_t retry_at_ms;
    uint64_t shake_at_us[SHAKES_OUTSTANDING];   /* intended send times of outstanding shakes */
    uint64_t shake_sent_us[SHAKES_OUTSTANDING]; /* and when they were actually written */
    uint64_t claim_at_us[CLAIMS_OUTSTANDING];
} cuser_t;

struct hb_client_impl {
    hb_client_t *pub;
    hb_client_options_t opts;
    char host[64];
    char source_text[HB_CLIENT_MAX_SOURCES][64];
    struct sockaddr_storage server_addr;
    struct sockaddr_storage sources[HB_CLIENT_MAX_SOURCES];
    unsigned next_source;
    cuser_t *users;
    uint32_t nusers;
    /* connecting */
    uint32_t *pending; /* ring of user indices waiting to (re)connect */
    uint32_t pending_head, pending_count;
    uint32_t inflight;
    double tokens;
    uint64_t tokens_ms;
    /* schedule */
    hb_sched_t sched;
    uint64_t next_k;
    uint64_t pending_qps, pending_from_s;
    int rate_pending;
    uv_timer_t tick;
    /* per-second latency */
    hb_hist_t sec_shake, sec_claim;
    uint64_t hist_second;
    hb_counters_t counters;
    int started, closing;
    int closed_running; /* closed loop: every user has logged in once, shaking has begun */
    size_t open_handles;
    hb_client_close_cb close_cb;
};

static uint64_t wall_us(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static void count(struct hb_client_impl *impl, unsigned slot, uint64_t now_s, uint64_t delta)
{
    hb_counters_add(&impl->counters, 0, slot, now_s, delta);
}

void hb_client_options_default(hb_client_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->server_host = "127.0.0.1";
    o->server_port = 1025;
}

static int parse_ip(const char *text, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(text, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(text, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return UV_EINVAL;
}

int hb_client_init(uv_loop_t *loop, hb_client_t *client, const hb_client_options_t *opts)
{
    if (loop == NULL || client == NULL || opts == NULL)
        return UV_EINVAL;
    memset(client, 0, sizeof *client);
    client->loop = loop;
    if (opts->max_user < opts->min_user || opts->qps > ((uint64_t)1 << 32) ||
        opts->nsources > HB_CLIENT_MAX_SOURCES || opts->server_port <= 0 ||
        opts->server_port > 65535 || opts->closed > HB_CLIENT_MAX_CLOSED ||
        (opts->nservers > 1 && (uint64_t)opts->server_port + opts->nservers - 1 > 65535))
        return UV_EINVAL;
    uint64_t total = opts->total_users ? opts->total_users : (uint64_t)opts->max_user + 1;
    if (total <= opts->max_user)
        return UV_EINVAL;
    struct hb_client_impl *impl = calloc(1, sizeof *impl);
    if (impl == NULL)
        return UV_ENOMEM;
    impl->pub = client;
    impl->opts = *opts;
    impl->opts.total_users = total;
    const char *host = opts->server_host ? opts->server_host : "127.0.0.1";
    int r = UV_EINVAL;
    if (strlen(host) >= sizeof impl->host || parse_ip(host, opts->server_port, &impl->server_addr))
        goto fail;
    strcpy(impl->host, host);
    impl->opts.server_host = impl->host;
    for (unsigned i = 0; i < opts->nsources; i++) {
        if (opts->sources[i] == NULL || strlen(opts->sources[i]) >= sizeof impl->source_text[i] ||
            parse_ip(opts->sources[i], 0, &impl->sources[i]) != 0 ||
            impl->sources[i].ss_family != impl->server_addr.ss_family)
            goto fail;
        strcpy(impl->source_text[i], opts->sources[i]);
        impl->opts.sources[i] = impl->source_text[i];
    }
    if (impl->opts.connect_rate == 0)
        impl->opts.connect_rate = 20000;
    if (impl->opts.connect_inflight == 0)
        impl->opts.connect_inflight = 512;
    r = hb_sched_init(&impl->sched, total, opts->qps, 0);
    if (r != 0)
        goto fail;
    impl->nusers = opts->max_user - opts->min_user + 1;
    r = UV_ENOMEM;
    impl->users = calloc(impl->nusers, sizeof *impl->users);
    impl->pending = calloc(impl->nusers, sizeof *impl->pending);
    if (impl->users == NULL || impl->pending == NULL)
        goto fail;
    r = hb_counters_init(&impl->counters, 1, HB_REPORTER_CLIENT);
    if (r != 0)
        goto fail;
    for (uint32_t i = 0; i < impl->nusers; i++) {
        impl->users[i].impl = impl;
        impl->users[i].user = opts->min_user + i;
        impl->pending[i] = i;
    }
    impl->pending_count = impl->nusers;
    hb_hist_init(&client->shake_latency);
    hb_hist_init(&client->claim_latency);
    hb_hist_init(&client->service_latency);
    for (unsigned i = 0; i < HB_CLIENT_PHASES; i++)
        hb_hist_init(&client->phase_latency[i]);
    hb_hist_init(&impl->sec_shake);
    hb_hist_init(&impl->sec_claim);
    client->stats.users = impl->nusers;
    client->impl = impl;
    return 0;
fail:
    free(impl->users);
    free(impl->pending);
    free(impl);
    return r;
}

void hb_client_reset_latency(hb_client_t *client)
{
    hb_hist_init(&client->shake_latency);
    hb_hist_init(&client->claim_latency);
    hb_hist_init(&client->service_latency);
    for (unsigned i = 0; i < HB_CLIENT_PHASES; i++)
        hb_hist_init(&client->phase_latency[i]);
}

hb_counters_t *hb_client_counters(hb_client_t *client)
{
    return &client->impl->counters;
}

uint64_t hb_client_rate(const hb_client_t *client)
{
    const struct hb_client_impl *impl = client->impl;
    return impl->rate_pending ? impl->pending_qps : impl->sched.qps;
}

/* ---- output
 * --------------------------------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t req;
    uint8_t data[];
} wreq_t;

static void on_write(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void user_close(cuser_t *u);

static void user_send(cuser_t *u, const hb_msg_t *m)
{
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(m, buf, sizeof buf);
    if (n <= 0)
        return;
    count(u->impl, m->cmd, m->timestamp, 1);
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
    int w = uv_try_write((uv_stream_t *)&u->tcp, &b, 1);
    if (w == n)
        return;
    if (w < 0 && w != UV_EAGAIN) {
        user_close(u);
        return;
    }
    size_t off = w > 0 ? (size_t)w : 0;
    wreq_t *q = malloc(sizeof *q + (size_t)n - off);
    if (q == NULL) {
        user_close(u);
        return;
    }
    memcpy(q->data, buf + off, (size_t)n - off);
    b = uv_buf_init((char *)q->data, (unsigned)((size_t)n - off));
    if (uv_write(&q->req, (uv_stream_t *)&u->tcp, &b, 1, on_write) != 0) {
        free(q);
        user_close(u);
    }
}

/* ---- connecting
 * ------------------------------------------------------------------------------------- */

static void pending_push(struct hb_client_impl *impl, cuser_t *u)
{
    uint32_t idx = (uint32_t)(u - impl->users);
    impl->pending[(impl->pending_head + impl->pending_count) % impl->nusers] = idx;
    impl->pending_count++;
}

/* Once closing and the last handle is closed, call the close callback. */
static void maybe_finish(struct hb_client_impl *impl)
{
    if (impl->closing && impl->open_handles == 0 && impl->close_cb != NULL) {
        hb_client_close_cb cb = impl->close_cb;
        impl->close_cb = NULL;
        cb(impl->pub);
    }
}

static void on_user_closed(uv_handle_t *h)
{
    cuser_t *u = (cuser_t *)h;
    struct hb_client_impl *impl = u->impl;
    impl->open_handles--;
    hb_framer_reset(&u->framer);
    u->state = U_IDLE;
    u->shake_count = u->claim_count = 0;
    if (impl->closing) {
        maybe_finish(impl);
        return;
    }
    /* Reconnect after a back-off that doubles with each failure in a row. */
    uint64_t delay = (uint64_t)BACKOFF_MIN_MS << (u->backoff < 6 ? u->backoff : 6);
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    if (u->backoff < 16)
        u->backoff++;
    u->retry_at_ms = uv_now(impl->pub->loop) + delay;
    pending_push(impl, u);
}

static void user_close(cuser_t *u)
{
    if (u->state == U_IDLE || u->state == U_CLOSING)
        return;
    struct hb_client_impl *impl = u->impl;
    if (u->state == U_READY) {
        impl->pub->stats.connected--;
        impl->pub->stats.disconnects++;
        count(impl, HB_CTR_CONN_CLOSED, wall_us() / 1000000, 1);
    } else {
        impl->pub->stats.connect_failures++;
    }
    u->state = U_CLOSING;
    uv_close((uv_handle_t *)&u->tcp, on_user_closed);
}

static void send_shake(struct hb_client_impl *impl, cuser_t *u, uint64_t at_ms, uint64_t now_s);

/* The closed loop starts once every user of this process has logged in (so that connecting is
 * not slowed by the load of those already in, and the measured loop is the steady state); a user
 * who reconnects afterwards starts again at once. */
static void closed_kick(struct hb_client_impl *impl, cuser_t *u, uint64_t now_s)
{
    if (impl->closed_running) {
        for (uint32_t i = 0; i < impl->opts.closed && u->state == U_READY; i++)
            send_shake(impl, u, 0, now_s);
        return;
    }
    if (impl->pub->stats.connected < impl->nusers)
        return;
    impl->closed_running = 1;
    for (uint32_t k = 0; k < impl->nusers; k++)
        for (uint32_t i = 0; i < impl->opts.closed && impl->users[k].state == U_READY; i++)
            send_shake(impl, &impl->users[k], 0, now_s);
}

static void record_latency(hb_hist_t *all, hb_hist_t *sec, uint64_t sent_us, uint64_t now_us)
{
    uint64_t lat = now_us > sent_us ? now_us - sent_us : 0;
    hb_hist_record(all, lat);
    hb_hist_record(sec, lat);
}

static int on_frame(void *arg, const hb_frame_t *f)
{
    cuser_t *u = arg;
    struct hb_client_impl *impl = u->impl;
    hb_client_stats_t *st = &impl->pub->stats;
    hb_msg_t m;
    if (hb_msg_decode(f, &m) != 0)
        return HB_EBADCMD;
    uint64_t now_us = wall_us(), now_s = now_us / 1000000;
    if (f->cmd <= HB_CMD_CLAIM_REPLY)
        count(impl, f->cmd, now_s, 1);
    switch (f->cmd) {
    case HB_CMD_LOGIN_REPLY:
        if (u->state != U_LOGIN_SENT || m.u.login_reply.result != 0)
            return HB_EBADCMD;
        u->state = U_READY;
        u->backoff = 0;
        st->connected++;
        if (st->connected > st->connected_peak)
            st->connected_peak = st->connected;
        st->connects++;
        count(impl, HB_CTR_CONN_OPENED, now_s, 1);
        if (impl->opts.closed > 0)
            closed_kick(impl, u, now_s);
        return 0;
    case HB_CMD_SHAKE_REPLY: {
        if (u->shake_count == 0)
            return HB_EBADCMD;
        uint64_t sent = u->shake_at_us[u->shake_head];
        uint64_t written = u->shake_sent_us[u->shake_head];
        u->shake_head = (uint8_t)((u->shake_head + 1) % SHAKES_OUTSTANDING);
        u->shake_count--;
        record_latency(&impl->pub->shake_latency, &impl->sec_shake, sent, now_us);
        hb_hist_record(&impl->pub->service_latency, now_us > written ? now_us - written : 0);
        hb_hist_record(&impl->pub->phase_latency[(sent / 100000) % HB_CLIENT_PHASES],
                       now_us > sent ? now_us - sent : 0);
        count(impl, HB_CTR_RESPONSES, now_s, 1);
        uint32_t res = m.u.shake_reply.result;
        if (res >= HB_SHAKE_GOT && res <= HB_SHAKE_OVERLOAD) {
            st->replies[res - HB_SHAKE_GOT]++;
            count(impl, res, now_s, 1); /* slots 14..17 are the results themselves */
        }
        if (res == HB_SHAKE_GOT) {
            st->envelopes++;
            st->amount += m.u.shake_reply.amount;
            count(impl, HB_CTR_SHAKE_RECEIVED, now_s, 1);
            count(impl, HB_CTR_SHAKE_AMOUNT_RECEIVED, now_s, m.u.shake_reply.amount);
        }
        if (impl->opts.closed > 0 && !impl->closing && u->state == U_READY)
            send_shake(impl, u, 0, now_s);
        return 0;
    }
    case HB_CMD_NOTICE: {
        st->notices++;
        if (impl->opts.no_claims || u->claim_count == CLAIMS_OUTSTANDING)
            return 0;
        hb_msg_t c = {.cmd = HB_CMD_CLAIM, .timestamp = now_s};
        c.u.claim.user_id = u->user;
        c.u.claim.envelope_id = m.u.notice.envelope_id;
        u->claim_at_us[(u->claim_head + u->claim_count) % CLAIMS_OUTSTANDING] = now_us;
        u->claim_count++;
        st->claims++;
        count(impl, HB_CTR_REQUESTS, now_s, 1);
        user_send(u, &c);
        return 0;
    }
    case HB_CMD_CLAIM_REPLY: {
        if (u->claim_count == 0)
            return HB_EBADCMD;
        uint64_t sent = u->claim_at_us[u->claim_head];
        u->claim_head = (uint8_t)((u->claim_head + 1) % CLAIMS_OUTSTANDING);
        u->claim_count--;
        record_latency(&impl->pub->claim_latency, &impl->sec_claim, sent, now_us);
        count(impl, HB_CTR_RESPONSES, now_s, 1);
        if (impl->opts.on_claim_reply != NULL)
            impl->opts.on_claim_reply(impl->opts.claim_arg, u->user, m.u.claim_reply.envelope_id,
                                      m.u.claim_reply.amount);
        if (m.u.claim_reply.amount > 0) {
            st->claims_granted++;
            st->claimed_amount += m.u.claim_reply.amount;
            count(impl, HB_CTR_CLAIMS_GRANTED, now_s, 1);
            count(impl, HB_CTR_SEND_AMOUNT_CLAIMED, now_s, m.u.claim_reply.amount);
        }
        return 0;
    }
    case HB_CMD_CHAT_DELIVER:
    case HB_CMD_CHAT_REPLY:
        return 0;
    default:
        return HB_EBADCMD;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static _Thread_local char readbuf[65536];
    *buf = uv_buf_init(readbuf, sizeof readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cuser_t *u = (cuser_t *)s;
    if (nread > 0) {
        int r = hb_framer_feed(&u->framer, (const uint8_t *)buf->base, (size_t)nread, on_frame, u);
        if (r != 0) {
            u->impl->pub->stats.bad_frames++;
            user_close(u);
        }
    } else if (nread < 0) {
        user_close(u);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    cuser_t *u = req->data;
    struct hb_client_impl *impl = u->impl;
    impl->inflight--;
    if (u->state != U_CONNECTING)
        return; /* closed meanwhile */
    if (status != 0) {
        user_close(u);
        return;
    }
    uv_tcp_nodelay(&u->tcp, 1);
    if (uv_read_start((uv_stream_t *)&u->tcp, on_alloc, on_read) != 0) {
        user_close(u);
        return;
    }
    u->state = U_LOGIN_SENT;
    hb_msg_t m = {.cmd = HB_CMD_LOGIN, .timestamp = wall_us() / 1000000};
    m.u.login.user_id = u->user;
    user_send(u, &m);
}

static void start_connect(struct hb_client_impl *impl, cuser_t *u)
{
    uv_loop_t *loop = impl->pub->loop;
    int r = uv_tcp_init_ex(loop, &u->tcp, impl->server_addr.ss_family);
    if (r != 0) {
        u->retry_at_ms = uv_now(loop) + BACKOFF_MAX_MS;
        pending_push(impl, u);
        return;
    }
    impl->open_handles++;
    u->state = U_CONNECTING;
    hb_framer_init(&u->framer);
    if (impl->opts.nsources > 0) {
        /* Let connect() choose the port for the whole 4-tuple, not bind() for the address. */
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&u->tcp, &fd) == 0)
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        const struct sockaddr *src = (const struct sockaddr *)&impl->sources[impl->next_source];
        impl->next_source = (impl->next_source + 1) % impl->opts.nsources;
        r = uv_tcp_bind(&u->tcp, src, 0);
    }
    if (r == 0) {
        struct sockaddr_storage to = impl->server_addr;
        if (impl->opts.nservers > 1) {
            uint16_t port = (uint16_t)(impl->opts.server_port + u->user % impl->opts.nservers);
            if (to.ss_family == AF_INET)
                ((struct sockaddr_in *)&to)->sin_port = htons(port);
            else
                ((struct sockaddr_in6 *)&to)->sin6_port = htons(port);
        }
        u->connect_req.data = u;
        r = uv_tcp_connect(&u->connect_req, &u->tcp, (const struct sockaddr *)&to, on_connect);
    }
    if (r != 0) {
        user_close(u);
        return;
    }
    impl->inflight++;
}

static void connect_some(struct hb_client_impl *impl, uint64_t now_ms)
{
    double rate = impl->opts.connect_rate;
    impl->tokens += rate * (double)(now_ms - impl->tokens_ms) / 1000.0;
    if (impl->tokens > rate / 50 + 1)
        impl->tokens = rate / 50 + 1; /* bursts of at most 20 ms worth */
    impl->tokens_ms = now_ms;
    while (impl->pending_count > 0 && impl->tokens >= 1 &&
           impl->inflight < impl->opts.connect_inflight) {
        cuser_t *u = &impl->users[impl->pending[impl->pending_head]];
        if (u->retry_at_ms > now_ms)
            break;
        impl->pending_head = (impl->pending_head + 1) % impl->nusers;
        impl->pending_count--;
        impl->tokens -= 1;
        start_connect(impl, u);
    }
}

/* ---- the schedule
 * ----------------------------------------------------------------------------------- */

static void send_shake(struct hb_client_impl *impl, cuser_t *u, uint64_t at_ms, uint64_t now_s)
{
    hb_client_stats_t *st = &impl->pub->stats;
    if (u->shake_count == SHAKES_OUTSTANDING) {
        st->missed++;
        count(impl, HB_CTR_C_SEND_MISSED, now_s, 1);
        return;
    }
    /* at_ms 0: the closed loop, which intends to send right now. */
    unsigned slot = (u->shake_head + u->shake_count) % SHAKES_OUTSTANDING;
    uint64_t now_us = wall_us();
    u->shake_at_us[slot] = at_ms ? at_ms * 1000 : now_us;
    u->shake_sent_us[slot] = now_us;
    u->shake_count++;
    st->shakes++;
    count(impl, HB_CTR_REQUESTS, now_s, 1);
    hb_msg_t m = {.cmd = HB_CMD_SHAKE, .timestamp = now_s};
    m.u.shake.user_id = u->user;
    user_send(u, &m);
}

static void apply_pending_rate(struct hb_client_impl *impl)
{
    hb_sched_set_rate(&impl->sched, impl->pending_qps, impl->pending_from_s);
    impl->next_k = impl->sched.base_k;
    impl->rate_pending = 0;
}

static void run_schedule(struct hb_client_impl *impl, uint64_t now_ms)
{
    uint64_t now_s = now_ms / 1000;
    for (unsigned n = 0; n < MAX_SENDS_PER_TICK; n++) {
        uint64_t at = hb_sched_time_of(&impl->sched, impl->next_k);
        if (impl->rate_pending && now_ms >= impl->pending_from_s * 1000 &&
            (at == UINT64_MAX || at >= impl->pending_from_s * 1000)) {
            apply_pending_rate(impl);
            continue;
        }
        if (at == UINT64_MAX || at > now_ms)
            return;
        uint64_t user = hb_sched_user_of(&impl->sched, impl->next_k);
        impl->next_k++;
        if (user < impl->opts.min_user || user > impl->opts.max_user)
            continue;
        cuser_t *u = &impl->users[user - impl->opts.min_user];
        if (u->state == U_READY)
            send_shake(impl, u, at, now_s);
    }
    /* Too far behind (the process was stopped?): skip ahead rather than burst. */
    impl->next_k = hb_sched_first_at(&impl->sched, now_ms);
}

/* Put the finished second's latency percentiles into the counters. */
static void close_second(struct hb_client_impl *impl, uint64_t now_s)
{
    if (impl->hist_second == now_s)
        return;
    uint64_t s = impl->hist_second;
    if (s != 0 && impl->sec_shake.count > 0) {
        count(impl, HB_CTR_LAT_P50, s, hb_hist_percentile(&impl->sec_shake, 50));
        count(impl, HB_CTR_LAT_P90, s, hb_hist_percentile(&impl->sec_shake, 90));
        count(impl, HB_CTR_LAT_P99, s, hb_hist_percentile(&impl->sec_shake, 99));
        count(impl, HB_CTR_LAT_P999, s, hb_hist_percentile(&impl->sec_shake, 99.9));
        count(impl, HB_CTR_LAT_MAX, s, impl->sec_shake.max);
    }
    if (s != 0 && impl->sec_claim.count > 0) {
        count(impl, HB_CTR_LAT_CLAIM_P50, s, hb_hist_percentile(&impl->sec_claim, 50));
        count(impl, HB_CTR_LAT_CLAIM_P99, s, hb_hist_percentile(&impl->sec_claim, 99));
    }
    hb_hist_init(&impl->sec_shake);
    hb_hist_init(&impl->sec_claim);
    impl->hist_second = now_s;
}

static void on_tick(uv_timer_t *t)
{
    struct hb_client_impl *impl = t->data;
    uint64_t now_ms = wall_us() / 1000;
    close_second(impl, now_ms / 1000);
    connect_some(impl, uv_now(t->loop));
    if (impl->opts.closed == 0)
        run_schedule(impl, now_ms);
}

int hb_client_start(hb_client_t *client)
{
    struct hb_client_impl *impl = client->impl;
    if (impl->started || impl->closing)
        return UV_EINVAL;
    impl->started = 1;
    int r = uv_timer_init(client->loop, &impl->tick);
    if (r != 0)
        return r;
    impl->tick.data = impl;
    impl->open_handles++;
    uint64_t now_ms = wall_us() / 1000;
    impl->next_k = hb_sched_first_at(&impl->sched, now_ms);
    impl->hist_second = now_ms / 1000;
    uv_update_time(client->loop);
    impl->tokens_ms = uv_now(client->loop);
    impl->tokens = 1;
    return uv_timer_start(&impl->tick, on_tick, 0, TICK_MS);
}

int hb_client_set_rate(hb_client_t *client, uint64_t qps)
{
    struct hb_client_impl *impl = client->impl;
    if (qps > ((uint64_t)1 << 32))
        return UV_EINVAL;
    impl->pending_qps = qps;
    impl->pending_from_s = wall_us() / 1000000 + 1;
    if (impl->pending_from_s < impl->sched.epoch_s)
        impl->pending_from_s = impl->sched.epoch_s;
    impl->rate_pending = 1;
    return 0;
}

/* ---- closing
 * ---------------------------------------------------------------------------------------- */

static void on_tick_closed(uv_handle_t *h)
{
    struct hb_client_impl *impl = h->data;
    impl->open_handles--;
    maybe_finish(impl);
}

void hb_client_close(hb_client_t *client, hb_client_close_cb cb)
{
    struct hb_client_impl *impl = client->impl;
    if (impl == NULL || impl->closing)
        return;
    impl->closing = 1;
    impl->close_cb = cb;
    close_second(impl, impl->hist_second + 1);
    for (uint32_t i = 0; i < impl->nusers; i++) {
        cuser_t *u = &impl->users[i];
        if (u->state != U_IDLE && u->state != U_CLOSING) {
            if (u->state == U_READY)
                client->stats.connected--;
            u->state = U_CLOSING;
            uv_close((uv_handle_t *)&u->tcp, on_user_closed);
        }
    }
    if (impl->started)
        uv_close((uv_handle_t *)&impl->tick, on_tick_closed);
    else
        maybe_finish(impl); /* nothing was ever opened */
}

void hb_client_free(hb_client_t *client)
{
    struct hb_client_impl *impl = client->impl;
    if (impl == NULL)
        return;
    for (uint32_t i = 0; i < impl->nusers; i++)
        hb_framer_reset(&impl->users[i].framer);
    hb_counters_close(&impl->counters);
    free(impl->users);
    free(impl->pending);
    free(impl);
    client->impl = NULL;
}

/* ---- control routes
 * --------------------------------------------------------------------------------- */

static void route_qps(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_client_t *client = arg;
    uint64_t qps;
    const uint64_t max = (uint64_t)1 << 32;
    int r = hb_http_query_u64(req->query, req->query_len, "qps", 0, max, &qps);
    if (r != 0) {
        hb_http_bad_param_range(res, "qps", r, 0, max);
        return;
    }
    hb_client_set_rate(client, qps);
    char msg[96];
    int n = snprintf(msg, sizeof msg, "qps set to %llu from second %llu\n", (unsigned long long)qps,
                     (unsigned long long)client->impl->pending_from_s);
    hb_http_respond(res, 200, "text/plain; charset=utf-8", msg, (size_t)n);
}

static void route_stats(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    hb_client_t *c = arg;
    const hb_client_stats_t *s = &c->stats;
    char buf[1024];
    int n =
        snprintf(buf, sizeof buf,
                 "{\"users\":%llu,\"connected\":%llu,\"qps\":%llu,\"shakes\":%llu,\"missed\":%llu,"
                 "\"got\":%llu,\"none\":%llu,\"overload\":%llu,\"envelopes\":%llu,\"amount\":%llu,"
                 "\"notices\":%llu,\"claims\":%llu,\"claims_granted\":%llu,\"claimed_amount\":%llu,"
                 "\"latency_us\":{\"p50\":%llu,\"p99\":%llu,\"max\":%llu}}\n",
                 (unsigned long long)s->users, (unsigned long long)s->connected,
                 (unsigned long long)hb_client_rate(c), (unsigned long long)s->shakes,
                 (unsigned long long)s->missed, (unsigned long long)s->replies[0],
                 (unsigned long long)s->replies[1], (unsigned long long)s->replies[3],
                 (unsigned long long)s->envelopes, (unsigned long long)s->amount,
                 (unsigned long long)s->notices, (unsigned long long)s->claims,
                 (unsigned long long)s->claims_granted, (unsigned long long)s->claimed_amount,
                 (unsigned long long)hb_hist_percentile(&c->shake_latency, 50),
                 (unsigned long long)hb_hist_percentile(&c->shake_latency, 99),
                 (unsigned long long)c->shake_latency.max);
    hb_http_respond(res, 200, "application/json", buf, (size_t)n);
}

int hb_client_mount_http(hb_client_t *client, hb_http_server_t *http)
{
    int r = hb_http_server_route(http, "GET", "/qps", route_qps, client);
    if (r == 0)
        r = hb_http_server_route(http, "GET", "/stats", route_stats, client);
    return r;
}
