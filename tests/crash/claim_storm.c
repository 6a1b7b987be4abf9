/* A claim storm with careless claimants, for the crash test: users log in, claim every notice
 * they get, and with probability --chaos, right after sending a claim, either close the
 * connection or log in again on a new one (the newer login wins) without waiting for the reply;
 * a claim not yet answered (or answered "try again") is sent again on the next connection. A
 * server that goes away is dialled again with back-off. Every answer that grants a share is
 * logged as "envelope user amount result", so the test can check that every grant in the journal
 * reached its owner at least once.
 * Usage: claim_storm --port P --users MIN-MAX --seconds S [--chaos 0.3] [--ext] --log FILE
 * Runs S seconds, then until no claim waits for an answer (at most 30 s more). Exit 0 when every
 * claim got a final answer, 1 otherwise. Loopback only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hongbao.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_USERS   2048
#define MAX_PENDING 256
#define DRAIN_S     30

typedef struct user {
    uint32_t id;
    int fd; /* -1: not connected */
    int logged_in;
    uint64_t retry_ms;             /* when to dial again */
    uint32_t pending[MAX_PENDING]; /* envelopes claimed and not finally answered */
    unsigned npending;
    uint8_t in[HB_FRAME_MAX * 4];
    size_t in_len;
} user_t;

static user_t users[MAX_USERS];
static unsigned nusers;
static int port, ext;
static double chaos;
static FILE *log_file;
static uint64_t stats_grants, stats_repeats, stats_try_again, stats_refused, stats_chaos,
    stats_reconnects;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Best effort: a frame that does not fit the socket now is lost like any reply on a dropped
 * connection, and the claim is sent again later. */
static void send_frame(user_t *u, const hb_msg_t *m)
{
    uint8_t buf[HB_FRAME_MAX];
    int n = hb_msg_encode(m, buf, sizeof buf);
    if (n > 0 && u->fd >= 0)
        (void)send(u->fd, buf, (size_t)n, MSG_NOSIGNAL);
}

static void send_claim(user_t *u, uint32_t envelope)
{
    hb_msg_t m = {.cmd = ext ? HB_CMD_CLAIM_EX : HB_CMD_CLAIM, .timestamp = (uint64_t)time(NULL)};
    m.u.claim.envelope_id = envelope;
    send_frame(u, &m);
}

static void drop(user_t *u, uint64_t retry_after_ms)
{
    if (u->fd >= 0)
        close(u->fd);
    u->fd = -1;
    u->logged_in = 0;
    u->in_len = 0;
    u->retry_ms = now_ms() + retry_after_ms;
}

static void connect_user(user_t *u)
{
    u->fd = dial();
    u->logged_in = 0;
    u->in_len = 0;
    if (u->fd < 0) {
        u->retry_ms = now_ms() + 200;
        return;
    }
    stats_reconnects++;
    hb_msg_t m = {.cmd = HB_CMD_LOGIN, .timestamp = (uint64_t)time(NULL)};
    m.u.login.user_id = u->id;
    send_frame(u, &m); /* sent once the connect completes: the kernel queues it meanwhile */
}

static void forget(user_t *u, uint32_t envelope)
{
    for (unsigned i = 0; i < u->npending; i++) {
        if (u->pending[i] == envelope) {
            u->pending[i] = u->pending[--u->npending];
            return;
        }
    }
}

static int is_pending(const user_t *u, uint32_t envelope)
{
    for (unsigned i = 0; i < u->npending; i++)
        if (u->pending[i] == envelope)
            return 1;
    return 0;
}

static void on_answer(user_t *u, uint32_t envelope, uint32_t amount, uint32_t result)
{
    if (!is_pending(u, envelope))
        return; /* an answer to a claim sent twice: the first one settled it */
    if (result == HB_CLAIM_TRY_AGAIN) {
        stats_try_again++;
        return; /* stays pending: sent again on the next connection */
    }
    forget(u, envelope);
    if (result == HB_CLAIM_GRANTED || result == HB_CLAIM_REPEAT) {
        if (result == HB_CLAIM_REPEAT)
            stats_repeats++;
        else
            stats_grants++;
        fprintf(log_file, "%u %u %u %s\n", envelope, u->id, amount,
                result == HB_CLAIM_REPEAT ? "repeat" : "granted");
    } else {
        stats_refused++;
    }
}

/* Careless: drop the connection before the reply, or log in again elsewhere. */
static void maybe_misbehave(user_t *u)
{
    if (chaos <= 0 || (double)rand() / RAND_MAX >= chaos)
        return;
    stats_chaos++;
    if (rand() % 2 == 0) {
        drop(u, 0);
    } else {
        int old = u->fd; /* the server closes it when the new login lands */
        connect_user(u);
        if (old >= 0)
            close(old);
    }
}

static void on_frame(user_t *u, const hb_msg_t *m)
{
    switch (m->cmd) {
    case HB_CMD_LOGIN_REPLY:
        if (m->u.login_reply.result != 0) {
            drop(u, 1000);
            return;
        }
        u->logged_in = 1;
        for (unsigned i = 0; i < u->npending; i++)
            send_claim(u, u->pending[i]);
        break;
    case HB_CMD_NOTICE:
        if (u->npending < MAX_PENDING && !is_pending(u, m->u.notice.envelope_id)) {
            u->pending[u->npending++] = m->u.notice.envelope_id;
            send_claim(u, m->u.notice.envelope_id);
            maybe_misbehave(u);
        }
        break;
    case HB_CMD_CLAIM_REPLY:
        on_answer(u, m->u.claim_reply.envelope_id, m->u.claim_reply.amount,
                  m->u.claim_reply.amount > 0 ? HB_CLAIM_GRANTED : HB_CLAIM_NO_ENVELOPE);
        break;
    case HB_CMD_CLAIM_EX_REPLY:
        on_answer(u, m->u.claim_ex_reply.envelope_id, m->u.claim_ex_reply.amount,
                  m->u.claim_ex_reply.result);
        break;
    default:
        break;
    }
}

static void on_readable(user_t *u)
{
    ssize_t n = recv(u->fd, u->in + u->in_len, sizeof u->in - u->in_len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(u, 100 + (uint64_t)(rand() % 200));
        return;
    }
    if (n < 0)
        return;
    u->in_len += (size_t)n;
    size_t off = 0;
    for (;;) {
        hb_frame_t f;
        int r = hb_frame_parse(u->in + off, u->in_len - off, &f);
        if (r == 0)
            break;
        if (r < 0) {
            drop(u, 100);
            return;
        }
        hb_msg_t m;
        if (hb_msg_decode(&f, &m) == 0) {
            int fd = u->fd;
            on_frame(u, &m);
            if (u->fd != fd)
                return; /* the connection changed: the rest of the bytes went with it */
        }
        off += (size_t)r;
    }
    memmove(u->in, u->in + off, u->in_len - off);
    u->in_len -= off;
}

static uint64_t pending_total(void)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < nusers; i++)
        n += users[i].npending;
    return n;
}

int main(int argc, char **argv)
{
    uint32_t min = 0, max = 0;
    unsigned seconds = 10;
    const char *log_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ext") == 0)
            ext = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--port") == 0)
            port = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--users") == 0)
            sscanf(argv[++i], "%u-%u", &min, &max);
        else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0)
            seconds = (unsigned)atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--chaos") == 0)
            chaos = atof(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--log") == 0)
            log_path = argv[++i];
        else {
            fprintf(stderr, "claim_storm: bad argument '%s' (see the source's usage)\n", argv[i]);
            return 2;
        }
    }
    if (port <= 0 || max < min || max - min + 1 > MAX_USERS || log_path == NULL) {
        fprintf(stderr, "claim_storm: need --port, --users MIN-MAX (at most %d), --log\n",
                MAX_USERS);
        return 2;
    }
    log_file = fopen(log_path, "w");
    if (log_file == NULL) {
        perror(log_path);
        return 2;
    }
    srand(12345);
    nusers = max - min + 1;
    for (unsigned i = 0; i < nusers; i++) {
        users[i].id = min + i;
        users[i].fd = -1;
        connect_user(&users[i]);
    }
    uint64_t end = now_ms() + 1000ull * seconds, drain_end = end + 1000ull * DRAIN_S;
    static struct pollfd p[MAX_USERS];
    static uint64_t last_resend;
    for (;;) {
        uint64_t t = now_ms();
        if (t >= end && (pending_total() == 0 || t >= drain_end))
            break;
        unsigned n = 0;
        for (unsigned i = 0; i < nusers; i++) {
            user_t *u = &users[i];
            if (u->fd < 0 && t >= u->retry_ms)
                connect_user(u);
            p[i] = (struct pollfd){u->fd, POLLIN, 0};
            n++;
        }
        if (poll(p, n, 50) < 0 && errno != EINTR)
            break;
        for (unsigned i = 0; i < nusers; i++)
            if (users[i].fd >= 0 && p[i].fd == users[i].fd &&
                (p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                on_readable(&users[i]);
        /* Claims answered "try again" (or whose answer was lost) go out again now and then. */
        if (t - last_resend >= 500) {
            last_resend = t;
            for (unsigned i = 0; i < nusers; i++)
                if (users[i].logged_in)
                    for (unsigned k = 0; k < users[i].npending; k++)
                        send_claim(&users[i], users[i].pending[k]);
        }
    }
    uint64_t left = pending_total();
    fclose(log_file);
    printf("claim_storm: granted=%llu repeats=%llu try_again=%llu refused=%llu chaos=%llu "
           "connects=%llu unanswered=%llu\n",
           (unsigned long long)stats_grants, (unsigned long long)stats_repeats,
           (unsigned long long)stats_try_again, (unsigned long long)stats_refused,
           (unsigned long long)stats_chaos, (unsigned long long)stats_reconnects,
           (unsigned long long)left);
    for (unsigned i = 0; i < nusers; i++)
        if (users[i].fd >= 0)
            close(users[i].fd);
    return left == 0 ? 0 : 1;
}
