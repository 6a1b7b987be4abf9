/* The host's NIC in the counter reports: a sampler on a libuv loop that reads one network
 * interface's statistics (/proc/net/dev) just after each wall-clock second and counts what the
 * interface received and transmitted during that second into a counter set's NIC slots
 * (hongbao/counters.h: 7, 8, 9, 12), with the interface's identity in slot 13, so that a monitor
 * sums the interfaces per host rather than per process (docs/monitor.md). The parsing is the
 * core's (hongbao/netdev.h). The server runs one for you (hb_server_options_t.nic); hb-client
 * runs one per worker process beside its hb_client_t. */
#ifndef HONGBAO_NETSTAT_H
#define HONGBAO_NETSTAT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hongbao/common.h"
#include "hongbao/counters.h"
#include "hongbao/netdev.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The statistics file read by default. */
#define HB_NETSTAT_DEFAULT_PATH "/proc/net/dev"

typedef struct hb_netstat hb_netstat_t;

/* Called once the sampler's timer is closed; ns's memory may be freed from here on. */
typedef void (*hb_netstat_close_cb)(hb_netstat_t *ns);

/* Options. Zero-initialise, set what you need. */
typedef struct hb_netstat_options {
    /* The interface ("lo", "eth0"): required. hb_netstat_interface_for finds the one an address
     * uses. */
    const char *interface;
    /* The counters shard the sampler adds through, on the loop's thread: one that thread owns
     * (hb_counters_t's rules; a client's 0, a server's control shard). */
    unsigned shard;
    /* The identity put in slot HB_CTR_NIC_HOST; 0: hb_netdev_host_id of the machine
     * (/etc/machine-id, else the host name), the process's network namespace and the interface.
     * Give one to make processes of one machine count as different hosts (or the reverse). */
    uint64_t host_id;
    /* The statistics file, in /proc/net/dev's format; NULL: HB_NETSTAT_DEFAULT_PATH. */
    const char *path;
    /* The wall clock in Unix milliseconds, called on the loop thread; NULL: the system's. */
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
    /* Log lines (one line, no newline, valid during the call), on the loop thread: the statistics
     * became unreadable or the interface disappeared (once), and came back (once). NULL: none. */
    hb_log_cb log;
    void *log_arg;
} hb_netstat_options_t;

/* The sampler. Caller-owned; hb_netstat_init, hb_netstat_start, hb_netstat_close. Every function
 * taking it runs on the loop's thread. */
struct hb_netstat {
    /* public */
    void *data;
    /* read-only */
    uv_loop_t *loop;
    hb_counters_t *counters;
    char interface[HB_NETDEV_NAME_MAX];
    uint64_t host_id;       /* what slot HB_CTR_NIC_HOST carries */
    hb_netdev_stats_t last; /* the latest reading that succeeded */
    uint64_t last_ms;       /* when it was taken */
    uint64_t samples;       /* readings that succeeded, the first (the baseline) included */
    uint64_t failures;      /* readings that failed */
    int err;                /* the latest reading's error (UV_ENODEV: interface gone), or 0 */
    /* private */
    uv_timer_t timer;
    hb_netstat_options_t opts;
    char path[256];
    char *buf; /* the statistics file's contents */
    size_t cap;
    hb_netstat_close_cb close_cb;
    int closing;
};

/* Set ns up to sample opts->interface into counters: read the statistics once (the baseline:
 * nothing is counted before the next reading) and put the identity in slot HB_CTR_NIC_HOST.
 * Sets ns->data to NULL. Returns 0; UV_EINVAL (NULL argument, no interface or a name of
 * HB_NETDEV_NAME_MAX bytes or more, a shard out of range, a path of 256 bytes or more);
 * UV_ENODEV when the statistics do not list the interface; the error of opening or reading the
 * file (UV_ENOENT, UV_EACCES...); UV_ENOMEM. On error nothing needs closing; after 0,
 * hb_netstat_close must be called. */
HB_EXTERN int hb_netstat_init(uv_loop_t *loop, hb_netstat_t *ns, hb_counters_t *counters,
                              const hb_netstat_options_t *opts);

/* Sample from now on, just after each wall-clock second (10 ms past it): each reading's
 * difference from the one before (hb_netdev_delta) is counted for the second the interval between
 * them mostly lies in (the second that just ended). Returns 0, UV_EINVAL (closing, already
 * started). */
HB_EXTERN int hb_netstat_start(hb_netstat_t *ns);

/* Read the statistics now and count the difference from the previous reading, as each tick
 * does. Returns 0, or the reading's error (also kept in ns->err; the previous reading stays the
 * baseline, and a reading that succeeds later counts everything in between). */
HB_EXTERN int hb_netstat_sample(hb_netstat_t *ns);

/* Stop sampling and close the timer, then call cb (may be NULL) from the loop; only then may ns
 * be freed. The counters are not touched again. A second call does nothing. */
HB_EXTERN void hb_netstat_close(hb_netstat_t *ns, hb_netstat_close_cb cb);

/* The interface an IP literal uses, into name[0..cap): a loopback address (127.0.0.0/8, ::1)
 * gives the loopback interface; an address of an interface of this host gives that interface
 * (or the first whose subnet holds it); an unspecified one (0.0.0.0, ::), or one no interface
 * holds, gives the interface of the default route (/proc/net/route), and the loopback interface
 * when there is none. Returns 0; UV_EINVAL (not an IP literal, NULL arguments); UV_ENOBUFS (cap
 * too small); UV_ENODEV (no interface fits); an error of uv_interface_addresses. */
HB_EXTERN int hb_netstat_interface_for(const char *ip, char *name, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_NETSTAT_H */
