/* libFuzzer target for the server runtime as a whole, with peers that misbehave: each input is a
 * script run against one hb_server (2 workers, 4 SETs, the claim journal on) over real loopback
 * connections. Steps open connections, send raw bytes or well-formed frames (logins, shakes,
 * claims of both kinds, chat, an application command), half-close, reset, stop reading with
 * replies still in flight, or read what has come. Afterwards every connection is closed, the
 * server must get back to zero connections with as many closed as opened, and a fresh user must
 * still be served; the process must not die (of SIGPIPE or anything else).
 *
 * Input: a sequence of steps, each [op][conn][len][bytes...] (see run_step). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "hongbao.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_server: check failed at line %d: %s\n", __LINE__, #cond);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define CONNS     6
#define MAX_STEPS 64
#define USERS     8 /* users 1..8; the send-envelopes are addressed to 1, 2, 3 */

typedef struct fuzz_server {
    uv_loop_t loop;
    hb_server_t server;
    uv_thread_t thread;
    uint32_t envelopes[4];
    char dir[64];
} fuzz_server_t;

static fuzz_server_t *F;

static void control_thread(void *arg)
{
    (void)arg;
    uv_run(&F->loop, UV_RUN_DEFAULT);
}

static void keep_alive(uv_timer_t *t)
{
    (void)t;
}

static void remove_journal(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/journal", F->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/LOCK", F->dir);
    unlink(path);
    rmdir(F->dir);
}

static void setup(void)
{
    F = calloc(1, sizeof *F);
    FUZZ_CHECK(uv_loop_init(&F->loop) == 0);
    snprintf(F->dir, sizeof F->dir, "/tmp/hb-fuzz-server-XXXXXX");
    FUZZ_CHECK(mkdtemp(F->dir) != NULL);
    atexit(remove_journal);
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.listen_port = 0;
    o.threads = 2;
    o.sets = 4;
    o.seed = 7;
    o.max_output = 4096; /* small, so that a peer that stops reading meets the bound */
    o.max_conn_qps = 200;
    o.ledger_dir = F->dir;
    o.fsync = HB_FSYNC_NO;
    o.log = NULL;
    FUZZ_CHECK(hb_server_init(&F->loop, &F->server, &o) == 0);
    FUZZ_CHECK(hb_server_start(&F->server) == 0);
    for (uint32_t i = 0; i < 4; i++) {
        const uint32_t to[3] = {1, 2, 3};
        FUZZ_CHECK(hb_server_send_envelope(&F->server, to, 3, 300 + i, &F->envelopes[i]) == 0);
    }
    FUZZ_CHECK(hb_server_generate_shake(&F->server, 1000, 1000000) == 0);
    /* The control loop runs in its own thread from now on (a timer keeps it alive). */
    static uv_timer_t t;
    uv_timer_init(&F->loop, &t);
    uv_timer_start(&t, keep_alive, 1000, 1000);
    FUZZ_CHECK(uv_thread_create(&F->thread, control_thread, NULL) == 0);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)F->server.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send without blocking and without SIGPIPE; what does not fit is dropped, as a careless peer
 * would. */
static void send_some(int fd, const void *buf, size_t len)
{
    (void)send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void drain(int fd)
{
    uint8_t sink[4096];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
}

/* A well-formed frame from a few fuzzed bytes. */
static size_t make_frame(const uint8_t *p, size_t n, uint8_t *out)
{
    uint8_t kind = n > 0 ? p[0] : 0;
    uint32_t user = 1 + (n > 1 ? p[1] % USERS : 0);
    hb_msg_t m = {.timestamp = (uint64_t)time(NULL)};
    switch (kind % 6) {
    case 0:
        m.cmd = HB_CMD_LOGIN;
        m.u.login.user_id = user;
        break;
    case 1:
        m.cmd = HB_CMD_SHAKE;
        m.u.shake.user_id = user;
        break;
    case 2:
    case 3:
        m.cmd = kind % 6 == 2 ? HB_CMD_CLAIM : HB_CMD_CLAIM_EX;
        m.u.claim.envelope_id = n > 2 && p[2] < 200 ? F->envelopes[p[2] % 4] : 0x300000;
        break;
    case 4:
        m.cmd = HB_CMD_CHAT;
        m.u.chat.user_id = user;
        m.u.chat.text = (const uint8_t *)"hi";
        m.u.chat.text_len = 2;
        break;
    default:
        m.cmd = HB_CMD_APP_FIRST;
        m.u.app.len = 0;
        break;
    }
    int len = hb_msg_encode(&m, out, HB_FRAME_MAX);
    return len > 0 ? (size_t)len : 0;
}

/* One step: op selects the action, conn the connection (opened on first use). Returns the bytes
 * of input it used. */
static size_t run_step(int *fds, const uint8_t *p, size_t n)
{
    if (n < 3)
        return n;
    uint8_t op = p[0] % 8, k = p[1] % CONNS, len = p[2];
    const uint8_t *body = p + 3;
    size_t avail = n - 3;
    if (len > avail)
        len = (uint8_t)avail;
    if (fds[k] < 0 && op != 4 && op != 5)
        fds[k] = dial();
    int fd = fds[k];
    uint8_t frame[HB_FRAME_MAX];
    switch (op) {
    case 0: /* raw bytes */
    case 1:
        if (fd >= 0)
            send_some(fd, body, len);
        return 3 + len;
    case 2: /* a well-formed frame, a few times over */
    case 3: {
        size_t f = make_frame(body, len, frame);
        for (int i = 0; fd >= 0 && i < 1 + (op == 3 ? 8 : 0); i++)
            send_some(fd, frame, f);
        return 3 + len;
    }
    case 4: /* half-close: no more from us, replies may still come */
        if (fd >= 0)
            shutdown(fd, SHUT_WR);
        return 3;
    case 5: /* reset with replies in flight */
        if (fd >= 0) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(fd);
            fds[k] = -1;
        }
        return 3;
    case 6: /* stop reading: a tiny receive window and nothing read */
        if (fd >= 0) {
            int small = 1;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        }
        return 3;
    default: /* read what has come */
        if (fd >= 0)
            drain(fd);
        return 3;
    }
}

/* After each input: the server still serves a well-behaved user. */
static void check_alive(void)
{
    int fd = dial();
    FUZZ_CHECK(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[64];
    hb_msg_t m = {.cmd = HB_CMD_LOGIN, .timestamp = (uint64_t)time(NULL)};
    m.u.login.user_id = 99;
    int n = hb_msg_encode(&m, buf, sizeof buf);
    m.cmd = HB_CMD_SHAKE;
    m.u.shake.user_id = 99;
    n += hb_msg_encode(&m, buf + n, sizeof buf - (size_t)n);
    FUZZ_CHECK(send(fd, buf, (size_t)n, MSG_NOSIGNAL) == n);
    size_t got = 0;
    while (got < 20 + 28) { /* the login reply and the shake reply */
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        FUZZ_CHECK(r > 0);
        got += (size_t)r;
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (F == NULL)
        setup();
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++)
        fds[i] = -1;
    size_t off = 0;
    for (int step = 0; step < MAX_STEPS && off < size; step++)
        off += run_step(fds, data + off, size - off);
    for (int i = 0; i < CONNS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    check_alive();
    /* Every connection of this input ends: closed ones are counted as closed. */
    for (int i = 0; i < 5000 && hb_server_connections(&F->server) > 0; i++)
        usleep(1000);
    FUZZ_CHECK(hb_server_connections(&F->server) == 0);
    hb_report_t rep;
    hb_counters_snapshot(hb_server_counters(&F->server), (uint64_t)time(NULL), &rep);
    FUZZ_CHECK(rep.cumulative[HB_CTR_CONN_OPENED] == rep.cumulative[HB_CTR_CONN_CLOSED]);
    return 0;
}
