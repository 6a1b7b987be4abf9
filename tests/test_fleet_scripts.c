/* The fleet's Lua scripts (lib/runtime/lua, hb_fleet_lua.h) run by a real Redis from Debian's
 * redis-server, started by this test on a Unix socket of its own and stopped by PID:
 *  - the claim script judges exactly as the book's one claim rule (hongbao/book.h), case by case
 *    and over a random sequence, so the fleet and a single server cannot disagree;
 *  - a send-envelope's creation is idempotent for its creator and refuses an id used by another;
 *  - id reservation is a compare-and-set;
 *  - the shake budget: a random interleaving of puts, draws (retried, too), hand-out reports
 *    (repeated, too, and late after a lease expired), returns and expiries, checked after every
 *    step against a model: each envelope is in exactly one of queued, leased, handed out,
 *    expired, and the audit's sums balance. */
#include <check.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hb_fleet_lua.h"
#include "hongbao/book.h"
#include "hongbao/envelope.h"
#include "hongbao/fleet.h"
#include "hongbao/rand.h"

static char g_dir[64];
static char g_sock[96];
static char g_log[96];
static pid_t g_redis = -1;

/* ---- the Redis this test runs ---- */

static redisContext *connect_redis(void)
{
    redisContext *c = redisConnectUnix(g_sock);
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(c->err == 0, "redis at %s: %s", g_sock, c->errstr);
    return c;
}

static void start_redis(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/hb-fleet-lua-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_sock, sizeof g_sock, "%s/redis.sock", g_dir);
    snprintf(g_log, sizeof g_log, "%s/redis.log", g_dir);
    g_redis = fork();
    ck_assert_int_ge(g_redis, 0);
    if (g_redis == 0) {
        /* Bounded: the server ends by itself if this test dies without stopping it. */
        execlp("timeout", "timeout", "--signal=KILL", "300", "redis-server", "--port", "0",
               "--unixsocket", g_sock, "--dir", g_dir, "--save", "", "--appendonly", "no",
               "--logfile", g_log, (char *)NULL);
        _exit(127);
    }
    /* Redis says nothing when it is ready: wait for its socket to take a connection. */
    for (int i = 0; i < 500; i++) {
        redisContext *c = redisConnectUnix(g_sock);
        int ok = c != NULL && c->err == 0;
        redisFree(c);
        if (ok)
            return;
        int status;
        ck_assert_msg(waitpid(g_redis, &status, WNOHANG) == 0,
                      "redis-server did not start (is Debian's redis-server installed?)");
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("redis-server did not listen on %s within 5 s", g_sock);
}

static void stop_redis(void)
{
    if (g_redis > 0) {
        kill(g_redis, SIGTERM);
        waitpid(g_redis, NULL, 0);
        g_redis = -1;
    }
    unlink(g_sock);
    unlink(g_log);
    char path[128];
    snprintf(path, sizeof path, "%s/dump.rdb", g_dir);
    unlink(path);
    rmdir(g_dir);
}

static redisContext *fresh(void)
{
    redisContext *c = connect_redis();
    redisReply *r = redisCommand(c, "FLUSHALL");
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    return c;
}

/* EVAL script with keys and args given as C strings; the reply is the caller's to free. */
static redisReply *eval(redisContext *c, const char *script, int nkeys, const char **keys,
                        int nargs, const char **args)
{
    const char *argv[64];
    char nk[16];
    int argc = 0;
    ck_assert_int_le(3 + nkeys + nargs, 64);
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    ck_assert_ptr_nonnull(r);
    return r;
}

static long long int_at(const redisReply *r, size_t i)
{
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_gt(r->elements, i);
    ck_assert_int_eq(r->element[i]->type, REDIS_REPLY_INTEGER);
    return r->element[i]->integer;
}

/* ---- claims: the script against the book ---- */

#define ENV0 HB_SEND_ENVELOPE_ID_BASE

static void env_key(char *out, size_t n, uint32_t id)
{
    snprintf(out, n, "hb:{e:%u}", (unsigned)id);
}

static void create_in_redis(redisContext *c, const hb_sendenv_t *e, const char *creator)
{
    char key[32], total[16], users[8][16], shares[8][16];
    const char *args[3 + 2 * 8];
    int n = 0;
    env_key(key, sizeof key, e->id);
    snprintf(total, sizeof total, "%u", (unsigned)e->total);
    args[n++] = total;
    args[n++] = "1765065600000";
    args[n++] = creator;
    for (unsigned i = 0; i < e->count; i++) {
        snprintf(users[i], sizeof users[i], "%u", (unsigned)e->recipients[i]);
        snprintf(shares[i], sizeof shares[i], "%u", (unsigned)e->shares[i]);
        args[n++] = users[i];
        args[n++] = shares[i];
    }
    const char *keys[] = {key};
    redisReply *r = eval(c, hb__lua_send_create, 1, keys, n, args);
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r->integer, 1);
    freeReplyObject(r);
}

/* The book's answer as the wire's HB_CLAIM_* code, as the local store gives it. */
static void book_claim(hb_book_t *b, uint32_t id, uint32_t user, int *result, uint32_t *amount)
{
    int rc = hb_book_claim(b, id, user, amount);
    *result = rc == 0                  ? HB_CLAIM_GRANTED
              : rc == HB_BOOK_REPEAT   ? HB_CLAIM_REPEAT
              : rc == HB_ENOTRECIPIENT ? HB_CLAIM_NOT_RECIPIENT
              : rc == HB_ENOENVELOPE   ? HB_CLAIM_NO_ENVELOPE
                                       : -1;
}

static void lua_claim(redisContext *c, uint32_t id, uint32_t user, int *result, uint32_t *amount)
{
    char key[32], u[16];
    env_key(key, sizeof key, id);
    snprintf(u, sizeof u, "%u", (unsigned)user);
    const char *keys[] = {key}, *args[] = {u};
    redisReply *r = eval(c, hb__lua_claim, 1, keys, 1, args);
    *result = (int)int_at(r, 0);
    *amount = (uint32_t)int_at(r, 1);
    freeReplyObject(r);
}

static void expect_same_claim(redisContext *c, hb_book_t *b, uint32_t id, uint32_t user)
{
    int rb, rl;
    uint32_t ab, al;
    book_claim(b, id, user, &rb, &ab);
    lua_claim(c, id, user, &rl, &al);
    ck_assert_msg(rb == rl && ab == al, "envelope %u user %u: book (%d, %u), script (%d, %u)",
                  (unsigned)id, (unsigned)user, rb, (unsigned)ab, rl, (unsigned)al);
}

START_TEST(claim_cases_match_the_book)
{
    redisContext *c = fresh();
    hb_book_t b;
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    hb_sendenv_t e = {.id = ENV0, .total = 100, .count = 3};
    uint32_t users[] = {5, 0, 9}, shares[] = {60, 1, 39};
    memcpy(e.recipients, users, sizeof users);
    memcpy(e.shares, shares, sizeof shares);
    ck_assert_int_eq(hb_book_add(&b, &e), 0);
    create_in_redis(c, &e, "i1");

    expect_same_claim(c, &b, ENV0, 5);     /* granted */
    expect_same_claim(c, &b, ENV0, 5);     /* repeat, same share */
    expect_same_claim(c, &b, ENV0, 7);     /* not a recipient */
    expect_same_claim(c, &b, ENV0, 0);     /* user 0 is an ordinary recipient */
    expect_same_claim(c, &b, ENV0 + 1, 5); /* no such envelope */
    expect_same_claim(c, &b, ENV0, 9);     /* the last share */
    expect_same_claim(c, &b, ENV0, 9);     /* fully claimed: repeats still learn their share */
    expect_same_claim(c, &b, ENV0, 4);

    /* The envelope's own sums, which the fleet's audit reads. */
    char key[32];
    env_key(key, sizeof key, ENV0);
    redisReply *r = redisCommand(c, "HMGET %s k a", key);
    ck_assert_str_eq(r->element[0]->str, "3");
    ck_assert_str_eq(r->element[1]->str, "100");
    freeReplyObject(r);
    hb_book_close(&b);
    redisFree(c);
}
END_TEST

START_TEST(random_claims_match_the_book)
{
    redisContext *c = fresh();
    hb_book_t b;
    hb_rand_t rng;
    hb_rand_seed(&rng, 20261207);
    ck_assert_int_eq(hb_book_init(&b, 0), 0);
    for (uint32_t k = 0; k < 40; k++) {
        hb_sendenv_t e = {.id = ENV0 + k};
        e.count = (uint8_t)hb_rand_range(&rng, 1, HB_SEND_MAX_RECIPIENTS);
        e.total = (uint32_t)hb_rand_range(&rng, e.count, 3000);
        ck_assert_int_eq(hb_envelope_split(e.total, e.count, &rng, e.shares), 0);
        for (unsigned i = 0; i < e.count; i++)
            e.recipients[i] = k * 16 + i; /* distinct */
        ck_assert_int_eq(hb_book_add(&b, &e), 0);
        create_in_redis(c, &e, "i1");
    }
    for (int n = 0; n < 2000; n++) {
        uint32_t k = (uint32_t)hb_rand_below(&rng, 44); /* some ids unknown */
        uint32_t user = k * 16 + (uint32_t)hb_rand_below(&rng, 10);
        expect_same_claim(c, &b, ENV0 + k, user);
    }
    hb_book_close(&b);
    redisFree(c);
}
END_TEST

START_TEST(send_create_is_idempotent_for_its_creator_only)
{
    redisContext *c = fresh();
    hb_sendenv_t e = {.id = ENV0 + 7, .total = 10, .count = 2};
    e.recipients[0] = 1;
    e.recipients[1] = 2;
    e.shares[0] = 4;
    e.shares[1] = 6;
    create_in_redis(c, &e, "i1");
    create_in_redis(c, &e, "i1"); /* a retry whose first answer was lost */

    char key[32];
    env_key(key, sizeof key, e.id);
    const char *keys[] = {key};
    const char *other[] = {"10", "1", "i2", "1", "4", "2", "6"};
    redisReply *r = eval(c, hb__lua_send_create, 1, keys, 7, other);
    ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
    ck_assert_ptr_nonnull(strstr(r->str, "EXISTS"));
    freeReplyObject(r);
    const char *again[] = {"11", "1", "i1", "1", "5", "2", "6"};
    r = eval(c, hb__lua_send_create, 1, keys, 7, again);
    ck_assert_int_eq(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    r = redisCommand(c, "HMGET %s t n s:1 s:2", key);
    ck_assert_str_eq(r->element[0]->str, "10");
    ck_assert_str_eq(r->element[1]->str, "2");
    ck_assert_str_eq(r->element[2]->str, "4");
    ck_assert_str_eq(r->element[3]->str, "6");
    freeReplyObject(r);
    redisFree(c);
}
END_TEST

/* The mark after the reservation; *ours: whether this caller made it. */
static long long reserve(redisContext *c, const char *expected, const char *want, int *ours)
{
    const char *keys[] = {"hb:{ids}"}, *args[] = {"send", expected, want};
    redisReply *r = eval(c, hb__lua_reserve, 1, keys, 3, args);
    *ours = (int)int_at(r, 0);
    long long v = int_at(r, 1);
    freeReplyObject(r);
    return v;
}

START_TEST(reserve_is_compare_and_set)
{
    redisContext *c = fresh();
    int ours;
    ck_assert_int_eq(reserve(c, "0", "4096", &ours), 4096);
    ck_assert_int_eq(ours, 1);
    /* a second instance wanting the same block loses the race, and is told so */
    ck_assert_int_eq(reserve(c, "0", "4096", &ours), 4096);
    ck_assert_int_eq(ours, 0);
    ck_assert_int_eq(reserve(c, "4096", "8192", &ours), 8192);
    ck_assert_int_eq(ours, 1);
    ck_assert_int_eq(reserve(c, "8192", "100", &ours), 8192); /* never backwards */
    ck_assert_int_eq(ours, 0);
    redisFree(c);
}
END_TEST

/* ---- the shake budget against a model ---- */

#define PARTS     1
#define MAXENV    4096
#define INSTANCES 3

typedef enum { QUEUED = 1, LEASED, HANDED, EXPIRED } where_t;

typedef struct model {
    uint32_t amount[MAXENV];
    uint8_t where[MAXENV];
    uint8_t owner[MAXENV];   /* LEASED: whose lease */
    uint8_t held[MAXENV];    /* bit i: instance i believes it holds the envelope */
    uint32_t queue[MAXENV];  /* the queue's order, front first */
    size_t qhead, qlen;      /* a window of queue[] (front pushes move qhead down) */
    uint32_t next;           /* the next index to put */
    int dying[INSTANCES];    /* its lease's deadline is already past */
    int listed[INSTANCES];   /* it has an entry among the leases */
    uint64_t seq[INSTANCES]; /* its draws */
    long long g, ga, o, oa, x, xa, r, late;
} model_t;

static const char *inst_name(int i)
{
    static const char *names[] = {"10.0.0.1:1025", "10.0.0.2:1025", "10.0.0.3:1025"};
    return names[i];
}

static const char *budget_keys[] = {"hb:{b:0}:q", "hb:{b:0}:c", "hb:{b:0}:z", "hb:{b:0}:o"};
#define LEASE_PREFIX "hb:{b:0}:l:"

static void model_expire(model_t *m)
{
    for (int i = 0; i < INSTANCES; i++) {
        if (!m->listed[i] || !m->dying[i])
            continue;
        for (uint32_t k = 0; k < m->next; k++)
            if (m->where[k] == LEASED && m->owner[k] == i) {
                m->where[k] = EXPIRED;
                m->x++;
                m->xa += m->amount[k];
            }
        m->listed[i] = 0;
    }
}

static void put(redisContext *c, model_t *m, hb_rand_t *rng, unsigned n)
{
    char buf[2 * 16][16];
    const char *args[2 + 2 * 16] = {"generator-1", "0"};
    ck_assert_uint_le(n, 16);
    unsigned first = m->next;
    for (unsigned i = 0; i < n && m->next < MAXENV / 2; i++) {
        uint32_t k = m->next++;
        m->amount[k] = (uint32_t)hb_rand_range(rng, 10, 309);
        snprintf(buf[2 * i], 16, "%u", (unsigned)k);
        snprintf(buf[2 * i + 1], 16, "%u", (unsigned)m->amount[k]);
        args[2 + 2 * i] = buf[2 * i];
        args[3 + 2 * i] = buf[2 * i + 1];
        m->where[k] = QUEUED;
        m->queue[m->qhead + m->qlen++] = k;
        m->g++;
        m->ga += m->amount[k];
    }
    unsigned added = m->next - first;
    redisReply *r = eval(c, hb__lua_budget_put, 2, budget_keys, (int)(2 + 2 * added), args);
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r->integer, added);
    freeReplyObject(r);
    if (added > 0) { /* the same put again (its answer lost): nothing added */
        r = eval(c, hb__lua_budget_put, 2, budget_keys, (int)(2 + 2 * added), args);
        ck_assert_int_eq(r->integer, 0);
        freeReplyObject(r);
    }
}

static void draw(redisContext *c, model_t *m, int who, unsigned n, int lease_ms, int retry)
{
    char count[16], lease[16], seq[24];
    snprintf(count, sizeof count, "%u", n);
    snprintf(lease, sizeof lease, "%d", lease_ms);
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)++m->seq[who]);
    const char *args[] = {LEASE_PREFIX, inst_name(who), count, lease, seq};
    model_expire(m);
    redisReply *r = eval(c, hb__lua_budget_draw, 3, budget_keys, 5, args);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    size_t want = n < m->qlen ? n : m->qlen;
    ck_assert_uint_eq(r->elements, want);
    for (size_t i = 0; i < want; i++) {
        uint32_t k = m->queue[m->qhead++];
        m->qlen--;
        char e[32];
        snprintf(e, sizeof e, "%u:%u", (unsigned)k, (unsigned)m->amount[k]);
        ck_assert_str_eq(r->element[i]->str, e);
        m->where[k] = LEASED;
        m->owner[k] = (uint8_t)who;
        m->held[k] |= (uint8_t)(1u << who);
    }
    m->listed[who] = 1;
    m->dying[who] = lease_ms == 0;
    if (retry && lease_ms > 0) { /* the same draw again: the same envelopes, nothing more drawn */
        redisReply *again = eval(c, hb__lua_budget_draw, 3, budget_keys, 5, args);
        ck_assert_uint_eq(again->elements, r->elements);
        for (size_t i = 0; i < r->elements; i++)
            ck_assert_str_eq(again->element[i]->str, r->element[i]->str);
        freeReplyObject(again);
    }
    freeReplyObject(r);
}

/* Pick up to max of the envelopes instance who believes it holds. */
static size_t pick_held(const model_t *m, hb_rand_t *rng, int who, uint32_t *out, size_t max)
{
    size_t n = 0;
    for (uint32_t k = 0; k < m->next && n < max; k++)
        if ((m->held[k] & (1u << who)) && hb_rand_below(rng, 2) == 0)
            out[n++] = k;
    return n;
}

static void report(redisContext *c, model_t *m, hb_rand_t *rng, int who, int lease_ms)
{
    uint32_t ks[12];
    size_t n = pick_held(m, rng, who, ks, 12);
    char buf[2 * 12][16], lease[16];
    const char *args[4 + 2 * 12] = {LEASE_PREFIX, inst_name(who), lease, "1"};
    snprintf(lease, sizeof lease, "%d", lease_ms);
    long long out = 0, late = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = ks[i];
        snprintf(buf[2 * i], 16, "%u", (unsigned)k);
        snprintf(buf[2 * i + 1], 16, "%u", (unsigned)m->amount[k]);
        args[4 + 2 * i] = buf[2 * i];
        args[5 + 2 * i] = buf[2 * i + 1];
        ck_assert_msg(m->where[k] == LEASED || m->where[k] == EXPIRED, "envelope %u", k);
        if (m->where[k] == EXPIRED) {
            late++;
            m->x--;
            m->xa -= m->amount[k];
            m->late++;
        }
        m->where[k] = HANDED;
        m->held[k] &= (uint8_t) ~(1u << who);
        m->o++;
        m->oa += m->amount[k];
        out++;
    }
    const char *keys[] = {budget_keys[1], budget_keys[2], budget_keys[3]};
    redisReply *r = eval(c, hb__lua_budget_report, 3, keys, (int)(4 + 2 * n), args);
    ck_assert_int_eq(int_at(r, 0), out);
    ck_assert_int_eq(int_at(r, 1), late);
    ck_assert_int_eq(int_at(r, 2), 0);
    freeReplyObject(r);
    /* The same report again (its answer lost): every one a repeat. */
    r = eval(c, hb__lua_budget_report, 3, keys, (int)(4 + 2 * n), args);
    ck_assert_int_eq(int_at(r, 0), 0);
    ck_assert_int_eq(int_at(r, 2), (long long)n);
    freeReplyObject(r);
    m->listed[who] = 1;
    m->dying[who] = lease_ms == 0;
}

static void give_back(redisContext *c, model_t *m, hb_rand_t *rng, int who, int final)
{
    uint32_t ks[12];
    size_t n = final ? 0 : pick_held(m, rng, who, ks, 12);
    if (final) /* everything it holds */
        for (uint32_t k = 0; k < m->next && n < 12; k++)
            if (m->held[k] & (1u << who))
                ks[n++] = k;
    char buf[12][16];
    const char *args[3 + 12] = {LEASE_PREFIX, inst_name(who), final ? "1" : "0"};
    long long back = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = ks[i];
        snprintf(buf[i], 16, "%u", (unsigned)k);
        args[3 + i] = buf[i];
        m->held[k] &= (uint8_t) ~(1u << who);
        if (m->where[k] == LEASED) { /* else it expired meanwhile: it stays expired */
            m->where[k] = QUEUED;
            m->queue[--m->qhead] = k;
            m->qlen++;
            m->r++;
            back++;
        }
    }
    const char *keys[] = {budget_keys[0], budget_keys[1], budget_keys[2]};
    redisReply *r = eval(c, hb__lua_budget_return, 3, keys, (int)(3 + n), args);
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    ck_assert_int_eq(r->integer, back);
    freeReplyObject(r);
    int holds = 0;
    for (uint32_t k = 0; k < m->next; k++)
        holds |= m->where[k] == LEASED && m->owner[k] == who;
    if (final && !holds)
        m->listed[who] = 0;
}

static void check_audit(redisContext *c, const model_t *m)
{
    const char *args[] = {LEASE_PREFIX};
    redisReply *r = eval(c, hb__lua_budget_audit, 4, budget_keys, 1, args);
    long long q = 0, qa = 0, l = 0, la = 0, listed = 0;
    for (uint32_t k = 0; k < m->next; k++) {
        if (m->where[k] == QUEUED)
            q++, qa += m->amount[k];
        if (m->where[k] == LEASED)
            l++, la += m->amount[k];
    }
    for (int i = 0; i < INSTANCES; i++)
        listed += m->listed[i];
    long long want[] = {m->g,  m->ga, q,     qa,   l,       la, m->o,
                        m->oa, m->x,  m->xa, m->r, m->late, 0,  m->o};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(int_at(r, i) == want[i], "audit field %zu: redis %lld, model %lld", i,
                      int_at(r, i), want[i]);
    ck_assert_int_le(int_at(r, 14), INSTANCES);
    (void)listed;
    /* The balance, by the audit's own rule (hongbao/fleet.h). */
    long long v[15];
    for (size_t i = 0; i < 15; i++)
        v[i] = int_at(r, i);
    hb_fleet_partition_t p;
    ck_assert_int_eq(hb_fleet_partition_set(&p, v, 15), 0);
    const char *why = hb_fleet_partition_check(&p);
    ck_assert_msg(why == NULL, "%s", why);
    freeReplyObject(r);
}

START_TEST(budget_matches_its_model)
{
    redisContext *c = fresh();
    static model_t m;
    memset(&m, 0, sizeof m);
    m.qhead = MAXENV / 2; /* room for returns pushed at the front */
    hb_rand_t rng;
    hb_rand_seed(&rng, 7);
    for (int step = 0; step < 1500; step++) {
        int who = (int)hb_rand_below(&rng, INSTANCES);
        switch (hb_rand_below(&rng, 10)) {
        case 0:
        case 1:
            put(c, &m, &rng, (unsigned)hb_rand_range(&rng, 1, 16));
            break;
        case 2:
        case 3:
            /* instance 2 lives on short leases: its envelopes expire at the next draw */
            draw(c, &m, who, (unsigned)hb_rand_range(&rng, 0, 8), who == 2 ? 0 : 60000,
                 hb_rand_below(&rng, 4) == 0);
            break;
        case 4:
        case 5:
        case 6:
            report(c, &m, &rng, who, who == 2 ? 0 : 60000);
            break;
        case 7:
            give_back(c, &m, &rng, who, 0);
            break;
        case 8:
            give_back(c, &m, &rng, who, hb_rand_below(&rng, 8) == 0);
            break;
        default:
            break;
        }
        check_audit(c, &m);
    }
    /* It exercised every way: expiries, late reports, returns. */
    ck_assert_int_gt(m.x + m.late, 0);
    ck_assert_int_gt(m.late, 0);
    ck_assert_int_gt(m.r, 0);
    ck_assert_int_gt(m.o, 100);
    redisFree(c);
}
END_TEST

/* ---- the registry: the newer login wins, an older logout undoes nothing ---- */

static void login(redisContext *c, const char *inst, long long *gen, char *before, size_t cap)
{
    const char *keys[] = {"hb:{u:7}"}, *args[] = {inst};
    redisReply *r = eval(c, hb__lua_login, 1, keys, 1, args);
    *gen = int_at(r, 0);
    ck_assert_int_eq(r->element[1]->type, REDIS_REPLY_STRING);
    snprintf(before, cap, "%s", r->element[1]->str);
    freeReplyObject(r);
}

static long long logout(redisContext *c, const char *inst, long long gen)
{
    char g[24];
    snprintf(g, sizeof g, "%lld", gen);
    const char *keys[] = {"hb:{u:7}"}, *args[] = {inst, g};
    redisReply *r = eval(c, hb__lua_logout, 1, keys, 2, args);
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void expect_holder(redisContext *c, const char *inst)
{
    redisReply *r = redisCommand(c, "HGET hb:{u:7} i");
    if (inst == NULL)
        ck_assert_int_eq(r->type, REDIS_REPLY_NIL);
    else
        ck_assert_str_eq(r->str, inst);
    freeReplyObject(r);
}

START_TEST(registry_newer_login_wins)
{
    redisContext *c = fresh();
    long long g1, g2, g3;
    char before[64];
    login(c, "A", &g1, before, sizeof before);
    ck_assert_str_eq(before, "");
    login(c, "B", &g2, before, sizeof before);
    ck_assert_str_eq(before, "A"); /* A is told to check */
    ck_assert_int_gt(g2, g1);
    ck_assert_int_eq(logout(c, "A", g1), 0); /* A's old connection leaving undoes nothing */
    expect_holder(c, "B");
    login(c, "A", &g3, before, sizeof before);
    ck_assert_str_eq(before, "B");
    ck_assert_int_eq(logout(c, "B", g2), 0);
    expect_holder(c, "A");
    ck_assert_int_eq(logout(c, "A", g3), 1);
    expect_holder(c, NULL);
    login(c, "B", &g1, before, sizeof before);
    ck_assert_int_gt(g1, g3); /* numbers only go up, also after a logout */
    redisFree(c);
}
END_TEST

/* ---- the generator's plan ---- */

static long long plan(redisContext *c, const char *qps, const char *total, const char *token)
{
    const char *keys[] = {"hb:{gen}"}, *args[] = {qps, total, token};
    redisReply *r = eval(c, hb__lua_gen_plan, 1, keys, 3, args);
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

START_TEST(plan_retry_applies_once)
{
    redisContext *c = fresh();
    long long e1 = plan(c, "100", "500", "i1:7:1");
    redisReply *r = redisCommand(c, "HGET hb:{gen} start");
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    char start[32];
    snprintf(start, sizeof start, "%s", r->str);
    freeReplyObject(r);
    /* The same request again (its answer was lost): same epoch, same start, nothing changed. */
    ck_assert_int_eq(plan(c, "100", "500", "i1:7:1"), e1);
    r = redisCommand(c, "HGET hb:{gen} start");
    ck_assert_str_eq(r->str, start);
    freeReplyObject(r);
    /* A newer request of the same instance, or another instance's: a new epoch each. */
    long long e2 = plan(c, "200", "10", "i1:7:2");
    ck_assert_int_eq(e2, e1 + 1);
    ck_assert_int_eq(plan(c, "200", "10", "i2:9:2"), e2 + 1);
    r = redisCommand(c, "HMGET hb:{gen} qps total");
    ck_assert_str_eq(r->element[0]->str, "200");
    ck_assert_str_eq(r->element[1]->str, "10");
    freeReplyObject(r);
    redisFree(c);
}
END_TEST

static Suite *fleet_scripts_suite(void)
{
    Suite *s = suite_create("fleet_scripts");
    TCase *tc = tcase_create("scripts");
    tcase_add_unchecked_fixture(tc, start_redis, stop_redis);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, claim_cases_match_the_book);
    tcase_add_test(tc, random_claims_match_the_book);
    tcase_add_test(tc, send_create_is_idempotent_for_its_creator_only);
    tcase_add_test(tc, reserve_is_compare_and_set);
    tcase_add_test(tc, budget_matches_its_model);
    tcase_add_test(tc, registry_newer_login_wins);
    tcase_add_test(tc, plan_retry_applies_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fleet_scripts_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
