/* Per-second and cumulative counters: one shard per writer thread, a ring of recent seconds per
 * shard guarded by a seqlock-like tag, and the monitor report's wire format and renderings. */
#include "hongbao/counters.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/proto.h"

#define HB_COUNTERS_MAX_SHARDS 1024
#define HB_CACHE_LINE          64
/* The tag an entry holds while it is being zeroed for a new second. No add ever tags an entry
 * with it: adds for that second count only in the cumulative totals. */
#define HB_TAG_RESETTING UINT64_MAX

/* One second of one shard. */
struct hb_counters_entry {
    _Atomic uint64_t second_tag;
    _Atomic uint64_t v[HB_COUNTER_SLOTS];
};

/* One writer's counters. The writer (one thread at a time) loads and stores, never
 * read-modify-writes; readers load. Entry t % HISTORY holds second t while t is inside the
 * window (newest - HISTORY, newest]. An entry's tag only ever grows (apart from the transient
 * HB_TAG_RESETTING), which is what lets a reader that sees the same tag before and after reading
 * the values trust them.
 *
 * Memory order, seqlock-like without fences (GCC refuses atomic_thread_fence under
 * -fsanitize=thread, and ThreadSanitizer does not model fences): every store to an entry's
 * values is a release store and every reader load of them an acquire load, both plain moves on
 * x86. A reader that loads any value stored after the entry was retagged HB_TAG_RESETTING
 * therefore also sees that tag (or a later one) when it reloads the tag afterwards. The
 * cumulative totals need no ordering and stay relaxed. */
struct hb_counters_shard {
    alignas(HB_CACHE_LINE) struct hb_counters_entry ring[HB_COUNTERS_HISTORY];
    _Atomic uint64_t cumulative[HB_COUNTER_SLOTS];
    _Atomic uint64_t newest;
};

/* Names and meanings (the Prometheus HELP text) of the slots; NULL for the free ones. */
static const struct {
    const char *name;
    const char *help;
} hb_counter_slots[HB_COUNTER_SLOTS] = {
    [HB_CTR_FRAME_LOGIN] = {"frame_login", "Login frames seen (cmd 0)"},
    [HB_CTR_FRAME_LOGIN_REPLY] = {"frame_login_reply", "Login reply frames seen (cmd 1)"},
    [HB_CTR_FRAME_SHAKE] = {"frame_shake", "Shake frames seen (cmd 2)"},
    [HB_CTR_FRAME_SHAKE_REPLY] = {"frame_shake_reply", "Shake reply frames seen (cmd 3)"},
    [HB_CTR_FRAME_NOTICE] = {"frame_notice", "Send-envelope notice frames seen (cmd 4)"},
    [HB_CTR_FRAME_CLAIM] = {"frame_claim", "Claim frames seen (cmd 5)"},
    [HB_CTR_FRAME_CLAIM_REPLY] = {"frame_claim_reply", "Claim reply frames seen (cmd 6)"},
    [HB_CTR_REQUESTS] = {"requests", "Requests"},
    [HB_CTR_RESPONSES] = {"responses", "Responses"},
    [HB_CTR_SHAKE_GOT] = {"shake_got", "Shakes that got an envelope (result 14)"},
    [HB_CTR_SHAKE_NONE] = {"shake_none", "Shakes that got no envelope (result 15)"},
    [HB_CTR_SHAKE_ALL_TAKEN] = {"shake_all_taken",
                                "Shakes answered all envelopes taken (result 16)"},
    [HB_CTR_SHAKE_OVERLOAD] = {"shake_overload", "Shakes answered overloaded (result 17)"},
    [HB_CTR_SHAKE_HANDED_OUT] = {"shake_handed_out", "Shake envelopes handed out"},
    [HB_CTR_CONN_OPENED] = {"conn_opened", "Connections opened"},
    [HB_CTR_CONN_CLOSED] = {"conn_closed", "Connections closed"},
    [HB_CTR_SHAKE_ENVELOPES] = {"shake_envelopes", "Shake envelopes generated"},
    [HB_CTR_SHAKE_RECEIVED] = {"shake_received", "Shake envelopes received (client side)"},
    [HB_CTR_SHAKE_AMOUNT_ISSUED] = {"shake_amount_issued", "Shake envelope amount issued (cents)"},
    [HB_CTR_SHAKE_AMOUNT_RECEIVED] = {"shake_amount_received",
                                      "Shake envelope amount received (cents)"},
    [HB_CTR_SEND_CREATED] = {"send_created", "Send-envelopes created"},
    [HB_CTR_CLAIMS_GRANTED] = {"claims_granted", "Send-envelope claims granted"},
    [HB_CTR_SEND_AMOUNT_ISSUED] = {"send_amount_issued", "Send-envelope amount issued (cents)"},
    [HB_CTR_SEND_AMOUNT_CLAIMED] = {"send_amount_claimed", "Send-envelope amount claimed (cents)"},
};

const char *hb_counter_name(unsigned idx)
{
    return idx < HB_COUNTER_SLOTS ? hb_counter_slots[idx].name : NULL;
}

int hb_counters_init(hb_counters_t *c, unsigned nshards, uint64_t type)
{
    if (c == NULL)
        return HB_EINVAL;
    c->nshards = 0;
    c->shards = NULL;
    if (nshards == 0 || nshards > HB_COUNTERS_MAX_SHARDS)
        return HB_EINVAL;
    if (type != HB_REPORTER_CLIENT && type != HB_REPORTER_SERVER)
        return HB_EINVAL;
    /* sizeof is a multiple of the alignment, as aligned_alloc requires. */
    struct hb_counters_shard *shards =
        aligned_alloc(alignof(struct hb_counters_shard), nshards * sizeof *shards);
    if (shards == NULL)
        return HB_ENOMEM;
    /* Every tag starts at 0: an all-zero entry tagged 0 says truly that nothing was added to
     * second 0 yet, and for any other second the tag does not match. */
    for (unsigned s = 0; s < nshards; s++) {
        struct hb_counters_shard *sh = &shards[s];
        for (unsigned e = 0; e < HB_COUNTERS_HISTORY; e++) {
            atomic_init(&sh->ring[e].second_tag, 0);
            for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
                atomic_init(&sh->ring[e].v[i], 0);
        }
        for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
            atomic_init(&sh->cumulative[i], 0);
        atomic_init(&sh->newest, 0);
    }
    c->shards = shards;
    c->nshards = nshards;
    c->type = type;
    return 0;
}

void hb_counters_close(hb_counters_t *c)
{
    free(c->shards);
    c->shards = NULL;
    c->nshards = 0;
}

/* The single writer's increment: no read-modify-write needed, nobody else stores here. */
static inline void hb_counters_bump(_Atomic uint64_t *p, uint64_t delta, memory_order order)
{
    uint64_t v = atomic_load_explicit(p, memory_order_relaxed);
    atomic_store_explicit(p, v + delta, order);
}

/* Give entry e to second t. The zeroes (like every later value of t) are release stores after
 * the "resetting" tag, so a reader that acquires any of them sees the tag changed; the final
 * release store of tag t publishes the zeroes to a reader that acquires it. */
static void hb_counters_entry_reset(struct hb_counters_entry *e, uint64_t t)
{
    atomic_store_explicit(&e->second_tag, HB_TAG_RESETTING, memory_order_relaxed);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        atomic_store_explicit(&e->v[i], 0, memory_order_release);
    atomic_store_explicit(&e->second_tag, t, memory_order_release);
}

void hb_counters_add(hb_counters_t *c, unsigned shard, unsigned idx, uint64_t now_s, uint64_t delta)
{
    if (shard >= c->nshards || idx >= HB_COUNTER_SLOTS)
        return;
    struct hb_counters_shard *sh = &c->shards[shard];
    hb_counters_bump(&sh->cumulative[idx], delta, memory_order_relaxed);
    if (now_s == HB_TAG_RESETTING)
        return;
    /* newest is stored before the entry's tag, so a reader that acquires tag now_s also sees a
     * newest >= now_s. */
    uint64_t newest = atomic_load_explicit(&sh->newest, memory_order_relaxed);
    if (now_s > newest) {
        atomic_store_explicit(&sh->newest, now_s, memory_order_relaxed);
        newest = now_s;
    } else if (newest - now_s >= HB_COUNTERS_HISTORY) {
        return; /* older than the window: cumulative only */
    }
    /* Inside the window, the entry holds now_s or a second at least HISTORY older. */
    struct hb_counters_entry *e = &sh->ring[now_s % HB_COUNTERS_HISTORY];
    if (atomic_load_explicit(&e->second_tag, memory_order_relaxed) != now_s)
        hb_counters_entry_reset(e, now_s);
    hb_counters_bump(&e->v[idx], delta, memory_order_release);
}

/* Add shard sh's values for second t into sum, if it has that second in its window. The values
 * are used only when the tag reads t both before and after them: tags only grow, so the entry
 * held t all along (a reused entry means t left the window, and the shard gives 0). */
static void hb_counters_shard_read(const struct hb_counters_shard *sh, uint64_t t, uint64_t *sum)
{
    const struct hb_counters_entry *e = &sh->ring[t % HB_COUNTERS_HISTORY];
    uint64_t v[HB_COUNTER_SLOTS];
    if (atomic_load_explicit(&e->second_tag, memory_order_acquire) != t)
        return;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        v[i] = atomic_load_explicit(&e->v[i], memory_order_acquire);
    if (atomic_load_explicit(&e->second_tag, memory_order_relaxed) != t)
        return;
    /* Still tagged t, but the window may have moved past t without reusing this entry. */
    if (atomic_load_explicit(&sh->newest, memory_order_relaxed) - t >= HB_COUNTERS_HISTORY)
        return;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        sum[i] += v[i];
}

void hb_counters_snapshot(const hb_counters_t *c, uint64_t second, hb_report_t *out)
{
    memset(out, 0, sizeof *out);
    out->second = second;
    out->type = c->type;
    if (second != HB_TAG_RESETTING) {
        for (unsigned s = 0; s < c->nshards; s++)
            hb_counters_shard_read(&c->shards[s], second, out->per_second);
    }
    /* After the per-second values, so the totals are as late as possible. */
    for (unsigned s = 0; s < c->nshards; s++) {
        const struct hb_counters_shard *sh = &c->shards[s];
        for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
            out->cumulative[i] += atomic_load_explicit(&sh->cumulative[i], memory_order_relaxed);
    }
}

#define HB_REPORT_PER_SECOND_OFF 16
#define HB_REPORT_CUMULATIVE_OFF (HB_REPORT_PER_SECOND_OFF + 8 * HB_COUNTER_SLOTS)

void hb_report_encode(const hb_report_t *r, uint8_t buf[HB_REPORT_SIZE])
{
    hb_put_u64(buf, r->second);
    hb_put_u64(buf + 8, r->type);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        hb_put_u64(buf + HB_REPORT_PER_SECOND_OFF + 8 * i, r->per_second[i]);
        hb_put_u64(buf + HB_REPORT_CUMULATIVE_OFF + 8 * i, r->cumulative[i]);
    }
}

int hb_report_decode(const uint8_t *buf, size_t len, hb_report_t *out)
{
    if (buf == NULL || out == NULL)
        return HB_EINVAL;
    if (len != HB_REPORT_SIZE)
        return HB_EREPORT;
    uint64_t type = hb_get_u64(buf + 8);
    if (type != HB_REPORTER_CLIENT && type != HB_REPORTER_SERVER)
        return HB_EREPORT;
    out->second = hb_get_u64(buf);
    out->type = type;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        out->per_second[i] = hb_get_u64(buf + HB_REPORT_PER_SECOND_OFF + 8 * i);
        out->cumulative[i] = hb_get_u64(buf + HB_REPORT_CUMULATIVE_OFF + 8 * i);
    }
    return 0;
}

/* A bounded output string for the renderers: appends stop at the first one that does not fit
 * (one byte is always kept for the NUL), and nothing is written at or past cap. */
typedef struct hb_outbuf {
    char *p;
    size_t cap;
    size_t len;
    bool overflow;
} hb_outbuf_t;

static void hb_out_mem(hb_outbuf_t *o, const char *s, size_t n)
{
    if (o->overflow)
        return;
    if (o->cap - o->len <= n) { /* cap > len always holds while no overflow and cap > 0 */
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void hb_out_str(hb_outbuf_t *o, const char *s)
{
    hb_out_mem(o, s, strlen(s));
}

static void hb_out_u64(hb_outbuf_t *o, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    hb_out_mem(o, digits + sizeof digits - n, n);
}

/* Start writing into buf[0..cap); cap 0 is an overflow from the start. */
static void hb_out_init(hb_outbuf_t *o, char *buf, size_t cap)
{
    o->p = buf;
    o->cap = cap;
    o->len = 0;
    o->overflow = cap == 0;
}

/* NUL-terminate and return the length, or HB_ENOBUFS leaving "" when there is room for it. */
static int hb_out_finish(hb_outbuf_t *o)
{
    if (o->overflow) {
        if (o->cap > 0)
            o->p[0] = '\0';
        return HB_ENOBUFS;
    }
    o->p[o->len] = '\0';
    return (int)o->len;
}

static bool hb_is_metric_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (const char *q = s; *q != '\0'; q++) {
        char ch = *q;
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':';
        if (!alpha && !(q != s && ch >= '0' && ch <= '9'))
            return false;
    }
    return true;
}

/* One Prometheus metric family of one sample: HELP, TYPE and sample lines. The name is
 * prefix "_" name suffix; the help text is help and help_tail. */
static void hb_prom_family(hb_outbuf_t *o, const char *prefix, const char *name, const char *suffix,
                           const char *help, const char *help_tail, const char *type,
                           uint64_t value)
{
    const char *line_starts[2] = {"# HELP ", "# TYPE "};
    for (unsigned k = 0; k < 3; k++) {
        if (k < 2)
            hb_out_str(o, line_starts[k]);
        hb_out_str(o, prefix);
        hb_out_str(o, "_");
        hb_out_str(o, name);
        hb_out_str(o, suffix);
        hb_out_str(o, " ");
        if (k == 0) {
            hb_out_str(o, help);
            hb_out_str(o, help_tail);
        } else if (k == 1) {
            hb_out_str(o, type);
        } else {
            hb_out_u64(o, value);
        }
        hb_out_str(o, "\n");
    }
}

int hb_report_format_prometheus(const hb_report_t *r, const char *prefix, char *buf, size_t cap)
{
    if (r == NULL || (buf == NULL && cap > 0))
        return HB_EINVAL;
    if (prefix == NULL)
        prefix = "hongbao";
    if (!hb_is_metric_name(prefix))
        return HB_EINVAL;
    hb_outbuf_t o;
    hb_out_init(&o, buf, cap);
    hb_prom_family(&o, prefix, "report_second", "",
                   "Unix second that the per_second gauges describe", ".", "gauge", r->second);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *name = hb_counter_slots[i].name;
        if (name == NULL)
            continue;
        const char *help = hb_counter_slots[i].help;
        hb_prom_family(&o, prefix, name, "_total", help, ", cumulative.", "counter",
                       r->cumulative[i]);
        hb_prom_family(&o, prefix, name, "_per_second", help, ", in the report second.", "gauge",
                       r->per_second[i]);
    }
    return hb_out_finish(&o);
}

/* One JSON object of the named slots' values. */
static void hb_json_slots(hb_outbuf_t *o, const uint64_t *values)
{
    const char *sep = "{";
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        if (hb_counter_slots[i].name == NULL)
            continue;
        hb_out_str(o, sep);
        hb_out_str(o, "\"");
        hb_out_str(o, hb_counter_slots[i].name);
        hb_out_str(o, "\":");
        hb_out_u64(o, values[i]);
        sep = ",";
    }
    hb_out_str(o, "}");
}

int hb_report_format_json(const hb_report_t *r, char *buf, size_t cap)
{
    if (r == NULL || (buf == NULL && cap > 0))
        return HB_EINVAL;
    if (r->type != HB_REPORTER_CLIENT && r->type != HB_REPORTER_SERVER)
        return HB_EINVAL;
    hb_outbuf_t o;
    hb_out_init(&o, buf, cap);
    hb_out_str(&o, "{\"second\":");
    hb_out_u64(&o, r->second);
    hb_out_str(&o, r->type == HB_REPORTER_SERVER ? ",\"type\":\"server\"" : ",\"type\":\"client\"");
    hb_out_str(&o, ",\"per_second\":");
    hb_json_slots(&o, r->per_second);
    hb_out_str(&o, ",\"cumulative\":");
    hb_json_slots(&o, r->cumulative);
    hb_out_str(&o, "}");
    return hb_out_finish(&o);
}
