/* The Redis store: money kept in Redis Cluster, shared by every instance of a fleet
 * (docs/fleet.md).
 *
 * A claim is judged by claim.lua where the envelope lives, atomically and idempotently, from the
 * claimant's own worker thread: each worker talks to the cluster through a cluster client of its
 * own (hb_rcluster.h, one per loop), opened on its first claim, closed when its SETs have drained.
 * A send-envelope is split here, stored by send_create.lua from the control loop, and announced
 * only once Redis acknowledged it (after WAIT when replicas are asked for). Ids come from blocks
 * reserved in Redis by compare-and-set (reserve.lua), so no instance ever uses an id another used.
 *
 * Durability is Redis's: a reply comes once the master has applied the script, which with
 * `appendfsync always` means it is in the master's AOF on disk; with replicas > 0 a grant is
 * acknowledged only once WAIT counted that many replicas, else it is answered "try again" (the
 * grant is made; the retry learns it as a repeat). A claim whose command failed (Redis
 * unreachable past the deadline) is answered "try again": if it was applied after all, the retry
 * learns the same share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb_fleet_lua.h"
#include "hb_rcluster.h"
#include "hb_store.h"
#include "hongbao/book.h"
#include "hongbao/envelope.h"
#include "hongbao/idmap.h"
#include "hongbao/registry.h"

#define SEND_ID_BLOCK  1024
#define SHAKE_ID_BLOCK 65536
#define POOL_CHUNK     256
#define INBOX_MAXLEN   "100000" /* an instance's inbox keeps about this many messages */
#define INBOX_BATCH    "512"
#define INBOX_BLOCK_MS "1000"
#define NOTICE_MAX     (HB_FRAME_HEADER + 8 + 4 * HB_SEND_MAX_RECIPIENTS)
/* The shake budget (docs/fleet.md). Every instance must agree on PARTITIONS: a partition's bitmap
 * is indexed by envelope index / PARTITIONS. */
#define PARTITIONS  16
#define LEASE_MS    30000 /* a lease not renewed for this long expires (default) */
#define TICK_MS     20    /* draws, reports and puts are batched over this */
#define DRAW_BATCH  64    /* envelopes a draw asks for */
#define DRAW_LOW    32    /* a bucket holding fewer is topped up */
#define BATCH_MAX   256   /* envelopes in one put or report */
#define PUT_BACKLOG 65536 /* envelopes made here and not yet stored, before put_shake refuses */

typedef struct rstore rstore_t;

/* One shake envelope of the budget as this instance knows it. */
typedef struct bentry {
    uint32_t idx; /* its place in the shake id space (hb_envelope_id_index) */
    uint32_t amount;
    uint8_t part; /* its partition: idx % PARTITIONS */
} bentry_t;

/* A FIFO of entries (a ring that grows). */
typedef struct bfifo {
    bentry_t *e;
    size_t head, count, cap;
} bfifo_t;

/* What one SET's bucket holds from the budget, in the order it was pushed: its first
 * (popped - seen) entries have been taken by shakes since the last look. */
typedef struct bshadow {
    bfifo_t fifo;
    uint32_t seen; /* hb_envq_popped when last looked */
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
    bshadow_t *shadow;        /* per SET */
    bfifo_t made[PARTITIONS]; /* made here (generator), not yet sent to a put */
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
    int stopping;             /* close: the last reports and returns are out */
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
} flogin_t;

/* A worker's part: touched only on its thread. */
struct rworker {
    rstore_t *R;
    hb_worker_t *worker;
    hb_rcluster_t *rc; /* NULL until the first claim; again after close */
    hb_rscript_t *s_claim, *s_login, *s_logout;
    int closing;
    rclaim_t *free;
    rchunk_t *chunks;
    hb_idmap_t logins; /* user -> flogin_t: this worker's logins as the fleet numbered them */
    size_t *pending;   /* per SET of this worker: claims sent, not answered */
    int *draining;     /* per SET: shutdown phase 3 waits for its pending claims */
    unsigned drained;  /* SETs of this worker done with phase 3 */
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
    hb_rscript_t *s_put, *s_draw, *s_report, *s_return;
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
    int closing;
};

static rstore_t *rstore_of(hb_store_t *st)
{
    return st->impl;
}

static void env_key(char *out, size_t n, uint32_t id, size_t *len)
{
    int k = snprintf(out, n, "hb:{e:%u}", (unsigned)id);
    *len = (size_t)k;
}

static uint16_t slot_of(const char *key, size_t len)
{
    return hb__keyslot(key, len);
}

/* ---- claims, on the claimant's worker ---- */

static rclaim_t *claim_get(rworker_t *w)
{
    if (w->free == NULL) {
        rchunk_t *c = malloc(sizeof *c);
        if (c == NULL)
            return NULL;
        c->next = w->chunks;
        w->chunks = c;
        for (size_t i = 0; i < POOL_CHUNK; i++) {
            c->claims[i].next_free = w->free;
            w->free = &c->claims[i];
        }
    }
    rclaim_t *c = w->free;
    w->free = c->next_free;
    return c;
}

static void claim_put(rworker_t *w, rclaim_t *c)
{
    c->next_free = w->free;
    w->free = c;
}

static void worker_closed(void *arg)
{
    (void)arg; /* the worker's loop ends once this was the last handle */
}

/* The worker's SETs have all drained: its client goes (its handles must close for the loop to
 * end). */
static void worker_maybe_close(rworker_t *w)
{
    if (w->drained < w->worker->nsets || w->rc == NULL || w->closing)
        return;
    w->closing = 1;
    hb_rcluster_t *rc = w->rc;
    hb__rcluster_close(rc, worker_closed, w);
    w->rc = NULL;
}

static void set_settled(rworker_t *w, unsigned local)
{
    if (w->draining[local] && w->pending[local] == 0) {
        w->draining[local] = 0;
        w->drained++;
        w->R->g->phase_done(w->R->g);
        worker_maybe_close(w);
    }
}

static void on_claim(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc;
    rclaim_t *c = arg;
    rworker_t *w = c->w;
    rstore_t *R = w->R;
    uint32_t result = HB_CLAIM_TRY_AGAIN, amount = 0;
    uint64_t now_s = hb__now_s();
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
        result = (uint32_t)reply->element[0]->integer;
        amount = (uint32_t)reply->element[1]->integer;
        if ((result == HB_CLAIM_GRANTED || result == HB_CLAIM_REPEAT) && acked < R->replicas) {
            /* Made, not yet where the operator asked it to be: the retry learns it. */
            result = HB_CLAIM_TRY_AGAIN;
            amount = 0;
        }
        if (result > HB_CLAIM_NO_ENVELOPE) {
            result = HB_CLAIM_TRY_AGAIN;
            amount = 0;
        }
    }
    if (result == HB_CLAIM_TRY_AGAIN)
        hb__set_count(c->set, HB_CTR_X_STORE_ERRORS, now_s, 1);
    if (result == HB_CLAIM_GRANTED) {
        hb__set_count(c->set, HB_CTR_CLAIMS_GRANTED, now_s, 1);
        hb__set_count(c->set, HB_CTR_SEND_AMOUNT_CLAIMED, now_s, amount);
    }
    hb__set_answer_claim(c->set, c->set->index, c->user, c->gen, c->envelope_id, amount, result,
                         c->ext);
    hb__set_flush(c->set); /* a reply outside a read: nothing else writes it */
    unsigned local = c->set->index - w->worker->first_set;
    w->pending[local]--;
    claim_put(w, c);
    set_settled(w, local);
}

static int worker_client(rworker_t *w)
{
    if (w->rc != NULL)
        return 0;
    if (w->closing)
        return UV_ECANCELED;
    int r = hb__rcluster_open(&w->worker->loop, &w->R->copts, &w->rc);
    if (r == 0 && ((r = hb__rcluster_script(w->rc, hb__lua_claim, &w->s_claim)) != 0 ||
                   (r = hb__rcluster_script(w->rc, hb__lua_login, &w->s_login)) != 0 ||
                   (r = hb__rcluster_script(w->rc, hb__lua_logout, &w->s_logout)) != 0)) {
        hb__rcluster_close(w->rc, worker_closed, w);
        w->rc = NULL;
    }
    return r;
}

static void store_claim(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen,
                        uint32_t envelope_id, uint8_t ext)
{
    rstore_t *R = rstore_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    rclaim_t *c = NULL;
    int r = worker_client(w);
    if (r == 0 && (c = claim_get(w)) == NULL)
        r = HB_ENOMEM;
    if (r == 0) {
        *c = (rclaim_t){
            .w = w, .set = set, .gen = gen, .user = user, .envelope_id = envelope_id, .ext = ext};
        char key[32], u[16];
        size_t klen;
        env_key(key, sizeof key, envelope_id, &klen);
        int ulen = snprintf(u, sizeof u, "%u", (unsigned)user);
        const char *argv[] = {key, u};
        size_t lens[] = {klen, (size_t)ulen};
        w->pending[set->index - w->worker->first_set]++;
        r = hb__rcluster_eval(w->rc, w->s_claim, slot_of(key, klen), 1, 2, argv, lens, R->replicas,
                              R->wait_ms, on_claim, c);
        if (r != 0) {
            w->pending[set->index - w->worker->first_set]--;
            claim_put(w, c);
        }
    }
    if (r != 0) {
        hb__set_count(set, HB_CTR_X_STORE_ERRORS, hb__now_s(), 1);
        hb__set_answer_claim(set, set->index, user, gen, envelope_id, 0, HB_CLAIM_TRY_AGAIN, ext);
    }
}

static void store_handle(hb_store_t *st, hb_set_t *set, const hb_set_msg_t *m)
{
    (void)st, (void)set, (void)m; /* this store posts nothing to the SETs */
}

static void store_expire(hb_store_t *st, hb_set_t *set, uint64_t now_s)
{
    (void)st, (void)set, (void)now_s; /* envelopes live in Redis (docs/fleet.md: retention) */
}

static void store_drain(hb_store_t *st, hb_set_t *set, uint64_t target)
{
    (void)target;
    rstore_t *R = rstore_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    w->draining[set->index - w->worker->first_set] = 1;
    set_settled(w, set->index - w->worker->first_set);
}

static void store_give_up(hb_store_t *st, hb_set_t *set)
{
    /* The close deadline passed with claims still out: closing the client answers each "try
     * again" (its callback runs with UV_ECANCELED), which settles the SET. */
    rstore_t *R = rstore_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    if (w->rc != NULL && !w->closing) {
        w->closing = 1;
        hb_rcluster_t *rc = w->rc;
        w->rc = NULL;
        hb__rcluster_close(rc, worker_closed, w);
    }
}

static uint64_t store_drain_target(hb_store_t *st)
{
    (void)st;
    return 0;
}

/* ---- ids, on the control loop ---- */

static void ids_ask(rids_t *s);

static void on_reserve(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc;
    rids_t *s = arg;
    s->asking = 0;
    if (s->R->closing)
        return;
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER)
        return; /* asked again on the next take */
    uint32_t mark = (uint32_t)reply->element[1]->integer;
    if (reply->element[0]->integer == 1 && acked >= s->R->replicas) { /* ours: mark + 1 .. */
        s->next = hb_envelope_id_add(s->kind, s->mark, 1);
        s->last = mark;
        s->mark = mark;
        return;
    }
    if (reply->element[0]->integer == 1) { /* ours, not yet where the operator wants it */
        s->mark = mark;                    /* skipped: never handed out, never reused */
        ids_ask(s);
        return;
    }
    s->mark = mark; /* another instance reserved first: ask again from there */
    ids_ask(s);
}

static void ids_ask(rids_t *s)
{
    rstore_t *R = s->R;
    if (s->asking || R->control == NULL)
        return;
    uint32_t want = hb_envelope_id_add(s->kind, s->mark, s->block);
    if (want == 0)
        return; /* the space is used up */
    char expected[16], wanted[16];
    int el = snprintf(expected, sizeof expected, "%u", (unsigned)s->mark);
    int wl = snprintf(wanted, sizeof wanted, "%u", (unsigned)want);
    static const char key[] = "hb:{ids}";
    const char *argv[] = {key, s->field, expected, wanted};
    size_t lens[] = {sizeof key - 1, strlen(s->field), (size_t)el, (size_t)wl};
    if (hb__rcluster_eval(R->control, R->s_reserve, slot_of(key, sizeof key - 1), 1, 4, argv, lens,
                          R->replicas, R->wait_ms, on_reserve, s) == 0)
        s->asking = 1;
}

/* The next id of s's block; HB_EAGAIN while a block is on its way; HB_EIDSPACE. */
static int ids_take(rids_t *s, uint32_t *id)
{
    if (s->next == 0 || s->next > s->last || hb_envelope_id_kind(s->next) != (int)s->kind) {
        s->next = 0;
        if (hb_envelope_id_add(s->kind, s->mark, 1) == 0)
            return HB_EIDSPACE;
        ids_ask(s);
        return HB_EAGAIN;
    }
    *id = s->next;
    s->next = s->next == s->last ? 0 : hb_envelope_id_add(s->kind, s->next, 1);
    if (s->next == 0)
        ids_ask(s); /* the next block while this one's last id goes out */
    return 0;
}

static int store_shake_id(hb_store_t *st, uint32_t *id)
{
    return ids_take(&rstore_of(st)->shake_ids, id);
}

/* ---- send-envelopes, on the control loop ---- */

static void forward_notices(rstore_t *R, const hb_sendenv_t *e, unsigned away, const uint8_t *frame,
                            size_t len);

typedef struct rcreate {
    rstore_t *R;
    hb_sendenv_t e;
} rcreate_t;

static void on_create(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc;
    rcreate_t *c = arg;
    rstore_t *R = c->R;
    int ok = err == 0 && reply != NULL && reply->type == REDIS_REPLY_INTEGER &&
             reply->integer == 1 && acked >= R->replicas;
    if (ok && !R->closing) {
        hb__group_count_control(R->g, HB_CTR_SEND_CREATED, 1);
        hb__group_count_control(R->g, HB_CTR_SEND_AMOUNT_ISSUED, c->e.total);
        uint8_t frame[NOTICE_MAX];
        int len = hb__store_notice_frame(&c->e, frame, sizeof frame);
        if (len > 0) {
            unsigned away = hb__store_announce(R->g, NULL, &c->e, frame, (size_t)len);
            forward_notices(R, &c->e, away, frame, (size_t)len);
        }
    } else {
        /* Not known durable: nobody hears of it. If it was stored after all, it is an envelope
         * nobody was told of, which its recipients cannot claim and the audit counts as issued
         * and unclaimed. */
        hb__group_count_control(R->g, HB_CTR_X_STORE_ERRORS, 1);
        if (err != 0 || reply == NULL || reply->type == REDIS_REPLY_ERROR)
            hb__group_log(R->g, "send-envelope %u not created: %s", (unsigned)c->e.id,
                          reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                            : hb_strerror(err));
    }
    free(c);
}

static int store_create_send(hb_store_t *st, const uint32_t *recipients, unsigned count,
                             uint32_t total, uint32_t *id)
{
    rstore_t *R = rstore_of(st);
    if (recipients == NULL || count < 1 || count > HB_SEND_MAX_RECIPIENTS)
        return HB_EINVAL;
    rcreate_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return HB_ENOMEM;
    c->R = R;
    hb_sendenv_t *e = &c->e;
    e->count = (uint8_t)count;
    e->total = total;
    memcpy(e->recipients, recipients, count * sizeof *recipients);
    int r = hb_envelope_split(total, count, R->rng, e->shares);
    if (r != 0 || hb_sendenv_check(e) != NULL) {
        free(c);
        return HB_EINVAL;
    }
    r = ids_take(&R->send_ids, &e->id);
    if (r != 0) {
        free(c);
        return r == HB_EAGAIN ? HB_ESTORE : r;
    }
    e->created_s = hb__now_s();
    /* KEYS[1] = the envelope; total, created ms, creator, then user, share pairs. */
    char key[32], num[2 + 2 * HB_SEND_MAX_RECIPIENTS][24];
    const char *argv[4 + 2 * HB_SEND_MAX_RECIPIENTS];
    size_t lens[4 + 2 * HB_SEND_MAX_RECIPIENTS];
    int n = 0, k = 0;
    env_key(key, sizeof key, e->id, &lens[n]);
    argv[n++] = key;
#define PUT_NUM(fmt, v)                                                                            \
    do {                                                                                           \
        lens[n] = (size_t)snprintf(num[k], sizeof num[k], fmt, v);                                 \
        argv[n++] = num[k++];                                                                      \
    } while (0)
    PUT_NUM("%u", (unsigned)total);
    PUT_NUM("%llu", (unsigned long long)e->created_s * 1000ull);
    argv[n] = R->instance;
    lens[n++] = strlen(R->instance);
    for (unsigned i = 0; i < count; i++) {
        PUT_NUM("%u", (unsigned)e->recipients[i]);
        PUT_NUM("%u", (unsigned)e->shares[i]);
    }
#undef PUT_NUM
    r = hb__rcluster_eval(R->control, R->s_create, slot_of(key, lens[0]), 1, n, argv, lens,
                          R->replicas, R->wait_ms, on_create, c);
    if (r != 0) {
        free(c);
        return HB_ESTORE;
    }
    if (id != NULL)
        *id = e->id;
    return 0;
}

static int store_error(hb_store_t *st)
{
    (void)st;
    return 0; /* Redis's failures are not sticky: each command says its own */
}

static int store_durable(const hb_store_t *st)
{
    (void)st;
    return 1;
}

/* ---- who is where: the fleet's registry and the instances' inboxes ---- */

static void user_key(char *out, size_t n, uint32_t user, size_t *len)
{
    *len = (size_t)snprintf(out, n, "hb:{u:%u}", (unsigned)user);
}

static void inbox_key_of(char *out, size_t n, const char *instance, size_t *len)
{
    *len = (size_t)snprintf(out, n, "hb:{i:%s}:in", instance);
}

static void on_ignored(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)err, (void)reply, (void)acked, (void)arg;
}

/* Append a message to instance's inbox: kind 'k' (check user: a newer login elsewhere) or 'n' (a
 * frame for user), through client rc. Fire and forget: an inbox that cannot be reached loses the
 * message, which at worst leaves an older connection open until its user's next login, or a
 * notice undelivered (its recipient learns of the envelope no other way: counted offline). */
static void inbox_put(hb_rcluster_t *rc, const char *instance, char kind, uint32_t user,
                      const uint8_t *frame, size_t len)
{
    char key[160], u[16];
    size_t klen;
    inbox_key_of(key, sizeof key, instance, &klen);
    int ulen = snprintf(u, sizeof u, "%u", (unsigned)user);
    const char *argv[] = {"XADD",       key, "MAXLEN", "~",
                          INBOX_MAXLEN, "*", "t",      kind == 'k' ? "k" : "n",
                          "u",          u,   "f",      (const char *)frame};
    size_t lens[] = {4, klen, 6, 1, sizeof INBOX_MAXLEN - 1, 1, 1, 1, 1, (size_t)ulen, 1, len};
    int argc = kind == 'k' ? 10 : 12;
    (void)hb__rcluster_command(rc, slot_of(key, klen), argc, argv, lens, on_ignored, NULL);
}

static void on_logout(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)err, (void)reply, (void)acked;
    rclaim_t *c = arg;
    claim_put(c->w, c);
}

static void send_logout(rworker_t *w, uint32_t user, int64_t number)
{
    rclaim_t *c;
    if (w->rc == NULL || (c = claim_get(w)) == NULL)
        return; /* the registry keeps naming us until the user's next login anywhere */
    c->w = w;
    char key[32], num[24];
    size_t klen;
    user_key(key, sizeof key, user, &klen);
    int nlen = snprintf(num, sizeof num, "%lld", (long long)number);
    const char *argv[] = {key, w->R->instance, num};
    size_t lens[] = {klen, strlen(w->R->instance), (size_t)nlen};
    if (hb__rcluster_eval(w->rc, w->s_logout, slot_of(key, klen), 1, 3, argv, lens, 0, 0, on_logout,
                          c) != 0)
        claim_put(w, c);
}

static void on_login(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)acked;
    rclaim_t *c = arg;
    rworker_t *w = c->w;
    uint32_t user = c->user;
    uint64_t gen = c->gen;
    claim_put(w, c);
    flogin_t *f = hb_idmap_find(&w->logins, user);
    if (f == NULL || f->gen != gen)
        return; /* a newer login on this worker took over the entry */
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        hb_idmap_remove_found(&w->logins, f); /* the fleet does not know this login */
        return;
    }
    int64_t number = reply->element[0]->integer;
    const char *before = reply->element[1]->str;
    if (before[0] != '\0' && strcmp(before, w->R->instance) != 0)
        inbox_put(rc, before, 'k', user, NULL, 0);
    if (f->gone) {
        hb_idmap_remove_found(&w->logins, f);
        send_logout(w, user, number);
        return;
    }
    f->number = number;
}

static void store_login(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen)
{
    rstore_t *R = rstore_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    flogin_t *f;
    rclaim_t *c;
    if (worker_client(w) != 0 || hb_idmap_insert(&w->logins, user, (void **)&f) < 0 ||
        (c = claim_get(w)) == NULL) {
        hb__set_count(set, HB_CTR_X_STORE_ERRORS, hb__now_s(), 1);
        return;
    }
    *f = (flogin_t){.gen = gen};
    *c = (rclaim_t){.w = w, .set = set, .gen = gen, .user = user};
    char key[32];
    size_t klen;
    user_key(key, sizeof key, user, &klen);
    const char *argv[] = {key, R->instance};
    size_t lens[] = {klen, strlen(R->instance)};
    if (hb__rcluster_eval(w->rc, w->s_login, slot_of(key, klen), 1, 2, argv, lens, 0, 0, on_login,
                          c) != 0) {
        claim_put(w, c);
        hb_idmap_remove_found(&w->logins, f);
        hb__set_count(set, HB_CTR_X_STORE_ERRORS, hb__now_s(), 1);
    }
}

static void store_logout(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen)
{
    rstore_t *R = rstore_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    flogin_t *f = hb_idmap_find(&w->logins, user);
    if (f == NULL || f->gen != gen)
        return; /* not this connection's entry (a newer one's, or the fleet never knew it) */
    if (f->number == 0) {
        f->gone = 1; /* its number is on its way: the logout follows it */
        return;
    }
    int64_t number = f->number;
    hb_idmap_remove_found(&w->logins, f);
    send_logout(w, user, number);
}

/* A notice for recipients not connected here: to whichever instance the registry names. */
typedef struct forward {
    rstore_t *R;
    uint32_t user;
    size_t len;
    uint8_t frame[NOTICE_MAX];
} forward_t;

static void on_holder(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)acked;
    forward_t *f = arg;
    rstore_t *R = f->R;
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_STRING && !R->closing &&
        strcmp(reply->str, R->instance) != 0)
        inbox_put(rc, reply->str, 'n', f->user, f->frame, f->len);
    else if (!R->closing)
        hb__store_count_offline(R->g, NULL, 1);
    free(f);
}

static void forward_notices(rstore_t *R, const hb_sendenv_t *e, unsigned away, const uint8_t *frame,
                            size_t len)
{
    for (unsigned i = 0; i < e->count; i++) {
        if (!(away & (1u << i)))
            continue;
        forward_t *f = malloc(sizeof *f);
        if (f == NULL) {
            hb__store_count_offline(R->g, NULL, 1);
            continue;
        }
        *f = (forward_t){.R = R, .user = e->recipients[i], .len = len};
        memcpy(f->frame, frame, len);
        char key[32];
        size_t klen;
        user_key(key, sizeof key, f->user, &klen);
        const char *argv[] = {"HGET", key, "i"};
        size_t lens[] = {4, klen, 1};
        if (hb__rcluster_command(R->control, slot_of(key, klen), 3, argv, lens, on_holder, f) !=
            0) {
            hb__store_count_offline(R->g, NULL, 1);
            free(f);
        }
    }
}

/* The inbox, read on the control loop with XREAD BLOCK from the last message read. */
static void inbox_read(rstore_t *R);

/* A newer login of user on another instance: close ours unless the registry names us again. */
typedef struct check {
    rstore_t *R;
    uint32_t user;
} check_t;

static void on_check(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    check_t *k = arg;
    rstore_t *R = k->R;
    hb_registry_entry_t e;
    if (err == 0 && reply != NULL && !R->closing &&
        !(reply->type == REDIS_REPLY_STRING && strcmp(reply->str, R->instance) == 0) &&
        hb_registry_get(R->g->registry, k->user, &e) == 0) {
        hb_set_msg_t m = {.type = HB_MSG_KICK, .user = k->user, .gen = e.gen};
        (void)hb__set_post_external(R->g, &R->g->sets[e.set], &m);
    }
    free(k);
}

static void inbox_message(rstore_t *R, const redisReply *fields)
{
    const redisReply *t = NULL, *u = NULL, *f = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *name = fields->element[i], *value = fields->element[i + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING || name->len != 1)
            continue;
        if (name->str[0] == 't')
            t = value;
        else if (name->str[0] == 'u')
            u = value;
        else if (name->str[0] == 'f')
            f = value;
    }
    if (t == NULL || u == NULL || t->len != 1)
        return;
    uint32_t user = (uint32_t)strtoul(u->str, NULL, 10);
    if (t->str[0] == 'n' && f != NULL && f->len <= NOTICE_MAX) {
        if (hb__set_send_to_user(R->g, NULL, user, (const uint8_t *)f->str, f->len) != 0)
            hb__store_count_offline(R->g, NULL, 1);
    } else if (t->str[0] == 'k') {
        check_t *k = malloc(sizeof *k);
        if (k == NULL)
            return;
        *k = (check_t){.R = R, .user = user};
        char key[32];
        size_t klen;
        user_key(key, sizeof key, user, &klen);
        const char *argv[] = {"HGET", key, "i"};
        size_t lens[] = {4, klen, 1};
        if (hb__rcluster_command(R->control, slot_of(key, klen), 3, argv, lens, on_check, k) != 0)
            free(k);
    }
}

static void on_inbox(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    rstore_t *R = arg;
    R->inbox_reading = 0;
    if (R->closing || err == UV_ECANCELED)
        return;
    /* [[key, [[id, [field, value, ...]], ...]]], or nil when BLOCK ran out. */
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        const redisReply *stream = reply->element[0];
        if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2 &&
            stream->element[1]->type == REDIS_REPLY_ARRAY) {
            const redisReply *msgs = stream->element[1];
            for (size_t i = 0; i < msgs->elements; i++) {
                const redisReply *m = msgs->element[i];
                if (m->type != REDIS_REPLY_ARRAY || m->elements != 2 ||
                    m->element[0]->type != REDIS_REPLY_STRING)
                    continue;
                snprintf(R->last_id, sizeof R->last_id, "%s", m->element[0]->str);
                if (m->element[1]->type == REDIS_REPLY_ARRAY)
                    inbox_message(R, m->element[1]);
            }
            if (msgs->elements > 0) { /* remembered, for a restart to resume from */
                const char *argv[] = {"SET", R->cursor_key, R->last_id};
                size_t lens[] = {3, strlen(R->cursor_key), strlen(R->last_id)};
                (void)hb__rcluster_command(R->control,
                                           slot_of(R->cursor_key, strlen(R->cursor_key)), 3, argv,
                                           lens, on_ignored, NULL);
            }
        }
    }
    inbox_read(R); /* at once again; a failed read backs off inside the client */
}

static void inbox_read(rstore_t *R)
{
    if (R->closing || R->inbox_reading || R->inbox == NULL)
        return;
    const char *argv[] = {"XREAD",        "COUNT",   INBOX_BATCH,  "BLOCK",
                          INBOX_BLOCK_MS, "STREAMS", R->inbox_key, R->last_id};
    size_t lens[] = {5,
                     5,
                     sizeof INBOX_BATCH - 1,
                     5,
                     sizeof INBOX_BLOCK_MS - 1,
                     7,
                     strlen(R->inbox_key),
                     strlen(R->last_id)};
    if (hb__rcluster_command(R->inbox, slot_of(R->inbox_key, strlen(R->inbox_key)), 8, argv, lens,
                             on_inbox, R) == 0)
        R->inbox_reading = 1;
}

static void on_cursor(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    rstore_t *R = arg;
    if (R->closing)
        return;
    /* Resume after the last message read before a restart; an instance new to the fleet reads
     * its inbox from the start. (Never "$": each XREAD would then skip what came between two.) */
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_STRING && reply->len > 0 &&
        reply->len < sizeof R->last_id)
        snprintf(R->last_id, sizeof R->last_id, "%s", reply->str);
    else
        snprintf(R->last_id, sizeof R->last_id, "0-0");
    inbox_read(R);
}

static void inbox_start(rstore_t *R)
{
    const char *argv[] = {"GET", R->cursor_key};
    size_t lens[] = {3, strlen(R->cursor_key)};
    if (hb__rcluster_command(R->control, slot_of(R->cursor_key, lens[1]), 2, argv, lens, on_cursor,
                             R) != 0)
        hb__group_log(R->g,
                      "redis: the inbox cannot be read; notices from other instances are lost");
}

/* ---- frames for users elsewhere in the fleet (hb_server_send_to_user, chat) ---- */

#define AWAY_MAX 65536 /* frames waiting for the control loop before send_away refuses */

typedef struct away {
    struct away *next;
    rstore_t *R;
    uint32_t user;
    size_t len;
    uint8_t frame[]; /* len bytes */
} away_t;

static void on_away_holder(hb_rcluster_t *rc, int err, const redisReply *reply, int acked,
                           void *arg)
{
    (void)acked;
    away_t *a = arg;
    rstore_t *R = a->R;
    if (err == 0 && reply != NULL && reply->type == REDIS_REPLY_STRING && !R->closing &&
        strcmp(reply->str, R->instance) != 0)
        inbox_put(rc, reply->str, 'n', a->user, a->frame, a->len);
    free(a);
}

static void on_away(uv_async_t *h)
{
    rstore_t *R = h->data;
    uv_mutex_lock(&R->away_lock);
    away_t *list = R->away_head;
    R->away_head = R->away_tail = NULL;
    R->away_count = 0;
    uv_mutex_unlock(&R->away_lock);
    while (list != NULL) {
        away_t *a = list;
        list = a->next;
        char key[32];
        size_t klen;
        user_key(key, sizeof key, a->user, &klen);
        const char *argv[] = {"HGET", key, "i"};
        size_t lens[] = {4, klen, 1};
        if (R->closing || hb__rcluster_command(R->control, slot_of(key, klen), 3, argv, lens,
                                               on_away_holder, a) != 0)
            free(a);
    }
}

static void away_free_all(rstore_t *R)
{
    while (R->away_head != NULL) {
        away_t *a = R->away_head;
        R->away_head = a->next;
        free(a);
    }
}

static int store_send_away(hb_store_t *st, uint32_t user, const uint8_t *frame, size_t len)
{
    rstore_t *R = rstore_of(st);
    if (R == NULL || !R->away_open)
        return HB_EOFFLINE;
    away_t *a = malloc(sizeof *a + len);
    if (a == NULL)
        return HB_ENOMEM;
    *a = (away_t){.R = R, .user = user, .len = len};
    memcpy(a->frame, frame, len);
    uv_mutex_lock(&R->away_lock);
    int full = R->away_count >= AWAY_MAX;
    if (!full) {
        if (R->away_tail != NULL)
            R->away_tail->next = a;
        else
            R->away_head = a;
        R->away_tail = a;
        R->away_count++;
    }
    uv_mutex_unlock(&R->away_lock);
    if (full) {
        free(a);
        return HB_ENOMEM;
    }
    uv_async_send(&R->away_async);
    return 0;
}

/* ---- the shake budget: drawn into the buckets, reported as shakes take it (control loop) ---- */

static int fifo_push(bfifo_t *f, bentry_t e)
{
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        bentry_t *n = malloc(cap * sizeof *n);
        if (n == NULL)
            return HB_ENOMEM;
        for (size_t i = 0; i < f->count; i++)
            n[i] = f->e[(f->head + i) % f->cap];
        free(f->e);
        f->e = n;
        f->head = 0;
        f->cap = cap;
    }
    f->e[(f->head + f->count) % f->cap] = e;
    f->count++;
    return 0;
}

static bentry_t fifo_pop(bfifo_t *f)
{
    bentry_t e = f->e[f->head];
    f->head = (f->head + 1) % f->cap;
    f->count--;
    return e;
}

static void fifo_free(bfifo_t *f)
{
    free(f->e);
    *f = (bfifo_t){0};
}

/* Partition part's key named suffix ("q", "c", "z", "o"), or with suffix "l:" its lease prefix. */
static size_t part_key(char *out, size_t n, unsigned part, const char *suffix)
{
    return (size_t)snprintf(out, n, "hb:{b:%u}:%s", part, suffix);
}

static void budget_maybe_done(rstore_t *R);
static void close_clients(rstore_t *R);

static void on_batch(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    bbatch_t *b = arg;
    rstore_t *R = b->R;
    budget_t *B = &R->budget;
    B->in_flight--;
    int ok = err == 0 && reply != NULL && reply->type != REDIS_REPLY_ERROR;
    if (ok || (B->stopping && err == UV_ECANCELED)) {
        if (b->kind == BATCH_PUT)
            B->put_busy[b->part] = 0;
        if (!ok)
            hb__group_log(R->g, "redis: %zu shake envelopes of partition %u not %s at close", b->n,
                          b->part, b->kind == BATCH_PUT ? "put" : "reported");
        free(b);
    } else {
        /* Sent again as it is (every budget script skips what it already did). */
        hb__group_count_control(R->g, HB_CTR_X_STORE_ERRORS, 1);
        b->next = B->failed;
        B->failed = b;
    }
    budget_maybe_done(R);
}

static void batch_send(rstore_t *R, bbatch_t *b)
{
    budget_t *B = &R->budget;
    char k0[48], k1[48], k2[48], prefix[48];
    static char nums[4 + 2 * BATCH_MAX][12];
    const char *argv[8 + 2 * BATCH_MAX];
    size_t lens[8 + 2 * BATCH_MAX];
    int n = 0, nkeys;
    const hb_rscript_t *script;
#define ARG(str, len_)                                                                             \
    do {                                                                                           \
        argv[n] = (str);                                                                           \
        lens[n++] = (len_);                                                                        \
    } while (0)
#define NUM(v)                                                                                     \
    do {                                                                                           \
        int l_ = snprintf(nums[n], sizeof nums[n], "%u", (unsigned)(v));                           \
        ARG(nums[n], (size_t)l_);                                                                  \
    } while (0)
    size_t plen = part_key(prefix, sizeof prefix, b->part, "l:");
    if (b->kind == BATCH_PUT) {
        script = R->s_put, nkeys = 2;
        ARG(k0, part_key(k0, sizeof k0, b->part, "q"));
        ARG(k1, part_key(k1, sizeof k1, b->part, "c"));
        ARG(R->instance, strlen(R->instance));
    } else if (b->kind == BATCH_REPORT) {
        script = R->s_report, nkeys = 3;
        ARG(k0, part_key(k0, sizeof k0, b->part, "c"));
        ARG(k1, part_key(k1, sizeof k1, b->part, "z"));
        ARG(k2, part_key(k2, sizeof k2, b->part, "o"));
        ARG(prefix, plen);
        ARG(R->instance, strlen(R->instance));
        NUM(R->lease_ms);
        NUM(PARTITIONS);
        B->renewed_ms[b->part] = uv_now(R->loop);
    } else {
        script = R->s_return, nkeys = 3;
        ARG(k0, part_key(k0, sizeof k0, b->part, "q"));
        ARG(k1, part_key(k1, sizeof k1, b->part, "c"));
        ARG(k2, part_key(k2, sizeof k2, b->part, "z"));
        ARG(prefix, plen);
        ARG(R->instance, strlen(R->instance));
        ARG(b->final ? "1" : "0", 1);
    }
    for (size_t i = 0; i < b->n; i++) {
        NUM(b->e[i].idx);
        if (b->kind != BATCH_RETURN)
            NUM(b->e[i].amount);
    }
#undef NUM
#undef ARG
    if (hb__rcluster_eval(R->control, script, slot_of(k0, lens[0]), nkeys, n, argv, lens,
                          R->replicas, R->wait_ms, on_batch, b) == 0) {
        B->in_flight++;
        return;
    }
    b->next = B->failed; /* not sent: on the next tick */
    B->failed = b;
}

static bbatch_t *batch_new(rstore_t *R, int kind, unsigned part, int final)
{
    bbatch_t *b = malloc(sizeof *b);
    if (b != NULL)
        *b = (bbatch_t){.R = R, .kind = kind, .part = (uint8_t)part, .final = final};
    return b;
}

/* The envelopes shakes took from each bucket since the last look, reported in batches by
 * partition; final: the instance stops. */
static void report_taken(rstore_t *R, int final)
{
    budget_t *B = &R->budget;
    bbatch_t *open[PARTITIONS] = {0};
    for (unsigned s = 0; s < R->g->nsets; s++) {
        bshadow_t *sh = &B->shadow[s];
        uint32_t popped = hb_envq_popped(R->g->envq, s);
        uint32_t taken = popped - sh->seen;
        for (uint32_t i = 0; i < taken && sh->fifo.count > 0; i++) {
            bentry_t e = sh->fifo.e[sh->fifo.head];
            bbatch_t **b = &open[e.part];
            if (*b == NULL && (*b = batch_new(R, BATCH_REPORT, e.part, final)) == NULL)
                break; /* looked at again on the next tick */
            (void)fifo_pop(&sh->fifo);
            sh->seen++;
            B->held[e.part]--;
            (*b)->e[(*b)->n++] = e;
            if ((*b)->n == BATCH_MAX) {
                batch_send(R, *b);
                *b = NULL;
            }
        }
    }
    uint64_t now = uv_now(R->loop);
    for (unsigned p = 0; p < PARTITIONS; p++) {
        /* A partition we hold envelopes of is renewed even when nothing was taken. */
        if (open[p] == NULL && B->held[p] > 0 && now - B->renewed_ms[p] >= R->lease_ms / 6)
            open[p] = batch_new(R, BATCH_REPORT, p, final);
        if (open[p] != NULL)
            batch_send(R, open[p]);
    }
}

/* Envelopes made here go to their partitions, one put in flight per partition (so that a resent
 * put never follows a later one). */
static void put_made(rstore_t *R)
{
    budget_t *B = &R->budget;
    for (unsigned p = 0; p < PARTITIONS; p++) {
        if (B->put_busy[p] || B->made[p].count == 0)
            continue;
        bbatch_t *b = batch_new(R, BATCH_PUT, p, 0);
        if (b == NULL)
            return;
        while (b->n < BATCH_MAX && B->made[p].count > 0) {
            b->e[b->n++] = fifo_pop(&B->made[p]);
            B->made_count--;
        }
        B->put_busy[p] = 1;
        batch_send(R, b);
    }
}

static void draw_next(rstore_t *R);

static void on_draw(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    rstore_t *R = arg;
    budget_t *B = &R->budget;
    B->drawing = 0;
    B->in_flight--;
    unsigned set = B->retry_set, part = B->retry_part;
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (!B->stopping)
            hb__group_count_control(R->g, HB_CTR_X_STORE_ERRORS, 1);
        budget_maybe_done(R);
        return; /* the same draw again on the next tick (B->draw_retry_seq) */
    }
    B->draw_retry_seq = 0;
    bbatch_t *back = NULL; /* what cannot go into the bucket (full, or the instance stops) */
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *r = reply->element[i];
        unsigned long idx, amount;
        if (r->type != REDIS_REPLY_STRING || sscanf(r->str, "%lu:%lu", &idx, &amount) != 2)
            continue;
        bentry_t e = {(uint32_t)idx, (uint32_t)amount, (uint8_t)part};
        uint32_t id = hb_envelope_id_add(HB_ENVELOPE_SHAKE, 0, (uint64_t)idx + 1);
        bshadow_t *sh = &B->shadow[set];
        if (!B->stopping && id != 0 && fifo_push(&sh->fifo, e) == 0) {
            if (hb_envq_push_to(R->g->envq, set, (hb_envelope_t){id, e.amount}) == 0) {
                B->held[part]++;
                continue;
            }
            sh->fifo.count--; /* undo: the bucket is full */
        }
        if (back == NULL && (back = batch_new(R, BATCH_RETURN, part, B->stopping)) == NULL)
            continue; /* stays in the lease; it expires with it */
        back->e[back->n++] = e;
        if (back->n == BATCH_MAX) {
            batch_send(R, back);
            back = NULL;
        }
    }
    if (back != NULL)
        batch_send(R, back);
    /* Partitions in turn, so that this instance's draws also expire others' leases everywhere. */
    B->draw_part = (B->draw_part + 1) % PARTITIONS;
    if (reply->elements > 0)
        draw_next(R); /* more buckets may be low */
    budget_maybe_done(R);
}

/* A draw for the first SET whose bucket runs low, from the partition in turn; one at a time, and
 * a draw that failed is sent again with its number first (Redis may have made it: the retry
 * returns the same envelopes). */
static void draw_next(rstore_t *R)
{
    budget_t *B = &R->budget;
    if (B->drawing || B->stopping)
        return;
    if (B->draw_retry_seq == 0) {
        unsigned n = R->g->nsets, set = n;
        for (unsigned i = 0; i < n && set == n; i++) {
            unsigned s = (B->draw_set + i) % n;
            if (hb_envq_size(R->g->envq, s) < DRAW_LOW &&
                R->g->envq->capacity - hb_envq_size(R->g->envq, s) >= DRAW_BATCH)
                set = s;
        }
        if (set == n)
            return;
        B->draw_set = (set + 1) % n;
        B->retry_set = set;
        B->retry_part = B->draw_part;
        B->draw_retry_seq = ++B->draw_seq;
    }
    char q[48], c[48], z[48], prefix[48], count[12], lease[12], seq[24];
    const char *argv[] = {q, c, z, prefix, R->instance, count, lease, seq};
    size_t lens[] = {
        part_key(q, sizeof q, B->retry_part, "q"),
        part_key(c, sizeof c, B->retry_part, "c"),
        part_key(z, sizeof z, B->retry_part, "z"),
        part_key(prefix, sizeof prefix, B->retry_part, "l:"),
        strlen(R->instance),
        (size_t)snprintf(count, sizeof count, "%u", (unsigned)DRAW_BATCH),
        (size_t)snprintf(lease, sizeof lease, "%u", (unsigned)R->lease_ms),
        (size_t)snprintf(seq, sizeof seq, "%llu", (unsigned long long)B->draw_retry_seq)};
    if (hb__rcluster_eval(R->control, R->s_draw, slot_of(q, lens[0]), 3, 8, argv, lens, R->replicas,
                          R->wait_ms, on_draw, R) == 0) {
        B->drawing = 1;
        B->in_flight++;
        B->renewed_ms[B->retry_part] = uv_now(R->loop);
    }
}

/* Every half lease, a draw of nothing from every partition: the expiry alone, so that a dead
 * instance's leases end even on partitions nobody draws from. */
static void sweep_expired(rstore_t *R)
{
    budget_t *B = &R->budget;
    uint64_t now = uv_now(R->loop);
    if (now - B->swept_ms < R->lease_ms / 2)
        return;
    B->swept_ms = now;
    for (unsigned p = 0; p < PARTITIONS; p++) {
        char q[48], c[48], z[48], prefix[48], lease[12];
        const char *argv[] = {q, c, z, prefix, R->instance, "0", lease, "0"};
        size_t lens[] = {part_key(q, sizeof q, p, "q"),
                         part_key(c, sizeof c, p, "c"),
                         part_key(z, sizeof z, p, "z"),
                         part_key(prefix, sizeof prefix, p, "l:"),
                         strlen(R->instance),
                         1,
                         (size_t)snprintf(lease, sizeof lease, "%u", (unsigned)R->lease_ms),
                         1};
        (void)hb__rcluster_eval(R->control, R->s_draw, slot_of(q, lens[0]), 3, 8, argv, lens, 0, 0,
                                on_ignored, NULL);
    }
}

static void on_tick(uv_timer_t *t)
{
    rstore_t *R = t->data;
    budget_t *B = &R->budget;
    sweep_expired(R);
    bbatch_t *again = B->failed;
    B->failed = NULL;
    while (again != NULL) {
        bbatch_t *b = again;
        again = b->next;
        batch_send(R, b);
    }
    put_made(R);
    report_taken(R, 0);
    draw_next(R);
}

static int store_put_shake(hb_store_t *st, uint32_t id, uint32_t amount)
{
    rstore_t *R = rstore_of(st);
    budget_t *B = &R->budget;
    int64_t idx = hb_envelope_id_index(HB_ENVELOPE_SHAKE, id);
    if (idx < 0 || B->stopping)
        return HB_EINVAL;
    if (B->made_count >= PUT_BACKLOG)
        return HB_EAGAIN;
    unsigned part = (unsigned)(idx % PARTITIONS);
    if (fifo_push(&B->made[part], (bentry_t){(uint32_t)idx, amount, (uint8_t)part}) != 0)
        return HB_EAGAIN;
    B->made_count++;
    return 0;
}

/* The instance stops (the workers have ended: nothing pops the buckets any more): what shakes
 * took is reported, what the buckets still hold goes back to the budget, what was made here is
 * put; then the clients close. */
static void budget_stop(rstore_t *R)
{
    budget_t *B = &R->budget;
    B->stopping = 1;
    if (R->tick_open)
        uv_timer_stop(&R->tick);
    on_tick(&R->tick); /* resend failures, puts, the last reports (below: final) */
    report_taken(R, 1);
    for (unsigned s = 0; s < R->g->nsets; s++) {
        bshadow_t *sh = &B->shadow[s];
        bbatch_t *open[PARTITIONS] = {0};
        while (sh->fifo.count > 0) {
            bentry_t e = sh->fifo.e[sh->fifo.head];
            bbatch_t **b = &open[e.part];
            if (*b == NULL && (*b = batch_new(R, BATCH_RETURN, e.part, 1)) == NULL)
                break; /* left in the lease: it expires */
            (void)fifo_pop(&sh->fifo);
            B->held[e.part]--;
            (*b)->e[(*b)->n++] = e;
            if ((*b)->n == BATCH_MAX) {
                batch_send(R, *b);
                *b = NULL;
            }
        }
        for (unsigned p = 0; p < PARTITIONS; p++)
            if (open[p] != NULL)
                batch_send(R, open[p]);
    }
    budget_maybe_done(R);
}

/* Once nothing of the budget is on its way any more, at close, the clients go. */
static void budget_maybe_done(rstore_t *R)
{
    budget_t *B = &R->budget;
    if (!B->stopping || B->in_flight > 0 || B->closing_clients)
        return;
    size_t lost = 0;
    while (B->failed != NULL) { /* Redis cannot be reached: they stay leased, and expire */
        bbatch_t *b = B->failed;
        B->failed = b->next;
        lost += b->n;
        free(b);
    }
    if (lost > 0)
        hb__group_log(R->g,
                      "redis: %zu shake envelopes not reported or returned at close: they "
                      "expire with this instance's lease",
                      lost);
    B->closing_clients = 1;
    close_clients(R);
}

static int budget_init(rstore_t *R)
{
    R->budget.shadow = calloc(R->g->nsets, sizeof *R->budget.shadow);
    return R->budget.shadow == NULL ? HB_ENOMEM : 0;
}

static void budget_free(rstore_t *R)
{
    budget_t *B = &R->budget;
    if (B->shadow != NULL)
        for (unsigned s = 0; s < R->nsets; s++)
            fifo_free(&B->shadow[s].fifo);
    free(B->shadow);
    for (unsigned p = 0; p < PARTITIONS; p++)
        fifo_free(&B->made[p]);
    while (B->failed != NULL) {
        bbatch_t *b = B->failed;
        B->failed = b->next;
        free(b);
    }
}

/* ---- open and close ---- */

static void budget_free(rstore_t *R);
static void away_free_all(rstore_t *R);

static void rstore_free(rstore_t *R)
{
    budget_free(R);
    away_free_all(R);
    if (R->away_lock_ready)
        uv_mutex_destroy(&R->away_lock);
    if (R->workers != NULL) {
        for (unsigned i = 0; i < R->nworkers; i++) {
            rworker_t *w = &R->workers[i];
            while (w->chunks != NULL) {
                rchunk_t *c = w->chunks;
                w->chunks = c->next;
                free(c);
            }
            free(w->pending);
            free(w->draining);
            hb_idmap_close(&w->logins);
        }
        free(R->workers);
    }
    free(R);
}

static int store_open(hb_store_t *st)
{
    rstore_t *R = rstore_of(st);
    int r = hb__rcluster_open(R->loop, &R->copts, &R->control);
    if (r == 0)
        r = hb__rcluster_script(R->control, hb__lua_send_create, &R->s_create);
    if (r == 0)
        r = hb__rcluster_script(R->control, hb__lua_reserve, &R->s_reserve);
    if (r == 0)
        r = hb__rcluster_script(R->control, hb__lua_budget_put, &R->s_put);
    if (r == 0)
        r = hb__rcluster_script(R->control, hb__lua_budget_draw, &R->s_draw);
    if (r == 0)
        r = hb__rcluster_script(R->control, hb__lua_budget_report, &R->s_report);
    if (r == 0)
        r = hb__rcluster_script(R->control, hb__lua_budget_return, &R->s_return);
    if (r == 0)
        r = hb__rcluster_open(R->loop, &R->copts, &R->inbox);
    if (r == 0 && (r = uv_async_init(R->loop, &R->away_async, on_away)) == 0) {
        R->away_async.data = R;
        R->away_open = 1;
    }
    if (r == 0 && (r = uv_timer_init(R->loop, &R->tick)) == 0) {
        R->tick.data = R;
        R->tick_open = 1;
        uv_timer_start(&R->tick, on_tick, TICK_MS, TICK_MS);
    }
    if (r != 0) {
        snprintf(st->errstr, sizeof st->errstr, "redis %.160s: %s", R->seeds, hb_strerror(r));
        return r;
    }
    /* The first blocks: asked now, handed out once Redis has them (until then a shake finds no
     * envelope and a send-envelope is "try again"). */
    ids_ask(&R->send_ids);
    ids_ask(&R->shake_ids);
    inbox_start(R);
    /* Instances start drawing at different partitions. */
    uint32_t h = 0;
    for (const char *p = R->instance; *p != '\0'; p++)
        h = h * 31 + (unsigned char)*p;
    R->budget.draw_part = (unsigned)(hb_idmap_hash(h) % PARTITIONS);
    return 0;
}

static void control_closed_notify_now(rstore_t *R)
{
    hb_store_t *st = R->st;
    void (*on_closed)(hb_store_t *) = R->on_closed;
    rstore_free(R);
    if (on_closed != NULL) /* else the owner did not wait (its init failed): st may be gone */
        on_closed(st);
}

static void control_closed_notify(void *arg)
{
    rstore_t *R = arg;
    if (--R->clients_open > 0)
        return;
    hb_store_t *st = R->st;
    void (*on_closed)(hb_store_t *) = R->on_closed;
    rstore_free(R);
    if (on_closed != NULL) /* else the owner did not wait (its init failed): st may be gone */
        on_closed(st);
}

static void on_tick_closed(uv_handle_t *h)
{
    control_closed_notify(h->data);
}

/* After the budget's last batches: the two clients and the timer close; R goes with the last. */
static void close_clients(rstore_t *R)
{
    R->clients_open =
        (R->control != NULL) + (R->inbox != NULL) + (unsigned)R->tick_open + (unsigned)R->away_open;
    if (R->clients_open == 0) {
        control_closed_notify_now(R);
        return;
    }
    if (R->control != NULL)
        hb__rcluster_close(R->control, control_closed_notify, R);
    if (R->inbox != NULL)
        hb__rcluster_close(R->inbox, control_closed_notify, R);
    if (R->tick_open)
        uv_close((uv_handle_t *)&R->tick, on_tick_closed);
    if (R->away_open) {
        uv_mutex_lock(&R->away_lock); /* no more frames taken (send_away sees it closed) */
        R->away_open = 0;
        uv_mutex_unlock(&R->away_lock);
        uv_close((uv_handle_t *)&R->away_async, on_tick_closed);
    }
}

static int store_close(hb_store_t *st)
{
    rstore_t *R = rstore_of(st);
    if (R == NULL)
        return 0;
    st->impl = NULL;
    R->closing = 1;
    R->on_closed = st->on_closed;
    if (R->control == NULL && R->inbox == NULL && !R->tick_open && !R->away_open) {
        rstore_free(R);
        return 0;
    }
    /* The budget's last reports and returns first (when it has a client), then the clients. */
    if (R->control != NULL)
        budget_stop(R);
    else
        close_clients(R);
    return 1;
}

static const hb_store_ops_t redis_ops = {
    .name = "redis",
    .open = store_open,
    .close = store_close,
    .claim = store_claim,
    .handle = store_handle,
    .expire = store_expire,
    .drain = store_drain,
    .give_up = store_give_up,
    .drain_target = store_drain_target,
    .create_send = store_create_send,
    .shake_id = store_shake_id,
    .error = store_error,
    .durable = store_durable,
    .login = store_login,
    .logout = store_logout,
    .put_shake = store_put_shake,
    .send_away = store_send_away,
};

int hb__store_redis_init(hb_store_t *st, hb_setgroup_t *group, uv_loop_t *loop,
                         const hb_store_redis_options_t *o, hb_rand_t *rng)
{
    rstore_t *R = calloc(1, sizeof *R);
    if (R == NULL)
        return HB_ENOMEM;
    R->workers = calloc(group->nworkers, sizeof *R->workers);
    if (R->workers == NULL)
        goto nomem;
    R->nworkers = group->nworkers;
    R->nsets = group->nsets;
    if (uv_mutex_init(&R->away_lock) != 0)
        goto nomem;
    R->away_lock_ready = 1;
    R->g = group;
    if (budget_init(R) != 0)
        goto nomem;
    for (unsigned i = 0; i < group->nworkers; i++) {
        rworker_t *w = &R->workers[i];
        w->R = R;
        w->worker = &group->workers[i];
        w->pending = calloc(w->worker->nsets, sizeof *w->pending);
        w->draining = calloc(w->worker->nsets, sizeof *w->draining);
        if (w->pending == NULL || w->draining == NULL ||
            hb_idmap_init(&w->logins, sizeof(flogin_t), 1024) != 0)
            goto nomem;
    }
    R->st = st;
    R->g = group;
    R->loop = loop;
    R->rng = rng;
    snprintf(R->seeds, sizeof R->seeds, "%s", o->seeds);
    snprintf(R->instance, sizeof R->instance, "%s", o->instance);
    snprintf(R->inbox_key, sizeof R->inbox_key, "hb:{i:%s}:in", R->instance);
    snprintf(R->cursor_key, sizeof R->cursor_key, "hb:{i:%s}:cur", R->instance);
    snprintf(R->last_id, sizeof R->last_id, "0-0");
    R->replicas = (int)o->replicas;
    R->wait_ms = o->wait_ms ? o->wait_ms : 1000;
    R->lease_ms = o->lease_ms ? o->lease_ms : LEASE_MS;
    R->copts = (hb_rcluster_options_t){.seeds = R->seeds,
                                       .timeout_ms = o->timeout_ms,
                                       .log = group->log,
                                       .log_arg = group->log_arg};
    R->send_ids =
        (rids_t){.kind = HB_ENVELOPE_SEND, .field = "send", .block = SEND_ID_BLOCK, .R = R};
    R->shake_ids =
        (rids_t){.kind = HB_ENVELOPE_SHAKE, .field = "shake", .block = SHAKE_ID_BLOCK, .R = R};
    memset(st, 0, sizeof *st);
    st->ops = &redis_ops;
    st->group = group;
    st->send_expiry_s = o->send_expiry_s;
    st->impl = R;
    return 0;
nomem:
    rstore_free(R);
    return HB_ENOMEM;
}
