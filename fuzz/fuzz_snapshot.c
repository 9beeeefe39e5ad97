/*
 * libFuzzer target for snapshot restore, end to end short of a VM. The
 * target holds a snapshot key, as the agent does. The bytes are tried:
 *  1. as a header for snap_check_header (zero-padded when short);
 *  2. as a whole file for snap_read with the key (a bad tag, nearly
 *     always: what a forger without the key gets);
 *  3. as what a partition controls in a snapshot the agent itself wrote
 *     and tagged: header fields (fixed up to this host, ABI and a small
 *     memory), vCPU states, the boot-info area and the config region come
 *     from the input, the target tags the file with its key, and
 *     partition_restore_prepare reads it, checks the tag, re-lays the
 *     system tables, reads the config table through struct gmem, measures
 *     the files and checks the measurement against a golden baseline (the
 *     one a well-formed hello partition has). Whatever is accepted must
 *     be self-consistent; nothing may leak.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/ipc/baseline.h"
#include "agent/partition.h"
#include "agent/snapshot.h"

#define RAM PARLEY_MEM_MIN                 /* every step-3 file: 4 MiB RAM */
#define CFG_PAGES_MAX 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int file_fd = -1;
static char file_path[64];
static char tagged_path[128];     /* step 3: snap_write renames into it */
static struct snap_key key;
static char host[SNAP_HOST_MAX];
static struct baseline_db db;

static char tagged_dir[64];

/* /dev/shm is memory: leave nothing behind. */
static void cleanup(void)
{
	unlink(tagged_path);
	rmdir(tagged_dir);
}

static void setup(void)
{
	file_fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
	if (file_fd < 0 || snap_host(host, NULL) < 0)
		abort();
	snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
	static char dir[] = "/dev/shm/fuzz-snapshot-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	snprintf(tagged_path, sizeof(tagged_path), "%s/f.snap", dir);
	snprintf(tagged_dir, sizeof(tagged_dir), "%s", dir);
	atexit(cleanup);
	memset(key.k, 0x5a, sizeof(key.k));
	/* One golden entry: a partition "web" whose file "motd" is empty. */
	static const char bl[] =
		"{\"partitions\":{\"web\":{\"files\":{\"motd\":"
		"\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		"\"}}}}";
	if (baseline_parse(&db, bl, sizeof(bl) - 1, NULL) < 0)
		abort();
	db.mode = BASELINE_GOLDEN;
}

static void put(uint64_t off, const void *p, size_t len)
{
	if (len && pwrite(file_fd, p, len, (off_t)off) != (ssize_t)len)
		abort();
}

static void take(const uint8_t **data, size_t *size, void *out, size_t len)
{
	size_t n = *size < len ? *size : len;
	memset(out, 0, len);
	memcpy(out, *data, n);
	*data += n;
	*size -= n;
}

/* Step 2: the bytes as a file, read with the key. */
static void try_read(void)
{
	struct snap_image img;
	struct parley_err err = { 0 };
	struct snap_expect want = { .host = host };
	struct stat st;
	int rc = snap_read(file_path, &key, &want, &img, &err);
	if (rc < 0) {
		if (img.mem_fd != -1 || err.code != rc)
			abort();
		return;
	}
	if (snap_check_header(&img.h, NULL) < 0 ||
	    fstat(img.mem_fd, &st) < 0 ||
	    (uint64_t)st.st_size != img.h.ram_size + img.h.cfg_size ||
	    strcmp(img.h.host, host))
		abort();
	close(img.mem_fd);
	snap_image_free(&img);
}

static int admit(struct partition *p, void *ctx, struct parley_err *err)
{
	return baseline_admit(ctx, p->name, &p->measure, err);
}

/* Step 3's header: the input's, made to fit this host and a small size. */
static void fix_header(struct snap_header *h)
{
	memcpy(h->magic, SNAP_MAGIC, 8);
	h->version = SNAP_VERSION;
	h->ram_size = RAM;
	h->cfg_size = (h->cfg_size / PARLEY_PAGE_SIZE % (CFG_PAGES_MAX + 1)) *
		      PARLEY_PAGE_SIZE;
	h->vcpus = h->vcpus == 2 ? 2 : 1;
	h->name[sizeof(h->name) - 1] = 0;
	snprintf(h->host, sizeof(h->host), "%s", host);
	h->abi_major = PARLEY_ABI_MAJOR;
	h->abi_minor = PARLEY_ABI_MINOR;
	h->backend = h->backend == CTL_BACKEND_PROCESS ? CTL_BACKEND_PROCESS
						       : CTL_BACKEND_KVM;
}

static void restore_prepared(void)
{
	struct part_opts o = { .snap_key = &key, .on_measured = admit,
			       .ctx = &db };
	struct ctl_vcpu_state st[PARLEY_VCPUS_MAX];
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	int rc = partition_restore_prepare(tagged_path, NULL, &o, &p, st,
					   &err);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "restore: %d %s\n", rc, perr_msg(&err));
	if (rc < 0) {
		if (p || err.code != rc || !err.msg[0])
			abort();
		return;
	}
	/* Accepted: it measured equal to the golden baseline. */
	if (strcmp(p->name, "web") || p->measure.nfile != 1)
		abort();
	partition_destroy(p);
}

/* Step 3: a file the agent would have tagged, from the input's bytes. */
static void try_tagged(const uint8_t *data, size_t size)
{
	struct snap_header h;
	take(&data, &size, &h, sizeof(h));
	fix_header(&h);
	h.ndevice = 0; /* (device states: step 2's files) */
	if (snap_check_header(&h, NULL) < 0)
		return;
	static struct ctl_vcpu_state st[2];
	take(&data, &size, st, h.vcpus * sizeof(st[0]));
	static uint8_t boot[PARLEY_BOOT_INFO_SIZE];
	static uint8_t cfg[CFG_PAGES_MAX * PARLEY_PAGE_SIZE];
	take(&data, &size, boot, sizeof(boot));
	take(&data, &size, cfg, h.cfg_size);
	/* memory: zero but for boot info and the config region */
	uint8_t *mem = calloc(1, RAM + h.cfg_size);
	if (!mem)
		abort();
	memcpy(mem + PARLEY_BOOT_INFO_GPA, boot, sizeof(boot));
	memcpy(mem + RAM, cfg, h.cfg_size);
	struct parley_err err = { 0 };
	if (snap_write(tagged_path, &key, &h, st, NULL, mem, &err) < 0)
		abort();
	free(mem);
	restore_prepared();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_header h;
	struct parley_err err = { 0 };
	if (file_fd < 0)
		setup();
	memset(&h, 0, sizeof(h));
	memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
	int rc = snap_check_header(&h, &err);
	if (rc > 0 || (rc < 0 && err.code != rc) ||
	    snap_check_header(&h, NULL) != rc)
		abort();
	if (ftruncate(file_fd, 0) < 0)
		abort();
	put(0, data, size);
	try_read();
	try_tagged(data, size);
	return 0;
}
