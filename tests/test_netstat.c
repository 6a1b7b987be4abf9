/* Unit tests for the NIC sampler (runtime): a statistics file of our own and a hand-held clock
 * (each reading's difference counted for the right second, the identity slot, a file that goes
 * away and comes back), then the real /proc/net/dev on the loopback interface with packets sent
 * over 127.0.0.1, the interface an address uses, and the server's opts.nic. Every loop ends with
 * no handle left. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hongbao/netstat.h"
#include "hongbao/server.h"

#define T0_MS 1700000000000ull /* a second boundary */

static uint64_t fake_now;
static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static char logged[8][256];
static int nlogged;
static void capture_log(void *arg, const char *line)
{
    (void)arg;
    if (nlogged < 8)
        snprintf(logged[nlogged], sizeof logged[0], "%s", line);
    nlogged++;
}

static char dir[] = "/tmp/hb-netstat-XXXXXX";
static char path[64];

static void files_setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/dev", dir);
    nlogged = 0;
}

static void files_teardown(void)
{
    unlink(path);
    rmdir(dir);
    strcpy(dir, "/tmp/hb-netstat-XXXXXX");
}

/* Write the statistics file with these counts for "test0" (and a decoy before it). */
static void write_stats(uint64_t rx_bytes, uint64_t rx_packets, uint64_t tx_bytes,
                        uint64_t tx_packets)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
            "errs drop fifo colls carrier compressed\n"
            " test00: 9 9 0 0 0 0 0 0 9 9 0 0 0 0 0 0\n"
            "  test0: %llu %llu 0 0 0 0 0 0 %llu %llu 0 0 0 0 0 0\n",
            (unsigned long long)rx_bytes, (unsigned long long)rx_packets,
            (unsigned long long)tx_bytes, (unsigned long long)tx_packets);
    fclose(f);
}

static int closed;
static void on_closed(hb_netstat_t *ns)
{
    ck_assert_ptr_eq(ns->data, &closed);
    closed++;
}

/* Close ns, run the loop until its callback, and close the loop: no handle may be left. */
static void close_all(uv_loop_t *loop, hb_netstat_t *ns)
{
    closed = 0;
    ns->data = &closed;
    hb_netstat_close(ns, on_closed);
    hb_netstat_close(ns, on_closed); /* a second call does nothing */
    ck_assert_int_eq(closed, 0);     /* never from inside the call */
    ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(closed, 1);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

START_TEST(test_init_refuses)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_counters_t c;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_CLIENT), 0);
    hb_netstat_t ns;
    hb_netstat_options_t o = {.interface = "test0", .path = path};
    ck_assert_int_eq(hb_netstat_init(NULL, &ns, &c, &o), UV_EINVAL);
    ck_assert_int_eq(hb_netstat_init(&loop, NULL, &c, &o), UV_EINVAL);
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, NULL, &o), UV_EINVAL);
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, NULL), UV_EINVAL);
    o.shard = 1; /* one shard only */
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), UV_EINVAL);
    o.shard = 0;
    o.interface = "";
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), UV_EINVAL);
    o.interface = "0123456789abcdef";
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), UV_EINVAL);
    o.interface = "test0";
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), UV_ENOENT); /* no file yet */
    write_stats(1, 2, 3, 4);
    o.interface = "test1";
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), UV_ENODEV);
    o.interface = "test";
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), UV_ENODEV);
    /* Nothing was counted, nothing is left on the loop. */
    hb_report_t r;
    hb_counters_snapshot(&c, 0, &r);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_HOST], 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_NOWAIT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_counts_each_reading_for_its_second)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_counters_t c;
    ck_assert_int_eq(hb_counters_init(&c, 2, HB_REPORTER_SERVER), 0);
    write_stats(100000, 1000, 50000, 900);
    fake_now = T0_MS + 400;
    hb_netstat_t ns;
    hb_netstat_options_t o = {.interface = "test0",
                              .shard = 1,
                              .host_id = 0xabcdef,
                              .path = path,
                              .now_ms = fake_clock,
                              .log = capture_log};
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), 0);
    ck_assert_ptr_null(ns.data);
    ck_assert_str_eq(ns.interface, "test0");
    ck_assert_uint_eq(ns.host_id, 0xabcdef);
    ck_assert_uint_eq(ns.samples, 1);
    ck_assert_uint_eq(ns.last.rx_packets, 1000);
    uint64_t s0 = T0_MS / 1000;
    hb_report_t r;
    hb_counters_snapshot(&c, s0, &r);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_HOST], 0xabcdef); /* the identity, at once */
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_RX_PACKETS], 0);  /* the baseline counts nothing */

    /* 10 ms past the next second: the interval lies mostly in s0. */
    write_stats(160000, 1600, 80000, 1500);
    fake_now = T0_MS + 1010;
    ck_assert_int_eq(hb_netstat_sample(&ns), 0);
    hb_counters_snapshot(&c, s0, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_PACKETS], 600);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 600);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_BYTES], 60000);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_BYTES], 30000);
    /* The next second. */
    write_stats(170000, 1700, 90000, 1550);
    fake_now = T0_MS + 2010;
    ck_assert_int_eq(hb_netstat_sample(&ns), 0);
    hb_counters_snapshot(&c, s0 + 1, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_PACKETS], 100);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 50);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_RX_PACKETS], 700);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_TX_BYTES], 40000);
    ck_assert_uint_eq(ns.samples, 3);

    /* The file goes away for two seconds: one log line, the failures counted, nothing added. */
    unlink(path);
    fake_now = T0_MS + 3010;
    ck_assert_int_eq(hb_netstat_sample(&ns), UV_ENOENT);
    fake_now = T0_MS + 4010;
    ck_assert_int_eq(hb_netstat_sample(&ns), UV_ENOENT);
    ck_assert_int_eq(ns.err, UV_ENOENT);
    ck_assert_uint_eq(ns.failures, 2);
    ck_assert_int_eq(nlogged, 1);
    ck_assert_ptr_nonnull(strstr(logged[0], "interface test0: "));
    /* Back, without the interface: another line. */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("header\nheader\n  eth9: 1 2 3 4 5 6 7 8 9 10\n", f);
    fclose(f);
    ck_assert_int_eq(hb_netstat_sample(&ns), UV_ENODEV);
    ck_assert_int_eq(nlogged, 1); /* still the same outage: no new line */
    /* Back with the interface: what happened meanwhile (since the last reading that succeeded,
     * 3 s ago) is spread over the three seconds it covers; a counter that went down counts 0. */
    write_stats(190000, 1900, 80000, 1650);
    fake_now = T0_MS + 5010;
    ck_assert_int_eq(hb_netstat_sample(&ns), 0);
    ck_assert_int_eq(ns.err, 0);
    ck_assert_int_eq(nlogged, 2);
    ck_assert_ptr_nonnull(strstr(logged[1], "readable again"));
    hb_counters_snapshot(&c, s0 + 2, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_PACKETS], 66);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 33);
    hb_counters_snapshot(&c, s0 + 3, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_PACKETS], 66);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 33);
    hb_counters_snapshot(&c, s0 + 4, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_RX_PACKETS], 68);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_PACKETS], 34);
    ck_assert_uint_eq(r.per_second[HB_CTR_NIC_TX_BYTES], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_RX_PACKETS], 900);
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_HOST], 0xabcdef);
    /* Other slots untouched. */
    ck_assert_uint_eq(r.cumulative[HB_CTR_REQUESTS], 0);

    close_all(&loop, &ns);
    ck_assert_int_eq(hb_netstat_sample(&ns), UV_EINVAL); /* closed */
    hb_counters_close(&c);
}
END_TEST

/* The loopback interface's name, from libuv. */
static void loopback_name(char *out, size_t cap)
{
    uv_interface_address_t *ifs;
    int n;
    ck_assert_int_eq(uv_interface_addresses(&ifs, &n), 0);
    out[0] = '\0';
    for (int i = 0; i < n && out[0] == '\0'; i++)
        if (ifs[i].is_internal)
            snprintf(out, cap, "%s", ifs[i].name);
    uv_free_interface_addresses(ifs, n);
    ck_assert_str_ne(out, "");
}

static void on_idle_sample(uv_timer_t *t)
{
    hb_netstat_t *ns = t->data;
    if (ns->samples >= 2)
        uv_close((uv_handle_t *)t, NULL);
}

START_TEST(test_loopback_for_real)
{
    char lo[HB_NETDEV_NAME_MAX], name[HB_NETDEV_NAME_MAX];
    loopback_name(lo, sizeof lo);
    ck_assert_int_eq(hb_netstat_interface_for("127.0.0.1", name, sizeof name), 0);
    ck_assert_str_eq(name, lo);
    ck_assert_int_eq(hb_netstat_interface_for("127.0.0.2", name, sizeof name), 0);
    ck_assert_str_eq(name, lo);

    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_counters_t c;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_CLIENT), 0);
    hb_netstat_t ns;
    hb_netstat_options_t o = {.interface = name};
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), 0);
    ck_assert_uint_ne(ns.host_id, 0);
    ck_assert_int_eq(hb_netstat_start(&ns), 0);
    ck_assert_int_eq(hb_netstat_start(&ns), UV_EINVAL); /* already started */

    /* 200 UDP datagrams over 127.0.0.1: at least 200 packets each way on the loopback. */
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(rx, 0);
    ck_assert_int_ge(tx, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    ck_assert_int_eq(bind(rx, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(rx, (struct sockaddr *)&a, &alen), 0);
    char byte = 'x', sink[16];
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(sendto(tx, &byte, 1, 0, (struct sockaddr *)&a, sizeof a), 1);
        ck_assert_int_eq(recv(rx, sink, sizeof sink, 0), 1);
    }
    close(rx);
    close(tx);

    /* A tick (just past the next second): the datagrams are in the counts by then. */
    uv_timer_t watch;
    uv_timer_init(&loop, &watch);
    watch.data = &ns;
    uv_timer_start(&watch, on_idle_sample, 50, 50);
    while (uv_is_active((uv_handle_t *)&watch) && !uv_is_closing((uv_handle_t *)&watch))
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_uint_ge(ns.samples, 2);
    ck_assert_int_eq(ns.err, 0);
    hb_report_t r;
    hb_counters_snapshot(&c, 0, &r);
    ck_assert_uint_ge(r.cumulative[HB_CTR_NIC_RX_PACKETS], 200);
    ck_assert_uint_ge(r.cumulative[HB_CTR_NIC_TX_PACKETS], 200);
    ck_assert_uint_ge(r.cumulative[HB_CTR_NIC_RX_BYTES], 200 * 29); /* IPv4 + UDP headers + 1 */
    ck_assert_uint_eq(r.cumulative[HB_CTR_NIC_HOST], ns.host_id);
    close_all(&loop, &ns);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_interface_for)
{
    char lo[HB_NETDEV_NAME_MAX], name[HB_NETDEV_NAME_MAX];
    loopback_name(lo, sizeof lo);
    ck_assert_int_eq(hb_netstat_interface_for("::1", name, sizeof name), 0);
    ck_assert_str_eq(name, lo);
    ck_assert_int_eq(hb_netstat_interface_for("127.0.0.1", name, 2), UV_ENOBUFS);
    ck_assert_int_eq(hb_netstat_interface_for("localhost", name, sizeof name), UV_EINVAL);
    ck_assert_int_eq(hb_netstat_interface_for("127.0.0.1:80", name, sizeof name), UV_EINVAL);
    ck_assert_int_eq(hb_netstat_interface_for(NULL, name, sizeof name), UV_EINVAL);
    /* Every address of this host gives an interface that holds it (or one of the same name when
     * several hold it); the wildcard gives one the statistics list. */
    uv_interface_address_t *ifs;
    int n;
    ck_assert_int_eq(uv_interface_addresses(&ifs, &n), 0);
    for (int i = 0; i < n; i++) {
        char ip[64];
        if (ifs[i].address.address4.sin_family == AF_INET)
            uv_ip4_name(&ifs[i].address.address4, ip, sizeof ip);
        else
            uv_ip6_name(&ifs[i].address.address6, ip, sizeof ip);
        if (strchr(ip, '%') != NULL)
            continue; /* a scoped link-local address is no literal for us */
        ck_assert_int_eq(hb_netstat_interface_for(ip, name, sizeof name), 0);
        int holds = 0;
        for (int j = 0; j < n; j++)
            holds |= strcmp(ifs[j].name, name) == 0;
        ck_assert_msg(holds, "%s gave %s", ip, name);
    }
    uv_free_interface_addresses(ifs, n);
    ck_assert_int_eq(hb_netstat_interface_for("0.0.0.0", name, sizeof name), 0);
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_counters_t c;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_CLIENT), 0);
    hb_netstat_t ns;
    hb_netstat_options_t o = {.interface = name};
    ck_assert_int_eq(hb_netstat_init(&loop, &ns, &c, &o), 0);
    close_all(&loop, &ns);
    hb_counters_close(&c);
}
END_TEST

static void on_server_closed(hb_server_t *s)
{
    *(int *)s->data = 1;
}

/* Start and close a server with opts.nic as given; returns hb_server_start's result, and the
 * interface and identity it counted. */
static int server_nic(const char *nic, char *used, size_t cap, uint64_t *host)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.listen_port = 0;
    o.threads = 1;
    o.nic = nic;
    hb_server_t s;
    ck_assert_int_eq(hb_server_init(&loop, &s, &o), 0);
    int r = hb_server_start(&s);
    snprintf(used, cap, "%s", r == 0 ? hb_server_nic(&s) : hb_server_last_error(&s));
    hb_report_t rep;
    hb_counters_snapshot(hb_server_counters(&s), 0, &rep);
    *host = rep.cumulative[HB_CTR_NIC_HOST];
    int done = 0;
    s.data = &done;
    hb_server_close(&s, on_server_closed);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(done, 1);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    return r;
}

START_TEST(test_server_option)
{
    char lo[HB_NETDEV_NAME_MAX], used[256];
    loopback_name(lo, sizeof lo);
    uint64_t host;
    /* By default, the listen address's interface: 127.0.0.1, the loopback. */
    ck_assert_int_eq(server_nic(NULL, used, sizeof used, &host), 0);
    ck_assert_str_eq(used, lo);
    ck_assert_uint_ne(host, 0);
    /* Named. */
    ck_assert_int_eq(server_nic(lo, used, sizeof used, &host), 0);
    ck_assert_str_eq(used, lo);
    /* None. */
    ck_assert_int_eq(server_nic("", used, sizeof used, &host), 0);
    ck_assert_str_eq(used, "");
    ck_assert_uint_eq(host, 0);
    /* A name that is no interface: start fails, saying which. */
    ck_assert_int_eq(server_nic("hbnosuch0", used, sizeof used, &host), UV_ENODEV);
    ck_assert_ptr_nonnull(strstr(used, "'hbnosuch0'"));
    /* A name too long for an interface: init refuses it. */
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.nic = "0123456789abcdefg";
    hb_server_t s;
    ck_assert_int_eq(hb_server_init(&loop, &s, &o), UV_EINVAL);
    ck_assert_ptr_nonnull(strstr(hb_server_last_error(&s), "too long"));
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static Suite *netstat_suite(void)
{
    Suite *s = suite_create("netstat");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, files_setup, files_teardown);
    tcase_add_test(tc, test_init_refuses);
    tcase_add_test(tc, test_counts_each_reading_for_its_second);
    suite_add_tcase(s, tc);
    TCase *real = tcase_create("real");
    tcase_set_timeout(real, 30);
    tcase_add_test(real, test_loopback_for_real);
    tcase_add_test(real, test_interface_for);
    tcase_add_test(real, test_server_option);
    suite_add_tcase(s, real);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(netstat_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
