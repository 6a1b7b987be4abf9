/* libFuzzer target for the kernel statistics parsers (core netdev): /proc/net/dev and
 * /proc/net/route texts of any bytes, in heap blocks of exactly their length (no NUL after them:
 * ASan catches a read past the end), the interface name and the output buffer's size taken from
 * the input. What a parse accepts is checked against the text: the name found at the start of a
 * line (after blanks) and followed by its colon, and the reading's first number where it said.
 *
 * Input: a byte k (the name is the next k % 16 bytes), a byte c (the route name buffer's size,
 * c % 20), then the text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/netdev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_netdev: check failed at line %d: %s\n", __LINE__, #cond);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Whether text[0..len) has a line that starts, after blanks, with name and a colon, and its first
 * number (after blanks) is rx_bytes. */
static int line_of(const char *text, size_t len, const char *name, uint64_t rx_bytes)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && text[i - 1] != '\n')
            continue;
        size_t j = i;
        while (j < len && (text[j] == ' ' || text[j] == '\t'))
            j++;
        if (len - j <= n || memcmp(text + j, name, n) != 0 || text[j + n] != ':')
            continue;
        j += n + 1;
        while (j < len && (text[j] == ' ' || text[j] == '\t'))
            j++;
        uint64_t v = 0;
        while (j < len && text[j] >= '0' && text[j] <= '9')
            v = v * 10 + (uint64_t)(text[j++] - '0');
        if (v == rx_bytes)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t k = data[0] % 16, cap = data[1] % 20;
    if (size < 2 + k)
        return 0;
    char name[16];
    memcpy(name, data + 2, k);
    name[k] = '\0';
    size_t len = size - 2 - k;
    char *text = malloc(len ? len : 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data + 2 + k, len);

    hb_netdev_stats_t s;
    const char *names[] = {name, "lo", "eth0"};
    for (size_t i = 0; i < 3; i++) {
        int r = hb_netdev_parse(text, len, names[i], &s);
        size_t nl = strlen(names[i]);
        if (nl == 0 || nl >= HB_NETDEV_NAME_MAX) {
            FUZZ_CHECK(r == HB_EINVAL);
            continue;
        }
        FUZZ_CHECK(r == 0 || r == HB_ENOENT || r == HB_ERANGE);
        if (r == 0)
            FUZZ_CHECK(line_of(text, len, names[i], s.rx_bytes));
    }

    char *out = cap ? malloc(cap) : NULL;
    int r = hb_netdev_default_route(text, len, out, cap);
    FUZZ_CHECK(r == 0 || r == HB_ENOENT || r == HB_ENOBUFS);
    if (r == 0) {
        size_t n = strlen(out);
        FUZZ_CHECK(n > 0 && n < cap);
        FUZZ_CHECK(memchr(out, ' ', n) == NULL && memchr(out, '\t', n) == NULL);
        int found = 0;
        for (size_t i = 0; i + n <= len && !found; i++)
            found = (i == 0 || text[i - 1] == '\n') && memcmp(text + i, out, n) == 0;
        FUZZ_CHECK(found);
    } else if (r == HB_ENOBUFS && cap > 0) {
        FUZZ_CHECK(out[0] == '\0');
    }
    free(out);
    free(text);
    return 0;
}
