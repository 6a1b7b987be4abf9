/* lucky-load: a load test of lucky's own command on libhongbao's client runtime. USERS simulated
 * users log in to lucky and draw (DRAW, 0x4001) at QPS draws a second in all, each on the modulo
 * schedule, for SECONDS; then it prints what it sent and heard and the draws' latency.
 *
 *   cc -o lucky-load lucky-load.c $(pkg-config --cflags --libs hongbao)
 *   ./lucky-load [SECONDS [USERS [QPS [USER_PORT]]]]     (5, 100, 1000, 7000) */
#include <hongbao.h>
#include <stdio.h>
#include <stdlib.h>

#define CMD_DRAW  0x4001
#define CMD_DRAWN 0x4002

static hb_client_t client; /* about 200 KB: not on the stack */
static uv_timer_t stop_timer;
static uint64_t wins;

/* The loop thread, before each draw: the payload is the user's guess. */
static int fill_draw(void *arg, uint32_t user, uint64_t intended_us, uint8_t *buf, size_t cap)
{
    (void)arg;
    (void)intended_us;
    if (cap < 4)
        return -1;
    hb_put_u32(buf, user % 10);
    return 4;
}

/* The loop thread, for each DRAWN (and any other application frame lucky sends). */
static void on_frame(void *arg, uint32_t user, const hb_frame_t *frame)
{
    (void)arg;
    (void)user;
    if (frame->cmd == CMD_DRAWN && frame->payload_len == 8)
        wins += hb_get_u32(frame->payload + 4);
}

static void on_closed(hb_client_t *c)
{
    char lat[256];
    hb_hist_format(&c->shake_latency, "us", lat, sizeof lat);
    printf("lucky-load: %llu logins, %llu draws sent, %llu answered, %llu won\n"
           "lucky-load: latency %s\n",
           (unsigned long long)c->stats.connects, (unsigned long long)c->stats.app_requests,
           (unsigned long long)c->stats.app_replies, (unsigned long long)wins, lat);
}

/* The loop thread: why connects fail (at most a line a second). */
static void log_line(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "lucky-load: %s\n", line);
}

static void on_stop(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    hb_client_close(&client, on_closed);
}

int main(int argc, char **argv)
{
    uint64_t seconds = argc > 1 ? strtoull(argv[1], NULL, 10) : 5;
    hb_client_options_t o;
    hb_client_options_default(&o);
    o.max_user = (argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 100) - 1;
    o.qps = argc > 3 ? strtoull(argv[3], NULL, 10) : 1000;
    o.server_port = argc > 4 ? atoi(argv[4]) : 7000;
    o.app_cmd = CMD_DRAW;
    o.app_reply_cmd = CMD_DRAWN;
    o.app_fill = fill_draw;
    o.on_app_frame = on_frame;
    o.log = log_line;
    uv_loop_t *loop = uv_default_loop();
    int r = hb_client_init(loop, &client, &o);
    if (r == 0 && (r = hb_client_start(&client)) != 0)
        hb_client_close(&client, NULL);
    if (r != 0) {
        fprintf(stderr, "lucky-load: %s\n", hb_strerror(r));
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_timer_init(loop, &stop_timer);
    uv_timer_start(&stop_timer, on_stop, seconds * 1000, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0)
        return 1;
    return client.stats.app_replies > 0 ? 0 : 1;
}
