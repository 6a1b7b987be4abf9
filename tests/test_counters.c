/* Unit tests for the counters module: slot names, sharded per-second/cumulative counting, the
 * 976-byte monitor report and its Prometheus and JSON renderings, and concurrent add/snapshot. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hongbao/counters.h"

#define H HB_COUNTERS_HISTORY

static void ck_report_eq(const hb_report_t *a, const hb_report_t *b)
{
    ck_assert_uint_eq(a->second, b->second);
    ck_assert_uint_eq(a->type, b->type);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        ck_assert_uint_eq(a->per_second[i], b->per_second[i]);
        ck_assert_uint_eq(a->cumulative[i], b->cumulative[i]);
    }
}

START_TEST(test_names)
{
    /* The reference's names, unchanged; then the host's NIC, the server's own and the client's
     * own. */
    static const char *const expected[HB_COUNTER_SLOTS] = {
        [7] = "nic_rx_packets",
        [8] = "nic_tx_packets",
        [9] = "nic_rx_bytes",
        [12] = "nic_tx_bytes",
        [13] = "nic_host",
        [0] = "frame_login",
        [1] = "frame_login_reply",
        [2] = "frame_shake",
        [3] = "frame_shake_reply",
        [4] = "frame_notice",
        [5] = "frame_claim",
        [6] = "frame_claim_reply",
        [10] = "requests",
        [11] = "responses",
        [14] = "shake_got",
        [15] = "shake_none",
        [16] = "shake_all_taken",
        [17] = "shake_overload",
        [18] = "shake_handed_out",
        [20] = "conn_opened",
        [21] = "conn_closed",
        [22] = "shake_envelopes",
        [23] = "shake_received",
        [24] = "shake_amount_issued",
        [25] = "shake_amount_received",
        [30] = "send_created",
        [31] = "claims_granted",
        [32] = "send_amount_issued",
        [33] = "send_amount_claimed",

        [26] = "envelopes_dropped",
        [27] = "ids_wait",
        [34] = "claims_repeated",
        [35] = "claims_try_again",
        [36] = "login_timeouts",
        [37] = "store_errors",
        [38] = "login_refused",
        [39] = "rate_limited",
        [40] = "envq_full",
        [41] = "bad_frames",
        [42] = "slow_peers",
        [43] = "conn_rejected",
        [44] = "claims_refused",
        [45] = "chat_delivered",
        [46] = "chat_failed",
        [47] = "conn_kicked",
        [48] = "send_expired",
        [49] = "notice_offline",

        [50] = "latency_p50_us",
        [51] = "latency_p90_us",
        [52] = "latency_p99_us",
        [53] = "latency_p999_us",
        [54] = "latency_max_us",
        [55] = "claim_latency_p50_us",
        [56] = "claim_latency_p99_us",
        [57] = "send_missed",
    };
    unsigned named = 0, by_owner[4] = {0};
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        const hb_counter_info_t *info = hb_counter_info(i);
        if (expected[i] == NULL) {
            ck_assert_ptr_null(hb_counter_name(i));
            ck_assert_ptr_null(info);
            ck_assert_int_eq(hb_counter_combine(i), HB_COUNTER_COMBINE_SUM);
            continue;
        }
        ck_assert_str_eq(hb_counter_name(i), expected[i]);
        ck_assert_ptr_nonnull(info);
        ck_assert_str_eq(info->name, expected[i]);
        ck_assert_uint_gt(strlen(info->help), 0);
        ck_assert_int_ne(info->help[strlen(info->help) - 1], '.');
        by_owner[info->owner]++;
        /* Whose it is decides the reporter types that name it. */
        const char *server = hb_counter_name_for(HB_REPORTER_SERVER, i);
        const char *client = hb_counter_name_for(HB_REPORTER_CLIENT, i);
        if (info->owner == HB_COUNTER_OWNER_REFERENCE) {
            ck_assert_uint_le(i, 33);
            ck_assert_ptr_eq(server, info->name);
            ck_assert_ptr_eq(client, info->name);
        } else if (info->owner == HB_COUNTER_OWNER_HOST) {
            ck_assert_ptr_eq(server, info->name);
            ck_assert_ptr_eq(client, info->name);
        } else if (info->owner == HB_COUNTER_OWNER_SERVER) {
            ck_assert_ptr_eq(server, info->name);
            ck_assert_ptr_null(client);
        } else {
            ck_assert_int_eq(info->owner, HB_COUNTER_OWNER_CLIENT);
            ck_assert_ptr_null(server);
            ck_assert_ptr_eq(client, info->name);
        }
        ck_assert_int_eq(info->combine, hb_counter_combine(i));
        ck_assert_int_eq(info->combine == HB_COUNTER_COMBINE_MAX, i >= 50 && i <= 56);
        ck_assert_int_eq(info->combine == HB_COUNTER_COMBINE_PER_HOST,
                         i == 7 || i == 8 || i == 9 || i == 12);
        ck_assert_int_eq(info->combine == HB_COUNTER_COMBINE_IDENTITY, i == 13);
        ck_assert_int_eq(info->owner == HB_COUNTER_OWNER_HOST,
                         i == 7 || i == 8 || i == 9 || i == 12 || i == 13);
        /* Names are unique. */
        for (unsigned j = 0; j < i; j++)
            if (expected[j] != NULL)
                ck_assert_str_ne(expected[j], expected[i]);
        named++;
    }
    ck_assert_uint_eq(named, 24 + 5 + 18 + 8);
    ck_assert_uint_eq(by_owner[HB_COUNTER_OWNER_REFERENCE], 24);
    ck_assert_uint_eq(by_owner[HB_COUNTER_OWNER_HOST], 5);
    ck_assert_uint_eq(by_owner[HB_COUNTER_OWNER_SERVER], 18);
    ck_assert_uint_eq(by_owner[HB_COUNTER_OWNER_CLIENT], 8);
    /* The enumerators are the slots named. */
    ck_assert_int_eq(HB_CTR_NIC_RX_PACKETS, 7);
    ck_assert_int_eq(HB_CTR_NIC_TX_PACKETS, 8);
    ck_assert_int_eq(HB_CTR_NIC_RX_BYTES, 9);
    ck_assert_int_eq(HB_CTR_NIC_TX_BYTES, 12);
    ck_assert_int_eq(HB_CTR_NIC_HOST, 13);
    ck_assert_str_eq(hb_counter_name(HB_CTR_SHAKE_GOT), "shake_got");
    ck_assert_str_eq(hb_counter_name(HB_CTR_SEND_AMOUNT_CLAIMED), "send_amount_claimed");
    ck_assert_str_eq(hb_counter_name(HB_CTR_X_NOTICE_OFFLINE), "notice_offline");
    ck_assert_str_eq(hb_counter_name(HB_CTR_C_SEND_MISSED), "send_missed");
    ck_assert_ptr_null(hb_counter_name(HB_COUNTER_SLOTS));
    ck_assert_ptr_null(hb_counter_name(1000));
    ck_assert_ptr_null(hb_counter_name(UINT32_MAX));
    ck_assert_ptr_null(hb_counter_info(HB_COUNTER_SLOTS));
    ck_assert_ptr_null(hb_counter_name_for(2, HB_CTR_REQUESTS));
    ck_assert_ptr_null(hb_counter_name_for(HB_REPORTER_SERVER, HB_COUNTER_SLOTS));
    ck_assert_int_eq(hb_counter_combine(HB_COUNTER_SLOTS), HB_COUNTER_COMBINE_SUM);
}
END_TEST

/* The application's slots: free in the catalogue for every type, named per type with checks. */
START_TEST(test_application_names)
{
    static const unsigned app[HB_COUNTER_APP_SLOTS] = {HB_CTR_APP_0, HB_CTR_APP_1, HB_CTR_APP_2,
                                                       HB_CTR_APP_3, HB_CTR_APP_4};
    unsigned napp = 0;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS + 2; i++) {
        napp += hb_counter_is_app_slot(i) != 0;
        if (hb_counter_is_app_slot(i)) {
            ck_assert_ptr_null(hb_counter_info(i));
            ck_assert_int_eq(hb_counter_combine(i), HB_COUNTER_COMBINE_SUM);
        }
    }
    ck_assert_uint_eq(napp, HB_COUNTER_APP_SLOTS);
    hb_counter_names_t names;
    memset(&names, 0, sizeof names);
    for (unsigned k = 0; k < HB_COUNTER_APP_SLOTS; k++) {
        char name[16];
        snprintf(name, sizeof name, "app_%u", k);
        ck_assert_int_eq(hb_counter_names_add(&names, HB_REPORTER_SERVER, app[k], name, "Mine"), 0);
        ck_assert_int_eq(hb_counter_names_add(&names, HB_REPORTER_CLIENT, app[k], name, NULL), 0);
    }
    ck_assert_uint_eq(names.n, 2 * HB_COUNTER_APP_SLOTS);
    const hb_counter_app_t *e = hb_counter_names_find(&names, HB_REPORTER_SERVER, HB_CTR_APP_2);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(e->name, "app_2");
    ck_assert_str_eq(e->help, "Mine");
    ck_assert_str_eq(hb_counter_names_find(&names, HB_REPORTER_CLIENT, HB_CTR_APP_2)->help,
                     "app_2");
    ck_assert_ptr_null(hb_counter_names_find(&names, HB_REPORTER_SERVER, HB_CTR_X_CHAT));
    ck_assert_ptr_null(hb_counter_names_find(NULL, HB_REPORTER_SERVER, HB_CTR_APP_0));
    /* Full: every slot of both types taken. */
    ck_assert_int_eq(hb_counter_names_add(&names, HB_REPORTER_SERVER, HB_CTR_APP_0, "z", NULL),
                     HB_EEXIST);

    memset(&names, 0, sizeof names);
    static const struct {
        uint64_t type;
        unsigned slot;
        const char *name, *help;
        int want;
    } cases[] = {
        {HB_REPORTER_SERVER, HB_CTR_APP_0, "draws", "Draws", 0},
        {HB_REPORTER_SERVER, HB_CTR_APP_0, "other", NULL, HB_EEXIST},     /* slot taken */
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "draws", NULL, HB_EEXIST},     /* name taken */
        {HB_REPORTER_CLIENT, HB_CTR_APP_0, "draws", NULL, 0},             /* another type */
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "shake_got", NULL, HB_EEXIST}, /* the catalogue's */
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "nic_host", NULL, HB_EEXIST},
        {HB_REPORTER_SERVER, HB_CTR_X_CHAT, "chat2", NULL, HB_EINVAL}, /* not an app slot */
        {HB_REPORTER_SERVER, HB_COUNTER_SLOTS, "far", NULL, HB_EINVAL},
        {2, HB_CTR_APP_1, "typeless", NULL, HB_EINVAL},
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "", NULL, HB_EINVAL},
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "9lives", NULL, HB_EINVAL},
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "Draws", NULL, HB_EINVAL},
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "a-b", NULL, HB_EINVAL},
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "a_b", "back\\slash", HB_EINVAL},
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "a_b", "tab\tin", HB_EINVAL},
        {HB_REPORTER_SERVER, HB_CTR_APP_1, "a_b", "Fine: one line, any punctuation.", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_int_eq(hb_counter_names_add(&names, cases[i].type, cases[i].slot, cases[i].name,
                                              cases[i].help),
                         cases[i].want);
    /* Lengths: the longest name and help that fit, and one more. */
    char name[HB_COUNTER_NAME_MAX + 1], help[HB_COUNTER_HELP_MAX + 1];
    memset(name, 'n', sizeof name);
    memset(help, 'h', sizeof help);
    name[HB_COUNTER_NAME_MAX] = help[HB_COUNTER_HELP_MAX] = '\0';
    ck_assert_int_eq(hb_counter_names_add(&names, HB_REPORTER_SERVER, HB_CTR_APP_2, name, NULL),
                     HB_EINVAL);
    name[HB_COUNTER_NAME_MAX - 1] = '\0';
    ck_assert_int_eq(hb_counter_names_add(&names, HB_REPORTER_SERVER, HB_CTR_APP_2, name, help),
                     HB_EINVAL);
    help[HB_COUNTER_HELP_MAX - 1] = '\0';
    ck_assert_int_eq(hb_counter_names_add(&names, HB_REPORTER_SERVER, HB_CTR_APP_2, name, help), 0);
    ck_assert_int_eq(hb_counter_names_add(NULL, HB_REPORTER_SERVER, HB_CTR_APP_3, "x", NULL),
                     HB_EINVAL);
    ck_assert_int_eq(hb_counter_names_add(&names, HB_REPORTER_SERVER, HB_CTR_APP_3, NULL, NULL),
                     HB_EINVAL);
}
END_TEST

START_TEST(test_init_arguments)
{
    hb_counters_t c;
    ck_assert_int_eq(hb_counters_init(NULL, 1, HB_REPORTER_SERVER), HB_EINVAL);
    ck_assert_int_eq(hb_counters_init(&c, 0, HB_REPORTER_SERVER), HB_EINVAL);
    ck_assert_ptr_null(c.shards);
    hb_counters_close(&c); /* a failed init leaves nothing to free */
    ck_assert_int_eq(hb_counters_init(&c, 1025, HB_REPORTER_SERVER), HB_EINVAL);
    ck_assert_int_eq(hb_counters_init(&c, 1, 2), HB_EINVAL);
    ck_assert_int_eq(hb_counters_init(&c, 1024, HB_REPORTER_CLIENT), 0);
    ck_assert_uint_eq(c.nshards, 1024);
    ck_assert_uint_eq(c.type, HB_REPORTER_CLIENT);
    hb_counters_add(&c, 1023, HB_CTR_REQUESTS, 50, 3);
    hb_report_t r;
    hb_counters_snapshot(&c, 50, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_REQUESTS], 3);
    ck_assert_uint_eq(r.type, HB_REPORTER_CLIENT);
    hb_counters_close(&c);
    ck_assert_uint_eq(c.nshards, 0);
    ck_assert_ptr_null(c.shards);
    hb_counters_add(&c, 0, 0, 50, 1); /* ignored after close */
    hb_counters_close(&c);            /* second close is a no-op */
}
END_TEST

START_TEST(test_add_and_snapshot_one_thread)
{
    hb_counters_t c;
    hb_report_t r;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_SERVER), 0);
    hb_counters_snapshot(&c, 1000, &r);
    ck_assert_uint_eq(r.second, 1000);
    ck_assert_uint_eq(r.type, HB_REPORTER_SERVER);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        ck_assert_uint_eq(r.per_second[i], 0);
        ck_assert_uint_eq(r.cumulative[i], 0);
    }

    hb_counters_add(&c, 0, HB_CTR_FRAME_LOGIN, 1000, 1);
    hb_counters_add(&c, 0, HB_CTR_FRAME_LOGIN, 1000, 1);
    hb_counters_add(&c, 0, HB_CTR_SHAKE_AMOUNT_ISSUED, 1000, 250);
    hb_counters_add(&c, 0, 59, 1000, 9);                   /* a free slot still counts */
    hb_counters_add(&c, 0, HB_COUNTER_SLOTS, 1000, 100);   /* out of range: ignored */
    hb_counters_add(&c, 1, HB_CTR_FRAME_LOGIN, 1000, 100); /* no shard 1: ignored */

    hb_counters_snapshot(&c, 1000, &r);
    ck_assert_uint_eq(r.second, 1000);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        uint64_t want = i == HB_CTR_FRAME_LOGIN           ? 2
                        : i == HB_CTR_SHAKE_AMOUNT_ISSUED ? 250
                        : i == 59                         ? 9
                                                          : 0;
        ck_assert_uint_eq(r.per_second[i], want);
        ck_assert_uint_eq(r.cumulative[i], want);
    }
    /* Neighbouring seconds hold nothing, but the totals are the same. */
    hb_counters_snapshot(&c, 999, &r);
    ck_assert_uint_eq(r.second, 999);
    ck_assert_uint_eq(r.per_second[HB_CTR_FRAME_LOGIN], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_FRAME_LOGIN], 2);
    hb_counters_snapshot(&c, 1001, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_FRAME_LOGIN], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_SHAKE_AMOUNT_ISSUED], 250);
    /* Same residue, another second: not mixed up with 1000. */
    hb_counters_snapshot(&c, 1000 + H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_FRAME_LOGIN], 0);
    hb_counters_snapshot(&c, 1000 - H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_FRAME_LOGIN], 0);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_second_zero_and_max)
{
    hb_counters_t c;
    hb_report_t r;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_SERVER), 0);
    hb_counters_add(&c, 0, HB_CTR_REQUESTS, 0, 4);
    hb_counters_snapshot(&c, 0, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_REQUESTS], 4);
    /* UINT64_MAX counts only in the totals. */
    hb_counters_add(&c, 0, HB_CTR_REQUESTS, UINT64_MAX, 5);
    hb_counters_snapshot(&c, UINT64_MAX, &r);
    ck_assert_uint_eq(r.second, UINT64_MAX);
    ck_assert_uint_eq(r.per_second[HB_CTR_REQUESTS], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_REQUESTS], 9);
    hb_counters_snapshot(&c, 0, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_REQUESTS], 4);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_seconds_move_forward)
{
    hb_counters_t c;
    hb_report_t r;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_SERVER), 0);
    for (uint64_t t = 5000; t < 5000 + H; t++)
        hb_counters_add(&c, 0, HB_CTR_RESPONSES, t, t - 4990); /* 10, 11, ... */
    /* The whole window is kept. */
    for (uint64_t t = 5000; t < 5000 + H; t++) {
        hb_counters_snapshot(&c, t, &r);
        ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], t - 4990);
    }
    uint64_t total = 0;
    for (uint64_t t = 5000; t < 5000 + H; t++)
        total += t - 4990;
    ck_assert_uint_eq(r.cumulative[HB_CTR_RESPONSES], total);
    /* One second more pushes the oldest out. */
    hb_counters_add(&c, 0, HB_CTR_RESPONSES, 5000 + H, 1);
    hb_counters_snapshot(&c, 5000, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_RESPONSES], total + 1);
    hb_counters_snapshot(&c, 5001, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], 11);
    hb_counters_snapshot(&c, 5000 + H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], 1);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_ring_wrap)
{
    hb_counters_t c;
    hb_report_t r;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_SERVER), 0);
    hb_counters_add(&c, 0, HB_CTR_SHAKE_GOT, 1000, 5);
    /* The same ring entry, HISTORY seconds later. */
    hb_counters_add(&c, 0, HB_CTR_SHAKE_GOT, 1000 + H, 1);
    hb_counters_snapshot(&c, 1000, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SHAKE_GOT], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_SHAKE_GOT], 6);
    hb_counters_snapshot(&c, 1000 + H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SHAKE_GOT], 1);
    /* A late add older than the window counts only in the total, and does not disturb the
     * entry now holding 1000 + H. */
    hb_counters_add(&c, 0, HB_CTR_SHAKE_GOT, 1000, 2);
    hb_counters_snapshot(&c, 1000, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SHAKE_GOT], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_SHAKE_GOT], 8);
    hb_counters_snapshot(&c, 1000 + H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SHAKE_GOT], 1);

    /* A jump far ahead leaves entries of old seconds untouched, yet they are out of the
     * window: they read 0, and late adds to them count only in the totals. */
    hb_counters_add(&c, 0, HB_CTR_SHAKE_NONE, 2000, 3);
    hb_counters_add(&c, 0, HB_CTR_SHAKE_NONE, 2000 + 10 * H + 1, 4);
    hb_counters_snapshot(&c, 2000, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SHAKE_NONE], 0);
    hb_counters_add(&c, 0, HB_CTR_SHAKE_NONE, 2000, 5);
    hb_counters_snapshot(&c, 2000, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SHAKE_NONE], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_SHAKE_NONE], 12);
    hb_counters_snapshot(&c, 2000 + 10 * H + 1, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SHAKE_NONE], 4);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_late_add_inside_window)
{
    hb_counters_t c;
    hb_report_t r;
    ck_assert_int_eq(hb_counters_init(&c, 1, HB_REPORTER_SERVER), 0);
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 100, 3);
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 101, 4);
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 102, 1);
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 100, 2); /* late, its entry is tagged 100 */
    hb_counters_snapshot(&c, 100, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CLAIMS_GRANTED], 5);
    hb_counters_snapshot(&c, 101, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CLAIMS_GRANTED], 4);
    hb_counters_snapshot(&c, 102, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CLAIMS_GRANTED], 1);
    ck_assert_uint_eq(r.cumulative[HB_CTR_CLAIMS_GRANTED], 10);
    /* A second inside the window that had nothing yet, whose entry held an older second. */
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 102 - H + 1, 6);
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 102 - H + 1, 1);
    hb_counters_snapshot(&c, 102 - H + 1, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CLAIMS_GRANTED], 7);
    /* The oldest second of the window is still there; the one before is not. */
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 102 - H, 8);
    hb_counters_snapshot(&c, 102 - H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CLAIMS_GRANTED], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_CLAIMS_GRANTED], 25);
    /* Moving on drops 100, then 101. */
    hb_counters_add(&c, 0, HB_CTR_CLAIMS_GRANTED, 100 + H, 1);
    hb_counters_snapshot(&c, 100, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CLAIMS_GRANTED], 0);
    hb_counters_snapshot(&c, 101, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CLAIMS_GRANTED], 4);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_shards_are_summed)
{
    hb_counters_t c;
    hb_report_t r;
    ck_assert_int_eq(hb_counters_init(&c, 4, HB_REPORTER_CLIENT), 0);
    for (unsigned s = 0; s < 4; s++) {
        hb_counters_add(&c, s, HB_CTR_CONN_OPENED, 300, s + 1);           /* 1+2+3+4 */
        hb_counters_add(&c, s, HB_CTR_SEND_AMOUNT_CLAIMED, 301, 100 * s); /* 0+...+300 */
    }
    /* Shard 3 moves far ahead: its own window no longer holds 300, the others' do. */
    hb_counters_add(&c, 3, HB_CTR_CONN_CLOSED, 300 + H, 1);
    hb_counters_snapshot(&c, 300, &r);
    ck_assert_uint_eq(r.type, HB_REPORTER_CLIENT);
    ck_assert_uint_eq(r.per_second[HB_CTR_CONN_OPENED], 6);
    ck_assert_uint_eq(r.cumulative[HB_CTR_CONN_OPENED], 10);
    ck_assert_uint_eq(r.per_second[HB_CTR_SEND_AMOUNT_CLAIMED], 0);
    hb_counters_snapshot(&c, 301, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_SEND_AMOUNT_CLAIMED], 600);
    ck_assert_uint_eq(r.cumulative[HB_CTR_SEND_AMOUNT_CLAIMED], 600);
    ck_assert_uint_eq(r.per_second[HB_CTR_CONN_OPENED], 0);
    hb_counters_snapshot(&c, 300 + H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_CONN_CLOSED], 1);
    ck_assert_uint_eq(r.cumulative[HB_CTR_CONN_CLOSED], 1);
    hb_counters_close(&c);
}
END_TEST

START_TEST(test_batch)
{
    hb_counters_t c;
    hb_report_t r;
    hb_counters_batch_t b;
    ck_assert_int_eq(hb_counters_init(&c, 2, HB_REPORTER_SERVER), 0);
    hb_counters_batch_init(&b, &c, 1);
    ck_assert_ptr_eq(b.counters, &c);
    ck_assert_uint_eq(b.shard, 1);
    hb_counters_batch_flush(&b); /* empty: nothing */
    hb_counters_batch_add(&b, HB_CTR_REQUESTS, 700, 1);
    hb_counters_batch_add(&b, HB_CTR_REQUESTS, 700, 1);
    hb_counters_batch_add(&b, HB_CTR_FRAME_SHAKE_REPLY, 700, 1);
    hb_counters_batch_add(&b, 59, 700, 7);
    hb_counters_batch_add(&b, HB_COUNTER_SLOTS, 700, 100); /* out of range: ignored */
    /* Gathered, not yet in the shard. */
    hb_counters_snapshot(&c, 700, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_REQUESTS], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_REQUESTS], 0);
    hb_counters_batch_flush(&b);
    hb_counters_snapshot(&c, 700, &r);
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        uint64_t want = i == HB_CTR_REQUESTS            ? 2
                        : i == HB_CTR_FRAME_SHAKE_REPLY ? 1
                        : i == 59                       ? 7
                                                        : 0;
        ck_assert_uint_eq(r.per_second[i], want);
        ck_assert_uint_eq(r.cumulative[i], want);
    }
    ck_assert_uint_eq(b.slots, 0);
    hb_counters_batch_flush(&b); /* flushed once only */
    hb_counters_snapshot(&c, 700, &r);
    ck_assert_uint_eq(r.cumulative[HB_CTR_REQUESTS], 2);

    /* Another second flushes the one the batch holds, to its own second. */
    hb_counters_batch_add(&b, HB_CTR_RESPONSES, 701, 3);
    hb_counters_batch_add(&b, HB_CTR_RESPONSES, 702, 4);
    hb_counters_snapshot(&c, 701, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], 3);
    ck_assert_uint_eq(r.cumulative[HB_CTR_RESPONSES], 3);
    /* A late second inside the window goes to its own second too. */
    hb_counters_batch_add(&b, HB_CTR_RESPONSES, 701, 5);
    hb_counters_batch_flush(&b);
    hb_counters_snapshot(&c, 701, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], 8);
    hb_counters_snapshot(&c, 702, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], 4);
    ck_assert_uint_eq(r.cumulative[HB_CTR_RESPONSES], 12);
    /* UINT64_MAX and a second older than the window: the totals only. */
    hb_counters_batch_add(&b, HB_CTR_RESPONSES, UINT64_MAX, 1);
    hb_counters_batch_add(&b, HB_CTR_RESPONSES, 702 - H, 1);
    hb_counters_batch_flush(&b);
    hb_counters_snapshot(&c, 702 - H, &r);
    ck_assert_uint_eq(r.per_second[HB_CTR_RESPONSES], 0);
    ck_assert_uint_eq(r.cumulative[HB_CTR_RESPONSES], 14);
    /* Nothing went through shard 0. */
    ck_assert_uint_eq(r.cumulative[HB_CTR_FRAME_LOGIN], 0);

    /* A shard the set does not have: the counts are dropped, as hb_counters_add drops them. */
    hb_counters_batch_t none;
    hb_counters_batch_init(&none, &c, 2);
    hb_counters_batch_add(&none, HB_CTR_REQUESTS, 702, 50);
    hb_counters_batch_flush(&none);
    ck_assert_uint_eq(none.slots, 0);
    hb_counters_snapshot(&c, 702, &r);
    ck_assert_uint_eq(r.cumulative[HB_CTR_REQUESTS], 2);
    hb_counters_close(&c);
}
END_TEST

/* A batch flushed at any points gives what the same adds made one by one give. */
START_TEST(test_batch_equals_adds)
{
    hb_counters_t one, many;
    hb_counters_batch_t b;
    ck_assert_int_eq(hb_counters_init(&one, 1, HB_REPORTER_SERVER), 0);
    ck_assert_int_eq(hb_counters_init(&many, 1, HB_REPORTER_SERVER), 0);
    hb_counters_batch_init(&b, &many, 0);
    uint64_t x = 88172645463325252ull, t = 10000;
    for (unsigned n = 0; n < 20000; n++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 97 == 0)
            t += 1 + x % 3; /* forward, at times past the window */
        uint64_t when = x % 13 == 0 ? t - (x >> 8) % (2 * H) : t; /* late adds too */
        unsigned slot = (unsigned)((x >> 16) % HB_COUNTER_SLOTS);
        uint64_t delta = (x >> 32) % 5;
        hb_counters_add(&one, 0, slot, when, delta);
        hb_counters_batch_add(&b, slot, when, delta);
        if (x % 7 == 0)
            hb_counters_batch_flush(&b);
    }
    hb_counters_batch_flush(&b);
    for (uint64_t s = t - 2 * H; s <= t + 1; s++) {
        hb_report_t a, z;
        hb_counters_snapshot(&one, s, &a);
        hb_counters_snapshot(&many, s, &z);
        ck_assert_mem_eq(&a, &z, sizeof a);
    }
    hb_counters_close(&one);
    hb_counters_close(&many);
}
END_TEST

START_TEST(test_report_encode_vector)
{
    hb_report_t r;
    memset(&r, 0, sizeof r);
    r.second = 0x0102030405060708u;
    r.type = HB_REPORTER_SERVER;
    r.per_second[0] = 5;
    r.per_second[1] = 0x1122334455667788u;
    r.cumulative[0] = 0xA0;
    r.cumulative[59] = 7;

    uint8_t want[HB_REPORT_SIZE];
    memset(want, 0, sizeof want);
    for (unsigned i = 0; i < 8; i++)
        want[i] = (uint8_t)(i + 1); /* second */
    want[15] = 1;                   /* type */
    want[16 + 8 * 0 + 7] = 5;       /* per_second[0] */
    for (unsigned i = 0; i < 8; i++)
        want[16 + 8 * 1 + i] = (uint8_t)(0x11 * (i + 1)); /* per_second[1] */
    want[496 + 8 * 0 + 7] = 0xA0;                         /* cumulative[0] */
    want[496 + 8 * 59 + 7] = 7;                           /* cumulative[59] */
    ck_assert_uint_eq(496 + 8 * 60, HB_REPORT_SIZE);

    uint8_t got[HB_REPORT_SIZE + 1];
    memset(got, 0xEE, sizeof got);
    hb_report_encode(&r, got);
    ck_assert_mem_eq(got, want, HB_REPORT_SIZE);
    ck_assert_uint_eq(got[HB_REPORT_SIZE], 0xEE); /* nothing past the report */

    hb_report_t back;
    ck_assert_int_eq(hb_report_decode(want, sizeof want, &back), 0);
    ck_report_eq(&back, &r);
}
END_TEST

START_TEST(test_report_round_trip)
{
    hb_report_t r, back;
    uint64_t x = 0x9E3779B97F4A7C15u;
    r.second = 1700000000;
    r.type = HB_REPORTER_CLIENT;
    for (unsigned i = 0; i < HB_COUNTER_SLOTS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        r.per_second[i] = x;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        r.cumulative[i] = x >> (i % 64);
    }
    uint8_t buf[HB_REPORT_SIZE];
    hb_report_encode(&r, buf);
    memset(&back, 0x55, sizeof back);
    ck_assert_int_eq(hb_report_decode(buf, sizeof buf, &back), 0);
    ck_report_eq(&back, &r);
    r.type = HB_REPORTER_SERVER;
    hb_report_encode(&r, buf);
    ck_assert_int_eq(hb_report_decode(buf, sizeof buf, &back), 0);
    ck_report_eq(&back, &r);
}
END_TEST

START_TEST(test_report_decode_errors)
{
    hb_report_t r, out, untouched;
    memset(&r, 0, sizeof r);
    r.second = 42;
    r.type = HB_REPORTER_SERVER;
    uint8_t buf[HB_REPORT_SIZE + 1];
    memset(buf, 0, sizeof buf);
    hb_report_encode(&r, buf);
    memset(&out, 0x5A, sizeof out);
    memcpy(&untouched, &out, sizeof out);

    ck_assert_int_eq(hb_report_decode(buf, 0, &out), HB_EREPORT);
    ck_assert_int_eq(hb_report_decode(buf, 8, &out), HB_EREPORT);
    ck_assert_int_eq(hb_report_decode(buf, HB_REPORT_SIZE - 1, &out), HB_EREPORT);
    ck_assert_int_eq(hb_report_decode(buf, HB_REPORT_SIZE + 1, &out), HB_EREPORT);
    buf[15] = 2; /* type 2 */
    ck_assert_int_eq(hb_report_decode(buf, HB_REPORT_SIZE, &out), HB_EREPORT);
    buf[15] = 1;
    buf[8] = 1; /* type 2^56 + 1 */
    ck_assert_int_eq(hb_report_decode(buf, HB_REPORT_SIZE, &out), HB_EREPORT);
    ck_assert_mem_eq(&out, &untouched, sizeof out);
    buf[8] = 0;
    ck_assert_int_eq(hb_report_decode(NULL, HB_REPORT_SIZE, &out), HB_EINVAL);
    ck_assert_int_eq(hb_report_decode(buf, HB_REPORT_SIZE, NULL), HB_EINVAL);
    ck_assert_mem_eq(&out, &untouched, sizeof out);
    ck_assert_int_eq(hb_report_decode(buf, HB_REPORT_SIZE, &out), 0);
    ck_assert_uint_eq(out.second, 42);
    ck_assert_uint_eq(out.type, HB_REPORTER_SERVER);
}
END_TEST

/* The small report both renderers are tested with. */
static void small_report(hb_report_t *r, uint64_t type)
{
    memset(r, 0, sizeof *r);
    r->second = 1700000000;
    r->type = type;
    r->per_second[HB_CTR_FRAME_LOGIN] = 3;
    r->per_second[HB_CTR_SHAKE_GOT] = 2;
    r->per_second[HB_CTR_SEND_AMOUNT_CLAIMED] = 150;
    r->per_second[7] = 4; /* free slots are not rendered */
    r->cumulative[HB_CTR_FRAME_LOGIN] = 10;
    r->cumulative[HB_CTR_SHAKE_GOT] = 7;
    r->cumulative[HB_CTR_SEND_AMOUNT_CLAIMED] = UINT64_MAX;
    r->cumulative[59] = 9;
}

static const char small_prometheus[] =
    "# HELP hb_report_second Unix second that the per_second gauges describe.\n"
    "# TYPE hb_report_second gauge\n"
    "hb_report_second 1700000000\n"
    "# HELP hb_frame_login_total Login frames seen (cmd 0), cumulative.\n"
    "# TYPE hb_frame_login_total counter\n"
    "hb_frame_login_total 10\n"
    "# HELP hb_frame_login_per_second Login frames seen (cmd 0), in the report second.\n"
    "# TYPE hb_frame_login_per_second gauge\n"
    "hb_frame_login_per_second 3\n"
    "# HELP hb_frame_login_reply_total Login reply frames seen (cmd 1), cumulative.\n"
    "# TYPE hb_frame_login_reply_total counter\n"
    "hb_frame_login_reply_total 0\n"
    "# HELP hb_frame_login_reply_per_second Login reply frames seen (cmd 1), in the report "
    "second.\n"
    "# TYPE hb_frame_login_reply_per_second gauge\n"
    "hb_frame_login_reply_per_second 0\n"
    "# HELP hb_frame_shake_total Shake frames seen (cmd 2), cumulative.\n"
    "# TYPE hb_frame_shake_total counter\n"
    "hb_frame_shake_total 0\n"
    "# HELP hb_frame_shake_per_second Shake frames seen (cmd 2), in the report second.\n"
    "# TYPE hb_frame_shake_per_second gauge\n"
    "hb_frame_shake_per_second 0\n"
    "# HELP hb_frame_shake_reply_total Shake reply frames seen (cmd 3), cumulative.\n"
    "# TYPE hb_frame_shake_reply_total counter\n"
    "hb_frame_shake_reply_total 0\n"
    "# HELP hb_frame_shake_reply_per_second Shake reply frames seen (cmd 3), in the report "
    "second.\n"
    "# TYPE hb_frame_shake_reply_per_second gauge\n"
    "hb_frame_shake_reply_per_second 0\n"
    "# HELP hb_frame_notice_total Send-envelope notice frames seen (cmd 4), cumulative.\n"
    "# TYPE hb_frame_notice_total counter\n"
    "hb_frame_notice_total 0\n"
    "# HELP hb_frame_notice_per_second Send-envelope notice frames seen (cmd 4), in the report "
    "second.\n"
    "# TYPE hb_frame_notice_per_second gauge\n"
    "hb_frame_notice_per_second 0\n"
    "# HELP hb_frame_claim_total Claim frames seen (cmd 5), cumulative.\n"
    "# TYPE hb_frame_claim_total counter\n"
    "hb_frame_claim_total 0\n"
    "# HELP hb_frame_claim_per_second Claim frames seen (cmd 5), in the report second.\n"
    "# TYPE hb_frame_claim_per_second gauge\n"
    "hb_frame_claim_per_second 0\n"
    "# HELP hb_frame_claim_reply_total Claim reply frames seen (cmd 6), cumulative.\n"
    "# TYPE hb_frame_claim_reply_total counter\n"
    "hb_frame_claim_reply_total 0\n"
    "# HELP hb_frame_claim_reply_per_second Claim reply frames seen (cmd 6), in the report "
    "second.\n"
    "# TYPE hb_frame_claim_reply_per_second gauge\n"
    "hb_frame_claim_reply_per_second 0\n"
    "# HELP hb_requests_total Requests, cumulative.\n"
    "# TYPE hb_requests_total counter\n"
    "hb_requests_total 0\n"
    "# HELP hb_requests_per_second Requests, in the report second.\n"
    "# TYPE hb_requests_per_second gauge\n"
    "hb_requests_per_second 0\n"
    "# HELP hb_responses_total Responses, cumulative.\n"
    "# TYPE hb_responses_total counter\n"
    "hb_responses_total 0\n"
    "# HELP hb_responses_per_second Responses, in the report second.\n"
    "# TYPE hb_responses_per_second gauge\n"
    "hb_responses_per_second 0\n"
    "# HELP hb_shake_got_total Shakes that got an envelope (result 14), cumulative.\n"
    "# TYPE hb_shake_got_total counter\n"
    "hb_shake_got_total 7\n"
    "# HELP hb_shake_got_per_second Shakes that got an envelope (result 14), in the report "
    "second.\n"
    "# TYPE hb_shake_got_per_second gauge\n"
    "hb_shake_got_per_second 2\n"
    "# HELP hb_shake_none_total Shakes that got no envelope (result 15), cumulative.\n"
    "# TYPE hb_shake_none_total counter\n"
    "hb_shake_none_total 0\n"
    "# HELP hb_shake_none_per_second Shakes that got no envelope (result 15), in the report "
    "second.\n"
    "# TYPE hb_shake_none_per_second gauge\n"
    "hb_shake_none_per_second 0\n"
    "# HELP hb_shake_all_taken_total Shakes answered all envelopes taken (result 16), cumulative.\n"
    "# TYPE hb_shake_all_taken_total counter\n"
    "hb_shake_all_taken_total 0\n"
    "# HELP hb_shake_all_taken_per_second Shakes answered all envelopes taken (result 16), in the "
    "report second.\n"
    "# TYPE hb_shake_all_taken_per_second gauge\n"
    "hb_shake_all_taken_per_second 0\n"
    "# HELP hb_shake_overload_total Shakes answered overloaded (result 17), cumulative.\n"
    "# TYPE hb_shake_overload_total counter\n"
    "hb_shake_overload_total 0\n"
    "# HELP hb_shake_overload_per_second Shakes answered overloaded (result 17), in the report "
    "second.\n"
    "# TYPE hb_shake_overload_per_second gauge\n"
    "hb_shake_overload_per_second 0\n"
    "# HELP hb_shake_handed_out_total Shake envelopes handed out, cumulative.\n"
    "# TYPE hb_shake_handed_out_total counter\n"
    "hb_shake_handed_out_total 0\n"
    "# HELP hb_shake_handed_out_per_second Shake envelopes handed out, in the report second.\n"
    "# TYPE hb_shake_handed_out_per_second gauge\n"
    "hb_shake_handed_out_per_second 0\n"
    "# HELP hb_conn_opened_total Connections opened, cumulative.\n"
    "# TYPE hb_conn_opened_total counter\n"
    "hb_conn_opened_total 0\n"
    "# HELP hb_conn_opened_per_second Connections opened, in the report second.\n"
    "# TYPE hb_conn_opened_per_second gauge\n"
    "hb_conn_opened_per_second 0\n"
    "# HELP hb_conn_closed_total Connections closed, cumulative.\n"
    "# TYPE hb_conn_closed_total counter\n"
    "hb_conn_closed_total 0\n"
    "# HELP hb_conn_closed_per_second Connections closed, in the report second.\n"
    "# TYPE hb_conn_closed_per_second gauge\n"
    "hb_conn_closed_per_second 0\n"
    "# HELP hb_shake_envelopes_total Shake envelopes generated, cumulative.\n"
    "# TYPE hb_shake_envelopes_total counter\n"
    "hb_shake_envelopes_total 0\n"
    "# HELP hb_shake_envelopes_per_second Shake envelopes generated, in the report second.\n"
    "# TYPE hb_shake_envelopes_per_second gauge\n"
    "hb_shake_envelopes_per_second 0\n"
    "# HELP hb_shake_received_total Shake envelopes received (client side), cumulative.\n"
    "# TYPE hb_shake_received_total counter\n"
    "hb_shake_received_total 0\n"
    "# HELP hb_shake_received_per_second Shake envelopes received (client side), in the report "
    "second.\n"
    "# TYPE hb_shake_received_per_second gauge\n"
    "hb_shake_received_per_second 0\n"
    "# HELP hb_shake_amount_issued_total Shake envelope amount issued (cents), cumulative.\n"
    "# TYPE hb_shake_amount_issued_total counter\n"
    "hb_shake_amount_issued_total 0\n"
    "# HELP hb_shake_amount_issued_per_second Shake envelope amount issued (cents), in the report "
    "second.\n"
    "# TYPE hb_shake_amount_issued_per_second gauge\n"
    "hb_shake_amount_issued_per_second 0\n"
    "# HELP hb_shake_amount_received_total Shake envelope amount received (cents), cumulative.\n"
    "# TYPE hb_shake_amount_received_total counter\n"
    "hb_shake_amount_received_total 0\n"
    "# HELP hb_shake_amount_received_per_second Shake envelope amount received (cents), in the "
    "report second.\n"
    "# TYPE hb_shake_amount_received_per_second gauge\n"
    "hb_shake_amount_received_per_second 0\n"
    "# HELP hb_send_created_total Send-envelopes created, cumulative.\n"
    "# TYPE hb_send_created_total counter\n"
    "hb_send_created_total 0\n"
    "# HELP hb_send_created_per_second Send-envelopes created, in the report second.\n"
    "# TYPE hb_send_created_per_second gauge\n"
    "hb_send_created_per_second 0\n"
    "# HELP hb_claims_granted_total Send-envelope claims granted, cumulative.\n"
    "# TYPE hb_claims_granted_total counter\n"
    "hb_claims_granted_total 0\n"
    "# HELP hb_claims_granted_per_second Send-envelope claims granted, in the report second.\n"
    "# TYPE hb_claims_granted_per_second gauge\n"
    "hb_claims_granted_per_second 0\n"
    "# HELP hb_send_amount_issued_total Send-envelope amount issued (cents), cumulative.\n"
    "# TYPE hb_send_amount_issued_total counter\n"
    "hb_send_amount_issued_total 0\n"
    "# HELP hb_send_amount_issued_per_second Send-envelope amount issued (cents), in the report "
    "second.\n"
    "# TYPE hb_send_amount_issued_per_second gauge\n"
    "hb_send_amount_issued_per_second 0\n"
    "# HELP hb_send_amount_claimed_total Send-envelope amount claimed (cents), cumulative.\n"
    "# TYPE hb_send_amount_claimed_total counter\n"
    "hb_send_amount_claimed_total 18446744073709551615\n"
    "# HELP hb_send_amount_claimed_per_second Send-envelope amount claimed (cents), in the report "
    "second.\n"
    "# TYPE hb_send_amount_claimed_per_second gauge\n"
    "hb_send_amount_claimed_per_second 150\n";

START_TEST(test_prometheus_exact)
{
    hb_report_t r;
    static char buf[16384];
    small_report(&r, HB_REPORTER_SERVER);
    int n = hb_report_format_prometheus(&r, "hb", buf, sizeof buf);
    ck_assert_int_eq(n, (int)strlen(small_prometheus));
    ck_assert_str_eq(buf, small_prometheus);
    ck_assert_uint_eq(strlen(buf), (size_t)n);
}
END_TEST

START_TEST(test_prometheus_default_prefix)
{
    hb_report_t r;
    static char with_null[16384], with_name[16384];
    small_report(&r, HB_REPORTER_CLIENT);
    int n = hb_report_format_prometheus(&r, NULL, with_null, sizeof with_null);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "hongbao", with_name, sizeof with_name), n);
    ck_assert_str_eq(with_null, with_name);
    ck_assert_int_eq(strncmp(with_null,
                             "# HELP hongbao_report_second Unix second that the per_second gauges "
                             "describe.\n# TYPE hongbao_report_second gauge\n"
                             "hongbao_report_second 1700000000\n",
                             strlen("# HELP hongbao_report_second Unix second that the per_second "
                                    "gauges describe.\n# TYPE hongbao_report_second gauge\n"
                                    "hongbao_report_second 1700000000\n")),
                     0);
    ck_assert_ptr_nonnull(strstr(with_null, "\nhongbao_send_amount_claimed_total "
                                            "18446744073709551615\n"));
    /* The small report in "hb" is the same text with the other prefix: 147 names longer. */
    ck_assert_uint_eq((size_t)n, strlen(small_prometheus) + 147 * 5);
}
END_TEST

START_TEST(test_prometheus_bad_arguments)
{
    hb_report_t r;
    char buf[16384];
    small_report(&r, HB_REPORTER_SERVER);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "", buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "9lives", buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "a-b", buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "a b", buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_prometheus(NULL, "hb", buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "hb", NULL, 10), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "hb", NULL, 0), HB_ENOBUFS);
    ck_assert_int_gt(hb_report_format_prometheus(&r, "_x:y9", buf, sizeof buf), 0);
    ck_assert_int_gt(hb_report_format_prometheus(&r, ":a", buf, sizeof buf), 0);
    ck_assert_int_eq(strncmp(buf, "# HELP :a_report_second ", 24), 0);
}
END_TEST

static const char small_json[] =
    "{\"second\":1700000000,\"type\":\"client\",\"per_second\":{"
    "\"frame_login\":3,\"frame_login_reply\":0,\"frame_shake\":0,\"frame_shake_reply\":0,"
    "\"frame_notice\":0,\"frame_claim\":0,\"frame_claim_reply\":0,\"requests\":0,"
    "\"responses\":0,\"shake_got\":2,\"shake_none\":0,\"shake_all_taken\":0,"
    "\"shake_overload\":0,\"shake_handed_out\":0,\"conn_opened\":0,\"conn_closed\":0,"
    "\"shake_envelopes\":0,\"shake_received\":0,\"shake_amount_issued\":0,"
    "\"shake_amount_received\":0,\"send_created\":0,\"claims_granted\":0,"
    "\"send_amount_issued\":0,\"send_amount_claimed\":150},\"cumulative\":{"
    "\"frame_login\":10,\"frame_login_reply\":0,\"frame_shake\":0,\"frame_shake_reply\":0,"
    "\"frame_notice\":0,\"frame_claim\":0,\"frame_claim_reply\":0,\"requests\":0,"
    "\"responses\":0,\"shake_got\":7,\"shake_none\":0,\"shake_all_taken\":0,"
    "\"shake_overload\":0,\"shake_handed_out\":0,\"conn_opened\":0,\"conn_closed\":0,"
    "\"shake_envelopes\":0,\"shake_received\":0,\"shake_amount_issued\":0,"
    "\"shake_amount_received\":0,\"send_created\":0,\"claims_granted\":0,"
    "\"send_amount_issued\":0,\"send_amount_claimed\":18446744073709551615}}";

START_TEST(test_json_exact)
{
    hb_report_t r;
    char buf[4096];
    small_report(&r, HB_REPORTER_CLIENT);
    int n = hb_report_format_json(&r, buf, sizeof buf);
    ck_assert_int_eq(n, (int)strlen(small_json));
    ck_assert_str_eq(buf, small_json);

    r.type = HB_REPORTER_SERVER;
    ck_assert_int_eq(hb_report_format_json(&r, buf, sizeof buf), n);
    ck_assert_int_eq(strncmp(buf, "{\"second\":1700000000,\"type\":\"server\",", 37), 0);
    ck_assert_str_eq(buf + 37, small_json + 37);

    r.type = 2;
    ck_assert_int_eq(hb_report_format_json(&r, buf, sizeof buf), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_json(NULL, buf, sizeof buf), HB_EINVAL);
    r.type = HB_REPORTER_CLIENT;
    ck_assert_int_eq(hb_report_format_json(&r, NULL, 1), HB_EINVAL);
    ck_assert_int_eq(hb_report_format_json(&r, NULL, 0), HB_ENOBUFS);
}
END_TEST

typedef int (*render_fn)(const hb_report_t *r, char *buf, size_t cap);

static int render_prometheus_hb(const hb_report_t *r, char *buf, size_t cap)
{
    return hb_report_format_prometheus(r, "hb", buf, cap);
}

/* Every cap from 0 to one past the need: below the need HB_ENOBUFS with "" in buf (cap > 0),
 * from the need on the full text; never a byte written at or past buf + cap. Each call gets a
 * buffer of exactly cap bytes plus a 64-byte guard that must stay intact, so ASan also catches
 * any write further out. */
static void check_every_cap(render_fn render, const hb_report_t *r, const char *want)
{
    size_t need = strlen(want) + 1;
    char guard[64];
    memset(guard, 0x7F, sizeof guard);
    for (size_t cap = 0; cap <= need + 1; cap++) {
        char *buf = malloc(cap + sizeof guard);
        ck_assert_ptr_nonnull(buf);
        memset(buf, 0x7F, cap + sizeof guard);
        int rc = render(r, buf, cap);
        if (cap < need) {
            ck_assert_int_eq(rc, HB_ENOBUFS);
            if (cap > 0)
                ck_assert_int_eq(buf[0], '\0');
        } else {
            ck_assert_int_eq(rc, (int)(need - 1));
            ck_assert_str_eq(buf, want);
        }
        ck_assert_mem_eq(buf + cap, guard, sizeof guard);
        free(buf);
    }
}

START_TEST(test_render_every_cap)
{
    hb_report_t r;
    small_report(&r, HB_REPORTER_CLIENT);
    check_every_cap(hb_report_format_json, &r, small_json);
    small_report(&r, HB_REPORTER_SERVER);
    check_every_cap(render_prometheus_hb, &r, small_prometheus);
}
END_TEST

START_TEST(test_render_max_sizes)
{
    hb_report_t r;
    static char buf[32768];
    memset(&r, 0xFF, sizeof r);
    r.type = HB_REPORTER_SERVER;
    ck_assert_int_eq(hb_report_format_json(&r, buf, sizeof buf), HB_REPORT_JSON_MAX - 1);
    ck_assert_int_eq(hb_report_format_json(&r, buf, HB_REPORT_JSON_MAX), HB_REPORT_JSON_MAX - 1);
    r.type = HB_REPORTER_CLIENT;
    ck_assert_int_eq(hb_report_format_json(&r, buf, HB_REPORT_JSON_MAX), HB_REPORT_JSON_MAX - 1);
    ck_assert_int_eq(hb_report_format_prometheus(&r, NULL, buf, sizeof buf),
                     (int)HB_REPORT_PROMETHEUS_MAX(7) - 1);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "x", buf, HB_REPORT_PROMETHEUS_MAX(1)),
                     (int)HB_REPORT_PROMETHEUS_MAX(1) - 1);
    ck_assert_int_eq(hb_report_format_prometheus(&r, "x", buf, HB_REPORT_PROMETHEUS_MAX(1) - 1),
                     HB_ENOBUFS);
    const char *long_prefix = "a_rather_long_metric_prefix_for_a_big_deployment";
    ck_assert_int_eq(hb_report_format_prometheus(&r, long_prefix, buf,
                                                 HB_REPORT_PROMETHEUS_MAX(strlen(long_prefix))),
                     (int)HB_REPORT_PROMETHEUS_MAX(strlen(long_prefix)) - 1);
}
END_TEST

/* Concurrency: MT_WRITERS threads each add through their own shard, second after second, while
 * a reader snapshots continuously. Every writer follows the same plan, so a shard that holds a
 * finished second holds exactly the plan's values for it. Per second t and writer:
 * - slots MAIN[j]: reps(t) adds of MAIN[j] + 1 at second t;
 * - slot 11: 3 added at second t - 1 (a late add inside the window);
 * - slot 12: 5 added at second t - (H - 1) (the oldest second still in the window);
 * - slot 13: 7 added at second t - H (out of the window: cumulative only). */
#define MT_WRITERS 4
#define MT_BASE    1000000u
#define MT_SECONDS 1500u
#define MT_END     (MT_BASE + MT_SECONDS - 1)
#define MT_LAG     8

static const unsigned mt_main[] = {0, 10, 14, 24, 33, 59};
#define MT_NMAIN (sizeof mt_main / sizeof mt_main[0])

static uint64_t mt_reps(uint64_t t)
{
    return 8 + (t % 13) * 3;
}

static int mt_is_main(unsigned k)
{
    for (unsigned j = 0; j < MT_NMAIN; j++)
        if (mt_main[j] == k)
            return 1;
    return 0;
}

/* One writer's final per-second value of slot k for second s (MT_BASE <= s <= MT_END). */
static uint64_t mt_expected(uint64_t s, unsigned k)
{
    if (mt_is_main(k))
        return mt_reps(s) * (k + 1);
    if (k == 11)
        return s + 1 <= MT_END ? 3 : 0;
    if (k == 12)
        return s + H - 1 <= MT_END ? 5 : 0;
    return 0;
}

/* One writer's cumulative total of slot k at the end. */
static uint64_t mt_total(unsigned k)
{
    uint64_t sum = 0;
    if (mt_is_main(k)) {
        for (uint64_t t = MT_BASE; t <= MT_END; t++)
            sum += mt_reps(t) * (k + 1);
        return sum;
    }
    return k == 11 ? 3 * MT_SECONDS : k == 12 ? 5 * MT_SECONDS : k == 13 ? 7 * MT_SECONDS : 0;
}

typedef struct mt_state {
    hb_counters_t c;
    pthread_barrier_t start;
    _Atomic uint64_t progress[MT_WRITERS]; /* last second each writer finished */
    atomic_bool writers_done;
    _Atomic uint64_t reader_rounds;
    /* Written by the reader only, read after it is joined. */
    unsigned long snapshots;
    unsigned long finished_checks;
    unsigned long failures;
    char first_failure[256];
} mt_state_t;

typedef struct mt_writer {
    mt_state_t *st;
    unsigned shard;
    pthread_t thread;
} mt_writer_t;

/* The lowest and highest second the writers have finished. */
static void mt_progress(mt_state_t *st, uint64_t *lo, uint64_t *hi)
{
    *lo = UINT64_MAX;
    *hi = 0;
    for (unsigned w = 0; w < MT_WRITERS; w++) {
        uint64_t p = atomic_load_explicit(&st->progress[w], memory_order_acquire);
        *lo = p < *lo ? p : *lo;
        *hi = p > *hi ? p : *hi;
    }
}

/* Pacing, so that the reader keeps checking all along while ring entries are being reused:
 * before second t a writer waits until every writer is at most MT_LAG seconds behind and the
 * reader has made t - MT_BASE rounds; before round n the reader waits until every writer has
 * finished second MT_BASE + n - MT_LAG. Progress-based, no sleep, no deadlock: the slowest
 * writer never waits for the others, and the writers never wait for a round the reader may not
 * start yet. */
static void mt_writer_pace(mt_state_t *st, uint64_t t)
{
    for (;;) {
        uint64_t lo, hi;
        mt_progress(st, &lo, &hi);
        if (lo + 1 + MT_LAG >= t &&
            atomic_load_explicit(&st->reader_rounds, memory_order_relaxed) >= t - MT_BASE)
            return;
        sched_yield();
    }
}

static void *mt_writer_main(void *arg)
{
    mt_writer_t *w = arg;
    hb_counters_t *c = &w->st->c;
    pthread_barrier_wait(&w->st->start);
    for (uint64_t t = MT_BASE; t <= MT_END; t++) {
        mt_writer_pace(w->st, t);
        for (uint64_t rep = 0; rep < mt_reps(t); rep++)
            for (unsigned j = 0; j < MT_NMAIN; j++)
                hb_counters_add(c, w->shard, mt_main[j], t, mt_main[j] + 1);
        hb_counters_add(c, w->shard, 11, t - 1, 3);
        hb_counters_add(c, w->shard, 12, t - (H - 1), 5);
        hb_counters_add(c, w->shard, 13, t - H, 7);
        atomic_store_explicit(&w->st->progress[w->shard], t, memory_order_release);
    }
    return NULL;
}

static void mt_fail(mt_state_t *st, uint64_t s, unsigned k, const char *what, uint64_t got,
                    uint64_t bound)
{
    if (st->failures++ == 0)
        snprintf(st->first_failure, sizeof st->first_failure,
                 "second %llu slot %u: %s (got %llu, bound %llu)", (unsigned long long)s, k, what,
                 (unsigned long long)got, (unsigned long long)bound);
}

/* Check one snapshot of second s taken after every writer had finished second min_done. */
static void mt_check(mt_state_t *st, const hb_report_t *r, uint64_t s, uint64_t min_done,
                     uint64_t *prev_cumulative)
{
    for (unsigned k = 0; k < HB_COUNTER_SLOTS; k++) {
        uint64_t bound = MT_WRITERS * mt_expected(s, k);
        if (r->per_second[k] > bound)
            mt_fail(st, s, k, "per-second above the final total", r->per_second[k], bound);
        if (r->cumulative[k] < prev_cumulative[k])
            mt_fail(st, s, k, "cumulative went down", r->cumulative[k], prev_cumulative[k]);
        if (r->cumulative[k] > MT_WRITERS * mt_total(k))
            mt_fail(st, s, k, "cumulative above the final total", r->cumulative[k],
                    MT_WRITERS * mt_total(k));
        prev_cumulative[k] = r->cumulative[k];
    }
    /* Once all writers finished second s + 1, each shard holds s complete or not at all, for
     * all slots alike: the sum is the same multiple m of the plan in every slot. */
    if (s + 1 > min_done)
        return;
    st->finished_checks++;
    uint64_t unit = mt_expected(s, 0);
    uint64_t m = r->per_second[0] / unit;
    if (r->per_second[0] % unit != 0 || m > MT_WRITERS)
        mt_fail(st, s, 0, "not whole shards", r->per_second[0], unit);
    for (unsigned k = 1; k < HB_COUNTER_SLOTS; k++) {
        if (k == 12) /* its last add comes H - 2 seconds later */
            continue;
        if (r->per_second[k] != m * mt_expected(s, k))
            mt_fail(st, s, k, "shards mixed", r->per_second[k], m * mt_expected(s, k));
    }
    if (r->per_second[12] % 5 != 0)
        mt_fail(st, s, 12, "partial late add", r->per_second[12], 5);
}

static void *mt_reader_main(void *arg)
{
    mt_state_t *st = arg;
    uint64_t prev_cumulative[HB_COUNTER_SLOTS] = {0};
    hb_report_t r;
    pthread_barrier_wait(&st->start);
    for (uint64_t round = 0;; round++) {
        /* Read the flag first: the round after it is seen set runs on the final state. */
        int last;
        uint64_t lo, hi;
        for (;;) {
            last = atomic_load_explicit(&st->writers_done, memory_order_acquire);
            mt_progress(st, &lo, &hi);
            if (last || lo + MT_LAG >= MT_BASE + round)
                break;
            sched_yield();
        }
        /* Seconds just finished, seconds whose ring entries are being reused right now, and
         * the newest ones. */
        const uint64_t wanted[] = {lo - 1,     lo,         lo + 1, lo + 1 - H, lo + 2 - H,
                                   hi + 1 - H, hi + 2 - H, hi,     hi + 1};
        for (unsigned i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
            uint64_t s = wanted[i];
            if (s < MT_BASE || s > MT_END)
                continue;
            hb_counters_snapshot(&st->c, s, &r);
            st->snapshots++;
            if (r.second != s || r.type != HB_REPORTER_SERVER)
                mt_fail(st, s, 0, "header", r.second, s);
            mt_check(st, &r, s, lo, prev_cumulative);
        }
        if (last)
            break;
        atomic_store_explicit(&st->reader_rounds, round + 1, memory_order_relaxed);
    }
    return NULL;
}

START_TEST(test_concurrent_writers_and_reader)
{
    static mt_state_t st;
    mt_writer_t writers[MT_WRITERS];
    pthread_t reader;
    memset(&st, 0, sizeof st);
    ck_assert_int_eq(hb_counters_init(&st.c, MT_WRITERS, HB_REPORTER_SERVER), 0);
    ck_assert_int_eq(pthread_barrier_init(&st.start, NULL, MT_WRITERS + 1), 0);
    for (unsigned w = 0; w < MT_WRITERS; w++)
        atomic_init(&st.progress[w], MT_BASE - 1);
    atomic_init(&st.writers_done, 0);
    atomic_init(&st.reader_rounds, 0);

    ck_assert_int_eq(pthread_create(&reader, NULL, mt_reader_main, &st), 0);
    for (unsigned w = 0; w < MT_WRITERS; w++) {
        writers[w].st = &st;
        writers[w].shard = w;
        ck_assert_int_eq(pthread_create(&writers[w].thread, NULL, mt_writer_main, &writers[w]), 0);
    }
    for (unsigned w = 0; w < MT_WRITERS; w++)
        ck_assert_int_eq(pthread_join(writers[w].thread, NULL), 0);
    atomic_store_explicit(&st.writers_done, 1, memory_order_release);
    ck_assert_int_eq(pthread_join(reader, NULL), 0);
    pthread_barrier_destroy(&st.start);

    ck_assert_msg(st.failures == 0, "%lu failures, first: %s", st.failures, st.first_failure);
    ck_assert_uint_gt(st.snapshots, 0);
    ck_assert_uint_ge(st.finished_checks, MT_SECONDS); /* one or more a round, paced */

    /* The final state: exact totals, exact seconds in the window, nothing before it. */
    hb_report_t r;
    for (uint64_t s = MT_END - H + 1; s <= MT_END; s++) {
        hb_counters_snapshot(&st.c, s, &r);
        for (unsigned k = 0; k < HB_COUNTER_SLOTS; k++)
            ck_assert_uint_eq(r.per_second[k], MT_WRITERS * mt_expected(s, k));
    }
    for (uint64_t s = MT_BASE; s <= MT_END - H; s += 7) {
        hb_counters_snapshot(&st.c, s, &r);
        for (unsigned k = 0; k < HB_COUNTER_SLOTS; k++)
            ck_assert_uint_eq(r.per_second[k], 0);
    }
    for (unsigned k = 0; k < HB_COUNTER_SLOTS; k++)
        ck_assert_uint_eq(r.cumulative[k], MT_WRITERS * mt_total(k));
    hb_counters_close(&st.c);
}
END_TEST

/* Entry reuse under fire: RU_WRITERS threads move to a new second on every round of adds, so
 * ring entries are reused all the time, while a reader keeps reading the second whose entry is
 * reused next. Each writer adds ru_value(t) once to every slot at second t, so in a shard
 * every slot of second s holds 0 or ru_value(s); the sum over shards is a multiple of
 * ru_value(s), which no mix with another second's values (ru_value(s) + k * H) can be. */
#define RU_WRITERS 2
#define RU_BASE    5000000u
#define RU_SECONDS 20000u
#define RU_END     (RU_BASE + RU_SECONDS - 1)

static uint64_t ru_value(uint64_t t)
{
    return 1000003 + (t - RU_BASE);
}

typedef struct ru_state {
    hb_counters_t c;
    pthread_barrier_t start;
    _Atomic uint64_t progress[RU_WRITERS];
    atomic_bool writers_done;
    unsigned long nonzero_reads; /* reader only */
    unsigned long failures;
    char first_failure[256];
} ru_state_t;

typedef struct ru_writer {
    ru_state_t *st;
    unsigned shard;
    pthread_t thread;
} ru_writer_t;

static void *ru_writer_main(void *arg)
{
    ru_writer_t *w = arg;
    pthread_barrier_wait(&w->st->start);
    for (uint64_t t = RU_BASE; t <= RU_END; t++) {
        for (unsigned k = 0; k < HB_COUNTER_SLOTS; k++)
            hb_counters_add(&w->st->c, w->shard, k, t, ru_value(t));
        atomic_store_explicit(&w->st->progress[w->shard], t, memory_order_release);
    }
    return NULL;
}

static void *ru_reader_main(void *arg)
{
    ru_state_t *st = arg;
    hb_report_t r;
    pthread_barrier_wait(&st->start);
    for (;;) {
        int last = atomic_load_explicit(&st->writers_done, memory_order_acquire);
        for (unsigned w = 0; w < RU_WRITERS; w++) {
            uint64_t p = atomic_load_explicit(&st->progress[w], memory_order_acquire);
            /* The seconds whose entries are reused next, and the newest ones. */
            const uint64_t wanted[] = {p + 1 - H, p + 2 - H, p + 3 - H, p + 1, p + 2};
            for (unsigned i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
                uint64_t s = wanted[i];
                if (s < RU_BASE || s > RU_END)
                    continue;
                hb_counters_snapshot(&st->c, s, &r);
                for (unsigned k = 0; k < HB_COUNTER_SLOTS; k++) {
                    uint64_t v = r.per_second[k];
                    if (v != 0)
                        st->nonzero_reads++;
                    if (v % ru_value(s) == 0 && v / ru_value(s) <= RU_WRITERS)
                        continue;
                    if (st->failures++ == 0)
                        snprintf(st->first_failure, sizeof st->first_failure,
                                 "second %llu slot %u: %llu is not a multiple of %llu",
                                 (unsigned long long)s, k, (unsigned long long)v,
                                 (unsigned long long)ru_value(s));
                }
            }
        }
        if (last)
            break;
    }
    return NULL;
}

START_TEST(test_concurrent_entry_reuse)
{
    static ru_state_t st;
    ru_writer_t writers[RU_WRITERS];
    pthread_t reader;
    memset(&st, 0, sizeof st);
    ck_assert_int_eq(hb_counters_init(&st.c, RU_WRITERS, HB_REPORTER_CLIENT), 0);
    ck_assert_int_eq(pthread_barrier_init(&st.start, NULL, RU_WRITERS + 1), 0);
    for (unsigned w = 0; w < RU_WRITERS; w++)
        atomic_init(&st.progress[w], RU_BASE - 1);
    atomic_init(&st.writers_done, 0);
    ck_assert_int_eq(pthread_create(&reader, NULL, ru_reader_main, &st), 0);
    for (unsigned w = 0; w < RU_WRITERS; w++) {
        writers[w].st = &st;
        writers[w].shard = w;
        ck_assert_int_eq(pthread_create(&writers[w].thread, NULL, ru_writer_main, &writers[w]), 0);
    }
    for (unsigned w = 0; w < RU_WRITERS; w++)
        ck_assert_int_eq(pthread_join(writers[w].thread, NULL), 0);
    atomic_store_explicit(&st.writers_done, 1, memory_order_release);
    ck_assert_int_eq(pthread_join(reader, NULL), 0);
    pthread_barrier_destroy(&st.start);

    ck_assert_msg(st.failures == 0, "%lu failures, first: %s", st.failures, st.first_failure);
    ck_assert_uint_gt(st.nonzero_reads, 0); /* at least the final round reads whole seconds */
    hb_report_t r;
    hb_counters_snapshot(&st.c, RU_END - H + 1, &r);
    hb_counters_snapshot(&st.c, RU_END - H + 1, &r);
    for (unsigned k = 0; k < HB_COUNTER_SLOTS; k++) {
        ck_assert_uint_eq(r.per_second[k], RU_WRITERS * ru_value(RU_END - H + 1));
        ck_assert_uint_eq(r.cumulative[k], RU_WRITERS * (uint64_t)RU_SECONDS *
                                               (ru_value(RU_BASE) + ru_value(RU_END)) / 2);
    }
    hb_counters_snapshot(&st.c, RU_END - H, &r);
    ck_assert_uint_eq(r.per_second[0], 0);
    hb_counters_close(&st.c);
}
END_TEST

/* The reporter types by name, and the instance identity a report carries: an IPv4 address and
 * port whole, any other host by its port alone, completed by where the reports come from. */
START_TEST(test_reporter_types_and_instance_identity)
{
    ck_assert_str_eq(hb_reporter_type_name(HB_REPORTER_CLIENT), "client");
    ck_assert_str_eq(hb_reporter_type_name(HB_REPORTER_SERVER), "server");
    ck_assert_ptr_null(hb_reporter_type_name(HB_REPORTER_TYPES));
    ck_assert_ptr_null(hb_reporter_type_name(UINT64_MAX));

    char buf[64];
    uint64_t id = hb_report_instance("10.0.0.2", 7000);
    ck_assert_uint_eq(id >> 48, 0x4849);
    ck_assert_uint_eq(id & 0xffffffffffffull, (10ull << 40 | 2ull << 16 | 7000));
    ck_assert_int_eq(hb_report_instance_label(id, "127.0.0.1", buf, sizeof buf), 13);
    ck_assert_str_eq(buf, "10.0.0.2:7000"); /* its own address, not the peer's */
    ck_assert_int_eq(hb_report_instance_label(hb_report_instance("255.255.255.255", 65535), NULL,
                                              buf, sizeof buf),
                     21);
    ck_assert_str_eq(buf, "255.255.255.255:65535");
    /* The port alone: IPv6, the wildcard, no host, a name. */
    const char *port_only[] = {"::1", "0.0.0.0", NULL, "localhost", "010.0.0.1"};
    for (size_t i = 0; i < sizeof port_only / sizeof port_only[0]; i++) {
        id = hb_report_instance(port_only[i], 8001);
        ck_assert_uint_eq(id, 0x4849ull << 48 | 8001);
        ck_assert_int_gt(hb_report_instance_label(id, "[::1]", buf, sizeof buf), 0);
        ck_assert_str_eq(buf, "[::1]:8001");
        ck_assert_int_gt(hb_report_instance_label(id, "", buf, sizeof buf), 0);
        ck_assert_str_eq(buf, "?:8001");
    }
    /* No identity: a port out of range; garbage is no identity either. */
    ck_assert_uint_eq(hb_report_instance("10.0.0.2", 0), 0);
    ck_assert_uint_eq(hb_report_instance("10.0.0.2", 65536), 0);
    ck_assert_uint_eq(hb_report_instance("10.0.0.2", -1), 0);
    const uint64_t garbage[] = {0, UINT64_MAX, 0x4849ull << 48, 0x4848ull << 48 | 80, 7000};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        ck_assert_int_eq(hb_report_instance_label(garbage[i], "h", buf, sizeof buf), HB_EINVAL);
    id = hb_report_instance("10.0.0.2", 7000);
    ck_assert_int_eq(hb_report_instance_label(id, NULL, NULL, 1), HB_EINVAL);
    ck_assert_int_eq(hb_report_instance_label(id, NULL, buf, 13), HB_ENOBUFS);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(hb_report_instance_label(id, NULL, buf, 14), 13);

    /* The identity survives the wire, in the per-second half of slot 13. */
    hb_report_t r, back;
    memset(&r, 0, sizeof r);
    r.type = HB_REPORTER_SERVER;
    r.per_second[HB_CTR_INSTANCE] = id;
    r.cumulative[HB_CTR_NIC_HOST] = 42;
    uint8_t wire[HB_REPORT_SIZE];
    hb_report_encode(&r, wire);
    ck_assert_int_eq(hb_report_decode(wire, sizeof wire, &back), 0);
    ck_assert_uint_eq(back.per_second[HB_CTR_INSTANCE], id);
    ck_assert_uint_eq(back.cumulative[HB_CTR_NIC_HOST], 42);
}
END_TEST

static Suite *counters_suite(void)
{
    Suite *s = suite_create("counters");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_application_names);
    tcase_add_test(tc, test_init_arguments);
    tcase_add_test(tc, test_add_and_snapshot_one_thread);
    tcase_add_test(tc, test_second_zero_and_max);
    tcase_add_test(tc, test_seconds_move_forward);
    tcase_add_test(tc, test_ring_wrap);
    tcase_add_test(tc, test_late_add_inside_window);
    tcase_add_test(tc, test_shards_are_summed);
    tcase_add_test(tc, test_batch);
    tcase_add_test(tc, test_batch_equals_adds);
    suite_add_tcase(s, tc);

    TCase *tr = tcase_create("report");
    tcase_set_timeout(tr, 30);
    tcase_add_test(tr, test_report_encode_vector);
    tcase_add_test(tr, test_report_round_trip);
    tcase_add_test(tr, test_report_decode_errors);
    tcase_add_test(tr, test_reporter_types_and_instance_identity);
    tcase_add_test(tr, test_prometheus_exact);
    tcase_add_test(tr, test_prometheus_default_prefix);
    tcase_add_test(tr, test_prometheus_bad_arguments);
    tcase_add_test(tr, test_json_exact);
    tcase_add_test(tr, test_render_every_cap);
    tcase_add_test(tr, test_render_max_sizes);
    suite_add_tcase(s, tr);

    TCase *tt = tcase_create("threads");
    tcase_set_timeout(tt, 30);
    tcase_add_test(tt, test_concurrent_writers_and_reader);
    tcase_add_test(tt, test_concurrent_entry_reuse);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(counters_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
