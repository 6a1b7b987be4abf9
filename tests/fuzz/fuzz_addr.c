/* libFuzzer target for the address parser: hb_addr_family on the input as a string, compared
 * with the C library's inet_pton (the zone taken off, as libuv does); hb_addr_parse on it into a
 * host buffer of the size the first byte says, allocated to exactly that size so that ASan
 * catches a write past it; and what a parse accepts, written back as "[host]:port", parsed again
 * to the same. The string is copied into a heap block of exactly its length plus the NUL, so a
 * read past the NUL is caught too. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash libFuzzer reports) when an invariant breaks; say which. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_addr: check failed at line %d: %s\n", __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* What inet_pton says of text: HB_ADDR_IPV4, HB_ADDR_IPV6 or 0; -1 when text has a zone (a '%'),
 * which inet_pton does not know. */
static int libc_family(const char *text)
{
    unsigned char buf[16];
    if (strchr(text, '%') != NULL)
        return -1;
    if (inet_pton(AF_INET, text, buf) == 1)
        return HB_ADDR_IPV4;
    return inet_pton(AF_INET6, text, buf) == 1 ? HB_ADDR_IPV6 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t host_size = data[0] % (HB_ADDR_HOST_SIZE + 2);
    data++;
    size--;
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    int family = hb_addr_family(text);
    FUZZ_CHECK(family == 0 || family == HB_ADDR_IPV4 || family == HB_ADDR_IPV6);
    int want = libc_family(text);
    FUZZ_CHECK(want < 0 || family == want);

    char *host = malloc(host_size == 0 ? 1 : host_size);
    FUZZ_CHECK(host != NULL);
    int port = -1;
    int rc = hb_addr_parse(text, host, host_size, &port);
    FUZZ_CHECK(rc == 0 || rc == HB_EINVAL || rc == HB_ENOBUFS);
    if (rc == 0) {
        size_t hl = strlen(host);
        FUZZ_CHECK(hl < host_size);
        FUZZ_CHECK(hb_addr_family(host) != 0);
        FUZZ_CHECK(port >= 0 && port <= 65535);
        char again[HB_ADDR_HOST_SIZE + 16];
        char back[HB_ADDR_HOST_SIZE];
        int port2 = -1;
        snprintf(again, sizeof again, "[%s]:%d", host, port);
        FUZZ_CHECK(hb_addr_parse(again, back, sizeof back, &port2) == 0);
        FUZZ_CHECK(strcmp(back, host) == 0 && port2 == port);
    } else {
        FUZZ_CHECK(port == -1);
    }
    if (rc == HB_ENOBUFS) {
        /* The same text parses with room enough. */
        char roomy[HB_ADDR_HOST_SIZE];
        FUZZ_CHECK(hb_addr_parse(text, roomy, sizeof roomy, &port) == 0);
        FUZZ_CHECK(strlen(roomy) >= host_size);
    }
    free(host);
    free(text);
    return 0;
}
