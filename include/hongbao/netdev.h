/* The kernel's network interface statistics, parsed: the packets and bytes one interface received
 * and transmitted (Linux's /proc/net/dev), the interface of the default route (/proc/net/route),
 * the difference of two readings, the identity of a host's interface, and the counting of both
 * into the counter slots of the host's NIC (hongbao/counters.h: 7, 8, 9, 12 and 13). Pure: the
 * caller reads the files and the clock (hongbao/netstat.h does, once a second on a libuv loop). */
#ifndef HONGBAO_NETDEV_H
#define HONGBAO_NETDEV_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An interface name's size, NUL included (Linux's IFNAMSIZ). */
#define HB_NETDEV_NAME_MAX 16

/* What the kernel counted on one interface since it came up. */
typedef struct hb_netdev_stats {
    uint64_t rx_packets;
    uint64_t tx_packets;
    uint64_t rx_bytes;
    uint64_t tx_bytes;
} hb_netdev_stats_t;

/* Find interface `name` in text[0..len), the contents of /proc/net/dev: two header lines, then a
 * line per interface, "<spaces><name>:" and 16 decimal numbers (received: bytes, packets, errs,
 * drop, fifo, frame, compressed, multicast; transmitted: bytes, packets, errs, drop, fifo, colls,
 * carrier, compressed), of which the first ten are read. text need not end in a newline nor be
 * NUL-terminated, and nothing at or past text + len is ever read. Returns 0 and fills *out;
 * HB_ENOENT when no line names the interface; HB_ERANGE when its line is malformed (fewer than
 * ten numbers, a number above UINT64_MAX); HB_EINVAL when text (with len > 0), name or out is
 * NULL, or name is empty or HB_NETDEV_NAME_MAX bytes or longer. *out is written only on
 * success. */
HB_EXTERN int hb_netdev_parse(const char *text, size_t len, const char *name,
                              hb_netdev_stats_t *out);

/* The interface of the default IPv4 route in text[0..len), the contents of /proc/net/route (a
 * header line, then "Iface Destination Gateway Flags RefCnt Use Metric Mask ..." separated by
 * tabs, addresses and flags in hexadecimal): among the routes that are up (flag 0x1) to 0.0.0.0
 * with mask 0.0.0.0, the one of lowest metric (the first of equals). Its name is copied, NUL
 * included, to name[0..cap). Returns 0; HB_ENOENT when there is no such route; HB_ENOBUFS when
 * the name does not fit cap (name then holds "" when cap > 0); HB_EINVAL (NULL text with len > 0,
 * NULL name with cap > 0). Malformed lines are skipped. Reads nothing past text + len. */
HB_EXTERN int hb_netdev_default_route(const char *text, size_t len, char *name, size_t cap);

/* *out = *cur - *prev, field by field, for two readings of one interface in that order; a field
 * that went down (the interface was reset or re-created in between) gives 0. out may be cur or
 * prev. */
HB_EXTERN void hb_netdev_delta(const hb_netdev_stats_t *prev, const hb_netdev_stats_t *cur,
                               hb_netdev_stats_t *out);

/* The identity of one interface of one host, as slot HB_CTR_NIC_HOST carries it: FNV-1a (64 bits)
 * of `machine` (the machine's identity: /etc/machine-id, or the host name; NULL as ""), of
 * `netns` (the network namespace's inode number: interfaces of one name in two namespaces are
 * two interfaces; 0 if unknown) and of `name`; never 0. Processes that read the same interface of
 * the same host compute the same value, so a monitor counts that interface once. */
HB_EXTERN uint64_t hb_netdev_host_id(const char *machine, uint64_t netns, const char *name);

/* Count *delta, what the interface did during second `second`, into its slots of c
 * (HB_CTR_NIC_RX_PACKETS, _TX_PACKETS, _RX_BYTES, _TX_BYTES) through `shard`, by hb_counters_add
 * and under its rules (shard owned by the calling thread). */
HB_EXTERN void hb_netdev_count(hb_counters_t *c, unsigned shard, uint64_t second,
                               const hb_netdev_stats_t *delta);

/* Count *delta, what the interface did between two readings at Unix milliseconds from_ms and
 * to_ms (from_ms < to_ms), as hb_netdev_count does: an interval of about one second (under 1.5 s)
 * counts in the second its middle lies in; a longer one (the reading was late: a process that
 * waited for a CPU, a statistics file unreadable for a while) is spread evenly over the n whole
 * seconds it covers (n its length rounded to seconds, at most HB_COUNTERS_HISTORY), the last of
 * them the second the middle of its last n-th lies in, with the remainders in that last second:
 * the sum is delta exactly, and no second shows a burst that was in fact n seconds' worth. */
HB_EXTERN void hb_netdev_count_interval(hb_counters_t *c, unsigned shard, uint64_t from_ms,
                                        uint64_t to_ms, const hb_netdev_stats_t *delta);

/* Make slot HB_CTR_NIC_HOST of c carry `id`: its cumulative value becomes id (through `shard`,
 * whatever it held; its per-second values are untouched, 0). Nothing else may add to that slot.
 * id 0 says "no interface sampled". */
HB_EXTERN void hb_netdev_set_host(hb_counters_t *c, unsigned shard, uint64_t id);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_NETDEV_H */
