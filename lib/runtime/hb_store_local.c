/* The local store: money decided in the SETs' books and made durable in the claim journal.
 *
 * A send-envelope belongs to the SET id % nsets, whose book alone judges its claims (one thread,
 * no lock). A grant is journaled, and its reply waits in the owning SET until the journal is
 * durable up to its record; a repeated claim is answered with the share granted before, once that
 * grant is durable; a new envelope's notices wait the same way, so nobody hears of an envelope
 * before it is durable. If the journal fails for good, what waits is rolled back: grants undone
 * and answered "try again", envelopes dropped unannounced. Ids are handed out only inside
 * reservations that are durable, so no id is ever used twice, also across restarts. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb_internal.h"
#include "hb_store.h"
#include "hongbao/envelope.h"
#include "hongbao/ledger.h"

#define SHAKE_ID_BLOCK 65536 /* about a second of shakes at the reference's rate */
#define SEND_ID_BLOCK  4096
#define OPEN_WAIT_MS   10000 /* the first reservations must be durable within this at start */

/* The store's messages to a SET (hb_set_msg_t.ext of an HB_MSG_STORE). */
enum {
    LS_CLAIM,    /* judge a claim in this SET's book (the envelope's owner) */
    LS_ENVELOPE, /* a new send-envelope for this SET's book; gen: its record */
    LS_DURABLE,  /* the journal is durable further: release what waited for it */
    LS_FAILED    /* nothing more becomes durable: roll back what waits */
};

/* What waits in the owning SET for the journal to be durable up to seq. */
typedef enum {
    HELD_GRANT,  /* a first grant: its reply; rolled back if the journal fails */
    HELD_REPEAT, /* a repeated claim's reply, answered once its grant is durable */
    HELD_NOTICE  /* a new send-envelope's notices; the envelope is dropped if the journal fails */
} held_kind_t;

typedef struct held {
    uint64_t seq;
    uint64_t gen;
    uint32_t user;
    uint32_t envelope_id;
    uint32_t amount;
    uint32_t reply_set;
    uint8_t kind;
    uint8_t ext;
} held_t;

typedef struct local local_t;

/* The store's part of one SET: the book of the send-envelopes it owns (id % nsets), and what waits
 * for the journal, in sequence order (a ring that grows). Touched only on the SET's thread, but for
 * `waiting`, which the journal's writer reads. */
typedef struct lset {
    local_t *L;
    hb_set_t *set;
    hb_book_t book;
    hb__fifo_t held;    /* of held_t */
    uint64_t last_seq;  /* the highest record this SET journaled or waits for */
    int store_failed;   /* this SET has rolled back after the journal failed */
    int phase3_waiting; /* shutdown: waiting for the journal to reach phase3_target */
    uint64_t phase3_target;
    atomic_size_t waiting; /* held items (+1 during phase 3) */
} lset_t;

/* Ids of one kind handed out only inside a durable reservation (ids are never reused, also across
 * restarts). Control loop only. */
typedef struct idspace {
    hb_envelope_kind_t kind;
    uint32_t next;        /* the next id to hand out; 0: the space is used up */
    uint32_t ok_until;    /* ids up to here are covered by a durable reservation */
    uint32_t reserved;    /* the last id journaled as reserved (maybe not durable yet) */
    uint64_t pending_seq; /* that reservation's record while not known durable; 0: none */
    uint32_t block;       /* ids reserved at a time */
    int exhausted_logged;
} idspace_t;

struct local {
    hb_store_t *st;
    hb_setgroup_t *g;
    lset_t *sets;
    char *dir; /* NULL: no journal */
    int fsync;
    hb_rand_t *rng;
    hb_ledger_t ledger;
    int have_ledger;
    atomic_uint_fast64_t durable_seq; /* the journal's highest durable record */
    atomic_int store_error;           /* the journal's sticky error, 0 while healthy */
    idspace_t shake_ids, send_ids;
};

/* ---- what waits for the journal ---- */

static int hold(lset_t *ls, const held_t *h)
{
    if (hb__fifo_push(&ls->held, h) != 0)
        return HB_ENOMEM;
    atomic_fetch_add_explicit(&ls->waiting, 1, memory_order_acq_rel);
    if (h->seq > ls->last_seq)
        ls->last_seq = h->seq;
    return 0;
}

static held_t unhold(lset_t *ls)
{
    held_t h;
    hb__fifo_pop(&ls->held, &h);
    atomic_fetch_sub_explicit(&ls->waiting, 1, memory_order_release);
    return h;
}

static uint64_t durable(const lset_t *ls)
{
    return atomic_load_explicit(&ls->L->durable_seq, memory_order_acquire);
}

/* Send the notices of envelope id (in this SET's book) to its online recipients. */
static void announce(lset_t *ls, uint32_t id)
{
    const hb_sendenv_t *e = hb_book_find(&ls->book, id);
    if (e == NULL)
        return; /* expired meanwhile */
    uint8_t frame[HB_FRAME_HEADER + 8 + 4 * HB_SEND_MAX_RECIPIENTS];
    int len = hb__store_notice_frame(e, frame, sizeof frame);
    if (len > 0) {
        unsigned away = hb__store_announce(ls->L->g, ls->set, e, frame, (size_t)len);
        hb__store_count_offline(ls->L->g, ls->set, (unsigned)__builtin_popcount(away));
    }
}

/* A grant counts once it is acknowledged (durable, with a journal). */
static void count_grant(lset_t *ls, uint32_t amount)
{
    uint64_t now_s = hb__now_s();
    hb__set_count(ls->set, HB_CTR_CLAIMS_GRANTED, now_s, 1);
    hb__set_count(ls->set, HB_CTR_SEND_AMOUNT_CLAIMED, now_s, amount);
}

static void release(lset_t *ls, const held_t *h)
{
    switch (h->kind) {
    case HELD_GRANT:
        count_grant(ls, h->amount);
        hb__set_answer_claim(ls->set, h->reply_set, h->user, h->gen, h->envelope_id, h->amount,
                             HB_CLAIM_GRANTED, h->ext);
        break;
    case HELD_REPEAT:
        hb__set_answer_claim(ls->set, h->reply_set, h->user, h->gen, h->envelope_id, h->amount,
                             HB_CLAIM_REPEAT, h->ext);
        break;
    case HELD_NOTICE:
        announce(ls, h->envelope_id);
        break;
    }
}

/* Release, in order, what the journal now has. */
static void release_durable(lset_t *ls)
{
    uint64_t d = durable(ls);
    while (ls->held.count > 0 && ((const held_t *)hb__fifo_at(&ls->held, 0))->seq <= d) {
        held_t h = unhold(ls);
        release(ls, &h);
    }
}

/* The journal will make nothing more durable: undo and refuse what still waits. */
static void roll_back(lset_t *ls)
{
    uint64_t now_s = hb__now_s();
    release_durable(ls);
    ls->store_failed = 1;
    while (ls->held.count > 0) {
        held_t h = unhold(ls);
        uint32_t result = HB_CLAIM_TRY_AGAIN, amount = 0;
        switch (h.kind) {
        case HELD_GRANT:
            hb_book_unclaim(&ls->book, h.envelope_id, h.user);
            break;
        case HELD_REPEAT: {
            /* Its grant survived the roll-back only if it was durable. */
            uint32_t a = 0;
            const hb_sendenv_t *e = hb_book_find(&ls->book, h.envelope_id);
            if (e != NULL && hb_sendenv_share_of(e, h.user, &a) == 1) {
                result = HB_CLAIM_REPEAT;
                amount = a;
            }
            break;
        }
        case HELD_NOTICE:
            hb_book_remove(&ls->book, h.envelope_id, NULL);
            hb__set_count(ls->set, HB_CTR_X_ENVELOPE_DROPPED, now_s, 1);
            continue;
        }
        if (result == HB_CLAIM_TRY_AGAIN)
            hb__set_count(ls->set, HB_CTR_X_CLAIM_TRY_AGAIN, now_s, 1);
        hb__set_answer_claim(ls->set, h.reply_set, h.user, h.gen, h.envelope_id, amount, result,
                             h.ext);
    }
}

/* ---- claims ---- */

/* In the SET owning the envelope: judge the claim, journal a first grant, answer once durable. */
static void judge(lset_t *ls, uint32_t user, uint64_t gen, uint32_t envelope_id, unsigned reply_set,
                  uint8_t ext)
{
    local_t *L = ls->L;
    uint64_t now_s = hb__now_s();
    uint32_t amount = 0;
    int r = hb_book_claim(&ls->book, envelope_id, user, &amount);
    held_t h = {.gen = gen,
                .user = user,
                .envelope_id = envelope_id,
                .amount = amount,
                .reply_set = reply_set,
                .ext = ext};
    if (r == 0) {
        int e = 0;
        if (L->have_ledger) {
            e = ls->store_failed
                    ? HB_ESTORE
                    : hb_ledger_append_claim(&L->ledger, envelope_id, user, amount, &h.seq);
            if (e == 0) {
                h.kind = HELD_GRANT;
                e = hold(ls, &h);
            }
            if (e != 0) {
                /* Not journaled: not granted. The claimant may ask again. */
                hb_book_unclaim(&ls->book, envelope_id, user);
                hb__set_count(ls->set, HB_CTR_X_CLAIM_TRY_AGAIN, now_s, 1);
                hb__set_answer_claim(ls->set, reply_set, user, gen, envelope_id, 0,
                                     HB_CLAIM_TRY_AGAIN, ext);
                return;
            }
        }
        if (L->have_ledger) {
            release_durable(ls); /* in case the record is durable already */
        } else {
            count_grant(ls, amount);
            hb__set_answer_claim(ls->set, reply_set, user, gen, envelope_id, amount,
                                 HB_CLAIM_GRANTED, ext);
        }
        return;
    }
    if (r == HB_BOOK_REPEAT) {
        hb__set_count(ls->set, HB_CTR_X_CLAIM_REPEAT, now_s, 1);
        /* Answered once the grant is durable: everything this SET journaled so far. */
        release_durable(ls);
        if (L->have_ledger && !ls->store_failed && ls->last_seq > durable(ls)) {
            h.kind = HELD_REPEAT;
            h.seq = ls->last_seq;
            if (hold(ls, &h) == 0) {
                release_durable(ls);
                return;
            }
            hb__set_count(ls->set, HB_CTR_X_CLAIM_TRY_AGAIN, now_s, 1);
            hb__set_answer_claim(ls->set, reply_set, user, gen, envelope_id, 0, HB_CLAIM_TRY_AGAIN,
                                 ext);
            return;
        }
        hb__set_answer_claim(ls->set, reply_set, user, gen, envelope_id, amount, HB_CLAIM_REPEAT,
                             ext);
        return;
    }
    hb__set_count(ls->set, HB_CTR_X_CLAIM_REFUSED, now_s, 1);
    hb__set_answer_claim(ls->set, reply_set, user, gen, envelope_id, 0,
                         r == HB_ENOTRECIPIENT ? HB_CLAIM_NOT_RECIPIENT : HB_CLAIM_NO_ENVELOPE,
                         ext);
}

/* The SET that owns envelope id: the one rule that places an envelope's book. */
static unsigned owner_of(const local_t *L, uint32_t id)
{
    return id % L->g->nsets;
}

static local_t *local_of(hb_store_t *st)
{
    return st->impl;
}

static lset_t *lset_of(hb_store_t *st, const hb_set_t *set)
{
    return &local_of(st)->sets[set->index];
}

static void store_claim(hb_store_t *st, hb_set_t *set, uint32_t user, uint64_t gen,
                        uint32_t envelope_id, uint8_t ext)
{
    local_t *L = local_of(st);
    hb_set_t *owner = &L->g->sets[owner_of(L, envelope_id)];
    if (owner == set) {
        judge(lset_of(st, set), user, gen, envelope_id, set->index, ext);
        return;
    }
    hb_set_msg_t q = {.type = HB_MSG_STORE, .ext = LS_CLAIM, .user = user, .gen = gen};
    q.u.claim.envelope_id = envelope_id;
    q.u.claim.reply_set = set->index;
    q.u.claim.claim_ext = ext;
    if (hb__set_post(owner, &q) != 0) {
        hb__set_count(set, HB_CTR_X_CLAIM_TRY_AGAIN, hb__now_s(), 1);
        hb__set_answer_claim(set, set->index, user, gen, envelope_id, 0, HB_CLAIM_TRY_AGAIN, ext);
    }
}

/* ---- envelopes ---- */

static void add_envelope(lset_t *ls, const hb_sendenv_t *e, uint64_t seq)
{
    local_t *L = ls->L;
    int r = hb_book_add(&ls->book, e);
    if (r != 0) {
        /* Never expected (ids are never reused): said loudly, and nobody is told of it. */
        hb__set_count(ls->set, HB_CTR_X_ENVELOPE_DROPPED, hb__now_s(), 1);
        hb__group_log(L->g, "send-envelope %u refused by its book: %s", e->id, hb_strerror(r));
        return;
    }
    if (!L->have_ledger) {
        announce(ls, e->id);
        return;
    }
    held_t h = {.seq = seq, .kind = HELD_NOTICE, .envelope_id = e->id};
    if (ls->store_failed || hold(ls, &h) != 0) {
        hb_book_remove(&ls->book, e->id, NULL);
        hb__set_count(ls->set, HB_CTR_X_ENVELOPE_DROPPED, hb__now_s(), 1);
        return;
    }
    release_durable(ls);
}

/* ---- shutdown ---- */

static void store_drain(hb_store_t *st, hb_set_t *set, uint64_t target)
{
    lset_t *ls = lset_of(st, set);
    if (!ls->phase3_waiting) {
        ls->phase3_waiting = 1;
        ls->phase3_target = target;
        atomic_fetch_add_explicit(&ls->waiting, 1, memory_order_acq_rel);
    }
    release_durable(ls);
    int done = !ls->L->have_ledger || ls->store_failed || durable(ls) >= target;
    if (!done)
        return;             /* a durable notice brings us back */
    if (ls->held.count > 0) /* only after a failure: what could not be made durable */
        roll_back(ls);
    ls->phase3_waiting = 0;
    atomic_fetch_sub_explicit(&ls->waiting, 1, memory_order_release);
    ls->L->g->phase_done(ls->L->g);
}

static void store_give_up(hb_store_t *st, hb_set_t *set)
{
    lset_t *ls = lset_of(st, set);
    if (ls->held.count > 0 || ls->phase3_waiting) {
        roll_back(ls);
        if (ls->phase3_waiting)
            store_drain(st, set, ls->phase3_target);
    }
}

static void store_handle(hb_store_t *st, hb_set_t *set, const hb_set_msg_t *m)
{
    lset_t *ls = lset_of(st, set);
    switch (m->ext) {
    case LS_CLAIM:
        judge(ls, m->user, m->gen, m->u.claim.envelope_id, m->u.claim.reply_set,
              m->u.claim.claim_ext);
        break;
    case LS_ENVELOPE:
        add_envelope(ls, &m->u.env, m->gen);
        break;
    case LS_DURABLE:
        release_durable(ls);
        if (ls->phase3_waiting)
            store_drain(st, set, ls->phase3_target);
        break;
    case LS_FAILED:
        if (set->index == 0)
            hb__set_count(set, HB_CTR_X_STORE_ERRORS, hb__now_s(), 1);
        roll_back(ls);
        if (ls->phase3_waiting)
            store_drain(st, set, ls->phase3_target);
        break;
    default:
        break;
    }
}

static void on_expired(void *arg, const hb_sendenv_t *e)
{
    lset_t *ls = arg;
    if (e->claimed_sum < e->total)
        hb__set_count(ls->set, HB_CTR_X_SEND_EXPIRED, hb__now_s(), 1);
    /* Every envelope is retired at its expiry, claimed or not, so the journal's books drop it. */
    if (ls->L->have_ledger && !ls->store_failed)
        hb_ledger_append_expire(&ls->L->ledger, e->id, NULL);
}

static void store_expire(hb_store_t *st, hb_set_t *set, uint64_t now_s)
{
    uint64_t ttl = st->send_expiry_s;
    if (now_s > ttl)
        hb_book_expire(&lset_of(st, set)->book, now_s - ttl, on_expired, lset_of(st, set));
}

/* ---- the journal's callbacks (its writer thread) ---- */

static void post_to_all(local_t *L, unsigned kind, int only_waiting)
{
    hb_set_msg_t m = {.type = HB_MSG_STORE, .ext = (uint8_t)kind};
    for (unsigned i = 0; i < L->g->nsets; i++)
        if (!only_waiting || atomic_load_explicit(&L->sets[i].waiting, memory_order_acquire) > 0)
            hb__set_post_external(L->g, &L->g->sets[i], &m);
}

static void on_durable(void *arg, uint64_t seq)
{
    local_t *L = arg;
    atomic_store_explicit(&L->durable_seq, seq, memory_order_release);
    post_to_all(L, LS_DURABLE, 1);
}

static void on_store_error(void *arg, int err)
{
    local_t *L = arg;
    atomic_store_explicit(&L->store_error, err, memory_order_release);
    hb__group_log(L->g,
                  "the claim journal failed (%s): claims are answered 'try again' and new "
                  "send-envelopes refused until a restart; shakes go on",
                  hb_strerror(err));
    post_to_all(L, LS_FAILED, 0);
}

static void ledger_log(void *arg, const char *line)
{
    local_t *L = arg;
    hb__group_log(L->g, "ledger: %s", line);
}

/* Replay: each envelope still in the books goes back into the book of the SET owning its id. */
static void restore_envelope(void *arg, const hb_sendenv_t *e)
{
    local_t *L = arg;
    hb_book_add(&L->sets[owner_of(L, e->id)].book, e);
}

/* ---- ids ---- */

static void idspace_init(idspace_t *s, hb_envelope_kind_t kind, uint32_t reserved, uint32_t block,
                         int unbounded)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->block = block;
    s->reserved = reserved;
    s->next = hb_envelope_id_add(kind, reserved, 1);
    s->ok_until = unbounded ? UINT32_MAX : reserved;
}

/* Journal the next reservation once half a block or less is left ahead of next. Ids within a kind
 * grow numerically, so comparisons are plain. */
static int idspace_refill(local_t *L, idspace_t *s)
{
    if (!L->have_ledger || s->next == 0)
        return 0;
    if (s->pending_seq != 0) {
        if (atomic_load_explicit(&L->durable_seq, memory_order_acquire) < s->pending_seq)
            return 0;
        s->ok_until = s->reserved;
        s->pending_seq = 0;
    }
    if (s->reserved >= s->next) {
        uint32_t mark = hb_envelope_id_add(s->kind, s->next, s->block / 2);
        if (mark != 0 && mark <= s->reserved)
            return 0;
    }
    uint32_t last = 0;
    for (uint64_t n = s->block; n > 0 && last == 0; n /= 2)
        last = hb_envelope_id_add(s->kind, s->reserved, n);
    if (last == 0)
        return 0; /* the whole space is reserved already */
    uint64_t seq;
    int r = hb_ledger_append_reserve(&L->ledger, s->kind, last, &seq);
    if (r != 0)
        return r;
    s->reserved = last;
    s->pending_seq = seq;
    return 0;
}

/* The next id of s inside a durable reservation. */
static int idspace_take(local_t *L, idspace_t *s, uint32_t *id)
{
    if (s->next == 0) {
        if (!s->exhausted_logged) {
            s->exhausted_logged = 1;
            hb__group_log(L->g, "the %s envelope id space is used up: no more such envelopes",
                          s->kind == HB_ENVELOPE_SHAKE ? "shake" : "send");
        }
        return HB_EIDSPACE;
    }
    int err = atomic_load_explicit(&L->store_error, memory_order_acquire);
    if (err != 0)
        return err;
    int r = idspace_refill(L, s);
    if (r != 0)
        return r;
    if (s->next > s->ok_until)
        return HB_EAGAIN;
    *id = s->next;
    s->next = hb_envelope_id_add(s->kind, s->next, 1);
    return 0;
}

static int store_shake_id(hb_store_t *st, uint32_t *id)
{
    local_t *L = local_of(st);
    return idspace_take(L, &L->shake_ids, id);
}

static uint64_t store_drain_target(hb_store_t *st)
{
    local_t *L = local_of(st);
    if (!L->have_ledger)
        return 0;
    hb_ledger_stats_t stats;
    hb_ledger_stats(&L->ledger, &stats);
    return stats.appended;
}

static int store_error(hb_store_t *st)
{
    return atomic_load_explicit(&local_of(st)->store_error, memory_order_acquire);
}

static int store_create_send(hb_store_t *st, const uint32_t *recipients, unsigned count,
                             uint32_t total, uint32_t *id)
{
    local_t *L = local_of(st);
    hb_sendenv_t e;
    int r = hb__store_new_envelope(recipients, count, total, L->rng, &e);
    if (r != 0)
        return r;
    r = idspace_take(L, &L->send_ids, &e.id);
    if (r == HB_EAGAIN)
        r = HB_ESTORE; /* the id reservation is not durable yet: try again shortly */
    if (r != 0)
        return r;
    uint64_t seq = 0;
    /* Journaled first; its owner announces it once durable. */
    if (L->have_ledger && (r = hb_ledger_append_envelope(&L->ledger, &e, &seq)) != 0)
        return r;
    hb_set_msg_t m = {.type = HB_MSG_STORE, .ext = LS_ENVELOPE, .gen = seq};
    m.u.env = e;
    r = hb__set_post_external(L->g, &L->g->sets[owner_of(L, e.id)], &m);
    if (r != 0)
        return r;
    hb__group_count_control(L->g, HB_CTR_SEND_CREATED, 1);
    hb__group_count_control(L->g, HB_CTR_SEND_AMOUNT_ISSUED, total);
    if (id != NULL)
        *id = e.id;
    return 0;
}

/* ---- open and close ---- */

static void free_local(local_t *L)
{
    for (unsigned i = 0; L->sets != NULL && i < L->g->nsets; i++) {
        hb_book_close(&L->sets[i].book);
        hb__fifo_free(&L->sets[i].held);
    }
    free(L->sets);
    free(L->dir);
    free(L);
}

static int store_open(hb_store_t *st)
{
    local_t *L = local_of(st);
    L->sets = calloc(L->g->nsets, sizeof *L->sets);
    if (L->sets == NULL)
        return HB_ENOMEM;
    for (unsigned i = 0; i < L->g->nsets; i++) {
        lset_t *ls = &L->sets[i];
        ls->L = L;
        ls->set = &L->g->sets[i];
        ls->held.elem = sizeof(held_t);
        atomic_init(&ls->waiting, 0);
        int r = hb_book_init(&ls->book, 1024);
        if (r != 0)
            return r;
    }
    if (L->dir == NULL) {
        idspace_init(&L->shake_ids, HB_ENVELOPE_SHAKE, 0, SHAKE_ID_BLOCK, 1);
        idspace_init(&L->send_ids, HB_ENVELOPE_SEND, 0, SEND_ID_BLOCK, 1);
        return 0;
    }
    hb_ledger_options_t lo;
    memset(&lo, 0, sizeof lo);
    lo.dir = L->dir;
    lo.fsync = (hb_fsync_t)L->fsync;
    lo.log = ledger_log;
    lo.log_arg = L;
    lo.on_durable = on_durable;
    lo.durable_arg = L;
    lo.on_error = on_store_error;
    lo.error_arg = L;
    int r = hb_ledger_open(&L->ledger, &lo, restore_envelope, L);
    if (r != 0) {
        snprintf(st->errstr, sizeof st->errstr, "ledger: %.240s",
                 L->ledger.errstr[0] != '\0' ? L->ledger.errstr : hb_strerror(r));
        return r;
    }
    L->have_ledger = 1;
    uint32_t last_send = L->ledger.reserved_send;
    if (L->ledger.max_envelope_id > last_send)
        last_send = L->ledger.max_envelope_id;
    idspace_init(&L->shake_ids, HB_ENVELOPE_SHAKE, L->ledger.reserved_shake, SHAKE_ID_BLOCK, 0);
    idspace_init(&L->send_ids, HB_ENVELOPE_SEND, last_send, SEND_ID_BLOCK, 0);
    /* The first reservations, durable before anything is handed out. */
    r = idspace_refill(L, &L->shake_ids);
    if (r == 0)
        r = idspace_refill(L, &L->send_ids);
    uint64_t wait = L->send_ids.pending_seq > L->shake_ids.pending_seq ? L->send_ids.pending_seq
                                                                       : L->shake_ids.pending_seq;
    if (r == 0 && wait > 0)
        r = hb_ledger_wait_durable(&L->ledger, wait, OPEN_WAIT_MS);
    if (r == 0 && wait > 0)
        atomic_store_explicit(&L->durable_seq, wait, memory_order_release);
    if (r != 0) {
        snprintf(st->errstr, sizeof st->errstr, "ledger: reserving the first ids: %s",
                 hb_strerror(r));
        hb_ledger_close(&L->ledger);
        L->have_ledger = 0;
        return r;
    }
    return 0;
}

static int store_close(hb_store_t *st)
{
    local_t *L = local_of(st);
    if (L == NULL)
        return 0;
    if (L->have_ledger)
        hb_ledger_close(&L->ledger); /* flush and sync what the SETs journaled */
    free_local(L);
    st->impl = NULL;
    return 0;
}

static int store_durable(const hb_store_t *st)
{
    const local_t *L = st->impl;
    return L != NULL && L->have_ledger;
}

static const hb_store_ops_t local_ops = {
    .name = "local",
    .open = store_open,
    .close = store_close,
    .claim = store_claim,
    .handle = store_handle,
    .expire = store_expire,
    .drain = store_drain,
    .give_up = store_give_up,
    .drain_target = store_drain_target,
    .create_send = store_create_send,
    .shake_id = store_shake_id,
    .error = store_error,
    .durable = store_durable,
};

int hb__store_local_init(hb_store_t *st, hb_setgroup_t *group, const char *dir, int fsync,
                         uint32_t send_expiry_s, hb_rand_t *rng)
{
    memset(st, 0, sizeof *st);
    local_t *L = calloc(1, sizeof *L);
    if (L == NULL)
        return HB_ENOMEM;
    if (dir != NULL && (L->dir = strdup(dir)) == NULL) {
        free(L);
        return HB_ENOMEM;
    }
    L->st = st;
    L->g = group;
    L->fsync = fsync;
    L->rng = rng;
    atomic_init(&L->durable_seq, 0);
    atomic_init(&L->store_error, 0);
    st->ops = &local_ops;
    st->group = group;
    st->send_expiry_s = send_expiry_s;
    st->impl = L;
    return 0;
}
