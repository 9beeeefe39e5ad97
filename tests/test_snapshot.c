/*
 * Partition snapshots (agent/snapshot.c) as untrusted input: a valid file
 * written with snap_write and read back with snap_read (memory compared
 * byte for byte, the system area re-laid even when the file's copy is
 * garbage); then hostile headers through snap_check_header and as whole
 * files, every truncation, an extra byte, a flipped byte anywhere (body or
 * tag), another key, another host, another name, another ABI, an old
 * version, and paths that are no snapshot at all. Each refusal with its
 * code and a piece of its message. Then whole partitions: saved on KVM and
 * restored on every backend, and `parley-agent restore` refusing what it
 * must, with the reason.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/hmac.h>

#include "agent/backend.h"
#include "agent/snapshot.h"
#include "common/fileio.h"
#include "tests/helpers/testutil.h"

#define RAM_SIZE PARLEY_MEM_MIN
#define CFG_SIZE 0x2000ull
#define MEM_SIZE (RAM_SIZE + CFG_SIZE)
#define VCPUS 2
#define HASH_LEN SNAP_TAG_LEN
#define SYS_FILL 0xee /* what the file claims the system area holds */

/* The snapshot partition_save would write for a small partition. */
static void good_header(struct snap_header *h)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, SNAP_MAGIC, 8);
	h->version = SNAP_VERSION;
	h->vcpus = VCPUS;
	h->ram_size = RAM_SIZE;
	h->cfg_size = CFG_SIZE;
	h->entry = 0x100010;
	h->image_hi = 0x105000;
	h->nrange = 3;
	h->range[0].gpa = 0x100000;
	h->range[0].size = 0x1000;
	h->range[0].flags = PF_R | PF_X;
	h->range[1].gpa = 0x101000;
	h->range[1].size = 0x1000;
	h->range[1].flags = PF_R;
	h->range[2].gpa = 0x102000;
	h->range[2].size = 0x3000;
	h->range[2].flags = PF_R | PF_W;
	snprintf(h->name, sizeof(h->name), "%s", "web-1");
	cr_assert_eq(snap_host(h->host, NULL), 0);
	h->abi_major = PARLEY_ABI_MAJOR;
	h->abi_minor = PARLEY_ABI_MINOR;
	h->backend = CTL_BACKEND_KVM;
}

/* What snap_read requires here: this host, any name. */
static const struct snap_expect *here(void)
{
	static char host[SNAP_HOST_MAX];
	static struct snap_expect w = { .host = host };
	cr_assert_eq(snap_host(host, NULL), 0);
	return &w;
}

/* The tag as the format defines it, computed here independently:
 * HMAC-SHA256(key, "parley snapshot v2\0" || body). */
static void tag_of(const struct snap_key *k, const uint8_t *body, size_t len,
		   uint8_t *tag)
{
	static const char ctx[] = "parley snapshot v2";
	uint8_t *b = malloc(sizeof(ctx) + len);
	unsigned int tl = 0;

	cr_assert_not_null(b);
	memcpy(b, ctx, sizeof(ctx));
	memcpy(b + sizeof(ctx), body, len);
	cr_assert(HMAC(EVP_sha256(), k->k, sizeof(k->k), b, sizeof(ctx) + len,
		       tag, &tl));
	cr_assert_eq(tl, HASH_LEN);
	free(b);
}

/* vCPU states as a paused partition reports them: user segments, our page
 * tables, IOPL 3. snap_read takes them as they are; the vmm checks them. */
static void good_states(struct ctl_vcpu_state *st, unsigned n)
{
	memset(st, 0, n * sizeof(*st));
	for (unsigned i = 0; i < n; i++) {
		st[i].index = i;
		st[i].regs.rip = 0x100020 + i;
		st[i].regs.rsp = RAM_SIZE - i * PARLEY_STACK_SIZE;
		st[i].regs.rflags = 0x3002;
		st[i].regs.rdi = PARLEY_BOOT_INFO_GPA;
		st[i].regs.rsi = i;
		st[i].sregs.cs.selector = LAYOUT_SEL_CODE;
		st[i].sregs.cs.dpl = 3;
		st[i].sregs.cs.l = 1;
		st[i].sregs.ds.selector = LAYOUT_SEL_DATA;
		st[i].sregs.cr3 = LAYOUT_PML4;
		st[i].sregs.gdt.base = LAYOUT_GDT;
		st[i].sregs.gdt.limit = LAYOUT_GDT_ENTRIES * 8 - 1;
	}
}

/* Guest memory with a byte pattern that differs from page to page, and a
 * system area of garbage. */
static uint8_t *good_mem(uint64_t size)
{
	uint8_t *m = malloc(size);

	cr_assert_not_null(m);
	for (uint64_t i = 0; i < size; i++)
		m[i] = (uint8_t)(i * 31 + (i >> 12) * 7 + 1);
	memset(m + PARLEY_SYS_BASE, SYS_FILL, PARLEY_SYS_SIZE);
	return m;
}

/* The system area layout_system makes for header h. */
static uint8_t *real_system_area(const struct snap_header *h)
{
	struct layout_range r[SNAP_RANGES_MAX];
	uint8_t *ram = calloc(1, PARLEY_SYS_BASE + PARLEY_SYS_SIZE);
	struct parley_err e = { 0 };

	cr_assert_not_null(ram);
	for (unsigned i = 0; i < h->nrange; i++)
		r[i] = (struct layout_range){ h->range[i].gpa,
					      h->range[i].size,
					      h->range[i].flags };
	struct layout_params lp = { .ram_size = h->ram_size,
				    .vcpus = h->vcpus,
				    .image_hi = h->image_hi,
				    .nrange = h->nrange, .ranges = r };
	cr_assert_eq(layout_system(ram, &lp, &e), 0, "%s", perr_msg(&e));
	return ram;
}

/* A snapshot file as bytes: header | states | memory | tag. */
struct file {
	uint8_t *b;
	size_t len;
};

static void file_build(struct file *f, const struct snap_header *h,
		       const struct ctl_vcpu_state *st, unsigned nst,
		       const uint8_t *mem, uint64_t mem_len)
{
	size_t body = sizeof(*h) + nst * sizeof(*st) + mem_len;

	f->len = body + HASH_LEN;
	f->b = malloc(f->len);
	cr_assert_not_null(f->b);
	memcpy(f->b, h, sizeof(*h));
	memcpy(f->b + sizeof(*h), st, nst * sizeof(*st));
	memcpy(f->b + sizeof(*h) + nst * sizeof(*st), mem, mem_len);
	tag_of(t_snap_key(), f->b, body, f->b + body);
}

/* The good file, as snap_write would write it. */
static void file_good(struct file *f)
{
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	uint8_t *mem = good_mem(MEM_SIZE);

	good_header(&h);
	good_states(st, VCPUS);
	file_build(f, &h, st, VCPUS, mem, MEM_SIZE);
	free(mem);
}

static size_t file_off_states(void) { return sizeof(struct snap_header); }
static size_t file_off_mem(void)
{
	return file_off_states() + VCPUS * sizeof(struct ctl_vcpu_state);
}
static size_t file_off_sum(void) { return file_off_mem() + MEM_SIZE; }

static char *file_put(const char *dir, const char *name, const struct file *f,
		      size_t len)
{
	return t_write(dir, name, f->b, len);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Read path back; on success map the memory and check it against mem
 * (system area against the real tables) and the header and states. */
static void expect_restores(const char *path, const struct snap_header *h,
			    const struct ctl_vcpu_state *st, const uint8_t *mem)
{
	struct snap_image img;
	struct parley_err e = { 0 };
	uint64_t total = h->ram_size + h->cfg_size;
	struct stat sb;
	uint8_t *m, *sys;
	int seals;

	cr_assert_eq(snap_read(path, t_snap_key(), here(), &img, &e), 0, "%s", perr_msg(&e));
	cr_assert_geq(img.mem_fd, 0);
	cr_expect_arr_eq(&img.h, h, sizeof(*h), "header differs");
	for (unsigned i = 0; i < h->vcpus; i++)
		cr_expect_arr_eq(&img.vcpu[i], &st[i], sizeof(st[i]),
				 "vCPU %u state differs", i);
	cr_assert_eq(fstat(img.mem_fd, &sb), 0);
	cr_expect_eq((uint64_t)sb.st_size, total);
	seals = fcntl(img.mem_fd, F_GET_SEALS);
	cr_expect_eq(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
		     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL,
		     "seals 0x%x", seals);
	cr_expect_neq(ftruncate(img.mem_fd, (off_t)total + 4096), 0,
		      "restored memory can grow");
	m = mmap(NULL, total, PROT_READ, MAP_SHARED, img.mem_fd, 0);
	cr_assert_neq(m, MAP_FAILED);
	cr_expect_arr_eq(m, mem, PARLEY_SYS_BASE, "NULL page differs");
	sys = real_system_area(h);
	cr_expect_arr_eq(m + PARLEY_SYS_BASE, sys + PARLEY_SYS_BASE,
			 PARLEY_SYS_SIZE,
			 "system area is not what layout_system lays");
	for (uint64_t i = PARLEY_SYS_BASE + PARLEY_SYS_SIZE; i < total; i++)
		if (m[i] != mem[i])
			cr_assert_fail("memory byte 0x%llx: 0x%x, want 0x%x",
				       (unsigned long long)i, m[i], mem[i]);
	free(sys);
	munmap(m, total);
	close(img.mem_fd);
}

Test(snapshot, write_then_read)
{
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	struct parley_err e = { 0 };
	char *dir = t_tmpdir(), *path, *tmp;
	uint8_t *mem = good_mem(MEM_SIZE);
	struct stat sb;

	good_header(&h);
	good_states(st, VCPUS);
	cr_assert(asprintf(&path, "%s/web.snap", dir) > 0);
	cr_assert(asprintf(&tmp, "%s.tmp", path) > 0);
	cr_assert_eq(snap_write(path, t_snap_key(), &h, st, NULL, mem, &e), 0, "%s", perr_msg(&e));
	cr_assert_eq(stat(path, &sb), 0);
	cr_expect_eq((uint64_t)sb.st_size, sizeof(h) + sizeof(st) + MEM_SIZE +
						   HASH_LEN);
	cr_expect_eq(sb.st_mode & 0777, 0600, "mode 0%o", sb.st_mode & 0777);
	cr_expect_neq(access(tmp, F_OK), 0, "temporary file left behind");
	expect_restores(path, &h, st, mem);
	/* Byte for byte what the test's own builder makes. */
	{
		struct file f;
		uint8_t *disk = malloc(sb.st_size);
		FILE *fp = fopen(path, "rb");

		cr_assert(disk && fp);
		cr_assert_eq(fread(disk, 1, sb.st_size, fp),
			     (size_t)sb.st_size);
		fclose(fp);
		file_build(&f, &h, st, VCPUS, mem, MEM_SIZE);
		cr_assert_eq(f.len, (size_t)sb.st_size);
		cr_expect_arr_eq(disk, f.b, f.len);
		free(f.b);
		free(disk);
	}
	free(mem);
	free(tmp);
	free(path);
	t_rmtree(dir);
	free(dir);
}

/* The garbage the file holds for the system area was hashed with the rest
 * and accepted, and the restored tables are ours all the same. */
Test(snapshot, system_area_relaid_not_taken)
{
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	struct parley_err e = { 0 };
	char *dir = t_tmpdir(), *path;
	uint8_t *mem = good_mem(MEM_SIZE);

	good_header(&h);
	good_states(st, VCPUS);
	/* User bits everywhere, a PML4 pointing at partition memory. */
	for (uint64_t i = PARLEY_SYS_BASE;
	     i < PARLEY_SYS_BASE + PARLEY_SYS_SIZE; i += 8) {
		uint64_t pte = 0x200000 | 0x87;

		memcpy(mem + i, &pte, 8);
	}
	cr_assert(asprintf(&path, "%s/evil.snap", dir) > 0);
	cr_assert_eq(snap_write(path, t_snap_key(), &h, st, NULL, mem, &e), 0, "%s", perr_msg(&e));
	expect_restores(path, &h, st, mem);
	free(path);
	free(mem);
	t_rmtree(dir);
	free(dir);
}

/* Other shapes that must restore: one vCPU and no config region; eight
 * vCPUs, sixteen ranges, an image right up to the stacks. */
Test(snapshot, other_shapes_restore)
{
	struct snap_header h;
	struct ctl_vcpu_state st[PARLEY_VCPUS_MAX];
	struct parley_err e = { 0 };
	char *dir = t_tmpdir(), *path;
	uint8_t *mem = good_mem(RAM_SIZE + CFG_SIZE);

	good_header(&h);
	h.vcpus = 1;
	h.cfg_size = 0;
	h.nrange = 0;
	good_states(st, 1);
	cr_assert(asprintf(&path, "%s/a.snap", dir) > 0);
	cr_assert_eq(snap_write(path, t_snap_key(), &h, st, NULL, mem, &e), 0, "%s", perr_msg(&e));
	expect_restores(path, &h, st, mem);
	free(path);

	good_header(&h);
	h.vcpus = PARLEY_VCPUS_MAX;
	h.image_hi = layout_stack_floor(RAM_SIZE, PARLEY_VCPUS_MAX);
	h.entry = h.image_hi - 1;
	h.nrange = SNAP_RANGES_MAX;
	for (unsigned i = 0; i < SNAP_RANGES_MAX; i++) {
		h.range[i].gpa = PARLEY_IMAGE_MIN + i * 0x2000ull;
		h.range[i].size = 0x2000;
		h.range[i].flags = i % 2 ? PF_R : PF_R | PF_W;
	}
	memset(h.name, 'n', sizeof(h.name) - 1);
	h.name[sizeof(h.name) - 1] = 0;
	good_states(st, PARLEY_VCPUS_MAX);
	cr_assert(asprintf(&path, "%s/b.snap", dir) > 0);
	cr_assert_eq(snap_write(path, t_snap_key(), &h, st, NULL, mem, &e), 0, "%s", perr_msg(&e));
	expect_restores(path, &h, st, mem);
	free(path);
	free(mem);
	t_rmtree(dir);
	free(dir);
}

Test(snapshot, write_into_missing_dir)
{
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	struct parley_err e = { 0 };
	uint8_t *mem = good_mem(MEM_SIZE);

	good_header(&h);
	good_states(st, VCPUS);
	cr_expect_eq(snap_write("/nonexistent-parley/x.snap", t_snap_key(), &h, st, NULL,
				 mem, &e),
		     -ENOENT);
	cr_expect_eq(e.code, -ENOENT);
	cr_expect(strstr(e.msg, "/nonexistent-parley/x.snap.tmp"), "%s", e.msg);
	free(mem);
}

/* Hostile headers: one change to the good header each. */
static void m_magic(struct snap_header *h) { h->magic[0] = 'p'; }
static void m_magic_last(struct snap_header *h) { h->magic[7] = 0; }
static void m_magic_zero(struct snap_header *h)
{
	memset(h->magic, 0, sizeof(h->magic));
}
static void m_version0(struct snap_header *h) { h->version = 0; }
static void m_version1(struct snap_header *h) { h->version = 1; }
static void m_version4(struct snap_header *h) { h->version = 4; }
static void m_dev_v2(struct snap_header *h)
{
	h->version = 2;
	h->ndevice = 1;
}
static void m_dev_many(struct snap_header *h) { h->ndevice = 34; }
static void m_vcpus0(struct snap_header *h) { h->vcpus = 0; }
static void m_vcpus9(struct snap_header *h) { h->vcpus = 9; }
static void m_vcpus_max(struct snap_header *h) { h->vcpus = UINT32_MAX; }
static void m_ram_small(struct snap_header *h) { h->ram_size = 0x200000; }
static void m_ram_zero(struct snap_header *h) { h->ram_size = 0; }
static void m_ram_big(struct snap_header *h)
{
	h->ram_size = PARLEY_MEM_MAX + 0x200000;
}
static void m_ram_huge(struct snap_header *h)
{
	h->ram_size = 0xffffffffffe00000ull;
}
static void m_ram_unaligned(struct snap_header *h)
{
	h->ram_size = RAM_SIZE + 0x1000;
}
static void m_cfg_unaligned(struct snap_header *h) { h->cfg_size = 0x2800; }
static void m_cfg_one(struct snap_header *h) { h->cfg_size = 1; }
static void m_cfg_big(struct snap_header *h)
{
	h->cfg_size = PARLEY_CONFIG_MAX + 0x1000;
}
static void m_cfg_wraps(struct snap_header *h)
{
	/* ram + cfg wraps to a small total if the sum is not checked */
	h->cfg_size = 0 - RAM_SIZE;
}
static void m_nrange17(struct snap_header *h) { h->nrange = 17; }
static void m_nrange_max(struct snap_header *h) { h->nrange = UINT32_MAX; }
static void m_image_max(struct snap_header *h)
{
	h->image_hi = LAYOUT_IMAGE_MAX + 0x1000;
}
static void m_image_low(struct snap_header *h)
{
	h->image_hi = PARLEY_IMAGE_MIN - 0x1000;
	h->nrange = 0;
}
static void m_image_zero(struct snap_header *h) { h->image_hi = 0; }
static void m_entry_low(struct snap_header *h) { h->entry = 0xfffff; }
static void m_entry_zero(struct snap_header *h) { h->entry = 0; }
static void m_entry_end(struct snap_header *h) { h->entry = h->image_hi; }
static void m_entry_huge(struct snap_header *h) { h->entry = UINT64_MAX; }
static void m_range_low(struct snap_header *h)
{
	h->range[0].gpa = PARLEY_IMAGE_MIN - 0x1000;
}
static void m_range_sys(struct snap_header *h)
{
	h->range[1].gpa = PARLEY_SYS_BASE;
	h->range[1].size = 0x1000;
}
static void m_range_past(struct snap_header *h) { h->range[2].size += 1; }
static void m_range_outside(struct snap_header *h)
{
	h->range[2].gpa = 0x200000;
	h->range[2].size = 0x1000;
}
static void m_range_wraps(struct snap_header *h)
{
	h->range[1].gpa = 0xfffffffffffff000ull;
	h->range[1].size = 0x2000;
}
static void m_range_wraps_exact(struct snap_header *h)
{
	h->range[1].gpa = 0x101000;
	h->range[1].size = 0 - 0x101000ull; /* end wraps to exactly 0 */
}
static void m_range_huge(struct snap_header *h)
{
	h->range[2].size = UINT64_MAX;
}
static void m_range_16(struct snap_header *h)
{
	/* the 17th would be out of bounds; the 16th is checked */
	h->nrange = SNAP_RANGES_MAX;
	for (unsigned i = 3; i < SNAP_RANGES_MAX; i++) {
		h->range[i].gpa = 0x104000;
		h->range[i].size = 0x1000;
	}
	h->range[SNAP_RANGES_MAX - 1].size = 0x1001;
}
static void m_name_no_nul(struct snap_header *h)
{
	memset(h->name, 'a', sizeof(h->name));
}
static void m_name_empty(struct snap_header *h)
{
	memset(h->name, 0, sizeof(h->name));
}
static void m_name_empty_tail(struct snap_header *h)
{
	/* empty, with bytes after the NUL */
	h->name[0] = 0;
}
static void m_name_slash(struct snap_header *h)
{
	snprintf(h->name, sizeof(h->name), "../etc");
}
static void m_name_escape(struct snap_header *h)
{
	snprintf(h->name, sizeof(h->name), "a\x1b[2J");
}
static void m_host_no_nul(struct snap_header *h)
{
	memset(h->host, 'h', sizeof(h->host));
}
static void m_host_empty(struct snap_header *h)
{
	memset(h->host, 0, sizeof(h->host));
}
static void m_backend0(struct snap_header *h) { h->backend = 0; }
static void m_backend3(struct snap_header *h) { h->backend = 3; }

struct hostile {
	const char *name;
	void (*mutate)(struct snap_header *);
	int code;
	const char *msg;
};

static const struct hostile hostile[] = {
	{ "bad magic", m_magic, -EINVAL, "not a parley snapshot (bad magic)" },
	{ "magic last byte", m_magic_last, -EINVAL, "bad magic" },
	{ "magic zero", m_magic_zero, -EINVAL, "bad magic" },
	{ "version 0", m_version0, -EINVAL, "snapshot version 0, expected 3" },
	{ "version 1 (unkeyed)", m_version1, -EINVAL,
	  "snapshot version 1, expected 3: written by an older parley with no "
	  "key to check it by; take a new snapshot" },
	{ "version 4", m_version4, -EINVAL, "snapshot version 4, expected 3" },
	{ "device states in version 2", m_dev_v2, -EINVAL,
	  "snapshot has 1 device states" },
	{ "device states 34", m_dev_many, -EINVAL,
	  "snapshot has 34 device states" },
	{ "vcpus 0", m_vcpus0, -EINVAL, "snapshot has 0 vCPUs" },
	{ "vcpus 9", m_vcpus9, -EINVAL, "snapshot has 9 vCPUs" },
	{ "vcpus 2^32-1", m_vcpus_max, -EINVAL, "snapshot has 4294967295 vCPUs" },
	{ "RAM below min", m_ram_small, -EINVAL, "snapshot RAM size 0x200000" },
	{ "RAM zero", m_ram_zero, -EINVAL, "snapshot RAM size 0x0" },
	{ "RAM above max", m_ram_big, -EINVAL, "snapshot RAM size 0x40200000" },
	{ "RAM 2^64-2M", m_ram_huge, -EINVAL,
	  "snapshot RAM size 0xffffffffffe00000" },
	{ "RAM unaligned", m_ram_unaligned, -EINVAL,
	  "snapshot RAM size 0x401000" },
	{ "cfg not page aligned", m_cfg_unaligned, -EINVAL,
	  "snapshot config size 0x2800" },
	{ "cfg 1 byte", m_cfg_one, -EINVAL, "snapshot config size 0x1" },
	{ "cfg above max", m_cfg_big, -EINVAL,
	  "snapshot config size 0x40001000" },
	{ "ram + cfg wraps", m_cfg_wraps, -EINVAL,
	  "snapshot config size 0xffffffffffc00000" },
	{ "17 ranges", m_nrange17, -EINVAL, "snapshot has 17 image ranges" },
	{ "2^32-1 ranges", m_nrange_max, -EINVAL,
	  "snapshot has 4294967295 image ranges" },
	{ "image past LAYOUT_IMAGE_MAX", m_image_max, -EINVAL,
	  "snapshot image end 0x1001000" },
	{ "image below IMAGE_MIN", m_image_low, -EINVAL,
	  "snapshot image end 0xff000" },
	{ "image end 0", m_image_zero, -EINVAL, "snapshot image end 0x0" },
	{ "entry below image", m_entry_low, -EINVAL, "snapshot entry 0xfffff" },
	{ "entry 0", m_entry_zero, -EINVAL, "snapshot entry 0x0" },
	{ "entry at image end", m_entry_end, -EINVAL, "snapshot entry 0x105000" },
	{ "entry 2^64-1", m_entry_huge, -EINVAL,
	  "snapshot entry 0xffffffffffffffff" },
	{ "range below image", m_range_low, -EINVAL,
	  "snapshot image range 0 outside the image" },
	{ "range over system area", m_range_sys, -EINVAL,
	  "snapshot image range 1 outside the image" },
	{ "range past image end", m_range_past, -EINVAL,
	  "snapshot image range 2 outside the image" },
	{ "range beyond image", m_range_outside, -EINVAL,
	  "snapshot image range 2 outside the image" },
	{ "range wraps", m_range_wraps, -EINVAL,
	  "snapshot image range 1 outside the image" },
	{ "range wraps to 0", m_range_wraps_exact, -EINVAL,
	  "snapshot image range 1 outside the image" },
	{ "range size 2^64-1", m_range_huge, -EINVAL,
	  "snapshot image range 2 outside the image" },
	{ "16th range bad", m_range_16, -EINVAL,
	  "snapshot image range 15 outside the image" },
	{ "name without NUL", m_name_no_nul, -EINVAL,
	  "snapshot partition name invalid" },
	{ "name empty", m_name_empty, -EINVAL, "snapshot partition name invalid" },
	{ "name empty, tail bytes", m_name_empty_tail, -EINVAL,
	  "snapshot partition name invalid" },
	{ "name with slash", m_name_slash, -EINVAL,
	  "snapshot partition name invalid" },
	{ "name with escape", m_name_escape, -EINVAL,
	  "snapshot partition name invalid" },
	{ "host without NUL", m_host_no_nul, -EINVAL,
	  "snapshot host name invalid" },
	{ "host empty", m_host_empty, -EINVAL, "snapshot host name invalid" },
	{ "backend 0", m_backend0, -EINVAL, "snapshot backend 0 unknown" },
	{ "backend 3", m_backend3, -EINVAL, "snapshot backend 3 unknown" },
};

#define N_HOSTILE (sizeof(hostile) / sizeof(hostile[0]))

Test(snapshot, hostile_headers_refused)
{
	for (size_t i = 0; i < N_HOSTILE; i++) {
		const struct hostile *t = &hostile[i];
		struct snap_header h;
		struct parley_err e = { 0 };
		int rc;

		good_header(&h);
		t->mutate(&h);
		rc = snap_check_header(&h, &e);
		cr_expect_eq(rc, t->code, "%s: got %d (%s), want %d", t->name,
			     rc, perr_msg(&e), t->code);
		cr_expect_eq(e.code, rc, "%s: err.code %d", t->name, e.code);
		cr_expect(strstr(e.msg, t->msg) != NULL,
			  "%s: message \"%s\" lacks \"%s\"", t->name, e.msg,
			  t->msg);
		cr_expect_eq(snap_check_header(&h, NULL), t->code,
			     "%s: without err", t->name);
	}
}

/* Legal edges of the header: must stay legal. */
static void ok_ranges0(struct snap_header *h) { h->nrange = 0; }
static void ok_vcpus8(struct snap_header *h) { h->vcpus = 8; }
static void ok_ram_max(struct snap_header *h) { h->ram_size = PARLEY_MEM_MAX; }
static void ok_cfg0(struct snap_header *h) { h->cfg_size = 0; }
static void ok_cfg_max(struct snap_header *h)
{
	h->cfg_size = PARLEY_CONFIG_MAX;
}
static void ok_image_max(struct snap_header *h)
{
	h->image_hi = LAYOUT_IMAGE_MAX;
}
static void ok_entry_last(struct snap_header *h)
{
	h->entry = h->image_hi - 1;
}
static void ok_entry_first(struct snap_header *h)
{
	h->entry = PARLEY_IMAGE_MIN;
}
static void ok_range_to_end(struct snap_header *h)
{
	h->range[2].size = h->image_hi - h->range[2].gpa;
}
static void ok_range_empty_at_end(struct snap_header *h)
{
	h->range[2].gpa = h->image_hi;
	h->range[2].size = 0;
}
static void ok_unused_range_garbage(struct snap_header *h)
{
	h->range[5].gpa = UINT64_MAX;
	h->range[5].size = UINT64_MAX;
}
static void ok_name_63(struct snap_header *h)
{
	memset(h->name, 'x', sizeof(h->name) - 1);
}
static void ok_process(struct snap_header *h)
{
	h->backend = CTL_BACKEND_PROCESS;
}
static void ok_reserved(struct snap_header *h)
{
	h->range[0].reserved = 7;
}

static void (*const legal[])(struct snap_header *) = {
	ok_ranges0, ok_vcpus8, ok_ram_max, ok_cfg0, ok_cfg_max, ok_image_max,
	ok_entry_last, ok_entry_first, ok_range_to_end, ok_range_empty_at_end,
	ok_unused_range_garbage, ok_name_63, ok_reserved, ok_process,
};

Test(snapshot, legal_headers_accepted)
{
	for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++) {
		struct snap_header h;
		struct parley_err e = { 0 };

		good_header(&h);
		legal[i](&h);
		cr_expect_eq(snap_check_header(&h, &e), 0, "legal %zu: %s", i,
			     perr_msg(&e));
	}
}

/* Read a file that must be refused: the code, the message (after the
 * path), no memfd handed out and none leaked. */
static void expect_refused(const char *path, int code, const char *msg,
			   const char *what)
{
	struct snap_image img;
	struct parley_err e = { 0 };
	int fds = count_fds();
	int rc = snap_read(path, t_snap_key(), here(), &img, &e);

	cr_expect_eq(rc, code, "%s: got %d (%s), want %d", what, rc,
		     perr_msg(&e), code);
	cr_expect_eq(e.code, rc, "%s: err.code %d != rc %d", what, e.code, rc);
	cr_expect(strstr(e.msg, msg) != NULL, "%s: message \"%s\" lacks \"%s\"",
		  what, e.msg, msg);
	cr_expect(strncmp(e.msg, path, strlen(path)) == 0,
		  "%s: message \"%s\" does not start with the path", what,
		  e.msg);
	cr_expect_eq(img.mem_fd, -1, "%s: mem_fd %d on failure", what,
		     img.mem_fd);
	cr_expect_eq(count_fds(), fds, "%s: descriptors leaked", what);
}

/* Every hostile header as a whole file with a correct checksum. */
Test(snapshot, hostile_header_files_refused)
{
	char *dir = t_tmpdir();
	struct ctl_vcpu_state st[VCPUS];
	uint8_t *mem = good_mem(MEM_SIZE);

	good_states(st, VCPUS);
	for (size_t i = 0; i < N_HOSTILE; i++) {
		struct snap_header h;
		struct file f;
		char name[32], *path;

		good_header(&h);
		hostile[i].mutate(&h);
		file_build(&f, &h, st, VCPUS, mem, MEM_SIZE);
		snprintf(name, sizeof(name), "h%zu.snap", i);
		path = file_put(dir, name, &f, f.len);
		expect_refused(path, hostile[i].code, hostile[i].msg,
			       hostile[i].name);
		free(path);
		free(f.b);
	}
	free(mem);
	t_rmtree(dir);
	free(dir);
}

/* Cut the good file short at many points, or make it one byte long. */
Test(snapshot, truncated_and_extended_files_refused)
{
	char *dir = t_tmpdir();
	struct file f;
	char want_size[64];
	size_t full;
	struct {
		const char *what;
		size_t len;
	} cuts[] = {
		{ "empty file", 0 },
		{ "1 byte", 1 },
		{ "half a header", sizeof(struct snap_header) / 2 },
		{ "header less a byte", sizeof(struct snap_header) - 1 },
		{ "header only", sizeof(struct snap_header) },
		{ "header + 1", sizeof(struct snap_header) + 1 },
		{ "inside vCPU 0", file_off_states() + 100 },
		{ "between vCPU states",
		  file_off_states() + sizeof(struct ctl_vcpu_state) },
		{ "inside the last vCPU", file_off_mem() - 1 },
		{ "before memory", file_off_mem() },
		{ "inside the system area", file_off_mem() + 0x2000 },
		{ "inside RAM", file_off_mem() + RAM_SIZE / 2 },
		{ "at the config region", file_off_mem() + RAM_SIZE },
		{ "inside the config region", file_off_mem() + RAM_SIZE + 1 },
		{ "no tag", file_off_sum() },
		{ "half a tag", file_off_sum() + HASH_LEN / 2 },
		{ "tag less a byte", file_off_sum() + HASH_LEN - 1 },
		{ "one extra byte", file_off_sum() + HASH_LEN + 1 },
		{ "a page extra", file_off_sum() + HASH_LEN + 4096 },
	};

	file_good(&f);
	full = f.len;
	cr_assert_eq(full, file_off_sum() + HASH_LEN);
	f.b = realloc(f.b, full + 4096);
	cr_assert_not_null(f.b);
	memset(f.b + full, 0, 4096);
	snprintf(want_size, sizeof(want_size), "its header says %zu", full);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char name[32], *path, msg[160];
		const char *m = msg;

		snprintf(name, sizeof(name), "t%zu.snap", i);
		path = file_put(dir, name, &f, cuts[i].len);
		if (cuts[i].len < sizeof(struct snap_header))
			m = "snapshot shorter than its header";
		else
			snprintf(msg, sizeof(msg), "snapshot is %zu bytes, %s",
				 cuts[i].len, want_size);
		expect_refused(path, -EINVAL, m, cuts[i].what);
		free(path);
	}
	free(f.b);
	t_rmtree(dir);
	free(dir);
}

/* One flipped bit anywhere the header check does not look: the tag
 * catches it, the system area included (it is tagged before re-laying),
 * and the host and name the tag binds. */
Test(snapshot, flipped_byte_is_tag_mismatch)
{
	char *dir = t_tmpdir();
	struct file f;
	const struct {
		const char *what;
		size_t off;
	} flips[] = {
		{ "range reserved",
		  offsetof(struct snap_header, range[0].reserved) },
		{ "range flags", offsetof(struct snap_header, range[0].flags) },
		{ "unused range", offsetof(struct snap_header, range[9].gpa) },
		{ "entry", offsetof(struct snap_header, entry) },
		{ "name tail", offsetof(struct snap_header, name) + 40 },
		{ "name (renamed)", offsetof(struct snap_header, name) },
		{ "host (re-hosted)", offsetof(struct snap_header, host) },
		{ "ABI minor", offsetof(struct snap_header, abi_minor) },
		{ "vCPU 0 index", file_off_states() },
		{ "vCPU 1 rip",
		  file_off_states() + sizeof(struct ctl_vcpu_state) +
			  offsetof(struct ctl_vcpu_state, regs.rip) },
		{ "last state byte", file_off_mem() - 1 },
		{ "NULL page", file_off_mem() },
		{ "PML4", file_off_mem() + LAYOUT_PML4 },
		{ "page table", file_off_mem() + LAYOUT_PT + 0x800 },
		{ "TSS", file_off_mem() + LAYOUT_TSS + 0x100 },
		{ "boot info", file_off_mem() + PARLEY_BOOT_INFO_GPA },
		{ "image", file_off_mem() + 0x100010 },
		{ "middle of RAM", file_off_mem() + RAM_SIZE / 2 + 3 },
		{ "last RAM byte", file_off_mem() + RAM_SIZE - 1 },
		{ "config region", file_off_mem() + RAM_SIZE },
		{ "last config byte", file_off_sum() - 1 },
		{ "first tag byte", file_off_sum() },
		{ "last tag byte", file_off_sum() + HASH_LEN - 1 },
	};

	file_good(&f);
	for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		char name[32], *path;

		snprintf(name, sizeof(name), "f%zu.snap", i);
		f.b[flips[i].off] ^= 0x01;
		path = file_put(dir, name, &f, f.len);
		f.b[flips[i].off] ^= 0x01;
		expect_refused(path, -EBADMSG, "snapshot tag mismatch",
			       flips[i].what);
		free(path);
	}
	/* and the unflipped file still restores */
	{
		struct snap_image img;
		struct parley_err e = { 0 };
		char *path = file_put(dir, "good.snap", &f, f.len);

		cr_expect_eq(snap_read(path, t_snap_key(), here(), &img, &e), 0, "%s", perr_msg(&e));
		if (img.mem_fd >= 0)
			close(img.mem_fd);
		free(path);
	}
	free(f.b);
	t_rmtree(dir);
	free(dir);
}

/* A header snap_check_header accepts but whose image runs into the vCPU
 * stacks: layout_system refuses it while re-laying, after the whole file
 * was read. Refused all the same, memfd closed. */
Test(snapshot, image_into_stacks_refused)
{
	char *dir = t_tmpdir(), *path;
	struct snap_header h;
	struct ctl_vcpu_state st[PARLEY_VCPUS_MAX];
	uint8_t *mem = good_mem(MEM_SIZE);
	struct file f;

	good_header(&h);
	h.vcpus = PARLEY_VCPUS_MAX;
	h.image_hi = layout_stack_floor(RAM_SIZE, PARLEY_VCPUS_MAX) + 0x1000;
	cr_assert_eq(snap_check_header(&h, NULL), 0);
	good_states(st, PARLEY_VCPUS_MAX);
	file_build(&f, &h, st, PARLEY_VCPUS_MAX, mem, MEM_SIZE);
	path = file_put(dir, "stacks.snap", &f, f.len);
	expect_refused(path, -E2BIG, "image ends at 0x381000", "into stacks");
	free(path);
	free(f.b);
	free(mem);
	t_rmtree(dir);
	free(dir);
}

Test(snapshot, not_a_file_refused)
{
	char *dir = t_tmpdir(), *missing, *sub;

	cr_assert(asprintf(&missing, "%s/missing.snap", dir) > 0);
	cr_assert(asprintf(&sub, "%s/adir.snap", dir) > 0);
	cr_assert_eq(mkdir(sub, 0700), 0);
	expect_refused(missing, -ENOENT, "No such file or directory",
		       "missing file");
	/* A directory opens; its first read fails (EISDIR) and is reported
	 * as a short header. */
	expect_refused(sub, -EINVAL, "snapshot shorter than its header",
		       "directory");
	expect_refused("/dev/null", -EINVAL, "snapshot shorter than its header",
		       "/dev/null");
	free(missing);
	free(sub);
	t_rmtree(dir);
	free(dir);
}

/* A caller that passes no parley_err gets the same codes as one that does
 * (snap_read once returned perr_prefix's -EINVAL for everything). */
Test(snapshot, code_does_not_depend_on_err)
{
	char *dir = t_tmpdir(), *path, *missing;
	struct snap_image img;
	struct file f;

	file_good(&f);
	f.b[file_off_mem() + 0x100010] ^= 0x80;
	path = file_put(dir, "flip.snap", &f, f.len);
	cr_assert(asprintf(&missing, "%s/missing.snap", dir) > 0);
	cr_expect_eq(snap_read(path, t_snap_key(), here(), &img, NULL), -EBADMSG,
		     "tag mismatch without err");
	cr_expect_eq(img.mem_fd, -1);
	cr_expect_eq(snap_read(missing, t_snap_key(), here(), &img, NULL), -ENOENT,
		     "missing file without err");
	cr_expect_eq(snap_read("/dev/null", t_snap_key(), here(), &img, NULL), -EINVAL,
		     "short file without err");
	free(missing);
	free(path);
	free(f.b);
	t_rmtree(dir);
	free(dir);
}

/* The boot info of good_mem with one config file, as layout_boot would
 * write it, then whatever the test changes. */
static void boot_info_in(uint8_t *mem, uint64_t config_gpa, uint32_t nconfig)
{
	struct parley_boot_info bi = {
		.magic = PARLEY_BOOT_MAGIC, .abi_major = PARLEY_ABI_MAJOR,
		.vcpus = VCPUS, .mem_size = RAM_SIZE, .nconfig = nconfig,
		.config = config_gpa, .config_base = PARLEY_CONFIG_BASE,
		.config_size = CFG_SIZE,
	};
	struct parley_config_file cf = { .name = "motd",
					 .gpa = PARLEY_CONFIG_BASE,
					 .size = 100 };

	memset(mem + PARLEY_BOOT_INFO_GPA, 0, PARLEY_BOOT_INFO_SIZE);
	memcpy(mem + PARLEY_BOOT_INFO_GPA, &bi, sizeof(bi));
	memcpy(mem + PARLEY_BOOT_INFO_GPA + 0x100, &cf, sizeof(cf));
}

/* A key file with the tests' key, and a baselines file with no entries,
 * in dir: what `parley-agent restore` needs to get as far as reading. */
static void restore_inputs(const char *dir)
{
	char *k = t_write(dir, SNAP_KEY_FILE, t_snap_key()->k, SNAP_KEY_LEN);
	cr_assert_eq(chmod(k, 0600), 0);
	free(k);
	free(t_write(dir, "bl.json", "{\"partitions\":{}}", 17));
}

/* Run `parley-agent restore --baselines DIR/bl.json EXTRA... SNAP`; the
 * exit status, output in *out. */
static int agent_restore(const char *dir, const char *snap, const char *extra1,
			 const char *extra2, char **out)
{
	char *bl;
	cr_assert(asprintf(&bl, "%s/bl.json", dir) > 0);
	char *argv[10] = { T_AGENT, "restore", "--vmm", T_VMM, "--baselines",
			   bl };
	int n = 6;
	if (extra1)
		argv[n++] = (char *)extra1;
	if (extra2)
		argv[n++] = (char *)extra2;
	argv[n++] = (char *)snap;
	argv[n] = NULL;
	int rc = t_run(argv, out, 20);
	free(bl);
	return rc;
}

/* issue 8 item 7: a config table pointer that makes `config + 32*80` wrap
 * passed measure_restored's hand check and `parley-agent restore` read
 * before its mapping (SIGSEGV), with a valid trailer. Refused, exit 2. */
Test(snapshot, wrapping_config_table_refused_by_restore, .timeout = 30)
{
	char *dir = t_tmpdir(), *path, *out;
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	struct parley_err e = { 0 };
	uint8_t *mem = good_mem(MEM_SIZE);

	good_header(&h);
	good_states(st, VCPUS);
	boot_info_in(mem, 0xffffffffffffff00ull, 1);
	restore_inputs(dir);
	cr_assert(asprintf(&path, "%s/wrap.snap", dir) > 0);
	cr_assert_eq(snap_write(path, t_snap_key(), &h, st, NULL, mem, &e), 0, "%s",
		     perr_msg(&e));
	int rc = agent_restore(dir, path, NULL, NULL, &out);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "wrap.snap: snapshot: config table at "
			      "0xffffffffffffff00 is not in the boot info"),
		  "%s", out);
	free(out);
	/* a table entry whose file runs past the config region */
	boot_info_in(mem, PARLEY_BOOT_INFO_GPA + 0x100, 1);
	memcpy(mem + PARLEY_BOOT_INFO_GPA + 0x100 +
		       offsetof(struct parley_config_file, size),
	       &(uint64_t){ UINT64_MAX - 0x100 }, 8);
	cr_assert_eq(snap_write(path, t_snap_key(), &h, st, NULL, mem, &e), 0, "%s",
		     perr_msg(&e));
	rc = agent_restore(dir, path, NULL, NULL, &out);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "config table entry 0 is not ours"), "%s", out);
	free(out);
	free(path);
	free(mem);
	t_rmtree(dir);
	free(dir);
}

/* Tagged with this agent's key but taken on another host (the key file
 * copied along): refused, naming both hosts. */
Test(snapshot, foreign_host_refused)
{
	char *dir = t_tmpdir(), *path;
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	uint8_t *mem = good_mem(MEM_SIZE);
	struct file f;
	char msg[200];

	good_header(&h);
	snprintf(h.host, sizeof(h.host), "elsewhere");
	good_states(st, VCPUS);
	file_build(&f, &h, st, VCPUS, mem, MEM_SIZE);
	path = file_put(dir, "foreign.snap", &f, f.len);
	snprintf(msg, sizeof(msg), "snapshot was taken on host \"elsewhere\", "
		 "this is \"%s\"", here()->host);
	expect_refused(path, -EPERM, msg, "foreign host");
	free(path);
	free(f.b);
	free(mem);
	t_rmtree(dir);
	free(dir);
}

/* The file no longer chooses the name: an edited name breaks the tag (in
 * flipped_byte_is_tag_mismatch); a file renamed on disk restores under the
 * name it was saved as; a name the operator asks must equal it. */
Test(snapshot, renamed_refused)
{
	char *dir = t_tmpdir(), *path;
	struct file f;
	struct snap_image img;
	struct parley_err e = { 0 };
	struct snap_expect want = *here();

	file_good(&f);
	path = file_put(dir, "db-2.snap", &f, f.len);
	want.name = "db-2";
	cr_expect_eq(snap_read(path, t_snap_key(), &want, &img, &e), -EPERM);
	cr_expect(strstr(e.msg, "snapshot is of partition \"web-1\", not "
				"\"db-2\""), "%s", e.msg);
	cr_expect_eq(img.mem_fd, -1);
	want.name = "web-1";
	cr_expect_eq(snap_read(path, t_snap_key(), &want, &img, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_str_eq(img.h.name, "web-1");
	close(img.mem_fd);
	free(path);
	free(f.b);
	t_rmtree(dir);
	free(dir);
}

/* A good file under another key: the tag does not match. */
Test(snapshot, other_key_refused)
{
	char *dir = t_tmpdir(), *path;
	struct file f;
	struct snap_key other = *t_snap_key();
	struct snap_image img;
	struct parley_err e = { 0 };

	other.k[0] ^= 1;
	file_good(&f);
	path = file_put(dir, "k.snap", &f, f.len);
	cr_expect_eq(snap_read(path, &other, here(), &img, &e), -EBADMSG);
	cr_expect(strstr(e.msg, "not written with this agent's snapshot key"),
		  "%s", e.msg);
	free(path);
	/* the backend is bound too: kvm edited to process */
	memcpy(f.b + offsetof(struct snap_header, backend),
	       &(uint32_t){ CTL_BACKEND_PROCESS }, 4);
	path = file_put(dir, "b.snap", &f, f.len);
	expect_refused(path, -EBADMSG, "snapshot tag mismatch", "backend");
	free(path);
	free(f.b);
	t_rmtree(dir);
	free(dir);
}

/* Tagged, but with an image started under another ABI. */
Test(snapshot, abi_mismatch_refused)
{
	char *dir = t_tmpdir();
	struct ctl_vcpu_state st[VCPUS];
	uint8_t *mem = good_mem(MEM_SIZE);
	const struct { uint16_t major, minor; } abi[] = {
		{ PARLEY_ABI_MAJOR + 1, 0 }, { PARLEY_ABI_MAJOR - 1, 0 },
		{ PARLEY_ABI_MAJOR, PARLEY_ABI_MINOR + 1 },
	};

	good_states(st, VCPUS);
	for (size_t i = 0; i < sizeof(abi) / sizeof(abi[0]); i++) {
		struct snap_header h;
		struct file f;
		char name[32], msg[100], *path;

		good_header(&h);
		h.abi_major = abi[i].major;
		h.abi_minor = abi[i].minor;
		file_build(&f, &h, st, VCPUS, mem, MEM_SIZE);
		snprintf(name, sizeof(name), "abi%zu.snap", i);
		path = file_put(dir, name, &f, f.len);
		snprintf(msg, sizeof(msg), "snapshot ABI %u.%u, this agent runs "
			 "%u.%u", abi[i].major, abi[i].minor, PARLEY_ABI_MAJOR,
			 PARLEY_ABI_MINOR);
		expect_refused(path, -EPROTO, msg, "abi");
		free(path);
		free(f.b);
	}
	free(mem);
	t_rmtree(dir);
	free(dir);
}

/* A version 1 file as the old agent wrote it (SHA-256 trailer): refused
 * with what to do, by snap_read and by the CLI. */
Test(snapshot, old_version_refused_with_advice, .timeout = 30)
{
	char *dir = t_tmpdir(), *path, *out;
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	uint8_t *mem = good_mem(MEM_SIZE);
	struct file f;
	unsigned int hl = 0;

	good_header(&h);
	h.version = 1;
	good_states(st, VCPUS);
	file_build(&f, &h, st, VCPUS, mem, MEM_SIZE);
	cr_assert(EVP_Digest(f.b, f.len - HASH_LEN, f.b + f.len - HASH_LEN,
			     &hl, EVP_sha256(), NULL));
	path = file_put(dir, "v1.snap", &f, f.len);
	expect_refused(path, -EINVAL, "older parley", "version 1");
	restore_inputs(dir);
	int rc = agent_restore(dir, path, NULL, NULL, &out);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "take a new snapshot"), "%s", out);
	free(out);
	free(path);
	free(f.b);
	free(mem);
	t_rmtree(dir);
	free(dir);
}

/* The CLI refuses a restore with no baselines to check it against, with no
 * key, with a key that is readable by others, and under another name. */
Test(snapshot, restore_cli_refusals, .timeout = 30)
{
	char *dir = t_tmpdir(), *path, *out, *k;
	struct file f;
	struct snap_header h;
	struct ctl_vcpu_state st[VCPUS];
	uint8_t *mem = good_mem(MEM_SIZE);

	good_header(&h);
	good_states(st, VCPUS);
	boot_info_in(mem, PARLEY_BOOT_INFO_GPA + 0x100, 1);
	file_build(&f, &h, st, VCPUS, mem, MEM_SIZE);
	free(mem);
	path = file_put(dir, "web-1.snap", &f, f.len);
	char *argv[] = { T_AGENT, "restore", "--vmm", T_VMM, path, NULL };
	int rc = t_run(argv, &out, 20);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "--baselines FILE is required"), "%s", out);
	free(out);
	free(t_write(dir, "bl.json", "{\"partitions\":{}}", 17));
	rc = agent_restore(dir, path, NULL, NULL, &out);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "snapshot.key: No such file"), "%s", out);
	free(out);
	k = t_write(dir, SNAP_KEY_FILE, t_snap_key()->k, SNAP_KEY_LEN);
	cr_assert_eq(chmod(k, 0644), 0);
	rc = agent_restore(dir, path, NULL, NULL, &out);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "must be owned by uid"), "%s", out);
	free(out);
	cr_assert_eq(chmod(k, 0600), 0);
	rc = agent_restore(dir, path, "--name", "db-2", &out);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "snapshot is of partition \"web-1\", not "
			      "\"db-2\""), "%s", out);
	free(out);
	/* the name it was saved under gets as far as the baseline: none */
	rc = agent_restore(dir, path, "--name", "web-1", &out);
	cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
	cr_expect(strstr(out, "web-1.snap: partition web-1 has no golden baseline"),
		  "%s", out);
	free(out);
	free(k);
	free(path);
	free(f.b);
	t_rmtree(dir);
	free(dir);
}

/* ---- whole partitions ---- */

#include "agent/ipc/baseline.h"
#include "agent/ctl/stop.h"

static void run_until(struct partition *p, struct t_console *out,
		      const char *prefix, int n)
{
	for (int i = 0; i < 2000 && t_count_lines(out->buf, prefix) < n; i++) {
		cr_assert_eq(p->finished, false, "finished early: %s",
			     p->fin.detail);
		if (partition_wait(p, 10) == 0)
			break;
	}
	cr_assert_geq(t_count_lines(out->buf, prefix), n);
}

/* The baselines a test keeps in memory: enrolled at creation, golden at
 * restore (as `parley-agent restore` loads them). */
static int t_admit(struct partition *p, void *ctx, struct parley_err *err)
{
	return baseline_admit(ctx, p->name, &p->measure, err);
}

static struct partition *start_on(uint32_t backend, const char *name,
				  const char *image, const char *cmdline,
				  struct t_console *out, struct baseline_db *db,
				  bool paused)
{
	struct part_spec s;
	t_spec(&s, name, image, cmdline, NULL);
	struct part_opts o = t_opts(out);
	o.backend = backend;
	o.start_paused = paused;
	struct partition *p = NULL;
	struct parley_err err = { 0 };
	o.on_measured = t_admit;
	o.ctx = db;
	o.on_console = NULL; /* ctx is the db */
	int rc = partition_create(&s, &o, &p, &err);
	spec_free(&s);
	cr_assert_eq(rc, 0, "create %s: %s", name, perr_msg(&err));
	p->opts.on_console = t_console_cb;
	p->opts.ctx = out;
	return p;
}

ParameterizedTestParameters(snapshot_part, saved_restores_on_each_backend)
{
	/* each run is its own process: it asks again, the same answer */
	static uint32_t b[T_BACKENDS_MAX];
	unsigned n = t_backends(b);
	return cr_make_param_array(uint32_t, b, n);
}

/* A snapshot taken on the first backend here (kvm where it exists)
 * restores and resumes on each backend: the restored run continues the
 * saved one exactly, measured against the enrolled baseline. */
ParameterizedTest(uint32_t *backend, snapshot_part,
		  saved_restores_on_each_backend, .timeout = 90)
{
	uint32_t all[T_BACKENDS_MAX];
	t_backends(all);
	const char *cmd = "count=16 work=3000000";
	struct t_console whole = { 0 }, before = { 0 }, after = { 0 };
	struct baseline_db db = { 0 };
	struct parley_err err = { 0 };
	cr_assert_eq(baseline_parse(&db, "{\"partitions\":{}}", 17, &err), 0);
	db.mode = BASELINE_ENROLL;
	struct partition *p = start_on(all[0], "counter", "counter.elf", cmd,
				       &whole, &db, false);
	cr_assert_eq(partition_wait(p, 20000), 0);
	partition_destroy(p);

	char *dir = t_tmpdir(), *snap;
	cr_assert(asprintf(&snap, "%s/counter.snap", dir) > 0);
	p = start_on(all[0], "counter", "counter.elf", cmd, &before, &db,
		     false);
	run_until(p, &before, "tick ", 5);
	cr_assert_eq(partition_pause(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(partition_save(p, snap, &err), 0, "%s", perr_msg(&err));
	partition_destroy(p);

	db.mode = BASELINE_GOLDEN;
	struct part_opts o = t_opts(&after);
	o.backend = *backend;
	o.on_measured = t_admit;
	o.ctx = &db;
	o.on_console = NULL;
	o.start_paused = true;
	cr_assert_eq(partition_restore(snap, "counter", &o, &p, &err), 0,
		     "on %s: %s", backend_name(*backend), perr_msg(&err));
	cr_assert_eq(p->backend, *backend);
	p->opts.on_console = t_console_cb;
	p->opts.ctx = &after;
	cr_assert_eq(partition_resume(p, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(partition_wait(p, 20000), 0);
	cr_assert_eq(p->fin.reason, VMX_STOP_EXIT, "%s", p->fin.detail);
	cr_assert_eq(p->fin.code, 0);
	char *joined;
	cr_assert(asprintf(&joined, "%s%s", before.buf,
			   after.buf ? after.buf : "") > 0);
	cr_assert_str_eq(joined, whole.buf);
	partition_destroy(p);
	free(joined);
	free(snap);
	baseline_free(&db);
	t_rmtree(dir);
	free(dir);
	t_console_free(&whole);
	t_console_free(&before);
	t_console_free(&after);
}

/* The baseline a restored partition meets is the stored one, never the
 * file's: one whose config file differs from it is refused, naming the
 * snapshot and the file. */
Test(snapshot_part, restored_config_differs_from_baseline_refused,
     .timeout = 60)
{
	uint32_t all[T_BACKENDS_MAX];
	t_backends(all);
	char *dir = t_tmpdir(), *snap, *spec_json, *motd;
	struct baseline_db db = { 0 };
	struct parley_err err = { 0 };
	cr_assert_eq(baseline_parse(&db, "{\"partitions\":{}}", 17, &err), 0);
	db.mode = BASELINE_ENROLL;
	motd = t_write(dir, "motd.txt", "hello\n", 6);
	cr_assert(asprintf(&spec_json, "{\"name\":\"hc\",\"image\":"
			   "\"hello.elf\",\"memory\":\"4M\",\"config\":"
			   "[{\"name\":\"motd\",\"path\":\"motd.txt\"}]}") > 0);
	struct part_spec s;
	cr_assert_eq(spec_parse(spec_json, strlen(spec_json), dir, &s, &err),
		     0, "%s", perr_msg(&err));
	struct t_console out = { 0 };
	struct part_opts o = t_opts(&out);
	o.backend = all[0];
	o.start_paused = true;
	o.on_measured = t_admit;
	o.ctx = &db;
	o.on_console = NULL;
	struct partition *p = NULL;
	cr_assert_eq(partition_create(&s, &o, &p, &err), 0, "%s",
		     perr_msg(&err));
	spec_free(&s);
	cr_assert(asprintf(&snap, "%s/hc.snap", dir) > 0);
	cr_assert_eq(partition_save(p, snap, &err), 0, "%s", perr_msg(&err));
	partition_destroy(p);
	/* the stored baseline now says motd was something else */
	json_t *e = json_object_get(json_object_get(db.root, "partitions"),
				    "hc");
	cr_assert_not_null(e);
	json_object_set_new(json_object_get(e, "files"), "motd",
			    json_string("00000000000000000000000000000000"
					"00000000000000000000000000000000"));
	db.mode = BASELINE_GOLDEN;
	p = NULL;
	int rc = partition_restore(snap, NULL, &o, &p, &err);
	cr_expect_eq(rc, -EBADMSG, "%d: %s", rc, perr_msg(&err));
	cr_expect_null(p);
	cr_expect(strstr(err.msg, "hc.snap: partition hc: config file "
				  "\"motd\" differs from its baseline"),
		  "%s", err.msg);
	/* and with no entry at all, golden: refused, nothing enrolled */
	json_object_del(json_object_get(db.root, "partitions"), "hc");
	rc = partition_restore(snap, NULL, &o, &p, &err);
	cr_expect_eq(rc, -ENOENT, "%d: %s", rc, perr_msg(&err));
	cr_expect_null(json_object_get(json_object_get(db.root, "partitions"),
				       "hc"), "restore enrolled the file");
	baseline_free(&db);
	free(spec_json);
	free(motd);
	free(snap);
	t_rmtree(dir);
	free(dir);
	t_console_free(&out);
}
