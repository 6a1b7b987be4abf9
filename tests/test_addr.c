/* Unit tests for the addr module: IP address literals and "HOST:PORT", tables of good and bad
 * forms, every input placed against a PROT_NONE guard page (an over-read faults), and the
 * address literals compared with the C library's inet_pton (libuv's uv_ip4_addr/uv_ip6_addr use
 * the same rules) over every short string of a telling alphabet and many random ones. */
#include <arpa/inet.h>
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "expect.h"
#include "guard.h"
#include "hongbao/addr.h"

/* ---- inputs against a guard page ---- */

/* text, NUL included, at the end of the readable page: reading past its NUL faults. */
static const char *guarded(const char *text)
{
    return guarded_bytes(text, strlen(text) + 1);
}

/* ---- address literals ---- */

static const char *const ipv4_good[] = {"0.0.0.0",      "127.0.0.1", "255.255.255.255",
                                        "1.2.3.4",      "10.0.0.1",  "192.168.100.200",
                                        "9.99.199.249", "100.0.0.0", "0.10.200.255"};

static const char *const ipv6_good[] = {
    "::",
    "::1",
    "1::",
    "1::2",
    "2001:db8::7",
    "2001:DB8:0:0:8:800:200C:417A",
    "ff01::101",
    "0:0:0:0:0:0:0:0",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1:2:3::6:7:8",
    "0001:002:03:4::",
    "::ffff:192.0.2.1",
    "::192.0.2.1",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5::1.2.3.4",
    "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    "fe80::1%eth0",
    "fe80::1%2",
    "fe80::1%br-0.1_x",
    "::1%abcdefghijklmno",
};

static const char *const neither[] = {
    "",
    " ",
    "localhost",
    "1.2.3",
    "1.2.3.4.5",
    "1.2.3.256",
    "256.1.1.1",
    "01.2.3.4",
    "1.02.3.4",
    "1.2.3.00",
    "1..2.3",
    ".1.2.3.4",
    "1.2.3.4.",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3.-4",
    "1.2.3.4%eth0",
    "0x1.2.3.4",
    "1234.1.1.1",
    ":",
    ":::",
    ":1",
    "1:",
    "1:::2",
    "::1::",
    "1::2::3",
    "12345::",
    "g::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::",
    "::1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::8",
    "1:2:3:4:5:6:7:1.2.3.4",
    "1:2:3:4:5:1.2.3.4",
    "1:2:3:4:5:6::1.2.3.4",
    "::1.2.3",
    "::1.2.3.4.5",
    "::01.2.3.4",
    "1.2.3.4::",
    "::1.2.3.4:1",
    "[::1]",
    "::1]",
    "fe80::1%",
    "fe80::1%abcdefghijklmnop",
    "fe80::1%eth 0",
    "fe80::1%eth0%1",
    "fe80::1%[x]",
    "%eth0",
};

START_TEST(test_family_tables)
{
    for (size_t i = 0; i < sizeof ipv4_good / sizeof ipv4_good[0]; i++) {
        ck_assert_msg(hb_addr_family(guarded(ipv4_good[i])) == HB_ADDR_IPV4, "'%s' is IPv4",
                      ipv4_good[i]);
    }
    for (size_t i = 0; i < sizeof ipv6_good / sizeof ipv6_good[0]; i++) {
        ck_assert_msg(hb_addr_family(guarded(ipv6_good[i])) == HB_ADDR_IPV6, "'%s' is IPv6",
                      ipv6_good[i]);
    }
    for (size_t i = 0; i < sizeof neither / sizeof neither[0]; i++) {
        ck_assert_msg(hb_addr_family(guarded(neither[i])) == 0, "'%s' is no address", neither[i]);
    }
    ck_assert_int_eq(hb_addr_family(NULL), 0);
    /* The longest forms fit HB_ADDR_HOST_SIZE with the NUL, exactly. */
    ck_assert_uint_eq(strlen("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%abcdefghijklmno") + 1,
                      HB_ADDR_HOST_SIZE);
    ck_assert_int_eq(
        hb_addr_family(guarded("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%abcdefghijklmno")),
        HB_ADDR_IPV6);
}
END_TEST

/* What the C library says of text: HB_ADDR_IPV4, HB_ADDR_IPV6 or 0, the zone (as libuv does)
 * taken off before inet_pton looks at an IPv6 address. */
static int libc_family(const char *text)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, text, buf) == 1)
        return HB_ADDR_IPV4;
    char address[64];
    const char *zone = strchr(text, '%');
    size_t n = zone != NULL ? (size_t)(zone - text) : strlen(text);
    if (n >= sizeof address)
        return 0;
    memcpy(address, text, n);
    address[n] = '\0';
    return inet_pton(AF_INET6, address, buf) == 1 ? HB_ADDR_IPV6 : 0;
}

/* Every string of up to 7 characters over an alphabet of the characters that matter (no zones:
 * inet_pton knows none), compared with inet_pton: 9^7 + ... strings. */
START_TEST(test_family_matches_inet_pton_exhaustively)
{
    static const char alphabet[] = "0129af:.";
    enum { K = sizeof alphabet - 1, MAXLEN = 7 };
    char s[MAXLEN + 1];
    unsigned long checked = 0, v4 = 0, v6 = 0;
    for (unsigned len = 0; len <= MAXLEN; len++) {
        unsigned long total = 1;
        for (unsigned i = 0; i < len; i++)
            total *= K;
        for (unsigned long code = 0; code < total; code++) {
            unsigned long c = code;
            for (unsigned i = 0; i < len; i++) {
                s[i] = alphabet[c % K];
                c /= K;
            }
            s[len] = '\0';
            int want = libc_family(s);
            int got = hb_addr_family(s);
            if (got != want)
                ck_abort_msg("'%s': hb_addr_family %d, inet_pton says %d", s, got, want);
            checked++;
            v4 += want == HB_ADDR_IPV4;
            v6 += want == HB_ADDR_IPV6;
        }
    }
    ck_assert_uint_gt(checked, 2000000);
    ck_assert_uint_gt(v6, 10000);
    ck_assert_uint_gt(v4, 0);
}
END_TEST

/* A small seeded generator (splitmix64), so every run sees the same sequence. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A random string built from pieces of addresses, so that a good share are addresses. */
static void random_address_text(char *s, size_t size)
{
    static const char *const pieces[] = {"::",      ":", "1",   "ff",  "abcd",    "0",    "00",
                                         "255",     ".", "1.2", "3.4", "256",     "ffff", "12345",
                                         "1.2.3.4", "%", "e",   "0:0", "::ffff:", "9"};
    size_t n = 0;
    unsigned count = 1 + (unsigned)(rng_next() % 12);
    for (unsigned k = 0; k < count; k++) {
        const char *p = pieces[rng_next() % (sizeof pieces / sizeof pieces[0])];
        size_t pl = strlen(p);
        if (n + pl + 1 > size)
            break;
        memcpy(s + n, p, pl);
        n += pl;
    }
    s[n] = '\0';
}

START_TEST(test_family_matches_inet_pton_randomly)
{
    rng_state = 2024;
    unsigned long v6 = 0, v4 = 0;
    for (unsigned i = 0; i < 2000000; i++) {
        char s[64];
        random_address_text(s, sizeof s);
        if (strchr(s, '%') != NULL)
            continue; /* zones: the tables cover them */
        int want = libc_family(s);
        int got = hb_addr_family(s);
        if (got != want)
            ck_abort_msg("'%s': hb_addr_family %d, inet_pton says %d", s, got, want);
        v6 += want == HB_ADDR_IPV6;
        v4 += want == HB_ADDR_IPV4;
        if (i % 97 == 0)
            EXPECT_INT(hb_addr_family(guarded(s)), ==, want);
    }
    ck_assert_uint_gt(v6, 20000);
    ck_assert_uint_gt(v4, 1000);
}
END_TEST

/* ---- HOST:PORT ---- */

struct parse_case {
    const char *text;
    const char *host;
    int port;
};

static const struct parse_case parse_good[] = {
    {"127.0.0.1:1025", "127.0.0.1", 1025},
    {"0.0.0.0:0", "0.0.0.0", 0},
    {"255.255.255.255:65535", "255.255.255.255", 65535},
    {"10.0.0.1:080", "10.0.0.1", 80},
    {"10.0.0.1:0000000000080", "10.0.0.1", 80},
    {"[::1]:8080", "::1", 8080},
    {"[::]:0", "::", 0},
    {"[2001:db8::7]:443", "2001:db8::7", 443},
    {"[::ffff:192.0.2.1]:1", "::ffff:192.0.2.1", 1},
    {"[fe80::1%eth0]:9", "fe80::1%eth0", 9},
    {"[10.0.0.1]:80", "10.0.0.1", 80},
    /* Unbracketed IPv6: the port follows the last colon. */
    {"::1:8080", "::1", 8080},
    {"2001:db8::7:443", "2001:db8::7", 443},
    {"1:2:3:4:5:6:7:8:1", "1:2:3:4:5:6:7:8", 1},
    {"fe80::1%eth0:9", "fe80::1%eth0", 9},
};

static const char *const parse_bad[] = {
    "",
    ":",
    ":80",
    "127.0.0.1",
    "127.0.0.1:",
    "127.0.0.1:65536",
    "127.0.0.1:99999999999999999999",
    "127.0.0.1:-1",
    "127.0.0.1:+80",
    "127.0.0.1:80 ",
    "127.0.0.1: 80",
    "127.0.0.1:8o",
    "127.0.0.1:0x50",
    " 127.0.0.1:80",
    "localhost:80",
    "example.com:443",
    "1.2.3:80",
    "[::1]",
    "[::1]:",
    "[::1]:x",
    "[::1:80",
    "::1]:80",
    "[]:80",
    "[[::1]]:80",
    "[::1]]:80",
    "[ ::1]:80",
    "[::1] :80",
    "[localhost]:80",
    "[fe80::1%]:80",
    "1.2.3.4%eth0:80",
    "::g:80",
    "::1", /* host ':' */
};

START_TEST(test_parse_tables)
{
    for (size_t i = 0; i < sizeof parse_good / sizeof parse_good[0]; i++) {
        const struct parse_case *c = &parse_good[i];
        char host[HB_ADDR_HOST_SIZE];
        int port = -7;
        int rc = hb_addr_parse(guarded(c->text), host, sizeof host, &port);
        ck_assert_msg(rc == 0, "'%s': %d", c->text, rc);
        ck_assert_str_eq(host, c->host);
        ck_assert_int_eq(port, c->port);
        ck_assert_int_ne(hb_addr_family(host), 0);
    }
    for (size_t i = 0; i < sizeof parse_bad / sizeof parse_bad[0]; i++) {
        char host[HB_ADDR_HOST_SIZE] = "untouched";
        int port = -7;
        int rc = hb_addr_parse(guarded(parse_bad[i]), host, sizeof host, &port);
        ck_assert_msg(rc == HB_EINVAL, "'%s': %d", parse_bad[i], rc);
        ck_assert_str_eq(host, "untouched");
        ck_assert_int_eq(port, -7);
    }
    char host[HB_ADDR_HOST_SIZE];
    int port = 0;
    ck_assert_int_eq(hb_addr_parse(NULL, host, sizeof host, &port), HB_EINVAL);
    ck_assert_int_eq(hb_addr_parse("1.2.3.4:5", NULL, sizeof host, &port), HB_EINVAL);
    ck_assert_int_eq(hb_addr_parse("1.2.3.4:5", host, sizeof host, NULL), HB_EINVAL);
}
END_TEST

/* The host must fit: host_size bytes, NUL included. */
START_TEST(test_parse_host_size)
{
    char host[HB_ADDR_HOST_SIZE];
    int port = 0;
    /* "10.0.0.1" needs 9 bytes. */
    memset(host, 'x', sizeof host);
    ck_assert_int_eq(hb_addr_parse("10.0.0.1:5", host, 8, &port), HB_ENOBUFS);
    ck_assert_int_eq(host[0], 'x');
    ck_assert_int_eq(port, 0);
    ck_assert_int_eq(hb_addr_parse("10.0.0.1:5", host, 0, &port), HB_ENOBUFS);
    ck_assert_int_eq(hb_addr_parse("10.0.0.1:5", host, 9, &port), 0);
    ck_assert_str_eq(host, "10.0.0.1");
    ck_assert_int_eq(port, 5);
    ck_assert_int_eq(host[9], 'x'); /* nothing written past host_size */
    /* A malformed text is HB_EINVAL whatever the room. */
    ck_assert_int_eq(hb_addr_parse("10.0.0:5", host, 1, &port), HB_EINVAL);
    /* The longest host fits HB_ADDR_HOST_SIZE. */
    const char *longest = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%abcdefghijklmno]:65535";
    ck_assert_int_eq(hb_addr_parse(guarded(longest), host, sizeof host, &port), 0);
    ck_assert_uint_eq(strlen(host) + 1, HB_ADDR_HOST_SIZE);
    ck_assert_int_eq(port, 65535);
    ck_assert_int_eq(hb_addr_parse(guarded(longest), host, sizeof host - 1, &port), HB_ENOBUFS);
}
END_TEST

/* Every port 0..65535 with both families; then what a parse accepts, written back as
 * "[host]:port", parses to the same. */
START_TEST(test_parse_every_port_and_round_trip)
{
    char text[128], host[HB_ADDR_HOST_SIZE];
    int port;
    for (int p = 0; p <= 65535; p++) {
        snprintf(text, sizeof text, p % 2 ? "192.0.2.%d:%d" : "[2001:db8::%x]:%d", p % 256, p);
        port = -1;
        EXPECT_INT(hb_addr_parse(text, host, sizeof host, &port), ==, 0);
        EXPECT_INT(port, ==, p);
    }
    rng_state = 99;
    unsigned accepted = 0;
    for (unsigned i = 0; i < 300000; i++) {
        char s[80];
        random_address_text(s, 60);
        size_t n = strlen(s);
        snprintf(s + n, sizeof s - n, ":%u", (unsigned)(rng_next() % 70000));
        int rc = hb_addr_parse(i % 53 == 0 ? guarded(s) : s, host, sizeof host, &port);
        if (rc != 0) {
            EXPECT_INT(rc, ==, HB_EINVAL);
            continue;
        }
        accepted++;
        EXPECT_INT(hb_addr_family(host), !=, 0);
        EXPECT_INT(port, <=, 65535);
        char again[HB_ADDR_HOST_SIZE];
        int port2 = -1;
        snprintf(text, sizeof text, "[%s]:%d", host, port);
        EXPECT_INT(hb_addr_parse(text, again, sizeof again, &port2), ==, 0);
        EXPECT_INT(strcmp(again, host), ==, 0);
        EXPECT_INT(port2, ==, port);
    }
    ck_assert_uint_gt(accepted, 5000);
}
END_TEST

static Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, guard_setup, guard_teardown);
    tcase_add_test(tc, test_family_tables);
    tcase_add_test(tc, test_parse_tables);
    tcase_add_test(tc, test_parse_host_size);
    suite_add_tcase(s, tc);

    TCase *big = tcase_create("large");
    tcase_add_checked_fixture(big, guard_setup, guard_teardown);
    tcase_set_timeout(big, 120);
    tcase_add_test(big, test_family_matches_inet_pton_exhaustively);
    tcase_add_test(big, test_family_matches_inet_pton_randomly);
    tcase_add_test(big, test_parse_every_port_and_round_trip);
    suite_add_tcase(s, big);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(addr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
