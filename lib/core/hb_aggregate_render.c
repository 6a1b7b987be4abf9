/* The renderers of the monitor's aggregate: a line for a terminal, CSV, Prometheus text (through
 * the counters module's one writer) and the JSON series of the dashboard. Pure, bounded, no
 * allocation; slot names from the counter catalogue. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hb_counters_int.h"
#include "hongbao/aggregate.h"

static const char *type_name(uint64_t type)
{
    const char *name = hb_reporter_type_name(type);
    return name != NULL ? name : "unknown";
}

static const char *const status_names[] = {"complete", "grace", "incomplete"};

/* The reporter types in the order the renderers show them (a new type joins here). */
static const uint64_t types_shown[] = {HB_REPORTER_SERVER, HB_REPORTER_CLIENT};
#define NTYPES_SHOWN (sizeof types_shown / sizeof types_shown[0])
_Static_assert(NTYPES_SHOWN == HB_REPORTER_TYPES, "every reporter type is shown");

static int start(hb__text_t *o, char *buf, size_t cap)
{
    if (buf == NULL && cap > 0)
        return HB_EINVAL;
    hb__text_init(o, buf, cap);
    return 0;
}

static int is_max(unsigned idx)
{
    return hb_counter_combine(idx) == HB_COUNTER_COMBINE_MAX;
}

/* A slot with a CSV column: named and a quantity. */
static int in_csv(unsigned idx)
{
    return hb_counter_name(idx) != NULL && hb_counter_combine(idx) != HB_COUNTER_COMBINE_IDENTITY;
}

int hb_aggregate_format_line(const hb_monitor_second_t *s, char *buf, size_t cap)
{
    hb__text_t o;
    if (s == NULL || start(&o, buf, cap) != 0)
        return HB_EINVAL;
    const uint64_t *ps = s->per_second, *cum = s->cumulative;
    hb__text_fmt(&o, "%" PRIu64 " %s [%u]", s->second, type_name(s->type), s->reports);
    if (s->type == HB_REPORTER_SERVER) {
        hb__text_fmt(&o,
                     " req=%" PRIu64 " got=%" PRIu64 " none=%" PRIu64 " overload=%" PRIu64
                     " gen=%" PRIu64 " out=%" PRIu64 " send=%" PRIu64 " claims=%" PRIu64
                     " amount=%" PRIu64 "+%" PRIu64 " conn=%" PRIu64 "(+%" PRIu64 ")",
                     ps[HB_CTR_REQUESTS], ps[HB_CTR_SHAKE_GOT], ps[HB_CTR_SHAKE_NONE],
                     ps[HB_CTR_SHAKE_OVERLOAD], ps[HB_CTR_SHAKE_ENVELOPES],
                     ps[HB_CTR_SHAKE_HANDED_OUT], ps[HB_CTR_SEND_CREATED],
                     ps[HB_CTR_CLAIMS_GRANTED], ps[HB_CTR_SHAKE_AMOUNT_ISSUED],
                     ps[HB_CTR_SEND_AMOUNT_ISSUED],
                     cum[HB_CTR_CONN_OPENED] - cum[HB_CTR_CONN_CLOSED], ps[HB_CTR_CONN_OPENED]);
    } else {
        hb__text_fmt(&o,
                     " req=%" PRIu64 " replies=%" PRIu64 " env=%" PRIu64 " amount=%" PRIu64
                     " claims=%" PRIu64 " claimed=%" PRIu64 " lat_us p50=%" PRIu64 " p99=%" PRIu64
                     " max=%" PRIu64,
                     ps[HB_CTR_REQUESTS], ps[HB_CTR_RESPONSES], ps[HB_CTR_SHAKE_RECEIVED],
                     ps[HB_CTR_SHAKE_AMOUNT_RECEIVED], ps[HB_CTR_CLAIMS_GRANTED],
                     ps[HB_CTR_SEND_AMOUNT_CLAIMED], ps[HB_CTR_LAT_P50], ps[HB_CTR_LAT_P99],
                     ps[HB_CTR_LAT_MAX]);
    }
    if (s->nic_hosts > 0)
        hb__text_fmt(&o, " nic_rx=%" PRIu64 " nic_tx=%" PRIu64 " hosts=%u",
                     ps[HB_CTR_NIC_RX_PACKETS], ps[HB_CTR_NIC_TX_PACKETS], s->nic_hosts);
    if (s->status == HB_MONITOR_GRACE)
        hb__text_str(&o, " (grace)");
    else if (s->status == HB_MONITOR_INCOMPLETE)
        hb__text_str(&o, " (incomplete)");
    return hb__text_finish(&o);
}

int hb_aggregate_format_csv_header(char *buf, size_t cap)
{
    hb__text_t o;
    if (start(&o, buf, cap) != 0)
        return HB_EINVAL;
    hb__text_str(&o, "second,type,status,reports");
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        if (in_csv(i)) {
            hb__text_str(&o, ",");
            hb__text_str(&o, hb_counter_name(i));
        }
    }
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        if (in_csv(i) && !is_max(i)) {
            hb__text_str(&o, ",");
            hb__text_str(&o, hb_counter_name(i));
            hb__text_str(&o, "_total");
        }
    }
    hb__text_str(&o, "\n");
    return hb__text_finish(&o);
}

int hb_aggregate_format_csv_row(const hb_monitor_second_t *s, char *buf, size_t cap)
{
    hb__text_t o;
    if (s == NULL || start(&o, buf, cap) != 0)
        return HB_EINVAL;
    unsigned st = (unsigned)s->status < 3 ? (unsigned)s->status : HB_MONITOR_INCOMPLETE;
    hb__text_fmt(&o, "%" PRIu64 ",%s,%s,%u", s->second, type_name(s->type), status_names[st],
                 s->reports);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
            if (!in_csv(i) || (pass == 1 && is_max(i)))
                continue;
            hb__text_str(&o, ",");
            if (hb_counter_name_for(s->type, i) == NULL)
                hb__text_str(&o, "0");
            else
                hb__text_u64(&o, pass == 0 ? s->per_second[i] : s->cumulative[i]);
        }
    }
    hb__text_str(&o, "\n");
    return hb__text_finish(&o);
}

int hb_aggregate_format_instance_line(const hb_instance_second_t *is, char *buf, size_t cap)
{
    hb__text_t o;
    if (is == NULL || is->label == NULL || start(&o, buf, cap) != 0)
        return HB_EINVAL;
    const uint64_t *v = is->v;
    hb__text_fmt(&o, "%" PRIu64 " %s %s [%u] req=%" PRIu64, is->second, type_name(is->type),
                 is->label, is->reports, v[HB_INSTANCE_REQUESTS]);
    if (is->type == HB_REPORTER_CLIENT)
        hb__text_fmt(&o, " env=%" PRIu64, v[HB_INSTANCE_RECEIVED]);
    else
        hb__text_fmt(&o, " out=%" PRIu64, v[HB_INSTANCE_HANDED_OUT]);
    hb__text_fmt(&o, " claims=%" PRIu64 " conn=%" PRIu64, v[HB_INSTANCE_CLAIMS],
                 v[HB_INSTANCE_CONNECTIONS]);
    return hb__text_finish(&o);
}

int hb_aggregate_format_instance_csv_header(char *buf, size_t cap)
{
    hb__text_t o;
    if (start(&o, buf, cap) != 0)
        return HB_EINVAL;
    hb__text_str(&o, "second,type,instance,reports");
    for (unsigned f = 0; f < HB_INSTANCE_FIGURES; f++) {
        hb__text_str(&o, ",");
        hb__text_str(&o, hb_instance_figure_name(f));
    }
    hb__text_str(&o, "\n");
    return hb__text_finish(&o);
}

int hb_aggregate_format_instance_csv_row(const hb_instance_second_t *is, char *buf, size_t cap)
{
    hb__text_t o;
    if (is == NULL || is->label == NULL || start(&o, buf, cap) != 0)
        return HB_EINVAL;
    hb__text_fmt(&o, "%" PRIu64 ",%s,%s,%u", is->second, type_name(is->type), is->label,
                 is->reports);
    for (unsigned f = 0; f < HB_INSTANCE_FIGURES; f++) {
        hb__text_str(&o, ",");
        hb__text_u64(&o, is->v[f]);
    }
    hb__text_str(&o, "\n");
    return hb__text_finish(&o);
}

/* One family of one sample, no labels. */
static void prom1(hb__text_t *o, const hb__prom_family_t *f, uint64_t value)
{
    hb__prom_write(o, f, &(hb__prom_sample_t){NULL, value}, 1);
}

/* The per-instance gauges of type t at its latest output second: one family per figure, one
 * sample per live instance of t that reported that second (no family without a sample). */
static void metrics_of_instances(hb__text_t *o, const hb_aggregate_t *a, uint64_t t,
                                 uint64_t second, const char *prefix, const char *who)
{
    /* The catalogue's slot of each figure but the connections (its help text). */
    static const unsigned slot_of_figure[HB_INSTANCE_FIGURES - 1] = {
        [HB_INSTANCE_REQUESTS] = HB_CTR_REQUESTS,
        [HB_INSTANCE_HANDED_OUT] = HB_CTR_SHAKE_HANDED_OUT,
        [HB_INSTANCE_RECEIVED] = HB_CTR_SHAKE_RECEIVED,
        [HB_INSTANCE_CLAIMS] = HB_CTR_CLAIMS_GRANTED,
    };
    for (unsigned f = 0; f < HB_INSTANCE_FIGURES; f++) {
        int conn = f == HB_INSTANCE_CONNECTIONS;
        hb__prom_family_t fam = {
            .name = {prefix, "instance_", hb_instance_figure_name(f), conn ? NULL : "_per_second"},
            .help = {conn ? "Open connections (opened minus closed)"
                          : hb_counter_info(slot_of_figure[f])->help,
                     conn ? ", of each of the " : ", in the report second, of each of the ", who,
                     " (label instance)."},
            .type = "gauge"};
        int header = 0;
        for (unsigned i = 0; i < a->ninstances; i++) {
            hb_instance_second_t is;
            if (hb_aggregate_instance_get(a, i, second, &is) != 0 || is.type != t || !is.live)
                continue;
            if (!header)
                hb__prom_header(o, &fam);
            header = 1;
            char labels[HB_AGGREGATE_LABEL_MAX + 16];
            snprintf(labels, sizeof labels, "instance=\"%s\"", is.label);
            hb__prom_sample(o, &fam, &(hb__prom_sample_t){labels, is.v[f]});
        }
    }
}

/* The families of the latest output second of type t, if any. */
static void metrics_of_type(hb__text_t *o, const hb_aggregate_t *a, uint64_t t)
{
    uint64_t second;
    if (hb_aggregate_latest(a, t, &second) != 0)
        return;
    const hb_monitor_second_t *e = hb_aggregate_at(a, second, t);
    char prefix[32], who[32]; /* "hongbao_server_", "servers" */
    snprintf(prefix, sizeof prefix, "hongbao_%s_", type_name(t));
    snprintf(who, sizeof who, "%ss", type_name(t));
    prom1(o,
          &(hb__prom_family_t){.name = {prefix, "report_second"},
                               .help = {"The latest second output for the ", who, " (Unix time)."},
                               .type = "gauge"},
          second);
    prom1(o,
          &(hb__prom_family_t){.name = {prefix, "reports"},
                               .help = {"Reports from ", who, " added into that second."},
                               .type = "gauge"},
          e->reports);
    prom1(o,
          &(hb__prom_family_t){
              .name = {prefix, "nic_hosts"},
              .help = {"Hosts whose network interface counts were added into that second."},
              .type = "gauge"},
          e->nic_hosts);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *name, *help;
        if (!hb__slot_label(t, i, &a->names, &name, &help))
            continue;
        if (is_max(i)) {
            /* Microseconds ("_us") in Prometheus's base unit: "latency_p99_us" becomes
             * "latency_p99_seconds". */
            char base[64];
            size_t len = strlen(name);
            int micro = len > 3 && len < sizeof base && strcmp(name + len - 3, "_us") == 0;
            snprintf(base, sizeof base, "%.*s", micro ? (int)(len - 3) : (int)len, name);
            prom1(o,
                  &(hb__prom_family_t){.name = {prefix, base, micro ? "_seconds" : NULL},
                                       .help = {help, ", in the report second, maximum over the ",
                                                who, micro ? "; here in seconds." : "."},
                                       .type = "gauge",
                                       .micro = micro},
                  e->per_second[i]);
            continue;
        }
        prom1(o,
              &(hb__prom_family_t){.name = {prefix, name, "_total"},
                                   .help = {help, ", cumulative, summed over the ", who, "."},
                                   .type = "counter"},
              e->cumulative[i]);
        prom1(o,
              &(hb__prom_family_t){
                  .name = {prefix, name, "_per_second"},
                  .help = {help, ", in the report second, summed over the ", who, "."},
                  .type = "gauge"},
              e->per_second[i]);
    }
    metrics_of_instances(o, a, t, second, prefix, who);
}

/* The monitor's own families. */
static void metrics_of_monitor(hb__text_t *o, const hb_aggregate_t *a, const hb_monitor_stats_t *st)
{
    const struct {
        const char *name, *suffix, *type, *help;
        uint64_t value;
    } families[] = {
        {"reporters", "", "gauge", "Reporter connections open now.", st->connections_open},
        {"connections_rejected", "_total", "counter",
         "Reporter connections closed at once: too many reporters.", st->connections_rejected},
        {"reports", "_total", "counter", "Reports accepted.", st->reports},
        {"bad_reports", "_total", "counter", "Reporter connections closed for a malformed report.",
         st->bad_reports},
        {"truncated_reports", "_total", "counter",
         "Reporter connections that ended in the middle of a report.", st->truncated},
        {"late_reports", "_total", "counter", "Reports for a second already output.", st->late},
        {"too_old_reports", "_total", "counter",
         "Reports for a second older than the history, ignored.", st->too_old},
        {"instances", "", "gauge", "Instances (reporting processes) tracked, live or not.",
         a->ninstances},
        {"untracked_reports", "_total", "counter",
         "Reports whose instance found no room in the instance table (still summed).",
         a->instances_untracked},
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        prom1(
            o,
            &(hb__prom_family_t){.name = {"hongbao_monitor_", families[i].name, families[i].suffix},
                                 .help = {families[i].help},
                                 .type = families[i].type},
            families[i].value);
    const hb__prom_sample_t by_status[3] = {
        {"status=\"complete\"", st->seconds_complete},
        {"status=\"grace\"", st->seconds_grace},
        {"status=\"incomplete\"", st->seconds_incomplete},
    };
    hb__prom_write(o,
                   &(hb__prom_family_t){.name = {"hongbao_monitor_seconds_total"},
                                        .help = {"Seconds output, by how they completed."},
                                        .type = "counter"},
                   by_status, 3);
}

int hb_aggregate_format_metrics(const hb_aggregate_t *a, const hb_monitor_stats_t *stats, char *buf,
                                size_t cap)
{
    hb__text_t o;
    if (a == NULL || a->ring == NULL || start(&o, buf, cap) != 0)
        return HB_EINVAL;
    for (size_t k = 0; k < NTYPES_SHOWN; k++)
        metrics_of_type(&o, a, types_shown[k]);
    if (stats != NULL)
        metrics_of_monitor(&o, a, stats);
    return hb__text_finish(&o);
}

/* What a series array shows of each second. */
enum series_what { PER_SECOND, CUMULATIVE, REPORTS, STATUS, NIC_HOSTS };

/* The array of one value (slot i's, or the reports or status) of type t over [first, last]. */
static void series_values(hb__text_t *o, const hb_aggregate_t *a, uint64_t t, enum series_what what,
                          unsigned i, uint64_t first, uint64_t last)
{
    hb__text_str(o, "[");
    for (uint64_t s = first; s <= last; s++) {
        const hb_monitor_second_t *e = hb_aggregate_at(a, s, t);
        if (s != first)
            hb__text_str(o, ",");
        if (e == NULL || !e->output)
            hb__text_str(o, "null");
        else if (what == PER_SECOND)
            hb__text_u64(o, e->per_second[i]);
        else if (what == CUMULATIVE)
            hb__text_u64(o, e->cumulative[i]);
        else if (what == REPORTS)
            hb__text_u64(o, e->reports);
        else if (what == NIC_HOSTS)
            hb__text_u64(o, e->nic_hosts);
        else
            hb__text_u64(o, (uint64_t)e->status);
    }
    hb__text_str(o, "]");
}

/* The object of type t: reports, status and the named slots' arrays ("[]" each without have). */
static void series_of_type(hb__text_t *o, const hb_aggregate_t *a, uint64_t t, int have,
                           uint64_t first, uint64_t last)
{
    hb__text_fmt(o, ",\"%s\":{", type_name(t));
    hb__text_str(o, "\"reports\":");
    if (have)
        series_values(o, a, t, REPORTS, 0, first, last);
    else
        hb__text_str(o, "[]");
    hb__text_str(o, ",\"status\":");
    if (have)
        series_values(o, a, t, STATUS, 0, first, last);
    else
        hb__text_str(o, "[]");
    hb__text_str(o, ",\"nic_hosts\":");
    if (have)
        series_values(o, a, t, NIC_HOSTS, 0, first, last);
    else
        hb__text_str(o, "[]");
    for (int what = PER_SECOND; what <= CUMULATIVE; what++) {
        hb__text_str(o, what == PER_SECOND ? ",\"per_second\":{" : ",\"cumulative\":{");
        const char *sep = "";
        for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
            const char *n, *help;
            if (!hb__slot_label(t, i, &a->names, &n, &help) || (what == CUMULATIVE && is_max(i)))
                continue;
            hb__text_fmt(o, "%s\"%s\":", sep, n);
            sep = ",";
            if (have)
                series_values(o, a, t, (enum series_what)what, i, first, last);
            else
                hb__text_str(o, "[]");
        }
        hb__text_str(o, "}");
    }
    hb__text_str(o, "}");
}

/* Whether instance i has a report of some second of [first, last] whose type's second is output. */
static int instance_shown(const hb_aggregate_t *a, unsigned i, uint64_t first, uint64_t last)
{
    for (uint64_t s = first; s <= last; s++) {
        hb_instance_second_t is;
        const hb_monitor_second_t *e;
        if (hb_aggregate_instance_get(a, i, s, &is) == 0 &&
            (e = hb_aggregate_at(a, s, is.type)) != NULL && e->output)
            return 1;
    }
    return 0;
}

/* The "instances" array and the "instance_table" object over [first, last] (have: any second). */
static void series_of_instances(hb__text_t *o, const hb_aggregate_t *a, int have, uint64_t first,
                                uint64_t last)
{
    hb__text_str(o, ",\"instances\":[");
    const char *sep = "";
    for (unsigned i = 0; have && i < a->ninstances; i++) {
        if (!instance_shown(a, i, first, last))
            continue;
        hb_instance_second_t is;
        hb_aggregate_instance_get(a, i, first, &is);
        hb__text_fmt(o, "%s{\"label\":\"%s\",\"type\":\"%s\",\"live\":%s", sep, is.label,
                     type_name(is.type), is.live ? "true" : "false");
        sep = ",";
        for (int f = -1; f < HB_INSTANCE_FIGURES; f++) {
            hb__text_fmt(o, ",\"%s\":[", f < 0 ? "reports" : hb_instance_figure_name((unsigned)f));
            for (uint64_t s = first; s <= last; s++) {
                const hb_monitor_second_t *e;
                if (s != first)
                    hb__text_str(o, ",");
                if (hb_aggregate_instance_get(a, i, s, &is) != 0 ||
                    (e = hb_aggregate_at(a, s, is.type)) == NULL || !e->output)
                    hb__text_str(o, "null");
                else
                    hb__text_u64(o, f < 0 ? is.reports : is.v[f]);
            }
            hb__text_str(o, "]");
        }
        hb__text_str(o, "}");
    }
    hb__text_fmt(o, "],\"instance_table\":{\"tracked\":%u,\"max\":%u,\"untracked_reports\":",
                 a->ninstances, a->opts.max_instances);
    hb__text_u64(o, a->instances_untracked);
    hb__text_str(o, "}");
}

int hb_aggregate_format_series(const hb_aggregate_t *a, const hb_monitor_stats_t *stats,
                               uint64_t now_s, unsigned seconds, char *buf, size_t cap)
{
    hb__text_t o;
    if (a == NULL || a->ring == NULL || start(&o, buf, cap) != 0)
        return HB_EINVAL;
    if (seconds < 1)
        seconds = 1;
    if (seconds > a->opts.history_s)
        seconds = a->opts.history_s;
    int have = 0;
    uint64_t first = 0, last = 0, s;
    for (uint64_t t = 0; t < HB_REPORTER_TYPES; t++) {
        if (hb_aggregate_latest(a, t, &s) == 0 && (!have || s > last)) {
            last = s;
            have = 1;
        }
    }
    uint64_t oldest, newest;
    if (have && hb_aggregate_range(a, &oldest, &newest) == 0) {
        first = last >= seconds - 1 ? last - (seconds - 1) : 0;
        if (first < oldest)
            first = oldest; /* no leading seconds without any report */
    }
    hb__text_str(&o, "{\"now\":");
    hb__text_u64(&o, now_s);
    if (have) {
        hb__text_str(&o, ",\"first\":");
        hb__text_u64(&o, first);
        hb__text_str(&o, ",\"last\":");
        hb__text_u64(&o, last);
        hb__text_str(&o, ",\"seconds\":[");
        for (s = first; s <= last; s++) {
            if (s != first)
                hb__text_str(&o, ",");
            hb__text_u64(&o, s);
        }
        hb__text_str(&o, "]");
    } else {
        hb__text_str(&o, ",\"first\":null,\"last\":null,\"seconds\":[]");
    }
    for (size_t k = 0; k < NTYPES_SHOWN; k++)
        series_of_type(&o, a, types_shown[k], have, first, last);
    series_of_instances(&o, a, have, first, last);
    if (stats != NULL) {
        const struct {
            const char *name;
            uint64_t value;
        } fields[] = {
            {"reporters", stats->connections_open},
            {"reports", stats->reports},
            {"bad_reports", stats->bad_reports},
            {"truncated", stats->truncated},
            {"late", stats->late},
            {"too_old", stats->too_old},
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            hb__text_fmt(&o, "%s\"%s\":", i == 0 ? ",\"monitor\":{" : ",", fields[i].name);
            hb__text_u64(&o, fields[i].value);
        }
        hb__text_str(&o, "}");
    }
    hb__text_str(&o, "}");
    return hb__text_finish(&o);
}
