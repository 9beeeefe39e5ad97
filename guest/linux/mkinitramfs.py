#!/usr/bin/env python3
"""The Linux VMs' initramfs (gzip'd cpio, newc): busybox-static, the guest
tool parley-chan, the init script, and the few kernel modules the Debian
cloud kernel keeps outside its image (virtio PCI and console, fw_cfg).

  mkinitramfs.py OUT BUSYBOX PARLEY_CHAN INIT MODULES_DIR

Deterministic (mtimes 0, sorted): the same inputs make the same bytes, so a
rebuild that changes nothing changes no VM test input."""
import gzip, io, os, sys

MODULES = [  # load order: each after what it needs
    'kernel/drivers/virtio/virtio_ring.ko',
    'kernel/drivers/virtio/virtio.ko',
    'kernel/drivers/virtio/virtio_pci_modern_dev.ko',
    'kernel/drivers/virtio/virtio_pci_legacy_dev.ko',
    'kernel/drivers/virtio/virtio_pci.ko',
    'kernel/drivers/char/virtio_console.ko',
    'kernel/drivers/firmware/qemu_fw_cfg.ko',
]

def entry(out, ino, name, mode, data=b'', nlink=1):
    name_b = name.encode() + b'\0'
    hdr = '070701' + ''.join('%08x' % v for v in (
        ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
    out.write(hdr.encode() + name_b)
    out.write(b'\0' * (-(110 + len(name_b)) % 4))
    out.write(data)
    out.write(b'\0' * (-len(data) % 4))

def main():
    out_path, busybox, tool, init, moddir = sys.argv[1:6]
    files = []  # (name, mode, data)
    for d in ('bin', 'dev', 'proc', 'sys', 'run', 'tmp', 'lib', 'lib/modules'):
        files.append((d, 0o040755, b''))
    rd = lambda p: open(p, 'rb').read()
    files.append(('bin/busybox', 0o100755, rd(busybox)))
    files.append(('bin/sh', 0o120777, b'busybox'))
    files.append(('bin/parley-chan', 0o100755, rd(tool)))
    files.append(('init', 0o100755, rd(init)))
    for m in MODULES:
        files.append(('lib/modules/' + os.path.basename(m), 0o100644,
                      rd(os.path.join(moddir, m))))
    buf = io.BytesIO()
    for i, (name, mode, data) in enumerate(sorted(files)):
        entry(buf, i + 1, name, mode, data, 2 if mode & 0o040000 else 1)
    entry(buf, 0, 'TRAILER!!!', 0)
    tmp = out_path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(gzip.compress(buf.getvalue(), 6, mtime=0))
    os.replace(tmp, out_path)

main()
