/* hb-audit: check the books of a ledger journal, read-only, a thin consumer of hb_journal_audit;
 * with --redis, a fleet's books in Redis Cluster (hb_fleet_audit).
 * Exit 0 when the books balance, 1 on any violation, 2 on a usage or I/O error. */
#include <errno.h>
#include <hongbao.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *prog = "hb-audit";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: hb-audit [--json] [--quiet] PATH\n"
            "       hb-audit [--json] [--quiet] --redis HOST:PORT[,HOST:PORT...]\n"
            "\n"
            "Audit a ledger journal (libhongbao %s), read-only: PATH is a ledger directory\n"
            "(its journal is PATH/journal) or a journal file.\n"
            "\n"
            "Judges every record by the books' claim rule, as the ledger's replay does: every\n"
            "claim is of an envelope in the books, by a listed recipient, once (a share granted\n"
            "twice is a violation), for that recipient's share; envelope ids are send ids, each\n"
            "above the ones before; expiry is only of envelopes in the books; reservations of\n"
            "envelope ids only go forward; a snapshot is whole; and\n"
            "issued = claimed + expired + outstanding. Each violation is printed with the\n"
            "offset of its record. A torn last record is a warning, not a violation. Prints the\n"
            "totals, the highest envelope id and the envelope ids reserved.\n"
            "\n"
            "With --redis, audit a fleet's books in Redis Cluster instead (docs/fleet.md): every\n"
            "send-envelope whose id was reserved, judged by the same rule (shares add up to the\n"
            "total, each grant its recipient's share, the envelope's counters right), and every\n"
            "partition of the shake budget balanced (generated = queued + leased + handed out +\n"
            "expired, in count and amount; none handed out twice).\n"
            "\n"
            "  --json    print the totals as one JSON object on stdout (violations to stderr)\n"
            "  --quiet   print violations and warnings only\n"
            "  --help, --version\n"
            "\n"
            "Exit status: 0 the books balance, 1 violations found, 2 usage or I/O error (Redis\n"
            "not reachable, for --redis).\n",
            hb_version_string());
}

typedef struct report {
    FILE *out; /* where violations go */
    uint64_t shown;
} report_t;

static void on_violation(void *arg, const char *msg, size_t offset)
{
    report_t *r = arg;
    fprintf(r->out, "violation at offset %zu: %s\n", offset, msg);
    r->shown++;
}

/* Read a whole file; NULL (errno set) when it cannot. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap == 0 ? 65536 : cap * 2;
            uint8_t *p = realloc(buf, ncap);
            if (p == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = p;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

/* "up to ID", or "none" for 0, into buf. */
static const char *reserved_text(char *buf, size_t n, uint32_t last)
{
    if (last == 0)
        snprintf(buf, n, "none");
    else
        snprintf(buf, n, "up to %" PRIu32 " (0x%" PRIx32 ")", last, last);
    return buf;
}

static void print_text(const char *journal, const hb_journal_audit_t *t)
{
    const hb_journal_totals_t *x = &t->totals;
    char shake[48], send[48];
    printf("journal      %s: %zu bytes, %" PRIu64 " records, format version %" PRIu32 "\n", journal,
           t->size, t->records, t->version);
    printf("envelopes    %" PRIu64 " issued, %" PRIu64 " expired, %" PRIu64 " outstanding, %" PRIu64
           " held (fully claimed included); %" PRIu64 " claims; highest id %" PRIu32 "\n",
           x->envelopes, x->expired, t->outstanding, t->held, x->claims, t->max_envelope_id);
    printf("amounts      issued %" PRIu64 ", claimed %" PRIu64 ", expired %" PRIu64
           ", outstanding %" PRIu64 "\n",
           x->issued, x->claimed, x->expired_amount, t->outstanding_amount);
    printf("reserved     shake ids %s, send ids %s\n",
           reserved_text(shake, sizeof shake, t->reserved_shake),
           reserved_text(send, sizeof send, t->reserved_send));
    if (t->violations == 0)
        printf("books        balance\n");
    else
        printf("books        %" PRIu64 " violation%s\n", t->violations,
               t->violations == 1 ? "" : "s");
}

/* A JSON string: the journal path, escaped. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_json(const char *journal, const hb_journal_audit_t *t)
{
    const hb_journal_totals_t *x = &t->totals;
    printf("{\"journal\":");
    print_json_string(journal);
    printf(",\"version\":%" PRIu32 ",\"bytes\":%zu,\"records\":%" PRIu64 ",\"envelopes\":%" PRIu64
           ",\"claims\":%" PRIu64 ",\"expired\":%" PRIu64 ",\"outstanding\":%" PRIu64
           ",\"held\":%" PRIu64 ",\"issued\":%" PRIu64 ",\"claimed\":%" PRIu64
           ",\"expired_amount\":%" PRIu64 ",\"outstanding_amount\":%" PRIu64
           ",\"max_envelope_id\":%" PRIu32 ",\"reserved_shake\":%" PRIu32
           ",\"reserved_send\":%" PRIu32 ",\"torn\":%s",
           t->version, t->size, t->records, x->envelopes, x->claims, x->expired, t->outstanding,
           t->held, x->issued, x->claimed, x->expired_amount, t->outstanding_amount,
           t->max_envelope_id, t->reserved_shake, t->reserved_send, t->torn ? "true" : "false");
    if (t->torn)
        printf(",\"torn_offset\":%zu", t->torn_offset);
    printf(",\"violations\":%" PRIu64 ",\"balanced\":%s}\n", t->violations,
           t->violations == 0 ? "true" : "false");
}

/* --redis: the fleet's audit, on a loop of its own. */
typedef struct fleet_run {
    int json, quiet, status;
} fleet_run_t;

static void on_fleet_audit(int err, const hb_fleet_audit_result_t *r, void *arg)
{
    fleet_run_t *f = arg;
    if (err != 0) {
        fprintf(stderr, "%s: redis: %s\n", prog, hb_strerror(err));
        f->status = 2;
        return;
    }
    size_t shown = sizeof r->first / sizeof r->first[0];
    for (uint64_t i = 0; i < r->violations && i < shown; i++)
        fprintf(f->json ? stderr : stdout, "violation: %s\n", r->first[i]);
    if (r->violations > shown)
        fprintf(f->json ? stderr : stdout, "(and %" PRIu64 " more)\n", r->violations - shown);
    const hb_fleet_partition_t *b = &r->budget;
    if (f->json)
        printf("{\"envelopes\":%" PRIu64 ",\"issued\":%" PRIu64 ",\"claims\":%" PRIu64
               ",\"claimed\":%" PRIu64 ",\"reserved_send\":%" PRIu32
               ",\"shake\":{\"generated\":%" PRIu64 ",\"generated_amount\":%" PRIu64
               ",\"queued\":%" PRIu64 ",\"leased\":%" PRIu64 ",\"handed_out\":%" PRIu64
               ",\"handed_out_amount\":%" PRIu64 ",\"expired\":%" PRIu64
               ",\"expired_amount\":%" PRIu64 ",\"returned\":%" PRIu64 ",\"late\":%" PRIu64
               "},\"violations\":%" PRIu64 ",\"balanced\":%s}\n",
               r->envelopes, r->issued_amount, r->grants, r->granted_amount, r->highest_send_id,
               b->generated, b->generated_amount, b->queued, b->leased, b->handed_out,
               b->handed_out_amount, b->expired, b->expired_amount, b->returned, b->late,
               r->violations, r->violations == 0 ? "true" : "false");
    else if (!f->quiet) {
        printf("envelopes    %" PRIu64 " send-envelopes, issued %" PRIu64 "; %" PRIu64
               " claims, claimed %" PRIu64 "; send ids reserved up to %" PRIu32 "\n",
               r->envelopes, r->issued_amount, r->grants, r->granted_amount, r->highest_send_id);
        printf("shake budget %" PRIu64 " generated (%" PRIu64 "): %" PRIu64 " queued, %" PRIu64
               " leased, %" PRIu64 " handed out (%" PRIu64 "), %" PRIu64 " expired (%" PRIu64
               "); %" PRIu64 " returned, %" PRIu64 " reported late, over %u partitions\n",
               b->generated, b->generated_amount, b->queued, b->leased, b->handed_out,
               b->handed_out_amount, b->expired, b->expired_amount, b->returned, b->late,
               r->partitions);
        if (r->violations == 0)
            printf("books        balance\n");
        else
            printf("books        %" PRIu64 " violation%s\n", r->violations,
                   r->violations == 1 ? "" : "s");
    }
    f->status = r->violations == 0 ? 0 : 1;
}

static void fleet_log(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "%s: %s\n", prog, line);
}

static int audit_fleet(const char *seeds, int json, int quiet)
{
    uv_loop_t loop;
    fleet_run_t f = {json, quiet, 2};
    if (uv_loop_init(&loop) != 0)
        return 2;
    int r = hb_fleet_audit(&loop, seeds, fleet_log, NULL, on_fleet_audit, &f);
    if (r == UV_ENOTSUP)
        fprintf(stderr, "%s: --redis: this libhongbao was built without Redis (HONGBAO_REDIS)\n",
                prog);
    else if (r != 0)
        fprintf(stderr, "%s: --redis %s: %s\n", prog, seeds, hb_strerror(r));
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return r != 0 ? 2 : f.status;
}

int main(int argc, char **argv)
{
    int json = 0, quiet = 0;
    const char *path = NULL, *redis = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("hb-audit (libhongbao) %s\n", hb_version_string());
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--redis") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "%s: --redis needs HOST:PORT[,...]\n", prog);
                return 2;
            }
            redis = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        } else if (path != NULL) {
            fprintf(stderr, "%s: one PATH only (see --help)\n", prog);
            return 2;
        } else {
            path = a;
        }
    }
    if (redis != NULL && path != NULL) {
        fprintf(stderr, "%s: a PATH or --redis, not both (see --help)\n", prog);
        return 2;
    }
    if (redis != NULL)
        return audit_fleet(redis, json, quiet);
    if (path == NULL) {
        usage(stderr);
        return 2;
    }

    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        return 2;
    }
    report_t rep = {json ? stderr : stdout, 0};
    hb_journal_audit_t t;
    int rc;
    char journal[4096];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(journal, sizeof journal, "%s/%s", path, HB_JOURNAL_FILE_NAME);
        rc = hb_journal_audit(path, &t, on_violation, &rep);
    } else {
        snprintf(journal, sizeof journal, "%s", path);
        size_t len = 0;
        uint8_t *buf = read_file(path, &len);
        if (buf == NULL) {
            fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
            return 2;
        }
        rc = hb_journal_audit_buf(buf, len, &t, on_violation, &rep);
        free(buf);
    }
    if (rc < 0) {
        /* hb_journal_audit's reason names the file already; hb_journal_audit_buf's does not. */
        if (S_ISDIR(sb.st_mode) && t.errstr[0] != '\0')
            fprintf(stderr, "%s: %s\n", prog, t.errstr);
        else
            fprintf(stderr, "%s: %s: %s\n", prog, journal,
                    t.errstr[0] != '\0' ? t.errstr : hb_strerror(rc));
        return 2;
    }
    if (t.torn)
        fprintf(stderr,
                "%s: warning: %s ends in a torn record at offset %zu (%zu bytes): not audited; "
                "the ledger truncates it at its next open\n",
                prog, journal, t.torn_offset, t.size - t.torn_offset);
    if (json)
        print_json(journal, &t);
    else if (!quiet)
        print_text(journal, &t);
    return t.violations == 0 ? 0 : 1;
}
