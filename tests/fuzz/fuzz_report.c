/* libFuzzer target for the monitor report: decode arbitrary bytes, re-encode what decodes, and
 * render reports as Prometheus text and JSON into exact-size and too-small heap buffers, checking
 * the output against an independent rendering of the same values. (Adding reports up is the
 * aggregate module's, unit-tested on its own; it is not fuzzed here.)
 *
 * Input: a report's 976 bytes (shorter is zero-padded for rendering; the type is forced valid
 * there), then optionally a byte choosing how the rest becomes the Prometheus prefix (odd:
 * mapped onto metric-name characters, even: as it is) and the prefix. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/counters.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash libFuzzer reports) when an invariant breaks; say which. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_report: check failed at line %d: %s\n", __LINE__, #cond);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Longest prefix taken from the input: long enough to push the Prometheus text past 32 KiB. */
#define FUZZ_PREFIX_MAX 255

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* A heap block of exactly cap bytes, so that ASan reports any write at or past buf + cap (NULL
 * is allowed for 0, which the renderers accept too). */
static char *exact_alloc(size_t cap)
{
    char *p = malloc(cap);
    FUZZ_CHECK(p != NULL || cap == 0);
    return p;
}

/* The header's rule for a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static bool is_metric_name(const char *s)
{
    if (s[0] == '\0')
        return false;
    for (size_t i = 0; s[i] != '\0'; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ':' ||
                  (i > 0 && ch >= '0' && ch <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* Decode the bytes as they are: the result follows from the length and the type field alone,
 * and a decoded report encodes back to the same bytes. */
static void check_decode(const uint8_t *data, size_t size)
{
    hb_report_t r, untouched;
    memset(&r, 0xA5, sizeof r);
    untouched = r;
    int rc = hb_report_decode(data, size, &r);
    if (size != HB_REPORT_SIZE) {
        FUZZ_CHECK(rc == HB_EREPORT);
        FUZZ_CHECK(memcmp(&r, &untouched, sizeof r) == 0);
        return;
    }
    uint64_t type = be64(data + 8);
    if (type != HB_REPORTER_CLIENT && type != HB_REPORTER_SERVER) {
        FUZZ_CHECK(rc == HB_EREPORT);
        FUZZ_CHECK(memcmp(&r, &untouched, sizeof r) == 0);
        return;
    }
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(r.second == be64(data) && r.type == type);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        FUZZ_CHECK(r.per_second[i] == be64(data + 16 + 8 * i));
        FUZZ_CHECK(r.cumulative[i] == be64(data + 16 + 8 * HB_COUNTER_SLOTS + 8 * i));
    }
    uint8_t again[HB_REPORT_SIZE];
    hb_report_encode(&r, again);
    FUZZ_CHECK(memcmp(again, data, HB_REPORT_SIZE) == 0);
}

/* ---- an independent rendering to compare with ---- */

/* The name of slot i when it is one of the reference's: the slots the report renderers show. */
static const char *reference_name(unsigned i)
{
    const hb_counter_info_t *info = hb_counter_info(i);
    return info != NULL && info->owner == HB_COUNTER_OWNER_REFERENCE ? info->name : NULL;
}

typedef struct text {
    char *p;
    size_t len, cap;
} text_t;

static void text_str(text_t *t, const char *s)
{
    size_t n = strlen(s);
    FUZZ_CHECK(n < t->cap - t->len);
    memcpy(t->p + t->len, s, n + 1);
    t->len += n;
}

static void text_u64(text_t *t, uint64_t v)
{
    int n = snprintf(t->p + t->len, t->cap - t->len, "%" PRIu64, v);
    FUZZ_CHECK(n > 0 && (size_t)n < t->cap - t->len);
    t->len += (size_t)n;
}

static void json_slots(text_t *t, const uint64_t *values)
{
    const char *sep = "{";
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *name = reference_name(i);
        if (name == NULL)
            continue;
        text_str(t, sep);
        text_str(t, "\"");
        text_str(t, name);
        text_str(t, "\":");
        text_u64(t, values[i]);
        sep = ",";
    }
    text_str(t, "}");
}

/* The JSON the header specifies for r, into t. */
static void json_expected(const hb_report_t *r, text_t *t)
{
    text_str(t, "{\"second\":");
    text_u64(t, r->second);
    text_str(t, r->type == HB_REPORTER_SERVER ? ",\"type\":\"server\"" : ",\"type\":\"client\"");
    text_str(t, ",\"per_second\":");
    json_slots(t, r->per_second);
    text_str(t, ",\"cumulative\":");
    json_slots(t, r->cumulative);
    text_str(t, "}");
}

/* Walk one Prometheus family at *pos in out: "# HELP <m> <text>\n# TYPE <m> <type>\n<m> <v>\n"
 * where <m> is prefix_name suffix. */
static void prom_family(const char *out, size_t len, size_t *pos, const char *prefix,
                        const char *name, const char *suffix, const char *type, uint64_t value)
{
    char metric[FUZZ_PREFIX_MAX + 64];
    char line[2 * sizeof metric + 64];
    int mn = snprintf(metric, sizeof metric, "%s_%s%s", prefix, name, suffix);
    FUZZ_CHECK(mn > 0 && (size_t)mn < sizeof metric);

    /* HELP: the metric, a space, a non-empty help text, a newline. */
    int n = snprintf(line, sizeof line, "# HELP %s ", metric);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof line);
    FUZZ_CHECK(len - *pos > (size_t)n && memcmp(out + *pos, line, (size_t)n) == 0);
    *pos += (size_t)n;
    const char *nl = memchr(out + *pos, '\n', len - *pos);
    FUZZ_CHECK(nl != NULL && nl > out + *pos);
    *pos = (size_t)(nl - out) + 1;

    n = snprintf(line, sizeof line, "# TYPE %s %s\n%s %" PRIu64 "\n", metric, type, metric, value);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof line);
    FUZZ_CHECK(len - *pos >= (size_t)n && memcmp(out + *pos, line, (size_t)n) == 0);
    *pos += (size_t)n;
}

/* Check out[0..len) is the Prometheus text the header specifies for r. */
static void prom_check(const hb_report_t *r, const char *prefix, const char *out, size_t len)
{
    size_t pos = 0;
    prom_family(out, len, &pos, prefix, "report_second", "", "gauge", r->second);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const char *name = reference_name(i);
        if (name == NULL)
            continue;
        prom_family(out, len, &pos, prefix, name, "_total", "counter", r->cumulative[i]);
        prom_family(out, len, &pos, prefix, name, "_per_second", "gauge", r->per_second[i]);
    }
    FUZZ_CHECK(pos == len);
}

/* ---- buffer sizes ---- */

typedef int (*render_fn)(const hb_report_t *r, const char *prefix, char *buf, size_t cap);

static int render_prom(const hb_report_t *r, const char *prefix, char *buf, size_t cap)
{
    return hb_report_format_prometheus(r, prefix, buf, cap);
}

static int render_json(const hb_report_t *r, const char *prefix, char *buf, size_t cap)
{
    (void)prefix;
    return hb_report_format_json(r, buf, cap);
}

/* Render into a heap buffer of exactly cap bytes: the result and (when it fits) the text must
 * be those of the full rendering want[0..n). */
static void render_cap(render_fn fn, const hb_report_t *r, const char *prefix, const char *want,
                       size_t n, size_t cap)
{
    char *buf = exact_alloc(cap);
    if (cap > 0)
        memset(buf, 'x', cap);
    int rc = fn(r, prefix, buf, cap);
    if (cap > n) {
        FUZZ_CHECK(rc >= 0 && (size_t)rc == n);
        FUZZ_CHECK(memcmp(buf, want, n + 1) == 0);
    } else {
        FUZZ_CHECK(rc == HB_ENOBUFS);
        if (cap > 0)
            FUZZ_CHECK(buf[0] == '\0');
    }
    free(buf);
}

/* Render with a buffer of max bytes, then of exactly the length + 1, the length, a size taken
 * from the input, 1 and 0 (and NULL). Returns the full text (caller frees) and its length. */
static char *render_sizes(render_fn fn, const hb_report_t *r, const char *prefix, size_t max,
                          uint64_t pick, size_t *len)
{
    char *full = exact_alloc(max);
    int rc = fn(r, prefix, full, max);
    FUZZ_CHECK(rc >= 0 && (size_t)rc < max);
    size_t n = (size_t)rc;
    FUZZ_CHECK(strlen(full) == n);

    render_cap(fn, r, prefix, full, n, n + 1);
    render_cap(fn, r, prefix, full, n, n);
    render_cap(fn, r, prefix, full, n, (size_t)(pick % (n + 1)));
    render_cap(fn, r, prefix, full, n, 1);
    render_cap(fn, r, prefix, full, n, 0);
    FUZZ_CHECK(fn(r, prefix, NULL, 0) == HB_ENOBUFS);
    FUZZ_CHECK(fn(r, prefix, NULL, 1) == HB_EINVAL);
    *len = n;
    return full;
}

/* The prefix the tail of the input asks for: none (the default), its bytes as they are (maybe
 * not a metric name), or its bytes mapped onto metric-name characters. */
static const char *pick_prefix(const uint8_t *tail, size_t n, char *out)
{
    if (n == 0)
        return NULL;
    size_t len = n - 1 < FUZZ_PREFIX_MAX ? n - 1 : FUZZ_PREFIX_MAX;
    memcpy(out, tail + 1, len);
    out[len] = '\0';
    if (tail[0] % 2 == 1) {
        static const char set[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789";
        for (size_t i = 0; i < len; i++)
            out[i] = set[(uint8_t)out[i] % (i == 0 ? 54 : sizeof set - 1)];
    }
    return out;
}

static void check_render(const hb_report_t *r, const char *prefix, uint64_t pick)
{
    /* Prometheus. */
    const char *pfx = prefix != NULL ? prefix : "hongbao";
    if (!is_metric_name(pfx)) {
        char small[64];
        FUZZ_CHECK(hb_report_format_prometheus(r, prefix, small, sizeof small) == HB_EINVAL);
    } else {
        size_t max = HB_REPORT_PROMETHEUS_MAX(strlen(pfx));
        size_t n;
        char *text = render_sizes(render_prom, r, prefix, max, pick, &n);
        prom_check(r, pfx, text, n);
        free(text);
    }

    /* JSON. */
    size_t n;
    char *json = render_sizes(render_json, r, NULL, HB_REPORT_JSON_MAX, pick >> 16, &n);
    char want[HB_REPORT_JSON_MAX + 64];
    text_t t = {want, 0, sizeof want};
    json_expected(r, &t);
    FUZZ_CHECK(t.len == n && memcmp(want, json, n) == 0);
    free(json);

    /* A type neither client nor server is refused. */
    hb_report_t bad = *r;
    bad.type = 2 + r->second % 1000;
    char small[64];
    FUZZ_CHECK(hb_report_format_json(&bad, small, sizeof small) == HB_EINVAL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_decode(data, size);

    /* A report from the first HB_REPORT_SIZE bytes (zero-padded), its type forced valid when it
     * is not: the renderers see every input, whatever its length. */
    uint8_t wire[HB_REPORT_SIZE] = {0};
    memcpy(wire, data, size < sizeof wire ? size : sizeof wire);
    hb_report_t r;
    uint64_t type = be64(wire + 8);
    int rc = hb_report_decode(wire, sizeof wire, &r);
    FUZZ_CHECK((rc == 0) == (type == HB_REPORTER_CLIENT || type == HB_REPORTER_SERVER));
    if (rc != 0) {
        FUZZ_CHECK(rc == HB_EREPORT);
        memset(wire + 8, 0, 7);
        wire[15] &= 1;
        FUZZ_CHECK(hb_report_decode(wire, sizeof wire, &r) == 0);
    }

    /* Encode and decode round trip of the struct. */
    uint8_t enc[HB_REPORT_SIZE];
    hb_report_t back;
    hb_report_encode(&r, enc);
    FUZZ_CHECK(memcmp(enc, wire, sizeof enc) == 0);
    FUZZ_CHECK(hb_report_decode(enc, sizeof enc, &back) == 0);
    FUZZ_CHECK(memcmp(&back, &r, sizeof r) == 0);

    char prefix_buf[FUZZ_PREFIX_MAX + 1];
    const uint8_t *tail = size > HB_REPORT_SIZE ? data + HB_REPORT_SIZE : NULL;
    const char *prefix = pick_prefix(tail, tail != NULL ? size - HB_REPORT_SIZE : 0, prefix_buf);
    check_render(&r, prefix, r.per_second[0] ^ r.cumulative[HB_COUNTER_SLOTS - 1]);

    FUZZ_CHECK(hb_counter_name(HB_COUNTER_SLOTS) == NULL);
    return 0;
}
