/* The server runtime: worker threads and their listeners, start and orderly shutdown, the
 * envelope generators and the control routes. Runs on the caller's (control) loop except the
 * worker thread bodies. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hb_internal.h"
#include "hb_server_int.h"

#define HB_DEFAULT_PORT          1025
#define HB_DEFAULT_MAX_QPS       65000
#define HB_MAX_QPS_LIMIT         16000000 /* the overload counter holds 24 bits */
#define HB_GENERATOR_TICK_MS     2
#define HB_SHAKE_AMOUNT_MIN      10
#define HB_SHAKE_AMOUNT_MAX      309
#define HB_SEND_TOTAL_MIN        300
#define HB_SEND_TOTAL_MAX        30000
#define HB_RLIMIT_RESERVE        64
#define HB_DEFAULT_CLOSE_TIMEOUT 5000
#define HB_WORKER_TICK_MS        1000

void hb_server_options_default(hb_server_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->listen_host = "127.0.0.1";
    o->listen_port = HB_DEFAULT_PORT;
}

/* The reason for the calling thread's last init/start failure. */
static _Thread_local char last_error[200];

static int fail(struct hb_server_impl *impl, int err, const char *fmt, const char *arg)
{
    (void)impl;
    snprintf(last_error, sizeof last_error, fmt, arg);
    return err;
}

const char *hb_server_last_error(const hb_server_t *server)
{
    (void)server;
    return last_error;
}

static void log_to_stderr(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "hongbao server: %s\n", line);
}

void hb__server_log(struct hb_server_impl *impl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(impl->opts.log != NULL ? impl->opts.log : log_to_stderr, impl->opts.log_arg, fmt, ap);
    va_end(ap);
}

void hb__control_count(struct hb_server_impl *impl, unsigned slot, uint64_t delta)
{
    hb_counters_add(&impl->counters, hb__control_shard(impl), slot, hb__now_s(), delta);
}

static unsigned cores(void)
{
    uv_cpu_info_t *info;
    int n;
    if (uv_cpu_info(&info, &n) != 0)
        return 1;
    uv_free_cpu_info(info, n);
    return n > 0 ? (unsigned)n : 1;
}

/* Fill in defaults and check the options. */
static int settle_options(struct hb_server_impl *impl, const hb_server_options_t *in)
{
    hb_server_options_t *o = &impl->opts;
    if (in != NULL)
        *o = *in;
    else
        hb_server_options_default(o);
    if (o->listen_host == NULL)
        o->listen_host = "127.0.0.1";
    if (strlen(o->listen_host) >= sizeof impl->host)
        return fail(impl, UV_EINVAL, "listen host '%s' is too long", o->listen_host);
    strcpy(impl->host, o->listen_host);
    o->listen_host = impl->host;
    if (o->listen_port < 0 || o->listen_port > 65535)
        return fail(impl, UV_EINVAL, "listen port out of range 0..65535%s", "");
    if (o->threads == 0)
        o->threads = cores();
    if (o->threads > 256)
        return fail(impl, UV_EINVAL, "at most 256 worker threads%s", "");
    if (o->sets == 0)
        o->sets = o->threads;
    if (o->sets > 4096)
        return fail(impl, UV_EINVAL, "at most 4096 SETs%s", "");
    o->sets = (o->sets + o->threads - 1) / o->threads * o->threads;
    if (o->max_qps == 0)
        o->max_qps = HB_DEFAULT_MAX_QPS;
    if (o->max_qps > HB_MAX_QPS_LIMIT)
        return fail(impl, UV_EINVAL, "max qps above 16,000,000%s", "");
    if (o->bucket_capacity == 0)
        o->bucket_capacity = 65536;
    if (o->queue_capacity == 0)
        o->queue_capacity = 16384;
    if (o->max_output == 0)
        o->max_output = 256 * 1024;
    if (o->send_expiry_s == 0)
        o->send_expiry_s = 24 * 3600;
    if (o->limit_users && o->max_user < o->min_user)
        return fail(impl, UV_EINVAL, "max user below min user%s", "");
    if (o->max_conn_qps == 0)
        o->max_conn_qps = 1000;
    if (o->max_conn_qps > 30000 && o->max_conn_qps != UINT32_MAX)
        return fail(impl, UV_EINVAL, "max_conn_qps above 30,000: use UINT32_MAX for no limit%s",
                    "");
    if (o->login_timeout_ms == 0)
        o->login_timeout_ms = 10000;
    if (o->close_timeout_ms == 0)
        o->close_timeout_ms = HB_DEFAULT_CLOSE_TIMEOUT;
    struct rlimit rl;
    uint64_t fds = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        fds = rl.rlim_cur;
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        fds = 1u << 20;
    uint64_t room = fds > HB_RLIMIT_RESERVE + o->threads ? fds - HB_RLIMIT_RESERVE - o->threads : 1;
    if (o->max_connections == 0 || o->max_connections > room)
        o->max_connections = (uint32_t)(room > UINT32_MAX ? UINT32_MAX : room);
    if (o->seed == 0)
        o->seed = uv_hrtime();
    return 0;
}

int hb_server_init(uv_loop_t *loop, hb_server_t *server, const hb_server_options_t *opts)
{
    if (loop == NULL || server == NULL)
        return UV_EINVAL;
    memset(server, 0, sizeof *server);
    last_error[0] = '\0';
    struct hb_server_impl *impl = calloc(1, sizeof *impl);
    if (impl == NULL)
        return UV_ENOMEM;
    server->impl = impl;
    server->loop = loop;
    impl->pub = server;
    impl->listen_fd = -1;
    if (uv_mutex_init(&impl->post_lock) != 0) {
        free(impl);
        server->impl = NULL;
        return UV_ENOMEM;
    }
    int r = settle_options(impl, opts);
    if (r != 0)
        goto fail_impl;
    impl->nthreads = server->nthreads = impl->opts.threads;
    impl->nsets = server->nsets = impl->opts.sets;
    server->max_connections = impl->opts.max_connections;
    hb_rand_seed(&impl->rng, impl->opts.seed);
    hb_server_handle(server, HB_CMD_CHAT, hb__chat_handler, NULL);

    r = hb_envq_init(&impl->envq, impl->nsets, impl->opts.bucket_capacity);
    if (r != 0)
        goto fail_impl;
    r = hb_registry_init(&impl->registry, 64, 16384);
    if (r != 0)
        goto fail_envq;
    r = hb_counters_init(&impl->counters, impl->nthreads + 1, HB_REPORTER_SERVER);
    if (r != 0)
        goto fail_registry;
    impl->workers = calloc(impl->nthreads, sizeof *impl->workers);
    impl->sets = calloc(impl->nsets, sizeof *impl->sets);
    if (impl->workers == NULL || impl->sets == NULL) {
        r = UV_ENOMEM;
        goto fail_arrays;
    }
    unsigned per = impl->nsets / impl->nthreads;
    unsigned made = 0;
    for (unsigned i = 0; i < impl->nthreads; i++) {
        hb_worker_t *w = &impl->workers[i];
        w->impl = impl;
        w->index = i;
        w->listen_fd = -1;
        w->first_set = i * per;
        w->nsets = per;
        for (unsigned j = 0; j < per; j++, made++) {
            r = hb__set_init(impl, &impl->sets[made], w, made);
            if (r != 0)
                goto fail_sets;
        }
    }
    r = hb__store_open(impl);
    if (r != 0) {
        fail(impl, r, "ledger: %.190s",
             impl->ledger.errstr[0] != '\0' ? impl->ledger.errstr : hb_strerror(r));
        goto fail_sets;
    }
    return 0;

fail_sets:
    while (made-- > 0)
        hb__set_free(&impl->sets[made]);
fail_arrays:
    free(impl->workers);
    free(impl->sets);
    hb_counters_close(&impl->counters);
fail_registry:
    hb_registry_close(&impl->registry);
fail_envq:
    hb_envq_close(&impl->envq);
fail_impl:
    uv_mutex_destroy(&impl->post_lock);
    if (last_error[0] == '\0')
        fail(impl, r, "cannot set the server up: %s", uv_strerror(r));
    free(impl);
    server->impl = NULL;
    return r;
}

int hb_server_handle(hb_server_t *server, uint16_t cmd, hb_frame_handler_cb cb, void *arg)
{
    struct hb_server_impl *impl = server->impl;
    if (cb == NULL || !(HB_CMD_IS_APP(cmd) || (cmd >= HB_CMD_CHAT && cmd <= 0x01FF)))
        return UV_EINVAL;
    if (impl->started)
        return UV_EBUSY;
    for (unsigned i = 0; i < impl->nhandlers; i++) {
        if (impl->handlers[i].cmd == cmd) {
            impl->handlers[i].cb = cb;
            impl->handlers[i].arg = arg;
            return 0;
        }
    }
    if (impl->nhandlers == HB_MAX_HANDLERS)
        return UV_ENOBUFS;
    impl->handlers[impl->nhandlers++] = (hb_handler_t){cmd, cb, arg};
    return 0;
}

/* ---- workers ----------------------------------------------------------------------------------
 */

static void worker_main(void *arg)
{
    hb_worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_fetch_add_explicit(&w->impl->workers_done, 1, memory_order_release);
    uv_async_send(&w->impl->control_async);
}

static int worker_prepare(hb_worker_t *w, int shared_fd)
{
    struct hb_server_impl *impl = w->impl;
    int r = uv_loop_init(&w->loop);
    if (r != 0)
        return r;
    w->loop_ready = 1;
    w->loop.data = w;
    w->readbuf = malloc(HB_SET_READ_BUF);
    if (w->readbuf == NULL)
        return UV_ENOMEM;
    int fd = shared_fd;
    if (fd < 0) {
        fd = w->listen_fd; /* its own SO_REUSEPORT socket, owned by the listener from now on */
        w->listen_fd = -1;
    }
    w->listener.poll.data = w;
    r = hb__listener_start(&w->loop, &w->listener, fd, shared_fd < 0, hb__worker_on_accept);
    w->listener_open = 1;
    if (r != 0)
        return r;
    r = uv_timer_init(&w->loop, &w->tick);
    if (r != 0)
        return r;
    w->tick.data = w;
    w->tick_open = 1;
    uv_timer_start(&w->tick, hb__worker_tick, HB_WORKER_TICK_MS, HB_WORKER_TICK_MS);
    for (unsigned i = 0; i < w->nsets; i++) {
        r = hb__set_start(&impl->sets[w->first_set + i]);
        if (r != 0)
            return r;
    }
    return 0;
}

static void on_control_async(uv_async_t *a);

int hb_server_start(hb_server_t *server)
{
    struct hb_server_impl *impl = server->impl;
    if (impl->started)
        return UV_EBUSY;
    impl->started = 1;
    int r = uv_async_init(server->loop, &impl->control_async, on_control_async);
    if (r != 0)
        return r;
    impl->control_async.data = impl;
    impl->control_open = 1;
    impl->control_handles++;
    uv_timer_init(server->loop, &impl->shake_gen.timer);
    uv_timer_init(server->loop, &impl->send_gen.timer);
    impl->shake_gen.timer.data = impl;
    impl->send_gen.timer.data = impl;
    impl->control_handles += 2;

    int port = impl->opts.listen_port;
    char what[96];
    if (impl->opts.reuse_port) {
        for (unsigned i = 0; i < impl->nthreads && r == 0; i++)
            r = hb__sock_listen_fd(impl->host, port, HB_LISTEN_BACKLOG, 1,
                                   &impl->workers[i].listen_fd, &port);
    } else {
        r = hb__sock_listen_fd(impl->host, port, HB_LISTEN_BACKLOG, 0, &impl->listen_fd, &port);
    }
    if (r != 0) {
        if (r == UV_EINVAL)
            return fail(impl, r, "listen host '%s' is not an IP address", impl->host);
        snprintf(what, sizeof what, "%s:%d: %s", impl->host, impl->opts.listen_port,
                 uv_strerror(r));
        return fail(impl, r, "cannot listen on %s", what);
    }
    server->port = port;
    for (unsigned i = 0; i < impl->nthreads; i++) {
        r = worker_prepare(&impl->workers[i], impl->listen_fd);
        if (r != 0)
            return fail(impl, r, "worker set-up failed: %s", uv_strerror(r));
    }
    for (unsigned i = 0; i < impl->nthreads; i++) {
        hb_worker_t *w = &impl->workers[i];
        r = uv_thread_create(&w->thread, worker_main, w);
        if (r != 0)
            return fail(impl, r, "cannot start a worker thread: %s", uv_strerror(r));
        w->thread_started = 1;
    }
    return 0;
}

/* ---- shutdown ----------------------------------------------------------------------------------
 * hb_server_close posts phase 1 to every SET; each later phase goes out once every SET has
 * acknowledged the one before (hb_set.c says what each does). After phase 4 the workers' loops
 * end; then the journal is closed, the callback runs, and the memory is freed. */

void hb__phase_ack(struct hb_server_impl *impl)
{
    atomic_fetch_add_explicit(&impl->phase_acks, 1, memory_order_acq_rel);
    uv_async_send(&impl->control_async);
}

static void post_phase(struct hb_server_impl *impl, unsigned phase, uint64_t target)
{
    impl->phase = phase;
    atomic_store_explicit(&impl->phase_acks, 0, memory_order_release);
    hb_set_msg_t m = {.type = HB_MSG_PHASE, .user = phase, .gen = target};
    uv_mutex_lock(&impl->post_lock);
    if (phase == 4)
        impl->posts_closed = 1; /* nothing from outside after this: the queues close */
    for (unsigned i = 0; i < impl->nsets; i++)
        hb__set_post(&impl->sets[i], &m);
    uv_mutex_unlock(&impl->post_lock);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Everything the server allocated; the hb_server_t is not touched (the caller may have freed it in
 * its close callback). */
static void free_everything(struct hb_server_impl *impl)
{
    uv_mutex_destroy(&impl->post_lock);
    for (unsigned i = 0; i < impl->nthreads; i++) {
        hb_worker_t *w = &impl->workers[i];
        if (w->listen_fd >= 0)
            close(w->listen_fd);
        free(w->readbuf);
    }
    if (impl->listen_fd >= 0)
        close(impl->listen_fd);
    for (unsigned i = 0; i < impl->nsets; i++)
        hb__set_free(&impl->sets[i]);
    free(impl->workers);
    free(impl->sets);
    hb_counters_close(&impl->counters);
    hb_registry_close(&impl->registry);
    hb_envq_close(&impl->envq);
    free(impl);
}

static void on_control_handle_closed(uv_handle_t *h)
{
    struct hb_server_impl *impl = h->data;
    if (--impl->control_handles > 0)
        return;
    /* The rule libuv's handles follow: everything stays readable in the callback; the memory is
     * the caller's to free in or after it, and the library does not touch it again. */
    hb_server_close_cb cb = impl->close_cb;
    if (cb != NULL)
        cb(impl->pub);
    free_everything(impl);
}

/* Every worker loop has ended (or never ran): join, close their loops and the journal, then our
 * own handles. */
static void finish_close(struct hb_server_impl *impl)
{
    for (unsigned i = 0; i < impl->nthreads; i++) {
        hb_worker_t *w = &impl->workers[i];
        if (w->thread_started) {
            uv_thread_join(&w->thread);
            w->thread_started = 0;
        } else if (w->loop_ready) {
            /* Prepared but never run (start failed part way): close its handles here. */
            if (w->listener_open)
                hb__listener_close(&w->listener, NULL);
            w->listener_open = 0;
            uv_walk(&w->loop, close_walk_cb, NULL);
            uv_run(&w->loop, UV_RUN_DEFAULT);
        }
        if (w->loop_ready)
            uv_loop_close(&w->loop);
        w->loop_ready = 0;
    }
    hb__store_close(impl);
    if (impl->control_handles == 0) {
        /* start was never called: nothing to close on the control loop */
        impl->control_handles = 1;
        on_control_handle_closed((uv_handle_t *)&(uv_handle_t){.data = impl});
        return;
    }
    uv_close((uv_handle_t *)&impl->control_async, on_control_handle_closed);
    uv_close((uv_handle_t *)&impl->shake_gen.timer, on_control_handle_closed);
    uv_close((uv_handle_t *)&impl->send_gen.timer, on_control_handle_closed);
}

static unsigned workers_running(const struct hb_server_impl *impl)
{
    unsigned running = 0;
    for (unsigned i = 0; i < impl->nthreads; i++)
        running += impl->workers[i].thread_started;
    return running;
}

static void on_control_async(uv_async_t *a)
{
    struct hb_server_impl *impl = a->data;
    if (!impl->closing)
        return;
    if (impl->phase >= 1 && impl->phase < 4 &&
        atomic_load_explicit(&impl->phase_acks, memory_order_acquire) == impl->nsets) {
        unsigned next = impl->phase + 1;
        post_phase(impl, next, next == 3 ? hb__store_appended(impl) : 0);
        return;
    }
    if (atomic_load_explicit(&impl->workers_done, memory_order_acquire) == workers_running(impl) &&
        impl->control_open) {
        impl->control_open = 0;
        finish_close(impl);
    }
}

void hb_server_close(hb_server_t *server, hb_server_close_cb cb)
{
    struct hb_server_impl *impl = server->impl;
    if (impl == NULL || impl->closing)
        return;
    impl->closing = 1;
    impl->close_cb = cb;
    impl->shake_gen.active = impl->send_gen.active = 0;
    if (impl->started) {
        uv_timer_stop(&impl->shake_gen.timer);
        uv_timer_stop(&impl->send_gen.timer);
    }
    if (workers_running(impl) == 0) {
        impl->control_open = 0;
        finish_close(impl);
        return;
    }
    post_phase(impl, 1, 0);
}

/* ---- envelopes --------------------------------------------------------------------------------
 */

/* How many of sum should exist by now at qps, paced by milliseconds since start. */
static uint64_t generator_due(const hb_generator_t *g, uint64_t now_ms)
{
    uint64_t elapsed = now_ms - g->start_ms;
    uint64_t due = g->qps * elapsed / 1000 + 1; /* the first goes out at once */
    return due < g->sum ? due : g->sum;
}

static void on_shake_tick(uv_timer_t *t)
{
    struct hb_server_impl *impl = t->data;
    hb_generator_t *g = &impl->shake_gen;
    uint64_t due = generator_due(g, uv_now(t->loop));
    while (g->done < due) {
        uint32_t id = g->kept_id;
        int r = id != 0 ? 0 : hb__store_shake_id(impl, &id);
        if (r != 0) {
            /* No durable id reservation yet, or no ids left: wait for the next tick. */
            hb__control_count(impl, HB_CTR_X_IDS_WAIT, 1);
            break;
        }
        hb_envelope_t e = {
            id, (uint32_t)hb_rand_range(&impl->rng, HB_SHAKE_AMOUNT_MIN, HB_SHAKE_AMOUNT_MAX)};
        if (hb_envq_push(&impl->envq, e, NULL) != 0) {
            /* Every bucket is full: count it, keep the id for the next tick. */
            g->kept_id = id;
            hb__control_count(impl, HB_CTR_X_ENVQ_FULL, 1);
            break;
        }
        g->kept_id = 0;
        g->done++;
        hb__control_count(impl, HB_CTR_SHAKE_ENVELOPES, 1);
        hb__control_count(impl, HB_CTR_SHAKE_AMOUNT_ISSUED, e.amount);
    }
    if (g->done >= g->sum) {
        g->active = 0;
        uv_timer_stop(t);
    }
}

static void generator_start(hb_generator_t *g, uv_loop_t *loop, uint64_t qps, uint64_t sum,
                            uv_timer_cb cb)
{
    uv_timer_stop(&g->timer);
    g->qps = qps;
    g->sum = sum;
    g->done = 0;
    g->active = qps > 0 && sum > 0;
    if (!g->active)
        return;
    uv_update_time(loop);
    g->start_ms = uv_now(loop);
    uv_timer_start(&g->timer, cb, 0, HB_GENERATOR_TICK_MS);
}

int hb_server_generate_shake(hb_server_t *server, uint64_t qps, uint64_t sum)
{
    struct hb_server_impl *impl = server->impl;
    if (!impl->started || impl->closing || qps > HB_GENERATE_QPS_MAX)
        return UV_EINVAL;
    generator_start(&impl->shake_gen, server->loop, qps, sum, on_shake_tick);
    return 0;
}

int hb_server_send_envelope(hb_server_t *server, const uint32_t recipients[3], uint32_t total,
                            uint32_t *id)
{
    if (!server->impl->started || server->impl->closing)
        return UV_EINVAL;
    return hb__store_create_send(server->impl, recipients, total, id);
}

static void on_send_tick(uv_timer_t *t)
{
    struct hb_server_impl *impl = t->data;
    hb_generator_t *g = &impl->send_gen;
    uint64_t due = generator_due(g, uv_now(t->loop));
    while (g->done < due) {
        uint32_t who[3];
        for (unsigned i = 0; i < 3; i++) {
            int fresh;
            do {
                who[i] = (uint32_t)hb_rand_range(&impl->rng, g->min_user, g->max_user);
                fresh = 1;
                for (unsigned j = 0; j < i; j++)
                    fresh &= who[j] != who[i];
            } while (!fresh);
        }
        uint32_t total = (uint32_t)hb_rand_range(&impl->rng, HB_SEND_TOTAL_MIN, HB_SEND_TOTAL_MAX);
        if (hb__store_create_send(impl, who, total, NULL) != 0) {
            hb__control_count(impl, HB_CTR_X_IDS_WAIT, 1);
            break;
        }
        g->done++;
    }
    if (g->done >= g->sum) {
        g->active = 0;
        uv_timer_stop(t);
    }
}

int hb_server_generate_send(hb_server_t *server, uint64_t qps, uint64_t sum, uint32_t min_user,
                            uint32_t max_user)
{
    struct hb_server_impl *impl = server->impl;
    if (!impl->started || impl->closing || qps > HB_GENERATE_QPS_MAX || max_user < min_user ||
        max_user - min_user < 2)
        return UV_EINVAL;
    impl->send_gen.min_user = min_user;
    impl->send_gen.max_user = max_user;
    generator_start(&impl->send_gen, server->loop, qps, sum, on_send_tick);
    return 0;
}

/* ---- reaching users ---------------------------------------------------------------------------
 */

int hb_server_send_to_user(hb_server_t *server, uint32_t user, const void *frame, size_t len)
{
    struct hb_server_impl *impl = server->impl;
    if (len < HB_FRAME_HEADER || len > HB_FRAME_MAX || frame == NULL)
        return UV_EINVAL;
    hb_registry_entry_t where;
    if (hb_registry_get(&impl->registry, user, &where) != 0)
        return HB_EOFFLINE;
    hb_set_msg_t m = {.user = user, .gen = where.gen, .len = (uint16_t)len};
    if (len <= HB_MSG_INLINE) {
        m.type = HB_MSG_FRAME;
        memcpy(m.u.bytes, frame, len);
    } else {
        m.type = HB_MSG_FRAME_HEAP;
        m.u.heap = malloc(len);
        if (m.u.heap == NULL)
            return UV_ENOMEM;
        memcpy(m.u.heap, frame, len);
    }
    int r = hb__set_post_external(impl, &impl->sets[where.set], &m);
    if (r != 0 && m.type == HB_MSG_FRAME_HEAP)
        free(m.u.heap);
    return r;
}

hb_counters_t *hb_server_counters(hb_server_t *server)
{
    return &server->impl->counters;
}

size_t hb_server_users_online(hb_server_t *server)
{
    return hb_registry_count(&server->impl->registry);
}

size_t hb_server_connections(hb_server_t *server)
{
    return atomic_load_explicit(&server->impl->nconns, memory_order_relaxed);
}

size_t hb_server_envelopes_queued_in(hb_server_t *server, unsigned set)
{
    return hb_envq_size(&server->impl->envq, set);
}

size_t hb_server_envelopes_queued(hb_server_t *server)
{
    size_t n = 0;
    for (unsigned i = 0; i < server->nsets; i++)
        n += hb_server_envelopes_queued_in(server, i);
    return n;
}

int hb_server_store_error(hb_server_t *server)
{
    return atomic_load_explicit(&server->impl->store_error, memory_order_acquire);
}
