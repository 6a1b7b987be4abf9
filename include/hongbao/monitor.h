/* The monitor: accepts the 976-byte counter reports of any number of servers and clients over
 * TCP, on a libuv loop the caller owns, and hands them to its aggregate (hongbao/aggregate.h, the
 * core), which adds them up per second and reporter type, decides when a second is complete,
 * keeps a bounded history and renders it (one line a second, CSV rows, Prometheus text, JSON
 * series for the dashboard); serves /metrics and /api/series. hb-monitor is a thin consumer of
 * this API. */
#ifndef HONGBAO_MONITOR_H
#define HONGBAO_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hongbao/aggregate.h"
#include "hongbao/common.h"
#include "hongbao/counters.h"
#include "hongbao/http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults used for a zero option, and the bounds of each option. */
#define HB_MONITOR_DEFAULT_PORT          8002 /* the reference monitor's port */
#define HB_MONITOR_DEFAULT_MAX_REPORTERS HB_AGGREGATE_DEFAULT_MAX_REPORTERS
#define HB_MONITOR_MAX_REPORTERS         HB_AGGREGATE_MAX_REPORTERS
#define HB_MONITOR_DEFAULT_HISTORY_S     HB_AGGREGATE_DEFAULT_HISTORY_S
#define HB_MONITOR_MIN_HISTORY_S         HB_AGGREGATE_MIN_HISTORY_S
#define HB_MONITOR_MAX_HISTORY_S         HB_AGGREGATE_MAX_HISTORY_S
#define HB_MONITOR_DEFAULT_GRACE_MS      HB_AGGREGATE_DEFAULT_GRACE_MS
#define HB_MONITOR_DEFAULT_KNOWN_MS      HB_AGGREGATE_DEFAULT_KNOWN_MS
#define HB_MONITOR_DEFAULT_MAX_INSTANCES HB_AGGREGATE_DEFAULT_MAX_INSTANCES
#define HB_MONITOR_MAX_INSTANCES         HB_AGGREGATE_MAX_INSTANCES
/* A report whose second is further than this from the monitor's clock is garbage. */
#define HB_MONITOR_MAX_SKEW_S HB_AGGREGATE_MAX_SKEW_S
/* How often the loop re-checks the grace periods. */
#define HB_MONITOR_TICK_MS 100
/* Seconds /api/series returns when its "seconds" parameter is absent. */
#define HB_MONITOR_SERIES_DEFAULT_S 300

/* What a second's values are (sums, the cumulative rule, the maximum for the client's latency
 * percentiles, as the counter catalogue's hb_counter_combine says) is written at
 * hb_monitor_second_t, in hongbao/aggregate.h, with hb_monitor_status_t and hb_monitor_stats_t. */

typedef struct hb_monitor hb_monitor_t;

/* Called once per (second, type) when it is output, in ascending order of seconds per type (a
 * second whose first report arrives after later ones were output comes when due, out of order);
 * s is valid during the call only. Runs on the loop thread. It must not call hb_monitor_flush or
 * hb_monitor_close (anything else is fine). */
typedef void (*hb_monitor_second_cb)(hb_monitor_t *m, const hb_monitor_second_t *s, void *arg);

/* Called once every handle of the monitor is closed; m's memory may be freed from here on. */
typedef void (*hb_monitor_close_cb)(hb_monitor_t *m);

/* Options. Zero-initialise, set what you need; a zero field takes its default.
 *
 * Completeness. A second of a type is output as soon as every expected reporter of that type has
 * reported it or a later second (reporters send in order), or grace_ms after the first report
 * of that second and type arrived, whichever comes first. The expected reporters are the
 * connected ones that were heard from within the last known_ms: that sent a report of that type,
 * or connected and have sent nothing yet (their type is not known yet, so they count for both).
 * A reporter that disconnected is never waited for: it cannot send on that connection again, and
 * when it comes back it is a new reporter. A report that arrives for a (second, type) already
 * output is still added to the history (so /api/series shows it) and counted in stats.late. */
typedef struct hb_monitor_options {
    /* Reporter connections open at once; past it a connection is accepted and closed at once
     * (stats.connections_rejected). Default 1024, 1..HB_MONITOR_MAX_REPORTERS. */
    unsigned max_reporters;
    /* Seconds of history kept, a ring ending at the newest second reported. Default 3600,
     * HB_MONITOR_MIN_HISTORY_S..HB_MONITOR_MAX_HISTORY_S. About 2 KiB a second. */
    unsigned history_s;
    /* Grace period, ms. Default 2000. */
    unsigned grace_ms;
    /* How recently a reporter must have been heard from to be waited for, ms. Default 10000. */
    unsigned known_ms;
    /* Called for each second output (NULL: none). */
    hb_monitor_second_cb on_second;
    void *on_second_arg;
    /* Log lines (one line, no newline, valid during the call), on the loop thread: a reporter
     * closed for garbage, a connection rejected. NULL: nothing is logged. */
    hb_log_cb log;
    void *log_arg;
    /* The wall clock in Unix milliseconds, called on the loop thread; NULL means the system's
     * (uv_gettimeofday). Tests inject theirs and call hb_monitor_tick. */
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
    /* Names of the application slots the reporters fill (hongbao/counters.h; the same names the
     * server was given with hb_server_add_counter), shown in /metrics and /api/series beside the
     * catalogue's; NULL: none. Copied by init. */
    const hb_counter_names_t *names;
    /* Instances (reporting processes, each drawn apart: hongbao/aggregate.h, "Instances") tracked
     * at once; past it their reports still count in the totals and in the aggregate's
     * instances_untracked. Default 256, 1..HB_MONITOR_MAX_INSTANCES; about 35 KB each. A
     * reporter's instance is the address its reports name (hb_reporter_options_t.instance), else
     * its connection's peer address. */
    unsigned max_instances;
} hb_monitor_options_t;

/* The monitor. Caller-owned; initialise with hb_monitor_init, end with hb_monitor_close. Every
 * function taking an hb_monitor_t runs on the loop's thread only. */
struct hb_monitor {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop;
    hb_monitor_options_t opts; /* in effect, defaults filled in */
    hb_monitor_stats_t stats;  /* updated on the loop thread; read them there */
    /* private */
    struct hb_monitor_impl *impl;
};

/* Initialise m on loop with opts (NULL: all defaults) and allocate its history. Sets m->data to
 * NULL. Once this returned 0, hb_monitor_close must be called (listening or not). Returns 0,
 * UV_EINVAL (NULL loop or m, an option out of bounds), UV_ENOMEM, or an error of uv_timer_init;
 * on error nothing needs closing. */
HB_EXTERN int hb_monitor_init(uv_loop_t *loop, hb_monitor_t *m, const hb_monitor_options_t *opts);

/* Bind to host (an IPv4 or IPv6 literal; NULL means "127.0.0.1") and port (0: an ephemeral port,
 * see hb_monitor_port), start accepting reporters and start the grace-period timer. Returns 0,
 * UV_EINVAL (bad host or port, already listening, closing) or the bind/listen error
 * (UV_EADDRINUSE, UV_EACCES, ...), never printed. After an error the monitor can only be closed. */
HB_EXTERN int hb_monitor_listen(hb_monitor_t *m, const char *host, int port);

/* The port m is bound to (1..65535), or a negative error (UV_EBADF when not bound). */
HB_EXTERN int hb_monitor_port(const hb_monitor_t *m);

/* Register on http (a server on the same loop, which must outlive m's use of it): GET /metrics
 * (hb_monitor_format_metrics, text/plain; version=0.0.4) and GET /api/series?seconds=N
 * (hb_monitor_format_series, application/json; N in 1..history_s, default
 * HB_MONITOR_SERIES_DEFAULT_S, anything else answered 400). Returns 0 or an
 * hb_http_server_route error. Close http before or together with m. */
HB_EXTERN int hb_monitor_mount_http(hb_monitor_t *m, hb_http_server_t *http);

/* Output every (second, type) that is due now by the completeness rule (the timer does it every
 * HB_MONITOR_TICK_MS, and every report arrival does it too; tests call it with a fake clock). */
HB_EXTERN void hb_monitor_tick(hb_monitor_t *m);

/* Output now, marked INCOMPLETE unless already due, every (second, type) held and not yet output,
 * in ascending order. For exit: hb_monitor_close calls it too. */
HB_EXTERN void hb_monitor_flush(hb_monitor_t *m);

/* Copy the aggregate of (second, type) into *out. Returns 0, UV_ENOENT when the history holds no
 * report of that second and type, UV_EINVAL (NULL argument). */
HB_EXTERN int hb_monitor_get(const hb_monitor_t *m, uint64_t second, uint64_t type,
                             hb_monitor_second_t *out);

/* The oldest and newest seconds the history holds a report of (either type) into *oldest and
 * *newest. Returns 0, UV_ENOENT when it holds nothing, UV_EINVAL (NULL argument). */
HB_EXTERN int hb_monitor_range(const hb_monitor_t *m, uint64_t *oldest, uint64_t *newest);

/* The newest second of type output so far into *second: what /metrics shows. Returns 0, or
 * UV_ENOENT when none was output yet (or it left the history), UV_EINVAL (NULL argument). */
HB_EXTERN int hb_monitor_latest(const hb_monitor_t *m, uint64_t type, uint64_t *second);

/* The monitor's aggregate, to read (hb_aggregate_at, hb_aggregate_instance_get and the
 * renderers; ninstances and instances_untracked): valid from init until the close callback, on
 * the loop thread; NULL for NULL or a closed m. */
HB_EXTERN const hb_aggregate_t *hb_monitor_aggregate(const hb_monitor_t *m);

/* Flush (hb_monitor_flush), stop listening, close every reporter connection and the timer, free
 * the history, then call cb (may be NULL), always from the loop, never from inside this call;
 * only then may m be freed. A second call does nothing. */
HB_EXTERN void hb_monitor_close(hb_monitor_t *m, hb_monitor_close_cb cb);

/* Renderers: the aggregate's (hongbao/aggregate.h), with the monitor's statistics and clock. Each
 * writes a NUL-terminated string into buf[0..cap) and returns its length without the NUL, or
 * UV_ENOBUFS when it does not fit (buf then holds "" when cap > 0; nothing is written at or past
 * buf + cap), or UV_EINVAL (NULL s or m, or buf NULL with cap > 0). No allocation. */

/* hb_aggregate_format_line: the one-line summary of s for a terminal. */
#define HB_MONITOR_LINE_MAX HB_AGGREGATE_LINE_MAX
HB_EXTERN int hb_monitor_format_line(const hb_monitor_second_t *s, char *buf, size_t cap);

/* hb_aggregate_format_csv_header: the CSV header. */
HB_EXTERN int hb_monitor_format_csv_header(char *buf, size_t cap);

/* hb_aggregate_format_csv_row: one CSV row for s matching the header. */
#define HB_MONITOR_CSV_ROW_MAX HB_AGGREGATE_CSV_ROW_MAX
HB_EXTERN int hb_monitor_format_csv_row(const hb_monitor_second_t *s, char *buf, size_t cap);

/* hb_aggregate_format_metrics with m's statistics: what GET /metrics answers (its size grows with
 * the instances tracked: see HB_AGGREGATE_INSTANCE_METRICS_MAX). */
#define HB_MONITOR_METRICS_MAX HB_AGGREGATE_METRICS_MAX
HB_EXTERN int hb_monitor_format_metrics(const hb_monitor_t *m, char *buf, size_t cap);

/* hb_aggregate_format_series with m's statistics at m's clock: what GET /api/series answers. */
HB_EXTERN int hb_monitor_format_series(const hb_monitor_t *m, unsigned seconds, char *buf,
                                       size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_MONITOR_H */
