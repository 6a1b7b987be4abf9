/* HTTP routes the example programs share: the HTTP server's own counters. */
#include "endpoints.h"

#include <stdio.h>

static void route_http_stats(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)arg;
    const hb_http_stats_t *s = &req->server->stats;
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "{\"requests\":%llu,\"responses_2xx\":%llu,\"responses_3xx\":%llu,"
                     "\"responses_4xx\":%llu,\"responses_5xx\":%llu,\"bad_requests\":%llu,"
                     "\"too_large\":%llu,\"unauthorized\":%llu,\"connections_accepted\":%llu,"
                     "\"connections_rejected\":%llu,\"idle_timeouts\":%llu,"
                     "\"connections_open\":%llu}\n",
                     (unsigned long long)s->requests, (unsigned long long)s->responses_2xx,
                     (unsigned long long)s->responses_3xx, (unsigned long long)s->responses_4xx,
                     (unsigned long long)s->responses_5xx, (unsigned long long)s->bad_requests,
                     (unsigned long long)s->too_large, (unsigned long long)s->unauthorized,
                     (unsigned long long)s->connections_accepted,
                     (unsigned long long)s->connections_rejected,
                     (unsigned long long)s->idle_timeouts, (unsigned long long)s->connections_open);
    hb_http_respond(res, 200, "application/json", buf, (size_t)n);
}

int endpoints_mount_http_stats(hb_http_server_t *http)
{
    return hb_http_server_route(http, "GET", "/http-stats", route_http_stats, NULL);
}
