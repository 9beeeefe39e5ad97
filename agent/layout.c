#include "agent/layout.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define PTE_P   0x001ull
#define PTE_W   0x002ull
#define PTE_U   0x004ull
#define PTE_A   0x020ull
#define PTE_D   0x040ull
#define PTE_PS  0x080ull
#define PTE_NX  (1ull << 63) /* no instruction fetch (with EFER.NXE) */

/* Accessed and dirty are preset so that the page walker never has to write
 * the tables back. */
#define PTE_TABLE (PTE_P | PTE_W | PTE_U | PTE_A)

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

uint64_t layout_config_bytes(const struct layout_config_file *cfg, unsigned n)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += align_up(cfg[i].size ? cfg[i].size : 1, PARLEY_PAGE_SIZE);
	return total;
}

uint64_t layout_stack_floor(uint64_t ram_size, uint32_t vcpus)
{
	return ram_size - (uint64_t)vcpus * PARLEY_STACK_SIZE;
}

static uint64_t *table(uint8_t *ram, uint64_t gpa)
{
	return (uint64_t *)(void *)(ram + gpa);
}

/* Does the 4 KiB page at gpa overlap an image range with this ELF flag
 * (or, want_set false, one without it)? */
static bool page_has(const struct layout_params *p, uint64_t gpa,
		    uint32_t flag, bool want_set)
{
	for (unsigned i = 0; i < p->nrange; i++) {
		const struct layout_range *r = &p->ranges[i];
		if (gpa + PARLEY_PAGE_SIZE > r->gpa && gpa < r->gpa + r->size &&
		    ((r->flags & flag) != 0) == want_set)
			return true;
	}
	return false;
}

/* Permission of one 4 KiB page below LAYOUT_PT_SPAN. W^X: a page is
 * executable only if it holds text and is read-only; everything else
 * (system tables, boot info, data, heap, stacks) is mapped NX. */
static uint64_t page_bits(const struct layout_params *p, uint64_t gpa)
{
	if (gpa < PARLEY_SYS_BASE)
		return 0; /* NULL guard */
	if (gpa < PARLEY_SYS_BASE + PARLEY_SYS_SIZE)
		/* Supervisor-only: page tables, GDT and TSS are walked and
		 * read by the CPU, never by the partition. */
		return PTE_P | PTE_W | PTE_A | PTE_D | PTE_NX;
	if (gpa < PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE)
		return PTE_P | PTE_U | PTE_A | PTE_NX;
	if (gpa < PARLEY_IMAGE_MIN || gpa >= p->ram_size)
		return 0;
	/* A page shared by a writable and a read-only range is read-only;
	 * executable only if text lies in it. Writable is never executable,
	 * even for a segment that asks for W and X. */
	if (page_has(p, gpa, PF_W, false)) {
		uint64_t ro = PTE_P | PTE_U | PTE_A | PTE_D;
		return page_has(p, gpa, PF_X, true) ? ro : ro | PTE_NX;
	}
	return PTE_P | PTE_U | PTE_A | PTE_D | PTE_W | PTE_NX;
}

int layout_system(uint8_t *ram, const struct layout_params *p,
		  struct parley_err *err)
{
	if (p->ram_size < PARLEY_MEM_MIN || p->ram_size > PARLEY_MEM_MAX ||
	    p->ram_size % 0x200000)
		return perr(err, -EINVAL, "memory size 0x%llx out of range",
			    (unsigned long long)p->ram_size);
	if (p->vcpus < 1 || p->vcpus > PARLEY_VCPUS_MAX)
		return perr(err, -EINVAL, "%u vCPUs", p->vcpus);
	uint64_t limit = layout_stack_floor(p->ram_size, p->vcpus);
	if (limit > LAYOUT_IMAGE_MAX)
		limit = LAYOUT_IMAGE_MAX;
	if (p->image_hi > limit)
		return perr(err, -E2BIG, "image ends at 0x%llx: past the "
			    "0x%llx it may use", (unsigned long long)p->image_hi,
			    (unsigned long long)limit);
	memset(ram + PARLEY_SYS_BASE, 0, PARLEY_SYS_SIZE);

	table(ram, LAYOUT_PML4)[0] = LAYOUT_PDPT | PTE_TABLE;
	for (unsigned i = 0; i < 4; i++)
		table(ram, LAYOUT_PDPT)[i] = (LAYOUT_PD + i * 0x1000) | PTE_TABLE;
	/* [0, 4 GiB) in 2 MiB pages; the first LAYOUT_PT_SPAN through page
	 * tables of 4 KiB pages. Unbacked addresses stay mapped on purpose:
	 * the partition's access then exits to us with the address. */
	uint64_t *pd = table(ram, LAYOUT_PD);
	for (uint64_t i = 0; i < 4 * 512; i++) {
		uint64_t gpa = i << 21;
		if (gpa < LAYOUT_PT_SPAN)
			pd[i] = (LAYOUT_PT + i * 0x1000) | PTE_TABLE;
		else
			/* RAM above 16 MiB (heap, stacks), the config
			 * region, channel windows: data, never code. */
			pd[i] = gpa | PTE_P | PTE_W | PTE_U | PTE_A | PTE_D |
				PTE_PS | PTE_NX;
	}
	uint64_t *pt = table(ram, LAYOUT_PT);
	for (uint64_t i = 0; i < LAYOUT_PT_N * 512; i++) {
		uint64_t gpa = i << 12;
		uint64_t bits = page_bits(p, gpa);
		pt[i] = bits ? gpa | bits : 0;
	}

	/* Flat 64-bit user segments; accessed bits preset (type 3 / 0xb). */
	uint64_t *gdt = table(ram, LAYOUT_GDT);
	gdt[0] = 0;
	gdt[1] = 0x00cff3000000ffffull; /* data: P, DPL3, S, type 3, G, D/B */
	gdt[2] = 0x00affb000000ffffull; /* code: P, DPL3, S, type b, G, L */
	uint64_t tss = LAYOUT_TSS, lim = LAYOUT_TSS_LIMIT;
	gdt[3] = (lim & 0xffff) | ((tss & 0xffffff) << 16) | (0x8bull << 40) |
		 (((tss >> 24) & 0xff) << 56);
	gdt[4] = tss >> 32;
	/* The TSS holds no stacks: with no IDT and no CPL change there is
	 * nothing for them to do. It holds an I/O bitmap of all zeroes, so
	 * every port access exits to the vmm (which names a bad port) rather
	 * than faulting where a CPU ignores IOPL, as some nested ones do. */
	*(uint16_t *)(ram + LAYOUT_TSS + 0x66) = 0x68;
	ram[LAYOUT_TSS + LAYOUT_TSS_LIMIT] = 0xff;
	return 0;
}

static int lay_config(uint8_t *ram, uint8_t *cfg, uint64_t cfg_size,
		      const struct layout_params *p, uint64_t table_gpa,
		      struct parley_err *err)
{
	struct parley_config_file *t =
		(struct parley_config_file *)(void *)(ram + table_gpa);
	uint64_t off = 0;
	for (unsigned i = 0; i < p->nconfig; i++) {
		const struct layout_config_file *f = &p->config[i];
		size_t nlen = strlen(f->name);
		if (nlen == 0 || nlen >= PARLEY_CONFIG_NAME_MAX)
			return perr(err, -EINVAL, "config file name \"%s\" is "
				    "empty or too long", f->name);
		uint64_t span = align_up(f->size ? f->size : 1, PARLEY_PAGE_SIZE);
		if (off + span > cfg_size)
			return perr(err, -ENOSPC, "config region too small");
		memcpy(t[i].name, f->name, nlen + 1);
		t[i].gpa = PARLEY_CONFIG_BASE + off;
		t[i].size = f->size;
		memcpy(cfg + off, f->data, f->size);
		off += span;
	}
	return 0;
}

int layout_boot(uint8_t *ram, uint8_t *cfg, uint64_t cfg_size,
		const struct layout_params *p, struct parley_err *err)
{
	uint64_t table_gpa = PARLEY_BOOT_INFO_GPA +
			     align_up(sizeof(struct parley_boot_info), 64);
	uint64_t cmd_gpa = table_gpa + PARLEY_CONFIG_FILES_MAX *
					       sizeof(struct parley_config_file);
	size_t clen = strlen(p->cmdline ? p->cmdline : "");
	_Static_assert(PARLEY_BOOT_INFO_GPA + 64 + PARLEY_CONFIG_FILES_MAX *
			       sizeof(struct parley_config_file) +
			       PARLEY_CMDLINE_MAX <=
		       PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE,
		       "boot info area too small");
	if (clen >= PARLEY_CMDLINE_MAX)
		return perr(err, -E2BIG, "command line longer than %d bytes",
			    PARLEY_CMDLINE_MAX - 1);
	if (p->nconfig > PARLEY_CONFIG_FILES_MAX)
		return perr(err, -E2BIG, "more than %d config files",
			    PARLEY_CONFIG_FILES_MAX);
	memset(ram + PARLEY_BOOT_INFO_GPA, 0, PARLEY_BOOT_INFO_SIZE);
	int rc = lay_config(ram, cfg, cfg_size, p, table_gpa, err);
	if (rc < 0)
		return rc;
	memcpy(ram + cmd_gpa, p->cmdline ? p->cmdline : "", clen + 1);

	struct parley_boot_info *bi =
		(struct parley_boot_info *)(void *)(ram + PARLEY_BOOT_INFO_GPA);
	*bi = (struct parley_boot_info){
		.magic = PARLEY_BOOT_MAGIC,
		.abi_major = PARLEY_ABI_MAJOR,
		.abi_minor = PARLEY_ABI_MINOR,
		.vcpus = p->vcpus,
		.mem_size = p->ram_size,
		.heap_start = align_up(p->image_hi, PARLEY_PAGE_SIZE),
		.heap_end = layout_stack_floor(p->ram_size, p->vcpus),
		.cmdline = cmd_gpa,
		.cmdline_len = (uint32_t)clen,
		.nconfig = p->nconfig,
		.config = table_gpa,
		.config_base = PARLEY_CONFIG_BASE,
		.config_size = cfg_size,
		.chan_base = PARLEY_CHAN_BASE,
		.chan_size = PARLEY_CHAN_SIZE,
	};
	return 0;
}
