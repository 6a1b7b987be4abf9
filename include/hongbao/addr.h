/* Endpoints as text: the library's one parser of "HOST:PORT" ("127.0.0.1:1025", "[::1]:8080") and
 * of IP address literals. Pure string work (no sockets, no name lookup): part of the core. The
 * runtime turns a host it accepts into a socket address (lib/runtime/hb_sock.c). */
#ifndef HONGBAO_ADDR_H
#define HONGBAO_ADDR_H

#include <stddef.h>

#include "hongbao/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for any host hb_addr_parse accepts, NUL included: the longest IPv6 text (45 bytes,
 * "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), '%' and a 15-byte zone, the NUL. */
#define HB_ADDR_HOST_SIZE 62

/* hb_addr_family's answers. */
#define HB_ADDR_IPV4 4
#define HB_ADDR_IPV6 6

/* Which kind of IP address literal text is (NUL-terminated; never read past the NUL):
 * HB_ADDR_IPV4 for dotted decimal, four numbers 0..255 without leading zeros ("127.0.0.1");
 * HB_ADDR_IPV6 for the text forms of RFC 4291 ("::1", "2001:db8::7", "::ffff:192.0.2.1"),
 * optionally followed by '%' and a zone of 1 to 15 letters, digits, '.', '_' or '-'
 * ("fe80::1%eth0"); 0 for anything else: NULL, empty, a name, brackets, spaces. These are the forms
 * inet_pton and libuv's uv_ip4_addr/uv_ip6_addr take. */
HB_EXTERN int hb_addr_family(const char *text);

/* Parse "HOST:PORT" (NUL-terminated text; never read past the NUL). HOST is an IP address literal
 * (hb_addr_family), in brackets or not: "[::1]:8080", "127.0.0.1:80", "[10.0.0.1]:80"; an
 * unbracketed IPv6 host ends at the last colon ("::1:8080" is ::1 port 8080), so write brackets to
 * be plain. PORT is decimal digits (leading zeros allowed) of a value 0..65535, and nothing follows
 * it. Copies HOST without brackets into host (host_size bytes, NUL included) and the port into
 * *port. Returns 0; HB_EINVAL when text is not of that form (NULL, no colon, an empty host or one
 * that is not an IP address, unbalanced brackets, an empty port or one past 65535, anything after
 * it); HB_ENOBUFS when HOST does not fit host_size (HB_ADDR_HOST_SIZE bytes always do). host and
 * *port are untouched on error. Port 0 is accepted (a listener's "any free port"): a caller that
 * needs a real port checks. */
HB_EXTERN int hb_addr_parse(const char *text, char *host, size_t host_size, int *port);

#ifdef __cplusplus
}
#endif

#endif /* HONGBAO_ADDR_H */
