/* Tests of the Redis Cluster client (lib/runtime/hb_rcluster.c) against a real cluster of Debian's
 * redis-server (examples/fleet/cluster.sh, a CTest fixture: HB_TEST_REDIS has its seeds,
 * HB_TEST_REDIS_DIR its files) and against fake nodes in the test that close, stall, send
 * garbage or half an answer. Tests that reshape the cluster (a slot migrated, a failover, a master
 * killed) put it back as it was. Admin commands go through hiredis's blocking API. */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "hb_rcluster.h"
#include "hb_redis_hash.h"

/* ---- the cluster, as admin sees it ---- */

static const char *cluster_dir(void)
{
    const char *d = getenv("HB_TEST_REDIS_DIR");
    ck_assert_msg(d != NULL, "HB_TEST_REDIS_DIR is not set (run through ctest)");
    return d;
}

static const char *seeds(void)
{
    const char *s = getenv("HB_TEST_REDIS");
    ck_assert_msg(s != NULL, "HB_TEST_REDIS is not set (run through ctest)");
    return s;
}

/* The seed ports, in order. */
static int seed_ports(int *ports, int max)
{
    int n = 0;
    const char *p = seeds();
    while (p != NULL && n < max) {
        const char *colon = strchr(p, ':');
        ck_assert_ptr_nonnull(colon);
        ports[n++] = atoi(colon + 1);
        p = strchr(colon, ',');
        if (p != NULL)
            p++;
    }
    return n;
}

static redisContext *adm_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    ck_assert_ptr_nonnull(c);
    if (c->err != 0) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, (struct timeval){10, 0});
    return c;
}

/* One admin command (its words from ap, up to a NULL) on the node at port; the reply, or NULL when
 * the node cannot be reached. The caller frees it. */
static redisReply *adm_va(int port, va_list ap)
{
    const char *argv[16];
    int argc = 0;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 16)
        argv[argc++] = a;
    redisContext *c = adm_connect(port);
    if (c == NULL)
        return NULL;
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    redisFree(c);
    return r;
}

static redisReply *adm(int port, ...)
{
    va_list ap;
    va_start(ap, port);
    redisReply *r = adm_va(port, ap);
    va_end(ap);
    return r;
}

/* The same, asserting a status or string reply; its text into out (may be NULL). */
static void adm_ok(int port, char *out, size_t out_size, ...)
{
    va_list ap;
    va_start(ap, out_size);
    redisReply *r = adm_va(port, ap);
    va_end(ap);
    ck_assert_msg(r != NULL, "node %d unreachable", port);
    ck_assert_msg(r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING, "on %d: %s", port,
                  r->str != NULL ? r->str : "(not a string)");
    if (out != NULL)
        snprintf(out, out_size, "%s", r->str);
    freeReplyObject(r);
}

typedef struct range {
    int start, end, master, replica;
    char id[41], replica_id[41];
} range_t;

typedef struct topo {
    int n;
    range_t r[32];
} topo_t;

/* CLUSTER SLOTS from the first seed that answers it. */
static void topo_read(topo_t *t)
{
    int ports[8], np = seed_ports(ports, 8);
    memset(t, 0, sizeof *t);
    for (int i = 0; i < np; i++) {
        redisReply *r = adm(ports[i], "CLUSTER", "SLOTS", NULL);
        if (r == NULL)
            continue;
        if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
            for (size_t k = 0; k < r->elements && t->n < 32; k++) {
                redisReply *e = r->element[k];
                range_t *g = &t->r[t->n++];
                g->start = (int)e->element[0]->integer;
                g->end = (int)e->element[1]->integer;
                g->master = (int)e->element[2]->element[1]->integer;
                snprintf(g->id, sizeof g->id, "%s", e->element[2]->element[2]->str);
                if (e->elements > 3) {
                    g->replica = (int)e->element[3]->element[1]->integer;
                    snprintf(g->replica_id, sizeof g->replica_id, "%s",
                             e->element[3]->element[2]->str);
                }
            }
            freeReplyObject(r);
            return;
        }
        freeReplyObject(r);
    }
    ck_abort_msg("no node answers CLUSTER SLOTS");
}

/* CLUSTER SLOTS once every range lists its replica (a node that just rejoined may take a moment
 * to be listed): polled, for up to 15 s. */
static void topo_read_full(topo_t *t)
{
    for (int i = 0; i < 150; i++) {
        topo_read(t);
        int full = t->n > 0;
        for (int k = 0; k < t->n; k++)
            full &= t->r[k].replica > 0;
        if (full)
            return;
        usleep(100 * 1000);
    }
    ck_abort_msg("a range of the cluster has no replica");
}

static const range_t *topo_range(const topo_t *t, int slot)
{
    for (int i = 0; i < t->n; i++)
        if (slot >= t->r[i].start && slot <= t->r[i].end)
            return &t->r[i];
    ck_abort_msg("slot %d has no master", slot);
    return NULL;
}

static int masters(const topo_t *t, int *ports)
{
    int n = 0;
    for (int i = 0; i < t->n; i++) {
        int seen = 0;
        for (int k = 0; k < n; k++)
            seen |= ports[k] == t->r[i].master;
        if (!seen)
            ports[n++] = t->r[i].master;
    }
    return n;
}

static uint16_t slot_of(const char *key)
{
    return hb__keyslot(key, strlen(key));
}

/* Run examples/fleet/cluster.sh with a verb and a port, bounded. */
static void script(const char *verb, int port)
{
    char cmd[1024];
    const char *sh = getenv("HB_TEST_REDIS_SCRIPT");
    ck_assert_ptr_nonnull(sh);
    snprintf(cmd, sizeof cmd, "timeout 120 bash '%s' %s '%s' %d", sh, verb, cluster_dir(), port);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

/* Poll (a shell-harness habit: the cluster's state has no event to wait on) until the node at port
 * says it is a master, for up to seconds. */
static void wait_master(int port, int seconds)
{
    for (int i = 0; i < seconds * 10; i++) {
        redisReply *r = adm(port, "ROLE", NULL);
        int is = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                 strcmp(r->element[0]->str, "master") == 0;
        if (r != NULL)
            freeReplyObject(r);
        if (is)
            return;
        usleep(100 * 1000);
    }
    ck_abort_msg("node %d did not become master", port);
}

/* ---- the client under test ---- */

typedef struct call {
    int n, err, acked, type;
    long long integer;
    size_t elements;
    char str[256];
    uint64_t at; /* loop ms of the callback */
    struct tctx *t;
} call_t;

typedef struct tctx {
    uv_loop_t loop;
    uv_timer_t guard;
    int guard_fired;
    hb_rcluster_t *rc;
    int closed;
    int done; /* callbacks run */
    void (*on_call)(struct tctx *t, call_t *c);
} tctx_t;

static void on_reply(hb_rcluster_t *rc, int err, const redisReply *r, int acked, void *arg)
{
    (void)rc;
    call_t *c = arg;
    c->n++;
    c->err = err;
    c->acked = acked;
    c->at = uv_now(&c->t->loop);
    if (r != NULL) {
        c->type = r->type;
        c->integer = r->integer;
        c->elements = r->elements;
        snprintf(c->str, sizeof c->str, "%s", r->str != NULL ? r->str : "");
    }
    c->t->done++;
    if (c->t->on_call != NULL)
        c->t->on_call(c->t, c);
}

/* The client's log on stderr when HB_TEST_LOG is set. */
static void test_log(void *arg, const char *line)
{
    (void)arg;
    if (getenv("HB_TEST_LOG") != NULL)
        fprintf(stderr, "%s\n", line);
}

/* A loop with the guard timer, no client yet. */
static void t_init(tctx_t *t)
{
    memset(t, 0, sizeof *t);
    ck_assert_int_eq(uv_loop_init(&t->loop), 0);
    uv_timer_init(&t->loop, &t->guard);
    t->guard.data = t;
}

/* The client on seed_list (backoff_max_ms 0: the default). */
static void t_start(tctx_t *t, const char *seed_list, uint32_t timeout_ms, uint32_t backoff_max_ms)
{
    hb_rcluster_options_t o = {.seeds = seed_list,
                               .timeout_ms = timeout_ms,
                               .backoff_max_ms = backoff_max_ms,
                               .log = test_log};
    ck_assert_int_eq(hb__rcluster_open(&t->loop, &o, &t->rc), 0);
}

static void t_open(tctx_t *t, const char *seed_list, uint32_t timeout_ms)
{
    t_init(t);
    t_start(t, seed_list, timeout_ms, 0);
}

static void on_guard(uv_timer_t *h)
{
    ((tctx_t *)h->data)->guard_fired = 1;
}

/* Run the loop until *count reaches target, for at most guard_ms. */
static void t_wait(tctx_t *t, const int *count, int target, uint32_t guard_ms)
{
    t->guard_fired = 0;
    uv_timer_start(&t->guard, on_guard, guard_ms, 0);
    while (*count < target && !t->guard_fired)
        uv_run(&t->loop, UV_RUN_ONCE);
    uv_timer_stop(&t->guard);
    ck_assert_msg(*count >= target, "only %d of %d in %u ms", *count, target, guard_ms);
}

static void on_closed(void *arg)
{
    ((tctx_t *)arg)->closed++;
}

static void count_handle(uv_handle_t *h, void *arg)
{
    (void)h;
    (*(int *)arg)++;
}

/* Close the client (if still open), wait for closed(), then check that nothing was left open. */
static void t_close(tctx_t *t)
{
    if (t->rc != NULL) {
        hb__rcluster_close(t->rc, on_closed, t);
        t->rc = NULL;
    }
    t_wait(t, &t->closed, 1, 5000);
    ck_assert_int_eq(t->closed, 1);
    uv_close((uv_handle_t *)&t->guard, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    int left = 0;
    uv_walk(&t->loop, count_handle, &left);
    ck_assert_int_eq(left, 0);
    ck_assert_int_eq(uv_loop_close(&t->loop), 0);
}

/* Submit argv (NULL-terminated; its second word is the key) without waiting. */
static void t_send(tctx_t *t, call_t *c, int replicas, const char *w0, ...)
{
    const char *argv[16] = {w0};
    int argc = 1;
    va_list ap;
    va_start(ap, w0);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 16)
        argv[argc++] = a;
    va_end(ap);
    memset(c, 0, sizeof *c);
    c->t = t;
    uint16_t slot = argc > 1 ? slot_of(argv[1]) : 0;
    int err = replicas > 0 ? hb__rcluster_command_wait(t->rc, slot, argc, argv, NULL, replicas,
                                                       1000, on_reply, c)
                           : hb__rcluster_command(t->rc, slot, argc, argv, NULL, on_reply, c);
    ck_assert_int_eq(err, 0);
}

#define T_CMD(t, c, ...)                                                                           \
    do {                                                                                           \
        t_send(t, c, 0, __VA_ARGS__, NULL);                                                        \
        t_wait(t, &(c)->n, 1, 10000);                                                              \
        ck_assert_int_eq((c)->n, 1);                                                               \
    } while (0)

static hb_rcluster_stats_t stats(tctx_t *t)
{
    hb_rcluster_stats_t s;
    hb__rcluster_stats(t->rc, &s);
    return s;
}

/* A key "<prefix><i>" whose slot the master at port owns. */
static void key_on(const topo_t *tp, int port, const char *prefix, char *key, size_t size)
{
    for (int i = 0; i < 100000; i++) {
        snprintf(key, size, "%s%d", prefix, i);
        if (topo_range(tp, slot_of(key))->master == port)
            return;
    }
    ck_abort_msg("no key on %d", port);
}

/* ---- routing ---- */

START_TEST(routes_to_every_master)
{
    topo_t tp;
    topo_read(&tp);
    int ms[8];
    ck_assert_int_eq(masters(&tp, ms), 3);
    tctx_t t;
    t_open(&t, seeds(), 2000);
    for (int m = 0; m < 3; m++) {
        char key[64];
        key_on(&tp, ms[m], "route:", key, sizeof key);
        call_t c;
        T_CMD(&t, &c, "SET", key, "v1");
        ck_assert_int_eq(c.err, 0);
        ck_assert_str_eq(c.str, "OK");
        /* The key is where the cluster says: its master answers it without a redirection. */
        redisReply *r = adm(ms[m], "GET", key, NULL);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(r->str, "v1");
        freeReplyObject(r);
        T_CMD(&t, &c, "GET", key);
        ck_assert_int_eq(c.err, 0);
        ck_assert_str_eq(c.str, "v1");
        int port = 0;
        ck_assert_int_eq(hb__rcluster_slot_owner(t.rc, slot_of(key), NULL, 0, &port), 0);
        ck_assert_int_eq(port, ms[m]);
        T_CMD(&t, &c, "DEL", key);
    }
    hb_rcluster_stats_t s = stats(&t);
    ck_assert_uint_eq(s.moved, 0);
    ck_assert_uint_eq(s.ask, 0);
    ck_assert_uint_ge(s.refreshes, 1);
    ck_assert_uint_eq(s.sent, 9);
    /* A Redis error that is not a routing one is the caller's answer. */
    call_t c;
    T_CMD(&t, &c, "INCR", "route:notanumber:{x}");
    T_CMD(&t, &c, "SET", "route:str", "abc");
    T_CMD(&t, &c, "INCR", "route:str");
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_ERROR);
    ck_assert_msg(strncmp(c.str, "ERR", 3) == 0, "%s", c.str);
    t_close(&t);
}
END_TEST

START_TEST(hash_tags_share_a_node)
{
    ck_assert_uint_eq(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    tctx_t t;
    t_open(&t, seeds(), 2000);
    call_t c;
    T_CMD(&t, &c, "SET", "{user1000}.following", "a");
    T_CMD(&t, &c, "SET", "{user1000}.followers", "b");
    /* A multi-key command: Redis answers it only when every key is in one slot of its own. */
    T_CMD(&t, &c, "MGET", "{user1000}.following", "{user1000}.followers");
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(c.elements, 2);
    T_CMD(&t, &c, "DEL", "{user1000}.following", "{user1000}.followers");
    ck_assert_int_eq(c.integer, 2);
    /* Without a tag the same command crosses slots, and Redis refuses it (an answer, not a
     * routing error). */
    T_CMD(&t, &c, "MGET", "foo", "bar");
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_ERROR);
    ck_assert_msg(strncmp(c.str, "CROSSSLOT", 9) == 0, "%s", c.str);
    t_close(&t);
}
END_TEST

START_TEST(wait_for_a_replica)
{
    tctx_t t;
    t_open(&t, seeds(), 3000);
    call_t c;
    t_send(&t, &c, 1, "SET", "wait:{a}", "1", NULL);
    t_wait(&t, &c.n, 1, 10000);
    ck_assert_int_eq(c.err, 0);
    ck_assert_str_eq(c.str, "OK");
    ck_assert_int_eq(c.acked, 1);
    /* Asking for more replicas than there are: WAIT gives up after wait_ms with what it has. */
    t_send(&t, &c, 2, "INCR", "wait:{b}", NULL);
    t_wait(&t, &c.n, 1, 10000);
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(c.integer, 1);
    ck_assert_int_eq(c.acked, 1);
    /* Fifty at once to one master: one WAIT answers for all of them. */
    enum { N = 50 };
    static call_t many[N];
    static char keys[N][32];
    uint64_t waits = stats(&t).waits;
    t.done = 0;
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "wait:{c}:%d", i);
        t_send(&t, &many[i], 1, "SET", keys[i], "x", NULL);
    }
    t_wait(&t, &t.done, N, 10000);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(many[i].n, 1);
        ck_assert_int_eq(many[i].err, 0);
        ck_assert_str_eq(many[i].str, "OK");
        ck_assert_int_eq(many[i].acked, 1);
    }
    ck_assert_uint_eq(stats(&t).waits, waits + 1);
    T_CMD(&t, &c, "DEL", "wait:{a}");
    T_CMD(&t, &c, "DEL", "wait:{b}");
    t_close(&t);
}
END_TEST

static void eval(tctx_t *t, call_t *c, const hb_rscript_t *s, const char *key, int replicas)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    const char *argv[] = {key, "1"};
    ck_assert_int_eq(
        hb__rcluster_eval(t->rc, s, slot_of(key), 1, 2, argv, NULL, replicas, 1000, on_reply, c),
        0);
    t_wait(t, &c->n, 1, 10000);
    ck_assert_int_eq(c->n, 1);
}

START_TEST(noscript_loads_and_runs_again)
{
    topo_t tp;
    topo_read(&tp);
    tctx_t t;
    t_open(&t, seeds(), 2000);
    hb_rscript_t *s;
    const char *lua = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    ck_assert_int_eq(hb__rcluster_script(t.rc, lua, &s), 0);
    const char *key = "script:{n}";
    int owner = topo_range(&tp, slot_of(key))->master;
    /* Our SHA1 is the name Redis gives the script. */
    char sha[64];
    adm_ok(owner, sha, sizeof sha, "SCRIPT", "LOAD", lua, NULL);
    ck_assert_str_eq(hb__rscript_sha(s), sha);
    adm_ok(owner, NULL, 0, "SCRIPT", "FLUSH", NULL);
    call_t c;
    eval(&t, &c, s, key, 0);
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(c.integer, 1);
    ck_assert_uint_eq(stats(&t).noscript, 1);
    eval(&t, &c, s, key, 1);
    ck_assert_int_eq(c.integer, 2);
    ck_assert_int_eq(c.acked, 1);
    ck_assert_uint_eq(stats(&t).noscript, 1);
    adm_ok(owner, NULL, 0, "SCRIPT", "FLUSH", NULL);
    eval(&t, &c, s, key, 1);
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.integer, 3);
    ck_assert_int_eq(c.acked, 1);
    ck_assert_uint_eq(stats(&t).noscript, 2);
    /* A script's own error is an answer; one that does not compile is SCRIPT LOAD's refusal. */
    hb_rscript_t *bad, *broken;
    ck_assert_int_eq(hb__rcluster_script(t.rc, "return redis.call('NOSUCHCOMMAND')", &bad), 0);
    eval(&t, &c, bad, key, 0);
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_ERROR);
    ck_assert_int_eq(hb__rcluster_script(t.rc, "return (", &broken), 0);
    eval(&t, &c, broken, key, 0);
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_ERROR);
    T_CMD(&t, &c, "DEL", key);
    t_close(&t);
}
END_TEST

/* ---- slot migration: ASK during it, MOVED after it ---- */

static void node_id(int port, char *id)
{
    adm_ok(port, id, 41, "CLUSTER", "MYID", NULL);
}

static void setslot(int port, int slot, const char *how, const char *id)
{
    char s[16];
    snprintf(s, sizeof s, "%d", slot);
    adm_ok(port, NULL, 0, "CLUSTER", "SETSLOT", s, how, id, NULL);
}

static void migrate_begin(int slot, int from, int to)
{
    char from_id[41], to_id[41];
    node_id(from, from_id);
    node_id(to, to_id);
    setslot(to, slot, "IMPORTING", from_id);
    setslot(from, slot, "MIGRATING", to_id);
}

static void migrate_key(int from, int to, const char *key)
{
    char port[16];
    snprintf(port, sizeof port, "%d", to);
    adm_ok(from, NULL, 0, "MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS", key, NULL);
}

/* Every key still in the slot at from goes to to (the slot may hold keys of other tests). */
static void migrate_rest(int slot, int from, int to)
{
    char s[16];
    snprintf(s, sizeof s, "%d", slot);
    for (;;) {
        redisReply *r = adm(from, "CLUSTER", "GETKEYSINSLOT", s, "100", NULL);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++)
            migrate_key(from, to, r->element[i]->str);
        freeReplyObject(r);
        if (n == 0)
            return;
    }
}

/* The slot is to's: told to to, from and every other master (the procedure of redis-cli). */
static void migrate_end(const topo_t *tp, int slot, int from, int to)
{
    char to_id[41];
    node_id(to, to_id);
    setslot(to, slot, "NODE", to_id);
    setslot(from, slot, "NODE", to_id);
    int ms[8], n = masters(tp, ms);
    for (int i = 0; i < n; i++)
        if (ms[i] != from && ms[i] != to)
            setslot(ms[i], slot, "NODE", to_id);
}

START_TEST(ask_during_migration_moved_after)
{
    topo_t tp;
    topo_read(&tp);
    const char *k1 = "mig:{slot7}:a", *k2 = "mig:{slot7}:b";
    int slot = slot_of(k1);
    int from = topo_range(&tp, slot)->master, ms[8], to = 0;
    masters(&tp, ms);
    to = ms[0] != from ? ms[0] : ms[1];

    tctx_t t;
    t_open(&t, seeds(), 2000);
    call_t c;
    T_CMD(&t, &c, "SET", k1, "one");
    T_CMD(&t, &c, "SET", k2, "two");

    /* ASK: k1 has gone to the importing node, k2 has not. */
    migrate_begin(slot, from, to);
    migrate_key(from, to, k1);
    T_CMD(&t, &c, "GET", k1);
    ck_assert_int_eq(c.err, 0);
    ck_assert_str_eq(c.str, "one");
    hb_rcluster_stats_t s = stats(&t);
    ck_assert_uint_eq(s.ask, 1);
    ck_assert_uint_eq(s.moved, 0);
    int port = 0;
    ck_assert_int_eq(hb__rcluster_slot_owner(t.rc, (uint16_t)slot, NULL, 0, &port), 0);
    ck_assert_int_eq(port, from); /* ASK leaves the table alone */
    T_CMD(&t, &c, "GET", k2);
    ck_assert_str_eq(c.str, "two");
    ck_assert_uint_eq(stats(&t).ask, 1); /* still at the source: no redirection */
    T_CMD(&t, &c, "GET", k1);            /* and again, through ASK again */
    ck_assert_str_eq(c.str, "one");
    ck_assert_uint_eq(stats(&t).ask, 2);

    /* MOVED: the migration ends; the client's table still names the source. */
    migrate_rest(slot, from, to);
    migrate_end(&tp, slot, from, to);
    T_CMD(&t, &c, "GET", k2);
    ck_assert_int_eq(c.err, 0);
    ck_assert_str_eq(c.str, "two");
    s = stats(&t);
    ck_assert_uint_ge(s.moved, 1);
    ck_assert_int_eq(hb__rcluster_slot_owner(t.rc, (uint16_t)slot, NULL, 0, &port), 0);
    ck_assert_int_eq(port, to);

    /* Back as it was, through the same steps; the client follows again. */
    migrate_begin(slot, to, from);
    migrate_rest(slot, to, from);
    migrate_end(&tp, slot, to, from);
    uint64_t moved = stats(&t).moved;
    T_CMD(&t, &c, "GET", k1);
    ck_assert_str_eq(c.str, "one");
    ck_assert_uint_gt(stats(&t).moved, moved);
    T_CMD(&t, &c, "DEL", k1, k2);
    ck_assert_int_eq(c.integer, 2);
    t_close(&t);
}
END_TEST

/* ---- deadlines, misbehaving peers, close ---- */

/* A loopback port bound and not listening: connections to it are refused. */
static int refused_port(uv_tcp_t *h, uv_loop_t *loop)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, h);
    ck_assert_int_eq(uv_tcp_bind(h, (const struct sockaddr *)&sa, 0), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

START_TEST(unreachable_fails_at_deadline_once)
{
    tctx_t t;
    t_init(&t);
    uv_tcp_t hold;
    int port = refused_port(&hold, &t.loop);
    char seed[64];
    snprintf(seed, sizeof seed, "127.0.0.1:%d", port);
    t_start(&t, seed, 300, 0);
    call_t c[3];
    uint64_t start = uv_now(&t.loop);
    t_send(&t, &c[0], 0, "GET", "x", NULL);
    t_send(&t, &c[1], 1, "SET", "y", "1", NULL);
    t_send(&t, &c[2], 0, "GET", "z", NULL);
    t_wait(&t, &t.done, 3, 5000);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(c[i].n, 1);
        ck_assert_msg(c[i].err == HB_ESTORE || c[i].err == UV_ETIMEDOUT, "%d", c[i].err);
        ck_assert_uint_ge(c[i].at - start, 300);
    }
    /* Nothing more comes, however long the loop runs. */
    uv_timer_start(&t.guard, on_guard, 500, 0);
    t.guard_fired = 0;
    while (!t.guard_fired)
        uv_run(&t.loop, UV_RUN_ONCE);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(c[i].n, 1);
    hb_rcluster_stats_t s = stats(&t);
    ck_assert_uint_eq(s.timeouts, 3);
    ck_assert_uint_ge(s.reconnects, 1); /* it kept trying */
    ck_assert_uint_eq(s.sent, 0);
    uv_close((uv_handle_t *)&hold, NULL);
    t_close(&t);
}
END_TEST

/* A fake node: answers CLUSTER SLOTS with itself for every slot (or not, by mode), then
 * misbehaves as its mode says. */
enum {
    FAKE_CLOSE,          /* closes every connection as it comes */
    FAKE_STALL,          /* reads and never answers */
    FAKE_HALF,           /* answers half a reply, then nothing */
    FAKE_GARBAGE,        /* answers what is not RESP */
    FAKE_SLOTS_RESET,    /* the topology, then resets the connection on any other command */
    FAKE_SLOTS_TRYAGAIN, /* the topology, then TRYAGAIN to everything */
    FAKE_SLOTS_STALL,    /* the topology, then silence */
    FAKE_MODES,
    FAKE_SLOTS_FLAKY = FAKE_MODES, /* the topology, then one of each back-off error, then "ok" */
    FAKE_SLOTS_WAIT,               /* the topology, +OK to commands, WAIT answered when released */

};

typedef struct fake {
    uv_tcp_t server;
    uv_tcp_t conn[64];
    int nconn, mode, port;
    int commands;      /* answered, but for CLUSTER SLOTS */
    int waits;         /* WAITs received (FAKE_SLOTS_WAIT) */
    int blocked;       /* a WAIT is held: as in Redis, nothing behind it is answered */
    uv_stream_t *held; /* where */
    char owed[4097];   /* the answers behind it, in order */
    size_t owed_len;
    char buf[4096];
} fake_t;

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fake_t *f = h->data;
    *buf = uv_buf_init(f->buf, sizeof f->buf);
}

static void fake_write(uv_stream_t *s, const char *text)
{
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
    (void)uv_try_write(s, &b, 1);
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fake_t *f = s->data;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, NULL);
        return;
    }
    if (n == 0)
        return;
    switch (f->mode) {
    case FAKE_STALL:
        return;
    case FAKE_HALF:
        fake_write(s, "*3\r\n:0\r\n$5\r\nab");
        return;
    case FAKE_GARBAGE:
        fake_write(s, "hello, I am not Redis\r\n");
        return;
    default:
        break;
    }
    /* Each command of the read (they are small: a read holds whole ones), answered in turn. */
    for (ssize_t i = 0; i < n; i++) {
        if (buf->base[i] != '*' || (i > 0 && buf->base[i - 1] != '\n'))
            continue;
        ssize_t end = i + 1;
        while (end < n && !(buf->base[end] == '*' && buf->base[end - 1] == '\n'))
            end++;
        int slots = 0, wait = 0;
        for (ssize_t k = i; k + 5 <= end && !slots; k++)
            slots = memcmp(buf->base + k, "SLOTS", 5) == 0;
        for (ssize_t k = i; k + 4 <= end && !wait; k++)
            wait = memcmp(buf->base + k, "WAIT", 4) == 0;
        char reply[512];
        if (slots) {
            snprintf(reply, sizeof reply,
                     "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$40\r\n%040d\r\n",
                     f->port, 7);
            fake_write(s, reply);
        } else if (f->mode == FAKE_SLOTS_RESET) {
            uv_read_stop(s);
            uv_tcp_close_reset((uv_tcp_t *)s, NULL);
            return;
        } else if (f->mode == FAKE_SLOTS_TRYAGAIN) {
            fake_write(s, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
        } else if (f->mode == FAKE_SLOTS_WAIT) {
            const char *answer = wait ? ":1\r\n" : "+OK\r\n";
            f->waits += wait;
            if (f->blocked) {
                ck_assert_uint_lt(f->owed_len + strlen(answer), sizeof f->owed - 1);
                memcpy(f->owed + f->owed_len, answer, strlen(answer));
                f->owed_len += strlen(answer);
            } else if (wait) {
                f->blocked = 1;
                f->held = s;
            } else {
                fake_write(s, answer);
            }
        } else if (f->mode == FAKE_SLOTS_FLAKY) {
            static const char *const flaky[] = {
                "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
                "-CLUSTERDOWN The cluster is down\r\n",
                "-LOADING Redis is loading the dataset in memory\r\n",
                "-MASTERDOWN Link with MASTER is down\r\n",
                "$2\r\nok\r\n",
            };
            fake_write(s, flaky[f->commands < 4 ? f->commands : 4]);
            f->commands++;
        }
        i = end - 1;
    }
}

static void fake_accept(uv_stream_t *server, int status)
{
    fake_t *f = server->data;
    ck_assert_int_eq(status, 0);
    ck_assert_int_lt(f->nconn, 64);
    uv_tcp_t *c = &f->conn[f->nconn++];
    uv_tcp_init(server->loop, c);
    c->data = f;
    ck_assert_int_eq(uv_accept(server, (uv_stream_t *)c), 0);
    if (f->mode == FAKE_CLOSE)
        uv_close((uv_handle_t *)c, NULL);
    else
        uv_read_start((uv_stream_t *)c, fake_alloc, fake_read);
}

/* A loop, a fake node of that mode on it, and a client whose only seed is the fake. */
static fake_t *fake_start(tctx_t *t, int mode, uint32_t timeout_ms, uint32_t backoff_max_ms)
{
    t_init(t);
    fake_t *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->mode = mode;
    f->port = refused_port(&f->server, &t->loop);
    f->server.data = f;
    ck_assert_int_eq(uv_listen((uv_stream_t *)&f->server, 64, fake_accept), 0);
    char seed[64];
    snprintf(seed, sizeof seed, "127.0.0.1:%d", f->port);
    t_start(t, seed, timeout_ms, backoff_max_ms);
    return f;
}

/* Close the client with the fake's connections still open (nothing of the client's may stay),
 * then the fake, then the loop. */
static void fake_stop(tctx_t *t, fake_t *f)
{
    hb__rcluster_close(t->rc, on_closed, t);
    t->rc = NULL;
    t_wait(t, &t->closed, 1, 5000);
    for (int i = 0; i < f->nconn; i++)
        if (!uv_is_closing((uv_handle_t *)&f->conn[i]))
            uv_close((uv_handle_t *)&f->conn[i], NULL);
    uv_close((uv_handle_t *)&f->server, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    t_close(t);
    free(f);
}

START_TEST(misbehaving_peers)
{
    int mode = _i;
    tctx_t t;
    fake_t *f = fake_start(&t, mode, 400, 100);
    call_t c[4];
    uint64_t start = uv_now(&t.loop);
    for (int i = 0; i < 4; i++)
        t_send(&t, &c[i], i & 1, "GET", i < 2 ? "a" : "b", NULL);
    t_wait(&t, &t.done, 4, 5000);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(c[i].n, 1);
        ck_assert_msg(c[i].err == HB_ESTORE || c[i].err == UV_ETIMEDOUT, "mode %d: %d", mode,
                      c[i].err);
        ck_assert_uint_ge(c[i].at - start, 400);
    }
    hb_rcluster_stats_t s = stats(&t);
    if (getenv("HB_TEST_LOG") != NULL)
        fprintf(stderr, "mode %d: sent %ju refreshes %ju reconnects %ju tryagain %ju conns %d\n",
                mode, (uintmax_t)s.sent, (uintmax_t)s.refreshes, (uintmax_t)s.reconnects,
                (uintmax_t)s.tryagain, f->nconn);
    ck_assert_uint_eq(s.timeouts, 4);
    if (mode == FAKE_SLOTS_TRYAGAIN)
        ck_assert_uint_ge(s.tryagain, 4);
    if (mode == FAKE_SLOTS_RESET)
        ck_assert_uint_ge(s.reconnects, 1);
    fake_stop(&t, f);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(c[i].n, 1);
}
END_TEST

/* Each back-off error once, then the answer: the command waits, is resent, and is answered within
 * its deadline. */
START_TEST(backoff_until_answered)
{
    tctx_t t;
    fake_t *f = fake_start(&t, FAKE_SLOTS_FLAKY, 3000, 0);
    call_t c;
    T_CMD(&t, &c, "GET", "a");
    ck_assert_int_eq(c.err, 0);
    ck_assert_int_eq(c.type, REDIS_REPLY_STRING);
    ck_assert_str_eq(c.str, "ok");
    hb_rcluster_stats_t s = stats(&t);
    ck_assert_uint_eq(s.tryagain, 1);
    ck_assert_uint_eq(s.clusterdown, 1);
    ck_assert_uint_eq(s.loading, 1);
    ck_assert_uint_eq(s.masterdown, 1);
    ck_assert_uint_eq(s.sent, 5);
    ck_assert_uint_ge(s.refreshes, 5); /* a fresh topology before each resend */
    ck_assert_uint_eq(s.timeouts, 0);
    ck_assert_int_eq(f->commands, 5);
    fake_stop(&t, f);
}
END_TEST

/* Answer the WAIT the fake holds (one replica acknowledged), and what waited behind it. */
static void fake_release_waits(fake_t *f)
{
    ck_assert(f->blocked);
    fake_write(f->held, ":1\r\n");
    f->owed[f->owed_len] = '\0';
    fake_write(f->held, f->owed);
    f->owed_len = 0;
    f->blocked = 0;
}

static void send_batch(tctx_t *t, call_t *c, int n)
{
    for (int i = 0; i < n; i++)
        t_send(t, &c[i], 1, "SET", "k", "v", NULL);
}

/* Group commit: commands sent while a WAIT is out share the next WAIT, sent once it is answered. */
START_TEST(wait_gathers_while_one_is_out)
{
    tctx_t t;
    fake_t *f = fake_start(&t, FAKE_SLOTS_WAIT, 5000, 0);
    call_t warm;
    T_CMD(&t, &warm, "GET", "k");
    ck_assert_str_eq(warm.str, "OK");
    static call_t a[5], b[5], c[5];
    t.done = 0;
    send_batch(&t, a, 5);
    t_wait(&t, &f->waits, 1, 2000); /* A's WAIT is out, held */
    send_batch(&t, b, 5);
    for (int i = 0; i < 20; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    send_batch(&t, c, 5);
    for (int i = 0; i < 20; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    ck_assert_uint_eq(stats(&t).waits, 1);
    ck_assert_int_eq(f->waits, 1); /* B and C gather behind A's */
    ck_assert_int_eq(t.done, 0);   /* nothing is answered before its WAIT */
    fake_release_waits(f);
    t_wait(&t, &f->waits, 2, 2000); /* B and C's, one WAIT */
    t_wait(&t, &t.done, 5, 2000);
    fake_release_waits(f);
    t_wait(&t, &t.done, 15, 2000);
    ck_assert_int_eq(f->waits, 2);
    for (int i = 0; i < 5; i++) {
        call_t *all[] = {&a[i], &b[i], &c[i]};
        for (int k = 0; k < 3; k++) {
            ck_assert_int_eq(all[k]->n, 1);
            ck_assert_int_eq(all[k]->err, 0);
            ck_assert_str_eq(all[k]->str, "OK");
            ck_assert_int_eq(all[k]->acked, 1);
        }
    }
    ck_assert_uint_eq(stats(&t).waits, 2);
    fake_stop(&t, f);
}
END_TEST

/* A node that never answers CLUSTER SLOTS, and no command to wait for it: the client gives up on
 * that answer at its deadline and asks again, on its own. */
START_TEST(stalled_topology_asked_again)
{
    tctx_t t;
    fake_t *f = fake_start(&t, FAKE_STALL, 200, 0);
    uv_timer_start(&t.guard, on_guard, 1000, 0);
    while (!t.guard_fired)
        uv_run(&t.loop, UV_RUN_ONCE);
    hb_rcluster_stats_t s = stats(&t);
    ck_assert_uint_ge(s.refreshes, 2);
    ck_assert_uint_le(s.refreshes, 6); /* once per deadline and back-off, not in a spin */
    ck_assert_int_ge(f->nconn, 2);
    fake_stop(&t, f);
}
END_TEST

static void close_in_callback(tctx_t *t, call_t *c)
{
    (void)c;
    if (t->rc != NULL) {
        hb__rcluster_close(t->rc, on_closed, t);
        t->rc = NULL;
    }
}

START_TEST(close_with_commands_pending)
{
    enum { N = 100 };
    static call_t c[N];
    tctx_t t;
    /* Closed at once: nothing was answered yet. */
    t_open(&t, seeds(), 2000);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "close:%d", i);
        t_send(&t, &c[i], i % 3 == 0, "GET", key, NULL);
    }
    hb_rcluster_t *rc = t.rc;
    hb__rcluster_close(rc, on_closed, &t);
    t.rc = NULL;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(c[i].n, 1);
        ck_assert_int_eq(c[i].err, UV_ECANCELED);
    }
    t_close(&t);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(c[i].n, 1);

    /* Closed from the first answer's callback, with the others on the wire. */
    t_open(&t, seeds(), 2000);
    call_t warm;
    T_CMD(&t, &warm, "GET", "close:warm");
    t.done = 0;
    t.on_call = close_in_callback;
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "close:%d", i);
        t_send(&t, &c[i], i % 3 == 0, "GET", key, NULL);
    }
    t_wait(&t, &t.done, N, 5000);
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(c[i].n, 1);
        ck_assert_msg(c[i].err == 0 || c[i].err == UV_ECANCELED, "%d", c[i].err);
        cancelled += c[i].err == UV_ECANCELED;
    }
    ck_assert_int_gt(cancelled, 0);
    ck_assert_int_eq(hb__rcluster_command(NULL, 0, 0, NULL, NULL, on_reply, NULL), HB_EINVAL);
    t_close(&t);
}
END_TEST

/* ---- failover ---- */

/* A load: one SET every 20 ms to keys of one slot, with an action at the tick named. */
typedef struct load {
    tctx_t *t;
    uv_timer_t tick;
    int total, issued, action_at;
    void (*action)(struct load *l);
    int port;
    const char *name;
    uint64_t action_ms;
    call_t c[512];
    char keys[512][32];
} load_t;

static void load_tick(uv_timer_t *h)
{
    load_t *l = h->data;
    if (l->issued == l->action_at && l->action != NULL) {
        l->action_ms = uv_now(h->loop);
        l->action(l);
    }
    int i = l->issued++;
    snprintf(l->keys[i], sizeof l->keys[i], "fo:{load}:%d", i);
    t_send(l->t, &l->c[i], 0, "SET", l->keys[i], "v", NULL);
    if (l->issued == l->total)
        uv_timer_stop(h);
}

/* Run the load to its end; every command answered exactly once, with an answer or an error of
 * the deadline's. Returns how many succeeded. */
static int load_run(tctx_t *t, load_t *l)
{
    l->t = t;
    t->done = 0;
    uv_timer_init(&t->loop, &l->tick);
    l->tick.data = l;
    uv_timer_start(&l->tick, load_tick, 20, 20);
    t_wait(t, &t->done, l->total, (uint32_t)l->total * 20 + 15000);
    uv_close((uv_handle_t *)&l->tick, NULL);
    int ok = 0, estore = 0, etimedout = 0, last_failed = -1;
    uint64_t first_ok_after = 0;
    for (int i = 0; i < l->total; i++) {
        ck_assert_int_eq(l->c[i].n, 1);
        ck_assert_msg(l->c[i].err == 0 || l->c[i].err == HB_ESTORE || l->c[i].err == UV_ETIMEDOUT,
                      "command %d: %d", i, l->c[i].err);
        ok += l->c[i].err == 0 && strcmp(l->c[i].str, "OK") == 0;
        estore += l->c[i].err == HB_ESTORE;
        etimedout += l->c[i].err == UV_ETIMEDOUT;
        if (l->c[i].err != 0)
            last_failed = i;
        if (i >= l->action_at && l->c[i].err == 0 && first_ok_after == 0 && last_failed >= 0)
            first_ok_after = l->c[i].at - l->action_ms;
    }
    /* What the failover cost, for the record (nothing asserted about time). */
    printf("%s: %d of %d answered, %d HB_ESTORE, %d UV_ETIMEDOUT; the last failure was issued "
           "%d ms after the action; the first success after a failure came %ju ms after it\n",
           l->name, ok, l->total, estore, etimedout,
           last_failed < 0 ? 0 : (last_failed - l->action_at) * 20, (uintmax_t)first_ok_after);
    return ok;
}

static void act_failover(load_t *l)
{
    adm_ok(l->port, NULL, 0, "CLUSTER", "FAILOVER", NULL);
}

static void act_kill(load_t *l)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%d/redis.pid", cluster_dir(), l->port);
    FILE *fp = fopen(path, "r");
    ck_assert_ptr_nonnull(fp);
    int pid = 0;
    ck_assert_int_eq(fscanf(fp, "%d", &pid), 1);
    fclose(fp);
    ck_assert_int_gt(pid, 1);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
}

/* After a failover the commands of that slot are answered again. */
static void all_answered(tctx_t *t)
{
    for (int i = 0; i < 10; i++) {
        call_t c;
        char key[32];
        snprintf(key, sizeof key, "fo:{load}:after%d", i);
        T_CMD(t, &c, "SET", key, "w");
        ck_assert_int_eq(c.err, 0);
        ck_assert_str_eq(c.str, "OK");
    }
}

/* The master of the load's slot and its replica. */
static void load_nodes(int *master, int *replica)
{
    topo_t tp;
    topo_read_full(&tp);
    const range_t *g = topo_range(&tp, slot_of("fo:{load}:0"));
    *master = g->master;
    *replica = g->replica;
    ck_assert_int_gt(*replica, 0);
}

/* total commands, action on port at the tenth. */
static void load_init(load_t *l, int total, void (*action)(load_t *l), int port, const char *name)
{
    memset(l, 0, sizeof *l);
    l->total = total;
    l->action_at = 10;
    l->action = action;
    l->port = port;
    l->name = name;
}

START_TEST(failover_by_replica)
{
    int master, replica;
    load_nodes(&master, &replica);
    tctx_t t;
    t_open(&t, seeds(), 2000);
    static load_t l;
    load_init(&l, 100, act_failover, replica, "CLUSTER FAILOVER");
    int ok = load_run(&t, &l);
    wait_master(replica, 30);
    all_answered(&t);
    hb_rcluster_stats_t s = stats(&t);
    ck_assert_int_gt(ok, 0);
    ck_assert_msg(s.moved > 0 || s.refreshes > 1, "the client never learnt of the failover");
    int port = 0;
    ck_assert_int_eq(hb__rcluster_slot_owner(t.rc, slot_of("fo:{load}:0"), NULL, 0, &port), 0);
    ck_assert_int_eq(port, replica);
    t_close(&t);
    /* Back as it was. */
    script("failover", master);
}
END_TEST

START_TEST(failover_after_master_killed)
{
    int master, replica;
    load_nodes(&master, &replica);
    tctx_t t;
    t_open(&t, seeds(), 2000);
    call_t c;
    T_CMD(&t, &c, "SET", "fo:{load}:warm", "1");
    ck_assert_int_eq(c.err, 0);
    static load_t l;
    load_init(&l, 300, act_kill, master, "SIGKILL of a master");
    (void)load_run(&t, &l); /* how many made it depends on how long the election took */
    wait_master(replica, 30);
    script("wait", 0);
    all_answered(&t);
    hb_rcluster_stats_t s = stats(&t);
    ck_assert_uint_ge(s.reconnects, 1);
    ck_assert_uint_ge(s.refreshes, 2);
    ck_assert_uint_ge(s.timeouts, 1);
    t_close(&t);
    /* Back as it was: the node rejoins as a replica, then takes its slots back. */
    script("restart", master);
    script("failover", master);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rcluster");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, routes_to_every_master);
    tcase_add_test(tc, hash_tags_share_a_node);
    tcase_add_test(tc, wait_for_a_replica);
    tcase_add_test(tc, noscript_loads_and_runs_again);
    tcase_add_test(tc, ask_during_migration_moved_after);
    tcase_add_test(tc, close_with_commands_pending);
    tcase_add_test(tc, failover_by_replica);
    tcase_add_test(tc, failover_after_master_killed);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("peers");
    tcase_set_timeout(tp, 30);
    tcase_add_test(tp, unreachable_fails_at_deadline_once);
    tcase_add_loop_test(tp, misbehaving_peers, 0, FAKE_MODES);
    tcase_add_test(tp, stalled_topology_asked_again);
    tcase_add_test(tp, backoff_until_answered);
    tcase_add_test(tp, wait_gathers_while_one_is_out);
    suite_add_tcase(s, tp);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
