/* The server's control routes (hb_server_mount_http: shake and send-envelope generation,
 * /metrics, /stats) and the names of the server's own counter slots. Control loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb_server_int.h"

/* ---- counter names
 * ---------------------------------------------------------------------------------- */

static const struct {
    unsigned slot;
    const char *name, *help;
} server_slots[] = {
    {HB_CTR_X_ENVELOPE_DROPPED, "envelopes_dropped",
     "Send-envelopes dropped unannounced: not made durable"},
    {HB_CTR_X_IDS_WAIT, "ids_wait", "Generator ticks that waited for an id reservation"},
    {HB_CTR_X_CLAIM_REPEAT, "claims_repeated",
     "Claims answered again with the share granted before"},
    {HB_CTR_X_CLAIM_TRY_AGAIN, "claims_try_again", "Claims answered try-again: nothing decided"},
    {HB_CTR_X_STORE_ERRORS, "store_errors", "Failures of the claim journal"},
    {HB_CTR_X_LOGIN_TIMEOUT, "login_timeouts", "Connections closed for not logging in in time"},
    {HB_CTR_X_LOGIN_REFUSED, "login_refused", "Logins refused: user id outside the allowed range"},
    {HB_CTR_X_RATE_LIMITED, "rate_limited", "Requests over a connection's rate limit"},
    {HB_CTR_X_ENVQ_FULL, "envq_full", "Generator ticks that found every bucket full"},
    {HB_CTR_X_BAD_FRAME, "bad_frames", "Connections closed for a malformed or unexpected frame"},
    {HB_CTR_X_SLOW_PEER, "slow_peers", "Connections closed for not draining their output"},
    {HB_CTR_X_CONN_REJECTED, "conn_rejected", "Connections refused past the maximum"},
    {HB_CTR_X_CLAIM_REFUSED, "claims_refused", "Claims that granted nothing"},
    {HB_CTR_X_CHAT, "chat_delivered", "Chat messages handed to the recipient's SET"},
    {HB_CTR_X_CHAT_FAILED, "chat_failed", "Chat messages to an offline user or a full queue"},
    {HB_CTR_X_KICKED, "conn_kicked", "Connections closed by a newer login of the same user"},
    {HB_CTR_X_SEND_EXPIRED, "send_expired", "Send-envelopes expired with shares unclaimed"},
    {HB_CTR_X_NOTICE_OFFLINE, "notice_offline", "Notices not sent: recipient offline"},
};

#define SERVER_SLOTS (sizeof server_slots / sizeof server_slots[0])

const char *hb_server_counter_name(unsigned idx)
{
    for (size_t i = 0; i < SERVER_SLOTS; i++)
        if (server_slots[i].slot == idx)
            return server_slots[i].name;
    return hb_counter_name(idx);
}

/* ---- control routes
 * ------------------------------------------------------------------------------------ */

#define HB_METRICS_BUF 32768

static int want_u64(const hb_http_request_t *req, hb_http_response_t *res, const char *name,
                    uint64_t min, uint64_t max, uint64_t *out)
{
    int r = hb_http_query_u64(req->query, req->query_len, name, min, max, out);
    if (r != 0)
        hb_http_bad_param_range(res, name, r, min, max);
    return r;
}

static void reply_text(hb_http_response_t *res, int status, const char *text)
{
    hb_http_respond(res, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void route_shake(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_server_t *server = arg;
    uint64_t qps, sum;
    if (want_u64(req, res, "qps", 0, HB_GENERATE_QPS_MAX, &qps) != 0 ||
        want_u64(req, res, "sum", 0, UINT32_MAX, &sum) != 0)
        return;
    if (hb_server_generate_shake(server, qps, sum) != 0) {
        reply_text(res, 503, "the server is not running\n");
        return;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "generating %llu shake envelopes at %llu/s\n",
             (unsigned long long)sum, (unsigned long long)qps);
    reply_text(res, 200, msg);
}

static void route_send(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_server_t *server = arg;
    uint64_t qps, sum, min, max;
    if (want_u64(req, res, "qps", 0, HB_GENERATE_QPS_MAX, &qps) != 0 ||
        want_u64(req, res, "sum", 0, UINT32_MAX, &sum) != 0 ||
        want_u64(req, res, "min", 0, UINT32_MAX, &min) != 0 ||
        want_u64(req, res, "max", 0, UINT32_MAX, &max) != 0)
        return;
    if (max < min || max - min < 2) {
        reply_text(res, 400,
                   "parameters 'min' and 'max': need max >= min + 2 (three distinct "
                   "recipients)\n");
        return;
    }
    if (hb_server_generate_send(server, qps, sum, (uint32_t)min, (uint32_t)max) != 0) {
        reply_text(res, 503, "the server is not running\n");
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "generating %llu send-envelopes at %llu/s for users %llu..%llu\n",
             (unsigned long long)sum, (unsigned long long)qps, (unsigned long long)min,
             (unsigned long long)max);
    reply_text(res, 200, msg);
}

/* The buffer /metrics and /stats render into (freed by the caller) and the snapshot of the last
 * whole second they show; NULL (after answering 500) when out of memory. */
static char *render_start(hb_server_t *server, hb_http_response_t *res, hb_report_t *rep)
{
    char *buf = malloc(HB_METRICS_BUF);
    if (buf == NULL)
        reply_text(res, 500, "out of memory\n");
    else
        hb_counters_snapshot(&server->impl->counters, hb__now_s() - 1, rep);
    return buf;
}

static void route_metrics(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    hb_server_t *server = arg;
    hb_report_t rep;
    char *buf = render_start(server, res, &rep);
    if (buf == NULL)
        return;
    int n = hb_report_format_prometheus(&rep, "hongbao", buf, HB_METRICS_BUF);
    for (size_t i = 0; i < SERVER_SLOTS && n >= 0; i++) {
        unsigned k = server_slots[i].slot;
        int m = snprintf(
            buf + n, HB_METRICS_BUF - (size_t)n,
            "# HELP hongbao_%s_total %s, cumulative.\n# TYPE hongbao_%s_total counter\n"
            "hongbao_%s_total %llu\n# HELP hongbao_%s_per_second %s, in the report "
            "second.\n# TYPE hongbao_%s_per_second gauge\nhongbao_%s_per_second %llu\n",
            server_slots[i].name, server_slots[i].help, server_slots[i].name, server_slots[i].name,
            (unsigned long long)rep.cumulative[k], server_slots[i].name, server_slots[i].help,
            server_slots[i].name, server_slots[i].name, (unsigned long long)rep.per_second[k]);
        n = (m > 0 && (size_t)m < HB_METRICS_BUF - (size_t)n) ? n + m : -1;
    }
    if (n >= 0) {
        int m = snprintf(buf + n, HB_METRICS_BUF - (size_t)n,
                         "# HELP hongbao_users_online Users logged in now.\n"
                         "# TYPE hongbao_users_online gauge\nhongbao_users_online %zu\n"
                         "# HELP hongbao_connections Connections open now.\n"
                         "# TYPE hongbao_connections gauge\nhongbao_connections %zu\n"
                         "# HELP hongbao_envelopes_queued Shake envelopes waiting in buckets.\n"
                         "# TYPE hongbao_envelopes_queued gauge\nhongbao_envelopes_queued %zu\n",
                         hb_server_users_online(server), hb_server_connections(server),
                         hb_server_envelopes_queued(server));
        n = (m > 0 && (size_t)m < HB_METRICS_BUF - (size_t)n) ? n + m : -1;
    }
    if (n < 0)
        reply_text(res, 500, "metrics do not fit the buffer\n");
    else
        hb_http_respond(res, 200, "text/plain; version=0.0.4; charset=utf-8", buf, (size_t)n);
    free(buf);
}

static void route_stats(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    hb_server_t *server = arg;
    hb_report_t rep;
    char *buf = render_start(server, res, &rep);
    if (buf == NULL)
        return;
    int store_err = hb_server_store_error(server);
    int n = snprintf(
        buf, HB_METRICS_BUF,
        "{\"users_online\":%zu,\"connections\":%zu,\"envelopes_queued\":%zu,"
        "\"threads\":%u,\"sets\":%u,\"max_connections\":%u,"
        "\"store\":{\"journal\":%s,\"ok\":%s,\"error\":\"%s\"},",
        hb_server_users_online(server), hb_server_connections(server),
        hb_server_envelopes_queued(server), server->nthreads, server->nsets,
        server->max_connections, hb__store_local_journaled(&server->impl->store) ? "true" : "false",
        store_err == 0 ? "true" : "false", store_err == 0 ? "" : hb_err_name(store_err));
    for (size_t i = 0; i < SERVER_SLOTS; i++) {
        unsigned k = server_slots[i].slot;
        n += snprintf(buf + n, HB_METRICS_BUF - (size_t)n, "%s\"%s\":[%llu,%llu]",
                      i == 0 ? "\"server_counters\":{" : ",", server_slots[i].name,
                      (unsigned long long)rep.per_second[k], (unsigned long long)rep.cumulative[k]);
    }
    n += snprintf(buf + n, HB_METRICS_BUF - (size_t)n, "},\"report\":");
    int m = hb_report_format_json(&rep, buf + n, HB_METRICS_BUF - (size_t)n - 2);
    if (m < 0) {
        reply_text(res, 500, "stats do not fit the buffer\n");
    } else {
        n += m;
        buf[n++] = '}';
        buf[n++] = '\n';
        hb_http_respond(res, 200, "application/json", buf, (size_t)n);
    }
    free(buf);
}

int hb_server_mount_http(hb_server_t *server, hb_http_server_t *http)
{
    static const struct {
        const char *path;
        hb_http_handler_cb cb;
    } routes[] = {
        {"/yaohongbao", route_shake}, {"/shake-envelopes", route_shake},
        {"/fahongbao", route_send},   {"/send-envelopes", route_send},
        {"/metrics", route_metrics},  {"/stats", route_stats},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int r = hb_http_server_route(http, "GET", routes[i].path, routes[i].cb, server);
        if (r != 0)
            return r;
    }
    return 0;
}
