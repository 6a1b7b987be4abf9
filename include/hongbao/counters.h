/* Per-second and cumulative counters in the reference's 60 slots, incremented from many threads
 * without a lock, and the 976-byte report the monitor receives. Pure code: the caller supplies
 * the time, so nothing here reads a clock. */
#ifndef HONGBAO_COUNTERS_H
#define HONGBAO_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HB_COUNTER_SLOTS 60
/* How many recent seconds the per-second ring keeps. */
#define HB_COUNTERS_HISTORY 64
/* The report's size on the wire: second, type, 60 per-second, 60 cumulative, all u64 BE. */
#define HB_REPORT_SIZE 976

/* The counter catalogue: every slot anyone fills, with its name (the one used in Prometheus text,
 * JSON and CSV), its meaning, whose slot it is and how a monitor combines it across processes.
 * Slots not listed are free: counted and reported like any other, never named or rendered.
 * Amounts are in the smallest currency unit (cents).
 *
 * The reference's slots (HB_COUNTER_OWNER_REFERENCE): servers and clients fill those that apply
 * to them. */
enum {
    HB_CTR_FRAME_LOGIN = 0,            /* login frames seen (cmd 0) */
    HB_CTR_FRAME_LOGIN_REPLY = 1,      /* login reply frames seen (cmd 1) */
    HB_CTR_FRAME_SHAKE = 2,            /* shake frames seen (cmd 2) */
    HB_CTR_FRAME_SHAKE_REPLY = 3,      /* shake reply frames seen (cmd 3) */
    HB_CTR_FRAME_NOTICE = 4,           /* send-envelope notice frames seen (cmd 4) */
    HB_CTR_FRAME_CLAIM = 5,            /* claim frames seen (cmd 5) */
    HB_CTR_FRAME_CLAIM_REPLY = 6,      /* claim reply frames seen (cmd 6) */
    HB_CTR_REQUESTS = 10,              /* requests */
    HB_CTR_RESPONSES = 11,             /* responses */
    HB_CTR_SHAKE_GOT = 14,             /* shakes that got an envelope (result 14) */
    HB_CTR_SHAKE_NONE = 15,            /* shakes that got no envelope (result 15) */
    HB_CTR_SHAKE_ALL_TAKEN = 16,       /* shakes answered "all envelopes taken" (result 16) */
    HB_CTR_SHAKE_OVERLOAD = 17,        /* shakes answered "overloaded" (result 17) */
    HB_CTR_SHAKE_HANDED_OUT = 18,      /* shake envelopes handed out */
    HB_CTR_CONN_OPENED = 20,           /* connections opened */
    HB_CTR_CONN_CLOSED = 21,           /* connections closed */
    HB_CTR_SHAKE_ENVELOPES = 22,       /* shake envelopes generated */
    HB_CTR_SHAKE_RECEIVED = 23,        /* shake envelopes received (client side) */
    HB_CTR_SHAKE_AMOUNT_ISSUED = 24,   /* shake envelope amount issued */
    HB_CTR_SHAKE_AMOUNT_RECEIVED = 25, /* shake envelope amount received */
    HB_CTR_SEND_CREATED = 30,          /* send-envelopes created */
    HB_CTR_CLAIMS_GRANTED = 31,        /* send-envelope claims granted */
    HB_CTR_SEND_AMOUNT_ISSUED = 32,    /* send-envelope amount issued */
    HB_CTR_SEND_AMOUNT_CLAIMED = 33    /* send-envelope amount claimed */
};

/* The server's own slots (HB_COUNTER_OWNER_SERVER), free in the reference's table. */
enum {
    HB_CTR_X_ENVELOPE_DROPPED = 26, /* send-envelopes dropped unannounced: the journal failed
                                       before they were durable (or their book refused them) */
    HB_CTR_X_IDS_WAIT = 27,         /* generator ticks that found no durable id reservation yet,
                                       or the id space used up */
    HB_CTR_X_CLAIM_REPEAT = 34,     /* claims answered again with the share granted before */
    HB_CTR_X_CLAIM_TRY_AGAIN = 35,  /* claims answered "try again": nothing could be made
                                       durable, or the connection was over its rate limit */
    HB_CTR_X_LOGIN_TIMEOUT = 36,    /* connections closed for not logging in within the time */
    HB_CTR_X_STORE_ERRORS = 37,     /* the journal failed for good (once per failure) */
    HB_CTR_X_LOGIN_REFUSED = 38,    /* logins refused: user id outside the configured range */
    HB_CTR_X_RATE_LIMITED = 39,     /* requests over a connection's rate limit (17 / amount 0) */
    HB_CTR_X_ENVQ_FULL = 40,        /* generator found every bucket full (retried next tick) */
    HB_CTR_X_BAD_FRAME = 41,        /* connections closed for a malformed or unexpected frame */
    HB_CTR_X_SLOW_PEER = 42,        /* connections closed for not draining their output */
    HB_CTR_X_CONN_REJECTED = 43,    /* connections refused past max_connections */
    HB_CTR_X_CLAIM_REFUSED = 44,    /* claims that granted nothing */
    HB_CTR_X_CHAT = 45,             /* chat messages handed to the recipient's SET */
    HB_CTR_X_CHAT_FAILED = 46,      /* chat to an offline user or a full queue */
    HB_CTR_X_KICKED = 47,           /* older connections closed by a newer login of the user */
    HB_CTR_X_SEND_EXPIRED = 48,     /* send-envelopes expired with shares unclaimed */
    HB_CTR_X_NOTICE_OFFLINE = 49    /* notices not sent: the recipient was offline */
};

/* The client's own slots (HB_COUNTER_OWNER_CLIENT): its shake and claim latency percentiles of
 * each second, in microseconds (combined by maximum: HB_COUNTER_COMBINE_MAX), and one count. */
enum {
    HB_CTR_LAT_P50 = 50,
    HB_CTR_LAT_P90 = 51,
    HB_CTR_LAT_P99 = 52,
    HB_CTR_LAT_P999 = 53,
    HB_CTR_LAT_MAX = 54,
    HB_CTR_LAT_CLAIM_P50 = 55,
    HB_CTR_LAT_CLAIM_P99 = 56,
    HB_CTR_C_SEND_MISSED = 57 /* scheduled shakes not sent: the user had too many outstanding */
};

/* The host's network interface (HB_COUNTER_OWNER_HOST), filled by servers and clients alike
 * (hongbao/netstat.h samples it): the packets and bytes the kernel counted on one interface of
 * the host the process runs on, received and transmitted. Several processes on one host report
 * the same interface, so a monitor combines these per host (HB_COUNTER_COMBINE_PER_HOST), and
 * knows the host by HB_CTR_NIC_HOST. */
enum {
    HB_CTR_NIC_RX_PACKETS = 7,
    HB_CTR_NIC_TX_PACKETS = 8,
    HB_CTR_NIC_RX_BYTES = 9,
    HB_CTR_NIC_TX_BYTES = 12,
    /* Not a quantity: which host and interface slots 7, 8, 9 and 12 describe, a nonzero 64-bit
     * identity (hb_netdev_host_id) held in the slot's cumulative value; 0 when the process
     * samples no interface (HB_COUNTER_COMBINE_IDENTITY). Its per-second value carries the
     * reporting instance's identity (HB_CTR_INSTANCE, below), 0 for none. */
    HB_CTR_NIC_HOST = 13
};

/* Reporter types in a report. HB_REPORTER_TYPES is how many there are: a new type takes the next
 * number, a name in hb_reporter_type_name and its slots in the catalogue, and a monitor keeps its
 * reports apart from the others'. */
enum { HB_REPORTER_CLIENT = 0, HB_REPORTER_SERVER = 1 };
#define HB_REPORTER_TYPES 2

/* The name of a reporter type ("client", "server"), static, or NULL for a type not known. */
HB_EXTERN const char *hb_reporter_type_name(uint64_t type);

/* Which instance a report comes from, so that a monitor can show every process of a fleet apart
 * (hongbao/aggregate.h): carried in the per-second value of slot 13, which the host identity
 * (HB_CTR_NIC_HOST, a cumulative value) leaves at 0. A reporter stamps it into each report
 * (hb_reporter_options_t.instance); 0 means "none" (the reference's reporters, older ones, and
 * those not told), and the monitor then knows the process by its connection alone. */
#define HB_CTR_INSTANCE HB_CTR_NIC_HOST
/* The identity of a process that serves at host:port (its listening address): a tag in the top
 * 16 bits, then the IPv4 address when host is an IPv4 literal other than 0.0.0.0 (32 bits), then
 * the port (16 bits). Any other host (an IPv6 literal, the wildcard, NULL) carries the port alone,
 * and the monitor completes it with the address the reports come from. Returns 0 ("none") for a
 * port outside 1..65535. */
HB_EXTERN uint64_t hb_report_instance(const char *host, int port);
/* The label of instance identity id, "10.0.0.2:7000": its IPv4 address and port, or, when it
 * carries the port alone, from_host (the address the reports come from, as text: "127.0.0.1",
 * "[::1]"; NULL or "" gives "?") and the port. Writes a NUL-terminated string into buf[0..cap)
 * and returns its length; HB_EINVAL when id is not an identity hb_report_instance makes (0
 * included) or buf is NULL, HB_ENOBUFS when it does not fit (buf then holds "" when cap > 0). */
HB_EXTERN int hb_report_instance_label(uint64_t id, const char *from_host, char *buf, size_t cap);

/* Whose slot it is: the reference's (a server and a client each fill those that apply to them),
 * one a server or a client adds in a slot the reference leaves free, or the host's (a server and a
 * client both fill them: the host's network interface). */
typedef enum {
    HB_COUNTER_OWNER_REFERENCE = 0,
    HB_COUNTER_OWNER_SERVER = 1,
    HB_COUNTER_OWNER_CLIENT = 2,
    HB_COUNTER_OWNER_HOST = 3
} hb_counter_owner_t;

/* How a monitor combines one slot of the reports of many processes of one type.
 * SUM:      per second, the sum of the reports' values; cumulative, the sum over every reporter
 *           of its latest cumulative value.
 * MAX:      per second and cumulative, the maximum over the reports (a sum of percentiles means
 *           nothing; the maximum is the worst process's, an upper bound of the fleet's).
 * PER_HOST: the host's NIC (7, 8, 9, 12): every process of one host reports the same interface,
 *           so the reports are grouped by host (the identity in HB_CTR_NIC_HOST): per second, the
 *           sum over the hosts of the maximum over each host's reports of that second; cumulative,
 *           the sum over the hosts of the maximum over each host's reporters of their latest
 *           cumulative value. A report whose identity is 0 adds nothing to these slots.
 * IDENTITY: not a quantity (HB_CTR_NIC_HOST): not combined, not rendered. */
typedef enum {
    HB_COUNTER_COMBINE_SUM = 0,
    HB_COUNTER_COMBINE_MAX = 1,
    HB_COUNTER_COMBINE_PER_HOST = 2,
    HB_COUNTER_COMBINE_IDENTITY = 3
} hb_counter_combine_t;

/* One entry of the catalogue. */
typedef struct hb_counter_info {
    const char *name; /* snake_case, unique ("shake_got", "latency_p99_us") */
    const char *help; /* its meaning, one line, no final period (the Prometheus HELP text) */
    hb_counter_owner_t owner;
    hb_counter_combine_t combine;
} hb_counter_info_t;

/* The catalogue's entry of slot idx, static, or NULL for a free slot (and idx >=
 * HB_COUNTER_SLOTS). */
HB_EXTERN const hb_counter_info_t *hb_counter_info(unsigned idx);

/* The name of slot idx ("shake_got", "bad_frames", "latency_p50_us"), static, or NULL for a free
 * slot (and idx >= HB_COUNTER_SLOTS). */
HB_EXTERN const char *hb_counter_name(unsigned idx);

/* The name of slot idx when a reporter of type type fills it (the reference's slots, the host's
 * and that type's own), else NULL; NULL too for a type neither HB_REPORTER_CLIENT nor
 * HB_REPORTER_SERVER. Renderers show the slots named for a type except the IDENTITY one. */
HB_EXTERN const char *hb_counter_name_for(uint64_t type, unsigned idx);

/* How a monitor combines slot idx: HB_COUNTER_COMBINE_MAX for the client's latency percentiles
 * (50..56), HB_COUNTER_COMBINE_PER_HOST for the host's NIC (7, 8, 9, 12),
 * HB_COUNTER_COMBINE_IDENTITY for the host identity (13), HB_COUNTER_COMBINE_SUM for every other
 * slot, free ones included. */
HB_EXTERN hb_counter_combine_t hb_counter_combine(unsigned idx);

/* Application counters. Five slots no catalogue entry fills, for a service's own counts
 * (hb_conn_count on the server, hb_counters_add on any counter set). Named in an
 * hb_counter_names_t, they are rendered like the catalogue's slots by the renderers that take one
 * (the server's /metrics and /stats, the monitor's /metrics and series), and a monitor sums them.
 */
enum {
    HB_CTR_APP_0 = 19,
    HB_CTR_APP_1 = 28,
    HB_CTR_APP_2 = 29,
    HB_CTR_APP_3 = 58,
    HB_CTR_APP_4 = 59
};
#define HB_COUNTER_APP_SLOTS 5
#define HB_COUNTER_NAME_MAX  48  /* an application counter's name, NUL included */
#define HB_COUNTER_HELP_MAX  128 /* its help text, NUL included */

/* Whether slot is one of HB_CTR_APP_0..HB_CTR_APP_4. */
HB_EXTERN int hb_counter_is_app_slot(unsigned slot);

/* Names of application slots, per reporter type. Plain data: zero-initialise it (no names), fill
 * it with hb_counter_names_add, copy it freely. */
typedef struct hb_counter_app {
    uint8_t type; /* HB_REPORTER_SERVER or HB_REPORTER_CLIENT */
    uint8_t slot; /* one of HB_CTR_APP_* */
    char name[HB_COUNTER_NAME_MAX];
    char help[HB_COUNTER_HELP_MAX];
} hb_counter_app_t;

typedef struct hb_counter_names {
    unsigned n;
    hb_counter_app_t app[2 * HB_COUNTER_APP_SLOTS];
} hb_counter_names_t;

/* Name application slot `slot` of reporters of type `type`. name: snake_case ([a-z][a-z0-9_]*,
 * shorter than HB_COUNTER_NAME_MAX), none of the catalogue's names nor a name already given to
 * that type; rendered "<prefix>_<name>_total" and "<prefix>_<name>_per_second" in Prometheus text
 * and "<name>" in JSON. help: its meaning, one line (no backslash, no control character, shorter
 * than HB_COUNTER_HELP_MAX; NULL or "" repeats the name). Both are copied. Returns 0; HB_EINVAL
 * (NULL names, a type neither server nor client, a slot not an application's, a bad name or
 * help), HB_EEXIST (the slot or the name is taken for that type). */
HB_EXTERN int hb_counter_names_add(hb_counter_names_t *names, uint64_t type, unsigned slot,
                                   const char *name, const char *help);

/* The entry naming slot for type, or NULL (names may be NULL). */
HB_EXTERN const hb_counter_app_t *hb_counter_names_find(const hb_counter_names_t *names,
                                                        uint64_t type, unsigned slot);

/* One second's view: what the reference sends the monitor. */
typedef struct hb_report {
    uint64_t second; /* the Unix second per_second describes */
    uint64_t type;   /* HB_REPORTER_CLIENT or HB_REPORTER_SERVER */
    uint64_t per_second[HB_COUNTER_SLOTS];
    uint64_t cumulative[HB_COUNTER_SLOTS]; /* totals when the snapshot was taken */
} hb_report_t;

/* The counter set. Writers: each thread increments through its own shard (0..nshards-1), so no
 * two threads ever write the same memory; readers merge all shards. Caller-owned struct, shards
 * allocated by init.
 *
 * Thread-safety rules, precisely:
 * - hb_counters_add through shard s must not run in two threads at once. A shard may move to
 *   another thread only with a happens-before between the old owner's last add and the new
 *   owner's first (a mutex, a thread join, uv_async_send...). Adds through different shards run
 *   concurrently without any synchronisation.
 * - hb_counters_snapshot may run in any thread at any time between init and close, concurrently
 *   with adds and with other snapshots. It never blocks and never retries.
 * - init and close must not race with anything on the same hb_counters_t.
 * What a snapshot sees of adds running at the same time: each shard's per-second values come
 * from one second only (a ring entry being reused for a later second is never mixed in: the
 * shard then gives 0); a value may or may not include an add that races the snapshot, slot by
 * slot; every add that happens-before the snapshot is included. Successive snapshots taken by
 * one thread see every cumulative value non-decreasing. A racing add may show in per_second
 * before it shows in cumulative. */
typedef struct hb_counters {
    /* public */
    void *data;
    /* read-only */
    unsigned nshards;
    uint64_t type; /* reporter type put in snapshots */
    /* private */
    struct hb_counters_shard *shards;
} hb_counters_t;

/* Allocate nshards zeroed shards (about 32 KiB each). Returns 0; HB_EINVAL when c is NULL,
 * nshards is 0 or above 1024, or type is neither HB_REPORTER_CLIENT nor HB_REPORTER_SERVER;
 * HB_ENOMEM. On error *c holds no allocation (close is then a no-op). */
HB_EXTERN int hb_counters_init(hb_counters_t *c, unsigned nshards, uint64_t type);

/* Free the shards and leave nshards 0 (a second close is a no-op, and later adds are ignored).
 * No add or snapshot may run concurrently; no snapshot may run afterwards. */
HB_EXTERN void hb_counters_close(hb_counters_t *c);

/* Add delta to slot idx for second now_s, through shard. Wait-free, no lock, no
 * read-modify-write: atomic loads and stores to the shard's own memory only (relaxed, and
 * release for the per-second values, a plain store on x86); moving to a new second also zeroes
 * that second's 60 values. Every add counts in the cumulative total. Each shard keeps the
 * per-second values of the HB_COUNTERS_HISTORY seconds ending at the newest second ever added
 * through it, so its window moves only when it is written: a second newer than the shard's
 * newest becomes the newest; a second inside the window (a late add) is added to its own
 * second; a second older than the window counts only in the cumulative total, and so does
 * now_s == UINT64_MAX. Values wrap modulo 2^64. Out-of-range shard or idx is ignored. */
HB_EXTERN void hb_counters_add(hb_counters_t *c, unsigned shard, unsigned idx, uint64_t now_s,
                               uint64_t delta);

/* Counts one writer gathers in plain memory and adds to its shard in one go: per-event counting
 * without a store into the shared shard per count. The batch holds one second's counts; counting
 * for another second first flushes what it holds. Until a flush, snapshots do not see the counts:
 * the writer flushes before anyone should (before it answers what it counted, before it sleeps).
 * A batch belongs to the thread that may add through its shard (the rules of hb_counters_t). */
typedef struct hb_counters_batch {
    /* read-only */
    hb_counters_t *counters;
    unsigned shard;
    /* private */
    uint64_t second;
    uint64_t slots; /* bit i: v[i] holds a count */
    uint64_t v[HB_COUNTER_SLOTS];
} hb_counters_batch_t;

/* An empty batch for shard of c. */
HB_EXTERN void hb_counters_batch_init(hb_counters_batch_t *b, hb_counters_t *c, unsigned shard);

/* Add every count of b to its shard, as hb_counters_add of each slot's sum for b's second would,
 * and empty b. Nothing to do when b is empty. */
HB_EXTERN void hb_counters_batch_flush(hb_counters_batch_t *b);

/* Count delta in slot idx for second now_s into b (flushing b first when it holds another
 * second). Out-of-range idx is ignored. */
static inline void hb_counters_batch_add(hb_counters_batch_t *b, unsigned idx, uint64_t now_s,
                                         uint64_t delta)
{
    if (idx >= HB_COUNTER_SLOTS)
        return;
    if (now_s != b->second) {
        if (b->slots != 0)
            hb_counters_batch_flush(b);
        b->second = now_s;
    }
    b->v[idx] += delta;
    b->slots |= (uint64_t)1 << idx;
}

/* Snapshot second into *out: second, the counter set's type, per-second values summed over the
 * shards (a shard gives 0 for a second outside its window: not yet added or older than its
 * newest second minus HB_COUNTERS_HISTORY - 1) and cumulative totals as of now. Any thread,
 * wait-free; see hb_counters_t for what it sees of concurrent adds. */
HB_EXTERN void hb_counters_snapshot(const hb_counters_t *c, uint64_t second, hb_report_t *out);

/* Encode *r into exactly HB_REPORT_SIZE bytes at buf (the reference's wire format: r->type is
 * written as it is, unchecked). */
HB_EXTERN void hb_report_encode(const hb_report_t *r, uint8_t buf[HB_REPORT_SIZE]);

/* Decode a report from buf[0..len). Returns 0, or HB_EREPORT when len != HB_REPORT_SIZE or the
 * type is neither client nor server (HB_EINVAL when buf or out is NULL). *out is written only
 * on success. */
HB_EXTERN int hb_report_decode(const uint8_t *buf, size_t len, hb_report_t *out);

/* Buffer sizes, NUL included, that always suffice for the renderers below (reached when every
 * value is UINT64_MAX). HB_REPORT_PROMETHEUS_MAX takes strlen(prefix) (7 for the default). */
#define HB_REPORT_PROMETHEUS_MAX(prefix_len) ((size_t)7978 + 147 * (size_t)(prefix_len))
#define HB_REPORT_JSON_MAX                   1892

/* Render *r as Prometheus text exposition (format 0.0.4): for each of the reference's slots
 * (HB_COUNTER_OWNER_REFERENCE, whatever r->type; a server's /metrics adds its own), a counter
 * "<prefix>_<name>_total" with the cumulative value and a gauge "<prefix>_<name>_per_second"
 * with second r->second's value, plus the gauge "<prefix>_report_second" giving that second
 * (one series per slot, not one per second); prefix NULL means "hongbao". Every series has its
 * "# HELP" (the slot's meaning) and "# TYPE" lines; every line ends in "\n". Writes a
 * NUL-terminated string into buf[0..cap). Returns its length without the NUL; HB_ENOBUFS when it
 * does not fit (cap must exceed the length), and then buf holds "" when cap > 0 (the rest of
 * buf[0..cap) is scratch); nothing is ever written at or past buf + cap. HB_EINVAL when r is
 * NULL, buf is NULL with cap > 0, or prefix is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
 * No allocation. */
HB_EXTERN int hb_report_format_prometheus(const hb_report_t *r, const char *prefix, char *buf,
                                          size_t cap);

/* Render *r as one JSON object on one line, no spaces, no trailing newline:
 * {"second":N,"type":"server","per_second":{"frame_login":N,...},"cumulative":{...}} with the
 * reference's slots only, in slot order ("type" is "client" or "server"). Same return contract as
 * the Prometheus renderer; HB_EINVAL also when r->type is neither client nor server. */
HB_EXTERN int hb_report_format_json(const hb_report_t *r, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_COUNTERS_H */
