/* The load-generating client runtime: simulated users, one TCP connection each, logging in and
 * shaking on the modulo schedule (hongbao/sched.h), claiming the send-envelopes they are told of,
 * with latency measured from each request's intended send time. One loop, one thread: run several
 * processes for more users than one process's open-file limit (hb-client --procs does). */
#ifndef HONGBAO_CLIENT_H
#define HONGBAO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"
#include "hongbao/hist.h"
#include "hongbao/http.h"
#include "hongbao/sched.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counter slots the client fills beyond the reference's: its shake and claim latency percentiles
 * (microseconds) for each second; a monitor combines these by maximum, not by sum. */
enum {
    HB_CTR_LAT_P50 = 50,
    HB_CTR_LAT_P90 = 51,
    HB_CTR_LAT_P99 = 52,
    HB_CTR_LAT_P999 = 53,
    HB_CTR_LAT_MAX = 54,
    HB_CTR_LAT_CLAIM_P50 = 55,
    HB_CTR_LAT_CLAIM_P99 = 56,
    HB_CTR_C_SEND_MISSED = 57 /* scheduled shakes not sent: the user had too many outstanding */
};

#define HB_CLIENT_MAX_SOURCES 64
#define HB_CLIENT_PHASES      10 /* 100 ms phases of a second (phase_latency) */
#define HB_CLIENT_MAX_CLOSED  8  /* most shakes outstanding per user in the closed loop */

typedef struct hb_client_options {
    const char *server_host; /* an IP literal; default "127.0.0.1" */
    int server_port;         /* default 1025 */
    uint32_t min_user;       /* this process simulates users min_user..max_user (both included) */
    uint32_t max_user;
    uint64_t total_users; /* users in the whole fleet (the schedule's users); 0 = max_user + 1 */
    uint64_t qps;         /* the whole fleet's shake rate; this process sends its users' share */
    /* Source addresses to connect from, in turn (IP literals); none = the kernel's choice. */
    const char *sources[HB_CLIENT_MAX_SOURCES];
    unsigned nsources;
    uint32_t connect_rate;     /* new connections a second at most; 0 = 20,000 */
    uint32_t connect_inflight; /* connects in progress at most; 0 = 512 */
    int no_claims;             /* do not claim send-envelopes */
    /* Called on the loop for every claim reply (amount 0: nothing granted), e.g. to log what the
     * server acknowledged. */
    void (*on_claim_reply)(void *arg, uint32_t user, uint32_t envelope_id, uint32_t amount);
    void *claim_arg;
    /* Closed loop: when 1..8, each user keeps `closed` shakes outstanding, sending the next as
     * each reply arrives, as fast as the server answers; qps and the schedule are then unused and
     * latency is timed from the actual send. The loop starts once every user of this client has
     * logged in (a user who reconnects later restarts at once). 0 (the default): the scheduled
     * open loop. */
    uint32_t closed;
    /* Servers on consecutive ports server_port .. server_port + nservers - 1 of server_host: user u
     * connects to server_port + u % nservers. 0 or 1: the one server. */
    uint32_t nservers;
} hb_client_options_t;

/* Fill *o with the defaults above (users 0..0, qps 0). */
HB_EXTERN void hb_client_options_default(hb_client_options_t *o);

/* Running totals of one client (read on the loop thread, or after close). */
typedef struct hb_client_stats {
    uint64_t users;            /* users simulated */
    uint64_t connected;        /* connected and logged in now */
    uint64_t connected_peak;   /* the most connected at once */
    uint64_t connects;         /* successful logins so far */
    uint64_t connect_failures; /* failed connects or logins (retried with back-off) */
    uint64_t disconnects;      /* connections lost after login (reconnected) */
    uint64_t shakes;           /* shake requests sent */
    uint64_t missed;           /* scheduled shakes not sent: too many outstanding */
    uint64_t replies[4];       /* shake replies by result: 14, 15, 16, 17 */
    uint64_t envelopes;        /* shake envelopes received */
    uint64_t amount;           /* their sum (cents) */
    uint64_t notices;          /* send-envelope notices received */
    uint64_t claims;           /* claims sent */
    uint64_t claims_granted;   /* claim replies with an amount */
    uint64_t claimed_amount;   /* their sum (cents) */
    uint64_t bad_frames; /* malformed or unexpected frames from the server (connection reset) */
} hb_client_stats_t;

typedef struct hb_client hb_client_t;
typedef void (*hb_client_close_cb)(hb_client_t *client);

struct hb_client {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop;
    hb_client_stats_t stats;
    hb_hist_t shake_latency; /* microseconds from intended send time to reply, since start */
    hb_hist_t claim_latency; /* microseconds from the notice to the claim reply */
    /* microseconds from the moment a shake was actually written to its reply (the server's and
     * the network's share, without the client's own lateness in sending) */
    hb_hist_t service_latency;
    /* shake_latency split by the 100 ms phase of the second of the intended send time
     * (phase_latency[i]: sends due in milliseconds 100 i .. 100 i + 99 of a second), to see
     * whether some part of every second is served worse than the rest */
    hb_hist_t phase_latency[HB_CLIENT_PHASES];
    /* private */
    struct hb_client_impl *impl;
};

/* Prepare a client on loop. opts is copied (source strings too). Returns 0, UV_EINVAL (bad
 * addresses, max_user < min_user, total_users <= max_user, qps above 2^32, closed above
 * HB_CLIENT_MAX_CLOSED, server ports past 65535), UV_ENOMEM. */
HB_EXTERN int hb_client_init(uv_loop_t *loop, hb_client_t *client, const hb_client_options_t *opts);

/* Start connecting the users (at the bounded rate) and sending on the schedule. Loop thread. */
HB_EXTERN int hb_client_start(hb_client_t *client);

/* Change the fleet's rate from the next whole second on. Loop thread. Returns 0 or UV_EINVAL. */
HB_EXTERN int hb_client_set_rate(hb_client_t *client, uint64_t qps);

/* The current target rate of the fleet. */
HB_EXTERN uint64_t hb_client_rate(const hb_client_t *client);

/* Empty the latency histograms (shake, claim, service and phase), e.g. at the start of a
 * measurement window so that they describe that window alone. Loop thread. Cannot fail. */
HB_EXTERN void hb_client_reset_latency(hb_client_t *client);

/* The client's counters, in the reference's slots plus HB_CTR_LAT_* (reporter type client). */
HB_EXTERN hb_counters_t *hb_client_counters(hb_client_t *client);

/* Register GET /qps?qps=N (change the rate) and GET /stats (JSON) on an HTTP server on the same
 * loop. Returns 0 or an hb_http_server_route error. */
HB_EXTERN int hb_client_mount_http(hb_client_t *client, hb_http_server_t *http);

/* Stop sending, close every connection and handle, then call cb (from the loop once handles are
 * closed; at once if hb_client_start was never called). Stats, histograms and counters stay
 * readable until hb_client_free. */
HB_EXTERN void hb_client_close(hb_client_t *client, hb_client_close_cb cb);

/* Free what hb_client_init allocated (the counters included), after the close callback. */
HB_EXTERN void hb_client_free(hb_client_t *client);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_CLIENT_H */
