/*
 * The one door to guest memory (agent/vmx/gmem.c): a table of ranges, legal
 * and hostile, against two backed regions (RAM at 0, the config region at
 * PARLEY_CONFIG_BASE), each with the exact host pointer or NULL expected.
 */
#include <criterion/criterion.h>

#include <errno.h>
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
