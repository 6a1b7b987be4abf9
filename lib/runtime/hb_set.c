/* SETs: the connections of one worker loop, their frames and the receive queue through which
 * other threads reach them (hb_set.h; the workers, their timers and the shutdown phases are in
 * hb_worker.c). Everything here runs on
 * the SET's worker thread except what hb_set.h says any thread may call. Money goes through the
 * store (hb_store.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hb_internal.h"
#include "hb_set.h"
#include "hb_store.h"

/* ---- the SET-local user -> connection map (the core's one id map) -----------------------------
 */

static hb_conn_t *map_get(const hb_idmap_t *m, uint32_t user)
{
    hb_conn_t **v = hb_idmap_find(m, user);
    return v != NULL ? *v : NULL;
}

/* Insert or replace. */
static int map_put(hb_idmap_t *m, uint32_t user, hb_conn_t *c)
{
    void *v;
    int r = hb_idmap_insert(m, user, &v);
    if (r < 0)
        return r;
    *(hb_conn_t **)v = c;
    return 0;
}

/* Remove user's entry if it points at c. */
static void map_remove(hb_idmap_t *m, uint32_t user, const hb_conn_t *c)
{
    hb_conn_t **v = hb_idmap_find(m, user);
    if (v != NULL && *v == c)
        hb_idmap_remove_found(m, v);
}

/* ---- helpers ------------------------------------------------------------------------------- */

uint64_t hb__now_s(void)
{
    return (uint64_t)time(NULL);
}

void hb__set_count(hb_set_t *set, unsigned slot, uint64_t now_s, uint64_t delta)
{
    hb_counters_batch_add(&set->worker->counts, slot, now_s, delta);
}

void hb__worker_publish(hb_worker_t *w)
{
    if (w->counts.slots != 0)
        hb_counters_batch_flush(&w->counts);
}

void hb__group_count_control(hb_setgroup_t *g, unsigned slot, uint64_t delta)
{
    hb_counters_add(g->counters, g->nworkers, slot, hb__now_s(), delta);
}

static void log_to_stderr(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "hongbao server: %s\n", line);
}

void hb__group_log(hb_setgroup_t *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(g->log != NULL ? g->log : log_to_stderr, g->log_arg, fmt, ap);
    va_end(ap);
}

static void count(hb_set_t *set, unsigned slot, uint64_t now_s, uint64_t delta)
{
    hb__set_count(set, slot, now_s, delta);
}

/* ---- output --------------------------------------------------------------------------------- */

static void conn_close(hb_conn_t *c);

/* Write now what the kernel takes, queue the rest; a peer that lets more than max_output pile up,
 * or is gone, is disconnected. */
static void conn_write(hb_conn_t *c, const uint8_t *data, size_t len)
{
    if (c->closing || len == 0)
        return;
    int r = hb__sock_write(&c->sock, data, len);
    if (r == 0)
        return;
    if (r == UV_ENOBUFS)
        count(HB_CONN_SET(c), HB_CTR_X_SLOW_PEER, hb__now_s(), 1);
    conn_close(c);
}

/* The end of a batch (a read, a queue drain): what was counted goes into the shard, then what
 * was gathered goes out. */
static void worker_flush(hb_worker_t *w)
{
    hb__worker_publish(w);
    hb_conn_t *c = w->out_conn;
    size_t len = w->out_len;
    w->out_conn = NULL;
    w->out_len = 0;
    if (c != NULL && len > 0)
        conn_write(c, w->out, len);
}

/* Gather bytes for c; they go out in one write at the end of the current batch. */
static void conn_out(hb_conn_t *c, const uint8_t *data, size_t len)
{
    hb_worker_t *w = HB_CONN_SET(c)->worker;
    if (c->closing)
        return;
    if (w->out_conn != c || w->out_len + len > sizeof w->out) {
        worker_flush(w);
        w->out_conn = c;
    }
    if (len > sizeof w->out) {
        hb__worker_publish(w);
        conn_write(c, data, len);
        return;
    }
    memcpy(w->out + w->out_len, data, len);
    w->out_len += len;
}

static void conn_out_msg(hb_conn_t *c, const hb_msg_t *m)
{
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(m, buf, sizeof buf);
    if (n > 0) {
        conn_out(c, buf, (size_t)n);
        if (m->cmd <= HB_CMD_CLAIM_REPLY)
            count(HB_CONN_SET(c), m->cmd, m->timestamp, 1);
    }
}

int hb_conn_send(hb_conn_t *conn, const void *frame, size_t len)
{
    conn_out(conn, frame, len);
    return 0;
}

void hb_conn_count(hb_conn_t *conn, unsigned slot, uint64_t delta)
{
    if (slot < HB_COUNTER_SLOTS)
        count(HB_CONN_SET(conn), slot, hb__now_s(), delta);
}

void hb_conn_set_data(hb_conn_t *conn, void *data)
{
    conn->data = data;
}

void *hb_conn_data(const hb_conn_t *conn)
{
    return conn->data;
}

uint32_t hb_conn_user(const hb_conn_t *conn)
{
    return conn->user;
}

unsigned hb_conn_set(const hb_conn_t *conn)
{
    return HB_CONN_SET(conn)->index;
}

hb_server_t *hb_conn_server(const hb_conn_t *conn)
{
    return HB_CONN_SET(conn)->group->owner;
}

/* ---- connection life ------------------------------------------------------------------------ */

static void on_conn_closed(hb_sock_t *s)
{
    hb_conn_t *c = (hb_conn_t *)s;
    hb_worker_t *w = HB_CONN_SET(c)->worker;
    hb_framer_reset(&c->framer);
    free(c);
    w->conns--;
    hb__worker_maybe_done(w);
}

/* Leave the books of the server: the user's entries, the open count. */
static void conn_forget(hb_conn_t *c)
{
    hb_set_t *set = HB_CONN_SET(c);
    hb_worker_t *w = set->worker;
    hb_setgroup_t *g = w->group;
    if (w->out_conn == c) {
        w->out_conn = NULL;
        w->out_len = 0;
    }
    c->closing = 1;
    if (!c->logged_in)
        w->awaiting_login--;
    if (c->logged_in) {
        map_remove(&set->users, c->user, c);
        hb_registry_remove(g->registry, c->user, c->gen);
        if (g->store->ops->logout != NULL)
            g->store->ops->logout(g->store, set, c->user, c->gen);
        if (g->on_conn_close != NULL)
            g->on_conn_close(c, g->conn_arg);
        c->data = NULL;
    }
    /* Counted and published before it leaves the count, so that whoever sees fewer connections
     * (hb_server_connections) sees this one's open and close counted too: the worker's batch
     * would otherwise publish them only at the end of the loop turn. */
    count(set, HB_CTR_CONN_CLOSED, hb__now_s(), 1);
    hb__worker_publish(w);
    atomic_fetch_sub_explicit(&g->nconns, 1, memory_order_release);
}

static void conn_close(hb_conn_t *c)
{
    if (c->closing)
        return;
    conn_forget(c);
    hb__sock_close(&c->sock);
}

/* Close gracefully: what is queued goes out first (shutdown, then the peer's EOF or the deadline).
 */
static void conn_end(hb_conn_t *c)
{
    if (c->closing)
        return;
    conn_forget(c);
    hb__sock_end(&c->sock);
}

static void on_conn_read(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_conn_alloc(hb_sock_t *s, uv_buf_t *buf)
{
    hb_conn_t *c = (hb_conn_t *)s;
    /* One buffer per loop: the read callback follows at once. */
    *buf = uv_buf_init((char *)HB_CONN_SET(c)->worker->readbuf, HB_SET_READ_BUF);
}

static void on_conn_write_error(hb_sock_t *s, int err)
{
    (void)err;
    conn_close((hb_conn_t *)s);
}

static const hb_sock_ops_t conn_ops = {
    .alloc = on_conn_alloc,
    .read = on_conn_read,
    .write_error = on_conn_write_error,
    .closed = on_conn_closed,
};

static void kick(hb_set_t *set, uint32_t user, uint64_t gen)
{
    hb_conn_t *c = map_get(&set->users, user);
    if (c != NULL && c->gen == gen) {
        count(set, HB_CTR_X_KICKED, hb__now_s(), 1);
        conn_close(c);
    }
}

/* ---- the business of one frame -------------------------------------------------------------- */

/* Whether a shake is over the server's cap. The cap counts shakes served in a second: past
 * max_qps every shake gets 17; and once half of it is used, a connection past its fair share
 * (max_qps divided by the connections that shook this second or the one before) gets 17 without
 * using any of the cap, so one heavy user cannot take the budget from the others. */
static int over_cap(hb_setgroup_t *g, const hb_conn_t *c, uint64_t now_s)
{
    const uint64_t sec = now_s & 0xFFFFFFFFFFull;
    const uint64_t cap = g->max_qps;
    uint64_t v = atomic_load_explicit(&g->rate, memory_order_relaxed);
    uint64_t used = (v >> 24) == sec ? (v & 0xFFFFFF) : 0;
    if (used * 2 >= cap) {
        uint64_t a = atomic_load_explicit(&g->active, memory_order_relaxed);
        uint64_t now_active = (a >> 32) == (now_s & 0xFFFFFFFFull) ? (a & 0xFFFFFFFF) : 0;
        uint64_t prev = atomic_load_explicit(&g->active_prev, memory_order_relaxed);
        uint64_t active = now_active > prev ? now_active : prev;
        uint64_t share = cap / (active > 0 ? active : 1);
        if (c->rate_n > (share > 0 ? share : 1))
            return 1;
    }
    for (;;) {
        uint64_t nv;
        if ((v >> 24) != sec)
            nv = (sec << 24) | 1;
        else if ((v & 0xFFFFFF) >= cap)
            return 1;
        else
            nv = v + 1;
        if (atomic_compare_exchange_weak_explicit(&g->rate, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 0;
    }
}

/* Count c among the connections that shook this second (once a second per connection). */
static void note_active(hb_setgroup_t *g, uint64_t now_s)
{
    const uint64_t sec = now_s & 0xFFFFFFFFull;
    uint64_t v = atomic_load_explicit(&g->active, memory_order_relaxed);
    for (;;) {
        uint64_t nv = (v >> 32) == sec ? v + 1 : (sec << 32) | 1;
        if (atomic_compare_exchange_weak_explicit(&g->active, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if ((v >> 32) != sec)
                atomic_store_explicit(&g->active_prev,
                                      (v >> 32) + 1 == sec ? (unsigned)(v & 0xFFFFFFFF) : 0,
                                      memory_order_relaxed);
            return;
        }
    }
}

static int on_login(hb_conn_t *c, const hb_msg_t *m, uint64_t now_s)
{
    hb_set_t *set = HB_CONN_SET(c);
    hb_setgroup_t *g = set->group;
    uint32_t user = m->u.login.user_id;

    if (!c->logged_in && g->limit_users && (user < g->min_user || user > g->max_user)) {
        hb_msg_t no = {.cmd = HB_CMD_LOGIN_REPLY, .timestamp = now_s};
        no.u.login_reply.user_id = user;
        no.u.login_reply.result = 1;
        conn_out_msg(c, &no);
        return UV_EPERM; /* refused: the reply goes out, then the connection closes */
    }
    if (c->logged_in) {
        if (user != c->user)
            return HB_ENOTLOGGEDIN; /* one connection, one user */
    } else {
        uint64_t gen = atomic_fetch_add_explicit(&g->next_gen, 1, memory_order_relaxed) + 1;
        hb_registry_entry_t e = {set->index, gen}, old;
        int r = hb_registry_put(g->registry, user, e, &old);
        if (r < 0)
            return r;
        if (r == 1 && old.set != set->index) {
            /* The newer connection wins: close the older one in its SET. */
            hb_set_msg_t k = {.type = HB_MSG_KICK, .user = user, .gen = old.gen};
            hb__set_post(&g->sets[old.set], &k);
        }
        /* Any connection of this user still in this SET is older: it goes now, whatever
         * generation a kick on its way names (a burst of logins can overtake kicks). */
        hb_conn_t *prev = map_get(&set->users, user);
        if (prev != NULL && prev != c) {
            count(set, HB_CTR_X_KICKED, now_s, 1);
            conn_close(prev);
        }
        if (map_put(&set->users, user, c) != 0) {
            hb_registry_remove(g->registry, user, gen);
            return HB_ENOMEM;
        }
        c->user = user;
        c->gen = gen;
        c->logged_in = 1;
        set->worker->awaiting_login--;
        if (g->store->ops->login != NULL)
            g->store->ops->login(g->store, set, user, gen);
    }
    hb_msg_t reply = {.cmd = HB_CMD_LOGIN_REPLY, .timestamp = now_s};
    reply.u.login_reply.user_id = user;
    reply.u.login_reply.result = 0;
    conn_out_msg(c, &reply);
    return 0;
}

static void on_shake(hb_conn_t *c, uint64_t now_s, int over_conn_limit)
{
    hb_set_t *set = HB_CONN_SET(c);
    hb_setgroup_t *g = set->group;
    hb_msg_t reply = {.cmd = HB_CMD_SHAKE_REPLY, .timestamp = now_s};
    reply.u.shake_reply.user_id = c->user;
    count(set, HB_CTR_REQUESTS, now_s, 1);
    if (!c->shook) {
        c->shook = 1;
        note_active(g, now_s);
    }
    hb_envelope_t e;
    if (over_conn_limit || over_cap(g, c, now_s)) {
        reply.u.shake_reply.result = HB_SHAKE_OVERLOAD;
        count(set, HB_CTR_SHAKE_OVERLOAD, now_s, 1);
    } else if (hb_envq_pop(g->envq, set->index, &e) == 0) {
        /* As the reference does, a reply carrying an envelope has user_id 0. */
        reply.u.shake_reply.user_id = 0;
        reply.u.shake_reply.result = HB_SHAKE_GOT;
        reply.u.shake_reply.envelope_id = e.id;
        reply.u.shake_reply.amount = e.amount;
        count(set, HB_CTR_SHAKE_GOT, now_s, 1);
        count(set, HB_CTR_SHAKE_HANDED_OUT, now_s, 1);
    } else {
        reply.u.shake_reply.result = HB_SHAKE_NONE;
        count(set, HB_CTR_SHAKE_NONE, now_s, 1);
    }
    count(set, HB_CTR_RESPONSES, now_s, 1);
    conn_out_msg(c, &reply);
}

static void send_claim_answer(hb_conn_t *c, uint32_t envelope_id, uint32_t amount, uint32_t result,
                              uint8_t ext)
{
    uint64_t now_s = hb__now_s();
    hb_msg_t reply = {.timestamp = now_s};
    if (ext) {
        reply.cmd = HB_CMD_CLAIM_EX_REPLY;
        reply.u.claim_ex_reply.envelope_id = envelope_id;
        reply.u.claim_ex_reply.amount = amount;
        reply.u.claim_ex_reply.result = result;
    } else {
        /* The reference's reply carries the amount alone: the share, or 0 for nothing. */
        reply.cmd = HB_CMD_CLAIM_REPLY;
        reply.u.claim_reply.envelope_id = envelope_id;
        reply.u.claim_reply.amount =
            result == HB_CLAIM_GRANTED || result == HB_CLAIM_REPEAT ? amount : 0;
    }
    count(HB_CONN_SET(c), HB_CTR_RESPONSES, now_s, 1);
    if (ext)
        count(HB_CONN_SET(c), HB_CTR_FRAME_CLAIM_REPLY, now_s, 1); /* a claim reply too */
    conn_out_msg(c, &reply);
}

void hb__set_answer_claim(hb_set_t *from, unsigned reply_set, uint32_t user, uint64_t gen,
                          uint32_t envelope_id, uint32_t amount, uint32_t result, uint8_t ext)
{
    if (reply_set == from->index) {
        /* Only the connection that asked hears the answer: a newer login retries. */
        hb_conn_t *c = map_get(&from->users, user);
        if (c != NULL && c->gen == gen)
            send_claim_answer(c, envelope_id, amount, result, ext);
        return;
    }
    hb_set_msg_t r = {.type = HB_MSG_CLAIM_RESULT, .ext = ext, .user = user, .gen = gen};
    r.u.result.envelope_id = envelope_id;
    r.u.result.amount = amount;
    r.u.result.result = result;
    hb__set_post(&from->group->sets[reply_set], &r);
}

static const hb_handler_t *find_handler(const hb_setgroup_t *g, uint16_t cmd)
{
    for (unsigned i = 0; i < *g->nhandlers; i++)
        if (g->handlers[i].cmd == cmd)
            return &g->handlers[i];
    return NULL;
}

static int on_frame(void *arg, const hb_frame_t *f)
{
    hb_conn_t *c = arg;
    hb_set_t *set = HB_CONN_SET(c);
    hb_setgroup_t *g = set->group;
    uint64_t now_s = hb__now_s();
    if (f->cmd <= HB_CMD_CLAIM_REPLY)
        count(set, f->cmd, now_s, 1);
    else if (f->cmd == HB_CMD_CLAIM_EX)
        count(set, HB_CTR_FRAME_CLAIM, now_s, 1); /* claims of either form in one slot */
    if (c->closing)
        return HB_ECANCELED;
    if (!c->logged_in && f->cmd != HB_CMD_LOGIN)
        return HB_ENOTLOGGEDIN;
    int over = 0;
    if (c->logged_in) {
        if (c->stamp.rate_s != (uint32_t)now_s) {
            c->stamp.rate_s = (uint32_t)now_s;
            c->rate_n = 0;
            c->shook = 0;
        }
        if (c->rate_n < UINT16_MAX)
            c->rate_n++;
        if (g->max_conn_qps != UINT32_MAX && c->rate_n > g->max_conn_qps) {
            if (c->rate_n > 2 * (uint64_t)g->max_conn_qps)
                return UV_EMLINK; /* far over its limit: disconnect (an otherwise unused code) */
            count(set, HB_CTR_X_RATE_LIMITED, now_s, 1);
            over = 1;
        }
    }
    const hb_handler_t *h = find_handler(g, f->cmd);
    if (h != NULL)
        return over ? 0 : h->cb(c, f, h->arg);
    hb_msg_t m;
    int r = hb_msg_decode(f, &m);
    if (r != 0)
        return r;
    switch (f->cmd) {
    case HB_CMD_LOGIN:
        return on_login(c, &m, now_s);
    case HB_CMD_SHAKE:
        on_shake(c, now_s, over);
        return 0;
    case HB_CMD_CLAIM:
    case HB_CMD_CLAIM_EX: {
        uint8_t ext = f->cmd == HB_CMD_CLAIM_EX;
        count(set, HB_CTR_REQUESTS, now_s, 1);
        if (over) {
            count(set, HB_CTR_X_CLAIM_TRY_AGAIN, now_s, 1);
            send_claim_answer(c, m.u.claim.envelope_id, 0, HB_CLAIM_TRY_AGAIN, ext);
        } else {
            /* The claimant is whoever logged in on this connection, whatever the payload says. */
            g->store->ops->claim(g->store, set, c->user, c->gen, m.u.claim.envelope_id, ext);
        }
        return 0;
    }
    default:
        return HB_EBADCMD; /* a server-to-client command sent by a client */
    }
}

static void on_conn_read(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hb_conn_t *c = (hb_conn_t *)s;
    if (nread > 0) {
        int r = hb_framer_feed(&c->framer, (const uint8_t *)buf->base, (size_t)nread, on_frame, c);
        worker_flush(HB_CONN_SET(c)->worker);
        if (r != 0 && !c->closing) {
            unsigned slot = r == UV_EPERM    ? HB_CTR_X_LOGIN_REFUSED
                            : r == UV_EMLINK ? HB_CTR_X_RATE_LIMITED
                                             : HB_CTR_X_BAD_FRAME;
            if (r != HB_ECANCELED)
                count(HB_CONN_SET(c), slot, hb__now_s(), 1);
            /* A refused login's reply is on its way: end gracefully so it arrives. */
            if (r == UV_EPERM)
                conn_end(c);
            else
                conn_close(c);
        }
    } else if (nread < 0) {
        conn_close(c);
    }
}

void hb__set_accept(hb_set_t *set, int fd)
{
    hb_worker_t *w = set->worker;
    hb_setgroup_t *g = set->group;
    hb_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        count(set, HB_CTR_X_CONN_REJECTED, hb__now_s(), 1);
        return;
    }
    hb_framer_init(&c->framer);
    if (hb__sock_open(&w->loop, &c->sock, fd, &conn_ops, g->max_output, 1) != 0) {
        free(c);
        count(set, HB_CTR_X_CONN_REJECTED, hb__now_s(), 1);
        return;
    }
    c->sock.poll.data = set;
    w->conns++;
    w->awaiting_login++;
    uint64_t now_s = hb__now_s();
    size_t n = atomic_fetch_add_explicit(&g->nconns, 1, memory_order_relaxed) + 1;
    count(set, HB_CTR_CONN_OPENED, now_s, 1);
    if (n > g->max_connections) {
        count(set, HB_CTR_X_CONN_REJECTED, now_s, 1);
        conn_close(c);
        return;
    }
    c->stamp.accepted_ms = (uint32_t)uv_now(&w->loop);
    if (hb__sock_read_start(&c->sock) != 0)
        conn_close(c);
}

void hb__conn_close(hb_conn_t *c)
{
    conn_close(c);
}

void hb__conn_end(hb_conn_t *c)
{
    conn_end(c);
}

void hb__conn_abort(hb_conn_t *c)
{
    if (!c->closing)
        conn_forget(c);
    hb__sock_close(&c->sock);
}

void hb__worker_flush(hb_worker_t *w)
{
    worker_flush(w);
}

void hb__set_flush(hb_set_t *set)
{
    worker_flush(set->worker);
}

/* ---- the receive queue ---------------------------------------------------------------------- */

int hb__set_post(hb_set_t *set, const hb_set_msg_t *msg)
{
    int r = hb_msgq_post(&set->queue, msg);
    if (r == 0)
        uv_async_send(&set->async);
    return r;
}

int hb__set_post_external(hb_setgroup_t *g, hb_set_t *set, const hb_set_msg_t *msg)
{
    uv_mutex_lock(&g->post_lock);
    int r = g->posts_closed ? HB_ECANCELED : hb__set_post(set, msg);
    uv_mutex_unlock(&g->post_lock);
    return r;
}

int hb__set_send_to_user(hb_setgroup_t *g, hb_set_t *from, uint32_t user, const uint8_t *frame,
                         size_t len)
{
    hb_registry_entry_t where;
    if (hb_registry_get(g->registry, user, &where) != 0)
        return HB_EOFFLINE;
    hb_set_msg_t m = {.user = user, .gen = where.gen, .len = (uint16_t)len};
    if (len <= HB_MSG_INLINE) {
        m.type = HB_MSG_FRAME;
        memcpy(m.u.bytes, frame, len);
    } else {
        m.type = HB_MSG_FRAME_HEAP;
        m.u.heap = malloc(len);
        if (m.u.heap == NULL)
            return HB_ENOMEM;
        memcpy(m.u.heap, frame, len);
    }
    int r = from != NULL ? hb__set_post(&g->sets[where.set], &m)
                         : hb__set_post_external(g, &g->sets[where.set], &m);
    if (r != 0 && m.type == HB_MSG_FRAME_HEAP)
        free(m.u.heap);
    return r;
}

static void deliver_frame(hb_set_t *set, const hb_set_msg_t *m, const uint8_t *bytes)
{
    hb_conn_t *c = map_get(&set->users, m->user);
    if (c != NULL && (m->gen == 0 || c->gen == m->gen)) {
        conn_out(c, bytes, m->len);
        uint16_t cmd = hb_get_u16(bytes + 2);
        if (cmd <= HB_CMD_CLAIM_REPLY)
            count(set, cmd, hb__now_s(), 1);
    }
}

static void handle_msg(hb_set_t *set, hb_set_msg_t *m)
{
    switch (m->type) {
    case HB_MSG_FRAME:
        deliver_frame(set, m, m->u.bytes);
        break;
    case HB_MSG_FRAME_HEAP:
        deliver_frame(set, m, m->u.heap);
        free(m->u.heap);
        break;
    case HB_MSG_KICK:
        kick(set, m->user, m->gen);
        break;
    case HB_MSG_CLAIM_RESULT:
        hb__set_answer_claim(set, set->index, m->user, m->gen, m->u.result.envelope_id,
                             m->u.result.amount, m->u.result.result, m->ext);
        break;
    case HB_MSG_STORE:
        set->group->store->ops->handle(set->group->store, set, m);
        break;
    case HB_MSG_PHASE:
        hb__set_on_phase(set, m);
        break;
    }
}

void hb__set_on_async(uv_async_t *a)
{
    hb_set_t *set = a->data;
    hb_set_msg_t m;
    /* Drain in batches: what arrives meanwhile wakes us again. */
    unsigned n = 0;
    while (n < 4096 && hb_msgq_take(&set->queue, &m) == 0) {
        handle_msg(set, &m);
        n++;
    }
    worker_flush(set->worker);
    if (n == 4096 && set->async_open)
        uv_async_send(&set->async);
}

/* ---- set-up and tear-down ----------------------------------------------------------------------
 */

int hb__set_init(hb_setgroup_t *g, hb_set_t *set, hb_worker_t *w, unsigned index)
{
    memset(set, 0, sizeof *set);
    set->group = g;
    set->worker = w;
    set->index = index;
    int r = hb_msgq_init(&set->queue, g->queue_capacity, sizeof(hb_set_msg_t));
    if (r != 0)
        return r;
    r = hb_idmap_init(&set->users, sizeof(hb_conn_t *), 1024);
    if (r != 0)
        hb_msgq_close(&set->queue);
    return r;
}

void hb__set_free(hb_set_t *set)
{
    hb_set_msg_t m;
    while (hb_msgq_take(&set->queue, &m) == 0)
        if (m.type == HB_MSG_FRAME_HEAP)
            free(m.u.heap);
    hb_msgq_close(&set->queue);
    hb_idmap_close(&set->users);
}
