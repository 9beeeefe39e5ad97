/*
 * libFuzzer target for snapshot files. The bytes are tried three ways:
 *  1. as a header for snap_check_header (zero-padded when short);
 *  2. as a whole file for snap_read, through a memfd at /proc/self/fd/N;
 *  3. when the header passes and its memory is small, as the header and
 *     vCPU states of a file of the size the header asks for, memory left
 *     zero and the checksum taken from the input's last bytes: this gets
 *     past the size check into the memory read and the re-laying of the
 *     system tables (and then, nearly always, a checksum mismatch).
 * Whatever snap_read accepts hands back a memfd of the right size, closed
 * here so that none leak across runs.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/snapshot.h"

#define FUZZ_MEM_MAX (8 * 1024 * 1024ull) /* ram + cfg tried in step 3 */
#define HASH_LEN 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int file_fd = -1;
static char file_path[64];

static void setup(void)
{
	file_fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
	if (file_fd < 0)
		abort();
	snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
}

static void put(uint64_t off, const void *p, size_t len)
{
	if (len && pwrite(file_fd, p, len, (off_t)off) != (ssize_t)len)
		abort();
}

/* snap_read on the memfd; an accepted snapshot must be self-consistent. */
static void try_read(void)
{
	struct snap_image img;
	struct parley_err err = { 0 };
	struct stat st;
	int rc = snap_read(file_path, &img, &err);

	if (rc < 0) {
		if (img.mem_fd != -1 || err.code != rc)
			abort();
		return;
	}
	if (snap_check_header(&img.h, NULL) < 0 ||
	    fstat(img.mem_fd, &st) < 0 ||
	    (uint64_t)st.st_size != img.h.ram_size + img.h.cfg_size)
		abort();
	close(img.mem_fd);
}

/* Step 3: header and states from the input, the memory zero. */
static void try_sized(const struct snap_header *h, const uint8_t *data,
		      size_t size)
{
	uint64_t mem = h->ram_size + h->cfg_size;
	size_t states = h->vcpus * sizeof(struct ctl_vcpu_state);
	size_t have = size > sizeof(*h) ? size - sizeof(*h) : 0;
	uint8_t sum[HASH_LEN] = { 0 };

	if (mem > FUZZ_MEM_MAX)
		return;
	if (ftruncate(file_fd, 0) < 0 ||
	    ftruncate(file_fd, (off_t)(sizeof(*h) + states + mem + HASH_LEN)) <
		    0)
		abort();
	put(0, h, sizeof(*h));
	if (have > states)
		have = states;
	if (have)
		put(sizeof(*h), data + sizeof(*h), have);
	memcpy(sum, data + size - (size < HASH_LEN ? size : HASH_LEN),
	       size < HASH_LEN ? size : HASH_LEN);
	put(sizeof(*h) + states + mem, sum, HASH_LEN);
	try_read();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_header h;
	struct parley_err err = { 0 };
	int rc;

	if (file_fd < 0)
		setup();
	memset(&h, 0, sizeof(h));
	memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
	rc = snap_check_header(&h, &err);
	if (rc > 0 || (rc < 0 && err.code != rc) ||
	    snap_check_header(&h, NULL) != rc)
		abort();

	if (ftruncate(file_fd, 0) < 0)
		abort();
	put(0, data, size);
	try_read();

	if (rc == 0)
		try_sized(&h, data, size);
	return 0;
}
