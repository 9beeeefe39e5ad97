/*
 * parley partition ABI: what a thin partition sees when it starts.
 *
 * This header is self-contained (only <stdint.h>) and is compiled into the
 * agent, the guest SDK and the host-side tests alike. Any change to a layout
 * here bumps PARLEY_ABI_MAJOR (incompatible) or PARLEY_ABI_MINOR (additive).
 *
 * Guest-physical addresses are carried as parley_gpa_t, never as pointers, so
 * the host cannot dereference one by accident: it must go through the checked
 * guest-memory accessor (agent/ctl/gmem.h).
 */
#ifndef PARLEY_ABI_H
#define PARLEY_ABI_H

#include <stdint.h>

#define PARLEY_ABI_MAJOR 1
#define PARLEY_ABI_MINOR 3 /* 2: SEG_ATTACH, SEG_DETACH; 3: BLK_* */

typedef uint64_t parley_gpa_t;

/*
 * Guest-physical map (identity-mapped into the partition's virtual space):
 *
 *   [0, 4 KiB)                  never mapped: catches NULL dereferences
 *   [PARLEY_SYS_BASE, +72 KiB)  page tables, GDT, TSS: supervisor-only, the
 *                               partition cannot read or write them
 *   [PARLEY_BOOT_INFO_GPA, ..)  boot info, config table, command line:
 *                               readable by the partition, not writable
 *   [PARLEY_IMAGE_MIN, mem)     image segments, heap, stacks (top of RAM);
 *                               only text executes (W^X: everything else,
 *                               here and below, is mapped no-execute)
 *   [PARLEY_CONFIG_BASE, ..)    key configuration files, page-aligned each
 *   [PARLEY_CHAN_BASE, ..)      channel windows, mapped only while granted
 *
 * Anything else below 4 GiB is mapped in the page tables but backed by no
 * memory: an access there stops the partition with the address reported.
 */
#define PARLEY_PAGE_SIZE      0x1000ull
#define PARLEY_SYS_BASE       0x1000ull
#define PARLEY_SYS_SIZE       0x12000ull
#define PARLEY_BOOT_INFO_GPA  0x13000ull
#define PARLEY_BOOT_INFO_SIZE 0x4000ull   /* boot info + tables + cmdline */
#define PARLEY_IMAGE_MIN      0x100000ull /* images link at or above 1 MiB */
#define PARLEY_MEM_MIN        0x400000ull /* 4 MiB */
#define PARLEY_MEM_MAX        0x40000000ull /* 1 GiB */
#define PARLEY_CONFIG_BASE    0x40000000ull
#define PARLEY_CONFIG_MAX     0x40000000ull
#define PARLEY_CHAN_BASE      0x80000000ull
#define PARLEY_CHAN_SIZE      0x40000000ull
#define PARLEY_STACK_SIZE     0x10000ull  /* per vCPU, from the top of RAM */

#define PARLEY_BOOT_MAGIC     0x79656c726170ull /* "parley" */
#define PARLEY_CONFIG_NAME_MAX 64
#define PARLEY_CONFIG_FILES_MAX 32
#define PARLEY_CMDLINE_MAX    1024
#define PARLEY_VCPUS_MAX      8

/* One key configuration file as laid into guest memory. */
struct parley_config_file {
	char name[PARLEY_CONFIG_NAME_MAX]; /* NUL-terminated */
	parley_gpa_t gpa;                  /* page-aligned */
	uint64_t size;                     /* bytes of file content */
};

/*
 * Handed to every vCPU in %rdi at entry (%rsi holds the vCPU index, %rsp the
 * top of that vCPU's stack). Read-only for the partition.
 */
struct parley_boot_info {
	uint64_t magic;           /* PARLEY_BOOT_MAGIC */
	uint16_t abi_major;
	uint16_t abi_minor;
	uint32_t vcpus;
	uint64_t mem_size;        /* RAM bytes, from GPA 0 */
	uint64_t tsc_khz;         /* CPUID is not virtualised at CPL 3 */
	parley_gpa_t heap_start;  /* first free byte after the image */
	parley_gpa_t heap_end;    /* bottom of the lowest vCPU stack */
	parley_gpa_t cmdline;     /* NUL-terminated */
	uint32_t cmdline_len;     /* without the NUL */
	uint32_t nconfig;
	parley_gpa_t config;      /* struct parley_config_file[nconfig] */
	parley_gpa_t config_base; /* the config region */
	uint64_t config_size;
	parley_gpa_t chan_base;   /* channel window */
	uint64_t chan_size;
};

#endif
