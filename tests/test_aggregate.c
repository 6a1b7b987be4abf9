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

static fixture_t *setup_instances(unsigned history_s, unsigned grace_ms, unsigned known_ms,
                                  unsigned max_instances)
{
    fixture_t *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    hb_aggregate_options_t o = {.history_s = history_s,
                                .grace_ms = grace_ms,
                                .known_ms = known_ms,
                                .on_second = capture,
                                .on_second_arg = f,
                                .max_instances = max_instances};
    ck_assert_int_eq(hb_aggregate_init(&f->a, &o), 0);
    f->now = T0_MS;
    return f;
}

static fixture_t *setup(unsigned history_s, unsigned grace_ms, unsigned known_ms)
{
    return setup_instances(history_s, grace_ms, known_ms, 0);
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
    /* Both reporters without an instance identity or a peer: an instance each, by serial. */
    ck_assert_ptr_nonnull(strstr(buf, "},\"instances\":[{\"label\":\"reporter-1\","
                                      "\"type\":\"server\",\"live\":true,\"reports\":[1],"
                                      "\"requests\":[100],"));
    ck_assert_str_eq(strstr(buf, "]},{\"label\":\"reporter-2\""),
                     "]},{\"label\":\"reporter-2\",\"type\":\"client\",\"live\":true,"
                     "\"reports\":[1],\"requests\":[0],\"shake_handed_out\":[0],"
                     "\"shake_received\":[0],\"claims_granted\":[0],\"connections\":[0]}],"
                     "\"instance_table\":{\"tracked\":2,\"max\":256,\"untracked_reports\":0}}");

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

/* ---- instances ---- */

/* A report of second from the instance serving at 127.0.0.1:port (no identity for port 0), with
 * req requests and figures derived from it. */
static hb_report_t inst_report(uint64_t second, uint64_t type, int port, uint64_t req)
{
    hb_report_t r = report(second, type);
    if (port > 0)
        r.per_second[HB_CTR_INSTANCE] = hb_report_instance("127.0.0.1", port);
    r.per_second[HB_CTR_REQUESTS] = req;
    r.per_second[HB_CTR_SHAKE_HANDED_OUT] = req / 10;
    r.per_second[HB_CTR_SHAKE_RECEIVED] = req / 20;
    r.per_second[HB_CTR_CLAIMS_GRANTED] = req / 100;
    r.cumulative[HB_CTR_CONN_OPENED] = req + 5;
    r.cumulative[HB_CTR_CONN_CLOSED] = 5;
    return r;
}

/* The index of the instance of type t labelled label, or -1. */
static int find_instance(const fixture_t *f, uint64_t t, const char *label)
{
    for (unsigned i = 0; i < f->a.ninstances; i++) {
        hb_instance_second_t is;
        ck_assert_int_ne(hb_aggregate_instance_get(&f->a, i, 0, &is), HB_EINVAL);
        if (is.type == t && strcmp(is.label, label) == 0)
            return (int)i;
    }
    return -1;
}

/* Every (second, type) output COMPLETE: its per-second figures are the sums of its instances'. */
static void assert_instances_sum_to_totals(const fixture_t *f)
{
    static const unsigned slot[4] = {HB_CTR_REQUESTS, HB_CTR_SHAKE_HANDED_OUT,
                                     HB_CTR_SHAKE_RECEIVED, HB_CTR_CLAIMS_GRANTED};
    for (int k = 0; k < f->nout; k++) {
        const hb_monitor_second_t *s = &f->out[k];
        ck_assert_int_eq(s->status, HB_MONITOR_COMPLETE);
        uint64_t sum[4] = {0};
        unsigned reports = 0;
        for (unsigned i = 0; i < f->a.ninstances; i++) {
            hb_instance_second_t is;
            if (hb_aggregate_instance_get(&f->a, i, s->second, &is) != 0 || is.type != s->type)
                continue;
            reports += is.reports;
            for (unsigned j = 0; j < 4; j++)
                sum[j] += is.v[j];
        }
        ck_assert_uint_eq(reports, s->reports);
        for (unsigned j = 0; j < 4; j++)
            ck_assert_uint_eq(sum[j], s->per_second[slot[j]]);
    }
}

/* Three reporters, three instances: a series each, labelled by the address they serve at, whose
 * sums are the totals; the line, CSV, series and metrics show them. */
START_TEST(test_instances_three_reporters_sum_to_the_total)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = join(f, i);
        snprintf(r[i]->peer, sizeof r[i]->peer, "127.0.0.1:%d", 50000 + i);
    }
    for (uint64_t k = 0; k < 3; k++) {
        for (int i = 0; i < 3; i++) {
            hb_report_t rp =
                inst_report(S0 + k, HB_REPORTER_SERVER, 7001 + i, 100 * (uint64_t)(i + 1) + k);
            ck_assert_int_eq(add(f, r[i], &rp), HB_AGGREGATE_ADDED);
        }
    }
    ck_assert_int_eq(f->nout, 3);
    ck_assert_uint_eq(f->a.ninstances, 3);
    ck_assert_uint_eq(f->a.instances_untracked, 0);
    assert_instances_sum_to_totals(f);
    ck_assert_uint_eq(f->out[2].per_second[HB_CTR_REQUESTS], 100 + 200 + 300 + 3 * 2);
    for (int i = 0; i < 3; i++) {
        char label[32];
        snprintf(label, sizeof label, "127.0.0.1:%d", 7001 + i);
        int at = find_instance(f, HB_REPORTER_SERVER, label);
        ck_assert_int_eq(at, i); /* table order: first seen first */
        hb_instance_second_t is;
        ck_assert_int_eq(hb_aggregate_instance_get(&f->a, (unsigned)at, S0 + 2, &is), 0);
        ck_assert_int_eq(is.live, 1);
        ck_assert_uint_eq(is.reports, 1);
        ck_assert_uint_eq(is.newest, S0 + 2);
        ck_assert_uint_eq(is.v[HB_INSTANCE_REQUESTS], 100 * (uint64_t)(i + 1) + 2);
        ck_assert_uint_eq(is.v[HB_INSTANCE_CONNECTIONS], 100 * (uint64_t)(i + 1) + 2);
    }
    hb_instance_second_t is;
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0 + 3, &is), HB_ENOENT);
    ck_assert_uint_eq(is.reports, 0);
    ck_assert_str_eq(is.label, "127.0.0.1:7001");
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 3, S0, &is), HB_EINVAL);
    ck_assert_int_eq(hb_aggregate_instance_get(NULL, 0, S0, &is), HB_EINVAL);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0, NULL), HB_EINVAL);

    /* The line and the CSV. */
    char buf[65536], want[512];
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 1, S0 + 1, &is), 0);
    int n = hb_aggregate_format_instance_line(&is, buf, HB_AGGREGATE_LINE_MAX);
    snprintf(want, sizeof want, "%llu server 127.0.0.1:7002 [1] req=201 out=20 claims=2 conn=201",
             (unsigned long long)(S0 + 1));
    ck_assert_str_eq(buf, want);
    ck_assert_int_eq(n, (int)strlen(want));
    ck_assert_int_eq(hb_aggregate_format_instance_line(&is, buf, (size_t)n), HB_ENOBUFS);
    ck_assert_int_eq(hb_aggregate_format_instance_line(NULL, buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_aggregate_format_instance_csv_header(buf, sizeof buf), 97);
    ck_assert_str_eq(buf, "second,type,instance,reports,requests,shake_handed_out,"
                          "shake_received,claims_granted,connections\n");
    ck_assert_int_gt(hb_aggregate_format_instance_csv_row(&is, buf, sizeof buf), 0);
    snprintf(want, sizeof want, "%llu,server,127.0.0.1:7002,1,201,20,10,2,201\n",
             (unsigned long long)(S0 + 1));
    ck_assert_str_eq(buf, want);
    is.type = HB_REPORTER_CLIENT;
    ck_assert_int_gt(hb_aggregate_format_instance_line(&is, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, " client 127.0.0.1:7002 [1] req=201 env=10 claims=2 "));

    /* The series: an entry per instance, aligned with the seconds. */
    n = hb_aggregate_format_series(&f->a, NULL, 42, 300, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(buf,
                                 ",\"instances\":[{\"label\":\"127.0.0.1:7001\","
                                 "\"type\":\"server\",\"live\":true,\"reports\":[1,1,1],"
                                 "\"requests\":[100,101,102],\"shake_handed_out\":[10,10,10],"
                                 "\"shake_received\":[5,5,5],\"claims_granted\":[1,1,1],"
                                 "\"connections\":[100,101,102]},{\"label\":\"127.0.0.1:7002\""));
    ck_assert_ptr_nonnull(strstr(buf, "\"requests\":[300,301,302]"));
    ck_assert_ptr_nonnull(
        strstr(buf, "\"instance_table\":{\"tracked\":3,\"max\":256,\"untracked_reports\":0}"));

    /* Prometheus: a gauge per figure, a sample per instance, the label instance. */
    hb_monitor_stats_t st = {0};
    n = hb_aggregate_format_metrics(&f->a, &st, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(buf,
                                 "# HELP hongbao_server_instance_requests_per_second Requests, "
                                 "in the report second, of each of the servers (label "
                                 "instance).\n"
                                 "# TYPE hongbao_server_instance_requests_per_second gauge\n"
                                 "hongbao_server_instance_requests_per_second{instance=\""
                                 "127.0.0.1:7001\"} 102\n"
                                 "hongbao_server_instance_requests_per_second{instance=\""
                                 "127.0.0.1:7002\"} 202\n"
                                 "hongbao_server_instance_requests_per_second{instance=\""
                                 "127.0.0.1:7003\"} 302\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_server_instance_connections{instance=\""
                                      "127.0.0.1:7003\"} 302\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_monitor_instances 3\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_monitor_untracked_reports_total 0\n"));
    ck_assert_ptr_null(strstr(buf, "hongbao_client_instance"));
    teardown(f);
}
END_TEST

/* A reporter that stops: its line ends (live false, nothing after its last second, no sample in
 * the metrics), the totals go on and are the sums of those still reporting. */
START_TEST(test_instance_that_stops_ends_its_line)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *r[3];
    for (int i = 0; i < 3; i++)
        r[i] = join(f, i);
    for (uint64_t k = 0; k < 4; k++) {
        if (k == 2)
            hb_aggregate_leave(&f->a, r[2]);
        for (int i = 0; i < (k < 2 ? 3 : 2); i++) {
            hb_report_t rp = inst_report(S0 + k, HB_REPORTER_SERVER, 7001 + i, 1000 + k);
            add(f, r[i], &rp);
        }
    }
    ck_assert_int_eq(f->nout, 4); /* the one gone is not waited for */
    assert_instances_sum_to_totals(f);
    ck_assert_uint_eq(f->out[3].per_second[HB_CTR_REQUESTS], 2 * 1003);
    ck_assert_uint_eq(f->out[1].per_second[HB_CTR_REQUESTS], 3 * 1001);
    hb_instance_second_t is;
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 2, S0 + 2, &is), HB_ENOENT);
    ck_assert_int_eq(is.live, 0);
    ck_assert_uint_eq(is.newest, S0 + 1);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 1, S0 + 3, &is), 0);
    ck_assert_int_eq(is.live, 1);

    char buf[65536];
    ck_assert_int_gt(hb_aggregate_format_series(&f->a, NULL, 42, 300, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, "{\"label\":\"127.0.0.1:7003\",\"type\":\"server\","
                                      "\"live\":false,\"reports\":[1,1,null,null],"
                                      "\"requests\":[1000,1001,null,null],"));
    ck_assert_ptr_nonnull(strstr(buf, "{\"label\":\"127.0.0.1:7002\",\"type\":\"server\","
                                      "\"live\":true,\"reports\":[1,1,1,1],"));
    /* Outside the seconds asked for, the instance that stopped is not listed. */
    ck_assert_int_gt(hb_aggregate_format_series(&f->a, NULL, 42, 2, buf, sizeof buf), 0);
    ck_assert_ptr_null(strstr(buf, "7003"));
    ck_assert_ptr_nonnull(strstr(buf, "\"tracked\":3,"));

    ck_assert_int_gt(hb_aggregate_format_metrics(&f->a, NULL, buf, sizeof buf), 0);
    ck_assert_ptr_null(strstr(buf, "7003"));
    ck_assert_ptr_nonnull(strstr(buf, "hongbao_server_instance_requests_per_second{instance=\""
                                      "127.0.0.1:7002\"} 1003\n"));
    teardown(f);
}
END_TEST

/* What an instance is: a restart at the same address continues its line; without an identity, a
 * new connection is a new line (by its peer address, else its serial); an identity with a port
 * alone takes the peer's address; labels keep to characters that need no escaping. */
START_TEST(test_instance_identity_restart_and_labels)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *a = join(f, 0);
    hb_report_t rp = inst_report(S0, HB_REPORTER_SERVER, 7001, 10);
    add(f, a, &rp);
    hb_aggregate_leave(&f->a, a);
    hb_aggregate_reporter_t *again = join(f, 1); /* the process restarted at the same address */
    rp = inst_report(S0 + 1, HB_REPORTER_SERVER, 7001, 20);
    add(f, again, &rp);
    ck_assert_uint_eq(f->a.ninstances, 1);
    hb_instance_second_t is;
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0, &is), 0);
    ck_assert_int_eq(is.live, 1);
    ck_assert_uint_eq(is.v[HB_INSTANCE_REQUESTS], 10);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0 + 1, &is), 0);
    ck_assert_uint_eq(is.v[HB_INSTANCE_REQUESTS], 20);
    /* The same address as a client is another instance. */
    hb_aggregate_reporter_t *cl = join(f, 2);
    rp = inst_report(S0 + 1, HB_REPORTER_CLIENT, 7001, 5);
    add(f, cl, &rp);
    ck_assert_uint_eq(f->a.ninstances, 2);

    /* No identity: the connection's peer address, a new one on each connection. */
    hb_aggregate_reporter_t *p = &f->rep[3];
    snprintf(p->peer, sizeof p->peer, "127.0.0.1:40001");
    join(f, 3);
    ck_assert_str_eq(p->peer, "127.0.0.1:40001"); /* kept by join */
    rp = inst_report(S0 + 1, HB_REPORTER_CLIENT, 0, 5);
    add(f, p, &rp);
    ck_assert_int_eq(find_instance(f, HB_REPORTER_CLIENT, "127.0.0.1:40001"), 2);
    hb_aggregate_leave(&f->a, p);
    snprintf(p->peer, sizeof p->peer, "127.0.0.1:40002");
    join(f, 3);
    add(f, p, &rp);
    ck_assert_int_eq(find_instance(f, HB_REPORTER_CLIENT, "127.0.0.1:40002"), 3);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 2, S0 + 1, &is), 0);
    ck_assert_int_eq(is.live, 0);

    /* A port alone (an IPv6 or wildcard listener): the peer's address completes it. */
    hb_aggregate_reporter_t *v6 = &f->rep[4];
    snprintf(v6->peer, sizeof v6->peer, "[::1]:5555");
    join(f, 4);
    rp = inst_report(S0 + 1, HB_REPORTER_SERVER, 0, 7);
    rp.per_second[HB_CTR_INSTANCE] = hb_report_instance("::", 7005);
    add(f, v6, &rp);
    ck_assert_int_ge(find_instance(f, HB_REPORTER_SERVER, "[::1]:7005"), 0);

    /* Garbage in the identity slot is no identity; a peer with odd characters is tamed. */
    hb_aggregate_reporter_t *odd = &f->rep[5];
    snprintf(odd->peer, sizeof odd->peer, "a\"b\\c\nd,e");
    join(f, 5);
    rp = inst_report(S0 + 1, HB_REPORTER_SERVER, 0, 7);
    rp.per_second[HB_CTR_INSTANCE] = 12345;
    add(f, odd, &rp);
    ck_assert_int_ge(find_instance(f, HB_REPORTER_SERVER, "a_b_c_d_e"), 0);
    /* Nothing known: its serial. */
    hb_aggregate_reporter_t *anon = join(f, 6);
    add(f, anon, &rp);
    ck_assert_int_ge(find_instance(f, HB_REPORTER_SERVER, "reporter-8"), 0);

    /* A reporter whose identity changes moves to the other instance. */
    rp = inst_report(S0 + 2, HB_REPORTER_SERVER, 7009, 1);
    add(f, again, &rp);
    int moved = find_instance(f, HB_REPORTER_SERVER, "127.0.0.1:7009");
    ck_assert_int_ge(moved, 0);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0 + 1, &is), 0);
    ck_assert_int_eq(is.live, 0);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, (unsigned)moved, S0 + 2, &is), 0);
    ck_assert_int_eq(is.live, 1);
    teardown(f);
}
END_TEST

/* Two processes naming one address (a restart overlapping the old process, or a mistake) add
 * into one line; an instance keeps HB_AGGREGATE_INSTANCE_HISTORY_S seconds, and a report older
 * than that against its newest changes nothing there (the totals still take it). */
START_TEST(test_instance_shared_address_and_window)
{
    fixture_t *f = setup(0, 0, 0);
    hb_aggregate_reporter_t *old = join(f, 0), *young = join(f, 1);
    hb_report_t rp = inst_report(S0, HB_REPORTER_SERVER, 7001, 30);
    add(f, old, &rp);
    rp = inst_report(S0, HB_REPORTER_SERVER, 7001, 12);
    add(f, young, &rp);
    ck_assert_uint_eq(f->a.ninstances, 1);
    hb_instance_second_t is;
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0, &is), 0);
    ck_assert_uint_eq(is.reports, 2);
    ck_assert_uint_eq(is.v[HB_INSTANCE_REQUESTS], 42);
    ck_assert_uint_eq(is.v[HB_INSTANCE_CONNECTIONS], 42);
    assert_instances_sum_to_totals(f);
    /* The old one leaves: the instance stays live through the young one. */
    hb_aggregate_leave(&f->a, old);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0, &is), 0);
    ck_assert_int_eq(is.live, 1);

    /* A second HB_AGGREGATE_INSTANCE_HISTORY_S later takes S0's place in the series; a late
     * report of S0 (still in the monitor's history) then leaves the instance's series alone. */
    uint64_t later = S0 + HB_AGGREGATE_INSTANCE_HISTORY_S;
    f->now += (uint64_t)HB_AGGREGATE_INSTANCE_HISTORY_S * 1000;
    rp = inst_report(later, HB_REPORTER_SERVER, 7001, 5);
    add(f, young, &rp);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0, &is), HB_ENOENT);
    hb_aggregate_reporter_t *late = join(f, 2);
    rp = inst_report(S0, HB_REPORTER_SERVER, 7001, 1000);
    ck_assert_int_eq(add(f, late, &rp), HB_AGGREGATE_LATE);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, later, &is), 0);
    ck_assert_uint_eq(is.v[HB_INSTANCE_REQUESTS], 5);
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0, &is), HB_ENOENT);
    hb_monitor_second_t s;
    ck_assert_int_eq(hb_aggregate_get(&f->a, S0, HB_REPORTER_SERVER, &s), 0);
    ck_assert_uint_eq(s.per_second[HB_CTR_REQUESTS], 1042);
    teardown(f);
}
END_TEST

/* The table holds max_instances: past it reports still count in the totals and in
 * instances_untracked; an instance that stopped makes room for a new one. */
START_TEST(test_instance_table_bound)
{
    hb_aggregate_t bad;
    hb_aggregate_options_t o = {.max_instances = HB_AGGREGATE_MAX_INSTANCES + 1};
    ck_assert_int_eq(hb_aggregate_init(&bad, &o), HB_EINVAL);

    fixture_t *f = setup_instances(0, 0, 0, 2);
    ck_assert_uint_eq(f->a.opts.max_instances, 2);
    hb_aggregate_reporter_t *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = join(f, i);
    for (int i = 0; i < 4; i++) {
        hb_report_t rp = inst_report(S0, HB_REPORTER_SERVER, 7001 + i, 100);
        ck_assert_int_eq(add(f, r[i], &rp), HB_AGGREGATE_ADDED);
    }
    ck_assert_uint_eq(f->a.ninstances, 2);
    ck_assert_uint_eq(f->a.instances_untracked, 2);
    ck_assert_int_eq(f->nout, 1);
    ck_assert_uint_eq(f->out[0].per_second[HB_CTR_REQUESTS], 400); /* the totals have them all */
    ck_assert_uint_eq(f->out[0].reports, 4);

    /* The first instance stops; the third takes its place at its next report. */
    hb_aggregate_leave(&f->a, r[0]);
    for (int i = 1; i < 4; i++) {
        hb_report_t rp = inst_report(S0 + 1, HB_REPORTER_SERVER, 7001 + i, 100);
        add(f, r[i], &rp);
    }
    ck_assert_uint_eq(f->a.ninstances, 2);
    ck_assert_uint_eq(f->a.instances_untracked, 3);
    ck_assert_int_eq(find_instance(f, HB_REPORTER_SERVER, "127.0.0.1:7001"), -1);
    int third = find_instance(f, HB_REPORTER_SERVER, "127.0.0.1:7003");
    ck_assert_int_eq(third, 0);
    hb_instance_second_t is;
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0, &is), HB_ENOENT); /* a new series */
    ck_assert_int_eq(hb_aggregate_instance_get(&f->a, 0, S0 + 1, &is), 0);
    ck_assert_uint_eq(f->out[1].per_second[HB_CTR_REQUESTS], 300);

    char buf[65536];
    hb_monitor_stats_t st = {0};
    ck_assert_int_gt(hb_aggregate_format_metrics(&f->a, &st, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_monitor_instances 2\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhongbao_monitor_untracked_reports_total 3\n"));
    ck_assert_int_gt(hb_aggregate_format_series(&f->a, NULL, 42, 300, buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(
        strstr(buf, "\"instance_table\":{\"tracked\":2,\"max\":2,\"untracked_reports\":3}"));
    teardown(f);
}
END_TEST

/* Many instances with the longest labels and widest values: the metrics fit their stated bound. */
START_TEST(test_instance_metrics_fit_their_bound)
{
    enum { N = 8 };
    fixture_t *f = setup(0, 0, 0);
    for (int i = 0; i < N; i++) {
        hb_aggregate_reporter_t *rep = &f->rep[i];
        memset(rep->peer, 'x', sizeof rep->peer - 1);
        rep->peer[sizeof rep->peer - 1] = '\0';
        rep->peer[0] = (char)('a' + i);
        join(f, i);
        hb_report_t rp = report(S0, i % 2 ? HB_REPORTER_CLIENT : HB_REPORTER_SERVER);
        for (int k = 0; k < HB_COUNTER_SLOTS; k++)
            rp.per_second[k] = rp.cumulative[k] = UINT64_MAX;
        rp.cumulative[HB_CTR_CONN_CLOSED] = 0;
        add(f, rep, &rp);
    }
    ck_assert_uint_eq(f->a.ninstances, N);
    size_t cap = HB_AGGREGATE_METRICS_MAX + N * HB_AGGREGATE_INSTANCE_METRICS_MAX;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    hb_monitor_stats_t st = {0};
    int n = hb_aggregate_format_metrics(&f->a, &st, buf, cap);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(buf, "hongbao_client_instance_connections{instance=\"bxxx"));
    ck_assert_int_eq(hb_aggregate_format_metrics(&f->a, &st, buf, (size_t)n), HB_ENOBUFS);
    /* What the instances add (their families' lines) stays within their share. */
    ck_assert_int_eq(hb_aggregate_format_metrics(&f->a, &st, buf, cap), n);
    size_t added = 0;
    for (char *line = buf; *line != '\0';) {
        size_t len = strcspn(line, "\n") + 1;
        char keep = line[len - 1];
        line[len - 1] = '\0';
        if (strstr(line, "_instance_") != NULL)
            added += len;
        line[len - 1] = keep;
        line += len;
    }
    ck_assert_uint_gt(added, 0);
    ck_assert_uint_le(added, N * HB_AGGREGATE_INSTANCE_METRICS_MAX);
    free(buf);
    teardown(f);
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
    tcase_add_test(tc, test_instances_three_reporters_sum_to_the_total);
    tcase_add_test(tc, test_instance_that_stops_ends_its_line);
    tcase_add_test(tc, test_instance_identity_restart_and_labels);
    tcase_add_test(tc, test_instance_shared_address_and_window);
    tcase_add_test(tc, test_instance_table_bound);
    tcase_add_test(tc, test_instance_metrics_fit_their_bound);
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
