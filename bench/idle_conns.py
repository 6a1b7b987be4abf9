#!/usr/bin/env python3
"""Hold N logged-in connections to a libhongbao server until stdin closes or a signal arrives.

Used by bench/idle_memory.sh to measure the memory an idle connection costs. Loopback only:
connections are spread over source addresses 127.0.0.2.. so no address pair runs out of ports.
Prints 'ready N' on stdout once every connection has its login reply.
"""
import argparse
import selectors
import socket
import struct
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=19000)
    ap.add_argument("--first-user", type=int, default=1)
    ap.add_argument("--per-source", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    socks = []
    deadline = time.monotonic() + args.timeout
    sel = selectors.DefaultSelector()
    for i in range(args.count):
        src = "127.0.0.%d" % (2 + i // args.per_source)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.connect(("127.0.0.1", args.port))
        user = args.first_user + i
        s.sendall(struct.pack(">HHQI", 16, 0, int(time.time()), user))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
        if time.monotonic() > deadline:
            sys.exit("idle_conns: timed out connecting")
    pending = set(socks)
    while pending:
        if time.monotonic() > deadline:
            sys.exit("idle_conns: timed out waiting for %d login replies" % len(pending))
        for key, _ in sel.select(timeout=1.0):
            buf = key.data
            chunk = key.fileobj.recv(64)
            if not chunk:
                sys.exit("idle_conns: server closed a connection")
            buf.extend(chunk)
            if len(buf) >= 20 and key.fileobj in pending:
                length, cmd = struct.unpack(">HH", bytes(buf[:4]))
                if length != 20 or cmd != 1:
                    sys.exit("idle_conns: unexpected reply %d/%d" % (length, cmd))
                pending.discard(key.fileobj)
    print("ready %d" % len(socks), flush=True)
    sys.stdin.read()  # hold until the caller closes our stdin
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
