/* bare_responder: the ceiling libhongbao is measured against. A libuv server that does the least
 * a server of the reference protocol can do: it answers a login (cmd 0) with a 20-byte login
 * reply and every shake (cmd 2) with the same 28-byte shake reply (result 15, no envelope); every
 * other frame is ignored. No counters, no envelopes, no users, no overload check.
 *
 * It runs the same thread layout as hb-server's default so that the comparison is of the work
 * per request, not of the parallelism: N threads (default: one per core), each with its own
 * libuv loop and its own SO_REUSEPORT listening socket on the same port, each reading every
 * connection into one per-thread buffer and gathering the replies of one read into one
 * uv_try_write.
 *
 *   bare_responder [--listen 127.0.0.1:PORT] [--threads N]
 *
 * Prints "listening on HOST:PORT" once every thread listens; stops on SIGINT/SIGTERM. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define READ_BUF   65536
#define FRAME_MIN  8
#define FRAME_MAX  44
#define OUT_BUF    (READ_BUF / 16 * 28 + 64)
#define MAX_THREAD 64

typedef struct conn {
    uv_tcp_t tcp;
    uint8_t partial_len;
    uint8_t partial[FRAME_MAX];
} conn_t;

typedef struct worker {
    pthread_t thread;
    uv_loop_t loop;
    uv_tcp_t listener;
    int fd;
    char in[READ_BUF];
    uint8_t out[OUT_BUF];
    size_t out_len;
    uint64_t now_s;
} worker_t;

typedef struct wreq {
    uv_write_t req;
    uint8_t data[];
} wreq_t;

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Append the reply to one whole frame to the worker's gather buffer. */
static void answer(worker_t *w, const uint8_t *f, size_t len)
{
    uint16_t cmd = (uint16_t)(f[2] << 8 | f[3]);
    uint8_t *o = w->out + w->out_len;
    if (cmd == 0 && len == 16) { /* login -> login reply: user, result 0 */
        put16(o, 20);
        put16(o + 2, 1);
        put64(o + 4, w->now_s);
        put32(o + 12, get32(f + 12));
        put32(o + 16, 0);
        w->out_len += 20;
    } else if (cmd == 2 && len == 16) { /* shake -> shake reply: user 0, result 15, 0, 0 */
        put16(o, 28);
        put16(o + 2, 3);
        put64(o + 4, w->now_s);
        put32(o + 12, 0);
        put32(o + 16, 15);
        put32(o + 20, 0);
        put32(o + 24, 0);
        w->out_len += 28;
    }
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_write(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void flush(worker_t *w, conn_t *c)
{
    if (w->out_len == 0)
        return;
    uv_buf_t b = uv_buf_init((char *)w->out, (unsigned)w->out_len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)w->out_len || (n < 0 && n != UV_EAGAIN)) {
        if (n < 0)
            conn_close(c);
        w->out_len = 0;
        return;
    }
    size_t off = n > 0 ? (size_t)n : 0, rest = w->out_len - off;
    wreq_t *q = malloc(sizeof *q + rest);
    w->out_len = 0;
    if (q == NULL) {
        conn_close(c);
        return;
    }
    memcpy(q->data, w->out + off, rest);
    b = uv_buf_init((char *)q->data, (unsigned)rest);
    if (uv_write(&q->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(q);
        conn_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    worker_t *w = h->loop->data;
    *buf = uv_buf_init(w->in, sizeof w->in);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = (conn_t *)s;
    worker_t *w = s->loop->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    w->now_s = (uint64_t)time(NULL);
    w->out_len = 0;
    /* Complete a frame split by the previous read. */
    while (c->partial_len > 0 && left > 0) {
        size_t need = c->partial_len < 2 ? 2 : (size_t)(c->partial[0] << 8 | c->partial[1]);
        if (need < FRAME_MIN || need > FRAME_MAX) {
            conn_close(c);
            return;
        }
        size_t take = need - c->partial_len < left ? need - c->partial_len : left;
        memcpy(c->partial + c->partial_len, p, take);
        c->partial_len = (uint8_t)(c->partial_len + take);
        p += take;
        left -= take;
        if (c->partial_len >= 2 && c->partial_len == (size_t)(c->partial[0] << 8 | c->partial[1])) {
            answer(w, c->partial, c->partial_len);
            c->partial_len = 0;
        }
    }
    while (left >= 2) {
        size_t len = (size_t)(p[0] << 8 | p[1]);
        if (len < FRAME_MIN || len > FRAME_MAX) {
            conn_close(c);
            return;
        }
        if (len > left)
            break;
        if (w->out_len + 28 > sizeof w->out)
            flush(w, c);
        answer(w, p, len);
        p += len;
        left -= len;
    }
    if (left > 0) {
        memcpy(c->partial, p, left);
        c->partial_len = (uint8_t)left;
    }
    flush(w, c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status != 0)
        return;
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void *run_worker(void *arg)
{
    worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int open_listener(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 4096) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    char host[64] = "127.0.0.1";
    int port = 0;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            const char *colon = strrchr(argv[++i], ':');
            if (colon == NULL || (size_t)(colon - argv[i]) >= sizeof host) {
                fprintf(stderr, "bare_responder: --listen HOST:PORT\n");
                return 2;
            }
            memcpy(host, argv[i], (size_t)(colon - argv[i]));
            host[colon - argv[i]] = '\0';
            port = atoi(colon + 1);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atol(argv[++i]);
        } else {
            fprintf(stderr, "usage: bare_responder [--listen HOST:PORT] [--threads N]\n");
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREAD)
        threads = MAX_THREAD;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sockaddr_in addr;
    if (uv_ip4_addr(host, port, &addr) != 0) {
        fprintf(stderr, "bare_responder: bad address %s\n", host);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    static worker_t workers[MAX_THREAD];
    for (long t = 0; t < threads; t++) {
        worker_t *w = &workers[t];
        w->fd = open_listener(&addr);
        if (w->fd < 0) {
            fprintf(stderr, "bare_responder: listen %s:%d: %s\n", host, port, strerror(errno));
            return 1;
        }
        if (port == 0) { /* the first socket picked a port: the others share it */
            struct sockaddr_in got;
            socklen_t len = sizeof got;
            getsockname(w->fd, (struct sockaddr *)&got, &len);
            port = ntohs(got.sin_port);
            addr.sin_port = got.sin_port;
        }
        uv_loop_init(&w->loop);
        w->loop.data = w;
        uv_tcp_init(&w->loop, &w->listener);
        if (uv_tcp_open(&w->listener, w->fd) != 0 ||
            uv_listen((uv_stream_t *)&w->listener, 4096, on_connection) != 0) {
            fprintf(stderr, "bare_responder: cannot listen\n");
            return 1;
        }
    }
    for (long t = 0; t < threads; t++)
        pthread_create(&workers[t].thread, NULL, run_worker, &workers[t]);
    printf("bare_responder: listening on %s:%d with %ld threads\n", host, port, threads);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    while (sig == SIGPIPE)
        sigwait(&set, &sig);
    fprintf(stderr, "bare_responder: stopped\n");
    return 0; /* the process ends with its threads; the kernel closes every socket */
}
