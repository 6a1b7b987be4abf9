/* Unit tests for the netdev module (core, no libuv): /proc/net/dev and /proc/net/route parsed
 * from real-looking texts, every input placed against a PROT_NONE guard page with no terminating
 * NUL (an over-read faults), malformed lines, the difference of two readings, the host identity,
 * and the counting into the NIC slots of a counter set. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guard.h"
#include "hongbao/netdev.h"

/* ---- inputs against a guard page ---- */

/* text's bytes (no NUL) ending at the end of the readable page. */
static const char *guarded(const char *text)
{
    return guarded_bytes(text, strlen(text));
}

static int parse(const char *text, const char *name, hb_netdev_stats_t *out)
{
    return hb_netdev_parse(guarded(text), strlen(text), name, out);
}

/* /proc/net/dev as Linux 6.1 writes it. */
static const char dev_text[] =
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
    "drop fifo colls carrier compressed\n"
    "    lo: 1059718417 2118311    0    0    0     0          0         0 1059718417 2118311    "
    "0    0    0     0       0          0\n"
    "  eth0: 98765432101  7654321    1    2    0     0          0        12 12345678901  "
    "6543210    0    0    0     0       0          0\n"
    "docker0:       0       0    0    0    0     0          0         0        0       0    0    "
    "0    0     0       0          0\n";

START_TEST(test_parse_proc_net_dev)
{
    hb_netdev_stats_t s;
    ck_assert_int_eq(parse(dev_text, "lo", &s), 0);
    ck_assert_uint_eq(s.rx_bytes, 1059718417);
    ck_assert_uint_eq(s.rx_packets, 2118311);
    ck_assert_uint_eq(s.tx_bytes, 1059718417);
    ck_assert_uint_eq(s.tx_packets, 2118311);
    ck_assert_int_eq(parse(dev_text, "eth0", &s), 0);
    ck_assert_uint_eq(s.rx_bytes, 98765432101ull);
    ck_assert_uint_eq(s.rx_packets, 7654321);
    ck_assert_uint_eq(s.tx_bytes, 12345678901ull);
    ck_assert_uint_eq(s.tx_packets, 6543210);
    /* A name glued to its first number, as old kernels wrote large counters; the last line with
     * no newline and only the ten numbers read. */
    ck_assert_int_eq(parse(dev_text, "docker0", &s), 0);
    ck_assert_uint_eq(s.rx_bytes + s.rx_packets + s.tx_bytes + s.tx_packets, 0);
    ck_assert_int_eq(parse("header\n  veth1:123 4 0 0 0 0 0 0 567 8", "veth1", &s), 0);
    ck_assert_uint_eq(s.rx_bytes, 123);
    ck_assert_uint_eq(s.rx_packets, 4);
    ck_assert_uint_eq(s.tx_bytes, 567);
    ck_assert_uint_eq(s.tx_packets, 8);
    ck_assert_int_eq(parse("x: 18446744073709551615 1 0 0 0 0 0 0 2 3\n", "x", &s), 0);
    ck_assert_uint_eq(s.rx_bytes, UINT64_MAX);
}
END_TEST

START_TEST(test_parse_finds_whole_names_only)
{
    hb_netdev_stats_t s = {1, 2, 3, 4};
    /* "eth" is a prefix of "eth0", "th0" a suffix: neither is eth0's line. */
    ck_assert_int_eq(parse(dev_text, "eth", &s), HB_ENOENT);
    ck_assert_int_eq(parse(dev_text, "th0", &s), HB_ENOENT);
    ck_assert_int_eq(parse(dev_text, "wlan0", &s), HB_ENOENT);
    ck_assert_int_eq(parse(dev_text, "face |bytes", &s), HB_ENOENT);
    ck_assert_int_eq(hb_netdev_parse(NULL, 0, "lo", &s), HB_ENOENT);
    ck_assert_uint_eq(s.rx_packets, 1); /* untouched */
    ck_assert_uint_eq(s.tx_bytes, 4);
}
END_TEST

START_TEST(test_parse_refuses_malformed_lines)
{
    hb_netdev_stats_t s = {1, 2, 3, 4};
    const char *bad[] = {
        "lo:",                                         /* no numbers */
        "lo: 1 2 3 4 5 6 7 8 9",                       /* nine */
        "lo: 1 2 3 4 5 6 7 8 9\n10 11 12",             /* the tenth on the next line */
        "lo: 1 2 3 4 5 6 7 8 9 x",                     /* not a number */
        "lo: 1 2 3 4 5 6 7 8 9 10x",                   /* trailing garbage */
        "lo: 1 -2 3 4 5 6 7 8 9 10",                   /* a sign */
        "lo: 18446744073709551616 2 3 4 5 6 7 8 9 10", /* past UINT64_MAX */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(parse(bad[i], "lo", &s) == HB_ERANGE, "accepted: %s", bad[i]);
    ck_assert_uint_eq(s.rx_packets, 1);
    ck_assert_int_eq(hb_netdev_parse(NULL, 1, "lo", &s), HB_EINVAL);
    ck_assert_int_eq(hb_netdev_parse("lo: 1", 5, NULL, &s), HB_EINVAL);
    ck_assert_int_eq(hb_netdev_parse("lo: 1", 5, "lo", NULL), HB_EINVAL);
    ck_assert_int_eq(hb_netdev_parse("lo: 1", 5, "", &s), HB_EINVAL);
    ck_assert_int_eq(hb_netdev_parse("lo: 1", 5, "0123456789abcdef", &s), HB_EINVAL);
}
END_TEST

START_TEST(test_parse_every_prefix_stays_in_bounds)
{
    /* Every prefix of the text, against the guard page: never an over-read, and the interfaces
     * whose whole line is in the prefix are found (a cut line is malformed or missing). */
    hb_netdev_stats_t s;
    size_t n = strlen(dev_text);
    const char *eth0_end = strstr(dev_text, "docker0:");
    for (size_t len = 0; len <= n; len++) {
        char *copy = strndup(dev_text, len);
        ck_assert_ptr_nonnull(copy);
        int r = parse(copy, "eth0", &s);
        if (dev_text + len >= eth0_end - 1)
            ck_assert_int_eq(r, 0);
        else
            ck_assert(r == HB_ENOENT || r == HB_ERANGE || r == 0);
        parse(copy, "docker0", &s);
        parse(copy, "lo", &s);
        free(copy);
    }
}
END_TEST

/* /proc/net/route: a header, a default route through eth0 with metric 100, a second one through
 * wlan0 with metric 600, a down default route with metric 0, and a subnet route. */
static const char route_text[] =
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT       "
    "\n"
    "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0                            \n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0                             \n"
    "tun9\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0                               \n"
    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0                               \n";

START_TEST(test_default_route)
{
    char name[HB_NETDEV_NAME_MAX];
    const char *t = guarded(route_text);
    ck_assert_int_eq(hb_netdev_default_route(t, strlen(route_text), name, sizeof name), 0);
    ck_assert_str_eq(name, "eth0");
    /* Too small a buffer: "" and HB_ENOBUFS; exactly the size: fits. */
    ck_assert_int_eq(hb_netdev_default_route(t, strlen(route_text), name, 4), HB_ENOBUFS);
    ck_assert_str_eq(name, "");
    ck_assert_int_eq(hb_netdev_default_route(t, strlen(route_text), name, 5), 0);
    ck_assert_str_eq(name, "eth0");
    ck_assert_int_eq(hb_netdev_default_route(t, strlen(route_text), NULL, 0), HB_ENOBUFS);
    /* Only the header, the down route and the subnet route: none. */
    const char *none = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                       "tun9\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0\n"
                       "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0";
    ck_assert_int_eq(hb_netdev_default_route(guarded(none), strlen(none), name, sizeof name),
                     HB_ENOENT);
    ck_assert_int_eq(hb_netdev_default_route(NULL, 0, name, sizeof name), HB_ENOENT);
    ck_assert_int_eq(hb_netdev_default_route(NULL, 3, name, sizeof name), HB_EINVAL);
    /* Every prefix stays in bounds (a cut line may still parse); once eth0's line is whole, eth0
     * wins. */
    size_t n = strlen(route_text);
    const char *eth0_line = strstr(route_text, "eth0");
    for (size_t len = 0; len <= n; len++) {
        char *copy = strndup(route_text, len);
        ck_assert_ptr_nonnull(copy);
        int r = hb_netdev_default_route(guarded(copy), len, name, sizeof name);
        ck_assert(r == 0 || r == HB_ENOENT);
        if (route_text + len > eth0_line + 50)
            ck_assert_str_eq(name, "eth0");
        free(copy);
    }
}
END_TEST

START_TEST(test_delta_and_reset)
{
    hb_netdev_stats_t a = {100, 200, 3000, 4000}, b = {150, 260, 3500, 3999}, d;
    hb_netdev_delta(&a, &b, &d);
    ck_assert_uint_eq(d.rx_packets, 50);
    ck_assert_uint_eq(d.tx_packets, 60);
    ck_assert_uint_eq(d.rx_bytes, 500);
    ck_assert_uint_eq(d.tx_bytes, 0); /* went down: the interface was reset */
    hb_netdev_delta(&a, &b, &b);      /* out may alias */
    ck_assert_uint_eq(b.tx_packets, 60);
    hb_netdev_stats_t z = {0, 0, 0, 0}, big = {UINT64_MAX, 1, 2, 3};
    hb_netdev_delta(&z, &big, &d);
    ck_assert_uint_eq(d.rx_packets, UINT64_MAX);
}
END_TEST

START_TEST(test_host_identity)
{
    uint64_t a = hb_netdev_host_id("0123456789abcdef0123456789abcdef", 4026531833u, "lo");
    ck_assert_uint_ne(a, 0);
    /* The same inputs, the same identity; any one different, another. */
    ck_assert_uint_eq(a, hb_netdev_host_id("0123456789abcdef0123456789abcdef", 4026531833u, "lo"));
    ck_assert_uint_ne(a, hb_netdev_host_id("0123456789abcdef0123456789abcdee", 4026531833u, "lo"));
    ck_assert_uint_ne(a, hb_netdev_host_id("0123456789abcdef0123456789abcdef", 4026531834u, "lo"));
    ck_assert_uint_ne(a,
                      hb_netdev_host_id("0123456789abcdef0123456789abcdef", 4026531833u, "eth0"));
    /* The separator keeps the parts apart. */
    ck_assert_uint_ne(hb_netdev_host_id("ab", 0, "c"), hb_netdev_host_id("a", 0, "bc"));
    ck_assert_uint_ne(hb_netdev_host_id(NULL, 0, NULL), 0);
    ck_assert_uint_eq(hb_netdev_host_id(NULL, 7, "lo"), hb_netdev_host_id("", 7, "lo"));
    /* FNV-1a's offset basis with nothing hashed but the separator and a zero netns. */
    uint64_t h = 14695981039346656037ull;
    for (int i = 0; i < 9; i++)
        h = (h ^ 0) * 1099511628211ull;
    ck_assert_uint_eq(hb_netdev_host_id("", 0, ""), h);
}
END_TEST

static uint64_t rx_in(hb_counters_t *c, uint64_t second)
{
    hb_report_t r;
    hb_counters_snapshot(c, second, &r);
    return r.per_second[HB_CTR_NIC_RX_PACKETS];
}

/* An interval of about a second counts in the second its middle lies in; a late reading's is
 * spread over the seconds it covers, the sum exact; past the history, over the history. */
START_TEST(test_count_interval_spreads_late_readings)
{
    hb_counters_t c;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_CLIENT), 0);
    const uint64_t t = 1700000000000ull; /* a whole second, in ms */
    hb_netdev_stats_t d = {1000, 10, 7, 0};
    hb_netdev_count_interval(&c, 0, t + 10, t + 1010, &d); /* readings 10 ms past each second */
    ck_assert_uint_eq(rx_in(&c, t / 1000), 1000);
    hb_netdev_count_interval(&c, 0, t + 1010, t + 2400, &d); /* 1.39 s: its middle's second */
    ck_assert_uint_eq(rx_in(&c, t / 1000 + 1), 1000);
    /* 10 s late: 100 a second over seconds +2..+11, not 1,000 in one. */
    hb_netdev_count_interval(&c, 0, t + 2010, t + 12010, &d);
    for (uint64_t s = 2; s <= 11; s++)
        ck_assert_uint_eq(rx_in(&c, t / 1000 + s), 100);
    ck_assert_uint_eq(rx_in(&c, t / 1000 + 12), 0);
    /* Remainders in the last second: 7 bytes over 3 s are 2, 2, 3. */
    hb_netdev_count_interval(&c, 0, t + 20010, t + 23010, &d);
    hb_report_t r;
    hb_counters_snapshot(&c, t / 1000 + 22, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_BYTES], 3);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 4);
    hb_counters_snapshot(&c, t / 1000 + 20, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_BYTES], 2);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 3);
    /* 1,000 s late: spread over the last HB_COUNTERS_HISTORY seconds, the total kept. */
    hb_netdev_stats_t big = {HB_COUNTERS_HISTORY * 5 + 1, 0, 0, 0};
    hb_netdev_count_interval(&c, 0, t + 23010, t + 1023010, &big);
    ck_assert_uint_eq(rx_in(&c, t / 1000 + 1022), 6);
    ck_assert_uint_eq(rx_in(&c, t / 1000 + 1022 - HB_COUNTERS_HISTORY + 1), 5);
    hb_counters_snapshot(&c, t / 1000 + 1022, &r);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_RX_PACKETS], 4000 + HB_COUNTERS_HISTORY * 5 + 1);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_count_and_host_slot)
{
    hb_counters_t c;
    ck_assert_int_eq(hb_counters_init(&c, 2, HB_REPORTER_SERVER), 0);
    hb_netdev_stats_t d = {10, 20, 1000, 2000};
    hb_netdev_count(&c, 1, 1700000000, &d);
    hb_netdev_count(&c, 1, 1700000001, &d);
    hb_netdev_set_host(&c, 1, 0xfeedfacecafebeefull);
    hb_report_t r;
    hb_counters_snapshot(&c, 1700000001, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_PACKETS], 10);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 20);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_BYTES], 1000);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_BYTES], 2000);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_RX_PACKETS], 20);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_TX_BYTES], 4000);
    /* The identity is the slot's cumulative value; its per-second value stays 0. */
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_HOST], 0xfeedfacecafebeefull);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_HOST], 0);
    /* Set again (through another shard), it is replaced, not added. */
    hb_netdev_set_host(&c, 0, 42);
    hb_counters_snapshot(&c, 1700000001, &r);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_HOST], 42);
    hb_netdev_set_host(&c, 0, 0);
    hb_counters_snapshot(&c, 1700000001, &r);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_HOST], 0);
    /* Nothing else moved. */
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        if (i == HB_CTR_NIC_RX_PACKETS || i == HB_CTR_NIC_TX_PACKETS || i == HB_CTR_NIC_RX_BYTES ||
            i == HB_CTR_NIC_TX_BYTES)
            continue;
        ck_assert_uint_eq(r.per_second[i], 0);
        ck_assert_uint_eq(r.cumulative[i], 0);
    }
    hb_counters_close(&c);
}
END_TEST

static Suite *netdev_suite(void)
{
    Suite *s = suite_create("netdev");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, guard_setup, guard_teardown);
    tcase_add_test(tc, test_parse_proc_net_dev);
    tcase_add_test(tc, test_parse_finds_whole_names_only);
    tcase_add_test(tc, test_parse_refuses_malformed_lines);
    tcase_add_test(tc, test_parse_every_prefix_stays_in_bounds);
    tcase_add_test(tc, test_default_route);
    tcase_add_test(tc, test_delta_and_reset);
    tcase_add_test(tc, test_host_identity);
    tcase_add_test(tc, test_count_and_host_slot);
    tcase_add_test(tc, test_count_interval_spreads_late_readings);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(netdev_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
