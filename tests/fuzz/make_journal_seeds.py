#!/usr/bin/env python3
"""Write the seed corpus of fuzz_journal (tests/fuzz/corpus/journal/): small journals in the
format of include/hongbao/journal.h, encoded here independently of the C code (so the seeds
also cross-check the encoder), plus torn and corrupt variants.
Run from anywhere: python3 tests/fuzz/make_journal_seeds.py"""
import os
import struct


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

HEADER = b"HBLEDGER" + struct.pack(">I", 1)


def frame(payload):
    return struct.pack(">II", len(payload), crc32c(payload)) + payload


def env_fields(eid, total, recipients, shares, created):
    return struct.pack(">II3I3IQ", eid, total, *recipients, *shares, created)


def envelope(eid, recipients, shares, created=1700000000):
    return frame(b"\x01" + env_fields(eid, sum(shares), recipients, shares, created))


def claim(eid, user, amount):
    return frame(struct.pack(">BIII", 2, eid, user, amount))


def expire(eid):
    return frame(struct.pack(">BI", 3, eid))


def state(eid, recipients, shares, claimed, created=1700000000):
    got = sum(s for i, s in enumerate(shares) if claimed & (1 << i))
    return frame(b"\x04" + env_fields(eid, sum(shares), recipients, shares, created)
                 + struct.pack(">BI", claimed, got))


def snapshot(max_id, outstanding, envelopes, claims, expired, issued, claimed, expired_amount):
    return frame(struct.pack(">BIIQQQQQQ", 5, max_id, outstanding, envelopes, claims, expired,
                             issued, claimed, expired_amount))


E = {i: ([3 * i + 1, 3 * i + 2, 3 * i + 3], [10, 20, 30 + i % 7]) for i in range(1, 9)}

history = HEADER
for i in range(1, 6):
    history += envelope(0x200000 + i, *E[i])
history += claim(0x200005, E[5][0][0], E[5][1][0])
history += claim(0x200005, E[5][0][2], E[5][1][2])
history += claim(0x200005, E[5][0][1], E[5][1][1])
history += claim(0x200002, E[2][0][1], E[2][1][1])
history += claim(0x200003, E[3][0][0], E[3][1][0])
history += claim(0x200003, E[3][0][2], E[3][1][2])
history += claim(0x200004, E[4][0][0], E[4][1][0])
history += expire(0x200004)

# A compacted journal: 600 envelopes issued, two outstanding (7: 60 unclaimed; 8: 41 of 61
# unclaimed), 63 expired, the rest claimed; then a tail.
compacted = (HEADER
             + snapshot(600, 2, 600, 1795, 3, 40000, 40000 - 63 - 60 - 41, 63)
             + state(7, *E[7], 0b000)
             + state(8, *E[8], 0b010)
             + claim(7, E[7][0][0], E[7][1][0])
             + envelope(601, *E[1])
             + claim(601, E[1][0][2], E[1][1][2]))

violations = (HEADER + envelope(10, *E[1]) + claim(10, 4, 10) + claim(10, 4, 10)
              + claim(10, 999, 5) + claim(10, 5, 9999) + expire(77) + claim(78, 1, 1))

SEEDS = {
    "header_only": HEADER,
    "history": history,
    "compacted": compacted,
    "violations": violations,
    "torn_tail": history[:-7],
    "torn_header": HEADER[:7],
    "zero_tail": history + b"\0" * 24,
    "crc_last": history[:-1] + bytes([history[-1] ^ 1]),
    "crc_middle": history[:40] + bytes([history[40] ^ 0x10]) + history[41:],
    "bad_length_middle": history[:12 + 49 + 3] + b"\x63" + history[12 + 49 + 4:],
    "bad_type": HEADER + frame(b"\x09" + b"\0" * 12),
    "other_version": b"HBLEDGER" + struct.pack(">I", 2) + history[12:],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "journal")
os.makedirs(out, exist_ok=True)
for name, data in sorted(SEEDS.items()):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(SEEDS), out))
