/*
 * The partition's memory layout: page tables, GDT, TSS and boot info laid
 * into guest RAM by the grant manager before the partition's first
 * instruction. Pure functions on a host buffer: nothing here touches KVM, so
 * the same code lays a fresh partition and re-lays a restored one.
 */
#ifndef PARLEY_AGENT_LAYOUT_H
#define PARLEY_AGENT_LAYOUT_H

#include <stdint.h>
#include <parley/abi.h>
#include "agent/ctl/sysmap.h"
#include "common/err.h"

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
