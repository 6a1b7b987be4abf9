/* The ledger: the claim journal's writer (lib/core/hb_journal*.c has its format, books and audit).
 * Open replays the journal through the core's books; appends queue records for a writer thread
 * that group-commits them (one write(), one fdatasync() per the policy) and compacts the journal.
 * Over 800 lines: the writer thread and the calls that feed it share one locked private state. */
#include "hb_internal.h"
#include "hb_journal_int.h"
#include "hongbao/ledger.h"
#include "hongbao/proto.h"

#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define NS_PER_S  UINT64_C(1000000000)
#define NS_PER_MS UINT64_C(1000000)
/* The append queue starts with this much room in each of its two buffers. */
#define QUEUE_INITIAL_CAPACITY ((size_t)64 * 1024)
/* At most this many records that make no sense in the books are logged per open ledger. */
#define ANOMALY_LOG_MAX 20u
/* The longest single condition-variable wait of hb_ledger_wait_*. */
#define WAIT_SLICE_NS (3600 * NS_PER_S)

/* Describe why hb_ledger_open failed, in l->errstr. */
static void set_error(hb_ledger_t *l, const char *fmt, ...) HB_PRINTF(2, 3);
static void set_error(hb_ledger_t *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->errstr, sizeof l->errstr, fmt, ap);
    va_end(ap);
}

/* ---- The ledger's private state ---- */

typedef struct queue_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
} queue_buf_t;

struct hb_ledger_state {
    hb_ledger_t *l;
    char *dir;
    char *path;     /* dir/journal */
    char *tmp_path; /* dir/journal.new */
    int fd;         /* the journal, O_APPEND */
    int lock_fd;    /* dir/LOCK, flock()ed */
    hb_fsync_t policy;
    uint64_t compact_min;
    void (*log)(void *arg, const char *line);
    void *log_arg;
    void (*on_durable)(void *arg, uint64_t seq);
    void *durable_arg;
    void (*on_error)(void *arg, int err);
    void *error_arg;

    uv_mutex_t mu;
    uv_cond_t wake; /* the writer waits here for work or close */
    uv_cond_t done; /* waiters wait here for progress */
    uv_thread_t thread;
    /* Under mu: */
    queue_buf_t cur; /* appenders fill it */
    bool closing;
    int error;                 /* sticky I/O error, 0 if none */
    uint32_t last_envelope_id; /* the highest envelope id journaled or queued */
    uint32_t last_reserved[3]; /* the last reservation journaled or queued, by kind */

    /* The writer's own (also open's, before the writer starts): */
    queue_buf_t spare; /* the batch being written */
    hb__books_t books;
    uint64_t anomalies;   /* records that made no sense in the books */
    bool replaying;       /* anomaly positions are file offsets (else sequence numbers) */
    uint64_t bytes;       /* journal size */
    uint64_t records;     /* records in the journal */
    uint64_t written_seq; /* the last seq handed to write() successfully */
    bool dirty;           /* written and not yet fdatasync()ed */
    uint64_t last_sync_ns;
    uint64_t compact_floor; /* no compaction attempt until bytes exceeds this */
};

static void st_log(struct hb_ledger_state *st, const char *fmt, ...) HB_PRINTF(2, 3);
static void st_log(struct hb_ledger_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(st->log, st->log_arg, fmt, ap);
    va_end(ap);
}

/* The books' problem reporter for replay and the writer: count, and log the first few. */
static void log_anomaly(void *ctx, uint64_t pos, const char *msg)
{
    struct hb_ledger_state *st = ctx;
    st->anomalies++;
    if (st->anomalies <= ANOMALY_LOG_MAX)
        st_log(st, "ledger: %s %" PRIu64 ": %s; skipped",
               st->replaying ? "journal offset" : "record seq", pos, msg);
    else if (st->anomalies == ANOMALY_LOG_MAX + 1)
        st_log(st, "ledger: more records that make no sense: counted, not logged");
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t *calls)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (calls != NULL)
            (*calls)++;
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return UV_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int sync_fd(int fd)
{
    while (fdatasync(fd) != 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    while (fsync(fd) != 0) {
        if (errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    close(fd);
    return rc;
}

/* mkdir -p. */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (p == NULL)
        return UV_ENOMEM;
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            rc = -errno;
        p[i] = c;
    }
    free(p);
    return rc;
}

/* Make sure b has room for n more bytes. */
static int queue_reserve(queue_buf_t *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    size_t cap = b->cap == 0 ? QUEUE_INITIAL_CAPACITY : b->cap;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return UV_ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return UV_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void state_free(struct hb_ledger_state *st)
{
    if (st->fd >= 0)
        close(st->fd);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the flock */
    free(st->cur.p);
    free(st->spare.p);
    hb__books_free(&st->books);
    free(st->dir);
    free(st->path);
    free(st->tmp_path);
    free(st);
}

/* Record the writer's first I/O error (of what, at offset at of the journal unless UINT64_MAX);
 * every later append fails with it. Called without mu, on the writer thread: the first time it
 * fills l->err and l->errstr (under mu, before any append or wait can return it), is logged and is
 * announced to on_error. */
static void set_sticky(struct hb_ledger_state *st, int err, const char *what, uint64_t at)
{
    hb_ledger_t *l = st->l;
    uv_mutex_lock(&st->mu);
    bool first = st->error == 0;
    if (first) {
        st->error = err;
        l->err = err;
        if (at != UINT64_MAX)
            snprintf(l->errstr, sizeof l->errstr, "%s %s failed at offset %" PRIu64 ": %s (%s)",
                     what, st->path, at, hb_err_name(err), hb_strerror(err));
        else
            snprintf(l->errstr, sizeof l->errstr, "%s %s failed: %s (%s)", what, st->path,
                     hb_err_name(err), hb_strerror(err));
    }
    st->cur.len = 0; /* never to be acknowledged */
    uv_cond_broadcast(&st->done);
    uv_mutex_unlock(&st->mu);
    if (!first)
        return;
    st_log(st, "ledger: %s; every later append fails", l->errstr);
    if (st->on_error != NULL)
        st->on_error(st->error_arg, err);
}

/* ---- Compaction ---- */

/* Compact when the journal is over both thresholds. A failure before the rename leaves the old
 * journal in use (logged; retried once the journal has grown by compact_min more); a failure
 * after it is returned (it becomes the sticky error). */
static int maybe_compact(struct hb_ledger_state *st)
{
    uint64_t snap = hb__books_snapshot_size(&st->books);
    if (st->bytes <= st->compact_min || st->bytes <= st->compact_floor || st->bytes / 2 < snap ||
        (st->bytes / 2 == snap && st->bytes % 2 == 0))
        return 0;

    size_t len = 0;
    const char *step = "building the snapshot";
    int rc = UV_ENOMEM;
    int fd = -1;
    uint8_t *img = hb__books_snapshot_image(&st->books, &len);
    if (img == NULL)
        goto failed;
    step = "creating";
    fd = open(st->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto failed;
    }
    step = "writing";
    if ((rc = write_all(fd, img, len, NULL)) != 0)
        goto failed;
    step = "syncing";
    if ((rc = sync_fd(fd)) != 0)
        goto failed;
    step = "renaming";
    if (rename(st->tmp_path, st->path) != 0) {
        rc = -errno;
        goto failed;
    }
    free(img);
    /* From here on the new file is the journal. */
    close(st->fd);
    st->fd = fd;
    uint64_t old = st->bytes;
    st->bytes = len;
    st->records = hb__books_snapshot_records(&st->books);
    st->compact_floor = 0;
    rc = sync_dir(st->dir);
    uv_mutex_lock(&st->mu);
    st->l->stats.compactions++;
    st->l->stats.bytes = st->bytes;
    st->l->stats.records = st->records;
    uv_mutex_unlock(&st->mu);
    if (rc == 0)
        st_log(st, "ledger: compacted %s: %" PRIu64 " -> %zu bytes, %zu envelopes in the books",
               st->path, old, len, st->books.book.count);
    return rc;

failed:
    st_log(st, "ledger: compaction of %s failed %s %s: %s; the journal stays as it is", st->path,
           step, st->tmp_path, hb_strerror(rc));
    if (fd >= 0) {
        close(fd);
        unlink(st->tmp_path);
    }
    free(img);
    st->compact_floor = st->bytes + st->compact_min;
    return 0;
}

/* ---- The writer thread ---- */

/* Whether EVERYSEC's once-a-second fdatasync is due (dirty, and a second since the last). */
static bool sync_due(const struct hb_ledger_state *st, uint64_t now)
{
    return st->policy == HB_FSYNC_EVERYSEC && st->dirty && now - st->last_sync_ns >= NS_PER_S;
}

/* Apply the records of a batch just written to the books. */
static int apply_batch(struct hb_ledger_state *st, const queue_buf_t *batch, uint64_t first_seq)
{
    size_t off = 0;
    uint64_t seq = first_seq;
    while (off < batch->len) {
        hb_journal_record_t r;
        if (hb_journal_decode(batch->p + off, batch->len - off, HB_JOURNAL_VERSION, &r) <= 0)
            return UV_EIO; /* cannot happen: the appenders encoded these */
        int rc = hb__books_apply(&st->books, &r, seq++);
        if (rc < 0)
            return rc;
        off += r.size;
        st->records++;
    }
    return 0;
}

static void writer_main(void *arg)
{
    struct hb_ledger_state *st = arg;
    hb_ledger_t *l = st->l;
    int rc = maybe_compact(st);
    if (rc != 0)
        set_sticky(st, rc, "syncing the directory of", UINT64_MAX);

    uv_mutex_lock(&st->mu);
    for (;;) {
        /* Wait for records, a due fdatasync, or close. */
        for (;;) {
            if (st->closing || st->error != 0)
                break;
            if (st->cur.len > 0)
                break;
            uint64_t now = uv_hrtime();
            if (sync_due(st, now))
                break;
            if (st->policy == HB_FSYNC_EVERYSEC && st->dirty)
                uv_cond_timedwait(&st->wake, &st->mu, st->last_sync_ns + NS_PER_S - now);
            else
                uv_cond_wait(&st->wake, &st->mu);
        }
        if (st->error != 0 || (st->closing && st->cur.len == 0))
            break;

        /* Take the whole queue: one write for all of it. */
        queue_buf_t batch = st->cur;
        st->cur = st->spare;
        st->spare = batch;
        uint64_t batch_last = l->stats.appended;
        uv_mutex_unlock(&st->mu);

        uint64_t writes = 0;
        uint64_t fsyncs = 0;
        const char *what = "writing";
        uint64_t at = st->bytes;
        rc = 0;
        if (batch.len > 0) {
            rc = write_all(st->fd, batch.p, batch.len, &writes);
            if (rc == 0) {
                st->bytes += batch.len;
                st->dirty = true;
                what = "indexing what was written to";
                at = UINT64_MAX;
                rc = apply_batch(st, &batch, st->written_seq + 1);
                if (rc == 0)
                    st->written_seq = batch_last;
            }
        }
        uint64_t now = uv_hrtime();
        if (rc == 0 && (st->policy == HB_FSYNC_ALWAYS ? batch.len > 0 : sync_due(st, now))) {
            what = "syncing";
            rc = sync_fd(st->fd);
            fsyncs++;
            if (rc == 0) {
                st->dirty = false;
                st->last_sync_ns = now;
            }
        }
        st->spare.len = 0;

        uv_mutex_lock(&st->mu);
        l->stats.writes += writes;
        l->stats.fsyncs += fsyncs;
        l->stats.bytes = st->bytes;
        l->stats.records = st->records;
        l->stats.outstanding = st->books.book.count - st->books.full;
        l->stats.held = st->books.book.count;
        l->stats.anomalies = st->anomalies;
        if (rc == 0) {
            if (!st->dirty)
                l->stats.synced = st->written_seq;
            l->stats.durable = st->policy == HB_FSYNC_ALWAYS ? l->stats.synced : st->written_seq;
        }
        uint64_t durable = l->stats.durable;
        uv_cond_broadcast(&st->done);
        uv_mutex_unlock(&st->mu);

        if (rc != 0) {
            set_sticky(st, rc, what, at);
        } else {
            if (batch.len > 0 && st->on_durable != NULL)
                st->on_durable(st->durable_arg, durable);
            rc = maybe_compact(st);
            if (rc != 0)
                set_sticky(st, rc, "syncing the directory of", UINT64_MAX);
        }
        uv_mutex_lock(&st->mu);
    }
    bool final_sync = st->error == 0 && st->dirty;
    uv_mutex_unlock(&st->mu);

    /* Close: whatever the policy, what was written reaches the disk. */
    if (final_sync) {
        rc = sync_fd(st->fd);
        uv_mutex_lock(&st->mu);
        l->stats.fsyncs++;
        if (rc == 0) {
            st->dirty = false;
            l->stats.synced = st->written_seq;
            l->stats.durable = st->written_seq;
        }
        uv_cond_broadcast(&st->done);
        uv_mutex_unlock(&st->mu);
        if (rc != 0)
            set_sticky(st, rc, "syncing", UINT64_MAX);
    }
}

/* ---- Open, replay, close ---- */

int hb_fsync_parse(const char *text, hb_fsync_t *out)
{
    if (text == NULL || out == NULL)
        return UV_EINVAL;
    if (strcmp(text, "always") == 0)
        *out = HB_FSYNC_ALWAYS;
    else if (strcmp(text, "everysec") == 0)
        *out = HB_FSYNC_EVERYSEC;
    else if (strcmp(text, "no") == 0)
        *out = HB_FSYNC_NO;
    else
        return UV_EINVAL;
    return 0;
}

const char *hb_fsync_name(hb_fsync_t policy)
{
    switch (policy) {
    case HB_FSYNC_ALWAYS:
        return "always";
    case HB_FSYNC_EVERYSEC:
        return "everysec";
    case HB_FSYNC_NO:
        return "no";
    }
    return "unknown";
}

/* Rewrite the version in the header of a version 1 journal (replayed, nothing after its valid
 * records) to the current one, and sync it, before anything is appended. Through a descriptor of
 * its own: a pwrite() to the O_APPEND one would append. */
static int upgrade_header(struct hb_ledger_state *st)
{
    uint8_t v[4];
    hb_put_u32(v, HB_JOURNAL_VERSION);
    int fd = open(st->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    ssize_t n;
    while ((n = pwrite(fd, v, sizeof v, 8)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        rc = -errno;
    else if (n != (ssize_t)sizeof v)
        rc = UV_EIO;
    if (rc == 0)
        rc = sync_fd(fd);
    close(fd);
    return rc;
}

/* Replay st->path into st->books (the core's books model judges every record: hb__books_load),
 * truncating a torn tail, writing the header of a new (or header-torn) journal, and upgrading the
 * header of a version 1 journal. */
static int replay(struct hb_ledger_state *st)
{
    uint8_t *buf;
    size_t len;
    int rc = hb__journal_read_fd(st->fd, &buf, &len);
    if (rc != 0) {
        set_error(st->l, "%s: cannot read: %s", st->path, hb_strerror(rc));
        return rc;
    }
    hb_journal_scan_t sr;
    st->replaying = true;
    rc = hb__books_load(&st->books, buf, len, &sr, &st->records);
    st->replaying = false;
    free(buf);
    size_t good_end = sr.good_end;
    uint32_t version = sr.version;
    if (rc == HB_ECORRUPT || rc == UV_ENOTSUP) {
        set_error(st->l, "%s: %s", st->path, sr.errstr);
        return rc;
    }
    if (rc < 0) {
        set_error(st->l, "%s: replay failed: %s", st->path, hb_strerror(rc));
        return rc;
    }
    if (rc == HB_JOURNAL_TORN) {
        st_log(st, "ledger: %s: %s; truncated to %zu bytes (%zu dropped)", st->path, sr.errstr,
               good_end, len - good_end);
        rc = ftruncate(st->fd, (off_t)good_end) != 0 ? -errno : sync_fd(st->fd);
        if (rc != 0) {
            set_error(st->l, "%s: cannot truncate the torn tail: %s", st->path, hb_strerror(rc));
            return rc;
        }
        len = good_end;
    }
    if (len == 0) {
        uint8_t h[HB_JOURNAL_HEADER_SIZE];
        hb_journal_encode_header(h, sizeof h);
        if ((rc = write_all(st->fd, h, sizeof h, NULL)) != 0 || (rc = sync_fd(st->fd)) != 0 ||
            (rc = sync_dir(st->dir)) != 0) {
            set_error(st->l, "%s: cannot write the header: %s", st->path, hb_strerror(rc));
            return rc;
        }
        len = sizeof h;
        version = HB_JOURNAL_VERSION;
    }
    if (version < HB_JOURNAL_VERSION) {
        if ((rc = upgrade_header(st)) != 0) {
            set_error(st->l, "%s: cannot rewrite the header to format version %u: %s", st->path,
                      HB_JOURNAL_VERSION, hb_strerror(rc));
            return rc;
        }
        st_log(st, "ledger: %s: format version %" PRIu32 " rewritten as version %u", st->path,
               version, HB_JOURNAL_VERSION);
    }
    st->bytes = len;
    return 0;
}

/* Take dir/LOCK, so that two ledgers never append to one journal. */
static int take_lock(struct hb_ledger_state *st)
{
    char *lock_path = hb__journal_path(st->dir, HB_LEDGER_LOCK_NAME);
    if (lock_path == NULL)
        return UV_ENOMEM;
    int rc = 0;
    st->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0) {
        rc = -errno;
        set_error(st->l, "%s: %s", lock_path, hb_strerror(rc));
    } else if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? UV_EBUSY : -errno;
        set_error(st->l, "%s: %s", lock_path,
                  rc == UV_EBUSY ? "the journal is open in another ledger" : hb_strerror(rc));
    }
    free(lock_path);
    return rc;
}

int hb_ledger_open(hb_ledger_t *l, const hb_ledger_options_t *o,
                   void (*outstanding)(void *arg, const hb_sendenv_t *e), void *arg)
{
    if (l == NULL)
        return UV_EINVAL;
    l->state = NULL;
    l->max_envelope_id = 0;
    l->reserved_shake = 0;
    l->reserved_send = 0;
    memset(&l->stats, 0, sizeof l->stats);
    l->err = 0;
    l->errstr[0] = '\0';
    if (o == NULL || o->dir == NULL || o->dir[0] == '\0' ||
        (o->fsync != HB_FSYNC_ALWAYS && o->fsync != HB_FSYNC_EVERYSEC && o->fsync != HB_FSYNC_NO)) {
        l->err = UV_EINVAL;
        set_error(l, "invalid ledger options");
        return UV_EINVAL;
    }

    int rc = UV_ENOMEM;
    struct hb_ledger_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        goto fail_early;
    st->l = l;
    st->fd = -1;
    st->lock_fd = -1;
    st->policy = o->fsync;
    st->compact_min =
        o->compact_min_bytes == 0 ? HB_LEDGER_DEFAULT_COMPACT_MIN_BYTES : o->compact_min_bytes;
    st->log = o->log;
    st->log_arg = o->log_arg;
    st->on_durable = o->on_durable;
    st->durable_arg = o->durable_arg;
    st->on_error = o->on_error;
    st->error_arg = o->error_arg;
    st->dir = strdup(o->dir);
    st->path = hb__journal_path(o->dir, HB_JOURNAL_FILE_NAME);
    st->tmp_path = hb__journal_path(o->dir, HB_LEDGER_COMPACT_NAME);
    if (hb__books_init(&st->books, log_anomaly, st) != 0 || st->dir == NULL || st->path == NULL ||
        st->tmp_path == NULL || queue_reserve(&st->cur, 1) != 0 ||
        queue_reserve(&st->spare, 1) != 0)
        goto fail;
    if ((rc = make_dirs(o->dir)) != 0) {
        set_error(l, "%s: cannot create: %s", o->dir, hb_strerror(rc));
        goto fail;
    }
    if ((rc = take_lock(st)) != 0)
        goto fail;
    if (unlink(st->tmp_path) == 0)
        st_log(st, "ledger: removed %s left by a compaction cut short", st->tmp_path);
    st->fd = open(st->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (st->fd < 0) {
        rc = -errno;
        set_error(l, "%s: %s", st->path, hb_strerror(rc));
        goto fail;
    }
    if ((rc = replay(st)) != 0)
        goto fail;

    if (outstanding != NULL)
        hb_book_foreach(&st->books.book, outstanding, arg);
    l->max_envelope_id = st->books.max_id;
    l->reserved_shake = st->books.reserved[HB_ENVELOPE_SHAKE];
    l->reserved_send = st->books.reserved[HB_ENVELOPE_SEND];
    st->last_envelope_id = st->books.max_id;
    memcpy(st->last_reserved, st->books.reserved, sizeof st->last_reserved);
    l->stats.records = st->records;
    l->stats.replayed = st->records;
    l->stats.bytes = st->bytes;
    l->stats.outstanding = st->books.book.count - st->books.full;
    l->stats.held = st->books.book.count;
    l->stats.anomalies = st->anomalies;

    if ((rc = uv_mutex_init(&st->mu)) != 0)
        goto fail;
    if ((rc = uv_cond_init(&st->wake)) != 0) {
        uv_mutex_destroy(&st->mu);
        goto fail;
    }
    if ((rc = uv_cond_init(&st->done)) != 0) {
        uv_cond_destroy(&st->wake);
        uv_mutex_destroy(&st->mu);
        goto fail;
    }
    l->state = st;
    if ((rc = uv_thread_create(&st->thread, writer_main, st)) != 0) {
        l->state = NULL;
        uv_cond_destroy(&st->done);
        uv_cond_destroy(&st->wake);
        uv_mutex_destroy(&st->mu);
        set_error(l, "cannot start the ledger's writer thread: %s", hb_strerror(rc));
        goto fail;
    }
    return 0;

fail:
    state_free(st);
fail_early:
    l->max_envelope_id = 0;
    l->reserved_shake = 0;
    l->reserved_send = 0;
    memset(&l->stats, 0, sizeof l->stats);
    l->err = rc;
    if (l->errstr[0] == '\0')
        set_error(l, "%s: %s", o->dir, hb_strerror(rc));
    return rc;
}

void hb_ledger_close(hb_ledger_t *l)
{
    if (l == NULL || l->state == NULL)
        return;
    struct hb_ledger_state *st = l->state;
    uv_mutex_lock(&st->mu);
    st->closing = true;
    uv_cond_signal(&st->wake);
    uv_mutex_unlock(&st->mu);
    uv_thread_join(&st->thread);
    uv_cond_destroy(&st->done);
    uv_cond_destroy(&st->wake);
    uv_mutex_destroy(&st->mu);
    l->state = NULL;
    state_free(st);
}

/* ---- Appending ---- */

/* Under mu: whether r may follow what was journaled and queued before it (envelope ids and
 * reservations only go up). */
static bool in_order(const struct hb_ledger_state *st, const hb_journal_record_t *r)
{
    if (r->type == HB_JOURNAL_ENVELOPE)
        return r->envelope.id > st->last_envelope_id;
    if (r->type == HB_JOURNAL_RESERVE)
        return r->last > st->last_reserved[r->kind];
    return true;
}

static int append_record(hb_ledger_t *l, const hb_journal_record_t *r, uint64_t *seq)
{
    uint8_t rec[HB_JOURNAL_MAX_RECORD];
    int n = hb_journal_encode(r, rec, sizeof rec);
    if (n < 0)
        return n;
    struct hb_ledger_state *st = l->state;
    int rc = 0;
    uv_mutex_lock(&st->mu);
    if (st->closing)
        rc = UV_EINVAL;
    else if (st->error != 0)
        rc = st->error;
    else if (!in_order(st, r))
        rc = UV_EINVAL;
    else
        rc = queue_reserve(&st->cur, (size_t)n);
    if (rc == 0) {
        if (r->type == HB_JOURNAL_ENVELOPE)
            st->last_envelope_id = r->envelope.id;
        else if (r->type == HB_JOURNAL_RESERVE)
            st->last_reserved[r->kind] = r->last;
        if (st->cur.len == 0)
            uv_cond_signal(&st->wake);
        memcpy(st->cur.p + st->cur.len, rec, (size_t)n);
        st->cur.len += (size_t)n;
        uint64_t s = ++l->stats.appended;
        if (seq != NULL)
            *seq = s;
    }
    uv_mutex_unlock(&st->mu);
    return rc;
}

int hb_ledger_append_envelope(hb_ledger_t *l, const hb_sendenv_t *e, uint64_t *seq)
{
    if (l == NULL || l->state == NULL || e == NULL || e->claimed != 0 ||
        hb_sendenv_check(e) != NULL || hb_envelope_id_kind(e->id) != HB_ENVELOPE_SEND)
        return UV_EINVAL;
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_ENVELOPE;
    r.envelope = *e;
    r.envelope_id = e->id;
    return append_record(l, &r, seq);
}

int hb_ledger_append_claim(hb_ledger_t *l, uint32_t envelope_id, uint32_t user, uint32_t amount,
                           uint64_t *seq)
{
    if (l == NULL || l->state == NULL)
        return UV_EINVAL;
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_CLAIM;
    r.envelope_id = envelope_id;
    r.user = user;
    r.amount = amount;
    return append_record(l, &r, seq);
}

int hb_ledger_append_expire(hb_ledger_t *l, uint32_t envelope_id, uint64_t *seq)
{
    if (l == NULL || l->state == NULL)
        return UV_EINVAL;
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_EXPIRE;
    r.envelope_id = envelope_id;
    return append_record(l, &r, seq);
}

int hb_ledger_append_reserve(hb_ledger_t *l, hb_envelope_kind_t kind, uint32_t last, uint64_t *seq)
{
    if (l == NULL || l->state == NULL || (kind != HB_ENVELOPE_SHAKE && kind != HB_ENVELOPE_SEND) ||
        hb_envelope_id_kind(last) != (int)kind)
        return UV_EINVAL;
    hb_journal_record_t r;
    memset(&r, 0, sizeof r);
    r.type = HB_JOURNAL_RESERVE;
    r.kind = (uint8_t)kind;
    r.last = last;
    return append_record(l, &r, seq);
}

void hb_ledger_stats(hb_ledger_t *l, hb_ledger_stats_t *out)
{
    if (l == NULL || out == NULL)
        return;
    struct hb_ledger_state *st = l->state;
    if (st == NULL) {
        *out = l->stats;
        return;
    }
    uv_mutex_lock(&st->mu);
    *out = l->stats;
    uv_mutex_unlock(&st->mu);
}

static int wait_for(hb_ledger_t *l, uint64_t seq, bool synced, uint64_t timeout_ms)
{
    if (l == NULL || l->state == NULL)
        return UV_EINVAL;
    struct hb_ledger_state *st = l->state;
    uint64_t start = uv_hrtime();
    uint64_t timeout_ns = timeout_ms > UINT64_MAX / NS_PER_MS ? UINT64_MAX : timeout_ms * NS_PER_MS;
    int rc;
    uv_mutex_lock(&st->mu);
    if (seq > l->stats.appended) {
        rc = UV_EINVAL;
    } else {
        for (;;) {
            if ((synced ? l->stats.synced : l->stats.durable) >= seq) {
                rc = 0;
                break;
            }
            if (st->error != 0) {
                rc = st->error;
                break;
            }
            uint64_t elapsed = uv_hrtime() - start;
            if (elapsed >= timeout_ns) {
                rc = UV_ETIMEDOUT;
                break;
            }
            /* In slices: libuv adds the timeout to the clock, which must not overflow. */
            uint64_t left = timeout_ns - elapsed;
            uv_cond_timedwait(&st->done, &st->mu, left < WAIT_SLICE_NS ? left : WAIT_SLICE_NS);
        }
    }
    uv_mutex_unlock(&st->mu);
    return rc;
}

int hb_ledger_wait_durable(hb_ledger_t *l, uint64_t seq, uint64_t timeout_ms)
{
    return wait_for(l, seq, false, timeout_ms);
}

int hb_ledger_wait_synced(hb_ledger_t *l, uint64_t seq, uint64_t timeout_ms)
{
    return wait_for(l, seq, true, timeout_ms);
}
