/* Unit tests for the aggregate module, the monitor's pure half: reports added by hand with a
 * hand-held clock, no socket and no loop. Sums and maxima, the cumulative rule, completeness,
 * grace, late and leaving reporters, the history ring, refusals, and the renderers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/aggregate.h"

#define T0_MS   1700000000000ull
#define S0      (T0_MS / 1000 - 5) /* a second a few seconds before the clock's now */
#define MAX_OUT 64

typedef struct fixture {
    hb_aggregate_t a;
    hb_aggregate_reporter_t rep[8];
    uint64_t now; /* ms */
    hb_monitor_second_t out[MAX_OUT];
    int nout;
    int reenter; /* on_second calls tick and flush (which must do nothing) */
} fixture_t;

static void capture(hb_aggregate_t *a, const hb_monitor_second_t *s, void *arg)
{
    fixture_t *f = arg;
    ck_assert_ptr_eq(a, &f->a);
    ck_assert_int_lt(f->nout, MAX_OUT);
    f->out[f->nout++] = *s;
    if (f->reenter) {
        hb_aggregate_tick(a, UINT64_MAX);
        hb_aggregate_flush(a, UINT64_MAX);
    }
}

static fixture_t *setup(unsigned history_s, unsigned grace_ms, unsigned known_ms)
{
    fixture_t *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    hb_aggregate_options_t o = {.history_s = history_s,
                                .grace_ms = grace_ms,
                                .known_ms = known_ms,
                                .on_second = capture,
                                .on_second_arg = f};
    ck_assert_int_eq(hb_aggregate_init(&f->a, &o), 0);
    f->now = T0_MS;
    return f;
}

static void teardown(fixture_t *f)
{
    hb_aggregate_close(&f->a);
    free(f);
}

static hb_aggregate_reporter_t *join(fixture_t *f, int i)
{
    ck_assert_int_eq(hb_aggregate_join(&f->a, &f->rep[i], f->now), 0);
    return &f->rep[i];
}

static hb_report_t report(uint64_t second, uint64_t type)
{
    hb_report_t r;
    memset(&r, 0, sizeof r);
    r.second = second;
    r.type = type;
    return r;
}

/* Add r from rep and tick, as the monitor does on each report; returns the add's result. */
static int add(fixture_t *f, hb_aggregate_reporter_t *rep, const hb_report_t *r)
{
    int res = hb_aggregate_add(&f->a, rep, r, f->now);
    hb_aggregate_tick(&f->a, f->now);
    return res;
}

static const hb_monitor_second_t *find_out(const fixture_t *f, uint64_t second, uint64_t type)
{
    for (int i = 0; i < f->nout; i++)
        if (f->out[i].second == second && f->out[i].type == type)
            return &f->out[i];
    return NULL;
}

START_TEST(test_init_and_close)
{
    hb_aggregate_t a;
    hb_aggregate_options_t o = {0};
    ck_assert_int_eq(hb_aggregate_init(NULL, &o), HB_EINVAL);
    o.history_s = HB_AGGREGATE_MIN_HISTORY_S - 1;
    ck_assert_int_eq(hb_aggregate_init(&a, &o), HB_EINVAL);
    o.history_s = HB_AGGREGATE_MAX_HISTORY_S + 1;
    ck_assert_int_eq(hb_aggregate_init(&a, &o), HB_EINVAL);
    o.history_s = 0;
    o.max_reporters = HB_AGGREGATE_MAX_REPORTERS + 1;
    ck_assert_int_eq(hb_aggregate_init(&a, &o), HB_EINVAL);

    ck_assert_int_eq(hb_aggregate_init(&a, NULL), 0);
    ck_assert_uint_eq(a.opts.max_reporters, HB_AGGREGATE_DEFAULT_MAX_REPORTERS);
    ck_assert_uint_eq(a.opts.history_s, HB_AGGREGATE_DEFAULT_HISTORY_S);
    ck_assert_uint_eq(a.opts.grace_ms, HB_AGGREGATE_DEFAULT_GRACE_MS);
    ck_assert_uint_eq(a.opts.known_ms, HB_AGGREGATE_DEFAULT_KNOWN_MS);
    ck_assert_ptr_null(a.data);
    uint64_t x, y;
    hb_monitor_second_t s;
    ck_assert_int_eq(hb_aggregate_range(&a, &x, &y), HB_ENOENT);
    ck_assert_int_eq(hb_aggregate_latest(&a, HB_REPORTER_SERVER, &x), HB_ENOENT);
    ck_assert_int_eq(hb_aggregate_get(&a, S0, HB_REPORTER_SERVER, &s), HB_ENOENT);
    ck_assert_int_eq(hb_aggregate_get(&a, S0, HB_REPORTER_SERVER, NULL), HB_EINVAL);
    ck_assert_ptr_null(hb_aggregate_at(&a, S0, HB_REPORTER_CLIENT));
    hb_aggregate_reporter_t rep = {0};
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    ck_assert_int_eq(hb_aggregate_add(&a, &rep, &r, T0_MS), HB_EINVAL); /* not joined */
    ck_assert_int_eq(hb_aggregate_join(&a, &rep, T0_MS), 0);
    r.type = 2;
    ck_assert_int_eq(hb_aggregate_add(&a, &rep, &r, T0_MS), HB_EINVAL);
    ck_assert_int_eq(hb_aggregate_add(&a, &rep, NULL, T0_MS), HB_EINVAL);
    hb_aggregate_tick(&a, T0_MS);  /* nothing held: nothing to do */
    hb_aggregate_flush(&a, T0_MS); /* nor here */
    hb_aggregate_close(&a);
    ck_assert_int_eq(rep.joined, 0); /* forgotten by the close */
    hb_aggregate_close(&a);          /* a second close does nothing */
    hb_aggregate_tick(&a, T0_MS);    /* nor does anything after it */
}
END_TEST

START_TEST(test_join_and_leave)
{
    hb_aggregate_t a;
    hb_aggregate_options_t o = {.max_reporters = 2};
    ck_assert_int_eq(hb_aggregate_init(&a, &o), 0);
    hb_aggregate_reporter_t r1, r2, r3;
    memset(&r1, 0x5A, sizeof r1); /* join resets every field but data */
    r1.data = &r2;
    ck_assert_int_eq(hb_aggregate_join(&a, &r1, 7), 0);
    ck_assert_ptr_eq(r1.data, &r2);
    ck_assert_int_eq(r1.joined, 1);
    ck_assert_int_eq(r1.reported, 0);
    ck_assert_uint_eq(r1.heard_ms, 7);
    ck_assert_int_eq(hb_aggregate_join(&a, &r2, 8), 0);
    ck_assert_int_eq(hb_aggregate_join(&a, &r3, 9), HB_ENOBUFS);
    ck_assert_uint_eq(a.nreporters, 2);
    hb_aggregate_leave(&a, &r1);
    ck_assert_int_eq(r1.joined, 0);
    ck_assert_uint_eq(a.nreporters, 1);
    ck_assert_ptr_eq(a.reporters[0], &r2);
    hb_aggregate_leave(&a, &r1); /* not joined: nothing */
    ck_assert_uint_eq(a.nreporters, 1);
    ck_assert_int_eq(hb_aggregate_join(&a, &r3, 9), 0);
    ck_assert_int_eq(hb_aggregate_join(NULL, &r3, 9), HB_EINVAL);
    hb_aggregate_close(&a);
}
END_TEST

START_TEST(test_sums_and_latency_maximum)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1), *cl = join(f, 2);

    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 100;
    r.per_second[HB_CTR_SHAKE_GOT] = 7;
    r.cumulative[HB_CTR_REQUESTS] = 1000;
    r.cumulative[HB_CTR_CONN_OPENED] = 50;
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_ADDED);
    ck_assert_int_eq(f->nout, 0); /* b and the client have not reported */
    r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 200;
    r.cumulative[HB_CTR_REQUESTS] = 3000;
    add(f, b, &r);
    ck_assert_int_eq(f->nout, 0); /* the client's type is not known yet: it counts for both */
    r = report(S0, HB_REPORTER_CLIENT);
    r.per_second[HB_CTR_REQUESTS] = 300;
    r.per_second[HB_CTR_LAT_P50] = 120;
    r.cumulative[HB_CTR_REQUESTS] = 7000;
    r.cumulative[HB_CTR_LAT_P50] = 999;
    add(f, cl, &r);
    ck_assert_int_eq(f->nout, 2);
    const hb_monitor_second_t *s = find_out(f, S0, HB_REPORTER_SERVER);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->status, HB_MONITOR_COMPLETE);
    ck_assert_int_eq(s->output, 1);
    ck_assert_uint_eq(s->reports, 2);
    ck_assert_uint_eq(s->per_second[HB_CTR_REQUESTS], 300);
    ck_assert_uint_eq(s->per_second[HB_CTR_SHAKE_GOT], 7);
    ck_assert_uint_eq(s->cumulative[HB_CTR_REQUESTS], 4000);
    ck_assert_uint_eq(s->cumulative[HB_CTR_CONN_OPENED], 50);
    s = find_out(f, S0, HB_REPORTER_CLIENT);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->cumulative[HB_CTR_REQUESTS], 7000);
    ck_assert_uint_eq(s->cumulative[HB_CTR_LAT_P50], 999);

    /* Two clients: every latency slot takes the maximum, per second and cumulative; the rest
     * sums, send_missed (57) included. */
    hb_aggregate_reporter_t *d = join(f, 3);
    r = report(S0 + 1, HB_REPORTER_CLIENT);
    r.per_second[HB_CTR_REQUESTS] = 10;
    r.cumulative[HB_CTR_REQUESTS] = 7010;
    r.per_second[HB_CTR_C_SEND_MISSED] = 2;
    for (unsigned i = HB_CTR_LAT_P50; i <= HB_CTR_LAT_CLAIM_P99; i++) {
        r.per_second[i] = 100 * i;
        r.cumulative[i] = 1000;
    }
    add(f, cl, &r);
    ck_assert_int_eq(f->nout, 2); /* d is joined and silent: waited for */
    r = report(S0 + 1, HB_REPORTER_CLIENT);
    r.per_second[HB_CTR_REQUESTS] = 20;
    r.cumulative[HB_CTR_REQUESTS] = 20;
    r.per_second[HB_CTR_C_SEND_MISSED] = 3;
    for (unsigned i = HB_CTR_LAT_P50; i <= HB_CTR_LAT_CLAIM_P99; i++) {
        r.per_second[i] = i % 2 == 0 ? 100 * i + 1 : 100 * i - 1;
        r.cumulative[i] = 400;
    }
    add(f, d, &r);
    ck_assert_int_eq(f->nout, 3);
    s = find_out(f, S0 + 1, HB_REPORTER_CLIENT);
    ck_assert_uint_eq(s->reports, 2);
    ck_assert_uint_eq(s->per_second[HB_CTR_REQUESTS], 30);
    ck_assert_uint_eq(s->per_second[HB_CTR_C_SEND_MISSED], 5);
    ck_assert_uint_eq(s->cumulative[HB_CTR_REQUESTS], 7030);
    for (unsigned i = HB_CTR_LAT_P50; i <= HB_CTR_LAT_CLAIM_P99; i++) {
        ck_assert_uint_eq(s->per_second[i], i % 2 == 0 ? 100 * i + 1 : 100 * i);
        ck_assert_uint_eq(s->cumulative[i], 1000);
    }
    teardown(f);
}
END_TEST

START_TEST(test_cumulative_rule_and_leaving)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    r.cumulative[HB_CTR_REQUESTS] = 1000;
    add(f, a, &r);
    r.cumulative[HB_CTR_REQUESTS] = 3000;
    add(f, b, &r);
    ck_assert_uint_eq(f->out[0].cumulative[HB_CTR_REQUESTS], 4000);
    /* A reporter's latest totals replace its earlier ones. */
    r = report(S0 + 1, HB_REPORTER_SERVER);
    r.cumulative[HB_CTR_REQUESTS] = 1003;
    add(f, a, &r);
    r.cumulative[HB_CTR_REQUESTS] = 3020;
    add(f, b, &r);
    ck_assert_uint_eq(f->out[1].cumulative[HB_CTR_REQUESTS], 4023);
    /* a leaves: its final totals keep counting, and b alone completes the next second. */
    hb_aggregate_leave(&f->a, a);
    r = report(S0 + 2, HB_REPORTER_SERVER);
    r.cumulative[HB_CTR_REQUESTS] = 3025;
    add(f, b, &r);
    ck_assert_int_eq(f->nout, 3);
    ck_assert_int_eq(f->out[2].status, HB_MONITOR_COMPLETE);
    ck_assert_uint_eq(f->out[2].cumulative[HB_CTR_REQUESTS], 1003 + 3025);
    /* It comes back as a new reporter, from 0: its totals add to the final ones. */
    a = join(f, 0);
    r = report(S0 + 3, HB_REPORTER_SERVER);
    r.cumulative[HB_CTR_REQUESTS] = 5;
    add(f, a, &r);
    r.cumulative[HB_CTR_REQUESTS] = 3030;
    add(f, b, &r);
    ck_assert_int_eq(f->nout, 4);
    ck_assert_uint_eq(f->out[3].cumulative[HB_CTR_REQUESTS], 1003 + 3030 + 5);
    /* A second of a type is output as soon as its own reporters have it: the other type's
     * reporters are not waited for. */
    hb_aggregate_reporter_t *cl = join(f, 2);
    r = report(S0 + 4, HB_REPORTER_CLIENT);
    add(f, cl, &r);
    ck_assert_int_eq(f->nout, 5);
    ck_assert_uint_eq(f->out[4].type, HB_REPORTER_CLIENT);
    teardown(f);
}
END_TEST

START_TEST(test_order_and_skipped_seconds)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    add(f, a, &r);
    add(f, b, &r);
    ck_assert_int_eq(f->nout, 1);
    /* a reaches S0 + 2 while b is at S0: nothing. */
    r = report(S0 + 1, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 1;
    add(f, a, &r);
    r = report(S0 + 2, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 2;
    add(f, a, &r);
    ck_assert_int_eq(f->nout, 1);
    /* b skips S0 + 1 and sends S0 + 2: both seconds complete, in order. */
    r.per_second[HB_CTR_REQUESTS] = 20;
    add(f, b, &r);
    ck_assert_int_eq(f->nout, 3);
    ck_assert_uint_eq(f->out[1].second, S0 + 1);
    ck_assert_uint_eq(f->out[1].reports, 1);
    ck_assert_uint_eq(f->out[2].second, S0 + 2);
    ck_assert_uint_eq(f->out[2].per_second[HB_CTR_REQUESTS], 22);
    uint64_t lo, hi;
    ck_assert_int_eq(hb_aggregate_range(&f->a, &lo, &hi), 0);
    ck_assert_uint_eq(lo, S0);
    ck_assert_uint_eq(hi, S0 + 2);
    ck_assert_int_eq(hb_aggregate_latest(&f->a, HB_REPORTER_SERVER, &lo), 0);
    ck_assert_uint_eq(lo, S0 + 2);
    ck_assert_int_eq(hb_aggregate_latest(&f->a, HB_REPORTER_CLIENT, &lo), HB_ENOENT);
    teardown(f);
}
END_TEST

START_TEST(test_grace_period_and_late_reports)
{
    fixture_t *f = setup(0, 2000, 0);
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 100;
    add(f, a, &r);
    f->now += 1999;
    hb_aggregate_tick(&f->a, f->now);
    ck_assert_int_eq(f->nout, 0);
    f->now += 1;
    hb_aggregate_tick(&f->a, f->now);
    ck_assert_int_eq(f->nout, 1);
    ck_assert_int_eq(f->out[0].status, HB_MONITOR_GRACE);

    /* b's report of S0 after the output: kept, not output again. */
    r.per_second[HB_CTR_REQUESTS] = 50;
    ck_assert_int_eq(add(f, b, &r), HB_AGGREGATE_LATE);
    ck_assert_int_eq(f->nout, 1);
    hb_monitor_second_t s;
    ck_assert_int_eq(hb_aggregate_get(&f->a, S0, HB_REPORTER_SERVER, &s), 0);
    ck_assert_uint_eq(s.reports, 2);
    ck_assert_uint_eq(s.per_second[HB_CTR_REQUESTS], 150);
    ck_assert_int_eq(s.output, 1);
    ck_assert_int_eq(s.status, HB_MONITOR_GRACE);

    /* Seconds waiting past their grace period go in order, each by its own first report. */
    r = report(S0 + 1, HB_REPORTER_SERVER);
    add(f, a, &r);
    f->now += 1000;
    r = report(S0 + 2, HB_REPORTER_SERVER);
    add(f, a, &r);
    f->now += 1000;
    hb_aggregate_tick(&f->a, f->now);
    ck_assert_int_eq(f->nout, 2);
    ck_assert_uint_eq(f->out[1].second, S0 + 1);
    ck_assert_int_eq(f->out[1].status, HB_MONITOR_GRACE);
    f->now += 1000;
    hb_aggregate_tick(&f->a, f->now);
    ck_assert_int_eq(f->nout, 3);
    ck_assert_uint_eq(f->out[2].second, S0 + 2);
    teardown(f);
}
END_TEST

START_TEST(test_known_window)
{
    fixture_t *f = setup(0, 60000, 10000);
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    add(f, a, &r);
    add(f, b, &r);
    ck_assert_int_eq(f->nout, 1);
    /* b falls silent; a's next second waits for b as long as b was heard within known_ms. */
    r.second = S0 + 1;
    add(f, a, &r);
    ck_assert_int_eq(f->nout, 1);
    f->now += 10000;
    hb_aggregate_tick(&f->a, f->now);
    ck_assert_int_eq(f->nout, 1); /* heard exactly known_ms ago: still waited for */
    f->now += 1;
    hb_aggregate_tick(&f->a, f->now);
    ck_assert_int_eq(f->nout, 2);
    ck_assert_int_eq(f->out[1].status, HB_MONITOR_COMPLETE);
    /* A silent reporter that never reported is not waited for either, after known_ms. */
    join(f, 2);
    r.second = S0 + 2;
    add(f, a, &r);
    ck_assert_int_eq(f->nout, 2);
    f->now += 10001;
    hb_aggregate_tick(&f->a, f->now);
    ck_assert_int_eq(f->nout, 3);
    teardown(f);
}
END_TEST

START_TEST(test_history_ring_too_old_and_flush)
{
    fixture_t *f = setup(HB_AGGREGATE_MIN_HISTORY_S, 0, 0);
    hb_aggregate_reporter_t *a = join(f, 0);
    hb_aggregate_reporter_t *b = join(f, 1); /* silent: holds every second until the grace */
    hb_report_t r = report(S0 - 20, HB_REPORTER_SERVER);
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_ADDED);
    ck_assert_int_eq(f->nout, 0);
    /* S0 - 4 pushes S0 - 20 out of the 16-second ring: it is output first, marked. */
    r.second = S0 - 4;
    add(f, a, &r);
    ck_assert_int_eq(f->nout, 1);
    ck_assert_uint_eq(f->out[0].second, S0 - 20);
    ck_assert_int_eq(f->out[0].status, HB_MONITOR_INCOMPLETE);
    ck_assert_ptr_null(hb_aggregate_at(&f->a, S0 - 20, HB_REPORTER_SERVER));
    /* Older than the history: not kept, but the reporter's totals still count. */
    r.second = S0 - 20;
    r.cumulative[HB_CTR_REQUESTS] = 77;
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_TOO_OLD);
    ck_assert_int_eq(f->nout, 1);
    uint64_t lo, hi;
    ck_assert_int_eq(hb_aggregate_range(&f->a, &lo, &hi), 0);
    ck_assert_uint_eq(lo, S0 - 4);
    ck_assert_uint_eq(hi, S0 - 4);
    hb_aggregate_flush(&f->a, f->now);
    ck_assert_int_eq(f->nout, 2);
    ck_assert_uint_eq(f->out[1].second, S0 - 4);
    ck_assert_int_eq(f->out[1].status, HB_MONITOR_INCOMPLETE);
    hb_aggregate_flush(&f->a, f->now);
    ck_assert_int_eq(f->nout, 2);
    /* The totals of the report that was too old count: a's 77 and b's 3. */
    r.second = S0 - 3;
    r.cumulative[HB_CTR_REQUESTS] = 3;
    add(f, b, &r);
    const hb_monitor_second_t *s = hb_aggregate_at(&f->a, S0 - 3, HB_REPORTER_SERVER);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->cumulative[HB_CTR_REQUESTS], 80);
    teardown(f);
}
END_TEST

START_TEST(test_refused_reports_change_nothing)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *a = join(f, 0);
    uint64_t now_s = T0_MS / 1000;
    hb_report_t r = report(now_s + HB_AGGREGATE_MAX_SKEW_S + 1, HB_REPORTER_SERVER);
    r.cumulative[HB_CTR_REQUESTS] = 9;
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_SKEWED);
    r.second = now_s - HB_AGGREGATE_MAX_SKEW_S - 1;
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_SKEWED);
    ck_assert_int_eq(a->reported, 0);
    uint64_t lo, hi;
    ck_assert_int_eq(hb_aggregate_range(&f->a, &lo, &hi), HB_ENOENT);
    r = report(S0, HB_REPORTER_CLIENT);
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_ADDED);
    ck_assert_int_eq(f->nout, 1);
    ck_assert_uint_eq(f->out[0].cumulative[HB_CTR_REQUESTS], 0); /* the refused totals: never */
    r = report(S0 + 1, HB_REPORTER_SERVER);
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_TYPE_CHANGED);
    ck_assert_uint_eq(a->type, HB_REPORTER_CLIENT);
    ck_assert_uint_eq(a->last_second, S0);
    ck_assert_ptr_null(hb_aggregate_at(&f->a, S0 + 1, HB_REPORTER_SERVER));
    /* The edge of the skew is accepted. */
    r = report(now_s + HB_AGGREGATE_MAX_SKEW_S, HB_REPORTER_CLIENT);
    ck_assert_int_eq(add(f, a, &r), HB_AGGREGATE_ADDED);
    teardown(f);
}
END_TEST

START_TEST(test_on_second_cannot_reenter)
{
    fixture_t *f = setup(0, 0, 0);
    f->reenter = 1;
    hb_aggregate_reporter_t *a = join(f, 0);
    join(f, 1);
    for (uint64_t s = S0; s < S0 + 3; s++) {
        hb_report_t r = report(s, HB_REPORTER_SERVER);
        add(f, a, &r);
    }
    ck_assert_int_eq(f->nout, 0);
    hb_aggregate_flush(&f->a, f->now); /* each callback's tick and flush do nothing */
    ck_assert_int_eq(f->nout, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(f->out[i].second, S0 + (uint64_t)i);
        ck_assert_int_eq(f->out[i].status, HB_MONITOR_INCOMPLETE);
    }
    teardown(f);
}
END_TEST

START_TEST(test_series_and_metrics)
{
    fixture_t *f = setup(0, 0, 0);
    char buf[65536];
    /* Nothing output yet. */
    int n = hb_aggregate_format_series(&f->a, NULL, 42, 300, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    const char *empty = "{\"now\":42,\"first\":null,\"last\":null,\"seconds\":[],"
                        "\"server\":{\"reports\":[],\"status\":[],\"nic_hosts\":[],"
                        "\"per_second\":{";
    ck_assert_int_eq(strncmp(buf, empty, strlen(empty)), 0);
    ck_assert_int_eq(hb_aggregate_format_metrics(&f->a, NULL, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "");

    hb_aggregate_reporter_t *a = join(f, 0), *cl = join(f, 1);
    hb_report_t r = report(S0, HB_REPORTER_SERVER);
    r.per_second[HB_CTR_REQUESTS] = 100;
    r.cumulative[HB_CTR_REQUESTS] = 1000;
    r.per_second[HB_CTR_X_BAD_FRAME] = 3;
    add(f, a, &r);
    r = report(S0, HB_REPORTER_CLIENT);
    r.per_second[HB_CTR_LAT_P99] = 900;
    r.cumulative[HB_CTR_LAT_P99] = 901;
    add(f, cl, &r);
    ck_assert_int_eq(f->nout, 2);

    n = hb_aggregate_format_series(&f->a, NULL, 42, 3, buf, sizeof buf);
    ck_assert_int_eq(n, (int)strlen(buf));
    char want[256];
    snprintf(want, sizeof want,
             "{\"now\":42,\"first\":%llu,\"last\":%llu,\"seconds\":[%llu],\"server\":{\"reports\":"
             "[1],\"status\":[0],\"nic_hosts\":[0],\"per_second\":{\"frame_login\":[0],",
             (unsigned long long)S0, (unsigned long long)S0, (unsigned long long)S0);
    ck_assert_int_eq(strncmp(buf, want, strlen(want)), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\"requests\":[100],"));
    ck_assert_ptr_nonnull(strstr(buf, "\"bad_frames\":[3],"));
    const char *client = strstr(buf, ",\"client\":{");
    ck_assert_ptr_nonnull(client);
    ck_assert_ptr_null(strstr(client, "bad_frames"));
    ck_assert_ptr_nonnull(strstr(client, "\"latency_p99_us\":[900]"));
    ck_assert_ptr_nonnull(strstr(client, "\"send_missed\":[0]"));
    ck_assert_ptr_null(strstr(strstr(client, "\"cumulative\""), "latency"));
    ck_assert_ptr_null(strstr(buf, "\"monitor\""));
    ck_assert_str_eq(buf + n - 4, "]}}}");

    hb_monitor_stats_t st = {.connections_open = 2, .reports = 3, .late = 4, .seconds_grace = 5};
    n = hb_aggregate_format_series(&f->a, &st, 42, 3, buf, sizeof buf);
    ck_assert_str_eq(strstr(buf, ",\"monitor\":"),
                     ",\"monitor\":{\"reporters\":2,\"reports\":3,\"bad_reports\":0,"
                     "\"truncated\":0,\"late\":4,\"too_old\":0}}");
    ck_assert_int_eq(hb_aggregate_format_series(&f->a, &st, 42, 3, buf, (size_t)n), HB_ENOBUFS);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(hb_aggregate_format_series(&f->a, &st, 42, 3, NULL, 1), HB_EINVAL);

    /* Prometheus: the catalogue's help text, the summing or the maximum said. */
    n = hb_aggregate_format_metrics(&f->a, &st, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(buf, "# HELP hongbao_server_requests_total Requests, cumulative, "
                                      "summed over the servers.\n"
                                      "# TYPE hongbao_server_requests_total counter\n"
                                      "hongbao_server_requests_total 1000\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_server_bad_frames_per_second 3\n"));
    ck_assert_ptr_nonnull(strstr(buf, "# HELP hongbao_client_latency_p99_seconds Shake latency p99 "
                                      "from the scheduled send (microseconds), in the report "
                                      "second, maximum over the clients; here in seconds.\n"
                                      "# TYPE hongbao_client_latency_p99_seconds gauge\n"
                                      "hongbao_client_latency_p99_seconds 0.000900\n"));
    ck_assert_ptr_null(strstr(buf, "hongbao_client_bad_frames"));
    ck_assert_ptr_null(strstr(buf, "hongbao_server_latency"));
    ck_assert_ptr_nonnull(strstr(buf, "# HELP hongbao_monitor_seconds_total Seconds output, by how "
                                      "they completed.\n"
                                      "# TYPE hongbao_monitor_seconds_total counter\n"
                                      "hongbao_monitor_seconds_total{status=\"complete\"} 0\n"
                                      "hongbao_monitor_seconds_total{status=\"grace\"} 5\n"
                                      "hongbao_monitor_seconds_total{status=\"incomplete\"} 0\n"));
    ck_assert_int_eq(buf[n - 1], '\n');
    ck_assert_int_eq(hb_aggregate_format_metrics(&f->a, &st, buf, (size_t)n), HB_ENOBUFS);
    ck_assert_int_eq(hb_aggregate_format_metrics(&f->a, &st, buf, (size_t)n + 1), n);
    ck_assert_int_eq(hb_aggregate_format_metrics(NULL, &st, buf, sizeof buf), HB_EINVAL);
    int without = hb_aggregate_format_metrics(&f->a, NULL, buf, sizeof buf);
    ck_assert_int_gt(without, 0);
    ck_assert_int_lt(without, n);
    ck_assert_ptr_null(strstr(buf, "hongbao_monitor_"));
    teardown(f);
}
END_TEST

/* Application slots named in the options: summed, and shown in metrics and series by their names
 * for their type alone; unnamed ones stay hidden. */
START_TEST(test_application_counters_by_name)
{
    hb_counter_names_t names;
    memset(&names, 0, sizeof names);
    ck_assert_int_eq(
        hb_counter_names_add(&names, HB_REPORTER_SERVER, HB_CTR_APP_1, "lucky_draws", "Draws"), 0);
    fixture_t *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    hb_aggregate_options_t o = {.on_second = capture, .on_second_arg = f, .names = &names};
    ck_assert_int_eq(hb_aggregate_init(&f->a, &o), 0);
    memset(&names, 0, sizeof names); /* copied: the caller's may go */
    ck_assert_ptr_ne(f->a.opts.names, &names);
    f->now = T0_MS;
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1);
    for (int i = 0; i < 2; i++) {
        hb_report_t r = report(S0, HB_REPORTER_SERVER);
        r.per_second[HB_CTR_APP_1] = 10 + (uint64_t)i;
        r.cumulative[HB_CTR_APP_1] = 100 + (uint64_t)i;
        r.per_second[HB_CTR_APP_2] = 7; /* not named */
        add(f, i == 0 ? a : b, &r);
    }
    ck_assert_int_eq(f->nout, 1);
    ck_assert_uint_eq(f->out[0].per_second[HB_CTR_APP_1], 21);
    static char buf[65536];
    ck_assert_int_gt(hb_aggregate_format_metrics(&f->a, NULL, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(
        strstr(buf, "# HELP hongbao_server_lucky_draws_total Draws, cumulative, summed over the "
                    "servers.\n# TYPE hongbao_server_lucky_draws_total counter\n"
                    "hongbao_server_lucky_draws_total 201\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_server_lucky_draws_per_second 21\n"));
    ck_assert_ptr_null(strstr(buf, " 7\n"));
    ck_assert_int_gt(hb_aggregate_format_series(&f->a, NULL, S0, 1, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\"lucky_draws\":[21]"));
    ck_assert_ptr_nonnull(strstr(buf, "\"lucky_draws\":[201]"));
    ck_assert_ptr_null(strstr(strstr(buf, "\"client\":"), "lucky_draws"));
    teardown(f);
}
END_TEST

START_TEST(test_csv_columns_are_the_catalogue)
{
    char header[4096];
    int n = hb_aggregate_format_csv_header(header, sizeof header);
    ck_assert_int_gt(n, 0);
    /* Every catalogued quantity in slot order (the host identity is none), then the totals of
     * those not combined by maximum. */
    char want[4096] = "second,type,status,reports";
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        if (hb_counter_name(i) != NULL && i != HB_CTR_NIC_HOST)
            snprintf(want + strlen(want), sizeof want - strlen(want), ",%s", hb_counter_name(i));
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        if (hb_counter_name(i) != NULL && (hb_counter_combine(i) == HB_COUNTER_COMBINE_SUM ||
                                           hb_counter_combine(i) == HB_COUNTER_COMBINE_PER_HOST))
            snprintf(want + strlen(want), sizeof want - strlen(want), ",%s_total",
                     hb_counter_name(i));
    ck_assert_ptr_null(strstr(header, "nic_host"));
    ck_assert_ptr_nonnull(strstr(header, ",nic_rx_packets,nic_tx_packets,nic_rx_bytes,requests,"));
    strcat(want, "\n");
    ck_assert_str_eq(header, want);
    ck_assert_int_eq(hb_aggregate_format_csv_header(header, (size_t)n), HB_ENOBUFS);
    ck_assert_int_eq(hb_aggregate_format_csv_header(NULL, 0), HB_ENOBUFS);
}
END_TEST

/* ---- the host's NIC: per host, not per process ---- */

/* A report of type t for second sec from a process of host id, with these NIC packet counts this
 * second (rx, tx) and bytes 100 times them, and cumulative packets cum_rx. */
static hb_report_t nic_report(uint64_t sec, uint64_t t, uint64_t id, uint64_t rx, uint64_t tx,
                              uint64_t cum_rx)
{
    hb_report_t r = report(sec, t);
    r.per_second[HB_CTR_NIC_RX_PACKETS] = rx;
    r.per_second[HB_CTR_NIC_TX_PACKETS] = tx;
    r.per_second[HB_CTR_NIC_RX_BYTES] = rx * 100;
    r.per_second[HB_CTR_NIC_TX_BYTES] = tx * 100;
    r.cumulative[HB_CTR_NIC_RX_PACKETS] = cum_rx;
    r.cumulative[HB_CTR_NIC_HOST] = id;
    r.per_second[HB_CTR_REQUESTS] = 10; /* an ordinary slot, summed per process */
    return r;
}

START_TEST(test_nic_summed_per_host_not_per_process)
{
    fixture_t *f = setup(0, 0, 0);
    /* Host 111 runs two server processes (a, b) and a client (cl); host 222 one server (c); e
     * reports NIC values with no identity. */
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1), *c = join(f, 2), *cl = join(f, 3),
                            *e = join(f, 4);
    for (int k = 0; k < 2; k++) {
        uint64_t sec = S0 + (uint64_t)k;
        hb_report_t ra = nic_report(sec, HB_REPORTER_SERVER, 111, 1000, 900, 50000);
        hb_report_t rb = nic_report(sec, HB_REPORTER_SERVER, 111, 1010, 880, 30000);
        hb_report_t rc = nic_report(sec, HB_REPORTER_SERVER, 222, 500, 400, 7000);
        hb_report_t rcl = nic_report(sec, HB_REPORTER_CLIENT, 111, 1005, 890, 40000);
        hb_report_t re = nic_report(sec, HB_REPORTER_SERVER, 0, 77777, 77777, 77777);
        /* Second S0 in one order, S0 + 1 in another: the same figures. */
        if (k == 0) {
            add(f, a, &ra);
            add(f, b, &rb);
        } else {
            add(f, b, &rb);
            add(f, a, &ra);
        }
        add(f, c, &rc);
        add(f, e, &re);
        add(f, cl, &rcl);
        const hb_monitor_second_t *sv = find_out(f, sec, HB_REPORTER_SERVER);
        ck_assert_ptr_nonnull(sv);
        ck_assert_uint_eq(sv->reports, 4);
        ck_assert_uint_eq(sv->nic_hosts, 2);
        /* Per host the maximum of its processes' values, summed over the hosts. */
        ck_assert_uint_eq(sv->per_second[HB_CTR_NIC_RX_PACKETS], 1010 + 500);
        ck_assert_uint_eq(sv->per_second[HB_CTR_NIC_TX_PACKETS], 900 + 400);
        ck_assert_uint_eq(sv->per_second[HB_CTR_NIC_RX_BYTES], 101000 + 50000);
        ck_assert_uint_eq(sv->per_second[HB_CTR_NIC_TX_BYTES], 90000 + 40000);
        ck_assert_uint_eq(sv->cumulative[HB_CTR_NIC_RX_PACKETS], 50000 + 7000);
        /* Ordinary slots stay per process; the identity is not a quantity. */
        ck_assert_uint_eq(sv->per_second[HB_CTR_REQUESTS], 40);
        ck_assert_uint_eq(sv->per_second[HB_CTR_NIC_HOST], 0);
        ck_assert_uint_eq(sv->cumulative[HB_CTR_NIC_HOST], 0);
        /* The client side is its own: host 111's client alone. */
        const hb_monitor_second_t *cs = find_out(f, sec, HB_REPORTER_CLIENT);
        ck_assert_ptr_nonnull(cs);
        ck_assert_uint_eq(cs->nic_hosts, 1);
        ck_assert_uint_eq(cs->per_second[HB_CTR_NIC_RX_PACKETS], 1005);
        ck_assert_uint_eq(cs->cumulative[HB_CTR_NIC_RX_PACKETS], 40000);
    }
    /* The line, the metrics and the series show it. */
    char buf[65536];
    const hb_monitor_second_t *sv = find_out(f, S0, HB_REPORTER_SERVER);
    ck_assert_int_gt(hb_aggregate_format_line(sv, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, " nic_rx=1510 nic_tx=1300 hosts=2"));
    ck_assert_int_gt(hb_aggregate_format_metrics(&f->a, NULL, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_server_nic_rx_packets_per_second 1510\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_server_nic_rx_packets_total 57000\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_server_nic_hosts 2\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_client_nic_hosts 1\n"));
    ck_assert_ptr_null(strstr(buf, "nic_host_"));
    ck_assert_ptr_null(strstr(buf, "nic_host "));
    ck_assert_int_gt(hb_aggregate_format_series(&f->a, NULL, S0 + 5, 2, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\"nic_hosts\":[2,2]"));
    ck_assert_ptr_nonnull(strstr(buf, "\"nic_rx_packets\":[1510,1510]"));
    ck_assert_ptr_null(strstr(buf, "\"nic_host\""));
    teardown(f);
}
END_TEST

START_TEST(test_nic_cumulative_per_host_through_leaving)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1);
    /* Two processes of one host: the older one has counted more. */
    hb_report_t r = nic_report(S0, HB_REPORTER_SERVER, 111, 10, 10, 50000);
    add(f, a, &r);
    r = nic_report(S0, HB_REPORTER_SERVER, 111, 10, 10, 30000);
    add(f, b, &r);
    ck_assert_uint_eq(find_out(f, S0, HB_REPORTER_SERVER)->cumulative[HB_CTR_NIC_RX_PACKETS],
                      50000);
    /* The older one leaves: the host's total never goes down, and grows again once the younger
     * one's count passes it. */
    hb_aggregate_leave(&f->a, a);
    r = nic_report(S0 + 1, HB_REPORTER_SERVER, 111, 10, 10, 30010);
    add(f, b, &r);
    ck_assert_uint_eq(find_out(f, S0 + 1, HB_REPORTER_SERVER)->cumulative[HB_CTR_NIC_RX_PACKETS],
                      50000);
    ck_assert_uint_eq(find_out(f, S0 + 1, HB_REPORTER_SERVER)->per_second[HB_CTR_NIC_RX_PACKETS],
                      10);
    r = nic_report(S0 + 2, HB_REPORTER_SERVER, 111, 10, 10, 50500);
    add(f, b, &r);
    ck_assert_uint_eq(find_out(f, S0 + 2, HB_REPORTER_SERVER)->cumulative[HB_CTR_NIC_RX_PACKETS],
                      50500);
    /* A report without identity changes nothing of the host's. */
    r = nic_report(S0 + 3, HB_REPORTER_SERVER, 0, 999, 999, 999999);
    add(f, b, &r);
    const hb_monitor_second_t *s3 = find_out(f, S0 + 3, HB_REPORTER_SERVER);
    ck_assert_uint_eq(s3->cumulative[HB_CTR_NIC_RX_PACKETS], 50500);
    ck_assert_uint_eq(s3->per_second[HB_CTR_NIC_RX_PACKETS], 0);
    ck_assert_uint_eq(s3->nic_hosts, 0);
    ck_assert_int_gt(
        hb_aggregate_format_line(s3, (char[HB_AGGREGATE_LINE_MAX]){0}, HB_AGGREGATE_LINE_MAX), 0);
    teardown(f);
}
END_TEST

START_TEST(test_nic_late_reports_within_the_host_window)
{
    fixture_t *f = setup(0, 60000, 60000);
    hb_aggregate_reporter_t *a = join(f, 0), *b = join(f, 1);
    /* a reports S0 .. S0 + W; b, late, then reports S0 (out of the host's window: its second may
     * have been counted already, it adds nothing) and S0 + W (inside: up to the maximum). */
    uint64_t w = HB_AGGREGATE_HOST_WINDOW;
    for (uint64_t k = 0; k <= w; k++) {
        hb_report_t r = nic_report(S0 + k, HB_REPORTER_SERVER, 7, 100, 100, 100 * (k + 1));
        add(f, a, &r);
    }
    hb_report_t r = nic_report(S0, HB_REPORTER_SERVER, 7, 150, 150, 100);
    hb_aggregate_add(&f->a, b, &r, f->now);
    hb_monitor_second_t s;
    ck_assert_int_eq(hb_aggregate_get(&f->a, S0, HB_REPORTER_SERVER, &s), 0);
    ck_assert_uint_eq(s.reports, 2);
    ck_assert_uint_eq(s.nic_hosts, 1);
    ck_assert_uint_eq(s.per_second[HB_CTR_NIC_RX_PACKETS], 100);
    r = nic_report(S0 + w, HB_REPORTER_SERVER, 7, 150, 90, 100);
    hb_aggregate_add(&f->a, b, &r, f->now);
    ck_assert_int_eq(hb_aggregate_get(&f->a, S0 + w, HB_REPORTER_SERVER, &s), 0);
    ck_assert_uint_eq(s.nic_hosts, 1);
    ck_assert_uint_eq(s.per_second[HB_CTR_NIC_RX_PACKETS], 150);
    ck_assert_uint_eq(s.per_second[HB_CTR_NIC_TX_PACKETS], 100);
    ck_assert_uint_eq(s.per_second[HB_CTR_REQUESTS], 20);
    teardown(f);
}
END_TEST

START_TEST(test_nic_host_table_makes_room)
{
    /* Room for two reporters, so for two hosts at a time. */
    hb_aggregate_t a;
    hb_aggregate_options_t o = {.max_reporters = 2};
    ck_assert_int_eq(hb_aggregate_init(&a, &o), 0);
    hb_aggregate_reporter_t r0 = {0}, r1 = {0}, r2 = {0};
    ck_assert_int_eq(hb_aggregate_join(&a, &r0, T0_MS), 0);
    ck_assert_int_eq(hb_aggregate_join(&a, &r1, T0_MS), 0);
    hb_report_t r = nic_report(S0, HB_REPORTER_SERVER, 1, 10, 10, 1000);
    hb_aggregate_add(&a, &r0, &r, T0_MS);
    r = nic_report(S0, HB_REPORTER_SERVER, 2, 20, 20, 2000);
    hb_aggregate_add(&a, &r1, &r, T0_MS);
    ck_assert_uint_eq(a.nhosts, 2);
    /* r1's process now names another host: its old one has no reporter left and makes room. */
    r = nic_report(S0 + 1, HB_REPORTER_SERVER, 3, 30, 30, 300);
    hb_aggregate_add(&a, &r1, &r, T0_MS);
    ck_assert_uint_eq(a.nhosts, 2);
    /* r0 leaves and r2 comes with a fourth host: host 1 makes room, its total still counted. */
    hb_aggregate_leave(&a, &r0);
    ck_assert_int_eq(hb_aggregate_join(&a, &r2, T0_MS), 0);
    r = nic_report(S0 + 1, HB_REPORTER_SERVER, 4, 40, 40, 400);
    hb_aggregate_add(&a, &r2, &r, T0_MS);
    ck_assert_uint_eq(a.nhosts, 2);
    const hb_monitor_second_t *s = hb_aggregate_at(&a, S0 + 1, HB_REPORTER_SERVER);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->nic_hosts, 2);
    ck_assert_uint_eq(s->per_second[HB_CTR_NIC_RX_PACKETS], 30 + 40);
    ck_assert_uint_eq(s->cumulative[HB_CTR_NIC_RX_PACKETS], 1000 + 2000 + 300 + 400);
    hb_aggregate_close(&a);
}
END_TEST

static Suite *aggregate_suite(void)
{
    Suite *s = suite_create("aggregate");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_and_close);
    tcase_add_test(tc, test_join_and_leave);
    tcase_add_test(tc, test_sums_and_latency_maximum);
    tcase_add_test(tc, test_cumulative_rule_and_leaving);
    tcase_add_test(tc, test_order_and_skipped_seconds);
    tcase_add_test(tc, test_grace_period_and_late_reports);
    tcase_add_test(tc, test_known_window);
    tcase_add_test(tc, test_history_ring_too_old_and_flush);
    tcase_add_test(tc, test_refused_reports_change_nothing);
    tcase_add_test(tc, test_on_second_cannot_reenter);
    tcase_add_test(tc, test_series_and_metrics);
    tcase_add_test(tc, test_application_counters_by_name);
    tcase_add_test(tc, test_csv_columns_are_the_catalogue);
    tcase_add_test(tc, test_nic_summed_per_host_not_per_process);
    tcase_add_test(tc, test_nic_cumulative_per_host_through_leaving);
    tcase_add_test(tc, test_nic_late_reports_within_the_host_window);
    tcase_add_test(tc, test_nic_host_table_makes_room);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(aggregate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
