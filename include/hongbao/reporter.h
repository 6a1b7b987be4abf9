/* The client side of monitor reporting: once a second, send the monitor the 976-byte counter
 * report of the second that ended about 3 s ago, over one TCP connection, on a libuv loop the
 * caller owns. The monitor can never stop or slow the process: an unreachable or stuck monitor
 * costs dropped reports (counted), a reconnect with back-off and one log line. */
#ifndef HONGBAO_REPORTER_H
#define HONGBAO_REPORTER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults used for a zero (or NULL) option. */
#define HB_REPORTER_DEFAULT_HOST           "127.0.0.1"
#define HB_REPORTER_DEFAULT_PORT           8002 /* the reference monitor's port */
#define HB_REPORTER_DEFAULT_DELAY_S        3
#define HB_REPORTER_DEFAULT_BACKOFF_MIN_MS 200
#define HB_REPORTER_DEFAULT_BACKOFF_MAX_MS 5000
/* Largest delay_s: the reported second must still be in the counters' history. */
#define HB_REPORTER_MAX_DELAY_S (HB_COUNTERS_HISTORY - 1)
/* Report bytes handed to the connection and not yet taken by the kernel, at most. A tick whose
 * batch would go past it sends nothing (the seconds wait, see hb_reporter_tick). */
#define HB_REPORTER_MAX_PENDING_BYTES (64u * 1024)
/* A connect attempt that has not completed after this long fails with UV_ETIMEDOUT. */
#define HB_REPORTER_CONNECT_TIMEOUT_MS 5000
/* hb_reporter_close waits at most this long for the final reports to be written. */
#define HB_REPORTER_CLOSE_TIMEOUT_MS 1000
/* The periodic tick runs this long after each wall-clock second boundary. */
#define HB_REPORTER_TICK_OFFSET_MS 50
/* Longest host string, NUL included (an IPv6 literal with a zone id fits). */
#define HB_REPORTER_HOST_MAX 64
/* Room for the "host:port" label ("[v6]:port" for IPv6), NUL included. */
#define HB_REPORTER_PEER_MAX 80

typedef struct hb_reporter hb_reporter_t;

/* Called once every handle of the reporter is closed; r's memory may be freed from here on. */
typedef void (*hb_reporter_close_cb)(hb_reporter_t *r);

/* Reporter options. Zero-initialise, set what you need; a zero field takes its default. */
typedef struct hb_reporter_options {
    /* The monitor's address: an IPv4 or IPv6 literal (no name lookup, so never a blocking
     * resolver on the loop); NULL means "127.0.0.1". Copied by init. */
    const char *host;
    /* The monitor's TCP port, 1..65535; 0 means 8002. */
    int port;
    /* Report the second now - delay_s; 0 means 3. At most HB_REPORTER_MAX_DELAY_S. */
    unsigned delay_s;
    /* Reconnect back-off: the first retry waits backoff_min_ms, each further failure doubles
     * the wait up to backoff_max_ms. 0 means 200 and 5000; min > max is UV_EINVAL. */
    unsigned backoff_min_ms;
    unsigned backoff_max_ms;
    /* Where the reporter's log lines go (one line, no trailing newline, valid during the call
     * only), called on the loop thread with log_arg. NULL: the reporter logs nothing. */
    hb_log_cb log;
    void *log_arg;
    /* The clock that says which second it is (Unix seconds), called with now_arg on the loop
     * thread; NULL means the wall clock, time(NULL). For tests: drive the reporter with
     * hb_reporter_tick and a fake clock. The periodic tick's alignment to the second boundary
     * always uses the real wall clock. */
    uint64_t (*now_s)(void *arg);
    void *now_arg;
    /* Which instance the reports come from (hb_report_instance(listen_host, listen_port) for a
     * server), put in every report's HB_CTR_INSTANCE per-second value, so that a monitor keeps
     * this process's line apart from the others' and continues it after a restart at the same
     * address; 0 (the default): none, and the monitor knows the process by its connection. */
    uint64_t instance;
} hb_reporter_options_t;

/* Counters of one reporter, updated on the loop thread. Read them on that thread. Every second
 * that becomes due (from the first tick's second on) ends in exactly one of sent and dropped,
 * except those in a write still in flight and those not yet due or still waiting (at most
 * HB_COUNTERS_HISTORY of them); after the close callback none are in flight or waiting. */
typedef struct hb_reporter_stats {
    uint64_t sent;             /* reports written to the kernel on a monitor connection */
    uint64_t dropped;          /* reports never sent: too old to send, a failed write, close */
    uint64_t connects;         /* connections established */
    uint64_t disconnects;      /* established connections lost (EOF, error) */
    uint64_t connect_failures; /* connect attempts that failed or timed out */
} hb_reporter_stats_t;

/* The reporter. Caller-owned; initialise with hb_reporter_init, end with hb_reporter_close.
 * Every function below runs on the loop's thread only (the counters it reads may be written
 * from any thread: see hb_counters_t). */
struct hb_reporter {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop;
    hb_counters_t *counters;
    hb_reporter_options_t opts; /* in effect, defaults filled in, host pointing to host */
    hb_reporter_stats_t stats;
    int connected;                   /* 1 while a monitor connection is established */
    char peer[HB_REPORTER_PEER_MAX]; /* "127.0.0.1:8002", "[::1]:8002": used in log lines */
    /* private */
    char host[HB_REPORTER_HOST_MAX];
    struct sockaddr_storage addr;
    struct hb_sock *sock;  /* the monitor connection (lib/hb_sock.h), allocated by init */
    uv_timer_t tick_timer; /* the once-a-second tick */
    uv_timer_t timer;      /* reconnect back-off, connect timeout, or close deadline */
    int state;             /* connection state, HB_REPORTER_S_* in hb_reporter.c */
    int started;
    int closing;
    int handles_closing;   /* uv_close called on the timers */
    unsigned live_handles; /* handles initialised and not yet closed */
    int have_next;
    uint64_t next; /* the oldest second due and not yet sent or dropped */
    unsigned backoff_ms;
    uint64_t queued_reports; /* reports handed to the socket and not yet wholly taken */
    int ever_connected;
    int down_logged; /* the "unreachable"/"lost" line was logged, "connected" not since */
    char read_buf[64];
    hb_reporter_close_cb close_cb;
};

/* Initialise r on loop to report counters per opts (NULL: all defaults). The counters are read
 * by hb_reporter_tick and, for the final reports, inside hb_reporter_close: they must stay
 * initialised until hb_reporter_close has returned (so a client's counters may be reported one
 * last time from the client's close callback). Sets r->data to NULL. Connects to nothing yet: see
 * hb_reporter_start. Once this returned 0, hb_reporter_close must be called (started or not).
 * Returns 0, UV_ENOMEM, or UV_EINVAL: NULL loop, r or counters, counters not initialised, host
 * not an IP literal (or longer than HB_REPORTER_HOST_MAX - 1), port outside 0..65535, delay_s
 * above HB_REPORTER_MAX_DELAY_S, backoff min above max. On error nothing needs closing. */
HB_EXTERN int hb_reporter_init(uv_loop_t *loop, hb_reporter_t *r, hb_counters_t *counters,
                               const hb_reporter_options_t *opts);

/* Start: attempt the monitor connection now and tick once a second, HB_REPORTER_TICK_OFFSET_MS
 * after each wall-clock second boundary. Never fails because of the monitor: a refused, failed
 * or timed-out connect (HB_REPORTER_CONNECT_TIMEOUT_MS) or a lost connection is retried after
 * the back-off (backoff_min_ms, doubling up to backoff_max_ms; back to backoff_min_ms once a
 * write succeeds on a connection). Data the monitor sends is read and discarded; EOF or a read
 * or write error drops the connection and reconnects. Logged, through opts.log: one line when
 * the monitor becomes unreachable ("monitor 127.0.0.1:8002 unreachable (connection refused);
 * reports dropped until it is back, retrying") or an established connection is lost ("monitor
 * 127.0.0.1:8002 connection lost (end of file); ..."), none per retry, and one when a
 * connection is established ("monitor 127.0.0.1:8002 connected"). Returns 0, UV_EALREADY
 * (already started), UV_EINVAL (NULL r, or closing). */
HB_EXTERN int hb_reporter_start(hb_reporter_t *r);

/* Do one tick's work now (the periodic tick calls it; tests call it with a fake clock). With
 * now = opts.now_s(), the seconds due are those from the oldest not yet sent (the first tick:
 * now - delay_s) up to now - delay_s. A second older than now - (HB_COUNTERS_HISTORY - 1), no
 * longer reliably in the counters' history, is dropped (counted). When connected and at most
 * HB_REPORTER_MAX_PENDING_BYTES would then be pending, the due seconds are snapshotted, encoded
 * (hb_report_encode) and written in one send; what the kernel does not take at once is queued
 * on the connection and written as the monitor reads (each report counts as sent once the
 * kernel has taken all of it, as dropped if the connection is lost first). Otherwise (not
 * connected, a stuck monitor, no memory) they wait for a later tick, so a short outage loses
 * nothing. A clock that steps back sends nothing twice: the seconds already sent are skipped,
 * unless it stepped back more than HB_COUNTERS_HISTORY seconds, and then reporting restarts at
 * now - delay_s. Never blocks, never raises SIGPIPE. Does nothing once hb_reporter_close was
 * called. */
HB_EXTERN void hb_reporter_tick(hb_reporter_t *r);

/* Stop reporting and close. If connected, first send the seconds due up to now - 1 (the
 * process is stopping: the final counters are sent without waiting delay_s) and wait for the
 * writes to complete, HB_REPORTER_CLOSE_TIMEOUT_MS at most (unfinished writes then count as
 * dropped); seconds that cannot be sent count as dropped. Then close every handle and call cb
 * (may be NULL), always from the loop, never from inside this call; only then may r be freed.
 * Nothing is logged. A second call does nothing. */
HB_EXTERN void hb_reporter_close(hb_reporter_t *r, hb_reporter_close_cb cb);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_REPORTER_H */
