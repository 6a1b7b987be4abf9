/* The monitor's aggregation: reports added per (second, type) into a bounded ring, the reporters
 * a second waits for, and the completeness rule that outputs it. Pure: the caller gives the time.
 */
#include "hongbao/aggregate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NTYPES HB_REPORTER_TYPES
/* The PER_HOST slots (the host's NIC), in the order a host keeps them. */
#define NIC_SLOTS 4
static const unsigned nic_slots[NIC_SLOTS] = {HB_CTR_NIC_RX_PACKETS, HB_CTR_NIC_TX_PACKETS,
                                              HB_CTR_NIC_RX_BYTES, HB_CTR_NIC_TX_BYTES};

/* One (second, type) of the history. */
struct hb_aggregate_entry {
    hb_monitor_second_t s;
    uint64_t first_ms; /* when its first report was added */
    int held;          /* a report of this second and type was added */
};

/* One host of one type, for the PER_HOST slots: what it added to each recent second (the maximum
 * over its reports of that second), and the maximum of its reporters' cumulative values. Entry
 * s % HB_AGGREGATE_HOST_WINDOW of its window holds second s; the seconds an entry holds only grow,
 * so a (host, second) whose entry moved on is never added again. */
struct host_second {
    uint64_t second;
    int held;
    uint64_t v[NIC_SLOTS];
};
struct hb_aggregate_host {
    uint64_t id;
    uint64_t type;
    unsigned reporters; /* joined reporters whose latest report named it */
    uint64_t newest;    /* the newest second its reports described */
    uint64_t cum[NIC_SLOTS];
    struct host_second win[HB_AGGREGATE_HOST_WINDOW];
};

/* One instance (see aggregate.h): its figures of each recent second. Entry s % instance_window of
 * win holds second s (reports 0: empty); the seconds an entry holds only grow. */
struct instance_second {
    uint64_t second;
    unsigned reports;
    uint64_t v[HB_INSTANCE_FIGURES];
};
struct hb_aggregate_instance {
    char label[HB_AGGREGATE_LABEL_MAX];
    uint64_t type;
    unsigned reporters;          /* joined reporters whose latest report named it */
    uint64_t newest;             /* the newest second its reports described */
    struct instance_second *win; /* instance_window entries, allocated when the place is first
                                    used, kept when it is reused */
};

int hb_aggregate_init(hb_aggregate_t *a, const hb_aggregate_options_t *opts)
{
    if (a == NULL)
        return HB_EINVAL;
    hb_aggregate_options_t o;
    if (opts != NULL)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    if (o.max_reporters == 0)
        o.max_reporters = HB_AGGREGATE_DEFAULT_MAX_REPORTERS;
    if (o.history_s == 0)
        o.history_s = HB_AGGREGATE_DEFAULT_HISTORY_S;
    if (o.grace_ms == 0)
        o.grace_ms = HB_AGGREGATE_DEFAULT_GRACE_MS;
    if (o.known_ms == 0)
        o.known_ms = HB_AGGREGATE_DEFAULT_KNOWN_MS;
    if (o.max_instances == 0)
        o.max_instances = HB_AGGREGATE_DEFAULT_MAX_INSTANCES;
    if (o.max_reporters > HB_AGGREGATE_MAX_REPORTERS || o.history_s < HB_AGGREGATE_MIN_HISTORY_S ||
        o.history_s > HB_AGGREGATE_MAX_HISTORY_S || o.max_instances > HB_AGGREGATE_MAX_INSTANCES)
        return HB_EINVAL;
    struct hb_aggregate_entry *ring = calloc((size_t)o.history_s * NTYPES, sizeof *ring);
    hb_aggregate_reporter_t **reporters = calloc(o.max_reporters, sizeof *reporters);
    struct hb_aggregate_host *hosts = calloc(o.max_reporters, sizeof *hosts);
    struct hb_aggregate_instance *instances = calloc(o.max_instances, sizeof *instances);
    if (ring == NULL || reporters == NULL || hosts == NULL || instances == NULL) {
        free(ring);
        free(reporters);
        free(hosts);
        free(instances);
        return HB_ENOMEM;
    }
    memset(a, 0, sizeof *a);
    a->opts = o;
    if (o.names != NULL)
        a->names = *o.names;
    a->opts.names = &a->names;
    a->ring = ring;
    a->reporters = reporters;
    a->hosts = hosts;
    a->instances = instances;
    a->instance_window = o.history_s < HB_AGGREGATE_INSTANCE_HISTORY_S
                             ? o.history_s
                             : HB_AGGREGATE_INSTANCE_HISTORY_S;
    return 0;
}

void hb_aggregate_close(hb_aggregate_t *a)
{
    if (a == NULL || a->ring == NULL)
        return;
    for (unsigned i = 0; i < a->nreporters; i++)
        a->reporters[i]->joined = 0;
    for (unsigned i = 0; i < a->ninstances; i++)
        free(a->instances[i].win);
    free(a->ring);
    free(a->reporters);
    free(a->hosts);
    free(a->instances);
    a->ring = NULL;
    a->reporters = NULL;
    a->hosts = NULL;
    a->instances = NULL;
    a->nreporters = 0;
    a->nhosts = 0;
    a->ninstances = 0;
}

int hb_aggregate_join(hb_aggregate_t *a, hb_aggregate_reporter_t *rep, uint64_t now_ms)
{
    if (a == NULL || a->ring == NULL || rep == NULL)
        return HB_EINVAL;
    if (a->nreporters >= a->opts.max_reporters)
        return HB_ENOBUFS;
    void *data = rep->data;
    char peer[sizeof rep->peer];
    memcpy(peer, rep->peer, sizeof peer);
    memset(rep, 0, sizeof *rep);
    rep->data = data;
    memcpy(rep->peer, peer, sizeof peer);
    rep->peer[sizeof rep->peer - 1] = '\0';
    rep->serial = ++a->joins;
    rep->joined = 1;
    rep->heard_ms = now_ms;
    rep->index = a->nreporters;
    a->reporters[a->nreporters++] = rep;
    return 0;
}

/* Rep's latest report names no host, or another than before: it leaves its host. */
static void host_release(hb_aggregate_t *a, hb_aggregate_reporter_t *rep)
{
    if (rep->host != 0)
        a->hosts[rep->host - 1].reporters--;
    rep->host = 0;
}

/* Rep's latest report names another instance than before, or it leaves: it leaves its instance. */
static void instance_release(hb_aggregate_t *a, hb_aggregate_reporter_t *rep)
{
    if (rep->instance != 0)
        a->instances[rep->instance - 1].reporters--;
    rep->instance = 0;
}

void hb_aggregate_leave(hb_aggregate_t *a, hb_aggregate_reporter_t *rep)
{
    if (a == NULL || rep == NULL || !rep->joined)
        return;
    host_release(a, rep);
    instance_release(a, rep);
    rep->joined = 0;
    hb_aggregate_reporter_t *last = a->reporters[--a->nreporters];
    a->reporters[rep->index] = last;
    last->index = rep->index;
    a->reporters[a->nreporters] = NULL;
}

/* ---- the ring ---- */

/* The oldest second the ring may hold, given its newest. */
static uint64_t oldest_second(const hb_aggregate_t *a)
{
    unsigned history = a->opts.history_s;
    return a->newest >= history - 1 ? a->newest - (history - 1) : 0;
}

static struct hb_aggregate_entry *slot_of(const hb_aggregate_t *a, uint64_t second, uint64_t type)
{
    return &a->ring[(second % a->opts.history_s) * NTYPES + type];
}

/* The entry of (second, type) if the history holds it, else NULL. */
static struct hb_aggregate_entry *entry(const hb_aggregate_t *a, uint64_t second, uint64_t type)
{
    if (!a->have_newest || type >= NTYPES || second > a->newest || second < oldest_second(a))
        return NULL;
    struct hb_aggregate_entry *e = slot_of(a, second, type);
    return e->held && e->s.second == second ? e : NULL;
}

/* ---- completeness and output ---- */

/* The newest second every expected reporter of type has reached, into *horizon (UINT64_MAX when
 * none is expected). Returns 0 when some expected reporter has not reported yet, so no second
 * can be complete by the rule. */
static int horizon_of(const hb_aggregate_t *a, uint64_t type, uint64_t now, uint64_t *horizon)
{
    uint64_t h = UINT64_MAX;
    for (unsigned i = 0; i < a->nreporters; i++) {
        const hb_aggregate_reporter_t *rep = a->reporters[i];
        if (now > rep->heard_ms && now - rep->heard_ms > a->opts.known_ms)
            continue; /* silent too long: not waited for */
        if (!rep->reported)
            return 0;
        if (rep->type != type)
            continue;
        if (rep->last_second < h)
            h = rep->last_second;
    }
    *horizon = h;
    return 1;
}

static void output(hb_aggregate_t *a, struct hb_aggregate_entry *e, uint64_t type,
                   hb_monitor_status_t status)
{
    e->s.output = 1;
    e->s.status = status;
    if (!a->have_latest[type] || e->s.second > a->latest[type]) {
        a->have_latest[type] = 1;
        a->latest[type] = e->s.second;
    }
    if (a->opts.on_second != NULL) {
        hb_monitor_second_t s = e->s; /* a copy: the callback may add reports */
        a->emitting++;
        a->opts.on_second(a, &s, a->opts.on_second_arg);
        a->emitting--;
    }
}

/* Output the entries of type from next[type] on, in order, while they are due at now; with force,
 * every entry up to and including limit is output whether due or not (INCOMPLETE when not). */
static void emit(hb_aggregate_t *a, uint64_t type, uint64_t now, int force, uint64_t limit)
{
    if (!a->have_newest)
        return;
    uint64_t horizon = 0;
    int rule = horizon_of(a, type, now, &horizon);
    uint64_t s = a->next[type];
    uint64_t oldest = oldest_second(a);
    if (s < oldest)
        s = oldest;
    for (; s <= a->newest; s++) {
        struct hb_aggregate_entry *e = entry(a, s, type);
        if (e == NULL || e->s.output)
            continue;
        hb_monitor_status_t status;
        if (rule && s <= horizon)
            status = HB_MONITOR_COMPLETE;
        else if (now >= e->first_ms + a->opts.grace_ms)
            status = HB_MONITOR_GRACE;
        else if (force && s <= limit)
            status = HB_MONITOR_INCOMPLETE;
        else
            break;
        output(a, e, type, status);
    }
    a->next[type] = s;
}

void hb_aggregate_tick(hb_aggregate_t *a, uint64_t now_ms)
{
    if (a == NULL || a->ring == NULL || a->emitting)
        return;
    for (uint64_t t = 0; t < NTYPES; t++)
        emit(a, t, now_ms, 0, 0);
}

void hb_aggregate_flush(hb_aggregate_t *a, uint64_t now_ms)
{
    if (a == NULL || a->ring == NULL || a->emitting)
        return;
    for (uint64_t t = 0; t < NTYPES; t++)
        emit(a, t, now_ms, 1, UINT64_MAX);
}

/* Make the ring's newest second `second`, outputting first what would fall out of it. */
static void advance(hb_aggregate_t *a, uint64_t second, uint64_t now)
{
    unsigned history = a->opts.history_s;
    if (a->have_newest) {
        uint64_t new_oldest = second >= history - 1 ? second - (history - 1) : 0;
        if (new_oldest > 0 && !a->emitting)
            for (uint64_t t = 0; t < NTYPES; t++)
                emit(a, t, now, 1, new_oldest - 1);
    } else {
        a->next[0] = a->next[1] = second;
    }
    a->have_newest = 1;
    a->newest = second;
}

/* ---- hosts: the PER_HOST slots ---- */

/* The host (type, id) that rep's report names, made rep's host; a new one takes a free place or
 * that of the host no joined reporter names that was heard of least recently (its totals stay
 * counted). NULL when every place holds a host with joined reporters. */
static struct hb_aggregate_host *host_of(hb_aggregate_t *a, hb_aggregate_reporter_t *rep,
                                         uint64_t type, uint64_t id)
{
    if (rep->host != 0) {
        struct hb_aggregate_host *h = &a->hosts[rep->host - 1];
        if (h->id == id && h->type == type)
            return h;
        host_release(a, rep);
    }
    unsigned found = a->nhosts, spare = a->nhosts;
    for (unsigned i = 0; i < a->nhosts && found == a->nhosts; i++) {
        const struct hb_aggregate_host *h = &a->hosts[i];
        if (h->id == id && h->type == type)
            found = i;
        else if (h->reporters == 0 && (spare == a->nhosts || h->newest < a->hosts[spare].newest))
            spare = i;
    }
    if (found == a->nhosts) {
        if (a->nhosts < a->opts.max_reporters)
            found = a->nhosts++;
        else if (spare < a->nhosts)
            found = spare;
        else
            return NULL;
        struct hb_aggregate_host *h = &a->hosts[found];
        memset(h, 0, sizeof *h);
        h->id = id;
        h->type = type;
    }
    struct hb_aggregate_host *h = &a->hosts[found];
    h->reporters++;
    rep->host = found + 1;
    return h;
}

/* A reporter of host h sent r: the host's totals are the maximum of its reporters' latest. */
static void host_add_cumulative(hb_aggregate_t *a, struct hb_aggregate_host *h,
                                const hb_report_t *r)
{
    uint64_t *total = a->total_cum[h->type];
    for (unsigned k = 0; k < NIC_SLOTS; k++) {
        uint64_t v = r->cumulative[nic_slots[k]];
        if (v > h->cum[k]) {
            total[nic_slots[k]] += v - h->cum[k];
            h->cum[k] = v;
        }
    }
    if (r->second > h->newest)
        h->newest = r->second;
}

/* Add host h's report r to its second's aggregate s: up to the maximum of the host's reports. */
static void host_add_second(struct hb_aggregate_host *h, hb_monitor_second_t *s,
                            const hb_report_t *r)
{
    struct host_second *w = &h->win[r->second % HB_AGGREGATE_HOST_WINDOW];
    if (w->held && w->second > r->second)
        return; /* older than the host's window: it may have been counted already */
    if (!w->held || w->second != r->second) {
        memset(w, 0, sizeof *w);
        w->held = 1;
        w->second = r->second;
        s->nic_hosts++;
    }
    for (unsigned k = 0; k < NIC_SLOTS; k++) {
        uint64_t v = r->per_second[nic_slots[k]];
        if (v > w->v[k]) {
            s->per_second[nic_slots[k]] += v - w->v[k];
            w->v[k] = v;
        }
    }
}

/* ---- instances ---- */

/* Copy a label into label[HB_AGGREGATE_LABEL_MAX], keeping it to characters that need no escaping
 * in JSON, CSV or a Prometheus label value (others become '_'). */
static void label_copy(char *label, const char *text)
{
    size_t n = 0;
    for (; text[n] != '\0' && n < HB_AGGREGATE_LABEL_MAX - 1; n++) {
        char ch = text[n];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 strchr(".:[]%_-", ch) != NULL;
        label[n] = ok ? ch : '_';
    }
    label[n] = '\0';
}

/* The label of the instance rep's report r comes from (see aggregate.h). */
static void instance_label(const hb_aggregate_reporter_t *rep, const hb_report_t *r, char *label)
{
    char text[HB_AGGREGATE_LABEL_MAX], host[HB_AGGREGATE_LABEL_MAX];
    /* The peer's host: its text up to the last colon ("127.0.0.1", "[::1]"). */
    const char *colon = strrchr(rep->peer, ':');
    snprintf(host, sizeof host, "%.*s", colon != NULL ? (int)(colon - rep->peer) : 0, rep->peer);
    if (hb_report_instance_label(r->per_second[HB_CTR_INSTANCE], host, text, sizeof text) > 0)
        label_copy(label, text);
    else if (rep->peer[0] != '\0')
        label_copy(label, rep->peer);
    else
        snprintf(label, HB_AGGREGATE_LABEL_MAX, "reporter-%llu", (unsigned long long)rep->serial);
}

/* The instance rep's report r (of type t) comes from, made rep's instance; a new one takes a free
 * place or that of the instance not live whose latest report is oldest. NULL when every place
 * holds a live instance (or its series cannot be allocated). */
static struct hb_aggregate_instance *instance_of(hb_aggregate_t *a, hb_aggregate_reporter_t *rep,
                                                 const hb_report_t *r, uint64_t t)
{
    uint64_t id = r->per_second[HB_CTR_INSTANCE];
    if (rep->instance != 0 && rep->instance_id == id)
        return &a->instances[rep->instance - 1];
    instance_release(a, rep);
    char label[HB_AGGREGATE_LABEL_MAX];
    instance_label(rep, r, label);
    unsigned found = a->ninstances, spare = a->ninstances;
    for (unsigned i = 0; i < a->ninstances && found == a->ninstances; i++) {
        const struct hb_aggregate_instance *in = &a->instances[i];
        if (in->type == t && strcmp(in->label, label) == 0)
            found = i;
        else if (in->reporters == 0 &&
                 (spare == a->ninstances || in->newest < a->instances[spare].newest))
            spare = i;
    }
    if (found == a->ninstances) {
        if (a->ninstances < a->opts.max_instances)
            found = a->ninstances;
        else if (spare < a->ninstances)
            found = spare;
        else
            return NULL;
        struct hb_aggregate_instance *in = &a->instances[found];
        if (in->win == NULL) {
            in->win = malloc((size_t)a->instance_window * sizeof *in->win);
            if (in->win == NULL)
                return NULL;
        }
        if (found == a->ninstances)
            a->ninstances++;
        memset(in->win, 0, (size_t)a->instance_window * sizeof *in->win);
        memcpy(in->label, label, sizeof label);
        in->type = t;
        in->reporters = 0;
        in->newest = 0;
    }
    struct hb_aggregate_instance *in = &a->instances[found];
    in->reporters++;
    rep->instance = found + 1;
    rep->instance_id = id;
    return in;
}

/* Add report r to its instance's second. */
static void instance_add(hb_aggregate_t *a, struct hb_aggregate_instance *in, const hb_report_t *r)
{
    struct instance_second *w = &in->win[r->second % a->instance_window];
    if (w->reports > 0 && w->second > r->second)
        return; /* older than the instance's series */
    if (w->reports == 0 || w->second != r->second) {
        memset(w, 0, sizeof *w);
        w->second = r->second;
    }
    w->reports++;
    const uint64_t *ps = r->per_second, *cum = r->cumulative;
    w->v[HB_INSTANCE_REQUESTS] += ps[HB_CTR_REQUESTS];
    w->v[HB_INSTANCE_HANDED_OUT] += ps[HB_CTR_SHAKE_HANDED_OUT];
    w->v[HB_INSTANCE_RECEIVED] += ps[HB_CTR_SHAKE_RECEIVED];
    w->v[HB_INSTANCE_CLAIMS] += ps[HB_CTR_CLAIMS_GRANTED];
    if (cum[HB_CTR_CONN_OPENED] > cum[HB_CTR_CONN_CLOSED])
        w->v[HB_INSTANCE_CONNECTIONS] += cum[HB_CTR_CONN_OPENED] - cum[HB_CTR_CONN_CLOSED];
    if (r->second > in->newest)
        in->newest = r->second;
}

int hb_aggregate_instance_get(const hb_aggregate_t *a, unsigned i, uint64_t second,
                              hb_instance_second_t *out)
{
    if (a == NULL || a->ring == NULL || out == NULL || i >= a->ninstances)
        return HB_EINVAL;
    const struct hb_aggregate_instance *in = &a->instances[i];
    memset(out, 0, sizeof *out);
    out->label = in->label;
    out->type = in->type;
    out->live = in->reporters > 0;
    out->newest = in->newest;
    out->second = second;
    const struct instance_second *w = &in->win[second % a->instance_window];
    if (w->reports == 0 || w->second != second)
        return HB_ENOENT;
    out->reports = w->reports;
    memcpy(out->v, w->v, sizeof out->v);
    return 0;
}

const char *hb_instance_figure_name(unsigned f)
{
    static const char *const names[HB_INSTANCE_FIGURES] = {
        [HB_INSTANCE_REQUESTS] = "requests",       [HB_INSTANCE_HANDED_OUT] = "shake_handed_out",
        [HB_INSTANCE_RECEIVED] = "shake_received", [HB_INSTANCE_CLAIMS] = "claims_granted",
        [HB_INSTANCE_CONNECTIONS] = "connections",
    };
    return f < HB_INSTANCE_FIGURES ? names[f] : NULL;
}

int hb_aggregate_add(hb_aggregate_t *a, hb_aggregate_reporter_t *rep, const hb_report_t *r,
                     uint64_t now_ms)
{
    if (a == NULL || a->ring == NULL || rep == NULL || !rep->joined || r == NULL ||
        r->type >= NTYPES)
        return HB_EINVAL;
    uint64_t now_s = now_ms / 1000;
    uint64_t skew = r->second > now_s ? r->second - now_s : now_s - r->second;
    if (skew > HB_AGGREGATE_MAX_SKEW_S)
        return HB_AGGREGATE_SKEWED;
    if (rep->reported && r->type != rep->type)
        return HB_AGGREGATE_TYPE_CHANGED;

    /* The cumulative rule: each reporter's latest totals, summed over every reporter; for the
     * PER_HOST slots each host's, summed over every host. */
    uint64_t t = r->type;
    uint64_t *total = a->total_cum[t];
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        hb_counter_combine_t how = hb_counter_combine(i);
        if (how == HB_COUNTER_COMBINE_PER_HOST || how == HB_COUNTER_COMBINE_IDENTITY)
            continue;
        total[i] += r->cumulative[i] - rep->cum[i]; /* wraps like the counters themselves */
        rep->cum[i] = r->cumulative[i];
    }
    uint64_t host_id = r->cumulative[HB_CTR_NIC_HOST];
    struct hb_aggregate_host *host = NULL;
    if (host_id != 0)
        host = host_of(a, rep, t, host_id);
    else
        host_release(a, rep);
    if (host != NULL)
        host_add_cumulative(a, host, r);
    rep->heard_ms = now_ms;
    if (!rep->reported || r->second > rep->last_second)
        rep->last_second = r->second;
    rep->reported = 1;
    rep->type = t;

    if (!a->have_newest || r->second > a->newest)
        advance(a, r->second, now_ms);
    if (r->second < oldest_second(a))
        return HB_AGGREGATE_TOO_OLD;
    struct hb_aggregate_instance *in = instance_of(a, rep, r, t);
    if (in != NULL)
        instance_add(a, in, r);
    else
        a->instances_untracked++;
    struct hb_aggregate_entry *e = slot_of(a, r->second, t);
    if (!e->held || e->s.second != r->second) {
        memset(e, 0, sizeof *e);
        e->s.second = r->second;
        e->s.type = t;
        e->held = 1;
        e->first_ms = now_ms;
        if (r->second < a->next[t])
            a->next[t] = r->second;
    }
    e->s.reports++;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        switch (hb_counter_combine(i)) {
        case HB_COUNTER_COMBINE_MAX:
            if (r->per_second[i] > e->s.per_second[i])
                e->s.per_second[i] = r->per_second[i];
            if (r->cumulative[i] > e->s.cumulative[i])
                e->s.cumulative[i] = r->cumulative[i];
            break;
        case HB_COUNTER_COMBINE_SUM:
            e->s.per_second[i] += r->per_second[i];
            e->s.cumulative[i] = total[i];
            break;
        case HB_COUNTER_COMBINE_PER_HOST: /* per_second: host_add_second */
            e->s.cumulative[i] = total[i];
            break;
        case HB_COUNTER_COMBINE_IDENTITY:
            break;
        }
    }
    if (host != NULL)
        host_add_second(host, &e->s, r);
    return e->s.output ? HB_AGGREGATE_LATE : HB_AGGREGATE_ADDED;
}

/* ---- queries ---- */

const hb_monitor_second_t *hb_aggregate_at(const hb_aggregate_t *a, uint64_t second, uint64_t type)
{
    if (a == NULL || a->ring == NULL)
        return NULL;
    const struct hb_aggregate_entry *e = entry(a, second, type);
    return e != NULL ? &e->s : NULL;
}

int hb_aggregate_get(const hb_aggregate_t *a, uint64_t second, uint64_t type,
                     hb_monitor_second_t *out)
{
    if (a == NULL || a->ring == NULL || out == NULL)
        return HB_EINVAL;
    const hb_monitor_second_t *s = hb_aggregate_at(a, second, type);
    if (s == NULL)
        return HB_ENOENT;
    *out = *s;
    return 0;
}

int hb_aggregate_range(const hb_aggregate_t *a, uint64_t *oldest, uint64_t *newest)
{
    if (a == NULL || a->ring == NULL || oldest == NULL || newest == NULL)
        return HB_EINVAL;
    if (!a->have_newest)
        return HB_ENOENT;
    for (uint64_t s = oldest_second(a); s <= a->newest; s++) {
        if (entry(a, s, 0) != NULL || entry(a, s, 1) != NULL) {
            *oldest = s;
            *newest = a->newest;
            return 0;
        }
    }
    return HB_ENOENT;
}

int hb_aggregate_latest(const hb_aggregate_t *a, uint64_t type, uint64_t *second)
{
    if (a == NULL || a->ring == NULL || second == NULL)
        return HB_EINVAL;
    if (type >= NTYPES || !a->have_latest[type] || entry(a, a->latest[type], type) == NULL)
        return HB_ENOENT;
    *second = a->latest[type];
    return 0;
}
