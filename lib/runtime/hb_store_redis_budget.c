/* The Redis store's shake budget (docs/fleet.md, "Where every shake envelope is"): envelopes made
 * here put into the fleet's budget, drawn into this instance's buckets under a lease, reported
 * handed out as shakes take them (a shadow of each bucket and hb_envq_popped), given back at a
 * clean stop; a sweep every half lease retires dead instances' leases. Control loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hb_store_redis_int.h"

static void plan_send(rstore_t *R);

/* ---- the shake budget: drawn into the buckets, reported as shakes take it (control loop) ---- */

/* The budget's FIFOs hold bentry_t. */
static int fifo_push(hb__fifo_t *f, bentry_t e)
{
    return hb__fifo_push(f, &e);
}

static bentry_t fifo_pop(hb__fifo_t *f)
{
    bentry_t e;
    hb__fifo_pop(f, &e);
    return e;
}

static const bentry_t *fifo_front(const hb__fifo_t *f)
{
    return hb__fifo_at(f, 0);
}

/* Partition part's key named suffix ("q", "c", "z", "o"), or with suffix "l:" its lease prefix. */
static size_t part_key(char *out, size_t n, unsigned part, const char *suffix)
{
    return (size_t)snprintf(out, n, HB_FLEET_KEY_PARTITION, part, suffix);
}

static void budget_maybe_done(rstore_t *R);

static void on_batch(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc;
    bbatch_t *b = arg;
    rstore_t *R = b->R;
    budget_t *B = &R->budget;
    B->in_flight--;
    /* Done once as many replicas as asked have it: a failover could lose it otherwise. */
    int ok = err == 0 && reply != NULL && reply->type != REDIS_REPLY_ERROR && acked >= R->replicas;
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
        NUM(b->n > 0 ? b->e[0].epoch : 0);
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
    if (hb__rcluster_eval(R->control, script, hb__rs_slot(k0, lens[0]), nkeys, n, argv, lens,
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

/* Add e to the open batch of its partition in open[] (of kind, opened when needed), sending it
 * when full. Returns 0, or HB_ENOMEM when no batch could be opened (e was not added). */
static int batch_add(rstore_t *R, bbatch_t **open, int kind, int final, bentry_t e)
{
    bbatch_t **b = &open[e.part];
    if (*b == NULL && (*b = batch_new(R, kind, e.part, final)) == NULL)
        return HB_ENOMEM;
    (*b)->e[(*b)->n++] = e;
    if ((*b)->n == BATCH_MAX) {
        batch_send(R, *b);
        *b = NULL;
    }
    return 0;
}

/* Send every batch still open in open[]. */
static void batch_send_open(rstore_t *R, bbatch_t **open)
{
    for (unsigned p = 0; p < PARTITIONS; p++)
        if (open[p] != NULL)
            batch_send(R, open[p]);
}

/* The envelopes shakes took from each bucket since the last look, reported in batches by
 * partition; the leases held renewed. */
static void report_taken(rstore_t *R)
{
    budget_t *B = &R->budget;
    bbatch_t *open[PARTITIONS] = {0};
    for (unsigned s = 0; s < R->g->nsets; s++) {
        bshadow_t *sh = &B->shadow[s];
        uint32_t popped = hb_envq_popped(R->g->envq, s);
        uint32_t taken = popped - sh->seen;
        for (uint32_t i = 0; i < taken && sh->fifo.count > 0; i++) {
            bentry_t e = *fifo_front(&sh->fifo);
            if (batch_add(R, open, BATCH_REPORT, 0, e) != 0)
                break; /* looked at again on the next tick */
            (void)fifo_pop(&sh->fifo);
            sh->seen++;
            B->held[e.part]--;
        }
    }
    uint64_t now = uv_now(R->loop);
    for (unsigned p = 0; p < PARTITIONS; p++) {
        /* A partition we hold envelopes of is renewed even when nothing was taken. */
        if (open[p] == NULL && B->held[p] > 0 && now - B->renewed_ms[p] >= R->lease_ms / 6)
            open[p] = batch_new(R, BATCH_REPORT, p, 0);
    }
    batch_send_open(R, open);
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
        /* One plan's envelopes in a batch (budget_put.lua counts them under its epoch). */
        uint32_t epoch = fifo_front(&B->made[p])->epoch;
        while (b->n < BATCH_MAX && B->made[p].count > 0 &&
               fifo_front(&B->made[p])->epoch == epoch) {
            b->e[b->n++] = fifo_pop(&B->made[p]);
            B->made_count--;
        }
        B->put_busy[p] = 1;
        batch_send(R, b);
    }
}

static void draw_next(rstore_t *R);
static void generate(rstore_t *R);

static void on_draw(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc;
    rstore_t *R = arg;
    budget_t *B = &R->budget;
    B->drawing = 0;
    B->in_flight--;
    unsigned set = B->retry_set, part = B->retry_part;
    /* A draw goes into the buckets only once as many replicas as asked have it: a failover that
     * lost it would put its envelopes back in the queue while shakes hand them out here, and
     * another instance would draw and hand them out again. Until then the same draw is sent
     * again (its retry returns the same envelopes, and waits for the replicas again). */
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || acked < R->replicas) {
        if (!B->stopping)
            hb__group_count_control(R->g, HB_CTR_X_STORE_ERRORS, 1);
        budget_maybe_done(R);
        return; /* the same draw again on the next tick (B->draw_retry_seq) */
    }
    B->draw_retry_seq = 0;
    bbatch_t *back[PARTITIONS] = {0}; /* what cannot go into the bucket (full, or stopping) */
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *r = reply->element[i];
        unsigned long idx, amount;
        if (r->type != REDIS_REPLY_STRING || sscanf(r->str, "%lu:%lu", &idx, &amount) != 2)
            continue;
        bentry_t e = {.idx = (uint32_t)idx, .amount = (uint32_t)amount, .part = (uint8_t)part};
        uint32_t id = hb_envelope_id_add(HB_ENVELOPE_SHAKE, 0, (uint64_t)idx + 1);
        bshadow_t *sh = &B->shadow[set];
        if (!B->stopping && id != 0 && fifo_push(&sh->fifo, e) == 0) {
            if (hb_envq_push_to(R->g->envq, set, (hb_envelope_t){id, e.amount}) == 0) {
                B->held[part]++;
                continue;
            }
            sh->fifo.count--; /* undo the push: the bucket is full */
        }
        (void)batch_add(R, back, BATCH_RETURN, B->stopping, e); /* else it expires with the lease */
    }
    batch_send_open(R, back);
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
    if (hb__rcluster_eval(R->control, R->s_draw, hb__rs_slot(q, lens[0]), 3, 8, argv, lens,
                          R->replicas, R->wait_ms, on_draw, R) == 0) {
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
        (void)hb__rcluster_eval(R->control, R->s_draw, hb__rs_slot(q, lens[0]), 3, 8, argv, lens, 0,
                                0, hb__rs_ignored, NULL);
    }
}

/* What is due to Redis: failed batches again, the envelopes made here, what shakes took. */
static void flush(rstore_t *R)
{
    budget_t *B = &R->budget;
    bbatch_t *again = B->failed;
    B->failed = NULL;
    while (again != NULL) {
        bbatch_t *b = again;
        again = b->next;
        batch_send(R, b);
    }
    put_made(R);
    report_taken(R);
}

void hb__rs_on_tick(uv_timer_t *t)
{
    rstore_t *R = t->data;
    sweep_expired(R);
    plan_send(R);
    hb__rs_create_retry(R);
    generate(R);
    flush(R);
    draw_next(R);
}

/* A shake envelope made here (of plan epoch, or 0) on its way to its partition. */
static int put_one(rstore_t *R, uint32_t id, uint32_t amount, uint32_t epoch)
{
    budget_t *B = &R->budget;
    int64_t idx = hb_envelope_id_index(HB_ENVELOPE_SHAKE, id);
    if (idx < 0 || B->stopping)
        return HB_EINVAL;
    if (B->made_count >= PUT_BACKLOG)
        return HB_EAGAIN;
    unsigned part = (unsigned)(idx % PARTITIONS);
    bentry_t e = {.idx = (uint32_t)idx, .amount = amount, .epoch = epoch, .part = (uint8_t)part};
    if (fifo_push(&B->made[part], e) != 0)
        return HB_EAGAIN;
    B->made_count++;
    return 0;
}

int hb__rs_put_shake(hb_store_t *st, uint32_t id, uint32_t amount)
{
    return put_one(hb__rs_of(st), id, amount, 0);
}

/* ---- the fleet's generator: one instance at a time, by a lease, makes the plan's envelopes ----
 */

static const char plan_key[] = HB_FLEET_KEY_PLAN;
static const char lease_key[] = HB_FLEET_KEY_LEASE;

static void on_plan(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    rstore_t *R = arg;
    budget_t *B = &R->budget;
    B->plan_sending = 0;
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        /* Sent again (the same token: applied once) until Redis has it or a newer plan comes. */
        if (B->plan_sent_seq == B->plan_seq) /* else the newer plan goes at once */
            B->plan_retry_ms = uv_now(R->loop) + hb__backoff_ms(100, (unsigned)B->plan_tries, 5);
        if (B->plan_tries == 1)
            hb__group_log(R->g, "redis: the shake plan is not stored yet (%s): trying again",
                          err != 0 ? hb_strerror(err) : "an unexpected answer");
        return;
    }
    if (B->plan_seq == B->plan_sent_seq) {
        B->plan_pending = 0;
        if (B->plan_tries > 1)
            hb__group_log(R->g, "redis: the shake plan is stored (epoch %lld, try %llu)",
                          reply->integer, (unsigned long long)B->plan_tries);
    }
}

/* The pending plan to Redis, unless one is on its way or its retry is not due. */
static void plan_send(rstore_t *R)
{
    budget_t *B = &R->budget;
    if (!B->plan_pending || B->plan_sending || uv_now(R->loop) < B->plan_retry_ms ||
        R->control == NULL)
        return;
    char q[24], c[24], token[192];
    const char *argv[] = {plan_key, q, c, token};
    size_t lens[] = {
        sizeof plan_key - 1, (size_t)snprintf(q, sizeof q, "%llu", (unsigned long long)B->plan_qps),
        (size_t)snprintf(c, sizeof c, "%llu", (unsigned long long)B->plan_count),
        (size_t)snprintf(token, sizeof token, "%s:%llu:%llu", R->instance,
                         (unsigned long long)B->plan_nonce, (unsigned long long)B->plan_seq)};
    if (hb__rcluster_eval(R->control, R->s_plan, hb__rs_slot(plan_key, sizeof plan_key - 1), 1, 4,
                          argv, lens, R->replicas, R->wait_ms, on_plan, R) == 0) {
        B->plan_sending = 1;
        B->plan_sent_seq = B->plan_seq;
        B->plan_tries++;
    } else {
        B->plan_retry_ms = uv_now(R->loop) + 100;
    }
}

/* The plan is kept and sent until Redis has stored it: on a loaded or unreachable cluster the
 * first attempts may time out. A newer plan replaces one not yet stored. */
int hb__rs_plan_shake(hb_store_t *st, uint64_t qps, uint64_t count)
{
    rstore_t *R = hb__rs_of(st);
    budget_t *B = &R->budget;
    if (R->closing)
        return UV_EINVAL;
    if (B->plan_nonce == 0)
        B->plan_nonce = (uint64_t)time(NULL) * 1000000u + (uint64_t)(uv_hrtime() / 1000 % 1000000);
    B->plan_pending = 1;
    B->plan_qps = qps;
    B->plan_count = count;
    B->plan_seq++;
    B->plan_tries = 0;
    B->plan_retry_ms = 0;
    plan_send(R);
    return 0;
}

/* One partition's count of the plan's envelopes (budget_put.lua's e:<epoch>). */
static void on_made(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    rstore_t *R = arg;
    budget_t *B = &R->budget;
    if (err != 0 || reply == NULL || reply->type == REDIS_REPLY_ERROR)
        B->gen_active = 0; /* not known: asked again at the next lease call */
    else if (reply->type == REDIS_REPLY_STRING)
        B->gen_made += strtoull(reply->str, NULL, 10);
    if (--B->gen_made_left == 0) {
        B->gen_asking = 0;
        B->gen_known = B->gen_active;
    }
}

static void ask_made(rstore_t *R)
{
    budget_t *B = &R->budget;
    char field[32];
    int flen = snprintf(field, sizeof field, "e:%llu", (unsigned long long)B->gen_epoch);
    B->gen_made = 0;
    B->gen_made_left = PARTITIONS;
    for (unsigned p = 0; p < PARTITIONS; p++) {
        char key[48];
        size_t klen = part_key(key, sizeof key, p, "c");
        const char *argv[] = {"HGET", key, field};
        size_t lens[] = {4, klen, (size_t)flen};
        if (hb__rcluster_command(R->control, hb__rs_slot(key, klen), 3, argv, lens, on_made, R) !=
            0) {
            B->gen_active = 0;
            if (--B->gen_made_left == 0)
                B->gen_asking = 0;
        }
    }
}

static void on_lease(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    rstore_t *R = arg;
    budget_t *B = &R->budget;
    B->gen_asking = 0;
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 6) {
        B->gen_active = 0; /* not sure to hold it: make nothing */
        return;
    }
    long long v[6];
    for (size_t i = 0; i < 6; i++)
        v[i] = reply->element[i]->type == REDIS_REPLY_INTEGER ? reply->element[i]->integer : 0;
    B->gen_clock = (int64_t)v[5] - (int64_t)uv_now(R->loop);
    if (!v[0]) {
        if (B->gen_active)
            hb__group_log(R->g, "redis: another instance is the fleet's generator now");
        B->gen_active = 0;
        return;
    }
    uint64_t epoch = (uint64_t)v[4];
    B->gen_qps = (uint64_t)v[1];
    B->gen_total = (uint64_t)v[2];
    B->gen_start_ms = (uint64_t)v[3];
    if (!B->gen_active || epoch != B->gen_epoch) {
        if (!B->gen_active)
            hb__group_log(R->g, "redis: this instance is the fleet's generator");
        /* What the plan has made so far, wherever: the partitions count it. */
        B->gen_active = 1;
        B->gen_known = 0;
        B->gen_epoch = epoch;
        B->gen_asking = 1;
        ask_made(R);
    }
}

/* On the tick: the lease (taken or renewed every third of it), then the plan's envelopes due. */
static void generate(rstore_t *R)
{
    budget_t *B = &R->budget;
    if (!B->gen_role || B->stopping)
        return;
    uint64_t now = uv_now(R->loop);
    if (!B->gen_asking && now - B->gen_leased_ms >= GEN_LEASE_MS / 3) {
        char ms[16];
        const char *argv[] = {lease_key, plan_key, R->instance, ms};
        size_t lens[] = {sizeof lease_key - 1, sizeof plan_key - 1, strlen(R->instance),
                         (size_t)snprintf(ms, sizeof ms, "%u", (unsigned)GEN_LEASE_MS)};
        if (hb__rcluster_eval(R->control, R->s_lease, hb__rs_slot(lease_key, sizeof lease_key - 1),
                              2, 4, argv, lens, 0, 0, on_lease, R) == 0) {
            B->gen_asking = 1;
            B->gen_leased_ms = now;
        }
    }
    if (!B->gen_active || !B->gen_known || B->gen_epoch == 0)
        return;
    /* Paced by Redis's clock, so that a standby taking over goes on where the plan stands. */
    int64_t redis_now = (int64_t)now + B->gen_clock;
    uint64_t elapsed =
        redis_now > (int64_t)B->gen_start_ms ? (uint64_t)redis_now - B->gen_start_ms : 0;
    uint64_t due = B->gen_qps * elapsed / 1000 + 1;
    if (due > B->gen_total)
        due = B->gen_total;
    while (B->gen_made < due) {
        uint32_t id;
        if (R->st->ops->shake_id(R->st, &id) != 0)
            break; /* no id block yet: the next tick */
        uint32_t amount = (uint32_t)hb_rand_range(R->rng, R->amount_min, R->amount_max);
        if (put_one(R, id, amount, (uint32_t)B->gen_epoch) != 0)
            break; /* too many not yet stored: the next tick (that id is skipped, never reused) */
        B->gen_made++;
        hb__group_count_control(R->g, HB_CTR_SHAKE_ENVELOPES, 1);
        hb__group_count_control(R->g, HB_CTR_SHAKE_AMOUNT_ISSUED, amount);
    }
}

/* The instance stops (the workers have ended: nothing pops the buckets any more): what shakes
 * took is reported, what the buckets still hold goes back to the budget, what was made here is
 * put; then the clients close. */
void hb__rs_budget_stop(rstore_t *R)
{
    budget_t *B = &R->budget;
    B->stopping = 1;
    if (R->tick_open)
        uv_timer_stop(&R->tick);
    flush(R); /* failures again, puts, the last reports */
    bbatch_t *open[PARTITIONS] = {0};
    for (unsigned s = 0; s < R->g->nsets; s++) {
        bshadow_t *sh = &B->shadow[s];
        while (sh->fifo.count > 0) {
            bentry_t e = *fifo_front(&sh->fifo);
            if (batch_add(R, open, BATCH_RETURN, 1, e) != 0)
                break; /* left in the lease: it expires */
            (void)fifo_pop(&sh->fifo);
            B->held[e.part]--;
        }
    }
    batch_send_open(R, open);
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
    hb__rs_close_clients(R);
}

int hb__rs_budget_init(rstore_t *R)
{
    budget_t *B = &R->budget;
    B->shadow = calloc(R->g->nsets, sizeof *B->shadow);
    if (B->shadow == NULL)
        return HB_ENOMEM;
    for (unsigned s = 0; s < R->g->nsets; s++)
        B->shadow[s].fifo.elem = sizeof(bentry_t);
    for (unsigned p = 0; p < PARTITIONS; p++)
        B->made[p].elem = sizeof(bentry_t);
    return 0;
}

void hb__rs_budget_free(rstore_t *R)
{
    budget_t *B = &R->budget;
    if (B->shadow != NULL)
        for (unsigned s = 0; s < R->nsets; s++)
            hb__fifo_free(&B->shadow[s].fifo);
    free(B->shadow);
    for (unsigned p = 0; p < PARTITIONS; p++)
        hb__fifo_free(&B->made[p]);
    while (B->failed != NULL) {
        bbatch_t *b = B->failed;
        B->failed = b->next;
        free(b);
    }
}
