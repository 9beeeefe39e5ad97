#include "agent/ipc/measure.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "common/fileio.h"

#define PAGE PARLEY_PAGE_SIZE

static void sha256(const void *data, size_t len, uint8_t *out)
{
	unsigned int n;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void measure_hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < MEASURE_DIGEST; i++) {
		out[2 * i] = "0123456789abcdef"[d[i] >> 4];
		out[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
	}
	out[2 * MEASURE_DIGEST] = 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct measure_file *)a)->name,
		      ((const struct measure_file *)b)->name);
}

/* The partition digest: over the per-file digests sorted by file name,
 * each preceded by its name, then the segment digests in address order, so
 * the same files give the same digest whatever their order in the spec. */
static void partition_digest(struct measure *m)
{
	struct measure_file sorted[PARLEY_CONFIG_FILES_MAX];
	memcpy(sorted, m->file, m->nfile * sizeof(sorted[0]));
	qsort(sorted, m->nfile, sizeof(sorted[0]), by_name);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (unsigned i = 0; i < m->nfile; i++) {
		EVP_DigestUpdate(md, sorted[i].name, strlen(sorted[i].name) + 1);
		EVP_DigestUpdate(md, sorted[i].digest, MEASURE_DIGEST);
	}
	for (unsigned i = 0; i < m->nseg; i++)
		EVP_DigestUpdate(md, m->seg[i].digest, MEASURE_DIGEST);
	EVP_DigestFinal_ex(md, m->digest, NULL);
	EVP_MD_CTX_free(md);
}

static int check_inputs(uint64_t ram_size, uint64_t cfg_size,
			const struct measure_input_file *files, unsigned nfile,
			const uint64_t (*segs)[2], unsigned nseg,
			struct parley_err *err)
{
	if (nfile > PARLEY_CONFIG_FILES_MAX || nseg > MEASURE_SEGS_MAX ||
	    cfg_size % PAGE)
		return perr(err, -EINVAL, "measure: bad shape");
	for (unsigned i = 0; i < nfile; i++)
		if (files[i].off > cfg_size ||
		    files[i].size > cfg_size - files[i].off ||
		    strlen(files[i].name) >= PARLEY_CONFIG_NAME_MAX)
			return perr(err, -EINVAL, "measure: file %u outside the "
				    "config region", i);
	for (unsigned i = 0; i < nseg; i++)
		if (segs[i][0] > ram_size || segs[i][1] > ram_size - segs[i][0])
			return perr(err, -EINVAL, "measure: segment %u outside "
				    "RAM", i);
	return 0;
}

int measure_baseline(struct measure *m, const uint8_t *ram, uint64_t ram_size,
		     const uint8_t *cfg, uint64_t cfg_size,
		     const struct measure_input_file *files, unsigned nfile,
		     const uint64_t (*segs)[2], unsigned nseg,
		     struct parley_err *err)
{
	memset(m, 0, sizeof(*m));
	int rc = check_inputs(ram_size, cfg_size, files, nfile, segs, nseg, err);
	if (rc < 0)
		return rc;
	m->npages = cfg_size / PAGE;
	m->page = calloc(m->npages ? m->npages : 1, MEASURE_DIGEST);
	m->dirty = calloc((m->npages + 63) / 64 + 1, sizeof(uint64_t));
	if (!m->page || !m->dirty) {
		measure_free(m);
		return perr(err, -ENOMEM, "measure: out of memory");
	}
	for (uint64_t p = 0; p < m->npages; p++)
		sha256(cfg + p * PAGE, PAGE, m->page[p]);
	m->nfile = nfile;
	for (unsigned i = 0; i < nfile; i++) {
		struct measure_file *f = &m->file[i];
		strcpy(f->name, files[i].name);
		f->off = files[i].off;
		f->size = files[i].size;
		sha256(cfg + f->off, f->size, f->digest);
	}
	m->nseg = nseg;
	for (unsigned i = 0; i < nseg; i++) {
		m->seg[i].gpa = segs[i][0];
		m->seg[i].size = segs[i][1];
		sha256(ram + segs[i][0], segs[i][1], m->seg[i].digest);
	}
	partition_digest(m);
	return 0;
}

void measure_free(struct measure *m)
{
	free(m->page);
	free(m->dirty);
	m->page = NULL;
	m->dirty = NULL;
}

int measure_mark_dirty(struct measure *m, uint64_t first, uint64_t n,
		       const uint8_t *bits, size_t bits_len)
{
	if (first > m->npages || n > m->npages - first || n > 8ull * bits_len)
		return -EINVAL;
	for (uint64_t i = 0; i < n; i++)
		if (bits[i / 8] & (1u << (i % 8)))
			m->dirty[(first + i) / 64] |= 1ull << ((first + i) % 64);
	return 0;
}

int measure_file_of_page(const struct measure *m, uint64_t page)
{
	uint64_t lo = page * PAGE, hi = lo + PAGE;
	for (unsigned i = 0; i < m->nfile; i++) {
		const struct measure_file *f = &m->file[i];
		/* a file owns its pages up to the next page boundary */
		uint64_t end = (f->off + f->size + PAGE - 1) / PAGE * PAGE;
		if (end == f->off)
			end += PAGE; /* an empty file still has its page */
		if (lo < end && hi > f->off)
			return (int)i;
	}
	return -1;
}

static bool page_differs(const struct measure *m, const uint8_t *cfg,
			 uint64_t p)
{
	uint8_t h[MEASURE_DIGEST];
	sha256(cfg + p * PAGE, PAGE, h);
	return memcmp(h, m->page[p], MEASURE_DIGEST) != 0;
}

int measure_verify(struct measure *m, const uint8_t *cfg, int *file)
{
	int rc = 0;
	*file = -1;
	for (uint64_t w = 0; w < (m->npages + 63) / 64; w++) {
		for (uint64_t bits = m->dirty[w]; bits; bits &= bits - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			if (!page_differs(m, cfg, p)) {
				m->dirty[w] &= ~(1ull << (p % 64));
			} else if (rc == 0) {
				rc = -EBADMSG;
				*file = measure_file_of_page(m, p);
			}
		}
	}
	return rc;
}

uint64_t *measure_rehash_all(const struct measure *m, const uint8_t *cfg)
{
	uint64_t *differ = calloc((m->npages + 63) / 64 + 1, sizeof(uint64_t));
	if (!differ)
		return NULL;
	for (uint64_t p = 0; p < m->npages; p++)
		if (page_differs(m, cfg, p))
			differ[p / 64] |= 1ull << (p % 64);
	return differ;
}

int64_t measure_unreported(const struct measure *m, const uint64_t *differ)
{
	for (uint64_t w = 0; w < (m->npages + 63) / 64; w++) {
		uint64_t hidden = differ[w] & ~m->dirty[w];
		if (hidden)
			return (int64_t)(w * 64 + (uint64_t)__builtin_ctzll(hidden));
	}
	return -1;
}

int64_t measure_reported_differs(const struct measure *m,
				 const uint64_t *differ)
{
	for (uint64_t w = 0; w < (m->npages + 63) / 64; w++) {
		uint64_t bad = differ[w] & m->dirty[w];
		if (bad)
			return (int64_t)(w * 64 + (uint64_t)__builtin_ctzll(bad));
	}
	return -1;
}

int measure_host_files(struct measure *m, const char *const *names,
		       const char *const *paths, unsigned n,
		       struct parley_err *err)
{
	memset(m, 0, sizeof(*m));
	if (n > PARLEY_CONFIG_FILES_MAX)
		return perr(err, -E2BIG, "measure: %u files", n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *buf;
		size_t len;
		int rc = file_read_all(paths[i], PARLEY_CONFIG_MAX, &buf, &len,
				       err);
		if (rc < 0)
			return rc;
		snprintf(m->file[i].name, sizeof(m->file[i].name), "%s",
			 names[i]);
		m->file[i].size = len;
		sha256(buf, len, m->file[i].digest);
		free(buf);
		m->nfile = i + 1;
	}
	partition_digest(m);
	return 0;
}
