/*
 * Partition snapshots: machine state and memory in one file, written by the
 * grant manager from its own view of guest memory and the vCPU states the
 * vmm process reports while paused. The file is read back as untrusted
 * input: sizes and ranges are checked before anything is read, an
 * HMAC-SHA256 tag with a key only this agent holds is checked over the
 * whole file before anything in it is used, and the privileged CPU state
 * and system tables are re-derived rather than taken from it.
 *
 *   header | vcpus x struct ctl_vcpu_state |
 *   ndevice x struct ctl_device_blob | RAM | config region | tag
 *
 * (version 3; a version 2 file has no devices.) Each device's state is
 * what its plugin saved, with the plugin's own version of it: the plugin
 * checks that version when the restored device loads it.
 *
 * The tag binds everything in the header: the host the snapshot was taken
 * on, the partition's name, the ABI version its image was started with and
 * the backend it ran on. A file is restored only on that host, only under
 * that name, only by an agent of the same ABI major (and a minor at least
 * as new); the backend is recorded, not required (the vCPU state is the
 * backend-neutral struct ctl_vcpu_state).
 */
#ifndef PARLEY_AGENT_SNAPSHOT_H
#define PARLEY_AGENT_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>
#include "agent/ctl/ctl.h"
#include "agent/layout.h"
#include "common/err.h"

#define SNAP_MAGIC "PRLYSNAP"
/* 1: SHA-256 trailer, no host/ABI/backend (refused: anyone could forge
 * one). 2: HMAC-SHA256 tag with the agent's key (still read). 3: and the
 * devices' saved states. */
#define SNAP_VERSION 3
#define SNAP_VERSION_MIN 2
#define SNAP_RANGES_MAX 16
#define SNAP_KEY_LEN 32        /* HMAC-SHA256 key: 256 random bits */
#define SNAP_TAG_LEN 32        /* HMAC-SHA256 output */
#define SNAP_HOST_MAX 64       /* host name, NUL included (HOST_NAME_MAX) */
/* The key file the agent creates when none is named: beside the snapshots. */
#define SNAP_KEY_FILE "snapshot.key"

struct snap_header {
	char magic[8];
	uint32_t version;
	uint32_t vcpus;
	uint64_t ram_size;
	uint64_t cfg_size;
	uint64_t entry;
	uint64_t image_hi;
	uint32_t nrange;
	uint32_t ndevice;          /* version 3: device states, 0..
				    * CTL_DEVICES_MAX; version 2: 0 */
	struct {
		uint64_t gpa, size;
		uint32_t flags, reserved;
	} range[SNAP_RANGES_MAX];
	char name[64];             /* the partition's name, NUL-terminated */
	char host[SNAP_HOST_MAX];  /* gethostname() of the saving agent */
	uint16_t abi_major, abi_minor; /* PARLEY_ABI_* of the saving agent */
	uint32_t backend;          /* enum ctl_backend it was taken on */
};

/* The agent's snapshot key; wiped by snap_key_wipe(). */
struct snap_key {
	uint8_t k[SNAP_KEY_LEN];
};

/* What the restoring agent requires of a snapshot besides a good tag. */
struct snap_expect {
	const char *host;          /* this host's name; required */
	const char *name;          /* the name the operator asks, or NULL:
				    * the name it was saved under */
};

/* What a snapshot holds once read and checked; mem is a new memfd. */
struct snap_image {
	struct snap_header h;
	struct ctl_vcpu_state vcpu[PARLEY_VCPUS_MAX];
	struct ctl_device_blob *dev;   /* h.ndevice of them (malloc'd;
					* snap_image_free) */
	int mem_fd;
};

/* Free what snap_read allocated besides mem_fd. */
void snap_image_free(struct snap_image *img);

/*
 * Load the key from path: a regular file (not a symlink) of exactly
 * SNAP_KEY_LEN bytes, owned by this user and readable by no one else.
 * With create, a missing file is made (O_EXCL, mode 0600) from
 * getrandom(); without, a missing key is -ENOENT. Errors name the path.
 */
int snap_key_load(const char *path, bool create, struct snap_key *k,
		  struct parley_err *err);
void snap_key_wipe(struct snap_key *k);

/* This host's name as snapshots record it. */
int snap_host(char out[SNAP_HOST_MAX], struct parley_err *err);

/* Write hdr, states and mem (ram + cfg bytes) and the tag with key k to
 * path atomically (a temporary file renamed into place), mode 0600. */
int snap_write(const char *path, const struct snap_key *k,
	       const struct snap_header *hdr, const struct ctl_vcpu_state *st,
	       const struct ctl_device_blob *dev, const uint8_t *mem,
	       struct parley_err *err);

/* Read and check a snapshot: its shape, then its tag with key k, then
 * host, name and ABI against want. Memory goes into a new sealed memfd
 * (the caller owns img->mem_fd). -EBADMSG for a bad tag, -EPERM for
 * another host or name, -EPROTO for another ABI, -EINVAL for a malformed
 * or truncated file; errors start with the path. */
int snap_read(const char *path, const struct snap_key *k,
	      const struct snap_expect *want, struct snap_image *img,
	      struct parley_err *err);

/* Check a header read from an untrusted file (exported for tests/fuzzing):
 * shape only; the tag and what it binds are checked by snap_read. */
int snap_check_header(const struct snap_header *h, struct parley_err *err);

#endif
