/* kvlog: a small key-value log kept on the disk "log" across restarts.
 *
 * Sector 0 is the header (magic, record count); record i lives in sector
 * 1 + i, one record a sector, with its own magic, sequence number and
 * FNV-1a checksum. An append writes the record, flushes, then writes the
 * header and flushes again: a crash between the two leaves a record the
 * header does not count (ignored, overwritten next time), never a header
 * counting a record that is not there. On start the log is replayed (the
 * last value of a key wins), then `put=KEY:VALUE` on the command line is
 * appended, and every key is printed as `kvlog| KEY=VALUE`. A blank disk
 * (no magic) is formatted. Keys up to 47 bytes, values up to 400. */
#include <parley/guest.h>
#include <parley/blksdk.h>

#define MAGIC_HDR 0x31474f4c564b0000ull  /* "KVLOG1" */
#define MAGIC_REC 0x52564b00u
#define KEYS_MAX 64

struct hdr {
	uint64_t magic, nrec;
};

struct rec {
	uint32_t magic, seq;
	uint32_t klen, vlen;
	char key[48];
	char val[400];
	uint32_t sum;
};

static uint8_t sec[4096] __attribute__((aligned(4096)));
static char keys[KEYS_MAX][48], vals[KEYS_MAX][401];
static unsigned nkeys;

static uint32_t fnv(const void *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const uint8_t *)p)[i]) * 16777619u;
	return h;
}

static void set(const char *k, uint32_t klen, const char *v, uint32_t vlen)
{
	unsigned i = 0;
	while (i < nkeys && (strlen(keys[i]) != klen ||
			     strncmp(keys[i], k, klen)))
		i++;
	if (i == KEYS_MAX)
		return;
	if (i == nkeys) {
		memcpy(keys[i], k, klen);
		keys[i][klen] = 0;
		nkeys++;
	}
	memcpy(vals[i], v, vlen);
	vals[i][vlen] = 0;
}

static int rd(const struct parley_disk *d, uint64_t s)
{
	return parley_blk_read(d->dev, s * 4096 / d->sector_size,
			       4096 / d->sector_size, sec) == 4096 ? 0 : -1;
}

static int wr(const struct parley_disk *d, uint64_t s)
{
	return parley_blk_write(d->dev, s * 4096 / d->sector_size,
				4096 / d->sector_size, sec) == 4096 &&
	       parley_blk_flush(d->dev) == PARLEY_OK ? 0 : -1;
}

int main(const struct parley_boot_info *bi)
{
	struct parley_disk d;
	if (parley_blk_find("log", &d) != PARLEY_OK) {
		parley_printf("kvlog: no disk \"log\"\n");
		return 1;
	}
	/* Blocks of 4 KiB, whatever the sector size. */
	uint64_t blocks = d.sectors * d.sector_size / 4096;
	struct hdr h;
	if (blocks < 2 || rd(&d, 0) < 0)
		return 1;
	memcpy(&h, sec, sizeof(h));
	if (h.magic != MAGIC_HDR) {
		h = (struct hdr){ .magic = MAGIC_HDR, .nrec = 0 };
		memset(sec, 0, sizeof(sec));
		memcpy(sec, &h, sizeof(h));
		if (wr(&d, 0) < 0)
			return 1;
		parley_printf("kvlog: formatted %s\n", d.name);
	}
	if (h.nrec > blocks - 1)
		h.nrec = blocks - 1;
	for (uint64_t i = 0; i < h.nrec; i++) {
		struct rec r;
		if (rd(&d, 1 + i) < 0)
			return 1;
		memcpy(&r, sec, sizeof(r));
		if (r.magic != MAGIC_REC || r.seq != i || r.klen > 47 ||
		    r.vlen > 400 || r.sum != fnv(&r, offsetof(struct rec, sum))) {
			parley_printf("kvlog: record %lu damaged, log ends "
				      "there\n", (unsigned long)i);
			h.nrec = i;
			break;
		}
		set(r.key, r.klen, r.val, r.vlen);
	}
	size_t plen;
	const char *put = parley_cmdline_get(bi, "put", &plen);
	const char *colon = NULL;
	for (size_t i = 0; put && i < plen; i++)
		if (put[i] == ':') {
			colon = put + i;
			break;
		}
	if (colon && 1 + h.nrec < blocks) {
		struct rec r = { .magic = MAGIC_REC, .seq = (uint32_t)h.nrec };
		r.klen = (uint32_t)(colon - put);
		r.vlen = (uint32_t)(plen - r.klen - 1);
		if (r.klen == 0 || r.klen > 47 || r.vlen > 400) {
			parley_printf("kvlog: bad put\n");
			return 2;
		}
		memcpy(r.key, put, r.klen);
		memcpy(r.val, colon + 1, r.vlen);
		r.sum = fnv(&r, offsetof(struct rec, sum));
		memset(sec, 0, sizeof(sec));
		memcpy(sec, &r, sizeof(r));
		if (wr(&d, 1 + h.nrec) < 0)
			return 1;
		h.nrec++;
		memset(sec, 0, sizeof(sec));
		memcpy(sec, &h, sizeof(h));
		if (wr(&d, 0) < 0)
			return 1;
		set(r.key, r.klen, r.val, r.vlen);
	}
	parley_printf("kvlog: %lu records, %u keys\n", (unsigned long)h.nrec,
		      nkeys);
	for (unsigned i = 0; i < nkeys; i++)
		parley_printf("kvlog| %s=%s\n", keys[i], vals[i]);
	return 0;
}
