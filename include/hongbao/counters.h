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

/* Slot indices, the reference's. Slots 0..6 count frames seen of each reference cmd. */
enum {
    HB_CTR_FRAME_LOGIN = 0,
    HB_CTR_FRAME_LOGIN_REPLY = 1,
    HB_CTR_FRAME_SHAKE = 2,
    HB_CTR_FRAME_SHAKE_REPLY = 3,
    HB_CTR_FRAME_NOTICE = 4,
    HB_CTR_FRAME_CLAIM = 5,
    HB_CTR_FRAME_CLAIM_REPLY = 6,
    HB_CTR_REQUESTS = 10,
    HB_CTR_RESPONSES = 11,
    HB_CTR_SHAKE_GOT = 14,
    HB_CTR_SHAKE_NONE = 15,
    HB_CTR_SHAKE_ALL_TAKEN = 16,
    HB_CTR_SHAKE_OVERLOAD = 17,
    HB_CTR_SHAKE_HANDED_OUT = 18,
    HB_CTR_CONN_OPENED = 20,
    HB_CTR_CONN_CLOSED = 21,
    HB_CTR_SHAKE_ENVELOPES = 22,
    HB_CTR_SHAKE_RECEIVED = 23,
    HB_CTR_SHAKE_AMOUNT_ISSUED = 24,
    HB_CTR_SHAKE_AMOUNT_RECEIVED = 25,
    HB_CTR_SEND_CREATED = 30,
    HB_CTR_CLAIMS_GRANTED = 31,
    HB_CTR_SEND_AMOUNT_ISSUED = 32,
    HB_CTR_SEND_AMOUNT_CLAIMED = 33
};

/* Reporter types in a report. */
enum { HB_REPORTER_CLIENT = 0, HB_REPORTER_SERVER = 1 };

/* The snake_case name of a slot ("shake_got", "conn_opened"), or NULL for a slot the reference
 * leaves free (and for idx >= HB_COUNTER_SLOTS). */
HB_EXTERN const char *hb_counter_name(unsigned idx);

/* One second's view: what the reference sends the monitor. */
typedef struct hb_report {
    uint64_t second; /* the Unix second per_second describes */
    uint64_t type;   /* HB_REPORTER_CLIENT or HB_REPORTER_SERVER */
    uint64_t per_second[HB_COUNTER_SLOTS];
    uint64_t cumulative[HB_COUNTER_SLOTS]; /* totals when the snapshot was taken */
} hb_report_t;

/* The counter set. Writers: each thread increments through its own shard (0..nshards-1), so no
 * two threads ever write the same memory; readers merge all shards. Shard s may be used by one
 * thread at a time; any thread may read. Caller-owned struct, shards allocated by init. */
typedef struct hb_counters {
    /* public */
    void *data;
    /* read-only */
    unsigned nshards;
    uint64_t type; /* reporter type put in snapshots */
    /* private */
    struct hb_counters_shard *shards;
} hb_counters_t;

/* Allocate nshards zeroed shards. Returns 0, UV_EINVAL for nshards 0 or above 1024, UV_ENOMEM. */
HB_EXTERN int hb_counters_init(hb_counters_t *c, unsigned nshards, uint64_t type);

/* Free the shards. No add or read may run concurrently or afterwards. */
HB_EXTERN void hb_counters_close(hb_counters_t *c);

/* Add delta to slot idx for second now_s, through shard. Wait-free: relaxed atomic stores to the
 * shard's own memory. A second older than the shard's newest is added to the cumulative total
 * and, while still in the ring, to its own second. Out-of-range shard or idx is ignored. */
HB_EXTERN void hb_counters_add(hb_counters_t *c, unsigned shard, unsigned idx, uint64_t now_s,
                               uint64_t delta);

/* Snapshot second: per-second values summed over shards (0 for a second no longer or not yet in
 * the ring) and cumulative totals as of now. Any thread. */
HB_EXTERN void hb_counters_snapshot(const hb_counters_t *c, uint64_t second, hb_report_t *out);

/* Encode *r into exactly HB_REPORT_SIZE bytes at buf (the reference's wire format). */
HB_EXTERN void hb_report_encode(const hb_report_t *r, uint8_t buf[HB_REPORT_SIZE]);

/* Decode a report from buf[0..len). Returns 0, or HB_EREPORT when len != HB_REPORT_SIZE or the
 * type is neither client nor server. */
HB_EXTERN int hb_report_decode(const uint8_t *buf, size_t len, hb_report_t *out);

/* Render *r as Prometheus text exposition (format 0.0.4): for each named slot, a counter
 * "<prefix>_<name>_total" with the cumulative value and a gauge "<prefix>_<name>_per_second"
 * with second r->second's value, plus the gauge "<prefix>_report_second" giving that second
 * (one series per slot, not one per second); prefix NULL means "hongbao". Writes a NUL-terminated string into
 * buf[0..cap). Returns its length without the NUL, or UV_ENOBUFS when it does not fit. */
HB_EXTERN int hb_report_format_prometheus(const hb_report_t *r, const char *prefix, char *buf,
                                          size_t cap);

/* Render *r as one JSON object: {"second":N,"type":"server","per_second":{"name":N,...},
 * "cumulative":{...}} with named slots only. Same return contract as the Prometheus renderer. */
HB_EXTERN int hb_report_format_json(const hb_report_t *r, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_COUNTERS_H */
