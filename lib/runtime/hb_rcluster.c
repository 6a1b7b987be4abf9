/* The Redis Cluster client (hb_rcluster.h): the slot table, routing, redirections, back-off,
 * reconnects and deadlines, over hiredis's async contexts attached with its libuv adapter. */
#include "hb_rcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include "hb_internal.h"
#include "hongbao/addr.h"

#define SLOT_NONE 0xFFFFu
#define MAX_NODES 1024

struct wait_group;

typedef struct node {
    hb_rcluster_t *rc;
    struct wait_group *group;   /* the WAIT its latest commands will share, not sent yet */
    struct wait_group *waiting; /* the WAIT sent and not answered (one at a time) */
    uint16_t index;             /* in rc->nodes, and in the slot table */
    char host[HB_ADDR_HOST_SIZE];
    int port;
    redisAsyncContext *ac; /* NULL when not connected nor connecting */
    int ever;              /* a connection was made before */
    uint32_t backoff;      /* the last back-off after a failure; 0 once it answers */
    uint64_t down_until;   /* no connection attempt before (loop ms) */
} node_t;

/* What the answers of one send came to. */
enum { OUT_NONE, OUT_ANSWER, OUT_MOVED, OUT_ASK, OUT_NOSCRIPT, OUT_BACKOFF, OUT_LOST };

/* Where a command is: waiting to be sent, sent and awaiting answers, or answered (its callback
 * has run; hiredis may still hold it until its answers, or their NULLs, come). */
enum { REQ_QUEUED, REQ_SENT, REQ_DONE };

/* A request's place in one of the client's two lists. */
typedef struct req_link {
    struct req *prev, *next;
} req_link_t;

typedef struct req_list {
    struct req *head, *tail;
} req_list_t;

/* The lists: every command not yet answered, by deadline; those waiting to be (re)sent. */
enum { PENDING, QUEUE };

typedef struct req {
    hb_rcluster_t *rc;
    req_link_t link[2]; /* [PENDING] until answered; [QUEUE] while REQ_QUEUED */
    int state;
    int inflight;     /* hiredis callbacks of this command yet to run (+1 during its callback) */
    int outcome;      /* OUT_* of the current send */
    int asking;       /* the next send goes to ask_node, after ASKING */
    int load;         /* the next send loads the script first */
    int sent_asking;  /* the current send went with ASKING */
    node_t *node;     /* where the current send went */
    node_t *ask_node; /* ASK's target */
    node_t *redirect; /* MOVED's or ASK's node, until the send settles */
    uint16_t slot, moved_slot;
    uint32_t backoff;
    uint64_t deadline, not_before, topo_wait;
    const hb_rscript_t *script;
    int replicas;
    uint32_t wait_ms;
    redisReply *held; /* the command's answer (a copy) while WAIT's is awaited */
    hb_rcluster_cb cb;
    void *arg;
    int argc;
    const char **argv; /* in the same allocation as the request */
    size_t *argvlen;
} req_t;

/* One WAIT for the commands that asked for replicas on one connection (with the same replicas and
 * wait_ms) since the last WAIT was sent: WAIT counts the replicas that have every write the
 * connection made before it, so one answers for all of them. Redis runs nothing behind a blocked
 * WAIT on its connection, so a WAIT per command would cost each command a replication round trip;
 * instead, while one WAIT is out, the next group gathers (group commit). */
typedef struct wait_group {
    struct node *node;
    redisAsyncContext *ac; /* the connection its commands went on */
    int replicas;
    uint32_t wait_ms;
    unsigned n, cap;
    struct req **members; /* each holds one inflight for the group */
} wait_group_t;

struct hb_rscript {
    struct hb_rscript *next;
    char sha[41];
    size_t len;
    char text[];
};

struct hb_rcluster {
    uv_loop_t *loop;
    uint32_t timeout_ms, backoff_min, backoff_max;
    hb_log_cb log;
    void *log_arg;
    uv_timer_t timer; /* deadlines, back-offs, the topology's pace */
    uv_idle_t idle;   /* the close's last steps */
    uv_check_t flush; /* after the loop's I/O: the open WAIT groups are sent */
    int flush_on;
    uint64_t timer_due; /* UINT64_MAX when not armed */
    node_t **nodes;
    unsigned nnodes, capnodes;
    req_list_t list[2]; /* PENDING, QUEUE */
    /* The topology: one CLUSTER SLOTS at a time; requests wait for a given refresh's end. */
    uint64_t topo_started, topo_done;
    int topo_inflight, topo_wanted;
    node_t *topo_node;
    uint64_t topo_deadline, topo_not_before;
    uint32_t topo_backoff;
    unsigned topo_next;
    hb_rscript_t *scripts;
    hb_rcluster_stats_t st;
    int closing, close_stage, handles_open;
    void (*closed)(void *arg);
    void *closed_arg;
    uint16_t slots[HB_KEYSLOTS]; /* slot -> node index, SLOT_NONE unknown */
};

static void route(req_t *q);
static void on_timer(uv_timer_t *t);

static uint64_t now_ms(const hb_rcluster_t *rc)
{
    return uv_now(rc->loop);
}

static uint32_t backoff_next(const hb_rcluster_t *rc, uint32_t cur)
{
    if (cur == 0)
        return rc->backoff_min;
    return cur >= rc->backoff_max / 2 ? rc->backoff_max : cur * 2;
}

/* Make sure the timer fires by due (loop ms). */
static void arm(hb_rcluster_t *rc, uint64_t due)
{
    if (rc->closing || due >= rc->timer_due)
        return;
    uint64_t now = now_ms(rc);
    rc->timer_due = due;
    uv_timer_start(&rc->timer, on_timer, due > now ? due - now : 0, 0);
}

/* ---- nodes ---- */

static node_t *node_find(hb_rcluster_t *rc, const char *host, int port)
{
    for (unsigned i = 0; i < rc->nnodes; i++)
        if (rc->nodes[i]->port == port && strcmp(rc->nodes[i]->host, host) == 0)
            return rc->nodes[i];
    return NULL;
}

/* The node at host:port, added when new; NULL when there is no room. */
static node_t *node_get(hb_rcluster_t *rc, const char *host, int port)
{
    node_t *n = node_find(rc, host, port);
    if (n != NULL)
        return n;
    if (strlen(host) >= HB_ADDR_HOST_SIZE || port <= 0 || port > 65535 || rc->nnodes >= MAX_NODES)
        return NULL;
    if (rc->nnodes == rc->capnodes) {
        unsigned cap = rc->capnodes ? rc->capnodes * 2 : 8;
        node_t **nodes = realloc(rc->nodes, cap * sizeof *nodes);
        if (nodes == NULL)
            return NULL;
        rc->nodes = nodes;
        rc->capnodes = cap;
    }
    n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->rc = rc;
    n->index = (uint16_t)rc->nnodes;
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    rc->nodes[rc->nnodes++] = n;
    return n;
}

/* A node failed (connect refused, connection lost, no answer in time): it waits its back-off
 * before the next attempt, and the topology is asked again. */
static void node_failed(hb_rcluster_t *rc, node_t *n)
{
    if (rc->closing)
        return;
    n->backoff = backoff_next(rc, n->backoff);
    n->down_until = now_ms(rc) + n->backoff;
    rc->topo_wanted = 1;
    arm(rc, now_ms(rc));
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    node_t *n = ac->data;
    if (status == REDIS_OK)
        return;
    hb__vlogf_line(n->rc->log, n->rc->log_arg, "rcluster: cannot connect to %s:%d: %s", n->host,
                   n->port, ac->errstr);
    if (n->ac == ac)
        n->ac = NULL;
    node_failed(n->rc, n);
}

/* hiredis 0.14 may say REDIS_OK for a connection the server closed: what tells a loss from our own
 * drop (node_drop, close) is that the node still holds the context. */
static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    node_t *n = ac->data;
    if (n->ac != ac)
        return;
    n->ac = NULL;
    hb__vlogf_line(n->rc->log, n->rc->log_arg, "rcluster: connection to %s:%d lost: %s", n->host,
                   n->port, ac->errstr[0] != '\0' ? ac->errstr : "closed by the server");
    node_failed(n->rc, n);
}

/* Debian's hiredis 0.14 libuv adapter ignores a poll error: libuv reports a refused connect or a
 * reset as one (and stops the handle), and hiredis would never hear of it. The adapter's hooks
 * are wrapped so that its handle runs poll_event, which hands an error to hiredis as a read (the
 * read, or the connect check before it, fails and hiredis disconnects). */
static void poll_event(uv_poll_t *h, int status, int events)
{
    redisLibuvEvents *p = h->data;
    if (status == 0) {
        redisLibuvPoll(h, status, events);
        return;
    }
    if (p->context != NULL)
        redisAsyncHandleRead(p->context);
    if (p->context != NULL && p->events != 0)
        uv_poll_start(&p->handle, p->events, poll_event);
}

static void poll_restart(void *privdata)
{
    redisLibuvEvents *p = privdata;
    if (p->events != 0)
        uv_poll_start(&p->handle, p->events, poll_event);
}

static void poll_add_read(void *privdata)
{
    redisLibuvAddRead(privdata);
    poll_restart(privdata);
}

static void poll_del_read(void *privdata)
{
    redisLibuvDelRead(privdata);
    poll_restart(privdata);
}

static void poll_add_write(void *privdata)
{
    redisLibuvAddWrite(privdata);
    poll_restart(privdata);
}

static void poll_del_write(void *privdata)
{
    redisLibuvDelWrite(privdata);
    poll_restart(privdata);
}

/* Connect to n now (hiredis queues what is sent before the connection is up). Returns 0, or an
 * error with n marked failed. */
static int node_connect(hb_rcluster_t *rc, node_t *n)
{
    if (n->ac != NULL)
        return 0;
    if (rc->closing || now_ms(rc) < n->down_until)
        return HB_EAGAIN;
    redisAsyncContext *ac = redisAsyncConnect(n->host, n->port);
    if (ac == NULL || ac->err != 0 || redisLibuvAttach(ac, rc->loop) != REDIS_OK) {
        hb__vlogf_line(rc->log, rc->log_arg, "rcluster: cannot connect to %s:%d: %s", n->host,
                       n->port, ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        node_failed(rc, n);
        return HB_ESTORE;
    }
    ac->ev.addRead = poll_add_read;
    ac->ev.delRead = poll_del_read;
    ac->ev.addWrite = poll_add_write;
    ac->ev.delWrite = poll_del_write;
    ac->data = n;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    n->ac = ac;
    if (n->ever)
        rc->st.reconnects++;
    n->ever = 1;
    return 0;
}

/* Close n's connection: what it carries gets its NULL answers now (or, from inside one of its
 * callbacks, once that returns). */
static void node_drop(hb_rcluster_t *rc, node_t *n, int failed)
{
    redisAsyncContext *ac = n->ac;
    if (ac == NULL)
        return;
    n->ac = NULL;
    if (failed)
        node_failed(rc, n);
    redisAsyncFree(ac);
}

/* ---- the topology ---- */

/* Copy a bulk string of a reply into host (host_size bytes); 0 or -1. */
static int reply_host(const redisReply *r, char *host, size_t host_size)
{
    if (r->type != REDIS_REPLY_STRING || r->len >= host_size)
        return -1;
    memcpy(host, r->str, r->len);
    host[r->len] = '\0';
    return 0;
}

/* A node entry of CLUSTER SLOTS ([host, port, id, ...]); an empty host means the answering one's.
 */
static node_t *slots_node(hb_rcluster_t *rc, node_t *from, const redisReply *e)
{
    char host[HB_ADDR_HOST_SIZE];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        reply_host(e->element[0], host, sizeof host) != 0 ||
        e->element[1]->type != REDIS_REPLY_INTEGER)
        return NULL;
    if (host[0] == '\0')
        memcpy(host, from->host, sizeof host);
    return node_get(rc, host, (int)e->element[1]->integer);
}

/* Replace the slot table with CLUSTER SLOTS' answer r (from node from). Returns 0, or -1 when r
 * is not such an answer or assigns no slot (the table is then left as it was). */
static int topo_apply(hb_rcluster_t *rc, node_t *from, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[0]->integer < 0 ||
            e->element[1]->integer >= HB_KEYSLOTS ||
            e->element[0]->integer > e->element[1]->integer ||
            slots_node(rc, from, e->element[2]) == NULL)
            return -1;
    }
    uint16_t old[HB_KEYSLOTS];
    memcpy(old, rc->slots, sizeof old);
    for (size_t s = 0; s < HB_KEYSLOTS; s++)
        rc->slots[s] = SLOT_NONE;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        node_t *master = slots_node(rc, from, e->element[2]);
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
            rc->slots[s] = master->index;
        for (size_t k = 3; k < e->elements; k++)
            (void)slots_node(rc, from, e->element[k]); /* replicas: more nodes to ask */
    }
    /* A new map is news the back-off was waiting for: what waits is routed again at once. */
    if (memcmp(old, rc->slots, sizeof old) != 0) {
        hb__vlogf_line(rc->log, rc->log_arg, "rcluster: new topology from %s:%d (%zu ranges)",
                       from->host, from->port, r->elements);
        for (req_t *q = rc->list[QUEUE].head; q != NULL; q = q->link[QUEUE].next)
            q->not_before = 0;
    }
    return 0;
}

static void on_slots(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    node_t *n = priv;
    hb_rcluster_t *rc = n->rc;
    const redisReply *r = reply;
    rc->topo_inflight = 0;
    rc->topo_done = rc->topo_started;
    if (rc->closing)
        return;
    if (r != NULL && topo_apply(rc, n, r) == 0) {
        rc->topo_backoff = 0;
        n->backoff = 0;
    } else {
        hb__vlogf_line(rc->log, rc->log_arg, "rcluster: no topology from %s:%d: %s", n->host,
                       n->port,
                       r == NULL                      ? "connection lost"
                       : r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "not a CLUSTER SLOTS answer");
        rc->topo_backoff = backoff_next(rc, rc->topo_backoff);
        rc->topo_not_before = now_ms(rc) + rc->topo_backoff;
        rc->topo_next = n->index + 1u;
    }
    arm(rc, now_ms(rc));
}

/* Ask a reachable node for CLUSTER SLOTS now, if none is being asked and the pace allows.
 * Returns 1 when asked. */
static int topo_start(hb_rcluster_t *rc)
{
    uint64_t now = now_ms(rc);
    if (rc->closing || rc->topo_inflight || rc->nnodes == 0)
        return 0;
    if (now < rc->topo_not_before) {
        arm(rc, rc->topo_not_before);
        return 0;
    }
    uint64_t earliest = UINT64_MAX;
    for (unsigned k = 0; k < rc->nnodes; k++) {
        node_t *n = rc->nodes[(rc->topo_next + k) % rc->nnodes];
        if (now < n->down_until) {
            earliest = n->down_until < earliest ? n->down_until : earliest;
            continue;
        }
        if (node_connect(rc, n) != 0)
            continue;
        if (redisAsyncCommand(n->ac, on_slots, n, "CLUSTER SLOTS") != REDIS_OK)
            continue;
        rc->topo_next = n->index;
        rc->topo_inflight = 1;
        rc->topo_wanted = 0;
        rc->topo_node = n;
        rc->topo_started++;
        rc->topo_deadline = now + rc->timeout_ms;
        rc->topo_not_before = now + rc->backoff_min;
        rc->st.refreshes++;
        arm(rc, rc->topo_deadline);
        return 1;
    }
    if (earliest != UINT64_MAX) {
        rc->topo_not_before = earliest;
        arm(rc, earliest);
    }
    return 0;
}

/* A fresh topology is wanted: returns the refresh whose end a request should wait for. */
static uint64_t topo_request(hb_rcluster_t *rc)
{
    if (!rc->topo_inflight && topo_start(rc))
        return rc->topo_started;
    rc->topo_wanted = 1;
    return rc->topo_started + 1;
}

/* ---- requests ---- */

static void list_append(req_list_t *l, int k, req_t *q)
{
    q->link[k].next = NULL;
    q->link[k].prev = l->tail;
    if (l->tail != NULL)
        l->tail->link[k].next = q;
    else
        l->head = q;
    l->tail = q;
}

static void list_unlink(req_list_t *l, int k, req_t *q)
{
    req_link_t *e = &q->link[k];
    if (e->prev != NULL)
        e->prev->link[k].next = e->next;
    else
        l->head = e->next;
    if (e->next != NULL)
        e->next->link[k].prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
}

/* Wait in the queue until not_before and topology topo_wait. */
static void enqueue(req_t *q)
{
    hb_rcluster_t *rc = q->rc;
    q->state = REQ_QUEUED;
    list_append(&rc->list[QUEUE], QUEUE, q);
    if (q->not_before > now_ms(rc))
        arm(rc, q->not_before);
}

static void reply_free(redisReply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->elements; i++)
        reply_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

/* A deep copy of r, or NULL when out of memory. */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->type = r->type;
    c->integer = r->integer;
    c->len = r->len;
    if (r->str != NULL) {
        c->str = malloc(r->len + 1);
        if (c->str == NULL)
            goto fail;
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
    }
    if (r->elements > 0) {
        c->element = calloc(r->elements, sizeof *c->element);
        if (c->element == NULL)
            goto fail;
        for (size_t i = 0; i < r->elements; i++) {
            c->elements = i + 1;
            if ((c->element[i] = reply_copy(r->element[i])) == NULL)
                goto fail;
        }
    }
    return c;
fail:
    reply_free(c);
    return NULL;
}

/* Free q once it is answered and hiredis holds it no longer. */
static void release(req_t *q)
{
    if (q->state == REQ_DONE && q->inflight == 0)
        free(q);
}

/* Answer q: its callback runs now, once. */
static void finish(req_t *q, int err, const redisReply *reply, int acked)
{
    hb_rcluster_t *rc = q->rc;
    if (q->state == REQ_QUEUED)
        list_unlink(&rc->list[QUEUE], QUEUE, q);
    list_unlink(&rc->list[PENDING], PENDING, q);
    q->state = REQ_DONE;
    if (err == UV_ETIMEDOUT || err == HB_ESTORE)
        rc->st.timeouts++;
    q->inflight++; /* q outlives its callback, whatever the callback does */
    q->cb(rc, err, reply, acked, q->arg);
    q->inflight--;
    reply_free(q->held);
    q->held = NULL;
    release(q);
}

/* Does error reply r start with word (followed by a space or its end)? */
static int error_is(const redisReply *r, const char *word)
{
    size_t n = strlen(word);
    return r->len >= n && memcmp(r->str, word, n) == 0 && (r->len == n || r->str[n] == ' ');
}

/* "<slot> <host>:<port>" of MOVED and ASK into q->moved_slot and q->redirect; 0 or -1. */
static int parse_redirect(req_t *q, const char *text)
{
    char *end;
    unsigned long slot = strtoul(text, &end, 10);
    if (end == text || *end != ' ' || slot >= HB_KEYSLOTS)
        return -1;
    const char *addr = end + 1;
    char buf[HB_ADDR_HOST_SIZE + 8], host[HB_ADDR_HOST_SIZE];
    int port;
    if (addr[0] == ':') { /* no endpoint known to the cluster: the answering node's host */
        snprintf(buf, sizeof buf, "%s%s", q->node->host, addr);
        addr = buf;
    }
    if (hb_addr_parse(addr, host, sizeof host, &port) != 0 || port == 0)
        return -1;
    q->redirect = node_get(q->rc, host, port);
    q->moved_slot = (uint16_t)slot;
    return q->redirect != NULL ? 0 : -1;
}

/* What the command's answer r asks of the client: OUT_ANSWER (give it to the caller) or a routing
 * outcome, counted. */
static int classify(req_t *q, const redisReply *r)
{
    hb_rcluster_stats_t *st = &q->rc->st;
    if (r->type != REDIS_REPLY_ERROR || r->str == NULL)
        return OUT_ANSWER;
    if (error_is(r, "MOVED") && parse_redirect(q, r->str + 6) == 0) {
        st->moved++;
        return OUT_MOVED;
    }
    if (error_is(r, "ASK") && parse_redirect(q, r->str + 4) == 0) {
        st->ask++;
        return OUT_ASK;
    }
    if (error_is(r, "NOSCRIPT") && q->script != NULL) {
        st->noscript++;
        return OUT_NOSCRIPT;
    }
    static const char *const backoff[] = {"TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING"};
    uint64_t *counts[] = {&st->tryagain, &st->clusterdown, &st->masterdown, &st->loading};
    for (size_t i = 0; i < sizeof backoff / sizeof backoff[0]; i++)
        if (error_is(r, backoff[i])) {
            (*counts[i])++;
            return OUT_BACKOFF;
        }
    return OUT_ANSWER;
}

/* Every answer of q's send is in (and q is not answered): act on what they said. */
static void settle(req_t *q)
{
    hb_rcluster_t *rc = q->rc;
    switch (q->outcome) {
    case OUT_MOVED:
        rc->slots[q->moved_slot] = q->redirect->index;
        q->asking = 0;
        q->ask_node = NULL;
        (void)topo_request(rc);
        route(q);
        return;
    case OUT_ASK:
        q->asking = 1;
        q->ask_node = q->redirect;
        route(q);
        return;
    case OUT_NOSCRIPT:
        q->load = 1;
        q->asking = q->sent_asking;
        q->ask_node = q->sent_asking ? q->node : NULL;
        route(q);
        return;
    case OUT_ANSWER: /* WAIT's answer is what finishes these; should it not come, answer anyway */
        finish(q, 0, q->held, 0);
        return;
    default: /* OUT_BACKOFF, OUT_LOST */
        q->asking = 0;
        q->load = 0;
        q->ask_node = NULL;
        q->backoff = backoff_next(rc, q->backoff);
        q->not_before = now_ms(rc) + q->backoff;
        q->topo_wait = topo_request(rc);
        enqueue(q);
        return;
    }
}

/* The NULL answer of a connection that went: unless something was decided, the send is lost. */
static void lost(req_t *q)
{
    if (q->outcome == OUT_NONE)
        q->outcome = OUT_LOST;
}

/* One of q's hiredis callbacks ran: q, or NULL when q was answered before (and is now released,
 * if that was its last). */
static req_t *answer_arrived(void *priv)
{
    req_t *q = priv;
    q->inflight--;
    if (q->state != REQ_DONE)
        return q;
    release(q);
    return NULL;
}

static void on_load_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    const redisReply *r = reply;
    req_t *q = answer_arrived(priv);
    if (q == NULL)
        return;
    if (r == NULL)
        lost(q);
    else if (r->type == REDIS_REPLY_ERROR) { /* the script does not compile: the caller's answer */
        finish(q, 0, r, 0);
        return;
    }
    if (q->inflight == 0)
        settle(q);
}

static void on_asking_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    req_t *q = answer_arrived(priv);
    if (q == NULL)
        return;
    if (reply == NULL)
        lost(q);
    if (q->inflight == 0)
        settle(q);
}

static void on_main_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    const redisReply *r = reply;
    req_t *q = answer_arrived(priv);
    if (q == NULL)
        return;
    if (r == NULL) {
        lost(q);
    } else if (q->outcome == OUT_NONE) {
        q->node->backoff = 0;
        q->outcome = classify(q, r);
        if (q->outcome == OUT_ANSWER) {
            if (q->replicas == 0 || q->inflight == 0) {
                finish(q, 0, r, 0);
                return;
            }
            if ((q->held = reply_copy(r)) == NULL) {
                finish(q, HB_ENOMEM, NULL, 0);
                return;
            }
        }
    }
    if (q->inflight == 0)
        settle(q);
}

/* WAIT's answer r (NULL: none came) for member q. */
static void wait_answered(req_t *q, const redisReply *r)
{
    if ((q = answer_arrived(q)) == NULL)
        return;
    if (q->outcome == OUT_ANSWER) {
        int acked = r != NULL && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : 0;
        finish(q, 0, q->held, acked);
        return;
    }
    if (r == NULL)
        lost(q);
    if (q->inflight == 0)
        settle(q);
}

/* The group's WAIT was answered (r), or will never be (NULL): every member hears it; freed. */
static void group_done(wait_group_t *g, const redisReply *r)
{
    for (unsigned i = 0; i < g->n; i++)
        wait_answered(g->members[i], r);
    free(g->members);
    free(g);
}

static void group_flush(hb_rcluster_t *rc, node_t *n);

static void on_group_wait(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    wait_group_t *g = priv;
    node_t *n = g->node;
    if (n->waiting == g)
        n->waiting = NULL;
    group_done(g, reply);
    /* What gathered meanwhile goes now (unless the answer came while closing). */
    if (n->waiting == NULL && n->group != NULL && !n->rc->closing)
        group_flush(n->rc, n);
}

/* Send n's open group's WAIT now, behind everything its members sent; if the connection they went
 * on is gone, no WAIT can answer for them. */
static void group_flush(hb_rcluster_t *rc, node_t *n)
{
    wait_group_t *g = n->group;
    if (g == NULL)
        return;
    n->group = NULL;
    if (!rc->closing && n->ac != NULL && n->ac == g->ac) {
        char replicas[16], ms[16];
        snprintf(replicas, sizeof replicas, "%d", g->replicas);
        snprintf(ms, sizeof ms, "%u", (unsigned)g->wait_ms);
        const char *argv[] = {"WAIT", replicas, ms};
        if (redisAsyncCommandArgv(g->ac, on_group_wait, g, 3, argv, NULL) == REDIS_OK) {
            rc->st.waits++;
            n->waiting = g;
            return;
        }
    }
    group_done(g, NULL);
}

static void on_flush(uv_check_t *h)
{
    hb_rcluster_t *rc = h->data;
    uv_check_stop(&rc->flush);
    rc->flush_on = 0;
    for (unsigned i = 0; i < rc->nnodes; i++) {
        node_t *n = rc->nodes[i];
        if (n->group != NULL && (n->waiting == NULL || n->waiting->ac != n->ac))
            group_flush(rc, n);
    }
}

/* q, just sent on n's connection, joins the WAIT that will follow it. Returns 0, or -1 (out of
 * memory: q goes without WAIT, acked 0). */
static int group_join(hb_rcluster_t *rc, node_t *n, req_t *q)
{
    wait_group_t *g = n->group;
    if (g != NULL && (g->ac != n->ac || g->replicas != q->replicas || g->wait_ms != q->wait_ms)) {
        group_flush(rc, n);
        g = NULL;
    }
    if (g == NULL) {
        if ((g = calloc(1, sizeof *g)) == NULL)
            return -1;
        g->node = n;
        g->ac = n->ac;
        g->replicas = q->replicas;
        g->wait_ms = q->wait_ms;
        n->group = g;
    }
    if (g->n == g->cap) {
        unsigned cap = g->cap ? g->cap * 2 : 8;
        req_t **m = realloc(g->members, cap * sizeof *m);
        if (m == NULL)
            return -1;
        g->members = m;
        g->cap = cap;
    }
    g->members[g->n++] = q;
    q->inflight++;
    if (!rc->flush_on) {
        uv_check_start(&rc->flush, on_flush);
        rc->flush_on = 1;
    }
    return 0;
}

/* Pipeline q's send on n's connection: [SCRIPT LOAD], [ASKING], the command, then [WAIT] with
 * what else asked for it in this loop iteration. */
static void send_to(req_t *q, node_t *n)
{
    hb_rcluster_t *rc = q->rc;
    redisAsyncContext *ac = n->ac;
    int ok = 1;
    q->state = REQ_SENT;
    q->node = n;
    q->outcome = OUT_NONE;
    q->redirect = NULL;
    q->sent_asking = q->asking;
    if (q->load) {
        const char *argv[] = {"SCRIPT", "LOAD", q->script->text};
        size_t len[] = {6, 4, q->script->len};
        ok = redisAsyncCommandArgv(ac, on_load_reply, q, 3, argv, len) == REDIS_OK;
        q->inflight += ok;
    }
    if (ok && q->asking) {
        const char *argv[] = {"ASKING"};
        ok = redisAsyncCommandArgv(ac, on_asking_reply, q, 1, argv, NULL) == REDIS_OK;
        q->inflight += ok;
    }
    if (ok) {
        ok = redisAsyncCommandArgv(ac, on_main_reply, q, q->argc, q->argv, q->argvlen) == REDIS_OK;
        q->inflight += ok;
    }
    if (ok && q->replicas > 0)
        (void)group_join(rc, n, q);
    q->asking = 0;
    q->load = 0;
    q->ask_node = NULL;
    rc->st.sent++;
    if (!ok)
        q->outcome = OUT_LOST;
    if (q->inflight == 0)
        settle(q);
}

/* Send q where it belongs now, or queue it until it can be. */
static void route(req_t *q)
{
    hb_rcluster_t *rc = q->rc;
    node_t *n = q->ask_node;
    if (n == NULL) {
        if (q->topo_wait > rc->topo_done) {
            enqueue(q);
            return;
        }
        uint16_t i = rc->slots[q->slot];
        if (i == SLOT_NONE) {
            q->topo_wait = topo_request(rc);
            enqueue(q);
            return;
        }
        n = rc->nodes[i];
    }
    if (now_ms(rc) < n->down_until || node_connect(rc, n) != 0) {
        q->not_before = n->down_until;
        enqueue(q);
        return;
    }
    send_to(q, n);
}

/* ---- the timer: deadlines, the queue, the topology ---- */

static void expire(hb_rcluster_t *rc)
{
    uint64_t now = now_ms(rc);
    req_t *q;
    while ((q = rc->list[PENDING].head) != NULL && q->deadline <= now) {
        node_t *n = q->state == REQ_SENT ? q->node : NULL;
        finish(q, n != NULL ? UV_ETIMEDOUT : HB_ESTORE, NULL, 0);
        /* The node did not answer in time: what else it carries waits behind that answer. */
        if (n != NULL && !rc->closing)
            node_drop(rc, n, 1);
    }
    if (rc->topo_inflight && now >= rc->topo_deadline && !rc->closing)
        node_drop(rc, rc->topo_node, 1);
}

static void process(hb_rcluster_t *rc)
{
    if (rc->closing)
        return;
    expire(rc);
    if (rc->closing)
        return;
    if (rc->topo_wanted && !rc->topo_inflight)
        (void)topo_start(rc);
    /* Route every queued request that may go now; the rest (and any that come back) stay. */
    req_t *list = rc->list[QUEUE].head;
    rc->list[QUEUE].head = rc->list[QUEUE].tail = NULL;
    uint64_t now = now_ms(rc);
    while (list != NULL) {
        req_t *q = list;
        list = q->link[QUEUE].next;
        q->link[QUEUE].prev = q->link[QUEUE].next = NULL;
        if (q->not_before > now || q->topo_wait > rc->topo_done)
            enqueue(q);
        else
            route(q);
    }
    if (rc->list[PENDING].head != NULL)
        arm(rc, rc->list[PENDING].head->deadline);
    if (rc->topo_inflight)
        arm(rc, rc->topo_deadline);
}

static void on_timer(uv_timer_t *t)
{
    hb_rcluster_t *rc = t->data;
    rc->timer_due = UINT64_MAX;
    process(rc);
}

/* ---- the API ---- */

static int parse_seeds(hb_rcluster_t *rc, const char *seeds)
{
    const char *p = seeds;
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char text[HB_ADDR_HOST_SIZE + 8], host[HB_ADDR_HOST_SIZE];
        int port;
        if (len == 0 || len >= sizeof text)
            return HB_EINVAL;
        memcpy(text, p, len);
        text[len] = '\0';
        if (hb_addr_parse(text, host, sizeof host, &port) != 0 || port == 0)
            return HB_EINVAL;
        if (node_get(rc, host, port) == NULL)
            return HB_ENOMEM;
        p = comma != NULL ? comma + 1 : NULL;
    }
    return rc->nnodes > 0 ? 0 : HB_EINVAL;
}

static void free_all(hb_rcluster_t *rc)
{
    for (unsigned i = 0; i < rc->nnodes; i++)
        free(rc->nodes[i]);
    free(rc->nodes);
    while (rc->scripts != NULL) {
        hb_rscript_t *s = rc->scripts;
        rc->scripts = s->next;
        free(s);
    }
    free(rc);
}

int hb__rcluster_open(uv_loop_t *loop, const hb_rcluster_options_t *o, hb_rcluster_t **out)
{
    if (loop == NULL || o == NULL || out == NULL || o->seeds == NULL)
        return HB_EINVAL;
    hb_rcluster_t *rc = calloc(1, sizeof *rc);
    if (rc == NULL)
        return HB_ENOMEM;
    rc->loop = loop;
    rc->timeout_ms = o->timeout_ms ? o->timeout_ms : 2000;
    rc->backoff_min = o->backoff_min_ms ? o->backoff_min_ms : 10;
    rc->backoff_max = o->backoff_max_ms ? o->backoff_max_ms : 1000;
    if (rc->backoff_max < rc->backoff_min)
        rc->backoff_max = rc->backoff_min;
    rc->log = o->log;
    rc->log_arg = o->log_arg;
    rc->timer_due = UINT64_MAX;
    for (size_t s = 0; s < HB_KEYSLOTS; s++)
        rc->slots[s] = SLOT_NONE;
    int err = parse_seeds(rc, o->seeds);
    if (err != 0) {
        free_all(rc);
        return err;
    }
    uv_timer_init(loop, &rc->timer);
    uv_idle_init(loop, &rc->idle);
    uv_check_init(loop, &rc->flush);
    rc->timer.data = rc->idle.data = rc->flush.data = rc;
    rc->handles_open = 3;
    (void)topo_request(rc);
    *out = rc;
    return 0;
}

/* Queue a command (EVALSHA of script when script != NULL) and try to send it. */
static int submit(hb_rcluster_t *rc, const hb_rscript_t *script, uint16_t slot, int nkeys, int argc,
                  const char **argv, const size_t *argvlen, int replicas, uint32_t wait_ms,
                  hb_rcluster_cb cb, void *arg)
{
    if (rc == NULL || cb == NULL || slot >= HB_KEYSLOTS || argc < 0 || (argc > 0 && !argv) ||
        replicas < 0 || (script == NULL && argc < 1) || nkeys < 0 || nkeys > argc)
        return HB_EINVAL;
    if (rc->closing)
        return UV_ECANCELED;
    char nkeys_text[16];
    int extra = script != NULL ? 3 : 0, total = argc + extra;
    size_t bytes = 0;
    for (int i = 0; i < argc; i++) {
        if (argv[i] == NULL)
            return HB_EINVAL;
        bytes += argvlen != NULL ? argvlen[i] : strlen(argv[i]);
    }
    snprintf(nkeys_text, sizeof nkeys_text, "%d", nkeys);
    size_t room = sizeof(req_t) + (size_t)total * (sizeof(char *) + sizeof(size_t)) + bytes;
    req_t *q = malloc(room + sizeof nkeys_text);
    if (q == NULL)
        return HB_ENOMEM;
    memset(q, 0, sizeof *q);
    q->argv = (const char **)(q + 1);
    q->argvlen = (size_t *)(q->argv + total);
    char *data = (char *)(q->argvlen + total);
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        memcpy(data, argv[i], len);
        q->argv[extra + i] = data;
        q->argvlen[extra + i] = len;
        data += len;
    }
    if (script != NULL) {
        q->argv[0] = "EVALSHA";
        q->argvlen[0] = 7;
        q->argv[1] = script->sha;
        q->argvlen[1] = 40;
        q->argvlen[2] = strlen(nkeys_text);
        memcpy(data, nkeys_text, q->argvlen[2]);
        q->argv[2] = data;
    }
    q->rc = rc;
    q->argc = total;
    q->slot = slot;
    q->script = script;
    q->replicas = replicas;
    q->wait_ms = wait_ms;
    q->cb = cb;
    q->arg = arg;
    q->deadline = now_ms(rc) + rc->timeout_ms;
    list_append(&rc->list[PENDING], PENDING, q);
    arm(rc, q->deadline);
    route(q);
    return 0;
}

int hb__rcluster_command(hb_rcluster_t *rc, uint16_t slot, int argc, const char **argv,
                         const size_t *argvlen, hb_rcluster_cb cb, void *arg)
{
    return submit(rc, NULL, slot, 0, argc, argv, argvlen, 0, 0, cb, arg);
}

int hb__rcluster_command_wait(hb_rcluster_t *rc, uint16_t slot, int argc, const char **argv,
                              const size_t *argvlen, int replicas, uint32_t wait_ms,
                              hb_rcluster_cb cb, void *arg)
{
    return submit(rc, NULL, slot, 0, argc, argv, argvlen, replicas, wait_ms, cb, arg);
}

int hb__rcluster_script(hb_rcluster_t *rc, const char *lua, hb_rscript_t **script)
{
    if (rc == NULL || lua == NULL || script == NULL)
        return HB_EINVAL;
    size_t len = strlen(lua);
    hb_rscript_t *s = malloc(sizeof *s + len + 1);
    if (s == NULL)
        return HB_ENOMEM;
    memcpy(s->text, lua, len + 1);
    s->len = len;
    hb__sha1_hex(lua, len, s->sha);
    s->next = rc->scripts;
    rc->scripts = s;
    *script = s;
    return 0;
}

const char *hb__rscript_sha(const hb_rscript_t *script)
{
    return script->sha;
}

int hb__rcluster_eval(hb_rcluster_t *rc, const hb_rscript_t *script, uint16_t slot, int nkeys,
                      int argc, const char **argv, const size_t *argvlen, int replicas,
                      uint32_t wait_ms, hb_rcluster_cb cb, void *arg)
{
    if (script == NULL)
        return HB_EINVAL;
    return submit(rc, script, slot, nkeys, argc, argv, argvlen, replicas, wait_ms, cb, arg);
}

void hb__rcluster_stats(const hb_rcluster_t *rc, hb_rcluster_stats_t *out)
{
    *out = rc->st;
}

int hb__rcluster_slot_owner(const hb_rcluster_t *rc, uint16_t slot, char *host, size_t host_size,
                            int *port)
{
    if (slot >= HB_KEYSLOTS || rc->slots[slot] == SLOT_NONE)
        return HB_ENOENT;
    const node_t *n = rc->nodes[rc->slots[slot]];
    if (host != NULL)
        snprintf(host, host_size, "%s", n->host);
    if (port != NULL)
        *port = n->port;
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    hb_rcluster_t *rc = h->data;
    if (--rc->handles_open > 0)
        return;
    void (*closed)(void *) = rc->closed;
    void *arg = rc->closed_arg;
    free_all(rc);
    if (closed != NULL)
        closed(arg);
}

/* The contexts' poll handles were closed when they were freed; a loop iteration later, with
 * their close callbacks run, close ours. */
static void on_idle(uv_idle_t *h)
{
    hb_rcluster_t *rc = h->data;
    if (rc->close_stage++ == 0)
        return;
    uv_idle_stop(&rc->idle);
    uv_close((uv_handle_t *)&rc->timer, on_handle_closed);
    uv_close((uv_handle_t *)&rc->idle, on_handle_closed);
    uv_close((uv_handle_t *)&rc->flush, on_handle_closed);
}

void hb__rcluster_close(hb_rcluster_t *rc, void (*closed)(void *arg), void *arg)
{
    if (rc == NULL || rc->closing)
        return;
    rc->closing = 1;
    rc->closed = closed;
    rc->closed_arg = arg;
    while (rc->list[PENDING].head != NULL)
        finish(rc->list[PENDING].head, UV_ECANCELED, NULL, 0);
    for (unsigned i = 0; i < rc->nnodes; i++) {
        group_flush(rc, rc->nodes[i]);
        node_drop(rc, rc->nodes[i], 0);
    }
    uv_timer_stop(&rc->timer);
    uv_check_stop(&rc->flush);
    uv_idle_start(&rc->idle, on_idle);
}
