/* Unit tests for the hist module: bucket arithmetic, exactness of small values, percentiles of
 * known and random distributions against exact ones, record_n, merge, interval subtraction,
 * extremes and format. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/hist.h"

/* splitmix64: a local, seeded generator so every run sees the same data. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Values over every magnitude, with small ones and repeats mixed in. */
static uint64_t rng_value(uint64_t *state)
{
    uint64_t kind = rng_next(state) % 8;
    if (kind == 0)
        return rng_next(state) % 100;
    if (kind == 1)
        return 1000 + rng_next(state) % 4; /* many repeats */
    return rng_next(state) >> (rng_next(state) % 64);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* true + true / 32 + 1, saturating: the largest answer the contract allows. */
static uint64_t upper_bound(uint64_t true_value)
{
    uint64_t b = true_value + (true_value >> 5);
    if (b < true_value)
        return UINT64_MAX;
    return b == UINT64_MAX ? b : b + 1;
}

static uint64_t expected_answer(const hb_hist_t *h, uint64_t true_value)
{
    uint64_t high = hb_hist_bucket_highest(hb_hist_bucket_index(true_value));
    return high < h->max ? high : h->max;
}

START_TEST(test_buckets_tile_the_whole_range)
{
    ck_assert_uint_eq(HB_HIST_BUCKETS, 1920);
    ck_assert_uint_eq(hb_hist_bucket_lowest(0), 0);
    ck_assert_uint_eq(hb_hist_bucket_highest(HB_HIST_BUCKETS - 1), UINT64_MAX);
    for (size_t i = 0; i < HB_HIST_BUCKETS; i++) {
        uint64_t lo = hb_hist_bucket_lowest(i), hi = hb_hist_bucket_highest(i);
        ck_assert_uint_le(lo, hi);
        ck_assert_uint_eq(hb_hist_bucket_index(lo), i);
        ck_assert_uint_eq(hb_hist_bucket_index(hi), i);
        ck_assert_uint_eq(hb_hist_bucket_index(lo + (hi - lo) / 2), i);
        /* Width at most 1/32 of the bucket's lowest value: the 3 % bound. */
        ck_assert_uint_le(hi - lo, lo >> HB_HIST_SUB_BITS);
        if (i > 0)
            ck_assert_uint_eq(lo, hb_hist_bucket_highest(i - 1) + 1);
    }
    ck_assert_uint_eq(hb_hist_bucket_lowest(HB_HIST_BUCKETS), UINT64_MAX);
    ck_assert_uint_eq(hb_hist_bucket_highest(HB_HIST_BUCKETS), UINT64_MAX);
    ck_assert_uint_eq(hb_hist_bucket_highest(SIZE_MAX), UINT64_MAX);
}
END_TEST

START_TEST(test_bucket_index_follows_the_formula)
{
    ck_assert_uint_eq(hb_hist_bucket_index(0), 0);
    ck_assert_uint_eq(hb_hist_bucket_index(31), 31);
    ck_assert_uint_eq(hb_hist_bucket_index(32), 32);
    ck_assert_uint_eq(hb_hist_bucket_index(63), 63);
    ck_assert_uint_eq(hb_hist_bucket_index(64), 64);
    ck_assert_uint_eq(hb_hist_bucket_index(65), 64);
    ck_assert_uint_eq(hb_hist_bucket_index(66), 65);
    ck_assert_uint_eq(hb_hist_bucket_index(127), 95);
    ck_assert_uint_eq(hb_hist_bucket_index(128), 96);
    /* 500 = 0b111110100: msb 8, next 5 bits 11110 = 30, block 8 - 5 + 1 = 4. */
    ck_assert_uint_eq(hb_hist_bucket_index(500), (4u << 5) + 30);
    ck_assert_uint_eq(hb_hist_bucket_lowest((4u << 5) + 30), 496);
    ck_assert_uint_eq(hb_hist_bucket_highest((4u << 5) + 30), 503);
    ck_assert_uint_eq(hb_hist_bucket_index(UINT64_C(1) << 63), 1888);
    ck_assert_uint_eq(hb_hist_bucket_index((UINT64_C(1) << 63) - 1), 1887);
    ck_assert_uint_eq(hb_hist_bucket_index(UINT64_MAX), 1919);
    ck_assert_uint_eq(hb_hist_bucket_lowest(1919), UINT64_C(63) << 58);
}
END_TEST

START_TEST(test_small_values_are_exact)
{
    hb_hist_t h;
    hb_hist_init(&h);
    for (uint64_t v = 0; v < 64; v++)
        hb_hist_record(&h, v);
    for (uint64_t v = 0; v < 64; v++) {
        ck_assert_uint_eq(h.buckets[v], 1);
        /* p = (v + 1) / 64 is rank v + 1, whose value is v, exactly. */
        double p = 100.0 * (double)(v + 1) / 64.0;
        ck_assert_uint_eq(hb_hist_percentile(&h, p), v);
    }
    ck_assert_uint_eq(h.count, 64);
    ck_assert_uint_eq(h.sum, 63 * 64 / 2);
    ck_assert_uint_eq(h.min, 0);
    ck_assert_uint_eq(h.max, 63);
    ck_assert_uint_eq(hb_hist_percentile(&h, 0.0), 0);
    ck_assert_uint_eq(hb_hist_percentile(&h, 1.0), 0);
    ck_assert_uint_eq(hb_hist_percentile(&h, 50.0), 31);
    ck_assert_uint_eq(hb_hist_percentile(&h, 50.1), 32);
}
END_TEST

START_TEST(test_empty_histogram)
{
    hb_hist_t h, zero;
    memset(&zero, 0, sizeof zero);
    memset(&h, 0xA5, sizeof h);
    hb_hist_init(&h);
    ck_assert_mem_eq(&h, &zero, sizeof h);
    ck_assert_uint_eq(hb_hist_percentile(&h, 0.0), 0);
    ck_assert_uint_eq(hb_hist_percentile(&h, 50.0), 0);
    ck_assert_uint_eq(hb_hist_percentile(&h, 100.0), 0);
    ck_assert_double_eq(hb_hist_mean(&h), 0.0);
}
END_TEST

START_TEST(test_init_resets)
{
    hb_hist_t h, zero;
    memset(&zero, 0, sizeof zero);
    hb_hist_init(&h);
    hb_hist_record(&h, 7);
    hb_hist_record(&h, UINT64_MAX);
    hb_hist_init(&h);
    ck_assert_mem_eq(&h, &zero, sizeof h);
    hb_hist_record(&h, 9);
    ck_assert_uint_eq(h.min, 9);
    ck_assert_uint_eq(h.max, 9);
}
END_TEST

START_TEST(test_single_value)
{
    hb_hist_t h;
    hb_hist_init(&h);
    hb_hist_record(&h, 12345);
    static const double ps[] = {0.0, 0.001, 1.0, 50.0, 99.0, 99.999, 100.0};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        ck_assert_uint_eq(hb_hist_percentile(&h, ps[i]), 12345);
    ck_assert_uint_eq(h.count, 1);
    ck_assert_uint_eq(h.sum, 12345);
    ck_assert_uint_eq(h.min, 12345);
    ck_assert_uint_eq(h.max, 12345);
    ck_assert_uint_eq(h.buckets[hb_hist_bucket_index(12345)], 1);
    ck_assert_double_eq(hb_hist_mean(&h), 12345.0);
}
END_TEST

START_TEST(test_out_of_range_p_is_clamped)
{
    hb_hist_t h;
    hb_hist_init(&h);
    for (uint64_t v = 100; v <= 200; v++)
        hb_hist_record(&h, v);
    ck_assert_uint_eq(hb_hist_percentile(&h, -5.0), 100);
    ck_assert_uint_eq(hb_hist_percentile(&h, NAN), 100);
    ck_assert_uint_eq(hb_hist_percentile(&h, 250.0), 200);
    ck_assert_uint_eq(hb_hist_percentile(&h, INFINITY), 200);
    /* The tiniest p > 0 is still rank 1 (100, in bucket [100, 101]), even when p / 100
     * underflows to 0. */
    ck_assert_uint_eq(hb_hist_percentile(&h, 1e-300), 101);
    ck_assert_uint_eq(hb_hist_percentile(&h, 5e-324), 101);
}
END_TEST

START_TEST(test_uniform_million)
{
    hb_hist_t h;
    hb_hist_init(&h);
    for (uint64_t v = 1; v <= 1000000; v++)
        hb_hist_record(&h, v);
    ck_assert_uint_eq(h.count, 1000000);
    ck_assert_uint_eq(h.sum, UINT64_C(500000500000));
    ck_assert_uint_eq(h.min, 1);
    ck_assert_uint_eq(h.max, 1000000);
    ck_assert_uint_eq(hb_hist_percentile(&h, 0.0), 1);
    ck_assert_uint_eq(hb_hist_percentile(&h, 100.0), 1000000);
    ck_assert_double_eq(hb_hist_mean(&h), 500000.5);

    static const struct {
        double p;
        uint64_t true_value;
    } cases[] = {{50.0, 500000}, {90.0, 900000},  {99.0, 990000},
                 {99.9, 999000}, {99.99, 999900}, {0.001, 10}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = hb_hist_percentile(&h, cases[i].p);
        uint64_t t = cases[i].true_value;
        ck_assert_uint_ge(got, t);
        /* Within 3.2 %: got <= t * 1.032. */
        ck_assert_uint_le(got * 1000, t * 1032);
        ck_assert_uint_eq(got, expected_answer(&h, t));
    }
    /* 500000 lies in [499712, 507903]. */
    ck_assert_uint_eq(hb_hist_percentile(&h, 50.0), 507903);
}
END_TEST

START_TEST(test_record_n_equals_n_records)
{
    static const uint64_t values[] = {0, 31, 64, 1000, (UINT64_C(1) << 40) + 123, UINT64_MAX};
    static const uint64_t ns[] = {0, 1, 7, 1000};
    hb_hist_t a, b;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
            hb_hist_init(&a);
            hb_hist_init(&b);
            /* Something already there, so min/max/sum updates are exercised too. */
            hb_hist_record(&a, 500);
            hb_hist_record(&b, 500);
            hb_hist_record_n(&a, values[i], ns[j]);
            for (uint64_t k = 0; k < ns[j]; k++)
                hb_hist_record(&b, values[i]);
            ck_assert_mem_eq(&a, &b, sizeof a);
        }
    }
    /* n == 0 on an empty histogram leaves it empty (min not set). */
    hb_hist_init(&a);
    hb_hist_init(&b);
    hb_hist_record_n(&a, 42, 0);
    ck_assert_mem_eq(&a, &b, sizeof a);
    /* A product v * n past UINT64_MAX saturates sum, as the repeated records do. */
    hb_hist_record_n(&a, UINT64_C(1) << 40, UINT64_C(1) << 30);
    ck_assert_uint_eq(a.sum, UINT64_MAX);
    ck_assert_uint_eq(a.count, UINT64_C(1) << 30);
    ck_assert_uint_eq(a.buckets[hb_hist_bucket_index(UINT64_C(1) << 40)], UINT64_C(1) << 30);
}
END_TEST

START_TEST(test_merge_equals_recording_both)
{
    hb_hist_t a, b, both, copy, empty;
    hb_hist_init(&a);
    hb_hist_init(&b);
    hb_hist_init(&both);
    hb_hist_init(&empty);
    uint64_t seed = 11;
    for (int i = 0; i < 3000; i++) {
        uint64_t v = rng_value(&seed);
        hb_hist_record(i % 3 == 0 ? &a : &b, v);
        hb_hist_record(&both, v);
    }
    memcpy(&copy, &a, sizeof a);
    hb_hist_merge(&a, &b);
    ck_assert_mem_eq(&a, &both, sizeof a);

    /* Merging an empty histogram changes nothing; merging into one copies. */
    hb_hist_merge(&a, &empty);
    ck_assert_mem_eq(&a, &both, sizeof a);
    hb_hist_merge(&empty, &copy);
    ck_assert_mem_eq(&empty, &copy, sizeof copy);

    /* Merging one into itself doubles every count and keeps min and max. */
    hb_hist_merge(&copy, &copy);
    ck_assert_uint_eq(copy.count, 2 * empty.count);
    ck_assert_uint_eq(copy.min, empty.min);
    ck_assert_uint_eq(copy.max, empty.max);
    for (size_t i = 0; i < HB_HIST_BUCKETS; i++)
        ck_assert_uint_eq(copy.buckets[i], 2 * empty.buckets[i]);
}
END_TEST

START_TEST(test_merge_min_and_max)
{
    hb_hist_t a, b;
    hb_hist_init(&a);
    hb_hist_init(&b);
    hb_hist_record(&a, 50);
    hb_hist_record(&a, 60);
    hb_hist_record(&b, 10);
    hb_hist_record(&b, 100);
    hb_hist_t c;
    hb_hist_init(&c);
    hb_hist_merge(&c, &a); /* into an empty one: min comes from src, not the empty 0 */
    ck_assert_uint_eq(c.min, 50);
    ck_assert_uint_eq(c.max, 60);
    hb_hist_merge(&a, &b);
    ck_assert_uint_eq(a.min, 10);
    ck_assert_uint_eq(a.max, 100);
    ck_assert_uint_eq(a.count, 4);
    ck_assert_uint_eq(a.sum, 220);
    ck_assert_uint_eq(hb_hist_percentile(&a, 0.0), 10);
    ck_assert_uint_eq(hb_hist_percentile(&a, 100.0), 100);
}
END_TEST

START_TEST(test_values_near_uint64_max)
{
    const uint64_t top = UINT64_C(1) << 63;
    hb_hist_t h;
    hb_hist_init(&h);
    hb_hist_record(&h, UINT64_MAX);
    ck_assert_uint_eq(h.buckets[HB_HIST_BUCKETS - 1], 1);
    ck_assert_uint_eq(hb_hist_percentile(&h, 50.0), UINT64_MAX);
    ck_assert_double_eq(hb_hist_mean(&h), (double)UINT64_MAX);

    hb_hist_record(&h, UINT64_MAX - 1);
    hb_hist_record(&h, top);
    hb_hist_record(&h, top - 1);
    ck_assert_uint_eq(h.buckets[HB_HIST_BUCKETS - 1], 2);
    ck_assert_uint_eq(h.buckets[1888], 1);
    ck_assert_uint_eq(h.buckets[1887], 1);
    ck_assert_uint_eq(h.count, 4);
    ck_assert_uint_eq(h.sum, UINT64_MAX); /* saturated */
    ck_assert_uint_eq(h.min, top - 1);
    ck_assert_uint_eq(h.max, UINT64_MAX);
    ck_assert_uint_eq(hb_hist_percentile(&h, 0.0), top - 1);
    ck_assert_uint_eq(hb_hist_percentile(&h, 25.0), top - 1); /* bucket 1887 ends at 2^63 - 1 */
    ck_assert_uint_eq(hb_hist_percentile(&h, 50.0), top + (UINT64_C(1) << 58) - 1);
    ck_assert_uint_eq(hb_hist_percentile(&h, 75.0), UINT64_MAX);
    ck_assert_uint_eq(hb_hist_percentile(&h, 100.0), UINT64_MAX);

    /* The saturated sum falls back to the buckets' midpoints: within 1/64 of the true mean. */
    double true_mean = ((double)UINT64_MAX * 2.0 + (double)top * 2.0) / 4.0;
    double mean = hb_hist_mean(&h);
    ck_assert_double_le(fabs(mean - true_mean), true_mean / 64.0);
    ck_assert_double_ge(mean, (double)h.min);
    ck_assert_double_le(mean, (double)h.max);

    /* A count of UINT64_MAX at UINT64_MAX still answers without overflow. */
    hb_hist_init(&h);
    hb_hist_record_n(&h, UINT64_MAX, UINT64_MAX);
    ck_assert_uint_eq(h.count, UINT64_MAX);
    ck_assert_uint_eq(hb_hist_percentile(&h, 0.001), UINT64_MAX);
    ck_assert_uint_eq(hb_hist_percentile(&h, 99.999), UINT64_MAX);
}
END_TEST

START_TEST(test_percentile_is_monotonic_in_p)
{
    hb_hist_t h;
    hb_hist_init(&h);
    uint64_t seed = 3;
    for (int i = 0; i < 5000; i++)
        hb_hist_record(&h, rng_value(&seed));
    uint64_t prev = hb_hist_percentile(&h, 0.0);
    ck_assert_uint_eq(prev, h.min);
    for (int k = 1; k <= 10000; k++) {
        uint64_t cur = hb_hist_percentile(&h, (double)k / 100.0);
        ck_assert_uint_ge(cur, prev);
        prev = cur;
    }
    ck_assert_uint_eq(prev, h.max);
}
END_TEST

/* Checks p = k / 1000 for one data set against the exact nearest-rank percentile. */
static void check_against_sorted(const hb_hist_t *h, const uint64_t *sorted, uint64_t n, uint64_t k)
{
    /* rank = ceil(k * n / 100000), at least 1, in exact integer arithmetic. */
    uint64_t rank = (k * n + 99999) / 100000;
    if (rank == 0)
        rank = 1;
    uint64_t t = sorted[rank - 1];
    uint64_t got = hb_hist_percentile(h, (double)k / 1000.0);
    ck_assert_uint_ge(got, t);
    ck_assert_uint_le(got, upper_bound(t));
    if (k == 0)
        ck_assert_uint_eq(got, sorted[0]);
    else
        ck_assert_uint_eq(got, expected_answer(h, t));
}

START_TEST(test_property_against_sorted_array)
{
    static const uint64_t sizes[] = {1, 2, 3, 10, 999, 1000, 20011};
    static const uint64_t special_k[] = {0,     1,     10,    100,   999,   1000,  10000, 25000,
                                         50000, 75000, 90000, 99000, 99900, 99990, 99999, 100000};
    uint64_t *vals = malloc(20011 * sizeof *vals);
    ck_assert_ptr_nonnull(vals);
    hb_hist_t h;
    for (uint64_t seed0 = 1; seed0 <= 6; seed0++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            uint64_t n = sizes[s], seed = seed0 * 1000003 + s;
            hb_hist_init(&h);
            uint64_t sum = 0;
            int saturated = 0;
            for (uint64_t i = 0; i < n; i++) {
                vals[i] = rng_value(&seed);
                hb_hist_record(&h, vals[i]);
                if (sum + vals[i] < sum)
                    saturated = 1;
                sum += vals[i];
            }
            qsort(vals, (size_t)n, sizeof *vals, cmp_u64);
            ck_assert_uint_eq(h.count, n);
            ck_assert_uint_eq(h.min, vals[0]);
            ck_assert_uint_eq(h.max, vals[n - 1]);
            ck_assert_uint_eq(h.sum, saturated ? UINT64_MAX : sum);
            ck_assert_uint_eq(hb_hist_percentile(&h, 100.0), vals[n - 1]);
            for (size_t i = 0; i < sizeof special_k / sizeof special_k[0]; i++)
                check_against_sorted(&h, vals, n, special_k[i]);
            for (int i = 0; i < 300; i++)
                check_against_sorted(&h, vals, n, rng_next(&seed) % 100001);
        }
    }
    free(vals);
}
END_TEST

START_TEST(test_format)
{
    hb_hist_t h;
    hb_hist_init(&h);
    for (uint64_t v = 1; v <= 1000; v++)
        hb_hist_record(&h, v);
    static const char want[] = "p50=503us p90=911us p99=991us p99.9=1000us max=1000us (n=1000)";
    const int len = (int)strlen(want);
    char buf[256];
    ck_assert_int_eq(hb_hist_format(&h, "us", buf, sizeof buf), len);
    ck_assert_str_eq(buf, want);

    /* Exactly enough room (length + 1) fits. */
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(hb_hist_format(&h, "us", buf, (size_t)len + 1), len);
    ck_assert_str_eq(buf, want);

    /* One byte short: HB_ENOBUFS, "" left, nothing written at or past cap. */
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(hb_hist_format(&h, "us", buf, (size_t)len), HB_ENOBUFS);
    ck_assert_int_eq(buf[0], '\0');
    for (size_t i = (size_t)len; i < sizeof buf; i++)
        ck_assert_int_eq(buf[i], 'x');
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(hb_hist_format(&h, "us", buf, 1), HB_ENOBUFS);
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(buf[1], 'x');
    ck_assert_int_eq(hb_hist_format(&h, "us", NULL, 0), HB_ENOBUFS);

    /* No unit. */
    ck_assert_int_eq(hb_hist_format(&h, NULL, buf, sizeof buf),
                     (int)strlen("p50=503 p90=911 p99=991 p99.9=1000 max=1000 (n=1000)"));
    ck_assert_str_eq(buf, "p50=503 p90=911 p99=991 p99.9=1000 max=1000 (n=1000)");

    ck_assert_int_eq(hb_hist_format(NULL, "us", buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_hist_format(&h, "us", NULL, 10), HB_EINVAL);

    hb_hist_init(&h);
    ck_assert_int_eq(hb_hist_format(&h, "ms", buf, sizeof buf),
                     (int)strlen("p50=0ms p90=0ms p99=0ms p99.9=0ms max=0ms (n=0)"));
    ck_assert_str_eq(buf, "p50=0ms p90=0ms p99=0ms p99.9=0ms max=0ms (n=0)");
}
END_TEST

START_TEST(test_format_max_is_tight)
{
    hb_hist_t h;
    hb_hist_init(&h);
    hb_hist_record_n(&h, UINT64_MAX, UINT64_MAX);
    char buf[HB_HIST_FORMAT_MAX(2)];
    ck_assert_int_eq(hb_hist_format(&h, "ms", buf, sizeof buf), (int)sizeof buf - 1);
    ck_assert_int_eq(hb_hist_format(&h, "ms", buf, sizeof buf - 1), HB_ENOBUFS);
    char buf0[HB_HIST_FORMAT_MAX(0)];
    ck_assert_int_eq(hb_hist_format(&h, "", buf0, sizeof buf0), (int)sizeof buf0 - 1);
}
END_TEST

/* An interval of a histogram, by subtracting a snapshot: the same buckets, count and sum as a
 * histogram of the interval's values alone, and percentiles within the contract against the
 * interval's sorted values, for intervals of every size and random data. */
START_TEST(test_sub_equals_recording_the_interval)
{
    static const uint64_t sizes[] = {1, 2, 7, 1000, 5003};
    /* p = k / 1000; not 0, which gives min, a bound rather than the value */
    static const uint64_t ks[] = {1, 1000, 10000, 50000, 90000, 99000, 99900, 99999, 100000};
    uint64_t *vals = malloc(5003 * sizeof *vals);
    ck_assert_ptr_nonnull(vals);
    static hb_hist_t h, before, alone, interval;
    for (uint64_t seed0 = 1; seed0 <= 5; seed0++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            uint64_t n = sizes[s], seed = seed0 * 7919 + s;
            hb_hist_init(&h);
            hb_hist_init(&alone);
            for (uint64_t i = 0; i < 3000; i++)
                hb_hist_record(&h, rng_value(&seed));
            before = h; /* the snapshot is a copy */
            for (uint64_t i = 0; i < n; i++) {
                vals[i] = rng_value(&seed);
                hb_hist_record(&h, vals[i]);
                hb_hist_record(&alone, vals[i]);
            }
            ck_assert_int_eq(hb_hist_sub(&interval, &h, &before), 0);
            ck_assert_uint_eq(interval.count, n);
            ck_assert_uint_eq(interval.sum, h.sum == UINT64_MAX ? UINT64_MAX : alone.sum);
            ck_assert_mem_eq(interval.buckets, alone.buckets, sizeof alone.buckets);
            qsort(vals, (size_t)n, sizeof *vals, cmp_u64);
            /* min at or below the truth, max at or above it, each within a bucket */
            ck_assert_uint_le(interval.min, vals[0]);
            ck_assert_uint_eq(hb_hist_bucket_index(interval.min), hb_hist_bucket_index(vals[0]));
            ck_assert_uint_ge(interval.max, vals[n - 1]);
            ck_assert_uint_eq(hb_hist_bucket_index(interval.max),
                              hb_hist_bucket_index(vals[n - 1]));
            for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
                check_against_sorted(&interval, vals, n, ks[i]);
            for (int i = 0; i < 100; i++)
                check_against_sorted(&interval, vals, n, 1 + rng_next(&seed) % 100000);
        }
    }
    free(vals);
}
END_TEST

/* min and max are exact when the interval holds the histogram's own extremes; otherwise they are
 * the bounds of the interval's extreme buckets. */
START_TEST(test_sub_min_and_max)
{
    static hb_hist_t h, before, out;
    hb_hist_init(&h);
    hb_hist_record(&h, 100);
    hb_hist_record(&h, 200);
    before = h;
    hb_hist_record(&h, 50);
    hb_hist_record(&h, 1000);
    ck_assert_int_eq(hb_hist_sub(&out, &h, &before), 0);
    ck_assert_uint_eq(out.count, 2);
    ck_assert_uint_eq(out.sum, 1050);
    ck_assert_uint_eq(out.min, 50);
    ck_assert_uint_eq(out.max, 1000);
    ck_assert_uint_eq(hb_hist_percentile(&out, 0), 50);
    ck_assert_uint_eq(hb_hist_percentile(&out, 100), 1000);

    /* Inside the earlier extremes (10 and 5000): bucket bounds, clamped to h's min and max. */
    hb_hist_init(&h);
    hb_hist_record(&h, 10);
    hb_hist_record(&h, 5000);
    before = h;
    hb_hist_record(&h, 1000);
    hb_hist_record(&h, 3000);
    ck_assert_int_eq(hb_hist_sub(&out, &h, &before), 0);
    ck_assert_uint_eq(out.min, hb_hist_bucket_lowest(hb_hist_bucket_index(1000)));
    ck_assert_uint_eq(out.max, hb_hist_bucket_highest(hb_hist_bucket_index(3000)));
    ck_assert_uint_le(out.min, 1000);
    ck_assert_uint_ge(out.max, 3000);
    ck_assert_uint_le(out.max, upper_bound(3000));
    ck_assert_uint_eq(hb_hist_percentile(&out, 50),
                      hb_hist_bucket_highest(hb_hist_bucket_index(1000)));

    /* The same value as before's max, recorded again: max exact through the clamp to h's max. */
    hb_hist_init(&h);
    hb_hist_record(&h, 7);
    hb_hist_record(&h, 4097);
    before = h;
    hb_hist_record(&h, 4097);
    ck_assert_int_eq(hb_hist_sub(&out, &h, &before), 0);
    ck_assert_uint_eq(out.max, 4097);
    ck_assert_uint_eq(out.min, hb_hist_bucket_lowest(hb_hist_bucket_index(4097)));
    ck_assert_uint_eq(hb_hist_percentile(&out, 50), 4097);
}
END_TEST

/* An empty interval is the empty histogram; a "before" that is no snapshot of now is refused and
 * out stays as it was; out may be either operand; a saturated sum stays saturated. */
START_TEST(test_sub_edges)
{
    static hb_hist_t h, before, out, copy, empty;
    hb_hist_init(&empty);
    hb_hist_init(&h);
    for (uint64_t v = 1; v <= 100; v++)
        hb_hist_record(&h, v * 37);
    before = h;
    memset(&out, 0xAB, sizeof out);
    ck_assert_int_eq(hb_hist_sub(&out, &h, &before), 0);
    ck_assert_mem_eq(&out, &empty, sizeof out);
    ck_assert_uint_eq(hb_hist_percentile(&out, 50), 0);
    ck_assert_int_eq(hb_hist_sub(&out, &h, &empty), 0); /* from the beginning: h itself */
    ck_assert_mem_eq(&out, &h, sizeof out);

    /* before has a value h lacks (another histogram, or h was reset in between) */
    hb_hist_t *other = &copy;
    hb_hist_init(other);
    hb_hist_record(other, 5);
    memset(&out, 0xAB, sizeof out);
    memcpy(&before, &out, sizeof out);
    ck_assert_int_eq(hb_hist_sub(&out, &h, other), HB_EINVAL);
    ck_assert_mem_eq(&out, &before, sizeof out);
    ck_assert_int_eq(hb_hist_sub(&out, &empty, &h), HB_EINVAL); /* a count above now's */
    ck_assert_mem_eq(&out, &before, sizeof out);
    ck_assert_int_eq(hb_hist_sub(NULL, &h, &h), HB_EINVAL);
    ck_assert_int_eq(hb_hist_sub(&out, NULL, &h), HB_EINVAL);
    ck_assert_int_eq(hb_hist_sub(&out, &h, NULL), HB_EINVAL);

    /* out == now, and out == before */
    hb_hist_init(&h);
    hb_hist_record(&h, 3);
    before = h;
    hb_hist_record(&h, 9);
    copy = h;
    ck_assert_int_eq(hb_hist_sub(&copy, &copy, &before), 0);
    ck_assert_uint_eq(copy.count, 1);
    ck_assert_uint_eq(copy.min, 9);
    ck_assert_uint_eq(copy.max, 9);
    ck_assert_uint_eq(copy.sum, 9);
    ck_assert_int_eq(hb_hist_sub(&before, &h, &before), 0);
    ck_assert_mem_eq(&before, &copy, sizeof copy);

    /* A saturated sum: the interval's sum is unknown, so saturated too (mean from the buckets). */
    hb_hist_init(&h);
    hb_hist_record(&h, UINT64_MAX - 1);
    before = h;
    hb_hist_record(&h, UINT64_MAX - 1);
    hb_hist_record(&h, 10);
    ck_assert_uint_eq(h.sum, UINT64_MAX);
    ck_assert_int_eq(hb_hist_sub(&out, &h, &before), 0);
    ck_assert_uint_eq(out.count, 2);
    ck_assert_uint_eq(out.sum, UINT64_MAX);
    ck_assert_uint_eq(out.min, 10);
    ck_assert(hb_hist_mean(&out) <= (double)out.max && hb_hist_mean(&out) >= (double)out.min);
}
END_TEST

static Suite *hist_suite(void)
{
    Suite *s = suite_create("hist");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_buckets_tile_the_whole_range);
    tcase_add_test(tc, test_bucket_index_follows_the_formula);
    tcase_add_test(tc, test_small_values_are_exact);
    tcase_add_test(tc, test_empty_histogram);
    tcase_add_test(tc, test_init_resets);
    tcase_add_test(tc, test_single_value);
    tcase_add_test(tc, test_out_of_range_p_is_clamped);
    tcase_add_test(tc, test_record_n_equals_n_records);
    tcase_add_test(tc, test_merge_equals_recording_both);
    tcase_add_test(tc, test_merge_min_and_max);
    tcase_add_test(tc, test_values_near_uint64_max);
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_format_max_is_tight);
    tcase_add_test(tc, test_sub_min_and_max);
    tcase_add_test(tc, test_sub_edges);
    suite_add_tcase(s, tc);

    /* Larger data sets: a generous timeout for sanitizer builds on a slow machine. */
    TCase *tc_data = tcase_create("data");
    tcase_set_timeout(tc_data, 30);
    tcase_add_test(tc_data, test_uniform_million);
    tcase_add_test(tc_data, test_percentile_is_monotonic_in_p);
    tcase_add_test(tc_data, test_property_against_sorted_array);
    tcase_add_test(tc_data, test_sub_equals_recording_the_interval);
    suite_add_tcase(s, tc_data);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hist_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
