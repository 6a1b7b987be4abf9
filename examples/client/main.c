/* hb-client: the example load-generating client. Simulates users [min, max] of a fleet of
 * `total`, one connection each, shaking on the modulo schedule at the fleet rate --qps, claiming
 * what they are sent. Forks --procs worker processes that share the user range, so one command
 * can hold more connections than one process's open-file limit. */
#include <hongbao.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/cli.h"

static const char *prog = "hb-client";

#define MAX_PROCS  256
#define FD_RESERVE 64

typedef struct config {
    hb_client_options_t copts;
    char server_host[64];
    char control_host[64];
    int control_port; /* -1: off */
    char monitor_host[64];
    int monitor_port;
    char source_text[HB_CLIENT_MAX_SOURCES][64];
    /* --servers A:P,B:P,...: the list's entries as given (checked with hb_addr_parse) */
    char server_text[HB_CLIENT_MAX_SERVERS][HB_ADDR_HOST_SIZE + 8];
    const char *server_list[HB_CLIENT_MAX_SERVERS];
    unsigned procs;
    uint64_t duration_s;       /* 0: until a signal */
    const char *claims_log;    /* write every claim reply here (worker i: FILE.i) */
    const char *control_token; /* bearer token required on the control port */
    uint64_t report_s;
    const char *nic;                   /* --nic: NULL for the default, "" for off */
    char nic_name[HB_NETDEV_NAME_MAX]; /* the interface each worker counts, "" for none */
} config_t;

/* What each worker process publishes for the parent, under a sequence lock. */
typedef struct published {
    atomic_uint_fast64_t seq; /* odd while being written */
    hb_client_stats_t stats;
    hb_hist_t shake;
    hb_hist_t claim;
    hb_hist_t service;
    hb_hist_t phase[HB_CLIENT_PHASES];
    int finished;
} published_t;

typedef struct shared {
    atomic_uint_fast64_t qps;
    atomic_uint_fast64_t qps_gen;   /* bumped by the parent on /qps */
    atomic_uint_fast64_t reset_gen; /* bumped by the parent on /reset-latency */
    published_t child[];
} shared_t;

static shared_t *shm;
static config_t cfg;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: hb-client --min A --max B --total T --qps Q [options]\n"
        "\n"
        "The example load-generating client (libhongbao %s): simulates users A..B of a fleet\n"
        "of T, one TCP connection each, shaking on the modulo schedule so that the whole fleet\n"
        "sends Q shakes a second, and claiming every send-envelope it is told of.\n"
        "\n"
        "  --server HOST:PORT     the server (default 127.0.0.1:1025)\n"
        "  --min A, --max B       the users this command simulates (both included)\n"
        "  --total T              users in the whole fleet (default B + 1)\n"
        "  --qps Q                the whole fleet's shake rate (default 0)\n"
        "  --monitor HOST:PORT    send counter reports every second to this monitor\n"
        "  --nic IF|off           the network interface whose packet and byte rates go into\n"
        "                         the reports (default: the one that reaches --server, e.g.\n"
        "                         lo for 127.0.0.1; off: none)\n"
        "  --control HOST:PORT    HTTP control: GET /qps?qps=N, GET /stats, GET /reset-latency\n"
        "                         (default 127.0.0.1:9090; port 0 picks a free one; 'off' for\n"
        "                         none)\n"
        "  --control-token T      require 'Authorization: Bearer T' there; needed to bind the\n"
        "                         control port to a non-loopback address\n"
        "  --duration S           stop after S seconds (default: at SIGINT/SIGTERM)\n"
        "  --source A-B           connect from loopback source addresses A..B in turn,\n"
        "                         e.g. 127.0.0.2-127.0.0.40 (more connections per server port)\n"
        "  --procs N|auto         worker processes sharing the users (default 1; auto: as many\n"
        "                         as the open-file limit needs)\n"
        "  --connect-rate N       new connections a second per process (default 20000)\n"
        "  --report-interval S    print latency percentiles every S seconds (default 10)\n"
        "  --no-claims            do not claim send-envelopes\n"
        "  --reference-claims     claim with the reference's command (cmd 5, an amount back)\n"
        "                         instead of the extended one (cmd 0x103, with a result): for\n"
        "                         a server that speaks only the reference protocol\n"
        "  --claims-log FILE      log every claim reply as 'envelope user amount result'\n"
        "                         (worker i writes FILE.i)\n"
        "  --closed K             closed loop: every user keeps K shakes (1..8) outstanding,\n"
        "                         sending the next as each reply comes; --qps is unused\n"
        "  --servers HOST:P1-PN   servers on ports P1..PN: user u connects to P1 + u mod N,\n"
        "                         always the same one (separate services)\n"
        "  --servers A:P,B:P,...  servers by address (IPv4, or [IPv6]:P), one service: each user\n"
        "                         goes to the one consistent hashing gives it, the same in every\n"
        "                         process; when its server fails it, to its next one\n"
        "  --login-timeout MS     a connect and its login must be done within MS (default\n"
        "                         10000): past it the user tries again (its next server)\n"
        "  --send-coalesce US     wake up to send at most every US microseconds, sending what is\n"
        "                         due together (default 0: every send at its own microsecond)\n"
        "  --send-spin US         wait awake for a send due within US microseconds (the loop "
        "polls\n"
        "                         without sleeping) so that it leaves on time (default 0: asleep)\n"
        "  --help, --version\n",
        hb_version_string());
}

/* ---- parsing -----------------------------------------------------------------------------------
 */

static int parse_sources(const char *text)
{
    char a[64], b[64];
    const char *dash = strchr(text, '-');
    size_t la = dash ? (size_t)(dash - text) : strlen(text);
    if (la >= sizeof a || (dash && strlen(dash + 1) >= sizeof b))
        goto bad;
    memcpy(a, text, la);
    a[la] = '\0';
    snprintf(b, sizeof b, "%s", dash ? dash + 1 : a);
    struct sockaddr_in sa, sb;
    if (uv_ip4_addr(a, 0, &sa) != 0 || uv_ip4_addr(b, 0, &sb) != 0)
        goto bad;
    uint32_t lo = ntohl(sa.sin_addr.s_addr), hi = ntohl(sb.sin_addr.s_addr);
    if (hi < lo || hi - lo >= HB_CLIENT_MAX_SOURCES) {
        fprintf(stderr, "%s: --source: %s: a range of 1..%d addresses, low to high\n", prog, text,
                HB_CLIENT_MAX_SOURCES);
        return -1;
    }
    for (uint32_t ip = lo; ip <= hi; ip++) {
        struct in_addr in = {htonl(ip)};
        uv_inet_ntop(AF_INET, &in, cfg.source_text[ip - lo], sizeof cfg.source_text[0]);
        cfg.copts.sources[ip - lo] = cfg.source_text[ip - lo];
    }
    cfg.copts.nsources = hi - lo + 1;
    return 0;
bad:
    fprintf(stderr, "%s: --source: '%s' is not ADDRESS or ADDRESS-ADDRESS (IPv4)\n", prog, text);
    return -1;
}

/* A:P,B:P,...: servers by address, routed by consistent hashing (the library's default for a
 * list). Each entry is checked here, so that a mistake is named before any worker starts. */
static int parse_server_list(const char *flag, const char *text)
{
    unsigned n = 0;
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char host[HB_ADDR_HOST_SIZE];
        int port;
        if (n == HB_CLIENT_MAX_SERVERS) {
            fprintf(stderr, "%s: %s: more than %d servers\n", prog, flag, HB_CLIENT_MAX_SERVERS);
            return -1;
        }
        if (len >= sizeof cfg.server_text[n]) {
            fprintf(stderr, "%s: %s: '%.*s' is not HOST:PORT\n", prog, flag, (int)len, p);
            return -1;
        }
        memcpy(cfg.server_text[n], p, len);
        cfg.server_text[n][len] = '\0';
        if (cli_endpoint(prog, flag, cfg.server_text[n], host, sizeof host, &port, 0) != 0)
            return -1;
        for (unsigned i = 0; i < n; i++) {
            char h[HB_ADDR_HOST_SIZE];
            int pt;
            if (hb_addr_parse(cfg.server_text[i], h, sizeof h, &pt) == 0 && pt == port &&
                strcmp(h, host) == 0) {
                fprintf(stderr, "%s: %s: %s is listed twice\n", prog, flag, cfg.server_text[n]);
                return -1;
            }
        }
        if (n == 0)
            snprintf(cfg.server_host, sizeof cfg.server_host, "%s", host); /* for --nic */
        cfg.server_list[n] = cfg.server_text[n];
        n++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    cfg.copts.servers = cfg.server_list;
    cfg.copts.nservers = n;
    return 0;
}

/* HOST:P1-PN: N servers on consecutive ports. */
static int parse_servers(const char *flag, const char *text)
{
    char first[96];
    const char *dash = strrchr(text, '-');
    size_t len = dash ? (size_t)(dash - text) : strlen(text);
    if (len >= sizeof first) {
        fprintf(stderr, "%s: %s: '%s' is not HOST:P1-PN\n", prog, flag, text);
        return -1;
    }
    memcpy(first, text, len);
    first[len] = '\0';
    if (cli_endpoint(prog, flag, first, cfg.server_host, sizeof cfg.server_host,
                     &cfg.copts.server_port, 0) != 0)
        return -1;
    uint64_t last = (uint64_t)cfg.copts.server_port;
    if (dash && cli_u64(prog, flag, dash + 1, (uint64_t)cfg.copts.server_port, 65535, &last) != 0)
        return -1;
    cfg.copts.nservers = (uint32_t)(last - (uint64_t)cfg.copts.server_port + 1);
    cfg.copts.servers = NULL;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    uint64_t v, min = UINT64_MAX, max = UINT64_MAX, total = 0;
    int auto_procs = 0;
    hb_client_options_default(&cfg.copts);
    snprintf(cfg.server_host, sizeof cfg.server_host, "127.0.0.1");
    snprintf(cfg.control_host, sizeof cfg.control_host, "127.0.0.1");
    cfg.control_port = 9090;
    cfg.procs = 1;
    cfg.report_s = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--version") == 0) {
            printf("hb-client (libhongbao) %s\n", hb_version_string());
            exit(0);
        }
        if (strcmp(a, "--no-claims") == 0) {
            cfg.copts.no_claims = 1;
            continue;
        }
        if (strcmp(a, "--reference-claims") == 0) {
            cfg.copts.reference_claims = 1;
            continue;
        }
        if ((val = cli_value(prog, argc, argv, &i)) == NULL)
            return -1;
        int r = 0;
        if (strcmp(a, "--server") == 0) {
            r = cli_endpoint(prog, a, val, cfg.server_host, sizeof cfg.server_host,
                             &cfg.copts.server_port, 0);
            cfg.copts.servers = NULL;
            cfg.copts.nservers = 0;
        } else if (strcmp(a, "--min") == 0) {
            r = cli_u64(prog, a, val, 0, UINT32_MAX, &min);
        } else if (strcmp(a, "--max") == 0) {
            r = cli_u64(prog, a, val, 0, UINT32_MAX, &max);
        } else if (strcmp(a, "--total") == 0) {
            r = cli_u64(prog, a, val, 1, (uint64_t)UINT32_MAX + 1, &total);
        } else if (strcmp(a, "--qps") == 0) {
            r = cli_u64(prog, a, val, 0, (uint64_t)1 << 32, &cfg.copts.qps);
        } else if (strcmp(a, "--monitor") == 0) {
            r = cli_endpoint(prog, a, val, cfg.monitor_host, sizeof cfg.monitor_host,
                             &cfg.monitor_port, 0);
        } else if (strcmp(a, "--nic") == 0) {
            cfg.nic = strcmp(val, "off") == 0 ? "" : val;
        } else if (strcmp(a, "--control-token") == 0) {
            if ((cfg.control_token = cli_token(prog, a, val)) == NULL)
                return -1;
        } else if (strcmp(a, "--control") == 0) {
            if (strcmp(val, "off") == 0)
                cfg.control_port = -1;
            else if (strcmp(val, "0") == 0)
                cfg.control_port = 0;
            else
                r = cli_endpoint(prog, a, val, cfg.control_host, sizeof cfg.control_host,
                                 &cfg.control_port, 1);
        } else if (strcmp(a, "--duration") == 0) {
            r = cli_u64(prog, a, val, 1, 365 * 86400, &cfg.duration_s);
        } else if (strcmp(a, "--source") == 0) {
            r = parse_sources(val);
        } else if (strcmp(a, "--procs") == 0) {
            if (strcmp(val, "auto") == 0)
                auto_procs = 1;
            else if ((r = cli_u64(prog, a, val, 1, MAX_PROCS, &v)) == 0)
                cfg.procs = (unsigned)v;
        } else if (strcmp(a, "--connect-rate") == 0) {
            if ((r = cli_u64(prog, a, val, 1, 1000000, &v)) == 0)
                cfg.copts.connect_rate = (uint32_t)v;
        } else if (strcmp(a, "--closed") == 0) {
            if ((r = cli_u64(prog, a, val, 1, HB_CLIENT_MAX_CLOSED, &v)) == 0)
                cfg.copts.closed = (uint32_t)v;
        } else if (strcmp(a, "--servers") == 0) {
            r = strchr(val, ',') != NULL ? parse_server_list(a, val) : parse_servers(a, val);
        } else if (strcmp(a, "--login-timeout") == 0) {
            if ((r = cli_u64(prog, a, val, 1, 3600000, &v)) == 0)
                cfg.copts.login_timeout_ms = (uint32_t)v;
        } else if (strcmp(a, "--send-coalesce") == 0) {
            if ((r = cli_u64(prog, a, val, 0, 1000000, &v)) == 0)
                cfg.copts.send_coalesce_us = (uint32_t)v;
        } else if (strcmp(a, "--send-spin") == 0) {
            if ((r = cli_u64(prog, a, val, 0, 1000000, &v)) == 0)
                cfg.copts.send_spin_us = (uint32_t)v;
        } else if (strcmp(a, "--claims-log") == 0) {
            cfg.claims_log = val;
        } else if (strcmp(a, "--report-interval") == 0) {
            r = cli_u64(prog, a, val, 1, 3600, &cfg.report_s);
        } else {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return -1;
        }
        if (r != 0)
            return -1;
    }
    if (min == UINT64_MAX || max == UINT64_MAX) {
        fprintf(stderr, "%s: --min and --max are required (see --help)\n", prog);
        return -1;
    }
    if (max < min) {
        fprintf(stderr, "%s: --max %llu is below --min %llu\n", prog, (unsigned long long)max,
                (unsigned long long)min);
        return -1;
    }
    if (total == 0)
        total = max + 1;
    if (total <= max) {
        fprintf(stderr, "%s: --total %llu must exceed --max %llu (users are 0..total-1)\n", prog,
                (unsigned long long)total, (unsigned long long)max);
        return -1;
    }
    cfg.copts.min_user = (uint32_t)min;
    cfg.copts.max_user = (uint32_t)max;
    cfg.copts.total_users = total;
    cfg.copts.server_host = cfg.server_host;

    uint64_t users = max - min + 1;
    uint64_t nofile = cli_raise_nofile();
    uint64_t per_proc = nofile > FD_RESERVE ? nofile - FD_RESERVE : 1;
    if (auto_procs)
        cfg.procs = (unsigned)((users + per_proc - 1) / per_proc);
    if (cfg.procs > users)
        cfg.procs = (unsigned)users;
    if (cfg.procs > MAX_PROCS || (users + cfg.procs - 1) / cfg.procs > per_proc) {
        fprintf(stderr,
                "%s: %llu users need %llu processes at the open-file limit of %llu; use --procs "
                "auto (or at most %d processes: split the range over several commands)\n",
                prog, (unsigned long long)users,
                (unsigned long long)((users + per_proc - 1) / per_proc), (unsigned long long)nofile,
                MAX_PROCS);
        return -1;
    }
    return 0;
}

/* ---- a worker process
 * ---------------------------------------------------------------------------- */

typedef struct worker {
    uv_loop_t *loop;
    hb_client_t client;
    hb_reporter_t reporter;
    int have_reporter;
    hb_netstat_t nic; /* the NIC's rates into the client's counters */
    int have_nic;
    uv_timer_t publish;
    uv_signal_t sigterm, sigint;
    published_t *out;
    uint64_t qps_gen;
    uint64_t reset_gen;
    int stopping;
} worker_t;

static void publish(worker_t *w, int finished)
{
    published_t *p = w->out;
    atomic_fetch_add(&p->seq, 1);
    p->stats = w->client.stats;
    p->shake = w->client.shake_latency;
    p->claim = w->client.claim_latency;
    p->service = w->client.service_latency;
    memcpy(p->phase, w->client.phase_latency, sizeof p->phase);
    p->finished = finished;
    atomic_fetch_add(&p->seq, 1);
}

static void on_publish(uv_timer_t *t)
{
    worker_t *w = t->data;
    uint64_t gen = atomic_load(&shm->qps_gen);
    if (gen != w->qps_gen) {
        w->qps_gen = gen;
        hb_client_set_rate(&w->client, atomic_load(&shm->qps));
    }
    gen = atomic_load(&shm->reset_gen);
    if (gen != w->reset_gen) {
        w->reset_gen = gen;
        hb_client_reset_latency(&w->client);
    }
    publish(w, 0);
}

static void on_reporter_closed(hb_reporter_t *r)
{
    (void)r;
}

static void on_client_closed(hb_client_t *c)
{
    worker_t *w = c->data;
    if (w->have_reporter)
        hb_reporter_close(&w->reporter, on_reporter_closed);
}

static void worker_stop(worker_t *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    uv_timer_stop(&w->publish);
    uv_close((uv_handle_t *)&w->publish, NULL);
    uv_close((uv_handle_t *)&w->sigterm, NULL);
    uv_close((uv_handle_t *)&w->sigint, NULL);
    if (w->have_nic)
        hb_netstat_close(&w->nic, NULL);
    hb_client_close(&w->client, on_client_closed);
}

static void on_worker_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    worker_stop(s->data);
}

/* The word for a claim result in the claims log. */
static const char *claim_result_name(int result)
{
    switch (result) {
    case HB_CLAIM_GRANTED:
        return "granted";
    case HB_CLAIM_REPEAT:
        return "repeat";
    case HB_CLAIM_NOT_RECIPIENT:
        return "not_recipient";
    case HB_CLAIM_NO_ENVELOPE:
        return "no_envelope";
    case HB_CLAIM_TRY_AGAIN:
        return "try_again";
    default:
        return "unknown";
    }
}

static void log_claim(void *arg, uint32_t user, uint32_t envelope_id, uint32_t amount, int result)
{
    fprintf(arg, "%u %u %u %s\n", envelope_id, user, amount, claim_result_name(result));
}

/* The client's log lines (a failed connect and why, at most one a second), on stderr. */
static void log_line(void *arg, const char *line)
{
    fprintf(stderr, "%s: worker %u: %s\n", prog, *(const unsigned *)arg, line);
}

static int worker_main(unsigned index, uint32_t min, uint32_t max)
{
    worker_t w;
    memset(&w, 0, sizeof w);
    w.loop = uv_default_loop();
    w.out = &shm->child[index];
    hb_client_options_t o = cfg.copts;
    o.min_user = min;
    o.max_user = max;
    o.log = log_line;
    o.log_arg = &index;
    FILE *claims = NULL;
    if (cfg.claims_log != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s.%u", cfg.claims_log, index);
        claims = fopen(path, "w");
        if (claims == NULL) {
            perror(path);
            return 1;
        }
        o.on_claim_reply = log_claim;
        o.claim_arg = claims;
    }
    int r = hb_client_init(w.loop, &w.client, &o);
    if (r != 0) {
        fprintf(stderr, "%s: worker %u: %s\n", prog, index, hb_strerror(r));
        return 1;
    }
    w.client.data = &w;
    if (cfg.nic_name[0] != '\0') {
        /* The client counts on its loop's thread through shard 0; the sampler runs there too. */
        hb_netstat_options_t no = {.interface = cfg.nic_name, .shard = 0};
        r = hb_netstat_init(w.loop, &w.nic, hb_client_counters(&w.client), &no);
        w.have_nic = r == 0; /* closed by worker_stop from here on */
        if (r == 0)
            r = hb_netstat_start(&w.nic);
        if (r != 0)
            fprintf(stderr, "%s: worker %u: --nic %s: %s (going on without it)\n", prog, index,
                    cfg.nic_name, hb_strerror(r));
    }
    if (cfg.monitor_port != 0) {
        hb_reporter_options_t ro;
        memset(&ro, 0, sizeof ro);
        ro.host = cfg.monitor_host;
        ro.port = cfg.monitor_port;
        if (hb_reporter_init(w.loop, &w.reporter, hb_client_counters(&w.client), &ro) == 0) {
            w.have_reporter = 1;
            hb_reporter_start(&w.reporter);
        }
    }
    uv_signal_init(w.loop, &w.sigterm);
    uv_signal_init(w.loop, &w.sigint);
    w.sigterm.data = w.sigint.data = &w;
    uv_signal_start(&w.sigterm, on_worker_signal, SIGTERM);
    uv_signal_start(&w.sigint, on_worker_signal, SIGINT);
    uv_timer_init(w.loop, &w.publish);
    w.publish.data = &w;
    uv_timer_start(&w.publish, on_publish, 100, 100);
    w.qps_gen = atomic_load(&shm->qps_gen);
    w.reset_gen = atomic_load(&shm->reset_gen);
    hb_client_start(&w.client);
    uv_run(w.loop, UV_RUN_DEFAULT);
    publish(&w, 1); /* stats and histograms are w.client's own: readable after the close */
    if (claims != NULL)
        fclose(claims);
    r = uv_loop_close(w.loop);
    return r == 0 ? 0 : 1;
}

/* ---- the parent
 * ------------------------------------------------------------------------------------- */

typedef struct parent {
    uv_loop_t *loop;
    pid_t pids[MAX_PROCS];
    unsigned running;
    hb_http_server_t http;
    int have_http;
    uv_timer_t progress, report, duration;
    uv_signal_t sigint, sigterm, sigchld;
    int stopping;
    int handles_closed;
    int tty;
} parent_t;

/* Service and phase latency of every worker, summed, for the summary (NULL: not wanted). */
static hb_hist_t g_service, g_phase[HB_CLIENT_PHASES];
static int g_want_all;

/* A consistent copy of every worker's published state, summed. */
static void gather(hb_client_stats_t *st, hb_hist_t *shake, hb_hist_t *claim)
{
    if (g_want_all) {
        hb_hist_init(&g_service);
        for (unsigned k = 0; k < HB_CLIENT_PHASES; k++)
            hb_hist_init(&g_phase[k]);
    }
    memset(st, 0, sizeof *st);
    hb_hist_init(shake);
    hb_hist_init(claim);
    static published_t copy;
    for (unsigned i = 0; i < cfg.procs; i++) {
        published_t *p = &shm->child[i];
        for (int tries = 0; tries < 1000; tries++) {
            uint64_t s0 = atomic_load(&p->seq);
            if (s0 & 1)
                continue;
            copy.stats = p->stats;
            copy.shake = p->shake;
            copy.claim = p->claim;
            if (g_want_all) {
                copy.service = p->service;
                memcpy(copy.phase, p->phase, sizeof copy.phase);
            }
            if (atomic_load(&p->seq) == s0)
                break;
        }
        const uint64_t *src = (const uint64_t *)&copy.stats;
        uint64_t *dst = (uint64_t *)st;
        for (size_t k = 0; k < sizeof *st / sizeof(uint64_t); k++)
            dst[k] += src[k];
        hb_hist_merge(shake, &copy.shake);
        hb_hist_merge(claim, &copy.claim);
        if (g_want_all) {
            hb_hist_merge(&g_service, &copy.service);
            for (unsigned k = 0; k < HB_CLIENT_PHASES; k++)
                hb_hist_merge(&g_phase[k], &copy.phase[k]);
        }
    }
}

static void print_latency(FILE *out, const char *what, const hb_hist_t *h)
{
    fprintf(out,
            "  %-16s p50 %8.3f ms  p90 %8.3f ms  p99 %8.3f ms  p99.9 %8.3f ms  max %8.3f ms  "
            "(n=%llu)\n",
            what, hb_hist_percentile(h, 50) / 1000.0, hb_hist_percentile(h, 90) / 1000.0,
            hb_hist_percentile(h, 99) / 1000.0, hb_hist_percentile(h, 99.9) / 1000.0,
            h->max / 1000.0, (unsigned long long)h->count);
}

static void on_progress(uv_timer_t *t)
{
    parent_t *p = t->data;
    hb_client_stats_t st;
    static hb_hist_t a, b;
    gather(&st, &a, &b);
    uint64_t users = st.users ? st.users : (uint64_t)cfg.copts.max_user - cfg.copts.min_user + 1;
    if (p->tty) {
        int width = 40, done = (int)(width * st.connected / (users ? users : 1));
        fprintf(stderr, "\r%s: [%.*s%*s] %llu/%llu connected", prog, done,
                "########################################", width - done, "",
                (unsigned long long)st.connected, (unsigned long long)users);
        if (st.connected == users)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %llu/%llu connected\n", prog, (unsigned long long)st.connected,
                (unsigned long long)users);
    }
    if (st.connected == users)
        uv_timer_stop(t);
}

static void on_report(uv_timer_t *t)
{
    (void)t;
    hb_client_stats_t st;
    static hb_hist_t shake, claim;
    gather(&st, &shake, &claim);
    printf("%s: %llu connected, %llu shakes, %llu envelopes, %llu claims granted\n", prog,
           (unsigned long long)st.connected, (unsigned long long)st.shakes,
           (unsigned long long)st.envelopes, (unsigned long long)st.claims_granted);
    print_latency(stdout, "shake latency", &shake);
    fflush(stdout);
}

static void parent_stop(parent_t *p)
{
    if (p->stopping)
        return;
    p->stopping = 1;
    for (unsigned i = 0; i < cfg.procs; i++)
        if (p->pids[i] > 0)
            kill(p->pids[i], SIGTERM);
    uv_timer_stop(&p->progress);
    uv_timer_stop(&p->report);
    uv_timer_stop(&p->duration);
    if (p->have_http)
        hb_http_server_close(&p->http, NULL);
}

static void on_parent_signal(uv_signal_t *s, int signum)
{
    parent_t *p = s->data;
    if (signum == SIGCHLD) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (unsigned i = 0; i < cfg.procs; i++) {
                if (p->pids[i] == pid) {
                    p->pids[i] = 0;
                    p->running--;
                    if (!p->stopping && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
                        fprintf(stderr, "%s: worker %u ended unexpectedly\n", prog, i);
                }
            }
        }
        if (p->running == 0 && !p->handles_closed) {
            p->handles_closed = 1;
            parent_stop(p);
            uv_close((uv_handle_t *)&p->sigint, NULL);
            uv_close((uv_handle_t *)&p->sigterm, NULL);
            uv_close((uv_handle_t *)&p->sigchld, NULL);
            uv_close((uv_handle_t *)&p->progress, NULL);
            uv_close((uv_handle_t *)&p->report, NULL);
            uv_close((uv_handle_t *)&p->duration, NULL);
        }
        return;
    }
    fprintf(stderr, "%s: %s: stopping\n", prog, signum == SIGINT ? "SIGINT" : "SIGTERM");
    parent_stop(p);
}

static void on_duration(uv_timer_t *t)
{
    parent_stop(t->data);
}

static void route_qps(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)arg;
    uint64_t qps;
    const uint64_t max = (uint64_t)1 << 32;
    int r = hb_query_u64(req->query, req->query_len, "qps", 0, max, &qps);
    if (r != 0) {
        hb_http_bad_param_range(res, "qps", r, 0, max);
        return;
    }
    atomic_store(&shm->qps, qps);
    atomic_fetch_add(&shm->qps_gen, 1);
    char msg[96];
    int n = snprintf(msg, sizeof msg, "qps set to %llu from the next second\n",
                     (unsigned long long)qps);
    hb_http_respond(res, 200, "text/plain; charset=utf-8", msg, (size_t)n);
}

/* GET /reset-latency: every worker empties its latency histograms within 100 ms (at its next
 * publish), so that the summary describes what follows (a benchmark's measurement window). */
static void route_reset_latency(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    (void)arg;
    atomic_fetch_add(&shm->reset_gen, 1);
    static const char msg[] = "latency histograms reset within 100 ms\n";
    hb_http_respond(res, 200, "text/plain; charset=utf-8", msg, sizeof msg - 1);
}

static void route_stats(const hb_http_request_t *req, hb_http_response_t *res, void *arg)
{
    (void)req;
    (void)arg;
    hb_client_stats_t st;
    static hb_hist_t shake, claim;
    gather(&st, &shake, &claim);
    char buf[1024];
    int n = snprintf(
        buf, sizeof buf,
        "{\"users\":%llu,\"connected\":%llu,\"qps\":%llu,\"shakes\":%llu,"
        "\"envelopes\":%llu,\"amount\":%llu,\"claims\":%llu,\"claims_granted\":%llu,"
        "\"claimed_amount\":%llu,\"claims_repeat\":%llu,\"claims_try_again\":%llu,"
        "\"claims_retried\":%llu,\"claims_refused\":%llu,\"connects\":%llu,"
        "\"connect_failures\":%llu,\"disconnects\":%llu,\"reconnects\":%llu,\"failovers\":%llu,"
        "\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu}}\n",
        (unsigned long long)st.users, (unsigned long long)st.connected,
        (unsigned long long)atomic_load(&shm->qps), (unsigned long long)st.shakes,
        (unsigned long long)st.envelopes, (unsigned long long)st.amount,
        (unsigned long long)st.claims, (unsigned long long)st.claims_granted,
        (unsigned long long)st.claimed_amount, (unsigned long long)st.claims_repeat,
        (unsigned long long)st.claims_try_again, (unsigned long long)st.claims_retried,
        (unsigned long long)st.claims_refused, (unsigned long long)st.connects,
        (unsigned long long)st.connect_failures, (unsigned long long)st.disconnects,
        (unsigned long long)st.reconnects, (unsigned long long)st.failovers,
        (unsigned long long)hb_hist_percentile(&shake, 50),
        (unsigned long long)hb_hist_percentile(&shake, 90),
        (unsigned long long)hb_hist_percentile(&shake, 99),
        (unsigned long long)hb_hist_percentile(&shake, 99.9), (unsigned long long)shake.max);
    hb_http_respond(res, 200, "application/json", buf, (size_t)n);
}

static void print_summary(void)
{
    hb_client_stats_t st;
    static hb_hist_t shake, claim;
    g_want_all = 1;
    gather(&st, &shake, &claim);
    g_want_all = 0;
    /* CPU of this process and of every worker (all reaped by now). */
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    double cpu_us = (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
                             kids.ru_stime.tv_sec) *
                        1e6 +
                    (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
                             kids.ru_stime.tv_usec);
    uint64_t requests = st.shakes + st.claims;
    double cpu_per_req = requests ? cpu_us / (double)requests : 0;
    char phases[HB_CLIENT_PHASES * 24] = "";
    size_t plen = 0;
    for (unsigned k = 0; k < HB_CLIENT_PHASES; k++)
        plen += (size_t)snprintf(phases + plen, sizeof phases - plen, "%s%llu", k ? "," : "",
                                 (unsigned long long)hb_hist_percentile(&g_phase[k], 50));
    printf("\n%s summary (%u process%s)\n", prog, cfg.procs, cfg.procs == 1 ? "" : "es");
    printf("  users             %llu (connected: %llu at most; logins %llu, connect failures "
           "%llu, disconnects %llu)\n",
           (unsigned long long)st.users, (unsigned long long)st.connected_peak,
           (unsigned long long)st.connects, (unsigned long long)st.connect_failures,
           (unsigned long long)st.disconnects);
    printf("  reconnects        %llu, of which to another server (failovers) %llu\n",
           (unsigned long long)st.reconnects, (unsigned long long)st.failovers);
    printf("  shakes sent       %llu (missed: %llu)\n", (unsigned long long)st.shakes,
           (unsigned long long)st.missed);
    printf("  replies           got %llu, none %llu, all taken %llu, overload %llu\n",
           (unsigned long long)st.replies[0], (unsigned long long)st.replies[1],
           (unsigned long long)st.replies[2], (unsigned long long)st.replies[3]);
    printf("  envelopes         %llu, amount %llu\n", (unsigned long long)st.envelopes,
           (unsigned long long)st.amount);
    printf("  notices           %llu; claims %llu, granted %llu, amount %llu\n",
           (unsigned long long)st.notices, (unsigned long long)st.claims,
           (unsigned long long)st.claims_granted, (unsigned long long)st.claimed_amount);
    printf("  claim answers     repeat %llu, try again %llu, refused %llu; sent again %llu\n",
           (unsigned long long)st.claims_repeat, (unsigned long long)st.claims_try_again,
           (unsigned long long)st.claims_refused, (unsigned long long)st.claims_retried);
    print_latency(stdout, "shake latency", &shake);
    print_latency(stdout, "claim latency", &claim);
    print_latency(stdout, "shake service", &g_service);
    printf("  shake p50 by 100 ms phase of the second (us): %s\n", phases);
    printf("  cpu               %.3f s (this process and its workers), %.2f us per request\n",
           cpu_us / 1e6, cpu_per_req);
    /* One line for scripts. */
    printf("summary: users=%llu connected=%llu shakes=%llu got=%llu none=%llu overload=%llu "
           "envelopes=%llu amount=%llu claims=%llu granted=%llu claimed=%llu p50_us=%llu "
           "p99_us=%llu p999_us=%llu max_us=%llu p90_us=%llu svc_p50_us=%llu svc_p99_us=%llu "
           "claim_p50_us=%llu claim_p99_us=%llu missed=%llu notices=%llu cpu_s=%.3f "
           "cpu_us_per_req=%.2f phase_p50_us=%s claims_repeat=%llu claims_try_again=%llu "
           "claims_retried=%llu claims_refused=%llu connect_failures=%llu disconnects=%llu "
           "reconnects=%llu failovers=%llu\n",
           (unsigned long long)st.users, (unsigned long long)st.connected_peak,
           (unsigned long long)st.shakes, (unsigned long long)st.replies[0],
           (unsigned long long)st.replies[1], (unsigned long long)st.replies[3],
           (unsigned long long)st.envelopes, (unsigned long long)st.amount,
           (unsigned long long)st.claims, (unsigned long long)st.claims_granted,
           (unsigned long long)st.claimed_amount,
           (unsigned long long)hb_hist_percentile(&shake, 50),
           (unsigned long long)hb_hist_percentile(&shake, 99),
           (unsigned long long)hb_hist_percentile(&shake, 99.9), (unsigned long long)shake.max,
           (unsigned long long)hb_hist_percentile(&shake, 90),
           (unsigned long long)hb_hist_percentile(&g_service, 50),
           (unsigned long long)hb_hist_percentile(&g_service, 99),
           (unsigned long long)hb_hist_percentile(&claim, 50),
           (unsigned long long)hb_hist_percentile(&claim, 99), (unsigned long long)st.missed,
           (unsigned long long)st.notices, cpu_us / 1e6, cpu_per_req, phases,
           (unsigned long long)st.claims_repeat, (unsigned long long)st.claims_try_again,
           (unsigned long long)st.claims_retried, (unsigned long long)st.claims_refused,
           (unsigned long long)st.connect_failures, (unsigned long long)st.disconnects,
           (unsigned long long)st.reconnects, (unsigned long long)st.failovers);
}

/* The interface the workers count (cfg.nic_name): --nic, or the one that reaches the server.
 * Tried once here, before forking, on a loop of its own. Returns 0, or -1 when the interface
 * named with --nic cannot be read. */
static int settle_nic(void)
{
    if (cfg.nic != NULL && cfg.nic[0] == '\0')
        return 0;
    if (cfg.nic == NULL) {
        if (hb_netstat_interface_for(cfg.server_host, cfg.nic_name, sizeof cfg.nic_name) != 0) {
            fprintf(stderr, "%s: no network interface found for %s: NIC rates not counted\n", prog,
                    cfg.server_host);
            cfg.nic_name[0] = '\0';
            return 0;
        }
    } else if (strlen(cfg.nic) >= sizeof cfg.nic_name) {
        fprintf(stderr, "%s: --nic %s: not an interface name (too long)\n", prog, cfg.nic);
        return -1;
    } else {
        strcpy(cfg.nic_name, cfg.nic);
    }
    uv_loop_t loop;
    hb_counters_t counters;
    hb_netstat_t ns;
    hb_netstat_options_t no = {.interface = cfg.nic_name};
    int r = uv_loop_init(&loop);
    if (r == 0 && (r = hb_counters_init(&counters, 1, HB_REPORTER_CLIENT)) == 0) {
        r = hb_netstat_init(&loop, &ns, &counters, &no);
        if (r == 0) {
            hb_netstat_close(&ns, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
        hb_counters_close(&counters);
    }
    uv_loop_close(&loop);
    if (r != 0) {
        fprintf(stderr, "%s: --nic %s: %s%s\n", prog, cfg.nic_name, hb_strerror(r),
                cfg.nic != NULL ? "" : " (NIC rates not counted)");
        cfg.nic_name[0] = '\0';
        return cfg.nic != NULL ? -1 : 0;
    }
    return 0;
}

/* Fail early, before forking, when the control port is taken: bind a plain socket and let go. */
static int control_port_free(void)
{
    struct sockaddr_in a;
    if (cfg.control_port <= 0 || uv_ip4_addr(cfg.control_host, cfg.control_port, &a) != 0)
        return 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, ok;
    if (fd < 0)
        return 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static int start_control(parent_t *p)
{
    hb_http_options_t ho;
    memset(&ho, 0, sizeof ho);
    ho.bearer_token = cfg.control_token;
    int r = hb_http_server_init(p->loop, &p->http, &ho);
    if (r == 0) {
        p->have_http = 1;
        r = hb_http_server_listen(&p->http, cfg.control_host, cfg.control_port);
    }
    if (r == 0)
        r = hb_http_server_route(&p->http, "GET", "/qps", route_qps, NULL);
    if (r == 0)
        r = hb_http_server_route(&p->http, "GET", "/stats", route_stats, NULL);
    if (r == 0)
        r = hb_http_server_route(&p->http, "GET", "/reset-latency", route_reset_latency, NULL);
    if (r != 0) {
        fprintf(stderr,
                "%s: --control %s:%d: %s (another hb-client? use --control 0 for a free port, "
                "or --control off)\n",
                prog, cfg.control_host, cfg.control_port, hb_strerror(r));
        return r;
    }
    printf("%s: control endpoint on http://%s:%d/qps\n", prog, cfg.control_host,
           hb_http_server_port(&p->http));
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0)
        return 2;
    if (cfg.control_port >= 0 && !hb_http_is_loopback(cfg.control_host) &&
        cfg.control_token == NULL) {
        fprintf(stderr,
                "%s: --control %s is not a loopback address: refusing to start without "
                "--control-token\n",
                prog, cfg.control_host);
        return 2;
    }
    if (!control_port_free()) {
        fprintf(stderr,
                "%s: --control %s:%d: address already in use (another hb-client? use --control 0 "
                "for a free port, or --control off)\n",
                prog, cfg.control_host, cfg.control_port);
        return 1;
    }
    if (settle_nic() != 0)
        return 1;
    size_t size = sizeof(shared_t) + cfg.procs * sizeof(published_t);
    shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        perror("hb-client: mmap");
        return 1;
    }
    atomic_store(&shm->qps, cfg.copts.qps);
    uint64_t users = (uint64_t)cfg.copts.max_user - cfg.copts.min_user + 1;
    printf("%s: users %u..%u of %llu at %llu shakes/s for the fleet, %u process%s\n", prog,
           cfg.copts.min_user, cfg.copts.max_user, (unsigned long long)cfg.copts.total_users,
           (unsigned long long)cfg.copts.qps, cfg.procs, cfg.procs == 1 ? "" : "es");
    if (cfg.copts.nservers > 1)
        printf("%s: %u servers, users %s\n", prog, cfg.copts.nservers,
               cfg.copts.servers != NULL ? "by consistent hashing, failing over to their next"
                                         : "by modulo of their port range");
    if (cfg.nic_name[0] != '\0')
        printf("%s: counting network interface %s\n", prog, cfg.nic_name);
    fflush(stdout);
    fflush(stderr);

    /* Fork before the parent creates any loop or handle, so every worker starts clean. */
    parent_t p;
    memset(&p, 0, sizeof p);
    uint64_t per = (users + cfg.procs - 1) / cfg.procs;
    for (unsigned i = 0; i < cfg.procs; i++) {
        uint32_t lo = (uint32_t)(cfg.copts.min_user + i * per);
        uint64_t hi64 = lo + per - 1;
        uint32_t hi = hi64 > cfg.copts.max_user ? cfg.copts.max_user : (uint32_t)hi64;
        pid_t pid = fork();
        if (pid < 0) {
            perror("hb-client: fork");
            break;
        }
        if (pid == 0) {
            int rc = worker_main(i, lo, hi);
            fflush(stdout);
            _exit(rc);
        }
        p.pids[i] = pid;
        p.running++;
    }

    p.loop = uv_default_loop();
    p.tty = isatty(STDERR_FILENO);
    uv_signal_init(p.loop, &p.sigchld);
    uv_signal_init(p.loop, &p.sigint);
    uv_signal_init(p.loop, &p.sigterm);
    p.sigchld.data = p.sigint.data = p.sigterm.data = &p;
    uv_signal_start(&p.sigchld, on_parent_signal, SIGCHLD);
    uv_signal_start(&p.sigint, on_parent_signal, SIGINT);
    uv_signal_start(&p.sigterm, on_parent_signal, SIGTERM);
    uv_timer_init(p.loop, &p.progress);
    uv_timer_init(p.loop, &p.report);
    uv_timer_init(p.loop, &p.duration);
    p.progress.data = p.report.data = p.duration.data = &p;
    uv_timer_start(&p.progress, on_progress, p.tty ? 200 : 2000, p.tty ? 200 : 2000);
    uv_timer_start(&p.report, on_report, cfg.report_s * 1000, cfg.report_s * 1000);
    if (cfg.duration_s > 0)
        uv_timer_start(&p.duration, on_duration, cfg.duration_s * 1000, 0);
    int failed = 0;
    if (cfg.control_port >= 0 && start_control(&p) != 0) {
        failed = 1;
        parent_stop(&p);
    }
    fflush(stdout);
    if (p.running == 0)
        parent_stop(&p);
    /* Reap any worker that ended before SIGCHLD was being watched. */
    on_parent_signal(&p.sigchld, SIGCHLD);
    uv_run(p.loop, UV_RUN_DEFAULT);
    if (!failed)
        print_summary();
    int r = uv_loop_close(p.loop);
    munmap(shm, size);
    return failed ? 1 : r == 0 ? 0 : 1;
}
