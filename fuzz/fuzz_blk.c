/*
 * libFuzzer target for the block request decoder (agent/ctl/blkreq.c):
 * the input says the disks (count, size, sector size, read-only), the
 * partition's memory (RAM size, read-only image ranges) and then a batch
 * of request descriptors exactly as a partition lays them in its memory.
 *
 * Oracle: blk_check_batch accepts a batch iff blk_check accepts each of
 * its descriptors; an accepted request is checked again here from first
 * principles (device exists, known op, sectors inside the disk without
 * overflow, 1..PARLEY_BLK_XFER_MAX bytes, no write to a read-only disk,
 * buffer aligned and, for a read, only writable RAM, for a write RAM or
 * read-only image — the ranges gmem_guest_check admits); a refusal names
 * a block stop reason and a printable, terminated explanation.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ctl/blkreq.h"
#include "agent/ctl/stop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                         \
	do {                                                             \
		if (!(c)) {                                              \
			fprintf(stderr, "fuzz_blk: %s:%d: %s\n",         \
				__FILE__, __LINE__, #c);                 \
			abort();                                         \
		}                                                        \
	} while (0)

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes && in->n; i++, in->p++, in->n--)
		v |= (uint64_t)*in->p << (8 * i);
	return v;
}

static bool is_blk_stop(unsigned r)
{
	return r >= VMX_STOP_BLK_DEVICE && r <= VMX_STOP_BLK_BUFFER;
}

static void check_why(const char *why, size_t cap)
{
	const char *end = memchr(why, 0, cap);
	CHECK(end && end > why);
	for (const char *p = why; p < end; p++)
		CHECK(*p >= 0x20 && *p < 0x7f);
}

/* What an accepted request must be, whatever blk_check thinks. */
static void check_plan(const struct blk_geom *g, unsigned ndev,
		       const struct gmem *gm, const struct parley_blk_desc *d,
		       const struct blk_plan *p)
{
	CHECK(d->dev < ndev && d->reserved == 0);
	CHECK(p->dev == d->dev && p->op == d->op);
	if (d->op == PARLEY_BLK_OP_FLUSH) {
		CHECK(!d->sector && !d->count && !d->buf && !p->bytes);
		return;
	}
	CHECK(d->op == PARLEY_BLK_OP_READ || d->op == PARLEY_BLK_OP_WRITE);
	const struct blk_geom *k = &g[d->dev];
	CHECK(d->count >= 1);
	CHECK(p->bytes == (uint64_t)d->count * k->sector_size);
	CHECK(p->bytes <= PARLEY_BLK_XFER_MAX);
	CHECK(d->sector < k->sectors && d->count <= k->sectors - d->sector);
	CHECK(p->off == d->sector * k->sector_size);
	CHECK(!(d->op == PARLEY_BLK_OP_WRITE && k->read_only));
	CHECK(d->buf % PARLEY_BLK_BUF_ALIGN == 0 && p->buf == d->buf);
	/* Inside the partition's RAM, and a read never into its image's
	 * read-only pages. */
	CHECK(d->buf >= gm->guest.lo && d->buf + p->bytes <= gm->guest.hi);
	if (d->op == PARLEY_BLK_OP_READ)
		for (unsigned i = 0; i < gm->guest.nro; i++)
			CHECK(d->buf + p->bytes <= gm->guest.ro[i].gpa ||
			      d->buf >= gm->guest.ro[i].end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct blk_geom g[PARLEY_DISKS_MAX + 1];
	unsigned ndev = (unsigned)(take(&in, 1) % (PARLEY_DISKS_MAX + 1));
	for (unsigned i = 0; i < ndev; i++) {
		uint8_t f = (uint8_t)take(&in, 1);
		g[i].sector_size = (f & 1) ? 4096 : 512;
		g[i].read_only = (f & 2) != 0;
		/* Small disks, and now and then one near the top of 2^64
		 * bytes' worth of sectors. */
		g[i].sectors = (f & 4) ? (UINT64_MAX / g[i].sector_size) -
						 take(&in, 2)
				       : take(&in, 3);
	}
	struct gmem gm;
	memset(&gm, 0, sizeof(gm));
	uint64_t ram = PARLEY_MEM_MIN << (take(&in, 1) % 4);
	CHECK(gmem_guest_init(&gm, ram) == 0);
	unsigned nro = (unsigned)(take(&in, 1) % 3);
	for (unsigned i = 0; i < nro; i++) {
		uint64_t gpa = PARLEY_IMAGE_MIN + take(&in, 2) * PARLEY_PAGE_SIZE;
		uint64_t len = (1 + take(&in, 1)) * PARLEY_PAGE_SIZE;
		gmem_guest_ro(&gm, gpa, len); /* refusals are fine */
	}
	uint32_t n = (uint32_t)take(&in, 1);
	struct parley_blk_desc d[PARLEY_BLK_BATCH_MAX + 8];
	memset(d, 0, sizeof(d));
	uint32_t have = 0;
	while (have < sizeof(d) / sizeof(d[0]) && in.n) {
		size_t k = in.n < sizeof(d[0]) ? in.n : sizeof(d[0]);
		memcpy(&d[have++], in.p, k);
		in.p += k;
		in.n -= k;
	}
	if (n > have && n <= PARLEY_BLK_BATCH_MAX)
		n = have;
	struct blk_plan plans[PARLEY_BLK_BATCH_MAX];
	char why[200];
	memset(why, 0x7f, sizeof(why));
	unsigned r = blk_check_batch(g, ndev, &gm, d, n, plans, why,
				     sizeof(why));
	bool all = n >= 1 && n <= PARLEY_BLK_BATCH_MAX;
	for (uint32_t i = 0; all && i < n; i++) {
		struct blk_plan p;
		char w[160];
		memset(w, 0x7f, sizeof(w));
		unsigned ri = blk_check(g, ndev, &gm, &d[i], &p, w, sizeof(w));
		if (ri == 0) {
			check_plan(g, ndev, &gm, &d[i], &p);
		} else {
			CHECK(is_blk_stop(ri));
			check_why(w, sizeof(w));
			all = false;
		}
	}
	CHECK((r == 0) == all);
	if (r) {
		CHECK(is_blk_stop(r));
		check_why(why, sizeof(why));
	}
	for (uint32_t i = 0; r == 0 && i < n; i++)
		check_plan(g, ndev, &gm, &d[i], &plans[i]);
	return 0;
}
