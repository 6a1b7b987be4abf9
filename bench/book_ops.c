/* book_ops: the cost of the send-envelope book's operations (the claim path), in nanoseconds per
 * operation, through the public API only, so the same source measures any version of the book.
 *
 *   book_ops [ENVELOPES] [STRIDE] [ROUNDS]      (default 10000 1 20)
 *
 * Each round: ENVELOPES adds of ids HB_SEND_ENVELOPE_ID_BASE + k * STRIDE (a SET of a server with
 * STRIDE SETs sees every STRIDE-th id) to a book sized for them (hb_book_init(&b, ENVELOPES), as
 * a SET's book starts sized), and then to a fresh book that grows from the smallest table
 * (hb_book_init(&b, 0)); in the second, every share claimed in a shuffled order, a find of every
 * id, a find of as many absent ids, then expiry of everything. Prints the median over the rounds
 * of each phase's ns per operation.
 * Build against the core alone, e.g. from a build tree _build/rel:
 *   cc -O2 -std=c11 -Iinclude -I_build/rel/include bench/book_ops.c _build/rel/libhongbao-core.a
 * A book that grows frees and allocates tables, and glibc's malloc then moves its mmap and trim
 * thresholds: pin them to compare two builds' adds, e.g.
 *   GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864
 * and for instruction counts per call:
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out ./book_ops 10000 1 3
 *   callgrind_annotate --inclusive=yes cg.out | grep hb_book_ */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hongbao/book.h>

enum { PHASES = 6 };
static const char *const phase_names[PHASES] = {"add-sized", "add-growing", "claim",
                                                "find-hit",  "find-miss",   "expire"};

static uint64_t rng_state = 42;

/* splitmix64: the same sequence on every run. */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static hb_sendenv_t envelope(uint32_t k, uint32_t stride)
{
    hb_sendenv_t e;
    memset(&e, 0, sizeof e);
    e.id = HB_SEND_ENVELOPE_ID_BASE + k * stride;
    e.count = 3;
    for (unsigned r = 0; r < 3; r++) {
        e.recipients[r] = 3 * k + r;
        e.shares[r] = 1 + r;
    }
    e.total = 6;
    e.created_s = k;
    return e;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 10000;
    uint32_t stride = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 1;
    unsigned rounds = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 20;
    if (n == 0 || stride == 0 || rounds == 0 ||
        (uint64_t)n * stride * 2 > UINT32_MAX - HB_SEND_ENVELOPE_ID_BASE) {
        fprintf(stderr, "usage: book_ops [ENVELOPES] [STRIDE] [ROUNDS] (ids must fit 32 bits)\n");
        return 2;
    }
    uint32_t *order = malloc((size_t)n * 3 * sizeof *order);
    double *ns = malloc((size_t)rounds * PHASES * sizeof *ns);
    if (order == NULL || ns == NULL)
        return 1;
    uint64_t checksum = 0;
    for (unsigned round = 0; round < rounds; round++) {
        for (uint32_t i = 0; i < 3 * n; i++)
            order[i] = i;
        for (uint32_t i = 3 * n - 1; i > 0; i--) {
            uint32_t j = (uint32_t)(rng_next() % (i + 1));
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        hb_book_t b;
        if (hb_book_init(&b, n) != 0)
            return 1;
        uint64_t ts = now_ns();
        for (uint32_t k = 0; k < n; k++) {
            hb_sendenv_t e = envelope(k, stride);
            if (hb_book_add(&b, &e) != 0)
                return 1;
        }
        uint64_t tg = now_ns();
        hb_book_close(&b);
        if (hb_book_init(&b, 0) != 0)
            return 1;
        uint64_t t0 = now_ns();
        for (uint32_t k = 0; k < n; k++) {
            hb_sendenv_t e = envelope(k, stride);
            if (hb_book_add(&b, &e) != 0)
                return 1;
        }
        uint64_t t1 = now_ns();
        for (uint32_t i = 0; i < 3 * n; i++) {
            uint32_t k = order[i] / 3, r = order[i] % 3, amount = 0;
            if (hb_book_claim(&b, HB_SEND_ENVELOPE_ID_BASE + k * stride, 3 * k + r, &amount) != 0)
                return 1;
            checksum += amount;
        }
        uint64_t t2 = now_ns();
        for (uint32_t i = 0; i < n; i++) {
            const hb_sendenv_t *e =
                hb_book_find(&b, HB_SEND_ENVELOPE_ID_BASE + order[i] / 3 * stride);
            checksum += e != NULL ? e->claimed : 1000;
        }
        uint64_t t3 = now_ns();
        for (uint32_t i = 0; i < n; i++) {
            /* Ids past the last one added, in the same progression. */
            uint32_t id = HB_SEND_ENVELOPE_ID_BASE + (n + order[i] / 3) * stride;
            checksum += hb_book_find(&b, id) != NULL ? 1000 : 0;
        }
        uint64_t t4 = now_ns();
        if (hb_book_expire(&b, UINT64_MAX, NULL, NULL) != n)
            return 1;
        uint64_t t5 = now_ns();
        hb_book_close(&b);
        double *row = &ns[round * PHASES];
        row[0] = (double)(tg - ts) / n;
        row[1] = (double)(t1 - t0) / n;
        row[2] = (double)(t2 - t1) / (3.0 * n);
        row[3] = (double)(t3 - t2) / n;
        row[4] = (double)(t4 - t3) / n;
        row[5] = (double)(t5 - t4) / n;
    }
    printf("book_ops: %u envelopes, stride %u, %u rounds (checksum %llu); median ns/op:", n, stride,
           rounds, (unsigned long long)checksum);
    for (unsigned p = 0; p < PHASES; p++) {
        double col[rounds];
        for (unsigned r = 0; r < rounds; r++)
            col[r] = ns[r * PHASES + p];
        qsort(col, rounds, sizeof col[0], cmp_double);
        printf(" %s %.1f", phase_names[p], col[rounds / 2]);
    }
    printf("\n");
    free(ns);
    free(order);
    return 0;
}
