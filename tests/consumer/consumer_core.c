/* A program that uses only the core, as a consumer would: the scheduler and the double-mean split.
 * Built with -std=c11 -Wall -Wextra -Werror -pedantic and no _DEFAULT_SOURCE, linked against
 * libhongbao-core alone: no libuv anywhere. */
#include <hongbao/envelope.h>
#include <hongbao/sched.h>
#include <stdio.h>

int main(void)
{
    hb_sched_t s;
    int r = hb_sched_init(&s, 1000, 100, 1700000000);
    if (r != 0) {
        fprintf(stderr, "consumer_core: hb_sched_init: %s\n", hb_strerror(r));
        return 1;
    }
    /* Every second of the schedule holds exactly qps sends. */
    uint64_t first = hb_sched_first_at(&s, 1700000000ull * 1000);
    uint64_t next = hb_sched_first_at(&s, 1700000001ull * 1000);
    if (next - first != 100) {
        fprintf(stderr, "consumer_core: %llu sends in a second, not 100\n",
                (unsigned long long)(next - first));
        return 1;
    }
    hb_rand_t rng;
    hb_rand_seed(&rng, 7);
    uint32_t shares[3];
    r = hb_envelope_split(1000, 3, &rng, shares);
    if (r != 0 || shares[0] + shares[1] + shares[2] != 1000) {
        fprintf(stderr, "consumer_core: the split does not add up (%s)\n", hb_strerror(r));
        return 1;
    }
    if (hb_envelope_split(2, 3, &rng, shares) != HB_EAMOUNT) {
        fprintf(stderr, "consumer_core: a total below the recipients was not refused\n");
        return 1;
    }
    printf("consumer_core: libhongbao-core %s OK (%u + %u + %u)\n", hb_version_string(), shares[0],
           shares[1], shares[2]);
    return 0;
}
