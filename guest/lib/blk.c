/* Block devices (parley/blksdk.h): thin wrappers over the BLK_*
 * hypercalls. */
#include <parley/guest.h>
#include <parley/blksdk.h>

int64_t parley_blk_info(uint32_t dev, struct parley_disk *d)
{
	struct parley_hc_blk_info a = { .dev = dev };
	parley_hypercall(PARLEY_HC_BLK_INFO, &a);
	if (a.ret == PARLEY_OK) {
		d->dev = dev;
		d->sectors = a.sectors;
		d->sector_size = a.sector_size;
		d->flags = a.flags;
		memcpy(d->name, a.name, sizeof(d->name));
		d->name[sizeof(d->name) - 1] = 0;
	}
	return a.ret;
}

int64_t parley_blk_find(const char *name, struct parley_disk *d)
{
	for (uint32_t i = 0; i < PARLEY_DISKS_MAX; i++) {
		if (parley_blk_info(i, d) != PARLEY_OK)
			break;
		if (!strcmp(d->name, name))
			return PARLEY_OK;
	}
	return PARLEY_E_BAD_HANDLE;
}

static int64_t io(enum parley_hc_nr nr, uint32_t dev, uint64_t sector,
		  uint64_t count, const void *buf)
{
	struct parley_hc_blk_io a = { .dev = dev, .sector = sector,
				      .count = count,
				      .buf = (parley_gpa_t)(uintptr_t)buf };
	parley_hypercall(nr, &a);
	return a.ret;
}

int64_t parley_blk_read(uint32_t dev, uint64_t sector, uint64_t count,
			void *buf)
{
	return io(PARLEY_HC_BLK_READ, dev, sector, count, buf);
}

int64_t parley_blk_write(uint32_t dev, uint64_t sector, uint64_t count,
			 const void *buf)
{
	return io(PARLEY_HC_BLK_WRITE, dev, sector, count, buf);
}

int64_t parley_blk_flush(uint32_t dev)
{
	struct parley_hc_blk_flush a = { .dev = dev };
	parley_hypercall(PARLEY_HC_BLK_FLUSH, &a);
	return a.ret;
}

int64_t parley_blk_submit(struct parley_blk_desc *d, uint32_t n)
{
	struct parley_hc_blk_submit a = {
		.descs = (parley_gpa_t)(uintptr_t)d, .n = n };
	parley_hypercall(PARLEY_HC_BLK_SUBMIT, &a);
	return a.ret;
}
