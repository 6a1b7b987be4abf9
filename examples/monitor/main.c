/* hb-monitor: the example monitor, a thin consumer of libhongbao's monitor module. It sums the
 * counter reports of every server and client, prints a line per second and type, and serves a
 * dashboard, /metrics and /api/series; optionally a CSV file and PNG charts at exit. */
#include <errno.h>
#include <hongbao.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../common/cli.h"
#include "../common/endpoints.h"
#include "hb_dashboard_html.h" /* generated from dashboard.html at build time */

extern char **environ;

static const char *prog = "hb-monitor";

/* Where Debian's libjs-chart.js puts Chart.js (the UMD builds, which need no module loader). */
static const char *const chart_system_dir = "/usr/share/javascript/chart.js";
static const char *const chart_names[] = {"chart.umd.js", "chart.min.js", "chart.js"};

typedef struct app {
    uv_loop_t *loop;
    hb_monitor_t mon;
    hb_http_server_t http;
    uv_signal_t sigint, sigterm;
    uv_timer_t duration;
    int have_http, have_duration, stopping;
    FILE *csv;
    const char *csv_path;
    int per_instance; /* --per-instance: a line per instance after each type's line */
    FILE *instances_csv;
    const char *instances_csv_path;
    const char *plot_dir;
    char *chart_js; /* the chart library, read at start; NULL when missing */
    size_t chart_js_len;
    char *page; /* the dashboard, from --assets DIR/dashboard.html; NULL: the built-in one */
    size_t page_len;
    int plot_data_written;
    int plot_network; /* the history holds NIC data: draw network.png too */
} app_t;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: hb-monitor [options]\n"
        "\n"
        "The example monitor (libhongbao %s): servers and clients send it a counter report\n"
        "every second; it adds them up per second and type and shows them.\n"
        "\n"
        "  --listen HOST:PORT  where reporters connect (default 127.0.0.1:8002; port 0: any free)\n"
        "  --http HOST:PORT    dashboard and data (default 127.0.0.1:8080; 'off' for none):\n"
        "                        GET /              the dashboard\n"
        "                        GET /metrics       Prometheus text of the latest second\n"
        "                        GET /api/series?seconds=N   JSON series (default 300)\n"
        "  --csv FILE          write one row per second and type to FILE\n"
        "  --per-instance      after each second's line, a line per instance (process) of\n"
        "                      that type that reported it\n"
        "  --instances-csv FILE  write one row per second and instance to FILE\n"
        "  --max-instances N   instances drawn apart at most (default 256)\n"
        "  --plot DIR          at exit, write DIR/monitor.dat and DIR/monitor.gp and draw PNG\n"
        "                      charts with gnuplot (when installed)\n"
        "  --duration S        stop after S seconds (default: until SIGINT or SIGTERM)\n"
        "  --assets DIR        look for the chart library (chart.umd.js, chart.min.js or\n"
        "                      chart.js) in DIR instead of %s; DIR/dashboard.html,\n"
        "                      if present, replaces the built-in page\n"
        "  --http-token T      require 'Authorization: Bearer T' on the HTTP port; needed to\n"
        "                      bind it to a non-loopback address (a browser then needs a\n"
        "                      proxy that adds the header)\n"
        "  --history S         seconds of history kept (default 3600)\n"
        "  --grace-ms MS       output a second at most this long after its first report\n"
        "                      even if a reporter is missing (default 2000)\n"
        "  --counter TYPE:SLOT=NAME[,HELP]\n"
        "                      name an application counter slot (19, 28, 29, 58, 59) of\n"
        "                      'server' or 'client' reports, as the service named it; shown\n"
        "                      in /metrics and /api/series (repeat for more)\n"
        "  --help, --version\n"
        "\n"
        "A line a second and type goes to stdout; at exit every second still held is\n"
        "written, the incomplete ones marked.\n",
        hb_version_string(), chart_system_dir);
}

/* --counter TYPE:SLOT=NAME[,HELP] into names. */
static int parse_counter(const char *flag, const char *text, hb_counter_names_t *names)
{
    char buf[HB_COUNTER_NAME_MAX + HB_COUNTER_HELP_MAX + 32];
    snprintf(buf, sizeof buf, "%s", text);
    char *colon = strchr(buf, ':'), *eq = strchr(buf, '='), *comma;
    uint64_t type = HB_REPORTER_TYPES, slot; /* none */
    if (colon != NULL && eq != NULL && colon < eq) {
        *colon = *eq = '\0';
        for (uint64_t t = 0; t < HB_REPORTER_TYPES; t++)
            if (strcmp(buf, hb_reporter_type_name(t)) == 0)
                type = t;
    }
    if (type == HB_REPORTER_TYPES ||
        cli_u64(prog, flag, colon + 1, 0, HB_COUNTER_SLOTS - 1, &slot) != 0) {
        fprintf(stderr, "%s: %s '%s': want server:SLOT=NAME or client:SLOT=NAME[,HELP]\n", prog,
                flag, text);
        return -1;
    }
    if ((comma = strchr(eq + 1, ',')) != NULL)
        *comma++ = '\0';
    int r = hb_counter_names_add(names, type, (unsigned)slot, eq + 1, comma);
    if (r != 0) {
        fprintf(stderr, "%s: %s '%s': %s\n", prog, flag, text,
                r == HB_EEXIST ? "the slot or the name is taken"
                : hb_counter_is_app_slot((unsigned)slot)
                    ? "a name is snake_case ([a-z][a-z0-9_]*), a help text one line"
                    : "not an application slot (19, 28, 29, 58, 59)");
        return -1;
    }
    return 0;
}

static void log_line(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s: %s\n", prog, line);
}

/* Read a whole file; NULL (errno set) when it cannot. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256 * 1024;
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

static void load_assets(app_t *app, const char *assets)
{
    const char *dir = assets ? assets : chart_system_dir;
    char path[4096];
    for (size_t i = 0; i < sizeof chart_names / sizeof chart_names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, chart_names[i]);
        app->chart_js = read_file(path, &app->chart_js_len);
        if (app->chart_js != NULL) {
            printf("%s: chart library %s\n", prog, path);
            break;
        }
    }
    if (app->chart_js == NULL)
        fprintf(stderr,
                "%s: the chart library is missing: no chart.umd.js, chart.min.js or chart.js in "
                "%s (install libjs-chart.js%s); the dashboard will say so\n",
                prog, dir, assets ? " or fix --assets" : " or pass --assets DIR");
    if (assets != NULL) {
        snprintf(path, sizeof path, "%s/dashboard.html", assets);
        app->page = read_file(path, &app->page_len);
        if (app->page != NULL)
            printf("%s: dashboard page %s\n", prog, path);
    }
}

static void on_page(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    app_t *app = arg;
    (void)req;
    hb_http_response_header(res, "Cache-Control", "no-store");
    if (app->page != NULL)
        hb_http_respond(res, 200, "text/html; charset=utf-8", app->page, app->page_len);
    else
        hb_http_respond(res, 200, "text/html; charset=utf-8", hb_dashboard_html,
                        sizeof hb_dashboard_html);
}

static void on_chart_js(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    app_t *app = arg;
    (void)req;
    if (app->chart_js == NULL) {
        static const char msg[] = "/* the chart library is missing: install libjs-chart.js */\n";
        hb_http_respond(res, 404, "text/javascript", msg, sizeof msg - 1);
        return;
    }
    hb_http_response_header(res, "Cache-Control", "max-age=3600");
    hb_http_respond(res, 200, "text/javascript", app->chart_js, app->chart_js_len);
}

static void on_second(hb_monitor_t *m, const hb_monitor_second_t *s, void *arg)
{
    app_t *app = arg;
    char line[HB_MONITOR_LINE_MAX];
    if (hb_monitor_format_line(s, line, sizeof line) >= 0) {
        puts(line);
        fflush(stdout);
    }
    if (app->csv != NULL) {
        char row[HB_MONITOR_CSV_ROW_MAX];
        if (hb_monitor_format_csv_row(s, row, sizeof row) >= 0) {
            fputs(row, app->csv);
            fflush(app->csv);
        }
    }
    if (!app->per_instance && app->instances_csv == NULL)
        return;
    const hb_aggregate_t *agg = hb_monitor_aggregate(m);
    for (unsigned i = 0; i < agg->ninstances; i++) {
        hb_instance_second_t is;
        if (hb_aggregate_instance_get(agg, i, s->second, &is) != 0 || is.type != s->type)
            continue;
        if (app->per_instance && hb_aggregate_format_instance_line(&is, line, sizeof line) >= 0)
            printf("  %s\n", line);
        if (app->instances_csv != NULL &&
            hb_aggregate_format_instance_csv_row(&is, line, sizeof line) >= 0)
            fputs(line, app->instances_csv);
    }
    fflush(stdout);
    if (app->instances_csv != NULL)
        fflush(app->instances_csv);
}

/* ---- --plot ---- */

static void put_value(FILE *f, int have, uint64_t v)
{
    if (have)
        fprintf(f, " %llu", (unsigned long long)v);
    else
        fputs(" ?", f);
}

/* Write DIR/monitor.dat (a row a second) and DIR/monitor.gp from the history. */
static int write_plot_files(app_t *app)
{
    char path[4096];
    if (mkdir(app->plot_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: --plot %s: %s\n", prog, app->plot_dir, strerror(errno));
        return -1;
    }
    if (strchr(app->plot_dir, '\'') != NULL || strchr(app->plot_dir, '\n') != NULL) {
        fprintf(stderr, "%s: --plot: a directory name with a quote or newline is not supported\n",
                prog);
        return -1;
    }
    snprintf(path, sizeof path, "%s/monitor.dat", app->plot_dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "%s: --plot: %s: %s\n", prog, path, strerror(errno));
        return -1;
    }
    fputs("# t second server_req client_req generated handed_out received send_created "
          "amount_issued amount_received server_conn_open server_conn_opened client_conn_open "
          "lat_p50 lat_p99 lat_max claim_p99 server_nic_rx_pps server_nic_tx_pps "
          "client_nic_rx_pps client_nic_tx_pps\n",
          f);
    uint64_t oldest, newest;
    if (hb_monitor_range(&app->mon, &oldest, &newest) == 0) {
        for (uint64_t sec = oldest; sec <= newest; sec++) {
            hb_monitor_second_t sv, cl;
            int hs = hb_monitor_get(&app->mon, sec, HB_REPORTER_SERVER, &sv) == 0;
            int hc = hb_monitor_get(&app->mon, sec, HB_REPORTER_CLIENT, &cl) == 0;
            if (!hs && !hc)
                continue;
            fprintf(f, "%llu %llu", (unsigned long long)(sec - oldest), (unsigned long long)sec);
            put_value(f, hs, sv.per_second[HB_CTR_REQUESTS]);
            put_value(f, hc, cl.per_second[HB_CTR_REQUESTS]);
            put_value(f, hs, sv.per_second[HB_CTR_SHAKE_ENVELOPES]);
            put_value(f, hs, sv.per_second[HB_CTR_SHAKE_HANDED_OUT]);
            put_value(f, hc, cl.per_second[HB_CTR_SHAKE_RECEIVED]);
            put_value(f, hs, sv.per_second[HB_CTR_SEND_CREATED]);
            put_value(f, hs,
                      sv.per_second[HB_CTR_SHAKE_AMOUNT_ISSUED] +
                          sv.per_second[HB_CTR_SEND_AMOUNT_ISSUED]);
            put_value(f, hc,
                      cl.per_second[HB_CTR_SHAKE_AMOUNT_RECEIVED] +
                          cl.per_second[HB_CTR_SEND_AMOUNT_CLAIMED]);
            put_value(f, hs, sv.cumulative[HB_CTR_CONN_OPENED] - sv.cumulative[HB_CTR_CONN_CLOSED]);
            put_value(f, hs, sv.cumulative[HB_CTR_CONN_OPENED]);
            put_value(f, hc, cl.cumulative[HB_CTR_CONN_OPENED] - cl.cumulative[HB_CTR_CONN_CLOSED]);
            put_value(f, hc, cl.per_second[HB_CTR_LAT_P50]);
            put_value(f, hc, cl.per_second[HB_CTR_LAT_P99]);
            put_value(f, hc, cl.per_second[HB_CTR_LAT_MAX]);
            put_value(f, hc, cl.per_second[HB_CTR_LAT_CLAIM_P99]);
            app->plot_network |= (hs && sv.nic_hosts > 0) || (hc && cl.nic_hosts > 0);
            put_value(f, hs && sv.nic_hosts > 0, sv.per_second[HB_CTR_NIC_RX_PACKETS]);
            put_value(f, hs && sv.nic_hosts > 0, sv.per_second[HB_CTR_NIC_TX_PACKETS]);
            put_value(f, hc && cl.nic_hosts > 0, cl.per_second[HB_CTR_NIC_RX_PACKETS]);
            put_value(f, hc && cl.nic_hosts > 0, cl.per_second[HB_CTR_NIC_TX_PACKETS]);
            fputc('\n', f);
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: --plot: %s: %s\n", prog, path, strerror(errno));
        return -1;
    }

    snprintf(path, sizeof path, "%s/monitor.gp", app->plot_dir);
    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "%s: --plot: %s: %s\n", prog, path, strerror(errno));
        return -1;
    }
    const char *d = app->plot_dir;
    fprintf(f,
            "# hb-monitor's charts: gnuplot monitor.gp (run from anywhere).\n"
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size 1000,450 font ',10'\n"
            "} else {\n"
            "  set terminal png size 1000,450\n"
            "}\n"
            "set datafile missing '?'\n"
            "set grid\n"
            "set key outside bottom center horizontal\n"
            "set xlabel 'seconds since the first report'\n"
            "dat = '%s/monitor.dat'\n"
            "set output '%s/qps.png'\n"
            "set title 'Requests per second'\n"
            "set ylabel 'requests/s'\n"
            "plot dat using 1:4 with lines lw 2 title 'client', "
            "dat using 1:3 with lines lw 2 title 'server'\n"
            "set output '%s/envelopes.png'\n"
            "set title 'Envelopes per second'\n"
            "set ylabel 'envelopes/s'\n"
            "plot dat using 1:5 with lines lw 2 title 'generated (server)', "
            "dat using 1:6 with lines lw 2 title 'handed out (server)', "
            "dat using 1:7 with lines lw 2 title 'received (client)', "
            "dat using 1:8 with lines lw 2 title 'send-envelopes created'\n"
            "set output '%s/amounts.png'\n"
            "set title 'Amounts per second'\n"
            "set ylabel 'cents/s'\n"
            "plot dat using 1:9 with lines lw 2 title 'issued (server)', "
            "dat using 1:10 with lines lw 2 title 'received (client)'\n"
            "set output '%s/connections.png'\n"
            "set title 'Connections'\n"
            "set ylabel 'connections'\n"
            "plot dat using 1:11 with lines lw 2 title 'server: open', "
            "dat using 1:12 with lines lw 2 title 'server: opened in all', "
            "dat using 1:13 with lines lw 2 title 'client: open'\n"
            "set output '%s/latency.png'\n"
            "set title 'Client latency (worst client process of each second)'\n"
            "set ylabel 'microseconds'\n"
            "plot dat using 1:14 with lines lw 2 title 'shake p50', "
            "dat using 1:15 with lines lw 2 title 'shake p99', "
            "dat using 1:16 with lines lw 2 title 'shake max', "
            "dat using 1:17 with lines lw 2 title 'claim p99'\n",
            d, d, d, d, d, d);
    /* Only with NIC data: gnuplot refuses a chart with no point at all. */
    if (app->plot_network)
        fprintf(f,
                "set output '%s/network.png'\n"
                "set title 'Network packets per second (summed per host)'\n"
                "set ylabel 'packets/s'\n"
                "plot dat using 1:18 with lines lw 2 title 'servers: received', "
                "dat using 1:19 with lines lw 2 title 'servers: transmitted', "
                "dat using 1:20 with lines lw 2 dt 2 title 'clients: received', "
                "dat using 1:21 with lines lw 2 dt 2 title 'clients: transmitted'\n",
                d);
    fputs("set output\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: --plot: %s: %s\n", prog, path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Run gnuplot on DIR/monitor.gp and wait for it. Returns 0 when the charts were drawn. */
static int run_gnuplot(const char *dir, int network)
{
    char script[4096];
    snprintf(script, sizeof script, "%s/monitor.gp", dir);
    char *argv[] = {"gnuplot", script, NULL};
    pid_t pid;
    int r = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ);
    if (r == ENOENT) {
        fprintf(stderr,
                "%s: --plot: gnuplot is not installed (apt-get install gnuplot-nox), so no PNG "
                "charts; the data and the script are in %s/monitor.dat and %s\n",
                prog, dir, script);
        return -1;
    }
    if (r != 0) {
        fprintf(stderr, "%s: --plot: cannot run gnuplot: %s\n", prog, strerror(r));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "%s: --plot: waitpid: %s\n", prog, strerror(errno));
            return -1;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: --plot: gnuplot failed on %s\n", prog, script);
        return -1;
    }
    printf("%s: charts in %s: qps.png envelopes.png amounts.png connections.png latency.png%s\n",
           prog, dir, network ? " network.png" : "");
    return 0;
}

/* ---- life cycle ---- */

static void stop(app_t *app)
{
    if (app->stopping)
        return;
    app->stopping = 1;
    hb_monitor_flush(&app->mon); /* every second still held, the incomplete ones marked */
    if (app->plot_dir != NULL && write_plot_files(app) == 0)
        app->plot_data_written = 1;
    if (app->have_http)
        hb_http_server_close(&app->http, NULL);
    hb_monitor_close(&app->mon, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    if (app->have_duration)
        uv_close((uv_handle_t *)&app->duration, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app_t *app = s->data;
    fprintf(stderr, "%s: %s: stopping\n", prog, signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop(app);
}

static void on_duration(uv_timer_t *t)
{
    stop(t->data);
}

static int finish(app_t *app, int code)
{
    uv_run(app->loop, UV_RUN_DEFAULT);
    int r = uv_loop_close(app->loop);
    if (r != 0) {
        fprintf(stderr, "%s: handles left open at exit: %s\n", prog, hb_strerror(r));
        code = 1;
    }
    if (app->csv != NULL && fclose(app->csv) != 0) {
        fprintf(stderr, "%s: --csv %s: %s\n", prog, app->csv_path, strerror(errno));
        code = 1;
    }
    if (app->instances_csv != NULL && fclose(app->instances_csv) != 0) {
        fprintf(stderr, "%s: --instances-csv %s: %s\n", prog, app->instances_csv_path,
                strerror(errno));
        code = 1;
    }
    if (code == 0 && app->plot_data_written)
        run_gnuplot(app->plot_dir, app->plot_network);
    free(app->chart_js);
    free(app->page);
    return code;
}

int main(int argc, char **argv)
{
    char listen_host[64] = "127.0.0.1", http_host[64] = "127.0.0.1";
    int listen_port = HB_MONITOR_DEFAULT_PORT, http_port = 8080, http_off = 0;
    const char *http_token = NULL;
    const char *assets = NULL;
    uint64_t duration = 0, v;
    hb_monitor_options_t mo;
    memset(&mo, 0, sizeof mo);
    static hb_counter_names_t names;
    mo.names = &names;
    app_t app;
    memset(&app, 0, sizeof app);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("hb-monitor (libhongbao) %s\n", hb_version_string());
            return 0;
        }
        if (strcmp(a, "--per-instance") == 0) {
            app.per_instance = 1;
            continue;
        }
        if ((val = cli_value(prog, argc, argv, &i)) == NULL)
            return 2;
        if (strcmp(a, "--listen") == 0) {
            if (cli_endpoint(prog, a, val, listen_host, sizeof listen_host, &listen_port, 1) != 0)
                return 2;
        } else if (strcmp(a, "--http") == 0) {
            if (strcmp(val, "off") == 0)
                http_off = 1;
            else if (cli_endpoint(prog, a, val, http_host, sizeof http_host, &http_port, 1) != 0)
                return 2;
        } else if (strcmp(a, "--http-token") == 0) {
            if ((http_token = cli_token(prog, a, val)) == NULL)
                return 2;
        } else if (strcmp(a, "--csv") == 0) {
            app.csv_path = val;
        } else if (strcmp(a, "--instances-csv") == 0) {
            app.instances_csv_path = val;
        } else if (strcmp(a, "--max-instances") == 0) {
            if (cli_u64(prog, a, val, 1, HB_MONITOR_MAX_INSTANCES, &v) != 0)
                return 2;
            mo.max_instances = (unsigned)v;
        } else if (strcmp(a, "--plot") == 0) {
            app.plot_dir = val;
        } else if (strcmp(a, "--assets") == 0) {
            assets = val;
        } else if (strcmp(a, "--duration") == 0) {
            if (cli_u64(prog, a, val, 1, 365ull * 86400, &duration) != 0)
                return 2;
        } else if (strcmp(a, "--history") == 0) {
            if (cli_u64(prog, a, val, HB_MONITOR_MIN_HISTORY_S, HB_MONITOR_MAX_HISTORY_S, &v) != 0)
                return 2;
            mo.history_s = (unsigned)v;
        } else if (strcmp(a, "--grace-ms") == 0) {
            if (cli_u64(prog, a, val, 1, 3600000, &v) != 0)
                return 2;
            mo.grace_ms = (unsigned)v;
        } else if (strcmp(a, "--counter") == 0) {
            if (parse_counter(a, val, &names) != 0)
                return 2;
        } else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        }
    }

    if (!http_off && !hb_http_is_loopback(http_host) && http_token == NULL) {
        fprintf(stderr,
                "%s: --http %s is not a loopback address: refusing to start without "
                "--http-token\n",
                prog, http_host);
        return 2;
    }
    if (app.csv_path != NULL) {
        app.csv = fopen(app.csv_path, "w");
        if (app.csv == NULL) {
            fprintf(stderr, "%s: --csv %s: %s\n", prog, app.csv_path, strerror(errno));
            return 1;
        }
        char header[HB_MONITOR_CSV_ROW_MAX];
        if (hb_monitor_format_csv_header(header, sizeof header) >= 0)
            fputs(header, app.csv);
        fflush(app.csv);
    }
    if (app.instances_csv_path != NULL) {
        app.instances_csv = fopen(app.instances_csv_path, "w");
        if (app.instances_csv == NULL) {
            fprintf(stderr, "%s: --instances-csv %s: %s\n", prog, app.instances_csv_path,
                    strerror(errno));
            if (app.csv != NULL)
                fclose(app.csv);
            return 1;
        }
        char header[HB_MONITOR_LINE_MAX];
        if (hb_aggregate_format_instance_csv_header(header, sizeof header) >= 0)
            fputs(header, app.instances_csv);
        fflush(app.instances_csv);
    }
    if (!http_off)
        load_assets(&app, assets);

    app.loop = uv_default_loop();
    mo.on_second = on_second;
    mo.on_second_arg = &app;
    mo.log = log_line;
    int r = hb_monitor_init(app.loop, &app.mon, &mo);
    if (r != 0) {
        fprintf(stderr, "%s: %s\n", prog, hb_strerror(r));
        return 1;
    }
    app.mon.data = &app;
    uv_signal_init(app.loop, &app.sigint);
    uv_signal_init(app.loop, &app.sigterm);
    app.sigint.data = app.sigterm.data = &app;
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);

    r = hb_monitor_listen(&app.mon, listen_host, listen_port);
    if (r != 0) {
        fprintf(stderr, "%s: --listen %s:%d: %s\n", prog, listen_host, listen_port, hb_strerror(r));
        stop(&app);
        return finish(&app, 1);
    }
    printf("%s: reports on %s:%d\n", prog, listen_host, hb_monitor_port(&app.mon));

    if (!http_off) {
        hb_http_options_t ho;
        memset(&ho, 0, sizeof ho);
        ho.bearer_token = http_token;
        r = hb_http_server_init(app.loop, &app.http, &ho);
        if (r == 0) {
            app.have_http = 1;
            app.http.data = &app;
            r = hb_http_server_listen(&app.http, http_host, http_port);
            if (r == 0)
                r = hb_monitor_mount_http(&app.mon, &app.http);
            if (r == 0)
                r = endpoints_mount_http_stats(&app.http);
            if (r == 0)
                r = hb_http_server_route(&app.http, "GET", "/", on_page, &app);
            if (r == 0)
                r = hb_http_server_route(&app.http, "GET", "/assets/chart.js", on_chart_js, &app);
        }
        if (r != 0) {
            fprintf(stderr, "%s: --http %s:%d: %s\n", prog, http_host, http_port, hb_strerror(r));
            stop(&app);
            return finish(&app, 1);
        }
        int port = hb_http_server_port(&app.http);
        if (strchr(http_host, ':') != NULL)
            printf("%s: dashboard on http://[%s]:%d/ (also /metrics, /api/series)\n", prog,
                   http_host, port);
        else
            printf("%s: dashboard on http://%s:%d/ (also /metrics, /api/series)\n", prog, http_host,
                   port);
    }
    if (duration > 0) {
        uv_timer_init(app.loop, &app.duration);
        app.duration.data = &app;
        app.have_duration = 1;
        uv_timer_start(&app.duration, on_duration, duration * 1000, 0);
    }
    fflush(stdout);
    return finish(&app, 0);
}
