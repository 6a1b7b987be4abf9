/* Helpers the library's modules share; not installed, not part of the API. */
#ifndef HB_INTERNAL_H
#define HB_INTERNAL_H

#include <stdarg.h>

#include "hongbao/common.h"

#if defined(__GNUC__)
#define HB_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HB_PRINTF(f, a)
#endif

/* Format one line (at most 511 bytes, truncated beyond) and hand it to log(arg, line); does
 * nothing when log is NULL. */
void hb__vlogf(hb_log_cb log, void *arg, const char *fmt, va_list ap) HB_PRINTF(3, 0);

/* The same with the arguments inline. */
void hb__vlogf_line(hb_log_cb log, void *arg, const char *fmt, ...) HB_PRINTF(3, 4);

#endif /* HB_INTERNAL_H */
