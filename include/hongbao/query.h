/* Query strings ("a=1&b=2", without '?') as HTTP requests carry them: find a parameter,
 * percent-decode it, read it as a bounded decimal integer. Pure string work, part of the core. */
#ifndef HONGBAO_QUERY_H
#define HONGBAO_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The query helpers below are pure functions of their arguments: any thread may call them. */

/* Find parameter name in a raw query string (query, len bytes; "a=1&b=2", without '?'). Pairs
 * are split on '&'; a key is compared with name after percent-decoding ('+' is a space); the
 * first match wins; "name" without '=' has an empty value. Stores the raw, still encoded value in
 * *val (pointing into query) and its length in *val_len. Returns 0, HB_ENOENT (absent), HB_EINVAL
 * (NULL name or out pointer). */
HB_EXTERN int hb_query_get(const char *query, size_t len, const char *name, const char **val,
                           size_t *val_len);

/* Percent-decode len bytes of src into dst ('+' becomes a space), NUL-terminated. Returns the
 * decoded length (without the NUL), HB_EINVAL (a '%' not followed by two hex digits, NULL dst,
 * len above INT_MAX), HB_ENOBUFS (dst, size bytes, too small for the result and its NUL). */
HB_EXTERN int hb_query_percent_decode(const char *src, size_t len, char *dst, size_t size);

/* Find parameter name as hb_query_get does and percent-decode its value into buf (size
 * bytes), NUL-terminated; the decoded length goes to *out_len if not NULL. Returns 0,
 * HB_ENOENT (absent), HB_EINVAL (bad percent-encoding), HB_ENOBUFS (buf too small). */
HB_EXTERN int hb_query_copy(const char *query, size_t len, const char *name, char *buf, size_t size,
                            size_t *out_len);

/* Parse parameter name (percent-decoded) as a decimal unsigned integer in [min, max] into *out.
 * Returns 0, HB_ENOENT (absent), HB_EINVAL (empty, not all digits: a sign, a space, trailing
 * junk; or min > max), HB_ERANGE (above 2^64-1, or outside [min, max]). *out is written only on
 * success. */
HB_EXTERN int hb_query_u64(const char *query, size_t len, const char *name, uint64_t min,
                           uint64_t max, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_QUERY_H */
