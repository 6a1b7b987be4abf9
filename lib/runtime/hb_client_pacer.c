/* The load client's pacer: the fleet's schedule walked over this process's own users, and a timer
 * set to the microsecond of the next of their sends (hb_client_pacer.h). */
#include "hb_client_pacer.h"
#include "hb_clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef HB__PACER_TIMERFD
#include <sys/timerfd.h>
#endif

/* At most this many sends a wake-up; a pacer further behind (the process was stopped?) skips
 * ahead to the present rather than sending the backlog in one burst. */
#define MAX_SENDS_PER_WAKE 200000
/* armed_us after the timer fired: set it again whatever the deadline, which also clears the
 * timerfd's expiry (and so its readability). */
#define FIRED (UINT64_MAX - 1)

/* Take the walk's next send as the one to wait for. */
static void take_next(hb__pacer_t *p)
{
    uint64_t k;
    hb_sched_range_next(&p->range, &k, &p->next_user);
    p->next_us = hb_sched_time_us_of(&p->sched, k);
}

/* The next moment something is due: the next send, or a rate change before it. */
static uint64_t deadline(const hb__pacer_t *p)
{
    if (p->rate_pending && p->rate_from_s * 1000000 < p->next_us)
        return p->rate_from_s * 1000000;
    return p->next_us;
}

#ifdef HB__PACER_TIMERFD
static void arm(hb__pacer_t *p, uint64_t at_us)
{
    if (at_us == p->armed_us)
        return;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (at_us != UINT64_MAX) {
        its.it_value.tv_sec = (time_t)(at_us / 1000000);
        its.it_value.tv_nsec = (long)(at_us % 1000000) * 1000;
        if (at_us == 0)
            its.it_value.tv_nsec = 1; /* all zero would disarm */
    }
    /* Cannot fail with a valid descriptor and time; setting it clears an expiry not yet read. */
    (void)timerfd_settime(p->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    p->armed_us = at_us;
}
#else
static void on_timer(uv_timer_t *t);

static void arm(hb__pacer_t *p, uint64_t at_us)
{
    if (at_us == p->armed_us)
        return;
    p->armed_us = at_us;
    if (at_us == UINT64_MAX) {
        uv_timer_stop(&p->timer);
        return;
    }
    /* The loop's clock counts whole milliseconds from a cached reading: bring it up to date and
     * add one, so that the timer never fires before at_us (up to 2 ms after). */
    uv_update_time(p->timer.loop);
    uint64_t now = hb__wall_us();
    uv_timer_start(&p->timer, on_timer, at_us > now ? (at_us - now + 999) / 1000 + 1 : 0, 0);
}
#endif

/* The rate change is due: the schedule moves to it, and the walk is prepared again. */
static void apply_rate(hb__pacer_t *p)
{
    p->rate_pending = 0;
    (void)hb_sched_set_rate(&p->sched, p->rate_qps, p->rate_from_s); /* checked when asked */
    (void)hb_sched_range_init(&p->range, &p->sched, p->range.first, p->range.count, p->order);
    hb_sched_range_seek(&p->range, &p->sched, p->rate_from_s * 1000);
    take_next(p);
}

/* Sleep until at_us, but not before coalesce_us after this wake-up began. */
static void sleep_until(hb__pacer_t *p, uint64_t at_us)
{
    if (at_us != UINT64_MAX && at_us < p->woke_us + p->coalesce_us)
        at_us = p->woke_us + p->coalesce_us;
    arm(p, at_us);
}

static void on_idle(uv_idle_t *h);

/* Wait for at_us awake when it is near (spin_us), else asleep. */
static void wait_until(hb__pacer_t *p, uint64_t at_us)
{
    if (p->spin_us != 0 && at_us != UINT64_MAX && at_us <= hb__wall_us() + p->spin_us) {
        uv_idle_start(&p->idle, on_idle); /* nothing if started */
        if (p->armed_us == FIRED)
            arm(p, UINT64_MAX); /* else a fired timerfd stays readable */
        return;                 /* a timer still armed stays: whichever sees at_us first runs */
    }
    uv_idle_stop(&p->idle); /* nothing if stopped */
    sleep_until(p, at_us);
}

/* Hand over every send due by now_us, then wait for the next. */
static void run(hb__pacer_t *p, uint64_t now_us)
{
    p->woke_us = now_us;
    for (unsigned n = 0; n < MAX_SENDS_PER_WAKE; n++) {
        if (p->rate_pending && now_us >= p->rate_from_s * 1000000 &&
            p->next_us >= p->rate_from_s * 1000000) {
            apply_rate(p);
            continue;
        }
        if (p->next_us > now_us) {
            wait_until(p, deadline(p));
            return;
        }
        uint64_t user = p->next_user, at = p->next_us;
        take_next(p);
        p->due(p->arg, user, at);
        if (!p->started)
            return; /* closed by its owner meanwhile */
    }
    hb_sched_range_seek(&p->range, &p->sched, now_us / 1000);
    take_next(p);
    wait_until(p, deadline(p));
}

/* The loop turns without sleeping while a send is near: send it once due. */
static void on_idle(uv_idle_t *h)
{
    hb__pacer_t *p = h->data;
    uint64_t now = hb__wall_us();
    if (now < deadline(p))
        return;
    if (p->spins != NULL)
        (*p->spins)++;
    run(p, now);
}

#ifdef HB__PACER_TIMERFD
static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    hb__pacer_t *p = h->data;
    if (p->wakeups != NULL)
        (*p->wakeups)++;
    p->armed_us = FIRED;
    run(p, hb__wall_us());
}
#else
static void on_timer(uv_timer_t *t)
{
    hb__pacer_t *p = t->data;
    if (p->wakeups != NULL)
        (*p->wakeups)++;
    p->armed_us = FIRED;
    run(p, hb__wall_us());
}
#endif

int hb__pacer_init(uv_loop_t *loop, hb__pacer_t *p, uint64_t users, uint64_t qps, uint64_t first,
                   uint64_t count, hb__pacer_due_cb due, void *arg)
{
    memset(p, 0, sizeof *p);
    int r = hb_sched_init(&p->sched, users, qps, 0);
    if (r != 0)
        return r;
    if (count == 0 || count > SIZE_MAX / sizeof *p->order)
        return UV_EINVAL;
    p->order = malloc((size_t)count * sizeof *p->order);
    if (p->order == NULL)
        return UV_ENOMEM;
    r = hb_sched_range_init(&p->range, &p->sched, first, count, p->order);
    if (r != 0)
        goto fail;
    p->due = due;
    p->arg = arg;
    p->next_us = UINT64_MAX;
    p->armed_us = UINT64_MAX;
#ifdef HB__PACER_TIMERFD
    p->tfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (p->tfd < 0) {
        r = -errno;
        goto fail;
    }
    r = uv_poll_init(loop, &p->poll, p->tfd);
    if (r != 0) {
        close(p->tfd);
        goto fail;
    }
    p->poll.data = p;
#else
    uv_timer_init(loop, &p->timer); /* cannot fail */
    p->timer.data = p;
#endif
    uv_idle_init(loop, &p->idle); /* cannot fail */
    p->idle.data = p;
    return 0;
fail:
    free(p->order);
    p->order = NULL;
    return r;
}

void hb__pacer_start(hb__pacer_t *p, uint64_t now_ms)
{
    p->started = 1;
    hb_sched_range_seek(&p->range, &p->sched, now_ms);
    take_next(p);
#ifdef HB__PACER_TIMERFD
    uv_poll_start(&p->poll, UV_READABLE, on_poll);
#endif
    arm(p, deadline(p));
}

int hb__pacer_set_rate(hb__pacer_t *p, uint64_t qps, uint64_t from_s)
{
    if (qps > HB_SCHED_MAX_QPS || from_s < p->sched.epoch_s || from_s >= HB_SCHED_MAX_S)
        return UV_EINVAL;
    p->rate_qps = qps;
    p->rate_from_s = from_s;
    p->rate_pending = 1;
    if (p->started)
        arm(p, deadline(p));
    return 0;
}

uint64_t hb__pacer_rate(const hb__pacer_t *p)
{
    return p->rate_pending ? p->rate_qps : p->sched.qps;
}

static void on_closed(uv_handle_t *h)
{
    hb__pacer_t *p = h->data;
    if (--p->closing != 0)
        return; /* the other handle's callback is still to come */
#ifdef HB__PACER_TIMERFD
    close(p->tfd);
#endif
    free(p->order);
    p->order = NULL;
    if (p->closed != NULL)
        p->closed(p);
}

void hb__pacer_close(hb__pacer_t *p, void (*closed)(hb__pacer_t *p))
{
    p->started = 0;
    p->closed = closed;
    p->closing = 2;
    uv_close((uv_handle_t *)&p->idle, on_closed);
#ifdef HB__PACER_TIMERFD
    uv_close((uv_handle_t *)&p->poll, on_closed);
#else
    uv_close((uv_handle_t *)&p->timer, on_closed);
#endif
}
