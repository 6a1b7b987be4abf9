/* The Redis store, who is where (docs/fleet.md): the fleet's registry (login.lua, logout.lua:
 * the newer login wins fleet-wide), each instance's inbox (a Redis Stream read with XREAD BLOCK on
 * a client of its own, resumed from its cursor), notices and frames for users connected to other
 * instances. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb_store_redis_int.h"
#include "hongbao/registry.h"

/* ---- who is where: the fleet's registry and the instances' inboxes ---- */

static void user_key(char *out, size_t n, uint32_t user, size_t *len)
{
    *len = (size_t)snprintf(out, n, HB_FLEET_KEY_USER, (unsigned)user);
}

static void inbox_key_of(char *out, size_t n, const char *instance, size_t *len)
{
    *len = (size_t)snprintf(out, n, HB_FLEET_KEY_INBOX, instance);
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
    (void)hb__rcluster_command(rc, hb__rs_slot(key, klen), argc, argv, lens, hb__rs_ignored, NULL);
}

static void on_logout(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc, (void)err, (void)reply, (void)acked;
    rclaim_t *c = arg;
    hb__rs_claim_put(c->w, c);
}

static void send_logout(rworker_t *w, uint32_t user, int64_t number)
{
    rclaim_t *c;
    if (w->rc == NULL || (c = hb__rs_claim_get(w)) == NULL)
        return; /* the registry keeps naming us until the user's next login anywhere */
    c->w = w;
    char key[32], num[24];
    size_t klen;
    user_key(key, sizeof key, user, &klen);
    int nlen = snprintf(num, sizeof num, "%lld", (long long)number);
    const char *argv[] = {key, w->R->instance, num};
    size_t lens[] = {klen, strlen(w->R->instance), (size_t)nlen};
    if (hb__rcluster_eval(w->rc, w->s_logout, hb__rs_slot(key, klen), 1, 3, argv, lens, 0, 0,
                          on_logout, c) != 0)
        hb__rs_claim_put(w, c);
}

/* How many times a login is sent to the registry before the fleet gives up knowing it (each try
 * waits for its deadline: about a minute with the default 2 s). */
#define LOGIN_TRIES 30

/* At most this many login.lua calls in flight per worker, the rest wait in order: a burst of
 * thousands of logins (a whole fleet's users connecting) would otherwise queue in Redis past
 * their deadline, and every retry would lengthen the queue. */
#define LOGIN_WINDOW 256

static int login_send(rworker_t *w, hb_set_t *set, uint32_t user, flogin_t *f);
static void login_pump(rworker_t *w);
static void login_answer(rworker_t *w, hb_rcluster_t *rc, hb_set_t *set, uint32_t user,
                         uint64_t gen, int err, const redisReply *reply);

static void on_login(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)acked;
    rclaim_t *c = arg;
    rworker_t *w = c->w;
    uint32_t user = c->user;
    uint64_t gen = c->gen;
    hb_set_t *set = c->set;
    hb__rs_claim_put(w, c);
    w->logins_out--;
    login_answer(w, rc, set, user, gen, err, reply);
    login_pump(w);
}

/* What login.lua answered for user's login gen. */
static void login_answer(rworker_t *w, hb_rcluster_t *rc, hb_set_t *set, uint32_t user,
                         uint64_t gen, int err, const redisReply *reply)
{
    flogin_t *f = hb_idmap_find(&w->logins, user);
    if (f == NULL || f->gen != gen)
        return; /* a newer login on this worker took over the entry */
    if (err != 0 || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        /* Not known to the fleet yet (a slow or unreachable Redis): sent again while the
         * connection stays, so that notices and chat from other instances find the user. A try
         * that did land only numbered the login once more, naming this instance again. */
        int refused = reply != NULL && reply->type == REDIS_REPLY_ERROR;
        if (!f->gone && !refused && !w->closing && f->tries < LOGIN_TRIES &&
            login_send(w, set, user, f) == 0)
            return;
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

void hb__rs_login(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen)
{
    rstore_t *R = hb__rs_of(st);
    rworker_t *w = &R->workers[set->worker->index];
    flogin_t *f;
    if (hb__rs_worker_client(w) != 0 || hb_idmap_insert(&w->logins, user, (void **)&f) < 0) {
        hb__set_count(set, HB_CTR_X_STORE_ERRORS, hb__now_s(), 1);
        return;
    }
    *f = (flogin_t){.gen = gen};
    /* Sent now if the window has room and nobody waits before it, else in order. */
    lwait_t l = {.user = user, .gen = gen, .set = set};
    int r = w->logins_out < LOGIN_WINDOW && w->login_wait.count == 0
                ? login_send(w, set, user, f)
                : hb__fifo_push(&w->login_wait, &l);
    if (r != 0) {
        hb_idmap_remove_found(&w->logins, f);
        hb__set_count(set, HB_CTR_X_STORE_ERRORS, hb__now_s(), 1);
    }
}

/* Send waiting logins while the window has room; a login whose connection left meanwhile (or
 * that a newer one replaced) is dropped: the fleet never knew it. */
static void login_pump(rworker_t *w)
{
    while (w->logins_out < LOGIN_WINDOW && w->login_wait.count > 0 && !w->closing) {
        lwait_t l;
        hb__fifo_pop(&w->login_wait, &l);
        flogin_t *f = hb_idmap_find(&w->logins, l.user);
        if (f == NULL || f->gen != l.gen)
            continue;
        if (f->gone || login_send(w, l.set, l.user, f) != 0)
            hb_idmap_remove_found(&w->logins, f);
    }
}

/* login.lua for user's login f (its entry in w->logins), its tries counted; 0 or an error. */
static int login_send(rworker_t *w, hb_set_t *set, uint32_t user, flogin_t *f)
{
    rclaim_t *c = hb__rs_claim_get(w);
    if (c == NULL)
        return HB_ENOMEM;
    *c = (rclaim_t){.w = w, .set = set, .gen = f->gen, .user = user};
    char key[32];
    size_t klen;
    user_key(key, sizeof key, user, &klen);
    const char *argv[] = {key, w->R->instance};
    size_t lens[] = {klen, strlen(w->R->instance)};
    int r = hb__rcluster_eval(w->rc, w->s_login, hb__rs_slot(key, klen), 1, 2, argv, lens, 0, 0,
                              on_login, c);
    if (r != 0) {
        hb__rs_claim_put(w, c);
        return r;
    }
    f->tries++;
    w->logins_out++;
    return 0;
}

void hb__rs_logout(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen)
{
    rstore_t *R = hb__rs_of(st);
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

void hb__rs_forward_notices(rstore_t *R, const hb_sendenv_t *e, unsigned away, const uint8_t *frame,
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
        if (hb__rcluster_command(R->control, hb__rs_slot(key, klen), 3, argv, lens, on_holder, f) !=
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
        if (hb__rcluster_command(R->control, hb__rs_slot(key, klen), 3, argv, lens, on_check, k) !=
            0)
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
                                           hb__rs_slot(R->cursor_key, strlen(R->cursor_key)), 3,
                                           argv, lens, hb__rs_ignored, NULL);
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
    if (hb__rcluster_command(R->inbox, hb__rs_slot(R->inbox_key, strlen(R->inbox_key)), 8, argv,
                             lens, on_inbox, R) == 0)
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

void hb__rs_inbox_start(rstore_t *R)
{
    const char *argv[] = {"GET", R->cursor_key};
    size_t lens[] = {3, strlen(R->cursor_key)};
    if (hb__rcluster_command(R->control, hb__rs_slot(R->cursor_key, lens[1]), 2, argv, lens,
                             on_cursor, R) != 0)
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

void hb__rs_on_away(uv_async_t *h)
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
        if (R->closing || hb__rcluster_command(R->control, hb__rs_slot(key, klen), 3, argv, lens,
                                               on_away_holder, a) != 0)
            free(a);
    }
}

void hb__rs_away_free_all(rstore_t *R)
{
    while (R->away_head != NULL) {
        away_t *a = R->away_head;
        R->away_head = a->next;
        free(a);
    }
}

int hb__rs_send_away(hb_store_t *st, uint32_t user, const uint8_t *frame, size_t len)
{
    rstore_t *R = hb__rs_of(st);
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
