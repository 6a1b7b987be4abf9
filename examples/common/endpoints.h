/* HTTP routes the example programs share. */
#ifndef HB_EXAMPLES_ENDPOINTS_H
#define HB_EXAMPLES_ENDPOINTS_H

#include <hongbao.h>

/* Route GET /http-stats on http: the HTTP server's own counters (srv->stats) as one JSON object,
 * e.g. for a test to see that connections a peer dropped were closed. Returns 0 or an
 * hb_http_server_route error. */
int endpoints_mount_http_stats(hb_http_server_t *http);

#endif /* HB_EXAMPLES_ENDPOINTS_H */
