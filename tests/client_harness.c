/* The client tests' harness: one loop on the test's thread, run until a condition holds. */
#include "client_harness.h"

#include <check.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

uv_loop_t loop;
uv_timer_t watch;
static int (*done_when)(void);

static void on_watch(uv_timer_t *t)
{
    if (done_when())
        uv_stop(t->loop);
}

int run_until(int (*cond)(void), uint64_t timeout_ms)
{
    done_when = cond;
    uint64_t end = uv_now(&loop) + timeout_ms;
    uv_timer_start(&watch, on_watch, 5, 5);
    while (!cond() && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&watch);
    return cond();
}

void fail_on_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    ck_abort_msg("handle of type %s left open", uv_handle_type_name(h->type));
}

void loop_finish(void)
{
    uv_close((uv_handle_t *)&watch, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, fail_on_handle, NULL);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

int loopback_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

int loopback_dead_port(void)
{
    int port;
    close(loopback_socket(&port));
    return port;
}
