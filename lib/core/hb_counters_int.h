/* The counters module's internals shared with the monitor's renderers and the server's routes: a
 * bounded text builder and the library's one Prometheus writer. Not installed, not API. */
#ifndef HB_COUNTERS_INT_H
#define HB_COUNTERS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hb_internal.h"
#include "hongbao/counters.h"

/* Whether renderers show slot idx for a reporter of type type: named for it
 * (hb_counter_name_for) and a quantity (not HB_COUNTER_COMBINE_IDENTITY). */
bool hb__counter_shown(uint64_t type, unsigned idx);
/* Whether a renderer shows slot idx of a report of type: a slot of the catalogue it shows
 * (hb__counter_shown), or an application slot named in names (may be NULL); its name and help
 * then in *name and *help. */
bool hb__slot_label(uint64_t type, unsigned idx, const hb_counter_names_t *names, const char **name,
                    const char **help);

/* A bounded output string over a caller's buffer: the appends stop at the first one that does not
 * fit (one byte is always kept for the NUL), and nothing is ever written at or past cap. */
typedef struct hb__text {
    char *p;
    size_t cap;
    size_t len;
    bool overflow;
} hb__text_t;

/* Start writing into buf[0..cap); cap 0 is an overflow from the start (buf may then be NULL). */
void hb__text_init(hb__text_t *o, char *buf, size_t cap);
void hb__text_mem(hb__text_t *o, const char *s, size_t n);
void hb__text_str(hb__text_t *o, const char *s);
void hb__text_u64(hb__text_t *o, uint64_t v);
void hb__text_fmt(hb__text_t *o, const char *fmt, ...) HB_PRINTF(2, 3);
/* NUL-terminate and return the length; on overflow HB_ENOBUFS, leaving "" when cap > 0. */
int hb__text_finish(hb__text_t *o);

/* A Prometheus metric family: its name and its HELP text, each the concatenation of up to four
 * parts (the first NULL part ends it), and its type ("counter" or "gauge"). The caller keeps the
 * texts to the exposition format: a name of [a-zA-Z_:][a-zA-Z0-9_:]*, a help text with no
 * backslash and no newline. With micro, the samples' values are microseconds, written in seconds
 * (Prometheus's base unit) with six decimals. */
typedef struct hb__prom_family {
    const char *name[4];
    const char *help[4];
    const char *type;
    bool micro;
} hb__prom_family_t;

/* One sample: labels NULL for none, else the pairs without braces ("status=\"complete\""). */
typedef struct hb__prom_sample {
    const char *labels;
    uint64_t value;
} hb__prom_sample_t;

/* The library's one Prometheus writer (text format 0.0.4): family f's "# HELP" and "# TYPE"
 * lines, then one line per sample, "<name> <value>" or "<name>{<labels>} <value>"; every line ends
 * in "\n". Used by hb_report_format_prometheus, the server's /metrics and the monitor's. */
void hb__prom_write(hb__text_t *o, const hb__prom_family_t *f, const hb__prom_sample_t *samples,
                    size_t n);
/* Its two halves, for a family whose samples are produced one at a time: the "# HELP" and
 * "# TYPE" lines, then each sample's line. */
void hb__prom_header(hb__text_t *o, const hb__prom_family_t *f);
void hb__prom_sample(hb__text_t *o, const hb__prom_family_t *f, const hb__prom_sample_t *sample);

/* Report r as Prometheus families with names prefixed "<prefix>_": "report_second" (gauge), then
 * for each slot of the reference's, and with own also each slot of r->type's own (the host's
 * among them) and each application slot named in names (may be NULL), in slot order, a counter
 * "<name>_total" (cumulative) and a gauge "<name>_per_second" (second r->second), their HELP the
 * catalogue's or the name's. hb_report_format_prometheus is this without own. */
void hb__report_prometheus(hb__text_t *o, const hb_report_t *r, const char *prefix, bool own,
                           const hb_counter_names_t *names);

/* Report r as hb_report_format_json's JSON object: the reference's slots, and with own the same
 * slots as hb__report_prometheus. */
void hb__report_json(hb__text_t *o, const hb_report_t *r, bool own,
                     const hb_counter_names_t *names);

#endif /* HB_COUNTERS_INT_H */
