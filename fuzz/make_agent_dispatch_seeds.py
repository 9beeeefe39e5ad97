#!/usr/bin/env python3
"""Seeds for fuzz_agent_dispatch: sequences of daemon->agent frames (u32
big-endian length + parley.v1.Envelope, proto/parley.proto), written from
the proto, not by parley's code. The target's host is "host-a", its
persisted policy version 5, its outbox seqs 1-3 synced and 4-5 not; a
POLICY frame's request_id % 3 picks its signature (0 as sent, 1 the key
the target holds, 2 a key it does not hold).
Run: python3 fuzz/make_agent_dispatch_seeds.py fuzz/seeds/agent_dispatch"""
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


def frame(body_field, body, rid=0):
    env = (field(1, 0, rid) if rid else b"") + field(body_field, 2, body)
    return struct.pack(">I", len(env)) + env


def welcome(host="host-a", version=6, acked=0, hb=1000):
    return frame(11, s(1, host) + field(2, 0, version) + field(3, 0, acked) +
                 field(4, 0, hb), rid=1)


def grant(channel="telemetry", a="a", b="b", direction=0, ring=65536):
    return (s(1, channel) + s(2, a) + s(3, b) + field(4, 0, direction) +
            field(5, 0, ring))


def body(host="host-a", version=6, grants=(grant(),)):
    out = s(1, host) + field(2, 0, version) + field(3, 0, 1700000000000)
    for g in grants:
        out += field(4, 2, g)
    return out


def policy(b, rid=1):
    bundle = (field(1, 2, b) + field(2, 2, b"\x00" * 64) +
              s(3, "0" * 64))
    return frame(12, bundle, rid)


def ack(seq):
    return frame(16, field(1, 0, seq))


def command(part, action, spec="", rid=0):
    return frame(17, s(1, part) + field(2, 0, action) +
                 (s(3, spec) if spec else b""), rid)


def heartbeat():
    return frame(19, field(1, 0, 1700000000000))


def error(code="HOST_MISMATCH", msg="certificate names another host"):
    return frame(20, s(1, code) + s(2, msg))


def offer(size, digest=b"\x11" * 32, version="1.2.3"):
    return frame(23, s(1, version) + field(2, 0, size) + field(3, 2, digest))


def chunk(offset, data, digest=b"\x11" * 32):
    return frame(24, field(1, 2, digest) + field(2, 0, offset) +
                 field(3, 2, data))


def rollback(request, expect=""):
    return frame(26, (s(1, expect) if expect else b"") +
                 field(2, 0, request))


SPEC = '{"name":"p2","image":"hello.elf","memory_mib":16}'

SEEDS = {
    # The ordinary session: welcome, the newer bundle, acks, commands.
    "session": welcome() + policy(body()) + ack(2) + heartbeat() +
    command("p2", 0, SPEC) + command("p2", 1) + command("nope", 2) + ack(3),
    "welcome-current": welcome(version=5) + ack(3),
    "welcome-holds-some": welcome(acked=2) + ack(3),
    "welcome-other-host": welcome(host="host-b") + policy(body()),
    "welcome-twice": welcome() + welcome(acked=5),
    "welcome-seq-beyond": welcome(acked=1 << 63),
    "welcome-seq-ahead": welcome(acked=100) + ack(100),
    "before-welcome": policy(body()) + ack(1) + command("p", 2) +
    heartbeat() + error() + welcome(),
    "ack-unsent": welcome() + ack(4) + ack(5) + ack((1 << 64) - 1),
    "ack-before-any-send": ack(1) + welcome(acked=0) + ack(0),
    "bundle-other-key": welcome() + policy(body(), rid=2),
    "bundle-forged": welcome() + policy(body(), rid=3),
    "bundle-stale": welcome() + policy(body(version=5)) +
    policy(body(version=4), rid=4),
    "bundle-other-host": welcome() + policy(body(host="host-b")),
    "bundle-bad-grant": welcome() + policy(body(grants=(
        grant(ring=3000), grant(a="x", b="x")))),
    "bundle-two-grants": welcome(version=7) + policy(body(version=7, grants=(
        grant(), grant("ctl", "b", "c", 2, 4096)))) +
    policy(body(version=7), rid=4),
    "bundle-no-grants": welcome() + policy(body(grants=())),
    "agent-bodies": welcome() + frame(10, s(1, "host-a") + field(4, 0, 1)) +
    frame(13, field(1, 0, 6) + field(2, 0, 1)),
    "error-not-ascii": error("X", "caf\u00e9 \u2603") + welcome(),
    # The daemon's update stream (agent/update/stage.c behind the link):
    # a package of 100 bytes in two chunks, checked when whole (refused:
    # not a package); a resumed offer, chunks at the wrong offset and of
    # another digest; a chunk beyond the size; a second offer replacing
    # the first; an offer too small; before a welcome.
    "update-stream": welcome() + offer(100) + chunk(0, b"P" * 60) +
    chunk(60, b"Q" * 40) + offer(100, b"\x22" * 32),
    "update-resume": welcome() + offer(4096) + chunk(0, b"x" * 100) +
    offer(4096) + chunk(50, b"y" * 10) + chunk(100, b"z" * 100,
                                               b"\x33" * 32) +
    chunk(100, b"z" * 100) + heartbeat(),
    "update-beyond": welcome() + offer(100) + chunk(0, b"x" * 200) +
    chunk(0, b"x" * 10),
    "update-replaced": welcome() + offer(1000) + chunk(0, b"a" * 10) +
    offer(2000, b"\x44" * 32) + chunk(10, b"b" * 10) +
    chunk(0, b"c" * 10, b"\x44" * 32),
    # wire_check refuses an offer of 79 bytes: the link closes there.
    "update-too-small": welcome() + offer(79) + offer(100),
    "update-before-welcome": offer(100) + chunk(0, b"x" * 100) + welcome(),
    # An operator's rollback (agent/update/rollback.c behind the link):
    # no previous kept, so refused; the same request again (answered the
    # same), another one expecting a version; one during a stream (busy);
    # request 0 and a version that is not X.Y.Z (wire_check: the link
    # closes there); before a welcome.
    "rollback": welcome() + rollback(1) + rollback(1) +
    rollback(2, "0.4.0 (abc)") + offer(100) + rollback(3) +
    chunk(0, b"x" * 100) + rollback(3),
    "rollback-hostile": welcome() + rollback(0) + rollback(4),
    "rollback-bad-version": welcome() + rollback(5, "v1") + rollback(6),
    "rollback-before-welcome": rollback(1) + welcome() + rollback(1),
    # Stored commands (issue 15): an id runs once; a resend of it, or of
    # an older one, is confirmed and not run; one without an id always
    # runs; ids as high as a store's INTEGER.
    "commands-stored-resent": welcome() + command("p2", 2, rid=7) +
    command("p2", 2, rid=7) + command("p2", 1, rid=5) +
    command("p2", 1) + command("p2", 1) + command("p2", 3, rid=8) +
    command("p2", 3, rid=(1 << 63) - 1) + command("p2", 1, rid=9),
    "commands-unknown-partition": welcome() + command("ghost", 1) +
    command("ghost", 3) + command("ghost", 4, '{"config":[]}'),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
