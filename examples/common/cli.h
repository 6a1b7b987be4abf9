/* Command-line helpers shared by the example programs: numbers, HOST:PORT, tokens, open-file
 * limits. */
#ifndef HB_EXAMPLES_CLI_H
#define HB_EXAMPLES_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Parse a decimal unsigned integer in [min, max]. On failure prints "<prog>: <flag>: ..." to
 * stderr and returns -1; 0 on success. */
int cli_u64(const char *prog, const char *flag, const char *text, uint64_t min, uint64_t max,
            uint64_t *out);

/* Parse "HOST:PORT" (an IPv4 literal, or [IPv6]:PORT) into host and port with the library's
 * parser (hb_addr_parse); port 0 allowed only when allow_zero. Prints an error naming flag and
 * returns -1 on failure. */
int cli_endpoint(const char *prog, const char *flag, const char *text, char *host, size_t host_len,
                 int *port, int allow_zero);

/* Raise the soft open-file limit to the hard one; returns the soft limit in force afterwards. */
uint64_t cli_raise_nofile(void);

/* The value following argv[*i] for a flag, or NULL (with an error printed) when missing. */
const char *cli_value(const char *prog, int argc, char **argv, int *i);

/* Check a bearer-token value for flag: text itself, or NULL with an error printed when it is empty
 * ("<prog>: <flag> needs a non-empty value": an empty token would protect nothing, and an unset
 * shell variable must not turn authentication off) or not a token hb_http accepts. */
const char *cli_token(const char *prog, const char *flag, const char *text);

#endif /* HB_EXAMPLES_CLI_H */
