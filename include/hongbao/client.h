/* The load-generating client runtime: simulated users, one TCP connection each (to one of several
 * servers, by modulo or by consistent hashing with failover), logging in and
 * shaking (or sending an application's own request) on the modulo schedule (hongbao/sched.h),
 * claiming the send-envelopes they are told of until each claim has a final answer, with latency
 * measured from each request's intended send time, to the microsecond. One loop, one thread: run
 * several processes for more users than one process's open-file limit (hb-client --procs does).
 * A process visits only its own users' sends and sleeps until the next is due, so its cost per
 * request does not grow with the fleet (docs/client.md). */
#ifndef HONGBAO_CLIENT_H
#define HONGBAO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"
#include "hongbao/hist.h"
#include "hongbao/http.h"
#include "hongbao/proto.h"
#include "hongbao/sched.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The client counts in the reference's slots and in its own (HB_CTR_LAT_*, HB_CTR_C_SEND_MISSED,
 * 50..57), all named in the counter catalogue (hongbao/counters.h); a monitor combines the latency
 * percentiles by maximum, not by sum. */

#define HB_CLIENT_MAX_SOURCES 64
#define HB_CLIENT_PHASES      10 /* 100 ms phases of a second (phase_latency) */
#define HB_CLIENT_MAX_CLOSED  8  /* most shakes outstanding per user in the closed loop */

/* The most servers in hb_client_options_t.servers. */
#define HB_CLIENT_MAX_SERVERS 1024

/* How users are spread over several servers (hb_client_options_t.route); docs/client.md, "Many
 * servers". */
#define HB_CLIENT_ROUTE_AUTO 0 /* modulo for the port range, hashing for the list (servers) */
/* User u connects to server u mod n, always: a lost connection is made again to the same server.
 * For servers that are separate services (each its own users), as in the million-user
 * benchmark. */
#define HB_CLIENT_ROUTE_MODULO 1
/* Rendezvous hashing (hongbao/ring.h) over the servers' addresses: a user's server depends only on
 * the user and the set of addresses, the same in every process, and adding a server moves about
 * 1/n of the users. When a user's connect or login fails, or its connection is closed or reset, it
 * connects to its next server in its hash order (after the back-off), logs in there and goes on
 * with its schedule and its claims; it stays there while that connection lasts, even once its
 * first choice is back (no second move, no probing), and after the last server of its order comes
 * its first again. For servers that are one service. */
#define HB_CLIENT_ROUTE_HASH 2

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
    /* Claim with the reference's command (HB_CMD_CLAIM, answered by an amount alone) instead of
     * the extended one (HB_CMD_CLAIM_EX): for a server that speaks only the reference protocol.
     * Its replies cannot say "try again" or "granted before": an amount is a grant, 0 is final. */
    int reference_claims;
    /* Called on the loop for every claim reply, e.g. to log what the server acknowledged: the
     * amount and the result (HB_CLAIM_* of hongbao/proto.h: GRANTED and REPEAT carry the share,
     * a REPEAT being a grant whose first reply was lost; TRY_AGAIN will be asked again; a reply to
     * a reference claim is GRANTED with an amount, NO_ENVELOPE with 0). */
    void (*on_claim_reply)(void *arg, uint32_t user, uint32_t envelope_id, uint32_t amount,
                           int result);
    void *claim_arg;
    /* Closed loop: when 1..8, each user keeps `closed` shakes outstanding, sending the next as
     * each reply arrives, as fast as the server answers; qps and the schedule are then unused and
     * latency is timed from the actual send. The loop starts once every user of this client has
     * logged in (a user who reconnects later restarts at once). 0 (the default): the scheduled
     * open loop. */
    uint32_t closed;
    /* Servers on consecutive ports server_port .. server_port + nservers - 1 of server_host when
     * servers is NULL (0 or 1: the one server), or the length of the list servers. */
    uint32_t nservers;
    /* Several servers by address: servers[0 .. nservers - 1], each "HOST:PORT" as hb_addr_parse
     * takes it (an IPv4 or IPv6 literal, "[::1]:1025"), at most HB_CLIENT_MAX_SERVERS, no address
     * twice; copied by init. server_host and server_port are then unused. NULL: the port range. */
    const char *const *servers;
    /* HB_CLIENT_ROUTE_*: how users are spread over several servers. AUTO (0, the default): modulo
     * for the port range, as the million-user benchmark expects, hashing for the list. */
    int route;
    /* A connect and its login must be done within this many milliseconds: past it the attempt is
     * a failed connect (UV_ETIMEDOUT; a server that accepts and never answers, or a lost SYN) and
     * is made again after the back-off (to the next server when hashing). 0 = 10,000. */
    uint32_t login_timeout_ms;
    /* Log lines (one line, no trailing newline, valid during the call), on the loop thread: a
     * failed connect says why (its error), at most one line a second with how many failed since
     * the last. NULL: nothing is logged (stats.connect_failures and last_connect_error still
     * count). */
    hb_log_cb log;
    void *log_arg;
    /* Application requests (a service's own command, hb_server_handle on the server side). When
     * app_cmd is set (HB_CMD_APP_FIRST..HB_CMD_APP_LAST), each scheduled request (and each of the
     * closed loop's) is a frame of app_cmd instead of a shake, and the next frame of app_reply_cmd
     * the user receives answers its oldest outstanding one (0: app_cmd itself, an echo), in order,
     * as shake replies do. Their latency goes into the same histograms (shake_latency,
     * service_latency, phase_latency) and per-second counter slots as shakes; they count in
     * stats.app_requests and app_replies and in the request and response slots (10, 11), not in
     * the shake slots. At most 8 are outstanding per user; past that, a send is missed. */
    uint16_t app_cmd;
    uint16_t app_reply_cmd;
    /* Called on the loop before each application request of user to write its payload: up to
     * cap bytes (HB_FRAME_MAX - HB_FRAME_HEADER) into buf, which is valid during the call only.
     * intended_us is the request's intended send time (Unix microseconds; the moment of the call
     * in the closed loop), which the payload may carry for the server to measure against.
     * Returns the payload's length (0..cap), or a negative value to skip this send (counted as
     * missed; in the closed loop it is not replaced, so the user keeps one fewer outstanding).
     * NULL: an empty payload. Must not close the client. */
    int (*app_fill)(void *arg, uint32_t user, uint64_t intended_us, uint8_t *buf, size_t cap);
    /* Called on the loop for every application frame (HB_CMD_APP_FIRST..HB_CMD_APP_LAST) a
     * logged-in user receives, replies and frames the server pushes alike, after a reply was timed:
     * frame->payload is valid during the call only. Application frames are accepted whether or not
     * this is set (counted in stats.app_frames); one before the login reply resets the
     * connection as any unexpected frame does. Must not close the client. */
    void (*on_app_frame)(void *arg, uint32_t user, const hb_frame_t *frame);
    void *app_arg; /* for app_fill and on_app_frame */
    /* Wake-ups to send are at least this many microseconds apart. 0 (the default): each send is
     * made at its own intended microsecond, as soon as the loop wakes up for it, which costs about
     * one wake-up a send when sends are further apart than a wake-up takes. Above 0, a send due
     * sooner after the previous wake-up waits for the next one, at most this long, and sends go
     * out in batches: fewer wake-ups for the client and the server, and a latency that includes
     * the wait (timed from the intended time, it shows). docs/client.md has the trade-off. */
    uint32_t send_coalesce_us;
    /* A send due within this many microseconds of the end of a wake-up is waited for awake: the
     * loop keeps polling (without sleeping) until it is due, sends it at its microsecond, and
     * reads replies as they arrive. 0 (the default): the loop sleeps until each send, and a
     * send's latency from its intended time includes the timer's wake-up lateness (tens of
     * microseconds on a virtual machine). Worth it when sends are closer together than a
     * wake-up costs (about 20-50 us): the CPU a send costs is then about the same either way.
     * docs/client.md has the figures. */
    uint32_t send_spin_us;
} hb_client_options_t;

/* Fill *o with the defaults above (users 0..0, qps 0). */
HB_EXTERN void hb_client_options_default(hb_client_options_t *o);

/* Running totals of one client (read on the loop thread, or in the close callback). Every field
 * is a uint64_t. */
typedef struct hb_client_stats {
    uint64_t users;            /* users simulated */
    uint64_t connected;        /* connected and logged in now */
    uint64_t connected_peak;   /* the most connected at once */
    uint64_t connects;         /* successful logins so far */
    uint64_t connect_failures; /* failed connects or logins (retried with back-off): refused,
                                  reset or closed before the login reply, or past
                                  login_timeout_ms */
    uint64_t disconnects;      /* connections lost after login (reconnected) */
    uint64_t shakes;           /* shake requests sent */
    uint64_t missed;           /* scheduled shakes not sent: too many outstanding */
    uint64_t replies[4];       /* shake replies by result: 14, 15, 16, 17 */
    uint64_t envelopes;        /* shake envelopes received */
    uint64_t amount;           /* their sum (cents) */
    uint64_t notices;          /* send-envelope notices received */
    uint64_t claims;           /* envelopes claimed (a claim sent again is not counted here) */
    uint64_t claims_granted;   /* envelopes whose share was received: each counted once */
    uint64_t claimed_amount;   /* their sum (cents) */
    uint64_t bad_frames; /* malformed or unexpected frames from the server (connection reset) */
    /* the error of the latest failed connect or login, or 0: UV_ECONNREFUSED, UV_ECONNRESET,
     * UV_EOF (closed before the login reply), UV_ETIMEDOUT (past login_timeout_ms)... */
    int last_connect_error;
    uint64_t claims_repeat;    /* HB_CLAIM_REPEAT replies: a grant learnt on a later try */
    uint64_t claims_try_again; /* HB_CLAIM_TRY_AGAIN replies (asked again after a back-off) */
    uint64_t claims_retried;   /* claims sent again: after a reconnect, or after TRY_AGAIN */
    uint64_t claims_refused;   /* final answers without a share (not a recipient, no envelope) */
    uint64_t app_requests;     /* application requests sent (options.app_cmd) */
    uint64_t app_replies;      /* their answers (options.app_reply_cmd), timed */
    uint64_t app_frames;       /* application frames received, answers included */
    /* Times the loop woke up to send: at most one a send (sends due together share one) and one a
     * rate change, none while nothing is due; the loop sleeps between sends rather than ticking. */
    uint64_t send_wakeups;
    /* Logins after a user's first one: users back after a lost connection or failed attempts, on
     * the same server or another. */
    uint64_t reconnects;
    /* Logins on another server than the user's previous login (its first login: than its first
     * choice), with HB_CLIENT_ROUTE_HASH: the users that moved because a server failed them. */
    uint64_t failovers;
    /* Sends (or bursts of sends due together) waited for awake (options.send_spin_us) rather
     * than after a wake-up: they are not in send_wakeups. */
    uint64_t send_spins;
} hb_client_stats_t;

typedef struct hb_client hb_client_t;
/* Called once the client is closed: see hb_client_close. */
typedef void (*hb_client_close_cb)(hb_client_t *client);

/* Caller-owned. The lifetime rule is libuv's: hb_client_init, then hb_client_close(client, cb);
 * the memory stays valid until cb has run and the caller frees or reuses it in or after cb.
 *
 * Its size: about 200 KB (sizeof(hb_client_t) is 13 * sizeof(hb_hist_t) plus a few hundred
 * bytes), because its 13 latency histograms of 15 KB each are inline, so that they stay readable
 * after the close callback without the library's memory. Allocate it statically or on the heap,
 * not on a small thread stack. The per-user state (about 500 bytes a user) is allocated by
 * hb_client_init and freed after the close callback. */
struct hb_client {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop;
    hb_client_stats_t stats;
    /* microseconds from the intended send time (to the microsecond: hb_sched_time_us_of) to the
     * reply, since start or hb_client_reset_latency; application requests' too (app_cmd) */
    hb_hist_t shake_latency;
    hb_hist_t claim_latency; /* microseconds from the notice to the claim reply */
    /* microseconds from the moment a shake (or application request) was actually written to its
     * reply (the server's and the network's share, without the client's own lateness in sending) */
    hb_hist_t service_latency;
    /* shake_latency split by the 100 ms phase of the second of the intended send time
     * (phase_latency[i]: sends due in milliseconds 100 i .. 100 i + 99 of a second), to see
     * whether some part of every second is served worse than the rest */
    hb_hist_t phase_latency[HB_CLIENT_PHASES];
    /* private */
    struct hb_client_impl *impl;
};

/* Prepare a client on loop. opts is copied (source and server strings too). Once this returned 0,
 * hb_client_close must be called (started or not): it frees what init allocated. Returns 0,
 * UV_EINVAL (bad addresses, max_user < min_user, total_users <= max_user or above 2^32, qps above
 * 2^32, closed above HB_CLIENT_MAX_CLOSED, server ports past 65535, a servers list that is empty,
 * longer than HB_CLIENT_MAX_SERVERS, names an address twice or one of another family than the
 * sources, an unknown route, app_cmd or app_reply_cmd outside the application range), UV_ENOMEM,
 * or the error of creating the send timer (UV_EMFILE, ...); on error nothing needs closing. */
HB_EXTERN int hb_client_init(uv_loop_t *loop, hb_client_t *client, const hb_client_options_t *opts);

/* Start connecting the users (at the bounded rate) and sending on the schedule: the process walks
 * only its own users' sends (hb_sched_range_t) and sleeps until the next is due, to the
 * microsecond (a timerfd on Linux; a millisecond timer elsewhere). Loop thread.
 * A user's claims without a final answer (no reply yet, or HB_CLAIM_TRY_AGAIN) are kept and sent
 * again: after its next login when its connection was lost, after a back-off (100 ms doubling to
 * 5 s) after TRY_AGAIN; each envelope's share is counted once (GRANTED, or REPEAT for a claim not
 * yet counted). Returns 0, or UV_EINVAL (already started, or closing). */
HB_EXTERN int hb_client_start(hb_client_t *client);

/* Change the fleet's rate from the next whole second on. Loop thread. Returns 0 or UV_EINVAL. */
HB_EXTERN int hb_client_set_rate(hb_client_t *client, uint64_t qps);

/* The current target rate of the fleet. */
HB_EXTERN uint64_t hb_client_rate(const hb_client_t *client);

/* Empty the latency histograms (shake, claim, service and phase), e.g. at the start of a
 * measurement window so that they describe that window alone. Loop thread. Cannot fail. */
HB_EXTERN void hb_client_reset_latency(hb_client_t *client);

/* The client's counters, in the reference's slots plus its own (reporter type client). */
HB_EXTERN hb_counters_t *hb_client_counters(hb_client_t *client);

/* Register GET /qps?qps=N (change the rate) and GET /stats (JSON) on an HTTP server on the same
 * loop. Returns 0 or an hb_http_server_route error. */
HB_EXTERN int hb_client_mount_http(hb_client_t *client, hb_http_server_t *http);

/* Stop sending, close every connection and handle, then call cb (may be NULL), always from the
 * loop, never from inside this call, started or not. Until and inside cb the client's memory is
 * valid and readable: stats, histograms, and the counters (hb_client_counters) as well. The
 * library frees its internals once cb has returned and never touches client after calling cb;
 * the caller frees or reuses client in or after cb (its public fields, stats and histograms,
 * stay as they were; hb_client_counters may no longer be called). A second call before cb does
 * nothing. */
HB_EXTERN void hb_client_close(hb_client_t *client, hb_client_close_cb cb);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_CLIENT_H */
