/* Block devices of thin partitions (include/parley/blk.h) with real
 * partitions on every backend: the blktest partition
 * (guest/examples/blktest.c) on a disk file in a fresh directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/ctl/stop.h"
#include "agent/disk/keys.h"
#include "agent/vmx/blk_xts.h"
#include "agent/vmx/blk_xts_vaes.h"
#include <openssl/evp.h>
#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"

struct disk_env {
	char *dir;
	const char *dirs[2];
	struct t_console out;
	char events[1024];         /* on_disk_key reports, one a line */
	unsigned key_asks;         /* calls of the counting key source */
	bool refuse_admission;
	int64_t code;              /* of the last run's exit */
};

static void env_init(struct disk_env *e)
{
	memset(e, 0, sizeof(*e));
	e->dir = t_tmpdir();
	e->dirs[0] = e->dir;
}

static void env_free(struct disk_env *e)
{
	t_console_free(&e->out);
	t_rmtree(e->dir);
	free(e->dir);
}

static struct disk_env *cur;

static void on_key_cur(struct partition *p, const char *disk,
		       const char *event, const char *detail, void *ctx)
{
	(void)ctx;
	(void)p;
	size_t n = strlen(cur->events);
	snprintf(cur->events + n, sizeof(cur->events) - n, "%s %s %s\n",
		 event, disk, detail ? detail : "");
}

static int refuse(struct partition *p, void *ctx, struct parley_err *err)
{
	(void)ctx;
	if (!cur->refuse_admission)
		return 0;
	return perr(err, -EPERM, "%s: baseline mismatch (test)", p->name);
}

static int counting_key(void *ctx, const char *part,
			const struct part_disk_spec *d,
			uint8_t key[CTL_DISK_KEY_BYTES], struct parley_err *err)
{
	cur->key_asks++;
	return disk_key_file(ctx, part, d, key, err);
}

/* A spec of blktest with one disk `disk_json` (the object's fields). */
static int start(struct disk_env *e, const char *cmdline,
		 const char *disk_json, bool paused, struct partition **p,
		 struct parley_err *err)
{
	char json[2048];
	snprintf(json, sizeof(json), "{\"name\":\"blk\",\"image\":"
		 "\"blktest.elf\",\"memory\":\"8M\",\"cmdline\":\"%s\","
		 "\"disks\":[{%s}]}", cmdline, disk_json);
	struct part_spec s;
	int rc = spec_parse(json, strlen(json), e->dir, &s, err);
	cr_assert_eq(rc, 0, "spec: %s", perr_msg(err));
	struct beneath_dirs kd = { 0 };
	beneath_add(&kd, e->dir);
	struct disk_key_source keys = { counting_key, &kd };
	struct part_opts o = t_opts(&e->out);
	o.disk_dirs = e->dirs;
	o.keys = &keys;
	o.on_disk_key = on_key_cur;
	o.on_measured = refuse;
	o.start_paused = paused;
	cur = e;
	rc = partition_create(&s, &o, p, err);
	spec_free(&s);
	return rc;
}

/* Run to the end; the partition's stop reason. */
static unsigned run(struct disk_env *e, const char *cmdline,
		    const char *disk_json)
{
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(start(e, cmdline, disk_json, false, &p, &err), 0,
		     "create: %s", perr_msg(&err));
	cr_assert_eq(partition_wait(p, 60000), 0, "did not finish:\n%s",
		     e->out.buf ? e->out.buf : "");
	unsigned r = p->fin.reason;
	e->code = p->fin.code;
	cr_log_info("%s: %s", vmx_stop_name(r), p->fin.detail);
	partition_destroy(p);
	return r;
}

#define PLAIN "\"name\":\"data\",\"path\":\"data.img\",\"size\":\"1M\""

static void exits_ok(struct disk_env *e, const char *cmdline,
		     const char *disk)
{
	unsigned r = run(e, cmdline, disk);
	cr_assert_eq(r, VMX_STOP_EXIT, "%s:\n%s", vmx_stop_name(r),
		     e->out.buf);
	cr_assert(strstr(e->out.buf, "blk ok\n"), "%s", e->out.buf);
	cr_assert_eq(e->code, 0);
	t_console_free(&e->out);
}

static off_t file_size(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(stat(path, &st), 0, "%s: %m", path);
	return st.st_size;
}

T_BACKEND_TEST(disk, write_flush_read_survives_restart, .timeout = 60)
{
	struct disk_env e;
	env_init(&e);
	exits_ok(&e, "mode=write seed=5 sectors=2048", PLAIN);
	cr_assert_eq(file_size(e.dir, "data.img"), 1 << 20);
	/* A new partition, a new vmm: the data is on the disk file. */
	exits_ok(&e, "mode=check seed=5 sectors=2048", PLAIN);
	unsigned r = run(&e, "mode=check seed=6 sectors=2048", PLAIN);
	cr_assert_eq(r, VMX_STOP_EXIT);
	cr_assert_eq(e.code, 1);
	cr_assert(strstr(e.out.buf, "blk differs"), "%s", e.out.buf);
	env_free(&e);
}

T_BACKEND_TEST(disk, batched_requests_in_one_exit, .timeout = 60)
{
	struct disk_env e;
	env_init(&e);
	exits_ok(&e, "mode=batch seed=9 sectors=2048", PLAIN);
	exits_ok(&e, "mode=check seed=9 sectors=2048", PLAIN);
	env_free(&e);
}

T_BACKEND_TEST(disk, out_of_range_request_stops_the_partition, .timeout = 30)
{
	struct disk_env e;
	env_init(&e);
	cr_assert_eq(run(&e, "mode=range", PLAIN), VMX_STOP_BLK_RANGE,
		     "%s", e.out.buf);
	cr_assert_null(strstr(e.out.buf, "blk ok"));
	env_free(&e);
}

T_BACKEND_TEST(disk, misaligned_buffer_stops_the_partition, .timeout = 30)
{
	struct disk_env e;
	env_init(&e);
	cr_assert_eq(run(&e, "mode=misalign", PLAIN), VMX_STOP_BLK_ALIGN,
		     "%s", e.out.buf);
	env_free(&e);
}

/* The vmm's descriptor for a read-only disk is O_RDONLY (the kernel
 * refuses a write whatever the vmm does), and the request check refuses
 * the write before it reaches the kernel. */
T_BACKEND_TEST(disk, read_only_disk_refuses_writes, .timeout = 30)
{
	struct disk_env e;
	env_init(&e);
	exits_ok(&e, "mode=write seed=3 sectors=64", PLAIN);
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(start(&e, "mode=rowrite", PLAIN ",\"read_only\":true",
			   true, &p, &err), 0, "%s", perr_msg(&err));
	char fddir[64], link[PATH_MAX], target[PATH_MAX];
	snprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int)p->pid);
	snprintf(target, sizeof(target), "%s/data.img", e.dir);
	int found = 0;
	for (int fd = 0; fd < 64; fd++) {
		char path[96];
		snprintf(path, sizeof(path), "%s/%d", fddir, fd);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (strcmp(link, target))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)p->pid,
			 fd);
		FILE *f = fopen(path, "r");
		cr_assert(f, "%s: %m", path);
		unsigned flags = 0;
		char line[128];
		while (fgets(line, sizeof(line), f))
			sscanf(line, "flags: %o", &flags);
		fclose(f);
		cr_assert_eq(flags & O_ACCMODE, O_RDONLY, "flags 0%o", flags);
		found++;
	}
	cr_assert_eq(found, 1, "the vmm holds the disk %d times", found);
	cr_assert_eq(partition_resume(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(partition_wait(p, 20000), 0);
	cr_assert_eq(p->fin.reason, VMX_STOP_BLK_READONLY, "%s: %s",
		     vmx_stop_name(p->fin.reason), p->fin.detail);
	partition_destroy(p);
	/* What was there is still there. */
	exits_ok(&e, "mode=check seed=3 sectors=64",
		 PLAIN ",\"read_only\":true");
	env_free(&e);
}

/* ---- encrypted disks (aes-xts-plain64) ---- */

#define ENC PLAIN ",\"encryption\":{\"cipher\":\"aes-xts-plain64\"," \
	"\"key\":\"data.key\"}"
#define TEXT "parley-known-plaintext--"

static void key_file(const struct disk_env *e, mode_t mode)
{
	uint8_t key[64];
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 37 + 11);
	char *path = t_write(e->dir, "data.key", key, sizeof(key));
	cr_assert_eq(chmod(path, mode), 0);
	free(path);
}

static uint8_t *read_file(const char *dir, const char *name, size_t *len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	cr_assert(f, "%s: %m", path);
	uint8_t *b = malloc(2 << 20);
	*len = fread(b, 1, 2 << 20, f);
	fclose(f);
	return b;
}

static bool has_text(const uint8_t *b, size_t len)
{
	return memmem(b, len, TEXT, strlen(TEXT)) != NULL;
}

T_BACKEND_TEST(disk, encrypted_file_holds_no_plaintext, .timeout = 60)
{
	struct disk_env e;
	env_init(&e);
	/* The check can fail: a plain disk holds the text. */
	exits_ok(&e, "mode=text sectors=256", PLAIN);
	size_t len;
	uint8_t *b = read_file(e.dir, "data.img", &len);
	cr_assert(has_text(b, len));
	free(b);
	unlink(strcat(strcpy((char[PATH_MAX]){ 0 }, e.dir), "/data.img"));
	key_file(&e, 0600);
	exits_ok(&e, "mode=text sectors=256", ENC);
	cr_assert_eq(e.key_asks, 1);
	cr_assert(strstr(e.events, "disk_key_released data"), "%s", e.events);
	b = read_file(e.dir, "data.img", &len);
	cr_assert_eq(len, 1 << 20);
	cr_assert_not(has_text(b, len), "plaintext in the encrypted file");
	free(b);
	/* Written and read back through the cipher, across a restart. */
	exits_ok(&e, "mode=write seed=11 sectors=2048", ENC);
	exits_ok(&e, "mode=check seed=11 sectors=2048", ENC);
	exits_ok(&e, "mode=batch seed=12 sectors=512", ENC);
	env_free(&e);
}

T_BACKEND_TEST(disk, key_file_others_may_read_is_refused, .timeout = 30)
{
	struct disk_env e;
	env_init(&e);
	key_file(&e, 0644);
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	cr_assert_lt(start(&e, "mode=check", ENC, false, &p, &err), 0);
	cr_assert(strstr(perr_msg(&err), "mode 0644"), "%s", perr_msg(&err));
	cr_assert(strstr(e.events, "disk_key_refused data"), "%s", e.events);
	env_free(&e);
}

/* A partition that fails its baseline check is never asked a key for:
 * the disk is not even opened. */
T_BACKEND_TEST(disk, tampered_partition_never_gets_its_key, .timeout = 30)
{
	struct disk_env e;
	env_init(&e);
	key_file(&e, 0600);
	e.refuse_admission = true;
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	cr_assert_lt(start(&e, "mode=check", ENC, false, &p, &err), 0);
	cr_assert_eq(e.key_asks, 0);
	cr_assert(strstr(e.events, "disk_key_refused data"), "%s", e.events);
	cr_assert(strstr(e.events, "baseline mismatch"), "%s", e.events);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data.img", e.dir);
	cr_assert_neq(access(path, F_OK), 0, "the disk was opened");
	env_free(&e);
}

/* t_run execs without a PATH search. */
#define CRYPTSETUP "/usr/sbin/cryptsetup"
#define PYTHON3 "/usr/bin/python3"

/* Why dm-crypt cannot be asked here, or NULL. */
static const char *no_cryptsetup(void)
{
	if (geteuid() != 0)
		return "not root (dm-crypt needs CAP_SYS_ADMIN)";
	if (access(CRYPTSETUP, X_OK))
		return "cryptsetup is not installed (./dev deps)";
	if (access("/dev/loop-control", R_OK | W_OK))
		return "no /dev/loop-control";
	/* The kernel's, not a node libdevmapper may make on its own. */
	if (access("/sys/class/misc/device-mapper", F_OK))
		return "this kernel has no device-mapper (dm-crypt)";
	return NULL;
}

/* The disk file is a dm-crypt plain volume: cryptsetup, with the same
 * key, reads back what the partition wrote. */
T_BACKEND_TEST(disk, cryptsetup_reads_what_the_partition_wrote, .timeout = 60)
{
	struct disk_env e;
	env_init(&e);
	key_file(&e, 0600);
	exits_ok(&e, "mode=text sectors=256", ENC);
	const char *why = no_cryptsetup();
	if (why) {
		env_free(&e);
		cr_skip_test("cryptsetup check: %s", why);
	}
	char img[PATH_MAX], key[PATH_MAX], name[64], dev[96];
	snprintf(img, sizeof(img), "%s/data.img", e.dir);
	snprintf(key, sizeof(key), "%s/data.key", e.dir);
	snprintf(name, sizeof(name), "parley-test-%d", (int)getpid());
	snprintf(dev, sizeof(dev), "/dev/mapper/%s", name);
	char *open_argv[] = { CRYPTSETUP, "open", "--type", "plain",
			      "--cipher", "aes-xts-plain64", "--key-size",
			      "512", "--key-file", key, "--readonly", img,
			      name, NULL };
	char *out = NULL;
	int st = t_run(open_argv, &out, 30);
	if (st != 0 && out && (strstr(out, "loop") || strstr(out, "kernel"))) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", out);
		free(out);
		env_free(&e);
		cr_skip_test("cryptsetup cannot attach here: %s", msg);
	}
	cr_assert_eq(st, 0, "cryptsetup open: %s", out);
	free(out);
	FILE *f = fopen(dev, "rb");
	uint8_t buf[256 * 512];
	size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f)
		fclose(f);
	char *close_argv[] = { CRYPTSETUP, "close", name, NULL };
	out = NULL;
	int cst = t_run(close_argv, &out, 30);
	free(out);
	cr_assert_eq(n, sizeof(buf), "reading %s", dev);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(buf[i], (uint8_t)TEXT[i % 24], "byte %zu", i);
	cr_assert_eq(cst, 0, "cryptsetup close");
	env_free(&e);
}

/* Where dm-crypt is missing (no device-mapper in this kernel): the same
 * construction read by another implementation — Python's cryptography
 * package, AES-256-XTS with the sector number little-endian as tweak, as
 * dm-crypt's plain64 makes it. */
static const char xts_py[] =
	"import sys\n"
	"from cryptography.hazmat.primitives.ciphers import Cipher, "
	"algorithms, modes\n"
	"img = open(sys.argv[1], 'rb').read()\n"
	"key = open(sys.argv[2], 'rb').read()\n"
	"out = b''\n"
	"for s in range(int(sys.argv[3])):\n"
	"    d = Cipher(algorithms.AES(key), modes.XTS(s.to_bytes(16, "
	"'little'))).decryptor()\n"
	"    out += d.update(img[s * 512:(s + 1) * 512]) + d.finalize()\n"
	"t = b'" TEXT "'\n"
	"want = (t * (len(out) // len(t) + 1))[:len(out)]\n"
	"print('match' if out == want else 'differ')\n";

T_BACKEND_TEST(disk, xts_sectors_read_by_another_implementation,
	       .timeout = 60)
{
	struct disk_env e;
	env_init(&e);
	key_file(&e, 0600);
	exits_ok(&e, "mode=text sectors=64", ENC);
	char *probe[] = { PYTHON3, "-c", "import cryptography", NULL };
	char *out = NULL;
	int st = t_run(probe, &out, 30);
	free(out);
	if (st != 0) {
		env_free(&e);
		cr_skip_test("%s with cryptography: %s", PYTHON3,
			     st == 127 ? "no such program"
				       : "the package is not installed");
	}
	char img[PATH_MAX], key[PATH_MAX];
	snprintf(img, sizeof(img), "%s/data.img", e.dir);
	snprintf(key, sizeof(key), "%s/data.key", e.dir);
	char *argv[] = { PYTHON3, "-c", (char *)xts_py, img, key, "64",
			 NULL };
	out = NULL;
	st = t_run(argv, &out, 30);
	cr_assert_eq(st, 0, "%s", out);
	cr_assert(strstr(out, "match\n"), "%s", out);
	free(out);
	env_free(&e);
}

/* ---- quarantine ---- */

#define BOTH(ch, a, b)                                                     \
	"{\"channel\":\"" ch "\",\"endpoint_a\":\"" a "\",\"endpoint_b\":\"" \
	b "\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}"

/* A partition holding a disk key that stops matching its baseline while
 * it runs (a config file changed in its memory, caught when it opens a
 * channel) is quarantined: its vmm, the only holder of the key, is
 * stopped, and the wipe is audited. */
T_BACKEND_TEST(disk, quarantined_while_running_is_stopped_key_wiped,
	       .timeout = 60)
{
	static const char *const cfg[] = { "motd=hello, operator\n",
					   "app.conf=mode=strict\n", NULL };
	struct t_fleet f;
	t_fleet_init(&f, "{\"grants\":[" BOTH("c1", "a", "b") ","
		     BOTH("c2", "b", "a") "]}");
	uint8_t key[64];
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	char *kp = t_write(f.dir, "b.key", key, sizeof(key));
	cr_assert_eq(chmod(kp, 0600), 0);
	free(kp);
	struct partition *a = t_fleet_add(&f, "a", "chantest.elf",
		"steps=open:c1,recvall:0", cfg, false, NULL);
	f.disks = "{\"name\":\"data\",\"path\":\"b.img\",\"size\":\"1M\","
		  "\"encryption\":{\"cipher\":\"aes-xts-plain64\","
		  "\"key\":\"b.key\"}}";
	struct partition *b = t_fleet_add(&f, "b", "chantest.elf",
		"steps=open:c1,sleep:50,tamper:app.conf,open:c2,"
		"sleep:3000,open:c1", cfg, false, NULL);
	f.disks = NULL;
	cr_assert_eq(b->nkeyed, 1);
	cr_assert_eq(a->nkeyed, 0);
	t_fleet_go(&f);
	cr_assert_eq(t_fleet_run(&f, 20000), 0, "still running:\n%s",
		     t_fleet_out(&f));
	cr_assert_eq(b->fin.reason, VMX_STOP_KILLED, "b: %s (%s)\n%s",
		     vmx_stop_name(b->fin.reason), b->fin.detail,
		     t_fleet_out(&f));
	cr_assert_eq(b->nkeyed, 0);
	const char *aud = t_fleet_audit(&f);
	cr_assert(strstr(aud, "\"event\":\"quarantine\",\"partition\":\"b\""),
		  "%s", aud);
	cr_assert(strstr(aud, "\"event\":\"disk_key_wiped\",\"partition\":"
			      "\"b\""), "%s", aud);
	/* Stopped before its next step: never opened c1 again. */
	cr_assert_null(strstr(t_fleet_out(&f), "b| open c1 -9"), "%s",
		       t_fleet_out(&f));
	t_fleet_free(&f);
}

/* ---- the kvlog example ---- */

static const char *kvlog(struct disk_env *e, const char *put)
{
	char json[512];
	snprintf(json, sizeof(json), "{\"name\":\"kvlog\",\"image\":"
		 "\"kvlog.elf\",\"memory\":\"4M\",\"cmdline\":\"%s\","
		 "\"disks\":[{\"name\":\"log\",\"path\":\"kvlog.img\","
		 "\"size\":\"1M\"}]}", put);
	struct part_spec s;
	struct parley_err err = { 0 };
	cr_assert_eq(spec_parse(json, strlen(json), e->dir, &s, &err), 0);
	struct part_opts o = t_opts(&e->out);
	o.disk_dirs = e->dirs;
	struct partition *p = NULL;
	t_console_free(&e->out);
	cr_assert_eq(partition_create(&s, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	spec_free(&s);
	cr_assert_eq(partition_wait(p, 20000), 0);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s", p->fin.detail);
	cr_assert_eq(p->fin.code, 0, "%s", e->out.buf);
	partition_destroy(p);
	return e->out.buf;
}

T_BACKEND_TEST(disk, kvlog_keeps_its_log_across_restarts, .timeout = 60)
{
	struct disk_env e;
	env_init(&e);
	const char *out = kvlog(&e, "put=colour:blue");
	cr_assert(strstr(out, "kvlog: formatted log\n"), "%s", out);
	cr_assert(strstr(out, "kvlog: 1 records, 1 keys\n"), "%s", out);
	out = kvlog(&e, "put=size:7");
	cr_assert_null(strstr(out, "formatted"), "%s", out);
	out = kvlog(&e, "put=colour:green");
	cr_assert(strstr(out, "kvlog: 3 records, 2 keys\n"), "%s", out);
	cr_assert(strstr(out, "kvlog| colour=green\n"), "%s", out);
	cr_assert(strstr(out, "kvlog| size=7\n"), "%s", out);
	out = kvlog(&e, "");
	cr_assert(strstr(out, "kvlog: 3 records, 2 keys\n"), "%s", out);
	env_free(&e);
}

/* ---- the vmm's XTS against OpenSSL's own ---- */

/* blk_xts.c builds XTS on AES-ECB (one call per request); OpenSSL's
 * EVP_aes_256_xts, one data unit at a time with plain64 tweaks, must give
 * the same bytes, at offsets from 0 to far past 2^32 units. */
static void xts_against_openssl(bool vaes)
{
	uint8_t key[64];
	for (int i = 0; i < 64; i++)
		key[i] = (uint8_t)(i * 131 + 7);
	struct blk_xts *x;
	struct parley_err err = { 0 };
	cr_assert_eq(xts_new_with(key, 1 << 20, vaes, &x, &err), 0, "%s",
		     perr_msg(&err));
	size_t cap = 1 << 20;
	uint8_t *in = malloc(cap), *ours = malloc(cap), *ref = malloc(cap);
	uint64_t r = 88172645463325252ull;
	for (size_t i = 0; i < cap; i++) {
		r ^= r << 13; r ^= r >> 7; r ^= r << 17;
		in[i] = (uint8_t)r;
	}
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	cr_assert_eq(EVP_EncryptInit_ex(c, EVP_aes_256_xts(), NULL, key, NULL), 1);
	static const struct { uint64_t off; size_t len; } cases[] = {
		{ 0, 512 }, { 512 * 7, 4096 }, { 0, 1 << 20 },
		{ (1ull << 32) * 512 - 1024, 8192 }, /* across 2^32 units */
		{ 0xfffffffffffffull * 512, 65536 },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		uint64_t off = cases[k].off;
		size_t len = cases[k].len;
		cr_assert_eq(xts_crypt(x, 1, in, ours, len, off), 0);
		for (size_t u = 0; u < len / 512; u++) {
			uint8_t iv[16] = { 0 };
			uint64_t unit = off / 512 + u;
			for (int i = 0; i < 8; i++)
				iv[i] = (uint8_t)(unit >> (8 * i));
			int n = 0;
			cr_assert_eq(EVP_CipherInit_ex(c, NULL, NULL, NULL, iv, 1), 1);
			cr_assert_eq(EVP_CipherUpdate(c, ref + u * 512, &n,
						      in + u * 512, 512), 1);
		}
		cr_assert_eq(memcmp(ours, ref, len), 0, "case %zu differs", k);
		cr_assert_eq(xts_crypt(x, 0, ours, ours, len, off), 0);
		cr_assert_eq(memcmp(ours, in, len), 0, "case %zu: no round trip",
			     k);
	}
	cr_assert_eq(xts_crypt(x, 1, in, ours, 100, 0), -EINVAL);
	cr_assert_eq(xts_crypt(x, 1, in, ours, 512, 100), -EINVAL);
	EVP_CIPHER_CTX_free(c);
	xts_free(x);
	free(in);
	free(ours);
	free(ref);
	/* Equal halves are refused, as OpenSSL's XTS refuses them. */
	memcpy(key + 32, key, 32);
	cr_assert_eq(xts_new_with(key, 4096, vaes, &x, NULL), -EINVAL);
}

Test(disk, xts_equals_openssl_xts_per_unit)
{
	xts_against_openssl(false);
}

/* The VAES path (blk_xts_vaes.c) that xts_new picks where the CPU has it:
 * the same bytes as OpenSSL, including in place and across 2^32 units. */
Test(disk, xts_vaes_equals_openssl_xts_per_unit)
{
	if (!xts_vaes_usable())
		cr_skip_test("this CPU has no AVX-512 VAES");
	xts_against_openssl(true);
}
