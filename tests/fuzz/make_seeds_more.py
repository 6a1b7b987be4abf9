#!/usr/bin/env python3
"""Write the seed corpora of fuzz_report, fuzz_query and fuzz_http (tests/fuzz/corpus/report/,
query/ and http/): valid and broken inputs in each target's input layout, taken from the shapes
the unit tests use. Files named crash-* in those directories are regression inputs kept by hand:
this script leaves them alone.
Run from anywhere: python3 tests/fuzz/make_seeds_more.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SLOTS = 60


# ---- report: 976 bytes, then optionally a Prometheus prefix selector and prefix ----

def report(second, rtype, per_second=None, cumulative=None):
    ps = [0] * SLOTS
    cum = [0] * SLOTS
    for i, v in (per_second or {}).items():
        ps[i] = v
    for i, v in (cumulative or {}).items():
        cum[i] = v
    return struct.pack(">QQ%dQ%dQ" % (SLOTS, SLOTS), second, rtype, *(ps + cum))


SERVER = report(1700000000, 1, {0: 12, 2: 900, 10: 1000, 11: 1000, 14: 40, 15: 860, 20: 5},
                {0: 5000, 2: 90000, 10: 100000, 11: 99990, 20: 5000, 21: 12, 24: 123456})
CLIENT = report(1700000001, 0, {10: 999, 11: 998, 23: 41, 25: 4321, 50: 120, 52: 900},
                {10: 88888, 11: 88880, 23: 4000, 25: 400000, 54: 2100})
MAXED = report(2**64 - 1, 1, {i: 2**64 - 1 for i in range(SLOTS)},
               {i: 2**64 - 1 for i in range(SLOTS)})

REPORT = {
    "server": SERVER,
    "client": CLIENT,
    "all_max": MAXED,
    "short": SERVER[:100],
    # Selector byte (odd: mapped to metric-name characters, even: as is), then the prefix.
    "prefix_custom": CLIENT + b"\x00" + b"hb_custom:fleet",
    "prefix_invalid": b"\x00" * 15 + b"\x01" + b"\x00" * 960 + b"\x00" + b"9bad-prefix",
    "prefix_mapped_long": MAXED + b"\x01" + bytes(range(200)),
}


# ---- query: [name len][out size][bounds mode][a u32][b u32] name query ----

def query(name, q, out_size=32, mode=0, a=0, b=0):
    return struct.pack(">BBBII", len(name), out_size, mode, a, b) + name + q


QUERY = {
    "plain": query(b"qps", b"qps=100&sum=5"),
    "first_wins": query(b"a", b"a=1&a=2&b=3"),
    "encoded_key": query(b"q s", b"x=1&q%20s=2&q+s=3"),
    "encoded_value": query(b"name", b"name=hello%2C+world%21", out_size=8),
    "bad_escape": query(b"v", b"v=%zz&v=%4"),
    "no_value": query(b"flag", b"flag&x=1"),
    "empty_pairs": query(b"x", b"&&=&x=&x=9"),
    "bounded": query(b"n", b"n=500", mode=1, a=100, b=1000),
    "out_of_range": query(b"n", b"n=99", mode=1, a=100, b=1000),
    "near_max": query(b"n", b"n=18446744073709551615", mode=2, a=0, b=0),
    "overflow": query(b"n", b"n=18446744073709551616"),
    "min_above_max": query(b"n", b"n=5", mode=1, a=10, b=1),
    "sign_and_space": query(b"n", b"n=-1&n=+1&n=%2B1"),
    "nul_inside": query(b"k", b"k=a%00b&k\x00=1"),
    "tiny_buffer": query(b"s", b"s=abcdef", out_size=0),
}


# ---- http: a script of operations over up to 4 connections (see tests/fuzz/fuzz_http.c) ----

def op(kind, slot=0, arg=0):
    return bytes([kind << 4 | (arg & 3) << 2 | (slot & 3)])


def send(data, slot=0):
    return op(0, slot) + struct.pack(">H", len(data)) + data


def pump(turns=3, slot=0):
    return op(1, slot, turns)


def shut(slot=0):
    return op(2, slot)


def reset(slot=0):
    return op(3, slot)


def stop_reading(slot=0):
    return op(4, slot)


def resume(slot=0):
    return op(5, slot)


def close(slot=0):
    return op(6, slot)


def wait_reply(slot=0):
    return op(7, slot)


def http(data, first=0, second=0):
    """One connection sent data in up to three pieces (first, second, the rest), the loop turning
    between them, then half-closed at the end by the harness."""
    cuts = []
    if first:
        cuts.append(data[:first])
        data = data[first:]
        if second:
            cuts.append(data[:second])
            data = data[second:]
    cuts.append(data)
    return b"".join(send(c) + pump(0) for c in cuts if c) or pump(0)


GET_ECHO = b"GET /echo?a=1&b=10 HTTP/1.1\r\nHost: x\r\n\r\n"
HTTP = {
    "get_echo": http(GET_ECHO),
    "echo_params": http(b"GET /echo?a=1000&b=18446744073709551605&s=hi%21&n=X-Test&h=ok HTTP/1.1"
                        b"\r\nHost: x\r\n\r\n"),
    "echo_bad_params": http(b"GET /echo?a=1001&b=10 HTTP/1.1\r\n\r\n"
                            b"GET /echo?a=x HTTP/1.1\r\n\r\n"
                            b"GET /echo?b=10 HTTP/1.1\r\n\r\n"
                            b"GET /echo?a=1&b=10&s=%zz HTTP/1.1\r\n\r\n"),
    "echo_bad_header": http(b"GET /echo?a=1&b=10&n=Content-Length&h=5 HTTP/1.1\r\n\r\n"
                            b"GET /echo?a=1&b=10&n=X&h=a%0D%0Ab HTTP/1.1\r\n\r\n"
                            b"GET /echo?a=1&b=10&n=Bad%20Name&h=v HTTP/1.1\r\n\r\n"),
    "pipelined_split": http(GET_ECHO * 3, first=20, second=30),
    "post_body": http(b"POST /body HTTP/1.1\r\nHost: x\r\nX-CT: text/plain\r\n"
                      b"Content-Length: 11\r\n\r\nhello world", first=50),
    "chunked": http(b"POST /body?status=201 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", first=70, second=8),
    "expect_continue": http(b"PUT /body HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
                            b"\r\nbody", first=60),
    "expect_no_body": http(b"PUT /body HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 40\r\n"
                           b"\r\nshort"),
    "status_204_body": http(b"POST /body?status=204 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
    "status_599": http(b"GET /body?status=599 HTTP/1.1\r\n\r\nGET /body?status=600 HTTP/1.1"
                       b"\r\n\r\n"),
    "head": http(b"HEAD /body HTTP/1.1\r\n\r\nHEAD /nowhere HTTP/1.1\r\n\r\n"),
    "silent_500": http(b"GET /silent HTTP/1.1\r\n\r\n" + GET_ECHO),
    "method_405": http(b"GET /post HTTP/1.1\r\n\r\nPOST /post HTTP/1.1\r\nContent-Length: 0"
                       b"\r\n\r\nDELETE /silent HTTP/1.1\r\n\r\n"),
    "not_found": http(b"GET / HTTP/1.1\r\n\r\nGET /echo/ HTTP/1.1\r\n\r\n"),
    "http10": http(b"GET /echo?a=2&b=20 HTTP/1.0\r\n\r\n"),
    "http10_keepalive": http(b"GET /echo?a=2&b=20 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                             b"GET /body HTTP/1.0\r\n\r\n"),
    "connection_close": http(b"GET /echo?a=3&b=30 HTTP/1.1\r\nConnection: close\r\n\r\n"
                             + GET_ECHO),
    "absolute_url": http(b"GET http://example.com:8080/echo?a=1&b=10 HTTP/1.1\r\n\r\n"),
    "connect": http(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
    "upgrade": http(b"GET /echo?a=1&b=10 HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    b"junk after upgrade"),
    "garbage": http(b"\x00\x01GARBAGE\r\n\r\n"),
    "bad_version": http(b"GET /echo HTTP/9.x\r\n\r\n"),
    "header_spaces": http(b"POST /body HTTP/1.1\r\nX-CT:   text/x  \t\r\nHost:\r\n"
                          b"Content-Length:  3 \r\n\r\nabc"),
    "folded_header": http(b"GET /echo?a=1&b=10 HTTP/1.1\r\nX-Long: one\r\n two\r\n\r\n"),
    "many_headers": http(b"GET /echo?a=1&b=10 HTTP/1.1\r\n"
                         + b"".join(b"X-H%d: v\r\n" % i for i in range(33)) + b"\r\n"),
    "too_large_body": http(b"POST /body HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc"),
    "too_large_head": http(b"GET /echo?a=1&b=10 HTTP/1.1\r\nX-Pad: " + b"p" * 1100 + b"\r\n\r\n",
                           first=255, second=255),
    "bad_chunk": http(b"POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"),
    "byte_by_byte": http(b"GET /echo?a=7&b=77 HTTP/1.1\r\n\r\n", first=1, second=1),
    "methods": http(b"".join(m + b" /echo?a=1&b=10 HTTP/1.1\r\n\r\n" for m in (
        b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"PROPFIND", b"MKCOL", b"PURGE", b"REPORT"))
        + b"PUT /post HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
    "odd_urls": http(b"OPTIONS * HTTP/1.1\r\n\r\nGET /echo?a=1&b=10#frag HTTP/1.1\r\n\r\n"
                     b"GET //echo?a=1&b=10 HTTP/1.1\r\n\r\nGET /echo?&a=%31&&b=1%30& HTTP/1.1"
                     b"\r\n\r\nGET /echo? HTTP/1.1\r\n\r\n"),
    "truncated": http(b"GET /echo?a=1&b=10 HTTP/1.1\r\nHost: x"),
    # Peers that misbehave while replies are in flight.
    "gone_pipelined_close": send(GET_ECHO * 5) + close(),
    "gone_pipelined_reset": send(b"GET /big?k=64 HTTP/1.1\r\n\r\n" * 5) + wait_reply() + reset(),
    "stop_reading_big": stop_reading() + send(b"GET /big?k=100 HTTP/1.1\r\n\r\n" * 10)
    + pump(3) + pump(3) + reset(),
    "stop_then_resume": stop_reading() + send(b"GET /big?k=200 HTTP/1.1\r\n\r\n" * 4)
    + pump(3) + resume() + pump(3) + send(GET_ECHO),
    "half_close_then_read": send(GET_ECHO * 3) + shut() + pump(2),
    "half_close_mid_request": send(b"POST /body HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    + shut() + pump(1),
    "reset_mid_body": send(b"POST /body HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc") + pump(1)
    + reset(),
    "continue_then_reset": send(b"PUT /body HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9"
                                b"\r\n\r\n") + wait_reply() + reset(),
    "error_then_close": send(b"GET /echo HTTP/9.x\r\n\r\n" + GET_ECHO) + close(),
    "too_large_then_reset": send(b"POST /body HTTP/1.1\r\nContent-Length: 5000\r\n\r\n") + reset(),
    "four_connections": stop_reading(0) + send(b"GET /big?k=128 HTTP/1.1\r\n\r\n" * 3, 0)
    + send(GET_ECHO, 1) + send(b"GET /silent HTTP/1.1\r\n\r\n" * 2, 2) + close(2)
    + wait_reply(1) + reset(0) + shut(1) + send(b"GET /nowhere HTTP/1.1\r\n\r\n", 3) + reset(3),
    "reopen_after_reset": send(GET_ECHO) + reset() + send(GET_ECHO) + wait_reply() + close()
    + send(b"GET /big?k=1 HTTP/1.1\r\n\r\n"),
}


def write(name, seeds):
    out = os.path.join(HERE, "corpus", name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if not f.startswith("crash-"):
            os.remove(os.path.join(out, f))
    for key, data in sorted(seeds.items()):
        with open(os.path.join(out, key), "wb") as f:
            f.write(data)
    print("wrote %d seeds (%d bytes) to %s" % (len(seeds), sum(map(len, seeds.values())), out))


assert len(SERVER) == 976
write("report", REPORT)
write("query", QUERY)
write("http", HTTP)
