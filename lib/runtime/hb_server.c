/* The server runtime: options, the listening socket, the worker threads, start and the orderly
 * shutdown, and the public calls that reach users and money. Runs on the caller's (control) loop
 * except the worker thread bodies. The SETs are driven through hb_set.h, money through the store
 * (hb_store.h), the generators live in hb_generator.c and the control routes in
 * hb_server_routes.c. */
#include <errno.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hb_chat.h"
#include "hb_internal.h"
#include "hb_server_int.h"

#define HB_DEFAULT_PORT          1025
#define HB_DEFAULT_MAX_QPS       65000
#define HB_MAX_QPS_LIMIT         16000000 /* the overload counter holds 24 bits */
#define HB_SHAKE_AMOUNT_MIN      10       /* the reference's */
#define HB_SHAKE_AMOUNT_MAX      309
#define HB_SEND_TOTAL_MIN        300
#define HB_SEND_TOTAL_MAX        30000
#define HB_RLIMIT_RESERVE        64
#define HB_DEFAULT_CLOSE_TIMEOUT 5000

void hb_server_options_default(hb_server_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->listen_host = "127.0.0.1";
    o->listen_port = HB_DEFAULT_PORT;
}

/* Record why init or start failed in the handle (err, errstr) and return err. */
static int fail(struct hb_server_impl *impl, int err, const char *fmt, const char *arg)
{
    impl->pub->err = err;
    snprintf(impl->pub->errstr, sizeof impl->pub->errstr, fmt, arg);
    return err;
}

/* An instance's name goes into Redis keys and hash tags: a plain word keeps them apart. */
static int instance_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 100)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && strchr(".:_-", name[i]) == NULL)
            return 0;
    return 1;
}

const char *hb_server_last_error(const hb_server_t *server)
{
    return server->errstr;
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
    if (o->shake_amount_min == 0 && o->shake_amount_max == 0) {
        o->shake_amount_min = HB_SHAKE_AMOUNT_MIN;
        o->shake_amount_max = HB_SHAKE_AMOUNT_MAX;
    }
    if (o->shake_amount_min == 0 || o->shake_amount_max < o->shake_amount_min)
        return fail(impl, UV_EINVAL,
                    "shake amounts: shake_amount_min must be 1..shake_amount_max%s", "");
    if (o->send_recipients == 0)
        o->send_recipients = HB_NOTICE_RECIPIENTS;
    if (o->send_recipients > HB_SEND_MAX_RECIPIENTS)
        return fail(impl, UV_EINVAL, "send_recipients above HB_SEND_MAX_RECIPIENTS (8)%s", "");
    if (o->send_total_min == 0 && o->send_total_max == 0) {
        o->send_total_min = HB_SEND_TOTAL_MIN;
        o->send_total_max = HB_SEND_TOTAL_MAX;
    }
    if (o->send_total_min < o->send_recipients || o->send_total_max < o->send_total_min)
        return fail(impl, UV_EINVAL,
                    "send totals: send_total_min must be send_recipients..send_total_max%s", "");
    struct rlimit rl;
    uint64_t fds = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        fds = rl.rlim_cur;
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        fds = 1u << 20;
    uint64_t room = fds > HB_RLIMIT_RESERVE + o->threads ? fds - HB_RLIMIT_RESERVE - o->threads : 1;
    if (o->max_connections == 0 || o->max_connections > room)
        o->max_connections = (uint32_t)(room > UINT32_MAX ? UINT32_MAX : room);
    if (o->redis != NULL && o->ledger_dir != NULL)
        return fail(impl, UV_EINVAL, "redis and ledger_dir: money lives in one place%s", "");
    if (o->redis != NULL && (o->redis[0] == '\0' || strlen(o->redis) >= 512))
        return fail(impl, UV_EINVAL, "redis: give some nodes as host:port,...%s", "");
    if (o->redis_lease_ms != 0 && o->redis_lease_ms < 600)
        return fail(impl, UV_EINVAL, "redis_lease_ms below 600%s", "");
    if (o->instance != NULL && !instance_name_ok(o->instance))
        return fail(impl, UV_EINVAL,
                    "instance '%s': 1 to 100 letters, digits and . : _ - (it names Redis keys)",
                    o->instance);
    if (o->seed == 0)
        o->seed = uv_hrtime();
    return 0;
}

/* The store the options ask for: Redis for a fleet, else the local books and journal. */
static int init_store(struct hb_server_impl *impl)
{
    const hb_server_options_t *o = &impl->opts;
    if (o->redis == NULL)
        return hb__store_local_init(&impl->store, &impl->group, o->ledger_dir, (int)o->fsync,
                                    o->send_expiry_s, &impl->rng);
#ifdef HB_HAVE_REDIS
    char name[sizeof impl->host + 8];
    if (o->instance == NULL)
        snprintf(name, sizeof name, "%s:%d", impl->host, o->listen_port);
    hb_store_redis_options_t ro = {.seeds = o->redis,
                                   .instance = o->instance != NULL ? o->instance : name,
                                   .replicas = o->redis_replicas,
                                   .timeout_ms = o->redis_timeout_ms,
                                   .lease_ms = o->redis_lease_ms,
                                   .generator = o->generator,
                                   .amount_min = o->shake_amount_min,
                                   .amount_max = o->shake_amount_max,
                                   .send_expiry_s = o->send_expiry_s};
    return hb__store_redis_init(&impl->store, &impl->group, impl->pub->loop, &ro, &impl->rng);
#else
    return fail(impl, UV_ENOTSUP, "redis: this libhongbao was built without hiredis%s", "");
#endif
}

/* Keep a copy of the name of opts.nic, read at hb_server_start. */
static int settle_nic(struct hb_server_impl *impl)
{
    const char *nic = impl->opts.nic;
    if (nic == NULL)
        return 0;
    if (strlen(nic) >= sizeof impl->nic_name)
        return fail(impl, UV_EINVAL, "network interface name '%s' is too long", nic);
    strcpy(impl->nic_name, nic);
    impl->opts.nic = impl->nic_name;
    return 0;
}

static void on_phase_done(hb_setgroup_t *g);

/* What the SETs are given (hb_set.h). */
static void fill_group(struct hb_server_impl *impl)
{
    hb_setgroup_t *g = &impl->group;
    const hb_server_options_t *o = &impl->opts;
    g->max_output = o->max_output;
    g->login_timeout_ms = o->login_timeout_ms;
    g->max_conn_qps = o->max_conn_qps;
    g->close_timeout_ms = o->close_timeout_ms;
    g->max_connections = o->max_connections;
    g->max_qps = o->max_qps;
    g->limit_users = o->limit_users;
    g->min_user = o->min_user;
    g->max_user = o->max_user;
    g->queue_capacity = o->queue_capacity;
    g->nworkers = o->threads;
    g->nsets = o->sets;
    g->registry = &impl->registry;
    g->on_conn_close = o->on_conn_close;
    g->conn_arg = o->conn_arg;
    g->envq = &impl->envq;
    g->counters = &impl->counters;
    g->store = &impl->store;
    g->handlers = impl->handlers;
    g->nhandlers = &impl->nhandlers;
    g->owner = impl->pub;
    g->phase_done = on_phase_done;
    g->log = o->log;
    g->log_arg = o->log_arg;
}

int hb_server_init(uv_loop_t *loop, hb_server_t *server, const hb_server_options_t *opts)
{
    if (loop == NULL || server == NULL)
        return UV_EINVAL;
    memset(server, 0, sizeof *server);
    struct hb_server_impl *impl = calloc(1, sizeof *impl);
    if (impl == NULL)
        return UV_ENOMEM;
    server->impl = impl;
    server->loop = loop;
    impl->pub = server;
    impl->listen_fd = -1;
    int r = settle_options(impl, opts);
    if (r == 0)
        r = settle_nic(impl);
    if (r != 0)
        goto fail_impl;
    server->nthreads = impl->opts.threads;
    server->nsets = impl->opts.sets;
    server->max_connections = impl->opts.max_connections;
    hb_rand_seed(&impl->rng, impl->opts.seed);
    hb_server_handle(server, HB_CMD_CHAT, hb__chat_handler, NULL);

    r = hb_envq_init(&impl->envq, server->nsets, impl->opts.bucket_capacity);
    if (r != 0)
        goto fail_impl;
    r = hb_registry_init(&impl->registry, 64, 16384);
    if (r != 0)
        goto fail_envq;
    r = hb_counters_init(&impl->counters, server->nthreads + 1, HB_REPORTER_SERVER);
    if (r != 0)
        goto fail_registry;
    fill_group(impl);
    r = hb__group_init(&impl->group);
    if (r != 0)
        goto fail_counters;
    r = init_store(impl);
    if (r != 0)
        goto fail_group;
    r = impl->store.ops->open(&impl->store);
    if (r != 0) {
        fail(impl, r, "%s", impl->store.errstr[0] ? impl->store.errstr : hb_strerror(r));
        /* A store that ends later (its handles on this loop) touches nothing of ours meanwhile. */
        (void)impl->store.ops->close(&impl->store);
        goto fail_group;
    }
    impl->store_open = 1;
    return 0;

fail_group:
    hb__group_free(&impl->group);
fail_counters:
    hb_counters_close(&impl->counters);
fail_registry:
    hb_registry_close(&impl->registry);
fail_envq:
    hb_envq_close(&impl->envq);
fail_impl:
    if (server->errstr[0] == '\0')
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

static void worker_thread(void *arg)
{
    hb_worker_t *w = arg;
    hb__worker_main(w);
    struct hb_server_impl *impl = ((hb_server_t *)w->group->owner)->impl;
    atomic_fetch_add_explicit(&impl->workers_done, 1, memory_order_release);
    uv_async_send(&impl->control_async);
}

static void on_control_async(uv_async_t *a);

static void nic_log(void *arg, const char *line)
{
    hb__group_log(arg, "%s", line);
}

/* Count the NIC's rates into the control loop's shard: opts.nic, or the listen address's
 * interface (best effort). Returns 0, or why a named interface cannot be read. */
static int start_nic(struct hb_server_impl *impl)
{
    const char *nic = impl->opts.nic;
    char name[HB_NETDEV_NAME_MAX];
    if (nic != NULL && nic[0] == '\0')
        return 0;
    if (nic == NULL && hb_netstat_interface_for(impl->host, name, sizeof name) != 0) {
        hb__group_log(&impl->group, "no network interface found for %s: NIC rates not counted",
                      impl->host);
        return 0;
    }
    hb_netstat_options_t no = {.interface = nic != NULL ? nic : name,
                               .shard = impl->opts.threads,
                               .log = nic_log,
                               .log_arg = &impl->group};
    int r = hb_netstat_init(impl->pub->loop, &impl->nic, &impl->counters, &no);
    if (r != 0 && nic != NULL) {
        char what[96];
        snprintf(what, sizeof what, "'%s': %s", nic, hb_strerror(r));
        return fail(impl, r, "cannot count network interface %s", what);
    }
    if (r != 0) {
        hb__group_log(&impl->group, "network interface %s: %s: NIC rates not counted", name,
                      hb_strerror(r));
        return 0;
    }
    impl->nic.data = impl;
    impl->nic_open = 1;
    impl->control_handles++;
    return hb_netstat_start(&impl->nic);
}

int hb_server_start(hb_server_t *server)
{
    struct hb_server_impl *impl = server->impl;
    hb_setgroup_t *g = &impl->group;
    if (impl->started)
        return UV_EBUSY;
    impl->started = 1;
    int r = uv_async_init(server->loop, &impl->control_async, on_control_async);
    if (r != 0)
        return r;
    impl->control_async.data = impl;
    impl->control_open = 1;
    impl->control_handles++;
    hb__generators_init(impl);
    impl->control_handles += 2;

    int port = impl->opts.listen_port;
    char what[96];
    if (impl->opts.reuse_port) {
        for (unsigned i = 0; i < g->nworkers && r == 0; i++)
            r = hb__sock_listen_fd(impl->host, port, HB_LISTEN_BACKLOG, 1, &g->workers[i].listen_fd,
                                   &port);
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
    r = start_nic(impl);
    if (r != 0)
        return r;
    for (unsigned i = 0; i < g->nworkers; i++) {
        hb_worker_t *w = &g->workers[i];
        int shared = impl->listen_fd >= 0;
        r = hb__worker_prepare(w, shared ? impl->listen_fd : w->listen_fd, !shared);
        if (r != 0)
            return fail(impl, r, "worker set-up failed: %s", uv_strerror(r));
    }
    for (unsigned i = 0; i < g->nworkers; i++) {
        hb_worker_t *w = &g->workers[i];
        r = uv_thread_create(&w->thread, worker_thread, w);
        if (r != 0)
            return fail(impl, r, "cannot start a worker thread: %s", uv_strerror(r));
        w->thread_started = 1;
    }
    return 0;
}

/* ---- shutdown ----------------------------------------------------------------------------------
 * hb_server_close posts phase 1 to every SET; each later phase goes out once every SET has
 * acknowledged the one before (hb_set.c says what each does). After phase 4 the workers' loops
 * end; then the store is closed, the callback runs, and the memory is freed. */

static void on_phase_done(hb_setgroup_t *g)
{
    struct hb_server_impl *impl = ((hb_server_t *)g->owner)->impl;
    atomic_fetch_add_explicit(&impl->phase_acks, 1, memory_order_acq_rel);
    uv_async_send(&impl->control_async);
}

static void post_phase(struct hb_server_impl *impl, unsigned phase, uint64_t target)
{
    impl->phase = phase;
    atomic_store_explicit(&impl->phase_acks, 0, memory_order_release);
    hb__group_post_phase(&impl->group, phase, target);
}

/* Everything the server allocated; the hb_server_t is not touched (the caller may have freed it in
 * its close callback). */
static void free_everything(struct hb_server_impl *impl)
{
    if (impl->listen_fd >= 0)
        close(impl->listen_fd);
    hb__group_free(&impl->group);
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

static void on_nic_closed(hb_netstat_t *ns)
{
    on_control_handle_closed((uv_handle_t *)&(uv_handle_t){.data = ns->data});
}

static void on_store_closed(hb_store_t *st)
{
    on_control_handle_closed((uv_handle_t *)&(uv_handle_t){.data = st->owner});
}

/* Every worker loop has ended (or never ran): join, close their loops and the store, then our own
 * handles. */
static void finish_close(struct hb_server_impl *impl)
{
    hb_setgroup_t *g = &impl->group;
    for (unsigned i = 0; i < g->nworkers; i++) {
        hb_worker_t *w = &g->workers[i];
        if (w->thread_started) {
            uv_thread_join(&w->thread);
            w->thread_started = 0;
            uv_loop_close(&w->loop);
            w->loop_ready = 0;
        } else {
            hb__worker_abandon(w); /* prepared but never run: start failed part way */
        }
    }
    /* A store that ends later counts as one more handle to wait for. */
    int store_later = 0;
    if (impl->store_open) {
        impl->store.owner = impl;
        impl->store.on_closed = on_store_closed;
        store_later = impl->store.ops->close(&impl->store) == 1;
    }
    impl->store_open = 0;
    if (impl->control_handles == 0) {
        /* start was never called: nothing to close on the control loop */
        impl->control_handles = 1 + (unsigned)store_later;
        on_control_handle_closed((uv_handle_t *)&(uv_handle_t){.data = impl});
        return;
    }
    impl->control_handles += (unsigned)store_later;
    uv_close((uv_handle_t *)&impl->control_async, on_control_handle_closed);
    uv_close(hb__generator_handle(&impl->shake_gen), on_control_handle_closed);
    uv_close(hb__generator_handle(&impl->send_gen), on_control_handle_closed);
    if (impl->nic_open)
        hb_netstat_close(&impl->nic, on_nic_closed);
}

static unsigned workers_running(const struct hb_server_impl *impl)
{
    unsigned running = 0;
    for (unsigned i = 0; i < impl->group.nworkers; i++)
        running += impl->group.workers[i].thread_started;
    return running;
}

static void on_control_async(uv_async_t *a)
{
    struct hb_server_impl *impl = a->data;
    if (!impl->closing)
        return;
    if (impl->phase >= 1 && impl->phase < 4 &&
        atomic_load_explicit(&impl->phase_acks, memory_order_acquire) == impl->group.nsets) {
        unsigned next = impl->phase + 1;
        post_phase(impl, next, next == 3 ? impl->store.ops->drain_target(&impl->store) : 0);
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
    if (impl->started)
        hb__generators_stop(impl);
    if (workers_running(impl) == 0) {
        impl->control_open = 0;
        finish_close(impl);
        return;
    }
    post_phase(impl, 1, 0);
}

/* ---- envelopes and users ----------------------------------------------------------------------
 */

int hb_server_send_envelope(hb_server_t *server, const uint32_t *recipients, unsigned count,
                            uint32_t total, uint32_t *id)
{
    struct hb_server_impl *impl = server->impl;
    if (!impl->started || impl->closing)
        return UV_EINVAL;
    return impl->store.ops->create_send(&impl->store, recipients, count, total, id);
}

int hb_server_send_to_user(hb_server_t *server, uint32_t user, const void *frame, size_t len)
{
    if (len < HB_FRAME_HEADER || len > HB_FRAME_MAX || frame == NULL)
        return UV_EINVAL;
    struct hb_server_impl *impl = server->impl;
    int r = hb__set_send_to_user(&impl->group, NULL, user, frame, len);
    if (r == HB_EOFFLINE && impl->store.ops->send_away != NULL) /* a fleet: maybe elsewhere */
        r = impl->store.ops->send_away(&impl->store, user, frame, len);
    return r;
}

int hb_server_add_counter(hb_server_t *server, unsigned slot, const char *name, const char *help)
{
    struct hb_server_impl *impl = server->impl;
    if (impl->started)
        return UV_EBUSY;
    return hb_counter_names_add(&impl->counter_names, HB_REPORTER_SERVER, slot, name, help);
}

const hb_counter_names_t *hb_server_counter_names(const hb_server_t *server)
{
    return &server->impl->counter_names;
}

hb_counters_t *hb_server_counters(hb_server_t *server)
{
    return &server->impl->counters;
}

const char *hb_server_nic(const hb_server_t *server)
{
    return server->impl->nic_open ? server->impl->nic.interface : "";
}

size_t hb_server_users_online(hb_server_t *server)
{
    return hb_registry_count(&server->impl->registry);
}

size_t hb_server_connections(hb_server_t *server)
{
    return atomic_load_explicit(&server->impl->group.nconns, memory_order_acquire);
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
    return server->impl->store.ops->error(&server->impl->store);
}
