/* Private structures of the server runtime, shared by hb_server.c (threads, listeners, generators,
 * control routes), hb_set.c (connections and the message path inside a SET) and hb_store_local.c
 * (where money is decided and made durable: books, journal, held replies and notices). */
#ifndef HB_SERVER_INT_H
#define HB_SERVER_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "hb_sock.h"
#include "hongbao/book.h"
#include "hongbao/counters.h"
#include "hongbao/envelope.h"
#include "hongbao/envq.h"
#include "hongbao/ledger.h"
#include "hongbao/msgq.h"
#include "hongbao/rand.h"
#include "hongbao/registry.h"
#include "hongbao/server.h"

#define HB_SET_READ_BUF     65536 /* one read buffer per worker loop */
#define HB_SET_OUT_BUF      16384 /* replies gathered per connection before one write */
#define HB_MSG_INLINE       40    /* frames up to this size travel inside a queue message */
#define HB_MAX_HANDLERS     16
#define HB_LISTEN_BACKLOG   4096
#define HB_GENERATE_QPS_MAX 10000000 /* generators and their control routes */

typedef enum {
    HB_MSG_FRAME,        /* bytes to user (gen 0: whatever connection the user has) */
    HB_MSG_FRAME_HEAP,   /* the same, bytes on the heap, freed by the receiver */
    HB_MSG_KICK,         /* close user's connection of generation gen */
    HB_MSG_CLAIM,        /* store: judge a claim in this SET's book (the envelope's owner) */
    HB_MSG_CLAIM_RESULT, /* send a claim's answer to user's connection of generation gen */
    HB_MSG_ENVELOPE,     /* store: a new send-envelope for this SET's book; gen: its record */
    HB_MSG_DURABLE,      /* store: the journal is durable further: release what waited for it */
    HB_MSG_STORE_FAILED, /* store: nothing more becomes durable: roll back what waits */
    HB_MSG_PHASE         /* shutdown step `user` (gen: phase 3's journal target) */
} hb_msg_type_t;

typedef struct hb_set_msg {
    uint8_t type;
    uint8_t ext; /* claims: asked with HB_CMD_CLAIM_EX, answered with its result code */
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
            uint32_t result; /* HB_CLAIM_* */
        } result;
        hb_sendenv_t env;
    } u;
} hb_set_msg_t;

typedef struct hb_worker hb_worker_t;

/* A user-id -> connection map local to one SET (single-threaded, linear probing). */
typedef struct hb_conn_map {
    struct hb_conn_map_slot *slots;
    size_t mask;
    size_t count;
} hb_conn_map_t;

/* What waits in the owning SET for the journal to be durable up to seq. */
typedef enum {
    HB_HELD_GRANT,  /* a first grant: its reply; rolled back if the journal fails */
    HB_HELD_REPEAT, /* a repeated claim's reply, answered once its grant is durable */
    HB_HELD_NOTICE /* a new send-envelope's notices; the envelope is dropped if the journal fails */
} hb_held_kind_t;

typedef struct hb_held {
    uint64_t seq;
    uint64_t gen;
    uint32_t user;
    uint32_t envelope_id;
    uint32_t amount;
    uint32_t reply_set;
    uint8_t kind;
    uint8_t ext;
} hb_held_t;

typedef struct hb_set {
    hb_worker_t *worker;
    unsigned index;
    hb_msgq_t queue;
    uv_async_t async;
    int async_open;
    hb_conn_map_t users;
    /* The local store's part of the SET (hb_store_local.c): the book of the send-envelopes this
     * SET owns (id % nsets), and what waits for the journal, in sequence order (a ring that
     * grows). */
    hb_book_t book;
    hb_held_t *held;
    size_t held_head, held_count, held_cap;
    uint64_t last_seq;  /* the highest record this SET journaled or waits for */
    int store_failed;   /* this SET has rolled back after the journal failed */
    int phase3_waiting; /* shutdown: waiting for the journal to reach phase3_target */
    uint64_t phase3_target;
    atomic_size_t waiting; /* held items (+1 during phase 3): read by the journal's writer */
} hb_set_t;

/* One user's connection: kept small, since a server holds tens of thousands. Its SET is
 * sock.poll.data. */
struct hb_conn {
    hb_sock_t sock; /* first: the handle's address is the connection's */
    hb_framer_t framer;
    uint64_t gen;
    uint32_t user;
    union {
        uint32_t accepted_ms; /* before login: uv_now at accept, truncated (login deadline) */
        uint32_t rate_s;      /* after login: the second rate_n counts requests of */
    } stamp;
    uint16_t rate_n; /* requests in that second, saturating */
    uint8_t logged_in;
    uint8_t closing;
    uint8_t shook; /* counted among the connections that shook in rate_s */
};

#define HB_CONN_SET(c) ((hb_set_t *)(c)->sock.poll.data)

struct hb_worker {
    struct hb_server_impl *impl;
    unsigned index;
    uv_thread_t thread;
    int thread_started;
    int loop_ready;
    uv_loop_t loop;
    hb_listener_t listener;
    int listener_open;
    uv_timer_t tick; /* login deadlines and expiry; at shutdown, the close deadline */
    int tick_open;
    int listen_fd; /* with reuse_port: this worker's own socket until the listener owns it */
    unsigned first_set, nsets; /* this worker's SETs: impl->sets[first_set .. + nsets) */
    unsigned next_set;
    int stopping;         /* phase 1 reached: no more input */
    unsigned phase4_sets; /* its SETs that have reached the last phase */
    uint64_t close_deadline_ms;
    size_t conns; /* connections open on this loop, closing ones included */
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
    uint32_t kept_id; /* an id taken for an envelope every bucket refused: the next one's */
    int active;
} hb_generator_t;

/* Ids of one kind handed out only inside a durable reservation (ids are never reused, also
 * across restarts). Control loop only. */
typedef struct hb_idspace {
    hb_envelope_kind_t kind;
    uint32_t next;        /* the next id to hand out; 0: the space is used up */
    uint32_t ok_until;    /* ids up to here are covered by a durable reservation */
    uint32_t reserved;    /* the last id journaled as reserved (maybe not durable yet) */
    uint64_t pending_seq; /* that reservation's record while not known durable; 0: none */
    uint32_t block;       /* ids reserved at a time */
    int exhausted_logged;
} hb_idspace_t;

struct hb_server_impl {
    hb_server_t *pub;
    hb_server_options_t opts;
    char host[64];
    unsigned nthreads, nsets;
    hb_worker_t *workers;
    hb_set_t *sets;
    hb_envq_t envq;
    hb_registry_t registry;
    hb_counters_t counters;
    hb_rand_t rng; /* control loop only */
    hb_handler_t handlers[HB_MAX_HANDLERS];
    unsigned nhandlers;
    atomic_uint_fast64_t next_gen;
    atomic_uint_fast64_t rate;   /* (second << 24) | shakes this second */
    atomic_uint_fast64_t active; /* (second << 32) | connections that shook in it */
    atomic_uint active_prev;     /* connections that shook in the second before */
    atomic_size_t nconns;
    int listen_fd; /* the shared listening socket (without reuse_port) */
    hb_idspace_t shake_ids, send_ids;
    hb_generator_t shake_gen, send_gen;
    uv_async_t control_async; /* workers and SETs wake the control loop (phases, ends) */
    atomic_uint workers_done;
    atomic_uint phase_acks;
    unsigned phase; /* control loop: the shutdown phase posted last (0: running) */
    int started, closing, control_open;
    hb_server_close_cb close_cb;
    unsigned control_handles;
    /* The journal (NULL ledger_dir: none). */
    hb_ledger_t ledger;
    int have_ledger;
    atomic_uint_fast64_t durable_seq; /* the journal's highest durable record */
    atomic_int store_error;           /* the journal's sticky error, 0 while healthy */
    /* Posts from threads that are not SET workers (the journal's writer, hb_server_send_to_user
     * callers, the control loop) take this lock, so none lands after the SETs' queues close. */
    uv_mutex_t post_lock;
    int posts_closed; /* under post_lock */
};

/* hb_set.c */
int hb__set_init(struct hb_server_impl *impl, hb_set_t *set, hb_worker_t *w, unsigned index);
void hb__set_free(hb_set_t *set);
/* Start the SET's handles on its worker's loop (control thread, before the worker runs). */
int hb__set_start(hb_set_t *set);
/* A worker's periodic work (login deadlines, expiry, the close deadline): its tick timer. */
void hb__worker_tick(uv_timer_t *t);
void hb__worker_on_accept(hb_listener_t *l, int fd);
int hb__chat_handler(hb_conn_t *c, const hb_frame_t *f, void *arg);
/* Post a message to a SET from one of the SET workers (never refused for room: in order past the
 * ring). Returns 0 or UV_ENOMEM. */
int hb__set_post(hb_set_t *set, const hb_set_msg_t *msg);
/* The same from any other thread: fails with UV_ECANCELED once the server is shutting down. */
int hb__set_post_external(struct hb_server_impl *impl, hb_set_t *set, const hb_set_msg_t *msg);
/* Deliver a claim's answer to the claimant's connection (user, gen) in set: at once when set is
 * the calling SET, else through its queue. */
void hb__set_answer_claim(hb_set_t *from, unsigned reply_set, uint32_t user, uint64_t gen,
                          uint32_t envelope_id, uint32_t amount, uint32_t result, uint8_t ext);
/* Queue an encoded frame to user's connection wherever it is (from a SET worker). Returns 0 or
 * HB_EOFFLINE. */
int hb__set_send_to_user(hb_set_t *from, uint32_t user, const uint8_t *frame, size_t len);
/* The shard of the calling thread's counters: workers 0..n-1, the control loop n. */
unsigned hb__control_shard(const struct hb_server_impl *impl);
void hb__set_count(hb_set_t *set, unsigned slot, uint64_t now_s, uint64_t delta);
void hb__control_count(struct hb_server_impl *impl, unsigned slot, uint64_t delta);
uint64_t hb__now_s(void);
/* A line to the server's log callback (or stderr). Any thread. */
void hb__server_log(struct hb_server_impl *impl, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* hb_server.c: a SET has finished shutdown phase `phase` (any worker thread). */
void hb__phase_ack(struct hb_server_impl *impl);

/* hb_store_local.c: money in the local journal's books. */
/* Open the journal (if configured), replay it into the SETs' books and reserve the first ids.
 * Control thread, from hb_server_init. */
int hb__store_open(struct hb_server_impl *impl);
void hb__store_close(struct hb_server_impl *impl);
/* SET thread: a claim of envelope_id by user (connection gen) arriving on set. */
void hb__store_claim(hb_set_t *set, uint32_t user, uint64_t gen, uint32_t envelope_id, uint8_t ext);
/* SET thread: a store message for set (HB_MSG_CLAIM, ENVELOPE, DURABLE, STORE_FAILED). */
void hb__store_handle(hb_set_t *set, const hb_set_msg_t *m);
/* SET thread, once a second: expire the SET's old envelopes. */
void hb__store_expire(hb_set_t *set, uint64_t now_s);
/* SET thread: shutdown phase 3: release every held item once the journal reaches target (or
 * roll back when it cannot); calls hb__phase_ack when done. */
void hb__store_phase3(hb_set_t *set, uint64_t target);
/* Give up waiting for the journal (the close deadline passed): roll back what waits. */
void hb__store_give_up(hb_set_t *set);
/* Control thread: create a send-envelope (journaled; notices once durable). */
int hb__store_create_send(struct hb_server_impl *impl, const uint32_t recipients[3], uint32_t total,
                          uint32_t *id);
/* Control thread: the next shake envelope id inside a durable reservation. Returns 0 with *id,
 * UV_EAGAIN (wait: a reservation is not durable yet), HB_EIDSPACE, or the journal's error. */
int hb__store_shake_id(struct hb_server_impl *impl, uint32_t *id);
/* The journal's highest appended record (0 without one). */
uint64_t hb__store_appended(struct hb_server_impl *impl);

#endif /* HB_SERVER_INT_H */
