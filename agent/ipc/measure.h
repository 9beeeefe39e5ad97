/*
 * Integrity measurement of one partition, done by the grant manager from its
 * own read-only view of guest memory (DESIGN.md section 6).
 *
 * At creation, before the first instruction: SHA-256 of every key
 * configuration file and every loaded image segment, a partition digest
 * over them, and a SHA-256 per 4 KiB page of the config region.
 *
 * Later, cheaply: the vmm process reports which config pages were written
 * (KVM dirty log); only those are re-hashed and compared with their
 * baseline page hashes, so an untouched region verifies in time independent
 * of its size. A background full re-hash checks the vmm's reports: a page
 * that differs but was never reported means the vmm process lied.
 */
#ifndef PARLEY_IPC_MEASURE_H
#define PARLEY_IPC_MEASURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <parley/abi.h>
#include "common/err.h"

#define MEASURE_DIGEST 32
#define MEASURE_SEGS_MAX 16

struct measure_file {
	char name[PARLEY_CONFIG_NAME_MAX];
	uint64_t off, size;        /* in the config region */
	uint8_t digest[MEASURE_DIGEST];
};

struct measure_seg {
	uint64_t gpa, size;
	uint8_t digest[MEASURE_DIGEST];
};

/* A device plugin the partition's vmm loads (agent/plugin/plugdir.h):
 * part of what is measured, as its manifest's verified SHA-256. */
#define MEASURE_PLUGINS_MAX 16
struct measure_plugin {
	char name[32];
	uint8_t digest[MEASURE_DIGEST];
};

struct measure {
	unsigned nplugin;
	struct measure_plugin plugin[MEASURE_PLUGINS_MAX];
	unsigned nfile;
	struct measure_file file[PARLEY_CONFIG_FILES_MAX];
	unsigned nseg;
	struct measure_seg seg[MEASURE_SEGS_MAX];
	uint8_t digest[MEASURE_DIGEST]; /* the partition digest */
	/* config region pages */
	uint64_t npages;
	uint8_t (*page)[MEASURE_DIGEST];  /* baseline hash per page */
	uint64_t *dirty;                 /* reported written, not yet seen
					  * equal to the baseline again */
};

struct measure_input_file {
	const char *name;
	uint64_t off, size;
};

/* Measure a freshly laid partition: cfg is the config region (cfg_size
 * bytes), ram the RAM view for the segments. */
int measure_baseline(struct measure *m, const uint8_t *ram, uint64_t ram_size,
		     const uint8_t *cfg, uint64_t cfg_size,
		     const struct measure_input_file *files, unsigned nfile,
		     const uint64_t (*segs)[2], unsigned nseg,
		     struct parley_err *err);
void measure_free(struct measure *m);

/* Merge a chunk of the vmm's dirty report: n bits from bits[] (bits_len
 * bytes) for pages first.. . Refused (-EINVAL) if the bits run past the
 * region or past bits[]: the report is untrusted input. */
int measure_mark_dirty(struct measure *m, uint64_t first, uint64_t n,
		       const uint8_t *bits, size_t bits_len);

/* Re-hash the pages reported dirty. 0 if all equal the baseline (they are
 * then forgotten), -EBADMSG if one differs: *file gets the index of the
 * file that holds it (or -1 for padding outside every file). */
int measure_verify(struct measure *m, const uint8_t *cfg, int *file);

/* Full re-hash, first half: the pages that differ from the baseline now,
 * as a new bitmap (caller frees). */
uint64_t *measure_rehash_all(const struct measure *m, const uint8_t *cfg);

/* Second half, after the vmm's dirty report was merged: the first page
 * that differs but was never reported, or -1. */
int64_t measure_unreported(const struct measure *m, const uint64_t *differ);

/* The first page that differs and was reported (a write the partition
 * made and did not undo), or -1. */
int64_t measure_reported_differs(const struct measure *m,
				 const uint64_t *differ);

/* Config regions up to this size are re-hashed whole on every open (the
 * dirty report is never the only word); larger ones re-hash the reported
 * pages, and the background re-hash checks the rest. */
#define MEASURE_FULL_REHASH_MAX (1ull << 20)

/* Index of the file holding config page `page`, or -1. */
int measure_file_of_page(const struct measure *m, uint64_t page);

/* The key configuration files of a partition that runs beside the agent
 * (libvirt): SHA-256 of each host file and the partition digest over them,
 * read with a cap; no pages, no segments. */
int measure_host_files(struct measure *m, const char *const *names,
		       const char *const *paths, unsigned n,
		       struct parley_err *err);

/* Lower-case hex of a digest into out[65]. */
void measure_hex(const uint8_t *d, char *out);

#endif
