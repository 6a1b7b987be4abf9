/* Private structures of the server runtime, shared by hb_server.c (threads, listeners,
 * generators, control routes) and hb_set.c (connections and the message path inside a SET). */
#ifndef HB_SERVER_INT_H
#define HB_SERVER_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "hongbao/book.h"
#include "hongbao/counters.h"
#include "hongbao/envq.h"
#include "hongbao/ledger.h"
#include "hongbao/msgq.h"
#include "hongbao/rand.h"
#include "hongbao/registry.h"
#include "hongbao/server.h"

#define HB_SET_READ_BUF   65536 /* one read buffer per worker loop */
#define HB_SET_OUT_BUF    16384 /* replies gathered per connection before one write */
#define HB_MSG_INLINE     40    /* frames up to this size travel inside a queue message */
#define HB_MAX_HANDLERS   16
#define HB_LISTEN_BACKLOG 4096

typedef enum {
    HB_MSG_FRAME,        /* bytes to user (gen 0: whatever connection the user has) */
    HB_MSG_FRAME_HEAP,   /* the same, bytes on the heap, freed by the receiver */
    HB_MSG_KICK,         /* close user's connection of generation gen */
    HB_MSG_CLAIM,        /* judge a claim in this SET's book */
    HB_MSG_CLAIM_RESULT, /* send a claim reply to user */
    HB_MSG_ENVELOPE,     /* add a send-envelope to this SET's book */
    HB_MSG_DURABLE       /* journal records up to gen are on disk: release held claim replies */
} hb_msg_type_t;

typedef struct hb_set_msg {
    uint8_t type;
    uint16_t len;
    uint32_t user;
    uint64_t gen;
    union {
        uint8_t bytes[HB_MSG_INLINE];
        uint8_t *heap;
        struct {
            uint32_t envelope_id;
            uint32_t reply_set;
        } claim;
        struct {
            uint32_t envelope_id;
            uint32_t amount;
        } result;
        hb_sendenv_t env;
    } u;
} hb_set_msg_t;

/* Messages that did not fit the ring, kept in order until it drains. */
typedef struct hb_overflow {
    struct hb_overflow *next;
    hb_set_msg_t msg;
} hb_overflow_t;

typedef struct hb_worker hb_worker_t;

/* A user-id -> connection map local to one SET (single-threaded, linear probing). */
typedef struct hb_conn_map {
    struct hb_conn_map_slot *slots;
    size_t mask;
    size_t count;
} hb_conn_map_t;

/* A granted claim's reply, held until its journal record is durable. */
typedef struct hb_held_reply {
    uint64_t seq;
    uint32_t reply_set; /* the claimant's SET */
    hb_set_msg_t msg;   /* the HB_MSG_CLAIM_RESULT to deliver */
} hb_held_reply_t;

typedef struct hb_set {
    hb_worker_t *worker;
    unsigned index;
    hb_msgq_t queue;
    uv_async_t async;
    uv_timer_t expiry_timer;
    uv_mutex_t overflow_lock;
    hb_overflow_t *overflow_head, *overflow_tail;
    atomic_uint overflow_count;
    hb_book_t book;
    hb_conn_map_t users;
    /* claim replies waiting for the journal, in sequence order (a ring that grows) */
    hb_held_reply_t *held;
    size_t held_head, held_count, held_cap;
    atomic_size_t held_waiting; /* read by the ledger's writer thread */
} hb_set_t;

/* One user's connection: kept small, since a server holds tens of thousands (0.4 kB each with
 * its map and registry slots). Its SET is tcp.data. */
struct hb_conn {
    uv_tcp_t tcp; /* first: the handle's address is the connection's; data: its hb_set_t */
    hb_framer_t framer;
    uint64_t gen;
    uint32_t user;
    uint32_t out_pending; /* bytes handed to uv_write and not yet written */
    union {
        uint32_t accepted_ms; /* before login: uv_now at accept, truncated (login deadline) */
        uint32_t rate_s;      /* after login: the second rate_n counts requests of */
    } stamp;
    uint16_t rate_n; /* requests in that second, saturating */
    uint8_t logged_in;
    uint8_t closing;
};

#define HB_CONN_SET(c) ((hb_set_t *)(c)->tcp.data)

struct hb_worker {
    struct hb_server_impl *impl;
    unsigned index;
    uv_thread_t thread;
    int thread_started;
    int loop_ready;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop_async;
    int listen_fd;
    unsigned first_set, nsets; /* this worker's SETs: impl->sets[first_set .. + nsets) */
    unsigned next_set;
    int stopping;
    size_t open_handles; /* closed handles count down; the loop ends with them */
    uint8_t *readbuf;
    /* replies gathered for one connection, written at once */
    hb_conn_t *out_conn;
    size_t out_len;
    uint8_t out[HB_SET_OUT_BUF];
};

typedef struct hb_handler {
    uint16_t cmd;
    hb_frame_handler_cb cb;
    void *arg;
} hb_handler_t;

typedef struct hb_generator {
    uv_timer_t timer;
    uint64_t qps, sum, done;
    uint64_t start_ms;
    uint32_t min_user, max_user;
    int active;
} hb_generator_t;

struct hb_server_impl {
    hb_server_t *pub;
    hb_server_options_t opts;
    char host[64];
    hb_worker_t *workers;
    hb_set_t *sets;
    hb_envq_t envq;
    hb_registry_t registry;
    hb_counters_t counters;
    hb_rand_t rng; /* control loop only */
    hb_handler_t handlers[HB_MAX_HANDLERS];
    unsigned nhandlers;
    atomic_uint_fast64_t next_gen;
    atomic_uint_fast64_t rate; /* (second << 24) | shakes this second */
    atomic_size_t nconns;
    uint32_t next_shake_id, next_send_id; /* control loop only */
    hb_generator_t shake_gen, send_gen;
    uv_async_t done_async; /* workers signal the control loop when they end */
    atomic_uint workers_done;
    int started, closing;
    hb_server_close_cb close_cb;
    unsigned control_handles;
    hb_ledger_t ledger;
    int have_ledger;
    atomic_uint_fast64_t durable_seq; /* the ledger's highest durable record */
    uv_mutex_t durable_lock;          /* orders the writer's notices against shutdown */
    int stopping_sets;                /* under durable_lock: no more notices */
};

/* hb_set.c */
int hb__set_init(struct hb_server_impl *impl, hb_set_t *set, hb_worker_t *w, unsigned index);
void hb__set_free(hb_set_t *set);
/* Start the SET's handles on its worker's loop (control thread, before the worker runs). */
int hb__set_start(hb_set_t *set);
void hb__set_close_handles(hb_set_t *set);
void hb__set_shutdown_conns(hb_set_t *set);
void hb__worker_on_connection(uv_stream_t *listener, int status);
int hb__chat_handler(hb_conn_t *c, const hb_frame_t *f, void *arg);
/* Post a message to a SET from any thread; overflow keeps it when the ring is full. */
int hb__set_post(hb_set_t *set, const hb_set_msg_t *msg, int overflow);
/* The shard of the calling thread's counters: workers 0..n-1, the control loop n. */
unsigned hb__control_shard(const struct hb_server_impl *impl);
uint64_t hb__now_s(void);

#endif /* HB_SERVER_INT_H */
