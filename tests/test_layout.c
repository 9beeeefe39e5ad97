/*
 * The partition memory layout (agent/layout.c), checked the way the CPU
 * will see it: a 4-level page walker over the tables laid into a host RAM
 * buffer, the GDT and TSS decoded bit by bit, boot info read back field by
 * field; then a table of parameters that must be refused, each with its
 * code and message.
 */
#include <criterion/criterion.h>

#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/layout.h"

#define MiB 0x100000ull
#define GiB 0x40000000ull
#define RAM_SIZE (16 * MiB)
#define VCPUS 2
#define IMAGE_HI 0x106000ull
#define CFG_SIZE 0x4000ull
#define FILL 0xa5 /* stale bytes layout must overwrite or leave alone */

#define PTE_P 0x001ull
#define PTE_W 0x002ull
#define PTE_U 0x004ull
#define PTE_PS 0x080ull
#define PTE_NX (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

/* Text, rodata (both read-only), data (writable), all in the image. */
static const struct layout_range ranges[] = {
	{ 0x100000, 0x1000, PF_R | PF_X },
	{ 0x101000, 0x2000, PF_R },
	{ 0x103000, 0x3000, PF_R | PF_W },
};

static const uint8_t file_a[] = "listen 0.0.0.0:80\nroot /srv\n";
static const uint8_t file_b[0x1001] = { [0] = 0x11, [0x1000] = 0x22 };

static const struct layout_config_file config[] = {
	{ "app.conf", file_a, sizeof(file_a) - 1 },
	{ "key.bin", file_b, sizeof(file_b) },
	{ "empty", file_b, 0 },
};

static const char cmdline[] = "serve --port 80";

struct lay {
	uint8_t *ram;
	uint8_t *cfg;
	struct layout_params p;
	struct parley_err err;
};

static void params(struct layout_params *p)
{
	*p = (struct layout_params){
		.ram_size = RAM_SIZE, .vcpus = VCPUS, .image_hi = IMAGE_HI,
		.nrange = sizeof(ranges) / sizeof(ranges[0]), .ranges = ranges,
		.nconfig = sizeof(config) / sizeof(config[0]),
		.config = config, .cmdline = cmdline,
	};
}

static void lay_alloc(struct lay *l)
{
	memset(l, 0, sizeof(*l));
	l->ram = malloc(RAM_SIZE);
	l->cfg = malloc(CFG_SIZE);
	cr_assert(l->ram && l->cfg);
	memset(l->ram, FILL, RAM_SIZE);
	memset(l->cfg, FILL, CFG_SIZE);
	params(&l->p);
}

static void lay_all(struct lay *l)
{
	lay_alloc(l);
	cr_assert_eq(layout_system(l->ram, &l->p, &l->err), 0, "%s",
		     perr_msg(&l->err));
	cr_assert_eq(layout_boot(l->ram, l->cfg, CFG_SIZE, &l->p, &l->err), 0,
		     "%s", perr_msg(&l->err));
}

static void lay_free(struct lay *l)
{
	free(l->ram);
	free(l->cfg);
}

/* What a 4-level walk from CR3 = LAYOUT_PML4 finds for one address. */
struct walk {
	int present;
	int user, write; /* ANDed over every level, as the CPU does */
	int exec;        /* no NX at any level (EFER.NXE is set) */
	uint64_t pa;
};

/* One entry of the table at gpa; the walker insists every table lies in
 * the supervisor-only system area, as the CPU would find it there. */
static uint64_t entry(const uint8_t *ram, uint64_t table, unsigned idx)
{
	uint64_t e;

	cr_assert(table >= PARLEY_SYS_BASE &&
		  table + 0x1000 <= PARLEY_SYS_BASE + PARLEY_SYS_SIZE,
		  "page table at 0x%llx outside the system area",
		  (unsigned long long)table);
	memcpy(&e, ram + table + idx * 8, 8);
	return e;
}

static struct walk walk(const uint8_t *ram, uint64_t va)
{
	struct walk w = { 0, 1, 1, 1, 0 };
	uint64_t table = LAYOUT_PML4;
	static const unsigned shift[] = { 39, 30, 21, 12 };

	if (va >> 48)
		return w; /* non-canonical in our tests: treat as absent */
	for (unsigned lvl = 0; lvl < 4; lvl++) {
		uint64_t e = entry(ram, table, (va >> shift[lvl]) & 0x1ff);

		if (!(e & PTE_P))
			return w;
		w.user &= !!(e & PTE_U);
		w.write &= !!(e & PTE_W);
		w.exec &= !(e & PTE_NX);
		if (lvl == 3 || (lvl > 0 && (e & PTE_PS))) {
			uint64_t mask = (1ull << shift[lvl]) - 1;

			cr_assert(lvl != 0, "PS in a PML4 entry");
			w.present = 1;
			w.pa = (e & PTE_ADDR & ~mask) | (va & mask);
			return w;
		}
		table = e & PTE_ADDR;
	}
	return w;
}

static void expect_page(const uint8_t *ram, uint64_t va, int present,
			int user, int write, const char *what)
{
	struct walk w = walk(ram, va);

	cr_expect_eq(w.present, present, "%s: 0x%llx present %d, want %d",
		     what, (unsigned long long)va, w.present, present);
	if (!present || !w.present)
		return;
	cr_expect_eq(w.pa, va, "%s: 0x%llx maps to 0x%llx", what,
		     (unsigned long long)va, (unsigned long long)w.pa);
	cr_expect_eq(w.user, user, "%s: 0x%llx user %d, want %d", what,
		     (unsigned long long)va, w.user, user);
	cr_expect_eq(w.write, write, "%s: 0x%llx writable %d, want %d", what,
		     (unsigned long long)va, w.write, write);
}

/* Every page of [lo, hi) as expect_page says. */
static void expect_pages(const uint8_t *ram, uint64_t lo, uint64_t hi,
			 int present, int user, int write, const char *what)
{
	for (uint64_t va = lo; va < hi; va += PARLEY_PAGE_SIZE) {
		expect_page(ram, va, present, user, write, what);
		expect_page(ram, va + PARLEY_PAGE_SIZE - 1, present, user,
			    write, what);
	}
}

Test(layout, null_page_not_present)
{
	struct lay l;

	lay_all(&l);
	expect_page(l.ram, 0, 0, 0, 0, "NULL page");
	expect_page(l.ram, 0x8, 0, 0, 0, "NULL page");
	expect_page(l.ram, 0xfff, 0, 0, 0, "NULL page");
	lay_free(&l);
}

Test(layout, system_area_supervisor_only)
{
	struct lay l;
	struct walk w;

	lay_all(&l);
	for (uint64_t va = PARLEY_SYS_BASE;
	     va < PARLEY_SYS_BASE + PARLEY_SYS_SIZE; va += PARLEY_PAGE_SIZE) {
		w = walk(l.ram, va);
		cr_expect(w.present, "system page 0x%llx not present",
			  (unsigned long long)va);
		cr_expect(!w.user, "system page 0x%llx reachable from CPL 3",
			  (unsigned long long)va);
		cr_expect_eq(w.pa, va);
	}
	lay_free(&l);
}

Test(layout, boot_info_read_only)
{
	struct lay l;

	lay_all(&l);
	expect_pages(l.ram, PARLEY_BOOT_INFO_GPA,
		     PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE, 1, 1, 0,
		     "boot info");
	lay_free(&l);
}

/* Between boot info and the image: RAM the partition has no business in. */
Test(layout, gap_below_image_not_user_accessible)
{
	struct lay l;

	lay_all(&l);
	for (uint64_t va = PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE;
	     va < PARLEY_IMAGE_MIN; va += PARLEY_PAGE_SIZE) {
		struct walk w = walk(l.ram, va);

		cr_expect(!w.present || !w.user, "0x%llx user-accessible",
			  (unsigned long long)va);
	}
	lay_free(&l);
}

Test(layout, image_permissions_follow_pf_w)
{
	struct lay l;

	lay_all(&l);
	expect_pages(l.ram, 0x100000, 0x101000, 1, 1, 0, "text");
	expect_pages(l.ram, 0x101000, 0x103000, 1, 1, 0, "rodata");
	expect_pages(l.ram, 0x103000, 0x106000, 1, 1, 1, "data");
	lay_free(&l);
}

/* A read-only range that does not start or end on a page boundary makes
 * every page it touches read-only. */
Test(layout, partial_page_range_read_only)
{
	struct lay l;
	static const struct layout_range r[] = {
		{ 0x100800, 0x1000, PF_R },
		{ 0x102000, 0x1000, PF_R | PF_W },
	};

	lay_alloc(&l);
	l.p.ranges = r;
	l.p.nrange = 2;
	cr_assert_eq(layout_system(l.ram, &l.p, &l.err), 0, "%s",
		     perr_msg(&l.err));
	expect_pages(l.ram, 0x100000, 0x102000, 1, 1, 0, "rodata pages");
	expect_pages(l.ram, 0x102000, 0x103000, 1, 1, 1, "data page");
	lay_free(&l);
}

Test(layout, ram_above_image_user_writable)
{
	struct lay l;
	uint64_t floor = layout_stack_floor(RAM_SIZE, VCPUS);

	lay_all(&l);
	cr_assert_eq(floor, RAM_SIZE - VCPUS * PARLEY_STACK_SIZE);
	expect_pages(l.ram, IMAGE_HI, IMAGE_HI + 0x10000, 1, 1, 1, "heap");
	expect_page(l.ram, 8 * MiB, 1, 1, 1, "heap");
	expect_pages(l.ram, floor - 0x1000, RAM_SIZE, 1, 1, 1, "stacks");
	lay_free(&l);
}

/* RAM smaller than the 4 KiB-mapped span: the pages past its end are not
 * the partition's; an access must not reach host memory (KVM has no slot
 * there) and must not look like RAM. */
Test(layout, small_ram_end)
{
	struct lay l;

	lay_alloc(&l);
	l.p.ram_size = 4 * MiB;
	cr_assert_eq(layout_system(l.ram, &l.p, &l.err), 0, "%s",
		     perr_msg(&l.err));
	expect_page(l.ram, 4 * MiB - 1, 1, 1, 1, "last RAM byte");
	for (uint64_t va = 4 * MiB; va < LAYOUT_PT_SPAN; va += 0x100000) {
		struct walk w = walk(l.ram, va);

		cr_expect(!w.present, "0x%llx past RAM is present",
			  (unsigned long long)va);
	}
	lay_free(&l);
}

Test(layout, identity_map_below_4g)
{
	struct lay l;
	static const uint64_t samples[] = {
		PARLEY_SYS_BASE, LAYOUT_PML4, LAYOUT_GDT, LAYOUT_TSS,
		PARLEY_BOOT_INFO_GPA, PARLEY_IMAGE_MIN, IMAGE_HI,
		LAYOUT_PT_SPAN - 1, LAYOUT_PT_SPAN, LAYOUT_PT_SPAN + 0x1234,
		64 * MiB + 0x777, 0x3fffffff, PARLEY_CONFIG_BASE,
		PARLEY_CONFIG_BASE + 0x5008, PARLEY_CHAN_BASE,
		PARLEY_CHAN_BASE + 0x3ffffff8, 0xc0000000, 0xfee00000,
		0xfffff000, 0xffffffff,
	};

	lay_all(&l);
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		struct walk w = walk(l.ram, samples[i]);

		cr_expect(w.present, "0x%llx not mapped",
			  (unsigned long long)samples[i]);
		cr_expect_eq(w.pa, samples[i], "0x%llx maps to 0x%llx",
			     (unsigned long long)samples[i],
			     (unsigned long long)w.pa);
	}
	/* Every 2 MiB step, and an odd offset in each. */
	for (uint64_t va = 0x200000; va < 4 * GiB; va += 0x200000) {
		struct walk a = walk(l.ram, va), b = walk(l.ram, va + 0x1ab8);

		cr_expect(a.present && a.pa == va, "0x%llx",
			  (unsigned long long)va);
		cr_expect(b.present && b.pa == va + 0x1ab8, "0x%llx",
			  (unsigned long long)(va + 0x1ab8));
	}
	/* Nothing at or above 4 GiB. */
	cr_expect(!walk(l.ram, 4 * GiB).present);
	cr_expect(!walk(l.ram, 5 * GiB + 0x1000).present);
	cr_expect(!walk(l.ram, 0x7fffffffffffull).present);
	lay_free(&l);
}

/* Only [PARLEY_SYS_BASE, +SYS_SIZE) is written by layout_system, only the
 * boot info area of RAM (and the config buffer) by layout_boot. */
Test(layout, writes_only_its_areas)
{
	struct lay l;
	uint64_t bi_end = PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE;

	lay_all(&l);
	for (uint64_t i = 0; i < PARLEY_SYS_BASE; i++)
		cr_assert_eq(l.ram[i], FILL, "byte 0x%llx written",
			     (unsigned long long)i);
	for (uint64_t i = bi_end; i < RAM_SIZE; i++)
		if (l.ram[i] != FILL)
			cr_assert_fail("byte 0x%llx written",
				       (unsigned long long)i);
	lay_free(&l);
}

static uint64_t gdt_entry(const uint8_t *ram, unsigned i)
{
	uint64_t e;

	memcpy(&e, ram + LAYOUT_GDT + 8 * i, 8);
	return e;
}

#define DESC_TYPE(d) (((d) >> 40) & 0xf)
#define DESC_S(d) (((d) >> 44) & 1)
#define DESC_DPL(d) (((d) >> 45) & 3)
#define DESC_P(d) (((d) >> 47) & 1)
#define DESC_L(d) (((d) >> 53) & 1)
#define DESC_DB(d) (((d) >> 54) & 1)

Test(layout, gdt_user_segments)
{
	struct lay l;
	uint64_t code, data, lo, hi;

	lay_all(&l);
	cr_expect_eq(gdt_entry(l.ram, 0), 0, "null descriptor not null");
	cr_expect_eq(LAYOUT_SEL_DATA & 3, 3);
	cr_expect_eq(LAYOUT_SEL_CODE & 3, 3);
	data = gdt_entry(l.ram, LAYOUT_SEL_DATA >> 3);
	code = gdt_entry(l.ram, LAYOUT_SEL_CODE >> 3);
	cr_expect(DESC_P(code) && DESC_S(code));
	cr_expect_eq(DESC_DPL(code), 3, "code DPL %llu",
		     (unsigned long long)DESC_DPL(code));
	cr_expect(DESC_TYPE(code) & 0x8, "code segment not executable");
	cr_expect(DESC_L(code) && !DESC_DB(code), "code not 64-bit");
	cr_expect(DESC_P(data) && DESC_S(data));
	cr_expect_eq(DESC_DPL(data), 3, "data DPL %llu",
		     (unsigned long long)DESC_DPL(data));
	cr_expect_eq(DESC_TYPE(data) & 0xa, 0x2, "data not writable data");

	/* The 16-byte TSS descriptor at LAYOUT_SEL_TSS. */
	cr_expect_eq(LAYOUT_SEL_TSS >> 3, 3);
	cr_expect_lt(LAYOUT_SEL_TSS >> 3, LAYOUT_GDT_ENTRIES - 1);
	lo = gdt_entry(l.ram, LAYOUT_SEL_TSS >> 3);
	hi = gdt_entry(l.ram, (LAYOUT_SEL_TSS >> 3) + 1);
	cr_expect(DESC_P(lo) && !DESC_S(lo));
	cr_expect_eq(DESC_TYPE(lo), 0xb, "TSS type %llu",
		     (unsigned long long)DESC_TYPE(lo));
	cr_expect_eq((lo & 0xffff) | (((lo >> 48) & 0xf) << 16),
		     LAYOUT_TSS_LIMIT);
	cr_expect_eq(((lo >> 16) & 0xffffff) | (((lo >> 56) & 0xff) << 24) |
			     ((hi & 0xffffffff) << 32),
		     LAYOUT_TSS);
	cr_expect(LAYOUT_GDT + 8 * LAYOUT_GDT_ENTRIES <=
		  PARLEY_SYS_BASE + PARLEY_SYS_SIZE);
	lay_free(&l);
}

Test(layout, tss_io_bitmap_denies_every_port)
{
	struct lay l;
	uint16_t iomap;
	const uint8_t *tss;

	lay_all(&l);
	tss = l.ram + LAYOUT_TSS;
	memcpy(&iomap, tss + 0x66, 2);
	cr_assert_eq(iomap, 0x68, "I/O map base 0x%x", iomap);
	cr_assert_eq(LAYOUT_TSS_LIMIT, iomap + 0x2000, "limit does not cover "
		     "the bitmap and its terminator");
	for (unsigned i = 0; i < 0x66; i++)
		cr_expect_eq(tss[i], 0, "TSS byte 0x%x not zero", i);
	for (unsigned i = 0; i < 0x2000; i++)
		cr_expect_eq(tss[iomap + i], 0, "I/O bitmap byte 0x%x: 0x%x",
			     i, tss[iomap + i]);
	cr_expect_eq(tss[iomap + 0x2000], 0xff, "no 0xff terminator");
	cr_expect_leq(LAYOUT_TSS + LAYOUT_TSS_LIMIT + 1,
		     PARLEY_SYS_BASE + PARLEY_SYS_SIZE);
	lay_free(&l);
}

static const struct parley_boot_info *boot_info(const struct lay *l)
{
	return (const void *)(l->ram + PARLEY_BOOT_INFO_GPA);
}

/* A guest-physical range of the boot info area as a host pointer. */
static const uint8_t *bi_ptr(const struct lay *l, uint64_t gpa, uint64_t len)
{
	cr_assert(gpa >= PARLEY_BOOT_INFO_GPA &&
		  gpa + len <= PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE,
		  "[0x%llx, +0x%llx) outside boot info",
		  (unsigned long long)gpa, (unsigned long long)len);
	return l->ram + gpa;
}

Test(layout, boot_info_fields)
{
	struct lay l;
	const struct parley_boot_info *bi;

	lay_all(&l);
	bi = boot_info(&l);
	cr_expect_eq(bi->magic, PARLEY_BOOT_MAGIC);
	cr_expect_eq(bi->abi_major, PARLEY_ABI_MAJOR);
	cr_expect_eq(bi->abi_minor, PARLEY_ABI_MINOR);
	cr_expect_eq(bi->vcpus, VCPUS);
	cr_expect_eq(bi->mem_size, RAM_SIZE);
	cr_expect_eq(bi->tsc_khz, 0, "tsc_khz is the vmm's to fill");
	cr_expect_geq(bi->heap_start, IMAGE_HI);
	cr_expect_eq(bi->heap_start % PARLEY_PAGE_SIZE, 0);
	cr_expect_eq(bi->heap_end, layout_stack_floor(RAM_SIZE, VCPUS));
	cr_expect_eq(bi->heap_end, RAM_SIZE - VCPUS * PARLEY_STACK_SIZE);
	cr_expect_eq(bi->config_base, PARLEY_CONFIG_BASE);
	cr_expect_eq(bi->config_size, CFG_SIZE);
	cr_expect_eq(bi->chan_base, PARLEY_CHAN_BASE);
	cr_expect_eq(bi->chan_size, PARLEY_CHAN_SIZE);
	lay_free(&l);
}

Test(layout, cmdline_nul_terminated)
{
	struct lay l;
	const struct parley_boot_info *bi;
	const uint8_t *s;

	lay_all(&l);
	bi = boot_info(&l);
	cr_assert_eq(bi->cmdline_len, strlen(cmdline));
	s = bi_ptr(&l, bi->cmdline, bi->cmdline_len + 1);
	cr_expect_arr_eq(s, cmdline, sizeof(cmdline));
	cr_expect_eq(s[bi->cmdline_len], 0);
	lay_free(&l);
}

Test(layout, empty_and_null_cmdline)
{
	static const char *const lines[] = { "", NULL };

	for (size_t i = 0; i < 2; i++) {
		struct lay l;
		const struct parley_boot_info *bi;

		lay_alloc(&l);
		l.p.cmdline = lines[i];
		cr_assert_eq(layout_boot(l.ram, l.cfg, CFG_SIZE, &l.p, &l.err),
			     0, "%s", perr_msg(&l.err));
		bi = boot_info(&l);
		cr_expect_eq(bi->cmdline_len, 0);
		cr_expect_eq(*bi_ptr(&l, bi->cmdline, 1), 0);
		lay_free(&l);
	}
}

Test(layout, config_table_and_files)
{
	struct lay l;
	const struct parley_boot_info *bi;
	const struct parley_config_file *t;
	size_t n = sizeof(config) / sizeof(config[0]);
	uint64_t next = PARLEY_CONFIG_BASE;

	lay_all(&l);
	bi = boot_info(&l);
	cr_assert_eq(bi->nconfig, n);
	t = (const void *)bi_ptr(&l, bi->config, n * sizeof(*t));
	cr_expect_eq(bi->config % 8, 0);
	for (size_t i = 0; i < n; i++) {
		uint64_t off = t[i].gpa - PARLEY_CONFIG_BASE;

		cr_expect_str_eq(t[i].name, config[i].name);
		cr_expect_eq(t[i].size, config[i].size);
		cr_expect_eq(t[i].gpa % PARLEY_PAGE_SIZE, 0);
		cr_expect_geq(t[i].gpa, next, "file %zu overlaps the last", i);
		cr_assert_leq(off + t[i].size, CFG_SIZE);
		cr_expect_arr_eq(l.cfg + off, config[i].data, config[i].size,
				 "file %zu bytes", i);
		next = t[i].gpa + (t[i].size ? t[i].size : 1);
	}
	cr_expect_eq(t[0].gpa, PARLEY_CONFIG_BASE);
	cr_expect_eq(t[1].gpa, PARLEY_CONFIG_BASE + 0x1000);
	cr_expect_eq(t[2].gpa, PARLEY_CONFIG_BASE + 0x3000);
	cr_expect_eq(layout_config_bytes(config, n), CFG_SIZE);
	cr_expect_eq(layout_config_bytes(config, 0), 0);
	lay_free(&l);
}

Test(layout, limits_accepted)
{
	struct lay l;
	static char names[PARLEY_CONFIG_FILES_MAX][PARLEY_CONFIG_NAME_MAX];
	struct layout_config_file many[PARLEY_CONFIG_FILES_MAX];
	char line[PARLEY_CMDLINE_MAX];
	uint8_t *cfg;
	uint64_t cfg_size = PARLEY_CONFIG_FILES_MAX * PARLEY_PAGE_SIZE;

	for (unsigned i = 0; i < PARLEY_CONFIG_FILES_MAX; i++) {
		memset(names[i], 'a' + i % 26, PARLEY_CONFIG_NAME_MAX - 1);
		names[i][PARLEY_CONFIG_NAME_MAX - 1] = 0;
		many[i] = (struct layout_config_file){ names[i], file_a, 1 };
	}
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = 0;
	lay_alloc(&l);
	cfg = calloc(1, cfg_size);
	cr_assert_not_null(cfg);
	l.p.config = many;
	l.p.nconfig = PARLEY_CONFIG_FILES_MAX;
	l.p.cmdline = line;
	cr_expect_eq(layout_config_bytes(many, PARLEY_CONFIG_FILES_MAX),
		     cfg_size);
	cr_assert_eq(layout_boot(l.ram, cfg, cfg_size, &l.p, &l.err), 0, "%s",
		     perr_msg(&l.err));
	cr_expect_eq(boot_info(&l)->cmdline_len, PARLEY_CMDLINE_MAX - 1);
	cr_expect_eq(*bi_ptr(&l, boot_info(&l)->cmdline +
					 PARLEY_CMDLINE_MAX - 1, 1), 0);
	cr_expect_eq(boot_info(&l)->nconfig, PARLEY_CONFIG_FILES_MAX);
	free(cfg);
	lay_free(&l);
}

Test(layout, system_limits_accepted)
{
	struct lay l;

	lay_alloc(&l);
	l.p.ram_size = PARLEY_MEM_MIN;
	l.p.image_hi = layout_stack_floor(PARLEY_MEM_MIN, VCPUS);
	cr_expect_eq(layout_system(l.ram, &l.p, &l.err), 0,
		     "image up to the stack floor: %s", perr_msg(&l.err));
	/* Only the system area is written, so a 16 MiB buffer serves a
	 * larger ram_size here. */
	l.p.ram_size = PARLEY_MEM_MAX;
	l.p.image_hi = LAYOUT_IMAGE_MAX;
	cr_expect_eq(layout_system(l.ram, &l.p, &l.err), 0,
		     "image up to LAYOUT_IMAGE_MAX: %s", perr_msg(&l.err));
	lay_free(&l);
}

/* Refusals: one change to the good parameters each. */
struct refusal {
	const char *name;
	void (*mutate)(struct layout_params *, uint64_t *cfg_size);
	int boot; /* 0: layout_system refuses; 1: layout_boot */
	int code;
	const char *msg;
};

static void r_ram_small(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = PARLEY_MEM_MIN - 0x200000;
}
static void r_ram_zero(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = 0;
}
static void r_ram_big(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = PARLEY_MEM_MAX + 0x200000;
}
static void r_ram_huge(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = 0xffffffffffe00000ull;
}
static void r_ram_unaligned(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = RAM_SIZE + 0x1000;
}
static void r_ram_unaligned_1m(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = 5 * MiB;
}
static void r_image_max(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = 64 * MiB;
	p->image_hi = LAYOUT_IMAGE_MAX + 0x1000;
}
static void r_image_stacks(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->ram_size = PARLEY_MEM_MIN;
	p->image_hi = layout_stack_floor(PARLEY_MEM_MIN, VCPUS) + 0x1000;
}
static void r_image_huge(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->image_hi = UINT64_MAX;
}
static void r_cmdline(struct layout_params *p, uint64_t *c)
{
	static char line[PARLEY_CMDLINE_MAX + 1];

	(void)c;
	memset(line, 'y', PARLEY_CMDLINE_MAX);
	p->cmdline = line;
}
static void r_nconfig(struct layout_params *p, uint64_t *c)
{
	(void)c;
	p->nconfig = PARLEY_CONFIG_FILES_MAX + 1;
}
static void r_name_empty(struct layout_params *p, uint64_t *c)
{
	static const struct layout_config_file f[] = {
		{ "ok", file_a, 4 }, { "", file_a, 4 },
	};

	(void)c;
	p->config = f;
	p->nconfig = 2;
}
static void r_name_64(struct layout_params *p, uint64_t *c)
{
	static char name[PARLEY_CONFIG_NAME_MAX + 1];
	static struct layout_config_file f[1];

	(void)c;
	memset(name, 'n', PARLEY_CONFIG_NAME_MAX);
	f[0] = (struct layout_config_file){ name, file_a, 4 };
	p->config = f;
	p->nconfig = 1;
}
static void r_cfg_small(struct layout_params *p, uint64_t *c)
{
	(void)p;
	*c = CFG_SIZE - PARLEY_PAGE_SIZE;
}
static void r_cfg_zero(struct layout_params *p, uint64_t *c)
{
	(void)p;
	*c = 0;
}
static void r_cfg_empty_file(struct layout_params *p, uint64_t *c)
{
	/* A zero-byte file still takes a page. */
	static const struct layout_config_file f[] = { { "e", file_a, 0 } };

	p->config = f;
	p->nconfig = 1;
	*c = 0;
}

static const struct refusal refusals[] = {
	{ "RAM below min", r_ram_small, 0, -EINVAL,
	  "memory size 0x200000 out of range" },
	{ "RAM zero", r_ram_zero, 0, -EINVAL, "memory size 0x0 out of range" },
	{ "RAM above max", r_ram_big, 0, -EINVAL,
	  "memory size 0x40200000 out of range" },
	{ "RAM 2^64-2M", r_ram_huge, 0, -EINVAL,
	  "memory size 0xffffffffffe00000 out of range" },
	{ "RAM not 2M aligned (4K)", r_ram_unaligned, 0, -EINVAL,
	  "memory size 0x1001000 out of range" },
	{ "RAM not 2M aligned (1M)", r_ram_unaligned_1m, 0, -EINVAL,
	  "memory size 0x500000 out of range" },
	{ "image past LAYOUT_IMAGE_MAX", r_image_max, 0, -E2BIG,
	  "image ends at 0x1001000" },
	{ "image into the stacks", r_image_stacks, 0, -E2BIG,
	  "image ends at 0x3e1000" },
	{ "image_hi 2^64-1", r_image_huge, 0, -E2BIG,
	  "image ends at 0xffffffffffffffff" },
	{ "cmdline 1024 bytes", r_cmdline, 1, -E2BIG,
	  "command line longer than 1023 bytes" },
	{ "33 config files", r_nconfig, 1, -E2BIG, "more than 32 config files" },
	{ "config name empty", r_name_empty, 1, -EINVAL,
	  "config file name \"\" is empty or too long" },
	{ "config name 64 bytes", r_name_64, 1, -EINVAL,
	  "is empty or too long" },
	{ "config region a page short", r_cfg_small, 1, -ENOSPC,
	  "config region too small" },
	{ "config region empty", r_cfg_zero, 1, -ENOSPC,
	  "config region too small" },
	{ "empty file, no region", r_cfg_empty_file, 1, -ENOSPC,
	  "config region too small" },
};

Test(layout, refusals)
{
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];
		struct lay l;
		uint64_t cfg_size = CFG_SIZE;
		int rc;

		lay_alloc(&l);
		r->mutate(&l.p, &cfg_size);
		if (r->boot)
			rc = layout_boot(l.ram, l.cfg, cfg_size, &l.p, &l.err);
		else
			rc = layout_system(l.ram, &l.p, &l.err);
		cr_expect_eq(rc, r->code, "%s: got %d (%s), want %d", r->name,
			     rc, perr_msg(&l.err), r->code);
		cr_expect_eq(l.err.code, rc, "%s: err.code %d != rc %d",
			     r->name, l.err.code, rc);
		cr_expect(strstr(l.err.msg, r->msg) != NULL,
			  "%s: message \"%s\" lacks \"%s\"", r->name, l.err.msg,
			  r->msg);
		/* A refused layout_system leaves RAM untouched. */
		if (!r->boot)
			for (uint64_t b = 0; b < PARLEY_BOOT_INFO_GPA; b++)
				if (l.ram[b] != FILL)
					cr_assert_fail("%s: byte 0x%llx written",
						       r->name,
						       (unsigned long long)b);
		lay_free(&l);
	}
}

/* W^X: what the walk finds executable, page by page. */
static void expect_exec(const uint8_t *ram, uint64_t lo, uint64_t hi,
			int exec, const char *what)
{
	for (uint64_t va = lo; va < hi; va += PARLEY_PAGE_SIZE) {
		struct walk w = walk(ram, va);
		cr_expect(w.present, "%s: 0x%llx not present", what,
			  (unsigned long long)va);
		cr_expect_eq(w.exec, exec, "%s: 0x%llx executable %d, want %d",
			     what, (unsigned long long)va, w.exec, exec);
	}
}

Test(layout, wx_only_text_executes)
{
	struct lay l;
	uint64_t floor = layout_stack_floor(RAM_SIZE, VCPUS);

	lay_all(&l);
	expect_exec(l.ram, 0x100000, 0x101000, 1, "text");
	expect_exec(l.ram, 0x101000, 0x103000, 0, "rodata");
	expect_exec(l.ram, 0x103000, 0x106000, 0, "data");
	expect_exec(l.ram, IMAGE_HI, IMAGE_HI + 0x10000, 0, "heap");
	expect_exec(l.ram, floor, RAM_SIZE, 0, "stacks");
	expect_exec(l.ram, PARLEY_BOOT_INFO_GPA,
		    PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE, 0,
		    "boot info");
	expect_exec(l.ram, PARLEY_SYS_BASE, PARLEY_SYS_BASE + PARLEY_SYS_SIZE,
		    0, "system tables");
	/* The 2 MiB mappings above the 4 KiB span: more RAM, the config
	 * region, channel windows, and what nothing backs. */
	static const uint64_t big[] = {
		LAYOUT_PT_SPAN, 64 * MiB, PARLEY_CONFIG_BASE,
		PARLEY_CONFIG_BASE + 0x5000, PARLEY_CHAN_BASE,
		PARLEY_CHAN_BASE + 0x3ffff000, 0xfee00000, 0xfffff000,
	};
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		expect_exec(l.ram, big[i], big[i] + PARLEY_PAGE_SIZE, 0,
			    "above 16 MiB");
	lay_free(&l);
}

/* No page anywhere below 4 GiB is both writable and executable. */
Test(layout, wx_never_both)
{
	struct lay l;

	lay_all(&l);
	for (uint64_t va = 0; va < LAYOUT_PT_SPAN; va += PARLEY_PAGE_SIZE) {
		struct walk w = walk(l.ram, va);
		cr_expect(!(w.present && w.write && w.exec),
			  "0x%llx writable and executable",
			  (unsigned long long)va);
	}
	for (uint64_t va = LAYOUT_PT_SPAN; va < 4 * GiB; va += 2 * MiB) {
		struct walk w = walk(l.ram, va);
		cr_expect(!w.exec, "0x%llx executable", (unsigned long long)va);
	}
	lay_free(&l);
}

/* A segment that asks for W and X gets W only; a page that text shares
 * with data is read-only and executable, never both W and X. */
Test(layout, wx_segment_flags_cannot_unlock_both)
{
	struct lay l;
	static const struct layout_range r[] = {
		{ 0x100000, 0x1000, PF_R | PF_W | PF_X },
		{ 0x101000, 0x800, PF_R | PF_X },
		{ 0x101800, 0x1800, PF_R | PF_W },
	};

	lay_alloc(&l);
	l.p.ranges = r;
	l.p.nrange = 3;
	cr_assert_eq(layout_system(l.ram, &l.p, &l.err), 0, "%s",
		     perr_msg(&l.err));
	expect_page(l.ram, 0x100000, 1, 1, 1, "W+X segment: writable");
	expect_exec(l.ram, 0x100000, 0x101000, 0, "W+X segment");
	expect_page(l.ram, 0x101000, 1, 1, 0, "text shared with data");
	expect_exec(l.ram, 0x101000, 0x102000, 1, "text shared with data");
	expect_page(l.ram, 0x102000, 1, 1, 1, "data");
	expect_exec(l.ram, 0x102000, 0x103000, 0, "data");
	lay_free(&l);
}
