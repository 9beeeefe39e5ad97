/*
 * The doors to guest memory (agent/ctl/gmem.c): a table of ranges, legal
 * and hostile, against two backed regions (RAM at 0, the config region at
 * PARLEY_CONFIG_BASE), each with the exact host pointer or NULL expected.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "agent/ctl/gmem.h"

#define RAM_SIZE 0x10000ull
#define CFG_SIZE 0x2000ull
#define TOP_GPA 0xffffffffffffe000ull /* a region just below 2^64 */
#define TOP_SIZE 0x1000ull

static uint8_t ram[RAM_SIZE], cfg[CFG_SIZE], top[TOP_SIZE];

static void two_regions(struct gmem *g)
{
	memset(g, 0, sizeof(*g));
	cr_assert_eq(gmem_add(g, 0, RAM_SIZE, ram), 0);
	cr_assert_eq(gmem_add(g, PARLEY_CONFIG_BASE, CFG_SIZE, cfg), 0);
}

enum where { NONE, RAM, CFG, TOP };

struct range_case {
	const char *name;
	parley_gpa_t gpa;
	uint64_t len, align;
	enum where region; /* NONE: gmem_ptr must return NULL */
	uint64_t off;      /* offset into that region's host buffer */
};

static const struct range_case cases[] = {
	{ "first byte", 0, 1, 1, RAM, 0 },
	{ "in bounds", 0x1234, 0x100, 1, RAM, 0x1234 },
	{ "whole RAM", 0, RAM_SIZE, 8, RAM, 0 },
	{ "exact end", RAM_SIZE - 8, 8, 8, RAM, RAM_SIZE - 8 },
	{ "one past end", RAM_SIZE - 8, 9, 1, NONE, 0 },
	{ "starts at end", RAM_SIZE, 1, 1, NONE, 0 },
	{ "zero length at end", RAM_SIZE, 0, 1, RAM, RAM_SIZE },
	{ "zero length inside", 0x800, 0, 8, RAM, 0x800 },
	{ "zero length past end", RAM_SIZE + 1, 0, 1, NONE, 0 },
	{ "len larger than RAM", 0, RAM_SIZE + 1, 1, NONE, 0 },
	{ "len 2^64-1", 0x10, UINT64_MAX, 1, NONE, 0 },
	{ "gpa+len overflows", 0xfffffffffffff000ull, 0x2000, 1, NONE, 0 },
	{ "gpa+len wraps to 0", 0xfffffffffffff000ull, 0x1000, 1, NONE, 0 },
	{ "gpa+len wraps into RAM", 0xffffffffffffff00ull, 0x200, 1, NONE, 0 },
	{ "aligned 8", 0x1000, 16, 8, RAM, 0x1000 },
	{ "misaligned with align 8", 0x1004, 8, 8, NONE, 0 },
	{ "misaligned by one", 0x1001, 8, 8, NONE, 0 },
	{ "odd gpa with align 1", 0x1001, 8, 1, RAM, 0x1001 },
	{ "align 4096", 0x2000, 0x1000, 0x1000, RAM, 0x2000 },
	{ "align 0", 0x1000, 8, 0, NONE, 0 },
	{ "align 3", 0x1000, 8, 3, NONE, 0 },
	{ "align 12", 0x1800, 8, 12, NONE, 0 },
	{ "align 2^63+1", 0, 8, 0x8000000000000001ull, NONE, 0 },
	{ "config first byte", PARLEY_CONFIG_BASE, 1, 1, CFG, 0 },
	{ "config whole", PARLEY_CONFIG_BASE, CFG_SIZE, 8, CFG, 0 },
	{ "config exact end", PARLEY_CONFIG_BASE + CFG_SIZE - 1, 1, 1, CFG,
	  CFG_SIZE - 1 },
	{ "config one past end", PARLEY_CONFIG_BASE + CFG_SIZE - 1, 2, 1, NONE,
	  0 },
	{ "config zero length at end", PARLEY_CONFIG_BASE + CFG_SIZE, 0, 1, CFG,
	  CFG_SIZE },
	{ "just below config", PARLEY_CONFIG_BASE - 1, 1, 1, NONE, 0 },
	{ "straddles config start", PARLEY_CONFIG_BASE - 8, 16, 8, NONE, 0 },
	{ "in the gap", 0x20000000, 8, 8, NONE, 0 },
	{ "spans the gap", RAM_SIZE - 8, PARLEY_CONFIG_BASE - RAM_SIZE + 16, 8,
	  NONE, 0 },
	{ "spans both regions", 0, PARLEY_CONFIG_BASE + CFG_SIZE, 1, NONE, 0 },
	{ "channel window (unbacked)", PARLEY_CHAN_BASE, 8, 8, NONE, 0 },
	{ "top of address space", UINT64_MAX, 1, 1, NONE, 0 },
	{ "top, zero length", UINT64_MAX, 0, 1, NONE, 0 },
};

static void *host_of(enum where w)
{
	switch (w) {
	case RAM:
		return ram;
	case CFG:
		return cfg;
	case TOP:
		return top;
	default:
		return NULL;
	}
}

Test(gmem, range_table)
{
	struct gmem g;

	two_regions(&g);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct range_case *c = &cases[i];
		void *got = gmem_ptr(&g, c->gpa, c->len, c->align);
		uint8_t *want = host_of(c->region);

		if (want)
			want += c->off;
		cr_expect_eq(got, (void *)want,
			     "%s: gmem_ptr(0x%llx, 0x%llx, %llu) = %p, want %p",
			     c->name, (unsigned long long)c->gpa,
			     (unsigned long long)c->len,
			     (unsigned long long)c->align, got, (void *)want);
	}
}

/* A region whose end is the very top of the address space minus a page:
 * a range that wraps past 2^64 must not be mistaken for one inside it. */
Test(gmem, region_near_top)
{
	struct gmem g;

	two_regions(&g);
	cr_assert_eq(gmem_add(&g, TOP_GPA, TOP_SIZE, top), 0);
	cr_expect_eq(gmem_ptr(&g, TOP_GPA, TOP_SIZE, 8), (void *)top);
	cr_expect_eq(gmem_ptr(&g, TOP_GPA + 0x800, 0x800, 8),
		     (void *)(top + 0x800));
	cr_expect_null(gmem_ptr(&g, TOP_GPA + 0x800, 0x801, 1));
	cr_expect_null(gmem_ptr(&g, TOP_GPA, 0x2000, 1));
	cr_expect_null(gmem_ptr(&g, 0xfffffffffffff000ull, 0x2000, 1));
	cr_expect_null(gmem_ptr(&g, TOP_GPA + 0x800, UINT64_MAX, 1));
}

Test(gmem, empty_map_backs_nothing)
{
	struct gmem g = { 0 };

	cr_expect_null(gmem_ptr(&g, 0, 0, 1));
	cr_expect_null(gmem_ptr(&g, 0, 1, 1));
	cr_expect_null(gmem_ptr(&g, PARLEY_CONFIG_BASE, 8, 8));
}

Test(gmem, region_table_full)
{
	struct gmem g = { 0 };

	for (unsigned i = 0; i < GMEM_REGIONS_MAX; i++)
		cr_assert_eq(gmem_add(&g, i * 0x100000ull, 0x1000, ram), 0);
	cr_expect_eq(gmem_add(&g, 0x10000000, 0x1000, cfg), -ENOSPC);
	cr_expect_eq(g.nregion, GMEM_REGIONS_MAX);
	cr_expect_null(gmem_ptr(&g, 0x10000000, 1, 1));
}

/*
 * The door for guest-supplied addresses: against a partition's real map
 * (8 MiB of RAM, text and rodata read-only, config region and channel area
 * backed or not), each range with the refusal expected for a struct the
 * vmm writes back (rw) and for a buffer it only reads (r).
 */
#define G_RAM    0x800000ull
#define G_TEXT   0x100000ull  /* 2 pages, read-only + exec */
#define G_RODATA 0x102000ull  /* 1 page, read-only */
#define G_DATA   0x103000ull
#define G_CFG    0x4000ull

static uint8_t *g_ram, g_cfg[G_CFG];

static void guest_map(struct gmem *g)
{
	if (!g_ram)
		g_ram = calloc(1, G_RAM);
	cr_assert_not_null(g_ram);
	memset(g, 0, sizeof(*g));
	cr_assert_eq(gmem_add(g, 0, G_RAM, g_ram), 0);
	cr_assert_eq(gmem_add(g, PARLEY_CONFIG_BASE, G_CFG, g_cfg), 0);
	cr_assert_eq(gmem_guest_init(g, G_RAM), 0);
	cr_assert_eq(gmem_guest_ro(g, G_TEXT, 0x2000), 0);
	cr_assert_eq(gmem_guest_ro(g, G_RODATA, 0x1000), 0);
}

struct guest_case {
	const char *name;
	parley_gpa_t gpa;
	uint64_t len, align;
	enum gmem_refusal rw, r;
};

static const struct guest_case guest_cases[] = {
	{ "data", G_DATA, 24, 8, GMEM_OK, GMEM_OK },
	{ "heap", 0x200000, 168, 8, GMEM_OK, GMEM_OK },
	{ "top of the stacks", G_RAM - 24, 24, 8, GMEM_OK, GMEM_OK },
	{ "zero length at the end of RAM", G_RAM, 0, 1, GMEM_OK, GMEM_OK },
	{ "one past the end of RAM", G_RAM - 16, 24, 8, GMEM_OUTSIDE,
	  GMEM_OUTSIDE },
	{ "past RAM, before config", 0x20000000, 8, 8, GMEM_OUTSIDE,
	  GMEM_OUTSIDE },
	{ "page 0", 0, 24, 8, GMEM_NULL_PAGE, GMEM_NULL_PAGE },
	{ "zero length at 0", 0, 0, 1, GMEM_NULL_PAGE, GMEM_NULL_PAGE },
	{ "PML4", PARLEY_SYS_BASE, 24, 8, GMEM_SYSTEM, GMEM_SYSTEM },
	{ "GDT", 0xf000, 24, 8, GMEM_SYSTEM, GMEM_SYSTEM },
	{ "TSS", 0x10000, 24, 8, GMEM_SYSTEM, GMEM_SYSTEM },
	{ "last system byte", PARLEY_SYS_BASE + PARLEY_SYS_SIZE - 1, 1, 1,
	  GMEM_SYSTEM, GMEM_SYSTEM },
	{ "boot info", PARLEY_BOOT_INFO_GPA, 24, 8, GMEM_BOOT_INFO,
	  GMEM_BOOT_INFO },
	{ "command line", PARLEY_BOOT_INFO_GPA + 0x1000, 16, 1, GMEM_BOOT_INFO,
	  GMEM_BOOT_INFO },
	{ "between boot info and image", 0x80000, 8, 8, GMEM_OUTSIDE,
	  GMEM_OUTSIDE },
	{ "straddles into the image", PARLEY_IMAGE_MIN - 8, 16, 8, GMEM_OUTSIDE,
	  GMEM_OUTSIDE },
	{ "text", G_TEXT, 24, 8, GMEM_READONLY, GMEM_OK },
	{ "last text byte", G_TEXT + 0x1fff, 1, 1, GMEM_READONLY, GMEM_OK },
	{ "rodata", G_RODATA + 0x40, 24, 8, GMEM_READONLY, GMEM_OK },
	{ "rodata into data", G_DATA - 8, 16, 8, GMEM_READONLY, GMEM_OK },
	{ "data into nothing else", G_DATA, 16, 8, GMEM_OK, GMEM_OK },
	{ "zero length at the end of rodata", G_DATA, 0, 1, GMEM_OK, GMEM_OK },
	{ "config region", PARLEY_CONFIG_BASE, 24, 8, GMEM_CONFIG, GMEM_CONFIG },
	{ "config, unbacked part", PARLEY_CONFIG_BASE + 0x100000, 8, 8,
	  GMEM_CONFIG, GMEM_CONFIG },
	{ "RAM into config", G_RAM - 8, PARLEY_CONFIG_BASE, 1, GMEM_CONFIG,
	  GMEM_CONFIG },
	{ "channel window", PARLEY_CHAN_BASE, 24, 8, GMEM_CHANNEL,
	  GMEM_CHANNEL },
	{ "channel window end", PARLEY_CHAN_BASE + PARLEY_CHAN_SIZE - 8, 8, 8,
	  GMEM_CHANNEL, GMEM_CHANNEL },
	{ "above 4 GiB", 0x100000000ull, 8, 8, GMEM_OUTSIDE, GMEM_OUTSIDE },
	{ "misaligned", G_DATA + 4, 24, 8, GMEM_UNALIGNED, GMEM_UNALIGNED },
	{ "align 0", G_DATA, 24, 0, GMEM_UNALIGNED, GMEM_UNALIGNED },
	{ "align 3", G_DATA, 24, 3, GMEM_UNALIGNED, GMEM_UNALIGNED },
	{ "wraps", 0xfffffffffffff000ull, 0x2000, 1, GMEM_WRAPS, GMEM_WRAPS },
	{ "wraps into data", 0xffffffffffffff00ull, G_DATA + 0x200, 1,
	  GMEM_WRAPS, GMEM_WRAPS },
	{ "len 2^64-1", G_DATA, UINT64_MAX, 1, GMEM_WRAPS, GMEM_WRAPS },
	{ "whole RAM", 0, G_RAM, 8, GMEM_NULL_PAGE, GMEM_NULL_PAGE },
	{ "all of the image and up", PARLEY_IMAGE_MIN, G_RAM - PARLEY_IMAGE_MIN,
	  8, GMEM_READONLY, GMEM_OK },
	{ "top of address space", UINT64_MAX, 1, 1, GMEM_WRAPS, GMEM_WRAPS },
};

Test(gmem, guest_range_table)
{
	struct gmem g;
	guest_map(&g);
	for (size_t i = 0; i < sizeof(guest_cases) / sizeof(*guest_cases); i++) {
		const struct guest_case *c = &guest_cases[i];
		enum gmem_refusal why = 99;
		void *rw = gmem_guest_rw(&g, c->gpa, c->len, c->align, &why);
		cr_expect_eq(why, c->rw, "%s: rw refusal %d (%s), want %d (%s)",
			     c->name, why, gmem_refusal_str(why), c->rw,
			     gmem_refusal_str(c->rw));
		cr_expect_eq(rw, c->rw == GMEM_OK ? (void *)(g_ram + c->gpa)
						  : NULL, "%s: rw %p", c->name,
			     rw);
		const void *r = gmem_guest_r(&g, c->gpa, c->len, c->align, &why);
		cr_expect_eq(why, c->r, "%s: r refusal %d (%s), want %d (%s)",
			     c->name, why, gmem_refusal_str(why), c->r,
			     gmem_refusal_str(c->r));
		cr_expect_eq(r, c->r == GMEM_OK ? (void *)(g_ram + c->gpa) : NULL,
			     "%s: r %p", c->name, r);
	}
}

/* gmem_ptr itself still reaches everything backed: the vmm's own door
 * (boot info set-up) is not narrowed by the guest's. */
Test(gmem, own_door_still_reaches_system_area)
{
	struct gmem g;
	guest_map(&g);
	cr_expect_eq(gmem_ptr(&g, PARLEY_BOOT_INFO_GPA, 64, 8),
		     (void *)(g_ram + PARLEY_BOOT_INFO_GPA));
	cr_expect_eq(gmem_ptr(&g, PARLEY_CONFIG_BASE, 8, 8), (void *)g_cfg);
	cr_expect_null(gmem_guest_rw(&g, PARLEY_BOOT_INFO_GPA, 64, 8, NULL));
}

/* Nothing declared: every guest-supplied address is refused. */
Test(gmem, guest_view_fails_closed)
{
	struct gmem g;
	two_regions(&g);
	enum gmem_refusal why;
	cr_expect_null(gmem_guest_rw(&g, 0x1000, 8, 8, &why));
	cr_expect_null(gmem_guest_r(&g, 0x1000, 8, 8, NULL));
	cr_expect_neq(why, GMEM_OK);
}

/* Declared but not backed (a RAM size larger than the region added): the
 * check passes, the pointer does not exist, the refusal says outside. */
Test(gmem, guest_view_never_beyond_backing)
{
	struct gmem g;
	two_regions(&g); /* RAM region is only RAM_SIZE (64 KiB) */
	cr_assert_eq(gmem_guest_init(&g, G_RAM), 0);
	enum gmem_refusal why;
	cr_expect_null(gmem_guest_rw(&g, G_DATA, 8, 8, &why));
	cr_expect_eq(why, GMEM_OUTSIDE);
}

Test(gmem, guest_view_declaration_checked)
{
	struct gmem g = { 0 };
	cr_expect_eq(gmem_guest_init(&g, 0), -EINVAL);
	cr_expect_eq(gmem_guest_init(&g, PARLEY_IMAGE_MIN), -EINVAL);
	cr_expect_eq(gmem_guest_init(&g, PARLEY_CONFIG_BASE + 0x1000), -EINVAL);
	cr_assert_eq(gmem_guest_init(&g, G_RAM), 0);
	cr_expect_eq(gmem_guest_ro(&g, G_TEXT, 0), -EINVAL);
	cr_expect_eq(gmem_guest_ro(&g, PARLEY_BOOT_INFO_GPA, 0x1000), -EINVAL);
	cr_expect_eq(gmem_guest_ro(&g, G_RAM - 0x1000, 0x2000), -EINVAL);
	cr_expect_eq(gmem_guest_ro(&g, 0xfffffffffffff000ull, 0x2000), -EINVAL);
	for (unsigned i = 0; i < GMEM_RO_MAX; i++)
		cr_assert_eq(gmem_guest_ro(&g, G_TEXT + i * 0x1000, 0x1000), 0);
	cr_expect_eq(gmem_guest_ro(&g, G_RAM - 0x1000, 0x1000), -ENOSPC);
	cr_expect(gmem_guest_is_ro(&g, G_TEXT + 0x800));
	cr_expect_not(gmem_guest_is_ro(&g, G_RAM - 0x800));
	/* Re-declaring forgets the read-only ranges. */
	cr_assert_eq(gmem_guest_init(&g, G_RAM), 0);
	cr_expect_eq(g.guest.nro, 0);
}

Test(gmem, every_refusal_has_words)
{
	for (int r = GMEM_OK; r <= GMEM_OUTSIDE; r++)
		cr_expect_neq(strcmp(gmem_refusal_str(r), "refused"), 0, "%d",
			      r);
	cr_expect_str_eq(gmem_refusal_str(GMEM_CONFIG), "in the config region");
}

/* The same rules byte by byte, as a reference: may the partition write
 * (rw) or have the vmm read (r) this one byte? */
static bool byte_ok(uint64_t a, bool write)
{
	if (a < PARLEY_IMAGE_MIN || a >= G_RAM)
		return false;
	bool ro = (a >= G_TEXT && a < G_TEXT + 0x2000) ||
		  (a >= G_RODATA && a < G_RODATA + 0x1000);
	return !(write && ro);
}

/* Ranges of up to three pages around every boundary of the map, each
 * checked against the byte-by-byte reference. */
Test(gmem, guest_ranges_match_bytewise_reference)
{
	struct gmem g;
	guest_map(&g);
	static const uint64_t edges[] = {
		0, PARLEY_SYS_BASE, PARLEY_BOOT_INFO_GPA,
		PARLEY_BOOT_INFO_GPA + PARLEY_BOOT_INFO_SIZE, PARLEY_IMAGE_MIN,
		G_TEXT + 0x2000, G_RODATA + 0x1000, G_RAM, PARLEY_CONFIG_BASE,
	};
	static const int64_t deltas[] = { -0x1001, -0x1000, -9, -8, -1, 0, 1,
					  7, 8, 0x1000 };
	static const uint64_t lens[] = { 0, 1, 7, 8, 24, 168, 0xfff, 0x1000,
					 0x1001, 0x3000 };
	unsigned checked = 0;
	for (size_t e = 0; e < sizeof(edges) / sizeof(*edges); e++)
	for (size_t d = 0; d < sizeof(deltas) / sizeof(*deltas); d++)
	for (size_t l = 0; l < sizeof(lens) / sizeof(*lens); l++) {
		uint64_t gpa = edges[e] + (uint64_t)deltas[d];
		if ((int64_t)edges[e] + deltas[d] < 0)
			continue;
		for (int w = 0; w < 2; w++) {
			bool want = true;
			for (uint64_t i = 0; i < lens[l] && want; i++)
				want = byte_ok(gpa + i, w);
			if (lens[l] == 0) /* a point: as its byte, or the end */
				want = gpa == G_RAM || byte_ok(gpa, w);
			enum gmem_refusal why;
			const void *p = w ? gmem_guest_rw(&g, gpa, lens[l], 1, &why)
					  : gmem_guest_r(&g, gpa, lens[l], 1, &why);
			cr_expect_eq(p != NULL, want,
				     "%s 0x%llx + 0x%llx: %s, want %s",
				     w ? "rw" : "r", (unsigned long long)gpa,
				     (unsigned long long)lens[l],
				     gmem_refusal_str(why),
				     want ? "admitted" : "refused");
			checked++;
		}
	}
	cr_expect_gt(checked, 1500);
}
