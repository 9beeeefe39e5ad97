/* blktest: drives disk 0 for the tests and benchmarks (tests/test_disk.c,
 * bench/blk_bench.c). cmdline: mode=M seed=S sectors=N, where M is
 *   write    fill sectors [0, N) with a pattern from S, flush, read back
 *   check    read sectors [0, N) and compare with the pattern from S
 *   text     fill [0, N) with the ASCII text "parley-known-plaintext"
 *   batch    write then read [0, N) as 4 KiB descriptors in batches of 16
 *   range    read one sector past the end (the partition is stopped)
 *   misalign read into a buffer 8 bytes off alignment (stopped)
 *   rowrite  write sector 0 (stopped when the disk is read-only)
 *   resume   write [0, N) from S, print "blk written", then `ticks` lines
 *            ("tick I") with `work` iterations between them (a test pauses
 *            and snapshots it there), then check [0, N) and write and check
 *            it again from S+1: across a snapshot and restore, the disk
 *            reads back what was written before and takes more writes
 *   bench    sequential 64 KiB reads and writes over [0, N), then batched
 *            random 4 KiB reads; prints MiB/s and IOPS (guest clock)
 * and prints "blk ok" (or the first difference) and exits 0 or 1. */
#include <parley/guest.h>
#include <parley/blksdk.h>

#define BUF_BYTES (1u << 20)
static uint8_t buf[BUF_BYTES] __attribute__((aligned(4096)));
static struct parley_blk_desc descs[PARLEY_BLK_BATCH_MAX];

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static void fill(uint8_t *p, uint64_t byte_off, uint64_t len, uint64_t seed)
{
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed ^ (byte_off + i));
		memcpy(p + i, &v, 8);
	}
}

static int mode_is(const struct parley_boot_info *bi, const char *m)
{
	size_t len;
	const char *v = parley_cmdline_get(bi, "mode", &len);
	return v && len == strlen(m) && !strncmp(v, m, len);
}

static uint64_t chunk_sectors(const struct parley_disk *d, uint64_t left)
{
	uint64_t max = BUF_BYTES / d->sector_size;
	return left < max ? left : max;
}

static int do_write(const struct parley_disk *d, uint64_t n, uint64_t seed,
		    int text)
{
	static const char t[] = "parley-known-plaintext--";  /* 24 bytes */
	for (uint64_t s = 0; s < n;) {
		uint64_t k = chunk_sectors(d, n - s);
		if (text)
			for (uint64_t i = 0; i < k * d->sector_size; i++)
				buf[i] = (uint8_t)t[i % 24];
		else
			fill(buf, s * d->sector_size, k * d->sector_size, seed);
		int64_t r = parley_blk_write(d->dev, s, k, buf);
		if (r != (int64_t)(k * d->sector_size)) {
			parley_printf("blk write %lu: %ld\n", (unsigned long)s,
				      (long)r);
			return 1;
		}
		s += k;
	}
	if (parley_blk_flush(d->dev) != PARLEY_OK) {
		parley_printf("blk flush failed\n");
		return 1;
	}
	return 0;
}

static int do_check(const struct parley_disk *d, uint64_t n, uint64_t seed)
{
	static uint8_t want[BUF_BYTES] __attribute__((aligned(4096)));
	for (uint64_t s = 0; s < n;) {
		uint64_t k = chunk_sectors(d, n - s);
		int64_t r = parley_blk_read(d->dev, s, k, buf);
		if (r != (int64_t)(k * d->sector_size)) {
			parley_printf("blk read %lu: %ld\n", (unsigned long)s,
				      (long)r);
			return 1;
		}
		fill(want, s * d->sector_size, k * d->sector_size, seed);
		if (memcmp(want, buf, k * d->sector_size)) {
			parley_printf("blk differs in sectors %lu..%lu\n",
				      (unsigned long)s,
				      (unsigned long)(s + k - 1));
			return 1;
		}
		s += k;
	}
	return 0;
}

/* 4 KiB descriptors, 16 to a batch: write [0, n) then read it back. */
static int do_batch(const struct parley_disk *d, uint64_t n, uint64_t seed)
{
	uint32_t per = 4096 / d->sector_size;
	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t s = 0; s < n;) {
			uint32_t m = 0;
			for (; m < 16 && s < n; m++, s += per) {
				uint8_t *p = buf + m * 4096;
				if (pass == 0)
					fill(p, s * d->sector_size, 4096, seed);
				descs[m] = (struct parley_blk_desc){
					.dev = d->dev, .sector = s,
					.count = per, .buf = (uintptr_t)p,
					.op = pass ? PARLEY_BLK_OP_READ
						   : PARLEY_BLK_OP_WRITE };
			}
			if (pass == 0)
				descs[m++] = (struct parley_blk_desc){
					.dev = d->dev,
					.op = PARLEY_BLK_OP_FLUSH };
			int64_t ok = parley_blk_submit(descs, m);
			if (ok != (int64_t)m) {
				parley_printf("blk batch: %ld of %u\n",
					      (long)ok, m);
				return 1;
			}
		}
	}
	return do_check(d, n, seed);
}

static void bench(const struct parley_disk *d, uint64_t n)
{
	uint32_t per = 65536 / d->sector_size;
	uint64_t bytes = 0, t0 = parley_clock_ns();
	for (int rep = 0; rep < 4; rep++)
		for (uint64_t s = 0; s + per <= n; s += per) {
			parley_blk_write(d->dev, s, per, buf);
			bytes += 65536;
		}
	uint64_t t1 = parley_clock_ns();
	parley_printf("bench write_mib_s %lu\n",
		      (unsigned long)(bytes * 1000000000ull / (t1 - t0) >> 20));
	bytes = 0;
	for (int rep = 0; rep < 4; rep++)
		for (uint64_t s = 0; s + per <= n; s += per) {
			parley_blk_read(d->dev, s, per, buf);
			bytes += 65536;
		}
	uint64_t t2 = parley_clock_ns();
	parley_printf("bench read_mib_s %lu\n",
		      (unsigned long)(bytes * 1000000000ull / (t2 - t1) >> 20));
	uint32_t p4 = 4096 / d->sector_size;
	uint64_t x = 1, ops = 0;
	for (int rep = 0; rep < 2000; rep++) {
		for (uint32_t m = 0; m < PARLEY_BLK_BATCH_MAX; m++) {
			x = mix(x + m);
			descs[m] = (struct parley_blk_desc){
				.dev = d->dev, .op = PARLEY_BLK_OP_READ,
				.sector = (x % (n / p4)) * p4, .count = p4,
				.buf = (uintptr_t)(buf + (m % 256) * 4096) };
		}
		ops += (uint64_t)parley_blk_submit(descs, PARLEY_BLK_BATCH_MAX);
	}
	uint64_t t3 = parley_clock_ns();
	parley_printf("bench iops_4k %lu\n",
		      (unsigned long)(ops * 1000000000ull / (t3 - t2)));
}

static int do_resume(const struct parley_boot_info *bi,
		     const struct parley_disk *d, uint64_t n, uint64_t seed)
{
	if (do_write(d, n, seed, 0) || do_check(d, n, seed))
		return 1;
	parley_printf("blk written\n");
	long ticks = parley_cmdline_int(bi, "ticks", 40);
	long work = parley_cmdline_int(bi, "work", 3000000);
	volatile uint64_t v = 1;
	for (long t = 0; t < ticks; t++) {
		for (long i = 0; i < work; i++)
			v = v * 6364136223846793005ull + 1;
		parley_printf("tick %ld\n", t);
	}
	return do_check(d, n, seed) || do_write(d, n, seed + 1, 0) ||
	       do_check(d, n, seed + 1);
}

int main(const struct parley_boot_info *bi)
{
	struct parley_disk d;
	if (parley_blk_info(0, &d) != PARLEY_OK) {
		parley_printf("blk no disk\n");
		return 1;
	}
	uint64_t seed = (uint64_t)parley_cmdline_int(bi, "seed", 1);
	uint64_t n = (uint64_t)parley_cmdline_int(bi, "sectors", 64);
	if (n > d.sectors)
		n = d.sectors;
	parley_printf("blk disk %s sectors %lu size %u flags %u\n", d.name,
		      (unsigned long)d.sectors, d.sector_size, d.flags);
	int rc = 0;
	if (mode_is(bi, "write"))
		rc = do_write(&d, n, seed, 0) || do_check(&d, n, seed);
	else if (mode_is(bi, "check"))
		rc = do_check(&d, n, seed);
	else if (mode_is(bi, "text"))
		rc = do_write(&d, n, seed, 1);
	else if (mode_is(bi, "batch"))
		rc = do_batch(&d, n, seed);
	else if (mode_is(bi, "range"))
		parley_blk_read(d.dev, d.sectors, 1, buf);
	else if (mode_is(bi, "misalign"))
		parley_blk_read(d.dev, 0, 1, buf + 8);
	else if (mode_is(bi, "rowrite"))
		rc = parley_blk_write(d.dev, 0, 1, buf) < 0;
	else if (mode_is(bi, "resume"))
		rc = do_resume(bi, &d, n, seed);
	else if (mode_is(bi, "bench"))
		bench(&d, n);
	else {
		parley_printf("blk unknown mode\n");
		return 2;
	}
	parley_printf(rc ? "blk failed\n" : "blk ok\n");
	return rc;
}
