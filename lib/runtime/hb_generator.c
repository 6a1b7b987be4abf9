/* The envelope generators of the server, on the control loop: shake envelopes paced into the SETs'
 * buckets round-robin (ids from the store), and send-envelopes to random users (created by the
 * store). hb_server_generate_shake and hb_server_generate_send start them;
 * hb_server_put_shake_envelopes queues envelopes of the caller's amounts the same way. */
#include <string.h>

#include "hb_server_int.h"

#define TICK_MS 2

/* How many of count should exist by now at qps, paced by milliseconds since start. */
static uint64_t due_now(const hb_generator_t *g, uint64_t now_ms)
{
    uint64_t elapsed = now_ms - g->start_ms;
    uint64_t due = g->qps * elapsed / 1000 + 1; /* the first goes out at once */
    return due < g->count ? due : g->count;
}

static void finish_if_done(hb_generator_t *g)
{
    if (g->done >= g->count) {
        g->active = 0;
        uv_timer_stop(&g->timer);
    }
}

/* Queue one shake envelope of amount into the buckets, round-robin. Returns 0; HB_EAGAIN when the
 * store has no durable id reservation yet; HB_EIDSPACE or the store's error; UV_ENOBUFS when every
 * bucket is full, or the store's budget holds too many not yet stored (the id taken is kept for
 * the next envelope, so none is wasted). */
static int put_shake(struct hb_server_impl *impl, uint32_t amount)
{
    hb_setgroup_t *group = &impl->group;
    uint32_t id = impl->kept_shake_id;
    int r = id != 0 ? 0 : impl->store.ops->shake_id(&impl->store, &id);
    if (r != 0) {
        hb__group_count_control(group, HB_CTR_X_IDS_WAIT, 1);
        return r;
    }
    /* A store with a shared budget takes it and fills the buckets itself. */
    int refused = impl->store.ops->put_shake != NULL
                      ? impl->store.ops->put_shake(&impl->store, id, amount) != 0
                      : hb_envq_push(&impl->envq, (hb_envelope_t){id, amount}, NULL) != 0;
    if (refused) {
        impl->kept_shake_id = id;
        hb__group_count_control(group, HB_CTR_X_ENVQ_FULL, 1);
        return UV_ENOBUFS;
    }
    impl->kept_shake_id = 0;
    hb__group_count_control(group, HB_CTR_SHAKE_ENVELOPES, 1);
    hb__group_count_control(group, HB_CTR_SHAKE_AMOUNT_ISSUED, amount);
    return 0;
}

static void on_shake_tick(uv_timer_t *t)
{
    struct hb_server_impl *impl = t->data;
    hb_generator_t *g = &impl->shake_gen;
    const hb_server_options_t *o = &impl->opts;
    uint64_t due = due_now(g, uv_now(t->loop));
    while (g->done < due) {
        uint32_t amount =
            (uint32_t)hb_rand_range(&impl->rng, o->shake_amount_min, o->shake_amount_max);
        if (put_shake(impl, amount) != 0)
            break; /* no id yet or every bucket full: the next tick tries again */
        g->done++;
    }
    finish_if_done(g);
}

int hb_server_put_shake_envelopes(hb_server_t *server, const uint32_t *amounts, size_t n,
                                  size_t *queued)
{
    struct hb_server_impl *impl = server->impl;
    if (queued != NULL)
        *queued = 0;
    if (!impl->started || impl->closing || (amounts == NULL && n > 0))
        return UV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (amounts[i] == 0)
            return UV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int r = put_shake(impl, amounts[i]);
        if (r != 0)
            return r;
        if (queued != NULL)
            (*queued)++;
    }
    return 0;
}

/* n distinct users of [min, max] (max - min >= n - 1). */
static void draw_recipients(hb_rand_t *rng, uint32_t min, uint32_t max, uint32_t *who, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int fresh;
        do {
            who[i] = (uint32_t)hb_rand_range(rng, min, max);
            fresh = 1;
            for (unsigned j = 0; j < i; j++)
                fresh &= who[j] != who[i];
        } while (!fresh);
    }
}

static void on_send_tick(uv_timer_t *t)
{
    struct hb_server_impl *impl = t->data;
    hb_generator_t *g = &impl->send_gen;
    const hb_server_options_t *o = &impl->opts;
    uint64_t due = due_now(g, uv_now(t->loop));
    while (g->done < due) {
        uint32_t who[HB_SEND_MAX_RECIPIENTS];
        draw_recipients(&impl->rng, g->min_user, g->max_user, who, o->send_recipients);
        uint32_t total = (uint32_t)hb_rand_range(&impl->rng, o->send_total_min, o->send_total_max);
        if (impl->store.ops->create_send(&impl->store, who, o->send_recipients, total, NULL) != 0) {
            hb__group_count_control(&impl->group, HB_CTR_X_IDS_WAIT, 1);
            break;
        }
        g->done++;
    }
    finish_if_done(g);
}

static void start(hb_generator_t *g, uv_loop_t *loop, uint64_t qps, uint64_t count, uv_timer_cb cb)
{
    uv_timer_stop(&g->timer);
    g->qps = qps;
    g->count = count;
    g->done = 0;
    g->active = qps > 0 && count > 0;
    if (!g->active)
        return;
    uv_update_time(loop);
    g->start_ms = uv_now(loop);
    uv_timer_start(&g->timer, cb, 0, TICK_MS);
}

void hb__generators_init(struct hb_server_impl *impl)
{
    uv_loop_t *loop = impl->pub->loop;
    uv_timer_init(loop, &impl->shake_gen.timer);
    uv_timer_init(loop, &impl->send_gen.timer);
    impl->shake_gen.timer.data = impl;
    impl->send_gen.timer.data = impl;
}

void hb__generators_stop(struct hb_server_impl *impl)
{
    impl->shake_gen.active = impl->send_gen.active = 0;
    uv_timer_stop(&impl->shake_gen.timer);
    uv_timer_stop(&impl->send_gen.timer);
}

uv_handle_t *hb__generator_handle(hb_generator_t *g)
{
    return (uv_handle_t *)&g->timer;
}

int hb_server_generate_shake(hb_server_t *server, uint64_t qps, uint64_t count)
{
    struct hb_server_impl *impl = server->impl;
    if (!impl->started || impl->closing || qps > HB_GENERATE_QPS_MAX)
        return UV_EINVAL;
    if (impl->store.ops->plan_shake != NULL) /* a fleet: the plan of its one generator */
        return impl->store.ops->plan_shake(&impl->store, qps, count);
    start(&impl->shake_gen, server->loop, qps, count, on_shake_tick);
    return 0;
}

int hb_server_generate_send(hb_server_t *server, uint64_t qps, uint64_t count, uint32_t min_user,
                            uint32_t max_user)
{
    struct hb_server_impl *impl = server->impl;
    if (!impl->started || impl->closing || qps > HB_GENERATE_QPS_MAX || max_user < min_user ||
        max_user - min_user < impl->opts.send_recipients - 1)
        return UV_EINVAL;
    impl->send_gen.min_user = min_user;
    impl->send_gen.max_user = max_user;
    start(&impl->send_gen, server->loop, qps, count, on_send_tick);
    return 0;
}
