/* The load-generating client: simulated users on one loop, connected at a bounded rate through
 * the library's socket layer (hb_sock.h) to one of the servers (by modulo, or by consistent hashing
 * with failover down each user's order: hongbao/ring.h), sending a shake or an application request
 * whenever the pacer (hb_client_pacer.h) says one of them is due, claiming what they are sent until
 * each claim has a final answer, timing every request from its intended send time (so a late send
 * shows as latency instead of hiding).
 * Over 800 lines for one job: a simulated user's connection, requests and claims work on one
 * struct (when they are due is the pacer's job). */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hb_client_pacer.h"
#include "hb_clock.h"
#include "hb_internal.h"
#include "hb_sock.h"
#include "hongbao/addr.h"
#include "hongbao/client.h"
#include "hongbao/proto.h"
#include "hongbao/ring.h"

#define OUTSTANDING     8 /* requests per user; a scheduled one past this is counted missed */
#define CLAIMS_HELD     4 /* per user: claims without a final answer (a notice past it: none) */
#define CLAIMS_DONE     4 /* per user: envelopes recently counted, not claimed again */
#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000
#define CLAIM_SCAN_MS   50 /* how often claims waiting after TRY_AGAIN are looked at */
#define CONNECT_TICK_MS 1  /* how often connecting goes on while users wait to connect */
#define APP_PAYLOAD_MAX (HB_FRAME_MAX - HB_FRAME_HEADER)

/* Connects and logins: how often their deadlines are checked, the default deadline. */
#define HANDSHAKE_SCAN_MS 50
#define LOGIN_TIMEOUT_MS  10000
#define NO_SERVER         UINT16_MAX /* cuser_t.last_server before the first login */

/* A user's output the kernel has not taken, at most: a few frames are ever in flight, so more
 * means the server stopped reading; the connection is then closed and made again. */
#define USER_MAX_QUEUED (16u * 1024)

enum { U_IDLE, U_CONNECTING, U_LOGIN_SENT, U_READY, U_CLOSING };

/* The state of a held claim. */
enum {
    C_FREE,   /* the slot holds nothing */
    C_SENT,   /* sent on the current connection: its answer is awaited */
    C_UNSENT, /* its connection was lost (or it could not be sent): send at the next login */
    C_WAIT    /* answered TRY_AGAIN: send again at claim_retry_ms */
};

/* One simulated user. Kept small: a process holds up to ~20,000 of them. */
typedef struct cuser {
    hb_sock_t sock; /* first, so the socket's callbacks find the user; sock.poll.data: impl */
    hb_framer_t framer;
    uint32_t user;
    uint8_t state;
    uint8_t req_head, req_count; /* outstanding requests (shakes, or the application's), a ring */
    uint8_t backoff;
    uint16_t server;      /* the server connected or to connect to (index into impl->servers) */
    uint16_t last_server; /* where the latest login was; NO_SERVER before the first */
    uint32_t deadline_ms; /* connecting or logging in: fails past this (ms since impl->epoch_ms) */
    uint64_t retry_at_ms;
    uint64_t req_at_us[OUTSTANDING];   /* intended send times of outstanding requests */
    uint64_t req_sent_us[OUTSTANDING]; /* and when they were actually written */
    /* Claims without a final answer, in no order (replies name their envelope). */
    uint64_t claim_at_us[CLAIMS_HELD];    /* the notice's arrival: claim latency starts there */
    uint32_t claim_env[CLAIMS_HELD];      /* envelope ids */
    uint32_t claim_retry_ms[CLAIMS_HELD]; /* C_WAIT: when to ask again (ms since impl->epoch_ms) */
    uint8_t claim_state[CLAIMS_HELD];     /* C_* */
    uint8_t claim_tries[CLAIMS_HELD];     /* TRY_AGAIN answers so far: the back-off's exponent */
    uint32_t done_env[CLAIMS_DONE];       /* envelopes whose share was counted, the latest last */
    uint8_t done_count;
} cuser_t;

/* A server's address, as small as it can be: a port range may name 65,535 of them. */
typedef union server_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} server_addr_t;

struct hb_client_impl {
    hb_client_t *pub;
    hb_client_options_t opts;
    char host[64];
    char source_text[HB_CLIENT_MAX_SOURCES][64];
    /* The servers: the list's, or the port range's, in their order; their ring keys (the hash of
     * each address's canonical text) when hashing. */
    server_addr_t *servers;
    uint64_t *keys;
    uint32_t nservers;
    int hashing; /* HB_CLIENT_ROUTE_HASH: users fail over down their order */
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
    /* claims */
    uint64_t epoch_ms;       /* the loop clock at init: claim_retry_ms, deadline_ms count from it */
    uint32_t claims_waiting; /* claims in C_WAIT, over all users */
    uint64_t claim_scan_ms;  /* the next look at them */
    /* connects and logins under way: their deadlines are checked every HANDSHAKE_SCAN_MS */
    uint32_t handshakes;
    uint64_t handshake_scan_ms;
    /* when the users send: the schedule walked over this process's users only */
    hb__pacer_t pacer;
    uint16_t app_reply_cmd; /* the command answering opts.app_cmd */
    /* Housekeeping: connecting, claims to ask again, the second's percentiles. Armed for the
     * earliest of them, not ticking: initialised by init, so that close always calls back from
     * the loop. */
    uv_timer_t house;
    uint64_t house_due_ms; /* loop time it is armed for; UINT64_MAX: not armed */
    /* per-second latency */
    hb_hist_t sec_shake, sec_claim;
    uint64_t hist_second;
    hb_counters_t counters;
    uint64_t connect_log_ms;   /* no connect failure is logged before this */
    uint64_t connect_unlogged; /* failures since the last line */
    int started, closing;
    int closed_running; /* closed loop: every user has logged in once, shaking has begun */
    size_t open_handles;
    hb_client_close_cb close_cb;
};

static void count(struct hb_client_impl *impl, unsigned slot, uint64_t now_s, uint64_t delta)
{
    hb_counters_add(&impl->counters, 0, slot, now_s, delta);
}

static void send_due(void *arg, uint64_t user, uint64_t at_us);
static void house_kick(struct hb_client_impl *impl, uint64_t due_ms);
static void close_second(struct hb_client_impl *impl, uint64_t now_s);

void hb_client_options_default(hb_client_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->server_host = "127.0.0.1";
    o->server_port = 1025;
}

static void free_impl(struct hb_client_impl *impl)
{
    if (impl->users != NULL)
        for (uint32_t i = 0; i < impl->nusers; i++)
            hb_framer_reset(&impl->users[i].framer);
    free(impl->users);
    free(impl->pending);
    free(impl->servers);
    free(impl->keys);
    free(impl);
}

/* The servers of opts->servers, the list ("HOST:PORT" texts, copied). Returns 0 or UV_EINVAL. */
static int servers_from_list(struct hb_client_impl *impl, const hb_client_options_t *opts)
{
    for (uint32_t i = 0; i < impl->nservers; i++) {
        char host[HB_ADDR_HOST_SIZE];
        int port;
        struct sockaddr_storage ss;
        if (hb_addr_parse(opts->servers[i], host, sizeof host, &port) != 0 || port == 0 ||
            hb__sock_addr(host, port, &ss) != 0)
            return UV_EINVAL;
        memcpy(&impl->servers[i], &ss, hb__sock_addr_len((const struct sockaddr *)&ss));
    }
    return 0;
}

/* The servers of the port range: server_host on server_port .. server_port + nservers - 1. */
static int servers_from_range(struct hb_client_impl *impl, const hb_client_options_t *opts)
{
    const char *host = opts->server_host ? opts->server_host : "127.0.0.1";
    struct sockaddr_storage ss;
    if (strlen(host) >= sizeof impl->host || hb__sock_addr(host, opts->server_port, &ss) != 0)
        return UV_EINVAL;
    strcpy(impl->host, host);
    impl->opts.server_host = impl->host;
    for (uint32_t i = 0; i < impl->nservers; i++) {
        server_addr_t *a = &impl->servers[i];
        memcpy(a, &ss, hb__sock_addr_len((const struct sockaddr *)&ss));
        uint16_t port = htons((uint16_t)(opts->server_port + i));
        if (a->sa.sa_family == AF_INET)
            a->v4.sin_port = port;
        else
            a->v6.sin6_port = port;
    }
    return 0;
}

/* The servers' addresses, how users are routed over them, and each user's first server. Returns
 * 0, UV_EINVAL or UV_ENOMEM. */
static int servers_init(struct hb_client_impl *impl, const hb_client_options_t *opts)
{
    int list = opts->servers != NULL;
    impl->nservers = list || opts->nservers > 1 ? opts->nservers : 1;
    impl->opts.servers = NULL; /* the caller's strings are not kept */
    if (impl->nservers == 0 || impl->nservers > (list ? HB_CLIENT_MAX_SERVERS : 65535u) ||
        opts->route < HB_CLIENT_ROUTE_AUTO || opts->route > HB_CLIENT_ROUTE_HASH)
        return UV_EINVAL;
    impl->hashing = opts->route == HB_CLIENT_ROUTE_HASH || (opts->route == 0 && list);
    impl->servers = calloc(impl->nservers, sizeof *impl->servers);
    impl->keys = calloc(impl->nservers, sizeof *impl->keys);
    if (impl->servers == NULL || impl->keys == NULL)
        return UV_ENOMEM;
    int r = list ? servers_from_list(impl, opts) : servers_from_range(impl, opts);
    if (r != 0)
        return r;
    for (uint32_t i = 0; i < impl->nservers; i++) {
        char name[HB_ADDR_HOST_SIZE + 8];
        hb__sock_addr_name(&impl->servers[i].sa, name, sizeof name);
        impl->keys[i] = hb_ring_key(name);
        for (uint32_t j = 0; j < i; j++)
            if (impl->keys[j] == impl->keys[i])
                return UV_EINVAL; /* one address twice */
        for (unsigned k = 0; k < opts->nsources; k++)
            if (impl->sources[k].ss_family != impl->servers[i].sa.sa_family)
                return UV_EINVAL;
    }
    for (uint32_t k = 0; k < impl->nusers; k++) {
        cuser_t *u = &impl->users[k];
        u->last_server = NO_SERVER;
        u->server = (uint16_t)(impl->hashing ? hb_ring_pick(impl->keys, impl->nservers, u->user)
                                             : u->user % impl->nservers);
    }
    return 0;
}

int hb_client_init(uv_loop_t *loop, hb_client_t *client, const hb_client_options_t *opts)
{
    if (loop == NULL || client == NULL || opts == NULL)
        return UV_EINVAL;
    memset(client, 0, sizeof *client);
    client->loop = loop;
    if (opts->max_user < opts->min_user || opts->qps > ((uint64_t)1 << 32) ||
        opts->nsources > HB_CLIENT_MAX_SOURCES ||
        (opts->servers == NULL && (opts->server_port <= 0 || opts->server_port > 65535)) ||
        opts->closed > HB_CLIENT_MAX_CLOSED ||
        (opts->servers == NULL && opts->nservers > 1 &&
         (uint64_t)opts->server_port + opts->nservers - 1 > 65535) ||
        (opts->app_cmd != 0 && !HB_CMD_IS_APP(opts->app_cmd)) ||
        (opts->app_reply_cmd != 0 && !HB_CMD_IS_APP(opts->app_reply_cmd)))
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
    int r = UV_EINVAL;
    for (unsigned i = 0; i < opts->nsources; i++) {
        if (opts->sources[i] == NULL || strlen(opts->sources[i]) >= sizeof impl->source_text[i] ||
            hb__sock_addr(opts->sources[i], 0, &impl->sources[i]) != 0)
            goto fail;
        strcpy(impl->source_text[i], opts->sources[i]);
        impl->opts.sources[i] = impl->source_text[i];
    }
    if (impl->opts.connect_rate == 0)
        impl->opts.connect_rate = 20000;
    if (impl->opts.connect_inflight == 0)
        impl->opts.connect_inflight = 512;
    if (impl->opts.login_timeout_ms == 0)
        impl->opts.login_timeout_ms = LOGIN_TIMEOUT_MS;
    impl->app_reply_cmd = opts->app_reply_cmd ? opts->app_reply_cmd : opts->app_cmd;
    if (total > HB_SCHED_MAX_USERS)
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
        impl->users[i].user = opts->min_user + i;
        hb_framer_init(&impl->users[i].framer);
        impl->pending[i] = i;
    }
    impl->pending_count = impl->nusers;
    r = servers_init(impl, opts);
    if (r != 0) {
        hb_counters_close(&impl->counters);
        goto fail;
    }
    hb_hist_init(&client->shake_latency);
    hb_hist_init(&client->claim_latency);
    hb_hist_init(&client->service_latency);
    for (unsigned i = 0; i < HB_CLIENT_PHASES; i++)
        hb_hist_init(&client->phase_latency[i]);
    hb_hist_init(&impl->sec_shake);
    hb_hist_init(&impl->sec_claim);
    impl->epoch_ms = uv_now(loop);
    /* The pacer's handle, then the timer that cannot fail: no error path has to close one. */
    r = hb__pacer_init(loop, &impl->pacer, total, opts->qps, opts->min_user, impl->nusers, send_due,
                       impl);
    if (r != 0) {
        hb_counters_close(&impl->counters);
        goto fail;
    }
    impl->pacer.wakeups = &client->stats.send_wakeups;
    impl->pacer.coalesce_us = opts->send_coalesce_us;
    impl->pacer.spin_us = opts->send_spin_us;
    impl->pacer.spins = &client->stats.send_spins;
    uv_timer_init(loop, &impl->house);
    impl->house.data = impl;
    impl->house_due_ms = UINT64_MAX;
    impl->open_handles = 2;
    client->stats.users = impl->nusers;
    client->impl = impl;
    return 0;
fail:
    free_impl(impl);
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
    return hb__pacer_rate(&client->impl->pacer);
}

/* ---- output
 * --------------------------------------------------------------------------------------- */

static void user_close(cuser_t *u);
static void user_fail(cuser_t *u, int err);

static struct hb_client_impl *user_impl(const cuser_t *u)
{
    return u->sock.poll.data;
}

/* The counter slot of a frame of cmd: the reference's own, with the extended claim and its reply
 * counted as the claims they are; another extension has none. */
static int frame_slot(uint16_t cmd)
{
    if (cmd <= HB_CMD_CLAIM_REPLY)
        return cmd;
    if (cmd == HB_CMD_CLAIM_EX)
        return HB_CTR_FRAME_CLAIM;
    if (cmd == HB_CMD_CLAIM_EX_REPLY)
        return HB_CTR_FRAME_CLAIM_REPLY;
    if (cmd == HB_CMD_NOTICE_EX)
        return HB_CTR_FRAME_NOTICE;
    return -1;
}

/* Write one message: what the kernel does not take at once waits in the socket's queue. A failed
 * write closes the connection (its user reconnects). */
static void user_send(cuser_t *u, const hb_msg_t *m)
{
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(m, buf, sizeof buf);
    if (n <= 0)
        return;
    int slot = frame_slot(m->cmd);
    if (slot >= 0)
        count(user_impl(u), (unsigned)slot, m->timestamp, 1);
    int r = hb__sock_write(&u->sock, buf, (size_t)n);
    if (r != 0)
        user_fail(u, r);
}

/* ---- claims
 * --------------------------------------------------------------------------------------- */

/* Milliseconds of the loop clock since init (the scale of claim_retry_ms and deadline_ms). */
static uint32_t epoch_clock(const struct hb_client_impl *impl)
{
    return (uint32_t)(uv_now(impl->pub->loop) - impl->epoch_ms);
}

/* Send held claim i of u on its connection (it is logged in). */
static void claim_send(struct hb_client_impl *impl, cuser_t *u, unsigned i, uint64_t now_s)
{
    hb_msg_t c = {.cmd = impl->opts.reference_claims ? HB_CMD_CLAIM : HB_CMD_CLAIM_EX,
                  .timestamp = now_s};
    c.u.claim.user_id = u->user;
    c.u.claim.envelope_id = u->claim_env[i];
    u->claim_state[i] = C_SENT; /* before the write: a write that fails makes it C_UNSENT */
    count(impl, HB_CTR_REQUESTS, now_s, 1);
    user_send(u, &c);
}

/* A claim is sent again: count it, and send it when u is logged in, else at its next login. */
static void claim_resend(struct hb_client_impl *impl, cuser_t *u, unsigned i, uint64_t now_s)
{
    impl->pub->stats.claims_retried++;
    if (u->state == U_READY)
        claim_send(impl, u, i, now_s);
    else
        u->claim_state[i] = C_UNSENT;
}

/* u's connection is gone: the claims it carried have no answer and will be sent again. */
static void claims_connection_lost(cuser_t *u)
{
    for (unsigned i = 0; i < CLAIMS_HELD; i++)
        if (u->claim_state[i] == C_SENT)
            u->claim_state[i] = C_UNSENT;
}

/* u has logged in: send the claims its lost connections left without an answer. */
static void claims_after_login(struct hb_client_impl *impl, cuser_t *u, uint64_t now_s)
{
    for (unsigned i = 0; i < CLAIMS_HELD && u->state == U_READY; i++)
        if (u->claim_state[i] == C_UNSENT) {
            impl->pub->stats.claims_retried++;
            claim_send(impl, u, i, now_s);
        }
}

/* Whether u holds a claim of envelope id, or has counted its share lately. */
static int claim_known(const cuser_t *u, uint32_t id)
{
    for (unsigned i = 0; i < CLAIMS_HELD; i++)
        if (u->claim_state[i] != C_FREE && u->claim_env[i] == id)
            return 1;
    for (unsigned i = 0; i < u->done_count; i++)
        if (u->done_env[i] == id)
            return 1;
    return 0;
}

/* A notice: claim the envelope, unless it is held or counted already or every slot is taken. */
static void claim_notice(struct hb_client_impl *impl, cuser_t *u, uint32_t id, uint64_t now_us)
{
    if (impl->opts.no_claims || claim_known(u, id))
        return;
    for (unsigned i = 0; i < CLAIMS_HELD; i++) {
        if (u->claim_state[i] != C_FREE)
            continue;
        u->claim_env[i] = id;
        u->claim_at_us[i] = now_us;
        u->claim_tries[i] = 0;
        impl->pub->stats.claims++;
        claim_send(impl, u, i, now_us / 1000000);
        return;
    }
}

/* Held claim i has its final answer: time it from the notice and free the slot. */
static void claim_final(struct hb_client_impl *impl, cuser_t *u, unsigned i, uint64_t now_us)
{
    hb_hist_t *all = &impl->pub->claim_latency;
    uint64_t lat = now_us > u->claim_at_us[i] ? now_us - u->claim_at_us[i] : 0;
    close_second(impl, now_us / 1000000);
    hb_hist_record(all, lat);
    hb_hist_record(&impl->sec_claim, lat);
    u->claim_state[i] = C_FREE;
}

/* The share of held claim i arrived: count it (once: the slot is freed, the envelope noted). */
static void claim_counted(struct hb_client_impl *impl, cuser_t *u, unsigned i, uint32_t amount,
                          uint64_t now_us)
{
    hb_client_stats_t *st = &impl->pub->stats;
    uint64_t now_s = now_us / 1000000;
    st->claims_granted++;
    st->claimed_amount += amount;
    count(impl, HB_CTR_CLAIMS_GRANTED, now_s, 1);
    count(impl, HB_CTR_SEND_AMOUNT_CLAIMED, now_s, amount);
    if (u->done_count == CLAIMS_DONE) {
        memmove(u->done_env, u->done_env + 1, (CLAIMS_DONE - 1) * sizeof u->done_env[0]);
        u->done_count--;
    }
    u->done_env[u->done_count++] = u->claim_env[i];
    claim_final(impl, u, i, now_us);
}

/* A claim reply (extended, or the reference's amount alone as GRANTED / NO_ENVELOPE). Returns 0,
 * or HB_EBADCMD for a reply to no claim sent on this connection. */
static int claim_reply(struct hb_client_impl *impl, cuser_t *u, uint32_t id, uint32_t amount,
                       uint32_t result, uint64_t now_us)
{
    unsigned i = 0;
    while (i < CLAIMS_HELD && !(u->claim_state[i] == C_SENT && u->claim_env[i] == id))
        i++;
    if (i == CLAIMS_HELD)
        return HB_EBADCMD;
    hb_client_stats_t *st = &impl->pub->stats;
    count(impl, HB_CTR_RESPONSES, now_us / 1000000, 1);
    if (impl->opts.on_claim_reply != NULL)
        impl->opts.on_claim_reply(impl->opts.claim_arg, u->user, id, amount, (int)result);
    switch (result) {
    case HB_CLAIM_GRANTED:
        claim_counted(impl, u, i, amount, now_us);
        break;
    case HB_CLAIM_REPEAT: /* a grant whose first answer was lost: not counted yet */
        st->claims_repeat++;
        claim_counted(impl, u, i, amount, now_us);
        break;
    case HB_CLAIM_TRY_AGAIN: {
        st->claims_try_again++;
        uint64_t wait = hb__backoff_ms(BACKOFF_MIN_MS, u->claim_tries[i], 6);
        if (wait > BACKOFF_MAX_MS)
            wait = BACKOFF_MAX_MS;
        if (u->claim_tries[i] < UINT8_MAX)
            u->claim_tries[i]++;
        u->claim_retry_ms[i] = epoch_clock(impl) + (uint32_t)wait;
        u->claim_state[i] = C_WAIT;
        impl->claims_waiting++;
        house_kick(impl, uv_now(impl->pub->loop) + wait);
        break;
    }
    default: /* not a recipient, no such envelope, or a result we do not know: final, nothing */
        st->claims_refused++;
        claim_final(impl, u, i, now_us);
        break;
    }
    return 0;
}

/* Send again the claims whose TRY_AGAIN back-off is over. */
static void claims_retry_due(struct hb_client_impl *impl)
{
    uint32_t now = epoch_clock(impl);
    uint64_t now_s = hb__wall_us() / 1000000;
    for (uint32_t k = 0; k < impl->nusers && impl->claims_waiting > 0; k++) {
        cuser_t *u = &impl->users[k];
        for (unsigned i = 0; i < CLAIMS_HELD; i++) {
            if (u->claim_state[i] != C_WAIT || (int32_t)(now - u->claim_retry_ms[i]) < 0)
                continue;
            impl->claims_waiting--;
            claim_resend(impl, u, i, now_s);
        }
    }
}

/* ---- connecting
 * ------------------------------------------------------------------------------------- */

static void pending_push(struct hb_client_impl *impl, cuser_t *u)
{
    uint32_t idx = (uint32_t)(u - impl->users);
    impl->pending[(impl->pending_head + impl->pending_count) % impl->nusers] = idx;
    impl->pending_count++;
    house_kick(impl, u->retry_at_ms);
}

/* Once closing and the last handle is closed: call the close callback, then free the internals.
 * Nothing touches the client after the callback (it may have freed it). */
static void maybe_finish(struct hb_client_impl *impl)
{
    if (!impl->closing || impl->open_handles > 0)
        return;
    hb_client_close_cb cb = impl->close_cb;
    if (cb != NULL)
        cb(impl->pub);
    hb_counters_close(&impl->counters);
    free_impl(impl);
}

static void on_user_closed(hb_sock_t *s)
{
    cuser_t *u = (cuser_t *)s;
    struct hb_client_impl *impl = user_impl(u);
    impl->open_handles--;
    hb_framer_reset(&u->framer);
    u->state = U_IDLE;
    u->req_count = 0;
    if (impl->closing) {
        maybe_finish(impl);
        return;
    }
    /* Hashing: the server failed this user, who tries the next one of its order. */
    if (impl->hashing)
        u->server = (uint16_t)hb_ring_next(impl->keys, impl->nservers, u->user, u->server);
    /* Reconnect after a back-off that doubles with each failure in a row. */
    uint64_t delay = hb__backoff_ms(BACKOFF_MIN_MS, u->backoff, 6);
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
    struct hb_client_impl *impl = user_impl(u);
    if (u->state == U_READY) {
        impl->pub->stats.connected--;
        impl->pub->stats.disconnects++;
        count(impl, HB_CTR_CONN_CLOSED, hb__wall_us() / 1000000, 1);
    } else {
        impl->pub->stats.connect_failures++;
        impl->handshakes--;
        if (u->state == U_CONNECTING)
            impl->inflight--;
    }
    u->state = U_CLOSING;
    claims_connection_lost(u);
    hb__sock_close(&u->sock);
}

static void send_request(struct hb_client_impl *impl, cuser_t *u, uint64_t at_us);

/* The closed loop starts once every user of this process has logged in (so that connecting is
 * not slowed by the load of those already in, and the measured loop is the steady state); a user
 * who reconnects afterwards starts again at once. */
static void closed_kick(struct hb_client_impl *impl, cuser_t *u)
{
    if (impl->closed_running) {
        for (uint32_t i = 0; i < impl->opts.closed && u->state == U_READY; i++)
            send_request(impl, u, 0);
        return;
    }
    if (impl->pub->stats.connected < impl->nusers)
        return;
    impl->closed_running = 1;
    for (uint32_t k = 0; k < impl->nusers; k++)
        for (uint32_t i = 0; i < impl->opts.closed && impl->users[k].state == U_READY; i++)
            send_request(impl, &impl->users[k], 0);
}

/* The closed loop: a request was answered, send the next. */
static void closed_next(struct hb_client_impl *impl, cuser_t *u)
{
    if (impl->opts.closed > 0 && !impl->closing && u->state == U_READY)
        send_request(impl, u, 0);
}

/* u's oldest outstanding request is answered at now_us: time it from its intended send time (and
 * from its write: the service latency) into the histograms, and count the response. */
static void request_answered(struct hb_client_impl *impl, cuser_t *u, uint64_t now_us)
{
    hb_client_t *c = impl->pub;
    uint64_t at = u->req_at_us[u->req_head], written = u->req_sent_us[u->req_head];
    u->req_head = (uint8_t)((u->req_head + 1) % OUTSTANDING);
    u->req_count--;
    uint64_t lat = now_us > at ? now_us - at : 0;
    close_second(impl, now_us / 1000000);
    hb_hist_record(&c->shake_latency, lat);
    hb_hist_record(&impl->sec_shake, lat);
    hb_hist_record(&c->service_latency, now_us > written ? now_us - written : 0);
    hb_hist_record(&c->phase_latency[(at / 100000) % HB_CLIENT_PHASES], lat);
    count(impl, HB_CTR_RESPONSES, now_us / 1000000, 1);
}

/* u logged in on u->server: count a reconnect, and a failover when that is not where it was last
 * (or, the first time, not its first choice). */
static void logged_in_at(struct hb_client_impl *impl, cuser_t *u)
{
    hb_client_stats_t *st = &impl->pub->stats;
    uint32_t was = u->last_server;
    if (was != NO_SERVER)
        st->reconnects++;
    else if (impl->hashing)
        was = hb_ring_pick(impl->keys, impl->nservers, u->user);
    if (impl->hashing && was != u->server)
        st->failovers++;
    u->last_server = u->server;
}

/* An application frame (logged in): the answer to u's oldest request when it is of the reply
 * command and a request is outstanding; for the application's callback in any case. */
static int app_frame(struct hb_client_impl *impl, cuser_t *u, const hb_frame_t *f)
{
    if (u->state != U_READY)
        return HB_EBADCMD;
    hb_client_stats_t *st = &impl->pub->stats;
    int answer = impl->opts.app_cmd != 0 && f->cmd == impl->app_reply_cmd && u->req_count > 0;
    st->app_frames++;
    if (answer) {
        st->app_replies++;
        request_answered(impl, u, hb__wall_us());
    }
    if (impl->opts.on_app_frame != NULL)
        impl->opts.on_app_frame(impl->opts.app_arg, u->user, f);
    if (answer)
        closed_next(impl, u);
    return 0;
}

static int on_frame(void *arg, const hb_frame_t *f)
{
    cuser_t *u = arg;
    struct hb_client_impl *impl = user_impl(u);
    hb_client_stats_t *st = &impl->pub->stats;
    if (u->state == U_CLOSING)
        return UV_ECANCELED; /* closed by a reply to an earlier frame: ignore the rest */
    if (HB_CMD_IS_APP(f->cmd))
        return app_frame(impl, u, f);
    hb_msg_t m;
    if (hb_msg_decode(f, &m) != 0)
        return HB_EBADCMD;
    uint64_t now_us = hb__wall_us(), now_s = now_us / 1000000;
    int slot = frame_slot(f->cmd);
    if (slot >= 0)
        count(impl, (unsigned)slot, now_s, 1);
    switch (f->cmd) {
    case HB_CMD_LOGIN_REPLY:
        if (u->state != U_LOGIN_SENT || m.u.login_reply.result != 0)
            return HB_EBADCMD;
        u->state = U_READY;
        u->backoff = 0;
        impl->handshakes--;
        st->connected++;
        if (st->connected > st->connected_peak)
            st->connected_peak = st->connected;
        st->connects++;
        logged_in_at(impl, u);
        count(impl, HB_CTR_CONN_OPENED, now_s, 1);
        claims_after_login(impl, u, now_s);
        if (impl->opts.closed > 0)
            closed_kick(impl, u);
        return 0;
    case HB_CMD_SHAKE_REPLY: {
        if (u->req_count == 0 || impl->opts.app_cmd != 0)
            return HB_EBADCMD;
        request_answered(impl, u, now_us);
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
        closed_next(impl, u);
        return 0;
    }
    case HB_CMD_NOTICE:
    case HB_CMD_NOTICE_EX: /* an envelope of another recipient count: claimed the same way */
        st->notices++;
        if (u->state == U_READY)
            claim_notice(impl, u,
                         f->cmd == HB_CMD_NOTICE ? m.u.notice.envelope_id
                                                 : m.u.notice_ex.envelope_id,
                         now_us);
        return 0;
    case HB_CMD_CLAIM_EX_REPLY:
        return claim_reply(impl, u, m.u.claim_ex_reply.envelope_id, m.u.claim_ex_reply.amount,
                           m.u.claim_ex_reply.result, now_us);
    case HB_CMD_CLAIM_REPLY:
        return claim_reply(impl, u, m.u.claim_reply.envelope_id, m.u.claim_reply.amount,
                           m.u.claim_reply.amount > 0 ? HB_CLAIM_GRANTED : HB_CLAIM_NO_ENVELOPE,
                           now_us);
    case HB_CMD_CHAT_DELIVER:
    case HB_CMD_CHAT_REPLY:
        return 0;
    default:
        return HB_EBADCMD;
    }
}

/* Every user's reads land in one buffer: the read callback follows the allocation at once. */
static void on_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    (void)s;
    static _Thread_local char readbuf[65536];
    *buf = uv_buf_init(readbuf, sizeof readbuf);
}

static void connect_failed(struct hb_client_impl *impl, const cuser_t *u, int err);

/* u's connection failed with err: a connect or login that failed says why (connect_failed); the
 * connection is closed and made again. */
static void user_fail(cuser_t *u, int err)
{
    if (u->state == U_CONNECTING || u->state == U_LOGIN_SENT)
        connect_failed(user_impl(u), u, err);
    user_close(u);
}

static void on_read(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cuser_t *u = (cuser_t *)s;
    if (nread < 0) {
        user_fail(u, (int)nread); /* UV_EOF: closed by the server; UV_ECONNRESET... */
        return;
    }
    int r = hb_framer_feed(&u->framer, (const uint8_t *)buf->base, (size_t)nread, on_frame, u);
    if (r != 0 && u->state != U_CLOSING) {
        user_impl(u)->pub->stats.bad_frames++;
        user_fail(u, r);
    }
}

/* u's connect (or its socket, or its login) failed with err: remember it, and say so at most once
 * a second, naming the server. */
static void connect_failed(struct hb_client_impl *impl, const cuser_t *u, int err)
{
    impl->pub->stats.last_connect_error = err;
    impl->connect_unlogged++;
    uint64_t now = uv_now(impl->pub->loop);
    if (impl->opts.log == NULL || now < impl->connect_log_ms)
        return;
    char name[HB_ADDR_HOST_SIZE + 8];
    hb__sock_addr_name(&impl->servers[u->server].sa, name, sizeof name);
    hb__vlogf_line(impl->opts.log, impl->opts.log_arg,
                   "connecting to %s failed: %s (%s); %llu failure(s) since the last line", name,
                   hb_err_name(err), hb_strerror(err), (unsigned long long)impl->connect_unlogged);
    impl->connect_unlogged = 0;
    impl->connect_log_ms = now + 1000;
}

static void on_connected(hb_sock_t *s, int status)
{
    cuser_t *u = (cuser_t *)s;
    struct hb_client_impl *impl = user_impl(u);
    if (u->state != U_CONNECTING)
        return;
    impl->inflight--;
    u->state = U_LOGIN_SENT; /* from here a failure is not counted in inflight */
    if (status == 0)
        status = hb__sock_read_start(s);
    if (status != 0) {
        connect_failed(impl, u, status);
        user_close(u);
        return;
    }
    hb_msg_t m = {.cmd = HB_CMD_LOGIN, .timestamp = hb__wall_us() / 1000000};
    m.u.login.user_id = u->user;
    user_send(u, &m);
}

static void on_write_error(hb_sock_t *s, int err)
{
    user_fail((cuser_t *)s, err);
}

static const hb_sock_ops_t user_ops = {
    .alloc = on_alloc,
    .read = on_read,
    .connected = on_connected,
    .write_error = on_write_error,
    .closed = on_user_closed,
};

static void start_connect(struct hb_client_impl *impl, cuser_t *u)
{
    /* From the sources in turn, the port chosen at connect for the whole 4-tuple. */
    const struct sockaddr *from = NULL;
    if (impl->opts.nsources > 0) {
        from = (const struct sockaddr *)&impl->sources[impl->next_source];
        impl->next_source = (impl->next_source + 1) % impl->opts.nsources;
    }
    hb_framer_init(&u->framer);
    int r = hb__sock_connect(impl->pub->loop, &u->sock, &user_ops, &impl->servers[u->server].sa,
                             from, USER_MAX_QUEUED);
    u->sock.poll.data = impl;
    if (r != 0)
        connect_failed(impl, u, r);
    if (r != 0 && !hb__sock_connect_started(&u->sock)) {
        impl->pub->stats.connect_failures++; /* no socket (out of descriptors?): wait longer */
        u->retry_at_ms = uv_now(impl->pub->loop) + BACKOFF_MAX_MS;
        pending_push(impl, u);
        return;
    }
    impl->open_handles++;
    impl->inflight++;
    impl->handshakes++;
    u->state = U_CONNECTING;
    u->deadline_ms = epoch_clock(impl) + impl->opts.login_timeout_ms;
    if (r != 0)
        user_close(u); /* bind or connect failed: retried after the back-off */
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

/* ---- requests
 * ------------------------------------------------------------------------------------- */

static void missed(struct hb_client_impl *impl, uint64_t now_s)
{
    impl->pub->stats.missed++;
    count(impl, HB_CTR_C_SEND_MISSED, now_s, 1);
}

/* Send u's next request (logged in), intended at Unix microsecond at_us (0: now, the closed
 * loop): a shake, or the application's request. One past OUTSTANDING unanswered, or one the
 * application declines to fill, is not sent and counts as missed. */
static void send_request(struct hb_client_impl *impl, cuser_t *u, uint64_t at_us)
{
    hb_client_stats_t *st = &impl->pub->stats;
    uint64_t now_us = hb__wall_us(), now_s = now_us / 1000000;
    if (u->req_count == OUTSTANDING) {
        missed(impl, now_s);
        return;
    }
    if (at_us == 0)
        at_us = now_us;
    hb_msg_t m = {.cmd = HB_CMD_SHAKE, .timestamp = now_s};
    uint8_t payload[APP_PAYLOAD_MAX];
    if (impl->opts.app_cmd != 0) {
        int n = 0;
        if (impl->opts.app_fill != NULL)
            n = impl->opts.app_fill(impl->opts.app_arg, u->user, at_us, payload, sizeof payload);
        if (n < 0 || n > (int)sizeof payload) {
            missed(impl, now_s);
            return;
        }
        m.cmd = impl->opts.app_cmd;
        m.u.app.len = (uint16_t)n;
        m.u.app.payload = payload;
        st->app_requests++;
    } else {
        m.u.shake.user_id = u->user;
        st->shakes++;
    }
    unsigned slot = (u->req_head + u->req_count) % OUTSTANDING;
    u->req_at_us[slot] = at_us;
    u->req_sent_us[slot] = now_us;
    u->req_count++;
    count(impl, HB_CTR_REQUESTS, now_s, 1);
    user_send(u, &m);
}

/* The pacer: user's send, intended at at_us, is due. A user not logged in skips it. */
static void send_due(void *arg, uint64_t user, uint64_t at_us)
{
    struct hb_client_impl *impl = arg;
    cuser_t *u = &impl->users[user - impl->opts.min_user];
    if (u->state == U_READY)
        send_request(impl, u, at_us);
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

/* ---- housekeeping
 * ----------------------------------------------------------------------------------- */

static void on_house(uv_timer_t *t);

/* Have the housekeeping timer run by loop time due_ms (or earlier, as it is). */
static void house_kick(struct hb_client_impl *impl, uint64_t due_ms)
{
    if (!impl->started || impl->closing || due_ms >= impl->house_due_ms)
        return;
    uint64_t now = uv_now(impl->pub->loop);
    impl->house_due_ms = due_ms;
    uv_timer_start(&impl->house, on_house, due_ms > now ? due_ms - now : 0, 0);
}

/* Fail the connects and logins that are past their deadline (a server that accepts and never
 * answers, a SYN nobody answers). */
static void handshakes_expire(struct hb_client_impl *impl)
{
    uint32_t now = epoch_clock(impl);
    for (uint32_t k = 0; k < impl->nusers && impl->handshakes > 0; k++) {
        cuser_t *u = &impl->users[k];
        if ((u->state == U_CONNECTING || u->state == U_LOGIN_SENT) &&
            (int32_t)(now - u->deadline_ms) >= 0)
            user_fail(u, UV_ETIMEDOUT);
    }
}

/* Connect the users waiting for it, fail the connects and logins past their deadline, ask again the
 * claims whose back-off is over, close the second; then sleep until the earliest of: the next
 * second, the next connect, the next deadline scan, the next claim scan. */
static void on_house(uv_timer_t *t)
{
    struct hb_client_impl *impl = t->data;
    uint64_t now = uv_now(t->loop), wall_ms = hb__wall_us() / 1000;
    impl->house_due_ms = UINT64_MAX;
    close_second(impl, wall_ms / 1000);
    connect_some(impl, now);
    if (impl->handshakes > 0 && now >= impl->handshake_scan_ms) {
        impl->handshake_scan_ms = now + HANDSHAKE_SCAN_MS;
        handshakes_expire(impl);
    }
    if (impl->claims_waiting > 0 && now >= impl->claim_scan_ms) {
        impl->claim_scan_ms = now + CLAIM_SCAN_MS;
        claims_retry_due(impl);
    }
    uint64_t due = now + 1000 - wall_ms % 1000;
    if (impl->pending_count > 0) {
        uint64_t head = impl->users[impl->pending[impl->pending_head]].retry_at_ms;
        uint64_t next = head > now + CONNECT_TICK_MS ? head : now + CONNECT_TICK_MS;
        due = next < due ? next : due;
    }
    if (impl->claims_waiting > 0 && impl->claim_scan_ms < due)
        due = impl->claim_scan_ms;
    if (impl->handshakes > 0 && impl->handshake_scan_ms < due)
        due = impl->handshake_scan_ms;
    house_kick(impl, due);
}

int hb_client_start(hb_client_t *client)
{
    struct hb_client_impl *impl = client->impl;
    if (impl->started || impl->closing)
        return UV_EINVAL;
    impl->started = 1;
    uint64_t now_ms = hb__wall_us() / 1000;
    impl->hist_second = now_ms / 1000;
    uv_update_time(client->loop);
    impl->tokens_ms = uv_now(client->loop);
    impl->tokens = 1;
    if (impl->opts.closed == 0)
        hb__pacer_start(&impl->pacer, now_ms);
    house_kick(impl, uv_now(client->loop));
    return 0;
}

int hb_client_set_rate(hb_client_t *client, uint64_t qps)
{
    struct hb_client_impl *impl = client->impl;
    uint64_t from_s = hb__wall_us() / 1000000 + 1;
    if (from_s < impl->pacer.sched.epoch_s)
        from_s = impl->pacer.sched.epoch_s;
    return hb__pacer_set_rate(&impl->pacer, qps, from_s);
}

/* ---- closing
 * ---------------------------------------------------------------------------------------- */

static void on_house_closed(uv_handle_t *h)
{
    struct hb_client_impl *impl = h->data;
    impl->open_handles--;
    maybe_finish(impl);
}

static void on_pacer_closed(hb__pacer_t *p)
{
    struct hb_client_impl *impl = p->arg;
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
            hb__sock_close(&u->sock);
        }
    }
    /* Both exist from init on: the callback comes from the loop, started or not. */
    hb__pacer_close(&impl->pacer, on_pacer_closed);
    uv_close((uv_handle_t *)&impl->house, on_house_closed);
}

/* ---- control routes
 * --------------------------------------------------------------------------------- */

static void route_qps(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_client_t *client = arg;
    uint64_t qps;
    const uint64_t max = (uint64_t)1 << 32;
    int r = hb_query_u64(req->query, req->query_len, "qps", 0, max, &qps);
    if (r != 0) {
        hb_http_bad_param_range(res, "qps", r, 0, max);
        return;
    }
    hb_client_set_rate(client, qps);
    char msg[96];
    int n = snprintf(msg, sizeof msg, "qps set to %llu from second %llu\n", (unsigned long long)qps,
                     (unsigned long long)client->impl->pacer.rate_from_s);
    hb_http_respond(res, 200, "text/plain; charset=utf-8", msg, (size_t)n);
}

static void route_stats(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    hb_client_t *c = arg;
    const hb_client_stats_t *s = &c->stats;
    char buf[1024];
    int n = snprintf(
        buf, sizeof buf,
        "{\"users\":%llu,\"connected\":%llu,\"qps\":%llu,\"shakes\":%llu,\"missed\":%llu,"
        "\"got\":%llu,\"none\":%llu,\"overload\":%llu,\"envelopes\":%llu,\"amount\":%llu,"
        "\"notices\":%llu,\"claims\":%llu,\"claims_granted\":%llu,\"claimed_amount\":%llu,"
        "\"claims_repeat\":%llu,\"claims_try_again\":%llu,\"claims_retried\":%llu,"
        "\"claims_refused\":%llu,\"app_requests\":%llu,\"app_replies\":%llu,"
        "\"send_wakeups\":%llu,\"send_spins\":%llu,\"connects\":%llu,\"connect_failures\":%llu,"
        "\"disconnects\":%llu,\"reconnects\":%llu,\"failovers\":%llu,"
        "\"latency_us\":{\"p50\":%llu,\"p99\":%llu,\"max\":%llu}}\n",
        (unsigned long long)s->users, (unsigned long long)s->connected,
        (unsigned long long)hb_client_rate(c), (unsigned long long)s->shakes,
        (unsigned long long)s->missed, (unsigned long long)s->replies[0],
        (unsigned long long)s->replies[1], (unsigned long long)s->replies[3],
        (unsigned long long)s->envelopes, (unsigned long long)s->amount,
        (unsigned long long)s->notices, (unsigned long long)s->claims,
        (unsigned long long)s->claims_granted, (unsigned long long)s->claimed_amount,
        (unsigned long long)s->claims_repeat, (unsigned long long)s->claims_try_again,
        (unsigned long long)s->claims_retried, (unsigned long long)s->claims_refused,
        (unsigned long long)s->app_requests, (unsigned long long)s->app_replies,
        (unsigned long long)s->send_wakeups, (unsigned long long)s->send_spins,
        (unsigned long long)s->connects, (unsigned long long)s->connect_failures,
        (unsigned long long)s->disconnects, (unsigned long long)s->reconnects,
        (unsigned long long)s->failovers,
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
