/* The fleet's audit (hongbao/fleetaudit.h): the send id space's mark read, every envelope up to it
 * read (a window of HGETALLs at a time) and judged by hb_fleet_envelope_read, then every budget
 * partition by budget_audit.lua and hb_fleet_partition_check. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/envelope.h"
#include "hongbao/fleetaudit.h"

#ifdef HB_HAVE_REDIS

#include "hb_fleet_lua.h"
#include "hb_rcluster.h"

#define WINDOW     256 /* envelopes read at once */
#define PARTITIONS HB_FLEET_PARTITIONS

typedef struct audit {
    uv_loop_t *loop;
    hb_rcluster_t *rc;
    hb_rscript_t *s_budget;
    hb_fleet_audit_cb cb;
    void *arg;
    hb_fleet_audit_result_t r;
    uint32_t next_id; /* the next envelope id to ask for; 0: all asked */
    unsigned outstanding;
    unsigned next_part;
    int err;
    int phase; /* 0: the mark, 1: envelopes, 2: partitions, 3: done */
} audit_t;

static void violation(audit_t *a, const char *fmt, ...)
{
    if (a->r.violations < sizeof a->r.first / sizeof a->r.first[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(a->r.first[a->r.violations], sizeof a->r.first[0], fmt, ap);
        va_end(ap);
    }
    a->r.violations++;
}

static void on_closed(void *arg)
{
    audit_t *a = arg;
    a->cb(a->err, &a->r, a->arg);
    free(a);
}

static void finish(audit_t *a, int err)
{
    if (a->phase == 3)
        return;
    a->phase = 3;
    if (a->err == 0)
        a->err = err;
    hb__rcluster_close(a->rc, on_closed, a);
}

static void step(audit_t *a);

static void on_envelope(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    uintptr_t *ctx = arg;
    audit_t *a = (audit_t *)ctx[0];
    uint32_t id = (uint32_t)ctx[1];
    free(ctx);
    a->outstanding--;
    if (a->phase == 3)
        return;
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        finish(a, err != 0 ? err : HB_ESTORE);
        return;
    }
    if (reply->elements > 0) { /* an id reserved and never used is no envelope */
        size_t n = reply->elements / 2;
        hb_fleet_field_t *f = calloc(n, sizeof *f);
        if (f == NULL) {
            finish(a, HB_ENOMEM);
            return;
        }
        for (size_t i = 0; i < n; i++)
            f[i] =
                (hb_fleet_field_t){reply->element[2 * i]->str, reply->element[2 * i]->len,
                                   reply->element[2 * i + 1]->str, reply->element[2 * i + 1]->len};
        hb_sendenv_t e;
        const char *why = hb_fleet_envelope_read(id, f, n, &e);
        free(f);
        a->r.envelopes++;
        if (why != NULL) {
            violation(a, "envelope %u: %s", (unsigned)id, why);
        } else {
            a->r.issued_amount += e.total;
            a->r.grants += (uint64_t)__builtin_popcount(e.claimed);
            a->r.granted_amount += e.claimed_sum;
        }
    }
    step(a);
}

static void on_partition(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    uintptr_t *ctx = arg;
    audit_t *a = (audit_t *)ctx[0];
    unsigned part = (unsigned)ctx[1];
    free(ctx);
    a->outstanding--;
    if (a->phase == 3)
        return;
    long long v[15];
    hb_fleet_partition_t p;
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 15) {
        finish(a, err != 0 ? err : HB_ESTORE);
        return;
    }
    for (size_t i = 0; i < 15; i++)
        v[i] = reply->element[i]->type == REDIS_REPLY_INTEGER ? reply->element[i]->integer : -1;
    if (hb_fleet_partition_set(&p, v, 15) != 0) {
        violation(a, "budget partition %u: not a partition's figures", part);
    } else {
        const char *why = hb_fleet_partition_check(&p);
        if (why != NULL)
            violation(a, "budget partition %u: %s", part, why);
        hb_fleet_partition_add(&a->r.budget, &p);
        a->r.partitions++;
    }
    step(a);
}

static int ask_envelope(audit_t *a, uint32_t id)
{
    uintptr_t *ctx = malloc(2 * sizeof *ctx);
    if (ctx == NULL)
        return HB_ENOMEM;
    ctx[0] = (uintptr_t)a;
    ctx[1] = id;
    char key[32];
    int klen = snprintf(key, sizeof key, HB_FLEET_KEY_ENVELOPE, (unsigned)id);
    const char *argv[] = {"HGETALL", key};
    size_t lens[] = {7, (size_t)klen};
    int r = hb__rcluster_command(a->rc, hb__keyslot(key, (size_t)klen), 2, argv, lens, on_envelope,
                                 ctx);
    if (r != 0)
        free(ctx);
    else
        a->outstanding++;
    return r;
}

static int ask_partition(audit_t *a, unsigned part)
{
    uintptr_t *ctx = malloc(2 * sizeof *ctx);
    if (ctx == NULL)
        return HB_ENOMEM;
    ctx[0] = (uintptr_t)a;
    ctx[1] = part;
    char q[32], c[32], z[32], o[32], l[32];
    size_t ql = (size_t)snprintf(q, sizeof q, HB_FLEET_KEY_PARTITION, part, "q");
    const char *argv[] = {q, c, z, o, l};
    size_t lens[] = {ql, (size_t)snprintf(c, sizeof c, HB_FLEET_KEY_PARTITION, part, "c"),
                     (size_t)snprintf(z, sizeof z, HB_FLEET_KEY_PARTITION, part, "z"),
                     (size_t)snprintf(o, sizeof o, HB_FLEET_KEY_PARTITION, part, "o"),
                     (size_t)snprintf(l, sizeof l, HB_FLEET_KEY_PARTITION, part, "l:")};
    int r = hb__rcluster_eval(a->rc, a->s_budget, hb__keyslot(q, ql), 4, 5, argv, lens, 0, 0,
                              on_partition, ctx);
    if (r != 0)
        free(ctx);
    else
        a->outstanding++;
    return r;
}

/* Keep WINDOW reads out until every envelope id up to the mark is read, then the partitions. */
static void step(audit_t *a)
{
    if (a->phase == 1) {
        while (a->next_id != 0 && a->next_id <= a->r.highest_send_id && a->outstanding < WINDOW) {
            int r = ask_envelope(a, a->next_id);
            if (r != 0) {
                finish(a, r);
                return;
            }
            a->next_id = a->next_id == a->r.highest_send_id
                             ? 0
                             : hb_envelope_id_add(HB_ENVELOPE_SEND, a->next_id, 1);
        }
        if ((a->next_id == 0 || a->next_id > a->r.highest_send_id) && a->outstanding == 0)
            a->phase = 2;
    }
    if (a->phase == 2) {
        while (a->next_part < PARTITIONS && a->outstanding < WINDOW) {
            int r = ask_partition(a, a->next_part++);
            if (r != 0) {
                finish(a, r);
                return;
            }
        }
        if (a->next_part == PARTITIONS && a->outstanding == 0)
            finish(a, 0);
    }
}

static void on_mark(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)acked;
    audit_t *a = arg;
    a->outstanding--;
    if (err != 0 || reply == NULL ||
        (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
        finish(a, err != 0 ? err : HB_ESTORE);
        return;
    }
    a->r.highest_send_id =
        reply->type == REDIS_REPLY_STRING ? (uint32_t)strtoul(reply->str, NULL, 10) : 0;
    a->next_id = a->r.highest_send_id != 0 ? hb_envelope_id_add(HB_ENVELOPE_SEND, 0, 1) : 0;
    a->phase = 1;
    step(a);
}

int hb_fleet_audit(uv_loop_t *loop, const char *seeds, hb_log_cb log, void *log_arg,
                   hb_fleet_audit_cb cb, void *arg)
{
    if (loop == NULL || seeds == NULL || seeds[0] == '\0' || cb == NULL)
        return UV_EINVAL;
    audit_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return UV_ENOMEM;
    a->loop = loop;
    a->cb = cb;
    a->arg = arg;
    hb_rcluster_options_t o = {.seeds = seeds, .log = log, .log_arg = log_arg};
    int r = hb__rcluster_open(loop, &o, &a->rc);
    if (r != 0) {
        free(a);
        return r;
    }
    static const char key[] = HB_FLEET_KEY_IDS;
    const char *argv[] = {"HGET", key, "send"};
    size_t lens[] = {4, sizeof key - 1, 4};
    if ((r = hb__rcluster_script(a->rc, hb__lua_budget_audit, &a->s_budget)) != 0 ||
        (r = hb__rcluster_command(a->rc, hb__keyslot(key, sizeof key - 1), 3, argv, lens, on_mark,
                                  a)) != 0) {
        a->cb = NULL;
        hb__rcluster_close(a->rc, free, a); /* nothing was asked: freed once closed */
        return r;
    }
    a->outstanding = 1;
    return 0;
}

#else /* no hiredis */

int hb_fleet_audit(uv_loop_t *loop, const char *seeds, hb_log_cb log, void *log_arg,
                   hb_fleet_audit_cb cb, void *arg)
{
    (void)log, (void)log_arg, (void)arg;
    if (loop == NULL || seeds == NULL || seeds[0] == '\0' || cb == NULL)
        return UV_EINVAL;
    return UV_ENOTSUP;
}

#endif
