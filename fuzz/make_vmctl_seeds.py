#!/usr/bin/env python3
"""Seeds for fuzz_vmctl (fuzz/seeds/vmctl): one chunking byte, then guest
frames of protocol version 4 as include/parley/vmctl.h draws them: each
valid type, a session, and a few violations (bad magic, wrong length, unterminated name,
version 1 and its retired WAIT)."""
import os, struct, sys

MAGIC, VER = 0x31435650, 4
def frame(t, payload, seq=1, magic=MAGIC, ver=VER, ln=None):
    return struct.pack('<IHHII', magic, ver, t, len(payload) if ln is None else ln, seq) + payload
def name(s, cap=64): return s.encode().ljust(cap, b'\0')
hello = frame(1, struct.pack('<II', 1, 0))
opn = frame(2, name('pingpong'), 2)
notify = frame(3, struct.pack('<II', 1, 0), 3)
wait_v1 = frame(4, struct.pack('<II', 1, 0), 4)  # version 1's WAIT: refused
state = frame(7, struct.pack('<II', 1, 0), 7)
close = frame(5, struct.pack('<II', 1, 0), 5)
digest = frame(6, name('/etc/app.conf', 128) + bytes(range(32)), 6)
seeds = {
    'hello': hello, 'open': opn, 'notify': notify, 'wait_v1': wait_v1,
    'state': state,
    'close': close, 'digest': digest,
    'session': hello + opn + notify + state + close + digest,
    'old_version': frame(1, struct.pack('<II', 1, 0), ver=1),
    'bad_magic': frame(1, struct.pack('<II', 1, 0), magic=0),
    'bad_len': frame(2, name('x'), ln=4096),
    'unterminated': frame(2, b'a' * 64),
    'dotdot': frame(6, name('/etc/../x', 128) + bytes(32)),
}
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'seeds', 'vmctl')
os.makedirs(out, exist_ok=True)
for k, v in seeds.items():
    with open(os.path.join(out, k), 'wb') as f:
        f.write(b'\x03' + v)
