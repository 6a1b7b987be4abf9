/* The red-envelope server runtime: SET groups on worker loops, the reference's business (login,
 * shake, send-envelope, claim) made correct, chat, envelope generators, counters and control
 * endpoints. The example hb-server is a thin consumer of this API; your own service can be too. */
#ifndef HONGBAO_SERVER_H
#define HONGBAO_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"
#include "hongbao/http.h"
#include "hongbao/ledger.h"
#include "hongbao/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Threading model. The server runs `threads` worker threads, each with its own libuv loop hosting
 * sets / threads SETs, and does its control work (envelope generators, HTTP endpoints you mount,
 * monitor reports) on the loop you pass to hb_server_init, in your thread. A SET owns its
 * connections, its envelope bucket, its book of send-envelopes and a receive queue that any thread
 * may post to. Callbacks run in the thread noted at each one. */

/* The server counts in the reference's slots and in its own (HB_CTR_X_*, 26, 27, 34..49), all
 * named in the counter catalogue (hongbao/counters.h) and shown in /metrics and /stats. */

typedef struct hb_server hb_server_t;
/* One user connection, owned by the server; valid only during the callback that hands it over. */
typedef struct hb_conn hb_conn_t;

/* Called on the connection's worker thread once for each connection that logged in, when it leaves
 * the server: closed by its peer or by the server (a bad frame, a slow peer, a newer login of the
 * same user, shutdown). Release what you attached with hb_conn_set_data here; hb_conn_user,
 * hb_conn_data and hb_conn_count still work during the call, hb_conn_send does nothing useful,
 * and the connection is gone after it returns. */
typedef void (*hb_conn_close_cb)(hb_conn_t *conn, void *arg);

typedef struct hb_server_options {
    const char *listen_host; /* default "127.0.0.1" */
    int listen_port;         /* default 1025; 0 picks a free port (see hb_server_t.port) */
    /* The network interface whose packets and bytes the server counts, once a second on the
     * control loop, into the host's NIC slots (7, 8, 9, 12, its identity in 13: hongbao/netstat.h).
     * NULL: the one listen_host uses (hb_netstat_interface_for: 127.0.0.1 gives the loopback
     * interface), best effort (when it cannot be found or read, a log line and no NIC counts);
     * "": none. An interface named here must be readable, or hb_server_start fails. */
    const char *nic;
    unsigned threads; /* worker threads; 0 = one per core */
    unsigned sets;    /* SETs in all; 0 = one per thread; rounded up to a multiple of threads */
    uint64_t max_qps; /* shake requests a second past which replies are 17; 0 = 65,000 */
    uint64_t seed;    /* seeds every random draw (amounts, recipients); 0 = time-based */
    uint32_t bucket_capacity; /* envelopes per SET bucket; 0 = 65,536 */
    uint32_t queue_capacity;  /* messages per SET receive queue; 0 = 16,384 */
    uint32_t max_connections; /* 0 = what RLIMIT_NOFILE allows, less a reserve of 64 */
    uint32_t max_output;      /* bytes queued to one peer before it is disconnected; 0 = 256 KiB */
    uint32_t send_expiry_s;   /* send-envelopes are retired this long after creation, claimed or
                                 not (until then a recipient's retry learns its share); 0 = 24 h */
    int limit_users;   /* nonzero: logins of users outside [min_user, max_user] are refused */
    uint32_t min_user; /* (both included; only with limit_users) */
    uint32_t max_user;
    uint32_t max_conn_qps;     /* requests a second one connection may make; past it shakes get
                                  17 and claims "try again", past twice it it is closed;
                                  0 = 1000, at most 30,000, UINT32_MAX = no limit */
    uint32_t login_timeout_ms; /* a connection must log in within this; 0 = 10 s */
    /* Money the generators make (hb_server_generate_shake, hb_server_generate_send), in cents,
     * bounds included. A shake envelope is worth shake_amount_min..shake_amount_max (0 and 0:
     * 10..309, the reference's). A send-envelope totals send_total_min..send_total_max (0 and 0:
     * 300..30,000), split by the double-mean rule (hongbao/envelope.h) among send_recipients
     * distinct users (0: 3, the reference's; at most HB_SEND_MAX_RECIPIENTS). A min above its max,
     * or send_total_min below send_recipients, is UV_EINVAL. Envelopes you make yourself
     * (hb_server_put_shake_envelopes, hb_server_send_envelope) are not bound by these. */
    uint32_t shake_amount_min, shake_amount_max;
    uint32_t send_total_min, send_total_max;
    unsigned send_recipients;
    /* The claim journal (hongbao/ledger.h): when set, every send-envelope and every granted
     * claim is journaled, a claim's reply and an envelope's notices leave only once the record is
     * durable per fsync, envelope ids are reserved in it, and hb_server_init replays it so claims
     * stay exactly-once (and repeats answered) across restarts. NULL: none (nothing durable; ids
     * start afresh each run). docs/reliability.md has the claim contract. */
    const char *ledger_dir;
    hb_fsync_t fsync; /* 0 = HB_FSYNC_ALWAYS */
    /* A fleet (docs/fleet.md): when set, "host:port[,host:port...]", some nodes of a Redis
     * Cluster, money lives there instead of in this process: send-envelopes and their claims (a
     * Lua script judges each claim where the envelope lives), and the id spaces, so that every
     * instance pointed at the same cluster shares them. A claim is acknowledged once Redis has
     * applied it (durable per the masters' appendfsync) and, with redis_replicas, once WAIT saw
     * that many replicas have it; otherwise, and while Redis is unreachable, it is answered
     * HB_CLAIM_TRY_AGAIN. Not with ledger_dir. Needs a library built with hiredis
     * (HONGBAO_REDIS), else hb_server_init fails with UV_ENOTSUP. */
    const char *redis;
    const char *instance;      /* this instance's name in the fleet; NULL: listen host:port */
    unsigned redis_replicas;   /* replicas WAIT must count before a grant is acknowledged */
    uint32_t redis_timeout_ms; /* a Redis command's deadline, retries included; 0 = 2,000 */
    /* How long the shake envelopes this instance drew from the fleet's budget stay its own without
     * a word from it (it renews every sixth of it): after it, another instance retires them as
     * expired (docs/fleet.md). 0 = 30,000 ms; at least 600. */
    uint32_t redis_lease_ms;
    /* In a fleet, shake envelopes come from one generator: hb_server_generate_shake (and
     * /yaohongbao) on any instance stores the fleet's plan in Redis, and of the instances with
     * generator set, one at a time (a lease in Redis, taken over by another within about 3 s
     * when its holder dies) makes the plan's envelopes into the shared budget. */
    int generator;
    /* 0 (the default): one listening socket shared by the worker threads, so a second server on
     * the same port fails with UV_EADDRINUSE. Nonzero: one SO_REUSEPORT socket per worker, which
     * lets other processes of the same user bind the port too and take a share of its users: only
     * for a deliberate multi-process deployment that shares nothing else. */
    int reuse_port;
    /* hb_server_close waits at most this long for the journal and for peers to take their last
     * replies before it closes what is left; 0 = 5,000 ms. */
    uint32_t close_timeout_ms;
    /* Log lines (no trailing newline; valid during the call): the journal's failures and replay
     * notes, an exhausted id space. Called from any of the server's threads, one line at a time.
     * NULL: lines go to stderr, prefixed "hongbao server: ". */
    hb_log_cb log;
    void *log_arg;
    /* NULL, or called as each logged-in connection leaves (see hb_conn_close_cb), with conn_arg. */
    hb_conn_close_cb on_conn_close;
    void *conn_arg;
} hb_server_options_t;

/* Fill *o with the defaults above. */
HB_EXTERN void hb_server_options_default(hb_server_options_t *o);

/* Runs on the control loop once every worker has stopped and every handle is closed. The server is
 * still readable inside it (counters, users online, connections); the callback (or the caller,
 * after it) frees or reuses the hb_server_t, and the library never touches it again. */
typedef void (*hb_server_close_cb)(hb_server_t *server);

/* A handler for an application command (HB_CMD_APP_FIRST..HB_CMD_APP_LAST), or one of our
 * extensions (0x0100..0x01FF: the built-in chat handler of HB_CMD_CHAT can be replaced), called on
 * the connection's worker thread for each such frame from a logged-in connection. frame->payload is
 * valid only during the call. A frame past the connection's rate limit (max_conn_qps) is dropped
 * without a call. Return 0, or a negative error to close the connection (counted in bad_frames). */
typedef int (*hb_frame_handler_cb)(hb_conn_t *conn, const hb_frame_t *frame, void *arg);

struct hb_server {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop; /* the control loop given to hb_server_init */
    int port;        /* the bound port, after hb_server_start */
    unsigned nthreads;
    unsigned nsets;
    uint32_t max_connections;
    int err;          /* why hb_server_init or hb_server_start failed (the error it returned) */
    char errstr[256]; /* the same in words, naming the option, address or file; "" when none */
    /* private */
    struct hb_server_impl *impl;
};

/* Prepare a server on the control loop. Allocates its state; nothing listens yet. opts may be NULL
 * (defaults). Returns 0, UV_EINVAL for bad options (the reason goes to hb_server_last_error),
 * UV_ENOMEM. On error nothing needs closing. */
HB_EXTERN int hb_server_init(uv_loop_t *loop, hb_server_t *server, const hb_server_options_t *opts);

/* Register (or replace) the handler for cmd before hb_server_start. Up to 16 handlers, the built-in
 * chat among them. A frame of a command with no handler (an application command nobody registered,
 * or any unknown one) is a bad frame: the connection is closed and counted in bad_frames
 * (HB_CTR_X_BAD_FRAME), as is any frame before login. Returns 0, UV_EINVAL (cmd outside
 * 0x0100..0x01FF and the application range, or NULL cb), UV_ENOBUFS (table full), UV_EBUSY
 * (already started). Control-loop thread. */
HB_EXTERN int hb_server_handle(hb_server_t *server, uint16_t cmd, hb_frame_handler_cb cb,
                               void *arg);

/* Bind the listening socket (shared by the workers; with reuse_port one SO_REUSEPORT socket per
 * worker) and start the workers. Returns 0 or a UV_E* error from bind/listen (UV_EADDRINUSE: the
 * port is taken, also by another server), after which the server must still be closed with
 * hb_server_close. Control-loop thread. */
HB_EXTERN int hb_server_start(hb_server_t *server);

/* server->errstr: why hb_server_init or hb_server_start failed (readable after a failed init
 * too: the struct is the caller's), or "". */
HB_EXTERN const char *hb_server_last_error(const hb_server_t *server);

/* Stop the generators, stop accepting and reading, answer every claim already read once its
 * journal record is durable, flush what is queued to every peer and close every connection (at
 * most close_timeout_ms for peers that do not take their last bytes), stop the workers, close the
 * journal, then call cb on the control loop (cb may be NULL). Control-loop thread; call once.
 * Every successful hb_server_init, whether hb_server_start succeeded or not, is ended this way. */
HB_EXTERN void hb_server_close(hb_server_t *server, hb_server_close_cb cb);

/* Generate count shake envelopes at qps a second, paced evenly inside each second, fed round-robin
 * into the SETs' buckets, each worth shake_amount_min..shake_amount_max cents (the options).
 * Replaces any generation in progress; qps 0 or count 0 stops it. Returns 0 or UV_EINVAL.
 * Control-loop thread. */
HB_EXTERN int hb_server_generate_shake(hb_server_t *server, uint64_t qps, uint64_t count);

/* Generate count send-envelopes at qps a second, each totalling send_total_min..send_total_max
 * cents split among send_recipients distinct random users of [min_user, max_user] (both
 * included; the options); their online recipients are told once each is durable. Returns 0, or
 * UV_EINVAL (fewer than send_recipients users in the range). Control-loop thread. */
HB_EXTERN int hb_server_generate_send(hb_server_t *server, uint64_t qps, uint64_t count,
                                      uint32_t min_user, uint32_t max_user);

/* Queue n shake envelopes now, envelope i worth amounts[i] cents (each >= 1: a batch of shares you
 * split yourself, e.g. with hb_envelope_split), into the SETs' buckets round-robin, each with a
 * fresh shake envelope id; shakes hand them out in order per bucket. amounts is read during the
 * call only. The number queued goes to *queued if not NULL, also on error (then the rest were
 * not). Returns 0 when all n were queued; UV_EINVAL (not started, closing, a 0 amount: then none
 * is); HB_EAGAIN (the store has no durable id reservation yet: try again shortly); UV_ENOBUFS
 * (every bucket is full: bucket_capacity); HB_EIDSPACE (shake ids used up); the journal's sticky
 * error. Control-loop thread. */
HB_EXTERN int hb_server_put_shake_envelopes(hb_server_t *server, const uint32_t *amounts, size_t n,
                                            size_t *queued);

/* Create one send-envelope now of total cents split by the double-mean rule among the count
 * distinct recipients (1..HB_SEND_MAX_RECIPIENTS; read during the call only; total >= count).
 * Its id is stored in *id if not NULL. Its online recipients are told once its journal record is
 * durable: with the reference's notice (HB_CMD_NOTICE) when count is 3, else with HB_CMD_NOTICE_EX,
 * which a reference client does not know. Returns 0, UV_EINVAL (count, total or recipients),
 * HB_EIDSPACE (no send-envelope ids left), HB_ESTORE (the id reservation is not durable yet: try
 * again shortly), the journal's sticky error, UV_ECANCELED (closing), UV_ENOMEM. Control-loop
 * thread. */
HB_EXTERN int hb_server_send_envelope(hb_server_t *server, const uint32_t *recipients,
                                      unsigned count, uint32_t total, uint32_t *id);

/* Queue one frame (whole, encoded) to the online user's connection, from any thread. The bytes are
 * copied. Returns 0, HB_EOFFLINE, UV_ECANCELED (the server is closing), UV_EINVAL (len outside
 * [HB_FRAME_HEADER, HB_FRAME_MAX]), UV_ENOMEM. Delivery can still fail silently if the user
 * disconnects meanwhile. In a fleet (opts.redis), a user not connected here is looked up in the
 * fleet's registry and the frame goes to the instance holding it: 0 then means it was taken for
 * that, not that the user is online (docs/fleet.md). */
HB_EXTERN int hb_server_send_to_user(hb_server_t *server, uint32_t user, const void *frame,
                                     size_t len);

/* Name application counter slot `slot` (HB_CTR_APP_0..HB_CTR_APP_4 of hongbao/counters.h) before
 * hb_server_start: what your handlers count there with hb_conn_count is then shown in /metrics as
 * "hongbao_<name>_total" and "hongbao_<name>_per_second" and in /stats by name, like the server's
 * own counters. name is snake_case, help one line (NULL: the name); both are copied (the rules of
 * hb_counter_names_add). A monitor learns the same names from its own options (hb-monitor
 * --counter server:SLOT=NAME). Returns 0, UV_EINVAL, UV_EEXIST (slot or name taken), UV_EBUSY
 * (started). Control-loop thread. */
HB_EXTERN int hb_server_add_counter(hb_server_t *server, unsigned slot, const char *name,
                                    const char *help);
/* The names given so far (valid as long as the server), e.g. for a monitor in the same process. */
HB_EXTERN const hb_counter_names_t *hb_server_counter_names(const hb_server_t *server);

/* The server's counters (read them with hb_counters_snapshot from any thread). */
HB_EXTERN hb_counters_t *hb_server_counters(hb_server_t *server);

/* The network interface whose rates the server counts (opts.nic), "" when none; after
 * hb_server_start. Control-loop thread. */
HB_EXTERN const char *hb_server_nic(const hb_server_t *server);

/* Users online now, and connections open now (any thread; snapshots). */
HB_EXTERN size_t hb_server_users_online(hb_server_t *server);
HB_EXTERN size_t hb_server_connections(hb_server_t *server);

/* Envelopes waiting in all buckets now, and in SET set's bucket (0 for a set out of range); any
 * thread, snapshots. */
HB_EXTERN size_t hb_server_envelopes_queued(hb_server_t *server);
HB_EXTERN size_t hb_server_envelopes_queued_in(hb_server_t *server, unsigned set);

/* The journal's sticky error (a failed write, fdatasync or rename), or 0 while it is healthy. After
 * one, claims are answered HB_CLAIM_TRY_AGAIN and send-envelopes refused (HB_ESTORE) until a
 * restart; shakes go on. Any thread. */
HB_EXTERN int hb_server_store_error(hb_server_t *server);

/* Register the control routes on an HTTP server running on the control loop: GET /yaohongbao and
 * /shake-envelopes (qps, sum), GET /fahongbao and /send-envelopes (qps, sum, min, max), GET
 * /metrics (Prometheus text of the last whole second) and GET /stats (JSON). Parameters are
 * validated: 400 with a message. Returns 0 or an hb_http_server_route error. */
HB_EXTERN int hb_server_mount_http(hb_server_t *server, hb_http_server_t *http);

/* On a connection, from within a frame handler or on_conn_close (its worker thread). */
HB_EXTERN uint32_t hb_conn_user(const hb_conn_t *conn);
/* Your own pointer for this connection, NULL until you set one; the server never reads or frees
 * it (free it in on_conn_close). */
HB_EXTERN void hb_conn_set_data(hb_conn_t *conn, void *data);
HB_EXTERN void *hb_conn_data(const hb_conn_t *conn);
HB_EXTERN unsigned hb_conn_set(const hb_conn_t *conn);
HB_EXTERN hb_server_t *hb_conn_server(const hb_conn_t *conn);
/* Add delta to counter slot `slot` (0..59: usually one of your application's, HB_CTR_APP_0..4,
 * named with hb_server_add_counter; a reference slot or one of the server's adds to what the
 * server counts there) for this connection's worker: the same per-thread shard the server counts
 * in, so it shows in /metrics, /stats and the monitor's reports. From within a frame handler or
 * on_conn_close (the connection's worker thread); slots past 59 are ignored. */
HB_EXTERN void hb_conn_count(hb_conn_t *conn, unsigned slot, uint64_t delta);
/* Queue bytes (whole frames) to this connection; copied. Returns 0 or UV_ENOMEM; a peer whose
 * queued output passes max_output is disconnected. */
HB_EXTERN int hb_conn_send(hb_conn_t *conn, const void *frame, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_SERVER_H */
