/* The client tests' harness: one loop on the test's thread, run until a condition holds. */
#include "client_harness.h"

#include <check.h>

uv_loop_t loop;
uv_timer_t watch;
static int (*done_when)(void);

static void on_watch(uv_timer_t *t)
{
    if (done_when())
        uv_stop(t->loop);
}

int run_until(int (*cond)(void), uint64_t timeout_ms)
{
    done_when = cond;
    uint64_t end = uv_now(&loop) + timeout_ms;
    uv_timer_start(&watch, on_watch, 5, 5);
    while (!cond() && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&watch);
    return cond();
}

void fail_on_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    ck_abort_msg("handle of type %s left open", uv_handle_type_name(h->type));
}

void loop_finish(void)
{
    uv_close((uv_handle_t *)&watch, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, fail_on_handle, NULL);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
