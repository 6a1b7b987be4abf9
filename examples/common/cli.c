/* Command-line helpers shared by the example programs. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <hongbao.h>

int cli_u64(const char *prog, const char *flag, const char *text, uint64_t min, uint64_t max,
            uint64_t *out)
{
    char *end;
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        fprintf(stderr, "%s: %s: '%s' is not a non-negative integer\n", prog, flag,
                text ? text : "");
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "%s: %s: '%s' is not a non-negative integer\n", prog, flag, text);
        return -1;
    }
    if (errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "%s: %s: %s is out of range [%llu, %llu]\n", prog, flag, text,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_endpoint(const char *prog, const char *flag, const char *text, char *host, size_t host_len,
                 int *port, int allow_zero)
{
    int p = 0;
    int r = hb_addr_parse(text, host, host_len, &p);
    if (r == HB_ENOBUFS) {
        fprintf(stderr, "%s: %s: host too long\n", prog, flag);
        return -1;
    }
    if (r != 0) {
        fprintf(stderr,
                "%s: %s: '%s' is not HOST:PORT (an IPv4 address or [IPv6 address], a port "
                "0..65535)\n",
                prog, flag, text);
        return -1;
    }
    if (p == 0 && !allow_zero) {
        fprintf(stderr, "%s: %s: '%s': port 0 is not allowed here\n", prog, flag, text);
        return -1;
    }
    *port = p;
    return 0;
}

uint64_t cli_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

const char *cli_value(const char *prog, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value (see --help)\n", prog, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

const char *cli_token(const char *prog, const char *flag, const char *text)
{
    if (text == NULL || text[0] == '\0') {
        fprintf(stderr, "%s: %s needs a non-empty value\n", prog, flag);
        return NULL;
    }
    if (strlen(text) > HB_HTTP_TOKEN_MAX || strpbrk(text, " \t\r\n") != NULL) {
        fprintf(stderr, "%s: %s: a token is 1..%d bytes without spaces or line breaks\n", prog,
                flag, HB_HTTP_TOKEN_MAX);
        return NULL;
    }
    return text;
}
