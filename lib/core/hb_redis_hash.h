/* The two hashes a Redis Cluster client computes itself: a key's cluster slot (CRC16 with hash
 * tags) and a Lua script's SHA1, the name EVALSHA runs it by. Internal to the library, not
 * installed; part of the core (no libuv). */
#ifndef HB_REDIS_HASH_H
#define HB_REDIS_HASH_H

#include <stddef.h>
#include <stdint.h>

/* A Redis Cluster has this many slots; a key's slot is below it. */
#define HB_KEYSLOTS 16384

/* CRC16/XMODEM of len bytes (polynomial 0x1021, initial value 0, no reflection): the checksum
 * Redis Cluster hashes keys with. crc16("123456789") = 0x31C3. */
uint16_t hb__crc16(const void *data, size_t len);

/* The cluster slot of a key of len bytes (any bytes, NUL included): hb__crc16 of the key mod
 * 16384, or of the bytes between the first '{' and the first '}' after it when there are any, so
 * that keys sharing a "{tag}" share a slot. An empty tag ("foo{}{bar}") hashes the whole key. */
uint16_t hb__keyslot(const char *key, size_t len);

/* The SHA1 of len bytes, as 40 lowercase hex digits and a NUL in out (what SCRIPT LOAD answers
 * for a script's text). */
void hb__sha1_hex(const void *data, size_t len, char out[41]);

#endif /* HB_REDIS_HASH_H */
