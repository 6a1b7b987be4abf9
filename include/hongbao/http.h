/* A small HTTP/1.1 server for control endpoints (/yaohongbao, /qps, /metrics, ...) on a libuv
 * loop the caller owns: exact-path routes, synchronous handlers, keep-alive and pipelining,
 * bounded request size, plus query-string helpers that answer 400 with a clear message. */
#ifndef HONGBAO_HTTP_H
#define HONGBAO_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hongbao/common.h"
#include "hongbao/query.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults used for a zero option. */
#define HB_HTTP_DEFAULT_MAX_REQUEST_BYTES 8192
#define HB_HTTP_DEFAULT_MAX_CONNECTIONS   64
#define HB_HTTP_DEFAULT_IDLE_TIMEOUT_MS   30000
/* Bounds of max_request_bytes. */
#define HB_HTTP_MIN_REQUEST_BYTES 256
#define HB_HTTP_MAX_REQUEST_BYTES (64u * 1024 * 1024)
/* Routes a server holds; hb_http_server_route returns UV_ENOBUFS past it. */
#define HB_HTTP_MAX_ROUTES 32
/* Longest route method and path, in bytes (UV_ENAMETOOLONG past them). */
#define HB_HTTP_ROUTE_METHOD_MAX 15
#define HB_HTTP_ROUTE_PATH_MAX   127
/* Header fields a request may carry; more is answered 431 and the connection closed. */
#define HB_HTTP_MAX_HEADERS 32
/* Bytes of extra response header lines ("Name: value\r\n") hb_http_response_header may add. */
#define HB_HTTP_RESPONSE_HEADERS_MAX 1024

typedef struct hb_http_server hb_http_server_t;
typedef struct hb_http_request hb_http_request_t;
/* Opaque: a handler's way to answer the request it was given. */
typedef struct hb_http_response hb_http_response_t;

/* Server options. Zero-initialise, set what you need; a zero field takes its default. */
typedef struct hb_http_options {
    /* Largest request, as bytes on the wire (request line, headers, body, chunk framing).
     * Each connection gets a buffer of this size at accept. A larger request is answered 413
     * and its connection closed. Default 8 KiB; 256 B .. 64 MiB. */
    size_t max_request_bytes;
    /* Connections open at once. Past it a new connection is accepted and closed at once, and
     * counted in stats.connections_rejected. Default 64. */
    unsigned max_connections;
    /* A connection with no bytes received for this long is closed (also one that leaves its
     * responses unread that long: reading stops while they queue). Default 30 s. */
    uint64_t idle_timeout_ms;
    /* When set (1..HB_HTTP_TOKEN_MAX bytes), every request must carry the header
     * "Authorization: Bearer <token>"; others are answered 401. Copied at init. NULL: none.
     * "" is refused (UV_EINVAL): an empty token would authenticate nobody, and taking it as "none"
     * would silently serve a port meant to be protected (an unset shell variable, say). */
    const char *bearer_token;
    /* Log lines (one line, no trailing newline, valid during the call), on the loop thread:
     * connections refused for lack of descriptors or past max_connections, at most one line a
     * second with how many since the last. NULL: nothing is logged (stats still count). */
    hb_log_cb log;
    void *log_arg;
} hb_http_options_t;

#define HB_HTTP_TOKEN_MAX 127

/* Counters of one server, updated on the loop thread. Read them on that thread. */
typedef struct hb_http_stats {
    uint64_t requests; /* complete requests received, routed or not (404, 405) */
    /* Final responses sent, by status class, the library's own (400, 404, 405, 413, 431, 500)
     * included; "100 Continue" is not counted. */
    uint64_t responses_2xx;
    uint64_t responses_3xx;
    uint64_t responses_4xx;
    uint64_t responses_5xx;
    uint64_t bad_requests;         /* malformed requests: answered 400 and closed */
    uint64_t too_large;            /* answered 413 (too many bytes) or 431 (too many headers) */
    uint64_t connections_accepted; /* connections served (rejected ones not included) */
    uint64_t connections_rejected; /* over max_connections: accepted and closed at once */
    uint64_t idle_timeouts;        /* connections closed for idleness */
    uint64_t connections_open;     /* connections open now */
    uint64_t unauthorized;         /* requests answered 401: missing or wrong bearer token */
} hb_http_stats_t;

/* A handler: answer req through res with hb_http_respond before returning (a handler that does
 * not gets a 500 sent for it). req and res are valid only during the call. It runs on the
 * loop thread; arg is the one given to hb_http_server_route. */
typedef void (*hb_http_handler_cb)(const hb_http_request_t *req, hb_http_response_t *res,
                                   void *arg);

/* Called once every handle of the server is closed; srv's memory may be freed from here on. */
typedef void (*hb_http_close_cb)(hb_http_server_t *srv);

/* The request a handler sees. Read-only; the strings point into the connection's buffer. */
struct hb_http_request {
    /* read-only */
    hb_http_server_t *server;
    const char *method; /* "GET", "POST", ...: static, NUL-terminated */
    const char *path;   /* "/qps": raw (not percent-decoded), NUL-terminated */
    size_t path_len;
    const char *query; /* "qps=100&sum=5" without '?', raw, NUL-terminated; "" when absent */
    size_t query_len;
    const char *body; /* body_len bytes, chunked bodies de-chunked; NOT NUL-terminated */
    size_t body_len;
    unsigned short http_major;
    unsigned short http_minor;
    /* private */
    struct hb_http_conn *conn;
};

/* private: a route table entry. */
struct hb_http_route {
    char method[HB_HTTP_ROUTE_METHOD_MAX + 1]; /* "" = any method */
    char path[HB_HTTP_ROUTE_PATH_MAX + 1];
    hb_http_handler_cb cb;
    void *arg;
};

/* The server. Caller-owned; initialise with hb_http_server_init, end with hb_http_server_close.
 * Every function below runs on the loop's thread only. */
struct hb_http_server {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop;
    hb_http_stats_t stats;
    hb_http_options_t opts; /* the options in effect, defaults filled in */
    /* private */
    struct hb_http_listen *listen; /* the listening socket (lib/hb_http.c) */
    struct hb_http_route routes[HB_HTTP_MAX_ROUTES];
    unsigned nroutes;
    struct hb_http_conn *conns; /* open connections, a doubly linked list */
    unsigned handles;           /* handles initialised and not yet closed */
    int listening;
    int closing;
    uint64_t refused_log_ms;   /* no refusal is logged before this (loop clock) */
    uint64_t refused_unlogged; /* refusals since the last line */
    hb_http_close_cb close_cb;
    char token[HB_HTTP_TOKEN_MAX + 1];
};

/* Whether host is a loopback address literal (127.0.0.0/8 or ::1): what may be served without a
 * bearer token. */
HB_EXTERN int hb_http_is_loopback(const char *host);

/* Initialise srv on loop with opts (NULL: all defaults). Allocates the listening side, so once
 * this returned 0, hb_http_server_close must be called (even if listen is never called or
 * fails). Returns 0, or UV_EINVAL (NULL argument, max_request_bytes out of bounds, a bearer token
 * that is empty, longer than HB_HTTP_TOKEN_MAX or with CR, LF or spaces) or UV_ENOMEM; on error
 * nothing needs closing. */
HB_EXTERN int hb_http_server_init(uv_loop_t *loop, hb_http_server_t *srv,
                                  const hb_http_options_t *opts);

/* Bind to host (an IPv4 or IPv6 literal; NULL means "0.0.0.0") and port (0: an ephemeral port,
 * see hb_http_server_port) and start accepting. The port is this server's alone (no
 * SO_REUSEPORT). Returns 0, UV_EINVAL (bad host or port, or already listening), or the
 * bind/listen error (UV_EADDRINUSE, UV_EACCES, ...), never printed. After an error the server can
 * only be closed. */
HB_EXTERN int hb_http_server_listen(hb_http_server_t *srv, const char *host, int port);

/* The port srv is bound to (1..65535), or a negative error (UV_EBADF when not bound). */
HB_EXTERN int hb_http_server_port(const hb_http_server_t *srv);

/* Route requests whose path is exactly path ("/qps"; the query is not part of it) and whose
 * method is method ("GET", case-sensitive; NULL: any method) to cb(req, res, arg). Both strings
 * are copied. The first registered route that matches wins. A path no route has is answered 404;
 * a path routed only for other methods is answered 405 with an Allow header. Returns 0,
 * UV_EINVAL (NULL cb or path, path not starting with '/', empty method), UV_ENAMETOOLONG (method
 * or path too long), UV_EEXIST (same method and path already routed), UV_ENOBUFS (table full). */
HB_EXTERN int hb_http_server_route(hb_http_server_t *srv, const char *method, const char *path,
                                   hb_http_handler_cb cb, void *arg);

/* Stop listening and close every connection at once (responses not yet written are dropped).
 * cb (may be NULL) runs once all the server's handles are closed, always from the loop, never
 * from inside this call; only then may srv be freed. May be called from a handler. A second
 * call does nothing. */
HB_EXTERN void hb_http_server_close(hb_http_server_t *srv, hb_http_close_cb cb);

/* The value of req's first header field called name (ASCII case-insensitive), NUL-terminated,
 * surrounding whitespace removed; "" for an empty value; NULL when absent. Valid during the
 * handler only. */
HB_EXTERN const char *hb_http_request_header(const hb_http_request_t *req, const char *name);

/* Add the header line "name: value" to the response res will send. Call before hb_http_respond.
 * Returns 0, UV_EINVAL (name not an HTTP token, value with CR or LF, or a field the library
 * sets itself: Content-Length, Connection, Transfer-Encoding), UV_EALREADY (already responded),
 * UV_ENOBUFS (more than HB_HTTP_RESPONSE_HEADERS_MAX bytes of added headers). */
HB_EXTERN int hb_http_response_header(hb_http_response_t *res, const char *name, const char *value);

/* Answer the request: status (200..599), Content-Type content_type (NULL: none), and len bytes
 * of body, which are copied (body may be NULL when len is 0). Content-Length and Connection
 * (keep-alive or close) are set by the library; a HEAD request gets the headers only. Responses
 * leave in request order. One call per request. The write never raises SIGPIPE: a peer that has
 * gone shows as an error. Returns 0, UV_EINVAL (status out of range, content_type with CR or LF,
 * a body with status 204 or 304, len above INT_MAX), UV_EALREADY (already responded),
 * UV_ECANCELED (the connection or server is closing: nothing sent), or UV_ENOMEM or the send
 * error (UV_EPIPE, UV_ECONNRESET, ...: the connection is then closed). */
HB_EXTERN int hb_http_respond(hb_http_response_t *res, int status, const char *content_type,
                              const void *body, size_t len);

/* Answer 400, text/plain, with one line naming the parameter and what is wrong with it, by err:
 *   UV_ENOENT  "parameter 'qps': missing"
 *   UV_EINVAL  "parameter 'qps': not a non-negative integer"
 *   HB_ERANGE  "parameter 'qps': out of range"
 *   other      "parameter 'qps': invalid (<hb_strerror(err)>)"
 * Returns what hb_http_respond returns. */
HB_EXTERN int hb_http_bad_param(hb_http_response_t *res, const char *name, int err);

/* As hb_http_bad_param, but HB_ERANGE reads "parameter 'qps': out of range [min, max]": pass the
 * bounds given to hb_query_u64. */
HB_EXTERN int hb_http_bad_param_range(hb_http_response_t *res, const char *name, int err,
                                      uint64_t min, uint64_t max);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_HTTP_H */
