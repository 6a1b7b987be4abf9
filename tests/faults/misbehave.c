/* faults_misbehave: the peer of tests/faults/run.sh. It connects to hb-server (or hb-monitor) and
 * misbehaves in one chosen way, or behaves well and checks that every reply comes in time.
 * Each mode prints one line of key=value results and exits 0 when what it saw was as expected. */
#include <arpa/inet.h>
#include <errno.h>
#include <hongbao.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 5000 /* any single blocking read or write */
#define MAX_PARALLEL  64
#define MAX_CONNS     4096
#define GOOD_RING     1024 /* shakes a well-behaved user may have unanswered */
#define SHAKE_LEN     16
#define LOGIN_LEN     16
#define LOGIN_REPLY   20
#define WRITE_CHUNK   (4096 * SHAKE_LEN)

static const char *prog = "faults_misbehave";

typedef struct opts {
    const char *mode;
    char host[64];
    int port;
    unsigned count;
    unsigned parallel;
    uint32_t user;
    unsigned interval_ms;
    unsigned bound_ms;
    unsigned shakes;
    unsigned duration_ms;
    unsigned hold_ms;
    unsigned rate;
    unsigned timeout_s;
    uint64_t seed;
    const char *pidfile;
    unsigned pipeline;
    const char *path;
    const char *token;
} opts_t;

static opts_t o;
static volatile sig_atomic_t stop_requested;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: %s MODE --server HOST:PORT [options]\n"
        "\n"
        "modes (each prints one line of key=value results; exit 0 when as expected):\n"
        "  good        log in as --user, shake every --interval-ms, check that every reply\n"
        "              comes within --bound-ms; until SIGTERM/SIGINT or --duration-ms\n"
        "  midframe    --count connections: even ones send 7 bytes of a login and close, odd\n"
        "              ones log in, send 7 bytes of a shake and close\n"
        "  cycle       --count cycles: even ones connect, log in, close; odd ones connect, close\n"
        "  badframe    --count connections each sending one malformed or unexpected frame;\n"
        "              expects each to be closed by the server\n"
        "  noread      --count peers log in, send --shakes shakes in big writes, never read;\n"
        "              expects each to be disconnected by the server\n"
        "  flood       --count peers log in, send --shakes shakes at once, read the replies;\n"
        "              expects each to be disconnected (per-connection rate limit)\n"
        "  slowloris   --count connections send one byte of a login every --interval-ms;\n"
        "              expects each to be closed; reports the time it took\n"
        "  hold        open --count connections and log each in: counts accepted (login reply)\n"
        "              and refused (closed); holds them --hold-ms more, then closes them all\n"
        "  mon-garbage to a monitor: --count connections each of random bytes, a report of\n"
        "              type 7, half a report then close\n"
        "  http-gone   to an HTTP port: --count connections (--parallel at once) each send\n"
        "              --pipeline GET --path requests (with 'Authorization: Bearer --token'\n"
        "              when given) in one write and leave without reading: even ones close,\n"
        "              odd ones reset (SO_LINGER 0)\n"
        "  user-gone   to a user port: --count connections each send a login as --user + i,\n"
        "              then --pipeline shakes and --pipeline claims in one write, and leave\n"
        "              without reading: even ones close, odd ones reset\n"
        "  freeport    print a free loopback TCP port\n"
        "\n"
        "options: --count N (1) --parallel P (8) --user U (1000) --interval-ms MS (50)\n"
        "         --bound-ms MS (1000) --shakes N (5000) --duration-ms MS (120000)\n"
        "         --hold-ms MS (500) --rate N (connections a second in the parallel\n"
        "         modes; 0: as fast as they go) --timeout-s S (60: the whole run) --seed N (1)\n"
        "         --pidfile FILE --pipeline N (5) --path P (/stats) --token T\n",
        prog);
}

/* ---- small helpers ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int encode(uint16_t cmd, uint32_t a, uint32_t b, uint8_t *buf, size_t cap)
{
    hb_msg_t m;
    memset(&m, 0, sizeof m);
    m.cmd = cmd;
    m.timestamp = (uint64_t)time(NULL);
    switch (cmd) {
    case HB_CMD_LOGIN:
        m.u.login.user_id = a;
        break;
    case HB_CMD_SHAKE:
        m.u.shake.user_id = a;
        break;
    case HB_CMD_CLAIM:
        m.u.claim.user_id = a;
        m.u.claim.envelope_id = b;
        break;
    case HB_CMD_LOGIN_REPLY:
        m.u.login_reply.user_id = a;
        m.u.login_reply.result = b;
        break;
    default:
        return -1;
    }
    return hb_msg_encode(&m, buf, cap);
}

static void set_timeouts(int fd, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A blocking connection to the target; rcvbuf > 0 pins the receive buffer (before connect, so the
 * window stays small). Returns the fd or -errno. */
static int dial(int rcvbuf)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    set_timeouts(fd, IO_TIMEOUT_MS);
    if (connect(fd, (const struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Write all of buf. Returns 0 or -errno (EPIPE/ECONNRESET: the peer closed). */
static int send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read exactly len bytes. Returns 0, 1 on EOF first, or -errno (EAGAIN: timed out). */
static int recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read and discard until EOF or a reset (returns 1: the peer closed), or until nothing came for
 * IO_TIMEOUT_MS (returns 0). *bytes counts what was read. */
static int drain_until_closed(int fd, uint64_t *bytes)
{
    static _Thread_local uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return 1;
        if (n < 0)
            return 0;
        if (bytes != NULL)
            *bytes += (uint64_t)n;
    }
}

/* Log in as user on fd and wait for the reply. Returns 0, 1 when the server closed instead, or
 * -errno. */
static int login(int fd, uint32_t user)
{
    uint8_t buf[64];
    int n = encode(HB_CMD_LOGIN, user, 0, buf, sizeof buf);
    int r = send_all(fd, buf, (size_t)n);
    if (r == -EPIPE || r == -ECONNRESET)
        return 1;
    if (r != 0)
        return r;
    r = recv_all(fd, buf, LOGIN_REPLY);
    if (r == -ECONNRESET)
        return 1;
    if (r != 0)
        return r;
    hb_frame_t f;
    hb_msg_t m;
    if (hb_frame_parse(buf, LOGIN_REPLY, &f) != LOGIN_REPLY || hb_msg_decode(&f, &m) != 0 ||
        m.cmd != HB_CMD_LOGIN_REPLY || m.u.login_reply.user_id != user ||
        m.u.login_reply.result != 0)
        return -EPROTO;
    return 0;
}

/* ---- parallel workers: each mode's one connection, run by --parallel threads over --count ---- */

typedef struct tally {
    atomic_uint next;
    atomic_uint done;
    atomic_uint logged_in;
    atomic_uint closed_by_peer;
    atomic_uint errors;
    atomic_uint disconnected;
    atomic_ullong sent;
    atomic_ullong replies;
    atomic_ullong overload;
    atomic_ullong read_bytes;
    char first_error[160];
    pthread_mutex_t lock;
} tally_t;

static tally_t tally;
static uint64_t run_start_ms;

static void note_error(unsigned i, const char *what, int err)
{
    atomic_fetch_add(&tally.errors, 1);
    pthread_mutex_lock(&tally.lock);
    if (tally.first_error[0] == '\0')
        snprintf(tally.first_error, sizeof tally.first_error, "connection %u: %s: %s", i, what,
                 err < 0 ? strerror(-err) : (err == 1 ? "closed by the server" : "unexpected"));
    pthread_mutex_unlock(&tally.lock);
}

typedef void (*one_fn)(unsigned i);

static void *worker_main(void *arg)
{
    one_fn fn = (one_fn)(uintptr_t)arg;
    for (;;) {
        unsigned i = atomic_fetch_add(&tally.next, 1);
        if (i >= o.count)
            break;
        if (o.rate > 0) { /* pace: connection i starts i / rate seconds into the run */
            uint64_t due = run_start_ms + (uint64_t)i * 1000u / o.rate, t = now_ms();
            if (due > t)
                poll(NULL, 0, (int)(due - t));
        }
        fn(i);
        atomic_fetch_add(&tally.done, 1);
    }
    return NULL;
}

static int run_parallel(one_fn fn)
{
    pthread_t th[MAX_PARALLEL];
    unsigned n = o.parallel < o.count ? o.parallel : o.count;
    unsigned started = 0;
    run_start_ms = now_ms();
    for (unsigned k = 0; k < n; k++) {
        if (pthread_create(&th[k], NULL, worker_main, (void *)(uintptr_t)fn) != 0)
            break;
        started++;
    }
    if (started == 0) {
        fprintf(stderr, "%s: cannot start a thread\n", prog);
        return -1;
    }
    for (unsigned k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    return 0;
}

/* midframe: 7 bytes of a frame, then close. */
static void one_midframe(unsigned i)
{
    uint8_t buf[64];
    int fd = dial(0);
    if (fd < 0) {
        note_error(i, "connect", fd);
        return;
    }
    uint32_t user = o.user + i;
    int r;
    if (i % 2 == 1) {
        r = login(fd, user);
        if (r != 0) {
            note_error(i, "login", r);
            close(fd);
            return;
        }
        atomic_fetch_add(&tally.logged_in, 1);
        encode(HB_CMD_SHAKE, user, 0, buf, sizeof buf);
    } else {
        encode(HB_CMD_LOGIN, user, 0, buf, sizeof buf);
    }
    r = send_all(fd, buf, 7);
    if (r != 0)
        note_error(i, "send 7 bytes", r);
    close(fd);
}

/* cycle: connect, (log in,) close. */
static void one_cycle(unsigned i)
{
    int fd = dial(0);
    if (fd < 0) {
        note_error(i, "connect", fd);
        return;
    }
    if (i % 2 == 0) {
        int r = login(fd, o.user + i);
        if (r != 0)
            note_error(i, "login", r);
        else
            atomic_fetch_add(&tally.logged_in, 1);
    }
    close(fd);
}

/* badframe: one malformed or unexpected frame, then wait for the server to close. */
static void one_badframe(unsigned i)
{
    uint8_t buf[64];
    size_t len = 16;
    uint32_t user = o.user + i;
    int fd = dial(0);
    if (fd < 0) {
        note_error(i, "connect", fd);
        return;
    }
    int r = 0;
    encode(HB_CMD_SHAKE, user, 0, buf, sizeof buf);
    switch (i % 5) {
    case 0: /* a length below the header */
        buf[0] = 0;
        buf[1] = 5;
        break;
    case 1: /* a length above the largest frame */
        buf[0] = 0x7F;
        buf[1] = 0xFF;
        break;
    case 2: /* an unknown command */
        buf[2] = 0x0A;
        buf[3] = 0xBC;
        break;
    case 3: /* a shake before any login: as encoded */
        break;
    case 4: /* logged in, then a server-to-client command */
        r = login(fd, user);
        if (r != 0) {
            note_error(i, "login", r);
            close(fd);
            return;
        }
        atomic_fetch_add(&tally.logged_in, 1);
        len = (size_t)encode(HB_CMD_LOGIN_REPLY, user, 0, buf, sizeof buf);
        break;
    }
    r = send_all(fd, buf, len);
    if (r != 0 && r != -EPIPE && r != -ECONNRESET) {
        note_error(i, "send", r);
        close(fd);
        return;
    }
    if (drain_until_closed(fd, NULL))
        atomic_fetch_add(&tally.closed_by_peer, 1);
    else
        note_error(i, "still open after the bad frame", 0);
    close(fd);
}

/* Leave without reading what the peer sent or will send: odd connections reset (SO_LINGER 0),
 * even ones close (a FIN; the peer's later writes meet a closed socket). */
static void leave(int fd, unsigned i)
{
    if (i % 2 == 1) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
}

/* Send what a departing peer pipelined; a peer that has already closed on us is counted (a
 * refused HTTP connection), any other failure is an error. */
static void send_and_leave(unsigned i, const void *buf, size_t len)
{
    int fd = dial(0);
    if (fd < 0) {
        note_error(i, "connect", fd);
        return;
    }
    int r = send_all(fd, buf, len);
    if (r == -EPIPE || r == -ECONNRESET)
        atomic_fetch_add(&tally.closed_by_peer, 1);
    else if (r != 0)
        note_error(i, "send", r);
    else
        atomic_fetch_add(&tally.sent, 1);
    leave(fd, i);
}

/* http-gone: --pipeline requests for --path in one write, then leave. */
static void one_http_gone(unsigned i)
{
    char buf[8192];
    size_t n = 0;
    for (unsigned k = 0; k < o.pipeline && n < sizeof buf - 512; k++) {
        int w = snprintf(
            buf + n, sizeof buf - n, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n", o.path,
            o.token ? "Authorization: Bearer " : "", o.token ? o.token : "", o.token ? "\r\n" : "");
        if (w < 0 || (size_t)w >= sizeof buf - n)
            break;
        n += (size_t)w;
    }
    send_and_leave(i, buf, n);
}

/* user-gone: a login, then --pipeline shakes and claims, interleaved, in one write, then leave.
 * The claims name envelopes nobody has: each is answered (amount 0) by the SET that owns it. */
static void one_user_gone(unsigned i)
{
    uint8_t buf[64 * 40];
    uint32_t user = o.user + i;
    int len = encode(HB_CMD_LOGIN, user, 0, buf, sizeof buf);
    size_t n = (size_t)len;
    for (unsigned k = 0; k < o.pipeline && n + 64 <= sizeof buf; k++) {
        n += (size_t)encode(HB_CMD_SHAKE, user, 0, buf + n, sizeof buf - n);
        n += (size_t)encode(HB_CMD_CLAIM, 0, HB_SEND_ENVELOPE_ID_BASE + i * 16 + k, buf + n,
                            sizeof buf - n);
    }
    send_and_leave(i, buf, n);
}

static uint8_t *shake_block(uint32_t user, size_t *len)
{
    static _Thread_local uint8_t block[WRITE_CHUNK];
    uint8_t one[64];
    encode(HB_CMD_SHAKE, user, 0, one, sizeof one);
    for (size_t k = 0; k < WRITE_CHUNK; k += SHAKE_LEN)
        memcpy(block + k, one, SHAKE_LEN);
    *len = WRITE_CHUNK;
    return block;
}

/* noread: log in, then write shakes in 64 KiB blocks and never read, until the server cuts the
 * connection (a write fails) or --shakes are sent; in that last case, drain to see whether the
 * server closed it at all. */
static void one_noread(unsigned i)
{
    uint32_t user = o.user + i;
    int fd = dial(4096);
    if (fd < 0) {
        note_error(i, "connect", fd);
        return;
    }
    int r = login(fd, user);
    if (r != 0) {
        note_error(i, "login", r);
        close(fd);
        return;
    }
    atomic_fetch_add(&tally.logged_in, 1);
    size_t blen;
    const uint8_t *block = shake_block(user, &blen);
    uint64_t left = (uint64_t)o.shakes * SHAKE_LEN, sent = 0;
    int cut = 0;
    while (left > 0) {
        size_t n = left < blen ? (size_t)left : blen;
        r = send_all(fd, block, n);
        if (r == -EPIPE || r == -ECONNRESET) {
            cut = 1;
            break;
        }
        if (r != 0) {
            note_error(i, "send (the server stopped reading?)", r);
            break;
        }
        left -= n;
        sent += n;
    }
    atomic_fetch_add(&tally.sent, sent / SHAKE_LEN);
    uint64_t bytes = 0;
    if (!cut && r == 0) {
        cut = drain_until_closed(fd, &bytes);
        if (!cut)
            note_error(i, "every shake sent and the server never closed", 0);
    }
    atomic_fetch_add(&tally.read_bytes, bytes);
    if (cut)
        atomic_fetch_add(&tally.disconnected, 1);
    close(fd);
}

typedef struct flood_seen {
    uint64_t replies, overload;
} flood_seen_t;

static int on_flood_frame(void *arg, const hb_frame_t *f)
{
    flood_seen_t *s = arg;
    hb_msg_t m;
    if (f->cmd == HB_CMD_SHAKE_REPLY && hb_msg_decode(f, &m) == 0) {
        s->replies++;
        if (m.u.shake_reply.result == HB_SHAKE_OVERLOAD)
            s->overload++;
    }
    return 0;
}

/* flood: log in, send --shakes shakes at once, read the replies until the server closes. */
static void one_flood(unsigned i)
{
    static _Thread_local uint8_t rbuf[65536];
    uint32_t user = o.user + i;
    int fd = dial(0);
    if (fd < 0) {
        note_error(i, "connect", fd);
        return;
    }
    int r = login(fd, user);
    if (r != 0) {
        note_error(i, "login", r);
        close(fd);
        return;
    }
    atomic_fetch_add(&tally.logged_in, 1);
    size_t blen;
    const uint8_t *block = shake_block(user, &blen);
    uint64_t left = (uint64_t)o.shakes * SHAKE_LEN, sent = 0;
    while (left > 0) {
        size_t n = left < blen ? (size_t)left : blen;
        if (send_all(fd, block, n) != 0)
            break;
        left -= n;
        sent += n;
    }
    atomic_fetch_add(&tally.sent, sent / SHAKE_LEN);
    hb_framer_t fr;
    hb_framer_init(&fr);
    flood_seen_t seen = {0, 0};
    int closed = 0;
    for (;;) {
        ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
            closed = 1;
            break;
        }
        if (n < 0)
            break;
        if (hb_framer_feed(&fr, rbuf, (size_t)n, on_flood_frame, &seen) != 0) {
            note_error(i, "bad frame from the server", 0);
            break;
        }
    }
    hb_framer_reset(&fr);
    atomic_fetch_add(&tally.replies, seen.replies);
    atomic_fetch_add(&tally.overload, seen.overload);
    if (closed)
        atomic_fetch_add(&tally.disconnected, 1);
    else
        note_error(i, "not disconnected", 0);
    close(fd);
}

static void print_tally(void)
{
    printf("%s: count=%u done=%u logged_in=%u closed_by_server=%u disconnected=%u sent=%llu "
           "replies=%llu overload=%llu read_bytes=%llu errors=%u\n",
           o.mode, o.count, atomic_load(&tally.done), atomic_load(&tally.logged_in),
           atomic_load(&tally.closed_by_peer), atomic_load(&tally.disconnected),
           (unsigned long long)atomic_load(&tally.sent),
           (unsigned long long)atomic_load(&tally.replies),
           (unsigned long long)atomic_load(&tally.overload),
           (unsigned long long)atomic_load(&tally.read_bytes), atomic_load(&tally.errors));
    if (tally.first_error[0] != '\0')
        fprintf(stderr, "%s: %s: first error: %s\n", prog, o.mode, tally.first_error);
}

/* ---- slowloris: one thread, every connection in one poll set ---- */

static int run_slowloris(void)
{
    static int fds[MAX_CONNS];
    static uint64_t opened[MAX_CONNS], closed_at[MAX_CONNS];
    static struct pollfd pf[MAX_CONNS];
    uint8_t frame[64];
    unsigned n = o.count, open_n = 0, sent_bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        fds[i] = dial(0);
        if (fds[i] < 0) {
            fprintf(stderr, "%s: slowloris: connect %u: %s\n", prog, i, strerror(-fds[i]));
            for (unsigned k = 0; k < i; k++)
                close(fds[k]);
            return 1;
        }
        opened[i] = now_ms();
        closed_at[i] = 0;
        open_n++;
    }
    encode(HB_CMD_LOGIN, o.user, 0, frame, sizeof frame);
    /* Never the last byte: the login must not complete however slow the server is. */
    const uint64_t deadline = now_ms() + (uint64_t)o.interval_ms * (LOGIN_LEN - 1);
    uint64_t next_send = now_ms();
    unsigned early_data = 0;
    while (open_n > 0 && now_ms() < deadline) {
        uint64_t t = now_ms();
        if (t >= next_send && sent_bytes < LOGIN_LEN - 1) {
            for (unsigned i = 0; i < n; i++)
                if (closed_at[i] == 0)
                    send(fds[i], frame + sent_bytes, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            sent_bytes++;
            next_send = t + o.interval_ms;
        }
        unsigned m = 0;
        for (unsigned i = 0; i < n; i++) {
            if (closed_at[i] != 0)
                continue;
            pf[m].fd = fds[i];
            pf[m].events = POLLIN;
            pf[m].revents = 0;
            m++;
        }
        uint64_t wait = next_send > t ? next_send - t : 0;
        if (wait > 100)
            wait = 100;
        if (poll(pf, m, (int)wait) < 0 && errno != EINTR)
            break;
        for (unsigned k = 0, i = 0; k < m; k++) {
            if (pf[k].revents == 0)
                continue;
            while (fds[i] != pf[k].fd)
                i++;
            uint8_t b[64];
            ssize_t r = recv(fds[i], b, sizeof b, MSG_DONTWAIT);
            if (r > 0) {
                early_data++;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                closed_at[i] = now_ms();
                open_n--;
            }
        }
    }
    uint64_t min = UINT64_MAX, max = 0, sum = 0;
    unsigned closed = 0;
    for (unsigned i = 0; i < n; i++) {
        if (closed_at[i] != 0) {
            uint64_t d = closed_at[i] - opened[i];
            min = d < min ? d : min;
            max = d > max ? d : max;
            sum += d;
            closed++;
        }
        close(fds[i]);
    }
    printf("slowloris: count=%u closed_by_server=%u still_open=%u bytes_sent_each=%u "
           "unexpected_data=%u close_after_ms_min=%llu close_after_ms_avg=%llu "
           "close_after_ms_max=%llu\n",
           n, closed, n - closed, sent_bytes, early_data, (unsigned long long)(closed ? min : 0),
           (unsigned long long)(closed ? sum / closed : 0), (unsigned long long)max);
    return closed == n && early_data == 0 ? 0 : 1;
}

/* ---- hold: many connections at once, each logging in ---- */

static int run_hold(void)
{
    static int fds[MAX_CONNS];
    static uint8_t state[MAX_CONNS]; /* 0 waiting, 1 accepted, 2 refused */
    static uint8_t got[MAX_CONNS];
    static struct pollfd pf[MAX_CONNS];
    uint8_t frame[64];
    unsigned n = o.count, connect_failed = 0;
    for (unsigned i = 0; i < n; i++) {
        fds[i] = dial(0);
        state[i] = 0;
        got[i] = 0;
        if (fds[i] < 0) {
            connect_failed++;
            state[i] = 2;
            continue;
        }
        int len = encode(HB_CMD_LOGIN, o.user + i, 0, frame, sizeof frame);
        int r = send_all(fds[i], frame, (size_t)len);
        if (r != 0) {
            state[i] = 2;
            close(fds[i]);
            fds[i] = -1;
        }
    }
    unsigned accepted = 0, refused = 0, waiting = 0;
    const uint64_t deadline = now_ms() + 10000;
    for (;;) {
        unsigned m = 0;
        for (unsigned i = 0; i < n; i++) {
            if (state[i] != 0)
                continue;
            pf[m].fd = fds[i];
            pf[m].events = POLLIN;
            pf[m].revents = 0;
            m++;
        }
        if (m == 0 || now_ms() >= deadline)
            break;
        if (poll(pf, m, 100) < 0 && errno != EINTR)
            break;
        for (unsigned k = 0, i = 0; k < m; k++) {
            if (pf[k].revents == 0)
                continue;
            while (fds[i] != pf[k].fd)
                i++;
            uint8_t b[LOGIN_REPLY];
            ssize_t r = recv(fds[i], b, sizeof b - got[i], MSG_DONTWAIT);
            if (r > 0) {
                got[i] = (uint8_t)(got[i] + r);
                if (got[i] == LOGIN_REPLY)
                    state[i] = 1;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                state[i] = 2;
            }
        }
    }
    for (unsigned i = 0; i < n; i++) {
        accepted += state[i] == 1;
        refused += state[i] == 2;
        waiting += state[i] == 0;
    }
    printf("hold: count=%u accepted=%u refused=%u connect_failed=%u undecided=%u\n", n, accepted,
           refused - connect_failed, connect_failed, waiting);
    fflush(stdout);
    uint64_t until = now_ms() + o.hold_ms;
    while (now_ms() < until)
        poll(NULL, 0, (int)(until - now_ms()));
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return waiting == 0 ? 0 : 1;
}

/* ---- mon-garbage: bad reporters for hb-monitor ---- */

static int run_mon_garbage(void)
{
    uint8_t buf[2 * HB_REPORT_SIZE];
    hb_rand_t rng;
    hb_rand_seed(&rng, o.seed);
    unsigned closed = 0, sent_random = 0, sent_type7 = 0, sent_half = 0, errors = 0;
    for (unsigned i = 0; i < o.count; i++) {
        for (int kind = 0; kind < 3; kind++) {
            int fd = dial(0);
            if (fd < 0) {
                fprintf(stderr, "%s: mon-garbage: connect: %s\n", prog, strerror(-fd));
                errors++;
                continue;
            }
            hb_report_t rep;
            memset(&rep, 0, sizeof rep);
            rep.second = (uint64_t)time(NULL) - 3;
            size_t len = HB_REPORT_SIZE;
            if (kind == 0) { /* random bytes, two reports' worth */
                for (size_t k = 0; k < sizeof buf; k += 8) {
                    uint64_t v = hb_rand_next(&rng);
                    memcpy(buf + k, &v, 8);
                }
                len = sizeof buf;
                sent_random++;
            } else if (kind == 1) { /* a well-formed report of type 7 */
                rep.type = 7;
                hb_report_encode(&rep, buf);
                sent_type7++;
            } else { /* half a server report, then close */
                rep.type = HB_REPORTER_SERVER;
                hb_report_encode(&rep, buf);
                len = HB_REPORT_SIZE / 2;
                sent_half++;
            }
            int r = send_all(fd, buf, len);
            if (r != 0 && r != -EPIPE && r != -ECONNRESET) {
                fprintf(stderr, "%s: mon-garbage: send: %s\n", prog, strerror(-r));
                errors++;
            }
            if (kind != 2) {
                if (drain_until_closed(fd, NULL))
                    closed++;
                else
                    fprintf(stderr, "%s: mon-garbage: the monitor kept a garbage connection\n",
                            prog);
            }
            close(fd);
        }
    }
    printf("mon-garbage: random=%u type7=%u half=%u closed_by_monitor=%u errors=%u\n", sent_random,
           sent_type7, sent_half, closed, errors);
    return closed == sent_random + sent_type7 && errors == 0 ? 0 : 1;
}

/* ---- good: the well-behaved user ---- */

typedef struct good {
    int fd;
    uint64_t ring[GOOD_RING]; /* send times of unanswered shakes, oldest first */
    unsigned head, len;
    uint64_t shakes, replies, got, none, overload, notices, claims, claim_replies, late, max_ms;
} good_t;

static int on_good_frame(void *arg, const hb_frame_t *f)
{
    good_t *g = arg;
    hb_msg_t m;
    if (hb_msg_decode(f, &m) != 0)
        return -1;
    if (m.cmd == HB_CMD_SHAKE_REPLY) {
        if (g->len == 0)
            return -1; /* a reply to nothing */
        uint64_t lat = now_ms() - g->ring[g->head];
        g->head = (g->head + 1) % GOOD_RING;
        g->len--;
        g->replies++;
        if (lat > g->max_ms)
            g->max_ms = lat;
        if (lat > o.bound_ms)
            g->late++;
        if (m.u.shake_reply.result == HB_SHAKE_GOT)
            g->got++;
        else if (m.u.shake_reply.result == HB_SHAKE_OVERLOAD)
            g->overload++;
        else
            g->none++;
    } else if (m.cmd == HB_CMD_NOTICE) {
        uint8_t buf[64];
        g->notices++;
        int n = encode(HB_CMD_CLAIM, 0, m.u.notice.envelope_id, buf, sizeof buf);
        if (send_all(g->fd, buf, (size_t)n) == 0)
            g->claims++;
    } else if (m.cmd == HB_CMD_CLAIM_REPLY) {
        g->claim_replies++;
    }
    return 0;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int run_good(void)
{
    static uint8_t rbuf[65536];
    good_t g;
    memset(&g, 0, sizeof g);
    const char *why = NULL;
    uint64_t start = now_ms();
    g.fd = dial(0);
    if (g.fd < 0) {
        fprintf(stderr, "%s: good: connect: %s\n", prog, strerror(-g.fd));
        return 1;
    }
    int r = login(g.fd, o.user);
    if (r != 0) {
        fprintf(stderr, "%s: good: login: %s\n", prog, r < 0 ? strerror(-r) : "closed");
        close(g.fd);
        return 1;
    }
    uint64_t login_ms = now_ms() - start;
    hb_framer_t fr;
    hb_framer_init(&fr);
    uint64_t next = now_ms(), stop_at = start + o.duration_ms, drain_until = 0;
    for (;;) {
        uint64_t t = now_ms();
        if (drain_until == 0 && (stop_requested || t >= stop_at))
            drain_until = t + o.bound_ms; /* stop shaking; wait for what is outstanding */
        if (drain_until != 0 && (g.len == 0 || t >= drain_until))
            break;
        if (drain_until == 0 && t >= next) {
            uint8_t buf[64];
            if (g.len == GOOD_RING) {
                why = "too many unanswered shakes";
                break;
            }
            int n = encode(HB_CMD_SHAKE, o.user, 0, buf, sizeof buf);
            if (send_all(g.fd, buf, (size_t)n) != 0) {
                why = "send failed: disconnected";
                break;
            }
            g.ring[(g.head + g.len) % GOOD_RING] = t;
            g.len++;
            g.shakes++;
            next += o.interval_ms;
            if (next < t)
                next = t + o.interval_ms;
        }
        uint64_t wake = drain_until != 0 ? drain_until : next;
        int wait = wake > t ? (int)(wake - t) : 0;
        struct pollfd pf = {.fd = g.fd, .events = POLLIN, .revents = 0};
        int pr = poll(&pf, 1, wait);
        if (pr < 0 && errno != EINTR) {
            why = "poll failed";
            break;
        }
        if (pr > 0) {
            ssize_t n = recv(g.fd, rbuf, sizeof rbuf, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                why = "disconnected by the server";
                break;
            }
            if (n > 0 && hb_framer_feed(&fr, rbuf, (size_t)n, on_good_frame, &g) != 0) {
                why = "unexpected frame from the server";
                break;
            }
        }
    }
    hb_framer_reset(&fr);
    close(g.fd);
    uint64_t lost = g.len; /* still unanswered after the bound */
    if (why == NULL && lost > 0)
        why = "replies missing";
    if (why == NULL && g.late > 0)
        why = "late replies";
    if (why == NULL && g.shakes == 0)
        why = "no shake sent";
    printf("good: user=%u seconds=%.1f login_ms=%llu shakes=%llu replies=%llu got=%llu none=%llu "
           "overload=%llu notices=%llu claims=%llu claim_replies=%llu late=%llu lost=%llu "
           "max_ms=%llu bound_ms=%u result=%s\n",
           o.user, (double)(now_ms() - start) / 1000.0, (unsigned long long)login_ms,
           (unsigned long long)g.shakes, (unsigned long long)g.replies, (unsigned long long)g.got,
           (unsigned long long)g.none, (unsigned long long)g.overload,
           (unsigned long long)g.notices, (unsigned long long)g.claims,
           (unsigned long long)g.claim_replies, (unsigned long long)g.late,
           (unsigned long long)lost, (unsigned long long)g.max_ms, o.bound_ms,
           why == NULL ? "ok" : "FAIL");
    if (why != NULL)
        fprintf(stderr, "%s: good: %s\n", prog, why);
    return why == NULL ? 0 : 1;
}

static int run_freeport(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "%s: freeport: %s\n", prog, strerror(errno));
        return 1;
    }
    printf("%u\n", (unsigned)ntohs(sa.sin_port));
    close(fd);
    return 0;
}

/* ---- command line ---- */

static int parse_uint(const char *flag, const char *text, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || v > max) {
        fprintf(stderr, "%s: %s: '%s' is not an integer in [0, %llu]\n", prog, flag, text,
                (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    memset(&o, 0, sizeof o);
    snprintf(o.host, sizeof o.host, "127.0.0.1");
    o.port = 1025;
    o.count = 1;
    o.parallel = 8;
    o.user = 1000;
    o.interval_ms = 50;
    o.bound_ms = 1000;
    o.shakes = 5000;
    o.duration_ms = 120000;
    o.hold_ms = 500;
    o.timeout_s = 60;
    o.seed = 1;
    o.pipeline = 5;
    o.path = "/stats";
    if (argc < 2)
        return -1;
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", prog, a);
            return -1;
        }
        const char *v = argv[++i];
        uint64_t x = 0;
        if (strcmp(a, "--server") == 0) {
            /* dial() connects over IPv4 only. */
            if (hb_addr_parse(v, o.host, sizeof o.host, &o.port) != 0 ||
                hb_addr_family(o.host) != HB_ADDR_IPV4) {
                fprintf(stderr, "%s: --server: '%s' is not IPV4:PORT\n", prog, v);
                return -1;
            }
            continue;
        }
        if (strcmp(a, "--pidfile") == 0) {
            o.pidfile = v;
            continue;
        }
        if (strcmp(a, "--path") == 0 && v[0] == '/' && strpbrk(v, " \r\n") == NULL) {
            o.path = v;
            continue;
        }
        if (strcmp(a, "--token") == 0 && v[0] != '\0' && strpbrk(v, " \r\n") == NULL) {
            o.token = v;
            continue;
        }
        if (parse_uint(a, v, UINT32_MAX, &x) != 0)
            return -1;
        if (strcmp(a, "--count") == 0 && x >= 1 && x <= MAX_CONNS * 16)
            o.count = (unsigned)x;
        else if (strcmp(a, "--parallel") == 0 && x >= 1 && x <= MAX_PARALLEL)
            o.parallel = (unsigned)x;
        else if (strcmp(a, "--user") == 0)
            o.user = (uint32_t)x;
        else if (strcmp(a, "--interval-ms") == 0 && x >= 1)
            o.interval_ms = (unsigned)x;
        else if (strcmp(a, "--bound-ms") == 0 && x >= 1)
            o.bound_ms = (unsigned)x;
        else if (strcmp(a, "--shakes") == 0 && x >= 1)
            o.shakes = (unsigned)x;
        else if (strcmp(a, "--duration-ms") == 0 && x >= 1)
            o.duration_ms = (unsigned)x;
        else if (strcmp(a, "--hold-ms") == 0)
            o.hold_ms = (unsigned)x;
        else if (strcmp(a, "--rate") == 0)
            o.rate = (unsigned)x;
        else if (strcmp(a, "--timeout-s") == 0 && x >= 1)
            o.timeout_s = (unsigned)x;
        else if (strcmp(a, "--seed") == 0)
            o.seed = x;
        else if (strcmp(a, "--pipeline") == 0 && x >= 1 && x <= 32)
            o.pipeline = (unsigned)x;
        else {
            fprintf(stderr, "%s: unknown option or value out of range: %s %s\n", prog, a, v);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    if (o.pidfile != NULL) {
        FILE *f = fopen(o.pidfile, "w");
        if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
            fprintf(stderr, "%s: --pidfile %s: %s\n", prog, o.pidfile, strerror(errno));
            return 2;
        }
    }
    pthread_mutex_init(&tally.lock, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Everything stops by itself: the whole run is bounded (SIGALRM's default action ends it). */
    unsigned limit = o.timeout_s;
    if (strcmp(o.mode, "good") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal; /* no SA_RESTART: poll returns EINTR */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        limit = o.duration_ms / 1000 + o.bound_ms / 1000 + 30;
    }
    alarm(limit);

    static const struct {
        const char *name;
        one_fn fn;
    } parallel_modes[] = {{"midframe", one_midframe},  {"cycle", one_cycle},
                          {"badframe", one_badframe},  {"noread", one_noread},
                          {"flood", one_flood},        {"http-gone", one_http_gone},
                          {"user-gone", one_user_gone}};
    int rc = 0, ran = 0;
    for (size_t k = 0; k < sizeof parallel_modes / sizeof parallel_modes[0]; k++) {
        if (strcmp(o.mode, parallel_modes[k].name) == 0) {
            rc = run_parallel(parallel_modes[k].fn) == 0 ? 0 : 1;
            print_tally();
            if (atomic_load(&tally.errors) != 0)
                rc = 1;
            ran = 1;
        }
    }
    if (ran) {
        pthread_mutex_destroy(&tally.lock);
        return rc;
    }
    if (strcmp(o.mode, "good") == 0) {
        rc = run_good();
    } else if (strcmp(o.mode, "slowloris") == 0) {
        rc = o.count <= MAX_CONNS ? run_slowloris() : 2;
    } else if (strcmp(o.mode, "hold") == 0) {
        rc = o.count <= MAX_CONNS ? run_hold() : 2;
    } else if (strcmp(o.mode, "mon-garbage") == 0) {
        rc = run_mon_garbage();
    } else if (strcmp(o.mode, "freeport") == 0) {
        rc = run_freeport();
    } else {
        fprintf(stderr, "%s: unknown mode '%s'\n", prog, o.mode);
        usage(stderr);
        rc = 2;
    }
    pthread_mutex_destroy(&tally.lock);
    return rc;
}
