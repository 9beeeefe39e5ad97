/*
 * Suite `blk`: block devices of thin partitions (include/parley/blk.h).
 *
 *   BENCH blk_read_mib_s        sequential 64 KiB BLK_READs, plain disk
 *   BENCH blk_write_mib_s       sequential 64 KiB BLK_WRITEs, plain disk
 *   BENCH blk_xts_vs_plain      encrypted (aes-xts-plain64) throughput as a
 *                               share of plain, 64 KiB requests: the mean
 *                               of the read and the write ratio
 *   BENCH blk_iops_4k           random 4 KiB reads, 64 to a BLK_SUBMIT
 *   BENCH blk_host_pread_mib_s  the baseline, same run: 64 KiB pread of
 *   BENCH blk_host_pwrite_mib_s the same file from this process, and
 *   BENCH blk_host_iops_4k      random 4 KiB preads one at a time
 *
 * Partition: blktest mode=bench (guest/examples/blktest.c) on a 64 MiB
 * disk file in a fresh directory under $TMPDIR, 4 passes of writes then 4
 * of reads, then 2000 batches of 64 random 4 KiB reads; it times itself
 * with the CLOCK hypercall. The file lives in the page cache: these are
 * the vmm's data path and the exits, not the storage. The disk's devices
 * are the plugins the agent loads (build/plugins: file, xts), the XTS
 * with VAES where the CPU has it (agent/vmx/blk_xts_vaes.c). Each figure is the
 * median of 3 runs; kvm names plain, the process backend prefixes proc_.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "agent/plugin/agentset.h"

#define RUNS 3
#define DISK_MIB 64

struct out {
	char buf[8192];
	size_t len;
};

static void on_console(struct partition *p, const char *buf, size_t len,
		       void *ctx)
{
	(void)p;
	struct out *o = ctx;
	if (o->len + len < sizeof(o->buf)) {
		memcpy(o->buf + o->len, buf, len);
		o->len += len;
		o->buf[o->len] = 0;
	}
}

static double field(const char *out, const char *name)
{
	const char *s = strstr(out, name);
	return s ? strtod(s + strlen(name), NULL) : -1;
}

static struct plugin_set *bench_plugins;

/* The private copies of the plugins (agent/plugin/plugdir.h) go. */
static void free_plugins(void)
{
	if (bench_plugins)
		plugin_set_free(bench_plugins);
}

/* One run of blktest mode=bench: read, write MiB/s, IOPS. */
static int run_once(const struct bench_env *e, const char *dir, bool enc,
		    double r[3])
{
	char json[1024];
	snprintf(json, sizeof(json), "{\"name\":\"blkbench\",\"image\":"
		 "\"blktest.elf\",\"memory\":\"8M\",\"cmdline\":\"mode=bench "
		 "sectors=%u\",\"disks\":[{\"name\":\"d\",\"path\":\"%s\","
		 "\"size\":\"%uM\"%s}]}", DISK_MIB * 2048,
		 enc ? "enc.img" : "plain.img", DISK_MIB,
		 enc ? ",\"encryption\":{\"cipher\":\"aes-xts-plain64\","
		       "\"key\":\"k\"}" : "");
	struct part_spec s;
	struct parley_err err = { 0 };
	if (spec_parse(json, strlen(json), dir, &s, &err) < 0) {
		bench_note("spec: %s", perr_msg(&err));
		return -1;
	}
	static struct out o;
	o.len = 0;
	o.buf[0] = 0;
	struct part_opts po = bench_opts(e, on_console, &o);
	const char *dirs[] = { dir, NULL };
	po.disk_dirs = dirs;
	/* The devices as the agent runs them: the plugins beside the
	 * binaries (build/plugins), loaded once. */
	static struct plugin_set ps;
	static bool have = false, tried = false;
	if (!tried) {
		tried = true;
		atexit(free_plugins);
		if (plugin_set_for_agent(NULL, &ps, &have, &err) < 0) {
			bench_note("plugins: %s", perr_msg(&err));
			return -1;
		}
		if (!have)
			bench_note("no plugins found: built-in devices");
	}
	po.plugins = have ? &ps : NULL;
	bench_plugins = &ps;
	struct partition *p = NULL;
	int rc = partition_create(&s, &po, &p, &err);
	spec_free(&s);
	if (rc < 0) {
		bench_note("create: %s", perr_msg(&err));
		return -1;
	}
	rc = partition_wait(p, 120000);
	if (rc == 0 && (p->fin.reason != 0 || p->fin.code != 0))
		rc = -1;
	partition_destroy(p);
	r[0] = field(o.buf, "bench read_mib_s ");
	r[1] = field(o.buf, "bench write_mib_s ");
	r[2] = field(o.buf, "bench iops_4k ");
	if (rc < 0 || r[0] < 0 || r[1] < 0 || r[2] < 0) {
		bench_note("blktest failed:\n%s", o.buf);
		return -1;
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The baseline: the same file, 64 KiB pwrite then pread passes, then
 * random 4 KiB preads, from this process. */
static int host_baseline(const char *dir, double r[3])
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/plain.img", dir);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	static char buf[65536] __attribute__((aligned(4096)));
	memset(buf, 0x5a, sizeof(buf));
	uint64_t size = (uint64_t)DISK_MIB << 20, bytes = 0;
	uint64_t t0 = now_ns();
	for (int rep = 0; rep < 4; rep++)
		for (uint64_t off = 0; off < size; off += sizeof(buf))
			bytes += (uint64_t)pwrite(fd, buf, sizeof(buf),
						  (off_t)off);
	uint64_t t1 = now_ns();
	for (int rep = 0; rep < 4; rep++)
		for (uint64_t off = 0; off < size; off += sizeof(buf))
			bytes += (uint64_t)pread(fd, buf, sizeof(buf),
						 (off_t)off);
	uint64_t t2 = now_ns();
	uint64_t x = 1, ops = 0;
	for (int i = 0; i < 128000; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		ops += pread(fd, buf, 4096,
			     (off_t)((x >> 20) % (size / 4096) * 4096)) == 4096;
	}
	uint64_t t3 = now_ns();
	close(fd);
	double half = (double)bytes / 2 / (1 << 20);
	r[1] = half / ((double)(t1 - t0) / 1e9);
	r[0] = half / ((double)(t2 - t1) / 1e9);
	r[2] = (double)ops / ((double)(t3 - t2) / 1e9);
	return 0;
}

static int make_files(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/k", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	unsigned char key[64];
	for (int i = 0; i < 64; i++)
		key[i] = (unsigned char)(i * 29 + 3);
	int rc = write(fd, key, sizeof(key)) == sizeof(key) ? 0 : -1;
	close(fd);
	return rc;
}

static int backend_suite(struct bench_env *e, const char *dir)
{
	double plain[RUNS][3], enc[RUNS][3], host[RUNS][3];
	int bad = 0;
	for (int i = 0; i < RUNS && !bad; i++)
		bad = run_once(e, dir, false, plain[i]) < 0 ||
		      run_once(e, dir, true, enc[i]) < 0 ||
		      host_baseline(dir, host[i]) < 0;
	if (bad)
		return -1;
	double v[RUNS], med[3][3];
	for (int k = 0; k < 3; k++) {
		static const char *const what[] = { "read MiB/s",
						    "write MiB/s", "IOPS 4k" };
		char label[64];
		for (int i = 0; i < RUNS; i++)
			v[i] = plain[i][k];
		snprintf(label, sizeof(label), "%splain %s", e->prefix, what[k]);
		med[0][k] = bench_summary(label, v, RUNS, 1, "");
		for (int i = 0; i < RUNS; i++)
			v[i] = enc[i][k];
		snprintf(label, sizeof(label), "%sxts %s", e->prefix, what[k]);
		med[1][k] = bench_summary(label, v, RUNS, 1, "");
		for (int i = 0; i < RUNS; i++)
			v[i] = host[i][k];
		snprintf(label, sizeof(label), "host %s", what[k]);
		med[2][k] = bench_summary(label, v, RUNS, 1, "");
	}
	bench_figure_e(e, "blk_read_mib_s", med[0][0], "MiB/s");
	bench_figure_e(e, "blk_write_mib_s", med[0][1], "MiB/s");
	double ratio = (med[1][0] / med[0][0] + med[1][1] / med[0][1]) / 2;
	bench_note("%sxts/plain: read %.2f, write %.2f", e->prefix,
		   med[1][0] / med[0][0], med[1][1] / med[0][1]);
	bench_figure_e(e, "blk_xts_vs_plain", ratio, "ratio");
	bench_figure_e(e, "blk_iops_4k", med[0][2], "ops/s");
	bench_figure_e(e, "blk_host_pread_mib_s", med[2][0], "MiB/s");
	bench_figure_e(e, "blk_host_pwrite_mib_s", med[2][1], "MiB/s");
	bench_figure_e(e, "blk_host_iops_4k", med[2][2], "ops/s");
	return 0;
}

int main(void)
{
	struct bench_env e;
	struct parley_err err = { 0 };
	if (bench_env_init(&e, &err) < 0) {
		bench_note("%s", perr_msg(&err));
		return 1;
	}
	const char *tmp = getenv("TMPDIR");
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/parley-blk-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir) || make_files(dir) < 0) {
		bench_note("temporary directory: %s", strerror(errno));
		return 1;
	}
	uint32_t b[2];
	unsigned nb = bench_backends(b);
	int rc = 0;
	for (unsigned i = 0; i < nb; i++) {
		bench_use_backend(&e, b[i]);
		if (backend_suite(&e, dir) < 0)
			rc = 1;
	}
	char path[PATH_MAX + 16];
	static const char *const files[] = { "plain.img", "enc.img", "k" };
	for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	return rc;
}
