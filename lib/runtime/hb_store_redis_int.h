/* The Redis store's parts (hb_store_redis.c: claims, ids, send-envelopes, open and close;
 * hb_store_redis_fleet.c: who is where, the inboxes, frames for users elsewhere;
 * hb_store_redis_budget.c: the shake budget), and what they share. Internal. */
#ifndef HB_STORE_REDIS_INT_H
#define HB_STORE_REDIS_INT_H

#include <stdint.h>

#include "hb_fleet_lua.h"
#include "hb_internal.h"
#include "hb_rcluster.h"
#include "hb_store.h"
#include "hongbao/book.h"
#include "hongbao/envelope.h"
#include "hongbao/idmap.h"

#define SEND_ID_BLOCK  1024
#define SHAKE_ID_BLOCK 65536
#define POOL_CHUNK     256
#define INBOX_MAXLEN   "100000" /* an instance's inbox keeps about this many messages */
#define INBOX_BATCH    "512"
#define INBOX_BLOCK_MS "1000"
#define NOTICE_MAX     (HB_FRAME_HEADER + 8 + 4 * HB_SEND_MAX_RECIPIENTS)
/* The shake budget (docs/fleet.md). */
#define PARTITIONS   HB_FLEET_PARTITIONS
#define LEASE_MS     30000 /* a lease not renewed for this long expires (default) */
#define TICK_MS      20    /* draws, reports and puts are batched over this */
#define DRAW_BATCH   64    /* envelopes a draw asks for */
#define DRAW_LOW     32    /* a bucket holding fewer is topped up */
#define BATCH_MAX    256   /* envelopes in one put or report */
#define PUT_BACKLOG  65536 /* envelopes made here and not yet stored, before put_shake refuses */
#define GEN_LEASE_MS 3000  /* the fleet's generator: a standby takes over within about this */

typedef struct rstore rstore_t;

/* One shake envelope of the budget as this instance knows it. */
typedef struct bentry {
    uint32_t idx; /* its place in the shake id space (hb_envelope_id_index) */
    uint32_t amount;
    uint32_t epoch; /* made for this plan of the fleet's generator (0: none) */
    uint8_t part;   /* its partition: idx % PARTITIONS */
} bentry_t;

/* What one SET's bucket holds from the budget, in the order it was pushed: its first
 * (popped - seen) entries have been taken by shakes since the last look. */
typedef struct bshadow {
    hb__fifo_t fifo; /* of bentry_t */
    uint32_t seen;   /* hb_envq_popped when last looked */
} bshadow_t;

/* A batch of envelopes of one partition on its way to a script (put, report or return), kept
 * until Redis answered: resent as it is after a failure (every script skips what it did). */
typedef struct bbatch {
    struct bbatch *next;
    struct rstore *R;
    int kind; /* BATCH_PUT, BATCH_REPORT, BATCH_RETURN */
    int final;
    uint8_t part;
    size_t n;
    bentry_t e[BATCH_MAX];
} bbatch_t;

enum { BATCH_PUT, BATCH_REPORT, BATCH_RETURN };

typedef struct budget {
    bshadow_t *shadow;           /* per SET */
    hb__fifo_t made[PARTITIONS]; /* of bentry_t: made here, not yet sent to a put */
    size_t made_count;
    bbatch_t *failed; /* batches to send again */
    size_t in_flight; /* batches sent, not answered */
    uint64_t draw_seq;
    int drawing; /* one draw at a time (a retry must find its answer in Redis) */
    unsigned draw_part, draw_set;
    uint64_t draw_retry_seq; /* nonzero: the draw in flight, or to send again with its number */
    unsigned retry_part, retry_set; /* that draw's partition and SET */
    uint64_t renewed_ms[PARTITIONS];
    size_t held[PARTITIONS];  /* entries of each partition in this instance's shadows */
    int put_busy[PARTITIONS]; /* a put of the partition is on its way (or waits to be resent) */
    /* the fleet's generator, when this instance takes part (gen_lease.lua) */
    int gen_role;   /* it may be the generator */
    int gen_active; /* it holds the lease for gen_epoch */
    int gen_asking; /* a lease call or the made counts are on their way */
    int gen_known;  /* gen_made is what the plan has made */
    uint64_t gen_epoch, gen_qps, gen_total, gen_start_ms, gen_made;
    int64_t gen_clock;      /* Redis's clock minus the loop's, ms */
    uint64_t gen_leased_ms; /* the last lease call */
    unsigned gen_made_left; /* made counts still to come */
    /* The last plan asked of this instance (hb__rs_plan_shake), stored until Redis has it. */
    int plan_pending, plan_sending;
    uint64_t plan_qps, plan_count, plan_seq, plan_sent_seq, plan_tries;
    uint64_t plan_retry_ms; /* not sent again before this (loop time) */
    uint64_t plan_nonce;    /* this process's: a plan's token is instance:nonce:seq */
    int stopping;           /* close: the last reports and returns are out */
    int closing_clients;
    uint64_t swept_ms; /* the last sweep of expired leases */
} budget_t;

typedef struct rworker rworker_t;

/* One claim on its way to Redis and back (a pool per worker: no allocation per claim). */
typedef struct rclaim {
    rworker_t *w;
    hb_set_t *set;
    uint64_t gen;
    uint32_t user;
    uint32_t envelope_id;
    uint8_t ext;
    struct rclaim *next_free;
} rclaim_t;

typedef struct rchunk {
    struct rchunk *next;
    rclaim_t claims[POOL_CHUNK];
} rchunk_t;

/* A login on this worker, as login.lua numbered it fleet-wide. */
typedef struct flogin {
    uint64_t gen;   /* the connection's generation (this server's) */
    int64_t number; /* login.lua's number; 0 while asked */
    int gone;       /* the connection left before the number came */
    unsigned tries; /* login.lua sent this many times (a timed-out one is sent again) */
} flogin_t;

/* A login waiting for a place among the worker's calls in flight. */
typedef struct lwait {
    uint32_t user;
    uint64_t gen;
    hb_set_t *set;
} lwait_t;

/* A worker's part: touched only on its thread. */
struct rworker {
    rstore_t *R;
    hb_worker_t *worker;
    hb_rcluster_t *rc; /* NULL until the first claim; again after close */
    hb_rscript_t *s_claim, *s_login, *s_logout;
    int closing;
    rclaim_t *free;
    rchunk_t *chunks;
    hb_idmap_t logins;     /* user -> flogin_t: this worker's logins as the fleet numbered them */
    unsigned logins_out;   /* login.lua calls sent and not answered (at most LOGIN_WINDOW) */
    hb__fifo_t login_wait; /* of lwait_t: logins waiting for the window, oldest first */
    size_t *pending;       /* per SET of this worker: claims sent, not answered */
    int *draining;         /* per SET: shutdown phase 3 waits for its pending claims */
    unsigned drained;      /* SETs of this worker done with phase 3 */
};

/* Ids of one kind from blocks reserved in Redis. Control loop only. */
typedef struct rids {
    hb_envelope_kind_t kind;
    const char *field;
    uint32_t next, last; /* the block in use: next..last; next 0: none */
    uint32_t mark;       /* the space's mark as last seen in Redis */
    uint32_t block;
    int asking;
    rstore_t *R;
} rids_t;

struct rstore {
    hb_store_t *st;
    hb_setgroup_t *g;
    uv_loop_t *loop;
    hb_rand_t *rng;
    hb_rcluster_options_t copts;
    char seeds[512];
    char instance[128];
    int replicas;
    uint32_t wait_ms;
    uint32_t lease_ms;
    hb_rcluster_t *control;            /* the control loop's client */
    void (*on_closed)(hb_store_t *st); /* st->on_closed when close was called */
    hb_rscript_t *s_create, *s_reserve;
    hb_rcluster_t *inbox; /* a client of its own: XREAD BLOCK holds its connection */
    char inbox_key[160];  /* hb:{i:<instance>}:in */
    char cursor_key[160]; /* hb:{i:<instance>}:cur, the last inbox message read */
    char last_id[64];     /* the inbox's last message read ("$": from now on) */
    int inbox_reading;
    unsigned clients_open; /* while closing: the clients not yet closed */
    hb_rscript_t *s_put, *s_draw, *s_report, *s_return, *s_plan, *s_lease;
    uint32_t amount_min, amount_max; /* the generator's shake envelopes */
    /* Frames for users not connected here, from any thread, taken to the control loop. */
    uv_mutex_t away_lock;
    struct away *away_head, *away_tail; /* under away_lock */
    size_t away_count;                  /* under away_lock */
    uv_async_t away_async;
    int away_open;
    int away_lock_ready;
    uv_timer_t tick; /* draws, reports, puts, renewals */
    int tick_open;
    budget_t budget;
    rworker_t *workers;
    unsigned nworkers, nsets;
    rids_t send_ids, shake_ids;
    struct rcreate *create_retry; /* send-envelope creations to try again (the tick's) */
    int closing;
};

static inline rstore_t *hb__rs_of(hb_store_t *st)
{
    return st->impl;
}

static inline uint16_t hb__rs_slot(const char *key, size_t len)
{
    return hb__keyslot(key, len);
}

/* hb_store_redis.c */
rclaim_t *hb__rs_claim_get(rworker_t *w);
void hb__rs_claim_put(rworker_t *w, rclaim_t *c);
int hb__rs_worker_client(rworker_t *w);
void hb__rs_close_clients(rstore_t *R);
/* The tick's: send again the creations whose back-off is over. */
void hb__rs_create_retry(rstore_t *R);
/* A callback for commands whose answer does not matter. */
void hb__rs_ignored(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg);

/* hb_store_redis_fleet.c */
void hb__rs_login(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen);
void hb__rs_logout(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen);
int hb__rs_send_away(hb_store_t *st, uint32_t user, const uint8_t *frame, size_t len);
void hb__rs_on_away(uv_async_t *h);
void hb__rs_away_free_all(rstore_t *R);
void hb__rs_forward_notices(rstore_t *R, const hb_sendenv_t *e, unsigned away, const uint8_t *frame,
                            size_t len);
void hb__rs_inbox_start(rstore_t *R);

/* hb_store_redis_budget.c */
int hb__rs_put_shake(hb_store_t *st, uint32_t id, uint32_t amount);
void hb__rs_on_tick(uv_timer_t *t);
int hb__rs_budget_init(rstore_t *R);
int hb__rs_plan_shake(hb_store_t *st, uint64_t qps, uint64_t count);
void hb__rs_budget_free(rstore_t *R);
void hb__rs_budget_stop(rstore_t *R);

#endif /* HB_STORE_REDIS_INT_H */
