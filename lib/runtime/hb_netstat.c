/* The NIC sampler: reads /proc/net/dev once a second on a libuv loop and counts one interface's
 * packets and bytes into a counter set (the parsing and the counting are the core's netdev), and
 * finds the interface an address uses. */
#include "hb_clock.h"
#include "hb_internal.h"
#include "hongbao/netstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How far past each wall-clock second the sampler reads. */
#define TICK_OFFSET_MS 10
/* The statistics file is read whole into a buffer that starts here and doubles up to the cap. */
#define BUF_START (16u * 1024)
#define BUF_CAP   (4u * 1024 * 1024)

static uint64_t now_ms(const hb_netstat_t *ns)
{
    return ns->opts.now_ms(ns->opts.now_arg);
}

static HB_PRINTF(2, 3) void log_line(hb_netstat_t *ns, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hb__vlogf(ns->opts.log, ns->opts.log_arg, fmt, ap);
    va_end(ap);
}

/* Read the whole of path into *buf (grown as needed, at most BUF_CAP), its length into *len.
 * Returns 0 or a negative errno (UV_E*). */
static int read_file(const char *path, char **buf, size_t *cap, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    int r = 0;
    for (;;) {
        if (n == *cap) {
            size_t ncap = *cap == 0 ? BUF_START : *cap * 2;
            char *nb = ncap <= BUF_CAP ? realloc(*buf, ncap) : NULL;
            if (nb == NULL) {
                r = ncap <= BUF_CAP ? UV_ENOMEM : UV_EFBIG;
                break;
            }
            *buf = nb;
            *cap = ncap;
        }
        ssize_t got = read(fd, *buf + n, *cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = -errno;
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    *len = n;
    return r;
}

/* One reading of the interface into *out. Returns 0, UV_ENODEV (not listed), HB_ERANGE
 * (malformed line) or the file's error. */
static int read_stats(hb_netstat_t *ns, hb_netdev_stats_t *out)
{
    size_t len = 0;
    int r = read_file(ns->path, &ns->buf, &ns->cap, &len);
    if (r != 0)
        return r;
    r = hb_netdev_parse(ns->buf, len, ns->interface, out);
    return r == HB_ENOENT ? UV_ENODEV : r;
}

/* The machine's identity: /etc/machine-id's first line, else the host name, else "". */
static void machine_identity(char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/etc/machine-id", "re");
    if (f != NULL) {
        if (fgets(out, (int)cap, f) == NULL)
            out[0] = '\0';
        fclose(f);
        out[strcspn(out, "\r\n")] = '\0';
    }
    if (out[0] == '\0') {
        size_t size = cap;
        if (uv_os_gethostname(out, &size) != 0)
            out[0] = '\0';
    }
}

/* The inode of this process's network namespace, or 0. */
static uint64_t netns_inode(void)
{
    struct stat st;
    return stat("/proc/self/ns/net", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

int hb_netstat_init(uv_loop_t *loop, hb_netstat_t *ns, hb_counters_t *counters,
                    const hb_netstat_options_t *opts)
{
    if (loop == NULL || ns == NULL || counters == NULL || opts == NULL || opts->interface == NULL)
        return UV_EINVAL;
    size_t nlen = strlen(opts->interface);
    const char *path = opts->path != NULL ? opts->path : HB_NETSTAT_DEFAULT_PATH;
    if (nlen == 0 || nlen >= HB_NETDEV_NAME_MAX || opts->shard >= counters->nshards ||
        strlen(path) >= sizeof ns->path)
        return UV_EINVAL;
    memset(ns, 0, sizeof *ns);
    ns->loop = loop;
    ns->counters = counters;
    ns->opts = *opts;
    if (ns->opts.now_ms == NULL) {
        ns->opts.now_ms = hb__wall_ms;
        ns->opts.now_arg = NULL;
    }
    memcpy(ns->interface, opts->interface, nlen + 1);
    ns->opts.interface = ns->interface;
    strcpy(ns->path, path);
    ns->opts.path = ns->path;

    int r = read_stats(ns, &ns->last);
    if (r == 0)
        r = uv_timer_init(loop, &ns->timer);
    if (r != 0) {
        free(ns->buf);
        ns->buf = NULL;
        return r;
    }
    ns->timer.data = ns;
    ns->last_ms = now_ms(ns);
    ns->samples = 1;
    ns->host_id = opts->host_id;
    if (ns->host_id == 0) {
        char machine[256];
        machine_identity(machine, sizeof machine);
        ns->host_id = hb_netdev_host_id(machine, netns_inode(), ns->interface);
    }
    hb_netdev_set_host(counters, opts->shard, ns->host_id);
    return 0;
}

int hb_netstat_sample(hb_netstat_t *ns)
{
    if (ns == NULL || ns->closing)
        return UV_EINVAL;
    hb_netdev_stats_t cur, d;
    uint64_t now = now_ms(ns);
    int r = read_stats(ns, &cur);
    if (r != 0) {
        if (ns->err == 0)
            log_line(ns, "interface %s: %s; its rates are not counted until it is back",
                     ns->interface,
                     r == UV_ENODEV ? "no longer in the statistics" : hb_strerror(r));
        ns->err = r;
        ns->failures++;
        return r;
    }
    if (ns->err != 0)
        log_line(ns, "interface %s: statistics readable again", ns->interface);
    ns->err = 0;
    hb_netdev_delta(&ns->last, &cur, &d);
    /* The second the interval since the previous reading mostly lies in (with readings just past
     * each second, the second that just ended), or the seconds a late reading's interval covers. */
    hb_netdev_count_interval(ns->counters, ns->opts.shard, now > ns->last_ms ? ns->last_ms : now,
                             now, &d);
    ns->last = cur;
    ns->last_ms = now;
    ns->samples++;
    return 0;
}

static void arm(hb_netstat_t *ns, uint64_t min_ms);

static void on_tick(uv_timer_t *t)
{
    hb_netstat_t *ns = t->data;
    hb_netstat_sample(ns);
    arm(ns, 500); /* a tick a little early by the wall clock must not read twice in a second */
}

/* Wake up TICK_OFFSET_MS past a wall-clock second, the first at least min_ms away. */
static void arm(hb_netstat_t *ns, uint64_t min_ms)
{
    uint64_t now = now_ms(ns);
    uint64_t delay = (1000 + TICK_OFFSET_MS - now % 1000) % 1000;
    while (delay < min_ms)
        delay += 1000;
    uv_timer_start(&ns->timer, on_tick, delay, 0);
}

int hb_netstat_start(hb_netstat_t *ns)
{
    if (ns == NULL || ns->closing || uv_is_active((uv_handle_t *)&ns->timer))
        return UV_EINVAL;
    arm(ns, 1);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    hb_netstat_t *ns = h->data;
    free(ns->buf);
    ns->buf = NULL;
    ns->cap = 0;
    if (ns->close_cb != NULL)
        ns->close_cb(ns);
}

void hb_netstat_close(hb_netstat_t *ns, hb_netstat_close_cb cb)
{
    if (ns == NULL || ns->closing)
        return;
    ns->closing = 1;
    ns->close_cb = cb;
    uv_timer_stop(&ns->timer);
    uv_close((uv_handle_t *)&ns->timer, on_closed);
}

/* ---- which interface an address uses ---- */

static int copy_name(const char *src, char *name, size_t cap)
{
    size_t n = strlen(src);
    if (n >= cap)
        return UV_ENOBUFS;
    memcpy(name, src, n + 1);
    return 0;
}

/* The interface of the default route, or the loopback interface (the first internal one). */
static int default_interface(const uv_interface_address_t *ifs, int n, char *name, size_t cap)
{
    char *buf = NULL;
    size_t bufcap = 0, len = 0;
    char route[HB_NETDEV_NAME_MAX];
    int r = read_file("/proc/net/route", &buf, &bufcap, &len);
    if (r == 0)
        r = hb_netdev_default_route(buf, len, route, sizeof route);
    free(buf);
    if (r == 0)
        return copy_name(route, name, cap);
    for (int i = 0; i < n; i++)
        if (ifs[i].is_internal)
            return copy_name(ifs[i].name, name, cap);
    return UV_ENODEV;
}

/* Whether a and b (of len bytes) are equal under mask (all ones when mask is NULL). */
static int same_under(const unsigned char *a, const unsigned char *b, const unsigned char *mask,
                      size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char m = mask != NULL ? mask[i] : 0xff;
        if ((a[i] & m) != (b[i] & m))
            return 0;
    }
    return 1;
}

/* The bytes of interface address i's address (or netmask) of family, or NULL. */
static const unsigned char *addr_bytes(const uv_interface_address_t *x, int family, int netmask)
{
    if (family == AF_INET && x->address.address4.sin_family == AF_INET)
        return (const unsigned char *)(netmask ? &x->netmask.netmask4.sin_addr
                                               : &x->address.address4.sin_addr);
    if (family == AF_INET6 && x->address.address6.sin6_family == AF_INET6)
        return (const unsigned char *)(netmask ? &x->netmask.netmask6.sin6_addr
                                               : &x->address.address6.sin6_addr);
    return NULL;
}

int hb_netstat_interface_for(const char *ip, char *name, size_t cap)
{
    if (ip == NULL || name == NULL)
        return UV_EINVAL;
    unsigned char a[16];
    int family = AF_INET;
    size_t alen = 4;
    if (uv_inet_pton(AF_INET, ip, a) != 0) {
        family = AF_INET6;
        alen = 16;
        if (uv_inet_pton(AF_INET6, ip, a) != 0)
            return UV_EINVAL;
    }
    static const unsigned char zero[16], loop6[16] = {[15] = 1};
    int loopback = family == AF_INET ? a[0] == 127 : memcmp(a, loop6, 16) == 0;
    int unspecified = memcmp(a, zero, alen) == 0;
    uv_interface_address_t *ifs;
    int n, r = uv_interface_addresses(&ifs, &n);
    if (r != 0)
        return r;
    r = UV_ENODEV;
    if (loopback) {
        for (int i = 0; i < n && r == UV_ENODEV; i++)
            if (ifs[i].is_internal)
                r = copy_name(ifs[i].name, name, cap);
    } else if (!unspecified) {
        for (int pass = 0; pass < 2 && r == UV_ENODEV; pass++) {
            for (int i = 0; i < n && r == UV_ENODEV; i++) {
                const unsigned char *x = addr_bytes(&ifs[i], family, 0);
                const unsigned char *m = pass == 0 ? NULL : addr_bytes(&ifs[i], family, 1);
                if (x != NULL && (pass == 0 || (m != NULL && memcmp(m, zero, alen) != 0)) &&
                    same_under(a, x, m, alen))
                    r = copy_name(ifs[i].name, name, cap);
            }
        }
    }
    if (r == UV_ENODEV)
        r = default_interface(ifs, n, name, cap);
    uv_free_interface_addresses(ifs, n);
    return r;
}
