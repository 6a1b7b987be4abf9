/* SETs: the connections of one worker loop, their frames, and the receive queue through which
 * other threads reach them. Everything here runs on the SET's worker thread except
 * hb__set_post, which any thread may call. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hb_server_int.h"

/* ---- the SET-local user -> connection map ---------------------------------------------------- */

struct hb_conn_map_slot {
    uint32_t user;
    hb_conn_t *conn; /* NULL: empty */
};

static size_t map_hash(uint32_t user, size_t mask)
{
    return (size_t)(((uint64_t)user * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static int map_init(hb_conn_map_t *m, size_t cap)
{
    m->slots = calloc(cap, sizeof *m->slots);
    if (m->slots == NULL)
        return UV_ENOMEM;
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

static hb_conn_t *map_get(const hb_conn_map_t *m, uint32_t user)
{
    for (size_t i = map_hash(user, m->mask);; i = (i + 1) & m->mask) {
        if (m->slots[i].conn == NULL)
            return NULL;
        if (m->slots[i].user == user)
            return m->slots[i].conn;
    }
}

static int map_put(hb_conn_map_t *m, uint32_t user, hb_conn_t *c);

static int map_grow(hb_conn_map_t *m)
{
    hb_conn_map_t bigger;
    if (map_init(&bigger, (m->mask + 1) * 2) != 0)
        return UV_ENOMEM;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].conn != NULL)
            map_put(&bigger, m->slots[i].user, m->slots[i].conn);
    free(m->slots);
    *m = bigger;
    return 0;
}

/* Insert or replace. */
static int map_put(hb_conn_map_t *m, uint32_t user, hb_conn_t *c)
{
    if ((m->count + 1) * 10 > (m->mask + 1) * 7 && map_grow(m) != 0)
        return UV_ENOMEM;
    size_t i = map_hash(user, m->mask);
    while (m->slots[i].conn != NULL && m->slots[i].user != user)
        i = (i + 1) & m->mask;
    if (m->slots[i].conn == NULL)
        m->count++;
    m->slots[i].user = user;
    m->slots[i].conn = c;
    return 0;
}

/* Remove user's entry if it points at c; backward-shift deletion keeps probes short. */
static void map_remove(hb_conn_map_t *m, uint32_t user, const hb_conn_t *c)
{
    size_t i = map_hash(user, m->mask);
    while (m->slots[i].conn != NULL && m->slots[i].user != user)
        i = (i + 1) & m->mask;
    if (m->slots[i].conn != c || c == NULL)
        return;
    m->count--;
    for (size_t j = (i + 1) & m->mask; m->slots[j].conn != NULL; j = (j + 1) & m->mask) {
        size_t home = map_hash(m->slots[j].user, m->mask);
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].conn = NULL;
}

/* ---- helpers ------------------------------------------------------------------------------------
 */

uint64_t hb__now_s(void)
{
    return (uint64_t)time(NULL);
}

unsigned hb__control_shard(const struct hb_server_impl *impl)
{
    return impl->pub->nthreads;
}

static void count(hb_set_t *set, unsigned slot, uint64_t now_s, uint64_t delta)
{
    hb_counters_add(&set->worker->impl->counters, set->worker->index, slot, now_s, delta);
}

/* ---- output
 * --------------------------------------------------------------------------------------- */

typedef struct out_req {
    uv_write_t req;
    hb_conn_t *conn;
    uint32_t len;
    uint8_t data[];
} out_req_t;

static void conn_close(hb_conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    out_req_t *o = (out_req_t *)req;
    hb_conn_t *c = o->conn;
    c->out_pending -= o->len;
    free(o);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c);
}

/* Write now what the kernel takes, queue the rest (copied); disconnect a peer that lets more than
 * max_output pile up. */
static void conn_write(hb_conn_t *c, const uint8_t *data, size_t len)
{
    if (c->closing || len == 0)
        return;
    if (c->out_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == (int)len)
            return;
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    struct hb_server_impl *impl = HB_CONN_SET(c)->worker->impl;
    if ((uint64_t)c->out_pending + len > impl->opts.max_output) {
        count(HB_CONN_SET(c), HB_CTR_X_SLOW_PEER, hb__now_s(), 1);
        conn_close(c);
        return;
    }
    out_req_t *o = malloc(sizeof *o + len);
    if (o == NULL) {
        conn_close(c);
        return;
    }
    o->conn = c;
    o->len = (uint32_t)len;
    memcpy(o->data, data, len);
    uv_buf_t b = uv_buf_init((char *)o->data, (unsigned)len);
    if (uv_write(&o->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(o);
        conn_close(c);
        return;
    }
    c->out_pending += (uint32_t)len;
}

static void worker_flush(hb_worker_t *w)
{
    if (w->out_conn != NULL && w->out_len > 0)
        conn_write(w->out_conn, w->out, w->out_len);
    w->out_conn = NULL;
    w->out_len = 0;
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
    return HB_CONN_SET(conn)->worker->impl->pub;
}

/* ---- connection life
 * ------------------------------------------------------------------------------ */

static void on_conn_closed(uv_handle_t *h)
{
    hb_conn_t *c = (hb_conn_t *)h;
    hb_worker_t *w = HB_CONN_SET(c)->worker;
    hb_framer_reset(&c->framer);
    free(c);
    w->open_handles--;
}

static void conn_close(hb_conn_t *c)
{
    if (c->closing)
        return;
    hb_set_t *set = HB_CONN_SET(c);
    hb_worker_t *w = set->worker;
    struct hb_server_impl *impl = w->impl;
    if (w->out_conn == c) {
        w->out_conn = NULL;
        w->out_len = 0;
    }
    c->closing = 1;
    if (c->logged_in) {
        map_remove(&set->users, c->user, c);
        hb_registry_remove(&impl->registry, c->user, c->gen);
    }
    atomic_fetch_sub_explicit(&impl->nconns, 1, memory_order_relaxed);
    count(set, HB_CTR_CONN_CLOSED, hb__now_s(), 1);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void kick(hb_set_t *set, uint32_t user, uint64_t gen)
{
    hb_conn_t *c = map_get(&set->users, user);
    if (c != NULL && c->gen == gen) {
        count(set, HB_CTR_X_KICKED, hb__now_s(), 1);
        conn_close(c);
    }
}

/* ---- the business of one frame
 * ---------------------------------------------------------------------- */

static int over_cap(struct hb_server_impl *impl, uint64_t now_s)
{
    const uint64_t sec = now_s & 0xFFFFFFFFFFull;
    uint64_t v = atomic_load_explicit(&impl->rate, memory_order_relaxed);
    for (;;) {
        uint64_t nv;
        if ((v >> 24) != sec)
            nv = (sec << 24) | 1;
        else if ((v & 0xFFFFFF) == 0xFFFFFF)
            return 1;
        else
            nv = v + 1;
        if (atomic_compare_exchange_weak_explicit(&impl->rate, &v, nv, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (nv & 0xFFFFFF) > impl->opts.max_qps;
    }
}

static int on_login(hb_conn_t *c, const hb_msg_t *m, uint64_t now_s)
{
    hb_set_t *set = HB_CONN_SET(c);
    struct hb_server_impl *impl = set->worker->impl;
    uint32_t user = m->u.login.user_id;
    const hb_server_options_t *o = &impl->opts;
    if (!c->logged_in && (user < o->min_user || (o->max_user != 0 && user > o->max_user))) {
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
        uint64_t gen = atomic_fetch_add_explicit(&impl->next_gen, 1, memory_order_relaxed) + 1;
        hb_registry_entry_t e = {set->index, gen}, old;
        int r = hb_registry_put(&impl->registry, user, e, &old);
        if (r < 0)
            return r;
        if (r == 1) {
            /* The newer connection wins: close the older one, wherever it is. */
            if (old.set == set->index) {
                kick(set, user, old.gen);
            } else {
                hb_set_msg_t k = {.type = HB_MSG_KICK, .user = user, .gen = old.gen};
                hb__set_post(&impl->sets[old.set], &k, 1);
            }
        }
        if (map_put(&set->users, user, c) != 0) {
            hb_registry_remove(&impl->registry, user, gen);
            return UV_ENOMEM;
        }
        c->user = user;
        c->gen = gen;
        c->logged_in = 1;
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
    struct hb_server_impl *impl = set->worker->impl;
    hb_msg_t reply = {.cmd = HB_CMD_SHAKE_REPLY, .timestamp = now_s};
    reply.u.shake_reply.user_id = c->user;
    count(set, HB_CTR_REQUESTS, now_s, 1);
    hb_envelope_t e;
    if (over_conn_limit || over_cap(impl, now_s)) {
        reply.u.shake_reply.result = HB_SHAKE_OVERLOAD;
        count(set, HB_CTR_SHAKE_OVERLOAD, now_s, 1);
    } else if (hb_envq_pop(&impl->envq, set->index, &e) == 0) {
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

static void send_claim_reply(hb_conn_t *c, uint32_t envelope_id, uint32_t amount)
{
    uint64_t now_s = hb__now_s();
    hb_msg_t reply = {.cmd = HB_CMD_CLAIM_REPLY, .timestamp = now_s};
    reply.u.claim_reply.envelope_id = envelope_id;
    reply.u.claim_reply.amount = amount;
    count(HB_CONN_SET(c), HB_CTR_RESPONSES, now_s, 1);
    conn_out_msg(c, &reply);
}

/* Deliver a claim result to the claimant, through its SET if it is elsewhere. */
static void deliver_claim_result(hb_set_t *set, const hb_set_msg_t *r, hb_set_t *reply_set)
{
    if (reply_set == set) {
        hb_conn_t *c = map_get(&set->users, r->user);
        if (c != NULL && c->gen == r->gen)
            send_claim_reply(c, r->u.result.envelope_id, r->u.result.amount);
    } else {
        hb__set_post(reply_set, r, 1);
    }
}

/* Keep a granted claim's reply until its journal record is durable (sequence order). */
static int hold_reply(hb_set_t *set, uint64_t seq, uint32_t reply_set, const hb_set_msg_t *r)
{
    if (set->held_count == set->held_cap) {
        size_t cap = set->held_cap ? set->held_cap * 2 : 64;
        hb_held_reply_t *n = malloc(cap * sizeof *n);
        if (n == NULL)
            return UV_ENOMEM;
        for (size_t i = 0; i < set->held_count; i++)
            n[i] = set->held[(set->held_head + i) % set->held_cap];
        free(set->held);
        set->held = n;
        set->held_head = 0;
        set->held_cap = cap;
    }
    hb_held_reply_t *h = &set->held[(set->held_head + set->held_count) % set->held_cap];
    h->seq = seq;
    h->reply_set = reply_set;
    h->msg = *r;
    set->held_count++;
    return 0;
}

/* Send the held replies whose records are durable now. */
static void release_held(hb_set_t *set)
{
    struct hb_server_impl *impl = set->worker->impl;
    uint64_t durable = atomic_load_explicit(&impl->durable_seq, memory_order_acquire);
    while (set->held_count > 0 && set->held[set->held_head].seq <= durable) {
        hb_held_reply_t *h = &set->held[set->held_head];
        deliver_claim_result(set, &h->msg, &impl->sets[h->reply_set]);
        set->held_head = (set->held_head + 1) % set->held_cap;
        set->held_count--;
        atomic_fetch_sub_explicit(&set->held_waiting, 1, memory_order_release);
    }
}

/* In the SET owning the envelope: judge the claim, journal a grant, then answer through the
 * claimant's SET once the journal has it. */
static void judge_claim(hb_set_t *set, const hb_set_msg_t *m)
{
    struct hb_server_impl *impl = set->worker->impl;
    uint64_t now_s = hb__now_s();
    uint32_t amount = 0;
    int granted = hb_book_claim(&set->book, m->u.claim.envelope_id, m->user, &amount) == 0;
    hb_set_msg_t r = {.type = HB_MSG_CLAIM_RESULT, .user = m->user, .gen = m->gen};
    r.u.result.envelope_id = m->u.claim.envelope_id;
    r.u.result.amount = amount;
    hb_set_t *reply_set = &impl->sets[m->u.claim.reply_set];
    if (granted && impl->have_ledger) {
        /* Counted as waiting before the append, so the writer's durable notice cannot miss it. */
        atomic_fetch_add_explicit(&set->held_waiting, 1, memory_order_acq_rel);
        uint64_t seq;
        int e =
            hb_ledger_append_claim(&impl->ledger, r.u.result.envelope_id, m->user, amount, &seq);
        if (e == 0)
            e = hold_reply(set, seq, m->u.claim.reply_set, &r);
        if (e != 0) {
            /* Not journaled: not acknowledged. The claimant hears 0. */
            atomic_fetch_sub_explicit(&set->held_waiting, 1, memory_order_release);
            granted = 0;
            r.u.result.amount = 0;
        }
    }
    if (granted) {
        count(set, HB_CTR_CLAIMS_GRANTED, now_s, 1);
        count(set, HB_CTR_SEND_AMOUNT_CLAIMED, now_s, amount);
        if (impl->have_ledger) {
            release_held(set); /* in case the record is durable already */
            return;
        }
    } else {
        count(set, HB_CTR_X_CLAIM_REFUSED, now_s, 1);
    }
    deliver_claim_result(set, &r, reply_set);
}

static void on_claim(hb_conn_t *c, const hb_msg_t *m, uint64_t now_s)
{
    hb_set_t *set = HB_CONN_SET(c);
    struct hb_server_impl *impl = set->worker->impl;
    count(set, HB_CTR_REQUESTS, now_s, 1);
    /* The claimant is whoever logged in on this connection, whatever the payload says. */
    hb_set_msg_t q = {.type = HB_MSG_CLAIM, .user = c->user, .gen = c->gen};
    q.u.claim.envelope_id = m->u.claim.envelope_id;
    q.u.claim.reply_set = set->index;
    hb_set_t *owner = &impl->sets[m->u.claim.envelope_id % impl->pub->nsets];
    if (owner == set)
        judge_claim(set, &q);
    else if (hb__set_post(owner, &q, 1) != 0)
        send_claim_reply(c, m->u.claim.envelope_id, 0);
}

/* The built-in chat: deliver the text through the recipient's SET, tell the sender the outcome. */
int hb__chat_handler(hb_conn_t *c, const hb_frame_t *f, void *arg)
{
    (void)arg;
    hb_msg_t m;
    int r = hb_msg_decode(f, &m);
    if (r != 0)
        return r;
    uint64_t now_s = hb__now_s();
    uint32_t to = m.u.chat.user_id;
    hb_msg_t d = {.cmd = HB_CMD_CHAT_DELIVER, .timestamp = now_s};
    d.u.chat.user_id = c->user;
    d.u.chat.text = m.u.chat.text;
    d.u.chat.text_len = m.u.chat.text_len;
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(&d, buf, sizeof buf);
    if (n < 0)
        return n;
    r = hb_server_send_to_user(hb_conn_server(c), to, buf, (size_t)n);
    hb_msg_t reply = {.cmd = HB_CMD_CHAT_REPLY, .timestamp = now_s};
    reply.u.chat_reply.user_id = to;
    reply.u.chat_reply.result = r == 0             ? HB_CHAT_DELIVERED
                                : r == HB_EOFFLINE ? HB_CHAT_OFFLINE
                                                   : HB_CHAT_REJECTED;
    count(HB_CONN_SET(c), r == 0 ? HB_CTR_X_CHAT : HB_CTR_X_CHAT_FAILED, now_s, 1);
    conn_out_msg(c, &reply);
    return 0;
}

static const hb_handler_t *find_handler(const struct hb_server_impl *impl, uint16_t cmd)
{
    for (unsigned i = 0; i < impl->nhandlers; i++)
        if (impl->handlers[i].cmd == cmd)
            return &impl->handlers[i];
    return NULL;
}

static int on_frame(void *arg, const hb_frame_t *f)
{
    hb_conn_t *c = arg;
    hb_set_t *set = HB_CONN_SET(c);
    struct hb_server_impl *impl = set->worker->impl;
    uint64_t now_s = hb__now_s();
    if (f->cmd <= HB_CMD_CLAIM_REPLY)
        count(set, f->cmd, now_s, 1);
    if (c->closing)
        return UV_ECANCELED;
    if (!c->logged_in && f->cmd != HB_CMD_LOGIN)
        return HB_ENOTLOGGEDIN;
    int over = 0;
    if (c->logged_in && impl->opts.max_conn_qps != UINT32_MAX) {
        if (c->stamp.rate_s != (uint32_t)now_s) {
            c->stamp.rate_s = (uint32_t)now_s;
            c->rate_n = 0;
        }
        if (c->rate_n < UINT16_MAX)
            c->rate_n++;
        if (c->rate_n > impl->opts.max_conn_qps) {
            if (c->rate_n > 2 * (uint64_t)impl->opts.max_conn_qps)
                return UV_EMLINK; /* far over its limit: disconnect (an otherwise unused code) */
            count(set, HB_CTR_X_RATE_LIMITED, now_s, 1);
            over = 1;
        }
    }
    const hb_handler_t *h = find_handler(impl, f->cmd);
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
        if (over)
            send_claim_reply(c, m.u.claim.envelope_id, 0);
        else
            on_claim(c, &m, now_s);
        return 0;
    default:
        return HB_EBADCMD; /* a server-to-client command sent by a client */
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    hb_conn_t *c = (hb_conn_t *)h;
    /* One buffer per loop: libuv calls the read callback right after this one. */
    *buf = uv_buf_init((char *)HB_CONN_SET(c)->worker->readbuf, HB_SET_READ_BUF);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    hb_conn_t *c = (hb_conn_t *)stream;
    if (nread > 0) {
        int r = hb_framer_feed(&c->framer, (const uint8_t *)buf->base, (size_t)nread, on_frame, c);
        worker_flush(HB_CONN_SET(c)->worker);
        if (r != 0 && !c->closing) {
            unsigned slot = r == UV_EPERM    ? HB_CTR_X_LOGIN_REFUSED
                            : r == UV_EMLINK ? HB_CTR_X_RATE_LIMITED
                                             : HB_CTR_X_BAD_FRAME;
            if (r != UV_ECANCELED)
                count(HB_CONN_SET(c), slot, hb__now_s(), 1);
            conn_close(c);
        }
    } else if (nread < 0) {
        conn_close(c);
    }
}

void hb__worker_on_connection(uv_stream_t *listener, int status)
{
    hb_worker_t *w = listener->data;
    struct hb_server_impl *impl = w->impl;
    if (status < 0 || w->stopping)
        return;
    hb_set_t *set = &impl->sets[w->first_set + w->next_set];
    w->next_set = (w->next_set + 1) % w->nsets;
    hb_conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    hb_framer_init(&c->framer);
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = set;
    w->open_handles++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uint64_t now_s = hb__now_s();
    size_t n = atomic_fetch_add_explicit(&impl->nconns, 1, memory_order_relaxed) + 1;
    count(set, HB_CTR_CONN_OPENED, now_s, 1);
    if (n > impl->opts.max_connections) {
        count(set, HB_CTR_X_CONN_REJECTED, now_s, 1);
        conn_close(c);
        return;
    }
    c->stamp.accepted_ms = (uint32_t)uv_now(&w->loop);
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* ---- the receive queue
 * ---------------------------------------------------------------------------- */

int hb__set_post(hb_set_t *set, const hb_set_msg_t *msg, int overflow)
{
    int r = hb_msgq_push(&set->queue, msg);
    if (r == HB_EFULL && overflow) {
        hb_overflow_t *o = malloc(sizeof *o);
        if (o == NULL)
            return UV_ENOMEM;
        o->next = NULL;
        o->msg = *msg;
        uv_mutex_lock(&set->overflow_lock);
        if (set->overflow_tail != NULL)
            set->overflow_tail->next = o;
        else
            set->overflow_head = o;
        set->overflow_tail = o;
        atomic_fetch_add_explicit(&set->overflow_count, 1, memory_order_release);
        uv_mutex_unlock(&set->overflow_lock);
        r = 0;
    }
    if (r == 0)
        uv_async_send(&set->async);
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
    case HB_MSG_CLAIM:
        judge_claim(set, m);
        break;
    case HB_MSG_CLAIM_RESULT: {
        hb_conn_t *c = map_get(&set->users, m->user);
        if (c != NULL && c->gen == m->gen)
            send_claim_reply(c, m->u.result.envelope_id, m->u.result.amount);
        break;
    }
    case HB_MSG_ENVELOPE:
        hb_book_add(&set->book, &m->u.env);
        break;
    case HB_MSG_DURABLE:
        release_held(set);
        break;
    }
}

static void on_async(uv_async_t *a)
{
    hb_set_t *set = a->data;
    hb_set_msg_t m;
    /* Drain in batches: what arrives meanwhile wakes us again. */
    for (unsigned n = 0; n < 4096 && hb_msgq_pop(&set->queue, &m) == 0; n++)
        handle_msg(set, &m);
    if (atomic_load_explicit(&set->overflow_count, memory_order_acquire) > 0) {
        uv_mutex_lock(&set->overflow_lock);
        hb_overflow_t *o = set->overflow_head;
        set->overflow_head = set->overflow_tail = NULL;
        atomic_store_explicit(&set->overflow_count, 0, memory_order_relaxed);
        uv_mutex_unlock(&set->overflow_lock);
        while (o != NULL) {
            hb_overflow_t *next = o->next;
            handle_msg(set, &o->msg);
            free(o);
            o = next;
        }
    }
    worker_flush(set->worker);
    if (hb_msgq_size(&set->queue) > 0)
        uv_async_send(&set->async);
}

static void on_expired(void *arg, const hb_sendenv_t *e)
{
    hb_set_t *set = arg;
    struct hb_server_impl *impl = set->worker->impl;
    count(set, HB_CTR_X_SEND_EXPIRED, hb__now_s(), 1);
    if (impl->have_ledger)
        hb_ledger_append_expire(&impl->ledger, e->id, NULL);
}

/* The SET's connections are the loop's TCP handles whose data is that SET (the listener's is its
 * worker): no list of their own, which keeps a connection small. */
static hb_conn_t *conn_of_set(uv_handle_t *h, const hb_set_t *set)
{
    return h->type == UV_TCP && h->data == set ? (hb_conn_t *)h : NULL;
}

static void close_if_late(uv_handle_t *h, void *arg)
{
    hb_set_t *set = arg;
    hb_conn_t *c = conn_of_set(h, set);
    if (c == NULL || c->logged_in || c->closing)
        return;
    uint32_t now = (uint32_t)uv_now(&set->worker->loop);
    if ((uint32_t)(now - c->stamp.accepted_ms) >= set->worker->impl->opts.login_timeout_ms) {
        count(set, HB_CTR_X_LOGIN_TIMEOUT, hb__now_s(), 1);
        conn_close(c);
    }
}

/* Close connections that have not logged in within the deadline (slow or silent peers). */
static void enforce_login_deadline(hb_set_t *set)
{
    uv_walk(&set->worker->loop, close_if_late, set);
}

static void on_expiry_timer(uv_timer_t *t)
{
    hb_set_t *set = t->data;
    enforce_login_deadline(set);
    uint64_t now_s = hb__now_s();
    uint64_t ttl = set->worker->impl->opts.send_expiry_s;
    if (now_s > ttl)
        hb_book_expire(&set->book, now_s - ttl, on_expired, set);
}

/* ---- SET set-up and tear-down
 * -------------------------------------------------------------------- */

int hb__set_init(struct hb_server_impl *impl, hb_set_t *set, hb_worker_t *w, unsigned index)
{
    memset(set, 0, sizeof *set);
    set->worker = w;
    set->index = index;
    int r = hb_msgq_init(&set->queue, impl->opts.queue_capacity, sizeof(hb_set_msg_t));
    if (r != 0)
        return r;
    r = hb_book_init(&set->book, 1024);
    if (r != 0)
        goto fail_queue;
    r = map_init(&set->users, 1024);
    if (r != 0)
        goto fail_book;
    r = uv_mutex_init(&set->overflow_lock);
    if (r != 0)
        goto fail_map;
    return 0;
fail_map:
    free(set->users.slots);
fail_book:
    hb_book_close(&set->book);
fail_queue:
    hb_msgq_close(&set->queue);
    return r;
}

int hb__set_start(hb_set_t *set)
{
    hb_worker_t *w = set->worker;
    int r = uv_async_init(&w->loop, &set->async, on_async);
    if (r != 0)
        return r;
    set->async.data = set;
    w->open_handles++;
    uv_timer_init(&w->loop, &set->expiry_timer);
    set->expiry_timer.data = set;
    w->open_handles++;
    uv_timer_start(&set->expiry_timer, on_expiry_timer, 1000, 1000);
    return 0;
}

static void on_set_handle_closed(uv_handle_t *h)
{
    hb_set_t *set = h->data;
    set->worker->open_handles--;
}

void hb__set_close_handles(hb_set_t *set)
{
    uv_close((uv_handle_t *)&set->async, on_set_handle_closed);
    uv_close((uv_handle_t *)&set->expiry_timer, on_set_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    hb_conn_t *c = req->data;
    free(req);
    conn_close(c);
}

/* One connection of the SET: shut it down after its queued writes (or close it now). */
static void shutdown_conn(uv_handle_t *h, void *arg)
{
    hb_conn_t *c = conn_of_set(h, arg);
    if (c == NULL || c->closing)
        return;
    uv_shutdown_t *req = c->out_pending > 0 ? malloc(sizeof *req) : NULL;
    if (req != NULL) {
        req->data = c;
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
            free(req);
            conn_close(c);
        }
    } else {
        conn_close(c);
    }
}

/* Flush and close every connection: a shutdown waits for queued writes, then the close. */
void hb__set_shutdown_conns(hb_set_t *set)
{
    worker_flush(set->worker);
    uv_walk(&set->worker->loop, shutdown_conn, set);
}

void hb__set_free(hb_set_t *set)
{
    hb_set_msg_t m;
    while (hb_msgq_pop(&set->queue, &m) == 0)
        if (m.type == HB_MSG_FRAME_HEAP)
            free(m.u.heap);
    hb_overflow_t *o = set->overflow_head;
    while (o != NULL) {
        hb_overflow_t *next = o->next;
        if (o->msg.type == HB_MSG_FRAME_HEAP)
            free(o->msg.u.heap);
        free(o);
        o = next;
    }
    hb_msgq_close(&set->queue);
    hb_book_close(&set->book);
    free(set->held);
    free(set->users.slots);
    uv_mutex_destroy(&set->overflow_lock);
}
