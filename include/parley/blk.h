/*
 * parley block devices: the disks a partition's spec declares ("disks"),
 * numbered 0..n-1 in spec order, served by the partition's own vmm process
 * from a file the agent opened (the data path never involves the agent).
 *
 * A request names a device, a first sector, a count of sectors and a
 * buffer in the partition's own memory. Every request is checked before a
 * byte moves: the device exists, [sector, sector + count) lies inside it,
 * count is 1..PARLEY_BLK_XFER_MAX bytes' worth, the buffer is
 * PARLEY_BLK_BUF_ALIGN-aligned and lies in memory the partition may write
 * (READ) or read (WRITE), and no write goes to a read-only disk. A request
 * that fails a check is malice or a bug, not an error to return: the
 * partition stops with the reason named (blk-device, blk-range,
 * blk-misaligned, blk-readonly, blk-request, blk-buffer). What the host's
 * storage does wrong comes back as PARLEY_E_IO.
 *
 * Batching: BLK_SUBMIT hands over an array of request descriptors (like
 * the channel ring, several requests per exit). The whole array is copied
 * once and every descriptor checked before the first one runs; then they
 * run in order and each gets its own status. A FLUSH descriptor orders:
 * it completes after every write before it.
 *
 * An encrypted disk (spec "encryption": aes-xts-plain64) looks the same
 * to the partition: the vmm encrypts each 512-byte unit with AES-256-XTS,
 * tweak = its byte offset / 512 (dm-crypt's plain64 IV), so the file is a
 * dm-crypt plain volume. Self-contained: only <stdint.h> and hypercall.h.
 */
#ifndef PARLEY_BLK_H
#define PARLEY_BLK_H

#include <stdint.h>
#include "hypercall.h"

#define PARLEY_DISKS_MAX      8
#define PARLEY_DISK_NAME_MAX  32
#define PARLEY_BLK_XFER_MAX   (1u << 20)  /* bytes per request */
#define PARLEY_BLK_BATCH_MAX  64          /* descriptors per SUBMIT */
#define PARLEY_BLK_BUF_ALIGN  512         /* buffer alignment, bytes */

#define PARLEY_BLK_F_READ_ONLY 0x1u
#define PARLEY_BLK_F_ENCRYPTED 0x2u

enum parley_blk_op {
	PARLEY_BLK_OP_READ = 1,
	PARLEY_BLK_OP_WRITE = 2,
	PARLEY_BLK_OP_FLUSH = 3,  /* sector, count, buf: 0 */
};

/* A device number past the last disk answers BAD_HANDLE here (so a
 * partition can count its disks); anywhere else it stops the partition. */
struct parley_hc_blk_info {
	uint32_t dev;          /* IN */
	uint32_t reserved;     /* IN: 0 */
	uint64_t sectors;      /* OUT */
	uint32_t sector_size;  /* OUT: 512 or 4096 */
	uint32_t flags;        /* OUT: PARLEY_BLK_F_* */
	int64_t ret;           /* OUT: PARLEY_OK, _E_BAD_HANDLE */
	char name[PARLEY_DISK_NAME_MAX]; /* OUT: the spec's name */
};

/* BLK_READ and BLK_WRITE. */
struct parley_hc_blk_io {
	uint32_t dev;          /* IN */
	uint32_t reserved;     /* IN: 0 */
	uint64_t sector;       /* IN: in the device's sector size */
	uint64_t count;        /* IN: sectors */
	parley_gpa_t buf;      /* IN: count * sector_size bytes */
	int64_t ret;           /* OUT: bytes moved, or _E_IO */
};

struct parley_hc_blk_flush {
	uint32_t dev;          /* IN */
	uint32_t reserved;     /* IN: 0 */
	int64_t ret;           /* OUT: PARLEY_OK, _E_IO */
};

/* One request of a batch: 40 bytes, 8-byte aligned in the array. */
struct parley_blk_desc {
	uint32_t dev;          /* IN */
	uint32_t op;           /* IN: enum parley_blk_op */
	uint64_t sector;       /* IN */
	uint32_t count;        /* IN: sectors */
	uint32_t reserved;     /* IN: 0 */
	parley_gpa_t buf;      /* IN */
	int64_t status;        /* OUT: bytes moved (0 for FLUSH), or _E_IO */
};

struct parley_hc_blk_submit {
	parley_gpa_t descs;    /* IN: struct parley_blk_desc[n], in memory
				* the partition may write */
	uint32_t n;            /* IN: 1..PARLEY_BLK_BATCH_MAX */
	uint32_t reserved;     /* IN: 0 */
	int64_t ret;           /* OUT: descriptors that succeeded */
};

#endif
