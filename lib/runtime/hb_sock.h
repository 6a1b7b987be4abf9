/* TCP sockets on a libuv loop, the one socket I/O path of the library's network code: a uv_poll_t
 * around a non-blocking socket, reads into a buffer the owner supplies, writes with send(...,
 * MSG_NOSIGNAL) that can never raise SIGPIPE, one bounded output queue per socket, a lingering
 * close after the queue drains, non-blocking connects and accepting listeners. Internal: not
 * installed. Everything runs on the loop's thread. */
#ifndef HB_SOCK_H
#define HB_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <uv.h>

typedef struct hb_sock hb_sock_t;

/* What the owner of a socket is told. Shared by every socket of one kind (a static table), so a
 * socket carries one pointer for all of them. */
typedef struct hb_sock_ops {
    /* Supply the buffer the next read lands in (a per-loop buffer is fine: read follows at once);
     * buf->len 0 stops this round of reading. Required when the socket reads. */
    void (*alloc)(hb_sock_t *s, uv_buf_t *buf);
    /* nread > 0 bytes arrived in buf; UV_EOF: the peer finished sending; another negative code: a
     * socket error (UV_ECONNRESET...). The socket stays open: the owner closes it. A read callback
     * may close the socket or stop reading; no further read callback follows then. */
    void (*read)(hb_sock_t *s, ssize_t nread, const uv_buf_t *buf);
    /* Optional: queued output was all written (not called when a write went out at once). */
    void (*drained)(hb_sock_t *s);
    /* Optional: writing the queue failed (the peer reset, ...): the socket should be closed; no
     * more output is taken. When NULL the socket is closed with close_cb. */
    void (*write_error)(hb_sock_t *s, int err);
    /* hb__sock_connect's outcome: 0, or the connect error (the socket must then be closed). */
    void (*connected)(hb_sock_t *s, int status);
    /* Called once the socket has closed (from hb__sock_close or a lingering close), after which
     * its memory may be freed. */
    void (*closed)(hb_sock_t *s);
    /* Optional: part of the queued output was written and some is still queued (hb__sock_queued
     * says how much); drained follows once all of it is. Not called during hb__sock_end. For an
     * owner that resumes work below a low-water mark, or counts what reached the kernel. */
    void (*progress)(hb_sock_t *s);
} hb_sock_ops_t;

/* Caller-owned; about 200 bytes. poll.data is the owner's: the library never touches it. */
struct hb_sock {
    uv_poll_t poll;
    const hb_sock_ops_t *ops;
    uint8_t *out;     /* queued output not yet taken by the kernel; NULL when empty */
    uint32_t out_off; /* out[out_off .. out_len) is still to write */
    uint32_t out_len;
    uint32_t out_cap;
    uint32_t max_out; /* queued bytes past which a write fails with UV_ENOBUFS */
    int fd;
    uint16_t flags; /* private */
};

/* Start a socket on loop around fd (connected, owned from now on: closed by hb__sock_close, also
 * on error). Sets O_NONBLOCK and, unless no_delay is 0, TCP_NODELAY. max_out 0 means 256 KiB.
 * Returns 0 or a UV_E* error (fd closed then; nothing else to close). */
int hb__sock_open(uv_loop_t *loop, hb_sock_t *s, int fd, const hb_sock_ops_t *ops, uint32_t max_out,
                  int no_delay);

/* Start or stop delivering reads (ops->alloc then ops->read). Returns 0 or a uv_poll error. */
int hb__sock_read_start(hb_sock_t *s);
int hb__sock_read_stop(hb_sock_t *s);

/* Write len bytes: what the kernel takes now, the rest copied to the socket's queue, written as
 * the peer reads. Never raises SIGPIPE. Returns 0; UV_ENOBUFS when the queue would pass
 * max_out (nothing queued: a peer that does not read); UV_ENOMEM; the send error (UV_EPIPE,
 * UV_ECONNRESET...) when the peer is gone; UV_ECANCELED after close or end. On error the owner
 * should close the socket. */
int hb__sock_write(hb_sock_t *s, const void *data, size_t len);

/* As hb__sock_write for n buffers, written with one sendmsg. */
int hb__sock_writev(hb_sock_t *s, const uv_buf_t *bufs, unsigned n);

/* Bytes waiting in the queue. */
static inline size_t hb__sock_queued(const hb_sock_t *s)
{
    return s->out_len - s->out_off;
}

/* A graceful close: stop delivering reads, write what is queued, shut the sending side down, then
 * read and discard until the peer's EOF (so unread input does not turn our last bytes into a
 * reset), then close and call ops->closed. The owner bounds the wait with its own timer (and
 * hb__sock_close). Harmless after close. */
void hb__sock_end(hb_sock_t *s);

/* Close now (queued output is dropped) and call ops->closed from the loop. Harmless twice. */
void hb__sock_close(hb_sock_t *s);

/* Whether hb__sock_close (or the end of hb__sock_end) has begun. */
int hb__sock_closing(const hb_sock_t *s);

/* Connect to `to` from `from` (NULL: the kernel's choice; with a port of 0 the source port is
 * chosen at connect time, IP_BIND_ADDRESS_NO_PORT, so many source addresses can each hold 64k
 * connections). ops->connected reports the outcome. Returns 0, or a UV_E* error after which
 * connected is not called; once the socket was created (any error but one from socket()) it must
 * still be closed with hb__sock_close: hb__sock_connect_started tells. */
int hb__sock_connect(uv_loop_t *loop, hb_sock_t *s, const hb_sock_ops_t *ops,
                     const struct sockaddr *to, const struct sockaddr *from, uint32_t max_out);
int hb__sock_connect_started(const hb_sock_t *s);

/* ---- addresses and listeners ---- */

/* host (an IPv4 or IPv6 literal) and port into *ss; returns 0 or UV_EINVAL. */
int hb__sock_addr(const char *host, int port, struct sockaddr_storage *ss);

/* The length of *sa for bind/connect (IPv4 or IPv6). */
socklen_t hb__sock_addr_len(const struct sockaddr *sa);

/* *sa as "IP:PORT" text, "[IP]:PORT" for IPv6, the IP as inet_ntop writes it (one text for one
 * address, however it was written); "?" for another family. Truncated to size, NUL included. */
void hb__sock_addr_name(const struct sockaddr *sa, char *out, size_t size);

/* A listening socket on host:port (port 0: any free port; *port_out gets the bound one), with
 * SO_REUSEADDR and, only when reuse_port is set, SO_REUSEPORT (which lets other processes of the
 * same user bind the same port and share its connections). Returns 0 with *fd_out, or UV_EINVAL
 * (host not an IP literal) or the failing call's error (UV_EADDRINUSE...). */
int hb__sock_listen_fd(const char *host, int port, int backlog, int reuse_port, int *fd_out,
                       int *port_out);

typedef struct hb_listener hb_listener_t;

/* A new connection's fd (non-blocking, close-on-exec; the callee owns it), or a negative error
 * of accept (UV_EMFILE: the connection was taken and closed for lack of descriptors). */
typedef void (*hb_listener_cb)(hb_listener_t *l, int fd);

struct hb_listener {
    uv_poll_t poll; /* poll.data is the owner's */
    hb_listener_cb on_accept;
    void (*closed)(hb_listener_t *l);
    int fd;
    int reserve_fd; /* kept open to be given up when descriptors run out */
    uint8_t owns_fd, inited, closing;
};

/* Accept on fd from loop. Several loops may each run a listener on the same fd (the kernel hands
 * each connection to one of them); with owns_fd the fd is closed with the listener. Returns 0 or a
 * uv_poll error; either way the listener is closed with hb__listener_close. */
int hb__listener_start(uv_loop_t *loop, hb_listener_t *l, int fd, int owns_fd,
                       hb_listener_cb on_accept);

/* Stop accepting and close; closed (if not NULL) is called from the loop. */
void hb__listener_close(hb_listener_t *l, void (*closed)(hb_listener_t *l));

/* The port fd is bound to, or a negative error. */
int hb__sock_local_port(int fd);

#endif /* HB_SOCK_H */
