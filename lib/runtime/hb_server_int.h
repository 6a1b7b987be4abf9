/* The server's own state (hb_server.c: threads, listeners, start and close; hb_generator.c: the
 * envelope generators; hb_server_routes.c: the control routes). The server drives its SETs
 * through hb_set.h and reaches money through the store (hb_store.h). */
#ifndef HB_SERVER_INT_H
#define HB_SERVER_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "hb_set.h"
#include "hb_store.h"
#include "hongbao/netstat.h"
#include "hongbao/rand.h"
#include "hongbao/server.h"

#define HB_GENERATE_QPS_MAX 10000000 /* generators and their control routes */

typedef struct hb_generator {
    uv_timer_t timer;
    uint64_t qps, count, done;
    uint64_t start_ms;
    uint32_t min_user, max_user;
    int active;
} hb_generator_t;

struct hb_server_impl {
    hb_server_t *pub;
    hb_server_options_t opts;
    char host[64];
    hb_setgroup_t group; /* the SETs, their workers and what they share */
    hb_store_t store;
    int store_open;
    hb_envq_t envq;
    hb_registry_t registry;
    hb_counters_t counters;
    hb_counter_names_t counter_names; /* the application's slots (hb_server_add_counter) */
    hb_rand_t rng;                    /* control loop only */
    hb_handler_t handlers[HB_MAX_HANDLERS];
    unsigned nhandlers;
    int listen_fd; /* the shared listening socket (without reuse_port) */
    hb_generator_t shake_gen, send_gen;
    uint32_t kept_shake_id;   /* an id taken for an envelope every bucket refused: the next one's */
    uv_async_t control_async; /* workers and SETs wake the control loop (phases, ends) */
    atomic_uint workers_done;
    atomic_uint phase_acks;
    unsigned phase; /* control loop: the shutdown phase posted last (0: running) */
    int started, closing, control_open;
    hb_server_close_cb close_cb;
    unsigned control_handles;
    hb_netstat_t nic; /* the NIC sampler on the control loop (opts.nic), while nic_open */
    int nic_open;
    char nic_name[HB_NETDEV_NAME_MAX]; /* opts.nic's copy */
};

/* hb_generator.c, on the control loop. */
void hb__generators_init(struct hb_server_impl *impl);
void hb__generators_stop(struct hb_server_impl *impl);
/* The generators' timers, for the close path. */
uv_handle_t *hb__generator_handle(hb_generator_t *g);

#endif /* HB_SERVER_INT_H */
