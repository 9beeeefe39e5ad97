/* Block devices from a partition (include/parley/blk.h): a disk's
 * geometry, reads, writes, flush, and batches of requests in one exit.
 * Buffers are PARLEY_BLK_BUF_ALIGN-aligned; a request that breaks a rule
 * (past the end, misaligned, a write to a read-only disk) stops the
 * partition — check against parley_blk_info first. */
#ifndef PARLEY_BLKSDK_H
#define PARLEY_BLKSDK_H

#include <stdint.h>
#include <parley/blk.h>

struct parley_disk {
	uint32_t dev;
	uint32_t sector_size;
	uint64_t sectors;
	uint32_t flags;           /* PARLEY_BLK_F_* */
	char name[PARLEY_DISK_NAME_MAX];
};

/* PARLEY_OK, or PARLEY_E_BAD_HANDLE past the last disk. */
int64_t parley_blk_info(uint32_t dev, struct parley_disk *d);
/* The disk named `name`: PARLEY_OK or PARLEY_E_BAD_HANDLE. */
int64_t parley_blk_find(const char *name, struct parley_disk *d);
/* Bytes moved, or PARLEY_E_IO. */
int64_t parley_blk_read(uint32_t dev, uint64_t sector, uint64_t count,
			void *buf);
int64_t parley_blk_write(uint32_t dev, uint64_t sector, uint64_t count,
			 const void *buf);
int64_t parley_blk_flush(uint32_t dev);
/* Run d[0..n) in order in one exit; each gets its status. Returns how
 * many succeeded. */
int64_t parley_blk_submit(struct parley_blk_desc *d, uint32_t n);

#endif
