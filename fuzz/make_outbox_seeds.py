#!/usr/bin/env python3
"""Seeds for fuzz_outbox, written from the format documented in
agent/outbox.h (not by agent/outbox.c): a good file, and the same file torn,
corrupted, hostile. tests/test_outbox.c reads `valid3` back.
Run: python3 fuzz/make_outbox_seeds.py fuzz/seeds/outbox"""
import os
import struct
import sys


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def s(num, text):
    return field(num, 2, text.encode())


def audit_event(seq, event, channel):
    return (field(1, 0, seq) + field(2, 0, 1700000000000 + seq) +
            s(3, event) + s(4, "a") + s(5, channel) + s(6, "NO_GRANT"))


def envelope(body_field, body):
    return field(body_field, 2, body)


def audit(seqs):
    return envelope(15, b"".join(field(1, 2, audit_event(q, "open_denied", "c1"))
                                 for q in seqs))


def status(seq, state):
    return envelope(18, field(1, 0, seq) + s(2, "a") + s(3, state) +
                    s(7, "process"))


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def record(seq, env):
    frame = struct.pack(">I", len(env)) + env
    hdr = struct.pack("<IIQ", 0x52594C50, len(frame), seq)
    return hdr + struct.pack("<I", crc32c(hdr + frame)) + frame


def main(out):
    os.makedirs(out, exist_ok=True)
    recs = [record(2, audit([1, 2])), record(3, status(3, "running")),
            record(7, audit([6, 7]))]
    good = b"PARLEYOB" + b"".join(recs)
    seeds = {
        "valid3": good,
        "empty": b"",
        "header_only": b"PARLEYOB",
        "torn_header": b"PARL",
        "torn_tail": good[:-5],
        "torn_in_header": good[:len(good) - len(recs[2]) + 10],
        "flipped_middle": good[:40] + bytes([good[40] ^ 0x20]) + good[41:],
        "bad_header": b"PARLEYOX" + b"".join(recs),
        "seq_back": b"PARLEYOB" + recs[0] + recs[2] + recs[1],
        "seq_mismatch": b"PARLEYOB" + record(9, audit([1, 2])),
        "hello_record": b"PARLEYOB" + record(1, envelope(10, s(1, "host-a"))),
        "huge_len": b"PARLEYOB" + struct.pack("<IIQI", 0x52594C50,
                                              0xFFFFFFF0, 1, 0) + recs[0],
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/seeds/outbox")
