/* The server's extension points for a service of one's own: money of one's choosing (shake amounts,
 * queued envelopes, send-envelopes of any recipient count), per-connection data and the close
 * hook, application counter slots in /metrics and /stats. */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "server_harness.h"

/* ---- on the control loop ---- */

typedef struct send_call {
    uint32_t recipients[HB_SEND_MAX_RECIPIENTS + 1];
    unsigned count;
    uint32_t total;
    uint32_t id;
    int result;
} send_call_t;

static void do_send(void *arg)
{
    send_call_t *a = arg;
    a->result = hb_server_send_envelope(&H.server, a->recipients, a->count, a->total, &a->id);
}

static int send_envelope(const uint32_t *recipients, unsigned count, uint32_t total, uint32_t *id)
{
    send_call_t a = {{0}, count, total, 0, -1};
    memcpy(a.recipients, recipients, count * sizeof *recipients);
    on_loop(do_send, &a);
    if (id != NULL)
        *id = a.id;
    return a.result;
}

typedef struct put_call {
    const uint32_t *amounts;
    size_t n, queued;
    int result;
} put_call_t;

static void do_put(void *arg)
{
    put_call_t *a = arg;
    a->result = hb_server_put_shake_envelopes(&H.server, a->amounts, a->n, &a->queued);
}

static int put_envelopes(const uint32_t *amounts, size_t n, size_t *queued)
{
    put_call_t a = {amounts, n, 0, -1};
    on_loop(do_put, &a);
    *queued = a.queued;
    return a.result;
}

typedef struct gen_call {
    int send;
    uint64_t qps, count;
    uint32_t min_user, max_user;
    int result;
} gen_call_t;

static void do_generate(void *arg)
{
    gen_call_t *g = arg;
    g->result = g->send
                    ? hb_server_generate_send(&H.server, g->qps, g->count, g->min_user, g->max_user)
                    : hb_server_generate_shake(&H.server, g->qps, g->count);
}

/* ---- money of one's choosing ---- */

static void expect_notice_ex(int fd, uint32_t id, uint32_t total, const uint32_t *users, unsigned n)
{
    uint8_t raw[HB_FRAME_MAX];
    hb_msg_t m;
    recv_msg(fd, &m, raw);
    ck_assert_uint_eq(m.cmd, HB_CMD_NOTICE_EX);
    ck_assert_uint_eq(hb_get_u16(raw), HB_FRAME_HEADER + 8 + 4 * n);
    ck_assert_uint_eq(m.u.notice_ex.envelope_id, id);
    ck_assert_uint_eq(m.u.notice_ex.total_amount, total);
    ck_assert_uint_eq(m.u.notice_ex.count, n);
    for (unsigned i = 0; i < n; i++)
        ck_assert_uint_eq(m.u.notice_ex.user_ids[i], users[i]);
}

START_TEST(test_send_envelope_of_any_count)
{
    start_server(NULL);
    int fd[HB_SEND_MAX_RECIPIENTS + 1];
    uint32_t users[HB_SEND_MAX_RECIPIENTS + 1];
    for (unsigned i = 0; i <= HB_SEND_MAX_RECIPIENTS; i++) {
        users[i] = 200 + i;
        fd[i] = login(users[i]);
    }
    /* Five recipients: each told with the extension's notice, each claims its own share once,
     * the shares sum to the total. */
    uint32_t id;
    ck_assert_int_eq(send_envelope(users, 5, 1000, &id), 0);
    for (unsigned i = 0; i < 5; i++)
        expect_notice_ex(fd[i], id, 1000, users, 5);
    uint64_t sum = 0;
    for (unsigned i = 0; i < 5; i++) {
        uint32_t share = claim(fd[i], 0, id).u.claim_reply.amount;
        ck_assert_uint_ge(share, 1);
        ck_assert_uint_eq(claim(fd[i], 0, id).u.claim_reply.amount, share);
        sum += share;
    }
    ck_assert_uint_eq(sum, 1000);
    ck_assert_uint_eq(claim(fd[5], 0, id).u.claim_reply.amount, 0);

    /* The maximum, and a single recipient who takes the whole total. */
    ck_assert_int_eq(send_envelope(users, HB_SEND_MAX_RECIPIENTS, 8, &id), 0);
    for (unsigned i = 0; i < HB_SEND_MAX_RECIPIENTS; i++) {
        expect_notice_ex(fd[i], id, 8, users, HB_SEND_MAX_RECIPIENTS);
        ck_assert_uint_eq(claim(fd[i], 0, id).u.claim_reply.amount, 1);
    }
    ck_assert_int_eq(send_envelope(users + 8, 1, 77, &id), 0);
    expect_notice_ex(fd[8], id, 77, users + 8, 1);
    ck_assert_uint_eq(claim(fd[8], 0, id).u.claim_reply.amount, 77);
    ck_assert_uint_eq(counter(HB_CTR_SEND_CREATED), 3);
    ck_assert_uint_eq(counter(HB_CTR_SEND_AMOUNT_ISSUED), 1085);
    ck_assert_uint_eq(counter(HB_CTR_SEND_AMOUNT_CLAIMED), 1085);

    /* Refused: no recipient, too many, a total below the count, a recipient twice. */
    ck_assert_int_eq(send_envelope(users, 0, 100, NULL), UV_EINVAL);
    ck_assert_int_eq(send_envelope(users, HB_SEND_MAX_RECIPIENTS + 1, 100, NULL), UV_EINVAL);
    ck_assert_int_eq(send_envelope(users, 5, 4, NULL), UV_EINVAL);
    const uint32_t twice[4] = {1, 2, 3, 2};
    ck_assert_int_eq(send_envelope(twice, 4, 100, NULL), UV_EINVAL);
    ck_assert_uint_eq(counter(HB_CTR_SEND_CREATED), 3);
    for (unsigned i = 0; i <= HB_SEND_MAX_RECIPIENTS; i++)
        close(fd[i]);
    stop_server();
}
END_TEST

/* One SET: shakes take the queued envelopes in order. */
static void one_set(hb_server_options_t *o)
{
    hb_server_options_default(o);
    o->threads = 1;
    o->sets = 1;
}

START_TEST(test_put_shake_envelopes)
{
    hb_server_options_t o;
    one_set(&o);
    o.bucket_capacity = 4;
    start_server(&o);
    int fd = login(9);
    static const uint32_t amounts[] = {1, 2, 3, 500};
    size_t queued = 99;
    ck_assert_int_eq(put_envelopes(amounts, 4, &queued), 0);
    ck_assert_uint_eq(queued, 4);
    ck_assert_uint_eq(hb_server_envelopes_queued(&H.server), 4);
    uint32_t first_id = 0;
    for (unsigned i = 0; i < 4; i++) {
        hb_msg_t r = shake(fd, 9);
        ck_assert_uint_eq(r.u.shake_reply.result, HB_SHAKE_GOT);
        ck_assert_uint_eq(r.u.shake_reply.amount, amounts[i]);
        if (i == 0)
            first_id = r.u.shake_reply.envelope_id;
        ck_assert_uint_eq(r.u.shake_reply.envelope_id, first_id + i);
    }
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_ENVELOPES), 4);
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_AMOUNT_ISSUED), 506);

    /* A 0 amount refuses the whole batch. */
    static const uint32_t with_zero[] = {5, 0, 5};
    ck_assert_int_eq(put_envelopes(with_zero, 3, &queued), UV_EINVAL);
    ck_assert_uint_eq(queued, 0);
    ck_assert_uint_eq(hb_server_envelopes_queued(&H.server), 0);

    /* Past the bucket's capacity: the first 4 go in, the rest are refused, and the id taken for
     * the fifth is the next envelope's (none wasted). */
    static const uint32_t six[] = {10, 11, 12, 13, 14, 15};
    ck_assert_int_eq(put_envelopes(six, 6, &queued), UV_ENOBUFS);
    ck_assert_uint_eq(queued, 4);
    ck_assert_uint_eq(counter(HB_CTR_X_ENVQ_FULL), 1);
    for (unsigned i = 0; i < 4; i++) {
        hb_msg_t r = shake(fd, 9);
        ck_assert_uint_eq(r.u.shake_reply.amount, six[i]);
        ck_assert_uint_eq(r.u.shake_reply.envelope_id, first_id + 4 + i);
    }
    ck_assert_int_eq(put_envelopes(six + 4, 1, &queued), 0);
    hb_msg_t r = shake(fd, 9);
    ck_assert_uint_eq(r.u.shake_reply.amount, 14);
    ck_assert_uint_eq(r.u.shake_reply.envelope_id, first_id + 8);
    ck_assert_uint_eq(shake(fd, 9).u.shake_reply.result, HB_SHAKE_NONE);
    close(fd);
    stop_server();
}
END_TEST

START_TEST(test_generated_money_follows_the_options)
{
    hb_server_options_t o;
    one_set(&o);
    o.shake_amount_min = o.shake_amount_max = 77;
    o.send_recipients = 5;
    o.send_total_min = 50;
    o.send_total_max = 50;
    start_server(&o);
    int fd[5];
    uint32_t users[5];
    for (unsigned i = 0; i < 5; i++) {
        users[i] = 300 + i;
        fd[i] = login(users[i]);
    }
    gen_call_t g = {0, 100000, 10, 0, 0, -1};
    on_loop(do_generate, &g);
    ck_assert_int_eq(g.result, 0);
    WAIT_FOR(counter(HB_CTR_SHAKE_ENVELOPES) == 10);
    for (unsigned i = 0; i < 10; i++)
        ck_assert_uint_eq(shake(fd[0], users[0]).u.shake_reply.amount, 77);
    ck_assert_uint_eq(counter(HB_CTR_SHAKE_AMOUNT_ISSUED), 770);

    /* Five distinct users of a range of exactly five: all of them, each told. */
    g = (gen_call_t){1, 1000, 1, 300, 304, -1};
    on_loop(do_generate, &g);
    ck_assert_int_eq(g.result, 0);
    for (unsigned i = 0; i < 5; i++) {
        hb_msg_t m;
        recv_msg(fd[i], &m, NULL);
        ck_assert_uint_eq(m.cmd, HB_CMD_NOTICE_EX);
        ck_assert_uint_eq(m.u.notice_ex.count, 5);
        ck_assert_uint_eq(m.u.notice_ex.total_amount, 50);
    }
    /* A range of four users cannot hold five recipients. */
    g = (gen_call_t){1, 1000, 1, 300, 303, -1};
    on_loop(do_generate, &g);
    ck_assert_int_eq(g.result, UV_EINVAL);
    for (unsigned i = 0; i < 5; i++)
        close(fd[i]);
    stop_server();
}
END_TEST

START_TEST(test_money_options_are_checked)
{
    static const struct {
        uint32_t shake_min, shake_max, send_min, send_max;
        unsigned recipients;
        const char *why;
    } bad[] = {
        {20, 10, 0, 0, 0, "shake_amount_min"},
        {0, 10, 0, 0, 0, "shake_amount_min"},
        {0, 0, 0, 0, HB_SEND_MAX_RECIPIENTS + 1, "send_recipients"},
        {0, 0, 2, 100, 0, "send_total_min"},
        {0, 0, 4, 5, 5, "send_total_min"},
        {0, 0, 100, 99, 0, "send_total_min"},
    };
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hb_server_options_t o;
        hb_server_options_default(&o);
        o.shake_amount_min = bad[i].shake_min;
        o.shake_amount_max = bad[i].shake_max;
        o.send_total_min = bad[i].send_min;
        o.send_total_max = bad[i].send_max;
        o.send_recipients = bad[i].recipients;
        hb_server_t s;
        ck_assert_int_eq(hb_server_init(&loop, &s, &o), UV_EINVAL);
        ck_assert_ptr_nonnull(strstr(hb_server_last_error(&s), bad[i].why));
    }
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* ---- per-connection data and the close hook ---- */

typedef struct session {
    uint32_t user;
    unsigned frames;
} session_t;

static atomic_uint closes;
static atomic_uint closed_frames; /* the frames counted by the sessions that closed */
static atomic_uint closed_without_data;

/* 0x4001: count the connection's frames in its own session; answer with the count so far. */
static int count_frames(hb_conn_t *conn, const hb_frame_t *frame, void *arg)
{
    (void)frame;
    (void)arg;
    session_t *s = hb_conn_data(conn);
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return UV_ENOMEM;
        s->user = hb_conn_user(conn);
        hb_conn_set_data(conn, s);
    }
    s->frames++;
    hb_msg_t m = {.cmd = 0x4002};
    uint8_t n = (uint8_t)s->frames;
    m.u.app.payload = &n;
    m.u.app.len = 1;
    uint8_t buf[HB_FRAME_HEADER + 1];
    int len = hb_msg_encode(&m, buf, sizeof buf);
    return len < 0 ? len : hb_conn_send(conn, buf, (size_t)len);
}

static void on_close(hb_conn_t *conn, void *arg)
{
    ck_assert_ptr_eq(arg, &closes);
    session_t *s = hb_conn_data(conn);
    if (s == NULL) {
        atomic_fetch_add(&closed_without_data, 1);
    } else {
        ck_assert_uint_eq(s->user, hb_conn_user(conn));
        atomic_fetch_add(&closed_frames, s->frames);
        free(s);
    }
    atomic_fetch_add(&closes, 1);
}

static void register_count_frames(hb_server_t *server, void *arg)
{
    (void)arg;
    ck_assert_int_eq(hb_server_handle(server, 0x4001, count_frames, NULL), 0);
}

static unsigned app_frame(int fd)
{
    static const uint8_t req[] = {0x00, 0x0c, 0x40, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
    send_all(fd, req, sizeof req);
    uint8_t back[HB_FRAME_HEADER + 1];
    ck_assert_int_eq(recv_exact(fd, back, sizeof back), 0);
    ck_assert_uint_eq(hb_get_u16(back + 2), 0x4002);
    return back[HB_FRAME_HEADER];
}

START_TEST(test_connection_data_and_close_hook)
{
    atomic_store(&closes, 0);
    atomic_store(&closed_frames, 0);
    atomic_store(&closed_without_data, 0);
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.on_conn_close = on_close;
    o.conn_arg = &closes;
    start_server_with(&o, register_count_frames, NULL);
    int a = login(1), b = login(2), c = login(3);
    for (unsigned i = 1; i <= 3; i++)
        ck_assert_uint_eq(app_frame(a), i);
    ck_assert_uint_eq(app_frame(b), 1); /* each connection has its own */
    ck_assert_uint_eq(app_frame(a), 4);
    /* The peer closes: its session is handed back once. */
    close(a);
    WAIT_FOR(atomic_load(&closes) == 1);
    ck_assert_uint_eq(atomic_load(&closed_frames), 4);
    /* A newer login of the same user closes the older connection: handed back too. */
    int b2 = login(2);
    ck_assert(closed_by_peer(b));
    WAIT_FOR(atomic_load(&closes) == 2);
    ck_assert_uint_eq(atomic_load(&closed_frames), 5);
    ck_assert_uint_eq(app_frame(b2), 1);
    /* A connection that never logged in is none of the application's. */
    int anon = user_connect();
    close(anon);
    /* Shutdown hands back the rest: b2 (1 frame) and c (no data). */
    stop_server();
    ck_assert_uint_eq(atomic_load(&closes), 4);
    ck_assert_uint_eq(atomic_load(&closed_frames), 6);
    ck_assert_uint_eq(atomic_load(&closed_without_data), 1);
    close(b);
    close(b2);
    close(c);
}
END_TEST

/* ---- application counters ---- */

static void register_counters(hb_server_t *server, void *arg)
{
    (void)arg;
    ck_assert_int_eq(hb_server_handle(server, 0x4001, count_frames, NULL), 0);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_1, "app_frames", "Frames counted"),
                     0);
    /* Refused: not an application slot, a taken slot or name, a catalogue name, a bad name. */
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_X_CHAT, "mine", NULL), UV_EINVAL);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_1, "other", NULL), UV_EEXIST);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_2, "app_frames", NULL), UV_EEXIST);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_2, "shake_got", NULL), UV_EEXIST);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_2, "Frames", NULL), UV_EINVAL);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_2, "a b", NULL), UV_EINVAL);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_2, "ok", "two\nlines"), UV_EINVAL);
    ck_assert_int_eq(hb_server_add_counter(server, HB_CTR_APP_4, "closes", NULL), 0);
    ck_assert_uint_eq(hb_server_counter_names(server)->n, 2);
}

/* Counted by the handler into the named slot: shown in /metrics and /stats by name. */
static int count_into_slot(hb_conn_t *conn, const hb_frame_t *frame, void *arg)
{
    hb_conn_count(conn, HB_CTR_APP_1, 1);
    return count_frames(conn, frame, arg);
}

static void count_close(hb_conn_t *conn, void *arg)
{
    hb_conn_count(conn, HB_CTR_APP_4, 1);
    on_close(conn, arg);
}

static void register_counting(hb_server_t *server, void *arg)
{
    register_counters(server, arg);
    ck_assert_int_eq(hb_server_handle(server, 0x4001, count_into_slot, NULL), 0);
}

START_TEST(test_application_counters)
{
    atomic_store(&closes, 0);
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.on_conn_close = count_close;
    o.conn_arg = &closes;
    start_server_with(&o, register_counting, NULL);
    http_mount();
    int a = login(1), b = login(2);
    for (unsigned i = 0; i < 5; i++)
        app_frame(a);
    app_frame(b);
    close(b);
    WAIT_FOR(atomic_load(&closes) == 1);
    WAIT_FOR(counter(HB_CTR_APP_1) == 6 && counter(HB_CTR_APP_4) == 1);
    static char body[65536];
    ck_assert_int_eq(http_get("/metrics", body, sizeof body), 200);
    ck_assert_ptr_nonnull(
        strstr(body, "# HELP hongbao_app_frames_total Frames counted, cumulative."));
    ck_assert_ptr_nonnull(strstr(body, "\n# TYPE hongbao_app_frames_total counter\n"
                                       "hongbao_app_frames_total 6\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nhongbao_closes_total 1\n"));
    ck_assert_ptr_nonnull(strstr(body, "\n# TYPE hongbao_app_frames_per_second gauge\n"));
    /* /stats: every counter by name, the application's among them. */
    ck_assert_int_eq(http_get("/stats", body, sizeof body), 200);
    const char *cum = strstr(body, "\"cumulative\":{");
    ck_assert_ptr_nonnull(cum);
    ck_assert_ptr_nonnull(strstr(cum, "\"app_frames\":6"));
    ck_assert_ptr_nonnull(strstr(cum, "\"closes\":1"));
    ck_assert_ptr_nonnull(strstr(cum, "\"frame_login\":2"));
    ck_assert_ptr_nonnull(strstr(cum, "\"bad_frames\":0"));
    ck_assert_ptr_null(strstr(body, "server_counters"));
    /* Names are given before the start only. */
    ck_assert_int_eq(hb_server_add_counter(&H.server, HB_CTR_APP_3, "late", NULL), UV_EBUSY);
    close(a);
    http_unmount();
    stop_server();
}
END_TEST

static Suite *embed_suite(void)
{
    Suite *s = suite_create("server_embed");
    TCase *money = tcase_create("money");
    tcase_set_timeout(money, 60);
    tcase_add_test(money, test_send_envelope_of_any_count);
    tcase_add_test(money, test_put_shake_envelopes);
    tcase_add_test(money, test_generated_money_follows_the_options);
    tcase_add_test(money, test_money_options_are_checked);
    suite_add_tcase(s, money);
    TCase *app = tcase_create("application");
    tcase_set_timeout(app, 60);
    tcase_add_test(app, test_connection_data_and_close_hook);
    tcase_add_test(app, test_application_counters);
    suite_add_tcase(s, app);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(embed_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
