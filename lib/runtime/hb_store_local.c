/* The local store: money decided in the SETs' books and made durable in the claim journal.
 *
 * A send-envelope belongs to the SET id % nsets, whose book alone judges its claims (one thread,
 * no lock). A grant is journaled, and its reply waits in the owning SET until the journal is
 * durable up to its record; a repeated claim is answered with the share granted before, once that
 * grant is durable; a new envelope's notices wait the same way, so nobody hears of an envelope
 * before it is durable. If the journal fails for good, what waits is rolled back: grants undone
 * and answered "try again", envelopes dropped unannounced. Ids are handed out only inside
 * reservations that are durable, so no id is ever used twice, also across restarts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hb_server_int.h"

#define SHAKE_ID_BLOCK 65536 /* about a second of shakes at the reference's rate */
#define SEND_ID_BLOCK  4096
#define OPEN_WAIT_MS   10000 /* the first reservations must be durable within this at start */

/* ---- what waits for the journal ---- */

static int hold(hb_set_t *set, const hb_held_t *h)
{
    if (set->held_count == set->held_cap) {
        size_t cap = set->held_cap ? set->held_cap * 2 : 64;
        hb_held_t *n = malloc(cap * sizeof *n);
        if (n == NULL)
            return UV_ENOMEM;
        for (size_t i = 0; i < set->held_count; i++)
            n[i] = set->held[(set->held_head + i) % set->held_cap];
        free(set->held);
        set->held = n;
        set->held_head = 0;
        set->held_cap = cap;
    }
    set->held[(set->held_head + set->held_count) % set->held_cap] = *h;
    set->held_count++;
    atomic_fetch_add_explicit(&set->waiting, 1, memory_order_acq_rel);
    if (h->seq > set->last_seq)
        set->last_seq = h->seq;
    return 0;
}

static hb_held_t unhold(hb_set_t *set)
{
    hb_held_t h = set->held[set->held_head];
    set->held_head = (set->held_head + 1) % set->held_cap;
    set->held_count--;
    atomic_fetch_sub_explicit(&set->waiting, 1, memory_order_release);
    return h;
}

static uint64_t durable(const hb_set_t *set)
{
    return atomic_load_explicit(&set->worker->impl->durable_seq, memory_order_acquire);
}

/* Send the notices of envelope id (in this SET's book) to its online recipients. */
static void announce(hb_set_t *set, uint32_t id)
{
    const hb_sendenv_t *e = hb_book_find(&set->book, id);
    if (e == NULL)
        return; /* expired meanwhile */
    uint64_t now_s = hb__now_s();
    hb_msg_t n = {.cmd = HB_CMD_NOTICE, .timestamp = now_s};
    n.u.notice.envelope_id = e->id;
    n.u.notice.total_amount = e->total;
    n.u.notice.recipient_count = HB_NOTICE_RECIPIENTS;
    memcpy(n.u.notice.user_ids, e->recipients, sizeof e->recipients);
    uint8_t frame[HB_FRAME_MAX_REFERENCE];
    int len = hb_msg_encode(&n, frame, sizeof frame);
    for (unsigned i = 0; i < HB_NOTICE_RECIPIENTS && len > 0; i++)
        if (hb__set_send_to_user(set, n.u.notice.user_ids[i], frame, (size_t)len) != 0)
            hb__set_count(set, HB_CTR_X_NOTICE_OFFLINE, now_s, 1);
}

/* A grant counts once it is acknowledged (durable, with a journal). */
static void count_grant(hb_set_t *set, uint32_t amount)
{
    uint64_t now_s = hb__now_s();
    hb__set_count(set, HB_CTR_CLAIMS_GRANTED, now_s, 1);
    hb__set_count(set, HB_CTR_SEND_AMOUNT_CLAIMED, now_s, amount);
}

static void release(hb_set_t *set, const hb_held_t *h)
{
    switch (h->kind) {
    case HB_HELD_GRANT:
        count_grant(set, h->amount);
        hb__set_answer_claim(set, h->reply_set, h->user, h->gen, h->envelope_id, h->amount,
                             HB_CLAIM_GRANTED, h->ext);
        break;
    case HB_HELD_REPEAT:
        hb__set_answer_claim(set, h->reply_set, h->user, h->gen, h->envelope_id, h->amount,
                             HB_CLAIM_REPEAT, h->ext);
        break;
    case HB_HELD_NOTICE:
        announce(set, h->envelope_id);
        break;
    }
}

/* Release, in order, what the journal now has. */
static void release_durable(hb_set_t *set)
{
    uint64_t d = durable(set);
    while (set->held_count > 0 && set->held[set->held_head].seq <= d) {
        hb_held_t h = unhold(set);
        release(set, &h);
    }
}

/* The journal will make nothing more durable: undo and refuse what still waits. */
static void roll_back(hb_set_t *set)
{
    uint64_t now_s = hb__now_s();
    release_durable(set);
    set->store_failed = 1;
    while (set->held_count > 0) {
        hb_held_t h = unhold(set);
        uint32_t result = HB_CLAIM_TRY_AGAIN, amount = 0;
        switch (h.kind) {
        case HB_HELD_GRANT:
            hb_book_unclaim(&set->book, h.envelope_id, h.user);
            break;
        case HB_HELD_REPEAT: {
            /* Its grant survived the roll-back only if it was durable. */
            uint32_t a = 0;
            const hb_sendenv_t *e = hb_book_find(&set->book, h.envelope_id);
            for (unsigned i = 0; e != NULL && i < HB_NOTICE_RECIPIENTS; i++)
                if (e->recipients[i] == h.user && (e->claimed & (1u << i)))
                    a = e->shares[i];
            if (a != 0) {
                result = HB_CLAIM_REPEAT;
                amount = a;
            }
            break;
        }
        case HB_HELD_NOTICE:
            hb_book_remove(&set->book, h.envelope_id, NULL);
            hb__set_count(set, HB_CTR_X_ENVELOPE_DROPPED, now_s, 1);
            continue;
        }
        if (result == HB_CLAIM_TRY_AGAIN)
            hb__set_count(set, HB_CTR_X_CLAIM_TRY_AGAIN, now_s, 1);
        hb__set_answer_claim(set, h.reply_set, h.user, h.gen, h.envelope_id, amount, result, h.ext);
    }
}

/* ---- claims ---- */

/* In the SET owning the envelope: judge the claim, journal a first grant, answer once durable. */
static void judge(hb_set_t *set, uint32_t user, uint64_t gen, uint32_t envelope_id,
                  unsigned reply_set, uint8_t ext)
{
    struct hb_server_impl *impl = set->worker->impl;
    uint64_t now_s = hb__now_s();
    uint32_t amount = 0;
    int r = hb_book_claim(&set->book, envelope_id, user, &amount);
    hb_held_t h = {.gen = gen,
                   .user = user,
                   .envelope_id = envelope_id,
                   .amount = amount,
                   .reply_set = reply_set,
                   .ext = ext};
    if (r == 0) {
        int e = 0;
        if (impl->have_ledger) {
            e = set->store_failed
                    ? HB_ESTORE
                    : hb_ledger_append_claim(&impl->ledger, envelope_id, user, amount, &h.seq);
            if (e == 0) {
                h.kind = HB_HELD_GRANT;
                e = hold(set, &h);
            }
            if (e != 0) {
                /* Not journaled: not granted. The claimant may ask again. */
                hb_book_unclaim(&set->book, envelope_id, user);
                hb__set_count(set, HB_CTR_X_CLAIM_TRY_AGAIN, now_s, 1);
                hb__set_answer_claim(set, reply_set, user, gen, envelope_id, 0, HB_CLAIM_TRY_AGAIN,
                                     ext);
                return;
            }
        }
        if (impl->have_ledger) {
            release_durable(set); /* in case the record is durable already */
        } else {
            count_grant(set, amount);
            hb__set_answer_claim(set, reply_set, user, gen, envelope_id, amount, HB_CLAIM_GRANTED,
                                 ext);
        }
        return;
    }
    if (r == HB_BOOK_REPEAT) {
        hb__set_count(set, HB_CTR_X_CLAIM_REPEAT, now_s, 1);
        /* Answered once the grant is durable: everything this SET journaled so far. */
        release_durable(set);
        if (impl->have_ledger && !set->store_failed && set->last_seq > durable(set)) {
            h.kind = HB_HELD_REPEAT;
            h.seq = set->last_seq;
            if (hold(set, &h) == 0) {
                release_durable(set);
                return;
            }
            hb__set_count(set, HB_CTR_X_CLAIM_TRY_AGAIN, now_s, 1);
            hb__set_answer_claim(set, reply_set, user, gen, envelope_id, 0, HB_CLAIM_TRY_AGAIN,
                                 ext);
            return;
        }
        hb__set_answer_claim(set, reply_set, user, gen, envelope_id, amount, HB_CLAIM_REPEAT, ext);
        return;
    }
    hb__set_count(set, HB_CTR_X_CLAIM_REFUSED, now_s, 1);
    hb__set_answer_claim(set, reply_set, user, gen, envelope_id, 0,
                         r == HB_ENOTRECIPIENT ? HB_CLAIM_NOT_RECIPIENT : HB_CLAIM_NO_ENVELOPE,
                         ext);
}

void hb__store_claim(hb_set_t *set, uint32_t user, uint64_t gen, uint32_t envelope_id, uint8_t ext)
{
    struct hb_server_impl *impl = set->worker->impl;
    hb_set_t *owner = &impl->sets[envelope_id % impl->nsets];
    if (owner == set) {
        judge(set, user, gen, envelope_id, set->index, ext);
        return;
    }
    hb_set_msg_t q = {.type = HB_MSG_CLAIM, .ext = ext, .user = user, .gen = gen};
    q.u.claim.envelope_id = envelope_id;
    q.u.claim.reply_set = set->index;
    if (hb__set_post(owner, &q) != 0) {
        hb__set_count(set, HB_CTR_X_CLAIM_TRY_AGAIN, hb__now_s(), 1);
        hb__set_answer_claim(set, set->index, user, gen, envelope_id, 0, HB_CLAIM_TRY_AGAIN, ext);
    }
}

/* ---- envelopes ---- */

static void add_envelope(hb_set_t *set, const hb_sendenv_t *e, uint64_t seq)
{
    struct hb_server_impl *impl = set->worker->impl;
    int r = hb_book_add(&set->book, e);
    if (r != 0) {
        /* Never expected (ids are never reused): said loudly, and nobody is told of it. */
        hb__set_count(set, HB_CTR_X_ENVELOPE_DROPPED, hb__now_s(), 1);
        hb__server_log(impl, "send-envelope %u refused by its book: %s", e->id, hb_strerror(r));
        return;
    }
    if (!impl->have_ledger) {
        announce(set, e->id);
        return;
    }
    hb_held_t h = {.seq = seq, .kind = HB_HELD_NOTICE, .envelope_id = e->id};
    if (set->store_failed || hold(set, &h) != 0) {
        hb_book_remove(&set->book, e->id, NULL);
        hb__set_count(set, HB_CTR_X_ENVELOPE_DROPPED, hb__now_s(), 1);
        return;
    }
    release_durable(set);
}

void hb__store_handle(hb_set_t *set, const hb_set_msg_t *m)
{
    switch (m->type) {
    case HB_MSG_CLAIM:
        judge(set, m->user, m->gen, m->u.claim.envelope_id, m->u.claim.reply_set, m->ext);
        break;
    case HB_MSG_ENVELOPE:
        add_envelope(set, &m->u.env, m->gen);
        break;
    case HB_MSG_DURABLE:
        release_durable(set);
        if (set->phase3_waiting)
            hb__store_phase3(set, set->phase3_target);
        break;
    case HB_MSG_STORE_FAILED:
        if (set->index == 0)
            hb__set_count(set, HB_CTR_X_STORE_ERRORS, hb__now_s(), 1);
        roll_back(set);
        if (set->phase3_waiting)
            hb__store_phase3(set, set->phase3_target);
        break;
    default:
        break;
    }
}

static void on_expired(void *arg, const hb_sendenv_t *e)
{
    hb_set_t *set = arg;
    struct hb_server_impl *impl = set->worker->impl;
    if (e->claimed_sum < e->total)
        hb__set_count(set, HB_CTR_X_SEND_EXPIRED, hb__now_s(), 1);
    /* Every envelope is retired at its expiry, claimed or not, so the journal's books drop it. */
    if (impl->have_ledger && !set->store_failed)
        hb_ledger_append_expire(&impl->ledger, e->id, NULL);
}

void hb__store_expire(hb_set_t *set, uint64_t now_s)
{
    uint64_t ttl = set->worker->impl->opts.send_expiry_s;
    if (now_s > ttl)
        hb_book_expire(&set->book, now_s - ttl, on_expired, set);
}

/* ---- shutdown ---- */

void hb__store_phase3(hb_set_t *set, uint64_t target)
{
    struct hb_server_impl *impl = set->worker->impl;
    if (!set->phase3_waiting) {
        set->phase3_waiting = 1;
        set->phase3_target = target;
        atomic_fetch_add_explicit(&set->waiting, 1, memory_order_acq_rel);
    }
    release_durable(set);
    int done = !impl->have_ledger || set->store_failed || durable(set) >= target;
    if (!done)
        return;              /* a durable notice brings us back */
    if (set->held_count > 0) /* only after a failure: what could not be made durable */
        roll_back(set);
    set->phase3_waiting = 0;
    atomic_fetch_sub_explicit(&set->waiting, 1, memory_order_release);
    hb__phase_ack(impl);
}

void hb__store_give_up(hb_set_t *set)
{
    if (set->held_count > 0 || set->phase3_waiting) {
        roll_back(set);
        if (set->phase3_waiting)
            hb__store_phase3(set, set->phase3_target);
    }
}

/* ---- the journal's callbacks (its writer thread) ---- */

static void on_durable(void *arg, uint64_t seq)
{
    struct hb_server_impl *impl = arg;
    atomic_store_explicit(&impl->durable_seq, seq, memory_order_release);
    hb_set_msg_t m = {.type = HB_MSG_DURABLE};
    for (unsigned i = 0; i < impl->nsets; i++)
        if (atomic_load_explicit(&impl->sets[i].waiting, memory_order_acquire) > 0)
            hb__set_post_external(impl, &impl->sets[i], &m);
}

static void on_store_error(void *arg, int err)
{
    struct hb_server_impl *impl = arg;
    atomic_store_explicit(&impl->store_error, err, memory_order_release);
    hb__server_log(impl,
                   "the claim journal failed (%s): claims are answered 'try again' and new "
                   "send-envelopes refused until a restart; shakes go on",
                   hb_strerror(err));
    hb_set_msg_t m = {.type = HB_MSG_STORE_FAILED};
    for (unsigned i = 0; i < impl->nsets; i++)
        hb__set_post_external(impl, &impl->sets[i], &m);
}

static void ledger_log(void *arg, const char *line)
{
    hb__server_log(arg, "ledger: %s", line);
}

/* Replay: each envelope still in the books goes back into the book of the SET owning its id. */
static void restore_envelope(void *arg, const hb_sendenv_t *e)
{
    struct hb_server_impl *impl = arg;
    hb_book_add(&impl->sets[e->id % impl->nsets].book, e);
}

/* ---- ids ---- */

static void idspace_init(hb_idspace_t *s, hb_envelope_kind_t kind, uint32_t reserved,
                         uint32_t block, int unbounded)
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
static int idspace_refill(struct hb_server_impl *impl, hb_idspace_t *s)
{
    if (!impl->have_ledger || s->next == 0)
        return 0;
    if (s->pending_seq != 0) {
        if (durable(&impl->sets[0]) < s->pending_seq)
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
    int r = hb_ledger_append_reserve(&impl->ledger, s->kind, last, &seq);
    if (r != 0)
        return r;
    s->reserved = last;
    s->pending_seq = seq;
    return 0;
}

/* The next id of s inside a durable reservation. */
static int idspace_take(struct hb_server_impl *impl, hb_idspace_t *s, uint32_t *id)
{
    if (s->next == 0) {
        if (!s->exhausted_logged) {
            s->exhausted_logged = 1;
            hb__server_log(impl, "the %s envelope id space is used up: no more such envelopes",
                           s->kind == HB_ENVELOPE_SHAKE ? "shake" : "send");
        }
        return HB_EIDSPACE;
    }
    int err = atomic_load_explicit(&impl->store_error, memory_order_acquire);
    if (err != 0)
        return err;
    int r = idspace_refill(impl, s);
    if (r != 0)
        return r;
    if (s->next > s->ok_until)
        return UV_EAGAIN;
    *id = s->next;
    s->next = hb_envelope_id_add(s->kind, s->next, 1);
    return 0;
}

int hb__store_shake_id(struct hb_server_impl *impl, uint32_t *id)
{
    return idspace_take(impl, &impl->shake_ids, id);
}

uint64_t hb__store_appended(struct hb_server_impl *impl)
{
    if (!impl->have_ledger)
        return 0;
    hb_ledger_stats_t st;
    hb_ledger_stats(&impl->ledger, &st);
    return st.appended;
}

int hb__store_create_send(struct hb_server_impl *impl, const uint32_t recipients[3], uint32_t total,
                          uint32_t *id)
{
    hb_sendenv_t e;
    memset(&e, 0, sizeof e);
    if (recipients[0] == recipients[1] || recipients[0] == recipients[2] ||
        recipients[1] == recipients[2])
        return UV_EINVAL;
    int r = hb_envelope_split(total, HB_NOTICE_RECIPIENTS, &impl->rng, e.shares);
    if (r != 0)
        return UV_EINVAL;
    r = idspace_take(impl, &impl->send_ids, &e.id);
    if (r == UV_EAGAIN)
        r = HB_ESTORE; /* the id reservation is not durable yet: try again shortly */
    if (r != 0)
        return r;
    e.total = total;
    e.created_s = hb__now_s();
    memcpy(e.recipients, recipients, sizeof e.recipients);
    uint64_t seq = 0;
    /* Journaled first; its owner announces it once durable. */
    if (impl->have_ledger && (r = hb_ledger_append_envelope(&impl->ledger, &e, &seq)) != 0)
        return r;
    hb_set_msg_t m = {.type = HB_MSG_ENVELOPE, .gen = seq};
    m.u.env = e;
    r = hb__set_post_external(impl, &impl->sets[e.id % impl->nsets], &m);
    if (r != 0)
        return r;
    hb__control_count(impl, HB_CTR_SEND_CREATED, 1);
    hb__control_count(impl, HB_CTR_SEND_AMOUNT_ISSUED, total);
    if (id != NULL)
        *id = e.id;
    return 0;
}

/* ---- open and close ---- */

int hb__store_open(struct hb_server_impl *impl)
{
    if (impl->opts.ledger_dir == NULL) {
        idspace_init(&impl->shake_ids, HB_ENVELOPE_SHAKE, 0, SHAKE_ID_BLOCK, 1);
        idspace_init(&impl->send_ids, HB_ENVELOPE_SEND, 0, SEND_ID_BLOCK, 1);
        return 0;
    }
    hb_ledger_options_t lo;
    memset(&lo, 0, sizeof lo);
    lo.dir = impl->opts.ledger_dir;
    lo.fsync = impl->opts.fsync;
    lo.log = ledger_log;
    lo.log_arg = impl;
    lo.on_durable = on_durable;
    lo.durable_arg = impl;
    lo.on_error = on_store_error;
    lo.error_arg = impl;
    int r = hb_ledger_open(&impl->ledger, &lo, restore_envelope, impl);
    if (r != 0)
        return r;
    impl->have_ledger = 1;
    uint32_t last_send = impl->ledger.reserved_send;
    if (impl->ledger.max_envelope_id > last_send)
        last_send = impl->ledger.max_envelope_id;
    idspace_init(&impl->shake_ids, HB_ENVELOPE_SHAKE, impl->ledger.reserved_shake, SHAKE_ID_BLOCK,
                 0);
    idspace_init(&impl->send_ids, HB_ENVELOPE_SEND, last_send, SEND_ID_BLOCK, 0);
    /* The first reservations, durable before anything is handed out. */
    r = idspace_refill(impl, &impl->shake_ids);
    if (r == 0)
        r = idspace_refill(impl, &impl->send_ids);
    uint64_t wait = impl->send_ids.pending_seq > impl->shake_ids.pending_seq
                        ? impl->send_ids.pending_seq
                        : impl->shake_ids.pending_seq;
    if (r == 0 && wait > 0)
        r = hb_ledger_wait_durable(&impl->ledger, wait, OPEN_WAIT_MS);
    if (r == 0 && wait > 0)
        atomic_store_explicit(&impl->durable_seq, wait, memory_order_release);
    if (r != 0) {
        hb_ledger_close(&impl->ledger);
        impl->have_ledger = 0;
        return r;
    }
    return 0;
}

void hb__store_close(struct hb_server_impl *impl)
{
    if (impl->have_ledger)
        hb_ledger_close(&impl->ledger); /* flush and sync what the SETs journaled */
    impl->have_ledger = 0;
}
