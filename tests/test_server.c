/* Integration tests of the server runtime: a server on an ephemeral loopback port, its control
 * loop in a thread of the test, and users as plain blocking sockets (tests/server_harness.h). */
#include <check.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"

/* ---- tests
 * ---------------------------------------------------------------------------------------- */

START_TEST(test_login_reply_bytes)
{
    start_server(NULL);
    int fd = user_connect();
    static const uint8_t login_frame[] = {0x00, 0x10, 0x00, 0x00, 0, 0, 0, 0,
                                          0x65, 0x5f, 0x1c, 0x00, 0, 0, 0, 7};
    send_all(fd, login_frame, sizeof login_frame);
    uint8_t raw[HB_FRAME_MAX];
    hb_msg_t r;
    recv_msg(fd, &r, raw);
    /* length 20, cmd 1, then user 7, result 0 */
    static const uint8_t want_head[] = {0x00, 0x14, 0x00, 0x01};
    static const uint8_t want_payload[] = {0, 0, 0, 7, 0, 0, 0, 0};
    ck_assert_mem_eq(raw, want_head, 4);
    ck_assert_mem_eq(raw + 12, want_payload, 8);
    WAIT_FOR(hb_server_users_online(&H.server) == 1);
    close(fd);
    WAIT_FOR(hb_server_users_online(&H.server) == 0);
    stop_server();
}
END_TEST

START_TEST(test_first_frame_must_be_login)
{
    start_server(NULL);
    int fd = user_connect();
    hb_msg_t m = {.cmd = HB_CMD_SHAKE};
    m.u.shake.user_id = 5;
    send_msg(fd, &m);
    ck_assert(closed_by_peer(fd));
    close(fd);
    WAIT_FOR(counter(41) == 1);
    stop_server();
}
END_TEST

START_TEST(test_newer_login_wins)
{
    start_server(NULL);
    int old = login(9);
    int newer = login(9);
    ck_assert(closed_by_peer(old));
    close(old);
    hb_msg_t r = shake(newer, 9);
    ck_assert_uint_eq(r.u.shake_reply.result, HB_SHAKE_NONE);
    ck_assert_uint_eq(hb_server_users_online(&H.server), 1);
    close(newer);
    stop_server();
}
END_TEST

typedef struct gen_args {
    uint64_t qps, sum;
    int result;
} gen_args_t;

static void do_generate(void *arg)
{
    gen_args_t *g = arg;
    g->result = hb_server_generate_shake(&H.server, g->qps, g->sum);
}

START_TEST(test_shake_none_then_got)
{
    start_server(NULL);
    int fd = login(3);
    hb_msg_t r = shake(fd, 3);
    ck_assert_uint_eq(r.u.shake_reply.result, HB_SHAKE_NONE);
    ck_assert_uint_eq(r.u.shake_reply.user_id, 3);
    /* Enough envelopes that every SET's bucket holds some. */
    gen_args_t g = {100000, 40, 0};
    on_loop(do_generate, &g);
    ck_assert_int_eq(g.result, 0);
    WAIT_FOR(hb_server_envelopes_queued(&H.server) == 40);
    r = shake(fd, 3);
    ck_assert_uint_eq(r.u.shake_reply.result, HB_SHAKE_GOT);
    ck_assert_uint_eq(r.u.shake_reply.user_id, 0);
    ck_assert_uint_ge(r.u.shake_reply.envelope_id, HB_SHAKE_ENVELOPE_ID_BASE);
    ck_assert_uint_ge(r.u.shake_reply.amount, 10);
    ck_assert_uint_le(r.u.shake_reply.amount, 309);
    ck_assert_uint_eq(hb_server_envelopes_queued(&H.server), 39);
    close(fd);
    stop_server();
}
END_TEST

START_TEST(test_overload_replies_past_the_cap)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.max_qps = 5;
    start_server(&o);
    int fd = login(4);
    /* 20 shakes in one write: at most two seconds are touched, so at most 10 pass the cap. */
    send_shakes(fd, 4, 20);
    int overload = 0, none = 0;
    for (int i = 0; i < 20; i++) {
        hb_msg_t r;
        recv_msg(fd, &r, NULL);
        ck_assert_uint_eq(r.cmd, HB_CMD_SHAKE_REPLY);
        overload += r.u.shake_reply.result == HB_SHAKE_OVERLOAD;
        none += r.u.shake_reply.result == HB_SHAKE_NONE;
    }
    ck_assert_int_eq(overload + none, 20);
    ck_assert_int_ge(none, 5);
    ck_assert_int_le(none, 10);
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_OVERLOAD), (uint64_t)overload);
    close(fd);
    stop_server();
}
END_TEST

START_TEST(test_generator_feeds_sets_round_robin)
{
    /* One worker deals connections to its SETs in turn, so 8 users are 2 per SET. */
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.threads = 1;
    o.sets = 4;
    start_server(&o);
    gen_args_t g = {1000000, 400, 0};
    on_loop(do_generate, &g);
    ck_assert_int_eq(g.result, 0);
    WAIT_FOR(hb_server_envelopes_queued(&H.server) == 400);
    for (unsigned i = 0; i < H.server.nsets; i++)
        ck_assert_uint_eq(hb_server_envelopes_queued_in(&H.server, i), 100);
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_ENVELOPES), 400);
    /* Amounts are 10..309 each. */
    uint64_t issued = counter(HB_CTR_SHAKE_AMOUNT_ISSUED);
    ck_assert_uint_ge(issued, 400 * 10);
    ck_assert_uint_le(issued, 400 * 309);
    /* Every envelope handed out once: shake them all out through users spread over the SETs. */
    int fds[8];
    uint64_t got = 0, amount = 0;
    for (int u = 0; u < 8; u++)
        fds[u] = login(300 + (uint32_t)u);
    for (int round = 0; round < 60; round++) {
        for (int u = 0; u < 8; u++) {
            hb_msg_t r = shake(fds[u], 300 + (uint32_t)u);
            if (r.u.shake_reply.result == HB_SHAKE_GOT) {
                got++;
                amount += r.u.shake_reply.amount;
            }
        }
    }
    ck_assert_uint_eq(got, 400);
    ck_assert_uint_eq(amount, issued);
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_HANDED_OUT), 400);
    for (int u = 0; u < 8; u++)
        close(fds[u]);
    stop_server();
}
END_TEST

typedef struct send_args {
    uint32_t recipients[HB_SEND_MAX_RECIPIENTS];
    uint32_t total;
    uint32_t id;
    int result;
    unsigned count; /* 0: 3 */
} send_args_t;

static void do_send(void *arg)
{
    send_args_t *a = arg;
    a->result = hb_server_send_envelope(&H.server, a->recipients, a->count ? a->count : 3, a->total,
                                        &a->id);
}

START_TEST(test_send_envelope_claims_exactly_once)
{
    start_server(NULL);
    int fd[4];
    for (int i = 0; i < 4; i++)
        fd[i] = login(100 + (uint32_t)i);
    send_args_t a = {{100, 101, 102}, 1000, 0, -1, 0};
    on_loop(do_send, &a);
    ck_assert_int_eq(a.result, 0);
    ck_assert_uint_ge(a.id, HB_SEND_ENVELOPE_ID_BASE);
    /* Each recipient is told at once. */
    for (int i = 0; i < 3; i++) {
        uint8_t raw[HB_FRAME_MAX];
        hb_msg_t n;
        recv_msg(fd[i], &n, raw);
        ck_assert_uint_eq(n.cmd, HB_CMD_NOTICE);
        ck_assert_uint_eq(hb_get_u16(raw), 36);
        ck_assert_uint_eq(n.u.notice.envelope_id, a.id);
        ck_assert_uint_eq(n.u.notice.total_amount, 1000);
        ck_assert_uint_eq(n.u.notice.recipient_count, 3);
        ck_assert_uint_eq(n.u.notice.user_ids[0], 100);
        ck_assert_uint_eq(n.u.notice.user_ids[1], 101);
        ck_assert_uint_eq(n.u.notice.user_ids[2], 102);
    }
    /* A non-recipient gets nothing, even naming a recipient in the payload. */
    ck_assert_uint_eq(claim(fd[3], 100, a.id).u.claim_reply.amount, 0);
    /* A recipient is known by its login, whatever the payload says (the reference sends 0). */
    uint32_t first = claim(fd[0], 0, a.id).u.claim_reply.amount;
    ck_assert_uint_ge(first, 1);
    /* Asking again learns the same share: granted once, answered as often as asked. */
    ck_assert_uint_eq(claim(fd[0], 0, a.id).u.claim_reply.amount, first);
    uint32_t second = claim(fd[1], 101, a.id).u.claim_reply.amount;
    uint32_t third = claim(fd[2], 7, a.id).u.claim_reply.amount;
    ck_assert_uint_ge(second, 1);
    ck_assert_uint_ge(third, 1);
    ck_assert_uint_eq(first + second + third, 1000);
    /* Fully claimed: a recipient still learns its share, a non-recipient gets nothing; an unknown
     * envelope grants nothing either. */
    ck_assert_uint_eq(claim(fd[2], 0, a.id).u.claim_reply.amount, third);
    ck_assert_uint_eq(claim(fd[3], 0, a.id).u.claim_reply.amount, 0);
    ck_assert_uint_eq(claim(fd[1], 0, 0x123456).u.claim_reply.amount, 0);
    ck_assert_uint_eq(counter(HB_CTR_CLAIMS_GRANTED), 3);
    ck_assert_uint_eq(counter(HB_CTR_X_CLAIM_REPEAT), 2);
    ck_assert_uint_eq(counter(HB_CTR_SEND_AMOUNT_CLAIMED), 1000);
    ck_assert_uint_eq(counter(HB_CTR_SEND_CREATED), 1);
    ck_assert_uint_eq(counter(HB_CTR_SEND_AMOUNT_ISSUED), 1000);
    /* Recipients must be distinct. */
    send_args_t bad = {{5, 5, 6}, 1000, 0, 0, 0};
    on_loop(do_send, &bad);
    ck_assert_int_eq(bad.result, UV_EINVAL);
    for (int i = 0; i < 4; i++)
        close(fd[i]);
    stop_server();
}
END_TEST

static void send_chat(int fd, uint32_t to, const char *text)
{
    hb_msg_t m = {.cmd = HB_CMD_CHAT};
    m.u.chat.user_id = to;
    m.u.chat.text = (const uint8_t *)text;
    m.u.chat.text_len = (uint16_t)strlen(text);
    send_msg(fd, &m);
}

START_TEST(test_chat_across_sets)
{
    start_server(NULL);
    int a = login(200), b = login(201);
    char text[HB_CHAT_MAX + 1];
    memset(text, 'x', HB_CHAT_MAX);
    text[HB_CHAT_MAX] = '\0';
    memcpy(text, "hello", 5);
    send_chat(a, 201, text);
    hb_msg_t r;
    recv_msg(a, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_CHAT_REPLY);
    ck_assert_uint_eq(r.u.chat_reply.user_id, 201);
    ck_assert_uint_eq(r.u.chat_reply.result, HB_CHAT_DELIVERED);
    recv_msg(b, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_CHAT_DELIVER);
    ck_assert_uint_eq(r.u.chat.user_id, 200);
    ck_assert_uint_eq(r.u.chat.text_len, HB_CHAT_MAX);
    ck_assert_mem_eq(r.u.chat.text, text, HB_CHAT_MAX);
    send_chat(a, 999, "anyone?");
    recv_msg(a, &r, NULL);
    ck_assert_uint_eq(r.u.chat_reply.result, HB_CHAT_OFFLINE);
    close(a);
    close(b);
    stop_server();
}
END_TEST

START_TEST(test_split_and_coalesced_frames)
{
    start_server(NULL);
    int fd = user_connect();
    uint8_t buf[64];
    hb_msg_t m = {.cmd = HB_CMD_LOGIN};
    m.u.login.user_id = 11;
    size_t n = (size_t)hb_msg_encode(&m, buf, sizeof buf);
    m.cmd = HB_CMD_SHAKE;
    m.u.shake.user_id = 11;
    n += (size_t)hb_msg_encode(&m, buf + n, sizeof buf - n);
    n += (size_t)hb_msg_encode(&m, buf + n, sizeof buf - n);
    send_all(fd, buf, n); /* login and two shakes in one write */
    hb_msg_t r;
    recv_msg(fd, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_LOGIN_REPLY);
    recv_msg(fd, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_SHAKE_REPLY);
    recv_msg(fd, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_SHAKE_REPLY);
    /* One shake a byte at a time. */
    n = (size_t)hb_msg_encode(&m, buf, sizeof buf);
    for (size_t i = 0; i < n; i++)
        send_all(fd, buf + i, 1);
    recv_msg(fd, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_SHAKE_REPLY);
    ck_assert_uint_eq(r.u.shake_reply.user_id, 11);
    close(fd);
    stop_server();
}
END_TEST

START_TEST(test_bad_input_closes_only_the_offender)
{
    start_server(NULL);
    int good = login(50);
    static const uint8_t too_short[] = {0x00, 0x05, 0x00, 0x02, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t unknown_cmd[] = {0x00, 0x10, 0x00, 0x09, 0, 0, 0, 0,
                                          0,    0,    0,    0,    0, 0, 0, 1};
    static const uint8_t wrong_size[] = {0x00, 0x11, 0x00, 0x02, 0, 0, 0, 0, 0,
                                         0,    0,    0,    0,    0, 0, 1, 2};
    static const uint8_t garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const uint8_t reply_from_client[] = {0x00, 0x14, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
                                                0,    0,    0,    0,    0, 1, 0, 0, 0, 0};
    const struct {
        const uint8_t *bytes;
        size_t len;
        int login_first;
    } bad[] = {
        {too_short, sizeof too_short, 1},
        {unknown_cmd, sizeof unknown_cmd, 1},
        {wrong_size, sizeof wrong_size, 1},
        {garbage, sizeof garbage - 1, 0},
        {reply_from_client, sizeof reply_from_client, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = bad[i].login_first ? login(60 + (uint32_t)i) : user_connect();
        send_all(fd, bad[i].bytes, bad[i].len);
        ck_assert_msg(closed_by_peer(fd), "bad input %zu did not close the connection", i);
        close(fd);
        ck_assert_uint_eq(shake(good, 50).u.shake_reply.result, HB_SHAKE_NONE);
    }
    WAIT_FOR(counter(41) == sizeof bad / sizeof bad[0]);
    /* A peer that leaves mid-frame is just a closed connection. */
    int fd = login(70);
    send_all(fd, unknown_cmd, 7);
    close(fd);
    WAIT_FOR(hb_server_users_online(&H.server) == 1);
    ck_assert_uint_eq(shake(good, 50).u.shake_reply.result, HB_SHAKE_NONE);
    close(good);
    WAIT_FOR(hb_server_connections(&H.server) == 0);
    ck_assert_uint_eq(counter(HB_CTR_CONN_OPENED), counter(HB_CTR_CONN_CLOSED));
    stop_server();
}
END_TEST

START_TEST(test_max_connections_refused_and_counted)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.max_connections = 2;
    start_server(&o);
    int a = login(1), b = login(2);
    int c = user_connect();
    ck_assert(closed_by_peer(c));
    close(c);
    WAIT_FOR(counter(43) == 1);
    ck_assert_uint_eq(shake(a, 1).u.shake_reply.result, HB_SHAKE_NONE);
    ck_assert_uint_eq(shake(b, 2).u.shake_reply.result, HB_SHAKE_NONE);
    close(a);
    close(b);
    stop_server();
}
END_TEST

/* An application command: echo the payload back, and forward it to user 0x4242 if online. */
static int echo_handler(hb_conn_t *conn, const hb_frame_t *frame, void *arg)
{
    int *calls = arg;
    (*calls)++;
    uint8_t buf[HB_FRAME_MAX];
    memcpy(buf, frame->payload - HB_FRAME_HEADER, frame->length);
    hb_conn_send(conn, buf, frame->length);
    hb_server_send_to_user(hb_conn_server(conn), 0x4242, buf, frame->length);
    return 0;
}

START_TEST(test_application_handler)
{
    memset(&H, 0, sizeof H);
    static int calls;
    calls = 0;
    /* start_server initialises and starts at once: register the handler in between by hand. */
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    ck_assert_int_eq(uv_mutex_init(&H.lock), 0);
    ck_assert_int_eq(uv_cond_init(&H.cond), 0);
    ck_assert_int_eq(uv_async_init(&H.loop, &H.call_async, on_call), 0);
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.listen_port = 0;
    o.threads = 2;
    o.sets = 2;
    ck_assert_int_eq(hb_server_init(&H.loop, &H.server, &o), 0);
    ck_assert_int_eq(hb_server_handle(&H.server, 0x4001, echo_handler, &calls), 0);
    ck_assert_int_eq(hb_server_handle(&H.server, 0x0002, echo_handler, &calls), UV_EINVAL);
    ck_assert_int_eq(hb_server_start(&H.server), 0);
    ck_assert_int_eq(hb_server_handle(&H.server, 0x4002, echo_handler, &calls), UV_EBUSY);
    ck_assert_int_eq(uv_thread_create(&H.thread, loop_thread, NULL), 0);

    int other = login(0x4242);
    int fd = login(5);
    static const uint8_t app[] = {0x00, 0x0f, 0x40, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 'h', 'i', '!'};
    send_all(fd, app, sizeof app);
    uint8_t back[sizeof app];
    ck_assert_int_eq(recv_exact(fd, back, sizeof back), 0);
    ck_assert_mem_eq(back, app, sizeof app);
    ck_assert_int_eq(recv_exact(other, back, sizeof back), 0);
    ck_assert_mem_eq(back, app, sizeof app);
    ck_assert_int_eq(calls, 1);
    /* An application command before login is refused like any other. */
    int anon = user_connect();
    send_all(anon, app, sizeof app);
    ck_assert(closed_by_peer(anon));
    close(anon);
    close(fd);
    close(other);
    stop_server();
}
END_TEST

START_TEST(test_counters_and_report_bytes)
{
    start_server(NULL);
    int fd = login(77);
    shake(fd, 77);
    shake(fd, 77);
    close(fd);
    WAIT_FOR(counter(HB_CTR_CONN_CLOSED) == 1);
    ck_assert_uint_eq(counter(HB_CTR_FRAME_LOGIN), 1);
    ck_assert_uint_eq(counter(HB_CTR_FRAME_LOGIN_REPLY), 1);
    ck_assert_uint_eq(counter(HB_CTR_FRAME_SHAKE), 2);
    ck_assert_uint_eq(counter(HB_CTR_FRAME_SHAKE_REPLY), 2);
    ck_assert_uint_eq(counter(HB_CTR_REQUESTS), 2);
    ck_assert_uint_eq(counter(HB_CTR_RESPONSES), 2);
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_NONE), 2);
    ck_assert_uint_eq(counter(HB_CTR_CONN_OPENED), 1);
    hb_report_t rep, back;
    hb_counters_snapshot(hb_server_counters(&H.server), (uint64_t)time(NULL), &rep);
    ck_assert_uint_eq(rep.type, HB_REPORTER_SERVER);
    uint8_t wire[HB_REPORT_SIZE];
    hb_report_encode(&rep, wire);
    ck_assert_uint_eq(hb_get_u64(wire + 8), 1);
    ck_assert_uint_eq(hb_get_u64(wire + 496 + 8 * HB_CTR_FRAME_SHAKE), 2);
    ck_assert_int_eq(hb_report_decode(wire, sizeof wire, &back), 0);
    ck_assert_mem_eq(&back, &rep, sizeof rep);
    stop_server();
}
END_TEST

START_TEST(test_generator_keeps_its_pace)
{
    start_server(NULL);
    /* 50 envelopes at 100/s take about half a second: at no moment may more exist than the pace
     * allows (qps x elapsed, plus the first one at once). */
    uint64_t t0 = uv_hrtime();
    gen_args_t g = {100, 50, 0};
    on_loop(do_generate, &g);
    ck_assert_int_eq(g.result, 0);
    size_t seen = 0;
    while (seen < 50) {
        seen = hb_server_envelopes_queued(&H.server);
        uint64_t elapsed_ms = (uv_hrtime() - t0) / 1000000;
        ck_assert_uint_le(seen, 100 * elapsed_ms / 1000 + 2);
        ck_assert_uint_lt(elapsed_ms, 10000);
        usleep(2000);
    }
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_ENVELOPES), 50);
    stop_server();
}
END_TEST

/* ---- the control routes, over HTTP
 * --------------------------------------------------------------- */

START_TEST(test_control_routes)
{
    start_server(NULL);
    http_mount();
    char body[65536];
    ck_assert_int_eq(http_get("/yaohongbao?qps=abc&sum=10", body, sizeof body), 400);
    ck_assert_str_eq(body, "parameter 'qps': not a non-negative integer\n");
    ck_assert_int_eq(http_get("/yaohongbao?qps=10", body, sizeof body), 400);
    ck_assert_str_eq(body, "parameter 'sum': missing\n");
    ck_assert_int_eq(http_get("/fahongbao?qps=1&sum=1&min=9&max=10", body, sizeof body), 400);
    ck_assert_int_eq(http_get("/fahongbao?qps=1&sum=1&min=1&max=99999999999", body, sizeof body),
                     400);
    ck_assert_int_eq(http_get("/shake-envelopes?qps=100000&sum=8", body, sizeof body), 200);
    WAIT_FOR(hb_server_envelopes_queued(&H.server) == 8);
    ck_assert_int_eq(http_get("/yaohongbao?qps=100000&sum=4", body, sizeof body), 200);
    WAIT_FOR(hb_server_envelopes_queued(&H.server) == 12);
    ck_assert_int_eq(http_get("/metrics", body, sizeof body), 200);
    ck_assert_ptr_nonnull(strstr(body, "\nhongbao_shake_envelopes_total 12\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nhongbao_envelopes_queued 12\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nhongbao_bad_frames_total 0\n"));
    ck_assert_int_eq(http_get("/stats", body, sizeof body), 200);
    ck_assert_ptr_nonnull(strstr(body, "\"envelopes_queued\":12,"));
    ck_assert_ptr_nonnull(strstr(body, "\"type\":\"server\""));
    /* Send-envelopes to users online: each gets the notice. */
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = login(500 + (uint32_t)i);
    ck_assert_int_eq(http_get("/send-envelopes?qps=1000&sum=2&min=500&max=502", body, sizeof body),
                     200);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++) {
            hb_msg_t n;
            recv_msg(fds[i], &n, NULL);
            ck_assert_uint_eq(n.cmd, HB_CMD_NOTICE);
        }
    }
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    http_unmount();
    stop_server();
}
END_TEST

START_TEST(test_login_outside_the_user_range_is_refused)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.limit_users = 1;
    o.min_user = 10;
    o.max_user = 19;
    start_server(&o);
    int ok = login(15);
    login_refused(20);
    WAIT_FOR(counter(HB_CTR_X_LOGIN_REFUSED) == 1);
    ck_assert_uint_eq(hb_server_users_online(&H.server), 1);
    close(ok);
    stop_server();
}
END_TEST

START_TEST(test_connection_rate_limit)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.max_conn_qps = 5;
    start_server(&o);
    int fd = login(8);
    /* 10 shakes in one write: within one second (or two, if the second turns) 5 pass, the rest
     * get 17; past twice the limit the connection is closed. */
    send_shakes(fd, 8, 10);
    int limited = 0;
    for (int i = 0; i < 10; i++) {
        hb_msg_t r;
        recv_msg(fd, &r, NULL);
        limited += r.u.shake_reply.result == HB_SHAKE_OVERLOAD;
    }
    ck_assert_int_ge(limited, 0);
    ck_assert_int_le(limited, 5);
    /* Now flood: 30 more in one write must end in a disconnect. */
    send_shakes(fd, 8, 30);
    ck_assert(closed_by_peer(fd));
    close(fd);
    WAIT_FOR(counter(HB_CTR_X_RATE_LIMITED) >= 5);
    stop_server();
}
END_TEST

START_TEST(test_silent_connection_must_log_in_in_time)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.login_timeout_ms = 200;
    start_server(&o);
    int good = login(2);
    int slow = user_connect();
    static const uint8_t half_login[] = {0x00, 0x10, 0x00, 0x00, 0, 0};
    send_all(slow, half_login, sizeof half_login); /* a slowloris: never finishes its login */
    ck_assert(closed_by_peer(slow));
    close(slow);
    WAIT_FOR(counter(HB_CTR_X_LOGIN_TIMEOUT) == 1);
    ck_assert_uint_eq(shake(good, 2).u.shake_reply.result, HB_SHAKE_NONE);
    close(good);
    stop_server();
}
END_TEST

/* The login deadline is looked after only while some connection has not logged in: it must still
 * catch a silent peer that comes after everyone had logged in, and after connections that left
 * (closed, reset) or were refused before logging in; one that logs in late but in time stays. */
START_TEST(test_login_deadline_after_everyone_logged_in)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.login_timeout_ms = 300;
    o.limit_users = 1;
    o.min_user = 1;
    o.max_user = 99;
    start_server(&o);
    int good = login(2);
    int gone = user_connect();
    close(gone);
    int reset = user_connect();
    struct linger lg = {1, 0};
    ck_assert_int_eq(setsockopt(reset, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(reset);
    login_refused(500);
    WAIT_FOR(counter(HB_CTR_CONN_CLOSED) == 3);

    int late = user_connect();
    int slow = user_connect();
    static const uint8_t half_login[] = {0x00, 0x10, 0x00, 0x00};
    send_all(slow, half_login, sizeof half_login);
    hb_msg_t m = {.cmd = HB_CMD_LOGIN}, r;
    m.u.login.user_id = 3;
    send_msg(late, &m);
    recv_msg(late, &r, NULL);
    ck_assert_uint_eq(r.u.login_reply.result, 0);
    /* slow connected after late: once slow is closed, late's deadline has passed too. */
    ck_assert(closed_by_peer(slow));
    close(slow);
    WAIT_FOR(counter(HB_CTR_X_LOGIN_TIMEOUT) == 1);
    ck_assert_uint_eq(shake(late, 3).u.shake_reply.result, HB_SHAKE_NONE);
    ck_assert_uint_eq(shake(good, 2).u.shake_reply.result, HB_SHAKE_NONE);
    ck_assert_uint_eq(counter(HB_CTR_X_LOGIN_TIMEOUT), 1);
    close(late);
    close(good);
    stop_server();
}
END_TEST

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void recv_notice(int fd, uint32_t id)
{
    hb_msg_t n;
    recv_msg(fd, &n, NULL);
    ck_assert_uint_eq(n.cmd, HB_CMD_NOTICE);
    ck_assert_uint_eq(n.u.notice.envelope_id, id);
}

START_TEST(test_claims_stay_exactly_once_across_restarts)
{
    char dir[] = "/tmp/hb-ledger-test-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.ledger_dir = dir;
    o.fsync = HB_FSYNC_ALWAYS;

    start_server(&o);
    int a = login(100), b = login(101), c = login(102);
    send_args_t env = {{100, 101, 102}, 900, 0, -1, 0};
    on_loop(do_send, &env);
    ck_assert_int_eq(env.result, 0);
    recv_notice(a, env.id);
    recv_notice(b, env.id);
    recv_notice(c, env.id);
    uint32_t first = claim(a, 0, env.id).u.claim_reply.amount; /* sent once on disk */
    ck_assert_uint_ge(first, 1);
    close(a);
    close(b);
    close(c);
    stop_server();

    /* Restarted: the envelope is back with its claim, which a retry learns again; numbering goes
     * on after its id. */
    start_server(&o);
    a = login(100);
    b = login(101);
    ck_assert_uint_eq(claim(a, 0, env.id).u.claim_reply.amount, first);
    uint32_t second = claim(b, 0, env.id).u.claim_reply.amount;
    ck_assert_uint_ge(second, 1);
    send_args_t env2 = {{1, 2, 3}, 30, 0, -1, 0};
    on_loop(do_send, &env2);
    ck_assert_int_eq(env2.result, 0);
    ck_assert_uint_gt(env2.id, env.id);
    close(a);
    close(b);
    stop_server();

    start_server(&o);
    c = login(102);
    uint32_t third = claim(c, 0, env.id).u.claim_reply.amount;
    ck_assert_uint_eq(first + second + third, 900);
    ck_assert_uint_eq(claim(c, 0, env.id).u.claim_reply.amount, third);
    close(c);
    stop_server();

    /* The books balance: 2 envelopes issued (930), 900 claimed, 30 outstanding. */
    hb_journal_audit_t au;
    ck_assert_int_eq(hb_journal_audit(dir, &au, NULL, NULL), 0);
    ck_assert_uint_eq(au.outstanding, 1);
    ck_assert_uint_eq(au.outstanding_amount, 30);
    ck_assert_uint_eq(au.totals.envelopes, 2);
    ck_assert_uint_eq(au.totals.issued, 930);
    ck_assert_uint_eq(au.totals.claims, 3);
    ck_assert_uint_eq(au.totals.claimed, 900);
    remove_tree(dir);
}
END_TEST

static Suite *server_suite(void)
{
    Suite *s = suite_create("server");
    TCase *tc = tcase_create("protocol");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_login_reply_bytes);
    tcase_add_test(tc, test_first_frame_must_be_login);
    tcase_add_test(tc, test_newer_login_wins);
    tcase_add_test(tc, test_shake_none_then_got);
    tcase_add_test(tc, test_overload_replies_past_the_cap);
    tcase_add_test(tc, test_generator_feeds_sets_round_robin);
    tcase_add_test(tc, test_send_envelope_claims_exactly_once);
    tcase_add_test(tc, test_chat_across_sets);
    tcase_add_test(tc, test_split_and_coalesced_frames);
    tcase_add_test(tc, test_bad_input_closes_only_the_offender);
    tcase_add_test(tc, test_max_connections_refused_and_counted);
    tcase_add_test(tc, test_application_handler);
    tcase_add_test(tc, test_counters_and_report_bytes);
    tcase_add_test(tc, test_generator_keeps_its_pace);
    tcase_add_test(tc, test_control_routes);
    tcase_add_test(tc, test_login_outside_the_user_range_is_refused);
    tcase_add_test(tc, test_connection_rate_limit);
    tcase_add_test(tc, test_silent_connection_must_log_in_in_time);
    tcase_add_test(tc, test_login_deadline_after_everyone_logged_in);
    tcase_add_test(tc, test_claims_stay_exactly_once_across_restarts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(server_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
