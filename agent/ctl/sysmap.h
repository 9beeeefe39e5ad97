/*
 * Where the grant manager lays a partition's system tables and which
 * selectors it gives them: the facts both the layout code (agent/layout.c)
 * and the vmm process (which loads the matching privileged state) rely on.
 */
#ifndef PARLEY_CTL_SYSMAP_H
#define PARLEY_CTL_SYSMAP_H

#include <parley/abi.h>

/* Where the system tables live inside [PARLEY_SYS_BASE, +PARLEY_SYS_SIZE). */
#define LAYOUT_PML4   0x1000ull
#define LAYOUT_PDPT   0x2000ull
#define LAYOUT_PD     0x3000ull   /* 4 pages: identity map of [0, 4 GiB) */
#define LAYOUT_PT     0x7000ull   /* 4 KiB pages for [0, LAYOUT_PT_SPAN) */
#define LAYOUT_PT_N   8
#define LAYOUT_PT_SPAN (LAYOUT_PT_N * 0x200000ull) /* 16 MiB */
#define LAYOUT_GDT    0xf000ull
#define LAYOUT_TSS    0x10000ull  /* 104 bytes + I/O bitmap + 0xff */
#define LAYOUT_TSS_LIMIT (0x68 + 0x2000)

/* Selectors in that GDT; RPL 3 because partitions run at CPL 3. */
#define LAYOUT_SEL_DATA 0x0b  /* index 1 */
#define LAYOUT_SEL_CODE 0x13  /* index 2 */
#define LAYOUT_SEL_TSS  0x18  /* index 3-4 */
#define LAYOUT_GDT_ENTRIES 5

/* Images must lie inside the 4 KiB-mapped span so that their read-only
 * segments really are read-only to the partition. */
#define LAYOUT_IMAGE_MAX LAYOUT_PT_SPAN

#endif
