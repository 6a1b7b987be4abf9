/* The envelope generators of the server, on the control loop: shake envelopes paced into the SETs'
 * buckets round-robin (ids from the store), and send-envelopes to random users (created by the
 * store). hb_server_generate_shake and hb_server_generate_send start them. */
#include <string.h>

#include "hb_server_int.h"

#define TICK_MS          2
#define SHAKE_AMOUNT_MIN 10
#define SHAKE_AMOUNT_MAX 309
#define SEND_TOTAL_MIN   300
#define SEND_TOTAL_MAX   30000

/* How many of sum should exist by now at qps, paced by milliseconds since start. */
static uint64_t due_now(const hb_generator_t *g, uint64_t now_ms)
{
    uint64_t elapsed = now_ms - g->start_ms;
    uint64_t due = g->qps * elapsed / 1000 + 1; /* the first goes out at once */
    return due < g->sum ? due : g->sum;
}

static void finish_if_done(hb_generator_t *g)
{
    if (g->done >= g->sum) {
        g->active = 0;
        uv_timer_stop(&g->timer);
    }
}

static void on_shake_tick(uv_timer_t *t)
{
    struct hb_server_impl *impl = t->data;
    hb_generator_t *g = &impl->shake_gen;
    hb_setgroup_t *group = &impl->group;
    uint64_t due = due_now(g, uv_now(t->loop));
    while (g->done < due) {
        uint32_t id = g->kept_id;
        int r = id != 0 ? 0 : impl->store.ops->shake_id(&impl->store, &id);
        if (r != 0) {
            /* No durable id reservation yet, or no ids left: wait for the next tick. */
            hb__group_count_control(group, HB_CTR_X_IDS_WAIT, 1);
            break;
        }
        hb_envelope_t e = {id,
                           (uint32_t)hb_rand_range(&impl->rng, SHAKE_AMOUNT_MIN, SHAKE_AMOUNT_MAX)};
        if (hb_envq_push(&impl->envq, e, NULL) != 0) {
            /* Every bucket is full: count it, keep the id for the next tick. */
            g->kept_id = id;
            hb__group_count_control(group, HB_CTR_X_ENVQ_FULL, 1);
            break;
        }
        g->kept_id = 0;
        g->done++;
        hb__group_count_control(group, HB_CTR_SHAKE_ENVELOPES, 1);
        hb__group_count_control(group, HB_CTR_SHAKE_AMOUNT_ISSUED, e.amount);
    }
    finish_if_done(g);
}

/* Three distinct users of [min, max]. */
static void draw_recipients(hb_rand_t *rng, uint32_t min, uint32_t max, uint32_t who[3])
{
    for (unsigned i = 0; i < 3; i++) {
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
    uint64_t due = due_now(g, uv_now(t->loop));
    while (g->done < due) {
        uint32_t who[3];
        draw_recipients(&impl->rng, g->min_user, g->max_user, who);
        uint32_t total = (uint32_t)hb_rand_range(&impl->rng, SEND_TOTAL_MIN, SEND_TOTAL_MAX);
        if (impl->store.ops->create_send(&impl->store, who, total, NULL) != 0) {
            hb__group_count_control(&impl->group, HB_CTR_X_IDS_WAIT, 1);
            break;
        }
        g->done++;
    }
    finish_if_done(g);
}

static void start(hb_generator_t *g, uv_loop_t *loop, uint64_t qps, uint64_t sum, uv_timer_cb cb)
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

int hb_server_generate_shake(hb_server_t *server, uint64_t qps, uint64_t sum)
{
    struct hb_server_impl *impl = server->impl;
    if (!impl->started || impl->closing || qps > HB_GENERATE_QPS_MAX)
        return UV_EINVAL;
    start(&impl->shake_gen, server->loop, qps, sum, on_shake_tick);
    return 0;
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
    start(&impl->send_gen, server->loop, qps, sum, on_send_tick);
    return 0;
}
