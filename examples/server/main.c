/* hb-server: the example red-envelope server, a thin consumer of libhongbao's server runtime.
 * It listens for users, serves the control endpoint and reports counters to a monitor. */
#include <hongbao.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cli.h"
#include "../common/endpoints.h"

static const char *prog = "hb-server";

typedef struct app {
    uv_loop_t *loop;
    hb_server_t server;
    hb_http_server_t http;
    hb_reporter_t reporter;
    uv_signal_t sigint, sigterm;
    int have_http, have_reporter;
    int stopping;
} app_t;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: hb-server [options]\n"
        "\n"
        "The example red-envelope server (libhongbao %s). Users connect over TCP and speak the\n"
        "reference protocol: login, shake for an envelope, claim a send-envelope, chat.\n"
        "\n"
        "  --listen HOST:PORT    where users connect (default 127.0.0.1:1025; port 0: any free)\n"
        "  --control HOST:PORT   HTTP control endpoint (default 127.0.0.1:8989; 'off' for none):\n"
        "                          GET /yaohongbao?qps=Q&sum=S         shake envelopes\n"
        "                          GET /fahongbao?qps=Q&sum=S&min=A&max=B  send-envelopes\n"
        "                          GET /metrics (Prometheus), GET /stats (JSON)\n"
        "  --monitor HOST:PORT   send a counter report every second to this monitor\n"
        "  --nic IF|off          the network interface whose packet and byte rates go into the\n"
        "                        reports and /metrics (default: the one the --listen address\n"
        "                        uses, e.g. lo for 127.0.0.1; off: none)\n"
        "  --threads N           worker threads (default: one per core)\n"
        "  --sets N              SETs in all (default: one per thread)\n"
        "  --max-qps N           shake requests a second before overload replies (default 65000)\n"
        "  --seed N              seed for every random draw (default: from the clock)\n"
        "  --users MIN-MAX       refuse logins of user ids outside MIN..MAX (default: any)\n"
        "  --max-conn-qps N      requests a second per connection before 17s; twice that\n"
        "                        closes it (default 1000; 0: no limit)\n"
        "  --login-timeout MS    a connection must log in within MS (default 10000)\n"
        "  --ledger DIR|off      the claim journal's directory (default ./hb-ledger): every\n"
        "                        send-envelope and granted claim is journaled before its reply\n"
        "  --fsync POLICY        always (default: nothing acknowledged is ever lost),\n"
        "                        everysec (at most ~1 s at risk on a machine crash), or no\n"
        "  --redis HOST:PORT,... a fleet (docs/fleet.md): send-envelopes, claims and ids live in\n"
        "                        this Redis Cluster, shared by every instance given it (no\n"
        "                        --ledger then)\n"
        "  --instance NAME       this instance's name in the fleet (default: the --listen "
        "address)\n"
        "  --redis-replicas N    acknowledge a claim once N replicas have it (Redis WAIT;\n"
        "                        default 0: the master's appendfsync alone)\n"
        "  --generator           in a fleet, take part in electing its one generator, which\n"
        "                        makes the shake plan set by /yaohongbao on any instance\n"
        "  --redis-lease MS      shake envelopes drawn from the fleet's budget stay this\n"
        "                        instance's this long without a word from it (default 30000)\n"
        "  --redis-timeout MS    a Redis command's deadline, retries included (default 2000);\n"
        "                        a claim past it is answered 'try again'\n"
        "  --control-token T     require 'Authorization: Bearer T' on the control endpoint;\n"
        "                        needed to bind it to a non-loopback address\n"
        "  --reuse-port          let other processes bind the same port (SO_REUSEPORT) and take a\n"
        "                        share of its users; only for deliberate multi-process setups\n"
        "  --help, --version\n"
        "\n"
        "SIGINT or SIGTERM stops it cleanly: no more requests read, every claim already read\n"
        "answered once its journal record is durable, replies flushed, final counters sent,\n"
        "exit 0.\n",
        hb_version_string());
}

static void log_line(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s: %s\n", prog, line);
}

static void on_server_closed(hb_server_t *s)
{
    app_t *app = s->data;
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
}

static void on_reporter_closed(hb_reporter_t *r)
{
    app_t *app = r->data;
    hb_server_close(&app->server, on_server_closed);
}

static void after_http(app_t *app)
{
    if (app->have_reporter)
        hb_reporter_close(&app->reporter, on_reporter_closed);
    else
        hb_server_close(&app->server, on_server_closed);
}

static void on_http_closed(hb_http_server_t *h)
{
    after_http(h->data);
}

static void stop(app_t *app)
{
    if (app->stopping)
        return;
    app->stopping = 1;
    if (app->have_http)
        hb_http_server_close(&app->http, on_http_closed);
    else
        after_http(app);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app_t *app = s->data;
    fprintf(stderr, "%s: %s: stopping\n", prog, signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop(app);
}

int main(int argc, char **argv)
{
    hb_server_options_t opts;
    hb_server_options_default(&opts);
    char listen_host[64] = "127.0.0.1", control_host[64] = "127.0.0.1", monitor_host[64] = "";
    const char *control_token = NULL;
    const char *ledger = "hb-ledger";
    int ledger_given = 0; /* --ledger with --redis is refused by hb_server_init */
    int control_port = 8989, monitor_port = 0, control_off = 0;
    uint64_t v;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("hb-server (libhongbao) %s\n", hb_version_string());
            return 0;
        }
        if (strcmp(a, "--reuse-port") == 0) {
            opts.reuse_port = 1;
            continue;
        }
        if (strcmp(a, "--generator") == 0) {
            opts.generator = 1;
            continue;
        }
        if ((val = cli_value(prog, argc, argv, &i)) == NULL)
            return 2;
        if (strcmp(a, "--listen") == 0) {
            if (cli_endpoint(prog, a, val, listen_host, sizeof listen_host, &opts.listen_port, 1) !=
                0)
                return 2;
        } else if (strcmp(a, "--control") == 0) {
            if (strcmp(val, "off") == 0)
                control_off = 1;
            else if (cli_endpoint(prog, a, val, control_host, sizeof control_host, &control_port,
                                  1) != 0)
                return 2;
        } else if (strcmp(a, "--monitor") == 0) {
            if (cli_endpoint(prog, a, val, monitor_host, sizeof monitor_host, &monitor_port, 0) !=
                0)
                return 2;
        } else if (strcmp(a, "--nic") == 0) {
            opts.nic = strcmp(val, "off") == 0 ? "" : val;
        } else if (strcmp(a, "--threads") == 0) {
            if (cli_u64(prog, a, val, 1, 256, &v) != 0)
                return 2;
            opts.threads = (unsigned)v;
        } else if (strcmp(a, "--sets") == 0) {
            if (cli_u64(prog, a, val, 1, 4096, &v) != 0)
                return 2;
            opts.sets = (unsigned)v;
        } else if (strcmp(a, "--max-qps") == 0) {
            if (cli_u64(prog, a, val, 1, 16000000, &v) != 0)
                return 2;
            opts.max_qps = v;
        } else if (strcmp(a, "--users") == 0) {
            uint64_t lo, hi;
            char text[64];
            const char *dash = strchr(val, '-');
            if (dash == NULL || (size_t)(dash - val) >= sizeof text) {
                fprintf(stderr, "%s: --users: '%s' is not MIN-MAX\n", prog, val);
                return 2;
            }
            memcpy(text, val, (size_t)(dash - val));
            text[dash - val] = '\0';
            if (cli_u64(prog, a, text, 0, UINT32_MAX, &lo) != 0 ||
                cli_u64(prog, a, dash + 1, lo, UINT32_MAX, &hi) != 0)
                return 2;
            opts.limit_users = 1;
            opts.min_user = (uint32_t)lo;
            opts.max_user = (uint32_t)hi;
        } else if (strcmp(a, "--max-conn-qps") == 0) {
            if (cli_u64(prog, a, val, 0, 30000, &v) != 0)
                return 2;
            opts.max_conn_qps = v == 0 ? UINT32_MAX : (uint32_t)v;
        } else if (strcmp(a, "--login-timeout") == 0) {
            if (cli_u64(prog, a, val, 1, 3600000, &v) != 0)
                return 2;
            opts.login_timeout_ms = (uint32_t)v;
        } else if (strcmp(a, "--ledger") == 0) {
            ledger = strcmp(val, "off") == 0 ? NULL : val;
            ledger_given = 1;
        } else if (strcmp(a, "--fsync") == 0) {
            if (hb_fsync_parse(val, &opts.fsync) != 0) {
                fprintf(stderr, "%s: --fsync: '%s' is not always, everysec or no\n", prog, val);
                return 2;
            }
        } else if (strcmp(a, "--redis") == 0) {
            opts.redis = val;
        } else if (strcmp(a, "--instance") == 0) {
            opts.instance = val;
        } else if (strcmp(a, "--redis-replicas") == 0) {
            if (cli_u64(prog, a, val, 0, 16, &v) != 0)
                return 2;
            opts.redis_replicas = (unsigned)v;
        } else if (strcmp(a, "--redis-lease") == 0) {
            if (cli_u64(prog, a, val, 600, 3600000, &v) != 0)
                return 2;
            opts.redis_lease_ms = (uint32_t)v;
        } else if (strcmp(a, "--redis-timeout") == 0) {
            if (cli_u64(prog, a, val, 1, 600000, &v) != 0)
                return 2;
            opts.redis_timeout_ms = (uint32_t)v;
        } else if (strcmp(a, "--control-token") == 0) {
            if ((control_token = cli_token(prog, a, val)) == NULL)
                return 2;
        } else if (strcmp(a, "--seed") == 0) {
            if (cli_u64(prog, a, val, 1, UINT64_MAX, &opts.seed) != 0)
                return 2;
        } else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        }
    }
    opts.listen_host = listen_host;
    if (opts.redis != NULL && !ledger_given)
        ledger = NULL; /* the fleet keeps the money */
    opts.ledger_dir = ledger;
    opts.log = log_line;
    if (!control_off && !hb_http_is_loopback(control_host) && control_token == NULL) {
        fprintf(stderr,
                "%s: --control %s is not a loopback address: refusing to start without "
                "--control-token (anyone who reaches it could create envelopes)\n",
                prog, control_host);
        return 2;
    }

    uint64_t nofile = cli_raise_nofile();
    app_t app;
    memset(&app, 0, sizeof app);
    app.loop = uv_default_loop();
    app.server.data = &app;
    int r = hb_server_init(app.loop, &app.server, &opts);
    if (r != 0) {
        fprintf(stderr, "%s: %s\n", prog, hb_server_last_error(&app.server));
        return 1;
    }
    app.server.data = &app;
    r = hb_server_start(&app.server);
    if (r != 0) {
        fprintf(stderr, "%s: %s\n", prog, hb_server_last_error(&app.server));
        hb_server_close(&app.server, NULL);
        uv_run(app.loop, UV_RUN_DEFAULT);
        uv_loop_close(app.loop);
        return 1;
    }
    uv_signal_init(app.loop, &app.sigint);
    uv_signal_init(app.loop, &app.sigterm);
    app.sigint.data = app.sigterm.data = &app;
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    printf("%s: listening on %s:%d with %u threads and %u SETs; open-file limit %llu, so up to "
           "%u connections in this process\n",
           prog, listen_host, app.server.port, app.server.nthreads, app.server.nsets,
           (unsigned long long)nofile, app.server.max_connections);
    if (hb_server_nic(&app.server)[0] != '\0')
        printf("%s: counting network interface %s\n", prog, hb_server_nic(&app.server));
    if (opts.redis != NULL)
        printf("%s: money in Redis Cluster %s (a grant acknowledged after %u replicas)\n", prog,
               opts.redis, opts.redis_replicas);
    else if (ledger != NULL)
        printf("%s: claim journal in %s/ (fsync %s)\n", prog, ledger, hb_fsync_name(opts.fsync));
    else
        printf("%s: no claim journal (--ledger off): claims are not durable\n", prog);

    if (!control_off) {
        hb_http_options_t ho;
        memset(&ho, 0, sizeof ho);
        ho.bearer_token = control_token;
        r = hb_http_server_init(app.loop, &app.http, &ho);
        if (r == 0) {
            app.have_http = 1;
            app.http.data = &app;
            r = hb_http_server_listen(&app.http, control_host, control_port);
            if (r == 0)
                r = hb_server_mount_http(&app.server, &app.http);
            if (r == 0)
                r = endpoints_mount_http_stats(&app.http);
        }
        if (r != 0) {
            fprintf(stderr, "%s: --control %s:%d: %s\n", prog, control_host, control_port,
                    hb_strerror(r));
            stop(&app);
            uv_run(app.loop, UV_RUN_DEFAULT);
            uv_loop_close(app.loop);
            return 1;
        }
        printf("%s: control endpoint on http://%s:%d/\n", prog, control_host,
               hb_http_server_port(&app.http));
    }
    if (monitor_port != 0) {
        hb_reporter_options_t ro;
        memset(&ro, 0, sizeof ro);
        ro.host = monitor_host;
        ro.port = monitor_port;
        ro.log = log_line;
        ro.instance =
            hb_report_instance(listen_host, app.server.port); /* its line on the monitor */
        app.reporter.data = &app;
        r = hb_reporter_init(app.loop, &app.reporter, hb_server_counters(&app.server), &ro);
        if (r == 0) {
            app.reporter.data = &app;
            app.have_reporter = 1;
            r = hb_reporter_start(&app.reporter);
        }
        if (r != 0)
            fprintf(stderr, "%s: --monitor: %s (going on without it)\n", prog, hb_strerror(r));
    }
    fflush(stdout);

    uv_run(app.loop, UV_RUN_DEFAULT);
    r = uv_loop_close(app.loop);
    if (r != 0)
        fprintf(stderr, "%s: handles left open at exit: %s\n", prog, hb_strerror(r));
    fprintf(stderr, "%s: stopped\n", prog);
    return r == 0 ? 0 : 1;
}
