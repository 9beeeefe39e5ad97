/*
 * The partition's memory layout: page tables, GDT, TSS and boot info laid
 * into guest RAM by the grant manager before the partition's first
 * instruction. Pure functions on a host buffer: nothing here touches KVM, so
 * the same code lays a fresh partition and re-lays a restored one.
 */
#ifndef PARLEY_VMX_LAYOUT_H
#define PARLEY_VMX_LAYOUT_H

#include <stdint.h>
#include <parley/abi.h>
#include "common/err.h"

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

/* A range of the image with its ELF permissions (PF_W decides). */
struct layout_range {
	uint64_t gpa, size;
	uint32_t flags;
};

struct layout_config_file {
	const char *name;
	const uint8_t *data;
	uint64_t size;
};

struct layout_params {
	uint64_t ram_size;
	uint32_t vcpus;
	uint64_t image_hi;                 /* end of the image, page-aligned */
	unsigned nrange;
	const struct layout_range *ranges; /* image segments */
	unsigned nconfig;
	const struct layout_config_file *config;
	const char *cmdline;
};

/* Bytes the config region needs for these files (each page-aligned). */
uint64_t layout_config_bytes(const struct layout_config_file *cfg, unsigned n);

/* Lowest stack byte: everything from here to ram_size is vCPU stacks. */
uint64_t layout_stack_floor(uint64_t ram_size, uint32_t vcpus);

/* Lay page tables, GDT, TSS into ram (the host view of [0, ram_size)).
 * Only the system area is written. */
int layout_system(uint8_t *ram, const struct layout_params *p,
		  struct parley_err *err);

/* Lay boot info, config table, command line into ram, and the config files
 * into cfg (the host view of the config region, cfg_size bytes). */
int layout_boot(uint8_t *ram, uint8_t *cfg, uint64_t cfg_size,
		const struct layout_params *p, struct parley_err *err);

#endif
