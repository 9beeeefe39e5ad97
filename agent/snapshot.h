/*
 * Partition snapshots: machine state and memory in one file, written by the
 * grant manager from its own view of guest memory and the vCPU states the
 * vmm process reports while paused. The file is read back as untrusted
 * input: sizes, ranges and a SHA-256 over the whole file are checked before
 * anything in it is used, and the privileged CPU state and system tables are
 * re-derived rather than taken from it.
 *
 *   header | vcpus x struct ctl_vcpu_state | RAM | config region | SHA-256
 */
#ifndef PARLEY_AGENT_SNAPSHOT_H
#define PARLEY_AGENT_SNAPSHOT_H

#include <stdint.h>
#include "agent/ctl/ctl.h"
#include "agent/layout.h"
#include "common/err.h"

#define SNAP_MAGIC "PRLYSNAP"
#define SNAP_VERSION 1
#define SNAP_RANGES_MAX 16

struct snap_header {
	char magic[8];
	uint32_t version;
	uint32_t vcpus;
	uint64_t ram_size;
	uint64_t cfg_size;
	uint64_t entry;
	uint64_t image_hi;
	uint32_t nrange;
	uint32_t reserved;
	struct {
		uint64_t gpa, size;
		uint32_t flags, reserved;
	} range[SNAP_RANGES_MAX];
	char name[64];
};

/* What a snapshot holds once read and checked; mem is a new memfd. */
struct snap_image {
	struct snap_header h;
	struct ctl_vcpu_state vcpu[PARLEY_VCPUS_MAX];
	int mem_fd;
};

/* Write hdr, states and mem (ram + cfg bytes) to path atomically (a
 * temporary file renamed into place). */
int snap_write(const char *path, const struct snap_header *hdr,
	       const struct ctl_vcpu_state *st, const uint8_t *mem,
	       struct parley_err *err);

/* Read and check a snapshot; memory goes into a new sealed memfd (the
 * caller owns img->mem_fd). */
int snap_read(const char *path, struct snap_image *img,
	      struct parley_err *err);

/* Check a header read from an untrusted file (exported for tests/fuzzing). */
int snap_check_header(const struct snap_header *h, struct parley_err *err);

#endif
