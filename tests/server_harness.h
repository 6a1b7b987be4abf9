/* The server tests' harness (tests/server_harness.c): a server on an ephemeral loopback port, its
 * control loop in a thread of the test, and users as plain blocking sockets. */
#ifndef SERVER_HARNESS_H
#define SERVER_HARNESS_H

#include <check.h>
#include <stdint.h>
#include <unistd.h>

#include "hongbao.h"

typedef struct harness {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t call_async;
    uv_mutex_t lock;
    uv_cond_t cond;
    void (*fn)(void *);
    void *arg;
    int done;
    hb_server_t server;
    int closed;
} harness_t;

extern harness_t H;

/* The control loop's async callback that runs on_loop's functions (for tests that start a server
 * by hand). */
void on_call(uv_async_t *a);
/* Run fn(arg) on the control loop's thread and wait for it. */
void on_loop(void (*fn)(void *), void *arg);
void loop_thread(void *arg);
/* Start a server (2 threads, 4 SETs unless extra says otherwise; port 0; seed 42). */
void start_server(const hb_server_options_t *extra);
/* The same, calling prepare(server, arg) between hb_server_init and hb_server_start (to register
 * handlers and counter slots). */
void start_server_with(const hb_server_options_t *extra, void (*prepare)(hb_server_t *, void *),
                       void *arg);
void on_closed(hb_server_t *s);
void do_close(void *arg);
/* Close the server and check that its loop ends with no handle left. */
void stop_server(void);

int user_connect(void);
void send_all(int fd, const void *buf, size_t len);
void send_msg(int fd, const hb_msg_t *m);
/* Read exactly len bytes within 5 s; returns 0, or -1 on EOF/error/timeout. */
int recv_exact(int fd, uint8_t *buf, size_t len);
/* Receive one whole frame and decode it (raw, if not NULL, gets its bytes). */
void recv_msg(int fd, hb_msg_t *m, uint8_t *raw);
/* The peer closes: recv returns 0 (or a reset) within 5 s, with no frame in between. */
int closed_by_peer(int fd);
/* Connect and log user in; returns the socket. */
int login(uint32_t user);
/* Connect and try to log user in: the login reply must say no (result 1), then the server must
 * close the connection. */
void login_refused(uint32_t user);
hb_msg_t shake(int fd, uint32_t user);
/* n shakes of user in one write. */
void send_shakes(int fd, uint32_t user, int n);
/* A reference claim and its reply. */
hb_msg_t claim(int fd, uint32_t payload_user, uint32_t envelope);
/* A counter slot's cumulative total now. */
uint64_t counter(unsigned slot);

/* Serve the server's control routes (hb_server_mount_http) on an ephemeral loopback port, and
 * stop. */
void http_mount(void);
void http_unmount(void);
/* One GET on a fresh connection to it; returns the status and copies the body (NUL-terminated). */
int http_get(const char *target, char *body, size_t cap);

/* Wait (bounded) for a condition the server reaches asynchronously. */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        for (int wait_i_ = 0; wait_i_ < 5000 && !(cond); wait_i_++)                                \
            usleep(1000);                                                                          \
        ck_assert(cond);                                                                           \
    } while (0)

#endif /* SERVER_HARNESS_H */
