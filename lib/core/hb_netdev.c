/* The kernel's network interface statistics: /proc/net/dev and /proc/net/route parsed in place
 * (bounded by the length given, no allocation), the difference of two readings, the identity of an
 * interface of a host, and the counting of both into the host's NIC slots. */
#include "hongbao/netdev.h"

#include <string.h>

#include "hb_internal.h"

/* The numbers read from an interface's line of /proc/net/dev: received bytes, packets, errs, drop,
 * fifo, frame, compressed, multicast; transmitted bytes, packets. */
#define DEV_FIELDS 10

/* A cursor over text[0..len). */
typedef struct cursor {
    const char *p, *end;
} cursor_t;

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

static void skip_spaces(cursor_t *c)
{
    while (c->p < c->end && is_space(*c->p))
        c->p++;
}

/* The end of the line at c->p (the newline, or text + len). */
static const char *line_end(const cursor_t *c)
{
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    return nl != NULL ? nl : c->end;
}

/* A number in base 10 or 16 at c->p, up to the line's end `lim`, into *v. Returns 0, or -1 when
 * there is no digit or it passes UINT64_MAX. */
static int number(cursor_t *c, const char *lim, unsigned base, uint64_t *v)
{
    uint64_t x = 0;
    const char *start = c->p;
    while (c->p < lim) {
        char ch = *c->p;
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (base == 16 && ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (base == 16 && ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            break;
        if (x > (UINT64_MAX - d) / base)
            return -1;
        x = x * base + d;
        c->p++;
    }
    if (c->p == start)
        return -1;
    *v = x;
    return 0;
}

int hb_netdev_parse(const char *text, size_t len, const char *name, hb_netdev_stats_t *out)
{
    if ((text == NULL && len > 0) || name == NULL || out == NULL)
        return HB_EINVAL;
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen >= HB_NETDEV_NAME_MAX)
        return HB_EINVAL;
    if (len == 0)
        return HB_ENOENT; /* (and text may be NULL) */
    cursor_t c = {text, text + len};
    while (c.p < c.end) {
        const char *lim = line_end(&c);
        skip_spaces(&c);
        const char *colon = memchr(c.p, ':', (size_t)(lim - c.p));
        if (colon == NULL || (size_t)(colon - c.p) != nlen || memcmp(c.p, name, nlen) != 0) {
            c.p = lim < c.end ? lim + 1 : lim;
            continue;
        }
        c.p = colon + 1;
        uint64_t f[DEV_FIELDS];
        for (unsigned i = 0; i < DEV_FIELDS; i++) {
            skip_spaces(&c);
            if (number(&c, lim, 10, &f[i]) != 0 || (c.p < lim && !is_space(*c.p)))
                return HB_ERANGE;
        }
        out->rx_bytes = f[0];
        out->rx_packets = f[1];
        out->tx_bytes = f[8];
        out->tx_packets = f[9];
        return 0;
    }
    return HB_ENOENT;
}

/* One route line's fields: the name, and the hexadecimal destination, flags, metric and mask. */
static int route_line(cursor_t *c, const char *lim, const char **name, size_t *nlen, uint64_t *dest,
                      uint64_t *flags, uint64_t *metric, uint64_t *mask)
{
    /* Iface Destination Gateway Flags RefCnt Use Metric Mask */
    uint64_t v[7];
    *name = c->p;
    while (c->p < lim && !is_space(*c->p) && *c->p != '\0')
        c->p++;
    *nlen = (size_t)(c->p - *name);
    if (*nlen == 0)
        return -1;
    for (unsigned i = 0; i < 7; i++) {
        skip_spaces(c);
        /* RefCnt, Use and Metric are decimal, the rest hexadecimal. */
        unsigned base = i >= 3 && i <= 5 ? 10 : 16;
        if (number(c, lim, base, &v[i]) != 0 || (c->p < lim && !is_space(*c->p)))
            return -1;
    }
    *dest = v[0];
    *flags = v[2];
    *metric = v[5];
    *mask = v[6];
    return 0;
}

int hb_netdev_default_route(const char *text, size_t len, char *name, size_t cap)
{
    if ((text == NULL && len > 0) || (name == NULL && cap > 0))
        return HB_EINVAL;
    const char *best = NULL;
    size_t best_len = 0;
    uint64_t best_metric = 0;
    cursor_t c = {text, text != NULL ? text + len : NULL};
    while (c.p < c.end) {
        const char *lim = line_end(&c);
        const char *ifname;
        size_t nlen;
        uint64_t dest, flags, metric, mask;
        if (route_line(&c, lim, &ifname, &nlen, &dest, &flags, &metric, &mask) == 0 && dest == 0 &&
            mask == 0 && (flags & 1) != 0 && (best == NULL || metric < best_metric)) {
            best = ifname;
            best_len = nlen;
            best_metric = metric;
        }
        c.p = lim < c.end ? lim + 1 : lim;
    }
    if (best == NULL)
        return HB_ENOENT;
    if (best_len >= cap) {
        if (cap > 0)
            name[0] = '\0';
        return HB_ENOBUFS;
    }
    memcpy(name, best, best_len);
    name[best_len] = '\0';
    return 0;
}

static uint64_t minus(uint64_t cur, uint64_t prev)
{
    return cur >= prev ? cur - prev : 0;
}

void hb_netdev_delta(const hb_netdev_stats_t *prev, const hb_netdev_stats_t *cur,
                     hb_netdev_stats_t *out)
{
    hb_netdev_stats_t d = {
        .rx_packets = minus(cur->rx_packets, prev->rx_packets),
        .tx_packets = minus(cur->tx_packets, prev->tx_packets),
        .rx_bytes = minus(cur->rx_bytes, prev->rx_bytes),
        .tx_bytes = minus(cur->tx_bytes, prev->tx_bytes),
    };
    *out = d;
}

uint64_t hb_netdev_host_id(const char *machine, uint64_t netns, const char *name)
{
    uint64_t h = HB__FNV_OFFSET;
    if (machine != NULL)
        h = hb__fnv1a64(h, machine, strlen(machine));
    unsigned char ns[9] = {0}; /* a separator, then netns little-endian */
    for (unsigned i = 0; i < 8; i++)
        ns[1 + i] = (unsigned char)(netns >> (8 * i));
    h = hb__fnv1a64(h, ns, sizeof ns);
    if (name != NULL)
        h = hb__fnv1a64(h, name, strlen(name));
    return h != 0 ? h : 1;
}

void hb_netdev_count(hb_counters_t *c, unsigned shard, uint64_t second,
                     const hb_netdev_stats_t *delta)
{
    hb_counters_add(c, shard, HB_CTR_NIC_RX_PACKETS, second, delta->rx_packets);
    hb_counters_add(c, shard, HB_CTR_NIC_TX_PACKETS, second, delta->tx_packets);
    hb_counters_add(c, shard, HB_CTR_NIC_RX_BYTES, second, delta->rx_bytes);
    hb_counters_add(c, shard, HB_CTR_NIC_TX_BYTES, second, delta->tx_bytes);
}

void hb_netdev_count_interval(hb_counters_t *c, unsigned shard, uint64_t from_ms, uint64_t to_ms,
                              const hb_netdev_stats_t *delta)
{
    uint64_t len = to_ms > from_ms ? to_ms - from_ms : 0;
    uint64_t n = len < 1500 ? 1 : (len + 500) / 1000;
    uint64_t last = (to_ms - len / (2 * n)) / 1000; /* the middle of the last n-th */
    if (n > HB_COUNTERS_HISTORY)
        n = HB_COUNTERS_HISTORY; /* older seconds would count in the cumulative total only */
    hb_netdev_stats_t each = {delta->rx_packets / n, delta->tx_packets / n, delta->rx_bytes / n,
                              delta->tx_bytes / n};
    for (uint64_t k = 0; k + 1 < n; k++)
        hb_netdev_count(c, shard, last - (n - 1) + k, &each);
    hb_netdev_stats_t rest = {delta->rx_packets - each.rx_packets * (n - 1),
                              delta->tx_packets - each.tx_packets * (n - 1),
                              delta->rx_bytes - each.rx_bytes * (n - 1),
                              delta->tx_bytes - each.tx_bytes * (n - 1)};
    hb_netdev_count(c, shard, last, &rest);
}

void hb_netdev_set_host(hb_counters_t *c, unsigned shard, uint64_t id)
{
    hb_report_t now;
    hb_counters_snapshot(c, 0, &now);
    /* Cumulative values wrap modulo 2^64: adding id - held makes it id. UINT64_MAX as the second
     * adds to the cumulative total only. */
    hb_counters_add(c, shard, HB_CTR_NIC_HOST, UINT64_MAX, id - now.cumulative[HB_CTR_NIC_HOST]);
}
