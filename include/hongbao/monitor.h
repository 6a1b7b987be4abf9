/* The monitor: accepts the 976-byte counter reports of any number of servers and clients over
 * TCP, on a libuv loop the caller owns, adds them up per second and reporter type, decides when a
 * second is complete, keeps a bounded history and renders it (one line a second, CSV rows,
 * Prometheus text, JSON series for the dashboard). hb-monitor is a thin consumer of this API. */
#ifndef HONGBAO_MONITOR_H
#define HONGBAO_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"
#include "hongbao/http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults used for a zero option, and the bounds of each option. */
#define HB_MONITOR_DEFAULT_PORT          8002 /* the reference monitor's port */
#define HB_MONITOR_DEFAULT_MAX_REPORTERS 1024
#define HB_MONITOR_MAX_REPORTERS         65536
#define HB_MONITOR_DEFAULT_HISTORY_S     3600
#define HB_MONITOR_MIN_HISTORY_S         16
#define HB_MONITOR_MAX_HISTORY_S         86400
#define HB_MONITOR_DEFAULT_GRACE_MS      2000
#define HB_MONITOR_DEFAULT_KNOWN_MS      10000
/* A report whose second is further than this from the monitor's clock is garbage. */
#define HB_MONITOR_MAX_SKEW_S 86400
/* How often the loop re-checks the grace periods. */
#define HB_MONITOR_TICK_MS 100
/* Seconds /api/series returns when its "seconds" parameter is absent. */
#define HB_MONITOR_SERIES_DEFAULT_S 300

/* Aggregation. For each (second, type) the monitor adds up, slot by slot, the per_second values
 * of every report of that second and type, and sums the cumulative values as "each reporter's
 * latest cumulative, summed over every reporter seen since start" (a reporter that left keeps
 * counting with its final totals). EXCEPT the slots HB_MONITOR_MAX_SLOT_FIRST..LAST (50..56):
 * the client's latency percentiles, HB_CTR_LAT_P50, P90, P99, P999, MAX, CLAIM_P50, CLAIM_P99
 * in hongbao/client.h, in microseconds. A sum of percentiles means nothing, so for these slots
 * (whatever the reporter type) both per_second and cumulative take the maximum over the
 * reporters: the worst process's percentile, an upper bound of the fleet's. */
#define HB_MONITOR_MAX_SLOT_FIRST 50
#define HB_MONITOR_MAX_SLOT_LAST  56

/* Whether slot idx is combined by maximum (1) or by sum (0). */
HB_EXTERN int hb_monitor_slot_is_max(unsigned idx);

/* The snake_case name of slot idx for reporter type type, static, or NULL when that type does not
 * use the slot: for servers, hb_server_counter_name (the reference's names and the server's own
 * 40..49); for clients, hb_counter_name plus "latency_p50_us", "latency_p90_us",
 * "latency_p99_us", "latency_p999_us", "latency_max_us", "claim_latency_p50_us",
 * "claim_latency_p99_us" (50..56) and "send_missed" (57). Unnamed slots are still aggregated and
 * kept, but not rendered. NULL for an unknown type or idx >= HB_COUNTER_SLOTS. */
HB_EXTERN const char *hb_monitor_slot_name(uint64_t type, unsigned idx);

/* How a second came to be output.
 * COMPLETE:   every expected reporter had reported it (see hb_monitor_options_t).
 * GRACE:      the grace period ran out first: some expected reporter had not reported it.
 * INCOMPLETE: output before either, by hb_monitor_flush (at exit) or because the history had
 *             to make room for newer seconds. */
typedef enum {
    HB_MONITOR_COMPLETE = 0,
    HB_MONITOR_GRACE = 1,
    HB_MONITOR_INCOMPLETE = 2
} hb_monitor_status_t;

/* One (second, type) of the aggregate. */
typedef struct hb_monitor_second {
    uint64_t second;            /* the Unix second */
    uint64_t type;              /* HB_REPORTER_CLIENT or HB_REPORTER_SERVER */
    unsigned reports;           /* reports added into it */
    hb_monitor_status_t status; /* how it was output (meaningful once output) */
    int output;                 /* 1 once handed to on_second */
    uint64_t per_second[HB_COUNTER_SLOTS];
    uint64_t cumulative[HB_COUNTER_SLOTS];
} hb_monitor_second_t;

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
    void (*log)(void *arg, const char *line);
    void *log_arg;
    /* The wall clock in Unix milliseconds, called on the loop thread; NULL means the system's
     * (uv_gettimeofday). Tests inject theirs and call hb_monitor_tick. */
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
} hb_monitor_options_t;

/* Counters of one monitor, updated on the loop thread; read them there. */
typedef struct hb_monitor_stats {
    uint64_t connections_accepted; /* reporter connections accepted (rejected ones excluded) */
    uint64_t connections_rejected; /* over max_reporters: accepted and closed at once */
    uint64_t connections_open;     /* reporter connections open now */
    uint64_t reports;              /* reports accepted and added */
    uint64_t bad_reports; /* connections closed for garbage: a type other than 0/1, a second more
                             than HB_MONITOR_MAX_SKEW_S from the clock, a type change */
    uint64_t truncated;   /* connections that ended (EOF, error) in the middle of a report */
    uint64_t too_old;     /* reports for a second older than the history: ignored */
    uint64_t late;        /* reports for a (second, type) already output: kept, not re-output */
    uint64_t seconds_complete;   /* (second, type)s output COMPLETE */
    uint64_t seconds_grace;      /* ... GRACE */
    uint64_t seconds_incomplete; /* ... INCOMPLETE */
} hb_monitor_stats_t;

/* The monitor. Caller-owned; initialise with hb_monitor_init, end with hb_monitor_close. Every
 * function taking an hb_monitor_t runs on the loop's thread only. */
struct hb_monitor {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop;
    hb_monitor_options_t opts; /* in effect, defaults filled in */
    hb_monitor_stats_t stats;
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

/* Flush (hb_monitor_flush), stop listening, close every reporter connection and the timer, free
 * the history, then call cb (may be NULL), always from the loop, never from inside this call;
 * only then may m be freed. A second call does nothing. */
HB_EXTERN void hb_monitor_close(hb_monitor_t *m, hb_monitor_close_cb cb);

/* Renderers. Each writes a NUL-terminated string into buf[0..cap) and returns its length without
 * the NUL, or UV_ENOBUFS when it does not fit (buf then holds "" when cap > 0; nothing is written
 * at or past buf + cap), or UV_EINVAL (NULL s or m, or buf NULL with cap > 0). No allocation. */

/* The one-line summary of s for a terminal, no trailing newline. A server line:
 *   "1700000000 server [2] req=1234 got=100 none=1000 overload=0 gen=100 out=100 send=3
 *    claims=9 amount=12345+600 conn=2000(+5)"
 * (reports added in brackets; gen: shake envelopes generated, out: handed out, send:
 * send-envelopes created, claims: claims granted, amount: shake + send-envelope amount issued,
 * conn: open connections (cumulative opened - closed) and opened this second). A client line:
 *   "1700000000 client [1] req=1234 replies=1234 env=100 amount=12345 claims=9 claimed=600
 *    lat_us p50=120 p99=900 max=2100"
 * A GRACE second ends in " (grace)", an INCOMPLETE one in " (incomplete)". Always fits in
 * HB_MONITOR_LINE_MAX. */
#define HB_MONITOR_LINE_MAX 512
HB_EXTERN int hb_monitor_format_line(const hb_monitor_second_t *s, char *buf, size_t cap);

/* The CSV header, "\n"-terminated: second,type,status,reports, then for every slot named for
 * either type (hb_monitor_slot_name, in slot order) its per-second column <name>, then the same
 * slots' cumulative columns <name>_total. */
HB_EXTERN int hb_monitor_format_csv_header(char *buf, size_t cap);

/* One CSV row for s matching the header, "\n"-terminated: type is "server" or "client", status
 * "complete", "grace" or "incomplete"; a slot the type does not name is written as 0. Always fits
 * in HB_MONITOR_CSV_ROW_MAX. */
#define HB_MONITOR_CSV_ROW_MAX 4096
HB_EXTERN int hb_monitor_format_csv_row(const hb_monitor_second_t *s, char *buf, size_t cap);

/* Prometheus text exposition (0.0.4) of the latest output second of each type (see
 * hb_monitor_latest), with the prefixes hongbao_server_ and hongbao_client_: for each named slot
 * a counter <prefix><name>_total (cumulative) and a gauge <prefix><name>_per_second, except the
 * maximum slots, which get one gauge <prefix><name> (that second's value); plus the gauges
 * <prefix>report_second and <prefix>reports, and the monitor's own hongbao_monitor_* counters
 * (reporters connected, reports, bad reports, ...). A type with no second output yet has no
 * series. Always fits in HB_MONITOR_METRICS_MAX. */
#define HB_MONITOR_METRICS_MAX (64 * 1024)
HB_EXTERN int hb_monitor_format_metrics(const hb_monitor_t *m, char *buf, size_t cap);

/* The JSON of /api/series: the last `seconds` seconds ending at the newest second output (of
 * either type), no further back than the oldest second the history holds (hb_monitor_range):
 *   {"now":N,"first":N,"last":N,"seconds":[N,...],
 *    "server":{"reports":[..],"status":[..],"per_second":{"<name>":[..],...},
 *              "cumulative":{"<name>":[..],...}},
 *    "client":{...same shape, the client's names...},
 *    "monitor":{"reporters":N,"reports":N,"bad_reports":N,"truncated":N,"late":N,"too_old":N}}
 * Every array has one element per second of "seconds" (oldest first); a (second, type) not
 * output (no report, or still waiting) is null in every array of that type; status is 0
 * complete, 1 grace, 2 incomplete. With nothing output yet, first and last are null and every
 * array is empty. seconds is clamped to 1..history_s. The size grows with seconds: about
 * seconds x 800 bytes for realistic values. */
HB_EXTERN int hb_monitor_format_series(const hb_monitor_t *m, unsigned seconds, char *buf,
                                       size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_MONITOR_H */
