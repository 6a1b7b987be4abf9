/* The monitor's aggregation, pure: the counter reports of many servers and clients added up per
 * second and reporter type in a bounded history, the completeness rule that decides when a second
 * is output, and the renderers of what it holds (a line, CSV, Prometheus text, JSON series). No
 * socket, no loop, no clock: the caller hands in each report and the time. hongbao/monitor.h puts
 * it on a libuv loop with a listener and an HTTP endpoint; the types the two share, the monitor's
 * seconds and statistics (hb_monitor_*), are defined here. */
#ifndef HONGBAO_AGGREGATE_H
#define HONGBAO_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults used for a zero option, and the bounds of each option. */
#define HB_AGGREGATE_DEFAULT_MAX_REPORTERS 1024
#define HB_AGGREGATE_MAX_REPORTERS         65536
#define HB_AGGREGATE_DEFAULT_HISTORY_S     3600
#define HB_AGGREGATE_MIN_HISTORY_S         16
#define HB_AGGREGATE_MAX_HISTORY_S         86400
#define HB_AGGREGATE_DEFAULT_GRACE_MS      2000
#define HB_AGGREGATE_DEFAULT_KNOWN_MS      10000
/* A report whose second is further than this from the caller's clock is refused. */
#define HB_AGGREGATE_MAX_SKEW_S 86400
/* Instances (processes, see "Instances" below) tracked at once, and the seconds of each one's
 * series (at most history_s). */
#define HB_AGGREGATE_DEFAULT_MAX_INSTANCES 256
#define HB_AGGREGATE_MAX_INSTANCES         4096
#define HB_AGGREGATE_INSTANCE_HISTORY_S    600
/* Room for an instance's label ("10.0.0.2:7000", "[2001:db8::7]:7000"), NUL included. */
#define HB_AGGREGATE_LABEL_MAX 64

/* How a second came to be output.
 * COMPLETE:   every expected reporter had reported it (see hb_aggregate_options_t).
 * GRACE:      the grace period ran out first: some expected reporter had not reported it.
 * INCOMPLETE: output before either, by a flush (at exit) or because the history had to make room
 *             for newer seconds. */
typedef enum {
    HB_MONITOR_COMPLETE = 0,
    HB_MONITOR_GRACE = 1,
    HB_MONITOR_INCOMPLETE = 2
} hb_monitor_status_t;

/* One (second, type) of the aggregate. Slot i combines the reports by hb_counter_combine(i):
 * - HB_COUNTER_COMBINE_SUM: per_second is the sum of the reports' per_second values; cumulative
 *   is the sum over every reporter seen since the start of *its latest* cumulative values (a
 *   reporter that left keeps counting with its final totals), as of the latest report added;
 * - HB_COUNTER_COMBINE_MAX (the client's latency percentiles, 50..56, whatever the type): both
 *   take the maximum over the reports added (the worst process's percentile);
 * - HB_COUNTER_COMBINE_PER_HOST (the host's NIC: 7, 8, 9, 12): the reports are grouped by the
 *   host identity they carry (the cumulative value of HB_CTR_NIC_HOST; a report carrying 0 adds
 *   nothing to these slots). per_second is the sum over the hosts of the maximum over that host's
 *   reports of the second (every process of a host reads the same interface: counted once);
 *   cumulative is the sum over every host seen of the maximum over its reporters' latest
 *   cumulative values (a host that leaves keeps counting with its final totals). A report more
 *   than HB_AGGREGATE_HOST_WINDOW seconds older than the newest its host reported adds nothing
 *   to per_second (that host's second may have been counted already);
 * - HB_COUNTER_COMBINE_IDENTITY (HB_CTR_NIC_HOST): left 0. */
#define HB_AGGREGATE_HOST_WINDOW 16
typedef struct hb_monitor_second {
    uint64_t second;            /* the Unix second */
    uint64_t type;              /* HB_REPORTER_CLIENT or HB_REPORTER_SERVER */
    unsigned reports;           /* reports added into it */
    unsigned nic_hosts;         /* hosts whose NIC values were added into it (PER_HOST) */
    hb_monitor_status_t status; /* how it was output (meaningful once output) */
    int output;                 /* 1 once output */
    uint64_t per_second[HB_COUNTER_SLOTS];
    uint64_t cumulative[HB_COUNTER_SLOTS];
} hb_monitor_second_t;

/* A monitor's statistics: kept by hb_monitor_t (hongbao/monitor.h) and shown by the renderers
 * below. A caller of the aggregate alone counts them from the results of hb_aggregate_add and
 * the seconds output, or passes NULL to the renderers. */
typedef struct hb_monitor_stats {
    uint64_t connections_accepted; /* reporter connections accepted (rejected ones excluded) */
    uint64_t connections_rejected; /* over max_reporters: accepted and closed at once */
    uint64_t connections_open;     /* reporter connections open now */
    uint64_t reports;              /* reports accepted and added */
    uint64_t bad_reports; /* connections closed for garbage: a type other than 0/1, a second more
                             than HB_AGGREGATE_MAX_SKEW_S from the clock, a type change */
    uint64_t truncated;   /* connections that ended (EOF, error) in the middle of a report */
    uint64_t too_old;     /* reports for a second older than the history: ignored */
    uint64_t late;        /* reports for a (second, type) already output: kept, not re-output */
    uint64_t seconds_complete;   /* (second, type)s output COMPLETE */
    uint64_t seconds_grace;      /* ... GRACE */
    uint64_t seconds_incomplete; /* ... INCOMPLETE */
} hb_monitor_stats_t;

typedef struct hb_aggregate hb_aggregate_t;

/* Called once per (second, type) when it is output, in ascending order of seconds per type (a
 * second whose first report arrives after later ones were output comes when due, out of order);
 * s is valid during the call only. It must not call hb_aggregate_tick or hb_aggregate_flush
 * (they would do nothing) nor hb_aggregate_close. */
typedef void (*hb_aggregate_second_cb)(hb_aggregate_t *a, const hb_monitor_second_t *s, void *arg);

/* Options. Zero-initialise, set what you need; a zero field takes its default.
 *
 * Completeness. A second of a type is output as soon as every expected reporter of that type has
 * reported it or a later second (reporters send in order), or grace_ms after the first report of
 * that second and type was added, whichever comes first. The expected reporters are those joined
 * (hb_aggregate_join) and heard from within the last known_ms: that added a report of that type,
 * or joined and have added nothing yet (their type is not known yet, so they count for both). A
 * reporter that left (hb_aggregate_leave) is never waited for. */
typedef struct hb_aggregate_options {
    unsigned max_reporters; /* reporters joined at once; default 1024, 1..65536 */
    unsigned history_s;     /* seconds kept, a ring ending at the newest second added; default
                               3600, 16..86400; about 2 KiB a second */
    unsigned grace_ms;      /* default 2000 */
    unsigned known_ms;      /* default 10000 */
    hb_aggregate_second_cb on_second; /* NULL: nothing is called, seconds are still output */
    void *on_second_arg;
    /* Names of application slots (hongbao/counters.h), rendered by hb_aggregate_format_metrics and
     * hb_aggregate_format_series beside the catalogue's; NULL: none. Copied by init (opts.names
     * then points at the aggregate's copy). */
    const hb_counter_names_t *names;
    /* Instances tracked at once (see "Instances"); default 256, 1..4096. Each costs about 35 KB
     * (its HB_AGGREGATE_INSTANCE_HISTORY_S-second series), allocated when first seen. */
    unsigned max_instances;
} hb_aggregate_options_t;

/* One reporter: a process that sends reports, one after another, in order of seconds. Caller-
 * owned (e.g. inside a connection), joined to one aggregate at a time. */
typedef struct hb_aggregate_reporter {
    /* public */
    void *data;
    /* Where its reports come from ("127.0.0.1:51234", "[::1]:51234"), set by the caller (kept by
     * hb_aggregate_join, like data; "" if unknown): the label of its instance when its reports
     * carry no instance identity, and the address that completes one that carries a port alone. */
    char peer[HB_AGGREGATE_LABEL_MAX];
    /* read-only */
    int joined;           /* between hb_aggregate_join and hb_aggregate_leave */
    int reported;         /* a report of it was added: type and last_second hold */
    uint64_t type;        /* the type of its reports */
    uint64_t last_second; /* the newest second it reported */
    uint64_t heard_ms;    /* when it joined, then when its latest report was added */
    /* private */
    unsigned index;
    unsigned host;                  /* 1 + the index of its host (PER_HOST), 0 for none */
    unsigned instance;              /* 1 + the index of its instance, 0 for none */
    uint64_t instance_id;           /* the identity its reports carried when it was found */
    uint64_t serial;                /* which join of the aggregate it was (from 1) */
    uint64_t cum[HB_COUNTER_SLOTS]; /* its latest cumulative values */
} hb_aggregate_reporter_t;

/* The aggregate. Caller-owned; hb_aggregate_init, then hb_aggregate_close. Not thread-safe: one
 * thread at a time. */
struct hb_aggregate {
    /* public */
    void *data;
    /* read-only */
    hb_aggregate_options_t opts;         /* in effect, defaults filled in */
    hb_aggregate_reporter_t **reporters; /* the reporters joined, nreporters of them, any order */
    unsigned nreporters;
    unsigned ninstances;          /* instances tracked (hb_aggregate_instance_get) */
    uint64_t instances_untracked; /* reports added whose instance found no room in the table */
    /* private */
    struct hb_aggregate_entry *ring; /* history_s * 2 entries: [(second % history_s) * 2 + type] */
    int have_newest;
    uint64_t newest;  /* the newest second held, either type */
    uint64_t next[2]; /* per type: every held entry below it was output */
    int have_latest[2];
    uint64_t latest[2];                      /* per type: the newest second output */
    uint64_t total_cum[2][HB_COUNTER_SLOTS]; /* per type: sum of every reporter's latest (and
                                                of every host's, for the PER_HOST slots) */
    int emitting;                            /* inside on_second */
    struct hb_aggregate_host *hosts; /* the hosts of the PER_HOST slots: max_reporters of them */
    unsigned nhosts;
    hb_counter_names_t names;                /* opts.names, copied */
    struct hb_aggregate_instance *instances; /* max_instances of them, ninstances used */
    unsigned instance_window;                /* seconds of each instance's series */
    uint64_t joins;                          /* reporters ever joined */
};

/* Set a up with opts (NULL: all defaults) and allocate its history, reporter, host and instance
 * tables (at most max_reporters hosts: a host none of whose reporters is joined makes room for a
 * new one, its totals still counted; each instance's series is allocated when it is first seen).
 * Sets
 * a->data to NULL. Returns 0; HB_EINVAL (NULL a, an option out of bounds) or HB_ENOMEM, and then
 * nothing needs closing. */
HB_EXTERN int hb_aggregate_init(hb_aggregate_t *a, const hb_aggregate_options_t *opts);

/* Free what init allocated. Outputs nothing (flush first for that); the reporters still joined
 * are forgotten (their joined becomes 0). A second call does nothing. */
HB_EXTERN void hb_aggregate_close(hb_aggregate_t *a);

/* Join rep as a reporter heard from at now_ms: it is expected from now on. Rep must not be
 * joined already (here or elsewhere); its fields but data and peer are reset. Returns 0; HB_ENOBUFS
 * when max_reporters are joined already, HB_EINVAL (NULL argument). */
HB_EXTERN int hb_aggregate_join(hb_aggregate_t *a, hb_aggregate_reporter_t *rep, uint64_t now_ms);

/* Rep leaves: it is no longer expected, and its latest cumulative values keep counting. Nothing
 * is output here: call hb_aggregate_tick, as seconds waiting for rep may now be complete. Does
 * nothing for a reporter not joined. */
HB_EXTERN void hb_aggregate_leave(hb_aggregate_t *a, hb_aggregate_reporter_t *rep);

/* What hb_aggregate_add did with a report. The first three took it (rep's cumulative values and
 * newest second count from now on); the last two refused it and changed nothing. */
typedef enum {
    HB_AGGREGATE_ADDED = 0,       /* added to a second not output yet */
    HB_AGGREGATE_LATE = 1,        /* added to a second already output: kept, not output again */
    HB_AGGREGATE_TOO_OLD = 2,     /* its second is older than the history: not kept */
    HB_AGGREGATE_SKEWED = 3,      /* its second is more than HB_AGGREGATE_MAX_SKEW_S from now */
    HB_AGGREGATE_TYPE_CHANGED = 4 /* its type is not that of rep's earlier reports */
} hb_aggregate_result_t;

/* Add report r (a decoded report: hb_report_decode) of joined reporter rep, at now_ms. Outputs
 * only the seconds the history must drop to make room (INCOMPLETE when not due): call
 * hb_aggregate_tick afterwards for the seconds the report completed. Returns an
 * hb_aggregate_result_t, or HB_EINVAL (NULL argument, rep not joined, r->type neither client nor
 * server). */
HB_EXTERN int hb_aggregate_add(hb_aggregate_t *a, hb_aggregate_reporter_t *rep,
                               const hb_report_t *r, uint64_t now_ms);

/* Output every (second, type) due at now_ms by the completeness rule, in ascending order per
 * type. Does nothing inside on_second. */
HB_EXTERN void hb_aggregate_tick(hb_aggregate_t *a, uint64_t now_ms);

/* Output every (second, type) held and not output yet, in ascending order, marked INCOMPLETE
 * unless due at now_ms (at exit). Does nothing inside on_second. */
HB_EXTERN void hb_aggregate_flush(hb_aggregate_t *a, uint64_t now_ms);

/* The aggregate of (second, type) in the history, or NULL when it holds no report of them. Valid
 * until the next add, tick, flush or close. */
HB_EXTERN const hb_monitor_second_t *hb_aggregate_at(const hb_aggregate_t *a, uint64_t second,
                                                     uint64_t type);

/* Copy the aggregate of (second, type) into *out. Returns 0, HB_ENOENT when the history holds no
 * report of that second and type, HB_EINVAL (NULL argument). */
HB_EXTERN int hb_aggregate_get(const hb_aggregate_t *a, uint64_t second, uint64_t type,
                               hb_monitor_second_t *out);

/* The oldest and newest seconds the history holds a report of (either type). Returns 0,
 * HB_ENOENT when it holds nothing, HB_EINVAL (NULL argument). */
HB_EXTERN int hb_aggregate_range(const hb_aggregate_t *a, uint64_t *oldest, uint64_t *newest);

/* The newest second of type output so far, while the history holds it. Returns 0, HB_ENOENT when
 * none (or it left the history), HB_EINVAL (NULL argument). */
HB_EXTERN int hb_aggregate_latest(const hb_aggregate_t *a, uint64_t type, uint64_t *second);

/* ---- Instances ----
 *
 * Beside the per-type totals the aggregate keeps, for each instance (one process of a fleet: an
 * hb-server, a client process), a short series of a few headline figures, so that a monitor can
 * draw one line per instance. An instance is known by its type and its label:
 * - the identity its reports carry (HB_CTR_INSTANCE, hongbao/counters.h: the address it serves
 *   at, "10.0.0.2:7000"; its port with the reporter's peer address when the address could not be
 *   carried), so that a process restarted at the same address continues the same line, and two
 *   processes behind one address but serving at two ports are two lines;
 * - else the reporter's peer address (rep->peer: a new connection, a new line), else
 *   "reporter-<serial>".
 * An instance is live while a joined reporter's latest report names it; its line ends where its
 * reports end. The table holds max_instances; a new instance takes a free place, else that of the
 * instance not live whose latest report is oldest (its series is forgotten); when every place
 * holds a live instance, the report is still added to the totals and counted in
 * instances_untracked, and its instance is looked for again at its next report. */

/* The figures kept per instance and second: the sums over the instance's reports of that second
 * of the per-second values of HB_CTR_REQUESTS, HB_CTR_SHAKE_HANDED_OUT, HB_CTR_SHAKE_RECEIVED,
 * HB_CTR_CLAIMS_GRANTED, and the open connections (cumulative HB_CTR_CONN_OPENED minus
 * HB_CTR_CONN_CLOSED, as of the report). For every (second, type) output COMPLETE, the sums of the
 * first four over that type's instances are the type's per-second values (when no report went
 * untracked). */
enum {
    HB_INSTANCE_REQUESTS = 0,
    HB_INSTANCE_HANDED_OUT = 1,
    HB_INSTANCE_RECEIVED = 2,
    HB_INSTANCE_CLAIMS = 3,
    HB_INSTANCE_CONNECTIONS = 4
};
#define HB_INSTANCE_FIGURES 5

/* The name renderers give figure f: "requests", "shake_handed_out", "shake_received",
 * "claims_granted", "connections"; NULL for f >= HB_INSTANCE_FIGURES. */
HB_EXTERN const char *hb_instance_figure_name(unsigned f);

/* One instance, and what it reported for one second. */
typedef struct hb_instance_second {
    const char *label; /* valid until the next add, join, leave or close */
    uint64_t type;
    int live;         /* a joined reporter's latest report names it */
    uint64_t newest;  /* the newest second it reported */
    uint64_t second;  /* the second asked for */
    unsigned reports; /* its reports of that second; 0: none (v all 0) */
    uint64_t v[HB_INSTANCE_FIGURES];
} hb_instance_second_t;

/* Instance i (0..a->ninstances - 1) and its figures of second into *out. Returns 0; HB_ENOENT
 * when it holds no report of that second (out then has reports 0, the rest filled in); HB_EINVAL
 * (NULL argument, i out of range). */
HB_EXTERN int hb_aggregate_instance_get(const hb_aggregate_t *a, unsigned i, uint64_t second,
                                        hb_instance_second_t *out);

/* Renderers. Each writes a NUL-terminated string into buf[0..cap) and returns its length without
 * the NUL, or HB_ENOBUFS when it does not fit (buf then holds "" when cap > 0; nothing is written
 * at or past buf + cap), or HB_EINVAL (a NULL second or aggregate, or buf NULL with cap > 0). No
 * allocation. Slot names are the catalogue's (hb_counter_name_for). */

/* The one-line summary of s for a terminal, no trailing newline. A server line:
 *   "1700000000 server [2] req=1234 got=100 none=1000 overload=0 gen=100 out=100 send=3
 *    claims=9 amount=12345+600 conn=2000(+5)"
 * (reports added in brackets; gen: shake envelopes generated, out: handed out, send:
 * send-envelopes created, claims: claims granted, amount: shake + send-envelope amount issued,
 * conn: open connections (cumulative opened - closed) and opened this second). A client line:
 *   "1700000000 client [1] req=1234 replies=1234 env=100 amount=12345 claims=9 claimed=600
 *    lat_us p50=120 p99=900 max=2100"
 * When hosts' NIC values were added into s (nic_hosts > 0), either line goes on with
 * " nic_rx=2400 nic_tx=2400 hosts=1": packets received and transmitted that second, per host
 * (PER_HOST). A GRACE second ends in " (grace)", an INCOMPLETE one in " (incomplete)". Always
 * fits in HB_AGGREGATE_LINE_MAX. */
#define HB_AGGREGATE_LINE_MAX 512
HB_EXTERN int hb_aggregate_format_line(const hb_monitor_second_t *s, char *buf, size_t cap);

/* The CSV header, "\n"-terminated: second,type,status,reports, then for every slot of the
 * catalogue (named for either type, in slot order, but the IDENTITY one) its per-second column
 * <name>, then the same slots' cumulative columns <name>_total, except the slots combined by
 * maximum. */
HB_EXTERN int hb_aggregate_format_csv_header(char *buf, size_t cap);

/* One CSV row for s matching the header, "\n"-terminated: type is "server" or "client", status
 * "complete", "grace" or "incomplete"; a slot the type does not fill is written as 0. Always fits
 * in HB_AGGREGATE_CSV_ROW_MAX. */
#define HB_AGGREGATE_CSV_ROW_MAX 4096
HB_EXTERN int hb_aggregate_format_csv_row(const hb_monitor_second_t *s, char *buf, size_t cap);

/* One line of instance is for a terminal, no trailing newline, after its type's line:
 *   "1700000000 server 10.0.0.2:7000 [1] req=1234 out=100 claims=9 conn=2000"
 *   "1700000000 client 127.0.0.1:51234 [1] req=1234 env=100 claims=9 conn=2000"
 * (out: shake envelopes handed out, env: received). Always fits in HB_AGGREGATE_LINE_MAX. */
HB_EXTERN int hb_aggregate_format_instance_line(const hb_instance_second_t *is, char *buf,
                                                size_t cap);

/* The per-instance CSV: the header "second,type,instance,reports," then the figures' names,
 * "\n"-terminated; one row per instance and second, "\n"-terminated. A row always fits in
 * HB_AGGREGATE_LINE_MAX. */
HB_EXTERN int hb_aggregate_format_instance_csv_header(char *buf, size_t cap);
HB_EXTERN int hb_aggregate_format_instance_csv_row(const hb_instance_second_t *is, char *buf,
                                                   size_t cap);

/* Prometheus text exposition (0.0.4) of the latest output second of each type
 * (hb_aggregate_latest), with the prefixes hongbao_server_ and hongbao_client_: for each slot the
 * type fills (but the IDENTITY one), a counter <prefix><name>_total (cumulative) and a gauge
 * <prefix><name>_per_second, except the slots combined by maximum, which get one gauge
 * <prefix><name> (that second's value; the latency slots, in microseconds, are shown in seconds as
 * Prometheus wants its base units: <prefix>latency_p99_seconds); plus the gauges
 * <prefix>report_second, <prefix>reports and <prefix>nic_hosts; then, for each live instance of
 * the type that reported that second, gauges with the label instance="<label>":
 * <prefix>instance_<figure>_per_second (requests, shake_handed_out, shake_received,
 * claims_granted) and <prefix>instance_connections. Then, unless stats is NULL, the monitor's own
 * hongbao_monitor_* (reporters connected, reports, bad reports, ..., instances tracked, reports
 * untracked). A type with no second output yet has no series. Always fits in
 * HB_AGGREGATE_METRICS_MAX + a->ninstances * HB_AGGREGATE_INSTANCE_METRICS_MAX. */
#define HB_AGGREGATE_METRICS_MAX          (64 * 1024)
#define HB_AGGREGATE_INSTANCE_METRICS_MAX 1024
HB_EXTERN int hb_aggregate_format_metrics(const hb_aggregate_t *a, const hb_monitor_stats_t *stats,
                                          char *buf, size_t cap);

/* The JSON of a monitor's /api/series at now_s: the last `seconds` seconds ending at the newest
 * second output (of either type), no further back than the oldest second held
 * (hb_aggregate_range):
 *   {"now":N,"first":N,"last":N,"seconds":[N,...],
 *    "server":{"reports":[..],"status":[..],"nic_hosts":[..],"per_second":{"<name>":[..],...},
 *              "cumulative":{"<name>":[..],...}},
 *    "client":{...same shape, the client's names...},
 *    "instances":[{"label":"10.0.0.2:7000","type":"server","live":true,"reports":[..],
 *                  "requests":[..],"shake_handed_out":[..],"shake_received":[..],
 *                  "claims_granted":[..],"connections":[..]},...],
 *    "instance_table":{"tracked":N,"max":N,"untracked_reports":N},
 *    "monitor":{"reporters":N,"reports":N,"bad_reports":N,"truncated":N,"late":N,"too_old":N}}
 * ("monitor" only when stats is not NULL). Every array has one element per second of "seconds"
 * (oldest first); a (second, type) not output (no report, or still waiting) is null in every
 * array of that type, and in its instances'; status is 0 complete, 1 grace, 2 incomplete;
 * "cumulative" leaves out the slots combined by maximum. "instances" lists, in table order, the
 * instances with a report in those seconds (null where an instance has none: where its line
 * starts and ends). With nothing output yet, first and last are null and every array is empty.
 * seconds is clamped to 1..history_s. The size grows with seconds: about seconds x (800 + 60 per
 * instance) bytes for realistic values. */
HB_EXTERN int hb_aggregate_format_series(const hb_aggregate_t *a, const hb_monitor_stats_t *stats,
                                         uint64_t now_s, unsigned seconds, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_AGGREGATE_H */
