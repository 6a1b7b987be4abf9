/* Integration tests of the load client over many servers: in-process servers on the test's loop
 * (their workers in their own threads), a client given their addresses as a list, and scripted
 * peers that reset or never answer. Users land where the ring (hongbao/ring.h) says, each server
 * holding exactly its users; a server that stops sends its users, and only them, to their next
 * server, where they log in and shake on; IPv4 and IPv6 servers mix in one list; a dead or
 * misbehaving entry in the list sends its users to their next choice from the start; the modulo
 * route keeps users where they are. */
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_harness.h"
#include "hongbao.h"

#define NSRV      3
#define MAX_USERS 600

static hb_server_t srv[NSRV];
static int srv_up[NSRV], srv_closed[NSRV];
static hb_client_t client;
static int client_closed;

/* The client's list: the servers' (and peers') addresses, and their ring keys. */
static char names[NSRV][64];
static const char *list[NSRV];
static uint64_t keys[NSRV];
static uint32_t nlist;

/* Where each user should be (an index into list), and how many users. */
static uint32_t where[MAX_USERS];
static uint32_t nusers;
/* Frames queued to users by online_at, each to reach the client. */
static uint64_t probes_sent;

static void on_srv_closed(hb_server_t *s)
{
    srv_closed[s - srv] = 1;
}

static void on_client_closed(hb_client_t *c)
{
    (void)c;
    client_closed = 1;
}

static void loop_start(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &watch);
    memset(srv_up, 0, sizeof srv_up);
    memset(srv_closed, 0, sizeof srv_closed);
    nlist = 0;
}

/* Put name into the client's list; returns its index. */
static uint32_t list_add(const char *name)
{
    ck_assert_uint_lt(nlist, NSRV);
    snprintf(names[nlist], sizeof names[nlist], "%s", name);
    list[nlist] = names[nlist];
    keys[nlist] = hb_ring_key(name);
    return nlist++;
}

static void list_add_port(int port)
{
    char name[64];
    snprintf(name, sizeof name, "127.0.0.1:%d", port);
    list_add(name);
}

/* Start server i on a free port of host (an IPv4 or IPv6 loopback address) and list it as entry i,
 * by the name the ring knows it by ("[::1]:PORT" for IPv6). */
static void server_start_on(unsigned i, const char *host)
{
    hb_server_options_t so;
    hb_server_options_default(&so);
    so.listen_host = host;
    so.listen_port = 0;
    so.threads = 1;
    so.sets = 2;
    so.seed = 7 + i;
    so.nic = "";
    ck_assert_int_eq(hb_server_init(&loop, &srv[i], &so), 0);
    ck_assert_int_eq(hb_server_start(&srv[i]), 0);
    srv_up[i] = 1;
    ck_assert_uint_eq(nlist, i);
    char name[64];
    snprintf(name, sizeof name, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, srv[i].port);
    list_add(name);
}

static void server_start(unsigned i)
{
    server_start_on(i, "127.0.0.1");
}

/* users 0..n-1, over the list, at qps for the fleet (n users at n/s: each sends once a second). */
static void client_start(uint32_t n, uint64_t qps, int route, uint32_t login_timeout_ms)
{
    ck_assert_uint_le(n, MAX_USERS);
    hb_client_options_t co;
    hb_client_options_default(&co);
    co.servers = list;
    co.nservers = nlist;
    co.route = route;
    co.login_timeout_ms = login_timeout_ms;
    co.min_user = 0;
    co.max_user = n - 1;
    co.total_users = n;
    co.qps = qps;
    ck_assert_int_eq(hb_client_init(&loop, &client, &co), 0);
    ck_assert_int_eq(hb_client_start(&client), 0);
    client_closed = 0;
    probes_sent = 0;
    nusers = n;
    for (uint32_t u = 0; u < n; u++)
        where[u] = route == HB_CLIENT_ROUTE_MODULO ? u % nlist : hb_ring_pick(keys, nlist, u);
}

static int all_connected(void)
{
    return client.stats.connected == client.stats.users;
}

static uint64_t replies(void)
{
    return client.stats.replies[0] + client.stats.replies[1] + client.stats.replies[3];
}

/* Close the client and every server still up; no handle may be left. */
static void stop_all(void)
{
    hb_client_close(&client, on_client_closed);
    for (unsigned i = 0; i < NSRV; i++)
        if (srv_up[i] && !srv_closed[i])
            hb_server_close(&srv[i], on_srv_closed);
    for (;;) {
        int done = client_closed;
        for (unsigned i = 0; i < NSRV; i++)
            done = done && (!srv_up[i] || srv_closed[i]);
        if (done)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    loop_finish();
}

/* Whether user is online at server i: the server queues it a frame (an application frame the client
 * counts in app_frames) only then. */
static int online_at(unsigned i, uint32_t user)
{
    hb_msg_t m = {.cmd = HB_CMD_APP_FIRST, .timestamp = (uint64_t)time(NULL)};
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(&m, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    int r = hb_server_send_to_user(&srv[i], user, buf, (size_t)n);
    ck_assert_msg(r == 0 || r == HB_EOFFLINE, "send_to_user: %s", hb_err_name(r));
    return r == 0;
}

static int probes_arrived(void)
{
    return client.stats.app_frames >= probes_sent;
}

/* Every server that is up holds exactly the users where[] gives it (list index i is server i):
 * each of them online there and nowhere else, and no one more. */
static void expect_placement(void)
{
    uint32_t count[NSRV] = {0};
    for (uint32_t u = 0; u < nusers; u++)
        count[where[u]]++;
    for (unsigned i = 0; i < NSRV; i++)
        if (srv_up[i] && !srv_closed[i])
            ck_assert_uint_eq(hb_server_users_online(&srv[i]), count[i]);
    for (uint32_t u = 0; u < nusers; u++)
        for (unsigned i = 0; i < NSRV; i++) {
            if (!srv_up[i] || srv_closed[i])
                continue;
            ck_assert_msg(online_at(i, u) == (i == where[u]),
                          "user %u: online at server %u is %d, the ring says server %u", u, i,
                          !(i == where[u]), where[u]);
            probes_sent += i == where[u];
        }
    /* The probes reach the client: the connections the servers hold are the client's. */
    ck_assert(run_until(probes_arrived, 10000));
    ck_assert_uint_eq(client.stats.app_frames, probes_sent);
}

/* Servers 0, 1, 2 listed in that order, the client's users over them, all logged in. */
static void three_servers_and_client(uint32_t users, uint64_t qps, int route)
{
    loop_start();
    for (unsigned i = 0; i < NSRV; i++)
        server_start(i);
    client_start(users, qps, route, 0);
    ck_assert(run_until(all_connected, 10000));
}

static uint64_t replies_goal;

/* Shakes server i has seen so far. */
static uint64_t shakes_at(unsigned i)
{
    hb_report_t r;
    hb_counters_snapshot(hb_server_counters(&srv[i]), (uint64_t)time(NULL), &r);
    return r.cumulative[HB_CTR_FRAME_SHAKE];
}

static int replies_reached(void)
{
    return replies() >= replies_goal;
}

/* ---- users where the ring says ---- */

START_TEST(test_users_spread_as_the_ring_says)
{
    three_servers_and_client(MAX_USERS, MAX_USERS, HB_CLIENT_ROUTE_AUTO);
    const hb_client_stats_t *st = &client.stats;
    ck_assert_uint_eq(st->connect_failures, 0);
    ck_assert_uint_eq(st->failovers, 0);
    ck_assert_uint_eq(st->reconnects, 0);
    expect_placement();
    for (unsigned i = 0; i < NSRV; i++) /* every server has a fair share, none is left out */
        ck_assert_uint_gt(hb_server_users_online(&srv[i]), MAX_USERS / NSRV / 2);
    replies_goal = replies() + MAX_USERS; /* each user's next shake, at whichever server */
    ck_assert(run_until(replies_reached, 10000));
    ck_assert_uint_eq(st->bad_frames, 0);
    stop_all();
}
END_TEST

/* ---- a server stops mid-run ---- */

static uint32_t moved;

static int failed_over(void)
{
    return srv_closed[1] && all_connected() && client.stats.failovers >= moved;
}

START_TEST(test_stopped_server_users_go_to_their_next)
{
    three_servers_and_client(MAX_USERS, MAX_USERS, HB_CLIENT_ROUTE_AUTO);
    replies_goal = MAX_USERS / 2;
    ck_assert(run_until(replies_reached, 10000)); /* mid-run: shaking */
    moved = 0;
    uint32_t landed[NSRV] = {0};
    for (uint32_t u = 0; u < nusers; u++)
        if (where[u] == 1) {
            where[u] = hb_ring_next(keys, nlist, u, 1);
            ck_assert_uint_ne(where[u], 1);
            landed[where[u]]++;
            moved++;
        }
    ck_assert_uint_gt(moved, 0);
    hb_server_close(&srv[1], on_srv_closed);
    ck_assert(run_until(failed_over, 15000));
    const hb_client_stats_t *st = &client.stats;
    /* Exactly the stopped server's users moved, each once, and nobody else lost a connection. */
    ck_assert_uint_eq(st->failovers, moved);
    ck_assert_uint_eq(st->reconnects, moved);
    ck_assert_uint_eq(st->disconnects, moved);
    ck_assert_uint_eq(st->connects, MAX_USERS + moved);
    /* They spread over both survivors, each landing on its own next choice. */
    ck_assert_uint_gt(landed[0], 0);
    ck_assert_uint_gt(landed[2], 0);
    expect_placement();
    /* And shake on there: every user's next send is answered. */
    uint64_t shakes0 = shakes_at(0), shakes2 = shakes_at(2);
    replies_goal = replies() + MAX_USERS;
    ck_assert(run_until(replies_reached, 10000));
    ck_assert_uint_gt(shakes_at(0), shakes0);
    ck_assert_uint_gt(shakes_at(2), shakes2);
    ck_assert_uint_eq(st->bad_frames, 0);
    stop_all();
}
END_TEST

/* ---- IPv4 and IPv6 servers in one list ---- */

START_TEST(test_ipv4_and_ipv6_servers)
{
    loop_start();
    server_start(0);
    server_start_on(1, "::1");
    client_start(200, 200, HB_CLIENT_ROUTE_AUTO, 0);
    ck_assert(run_until(all_connected, 10000));
    ck_assert_uint_eq(client.stats.connect_failures, 0);
    ck_assert_uint_eq(client.stats.failovers, 0);
    expect_placement(); /* the ring knows the IPv6 server as "[::1]:PORT" */
    ck_assert_uint_gt(hb_server_users_online(&srv[1]), 0);
    stop_all();
}
END_TEST

/* ---- a dead entry in the list from the start ---- */

START_TEST(test_dead_entry_users_go_to_their_next)
{
    loop_start();
    server_start(0);
    list_add_port(loopback_dead_port()); /* entry 1: nobody listens */
    server_start(2);
    client_start(300, 300, HB_CLIENT_ROUTE_AUTO, 0);
    uint32_t orphans = 0;
    for (uint32_t u = 0; u < nusers; u++)
        if (where[u] == 1) {
            where[u] = hb_ring_next(keys, nlist, u, 1);
            orphans++;
        }
    ck_assert_uint_gt(orphans, 0);
    ck_assert(run_until(all_connected, 10000));
    const hb_client_stats_t *st = &client.stats;
    ck_assert_uint_eq(st->failovers, orphans);
    ck_assert_uint_eq(st->reconnects, 0);
    ck_assert_uint_ge(st->connect_failures, orphans);
    ck_assert_int_eq(st->last_connect_error, UV_ECONNREFUSED);
    expect_placement();
    stop_all();
}
END_TEST

/* ---- misbehaving peers: reset or close at once, never answer, stall inside the login reply ----
 */

enum { PEER_RESET, PEER_CLOSE, PEER_PARTIAL };

typedef struct peer {
    uv_tcp_t listener;
    int mode;
    int accepted;
    uv_tcp_t conns[256];
    int nconns;
} peer_t;

static peer_t peers[3];

static void on_peer_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    (void)size;
    static char b[256];
    *buf = uv_buf_init(b, sizeof b);
}

/* PEER_PARTIAL: on the login, 7 of the login reply's 20 bytes, then nothing. */
static void on_peer_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread <= 0) {
        uv_read_stop(s);
        return;
    }
    hb_msg_t m = {.cmd = HB_CMD_LOGIN_REPLY, .timestamp = (uint64_t)time(NULL)};
    uint8_t out[HB_FRAME_MAX];
    ck_assert_int_eq(hb_msg_encode(&m, out, sizeof out), 20);
    uv_buf_t part = uv_buf_init((char *)out, 7);
    uv_try_write(s, &part, 1);
    uv_read_stop(s);
}

static void on_peer_conn(uv_stream_t *l, int status)
{
    peer_t *p = l->data;
    ck_assert_int_eq(status, 0);
    ck_assert_int_lt(p->nconns, 256);
    uv_tcp_t *c = &p->conns[p->nconns++];
    ck_assert_int_eq(uv_tcp_init(&loop, c), 0);
    ck_assert_int_eq(uv_accept(l, (uv_stream_t *)c), 0);
    p->accepted++;
    if (p->mode == PEER_RESET)
        ck_assert_int_eq(uv_tcp_close_reset(c, NULL), 0);
    else if (p->mode == PEER_CLOSE)
        uv_close((uv_handle_t *)c, NULL);
    else
        ck_assert_int_eq(uv_read_start((uv_stream_t *)c, on_peer_alloc, on_peer_read), 0);
}

static void peer_start(peer_t *p, int mode)
{
    memset(p, 0, sizeof *p);
    p->mode = mode;
    struct sockaddr_in sa;
    int len = sizeof sa;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    ck_assert_int_eq(uv_tcp_init(&loop, &p->listener), 0);
    p->listener.data = p;
    ck_assert_int_eq(uv_tcp_bind(&p->listener, (struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&p->listener, 128, on_peer_conn), 0);
    ck_assert_int_eq(uv_tcp_getsockname(&p->listener, (struct sockaddr *)&sa, &len), 0);
    list_add_port(ntohs(sa.sin_port));
}

static void peer_stop(peer_t *p)
{
    uv_close((uv_handle_t *)&p->listener, NULL);
    for (int i = 0; i < p->nconns; i++)
        if (!uv_is_closing((uv_handle_t *)&p->conns[i]))
            uv_close((uv_handle_t *)&p->conns[i], NULL);
}

/* A listener that never accepts: the kernel completes the handshake, the login goes unread. */
static int silent_start(void)
{
    int port, fd = loopback_socket(&port);
    ck_assert_int_eq(listen(fd, 128), 0);
    list_add_port(port);
    return fd;
}

/* With server 0 the only real one of the list: start the client, expect every user there in the
 * end, and return how many have another first choice (the users that must fail over). */
static uint32_t client_start_all_on_0(uint32_t login_timeout_ms)
{
    client_start(100, 100, HB_CLIENT_ROUTE_AUTO, login_timeout_ms);
    uint32_t n = 0;
    for (uint32_t u = 0; u < nusers; u++) {
        n += where[u] != 0;
        where[u] = 0;
    }
    ck_assert_uint_gt(n, 0);
    return n;
}

START_TEST(test_peers_that_reset_or_close)
{
    loop_start();
    server_start(0);
    peer_start(&peers[0], PEER_RESET);
    peer_start(&peers[2], PEER_CLOSE);
    uint32_t orphans = client_start_all_on_0(0);
    ck_assert(run_until(all_connected, 10000));
    const hb_client_stats_t *st = &client.stats;
    /* they did try them first */
    ck_assert_int_ge(peers[0].accepted + peers[2].accepted, (int)orphans);
    ck_assert_uint_eq(st->failovers, orphans);
    ck_assert_uint_ge(st->connect_failures, orphans);
    int e = st->last_connect_error;
    ck_assert_msg(e == UV_ECONNRESET || e == UV_EPIPE || e == UV_EOF, "last error %s",
                  hb_err_name(e));
    expect_placement();
    peer_stop(&peers[0]);
    peer_stop(&peers[2]);
    stop_all();
}
END_TEST

START_TEST(test_peers_that_never_answer_the_login)
{
    loop_start();
    server_start(0);
    int silent = silent_start();
    peer_start(&peers[1], PEER_PARTIAL);
    uint32_t orphans = client_start_all_on_0(300);
    /* Within the login deadline of 300 ms (twice, at most) and the back-offs: the kernel would
     * wait for ever on a peer that accepted, and minutes on an unanswered SYN. */
    ck_assert(run_until(all_connected, 10000));
    const hb_client_stats_t *st = &client.stats;
    ck_assert_int_ge(peers[1].accepted, 1);
    ck_assert_uint_eq(st->failovers, orphans);
    ck_assert_uint_ge(st->connect_failures, orphans);
    ck_assert_int_eq(st->last_connect_error, UV_ETIMEDOUT);
    ck_assert_uint_eq(st->bad_frames, 0);
    expect_placement();
    peer_stop(&peers[1]);
    stop_all();
    close(silent);
}
END_TEST

/* ---- the modulo route over a list: no failover ---- */

static int reconnecting(void)
{
    return srv_closed[1] && client.stats.connect_failures > 0;
}

START_TEST(test_modulo_route_keeps_users_in_place)
{
    three_servers_and_client(90, 0, HB_CLIENT_ROUTE_MODULO);
    expect_placement(); /* user u on server u % 3 */
    hb_server_close(&srv[1], on_srv_closed);
    ck_assert(run_until(reconnecting, 10000));
    const hb_client_stats_t *st = &client.stats;
    ck_assert_uint_eq(st->disconnects, 30);
    ck_assert_uint_eq(st->connected, 60);
    ck_assert_uint_eq(st->failovers, 0);
    ck_assert_uint_eq(st->reconnects, 0);
    ck_assert_uint_eq(hb_server_users_online(&srv[0]), 30);
    ck_assert_uint_eq(hb_server_users_online(&srv[2]), 30);
    stop_all();
}
END_TEST

/* ---- options ---- */

static void init_closes(const hb_client_options_t *o)
{
    ck_assert_int_eq(hb_client_init(&loop, &client, o), 0);
    client_closed = 0;
    hb_client_close(&client, on_client_closed);
    while (!client_closed)
        uv_run(&loop, UV_RUN_ONCE);
}

START_TEST(test_init_checks_the_server_list)
{
    loop_start();
    hb_client_options_t o;
    hb_client_options_default(&o);
    const char *bad_host[] = {"127.0.0.1:5", "localhost:6"};
    o.servers = bad_host;
    o.nservers = 2;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    const char *twice[] = {"127.0.0.1:5", "[127.0.0.1]:005"}; /* one address, written twice */
    o.servers = twice;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    const char *twice6[] = {"[::1]:5", "[0:0::1]:5"};
    o.servers = twice6;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    const char *port0[] = {"127.0.0.1:0"};
    o.servers = port0;
    o.nservers = 1;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    o.nservers = 0; /* a list of none */
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    const char *good[] = {"127.0.0.1:5", "[::1]:5"}; /* either family, without sources */
    o.servers = good;
    o.nservers = HB_CLIENT_MAX_SERVERS + 1;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    o.nservers = 2;
    o.route = HB_CLIENT_ROUTE_HASH + 1;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    o.route = HB_CLIENT_ROUTE_AUTO;
    o.sources[0] = "127.0.0.1"; /* an IPv4 source cannot reach [::1] */
    o.nsources = 1;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    o.nsources = 0;
    o.server_port = 0; /* unused with a list */
    init_closes(&o);
    /* The port range as before: 3 ports from server_port (never started: nothing is sent). */
    hb_client_options_default(&o);
    o.server_port = loopback_dead_port();
    o.nservers = 3;
    init_closes(&o);
    o.server_port = 65534;
    ck_assert_int_eq(hb_client_init(&loop, &client, &o), UV_EINVAL);
    loop_finish();
}
END_TEST

static Suite *fleet_suite(void)
{
    Suite *s = suite_create("client_fleet");
    TCase *tc = tcase_create("servers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_init_checks_the_server_list);
    tcase_add_test(tc, test_users_spread_as_the_ring_says);
    tcase_add_test(tc, test_stopped_server_users_go_to_their_next);
    tcase_add_test(tc, test_ipv4_and_ipv6_servers);
    tcase_add_test(tc, test_dead_entry_users_go_to_their_next);
    tcase_add_test(tc, test_peers_that_reset_or_close);
    tcase_add_test(tc, test_peers_that_never_answer_the_login);
    tcase_add_test(tc, test_modulo_route_keeps_users_in_place);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fleet_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
