/* rcluster_load: commands per second through the Redis Cluster client (lib/runtime/hb_rcluster.h)
 * with a window of commands outstanding, each answer sending the next, on one loop.
 *
 *   rcluster_load SEEDS TOTAL WINDOW REPLICAS [set|eval]     (default set)
 *
 * set: SET bench:<k> v; eval: a registered script INCRBY on benche:<k> (EVALSHA); k runs over
 * 100,000 keys spread over every slot. REPLICAS > 0 asks each command for WAIT REPLICAS 1000.
 * Prints the rate, the failures and the client's counters (sends, WAITs, refreshes).
 * Against the test cluster (examples/fleet/cluster.sh), from a Release build tree _build/rel built
 * with HONGBAO_REDIS=ON:
 *   examples/fleet/cluster.sh start /tmp/rc 22690
 *   cc -O2 -Ilib/runtime -Ilib/core -Iinclude -I_build/rel/include bench/rcluster_load.c \
 *      _build/rel/libhongbao.a $(pkg-config --cflags --libs hiredis libuv) -lhttp_parser -lm \
 *      -lpthread -o /tmp/rcluster_load
 *   /tmp/rcluster_load "$(cat /tmp/rc/seeds)" 200000 1000 1
 *   examples/fleet/cluster.sh stop /tmp/rc */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "hb_rcluster.h"

static struct {
    hb_rcluster_t *rc;
    hb_rscript_t *script;
    long total, issued, done, failed;
    int replicas, eval;
    hb_rcluster_stats_t st;
} b;

static void issue(void);

static void on_reply(hb_rcluster_t *rc, int err, const redisReply *reply, int acked, void *arg)
{
    (void)rc;
    (void)arg;
    b.done++;
    if (err != 0 || reply->type == REDIS_REPLY_ERROR || (b.replicas > 0 && acked < b.replicas))
        b.failed++;
    if (b.issued < b.total)
        issue();
    if (b.done == b.total) {
        hb__rcluster_stats(b.rc, &b.st);
        hb__rcluster_close(b.rc, NULL, NULL);
    }
}

static void issue(void)
{
    char key[32];
    int n = snprintf(key, sizeof key, b.eval ? "benche:%ld" : "bench:%ld", b.issued % 100000);
    uint16_t slot = hb__keyslot(key, (size_t)n);
    const char *set[] = {"SET", key, "v"};
    const char *incr[] = {key, "1"};
    int err = b.eval ? hb__rcluster_eval(b.rc, b.script, slot, 1, 2, incr, NULL, b.replicas, 1000,
                                         on_reply, NULL)
                     : hb__rcluster_command_wait(b.rc, slot, 3, set, NULL, b.replicas, 1000,
                                                 on_reply, NULL);
    b.issued++;
    if (err != 0) {
        fprintf(stderr, "rcluster_load: submit: %s\n", hb_strerror(err));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: rcluster_load SEEDS TOTAL WINDOW REPLICAS [set|eval]\n");
        return 2;
    }
    b.total = atol(argv[2]);
    long window = atol(argv[3]);
    b.replicas = atoi(argv[4]);
    b.eval = argc > 5 && strcmp(argv[5], "eval") == 0;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hb_rcluster_options_t o = {.seeds = argv[1], .timeout_ms = 5000};
    if (b.total <= 0 || window <= 0 || hb__rcluster_open(&loop, &o, &b.rc) != 0 ||
        hb__rcluster_script(b.rc, "return redis.call('INCRBY', KEYS[1], ARGV[1])", &b.script) != 0)
        return 2;
    uint64_t start = uv_hrtime();
    while (b.issued < window && b.issued < b.total)
        issue();
    uv_run(&loop, UV_RUN_DEFAULT);
    double s = (double)(uv_hrtime() - start) / 1e9;
    printf("%ld %s (window %ld, WAIT %d): %.2f s, %.0f/s, %ld failed; sent %" PRIu64
           ", WAITs %" PRIu64 ", refreshes %" PRIu64 "\n",
           b.total, b.eval ? "EVALSHA" : "SET", window, b.replicas, s, (double)b.total / s,
           b.failed, b.st.sent, b.st.waits, b.st.refreshes);
    uv_loop_close(&loop);
    return b.failed == 0 ? 0 : 1;
}
