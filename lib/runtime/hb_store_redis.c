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

#include "hb_store_redis_int.h"

static void env_key(char *out, size_t n, uint32_t id, size_t *len)
{
    int k = snprintf(out, n, HB_FLEET_KEY_ENVELOPE, (unsigned)id);
    *len = (size_t)k;
}

/* ---- claims, on the claimant's worker ---- */

rclaim_t *hb__rs_claim_get(rworker_t *w)
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

void hb__rs_claim_put(rworker_t *w, rclaim_t *c)
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
    hb__rs_claim_put(w, c);
    set_settled(w, local);
}

int hb__rs_worker_client(rworker_t *w)
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
    rstore_t *R = hb__rs_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    rclaim_t *c = NULL;
    int r = hb__rs_worker_client(w);
    if (r == 0 && (c = hb__rs_claim_get(w)) == NULL)
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
        r = hb__rcluster_eval(w->rc, w->s_claim, hb__rs_slot(key, klen), 1, 2, argv, lens,
                              R->replicas, R->wait_ms, on_claim, c);
        if (r != 0) {
            w->pending[set->index - w->worker->first_set]--;
            hb__rs_claim_put(w, c);
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
    rstore_t *R = hb__rs_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    w->draining[set->index - w->worker->first_set] = 1;
    set_settled(w, set->index - w->worker->first_set);
}

static void store_give_up(hb_store_t *st, hb_set_t *set)
{
    /* The close deadline passed with claims still out: closing the client answers each "try
     * again" (its callback runs with UV_ECANCELED), which settles the SET. */
    rstore_t *R = hb__rs_of(st);
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
    static const char key[] = HB_FLEET_KEY_IDS;
    const char *argv[] = {key, s->field, expected, wanted};
    size_t lens[] = {sizeof key - 1, strlen(s->field), (size_t)el, (size_t)wl};
    if (hb__rcluster_eval(R->control, R->s_reserve, hb__rs_slot(key, sizeof key - 1), 1, 4, argv,
                          lens, R->replicas, R->wait_ms, on_reserve, s) == 0)
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
    return ids_take(&hb__rs_of(st)->shake_ids, id);
}

/* ---- send-envelopes, on the control loop ---- */

typedef struct rcreate {
    rstore_t *R;
    hb_sendenv_t e;
    unsigned tries;    /* sent this many times */
    uint64_t first_ms; /* the first try (loop time) */
    uint64_t next_ms;  /* while in R->create_retry: not sent again before */
    struct rcreate *next;
} rcreate_t;

/* How long a send-envelope's creation is tried again before it is given up. */
#define CREATE_GIVE_UP_MS 60000

static int create_send(rcreate_t *c);

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
            hb__rs_forward_notices(R, &c->e, away, frame, (size_t)len);
        }
    } else if (!R->closing) {
        /* Not known durable: nobody hears of it yet. The same creation again (same id, shares
         * and creator: the script answers 1 if an earlier try stored it) until it is, so that a
         * slow replica or a lost answer does not leave an envelope nobody was told of. */
        hb__group_count_control(R->g, HB_CTR_X_STORE_ERRORS, 1);
        int refused = reply != NULL && reply->type == REDIS_REPLY_ERROR;
        uint64_t now = uv_now(R->loop);
        if (!refused && now - c->first_ms < CREATE_GIVE_UP_MS) {
            c->next_ms = now + hb__backoff_ms(50, c->tries, 5); /* 100 ms .. 1.6 s */
            c->next = R->create_retry;
            R->create_retry = c;
            return;
        }
        /* Given up: if an earlier try was stored, it is an envelope nobody was told of, which
         * its recipients cannot claim and the audit counts as issued and unclaimed. */
        hb__group_log(R->g, "send-envelope %u not created after %u tries: %s", (unsigned)c->e.id,
                      c->tries,
                      refused    ? reply->str
                      : err != 0 ? hb_strerror(err)
                                 : "no replica acknowledged it");
    }
    free(c);
}

static int store_create_send(hb_store_t *st, const uint32_t *recipients, unsigned count,
                             uint32_t total, uint32_t *id)
{
    rstore_t *R = hb__rs_of(st);
    rcreate_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return HB_ENOMEM;
    c->R = R;
    hb_sendenv_t *e = &c->e;
    int r = hb__store_new_envelope(recipients, count, total, R->rng, e);
    if (r != 0) {
        free(c);
        return r;
    }
    r = ids_take(&R->send_ids, &e->id);
    if (r != 0) {
        free(c);
        return r == HB_EAGAIN ? HB_ESTORE : r;
    }
    c->first_ms = uv_now(R->loop);
    if (create_send(c) != 0) {
        free(c);
        return HB_ESTORE;
    }
    if (id != NULL)
        *id = e->id;
    return 0;
}

void hb__rs_create_retry(rstore_t *R)
{
    if (R->closing)
        return; /* what waits is given up at close (create_retry_free) */
    uint64_t now = uv_now(R->loop);
    rcreate_t **p = &R->create_retry;
    while (*p != NULL) {
        rcreate_t *c = *p;
        if (c->next_ms > now) {
            p = &c->next;
            continue;
        }
        *p = c->next;
        if (create_send(c) != 0) { /* not even sent: later */
            c->next_ms = now + 100;
            c->next = *p;
            *p = c;
            p = &c->next;
        }
    }
}

/* At close: the creations still to try are given up (logged). */
static void create_retry_free(rstore_t *R)
{
    unsigned n = 0;
    while (R->create_retry != NULL) {
        rcreate_t *c = R->create_retry;
        R->create_retry = c->next;
        free(c);
        n++;
    }
    if (n > 0)
        hb__group_log(
            R->g, "%u send-envelopes not known created at close: if stored, nobody was told", n);
}

/* Send c's creation (send_create.lua) to Redis, its tries counted; 0 or a negative error. */
static int create_send(rcreate_t *c)
{
    rstore_t *R = c->R;
    const hb_sendenv_t *e = &c->e;
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
    PUT_NUM("%u", (unsigned)e->total);
    PUT_NUM("%llu", (unsigned long long)e->created_s * 1000ull);
    argv[n] = R->instance;
    lens[n++] = strlen(R->instance);
    for (unsigned i = 0; i < e->count; i++) {
        PUT_NUM("%u", (unsigned)e->recipients[i]);
        PUT_NUM("%u", (unsigned)e->shares[i]);
    }
#undef PUT_NUM
    int r = hb__rcluster_eval(R->control, R->s_create, hb__rs_slot(key, lens[0]), 1, n, argv, lens,
                              R->replicas, R->wait_ms, on_create, c);
    if (r == 0)
        c->tries++;
    return r;
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

void hb__rs_ignored(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)err, (void)reply, (void)acked, (void)arg;
}

/* ---- open and close ---- */

static void rstore_free(rstore_t *R)
{
    create_retry_free(R);
    hb__rs_budget_free(R);
    hb__rs_away_free_all(R);
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
            hb__fifo_free(&w->login_wait);
        }
        free(R->workers);
    }
    free(R);
}

static int store_open(hb_store_t *st)
{
    rstore_t *R = hb__rs_of(st);
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
        r = hb__rcluster_script(R->control, hb__lua_gen_plan, &R->s_plan);
    if (r == 0)
        r = hb__rcluster_script(R->control, hb__lua_gen_lease, &R->s_lease);
    if (r == 0)
        r = hb__rcluster_open(R->loop, &R->copts, &R->inbox);
    if (r == 0 && (r = uv_async_init(R->loop, &R->away_async, hb__rs_on_away)) == 0) {
        R->away_async.data = R;
        R->away_open = 1;
    }
    if (r == 0 && (r = uv_timer_init(R->loop, &R->tick)) == 0) {
        R->tick.data = R;
        R->tick_open = 1;
        uv_timer_start(&R->tick, hb__rs_on_tick, TICK_MS, TICK_MS);
    }
    if (r != 0) {
        snprintf(st->errstr, sizeof st->errstr, "redis %.160s: %s", R->seeds, hb_strerror(r));
        return r;
    }
    /* The first blocks: asked now, handed out once Redis has them (until then a shake finds no
     * envelope and a send-envelope is "try again"). */
    ids_ask(&R->send_ids);
    ids_ask(&R->shake_ids);
    hb__rs_inbox_start(R);
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
void hb__rs_close_clients(rstore_t *R)
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
    rstore_t *R = hb__rs_of(st);
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
        hb__rs_budget_stop(R);
    else
        hb__rs_close_clients(R);
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
    .login = hb__rs_login,
    .logout = hb__rs_logout,
    .put_shake = hb__rs_put_shake,
    .plan_shake = hb__rs_plan_shake,
    .send_away = hb__rs_send_away,
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
    if (hb__rs_budget_init(R) != 0)
        goto nomem;
    for (unsigned i = 0; i < group->nworkers; i++) {
        rworker_t *w = &R->workers[i];
        w->R = R;
        w->worker = &group->workers[i];
        w->login_wait.elem = sizeof(lwait_t);
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
    snprintf(R->inbox_key, sizeof R->inbox_key, HB_FLEET_KEY_INBOX, R->instance);
    snprintf(R->cursor_key, sizeof R->cursor_key, HB_FLEET_KEY_CURSOR, R->instance);
    snprintf(R->last_id, sizeof R->last_id, "0-0");
    R->replicas = (int)o->replicas;
    R->wait_ms = o->wait_ms ? o->wait_ms : 1000;
    R->lease_ms = o->lease_ms ? o->lease_ms : LEASE_MS;
    R->budget.gen_role = o->generator;
    R->amount_min = o->amount_min;
    R->amount_max = o->amount_max;
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
