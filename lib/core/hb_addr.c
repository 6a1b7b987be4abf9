/* Endpoints as text: "HOST:PORT" and IP address literals, checked over spans of the caller's text
 * (no copy until the host is known good, no allocation). */
#include "hongbao/addr.h"

#include <string.h>

/* A zone (an interface name or number) is at most this long: IF_NAMESIZE less its NUL. */
#define ZONE_MAX 15
#define PORT_MAX 65535u

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_zone_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '_' || c == '-';
}

/* Whether s[0, n) is dotted decimal: four numbers 0..255 without leading zeros, joined by dots. */
static int ipv4_span(const char *s, size_t n)
{
    size_t i = 0;
    for (unsigned parts = 1;; parts++) {
        size_t start = i;
        unsigned value = 0;
        while (i < n && is_digit(s[i])) {
            value = value * 10 + (unsigned)(s[i] - '0');
            if (value > 255 || (i > start && s[start] == '0'))
                return 0;
            i++;
        }
        if (i == start)
            return 0;
        if (i == n)
            return parts == 4;
        if (s[i] != '.' || parts == 4)
            return 0;
        i++;
    }
}

/* Whether s[0, n) is an IPv6 address in a text form of RFC 4291 section 2.2: eight groups of 1 to
 * 4 hex digits joined by colons, or fewer with one "::" standing for at least one group of zeros,
 * the last two groups possibly written as a dotted-decimal IPv4 address. */
static int ipv6_span(const char *s, size_t n)
{
    size_t i = 0;
    unsigned groups = 0;
    int compressed = 0;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        compressed = 1;
        i = 2;
        if (i == n)
            return 1;
    }
    for (;;) {
        size_t start = i;
        while (i < n && is_hex(s[i]) && i - start < 5)
            i++;
        if (i < n && s[i] == '.') {
            /* A dotted quad: the last two groups, up to the end. */
            if (compressed ? groups + 2 > 7 : groups + 2 != 8)
                return 0;
            return ipv4_span(s + start, n - start);
        }
        if (i == start || i - start > 4)
            return 0;
        groups++;
        if (i == n)
            break;
        if (s[i] != ':' || ++i == n)
            return 0;
        if (s[i] == ':') {
            if (compressed)
                return 0;
            compressed = 1;
            if (++i == n)
                break;
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

/* hb_addr_family over s[0, n). */
static int family_span(const char *s, size_t n)
{
    if (ipv4_span(s, n))
        return HB_ADDR_IPV4;
    const char *zone = memchr(s, '%', n);
    if (zone != NULL) {
        size_t address = (size_t)(zone - s), zone_len = n - address - 1;
        if (zone_len == 0 || zone_len > ZONE_MAX)
            return 0;
        for (size_t i = 0; i < zone_len; i++) {
            if (!is_zone_char(zone[1 + i]))
                return 0;
        }
        n = address;
    }
    return ipv6_span(s, n) ? HB_ADDR_IPV6 : 0;
}

int hb_addr_family(const char *text)
{
    return text == NULL ? 0 : family_span(text, strlen(text));
}

int hb_addr_parse(const char *text, char *host, size_t host_size, int *port)
{
    if (text == NULL || host == NULL || port == NULL)
        return HB_EINVAL;
    size_t n = strlen(text);
    size_t colon = n;
    while (colon > 0 && text[colon - 1] != ':')
        colon--;
    if (colon == 0)
        return HB_EINVAL;
    colon--; /* text[colon] is the last ':' */

    /* The port: 1 or more digits up to the end, at most 65535. */
    unsigned value = 0;
    if (colon + 1 == n)
        return HB_EINVAL;
    for (size_t i = colon + 1; i < n; i++) {
        if (!is_digit(text[i]))
            return HB_EINVAL;
        value = value * 10 + (unsigned)(text[i] - '0');
        if (value > PORT_MAX)
            return HB_EINVAL;
    }

    /* The host, out of its brackets. */
    const char *h = text;
    size_t hl = colon;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (family_span(h, hl) == 0)
        return HB_EINVAL;
    if (hl >= host_size)
        return HB_ENOBUFS;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)value;
    return 0;
}
