/* The SET layer (hb_set.c): SETs on worker loops, their connections and frames, the receive queue
 * through which any thread reaches them, and their part of an orderly shutdown. This header is all
 * the SET code knows of a server: the server fills a group (hb_setgroup_t) and drives it, and the
 * SETs reach the server back only through the group's callbacks. Money goes through the store
 * (hb_store.h), never through the SET code. */
#ifndef HB_SET_H
#define HB_SET_H

#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "hb_sock.h"
#include "hongbao/book.h"
#include "hongbao/counters.h"
#include "hongbao/envq.h"
#include "hongbao/idmap.h"
#include "hongbao/msgq.h"
#include "hongbao/registry.h"
#include "hongbao/server.h"

#define HB_SET_READ_BUF   65536 /* one read buffer per worker loop */
#define HB_SET_OUT_BUF    16384 /* replies gathered per connection before one write */
#define HB_MSG_INLINE     40    /* frames up to this size travel inside a queue message */
#define HB_MAX_HANDLERS   16
#define HB_LISTEN_BACKLOG 4096

typedef struct hb_store hb_store_t;
typedef struct hb_setgroup hb_setgroup_t;
typedef struct hb_worker hb_worker_t;

typedef enum {
    HB_MSG_FRAME,        /* bytes to user (gen 0: whatever connection the user has) */
    HB_MSG_FRAME_HEAP,   /* the same, bytes on the heap, freed by the receiver */
    HB_MSG_KICK,         /* close user's connection of generation gen */
    HB_MSG_CLAIM_RESULT, /* send a claim's answer to user's connection of generation gen */
    HB_MSG_PHASE,        /* shutdown step `user` (gen: phase 3's journal target) */
    HB_MSG_STORE         /* for the store (hb_store.h): `ext` says which of its messages */
} hb_msg_type_t;

typedef struct hb_set_msg {
    uint8_t type;
    uint8_t ext; /* claims: asked with HB_CMD_CLAIM_EX; store messages: the store's kind */
    uint16_t len;
    uint32_t user;
    uint64_t gen;
    union {
        uint8_t bytes[HB_MSG_INLINE];
        uint8_t *heap;
        struct {
            uint32_t envelope_id;
            uint32_t reply_set;
            uint8_t claim_ext; /* the claimant asked with HB_CMD_CLAIM_EX */
        } claim;
        struct {
            uint32_t envelope_id;
            uint32_t amount;
            uint32_t result; /* HB_CLAIM_* */
        } result;
        hb_sendenv_t env;
    } u;
} hb_set_msg_t;

typedef struct hb_set {
    hb_setgroup_t *group;
    hb_worker_t *worker;
    unsigned index;
    hb_msgq_t queue;
    uv_async_t async;
    int async_open;
    hb_idmap_t users; /* user id -> its hb_conn_t * in this SET */
} hb_set_t;

/* One user's connection: kept small, since a server holds tens of thousands. Its SET is
 * sock.poll.data. */
struct hb_conn {
    hb_sock_t sock; /* first: the handle's address is the connection's */
    hb_framer_t framer;
    uint64_t gen;
    uint32_t user;
    void *data; /* the application's (hb_conn_set_data) */
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
    hb_setgroup_t *group;
    unsigned index;
    uv_thread_t thread;
    int thread_started;
    int loop_ready;
    uv_loop_t loop;
    hb_listener_t listener;
    int listener_open;
    uv_timer_t tick; /* login deadlines and expiry; at shutdown, the close deadline */
    int tick_open;
    /* The loop's counts gather here and go into its counters shard in one go: before any write
     * (so a reply never overtakes what it counted) and before the loop polls (the prepare). */
    hb_counters_batch_t counts;
    uv_prepare_t publish;
    int publish_open;
    int listen_fd; /* with reuse_port: this worker's own socket until the listener owns it */
    unsigned first_set, nsets; /* this worker's SETs: group->sets[first_set .. + nsets) */
    unsigned next_set;
    int stopping;         /* phase 1 reached: no more input */
    unsigned phase4_sets; /* its SETs that have reached the last phase */
    uint64_t close_deadline_ms;
    size_t conns;          /* connections open on this loop, closing ones included */
    size_t awaiting_login; /* open ones not logged in yet: the tick looks for late ones only then */
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

/* What the SETs of a server share. The owner fills the "given" part before hb__group_init and
 * does not change it once the workers run; the rest is the SETs'. */
struct hb_setgroup {
    /* given */
    uint32_t max_output, login_timeout_ms, max_conn_qps, close_timeout_ms, max_connections;
    uint64_t max_qps;
    int limit_users;
    uint32_t min_user, max_user;
    uint32_t queue_capacity;
    unsigned nworkers, nsets;
    hb_registry_t *registry;
    hb_envq_t *envq;
    hb_counters_t *counters; /* shards 0..nworkers-1: the workers; nworkers: the control loop */
    hb_store_t *store;
    const hb_handler_t *handlers;
    const unsigned *nhandlers;
    void *owner;                    /* what hb_conn_server returns */
    hb_conn_close_cb on_conn_close; /* for each logged-in connection that leaves (worker thread) */
    void *conn_arg;
    /* A SET finished its part of the shutdown phase posted last (any worker thread). */
    void (*phase_done)(hb_setgroup_t *g);
    hb_log_cb log;
    void *log_arg;
    /* the SETs' */
    hb_worker_t *workers;
    hb_set_t *sets;
    atomic_uint_fast64_t next_gen;
    atomic_uint_fast64_t rate;   /* (second << 24) | shakes served in it */
    atomic_uint_fast64_t active; /* (second << 32) | connections that shook in it */
    atomic_uint active_prev;     /* connections that shook in the second before */
    atomic_size_t nconns;
    /* Posts from threads that are not SET workers take this lock, so none lands after the SETs'
     * queues close (phase 4). */
    uv_mutex_t post_lock;
    int posts_closed; /* under post_lock */
};

/* Allocate the workers and SETs (group->nworkers, group->nsets: a multiple of nworkers). Returns 0
 * or HB_ENOMEM; on error nothing is left allocated. Control thread. */
int hb__group_init(hb_setgroup_t *g);
/* Free what hb__group_init allocated (after the workers have ended or never ran). */
void hb__group_free(hb_setgroup_t *g);
/* Prepare worker w's loop: its listener on fd (shared: not owned; else its own, owned), its tick
 * timer, its SETs' wake-ups. Control thread, before the worker runs. */
int hb__worker_prepare(hb_worker_t *w, int fd, int owns_fd);
/* A worker thread's body: runs its loop until the last shutdown phase has closed everything. */
void hb__worker_main(void *arg);
/* Close the handles of a worker prepared but never run, and its loop. */
void hb__worker_abandon(hb_worker_t *w);
/* Post shutdown phase `phase` (1..4, see hb_set.c) to every SET; phase 4 closes the queues to
 * posts from outside. Control thread. */
void hb__group_post_phase(hb_setgroup_t *g, unsigned phase, uint64_t target);

/* Post a message to a SET from one of the SET workers (never refused for room: in order past the
 * ring). Returns 0 or HB_ENOMEM. */
int hb__set_post(hb_set_t *set, const hb_set_msg_t *msg);
/* The same from any other thread: fails with HB_ECANCELED once the SETs are closing. */
int hb__set_post_external(hb_setgroup_t *g, hb_set_t *set, const hb_set_msg_t *msg);
/* Deliver a claim's answer to the claimant's connection (user, gen) in SET reply_set: at once when
 * it is `from`, else through its queue. SET thread. */
void hb__set_answer_claim(hb_set_t *from, unsigned reply_set, uint32_t user, uint64_t gen,
                          uint32_t envelope_id, uint32_t amount, uint32_t result, uint8_t ext);
/* Write what was gathered for the SET's worker's current connection: after answering outside a
 * read or a queue drain (a store's own callbacks on the worker's loop), which flush by themselves.
 * SET thread. */
void hb__set_flush(hb_set_t *set);
/* Queue an encoded frame to user's connection wherever it is. `from` is the calling SET, or NULL
 * from any other thread. Returns 0, HB_EOFFLINE, HB_ECANCELED (closing), HB_ENOMEM. */
int hb__set_send_to_user(hb_setgroup_t *g, hb_set_t *from, uint32_t user, const uint8_t *frame,
                         size_t len);
/* Count in the calling worker's counters shard (SET thread): gathered, and in the shard before the
 * worker writes or polls. */
void hb__set_count(hb_set_t *set, unsigned slot, uint64_t now_s, uint64_t delta);
/* Count in the control loop's shard (control thread only). */
void hb__group_count_control(hb_setgroup_t *g, unsigned slot, uint64_t delta);
/* A line to the group's log (any thread). */
void hb__group_log(hb_setgroup_t *g, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
uint64_t hb__now_s(void);

/* Between the two files of the SET layer (hb_set.c: connections, frames, queues; hb_worker.c:
 * workers, timers, shutdown), on the worker's thread. */
int hb__set_init(hb_setgroup_t *g, hb_set_t *set, hb_worker_t *w, unsigned index);
void hb__set_free(hb_set_t *set);
void hb__set_on_async(uv_async_t *a);
void hb__set_accept(hb_set_t *set, int fd);
void hb__set_on_phase(hb_set_t *set, const hb_set_msg_t *m);
void hb__conn_close(hb_conn_t *c);
void hb__conn_end(hb_conn_t *c);
void hb__conn_abort(hb_conn_t *c); /* at the close deadline: drop whatever is left */
void hb__worker_flush(hb_worker_t *w);
void hb__worker_publish(hb_worker_t *w); /* the gathered counts into the shard */
void hb__worker_maybe_done(hb_worker_t *w);

#endif /* HB_SET_H */
