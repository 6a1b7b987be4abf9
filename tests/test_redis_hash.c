/* Tests of the Redis Cluster hashes (lib/core/hb_redis_hash.c): CRC16/XMODEM, key slots with hash
 * tags, and SHA1, against published vectors and against slots Redis itself reported. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "hb_redis_hash.h"

static uint16_t slot_of(const char *key)
{
    return hb__keyslot(key, strlen(key));
}

START_TEST(crc16_vectors)
{
    ck_assert_uint_eq(hb__crc16("123456789", 9), 0x31C3);
    ck_assert_uint_eq(hb__crc16("", 0), 0);
    ck_assert_uint_eq(hb__crc16("A", 1), 0x58E5);
}
END_TEST

START_TEST(keyslot_hash_tags)
{
    ck_assert_uint_eq(slot_of("123456789"), 0x31C3 % 16384);
    /* Keys sharing a non-empty tag share a slot: the tag's own. */
    ck_assert_uint_eq(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    ck_assert_uint_eq(slot_of("{user1000}.following"), slot_of("user1000"));
    /* Only the first '{' and the first '}' after it count. */
    ck_assert_uint_eq(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    ck_assert_uint_eq(slot_of("foo{bar}{zap}"), slot_of("bar"));
    /* An empty tag, or no closing brace: the whole key. */
    ck_assert_uint_eq(slot_of("foo{}{bar}"), hb__crc16("foo{}{bar}", 10) % 16384);
    ck_assert_uint_eq(slot_of("foo{bar"), hb__crc16("foo{bar", 7) % 16384);
    ck_assert_uint_eq(slot_of("}foo{"), hb__crc16("}foo{", 5) % 16384);
    /* Bytes past a NUL count: the length says where the key ends. */
    ck_assert_uint_ne(hb__keyslot("a\0b", 3), hb__keyslot("a", 1));
    for (int i = 0; i < 1000; i++) {
        char key[32];
        int n = snprintf(key, sizeof key, "key:%d", i);
        ck_assert_uint_lt(hb__keyslot(key, (size_t)n), HB_KEYSLOTS);
    }
}
END_TEST

/* `redis-cli -p PORT CLUSTER KEYSLOT <key>` against Debian's redis-server 7.0.15 (the test
 * cluster of examples/fleet/cluster.sh), recorded. */
START_TEST(keyslot_as_redis_says)
{
    static const struct {
        const char *key;
        uint16_t slot;
    } said[] = {
        {"foo", 12182},
        {"bar", 5061},
        {"hello", 866},
        {"{user1000}.following", 3443},
        {"{user1000}.followers", 3443},
        {"foo{}{bar}", 8363},
        {"foo{{bar}}zap", 4015},
        {"hb:{env:1048576}:shares", 13777},
    };
    for (size_t i = 0; i < sizeof said / sizeof said[0]; i++)
        ck_assert_msg(slot_of(said[i].key) == said[i].slot, "%s: %u, Redis says %u", said[i].key,
                      slot_of(said[i].key), said[i].slot);
}
END_TEST

START_TEST(sha1_vectors)
{
    char hex[41];
    hb__sha1_hex("", 0, hex);
    ck_assert_str_eq(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    hb__sha1_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hb__sha1_hex(two, strlen(two), hex);
    ck_assert_str_eq(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    /* One million 'a': many blocks. */
    static char million[1000000];
    memset(million, 'a', sizeof million);
    hb__sha1_hex(million, sizeof million, hex);
    ck_assert_str_eq(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    /* Tails of 55, 56 and 64 bytes: the length in the same block, in the next, a block alone. */
    hb__sha1_hex(million, 55, hex);
    ck_assert_str_eq(hex, "c1c8bbdc22796e28c0e15163d20899b65621d65a");
    hb__sha1_hex(million, 56, hex);
    ck_assert_str_eq(hex, "c2db330f6083854c99d4b5bfb6e8f29f201be699");
    hb__sha1_hex(million, 64, hex);
    ck_assert_str_eq(hex, "0098ba824b5c16427bd7a1122a5a442a25ec644d");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis_hash");
    TCase *tc = tcase_create("hashes");
    tcase_add_test(tc, crc16_vectors);
    tcase_add_test(tc, keyslot_hash_tags);
    tcase_add_test(tc, keyslot_as_redis_says);
    tcase_add_test(tc, sha1_vectors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
