/* The server's control routes (hb_server_mount_http: shake and send-envelope generation,
 * /metrics, /stats), the counters rendered with the catalogue's names. Control loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb_counters_int.h"
#include "hb_server_int.h"

/* ---- control routes
 * ------------------------------------------------------------------------------------ */

#define HB_METRICS_BUF                                                                             \
    65536 /* /metrics is about 17 KB; every value and name at its longest, under 32 KB */

static int want_u64(const hb_http_request_t *req, hb_http_response_t *res, const char *name,
                    uint64_t min, uint64_t max, uint64_t *out)
{
    int r = hb_query_u64(req->query, req->query_len, name, min, max, out);
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
    unsigned n = server->impl->opts.send_recipients;
    if (max < min || max - min < n - 1) {
        char why[128];
        snprintf(why, sizeof why,
                 "parameters 'min' and 'max': need max >= min + %u (%u distinct recipients)\n",
                 n - 1, n);
        reply_text(res, 400, why);
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
    hb__text_t o;
    hb__text_init(&o, buf, HB_METRICS_BUF);
    hb__report_prometheus(&o, &rep, "hongbao", true, &server->impl->counter_names);
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"users_online", "Users logged in now."},
        {"connections", "Connections open now."},
        {"envelopes_queued", "Shake envelopes waiting in buckets."},
    };
    const uint64_t now[] = {hb_server_users_online(server), hb_server_connections(server),
                            hb_server_envelopes_queued(server)};
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        hb__prom_family_t f = {
            .name = {"hongbao_", gauges[i].name}, .help = {gauges[i].help}, .type = "gauge"};
        hb__prom_write(&o, &f, &(hb__prom_sample_t){NULL, now[i]}, 1);
    }
    int n = hb__text_finish(&o);
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
    hb__text_t o;
    hb__text_init(&o, buf, HB_METRICS_BUF);
    hb__text_fmt(&o,
                 "{\"users_online\":%zu,\"connections\":%zu,\"envelopes_queued\":%zu,"
                 "\"threads\":%u,\"sets\":%u,\"max_connections\":%u,"
                 "\"store\":{\"journal\":%s,\"ok\":%s,\"error\":\"%s\"},",
                 hb_server_users_online(server), hb_server_connections(server),
                 hb_server_envelopes_queued(server), server->nthreads, server->nsets,
                 server->max_connections,
                 server->impl->store.ops->durable(&server->impl->store) ? "true" : "false",
                 store_err == 0 ? "true" : "false", store_err == 0 ? "" : hb_err_name(store_err));
    /* Every slot the server fills, by name: the reference's, its own, the application's. */
    hb__text_str(&o, "\"counters\":");
    hb__report_json(&o, &rep, true, &server->impl->counter_names);
    hb__text_str(&o, "}\n");
    int n = hb__text_finish(&o);
    if (n < 0)
        reply_text(res, 500, "stats do not fit the buffer\n");
    else
        hb_http_respond(res, 200, "application/json", buf, (size_t)n);
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
