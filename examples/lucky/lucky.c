/* lucky: a red-envelope service of one's own on libhongbao. It speaks the reference protocol
 * (login, shake, claim) with amounts of its own choosing, and adds a command of its own: DRAW
 * (0x4001, payload a u32 guess 0..9), answered with DRAWN (0x4002: the digit drawn and whether the
 * guess won, u32 each). Draws and wins count in two application counters, shown with the
 * server's own in /metrics on the control port. docs/embedding.md walks through it.
 *
 *   cc -o lucky lucky.c $(pkg-config --cflags --libs hongbao)
 *   ./lucky [USER_PORT [CONTROL_PORT]]       (127.0.0.1; 7000 and 7001 by default) */
#include <hongbao.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define CMD_DRAW  0x4001
#define CMD_DRAWN 0x4002
#define CTR_DRAWS HB_CTR_APP_0
#define CTR_WINS  HB_CTR_APP_1

static hb_server_t server;
static hb_http_server_t control;
static uv_signal_t sigint, sigterm;

/* A worker thread, for each DRAW: every connection draws from a generator of its own. */
static int on_draw(hb_conn_t *conn, const hb_frame_t *frame, void *arg)
{
    (void)arg;
    if (frame->payload_len != 4)
        return HB_EBADSIZE; /* closes the connection, counted in bad_frames */
    hb_rand_t *rng = hb_conn_data(conn);
    if (rng == NULL) {
        if ((rng = malloc(sizeof *rng)) == NULL)
            return UV_ENOMEM;
        hb_rand_seed(rng, uv_hrtime() ^ hb_conn_user(conn));
        hb_conn_set_data(conn, rng);
    }
    uint32_t digit = (uint32_t)hb_rand_below(rng, 10);
    uint32_t won = hb_get_u32(frame->payload) == digit;
    hb_conn_count(conn, CTR_DRAWS, 1);
    hb_conn_count(conn, CTR_WINS, won);
    uint8_t payload[8], reply[HB_FRAME_HEADER + sizeof payload];
    hb_put_u32(payload, digit);
    hb_put_u32(payload + 4, won);
    hb_msg_t m = {.cmd = CMD_DRAWN, .timestamp = frame->timestamp, .u.app = {8, payload}};
    int n = hb_msg_encode(&m, reply, sizeof reply);
    return n < 0 ? n : hb_conn_send(conn, reply, (size_t)n);
}

/* A worker thread, as a connection that logged in leaves: free its generator. */
static void on_conn_close(hb_conn_t *conn, void *arg)
{
    (void)arg;
    free(hb_conn_data(conn));
}

static void on_control_closed(hb_http_server_t *h)
{
    (void)h;
    hb_server_close(&server, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    (void)s;
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    hb_http_server_close(&control, on_control_closed);
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "lucky: %s: %s\n", what, hb_strerror(err));
    return 1;
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    hb_server_options_t o;
    hb_server_options_default(&o);
    o.listen_port = argc > 1 ? atoi(argv[1]) : 7000;
    o.shake_amount_min = 8; /* shake envelopes of 8 to 88 cents */
    o.shake_amount_max = 88;
    o.on_conn_close = on_conn_close;
    int r = hb_server_init(loop, &server, &o);
    if (r != 0)
        return fail(hb_server_last_error(&server), r);
    if ((r = hb_server_handle(&server, CMD_DRAW, on_draw, NULL)) != 0 ||
        (r = hb_server_add_counter(&server, CTR_DRAWS, "lucky_draws", "Draws made")) != 0 ||
        (r = hb_server_add_counter(&server, CTR_WINS, "lucky_wins", "Draws won")) != 0 ||
        (r = hb_server_start(&server)) != 0) {
        fprintf(stderr, "lucky: %s\n", hb_server_last_error(&server));
        hb_server_close(&server, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    /* Control: GET /metrics, /stats, /yaohongbao... on 127.0.0.1. */
    if ((r = hb_http_server_init(loop, &control, NULL)) != 0 ||
        (r = hb_server_mount_http(&server, &control)) != 0 ||
        (r = hb_http_server_listen(&control, "127.0.0.1", argc > 2 ? atoi(argv[2]) : 7001)) != 0)
        return fail("control port", r);
    /* Ten envelopes of 888 cents for the first shakes, then 100 a second of the range above. */
    const uint32_t big[10] = {888, 888, 888, 888, 888, 888, 888, 888, 888, 888};
    if ((r = hb_server_put_shake_envelopes(&server, big, 10, NULL)) != 0 ||
        (r = hb_server_generate_shake(&server, 100, UINT32_MAX)) != 0)
        return fail("envelopes", r);
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    printf("lucky: users on 127.0.0.1:%d, control on 127.0.0.1:%d\n", server.port,
           hb_http_server_port(&control));
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
