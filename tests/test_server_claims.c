/* The server's claim contract and the hardening cases: every granted claim reaches its owner (a
 * retry learns it), the newer login wins whatever the order of events, nothing is announced
 * before it is durable, a failing journal rolls back and refuses clearly, ids are never reused,
 * a claim never overtakes its envelope, overload is shared, the close callback's lifetime rule,
 * and a port that is not silently shared. Servers on ephemeral loopback ports; users as blocking
 * sockets (tests/server_harness.h). */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server_harness.h"

/* ---- helpers ---- */

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

static uint32_t send_envelope(uint32_t a, uint32_t b, uint32_t c, uint32_t total)
{
    send_args_t s = {{a, b, c}, total, 0, -1, 0};
    on_loop(do_send, &s);
    ck_assert_int_eq(s.result, 0);
    return s.id;
}

static void recv_notice(int fd, uint32_t id)
{
    hb_msg_t n;
    recv_msg(fd, &n, NULL);
    ck_assert_uint_eq(n.cmd, HB_CMD_NOTICE);
    ck_assert_uint_eq(n.u.notice.envelope_id, id);
}

static void send_claim(int fd, uint16_t cmd, uint32_t envelope)
{
    hb_msg_t m = {.cmd = cmd, .timestamp = (uint64_t)time(NULL)};
    m.u.claim.envelope_id = envelope;
    send_msg(fd, &m);
}

/* An extended claim and its reply. */
static hb_msg_t claim_ex(int fd, uint32_t envelope)
{
    send_claim(fd, HB_CMD_CLAIM_EX, envelope);
    hb_msg_t r;
    recv_msg(fd, &r, NULL);
    ck_assert_uint_eq(r.cmd, HB_CMD_CLAIM_EX_REPLY);
    ck_assert_uint_eq(r.u.claim_ex_reply.envelope_id, envelope);
    return r;
}

/* Whether fd has bytes (or EOF) to read right now. */
static int readable_now(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

static hb_server_options_t journaled(char *dir)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.ledger_dir = dir;
    o.fsync = HB_FSYNC_ALWAYS;
    return o;
}

/* ---- the extended claim's answers ---- */

START_TEST(test_extended_claim_results)
{
    start_server(NULL);
    int a = login(100), b = login(101), c = login(102), d = login(103);
    uint32_t id = send_envelope(100, 101, 102, 600);
    recv_notice(a, id);
    recv_notice(b, id);
    recv_notice(c, id);
    hb_msg_t r = claim_ex(a, id);
    ck_assert_uint_eq(r.u.claim_ex_reply.result, HB_CLAIM_GRANTED);
    uint32_t share = r.u.claim_ex_reply.amount;
    ck_assert_uint_ge(share, 1);
    r = claim_ex(a, id);
    ck_assert_uint_eq(r.u.claim_ex_reply.result, HB_CLAIM_REPEAT);
    ck_assert_uint_eq(r.u.claim_ex_reply.amount, share);
    r = claim_ex(d, id);
    ck_assert_uint_eq(r.u.claim_ex_reply.result, HB_CLAIM_NOT_RECIPIENT);
    ck_assert_uint_eq(r.u.claim_ex_reply.amount, 0);
    r = claim_ex(d, 0x345678);
    ck_assert_uint_eq(r.u.claim_ex_reply.result, HB_CLAIM_NO_ENVELOPE);
    ck_assert_uint_eq(counter(HB_CTR_CLAIMS_GRANTED), 1);
    ck_assert_uint_eq(counter(HB_CTR_X_CLAIM_REPEAT), 1);
    ck_assert_uint_eq(counter(HB_CTR_FRAME_CLAIM), 4);
    close(a);
    close(b);
    close(c);
    close(d);
    stop_server();
}
END_TEST

/* ---- defect 2: a burst of logins for one user leaves exactly one connection ---- */

START_TEST(test_login_burst_leaves_one_connection)
{
    /* One worker deals connections to SETs A, B, A in turn: logins on A, B, A back to back. */
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.threads = 1;
    o.sets = 2;
    start_server(&o);
    for (uint32_t trial = 0; trial < 50; trial++) {
        uint32_t user = 1000 + trial;
        int fd[3];
        for (int i = 0; i < 3; i++)
            fd[i] = user_connect();
        WAIT_FOR(hb_server_connections(&H.server) == 3);
        hb_msg_t m = {.cmd = HB_CMD_LOGIN};
        m.u.login.user_id = user;
        for (int i = 0; i < 3; i++)
            send_msg(fd[i], &m);
        WAIT_FOR(hb_server_connections(&H.server) == 1);
        ck_assert(closed_by_peer(fd[0]));
        ck_assert(closed_by_peer(fd[1]));
        hb_msg_t r;
        recv_msg(fd[2], &r, NULL);
        ck_assert_uint_eq(r.cmd, HB_CMD_LOGIN_REPLY);
        ck_assert_uint_eq(shake(fd[2], user).u.shake_reply.result, HB_SHAKE_NONE);
        ck_assert_uint_eq(hb_server_users_online(&H.server), 1);
        for (int i = 0; i < 3; i++)
            close(fd[i]);
        WAIT_FOR(hb_server_connections(&H.server) == 0);
    }
    stop_server();
}
END_TEST

START_TEST(test_simultaneous_logins_leave_one_connection)
{
    start_server(NULL); /* 2 workers, 4 SETs */
    for (uint32_t trial = 0; trial < 40; trial++) {
        uint32_t user = 2000 + trial;
        int fd[4];
        for (int i = 0; i < 4; i++)
            fd[i] = user_connect();
        WAIT_FOR(hb_server_connections(&H.server) == 4);
        hb_msg_t m = {.cmd = HB_CMD_LOGIN};
        m.u.login.user_id = user;
        for (int i = 0; i < 4; i++)
            send_msg(fd[i], &m);
        WAIT_FOR(hb_server_connections(&H.server) == 1);
        ck_assert_uint_eq(hb_server_users_online(&H.server), 1);
        for (int i = 0; i < 4; i++)
            close(fd[i]);
        WAIT_FOR(hb_server_connections(&H.server) == 0);
    }
    stop_server();
}
END_TEST

/* ---- defect 3a: a claim, then at once a newer login: the retry learns the share ---- */

START_TEST(test_claim_then_newer_login_retry_learns_the_share)
{
    char dir[] = "/tmp/hb-claims-XXXXXX";
    hb_server_options_t o = journaled(dir);
    start_server(&o);
    int b = login(101), c = login(102);
    for (int trial = 0; trial < 30; trial++) {
        int a = login(100);
        uint32_t id = send_envelope(100, 101, 102, 900);
        recv_notice(a, id);
        recv_notice(b, id);
        recv_notice(c, id);
        send_claim(a, HB_CMD_CLAIM, id); /* its reply may never come: */
        int a2 = login(100);             /* the newer login wins */
        uint16_t cmd = trial % 2 ? HB_CMD_CLAIM_EX : HB_CMD_CLAIM;
        uint32_t share;
        if (cmd == HB_CMD_CLAIM) {
            share = claim(a2, 0, id).u.claim_reply.amount;
        } else {
            hb_msg_t r = claim_ex(a2, id);
            ck_assert(r.u.claim_ex_reply.result == HB_CLAIM_GRANTED ||
                      r.u.claim_ex_reply.result == HB_CLAIM_REPEAT);
            share = r.u.claim_ex_reply.amount;
        }
        ck_assert_uint_ge(share, 1);
        uint32_t rest = claim(b, 0, id).u.claim_reply.amount + claim(c, 0, id).u.claim_reply.amount;
        ck_assert_uint_eq(share + rest, 900);
        close(a);
        close(a2);
    }
    close(b);
    close(c);
    stop_server();
    hb_journal_audit_t au;
    ck_assert_int_eq(hb_journal_audit(dir, &au, NULL, NULL), 0);
    ck_assert_uint_eq(au.totals.claims, 90);
    ck_assert_uint_eq(au.totals.claimed, 30 * 900);
    remove_tree(dir);
}
END_TEST

/* ---- defect 3b: closing the server answers every claim it journaled ---- */

START_TEST(test_close_answers_every_journaled_claim)
{
    enum { ENVELOPES = 40 };
    char dir[] = "/tmp/hb-claims-XXXXXX";
    hb_server_options_t o = journaled(dir);
    start_server(&o);
    int fd[3] = {login(100), login(101), login(102)};
    uint32_t ids[ENVELOPES];
    for (int i = 0; i < ENVELOPES; i++) {
        ids[i] = send_envelope(100, 101, 102, 300 + (uint32_t)i);
        for (int k = 0; k < 3; k++)
            recv_notice(fd[k], ids[i]);
    }
    /* Every recipient pipelines all its claims, and the server is told to stop at once. */
    uint8_t buf[ENVELOPES * 20];
    for (int k = 0; k < 3; k++) {
        size_t n = 0;
        for (int i = 0; i < ENVELOPES; i++) {
            hb_msg_t m = {.cmd = HB_CMD_CLAIM};
            m.u.claim.envelope_id = ids[i];
            n += (size_t)hb_msg_encode(&m, buf + n, sizeof buf - n);
        }
        send_all(fd[k], buf, n);
    }
    on_loop(do_close, NULL);
    uint64_t acknowledged = 0, amount = 0;
    for (int k = 0; k < 3; k++) {
        for (;;) {
            uint8_t head[HB_FRAME_MAX];
            if (recv_exact(fd[k], head, 20) != 0)
                break; /* EOF: the server has closed */
            hb_frame_t f;
            ck_assert_int_eq(hb_frame_parse(head, 20, &f), 20);
            hb_msg_t r;
            ck_assert_int_eq(hb_msg_decode(&f, &r), 0);
            ck_assert_uint_eq(r.cmd, HB_CMD_CLAIM_REPLY);
            acknowledged += r.u.claim_reply.amount > 0;
            amount += r.u.claim_reply.amount;
        }
        close(fd[k]);
    }
    uv_thread_join(&H.thread);
    ck_assert_int_eq(H.closed, 1);
    ck_assert_int_eq(uv_loop_close(&H.loop), 0);
    uv_mutex_destroy(&H.lock);
    uv_cond_destroy(&H.cond);
    hb_journal_audit_t au;
    ck_assert_int_eq(hb_journal_audit(dir, &au, NULL, NULL), 0);
    /* Every grant the journal holds was acknowledged to its owner, and no more. */
    ck_assert_uint_eq(au.totals.claims, acknowledged);
    ck_assert_uint_eq(au.totals.claimed, amount);
    remove_tree(dir);
}
END_TEST

/* ---- defects 3c and 5: the journal fails ---- */

static off_t file_size(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

START_TEST(test_journal_failure_rolls_back_and_refuses)
{
    char dir[] = "/tmp/hb-claims-XXXXXX";
    hb_server_options_t o = journaled(dir);
    start_server(&o);
    int a = login(100), b = login(101), c = login(102), d = login(103);
    uint32_t id = send_envelope(100, 101, 102, 900);
    recv_notice(a, id);
    recv_notice(b, id);
    recv_notice(c, id);
    uint32_t first = claim(a, 0, id).u.claim_reply.amount;
    ck_assert_uint_ge(first, 1);

    /* The disk is full from now on: no write may grow the journal (EFBIG stands for ENOSPC). */
    struct rlimit saved;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*old_xfsz)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit full = saved;
    full.rlim_cur = (rlim_t)file_size(dir, HB_JOURNAL_FILE_NAME);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &full), 0);

    /* An envelope accepted before the failure is noticed is never announced. */
    send_args_t lost = {{100, 101, 102}, 500, 0, -1, 0};
    on_loop(do_send, &lost);
    /* A claim now cannot be made durable: a clear "try again", not silence and not 0 forever. */
    hb_msg_t r = claim_ex(b, id);
    ck_assert_uint_eq(r.u.claim_ex_reply.result, HB_CLAIM_TRY_AGAIN);
    ck_assert_uint_eq(r.u.claim_ex_reply.amount, 0);
    WAIT_FOR(hb_server_store_error(&H.server) != 0);
    if (lost.result == 0)
        WAIT_FOR(counter(HB_CTR_X_ENVELOPE_DROPPED) == 1);
    ck_assert_uint_eq(claim_ex(b, id).u.claim_ex_reply.result, HB_CLAIM_TRY_AGAIN);
    ck_assert_uint_eq(claim(c, 0, id).u.claim_reply.amount, 0);
    /* The grant that was durable is still learned; shakes are still served. */
    r = claim_ex(a, id);
    ck_assert_uint_eq(r.u.claim_ex_reply.result, HB_CLAIM_REPEAT);
    ck_assert_uint_eq(r.u.claim_ex_reply.amount, first);
    ck_assert_uint_eq(shake(d, 103).u.shake_reply.result, HB_SHAKE_NONE);
    /* No new envelope while the journal is down. */
    send_args_t refused = {{100, 101, 102}, 500, 0, -1, 0};
    on_loop(do_send, &refused);
    ck_assert_int_ne(refused.result, 0);
    /* Nobody heard of the lost envelope: nothing but the replies above reached a, b or c. */
    ck_assert(!readable_now(a) && !readable_now(b) && !readable_now(c));
    ck_assert_uint_ge(counter(HB_CTR_X_STORE_ERRORS), 1);
    ck_assert_uint_ge(counter(HB_CTR_X_CLAIM_TRY_AGAIN), 3);

    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_xfsz);
    close(a);
    close(b);
    close(c);
    close(d);
    stop_server();

    /* After a restart with room again, the refused claims are granted, and ids go on past the
     * lost envelope's. */
    start_server(&o);
    b = login(101);
    c = login(102);
    uint32_t second = claim(b, 0, id).u.claim_reply.amount;
    uint32_t third = claim(c, 0, id).u.claim_reply.amount;
    ck_assert_uint_eq(first + second + third, 900);
    uint32_t next = send_envelope(1, 2, 3, 30);
    ck_assert_uint_gt(next, id);
    if (lost.result == 0)
        ck_assert_uint_gt(next, lost.id);
    close(b);
    close(c);
    stop_server();
    hb_journal_audit_t au;
    ck_assert_int_eq(hb_journal_audit(dir, &au, NULL, NULL), 0);
    ck_assert_uint_eq(au.totals.claims, 3);
    ck_assert_uint_eq(au.totals.claimed, 900);
    remove_tree(dir);
}
END_TEST

/* ---- defects 6 and 10: ids are never reused and never wrap ---- */

typedef struct gen_args {
    uint64_t qps, sum;
    int result;
} gen_args_t;

static void do_generate(void *arg)
{
    gen_args_t *g = arg;
    g->result = hb_server_generate_shake(&H.server, g->qps, g->sum);
}

/* Shake out n envelopes; returns the highest id seen, checking each is a shake id. */
static uint32_t shake_out(uint32_t user, int n, uint32_t above)
{
    gen_args_t g = {100000, (uint64_t)n, 0};
    on_loop(do_generate, &g);
    ck_assert_int_eq(g.result, 0);
    WAIT_FOR(hb_server_envelopes_queued(&H.server) == (size_t)n);
    int fd = login(user);
    uint32_t max = 0;
    int got = 0;
    for (int i = 0; i < 40 * n && got < n; i++) {
        hb_msg_t r = shake(fd, user);
        if (r.u.shake_reply.result != HB_SHAKE_GOT)
            continue;
        got++;
        uint32_t id = r.u.shake_reply.envelope_id;
        ck_assert_int_eq(hb_envelope_id_kind(id), HB_ENVELOPE_SHAKE);
        ck_assert_uint_gt(id, above);
        if (id > max)
            max = id;
    }
    ck_assert_int_eq(got, n);
    close(fd);
    return max;
}

START_TEST(test_shake_ids_go_on_across_restarts)
{
    char dir[] = "/tmp/hb-claims-XXXXXX";
    hb_server_options_t o = journaled(dir);
    o.threads = 1;
    o.sets = 1;
    start_server(&o);
    uint32_t max1 = shake_out(5, 20, 0);
    stop_server();
    start_server(&o);
    uint32_t max2 = shake_out(5, 20, max1);
    ck_assert_uint_gt(max2, max1);
    stop_server();
    remove_tree(dir);
}
END_TEST

/* A journal holding one envelope with the given id (written record by record). */
static void journal_with_envelope(const char *dir, uint32_t id)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, HB_JOURNAL_FILE_NAME);
    uint8_t buf[HB_JOURNAL_HEADER_SIZE + HB_JOURNAL_MAX_RECORD];
    memcpy(buf, HB_JOURNAL_MAGIC, 8);
    hb_put_u32(buf + 8, HB_JOURNAL_VERSION);
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_ENVELOPE;
    r.envelope.id = id;
    r.envelope.total = 30;
    r.envelope.count = 3;
    for (unsigned i = 0; i < 3; i++) {
        r.envelope.recipients[i] = 1 + i;
        r.envelope.shares[i] = 10;
    }
    r.envelope.created_s = (uint64_t)time(NULL);
    int n =
        hb_journal_encode(&r, buf + HB_JOURNAL_HEADER_SIZE, sizeof buf - HB_JOURNAL_HEADER_SIZE);
    ck_assert_int_gt(n, 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, HB_JOURNAL_HEADER_SIZE + (size_t)n),
                     (ssize_t)(HB_JOURNAL_HEADER_SIZE + (size_t)n));
    close(fd);
}

START_TEST(test_send_ids_never_wrap)
{
    /* The last send id is taken: no more send-envelopes, clearly, and never an id of 0. */
    char dir[] = "/tmp/hb-claims-XXXXXX";
    hb_server_options_t o = journaled(dir);
    journal_with_envelope(dir, UINT32_C(0x7FFFFFFF));
    start_server(&o);
    send_args_t s = {{7, 8, 9}, 300, 0, -1, 0};
    on_loop(do_send, &s);
    ck_assert_int_eq(s.result, HB_EIDSPACE);
    ck_assert_uint_eq(counter(HB_CTR_SEND_CREATED), 0);
    stop_server();
    remove_tree(dir);

    /* A journal from before the id spaces, whose envelope took 0xFFFFFFFF (a shake id now): the
     * next send-envelope takes a send id, never 0 and never one the journal holds. */
    char dir2[] = "/tmp/hb-claims-XXXXXX";
    o = journaled(dir2);
    journal_with_envelope(dir2, UINT32_MAX);
    start_server(&o);
    on_loop(do_send, &s);
    ck_assert_int_eq(s.result, 0);
    ck_assert_int_eq(hb_envelope_id_kind(s.id), HB_ENVELOPE_SEND);
    stop_server();
    remove_tree(dir2);
}
END_TEST

/* ---- defect 7: under queue saturation a claim never overtakes its envelope ---- */

enum { OVERTAKE_ENVELOPES = 3000 };

typedef struct claimers {
    int fd[3];
    int zero, replies;
    int failed;
} claimers_t;

/* Each recipient claims every envelope the moment its notice arrives. */
static void claimers_main(void *arg)
{
    claimers_t *cl = arg;
    while (cl->replies < 3 * OVERTAKE_ENVELOPES) {
        struct pollfd p[3];
        for (int k = 0; k < 3; k++)
            p[k] = (struct pollfd){cl->fd[k], POLLIN, 0};
        if (poll(p, 3, 10000) <= 0) {
            cl->failed = 1;
            return;
        }
        for (int k = 0; k < 3; k++) {
            if (!(p[k].revents & POLLIN))
                continue;
            uint8_t head[HB_FRAME_MAX];
            if (recv_exact(cl->fd[k], head, 2) != 0 ||
                recv_exact(cl->fd[k], head + 2, hb_get_u16(head) - 2u) != 0) {
                cl->failed = 1;
                return;
            }
            uint16_t cmd = hb_get_u16(head + 2);
            if (cmd == HB_CMD_NOTICE) {
                hb_msg_t m = {.cmd = HB_CMD_CLAIM};
                m.u.claim.envelope_id = hb_get_u32(head + HB_FRAME_HEADER);
                uint8_t out[32];
                int n = hb_msg_encode(&m, out, sizeof out);
                if (send(cl->fd[k], out, (size_t)n, MSG_NOSIGNAL) != n) {
                    cl->failed = 1;
                    return;
                }
            } else if (cmd == HB_CMD_CLAIM_REPLY) {
                cl->replies++;
                cl->zero += hb_get_u32(head + HB_FRAME_HEADER + 4) == 0;
            }
        }
    }
}

START_TEST(test_claim_never_overtakes_its_envelope)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.queue_capacity = 2; /* every burst spills past the ring */
    o.max_conn_qps = UINT32_MAX;
    start_server(&o);
    claimers_t cl = {{login(100), login(101), login(102)}, 0, 0, 0};
    uv_thread_t t;
    ck_assert_int_eq(uv_thread_create(&t, claimers_main, &cl), 0);
    send_args_t s = {{100, 101, 102}, 300, 0, -1, 0};
    for (int i = 0; i < OVERTAKE_ENVELOPES; i++) {
        on_loop(do_send, &s);
        ck_assert_int_eq(s.result, 0);
    }
    uv_thread_join(&t);
    ck_assert_int_eq(cl.failed, 0);
    ck_assert_int_eq(cl.zero, 0);
    ck_assert_uint_eq(counter(HB_CTR_CLAIMS_GRANTED), 3 * OVERTAKE_ENVELOPES);
    for (int k = 0; k < 3; k++)
        close(cl.fd[k]);
    stop_server();
}
END_TEST

/* ---- defect 8: a user range of one user ---- */

START_TEST(test_user_range_zero_to_zero)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.limit_users = 1;
    o.min_user = 0;
    o.max_user = 0;
    start_server(&o);
    int ok = login(0);
    login_refused(1);
    ck_assert_uint_eq(hb_server_users_online(&H.server), 1);
    close(ok);
    stop_server();
}
END_TEST

/* ---- defect 11: overload is shared between connections ---- */

START_TEST(test_overload_is_shared_fairly)
{
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.max_qps = 100;
    start_server(&o);
    int heavy = login(1), light = login(2);
    /* Within one second the heavy user sends 20 shakes for every 5 of the light one. Without
     * sharing, the heavy one takes four fifths of the cap. */
    for (int attempt = 0; attempt < 5; attempt++) {
        time_t t0 = time(NULL);
        int served[2] = {0, 0};
        for (int round = 0; round < 10; round++) {
            int fds[2] = {heavy, light}, n[2] = {20, 5};
            for (int k = 0; k < 2; k++) {
                send_shakes(fds[k], (uint32_t)(k + 1), n[k]);
                for (int i = 0; i < n[k]; i++) {
                    hb_msg_t r;
                    recv_msg(fds[k], &r, NULL);
                    served[k] += r.u.shake_reply.result != HB_SHAKE_OVERLOAD;
                }
            }
        }
        if (time(NULL) != t0) {
            /* The second turned: the counts restarted; try again in a fresh second. */
            while (time(NULL) == t0 + 1)
                usleep(1000);
            continue;
        }
        ck_assert_int_le(served[0] + served[1], 100);
        ck_assert_int_ge(served[1], 45); /* the light user keeps (nearly) all it asked for */
        ck_assert_int_le(served[0], 55);
        close(heavy);
        close(light);
        stop_server();
        return;
    }
    ck_abort_msg("no run fitted in one second");
}
END_TEST

/* ---- defect 12: the close callback may read the server, then free it ---- */

typedef struct close_probe {
    size_t users, conns;
    uint64_t opened;
    int called;
} close_probe_t;

static void on_closed_reads_then_frees(hb_server_t *s)
{
    close_probe_t *p = s->data;
    p->users = hb_server_users_online(s);
    p->conns = hb_server_connections(s);
    hb_report_t rep;
    hb_counters_snapshot(hb_server_counters(s), (uint64_t)time(NULL), &rep);
    p->opened = rep.cumulative[HB_CTR_CONN_OPENED];
    p->called = 1;
    free(s); /* the caller's memory: the library must not touch it after this */
}

START_TEST(test_close_callback_reads_then_frees)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    hb_server_t *s = malloc(sizeof *s);
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.listen_port = 0;
    o.threads = 2;
    o.close_timeout_ms = 300; /* our peer never closes: the deadline ends its connection */
    ck_assert_int_eq(hb_server_init(&loop, s, &o), 0);
    close_probe_t probe = {0, 0, 0, 0};
    s->data = &probe;
    ck_assert_int_eq(hb_server_start(s), 0);
    H.server.port = s->port; /* user_connect dials H.server.port */
    int fd = user_connect();
    hb_msg_t m = {.cmd = HB_CMD_LOGIN};
    m.u.login.user_id = 3;
    send_msg(fd, &m);
    hb_msg_t r;
    recv_msg(fd, &r, NULL);
    hb_server_close(s, on_closed_reads_then_frees);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(probe.called, 1);
    ck_assert_uint_eq(probe.opened, 1);
    ck_assert_uint_eq(probe.users, 0);
    ck_assert_uint_eq(probe.conns, 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    close(fd);
}
END_TEST

/* ---- defect 13: a second server on the same port fails, unless both opted in ---- */

static void noop_closed(hb_server_t *s)
{
    (void)s;
}

START_TEST(test_second_server_on_a_port_fails)
{
    for (int reuse = 0; reuse < 2; reuse++) {
        hb_server_options_t o;
        hb_server_options_default(&o);
        o.reuse_port = reuse;
        start_server(&o);
        uv_loop_t loop;
        ck_assert_int_eq(uv_loop_init(&loop), 0);
        hb_server_t second;
        o.listen_port = H.server.port;
        o.threads = 2;
        ck_assert_int_eq(hb_server_init(&loop, &second, &o), 0);
        int r = hb_server_start(&second);
        if (reuse) {
            ck_assert_int_eq(r, 0);
        } else {
            ck_assert_int_eq(r, UV_EADDRINUSE);
            ck_assert_ptr_nonnull(strstr(hb_server_last_error(&second), "cannot listen"));
        }
        hb_server_close(&second, noop_closed);
        uv_run(&loop, UV_RUN_DEFAULT);
        ck_assert_int_eq(uv_loop_close(&loop), 0);
        int fd = login(4); /* the first server still serves */
        close(fd);
        stop_server();
    }
}
END_TEST

static Suite *claims_suite(void)
{
    Suite *s = suite_create("server_claims");
    TCase *tc = tcase_create("contract");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_extended_claim_results);
    tcase_add_test(tc, test_login_burst_leaves_one_connection);
    tcase_add_test(tc, test_simultaneous_logins_leave_one_connection);
    tcase_add_test(tc, test_claim_then_newer_login_retry_learns_the_share);
    tcase_add_test(tc, test_close_answers_every_journaled_claim);
    tcase_add_test(tc, test_journal_failure_rolls_back_and_refuses);
    tcase_add_test(tc, test_shake_ids_go_on_across_restarts);
    tcase_add_test(tc, test_send_ids_never_wrap);
    tcase_add_test(tc, test_claim_never_overtakes_its_envelope);
    tcase_add_test(tc, test_user_range_zero_to_zero);
    tcase_add_test(tc, test_overload_is_shared_fairly);
    tcase_add_test(tc, test_close_callback_reads_then_frees);
    tcase_add_test(tc, test_second_server_on_a_port_fails);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(claims_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
