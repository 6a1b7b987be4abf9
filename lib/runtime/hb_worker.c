/* The workers of a SET group: each a thread with its own loop, a listener, a tick timer and its
 * SETs; the group's set-up, the once-a-second work (login deadlines, expiry), and the four
 * shutdown phases every SET goes through (hb_set.h). The connections themselves are hb_set.c's. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hb_set.h"
#include "hb_store.h"

static void on_accept(hb_listener_t *l, int fd)
{
    hb_worker_t *w = l->poll.data;
    hb_setgroup_t *g = w->group;
    hb_set_t *first = &g->sets[w->first_set];
    if (fd < 0) {
        /* Out of descriptors (the connection was taken and closed) or a listener error. */
        hb__set_count(first, HB_CTR_X_CONN_REJECTED, hb__now_s(), 1);
        return;
    }
    if (w->stopping) {
        close(fd);
        return;
    }
    hb_set_t *set = &g->sets[w->first_set + w->next_set];
    w->next_set = (w->next_set + 1) % w->nsets;
    hb__set_accept(set, fd);
}

/* ---- timers ---------------------------------------------------------------------------------- */

/* The SET's connections are the loop's poll handles whose data is that SET (the listener's is its
 * worker): no list of their own, which keeps a connection small. */
static hb_conn_t *conn_of_set(uv_handle_t *h, const hb_set_t *set)
{
    if (h->type != UV_POLL || h->data != set || uv_is_closing(h))
        return NULL;
    return (hb_conn_t *)h;
}

/* The same for any of worker w's SETs (other poll handles on the loop, the listener's or a
 * store's, are not connections). */
static hb_conn_t *conn_of_worker(uv_handle_t *h, const hb_worker_t *w)
{
    if (h->type != UV_POLL || uv_is_closing(h))
        return NULL;
    for (unsigned i = 0; i < w->nsets; i++)
        if (h->data == &w->group->sets[w->first_set + i])
            return (hb_conn_t *)h;
    return NULL;
}

static void close_if_late(uv_handle_t *h, void *arg)
{
    hb_worker_t *w = arg;
    hb_conn_t *c = conn_of_worker(h, w);
    if (c == NULL || c->logged_in || c->closing)
        return;
    uint32_t now = (uint32_t)uv_now(&w->loop);
    if ((uint32_t)(now - c->stamp.accepted_ms) >= w->group->login_timeout_ms) {
        hb__set_count(HB_CONN_SET(c), HB_CTR_X_LOGIN_TIMEOUT, hb__now_s(), 1);
        hb__conn_close(c);
    }
}

static void close_any(uv_handle_t *h, void *arg)
{
    hb_conn_t *c = conn_of_worker(h, arg);
    if (c != NULL)
        hb__conn_abort(c);
}

static void on_tick(uv_timer_t *t)
{
    hb_worker_t *w = t->data;
    hb_setgroup_t *g = w->group;
    if (w->stopping) {
        /* Shutting down: past the deadline, stop waiting for the journal and for peers. */
        if (uv_now(&w->loop) < w->close_deadline_ms)
            return;
        for (unsigned i = 0; i < w->nsets; i++)
            g->store->ops->give_up(g->store, &g->sets[w->first_set + i]);
        if (w->phase4_sets == w->nsets)
            uv_walk(&w->loop, close_any, w);
        return;
    }
    /* Slow or silent peers that never log in: one walk of the loop's handles, and none while
     * every connection has logged in (a walk of 19,000 handles a second was a third of an idle
     * server's instructions). */
    if (w->awaiting_login > 0)
        uv_walk(&w->loop, close_if_late, w);
    uint64_t now_s = hb__now_s();
    for (unsigned i = 0; i < w->nsets; i++)
        g->store->ops->expire(g->store, &g->sets[w->first_set + i], now_s);
}

/* Before the loop polls (and may sleep): what this turn counted goes into the shard. */
static void on_prepare(uv_prepare_t *p)
{
    hb__worker_publish(p->data);
}

/* ---- shutdown ---------------------------------------------------------------------------------
 * The control loop drives four phases through every SET's queue, each posted once every SET has
 * acknowledged the one before, so that whatever a SET posted in one phase is handled before the
 * next: 1 stop reading (and accepting); 2 drain (every claim read is judged and journaled);
 * 3 release what waits once the journal is durable up to what was appended; 4 flush and close. */

static void stop_reading(uv_handle_t *h, void *arg)
{
    hb_conn_t *c = conn_of_set(h, arg);
    if (c != NULL && !c->closing)
        hb__sock_read_stop(&c->sock);
}

static void end_conn(uv_handle_t *h, void *arg)
{
    hb_conn_t *c = conn_of_set(h, arg);
    if (c != NULL)
        hb__conn_end(c);
}

static void on_set_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_tick_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_prepare_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_listener_closed(hb_listener_t *l)
{
    (void)l;
}

/* When a worker's SETs have all passed phase 4 and its connections are gone, close the rest of its
 * handles: its loop then ends. */
void hb__worker_maybe_done(hb_worker_t *w)
{
    if (w->phase4_sets < w->nsets || w->conns > 0 || !w->tick_open)
        return;
    hb_setgroup_t *g = w->group;
    for (unsigned i = 0; i < w->nsets; i++) {
        hb_set_t *set = &g->sets[w->first_set + i];
        if (set->async_open) {
            set->async_open = 0;
            uv_close((uv_handle_t *)&set->async, on_set_handle_closed);
        }
    }
    w->tick_open = 0;
    uv_close((uv_handle_t *)&w->tick, on_tick_closed);
    hb__worker_publish(w);
    if (w->publish_open) {
        w->publish_open = 0;
        uv_close((uv_handle_t *)&w->publish, on_prepare_closed);
    }
}

void hb__set_on_phase(hb_set_t *set, const hb_set_msg_t *m)
{
    hb_worker_t *w = set->worker;
    switch (m->user) {
    case 1:
        if (!w->stopping) {
            w->stopping = 1;
            w->close_deadline_ms = uv_now(&w->loop) + w->group->close_timeout_ms;
            if (w->listener_open) {
                w->listener_open = 0;
                hb__listener_close(&w->listener, on_listener_closed);
            }
        }
        uv_walk(&w->loop, stop_reading, set);
        w->group->phase_done(w->group);
        break;
    case 2:
        w->group->phase_done(w->group);
        break;
    case 3:
        w->group->store->ops->drain(w->group->store, set, m->gen); /* acknowledges when done */
        break;
    case 4:
        hb__worker_flush(w);
        uv_walk(&w->loop, end_conn, set);
        w->phase4_sets++;
        w->group->phase_done(w->group);
        hb__worker_maybe_done(w);
        break;
    }
}

/* ---- the group and its workers
 * ---------------------------------------------------------------------
 */

int hb__group_init(hb_setgroup_t *g)
{
    g->workers = calloc(g->nworkers, sizeof *g->workers);
    g->sets = calloc(g->nsets, sizeof *g->sets);
    int r = g->workers == NULL || g->sets == NULL ? HB_ENOMEM : uv_mutex_init(&g->post_lock);
    if (r != 0) {
        free(g->workers);
        free(g->sets);
        g->workers = NULL;
        g->sets = NULL;
        return r;
    }
    unsigned per = g->nsets / g->nworkers, made = 0;
    for (unsigned i = 0; i < g->nworkers; i++) {
        hb_worker_t *w = &g->workers[i];
        w->group = g;
        w->index = i;
        w->listen_fd = -1;
        w->first_set = i * per;
        w->nsets = per;
        for (unsigned j = 0; j < per && r == 0; j++) {
            r = hb__set_init(g, &g->sets[made], w, made);
            if (r == 0)
                made++;
        }
    }
    if (r != 0) {
        while (made-- > 0)
            hb__set_free(&g->sets[made]);
        uv_mutex_destroy(&g->post_lock);
        free(g->workers);
        free(g->sets);
        g->workers = NULL;
        g->sets = NULL;
    }
    return r;
}

void hb__group_free(hb_setgroup_t *g)
{
    if (g->sets == NULL)
        return;
    for (unsigned i = 0; i < g->nworkers; i++) {
        if (g->workers[i].listen_fd >= 0)
            close(g->workers[i].listen_fd);
        free(g->workers[i].readbuf);
    }
    for (unsigned i = 0; i < g->nsets; i++)
        hb__set_free(&g->sets[i]);
    uv_mutex_destroy(&g->post_lock);
    free(g->workers);
    free(g->sets);
    g->workers = NULL;
    g->sets = NULL;
}

int hb__worker_prepare(hb_worker_t *w, int fd, int owns_fd)
{
    hb_setgroup_t *g = w->group;
    int r = uv_loop_init(&w->loop);
    if (r != 0)
        return r;
    w->loop_ready = 1;
    w->loop.data = w;
    w->readbuf = malloc(HB_SET_READ_BUF);
    if (w->readbuf == NULL)
        return HB_ENOMEM;
    if (owns_fd)
        w->listen_fd = -1; /* the listener owns it from now on */
    w->listener.poll.data = w;
    r = hb__listener_start(&w->loop, &w->listener, fd, owns_fd, on_accept);
    w->listener_open = 1;
    if (r != 0)
        return r;
    r = uv_timer_init(&w->loop, &w->tick);
    if (r != 0)
        return r;
    w->tick.data = w;
    w->tick_open = 1;
    uv_timer_start(&w->tick, on_tick, 1000, 1000);
    hb_counters_batch_init(&w->counts, g->counters, w->index);
    r = uv_prepare_init(&w->loop, &w->publish);
    if (r != 0)
        return r;
    w->publish.data = w;
    w->publish_open = 1;
    uv_prepare_start(&w->publish, on_prepare);
    uv_unref((uv_handle_t *)&w->publish); /* the loop lives as long as its other handles */
    for (unsigned i = 0; i < w->nsets; i++) {
        hb_set_t *set = &g->sets[w->first_set + i];
        r = uv_async_init(&w->loop, &set->async, hb__set_on_async);
        if (r != 0)
            return r;
        set->async.data = set;
        set->async_open = 1;
    }
    return 0;
}

void hb__worker_main(void *arg)
{
    hb_worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    hb__worker_publish(w); /* counted in the last close callbacks */
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void hb__worker_abandon(hb_worker_t *w)
{
    if (!w->loop_ready)
        return;
    if (w->listener_open)
        hb__listener_close(&w->listener, NULL);
    w->listener_open = 0;
    uv_walk(&w->loop, close_walk_cb, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    w->loop_ready = 0;
}

void hb__group_post_phase(hb_setgroup_t *g, unsigned phase, uint64_t target)
{
    hb_set_msg_t m = {.type = HB_MSG_PHASE, .user = phase, .gen = target};
    uv_mutex_lock(&g->post_lock);
    if (phase == 4)
        g->posts_closed = 1; /* nothing from outside after this: the queues close */
    for (unsigned i = 0; i < g->nsets; i++)
        hb__set_post(&g->sets[i], &m);
    uv_mutex_unlock(&g->post_lock);
}
