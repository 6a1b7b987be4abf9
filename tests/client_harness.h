/* The client tests' harness (tests/client_harness.c): one loop on the test's thread that the
 * client, in-process servers and scripted peers share, run until a condition holds, and a check
 * at teardown that no handle is left. */
#ifndef CLIENT_HARNESS_H
#define CLIENT_HARNESS_H

#include <stdint.h>

#include <uv.h>

extern uv_loop_t loop;
/* The timer run_until watches with: initialised by the test with the loop (uv_timer_init), closed
 * by loop_finish. */
extern uv_timer_t watch;

/* Run the loop until cond() holds (checked every 5 ms) or timeout_ms passes; returns cond(). */
int run_until(int (*cond)(void), uint64_t timeout_ms);

/* A uv_walk callback that fails the test: a handle was left open. */
void fail_on_handle(uv_handle_t *h, void *arg);

/* Close the watch timer, run the loop out, check that no handle is left, close the loop. */
void loop_finish(void);

/* A TCP socket bound to a free port of 127.0.0.1 (*port), not listening yet. */
int loopback_socket(int *port);

/* A port of 127.0.0.1 nobody listens on: bound, then let go. */
int loopback_dead_port(void);

#endif /* CLIENT_HARNESS_H */
