/* The server runtime: worker threads and their listeners, start and orderly shutdown, the
 * envelope generators and the control routes. Runs on the caller's (control) loop except the
 * worker thread bodies. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "hongbao/envelope.h"
#include "hb_server_int.h"

#define HB_DEFAULT_PORT      1025
#define HB_DEFAULT_MAX_QPS   65000
#define HB_MAX_QPS_LIMIT     16000000 /* the overload counter holds 24 bits */
#define HB_GENERATOR_TICK_MS 2
#define HB_SHAKE_AMOUNT_MIN  10
#define HB_SHAKE_AMOUNT_MAX  309
#define HB_SEND_TOTAL_MIN    300
#define HB_SEND_TOTAL_MAX    30000
#define HB_GENERATE_QPS_MAX  10000000
#define HB_RLIMIT_RESERVE    64

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
    if (o->max_user != 0 && o->max_user < o->min_user)
        return fail(impl, UV_EINVAL, "max user below min user%s", "");
    if (o->max_conn_qps == 0)
        o->max_conn_qps = 1000;
    if (o->max_conn_qps > 30000 && o->max_conn_qps != UINT32_MAX)
        return fail(impl, UV_EINVAL, "max_conn_qps above 30,000: use UINT32_MAX for no limit%s",
                    "");
    if (o->login_timeout_ms == 0)
        o->login_timeout_ms = 10000;
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

/* Replay: each outstanding send-envelope goes back into the book of the SET owning its id. */
static void restore_envelope(void *arg, const hb_sendenv_t *e)
{
    struct hb_server_impl *impl = arg;
    hb_book_add(&impl->sets[e->id % impl->pub->nsets].book, e);
}

/* On the ledger's writer thread: records up to seq are durable; wake the SETs holding replies. */
static void on_ledger_durable(void *arg, uint64_t seq)
{
    struct hb_server_impl *impl = arg;
    atomic_store_explicit(&impl->durable_seq, seq, memory_order_release);
    hb_set_msg_t m = {.type = HB_MSG_DURABLE};
    uv_mutex_lock(&impl->durable_lock);
    for (unsigned i = 0; i < impl->pub->nsets && !impl->stopping_sets; i++)
        if (atomic_load_explicit(&impl->sets[i].held_waiting, memory_order_acquire) > 0)
            hb__set_post(&impl->sets[i], &m, 1);
    uv_mutex_unlock(&impl->durable_lock);
}

static void ledger_log(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "hongbao ledger: %s\n", line);
}

static int open_ledger(struct hb_server_impl *impl)
{
    hb_ledger_options_t lo;
    memset(&lo, 0, sizeof lo);
    lo.dir = impl->opts.ledger_dir;
    lo.fsync = impl->opts.fsync;
    lo.log = ledger_log;
    lo.on_durable = on_ledger_durable;
    lo.durable_arg = impl;
    int r = hb_ledger_open(&impl->ledger, &lo, restore_envelope, impl);
    if (r != 0)
        return fail(impl, r, "ledger: %s", hb_ledger_last_error());
    impl->have_ledger = 1;
    if (impl->ledger.max_envelope_id >= impl->next_send_id)
        impl->next_send_id = impl->ledger.max_envelope_id + 1;
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
    if (uv_mutex_init(&impl->durable_lock) != 0) {
        free(impl);
        server->impl = NULL;
        return UV_ENOMEM;
    }
    int r = settle_options(impl, opts);
    if (r != 0)
        goto fail_impl;
    server->nthreads = impl->opts.threads;
    server->nsets = impl->opts.sets;
    server->max_connections = impl->opts.max_connections;
    hb_rand_seed(&impl->rng, impl->opts.seed);
    hb_server_handle(server, HB_CMD_CHAT, hb__chat_handler, NULL);
    impl->next_shake_id = HB_SHAKE_ENVELOPE_ID_BASE;
    impl->next_send_id = HB_SEND_ENVELOPE_ID_BASE;

    r = hb_envq_init(&impl->envq, server->nsets, impl->opts.bucket_capacity);
    if (r != 0)
        goto fail_impl;
    r = hb_registry_init(&impl->registry, 64, 16384);
    if (r != 0)
        goto fail_envq;
    r = hb_counters_init(&impl->counters, server->nthreads + 1, HB_REPORTER_SERVER);
    if (r != 0)
        goto fail_registry;
    impl->workers = calloc(server->nthreads, sizeof *impl->workers);
    impl->sets = calloc(server->nsets, sizeof *impl->sets);
    if (impl->workers == NULL || impl->sets == NULL) {
        r = UV_ENOMEM;
        goto fail_arrays;
    }
    unsigned per = server->nsets / server->nthreads;
    unsigned made = 0;
    for (unsigned i = 0; i < server->nthreads; i++) {
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
    if (impl->opts.ledger_dir != NULL) {
        r = open_ledger(impl);
        if (r != 0)
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
    uv_mutex_destroy(&impl->durable_lock);
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

/* ---- listening sockets
 * ---------------------------------------------------------------------------- */

static int open_listener(struct hb_server_impl *impl, int *port, int *fd_out)
{
    struct sockaddr_storage ss;
    int r;
    memset(&ss, 0, sizeof ss);
    if (strchr(impl->host, ':') != NULL)
        r = uv_ip6_addr(impl->host, *port, (struct sockaddr_in6 *)&ss);
    else
        r = uv_ip4_addr(impl->host, *port, (struct sockaddr_in *)&ss);
    if (r != 0)
        return fail(impl, UV_EINVAL, "listen host '%s' is not an IP address", impl->host);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fail(impl, -errno, "socket: %s", strerror(errno));
    int one = 1;
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, HB_LISTEN_BACKLOG) != 0) {
        r = -errno;
        close(fd);
        char what[96];
        snprintf(what, sizeof what, "%s:%d: %s", impl->host, *port, strerror(-r));
        return fail(impl, r, "cannot listen on %s", what);
    }
    if (*port == 0) {
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    }
    *fd_out = fd;
    return 0;
}

/* ---- workers
 * ---------------------------------------------------------------------------------------- */

static void on_worker_handle_closed(uv_handle_t *h)
{
    hb_worker_t *w = h->data;
    w->open_handles--;
}

static void on_stop(uv_async_t *a)
{
    hb_worker_t *w = a->data;
    if (w->stopping)
        return;
    w->stopping = 1;
    uv_close((uv_handle_t *)&w->listener, on_worker_handle_closed);
    for (unsigned i = 0; i < w->nsets; i++) {
        hb_set_t *set = &w->impl->sets[w->first_set + i];
        hb__set_shutdown_conns(set);
        hb__set_close_handles(set);
    }
    uv_close((uv_handle_t *)&w->stop_async, on_worker_handle_closed);
}

static void worker_main(void *arg)
{
    hb_worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_fetch_add_explicit(&w->impl->workers_done, 1, memory_order_release);
    uv_async_send(&w->impl->done_async);
}

static int worker_prepare(hb_worker_t *w)
{
    int r = uv_loop_init(&w->loop);
    if (r != 0)
        return r;
    w->loop_ready = 1;
    w->readbuf = malloc(HB_SET_READ_BUF);
    if (w->readbuf == NULL)
        return UV_ENOMEM;
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    w->open_handles++;
    r = uv_tcp_open(&w->listener, w->listen_fd);
    if (r == 0) {
        w->listen_fd = -1; /* the handle owns it now */
        r = uv_listen((uv_stream_t *)&w->listener, HB_LISTEN_BACKLOG, hb__worker_on_connection);
    }
    if (r != 0)
        return r;
    uv_async_init(&w->loop, &w->stop_async, on_stop);
    w->stop_async.data = w;
    w->open_handles++;
    for (unsigned i = 0; i < w->nsets; i++) {
        r = hb__set_start(&w->impl->sets[w->first_set + i]);
        if (r != 0)
            return r;
    }
    return 0;
}

static void on_done_async(uv_async_t *a);

int hb_server_start(hb_server_t *server)
{
    struct hb_server_impl *impl = server->impl;
    if (impl->started)
        return UV_EBUSY;
    impl->started = 1;
    int r = uv_async_init(server->loop, &impl->done_async, on_done_async);
    if (r != 0)
        return r;
    impl->done_async.data = impl;
    impl->control_handles++;
    uv_timer_init(server->loop, &impl->shake_gen.timer);
    uv_timer_init(server->loop, &impl->send_gen.timer);
    impl->shake_gen.timer.data = impl;
    impl->send_gen.timer.data = impl;
    impl->control_handles += 2;

    int port = impl->opts.listen_port;
    for (unsigned i = 0; i < server->nthreads; i++) {
        r = open_listener(impl, &port, &impl->workers[i].listen_fd);
        if (r != 0)
            return r;
    }
    server->port = port;
    for (unsigned i = 0; i < server->nthreads; i++) {
        r = worker_prepare(&impl->workers[i]);
        if (r != 0)
            return fail(impl, r, "worker set-up failed: %s", uv_strerror(r));
    }
    for (unsigned i = 0; i < server->nthreads; i++) {
        hb_worker_t *w = &impl->workers[i];
        r = uv_thread_create(&w->thread, worker_main, w);
        if (r != 0)
            return fail(impl, r, "cannot start a worker thread: %s", uv_strerror(r));
        w->thread_started = 1;
    }
    return 0;
}

/* ---- shutdown
 * ---------------------------------------------------------------------------------------- */

static void free_everything(struct hb_server_impl *impl)
{
    hb_server_t *server = impl->pub;
    if (impl->have_ledger)
        hb_ledger_close(&impl->ledger); /* flush and sync what the workers journaled */
    uv_mutex_destroy(&impl->durable_lock);
    for (unsigned i = 0; i < server->nthreads; i++) {
        hb_worker_t *w = &impl->workers[i];
        if (w->listen_fd >= 0)
            close(w->listen_fd);
        free(w->readbuf);
    }
    for (unsigned i = 0; i < server->nsets; i++)
        hb__set_free(&impl->sets[i]);
    free(impl->workers);
    free(impl->sets);
    hb_counters_close(&impl->counters);
    hb_registry_close(&impl->registry);
    hb_envq_close(&impl->envq);
}

static void on_control_handle_closed(uv_handle_t *h)
{
    struct hb_server_impl *impl = h->data;
    if (--impl->control_handles > 0)
        return;
    hb_server_t *server = impl->pub;
    hb_server_close_cb cb = impl->close_cb;
    free_everything(impl);
    free(impl);
    server->impl = NULL;
    if (cb != NULL)
        cb(server);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Every worker loop has ended (or never ran): join, close their loops, then our own handles. */
static void finish_close(struct hb_server_impl *impl)
{
    hb_server_t *server = impl->pub;
    for (unsigned i = 0; i < server->nthreads; i++) {
        hb_worker_t *w = &impl->workers[i];
        if (w->thread_started) {
            uv_thread_join(&w->thread);
        } else if (w->loop_ready) {
            /* Prepared but never run (start failed part way): close its handles here. */
            uv_walk(&w->loop, close_walk_cb, NULL);
            uv_run(&w->loop, UV_RUN_DEFAULT);
        }
        if (w->loop_ready)
            uv_loop_close(&w->loop);
    }
    if (impl->control_handles == 0) {
        /* start was never called: nothing to close on the control loop */
        impl->control_handles = 1;
        on_control_handle_closed((uv_handle_t *)&(uv_handle_t){.data = impl});
        return;
    }
    uv_close((uv_handle_t *)&impl->done_async, on_control_handle_closed);
    uv_close((uv_handle_t *)&impl->shake_gen.timer, on_control_handle_closed);
    uv_close((uv_handle_t *)&impl->send_gen.timer, on_control_handle_closed);
}

static void on_done_async(uv_async_t *a)
{
    struct hb_server_impl *impl = a->data;
    unsigned running = 0;
    for (unsigned i = 0; i < impl->pub->nthreads; i++)
        running += impl->workers[i].thread_started;
    if (impl->closing && atomic_load_explicit(&impl->workers_done, memory_order_acquire) == running)
        finish_close(impl);
}

void hb_server_close(hb_server_t *server, hb_server_close_cb cb)
{
    struct hb_server_impl *impl = server->impl;
    if (impl == NULL || impl->closing)
        return;
    impl->closing = 1;
    impl->close_cb = cb;
    impl->shake_gen.active = impl->send_gen.active = 0;
    /* From now on the ledger's writer no longer wakes the SETs (their handles are closing). The
     * journal itself is flushed and closed once the workers have stopped. */
    uv_mutex_lock(&impl->durable_lock);
    impl->stopping_sets = 1;
    uv_mutex_unlock(&impl->durable_lock);
    unsigned running = 0;
    for (unsigned i = 0; i < server->nthreads; i++) {
        if (impl->workers[i].thread_started) {
            uv_async_send(&impl->workers[i].stop_async);
            running++;
        }
    }
    if (running == 0)
        finish_close(impl);
    /* else on_done_async finishes once the last worker has ended */
}

/* ---- envelopes
 * ---------------------------------------------------------------------------------------- */

static void count_control(struct hb_server_impl *impl, unsigned slot, uint64_t delta)
{
    hb_counters_add(&impl->counters, hb__control_shard(impl), slot, hb__now_s(), delta);
}

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
        hb_envelope_t e = {
            impl->next_shake_id,
            (uint32_t)hb_rand_range(&impl->rng, HB_SHAKE_AMOUNT_MIN, HB_SHAKE_AMOUNT_MAX)};
        if (hb_envq_push(&impl->envq, e, NULL) != 0) {
            /* Every bucket is full: count it, keep the envelope for the next tick. */
            count_control(impl, HB_CTR_X_ENVQ_FULL, 1);
            break;
        }
        impl->next_shake_id++;
        g->done++;
        count_control(impl, HB_CTR_SHAKE_ENVELOPES, 1);
        count_control(impl, HB_CTR_SHAKE_AMOUNT_ISSUED, e.amount);
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

static void notify(struct hb_server_impl *impl, const hb_sendenv_t *e)
{
    hb_msg_t n = {.cmd = HB_CMD_NOTICE, .timestamp = hb__now_s()};
    n.u.notice.envelope_id = e->id;
    n.u.notice.total_amount = e->total;
    n.u.notice.recipient_count = HB_NOTICE_RECIPIENTS;
    memcpy(n.u.notice.user_ids, e->recipients, sizeof e->recipients);
    hb_set_msg_t m = {.type = HB_MSG_FRAME};
    int len = hb_msg_encode(&n, m.u.bytes, sizeof m.u.bytes);
    m.len = (uint16_t)len;
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS; i++) {
        hb_registry_entry_t where;
        if (hb_registry_get(&impl->registry, e->recipients[i], &where) != 0) {
            count_control(impl, HB_CTR_X_NOTICE_OFFLINE, 1);
            continue;
        }
        m.user = e->recipients[i];
        m.gen = where.gen;
        hb__set_post(&impl->sets[where.set], &m, 1);
    }
}

static int create_send_envelope(struct hb_server_impl *impl, const uint32_t recipients[3],
                                uint32_t total, uint32_t *id)
{
    hb_sendenv_t e;
    memset(&e, 0, sizeof e);
    if (recipients[0] == recipients[1] || recipients[0] == recipients[2] ||
        recipients[1] == recipients[2])
        return UV_EINVAL;
    int r = hb_envelope_split(total, HB_NOTICE_RECIPIENTS, &impl->rng, e.shares);
    if (r != 0)
        return UV_EINVAL;
    e.id = impl->next_send_id;
    e.total = total;
    e.created_s = hb__now_s();
    memcpy(e.recipients, recipients, sizeof e.recipients);
    /* Journaled before anyone hears of it, so no claim can precede its envelope on disk. */
    if (impl->have_ledger && (r = hb_ledger_append_envelope(&impl->ledger, &e, NULL)) != 0)
        return r;
    hb_set_msg_t m = {.type = HB_MSG_ENVELOPE};
    m.u.env = e;
    /* The owner learns of the envelope before any recipient can claim it. */
    r = hb__set_post(&impl->sets[e.id % impl->pub->nsets], &m, 1);
    if (r != 0)
        return r;
    impl->next_send_id++;
    count_control(impl, HB_CTR_SEND_CREATED, 1);
    count_control(impl, HB_CTR_SEND_AMOUNT_ISSUED, total);
    notify(impl, &e);
    if (id != NULL)
        *id = e.id;
    return 0;
}

int hb_server_send_envelope(hb_server_t *server, const uint32_t recipients[3], uint32_t total,
                            uint32_t *id)
{
    if (!server->impl->started || server->impl->closing)
        return UV_EINVAL;
    return create_send_envelope(server->impl, recipients, total, id);
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
        if (create_send_envelope(impl, who, total, NULL) != 0)
            break;
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

/* ---- reaching users
 * ------------------------------------------------------------------------------------ */

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
    int r = hb__set_post(&impl->sets[where.set], &m, 0);
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

/* ---- counter names
 * ---------------------------------------------------------------------------------- */

static const struct {
    unsigned slot;
    const char *name, *help;
} server_slots[] = {
    {HB_CTR_X_LOGIN_TIMEOUT, "login_timeouts", "Connections closed for not logging in in time"},
    {HB_CTR_X_LOGIN_REFUSED, "login_refused", "Logins refused: user id outside the allowed range"},
    {HB_CTR_X_RATE_LIMITED, "rate_limited", "Requests over a connection's rate limit"},
    {HB_CTR_X_ENVQ_FULL, "envq_full", "Generator ticks that found every bucket full"},
    {HB_CTR_X_BAD_FRAME, "bad_frames", "Connections closed for a malformed or unexpected frame"},
    {HB_CTR_X_SLOW_PEER, "slow_peers", "Connections closed for not draining their output"},
    {HB_CTR_X_CONN_REJECTED, "conn_rejected", "Connections refused past the maximum"},
    {HB_CTR_X_CLAIM_REFUSED, "claims_refused", "Claims that granted nothing"},
    {HB_CTR_X_CHAT, "chat_delivered", "Chat messages handed to the recipient's SET"},
    {HB_CTR_X_CHAT_FAILED, "chat_failed", "Chat messages to an offline user or a full queue"},
    {HB_CTR_X_KICKED, "conn_kicked", "Connections closed by a newer login of the same user"},
    {HB_CTR_X_SEND_EXPIRED, "send_expired", "Send-envelopes expired with shares unclaimed"},
    {HB_CTR_X_NOTICE_OFFLINE, "notice_offline", "Notices not sent: recipient offline"},
};

#define SERVER_SLOTS (sizeof server_slots / sizeof server_slots[0])

const char *hb_server_counter_name(unsigned idx)
{
    for (size_t i = 0; i < SERVER_SLOTS; i++)
        if (server_slots[i].slot == idx)
            return server_slots[i].name;
    return hb_counter_name(idx);
}

/* ---- control routes
 * ------------------------------------------------------------------------------------ */

#define HB_METRICS_BUF 32768

static int want_u64(const hb_http_request_t *req, hb_http_response_t *res, const char *name,
                    uint64_t min, uint64_t max, uint64_t *out)
{
    int r = hb_http_query_u64(req->query, req->query_len, name, min, max, out);
    if (r != 0)
        hb_http_bad_param_range(res, name, r, min, max);
    return r;
}

static void reply_text(hb_http_response_t *res, int status, const char *text)
{
    hb_http_respond(res, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void route_shake(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_server_t *server = arg;
    uint64_t qps, sum;
    if (want_u64(req, res, "qps", 0, HB_GENERATE_QPS_MAX, &qps) != 0 ||
        want_u64(req, res, "sum", 0, UINT32_MAX, &sum) != 0)
        return;
    if (hb_server_generate_shake(server, qps, sum) != 0) {
        reply_text(res, 503, "the server is not running\n");
        return;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "generating %llu shake envelopes at %llu/s\n",
             (unsigned long long)sum, (unsigned long long)qps);
    reply_text(res, 200, msg);
}

static void route_send(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    hb_server_t *server = arg;
    uint64_t qps, sum, min, max;
    if (want_u64(req, res, "qps", 0, HB_GENERATE_QPS_MAX, &qps) != 0 ||
        want_u64(req, res, "sum", 0, UINT32_MAX, &sum) != 0 ||
        want_u64(req, res, "min", 0, UINT32_MAX, &min) != 0 ||
        want_u64(req, res, "max", 0, UINT32_MAX, &max) != 0)
        return;
    if (max < min || max - min < 2) {
        reply_text(res, 400,
                   "parameters 'min' and 'max': need max >= min + 2 (three distinct "
                   "recipients)\n");
        return;
    }
    if (hb_server_generate_send(server, qps, sum, (uint32_t)min, (uint32_t)max) != 0) {
        reply_text(res, 503, "the server is not running\n");
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "generating %llu send-envelopes at %llu/s for users %llu..%llu\n",
             (unsigned long long)sum, (unsigned long long)qps, (unsigned long long)min,
             (unsigned long long)max);
    reply_text(res, 200, msg);
}

/* The buffer /metrics and /stats render into (freed by the caller) and the snapshot of the last
 * whole second they show; NULL (after answering 500) when out of memory. */
static char *render_start(hb_server_t *server, hb_http_response_t *res, hb_report_t *rep)
{
    char *buf = malloc(HB_METRICS_BUF);
    if (buf == NULL)
        reply_text(res, 500, "out of memory\n");
    else
        hb_counters_snapshot(&server->impl->counters, hb__now_s() - 1, rep);
    return buf;
}

static void route_metrics(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    hb_server_t *server = arg;
    hb_report_t rep;
    char *buf = render_start(server, res, &rep);
    if (buf == NULL)
        return;
    int n = hb_report_format_prometheus(&rep, "hongbao", buf, HB_METRICS_BUF);
    for (size_t i = 0; i < SERVER_SLOTS && n >= 0; i++) {
        unsigned k = server_slots[i].slot;
        int m = snprintf(
            buf + n, HB_METRICS_BUF - (size_t)n,
            "# HELP hongbao_%s_total %s, cumulative.\n# TYPE hongbao_%s_total counter\n"
            "hongbao_%s_total %llu\n# HELP hongbao_%s_per_second %s, in the report "
            "second.\n# TYPE hongbao_%s_per_second gauge\nhongbao_%s_per_second %llu\n",
            server_slots[i].name, server_slots[i].help, server_slots[i].name, server_slots[i].name,
            (unsigned long long)rep.cumulative[k], server_slots[i].name, server_slots[i].help,
            server_slots[i].name, server_slots[i].name, (unsigned long long)rep.per_second[k]);
        n = (m > 0 && (size_t)m < HB_METRICS_BUF - (size_t)n) ? n + m : -1;
    }
    if (n >= 0) {
        int m = snprintf(buf + n, HB_METRICS_BUF - (size_t)n,
                         "# HELP hongbao_users_online Users logged in now.\n"
                         "# TYPE hongbao_users_online gauge\nhongbao_users_online %zu\n"
                         "# HELP hongbao_connections Connections open now.\n"
                         "# TYPE hongbao_connections gauge\nhongbao_connections %zu\n"
                         "# HELP hongbao_envelopes_queued Shake envelopes waiting in buckets.\n"
                         "# TYPE hongbao_envelopes_queued gauge\nhongbao_envelopes_queued %zu\n",
                         hb_server_users_online(server), hb_server_connections(server),
                         hb_server_envelopes_queued(server));
        n = (m > 0 && (size_t)m < HB_METRICS_BUF - (size_t)n) ? n + m : -1;
    }
    if (n < 0)
        reply_text(res, 500, "metrics do not fit the buffer\n");
    else
        hb_http_respond(res, 200, "text/plain; version=0.0.4; charset=utf-8", buf, (size_t)n);
    free(buf);
}

static void route_stats(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    hb_server_t *server = arg;
    hb_report_t rep;
    char *buf = render_start(server, res, &rep);
    if (buf == NULL)
        return;
    int n = snprintf(buf, HB_METRICS_BUF,
                     "{\"users_online\":%zu,\"connections\":%zu,\"envelopes_queued\":%zu,"
                     "\"threads\":%u,\"sets\":%u,\"max_connections\":%u,",
                     hb_server_users_online(server), hb_server_connections(server),
                     hb_server_envelopes_queued(server), server->nthreads, server->nsets,
                     server->max_connections);
    for (size_t i = 0; i < SERVER_SLOTS; i++) {
        unsigned k = server_slots[i].slot;
        n += snprintf(buf + n, HB_METRICS_BUF - (size_t)n, "%s\"%s\":[%llu,%llu]",
                      i == 0 ? "\"server_counters\":{" : ",", server_slots[i].name,
                      (unsigned long long)rep.per_second[k], (unsigned long long)rep.cumulative[k]);
    }
    n += snprintf(buf + n, HB_METRICS_BUF - (size_t)n, "},\"report\":");
    int m = hb_report_format_json(&rep, buf + n, HB_METRICS_BUF - (size_t)n - 2);
    if (m < 0) {
        reply_text(res, 500, "stats do not fit the buffer\n");
    } else {
        n += m;
        buf[n++] = '}';
        buf[n++] = '\n';
        hb_http_respond(res, 200, "application/json", buf, (size_t)n);
    }
    free(buf);
}

int hb_server_mount_http(hb_server_t *server, hb_http_server_t *http)
{
    static const struct {
        const char *path;
        hb_http_handler_cb cb;
    } routes[] = {
        {"/yaohongbao", route_shake}, {"/shake-envelopes", route_shake},
        {"/fahongbao", route_send},   {"/send-envelopes", route_send},
        {"/metrics", route_metrics},  {"/stats", route_stats},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int r = hb_http_server_route(http, "GET", routes[i].path, routes[i].cb, server);
        if (r != 0)
            return r;
    }
    return 0;
}
