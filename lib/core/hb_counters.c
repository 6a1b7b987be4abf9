/* Per-second and cumulative counters: the catalogue of the slots, one shard per writer thread, a
 * ring of recent seconds per shard guarded by a seqlock-like tag, the monitor report's wire format
 * and its renderings, with the library's one Prometheus writer. */
#include "hongbao/counters.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb_counters_int.h"
#include "hongbao/addr.h"
#include "hongbao/proto.h"

#define HB_COUNTERS_MAX_SHARDS 1024
_Static_assert(HB_COUNTER_SLOTS <= 64, "a batch keeps one bit per slot in a u64");
#define HB_CACHE_LINE 64
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

/* The catalogue. The server's help texts are those its /metrics always gave. */
#define REF    HB_COUNTER_OWNER_REFERENCE
#define SERVER HB_COUNTER_OWNER_SERVER
#define CLIENT HB_COUNTER_OWNER_CLIENT
#define HOST   HB_COUNTER_OWNER_HOST
#define SUM    HB_COUNTER_COMBINE_SUM
#define MAX    HB_COUNTER_COMBINE_MAX
static const hb_counter_info_t catalogue[HB_COUNTER_SLOTS] = {
    [HB_CTR_FRAME_LOGIN] = {"frame_login", "Login frames seen (cmd 0)", REF, SUM},
    [HB_CTR_FRAME_LOGIN_REPLY] = {"frame_login_reply", "Login reply frames seen (cmd 1)", REF, SUM},
    [HB_CTR_FRAME_SHAKE] = {"frame_shake", "Shake frames seen (cmd 2)", REF, SUM},
    [HB_CTR_FRAME_SHAKE_REPLY] = {"frame_shake_reply", "Shake reply frames seen (cmd 3)", REF, SUM},
    [HB_CTR_FRAME_NOTICE] = {"frame_notice", "Send-envelope notice frames seen (cmd 4)", REF, SUM},
    [HB_CTR_FRAME_CLAIM] = {"frame_claim", "Claim frames seen (cmd 5)", REF, SUM},
    [HB_CTR_FRAME_CLAIM_REPLY] = {"frame_claim_reply", "Claim reply frames seen (cmd 6)", REF, SUM},
    [HB_CTR_NIC_RX_PACKETS] = {"nic_rx_packets", "Packets received on the host's network interface",
                               HOST, HB_COUNTER_COMBINE_PER_HOST},
    [HB_CTR_NIC_TX_PACKETS] = {"nic_tx_packets",
                               "Packets transmitted on the host's network interface", HOST,
                               HB_COUNTER_COMBINE_PER_HOST},
    [HB_CTR_NIC_RX_BYTES] = {"nic_rx_bytes", "Bytes received on the host's network interface", HOST,
                             HB_COUNTER_COMBINE_PER_HOST},
    [HB_CTR_REQUESTS] = {"requests", "Requests", REF, SUM},
    [HB_CTR_RESPONSES] = {"responses", "Responses", REF, SUM},
    [HB_CTR_NIC_TX_BYTES] = {"nic_tx_bytes", "Bytes transmitted on the host's network interface",
                             HOST, HB_COUNTER_COMBINE_PER_HOST},
    [HB_CTR_NIC_HOST] = {"nic_host", "Identity of the host and network interface (not a quantity)",
                         HOST, HB_COUNTER_COMBINE_IDENTITY},
    [HB_CTR_SHAKE_GOT] = {"shake_got", "Shakes that got an envelope (result 14)", REF, SUM},
    [HB_CTR_SHAKE_NONE] = {"shake_none", "Shakes that got no envelope (result 15)", REF, SUM},
    [HB_CTR_SHAKE_ALL_TAKEN] = {"shake_all_taken",
                                "Shakes answered all envelopes taken (result 16)", REF, SUM},
    [HB_CTR_SHAKE_OVERLOAD] = {"shake_overload", "Shakes answered overloaded (result 17)", REF,
                               SUM},
    [HB_CTR_SHAKE_HANDED_OUT] = {"shake_handed_out", "Shake envelopes handed out", REF, SUM},
    [HB_CTR_CONN_OPENED] = {"conn_opened", "Connections opened", REF, SUM},
    [HB_CTR_CONN_CLOSED] = {"conn_closed", "Connections closed", REF, SUM},
    [HB_CTR_SHAKE_ENVELOPES] = {"shake_envelopes", "Shake envelopes generated", REF, SUM},
    [HB_CTR_SHAKE_RECEIVED] = {"shake_received", "Shake envelopes received (client side)", REF,
                               SUM},
    [HB_CTR_SHAKE_AMOUNT_ISSUED] = {"shake_amount_issued", "Shake envelope amount issued (cents)",
                                    REF, SUM},
    [HB_CTR_SHAKE_AMOUNT_RECEIVED] = {"shake_amount_received",
                                      "Shake envelope amount received (cents)", REF, SUM},
    [HB_CTR_SEND_CREATED] = {"send_created", "Send-envelopes created", REF, SUM},
    [HB_CTR_CLAIMS_GRANTED] = {"claims_granted", "Send-envelope claims granted", REF, SUM},
    [HB_CTR_SEND_AMOUNT_ISSUED] = {"send_amount_issued", "Send-envelope amount issued (cents)", REF,
                                   SUM},
    [HB_CTR_SEND_AMOUNT_CLAIMED] = {"send_amount_claimed", "Send-envelope amount claimed (cents)",
                                    REF, SUM},

    [HB_CTR_X_ENVELOPE_DROPPED] = {"envelopes_dropped",
                                   "Send-envelopes dropped unannounced: not made durable", SERVER,
                                   SUM},
    [HB_CTR_X_IDS_WAIT] = {"ids_wait", "Generator ticks that waited for an id reservation", SERVER,
                           SUM},
    [HB_CTR_X_CLAIM_REPEAT] = {"claims_repeated",
                               "Claims answered again with the share granted before", SERVER, SUM},
    [HB_CTR_X_CLAIM_TRY_AGAIN] = {"claims_try_again", "Claims answered try-again: nothing decided",
                                  SERVER, SUM},
    [HB_CTR_X_LOGIN_TIMEOUT] = {"login_timeouts", "Connections closed for not logging in in time",
                                SERVER, SUM},
    [HB_CTR_X_STORE_ERRORS] = {"store_errors", "Failures of the claim journal", SERVER, SUM},
    [HB_CTR_X_LOGIN_REFUSED] = {"login_refused",
                                "Logins refused: user id outside the allowed range", SERVER, SUM},
    [HB_CTR_X_RATE_LIMITED] = {"rate_limited", "Requests over a connection's rate limit", SERVER,
                               SUM},
    [HB_CTR_X_ENVQ_FULL] = {"envq_full", "Generator ticks that found every bucket full", SERVER,
                            SUM},
    [HB_CTR_X_BAD_FRAME] = {"bad_frames", "Connections closed for a malformed or unexpected frame",
                            SERVER, SUM},
    [HB_CTR_X_SLOW_PEER] = {"slow_peers", "Connections closed for not draining their output",
                            SERVER, SUM},
    [HB_CTR_X_CONN_REJECTED] = {"conn_rejected", "Connections refused past the maximum", SERVER,
                                SUM},
    [HB_CTR_X_CLAIM_REFUSED] = {"claims_refused", "Claims that granted nothing", SERVER, SUM},
    [HB_CTR_X_CHAT] = {"chat_delivered", "Chat messages handed to the recipient's SET", SERVER,
                       SUM},
    [HB_CTR_X_CHAT_FAILED] = {"chat_failed", "Chat messages to an offline user or a full queue",
                              SERVER, SUM},
    [HB_CTR_X_KICKED] = {"conn_kicked", "Connections closed by a newer login of the same user",
                         SERVER, SUM},
    [HB_CTR_X_SEND_EXPIRED] = {"send_expired", "Send-envelopes expired with shares unclaimed",
                               SERVER, SUM},
    [HB_CTR_X_NOTICE_OFFLINE] = {"notice_offline", "Notices not sent: recipient offline", SERVER,
                                 SUM},

    [HB_CTR_LAT_P50] = {"latency_p50_us",
                        "Shake latency p50 from the scheduled send (microseconds)", CLIENT, MAX},
    [HB_CTR_LAT_P90] = {"latency_p90_us",
                        "Shake latency p90 from the scheduled send (microseconds)", CLIENT, MAX},
    [HB_CTR_LAT_P99] = {"latency_p99_us",
                        "Shake latency p99 from the scheduled send (microseconds)", CLIENT, MAX},
    [HB_CTR_LAT_P999] = {"latency_p999_us",
                         "Shake latency p99.9 from the scheduled send (microseconds)", CLIENT, MAX},
    [HB_CTR_LAT_MAX] = {"latency_max_us",
                        "Shake latency maximum from the scheduled send (microseconds)", CLIENT,
                        MAX},
    [HB_CTR_LAT_CLAIM_P50] = {"claim_latency_p50_us",
                              "Claim latency p50 from the notice (microseconds)", CLIENT, MAX},
    [HB_CTR_LAT_CLAIM_P99] = {"claim_latency_p99_us",
                              "Claim latency p99 from the notice (microseconds)", CLIENT, MAX},
    [HB_CTR_C_SEND_MISSED] = {"send_missed", "Scheduled shakes not sent: too many outstanding",
                              CLIENT, SUM},
};
#undef REF
#undef SERVER
#undef CLIENT
#undef HOST
#undef SUM
#undef MAX

const hb_counter_info_t *hb_counter_info(unsigned idx)
{
    if (idx >= HB_COUNTER_SLOTS || catalogue[idx].name == NULL)
        return NULL;
    return &catalogue[idx];
}

const char *hb_counter_name(unsigned idx)
{
    return idx < HB_COUNTER_SLOTS ? catalogue[idx].name : NULL;
}

const char *hb_counter_name_for(uint64_t type, unsigned idx)
{
    const hb_counter_info_t *info = hb_counter_info(idx);
    if (info == NULL || (type != HB_REPORTER_CLIENT && type != HB_REPORTER_SERVER))
        return NULL;
    hb_counter_owner_t own =
        type == HB_REPORTER_SERVER ? HB_COUNTER_OWNER_SERVER : HB_COUNTER_OWNER_CLIENT;
    return info->owner == HB_COUNTER_OWNER_REFERENCE || info->owner == HB_COUNTER_OWNER_HOST ||
                   info->owner == own
               ? info->name
               : NULL;
}

/* ---- Application counters ---- */

static const unsigned app_slots[HB_COUNTER_APP_SLOTS] = {HB_CTR_APP_0, HB_CTR_APP_1, HB_CTR_APP_2,
                                                         HB_CTR_APP_3, HB_CTR_APP_4};

int hb_counter_is_app_slot(unsigned slot)
{
    for (size_t i = 0; i < HB_COUNTER_APP_SLOTS; i++)
        if (app_slots[i] == slot)
            return 1;
    return 0;
}

static bool is_snake_name(const char *s)
{
    if (!(*s >= 'a' && *s <= 'z'))
        return false;
    for (const char *q = s; *q != '\0'; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_'))
            return false;
    return true;
}

static bool is_help_text(const char *s)
{
    for (const unsigned char *q = (const unsigned char *)s; *q != '\0'; q++)
        if (*q < 0x20 || *q == 0x7f || *q == '\\')
            return false;
    return true;
}

int hb_counter_names_add(hb_counter_names_t *names, uint64_t type, unsigned slot, const char *name,
                         const char *help)
{
    if (names == NULL || (type != HB_REPORTER_SERVER && type != HB_REPORTER_CLIENT) ||
        !hb_counter_is_app_slot(slot) || name == NULL || !is_snake_name(name) ||
        strlen(name) >= HB_COUNTER_NAME_MAX)
        return HB_EINVAL;
    if (help == NULL || *help == '\0')
        help = name;
    if (!is_help_text(help) || strlen(help) >= HB_COUNTER_HELP_MAX)
        return HB_EINVAL;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        if (catalogue[i].name != NULL && strcmp(catalogue[i].name, name) == 0)
            return HB_EEXIST;
    if (names->n > sizeof names->app / sizeof names->app[0])
        return HB_EINVAL; /* not an hb_counter_names_t filled here */
    for (unsigned i = 0; i < names->n; i++)
        if (names->app[i].type == type &&
            (names->app[i].slot == slot || strcmp(names->app[i].name, name) == 0))
            return HB_EEXIST;
    /* (room for every slot of both types, each named once) */
    hb_counter_app_t *e = &names->app[names->n++];
    e->type = (uint8_t)type;
    e->slot = (uint8_t)slot;
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->help, sizeof e->help, "%s", help);
    return 0;
}

const hb_counter_app_t *hb_counter_names_find(const hb_counter_names_t *names, uint64_t type,
                                              unsigned slot)
{
    if (names == NULL || names->n > sizeof names->app / sizeof names->app[0])
        return NULL;
    for (unsigned i = 0; i < names->n; i++)
        if (names->app[i].type == type && names->app[i].slot == slot)
            return &names->app[i];
    return NULL;
}

bool hb__slot_label(uint64_t type, unsigned idx, const hb_counter_names_t *names, const char **name,
                    const char **help)
{
    if (hb__counter_shown(type, idx)) {
        *name = catalogue[idx].name;
        *help = catalogue[idx].help;
        return true;
    }
    const hb_counter_app_t *app = hb_counter_names_find(names, type, idx);
    if (app == NULL)
        return false;
    *name = app->name;
    *help = app->help;
    return true;
}

hb_counter_combine_t hb_counter_combine(unsigned idx)
{
    const hb_counter_info_t *info = hb_counter_info(idx);
    return info != NULL ? info->combine : HB_COUNTER_COMBINE_SUM;
}

bool hb__counter_shown(uint64_t type, unsigned idx)
{
    return hb_counter_name_for(type, idx) != NULL &&
           hb_counter_combine(idx) != HB_COUNTER_COMBINE_IDENTITY;
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
static inline void bump(_Atomic uint64_t *p, uint64_t delta, memory_order order)
{
    uint64_t v = atomic_load_explicit(p, memory_order_relaxed);
    atomic_store_explicit(p, v + delta, order);
}

/* Give entry e to second t. The zeroes (like every later value of t) are release stores after
 * the "resetting" tag, so a reader that acquires any of them sees the tag changed; the final
 * release store of tag t publishes the zeroes to a reader that acquires it. */
static void entry_reset(struct hb_counters_entry *e, uint64_t t)
{
    atomic_store_explicit(&e->second_tag, HB_TAG_RESETTING, memory_order_relaxed);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++)
        atomic_store_explicit(&e->v[i], 0, memory_order_release);
    atomic_store_explicit(&e->second_tag, t, memory_order_release);
}

/* The ring entry that holds second now_s in sh, moving the shard's window (and giving the entry
 * to now_s) as an add does; NULL when now_s counts in the cumulative totals only. */
static struct hb_counters_entry *entry_for(struct hb_counters_shard *sh, uint64_t now_s)
{
    if (now_s == HB_TAG_RESETTING)
        return NULL;
    /* newest is stored before the entry's tag, so a reader that acquires tag now_s also sees a
     * newest >= now_s. */
    uint64_t newest = atomic_load_explicit(&sh->newest, memory_order_relaxed);
    if (now_s > newest)
        atomic_store_explicit(&sh->newest, now_s, memory_order_relaxed);
    else if (newest - now_s >= HB_COUNTERS_HISTORY)
        return NULL; /* older than the window: cumulative only */
    /* Inside the window, the entry holds now_s or a second at least HISTORY older. */
    struct hb_counters_entry *e = &sh->ring[now_s % HB_COUNTERS_HISTORY];
    if (atomic_load_explicit(&e->second_tag, memory_order_relaxed) != now_s)
        entry_reset(e, now_s);
    return e;
}

void hb_counters_add(hb_counters_t *c, unsigned shard, unsigned idx, uint64_t now_s, uint64_t delta)
{
    if (shard >= c->nshards || idx >= HB_COUNTER_SLOTS)
        return;
    struct hb_counters_shard *sh = &c->shards[shard];
    bump(&sh->cumulative[idx], delta, memory_order_relaxed);
    struct hb_counters_entry *e = entry_for(sh, now_s);
    if (e != NULL)
        bump(&e->v[idx], delta, memory_order_release);
}

void hb_counters_batch_init(hb_counters_batch_t *b, hb_counters_t *c, unsigned shard)
{
    memset(b, 0, sizeof *b);
    b->counters = c;
    b->shard = shard;
}

void hb_counters_batch_flush(hb_counters_batch_t *b)
{
    uint64_t slots = b->slots;
    b->slots = 0;
    if (slots == 0)
        return;
    hb_counters_t *c = b->counters;
    struct hb_counters_shard *sh = b->shard < c->nshards ? &c->shards[b->shard] : NULL;
    struct hb_counters_entry *e = sh != NULL ? entry_for(sh, b->second) : NULL;
    while (slots != 0) {
        unsigned i = (unsigned)__builtin_ctzll(slots);
        slots &= slots - 1;
        uint64_t delta = b->v[i];
        b->v[i] = 0;
        if (sh == NULL)
            continue;
        bump(&sh->cumulative[i], delta, memory_order_relaxed);
        if (e != NULL)
            bump(&e->v[i], delta, memory_order_release);
    }
}

/* Add shard sh's values for second t into sum, if it has that second in its window. The values
 * are used only when the tag reads t both before and after them: tags only grow, so the entry
 * held t all along (a reused entry means t left the window, and the shard gives 0). */
static void shard_read(const struct hb_counters_shard *sh, uint64_t t, uint64_t *sum)
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
            shard_read(&c->shards[s], second, out->per_second);
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
    if (hb_reporter_type_name(type) == NULL)
        return HB_EREPORT;
    out->second = hb_get_u64(buf);
    out->type = type;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        out->per_second[i] = hb_get_u64(buf + HB_REPORT_PER_SECOND_OFF + 8 * i);
        out->cumulative[i] = hb_get_u64(buf + HB_REPORT_CUMULATIVE_OFF + 8 * i);
    }
    return 0;
}

const char *hb_reporter_type_name(uint64_t type)
{
    static const char *const names[HB_REPORTER_TYPES] = {
        [HB_REPORTER_CLIENT] = "client",
        [HB_REPORTER_SERVER] = "server",
    };
    return type < HB_REPORTER_TYPES ? names[type] : NULL;
}

/* ---- the instance identity ---- */

#define INSTANCE_TAG 0x4849u /* "HI" */

uint64_t hb_report_instance(const char *host, int port)
{
    if (port < 1 || port > 65535)
        return 0;
    uint64_t ip = 0;
    unsigned b[4];
    if (host != NULL && hb_addr_family(host) == HB_ADDR_IPV4 &&
        sscanf(host, "%u.%u.%u.%u", &b[0], &b[1], &b[2], &b[3]) == 4)
        ip = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
    return (uint64_t)INSTANCE_TAG << 48 | ip << 16 | (uint64_t)port;
}

int hb_report_instance_label(uint64_t id, const char *from_host, char *buf, size_t cap)
{
    if ((buf == NULL && cap > 0) || id >> 48 != INSTANCE_TAG || (id & 0xffff) == 0)
        return HB_EINVAL;
    hb__text_t o;
    hb__text_init(&o, buf, cap);
    uint32_t ip = (uint32_t)(id >> 16);
    if (ip != 0)
        hb__text_fmt(&o, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
    else
        hb__text_str(&o, from_host != NULL && from_host[0] != '\0' ? from_host : "?");
    hb__text_fmt(&o, ":%u", (unsigned)(id & 0xffff));
    return hb__text_finish(&o);
}

/* ---- text and the Prometheus writer ---- */

void hb__text_init(hb__text_t *o, char *buf, size_t cap)
{
    o->p = buf;
    o->cap = cap;
    o->len = 0;
    o->overflow = cap == 0;
}

void hb__text_mem(hb__text_t *o, const char *s, size_t n)
{
    if (o->overflow)
        return;
    if (o->cap - o->len <= n) { /* cap > len always holds while no overflow */
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

void hb__text_str(hb__text_t *o, const char *s)
{
    hb__text_mem(o, s, strlen(s));
}

void hb__text_u64(hb__text_t *o, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    hb__text_mem(o, digits + sizeof digits - n, n);
}

void hb__text_fmt(hb__text_t *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->p[o->len] = '\0'; /* vsnprintf wrote a truncated string: nothing is half appended */
        o->overflow = true;
        return;
    }
    o->len += (size_t)n;
}

int hb__text_finish(hb__text_t *o)
{
    if (o->overflow) {
        if (o->cap > 0)
            o->p[0] = '\0';
        return HB_ENOBUFS;
    }
    o->p[o->len] = '\0';
    return (int)o->len;
}

static void put_parts(hb__text_t *o, const char *const parts[4])
{
    for (unsigned i = 0; i < 4 && parts[i] != NULL; i++)
        hb__text_str(o, parts[i]);
}

void hb__prom_header(hb__text_t *o, const hb__prom_family_t *f)
{
    hb__text_str(o, "# HELP ");
    put_parts(o, f->name);
    hb__text_str(o, " ");
    put_parts(o, f->help);
    hb__text_str(o, "\n# TYPE ");
    put_parts(o, f->name);
    hb__text_str(o, " ");
    hb__text_str(o, f->type);
    hb__text_str(o, "\n");
}

void hb__prom_sample(hb__text_t *o, const hb__prom_family_t *f, const hb__prom_sample_t *sample)
{
    put_parts(o, f->name);
    if (sample->labels != NULL) {
        hb__text_str(o, "{");
        hb__text_str(o, sample->labels);
        hb__text_str(o, "}");
    }
    hb__text_str(o, " ");
    if (f->micro) {
        hb__text_u64(o, sample->value / 1000000);
        hb__text_fmt(o, ".%06u", (unsigned)(sample->value % 1000000));
    } else {
        hb__text_u64(o, sample->value);
    }
    hb__text_str(o, "\n");
}

void hb__prom_write(hb__text_t *o, const hb__prom_family_t *f, const hb__prom_sample_t *samples,
                    size_t n)
{
    hb__prom_header(o, f);
    for (size_t i = 0; i < n; i++)
        hb__prom_sample(o, f, &samples[i]);
}

static bool is_metric_name(const char *s)
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

/* Whether a report of r's type renders slot i, and as what: the reference's slots always; with own
 * also its type's own slots and the application slots named in names. */
static bool report_renders(const hb_report_t *r, unsigned i, bool own,
                           const hb_counter_names_t *names, const char **name, const char **help)
{
    if (own)
        return hb__slot_label(r->type, i, names, name, help);
    const hb_counter_info_t *info = hb_counter_info(i);
    if (info == NULL || info->owner != HB_COUNTER_OWNER_REFERENCE)
        return false;
    *name = info->name;
    *help = info->help;
    return true;
}

void hb__report_prometheus(hb__text_t *o, const hb_report_t *r, const char *prefix, bool own,
                           const hb_counter_names_t *names)
{
    hb__prom_family_t f = {
        .name = {prefix, "_report_second"},
        .help = {"Unix second that the per_second gauges describe."},
        .type = "gauge",
    };
    hb__prom_write(o, &f, &(hb__prom_sample_t){NULL, r->second}, 1);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *name, *help;
        if (!report_renders(r, i, own, names, &name, &help))
            continue;
        f = (hb__prom_family_t){
            .name = {prefix, "_", name, "_total"},
            .help = {help, ", cumulative."},
            .type = "counter",
        };
        hb__prom_write(o, &f, &(hb__prom_sample_t){NULL, r->cumulative[i]}, 1);
        f = (hb__prom_family_t){
            .name = {prefix, "_", name, "_per_second"},
            .help = {help, ", in the report second."},
            .type = "gauge",
        };
        hb__prom_write(o, &f, &(hb__prom_sample_t){NULL, r->per_second[i]}, 1);
    }
}

int hb_report_format_prometheus(const hb_report_t *r, const char *prefix, char *buf, size_t cap)
{
    if (r == NULL || (buf == NULL && cap > 0))
        return HB_EINVAL;
    if (prefix == NULL)
        prefix = "hongbao";
    if (!is_metric_name(prefix))
        return HB_EINVAL;
    hb__text_t o;
    hb__text_init(&o, buf, cap);
    hb__report_prometheus(&o, r, prefix, false, NULL);
    return hb__text_finish(&o);
}

/* One JSON object of the values of the slots report_renders shows. */
static void json_slots(hb__text_t *o, const hb_report_t *r, const uint64_t *values, bool own,
                       const hb_counter_names_t *names)
{
    const char *sep = "{";
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *name, *help;
        if (!report_renders(r, i, own, names, &name, &help))
            continue;
        hb__text_str(o, sep);
        hb__text_str(o, "\"");
        hb__text_str(o, name);
        hb__text_str(o, "\":");
        hb__text_u64(o, values[i]);
        sep = ",";
    }
    hb__text_str(o, "}");
}

void hb__report_json(hb__text_t *o, const hb_report_t *r, bool own, const hb_counter_names_t *names)
{
    hb__text_str(o, "{\"second\":");
    hb__text_u64(o, r->second);
    hb__text_str(o,
                 r->type == HB_REPORTER_SERVER ? ",\"type\":\"server\"" : ",\"type\":\"client\"");
    hb__text_str(o, ",\"per_second\":");
    json_slots(o, r, r->per_second, own, names);
    hb__text_str(o, ",\"cumulative\":");
    json_slots(o, r, r->cumulative, own, names);
    hb__text_str(o, "}");
}

int hb_report_format_json(const hb_report_t *r, char *buf, size_t cap)
{
    if (r == NULL || (buf == NULL && cap > 0))
        return HB_EINVAL;
    if (r->type != HB_REPORTER_CLIENT && r->type != HB_REPORTER_SERVER)
        return HB_EINVAL;
    hb__text_t o;
    hb__text_init(&o, buf, cap);
    hb__report_json(&o, r, false, NULL);
    return hb__text_finish(&o);
}
