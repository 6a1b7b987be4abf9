/* The load client's pacer: when this process's own users send. It walks the fleet's schedule
 * (hongbao/sched.h) over this process's range of users only (hb_sched_range_t) and sleeps until
 * the next of those sends is due, to the microsecond (a CLOCK_REALTIME timerfd polled by the
 * loop), then hands every send due by then to its owner. A send due within spin_us of the end of
 * a wake-up is waited for awake instead: the loop keeps polling without sleeping (an idle handle),
 * so the send leaves at its microsecond without a timer's wake-up lateness, and replies are read
 * as they come. It knows nothing of connections.
 * Internal: not installed. Everything runs on the loop's thread. */
#ifndef HB_CLIENT_PACER_H
#define HB_CLIENT_PACER_H

#include <stdint.h>

#include <uv.h>

#include "hongbao/sched.h"

/* Linux has a timer to the nanosecond that the loop can poll; elsewhere (or built with
 * -DHB_PACER_MS_TIMER) the pacer uses a libuv timer, to the millisecond. */
#if defined(__linux__) && !defined(HB_PACER_MS_TIMER)
#define HB__PACER_TIMERFD 1
#endif

typedef struct hb__pacer hb__pacer_t;

/* A send is due: user's send intended at Unix microsecond at_us (now or a little before). */
typedef void (*hb__pacer_due_cb)(void *arg, uint64_t user, uint64_t at_us);

struct hb__pacer {
    /* read-only */
    hb_sched_t sched;     /* the fleet's schedule, at its current rate */
    uint64_t rate_from_s; /* a rate change takes effect at this second ... */
    uint64_t rate_qps;    /* ... to this rate, while rate_pending */
    int rate_pending;
    /* public: set after init */
    uint64_t *wakeups;    /* the owner's count of the timer's wake-ups (NULL: none) */
    uint64_t coalesce_us; /* wake-ups to send at least this far apart (0: each at its own time) */
    uint64_t spin_us;     /* a send due within this long is waited for awake (0: always asleep) */
    uint64_t *spins;      /* the owner's count of sends waited for awake (NULL: none) */
    /* private */
    hb_sched_range_t range; /* the walk over this process's users */
    uint64_t *order;        /* the walk's array: one entry a user */
    uint64_t next_user;     /* the walk's next send, taken from it: its user ... */
    uint64_t next_us;       /* ... and its intended time (UINT64_MAX: none, qps 0) */
    uint64_t armed_us;      /* what the timer is set to (UINT64_MAX: disarmed) */
    uint64_t woke_us;       /* when the latest wake-up began */
    hb__pacer_due_cb due;
    void *arg;
    void (*closed)(hb__pacer_t *p);
    int started;
    int closing;    /* handles whose close callback is still to come */
    uv_idle_t idle; /* active while waiting awake (the loop polls without sleeping); .data: p */
#ifdef HB__PACER_TIMERFD
    uv_poll_t poll; /* around tfd; poll.data is the pacer */
    int tfd;
#else
    uv_timer_t timer; /* millisecond resolution: where there is no timerfd */
#endif
};

/* Prepare a pacer for users first..first + count - 1 of a fleet of users at qps (the schedule of
 * hb_sched_init(users, qps, 0)). due is called for each send when it is due, once started.
 * Returns 0, UV_EINVAL (out of the schedule's ranges), UV_ENOMEM, or the error of creating the
 * timer; on error nothing needs closing. Otherwise hb__pacer_close must be called. */
int hb__pacer_init(uv_loop_t *loop, hb__pacer_t *p, uint64_t users, uint64_t qps, uint64_t first,
                   uint64_t count, hb__pacer_due_cb due, void *arg);

/* Start at the first send at or after Unix millisecond now_ms. */
void hb__pacer_start(hb__pacer_t *p, uint64_t now_ms);

/* Change the fleet's rate from second from_s on (replacing a change not yet in effect). Returns
 * 0, or UV_EINVAL (from_s before the current rate's first second, or qps out of range). */
int hb__pacer_set_rate(hb__pacer_t *p, uint64_t qps, uint64_t from_s);

/* The rate in effect, or the one pending. */
uint64_t hb__pacer_rate(const hb__pacer_t *p);

/* Stop and close; closed (not NULL) is called from the loop, after which p may be freed. */
void hb__pacer_close(hb__pacer_t *p, void (*closed)(hb__pacer_t *p));

#endif /* HB_CLIENT_PACER_H */
