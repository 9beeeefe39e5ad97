/* The block request decoder (blkreq.h). Order of checks: device, op and
 * reserved fields, count, range (overflow-safe), read-only, buffer
 * alignment, then the buffer as memory the partition may use that way. */
#include "agent/ctl/blkreq.h"
#include "agent/ctl/stop.h"

#include <stdio.h>

#define REFUSE(r, ...) (snprintf(why, cap, __VA_ARGS__), (unsigned)(r))

unsigned blk_check(const struct blk_geom *disks, unsigned ndev,
		   const struct gmem *gm, const struct parley_blk_desc *d,
		   struct blk_plan *plan, char *why, size_t cap)
{
	if (d->dev >= ndev)
		return REFUSE(VMX_STOP_BLK_DEVICE, "device %u (the partition "
			      "has %u disks)", d->dev, ndev);
	const struct blk_geom *g = &disks[d->dev];
	if (d->reserved)
		return REFUSE(VMX_STOP_BLK_REQUEST, "reserved field is not 0");
	*plan = (struct blk_plan){ .dev = d->dev, .op = d->op };
	if (d->op == PARLEY_BLK_OP_FLUSH) {
		if (d->sector || d->count || d->buf)
			return REFUSE(VMX_STOP_BLK_REQUEST, "flush with "
				      "sector, count or buffer");
		return 0;
	}
	if (d->op != PARLEY_BLK_OP_READ && d->op != PARLEY_BLK_OP_WRITE)
		return REFUSE(VMX_STOP_BLK_REQUEST, "unknown op %u", d->op);
	if (g->sector_size != 512 && g->sector_size != 4096)
		return REFUSE(VMX_STOP_BLK_DEVICE, "device %u has no geometry",
			      d->dev);
	uint64_t bytes = (uint64_t)d->count * g->sector_size;
	if (d->count == 0 || bytes > PARLEY_BLK_XFER_MAX)
		return REFUSE(VMX_STOP_BLK_REQUEST, "count %u sectors (1..%u)",
			      d->count, PARLEY_BLK_XFER_MAX / g->sector_size);
	uint64_t end;
	if (__builtin_add_overflow(d->sector, (uint64_t)d->count, &end) ||
	    end > g->sectors)
		return REFUSE(VMX_STOP_BLK_RANGE, "sectors %llu + %u past the "
			      "end of device %u (%llu sectors)",
			      (unsigned long long)d->sector, d->count, d->dev,
			      (unsigned long long)g->sectors);
	if (d->op == PARLEY_BLK_OP_WRITE && g->read_only)
		return REFUSE(VMX_STOP_BLK_READONLY, "write to read-only "
			      "device %u", d->dev);
	if (d->buf % PARLEY_BLK_BUF_ALIGN)
		return REFUSE(VMX_STOP_BLK_ALIGN, "buffer 0x%llx is not "
			      "%u-byte aligned", (unsigned long long)d->buf,
			      PARLEY_BLK_BUF_ALIGN);
	/* A read writes the partition's memory: only what it may write. */
	enum gmem_refusal r = gmem_guest_check(gm, d->buf, bytes, 1,
					       d->op == PARLEY_BLK_OP_READ);
	if (r != GMEM_OK)
		return REFUSE(VMX_STOP_BLK_BUFFER, "buffer 0x%llx + %llu bytes "
			      "is %s", (unsigned long long)d->buf,
			      (unsigned long long)bytes, gmem_refusal_str(r));
	plan->off = d->sector * g->sector_size;
	plan->bytes = bytes;
	plan->buf = d->buf;
	return 0;
}

unsigned blk_check_batch(const struct blk_geom *disks, unsigned ndev,
			 const struct gmem *gm,
			 const struct parley_blk_desc *d, uint32_t n,
			 struct blk_plan *plans, char *why, size_t cap)
{
	if (n < 1 || n > PARLEY_BLK_BATCH_MAX)
		return REFUSE(VMX_STOP_BLK_REQUEST, "batch of %u (1..%u)", n,
			      PARLEY_BLK_BATCH_MAX);
	for (uint32_t i = 0; i < n; i++) {
		char sub[160];
		unsigned r = blk_check(disks, ndev, gm, &d[i], &plans[i], sub,
				       sizeof(sub));
		if (r)
			return REFUSE(r, "descriptor %u: %s", i, sub);
	}
	return 0;
}
