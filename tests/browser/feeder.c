/* The browser test's reporter: connects to a monitor as K servers and a client, and sends each
 * one report a second for N consecutive seconds ending 5 s ago, all at once, with non-zero values
 * in every slot the dashboard draws (the NIC's too, every process on one host); then closes the
 * connections. The K servers are K instances (127.0.0.1:7101, 7102, ... in their reports: labels
 * only, nothing listens there) sharing one server's values in the proportions 1:2:...:K, so the
 * totals are the same whatever K; the client has no instance identity.
 * Usage: monitor_feeder PORT [SECONDS [SERVERS]]   (SECONDS: default 30, SERVERS: default 1) */
#include <arpa/inet.h>
#include <errno.h>
#include <hongbao.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (const struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Fill the k-th second's server and client reports: a gentle wave around 1000 requests/s. */
static void fill(uint64_t k, uint64_t second, hb_report_t *sv, hb_report_t *cl)
{
    static uint64_t sum_sv[HB_COUNTER_SLOTS], sum_cl[HB_COUNTER_SLOTS];
    static const int wave[12] = {0, 50, 87, 100, 87, 50, 0, -50, -87, -100, -87, -50};
    uint64_t q = (uint64_t)(1000 + 2 * wave[k % 12]);
    uint64_t got = q / 4 + (k * 7) % 20;
    memset(sv, 0, sizeof *sv);
    memset(cl, 0, sizeof *cl);
    sv->second = cl->second = second;
    sv->type = HB_REPORTER_SERVER;
    cl->type = HB_REPORTER_CLIENT;

    uint64_t *s = sv->per_second, *c = cl->per_second;
    s[HB_CTR_REQUESTS] = s[HB_CTR_RESPONSES] = q + 8;
    s[HB_CTR_SHAKE_GOT] = got;
    s[HB_CTR_SHAKE_NONE] = q - got;
    s[HB_CTR_SHAKE_HANDED_OUT] = got;
    s[HB_CTR_SHAKE_ENVELOPES] = got + 10;
    s[HB_CTR_SHAKE_AMOUNT_ISSUED] = got * 160;
    s[HB_CTR_SEND_CREATED] = 3;
    s[HB_CTR_CLAIMS_GRANTED] = 8;
    s[HB_CTR_SEND_AMOUNT_ISSUED] = 3 * 900;
    s[HB_CTR_SEND_AMOUNT_CLAIMED] = 8 * 300;
    s[HB_CTR_CONN_OPENED] = k < 10 ? 200 : 2;
    s[HB_CTR_CONN_CLOSED] = 1;

    c[HB_CTR_REQUESTS] = c[HB_CTR_RESPONSES] = q + 8;
    c[HB_CTR_SHAKE_GOT] = got;
    c[HB_CTR_SHAKE_NONE] = q - got;
    c[HB_CTR_SHAKE_RECEIVED] = got;
    c[HB_CTR_SHAKE_AMOUNT_RECEIVED] = got * 160;
    c[HB_CTR_CLAIMS_GRANTED] = 8;
    c[HB_CTR_SEND_AMOUNT_CLAIMED] = 8 * 300;
    c[HB_CTR_CONN_OPENED] = s[HB_CTR_CONN_OPENED];
    c[HB_CTR_CONN_CLOSED] = 1;
    c[HB_CTR_LAT_P50] = 800 + 20 * (k % 7);          /* p50 */
    c[HB_CTR_LAT_P90] = 1600 + 40 * (k % 5);         /* p90 */
    c[HB_CTR_LAT_P99] = 3000 + (k * 97) % 900;       /* p99 */
    c[HB_CTR_LAT_P999] = 5000 + (k * 131) % 1500;    /* p99.9 */
    c[HB_CTR_LAT_MAX] = 7000 + (k * 211) % 3000;     /* max */
    c[HB_CTR_LAT_CLAIM_P50] = 600 + (k * 13) % 100;  /* claim p50 */
    c[HB_CTR_LAT_CLAIM_P99] = 2500 + (k * 53) % 400; /* claim p99 */

    /* One host runs both, and its interface carries both sides' packets: the same values. */
    s[HB_CTR_NIC_RX_PACKETS] = c[HB_CTR_NIC_RX_PACKETS] = 2 * q + 40;
    s[HB_CTR_NIC_TX_PACKETS] = c[HB_CTR_NIC_TX_PACKETS] = 2 * q + 36;
    s[HB_CTR_NIC_RX_BYTES] = c[HB_CTR_NIC_RX_BYTES] = 70 * (2 * q + 40);
    s[HB_CTR_NIC_TX_BYTES] = c[HB_CTR_NIC_TX_BYTES] = 70 * (2 * q + 36);

    for (int i = 0; i < HB_COUNTER_SLOTS; i++) {
        sum_sv[i] += s[i];
        sum_cl[i] += c[i];
        sv->cumulative[i] = sum_sv[i];
        cl->cumulative[i] = sum_cl[i];
    }
    sv->cumulative[HB_CTR_NIC_HOST] = cl->cumulative[HB_CTR_NIC_HOST] = 0x5eedf00dull;
}

#define MAX_SERVERS 8

/* Instance j of k's share of v: (j + 1) / (1 + 2 + ... + k) of it, the last one the rest. */
static uint64_t share(uint64_t v, unsigned j, unsigned k)
{
    uint64_t whole = (uint64_t)k * (k + 1) / 2, given = 0;
    for (unsigned i = 0; i + 1 < k; i++)
        given += v * (i + 1) / whole;
    return j + 1 < k ? v * (j + 1) / whole : v - given;
}

/* Server report sv split into instance j of k: the host's NIC values whole (one host), the
 * other slots shared, the instance's identity in its report. */
static void split(const hb_report_t *sv, unsigned j, unsigned k, hb_report_t *out)
{
    *out = *sv;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        if (hb_counter_combine(i) != HB_COUNTER_COMBINE_SUM)
            continue;
        out->per_second[i] = share(sv->per_second[i], j, k);
        out->cumulative[i] = share(sv->cumulative[i], j, k);
    }
    out->per_second[HB_CTR_INSTANCE] = hb_report_instance("127.0.0.1", 7101 + (int)j);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: monitor_feeder PORT [SECONDS [SERVERS]]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    uint64_t n = argc >= 3 ? strtoull(argv[2], NULL, 10) : 30;
    unsigned k = argc == 4 ? (unsigned)atoi(argv[3]) : 1;
    if (port <= 0 || port > 65535 || n == 0 || n > 3000 || k == 0 || k > MAX_SERVERS) {
        fprintf(stderr, "monitor_feeder: bad PORT, SECONDS or SERVERS\n");
        return 2;
    }
    int fs[MAX_SERVERS], fc = connect_to(port);
    for (unsigned j = 0; j < k; j++)
        fs[j] = connect_to(port);
    uint8_t *bs[MAX_SERVERS], *bc = malloc(n * HB_REPORT_SIZE);
    for (unsigned j = 0; j < k; j++)
        if ((bs[j] = malloc(n * HB_REPORT_SIZE)) == NULL)
            return 1;
    if (bc == NULL)
        return 1;
    uint64_t first = (uint64_t)time(NULL) - 5 - (n - 1);
    for (uint64_t s = 0; s < n; s++) {
        hb_report_t sv, cl, part;
        fill(s, first + s, &sv, &cl);
        for (unsigned j = 0; j < k; j++) {
            split(&sv, j, k, &part);
            hb_report_encode(&part, bs[j] + s * HB_REPORT_SIZE);
        }
        hb_report_encode(&cl, bc + s * HB_REPORT_SIZE);
    }
    for (unsigned j = 0; j <= k; j++) {
        int fd = j < k ? fs[j] : fc;
        if (fd < 0) {
            fprintf(stderr, "monitor_feeder: cannot connect to 127.0.0.1:%d: %s\n", port,
                    strerror(errno));
            return 1;
        }
        if (write_all(fd, j < k ? bs[j] : bc, n * HB_REPORT_SIZE) != 0) {
            fprintf(stderr, "monitor_feeder: write: %s\n", strerror(errno));
            return 1;
        }
    }
    for (unsigned j = 0; j < k; j++) {
        close(fs[j]);
        free(bs[j]);
    }
    close(fc);
    free(bc);
    printf("monitor_feeder: sent %llu seconds from %llu as %u server%s and a client\n",
           (unsigned long long)n, (unsigned long long)first, k, k == 1 ? "" : "s");
    return 0;
}
