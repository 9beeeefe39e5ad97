/*
 * The block request decoder: one place that says whether a partition's
 * block request (include/parley/blk.h) may run, used by the vmm for
 * BLK_READ, BLK_WRITE, BLK_FLUSH and every descriptor of BLK_SUBMIT, and
 * by the fuzz target. Pure: no I/O, only the disks' geometry and the
 * partition's memory map (struct gmem). A refusal names the stop reason
 * (agent/ctl/stop.h) and says what was wrong.
 */
#ifndef PARLEY_CTL_BLKREQ_H
#define PARLEY_CTL_BLKREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <parley/blk.h>
#include "agent/ctl/gmem.h"

/* What the vmm knows of one disk. */
struct blk_geom {
	uint64_t sectors;
	uint32_t sector_size;  /* 512 or 4096 */
	bool read_only;
};

/* A request that passed: the bytes it moves and the file offset. */
struct blk_plan {
	uint32_t dev, op;
	uint64_t off, bytes;
	parley_gpa_t buf;
};

/* Check one descriptor against ndev disks and the partition's memory.
 * 0 and *plan filled, or the enum vmx_stop reason with why[0..cap)
 * saying what (NUL-terminated). */
unsigned blk_check(const struct blk_geom *disks, unsigned ndev,
		   const struct gmem *gm, const struct parley_blk_desc *d,
		   struct blk_plan *plan, char *why, size_t cap);

/* Check a whole batch, already copied out of guest memory: n in
 * 1..PARLEY_BLK_BATCH_MAX and every descriptor as blk_check says.
 * 0, or the reason of the first refusal (why names its index). */
unsigned blk_check_batch(const struct blk_geom *disks, unsigned ndev,
			 const struct gmem *gm,
			 const struct parley_blk_desc *d, uint32_t n,
			 struct blk_plan *plans, char *why, size_t cap);

#endif
