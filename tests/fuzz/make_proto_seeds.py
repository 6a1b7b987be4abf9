#!/usr/bin/env python3
"""Write the seed corpus of fuzz_proto (tests/fuzz/corpus/proto/): the byte vectors of
tests/test_proto.c, one frame or a few frames per file, plus a few broken streams.
Run from anywhere: python3 tests/fuzz/make_proto_seeds.py"""
import os
import struct

TS = 0x0102030405060708


def frame(cmd, payload, ts=TS):
    return struct.pack(">HHQ", 12 + len(payload), cmd, ts) + payload


def u32s(*vals):
    return struct.pack(">%dI" % len(vals), *vals)


V = {
    "login": frame(0x0000, u32s(7)),
    "login_reply": frame(0x0001, u32s(7, 0)),
    "shake": frame(0x0002, u32s(0x0A0B0C0D), ts=0xFFEEDDCCBBAA9988),
    "shake_reply": frame(0x0003, u32s(0, 14, 0x100001, 123)),
    "notice": frame(0x0004, u32s(0x200002, 1000, 3, 11, 12, 13)),
    "claim": frame(0x0005, u32s(0, 0x200002)),
    "claim_reply": frame(0x0006, u32s(0x200002, 341)),
    "chat": frame(0x0100, u32s(9) + b"hi"),
    "chat_deliver": frame(0x0101, u32s(0x01020304) + b"hello"),
    "chat_reply": frame(0x0102, u32s(9, 1)),
}
# The vectors' lengths, as verified on the reference's wire.
assert V["login"] == bytes.fromhex("00100000 0102030405060708 00000007".replace(" ", ""))
assert [len(V[k]) for k in ("login", "login_reply", "shake_reply", "notice")] == [16, 20, 28, 36]

SEEDS = dict(("one_" + k, v) for k, v in V.items())
SEEDS["all_vectors"] = b"".join(V.values())
SEEDS["client_session"] = V["login"] + V["shake"] * 3 + V["claim"] + V["chat"]
SEEDS["server_session"] = (V["login_reply"] + V["shake_reply"] + V["notice"]
                           + V["claim_reply"] + V["chat_reply"] + V["chat_deliver"])
SEEDS["longest_chat"] = frame(0x0101, u32s(5) + bytes(range(256)))
SEEDS["long_chats"] = (frame(0x0100, u32s(1) + b"x" * 100) + V["claim"]
                       + frame(0x0101, u32s(2) + b"y" * 256))
SEEDS["truncated"] = V["login"] + V["notice"][:20]
SEEDS["bad_cmd_after_login"] = V["login"] + frame(0x0007, u32s(1))
SEEDS["bad_size"] = V["login"] + struct.pack(">HH", 17, 0) + b"\0" * 13
SEEDS["too_long"] = V["shake"] + b"\x02\x01\x00\x00"
SEEDS["too_short"] = V["claim"] + b"\x00\x0b\x00\x00"

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "proto")
os.makedirs(out, exist_ok=True)
for name, data in sorted(SEEDS.items()):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(SEEDS), out))
