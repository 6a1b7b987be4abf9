/* TCP sockets through uv_poll: non-blocking reads and MSG_NOSIGNAL writes with one bounded queue,
 * lingering close, connect and accept. See hb_sock.h. */
#define _GNU_SOURCE /* accept4 */
#include "hb_sock.h"

#include "hongbao/common.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* The core names system errors without libuv (hongbao/common.h): the same numbers as libuv's. */
_Static_assert(HB_EINVAL == UV_EINVAL && HB_ENOMEM == UV_ENOMEM && HB_ENOBUFS == UV_ENOBUFS &&
                   HB_EEXIST == UV_EEXIST && HB_ENOENT == UV_ENOENT && HB_EBUSY == UV_EBUSY &&
                   HB_EIO == UV_EIO && HB_ENOTSUP == UV_ENOTSUP && HB_ETIMEDOUT == UV_ETIMEDOUT &&
                   HB_EAGAIN == UV_EAGAIN && HB_ECANCELED == UV_ECANCELED && HB_EPERM == UV_EPERM,
               "HB_E* system errors must equal libuv's UV_E*");

#define DEFAULT_MAX_OUT  (256u * 1024u)
#define READS_PER_EVENT  16 /* a busy peer cannot hold the loop longer than this */
#define ACCEPTS_PER_WAKE 64
#define MIN_QUEUE        256

enum {
    F_STARTED = 1 << 0,    /* the poll handle is initialised: close it */
    F_READING = 1 << 1,    /* the owner wants reads */
    F_CONNECTING = 1 << 2, /* a connect is in progress */
    F_ENDING = 1 << 3,     /* hb__sock_end: shut down once the queue drains */
    F_LINGER = 1 << 4,     /* sending side shut: discard input until EOF */
    F_CLOSING = 1 << 5,    /* uv_close called */
    F_BROKEN = 1 << 6,     /* a write failed: no more output */
    F_POLL_R = 1 << 7,     /* the poll handle watches these now */
    F_POLL_W = 1 << 8,
};

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static void on_poll(uv_poll_t *p, int status, int events);

/* Make the poll handle watch what the socket's state needs. */
static int update_poll(hb_sock_t *s)
{
    if (s->flags & F_CLOSING)
        return 0;
    int want = 0;
    if (s->flags & F_CONNECTING)
        want = UV_WRITABLE;
    else {
        if (s->flags & (F_READING | F_LINGER))
            want |= UV_READABLE;
        if (hb__sock_queued(s) > 0 && !(s->flags & F_BROKEN))
            want |= UV_WRITABLE;
    }
    int have =
        ((s->flags & F_POLL_R) ? UV_READABLE : 0) | ((s->flags & F_POLL_W) ? UV_WRITABLE : 0);
    if (want == have)
        return 0;
    int r = want ? uv_poll_start(&s->poll, want, on_poll) : uv_poll_stop(&s->poll);
    if (r != 0)
        return r;
    s->flags =
        (uint16_t)((s->flags & ~(F_POLL_R | F_POLL_W)) | ((want & UV_READABLE) ? F_POLL_R : 0) |
                   ((want & UV_WRITABLE) ? F_POLL_W : 0));
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    hb_sock_t *s = (hb_sock_t *)h;
    free(s->out);
    s->out = NULL;
    s->out_off = s->out_len = s->out_cap = 0;
    if (s->ops->closed != NULL)
        s->ops->closed(s);
}

void hb__sock_close(hb_sock_t *s)
{
    if (s->flags & F_CLOSING)
        return;
    s->flags |= F_CLOSING;
    if (s->flags & F_STARTED) {
        /* uv_close stops watching the fd at once, so the descriptor goes back now (as libuv's
         * own streams do): a burst of refused connections never holds descriptors for a loop
         * turn. */
        uv_close((uv_handle_t *)&s->poll, on_closed);
        close(s->fd);
        s->fd = -1;
    } else {
        /* Never started: nothing on the loop, report at once. */
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        if (s->ops->closed != NULL)
            s->ops->closed(s);
    }
}

int hb__sock_closing(const hb_sock_t *s)
{
    return (s->flags & F_CLOSING) != 0;
}

static int sock_error(int fd, int fallback)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -errno;
    return err != 0 ? -err : fallback;
}

/* The queue could not be written: tell the owner (or close). */
static void fail_output(hb_sock_t *s, int err)
{
    s->flags |= F_BROKEN;
    if (s->flags & (F_ENDING | F_LINGER) || s->ops->write_error == NULL)
        hb__sock_close(s);
    else
        s->ops->write_error(s, err);
}

/* Shut the sending side and discard input until the peer's EOF. */
static void start_linger(hb_sock_t *s)
{
    s->flags &= (uint16_t) ~(F_ENDING | F_READING);
    if (shutdown(s->fd, SHUT_WR) != 0) {
        hb__sock_close(s);
        return;
    }
    s->flags |= F_LINGER;
    if (update_poll(s) != 0)
        hb__sock_close(s);
}

/* Write what the kernel takes of the queue. Returns 0 or the send error. */
static int flush_queue(hb_sock_t *s)
{
    while (hb__sock_queued(s) > 0) {
        ssize_t n =
            send(s->fd, s->out + s->out_off, hb__sock_queued(s), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        s->out_off += (uint32_t)n;
    }
    /* Drained: give the memory back, an idle connection holds none. */
    free(s->out);
    s->out = NULL;
    s->out_off = s->out_len = s->out_cap = 0;
    return 0;
}

static void on_writable(hb_sock_t *s)
{
    size_t before = hb__sock_queued(s);
    int err = flush_queue(s);
    if (err != 0) {
        fail_output(s, err);
        return;
    }
    if (hb__sock_queued(s) > 0) {
        if (hb__sock_queued(s) < before && !(s->flags & F_ENDING) && s->ops->progress != NULL)
            s->ops->progress(s);
        return;
    }
    if (s->flags & F_ENDING) {
        start_linger(s);
        return;
    }
    if (update_poll(s) != 0) {
        fail_output(s, UV_EIO);
        return;
    }
    if (s->ops->drained != NULL)
        s->ops->drained(s);
}

static void on_readable(hb_sock_t *s)
{
    for (int i = 0; i < READS_PER_EVENT; i++) {
        if (s->flags & F_LINGER) {
            char sink[4096];
            ssize_t n = recv(s->fd, sink, sizeof sink, 0);
            if (n > 0)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            hb__sock_close(s); /* EOF or an error: the linger is over */
            return;
        }
        if (!(s->flags & F_READING) || (s->flags & F_CLOSING))
            return;
        uv_buf_t buf = uv_buf_init(NULL, 0);
        s->ops->alloc(s, &buf);
        if (buf.len == 0)
            return;
        ssize_t n = recv(s->fd, buf.base, buf.len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            s->ops->read(s, -errno, &buf);
            return;
        }
        if (n == 0) {
            s->ops->read(s, UV_EOF, &buf);
            return;
        }
        s->ops->read(s, n, &buf);
        if ((size_t)n < buf.len)
            return; /* drained for now; level-triggered polling calls again */
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    hb_sock_t *s = (hb_sock_t *)p;
    if (s->flags & F_CLOSING)
        return;
    if (status < 0) {
        /* libuv stopped the handle on POLLERR: the socket has a pending error. */
        s->flags &= (uint16_t) ~(F_POLL_R | F_POLL_W);
        int err = sock_error(s->fd, UV_ECONNRESET);
        if (s->flags & F_CONNECTING) {
            s->flags &= (uint16_t)~F_CONNECTING;
            s->ops->connected(s, err);
        } else if (s->flags & (F_LINGER | F_ENDING)) {
            hb__sock_close(s);
        } else if (s->flags & F_READING) {
            uv_buf_t none = uv_buf_init(NULL, 0);
            s->ops->read(s, err, &none);
        } else {
            fail_output(s, err);
        }
        return;
    }
    if (s->flags & F_CONNECTING) {
        int err = sock_error(s->fd, 0);
        s->flags &= (uint16_t)~F_CONNECTING;
        if (err == 0 && update_poll(s) != 0)
            err = UV_EIO;
        s->ops->connected(s, err);
        return;
    }
    if ((events & UV_WRITABLE) && hb__sock_queued(s) > 0) {
        on_writable(s);
        if (s->flags & F_CLOSING)
            return;
    }
    if (events & (UV_READABLE | UV_DISCONNECT))
        on_readable(s);
}

static int start_handle(uv_loop_t *loop, hb_sock_t *s, int fd, const hb_sock_ops_t *ops,
                        uint32_t max_out)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->ops = ops;
    s->max_out = max_out != 0 ? max_out : DEFAULT_MAX_OUT;
    int r = uv_poll_init_socket(loop, &s->poll, fd);
    if (r != 0)
        return r;
    s->flags = F_STARTED;
    return 0;
}

int hb__sock_open(uv_loop_t *loop, hb_sock_t *s, int fd, const hb_sock_ops_t *ops, uint32_t max_out,
                  int no_delay)
{
    int one = 1;
    if (no_delay)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = start_handle(loop, s, fd, ops, max_out);
    if (r != 0)
        close(fd);
    return r;
}

int hb__sock_read_start(hb_sock_t *s)
{
    if (s->flags & (F_CLOSING | F_ENDING | F_LINGER))
        return UV_EINVAL;
    s->flags |= F_READING;
    return update_poll(s);
}

int hb__sock_read_stop(hb_sock_t *s)
{
    s->flags &= (uint16_t)~F_READING;
    return update_poll(s);
}

/* Copy bufs (skipping the first `skip` bytes) onto the queue. */
static int enqueue(hb_sock_t *s, const uv_buf_t *bufs, unsigned n, size_t skip, size_t total)
{
    size_t add = total - skip;
    if (add == 0)
        return 0;
    if ((uint64_t)hb__sock_queued(s) + add > s->max_out)
        return UV_ENOBUFS;
    if (s->out_off > 0 && s->out_len + add > s->out_cap) {
        /* Reuse the room already written. */
        memmove(s->out, s->out + s->out_off, hb__sock_queued(s));
        s->out_len -= s->out_off;
        s->out_off = 0;
    }
    if (s->out_len + add > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : MIN_QUEUE;
        while (cap < s->out_len + add)
            cap *= 2;
        if (cap > s->max_out)
            cap = s->max_out;
        uint8_t *bigger = realloc(s->out, cap);
        if (bigger == NULL)
            return UV_ENOMEM;
        s->out = bigger;
        s->out_cap = (uint32_t)cap;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        const char *base = bufs[i].base;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(s->out + s->out_len, base + skip, len - skip);
        s->out_len += (uint32_t)(len - skip);
        skip = 0;
    }
    return update_poll(s);
}

/* Send bufs now, as much as the kernel takes: the bytes it took (0: none now), or a negative
 * error. One buffer goes by send, which spares the kernel sendmsg's header and vector. */
static ssize_t send_now(int fd, const uv_buf_t *bufs, unsigned n)
{
    ssize_t w;
    if (n == 1) {
        do
            w = send(fd, bufs[0].base, bufs[0].len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (w < 0 && errno == EINTR);
    } else {
        struct iovec iov[8];
        for (unsigned i = 0; i < n; i++) {
            iov[i].iov_base = bufs[i].base;
            iov[i].iov_len = bufs[i].len;
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = n;
        do
            w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (w < 0 && errno == EINTR);
    }
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    return w;
}

int hb__sock_writev(hb_sock_t *s, const uv_buf_t *bufs, unsigned n)
{
    if (s->flags & (F_CLOSING | F_ENDING | F_LINGER | F_BROKEN | F_CONNECTING))
        return UV_ECANCELED;
    if (n > 8)
        n = 8; /* callers pass a few buffers; more would be a programming error */
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    size_t sent = 0;
    if (hb__sock_queued(s) == 0) {
        ssize_t w = send_now(s->fd, bufs, n);
        if (w < 0)
            return (int)w;
        sent = (size_t)w;
        if (sent == total)
            return 0;
    }
    return enqueue(s, bufs, n, sent, total);
}

int hb__sock_write(hb_sock_t *s, const void *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return hb__sock_writev(s, &b, 1);
}

void hb__sock_end(hb_sock_t *s)
{
    if (s->flags & (F_CLOSING | F_ENDING | F_LINGER))
        return;
    s->flags &= (uint16_t)~F_READING;
    if (s->flags & (F_BROKEN | F_CONNECTING)) {
        hb__sock_close(s);
        return;
    }
    if (hb__sock_queued(s) > 0) {
        s->flags |= F_ENDING;
        if (update_poll(s) != 0)
            hb__sock_close(s);
        return;
    }
    start_linger(s);
}

int hb__sock_connect(uv_loop_t *loop, hb_sock_t *s, const hb_sock_ops_t *ops,
                     const struct sockaddr *to, const struct sockaddr *from, uint32_t max_out)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    int fd = socket(to->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = start_handle(loop, s, fd, ops, max_out);
    if (r != 0) {
        close(fd);
        s->fd = -1;
        return r;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (from != NULL) {
        if (from->sa_family == AF_INET && ((const struct sockaddr_in *)from)->sin_port == 0)
            (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, from, hb__sock_addr_len(from)) != 0)
            return -errno;
    }
    if (connect(fd, to, hb__sock_addr_len(to)) != 0 && errno != EINPROGRESS)
        return -errno;
    /* Even a connect that finished at once is reported from the loop, through writability. */
    s->flags |= F_CONNECTING;
    return update_poll(s);
}

int hb__sock_connect_started(const hb_sock_t *s)
{
    return (s->flags & F_STARTED) != 0;
}

/* ---- addresses and listeners ---- */

int hb__sock_addr(const char *host, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (host == NULL || port < 0 || port > 65535)
        return UV_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    memset(ss, 0, sizeof *ss);
    return UV_EINVAL;
}

socklen_t hb__sock_addr_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

void hb__sock_addr_name(const struct sockaddr *sa, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, size, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, size, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else {
        snprintf(out, size, "?");
    }
}

int hb__sock_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -errno;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

int hb__sock_listen_fd(const char *host, int port, int backlog, int reuse_port, int *fd_out,
                       int *port_out)
{
    struct sockaddr_storage ss;
    if (hb__sock_addr(host, port, &ss) != 0)
        return UV_EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&ss, hb__sock_addr_len((struct sockaddr *)&ss)) != 0 ||
        listen(fd, backlog) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (port_out != NULL) {
        int p = hb__sock_local_port(fd);
        if (p < 0) {
            close(fd);
            return p;
        }
        *port_out = p;
    }
    *fd_out = fd;
    return 0;
}

static void on_listener_poll(uv_poll_t *p, int status, int events)
{
    hb_listener_t *l = (hb_listener_t *)p;
    (void)events;
    if (status < 0) {
        l->on_accept(l, status);
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            l->on_accept(l, fd);
            if (l->closing)
                return;
            continue;
        }
        int err = errno;
        if (err == EINTR || err == ECONNABORTED)
            continue;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return;
        if ((err == EMFILE || err == ENFILE) && l->reserve_fd >= 0) {
            /* Out of descriptors: free the reserve to take the connection off the queue and close
             * it, so the peer hears at once instead of the listener spinning. */
            close(l->reserve_fd);
            int victim = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
            if (victim >= 0)
                close(victim);
            l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        l->on_accept(l, -err);
        return;
    }
}

int hb__listener_start(uv_loop_t *loop, hb_listener_t *l, int fd, int owns_fd,
                       hb_listener_cb on_accept)
{
    void *data = l->poll.data;
    memset(l, 0, sizeof *l);
    l->fd = fd;
    l->owns_fd = owns_fd;
    l->on_accept = on_accept;
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int r = uv_poll_init_socket(loop, &l->poll, fd);
    if (r != 0)
        return r;
    l->inited = 1;
    l->poll.data = data;
    return uv_poll_start(&l->poll, UV_READABLE, on_listener_poll);
}

static void on_listener_closed(uv_handle_t *h)
{
    hb_listener_t *l = (hb_listener_t *)h;
    if (l->owns_fd && l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    if (l->reserve_fd >= 0)
        close(l->reserve_fd);
    l->reserve_fd = -1;
    if (l->closed != NULL)
        l->closed(l);
}

void hb__listener_close(hb_listener_t *l, void (*closed)(hb_listener_t *l))
{
    if (l->closing)
        return;
    l->closing = 1;
    l->closed = closed;
    if (l->inited)
        uv_close((uv_handle_t *)&l->poll, on_listener_closed);
    else
        on_listener_closed((uv_handle_t *)&l->poll);
}
