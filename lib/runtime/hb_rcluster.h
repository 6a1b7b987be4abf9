/* The Redis Cluster client: commands routed to the master that owns their key's slot, over
 * hiredis's async API and its libuv adapter, with the cluster's redirections, back-off and
 * reconnects handled here. Internal to the library (built with HB_HAVE_REDIS), not installed.
 *
 * One instance per libuv loop; every call, and every callback, on that loop's thread. It is not
 * thread-safe.
 *
 * What it does with the cluster's answers (docs/fleet.md, "The cluster client"):
 *  - The slot -> master table comes from CLUSTER SLOTS, asked of any reachable seed or known node,
 *    at open and again after any redirection, disconnect or failure.
 *  - MOVED: that slot's entry is updated (and a full refresh scheduled); the command is resent.
 *  - ASK: ASKING then the command, to the node named, once; the table is left as it is.
 *  - TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN and a connection lost before the command's answer:
 *    the command waits a back-off (doubling from backoff_min_ms to backoff_max_ms) and a fresh
 *    topology, then is resent; until its deadline.
 *  - NOSCRIPT (for hb__rcluster_eval): SCRIPT LOAD on that node, then the script again.
 *  - A disconnect: the node is reconnected on demand, not before its own back-off has passed.
 *
 * Exactly-once is the caller's business. A command is resent only when Redis said it did not run
 * it (the errors above) or when its connection failed before its answer came; in the second case
 * it may have run. A caller that must not run a command twice makes it idempotent (a script that
 * records what it did and answers the same again).
 *
 * Deadlines: every command has timeout_ms from its submission, retries included. The callback
 * then gets UV_ETIMEDOUT when the command was sent and not answered (its connection is dropped:
 * whatever was behind it on that connection is resent), or HB_ESTORE when it could not be sent
 * (no topology, the node unreachable, still backing off). A WAIT's wait_ms should be well below
 * timeout_ms. */
#ifndef HB_RCLUSTER_H
#define HB_RCLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "hongbao/common.h"
#include "hb_redis_hash.h"

typedef struct hb_rcluster hb_rcluster_t;

/* Called once per command. err == 0: reply is the command's reply (it may be a REDIS_REPLY_ERROR
 * other than the routing errors above, e.g. a script's own error, or SCRIPT LOAD's refusal of a
 * script that does not compile). err < 0: the command could not be delivered or answered before
 * its deadline (HB_ESTORE, UV_ETIMEDOUT), or the client is closing (UV_ECANCELED), or its answer
 * could not be kept while WAIT's was awaited (HB_ENOMEM: it did run); reply is NULL.
 * For a command sent with replicas > 0, acked is the number of replicas WAIT reported; fewer than
 * asked when WAIT timed out or its answer was lost after the command's own (else 0). The reply is
 * valid only during the callback. The callback may submit commands and may close the client. */
typedef void (*hb_rcluster_cb)(hb_rcluster_t *rc, int err, const redisReply *reply, int acked,
                               void *arg);

typedef struct hb_rcluster_options {
    const char *seeds;       /* "host:port[,host:port...]": any nodes of the cluster, IP literals */
    uint32_t timeout_ms;     /* a command's deadline, retries included (default 2000) */
    uint32_t backoff_min_ms; /* reconnect / TRYAGAIN back-off, doubling (default 10) */
    uint32_t backoff_max_ms; /* (default 1000) */
    hb_log_cb log;           /* connections lost and made, topology changes; may be NULL */
    void *log_arg;
} hb_rcluster_options_t;

/* Counters since open, for /stats and the tests. */
typedef struct hb_rcluster_stats {
    uint64_t sent;        /* commands written to a node, resends included */
    uint64_t waits;       /* WAITs sent (one answers for a group of commands) */
    uint64_t moved;       /* MOVED answers */
    uint64_t ask;         /* ASK answers */
    uint64_t tryagain;    /* TRYAGAIN answers */
    uint64_t clusterdown; /* CLUSTERDOWN answers */
    uint64_t masterdown;  /* MASTERDOWN answers */
    uint64_t loading;     /* LOADING answers */
    uint64_t noscript;    /* NOSCRIPT answers (each followed by a SCRIPT LOAD) */
    uint64_t reconnects;  /* connections made to a node that had one before */
    uint64_t refreshes;   /* CLUSTER SLOTS asked */
    uint64_t timeouts;    /* commands that reached their deadline (HB_ESTORE or UV_ETIMEDOUT) */
} hb_rcluster_stats_t;

/* Start a client on loop: parses the seeds and asks one of them for the topology (in the
 * background: commands submitted meanwhile wait for it). Returns 0 with *rc, HB_EINVAL (no seed,
 * a seed that is not HOST:PORT with port > 0, a back-off of 0 after defaults), HB_ENOMEM. */
int hb__rcluster_open(uv_loop_t *loop, const hb_rcluster_options_t *o, hb_rcluster_t **rc);

/* Send a command (argv/argvlen as redisAsyncCommandArgv; argvlen NULL means strlen; both are
 * copied) to the master of slot (hb__keyslot of the command's key). Returns 0, and cb runs once;
 * or HB_EINVAL, HB_ENOMEM, UV_ECANCELED (closing), and cb never runs. */
int hb__rcluster_command(hb_rcluster_t *rc, uint16_t slot, int argc, const char **argv,
                         const size_t *argvlen, hb_rcluster_cb cb, void *arg);

/* The same, then `WAIT replicas wait_ms` on the same node connection: the callback gets the
 * command's reply and WAIT's count. WAITs are committed in groups: the commands sent to a node
 * while its WAIT is out (with the same replicas and wait_ms) share the next one, sent once that is
 * answered; WAIT counts the replicas that have every earlier write of its connection, and Redis
 * runs nothing behind a blocked WAIT on that connection. */
int hb__rcluster_command_wait(hb_rcluster_t *rc, uint16_t slot, int argc, const char **argv,
                              const size_t *argvlen, int replicas, uint32_t wait_ms,
                              hb_rcluster_cb cb, void *arg);

/* A Lua script, registered once: the text is copied and its SHA1 computed here; it lives until the
 * client is freed. Returns 0 with *script, HB_EINVAL, HB_ENOMEM. */
typedef struct hb_rscript hb_rscript_t;
int hb__rcluster_script(hb_rcluster_t *rc, const char *lua, hb_rscript_t **script);

/* The script's SHA1 (40 hex digits), as EVALSHA names it. */
const char *hb__rscript_sha(const hb_rscript_t *script);

/* Run a script of rc's with EVALSHA: argv holds its nkeys keys, then its arguments (argc in all);
 * replicas > 0 adds WAIT as hb__rcluster_command_wait does. NOSCRIPT loads it on that node
 * and runs it again. Returns as hb__rcluster_command. */
int hb__rcluster_eval(hb_rcluster_t *rc, const hb_rscript_t *script, uint16_t slot, int nkeys,
                      int argc, const char **argv, const size_t *argvlen, int replicas,
                      uint32_t wait_ms, hb_rcluster_cb cb, void *arg);

/* Counters for /stats and tests. */
void hb__rcluster_stats(const hb_rcluster_t *rc, hb_rcluster_stats_t *out);

/* Where the table sends slot now: the master's host (host_size bytes) and port. Returns 0, or
 * HB_ENOENT when the table has no master for it. */
int hb__rcluster_slot_owner(const hb_rcluster_t *rc, uint16_t slot, char *host, size_t host_size,
                            int *port);

/* Fail every pending command with UV_ECANCELED (their callbacks run, here), close all connections
 * and free the client on the loop: closed(arg) runs once every libuv handle it had is closed. rc is
 * not to be used after this call. */
void hb__rcluster_close(hb_rcluster_t *rc, void (*closed)(void *arg), void *arg);

#endif /* HB_RCLUSTER_H */
