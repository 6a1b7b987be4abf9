/* The store: the one place where money is decided and made durable. Drawing shake envelope ids,
 * creating send-envelopes, judging claims, making grants durable, replay at start and the audit's
 * books all happen behind this interface; the SET code (hb_set.c) and the server (hb_server.c)
 * reach money only through it. The local journal (hb_store_local.c: the SETs' books and the claim
 * journal of hongbao/ledger.h) is its first backend; a shared store for many servers is another.
 *
 * Threads. open and close run on the control loop's thread, before the workers start and after
 * they have ended. create_send, shake_id, drain_target and error run on the control loop. claim,
 * handle, expire, drain and give_up run on the worker thread of the SET they are given, and may
 * post to other SETs (hb__set_post) and answer claimants (hb__set_answer_claim). A backend's own
 * threads reach the SETs only through hb__set_post_external.
 *
 * The contract every backend keeps (docs/reliability.md, "The claim contract"):
 *  - A claim is answered once: HB_CLAIM_GRANTED only after the grant is durable under the
 *    backend's policy; HB_CLAIM_REPEAT, with the share granted before, to a recipient who asks
 *    again, only once that grant is durable; HB_CLAIM_NOT_RECIPIENT / HB_CLAIM_NO_ENVELOPE when
 *    nothing can be granted; HB_CLAIM_TRY_AGAIN when nothing was decided (the backend cannot make
 *    anything durable now). A share is granted at most once, and a grant that was made can always
 *    be learned by asking again, until the envelope is retired (send_expiry_s after creation).
 *  - A send-envelope's notices go out only once it is durable; if it never becomes durable,
 *    nobody hears of it.
 *  - Ids are never reused: a shake or send-envelope id is handed out only once it is reserved
 *    durably (hongbao/envelope.h spaces; HB_EIDSPACE when one is used up).
 *  - When nothing more can be made durable, what waits is rolled back and answered
 *    HB_CLAIM_TRY_AGAIN, and error() reports it.
 *  - drain(set, target) (shutdown phase 3) calls the group's phase_done once everything the SET
 *    holds that was appended up to target is answered (or rolled back). */
#ifndef HB_STORE_H
#define HB_STORE_H

#include <stdint.h>

#include "hb_set.h"

typedef struct hb_store_ops {
    const char *name;
    /* Replay what is durable into the books, reserve the first ids. Returns 0 or an error, with a
     * message in st->errstr. */
    int (*open)(hb_store_t *st);
    /* Flush and release everything (the workers have ended). Returns 0 when that is done, or 1
     * when it ends later on the control loop: then the backend calls st->on_closed(st) once, after
     * which it touches nothing of st. */
    int (*close)(hb_store_t *st);
    /* A claim of envelope_id by user (its connection's generation gen) read on SET `set`; ext:
     * asked with HB_CMD_CLAIM_EX. Answered later through hb__set_answer_claim. */
    void (*claim)(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen, uint32_t envelope_id,
                  uint8_t ext);
    /* A message of the store's (HB_MSG_STORE) that arrived on SET `set`'s queue. */
    void (*handle)(hb_store_t *st, hb_set_t *set, const hb_set_msg_t *m);
    /* Once a second on each SET: retire the envelopes older than send_expiry_s. */
    void (*expire)(hb_store_t *st, hb_set_t *set, uint64_t now_s);
    /* Shutdown phase 3 on `set` (see above); give_up: the close deadline passed, roll back. */
    void (*drain)(hb_store_t *st, hb_set_t *set, uint64_t target);
    void (*give_up)(hb_store_t *st, hb_set_t *set);
    /* What drain must reach: the store's last appended record (0 when nothing is durable). */
    uint64_t (*drain_target)(hb_store_t *st);
    /* Create a send-envelope of total split among count distinct recipients (its notices go out
     * once durable). Returns 0 with *id, HB_EINVAL, HB_EIDSPACE, HB_ESTORE (not now: try again),
     * the store's error. */
    int (*create_send)(hb_store_t *st, const uint32_t *recipients, unsigned count, uint32_t total,
                       uint32_t *id);
    /* The next shake envelope id. Returns 0, HB_EAGAIN (no durable reservation yet: try on the
     * next tick), HB_EIDSPACE, the store's error. */
    int (*shake_id)(hb_store_t *st, uint32_t *id);
    /* The store's sticky error, or 0 while it can make things durable. Any thread. */
    int (*error)(hb_store_t *st);
    /* Whether the store makes anything durable at all (a journal, a replicated store). Any
     * thread. */
    int (*durable)(const hb_store_t *st);
    /* Optional (NULL: nothing to do). A user logged in on SET `set` as connection generation gen,
     * and that connection left: for a store that keeps who is where beyond this process. On the
     * SET's worker thread. */
    void (*login)(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen);
    /* Optional (NULL: the server pushes shake envelopes into the SETs' buckets itself). A shake
     * envelope made here (the generator, hb_server_put_shake_envelopes) goes to the store, which
     * fills the buckets itself (a shared budget). Returns 0, or HB_EAGAIN when it holds too many
     * not yet stored (try on the next tick; nothing was taken). Control loop. */
    int (*put_shake)(hb_store_t *st, uint32_t id, uint32_t amount);
    /* Optional (NULL: the server paces its own generator). Make count shake envelopes at qps a
     * second: for a shared budget, a plan of the whole fleet that its one generator carries out.
     * Returns 0 or an error (cf. hb_server_generate_shake). Control loop. */
    int (*plan_shake)(hb_store_t *st, uint64_t qps, uint64_t count);
    /* Optional (NULL: a user not connected here is offline). A frame for a user not connected to
     * this server, for a store that knows where else users are: it takes a copy and delivers it
     * if it can. Returns 0 when taken (not a promise of delivery), HB_EOFFLINE, HB_ENOMEM. Any
     * thread. */
    int (*send_away)(hb_store_t *st, uint32_t user, const uint8_t *frame, size_t len);
    void (*logout)(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen);
} hb_store_ops_t;

struct hb_store {
    const hb_store_ops_t *ops;
    hb_setgroup_t *group; /* the SETs it serves */
    uint32_t send_expiry_s;
    char errstr[256];                  /* why open failed */
    void *impl;                        /* the backend's */
    void (*on_closed)(hb_store_t *st); /* the owner's: see close */
    void *owner;
};

/* A new send-envelope of total among count distinct recipients, its shares split by the double
 * mean (hongbao/envelope.h) and checked by the book's rule: every backend makes its envelopes so.
 * e->id is left 0 for the backend. Returns 0 or HB_EINVAL. */
int hb__store_new_envelope(const uint32_t *recipients, unsigned count, uint32_t total,
                           hb_rand_t *rng, hb_sendenv_t *e);
/* A new send-envelope's notice: the reference's for 3 recipients, the extension's otherwise.
 * Returns its length, or an error if cap is short (HB_FRAME_HEADER + 8 + 4 * 8 is enough). */
int hb__store_notice_frame(const hb_sendenv_t *e, uint8_t *frame, size_t cap);
/* Send that notice to each of e's recipients connected to this server; returns the mask of those
 * who are not (bit i: recipient i). from: the calling SET, or NULL on the control loop. For every
 * backend, once e is durable. */
unsigned hb__store_announce(hb_setgroup_t *g, hb_set_t *from, const hb_sendenv_t *e,
                            const uint8_t *frame, size_t len);
/* Count n notices that reached nobody (notice_offline), from a SET or (NULL) the control loop. */
void hb__store_count_offline(hb_setgroup_t *g, hb_set_t *from, unsigned n);

/* The local backend: the SETs' books and, when dir is not NULL, the claim journal in dir with the
 * given fsync policy (without one, nothing is durable and ids start afresh each run). rng draws
 * the shares (control loop only). Fills *st; its open does the rest. Returns 0 or HB_ENOMEM. */
int hb__store_local_init(hb_store_t *st, hb_setgroup_t *group, const char *dir, int fsync,
                         uint32_t send_expiry_s, hb_rand_t *rng);

#ifdef HB_HAVE_REDIS
/* The Redis backend (hb_store_redis.c, docs/fleet.md). */
typedef struct hb_store_redis_options {
    const char *seeds;               /* some nodes of the cluster, "host:port[,host:port...]" */
    const char *instance;            /* this instance's name (the creator of its send-envelopes) */
    unsigned replicas;               /* WAIT for this many replicas before acknowledging */
    uint32_t wait_ms;                /* WAIT's own timeout; 0 = 1,000 */
    uint32_t timeout_ms;             /* a command's deadline; 0 = the cluster client's default */
    uint32_t lease_ms;               /* the budget's leases; 0 = 30,000 */
    int generator;                   /* this instance may be the fleet's generator */
    uint32_t amount_min, amount_max; /* of the shake envelopes it makes */
    uint32_t send_expiry_s;
} hb_store_redis_options_t;
/* Fill *st for the control loop `loop`; its open connects. Returns 0 or HB_ENOMEM. */
int hb__store_redis_init(hb_store_t *st, hb_setgroup_t *group, uv_loop_t *loop,
                         const hb_store_redis_options_t *o, hb_rand_t *rng);
#endif

#endif /* HB_STORE_H */
